"""Ranking and rating metrics, vectorised over a batch of users.

Ranking metrics take

``ranked`` : int array, shape (n_users, L)
    Recommended item ids per user, best first. ``-1`` pads lists shorter than ``L`` (a ``-1``
    counts as a miss at its rank). Ids must be in ``[-1, n_items)`` and not repeat within a row.
``held_out`` : scipy.sparse matrix, shape (n_users, n_items)
    Row ``u`` holds the relevant items of user ``u`` (binary relevance: every stored non-zero
    entry is relevant, whatever its value; explicit zeros are not).
``k`` : int >= 1 or None
    Cut-off; None uses all ``L`` columns. ``k > L`` (lists shorter than k, e.g. ``k > n_items``)
    scores the ``L`` available ranks; denominators that involve ``k`` still use ``k``.

and return the mean over users with a non-empty held-out row, or with ``per_user=True`` a float64
array of shape (n_users,) holding NaN for users whose held-out row is empty (they are excluded
from every mean; the mean of no users is NaN).

Definitions (``h_j`` = 1 if the item at rank ``j`` (0-based) is relevant, ``R`` = number of
relevant items):

- ``recall_at_k``    = sum_{j<k} h_j / min(k, R)                       (Liang et al. 2018; the default)
  or, with ``denominator="n_relevant"`` (``recall_denominator=`` in :func:`ranking_metrics` and
  ``aerec.evaluate``), sum_{j<k} h_j / R: the textbook recall that RecBole and Cornac report. The
  two agree when R <= k; for users with more than k relevant items the textbook recall cannot
  reach 1 and is the smaller.
- ``precision_at_k`` = sum_{j<k} h_j / k
- ``ndcg_at_k``      = DCG / IDCG, DCG = sum_{j<k} h_j / log2(j + 2),
  IDCG = sum_{j<min(k, R)} 1 / log2(j + 2)
- ``map_at_k``       = sum_{j<k} h_j * precision@(j+1) / min(k, R)
- ``mrr``            = 1 / (rank of the first relevant item + 1) within the cut-off, 0 if none
- ``hit_rate_at_k``  = 1 if any relevant item is in the top k, else 0
- ``coverage``       = distinct recommended items (top k of all users) / n_items

Membership is computed for all users at once: each (user, item) pair becomes the int64 key
``user * n_items + item``, looked up with ``np.searchsorted`` in the (sorted) keys of the
canonical CSR; there is no per-user Python loop.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ._validation import check_bool, check_k

__all__ = ["hits_at_k", "recall_at_k", "precision_at_k", "ndcg_at_k", "map_at_k", "mrr",
           "hit_rate_at_k", "coverage", "rmse", "mae", "ranking_metrics", "RANKING_METRICS",
           "RECALL_DENOMINATORS"]

RANKING_METRICS = ("recall", "ndcg", "precision", "map", "hit_rate", "mrr", "coverage")
#: the denominators recall can use: ``"min_k"`` = min(k, R) (Liang et al. 2018, aerec's default),
#: ``"n_relevant"`` = R (RecBole, Cornac, the textbook definition)
RECALL_DENOMINATORS = ("min_k", "n_relevant")


def _check_recall_denominator(value, name="recall_denominator") -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be one of {RECALL_DENOMINATORS}, got {type(value).__name__} {value!r}")
    if value not in RECALL_DENOMINATORS:
        raise ValueError(f"{name} must be 'min_k' (hits / min(k, |held-out|), Liang et al.) or "
                         f"'n_relevant' (hits / |held-out|, as RecBole and Cornac), got {value!r}")
    return value


# -- validation -------------------------------------------------------------------------------------

def _k_or_width(k, width):
    """k for a metric: None means the whole ranked list; otherwise check_k (not clipped to the
    width: the ideal DCG and the recall denominator still see k)."""
    return max(int(width), 1) if k is None else check_k(k)


def _canonical_csr(held_out, n_rows=None) -> sp.csr_matrix:
    if not sp.issparse(held_out):
        raise TypeError(f"held_out must be a scipy.sparse matrix (n_users x n_items), got "
                        f"{type(held_out).__name__}")
    from ._validation import check_structure
    m = check_structure(held_out, "held_out")  # a corrupt CSR must never reach scipy's C code
    if m.dtype.kind not in "fiub":
        raise TypeError(f"held_out values must be real numbers, got dtype {m.dtype}")
    if n_rows is not None and m.shape[0] != n_rows:
        raise ValueError(f"ranked has {n_rows} rows but held_out has {m.shape[0]}; they must align "
                         f"row by row")
    needs_copy = (not m.has_canonical_format) or (m.nnz and np.any(m.data == 0))
    if needs_copy:
        m = m.copy()
        m.sum_duplicates()
        m.eliminate_zeros()
    return m


def _n_ranked_rows(ranked):
    """Rows of ``ranked`` for aligning with held_out (None when it is not 2-D)."""
    if sp.issparse(ranked):
        raise TypeError("ranked must be a dense int array (n_users x k) of item ids, got a scipy.sparse matrix")
    return np.asarray(ranked).shape[0] if np.ndim(ranked) == 2 else None


def _check_ranked(ranked, n_items, check_duplicates=True) -> np.ndarray:
    if sp.issparse(ranked):
        raise TypeError("ranked must be a dense int array (n_users x k) of item ids, got a scipy.sparse matrix")
    r = np.asarray(ranked)
    if r.ndim != 2:
        raise ValueError(f"ranked must be 2-D (n_users x k), got shape {r.shape}; "
                         f"use ranked[None, :] for one user")
    if r.dtype.kind not in "iu":
        raise TypeError(f"ranked must hold integer item ids, got dtype {r.dtype}")
    if r.size:
        lo, hi = int(r.min()), int(r.max())
        if lo < -1:
            raise ValueError(f"ranked ids must be >= -1 (-1 = padding), found {lo}")
        if hi >= n_items:
            raise ValueError(f"ranked id {hi} out of range for {n_items} items")
        if check_duplicates and r.shape[1] > 1:
            s = np.sort(r, axis=1)
            dup = (s[:, 1:] == s[:, :-1]) & (s[:, 1:] >= 0)
            if np.any(dup):
                row = int(np.flatnonzero(dup.any(axis=1))[0])
                raise ValueError(f"ranked row {row} repeats an item id; lists must not contain duplicates")
    return r


def hits_at_k(ranked, held_out, k=None, *, check_duplicates: bool = True) -> np.ndarray:
    """Boolean array (n_users, min(k, L)): is ``ranked[u, j]`` in ``held_out[u]``."""
    check_duplicates = check_bool(check_duplicates, "check_duplicates")
    m = _canonical_csr(held_out, _n_ranked_rows(ranked))
    r = _check_ranked(ranked, m.shape[1], check_duplicates)
    return _hits(r, m, _k_or_width(k, r.shape[1]))


def _hits(r: np.ndarray, m: sp.csr_matrix, k: int) -> np.ndarray:
    r = r[:, :k]
    n_users, n_items = m.shape
    if m.nnz == 0 or r.size == 0:
        return np.zeros(r.shape, dtype=bool)
    rows = np.repeat(np.arange(n_users, dtype=np.int64), np.diff(m.indptr))
    keys = rows * np.int64(n_items) + m.indices  # sorted: canonical CSR is row-major, sorted columns
    q = np.arange(n_users, dtype=np.int64)[:, None] * np.int64(n_items) + r
    pos = np.searchsorted(keys, q)
    np.minimum(pos, keys.size - 1, out=pos)
    return (keys[pos] == q) & (r >= 0)


def _n_relevant(m):
    return np.diff(m.indptr).astype(np.int64)


def _finish(values: np.ndarray, n_rel: np.ndarray, per_user: bool):
    values = values.astype(np.float64, copy=False)
    values[n_rel == 0] = np.nan
    if per_user:
        return values
    valid = n_rel > 0
    return float(values[valid].mean()) if np.any(valid) else float("nan")


def _discounts(n):
    return 1.0 / np.log2(np.arange(2, n + 2, dtype=np.float64))


# -- per-metric kernels on a hits matrix ---------------------------------------------------------

def _recall(h, n_rel, k, denominator="min_k"):
    if denominator == "n_relevant":
        return h.sum(axis=1) / np.maximum(n_rel, 1)
    k = min(k, 2 ** 62)  # min(k, R) with R < 2**62: exact, and no int64 overflow for a huge k
    return h.sum(axis=1) / np.maximum(np.minimum(k, n_rel), 1)


def _precision(h, n_rel, k):  # noqa: ARG001
    return h.sum(axis=1) / float(k)


def _ndcg(h, n_rel, k):
    # discounts are needed up to max(L, min(k, R)) only: a huge k must not allocate k of them
    n_disc = min(k, max(h.shape[1], int(n_rel.max()) if n_rel.size else 0, 1))
    disc = _discounts(max(n_disc, 1))
    dcg = h.astype(np.float64) @ disc[:h.shape[1]]
    idcg_table = np.concatenate([[0.0], np.cumsum(disc)])
    idcg = idcg_table[np.minimum(min(k, n_disc), n_rel)]
    return dcg / np.where(idcg > 0, idcg, 1.0)


def _map(h, n_rel, k):
    k = min(k, 2 ** 62)
    cum = np.cumsum(h, axis=1, dtype=np.float64)
    prec = cum / np.arange(1, h.shape[1] + 1, dtype=np.float64)
    return (prec * h).sum(axis=1) / np.maximum(np.minimum(k, n_rel), 1)


def _mrr(h, n_rel, k):
    any_hit = h.any(axis=1)
    first = np.argmax(h, axis=1)
    return np.where(any_hit, 1.0 / (first + 1.0), 0.0)


def _hit_rate(h, n_rel, k):
    return h.any(axis=1).astype(np.float64)


_KERNELS = {"recall": _recall, "precision": _precision, "ndcg": _ndcg, "map": _map,
            "mrr": _mrr, "hit_rate": _hit_rate}


def _metric(name, ranked, held_out, k, per_user, check_duplicates=True, **kw):
    per_user = check_bool(per_user, "per_user")
    m = _canonical_csr(held_out, _n_ranked_rows(ranked))
    r = _check_ranked(ranked, m.shape[1], check_duplicates)
    k = _k_or_width(k, r.shape[1])
    h = _hits(r, m, k)
    n_rel = _n_relevant(m)
    return _finish(_KERNELS[name](h, n_rel, k, **kw), n_rel, per_user)


def recall_at_k(ranked, held_out, k=None, *, per_user: bool = False, denominator: str = "min_k"):
    """Recall@k: hits in the top k over ``min(k, |held-out|)`` (``denominator="min_k"``, Liang et
    al. 2018, the default) or over ``|held-out|`` (``denominator="n_relevant"``, the textbook
    recall of RecBole and Cornac). See the module notes."""
    denominator = _check_recall_denominator(denominator, "denominator")
    return _metric("recall", ranked, held_out, k, per_user, denominator=denominator)


def precision_at_k(ranked, held_out, k=None, *, per_user: bool = False):
    """Precision@k = hits in the top k / k. See the module notes."""
    return _metric("precision", ranked, held_out, k, per_user)


def ndcg_at_k(ranked, held_out, k=None, *, per_user: bool = False):
    """NDCG@k with binary relevance, IDCG over ``min(k, |held-out|)`` ideal ranks."""
    return _metric("ndcg", ranked, held_out, k, per_user)


def map_at_k(ranked, held_out, k=None, *, per_user: bool = False):
    """Mean average precision@k, AP normalised by ``min(k, |held-out|)``."""
    return _metric("map", ranked, held_out, k, per_user)


def mrr(ranked, held_out, k=None, *, per_user: bool = False):
    """Mean reciprocal rank of the first relevant item within the top k (0 when none)."""
    return _metric("mrr", ranked, held_out, k, per_user)


def hit_rate_at_k(ranked, held_out, k=None, *, per_user: bool = False):
    """Fraction of users with at least one relevant item in the top k."""
    return _metric("hit_rate", ranked, held_out, k, per_user)


def coverage(ranked, n_items: int, k=None) -> float:
    """Catalogue coverage: distinct item ids in the top k of all lists / ``n_items`` (-1 ignored)."""
    if isinstance(n_items, bool) or not isinstance(n_items, (int, np.integer)) or n_items <= 0:
        raise ValueError(f"n_items must be a positive integer, got {n_items!r}")
    r = _check_ranked(ranked, int(n_items), check_duplicates=False)
    k = _k_or_width(k, r.shape[1])
    ids = r[:, :k].ravel()
    ids = ids[ids >= 0]
    if ids.size == 0:
        return 0.0
    return float(np.unique(ids).size) / float(n_items)  # no n_items-long array: n_items may be huge


def ranking_metrics(ranked, held_out, ks=(20, 50, 100), metrics=RANKING_METRICS, *,
                    per_user: bool = False, check_duplicates: bool = True,
                    recall_denominator: str = "min_k") -> dict:
    """Several ranking metrics at several cut-offs from one membership lookup.

    Returns ``{"recall@20": ..., "ndcg@100": ..., "coverage@20": ..., "mrr@100": ...}`` (means, or
    per-user arrays with ``per_user=True``; coverage is always a scalar) plus ``"n_users"``: the
    number of users with a non-empty held-out row. ``recall_denominator``: ``"min_k"`` (hits /
    min(k, |held-out|), the default) or ``"n_relevant"`` (hits / |held-out|); see
    :func:`recall_at_k`.
    """
    recall_denominator = _check_recall_denominator(recall_denominator)
    if isinstance(ks, (int, np.integer)) and not isinstance(ks, (bool, np.bool_)):
        ks = (int(ks),)
    if isinstance(ks, (str, bytes)) or not hasattr(ks, "__iter__"):
        raise TypeError(f"ks must be a positive int or a sequence of them, got {type(ks).__name__} {ks!r}")
    ks = tuple(ks)
    if not ks:
        raise ValueError("ks must name at least one cut-off")
    per_user = check_bool(per_user, "per_user")
    check_duplicates = check_bool(check_duplicates, "check_duplicates")
    if isinstance(metrics, str):
        metrics = (metrics,)
    if not hasattr(metrics, "__iter__") or not all(isinstance(x, str) for x in metrics):
        raise TypeError(f"metrics must be a sequence of names from {RANKING_METRICS}, got {metrics!r}")
    unknown = set(metrics) - set(RANKING_METRICS)
    if unknown:
        raise ValueError(f"unknown metric(s) {sorted(unknown)}; choose from {RANKING_METRICS}")
    m = _canonical_csr(held_out, _n_ranked_rows(ranked))
    r = _check_ranked(ranked, m.shape[1], check_duplicates)
    ks = tuple(_k_or_width(k, r.shape[1]) for k in ks)
    h_all = _hits(r, m, max(ks))
    n_rel = _n_relevant(m)
    out = {}
    for name in metrics:
        for k in ks:
            if name == "coverage":
                out[f"coverage@{k}"] = coverage(r, m.shape[1], k)
                continue
            kw = {"denominator": recall_denominator} if name == "recall" else {}
            out[f"{name}@{k}"] = _finish(_KERNELS[name](h_all[:, :k], n_rel, k, **kw), n_rel, per_user)
    out["n_users"] = int((n_rel > 0).sum())
    return out


# -- rating metrics ---------------------------------------------------------------------------------

def _pair(y_true, y_pred):
    if sp.issparse(y_true) or sp.issparse(y_pred):
        if not (sp.issparse(y_true) and sp.issparse(y_pred)):
            raise TypeError("y_true and y_pred must both be sparse (same pattern) or both arrays")
        from ._validation import check_structure
        y_true, y_pred = check_structure(y_true, "y_true"), check_structure(y_pred, "y_pred")
        if y_true.shape != y_pred.shape:
            raise ValueError(f"shape mismatch: {y_true.shape} vs {y_pred.shape}")
        a, b = y_true.tocsr(copy=True), y_pred.tocsr(copy=True)
        a.sum_duplicates()
        b.sum_duplicates()
        if not (np.array_equal(a.indptr, b.indptr) and np.array_equal(a.indices, b.indices)):
            raise ValueError("y_true and y_pred must have the same sparsity pattern (predict at the "
                             "held-out entries)")
        t, p = a.data, b.data
    else:
        t, p = np.asarray(y_true), np.asarray(y_pred)
    for name, a in (("y_true", t), ("y_pred", p)):
        if np.asarray(a).dtype.kind not in "fiub":
            raise TypeError(f"{name} must be real numbers, got dtype {np.asarray(a).dtype}")
    t = np.asarray(t, dtype=np.float64).ravel()
    p = np.asarray(p, dtype=np.float64).ravel()
    if t.shape != p.shape:
        raise ValueError(f"y_true has {t.size} values but y_pred has {p.size}")
    if t.size == 0:
        raise ValueError("no ratings to compare")
    if not (np.all(np.isfinite(t)) and np.all(np.isfinite(p))):
        raise ValueError("ratings and predictions must be finite (found NaN/inf)")
    return t, p


def rmse(y_true, y_pred) -> float:
    """Root mean squared error over rated entries (1-D arrays, or two sparse matrices with the same
    pattern: the held-out ratings and the predictions at those entries)."""
    t, p = _pair(y_true, y_pred)
    return float(np.sqrt(np.mean((t - p) ** 2)))


def mae(y_true, y_pred) -> float:
    """Mean absolute error over rated entries (same inputs as :func:`rmse`)."""
    t, p = _pair(y_true, y_pred)
    return float(np.mean(np.abs(t - p)))

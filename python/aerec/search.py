"""Top-k inner-product / cosine search over item vectors (``aerec.search.TopK``).

Models use it for ``recommend`` (queries = user hidden vectors, items = decoder weight columns,
bias = decoder bias) and ``similar_items`` (cosine over item encodings).

Scores are ``<q, x_j> + b_j`` (``metric="ip"``) or ``<q/|q|, x_j/|x_j|>`` (``metric="cosine"``;
a zero-norm query or item scores 0 against everything). Results are sorted by descending score,
ties broken by the lower item id.

Conversions: items, bias and queries that are not float32 C-contiguous (float64, integer,
strided, Fortran-ordered) are copied once to float32 C-contiguous; that copy is the only one.
Ids are int32: an index holds at most 2**31 - 1 items (more raises ValueError).
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from . import _backends
from ._validation import check_k
from .io import read_model_file, register_model, save_arrays

__all__ = ["TopK", "reference_search"]

_METRICS = ("ip", "cosine")
_PRECISIONS = ("fp32", "bf16", "int8")


# ----------------------------------------------------------------------------------------------
# validation and conversion (done once, here)

def _as_float32_matrix(x, name, ndim_ok=(2,)):
    """float32, C-contiguous, finite. float64/int/bool inputs are converted (one copy)."""
    arr = np.asarray(x)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.floating)
                                   or np.issubdtype(arr.dtype, np.integer)
                                   or arr.dtype == np.bool_):
        raise TypeError(f"{name} must be a real numeric array, got dtype {arr.dtype}")
    if arr.ndim not in ndim_ok:
        raise ValueError(f"{name} must be {' or '.join(f'{n}-D' for n in ndim_ok)}, got ndim={arr.ndim}")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if arr.size and not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or inf; clean or impute them first")
    return arr


def _normalize_rows(x):
    """Rows scaled to unit norm in float64 (then float32); zero rows stay zero."""
    x64 = x.astype(np.float64)
    norms = np.sqrt(np.einsum("ij,ij->i", x64, x64))
    norms[norms == 0] = 1.0
    return np.ascontiguousarray(x64 / norms[:, None], dtype=np.float32)


def _exclude_csr(exclude, n_queries, n_items):
    """(indptr int64, indices int32) from a scipy.sparse matrix or a list of id arrays."""
    if exclude is None:
        return None, None
    try:
        import scipy.sparse as sp
    except ImportError:  # pragma: no cover - scipy is a dependency
        sp = None
    if sp is not None and sp.issparse(exclude):
        from ._validation import check_structure
        csr = check_structure(exclude, "exclude")  # a corrupt indptr must never reach the kernel
        if csr.shape[0] != n_queries:
            raise ValueError(f"exclude has {csr.shape[0]} rows but there are {n_queries} queries")
        indptr = np.asarray(csr.indptr, dtype=np.int64)
        indices = np.asarray(csr.indices)
    else:
        if isinstance(exclude, (str, bytes)) or not hasattr(exclude, "__iter__"):
            raise TypeError(f"exclude must be a scipy.sparse matrix or a sequence of item-id arrays (one per "
                            f"query), got {type(exclude).__name__}")
        rows = list(exclude)
        if len(rows) != n_queries:
            raise ValueError(f"exclude has {len(rows)} rows but there are {n_queries} queries; "
                             "pass one id array per query")
        empty = np.zeros(0, dtype=np.int32)
        arrs = []
        for r in rows:  # kept lean: this runs once per query
            a = r if type(r) is np.ndarray else np.asarray([] if r is None else r)
            if a.ndim != 1:
                if a.ndim != 0:
                    raise ValueError("each exclude row must be a 1-D array of item ids")
                a = a.reshape(1)
            if a.size == 0:
                a = empty
            arrs.append(a)
        lens = np.fromiter(map(len, arrs), dtype=np.int64, count=len(arrs))
        indptr = np.zeros(n_queries + 1, dtype=np.int64)
        np.cumsum(lens, out=indptr[1:])
        indices = np.concatenate(arrs) if arrs else empty
        if indices.dtype.kind not in "iu":
            for a in arrs:
                if a.dtype.kind not in "iu":
                    raise TypeError(f"excluded ids must be integers, got dtype {a.dtype}")
            indices = np.concatenate([a.astype(np.int64) for a in arrs])  # mixed int/uint
    if indices.size and not np.issubdtype(indices.dtype, np.integer):
        raise TypeError(f"excluded ids must be integers, got dtype {indices.dtype}")
    if indices.size:
        lo, hi = int(indices.min()), int(indices.max())
        if lo < 0 or hi >= n_items:
            bad = lo if lo < 0 else hi
            raise IndexError(f"excluded item id {bad} is out of range [0, {n_items})")
    return indptr, np.ascontiguousarray(indices, dtype=np.int32)


# ----------------------------------------------------------------------------------------------
# NumPy reference

def reference_search(items, queries, k, bias=None, exclude=None, metric="ip", block=256):
    """NumPy oracle: scores in float64 per query block, stable sort by (-score, id).

    Parameters
    ----------
    items : (n, d) array
    queries : (m, d) array
    k : int
    bias : (n,) array or None
    exclude : list of id arrays / scipy.sparse, one row per query, or None
    metric : "ip" or "cosine"

    Returns
    -------
    ids : (m, min(k, n)) int32, padded with -1 where a row has fewer valid items
    scores : (m, min(k, n)) float32, padded with -inf
    """
    items = _as_float32_matrix(items, "items")
    queries = _as_float32_matrix(queries, "queries")
    n = items.shape[0]
    k = check_k(k, n)
    if metric == "cosine":
        items, queries = _normalize_rows(items), _normalize_rows(queries)
    indptr, indices = _exclude_csr(exclude, queries.shape[0], n)
    kk = min(k, n)
    m = queries.shape[0]
    ids = np.full((m, kk), -1, dtype=np.int32)
    scores = np.full((m, kk), -np.inf, dtype=np.float32)
    X = items.astype(np.float64)
    order_ids = np.arange(n)
    for q0 in range(0, m, block):
        S = queries[q0:q0 + block].astype(np.float64) @ X.T
        if bias is not None:
            S += np.asarray(bias, dtype=np.float32).astype(np.float64)
        valid = np.ones(S.shape, dtype=bool)
        if indptr is not None:
            for r in range(S.shape[0]):
                valid[r, indices[indptr[q0 + r]:indptr[q0 + r + 1]]] = False
        for r in range(S.shape[0]):
            s = S[r]
            o = np.lexsort((order_ids, -s))
            o = o[valid[r, o]][:kk]
            ids[q0 + r, :o.size] = o
            scores[q0 + r, :o.size] = s[o]
    return ids, scores


# ----------------------------------------------------------------------------------------------

@register_model
class TopK:
    """Top-k search index over fixed item vectors.

    Parameters
    ----------
    items : (n_items, d) array
        Item vectors. float32 C-contiguous arrays are used as they are; anything else (float64,
        integers, non-contiguous) is converted once, explicitly, to a float32 copy. Must be
        finite; n_items >= 1.
    bias : (n_items,) array or None
        Added to every item's score (``metric="ip"`` only).
    metric : {"ip", "cosine"}
        Inner product, or cosine similarity (rows normalised at build / search; a zero-norm row
        scores 0).
    precision : {"fp32", "bf16", "int8"}
        ``fp32`` is exact. ``bf16`` / ``int8`` score every item approximately (AVX512-BF16 /
        AVX-512 VNNI / AVX-VNNI where available; int8: per-item symmetric 8-bit items, 7-bit queries
        ``max |q| / 63``, identical scores on every CPU), keep
        ``ceil(k * rescore)`` candidates and re-score them in fp32, so returned scores are fp32 inner
        products; recall depends on ``rescore``. These keep an fp32 copy of the items too,
        unless ``rescore=0``.
    rescore : int or float
        Candidate multiplier for the compressed precisions: the best ``ceil(k * rescore)``
        compressed candidates (at most n_items) are re-scored in fp32. Any number >= 1: ``1``
        only re-orders the compressed top k, so it keeps their recall; the default ``1.25``
        (a margin of k / 4) gave recall@k >= 0.9998 with int8 and bf16 on the benchmark
        workloads (benchmarks/RESULTS.md, issue 9), at a fraction of the cost of ``4``. ``0`` (bf16 / int8 only) keeps no
        fp32 copy of the items and returns the compressed scores of the best ``k`` (the memory
        of the index is then the compressed items only; ``export_items`` gives the dequantised
        items).
    prune : bool
        Order items by norm and skip item panels whose Cauchy-Schwarz bound
        (|q| max|x| + max b, widened by the fp32 rounding error) cannot beat the current k-th
        score. Exact for fp32; for bf16/int8 the bound uses the norms of the compressed vectors,
        so the candidate set is the same as without pruning. Pays off when item norms are skewed.
    backend : {"auto", "cpp", "numba", "numpy"}
        Backend that owns the index (see :func:`aerec.backends.get`; ``AEREC_BACKEND`` overrides
        "auto"). ``numpy`` is the reference: same quantisation, candidates and re-scoring, ids
        identical to ``cpp`` wherever scores are not tied; it scores item blocks, so its scratch
        stays bounded however many queries and items there are. With ``numpy`` the compiled
        module is never imported.
    num_threads : int or None
        Threads for building the index (None: ``aerec.get_num_threads()``).
    """

    def __init__(self, items, bias=None, metric="ip", precision="fp32", rescore=1.25, prune=False,
                 backend="auto", num_threads=None):
        if not isinstance(metric, str) or metric not in _METRICS:
            raise ValueError(f"metric must be one of {_METRICS}, got {metric!r}")
        if not isinstance(precision, str) or precision not in _PRECISIONS:
            raise ValueError(f"precision must be one of {_PRECISIONS}, got {precision!r}")
        if isinstance(rescore, (bool, np.bool_)) or not isinstance(rescore, numbers.Real) \
                or not math.isfinite(rescore) or not (rescore == 0 or rescore >= 1):
            raise ValueError("rescore must be 0 (bf16 / int8 without an fp32 copy) or a finite number >= 1 "
                             f"(candidates per result, e.g. 2 or 1.25), got {rescore!r}")
        if rescore == 0 and precision == "fp32":
            raise ValueError("rescore=0 (no fp32 copy) is for precision 'bf16' or 'int8'; fp32 needs rescore >= 1")
        if not isinstance(prune, (bool, np.bool_)):
            raise TypeError(f"prune must be True or False, got {type(prune).__name__}")
        num_threads = _threads(num_threads)
        items = _as_float32_matrix(items, "items")
        if items.shape[0] > 2 ** 31 - 1:
            raise ValueError(f"a TopK index holds at most {2 ** 31 - 1} items (int32 ids), got {items.shape[0]}")
        # more candidates than items cannot help: k * rescore is bounded by the item count
        rescore = min(_rescore_value(rescore), max(items.shape[0], 1))
        if items.shape[0] == 0:
            raise ValueError("cannot build a TopK index over zero items")
        if items.shape[1] == 0:
            raise ValueError("item vectors need at least one dimension")
        if bias is not None:
            if metric != "ip":
                raise ValueError("bias is only supported with metric='ip'")
            bias = _as_float32_matrix(bias, "bias", ndim_ok=(1,))
            if bias.shape[0] != items.shape[0]:
                raise ValueError(f"bias has length {bias.shape[0]}, expected n_items={items.shape[0]}")
        if metric == "cosine":
            items = _normalize_rows(items)
        self._init(items, bias, metric, precision, rescore, bool(prune), backend, num_threads)

    def _init(self, items, bias, metric, precision, rescore, prune, backend, num_threads):
        self.metric = metric
        self.precision = precision
        self.rescore = _rescore_value(rescore)
        self.prune = prune
        self.n_items, self.dim = items.shape
        be = _backends.get(backend)  # validates the name; the backend owns the index kernels
        self.backend = be.NAME
        self._index = be.TopkIndex(items, bias, precision, rescore, prune, _threads(num_threads))

    def search(self, queries, k, exclude=None, num_threads=None):
        """Best ``k`` items per query.

        Parameters
        ----------
        queries : (d,) or (m, d) array
            Converted once to float32 C-contiguous if needed; must be finite.
        k : int >= 1
            ``k > n_items`` returns all items (``min(k, n_items)`` columns).
        exclude : scipy.sparse matrix (m rows) or sequence of m id arrays, or None
            Item ids never returned for that query (any order, duplicates allowed). For a 1-D
            query a single id array is accepted.
        num_threads : int or None

        Returns
        -------
        ids : (m, min(k, n_items)) int32 (1-D for a 1-D query)
        scores : (m, min(k, n_items)) float32
            Sorted by descending score, ties by lower id. A row with fewer valid items than
            ``min(k, n_items)`` (because of exclusions) is padded with id -1 and score -inf.
        """
        k = check_k(k, self.n_items)
        num_threads = _threads(num_threads)
        if queries is None:
            raise TypeError("queries is None; pass a (d,) or (m, d) float array")
        q = np.asarray(queries)
        single = q.ndim == 1
        if single:
            q = q[None, :]
            if exclude is not None and not _is_sparse(exclude):
                ex = exclude if isinstance(exclude, np.ndarray) else np.asarray(exclude)
                if ex.dtype != object and ex.ndim <= 1:
                    exclude = [ex]
        q = _as_float32_matrix(q, "queries")
        if q.shape[1] != self.dim:
            raise ValueError(f"queries have dimension {q.shape[1]}, the index has {self.dim}")
        if self.metric == "cosine":
            q = _normalize_rows(q)
        indptr, indices = _exclude_csr(exclude, q.shape[0], self.n_items)
        if q.shape[0] == 0:
            kk = min(k, self.n_items)
            ids, scores = np.zeros((0, kk), np.int32), np.zeros((0, kk), np.float32)
        else:
            ids, scores = self._index.search(q, k, indptr, indices, _threads(num_threads))
        if single:
            return ids[0], scores[0]
        return ids, scores

    def memory_usage(self):
        """Bytes held by the index (packed items, scales, fp32 copy for re-scoring)."""
        return int(self._index.memory_usage())

    def _arrays(self):
        return self._index.export_items(), self._index.export_bias()

    # -- persistence -------------------------------------------------------------------------

    def save(self, path):
        """Write the index to ``path``: an aerec model file (npz, no pickle, versioned, written
        atomically via :func:`aerec.io.atomic_write`), whose SHA-256 digest covers the items, the
        bias and every header field (metric, precision, rescore, prune, sizes)."""
        items, bias = self._arrays()
        arrays = {"items": np.ascontiguousarray(items, dtype=np.float32)}
        if bias is not None:
            arrays["bias"] = np.ascontiguousarray(bias, dtype=np.float32)
        meta = {"class": "TopK", "metric": self.metric, "precision": self.precision,
                "rescore": self.rescore, "prune": bool(self.prune),
                "n_items": int(self.n_items), "dim": int(self.dim)}
        save_arrays(path, meta, arrays)

    @classmethod
    def load(cls, path, backend="auto", num_threads=None):
        """Read an index written by :meth:`save` (also ``aerec.load(path)``). A damaged, altered or
        inconsistent file raises :class:`aerec.ModelFileError` (a ValueError)."""
        _, header, arrays = read_model_file(path, expected_class="TopK")
        return cls._from_state(header, arrays, backend=backend, num_threads=num_threads)

    @classmethod
    def _from_state(cls, meta, arrays, backend="auto", num_threads=None):
        # checked against the TopK schema (aerec._schemas): items are stored as the kernel sees
        # them (already normalised for cosine)
        obj = cls.__new__(cls)
        obj._init(arrays["items"], arrays.get("bias"), meta["metric"], meta["precision"], meta["rescore"],
                  meta["prune"], backend, num_threads)
        return obj

    def __repr__(self):
        return (f"TopK(n_items={self.n_items}, dim={self.dim}, metric={self.metric!r}, "
                f"precision={self.precision!r}, prune={self.prune}, backend={self.backend!r})")


def _rescore_value(r):
    """``rescore`` as an int when it is a whole number (as saved and shown), else a float."""
    r = float(r)
    return int(r) if r.is_integer() else r


def _is_sparse(x):
    try:
        import scipy.sparse as sp
    except ImportError:  # pragma: no cover
        return False
    return sp.issparse(x)


def _threads(num_threads):
    from ._validation import check_num_threads
    return check_num_threads(num_threads)

"""Train / validation / test splits of :class:`~aerec.data.Interactions`.

Protocols
---------
- :func:`random_split`: per user, a random fraction of the interactions is held out (weak
  generalisation: every user is a row of ``train``).
- :func:`temporal_split`: per user, the last ``n`` interactions by timestamp are held out.
- :func:`kfold_split`: the interactions (not users) are cut into ``n_folds`` random folds.
- :func:`strong_generalization_split`: whole users are held out (Liang et al. 2018, "Variational
  autoencoders for collaborative filtering"): ``n_test_users`` + ``n_validation_users`` users are
  removed from training; for each of them a random ``fold_in_fraction`` of their interactions is
  given to the model (fold-in) and the rest is evaluated.

Items seen only in held-out data
--------------------------------
Every split keeps only the items that have at least one training interaction: items that appear
only in validation / test data are dropped from every part (their entries are removed from the
evaluation sets), as Liang et al. do. A model can never learn such items, and keeping them would
only add unreachable targets. ``Split.info["dropped_heldout_entries"]`` counts the removed entries
and ``train.item_map`` is the item space of every part.

Rules for small users
---------------------
A user with ``n`` interactions holds out ``clip(round(fraction * n), 1, n - 1)`` of them if
``n >= 2`` and none if ``n < 2`` (at least one interaction always stays in training / fold-in).
Weak-generalisation evaluation sets contain only users with at least one held-out interaction;
strong-generalisation sets contain every chosen user (a user left with fewer than 2 interactions
has an empty held-out row, which the metrics skip).
"""
from __future__ import annotations

import dataclasses

import numpy as np
import scipy.sparse as sp

from .interactions import Interactions, _csr, _rows_of

__all__ = ["EvalSet", "Split", "random_split", "temporal_split", "kfold_split",
           "strong_generalization_split"]


@dataclasses.dataclass
class EvalSet:
    """Users to evaluate, what the model sees of them, and what it should retrieve.

    Attributes
    ----------
    users : ndarray of int64, shape (n_eval_users,)
        ``known_users=True``: row indices of these users in ``Split.train``. ``known_users=False``:
        row indices in the source ``Interactions`` the split was made from (they are not rows of
        train).
    fold_in : csr_matrix, shape (n_eval_users, n_items)
        History given to the model (the users' train rows when ``known_users``).
    held_out : csr_matrix, shape (n_eval_users, n_items)
        Interactions to retrieve (ratings as data when the source had ratings).
    known_users : bool
        True for weak generalisation (users are train rows: recommend by user id); False for strong
        generalisation (the model folds the users in from ``fold_in``).
    raw_users : ndarray, shape (n_eval_users,), optional
        Raw user ids.
    """

    #: "validation" or "test" for the sets of an aerec split (set by the split; not a field)
    role = None

    users: np.ndarray
    fold_in: sp.csr_matrix
    held_out: sp.csr_matrix
    known_users: bool
    raw_users: np.ndarray | None = None

    def __post_init__(self):
        users = np.asarray(self.users)
        if users.ndim != 1:
            raise ValueError(f"users must be 1-D (one id per row of fold_in / held_out), got shape {users.shape}")
        if users.dtype.kind not in "iu" and not (users.size == 0 and users.dtype.kind in "fO"):
            # np.asarray(..., dtype=int64) would truncate 0.5 to user 0 without a word
            raise TypeError(f"users must be integer user ids, got dtype {users.dtype}; pass "
                            "np.asarray(users, dtype=np.int64) if they are whole numbers")
        if users.dtype.kind == "u" and users.size and int(users.max()) > 2 ** 63 - 1:
            raise ValueError(f"users contains {int(users.max())}, beyond int64")
        self.users = users.astype(np.int64, copy=False)
        n = self.users.shape[0]
        for name in ("fold_in", "held_out"):
            m = getattr(self, name)
            if not sp.issparse(m):
                raise TypeError(f"{name} must be a scipy.sparse matrix")
            from .._validation import check_structure
            m = check_structure(m, name)
            setattr(self, name, m)
            if m.shape[0] != n:
                raise ValueError(f"{name} has {m.shape[0]} rows for {n} users")
        if self.fold_in.shape[1] != self.held_out.shape[1]:
            raise ValueError(f"fold_in has {self.fold_in.shape[1]} items but held_out has "
                             f"{self.held_out.shape[1]}")

    @property
    def n_users(self) -> int:
        return int(self.users.shape[0])

    @property
    def n_items(self) -> int:
        return int(self.held_out.shape[1])

    def __repr__(self) -> str:
        return (f"EvalSet(n_users={self.n_users}, n_items={self.n_items}, fold_in_nnz={self.fold_in.nnz}, "
                f"held_out_nnz={self.held_out.nnz}, known_users={self.known_users})")


@dataclasses.dataclass
class Split:
    """``train`` (Interactions), ``validation`` (EvalSet or None), ``test`` (EvalSet), ``info``."""

    train: Interactions
    validation: EvalSet | None
    test: EvalSet
    info: dict = dataclasses.field(default_factory=dict)

    def __repr__(self) -> str:
        return f"Split(train={self.train!r}, validation={self.validation!r}, test={self.test!r})"


# -- helpers --------------------------------------------------------------------------------------

def _rng(random_state):
    from .._validation import as_rng
    return as_rng(random_state)


def _check_data(data):
    if not isinstance(data, Interactions):
        raise TypeError(f"data must be aerec.data.Interactions, got {type(data).__name__}")


def _check_fraction(name, f, allow_zero):
    from .._validation import check_real
    f = check_real(f, name)
    lo_ok = f >= 0 if allow_zero else f > 0
    if not (lo_ok and f < 1):
        raise ValueError(f"{name} must be in {'[0' if allow_zero else '(0'}, 1), got {f}")
    return f


def _n_holdout(counts, fraction):
    """Per-user held-out count: clip(round(f*n), 1, n-1) for n >= 2, else 0."""
    counts = counts.astype(np.int64)
    if fraction <= 0:
        return np.zeros_like(counts)
    n = np.floor(fraction * counts + 0.5).astype(np.int64)
    n = np.clip(n, 1, np.maximum(counts - 1, 1))
    n[counts < 2] = 0
    return n


def _rank_in_row(indptr, rows, key):
    """Rank (0-based) of every entry within its row when the row is sorted by ``key`` ascending.

    ``rows`` must be non-decreasing (CSR order). Keys in [0, 1) (random draws) use one fast argsort
    of ``rows + key``; other keys a stable lexsort (ties keep CSR order).
    """
    if key.dtype.kind == "f" and key.size and key.min() >= 0 and key.max() < 1 and rows[-1] < 2 ** 20:
        order = np.argsort(rows + 0.5 * key)  # 0.5: rounding can never reach the next row
    else:
        order = np.lexsort((key, rows))
    rank = np.empty(rows.shape[0], np.int64)
    rank[order] = np.arange(rows.shape[0], dtype=np.int64) - indptr[rows[order]]
    return rank


def _build_split(data: Interactions, part: np.ndarray, info: dict) -> Split:
    """part: per entry 0 = train, 1 = validation, 2 = test (weak generalisation)."""
    m = data.to_csr()
    train_full = data._select_entries(part == 0)
    item_keep = train_full.item_counts() > 0
    train = train_full._select_entries(np.ones(train_full.nnz, bool), item_keep=item_keep)
    train.report.n_output = train.nnz
    new_col = np.full(data.n_items, -1, np.int64)
    new_col[item_keep] = np.arange(int(item_keep.sum()))
    rows = _rows_of(m.indptr)
    cols = new_col[m.indices]
    train_csr = train.to_csr()
    dropped = 0
    sets = {}
    for p, name in ((1, "validation"), (2, "test")):
        sel = (part == p)
        if not np.any(sel) and name == "validation":
            sets[name] = None
            continue
        ok = sel & (cols >= 0)
        dropped += int(sel.sum() - ok.sum())
        r, c, v = rows[ok], cols[ok], m.data[ok]
        counts = np.bincount(r, minlength=data.n_users)
        users = np.flatnonzero(counts)
        remap = np.full(data.n_users, -1, np.int64)
        remap[users] = np.arange(users.size)
        indptr = np.zeros(users.size + 1, np.int64)
        np.cumsum(counts[users], out=indptr[1:])
        held = _csr(v, c, indptr, (users.size, train.n_items))
        sets[name] = EvalSet(users=users, fold_in=train_csr[users], held_out=held, known_users=True,
                             raw_users=data.user_map.to_raw(users))
    info = dict(info)
    info["dropped_items"] = int((~item_keep).sum())
    info["dropped_heldout_entries"] = dropped
    return _tag(Split(train=train, validation=sets["validation"], test=sets["test"], info=info))


def _seed_of(random_state):
    """The seed a split records in ``info`` (None for a Generator, whose state is not a seed)."""
    if isinstance(random_state, (int, np.integer)) and not isinstance(random_state, bool):
        return int(random_state)
    return None


def _tag(split: Split) -> Split:
    """Let the parts say where they came from: ``train.split_info`` (what a model's card records
    when fitted on it) and each EvalSet's ``role`` ("validation" / "test")."""
    split.train.split_info = dict(split.info)
    for role in ("validation", "test"):
        ev = getattr(split, role)
        if ev is not None:
            ev.role = role
    return split


# -- protocols --------------------------------------------------------------------------------------

def random_split(data: Interactions, test_fraction: float = 0.2, validation_fraction: float = 0.0, *,
                 random_state=0) -> Split:
    """Per-user random holdout (weak generalisation).

    For each user, ``test_fraction`` of the interactions go to ``test`` and ``validation_fraction``
    to ``validation`` (see the module notes for the rounding of small users); the rest is ``train``.
    ``EvalSet.fold_in`` is the users' train rows for both evaluation sets.
    """
    _check_data(data)
    tf = _check_fraction("test_fraction", test_fraction, False)
    vf = _check_fraction("validation_fraction", validation_fraction, True)
    if tf + vf >= 1:
        raise ValueError(f"test_fraction + validation_fraction must be < 1, got {tf + vf}")
    rng = _rng(random_state)
    m = data.to_csr()
    counts = data.user_counts()
    n_test = _n_holdout(counts, tf)
    n_val = np.minimum(_n_holdout(counts, vf), np.maximum(counts - 1 - n_test, 0))
    rows = _rows_of(m.indptr)
    rank = _rank_in_row(m.indptr, rows, rng.random(data.nnz))
    part = np.zeros(data.nnz, np.int8)
    part[rank < n_test[rows]] = 2
    part[(rank >= n_test[rows]) & (rank < (n_test + n_val)[rows])] = 1
    return _build_split(data, part, {"protocol": "random", "test_fraction": tf,
                                     "validation_fraction": vf, "random_state": _seed_of(random_state)})


def temporal_split(data: Interactions, n_test: int = 1, n_validation: int = 0) -> Split:
    """Per-user leave-last-``n_test`` out by timestamp (the ``n_validation`` before them validate).

    Ties in time are broken by item index (the lower index counts as later; deterministic). A user keeps at least one training
    interaction. Needs timestamps.
    """
    _check_data(data)
    if data.timestamps is None:
        raise ValueError("temporal_split needs timestamps; these interactions have none "
                         "(use random_split, or build them with timestamps=...)")
    for name, v in (("n_test", n_test), ("n_validation", n_validation)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
            raise ValueError(f"{name} must be an integer >= 0, got {v!r}")
    if n_test < 1:
        raise ValueError(f"n_test must be >= 1, got {n_test}")
    n_test, n_validation = min(int(n_test), 2 ** 62), min(int(n_validation), 2 ** 62)  # > any count
    m = data.to_csr()
    counts = data.user_counts()
    nt = np.minimum(n_test, np.maximum(counts - 1, 0))
    nv = np.minimum(n_validation, np.maximum(counts - 1 - nt, 0))
    rows = _rows_of(m.indptr)
    # rank 0 = latest; equal timestamps keep CSR (item index) order: the lower item index counts as later
    rank = _rank_in_row(m.indptr, rows, -data.timestamps)
    part = np.zeros(data.nnz, np.int8)
    part[rank < nt[rows]] = 2
    part[(rank >= nt[rows]) & (rank < (nt + nv)[rows])] = 1
    return _build_split(data, part, {"protocol": "temporal", "n_test": int(n_test),
                                     "n_validation": int(n_validation)})


def kfold_split(data: Interactions, n_folds: int = 5, *, random_state=0) -> list[Split]:
    """K-fold cross-validation over interactions: a seeded random permutation of all entries is cut
    into ``n_folds`` folds of (almost) equal size; split ``f`` tests on fold ``f`` and trains on the
    rest. Returns a list of ``n_folds`` :class:`Split` (no validation set).
    """
    _check_data(data)
    if isinstance(n_folds, bool) or not isinstance(n_folds, (int, np.integer)) or n_folds < 2:
        raise ValueError(f"n_folds must be an integer >= 2, got {n_folds!r}")
    if data.nnz < n_folds:
        raise ValueError(f"cannot make {n_folds} folds from {data.nnz} interactions")
    rng = _rng(random_state)
    fold = np.empty(data.nnz, np.int64)
    fold[rng.permutation(data.nnz)] = np.arange(data.nnz) % n_folds
    out = []
    for f in range(int(n_folds)):
        part = np.where(fold == f, 2, 0).astype(np.int8)
        out.append(_build_split(data, part, {"protocol": "kfold", "fold": f, "n_folds": int(n_folds),
                                               "random_state": _seed_of(random_state)}))
    return out


def strong_generalization_split(data: Interactions, n_validation_users: int, n_test_users: int, *,
                                fold_in_fraction: float = 0.8, random_state=0) -> Split:
    """Held-out users (strong generalisation, Liang et al. 2018).

    A seeded random permutation of the users picks ``n_test_users`` test and
    ``n_validation_users`` validation users; ``train`` holds only the other users. Items without a
    training interaction are dropped everywhere. For each held-out user, a random
    ``fold_in_fraction`` of their (remaining) interactions is ``fold_in`` and the rest ``held_out``
    (rounding as in the module notes). ``EvalSet.users`` are row indices into ``data``;
    ``known_users`` is False.
    """
    _check_data(data)
    for name, v in (("n_validation_users", n_validation_users), ("n_test_users", n_test_users)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
            raise ValueError(f"{name} must be an integer >= 0, got {v!r}")
    # Python ints from here on: NumPy unsigned arithmetic would wrap (uint64 max + 2 == 1)
    n_validation_users, n_test_users = int(n_validation_users), int(n_test_users)
    if n_test_users < 1:
        raise ValueError("n_test_users must be >= 1")
    if n_validation_users + n_test_users >= data.n_users:
        raise ValueError(f"n_validation_users + n_test_users ({n_validation_users + n_test_users}) "
                         f"must leave training users (data has {data.n_users})")
    from .._validation import check_real
    fi = check_real(fold_in_fraction, "fold_in_fraction")
    if not 0 < fi < 1:
        raise ValueError(f"fold_in_fraction must be in (0, 1), got {fold_in_fraction}")
    rng = _rng(random_state)
    perm = rng.permutation(data.n_users)
    test_users = np.sort(perm[:n_test_users])
    val_users = np.sort(perm[n_test_users:n_test_users + n_validation_users])
    train_users = np.sort(perm[n_test_users + n_validation_users:])
    train_all = data.subset_users(train_users)
    item_keep = train_all.item_counts() > 0
    train = train_all._select_entries(np.ones(train_all.nnz, bool), item_keep=item_keep)
    train.report.n_output = train.nnz
    new_col = np.full(data.n_items, -1, np.int64)
    new_col[item_keep] = np.arange(int(item_keep.sum()))
    dropped = 0
    sets = {}
    for name, users in (("test", test_users), ("validation", val_users)):
        if users.size == 0:
            sets[name] = None
            continue
        sub = data.user_items(users)
        rows = _rows_of(sub.indptr)
        cols = new_col[sub.indices]
        ok = cols >= 0
        dropped += int((~ok).sum())
        r, c, v = rows[ok], cols[ok], sub.data[ok]
        counts = np.bincount(r, minlength=users.size)
        indptr = np.zeros(users.size + 1, np.int64)
        np.cumsum(counts, out=indptr[1:])
        n_hold = _n_holdout(counts, 1.0 - fi)
        rank = _rank_in_row(indptr, r, rng.random(r.size))
        held = rank < n_hold[r]

        def part_csr(mask):
            cnt = np.bincount(r[mask], minlength=users.size)
            ip = np.zeros(users.size + 1, np.int64)
            np.cumsum(cnt, out=ip[1:])
            return _csr(v[mask], c[mask], ip, (users.size, train.n_items))

        sets[name] = EvalSet(users=users, fold_in=part_csr(~held), held_out=part_csr(held),
                             known_users=False, raw_users=data.user_map.to_raw(users))
    info = {"protocol": "strong_generalization", "fold_in_fraction": fi,
            "n_validation_users": int(n_validation_users), "n_test_users": int(n_test_users),
            "dropped_items": int((~item_keep).sum()), "dropped_heldout_entries": dropped}
    info["random_state"] = _seed_of(random_state)
    return _tag(Split(train=train, validation=sets["validation"], test=sets["test"], info=info))


def holdout_rows(X, held_out_fraction: float = 0.2, *, random_state=0) -> EvalSet:
    """Split each row of a users x items matrix into ``fold_in`` and ``held_out`` (strong
    generalisation of users not in training, as :func:`strong_generalization_split` does for its
    held-out users): a seeded random ``held_out_fraction`` of each row's interactions is held out
    (rounding as in the module notes: rows with one interaction hold none out and are not
    evaluated). ``Recommender.score(X)`` uses it.

    Returns
    -------
    EvalSet with ``users = arange(n_rows)`` and ``known_users=False``.
    """
    from .._validation import as_csr
    X = as_csr(X, "X")
    f = _check_fraction("held_out_fraction", held_out_fraction, False)
    rng = _rng(random_state)
    X = X.tocsr()
    X.sort_indices()
    counts = np.diff(X.indptr).astype(np.int64)
    rows = np.repeat(np.arange(X.shape[0], dtype=np.int64), counts)
    n_hold = _n_holdout(counts, f)
    rank = _rank_in_row(X.indptr.astype(np.int64), rows, rng.random(rows.size)) if rows.size else rows
    held = rank < n_hold[rows]

    def part(mask):
        cnt = np.bincount(rows[mask], minlength=X.shape[0])
        ip = np.zeros(X.shape[0] + 1, np.int64)
        np.cumsum(cnt, out=ip[1:])
        return sp.csr_matrix((X.data[mask], X.indices[mask], ip), shape=X.shape)

    return EvalSet(users=np.arange(X.shape[0], dtype=np.int64), fold_in=part(~held), held_out=part(held),
                   known_users=False)

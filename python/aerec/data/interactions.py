"""``Interactions``: a users x items CSR matrix with id maps, optional ratings and timestamps."""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from . import cleaning
from .cleaning import CleaningReport, emit
from .idmap import IdMap

__all__ = ["Interactions"]

_ON_INVALID = ("warn", "drop", "raise")
_DUPLICATES = ("last", "first", "sum", "raise")


def _check_choice(name, value, choices):
    from .._validation import check_choice
    check_choice(value, name, choices)


def _csr(data, indices, indptr, shape) -> sp.csr_matrix:
    """CSR with float32 data and int32 indices (int64 for both index arrays past 2^31 entries)."""
    idx_dtype = np.int32 if (indices.shape[0] < 2 ** 31 and max(shape) < 2 ** 31) else np.int64
    m = sp.csr_matrix((np.asarray(data, dtype=np.float32),
                       np.asarray(indices, dtype=idx_dtype),
                       np.asarray(indptr, dtype=idx_dtype)), shape=shape, copy=False)
    m.has_sorted_indices = True
    return m


def _sort_pairs(key: np.ndarray, ts: np.ndarray | None):
    """Order sorting ``key``; within equal keys by (timestamp, row position) ascending.

    Returns (order, key[order], new_run) where new_run marks the first entry of each distinct key.
    A fast unstable argsort does the bulk; only runs of repeated keys are re-sorted with a lexsort
    (usually few), which is much cheaper than a stable or multi-key sort of everything.
    """
    order = np.argsort(key)
    skey = key[order]
    new_run = np.empty(skey.size, dtype=bool)
    if skey.size:
        new_run[0] = True
        np.not_equal(skey[1:], skey[:-1], out=new_run[1:])
        if not new_run.all():
            # entries of runs longer than one: a repeat, or the first of a run followed by a repeat
            in_dup = ~new_run
            in_dup[:-1] |= ~new_run[1:]
            sub = order[in_dup]
            keys = (sub, key[sub]) if ts is None else (sub, ts[sub], key[sub])
            order[in_dup] = sub[np.lexsort(keys)]
    return order, skey, new_run


def _factorize(arr: np.ndarray):
    """(sorted unique values, inverse) of a 1-D array; O(n) for integers in a compact range."""
    if arr.dtype.kind in "iu" and arr.size:
        lo, hi = int(arr.min()), int(arr.max())
        span = hi - lo + 1
        if span <= 4 * arr.size + (1 << 20) and hi < 2 ** 62:
            present = np.zeros(span, dtype=bool)
            off = arr - lo
            present[off] = True
            uniq = np.flatnonzero(present)
            slot = np.cumsum(present, dtype=np.int64) - 1
            return (uniq + lo).astype(arr.dtype), slot[off]
    uniq, inv = np.unique(arr, return_inverse=True)
    return uniq, inv.ravel()


def _rows_of(indptr: np.ndarray) -> np.ndarray:
    """Row index of every CSR entry (int64, length nnz)."""
    n = indptr.shape[0] - 1
    return np.repeat(np.arange(n, dtype=np.int64), np.diff(indptr).astype(np.int64))


class Interactions:
    """Interaction data: a users x items CSR matrix, raw id maps, optional ratings and timestamps.

    Build one with :meth:`from_arrays`, :meth:`from_dataframe`, :meth:`from_csr` or :meth:`read_csv`
    (or ``aerec.datasets``); do not call the constructor with unchecked data.

    Attributes
    ----------
    n_users, n_items, nnz : int
    user_map, item_map : IdMap
        Raw id <-> row / column index.
    values : ndarray of float32, shape (nnz,), or None
        Ratings aligned with the CSR entries (row-major, sorted columns), or None for implicit
        (binary) data, where every stored entry is 1.
    timestamps : ndarray of int64, shape (nnz,), or None
        Unix seconds aligned with the CSR entries.
    report : CleaningReport
        Rows dropped while building / filtering, and why.

    Notes
    -----
    The matrix is ``scipy.sparse.csr_matrix`` with float32 data, int32 indices (int64 past 2**31
    entries), sorted column indices and no duplicates or explicit zeros. Treat it as read-only.
    """

    def __init__(self, matrix: sp.csr_matrix, user_map: IdMap, item_map: IdMap, *,
                 explicit: bool, timestamps: np.ndarray | None = None,
                 report: CleaningReport | None = None):
        if matrix.shape != (len(user_map), len(item_map)):
            raise ValueError(f"matrix shape {matrix.shape} does not match the id maps "
                             f"({len(user_map)} users, {len(item_map)} items)")
        if timestamps is not None:
            timestamps = np.asarray(timestamps, dtype=np.int64)
            if timestamps.shape != (matrix.nnz,):
                raise ValueError(f"timestamps must have shape ({matrix.nnz},), got {timestamps.shape}")
        self._m = matrix
        self.user_map = user_map
        self.item_map = item_map
        self._explicit = bool(explicit)
        self.timestamps = timestamps
        self.report = report if report is not None else CleaningReport(matrix.nnz, matrix.nnz)

    # -- basic properties -------------------------------------------------------------------------
    @property
    def n_users(self) -> int:
        return int(self._m.shape[0])

    @property
    def n_items(self) -> int:
        return int(self._m.shape[1])

    @property
    def nnz(self) -> int:
        return int(self._m.nnz)

    @property
    def shape(self) -> tuple[int, int]:
        return self._m.shape

    @property
    def values(self) -> np.ndarray | None:
        return self._m.data if self._explicit else None

    @property
    def is_explicit(self) -> bool:
        """True when ``values`` holds ratings; False for binary implicit feedback."""
        return self._explicit

    @property
    def density(self) -> float:
        cells = self.n_users * self.n_items
        return self.nnz / cells if cells else 0.0

    def to_csr(self, copy: bool = False) -> sp.csr_matrix:
        """The users x items CSR matrix (float32 data: ratings, or 1 for implicit data)."""
        return self._m.copy() if copy else self._m

    def user_counts(self) -> np.ndarray:
        """Interactions per user, int64 array of shape (n_users,)."""
        return np.diff(self._m.indptr).astype(np.int64)

    def item_counts(self) -> np.ndarray:
        """Interactions per item, int64 array of shape (n_items,)."""
        return np.bincount(self._m.indices, minlength=self.n_items).astype(np.int64)

    def _user_rows(self, users) -> np.ndarray:
        idx = np.asarray(users)
        if idx.dtype == bool:
            if idx.shape != (self.n_users,):
                raise ValueError(f"boolean user mask must have shape ({self.n_users},), got {idx.shape}")
            return np.flatnonzero(idx)
        if idx.dtype.kind not in "iu":
            raise TypeError(f"users must be row indices (integers) or a boolean mask, got dtype "
                            f"{idx.dtype}; map raw ids with interactions.user_map.to_index(ids)")
        idx = idx.astype(np.int64, copy=False).ravel()
        if idx.size and (idx.min() < 0 or idx.max() >= self.n_users):
            bad = idx[(idx < 0) | (idx >= self.n_users)][0]
            raise IndexError(f"user index {int(bad)} out of range for {self.n_users} users")
        return idx

    def user_items(self, users) -> sp.csr_matrix:
        """CSR rows (shape ``(len(users), n_items)``) of the given user row indices."""
        scalar = np.ndim(users) == 0
        rows = self._user_rows(np.atleast_1d(users) if scalar else users)
        return self._m[rows]

    def __repr__(self) -> str:
        vals = "binary"
        if self._explicit and self.nnz:
            vals = f"values in [{float(self._m.data.min()):g}, {float(self._m.data.max()):g}]"
        ts = ", timestamps" if self.timestamps is not None else ""
        return (f"Interactions(n_users={self.n_users}, n_items={self.n_items}, nnz={self.nnz}, "
                f"density={100 * self.density:.3g}%, {vals}{ts})")

    def __len__(self) -> int:
        return self.nnz

    # -- entry-level views ---------------------------------------------------------------------------
    def to_arrays(self, raw_ids: bool = False) -> dict:
        """COO columns ``{"users", "items", "values", "timestamps"}`` in CSR order.

        ``users``/``items`` are indices, or raw ids with ``raw_ids=True``; ``values`` and
        ``timestamps`` are None when absent.
        """
        from .._validation import check_bool
        raw_ids = check_bool(raw_ids, "raw_ids")
        rows = _rows_of(self._m.indptr)
        cols = self._m.indices.astype(np.int64)
        if raw_ids:
            rows, cols = self.user_map.to_raw(rows), self.item_map.to_raw(cols)
        return {"users": rows, "items": cols,
                "values": None if not self._explicit else self._m.data.copy(),
                "timestamps": None if self.timestamps is None else self.timestamps.copy()}

    def _select_entries(self, keep: np.ndarray, *, user_keep=None, item_keep=None,
                        ones: bool = False, explicit=None, report=None) -> "Interactions":
        """New object with entries under ``keep`` and, optionally, only the kept users/items."""
        m = self._m
        rows = _rows_of(m.indptr)[keep]
        cols = m.indices[keep].astype(np.int64)
        data = np.ones(rows.shape[0], np.float32) if ones else m.data[keep]
        ts = None if self.timestamps is None else self.timestamps[keep]
        umap, imap = self.user_map, self.item_map
        n_u, n_i = self.n_users, self.n_items
        if user_keep is not None:
            new = np.full(n_u, -1, np.int64)
            kept = np.flatnonzero(user_keep)
            new[kept] = np.arange(kept.size)
            rows = new[rows]
            umap, n_u = umap.subset(kept), kept.size
        if item_keep is not None:
            new = np.full(n_i, -1, np.int64)
            kept = np.flatnonzero(item_keep)
            new[kept] = np.arange(kept.size)
            cols = new[cols]
            imap, n_i = imap.subset(kept), kept.size
        if np.any(rows < 0) or np.any(cols < 0):
            raise AssertionError("internal error: kept an entry of a dropped user/item")
        # monotone remaps keep the (row, col) order, so the CSR stays sorted
        indptr = np.zeros(n_u + 1, np.int64)
        np.cumsum(np.bincount(rows, minlength=n_u), out=indptr[1:])
        mat = _csr(data, cols, indptr, (n_u, n_i))
        return Interactions(mat, umap, imap, explicit=self._explicit if explicit is None else explicit,
                            timestamps=ts, report=report if report is not None else self.report.copy())

    # -- transforms ------------------------------------------------------------------------------------
    def subset_users(self, users) -> "Interactions":
        """New object with only these users (row indices or boolean mask), in the given order.

        The item space (``n_items``, ``item_map``) is unchanged.
        """
        rows = self._user_rows(users)
        if rows.size > 1:
            u, c = np.unique(rows, return_counts=True)
            if (c > 1).any():
                raise ValueError(f"subset_users got user {int(u[c > 1][0])} more than once; each user's raw id "
                                 "must stay unique: pass each user once (e.g. np.unique(users)), or use "
                                 "user_items(users) for a matrix with repeated rows")
        m = self._m[rows]
        m.sort_indices()
        ts = None
        if self.timestamps is not None:
            # gather the timestamps of the selected rows in the same order
            starts = self._m.indptr[rows].astype(np.int64)
            lens = np.diff(self._m.indptr)[rows].astype(np.int64)
            offs = np.arange(int(lens.sum()), dtype=np.int64) - np.repeat(np.cumsum(lens) - lens, lens)
            ts = self.timestamps[np.repeat(starts, lens) + offs]
        mat = _csr(m.data, m.indices, m.indptr, m.shape)
        rep = self.report.copy()
        rep.steps.append(f"subset_users({rows.size} users)")
        rep.n_output = mat.nnz
        return Interactions(mat, self.user_map.subset(rows), self.item_map, explicit=self._explicit,
                            timestamps=ts, report=rep)

    def binarize(self, threshold: float | None = None, *, drop_empty: bool = False) -> "Interactions":
        """Implicit (binary) copy: entries with ``value >= threshold`` become 1, the rest are dropped.

        ``threshold=None`` keeps every entry. Users/items left without entries stay in the id maps
        (as empty rows/columns) unless ``drop_empty=True``.
        """
        from .._validation import check_bool, check_real
        drop_empty = check_bool(drop_empty, "drop_empty")
        rep = self.report.copy()
        if threshold is None:
            keep = np.ones(self.nnz, dtype=bool)
        else:
            t = check_real(threshold, "threshold")
            if not self._explicit:
                raise ValueError("binarize(threshold) needs ratings, but these interactions are "
                                 "already binary; call binarize() without a threshold")
            keep = self._m.data >= np.float32(t)
            rep.add("below_threshold", int((~keep).sum()))
        rep.steps.append(f"binarize(threshold={threshold})")
        out = self._select_entries(keep, ones=True, explicit=False, report=rep)
        if drop_empty:
            out = out.filter(1, 1)
        out.report.n_output = out.nnz
        return out

    def filter(self, min_user_count: int = 1, min_item_count: int = 1, *,
               iterative: bool = True) -> "Interactions":
        """Drop users with fewer than ``min_user_count`` and items with fewer than ``min_item_count``
        interactions (and their entries). With ``iterative=True`` repeat until both hold (dropping
        items can push a user below the minimum and vice versa). Users/items left with no entries
        are removed from the id maps.
        """
        for name, v in (("min_user_count", min_user_count), ("min_item_count", min_item_count)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
                raise ValueError(f"{name} must be an integer >= 0, got {v!r}")
        from .._validation import check_bool
        iterative = check_bool(iterative, "iterative")
        mu, mi = max(int(min_user_count), 1), max(int(min_item_count), 1)
        rows = _rows_of(self._m.indptr)
        cols = self._m.indices
        keep = np.ones(self.nnz, dtype=bool)
        rounds = 0
        while True:
            rounds += 1
            uc = np.bincount(rows[keep], minlength=self.n_users)
            ic = np.bincount(cols[keep], minlength=self.n_items)
            new_keep = keep & (uc[rows] >= mu) & (ic[cols] >= mi)
            changed = int(keep.sum() - new_keep.sum())
            keep = new_keep
            if not iterative or changed == 0:
                break
        uc = np.bincount(rows[keep], minlength=self.n_users)
        ic = np.bincount(cols[keep], minlength=self.n_items)
        rep = self.report.copy()
        rep.add("min_count", int(self.nnz - keep.sum()))
        rep.steps.append(f"filter(min_user_count={min_user_count}, min_item_count={min_item_count}, "
                         f"iterative={iterative}): {rounds} round(s), {int((uc == 0).sum())} users and "
                         f"{int((ic == 0).sum())} items removed")
        out = self._select_entries(keep, user_keep=uc > 0, item_keep=ic > 0, report=rep)
        out.report.n_output = out.nnz
        return out

    # -- constructors ------------------------------------------------------------------------------
    @classmethod
    def from_arrays(cls, users, items, values=None, timestamps=None, *,
                    user_map: IdMap | None = None, item_map: IdMap | None = None,
                    duplicates: str = "last", on_invalid: str = "warn",
                    unknown: str = "raise") -> "Interactions":
        """Build from parallel columns of raw ids (integers or strings).

        Parameters
        ----------
        users, items : array-like, shape (n,)
            Raw user / item ids. Missing ids (None, NaN, empty strings) are invalid rows.
        values : array-like of float, shape (n,), optional
            Ratings or weights (kept; ``values`` of the result). NaN/inf/negative values are
            invalid rows; zeros are dropped (a sparse matrix cannot hold them). None: implicit data.
        timestamps : array-like, shape (n,), optional
            Unix seconds, ``datetime64`` or ISO-8601 strings. Missing, unparsable or negative
            timestamps are invalid rows.
        user_map, item_map : IdMap, optional
            Use these maps (e.g. a training set's) instead of building new ones from the data.
        duplicates : {"last", "first", "sum", "raise"}
            For repeated (user, item) pairs keep the latest (by timestamp, then by row order) or
            the earliest, add up their values, or raise ``ValueError``.
        on_invalid : {"warn", "drop", "raise"}
            Invalid rows are dropped and counted in ``report``; ``"warn"`` also emits a
            ``DataWarning`` summary, ``"raise"`` raises ``ValueError`` instead.
        unknown : {"raise", "drop"}
            With a given map: unknown raw ids raise ``KeyError`` naming the id, or are dropped.

        Returns
        -------
        Interactions
        """
        _check_choice("duplicates", duplicates, _DUPLICATES)
        _check_choice("on_invalid", on_invalid, _ON_INVALID)
        _check_choice("unknown", unknown, ("raise", "drop"))
        u_arr, u_missing = cleaning.id_column(users, "users")
        i_arr, i_missing = cleaning.id_column(items, "items")
        n = u_arr.shape[0]
        if i_arr.shape[0] != n:
            raise ValueError(f"users has {n} rows but items has {i_arr.shape[0]}; columns must have "
                             f"the same length")
        rep = CleaningReport(n_input=n)
        reason = np.zeros(n, dtype=np.int8)  # 0 = valid, else 1 + index into REASONS

        def mark(mask, name):
            sel = mask & (reason == 0)
            reason[sel] = 1 + cleaning.REASONS.index(name)

        mark(u_missing, "missing_user")
        mark(i_missing, "missing_item")
        vals = None
        if values is not None:
            vals = cleaning.value_column(values, n)
            with np.errstate(invalid="ignore"):
                mark(~np.isfinite(vals) | (vals < 0), "bad_value")
                mark(vals == 0, "zero_value")
            big = np.abs(vals[np.isfinite(vals)])
            if big.size and big.max() > np.finfo(np.float32).max:
                raise ValueError("values overflow float32")
        ts = None
        if timestamps is not None:
            ts, ts_bad = cleaning.timestamp_column(timestamps, n)
            mark(ts_bad, "bad_timestamp")

        if on_invalid == "raise" and np.any(reason):
            first = int(np.flatnonzero(reason)[0])
            counts = {cleaning.REASONS[r - 1]: int(c) for r, c in
                      zip(*np.unique(reason[reason > 0], return_counts=True))}
            raise ValueError(f"invalid rows: {counts}; first at row {first} "
                             f"(pass on_invalid='drop' or 'warn' to drop them)")
        # ids -> indices: given maps first (they can reject rows), then new maps from the rows left,
        # so that no user/item enters a new map with only rejected rows
        uidx = iidx = None
        if user_map is not None:
            valid = reason == 0
            uidx, umap = cls._index_ids(u_arr, valid, user_map, unknown, "user")
            mark(valid & (uidx < 0), "unknown_user")
        if item_map is not None:
            valid = reason == 0
            iidx, imap = cls._index_ids(i_arr, valid, item_map, unknown, "item")
            mark(valid & (iidx < 0), "unknown_item")
        valid = reason == 0
        if uidx is None:
            uidx, umap = cls._index_ids(u_arr, valid, None, unknown, "user")
        if iidx is None:
            iidx, imap = cls._index_ids(i_arr, valid, None, unknown, "item")
        for r, c in zip(*np.unique(reason[reason > 0], return_counts=True)):
            rep.add(cleaning.REASONS[r - 1], int(c))

        if not valid.all():
            sel = np.flatnonzero(valid)
            uidx, iidx = uidx[sel], iidx[sel]
            vals = None if vals is None else vals[sel]
            ts = None if ts is None else ts[sel]
            u_src, i_src = u_arr[sel], i_arr[sel]
        else:
            u_src, i_src = u_arr, i_arr
        n_u, n_i = len(umap), len(imap)
        key = uidx * np.int64(max(n_i, 1)) + iidx
        order, key, new_run = _sort_pairs(key, ts if duplicates in ("last", "first") else None)
        n_dup = int(key.size - new_run.sum())
        if n_dup and duplicates == "raise":
            d = int(order[np.flatnonzero(~new_run)[0]])
            raise ValueError(f"{n_dup} duplicate (user, item) rows, e.g. user {u_src[d]!r} item "
                             f"{i_src[d]!r}; pass duplicates='last'/'first'/'sum'")
        if n_dup == 0:
            at = None
            pick = order
        elif duplicates == "first":
            at = new_run
            pick = order[at]
        else:  # last of each run (also the representative for "sum")
            at = np.empty_like(new_run)
            if at.size:
                at[:-1] = new_run[1:]
                at[-1] = True
            pick = order[at]
        kept_keys = key if at is None else key[at]  # sorted: read rows/cols from it, no gather
        stride = np.int64(max(n_i, 1))
        rows, cols = kept_keys // stride, kept_keys % stride
        if vals is not None:
            if duplicates == "sum" and n_dup:
                run_id = np.cumsum(new_run) - 1
                out_vals = np.bincount(run_id, weights=vals[order], minlength=pick.size)
            else:
                out_vals = vals[pick]
        else:
            out_vals = np.ones(pick.size, np.float32)
        out_ts = None if ts is None else ts[pick]
        rep.add("duplicate", n_dup)
        rep.n_output = int(pick.size)
        rep.steps.append("from_arrays")
        indptr = np.zeros(n_u + 1, np.int64)
        np.cumsum(np.bincount(rows, minlength=n_u), out=indptr[1:])
        mat = _csr(out_vals, cols, indptr, (n_u, n_i))
        emit(rep, on_invalid)
        return cls(mat, umap, imap, explicit=vals is not None, timestamps=out_ts, report=rep)

    @staticmethod
    def _index_ids(arr, valid, idmap, unknown, what):
        if idmap is None:
            good = arr if valid.all() else arr[valid]
            uniq, inv = _factorize(good)
            if valid.all():
                return inv.astype(np.int64, copy=False), IdMap(uniq)
            idx = np.full(arr.shape[0], -1, np.int64)
            idx[valid] = inv
            return idx, IdMap(uniq)
        if not isinstance(idmap, IdMap):
            raise TypeError(f"{what}_map must be an IdMap, got {type(idmap).__name__}")
        idx = np.full(arr.shape[0], -1, np.int64)
        idx[valid] = idmap.to_index(arr[valid], missing="raise" if unknown == "raise" else "ignore")
        return idx, idmap

    @classmethod
    def from_csr(cls, matrix, *, user_ids=None, item_ids=None, timestamps=None,
                 explicit: bool | None = None, on_invalid: str = "warn") -> "Interactions":
        """Build from a scipy.sparse matrix (users x items).

        Duplicate entries are summed (scipy's convention), explicit zeros dropped, NaN/inf/negative
        entries dropped (or ``ValueError`` with ``on_invalid="raise"``). ``user_ids`` / ``item_ids``
        give raw ids (default ``0..n-1``). ``timestamps`` (shape (nnz,)) must align with
        ``matrix.data`` of a canonical CSR (sorted indices, no duplicates). ``explicit=None``
        treats the data as ratings unless every stored value is 1.
        """
        _check_choice("on_invalid", on_invalid, _ON_INVALID)
        if explicit is not None:
            from .._validation import check_bool
            explicit = check_bool(explicit, "explicit")
        if not sp.issparse(matrix):
            raise TypeError(f"matrix must be a scipy.sparse matrix, got {type(matrix).__name__}; "
                            f"use Interactions.from_arrays for columns")
        if matrix.ndim != 2:
            raise ValueError("matrix must be 2-D")
        from .._validation import check_structure
        matrix = check_structure(matrix, "matrix")  # a corrupt CSR must never reach scipy's C code
        if matrix.dtype.kind not in "fiub":
            raise TypeError(f"matrix values must be real numbers, got dtype {matrix.dtype}")
        m = sp.csr_matrix(matrix, dtype=np.float64, copy=True)
        if timestamps is not None:
            if not m.has_canonical_format:
                raise ValueError("timestamps need a canonical CSR (sorted indices, no duplicates); "
                                 "call matrix.sum_duplicates() first")
        else:
            m.sum_duplicates()
        n_u, n_i = m.shape
        umap = IdMap.identity(n_u) if user_ids is None else IdMap(user_ids)
        imap = IdMap.identity(n_i) if item_ids is None else IdMap(item_ids)
        if len(umap) != n_u or len(imap) != n_i:
            raise ValueError(f"user_ids/item_ids lengths ({len(umap)}, {len(imap)}) do not match the "
                             f"matrix shape {m.shape}")
        rep = CleaningReport(n_input=int(m.nnz))
        data = m.data
        finite = data[np.isfinite(data)]
        if finite.size and np.abs(finite).max() > np.finfo(np.float32).max:
            raise ValueError("matrix values overflow float32 (Interactions store float32); rescale them")
        with np.errstate(invalid="ignore"):
            bad = ~np.isfinite(data) | (data < 0)
            zero = ~bad & (data == 0)
        tsb = np.zeros(m.nnz, bool)
        ts = None
        if timestamps is not None:
            ts, tsb = cleaning.timestamp_column(timestamps, m.nnz)
            tsb &= ~bad & ~zero
        rep.add("bad_value", int(bad.sum()))
        rep.add("zero_value", int(zero.sum()))
        rep.add("bad_timestamp", int(tsb.sum()))
        if on_invalid == "raise" and rep.n_dropped:
            raise ValueError(f"invalid entries: {rep.dropped} (pass on_invalid='drop' or 'warn')")
        keep = ~(bad | zero | tsb)
        if explicit is None:
            explicit = not bool(np.all(data[keep] == 1))
        tmp = cls(_csr(m.data, m.indices, m.indptr, m.shape), umap, imap, explicit=explicit,
                  timestamps=ts, report=rep)
        out = tmp._select_entries(keep, report=rep) if not np.all(keep) else tmp
        rep.n_output = out.nnz
        rep.steps.append("from_csr")
        emit(rep, on_invalid)
        return out

    @classmethod
    def from_dataframe(cls, df, user_col: str | None = None, item_col: str | None = None,
                       value_col: str | None = None, timestamp_col: str | None = None,
                       **kwargs) -> "Interactions":
        """Build from a pandas DataFrame (pandas is imported lazily; only needed here).

        Column names default to the first present of: user ``user, user_id, userId, userid``;
        item ``item, item_id, itemId, movieId, movie_id``; value ``rating, value, score``
        (none: implicit); timestamp ``timestamp, ts, time, datetime`` (none: no timestamps).
        Pass ``value_col=False`` / ``timestamp_col=False`` to ignore such columns. Other keyword
        arguments go to :meth:`from_arrays`.
        """
        from ._frames import dataframe_columns
        cols = dataframe_columns(df, user_col, item_col, value_col, timestamp_col)
        return cls.from_arrays(cols["users"], cols["items"], cols["values"], cols["timestamps"], **kwargs)

    @classmethod
    def read_csv(cls, path, sep: str = ",", columns=None, *, header="infer", binarize=None,
                 encoding: str = "utf-8-sig", **kwargs) -> "Interactions":
        """Read a delimited text log (CSV, TSV, MovieLens ``::``).

        Parameters
        ----------
        path : str or PathLike
        sep : str or None
            Field separator, e.g. ``","``, ``"\\t"`` or ``"::"`` (multi-character separators work);
            None detects it from the first line (``::``, tab, ``,``, ``;``, ``|``).
        columns : sequence or dict, optional
            Which fields are user, item, value, timestamp. A sequence of up to four names (with a
            header) or 0-based positions, in the order (user, item, value, timestamp); a dict
            ``{"user": ..., "item": ..., "value": ..., "timestamp": ...}``. Default: positions
            0, 1, 2, 3 as far as the file has fields (a header's names are matched as in
            :meth:`from_dataframe` when present).
        header : "infer", bool
            Whether the first line is a header; ``"infer"`` checks whether it parses as numbers.
        binarize : float, optional
            Shortcut for ``.binarize(threshold)`` after reading.
        encoding : str
            Text encoding; the default ``utf-8-sig`` reads UTF-8 with or without a byte-order mark.
        **kwargs
            Passed to :meth:`from_arrays` (``duplicates``, ``on_invalid``, ...).
        """
        from .readers import read_columns
        cols = read_columns(path, sep=sep, columns=columns, header=header, encoding=encoding)
        out = cls.from_arrays(cols["users"], cols["items"], cols["values"], cols["timestamps"], **kwargs)
        return out.binarize(binarize) if binarize is not None else out

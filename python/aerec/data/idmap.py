"""Raw id <-> dense index maps for users and items."""
from __future__ import annotations

import numpy as np

__all__ = ["IdMap"]


def infer_object_ids(values: list, name: str = "ids") -> np.ndarray:
    """One-dtype array from Python objects that must be all integers, all floats or all strings."""
    if not values:
        return np.empty(0, dtype=np.int64)
    kinds = set()
    for x in values:
        if isinstance(x, (bool, np.bool_)):
            kinds.add("bool")
        elif isinstance(x, (int, np.integer)):
            kinds.add("int")
        elif isinstance(x, (float, np.floating)):
            kinds.add("float")
        elif isinstance(x, (str, np.str_)):
            kinds.add("str")
        elif isinstance(x, (bytes, np.bytes_)):
            kinds.add("bytes")
        else:
            kinds.add(type(x).__name__)
    if kinds <= {"int"}:
        return _int_ids(values, name)
    if kinds <= {"int", "float"}:
        ints = [int(x) for x in values if isinstance(x, (int, np.integer))]
        if ints and (min(ints) < -2 ** 53 or max(ints) > 2 ** 53):
            raise ValueError(f"{name} mix integers beyond 2**53 with floats, which cannot hold them exactly; "
                             "pass integer ids only (or strings)")
        return np.asarray(values, dtype=np.float64)
    if kinds == {"str"} or kinds == {"bytes"}:
        return np.asarray(values)
    if kinds == {"bool"}:
        raise TypeError(f"{name} must be integers or strings, got booleans")
    if len(kinds) == 1:
        raise TypeError(f"{name} must be integers or strings, got {kinds.pop()}")
    raise TypeError(f"{name} must all be integers or all strings, got a mix of {sorted(kinds)}")


def asarray_ids(raw) -> np.ndarray:
    """``np.asarray`` that keeps big Python ints exact: NumPy turns ``[2**64 - 1, 1]`` into
    float64, which would merge distinct ids; such lists are read as objects instead."""
    arr = np.asarray(raw)
    if arr.dtype.kind == "f" and isinstance(raw, (list, tuple)) and any(
            isinstance(x, (int, np.integer)) and not isinstance(x, bool) and abs(int(x)) >= 2 ** 53
            for x in raw):
        arr = np.asarray(raw, dtype=object)
    elif arr.dtype.kind in "US" and isinstance(raw, (list, tuple)) and any(
            not isinstance(x, (str, bytes, np.str_, np.bytes_)) for x in raw):
        arr = np.asarray(raw, dtype=object)  # NumPy would turn [1, "a"] into ["1", "a"] silently
    return arr


def _int_ids(values: list, name: str) -> np.ndarray:
    """int64, or uint64 when every id is non-negative and some exceed int64; beyond that a
    ValueError (not an OverflowError) that says to pass such ids as strings."""
    try:
        return np.asarray(values, dtype=np.int64)
    except OverflowError:
        pass
    lo, hi = min(int(x) for x in values), max(int(x) for x in values)
    if lo >= 0 and hi < 2 ** 64:
        return np.asarray(values, dtype=np.uint64)
    bad = hi if hi >= 2 ** 63 else lo
    raise ValueError(f"{name} include {bad}, which does not fit in a 64-bit integer; pass such ids as "
                     "strings (e.g. [str(i) for i in ids])")


def _as_id_array(raw) -> np.ndarray:
    """Raw ids as a 1-D NumPy array of one comparable kind (integers, floats or strings)."""
    arr = asarray_ids(raw)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != 1:
        raise ValueError(f"ids must be 1-D, got shape {arr.shape}")
    if arr.dtype == object:
        arr = infer_object_ids(arr.tolist())
    if arr.dtype.kind == "b":
        raise TypeError("ids must be integers or strings, got booleans")
    if arr.dtype.kind not in "iufUS":
        raise TypeError(f"ids must be integers or strings, got dtype {arr.dtype}")
    return arr


class IdMap:
    """Bijection between raw ids (integers or strings) and dense indices ``0..n-1``.

    Parameters
    ----------
    raw_ids : array-like, shape (n,)
        ``raw_ids[i]`` is the raw id of index ``i``. Must be unique.

    Notes
    -----
    ``index -> raw`` is an array lookup; ``raw -> index`` is a binary search (``np.searchsorted``) over a
    sorted copy, so both directions are vectorised. An unknown raw id raises ``KeyError`` naming it.
    """

    __slots__ = ("_raw", "_sorted", "_order", "_identity")

    def __init__(self, raw_ids):
        raw = _as_id_array(raw_ids)
        if raw.dtype.kind == "f":
            if not np.all(np.isfinite(raw)):
                raise ValueError("ids must be finite (NaN/inf is not an id)")
            if raw.size and np.all(raw == np.floor(raw)) and np.abs(raw).max() < 2.0 ** 63:
                raw = raw.astype(np.int64)
        if raw.dtype.kind in "iu" and raw.dtype != np.int64 and raw.dtype.kind == "i":
            raw = raw.astype(np.int64)
        n = raw.shape[0]
        identity = bool(raw.dtype.kind in "iu" and n > 0 and raw[0] == 0 and raw[-1] == n - 1
                        and np.all(np.diff(raw) == 1))
        if identity or n == 0:
            order = np.arange(n, dtype=np.int64)
            sorted_ = raw
        else:
            order = np.argsort(raw, kind="stable")
            sorted_ = raw[order]
            dup = sorted_[1:] == sorted_[:-1]
            if np.any(dup):
                raise ValueError(f"raw ids must be unique; {sorted_[1:][dup][0]!r} appears more than once")
        raw.setflags(write=False)
        self._raw = raw
        self._sorted = sorted_
        self._order = order
        self._identity = identity

    @classmethod
    def identity(cls, n: int) -> "IdMap":
        """Map whose raw ids are ``0..n-1`` (for data that arrives already indexed)."""
        from .._validation import check_nonneg_int
        n = check_nonneg_int(n, "n", hi=2 ** 40)
        return cls(np.arange(n, dtype=np.int64))

    # -- sizes and views ------------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self._raw.shape[0])

    @property
    def raw_ids(self) -> np.ndarray:
        """Read-only array, shape (n,): ``raw_ids[i]`` is the raw id of index ``i``."""
        return self._raw

    @property
    def is_identity(self) -> bool:
        return self._identity

    def __repr__(self) -> str:
        n = len(self)
        head = ", ".join(repr(x) for x in self._raw[:3].tolist())
        more = ", ..." if n > 3 else ""
        return f"IdMap(n={n}, raw_ids=[{head}{more}], dtype={self._raw.dtype})"

    def __eq__(self, other) -> bool:
        if not isinstance(other, IdMap):
            return NotImplemented
        return len(self) == len(other) and bool(np.array_equal(self._raw, other._raw))

    __hash__ = None  # mutable-free but array-valued: not hashable

    # -- lookups ---------------------------------------------------------------------------------
    def _lookup(self, raw) -> tuple[np.ndarray, np.ndarray]:
        """(positions, found-mask) for raw ids of any shape."""
        q = asarray_ids(raw)
        if q.dtype == object and q.size:
            flat = q.ravel().tolist()
            # ints beyond 64 bits cannot be ids of any map: they are unknown, not an error
            huge = np.array([isinstance(x, int) and not isinstance(x, bool) and not -2 ** 63 <= x < 2 ** 64
                             for x in flat], dtype=bool).reshape(q.shape)
            if huge.any():
                if huge.all():
                    return np.zeros(q.shape, dtype=np.int64), np.zeros(q.shape, dtype=bool)
                fill = next(x for x, h in zip(flat, huge.ravel()) if not h)
                pos, found = self._lookup(np.array([fill if h else x for x, h in zip(flat, huge.ravel())],
                                                   dtype=object).reshape(q.shape))
                return pos, found & ~huge
            q = _as_id_array(q.ravel()).reshape(q.shape)
        elif q.dtype == object:
            q = q.astype(self._raw.dtype)
        n = len(self)
        if n == 0:
            return np.zeros(q.shape, dtype=np.int64), np.zeros(q.shape, dtype=bool)
        kind_ok = (q.dtype.kind in "iuf") == (self._raw.dtype.kind in "iuf")
        if not kind_ok:
            return np.zeros(q.shape, dtype=np.int64), np.zeros(q.shape, dtype=bool)
        if self._raw.dtype.kind == "u" and q.dtype.kind == "i":
            # uint64 ids: negative queries are unknown, the rest compare exactly as uint64
            neg = q < 0
            q = np.where(neg, 0, q).astype(np.uint64)
            pos = np.minimum(np.searchsorted(self._sorted, q), n - 1)
            found = (self._sorted[pos] == q) & ~neg
            return self._order[pos], found
        if self._raw.dtype.kind == "i" and q.dtype == np.uint64:
            big = q > np.uint64(2 ** 63 - 1)
            q = np.where(big, 0, q).astype(np.int64)
            pos = np.minimum(np.searchsorted(self._sorted, q), n - 1)
            found = (self._sorted[pos] == q) & ~big
            return self._order[pos], found
        if self._identity and q.dtype.kind in "iu":
            qi = q.astype(np.int64, copy=False)
            found = (qi >= 0) & (qi < n)
            return np.where(found, qi, 0), found
        pos = np.searchsorted(self._sorted, q)
        pos_c = np.minimum(pos, n - 1)
        found = self._sorted[pos_c] == q
        return self._order[pos_c], found

    def to_index(self, raw, *, missing: str = "raise") -> np.ndarray:
        """Indices (int64) of raw ids, same shape as ``raw``.

        ``missing="raise"`` raises ``KeyError`` naming the first unknown id; ``missing="ignore"``
        returns -1 for unknown ids.
        """
        if not isinstance(missing, str) or missing not in ("raise", "ignore"):
            raise ValueError(f"missing must be 'raise' or 'ignore', got {missing!r}")
        idx, found = self._lookup(raw)
        if not np.all(found):
            if missing == "raise":
                bad = np.asarray(raw)[~found].ravel()[0]
                bad = bad.item() if hasattr(bad, "item") else bad
                raise KeyError(f"unknown raw id {bad!r} ({int((~found).sum())} unknown id(s) in the query)")
            idx = np.where(found, idx, -1)
        return np.asarray(idx, dtype=np.int64)

    def to_raw(self, index) -> np.ndarray:
        """Raw ids of indices (any integer array; negative indices are rejected)."""
        idx = asarray_ids(index)
        if idx.dtype == object and idx.size and all(
                isinstance(x, (int, np.integer)) and not isinstance(x, bool) for x in idx.ravel().tolist()):
            raise IndexError(f"index {max(idx.ravel().tolist(), key=abs)} is out of range for an IdMap of "
                             f"{len(self)} ids")
        if idx.dtype.kind not in "iu":
            raise TypeError(f"indices must be integers, got dtype {idx.dtype}")
        n = len(self)
        if idx.size and (idx.min() < 0 or idx.max() >= n):
            bad = idx[(idx < 0) | (idx >= n)].ravel()[0]
            raise IndexError(f"index {int(bad)} is out of range for an IdMap of {n} ids")
        return self._raw[idx]

    def __getitem__(self, raw_id) -> int:
        """Index of one raw id (``KeyError`` if unknown)."""
        return int(self.to_index(np.asarray([raw_id]))[0])

    def __contains__(self, raw_id) -> bool:
        try:
            _, found = self._lookup(np.asarray([raw_id]))
        except TypeError:
            return False
        return bool(found[0])

    def subset(self, index) -> "IdMap":
        """New map holding ``raw_ids[index]`` (in that order)."""
        return IdMap(self.to_raw(index))

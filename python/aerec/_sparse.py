"""Validation and conversion of user x item interaction matrices (CSR, float32 values, int32 ids).

Every sparse matrix a caller hands to aerec goes through :func:`check_structure` before scipy's or
aerec's compiled code reads it: a CSR whose ``indptr`` / ``indices`` do not describe a valid matrix
makes scipy's C routines (and ours) read or write out of bounds, so it is refused here with a
message that says what is wrong.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

__all__ = ["as_csr", "check_structure", "UnknownIdError"]

_INT32_MAX = 2 ** 31 - 1


class UnknownIdError(KeyError, IndexError):
    """A user or item id the model has never seen (and no history was given to fold it in)."""

    def __str__(self):  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


def _native(a) -> np.ndarray:
    """Native byte order, C-contiguous: what scipy's and aerec's compiled code read (scipy refuses a
    big-endian dtype, and a strided component reached a kernel that requires contiguous arrays)."""
    a = np.asarray(a)
    if not a.dtype.isnative:
        a = a.astype(np.dtype(a.dtype.type))  # the canonical native dtype (the kernels compare dtypes exactly)
    return np.ascontiguousarray(a)


def _index_array(a, what: str, name: str) -> np.ndarray:
    a = _native(a)
    if a.ndim != 1:
        raise ValueError(f"{name}.{what} must be 1-D, got shape {a.shape}; rebuild the matrix with "
                         "scipy.sparse.csr_matrix((data, indices, indptr), shape=...)")
    if a.dtype.kind not in "iu":
        raise TypeError(f"{name}.{what} must hold integers, got dtype {a.dtype}")
    return a


def _indptr_of_rows(rows, n_rows: int) -> np.ndarray:
    """CSR indptr (int64, n_rows + 1) of entries whose row ids, in row order, are ``rows``."""
    indptr = np.zeros(n_rows + 1, np.int64)
    np.cumsum(np.bincount(rows.astype(np.int64, copy=False), minlength=n_rows), out=indptr[1:])
    return indptr


def _check_shape(shape, name: str) -> tuple[int, int]:
    try:
        n_rows, n_cols = (int(s) for s in shape)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be 2-D (users x items), got shape {shape!r}") from None
    if n_rows < 0 or n_cols < 0:
        raise ValueError(f"{name} has a negative dimension in its shape {shape!r}")
    if n_cols > _INT32_MAX or n_rows > _INT32_MAX:
        raise ValueError(f"{name} has shape {shape!r}; aerec indexes users and items with int32, so at "
                         f"most {_INT32_MAX} of each")
    return n_rows, n_cols


def _check_compressed(indptr, indices, data, n_major: int, n_minor: int, name: str,
                      major: str = "row", minor: str = "column"):
    """Validate (indptr, indices, data) of a CSR (or CSC) with ``n_major`` compressed rows."""
    indptr = _index_array(indptr, "indptr", name)
    indices = _index_array(indices, "indices", name)
    data = _native(data)
    if data.ndim != 1:
        raise ValueError(f"{name}.data must be 1-D, got shape {data.shape}")
    if indptr.shape[0] != n_major + 1:
        raise ValueError(f"{name}.indptr has length {indptr.shape[0]} but a matrix with {n_major} {major}s "
                         f"needs {n_major + 1}; the CSR structure is corrupt (rebuild it)")
    if indices.shape[0] != data.shape[0]:
        raise ValueError(f"{name}.indices has {indices.shape[0]} entries but {name}.data has {data.shape[0]}; "
                         "they must have the same length")
    nnz = indices.shape[0]
    ip = indptr.astype(np.int64) if indptr.dtype != np.int64 else indptr
    if indptr.dtype.kind == "u" and indptr.size and int(indptr.max()) > 2 ** 63 - 1:
        raise ValueError(f"{name}.indptr holds values beyond int64")
    if ip[0] != 0:
        raise ValueError(f"{name}.indptr must start at 0, got {int(ip[0])}; the CSR structure is corrupt")
    if n_major and np.any(ip[1:] < ip[:-1]):
        at = int(np.flatnonzero(ip[1:] < ip[:-1])[0])
        raise ValueError(f"{name}.indptr must be non-decreasing, but it falls at {major} {at} "
                         f"({int(ip[at])} -> {int(ip[at + 1])}); the CSR structure is corrupt")
    if ip[-1] != nnz:
        raise ValueError(f"{name}.indptr ends at {int(ip[-1])} but there are {nnz} stored entries "
                         f"(indptr[-1] must equal nnz); the CSR structure is corrupt (m.prune() trims "
                         "surplus entries)")
    if nnz:
        lo, hi = int(indices.min()), int(indices.max())
        if lo < 0 or hi >= n_minor:
            bad = lo if lo < 0 else hi
            raise ValueError(f"{name} has {minor} index {bad}, outside 0..{n_minor - 1} for its shape; "
                             f"fix the indices or the shape")
    return ip, indices, data


def check_structure(x, name: str = "user_items") -> sp.csr_matrix:
    """Return ``x`` (any scipy.sparse matrix or array) as a CSR matrix whose structure is known to be
    valid; the arrays are checked *before* any scipy conversion touches them. Values are not
    checked here (see :func:`as_csr`)."""
    if not sp.issparse(x):
        raise TypeError(f"{name} must be a scipy.sparse matrix, got {type(x).__name__}")
    fmt = getattr(x, "format", None)
    if getattr(x, "ndim", 2) != 2:
        raise ValueError(f"{name} must be 2-D (users x items), got ndim {x.ndim}")
    n_rows, n_cols = _check_shape(x.shape, name)
    if fmt == "csr":
        ip, ix, data = _check_compressed(x.indptr, x.indices, x.data, n_rows, n_cols, name)
        return sp.csr_matrix((data, ix, ip), shape=(n_rows, n_cols))
    if fmt == "csc":
        ip, ix, data = _check_compressed(x.indptr, x.indices, x.data, n_cols, n_rows, name, "column", "row")
        m = sp.csc_matrix((data, ix, ip), shape=(n_rows, n_cols))
        return sp.csr_matrix(m.tocsr())
    if fmt == "coo":
        row, col = (_index_array(getattr(x, a), a, name) for a in ("row", "col"))
        data = _native(x.data)
        if not (row.shape == col.shape == data.shape):
            raise ValueError(f"{name}: row, col and data must have the same length, got "
                             f"{row.shape[0]}, {col.shape[0]} and {data.shape[0]}")
        for arr, n, what in ((row, n_rows, "row"), (col, n_cols, "column")):
            if arr.size and (int(arr.min()) < 0 or int(arr.max()) >= n):
                bad = int(arr.min()) if int(arr.min()) < 0 else int(arr.max())
                raise ValueError(f"{name} has {what} index {bad}, outside 0..{n - 1} for its shape")
        # built here rather than by scipy's coo -> csr, which sums duplicate (row, col) entries:
        # each caller decides what a duplicate means (as_csr refuses it, metrics sum it)
        order = np.lexsort((col, row))
        return sp.csr_matrix((data[order], col[order], _indptr_of_rows(row, n_rows)), shape=(n_rows, n_cols))
    if fmt == "bsr":
        R, C = x.blocksize
        ip, ix, data = _check_compressed(x.indptr, x.indices, np.zeros(len(np.asarray(x.indices))),
                                         n_rows // max(R, 1), n_cols // max(C, 1), name)
        if np.asarray(x.data).shape != (ix.shape[0], R, C):
            raise ValueError(f"{name}.data has shape {np.asarray(x.data).shape}, expected {(ix.shape[0], R, C)}")
        return sp.bsr_matrix((_native(x.data), ix, ip), shape=(n_rows, n_cols), blocksize=(R, C)).tocsr()
    # dia, dok, lil: built by Python code, convert through COO and check that
    return check_structure(sp.coo_matrix(x.tocoo()), name)


def as_csr(x, name: str = "user_items", *, n_cols: int | None = None, allow_empty_rows: bool = True,
           binary: bool = False) -> sp.csr_matrix:
    """Return a canonical CSR copy-or-view: float32 data, int32 indices, int64 indptr, sorted, no
    duplicate entries, finite non-negative values. Accepts scipy.sparse, dense arrays and objects
    with ``to_csr()`` (aerec.data.Interactions).

    Duplicate (row, col) entries are an error, not summed (in every format, COO included), so that a
    duplicated log line never silently doubles a rating; unsorted indices are sorted (a copy);
    explicit zeros are dropped (a stored 0 is no interaction, as in scipy).
    """
    if hasattr(x, "to_csr") and not sp.issparse(x):
        x = x.to_csr()
    if sp.issparse(x):
        m = check_structure(x, name)
    else:
        if x is None:
            raise TypeError(f"{name} is None; pass a scipy.sparse matrix (users x items)")
        try:
            arr = np.asarray(x)
        except Exception as exc:  # ragged lists and the like
            raise TypeError(f"{name} could not be read as a matrix ({exc}); pass a scipy.sparse matrix") from None
        if arr.dtype.kind not in "fiub" or arr.ndim != 2:
            raise TypeError(f"{name} must be a scipy.sparse matrix (users x items) or a 2-D numeric array, "
                            f"got {type(x).__name__} with dtype {getattr(arr, 'dtype', None)} and ndim {arr.ndim}")
        _check_shape(arr.shape, name)  # NaN / inf are nonzero, so the check of m.data below sees them
        if arr.dtype.kind == "f" and arr.dtype.itemsize < 4:
            arr = arr.astype(np.float32)  # scipy.sparse has no float16
        m = sp.csr_matrix(arr)
    if n_cols is not None and m.shape[1] != n_cols:
        raise ValueError(f"{name} has {m.shape[1]} item columns but the model was trained on {n_cols} items; "
                         "build it with the same item id map")
    if m.data.dtype.kind not in "fiub":
        raise TypeError(f"{name} values must be real numbers, got dtype {m.data.dtype}")
    if m.nnz and not np.isfinite(m.data).all():
        raise ValueError(f"{name} contains NaN or infinite values; drop or impute them first")
    if m.nnz and (m.data < 0).any():
        raise ValueError(f"{name} contains negative values; interactions must be >= 0")
    if m.nnz and m.data.dtype.kind == "f" and m.data.max() > np.finfo(np.float32).max:
        raise ValueError(f"{name} has values beyond the float32 range; rescale them")
    if m.nnz:
        # Duplicates: after sorting, equal neighbours within a row.
        m = sp.csr_matrix((m.data, m.indices, m.indptr), shape=m.shape)  # own the flags, not the caller's
        if not m.has_sorted_indices:
            m = m.copy()  # never sort the caller's arrays in place
            m.sort_indices()
        indices = m.indices
        row_of = np.repeat(np.arange(m.shape[0]), np.diff(m.indptr))  # also used for explicit zeros
        same = (indices[1:] == indices[:-1]) & (row_of[1:] == row_of[:-1])
        if same.any():
            r = int(row_of[1:][same][0])
            raise ValueError(f"{name} has duplicate entries (first in row {r}, column {int(indices[1:][same][0])}); "
                             "deduplicate with aerec.data or m.sum_duplicates()")
    if m.nnz and not m.data.all():
        # a stored zero is no interaction (scipy's meaning of an explicit zero): drop it, or the
        # models that read only the structure (binarised training, seen-item filters) count it
        keep = m.data != 0
        m = sp.csr_matrix((m.data[keep], m.indices[keep], _indptr_of_rows(row_of[keep], m.shape[0])),
                          shape=m.shape)
    # contiguous, native, and the canonical dtype objects (.view): the kernels compare dtypes exactly,
    # and an equal but distinct float32 (e.g. from newbyteorder('=')) was refused there as
    # "data must have dtype float32, got float32"
    data = np.ones(m.nnz, np.float32) if binary else np.ascontiguousarray(m.data, dtype=np.float32).view(np.float32)
    out = sp.csr_matrix((data, np.ascontiguousarray(m.indices, dtype=np.int32).view(np.int32),
                         np.ascontiguousarray(m.indptr, dtype=np.int64).view(np.int64)), shape=m.shape)
    out.has_sorted_indices = True
    return out

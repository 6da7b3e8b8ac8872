"""Validation and conversion of user x item interaction matrices (CSR, float32 values, int32 ids)."""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

__all__ = ["as_csr", "UnknownIdError"]


class UnknownIdError(KeyError, IndexError):
    """A user or item id the model has never seen (and no history was given to fold it in)."""

    def __str__(self):  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


def as_csr(x, name: str = "user_items", *, n_cols: int | None = None, allow_empty_rows: bool = True,
           binary: bool = False) -> sp.csr_matrix:
    """Return a canonical CSR copy-or-view: float32 data, int32 indices, int64 indptr, sorted, no
    duplicate entries, finite non-negative values. Accepts scipy.sparse, dense arrays and objects
    with ``to_csr()`` (aerec.data.Interactions).

    Duplicate (row, col) entries are an error, not summed, so that a duplicated log line never
    silently doubles a rating; unsorted indices are sorted (a copy).
    """
    if hasattr(x, "to_csr") and not sp.issparse(x):
        x = x.to_csr()
    if sp.issparse(x):
        m = x.tocsr()
    else:
        arr = np.asarray(x)
        if arr.dtype.kind not in "fiub" or arr.ndim != 2:
            raise TypeError(f"{name} must be a scipy.sparse matrix (users x items) or a 2-D numeric array, "
                            f"got {type(x).__name__} with dtype {getattr(arr, 'dtype', None)} and ndim {arr.ndim}")
        m = sp.csr_matrix(arr)
    if m.ndim != 2:
        raise ValueError(f"{name} must be 2-D (users x items)")
    if n_cols is not None and m.shape[1] != n_cols:
        raise ValueError(f"{name} has {m.shape[1]} item columns but the model was trained on {n_cols} items; "
                         "build it with the same item id map")
    if m.data.dtype.kind not in "fiub":
        raise TypeError(f"{name} values must be numeric, got {m.data.dtype}")
    if m.nnz and not np.isfinite(m.data).all():
        raise ValueError(f"{name} contains NaN or infinite values; drop or impute them first")
    if m.nnz and (m.data < 0).any():
        raise ValueError(f"{name} contains negative values; interactions must be >= 0")
    indices = m.indices
    if m.nnz:
        # Duplicates: after sorting, equal neighbours within a row.
        if not m.has_sorted_indices:
            m = m.copy()
            m.sort_indices()
            indices = m.indices
        row_of = np.repeat(np.arange(m.shape[0]), np.diff(m.indptr))
        same = (indices[1:] == indices[:-1]) & (row_of[1:] == row_of[:-1])
        if same.any():
            r = int(row_of[1:][same][0])
            raise ValueError(f"{name} has duplicate entries (first in row {r}, column {int(indices[1:][same][0])}); "
                             "deduplicate with aerec.data or m.sum_duplicates()")
    data = np.ones(m.nnz, np.float32) if binary else m.data.astype(np.float32, copy=False)
    out = sp.csr_matrix((data, m.indices.astype(np.int32, copy=False), m.indptr.astype(np.int64, copy=False)),
                        shape=m.shape)
    out.has_sorted_indices = True
    return out

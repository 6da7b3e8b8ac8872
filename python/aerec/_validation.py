"""The one place arguments are validated and converted (once, explicitly) before reaching a kernel.

Scalars. Every public entry point checks its scalar arguments with the helpers here
(``check_int``, ``check_positive_int``, ``check_nonneg_int``, ``check_k``, ``check_real``,
``check_bool``, ``check_num_threads``, ``check_choice``): bools are not integers, integers are not
silently truncated from floats, floats are finite, and integers are bounded so that nothing a kernel
cannot hold reaches it. ``k`` (top-k) is checked by ``check_k`` only.

Dense arrays. Real-valued inputs (float16/32/64, integers, bool) are converted to C-contiguous
float32 (``as_matrix``); anything else (object, strings, complex, datetimes) is a TypeError that says
what to pass instead.

Sparse matrices (users x items, CSR, float32 values, int32 ids). Every sparse matrix a caller hands
to aerec goes through :func:`check_structure` before scipy's or aerec's compiled code reads it: a CSR
whose ``indptr`` / ``indices`` do not describe a valid matrix makes scipy's C routines (and ours)
read or write out of bounds, so it is refused here with a message that says what is wrong.
:func:`as_csr` then gives the canonical CSR the models train and score on.
"""
from __future__ import annotations

import numbers

import numpy as np
import scipy.sparse as sp

__all__ = [
    # scalars
    "check_int", "check_positive_int", "check_nonneg_int", "check_k", "check_real", "check_bool",
    "check_num_threads", "check_choice", "check_verbose", "check_gemm_args", "as_rng",
    "MAX_THREADS", "INT64_MAX",
    # dense arrays
    "as_matrix", "check_finite", "is_sparse",
    # sparse matrices
    "as_csr", "check_structure", "UnknownIdError",
]

INT64_MAX = 2 ** 63 - 1
#: upper bound for num_threads: more OpenMP threads than this cannot help and may fail to start
MAX_THREADS = 1024


# -- dense arrays ----------------------------------------------------------------------------------

def is_sparse(x) -> bool:
    return sp.issparse(x)


def _to_array(x, name: str) -> np.ndarray:
    if is_sparse(x):
        raise TypeError(f"{name} is a scipy.sparse matrix; this model takes dense input: pass x.toarray() "
                        "(or use a sparse-input recommender such as MultVAE)")
    if hasattr(x, "__cuda_array_interface__") and not isinstance(x, np.ndarray):
        raise TypeError(f"{name} is a GPU array; pass a NumPy array (e.g. x.get()) to CPU backends")
    if hasattr(x, "to_numpy") and not isinstance(x, np.ndarray):  # pandas
        x = x.to_numpy()
    if x is None:
        raise TypeError(f"{name} is None; pass a 2-D numeric array")
    try:
        arr = np.asarray(x)
    except Exception as exc:  # ragged lists and the like
        raise TypeError(f"{name} could not be read as an array ({exc}); pass a 2-D numeric array") from None
    if arr.dtype.kind not in "fiub":
        raise TypeError(f"{name} has dtype {arr.dtype}, which is not real-valued numeric; pass a float32 array "
                        f"(np.asarray({name}, dtype=np.float32))")
    return arr


def as_matrix(x, name: str = "x", *, n_cols: int | None = None, allow_1d: bool = False,
              allow_empty: bool = False, finite: bool = True) -> tuple[np.ndarray, bool]:
    """Return ``(float32 C-contiguous 2-D array, was_1d)``.

    ``allow_1d``: a 1-D array is one sample (returned as shape (1, n)). ``n_cols``: required width.
    """
    arr = _to_array(x, name)
    was_1d = False
    if arr.ndim == 1 and allow_1d:
        arr = arr[None, :]
        was_1d = True
    if arr.ndim != 2:
        hint = " (one sample: x.reshape(1, -1); one feature: x.reshape(-1, 1))" if arr.ndim == 1 else ""
        raise ValueError(f"{name} must be 2-D (n_samples, n_features), got shape {arr.shape}{hint}")
    if not allow_empty and (arr.shape[0] == 0 or arr.shape[1] == 0):
        raise ValueError(f"{name} is empty (shape {arr.shape}); pass at least one sample and one feature")
    if n_cols is not None and arr.shape[1] != n_cols:
        raise ValueError(f"{name} has {arr.shape[1]} features but the model was built for {n_cols}")
    if arr.dtype.kind == "f" and arr.size:
        big = np.abs(arr[np.isfinite(arr)]) if finite else None
        if big is not None and big.size and big.max() > np.finfo(np.float32).max:
            raise ValueError(f"{name} has values beyond the float32 range ({float(big.max()):g}); "
                             "rescale it first")
    out = np.ascontiguousarray(arr, dtype=np.float32)
    if finite:
        check_finite(out, name)
    return out, was_1d


def check_finite(arr: np.ndarray, name: str) -> None:
    if arr.size and not np.isfinite(arr).all():
        bad = np.argwhere(~np.isfinite(arr))[0]
        raise ValueError(f"{name} contains NaN or infinity (first at index {tuple(int(i) for i in bad)}); "
                         "clean or impute it first (e.g. np.nan_to_num)")


# -- scalar arguments ------------------------------------------------------------------------------

def _int(value, name: str) -> int:
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value[()]
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        hint = ""
        if isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral):
            hint = f" (pass int({value!r}) if that is what you mean)"
        raise TypeError(f"{name} must be an integer, got {type(value).__name__} {value!r}{hint}")
    return int(value)


def check_int(value, name: str, *, lo: int | None = None, hi: int | None = INT64_MAX) -> int:
    """A Python int within ``[lo, hi]`` (bools and floats are TypeErrors)."""
    v = _int(value, name)
    if lo is not None and v < lo:
        raise ValueError(f"{name} must be >= {lo}, got {v}")
    if hi is not None and v > hi:
        raise ValueError(f"{name} must be <= {hi}, got {v}")
    return v


def check_positive_int(value, name: str, *, hi: int | None = INT64_MAX) -> int:
    v = _int(value, name)
    if v <= 0:
        raise ValueError(f"{name} must be positive (an integer >= 1), got {v}")
    if hi is not None and v > hi:
        raise ValueError(f"{name} must be <= {hi}, got {v}")
    return v


def check_nonneg_int(value, name: str, *, hi: int | None = INT64_MAX) -> int:
    v = _int(value, name)
    if v < 0:
        raise ValueError(f"{name} must be >= 0, got {v}")
    if hi is not None and v > hi:
        raise ValueError(f"{name} must be <= {hi}, got {v}")
    return v


def check_k(k, n_items: int | None = None) -> int:
    """The ``k`` of every top-k entry point (recommenders, ``TopK``, metrics): an int >= 1 of any
    size; bools, floats, strings and None are TypeErrors. ``k > n_items`` asks for every item, so
    with ``n_items`` given the result is clipped to it, the most a kernel can return (the metrics
    pass none: there a ``k`` beyond the list width still enters the ideal DCG)."""
    k = check_positive_int(k, "k", hi=None)
    return k if n_items is None else min(k, n_items)


def check_real(value, name: str, lo=None, hi=None, *, lo_open: bool = False, hi_open: bool = False) -> float:
    """A finite float within the given bounds (bools, strings, complex, None are TypeErrors)."""
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value[()]
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    try:
        v = float(value)
    except OverflowError:
        raise ValueError(f"{name} is too large to be a float, got {value!r}") from None
    if v != v or v in (float("inf"), float("-inf")):
        raise ValueError(f"{name} must be finite, got {value}")
    if lo is not None and (v < lo or (lo_open and v == lo)):
        raise ValueError(f"{name} must be {'>' if lo_open else '>='} {lo}, got {value}")
    if hi is not None and (v > hi or (hi_open and v == hi)):
        raise ValueError(f"{name} must be {'<' if hi_open else '<='} {hi}, got {value}")
    return v + 0.0  # -0.0 -> 0.0 (NumPy's samplers reject a negative-zero scale)


def check_bool(value, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {type(value).__name__} {value!r}")
    return bool(value)


def check_num_threads(value, name: str = "num_threads") -> int:
    """Threads for a kernel: None or an int <= 0 means aerec's default (0); at most MAX_THREADS."""
    if value is None:
        return 0
    v = _int(value, name)
    if v > MAX_THREADS:
        raise ValueError(f"{name} must be <= {MAX_THREADS} (0 or None: all available cores), got {v}")
    return max(v, 0)


def check_gemm_args(a, b, trans_a, trans_b, alpha, num_threads):
    """The scalar arguments of a backend ``gemm`` (one check for every backend): bool transposes, a
    finite alpha, a bounded thread count, real-valued operands. Returns ``(alpha, num_threads)``."""
    check_bool(trans_a, "trans_a")
    check_bool(trans_b, "trans_b")
    alpha = check_real(alpha, "alpha")
    num_threads = check_num_threads(num_threads)
    for name, x in (("a", a), ("b", b)):
        dt = getattr(x, "dtype", None)
        if dt is not None and getattr(dt, "kind", "f") not in "fiub":
            raise TypeError(f"gemm: {name} has dtype {dt}; pass a real-valued (float32) array")
    return alpha, num_threads


def check_choice(value, name: str, options) -> str:
    """One of ``options`` (strings); anything else, arrays included, is a ValueError naming them."""
    if not isinstance(value, str) or value not in options:
        raise ValueError(f"{name} must be one of {tuple(options)}, got {value!r}")
    return value


def check_verbose(value, name: str = "verbose", allow_auto: bool = False):
    """A verbosity level: a bool or an int >= 0 (and "auto" where ``allow_auto``: a progress bar
    once the fit has run a few seconds)."""
    if isinstance(value, (bool, np.bool_)):
        return int(value)
    if allow_auto and isinstance(value, str):
        if value != "auto":
            raise ValueError(f"{name} must be 'auto', 0, 1 or 2, got {value!r}")
        return value
    return check_nonneg_int(value, name)


def as_rng(random_state, name: str = "random_state") -> np.random.Generator:
    """A NumPy Generator from a seed (an int >= 0) or a Generator; None is refused (results must be
    reproducible)."""
    if isinstance(random_state, np.random.Generator):
        return random_state
    if random_state is None:
        raise ValueError(f"{name} must be an int or a numpy Generator (splits are always seeded)")
    return np.random.default_rng(check_nonneg_int(random_state, name))


# -- sparse matrices -------------------------------------------------------------------------------

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

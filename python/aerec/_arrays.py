"""The one place arrays are validated and converted (once, explicitly) before reaching a kernel.

Real-valued inputs (float16/32/64, integers, bool) are converted to C-contiguous float32; anything
else (object, strings, complex, datetimes) is a TypeError that says what to pass instead.
"""
from __future__ import annotations

import numbers

import numpy as np

__all__ = ["as_matrix", "check_finite", "check_positive_int", "check_nonneg_int", "is_sparse"]


def is_sparse(x) -> bool:
    try:
        import scipy.sparse as sp
    except ImportError:  # pragma: no cover - scipy is a dependency
        return False
    return sp.issparse(x)


def _to_array(x, name: str) -> np.ndarray:
    if is_sparse(x):
        raise TypeError(f"{name} is a scipy.sparse matrix; this model takes dense input: pass x.toarray() "
                        "(or use a sparse-input recommender such as MultVAE)")
    if hasattr(x, "__cuda_array_interface__") and not isinstance(x, np.ndarray):
        raise TypeError(f"{name} is a GPU array; pass a NumPy array (e.g. x.get()) to CPU backends")
    if hasattr(x, "to_numpy") and not isinstance(x, np.ndarray):  # pandas
        x = x.to_numpy()
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
    out = np.ascontiguousarray(arr, dtype=np.float32)
    if finite:
        check_finite(out, name)
    return out, was_1d


def check_finite(arr: np.ndarray, name: str) -> None:
    if arr.size and not np.isfinite(arr).all():
        bad = np.argwhere(~np.isfinite(arr))[0]
        raise ValueError(f"{name} contains NaN or infinity (first at index {tuple(int(i) for i in bad)}); "
                         "clean or impute it first (e.g. np.nan_to_num)")


def _int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__} {value!r}")
    return int(value)


def check_positive_int(value, name: str) -> int:
    v = _int(value, name)
    if v <= 0:
        raise ValueError(f"{name} must be a positive integer, got {v}")
    return v


def check_nonneg_int(value, name: str) -> int:
    v = _int(value, name)
    if v < 0:
        raise ValueError(f"{name} must be >= 0, got {v}")
    return v

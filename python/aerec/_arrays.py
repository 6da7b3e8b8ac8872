"""The one place arrays and scalar arguments are validated and converted (once, explicitly) before
reaching a kernel.

Real-valued inputs (float16/32/64, integers, bool) are converted to C-contiguous float32; anything
else (object, strings, complex, datetimes) is a TypeError that says what to pass instead.

Scalar arguments of every public entry point go through the helpers below (``check_int``,
``check_positive_int``, ``check_nonneg_int``, ``check_real``, ``check_bool``,
``check_num_threads``): bools are not integers, integers are not silently truncated from floats,
floats are finite, and integers are bounded so that nothing a kernel cannot hold reaches it.
"""
from __future__ import annotations

import numbers

import numpy as np

__all__ = ["as_matrix", "as_rng", "check_choice", "check_verbose", "check_finite", "check_int",
           "check_positive_int", "check_nonneg_int",
           "check_real", "check_bool", "check_num_threads", "is_sparse", "MAX_THREADS", "INT64_MAX"]

INT64_MAX = 2 ** 63 - 1
#: upper bound for num_threads: more OpenMP threads than this cannot help and may fail to start
MAX_THREADS = 1024


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


def check_verbose(value, name: str = "verbose") -> int:
    """A verbosity level: a bool or an int >= 0."""
    if isinstance(value, (bool, np.bool_)):
        return int(value)
    return check_nonneg_int(value, name)


def as_rng(random_state, name: str = "random_state") -> np.random.Generator:
    """A NumPy Generator from a seed (an int >= 0) or a Generator; None is refused (results must be
    reproducible)."""
    if isinstance(random_state, np.random.Generator):
        return random_state
    if random_state is None:
        raise ValueError(f"{name} must be an int or a numpy Generator (splits are always seeded)")
    return np.random.default_rng(check_nonneg_int(random_state, name))

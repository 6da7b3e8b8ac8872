"""C++ backend: aerec._core (OpenMP/SIMD kernels)."""
from __future__ import annotations

NAME = "cpp"

try:
    from .. import _core
    _IMPORT_ERROR = None
except ImportError as exc:  # the extension was not built
    _core = None
    _IMPORT_ERROR = f"compiled module aerec._core not found ({exc}); reinstall with `pip install .`"


def unavailable_reason():
    return _IMPORT_ERROR


# --- GEMM with fused bias + activation ------------------------------------------------------------

import numpy as _np

_F32 = _np.dtype(_np.float32)


def _gemm_matrix(x, name):
    """float32, 2-D, contiguous last dimension (row strides kept); converts at most once."""
    if type(x) is not _np.ndarray or x.dtype is not _F32:
        x = _np.asarray(x, dtype=_np.float32)
    if x.ndim != 2:
        raise ValueError(f"gemm: {name} must be 2-D, got shape {x.shape}")
    if not x.flags.c_contiguous:
        rows, cols = x.shape
        s0, s1 = x.strides
        if (cols > 1 and s1 != 4) or (rows > 1 and (s0 < 4 * cols or s0 % 4)):
            x = _np.ascontiguousarray(x)
    return x


def gemm(a, b, *, trans_a=False, trans_b=False, bias=None, activation="identity", alpha=1.0,
         num_threads=None):
    """``act(alpha * op(a) @ op(b) + bias)`` with aerec's packed SIMD GEMM (float32).

    Parameters
    ----------
    a : array_like, shape (M, K), or (K, M) with ``trans_a``
    b : array_like, shape (K, N), or (N, K) with ``trans_b``
    bias : array_like, shape (N,), optional
    activation : {"identity", "relu", "sigmoid", "tanh", "elu", "selu"}
    alpha : float
    num_threads : int, optional (None or 0: aerec's default)

    Returns
    -------
    ndarray, shape (M, N), float32
    """
    # Fast path (the training loop's case) inline: already float32, 2-D, C-contiguous.
    if not (type(a) is _np.ndarray and a.dtype is _F32 and a.ndim == 2 and a.flags.c_contiguous):
        a = _gemm_matrix(a, "a")
    if not (type(b) is _np.ndarray and b.dtype is _F32 and b.ndim == 2 and b.flags.c_contiguous):
        b = _gemm_matrix(b, "b")
    if bias is not None and (type(bias) is not _np.ndarray or bias.dtype is not _F32
                             or not bias.flags.c_contiguous):
        bias = _np.ascontiguousarray(bias, dtype=_np.float32)
    return _core.gemm(a, b, trans_a, trans_b, bias, activation, alpha, 0.0, None,
                      0 if num_threads is None else num_threads)

"""NumPy reference backend: the oracle every other backend is tested against."""
from __future__ import annotations

NAME = "numpy"


def unavailable_reason():
    return None


# --- GEMM with fused bias + activation (reference for backends.cpp.gemm) -------------------------

def _gemm_activation(name):
    import numpy as np

    def sigmoid(z):
        with np.errstate(over="ignore"):
            return 1.0 / (1.0 + np.exp(-z))

    def elu(z):
        return np.where(z > 0, z, np.expm1(np.minimum(z, 0.0)))

    def selu(z):
        return 1.0507009873554805 * np.where(z > 0, z, 1.6732632423543772 * np.expm1(np.minimum(z, 0.0)))

    table = {"identity": lambda z: z, "linear": lambda z: z, "relu": lambda z: np.maximum(z, 0.0),
             "sigmoid": sigmoid, "tanh": np.tanh, "elu": elu, "selu": selu}
    if name not in table:
        raise ValueError(f"unknown activation {name!r}; use one of identity, relu, sigmoid, tanh, elu, selu")
    return table[name]


def gemm(a, b, *, trans_a=False, trans_b=False, bias=None, activation="identity", alpha=1.0,
         num_threads=None):
    """Reference ``act(alpha * op(a) @ op(b) + bias)``: float64 accumulation, float32 result.

    Parameters
    ----------
    a : array_like, shape (M, K), or (K, M) with ``trans_a``
    b : array_like, shape (K, N), or (N, K) with ``trans_b``
    bias : array_like, shape (N,), optional
    activation : {"identity", "relu", "sigmoid", "tanh", "elu", "selu"}
    alpha : float
    num_threads : ignored (NumPy's own threading)

    Returns
    -------
    ndarray, shape (M, N), float32
    """
    import numpy as np

    act = _gemm_activation(activation)
    a64 = np.asarray(a, dtype=np.float64)
    b64 = np.asarray(b, dtype=np.float64)
    if a64.ndim != 2 or b64.ndim != 2:
        raise ValueError(f"gemm: a and b must be 2-D, got shapes {a64.shape} and {b64.shape}")
    opa = a64.T if trans_a else a64
    opb = b64.T if trans_b else b64
    if opa.shape[1] != opb.shape[0]:
        raise ValueError(f"gemm: shapes {a64.shape}{'.T' if trans_a else ''} and "
                         f"{b64.shape}{'.T' if trans_b else ''} do not align")
    z = float(alpha) * (opa @ opb)
    if bias is not None:
        bias64 = np.asarray(bias, dtype=np.float64)
        if bias64.shape != (opb.shape[1],):
            raise ValueError(f"gemm: bias must have shape ({opb.shape[1]},), got {bias64.shape}")
        z = z + bias64
    return act(z).astype(np.float32)

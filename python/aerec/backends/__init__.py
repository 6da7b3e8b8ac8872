"""Compute backends. All implement one interface; ``numpy_`` is the reference oracle.

Interface of a backend module:

``NAME``
    its registry name.
``unavailable_reason() -> str | None``
    None when it can run here.
``gemm(a, b, *, trans_a=False, trans_b=False, bias=None, activation="identity", alpha=1.0,
       num_threads=None) -> ndarray``
    ``act(alpha * op(a) @ op(b) + bias)`` in float32.
``Network(spec)``
    a trainable feed-forward autoencoder built from a spec dict (see ``aerec.models.spec``).

Use :func:`aerec.backends.get` to pick one.
"""
from .._backends import get, available, names, reasons, FallbackWarning, BackendUnavailableError

__all__ = ["get", "available", "names", "reasons", "FallbackWarning", "BackendUnavailableError"]

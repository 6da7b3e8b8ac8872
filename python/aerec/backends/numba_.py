"""Numba backend (CPU fallback when the compiled module is missing)."""
from __future__ import annotations

NAME = "numba"

try:
    import numba  # noqa: F401
    _REASON = "the numba backend is not implemented yet"
except ImportError:
    _REASON = "numba is not installed (pip install 'aerec[numba]')"


def unavailable_reason():
    return _REASON

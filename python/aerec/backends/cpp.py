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

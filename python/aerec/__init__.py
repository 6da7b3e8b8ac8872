"""aerec: autoencoder recommender systems with compiled (C++/OpenMP/SIMD) kernels."""
from __future__ import annotations

__version__ = "0.1.0"

from ._backends import FallbackWarning, BackendUnavailableError
from . import backends
from ._config import show_config, set_num_threads, get_num_threads

__all__ = [
    "__version__",
    "FallbackWarning",
    "BackendUnavailableError",
    "backends",
    "show_config",
    "set_num_threads",
    "get_num_threads",
]

"""aerec: autoencoder recommender systems with compiled (C++/OpenMP/SIMD) kernels.

Quick start::

    import numpy as np, aerec
    x = np.random.default_rng(0).random((1000, 10), dtype=np.float32)
    ae = aerec.Autoencoder(hidden=(64,)).fit(x[:800], epochs=100, batch_size=32,
                                             validation_data=x[800:])
    codes = ae.encode(x)
"""
from __future__ import annotations

__version__ = "0.1.0"

from ._backends import FallbackWarning, BackendUnavailableError
from . import backends
from ._config import show_config, set_num_threads, get_num_threads
from . import callbacks
from .callbacks import Callback, CSVLogger, EarlyStopping, LambdaCallback, ModelCheckpoint, ReduceLROnPlateau
from .io import ModelFileError, load
from ._validation import UnknownIdError
from . import data, datasets, metrics, search
from . import compress
from .search import TopK
from .data import Interactions
from .evaluation import evaluate, compare
from .plotting import plot_history
from .tuning import TuningResult, tune
from .models import AutoRec, Autoencoder, CDAE, EASE, MultDAE, MultVAE, Popularity

__all__ = [
    "__version__",
    "AutoRec",
    "Autoencoder",
    "CDAE",
    "EASE",
    "Interactions",
    "MultDAE",
    "MultVAE",
    "Popularity",
    "TopK",
    "search",
    "data",
    "datasets",
    "evaluate",
    "compare",
    "tune",
    "TuningResult",
    "metrics",
    "BackendUnavailableError",
    "Callback",
    "CSVLogger",
    "ReduceLROnPlateau",
    "EarlyStopping",
    "FallbackWarning",
    "LambdaCallback",
    "ModelCheckpoint",
    "ModelFileError",
    "UnknownIdError",
    "backends",
    "callbacks",
    "compress",
    "get_num_threads",
    "load",
    "plot_history",
    "set_num_threads",
    "show_config",
]

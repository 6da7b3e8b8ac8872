"""Interaction data: reading, cleaning, id maps, filtering, binarizing and splitting.

Typical use::

    from aerec.data import Interactions, splits
    data = Interactions.read_csv("ratings.csv").binarize(4).filter(5, 5)
    split = splits.strong_generalization(data, n_validation_users=100, n_test_users=100)
"""
from __future__ import annotations

from .cleaning import CleaningReport, DataWarning
from .idmap import IdMap
from .interactions import Interactions
from . import splits
from .splits import (EvalSet, Split, kfold_split, random_split, strong_generalization_split,
                     temporal_split)

from_arrays = Interactions.from_arrays
from_csr = Interactions.from_csr
from_dataframe = Interactions.from_dataframe
read_csv = Interactions.read_csv

__all__ = [
    "CleaningReport", "DataWarning", "IdMap", "Interactions", "EvalSet", "Split", "splits",
    "random_split", "temporal_split", "kfold_split", "strong_generalization_split",
    "from_arrays", "from_csr", "from_dataframe", "read_csv",
]

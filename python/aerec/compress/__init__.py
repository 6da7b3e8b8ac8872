"""Model compression: int8 / bf16 quantisation and pruning, end to end (issue 9).

::

    from aerec import compress
    q8 = compress.quantize(model, precision="int8")      # same class, int8 weights + per-channel scales
    q16 = compress.quantize(model, precision="bf16")
    p = compress.prune(model, sparsity=0.8, method="magnitude", fine_tune=train, fine_tune_epochs=5)
    s = compress.prune(model, sparsity=0.5, method="units")   # smaller dense layers
    e = compress.prune(ease, density=0.1)                     # B's largest 10% of entries, sparse
    g = aerec.MultVAE(pruning=compress.GradualPruning(final_sparsity=0.9, begin=0.2, end=0.8)).fit(train)
    table = compress.report(model, split.test, variants={"int8": q8, "bf16": q16, "pruned-80": p})

A compressed model is a model of the same class: it recommends, scores, encodes and folds in
users as the original does, keeps no fp32 copy of its weight matrices, saves and loads through
``model.save`` / ``aerec.load`` with its weights stored packed (int8 + scales, bf16, sparse with
narrow indices), and records what was done in ``model.compression_`` and its model card. It
cannot be trained (``fit`` raises): train the fp32 model and compress it again.

Pruning during training and its building blocks (masks in the optimizer step, Zhu & Gupta's
schedule, unit pruning, masked fine-tuning) are in :mod:`aerec.compress.pruning`.
"""
from __future__ import annotations

from ._api import is_compressed, prune, quantize, weight_nbytes
from .pruning import GradualPruning, apply_masks, fine_tune, magnitude_masks, prune_units, sparsity_of

__all__ = ["quantize", "prune", "report", "is_compressed", "weight_nbytes", "CompressionReport",
           "GradualPruning", "magnitude_masks", "prune_units", "fine_tune", "apply_masks", "sparsity_of"]


def __getattr__(name):
    # report pulls in evaluation (and matplotlib only when plotting)
    if name in ("report", "CompressionReport"):
        from . import _report
        return getattr(_report, name)
    raise AttributeError(f"module 'aerec.compress' has no attribute {name!r}")

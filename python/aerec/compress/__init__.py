"""Model compression (issue 9): pruning in training (:mod:`aerec.compress.pruning`)."""
from .pruning import GradualPruning, apply_masks, fine_tune, magnitude_masks, prune_units, sparsity_of

__all__ = ["GradualPruning", "magnitude_masks", "prune_units", "fine_tune", "apply_masks", "sparsity_of"]

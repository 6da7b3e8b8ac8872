"""The network engine's Python side: the one spec every backend's ``Network`` is built from."""
from .spec import (ACTIVATIONS, LOSSES, OPTIMIZERS, check_masks, init_params, make_spec, param_shapes,
                   tensor_names)

__all__ = ["ACTIVATIONS", "LOSSES", "OPTIMIZERS", "make_spec", "param_shapes", "tensor_names",
           "init_params", "check_masks"]

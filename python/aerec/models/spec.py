"""The network spec every backend's ``Network`` is built from (one definition, validated here).

A spec is a plain dict (so it serialises into model files without pickle):

layer_sizes : tuple of int, length L+1
    ``(n_in, h_1, ..., n_out)``; weight layer ``i`` maps ``layer_sizes[i] -> layer_sizes[i+1]``
    and holds ``W_i`` of shape ``(layer_sizes[i], layer_sizes[i+1])`` (``x @ W``) and ``b_i``.
activations : tuple of str, length L
    identity | relu | sigmoid | tanh | elu (alpha=1) | selu.
dropout : tuple of float, length L
    inverted dropout on the *input* of each weight layer, training only (keep / (1 - p)).
loss : str
    ``mse``        mean over all elements of (y_hat - y)^2
    ``bce``        mean over all elements of binary cross-entropy, computed from the logits of a
                   sigmoid output layer (softplus(z) - y z); requires activations[-1] == 'sigmoid'
    ``masked_mse`` sum over entries with mask != 0 of (y_hat - y)^2, divided by the batch rows
l2 : float
    adds ``0.5 * l2 * sum_i ||W_i||^2`` (weights, not biases) to the loss.
optimizer : str
    ``adam`` (Kingma & Ba, bias-corrected; weight_decay adds wd*w to the gradient),
    ``adamw`` (decoupled: w -= lr * wd * w before the Adam update), ``sgd`` (momentum, nesterov,
    weight_decay added to the gradient, as torch.optim.SGD).
learning_rate, beta1, beta2, epsilon, weight_decay, momentum : float;  nesterov : bool
encoder_depth : int
    number of weight layers in the encoder; the bottleneck is the output of layer encoder_depth-1.
seed : int
    seeds the dropout and shuffle streams (counter-based, so C++ and NumPy draw identical masks).
"""
from __future__ import annotations

import numbers

ACTIVATIONS = ("identity", "relu", "sigmoid", "tanh", "elu", "selu")
LOSSES = ("mse", "bce", "masked_mse")
OPTIMIZERS = ("adam", "adamw", "sgd")

_DEFAULTS = dict(loss="mse", l2=0.0, optimizer="adam", learning_rate=1e-3, beta1=0.9, beta2=0.999,
                 epsilon=1e-7, weight_decay=0.0, momentum=0.0, nesterov=False, seed=0)


def _choice(name, value, options):
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a string, one of {options}; got {type(value).__name__}")
    v = value.lower()
    if v == "linear":
        v = "identity"
    if v not in options:
        raise ValueError(f"unknown {name} {value!r}; use one of {', '.join(options)}")
    return v


def _float(name, value, lo=None, hi=None, lo_open=False, hi_open=False):
    # the one finite-real check of every public entry point (aerec._validation.check_real)
    from .._validation import check_real
    return check_real(value, name, lo, hi, lo_open=lo_open, hi_open=hi_open)


def _int(name, value, lo=None, hi=2 ** 63 - 1):
    from .._validation import check_int
    return check_int(value, name, lo=lo, hi=hi)


def make_spec(layer_sizes, activations, dropout=None, encoder_depth=None, **kw) -> dict:
    """Validate and complete a network spec (see the module docstring). Returns a new dict."""
    unknown = set(kw) - set(_DEFAULTS)
    if unknown:
        raise TypeError(f"unknown spec keys {sorted(unknown)}; valid: {sorted(_DEFAULTS)}")
    sizes = tuple(_int("layer size", s, lo=1, hi=2 ** 31 - 1) for s in layer_sizes)
    if len(sizes) < 2:
        raise ValueError("layer_sizes needs at least an input and an output size")
    n = len(sizes) - 1
    if isinstance(activations, str):
        activations = (activations,) * n
    acts = tuple(_choice("activation", a, ACTIVATIONS) for a in activations)
    if len(acts) != n:
        raise ValueError(f"need {n} activations (one per weight layer), got {len(acts)}")
    if dropout is None:
        dropout = 0.0
    if isinstance(dropout, numbers.Real):
        dropout = (float(dropout),) + (0.0,) * (n - 1)
    drops = tuple(_float("dropout", p, 0.0, 1.0, hi_open=True) for p in dropout)
    if len(drops) != n:
        raise ValueError(f"need {n} dropout rates (one per weight layer), got {len(drops)}")
    spec = dict(_DEFAULTS)
    spec.update(kw)
    spec["layer_sizes"] = sizes
    spec["activations"] = acts
    spec["dropout"] = drops
    spec["encoder_depth"] = _int("encoder_depth", encoder_depth if encoder_depth is not None else (n + 1) // 2, lo=1)
    if spec["encoder_depth"] > n:
        raise ValueError(f"encoder_depth must be <= {n} (the number of weight layers)")
    spec["loss"] = _choice("loss", spec["loss"], LOSSES)
    spec["optimizer"] = _choice("optimizer", spec["optimizer"], OPTIMIZERS)
    if spec["loss"] == "bce" and acts[-1] != "sigmoid":
        raise ValueError("loss='bce' needs a sigmoid output layer (it is computed from the logits); "
                         f"got output activation {acts[-1]!r}")
    spec["l2"] = _float("l2", spec["l2"], 0.0)
    spec["learning_rate"] = _float("learning_rate", spec["learning_rate"], 0.0, lo_open=True)
    spec["beta1"] = _float("beta1", spec["beta1"], 0.0, 1.0, hi_open=True)
    spec["beta2"] = _float("beta2", spec["beta2"], 0.0, 1.0, hi_open=True)
    spec["epsilon"] = _float("epsilon", spec["epsilon"], 0.0, lo_open=True)
    spec["weight_decay"] = _float("weight_decay", spec["weight_decay"], 0.0)
    spec["momentum"] = _float("momentum", spec["momentum"], 0.0, 1.0, hi_open=True)
    if not isinstance(spec["nesterov"], (bool,)):
        raise TypeError("nesterov must be a bool")
    if spec["nesterov"] and spec["momentum"] == 0.0:
        raise ValueError("nesterov=True needs momentum > 0")
    spec["seed"] = _int("seed", spec["seed"], lo=0)
    return spec

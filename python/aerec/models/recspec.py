"""The spec of ``RecNetwork``, the sparse-input autoencoder behind MultDAE, MultVAE and CDAE.

A spec is a plain dict (serialisable without pickle), validated and completed by
:func:`make_rec_spec`; the NumPy reference and the C++ network are built from the same dict.

layer_sizes : tuple of int, length L+1
    ``(I, h_1, ..., d, ..., I)``: the first weight layer takes a CSR row over ``I`` items, the last
    one outputs ``I`` logits. Weight layer ``l`` holds ``W_l`` of shape
    ``(layer_sizes[l], layer_sizes[l+1])`` and ``b_l``, except the variational layer (below).
activations : tuple of str, length L
    per weight layer (identity | relu | sigmoid | tanh | elu | selu). Mult-*: tanh, identity output;
    CDAE: sigmoid. The output activation must be identity for ``loss='multinomial'``; for
    ``loss='logistic'`` it may be identity or sigmoid (the loss is computed from the logits either
    way and ``forward`` returns logits).
encoder_depth : int
    weight layers in the encoder; the bottleneck ``d = layer_sizes[encoder_depth]``.
variational : bool
    weight layer ``encoder_depth-1`` outputs ``2*d`` values ``(mu, logvar)`` (its W has ``2*d``
    columns, its activation must be identity); training uses ``z = mu + eps * exp(0.5 logvar)``
    with counter-based Gaussian ``eps``, evaluation ``z = mu``. KL
    ``0.5 * sum(exp(logvar) + mu^2 - 1 - logvar)`` per user, averaged over the batch, weighted by
    ``beta = min(anneal_cap, step / total_anneal_steps)`` (``total_anneal_steps = 0`` ->
    ``beta = anneal_cap``), ``step`` being the number of updates made before this one.
normalize_input : bool
    L2-normalise each CSR row before the first layer (Liang et al. 2018).
input_dropout : float
    inverted dropout on the stored non-zeros only, after normalisation (Mult-*: 0.5; CDAE: q).
loss : str
    ``multinomial``: ``-sum_i x_i log softmax(z)_i`` averaged over the batch users (x = the stored
    values of the raw row). ``logistic``: binary cross-entropy from the logits over the user's
    positives (target = stored value) plus ``negative_samples`` sampled negatives per positive
    (a set: duplicates and draws that hit a positive count once; 0 = all items), summed per user
    and averaged over the batch users.
negative_samples : int
    see ``loss``.
n_users_embedding : int
    CDAE: rows of the per-user input matrix ``V`` (n_users, h_1) added to layer 0's
    pre-activation; 0 = none. When set, ``V`` is the last entry of the params list and every call
    takes ``users`` (int32 row -> user id).
l2 : float
    adds ``0.5 * l2 * (sum_l ||W_l||^2 + ||V||^2)`` to the loss (Liang's ``lam``; not the biases).
optimizer : ``adam`` (bias-corrected, ``w -= lr * m_hat / (sqrt(v_hat) + eps)``) or ``sgd``
    (``buf = momentum * buf + g; w -= lr * buf``, as torch.optim.SGD without dampening).
learning_rate, beta1, beta2, epsilon, momentum : float
lazy_adam : bool
    row-sparse updates (for either optimizer) of ``W_0`` and ``V``: only the rows of items / users
    present in the batch are updated (their moments decay only when present, and the l2 term acts
    only on those rows). This differs from dense Adam, where every row's moments decay each step and
    absent rows keep moving along their momentum.
seed : int
    seeds the dropout, Gaussian-noise, negative-sampling and shuffle streams (counter-based,
    splitmix64; NumPy and C++ draw identical values).
"""
from __future__ import annotations

import numpy as np

from .spec import ACTIVATIONS, _choice, _float, _int

REC_LOSSES = ("multinomial", "logistic")
REC_OPTIMIZERS = ("adam", "sgd")

_DEFAULTS = dict(encoder_depth=None, variational=False, anneal_cap=0.2, total_anneal_steps=200000,
                 normalize_input=True, input_dropout=0.5, loss="multinomial", negative_samples=0,
                 n_users_embedding=0, l2=0.0, optimizer="adam", learning_rate=1e-3, beta1=0.9,
                 beta2=0.999, epsilon=1e-8, momentum=0.0, lazy_adam=False, seed=0)


def _bool(name, value):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__}")
    return bool(value)


def make_rec_spec(layer_sizes, activations=None, **kw) -> dict:
    """Validate and complete a ``RecNetwork`` spec (see the module docstring). Returns a new dict.

    ``activations`` defaults to the Mult-* choice: tanh everywhere except identity on the
    variational layer and the output. ``make_rec_spec(**spec)`` is idempotent.
    """
    unknown = set(kw) - set(_DEFAULTS)
    if unknown:
        raise TypeError(f"unknown spec keys {sorted(unknown)}; valid: {sorted(_DEFAULTS)}")
    if isinstance(layer_sizes, (str, bytes)) or not hasattr(layer_sizes, "__iter__"):
        raise TypeError("layer_sizes must be a sequence of ints (n_items, h_1, ..., n_items)")
    sizes = tuple(_int("layer size", s, lo=1, hi=2 ** 31 - 1) for s in layer_sizes)
    if len(sizes) < 2:
        raise ValueError("layer_sizes needs at least an input and an output size")
    if sizes[0] != sizes[-1]:
        raise ValueError(f"layer_sizes must start and end with n_items; got {sizes[0]} and {sizes[-1]}")
    n = len(sizes) - 1
    spec = dict(_DEFAULTS)
    spec.update(kw)
    spec["layer_sizes"] = sizes
    enc = spec["encoder_depth"]
    spec["encoder_depth"] = _int("encoder_depth", enc if enc is not None else (n + 1) // 2, lo=1)
    enc = spec["encoder_depth"]
    if enc > n:
        raise ValueError(f"encoder_depth must be <= {n} (the number of weight layers)")
    spec["variational"] = _bool("variational", spec["variational"])
    if spec["variational"] and enc >= n:
        raise ValueError("variational=True needs a decoder: encoder_depth must be < the number of "
                         f"weight layers ({n})")
    if activations is None:
        activations = tuple("identity" if (l == n - 1 or (spec["variational"] and l == enc - 1))
                            else "tanh" for l in range(n))
    if isinstance(activations, str):
        activations = (activations,) * n
    acts = tuple(_choice("activation", a, ACTIVATIONS) for a in activations)
    if len(acts) != n:
        raise ValueError(f"need {n} activations (one per weight layer), got {len(acts)}")
    spec["activations"] = acts
    if spec["variational"] and acts[enc - 1] != "identity":
        raise ValueError(f"the variational layer (weight layer {enc - 1}) outputs (mu, logvar) and must "
                         f"have activation 'identity', got {acts[enc - 1]!r}")
    spec["loss"] = _choice("loss", spec["loss"], REC_LOSSES)
    if spec["loss"] == "multinomial" and acts[-1] != "identity":
        raise ValueError("loss='multinomial' needs an identity output layer (softmax is part of the loss); "
                         f"got {acts[-1]!r}")
    if spec["loss"] == "logistic" and acts[-1] not in ("identity", "sigmoid"):
        raise ValueError(f"loss='logistic' needs an identity or sigmoid output layer, got {acts[-1]!r}")
    spec["anneal_cap"] = _float("anneal_cap", spec["anneal_cap"], 0.0)
    spec["total_anneal_steps"] = _int("total_anneal_steps", spec["total_anneal_steps"], lo=0)
    spec["normalize_input"] = _bool("normalize_input", spec["normalize_input"])
    spec["input_dropout"] = _float("input_dropout", spec["input_dropout"], 0.0, 1.0, hi_open=True)
    spec["negative_samples"] = _int("negative_samples", spec["negative_samples"], lo=0)
    spec["n_users_embedding"] = _int("n_users_embedding", spec["n_users_embedding"], lo=0)
    spec["l2"] = _float("l2", spec["l2"], 0.0)
    spec["optimizer"] = _choice("optimizer", spec["optimizer"], REC_OPTIMIZERS)
    spec["learning_rate"] = _float("learning_rate", spec["learning_rate"], 0.0, lo_open=True)
    spec["beta1"] = _float("beta1", spec["beta1"], 0.0, 1.0, hi_open=True)
    spec["beta2"] = _float("beta2", spec["beta2"], 0.0, 1.0, hi_open=True)
    spec["epsilon"] = _float("epsilon", spec["epsilon"], 0.0, lo_open=True)
    spec["momentum"] = _float("momentum", spec["momentum"], 0.0, 1.0, hi_open=True)
    spec["lazy_adam"] = _bool("lazy_adam", spec["lazy_adam"])
    spec["seed"] = _int("seed", spec["seed"], lo=0)
    if spec["seed"] >= 2 ** 63:
        raise ValueError("seed must be < 2**63")
    return spec


def rec_param_shapes(spec) -> list:
    """Shapes of ``[W0, b0, W1, b1, ..., (V)]`` for a validated spec."""
    sizes, enc = spec["layer_sizes"], spec["encoder_depth"]
    shapes = []
    for l in range(len(sizes) - 1):
        n_out = sizes[l + 1] * (2 if spec["variational"] and l == enc - 1 else 1)
        shapes += [(sizes[l], n_out), (n_out,)]
    if spec["n_users_embedding"]:
        shapes.append((spec["n_users_embedding"], sizes[1]))
    return shapes


def init_rec_params(spec, random_state=0, dtype=np.float32) -> list:
    """Glorot-uniform weights, zero biases, ``V ~ N(0, 0.01^2)`` (as Liang et al. / Wu et al.)."""
    rng = np.random.default_rng(random_state)
    out = []
    for shape in rec_param_shapes(spec):
        if len(shape) == 1:
            out.append(np.zeros(shape, dtype))
        elif len(out) == 2 * (len(spec["layer_sizes"]) - 1):  # V
            out.append((0.01 * rng.standard_normal(shape)).astype(dtype))
        else:
            lim = np.sqrt(6.0 / (shape[0] + shape[1]))
            out.append(rng.uniform(-lim, lim, shape).astype(dtype))
    return out


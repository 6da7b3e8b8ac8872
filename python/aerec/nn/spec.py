"""The one network spec: every backend's ``Network`` is built from it, every model builds one.

aerec has one network engine: a fixed autoencoder pipeline with pluggable stages, not a general
layer graph::

    input (dense | CSR; optional L2 row normalisation; dropout)
      -> dense stack (size, activation, dropout per weight layer)
      -> bottleneck (plain | Gaussian + KL anneal) [+ per-user embedding on layer 0]
      -> dense stack
      -> loss (mse | bce | masked_mse | multinomial | logistic with sampled negatives)
    optimizer: adam | adamw | sgd (momentum, Nesterov), optionally lazy (row-sparse) on the input
    layer's weight and the user embedding.

A spec is a plain dict (it serialises into model files without pickle), validated and completed
by :func:`make_spec`; ``make_spec(**spec)`` is idempotent. The NumPy reference
(``aerec.backends.numpy_.Network``) and the C++ engine (``aerec._core.Network``,
``cpp/include/aerec/network.hpp``) implement exactly the maths below, and draw exactly the random
streams below, so they agree to float32 rounding for every stage combination.

Keys
----
layer_sizes : tuple of int, length L+1
    ``(n_in, h_1, ..., n_out)``. Weight layer ``l`` maps ``layer_sizes[l] -> layer_sizes[l+1]``
    with ``W_l`` of shape ``(layer_sizes[l], n_out_l)`` (``x @ W``) and ``b_l`` (``n_out_l``),
    where ``n_out_l = layer_sizes[l+1]``, doubled for the variational layer.
activations : tuple of str, length L
    identity | relu | sigmoid | tanh | elu (alpha=1) | selu, one per weight layer. Default
    (``None``): tanh everywhere except identity on the variational layer and the output layer
    (the Mult-* choice).
dropout : tuple of float, length L (a single float means: on the input layer only)
    inverted dropout on the *input* of each weight layer, training only (``keep / (1 - p)``).
    ``dropout[0]`` acts on the (normalised) input: for a CSR input on its stored entries only.
encoder_depth : int
    weight layers in the encoder; the bottleneck ``d = layer_sizes[encoder_depth]`` is the output
    of layer ``encoder_depth - 1``. Default ``(L + 1) // 2``.
normalize_input : bool (False)
    divide each input row by its L2 norm (rows of norm 0 stay 0) before dropout (Liang et al.).
variational : bool (False)
    layer ``v = encoder_depth - 1`` (identity activation, needs a decoder after it) outputs
    ``(mu, logvar)`` as ``2 d`` columns; training uses ``z = mu + eps * exp(0.5 logvar)``,
    evaluation ``z = mu``. The loss adds ``beta_t * mean over rows of
    0.5 * sum_j (exp(logvar) + mu^2 - 1 - logvar)``.
beta : float (1.0),  anneal_steps : int (0)
    ``beta_t = min(beta, step / anneal_steps)`` when ``anneal_steps > 0``, else ``beta``;
    ``step`` = updates made before this one.
n_users : int (0)
    rows of the per-user embedding ``U`` (``n_users`` x ``n_out_0``, CDAE) added to layer 0's
    pre-activation; ``U`` is the last tensor and every call then takes ``users`` (int32 per row).
loss : str ("mse")
    ``mse``         mean over all elements of ``(y_hat - y)^2``
    ``bce``         mean over all elements of ``softplus(z) - y z`` from the output logits ``z``
                    (needs a sigmoid output layer)
    ``masked_mse``  sum over entries with ``mask != 0`` of ``(y_hat - y)^2``, divided by the rows
                    (no mask given: ``mask = (y != 0)``; AutoRec)
    ``multinomial`` ``-sum_c y_c log_softmax(z)_c`` per row, mean over rows (needs an identity
                    output layer; Mult-DAE / Mult-VAE)
    ``logistic``    per row, sum over the set ``S_r`` of ``softplus(z_c) - y_c z_c``, mean over
                    rows; ``S_r`` = the row's positives (stored entries of a CSR ``y``, non-zeros
                    of a dense one) plus ``negative_samples`` draws per positive (a set:
                    duplicates and draws that hit a positive count once); ``negative_samples=0``:
                    ``S_r`` = every item. Output activation identity or sigmoid (the loss reads
                    the logits either way; CDAE).
negative_samples : int (0)
    see ``logistic``; must be 0 for the other losses.
l2 : float (0)
    adds ``0.5 * l2 * (sum_l ||W_l||^2 + ||U||^2)`` (not the biases) to the loss.
optimizer : str ("adam")
    ``adam``  (Kingma & Ba, bias-corrected, ``w -= lr * m_hat / (sqrt(v_hat) + epsilon)``;
    ``weight_decay`` adds ``wd * w`` to the gradient), ``adamw`` (decoupled: ``w -= lr * wd * w``
    before the Adam update), ``sgd`` (``buf = momentum * buf + g``; Nesterov ``g + momentum * buf``;
    ``weight_decay`` added to the gradient; as ``torch.optim.SGD`` without dampening).
learning_rate (1e-3), beta1 (0.9), beta2 (0.999), epsilon (1e-8), weight_decay (0), momentum (0),
nesterov (False)
lazy : bool (False)
    row-sparse updates of ``W_0`` and ``U`` (either optimizer): only the rows of input features
    present in the batch (stored entries of a CSR x, columns with a non-zero of a dense x) and of
    the batch's users are updated; their optimizer state decays only when present, and l2 /
    weight decay act only on those rows. Dense (``lazy=False``) semantics move every row every step.
seed : int in [0, 2**63)
    seeds the dropout, noise, negative-sampling and shuffle streams.

Pruning masks (not part of the spec; ``Network.set_masks``)
-----------------------------------------------------------
A network may carry one mask per weight matrix ``W_l`` (bool / uint8 of ``W_l``'s shape, True = kept,
or None = dense; biases and ``U`` are never masked; :func:`check_masks`). Setting masks zeroes the
pruned weights and their optimizer state (``m``, ``v``, ``velocity``); every optimizer step (every
optimizer, lazy or not) then leaves the pruned weights and their state exactly as they are (0),
which is the same as zeroing them after an unmasked step. ``set_params`` / ``set_optimizer_state``
zero them again. The loss and ``gradients`` are the unmasked ones (a pruned weight is 0, so the
forward pass needs no mask).

Random streams (counter-based; NumPy and C++ draw identical values)
-------------------------------------------------------------------
All arithmetic is uint64 with wrap-around; ``mix64`` is the splitmix64 finaliser
(``z ^= z >> 30; z *= 0xBF58476D1CE4E5B9; z ^= z >> 27; z *= 0x94D049BB133111EB; z ^= z >> 31``),
``G = 0x9E3779B97F4A7C15``.

- stream key ``key(stream, step, layer) = mix64(mix64(mix64(seed ^ stream) ^ step) ^ layer)`` with
  ``DROPOUT = 0x6A09E667F3BCC909``, ``NOISE = 0x3C6EF372FE94F82B``, ``NEGATIVE = 0xA54FF53A5F1D36F1``;
  ``step`` = the optimizer step of the batch being trained.
- ``h(key, e) = mix64(key + (e + 1) * G)``.
- ``row`` is the row's index in the ``x`` given to the call: in ``train_epoch`` the row of the
  whole epoch matrix (whatever the shuffle order), in ``train_batch`` / ``gradients`` 0..rows-1.
  So a user draws the same mask wherever the shuffle puts them, and a dense and a CSR input draw
  the same mask.
- dropout of weight layer ``l``'s input, element ``e = row * n_in_l + col``:
  ``u = (h(key(DROPOUT, step, l), e) >> 40) * 2^-24``; kept when ``u >= float32(p)``, kept values
  times ``float32(1) / (float32(1) - float32(p))`` (float32 arithmetic).
- Gaussian noise of the variational layer ``v``, element ``e = row * d + j``:
  ``h1 = h(k, 2e) >> 40``, ``h2 = h(k, 2e + 1) >> 40`` with ``k = key(NOISE, step, v)``;
  ``u1 = (h1 + 1) * 2^-24``, ``u2 = h2 * 2^-24``, ``eps = sqrt(-2 log u1) cos(2 pi u2)`` in float32.
- negatives of row ``row`` (logistic): for ``t`` in ``[0, negative_samples * n_pos_row)``,
  ``item = ((h(key(NEGATIVE, step, 0), (row << 32) | t) >> 32) * n_out) >> 32``.
- shuffle of ``train_epoch(seed=s)`` over n rows: ``k = mix64(mix64(seed ^ SHUFFLE) ^ s)`` with
  ``SHUFFLE = 0xBB67AE8584CAA73B``; order = row indices sorted by ``(h(k, i), i)``.
"""
from __future__ import annotations

import numbers

import numpy as np

ACTIVATIONS = ("identity", "relu", "sigmoid", "tanh", "elu", "selu")
LOSSES = ("mse", "bce", "masked_mse", "multinomial", "logistic")
OPTIMIZERS = ("adam", "adamw", "sgd")

DEFAULTS = dict(normalize_input=False, variational=False, beta=1.0, anneal_steps=0, n_users=0,
                loss="mse", negative_samples=0, l2=0.0, optimizer="adam", learning_rate=1e-3,
                beta1=0.9, beta2=0.999, epsilon=1e-8, weight_decay=0.0, momentum=0.0,
                nesterov=False, lazy=False, seed=0)

#: keys of the two specs before the engines were merged (model files of aerec <= 0.1), renamed
LEGACY_KEYS = {"anneal_cap": "beta", "total_anneal_steps": "anneal_steps",
               "n_users_embedding": "n_users", "lazy_adam": "lazy"}


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
    from .._validation import check_real  # the one finite-real check of every public entry point
    return check_real(value, name, lo, hi, lo_open=lo_open, hi_open=hi_open)


def _int(name, value, lo=None, hi=2 ** 63 - 1):
    from .._validation import check_int
    return check_int(value, name, lo=lo, hi=hi)


def _bool(name, value):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__}")
    return bool(value)


def from_legacy(spec: dict) -> dict:
    """A spec dict of aerec <= 0.1 (the dense ``Network`` spec or the ``RecNetwork`` one) as the
    keyword arguments of :func:`make_spec` (old model files load through this)."""
    kw = {LEGACY_KEYS.get(k, k): v for k, v in spec.items()}
    if "input_dropout" in kw:  # RecNetwork: dropout on the input only
        p = kw.pop("input_dropout")
        kw.setdefault("dropout", p)
        if "normalize_input" not in spec:
            kw["normalize_input"] = True
    if "loss" in kw and kw["loss"] in ("multinomial", "logistic") and "normalize_input" not in kw:
        kw["normalize_input"] = True  # RecNetwork's default
    if kw.get("nesterov") and kw.get("optimizer", "adam") != "sgd":
        kw["nesterov"] = False  # accepted and ignored by the old dense spec
    return kw


def make_spec(layer_sizes, activations=None, dropout=None, encoder_depth=None, **kw) -> dict:
    """Validate and complete a network spec (see the module docstring). Returns a new dict.

    Raises TypeError for a wrong type or an unknown key, ValueError for a value out of range or
    an inconsistent combination (the message names the key and what to pass instead).
    """
    unknown = set(kw) - set(DEFAULTS)
    if unknown:
        legacy = sorted(k for k in unknown if k in LEGACY_KEYS or k == "input_dropout")
        renamed = ", ".join(f"{k} -> {LEGACY_KEYS.get(k, 'dropout')}" for k in legacy)
        hint = f"; renamed: {renamed}" if legacy else ""
        raise TypeError(f"unknown spec keys {sorted(unknown)}; valid: {sorted(DEFAULTS)}{hint}")
    if isinstance(layer_sizes, (str, bytes)) or not hasattr(layer_sizes, "__iter__"):
        raise TypeError("layer_sizes must be a sequence of ints (n_in, h_1, ..., n_out)")
    sizes = tuple(_int("layer size", s, lo=1, hi=2 ** 31 - 1) for s in layer_sizes)
    if len(sizes) < 2:
        raise ValueError("layer_sizes needs at least an input and an output size")
    n = len(sizes) - 1
    spec = dict(DEFAULTS)
    spec.update(kw)
    spec["layer_sizes"] = sizes
    enc = _int("encoder_depth", encoder_depth if encoder_depth is not None else (n + 1) // 2, lo=1)
    if enc > n:
        raise ValueError(f"encoder_depth must be <= {n} (the number of weight layers)")
    spec["encoder_depth"] = enc
    vae = spec["variational"] = _bool("variational", spec["variational"])
    if vae and enc >= n:
        raise ValueError("variational=True needs a decoder: encoder_depth must be < the number of "
                         f"weight layers ({n})")
    if activations is None:
        activations = tuple("identity" if (l == n - 1 or (vae and l == enc - 1)) else "tanh"
                            for l in range(n))
    if isinstance(activations, str):
        activations = (activations,) * n
    if not hasattr(activations, "__iter__"):
        raise TypeError("activations must be a string or a sequence of strings")
    acts = tuple(_choice("activation", a, ACTIVATIONS) for a in activations)
    if len(acts) != n:
        raise ValueError(f"need {n} activations (one per weight layer), got {len(acts)}")
    spec["activations"] = acts
    if vae and acts[enc - 1] != "identity":
        raise ValueError(f"the variational layer (weight layer {enc - 1}) outputs (mu, logvar) and must "
                         f"have activation 'identity', got {acts[enc - 1]!r}")
    if dropout is None:
        dropout = 0.0
    if isinstance(dropout, numbers.Real) and not isinstance(dropout, bool):
        dropout = (dropout,) + (0.0,) * (n - 1)
    if not hasattr(dropout, "__iter__"):
        raise TypeError("dropout must be a float or a sequence of floats (one per weight layer)")
    drops = tuple(_float("dropout", p, 0.0, 1.0, hi_open=True) for p in dropout)
    if len(drops) != n:
        raise ValueError(f"need {n} dropout rates (one per weight layer), got {len(drops)}")
    spec["dropout"] = drops
    spec["normalize_input"] = _bool("normalize_input", spec["normalize_input"])
    spec["beta"] = _float("beta", spec["beta"], 0.0)
    spec["anneal_steps"] = _int("anneal_steps", spec["anneal_steps"], lo=0)
    spec["n_users"] = _int("n_users", spec["n_users"], lo=0, hi=2 ** 31 - 1)
    loss = spec["loss"] = _choice("loss", spec["loss"], LOSSES)
    if loss == "bce" and acts[-1] != "sigmoid":
        raise ValueError("loss='bce' needs a sigmoid output layer (it is computed from the logits); "
                         f"got output activation {acts[-1]!r}")
    if loss == "multinomial" and acts[-1] != "identity":
        raise ValueError("loss='multinomial' needs an identity output layer (softmax is part of the loss); "
                         f"got {acts[-1]!r}")
    if loss == "logistic" and acts[-1] not in ("identity", "sigmoid"):
        raise ValueError(f"loss='logistic' needs an identity or sigmoid output layer, got {acts[-1]!r}")
    spec["negative_samples"] = _int("negative_samples", spec["negative_samples"], lo=0, hi=2 ** 31 - 1)
    if spec["negative_samples"] and loss != "logistic":
        raise ValueError(f"negative_samples is used by loss='logistic' only; got loss={loss!r}")
    spec["l2"] = _float("l2", spec["l2"], 0.0)
    spec["optimizer"] = _choice("optimizer", spec["optimizer"], OPTIMIZERS)
    spec["learning_rate"] = _float("learning_rate", spec["learning_rate"], 0.0, lo_open=True)
    spec["beta1"] = _float("beta1", spec["beta1"], 0.0, 1.0, hi_open=True)
    spec["beta2"] = _float("beta2", spec["beta2"], 0.0, 1.0, hi_open=True)
    spec["epsilon"] = _float("epsilon", spec["epsilon"], 0.0, lo_open=True)
    spec["weight_decay"] = _float("weight_decay", spec["weight_decay"], 0.0)
    spec["momentum"] = _float("momentum", spec["momentum"], 0.0, 1.0, hi_open=True)
    spec["nesterov"] = _bool("nesterov", spec["nesterov"])
    if spec["nesterov"] and (spec["optimizer"] != "sgd" or spec["momentum"] == 0.0):
        raise ValueError("nesterov=True needs optimizer='sgd' and momentum > 0")
    spec["lazy"] = _bool("lazy", spec["lazy"])
    spec["seed"] = _int("seed", spec["seed"], lo=0, hi=2 ** 63 - 1)
    return spec


def param_shapes(spec) -> list:
    """Shapes of ``[W0, b0, W1, b1, ..., (U)]`` for a validated spec."""
    sizes, enc = spec["layer_sizes"], spec["encoder_depth"]
    shapes = []
    for l in range(len(sizes) - 1):
        n_out = sizes[l + 1] * (2 if spec["variational"] and l == enc - 1 else 1)
        shapes += [(sizes[l], n_out), (n_out,)]
    if spec["n_users"]:
        shapes.append((spec["n_users"], shapes[0][1]))
    return shapes


def check_masks(spec, masks) -> list:
    """Validate pruning masks for a network of ``spec``: ``None`` (no masks) or a list with one
    entry per weight matrix ``W_l``, each None (dense) or a bool / uint8 (values 0 / 1) array of
    ``W_l``'s shape. Returns the list with every array as a C-contiguous bool array (a copy), or
    ``[None] * n_layers``. Wrong count or shape: ValueError; wrong type or dtype: TypeError."""
    shapes = param_shapes(spec)
    L = len(spec["layer_sizes"]) - 1
    if masks is None:
        return [None] * L
    if isinstance(masks, (np.ndarray, str, bytes, dict)) or not hasattr(masks, "__len__"):
        raise TypeError(f"masks must be a list with one entry per weight matrix W0..W{L - 1} (None = dense), "
                        f"or None; got {type(masks).__name__}")
    masks = list(masks)
    if len(masks) != L:
        raise ValueError(f"expected {L} masks (one per weight matrix W0..W{L - 1}, None = dense), got {len(masks)}")
    out = []
    for l, m in enumerate(masks):
        if m is None:
            out.append(None)
            continue
        if not isinstance(m, np.ndarray):
            raise TypeError(f"mask {l} must be a numpy bool or uint8 array or None, got {type(m).__name__}")
        if m.dtype != np.bool_ and m.dtype != np.uint8:
            raise TypeError(f"mask {l} must have dtype bool or uint8 (True / 1 = kept), got {m.dtype}; "
                            "use np.asarray(mask, dtype=bool)")
        if m.shape != shapes[2 * l]:
            raise ValueError(f"mask {l} must have the shape of W{l} {shapes[2 * l]}, got {m.shape}")
        if m.dtype == np.uint8 and m.size and m.max() > 1:
            raise ValueError(f"mask {l} must hold 0 (pruned) or 1 (kept), found {int(m.max())}")
        out.append(np.array(m, dtype=bool, order="C", copy=True))
    return out


def tensor_names(spec) -> list:
    """``["W0", "b0", "W1", "b1", ..., ("U")]``, in the order of :func:`param_shapes`."""
    n = len(spec["layer_sizes"]) - 1
    return [f"{k}{i}" for i in range(n) for k in ("W", "b")] + (["U"] if spec["n_users"] else [])


def init_params(spec, random_state=0, dtype=np.float32) -> list:
    """Glorot-uniform weights, zero biases, ``U ~ N(0, 0.01^2)`` (Liang et al. / Wu et al.)."""
    rng = np.random.default_rng(random_state)
    out = []
    n_layer_tensors = 2 * (len(spec["layer_sizes"]) - 1)
    for i, shape in enumerate(param_shapes(spec)):
        if len(shape) == 1:
            out.append(np.zeros(shape, dtype))
        elif i == n_layer_tensors:  # U
            out.append((0.01 * rng.standard_normal(shape)).astype(dtype))
        else:
            lim = np.sqrt(6.0 / (shape[0] + shape[1]))
            out.append(rng.uniform(-lim, lim, shape).astype(dtype))
    return out

"""Pruning in training: masks in the optimizer step, gradual magnitude pruning, unit pruning.

Three tools, all on the one network engine (:mod:`aerec.nn.spec`, ``Network.set_masks``):

- :class:`GradualPruning` -- the ``pruning=`` option of ``MultVAE`` / ``MultDAE`` / ``CDAE`` /
  ``AutoRec`` / ``Autoencoder``: Zhu & Gupta's (2017) cubic schedule
  ``s_t = s_f + (s_i - s_f) (1 - (t - t0) / (t1 - t0))^3`` over the fraction ``[begin, end]`` of
  the fit's epochs; at each pruning step the masks are recomputed by weight magnitude (per layer by
  default), pruned weights never regrow, and the optimizer keeps them at exactly 0.
- :func:`magnitude_masks` / :func:`fine_tune` -- one-shot magnitude pruning of a trained model,
  then a masked continuation of its training (weights and optimizer state kept).
- :func:`prune_units` -- structured pruning: drops the hidden units with the smallest L2 norm of
  their incoming and outgoing weights and physically shrinks the layers, giving a normal, smaller
  dense model (no sparse kernel, faster to train and to serve).

Sparsity is the fraction of the pruned weight matrices' entries that are zero by the mask (biases
and CDAE's user vectors are never pruned).
"""
from __future__ import annotations

import copy
import numbers

import numpy as np

__all__ = ["GradualPruning", "magnitude_masks", "prune_units", "fine_tune", "apply_masks", "sparsity_of"]


# ---- argument checks --------------------------------------------------------------------------------------------
def _check_sparsity(s, name="sparsity"):
    if isinstance(s, (bool, np.bool_)) or not isinstance(s, numbers.Real):
        raise TypeError(f"{name} must be a number in [0, 1), got {type(s).__name__}")
    s = float(s)
    if not 0.0 <= s < 1.0:
        raise ValueError(f"{name} must be in [0, 1) (the fraction of weights set to zero), got {s}")
    return s


def _check_fraction(v, name):
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real):
        raise TypeError(f"{name} must be a number in [0, 1] (a fraction of the fit's epochs), got {type(v).__name__}")
    v = float(v)
    if not 0.0 <= v <= 1.0:
        raise ValueError(f"{name} must be in [0, 1] (a fraction of the fit's epochs), got {v}")
    return v


def _check_scope(scope):
    if scope not in ("layer", "global"):
        raise ValueError(f"scope must be 'layer' (each weight matrix pruned to the sparsity) or 'global' "
                         f"(one magnitude threshold over all of them), got {scope!r}")
    return scope


def _check_layers(layers, n_layers):
    """``"all"`` or a sequence of weight-layer indices -> sorted tuple of indices."""
    if isinstance(layers, str):
        if layers != "all":
            raise ValueError(f"layers must be 'all' or a list of weight-layer indices, got {layers!r}")
        return tuple(range(n_layers)) if n_layers is not None else "all"
    try:
        idx = [int(i) for i in layers if not isinstance(i, (bool, np.bool_)) and isinstance(i, numbers.Integral)]
        ok = len(idx) == len(list(layers)) and len(idx) > 0
    except TypeError:
        ok = False
    if not ok:
        raise TypeError(f"layers must be 'all' or a non-empty list of weight-layer indices, got {layers!r}")
    if n_layers is not None:
        bad = [i for i in idx if not 0 <= i < n_layers]
        if bad:
            raise ValueError(f"layers: weight-layer index {bad[0]} out of range; the network has {n_layers} weight "
                             f"matrices (0..{n_layers - 1})")
    return tuple(sorted(set(idx)))


# ---- masks of a model, a network or a parameter list ------------------------------------------------------------
def _net_of(obj):
    """The live Network of a fitted model, or the Network itself; None for a parameter list."""
    if isinstance(obj, (list, tuple)):
        return None
    if hasattr(obj, "set_masks") and hasattr(obj, "get_params"):
        return obj
    from ..models.base import Estimator
    if isinstance(obj, Estimator):
        if not hasattr(type(obj), "_continue_fit"):
            raise TypeError(f"{type(obj).__name__} has no trainable network to prune; pruning supports MultVAE, "
                            "MultDAE, CDAE, AutoRec and Autoencoder")
        net = getattr(obj, "net_", None)
        if net is None:
            raise RuntimeError(f"this {type(obj).__name__} is not fitted yet; call fit() first")
        return net
    raise TypeError(f"expected a fitted aerec model, a backend Network or a list of parameters "
                    f"[W0, b0, W1, b1, ...], got {type(obj).__name__}")


def _weights_of(obj):
    """(weight matrices W_0..W_{L-1}, current masks or None) of a model / Network / parameter list."""
    net = _net_of(obj)
    if net is None:
        params = list(obj)
        L = len(params) // 2
        ws = [np.asarray(params[2 * l]) for l in range(L)]
        for l, w in enumerate(ws):
            if w.ndim != 2:
                raise ValueError(f"parameter {2 * l} (W{l}) must be a 2-D weight matrix, got shape {w.shape}; pass "
                                 "the network's parameter list [W0, b0, W1, b1, ...]")
        return ws, [None] * L
    params = net.get_params()
    L = net.n_layers
    return [params[2 * l] for l in range(L)], net.get_masks()


def magnitude_masks(params_or_model, sparsity, layers="all", scope="layer", previous=None):
    """Masks that prune the smallest-magnitude weights.

    Parameters
    ----------
    params_or_model : fitted model, backend ``Network`` or list of arrays
        where the weights come from: a model's network, a network, or its parameter list
        ``[W0, b0, W1, b1, ...]``. A model / network's current masks count as ``previous``.
    sparsity : float in [0, 1)
        the fraction of the chosen weight matrices' entries to prune.
    layers : "all" or list of int, default "all"
        the weight matrices (``W_l``, 0-based) to prune; the others get no mask (None).
    scope : {"layer", "global"}, default "layer"
        "layer": every chosen matrix is pruned to ``sparsity`` on its own (Zhu & Gupta's choice;
        also keeps small matrices such as a bottleneck from being emptied, since a layer's weight
        scale depends on its fan-in and fan-out); "global": one magnitude threshold over all of them.
    previous : list of masks, optional
        weights pruned there stay pruned (pruning never regrows); defaults to the model's masks.

    Returns
    -------
    list
        one bool array per weight matrix (True = kept), None for the matrices not pruned;
        ready for ``Network.set_masks``.
    """
    s = _check_sparsity(sparsity)
    _check_scope(scope)
    ws, current = _weights_of(params_or_model)
    L = len(ws)
    chosen = _check_layers(layers, L)
    prev = current if previous is None else list(previous)
    if len(prev) != L:
        raise ValueError(f"previous must have one entry per weight matrix ({L}), got {len(prev)}")
    # per matrix: |w| and the entries already pruned (they stay pruned and count toward k)
    scores, dead = {}, {}
    for l in chosen:
        scores[l] = np.abs(ws[l].astype(np.float32, copy=False)).ravel()
        if prev[l] is not None:
            p = np.asarray(prev[l], dtype=bool)
            if p.shape != ws[l].shape:
                raise ValueError(f"previous mask {l} has shape {p.shape}, W{l} has {ws[l].shape}")
            dead[l] = ~p.ravel()
    out = [None] * L
    for l in range(L):
        if l not in scores and prev[l] is not None:
            out[l] = np.asarray(prev[l], dtype=bool).copy()
    if scope == "layer":
        for l, sc in scores.items():
            out[l] = _prune_smallest(sc, dead.get(l), int(round(s * sc.size))).reshape(ws[l].shape)
    else:
        allsc = np.concatenate([scores[l] for l in chosen])
        alldead = (np.concatenate([dead[l] if l in dead else np.zeros(scores[l].size, bool) for l in chosen])
                   if dead else None)
        keep = _prune_smallest(allsc, alldead, int(round(s * allsc.size)))
        o = 0
        for l in chosen:
            n = scores[l].size
            out[l] = keep[o:o + n].reshape(ws[l].shape)
            o += n
    return out


def _prune_smallest(scores, dead, k):
    """bool keep-vector with k entries pruned: every ``dead`` one (never regrown), then the live
    ones of smallest score (ties by argpartition's choice). More dead than k: just the dead."""
    keep = np.ones(scores.size, bool) if dead is None else ~dead
    n_dead = scores.size - int(np.count_nonzero(keep))
    k_new = min(k, scores.size) - n_dead
    if k_new <= 0:
        return keep
    live = np.flatnonzero(keep)
    if k_new >= live.size:
        keep[:] = False
        return keep
    idx = np.argpartition(scores[live], k_new - 1)[:k_new]  # only the live entries: no mass of ties
    keep[live[idx]] = False
    return keep


def sparsity_of(masks_or_model):
    """The fraction of masked weights over the masked weight matrices (0.0 without masks)."""
    masks = masks_or_model
    if not isinstance(masks, (list, tuple)):
        net = _net_of(masks_or_model)
        masks = net.get_masks()
    total = pruned = 0
    for m in masks:
        if m is not None:
            total += m.size
            pruned += int(m.size - np.count_nonzero(m))
    return pruned / total if total else 0.0


def apply_masks(model, masks):
    """Set ``masks`` (see ``Network.set_masks``) on a fitted model's network in place: zeroes the
    pruned weights and their optimizer state, and keeps them at 0 in any further training.
    Returns the model."""
    net = _net_of(model)
    if net is None:
        raise TypeError("apply_masks needs a fitted model or a backend Network")
    net.set_masks(masks)
    if hasattr(model, "_index"):
        model._index = None  # the cached search index holds the old weights
    if hasattr(model, "_cache"):
        model._cache = None
    if hasattr(model, "_recon"):
        model._recon = None
    return model


# ---- gradual pruning (Zhu & Gupta 2017) ---------------------------------------------------------------------------
class GradualPruning:
    """Gradual magnitude pruning during ``fit`` (Zhu & Gupta, "To prune, or not to prune", 2017).

    Pass it as a model's ``pruning=`` (``aerec.MultVAE(pruning=GradualPruning(0.9)).fit(train)``).
    Before epoch ``e`` of a fit of ``E`` epochs (progress ``t = e / E``, the fraction of the planned
    updates done), when ``begin <= t`` and a pruning step is due (every ``frequency`` epochs from
    the first epoch at or after ``begin``, and always at the first epoch at or after ``end``), the
    target sparsity is::

        s_t = s_f + (s_i - s_f) * (1 - (t - begin) / (end - begin)) ** 3      (t <= end; s_f after)

    and the masks are recomputed by weight magnitude: the already-pruned weights stay pruned (no
    regrowth) and the smallest-magnitude live weights join them up to ``s_t``. The optimizer keeps
    the pruned weights and their state at exactly 0. If the fit ends before any epoch reaches
    ``end`` (few epochs), the final sparsity is applied after the last epoch (one-shot, without
    recovery epochs). The schedule works on epochs because aerec fits run tens of epochs
    (MultVAE / MultDAE / CDAE 100, AutoRec 70 by default), which gives 30+ pruning steps with the
    default window; a fit of a handful of epochs gets a coarser schedule.

    Parameters
    ----------
    final_sparsity : float in [0, 1)
        ``s_f``: the fraction of each pruned weight matrix set to zero at the end.
    begin, end : float in [0, 1], default 0.2, 0.8
        the schedule's window as fractions of the fit's epochs (``begin < end``).
    initial_sparsity : float in [0, 1), default 0.0
        ``s_i``: the sparsity of the first pruning step (``<= final_sparsity``).
    frequency : int >= 1, default 1
        epochs between pruning steps (Zhu & Gupta's ``delta t``).
    layers : "all" or list of int, default "all"
        the weight matrices to prune (``W_l``, 0-based; e.g. ``[0, 3]`` for MultVAE's input and
        output layers, which hold almost every weight on large item counts).
    scope : {"layer", "global"}, default "layer"
        "layer": every matrix at the schedule's sparsity (Zhu & Gupta; no layer can be emptied);
        "global": one magnitude threshold over all the pruned matrices.

    Attributes
    ----------
    history_ : list of (epoch, sparsity)
        the pruning steps of the last fit (set on the model's copy, see ``model.pruning_steps_``).
    """

    def __init__(self, final_sparsity, begin=0.2, end=0.8, initial_sparsity=0.0, frequency=1, layers="all",
                 scope="layer"):
        self.final_sparsity = _check_sparsity(final_sparsity, "final_sparsity")
        self.initial_sparsity = _check_sparsity(initial_sparsity, "initial_sparsity")
        if self.initial_sparsity > self.final_sparsity:
            raise ValueError(f"initial_sparsity ({self.initial_sparsity}) must be <= final_sparsity "
                             f"({self.final_sparsity})")
        self.begin = _check_fraction(begin, "begin")
        self.end = _check_fraction(end, "end")
        if not self.begin < self.end:
            raise ValueError(f"begin ({self.begin}) must be < end ({self.end}): the schedule runs over the epochs "
                             "from begin to end (fractions of the fit)")
        if isinstance(frequency, (bool, np.bool_)) or not isinstance(frequency, numbers.Integral) or frequency < 1:
            raise ValueError(f"frequency must be an integer >= 1 (epochs between pruning steps), got {frequency!r}")
        self.frequency = int(frequency)
        self.layers = _check_layers(layers, None)  # "all" or a sorted tuple (ranges checked at fit)
        self.scope = _check_scope(scope)

    def __repr__(self):
        return (f"GradualPruning(final_sparsity={self.final_sparsity}, begin={self.begin}, end={self.end}, "
                f"initial_sparsity={self.initial_sparsity}, frequency={self.frequency}, layers={self.layers!r}, "
                f"scope={self.scope!r})")

    def __eq__(self, other):
        return isinstance(other, GradualPruning) and self.to_dict() == other.to_dict()

    def __hash__(self):
        return hash(tuple(sorted((k, str(v)) for k, v in self.to_dict().items())))

    # -- serialisation (model files hold hyper-parameters as JSON) -------------------------------
    def to_dict(self) -> dict:
        """The hyper-parameters as a JSON-able dict (``GradualPruning(**d)`` rebuilds it)."""
        return {"final_sparsity": self.final_sparsity, "begin": self.begin, "end": self.end,
                "initial_sparsity": self.initial_sparsity, "frequency": self.frequency,
                "layers": self.layers if isinstance(self.layers, str) else list(self.layers),
                "scope": self.scope}

    @classmethod
    def from_dict(cls, d):
        if isinstance(d, cls) or d is None:
            return d
        if not isinstance(d, dict):
            raise TypeError(f"pruning must be an aerec.compress.GradualPruning or None, got {type(d).__name__}")
        return cls(**d)

    # -- the schedule -------------------------------------------------------------------------------
    def sparsity_at(self, t):
        """Target sparsity at progress ``t`` in [0, 1] (0 before ``begin``, ``s_f`` from ``end``)."""
        if t < self.begin:
            return 0.0
        if t >= self.end:
            return self.final_sparsity
        f = 1.0 - (t - self.begin) / (self.end - self.begin)
        return self.final_sparsity + (self.initial_sparsity - self.final_sparsity) * f ** 3

    def schedule(self, epochs):
        """``{epoch: target sparsity}``: the pruning steps of a fit of ``epochs`` epochs (before
        each listed epoch; the key ``epochs`` means after the last epoch)."""
        steps = {}
        first = None
        for e in range(epochs):
            t = e / epochs
            if t < self.begin:
                continue
            if first is None:
                first = e
            if t >= self.end:
                steps[e] = self.final_sparsity
                return steps
            if (e - first) % self.frequency == 0:
                steps[e] = self.sparsity_at(t)
        steps[epochs] = self.final_sparsity  # the window never closed: prune to s_f after training
        return steps


class _Pruner:
    """One fit's gradual pruning (used by ``aerec.models._training.run_epochs``)."""

    def __init__(self, pruning, model, epochs):
        self.p = GradualPruning.from_dict(pruning)
        self.model = model
        self.steps = self.p.schedule(epochs) if epochs > 0 else {}
        self.epochs = epochs
        self.done = self.p.final_sparsity == 0.0 or not self.steps
        self.sparsity = sparsity_of(model.net_.get_masks())
        model.pruning_steps_ = []

    def _prune(self, epoch, target):
        net = self.model.net_
        L = net.n_layers
        layers = _check_layers(self.p.layers, L)
        masks = magnitude_masks(net, target, layers=layers, scope=self.p.scope)
        apply_masks(self.model, masks)
        self.sparsity = sparsity_of(masks)
        self.model.pruning_steps_.append((int(epoch), float(self.sparsity)))
        if target >= self.p.final_sparsity:
            self.done = True

    def before_epoch(self, i):
        if i in self.steps:
            self._prune(i, self.steps[i])

    def after_training(self, n_run):
        """Prune to the final sparsity if the schedule did not get there (few epochs, or an early
        stop). Returns whether it pruned."""
        if not self.done and self.epochs > 0:
            self._prune(n_run, self.p.final_sparsity)
            return True
        return False


# ---- structured pruning: whole hidden units ---------------------------------------------------------------------
def _unit_columns(spec, l, keep_units):
    """Columns of W_l / b_l for the kept units of layer l + 1 (the variational layer's mu and logvar)."""
    d = spec["layer_sizes"][l + 1]
    if spec["variational"] and l == spec["encoder_depth"] - 1:
        return np.concatenate([keep_units, keep_units + d])
    return keep_units


def prune_units(model, sparsity):
    """Structured pruning: drop each hidden layer's units with the smallest L2 norm of their incoming
    and outgoing weights, and shrink the layers. Returns a new model of the same class.

    Every hidden layer (the bottleneck included) keeps ``max(1, n - round(sparsity * n))`` of its
    ``n`` units; a unit's score is ``sqrt(||W_in[:, j]||^2 + ||W_out[j, :]||^2)`` (for Mult-VAE's
    bottleneck the mean and log-variance columns both count as incoming). The result is a normal
    dense model of smaller ``hidden`` / ``latent`` (its hyper-parameters and spec say so): it
    serves and trains faster without any sparse kernel. Biases, the optimizer state (moments and
    step), CDAE's user vectors and any pruning masks are sliced along; continue training with
    :func:`fine_tune` (masks None) to recover accuracy.

    Parameters
    ----------
    model : fitted MultVAE, MultDAE, CDAE, AutoRec or Autoencoder
    sparsity : float in [0, 1)
        the fraction of every hidden layer's units to drop.

    Returns
    -------
    model
        a new fitted model (the input is not modified).
    """
    s = _check_sparsity(sparsity)
    net = _net_of(model)
    if net is None or net is model:
        raise TypeError("prune_units needs a fitted aerec model (MultVAE, MultDAE, CDAE, AutoRec or Autoencoder)")
    _hyper_setter(model)  # fail early on an unsupported class
    spec = model.spec_
    sizes = list(spec["layer_sizes"])
    L = len(sizes) - 1
    params = net.get_params()
    state = net.get_optimizer_state()
    masks = net.get_masks()
    keep = [np.arange(sizes[0])]
    for h in range(1, L):
        w_in = params[2 * (h - 1)]
        cols = _unit_columns(spec, h - 1, np.arange(sizes[h]))
        sq = (w_in[:, cols].astype(np.float64) ** 2).sum(axis=0)
        if spec["variational"] and h - 1 == spec["encoder_depth"] - 1:
            sq = sq[:sizes[h]] + sq[sizes[h]:]
        sq += (params[2 * h].astype(np.float64) ** 2).sum(axis=1)
        n_keep = max(1, sizes[h] - int(round(s * sizes[h])))
        order = np.argsort(-np.sqrt(sq), kind="stable")[:n_keep]  # largest first, ties by lower unit
        keep.append(np.sort(order))
    keep.append(np.arange(sizes[-1]))
    new_sizes = tuple(int(k.size) for k in keep)

    def cut(l, a, is_bias):
        cols = _unit_columns(spec, l, keep[l + 1])
        return np.ascontiguousarray(a[cols] if is_bias else a[np.ix_(keep[l], cols)])

    def cut_all(tensors):
        out = []
        for l in range(L):
            out += [cut(l, tensors[2 * l], False), cut(l, tensors[2 * l + 1], True)]
        if spec["n_users"]:
            out.append(np.ascontiguousarray(tensors[2 * L][:, keep[1]]))
        return out

    from ..nn.spec import make_spec, tensor_names
    new_spec = make_spec(**dict(spec, layer_sizes=new_sizes))
    new = copy.copy(model)
    new.__dict__ = dict(model.__dict__)
    _hyper_setter(model)(new, new_sizes)
    new.spec_ = new_spec
    new_params = cut_all(params)
    new.net_ = model._backend().Network(new_spec, new_params)
    names = tensor_names(spec)
    new_state = {"step": state["step"]}
    for slot in {k.split("_", 1)[0] for k in state if k != "step"}:
        sliced = cut_all([state[f"{slot}_{nm}"] for nm in names])
        new_state.update({f"{slot}_{nm}": a for nm, a in zip(names, sliced)})
    new.net_.set_optimizer_state(new_state)
    if any(m is not None for m in masks):
        new.net_.set_masks([None if m is None else cut(l, m, False) for l, m in enumerate(masks)])
    new.history_ = {k: list(v) for k, v in getattr(model, "history_", {}).items()}
    for attr in ("_index", "_cache", "_recon"):
        if attr in new.__dict__:
            setattr(new, attr, None)
    from ..models._serving import GUARD_ATTR
    new.__dict__.pop(GUARD_ATTR, None)
    new.pruned_units_ = {"sparsity": s, "layer_sizes_before": tuple(sizes), "layer_sizes": new_sizes}
    return new


def _hyper_setter(model):
    """A function (model, new layer_sizes) -> None updating the class's width hyper-parameters."""
    name = type(model).__name__
    if name in ("MultVAE", "MultDAE", "CDAE"):
        def f(m, sizes):
            n_enc = len(m.spec_["layer_sizes"]) // 2 - 1  # hidden layers before the bottleneck
            m.hidden = tuple(int(v) for v in sizes[1:1 + n_enc])
            m.latent = int(sizes[1 + n_enc])
        return f
    if name == "AutoRec":
        def f(m, sizes):
            m.hidden = int(sizes[1])
        return f
    if name == "Autoencoder":
        def f(m, sizes):
            m.hidden = tuple(int(v) for v in sizes[1:-1])
        return f
    raise TypeError(f"prune_units supports MultVAE, MultDAE, CDAE, AutoRec and Autoencoder, got {name}")


# ---- masked continuation of training ---------------------------------------------------------------------------
def fine_tune(model, masks, train, epochs=5, **fit_kw):
    """Continue training a fitted model under ``masks`` (see ``Network.set_masks``; None: no masks,
    e.g. after :func:`prune_units`), from its weights and optimizer state (moments and step).
    Returns a new model (the input is not modified); its ``history_`` gets the new epochs.

    Parameters
    ----------
    model : fitted MultVAE, MultDAE, CDAE, AutoRec or Autoencoder
    masks : list of bool arrays / None, or None
        e.g. ``magnitude_masks(model, 0.8)``; ``"keep"`` keeps the model's own masks.
    train
        the training data, as the model's ``fit`` takes it (the same users x items matrix for the
        recommenders; for an ``Autoencoder`` the inputs ``x``).
    epochs : int >= 0, default 5
    **fit_kw
        passed on to the model's continuation (``batch_size``, ``verbose``, ``callbacks``; an
        ``Autoencoder`` takes every ``fit`` argument), and ``pruning=``: a :class:`GradualPruning`
        whose schedule runs over these ``epochs`` (the masks grow from ``masks`` to its final
        sparsity while the network trains).
    """
    from .._validation import check_nonneg_int
    epochs = check_nonneg_int(epochs, "epochs")
    net = _net_of(model)
    if net is None or net is model:
        raise TypeError("fine_tune needs a fitted aerec model")
    if not hasattr(model, "_continue_fit"):
        raise TypeError(f"fine_tune supports MultVAE, MultDAE, CDAE, AutoRec and Autoencoder, got "
                        f"{type(model).__name__}")
    new = copy.copy(model)
    new.__dict__ = dict(model.__dict__)
    from ..models._serving import GUARD_ATTR
    new.__dict__.pop(GUARD_ATTR, None)
    fresh = model._backend().Network(model.spec_, net.get_params())
    fresh.set_optimizer_state(net.get_optimizer_state())
    fresh.set_masks(net.get_masks() if isinstance(masks, str) and masks == "keep" else masks)
    new.net_ = fresh
    new.history_ = {k: list(v) for k, v in getattr(model, "history_", {}).items()}
    for attr in ("_index", "_cache", "_recon"):
        if attr in new.__dict__:
            setattr(new, attr, None)
    new._continue_fit(train, epochs, **fit_kw)
    return new

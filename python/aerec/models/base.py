"""Shared estimator plumbing: hyper-parameters (sklearn contract), seeding, weight init."""
from __future__ import annotations

import inspect

import numpy as np

from .. import _backends
from ..io import read_model_file, rebuild, save_arrays
from ._serving import GUARD_ATTR


def _tuples(d: dict) -> dict:
    """JSON turns tuples into lists; hyper-parameters and specs use tuples."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}


class Estimator:
    """sklearn contract: ``__init__`` only stores hyper-parameters; learned state ends in ``_``.

    Thread safety (``aerec.models._serving``): inference methods may run in any number of threads
    at once; ``fit`` trains a private copy and installs it in one step when done.
    """

    def __getstate__(self):
        # copies (copy.copy, pickle) get their own serving guard, created on first use
        state = dict(self.__dict__)
        state.pop(GUARD_ATTR, None)
        return state

    def _prepare_trainee(self) -> None:
        """Called on the private copy ``fit`` trains (see ``_serving.atomic_fit``): replace any
        attribute that ``fit`` would modify in place rather than rebind. Default: nothing."""

    @classmethod
    def _param_names(cls):
        sig = inspect.signature(cls.__init__)
        return [p.name for p in sig.parameters.values()
                if p.name != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]

    def get_params(self, deep: bool = True) -> dict:
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params):
        valid = set(self._param_names())
        for key, value in params.items():
            if key not in valid:
                raise ValueError(f"invalid parameter {key!r} for {type(self).__name__}; valid: {sorted(valid)}")
            setattr(self, key, value)
        return self

    def __sklearn_tags__(self):
        """scikit-learn >= 1.6 asks every estimator for its tags (``GridSearchCV``,
        ``cross_val_score``); aerec does not depend on scikit-learn, so they are built only when
        scikit-learn asks: no target (``fit(X)``), sparse input accepted, not a classifier or
        regressor."""
        from sklearn.utils import InputTags, Tags, TargetTags
        return Tags(estimator_type=None, target_tags=TargetTags(required=False), transformer_tags=None,
                    regressor_tags=None, classifier_tags=None,
                    input_tags=InputTags(sparse=True, allow_nan=False))

    def __repr__(self) -> str:
        sig = inspect.signature(type(self).__init__)
        parts = []
        for name in self._param_names():
            default = sig.parameters[name].default
            value = getattr(self, name, default)
            if default is inspect.Parameter.empty or not _same(value, default):
                parts.append(f"{name}={value!r}")
        return f"{type(self).__name__}({', '.join(parts)})"

    def _backend(self):
        return _backends.get(self.backend)

    # -- persistence: one file format for every model (aerec.io) ------------------------------
    def _save(self, path, meta: dict, arrays: dict) -> None:
        """Write ``arrays`` with a header holding the class, the hyper-parameters and ``meta``."""
        from ._card import build_card
        params = self.get_params()
        params.pop("backend", None)
        if hasattr(params.get("pruning"), "to_dict"):  # a GradualPruning: JSON in the file
            params["pruning"] = params["pruning"].to_dict()
        save_arrays(path, {"class": type(self).__name__, "params": params, "card": build_card(self), **meta},
                    arrays)

    @property
    def card(self) -> dict:
        """The model card a saved file of this model carries (see ``aerec.models._card``): aerec
        version, dates, hyper-parameters, a fingerprint of the training data, the split it came
        from, the kept epoch's validation metrics and the last test metrics."""
        from ._card import build_card
        return build_card(self)

    @classmethod
    def load(cls, path, backend="auto"):
        """Read a model written by ``save`` (no pickle; checksummed; every field and array checked
        against the class's schema, see ``aerec.io``). A bad file raises ``aerec.ModelFileError``."""
        found, header, arrays = read_model_file(path, expected_class=cls.__name__)
        return rebuild(found, path, header, arrays, backend)

    def _restore_card(self, meta: dict) -> None:
        """The card of a loaded file (files of aerec <= 0.1 have none: an empty one)."""
        card = meta.get("card") or {}
        self.card_ = {k: card[k] for k in ("created", "data", "split", "validation", "kept_epoch", "test")
                      if k in card}
        if "data" in self.card_:
            self.card_["data"] = {**self.card_["data"], "shape": list(self.card_["data"]["shape"])}

    # -- the live network's learning rate (ReduceLROnPlateau) -----------------------------------
    def _get_learning_rate(self) -> float:
        self._check_fitted()
        return float(self.spec_["learning_rate"])

    def _set_learning_rate(self, lr: float) -> None:
        """Continue training at learning rate ``lr``: the network is rebuilt from a spec with the new
        rate, keeping its weights and optimizer state (moments and step), so the next update is
        the one the old network would have made at the new rate."""
        from .._validation import check_real
        lr = check_real(lr, "learning_rate", 0.0, lo_open=True)
        self._check_fitted()
        old = self.net_
        spec = dict(self.spec_, learning_rate=lr)
        net = self._backend().Network(spec, old.get_params())
        net.set_optimizer_state(old.get_optimizer_state())
        net.set_masks(old.get_masks())
        self.spec_, self.net_ = spec, net
        self.learning_rate_ = lr

    def _export_tensors(self) -> dict:
        """The learned arrays by name (subclasses: the network's weights, EASE's ``B``, ...)."""
        from .._schemas import weight_names
        if getattr(self, "net_", None) is None:
            raise RuntimeError(f"this {type(self).__name__} is not fitted yet; call fit() or aerec.load() first")
        if getattr(self.net_, "compressed", False):  # the packed arrays, as the model file names them
            from ..compress._format import export_arrays, layer_prefixes
            return export_arrays(self.net_, layer_prefixes(self.spec_))
        return dict(zip(weight_names(self.spec_), self.net_.get_params()))

    def export_safetensors(self, path) -> None:
        """Write the learned weights as a ``.safetensors`` file (needs the optional ``safetensors``
        package: ``pip install aerec[safetensors]``), for tools outside aerec.

        The tensors have the names of the model file (``encoder.0.weight``, ``encoder.0.bias``, ...,
        ``decoder.<i>.weight``, ``user_embedding.weight``; see ``aerec._schemas.weight_names``): a
        layer computes ``act(x @ weight + bias)``, so ``weight`` is ``(n_in, n_out)``, the transpose of
        PyTorch's ``nn.Linear.weight``. The metadata holds the class, the aerec version and the
        network spec as JSON. Only the weights: ``aerec.load`` reads ``save``'s files, not these."""
        try:
            from safetensors.numpy import save as st_save
        except ImportError:
            raise ImportError("export_safetensors needs the safetensors package: pip install safetensors "
                              "(or aerec[safetensors])") from None
        import json

        from .. import __version__
        from ..io import _json_default, atomic_write
        tensors = {k: np.ascontiguousarray(v) for k, v in self._export_tensors().items()}
        meta = {"class": type(self).__name__, "aerec_version": __version__,
                "layout": "x @ weight + bias (weight is n_in x n_out)"}
        if getattr(self, "spec_", None) is not None:
            meta["spec"] = json.dumps(self.spec_, default=_json_default, sort_keys=True)
        blob = st_save(tensors, metadata=meta)
        with atomic_write(path) as f:
            f.write(blob)

    @classmethod
    def _new_from_meta(cls, meta: dict, backend):
        """An unfitted instance with the saved hyper-parameters."""
        kw = _tuples(meta["params"])
        if isinstance(kw.get("pruning"), dict):
            from ..compress.pruning import GradualPruning
            kw["pruning"] = GradualPruning.from_dict(kw["pruning"])
        if "backend" in cls._param_names():
            kw["backend"] = backend
        return cls(**kw)

    def _check_fitted(self, attr: str = "net_"):
        if getattr(self, attr, None) is None:
            raise RuntimeError(f"this {type(self).__name__} is not fitted yet; call fit() or aerec.load() first")


def named_weights(spec, params) -> tuple[list, dict]:
    """``(names, {name: array})`` of a network's weights as model files store them."""
    from .._schemas import weight_names
    names = weight_names(spec)
    return names, dict(zip(names, params))


def layer_params(net, i) -> tuple:
    """``(W (n_in, n_out), b)`` float32 of weight layer ``i`` of a backend ``Network`` or of an
    ``aerec.compress`` ``CompressedNetwork`` (dequantised: a fresh copy)."""
    if getattr(net, "compressed", False):
        return net.layer_weights(i)
    p = net.get_params()
    return p[2 * i], p[2 * i + 1]


def weights_for_file(model) -> tuple[dict, dict]:
    """``(header fields, {name: array})`` of a model's network as its file stores it: the named
    fp32 weights, or for a compressed model the packed arrays and the ``compression`` header
    (``aerec.compress._format``)."""
    net, comp = model.net_, getattr(model, "compression_", None)
    if getattr(net, "compressed", False):
        from ..compress._format import declare, export_arrays, layer_prefixes
        arrays = export_arrays(net, layer_prefixes(model.spec_))
        return {"compression": {**comp, "arrays": declare(arrays)}}, arrays
    names, weights = named_weights(model.spec_, net.get_params())
    meta = {"weight_names": names}
    if comp:  # structurally pruned: plain fp32 weights of smaller layers
        meta["compression"] = dict(comp)
    return meta, weights


def network_from_file(model, meta, arrays, spec):
    """The network a file holds: a backend ``Network``, or a ``CompressedNetwork`` for a file of a
    compressed model (``model.compression_`` is set from the header then)."""
    comp = meta.get("compression")
    model.compression_ = None
    if comp is not None:
        model.compression_ = {k: (dict(v) if isinstance(v, dict) else v) for k, v in comp.items() if k != "arrays"}
        if "arrays" in comp:
            from ..compress._format import network_from_arrays
            return network_from_arrays(spec, {k: arrays[k] for k in comp["arrays"]}, model._backend())
    net = model._backend().Network(spec, weights_from_file(meta, arrays, spec))
    restore_masks(net, spec, meta, arrays)
    return net


def weights_from_file(meta, arrays, spec) -> list:
    """The weight list of a file: named arrays (format version 2) or ``param_<i>`` (version 1)."""
    from ..nn.spec import param_shapes
    n = len(param_shapes(spec))
    if "weight_names" in meta:
        return [arrays[name] for name in meta["weight_names"]]
    return [arrays[f"param_{i}"] for i in range(n)]


def mask_state(spec, net) -> tuple[dict, dict]:
    """``(meta, arrays)`` that save a network's pruning masks: ``masked_layers`` (the weight
    layers with a mask) and one uint8 array ``mask.<weight name>`` each (1 = kept); empty without
    masks."""
    from .._schemas import weight_names
    masks = net.get_masks()
    layers = [l for l, m in enumerate(masks) if m is not None]
    if not layers:
        return {}, {}
    names = weight_names(spec)
    return ({"masked_layers": layers},
            {f"mask.{names[2 * l]}": np.ascontiguousarray(masks[l], dtype=np.uint8) for l in layers})


def restore_masks(net, spec, meta, arrays) -> None:
    """Set the masks a file saved by :func:`mask_state` holds (none: nothing)."""
    if "masked_layers" not in meta:
        return
    from .._schemas import weight_names
    names = weight_names(spec)
    masks = [None] * (len(spec["layer_sizes"]) - 1)
    for l in meta["masked_layers"]:
        masks[l] = arrays[f"mask.{names[2 * l]}"].astype(bool)
    net.set_masks(masks)


def check_pruning(pruning):
    """The ``pruning=`` hyper-parameter: None or an ``aerec.compress.GradualPruning`` (a dict of
    its arguments is accepted, as model files hold it)."""
    if pruning is None:
        return None
    from ..compress.pruning import GradualPruning
    return GradualPruning.from_dict(pruning)


def _same(a, b) -> bool:
    try:
        return bool(a == b)
    except Exception:  # arrays and the like
        return a is b


def check_random_state(random_state) -> int:
    """Seeds are plain non-negative ints (None draws one from the OS, recorded on the model)."""
    if random_state is None:
        return int(np.random.SeedSequence().generate_state(1, dtype=np.uint32)[0])
    if isinstance(random_state, bool) or not isinstance(random_state, (int, np.integer)):
        raise TypeError(f"random_state must be an int or None, got {type(random_state).__name__}")
    if random_state < 0:
        raise ValueError(f"random_state must be >= 0, got {random_state}")
    return int(random_state)


def derive_seed(seed: int, *stream: int) -> int:
    """A 63-bit seed for sub-stream ``stream`` (e.g. an epoch) of ``seed``, stable across platforms."""
    return int(np.random.SeedSequence([seed, *stream]).generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


def glorot_uniform(rng: np.random.Generator, fan_in: int, fan_out: int) -> np.ndarray:
    """Keras' default Dense initialiser: U(-l, l), l = sqrt(6 / (fan_in + fan_out))."""
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, size=(fan_in, fan_out)).astype(np.float32)

"""What each saved class's model file holds: one :class:`aerec.io.Schema` per class.

Header fields are declared with their types and ranges; arrays with their dtype and a shape in
terms of header fields (``spec.layer_sizes``) or named dimensions (``n_users``, ``n_items``,
``nnz``) that the header's ``dims`` object, the spec or the first array using them fixes.
:func:`aerec.io.read_model_file` checks every file against its class's schema before reading any
array data; the values (finite weights, ids in range, CSR structure) are checked after reading.

Hyper-parameters (``params``) are declared one by one, so a file must hold exactly the
parameters of its class's constructor (``backend`` is not saved). Network specs are read through
:func:`aerec.nn.spec.from_legacy`, so files of aerec <= 0.1 (the dense ``Network`` and the
``RecNetwork`` spec keys) load as the one spec.
"""
from __future__ import annotations

from .io import (Array, Bool, Check, Either, Float, Int, Invalid, Map, Obj, Opt, Schema, Seq, Str,
                 check_csr)
from .nn.spec import ACTIVATIONS, LOSSES, OPTIMIZERS, from_legacy, make_spec, param_shapes, tensor_names

__all__ = ["schema_for", "SCHEMAS"]

#: the largest layer width / item or user count a file may declare (ids are int32)
MAX_DIM = 2 ** 31 - 1
_MAX_LAYERS = 256


class Name:
    """A string naming one of ``options`` as the spec builders accept it (any case, ``linear`` for
    ``identity``); returned unchanged."""

    def __init__(self, options):
        self.options = tuple(options)
        self.expected = f"one of {', '.join(map(repr, self.options))}"

    def __call__(self, v, where):
        if not isinstance(v, str) or ("identity" if v.lower() == "linear" else v.lower()) not in self.options:
            raise Invalid(where, self.expected, v)
        return v


_seed = Opt(Int(0, 2 ** 64 - 1))
_rate = Float(0.0, 1.0, hi_open=True)
_history = Map(Seq(Opt(Float(finite=False))))
_dims = Obj({"n_users": Int(1, MAX_DIM), "n_items": Int(1, MAX_DIM), "nnz": Int(0, 2 ** 62)})
_width = Int(1, MAX_DIM)
_widths = Either(_width, Seq(_width, 0, _MAX_LAYERS))


def _json_object(v):
    if not isinstance(v, dict):
        raise TypeError(f"an object, got {type(v).__name__}")
    return v


def _metrics_map():
    return Map(Opt(Float(finite=False)))


#: the model card (aerec.models._card); absent in files of aerec <= 0.1
CARD = Obj({"aerec_version": Str(), "created": Str(),
            "params": Check(_json_object, "the hyper-parameters"),
            "data": Obj({"shape": Seq(Int(0), 1, 2), "nnz": Int(0), "sha256": Str()}),
            "split": Check(_json_object, "the split's protocol and parameters"),
            "validation": _metrics_map(), "kept_epoch": Int(0), "test": _metrics_map(),
            "compression": Check(_json_object, "the compression (aerec.compress)")},
           optional=("aerec_version", "created", "params", "data", "split", "validation",
                     "kept_epoch", "test", "compression"))


# ----------------------------------------------------------------------------------------------
# compressed models (aerec.compress; the layout: aerec.compress._format)

_PACKED_DTYPES = ("int8", "uint8", "int16", "uint16", "int32", "int64", "float32")
_RESERVED = ("train_", "user_ids", "item_ids", "opt_", "param_")


def _packed_name(v, where):
    import re
    if not isinstance(v, str) or not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.]{0,119}", v) or "." not in v \
            or v.startswith(_RESERVED):
        raise Invalid(where, "a packed array name <layer>.<key> (letters, digits, _)", v)
    return v


class _PackedArrays:
    expected = "an object of packed array names -> {dtype, shape}"

    def __init__(self):
        self.inner = Obj({"dtype": Str(*_PACKED_DTYPES), "shape": Seq(Int(0, 2 ** 40), 0, 2)})

    def __call__(self, v, where):
        if not isinstance(v, dict) or not v or len(v) > 1024:
            raise Invalid(where, self.expected, v)
        return {_packed_name(k, f"{where} key"): self.inner(x, f"{where}.{k}") for k, x in v.items()}


COMPRESSION = Obj({"precision": Str("fp32", "bf16", "int8"), "pruning": Opt(Str("magnitude", "units", "columns")),
                   "sparsity": Float(0.0, 1.0, hi_open=True), "fine_tune_epochs": Int(0),
                   "source": Obj({"class": Str(), "sha256": Str(), "weight_bytes": Int(0)}),
                   "arrays": _PackedArrays()},
                  optional=("fine_tune_epochs", "source", "arrays"))


def _packed(h):
    """The packed arrays a compressed model's header declares, or None (an fp32 network)."""
    comp = h.get("compression")
    if comp is None or "arrays" not in comp:
        return None
    return {k: Array(d["dtype"], tuple(d["shape"])) for k, d in comp["arrays"].items()}


def _check_packed(h, a, spec, prefixes=None):
    comp = h.get("compression")
    if comp is None or "arrays" not in comp:
        return
    from .compress._format import check_arrays
    try:
        check_arrays(spec, {k: a[k] for k in comp["arrays"]}, prefixes)
    except ValueError as exc:
        raise Invalid("compressed arrays", "packed layers that match the spec", got_text=str(exc)) from None


def _sizes_ok(spec, what):
    sizes = spec["layer_sizes"]
    if len(sizes) > _MAX_LAYERS + 1:
        raise ValueError(f"{what} has {len(sizes) - 1} layers, more than {_MAX_LAYERS}")
    big = [s for s in sizes if s > MAX_DIM]
    if big:
        raise ValueError(f"layer size {big[0]} exceeds {MAX_DIM}")
    return spec


def _net_spec(v):
    if not isinstance(v, dict):
        raise TypeError(f"a spec object, got {type(v).__name__}")
    return _sizes_ok(make_spec(**from_legacy(v)), "spec")


# ----------------------------------------------------------------------------------------------
# the training matrix every recommender keeps (seen items, fold-in, AutoRec's ratings)

def _train_arrays():
    return {
        "train_shape": Array("int64", (2,)),
        # absent in files saved with include_history=False (all three or none)
        "train_indptr": Array(("int64", "int32"), ("n_users+1",), required=False),
        "train_indices": Array(("int32", "int64"), ("nnz",), required=False),
        "train_data": Array("float32", ("nnz",), finite=True, nonneg=True, required=False),
        # raw ids of a model fitted on aerec.data.Interactions (integers, floats or strings)
        "user_ids": Array(None, ("n_users",), kinds="iufUS", required=False),
        "item_ids": Array(None, ("n_items",), kinds="iufUS", required=False),
    }


def _check_train(h, a, dims):
    shape = a["train_shape"]
    for i, dname in enumerate(("n_users", "n_items")):
        v = int(shape[i])
        if not 1 <= v <= MAX_DIM:
            raise Invalid("array 'train_shape'", f"{dname} in [1, {MAX_DIM}]", v)
        if dims.setdefault(dname, v) != v:
            raise Invalid("array 'train_shape'", f"{dname} = {dims[dname]}, as the header and the other "
                          "arrays say", v)
    parts = [k for k in ("train_indptr", "train_indices", "train_data") if k in a]
    if parts and len(parts) != 3:
        missing = next(k for k in ("train_indptr", "train_indices", "train_data") if k not in a)
        raise Invalid(f"array {missing!r}", "present (the training matrix is stored whole or not at all)",
                      has_got=False)
    if parts:
        check_csr(a["train_indptr"], a["train_indices"], dims["n_users"], dims["n_items"],
                  "array 'train_indptr'", "array 'train_indices'")
    from .data.idmap import IdMap
    for key in ("user_ids", "item_ids"):
        if key in a:
            try:
                IdMap(a[key])
            except (ValueError, TypeError) as exc:
                raise Invalid(f"array {key!r}", "unique, finite raw ids", got_text=str(exc)) from None


def _recommender(params, fields, arrays, *, dims=None, check=None, optional=(), optional_params=()):
    """A recommender's schema: ``params``, the training matrix and ``dims`` come with every one."""
    def all_arrays(h):
        return {**_train_arrays(), **arrays(h)}

    def check_all(h, a, d):
        _check_train(h, a, d)
        if check is not None:
            check(h, a, d)
        if "spec" in h:
            _check_packed(h, a, h["spec"])
    return Schema({"params": Obj(params, optional_params), "dims": _dims, "card": CARD, "compression": COMPRESSION,
                   **fields}, all_arrays, optional=("dims", "card", "compression", *optional), dims=dims,
                  check=check_all)


def weight_names(spec) -> list:
    """The names of a network's weight arrays in model files (format version 2), in the order of
    :func:`aerec.nn.spec.param_shapes`: ``encoder.<i>.weight`` / ``encoder.<i>.bias`` for the
    layers up to the bottleneck (``spec["encoder_depth"]`` of them), ``decoder.<i>.weight`` /
    ``.bias`` for the others, and ``user_embedding.weight`` (CDAE: one row per training user plus
    the fold-in row). A layer's ``weight`` is ``(n_in, n_out)``: the layer computes
    ``act(x @ weight + bias)`` (Keras' layout; PyTorch's ``nn.Linear`` holds its transpose). Files
    of format version 1 hold the same arrays as ``param_0``, ``param_1``, ... in this order."""
    enc, n = spec["encoder_depth"], len(spec["layer_sizes"]) - 1
    names = []
    for layer in range(n):
        prefix = f"encoder.{layer}" if layer < enc else f"decoder.{layer - enc}"
        names += [f"{prefix}.weight", f"{prefix}.bias"]
    if spec["n_users"]:
        names.append("user_embedding.weight")
    return names


def _weights(shapes, h=None):
    """The weight arrays: named (``h["weight_names"]``, format version 2) or ``param_<i>``; a
    compressed model's packed arrays (its header's ``compression.arrays``)."""
    packed = None if h is None else _packed(h)
    if packed is not None:
        return packed
    if h is not None and "weight_names" in h:
        want = weight_names(h["spec"])
        if list(h["weight_names"]) != want:
            raise Invalid("weight_names", f"{want} (the spec's layers)", list(h["weight_names"]))
        return {name: Array("float32", s, finite=True) for name, s in zip(want, shapes)}
    return {f"param_{i}": Array("float32", s, finite=True) for i, s in enumerate(shapes)}


_weight_names_field = Seq(Str(), 1, 2 * _MAX_LAYERS + 1)

#: the ``pruning`` hyper-parameter (aerec.compress.GradualPruning.to_dict(); absent in older files)
_PRUNING = Opt(Obj({"final_sparsity": Float(0.0, 1.0, hi_open=True), "begin": Float(0.0, 1.0),
                    "end": Float(0.0, 1.0), "initial_sparsity": Float(0.0, 1.0, hi_open=True),
                    "frequency": Int(1), "layers": Either(Str("all"), Seq(Int(0, _MAX_LAYERS - 1), 1, _MAX_LAYERS)),
                    "scope": Str("layer", "global")}))
#: the weight layers that carry a pruning mask (``mask.<weight name>`` arrays, uint8 0 / 1)
_masked_layers_field = Seq(Int(0, _MAX_LAYERS - 1), 1, _MAX_LAYERS)


def _mask_arrays(h):
    """The pruning masks a header declares (``masked_layers``): one uint8 array per masked W_l."""
    if "masked_layers" not in h:
        return {}
    spec = h["spec"]
    L = len(spec["layer_sizes"]) - 1
    names, shapes = weight_names(spec), param_shapes(spec)
    out = {}
    for l in h["masked_layers"]:
        if l >= L:
            raise Invalid("masked_layers", f"weight-layer indices in [0, {L})", l)
        out[f"mask.{names[2 * l]}"] = Array("uint8", shapes[2 * l])
    return out


def _mask_check(h, a, dims):
    for name in _mask_arrays(h):
        if a[name].size and int(a[name].max()) > 1:
            raise Invalid(f"array {name!r}", "0 (pruned) or 1 (kept)", int(a[name].max()))


# ----------------------------------------------------------------------------------------------
# Autoencoder (dense)

_AE_PARAMS = {
    "hidden": _widths, "activation": Either(Name(ACTIVATIONS), Seq(Name(ACTIVATIONS), 1, _MAX_LAYERS)),
    "output_activation": Name(ACTIVATIONS), "loss": Name(LOSSES), "optimizer": Name(OPTIMIZERS),
    "learning_rate": Float(0.0, lo_open=True), "random_state": _seed, "bottleneck": Opt(Int(0, _MAX_LAYERS)),
    "dropout": Either(_rate, Seq(_rate, 1, _MAX_LAYERS + 1)), "l2": Float(0.0), "weight_decay": Float(0.0),
    "momentum": _rate, "nesterov": Bool(), "beta1": _rate, "beta2": _rate, "epsilon": Float(0.0, lo_open=True),
    "pruning": _PRUNING,
}


def _ae_arrays(h):
    spec = h["spec"]
    shapes, names = param_shapes(spec), tensor_names(spec)
    arrays = _weights(shapes, h)
    if _packed(h) is not None:  # compressed: no optimizer state
        return arrays
    arrays["opt_step"] = Array("int64", ())
    if spec["optimizer"] in ("adam", "adamw"):
        for nm, s in zip(names, shapes):
            arrays[f"opt_m_{nm}"] = Array("float32", s, finite=True)
            arrays[f"opt_v_{nm}"] = Array("float32", s, finite=True, nonneg=True)
    elif spec["momentum"] > 0:
        for nm, s in zip(names, shapes):
            arrays[f"opt_velocity_{nm}"] = Array("float32", s, finite=True)
    arrays.update(_mask_arrays(h))
    return arrays


def _ae_check(h, a, dims):
    _plain(h["spec"], "an Autoencoder spec")
    sizes = h["spec"]["layer_sizes"]
    if not h["n_features_in"] == sizes[0] == sizes[-1]:
        raise Invalid("n_features_in", f"the spec's input and output width {sizes[0]} / {sizes[-1]}",
                      h["n_features_in"])
    if "opt_step" in a and int(a["opt_step"]) < 0:
        raise Invalid("array 'opt_step'", "an update count >= 0", int(a["opt_step"]))
    _mask_check(h, a, dims)
    _check_packed(h, a, h["spec"])


AUTOENCODER = Schema(
    {"params": Obj(_AE_PARAMS, ("pruning",)), "spec": Check(_net_spec, "a valid network spec"),
     "n_features_in": _width, "seed": Int(0, 2 ** 64 - 1), "epochs_trained": Int(0), "history": _history,
     "card": CARD, "weight_names": _weight_names_field, "masked_layers": _masked_layers_field,
     "compression": COMPRESSION},
    _ae_arrays, optional=("card", "weight_names", "masked_layers", "compression"), check=_ae_check)


def _plain(spec, what):
    """Autoencoder / AutoRec: no stage of the sparse models."""
    for k in ("variational", "normalize_input", "n_users", "negative_samples", "lazy"):
        if spec[k]:
            raise Invalid("spec", f"{what}: {k} off", spec[k])


# ----------------------------------------------------------------------------------------------
# AutoRec

_AUTOREC_PARAMS = {
    "kind": Str("item", "user"), "hidden": _width, "activation": Name(ACTIVATIONS), "l2": Float(0.0),
    "learning_rate": Float(0.0, lo_open=True), "epochs": Int(0), "batch_size": Int(1),
    "optimizer": Name(OPTIMIZERS), "clip": Opt(Either(Str("auto"), Seq(Float(), 2, 2))),
    "dropout": Either(_rate, Seq(_rate, 2, 2)), "random_state": _seed, "pruning": _PRUNING,
}


def _clip(v):
    if not isinstance(v, list) or len(v) != 2:
        raise TypeError("a [low, high] pair")
    lo, hi = v
    if lo is None and hi is None:
        return (None, None)
    lo, hi = Float()(lo, "low"), Float()(hi, "high")
    if lo > hi:
        raise ValueError(f"low {lo} > high {hi}")
    return (lo, hi)


def _autorec_spec(h):
    sizes = h["spec"]["layer_sizes"]
    if len(sizes) != 3 or sizes[0] != sizes[2] or h["spec"]["loss"] != "masked_mse":
        raise Invalid("spec", "an AutoRec spec: layer_sizes (n, hidden, n), loss masked_mse", has_got=False)
    _plain(h["spec"], "an AutoRec spec")
    return sizes


def _autorec_dims(h):
    n = _autorec_spec(h)[0]
    return {"n_users": n} if h["params"]["kind"] == "item" else {"n_items": n}


def _autorec_arrays(h):
    _autorec_spec(h)
    return {**_weights(param_shapes(h["spec"]), h), **_mask_arrays(h)}


AUTOREC = _recommender(
    _AUTOREC_PARAMS,
    {"spec": Check(_net_spec, "a valid network spec"), "seed": Int(0, 2 ** 64 - 1),
     "clip": Check(_clip, "[low, high] numbers with low <= high, or [null, null]"), "history": _history,
     "weight_names": _weight_names_field, "masked_layers": _masked_layers_field},
    _autorec_arrays, dims=_autorec_dims, optional=("history", "weight_names", "masked_layers"),
    check=_mask_check, optional_params=("pruning",))


# ----------------------------------------------------------------------------------------------
# MultDAE, MultVAE, CDAE

_REC_COMMON = {
    "hidden": _widths, "latent": Either(_width, Seq(_width, 1, 1)), "activation": Name(ACTIVATIONS),
    "dropout": _rate, "l2": Either(Str("auto"), Float(0.0)), "learning_rate": Float(0.0, lo_open=True),
    "epochs": Int(0), "batch_size": Either(Str("auto"), Int(1)), "optimizer": Name(OPTIMIZERS), "lazy_adam": Bool(),
    "random_state": _seed, "pruning": _PRUNING,
}


def _sparse_ae(variational, loss, normalize, user_embedding, extra):
    def spec(v):
        s = _net_spec(v)
        want = dict(variational=variational, loss=loss, normalize_input=normalize)
        for k, x in want.items():
            if s[k] != x:
                raise ValueError(f"{k} must be {x!r} for this model, got {s[k]!r}")
        if s["layer_sizes"][0] != s["layer_sizes"][-1]:
            raise ValueError("layer_sizes must start and end with n_items")
        if bool(s["n_users"]) != user_embedding:
            raise ValueError("n_users must be the training users + 1" if user_embedding
                             else "n_users must be 0 for this model")
        return s

    def dims(h):
        s = h["spec"]
        d = {"n_items": s["layer_sizes"][0]}
        if user_embedding:  # one learned row per training user, plus the fold-in row
            d["n_users"] = s["n_users"] - 1
        return d

    def arrays(h):
        return {**_weights(param_shapes(h["spec"]), h), **_mask_arrays(h)}

    return _recommender({**_REC_COMMON, **extra},
                        {"spec": Check(spec, "a valid network spec for this model"), "seed": Int(0, 2 ** 64 - 1),
                         "history": _history, "best_epoch": Int(0), "weight_names": _weight_names_field,
                         "masked_layers": _masked_layers_field},
                        arrays, dims=dims, optional=("history", "best_epoch", "weight_names", "masked_layers"),
                        check=_mask_check, optional_params=("pruning",))


MULTDAE = _sparse_ae(False, "multinomial", True, False, {})
MULTVAE = _sparse_ae(True, "multinomial", True, False,
                     {"anneal_cap": Float(0.0), "total_anneal_steps": Either(Str("auto"), Int(0))})
CDAE = _sparse_ae(False, "logistic", False, True, {"negative_samples": Int(0)})


# ----------------------------------------------------------------------------------------------
# EASE, Popularity

def _float_dtype(v):
    import numpy as np
    if not isinstance(v, str) or np.dtype(v) not in (np.float32, np.float64):
        raise ValueError(f"got {v!r}")
    return v


EASE = _recommender(
    {"l2": Either(Str("auto"), Float(0.0, lo_open=True)), "dtype": Check(_float_dtype, "a float32 or float64 dtype name"),
     "max_memory": Opt(Either(Int(0), Float(0.0))), "verbose": Either(Bool(), Int(0)),
     "solver": Str("auto", "primal", "dual")},
    {"l2_": Float(0.0, lo_open=True)},
    lambda h: _packed(h) or {"B_": Array("float32", ("n_items", "n_items"), finite=True)},
    optional=("l2_",), optional_params=("solver",), check=lambda h, a, d: _check_packed(h, a, ease_spec(d["n_items"]), ["B"]))


def ease_spec(n_items):
    """The one-layer network spec a compressed EASE runs: scores = history @ B (CSR input)."""
    return make_spec((int(n_items), int(n_items)), ("identity",), encoder_depth=1)  # files of aerec <= 0.1: a fixed l2, no solver

POPULARITY = _recommender(
    {}, {}, lambda h: {"item_counts_": Array("float32", ("n_items",), finite=True, nonneg=True)})


# ----------------------------------------------------------------------------------------------
# search.TopK

def _topk_arrays(h):
    return {"items": Array("float32", ("n_items", "dim"), finite=True),
            "bias": Array("float32", ("n_items",), finite=True, required=False)}


def _topk_check(h, a, dims):
    import numpy as np
    if 0 < h["rescore"] < 1:
        raise Invalid("header 'rescore'", "0 or >= 1", h["rescore"])
    if h["rescore"] == 0 and h["precision"] == "fp32":
        raise Invalid("header 'rescore'", ">= 1 for precision 'fp32' (0 is for bf16 / int8: no fp32 copy)",
                      0)
    if "bias" in a and h["metric"] != "ip":
        raise Invalid("array 'bias'", "no bias with metric 'cosine'", has_got=False)
    if h["metric"] == "cosine":  # stored normalised, as the kernel sees them
        x = a["items"].astype(np.float64)
        norms = np.sqrt(np.einsum("ij,ij->i", x, x))
        bad = (norms != 0) & (np.abs(norms - 1.0) > 1e-3)
        if bad.any():
            raise Invalid("array 'items'", "unit-norm (or zero) rows for metric 'cosine'",
                          f"row {int(np.argmax(bad))} of norm {norms[bad][0]:.4g}")


TOPK = Schema(
    {"metric": Str("ip", "cosine"), "precision": Str("fp32", "bf16", "int8"), "rescore": Float(0, 1 << 20),
     "prune": Bool(), "n_items": Int(1, MAX_DIM), "dim": Int(1, MAX_DIM)},
    _topk_arrays, dims=lambda h: {"n_items": h["n_items"], "dim": h["dim"]}, check=_topk_check)


SCHEMAS = {"Autoencoder": AUTOENCODER, "AutoRec": AUTOREC, "MultDAE": MULTDAE, "MultVAE": MULTVAE,
           "CDAE": CDAE, "EASE": EASE, "Popularity": POPULARITY, "TopK": TOPK}


def schema_for(name: str) -> Schema:
    return SCHEMAS[name]

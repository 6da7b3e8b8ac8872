"""How compressed models live in model files (``aerec.io``; no pickle).

A compressed model's header carries a ``compression`` object::

    {"precision": "int8" | "bf16" | "fp32", "pruning": null | "magnitude" | "units" | "columns",
     "sparsity": float in [0, 1), "fine_tune_epochs": int, "source": {"class", "sha256", "weight_bytes"},
     "arrays": {member name: {"dtype": name, "shape": [ints]}}}

``arrays`` lists the packed arrays (absent for a structurally pruned model, which stores plain fp32
weights of its smaller layers): each weight layer's ``aerec.backends._quant.pack_layer`` arrays as
``<prefix>.<key>`` (``encoder.0.<key>``, ..., ``decoder.<i>.<key>``; EASE: ``B.<key>``), and CDAE's
per-user table as ``user_embedding.<key>``. The schema (``aerec._schemas``) declares them from this
header, so the reader checks every member's dtype and size before reading it; after reading,
:func:`check_arrays` rebuilds each layer's ``validate_layer`` check and the layer sizes against the
spec, so a corrupted or mismatched file raises ``aerec.ModelFileError`` (a ValueError) naming the
array.
"""
from __future__ import annotations

import hashlib

import numpy as np

from ._network import CompressedNetwork, check_rows, layer_prefixes, quant_module

__all__ = ["export_arrays", "declare", "network_from_arrays", "check_arrays", "DTYPES", "source_fingerprint"]

#: dtypes a packed array may have in a file
DTYPES = ("int8", "uint8", "int16", "uint16", "int32", "int64", "float32")
PRUNINGS = (None, "magnitude", "units", "columns")
USERS = "user_embedding"


def source_fingerprint(model, params) -> dict:
    """``{"class", "sha256", "weight_bytes"}`` of the fp32 weights a compressed model came from."""
    h = hashlib.sha256()
    n = 0
    for a in params:
        a = np.ascontiguousarray(a, dtype="<f4")
        h.update(str(a.shape).encode())
        h.update(a.reshape(-1).view(np.uint8))
        n += a.nbytes
    return {"class": type(model).__name__, "sha256": h.hexdigest(), "weight_bytes": int(n)}


def export_arrays(net: CompressedNetwork, prefixes) -> dict:
    """``{member name: array}`` of a compressed network."""
    out = {}
    for prefix, layer in zip(prefixes, net.packed_layers()):
        for key, a in layer.items():
            out[f"{prefix}.{key}"] = np.ascontiguousarray(a)
    users = net.packed_users()
    if users is not None:
        for key, a in users.items():
            out[f"{USERS}.{key}"] = np.ascontiguousarray(a)
    for name in out:
        key = name.rpartition(".")[2]
        if not key.replace("_", "").isalnum() or len(name) > 120:
            raise ValueError(f"packed array name {name!r} cannot be stored (member names are letters, digits, _)")
    return out


def declare(arrays: dict) -> dict:
    """The header's ``arrays`` object for ``arrays``."""
    return {k: {"dtype": np.dtype(a.dtype).name, "shape": [int(s) for s in a.shape]} for k, a in arrays.items()}


def _group(arrays: dict, prefixes) -> tuple[list, dict | None]:
    layers = [{} for _ in prefixes]
    index = {p: i for i, p in enumerate(prefixes)}
    users = {}
    for name, a in arrays.items():
        prefix, _, key = name.rpartition(".")
        if prefix == USERS:
            users[key] = a
        elif prefix in index:
            layers[index[prefix]][key] = a
        else:
            raise ValueError(f"array {name!r} belongs to no layer (layers: {', '.join(prefixes)})")
    for p, layer in zip(prefixes, layers):
        if not layer:
            raise ValueError(f"layer {p!r} has no packed arrays")
    return layers, (users or None)


def network_from_arrays(spec, arrays: dict, backend, prefixes=None) -> CompressedNetwork:
    """The :class:`CompressedNetwork` of a file's packed arrays."""
    prefixes = layer_prefixes(spec) if prefixes is None else prefixes
    layers, users = _group(arrays, prefixes)
    return CompressedNetwork(spec, layers, backend, users=users)


def check_arrays(spec, arrays: dict, prefixes=None) -> None:
    """Raise ValueError (naming the layer) unless ``arrays`` are valid packed layers of ``spec``."""
    prefixes = layer_prefixes(spec) if prefixes is None else prefixes
    quant = quant_module()
    layers, users = _group(arrays, prefixes)
    sizes = spec["layer_sizes"]
    for i, (p, layer) in enumerate(zip(prefixes, layers)):
        try:  # dtypes, shapes, codes, index ranges, finite values, scales > 0
            n_in, n_out = quant.layer_info(layer)[:2]
        except (ValueError, TypeError, KeyError, IndexError) as exc:
            raise ValueError(f"layer {p!r}: {exc}") from None
        if (n_in, n_out) != (sizes[i], sizes[i + 1]):
            raise ValueError(f"layer {p!r} maps {n_in} -> {n_out}, but the spec says {sizes[i]} -> {sizes[i + 1]}")
    if spec["n_users"]:
        if users is None:
            raise ValueError(f"array {USERS}.* (the per-user vectors) is missing")
        check_rows(users, spec["n_users"], sizes[1], USERS)
    elif users is not None:
        raise ValueError(f"{USERS}.* arrays in a model without per-user vectors")

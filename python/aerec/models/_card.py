"""The model card every model file carries (``header["card"]``): what made the model.

Fields (all optional on reading; files of aerec <= 0.1 have no card and still load):

- ``aerec_version``: the aerec that wrote the file; ``created``: when the model was fitted (UTC,
  ISO 8601; saving a loaded model again keeps it, so the file comes out the same);
- ``params``: the hyper-parameters (as in the header's ``params``);
- ``data``: a fingerprint of the training matrix as ``fit`` received it: ``shape``, ``nnz`` and
  ``sha256``, the SHA-256 of its canonical CSR (indptr as int64, indices as int64, data as float32,
  little-endian, in that order); for the dense ``Autoencoder``, of the float32 input array;
- ``split``: the split protocol and its parameters (seed included) when ``fit`` received the
  ``train`` part of an :mod:`aerec.data.splits` split (``Split.info``);
- ``validation`` and ``kept_epoch``: the validation metrics of the epoch whose weights the model
  kept (``best_epoch_``, else the last epoch);
- ``test``: the metrics of the last :func:`aerec.evaluate` on a split's test set;
- ``compression``: for a model made by :mod:`aerec.compress`: ``precision``, ``pruning``,
  ``sparsity``, ``fine_tune_epochs`` and ``source`` (the class, SHA-256 and byte size of the
  fp32 weights it was made from).
"""
from __future__ import annotations

import datetime
import hashlib

import numpy as np

__all__ = ["fingerprint", "dense_fingerprint", "now", "split_info_of", "build_card"]


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def fingerprint(X) -> dict:
    """``{"shape", "nnz", "sha256"}`` of a CSR matrix (canonical dtypes, so the same matrix gives
    the same digest whatever its index dtypes)."""
    h = hashlib.sha256()
    for a, dt in ((X.indptr, "<i8"), (X.indices, "<i8"), (X.data, "<f4")):
        a = np.asarray(a)
        step = 1 << 22
        for s in range(0, a.size, step):
            h.update(np.ascontiguousarray(a[s:s + step], dtype=dt).tobytes())
    return {"shape": [int(X.shape[0]), int(X.shape[1])], "nnz": int(X.nnz), "sha256": h.hexdigest()}


def dense_fingerprint(x: np.ndarray) -> dict:
    h = hashlib.sha256(np.ascontiguousarray(x, dtype="<f4").tobytes())
    return {"shape": [int(s) for s in x.shape], "nnz": int(np.count_nonzero(x)), "sha256": h.hexdigest()}


def _json_scalar(v):
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return float(v)
    if isinstance(v, str) or v is None:
        return v
    return None


def split_info_of(train):
    """The ``Split.info`` the ``train`` part of an aerec split carries (JSON scalars only), or None."""
    info = getattr(train, "split_info", None)
    if not isinstance(info, dict):
        return None
    return {str(k): _json_scalar(v) for k, v in info.items()}


def build_card(model) -> dict:
    """The card written into ``model``'s file now."""
    from .. import __version__
    card = dict(getattr(model, "card_", None) or {})
    out = {"aerec_version": __version__, "created": card.get("created") or now()}
    params = model.get_params()
    params.pop("backend", None)
    if hasattr(params.get("pruning"), "to_dict"):  # a GradualPruning: its arguments
        params["pruning"] = params["pruning"].to_dict()
    out["params"] = params
    data = card.get("data")
    if data is None and getattr(model, "train_", None) is not None:
        data = fingerprint(model.train_)
    if data is not None:
        out["data"] = data
    if card.get("split"):
        out["split"] = card["split"]
    history = getattr(model, "history_", None) or {}
    val = {k: v for k, v in history.items() if k.startswith("val_") and v}
    if val:
        best = getattr(model, "best_epoch_", None)
        n = max(len(v) for v in val.values())
        epoch = int(best) if best is not None and best < n else n - 1
        metrics = {k: (None if v[epoch] is None else float(v[epoch])) for k, v in val.items() if len(v) > epoch}
        if getattr(model, "_selects_epochs", True):
            out["validation"], out["kept_epoch"] = metrics, epoch
        else:  # EASE: the kept entry is an l2 of its grid, not an epoch
            out["validation"] = {**metrics, "l2": float(model.l2_)}
    elif card.get("validation"):  # a loaded model whose file holds no training history (EASE)
        out["validation"] = card["validation"]
        if card.get("kept_epoch") is not None:
            out["kept_epoch"] = card["kept_epoch"]
    if card.get("test"):
        out["test"] = card["test"]
    comp = getattr(model, "compression_", None)
    if comp:  # precision, pruning, sparsity, the source model's weights fingerprint
        out["compression"] = {k: v for k, v in comp.items() if k != "arrays"}
    return out

"""Model files: a NumPy ``.npz`` archive of plain arrays plus a JSON header. No pickle, ever.

Writes are atomic (temporary file in the target folder, fsync, ``os.replace``), so a crash or a
full disk never leaves a half-written file at the target path. Each file carries a format version
and a SHA-256 digest of its contents; a truncated or altered file raises :class:`ModelFileError`.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import tempfile
import zipfile

import numpy as np

FORMAT = "aerec-model"
FORMAT_VERSION = 1
_META_KEY = "__aerec_meta__"
_MODEL_CLASSES: dict[str, type] = {}

__all__ = ["ModelFileError", "atomic_write", "save_arrays", "load_arrays", "register_model", "load"]


class ModelFileError(ValueError):
    """A model file is truncated, altered, of another format or of an unsupported version."""


def register_model(cls):
    """Class decorator: make ``aerec.load`` able to rebuild ``cls`` (by name, no code execution)."""
    _MODEL_CLASSES[cls.__name__] = cls
    return cls


def _digest(meta_without_digest: dict, arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    h.update(json.dumps(meta_without_digest, sort_keys=True).encode())
    for key in sorted(arrays):
        a = np.ascontiguousarray(arrays[key])
        h.update(key.encode())
        h.update(str(a.dtype).encode())
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _json_default(o):
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"cannot store {type(o).__name__} in a model header")


def save_arrays(path, meta: dict, arrays: dict[str, np.ndarray]) -> None:
    """Atomically write ``meta`` (JSON-able) and ``arrays`` to ``path`` (.npz)."""
    path = os.fspath(path)
    for k, a in arrays.items():
        if not isinstance(a, np.ndarray) or a.dtype == object:
            raise TypeError(f"array {k!r} must be a numeric ndarray")
    meta = json.loads(json.dumps(dict(meta), default=_json_default))
    meta["format"] = FORMAT
    meta["format_version"] = FORMAT_VERSION
    meta["sha256"] = _digest(meta, arrays)
    header = np.frombuffer(json.dumps(meta, sort_keys=True).encode(), dtype=np.uint8)
    with atomic_write(path) as f:
        np.savez(f, **{_META_KEY: header}, **arrays)


@contextlib.contextmanager
def atomic_write(path, suffix: str = ".tmp"):
    """Open a temporary file beside ``path`` for binary writing; on success fsync it and
    ``os.replace`` it onto ``path``, on any error delete it. ``path`` is never left half-written."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"folder {folder!r} does not exist; create it before saving")
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=suffix, dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def load_arrays(path) -> tuple[dict, dict[str, np.ndarray]]:
    """Read a file written by :func:`save_arrays`; verify format, version and digest."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            raw = f.read()
        with np.load(io.BytesIO(raw), allow_pickle=False) as z:
            if _META_KEY not in z.files:
                raise ModelFileError(f"{path!r} is not an aerec model file (no header)")
            arrays = {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise
    except ModelFileError:
        raise
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as exc:
        raise ModelFileError(f"{path!r} is truncated, altered or not an aerec model file ({exc})") from None
    try:
        meta = json.loads(arrays.pop(_META_KEY).tobytes().decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"{path!r} has a corrupt header ({exc})") from None
    if meta.get("format") != FORMAT:
        raise ModelFileError(f"{path!r} is not an aerec model file")
    if meta.get("format_version", 0) > FORMAT_VERSION:
        raise ModelFileError(f"{path!r} was written by a newer aerec (format {meta.get('format_version')}); "
                             "upgrade aerec to read it")
    digest = meta.pop("sha256", None)
    if digest != _digest(meta, arrays):
        raise ModelFileError(f"{path!r} failed its checksum: the file was altered or damaged")
    return meta, arrays


def load(path, backend: str = "auto"):
    """Load any aerec model saved with ``model.save(path)``."""
    meta, arrays = load_arrays(path)
    name = meta.get("class")
    cls = _MODEL_CLASSES.get(name)
    if cls is None:
        raise ModelFileError(f"{path!r} holds a {name!r}, which this aerec does not know")
    return cls._from_state(meta, arrays, backend=backend)

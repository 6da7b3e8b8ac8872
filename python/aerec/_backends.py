"""Backend registry: names -> implementation modules, probes that never raise, ``get``.

Every backend module implements the same interface (see ``aerec/backends/__init__.py``). The NumPy
backend is the reference oracle and is always available.
"""
from __future__ import annotations

import importlib
import os
import threading
import warnings

__all__ = ["FallbackWarning", "BackendUnavailableError", "get", "available", "names", "reasons"]


class FallbackWarning(UserWarning):
    """An automatic choice fell back to a slower backend (the message says why)."""


class BackendUnavailableError(RuntimeError):
    """A backend was asked for by name but cannot run here (the message says why)."""


# name -> module path. Order of the automatic choice for host (NumPy) data.
_MODULES = {
    "cpp": "aerec.backends.cpp",
    "numba": "aerec.backends.numba_",
    "numpy": "aerec.backends.numpy_",
}
_AUTO_ORDER_CPU = ("cpp", "numba", "numpy")

_lock = threading.Lock()
_loaded: dict[str, object] = {}
_reasons: dict[str, str] = {}
_warned: set[str] = set()


def names() -> tuple[str, ...]:
    """All backend names aerec knows (available or not)."""
    return tuple(_MODULES)


def _probe(name: str):
    """Import backend ``name``; return the module or None, recording why. Never raises."""
    with _lock:
        if name in _loaded:
            return _loaded[name]
        if name in _reasons:
            return None
        try:
            mod = importlib.import_module(_MODULES[name])
            reason = mod.unavailable_reason() if hasattr(mod, "unavailable_reason") else None
        except ImportError as exc:  # missing optional dependency or compiled module
            mod, reason = None, f"{type(exc).__name__}: {exc}"
        if reason:
            _reasons[name] = reason
            return None
        _loaded[name] = mod
        return mod


def reasons() -> dict[str, str]:
    """Map of backend name -> why it is unavailable (probes every backend)."""
    for n in _MODULES:
        _probe(n)
    return dict(_reasons)


def available() -> dict[str, bool]:
    """Map of backend name -> whether it can run here."""
    return {n: _probe(n) is not None for n in _MODULES}


def _check_name(name: str) -> str:
    if not isinstance(name, str):
        raise TypeError(f"backend must be a string, got {type(name).__name__}")
    key = name.lower()
    if key != "auto" and key not in _MODULES:
        raise ValueError(f"unknown backend {name!r}; use one of {('auto',) + names()}")
    return key


def get(name: str = "auto"):
    """Return the backend module for ``name`` ('auto', 'cpp', 'numba', 'numpy').

    ``AEREC_BACKEND`` in the environment overrides 'auto'. Naming an unavailable backend raises
    :class:`BackendUnavailableError` with the recorded reason; an automatic downgrade warns once
    with :class:`FallbackWarning`.
    """
    key = _check_name(name)
    if key == "auto":
        env = os.environ.get("AEREC_BACKEND", "").strip()
        if env and env.lower() != "auto":
            try:
                key = _check_name(env)
            except ValueError as exc:
                raise ValueError(f"AEREC_BACKEND={env!r} is not a backend: {exc}") from None
    if key != "auto":
        mod = _probe(key)
        if mod is None:
            raise BackendUnavailableError(f"backend {key!r} is unavailable: {_reasons[key]}")
        return mod
    skipped = []
    for cand in _AUTO_ORDER_CPU:
        mod = _probe(cand)
        if mod is not None:
            if skipped and cand not in _warned:
                _warned.add(cand)
                why = "; ".join(f"{n}: {_reasons[n]}" for n in skipped)
                warnings.warn(f"aerec is using the {cand!r} backend because faster ones are unavailable ({why})",
                              FallbackWarning, stacklevel=2)
            return mod
        skipped.append(cand)
    raise BackendUnavailableError("no backend is available")  # numpy never fails to import


def _reset_for_tests() -> None:
    with _lock:
        _loaded.clear()
        _reasons.clear()
        _warned.clear()

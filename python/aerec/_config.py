"""Run-time configuration: threads, instruction sets, backend availability."""
from __future__ import annotations

import os
import sys

from . import _backends

_py_threads = 0


def _core(load: bool = True):
    """The compiled module, reached through the cpp backend's probe (the one place that imports
    it), or None. ``load=False``: only if the cpp backend is loaded already, so that a process
    running the NumPy backend never imports it just to set or read a thread count."""
    if not load and "aerec.backends.cpp" not in sys.modules:
        return None
    mod = _backends._probe("cpp")
    return None if mod is None else mod._core


def _pending_threads() -> int:
    """Thread count set before the compiled module was loaded (0: its default)."""
    return _py_threads


def set_num_threads(n: int) -> None:
    """Threads the kernels use (n <= 0: all cores available to the process)."""
    global _py_threads
    from ._validation import MAX_THREADS, check_int
    if n is None:
        raise TypeError("n must be an integer (0 or less: all cores available to the process), got None")
    n = check_int(n, "n", hi=MAX_THREADS)
    _py_threads = max(n, 0)
    core = _core(load=False)  # a later load applies _py_threads (backends/cpp.py)
    if core is not None:
        core.set_num_threads(n)


def get_num_threads() -> int:
    """Threads the kernels use now."""
    core = _core(load=False)
    if core is not None:
        return int(core.get_num_threads())
    if _py_threads > 0:
        return _py_threads
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        return os.cpu_count() or 1


def _numba_info() -> dict:
    """numba's version and kernel cache folder (None when numba is not installed)."""
    mod = _backends._probe("numba")
    if mod is None:
        return {"version": None, "cache_dir": None}
    return {"version": mod.version(), "cache_dir": mod.cache_dir()}


def config() -> dict:
    """The facts show_config prints, as a dict."""
    from . import __version__
    core = _core()
    info = {
        "version": __version__,
        "python": sys.version.split()[0],
        "threads": get_num_threads(),
        "openmp": bool(core.USES_OPENMP) if core is not None else False,
        "cpu": core.cpu_features() if core is not None else {},
        "isa_detected": core.detected_isa() if core is not None else None,
        "isa_active": core.active_isa() if core is not None else None,
        "backends": {},
        "numba": _numba_info(),
    }
    reasons = _backends.reasons()
    for name, ok in _backends.available().items():
        info["backends"][name] = "available" if ok else f"unavailable: {reasons.get(name, '?')}"
    return info


def show_config(file=None) -> None:
    """Print version, instruction sets found at run time, OpenMP threads and backends."""
    if file is not None and not callable(getattr(file, "write", None)):
        raise TypeError(f"file must be a text stream with a write() method (or None: stdout), got "
                        f"{type(file).__name__}")
    info = config()
    out = file or sys.stdout
    p = lambda *a: print(*a, file=out)  # noqa: E731
    p(f"aerec {info['version']} (Python {info['python']})")
    if info["cpu"]:
        names = [("scalar", True), ("AVX2", info["cpu"]["avx2"]), ("AVX-512", info["cpu"]["avx512"]),
                 ("AVX512-BF16", info["cpu"]["avx512_bf16"]), ("VNNI", info["cpu"]["avx512_vnni"]),
                 ("AVX-VNNI", info["cpu"].get("avx_vnni", False)),
                 ("AMX", info["cpu"]["amx_tile"] and info["cpu"]["amx_permitted"])]
        p("instruction sets: " + ", ".join(f"{n}={'yes' if ok else 'no'}" for n, ok in names))
        p(f"dispatch level: {info['isa_active']} (hardware: {info['isa_detected']}; cap with AEREC_ISA)")
    else:
        p("instruction sets: unknown (compiled module not available)")
    p(f"OpenMP: {'yes' if info['openmp'] else 'no'}, threads: {info['threads']}")
    nb = info["numba"]
    p(f"numba: {nb['version']}, kernel cache: {nb['cache_dir']}" if nb["version"] else
      "numba: not installed (pip install 'aerec[numba]')")
    p("backends:")
    for name, state in info["backends"].items():
        p(f"  {name:<6} {state}")

"""Helpers shared by several test files (imported as ``_support``: pytest puts tests/ on sys.path)."""
import pathlib

import pytest

import aerec

try:
    import tomllib
except ImportError:  # Python 3.10
    tomllib = None

ROOT = pathlib.Path(__file__).resolve().parents[1]


def pyproject() -> dict:
    """The repository's pyproject.toml, parsed (skips the test on Python 3.10: no tomllib)."""
    if tomllib is None:
        pytest.skip("tomllib needs Python >= 3.11")
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def isa_levels(amx: bool = False) -> list:
    """The C++ dispatch levels this CPU can run (scalar, avx2, avx512), lowest first; [] without _core.
    ``amx=True`` adds "amx" where the CPU has AMX and the OS granted its tile data (the files whose
    kernels have AMX paths)."""
    if not aerec.backends.available().get("cpp", False):
        return []
    from aerec import _core
    order = ["scalar", "avx2", "avx512"]
    top = _core.detected_isa()
    levels = order[: order.index("avx512" if top == "amx" else top) + 1]
    if amx and top == "amx" and _core.cpu_features()["amx_permitted"]:
        levels.append("amx")
    return levels

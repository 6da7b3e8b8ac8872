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


def check_int8_topk_bits(seed, n, d, m, k):
    """int8 TopK without re-scoring (pruned or not) and CompressedLinear's fused int8 top-k of the
    compiled backend at the active level against the NumPy reference: scores and ids bit for bit.
    The data has a zero item (scale 1), a zero query, an all-positive query (u8 up to 127) and an
    all-negative one (u8 down to 1); m >= 3, n >= 4."""
    import numpy as np
    from aerec.backends import cpp, numpy_
    from aerec.backends._quant import pack_layer
    from aerec.search import TopK
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d), dtype=np.float32) * np.exp(rng.standard_normal(n)).astype(np.float32)[:, None]
    X[3] = 0.0
    b = rng.standard_normal(n).astype(np.float32)
    Q = rng.standard_normal((m, d), dtype=np.float32)
    Q[0] = 0.0
    Q[1] = np.abs(Q[1]) + 1.0
    Q[2] = -np.abs(Q[2]) - 1.0
    exclude = [rng.integers(0, n, 15) for _ in range(m)]
    for prune in (False, True):
        got = TopK(X, bias=b, precision="int8", rescore=0, prune=prune, backend="cpp").search(Q, k, exclude=exclude)
        ref = TopK(X, bias=b, precision="int8", rescore=0, prune=prune, backend="numpy").search(Q, k, exclude=exclude)
        np.testing.assert_array_equal(got[1], ref[1])
        np.testing.assert_array_equal(got[0], ref[0])
    ep = np.arange(m + 1, dtype=np.int64) * 15
    ei = np.concatenate(exclude).astype(np.int32)
    a = pack_layer(np.ascontiguousarray(X.T), b, "int8")
    gi, gs = cpp.CompressedLinear(a).topk(Q, k, ep, ei)
    ri, rs = numpy_.CompressedLinear(a).topk(Q, k, ep, ei)
    np.testing.assert_array_equal(gs, rs)
    np.testing.assert_array_equal(gi, ri)

import os
import pathlib

import numpy as np
import pytest
from hypothesis import settings

# Seed every RNG: hypothesis draws the same examples on every run (CI and laptops alike).
settings.register_profile("aerec", derandomize=True, deadline=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "aerec"))

import aerec


def _backends():
    return [n for n, ok in aerec.backends.available().items() if ok]


@pytest.fixture(params=_backends())
def backend(request):
    return aerec.backends.get(request.param)


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


def data_dir() -> pathlib.Path:
    default = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data"
    return pathlib.Path(os.environ.get("AEREC_DATA", default))


@pytest.fixture
def ml100k_dir():
    path = data_dir() / "ml-100k"
    if not (path / "u.data").exists():
        pytest.skip(f"MovieLens-100K not found at {path} (set AEREC_DATA to the folder holding ml-100k/)")
    return path


def pytest_collection_modifyitems(config, items):
    has_gpu = aerec.backends.available().get("cuda", False)
    # CPU emulation (qemu) is slow: only when asked for with -m emulation (CI runs the smoke
    # script itself, tests/emulation/smoke.py, so the default run does not repeat it).
    want_emulation = "emulation" in (config.getoption("markexpr", "") or "")
    for item in items:
        if "gpu" in item.keywords and not has_gpu:
            item.add_marker(pytest.mark.skip(reason="no CUDA GPU available"))
        if "emulation" in item.keywords and not want_emulation:
            item.add_marker(pytest.mark.skip(reason="CPU emulation under qemu: run with -m emulation"))

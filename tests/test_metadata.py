"""Package metadata that promises only what exists: a licence file matching pyproject, a py.typed
marker, no CUDA claims without CUDA kernels, and every optional extra the code names."""
import pathlib
import re

import aerec

from _support import ROOT, pyproject as _pyproject

def test_license_file_matches_pyproject():
    meta = _pyproject()["project"]
    text = (ROOT / "LICENSE").read_text()
    assert meta["license"] == {"text": "BSD-3-Clause"}
    assert text.startswith("BSD 3-Clause License") and "Redistributions in binary form" in text
    assert "License :: OSI Approved :: BSD License" in meta["classifiers"]


def test_py_typed_marker_ships_in_the_package():
    marker = pathlib.Path(aerec.__file__).with_name("py.typed")
    assert marker.is_file() and marker.read_text() == ""
    assert "Typing :: Typed" in _pyproject()["project"]["classifiers"]


def test_no_cuda_promise_without_cuda_kernels():
    has_cuda = (ROOT / "cpp" / "cuda").is_dir() and any((ROOT / "cpp" / "cuda").rglob("*.cu"))
    meta = _pyproject()["project"]
    texts = {"pyproject description": meta["description"], "README": (ROOT / "README.md").read_text(),
             "aerec docstring": aerec.__doc__}
    for where, text in texts.items():
        if not has_cuda:
            assert not re.search(r"\bCUDA\b|\bGPU\b", text, re.I), where


def test_extras_cover_the_optional_imports():
    extras = _pyproject()["project"]["optional-dependencies"]
    names = {re.split(r"[<>=\[ ]", req)[0].lower() for reqs in extras.values() for req in reqs}
    for dist in ("matplotlib", "pandas", "tqdm", "numba", "scikit-learn", "mpi4py", "mpich", "dask", "pyarrow"):
        assert dist in names, dist
    assert "matplotlib" in " ".join(extras["plot"])  # the extra plot_history's ImportError names
    assert "scikit-learn" in " ".join(extras["test"])  # the tests' independent NDCG / recall

import io

import pytest

import aerec


def test_show_config_lists_backends_and_isa():
    buf = io.StringIO()
    aerec.show_config(file=buf)
    text = buf.getvalue()
    assert aerec.__version__ in text
    assert "numpy" in text and "available" in text
    assert "OpenMP" in text
    assert "numba:" in text
    if aerec.backends.available()["numba"]:
        import numba
        assert numba.__version__ in text and "kernel cache: " in text


def test_unknown_backend_name_lists_valid_ones():
    with pytest.raises(ValueError, match="numpy"):
        aerec.backends.get("tensorflow")


def test_numpy_backend_always_available():
    assert aerec.backends.get("numpy").NAME == "numpy"


def test_env_override(monkeypatch):
    monkeypatch.setenv("AEREC_BACKEND", "numpy")
    assert aerec.backends.get("auto").NAME == "numpy"
    monkeypatch.setenv("AEREC_BACKEND", "nonsense")
    with pytest.raises(ValueError, match="AEREC_BACKEND"):
        aerec.backends.get("auto")


def test_set_num_threads_roundtrip():
    old = aerec.get_num_threads()
    aerec.set_num_threads(1)
    assert aerec.get_num_threads() == 1
    aerec.set_num_threads(0)
    assert aerec.get_num_threads() >= 1
    aerec.set_num_threads(old)
    with pytest.raises(TypeError):
        aerec.set_num_threads("two")


def test_import_and_train_without_compiled_module():
    """With aerec._core missing, aerec still imports, falls back with a FallbackWarning saying why,
    and trains on the NumPy backend."""
    import subprocess
    import sys
    code = r'''
import sys, warnings, importlib.abc
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "aerec._core":
            raise ImportError("blocked for the test")
sys.meta_path.insert(0, Block())
import numpy as np, aerec
with warnings.catch_warnings(record=True) as w:
    warnings.simplefilter("always")
    be = aerec.backends.get()
    assert be.NAME in ("numba", "numpy"), be.NAME
    assert any(issubclass(x.category, aerec.FallbackWarning) and "_core" in str(x.message) for x in w), [str(x.message) for x in w]
x = np.random.default_rng(0).random((40, 5), dtype=np.float32)
ae = aerec.Autoencoder(hidden=(4,)).fit(x, epochs=2)
assert ae.predict(x).shape == (40, 5)
aerec.show_config()
print("OK")
'''
    import os
    env = {k: v for k, v in os.environ.items() if k != "AEREC_BACKEND"}  # the fallback is what is tested
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr
    assert "OK" in out.stdout and "unavailable" in out.stdout


_BLOCK = r'''
import sys, warnings, importlib.abc
blocked = set(sys.argv[1].split(","))
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in blocked or name in blocked:
            raise ImportError("blocked for the test")
sys.meta_path.insert(0, Block())
import aerec
with warnings.catch_warnings(record=True) as w:
    warnings.simplefilter("always")
    be = aerec.backends.get()
    again = aerec.backends.get()
msgs = [str(x.message) for x in w if issubclass(x.category, aerec.FallbackWarning)]
assert len(msgs) == 1, msgs  # once
print(be.NAME, "|", msgs[0])
'''


@pytest.mark.parametrize("blocked", ["aerec._core", "aerec._core,numba"])
def test_auto_order_cpp_numba_numpy(blocked):
    """Without the compiled module, auto picks numba when it is installed, else numpy; it warns
    once, naming what it skipped and why."""
    import importlib.util
    import os
    import subprocess
    import sys
    env = {k: v for k, v in os.environ.items() if k != "AEREC_BACKEND"}
    out = subprocess.run([sys.executable, "-c", _BLOCK, blocked], capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr
    name, msg = out.stdout.strip().split(" | ")
    has_numba = importlib.util.find_spec("numba") is not None and "numba" not in blocked
    assert name == ("numba" if has_numba else "numpy")
    assert "cpp: " in msg and "_core" in msg
    if not has_numba:
        assert "numba: numba is not installed" in msg

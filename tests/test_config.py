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

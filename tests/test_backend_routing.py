"""Backends own every kernel: with the NumPy or Numba backend chosen (``AEREC_BACKEND=numpy`` or
``backend="numpy"``, likewise numba), a whole pipeline never imports ``aerec._core``; and only
``backends/cpp.py`` imports it."""
import pathlib
import re
import subprocess
import sys

import pytest

import aerec

PIPELINE = r'''
import os, sys, tempfile
import numpy as np
import aerec
from aerec.data.splits import random_split, strong_generalization_split

mode, name = sys.argv[1], sys.argv[2]
kw = {} if mode == "env" else {"backend": name}
data = aerec.datasets.synthetic(n_users=160, n_items=70, density=0.08, n_factors=4, random_state=0)
weak = random_split(data, test_fraction=0.2, random_state=0)
X = weak.train.to_csr()
strong = strong_generalization_split(data, 0, 30, random_state=0)
models = [
    aerec.Popularity(**kw),
    aerec.EASE(l2=5.0, **kw),
    aerec.EASE(l2=5.0, dtype="float64", **kw),
    aerec.MultDAE(hidden=(16,), latent=4, epochs=2, batch_size=32, **kw),
    aerec.MultVAE(hidden=(16,), latent=4, epochs=2, batch_size=32, total_anneal_steps=10, **kw),
    aerec.CDAE(latent=8, epochs=2, batch_size=32, **kw),
    aerec.AutoRec(hidden=8, epochs=2, batch_size=16, **kw),
    aerec.AutoRec(kind="user", hidden=8, epochs=2, batch_size=16, **kw),
]
tmp = tempfile.mkdtemp()
for i, model in enumerate(models):
    model.fit(X)
    assert model._backend().NAME == name, (type(model).__name__, model._backend().NAME)
    ids, scores = model.recommend(np.arange(5), k=5)
    assert ids.shape == (5, 5)
    model.recommend(np.arange(5), k=5, items=np.arange(30), filter_items=[1, 2])
    model.score_items(np.arange(3))
    if model.supports_fold_in:
        model.recommend(user_items=X[:4], k=5)
    model.similar_items(np.arange(3), k=4)
    aerec.evaluate(model, weak, ks=(5,))
    path = os.path.join(tmp, f"m{i}.npz")
    model.save(path)
    back = aerec.load(path, **kw)
    np.testing.assert_array_equal(back.recommend(np.arange(5), k=5)[0], ids)
sg = aerec.MultVAE(hidden=(16,), latent=4, epochs=2, batch_size=32, **kw).fit(strong.train)
aerec.evaluate(sg, strong, ks=(5, 10))
ae = aerec.Autoencoder(hidden=(4,), **kw).fit(np.random.default_rng(0).random((40, 6), dtype=np.float32), epochs=2)
ae.encode(np.zeros((2, 6), np.float32))
rng = np.random.default_rng(1)
items = rng.standard_normal((300, 8)).astype(np.float32)
for precision in ("fp32", "bf16", "int8"):
    for metric, bias in (("ip", rng.standard_normal(300).astype(np.float32)), ("cosine", None)):
        index = aerec.TopK(items, bias, metric=metric, precision=precision, prune=True, **kw)
        assert index.backend == name
        index.search(items[:7], 10, exclude=[[1, 2]] * 7)
        index.save(os.path.join(tmp, "t.npz"))
        aerec.TopK.load(os.path.join(tmp, "t.npz"), **kw).search(items[0], 3)
aerec.set_num_threads(1)
assert aerec.get_num_threads() == 1
loaded = sorted(m for m in sys.modules if m == "aerec._core" or m.startswith("aerec._core."))
assert not loaded, loaded
assert "aerec.backends.cpp" not in sys.modules
print("NO_CORE_OK")
# not vacuous: the compiled module is there to be avoided (the parent compares)
print("CPP_AVAILABLE", aerec.backends.available()["cpp"])
'''


def _run(mode, env_backend, name="numpy"):
    import os
    env = dict(os.environ)
    env.pop("AEREC_BACKEND", None)
    if env_backend:
        env["AEREC_BACKEND"] = env_backend
    # the aerec this pytest imports (source checkout or installed wheel, compiled module included)
    env["PYTHONPATH"] = os.pathsep.join([str(pathlib.Path(aerec.__file__).resolve().parents[1]),
                                         env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-c", PIPELINE, mode, name], capture_output=True, text=True,
                          timeout=600, env=env)


@pytest.mark.parametrize("mode,env_backend,name", [("env", "numpy", "numpy"), ("param", None, "numpy"),
                                                   ("env", "numba", "numba"), ("param", None, "numba")])
def test_numpy_pipeline_never_imports_core(mode, env_backend, name):
    if not aerec.backends.available()[name]:
        pytest.skip(f"backend {name} unavailable: {aerec.backends.reasons()[name]}")
    out = _run(mode, env_backend, name)
    assert out.returncode == 0, out.stderr[-4000:]
    assert "NO_CORE_OK" in out.stdout
    assert f"CPP_AVAILABLE {aerec.backends.available()['cpp']}" in out.stdout


def test_only_the_cpp_backend_imports_core():
    """Import statements naming the compiled module live in backends/cpp.py only."""
    pkg = pathlib.Path(__file__).resolve().parents[1] / "python" / "aerec"
    pattern = re.compile(r"^\s*(from\s+\.+\s+import\s+.*\b_core\b|import\s+aerec\._core|"
                         r"from\s+aerec\s+import\s+.*\b_core\b)|import_module\([^)]*_core", re.M)
    offenders = [str(p.relative_to(pkg)) for p in pkg.rglob("*.py")
                 if pattern.search(p.read_text()) and p.relative_to(pkg).as_posix() != "backends/cpp.py"]
    assert not offenders, offenders

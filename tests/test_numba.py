"""The Numba backend's own checks: its random streams bit for bit against the NumPy reference's,
and where its compiled kernels are cached (the suites shared with cpp and numpy run it too:
test_network, test_gradients, test_recommenders, test_select, test_topk, test_backend_routing)."""
import os
import subprocess
import sys

import numpy as np
import pytest

import aerec
from aerec.backends import numpy_ as ref

pytestmark = pytest.mark.skipif(not aerec.backends.available()["numba"],
                                reason="numba is not installed (pip install 'aerec[numba]')")


@pytest.fixture(scope="module")
def k():
    from aerec.backends import _numba_kernels
    return _numba_kernels


@pytest.mark.parametrize("seed", [0, 5, 2 ** 63 - 1])
def test_shuffle_stream(k, seed):
    for n in (0, 1, 1000):
        np.testing.assert_array_equal(k.shuffle_order(np.uint64(seed), np.uint64(7), n),
                                      ref.shuffle_permutation(seed, 7, n))


def test_dropout_noise_negative_streams(k):
    seed, step, layer, rows, cols, p = 2 ** 62 + 3, 11, 1, np.array([0, 4, 9]), 37, np.float32(0.3)
    key = np.uint64(k.stream_key(np.uint64(seed), k.DROPOUT, step, layer))  # a Python int back: retype
    assert key == ref.dropout_key(seed, step, layer)
    scale = np.float32(1) / (np.float32(1) - p)
    got = np.array([[k.keep_scale(key, np.uint64(r * cols + c), p, scale) for c in range(cols)] for r in rows])
    np.testing.assert_array_equal(got, ref.dropout_multiplier(seed, step, layer, rows, cols, 0.3))
    nkey = np.uint64(k.stream_key(np.uint64(seed), k.NOISE, step, layer))
    got = np.array([[k.noise(nkey, r, cols, c) for c in range(cols)] for r in rows], np.float32)
    # the same uniforms; log / cos of float32 may differ in the last bit between libm and NumPy
    np.testing.assert_allclose(got, ref.gaussian_noise(seed, step, layer, rows, cols), rtol=1e-6, atol=1e-6)
    from aerec.backends._numba_kernels import _S32, h
    neg = np.uint64(k.stream_key(np.uint64(seed), k.NEGATIVE, step, 0))
    items = [int(((h(neg, (np.uint64(r) << _S32) | np.uint64(t)) >> _S32) * np.uint64(cols)) >> _S32)
             for r in rows for t in range(5)]
    np.testing.assert_array_equal(items, ref.negative_items(seed, step, rows, [5] * 3, cols)[1])


_CACHE = "import aerec.backends.numba_ as b; print(b.cache_dir())"


def test_cache_dir_follows_numba_cache_dir(tmp_path):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    out = subprocess.run([sys.executable, "-c", _CACHE], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip().startswith(str(tmp_path))
    buf = __import__("io").StringIO()
    aerec.show_config(file=buf)
    assert "kernel cache: " in buf.getvalue()


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes to read-only folders")
def test_read_only_package_caches_per_user(tmp_path):
    """An installed package in a read-only site-packages caches into Numba's per-user folder."""
    import shutil
    pkg = tmp_path / "site" / "aerec"
    shutil.copytree(os.path.dirname(aerec.__file__), pkg, ignore=shutil.ignore_patterns("__pycache__"))
    for root, dirs, _ in os.walk(pkg):
        os.chmod(root, 0o555)
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env["PYTHONPATH"] = str(tmp_path / "site")
    try:
        out = subprocess.run([sys.executable, "-c", _CACHE], env=env, capture_output=True, text=True, check=True)
    finally:
        for root, dirs, _ in os.walk(pkg):
            os.chmod(root, 0o755)
    path = out.stdout.strip()
    assert path and not path.startswith(str(pkg)) and os.access(path, os.W_OK)


def test_kernels_follow_aerec_thread_count(monkeypatch):
    # Numba's thread count is per calling thread: every compiled call sets aerec's count (or the
    # call's num_threads) for its duration and restores the caller's afterwards
    import numba
    from aerec.backends import numba_ as nb
    seen = []
    real = numba.set_num_threads
    monkeypatch.setattr(numba, "set_num_threads", lambda n: (seen.append(n), real(n)))
    before, old = numba.get_num_threads(), aerec.get_num_threads()
    try:
        aerec.set_num_threads(1)
        scores = np.random.default_rng(0).random((5, 40), dtype=np.float32)
        ids, _ = nb.select_topk(scores, 3)
        np.testing.assert_array_equal(ids, ref.select_topk(scores, 3)[0])
        assert seen[0] == 1 and numba.get_num_threads() == before
        seen.clear()
        nb.select_topk(scores, 3, num_threads=10 ** 6)  # capped at Numba's pool, never an error
        assert seen[0] == numba.config.NUMBA_NUM_THREADS
    finally:
        aerec.set_num_threads(old)


@pytest.mark.parametrize("loss,variational", [("mse", False), ("multinomial", True), ("logistic", False)])
def test_serial_and_parallel_paths_agree(monkeypatch, loss, variational):
    # a call whose batch is small runs the serial twins of the kernels (_numba_serial), a large one
    # the parallel kernels; both are the same source, so they give the same training run (to
    # float32 rounding: the GEMMs are split differently) and each runs where it should
    from aerec.backends import _numba_kernels, _numba_serial, numba_ as nb
    from aerec.nn.spec import make_spec, param_shapes
    out_act = "sigmoid" if loss == "mse" else "identity"
    spec = make_spec(layer_sizes=(30, 16, 8, 16, 30), activations=("tanh", "identity", "tanh", out_act),
                     loss=loss, variational=variational, encoder_depth=2, dropout=(0.2, 0.1, 0.0, 0.0),
                     optimizer="adam", learning_rate=1e-2, negative_samples=2 if loss == "logistic" else 0,
                     seed=3)
    rng = np.random.default_rng(1)
    params = [rng.standard_normal(s).astype(np.float32) * 0.3 for s in param_shapes(spec)]
    x = (rng.random((50, 30)) < 0.2).astype(np.float32)
    calls = []
    for mod in (_numba_kernels, _numba_serial):
        monkeypatch.setattr(mod, "run", (lambda f, name: lambda *a: (calls.append(name), f(*a))[1])(
            mod.run, mod.__name__.rsplit("_", 1)[1]))
    out = {}
    for work in (nb._SERIAL_WORK, 0):
        monkeypatch.setattr(nb, "_SERIAL_WORK", work)
        net = nb.Network(spec, params)
        losses = [net.train_epoch(x, x, batch_size=8, seed=e) for e in range(3)]
        out[work] = losses, net.get_params(), net.forward(x), net.loss(x, x)
        assert set(calls) == {"serial" if work else "kernels"}
        calls.clear()
    (l1, p1, f1, v1), (l2, p2, f2, v2) = out.values()
    np.testing.assert_allclose(l1, l2, rtol=1e-5)
    for a, b in zip(p1, p2):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(f1, f2, rtol=1e-4, atol=1e-6)
    assert v1 == pytest.approx(v2, rel=1e-5)


@pytest.mark.parametrize("density", [1.0, 0.5, 0.05])
@pytest.mark.parametrize("csr", [False, True])
@pytest.mark.parametrize("case", ["plain", "users_l2_dropout", "lazy_logistic"])
def test_layer0_paths_match_reference(k, density, csr, case):
    # layer 0 runs as one sgemm on a dense batch when every row is full (the CSR values in place)
    # or at least 1/4 of the batch is stored (densified), else as CSR loops; each path gives the
    # reference's gradients, training run and outputs (the serial and the parallel kernels)
    import scipy.sparse as sp
    from aerec.backends import numba_ as nb
    from aerec.nn.spec import make_spec, param_shapes
    n, n_in, bs = 40, 24, 8
    dense0, bval = np.empty(bs * n_in, np.float32), np.empty(bs * n_in, np.float32)
    nnz = int(round(density * bs * n_in))
    path = k.dense0_view(dense0, bval[:nnz], bs, n_in, nnz)
    assert path.shape == ((0, n_in) if density < 1 / k.DENSE0_DENSITY else (bs, n_in))
    if density == 1.0:
        assert path.ctypes.data == bval.ctypes.data  # the batch's own values, no copy
    rng = np.random.default_rng(int(density * 100) + csr)
    x = (rng.random((n, n_in)) + 0.5).astype(np.float32)  # no zeros: every row full
    if density < 1:
        x *= rng.random((n, n_in)) < density
    kw = dict(layer_sizes=(n_in, 16, n_in), activations=("relu", "sigmoid"), optimizer="adam", seed=4,
              learning_rate=1e-2)
    users = None
    if case == "users_l2_dropout":
        kw.update(l2=0.01, dropout=(0.3, 0.2), n_users=n, normalize_input=True)
        users = rng.permutation(n).astype(np.int32)
    elif case == "lazy_logistic":
        x = (x != 0).astype(np.float32)
        kw.update(activations=("tanh", "identity"), loss="logistic", negative_samples=1, lazy=True)
    spec = make_spec(**kw)
    params = [rng.standard_normal(s).astype(np.float32) * 0.3 for s in param_shapes(spec)]
    xi = sp.csr_matrix(x) if csr else x
    for work in (nb._SERIAL_WORK, 0):  # serial twins, then the parallel kernels
        old = nb._SERIAL_WORK
        nb._SERIAL_WORK = work
        try:
            ref_net, net = ref.Network(spec, params), nb.Network(spec, params)
            lr_, gr = ref_net.gradients(x, x, training=True, users=users)
            ln, gn = net.gradients(xi, xi, training=True, users=users)
            assert ln == pytest.approx(lr_, rel=1e-4)
            for a, b in zip(gn, gr):
                np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5 * max(1.0, np.abs(b).max()))
            for e in range(2):
                assert net.train_epoch(xi, xi, batch_size=bs, seed=e, users=users) == pytest.approx(
                    ref_net.train_epoch(x, x, batch_size=bs, seed=e, users=users), rel=1e-4)
            for a, b in zip(net.get_params(), ref_net.get_params()):
                np.testing.assert_allclose(a, b, rtol=2e-4, atol=5e-5)
            np.testing.assert_allclose(net.forward(xi, batch_size=bs, users=users), ref_net.forward(x, users=users),
                                       rtol=1e-4, atol=2e-5)
            assert net.loss(xi, xi, batch_size=bs, users=users) == pytest.approx(
                ref_net.loss(x, x, users=users), rel=1e-4)
        finally:
            nb._SERIAL_WORK = old


def test_argsort_uniform(k):
    # the shuffle's sort (hashes: ~1 per bucket of the top bits) and its fallback for crowded
    # buckets (small values: all in bucket 0) give np.argsort's order
    rng = np.random.default_rng(0)
    for v in (rng.integers(0, 2 ** 63, 5000, dtype=np.uint64) * np.uint64(2) + np.uint64(1),
              rng.permutation(3000).astype(np.uint64), np.array([7], np.uint64), np.zeros(0, np.uint64),
              np.array([2 ** 64 - 1, 0, 2 ** 63], np.uint64)):
        np.testing.assert_array_equal(k.argsort_uniform(v), np.argsort(v, kind="stable"))

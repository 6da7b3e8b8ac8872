"""Network: C++ (aerec._core) against the NumPy reference, determinism, random streams, bad input."""
import zlib

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st, HealthCheck

import aerec
from aerec.backends import numpy_
from aerec.models.spec import ACTIVATIONS, LOSSES, make_spec

HAS_CPP = aerec.backends.available().get("cpp", False)
needs_cpp = pytest.mark.skipif(not HAS_CPP, reason="aerec._core not built")
if HAS_CPP:
    from aerec import _core
    from aerec.backends import cpp

OPTIMIZERS = {
    "adam": dict(optimizer="adam", learning_rate=1e-2),
    "adam_wd": dict(optimizer="adam", learning_rate=1e-2, weight_decay=0.05),
    "adamw": dict(optimizer="adamw", learning_rate=1e-2, weight_decay=0.1),
    "sgd_momentum": dict(optimizer="sgd", learning_rate=0.05, momentum=0.9, weight_decay=0.01),
    "sgd_nesterov": dict(optimizer="sgd", learning_rate=0.05, momentum=0.8, nesterov=True),
    "sgd_plain_wd": dict(optimizer="sgd", learning_rate=0.1, weight_decay=0.02),
}


def _isa_levels():
    if not HAS_CPP:
        return []
    order = ["scalar", "avx2", "avx512"]
    top = _core.detected_isa()
    top = "avx512" if top == "amx" else top
    return order[: order.index(top) + 1]


@pytest.fixture(params=_isa_levels() or [None])
def isa(request):
    if request.param is None:
        pytest.skip("aerec._core not built")
    before = _core.active_isa()
    assert _core.set_isa(request.param) == request.param
    yield request.param
    _core.set_isa(before)


def glorot(rng, sizes):
    out = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        lim = np.sqrt(6.0 / (a + b))
        out += [rng.uniform(-lim, lim, (a, b)).astype(np.float32), rng.normal(0, 0.1, b).astype(np.float32)]
    return out


ALL_LOSSES = tuple(LOSSES) + (("multinomial",) if "multinomial" not in LOSSES else ())


def make_data(rng, loss, n, n_in, n_out):
    x = rng.random((n, n_in), dtype=np.float32)
    mask = None
    if loss == "multinomial":
        y = (rng.random((n, n_out)) < 0.3).astype(np.float32)
    elif loss == "bce":
        y = (rng.random((n, n_out)) < 0.3).astype(np.float32)
    elif loss == "masked_mse":
        y = (rng.integers(0, 6, (n, n_out)) / 5).astype(np.float32)
        mask = (rng.random((n, n_out)) < 0.4).astype(np.float32)
    else:
        y = rng.random((n, n_out), dtype=np.float32)
    return x, y, mask


def make_spec_for(act, loss, sizes=(7, 9, 5, 7), **kw):
    out = {"bce": "sigmoid", "multinomial": "identity"}.get(loss, act)
    n = len(sizes) - 1
    kw.setdefault("dropout", (0.2,) + (0.3,) * (n - 1))
    spec_loss = "mse" if loss == "multinomial" and loss not in LOSSES else loss
    spec = make_spec(sizes, (act,) * (n - 1) + (out,), loss=spec_loss, seed=kw.pop("seed", 17), **kw)
    return dict(spec, loss=loss)


def assert_same_params(a, b, rtol=1e-4, atol=2e-5):
    for i, (p, q) in enumerate(zip(a.get_params(), b.get_params())):
        assert p.dtype == q.dtype == np.float32
        np.testing.assert_allclose(p, q, rtol=rtol, atol=atol, err_msg=f"tensor {i}")


# ---- random streams -------------------------------------------------------------------------
def test_mix64_is_splitmix64():
    # First output of splitmix64 seeded with 0 (Vigna's reference implementation).
    assert numpy_._mix64_int(numpy_._GOLDEN) == 0xE220A8397B1DCDAF
    v = numpy_._stream_values(0, 2)
    assert int(v[0]) == 0xE220A8397B1DCDAF and int(v[1]) == 0x6E789E6AA1B965F4


def test_dropout_multiplier_rate_and_scale():
    m = numpy_.dropout_multiplier(3, 5, 1, 200, 300, 0.3)
    assert m.dtype == np.float32 and m.shape == (200, 300)
    kept = m != 0
    assert abs(kept.mean() - 0.7) < 0.01
    assert np.all(m[kept] == np.float32(1) / (np.float32(1) - np.float32(0.3)))
    assert not np.array_equal(m, numpy_.dropout_multiplier(3, 6, 1, 200, 300, 0.3))
    assert not np.array_equal(m, numpy_.dropout_multiplier(3, 5, 2, 200, 300, 0.3))


def test_shuffle_permutation():
    p = numpy_.shuffle_permutation(1, 2, 1000)
    assert sorted(p.tolist()) == list(range(1000))
    assert not np.array_equal(p, numpy_.shuffle_permutation(1, 3, 1000))
    assert not np.array_equal(p, numpy_.shuffle_permutation(2, 2, 1000))
    np.testing.assert_array_equal(p, numpy_.shuffle_permutation(1, 2, 1000))
    assert numpy_.shuffle_permutation(1, 2, 0).shape == (0,)


# ---- C++ against the NumPy reference ----------------------------------------------------------
@needs_cpp
@pytest.mark.parametrize("opt", sorted(OPTIMIZERS))
@pytest.mark.parametrize("loss", ALL_LOSSES)
@pytest.mark.parametrize("act", ACTIVATIONS)
def test_cpp_matches_numpy_training(isa, act, loss, opt):
    # crc32, not hash(): str hashes are salted per process, which made the data differ run to run.
    rng = np.random.default_rng(zlib.crc32(f"{act}/{loss}/{opt}".encode()))
    spec = make_spec_for(act, loss, l2=0.01 if opt == "adam" else 0.0, **OPTIMIZERS[opt])
    params = glorot(rng, spec["layer_sizes"])
    x, y, mask = make_data(rng, loss, 45, 7, 7)
    ref, net = numpy_.Network(spec, params), cpp.Network(spec, params)
    for k in range(3):
        b = slice(10 * k, 10 * k + 13)
        mb = None if mask is None else mask[b]
        assert net.train_batch(x[b], y[b], mb) == pytest.approx(ref.train_batch(x[b], y[b], mb), rel=1e-5, abs=1e-6)
    assert_same_params(ref, net)
    for seed in (0, 1):
        l_ref = ref.train_epoch(x, y, mask, batch_size=8, shuffle=True, seed=seed)
        l_net = net.train_epoch(x, y, mask, batch_size=8, shuffle=True, seed=seed)
        assert l_net == pytest.approx(l_ref, rel=1e-4, abs=1e-6)
    assert net.step == ref.step == 3 + 2 * 6
    assert_same_params(ref, net)
    s_ref, s_net = ref.get_optimizer_state(), net.get_optimizer_state()
    assert sorted(s_ref) == sorted(s_net)
    assert int(s_net["step"]) == 15
    for k in s_ref:
        np.testing.assert_allclose(s_net[k], s_ref[k], rtol=1e-3, atol=1e-5, err_msg=k)
    # eval-mode outputs
    np.testing.assert_allclose(net.forward(x, batch_size=16), ref.forward(x, batch_size=16), rtol=1e-4, atol=2e-5)
    np.testing.assert_allclose(net.hidden(x, 1, batch_size=7), ref.hidden(x, 1), rtol=1e-4, atol=2e-5)
    assert net.loss(x, y, mask, batch_size=16) == pytest.approx(ref.loss(x, y, mask), rel=1e-4, abs=1e-6)


@needs_cpp
def test_cpp_no_shuffle_and_default_mask():
    rng = np.random.default_rng(0)
    spec = make_spec_for("relu", "masked_mse")
    params = glorot(rng, spec["layer_sizes"])
    x, y, _ = make_data(rng, "masked_mse", 30, 7, 7)
    ref, net = numpy_.Network(spec, params), cpp.Network(spec, params)
    for _ in range(2):
        assert net.train_epoch(x, y, batch_size=7, shuffle=False) == pytest.approx(
            ref.train_epoch(x, y, batch_size=7, shuffle=False), rel=1e-5)
    assert_same_params(ref, net)


@needs_cpp
def test_optimizer_state_roundtrip():
    rng = np.random.default_rng(1)
    spec = make_spec_for("tanh", "mse", **OPTIMIZERS["adamw"])
    params = glorot(rng, spec["layer_sizes"])
    x, y, _ = make_data(rng, "mse", 20, 7, 7)
    for mod in (numpy_, cpp):
        a = mod.Network(spec, params)
        a.train_epoch(x, y, batch_size=6, seed=1)
        b = mod.Network(spec, a.get_params())
        b.set_optimizer_state(a.get_optimizer_state())
        assert b.step == a.step
        a.train_epoch(x, y, batch_size=6, seed=2)
        b.train_epoch(x, y, batch_size=6, seed=2)
        for p, q in zip(a.get_params(), b.get_params()):
            np.testing.assert_array_equal(p, q)


# ---- determinism ------------------------------------------------------------------------------
@pytest.mark.parametrize("backend_name", ["numpy", "cpp"])
def test_same_seed_bitwise_same(backend_name):
    if backend_name == "cpp" and not HAS_CPP:
        pytest.skip("aerec._core not built")
    mod = aerec.backends.get(backend_name)
    rng = np.random.default_rng(2)
    spec = make_spec_for("elu", "bce", dropout=(0.5, 0.2, 0.2))
    params = glorot(rng, spec["layer_sizes"])
    x, y, _ = make_data(rng, "bce", 50, 7, 7)
    runs = []
    for _ in range(2):
        net = mod.Network(spec, params)
        losses = [net.train_epoch(x, y, batch_size=9, seed=e) for e in range(3)]
        runs.append((losses, net.get_params()))
    assert runs[0][0] == runs[1][0]
    for p, q in zip(runs[0][1], runs[1][1]):
        np.testing.assert_array_equal(p, q)
    # a different model seed changes the dropout and shuffle streams
    other = mod.Network(dict(spec, seed=18), params)
    other.train_epoch(x, y, batch_size=9, seed=0)
    assert not np.array_equal(other.get_params()[0], runs[0][1][0])


# ---- bad input ------------------------------------------------------------------------------
def _backend_modules():
    mods = [numpy_]
    if HAS_CPP:
        mods.append(cpp)
    return mods


@pytest.mark.parametrize("mod", _backend_modules(), ids=lambda m: m.NAME)
def test_bad_input_raises(mod):
    rng = np.random.default_rng(3)
    spec = make_spec_for("relu", "mse")
    params = glorot(rng, spec["layer_sizes"])
    net = mod.Network(spec, params)
    x, y, _ = make_data(rng, "mse", 10, 7, 7)
    with pytest.raises(TypeError):
        net.train_batch(x.astype(np.float64), y)
    with pytest.raises(TypeError):
        net.forward(x.astype(np.int32))
    with pytest.raises(ValueError):
        net.train_batch(x[:, :6], y)
    with pytest.raises(ValueError):
        net.train_batch(x, y[:9])
    with pytest.raises(ValueError):
        net.train_batch(x, y[:, :3])
    with pytest.raises(ValueError):
        net.forward(x[0])
    with pytest.raises(ValueError):
        net.train_batch(x, y, mask=np.ones_like(y))  # mask needs masked_mse
    with pytest.raises(ValueError):
        net.train_epoch(x, y, batch_size=0)
    with pytest.raises(ValueError):
        net.train_epoch(x[:0], y[:0])
    with pytest.raises(ValueError):
        net.loss(x[:0], y[:0])
    with pytest.raises(IndexError):
        net.hidden(x, 3)
    with pytest.raises(IndexError):
        net.hidden(x, -1)
    with pytest.raises(ValueError):
        net.set_params(params[:-1])
    with pytest.raises(ValueError):
        net.set_params([params[0].T] + params[1:])
    with pytest.raises(ValueError):
        mod.Network(spec, params[:2])
    state = net.get_optimizer_state()
    with pytest.raises(ValueError):
        net.set_optimizer_state({"step": 0})
    state["m_W0"] = state["m_W0"][:, :2]
    with pytest.raises(ValueError):
        net.set_optimizer_state(state)
    assert net.forward(x[:0]).shape == (0, 7)
    # nothing above changed the network
    assert net.step == 0
    for p, q in zip(net.get_params(), params):
        np.testing.assert_array_equal(p, q)


@needs_cpp
def test_cpp_rejects_strided_and_bad_spec():
    rng = np.random.default_rng(4)
    spec = make_spec_for("relu", "masked_mse")
    params = glorot(rng, spec["layer_sizes"])
    net = cpp.Network(spec, params)
    x = np.asfortranarray(rng.random((10, 7), dtype=np.float32))
    with pytest.raises(ValueError, match="contiguous"):
        net.forward(x)
    y = np.ones((10, 7), np.float32)
    with pytest.raises(ValueError):
        net.train_batch(np.ascontiguousarray(x), y, mask=np.ones((10, 6), np.float32))
    with pytest.raises(TypeError):
        net.train_batch(np.ascontiguousarray(x), y, mask=[[1.0] * 7] * 10)
    # a row-strided view is fine (contiguous last dimension)
    big = rng.random((10, 14), dtype=np.float32)
    np.testing.assert_allclose(net.forward(big[:, :7]), numpy_.Network(spec, params).forward(big[:, :7]), rtol=1e-5, atol=1e-6)
    bad = dict(spec)
    del bad["loss"]
    with pytest.raises(ValueError, match="loss"):
        _core.Network(bad, params)
    with pytest.raises(ValueError):
        _core.Network(dict(spec, dropout=(1.5, 0.0, 0.0)), params)
    with pytest.raises(ValueError):
        _core.Network(dict(spec, loss="nope"), params)
    with pytest.raises(TypeError):
        _core.Network(spec, [p.astype(np.float64) for p in params])
    with pytest.raises(ValueError, match="identity"):
        _core.Network(dict(spec, loss="multinomial", activations=("relu", "relu", "sigmoid")), params)
    with pytest.raises(ValueError, match="identity"):
        numpy_.Network(dict(spec, loss="multinomial", activations=("relu", "relu", "sigmoid")), params)


# ---- hypothesis: random layer sizes and batch sizes --------------------------------------------
@needs_cpp
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sizes=st.lists(st.integers(1, 9), min_size=2, max_size=4), n=st.integers(1, 23),
       batch_size=st.integers(1, 30), act=st.sampled_from(ACTIVATIONS), loss=st.sampled_from(ALL_LOSSES),
       opt=st.sampled_from(sorted(OPTIMIZERS)), seed=st.integers(0, 2**64 - 1), drop=st.floats(0.0, 0.7))
def test_cpp_matches_numpy_random_shapes(sizes, n, batch_size, act, loss, opt, seed, drop):
    rng = np.random.default_rng(n)
    # small steps: batch size 1 with strong dropout and an identity network can otherwise diverge,
    # and a diverging run amplifies rounding differences without limit
    hp = dict(OPTIMIZERS[opt], learning_rate=OPTIMIZERS[opt]["learning_rate"] / 5)
    spec = make_spec_for(act, loss, sizes=tuple(sizes), seed=seed, dropout=(drop,) * (len(sizes) - 1),
                         l2=0.01, **hp)
    params = glorot(rng, spec["layer_sizes"])
    x, y, mask = make_data(rng, loss, n, sizes[0], sizes[-1])
    ref, net = numpy_.Network(spec, params), cpp.Network(spec, params)
    for e in range(2):
        l_ref = ref.train_epoch(x, y, mask, batch_size=batch_size, seed=e)
        l_net = net.train_epoch(x, y, mask, batch_size=batch_size, seed=e)
        assert l_net == pytest.approx(l_ref, rel=1e-4, abs=1e-6)
    assert_same_params(ref, net, rtol=2e-4, atol=5e-5)
    np.testing.assert_allclose(net.hidden(x, spec["encoder_depth"] - 1), ref.hidden(x, spec["encoder_depth"] - 1),
                               rtol=2e-4, atol=5e-5)


@needs_cpp
def test_gil_released_threads():
    import threading
    rng = np.random.default_rng(5)
    spec = make_spec_for("relu", "mse")
    params = glorot(rng, spec["layer_sizes"])
    x, y, _ = make_data(rng, "mse", 200, 7, 7)
    nets = [cpp.Network(spec, params) for _ in range(2)]
    ts = [threading.Thread(target=n.train_epoch, args=(x, y), kwargs=dict(batch_size=4)) for n in nets]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    for p, q in zip(nets[0].get_params(), nets[1].get_params()):
        np.testing.assert_array_equal(p, q)


@needs_cpp
def test_cpp_large_dropout_matches_numpy(isa):
    # big enough for the threaded, vectorised dropout path (rows * cols >= 65536)
    rng = np.random.default_rng(6)
    spec = make_spec((517, 3, 517), ("tanh", "identity"), dropout=(0.5, 0.25), seed=99)
    params = glorot(rng, spec["layer_sizes"])
    x = rng.random((203, 517), dtype=np.float32)
    ref, net = numpy_.Network(spec, params), cpp.Network(spec, params)
    ref.set_optimizer_state(dict(ref.get_optimizer_state(), step=5))
    net.set_optimizer_state(dict(net.get_optimizer_state(), step=5))
    l_ref, g_ref = ref.gradients(x, x, training=True)
    l_net, g_net = net.gradients(x, x, training=True)
    assert l_net == pytest.approx(l_ref, rel=1e-5)
    for a, b in zip(g_net, g_ref):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-6)


# ---- CSR input ---------------------------------------------------------------------------------
try:
    import scipy.sparse as sparse
except ImportError:  # pragma: no cover
    sparse = None
needs_scipy = pytest.mark.skipif(sparse is None, reason="scipy not installed")


def _sparse_rows(rng, n, cols, density=0.2, binary=False):
    m = sparse.random(n, cols, density=density, format="csr", dtype=np.float32, random_state=rng)
    if binary:
        m.data[:] = 1.0
    return m


@needs_cpp
@needs_scipy
@pytest.mark.parametrize("loss", ALL_LOSSES)
@pytest.mark.parametrize("y_kind", ["same", "dense", "sparse"])
def test_cpp_csr_input_matches_dense(isa, loss, y_kind):
    rng = np.random.default_rng(11)
    n, n_items = 37, 23
    spec = make_spec_for("tanh", loss, sizes=(n_items, 8, 5, n_items), dropout=(0.5, 0.2, 0.0), l2=0.01,
                         **OPTIMIZERS["adam"])
    params = glorot(rng, spec["layer_sizes"])
    xs = _sparse_rows(rng, n, n_items, binary=loss in ("bce", "multinomial"))
    xd = xs.toarray()
    xd[3] = 0  # an empty row
    xs = sparse.csr_matrix(xd)
    mask = (rng.random((n, n_items)) < 0.5).astype(np.float32) if loss == "masked_mse" else None
    ys = {"same": xs, "dense": xd, "sparse": xs.copy()}[y_kind]
    dense_ref = numpy_.Network(spec, params)
    sparse_ref = numpy_.Network(spec, params)
    net = cpp.Network(spec, params)
    for e in range(2):
        l_d = dense_ref.train_epoch(xd, xd, mask, batch_size=10, seed=e)
        l_s = sparse_ref.train_epoch(xs, ys, mask, batch_size=10, seed=e)
        l_c = net.train_epoch(xs, ys, mask, batch_size=10, seed=e)
        assert l_s == pytest.approx(l_d, rel=1e-6)
        assert l_c == pytest.approx(l_d, rel=1e-4, abs=1e-6)
    l_d = dense_ref.train_batch(xd[:9], xd[:9], None if mask is None else mask[:9])
    l_c = net.train_batch(xs[:9], ys[:9], None if mask is None else mask[:9])
    assert l_c == pytest.approx(l_d, rel=1e-4, abs=1e-6)
    assert_same_params(dense_ref, net)
    np.testing.assert_allclose(net.forward(xs, batch_size=8), dense_ref.forward(xd), rtol=1e-4, atol=2e-5)
    np.testing.assert_allclose(net.hidden(xs, 0), dense_ref.hidden(xd, 0), rtol=1e-4, atol=2e-5)
    assert net.loss(xs, ys, mask, batch_size=16) == pytest.approx(dense_ref.loss(xd, xd, mask), rel=1e-4)
    lc, gc = net.gradients(xs, ys, mask, training=True)
    ld, gd = dense_ref.gradients(xd, xd, mask, training=True)
    assert lc == pytest.approx(ld, rel=1e-4)
    for a, b in zip(gc, gd):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-6)


@needs_cpp
@needs_scipy
def test_cpp_csr_bad_input():
    rng = np.random.default_rng(12)
    spec = make_spec_for("relu", "mse", sizes=(6, 4, 6))
    params = glorot(rng, spec["layer_sizes"])
    net = cpp.Network(spec, params)
    xs = _sparse_rows(rng, 5, 6)
    with pytest.raises(TypeError):
        net.forward(xs.astype(np.float64))
    with pytest.raises(ValueError):
        net.forward(_sparse_rows(rng, 5, 7))
    with pytest.raises(ValueError):
        net.train_batch(xs, _sparse_rows(rng, 4, 6))
    indptr = xs.indptr.astype(np.int64)
    indices = xs.indices.astype(np.int32)
    bad = indices.copy()
    bad[0] = 6
    with pytest.raises(IndexError):
        net._net.hidden(_core.CsrMatrix(indptr, bad, xs.data, 5, 6), 0, 4096)
    bad_ptr = indptr.copy()
    bad_ptr[2], bad_ptr[3] = bad_ptr[3], bad_ptr[2] - 1
    if bad_ptr[2] > bad_ptr[3]:
        with pytest.raises(ValueError):
            net._net.hidden(_core.CsrMatrix(bad_ptr, indices, xs.data, 5, 6), 0, 4096)
    with pytest.raises(ValueError):
        _core.CsrMatrix(indptr[:-1], indices, xs.data, 5, 6)
    with pytest.raises(TypeError):
        _core.CsrMatrix(indptr.astype(np.int32), indices, xs.data, 5, 6)
    with pytest.raises(ValueError):
        _core.CsrMatrix(indptr, indices, xs.data[:-1], 5, 6)
    # data=None: every stored entry is 1
    ones = xs.copy()
    ones.data[:] = 1
    np.testing.assert_allclose(net._net.hidden(_core.CsrMatrix(indptr, indices, None, 5, 6), 0, 4096),
                               net.hidden(ones, 0), rtol=1e-6)
    assert net.step == 0


@needs_cpp
@needs_scipy
def test_cpp_csr_large_matches_numpy(isa):
    # big enough for the threaded gather-sum (nnz * hidden >= 65536)
    rng = np.random.default_rng(13)
    spec = make_spec((611, 16, 611), ("relu", "identity"), dropout=(0.5, 0.0), loss="mse", seed=4)
    spec = dict(spec, loss="multinomial")
    params = glorot(rng, spec["layer_sizes"])
    xs = _sparse_rows(rng, 301, 611, density=0.08, binary=True)
    ref, net = numpy_.Network(spec, params), cpp.Network(spec, params)
    l_ref, g_ref = ref.gradients(xs, xs, training=True)
    l_net, g_net = net.gradients(xs, xs, training=True)
    assert l_net == pytest.approx(l_ref, rel=1e-5)
    for a, b in zip(g_net, g_ref):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-6)
    assert net.train_epoch(xs, xs, batch_size=128, seed=3) == pytest.approx(
        ref.train_epoch(xs, xs, batch_size=128, seed=3), rel=1e-4)
    assert_same_params(ref, net)


# ---- variational bottleneck -----------------------------------------------------------------------
def vae_spec(loss="multinomial", sizes=(13, 8, 3, 8, 13), **kw):
    n = len(sizes) - 1
    out = {"bce": "sigmoid", "multinomial": "identity"}.get(loss, "tanh")
    acts = ("tanh", "identity", "tanh", out)
    kw.setdefault("dropout", (0.5, 0.0, 0.2, 0.0))
    spec = make_spec(sizes, acts[:n], loss="mse" if loss == "multinomial" else loss, encoder_depth=2, seed=21, **kw)
    return dict(spec, loss=loss, variational=True, beta=0.2, anneal_steps=7)


def vae_params(rng, spec):
    sizes = spec["layer_sizes"]
    out = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        if i == spec["encoder_depth"] - 1:
            b *= 2
        lim = np.sqrt(6.0 / (a + b))
        out += [rng.uniform(-lim, lim, (a, b)).astype(np.float32), rng.normal(0, 0.1, b).astype(np.float32)]
    return out


@needs_cpp
@pytest.mark.parametrize("loss", ALL_LOSSES)
@pytest.mark.parametrize("opt", ["adam", "sgd_nesterov"])
def test_cpp_vae_matches_numpy(isa, loss, opt):
    rng = np.random.default_rng(14)
    spec = vae_spec(loss, l2=0.01, **OPTIMIZERS[opt])
    params = vae_params(rng, spec)
    x, y, mask = make_data(rng, loss, 29, 13, 13)
    ref, net = numpy_.Network(spec, params), cpp.Network(spec, params)
    assert [p.shape for p in net.get_params()] == [p.shape for p in params]
    for e in range(3):
        l_ref = ref.train_epoch(x, y, mask, batch_size=6, seed=e)
        l_net = net.train_epoch(x, y, mask, batch_size=6, seed=e)
        assert l_net == pytest.approx(l_ref, rel=1e-4, abs=1e-6)
    assert net.step == ref.step == 15
    assert net.beta == pytest.approx(ref.beta) and ref.beta == pytest.approx(0.2)
    assert_same_params(ref, net)
    np.testing.assert_allclose(net.hidden(x, 1), ref.hidden(x, 1), rtol=1e-4, atol=2e-5)
    assert net.hidden(x, 1).shape == (29, 3)
    np.testing.assert_allclose(net.forward(x, batch_size=8), ref.forward(x), rtol=1e-4, atol=2e-5)
    assert net.loss(x, y, mask, batch_size=5) == pytest.approx(ref.loss(x, y, mask), rel=1e-4)
    lc, gc = net.gradients(x, y, mask, training=True)
    lr, gr = ref.gradients(x, y, mask, training=True)
    assert lc == pytest.approx(lr, rel=1e-4)
    for a, b in zip(gc, gr):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5)


@needs_cpp
@needs_scipy
def test_cpp_vae_csr_first_layer_bottleneck():
    # encoder_depth=1 puts the variational layer on the CSR-fed first layer
    rng = np.random.default_rng(15)
    spec = make_spec((17, 4, 17), ("identity", "identity"), loss="mse", encoder_depth=1, dropout=(0.3, 0.1), seed=2)
    spec = dict(spec, loss="multinomial", variational=True, beta=0.5)
    params = vae_params(rng, spec)
    xs = _sparse_rows(rng, 23, 17, density=0.3, binary=True)
    ref, net = numpy_.Network(spec, params), cpp.Network(spec, params)
    for e in range(2):
        assert net.train_epoch(xs, xs, batch_size=5, seed=e) == pytest.approx(
            ref.train_epoch(xs, xs, batch_size=5, seed=e), rel=1e-4)
    assert_same_params(ref, net)
    np.testing.assert_allclose(net.hidden(xs, 0), ref.hidden(xs, 0), rtol=1e-4, atol=2e-5)


def test_vae_spec_errors():
    rng = np.random.default_rng(16)
    spec = vae_spec()
    params = vae_params(rng, spec)
    bad = dict(spec, activations=("tanh", "relu", "tanh", "identity"))
    mods = [numpy_] + ([cpp] if HAS_CPP else [])
    for mod in mods:
        with pytest.raises(ValueError, match="identity"):
            mod.Network(bad, params)
        with pytest.raises(ValueError):
            mod.Network(dict(spec, encoder_depth=4), params)
        with pytest.raises(ValueError):  # plain-shape params for a variational spec
            mod.Network(spec, glorot(rng, spec["layer_sizes"]))


# ---- per-user input vector (CDAE) -----------------------------------------------------------------
def cdae_setup(rng, n_users=6, n_items=11, hidden=5, loss="bce"):
    out = {"bce": "sigmoid", "multinomial": "identity"}.get(loss, "sigmoid")
    spec = make_spec((n_items, hidden, n_items), ("sigmoid", out), dropout=(0.4, 0.0),
                     loss="mse" if loss == "multinomial" else loss, l2=0.01, seed=8)
    spec = dict(spec, loss=loss, n_users=n_users)
    params = glorot(rng, spec["layer_sizes"]) + [rng.normal(0, 0.3, (n_users, hidden)).astype(np.float32)]
    return spec, params


@needs_cpp
@pytest.mark.parametrize("loss", ALL_LOSSES)
@pytest.mark.parametrize("sparse_input", [False, True])
def test_cpp_user_vector_matches_numpy(isa, loss, sparse_input):
    if sparse_input and sparse is None:
        pytest.skip("scipy not installed")
    rng = np.random.default_rng(17)
    spec, params = cdae_setup(rng, loss=loss)
    x, y, mask = make_data(rng, loss, 31, 11, 11)
    x = (x < 0.3).astype(np.float32)
    users = rng.integers(0, 6, 31).astype(np.int32)
    xin = sparse.csr_matrix(x) if sparse_input else x
    ref, net = numpy_.Network(spec, params), cpp.Network(spec, params)
    assert [p.shape for p in net.get_params()] == [p.shape for p in params]
    for e in range(2):
        l_ref = ref.train_epoch(x, y, mask, batch_size=7, seed=e, users=users)
        l_net = net.train_epoch(xin, y, mask, batch_size=7, seed=e, users=users)
        assert l_net == pytest.approx(l_ref, rel=1e-4, abs=1e-6)
    assert net.train_batch(xin[:5], y[:5], None if mask is None else mask[:5], users=users[:5]) == pytest.approx(
        ref.train_batch(x[:5], y[:5], None if mask is None else mask[:5], users=users[:5]), rel=1e-4)
    assert_same_params(ref, net)
    assert sorted(net.get_optimizer_state()) == sorted(ref.get_optimizer_state())
    np.testing.assert_allclose(net.forward(xin, users=users), ref.forward(x, users=users), rtol=1e-4, atol=2e-5)
    assert net.loss(xin, y, mask, users=users, batch_size=4) == pytest.approx(ref.loss(x, y, mask, users=users), rel=1e-4)
    lc, gc = net.gradients(xin, y, mask, training=True, users=users)
    lr, gr = ref.gradients(x, y, mask, training=True, users=users)
    for a, b in zip(gc, gr):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-6)


@pytest.mark.parametrize("mod", _backend_modules(), ids=lambda m: m.NAME)
def test_user_vector_bad_input(mod):
    rng = np.random.default_rng(18)
    spec, params = cdae_setup(rng)
    net = mod.Network(spec, params)
    x = (rng.random((4, 11)) < 0.3).astype(np.float32)
    with pytest.raises(ValueError):
        net.forward(x)  # users missing
    with pytest.raises(TypeError):
        net.forward(x, users=np.zeros(4, np.int64))
    with pytest.raises(ValueError):
        net.forward(x, users=np.zeros(3, np.int32))
    with pytest.raises(IndexError):
        net.train_batch(x, x, users=np.array([0, 1, 6, 2], np.int32))
    with pytest.raises(IndexError):
        net.forward(x, users=np.array([0, -1, 0, 2], np.int32))
    with pytest.raises(ValueError):
        mod.Network(spec, params[:-1])
    plain = mod.Network(make_spec((11, 5, 11), "sigmoid"), params[:-1])
    with pytest.raises(ValueError):
        plain.forward(x, users=np.zeros(4, np.int32))
    assert net.step == 0


@needs_cpp
@pytest.mark.parametrize("loss", ["bce", "multinomial"])
def test_cpp_wide_output_losses_extreme_logits(isa, loss):
    # vectorised exp/log rows: wide, not a multiple of 16, logits from -120 to 120 (exp under- and
    # overflow regions, z = 0 exactly), compared with the float64 reference
    rng = np.random.default_rng(19)
    n_out = 1037
    out_act = "sigmoid" if loss == "bce" else "identity"
    spec = dict(make_spec((2, n_out), (out_act,), loss="bce" if loss == "bce" else "mse"), loss=loss)
    W = np.zeros((2, n_out), np.float32)
    W[0] = np.linspace(-120, 120, n_out).astype(np.float32)
    W[1] = rng.normal(0, 2, n_out).astype(np.float32)
    b = np.zeros(n_out, np.float32)
    b[::50] = -W[0, ::50]  # exact zeros for row x = (1, 0)
    x = np.array([[1, 0], [0.5, 1], [0.01, -1], [0, 0]], np.float32)
    y = (rng.random((4, n_out)) < 0.3).astype(np.float32)
    ref = numpy_.Network(spec, [W.astype(np.float64), b.astype(np.float64)], dtype=np.float64)
    net = cpp.Network(spec, [W, b])
    l64, g64 = ref.gradients(x.astype(np.float64), y.astype(np.float64))
    l32, g32 = net.gradients(x, y)
    assert np.isfinite(l32)
    assert l32 == pytest.approx(l64, rel=2e-6)
    for a, c in zip(g32, g64):
        np.testing.assert_allclose(a, c, rtol=1e-4, atol=1e-7)
    assert net.loss(x, y) == pytest.approx(ref.loss(x.astype(np.float64), y.astype(np.float64)), rel=2e-6)


# ---- the stages of the one engine (aerec.nn.spec): C++ against the NumPy reference ----------------
NEW_STAGES = {
    "normalize": dict(normalize_input=True, dropout=(0.5, 0.0, 0.2, 0.0)),
    "lazy": dict(lazy=True, normalize_input=True, dropout=(0.3, 0.0, 0.0, 0.0), l2=0.01, weight_decay=0.01),
    "lazy_sgd": dict(lazy=True, optimizer="sgd", learning_rate=0.05, momentum=0.9, n_users=9, l2=0.01),
    "dense_rows": dict(optimizer="sgd", learning_rate=0.05, momentum=0.5, n_users=9, l2=0.01, dropout=0.4),
    "all": dict(normalize_input=True, variational=True, encoder_depth=2, beta=0.3, anneal_steps=5,
                n_users=9, lazy=True, dropout=(0.5, 0.0, 0.2, 0.0), l2=0.01),
}


@needs_cpp
@pytest.mark.parametrize("case", ["mse", "multinomial", "logistic", "logistic_neg"])
@pytest.mark.parametrize("stage", list(NEW_STAGES))
@pytest.mark.parametrize("sparse_input", [False, True], ids=["dense", "csr"])
def test_cpp_matches_numpy_stages(isa, case, stage, sparse_input):
    # shuffled minibatches: the streams are keyed by the row of the epoch matrix, so every row
    # draws the same dropout mask, noise and negatives in both engines wherever the shuffle puts it
    from aerec.nn.spec import make_spec as nn_spec, init_params
    if sparse is None:
        pytest.skip("scipy not installed")
    rng = np.random.default_rng(zlib.crc32(f"{case}/{stage}".encode()))
    n, items = 37, 23
    loss = "logistic" if case.startswith("logistic") else case
    kw = dict(NEW_STAGES[stage])
    acts = ["tanh", "tanh", "tanh", "sigmoid" if loss == "logistic" else "identity"]
    if kw.get("variational"):
        acts[1] = "identity"
    spec = nn_spec((items, 8, 4, 8, items), tuple(acts), loss=loss, seed=11,
                   negative_samples=2 if case == "logistic_neg" else 0, **kw)
    params = init_params(spec, 3)
    x = ((rng.random((n, items)) < 0.25) * rng.integers(1, 4, (n, items))).astype(np.float32)
    x[4] = 0.0  # an empty row
    y = x if loss != "mse" else rng.random((n, items), dtype=np.float32)
    users = rng.integers(0, 9, n).astype(np.int32) if spec["n_users"] else None
    xin = sparse.csr_matrix(x) if sparse_input else x
    yin = xin if y is x else y
    ref, net = numpy_.Network(spec, params), cpp.Network(spec, params)
    for e in range(3):
        l_ref = ref.train_epoch(x, y, batch_size=8, shuffle=True, seed=e, users=users)
        l_net = net.train_epoch(xin, yin, batch_size=8, shuffle=True, seed=e, users=users)
        assert l_net == pytest.approx(l_ref, rel=1e-4, abs=1e-6)
    assert_same_params(ref, net)
    sr, sn = ref.get_optimizer_state(), net.get_optimizer_state()
    assert sorted(sr) == sorted(sn) and int(sn["step"]) == int(sr["step"]) == 15
    for k in sr:
        np.testing.assert_allclose(sn[k], sr[k], rtol=1e-3, atol=1e-5, err_msg=k)
    assert net.loss(xin, yin, users=users, batch_size=10) == pytest.approx(ref.loss(x, y, users=users), rel=1e-4)
    np.testing.assert_allclose(net.forward(xin, users=users), ref.forward(x, users=users), rtol=1e-4, atol=2e-5)
    lc, gc = net.gradients(xin, yin, training=True, users=users)
    lr, gr = ref.gradients(x, y, training=True, users=users)
    assert lc == pytest.approx(lr, rel=1e-4)
    for a, b in zip(gc, gr):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5)


@needs_cpp
def test_cpp_step_and_timings():
    from aerec.nn.spec import make_spec as nn_spec, init_params
    spec = nn_spec((30, 6, 30), ("tanh", "identity"), loss="multinomial", normalize_input=True, dropout=0.5)
    net = cpp.Network(spec, init_params(spec))._net
    x = sparse.csr_matrix((np.random.default_rng(0).random((20, 30)) < 0.2).astype(np.float32))
    xc = cpp._operand(x, "x")
    net.train_epoch(xc, xc, batch_size=6)
    t = net.timings()
    assert t["batches"] == 4 and t["gemm_flops"] > 0
    assert set(t) == {"gather", "spmm", "gemm", "noise", "loss", "dense_bwd", "sparse_bwd", "optimizer", "batches",
                      "gemm_flops"}
    assert net.step == 4
    net.step = 10
    assert net.step == 10
    with pytest.raises(ValueError):
        net.step = -1
    net.reset_timings()
    assert net.timings()["batches"] == 0

"""The one network engine (aerec.nn.spec): every backend's ``Network`` against the NumPy oracle
(the parity suite over input x bottleneck x loss x optimizer x backend x ISA level), the random
streams, lazy updates, determinism, state round trips and bad input."""
import threading
import zlib

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings, strategies as st

import aerec
from aerec.backends import numpy_
from aerec.nn.spec import ACTIVATIONS, LOSSES, init_params, make_spec, param_shapes

HAS_CPP = aerec.backends.available().get("cpp", False)
needs_cpp = pytest.mark.skipif(not HAS_CPP, reason="aerec._core not built")
if HAS_CPP:
    from aerec import _core
    from aerec.backends import cpp


from _support import isa_levels as _isa_levels  # noqa: E402


#: every available backend, the compiled one at every ISA level this machine runs; numba twice:
#: "numba" as it chooses (these small networks: its serial kernels), "numba-parallel" forced onto
#: its parallel kernels
ENGINES = [f"{n}-{isa}" if isa else n for n, ok in aerec.backends.available().items() if ok
           for isa in (_isa_levels() if n == "cpp" else [None, "parallel"] if n == "numba" else [None])]
CPP_ENGINES = [e for e in ENGINES if e.startswith("cpp")]


def _use(engine):
    """The backend module of ``engine``, with its ISA level (or numba's parallel path) set (undone by
    the fixture)."""
    name, _, isa = engine.partition("-")
    be = aerec.backends.get(name)
    if name == "numba":
        be._SERIAL_WORK = 0 if isa == "parallel" else _NUMBA_SERIAL_WORK
    elif isa:
        assert _core.set_isa(isa) == isa
    return be


_NUMBA_SERIAL_WORK = aerec.backends.get("numba")._SERIAL_WORK if aerec.backends.available()["numba"] else 0


@pytest.fixture
def restore_isa():
    before = _core.active_isa() if HAS_CPP else None
    yield
    if HAS_CPP:
        _core.set_isa(before)
    if _NUMBA_SERIAL_WORK:
        aerec.backends.get("numba")._SERIAL_WORK = _NUMBA_SERIAL_WORK


@pytest.fixture(params=CPP_ENGINES or [None])
def isa(request, restore_isa):
    if request.param is None:
        pytest.skip("aerec._core not built")
    _use(request.param)
    return request.param


OPTIMIZERS = {
    "adam": dict(optimizer="adam", learning_rate=1e-2, weight_decay=0.01),
    "adamw": dict(optimizer="adamw", learning_rate=1e-2, weight_decay=0.1),
    "sgd_nesterov": dict(optimizer="sgd", learning_rate=0.05, momentum=0.8, nesterov=True, weight_decay=0.01),
    "lazy": dict(optimizer="adam", learning_rate=1e-2, lazy=True, weight_decay=0.01),
}
BOTTLENECKS = {"plain": {}, "variational": dict(variational=True, beta=0.3, anneal_steps=4),
               "user": dict(n_users=9)}
OUT_ACT = {"mse": "tanh", "bce": "sigmoid", "masked_mse": "tanh", "multinomial": "identity", "logistic": "identity"}


def net_spec(loss, sizes=(11, 7, 4, 7, 11), act="tanh", variational=False, seed=17, **kw):
    n = len(sizes) - 1
    acts = [act] * (n - 1) + [OUT_ACT[loss] if act == "tanh" or loss not in ("mse", "masked_mse") else act]
    enc = kw.get("encoder_depth", (n + 1) // 2)
    if variational:
        acts[enc - 1] = "identity"
    kw.setdefault("dropout", (0.4,) + (0.2,) * (n - 1))
    if loss == "logistic":
        kw.setdefault("negative_samples", 2)
    if loss in ("multinomial", "logistic"):
        kw.setdefault("normalize_input", loss == "multinomial")
    return make_spec(sizes, tuple(acts), loss=loss, variational=variational, seed=seed, **kw)


def make_data(rng, loss, n, n_in, n_out, density=0.35):
    """(x, y, mask) dense float32: x sparse-ish (so a CSR copy is meaningful); Mult-* and CDAE
    reconstruct their binary input (y is x)."""
    x = (rng.random((n, n_in)) * (rng.random((n, n_in)) < density)).astype(np.float32)
    mask = None
    if loss in ("multinomial", "logistic") and n_in == n_out:
        x = (x > 0).astype(np.float32)
        return x, x, None
    if loss in ("bce", "logistic", "multinomial"):
        y = (rng.random((n, n_out)) < 0.3).astype(np.float32)
    else:
        y = rng.random((n, n_out), dtype=np.float32)
        if loss == "masked_mse":
            mask = (rng.random((n, n_out)) < 0.4).astype(np.float32)
    return x, y, mask


def params_for(spec, seed=0):
    p = init_params(spec, seed)
    return [q + np.float32(0.05) * np.random.default_rng(seed + 1).standard_normal(q.shape).astype(np.float32)
            if q.ndim == 1 else q for q in p]  # non-zero biases


def assert_close_params(a, b, rtol=2e-4, atol=5e-5):
    for i, (p, q) in enumerate(zip(a, b)):
        np.testing.assert_allclose(p, q, rtol=rtol, atol=atol, err_msg=f"tensor {i}")


def _csr(a):
    return a if a is None else sp.csr_matrix(a)


# ---- the parity suite -------------------------------------------------------------------------
@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("opt", list(OPTIMIZERS))
@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("bottleneck", list(BOTTLENECKS))
@pytest.mark.parametrize("inp", ["dense", "csr"])
def test_parity(inp, bottleneck, loss, opt, engine, restore_isa):
    """Every backend (and ISA level) against the NumPy oracle: gradients with the training streams,
    one train_batch, a 2-batch train_epoch, then eval outputs and the optimizer state."""
    be = _use(engine)
    rng = np.random.default_rng(zlib.crc32(f"{inp}/{bottleneck}/{loss}/{opt}".encode()))
    spec = net_spec(loss, l2=0.01, **BOTTLENECKS[bottleneck], **OPTIMIZERS[opt])
    params = params_for(spec, 3)
    n = 13
    x, y, mask = make_data(rng, loss, n, 11, 11)
    x[4] = 0.0  # an empty row
    if y is x:
        y = x = x.copy()
    users = rng.integers(0, 9, n).astype(np.int32) if spec["n_users"] else None
    xi, yi = (_csr(x), (None if y is x else _csr(y))) if inp == "csr" else (x, y)
    yi = xi if yi is None else yi
    ref, net = numpy_.Network(spec, params), be.Network(spec, params)
    ref.step = net.step = 2
    for training in (False, True):
        lr_, gr = ref.gradients(x, y, mask, training=training, users=users)
        ln, gn = net.gradients(xi, yi, mask, training=training, users=users)
        assert ln == pytest.approx(lr_, rel=1e-4, abs=1e-6)
        for i, (a, b) in enumerate(zip(gn, gr)):
            assert a.dtype == np.float32 and a.shape == b.shape
            np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5 * max(1.0, np.abs(b).max()), err_msg=f"grad {i}")
    assert net.train_batch(xi, yi, mask, users=users) == pytest.approx(
        ref.train_batch(x, y, mask, users=users), rel=1e-4, abs=1e-6)
    assert_close_params(net.get_params(), ref.get_params())
    assert net.train_epoch(xi, yi, mask, batch_size=7, seed=5, users=users) == pytest.approx(
        ref.train_epoch(x, y, mask, batch_size=7, seed=5, users=users), rel=1e-4, abs=1e-6)
    assert net.step == ref.step == 5
    assert net.beta == pytest.approx(ref.beta)
    assert_close_params(net.get_params(), ref.get_params())
    s_ref, s_net = ref.get_optimizer_state(), net.get_optimizer_state()
    assert sorted(s_ref) == sorted(s_net) and int(s_net["step"]) == 5
    for k in s_ref:
        np.testing.assert_allclose(s_net[k], s_ref[k], rtol=1e-3, atol=1e-5, err_msg=k)
    np.testing.assert_allclose(net.forward(xi, batch_size=4, users=users), ref.forward(x, users=users),
                               rtol=1e-4, atol=2e-5)
    np.testing.assert_allclose(net.encode(xi, batch_size=5, users=users), ref.encode(x, users=users),
                               rtol=1e-4, atol=2e-5)
    assert net.loss(xi, yi, mask, batch_size=6, users=users) == pytest.approx(
        ref.loss(x, y, mask, users=users), rel=1e-4, abs=1e-6)


@pytest.mark.parametrize("engine", ENGINES)
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(sizes=st.lists(st.integers(1, 9), min_size=2, max_size=4), n=st.integers(1, 23),
       batch_size=st.integers(1, 30), act=st.sampled_from(ACTIVATIONS), loss=st.sampled_from(LOSSES),
       opt=st.sampled_from(sorted(OPTIMIZERS)), seed=st.integers(0, 2 ** 63 - 1), drop=st.floats(0.0, 0.7),
       csr=st.booleans(), users=st.booleans(), normalize=st.booleans())
def test_parity_random_shapes(engine, restore_isa, sizes, n, batch_size, act, loss, opt, seed, drop, csr, users,
                              normalize):
    be = _use(engine)
    rng = np.random.default_rng(n)
    if loss == "multinomial" or loss == "logistic" or loss == "bce":
        act = "tanh" if act in ("relu", "selu", "elu") and len(sizes) == 2 else act
    # small steps: batch size 1 with strong dropout can otherwise diverge, and a diverging run
    # amplifies rounding differences without limit
    hp = dict(OPTIMIZERS[opt], learning_rate=OPTIMIZERS[opt]["learning_rate"] / 5)
    spec = net_spec(loss, sizes=tuple(sizes), act=act, seed=seed, dropout=(drop,) * (len(sizes) - 1), l2=0.01,
                    n_users=5 if users else 0, normalize_input=normalize, **hp)
    params = params_for(spec, n)
    x, y, mask = make_data(rng, loss, n, sizes[0], sizes[-1])
    u = rng.integers(0, 5, n).astype(np.int32) if users else None
    xi, yi = (_csr(x), _csr(y) if y is not x else None) if csr else (x, y)
    yi = xi if yi is None else yi
    ref, net = numpy_.Network(spec, params), be.Network(spec, params)
    for e in range(2):
        assert net.train_epoch(xi, yi, mask, batch_size=batch_size, seed=e, users=u) == pytest.approx(
            ref.train_epoch(x, y, mask, batch_size=batch_size, seed=e, users=u), rel=1e-4, abs=1e-6)
    assert_close_params(net.get_params(), ref.get_params(), rtol=2e-4, atol=5e-5)
    np.testing.assert_allclose(net.encode(xi, users=u), ref.encode(x, users=u), rtol=2e-4, atol=5e-5)


# ---- random streams ----------------------------------------------------------------------------
def test_mix64_is_splitmix64():
    # First outputs of splitmix64 seeded with 0 (Vigna's reference implementation).
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


def test_gaussian_stream_is_standard_normal():
    e = numpy_.gaussian_noise(0, 2, 0, 400, 500)
    assert e.dtype == np.float32 and abs(e.mean()) < 0.01 and abs(e.std() - 1) < 0.01


def test_shuffle_permutation():
    p = numpy_.shuffle_permutation(1, 2, 1000)
    assert sorted(p.tolist()) == list(range(1000))
    assert not np.array_equal(p, numpy_.shuffle_permutation(1, 3, 1000))
    assert not np.array_equal(p, numpy_.shuffle_permutation(2, 2, 1000))
    np.testing.assert_array_equal(p, numpy_.shuffle_permutation(1, 2, 1000))
    assert numpy_.shuffle_permutation(1, 2, 0).shape == (0,)


# ---- behaviour on every backend ---------------------------------------------------------------------
@pytest.mark.parametrize("engine", ENGINES)
def test_lazy_only_touches_batch_rows(engine, restore_isa):
    be = _use(engine)
    spec = make_spec((30, 6, 30), dropout=0.0, loss="multinomial", normalize_input=True, n_users=8, lazy=True,
                     l2=0.01, weight_decay=0.01)
    x = sp.random(4, 30, density=0.1, format="csr", dtype=np.float32, random_state=2)
    x.data[:] = 1
    users = np.array([1, 3, 3, 5], np.int32)
    absent = np.setdiff1d(np.arange(30), x.indices)
    assert absent.size
    params = init_params(spec, 0)
    lazy, dense = be.Network(spec, params), be.Network(dict(spec, lazy=False), params)
    for _ in range(2):
        lazy.train_batch(x, x, users=users)
        dense.train_batch(x, x, users=users)
    p, s = lazy.get_params(), lazy.get_optimizer_state()
    np.testing.assert_array_equal(p[0][absent], params[0][absent])
    np.testing.assert_array_equal(p[-1][[0, 2, 4, 6, 7]], params[-1][[0, 2, 4, 6, 7]])
    assert not np.any(s["m_W0"][absent]) and not np.any(s["v_U"][[0, 2]])
    assert np.any(s["m_W0"][x.indices]) and np.any(s["m_U"][users])
    assert not np.allclose(dense.get_params()[0], p[0])


def test_kl_annealing_and_eval_mode():
    spec = net_spec("multinomial", variational=True, beta=0.2, anneal_steps=10, dropout=0.0)
    params = init_params(spec, 0, np.float64)
    params[3] += 0.5  # non-zero mu / logvar so KL > 0
    net = numpy_.Network(spec, params, dtype=np.float64)
    x = (np.random.default_rng(1).random((5, 11)) < 0.3).astype(np.float64)
    assert net.beta == 0.0
    net.step = 1
    assert net.beta == pytest.approx(0.1)
    net.step = 50
    assert net.beta == pytest.approx(0.2)
    l_cap = net.gradients(x, x)[0]
    net.step = 0
    assert net.gradients(x, x)[0] < l_cap
    np.testing.assert_array_equal(net.forward(x), net.forward(x))  # eval: z = mu, no dropout


@pytest.mark.parametrize("engine", ENGINES)
def test_optimizer_state_roundtrip_and_continuation(engine, restore_isa):
    be = _use(engine)
    rng = np.random.default_rng(1)
    for spec in (net_spec("mse", **OPTIMIZERS["adamw"]), net_spec("bce", **OPTIMIZERS["sgd_nesterov"]),
                 net_spec("multinomial", variational=True, lazy=True)):
        x, y, _ = make_data(rng, spec["loss"], 20, 11, 11)
        a = be.Network(spec, params_for(spec))
        a.train_epoch(x, y, batch_size=6, seed=1)
        b = be.Network(spec, a.get_params())
        b.set_optimizer_state(a.get_optimizer_state())
        assert b.step == a.step == 4
        assert a.train_epoch(x, y, batch_size=6, seed=2) == b.train_epoch(x, y, batch_size=6, seed=2)
        for p, q in zip(a.get_params(), b.get_params()):
            np.testing.assert_array_equal(p, q)
        b.step = 1  # settable: the streams and the anneal follow it
        assert b.step == 1


@pytest.mark.parametrize("engine", ENGINES)
def test_same_seed_bitwise_same(engine, restore_isa):
    be = _use(engine)
    rng = np.random.default_rng(2)
    spec = net_spec("logistic", act="elu", dropout=(0.5, 0.2, 0.2, 0.0), n_users=50)
    params = params_for(spec)
    x, y, _ = make_data(rng, "logistic", 50, 11, 11)
    users = np.arange(50, dtype=np.int32)
    runs = []
    for _ in range(2):
        net = be.Network(spec, params)
        losses = [net.train_epoch(x, y, batch_size=9, seed=e, users=users) for e in range(3)]
        runs.append((losses, net.get_params()))
    assert runs[0][0] == runs[1][0]
    for p, q in zip(runs[0][1], runs[1][1]):
        np.testing.assert_array_equal(p, q)
    # a different model seed changes the dropout, negatives and shuffle streams
    other = be.Network(dict(spec, seed=18), params)
    other.train_epoch(x, y, batch_size=9, seed=0, users=users)
    assert not np.array_equal(other.get_params()[0], runs[0][1][0])


@pytest.mark.parametrize("engine", ENGINES)
def test_timings(engine, restore_isa):
    be = _use(engine)
    spec = net_spec("multinomial", variational=True)
    net = be.Network(spec, params_for(spec))
    x, _, _ = make_data(np.random.default_rng(0), "multinomial", 20, 11, 11)
    net.reset_timings()
    net.train_epoch(_csr(x), _csr(x), batch_size=8)
    t = net.timings()
    assert isinstance(t, dict)
    if engine == "numpy":
        assert t["batches"] == 3 and all(v >= 0 for v in t.values())
    net.reset_timings()


# ---- bad input ------------------------------------------------------------------------------------
@pytest.mark.parametrize("engine", ENGINES)
def test_bad_input_raises(engine, restore_isa):
    be = _use(engine)
    rng = np.random.default_rng(3)
    spec = net_spec("mse", sizes=(7, 9, 5, 7), act="relu")
    params = params_for(spec)
    net = be.Network(spec, params)
    x, y, _ = make_data(rng, "mse", 10, 7, 7)
    bad_calls = [
        (TypeError, lambda: net.train_batch(x.astype(np.float64), y)),
        (TypeError, lambda: net.forward(x.astype(np.int32))),
        (TypeError, lambda: net.forward(_csr(x).astype(np.float64))),
        (ValueError, lambda: net.train_batch(x[:, :6], y)),
        (ValueError, lambda: net.forward(_csr(x[:, :6]))),
        (ValueError, lambda: net.train_batch(x, y[:9])),
        (ValueError, lambda: net.train_batch(_csr(x), _csr(y[:9]))),
        (ValueError, lambda: net.train_batch(x, y[:, :3])),
        (ValueError, lambda: net.forward(x[0])),
        (ValueError, lambda: net.train_batch(x, y, mask=np.ones_like(y))),  # mask needs masked_mse
        (ValueError, lambda: net.train_epoch(x, y, batch_size=0)),
        (ValueError, lambda: net.train_epoch(x[:0], y[:0])),
        (ValueError, lambda: net.loss(x[:0], y[:0])),
        (IndexError, lambda: net.hidden(x, 3)),
        (IndexError, lambda: net.hidden(x, -1)),
        (TypeError, lambda: net.hidden(x, 1.0)),
        (ValueError, lambda: net.set_params(params[:-1])),
        (ValueError, lambda: net.set_params([params[0].T] + params[1:])),
        (ValueError, lambda: be.Network(spec, params[:2])),
        (ValueError, lambda: net.set_optimizer_state({"step": 0})),
        (ValueError, lambda: net.set_optimizer_state(dict(net.get_optimizer_state(), m_W0=np.zeros((7, 2))))),
        (ValueError, lambda: setattr(net, "step", -1)),
        (ValueError, lambda: net.forward(x, users=np.zeros(10, np.int32))),  # no user embedding
        (TypeError, lambda: be.Network(dict(spec, n_users_embedding=3), params)),  # legacy key
        (ValueError, lambda: be.Network(dict(spec, activations=("relu", "relu", "sigmoid"), loss="multinomial"),
                                        params)),
    ]
    for exc, call in bad_calls:
        with pytest.raises(exc):
            call()
    assert net.forward(x[:0]).shape == (0, 7)
    # CDAE-like: users required, int32, in range
    cdae = net_spec("logistic", sizes=(7, 5, 7), n_users=6)
    cp = params_for(cdae)
    cnet = be.Network(cdae, cp)
    xb = (x > 0.5).astype(np.float32)
    for exc, call in [
        (ValueError, lambda: cnet.forward(xb)),
        (TypeError, lambda: cnet.forward(xb, users=np.zeros(10, np.int64))),
        (ValueError, lambda: cnet.forward(xb, users=np.zeros(3, np.int32))),
        (IndexError, lambda: cnet.train_batch(xb, xb, users=np.full(10, 6, np.int32))),
        (IndexError, lambda: cnet.forward(_csr(xb), users=np.full(10, -1, np.int32))),
        (ValueError, lambda: be.Network(cdae, cp[:-1])),
    ]:
        with pytest.raises(exc):
            call()
    # nothing above changed the networks
    assert net.step == cnet.step == 0
    for p, q in zip(net.get_params(), params):
        np.testing.assert_array_equal(p, q)


def test_spec_validation():
    with pytest.raises(ValueError, match="identity"):
        make_spec((10, 4, 2, 4, 10), variational=True, activations="tanh")
    with pytest.raises(ValueError):
        make_spec((10, 4, 10), variational=True, encoder_depth=2)
    with pytest.raises(ValueError):
        make_spec((10, 4, 10), loss="multinomial", activations="sigmoid")
    with pytest.raises(ValueError):
        make_spec((10, 4, 10), loss="mse", negative_samples=2)
    with pytest.raises(TypeError, match="lazy_adam -> lazy"):
        make_spec((10, 4, 10), lazy_adam=True)
    s = make_spec((10, 6, 3, 6, 10), variational=True)
    assert s["activations"] == ("tanh", "identity", "tanh", "identity")
    assert make_spec(**s) == s
    assert param_shapes(make_spec((10, 6, 3, 6, 10), variational=True, n_users=4))[2] == (6, 6)
    rng = np.random.default_rng(16)
    spec = net_spec("multinomial", variational=True)
    for mod in [numpy_] + ([cpp] if HAS_CPP else []):
        with pytest.raises(ValueError):  # plain-shape params for a variational spec
            mod.Network(spec, params_for(dict(spec, variational=False)))
        with pytest.raises(ValueError):
            mod.Network(dict(spec, encoder_depth=4), params_for(spec))
    del rng


# ---- the compiled engine's own paths ---------------------------------------------------------------
@needs_cpp
def test_cpp_rejects_strided_and_bad_spec():
    rng = np.random.default_rng(4)
    spec = net_spec("masked_mse", sizes=(7, 9, 5, 7), act="relu")
    params = params_for(spec)
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
    np.testing.assert_allclose(net.forward(big[:, :7]), numpy_.Network(spec, params).forward(big[:, :7]),
                               rtol=1e-5, atol=1e-6)
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


@needs_cpp
def test_cpp_csr_bad_input():
    rng = np.random.default_rng(12)
    spec = net_spec("mse", sizes=(6, 4, 6), act="relu")
    net = cpp.Network(spec, params_for(spec))
    xs = sp.random(5, 6, density=0.3, format="csr", dtype=np.float32, random_state=rng)
    indptr, indices = xs.indptr.astype(np.int64), xs.indices.astype(np.int32)
    bad = indices.copy()
    bad[0] = 6
    with pytest.raises(IndexError):
        net._net.hidden(_core.CsrMatrix(indptr, bad, xs.data, 5, 6), 0, 4096)
    with pytest.raises(ValueError):
        _core.CsrMatrix(indptr[:-1], indices, xs.data, 5, 6)
    with pytest.raises(TypeError):
        _core.CsrMatrix(indptr.astype(np.int32), indices, xs.data, 5, 6)
    with pytest.raises(ValueError):
        _core.CsrMatrix(indptr, indices, xs.data[:-1], 5, 6)
    ones = xs.copy()
    ones.data[:] = 1  # data=None: every stored entry is 1
    np.testing.assert_allclose(net._net.hidden(_core.CsrMatrix(indptr, indices, None, 5, 6), 0, 4096),
                               net.hidden(ones, 0), rtol=1e-6)
    assert net.step == 0


@needs_cpp
@pytest.mark.parametrize("loss", ["multinomial", "logistic", "mse"])
def test_cpp_large_matches_numpy(isa, loss):
    """Big enough for the threaded, vectorised paths (dropout, gather-sum, loss rows)."""
    rng = np.random.default_rng(13)
    spec = net_spec(loss, sizes=(611, 16, 611), act="relu", dropout=(0.5, 0.25), seed=4, n_users=301)
    params = params_for(spec)
    xs = sp.random(301, 611, density=0.08, format="csr", dtype=np.float32, random_state=rng)
    xs.data[:] = 1
    users = np.arange(301, dtype=np.int32)
    ref, net = numpy_.Network(spec, params), cpp.Network(spec, params)
    ref.step = net.step = 5
    l_ref, g_ref = ref.gradients(xs, xs, training=True, users=users)
    l_net, g_net = net.gradients(xs, xs, training=True, users=users)
    assert l_net == pytest.approx(l_ref, rel=1e-5)
    for a, b in zip(g_net, g_ref):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-6)
    assert net.train_epoch(xs, xs, batch_size=128, seed=3, users=users) == pytest.approx(
        ref.train_epoch(xs, xs, batch_size=128, seed=3, users=users), rel=1e-4)
    assert_close_params(net.get_params(), ref.get_params())


@needs_cpp
@pytest.mark.parametrize("loss", ["bce", "multinomial", "logistic"])
def test_cpp_wide_output_losses_extreme_logits(isa, loss):
    # vectorised exp/log rows: wide, not a multiple of 16, logits from -120 to 120 (exp under- and
    # overflow regions, z = 0 exactly), compared with the float64 reference
    rng = np.random.default_rng(19)
    n_out = 1037
    spec = make_spec((2, n_out), ("sigmoid" if loss == "bce" else "identity",), loss=loss)
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


@needs_cpp
def test_cpp_gil_released_and_deterministic_for_fixed_threads():
    spec = net_spec("multinomial", sizes=(300, 40, 10, 40, 300), variational=True, seed=1)
    params = params_for(spec)
    xs = sp.random(700, 300, density=0.05, format="csr", dtype=np.float32, random_state=4)
    xs.data[:] = 1
    old = aerec.get_num_threads()
    try:
        for threads in (1, 2):
            aerec.set_num_threads(threads)
            nets = [cpp.Network(spec, params) for _ in range(2)]
            ts = [threading.Thread(target=n.train_epoch, args=(xs, xs), kwargs=dict(batch_size=128, seed=3))
                  for n in nets]
            for t in ts:
                t.start()
            for t in ts:
                t.join()
            for a, b in zip(nets[0].get_params(), nets[1].get_params()):
                np.testing.assert_array_equal(a, b)
    finally:
        aerec.set_num_threads(old)


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
    xin = sp.csr_matrix(x) if sparse_input else x
    yin = xin if y is x else y
    ref, net = numpy_.Network(spec, params), cpp.Network(spec, params)
    for e in range(3):
        l_ref = ref.train_epoch(x, y, batch_size=8, shuffle=True, seed=e, users=users)
        l_net = net.train_epoch(xin, yin, batch_size=8, shuffle=True, seed=e, users=users)
        assert l_net == pytest.approx(l_ref, rel=1e-4, abs=1e-6)
    assert_close_params(ref.get_params(), net.get_params(), rtol=1e-4, atol=2e-5)
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
    x = sp.csr_matrix((np.random.default_rng(0).random((20, 30)) < 0.2).astype(np.float32))
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

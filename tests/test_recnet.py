"""RecNetwork (MultDAE / MultVAE / CDAE network): float64 gradient checks of the NumPy reference,
C++ vs NumPy parity under every ISA level, and bad-input handling."""
import numpy as np
import pytest
import scipy.sparse as sp

from aerec.backends._numpy_recnet import RecNetwork as NumpyRecNetwork
from aerec.backends._numpy_recnet import gaussian, shuffle_order, stream_key
from aerec.models.recspec import init_rec_params, make_rec_spec

try:
    from aerec import _core
    from aerec.backends._cpp_recnet import RecNetwork as CppRecNetwork
    HAS_CORE = hasattr(_core, "RecNetwork")
except ImportError:  # pragma: no cover - extension not built
    _core, HAS_CORE = None, False

needs_core = pytest.mark.skipif(not HAS_CORE, reason="aerec._core.RecNetwork not built")


def _isa_levels():
    if not HAS_CORE:
        return []
    order = ["scalar", "avx2", "avx512"]
    top = _core.detected_isa()
    top = "avx512" if top == "amx" else top
    return order[: order.index(top) + 1]


@pytest.fixture(params=_isa_levels() or ["none"])
def isa(request):
    if request.param == "none":
        pytest.skip("aerec._core not built")
    old = _core.active_isa()
    _core.set_isa(request.param)
    yield request.param
    _core.set_isa(old)


def _csr(n_rows, n_items, density, seed, empty_rows=(), values=False):
    rng = np.random.default_rng(seed)
    X = sp.random(n_rows, n_items, density=density, random_state=rng, format="csr", dtype=np.float32)
    if values:
        X.data = rng.integers(1, 6, X.nnz).astype(np.float32)
    else:
        X.data[:] = 1.0
    X = X.tolil()
    for r in empty_rows:
        X[r, :] = 0
    X = X.tocsr()
    X.eliminate_zeros()
    X.sort_indices()
    return X.indptr.astype(np.int64), X.indices.astype(np.int32), X.data.astype(np.float32)


CONFIGS = {
    "vae": dict(layer_sizes=(23, 9, 4, 9, 23), variational=True, total_anneal_steps=7, anneal_cap=0.5),
    "vae_enc1": dict(layer_sizes=(23, 5, 23), variational=True, encoder_depth=1, total_anneal_steps=0),
    "dae": dict(layer_sizes=(23, 9, 4, 9, 23), l2=0.01, input_dropout=0.3),
    "dae_lazy": dict(layer_sizes=(23, 7, 23), lazy_adam=True, l2=0.02),
    "cdae": dict(layer_sizes=(23, 6, 23), activations=("sigmoid", "sigmoid"), loss="logistic",
                 negative_samples=2, n_users_embedding=4, l2=0.01, input_dropout=0.2, normalize_input=False),
    "cdae_all_lazy": dict(layer_sizes=(23, 6, 23), activations=("sigmoid", "identity"), loss="logistic",
                          negative_samples=0, n_users_embedding=4, lazy_adam=True),
    "sgd": dict(layer_sizes=(23, 8, 23), optimizer="sgd", momentum=0.9, learning_rate=0.05, l2=0.01),
    "relu_elu": dict(layer_sizes=(23, 8, 5, 23), activations=("relu", "elu", "identity"), encoder_depth=2),
}


def _users(spec, n):
    return (np.arange(n) % spec["n_users_embedding"]).astype(np.int32) if spec["n_users_embedding"] else None


# ---------------------------------------------------------------- float64 gradient check

@pytest.mark.parametrize("name", list(CONFIGS))
def test_reference_gradient_matches_finite_differences(name):
    spec = make_rec_spec(**CONFIGS[name])
    rng = np.random.default_rng(3)
    params = [p + 0.1 * rng.standard_normal(p.shape) for p in init_rec_params(spec, 1, np.float64)]
    indptr, indices, data = _csr(6, 23, 0.25, 5, empty_rows=(2,), values=True)
    users = _users(spec, 6)
    net = NumpyRecNetwork(spec, params)
    net.step = 3  # a KL weight strictly inside (0, cap) for the annealed configs
    loss, grads = net.gradients(indptr, indices, data, users)

    def f(ps):
        net.set_params(ps)
        return net._loss_grads(indptr, indices, data, users, np.arange(6), np.arange(indices.size),
                               want_grads=False)[0]

    h = 1e-6
    for i, p in enumerate(params):
        num = np.zeros_like(p)
        for idx in np.ndindex(p.shape):
            pp = [q.copy() for q in params]
            pp[i][idx] += h
            lp = f(pp)
            pp[i][idx] -= 2 * h
            num[idx] = (lp - f(pp)) / (2 * h)
        scale = max(np.abs(num).max(), 1e-3)
        assert np.abs(num - grads[i]).max() / scale < 1e-6, (name, i)
    net.set_params(params)
    assert net.gradients(indptr, indices, data, users)[0] == pytest.approx(loss)


def test_gaussian_stream_is_standard_normal():
    e = gaussian(stream_key(0, 2, 0), np.arange(200000))
    assert abs(e.mean()) < 0.01 and abs(e.std() - 1) < 0.01
    assert sorted(shuffle_order(0, 1, 50)) == list(range(50))


def test_kl_annealing_and_eval_mode():
    spec = make_rec_spec(layer_sizes=(23, 9, 4, 9, 23), variational=True, total_anneal_steps=10, anneal_cap=0.2,
                         input_dropout=0.0)
    params = init_rec_params(spec, 0, np.float64)
    params[3] += 0.5  # non-zero mu / logvar so KL > 0
    net = NumpyRecNetwork(spec, params)
    X = _csr(5, 23, 0.3, 1)
    assert net._beta() == 0.0
    net.step = 1
    assert net._beta() == pytest.approx(0.1)
    net.step = 50
    assert net._beta() == pytest.approx(0.2)
    l_cap = net.gradients(*X)[0]
    net.step = 0
    assert net.gradients(*X)[0] < l_cap
    # evaluation is deterministic (z = mu, no dropout)
    np.testing.assert_array_equal(net.forward(*X), net.forward(*X))


# ---------------------------------------------------------------- C++ vs NumPy parity

def _assert_close(a, b, rtol=2e-4, atol=2e-5):
    np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b, np.float64), rtol=rtol, atol=atol)


@needs_core
@pytest.mark.parametrize("name", list(CONFIGS))
def test_cpp_matches_numpy(name, isa):
    spec = make_rec_spec(**CONFIGS[name], seed=11)
    params = init_rec_params(spec, 2)
    ref, net = NumpyRecNetwork(spec, params), CppRecNetwork(spec, params)
    indptr, indices, data = _csr(41, 23, 0.15, 7, empty_rows=(0, 17), values=(name == "dae"))
    users = _users(spec, 41)
    la, ga = ref.gradients(indptr, indices, data, users)
    lb, gb = net.gradients(indptr, indices, data, users)
    assert lb == pytest.approx(la, rel=1e-5)
    for x, y in zip(ga, gb):
        _assert_close(y, x, atol=1e-5 * max(1.0, np.abs(x).max()))
    for _ in range(3):
        la = ref.train_batch(indptr, indices, data, users)
        lb = net.train_batch(indptr, indices, data, users)
        assert lb == pytest.approx(la, rel=1e-5)
    for epoch in range(2):
        la = ref.train_epoch(indptr, indices, data, 41, batch_size=9, shuffle=True, seed=epoch, users=users)
        lb = net.train_epoch(indptr, indices, data, 41, batch_size=9, shuffle=True, seed=epoch, users=users)
        assert lb == pytest.approx(la, rel=1e-4)
    assert net.step == ref.step == 3 + 2 * 5
    for x, y in zip(ref.get_params(), net.get_params()):
        _assert_close(y, x, atol=1e-4)
    sa, sb = ref.get_optimizer_state(), net.get_optimizer_state()
    for x, y in zip(sa["m"] + sa["v"], sb["m"] + sb["v"]):
        _assert_close(y, x, atol=1e-4 * max(1e-3, np.abs(x).max()))
    _assert_close(net.forward(indptr, indices, data, users, batch_size=7),
                  ref.forward(indptr, indices, data, users, batch_size=7), atol=1e-4)
    _assert_close(net.encode(indptr, indices, data, users), ref.encode(indptr, indices, data, users), atol=1e-4)
    if ref.n_layers >= 2:
        h = net.hidden_last(indptr, indices, data, users)
        _assert_close(h, ref.hidden_last(indptr, indices, data, users), atol=1e-4)
        W, b, _ = net.decoder_layers()[-1]
        _assert_close(h @ W + b, net.forward(indptr, indices, data, users), atol=1e-4)


@needs_core
def test_lazy_differs_from_dense_and_only_touches_batch_rows():
    base = dict(layer_sizes=(30, 6, 30), input_dropout=0.0)
    indptr, indices, data = _csr(4, 30, 0.1, 2)
    absent = np.setdiff1d(np.arange(30), indices)
    assert absent.size
    params = init_rec_params(make_rec_spec(**base), 0)
    lazy = CppRecNetwork(make_rec_spec(**base, lazy_adam=True), params)
    dense = CppRecNetwork(make_rec_spec(**base), params)
    for _ in range(2):
        lazy.train_batch(indptr, indices, data)
        dense.train_batch(indptr, indices, data)
    lazy.train_batch(indptr[:2] - indptr[0], indices[:indptr[1]], data[:indptr[1]])  # a row subset
    dense.train_batch(indptr[:2] - indptr[0], indices[:indptr[1]], data[:indptr[1]])
    np.testing.assert_array_equal(lazy.get_params()[0][absent], params[0][absent])
    assert not np.allclose(dense.get_params()[0], lazy.get_params()[0])


@needs_core
def test_state_roundtrip_and_continuation():
    spec = make_rec_spec(layer_sizes=(23, 7, 3, 7, 23), variational=True, seed=4)
    params = init_rec_params(spec, 0)
    X = _csr(20, 23, 0.2, 3)
    a = CppRecNetwork(spec, params)
    a.train_epoch(*X, 20, batch_size=6)
    b = CppRecNetwork(spec, a.get_params())
    b.set_optimizer_state(a.get_optimizer_state())
    assert b.step == a.step
    la, lb = a.train_epoch(*X, 20, batch_size=6, seed=1), b.train_epoch(*X, 20, batch_size=6, seed=1)
    assert la == lb
    for x, y in zip(a.get_params(), b.get_params()):
        np.testing.assert_array_equal(x, y)


# ---------------------------------------------------------------- hypothesis over shapes

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings, strategies as st  # noqa: E402


@needs_core
@settings(max_examples=int(__import__("os").environ.get("AEREC_HYPOTHESIS_EXAMPLES", 25)), deadline=None)
@given(n_items=st.integers(1, 40), n_rows=st.integers(1, 12), hidden=st.integers(1, 37),
       density=st.floats(0.0, 1.0), batch=st.integers(1, 13), variational=st.booleans(),
       logistic=st.booleans(), seed=st.integers(0, 100))
def test_hypothesis_parity(n_items, n_rows, hidden, density, batch, variational, logistic, seed):
    if logistic:
        kw = dict(layer_sizes=(n_items, hidden, n_items), activations=("sigmoid", "sigmoid"), loss="logistic",
                  negative_samples=seed % 3, n_users_embedding=3)
    else:
        kw = dict(layer_sizes=(n_items, hidden, 2, hidden, n_items), variational=variational,
                  total_anneal_steps=seed % 5)
    spec = make_rec_spec(**kw, seed=seed, lazy_adam=bool(seed % 2))
    params = init_rec_params(spec, seed)
    indptr, indices, data = _csr(n_rows, n_items, density, seed, empty_rows=(0,) if n_rows > 2 else ())
    users = _users(spec, n_rows)
    ref, net = NumpyRecNetwork(spec, params), CppRecNetwork(spec, params)
    la = ref.train_epoch(indptr, indices, data, n_rows, batch_size=batch, seed=seed, users=users)
    lb = net.train_epoch(indptr, indices, data, n_rows, batch_size=batch, seed=seed, users=users)
    assert lb == pytest.approx(la, rel=1e-4, abs=1e-5)
    for x, y in zip(ref.get_params(), net.get_params()):
        _assert_close(y, x, atol=1e-4)
    _assert_close(net.forward(indptr, indices, data, users), ref.forward(indptr, indices, data, users), atol=1e-4)


# ---------------------------------------------------------------- bad input

def _backends():
    out = [NumpyRecNetwork]
    if HAS_CORE:
        out.append(CppRecNetwork)
    return out


@pytest.mark.parametrize("cls", _backends())
def test_bad_input_raises(cls):
    spec = make_rec_spec(layer_sizes=(10, 4, 10))
    net = cls(spec, init_rec_params(spec, 0))
    ok = (np.array([0, 2, 3], np.int64), np.array([1, 4, 2], np.int32), np.ones(3, np.float32))
    net.train_batch(*ok)
    cases = [
        ((np.array([0, 2, 3]), np.array([4, 1, 2]), np.ones(3)), ValueError),  # unsorted
        ((np.array([0, 2, 3]), np.array([1, 1, 2]), np.ones(3)), ValueError),  # duplicate
        ((np.array([0, 2, 3]), np.array([1, 10, 2]), np.ones(3)), IndexError),  # column id >= I
        ((np.array([0, 2, 3]), np.array([1, -1, 2]), np.ones(3)), IndexError),
        ((np.array([0, 3, 2, 3]), np.array([1, 2, 3]), np.ones(3)), ValueError),  # indptr not monotone
        ((np.array([0, 2, 4]), np.array([1, 2, 3]), np.ones(3)), ValueError),  # indptr[-1] != nnz
        ((np.array([0, 2, 3]), np.array([1, 2, 3]), np.array([1, np.nan, 1])), ValueError),
        ((np.array([0, 2, 3]), np.array([1, 2, 3]), np.ones(2)), ValueError),
    ]
    for args, exc in cases:
        with pytest.raises(exc):
            net.train_batch(*args)
        with pytest.raises(exc):
            net.forward(*args)
    with pytest.raises(ValueError):
        net.train_epoch(*ok, n_rows=3)  # n_rows mismatch
    with pytest.raises(ValueError):
        net.set_params(init_rec_params(make_rec_spec(layer_sizes=(11, 4, 11)), 0))  # width mismatch
    with pytest.raises(ValueError):
        cls(spec, init_rec_params(make_rec_spec(layer_sizes=(10, 5, 10)), 0))
    cdae = make_rec_spec(layer_sizes=(10, 4, 10), loss="logistic", activations="sigmoid", n_users_embedding=2)
    net = cls(cdae, init_rec_params(cdae, 0))
    with pytest.raises(ValueError):
        net.train_batch(*ok)  # users missing
    with pytest.raises(IndexError):
        net.train_batch(*ok, users=np.array([0, 2], np.int32))


@needs_core
def test_core_rechecks_without_python_validation():
    spec = make_rec_spec(layer_sizes=(10, 4, 10))
    net = _core.RecNetwork(spec, init_rec_params(spec, 0))
    i64, i32, f32 = np.int64, np.int32, np.float32
    with pytest.raises(ValueError):
        net.train_batch(np.array([0, 2, 3], i64), np.array([4, 1, 2], i32), np.ones(3, f32))
    with pytest.raises(IndexError):
        net.train_batch(np.array([0, 2, 3], i64), np.array([1, 99, 2], i32), np.ones(3, f32))
    with pytest.raises(ValueError):
        net.train_batch(np.array([0, 5, 3], i64), np.array([1, 2, 3], i32), np.ones(3, f32))
    with pytest.raises(ValueError):
        net.train_batch(np.array([0, 2, 3], i64), np.array([1, 2, 3], i32), np.array([1, np.nan, 1], f32))
    with pytest.raises(TypeError):
        net.train_batch(np.array([0, 2, 3], i32), np.array([1, 2, 3], i32), np.ones(3, f32))
    with pytest.raises(ValueError):
        net.evaluate(np.array([0, 1], i64), np.array([1], i32), np.ones(1, f32), None, 7)


def test_spec_validation():
    with pytest.raises(ValueError):
        make_rec_spec(layer_sizes=(10, 4, 11))
    with pytest.raises(ValueError):
        make_rec_spec(layer_sizes=(10, 4, 10), variational=True, encoder_depth=2)
    with pytest.raises(ValueError):
        make_rec_spec(layer_sizes=(10, 4, 2, 4, 10), variational=True, activations="tanh")
    with pytest.raises(ValueError):
        make_rec_spec(layer_sizes=(10, 4, 10), loss="multinomial", activations="sigmoid")
    with pytest.raises(TypeError):
        make_rec_spec(layer_sizes=(10, 4, 10), dropout=0.5)
    s = make_rec_spec(layer_sizes=(10, 6, 3, 6, 10), variational=True)
    assert s["activations"] == ("tanh", "identity", "tanh", "identity")
    assert make_rec_spec(**s) == s


@needs_core
def test_cpp_deterministic_for_fixed_threads():
    import aerec
    spec = make_rec_spec(layer_sizes=(300, 40, 10, 40, 300), variational=True, seed=1)
    params = init_rec_params(spec, 0)
    X = _csr(700, 300, 0.05, 4)
    old = aerec.get_num_threads()
    try:
        for threads in (1, 2):
            aerec.set_num_threads(threads)
            runs = []
            for _ in range(2):
                net = CppRecNetwork(spec, params)
                loss = net.train_epoch(*X, 700, batch_size=128, seed=3)
                runs.append((loss, net.get_params()))
            assert runs[0][0] == runs[1][0]
            for a, b in zip(runs[0][1], runs[1][1]):
                np.testing.assert_array_equal(a, b)
    finally:
        aerec.set_num_threads(old)

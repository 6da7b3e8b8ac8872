"""Whole-network gradient checks of the one engine (aerec.nn.spec): the float64 NumPy reference
against central finite differences for every stage, the dense and CSR inputs against each other,
then the float32 backends against the float64 reference."""
import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings, strategies as st

import aerec
from aerec.backends import numpy_
from aerec.nn.spec import ACTIVATIONS, init_params, make_spec, param_shapes

SIZES = (5, 4, 3, 6)
#: the losses of the spec, logistic twice: over every item and with sampled negatives
LOSS_CASES = {"mse": {}, "bce": {}, "masked_mse": {}, "multinomial": {},
              "logistic": {}, "logistic_neg": dict(negative_samples=2)}


def _loss_kw(case, act="tanh"):
    loss = "logistic" if case.startswith("logistic") else case
    out = {"bce": "sigmoid", "multinomial": "identity", "logistic": "sigmoid"}.get(loss, act)
    return dict(LOSS_CASES[case], loss=loss), out


def _spec(case, act="tanh", sizes=SIZES, variational=False, **kw):
    loss_kw, out = _loss_kw(case, act)
    n = len(sizes) - 1
    acts = [act] * (n - 1) + [out]
    if variational:
        acts[kw.get("encoder_depth", (n + 1) // 2) - 1] = "identity"
    return make_spec(sizes, tuple(acts), variational=variational, **loss_kw, **kw)


def _params(spec, rng, dtype, scale=0.6):
    return [rng.normal(0, scale, s).astype(dtype) for s in param_shapes(spec)]


def _data(rng, case, n, n_in, n_out, dtype, density=1.0):
    """(x, y, mask): x with about ``density`` of its entries non-zero, y as the loss wants it."""
    x = (rng.normal(0, 1, (n, n_in)) * (rng.random((n, n_in)) < density)).astype(dtype)
    mask = None
    if case in ("bce", "logistic", "logistic_neg"):
        y = (rng.random((n, n_out)) < 0.35).astype(dtype)
    elif case == "multinomial":
        y = rng.poisson(0.7, (n, n_out)).astype(dtype)
    else:
        y = rng.normal(0, 1, (n, n_out)).astype(dtype)
        if case == "masked_mse":
            mask = (rng.random((n, n_out)) < 0.5).astype(dtype)
    return x, y, mask


def _numeric_grads(f, params, h=1e-6):
    grads = []
    for p in params:
        g = np.zeros_like(p)
        flat, gflat = p.reshape(-1), g.reshape(-1)
        for k in range(flat.size):
            old = flat[k]
            flat[k] = old + h
            fp = f()
            flat[k] = old - h
            fm = f()
            flat[k] = old
            gflat[k] = (fp - fm) / (2 * h)
        grads.append(g)
    return grads


def _rel_err(a, b):
    den = np.linalg.norm(a) + np.linalg.norm(b)
    return 0.0 if den == 0 else np.linalg.norm(a - b) / den


def _check_fd(net, x, y, mask, training, users=None, tol=1e-6):
    loss_val, grads = net.gradients(x, y, mask, training=training, users=users)
    assert len(grads) == len(param_shapes(net.spec))

    def f():  # the loss at the perturbed parameters (perturbed in place below)
        return net.gradients(x, y, mask, training=training, users=users)[0]

    assert f() == loss_val  # deterministic: same step, same streams
    if not training:
        assert net.loss(x, y, mask, batch_size=2, users=users) == pytest.approx(loss_val, rel=1e-12)
    num = _numeric_grads(f, net._params)
    for name, ga, gn in zip(numpy_._tensor_names(net.spec), grads, num):
        assert _rel_err(ga, gn) < tol, f"{name}: rel err {_rel_err(ga, gn):.2e}"
    return grads


@pytest.mark.parametrize("case", list(LOSS_CASES))
@pytest.mark.parametrize("act", ACTIVATIONS)
@pytest.mark.parametrize("training", [False, True], ids=["eval", "dropout"])
def test_float64_gradients_match_finite_differences(act, case, training):
    rng = np.random.default_rng(7)
    spec = _spec(case, act, l2=0.03, dropout=(0.25, 0.4, 0.1), seed=11)
    net = numpy_.Network(spec, _params(spec, rng, np.float64), dtype=np.float64)
    x, y, mask = _data(rng, case, 6, SIZES[0], SIZES[-1], np.float64)
    net.step = 3  # a non-trivial dropout / negatives stream
    _check_fd(net, x, y, mask, training)


#: every stage, alone and all together (training mode: dropout masks and noise fixed by the step)
STAGES = {
    "normalize": dict(normalize_input=True, dropout=(0.3, 0.0, 0.0)),
    "variational": dict(variational=True, encoder_depth=2, beta=0.7, anneal_steps=10, dropout=(0.2, 0.0, 0.3)),
    "users": dict(n_users=4, dropout=(0.3, 0.2, 0.0)),
    "csr": dict(dropout=(0.3, 0.0, 0.2)),
    "all": dict(normalize_input=True, variational=True, encoder_depth=2, beta=0.5, anneal_steps=8,
                n_users=4, dropout=(0.4, 0.0, 0.25)),
}


@pytest.mark.parametrize("case", list(LOSS_CASES))
@pytest.mark.parametrize("stage", list(STAGES))
@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
def test_float64_stage_gradients_match_finite_differences(stage, case, training):
    rng = np.random.default_rng(8)
    kw = dict(STAGES[stage])
    spec = _spec(case, "tanh", l2=0.02, seed=4, **kw)
    net = numpy_.Network(spec, _params(spec, rng, np.float64, 0.5), dtype=np.float64)
    x, y, mask = _data(rng, case, 6, SIZES[0], SIZES[-1], np.float64, density=0.6)
    x[2] = 0.0  # a row of norm 0 stays 0
    users = np.array([2, 0, 2, 3, 2, 1], dtype=np.int32) if spec["n_users"] else None
    if stage in ("csr", "all"):
        x, y = sp.csr_matrix(x), sp.csr_matrix(y)
    net.step = 4  # beta = 0.4 / 0.5 (annealing), non-trivial dropout, noise and negatives
    if spec["variational"]:
        assert net.beta == pytest.approx(min(spec["beta"], 4 / spec["anneal_steps"]))
        assert net.get_params()[2].shape == (4, 6)  # [mu, logvar] of a 3-wide bottleneck
        assert net.encode(x, users=users).shape == (6, 3)
    _check_fd(net, x, y, mask, training, users)


def test_logistic_negatives_stream():
    """The negatives follow aerec.nn.spec's formula; duplicates and positives count once."""
    spec = _spec("logistic_neg", sizes=(4, 3, 50), seed=9)
    rows = np.array([0, 7])
    rr, items = numpy_.negative_items(9, 5, rows, [3, 2], 50)
    key = numpy_.stream_key(9, 0xA54FF53A5F1D36F1, 5, 0)
    for b, t, item in zip(rr, [0, 1, 2, 0, 1], items):
        e = (int(rows[b]) << 32) | t
        h = numpy_._mix64_int(key + (e + 1) * 0x9E3779B97F4A7C15)
        assert item == ((h >> 32) * 50) >> 32
    net = numpy_.Network(spec, init_params(spec, 1, np.float64), dtype=np.float64)
    x = np.ones((2, 4))
    y = np.zeros((2, 50))
    y[0, [1, 2]] = 1.0
    y[1, 3] = 1.0
    _, grads = net.gradients(x, y)
    touched = np.flatnonzero(grads[-1])  # db of the output layer: the set S over both rows
    rr, items = numpy_.negative_items(9, 0, [0, 1], [4, 2], 50)
    assert set(touched) == {1, 2, 3} | set(items.tolist())


def test_dropout_and_noise_keyed_by_row_of_the_call():
    """train_epoch draws row r's mask and noise as train_batch on the whole matrix would, whatever
    the shuffle puts it in."""
    spec = _spec("mse", sizes=(6, 4, 2, 6), variational=True, encoder_depth=2, dropout=(0.5, 0.3, 0.0), seed=3)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, 6)).astype(np.float32)
    m = numpy_.dropout_multiplier(3, 2, 1, np.array([4, 1]), 4, 0.3)
    np.testing.assert_array_equal(m, numpy_.dropout_multiplier(3, 2, 1, 5, 4, 0.3)[[4, 1]])
    g = numpy_.gaussian_noise(3, 2, 1, np.array([3]), 2)
    np.testing.assert_array_equal(g, numpy_.gaussian_noise(3, 2, 1, 5, 2)[[3]])
    # one batch holding every row: train_epoch with any shuffle == train_batch on x
    a, b = (numpy_.Network(spec, init_params(spec, 0)) for _ in range(2))
    la = a.train_epoch(x, x, batch_size=5, shuffle=True, seed=11)
    lb = b.train_batch(x, x)
    assert la == pytest.approx(lb, rel=1e-6)
    for p, q in zip(a.get_params(), b.get_params()):
        np.testing.assert_allclose(p, q, rtol=1e-5, atol=1e-7)


# ---- dense and CSR inputs: identical numbers -------------------------------------------------------
def _pair(spec, params, users):
    return numpy_.Network(spec, params), numpy_.Network(spec, params)


def _assert_same(a, b):
    for p, q in zip(a, b):
        np.testing.assert_array_equal(p, q)


def _dense_csr_identical(spec, x, y, mask, users, batch_size, seed):
    params = init_params(spec, seed)
    xs, ys = sp.csr_matrix(x), (None if y is x else sp.csr_matrix(y))
    ys = xs if ys is None else ys
    for training in (False, True):
        d, c = _pair(spec, params, users)
        ld, gd = d.gradients(x, y, mask, training=training, users=users)
        lc, gc = c.gradients(xs, ys, mask, training=training, users=users)
        assert ld == lc
        _assert_same(gd, gc)
    d, c = _pair(spec, params, users)
    assert d.train_batch(x, y, mask, users=users) == c.train_batch(xs, ys, mask, users=users)
    _assert_same(d.get_params(), c.get_params())
    assert d.train_epoch(x, y, mask, batch_size=batch_size, seed=seed, users=users) == \
        c.train_epoch(xs, ys, mask, batch_size=batch_size, seed=seed, users=users)
    _assert_same(d.get_params(), c.get_params())
    sd, sc = d.get_optimizer_state(), c.get_optimizer_state()
    assert sd.keys() == sc.keys()
    _assert_same([sd[k] for k in sd], [sc[k] for k in sd])
    assert d.loss(x, y, mask, users=users) == c.loss(xs, ys, mask, users=users)
    _assert_same([d.forward(x, users=users), d.encode(x, users=users)],
                 [c.forward(xs, users=users), c.encode(xs, users=users)])


@pytest.mark.parametrize("case", list(LOSS_CASES))
@pytest.mark.parametrize("opt", ["adam", "sgd", "lazy"])
def test_dense_and_csr_inputs_identical(case, opt):
    rng = np.random.default_rng(21)
    okw = dict(optimizer="sgd", momentum=0.9, nesterov=True) if opt == "sgd" else \
        dict(lazy=True, weight_decay=0.01) if opt == "lazy" else dict(optimizer="adamw", weight_decay=0.02)
    n_items = 9
    spec = _spec(case, sizes=(n_items, 5, 3, 5, n_items), variational=True, encoder_depth=2, dropout=(0.4, 0.2, 0.0, 0.1),
                 normalize_input=True, n_users=7, l2=0.01, seed=5, anneal_steps=3, **okw)
    x, y, mask = _data(rng, case, 7, n_items, n_items, np.float32, density=0.4)
    if case in ("multinomial", "logistic", "logistic_neg"):
        y = x = (x != 0).astype(np.float32)  # Mult-* / CDAE: the same matrix as input and target
    _dense_csr_identical(spec, x, y, mask, np.arange(7, dtype=np.int32)[::-1].copy(), 3, 1)


@settings(max_examples=25)
@given(n=st.integers(1, 9), n_items=st.integers(2, 12), hidden=st.integers(1, 5), density=st.floats(0, 1),
       case=st.sampled_from(list(LOSS_CASES)), variational=st.booleans(), users=st.booleans(),
       normalize=st.booleans(), lazy=st.booleans(), batch_size=st.integers(1, 4), seed=st.integers(0, 2 ** 20))
def test_dense_and_csr_identical_hypothesis(n, n_items, hidden, density, case, variational, users, normalize,
                                            lazy, batch_size, seed):
    rng = np.random.default_rng(seed)
    sizes = (n_items, hidden, 2, hidden, n_items) if variational else (n_items, hidden, n_items)
    spec = _spec(case, sizes=sizes, variational=variational, dropout=0.3, normalize_input=normalize,
                 n_users=n if users else 0, lazy=lazy, seed=seed)
    x, y, mask = _data(rng, case, n, n_items, n_items, np.float32, density=density)
    _dense_csr_identical(spec, x, y, mask, np.arange(n, dtype=np.int32) if users else None, batch_size, seed)


# ---- float32 backends against the float64 reference ------------------------------------------------
def _backends32():
    return [n for n, ok in aerec.backends.available().items() if ok]


@pytest.mark.parametrize("backend_name", _backends32())
@pytest.mark.parametrize("case", list(LOSS_CASES))
@pytest.mark.parametrize("stage", ["plain"] + list(STAGES))
def test_float32_gradients_match_float64_reference(backend_name, case, stage):
    rng = np.random.default_rng(3)
    spec = _spec(case, "tanh", l2=0.01, seed=5, **STAGES.get(stage, dict(dropout=(0.2, 0.0, 0.3))))
    p64 = _params(spec, rng, np.float64, 0.5)
    x, y, mask = _data(rng, case, 9, SIZES[0], SIZES[-1], np.float64, density=0.7)
    users = rng.integers(0, 4, 9).astype(np.int32) if spec["n_users"] else None
    ref = numpy_.Network(spec, p64, dtype=np.float64)
    net = aerec.backends.get(backend_name).Network(spec, [p.astype(np.float32) for p in p64])
    f32 = (lambda a: None if a is None else a.astype(np.float32))
    x32, y32 = f32(x), f32(y)
    if stage in ("csr", "all"):
        x, y, x32, y32 = sp.csr_matrix(x), sp.csr_matrix(y), sp.csr_matrix(x32), sp.csr_matrix(y32)
    for training in (False, True):
        l64, g64 = ref.gradients(x, y, mask, training=training, users=users)
        l32, g32 = net.gradients(x32, y32, f32(mask), training=training, users=users)
        assert l32 == pytest.approx(l64, rel=1e-5, abs=1e-6)
        for ga, gb in zip(g32, g64):
            assert ga.dtype == np.float32
            np.testing.assert_allclose(ga, gb, rtol=1e-4, atol=2e-6)

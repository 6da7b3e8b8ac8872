"""Whole-network gradient checks: float64 NumPy reference against central finite differences,
then the float32 backends against that float64 reference."""
import numpy as np
import pytest

import aerec
from aerec.backends import numpy_
from aerec.models.spec import ACTIVATIONS, LOSSES, make_spec

SIZES = (5, 4, 3, 6)


def _params(rng, sizes, dtype):
    out = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        out += [rng.normal(0, 0.7, (a, b)).astype(dtype), rng.normal(0, 0.3, b).astype(dtype)]
    return out


ALL_LOSSES = tuple(LOSSES) + (("multinomial",) if "multinomial" not in LOSSES else ())


def _data(rng, loss, n, n_in, n_out, dtype):
    x = rng.normal(0, 1, (n, n_in)).astype(dtype)
    if loss == "multinomial":
        y = rng.poisson(0.7, (n, n_out)).astype(dtype)
        mask = None
    elif loss == "bce":
        y = (rng.random((n, n_out)) < 0.4).astype(dtype)
        mask = None
    elif loss == "masked_mse":
        y = rng.normal(0, 1, (n, n_out)).astype(dtype)
        mask = (rng.random((n, n_out)) < 0.5).astype(dtype)
    else:
        y = rng.normal(0, 1, (n, n_out)).astype(dtype)
        mask = None
    return x, y, mask


def _spec(act, loss, **kw):
    if loss == "multinomial":  # not (yet) in spec.LOSSES: build the rest through make_spec
        return dict(make_spec(SIZES, (act, act, "identity"), loss="mse", **kw), loss="multinomial")
    out = "sigmoid" if loss == "bce" else act
    return make_spec(SIZES, (act, act, out), loss=loss, **kw)


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


@pytest.mark.parametrize("loss", ALL_LOSSES)
@pytest.mark.parametrize("act", ACTIVATIONS)
@pytest.mark.parametrize("training", [False, True], ids=["eval", "dropout"])
def test_float64_gradients_match_finite_differences(act, loss, training):
    rng = np.random.default_rng(7)
    spec = _spec(act, loss, l2=0.03, dropout=(0.25, 0.4, 0.1), seed=11)
    net = numpy_.Network(spec, _params(rng, SIZES, np.float64), dtype=np.float64)
    x, y, mask = _data(rng, loss, 6, SIZES[0], SIZES[-1], np.float64)
    if training:
        net.step = 3  # a non-trivial dropout stream
    loss_val, grads = net.gradients(x, y, mask, training=training)
    params = net._params  # perturbed in place by the finite differences

    def f():
        return net._batch_loss_grads(x, y, mask, training)[0]

    assert loss_val == pytest.approx(f(), rel=1e-12)
    if not training:
        assert net.loss(x, y, mask) == pytest.approx(loss_val, rel=1e-12)
    num = _numeric_grads(f, params)
    for i, (ga, gn) in enumerate(zip(grads, num)):
        assert _rel_err(ga, gn) < 1e-6, f"tensor {i}: rel err {_rel_err(ga, gn):.2e}"


def _backends32():
    return [n for n, ok in aerec.backends.available().items() if ok]


@pytest.mark.parametrize("backend_name", _backends32())
@pytest.mark.parametrize("loss", ALL_LOSSES)
@pytest.mark.parametrize("act", ACTIVATIONS)
def test_float32_gradients_match_float64_reference(backend_name, act, loss):
    rng = np.random.default_rng(3)
    spec = _spec(act, loss, l2=0.01, dropout=(0.2, 0.0, 0.3), seed=5)
    p64 = _params(rng, SIZES, np.float64)
    x, y, mask = _data(rng, loss, 9, SIZES[0], SIZES[-1], np.float64)
    ref = numpy_.Network(spec, p64, dtype=np.float64)
    be = aerec.backends.get(backend_name)
    net = be.Network(spec, [p.astype(np.float32) for p in p64])
    f32 = (lambda a: None if a is None else a.astype(np.float32))
    for training in (False, True):
        l64, g64 = ref.gradients(x, y, mask, training=training)
        l32, g32 = net.gradients(f32(x), f32(y), f32(mask), training=training)
        assert l32 == pytest.approx(l64, rel=1e-5, abs=1e-6)
        for ga, gb in zip(g32, g64):
            assert ga.dtype == np.float32
            np.testing.assert_allclose(ga, gb, rtol=1e-4, atol=2e-6)


def _vae_spec(loss, act="tanh", **kw):
    out = {"bce": "sigmoid", "multinomial": "identity"}.get(loss, act)
    spec = make_spec(SIZES, (act, "identity", out), loss="mse" if loss == "multinomial" else loss,
                     encoder_depth=2, **kw)
    return dict(spec, loss=loss, variational=True, beta=0.7, anneal_steps=10)


def _params_for(net_cls_spec, rng, dtype):
    probe = numpy_.Network.__new__(numpy_.Network)  # shapes only
    probe._sizes, probe.n_layers = tuple(net_cls_spec["layer_sizes"]), len(net_cls_spec["layer_sizes"]) - 1
    probe._vae, probe._vl, probe._n_users = True, net_cls_spec["encoder_depth"] - 1, 0
    return [rng.normal(0, 0.5, shape).astype(dtype) for shape in probe._shapes()]


@pytest.mark.parametrize("loss", ALL_LOSSES)
@pytest.mark.parametrize("training", [False, True], ids=["eval", "noise"])
def test_float64_vae_gradients_match_finite_differences(loss, training):
    rng = np.random.default_rng(8)
    spec = _vae_spec(loss, l2=0.02, dropout=(0.2, 0.0, 0.3), seed=4)
    net = numpy_.Network(spec, _params_for(spec, rng, np.float64), dtype=np.float64)
    assert net.get_params()[2].shape == (4, 6)  # [mu, logvar] of a 3-wide bottleneck
    x, y, mask = _data(rng, loss, 5, SIZES[0], SIZES[-1], np.float64)
    net.step = 4  # beta = 0.4 (annealing) and a non-trivial noise stream
    assert net.beta == pytest.approx(0.4)
    loss_val, grads = net.gradients(x, y, mask, training=training)

    def f():
        return net._batch_loss_grads(x, y, mask, training)[0]

    if not training:
        assert net.loss(x, y, mask, batch_size=2) == pytest.approx(loss_val, rel=1e-12)
    num = _numeric_grads(f, net._params)
    for i, (ga, gn) in enumerate(zip(grads, num)):
        assert _rel_err(ga, gn) < 1e-6, f"tensor {i}: rel err {_rel_err(ga, gn):.2e}"
    assert net.hidden(x, 1).shape == (5, 3)


@pytest.mark.parametrize("loss", ALL_LOSSES)
@pytest.mark.parametrize("training", [False, True], ids=["eval", "dropout"])
def test_float64_user_vector_gradients(loss, training):
    rng = np.random.default_rng(9)
    spec = dict(_spec("sigmoid", loss, l2=0.02, dropout=(0.3, 0.0, 0.0), seed=6), n_users=4)
    params = _params(rng, SIZES, np.float64) + [rng.normal(0, 0.5, (4, SIZES[1]))]
    net = numpy_.Network(spec, params, dtype=np.float64)
    x, y, mask = _data(rng, loss, 6, SIZES[0], SIZES[-1], np.float64)
    users = np.array([2, 0, 2, 3, 2, 1], dtype=np.int32)
    loss_val, grads = net.gradients(x, y, mask, training=training, users=users)
    assert len(grads) == 7 and grads[-1].shape == (4, SIZES[1])

    def f():
        return net._batch_loss_grads(x, y, mask, training, users)[0]

    if not training:
        assert net.loss(x, y, mask, batch_size=4, users=users) == pytest.approx(loss_val, rel=1e-12)
    num = _numeric_grads(f, net._params)
    for i, (ga, gn) in enumerate(zip(grads, num)):
        assert _rel_err(ga, gn) < 1e-6, f"tensor {i}: rel err {_rel_err(ga, gn):.2e}"

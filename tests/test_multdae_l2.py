"""MultDAE / MultVAE's L2 penalty has Liang et al.'s form: ``l2 * sum ||W||^2`` over the weights
(not the biases) added to the batch's mean loss, with ``l2="auto"`` = ``0.01 / batch_size`` (the
reference code's ``lam``; it adds ``2 * l2_regularizer(lam)`` and TensorFlow's regulariser is half
the squared norm). CDAE keeps the spec's ``0.5 * l2 * (sum ||W||^2 + ||U||^2)``. Checked on every
backend through the network's own loss and gradients, against float64 by hand."""
import numpy as np
import pytest
import scipy.sparse as sp

import aerec
from aerec.backends import get as get_backend


def data(seed=0, n_users=40, n_items=30):
    rng = np.random.default_rng(seed)
    dense = (rng.random((n_users, n_items)) < 0.2).astype(np.float32)
    dense[dense.sum(1) == 0, 0] = 1
    return sp.csr_matrix(dense)


def test_default_is_the_reference_lam():
    assert aerec.MultDAE().l2 == "auto" and aerec.MultVAE().l2 == 0.0
    X = data()
    m = aerec.MultDAE(hidden=(8,), latent=4, epochs=1, batch_size=16, backend="numpy").fit(X)
    assert m.spec_["l2"] == pytest.approx(2 * 0.01 / 16)
    # the batch size the fit used (capped at the number of users)
    m = aerec.MultDAE(hidden=(8,), latent=4, epochs=1, backend="numpy").fit(X)
    assert m.batch_size_ == 40 and m.spec_["l2"] == pytest.approx(2 * 0.01 / 40)
    m = aerec.MultDAE(hidden=(8,), latent=4, epochs=1, batch_size="auto", backend="numpy").fit(X)
    assert m.spec_["l2"] == pytest.approx(2 * 0.01 / m.batch_size_)
    m = aerec.MultVAE(hidden=(8,), latent=4, epochs=1, l2=3e-4, backend="numpy").fit(X)
    assert m.spec_["l2"] == pytest.approx(6e-4)
    c = aerec.CDAE(latent=4, epochs=1, l2=3e-4, backend="numpy").fit(X)
    assert c.spec_["l2"] == pytest.approx(3e-4)


@pytest.mark.parametrize("backend", [n for n, ok in aerec.backends.available().items() if ok])
def test_penalty_is_l2_sum_of_squared_weights(backend):
    X = data(1)
    lam = 0.01 / 8
    m = aerec.MultDAE(hidden=(6,), latent=3, epochs=1, batch_size=8, l2=lam, backend=backend).fit(X)
    net = m.net_
    params = net.get_params()
    weights = params[0::2]
    # the loss with the penalty minus the loss without it, same weights, eval mode
    be = get_backend(backend)
    bare = be.Network(dict(m.spec_, l2=0.0), params)
    penalty = net.loss(X, X) - bare.loss(X, X)
    want = lam * sum(float((W.astype(np.float64) ** 2).sum()) for W in weights)
    assert penalty == pytest.approx(want, rel=1e-4)
    # its gradient: 2 * lam * W on the weights, nothing on the biases
    g, g0 = net.gradients(X, X)[1], bare.gradients(X, X)[1]
    for i, (a, b, p) in enumerate(zip(g, g0, params)):
        extra = (np.asarray(a, np.float64) - np.asarray(b, np.float64))
        if i % 2 == 0:
            np.testing.assert_allclose(extra, 2 * lam * p, rtol=1e-3, atol=1e-7)
        else:
            np.testing.assert_allclose(extra, 0.0, atol=1e-7)


def test_bad_l2():
    X = data()
    with pytest.raises(ValueError, match="'auto' or a number"):
        aerec.MultDAE(hidden=(4,), latent=2, epochs=1, l2="big", backend="numpy").fit(X)
    with pytest.raises(ValueError, match="l2"):
        aerec.MultDAE(hidden=(4,), latent=2, epochs=1, l2=-1.0, backend="numpy").fit(X)


def test_auto_l2_round_trips_through_a_file(tmp_path):
    X = data()
    m = aerec.MultDAE(hidden=(8,), latent=4, epochs=1, batch_size=16, backend="numpy").fit(X)
    m.save(tmp_path / "m.npz")
    back = aerec.load(tmp_path / "m.npz", backend="numpy")
    assert back.l2 == "auto" and back.spec_["l2"] == m.spec_["l2"]
    np.testing.assert_allclose(back.score_items([0, 1]), m.score_items([0, 1]), rtol=1e-6)

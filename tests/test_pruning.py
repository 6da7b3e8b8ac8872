"""Pruning in training (issue 9): ``Network.set_masks`` on every backend and ISA level against the
NumPy oracle, the masked optimizer invariants, bad masks, and ``aerec.compress.pruning``
(GradualPruning's schedule and the models' ``pruning=``, magnitude masks, unit pruning, fine-tuning,
masks in model files)."""
import os
import zlib

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings, strategies as st

import aerec
from aerec import compress
from aerec.backends import numpy_
from aerec.nn.spec import check_masks, param_shapes

from test_network import ENGINES, _csr, _use, assert_close_params, make_data, net_spec, params_for, restore_isa  # noqa: F401

MASK_OPTIMIZERS = {
    "adam": dict(optimizer="adam", learning_rate=1e-2, weight_decay=0.01),
    "adamw": dict(optimizer="adamw", learning_rate=1e-2, weight_decay=0.1),
    "sgd": dict(optimizer="sgd", learning_rate=0.05, weight_decay=0.01),
    "sgd_momentum": dict(optimizer="sgd", learning_rate=0.05, momentum=0.8),
    "sgd_nesterov": dict(optimizer="sgd", learning_rate=0.05, momentum=0.8, nesterov=True, weight_decay=0.01),
    "lazy": dict(optimizer="adam", learning_rate=1e-2, lazy=True, weight_decay=0.01),
}
CASES = {  # loss, extra spec: the dense paths, the fused multinomial / logistic rows, CDAE's user vectors
    "mse": ("mse", {}),
    "multinomial_vae": ("multinomial", dict(variational=True, beta=0.3, anneal_steps=4)),
    "logistic_users": ("logistic", dict(n_users=9)),
    "masked_mse": ("masked_mse", {}),
}


def random_masks(spec, rng, density=0.6, skip=()):
    shapes = param_shapes(spec)
    L = len(spec["layer_sizes"]) - 1
    return [None if l in skip else rng.random(shapes[2 * l]) < density for l in range(L)]


def assert_pruned_zero(net, masks):
    p, st_ = net.get_params(), net.get_optimizer_state()
    for l, m in enumerate(masks):
        if m is None:
            continue
        assert np.all(p[2 * l][~m] == 0), f"W{l} has non-zero pruned weights"
        for key, v in st_.items():
            if key.endswith(f"_W{l}"):
                assert np.all(v[~m] == 0), f"{key} has non-zero pruned entries"


# ---- every backend x ISA level against the NumPy oracle -------------------------------------------
@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("opt", list(MASK_OPTIMIZERS))
@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("inp", ["dense", "csr"])
def test_masked_parity(inp, case, opt, engine, restore_isa):
    be = _use(engine)
    loss, extra = CASES[case]
    rng = np.random.default_rng(zlib.crc32(f"mask/{inp}/{case}/{opt}".encode()))
    spec = net_spec(loss, l2=0.01, **extra, **MASK_OPTIMIZERS[opt])
    params = params_for(spec, 4)
    n = 13
    x, y, mask = make_data(rng, loss, n, 11, 11)
    x[4] = 0.0
    if y is x:
        y = x = x.copy()
    users = rng.integers(0, 9, n).astype(np.int32) if spec["n_users"] else None
    xi, yi = (_csr(x), (None if y is x else _csr(y))) if inp == "csr" else (x, y)
    yi = xi if yi is None else yi
    masks = random_masks(spec, rng, skip=(1,))
    ref, net = numpy_.Network(spec, params), be.Network(spec, params)
    # moments before the masks: setting them must zero the pruned ones
    ref.train_batch(x, y, mask, users=users)
    net.train_batch(xi, yi, mask, users=users)
    ref.set_masks(masks)
    net.set_masks(masks)
    assert_pruned_zero(net, masks)
    assert net.train_batch(xi, yi, mask, users=users) == pytest.approx(
        ref.train_batch(x, y, mask, users=users), rel=1e-4, abs=1e-6)
    for e in range(3):
        assert net.train_epoch(xi, yi, mask, batch_size=5, seed=e, users=users) == pytest.approx(
            ref.train_epoch(x, y, mask, batch_size=5, seed=e, users=users), rel=1e-4, abs=1e-6)
    assert_close_params(net.get_params(), ref.get_params())
    s_ref, s_net = ref.get_optimizer_state(), net.get_optimizer_state()
    for k in s_ref:
        np.testing.assert_allclose(s_net[k], s_ref[k], rtol=1e-3, atol=1e-5, err_msg=k)
    assert_pruned_zero(net, masks)
    assert_pruned_zero(ref, masks)
    for a, b in zip(net.get_masks(), masks):
        assert (a is None and b is None) or (a.dtype == np.bool_ and np.array_equal(a, b))


@pytest.mark.parametrize("engine", ENGINES)
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(sizes=st.lists(st.integers(1, 40), min_size=2, max_size=4), n=st.integers(1, 17),
       batch_size=st.integers(1, 20), opt=st.sampled_from(sorted(MASK_OPTIMIZERS)), density=st.floats(0.0, 1.0),
       csr=st.booleans(), seed=st.integers(0, 2 ** 32 - 1))
def test_masked_parity_random_shapes(engine, restore_isa, sizes, n, batch_size, opt, density, csr, seed):
    """Random widths (vector tails, all-pruned and all-kept blocks) and densities down to 0."""
    be = _use(engine)
    rng = np.random.default_rng(seed)
    hp = dict(MASK_OPTIMIZERS[opt], learning_rate=MASK_OPTIMIZERS[opt]["learning_rate"] / 5)
    spec = net_spec("mse", sizes=tuple(sizes), seed=seed, dropout=(0.2,) * (len(sizes) - 1), l2=0.01, **hp)
    params = params_for(spec, n)
    x, y, mask = make_data(rng, "mse", n, sizes[0], sizes[-1])
    masks = random_masks(spec, rng, density)
    ref, net = numpy_.Network(spec, params), be.Network(spec, params)
    ref.set_masks(masks)
    net.set_masks(masks)
    xi = _csr(x) if csr else x
    for e in range(2):
        assert net.train_epoch(xi, y, batch_size=batch_size, seed=e) == pytest.approx(
            ref.train_epoch(x, y, batch_size=batch_size, seed=e), rel=1e-4, abs=1e-6)
    assert_close_params(net.get_params(), ref.get_params(), rtol=2e-4, atol=5e-5)
    assert_pruned_zero(net, masks)


@pytest.mark.parametrize("engine", ENGINES)
def test_pruned_weights_stay_exactly_zero_over_many_steps(engine, restore_isa):
    be = _use(engine)
    rng = np.random.default_rng(0)
    spec = net_spec("multinomial", sizes=(67, 33, 17, 33, 67), variational=True, beta=0.2, l2=0.01,
                    optimizer="adamw", learning_rate=3e-2, weight_decay=0.05)
    net = be.Network(spec, params_for(spec, 1))
    x = _csr((rng.random((50, 67)) < 0.2).astype(np.float32))
    masks = random_masks(spec, rng, 0.3)
    net.set_masks(masks)
    before = [p.copy() for p in net.get_params()]
    for e in range(40):
        net.train_epoch(x, x, batch_size=7, seed=e)
    assert_pruned_zero(net, masks)
    after = net.get_params()
    for l, m in enumerate(masks):  # the kept weights did train
        assert np.abs(after[2 * l][m] - before[2 * l][m]).max() > 1e-3


@pytest.mark.parametrize("engine", ENGINES)
def test_masks_survive_state_roundtrip_and_set_params(engine, restore_isa):
    be = _use(engine)
    rng = np.random.default_rng(1)
    spec = net_spec("mse", optimizer="adam", learning_rate=1e-2)
    x, y, _ = make_data(rng, "mse", 20, 11, 11)
    net = be.Network(spec, params_for(spec, 2))
    net.train_epoch(x, y, batch_size=6, seed=0)
    masks = random_masks(spec, rng, 0.5, skip=(0,))
    net.set_masks(masks)
    net.train_epoch(x, y, batch_size=6, seed=1)
    params, state = net.get_params(), net.get_optimizer_state()
    # a dense state and dense weights written back: the pruned entries are zeroed again
    dense_state = {k: (v if k == "step" else v + np.float32(0.5)) for k, v in state.items()}
    net.set_optimizer_state(dense_state)
    net.set_params([p + np.float32(1.0) for p in params])
    assert_pruned_zero(net, masks)
    # a fresh network with the saved state and masks continues exactly like the original
    net.set_params(params)
    net.set_optimizer_state(state)
    twin = be.Network(spec, params)
    twin.set_optimizer_state(state)
    twin.set_masks(net.get_masks())
    net.train_epoch(x, y, batch_size=6, seed=2)
    twin.train_epoch(x, y, batch_size=6, seed=2)
    for a, b in zip(net.get_params(), twin.get_params()):
        np.testing.assert_array_equal(a, b)
    net.set_masks(None)
    assert net.get_masks() == [None] * net.n_layers
    net.set_masks([None] * net.n_layers)
    assert net.get_masks() == [None] * net.n_layers


@pytest.mark.parametrize("engine", ENGINES)
def test_bad_masks_raise(engine, restore_isa):
    be = _use(engine)
    spec = net_spec("mse")
    net = be.Network(spec, params_for(spec, 0))
    shapes = param_shapes(spec)
    good = [np.ones(shapes[2 * l], bool) for l in range(4)]
    with pytest.raises(ValueError, match="expected 4 masks"):
        net.set_masks(good[:3])
    with pytest.raises(ValueError, match="shape of W1"):
        net.set_masks([good[0], np.ones((3, 3), bool), None, None])
    with pytest.raises(TypeError, match="dtype bool or uint8"):
        net.set_masks([np.ones(shapes[0], np.float32), None, None, None])
    with pytest.raises(ValueError, match="0 \\(pruned\\) or 1"):
        net.set_masks([np.full(shapes[0], 2, np.uint8), None, None, None])
    with pytest.raises(TypeError, match="one entry per weight matrix"):
        net.set_masks(np.ones(shapes[0], bool))
    with pytest.raises(TypeError, match="mask 2"):
        net.set_masks([None, None, [[1]], None])
    assert net.get_masks() == [None] * 4  # nothing was set by the failed calls
    net.set_masks([g.astype(np.uint8) for g in good])  # uint8 0/1 is fine
    assert all(m.all() for m in net.get_masks())


def test_cpp_binding_checks_masks_itself():
    """The compiled class checks what reaches it without the Python wrapper's validation."""
    if not aerec.backends.available().get("cpp"):
        pytest.skip("aerec._core not built")
    from aerec import _core
    spec = net_spec("mse")
    raw = _core.Network(spec, params_for(spec, 0))
    shapes = param_shapes(spec)
    with pytest.raises(ValueError):
        raw.set_masks([np.ones(shapes[0], bool)])
    with pytest.raises(TypeError):
        raw.set_masks([np.ones(shapes[0], np.float32), None, None, None])
    with pytest.raises(ValueError):
        raw.set_masks([np.full(shapes[0], 3, np.uint8), None, None, None])
    with pytest.raises(ValueError, match="C-contiguous"):
        raw.set_masks([np.ones(shapes[0][::-1], bool).T, None, None, None])


# ---- magnitude masks ---------------------------------------------------------------------------------
def test_magnitude_masks_per_layer_global_and_no_regrowth():
    spec = net_spec("mse", sizes=(30, 20, 10, 20, 30))
    params = params_for(spec, 5)
    m = compress.magnitude_masks(params, 0.7)
    for l, k in enumerate(m):
        w = params[2 * l]
        assert k.shape == w.shape and k.dtype == np.bool_
        assert (~k).sum() == round(0.7 * w.size)
        assert np.abs(w[~k]).max() <= np.abs(w[k]).min()  # the smallest magnitudes go
    g = compress.magnitude_masks(params, 0.7, scope="global")
    total = sum(k.size for k in g)
    assert sum((~k).sum() for k in g) == round(0.7 * total)
    thr = max(np.abs(params[2 * l][~k]).max() for l, k in enumerate(g))
    assert all(np.abs(params[2 * l][k]).min() >= thr for l, k in enumerate(g))
    # only layers 0 and 3; a previous mask is never regrown even where the weight is large
    prev = [np.ones(param_shapes(spec)[2 * l], bool) for l in range(4)]
    big = np.unravel_index(np.argmax(np.abs(params[0])), params[0].shape)
    prev[0][big] = False
    m2 = compress.magnitude_masks(params, 0.5, layers=[0, 3], previous=prev)
    assert not m2[0][big] and m2[1] is not None and m2[1].all() and m2[2].all()
    assert (~m2[0]).sum() == round(0.5 * params[0].size)
    assert compress.sparsity_of(m) == pytest.approx(sum((~k).sum() for k in m) / total)
    with pytest.raises(ValueError, match="sparsity must be in"):
        compress.magnitude_masks(params, 1.0)
    with pytest.raises(ValueError, match="out of range"):
        compress.magnitude_masks(params, 0.5, layers=[7])
    with pytest.raises(ValueError, match="scope"):
        compress.magnitude_masks(params, 0.5, scope="row")
    with pytest.raises(TypeError, match="sparsity"):
        compress.magnitude_masks(params, "0.5")


# ---- GradualPruning --------------------------------------------------------------------------------
def test_gradual_schedule_is_zhu_gupta_cubic():
    g = compress.GradualPruning(0.9, begin=0.2, end=0.8, initial_sparsity=0.1)
    for t in np.linspace(0.2, 0.8, 13):
        want = 0.9 + (0.1 - 0.9) * (1 - (t - 0.2) / 0.6) ** 3
        assert g.sparsity_at(t) == pytest.approx(want)
    assert g.sparsity_at(0.1) == 0.0 and g.sparsity_at(0.8) == 0.9 and g.sparsity_at(1.0) == 0.9
    steps = g.schedule(10)
    assert sorted(steps) == [2, 3, 4, 5, 6, 7, 8] and steps[8] == 0.9
    vals = [steps[e] for e in sorted(steps)]
    assert vals == sorted(vals)
    assert compress.GradualPruning(0.5, frequency=2).schedule(10) == {2: 0.0, 4: pytest.approx(0.5 * (1 - (1 - 2 / 6) ** 3)),
                                                                      6: pytest.approx(0.5 * (1 - (1 - 4 / 6) ** 3)),
                                                                      8: 0.5}
    # a fit too short to reach `end` prunes to the final sparsity after its last epoch
    assert compress.GradualPruning(0.5, end=0.95).schedule(3) == {1: pytest.approx(0.5 * (1 - (1 - (1 / 3 - 0.2) / 0.75) ** 3)),
                                                                  2: pytest.approx(0.5 * (1 - (1 - (2 / 3 - 0.2) / 0.75) ** 3)),
                                                                  3: 0.5}


@pytest.mark.parametrize("kw, err, msg", [
    (dict(final_sparsity=1.0), ValueError, "final_sparsity must be in"),
    (dict(final_sparsity=-0.1), ValueError, "final_sparsity must be in"),
    (dict(final_sparsity="0.5"), TypeError, "final_sparsity"),
    (dict(final_sparsity=0.5, begin=0.8, end=0.2), ValueError, "begin .* must be < end"),
    (dict(final_sparsity=0.5, end=1.5), ValueError, "end must be in"),
    (dict(final_sparsity=0.5, initial_sparsity=0.6), ValueError, "initial_sparsity"),
    (dict(final_sparsity=0.5, frequency=0), ValueError, "frequency"),
    (dict(final_sparsity=0.5, layers="hidden"), ValueError, "layers"),
    (dict(final_sparsity=0.5, layers=[]), TypeError, "layers"),
    (dict(final_sparsity=0.5, scope="unit"), ValueError, "scope"),
])
def test_gradual_pruning_bad_arguments(kw, err, msg):
    with pytest.raises(err, match=msg):
        compress.GradualPruning(**kw)


def _implicit(n_users=120, n_items=80, seed=0):
    X = sp.random(n_users, n_items, density=0.1, random_state=seed, format="csr", dtype=np.float32)
    X.data[:] = 1.0
    return X


@pytest.mark.parametrize("cls", ["MultVAE", "MultDAE", "CDAE"])
def test_models_train_gradually_pruned_and_reload(cls, tmp_path):
    X = _implicit()
    model = getattr(aerec, cls)(hidden=(24,), latent=8, epochs=10, backend="numpy",
                                pruning=compress.GradualPruning(0.8)).fit(X, verbose=0)
    hist = model.history_["sparsity"]
    assert len(hist) == 10 and hist[:2] == [0.0, 0.0] and hist == sorted(hist)
    assert model.sparsity_ == pytest.approx(0.8, abs=1e-3)
    masks = model.net_.get_masks()
    assert all(m is not None for m in masks)
    steps = model.pruning_steps_
    assert [e for e, _ in steps] == [2, 3, 4, 5, 6, 7, 8]
    p = model.net_.get_params()
    for l, m in enumerate(masks):
        assert np.all(p[2 * l][~m] == 0)
    path = os.path.join(tmp_path, "m.aerec")
    model.save(path)
    back = aerec.load(path, backend="numpy")
    assert back.pruning == model.pruning and back.get_params()["pruning"].final_sparsity == 0.8
    for a, b in zip(back.net_.get_masks(), masks):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(back.recommend(np.arange(10), k=5)[0], model.recommend(np.arange(10), k=5)[0])
    # a reloaded model continues pruned training
    more = compress.fine_tune(back, "keep", X, epochs=2)
    assert compress.sparsity_of(more) == pytest.approx(model.sparsity_)
    for l, m in enumerate(masks):
        assert np.all(more.net_.get_params()[2 * l][~m] == 0)


def test_pruning_with_validation_keeps_only_final_sparsity_epochs():
    from aerec.data import Interactions  # noqa: F401  (the split helpers)
    X = _implicit(150, 60, 1)
    val = (_implicit(30, 60, 2), _implicit(30, 60, 3))
    model = aerec.MultDAE(hidden=(16,), latent=8, epochs=8, backend="numpy",
                          pruning=compress.GradualPruning(0.6, begin=0.0, end=0.5)).fit(X, validation=val, verbose=0)
    assert model.best_epoch_ >= 4  # steps at epochs 0..4; the final sparsity from epoch 4
    assert compress.sparsity_of(model) == pytest.approx(0.6, abs=1e-3)
    p = model.net_.get_params()
    for l, m in enumerate(model.net_.get_masks()):
        assert np.all(p[2 * l][~m] == 0)


def test_reduce_lr_rebuild_keeps_masks():
    X = _implicit()
    model = aerec.MultDAE(hidden=(16,), latent=8, epochs=6, backend="numpy",
                          pruning=compress.GradualPruning(0.5, begin=0.0, end=0.3))
    model.fit(X, verbose=0)
    masks = model.net_.get_masks()
    model._set_learning_rate(1e-4)
    for a, b in zip(model.net_.get_masks(), masks):
        np.testing.assert_array_equal(a, b)


def test_autorec_and_autoencoder_pruning(tmp_path):
    rng = np.random.default_rng(0)
    R = _implicit(60, 40)
    R.data[:] = rng.integers(1, 6, R.nnz)
    a = aerec.AutoRec(hidden=16, epochs=6, backend="numpy", pruning=compress.GradualPruning(0.5)).fit(R, verbose=0)
    assert a.sparsity_ == pytest.approx(0.5, abs=1e-3) and len(a.history_["sparsity"]) == 6
    path = os.path.join(tmp_path, "a.aerec")
    a.save(path)
    assert compress.sparsity_of(aerec.load(path, backend="numpy")) == pytest.approx(a.sparsity_)
    x = rng.random((80, 12)).astype(np.float32)
    ae = aerec.Autoencoder(hidden=(16, 4, 16), backend="numpy", pruning=compress.GradualPruning(0.7))
    ae.fit(x, epochs=10, verbose=0)
    assert ae.sparsity_ == pytest.approx(0.7, abs=0.01)
    path = os.path.join(tmp_path, "ae.aerec")
    ae.save(path)
    back = aerec.load(path, backend="numpy")
    np.testing.assert_allclose(back.predict(x), ae.predict(x))
    assert back.pruning.final_sparsity == 0.7


def test_bad_pruning_argument_and_bad_mask_file(tmp_path):
    X = _implicit()
    with pytest.raises(TypeError, match="GradualPruning"):
        aerec.MultVAE(epochs=1, pruning=0.5).fit(X, verbose=0)
    with pytest.raises(TypeError, match="GradualPruning"):
        aerec.Autoencoder(pruning="magnitude")
    model = aerec.MultDAE(hidden=(8,), latent=4, epochs=3, backend="numpy",
                          pruning=compress.GradualPruning(0.5)).fit(X, verbose=0)
    path = os.path.join(tmp_path, "m.aerec")
    model.save(path)
    from aerec.io import read_model_file, save_arrays
    _, header, arrays = read_model_file(path)
    key = next(k for k in arrays if k.startswith("mask."))
    arrays[key] = arrays[key].copy()
    arrays[key].flat[0] = 2
    header = {k: v for k, v in header.items() if k not in ("format", "format_version", "sha256")}
    header["class"] = "MultDAE"
    bad = os.path.join(tmp_path, "bad.aerec")
    # the schema's value check: the writer refuses what the reader would refuse
    with pytest.raises(ValueError, match="0 \\(pruned\\) or 1"):
        save_arrays(bad, header, arrays)


# ---- unit pruning and fine-tuning ---------------------------------------------------------------------
@pytest.mark.parametrize("cls", ["MultVAE", "MultDAE", "CDAE"])
def test_prune_units_drops_the_weakest_units_exactly(cls):
    X = _implicit()
    model = getattr(aerec, cls)(hidden=(20,), latent=10, epochs=2, backend="numpy", random_state=3).fit(X, verbose=0)
    # zero the incoming and outgoing weights of some units: they score 0, so unit pruning drops
    # exactly those, and (no outgoing weight) the outputs do not change
    p = model.net_.get_params()
    spec = model.spec_
    dead = {1: [0, 5, 7, 11, 19, 3], 2: [2, 3, 9], 3: [1, 4, 6, 8, 13, 17]}  # 30% of 20 and of 10
    for h, units in dead.items():
        cols = list(units)
        if spec["variational"] and h - 1 == spec["encoder_depth"] - 1:
            cols += [u + spec["layer_sizes"][h] for u in units]  # mu and logvar
        p[2 * (h - 1)][:, cols] = 0
        p[2 * h][units, :] = 0
    model.net_.set_params(p)
    model._index = None
    before = model.score_items(np.arange(20))
    small = compress.prune_units(model, 0.3)
    assert small.spec_["layer_sizes"] == (80, 14, 7, 14, 80)
    assert small.hidden == (14,) and small.latent == 7
    np.testing.assert_allclose(small.score_items(np.arange(20)), before, rtol=1e-5, atol=1e-5)
    # a normal model: it saves, reloads, trains
    assert model.spec_["layer_sizes"] == (80, 20, 10, 20, 80)  # the input is untouched
    tuned = compress.fine_tune(small, None, X, epochs=2)
    assert len(tuned.history_["loss"]) == 4 and tuned.net_.step == small.net_.step + 2 * -(-120 // tuned.batch_size_)


def test_prune_units_keeps_optimizer_state_and_autorec_autoencoder():
    X = _implicit()
    m = aerec.MultDAE(hidden=(12,), latent=6, epochs=2, backend="numpy").fit(X, verbose=0)
    small = compress.prune_units(m, 0.5)
    st_ = small.net_.get_optimizer_state()
    assert int(st_["step"]) == int(m.net_.get_optimizer_state()["step"])
    assert st_["m_W0"].shape == (80, 6) and st_["v_W1"].shape == (6, 3)
    rng = np.random.default_rng(0)
    R = _implicit(60, 40)
    R.data[:] = rng.integers(1, 6, R.nnz)
    a = aerec.AutoRec(hidden=10, epochs=2, backend="numpy").fit(R, verbose=0)
    sa = compress.prune_units(a, 0.3)
    assert sa.hidden == 7 and sa.spec_["layer_sizes"] == (a.spec_["layer_sizes"][0], 7, a.spec_["layer_sizes"][0])
    assert np.isfinite(compress.fine_tune(sa, None, R, epochs=1).predict_ratings([0, 1], [0, 1])).all()
    x = rng.random((50, 9)).astype(np.float32)
    ae = aerec.Autoencoder(hidden=(8, 2, 8), backend="numpy").fit(x, epochs=2, verbose=0)
    se = compress.prune_units(ae, 0.5)
    assert se.hidden == (4, 1, 4)
    assert compress.fine_tune(se, None, x, epochs=1).epochs_trained_ == 3
    with pytest.raises(ValueError, match="sparsity must be in"):
        compress.prune_units(m, 1.0)
    with pytest.raises(RuntimeError, match="not fitted"):
        compress.prune_units(aerec.MultVAE(), 0.5)
    with pytest.raises(TypeError, match="no trainable network"):
        compress.prune_units(aerec.EASE().fit(X), 0.5)


def test_fine_tune_is_masked_continuation():
    """fine_tune == setting the masks on the live network and training on: same weights."""
    X = _implicit()
    m = aerec.MultVAE(hidden=(16,), latent=8, epochs=3, backend="numpy").fit(X, verbose=0)
    masks = compress.magnitude_masks(m, 0.6)
    tuned = compress.fine_tune(m, masks, X, epochs=2)
    assert compress.sparsity_of(m) == 0.0  # the input model is not modified
    ref = numpy_.Network(m.spec_, m.net_.get_params())
    ref.set_optimizer_state(m.net_.get_optimizer_state())
    ref.set_masks(masks)
    from aerec.models.base import derive_seed
    Xb = m._binary(X)
    for epoch in (3, 4):
        ref.train_epoch(Xb, Xb, batch_size=m.batch_size_, seed=derive_seed(m.seed_, 1, epoch) % (2 ** 63))
    for a, b in zip(tuned.net_.get_params(), ref.get_params()):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="same users x items"):
        compress.fine_tune(m, masks, X[:10], epochs=1)
    with pytest.raises(ValueError, match="expected 4 masks"):
        compress.fine_tune(m, masks[:2], X, epochs=1)


@pytest.mark.parametrize("name", ["MultVAE", "AutoRec", "Autoencoder"])
def test_fine_tune_with_a_gradual_schedule(name):
    """fine_tune(..., pruning=GradualPruning(s, begin=0, end=0.6)): the masks grow over the
    fine-tune's own epochs (no prior masks) and end at s; the pruned weights are exactly 0."""
    X = _implicit()
    if name == "MultVAE":
        m = aerec.MultVAE(hidden=(16,), latent=8, epochs=2, backend="numpy").fit(X, verbose=0)
        data = X
    elif name == "AutoRec":
        R = X.astype(np.float32) * 4
        m = aerec.AutoRec(hidden=8, epochs=2, backend="numpy").fit(R, verbose=0)
        data = R
    else:
        data = np.random.default_rng(0).random((64, 10)).astype(np.float32)
        m = aerec.Autoencoder(hidden=(6,), backend="numpy").fit(data, epochs=2, verbose=0)
    g = compress.fine_tune(m, None, data, epochs=5, pruning=compress.GradualPruning(0.5, begin=0.0, end=0.6))
    assert compress.sparsity_of(m) == 0.0
    assert abs(compress.sparsity_of(g) - 0.5) < 0.02
    steps = [s for _, s in g.pruning_steps_]
    assert steps == sorted(steps) and steps[-1] == pytest.approx(compress.sparsity_of(g)) and len(steps) >= 3
    for W, mask in zip(g.net_.get_params()[0::2], g.net_.get_masks()):
        if mask is not None:
            assert not np.asarray(W)[~np.asarray(mask, bool)].any()
    assert getattr(m, "pruning", None) is None or not isinstance(m.pruning, compress.GradualPruning)


def test_check_masks_returns_bool_copies():
    spec = net_spec("mse")
    shapes = param_shapes(spec)
    m = np.ones(shapes[0], np.uint8)
    out = check_masks(spec, [m, None, None, None])
    assert out[0].dtype == np.bool_ and out[0].flags.c_contiguous and out[0] is not m
    assert check_masks(spec, None) == [None] * 4

"""aerec.distributed: the engine contract data-parallel training rests on (every backend), MPI
training under ``mpiexec -n 2`` (equivalence with one process, EASE, faults), Dask batch scoring.

The MPI tests need mpi4py and an ``mpiexec`` (``pip install 'aerec[mpi]'``), the Dask tests
dask, distributed and pyarrow (``aerec[dask]``); without them they skip, saying so.
"""
import os
import pathlib
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
import scipy.sparse as sp

import aerec
from aerec.backends import get
from aerec.nn.spec import init_params, make_spec

HERE = pathlib.Path(__file__).parent
SCRIPT = HERE / "distributed" / "mpi_fit.py"
PYTHONPATH = str(HERE.parent / "python")
BACKENDS = [b for b in ("numpy", "cpp", "numba") if b in aerec.backends.available()]


def _csr(n, m, seed, density=0.15):
    X = sp.random(n, m, density=density, format="csr", random_state=seed, dtype=np.float32)
    X.data[:] = 1.0
    return X


SPECS = {
    "vae": dict(layer_sizes=(30, 12, 5, 12, 30), variational=True, dropout=0.5, normalize_input=True,
                loss="multinomial", anneal_steps=7),
    "dae-l2-lazy": dict(layer_sizes=(30, 9, 30), dropout=0.3, normalize_input=True, loss="multinomial",
                        l2=0.01, lazy=True),
    "cdae": dict(layer_sizes=(30, 6, 30), activations=("sigmoid", "sigmoid"), dropout=0.2, loss="logistic",
                 negative_samples=2, n_users=41, l2=1e-3),
    "cdae-lazy-sgd": dict(layer_sizes=(30, 6, 30), activations=("sigmoid", "sigmoid"), loss="logistic",
                          n_users=41, lazy=True, optimizer="sgd", momentum=0.9, learning_rate=0.05),
    "autorec": dict(layer_sizes=(30, 7, 30), activations=("sigmoid", "identity"), loss="masked_mse",
                    dropout=(0.2, 0.1), l2=1e-3),
}


def _net(backend, name, seed=3):
    spec = make_spec(**dict(SPECS[name], seed=seed))
    return get(backend).Network(spec, init_params(spec, 0))


def _args(name, X):
    """(x, y, mask, users) of a spec (AutoRec: dense rows and a mask)."""
    users = np.arange(X.shape[0], dtype=np.int32) if SPECS[name].get("n_users") else None
    if name == "autorec":
        D = X.toarray() * np.float32(3.0)
        return D, D, (D != 0).astype(np.float32), users
    return X, X, None, users


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", sorted(SPECS))
def test_gradients_rows_then_apply_is_train_epoch(backend, name):
    """An epoch of gradients(rows=batch) + apply_gradients(grads) over train_epoch's shuffle order is
    train_epoch: the random streams are keyed by the global row ids, the step is the same step."""
    from aerec.backends.numpy_ import shuffle_permutation
    X = _csr(41, 30, 5)
    x, y, mask, users = _args(name, X)
    a, b = _net(backend, name), _net(backend, name)
    bs, seed = 9, 11
    loss_b = b.train_epoch(x, y, mask=mask, batch_size=bs, shuffle=True, seed=seed, users=users)
    order = shuffle_permutation(a.spec["seed"], seed, X.shape[0])
    total = 0.0
    for s in range(0, X.shape[0], bs):
        rows = order[s:s + bs]
        loss, g = a.gradients(x, y, mask=mask, training=True, users=users, rows=rows)
        rows0 = np.unique(X[rows].indices).astype(np.int32)
        a.apply_gradients(g, rows0=rows0, user_rows=None if users is None else np.unique(users[rows]))
        total += loss * rows.size
    assert a.step == b.step == -(-X.shape[0] // bs)
    np.testing.assert_allclose(total / X.shape[0], loss_b, rtol=1e-5)
    for p, q in zip(a.get_params(), b.get_params()):
        np.testing.assert_allclose(p, q, rtol=0, atol=2e-6)


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b != "numpy"])
@pytest.mark.parametrize("name", sorted(SPECS))
def test_gradients_rows_match_reference(backend, name):
    """gradients(rows=) of every backend against the NumPy reference (training draws included)."""
    X = _csr(41, 30, 6)
    x, y, mask, users = _args(name, X)
    rows = np.random.default_rng(0).permutation(41)[:13].astype(np.int64)
    ref, net = _net("numpy", name), _net(backend, name)
    ref.step = net.step = 5
    lr, gr = ref.gradients(x, y, mask=mask, training=True, users=users, rows=rows)
    ln, gn = net.gradients(x, y, mask=mask, training=True, users=users, rows=rows)
    np.testing.assert_allclose(ln, lr, rtol=1e-5)
    for p, q in zip(gn, gr):
        np.testing.assert_allclose(p, q, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", sorted(SPECS))
def test_gradients_out_writes_every_element(backend, name):
    """gradients(out=) writes every element of ``out`` (prefilled with NaN: the C++ engine writes the
    gradients there directly, W0's row-sparse one densified in place) and equals the returned
    tensors of the call without out, bitwise; the views it returns are views of ``out``."""
    X = _csr(37, 30, 8)
    x, y, mask, users = _args(name, X)
    rows = np.random.default_rng(1).permutation(37)[:11].astype(np.int64)
    a, b = _net(backend, name), _net(backend, name)
    a.step = b.step = 3
    out = np.full(a.n_params, np.nan, np.float32)
    for _ in range(2):  # a second call into the same buffer (what the data-parallel step does)
        la, views = a.gradients(x, y, mask=mask, training=True, users=users, rows=rows, out=out)
        lb, g = b.gradients(x, y, mask=mask, training=True, users=users, rows=rows)
        assert la == lb
        np.testing.assert_array_equal(out, np.concatenate([t.ravel() for t in g]))
        for v, t in zip(views, g):
            assert np.shares_memory(v, out) and v.shape == t.shape
        out[::7] = np.nan


@pytest.mark.parametrize("backend", BACKENDS)
def test_get_params_flat_into_out(backend):
    """get_params_flat(lo, hi, out=) fills and returns the caller's buffer (no new array); a buffer
    of the wrong size, dtype or layout is rejected with the fix in the message."""
    net = _net(backend, "vae")
    n = net.n_params
    want = np.concatenate([p.ravel() for p in net.get_params()])
    for lo, hi in ((0, n), (7, 300), (n - 5, n), (9, 9)):
        buf = np.full(hi - lo, np.nan, np.float32)
        got = net.get_params_flat(lo, hi, out=buf)
        assert got is buf
        np.testing.assert_array_equal(buf, want[lo:hi])
    with pytest.raises(ValueError, match="elements"):
        net.get_params_flat(0, 10, out=np.empty(11, np.float32))
    with pytest.raises(TypeError, match="float32"):
        net.get_params_flat(0, 10, out=np.empty(10, np.float64))
    with pytest.raises(ValueError, match="C-contiguous"):
        net.get_params_flat(0, 10, out=np.empty(20, np.float32)[::2])
    ro = np.empty(10, np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="writable"):
        net.get_params_flat(0, 10, out=ro)


@pytest.mark.parametrize("backend", BACKENDS)
def test_apply_gradients_equals_train_batch(backend):
    X = _csr(20, 30, 7)
    for name in ("vae", "dae-l2-lazy", "cdae"):
        x, y, mask, users = _args(name, X)
        a, b = _net(backend, name), _net(backend, name)
        la, g = a.gradients(x, y, mask=mask, training=True, users=users)
        a.apply_gradients(g, rows0=np.unique(X.indices).astype(np.int32),
                          user_rows=None if users is None else np.unique(users))
        lb = b.train_batch(x, y, mask=mask, users=users)
        assert la == pytest.approx(lb, rel=1e-6)
        for p, q in zip(a.get_params(), b.get_params()):
            np.testing.assert_allclose(p, q, rtol=0, atol=1e-6)


def _state_flat(net):
    """The optimizer state as one flat array per slot (tensor order)."""
    from aerec.nn.spec import tensor_names
    st = net.get_optimizer_state()
    slots = sorted({k.split("_", 1)[0] for k in st if k != "step"})
    return {s: np.concatenate([np.asarray(st[f"{s}_{t}"]).ravel() for t in tensor_names(net.spec)]) for s in slots}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", sorted(SPECS))
def test_apply_gradients_flat_range_is_the_full_step_on_the_block(backend, name):
    """apply_gradients(flat_range=(lo, hi)) moves the block [lo, hi) of the flat parameters (and
    their optimizer state) exactly as the full step moves them (lazy rows included), nothing else;
    blocks cut inside W0's rows, across tensors, empty and whole. get/set_params_flat round-trip."""
    X = _csr(23, 30, 9)
    x, y, mask, users = _args(name, X)
    rng = np.random.default_rng(4)
    full = _net(backend, name)
    n = full.n_params
    assert n == sum(p.size for p in full.get_params())
    flat0 = np.concatenate([p.ravel() for p in full.get_params()])
    np.testing.assert_array_equal(full.get_params_flat(0, n), flat0)
    rows0 = np.unique(X[:11].indices).astype(np.int32)
    urows = None if users is None else np.arange(0, 11, dtype=np.int32)
    # two steps: the second one's moments are non-zero, so an untouched row's decay shows
    steps = []
    for _ in range(2):
        g = full.gradients(x, y, mask=mask, training=True, users=users, rows=np.arange(11, dtype=np.int64))[1]
        steps.append(np.concatenate([a.ravel() for a in g]).astype(np.float32))
    before = _net(backend, name)
    before.apply_gradients(steps[0], rows0=rows0, user_rows=urows)
    full.apply_gradients(steps[0], rows0=rows0, user_rows=urows)
    full.apply_gradients(steps[1], rows0=rows0, user_rows=urows)
    want, want_st = full.get_params_flat(0, n), _state_flat(full)
    was, was_st = before.get_params_flat(0, n), _state_flat(before)
    c0 = full.spec["layer_sizes"][1]
    cuts = sorted({0, n, 7 * c0 + 3, 7 * c0 + 3 + c0 // 2, int(rng.integers(1, n)), int(rng.integers(1, n))})
    for lo, hi in list(zip(cuts[:-1], cuts[1:])) + [(5, 5), (0, n)]:
        part = _net(backend, name)
        part.apply_gradients(steps[0], rows0=rows0, user_rows=urows)
        # only the block of the gradient is read: NaN outside it must not reach anything
        g1 = np.full(n, np.nan, np.float32)
        g1[lo:hi] = steps[1][lo:hi]
        part.apply_gradients(g1, rows0=rows0, user_rows=urows, flat_range=(lo, hi))
        assert part.step == full.step
        got, got_st = part.get_params_flat(0, n), _state_flat(part)
        np.testing.assert_array_equal(got[lo:hi], want[lo:hi])
        np.testing.assert_array_equal(np.delete(got, np.arange(lo, hi)), np.delete(was, np.arange(lo, hi)))
        for s in want_st:
            np.testing.assert_array_equal(got_st[s][lo:hi], want_st[s][lo:hi])
            np.testing.assert_array_equal(np.delete(got_st[s], np.arange(lo, hi)),
                                          np.delete(was_st[s], np.arange(lo, hi)))
    # the flat accessors: a block written is the block read, the rest unchanged
    vals = rng.standard_normal(9).astype(np.float32)
    full.set_params_flat(c0 - 4, vals)
    np.testing.assert_array_equal(full.get_params_flat(c0 - 4, c0 + 5), vals)
    np.testing.assert_array_equal(np.delete(full.get_params_flat(0, n), np.arange(c0 - 4, c0 + 5)),
                                  np.delete(want, np.arange(c0 - 4, c0 + 5)))
    with pytest.raises(IndexError, match="flat"):
        full.get_params_flat(0, n + 1)
    with pytest.raises(IndexError, match="flat"):
        full.set_params_flat(n - 2, vals)
    with pytest.raises(TypeError, match="float32"):
        full.set_params_flat(0, vals.astype(np.float64))
    with pytest.raises(IndexError, match="flat_range"):
        full.apply_gradients(steps[0], rows0=rows0, user_rows=urows, flat_range=(3, 2))
    with pytest.raises(TypeError, match="flat_range"):
        full.apply_gradients(steps[0], rows0=rows0, user_rows=urows, flat_range=5)
    assert full.step == 2


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", sorted(SPECS))
def test_gradients_w0_rows_flags_the_rows_written(backend, name):
    """gradients(out=, w0_rows=): the rows flagged 1 are written as without the flags (bitwise), the
    flags are the rows the batch's CSR rows touch (every row for a dense x), and the gradient of
    every row flagged 0 is exactly l2 * W0's row (what the C++ engine leaves unwritten)."""
    X = _csr(37, 30, 8)
    x, y, mask, users = _args(name, X)
    rows = np.random.default_rng(2).permutation(37)[:9].astype(np.int64)
    a, b = _net(backend, name), _net(backend, name)
    a.step = b.step = 2
    n_in = a.spec["layer_sizes"][0]
    for _ in range(2):
        out = np.full(a.n_params, np.nan, np.float32)
        flags = np.full(n_in, 7, np.uint8)
        la, _ = a.gradients(x, y, mask=mask, training=True, users=users, rows=rows, out=out, w0_rows=flags)
        lb, g = b.gradients(x, y, mask=mask, training=True, users=users, rows=rows)
        assert la == lb
        want = np.zeros(n_in, np.uint8)
        if sp.issparse(x):
            want[np.unique(X[rows].indices)] = 1
        else:
            want[:] = 1
        np.testing.assert_array_equal(flags, want)
        full = np.concatenate([t.ravel() for t in g])
        c0 = g[0].shape[1]
        keep = np.ones(a.n_params, bool)
        keep[:n_in * c0] = np.repeat(flags == 1, c0)
        np.testing.assert_array_equal(out[keep], full[keep])
        W0 = a.get_params()[0]
        np.testing.assert_array_equal(g[0][flags == 0], np.float32(a.spec["l2"]) * W0[flags == 0])
        a.step += 1
        b.step += 1
    with pytest.raises(ValueError, match="needs out"):
        a.gradients(x, y, mask=mask, users=users, rows=rows, w0_rows=np.zeros(n_in, np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        a.gradients(x, y, mask=mask, users=users, rows=rows, out=np.zeros(a.n_params, np.float32),
                    w0_rows=np.zeros(n_in, np.int32))


def _parts(net, x, y, mask, users, splits):
    """Each split's gradient (flat, NaN-prefilled, W0's untouched rows unwritten) and its flags."""
    parts, flags = [], []
    for rows in splits:
        out = np.full(net.n_params, np.nan, np.float32)
        f = np.zeros(net.spec["layer_sizes"][0], np.uint8)
        net.gradients(x, y, mask=mask, training=True, users=users, rows=rows, out=out, w0_rows=f)
        parts.append(out)
        flags.append(f)
    return parts, flags


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", sorted(SPECS))
def test_apply_gradient_sum_is_apply_gradients_of_the_scaled_sum(backend, name):
    """apply_gradient_sum(parts, scales, flat_range=, w0_rows=) is apply_gradients(flat_range=) of
    the scaled sum the message path forms (``scaled_sum``: own part first, then the others in
    order), bit for bit: W0's rows flagged 0 are neither read (NaN there) nor different (l2 W0 /
    +0 summed in their place); 2 and 3 parts, blocks cut inside W0's rows and across tensors."""
    from aerec.distributed._mpi import scaled_sum
    X = _csr(40, 30, 10)
    x, y, mask, users = _args(name, X)
    order = np.random.default_rng(5).permutation(40).astype(np.int64)
    lazy = SPECS[name].get("lazy", False)
    rows0 = np.unique(X[order[:24]].indices).astype(np.int32) if lazy else None
    urows = np.unique(users[order[:24]]).astype(np.int32) if lazy and users is not None else None
    first = _net(backend, name).gradients(x, y, mask=mask, training=True, users=users, rows=order[24:])[1]

    def stepped():  # one step first: the moments are non-zero (and W0 is not the initial one)
        net = _net(backend, name)
        net.apply_gradients(first, rows0=rows0, user_rows=urows)
        return net
    for k in (2, 3):
        splits = np.array_split(order[:24], k)
        parts, flags = _parts(stepped(), x, y, mask, users, splits)
        plain = stepped()
        dense = [np.concatenate([t.ravel() for t in plain.gradients(
            x, y, mask=mask, training=True, users=users, rows=r)[1]]) for r in splits]
        scales = np.array([r.size / 24 for r in splits])
        n = parts[0].size
        c0 = plain.spec["layer_sizes"][1]
        for lo, hi in ((0, n), (0, 7 * c0 + 3), (7 * c0 + 3, n), (5 * c0, n - 11)):
            want, got = stepped(), stepped()
            summed = dense[0][lo:hi].copy()
            tmp = np.empty(5, np.float32)
            scaled_sum(summed, np.float32(scales[0]), dense[1][lo:hi], np.float32(scales[1]), tmp)
            for q in range(2, k):
                scaled_sum(summed, None, dense[q][lo:hi], np.float32(scales[q]), tmp)
            g = np.full(n, np.nan, np.float32)
            g[lo:hi] = summed
            want.apply_gradients(g, rows0=rows0, user_rows=urows, flat_range=(lo, hi))
            got.apply_gradient_sum(parts, scales, rows0=rows0, user_rows=urows, flat_range=(lo, hi), w0_rows=flags)
            assert got.step == want.step == 2
            np.testing.assert_array_equal(got.get_params_flat(0, n), want.get_params_flat(0, n))
            for s_, v in _state_flat(want).items():
                np.testing.assert_array_equal(_state_flat(got)[s_], v)
    # against the NumPy reference (every backend's optimizer is its float32 arithmetic)
    if backend != "numpy":
        parts_r, flags_r = _parts(_net("numpy", name), x, y, mask, users, splits)
        parts, flags = _parts(_net(backend, name), x, y, mask, users, splits)
        ref, net = _net("numpy", name), _net(backend, name)
        ref.apply_gradient_sum(parts_r, scales, rows0=rows0, user_rows=urows, w0_rows=flags_r)
        net.apply_gradient_sum(parts, scales, rows0=rows0, user_rows=urows, w0_rows=flags)
        for p, q in zip(net.get_params(), ref.get_params()):
            np.testing.assert_allclose(p, q, rtol=0, atol=2e-6)
    net = _net(backend, name)
    with pytest.raises(TypeError, match="non-empty list"):
        net.apply_gradient_sum([], [])
    with pytest.raises(ValueError, match="one finite number per part"):
        net.apply_gradient_sum(parts[:2], [1.0])
    with pytest.raises(ValueError, match="elements"):
        net.apply_gradient_sum([parts[0][:-1]], [1.0])
    with pytest.raises(ValueError, match="one entry per part"):
        net.apply_gradient_sum(parts[:2], [0.5, 0.5], w0_rows=flags[:1])
    assert net.step == 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_bind_params_keeps_the_parameters_in_the_buffer(backend):
    """bind_params(buf): the parameters live in ``buf`` (copied in; copy=False takes its values):
    training, set_params and set_params_flat write there, reads see writes made to it from
    outside (another rank's step), and training bound gives the bits of training unbound;
    unbind_params copies them back into the network's own storage. Bad buffers are refused."""
    X = _csr(30, 30, 11)
    a, b = _net(backend, "vae"), _net(backend, "vae")
    n = a.n_params
    buf = np.full(n, np.nan, np.float32)
    a.bind_params(buf)
    assert a.params_bound and not b.params_bound
    np.testing.assert_array_equal(buf, b.get_params_flat(0, n))
    for net in (a, b):
        net.train_epoch(X, X, batch_size=8, seed=1)
    np.testing.assert_array_equal(buf, b.get_params_flat(0, n))
    np.testing.assert_array_equal(a.get_params_flat(0, n), b.get_params_flat(0, n))
    # a write from outside (the rank that owns that block) is what the network computes with
    buf[:5] += np.float32(0.25)
    b.set_params_flat(0, buf[:5].copy())
    np.testing.assert_array_equal(a.get_params()[0].ravel()[:5], buf[:5])
    np.testing.assert_allclose(a.forward(X[:4]), b.forward(X[:4]), rtol=0, atol=0)
    p = [t + np.float32(1) for t in b.get_params()]
    a.set_params(p)
    np.testing.assert_array_equal(buf, np.concatenate([t.ravel() for t in p]))
    a.set_params_flat(3, np.ones(4, np.float32))
    np.testing.assert_array_equal(buf[3:7], 1)
    # copy=False: the buffer's values are taken
    c = _net(backend, "vae")
    c.bind_params(buf, copy=False)
    np.testing.assert_array_equal(c.get_params_flat(0, n), buf)
    a.unbind_params()
    c.unbind_params()
    assert not a.params_bound and not c.params_bound
    kept = buf.copy()
    buf[:] = np.nan
    np.testing.assert_array_equal(a.get_params_flat(0, n), kept)
    np.testing.assert_array_equal(c.get_params_flat(0, n), kept)
    a.unbind_params()  # no-op
    with pytest.raises(ValueError, match="elements"):
        a.bind_params(np.zeros(n + 1, np.float32))
    with pytest.raises(TypeError, match="float32"):
        a.bind_params(np.zeros(n, np.float64))
    ro = np.zeros(n, np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="writable"):
        a.bind_params(ro)
    assert not a.params_bound


@pytest.mark.parametrize("backend", BACKENDS)
def test_rows_and_gradients_bad_input(backend):
    X = _csr(10, 30, 8)
    net = _net(backend, "vae")
    with pytest.raises(TypeError, match="int64"):
        net.gradients(X, X, rows=np.arange(3, dtype=np.int32))
    with pytest.raises(IndexError, match=r"\[0, 10\)"):
        net.gradients(X, X, rows=np.array([0, 10], np.int64))
    with pytest.raises(ValueError, match="no rows"):
        net.gradients(X, X, rows=np.zeros(0, np.int64))
    g = net.gradients(X, X)[1]
    with pytest.raises(ValueError, match="gradient arrays"):
        net.apply_gradients(g[:-1])
    with pytest.raises(ValueError, match="shape"):
        net.apply_gradients([g[0][:-1]] + g[1:])
    lazy = _net(backend, "dae-l2-lazy")
    g = lazy.gradients(X, X)[1]
    with pytest.raises(TypeError, match="int32"):
        lazy.apply_gradients(g, rows0=np.arange(3, dtype=np.int64))
    with pytest.raises(IndexError, match="rows0"):
        lazy.apply_gradients(g, rows0=np.array([30], np.int32))
    assert lazy.step == 0


def test_package_works_without_the_extras():
    """aerec.distributed imports without mpi4py / dask; asking for them says what to install."""
    code = ("import sys; sys.modules['mpi4py'] = None; sys.modules['dask'] = None\n"
            "import numpy as np, scipy.sparse as sp, aerec, aerec.distributed as d\n"
            "assert d.rank() == 0 and d.size() == 1\n"
            "X = sp.random(30, 20, density=0.2, format='csr', random_state=0, dtype=np.float32)\n"
            "for call in (lambda: aerec.MultDAE(hidden=(8,), latent=4, epochs=1).fit(X, distributed='mpi'),\n"
            "             lambda: d.recommend_dask('m.npz', None, client='local:1')):\n"
            "    try:\n"
            "        call()\n"
            "    except ImportError as e:\n"
            "        assert 'aerec[' in str(e), e\n"
            "    else:\n"
            "        raise AssertionError('no ImportError')\n"
            "from aerec.cli import main\n"
            "assert main(['recommend', 'm.npz', '--all', '--output', 'recs', '--dask', 'local:1']) == 2\n")
    env = dict(os.environ, PYTHONPATH=PYTHONPATH)
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "aerec: error:" in r.stderr and "aerec[dask]" in r.stderr  # the CLI: one line, no traceback


# ---- MPI -------------------------------------------------------------------------------------------

def _mpiexec():
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return None
    exe = shutil.which("mpiexec") or shutil.which("mpiexec", path=str(pathlib.Path(sys.executable).parent))
    return exe


MPIEXEC = _mpiexec()
needs_mpi = pytest.mark.skipif(MPIEXEC is None, reason="needs mpi4py and mpiexec: pip install 'aerec[mpi]'")


def _run(args, n=None, timeout=120, env=None):
    cmd = ([MPIEXEC, "-n", str(n)] if n else []) + [sys.executable, str(SCRIPT)] + [str(a) for a in args]
    e = dict(os.environ, PYTHONPATH=PYTHONPATH, OMP_NUM_THREADS="1", AEREC_NUM_THREADS="1")
    e.update(env or {})
    t0 = time.monotonic()
    r = subprocess.run(cmd, env=e, capture_output=True, text=True, timeout=timeout)
    return r, time.monotonic() - t0


def _fit_pair(tmp_path, model, batch, epochs=1, shard="1", n=2, shm="1", env_extra=None):
    one, two = tmp_path / "one.npz", tmp_path / "two.npz"
    r, _ = _run([model, one, "single", batch, "--epochs", epochs], env=env_extra)
    assert r.returncode == 0, r.stderr
    r, _ = _run([model, two, "mpi", batch, "--epochs", epochs], n=n,
                env=dict(env_extra or {}, AEREC_MPI_CHECK="1", AEREC_MPI_SHARD=shard, AEREC_MPI_SHM=shm))
    assert r.returncode == 0, r.stdout + r.stderr
    return np.load(one), np.load(two)


@needs_mpi
@pytest.mark.parametrize("model,epochs", [("MultVAE", 1), ("MultDAE", 1), ("CDAE", 2), ("AutoRec", 2),
                                          ("Autoencoder", 2)])
def test_two_ranks_equal_one_process(tmp_path, model, epochs):
    """2 ranks x ~250 rows of each global batch of 500 == 1 process x batch 500: same seed, same
    global batch order; parameters to float32 reduction order, validation NDCG@100 to 1e-4."""
    a, b = _fit_pair(tmp_path, model, 500 if model.startswith("Mult") else 50 if model == "Autoencoder" else 100,
                     epochs)
    assert sorted(a.files) == sorted(b.files)
    params = [k for k in a.files if k.startswith("p")]
    assert params
    for key in params:
        np.testing.assert_allclose(b[key], a[key], rtol=0, atol=2e-5, err_msg=key)
    np.testing.assert_allclose(b["h_loss"], a["h_loss"], rtol=1e-5)
    if "h_val_loss" in a.files:
        np.testing.assert_allclose(b["h_val_loss"], a["h_val_loss"], rtol=1e-5)
    if "ndcg" in a.files:
        assert abs(float(a["ndcg"]) - float(b["ndcg"])) <= 1e-4
        assert abs(a["h_val_ndcg@100"][-1] - b["h_val_ndcg@100"][-1]) <= 1e-4
    # the sharded optimizer step (ZeRO 1) is the default except with per-user vectors (CDAE)
    assert bool(b["sharded"]) == (model != "CDAE")
    _same_optimizer_state(a, b)


def _same_optimizer_state(a, b):
    """The optimizer state rank 0 ends with (gathered from every block's owner when sharded)
    is the one process's, to float32 reduction order."""
    keys = [k for k in a.files if k.startswith("s_")]
    assert keys and sorted(keys) == sorted(k for k in b.files if k.startswith("s_"))
    for key in keys:
        x, y = a[key], b[key]
        np.testing.assert_allclose(y, x, rtol=1e-3, atol=1e-5 * max(float(np.abs(x).max()), 1e-12) + 1e-9,
                                   err_msg=key)


@needs_mpi
@pytest.mark.parametrize("shard,shm,n", [("1", "1", 2), ("1", "0", 2), ("0", "1", 2), ("1", "1", 3), ("1", "0", 3)])
@pytest.mark.parametrize("model", ["MultVAE", "MultDAE"])
def test_sharded_and_replicated_steps_equal_one_process(tmp_path, model, shard, shm, n):
    """Both data-parallel steps, the sharded one (reduce-scatter, each rank steps its block of the
    flat parameters, all-gather; AEREC_MPI_SHARD=1; 3 ranks: blocks of unequal sizes, two
    exchange rounds; through MPI shared memory, the default on one node, or by messages,
    AEREC_MPI_SHM=0) and the replicated one (Allreduce, every rank steps everything; 0), over 2
    epochs: the one process's parameters, losses, NDCG@100 and optimizer state; the ranks'
    parameters bitwise equal (AEREC_MPI_CHECK)."""
    a, b = _fit_pair(tmp_path, model, 500, 2, shard=shard, n=n, shm=shm)
    assert bool(b["sharded"]) == (shard == "1")
    assert bool(b["shared_memory"]) == (shard == "1" and shm == "1")
    assert bool(b["shared_params"]) == (shard == "1" and shm == "1")
    for key in [k for k in a.files if k.startswith("p")]:
        np.testing.assert_allclose(b[key], a[key], rtol=0, atol=2e-5, err_msg=key)
    np.testing.assert_allclose(b["h_loss"], a["h_loss"], rtol=1e-5)
    assert abs(float(a["ndcg"]) - float(b["ndcg"])) <= 1e-4
    _same_optimizer_state(a, b)


@needs_mpi
def test_shared_memory_step_on_the_reference_backend(tmp_path):
    """The shared-memory sharded step on the NumPy reference backend (its bind_params,
    gradients(w0_rows=) and apply_gradient_sum): 2 ranks equal one process, the ranks' networks on
    the one shared parameter block, each back on a copy of its own after fit."""
    a, b = _fit_pair(tmp_path, "MultDAE", 500, 1, env_extra={"AEREC_TEST_BACKEND": "numpy"})
    assert bool(b["shared_params"])
    for key in [k for k in a.files if k.startswith("p")]:
        np.testing.assert_allclose(b[key], a[key], rtol=0, atol=2e-5, err_msg=key)
    np.testing.assert_allclose(b["h_loss"], a["h_loss"], rtol=1e-5)
    _same_optimizer_state(a, b)


@needs_mpi
def test_ease_distributed_gram_equals_single(tmp_path):
    a, b = _fit_pair(tmp_path, "EASE", 1)
    np.testing.assert_allclose(b["p0"], a["p0"], rtol=1e-5, atol=1e-6)
    assert abs(float(a["ndcg"]) - float(b["ndcg"])) <= 1e-4


@needs_mpi
def test_raise_on_a_rank_fails_every_rank_naming_it(tmp_path):
    r, took = _run(["MultVAE", tmp_path / "x.npz", "mpi", 100, "--epochs", 2, "--fail-rank", 1,
                    "--fail-step", 2], n=2)
    assert r.returncode != 0
    out = r.stdout + r.stderr
    # both ranks raise RankFailedError naming rank 1 and its error
    assert out.count("RankFailedError: distributed training failed on rank 1") == 2, out
    # and each rank's network has left the job's shared parameters (a copy of its own)
    assert out.count("params_bound after the failure: False") == 2, out
    assert "injected failure at step 2" in out
    assert took < 30


@needs_mpi
def test_killed_rank_ends_the_job(tmp_path):
    r, took = _run(["MultVAE", tmp_path / "x.npz", "mpi", 100, "--epochs", 2, "--fail-rank", 1,
                    "--fail-step", 2, "--fail-how", "kill"], n=2, timeout=60)
    assert r.returncode != 0
    out = r.stdout + r.stderr
    assert "Killed (signal 9)" in out or "signal 9" in out, out
    # the launcher names a pid and aerec printed which rank each pid is. mpich's report names the
    # killed rank 1 or, when its clean-up of rank 0 is seen first, rank 0 (seen in 2 of ~10 full
    # runs): either way the pid is one of this job's, and the map says which rank it was
    pids = dict(p.split("=") for p in out.split("pid of each rank: ")[1].split(")")[0].split(", "))
    assert set(pids) == {"0", "1"}, out
    assert any(f"PID {pid}" in out for pid in pids.values()), out
    assert took < 30


@needs_mpi
def test_rank0_callback_error_aborts_the_job(tmp_path):
    r, took = _run(["MultVAE", tmp_path / "x.npz", "mpi", 100, "--epochs", 2, "--fail-rank", 0,
                    "--fail-how", "callback"], n=2, timeout=60)
    assert r.returncode != 0
    out = r.stdout + r.stderr
    assert "rank 0/2 raised outside a collective point" in out and "injected failure in a rank-0 callback" in out
    assert took < 30


@needs_mpi
def test_stuck_rank_times_out(tmp_path):
    r, took = _run(["MultVAE", tmp_path / "x.npz", "mpi", 100, "--epochs", 2, "--fail-rank", 1,
                    "--fail-how", "hang"], n=2, timeout=60, env={"AEREC_MPI_TIMEOUT": "4"})
    assert r.returncode != 0
    # rank 0 waits in step 2's first collective for the hung rank 1, then aborts the job
    assert "rank 0/2: training step 2 waited more than 4 s" in r.stderr, r.stderr
    assert took < 30


@needs_mpi
def test_cli_train_distributed(tmp_path):
    out = tmp_path / "m.npz"
    cmd = [MPIEXEC, "-n", "2", sys.executable, "-m", "aerec", "train", "--model", "MultDAE", "--users", "400",
           "--items", "100", "--density", "0.05", "--epochs", "2", "--heldout-users", "40", "-o", str(out),
           "--distributed", "mpi"]
    env = dict(os.environ, PYTHONPATH=PYTHONPATH, AEREC_NUM_THREADS="1")
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("saved to") == 1  # rank 0 only
    assert aerec.load(str(out)).history_["loss"]


# ---- Dask ------------------------------------------------------------------------------------------

def _has_dask():
    try:
        import dask.dataframe  # noqa: F401
        import distributed  # noqa: F401
        import pyarrow  # noqa: F401
    except ImportError:
        return False
    return True


needs_dask = pytest.mark.skipif(not _has_dask(), reason="needs dask, distributed, pyarrow: pip install 'aerec[dask]'")


@pytest.fixture(scope="module")
def dask_client():
    if not _has_dask():
        pytest.skip("needs dask, distributed, pyarrow: pip install 'aerec[dask]'")
    from distributed import Client, LocalCluster
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = PYTHONPATH + (os.pathsep + old if old else "")  # the workers import aerec
    try:
        cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0")
    finally:
        if old is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = old
    client = Client(cluster)
    yield client
    client.close()
    cluster.close()


@pytest.fixture(scope="module")
def raw_model(tmp_path_factory):
    import pandas as pd
    from aerec import data
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"user": rng.integers(0, 300, 6000) * 7 + 3,
                       "item": [f"i{v}" for v in rng.zipf(1.3, 6000) % 150]}).drop_duplicates()
    m = aerec.MultDAE(hidden=(16,), latent=8, epochs=2).fit(data.from_dataframe(df, "user", "item"), verbose=0)
    path = tmp_path_factory.mktemp("model") / "m.npz"
    m.save(str(path))
    return m, str(path), df


def _read(folder):
    import pandas as pd
    return pd.read_parquet(folder).sort_values(["user", "rank"]).reset_index(drop=True)


def _expected(model, raw_users, ids, scores):
    import pandas as pd
    rows = []
    for u, i, s in zip(raw_users, ids, scores):
        for r, (item, score) in enumerate(zip(i, s), 1):
            if item is not None:
                rows.append((u, r, item, np.float32(score)))
    return pd.DataFrame(rows, columns=["user", "rank", "item", "score"]).sort_values(["user", "rank"]) \
        .reset_index(drop=True)


def _same(got, exp):
    cols = ["user", "rank", "item"]
    return got[cols].to_numpy().tolist() == exp[cols].to_numpy().tolist()


@needs_dask
def test_dask_scores_every_training_user_like_recommend(dask_client, raw_model, tmp_path):
    from aerec.distributed import recommend_dask
    m, path, _ = raw_model
    res = recommend_dask(path, None, k=10, output=tmp_path / "recs", client=dask_client, partition_size=70)
    assert res["parts"] == 5 and res["users"] == m.train_.shape[0]
    got = _read(tmp_path / "recs")
    raw = list(m.id_maps_[0].raw_ids)
    ids, scores = m.recommend_raw(raw, k=10)
    exp = _expected(m, raw, ids, scores)
    assert _same(got, exp)
    np.testing.assert_allclose(got["score"].to_numpy(), exp["score"].to_numpy(), rtol=1e-6)
    assert got["score"].dtype == np.float32 and res["rows"] == len(got)
    # a list of raw users, and an output folder that already holds parts
    with pytest.raises(ValueError, match="overwrite=True"):
        recommend_dask(path, raw[:5], k=3, output=tmp_path / "recs", client=dask_client)
    recommend_dask(path, raw[:5], k=3, output=tmp_path / "recs", client=dask_client, overwrite=True,
                   filter_seen=False)
    got = _read(tmp_path / "recs")
    ids, scores = m.recommend_raw(raw[:5], k=3, filter_seen=False)
    exp = _expected(m, raw[:5], ids, scores)
    assert _same(got, exp)


@needs_dask
def test_dask_scores_parquet_histories_like_fold_in(dask_client, raw_model, tmp_path):
    import pandas as pd
    from aerec.distributed import recommend_dask
    m, path, df = raw_model
    hist = df[df["user"] % 3 == 0].copy()
    hist["user"] = "new" + hist["user"].astype(str)  # users the model has never seen
    hist = pd.concat([hist, pd.DataFrame({"user": ["new1"], "item": ["unknown-item"]})])
    hist.to_parquet(tmp_path / "hist.parquet")
    res = recommend_dask(path, str(tmp_path / "hist.parquet"), k=5, output=tmp_path / "recs",
                         client=dask_client)
    got = _read(tmp_path / "recs")
    users = sorted(u for u in hist["user"].unique() if u != "new1")
    histories = [hist.loc[hist["user"] == u, "item"].tolist() for u in users]
    ids, scores = m.recommend_raw(history=histories, k=5, ignore_unknown=True)
    exp = _expected(m, users, ids, scores)
    got = got[got["user"] != "new1"].reset_index(drop=True)
    assert _same(got, exp)
    np.testing.assert_allclose(got["score"].to_numpy(), exp["score"].to_numpy(), rtol=1e-5, atol=1e-6)
    assert res["users"] == len(users) + 1


@needs_dask
def test_dask_bad_input(raw_model, tmp_path):
    from aerec.distributed import recommend_dask
    _, path, _ = raw_model
    with pytest.raises(FileNotFoundError, match="model.save"):
        recommend_dask(tmp_path / "nope.npz", None, client="local:1")
    with pytest.raises(ValueError, match="local:N"):
        recommend_dask(path, None, output=tmp_path / "r", client="local:0")
    with pytest.raises(TypeError, match="client"):
        recommend_dask(path, None, output=tmp_path / "r", client=3)


@needs_dask
def test_cli_recommend_dask(raw_model, tmp_path):
    _, path, _ = raw_model
    env = dict(os.environ, PYTHONPATH=PYTHONPATH)
    r = subprocess.run([sys.executable, "-m", "aerec", "recommend", path, "--all", "--output", str(tmp_path / "recs"),
                        "--dask", "local:2", "--k", "4"], env=env, capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr
    assert "Parquet partitions" in r.stdout
    got = _read(tmp_path / "recs")
    m = raw_model[0]
    assert got["rank"].max() == 4 and got["user"].nunique() == m.train_.shape[0]
    r = subprocess.run([sys.executable, "-m", "aerec", "recommend", path, "--all", "--output", "x.csv",
                        "--dask", "local:2"], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "folder" in r.stderr

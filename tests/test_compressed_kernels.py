"""Compressed linear layers (issue 9, kernel half): ``_quant.pack_layer`` / ``unpack_layer`` /
``validate_layer`` and every backend's ``CompressedLinear`` (forward, forward_csr, fused top-k)
against the NumPy reference, at every ISA level of the compiled backend, on random shapes, under
8 threads, and with bad input; plus TopK ``rescore=0``."""
import itertools
import pathlib
import threading

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings, strategies as st

import aerec
from aerec.backends import numpy_
from aerec.backends._numpy_topk import bf16_round, int8_rows
from aerec.backends._quant import (PRECISIONS, bf16_to_float, layer_nbytes, pack_layer, unpack_layer,
                                   validate_layer)
from aerec.search import TopK

HAS_CPP = aerec.backends.available().get("cpp", False)
if HAS_CPP:
    from aerec import _core

ACTS = ("identity", "relu", "sigmoid", "tanh", "elu", "selu")


from _support import isa_levels as _isa_levels  # noqa: E402


#: every available backend, the compiled one at every ISA level this machine runs
ENGINES = [f"{n}-{isa}" if n == "cpp" else n for n, ok in aerec.backends.available().items() if ok
           for isa in (_isa_levels(amx=True) if n == "cpp" else [None])]
CPP_ENGINES = [e for e in ENGINES if e.startswith("cpp")]


def _use(engine):
    name, _, isa = engine.partition("-")
    if isa:
        assert _core.set_isa(isa) == isa
    return aerec.backends.get(name)


@pytest.fixture
def restore_isa():
    before = _core.active_isa() if HAS_CPP else None
    yield
    if HAS_CPP:
        _core.set_isa(before)


def _weights(rng, n_in, n_out, density, zero_cols=True):
    W = rng.standard_normal((n_in, n_out)).astype(np.float32)
    W[rng.random(W.shape) >= density] = 0
    if zero_cols and n_out > 2:
        W[:, rng.integers(0, n_out)] = 0  # an all-zero column (int8 scale 1)
    return W


def _exclusion(rng, n, n_out, all_rows=()):
    rows = []
    for r in range(n):
        if r in all_rows:
            rows.append(np.arange(n_out))
        else:
            c = rng.integers(0, n_out, size=rng.integers(0, 6))  # duplicates allowed
            rows.append(c)
    ptr = np.concatenate([[0], np.cumsum([len(c) for c in rows])]).astype(np.int64)
    idx = np.concatenate(rows).astype(np.int32) if rows else np.zeros(0, np.int32)
    return ptr, idx


def _bound(L_ref, x):
    """Per-element float32 rounding allowance of x @ W + b: 2e-5 * (|x| @ |W| + |b|) + 1e-6 (the
    backends sum the same quantised terms in different orders; every activation's slope is <= 1.76)."""
    W, b = unpack_layer(L_ref._a)
    B = np.abs(x).astype(np.float64) @ np.abs(W).astype(np.float64)
    if b is not None:
        B += np.abs(b)
    return 2e-5 * B + 1e-6


def _close(actual, desired, bound):
    assert actual.shape == desired.shape
    bad = ~(np.abs(actual.astype(np.float64) - desired) <= bound)
    assert not bad.any(), (f"{bad.sum()} of {bad.size} differ beyond float32 rounding, e.g. at "
                           f"{np.argwhere(bad)[0]}: {actual[bad][0]} vs {desired[bad][0]}")


def _check_topk(ids, scores, ref_ids, ref_scores, z, ep, ei, B):
    """ids/scores of a backend against the reference's, up to float rounding of near ties: same
    shape, same padding, sorted scores equal, every returned id valid, not excluded, unique, and
    scored as the reference's full pre-activation z scores it."""
    assert ids.dtype == np.int32 and scores.dtype == np.float32
    assert ids.shape == ref_ids.shape == scores.shape
    np.testing.assert_array_equal(ids == -1, ref_ids == -1)
    for r in range(ids.shape[0]):
        valid = ids[r][ids[r] >= 0]
        nv = len(valid)
        assert np.isneginf(scores[r][nv:]).all() and np.isneginf(ref_scores[r][nv:]).all()
        assert len(set(valid.tolist())) == nv
        if ep is not None:
            assert not set(valid.tolist()) & set(ei[ep[r]:ep[r + 1]].tolist())
        if nv == 0:
            continue
        rowtol = B[r].max()
        _close(scores[r][:nv], ref_scores[r][:nv], rowtol)
        _close(scores[r][:nv], z[r, valid], B[r, valid])
        assert (np.diff(scores[r][:nv]) <= 0).all()
        # where the reference's scores are clearly apart from their neighbours, the ids agree
        s = ref_scores[r][:nv].astype(np.float64)
        left = np.concatenate([[np.inf], s[:-1]])
        right = np.concatenate([s[1:], [-np.inf]])
        clear = (left - s > 4 * rowtol) & (s - right > 4 * rowtol)
        np.testing.assert_array_equal(ids[r][:nv][clear], ref_ids[r][:nv][clear])


# ---------------------------------------------------------------------------------------- packing

@pytest.mark.parametrize("precision,sparse,inp", list(itertools.product(PRECISIONS, (False, True), ("dense", "csr"))))
def test_pack_unpack_layout_and_quantisation(precision, sparse, inp):
    rng = np.random.default_rng(1)
    W = _weights(rng, 13, 17, 0.4)
    b = rng.standard_normal(17).astype(np.float32)
    a = pack_layer(W, b, precision, sparse, inp)
    validate_layer(a)
    assert a["meta"].dtype == np.int64 and list(a["meta"][:7]) == [
        1, 13, 17, PRECISIONS.index(precision), int(sparse), ("dense", "csr").index(inp), 1]
    Wd, bd = unpack_layer(a)
    np.testing.assert_array_equal(bd, b)
    if precision == "fp32":
        np.testing.assert_array_equal(Wd, W)
    elif precision == "bf16":
        np.testing.assert_array_equal(Wd, bf16_round(W))
    else:
        q, s = int8_rows(W.T)  # per output channel: the TopK index's per-item int8
        np.testing.assert_array_equal(a["scale"], s)
        assert s[np.abs(W).max(axis=0) == 0].tolist() == [1.0] * int((np.abs(W).max(axis=0) == 0).sum())
        np.testing.assert_array_equal(Wd, (q.astype(np.float32) * s[:, None]).T)
    if not sparse:
        assert a["W"].shape == ((17, 13) if inp == "dense" else (13, 17))
        assert a["W"].dtype == {"fp32": np.float32, "bf16": np.uint16, "int8": np.int8}[precision]
    else:
        assert a["indices"].dtype == np.uint16 and a["indptr"].dtype == np.int64
        assert a["data"].shape == ((W != 0).sum(),)
        assert a["indptr"].shape == ((18,) if inp == "dense" else (14,))
        fp = 4 * W.size
        assert layer_nbytes(a) < fp or precision == "fp32"


def test_pack_wide_layers_use_int32_indices():
    W = np.zeros((70000, 3), np.float32)
    W[[0, 69999], [0, 2]] = [1.5, -2.0]
    a = pack_layer(W, None, "int8", True, "dense")
    assert a["indices"].dtype == np.int32 and "b" not in a
    np.testing.assert_allclose(unpack_layer(a)[0], W, rtol=1e-2)
    c = pack_layer(W.T, None, "bf16", True, "csr")
    assert c["indices"].dtype == np.int32
    np.testing.assert_array_equal(unpack_layer(c)[0], W.T)


def test_memory_of_compressed_layers():
    rng = np.random.default_rng(2)
    W = rng.standard_normal((300, 1000)).astype(np.float32)
    fp = W.nbytes
    assert layer_nbytes(pack_layer(W, None, "int8")) <= 0.26 * fp
    assert layer_nbytes(pack_layer(W, None, "bf16")) <= 0.5 * fp
    Wp = W * (rng.random(W.shape) < 0.2)
    assert layer_nbytes(pack_layer(Wp, None, "fp32", sparse=True)) <= 0.35 * fp  # 6 bytes / nz + indptr
    if HAS_CPP:
        from aerec.backends import cpp
        for p, limit in (("int8", 0.30), ("bf16", 0.55)):
            assert cpp.CompressedLinear(pack_layer(W, None, p)).memory_usage() <= limit * fp


@pytest.mark.parametrize("mutate,name", [
    (lambda a: a.__setitem__("W", a["W"].astype(np.float32)), "W"),
    (lambda a: a.__setitem__("W", a["W"][:-1]), "W"),
    (lambda a: a.pop("scale"), "scale"),
    (lambda a: a.__setitem__("scale", -a["scale"]), "scale"),
    (lambda a: a["meta"].__setitem__(0, 7), "meta"),
    (lambda a: a["meta"].__setitem__(3, 9), "meta"),
    (lambda a: a.__setitem__("extra", np.zeros(1)), "extra"),
    (lambda a: a.__setitem__("b", np.full(a["b"].shape, np.nan, np.float32)), "b"),
])
def test_validate_names_the_bad_array_dense(mutate, name):
    a = pack_layer(np.ones((4, 5), np.float32), np.ones(5, np.float32), "int8")
    mutate(a)
    with pytest.raises(ValueError, match=repr(name)):
        validate_layer(a)
    for be in [numpy_] + ([aerec.backends.get("cpp")] if HAS_CPP else []):
        with pytest.raises(ValueError, match=repr(name)):
            be.CompressedLinear(a)


@pytest.mark.parametrize("mutate,name", [
    (lambda a: a["indptr"].__setitem__(2, a["indptr"][3] + 1), "indptr"),
    (lambda a: a["indptr"].__setitem__(-1, 0), "indptr"),
    (lambda a: a["indices"].__setitem__(0, 60000), "indices"),
    (lambda a: a.__setitem__("indices", a["indices"].astype(np.int32)), "indices"),
    (lambda a: a.__setitem__("data", a["data"][:-1]), "data"),
    (lambda a: a["data"].__setitem__(0, 0x7F80), "data"),
    (lambda a: a["indices"].__setitem__(1, a["indices"][0]), "indices"),  # a repeat in column 0
])
def test_validate_names_the_bad_array_sparse(mutate, name):
    W = _weights(np.random.default_rng(3), 6, 7, 0.6, zero_cols=False)
    a = pack_layer(W, None, "bf16", True)
    mutate(a)
    with pytest.raises(ValueError, match=repr(name)):
        validate_layer(a)


def test_pack_rejects_bad_weights():
    with pytest.raises(ValueError, match="finite"):
        pack_layer(np.array([[np.nan]], np.float32))
    with pytest.raises(ValueError, match="2-D"):
        pack_layer(np.zeros(3, np.float32))
    with pytest.raises(ValueError, match="precision"):
        pack_layer(np.ones((2, 2)), precision="int4")
    with pytest.raises(ValueError, match="input"):
        pack_layer(np.ones((2, 2)), input="sparse")
    with pytest.raises(ValueError, match="b must have shape"):
        pack_layer(np.ones((2, 2)), np.ones(3))
    with pytest.raises(TypeError, match="float"):
        pack_layer(np.ones((2, 2), np.int64))


# ------------------------------------------------------------------------------ reference maths

def test_reference_maths_from_first_principles():
    """The reference's documented maths, recomputed here independently."""
    rng = np.random.default_rng(4)
    W = _weights(rng, 29, 41, 0.5)
    b = rng.standard_normal(41).astype(np.float32)
    x = rng.standard_normal((11, 29)).astype(np.float32)
    x[3] = 0  # a zero row: activation scale 1
    # int8 dense: 8-bit weights, dynamic 7-bit per-row activation scale (max |x| / 63, values in
    # [-63, 63]), exact integer sums, float32 epilogue
    L = numpy_.CompressedLinear(pack_layer(W, b, "int8"))
    wq, ws = int8_rows(W.T)
    amax = np.abs(x).max(axis=1)
    xs = np.where(amax > 0, amax / np.float32(63), np.float32(1)).astype(np.float32)
    xq = np.clip(np.rint(x / xs[:, None]), -63, 63).astype(np.int8)
    assert np.abs(xq).max() == 63 and xs[3] == 1
    acc = xq.astype(np.int64) @ wq.T.astype(np.int64)
    expect = acc.astype(np.float32) * (ws[None, :] * xs[:, None]) + b
    np.testing.assert_array_equal(L.forward(x), expect)
    # bf16 dense: both operands rounded to bf16
    L = numpy_.CompressedLinear(pack_layer(W, b, "bf16"))
    np.testing.assert_allclose(L.forward(x, "tanh"), np.tanh(bf16_round(x).astype(np.float64) @ bf16_round(W) + b),
                               rtol=1e-5, atol=1e-6)
    # sparse int8 and csr layers: activations stay float32, integer values scaled per output
    for inp in ("dense", "csr"):
        L = numpy_.CompressedLinear(pack_layer(W, b, "int8", sparse=True, input=inp))
        expect = (x.astype(np.float64) @ (wq.T * (W != 0))) * ws + b
        np.testing.assert_allclose(L.forward(x, "relu"), np.maximum(expect, 0), rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------- every backend vs reference

def _run_case(be, rng, n_in, n_out, n, density, precision, sparse, inp, bias, act, k, all_rows):
    W = _weights(rng, n_in, n_out, density)
    b = rng.standard_normal(n_out).astype(np.float32) if bias else None
    a = pack_layer(W, b, precision, sparse, inp)
    ref = numpy_.CompressedLinear(a)
    L = be.CompressedLinear(a)
    assert (L.n_in, L.n_out, L.precision, L.sparse, L.input, L.has_bias) == (
        n_in, n_out, precision, sparse, inp, bias)
    x = rng.standard_normal((n, n_in)).astype(np.float32) * np.float32(rng.choice([0.01, 1, 30]))
    if n > 1:
        x[0] = 0  # an all-zero row
    x[rng.random(x.shape) < 0.3] = 0
    B = _bound(ref, x)
    y = L.forward(x, act)
    assert y.dtype == np.float32 and y.shape == (n, n_out)
    _close(y, ref.forward(x, act), 1.76 * B)
    if inp == "csr":
        X = sp.random(n, n_in, density=0.3, format="csr", dtype=np.float32, random_state=rng.integers(1 << 30))
        ip, ix = X.indptr.astype(np.int64), X.indices.astype(np.int32)
        for data in (X.data, None):
            Xd = X.toarray() if data is not None else (X != 0).astype(np.float32).toarray()
            _close(L.forward_csr(ip, ix, data, act), ref.forward_csr(ip, ix, data, act), 1.76 * _bound(ref, Xd))
            # the fused CSR top-k (EASE's recommend on a pruned B) against the reference's
            ep, ei = _exclusion(rng, n, n_out, all_rows)
            z = ref.forward_csr(ip, ix, data)
            for exc in ((ep, ei), (None, None)):
                ids, sc = L.topk_csr(ip, ix, data, k, *exc)
                rid, rsc = ref.topk_csr(ip, ix, data, k, *exc)
                _check_topk(ids, sc, rid, rsc, z, exc[0], exc[1], _bound(ref, Xd))
        return
    ep, ei = _exclusion(rng, n, n_out, all_rows)
    z = ref.forward(x)  # the reference pre-activation
    for exc in ((ep, ei), (None, None)):
        ids, sc = L.topk(x, k, *exc)
        rid, rsc = ref.topk(x, k, *exc)
        _check_topk(ids, sc, rid, rsc, z, exc[0], exc[1], B)


@pytest.mark.parametrize("engine", ENGINES)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(n_in=st.integers(1, 70), n_out=st.integers(1, 90), n=st.integers(0, 40), density=st.sampled_from([0.0, 0.05, 0.3, 1.0]),
       precision=st.sampled_from(PRECISIONS), sparse=st.booleans(), inp=st.sampled_from(["dense", "csr"]),
       bias=st.booleans(), act=st.sampled_from(ACTS), k=st.integers(1, 120), seed=st.integers(0, 2 ** 32 - 1))
def test_backend_matches_reference_random_shapes(engine, restore_isa, n_in, n_out, n, density, precision, sparse,
                                                 inp, bias, act, k, seed):
    be = _use(engine)
    rng = np.random.default_rng(seed)
    _run_case(be, rng, n_in, n_out, n, density, precision, sparse, inp, bias, act, k, all_rows={1})


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("precision,sparse", list(itertools.product(PRECISIONS, (False, True))))
def test_backend_matches_reference_larger(engine, restore_isa, precision, sparse):
    """Sizes across the kernels' blocks: several 32-item panels and 512-column chunks, n_in not a
    multiple of 4 / 16 / 32, more rows than one 32-lane block."""
    be = _use(engine)
    rng = np.random.default_rng(5)
    for inp in ("dense", "csr"):
        _run_case(be, rng, 203, 1101, 77, 0.2 if sparse else 1.0, precision, sparse, inp, True, "elu", 100,
                  all_rows={5, 40})


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("n_out", [8194, 20011, 70001])
def test_topk_csr_wide_outputs(engine, restore_isa, precision, n_out):
    """topk_csr over wide outputs, with 16-bit and (past 65,536 outputs) 32-bit indices: the same
    top-k as the reference. The four dense columns are the most popular ones, so build_hybrid
    renumbers them first and every row gets a dense prefix (the rest stays in the tails)."""
    be = _use(engine)
    rng = np.random.default_rng(n_out)
    W = sp.random(40, n_out, density=0.03, format="csr", dtype=np.float32, random_state=rng.integers(1 << 30))
    W.data = rng.standard_normal(W.nnz).astype(np.float32)
    W = W.toarray()
    W[:, 8190:8194] = rng.standard_normal((40, 4)).astype(np.float32)  # four dense (popular) columns
    a = pack_layer(W, None, precision, True, "csr")
    ref, L = numpy_.CompressedLinear(a), be.CompressedLinear(a)
    X = sp.random(25, 40, density=0.3, format="csr", dtype=np.float32, random_state=rng.integers(1 << 30))
    ip, ix = X.indptr.astype(np.int64), X.indices.astype(np.int32)
    ep, ei = _exclusion(rng, 25, n_out)
    Xd = X.toarray()
    ids, sc = L.topk_csr(ip, ix, X.data, 50, ep, ei)
    rid, rsc = ref.topk_csr(ip, ix, X.data, 50, ep, ei)
    _check_topk(ids, sc, rid, rsc, ref.forward_csr(ip, ix, X.data), ep, ei, _bound(ref, Xd))


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("n_out", [1531, 4099])
def test_csr_layer_long_skyline_prefixes(engine, restore_isa, precision, n_out):
    """A pruned-EASE-like layer: column popularity follows a power law and each row keeps mostly
    popular columns, so build_hybrid gives rows dense prefixes of many lengths (ending inside and
    at the edge of every kernel's column chunk: 32 / 64 / 128 at scalar / avx2 / avx512) plus
    sparse tails; forward_csr and the fused top-k (selected in the renumbered order, with an
    int8 layer's scales and a bias renumbered alike) match the reference, weighted and binary
    histories, short, empty and repeated ones."""
    be = _use(engine)
    rng = np.random.default_rng(n_out)
    n_in = 180
    pop = 1.0 / np.arange(1, n_out + 1) ** 0.9
    pop = rng.permutation(pop)  # popular columns anywhere in the original order
    W = np.zeros((n_in, n_out), np.float32)
    for i in range(n_in):
        kept = rng.choice(n_out, size=int(rng.integers(0, n_out // 3)), replace=False, p=pop / pop.sum())
        W[i, kept] = rng.standard_normal(len(kept)).astype(np.float32)
    b = rng.standard_normal(n_out).astype(np.float32)
    for bias in (None, b):
        a = pack_layer(W, bias, precision, True, "csr")
        ref, L = numpy_.CompressedLinear(a), be.CompressedLinear(a)
        lens = rng.integers(0, 60, size=30)
        lens[:3] = (0, 1, 200)
        rows = [rng.choice(n_in, size=m, replace=m > n_in) for m in lens]  # repeats in the long one
        rows[4] = np.array([7, 7, 7])
        lens[4] = 3
        ip = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
        ix = np.concatenate(rows).astype(np.int32)
        vals = rng.uniform(0.5, 2.0, len(ix)).astype(np.float32)
        X = sp.csr_matrix((vals, ix, ip), shape=(len(lens), n_in)).toarray()
        Xb = sp.csr_matrix((np.ones_like(vals), ix, ip), shape=(len(lens), n_in)).toarray()
        ep, ei = _exclusion(rng, len(lens), n_out, {2})
        for data, Xd in ((vals, X), (None, Xb)):
            B = _bound(ref, Xd)
            z = ref.forward_csr(ip, ix, data)
            _close(L.forward_csr(ip, ix, data), z, B)
            for exc in ((ep, ei), (None, None)):
                ids, sc = L.topk_csr(ip, ix, data, 100, *exc)
                rid, rsc = ref.topk_csr(ip, ix, data, 100, *exc)
                _check_topk(ids, sc, rid, rsc, z, exc[0], exc[1], B)


@pytest.mark.parametrize("inp", ["dense", "csr"])
@pytest.mark.parametrize("fault", ["repeat", "unsorted"])
def test_sparse_layers_refuse_repeated_or_unsorted_entries(inp, fault):
    """A repeated (row, column) entry would be summed by the kernels and overwritten by the NumPy
    reference: every backend refuses it (and unsorted ids) with a ValueError naming 'indices'
    (validate_layer; the C++ core itself sums repeats, cpp/tests/test_qlinear.cpp). The same ids
    in another row are fine."""
    rng = np.random.default_rng(11)
    W = np.zeros((6, 300), np.float32)
    W[:, :200] = rng.standard_normal((6, 200)).astype(np.float32)
    a = pack_layer(W, None, "bf16", True, inp)
    ip, ix = a["indptr"], a["indices"]
    ix[ip[1] + 1] = ix[ip[1]] if fault == "repeat" else ix[ip[1] + 2]  # inside the second row / column
    with pytest.raises(ValueError, match="'indices'.*strictly increasing"):
        validate_layer(a)
    for be in [numpy_] + [aerec.backends.get(n) for n, ok in aerec.backends.available().items()
                          if ok and n != "numpy"]:
        with pytest.raises(ValueError, match="strictly increasing"):
            be.CompressedLinear(a)
    # across a row boundary the ids restart: valid
    validate_layer(pack_layer(np.eye(4, 5, dtype=np.float32)[::-1].copy(), None, "bf16", True, inp))


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("precision", PRECISIONS)
def test_topk_csr_ties_rank_by_original_id(engine, restore_isa, precision):
    """The fused CSR top-k selects in build_hybrid's popularity order, yet equal scores still come
    back by lower original id: column 6 (in every row) is renumbered before 1 and 3, all three tie."""
    be = _use(engine)
    W = np.zeros((4, 8), np.float32)
    W[:, 6] = 1.0
    W[0:2, 1] = 1.0
    W[0, 3] = 1.0
    W[1:, 0] = 0.5
    L = be.CompressedLinear(pack_layer(W, None, precision, True, "csr"))
    ip, ix = np.array([0, 1, 1], np.int64), np.array([0], np.int32)
    for k, want in ((2, [1, 3]), (3, [1, 3, 6]), (8, [1, 3, 6, 0, 2, 4, 5, 7])):
        ids, sc = L.topk_csr(ip, ix, None, k)
        assert ids[0].tolist() == want, (k, ids[0])
        assert ids[1].tolist() == list(range(min(k, 8)))  # an empty history: all zeros, by id
    ids, _ = L.topk_csr(ip, ix, None, 2, np.array([0, 1, 1], np.int64), np.array([3], np.int32))
    assert ids[0].tolist() == [1, 6]


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("precision,sparse", list(itertools.product(PRECISIONS, (False, True))))
def test_topk_ties_padding_and_exclusion(engine, restore_isa, precision, sparse):
    """Equal scores come back by lower id; k > n_out pads with -1 / -inf after the valid ones;
    a fully excluded row is all padding."""
    be = _use(engine)
    rng = np.random.default_rng(6)
    col = rng.standard_normal((9, 1)).astype(np.float32)
    W = np.repeat(col, 6, axis=1)  # six identical output channels: tied scores
    L = be.CompressedLinear(pack_layer(W, None, precision, sparse))
    x = rng.standard_normal((3, 9)).astype(np.float32)
    ep = np.array([0, 2, 2, 8], np.int64)
    ei = np.array([4, 1, 0, 1, 2, 3, 4, 5], np.int32)
    ids, sc = L.topk(x, 10, ep, ei)
    assert ids.shape == (3, 6)
    assert ids[0].tolist() == [0, 2, 3, 5, -1, -1]
    assert ids[1].tolist() == [0, 1, 2, 3, 4, 5]
    assert ids[2].tolist() == [-1] * 6 and np.isneginf(sc[2]).all()
    assert len(set(sc[1].tolist())) == 1


# ------------------------------------------------------------------------------------- threads

@pytest.mark.skipif(not HAS_CPP, reason="aerec._core not built")
@pytest.mark.parametrize("precision,sparse", list(itertools.product(PRECISIONS, (False, True))))
def test_eight_threads_share_one_layer(precision, sparse):
    from aerec.backends import cpp
    rng = np.random.default_rng(7)
    W = _weights(rng, 64, 500, 0.2 if sparse else 1.0)
    b = rng.standard_normal(500).astype(np.float32)
    dense = cpp.CompressedLinear(pack_layer(W, b, precision, sparse, "dense"))
    first = cpp.CompressedLinear(pack_layer(W, b, precision, sparse, "csr"))
    xs = [rng.standard_normal((40 + t, 64)).astype(np.float32) for t in range(8)]
    Xs = [sp.random(40, 64, 0.1, format="csr", dtype=np.float32, random_state=t) for t in range(8)]
    exs = [_exclusion(rng, 40 + t, 500) for t in range(8)]

    def work(t):
        X = Xs[t]
        return (dense.forward(xs[t], "relu"), dense.topk(xs[t], 50, *exs[t]),
                first.forward_csr(X.indptr.astype(np.int64), X.indices.astype(np.int32), X.data, "tanh"),
                first.topk_csr(X.indptr.astype(np.int64), X.indices.astype(np.int32), X.data, 30,
                               *_exclusion(np.random.default_rng(t), 40, 500)))

    expected = [work(t) for t in range(8)]
    results, errors = [None] * 8, []

    def run(t):
        try:
            for _ in range(3):
                results[t] = work(t)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors
    for t in range(8):
        np.testing.assert_array_equal(results[t][0], expected[t][0])
        np.testing.assert_array_equal(results[t][1][0], expected[t][1][0])
        np.testing.assert_array_equal(results[t][1][1], expected[t][1][1])
        np.testing.assert_array_equal(results[t][2], expected[t][2])
        np.testing.assert_array_equal(results[t][3][0], expected[t][3][0])
        np.testing.assert_array_equal(results[t][3][1], expected[t][3][1])


# ------------------------------------------------------------------------------------ bad input

@pytest.mark.parametrize("engine", ENGINES)
def test_bad_input_errors(engine, restore_isa):
    be = _use(engine)
    W = np.arange(12, dtype=np.float32).reshape(3, 4) - 5
    dense = be.CompressedLinear(pack_layer(W, None, "int8"))
    first = be.CompressedLinear(pack_layer(W, None, "int8", input="csr"))
    x = np.ones((2, 3), np.float32)
    with pytest.raises(TypeError, match="float32"):
        dense.forward(x.astype(np.float64))
    with pytest.raises(ValueError, match=r"\(n, 3\)"):
        dense.forward(np.ones((2, 4), np.float32))
    with pytest.raises(ValueError, match="finite"):
        dense.forward(np.full((1, 3), np.nan, np.float32))
    with pytest.raises(ValueError, match="activation"):
        dense.forward(x, "softmax")
    with pytest.raises(ValueError, match="input='csr'"):
        dense.forward_csr(np.array([0, 0], np.int64), np.zeros(0, np.int32))
    with pytest.raises(ValueError, match="input='dense'"):
        first.topk(x, 2)
    with pytest.raises(ValueError, match="k must be positive"):
        dense.topk(x, 0)
    with pytest.raises(IndexError, match="out of range"):
        dense.topk(x, 2, np.array([0, 1, 1], np.int64), np.array([4], np.int32))
    with pytest.raises(ValueError, match="exclude_indptr"):
        dense.topk(x, 2, np.array([0, 1], np.int64), np.array([1], np.int32))
    with pytest.raises(TypeError, match="together"):
        dense.topk(x, 2, np.array([0, 0, 0], np.int64), None)
    with pytest.raises(IndexError, match="outside"):
        first.forward_csr(np.array([0, 1], np.int64), np.array([3], np.int32))
    with pytest.raises(TypeError, match="int64"):
        first.forward_csr(np.array([0, 1], np.int32), np.array([0], np.int32))
    with pytest.raises(ValueError, match="indptr"):
        first.forward_csr(np.array([0, 2], np.int64), np.array([0], np.int32))
    with pytest.raises(ValueError, match="one value per index"):
        first.forward_csr(np.array([0, 1], np.int64), np.array([0], np.int32), np.ones(2, np.float32))
    one = (np.array([0, 1], np.int64), np.array([0], np.int32), None)
    with pytest.raises(ValueError, match="topk_csr needs a layer packed with input='csr'"):
        dense.topk_csr(*one, 2)
    with pytest.raises(ValueError, match="k must be positive"):
        first.topk_csr(*one, 0)
    with pytest.raises(IndexError, match="out of range"):
        first.topk_csr(*one, 2, np.array([0, 1], np.int64), np.array([4], np.int32))
    with pytest.raises(TypeError, match="together"):
        first.topk_csr(*one, 2, np.array([0, 0], np.int64), None)
    with pytest.raises(IndexError, match="outside"):
        first.topk_csr(np.array([0, 1], np.int64), np.array([3], np.int32), None, 2)
    ids, sc = first.topk_csr(np.array([0], np.int64), np.zeros(0, np.int32), None, 9)
    assert ids.shape == (0, 4) and sc.shape == (0, 4)
    assert dense.forward(np.zeros((0, 3), np.float32)).shape == (0, 4)
    ids, sc = dense.topk(np.zeros((0, 3), np.float32), 9)
    assert ids.shape == (0, 4) and sc.shape == (0, 4)


@pytest.mark.skipif(not HAS_CPP, reason="aerec._core not built")
def test_core_rejects_inconsistent_arrays_directly():
    """Direct calls into _core (bypassing validate_layer) get errors, never out-of-bounds reads."""
    a = pack_layer(_weights(np.random.default_rng(8), 5, 6, 0.5, zero_cols=False), None, "fp32", True)
    with pytest.raises(ValueError):
        _core.CompressedLinear(a["meta"], None, None, None, a["indptr"], a["indices"], a["data"][:-1])
    bad = a["indices"].copy()
    bad[0] = 9
    with pytest.raises(IndexError):
        _core.CompressedLinear(a["meta"], None, None, None, a["indptr"], bad, a["data"])
    ptr = a["indptr"].copy()
    ptr[1], ptr[2] = ptr[2], ptr[1] - 1
    with pytest.raises(ValueError):
        _core.CompressedLinear(a["meta"], None, None, None, ptr, a["indices"], a["data"])
    with pytest.raises(TypeError):
        _core.CompressedLinear(a["meta"], None, None, None, a["indptr"], a["indices"].astype(np.int64), a["data"])


# ------------------------------------------------------------------------------- TopK rescore=0

@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_topk_rescore0_keeps_no_fp32_copy_and_matches_the_decoder(precision, tmp_path):
    rng = np.random.default_rng(9)
    W = rng.standard_normal((24, 700)).astype(np.float32)  # decoder (hidden, items)
    b = rng.standard_normal(700).astype(np.float32)
    q = rng.standard_normal((30, 24)).astype(np.float32)
    ep, ei = _exclusion(rng, 30, 700)
    ex = sp.csr_matrix((np.ones(len(ei), np.float32), ei, ep), shape=(30, 700))
    ref_ids, ref_sc = numpy_.CompressedLinear(pack_layer(W, b, precision)).topk(q, 20, ep, ei)
    for backend in [n for n, ok in aerec.backends.available().items() if ok]:
        t = TopK(W.T, bias=b, precision=precision, rescore=0, backend=backend)
        ids, sc = t.search(q, 20, exclude=ex)
        np.testing.assert_allclose(sc, ref_sc, rtol=1e-4, atol=1e-4)
        assert (ids == ref_ids).mean() > 0.98
        full = TopK(W.T, bias=b, precision=precision, rescore=4, backend=backend)
        if backend == "cpp":
            assert t._index.memory_usage() < full._index.memory_usage() - W.nbytes * 0.9
        path = tmp_path / f"{backend}.npz"
        t.save(path)
        back = aerec.load(path)
        assert back.rescore == 0
        np.testing.assert_array_equal(back.search(q, 20, exclude=ex)[0], ids)
    with pytest.raises(ValueError, match="rescore"):
        TopK(W.T, precision="fp32", rescore=0)
    with pytest.raises(ValueError, match="rescore"):
        TopK(W.T, precision="int8", rescore=-1)


# ------------------------------------------------------------- bf16 product paths (vdpbf16ps / widen)

_BF16_DOT_SCRIPT = r"""
import sys
import numpy as np
from aerec import _core
from aerec.backends import cpp, numpy_
from aerec.backends._quant import pack_layer, unpack_layer
assert _core.active_isa() == "avx512", _core.active_isa()
rng = np.random.default_rng(11)
for n_in, n_out, n in ((1, 5, 3), (37, 101, 41), (203, 1101, 77)):
    W = rng.standard_normal((n_in, n_out)).astype(np.float32)
    b = rng.standard_normal(n_out).astype(np.float32)
    x = rng.standard_normal((n, n_in)).astype(np.float32)
    a = pack_layer(W, b, "bf16")
    L, R = cpp.CompressedLinear(a), numpy_.CompressedLinear(a)
    Wd, _ = unpack_layer(a)
    bound = 2e-5 * (np.abs(x).astype(np.float64) @ np.abs(Wd).astype(np.float64) + np.abs(b)) + 1e-6
    assert (np.abs(L.forward(x).astype(np.float64) - R.forward(x)) <= bound).all(), (n_in, n_out)
    ep = np.arange(n + 1, dtype=np.int64) * 2
    ei = rng.integers(0, n_out, 2 * n).astype(np.int32)
    ids, sc = L.topk(x, 50, ep, ei)
    rid, rsc = R.topk(x, 50, ep, ei)
    fin = np.isfinite(rsc)
    assert (np.isfinite(sc) == fin).all() and ((ids == -1) == ~fin).all()
    assert (np.abs(sc[fin].astype(np.float64) - rsc[fin]) <= bound.max()).all()
    assert (ids == rid).mean() > 0.97, (ids == rid).mean()
print("ok")
"""


@pytest.mark.skipif(not HAS_CPP, reason="aerec._core not built")
@pytest.mark.parametrize("mode", ["vdpbf16ps", "widen"])
def test_bf16_product_paths_at_the_avx512_level(mode):
    """Both bf16 product paths of the avx512 level against the reference, in a fresh process
    (AEREC_BF16_DOT is read once): the vdpbf16ps tile (the default on AMD) and the bf16 panels
    widened to the fp32 FMA tile (the default on Intel, where vdpbf16ps runs at half the FMA's
    flop rate); the CPU must have AVX512-BF16 for the first to differ from the second."""
    import os
    import subprocess
    import sys
    feats = _core.cpu_features()
    if not (feats["avx512"] and feats["avx512_bf16"]):
        pytest.skip("needs AVX512-BF16")
    # the child imports the aerec this process runs (the installed wheel in CI, not the sources)
    here = str(pathlib.Path(aerec.__file__).resolve().parents[1])
    env = dict(os.environ, AEREC_ISA="avx512", AEREC_BF16_DOT=mode,
               PYTHONPATH=os.pathsep.join(p for p in [here, os.environ.get("PYTHONPATH", "")] if p))
    out = subprocess.run([sys.executable, "-c", _BF16_DOT_SCRIPT], env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]

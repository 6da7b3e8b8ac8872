"""aerec.search.TopK against the NumPy reference (full score matrix + stable sort)."""
import io
import json
import os
import zipfile

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings, strategies as st

import aerec
from aerec.search import TopK, reference_search

core = pytest.importorskip("aerec._core")
ISAS = [i for i in ("scalar", "avx2", "avx512")
        if ["scalar", "avx2", "avx512", "amx"].index(core.detected_isa()) >= ["scalar", "avx2", "avx512"].index(i)]
if core.detected_isa() == "amx" and core.cpu_features()["amx_permitted"]:
    ISAS.append("amx")  # the AMX bf16 / int8 tiles


@pytest.fixture(params=ISAS)
def isa(request):
    before = core.active_isa()
    core.set_isa(request.param)
    yield request.param
    core.set_isa(before)


def _data(rng, n, d, m, integer=True, lo=-3, hi=4):
    if integer:
        X = rng.integers(lo, hi, (n, d)).astype(np.float32)
        Q = rng.integers(lo, hi, (m, d)).astype(np.float32)
        b = rng.integers(lo, hi, n).astype(np.float32)
    else:
        X = rng.standard_normal((n, d), dtype=np.float32)
        X *= np.exp(rng.standard_normal(n)).astype(np.float32)[:, None]
        Q = rng.standard_normal((m, d), dtype=np.float32)
        b = rng.standard_normal(n).astype(np.float32)
    return X, Q, b


def _check_exact(ids, scores, rid, rsc, integer):
    assert ids.dtype == np.int32 and scores.dtype == np.float32
    if integer:
        np.testing.assert_array_equal(ids, rid)
        np.testing.assert_array_equal(scores, rsc)
    else:
        np.testing.assert_allclose(scores, rsc, rtol=1e-4, atol=1e-4)
        # ids may differ only where scores are within rounding of each other
        diff = ids != rid
        if diff.any():
            np.testing.assert_allclose(scores[diff], rsc[diff], rtol=1e-4, atol=1e-4)


def _recall(found, truth):
    hits = sum(np.intersect1d(f[f >= 0], t[t >= 0]).size for f, t in zip(found, truth))
    return hits / max(1, int((truth >= 0).sum()))


# ---------------------------------------------------------------------------------------------
# exact path

@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.integers(1, 200), d=st.integers(1, 70), m=st.integers(1, 40),
       kchoice=st.sampled_from([1, 10, 100, "n", "n+5"]), use_bias=st.booleans(),
       prune=st.booleans(), excl=st.sampled_from(["none", "random", "all", "csr"]),
       seed=st.integers(0, 2**31 - 1))
def test_exact_matches_reference_integer(isa, n, d, m, kchoice, use_bias, prune, excl, seed):
    rng = np.random.default_rng(seed)
    X, Q, b = _data(rng, n, d, m)
    k = {"n": n, "n+5": n + 5}.get(kchoice, kchoice)
    bias = b if use_bias else None
    if excl == "none":
        exclude = None
    elif excl == "all":
        exclude = [rng.permutation(n) for _ in range(m)]
    else:
        exclude = [rng.integers(0, n, rng.integers(0, 2 * n + 1)) for _ in range(m)]
        if excl == "csr":
            rows = [np.unique(e) for e in exclude]
            indptr = np.concatenate([[0], np.cumsum([r.size for r in rows])])
            exclude = sp.csr_matrix((np.ones(indptr[-1]), np.concatenate(rows) if rows else [], indptr),
                                    shape=(m, n))
    ids, scores = TopK(X, bias, prune=prune).search(Q, k, exclude=exclude)
    rid, rsc = reference_search(X, Q, k, bias, exclude)
    assert ids.shape == (m, min(k, n))
    _check_exact(ids, scores, rid, rsc, integer=True)


@pytest.mark.parametrize("prune", [False, True])
@pytest.mark.parametrize("shape", [(1, 1, 1), (33, 17, 13), (1000, 64, 50), (777, 200, 25), (3000, 5, 7)])
def test_exact_matches_reference_float(isa, shape, prune):
    n, d, m = shape
    rng = np.random.default_rng(n * 7 + d)
    X, Q, b = _data(rng, n, d, m, integer=False)
    exclude = [rng.integers(0, n, 20) for _ in range(m)]
    for k in (1, 10, 100, n):
        ids, scores = TopK(X, b, prune=prune).search(Q, k, exclude=exclude)
        rid, rsc = reference_search(X, Q, k, b, exclude)
        _check_exact(ids, scores, rid, rsc, integer=False)


def test_ties_duplicates_and_zero_vectors(isa):
    rng = np.random.default_rng(3)
    base = rng.integers(-1, 2, (20, 8)).astype(np.float32)
    X = np.concatenate([base, base, np.zeros((10, 8), np.float32), base[:5]])  # duplicates
    Q = np.concatenate([rng.integers(-1, 2, (20, 8)).astype(np.float32), np.zeros((2, 8), np.float32)])
    for prune in (False, True):
        for k in (1, 7, 40, len(X)):
            ids, scores = TopK(X, prune=prune).search(Q, k)
            rid, rsc = reference_search(X, Q, k)
            _check_exact(ids, scores, rid, rsc, integer=True)
    # zero query: every score is 0, so ids come out in order
    ids, scores = TopK(X).search(np.zeros(8, np.float32), 5)
    np.testing.assert_array_equal(ids, np.arange(5))
    np.testing.assert_array_equal(scores, np.zeros(5, np.float32))


def test_cosine_with_zero_rows(isa):
    rng = np.random.default_rng(4)
    X = rng.standard_normal((300, 16)).astype(np.float32)
    X[::7] = 0
    Q = rng.standard_normal((9, 16)).astype(np.float32)
    Q[2] = 0
    ids, scores = TopK(X, metric="cosine").search(Q, 20)
    rid, rsc = reference_search(X, Q, 20, metric="cosine")
    _check_exact(ids, scores, rid, rsc, integer=False)
    assert np.all(scores[2] == 0)
    assert np.all(scores <= 1 + 1e-5)


def test_exclusion_edge_cases():
    rng = np.random.default_rng(5)
    X, Q, b = _data(rng, 50, 6, 4)
    index = TopK(X, b)
    # empty, all items, unsorted with duplicates, a list of lists
    exclude = [[], np.arange(50)[::-1], np.array([7, 3, 7, 7, 49, 0, 3]), list(range(0, 50, 2))]
    ids, scores = index.search(Q, 60, exclude=exclude)
    rid, rsc = reference_search(X, Q, 60, b, exclude)
    _check_exact(ids, scores, rid, rsc, integer=True)
    assert ids.shape == (4, 50)
    assert np.all(ids[1] == -1) and np.all(np.isneginf(scores[1]))
    assert (ids[2] >= 0).sum() == 46 and np.all(ids[2, 46:] == -1)
    for r, e in enumerate(exclude):
        assert not np.isin(ids[r][ids[r] >= 0], np.asarray(e, dtype=np.int64)).any()


def test_single_query_and_k_larger_than_n():
    rng = np.random.default_rng(6)
    X, Q, b = _data(rng, 30, 5, 1)
    index = TopK(X, b)
    ids, scores = index.search(Q[0], 100, exclude=[1, 2])
    assert ids.shape == (30,) and scores.shape == (30,)
    rid, rsc = reference_search(X, Q, 100, b, [[1, 2]])
    np.testing.assert_array_equal(ids, rid[0])
    assert np.all(ids[-2:] == -1)


def test_few_queries_item_split_and_threads():
    rng = np.random.default_rng(7)
    X, Q, b = _data(rng, 5000, 24, 3, integer=False)
    exclude = [rng.integers(0, 5000, 100) for _ in range(3)]
    for prec in ("fp32", "int8"):
        index = TopK(X, b, precision=prec, rescore=8)
        ref = index.search(Q, 50, exclude=exclude, num_threads=1)
        for t in (2, 3, 4):
            got = index.search(Q, 50, exclude=exclude, num_threads=t)
            np.testing.assert_array_equal(got[0], ref[0])
            np.testing.assert_array_equal(got[1], ref[1])
    ids, _ = TopK(X, b, prune=True).search(Q, 50, exclude=exclude, num_threads=2)
    np.testing.assert_array_equal(ids, TopK(X, b).search(Q, 50, exclude=exclude, num_threads=1)[0])


# ---------------------------------------------------------------------------------------------
# compressed paths

@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_compressed_recall_lognormal_norms(isa, precision):
    """Skewed item norms (log-normal) are where per-tensor int8 collapses; per-row scales hold."""
    rng = np.random.default_rng(8)
    n, d, m = 4000, 64, 200
    X = rng.standard_normal((n, d), dtype=np.float32)
    X *= np.exp(1.0 * rng.standard_normal(n)).astype(np.float32)[:, None]
    Q = rng.standard_normal((m, d), dtype=np.float32)
    b = (0.1 * rng.standard_normal(n)).astype(np.float32)
    exclude = [rng.integers(0, n, 30) for _ in range(m)]
    for k in (10, 100):
        rid, rsc = TopK(X, b).search(Q, k, exclude=exclude)
        ids, scores = TopK(X, b, precision=precision).search(Q, k, exclude=exclude)
        assert _recall(ids, rid) >= 0.99
        # returned scores are fp32 inner products of the returned ids
        S = np.einsum("ij,ij->i", np.repeat(Q, k, axis=0).astype(np.float64),
                      X[ids.ravel()].astype(np.float64)) + b[ids.ravel()]
        np.testing.assert_allclose(scores.ravel(), S, rtol=1e-4, atol=1e-3)
        assert np.all(np.diff(scores, axis=1) <= 0)
        for r, e in enumerate(exclude):
            assert not np.isin(ids[r], e).any()


@pytest.mark.parametrize("prune", [False, True])
@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_compressed_integer_data_exact(isa, precision, prune):
    rng = np.random.default_rng(9)
    X, Q, b = _data(rng, 500, 20, 30)
    ids, scores = TopK(X, b, precision=precision, rescore=1000, prune=prune).search(Q, 10)
    rid, rsc = reference_search(X, Q, 10, b)
    _check_exact(ids, scores, rid, rsc, integer=True)


@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_compressed_pruning_keeps_candidates(isa, precision):
    """The bound uses the compressed norms, so pruning returns what the full scan returns."""
    rng = np.random.default_rng(15)
    n, d, m = 3000, 40, 60
    X = rng.standard_normal((n, d), dtype=np.float32)
    X *= np.exp(1.0 * rng.standard_normal(n)).astype(np.float32)[:, None]
    Q = rng.standard_normal((m, d), dtype=np.float32)
    b = (0.5 * rng.standard_normal(n)).astype(np.float32)
    exclude = [rng.integers(0, n, 25) for _ in range(m)]
    for k in (1, 10, 50):
        a = TopK(X, b, precision=precision, rescore=2).search(Q, k, exclude=exclude)
        c = TopK(X, b, precision=precision, rescore=2, prune=True).search(Q, k, exclude=exclude)
        np.testing.assert_array_equal(a[0], c[0])
        np.testing.assert_array_equal(a[1], c[1])


# ---------------------------------------------------------------------------------------------
# bad input, conversions, persistence

def test_bad_input():
    rng = np.random.default_rng(10)
    X, Q, b = _data(rng, 40, 5, 3)
    index = TopK(X, b)
    with pytest.raises(ValueError):
        index.search(Q, 0)
    with pytest.raises(ValueError):
        index.search(Q, -3)
    with pytest.raises(TypeError):
        index.search(Q, 2.5)
    with pytest.raises(ValueError):
        index.search(Q[:, :4], 3)
    bad = Q.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError):
        index.search(bad, 3)
    bad[0, 0] = np.inf
    with pytest.raises(ValueError):
        index.search(bad, 3)
    with pytest.raises(IndexError):
        index.search(Q, 3, exclude=[[40], [], []])
    with pytest.raises(IndexError):
        index.search(Q, 3, exclude=[[-1], [], []])
    with pytest.raises(TypeError):
        index.search(Q, 3, exclude=[np.array([1.0]), [], []])
    with pytest.raises(ValueError):
        index.search(Q, 3, exclude=[[1], []])
    with pytest.raises(ValueError):
        TopK(np.zeros((0, 5), np.float32))
    Xn = X.copy()
    Xn[3, 1] = np.nan
    with pytest.raises(ValueError):
        TopK(Xn)
    with pytest.raises(ValueError):
        TopK(X, b[:-1])
    with pytest.raises(ValueError):
        TopK(X, metric="l2")
    with pytest.raises(ValueError):
        TopK(X, precision="fp16")
    with pytest.raises(ValueError):
        TopK(X, b, metric="cosine")
    with pytest.raises(TypeError):
        TopK(np.array([["a"]]))
    # the compiled class re-checks without the Python layer
    with pytest.raises(TypeError):
        core.TopkIndex(X.astype(np.float64))
    with pytest.raises(ValueError):
        index._index.search(Q, 0)


def test_float64_and_noncontiguous_inputs_are_converted():
    rng = np.random.default_rng(11)
    X, Q, b = _data(rng, 60, 9, 5)
    ref = TopK(X, b).search(Q, 7)
    Xf = np.asfortranarray(X.astype(np.float64))
    Qs = np.repeat(Q.astype(np.float64), 2, axis=1)[:, ::2]
    got = TopK(Xf, b.astype(np.float64)).search(Qs, 7)
    np.testing.assert_array_equal(got[0], ref[0])
    np.testing.assert_array_equal(got[1], ref[1])


@pytest.mark.parametrize("precision,metric,prune", [("fp32", "ip", True), ("int8", "ip", False),
                                                    ("bf16", "cosine", False), ("fp32", "cosine", False)])
def test_save_load_roundtrip(tmp_path, precision, metric, prune):
    rng = np.random.default_rng(12)
    X, Q, b = _data(rng, 300, 12, 8, integer=False)
    bias = b if metric == "ip" else None
    index = TopK(X, bias, metric=metric, precision=precision, prune=prune)
    path = tmp_path / "index.npz"
    index.save(path)
    loaded = TopK.load(path)
    assert (loaded.metric, loaded.precision, loaded.prune) == (metric, precision, prune)
    a, c = index.search(Q, 10), loaded.search(Q, 10)
    np.testing.assert_array_equal(a[0], c[0])
    np.testing.assert_array_equal(a[1], c[1])
    assert index.memory_usage() > X.nbytes // 2
    assert not [p for p in os.listdir(tmp_path) if p != "index.npz"]  # no temp files left


def test_load_damaged_files(tmp_path):
    rng = np.random.default_rng(13)
    X, Q, b = _data(rng, 100, 8, 2)
    path = tmp_path / "index.npz"
    TopK(X, b).save(path)
    raw = path.read_bytes()
    (tmp_path / "trunc.npz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError):
        TopK.load(tmp_path / "trunc.npz")
    flipped = bytearray(raw)
    flipped[len(raw) // 3] ^= 0xFF
    (tmp_path / "flip.npz").write_bytes(bytes(flipped))
    with pytest.raises(ValueError):
        TopK.load(tmp_path / "flip.npz")
    # a well-formed file whose header was edited (metric flipped, as in issue 7) fails the checksum
    with zipfile.ZipFile(path) as z:
        members = {n: z.read(n) for n in z.namelist()}
    meta = json.loads(np.load(io.BytesIO(members["__aerec_meta__.npy"])).tobytes())

    def write(name, meta):
        buf = io.BytesIO()
        np.save(buf, np.frombuffer(json.dumps(meta).encode(), np.uint8))
        with zipfile.ZipFile(tmp_path / name, "w") as z:
            for n, data in members.items():
                z.writestr(n, buf.getvalue() if n == "__aerec_meta__.npy" else data)
        return tmp_path / name
    with pytest.raises(ValueError, match="checksum"):
        TopK.load(write("altered.npz", {**meta, "metric": "cosine"}))
    with pytest.raises(ValueError, match="format version 99"):
        TopK.load(write("future.npz", {**meta, "format_version": 99}))


def test_numpy_backend_matches():
    rng = np.random.default_rng(14)
    X, Q, b = _data(rng, 120, 6, 4)
    a = TopK(X, b, backend="numpy").search(Q, 9, exclude=[[1], [], [3, 3], [119]])
    c = TopK(X, b, backend="cpp").search(Q, 9, exclude=[[1], [], [3, 3], [119]])
    np.testing.assert_array_equal(a[0], c[0])
    np.testing.assert_array_equal(a[1], c[1])


# ---------------------------------------------------------------------------------------------
# backends: every backend owns an index; the NumPy one is the reference for the compiled one

def _both(fast="cpp"):
    av = aerec.backends.available()
    if not (av.get(fast) and av.get("numpy")):
        pytest.skip(f"needs the {fast} and numpy backends")


def _same_unless_tied(a, c, tol, max_diff=1.0):
    """ids equal wherever the scores are not tied within ``tol``: both lists are sorted, so where
    the ids at a position differ, the two items there must score the same (a near-tie)."""
    (aid, asc), (cid, csc) = a, c
    assert aid.shape == cid.shape and aid.dtype == cid.dtype == np.int32
    np.testing.assert_array_equal(aid < 0, cid < 0)
    np.testing.assert_array_equal(np.isneginf(asc), np.isneginf(csc))
    fin = np.isfinite(asc)
    np.testing.assert_allclose(asc[fin], csc[fin], rtol=tol, atol=tol)
    diff = aid != cid
    np.testing.assert_allclose(asc[diff], csc[diff], rtol=tol, atol=tol)
    assert diff.mean() <= max_diff, diff.mean()


def test_backend_parameter_and_env(monkeypatch, backend):
    X = np.eye(4, dtype=np.float32)
    index = TopK(X, backend=backend.NAME)
    assert index.backend == backend.NAME and backend.NAME in repr(index)
    monkeypatch.setenv("AEREC_BACKEND", backend.NAME)
    assert TopK(X).backend == backend.NAME
    with pytest.raises(ValueError, match="unknown backend"):
        TopK(X, backend="tensorflow")


@pytest.mark.parametrize("precision", ["fp32", "bf16", "int8"])
@pytest.mark.parametrize("metric", ["ip", "cosine"])
def test_every_backend_matches_reference_integer(backend, precision, metric):
    """Integer data, rescore covering every item: exact on every backend, any precision."""
    rng = np.random.default_rng(16)
    X, Q, b = _data(rng, 300, 12, 40)
    bias = b if metric == "ip" else None
    exclude = [rng.integers(0, 300, rng.integers(0, 40)) for _ in range(40)]
    for prune in (False, True):
        index = TopK(X, bias, metric=metric, precision=precision, rescore=1000, prune=prune,
                     backend=backend.NAME)
        for k in (1, 10, 300, 400):
            ids, scores = index.search(Q, k, exclude=exclude)
            rid, rsc = reference_search(X, Q, k, bias, exclude, metric=metric)
            if metric == "ip":
                _check_exact(ids, scores, rid, rsc, integer=True)
            else:
                _same_unless_tied((ids, scores), (rid, rsc), 1e-5)


@pytest.mark.parametrize("precision", ["fp32", "bf16", "int8"])
@pytest.mark.parametrize("metric", ["ip", "cosine"])
@pytest.mark.parametrize("prune", [False, True])
@pytest.mark.parametrize("excl", ["none", "lists", "csr"])
@pytest.mark.parametrize("fast", ["cpp", "numba"])
def test_compiled_matches_numpy(precision, metric, prune, excl, fast):
    """Same quantisation, same candidates, same fp32 re-scoring: same ids on non-tied scores."""
    _both(fast)
    rng = np.random.default_rng(17)
    n, d, m = 2500, 24, 70
    X = rng.standard_normal((n, d), dtype=np.float32)
    X *= np.exp(0.7 * rng.standard_normal(n)).astype(np.float32)[:, None]
    Q = rng.standard_normal((m, d), dtype=np.float32)
    bias = (0.3 * rng.standard_normal(n)).astype(np.float32) if metric == "ip" else None
    exclude = None
    if excl != "none":
        exclude = [rng.integers(0, n, rng.integers(0, 60)) for _ in range(m)]
        if excl == "csr":
            rows = [np.unique(e) for e in exclude]
            indptr = np.concatenate([[0], np.cumsum([r.size for r in rows])])
            exclude = sp.csr_matrix((np.ones(indptr[-1]), np.concatenate(rows), indptr), shape=(m, n))
    kw = dict(metric=metric, precision=precision, rescore=2, prune=prune)
    a_index, c_index = TopK(X, bias, backend=fast, **kw), TopK(X, bias, backend="numpy", **kw)
    for k in (1, 10, 100, n):
        a = a_index.search(Q, k, exclude=exclude)
        c = c_index.search(Q, k, exclude=exclude)
        _same_unless_tied(a, c, 2e-5, max_diff=0.01)
        if k < 100:  # no near-ties among the top few: bitwise the same ids
            np.testing.assert_array_equal(a[0], c[0])
    one = a_index.search(Q[3], 5, exclude=None if exclude is None or excl == "csr" else exclude[3])
    two = c_index.search(Q[3], 5, exclude=None if exclude is None or excl == "csr" else exclude[3])
    np.testing.assert_array_equal(one[0], two[0])


def test_numpy_index_blocks_give_the_same_answer(monkeypatch):
    """The NumPy index scores (query block x item block) tiles; any block size, same result."""
    from aerec.backends import _numpy_topk
    rng = np.random.default_rng(18)
    X, Q, b = _data(rng, 700, 10, 90, integer=False)
    exclude = [rng.integers(0, 700, 30) for _ in range(90)]
    for precision in ("fp32", "bf16", "int8"):
        full = TopK(X, b, precision=precision, backend="numpy").search(Q, 20, exclude=exclude)
        monkeypatch.setattr(_numpy_topk, "_BLOCK_ELEMS", 97)
        small = TopK(X, b, precision=precision, backend="numpy").search(Q, 20, exclude=exclude)
        monkeypatch.undo()
        np.testing.assert_array_equal(full[0], small[0])
        np.testing.assert_array_equal(full[1], small[1])


def test_numpy_index_memory_is_bounded():
    """600 queries x 30,000 items: the float64 score matrix alone would be 144 MB."""
    import tracemalloc
    rng = np.random.default_rng(19)
    X = rng.standard_normal((30_000, 8), dtype=np.float32)
    Q = rng.standard_normal((600, 8), dtype=np.float32)
    index = TopK(X, backend="numpy")
    tracemalloc.start()
    try:
        ids, _ = index.search(Q, 10)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 72 * 2**20, peak
    np.testing.assert_array_equal(ids[:5], reference_search(X, Q[:5], 10)[0])


def test_numpy_backend_save_load_and_memory(tmp_path):
    rng = np.random.default_rng(20)
    X, Q, b = _data(rng, 200, 9, 6, integer=False)
    for precision in ("fp32", "bf16", "int8"):
        index = TopK(X, b, precision=precision, backend="numpy")
        assert index.memory_usage() >= X.nbytes
        path = tmp_path / f"{precision}.npz"
        index.save(path)
        back = TopK.load(path, backend="numpy")
        assert back.backend == "numpy" and back.precision == precision
        a, c = index.search(Q, 7), back.search(Q, 7)
        np.testing.assert_array_equal(a[0], c[0])
        np.testing.assert_array_equal(a[1], c[1])


@pytest.mark.parametrize("precision", ["fp32", "bf16", "int8"])
def test_cpp_matches_numpy_every_isa(isa, precision):
    """The compiled tiles of each instruction-set level (scalar / AVX2 / AVX-512, VNNI, BF16)
    against the NumPy index: same ids on non-tied scores."""
    _both()
    rng = np.random.default_rng(21)
    n, d, m = 1500, 37, 40
    X = rng.standard_normal((n, d), dtype=np.float32)
    X *= np.exp(0.7 * rng.standard_normal(n)).astype(np.float32)[:, None]
    Q = rng.standard_normal((m, d), dtype=np.float32)
    b = (0.3 * rng.standard_normal(n)).astype(np.float32)
    exclude = [rng.integers(0, n, 25) for _ in range(m)]
    for prune in (False, True):
        kw = dict(precision=precision, rescore=3, prune=prune)
        a = TopK(X, b, backend="cpp", **kw).search(Q, 20, exclude=exclude)
        c = TopK(X, b, backend="numpy", **kw).search(Q, 20, exclude=exclude)
        np.testing.assert_array_equal(a[0], c[0])
        np.testing.assert_allclose(a[1], c[1], rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_compressed_extreme_values_every_isa(isa, precision):
    """Values that quantise to the ends of the int8 range (items all +127 / all -127, 7-bit
    queries all +63 / -63, i.e. u8 127 / 1 after the +64 offset: the largest u8 x s8 pair sums
    vpmaddubsw sees, 2 x 127 x 127) and long
    dot products, at each level against the portable (scalar) tiles with re-scoring off:
    the same candidates, so the same ids (scores are fp32 re-scored, whose summation order is
    per level). Bitwise tile equality is checked in cpp/tests/test_topk.cpp."""
    rng = np.random.default_rng(22)
    n, d, m = 600, 200, 24
    mag = (1.0 + np.arange(n) / n).astype(np.float32)[:, None]  # distinct magnitudes: no ties
    X = np.ones((n, d), dtype=np.float32)
    X[1::3] = -1.0                               # all -127
    X[2::3] = np.where(np.arange(d) % 2, 1.0, -1.0)  # alternating +-127
    X *= mag
    X[5::7, ::5] *= 0.25                          # some rows also hold small values
    Q = np.abs(rng.standard_normal((m, d), dtype=np.float32)) + 3.0
    Q[:8] = 2.0                                   # all u8 127
    Q[8:12] = -2.0                                # all u8 1
    Q[12:16, 1::2] *= -1.0                        # +-, 127 and 1 interleaved
    exclude = [rng.integers(0, n, 20) for _ in range(m)]
    for prune in (False, True):
        kw = dict(precision=precision, rescore=1, prune=prune)
        a = TopK(X, backend="cpp", **kw).search(Q, 25, exclude=exclude)
        core.set_isa("scalar")
        try:
            c = TopK(X, backend="cpp", **kw).search(Q, 25, exclude=exclude)
        finally:
            core.set_isa(isa)
        np.testing.assert_array_equal(a[0], c[0])
        np.testing.assert_allclose(a[1], c[1], rtol=1e-5, atol=1e-3)  # sums of +-800 terms
    # And re-scoring every candidate gives the exact answer.
    a = TopK(X, backend="cpp", precision=precision, rescore=n).search(Q, 25, exclude=exclude)
    _same_unless_tied(a, reference_search(X, Q, 25, exclude=exclude), 1e-3, max_diff=0.0)


@pytest.mark.parametrize("d", [1, 7, 64, 203])
def test_int8_rescore0_scores_bit_identical_every_isa(isa, d):
    """int8 without re-scoring returns the compressed scores themselves: with 8-bit items and 7-bit
    queries (u8 = q + 64, so AVX2's vpmaddubsw never saturates) every level computes the same
    exact integer sums and the same unfused epilogue, so scores and ids equal the NumPy
    reference bit for bit (a model file ranks alike on every CPU), pruned or not, and
    CompressedLinear's fused top-k (the same tiles) too."""
    from _support import check_int8_topk_bits
    check_int8_topk_bits(d, 517, d, 29, 40)


_AVX_VNNI_SCRIPT = r"""
import sys
sys.path.insert(0, sys.argv[1])  # tests/, for _support
from aerec import _core
from _support import check_int8_topk_bits
assert _core.active_isa() == "avx2", _core.active_isa()
for n, d, m, k in ((517, 203, 31, 40), (70, 1, 7, 9), (2000, 64, 40, 100)):
    check_int8_topk_bits(5 + d, n, d, m, k)
print("ok")
"""


@pytest.mark.parametrize("avx_vnni", ["1", "0"])
def test_int8_avx2_level_with_and_without_avx_vnni(avx_vnni):
    """The avx2 level's two int8 tiles, in a fresh process (AEREC_AVX_VNNI is read once): vpdpbusd
    (AVX-VNNI, which the avx2 level uses where the CPU has it) and vpmaddubsw + vpmaddwd (AVX2 only,
    AEREC_AVX_VNNI=0) give the NumPy reference's scores and ids bit for bit."""
    import pathlib
    import subprocess
    import sys
    if ["scalar", "avx2", "avx512", "amx"].index(core.detected_isa()) < 1:
        pytest.skip("needs AVX2")
    if avx_vnni == "1" and not core.cpu_features()["avx_vnni"]:
        pytest.skip("needs AVX-VNNI")
    # the child imports the aerec this process runs (the installed wheel in CI, not the sources)
    here = str(pathlib.Path(aerec.__file__).resolve().parents[1])
    env = dict(os.environ, AEREC_ISA="avx2", AEREC_AVX_VNNI=avx_vnni,
               PYTHONPATH=os.pathsep.join(p for p in [here, os.environ.get("PYTHONPATH", "")] if p))
    tests_dir = str(pathlib.Path(__file__).resolve().parent)
    out = subprocess.run([sys.executable, "-c", _AVX_VNNI_SCRIPT, tests_dir], env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


@pytest.mark.parametrize("d", [1, 7, 24, 203])
def test_block_rescoring_bit_identical_to_per_query_every_isa(isa, d):
    """A block of queries re-scores its candidates item by item (four queries per pass over an fp32
    row at the avx2 level); one query alone re-scores its own candidates one dot at a time. Same
    dot, same bits: ids and scores must be equal exactly, with a bias and exclusions."""
    rng = np.random.default_rng(d + 100)
    n, m, k = 211, 45, 20
    X = rng.standard_normal((n, d), dtype=np.float32) * np.exp(rng.standard_normal(n)).astype(np.float32)[:, None]
    b = rng.standard_normal(n).astype(np.float32)
    Q = rng.standard_normal((m, d), dtype=np.float32)
    exclude = [rng.integers(0, n, 9) for _ in range(m)]
    for precision in ("bf16", "int8"):
        idx = TopK(X, bias=b, precision=precision, rescore=1.5, backend="cpp")
        ids, sc = idx.search(Q, k, exclude=exclude)                   # m * kc >= n: block re-scoring
        for r in range(m):
            i1, s1 = idx.search(Q[r:r + 1], k, exclude=[exclude[r]])  # one query: per-query dots
            np.testing.assert_array_equal(s1[0], sc[r], err_msg=f"{precision} row {r}")
            np.testing.assert_array_equal(i1[0], ids[r], err_msg=f"{precision} row {r}")


# ---------------------------------------------------------------------------------------------
# fractional rescore: ceil(k * rescore) candidates, the same count on every backend and level

def _candidate_probe(n):
    """Items whose int8 scores all tie (first component 1 + j * 1e-4 quantises to 1, the second is
    the row's max) while their fp32 scores rise with the id: the compressed scan keeps the kc
    lowest ids, re-scoring returns the best k of those, so the top id is kc - 1."""
    X = np.empty((n, 2), np.float32)
    X[:, 0] = 1.0 + np.arange(n, dtype=np.float32) * np.float32(1e-4)
    X[:, 1] = 127.0
    return X


@pytest.mark.parametrize("backend", ["cpp", "numba", "numpy"])
def test_fractional_rescore_candidate_count_every_isa(isa, backend):
    from aerec.backends._numpy_topk import candidates
    if not aerec.backends.available().get(backend):
        pytest.skip(f"needs the {backend} backend")
    assert [candidates(100, 20000, r) for r in (1, 1.1, 1.25, 2, 2.5)] == [100, 110, 125, 200, 250]
    assert candidates(10, 1000, 1.25) == 13 and candidates(7, 10, 2) == 10 and candidates(20, 10, 1) == 10
    n = 400
    X = _candidate_probe(n)
    Q = np.tile(np.array([[1.0, 0.0]], np.float32), (37, 1))  # 37 rows: query blocks and the batched re-score
    for k, r in [(1, 1.5), (10, 1.1), (10, 1.25), (7, 1.01), (40, 2.5), (100, 1.1), (100, 3.99), (300, 1.5)]:
        kc = candidates(k, n, r)
        index = TopK(X, precision="int8", rescore=r, backend=backend)
        assert index.rescore == r
        for num_threads in (1, 3):
            ids, scores = index.search(Q, k, num_threads=num_threads)
            expect = np.arange(kc - 1, kc - 1 - min(k, n), -1)
            np.testing.assert_array_equal(ids, np.tile(expect, (Q.shape[0], 1)), err_msg=f"k={k} rescore={r}")
            np.testing.assert_array_equal(scores[0], X[expect, 0])
        # one query alone: the threads split the items (per-row re-scoring)
        np.testing.assert_array_equal(np.ravel(index.search(Q[0], k, num_threads=2)[0]), expect)


@pytest.mark.parametrize("precision", ["bf16", "int8"])
@pytest.mark.parametrize("rescore", [1, 1.1, 1.25, 2.5])
def test_fractional_rescore_matches_numpy_every_isa(isa, precision, rescore):
    """Compiled (each level; query blocks re-scored item by item) against the NumPy index on
    skewed data, pruned or not: same ids on non-tied scores."""
    _both()
    rng = np.random.default_rng(23)
    n, d, m = 1800, 41, 90
    X = rng.standard_normal((n, d), dtype=np.float32)
    X *= np.exp(0.7 * rng.standard_normal(n)).astype(np.float32)[:, None]
    Q = rng.standard_normal((m, d), dtype=np.float32)
    b = (0.3 * rng.standard_normal(n)).astype(np.float32)
    exclude = [rng.integers(0, n, 30) for _ in range(m)]
    for prune in (False, True):
        kw = dict(precision=precision, rescore=rescore, prune=prune)
        a_index, c_index = TopK(X, b, backend="cpp", **kw), TopK(X, b, backend="numpy", **kw)
        for k in (1, 10, 60):
            a = a_index.search(Q, k, exclude=exclude)
            c = c_index.search(Q, k, exclude=exclude)
            np.testing.assert_array_equal(a[0], c[0])
            np.testing.assert_allclose(a[1], c[1], rtol=2e-5, atol=2e-5)


def test_fractional_rescore_bad_values_and_save_load(tmp_path):
    rng = np.random.default_rng(24)
    X, Q, b = _data(rng, 80, 6, 4, integer=False)
    for bad in (0.5, 0.999, -1, float("nan"), float("inf"), True, "2", None):
        with pytest.raises(ValueError, match="rescore"):
            TopK(X, precision="int8", rescore=bad)
        if not isinstance(bad, (bool, str)) and bad is not None:  # the compiled class re-checks
            with pytest.raises(ValueError, match="rescore"):
                core.TopkIndex(X, None, "int8", bad)
    with pytest.raises(ValueError, match="rescore"):
        TopK(X, rescore=0)
    for r, shown in ((1.25, 1.25), (3.0, 3), (np.float64(1.5), 1.5), (np.int64(2), 2), (10**6, 80)):
        index = TopK(X, b, precision="int8", rescore=r)
        assert index.rescore == shown and type(index.rescore) is type(shown)
        path = tmp_path / "f.npz"
        index.save(path)
        loaded = TopK.load(path)
        assert loaded.rescore == shown and type(loaded.rescore) is type(shown)
        np.testing.assert_array_equal(loaded.search(Q, 9)[0], index.search(Q, 9)[0])

"""Regression tests for the bad-input defects of issue 7 (sections 3, 4, 5's EASE guard and 6) that
need more than one row of ``badinput_cases.py``: a brute-force oracle, a memory limit, a clean
interpreter exit."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import scipy.sparse as sp

import aerec
from aerec import _memory

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _data(n_users=60, n_items=30, seed=0):
    rng = np.random.default_rng(seed)
    d = (rng.random((n_users, n_items)) < 0.2).astype(np.float32)
    d[np.arange(n_users), np.arange(n_users) % n_items] = 1
    return sp.csr_matrix(d)


def _run(code, **env):
    e = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(os.path.abspath(aerec.__file__))), OMP_NUM_THREADS="1", **env)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          env=e, timeout=300)


# -- section 4: silent wrong results --------------------------------------------------------------

def test_user_autorec_similar_items_matches_brute_force_cosine():
    X = _data()
    R = X.copy()
    R.data = np.random.default_rng(1).integers(1, 6, R.nnz).astype(np.float32)
    model = aerec.AutoRec(kind="user", hidden=7, epochs=3, random_state=0).fit(R)
    V = model.item_vectors()
    assert V.shape == (X.shape[1], 7)  # was (hidden, n_items): transposed
    W1 = model.net_.get_params()[2]  # decoder (hidden, n_items): one column per item
    np.testing.assert_array_equal(V, W1.T)
    Vn = V.astype(np.float64) / np.linalg.norm(V.astype(np.float64), axis=1, keepdims=True)
    S = Vn @ Vn.T
    for item in (0, 5, 29):
        ids, scores = model.similar_items(item, k=5)
        s = S[item].copy()
        s[item] = -np.inf
        expect = np.lexsort((np.arange(len(s)), -s))[:5]
        np.testing.assert_array_equal(ids, expect)
        np.testing.assert_allclose(scores, s[expect], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("make", [aerec.Popularity, lambda: aerec.EASE(l2=10.0),
                                  lambda: aerec.MultDAE(hidden=(8,), latent=4, epochs=1),
                                  lambda: aerec.MultVAE(hidden=(8,), latent=4, epochs=1),
                                  lambda: aerec.CDAE(latent=4, epochs=1),
                                  lambda: aerec.AutoRec(kind="user", hidden=6, epochs=1)],
                         ids=["Popularity", "EASE", "MultDAE", "MultVAE", "CDAE", "AutoRec-user"])
def test_unknown_user_with_training_shaped_history_is_not_clipped(make):
    X = _data()
    model = make().fit(X)
    n = X.shape[0]
    # the old code clipped n + 3 to n - 1 and answered for the last training user
    with pytest.raises(aerec.UnknownIdError, match="unknown"):
        model.recommend([n + 3], user_items=X, k=5)
    a = model.recommend([n - 1, 2], user_items=X, k=5)
    b = model.recommend([n - 1, 2], k=5)
    np.testing.assert_array_equal(a[0], b[0])


@pytest.mark.parametrize("batch_size", [-1, 0, -(2 ** 40)])
def test_recommend_negative_batch_size_raises_instead_of_returning_garbage(batch_size):
    model = aerec.Popularity().fit(_data())
    with pytest.raises(ValueError, match="batch_size"):
        model.recommend([0, 1, 2], k=3, batch_size=batch_size)


def test_ease_rejects_non_finite_l2_everywhere():
    X = _data()
    for l2 in (float("inf"), float("nan")):
        with pytest.raises(ValueError, match="finite"):
            aerec.EASE(l2=l2)
        with pytest.raises(ValueError, match="finite"):
            aerec.EASE().set_params(l2=l2).fit(X)
    ids, _ = aerec.EASE(l2=10.0).fit(X).recommend(np.arange(5), k=3)
    assert (ids >= 0).all()


# -- section 3: malformed CSR never reaches scipy's or aerec's C code ------------------------------

def test_corrupt_csr_is_refused_and_the_interpreter_exits_cleanly():
    r = _run("""
        import numpy as np, scipy.sparse as sp, aerec
        d = (np.random.default_rng(0).random((50, 30)) < 0.3).astype(np.float32)
        X = sp.csr_matrix(d)
        def bad(**kw):
            m = X.copy()
            for k, v in kw.items():
                a = getattr(m, k).copy(); a[v[0]] = v[1]; setattr(m, k, a)
            return m
        cases = [(aerec.Popularity, bad(indptr=(5, 10**6))), (aerec.Popularity, bad(indptr=(5, -7))),
                 (lambda: aerec.AutoRec(epochs=1), bad(indices=(3, 10**8))),
                 (aerec.Popularity, bad(indices=(3, 10**8))), (aerec.Popularity, bad(indices=(3, -1))),
                 (lambda: aerec.MultVAE(latent=4, epochs=1), bad(indptr=(-1, 3)))]
        for make, m in cases:
            try:
                make().fit(m)
            except ValueError as e:
                print("refused:", str(e)[:60])
            else:
                raise SystemExit("accepted a corrupt matrix")
        aerec.MultVAE(latent=4, epochs=1).fit(X)  # the next fit crashed after a corrupt one
        print("ok")
    """)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.count("refused:") == 6 and r.stdout.strip().endswith("ok")
    assert "free()" not in r.stderr and "corrupted" not in r.stderr


def test_popularity_never_drops_out_of_range_entries_silently():
    m = _data().copy()
    m.indices = m.indices.copy()
    m.indices[0] = -1
    with pytest.raises(ValueError, match="column index -1"):
        aerec.Popularity().fit(m)


def test_validation_does_not_sort_the_callers_arrays_in_place():
    X = _data()
    m = X.copy()
    m.indices[:2] = m.indices[:2][::-1].copy()
    m.has_sorted_indices = False
    before = m.indices.copy()
    aerec.Popularity().fit(m)
    np.testing.assert_array_equal(m.indices, before)


# -- section 5: EASE memory guard ------------------------------------------------------------------

def _fake_cgroup(tmp_path, files, proc):
    for rel, text in files.items():
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    cg = tmp_path / "proc_cgroup"
    cg.write_text(proc)
    return str(tmp_path), str(cg)


def test_cgroup_v2_memory_max_is_honoured(tmp_path):
    root, proc = _fake_cgroup(tmp_path, {"box/memory.max": "1000000000\n", "box/memory.current": "400000000\n",
                                         "memory.max": "max\n"}, "0::/box\n")
    assert _memory._cgroup_headroom(root, proc) == 600_000_000


def test_cgroup_v2_parent_limit_binds(tmp_path):
    root, proc = _fake_cgroup(tmp_path, {"a/memory.max": "500\n", "a/memory.current": "100\n",
                                         "a/b/memory.max": "max\n", "a/b/memory.current": "50\n"}, "0::/a/b\n")
    assert _memory._cgroup_headroom(root, proc) == 400


def test_cgroup_v1_limit_in_bytes_is_honoured(tmp_path):
    root, proc = _fake_cgroup(tmp_path, {"memory/docker/x/memory.limit_in_bytes": "2000\n",
                                         "memory/docker/x/memory.usage_in_bytes": "500\n",
                                         "memory/memory.limit_in_bytes": str(2 ** 63 - 4096) + "\n"},
                              "4:memory:/docker/x\n0::/\n")
    assert _memory._cgroup_headroom(root, proc) == 1500


def test_no_cgroup_limit_means_none(tmp_path):
    root, proc = _fake_cgroup(tmp_path, {"memory.max": "max\n", "memory/memory.limit_in_bytes":
                                         str(2 ** 63 - 4096) + "\n"}, "0::/\n")
    assert _memory._cgroup_headroom(root, proc) is None


def test_available_memory_takes_the_least_of_meminfo_cgroup_and_rlimit(monkeypatch):
    monkeypatch.setattr(_memory, "_cgroup_headroom", lambda: 123_456)
    monkeypatch.setattr(_memory, "_rlimit_headroom", lambda: None)
    assert _memory.available_memory() == 123_456
    monkeypatch.setattr(_memory, "_rlimit_headroom", lambda: 1_000)
    assert _memory.available_memory() == 1_000


def test_ease_refuses_under_rlimit_as_before_allocating():
    # 6000 items need 6000^2 * 4 B = 137 MiB in float32; the address space left is 64 MiB
    r = _run("""
        import resource, numpy as np, scipy.sparse as sp, aerec
        vm = int([l for l in open('/proc/self/status') if l.startswith('VmSize')][0].split()[1]) * 1024
        resource.setrlimit(resource.RLIMIT_AS, (vm + 64 * 2**20, resource.RLIM_INFINITY))
        X = sp.random(200, 6000, density=0.002, format='csr', random_state=0, dtype=np.float32)
        X.data[:] = 1
        try:
            aerec.EASE().fit(X)
        except MemoryError as e:
            print('refused:', e)
    """)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "refused: EASE on 6000 items needs" in r.stdout
    assert "use dtype='float32'" not in r.stdout  # it is float32 already


def test_ease_memory_message_suggests_float32_only_for_float64():
    X = _data()
    with pytest.raises(MemoryError) as e32:
        aerec.EASE(max_memory=1).fit(X)
    assert "dtype='float32'" not in str(e32.value) and "filter rare items" in str(e32.value)
    with pytest.raises(MemoryError, match="dtype='float32'"):
        aerec.EASE(max_memory=1, dtype="float64").fit(X)


# -- section 6: unclear errors -----------------------------------------------------------------------

def test_topk_k_beyond_int64_returns_every_item():
    items = np.random.default_rng(0).standard_normal((9, 3)).astype(np.float32)
    for precision in ("fp32", "int8"):
        index = aerec.TopK(items, precision=precision)
        ids, scores = index.search(items[:2], k=2 ** 64)
        assert ids.shape == (2, 9)
        ref, _ = index.search(items[:2], k=9)
        np.testing.assert_array_equal(ids, ref)


def test_fit_batch_size_beyond_int64_is_one_batch():
    X = _data()
    a = aerec.MultDAE(hidden=(8,), latent=4, epochs=1, random_state=0).fit(X, batch_size=2 ** 70)
    b = aerec.MultDAE(hidden=(8,), latent=4, epochs=1, random_state=0).fit(X, batch_size=X.shape[0])
    for p, q in zip(a.net_.get_params(), b.net_.get_params()):
        np.testing.assert_array_equal(p, q)


def test_read_csv_utf8_bom_and_non_utf8(tmp_path):
    p = tmp_path / "excel.csv"
    p.write_bytes("\ufeffuserId,movieId,rating\n1,10,4\n2,10,5\n".encode())
    d = aerec.data.read_csv(p)
    assert d.n_users == 2 and d.is_explicit
    q = tmp_path / "latin.csv"
    q.write_bytes("user,item\nJos\xe9,1\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin\.csv.*encoding="):
        aerec.data.read_csv(q)
    assert aerec.data.read_csv(q, encoding="latin-1").user_map.raw_ids.tolist() == ["José"]
    r = tmp_path / "nocols.csv"
    r.write_text("a,b\n1,2\n")
    with pytest.raises(KeyError) as e:
        aerec.data.read_csv(r)
    assert "columns=" in str(e.value) and "user_col" not in str(e.value)


def test_ids_beyond_64_bits_and_uint64_ids():
    with pytest.raises(ValueError, match="as strings"):
        aerec.data.Interactions.from_arrays([2 ** 70, 1], [1, 2])
    big = [2 ** 64 - 1, 2 ** 64 - 2, 2 ** 63]
    d = aerec.data.Interactions.from_arrays(big, [1, 2, 3])
    assert sorted(d.user_map.raw_ids.tolist()) == sorted(big)  # exact: no float64, no wrap-around
    assert d.user_map.to_index([2 ** 63])[0] == 0


def test_offline_movielens_says_where_to_put_the_files(tmp_path):
    def offline(url):
        import urllib.error
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")
    with pytest.raises(ConnectionError) as e:
        aerec.datasets.movielens("ml-100k", path=tmp_path, opener=offline)
    msg = str(e.value)
    assert "ml-100k.zip" in msg and str(tmp_path / "ml-100k" / "u.data") in msg and "AEREC_DATA" in msg


def test_from_dataframe_duplicate_column_names():
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame([[1, 2, 3]], columns=["user", "user", "item"])
    with pytest.raises(ValueError, match="appears 2 times"):
        aerec.data.Interactions.from_dataframe(df)


def test_read_csv_ids_beyond_64_bits_stay_text(tmp_path):
    p = tmp_path / "big.csv"
    p.write_text(f"{2 ** 70},1,3\n4,2,5\n")
    d = aerec.data.read_csv(p)
    assert str(2 ** 70) in [str(x) for x in d.user_map.raw_ids.tolist()]


# -- found by the independent sweep (tests/sweep_independent.py) ----------------------------------

def _with_zeros(m, where):
    """``m`` plus explicit zeros at ``where`` [(row, col), ...] (cells that are empty in ``m``)."""
    c = m.tocoo()
    r, k = zip(*where)
    z = sp.csr_matrix((np.r_[c.data, np.zeros(len(where))].astype(np.float32), (np.r_[c.row, r], np.r_[c.col, k])),
                      shape=m.shape)
    assert z.nnz == m.nnz + len(where)
    return z


def test_as_csr_drops_explicit_zeros_without_touching_the_callers_arrays():
    from aerec._validation import as_csr
    m = sp.csr_matrix(np.array([[0, 1, 0], [0, 0, 0], [2, 0, 3], [0, 0, 0]], np.float32))
    z = _with_zeros(m, [(0, 0), (1, 2), (3, 1)])  # a zero in a row with entries, and rows of only zeros
    before = [a.copy() for a in (z.data, z.indices, z.indptr)]
    out = as_csr(z)
    assert out.nnz == 3 and out.indptr.tolist() == [0, 1, 1, 3, 3] and out.indices.tolist() == [1, 0, 2]
    assert out.data.tolist() == [1.0, 2.0, 3.0]
    assert all(np.array_equal(a, b) for a, b in zip(before, (z.data, z.indices, z.indptr)))
    assert as_csr(z, binary=True).data.tolist() == [1.0, 1.0, 1.0]  # a binarised zero is not a 1


@pytest.mark.parametrize("make", [
    lambda: aerec.MultDAE(hidden=(8,), latent=4, epochs=2, random_state=0),
    lambda: aerec.MultVAE(hidden=(8,), latent=4, epochs=2, random_state=0),
    lambda: aerec.CDAE(latent=4, epochs=2, random_state=0),
    lambda: aerec.AutoRec(hidden=6, epochs=2, random_state=0),
    lambda: aerec.AutoRec(kind="user", hidden=6, epochs=2, random_state=0),
])
def test_explicit_zeros_are_not_interactions_in_fit_or_fold_in(make):
    X = _data()
    empty = [(u, j) for u in range(5) for j in range(X.shape[1]) if X[u, j] == 0][:20]
    Z = _with_zeros(X, empty)
    a, b = make().fit(Z), make().fit(X)
    assert np.allclose(a.score_items(np.arange(10)), b.score_items(np.arange(10)), atol=1e-6)
    if b.supports_fold_in:
        ids, _ = b.recommend(user_items=Z[:5], k=X.shape[1])
        ref, _ = b.recommend(user_items=X[:5], k=X.shape[1])
        assert (ids == ref).all()  # the zero cells are recommendable, not filtered as seen


def test_coo_duplicates_refused_for_models_but_summed_by_metrics_and_from_csr():
    X = _data()
    c = X.tocoo()
    D = sp.coo_matrix((np.r_[c.data, c.data[:2]], (np.r_[c.row, c.row[:2]], np.r_[c.col, c.col[:2]])),
                      shape=X.shape)
    with pytest.raises(ValueError, match="duplicate entries"):
        aerec.Popularity().fit(D)
    with pytest.raises(ValueError, match="duplicate entries"):
        aerec.EASE(l2=10.0).fit(X).recommend(user_items=D, k=3)
    # scipy's convention where it is documented: metrics and Interactions.from_csr sum duplicates
    inter = aerec.data.Interactions.from_csr(D)
    assert inter.nnz == X.nnz and inter.to_csr()[int(c.row[0]), int(c.col[0])] == 2
    ranked = np.tile(np.arange(3), (X.shape[0], 1))
    assert aerec.metrics.recall_at_k(ranked, D, 3) == aerec.metrics.recall_at_k(ranked, X, 3)


def test_sweep_script_cases_are_well_formed():
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import sweep_independent as S
    ids = [c[0] for c in S.CASES]
    assert len(ids) == len(set(ids)) and len(ids) > 900
    for _, code, expect in S.CASES:
        compile(code, "<case>", "exec")
        assert expect is None or (isinstance(expect, tuple) and len(expect) == 2)

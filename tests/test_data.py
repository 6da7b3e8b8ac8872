import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings, strategies as st

from aerec.data import CleaningReport, DataWarning, IdMap, Interactions
from aerec.data.readers import read_columns


def _check_csr(x: Interactions):
    m = x.to_csr()
    assert isinstance(m, sp.csr_matrix)
    assert m.dtype == np.float32
    assert m.indices.dtype == np.int32
    assert m.indptr.dtype in (np.int32, np.int64)
    assert m.has_canonical_format
    assert m.shape == (x.n_users, x.n_items)
    assert len(x.user_map) == x.n_users and len(x.item_map) == x.n_items
    if x.timestamps is not None:
        assert x.timestamps.shape == (m.nnz,) and x.timestamps.dtype == np.int64
    if x.values is not None:
        assert x.values.shape == (m.nnz,)
    else:
        assert np.all(m.data == 1)
    assert not np.any(m.data == 0)


# -- IdMap ------------------------------------------------------------------------------------

def test_idmap_roundtrip_ints_and_strings():
    m = IdMap(np.array([30, 10, 20]))
    assert len(m) == 3
    np.testing.assert_array_equal(m.to_index([10, 30]), [1, 0])
    np.testing.assert_array_equal(m.to_raw([2, 0]), [20, 30])
    assert m[20] == 2 and 20 in m and 40 not in m
    s = IdMap(["b", "a"])
    assert s["a"] == 1
    np.testing.assert_array_equal(s.to_raw(np.array([0, 1])), ["b", "a"])
    assert "zz" not in s and 3 not in s


def test_idmap_unknown_id_names_it():
    m = IdMap([1, 2, 3])
    with pytest.raises(KeyError, match="99"):
        m.to_index([1, 99])
    with pytest.raises(KeyError, match="'x'"):
        IdMap(["a"]).to_index(["x"])
    np.testing.assert_array_equal(m.to_index([3, 99], missing="ignore"), [2, -1])
    with pytest.raises(IndexError):
        m.to_raw([3])
    with pytest.raises(IndexError):
        m.to_raw([-1])


def test_idmap_identity_and_errors():
    m = IdMap.identity(5)
    assert m.is_identity
    np.testing.assert_array_equal(m.to_index([4, 0]), [4, 0])
    with pytest.raises(KeyError):
        m.to_index([5])
    with pytest.raises(ValueError, match="unique"):
        IdMap([1, 2, 1])
    with pytest.raises(TypeError, match="mix"):
        IdMap(np.array([1, "a"], dtype=object))
    with pytest.raises(ValueError, match="finite"):
        IdMap([1.0, np.nan])
    assert IdMap([1, 2]) == IdMap([1, 2]) and IdMap([1, 2]) != IdMap([2, 1])


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(-10**12, 10**12), unique=True, min_size=0, max_size=50))
def test_idmap_property(ids):
    m = IdMap(np.array(ids, dtype=np.int64))
    idx = m.to_index(np.array(ids, dtype=np.int64))
    np.testing.assert_array_equal(idx, np.arange(len(ids)))
    np.testing.assert_array_equal(m.to_raw(idx), ids)


# -- from_arrays and cleaning ----------------------------------------------------------------------

def test_from_arrays_basic():
    x = Interactions.from_arrays(["u2", "u1", "u1"], [7, 5, 7], [4.0, 3.0, 5.0], [30, 10, 20])
    _check_csr(x)
    assert (x.n_users, x.n_items, x.nnz) == (2, 2, 3)
    np.testing.assert_array_equal(x.user_map.raw_ids, ["u1", "u2"])
    np.testing.assert_array_equal(x.to_csr().toarray(), [[3, 5], [0, 4]])
    np.testing.assert_array_equal(x.timestamps, [10, 20, 30])
    np.testing.assert_array_equal(x.values, [3, 5, 4])
    assert x.is_explicit
    assert "n_users=2" in repr(x) and "timestamps" in repr(x)
    cols = x.to_arrays(raw_ids=True)
    np.testing.assert_array_equal(cols["users"], ["u1", "u1", "u2"])
    np.testing.assert_array_equal(cols["items"], [5, 7, 7])


def test_invalid_rows_dropped_with_report_and_warning():
    users = np.array([1, 2, None, 3, 4, 5, 6, 7, 1], dtype=object)
    items = np.array([1, 1, 1, None, 2, 2, 2, 2, 1], dtype=object)
    values = [5, 4, 3, 3, np.nan, -1, np.inf, 0, 2]
    ts = [1, 2, 3, 4, 5, 6, 7, 8, 9]
    with pytest.warns(DataWarning, match="dropped"):
        x = Interactions.from_arrays(users, items, values, ts)
    _check_csr(x)
    r = x.report
    assert isinstance(r, CleaningReport)
    assert r.n_input == 9 and r.n_output == 2
    assert r.dropped == {"missing_user": 1, "missing_item": 1, "bad_value": 3, "zero_value": 1,
                         "duplicate": 1}
    assert "missing user id" in r.summary()
    # duplicates: the latest timestamp wins by default
    assert x.to_csr()[x.user_map[1], x.item_map[1]] == 2
    assert r.to_dict()["n_input"] == 9


def test_invalid_rows_raise_and_drop_modes():
    with pytest.raises(ValueError, match="bad_value"):
        Interactions.from_arrays([1, 2], [1, 1], [1.0, np.nan], on_invalid="raise")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        x = Interactions.from_arrays([1, 2], [1, 1], [1.0, np.nan], on_invalid="drop")
    assert x.nnz == 1 and x.report.dropped == {"bad_value": 1}


def test_bad_timestamps():
    ts = np.array(["2020-01-01", "garbage", "", "1600000000", "-5", None], dtype=object)
    x = Interactions.from_arrays(np.arange(6), np.arange(6), timestamps=ts, on_invalid="drop")
    assert x.report.dropped == {"bad_timestamp": 4}
    np.testing.assert_array_equal(x.timestamps, [1577836800, 1600000000])
    y = Interactions.from_arrays([1, 2], [1, 2], timestamps=np.array(["2021-01-01", "NaT"],
                                                                      dtype="datetime64[s]"),
                                 on_invalid="drop")
    assert y.nnz == 1 and y.report.dropped == {"bad_timestamp": 1}
    z = Interactions.from_arrays([1, 2], [1, 2], timestamps=[1.5, np.inf], on_invalid="drop")
    np.testing.assert_array_equal(z.timestamps, [1])


def test_mismatched_lengths_and_bad_options():
    with pytest.raises(ValueError, match="same length"):
        Interactions.from_arrays([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="values has 1 rows"):
        Interactions.from_arrays([1, 2], [1, 2], [1.0])
    with pytest.raises(ValueError, match="timestamps has 3 rows"):
        Interactions.from_arrays([1, 2], [1, 2], timestamps=[1, 2, 3])
    with pytest.raises(ValueError, match="duplicates"):
        Interactions.from_arrays([1], [1], duplicates="max")
    with pytest.raises(ValueError, match="on_invalid"):
        Interactions.from_arrays([1], [1], on_invalid="ignore")
    with pytest.raises(ValueError, match="1-D"):
        Interactions.from_arrays(np.ones((2, 2)), np.ones((2, 2)))
    with pytest.raises(TypeError, match="booleans"):
        Interactions.from_arrays([True, False], [1, 2])


def test_duplicates_policies():
    u, i, v, t = [1, 1, 1], [2, 2, 2], [1.0, 5.0, 3.0], [10, 30, 20]
    last = Interactions.from_arrays(u, i, v, t, on_invalid="drop")
    first = Interactions.from_arrays(u, i, v, t, duplicates="first", on_invalid="drop")
    total = Interactions.from_arrays(u, i, v, t, duplicates="sum", on_invalid="drop")
    assert last.values[0] == 5 and last.timestamps[0] == 30
    assert first.values[0] == 1 and first.timestamps[0] == 10
    assert total.values[0] == 9
    # without timestamps, the row order decides
    assert Interactions.from_arrays(u, i, v, on_invalid="drop").values[0] == 3
    with pytest.raises(ValueError, match="duplicate"):
        Interactions.from_arrays(u, i, v, duplicates="raise")


def test_given_maps_and_unknown_ids():
    umap, imap = IdMap([10, 20]), IdMap(["a", "b", "c"])
    x = Interactions.from_arrays([20, 10], ["c", "a"], user_map=umap, item_map=imap)
    assert x.shape == (2, 3)
    np.testing.assert_array_equal(x.to_csr().toarray(), [[1, 0, 0], [0, 0, 1]])
    with pytest.raises(KeyError, match="30"):
        Interactions.from_arrays([30], ["a"], user_map=umap, item_map=imap)
    y = Interactions.from_arrays([30, 10], ["a", "zz"], user_map=umap, item_map=imap, unknown="drop",
                                 on_invalid="drop")
    assert y.nnz == 0 and y.report.dropped == {"unknown_user": 1, "unknown_item": 1}
    # a new user map only holds users with accepted rows
    z = Interactions.from_arrays([1, 2, 2], ["a", "zz", "b"], item_map=imap, unknown="drop",
                                 on_invalid="drop")
    assert z.user_map.raw_ids.tolist() == [1, 2] and z.nnz == 2
    w = Interactions.from_arrays([1, 3], ["a", "zz"], item_map=imap, unknown="drop", on_invalid="drop")
    assert w.user_map.raw_ids.tolist() == [1]


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 60), st.integers(0, 2**31 - 1))
def test_from_arrays_matches_dict_reference(n, seed):
    rng = np.random.default_rng(seed)
    users = rng.integers(0, 8, n)
    items = rng.integers(100, 110, n)
    vals = rng.integers(1, 6, n).astype(float)
    ts = rng.integers(0, 5, n)
    x = Interactions.from_arrays(users, items, vals, ts, on_invalid="drop")
    _check_csr(x)
    ref = {}
    for j in range(n):  # keep latest timestamp, ties -> later row
        key = (users[j], items[j])
        if key not in ref or ts[j] >= ref[key][1]:
            ref[key] = (vals[j], ts[j])
    got = {}
    cols = x.to_arrays(raw_ids=True)
    for u, i, v, t in zip(cols["users"], cols["items"], cols["values"], cols["timestamps"]):
        got[(u, i)] = (v, t)
    assert got == {k: (np.float32(v), t) for k, (v, t) in ref.items()}


# -- from_csr / dataframe / csv --------------------------------------------------------------------

def test_from_csr():
    m = sp.coo_matrix(([1.0, 2.0, 0.0, np.nan, 1.0], ([0, 0, 1, 1, 0], [1, 1, 0, 2, 3])), shape=(3, 4))
    with pytest.warns(DataWarning):
        x = Interactions.from_csr(m)
    _check_csr(x)
    assert x.shape == (3, 4)  # empty rows/columns are kept
    np.testing.assert_array_equal(x.to_csr().toarray(), [[0, 3, 0, 1], [0, 0, 0, 0], [0, 0, 0, 0]])
    assert x.report.dropped == {"bad_value": 1, "zero_value": 1}
    assert x.is_explicit
    b = Interactions.from_csr(sp.identity(3, format="csr"), item_ids=["a", "b", "c"])
    assert not b.is_explicit and b.values is None and b.item_map["c"] == 2
    with pytest.raises(TypeError, match="scipy.sparse"):
        Interactions.from_csr(np.eye(3))
    with pytest.raises(ValueError, match="lengths"):
        Interactions.from_csr(sp.identity(3, format="csr"), user_ids=[1, 2])
    ts = Interactions.from_csr(sp.identity(2, format="csr"), timestamps=[5, 6])
    np.testing.assert_array_equal(ts.timestamps, [5, 6])


def test_from_dataframe():
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame({"userId": [1, 1, 2, None], "movieId": [10, 20, 10, 10],
                       "rating": [4.0, 3.5, 5.0, 1.0],
                       "timestamp": pd.to_datetime(["2020-01-01", "2020-01-02", None, "2020-01-04"])})
    x = Interactions.from_dataframe(df, on_invalid="drop")
    assert x.nnz == 2 and x.report.dropped == {"missing_user": 1, "bad_timestamp": 1}
    np.testing.assert_array_equal(x.timestamps, [1577836800, 1577923200])
    y = Interactions.from_dataframe(df, value_col=False, timestamp_col=False, on_invalid="drop")
    assert not y.is_explicit and y.timestamps is None and y.nnz == 3
    with pytest.raises(KeyError, match="nope"):
        Interactions.from_dataframe(df, user_col="nope")
    nullable = pd.DataFrame({"user": pd.array([1, None, 3], dtype="Int64"), "item": ["a", "b", "c"]})
    z = Interactions.from_dataframe(nullable, on_invalid="drop")
    assert z.nnz == 2 and z.user_map.raw_ids.dtype == np.int64


def test_dataframe_requires_pandas(monkeypatch):
    import builtins
    real = builtins.__import__

    def fake(name, *a, **k):
        if name == "pandas" or name.startswith("pandas."):
            raise ImportError("no pandas here")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", fake)
    with pytest.raises(ImportError, match="pip install pandas"):
        Interactions.from_dataframe(object())


@pytest.mark.parametrize("engine", ["numpy", "pandas"])
def test_read_csv_formats(tmp_path, engine):
    if engine == "pandas":
        pytest.importorskip("pandas")
    (tmp_path / "a.csv").write_text("userId,movieId,rating,timestamp\n1,10,4.0,100\n2,10,3.5,200\n")
    (tmp_path / "b.tsv").write_text("1\t10\t4\t100\n2\t20\t5\t200\n2\t20\t1\t50\n")
    (tmp_path / "c.dat").write_text("1::10::4::100\n3::30::2::300\n")
    a = read_columns(tmp_path / "a.csv", engine=engine)
    np.testing.assert_array_equal(a["users"], [1, 2])
    np.testing.assert_array_equal(a["values"], [4.0, 3.5])
    x = Interactions.read_csv(tmp_path / "a.csv")
    assert x.shape == (2, 1) and x.values.tolist() == [4.0, 3.5]
    y = Interactions.read_csv(tmp_path / "b.tsv", sep="\t", on_invalid="drop")
    assert y.nnz == 2 and y.report.dropped == {"duplicate": 1}
    assert y.values.tolist() == [4.0, 5.0]  # the latest (ts 200) row wins
    z = Interactions.read_csv(tmp_path / "c.dat", sep="::", columns=[0, 1, 2, 3])
    assert z.shape == (2, 2) and z.timestamps.tolist() == [100, 300]
    w = Interactions.read_csv(tmp_path / "a.csv", columns={"user": "userId", "item": "movieId"})
    assert w.values is None and w.timestamps is None
    cols = read_columns(tmp_path / "c.dat", sep="::", columns=[0, 1], engine=engine)
    assert cols["values"] is None
    for f in ("a.csv", "b.tsv", "c.dat"):  # separator detection
        auto = read_columns(tmp_path / f, sep=None, engine=engine)
        assert auto["users"].size >= 2 and auto["timestamps"] is not None, f


def test_read_csv_strings_and_bad_rows(tmp_path):
    (tmp_path / "s.csv").write_text("user,item,rating\nalice,x,5\nbob,y,oops\n,z,3\n")
    for engine in ("numpy", "pandas"):
        if engine == "pandas":
            pytest.importorskip("pandas")
        cols = read_columns(tmp_path / "s.csv", engine=engine)
        x = Interactions.from_arrays(cols["users"], cols["items"], cols["values"], on_invalid="drop")
        assert x.nnz == 1, engine
        assert x.report.dropped == {"missing_user": 1, "bad_value": 1}, engine
        assert x.user_map.raw_ids.tolist() == ["alice"]


def test_read_csv_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        Interactions.read_csv(tmp_path / "missing.csv")
    (tmp_path / "one.csv").write_text("1;2;3\n")
    with pytest.raises(ValueError, match="separator"):
        Interactions.read_csv(tmp_path / "one.csv")
    (tmp_path / "h.csv").write_text("1,2\n")
    with pytest.raises(ValueError, match="no header"):
        Interactions.read_csv(tmp_path / "h.csv", columns=["user", "item"])
    with pytest.raises(ValueError, match="out of range"):
        Interactions.read_csv(tmp_path / "h.csv", columns=[0, 5])


# -- transforms ------------------------------------------------------------------------------------

def _toy():
    users = [1, 1, 1, 2, 2, 3, 4, 4, 4, 4]
    items = [1, 2, 3, 1, 2, 1, 1, 2, 3, 4]
    vals = [5, 4, 1, 5, 2, 3, 4, 4, 5, 1]
    ts = list(range(10))
    return Interactions.from_arrays(users, items, vals, ts)


def test_binarize():
    x = _toy()
    b = x.binarize(4)
    _check_csr(b)
    assert not b.is_explicit and b.values is None and b.shape == x.shape
    assert b.nnz == 6 and b.report.dropped == {"below_threshold": 4}
    dense = x.to_csr().toarray()
    np.testing.assert_array_equal(b.to_csr().toarray(), (dense >= 4).astype(np.float32))
    assert b.timestamps.tolist() == [0, 1, 3, 6, 7, 8]
    assert x.binarize().nnz == x.nnz
    e = x.binarize(5, drop_empty=True)
    assert e.n_users == 3 and e.n_items == 2
    with pytest.raises(ValueError, match="already binary"):
        b.binarize(1)
    with pytest.raises(ValueError, match="finite"):
        x.binarize(np.nan)


def test_filter_iterative():
    x = _toy()
    f = x.filter(min_user_count=2, min_item_count=3)
    _check_csr(f)
    # items with >=3: 1 (4 users), 2 (3 users); then user 3 has 1 item -> dropped; item 1 has 3 users
    np.testing.assert_array_equal(f.user_map.raw_ids, [1, 2, 4])
    np.testing.assert_array_equal(f.item_map.raw_ids, [1, 2])
    assert f.nnz == 6 and f.report.dropped["min_count"] == 4
    np.testing.assert_array_equal(f.timestamps, [0, 1, 3, 4, 6, 7])
    once = x.filter(min_user_count=3, min_item_count=3, iterative=False)
    it = x.filter(min_user_count=3, min_item_count=3, iterative=True)
    assert once.nnz >= it.nnz
    uc, ic = it.user_counts(), it.item_counts()
    assert (uc >= 3).all() and (ic >= 3).all()
    with pytest.raises(ValueError, match="min_user_count"):
        x.filter(-1)


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(1, 4), st.integers(1, 4))
def test_filter_fixed_point(seed, mu, mi):
    rng = np.random.default_rng(seed)
    m = sp.random(30, 20, density=0.15, random_state=rng, format="csr")
    m.data[:] = 1
    x = Interactions.from_csr(m)
    f = x.filter(mu, mi)
    if f.nnz:
        assert f.user_counts().min() >= mu and f.item_counts().min() >= mi
    # the result is the largest such sub-matrix: filtering again changes nothing
    assert f.filter(mu, mi).nnz == f.nnz


def test_subset_and_user_items():
    x = _toy()
    s = x.subset_users([3, 0])
    _check_csr(s)
    np.testing.assert_array_equal(s.user_map.raw_ids, [4, 1])
    assert s.item_map == x.item_map
    np.testing.assert_array_equal(s.to_csr().toarray(), x.to_csr().toarray()[[3, 0]])
    np.testing.assert_array_equal(s.timestamps, [6, 7, 8, 9, 0, 1, 2])
    mask = np.array([True, False, True, False])
    assert x.subset_users(mask).n_users == 2
    r = x.user_items([1, 3])
    assert r.shape == (2, 4) and r.nnz == 6
    assert x.user_items(0).shape == (1, 4)
    with pytest.raises(IndexError):
        x.user_items([4])
    with pytest.raises(TypeError, match="user_map.to_index"):
        x.user_items(["a"])


@pytest.mark.parametrize("engine", ["numpy", "pandas"])
def test_read_csv_header_only_and_crlf(tmp_path, engine):
    if engine == "pandas":
        pytest.importorskip("pandas")
    (tmp_path / "h.csv").write_text("user,item,rating\n")
    cols = read_columns(tmp_path / "h.csv", engine=engine)
    assert cols["users"].size == 0 and cols["values"].size == 0
    (tmp_path / "w.csv").write_bytes(b"user,item\r\n1,2\r\n3,4\r\n")
    cols = read_columns(tmp_path / "w.csv", engine=engine)
    np.testing.assert_array_equal(cols["items"], [2, 4])
    (tmp_path / "h.dat").write_text("user::item\n1::2\n")
    cols = read_columns(tmp_path / "h.dat", sep="::", engine=engine)
    np.testing.assert_array_equal(cols["users"], [1])


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 60), st.integers(0, 2**31 - 1))
def test_duplicates_first_matches_reference(n, seed):
    rng = np.random.default_rng(seed)
    users, items = rng.integers(0, 4, n), rng.integers(0, 3, n)
    vals, ts = rng.integers(1, 6, n).astype(float), rng.integers(0, 3, n)
    x = Interactions.from_arrays(users, items, vals, ts, duplicates="first", on_invalid="drop")
    ref = {}
    for j in range(n):  # earliest timestamp, ties -> earlier row
        key = (users[j], items[j])
        if key not in ref or ts[j] < ref[key][1]:
            ref[key] = (vals[j], ts[j])
    cols = x.to_arrays(raw_ids=True)
    got = {(u, i): (v, t) for u, i, v, t in zip(cols["users"], cols["items"], cols["values"],
                                                 cols["timestamps"])}
    assert got == {k: (np.float32(v), t) for k, (v, t) in ref.items()}
    s = Interactions.from_arrays(users, items, vals, duplicates="sum", on_invalid="drop")
    dense = np.zeros((4, 3))
    np.add.at(dense, (users, items), vals)
    np.testing.assert_allclose(s.to_csr().toarray(),
                               dense[np.ix_(s.user_map.raw_ids, s.item_map.raw_ids)])

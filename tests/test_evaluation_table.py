"""aerec.evaluate's result table, aerec.compare, and the ranking metrics cross-checked against
independent implementations (scikit-learn's ndcg_score / recall_score, and plain Python sets)."""
import math
import pickle

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings, strategies as st

import aerec
from aerec import metrics
from aerec.evaluation import Comparison, EvaluationResult


@pytest.fixture(scope="module")
def split():
    data = aerec.datasets.synthetic(n_users=400, n_items=120, density=0.06, random_state=0)
    return aerec.data.strong_generalization_split(data, n_validation_users=40, n_test_users=40, random_state=0)


# -- the result table ------------------------------------------------------------------------------

def test_evaluate_returns_a_dict_that_prints_as_a_table(split):
    res = aerec.evaluate(aerec.Popularity().fit(split.train), split, ks=(5, 20))
    assert isinstance(res, dict) and isinstance(res, EvaluationResult)
    assert 0 <= res["ndcg@20"] <= 1 and res["n_users"] > 0          # existing callers keep working
    assert set(res) == {f"{m}@{k}" for m in metrics.RANKING_METRICS for k in (5, 20)} | {"n_users"}
    text = str(res)
    lines = text.splitlines()
    assert lines[0].split() == ["metric", "@5", "@20"]
    body = lines[1:1 + len(metrics.RANKING_METRICS)]
    assert [ln.split()[0] for ln in body] == list(metrics.RANKING_METRICS)
    assert len({len(ln) for ln in lines[:1 + len(body)]}) == 1        # aligned: every row as wide
    assert f"{res['ndcg@20']:.4f}" in text and "min(k, |held-out|)" in text
    assert repr(res) == text
    plain = res.to_dict()
    assert type(plain) is dict and plain == dict(res)
    assert type(plain["n_users"]) is int and type(plain["ndcg@5"]) is float
    back = pickle.loads(pickle.dumps(res))
    assert back == res and back.ks == (5, 20) and back.recall_denominator == "min_k"


def test_evaluation_result_to_frame(split):
    pd = pytest.importorskip("pandas", reason="to_frame() needs pandas (the pandas extra)")
    model = aerec.Popularity().fit(split.train)
    res = aerec.evaluate(model, split, ks=(5, 20), metrics=("ndcg", "recall"))
    frame = res.to_frame()
    assert list(frame.index) == ["ndcg", "recall"] and list(frame.columns) == [5, 20]
    assert frame.loc["recall", 20] == pytest.approx(res["recall@20"])
    per = aerec.evaluate(model, split, ks=10, metrics=("ndcg",), per_user=True)
    f = per.to_frame()
    assert isinstance(f, pd.DataFrame) and f.shape == (split.test.n_users, 1)
    np.testing.assert_array_equal(f.index.to_numpy(), split.test.users)
    assert "means shown" in str(per)
    assert "<table" in res._repr_html_()                      # notebooks show the DataFrame
    assert f"{np.nanmean(per['ndcg@10']):.4f}" in str(per)


def test_to_frame_without_pandas_names_the_fix(split, monkeypatch):
    import builtins
    real = builtins.__import__

    def no_pandas(name, *a, **kw):
        if name == "pandas" or name.startswith("pandas."):
            raise ImportError("No module named 'pandas'")
        return real(name, *a, **kw)
    res = aerec.evaluate(aerec.Popularity().fit(split.train), split, ks=5)
    monkeypatch.setattr(builtins, "__import__", no_pandas)
    with pytest.raises(ImportError, match=r"pip install pandas"):
        res.to_frame()
    assert res.to_dict()["n_users"] == res["n_users"]
    assert res._repr_html_() is None                           # notebooks fall back to the text table


# -- recall's denominator --------------------------------------------------------------------------

def test_recall_denominator_hand_computed():
    # user 0: 4 relevant items {0, 1, 2, 3}; the top 2 are both relevant
    # user 1: 1 relevant item {5}, ranked 2nd
    held = sp.csr_matrix(np.array([[1, 1, 1, 1, 0, 0], [0, 0, 0, 0, 0, 1]], dtype=np.float32))
    ranked = np.array([[0, 1, 4, 5], [4, 5, 0, 1]])
    # min(k, |T|): user 0 2/min(2, 4) = 1, user 1 1/min(2, 1) = 1
    assert metrics.recall_at_k(ranked, held, 2, per_user=True).tolist() == [1.0, 1.0]
    # |T|: user 0 2/4, user 1 1/1
    assert metrics.recall_at_k(ranked, held, 2, per_user=True, denominator="n_relevant").tolist() == [0.5, 1.0]
    res = metrics.ranking_metrics(ranked, held, ks=(1, 2), metrics=("recall",), recall_denominator="n_relevant")
    assert res["recall@1"] == pytest.approx((1 / 4 + 0) / 2) and res["recall@2"] == pytest.approx(0.75)
    # with |T| <= k the two agree
    assert metrics.recall_at_k(ranked, held, 4) == metrics.recall_at_k(ranked, held, 4, denominator="n_relevant")


def test_evaluate_recall_denominator(split):
    model = aerec.Popularity().fit(split.train)
    a = aerec.evaluate(model, split, ks=(1, 50), metrics=("recall", "ndcg"), per_user=True)
    b = aerec.evaluate(model, split, ks=(1, 50), metrics=("recall", "ndcg"), per_user=True,
                       recall_denominator="n_relevant")
    assert b.recall_denominator == "n_relevant" and "hits / |held-out|" in str(b)
    n_rel = np.diff(split.test.held_out.indptr)
    for k in (1, 50):
        # hits / |T| = (hits / min(k, |T|)) * min(k, |T|) / |T|
        np.testing.assert_allclose(b[f"recall@{k}"], a[f"recall@{k}"] * np.minimum(k, n_rel) / np.maximum(n_rel, 1))
        np.testing.assert_array_equal(b[f"ndcg@{k}"], a[f"ndcg@{k}"])     # only recall changes
    assert np.any((n_rel > 1) & (a["recall@1"] > 0))                       # the case where they differ
    assert np.nanmean(b["recall@1"]) < np.nanmean(a["recall@1"])
    ids, _ = model.recommend(user_items=split.test.fold_in, k=50)
    mean = aerec.evaluate(model, split, ks=50, metrics=("recall",), recall_denominator="n_relevant")
    assert mean["recall@50"] == pytest.approx(metrics.recall_at_k(ids, split.test.held_out, 50, denominator="n_relevant"))


@pytest.mark.parametrize("bad, exc", [("n", ValueError), ("min(k,R)", ValueError), (None, TypeError), (1, TypeError)])
def test_recall_denominator_rejects_bad_values(split, bad, exc):
    held = sp.csr_matrix(np.eye(3, dtype=np.float32))
    with pytest.raises(exc, match="min_k"):
        metrics.recall_at_k(np.array([[0], [1], [2]]), held, 1, denominator=bad)
    with pytest.raises(exc, match="n_relevant"):
        metrics.ranking_metrics(np.array([[0], [1], [2]]), held, ks=1, recall_denominator=bad)
    with pytest.raises(exc, match="recall_denominator"):
        aerec.evaluate(aerec.Popularity().fit(split.train), split, recall_denominator=bad)


# -- independent cross-checks ----------------------------------------------------------------------

def _dense_case(seed, n_users, n_items, density):
    rng = np.random.default_rng(seed)
    y_true = (rng.random((n_users, n_items)) < density).astype(np.float64)
    y_true[np.arange(n_users), rng.integers(0, n_items, n_users)] = 1.0  # >= 1 relevant item per user
    # distinct scores, so the ranking has no ties (sklearn averages over tied ranks)
    scores = np.stack([rng.permutation(n_items) for _ in range(n_users)]).astype(np.float64)
    ranked = np.argsort(-scores, axis=1, kind="stable")
    return y_true, scores, ranked


@settings(max_examples=60, deadline=None, derandomize=True)
@given(seed=st.integers(0, 2 ** 32 - 1), n_users=st.integers(1, 12), n_items=st.integers(2, 40),
       density=st.floats(0.0, 0.6), k=st.integers(1, 45), width=st.integers(0, 40))
def test_ndcg_matches_sklearn(seed, n_users, n_items, density, k, width):
    skm = pytest.importorskip("sklearn.metrics", reason="scikit-learn is the independent NDCG (test extra)")
    y_true, scores, ranked = _dense_case(seed, n_users, n_items, density)
    # the ranked list holds at least the top k (shorter lists are padded below; see the next test)
    L = min(n_items, max(k, width))
    ours = metrics.ndcg_at_k(ranked[:, :L], sp.csr_matrix(y_true), k, per_user=True)
    for u in range(n_users):
        want = skm.ndcg_score(y_true[u:u + 1], scores[u:u + 1], k=k)
        assert ours[u] == pytest.approx(want, rel=1e-12, abs=1e-12)
    assert metrics.ndcg_at_k(ranked[:, :L], sp.csr_matrix(y_true), k) == pytest.approx(
        skm.ndcg_score(y_true, scores, k=k), rel=1e-12, abs=1e-12)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(seed=st.integers(0, 2 ** 32 - 1), n_users=st.integers(1, 12), n_items=st.integers(2, 40),
       density=st.floats(0.0, 0.6), k=st.integers(1, 45), pad=st.integers(0, 5))
def test_recall_matches_sets_and_sklearn(seed, n_users, n_items, density, k, pad):
    skm = pytest.importorskip("sklearn.metrics", reason="scikit-learn is the independent recall (test extra)")
    y_true, _, ranked = _dense_case(seed, n_users, n_items, density)
    L = max(1, min(n_items, k) - pad)          # lists may be shorter than k: -1 padding is a miss
    r = np.full((n_users, max(L, min(k, n_items))), -1, dtype=np.int64)
    r[:, :L] = ranked[:, :L]
    held = sp.csr_matrix(y_true)
    liang = metrics.recall_at_k(r, held, k, per_user=True)
    textbook = metrics.recall_at_k(r, held, k, per_user=True, denominator="n_relevant")
    for u in range(n_users):
        relevant = set(np.flatnonzero(y_true[u]).tolist())
        top = [i for i in r[u, :k].tolist() if i >= 0]
        hits = len(relevant & set(top))
        assert liang[u] == pytest.approx(hits / min(k, len(relevant)), abs=1e-15)
        predicted = np.zeros(n_items)
        predicted[top] = 1
        assert textbook[u] == pytest.approx(skm.recall_score(y_true[u], predicted), abs=1e-15)
    ranked_all = metrics.ranking_metrics(r, held, ks=(k,), metrics=("recall",), recall_denominator="n_relevant")
    assert ranked_all[f"recall@{k}"] == pytest.approx(float(np.mean(textbook)))


def test_ndcg_hand_computed_against_sklearn():
    skm = pytest.importorskip("sklearn.metrics", reason="scikit-learn is the independent NDCG (test extra)")
    y_true = np.array([[0, 1, 0, 1, 1]], dtype=float)      # relevant: 1, 3, 4
    scores = np.array([[0.9, 0.8, 0.7, 0.6, 0.1]])         # ranking 0, 1, 2, 3, 4
    ranked = np.array([[0, 1, 2, 3, 4]])
    dcg = 1 / math.log2(3) + 1 / math.log2(5)              # hits at ranks 1 and 3 (0-based) within k=4
    idcg = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    ours = metrics.ndcg_at_k(ranked, sp.csr_matrix(y_true), 4)
    assert ours == pytest.approx(dcg / idcg) and ours == pytest.approx(skm.ndcg_score(y_true, scores, k=4))


# -- compare ---------------------------------------------------------------------------------------

def test_compare_fits_and_prints_one_row_per_model(split, capsys):
    fitted = aerec.Popularity().fit(split.train)
    dae = aerec.MultDAE(hidden=(16,), latent=8, epochs=2, batch_size=64, random_state=0)
    table = aerec.compare([fitted, aerec.EASE(l2=50.0), dae], split, ks=(10, 20))
    out = capsys.readouterr().out
    assert isinstance(table, Comparison) and list(table) == ["Popularity", "EASE", "MultDAE"]
    lines = out.strip().splitlines()
    assert lines[0].split() == ["model", "recall@10", "recall@20", "ndcg@10", "ndcg@20", "fit", "s", "users/s"]
    assert [ln.split()[0] for ln in lines[1:4]] == ["Popularity", "EASE", "MultDAE"]
    assert len({len(ln) for ln in lines[:4]}) == 1
    assert str(table) == out.strip()
    assert table["Popularity"]["fit_s"] is None and lines[1].split()[-2] == "-"   # came fitted
    assert table["EASE"]["fit_s"] > 0 and table["MultDAE"]["fit_s"] > 0
    assert dae.train_ is not None and len(dae.history_["val_ndcg@100"]) == 2      # fitted with validation
    for name in table:
        assert table[name]["users_per_s"] > 0 and table[name]["n_users"] == table.results[name]["n_users"]
        assert table[name]["ndcg@20"] == pytest.approx(aerec.evaluate(table.models[name], split, ks=20)["ndcg@20"])
    d = table.to_dict()
    assert set(d) == {"Popularity", "EASE", "MultDAE"} and set(d["EASE"]) >= {"ndcg@20", "fit_s", "users_per_s"}
    with pytest.raises(KeyError, match="no model named"):
        table["ItemKNN"]


def test_compare_names_frame_and_options(split, capsys):
    pd = pytest.importorskip("pandas", reason="to_frame() needs pandas (the pandas extra)")
    a, b = aerec.EASE(l2=10.0), aerec.EASE(l2=500.0)
    table = aerec.compare([a, b], split, ks=5, metrics=("ndcg",), verbose=False)
    assert capsys.readouterr().out == ""
    assert list(table) == ["EASE", "EASE (2)"]
    frame = table.to_frame()
    assert isinstance(frame, pd.DataFrame) and list(frame.index) == ["EASE", "EASE (2)"]
    assert frame.index.name == "model" and "ndcg@5" in frame.columns and "fit_s" in frame.columns
    assert "<table" in table._repr_html_()
    again = aerec.compare({"low": a, "high": b}, split, ks=5, metrics=("ndcg",), verbose=False)
    assert list(again) == ["low", "high"] and again["low"]["fit_s"] is None       # already fitted
    refit = aerec.compare({"low": a}, split, ks=5, metrics=("ndcg",), verbose=False, fit=True)
    assert refit["low"]["fit_s"] > 0
    nofit = aerec.compare([aerec.Popularity().fit(split.train)], split, ks=5, fit=False, verbose=False,
                          recall_denominator="n_relevant")
    assert "hits / |held-out|" in str(nofit)


@pytest.mark.parametrize("call, exc, frag", [
    (lambda s: aerec.compare([], s), ValueError, "at least one model"),
    (lambda s: aerec.compare(aerec.Popularity(), s), TypeError, "pass \\[model\\]"),
    (lambda s: aerec.compare([object()], s), TypeError, "recommend"),
    (lambda s: aerec.compare([aerec.Popularity()], s.test), TypeError, "Split"),
    (lambda s: aerec.compare([aerec.Popularity()], s, fit="yes"), ValueError, "fit must be"),
    (lambda s: aerec.compare([aerec.Popularity()], s, fit=1), ValueError, "fit must be"),
    (lambda s: aerec.compare([aerec.Popularity()], s, fit_kwargs=[("verbose", 1)]), TypeError, "fit_kwargs"),
    (lambda s: aerec.compare([aerec.Popularity()], s, metrics=("auc",)), ValueError, "unknown metric"),
    (lambda s: aerec.compare({1: aerec.Popularity()}, s), TypeError, "names"),
])
def test_compare_rejects_bad_input(split, call, exc, frag):
    with pytest.raises(exc, match=frag):
        call(split)

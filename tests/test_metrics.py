import math

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings, strategies as st

from aerec import metrics
from aerec.data import EvalSet, Interactions, random_split, strong_generalization_split
from aerec.evaluation import evaluate


# -- straightforward per-user references ---------------------------------------------------------

def _ref(name, ranked, held, k):
    out = []
    for u in range(ranked.shape[0]):
        rel = set(held.indices[held.indptr[u]:held.indptr[u + 1]][held.data[held.indptr[u]:held.indptr[u + 1]] != 0].tolist())
        lst = [int(x) for x in ranked[u, :k]]
        if not rel:
            out.append(math.nan)
            continue
        hits = [1 if (x >= 0 and x in rel) else 0 for x in lst]
        R = len(rel)
        if name == "recall":
            v = sum(hits) / min(k, R)
        elif name == "precision":
            v = sum(hits) / k
        elif name == "ndcg":
            dcg = sum(h / math.log2(j + 2) for j, h in enumerate(hits))
            idcg = sum(1 / math.log2(j + 2) for j in range(min(k, R)))
            v = dcg / idcg
        elif name == "map":
            s, c = 0.0, 0
            for j, h in enumerate(hits):
                if h:
                    c += 1
                    s += c / (j + 1)
            v = s / min(k, R)
        elif name == "mrr":
            v = 0.0
            for j, h in enumerate(hits):
                if h:
                    v = 1 / (j + 1)
                    break
        elif name == "hit_rate":
            v = float(any(hits))
        out.append(v)
    return np.array(out, dtype=np.float64)


FUNCS = {"recall": metrics.recall_at_k, "precision": metrics.precision_at_k, "ndcg": metrics.ndcg_at_k,
         "map": metrics.map_at_k, "mrr": metrics.mrr, "hit_rate": metrics.hit_rate_at_k}


def _random_case(rng, n_users, n_items, width, density, pad_prob):
    held = sp.random(n_users, n_items, density=density, random_state=rng, format="csr")
    held.data[:] = 1
    ranked = np.full((n_users, width), -1, dtype=np.int64)
    for u in range(n_users):
        L = min(width, n_items)
        ranked[u, :L] = rng.permutation(n_items)[:L]
        if rng.random() < pad_prob:
            cut = int(rng.integers(0, L + 1))
            ranked[u, cut:] = -1
    return ranked, held


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n_users=st.integers(1, 25), n_items=st.integers(1, 40),
       width=st.integers(1, 50), k=st.integers(1, 60), density=st.floats(0.0, 0.6),
       pad=st.floats(0.0, 1.0))
def test_metrics_match_python_loops(seed, n_users, n_items, width, k, density, pad):
    rng = np.random.default_rng(seed)
    ranked, held = _random_case(rng, n_users, n_items, width, density, pad)
    for name, fn in FUNCS.items():
        got = fn(ranked, held, k, per_user=True)
        want = _ref(name, ranked, held, k)
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12, equal_nan=True, err_msg=name)
        mean = fn(ranked, held, k)
        if np.all(np.isnan(want)):
            assert math.isnan(mean)
        else:
            assert mean == pytest.approx(float(np.nanmean(want)), rel=1e-12, abs=1e-12)
    # ranking_metrics computes the same from one lookup
    ks = sorted({1, k, width})
    res = metrics.ranking_metrics(ranked, held, ks, per_user=True)
    for name in FUNCS:
        for kk in ks:
            np.testing.assert_allclose(res[f"{name}@{kk}"], _ref(name, ranked, held, kk), equal_nan=True)
    assert res["n_users"] == int((np.diff(held.indptr) > 0).sum())


def test_known_values():
    held = sp.csr_matrix(np.array([[1, 1, 0, 0, 0], [0, 0, 0, 0, 0], [0, 0, 0, 0, 1]], dtype=np.float32))
    ranked = np.array([[1, 3, 0], [0, 1, 2], [2, 3, -1]])
    assert metrics.recall_at_k(ranked, held, 3, per_user=True)[0] == 1.0
    assert np.isnan(metrics.recall_at_k(ranked, held, 3, per_user=True)[1])  # empty held-out excluded
    assert metrics.recall_at_k(ranked, held, 3) == pytest.approx(0.5)
    assert metrics.recall_at_k(ranked, held, 1) == pytest.approx(0.5)  # min(k, |held|) = 1
    assert metrics.precision_at_k(ranked, held, 3) == pytest.approx((2 / 3 + 0) / 2)
    ndcg0 = (1 + 1 / math.log2(4)) / (1 + 1 / math.log2(3))
    assert metrics.ndcg_at_k(ranked, held, 3, per_user=True)[0] == pytest.approx(ndcg0)
    assert metrics.map_at_k(ranked, held, 3, per_user=True)[0] == pytest.approx((1 + 2 / 3) / 2)
    assert metrics.mrr(ranked, held, per_user=True)[0] == 1.0
    assert metrics.hit_rate_at_k(ranked, held, 3) == 0.5
    assert metrics.coverage(ranked, 5) == pytest.approx(4 / 5)
    assert metrics.coverage(ranked, 5, k=1) == pytest.approx(3 / 5)


def test_k_larger_than_lists_and_items():
    held = sp.csr_matrix(np.array([[1, 0, 1]], dtype=np.float32))
    ranked = np.array([[2, 1, 0]])
    assert metrics.recall_at_k(ranked, held, 100) == 1.0
    assert metrics.ndcg_at_k(ranked, held, 100) == pytest.approx((1 + 1 / 2) / (1 + 1 / math.log2(3)))
    assert metrics.precision_at_k(ranked, held, 100) == pytest.approx(2 / 100)


def test_empty_inputs():
    held = sp.csr_matrix((3, 4), dtype=np.float32)
    ranked = np.array([[0, 1], [2, 3], [1, 0]])
    assert math.isnan(metrics.ndcg_at_k(ranked, held, 2))
    assert np.isnan(metrics.ndcg_at_k(ranked, held, 2, per_user=True)).all()
    res = metrics.ranking_metrics(np.zeros((0, 5), np.int64), sp.csr_matrix((0, 7)), ks=(1, 5))
    assert res["n_users"] == 0 and math.isnan(res["recall@5"])
    # explicit zeros in held-out are not relevant
    z = sp.csr_matrix((np.array([0.0, 1.0]), np.array([0, 1]), np.array([0, 2])), shape=(1, 3))
    assert metrics.recall_at_k(np.array([[0, 2]]), z, 2) == 0.0


def test_unsorted_duplicate_and_coo_held_out():
    # non-canonical CSR (unsorted, duplicate entries) and COO input give the same answers
    held = sp.csr_matrix((np.array([1.0, 1.0, 1.0]), np.array([3, 1, 3]), np.array([0, 3])), shape=(1, 5))
    assert not held.has_canonical_format
    ranked = np.array([[3, 1, 0]])
    assert metrics.recall_at_k(ranked, held, 3) == 1.0
    assert metrics.recall_at_k(ranked, held.tocoo(), 2) == 1.0
    assert held.indices.tolist() == [3, 1, 3]  # the caller's matrix is not modified


def test_bad_input_errors():
    held = sp.csr_matrix(np.eye(3, dtype=np.float32))
    good = np.array([[0, 1], [1, 2], [2, 0]])
    with pytest.raises(ValueError, match=r"k must be positive \(an integer >= 1\)"):
        metrics.recall_at_k(good, held, 0)
    with pytest.raises(ValueError, match=r"k must be positive \(an integer >= 1\)"):
        metrics.ndcg_at_k(good, held, -3)
    with pytest.raises(TypeError, match="k must be"):
        metrics.ndcg_at_k(good, held, 2.5)
    with pytest.raises(ValueError, match="out of range"):
        metrics.recall_at_k(np.array([[0, 3], [1, 2], [2, 0]]), held, 2)
    with pytest.raises(ValueError, match=">= -1"):
        metrics.recall_at_k(np.array([[0, -2], [1, 2], [2, 0]]), held, 2)
    with pytest.raises(ValueError, match="repeats"):
        metrics.recall_at_k(np.array([[0, 0], [1, 2], [2, 0]]), held, 2)
    with pytest.raises(ValueError, match="align"):
        metrics.recall_at_k(good[:2], held, 2)
    with pytest.raises(ValueError, match="2-D"):
        metrics.recall_at_k(np.array([0, 1]), held, 2)
    with pytest.raises(TypeError, match="integer"):
        metrics.recall_at_k(good.astype(float), held, 2)
    with pytest.raises(TypeError, match="scipy.sparse"):
        metrics.recall_at_k(good, np.eye(3), 2)
    with pytest.raises(ValueError, match="unknown metric"):
        metrics.ranking_metrics(good, held, (1,), metrics=("auc",))
    with pytest.raises(ValueError, match="n_items"):
        metrics.coverage(good, 0)


def test_rmse_mae():
    assert metrics.rmse([1, 2, 3], [1, 2, 5]) == pytest.approx(math.sqrt(4 / 3))
    assert metrics.mae(np.array([1.0, 2.0]), np.array([2.0, 4.0])) == pytest.approx(1.5)
    a = sp.csr_matrix(np.array([[5, 0], [0, 3]], dtype=np.float32))
    b = sp.csr_matrix(np.array([[4, 0], [0, 3]], dtype=np.float32))
    assert metrics.rmse(a, b) == pytest.approx(math.sqrt(0.5))
    with pytest.raises(ValueError, match="sparsity"):
        metrics.rmse(a, sp.csr_matrix(np.array([[4, 1], [0, 3]], dtype=np.float32)))
    with pytest.raises(ValueError, match="2 values"):
        metrics.rmse([1, 2], [1, 2, 3])
    with pytest.raises(ValueError, match="finite"):
        metrics.mae([1, np.nan], [1, 2])
    with pytest.raises(ValueError, match="no ratings"):
        metrics.rmse([], [])
    with pytest.raises(TypeError):
        metrics.rmse(a, np.array([1.0, 2.0]))


# -- evaluate -------------------------------------------------------------------------------------

class PopularityDouble:
    """Test double: recommends the most popular unseen items (fold-in aware)."""

    def __init__(self, train_csr):
        self.counts = np.asarray(train_csr.sum(axis=0)).ravel()
        self.calls = []

    def recommend(self, users, user_items=None, k=10, filter_seen=True):
        self.calls.append((None if users is None else np.asarray(users).copy(), user_items.shape, k))
        n = user_items.shape[0]
        scores = np.tile(self.counts.astype(np.float32), (n, 1))
        if filter_seen:
            scores[user_items.nonzero()] = -np.inf
        kk = min(k, scores.shape[1])
        ids = np.argsort(-scores, axis=1, kind="stable")[:, :kk]
        top = np.take_along_axis(scores, ids, axis=1)
        ids = np.where(np.isfinite(top), ids, -1)
        return ids, top


def _toy_data():
    rng = np.random.default_rng(0)
    m = sp.random(200, 60, density=0.15, random_state=rng, format="csr")
    m.data[:] = 1
    return Interactions.from_csr(m)


def test_evaluate_known_users_matches_metrics():
    data = _toy_data()
    split = random_split(data, 0.2, random_state=1)
    model = PopularityDouble(split.train.to_csr())
    res = evaluate(model, split, ks=(5, 10), batch_size=37)
    ev = split.test
    assert set(res) >= {"recall@5", "ndcg@10", "precision@5", "map@10", "hit_rate@5", "mrr@10",
                        "coverage@10", "n_users"}
    # all batches got user ids (known users) and the fold-in rows
    assert all(c[0] is not None for c in model.calls)
    np.testing.assert_array_equal(np.concatenate([c[0] for c in model.calls]), ev.users)
    assert sum(c[1][0] for c in model.calls) == ev.n_users
    ids, _ = model.recommend(ev.users, user_items=ev.fold_in, k=10)
    assert res["ndcg@10"] == pytest.approx(metrics.ndcg_at_k(ids, ev.held_out, 10))
    assert res["recall@5"] == pytest.approx(metrics.recall_at_k(ids, ev.held_out, 5))
    per = evaluate(model, ev, ks=10, per_user=True, metrics=("ndcg",))
    assert per["ndcg@10"].shape == (ev.n_users,)
    assert np.nanmean(per["ndcg@10"]) == pytest.approx(res["ndcg@10"])


def test_evaluate_strong_generalization_passes_none():
    data = _toy_data()
    split = strong_generalization_split(data, 20, 30, random_state=2)
    model = PopularityDouble(split.train.to_csr())
    res = evaluate(model, split, ks=(10,), batch_size=8)
    assert all(c[0] is None for c in model.calls)
    assert 0 <= res["recall@10"] <= 1 and res["n_users"] <= 30
    res_v = evaluate(model, split, ks=(10,), on="validation")
    assert res_v["n_users"] <= 20


def test_evaluate_pads_short_lists_and_rejects_bad_input():
    held = sp.csr_matrix(np.array([[0, 1, 1]], dtype=np.float32))
    ev = EvalSet(users=[0], fold_in=sp.csr_matrix((1, 3), dtype=np.float32), held_out=held, known_users=True)

    class Short:
        def recommend(self, users, user_items=None, k=10, filter_seen=True):
            return np.array([[2, 1]]), np.array([[1.0, 0.5]])

    res = evaluate(Short(), ev, ks=(1, 100))
    assert res["recall@100"] == 1.0 and res["recall@1"] == 1.0
    with pytest.raises(ValueError, match="positive"):
        evaluate(Short(), ev, ks=(0,))
    with pytest.raises(ValueError, match="batch_size"):
        evaluate(Short(), ev, batch_size=0)
    with pytest.raises(TypeError, match="recommend"):
        evaluate(object(), ev)
    with pytest.raises(TypeError, match="Split or EvalSet"):
        evaluate(Short(), held)

    class Wrong:
        def recommend(self, users, user_items=None, k=10, filter_seen=True):
            return np.zeros((2, 2), np.int64), None

    with pytest.raises(ValueError, match="shape"):
        evaluate(Wrong(), ev)

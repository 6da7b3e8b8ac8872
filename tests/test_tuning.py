"""aerec.tune (grid and random search with per-trial early stopping) and the scikit-learn side of
the estimator contract: score(X) is one number, score_items is the matrix (score(user_ids) still
works, with a FutureWarning), clone / get_params / GridSearchCV."""
import threading
import warnings

import numpy as np
import pytest
import scipy.sparse as sp

import aerec
from aerec.data.splits import holdout_rows


@pytest.fixture(scope="module")
def split():
    data = aerec.datasets.synthetic(n_users=260, n_items=90, density=0.06, random_state=0)
    return aerec.data.strong_generalization_split(data, n_validation_users=50, n_test_users=50, random_state=0)


def small(**kw):
    return aerec.MultDAE(**{**dict(hidden=(24,), latent=8, epochs=8, batch_size=32, learning_rate=5e-3,
                                   backend="numpy"), **kw})


# -- tune -------------------------------------------------------------------------------------------

def test_grid_runs_every_point_in_order_and_keeps_the_best(split):
    grid = {"dropout": [0.0, 0.5], "latent": [4, 8]}
    res = aerec.tune(small(), grid, split, verbose=False, early_stopping=None)
    assert res.search == "grid"
    assert [t["params"] for t in res.trials] == [{"dropout": 0.0, "latent": 4}, {"dropout": 0.0, "latent": 8},
                                                 {"dropout": 0.5, "latent": 4}, {"dropout": 0.5, "latent": 8}]
    scores = [t["score"] for t in res.trials]
    assert res.best_index_ == int(np.argmax(scores)) and res.best_score_ == max(scores)
    assert res.best_params_ == res.trials[res.best_index_]["params"]
    # the kept model is the best trial's: its validation score is the recorded one
    again = aerec.evaluate(res.best_model_, split.validation, ks=(100,))["ndcg@100"]
    assert again == pytest.approx(res.best_score_, abs=1e-12)
    assert res.best_model_.dropout == res.best_params_["dropout"]
    # a trial is exactly the model fitted by hand with the same arguments
    p = res.trials[1]["params"]
    by_hand = small(**p).fit(split.train, validation=split.validation, verbose=0)
    assert aerec.evaluate(by_hand, split.validation, ks=(100,))["ndcg@100"] == pytest.approx(res.trials[1]["score"])
    # the base instance is not modified
    assert small().get_params() == small().get_params()


def test_model_class_starts_from_constructor_defaults(split):
    res = aerec.tune(aerec.Popularity, {"backend": ["numpy"]}, split, verbose=False)
    assert res.base_params == {} and len(res.trials) == 1 and res.trials[0]["best_epoch"] is None
    assert res.best_score_ == pytest.approx(aerec.evaluate(aerec.Popularity().fit(split.train), split.validation,
                                                           ks=(100,))["ndcg@100"])


def test_early_stopping_per_trial(split):
    res = aerec.tune(small(epochs=40, learning_rate=0.05), {"dropout": [0.5]}, split, verbose=False,
                     early_stopping=2)
    t = res.trials[0]
    assert t["epochs_run"] < 40 and t["epochs_run"] == t["best_epoch"] + 3  # the best (from 0), then 2 worse
    full = aerec.tune(small(epochs=6), {"dropout": [0.5]}, split, verbose=False, early_stopping=None)
    assert full.trials[0]["epochs_run"] == 6


def test_random_search_is_seeded_and_draws_from_each_kind(split):
    st = pytest.importorskip("scipy.stats")
    space = {"dropout": st.uniform(0.0, 0.6), "learning_rate": st.loguniform(1e-3, 1e-2),
             "latent": lambda rng: int(rng.integers(4, 12)), "activation": ["tanh", "relu"]}
    a = aerec.tune(small(epochs=3), space, split, n_trials=3, seed=7, verbose=False, keep_best=False)
    b = aerec.tune(small(epochs=3), space, split, n_trials=3, seed=7, verbose=False, keep_best=False)
    c = aerec.tune(small(epochs=3), space, split, n_trials=3, seed=8, verbose=False, keep_best=False)
    pa, pb, pc = ([t["params"] for t in r.trials] for r in (a, b, c))
    assert pa == pb and pa != pc
    assert [t["score"] for t in a.trials] == [t["score"] for t in b.trials]
    for p in pa:
        assert 0 <= p["dropout"] < 0.6 and 1e-3 <= p["learning_rate"] <= 1e-2
        assert isinstance(p["latent"], int) and 4 <= p["latent"] < 12 and p["activation"] in ("tanh", "relu")
        assert type(p["dropout"]) is float  # plain Python numbers, not numpy scalars
    assert a.best_model_ is None


def test_random_search_over_a_grid_draws_distinct_points(split):
    grid = {"dropout": [0.0, 0.2, 0.5], "latent": [4, 8]}
    res = aerec.tune(small(epochs=2), grid, split, n_trials=4, seed=0, verbose=False)
    pts = [tuple(t["params"].items()) for t in res.trials]
    assert len(set(pts)) == 4 and res.search == "random"
    with pytest.warns(UserWarning, match="more than the 6 points"):
        res = aerec.tune(small(epochs=1), grid, split, n_trials=9, verbose=False)
    assert len(res.trials) == 6


def test_other_metric(split):
    res = aerec.tune(small(epochs=2), {"dropout": [0.5]}, split, metric="recall@20", verbose=False)
    want = aerec.evaluate(res.best_model_, split.validation, ks=(20,))["recall@20"]
    assert res.best_score_ == pytest.approx(want) and res.metric == "recall@20"


def test_table_dict_frame(split, capsys):
    res = aerec.tune(small(epochs=2), {"dropout": [0.0, 0.5], "l2": [0.0, 1e-4]}, split, verbose=True)
    out = capsys.readouterr().out
    assert "trial 3" in out and "grid search, 4 trials" in out
    text = str(res).splitlines()
    assert text[0].split() == ["trial", "dropout", "l2", "ndcg@100", "fit", "s", "epoch"]
    assert len({len(line) for line in text[:5]}) == 1  # aligned rows
    assert sum(line.split()[0].endswith("*") for line in text[1:5]) == 1
    d = res.to_dict()
    assert d["best_params"] == res.best_params_ and len(d["trials"]) == 4 and d["metric"] == "ndcg@100"
    assert d["model"] == "MultDAE" and d["search"] == "grid"
    pd = pytest.importorskip("pandas")
    frame = res.to_frame()
    assert list(frame.columns[:3]) == ["dropout", "l2", "ndcg@100"] and len(frame) == 4
    assert frame["ndcg@100"].idxmax() == res.best_index_
    assert isinstance(frame, pd.DataFrame)


@pytest.mark.parametrize("space, n_trials, exc, match", [
    ({"dropuot": [0.1]}, None, ValueError, r"no parameter 'dropuot'; valid names: \[.*'dropout'"),
    ({}, None, ValueError, "empty"),
    ({"dropout": []}, None, ValueError, "empty list"),
    ({"dropout": 0.5}, None, TypeError, r"for one value write \[value\]"),
    ({"dropout": "0.5"}, None, TypeError, "list of values"),
    ([("dropout", [0.5])], None, TypeError, "must be a dict"),
    ({"dropout": lambda rng: 0.5}, None, ValueError, "pass n_trials"),
    ({"dropout": [0.5]}, 0, ValueError, "n_trials must be positive"),
])
def test_bad_space(split, space, n_trials, exc, match):
    with pytest.raises(exc, match=match):
        aerec.tune(small(), space, split, n_trials=n_trials, verbose=False)


def test_bad_arguments(split):
    with pytest.raises(ValueError, match="metric must be"):
        aerec.tune(small(), {"dropout": [0.5]}, split, metric="ndcg", verbose=False)
    with pytest.raises(ValueError, match="unknown metric 'ndgc'"):
        aerec.tune(small(), {"dropout": [0.5]}, split, metric="ndgc@10", verbose=False)
    with pytest.raises(ValueError, match="cut-off"):
        aerec.tune(small(), {"dropout": [0.5]}, split, metric="ndcg@0", verbose=False)
    with pytest.raises(TypeError, match="must be an aerec.data Split"):
        aerec.tune(small(), {"dropout": [0.5]}, split.validation, verbose=False)
    no_val = aerec.data.strong_generalization_split(aerec.datasets.synthetic(n_users=100, n_items=40,
                                                                             density=0.1), 0, 20)
    with pytest.raises(ValueError, match="no validation set"):
        aerec.tune(small(), {"dropout": [0.5]}, no_val, verbose=False)
    with pytest.raises(TypeError, match="aerec model class"):
        aerec.tune(object(), {"dropout": [0.5]}, split, verbose=False)
    with pytest.raises(ValueError, match="seed must be >= 0"):
        aerec.tune(small(), {"dropout": [0.5]}, split, seed=-1, verbose=False)
    with pytest.raises(TypeError, match="verbose must be True or False"):
        aerec.tune(small(), {"dropout": [0.5]}, split, verbose="yes")
    # a bad value reaches the model, which says what is wrong (no trial is silently dropped)
    with pytest.raises(ValueError, match="dropout"):
        aerec.tune(small(), {"dropout": [1.5]}, split, verbose=False)


# -- score: scikit-learn's contract ----------------------------------------------------------------

def test_score_is_a_number_and_score_items_the_matrix(split):
    m = small().fit(split.train)
    ev = split.test
    s = m.score(ev)
    assert isinstance(s, float) and s == pytest.approx(aerec.evaluate(m, ev, ks=(100,))["ndcg@100"])
    assert m.score(ev.fold_in, ev.held_out) == pytest.approx(s)
    assert m.score(split) == pytest.approx(s)  # a Split: its test set
    assert m.score(ev.fold_in, ev.held_out, metric="recall", k=20) == pytest.approx(
        aerec.evaluate(m, ev, ks=(20,))["recall@20"])
    # without y: a seeded hold-out of each row, the same for every model and call
    X = sp.vstack([ev.fold_in + ev.held_out]).tocsr()
    h = holdout_rows(X, 0.2, random_state=0)
    assert m.score(X) == pytest.approx(aerec.evaluate(m, h, ks=(100,))["ndcg@100"])
    assert m.score(X) == m.score(X) and m.score(X.toarray()) == pytest.approx(m.score(X))
    assert m.score(X, random_state=1) != m.score(X)
    S = m.score_items([0, 1])
    assert S.shape == (2, split.train.n_items) and S.dtype == np.float32


def test_holdout_rows():
    rng = np.random.default_rng(0)
    dense = (rng.random((30, 40)) < 0.3).astype(np.float32)
    dense[0] = 0
    dense[1] = 0
    dense[1, 3] = 1  # one interaction: nothing held out
    X = sp.csr_matrix(dense)
    h = holdout_rows(X, 0.25, random_state=3)
    assert (h.fold_in + h.held_out - X).nnz == 0 and h.fold_in.multiply(h.held_out).nnz == 0
    counts = np.diff(X.indptr)
    held = np.diff(h.held_out.indptr)
    want = np.where(counts >= 2, np.clip(np.floor(0.25 * counts + 0.5), 1, counts - 1), 0)
    assert np.array_equal(held, want)
    again = holdout_rows(X, 0.25, random_state=3)
    assert (again.held_out != h.held_out).nnz == 0
    with pytest.raises(ValueError, match="held_out_fraction"):
        holdout_rows(X, 1.0)


def test_score_legacy_calls_warn_and_return_the_matrix(split):
    m = small().fit(split.train)
    want = m.score_items([0, 1])
    with pytest.warns(FutureWarning, match="score_items"):
        np.testing.assert_array_equal(m.score([0, 1]), want)
    with pytest.warns(FutureWarning):
        np.testing.assert_allclose(m.score(1), want[1], rtol=1e-5, atol=1e-6)  # one row: other BLAS blocking
    with pytest.warns(FutureWarning):
        np.testing.assert_array_equal(m.score(np.arange(2)), want)
    with pytest.warns(FutureWarning):
        np.testing.assert_array_equal(m.score(user_ids=[0, 1]), want)
    hist = split.test.fold_in[:3]
    with pytest.warns(FutureWarning):
        np.testing.assert_array_equal(m.score(user_items=hist), m.score_items(user_items=hist))
    with pytest.warns(FutureWarning):  # the old second positional argument was user_items
        np.testing.assert_array_equal(m.score([0, 1], split.train.to_csr()[[0, 1]]), want)
    with pytest.raises(TypeError, match="user ids twice"), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        m.score([0], user_ids=[0])


def test_score_bad_input(split):
    m = small().fit(split.train)
    ev = split.test
    with pytest.raises(TypeError, match="needs X"):
        m.score()
    with pytest.raises(ValueError, match="metric must be one of"):
        m.score(ev, metric="auc")
    with pytest.raises(ValueError, match="k"):
        m.score(ev, k=0)
    with pytest.raises(ValueError, match="rows"):
        m.score(ev.fold_in, ev.held_out[:3])
    with pytest.raises(ValueError, match="columns|items"):
        m.score(sp.csr_matrix((4, split.train.n_items + 1), dtype=np.float32))
    with pytest.raises(ValueError, match="no user of X has a held-out item"):
        m.score(sp.identity(split.train.n_items, format="csr", dtype=np.float32)[:5])
    with pytest.raises(TypeError, match="EvalSet holds its own"):
        m.score(ev, ev.held_out)
    with pytest.raises(RuntimeError, match="not fitted"):
        small().score(ev)
    item = aerec.AutoRec(kind="item", hidden=4, epochs=1, backend="numpy").fit(split.train)
    with pytest.raises(TypeError, match="cannot fold in"):
        item.score(ev.fold_in, ev.held_out)


def test_score_from_8_threads(split):
    m = small().fit(split.train)
    X = (split.test.fold_in + split.test.held_out).tocsr()
    want = m.score(X)
    got, errors = [None] * 8, []

    def work(i):
        try:
            got[i] = m.score(X)
        except Exception as exc:  # reported below
            errors.append(exc)
    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and all(g == want for g in got)


def test_sklearn_clone_get_params_and_grid_search(split):
    pytest.importorskip("sklearn")
    from sklearn.base import clone
    from sklearn.model_selection import GridSearchCV, cross_val_score
    est = small(dropout=0.3)
    c = clone(est)
    assert c is not est and c.get_params() == est.get_params() and type(c) is type(est)
    assert clone(aerec.EASE(l2=50.0)).get_params()["l2"] == 50.0
    X = split.train.to_csr()
    gs = GridSearchCV(small(epochs=3), {"dropout": [0.0, 0.5]}, cv=2).fit(X)
    assert gs.best_params_["dropout"] in (0.0, 0.5)
    assert np.isfinite(gs.cv_results_["mean_test_score"]).all()
    assert 0 < gs.best_score_ <= 1
    assert isinstance(gs.best_estimator_, aerec.MultDAE) and gs.best_estimator_.train_.shape == X.shape
    scores = cross_val_score(aerec.Popularity(), X, cv=3)
    assert scores.shape == (3,) and (scores > 0).all()

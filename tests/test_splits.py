import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings, strategies as st

from aerec.data import (EvalSet, Interactions, Split, kfold_split, random_split,
                        strong_generalization_split, temporal_split)


def _data(seed=0, n_users=120, n_items=50, density=0.12, explicit=False):
    rng = np.random.default_rng(seed)
    m = sp.random(n_users, n_items, density=density, random_state=rng, format="csr")
    m.data[:] = rng.integers(1, 6, m.nnz) if explicit else 1
    ts = rng.integers(0, 1000, m.nnz)
    return Interactions.from_csr(m, timestamps=ts, explicit=explicit,
                                 user_ids=np.arange(n_users) * 10, item_ids=np.arange(n_items) + 500)


def _pairs(csr, users, item_raw, user_raw):
    """Set of (raw user, raw item) pairs in an eval csr."""
    c = csr.tocoo()
    return set(zip(user_raw[users[c.row]].tolist(), item_raw[c.col].tolist()))


def _train_pairs(train):
    a = train.to_arrays(raw_ids=True)
    return set(zip(a["users"].tolist(), a["items"].tolist()))


def _all_pairs(data):
    return _train_pairs(data)


def _check_weak(data, split):
    assert isinstance(split, Split)
    tr = split.train
    assert tr.n_users == data.n_users and tr.user_map == data.user_map
    assert (tr.item_counts() > 0).all()  # items without training data are dropped
    train_pairs = _train_pairs(tr)
    seen = set(train_pairs)
    for ev in (split.validation, split.test):
        if ev is None:
            continue
        assert isinstance(ev, EvalSet) and ev.known_users
        assert ev.held_out.shape == ev.fold_in.shape == (ev.n_users, tr.n_items)
        assert (np.diff(ev.held_out.indptr) > 0).all()
        # fold-in rows are the users' train rows
        assert (ev.fold_in != tr.to_csr()[ev.users]).nnz == 0
        held = _pairs(ev.held_out, ev.users, tr.item_map.raw_ids, tr.user_map.raw_ids)
        assert not (held & seen)  # disjoint from train and from the other eval set
        seen |= held
        np.testing.assert_array_equal(ev.raw_users, data.user_map.to_raw(ev.users))
    # train + held-out + dropped = everything
    assert len(seen) + split.info["dropped_heldout_entries"] == data.nnz
    assert seen <= _all_pairs(data)


def test_random_split_properties():
    data = _data(explicit=True)
    s = random_split(data, 0.2, 0.1, random_state=3)
    _check_weak(data, s)
    counts = data.user_counts()
    n_test = np.zeros(data.n_users, int)
    n_test[s.test.users] = np.diff(s.test.held_out.indptr)
    eligible = counts >= 2
    # held-out size follows clip(round(0.2 n), 1, n - 1) up to entries lost with dropped items
    want = np.clip(np.floor(0.2 * counts + 0.5), 1, np.maximum(counts - 1, 1)) * eligible
    assert (n_test <= want).all()
    assert n_test.sum() >= want.sum() - s.info["dropped_heldout_entries"]
    assert s.train.is_explicit and s.test.held_out.data.min() >= 1  # ratings travel along
    # the same seed gives the same split; another seed a different one
    s2 = random_split(data, 0.2, 0.1, random_state=3)
    assert (s2.test.held_out != s.test.held_out).nnz == 0
    s3 = random_split(data, 0.2, 0.1, random_state=4)
    assert s3.test.held_out.shape != s.test.held_out.shape or (s3.test.held_out != s.test.held_out).nnz
    assert random_split(data, 0.2).validation is None


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**31 - 1), st.floats(0.05, 0.6), st.floats(0.0, 0.3))
def test_random_split_hypothesis(seed, tf, vf):
    data = _data(seed, n_users=30, n_items=15, density=0.3)
    _check_weak(data, random_split(data, tf, vf, random_state=seed))


def test_temporal_split_takes_latest():
    data = _data(1)
    s = temporal_split(data, n_test=2, n_validation=1)
    _check_weak(data, s)
    m, ts = data.to_csr(), data.timestamps
    tr = s.train
    tr_ts = {}
    a = tr.to_arrays(raw_ids=True)
    for u, t in zip(a["users"].tolist(), a["timestamps"].tolist()):
        tr_ts[u] = max(tr_ts.get(u, -1), t)
    # every test interaction is at least as late as every train interaction of that user
    raw_u = data.user_map.raw_ids
    for r, u in enumerate(s.test.users):
        lo, hi = m.indptr[u], m.indptr[u + 1]
        row_ts = np.sort(ts[lo:hi])
        n = hi - lo
        assert np.diff(s.test.held_out.indptr)[r] <= min(2, n - 1)
        assert tr_ts[raw_u[u]] <= row_ts[-1]
    with pytest.raises(ValueError, match="timestamps"):
        temporal_split(Interactions.from_csr(sp.identity(3, format="csr")))
    with pytest.raises(ValueError, match="n_test"):
        temporal_split(data, n_test=0)


def test_temporal_split_exact():
    users = [1, 1, 1, 1, 2, 2, 3]
    items = [1, 2, 3, 4, 1, 2, 3]
    ts = [40, 10, 30, 20, 5, 6, 7]
    data = Interactions.from_arrays(users, items, timestamps=ts)
    s = temporal_split(data, n_test=1, n_validation=1)
    assert s.test.users.tolist() == [0, 1]  # user 3 has a single interaction: train only
    held = s.test.held_out.toarray()
    assert held[0].nonzero()[0].tolist() == [s.train.item_map[1]]  # ts 40
    assert held[1].nonzero()[0].tolist() == [s.train.item_map[2]]  # ts 6
    assert s.validation.users.tolist() == [0]  # user 2 keeps its only other interaction in train
    assert s.validation.held_out.toarray()[0].nonzero()[0].tolist() == [s.train.item_map[3]]
    assert s.info["dropped_heldout_entries"] == 0
    # an item seen only in held-out data is dropped (here: item 4 if it were user 1's latest)
    s2 = temporal_split(Interactions.from_arrays([1, 1, 2], [1, 9, 1], timestamps=[1, 2, 3]))
    assert 9 not in s2.train.item_map and s2.test.n_users == 0
    assert s2.info["dropped_heldout_entries"] == 1 and s2.info["dropped_items"] == 1


def test_kfold_covers_every_interaction_once():
    data = _data(2)
    folds = kfold_split(data, 4, random_state=0)
    assert len(folds) == 4
    tests = []
    for f in folds:
        _check_weak(data, f)
        tests.append(_pairs(f.test.held_out, f.test.users, f.train.item_map.raw_ids,
                            data.user_map.raw_ids))
    dropped = sum(f.info["dropped_heldout_entries"] for f in folds)
    union = set().union(*tests)
    assert len(union) + dropped == data.nnz
    assert sum(len(t) for t in tests) == len(union)  # disjoint
    with pytest.raises(ValueError, match="n_folds"):
        kfold_split(data, 1)


def test_strong_generalization():
    data = _data(3, n_users=200)
    s = strong_generalization_split(data, n_validation_users=30, n_test_users=40, random_state=5)
    assert s.train.n_users == 130
    assert not s.test.known_users and not s.validation.known_users
    assert s.test.n_users == 40 and s.validation.n_users == 30
    test_raw = set(s.test.raw_users.tolist())
    val_raw = set(s.validation.raw_users.tolist())
    train_raw = set(s.train.user_map.raw_ids.tolist())
    assert not (test_raw & val_raw) and not (test_raw & train_raw) and not (val_raw & train_raw)
    assert len(test_raw | val_raw | train_raw) == data.n_users
    assert (s.train.item_counts() > 0).all()
    for ev in (s.test, s.validation):
        assert ev.fold_in.shape == ev.held_out.shape == (ev.n_users, s.train.n_items)
        assert ev.fold_in.multiply(ev.held_out).nnz == 0
        tot = np.diff(ev.fold_in.indptr) + np.diff(ev.held_out.indptr)
        held = np.diff(ev.held_out.indptr)
        want = np.where(tot >= 2, np.clip(np.floor(0.2 * tot + 0.5), 1, np.maximum(tot - 1, 1)), 0)
        np.testing.assert_array_equal(held, want)
        # every eval entry is one of the user's real interactions, in train item space
        full = data.to_csr()[ev.users]
        cols = data.item_map.to_index(s.train.item_map.raw_ids)
        sub = full[:, cols]
        assert ((ev.fold_in + ev.held_out) != sub).nnz == 0
    # dropped entries are those on items no training user has
    assert s.info["dropped_items"] == data.n_items - s.train.n_items
    s2 = strong_generalization_split(data, 30, 40, random_state=5)
    np.testing.assert_array_equal(s2.test.users, s.test.users)
    assert (s2.test.held_out != s.test.held_out).nnz == 0


def test_strong_generalization_errors():
    data = _data(4, n_users=10)
    with pytest.raises(ValueError, match="leave training users"):
        strong_generalization_split(data, 5, 5)
    with pytest.raises(ValueError, match="n_test_users"):
        strong_generalization_split(data, 1, 0)
    with pytest.raises(ValueError, match="fold_in_fraction"):
        strong_generalization_split(data, 1, 1, fold_in_fraction=1.0)
    with pytest.raises(TypeError, match="Interactions"):
        random_split(data.to_csr())
    with pytest.raises(ValueError, match="test_fraction"):
        random_split(data, 0.0)
    with pytest.raises(ValueError, match="< 1"):
        random_split(data, 0.6, 0.5)
    with pytest.raises(ValueError, match="random_state"):
        random_split(data, 0.2, random_state=None)


def test_evalset_validation():
    with pytest.raises(ValueError, match="rows"):
        EvalSet(users=[0, 1], fold_in=sp.csr_matrix((1, 3)), held_out=sp.csr_matrix((2, 3)), known_users=True)
    with pytest.raises(ValueError, match="items"):
        EvalSet(users=[0], fold_in=sp.csr_matrix((1, 3)), held_out=sp.csr_matrix((1, 4)), known_users=True)
    with pytest.raises(TypeError):
        EvalSet(users=[0], fold_in=np.zeros((1, 3)), held_out=sp.csr_matrix((1, 3)), known_users=True)

"""Raw ids end to end: recommend_raw(history=[raw item ids]) for new users, similar_items_raw,
and user_vectors() pairing with item_vectors() for aerec.search.TopK."""
import numpy as np
import pandas as pd
import pytest

import aerec
from aerec import data
from aerec.models import CDAE, EASE, MultDAE, MultVAE, Popularity
from aerec.search import TopK
from aerec._validation import UnknownIdError


@pytest.fixture(scope="module")
def inter():
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"user": [f"u{u}" for u in rng.integers(0, 150, 2500)],
                       "item": [f"i{i}" for i in rng.integers(0, 50, 2500)]}).drop_duplicates()
    return data.from_dataframe(df, "user", "item")


@pytest.fixture(scope="module")
def dae(inter):
    return MultDAE(hidden=(16,), latent=8, epochs=2).fit(inter)


def test_new_user_from_raw_item_ids(dae, inter, tmp_path):
    raw = ["i3", "i7", "i11"]
    cols = inter.item_map.to_index(raw)
    X = np.zeros((1, inter.n_items), np.float32)
    X[0, cols] = 1
    want_ids, want_scores = dae.recommend(user_items=X, k=5)
    ids, scores = dae.recommend_raw(history=raw, k=5)
    assert list(ids) == list(inter.item_map.to_raw(want_ids[0]))
    np.testing.assert_allclose(scores, want_scores[0], rtol=1e-6)
    assert not set(raw) & set(ids)  # the history is excluded
    two, _ = dae.recommend_raw(history=[raw, ["i1"]], k=5)
    assert two.shape == (2, 5) and list(two[0]) == list(ids)
    # through a file saved without the training data too
    dae.save(tmp_path / "s.npz", include_history=False)
    again, _ = aerec.load(tmp_path / "s.npz").recommend_raw(history=raw, k=5)
    assert list(again) == list(ids)
    with pytest.raises(ValueError, match="history="):
        aerec.load(tmp_path / "s.npz").recommend_raw("u1")


def test_history_errors(dae):
    with pytest.raises(UnknownIdError, match="ignore_unknown=True"):
        dae.recommend_raw(history=["i3", "new-item"])
    ids, _ = dae.recommend_raw(history=["i3", "new-item"], ignore_unknown=True, k=3)
    assert list(ids) == list(dae.recommend_raw(history=["i3"], k=3)[0])
    with pytest.raises(ValueError, match="not both"):
        dae.recommend_raw("u1", history=["i3"])
    with pytest.raises(TypeError, match="history=\\["):
        dae.recommend_raw(items=["i3"])  # items are the candidates; the history has its own name
    with pytest.raises(TypeError, match="list of raw item ids"):
        dae.recommend_raw(history="i3")
    with pytest.raises(TypeError, match="ignore_unknown"):
        dae.recommend_raw(history=["i3"], ignore_unknown="yes")
    plain = MultDAE(hidden=(4,), latent=2, epochs=1).fit(np.eye(5, dtype=np.float32)[[0, 1, 2, 3, 4, 0]])
    with pytest.raises(ValueError, match="raw id maps.*from_dataframe"):
        plain.recommend_raw(history=[1])


def test_similar_items_raw(dae, inter):
    idx = inter.item_map.to_index(["i4", "i9"])
    want, want_s = dae.similar_items(idx, k=4)
    got, got_s = dae.similar_items_raw(["i4", "i9"], k=4)
    assert got.tolist() == inter.item_map.to_raw(want).tolist()
    np.testing.assert_array_equal(got_s, want_s)
    one, _ = dae.similar_items_raw("i4", k=4)
    assert one.tolist() == got[0].tolist() and "i4" not in one
    assert dae.similar_items(int(idx[0]), k=4)[0].tolist() == want[0].tolist()  # the index API stays
    with pytest.raises(UnknownIdError, match="similar_items takes item indices"):
        dae.similar_items_raw(["zzz"])
    with pytest.raises(TypeError, match="None"):
        dae.similar_items_raw(None)


@pytest.mark.parametrize("make", [lambda: MultDAE(hidden=(16,), latent=8, epochs=2),
                                  lambda: MultVAE(hidden=(16,), latent=8, epochs=2),
                                  lambda: CDAE(latent=8, epochs=2), lambda: Popularity()],
                         ids=["MultDAE", "MultVAE", "CDAE", "Popularity"])
def test_user_vectors_pair_with_item_vectors(make, inter):
    m = make().fit(inter)
    users = np.arange(0, inter.n_users, 7)
    seen = inter.to_csr()[users]
    bias = m.item_biases() if hasattr(m, "item_biases") else None
    index = TopK(m.item_vectors(), bias=bias)
    U = m.user_vectors(users)
    assert U.shape == (len(users), m.item_vectors().shape[1])
    ids, scores = index.search(U, 10, exclude=seen)
    want_ids, want_scores = m.recommend(users, k=10)
    np.testing.assert_allclose(scores, want_scores, rtol=1e-4, atol=1e-5)
    assert (ids == want_ids).mean() > 0.99  # ties may swap
    # fold-in users too, and the dense product is what score() returns
    dense = U @ m.item_vectors().T + (0 if bias is None else bias)
    np.testing.assert_allclose(dense, m.score_items(users), rtol=1e-4, atol=1e-4)
    assert m.user_vectors(3).ndim == 1
    np.testing.assert_allclose(m.user_vectors(user_items=seen[:2]), U[:2] if not isinstance(m, CDAE) else
                               m.user_vectors(user_items=seen[:2]), rtol=1e-5)

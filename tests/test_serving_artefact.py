"""save(path, include_history=False): a serving artefact without the training interactions."""
import numpy as np
import pytest

import aerec
from aerec import data, datasets
from aerec.models import CDAE, EASE, AutoRec, MultDAE, MultVAE, Popularity

from test_cli import run


@pytest.fixture(scope="module")
def inter():
    return datasets.synthetic(n_users=400, n_items=50, density=0.2, random_state=2)


MODELS = {
    "MultDAE": lambda: MultDAE(hidden=(8,), latent=4, epochs=1),
    "MultVAE": lambda: MultVAE(hidden=(8,), latent=4, epochs=1),
    "CDAE": lambda: CDAE(latent=4, epochs=1),
    "EASE": lambda: EASE(l2=10.0),
    "Popularity": lambda: Popularity(),
}


@pytest.mark.parametrize("name", MODELS)
def test_serving_file_is_smaller_and_folds_in_every_user(name, inter, tmp_path):
    m = MODELS[name]().fit(inter)
    full, slim = tmp_path / "full.npz", tmp_path / "slim.npz"
    m.save(full)
    m.save(slim, include_history=False)
    X = inter.to_csr()
    # the interactions (int64 indptr, int32 indices, float32 data) and the raw user ids are gone
    saved = (X.shape[0] + 1) * 8 + X.nnz * 8 + inter.n_users * np.asarray(inter.user_map.raw_ids).itemsize
    assert full.stat().st_size - slim.stat().st_size >= 0.9 * saved
    s = aerec.load(slim)
    assert s.has_history is False and aerec.load(full).has_history is True
    users = np.arange(0, 400, 37)
    want_ids, want_scores = m.recommend(user_items=X[users], k=5)
    ids, scores = s.recommend(user_items=X[users], k=5)
    np.testing.assert_array_equal(ids, want_ids)
    np.testing.assert_allclose(scores, want_scores, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=r"include_history=False.*user_items="):
        s.recommend(3, k=5)
    # with the user ids and their rows, known users are served as before (CDAE: their own vector)
    ids, _ = s.recommend(users, user_items=X[users], k=5)
    np.testing.assert_array_equal(ids, m.recommend(users, k=5)[0])
    # raw ids: item ids stay (results in raw ids), user ids are not stored
    assert s.id_maps_[1] is not None and s.id_maps_[0] is None
    # saving the artefact again keeps it one
    again = tmp_path / "again.npz"
    s.save(again)
    assert aerec.load(again).has_history is False
    assert "include_history=False" in run("info", slim).stdout


def test_card_keeps_the_data_fingerprint(inter, tmp_path):
    m = EASE(l2=10.0).fit(inter)
    m.save(tmp_path / "s.npz", include_history=False)
    assert aerec.load(tmp_path / "s.npz").card["data"] == m.card["data"]


def test_autorec_and_bad_values(inter, tmp_path):
    a = AutoRec(hidden=4, epochs=1).fit(inter)
    with pytest.raises(ValueError, match="include_history=True"):
        a.save(tmp_path / "a.npz", include_history=False)
    p = Popularity().fit(inter)
    with pytest.raises(TypeError, match="include_history"):
        p.save(tmp_path / "p.npz", include_history="no")

"""One behaviour suite for every recommender (the implicit-style contract), on every backend."""
import numpy as np
import pytest
import scipy.sparse as sp

import aerec
from aerec._validation import UnknownIdError
from aerec.models.autorec import AutoRec
from aerec.models.baselines import EASE, Popularity
from aerec.models.sparse_autoencoders import CDAE, MultDAE, MultVAE


def clustered(n_users=120, n_items=60, n_clusters=3, seed=0):
    """Users in a cluster like that cluster's items: learnable structure, popularity can't see it."""
    rng = np.random.default_rng(seed)
    uc = rng.integers(0, n_clusters, n_users)
    ic = np.arange(n_items) % n_clusters
    p = np.where(uc[:, None] == ic[None, :], 0.35, 0.02)
    dense = (rng.random((n_users, n_items)) < p).astype(np.float32)
    dense[dense.sum(1) == 0, 0] = 1
    return sp.csr_matrix(dense)


def ratings(n_users=80, n_items=50, seed=0):
    rng = np.random.default_rng(seed)
    u = rng.normal(size=(n_users, 3))
    v = rng.normal(size=(n_items, 3))
    full = np.clip(np.round(3 + u @ v.T * 0.7), 1, 5)
    mask = rng.random((n_users, n_items)) < 0.3
    return sp.csr_matrix(np.where(mask, full, 0).astype(np.float32))


FACTORIES = {
    "Popularity": lambda be: Popularity(backend=be),
    "EASE": lambda be: EASE(l2=5.0, backend=be),
    "MultDAE": lambda be: MultDAE(hidden=(32,), latent=8, epochs=15, batch_size=32, learning_rate=5e-3, backend=be),
    "MultVAE": lambda be: MultVAE(hidden=(32,), latent=8, epochs=15, batch_size=32, learning_rate=5e-3,
                                  total_anneal_steps=50, backend=be),
    "CDAE": lambda be: CDAE(latent=16, epochs=15, batch_size=32, learning_rate=5e-3, backend=be),
    "AutoRec": lambda be: AutoRec(hidden=16, epochs=5, batch_size=16, backend=be),
}


_FITTED = {}


@pytest.fixture(params=list(FACTORIES))
def fitted(request, backend):
    """Every recommender on every available backend (fitted once per pair: the tests only read)."""
    key = (request.param, backend.NAME)
    if key not in _FITTED:
        X = ratings() if request.param == "AutoRec" else clustered()
        model = FACTORIES[request.param](backend.NAME).fit(X)
        assert model.backend == backend.NAME and model._backend() is backend
        _FITTED[key] = (request.param, model, X)
    return _FITTED[key]


def test_recommend_shapes_and_filter(fitted):
    name, model, X = fitted
    ids, scores = model.recommend(3, k=5)
    assert ids.shape == (5,) and scores.shape == (5,) and ids.dtype == np.int32
    assert not set(ids.tolist()) & set(X[3].indices.tolist())
    assert np.all(np.diff(scores) <= 0)
    ids2, _ = model.recommend(np.array([3, 4]), k=5)
    assert ids2.shape == (2, 5)
    np.testing.assert_array_equal(ids2[0], ids)


def test_recommend_without_filter_can_return_seen(fitted):
    name, model, X = fitted
    ids, _ = model.recommend(np.arange(10), k=X.shape[1], filter_seen=False)
    assert (ids >= 0).all()


def test_k_larger_than_items_returns_all(fitted):
    name, model, X = fitted
    ids, scores = model.recommend(0, k=10 * X.shape[1])
    n_valid = X.shape[1] - X[0].nnz
    assert (ids >= 0).sum() == n_valid
    assert len(set(ids[ids >= 0].tolist())) == n_valid


def test_bad_k_and_unknown_users(fitted):
    name, model, X = fitted
    with pytest.raises(ValueError, match="k must be positive"):
        model.recommend(0, k=0)
    with pytest.raises(KeyError, match="unknown"):
        model.recommend(X.shape[0] + 5, k=3)
    with pytest.raises(IndexError):
        model.recommend(-1, k=3)
    with pytest.raises(ValueError, match="item columns"):
        model.recommend(user_items=sp.csr_matrix((1, X.shape[1] + 1)), k=3)


def test_items_restriction(fitted):
    name, model, X = fitted
    allowed = np.array([1, 5, 7, 11])
    ids, _ = model.recommend(2, k=3, items=allowed, filter_seen=False)
    assert set(ids[ids >= 0].tolist()) <= set(allowed.tolist())


def test_fold_in_matches_known_user(fitted):
    name, model, X = fitted
    if not model.supports_fold_in:  # item-based AutoRec: users are its input dimensions
        with pytest.raises(ValueError, match="fold in"):
            model.recommend(user_items=X[7], k=5)
        return
    if name == "CDAE":  # a new user has no learned vector: valid, seen-filtered, but not identical
        ids, scores = model.recommend(user_items=X[7], k=5)
        assert ids.shape == (1, 5) and not set(ids[0].tolist()) & set(X[7].indices.tolist())
        assert np.all(np.diff(scores[0]) <= 0)
        return
    a = model.recommend(7, k=5)
    b = model.recommend(user_items=X[7], k=5)
    np.testing.assert_array_equal(a[0], b[0][0])
    np.testing.assert_allclose(a[1], b[1][0], rtol=1e-5)


def test_save_load_same_recommendations(fitted, tmp_path):
    name, model, X = fitted
    path = tmp_path / "m.npz"
    model.save(path)
    back = aerec.load(path, backend=model.backend)
    assert type(back) is type(model) and back.backend == model.backend
    a, sa = model.recommend(np.arange(5), k=5)
    b, sb = back.recommend(np.arange(5), k=5)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(sa, sb, rtol=1e-6)


def test_similar_items(fitted):
    name, model, X = fitted
    ids, sims = model.similar_items(4, k=5)
    assert 4 not in ids.tolist() and ids.shape == (5,)
    assert np.all(np.diff(sims) <= 0) and np.all(sims <= 1 + 1e-5)
    ids2, _ = model.similar_items(np.array([4, 5]), k=5)
    np.testing.assert_array_equal(ids2[0], ids)


def test_score_agrees_with_recommend(fitted):
    name, model, X = fitted
    s = model.score_items(3)
    assert s.shape == (X.shape[1],) and s.dtype == np.float32
    ids, scores = model.recommend(3, k=5)
    np.testing.assert_allclose(s[ids], scores, rtol=1e-4, atol=1e-5)
    masked = s.copy()
    masked[X[3].indices] = -np.inf
    assert scores[-1] >= np.sort(masked)[-5] - 1e-5  # nothing better was left out
    if model.supports_fold_in and name != "CDAE":  # CDAE: a new user has no learned vector
        np.testing.assert_allclose(model.score_items(user_items=X[3])[0], s, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["EASE", "MultDAE", "MultVAE", "CDAE"])
def test_beats_popularity_on_planted_structure(name, backend):
    X = clustered(n_users=300, n_items=60, seed=1)
    rng = np.random.default_rng(0)
    # hold out one positive per user
    rows, held = [], []
    Xl = X.tolil()
    for u in range(X.shape[0]):
        items = X[u].indices
        if len(items) >= 2:
            i = rng.choice(items)
            Xl[u, i] = 0
            rows.append(u)
            held.append(i)
    train = Xl.tocsr()
    train.eliminate_zeros()

    def hits(model):
        ids, _ = model.recommend(np.array(rows), k=10)
        return np.mean([h in r for h, r in zip(held, ids)])
    model = FACTORIES[name](backend.NAME)
    if name != "EASE":
        model.set_params(epochs=40)
    assert hits(model.fit(train)) > hits(Popularity(backend=backend.NAME).fit(train)) + 0.1


def test_autorec_predict_ratings_close():
    R = ratings(seed=3)
    m = AutoRec(hidden=32, epochs=60, batch_size=16, learning_rate=5e-3, l2=0.1).fit(R)
    u, i = R.nonzero()
    pred = m.predict_ratings(u, i)
    rmse = np.sqrt(np.mean((pred - R.data) ** 2))
    assert rmse < 0.9
    with pytest.raises(KeyError):
        m.predict_ratings(np.array([0]), np.array([R.shape[1]]))


#: the compiled backends, each checked against the NumPy reference
COMPILED = ["cpp", "numba"]


def _compiled_and_numpy(name):
    av = aerec.backends.available()
    if not (av.get(name) and av.get("numpy")):
        pytest.skip(f"needs the {name} and numpy backends")


@pytest.mark.parametrize("fast", COMPILED)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_ease_compiled_matches_numpy(dtype, fast):
    """Own Gram kernel + panelled SpMM scoring (more than one 384-column panel) == the NumPy
    backend's scipy products, within float32 tolerance; same top-k ids on non-tied scores."""
    _compiled_and_numpy(fast)
    X = clustered(n_users=200, n_items=900, seed=4)
    a = EASE(l2=5.0, dtype=dtype, backend=fast).fit(X)
    b = EASE(l2=5.0, dtype=dtype, backend="numpy").fit(X)
    np.testing.assert_allclose(a.B_, b.B_, rtol=1e-4, atol=1e-6)
    sa, sb = a.score_items(np.arange(20)), b.score_items(np.arange(20))
    np.testing.assert_allclose(sa, sb, rtol=1e-4, atol=1e-5)
    ia, ra = a.recommend(np.arange(20), k=10)
    ib, rb = b.recommend(np.arange(20), k=10)
    np.testing.assert_allclose(ra, rb, rtol=1e-4, atol=1e-5)
    diff = ia != ib
    np.testing.assert_allclose(ra[diff], rb[diff], rtol=1e-4, atol=1e-5)  # only near-ties may swap


def test_backend_kernels_gram_and_spmm(backend):
    X = clustered(n_users=50, n_items=70, seed=5)
    X.data[:] = np.arange(1, X.nnz + 1, dtype=np.float32) % 3 + 1
    G = backend.gram_upper(X, "float64")
    ref = (X.T @ X).toarray()
    iu = np.triu_indices(70)
    np.testing.assert_allclose(G[iu], ref[iu], rtol=1e-12)
    W = np.random.default_rng(0).standard_normal((70, 500)).astype(np.float32)
    np.testing.assert_allclose(backend.spmm(X, W), X @ W, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(backend.spmm(X, W[:, 3:400]), X @ W[:, 3:400], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("fast", COMPILED)
@pytest.mark.parametrize("name", list(FACTORIES))
def test_models_compiled_match_numpy(name, fast, tmp_path):
    """The same fitted model served by both backends (saved on cpp / numba, loaded on numpy): the
    same scores and top-k, with TopK, selection and EASE's SpMM owned by the backend."""
    _compiled_and_numpy(fast)
    X = ratings() if name == "AutoRec" else clustered()
    a = FACTORIES[name](fast).fit(X)
    a.save(tmp_path / "m.npz")
    b = aerec.load(tmp_path / "m.npz", backend="numpy")
    assert b.backend == "numpy"
    np.testing.assert_allclose(a.score_items(np.arange(30)), b.score_items(np.arange(30)), rtol=1e-4, atol=1e-5)
    ia, sa = a.recommend(np.arange(30), k=7)
    ib, sb = b.recommend(np.arange(30), k=7)
    np.testing.assert_allclose(sa, sb, rtol=1e-4, atol=1e-5)
    diff = ia != ib
    np.testing.assert_allclose(sa[diff], sb[diff], rtol=1e-4, atol=1e-5)  # only near-ties may swap
    ja, ta = a.similar_items(np.arange(10), k=5)
    jb, tb = b.similar_items(np.arange(10), k=5)
    np.testing.assert_allclose(ta, tb, rtol=1e-4, atol=1e-5)

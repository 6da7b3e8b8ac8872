import hashlib
import io
import pathlib
import zipfile

import numpy as np
import pytest
import scipy.sparse as sp

import aerec.datasets as ds
from aerec.data import Interactions, random_split, temporal_split
from aerec.evaluation import evaluate


# -- MovieLens-100K from the shared folder ----------------------------------------------------------

def test_movielens_100k_loads(ml100k_dir):
    d = ds.movielens("ml-100k", path=ml100k_dir.parent, download=False)
    x = d.interactions
    assert (x.n_users, x.n_items, x.nnz) == (943, 1682, 100_000)
    assert x.is_explicit and x.timestamps is not None
    assert set(np.unique(x.values).tolist()) == {1.0, 2.0, 3.0, 4.0, 5.0}
    assert x.report.n_dropped == 0
    assert len(d.item_titles) == 1682
    assert d.titles([x.item_map[1]]) == ["Toy Story (1995)"]
    assert "Comedy" in d.item_genres[1]
    # the same folder given directly works too
    d2 = ds.movielens("ml-100k", path=ml100k_dir, download=False)
    assert d2.interactions.nnz == 100_000
    # binarize like Liang et al. and filter
    b = x.binarize(4).filter(5, 5)
    assert b.nnz > 50_000 and not b.is_explicit


def test_movielens_100k_checksums(ml100k_dir):
    if not (ml100k_dir / "SHA256SUMS").exists():
        pytest.skip("no SHA256SUMS in the MovieLens folder")
    out = ds.verify_sha256sums(ml100k_dir, ["u.data", "u.item"])
    assert out["u.data"] == hashlib.sha256((ml100k_dir / "u.data").read_bytes()).hexdigest()


def test_verify_sha256sums_mismatch(tmp_path):
    (tmp_path / "a.txt").write_text("hello")
    (tmp_path / "SHA256SUMS").write_text("0" * 64 + "  a.txt\n")
    with pytest.raises(ds.ChecksumError, match="a.txt"):
        ds.verify_sha256sums(tmp_path)
    with pytest.raises(KeyError):
        ds.verify_sha256sums(tmp_path, ["b.txt"])


def test_movielens_not_found_without_download(tmp_path, monkeypatch):
    monkeypatch.setenv("AEREC_DATA", str(tmp_path / "nodata"))
    with pytest.raises(FileNotFoundError, match="download"):
        ds.movielens("ml-1m", cache_dir=tmp_path / "cache", download=False)
    with pytest.raises(ValueError, match="unknown MovieLens"):
        ds.movielens("ml-5m")


# -- downloader ------------------------------------------------------------------------------------

def _ml100k_zip(path: pathlib.Path) -> bytes:
    rows = ["1\t10\t5\t881250949", "1\t20\t3\t881250950", "2\t10\t4\t881250951", "3\t30\t1\t881250952"]
    items = ["10|Movie A (1990)|01-Jan-1990||http://x|0|1|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0",
             "20|Movie B (1991)|01-Jan-1991||http://x|0|0|0|0|0|1|0|0|0|0|0|0|0|0|0|0|0|0|0"]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("ml-100k/u.data", "\n".join(rows) + "\n")
        zf.writestr("ml-100k/u.item", "\n".join(items) + "\n")
    path.write_bytes(buf.getvalue())
    return buf.getvalue()


def test_download_file_url_and_checksum(tmp_path):
    src = tmp_path / "src.zip"
    payload = _ml100k_zip(src)
    sha = hashlib.sha256(payload).hexdigest()
    dest = tmp_path / "cache" / "x.zip"
    out = ds.download(src.as_uri(), dest, sha)
    assert out == dest and dest.read_bytes() == payload
    bad = tmp_path / "cache" / "bad.zip"
    with pytest.raises(ds.ChecksumError, match="mismatch"):
        ds.download(src.as_uri(), bad, "f" * 64)
    assert not bad.exists()
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["x.zip"]  # no temp files left
    with pytest.raises(ValueError, match="64"):
        ds.download(src.as_uri(), bad, "abc")


def test_download_error_midway_leaves_nothing(tmp_path):
    class Broken(io.BytesIO):
        def read(self, n=-1):
            raise ConnectionError("network went away")

    with pytest.raises(ConnectionError):
        ds.download("http://example.invalid/x.zip", tmp_path / "x.zip", "0" * 64,
                    opener=lambda url: Broken(b""))
    assert list(tmp_path.iterdir()) == []


def test_movielens_download_into_cache(tmp_path, monkeypatch):
    src = tmp_path / "remote" / "ml-100k.zip"
    src.parent.mkdir()
    payload = _ml100k_zip(src)
    sha = hashlib.sha256(payload).hexdigest()
    monkeypatch.setitem(ds.MOVIELENS, "ml-100k", ds._Remote(src.as_uri(), sha, len(payload)))
    monkeypatch.setenv("AEREC_DATA", str(tmp_path / "empty"))
    monkeypatch.setenv("AEREC_CACHE", str(tmp_path / "cache"))
    calls = []

    def opener(url):
        calls.append(url)
        return io.BytesIO(payload)

    d = ds.movielens("ml-100k", opener=opener)
    assert calls == [src.as_uri()]
    assert d.path == tmp_path / "cache" / "ml-100k"
    x = d.interactions
    assert (x.n_users, x.n_items, x.nnz) == (3, 3, 4)
    assert d.item_titles == {10: "Movie A (1990)", 20: "Movie B (1991)"}
    assert d.item_genres[10] == ("Action",)
    # second call reads the extracted cache, no download
    d2 = ds.movielens("ml-100k", opener=opener)
    assert len(calls) == 1 and d2.interactions.nnz == 4
    # the default opener handles file:// URLs
    d3 = ds.movielens("ml-100k", cache_dir=tmp_path / "cache2")
    assert d3.interactions.nnz == 4
    # an explicit path that lacks the data receives it (the zip stays in the cache)
    d4 = ds.movielens("ml-100k", path=tmp_path / "mine", cache_dir=tmp_path / "cache3")
    assert d4.path == tmp_path / "mine" / "ml-100k" and (tmp_path / "cache3" / "ml-100k.zip").is_file()
    with pytest.raises(FileNotFoundError):
        ds.movielens("ml-100k", path=tmp_path / "other", download=False)


def test_movielens_download_checksum_mismatch(tmp_path, monkeypatch):
    src = tmp_path / "ml-100k.zip"
    _ml100k_zip(src)
    monkeypatch.setitem(ds.MOVIELENS, "ml-100k", ds._Remote(src.as_uri(), "0" * 64, 1))
    monkeypatch.setenv("AEREC_DATA", str(tmp_path / "empty"))
    cache = tmp_path / "cache"
    with pytest.raises(ds.ChecksumError):
        ds.movielens("ml-100k", cache_dir=cache)
    assert list(cache.iterdir()) == []  # neither the zip nor a temp file is kept


def test_movielens_1m_and_20m_layouts(tmp_path):
    one = tmp_path / "ml-1m"
    one.mkdir()
    (one / "ratings.dat").write_text("1::1193::5::978300760\n1::661::3::978302109\n2::1193::4::978300000\n")
    (one / "movies.dat").write_bytes("1193::One Flew Over (1975)::Drama\n661::Caf\xe9 (1996)::Animation|Children's\n"
                                     .encode("latin-1"))
    d = ds.movielens("ml-1m", path=tmp_path, download=False)
    assert (d.interactions.n_users, d.interactions.n_items, d.interactions.nnz) == (2, 2, 3)
    assert d.item_titles[661] == "Caf\xe9 (1996)" and d.item_genres[661] == ("Animation", "Children's")
    twenty = tmp_path / "ml-20m"
    twenty.mkdir()
    (twenty / "ratings.csv").write_text("userId,movieId,rating,timestamp\n1,2,3.5,1112486027\n1,29,3.5,1112484676\n")
    (twenty / "movies.csv").write_text('movieId,title,genres\n2,"Jumanji, The (1995)",Adventure|Children\n'
                                       '29,City (1995),(no genres listed)\n')
    d = ds.movielens("ml-20m", path=twenty, download=False)
    assert d.interactions.values.tolist() == [3.5, 3.5]
    assert d.item_titles[2] == "Jumanji, The (1995)" and d.item_genres[29] == ()


# -- synthetic -------------------------------------------------------------------------------------

def test_synthetic_shape_and_planted_properties():
    x, truth = ds.synthetic(2000, 500, 0.02, n_factors=10, random_state=1, return_truth=True)
    assert isinstance(x, Interactions) and x.shape == (2000, 500)
    assert not x.is_explicit and x.timestamps is not None
    m = x.to_csr()
    assert m.has_canonical_format and m.dtype == np.float32 and m.indices.dtype == np.int32
    assert abs(x.nnz / (2000 * 500 * 0.02) - 1) < 0.05  # density close to the request
    uc = x.user_counts()
    assert uc.min() >= 5  # a handful per user
    assert uc.max() > 5 * np.median(uc)  # log-normal activity: heavy users exist
    # popularity skew: the top 10% of items hold a large share of the interactions
    ic = np.sort(x.item_counts())[::-1]
    assert ic[:50].sum() / ic.sum() > 0.3
    # counts follow the planted popularity (rank correlation)
    pc = np.argsort(np.argsort(truth.item_popularity))
    cc = np.argsort(np.argsort(x.item_counts()))
    assert np.corrcoef(pc, cc)[0, 1] > 0.8
    # clusters: a user's interactions concentrate on their own two clusters
    rows = np.repeat(np.arange(x.n_users), uc)
    own = (truth.item_clusters[m.indices] == truth.user_clusters[rows, 0]) | \
          (truth.item_clusters[m.indices] == truth.user_clusters[rows, 1])
    assert own.mean() > 0.75  # vs ~0.2 by chance with 10 clusters
    # deterministic by seed
    y = ds.synthetic(2000, 500, 0.02, n_factors=10, random_state=1)
    assert (y.to_csr() != m).nnz == 0 and np.array_equal(y.timestamps, x.timestamps)
    # timestamps make temporal splits work
    s = temporal_split(x, n_test=2)
    assert s.test.n_users > 1900


def test_synthetic_defaults_and_errors():
    x = ds.synthetic()
    assert x.shape == (5000, 2000)
    # the per-user minimum holds even where popular items collide a lot (tiny catalogue)
    tiny = ds.synthetic(2000, 20, 0.3, popularity_exponent=1.5, random_state=3)
    assert tiny.user_counts().min() >= 5 and tiny.to_csr().has_canonical_format
    with pytest.raises(ValueError, match="density"):
        ds.synthetic(10, 10, 1.5)
    with pytest.raises(ValueError, match="n_users"):
        ds.synthetic(0, 10)
    with pytest.raises(ValueError, match="min_user_interactions"):
        ds.synthetic(10, 10, 0.1, min_user_interactions=9)


class _ItemKNN:
    """Item-item cosine kNN on the training matrix (NumPy), recommend API as evaluate expects."""

    def __init__(self, train):
        X = train.astype(np.float64)
        norms = np.sqrt(np.asarray(X.multiply(X).sum(axis=0)).ravel()) + 1e-9
        S = (X.T @ X).toarray() / np.outer(norms, norms)
        np.fill_diagonal(S, 0)
        self.S = S

    def recommend(self, users, user_items=None, k=10, filter_seen=True):
        scores = np.asarray(user_items @ self.S)
        if filter_seen:
            scores[user_items.nonzero()] = -np.inf
        ids = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        return ids, np.take_along_axis(scores, ids, axis=1)


class _Pop:
    def __init__(self, train):
        self.c = np.asarray(train.sum(axis=0)).ravel()

    def recommend(self, users, user_items=None, k=10, filter_seen=True):
        scores = np.tile(self.c.astype(float), (user_items.shape[0], 1))
        if filter_seen:
            scores[user_items.nonzero()] = -np.inf
        ids = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        return ids, np.take_along_axis(scores, ids, axis=1)


def test_synthetic_clusters_are_learnable():
    x = ds.synthetic(1500, 400, 0.03, n_factors=10, random_state=0)
    split = random_split(x, 0.2, random_state=0)
    train = split.train.to_csr()
    knn = evaluate(_ItemKNN(train), split, ks=(20,), metrics=("recall", "ndcg"))
    pop = evaluate(_Pop(train), split, ks=(20,), metrics=("recall", "ndcg"))
    assert knn["ndcg@20"] > 1.3 * pop["ndcg@20"], (knn, pop)
    assert knn["recall@20"] > pop["recall@20"] + 0.05, (knn, pop)
    # without planted clusters the advantage mostly vanishes
    flat = ds.synthetic(1500, 400, 0.03, cluster_strength=0.0, random_state=0)
    fs = random_split(flat, 0.2, random_state=0)
    knn_f = evaluate(_ItemKNN(fs.train.to_csr()), fs, ks=(20,), metrics=("ndcg",))
    pop_f = evaluate(_Pop(fs.train.to_csr()), fs, ks=(20,), metrics=("ndcg",))
    assert knn_f["ndcg@20"] < 1.15 * pop_f["ndcg@20"], (knn_f, pop_f)

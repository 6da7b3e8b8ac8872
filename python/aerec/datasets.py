"""Datasets: MovieLens (read from disk or downloaded with checksum verification) and a synthetic
implicit-feedback generator with planted structure."""
from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import logging
import os
import pathlib
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile

import numpy as np

from .data.idmap import IdMap
from .data.interactions import Interactions, _csr

__all__ = ["movielens", "synthetic", "Dataset", "SyntheticTruth", "ChecksumError", "download",
           "verify_sha256sums", "cache_dir", "MOVIELENS"]

logger = logging.getLogger("aerec.datasets")


class ChecksumError(OSError):
    """A downloaded or stored file does not have the expected SHA-256 digest."""


@dataclasses.dataclass(frozen=True)
class _Remote:
    url: str
    sha256: str
    size: int


@dataclasses.dataclass(frozen=True)
class _Layout:
    ratings: str
    sep: str
    header: bool
    items: str | None
    items_encoding: str


# Official GroupLens archives. SHA-256 digests and sizes as recorded by TensorFlow Datasets
# (tensorflow_datasets/url_checksums/movielens.txt).
MOVIELENS = {
    "ml-100k": _Remote("https://files.grouplens.org/datasets/movielens/ml-100k.zip",
                       "50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c6a3229", 4924029),
    "ml-1m": _Remote("https://files.grouplens.org/datasets/movielens/ml-1m.zip",
                     "a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20", 5917549),
    "ml-20m": _Remote("https://files.grouplens.org/datasets/movielens/ml-20m.zip",
                      "96f243c338a8665f6bcc89c53edf6ee39162a846940de6b7c8c48aeada765ff3", 198702078),
}

_LAYOUTS = {
    "ml-100k": _Layout("u.data", "\t", False, "u.item", "latin-1"),
    "ml-1m": _Layout("ratings.dat", "::", False, "movies.dat", "latin-1"),
    "ml-20m": _Layout("ratings.csv", ",", True, "movies.csv", "utf-8"),
}

_ML100K_GENRES = ("unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
                  "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
                  "Romance", "Sci-Fi", "Thriller", "War", "Western")


@dataclasses.dataclass
class Dataset:
    """A loaded dataset: interactions plus item metadata keyed by raw item id.

    Attributes
    ----------
    name : str
    interactions : Interactions
        Ratings kept as ``values``; timestamps kept.
    item_titles : dict
        Raw item id -> title (empty when the dataset has no titles).
    item_genres : dict
        Raw item id -> tuple of genre names.
    path : pathlib.Path or None
        Folder the files were read from.
    """

    name: str
    interactions: Interactions
    item_titles: dict = dataclasses.field(default_factory=dict)
    item_genres: dict = dataclasses.field(default_factory=dict)
    path: pathlib.Path | None = None

    def titles(self, items, item_map: IdMap | None = None) -> list:
        """Titles of item *indices* in ``item_map`` (default: ``interactions.item_map``);
        None for items without a title. Use the item map of a filtered / split copy when the
        indices come from one."""
        imap = self.interactions.item_map if item_map is None else item_map
        raw = imap.to_raw(np.asarray(items, dtype=np.int64).ravel())
        return [self.item_titles.get(r) for r in raw.tolist()]

    def __repr__(self) -> str:
        return (f"Dataset(name={self.name!r}, interactions={self.interactions!r}, "
                f"{len(self.item_titles)} titles, path={str(self.path)!r})")


# -- files, checksums, downloads ----------------------------------------------------------------

def cache_dir(cache_dir=None) -> pathlib.Path:
    """Cache folder: the argument, else ``$AEREC_CACHE``, else ``~/.cache/aerec``."""
    if cache_dir is not None:
        if not isinstance(cache_dir, (str, os.PathLike)):
            raise TypeError(f"cache_dir must be a folder path (str or os.PathLike), got {type(cache_dir).__name__}")
        return pathlib.Path(cache_dir).expanduser()
    env = os.environ.get("AEREC_CACHE")
    if env:
        return pathlib.Path(env).expanduser()
    return pathlib.Path.home() / ".cache" / "aerec"


def _sha256_file(path, chunk_size=1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(chunk_size)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def verify_sha256sums(folder, files=None, sums_name: str = "SHA256SUMS") -> dict:
    """Check files in ``folder`` against its ``SHA256SUMS`` (``<hex>  <name>`` lines).

    ``files``: names to check (default: every listed file). Returns ``{name: hexdigest}``; raises
    :class:`ChecksumError` naming the first mismatch, ``FileNotFoundError`` if the sums file or a
    listed file is missing, ``KeyError`` if a requested name is not listed.
    """
    folder = pathlib.Path(folder)
    sums_path = folder / sums_name
    if not sums_path.is_file():
        raise FileNotFoundError(f"no {sums_name} in {folder}")
    expected = {}
    for line in sums_path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        digest, _, name = line.partition(" ")
        expected[name.strip().lstrip("*")] = digest.lower()
    names = list(expected) if files is None else list(files)
    out = {}
    for name in names:
        if name not in expected:
            raise KeyError(f"{name!r} is not listed in {sums_path}")
        got = _sha256_file(folder / name)
        if got != expected[name]:
            raise ChecksumError(f"{folder / name}: SHA-256 {got} does not match {sums_name} "
                                f"({expected[name]}); the file is corrupt or was modified")
        out[name] = got
    return out


def download(url: str, dest, sha256: str, *, opener=None, timeout: float = 60.0,
             chunk_size: int = 1 << 20) -> pathlib.Path:
    """Download ``url`` to ``dest``, verifying its SHA-256, atomically.

    The data streams into a temporary file next to ``dest``; only when the digest matches is it
    moved into place with ``os.replace``. On a mismatch (or any error) the temporary file is
    deleted and :class:`ChecksumError` (or the error) is raised; ``dest`` is never left partial.
    ``opener(url)`` must return a context manager with ``read(n)`` (default
    ``urllib.request.urlopen``; ``file://`` URLs work).
    """
    if not isinstance(sha256, str) or len(sha256) != 64:
        raise ValueError("sha256 must be a 64-character hex digest")
    dest = pathlib.Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    from .io import atomic_write
    with atomic_write(dest, suffix=".part") as out:
        h = hashlib.sha256()
        resp = opener(url) if opener is not None else urllib.request.urlopen(url, timeout=timeout)
        with resp:
            while True:
                b = resp.read(chunk_size)
                if not b:
                    break
                h.update(b)
                out.write(b)
        got = h.hexdigest()
        if got != sha256.lower():
            raise ChecksumError(f"checksum mismatch for {url}: got SHA-256 {got}, expected {sha256}; "
                                f"the download was discarded")
    return dest


_cache_path = cache_dir
_download_file = download


def _safe_extract(zip_path, target_parent: pathlib.Path, name: str) -> pathlib.Path:
    """Extract a MovieLens zip into ``target_parent/name`` atomically (temp dir + os.replace)."""
    tmpdir = pathlib.Path(tempfile.mkdtemp(prefix=f".{name}.", dir=target_parent))
    try:
        with zipfile.ZipFile(zip_path) as zf:
            for info in zf.infolist():
                p = pathlib.PurePosixPath(info.filename)
                if p.is_absolute() or ".." in p.parts:
                    raise ValueError(f"refusing to extract unsafe path {info.filename!r} from {zip_path}")
            zf.extractall(tmpdir)
        layout = _LAYOUTS[name]
        hits = sorted(tmpdir.rglob(layout.ratings))
        if not hits:
            raise FileNotFoundError(f"{zip_path} has no {layout.ratings}")
        src = hits[0].parent
        dest = target_parent / name
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(src, dest)
        return dest
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


def _default_data_dir() -> pathlib.Path | None:
    env = os.environ.get("AEREC_DATA")
    return pathlib.Path(env).expanduser() if env else None


def _find_folder(name, path, cache) -> tuple[pathlib.Path | None, list]:
    ratings = _LAYOUTS[name].ratings
    tried = []
    cands = []
    if path is not None:
        p = pathlib.Path(path).expanduser()
        cands += [p, p / name]
    else:
        env = _default_data_dir()
        if env is not None:
            cands.append(env / name)
        else:
            # source checkout: <repo>/../shared/data (python/aerec/datasets.py -> repo root)
            repo_shared = pathlib.Path(__file__).resolve().parents[2].parent / "shared" / "data"
            if repo_shared.is_dir():
                cands.append(repo_shared / name)
        cands.append(cache / name)
    for c in cands:
        tried.append(str(c))
        if (c / ratings).is_file():
            return c, tried
    return None, tried


# -- MovieLens ------------------------------------------------------------------------------------

def _read_items(name, folder: pathlib.Path):
    layout = _LAYOUTS[name]
    titles, genres = {}, {}
    f = folder / layout.items if layout.items else None
    if f is None or not f.is_file():
        return titles, genres
    text = f.read_text(encoding=layout.items_encoding)
    if name == "ml-100k":
        for line in text.splitlines():
            parts = line.split("|")
            if len(parts) < 5:
                continue
            iid = int(parts[0])
            titles[iid] = parts[1]
            flags = parts[5:5 + len(_ML100K_GENRES)]
            genres[iid] = tuple(g for g, x in zip(_ML100K_GENRES, flags) if x.strip() == "1")
    elif name == "ml-1m":
        for line in text.splitlines():
            parts = line.split("::")
            if len(parts) < 3:
                continue
            iid = int(parts[0])
            titles[iid] = parts[1]
            genres[iid] = tuple(g for g in parts[2].split("|") if g and g != "(no genres listed)")
    else:
        reader = csv.reader(io.StringIO(text))
        next(reader, None)
        for row in reader:
            if len(row) < 3:
                continue
            iid = int(row[0])
            titles[iid] = row[1]
            genres[iid] = tuple(g for g in row[2].split("|") if g and g != "(no genres listed)")
    return titles, genres


def movielens(name: str = "ml-100k", path=None, cache_dir=None, download: bool = True, *,
              verify: bool = True, opener=None) -> Dataset:
    """Load a MovieLens dataset: ``"ml-100k"``, ``"ml-1m"`` or ``"ml-20m"``.

    Looks for the extracted folder (holding ``u.data`` / ``ratings.dat`` / ``ratings.csv``) at
    ``path`` or ``path/<name>``; without ``path`` at ``$AEREC_DATA/<name>`` (unset: in a source
    checkout, ``<repo>/../shared/data/<name>``) then ``<cache>/<name>`` (cache: ``cache_dir``, ``$AEREC_CACHE`` or ``~/.cache/aerec``). If absent
    and ``download`` is true, fetches the official GroupLens zip into the cache, verifies its
    SHA-256 (:class:`ChecksumError` on mismatch; nothing is kept) and extracts it atomically
    (temporary folder + ``os.replace``) to ``<cache>/<name>``, or to ``path/<name>`` when ``path``
    was given.

    With ``verify=True``, a ``SHA256SUMS`` file in the folder (if any) is checked for the files
    read. Ratings are kept (``interactions.values``), as are timestamps; titles and genres come
    from ``u.item`` / ``movies.dat`` / ``movies.csv``. The MovieLens data are under the GroupLens
    licence (research use, no redistribution): read them from where they are, do not copy them.
    """
    if not isinstance(name, str) or name not in _LAYOUTS:
        raise ValueError(f"unknown MovieLens dataset {name!r}; choose from {sorted(_LAYOUTS)}")
    layout = _LAYOUTS[name]
    from ._validation import check_bool
    download = check_bool(download, "download")
    verify = check_bool(verify, "verify")
    if path is not None and not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a folder path (str or os.PathLike), got {type(path).__name__}")
    cache = _cache_path(cache_dir)
    folder, tried = _find_folder(name, path, cache)
    if folder is None:
        if not download:
            raise FileNotFoundError(f"{name} not found (looked in {tried}); pass path=..., set "
                                    f"AEREC_DATA, or allow download=True")
        remote = MOVIELENS[name]
        cache.mkdir(parents=True, exist_ok=True)
        zip_path = cache / f"{name}.zip"
        if not (zip_path.is_file() and _sha256_file(zip_path) == remote.sha256):
            logger.info("downloading %s (%d bytes) from %s", name, remote.size, remote.url)
            try:
                _download_file(remote.url, zip_path, remote.sha256, opener=opener)
            except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:  # offline, DNS, refused
                reason = getattr(exc, "reason", None) or exc
                place = (pathlib.Path(path).expanduser() if path is not None else
                         (_default_data_dir() or cache))
                raise ConnectionError(
                    f"could not download {name} from {remote.url} ({reason}). Without network access, "
                    f"download {remote.url} elsewhere and either put the zip at {zip_path} or extract it so "
                    f"that {place / name / layout.ratings} exists (or pass path=<folder holding "
                    f"{layout.ratings}>, or set AEREC_DATA to the folder holding {name}/); looked in {tried}"
                ) from None
        if path is not None:  # an explicit folder: put the data there
            p = pathlib.Path(path).expanduser()
            target = p.parent if p.name == name else p
            target.mkdir(parents=True, exist_ok=True)
        else:
            target = cache
        folder = _safe_extract(zip_path, target, name)
    if verify and (folder / "SHA256SUMS").is_file():
        wanted = [layout.ratings] + ([layout.items] if layout.items and (folder / layout.items).is_file()
                                     else [])
        listed = (folder / "SHA256SUMS").read_text()
        verify_sha256sums(folder, [w for w in wanted if w in listed])
    if name == "ml-20m":
        columns = {"user": "userId", "item": "movieId", "value": "rating", "timestamp": "timestamp"}
    else:
        columns = [0, 1, 2, 3]
    inter = Interactions.read_csv(folder / layout.ratings, sep=layout.sep, columns=columns,
                                  header=layout.header, encoding="latin-1", on_invalid="warn")
    titles, genres = _read_items(name, folder)
    return Dataset(name=name, interactions=inter, item_titles=titles, item_genres=genres, path=folder)


# -- synthetic data ---------------------------------------------------------------------------------

@dataclasses.dataclass
class SyntheticTruth:
    """The structure planted by :func:`synthetic` (for tests and diagnostics).

    user_clusters : int64 (n_users, 2) primary and secondary taste cluster of each user
    item_clusters : int64 (n_items,) cluster of each item
    item_popularity : float64 (n_items,) global sampling probability of each item (sums to 1)
    user_targets : int64 (n_users,) interactions asked for per user (the result has at most that)
    """

    user_clusters: np.ndarray
    item_clusters: np.ndarray
    item_popularity: np.ndarray
    user_targets: np.ndarray


def _sorted_unique(keys: np.ndarray) -> np.ndarray:
    """Sorted distinct values (sort + adjacent compare: faster here than np.unique's hash path)."""
    keys.sort()
    if keys.size < 2:
        return keys
    keep = np.empty(keys.size, bool)
    keep[0] = True
    np.not_equal(keys[1:], keys[:-1], out=keep[1:])
    return keys[keep]


def _check_pos_int(name, v, minimum=1, maximum=2 ** 31 - 1):
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {v!r}")
    if v > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {v!r}")
    return int(v)


def synthetic(n_users: int = 5000, n_items: int = 2000, density: float = 0.01, n_factors: int = 20, *,
              popularity_exponent: float = 1.0, cluster_strength: float = 0.8,
              primary_weight: float = 0.7, activity_sigma: float = 1.0,
              min_user_interactions: int = 5, max_user_fraction: float = 0.5,
              time_span_days: float = 365.0, random_state=0, return_truth: bool = False,
              chunk_interactions: int = 2_000_000):
    """Implicit feedback with planted structure that a model can learn and popularity cannot.

    Generative process:

    - items get Zipf-like popularity ``p_i ~ (rank_i + 1) ** -popularity_exponent`` (ranks are a
      random permutation) and one of ``n_factors`` taste clusters (balanced, random);
    - each user gets a primary and a secondary cluster and a log-normal activity level
      (``sigma = activity_sigma``), scaled so the expected total is ``density * n_users * n_items``
      and clipped to ``[min_user_interactions, max_user_fraction * n_items]``;
    - each interaction comes, with probability ``cluster_strength``, from one of the user's clusters
      (primary with probability ``primary_weight``) with popularity weights inside the cluster,
      otherwise from the global popularity distribution;
    - repeated items are dropped and re-drawn (a few rounds; a user may end slightly below target);
    - timestamps: each user is active over a random window inside ``time_span_days`` starting
      2020-01-01 UTC; interaction times are uniform in that window (Unix seconds).

    Sampling is vectorised in chunks of about ``chunk_interactions`` draws, so memory stays
    bounded; no dense users x items array is ever built. MovieLens-20M scale
    (136,677 x 20,108, density 0.0036) takes a few seconds.

    Returns
    -------
    Interactions (binary, with timestamps), or ``(Interactions, SyntheticTruth)`` with
    ``return_truth=True``.
    """
    n_users = _check_pos_int("n_users", n_users)
    n_items = _check_pos_int("n_items", n_items, 2)
    n_factors = _check_pos_int("n_factors", n_factors)
    min_user_interactions = _check_pos_int("min_user_interactions", min_user_interactions)
    chunk_interactions = _check_pos_int("chunk_interactions", chunk_interactions, 1000, 2 ** 40)
    from ._validation import as_rng, check_bool
    return_truth = check_bool(return_truth, "return_truth")
    rng = np.random.default_rng() if random_state is None else as_rng(random_state)
    from ._validation import check_real
    density = check_real(density, "density", 0.0, 1.0, lo_open=True, hi_open=True)
    cluster_strength = check_real(cluster_strength, "cluster_strength", 0.0, 1.0)
    primary_weight = check_real(primary_weight, "primary_weight", 0.0, 1.0)
    max_user_fraction = check_real(max_user_fraction, "max_user_fraction", 0.0, 1.0)
    popularity_exponent = check_real(popularity_exponent, "popularity_exponent", 0.0)
    activity_sigma = check_real(activity_sigma, "activity_sigma", 0.0, 10.0)
    time_span_days = check_real(time_span_days, "time_span_days", 0.0, 1e6, lo_open=True)
    from ._memory import check_memory
    expected_nnz = density * n_users * n_items
    # per user: ~10 float64/int64 arrays; per interaction: keys, items, timestamps and sort copies
    check_memory(int(100 * n_users + 48 * expected_nnz + 40 * n_items),
                 f"synthetic data with {n_users:,} users x {n_items:,} items at density {density}",
                 "ask for fewer users, items or a lower density")
    max_per_user = max(int(max_user_fraction * n_items), 1)
    if min_user_interactions > max_per_user:
        raise ValueError(f"min_user_interactions={min_user_interactions} exceeds the per-user cap "
                         f"{max_per_user} (max_user_fraction * n_items = {max_user_fraction} * {n_items}); "
                         f"pass min_user_interactions <= {max_per_user}, a larger max_user_fraction or more "
                         "items")
    n_clusters = min(n_factors, n_items)

    # items: popularity and clusters
    ranks = rng.permutation(n_items)
    weight = (ranks + 1.0) ** -float(popularity_exponent)
    pop = weight / weight.sum()
    cdf_global = np.cumsum(pop)
    cdf_global[-1] = 1.0
    item_cluster = rng.permutation(np.arange(n_items) % n_clusters).astype(np.int64)
    by_cluster = np.argsort(item_cluster, kind="stable")
    w_sorted = weight[by_cluster]
    c_sorted = item_cluster[by_cluster]
    starts = np.searchsorted(c_sorted, np.arange(n_clusters))
    csum = np.cumsum(w_sorted)
    seg_total = np.add.reduceat(w_sorted, starts)
    seg_before = csum[starts] - w_sorted[starts]
    within = (csum - seg_before[c_sorted]) / seg_total[c_sorted]
    ends = np.r_[starts[1:], n_items] - 1
    within[ends] = 1.0
    cdf_clusters = c_sorted + within  # cluster c occupies (c, c + 1]

    # users: clusters and activity
    user_clusters = rng.integers(0, n_clusters, size=(n_users, 2))
    mean_target = density * n_items
    mu = np.log(mean_target) - activity_sigma ** 2 / 2
    raw = rng.lognormal(mu, activity_sigma, size=n_users)
    targets = np.clip(raw, min_user_interactions, max_per_user)
    targets = np.clip(targets * (mean_target * n_users / targets.sum()), min_user_interactions, max_per_user)
    targets = np.maximum(np.rint(targets), min_user_interactions).astype(np.int64)

    def draw(users_local, c1, c2, m):
        """Item ids for draws of the given (chunk-local) users."""
        u01 = rng.random(m)
        from_cluster = rng.random(m) < cluster_strength
        out = np.empty(m, np.int64)
        g = ~from_cluster
        out[g] = np.searchsorted(cdf_global, u01[g], side="right")
        cu = users_local[from_cluster]
        cl = np.where(rng.random(cu.size) < primary_weight, c1[cu], c2[cu])
        pos = np.searchsorted(cdf_clusters, cl + u01[from_cluster], side="right")
        out[from_cluster] = by_cluster[np.minimum(pos, n_items - 1)]
        return np.minimum(out, n_items - 1)

    # chunks of users with about chunk_interactions target draws each
    bounds = np.searchsorted(np.cumsum(targets), np.arange(chunk_interactions, targets.sum(),
                                                            chunk_interactions))
    bounds = np.unique(np.r_[0, bounds, n_users])
    indices_parts, counts = [], np.zeros(n_users, np.int64)
    for a, b in zip(bounds[:-1], bounds[1:]):
        t = targets[a:b]
        c1, c2 = user_clusters[a:b, 0], user_clusters[a:b, 1]
        nu = b - a
        have = np.empty(0, np.int64)  # sorted unique keys local_user * n_items + item
        deficit = t.copy()
        for rnd in range(8):
            if deficit.sum() == 0:
                break
            users_local = np.repeat(np.arange(nu, dtype=np.int64), deficit)
            if rnd < 7:
                items = draw(users_local, c1, c2, users_local.size)
            else:  # last round: uniform fill so that nobody stays far below target
                items = rng.integers(0, n_items, size=users_local.size)
            have = _sorted_unique(np.concatenate([have, users_local * n_items + items]))
            deficit = np.maximum(t - np.bincount(have // n_items, minlength=nu), 0)
        cnt = np.bincount(have // n_items, minlength=nu)
        short = np.flatnonzero(cnt < min_user_interactions)
        if short.size:  # rare (tiny catalogues): top up exactly with unseen items, uniformly
            extra = []
            for lu in short.tolist():
                seen = have[(have >= lu * n_items) & (have < (lu + 1) * n_items)] - lu * n_items
                pool = np.setdiff1d(np.arange(n_items), seen)
                pickd = rng.choice(pool, size=min_user_interactions - cnt[lu], replace=False)
                extra.append(lu * n_items + pickd)
            have = _sorted_unique(np.concatenate([have] + extra))
            cnt = np.bincount(have // n_items, minlength=nu)
        # a round adds at most a user's deficit, so nobody exceeds the target (beyond the minimum)
        counts[a:b] = cnt
        indices_parts.append((have % n_items).astype(np.int32))
    indices = np.concatenate(indices_parts) if indices_parts else np.empty(0, np.int32)
    indptr = np.zeros(n_users + 1, np.int64)
    np.cumsum(counts, out=indptr[1:])
    nnz = int(indptr[-1])

    # timestamps: a random activity window per user
    t0 = 1577836800  # 2020-01-01T00:00:00Z
    span = float(time_span_days) * 86400.0
    window = np.minimum(rng.lognormal(np.log(span / 8), 1.0, size=n_users), span)
    start = t0 + rng.random(n_users) * (span - window)
    rows = np.repeat(np.arange(n_users), counts)
    ts = (start[rows] + rng.random(nnz) * window[rows]).astype(np.int64)

    mat = _csr(np.ones(nnz, np.float32), indices, indptr, (n_users, n_items))
    from .data.cleaning import CleaningReport
    rep = CleaningReport(n_input=nnz, n_output=nnz, steps=[f"synthetic(random_state={random_state!r})"])
    inter = Interactions(mat, IdMap.identity(n_users), IdMap.identity(n_items), explicit=False,
                         timestamps=ts, report=rep)
    if return_truth:
        return inter, SyntheticTruth(user_clusters=user_clusters.astype(np.int64),
                                     item_clusters=item_cluster, item_popularity=pop,
                                     user_targets=targets)
    return inter

"""Batch scoring on a Dask cluster: :func:`recommend_dask`.

The model goes to each worker once: a task carries the model file's path and its SHA-256, and a
worker loads the file the first time a task names it (``aerec.load``: no pickle), then keeps it
in a per-process cache keyed by (path, digest) for every later task; a changed file has another
digest and is loaded afresh. The model object itself is never serialised. Each partition is
scored by ``model.recommend`` (the fused top-k path) in batches and written by the worker as one
Parquet file ``part-NNNNN.parquet`` of (user, rank, item, score) under ``output`` (a folder every
worker can reach: a shared file system on a real cluster), atomically.
"""
from __future__ import annotations

import hashlib
import os
import pathlib
import threading

import numpy as np

__all__ = ["recommend_dask"]

_CACHE: dict = {}
_CACHE_LOCK = threading.Lock()
_CACHE_MAX = 2  # models kept per worker process (least recently used dropped)


def _need_dask():
    try:
        import dask  # noqa: F401
        import distributed  # noqa: F401
        import pyarrow  # noqa: F401
    except ImportError as exc:
        raise ImportError(f"recommend_dask needs dask, distributed and pyarrow ({exc}); install them with "
                          "pip install 'aerec[dask]'") from None


def file_digest(path) -> str:
    """SHA-256 of a file (hex), read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _model(path, digest):
    """The model of ``path`` in this worker process, loaded on first use (one load per process
    even when several threads ask at once)."""
    key = (path, digest)
    with _CACHE_LOCK:
        m = _CACHE.pop(key, None)
        if m is None:
            from .. import load
            if file_digest(path) != digest:
                raise RuntimeError(f"{path} changed after recommend_dask started (its SHA-256 differs); "
                                   "score from a file that is not being rewritten")
            m = load(path)
            _set_threads()
        _CACHE[key] = m  # most recently used last
        while len(_CACHE) > _CACHE_MAX:
            _CACHE.pop(next(iter(_CACHE)))
    return m


def _set_threads():
    """aerec's threads = the worker's task slots (2 workers on 2 cores must not run 2 x 2 threads)."""
    try:
        from distributed import get_worker
        w = get_worker()
        n = getattr(getattr(w, "state", None), "nthreads", None) or getattr(w, "nthreads", None) or 1
    except (ImportError, ValueError):
        return
    from .._config import set_num_threads
    set_num_threads(int(n))


def _write(out_dir, part, cols):
    """One Parquet file of the columns, atomically (tmp then rename); nothing for no rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    if len(cols["score"]) == 0:
        return 0
    table = pa.table({k: (pa.array(v) if isinstance(v, list) else v) for k, v in cols.items()})
    final = os.path.join(out_dir, f"part-{part:05d}.parquet")
    tmp = final + f".tmp-{os.getpid()}"
    pq.write_table(table, tmp)
    os.replace(tmp, final)
    return table.num_rows


def _score_rows(path, digest, part, rows, raw_ids, out_dir, k, filter_seen, batch_size):
    """Training users (row numbers, or raw ids resolved here) -> one Parquet part. Returns
    (users, rows written)."""
    from ..cli import _rec_columns
    model = _model(path, digest)
    maps = getattr(model, "id_maps_", None) or (None, None)
    umap, imap = maps
    if raw_ids is not None:
        from ..models.recommender import _raw_to_index
        rows = np.asarray(_raw_to_index(umap, list(raw_ids), lambda msg: f"users: {msg}"), np.int64)
    rows = np.asarray(rows, np.int64)
    parts = []
    for s in range(0, rows.size, batch_size):
        r = rows[s:s + batch_size]
        ids, scores = model.recommend(r, k=k, filter_seen=filter_seen)
        parts.append(_rec_columns(ids, scores, r, umap, imap))
    return rows.size, _write(out_dir, part, _concat(parts))


def _score_histories(path, digest, part, frame, out_dir, k, filter_seen, batch_size):
    """A pandas partition of (user, item) interactions (each user's rows all in it) -> the users'
    top k from those histories (fold-in), in one Parquet part. Items the model does not know are
    dropped. Returns (users, rows written)."""
    import scipy.sparse as sp
    from ..cli import _rec_columns
    model = _model(path, digest)
    maps = getattr(model, "id_maps_", None) or (None, None)
    imap = maps[1]
    if len(frame) == 0:
        return 0, 0
    users, uidx = np.unique(frame["user"].to_numpy(), return_inverse=True)
    items = frame["item"].to_numpy()
    n_items = model.train_.shape[1]
    if imap is not None:
        pos = np.asarray(imap.to_index(items, missing="ignore"), np.int64)
    else:
        pos = np.asarray(items, np.int64)
        pos = np.where((pos >= 0) & (pos < n_items), pos, -1)
    ok = pos >= 0
    X = sp.csr_matrix((np.ones(int(ok.sum()), np.float32), (uidx[ok], pos[ok])), shape=(users.size, n_items))
    X.sum_duplicates()
    X.data[:] = 1.0
    labels = users.tolist()
    parts = []
    for s in range(0, users.size, batch_size):
        e = min(s + batch_size, users.size)
        ids, scores = model.recommend(user_items=X[s:e], k=k, filter_seen=filter_seen)
        parts.append(_rec_columns(ids, scores, None, labels[s:e], imap))
    return users.size, _write(out_dir, part, _concat(parts))


def _concat(parts):
    if not parts:
        return {"user": [], "rank": np.zeros(0, np.int32), "item": [], "score": np.zeros(0, np.float32)}
    out = {}
    for key in parts[0]:
        vals = [p[key] for p in parts]
        out[key] = (sum((list(v) for v in vals), []) if isinstance(vals[0], list)
                    else np.concatenate(vals))
    return out


def _client(client):
    """(Client, close) for ``client``: a distributed.Client, a scheduler address, "local:N" (a
    LocalCluster of N one-thread worker processes, closed afterwards) or None (the current one)."""
    from distributed import Client, LocalCluster
    if isinstance(client, Client):
        return client, lambda: None
    if client is None:
        try:
            from distributed import get_client
            return get_client(), lambda: None
        except ValueError:
            raise ValueError("recommend_dask found no Dask client: pass client='local:N' (N local worker "
                             "processes), a scheduler address 'tcp://host:8786', or a distributed.Client") from None
    if isinstance(client, str):
        if client.startswith("local:"):
            try:
                n = int(client.split(":", 1)[1])
            except ValueError:
                n = 0
            if n < 1:
                raise ValueError(f"client {client!r}: 'local:N' needs N >= 1 worker processes, e.g. 'local:2'")
            cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=":0")
            c = Client(cluster)

            def close():
                c.close()
                cluster.close()
            return c, close
        c = Client(client)
        return c, c.close
    raise TypeError(f"client must be a distributed.Client, a scheduler address, 'local:N' or None, "
                    f"got {type(client).__name__}")


def recommend_dask(model_path, users=None, k=100, filter_seen=True, output="recs/", client=None, *,
                   partition_size=20000, batch_size=1000, overwrite=False):
    """Top-k recommendations for many users on a Dask cluster, written as Parquet partitions.

    Parameters
    ----------
    model_path : str or path
        a saved aerec model (``model.save``); each worker loads it once (see the module docstring).
    users : None, list of user ids, Parquet path, or Dask / pandas DataFrame
        None: every training user of the model (a model saved with its history). A list: training
        users, as raw user ids when the model has id maps, else row numbers. A Parquet path or a
        DataFrame of (user, item) interactions: those users are scored from these histories
        (fold-in; raw item ids when the model has id maps, unknown items dropped), the user
        column written as given.
    k : int > 0
    filter_seen : bool
        leave out each user's history.
    output : str or path
        a folder (created; every worker must reach it): ``part-NNNNN.parquet`` files with columns
        user, rank (1 = best), item, score (float32); raw ids where the model has id maps. It must
        not hold part files already unless ``overwrite=True`` (which removes them first).
    client : distributed.Client, scheduler address, "local:N" or None
        None uses the current client (``distributed.get_client()``).
    partition_size : int
        users per task (list / all users).
    batch_size : int
        users per ``recommend`` call inside a task.

    Returns
    -------
    dict with ``users`` (scored), ``rows`` (written), ``parts`` (files), ``output``.
    """
    _need_dask()
    from .. import _validation
    k = _validation.check_k(k)
    filter_seen = _validation.check_bool(filter_seen, "filter_seen")
    partition_size = _validation.check_positive_int(partition_size, "partition_size", hi=None)
    batch_size = _validation.check_positive_int(batch_size, "batch_size", hi=None)
    path = os.path.abspath(os.fspath(model_path))
    if not os.path.isfile(path):
        raise FileNotFoundError(f"model_path {model_path!r}: no such file (save the model first: model.save(path))")
    out_dir = os.path.abspath(os.fspath(output))
    os.makedirs(out_dir, exist_ok=True)
    old = sorted(pathlib.Path(out_dir).glob("part-*.parquet"))
    if old:
        if not overwrite:
            raise ValueError(f"output {output!r} already holds {len(old)} part files; choose an empty folder or "
                             "pass overwrite=True")
        for f in old:
            f.unlink()
    digest = file_digest(path)
    c, close = _client(client)
    try:
        import dask
        args = (out_dir, k, filter_seen, batch_size)
        if users is None or isinstance(users, (list, tuple, np.ndarray)):
            if users is None:
                n = c.submit(_n_users, path, digest, pure=False).result()
                chunks = [(np.arange(s, min(s + partition_size, n), dtype=np.int64), None)
                          for s in range(0, n, partition_size)]
            else:
                lst = list(users)
                chunks = [(None, lst[s:s + partition_size]) for s in range(0, len(lst), partition_size)]
                if chunks and all(isinstance(u, (int, np.integer)) for u in lst) and not _has_umap(c, path, digest):
                    chunks = [(np.asarray(ch, np.int64), None) for _, ch in chunks]
            futs = [c.submit(_score_rows, path, digest, i, rows, raw, *args, pure=False)
                    for i, (rows, raw) in enumerate(chunks)]
            results = c.gather(futs)
        else:
            ddf = _as_dask_frame(users)
            ddf = ddf[["user", "item"]].shuffle(on="user")  # a user's rows in one partition
            parts = ddf.to_delayed()
            tasks = [dask.delayed(_score_histories)(path, digest, i, p, *args) for i, p in enumerate(parts)]
            results = c.compute(tasks, sync=True)
    finally:
        close()
    return {"users": int(sum(r[0] for r in results)), "rows": int(sum(r[1] for r in results)),
            "parts": int(sum(1 for r in results if r[1])), "output": out_dir}


def _n_users(path, digest):
    m = _model(path, digest)
    if not m.has_history:
        raise ValueError(f"{path}: saved without its training interactions (include_history=False), so it "
                         "cannot score its training users; pass users as (user, item) histories instead")
    return int(m.train_.shape[0])


def _umap_of(path, digest):
    maps = getattr(_model(path, digest), "id_maps_", None) or (None, None)
    return maps[0] is not None


def _has_umap(c, path, digest):
    return bool(c.submit(_umap_of, path, digest, pure=False).result())


def _as_dask_frame(users):
    """A Dask DataFrame of (user, item) from a Dask / pandas DataFrame or a Parquet path."""
    import dask.dataframe as dd
    if isinstance(users, (str, os.PathLike)):
        if not os.path.exists(users):
            raise FileNotFoundError(f"users {users!r}: no such Parquet file or folder")
        ddf = dd.read_parquet(os.fspath(users))
    elif isinstance(users, dd.DataFrame):
        ddf = users
    elif type(users).__name__ == "DataFrame" and type(users).__module__.startswith("pandas"):
        ddf = dd.from_pandas(users, npartitions=max(1, len(users) // 200000))
    else:
        raise TypeError("users must be None, a list of user ids, a Parquet path or a Dask/pandas DataFrame "
                        f"of (user, item) interactions, got {type(users).__name__}")
    missing = [col for col in ("user", "item") if col not in ddf.columns]
    if missing:
        raise ValueError(f"users needs columns 'user' and 'item' (interactions); missing {missing}, has "
                         f"{list(ddf.columns)}")
    return ddf

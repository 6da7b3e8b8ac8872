"""``evaluate(model, split_or_evalset)``: top-k recommendation quality on held-out interactions."""
from __future__ import annotations

import numpy as np

from . import metrics as _metrics
from ._validation import check_bool, check_k
from .data.splits import EvalSet, Split

__all__ = ["evaluate"]


def _as_ids(ids, n_rows, k, n_items):
    ids = np.asarray(ids)
    if ids.ndim == 1 and n_rows == 1:
        ids = ids[None, :]
    if ids.ndim != 2 or ids.shape[0] != n_rows:
        raise ValueError(f"model.recommend returned ids of shape {ids.shape} for a batch of "
                         f"{n_rows} users; expected ({n_rows}, <= {k})")
    if ids.dtype.kind not in "iu":
        raise TypeError(f"model.recommend must return integer item ids, got dtype {ids.dtype}")
    if ids.shape[1] > k:
        ids = ids[:, :k]
    out = np.full((n_rows, k), -1, dtype=np.int64)
    out[:, :ids.shape[1]] = ids
    return out


def evaluate(model, split_or_evalset, ks=(20, 50, 100), *, batch_size: int = 2048,
             on: str = "test", metrics=_metrics.RANKING_METRICS, per_user: bool = False) -> dict:
    """Top-k metrics of ``model`` on an :class:`~aerec.data.EvalSet` (or a ``Split``'s test set).

    For each batch of evaluation users this calls::

        ids, scores = model.recommend(users, user_items=fold_in_rows, k=max(ks), filter_seen=True)

    where ``users`` is the batch's row ids in ``split.train`` when ``evalset.known_users`` and None
    otherwise (strong generalisation: the model folds the users in from ``user_items``), and
    ``fold_in_rows`` is the batch's rows of ``evalset.fold_in`` (CSR, batch x n_items). ``ids``
    (batch x <= max(ks), ``-1`` padding allowed) are then scored against ``evalset.held_out``.

    Parameters
    ----------
    model : object with the ``recommend`` method above
    split_or_evalset : Split or EvalSet
    ks : int or sequence of int
        Cut-offs.
    batch_size : int
        Users per ``recommend`` call.
    on : {"test", "validation"}
        Which set of a ``Split`` to use (ignored for an EvalSet).
    metrics : sequence of str
        Among ``aerec.metrics.RANKING_METRICS``.
    per_user : bool
        Return per-user float64 arrays (NaN for users with an empty held-out row) instead of means.

    Returns
    -------
    dict
        ``{"recall@20": float, "ndcg@100": float, ..., "n_users": int}``; users whose held-out
        row is empty are excluded from the means (``n_users`` counts the others).
    """
    if not isinstance(on, str):
        raise ValueError(f"on must be 'test' or 'validation', got {on!r}")
    per_user = check_bool(per_user, "per_user")
    if isinstance(metrics, str):
        metrics = (metrics,)
    if not hasattr(metrics, "__iter__") or not all(isinstance(x, str) for x in metrics):
        raise TypeError(f"metrics must be a sequence of names from {_metrics.RANKING_METRICS}, got {metrics!r}")
    if isinstance(split_or_evalset, Split):
        if on not in ("test", "validation"):
            raise ValueError(f"on must be 'test' or 'validation', got {on!r}")
        ev = getattr(split_or_evalset, on)
        if ev is None:
            raise ValueError(f"this split has no {on} set")
    elif isinstance(split_or_evalset, EvalSet):
        ev = split_or_evalset
    else:
        raise TypeError(f"expected an aerec.data Split or EvalSet, got {type(split_or_evalset).__name__}")
    if not hasattr(model, "recommend"):
        raise TypeError(f"{type(model).__name__} has no recommend(users, user_items=..., k=..., "
                        f"filter_seen=...) method")
    if isinstance(ks, (int, np.integer)) and not isinstance(ks, (bool, np.bool_)):
        ks = (int(ks),)
    if isinstance(ks, (str, bytes)) or not hasattr(ks, "__iter__"):
        raise TypeError(f"ks must be a positive int or a sequence of them, got {type(ks).__name__} {ks!r}")
    ks = tuple(ks)
    if not ks:
        raise ValueError("ks must name at least one cut-off")
    try:
        ks = tuple(check_k(k) for k in ks)
    except (TypeError, ValueError) as exc:  # one ValueError for any bad cut-off, as before
        raise ValueError(f"every k in ks must be a positive integer: {exc}") from None
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size <= 0:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    # a list never holds more than n_items ids: a huge k must not allocate n_users x k
    kmax = max(1, min(max(ks), ev.n_items))
    n = ev.n_users
    ranked = np.full((n, kmax), -1, dtype=np.int64)
    fold_in = ev.fold_in.tocsr()
    for start in range(0, n, int(batch_size)):
        stop = min(start + int(batch_size), n)
        users = ev.users[start:stop] if ev.known_users else None
        ids, _scores = model.recommend(users, user_items=fold_in[start:stop], k=kmax, filter_seen=True)
        ranked[start:stop] = _as_ids(ids, stop - start, kmax, ev.n_items)
    return _metrics.ranking_metrics(ranked, ev.held_out, ks, metrics, per_user=per_user)

"""Top-k selection over dense score rows with exclusion (NumPy path used where no compiled kernel
serves). Order: descending score, ties by lower id; rows with fewer than k candidates are padded
with id -1 and score -inf."""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def select_topk(scores: np.ndarray, k: int, exclude: sp.csr_matrix | None = None,
                candidates: np.ndarray | None = None, num_threads: int = 0):
    """Top-min(k, m) per row of ``scores`` (n, m), excluding ``exclude`` (CSR n x m) and any item
    outside ``candidates``; NaN and -inf scores are never returned (padding: id -1, score -inf)."""
    try:
        from . import _core
    except ImportError:
        _core = None
    if _core is not None:
        k_eff = min(k, scores.shape[1])
        s = np.ascontiguousarray(scores, dtype=np.float32)
        if candidates is not None:
            keep = np.zeros(s.shape[1], bool)
            keep[candidates] = True
            s = np.where(keep[None, :], s, np.float32(-np.inf))
        if exclude is not None and exclude.nnz:
            return _core.select_topk_rows(s, k_eff, exclude.indptr.astype(np.int64, copy=False),
                                          exclude.indices.astype(np.int32, copy=False), num_threads)
        return _core.select_topk_rows(s, k_eff, None, None, num_threads)
    return _select_topk_numpy(scores, k, exclude, candidates)


def _select_topk_numpy(scores, k, exclude=None, candidates=None):
    scores = np.array(scores, dtype=np.float32, copy=True)
    n, m = scores.shape
    if candidates is not None:
        keep = np.zeros(m, bool)
        keep[candidates] = True
        scores[:, ~keep] = -np.inf
    if exclude is not None and exclude.nnz:
        rows = np.repeat(np.arange(n), np.diff(exclude.indptr))
        scores[rows, exclude.indices] = -np.inf
    k_eff = min(k, m)
    if k_eff < m:
        part = np.argpartition(-scores, k_eff - 1, axis=1)[:, :k_eff]
    else:
        part = np.broadcast_to(np.arange(m), (n, m)).copy()
    vals = np.take_along_axis(scores, part, axis=1)
    # stable order by (-score, id)
    order = np.lexsort((part, -vals), axis=1) if n else np.zeros((0, k_eff), np.int64)
    ids = np.take_along_axis(part, order, axis=1).astype(np.int32)
    vals = np.take_along_axis(vals, order, axis=1)
    # argpartition may cut inside a tie at the boundary: fix ties by re-selecting those rows exactly
    if k_eff < m and n:
        kth = vals[:, -1]
        n_ge = (scores >= kth[:, None]).sum(axis=1)
        for r in np.nonzero(n_ge > k_eff)[0]:
            row = scores[r]
            idx = np.lexsort((np.arange(m), -row))[:k_eff]
            ids[r], vals[r] = idx, row[idx]
    invalid = ~np.isfinite(vals) & (vals < 0)
    ids[invalid] = -1
    return ids, vals

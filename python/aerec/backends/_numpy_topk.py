"""NumPy reference of the compiled top-k kernels: ``select_topk`` (top-k of dense score rows) and
``TopkIndex`` (top-k inner-product search over fixed item vectors, fp32 / bf16 / int8).

Both rank candidates with the key the C++ kernels use (``cpp/src/topk.cpp``, ``make_entry``): one
uint64 per (score, id), the order-preserving bits of the float32 score above and
``2**32 - 1 - id`` below, so "better" (higher score, then lower id) is plain ``>`` and every key is
unique. Selection is then an exact ``argpartition`` (no tie repair) and the results are the C++
ones: ids identical wherever float32 scores are not tied, ties broken by the lower id. Key 0 marks
an entry that can never be returned (excluded, NaN, not a candidate).

``TopkIndex`` scores (query block x item block) tiles and merges each block's best into a running
candidate set per query, so its scratch is bounded by ``_BLOCK_ELEMS`` (plus the candidates)
however many queries and items there are. bf16 / int8 score every item through the same
quantisation as the C++ index (round-to-nearest-even bf16; symmetric per-row int8 item scales
``max|x| / 127`` with ``lrintf`` rounding, 7-bit queries with ``max|q| / 63``, values in
[-63, 63]: the kernels feed u8 = q + 64 so that every instruction-set level, AVX2's vpmaddubsw
included, computes the same exact integer sums), keep the best ``k * rescore``
candidates and re-score them in fp32. Norm-bound pruning never changes what the C++ index returns
(it is exact for fp32 and uses the compressed norms otherwise), so ``prune`` is recorded, not
simulated.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

__all__ = ["select_topk", "TopkIndex"]

# Scratch budget of one scored tile (elements of float64 scores and uint64 keys, ~8 MB each).
_BLOCK_ELEMS = 1 << 20
_PRECISIONS = ("fp32", "bf16", "int8")
_LOW = np.uint64(0xFFFFFFFF)


# ----------------------------------------------------------------------------------------------
# ranking keys (as cpp/src/topk.cpp's Entry)

def _keys(scores32, ids, valid):
    """uint64 keys of float32 scores (any shape) and int ids (broadcastable); 0 where not valid."""
    s = np.asarray(scores32, dtype=np.float32) + np.float32(0.0)  # -0 -> +0: equal scores tie
    u = s.view(np.uint32)
    neg = (u & np.uint32(0x80000000)) != 0
    u = np.where(neg, ~u, u | np.uint32(0x80000000)).astype(np.uint64)
    key = (u << np.uint64(32)) | (_LOW - np.asarray(ids).astype(np.uint64))
    return np.where(valid, key, np.uint64(0))


def _decode(keys):
    """(ids int32, scores float32) of keys; key 0 gives id -1 and score -inf."""
    u = (keys >> np.uint64(32)).astype(np.uint32)
    u = np.where((u & np.uint32(0x80000000)) != 0, u & np.uint32(0x7FFFFFFF), ~u)
    scores = u.view(np.float32).copy()
    ids = (_LOW - (keys & _LOW)).astype(np.int64).astype(np.int32)
    empty = keys == 0
    ids[empty] = -1
    scores[empty] = -np.inf
    return ids, scores


def _best(keys, kc):
    """The kc largest keys of each row, unsorted: (rows, min(kc, width))."""
    w = keys.shape[1]
    if w <= kc:
        return keys
    return np.partition(keys, w - kc, axis=1)[:, w - kc:]


def _sorted_desc(keys):
    return np.sort(keys, axis=1)[:, ::-1]


# ----------------------------------------------------------------------------------------------
# selection over dense score rows

def select_args(scores, k, exclude, candidates):
    """The checked arguments of select_topk (shared with the Numba backend): scores float32 (n, m),
    min(k, m), the candidate mask (bool (m,)) or None, the exclusion CSR (indptr, indices) or Nones."""
    s = np.asarray(scores, dtype=np.float32)
    if s.ndim != 2:
        raise ValueError(f"scores must be 2-D, got shape {s.shape}")
    k = int(k)
    if k <= 0:
        raise ValueError("k must be positive")
    n, m = s.shape
    keep = None
    if candidates is not None:
        keep = np.zeros(m, bool)
        keep[np.asarray(candidates)] = True
    ex_ptr = ex_idx = None
    if exclude is not None and exclude.nnz:
        ex = exclude.tocsr()
        ex_ptr, ex_idx = ex.indptr, ex.indices
        if ex.shape[0] != n:
            raise ValueError(f"exclude has {ex.shape[0]} rows for {n} score rows")
        if ex_idx.size and (ex_idx.min() < 0 or ex_idx.max() >= m):
            bad = ex_idx[(ex_idx < 0) | (ex_idx >= m)][0]
            raise IndexError(f"excluded item id {int(bad)} is outside [0, {m})")
    return s, min(k, m), keep, ex_ptr, ex_idx


def select_topk(scores, k, exclude=None, candidates=None, num_threads=0):
    """Top-min(k, m) per row of ``scores`` (n, m) by descending score, ties by lower id.

    Parameters
    ----------
    scores : (n, m) array (read as float32)
    k : int >= 1
    exclude : scipy.sparse (n, m) or None
        item ids never returned for that row (the stored entries; any value).
    candidates : 1-D int array or None
        rank only these item ids.
    num_threads : ignored

    Returns
    -------
    ids : (n, min(k, m)) int32, padded with -1
    scores : (n, min(k, m)) float32, padded with -inf
        NaN and -inf scores, excluded items and non-candidates are never returned.
    """
    s, kk, keep, ex_ptr, ex_idx = select_args(scores, k, exclude, candidates)
    n, m = s.shape
    ids = np.empty((n, kk), np.int32)
    out = np.empty((n, kk), np.float32)
    if n == 0 or kk == 0:
        return ids, out
    col = np.arange(m)
    step = max(1, _BLOCK_ELEMS // max(m, 1))
    for r0 in range(0, n, step):
        r1 = min(n, r0 + step)
        blk = s[r0:r1]
        valid = blk > -np.inf  # False for NaN and -inf
        if keep is not None:
            valid &= keep[None, :]
        if ex_ptr is not None:
            a, b = ex_ptr[r0], ex_ptr[r1]
            rows = np.repeat(np.arange(r1 - r0), np.diff(ex_ptr[r0:r1 + 1]))
            valid[rows, ex_idx[a:b]] = False
        key = _sorted_desc(_best(_keys(blk, col[None, :], valid), kk))
        ids[r0:r1], out[r0:r1] = _decode(key)
    return ids, out


# ----------------------------------------------------------------------------------------------
# quantisation (as cpp/src/topk.cpp: to_bf16, i8_scale, i8_value, i8_query_scale, i8_query_value)

def bf16_round(x):
    """float32 values rounded to bfloat16 (nearest even), returned as float32."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    u = u + (np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1)))
    return (u & np.uint32(0xFFFF0000)).view(np.float32)


def int8_rows(x, qmax=127):
    """Symmetric per-row int8: (values int8 (n, d), scales float32 (n,)), x ~ scale * values.

    ``qmax = 127`` for items / weights (8-bit); queries and activations use ``query_rows``
    (``qmax = 63``, 7-bit).
    """
    x = np.asarray(x, dtype=np.float32)
    amax = np.abs(x).max(axis=1) if x.shape[1] else np.zeros(x.shape[0], np.float32)
    scale = np.where(amax > 0, amax / np.float32(qmax), np.float32(1.0)).astype(np.float32)
    v = np.rint(x / scale[:, None])  # float32 quotient, round half to even (lrintf)
    return np.clip(v, -qmax, qmax).astype(np.int8), scale


def query_rows(x):
    """7-bit symmetric per-row quantisation of int8 queries / activations (as cpp/src/topk.cpp:
    i8_query_scale, i8_query_value): values in [-63, 63], scale ``max|x| / 63`` (1 for a zero
    row). The kernels feed u8 = value + 64 (at most 127), so AVX2's vpmaddubsw sums exactly."""
    return int8_rows(x, 63)


def candidates(k, n, rescore):
    """Candidates a compressed search re-scores per query (as cpp/src/topk.cpp topk_candidates):
    ``ceil(k * rescore)`` read with a 1e-6 tolerance (100 x 1.1 gives 110, not 111), at least
    ``min(k, n)``, at most ``n``."""
    c = math.ceil(k * rescore - 1e-6)
    return n if c >= n else max(min(k, n), c)


# ----------------------------------------------------------------------------------------------
# the index

class TopkIndex:
    """Top-k inner-product index over fixed items: the NumPy twin of ``aerec._core.TopkIndex``.

    ``score(q, j) = <q, x_j> + b_j``; results sorted by descending score, ties by the lower id;
    rows with fewer valid items than ``min(k, n)`` are padded with id -1 and score -inf.

    Parameters
    ----------
    items : (n, d) float32, finite, n >= 1, d >= 1
    bias : (n,) float32 or None
    precision : {"fp32", "bf16", "int8"}
    rescore : 0 or a finite number >= 1
        compressed precisions keep ``candidates(k, n, rescore)`` = ``ceil(k * rescore)``
        candidates (at most n) and re-score them in fp32; 0 (bf16 / int8): no re-scoring,
        the compressed scores of the best k are returned.
    prune : bool
        recorded only (pruning does not change the compiled index's results).
    num_threads : ignored
    """

    def __init__(self, items, bias=None, precision="fp32", rescore=1.25, prune=False, num_threads=0):
        if precision not in _PRECISIONS:
            raise ValueError(f"precision must be 'fp32', 'bf16' or 'int8', got {precision!r}")
        if isinstance(rescore, (bool, np.bool_)) or not isinstance(rescore, numbers.Real) \
                or not math.isfinite(rescore) or not (rescore == 0 or rescore >= 1) \
                or (rescore == 0 and precision == "fp32"):
            raise ValueError("rescore must be a finite number >= 1 (or 0 for bf16 / int8: compressed scores, "
                             f"no fp32 copy), got {rescore!r}")
        items = np.asarray(items)
        if items.dtype != np.float32:
            raise TypeError(f"items must be float32, got {items.dtype}")
        if items.ndim != 2 or items.shape[0] < 1 or items.shape[1] < 1:
            raise ValueError(f"items must be a non-empty 2-D array, got shape {items.shape}")
        if items.shape[0] > np.iinfo(np.int32).max:
            raise ValueError("more than 2^31-1 items is not supported (int32 ids)")
        items = np.ascontiguousarray(items)
        if bias is not None:
            bias = np.ascontiguousarray(bias, dtype=np.float32)
            if bias.shape != (items.shape[0],):
                raise ValueError("bias must be a 1-D float32 array of length n_items")
        if not np.isfinite(items).all() or (bias is not None and not np.isfinite(bias).all()):
            raise ValueError("items and bias must be finite (found NaN or inf)")
        self._items, self._bias = items, bias
        self.precision, self.rescore, self.prune = precision, rescore, bool(prune)
        self._xb = bf16_round(items) if precision == "bf16" else None
        self._xi, self._xs = int8_rows(items) if precision == "int8" else (None, None)

    @property
    def n_items(self):
        return self._items.shape[0]

    @property
    def dim(self):
        return self._items.shape[1]

    def memory_usage(self):
        """Bytes held by the index."""
        keep = (self._items if self.precision == "fp32" or self.rescore > 0 else None,
                self._bias, self._xb, self._xi, self._xs)
        return int(sum(a.nbytes for a in keep if a is not None))

    def export_items(self):
        if self.rescore == 0:  # no fp32 copy in the compiled index: the dequantised items
            if self.precision == "bf16":
                return self._xb.copy()
            return self._xi.astype(np.float32) * self._xs[:, None]
        return self._items.copy()

    def export_bias(self):
        return None if self._bias is None else self._bias.copy()

    # -- search -----------------------------------------------------------------------------
    def search(self, queries, k, indptr=None, indices=None, num_threads=0):
        """Best ``min(k, n)`` items per query.

        Parameters
        ----------
        queries : (m, d) float32
        k : int >= 1
        indptr, indices : exclusion CSR (int64 (m + 1,), int32), or None
            item ids in [0, n), any order, duplicates allowed.

        Returns
        -------
        ids : (m, min(k, n)) int32;  scores : (m, min(k, n)) float32
        """
        q, k, indptr, indices = self._search_args(queries, k, indptr, indices)
        n, m = self.n_items, q.shape[0]
        kk = min(k, n)
        compressed = self.precision != "fp32" and self.rescore > 0
        kc = candidates(k, n, self.rescore) if compressed else kk
        ids = np.empty((m, kk), np.int32)
        scores = np.empty((m, kk), np.float32)
        mq = max(1, min(m, 256, _BLOCK_ELEMS // max(kc, 1)))
        for q0 in range(0, m, mq):
            q1 = min(m, q0 + mq)
            ex = None
            if indptr is not None:
                a, b = indptr[q0], indptr[q1]
                ex = (np.repeat(np.arange(q1 - q0), np.diff(indptr[q0:q1 + 1])), indices[a:b])
            best = self._scan(q[q0:q1], kc, ex)
            if compressed:
                best = self._rescore(q[q0:q1], best, kk)
            ids[q0:q1], scores[q0:q1] = _decode(_sorted_desc(_best(best, kk)))
        return ids, scores

    def _search_args(self, queries, k, indptr, indices):
        """Checked (queries, k, indptr int64 or None, indices int64 or None) of search."""
        q = np.asarray(queries)
        if q.dtype != np.float32:
            raise TypeError(f"queries must be float32, got {q.dtype}")
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise ValueError(f"queries must be (m, {self.dim}), got shape {q.shape}")
        k = int(k)
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        n = self.n_items
        if indptr is not None:
            indptr = np.asarray(indptr, dtype=np.int64)
            indices = np.asarray(indices, dtype=np.int64)
            if indptr.shape != (q.shape[0] + 1,):
                raise ValueError("exclude must have one row per query")
            if indices.size and (indices.min() < 0 or indices.max() >= n):
                bad = indices[(indices < 0) | (indices >= n)][0]
                raise IndexError(f"excluded item id {int(bad)} is out of range [0, {n})")
        return q, k, indptr, indices

    def _approx_scores(self, q, qx, j0, j1):
        """float32 scores of a query block against items [j0, j1) at the index precision."""
        bias = None if self._bias is None else self._bias[j0:j1]
        if self.precision == "int8":
            qi, qs = qx
            acc = qi @ self._xi[j0:j1].T.astype(np.float64)  # exact integer dot products
            s = acc.astype(np.float32) * (self._xs[None, j0:j1] * qs[:, None])
            return s if bias is None else s + bias
        x = (self._xb if self.precision == "bf16" else self._items)[j0:j1]
        s = qx @ x.T.astype(np.float64)
        if bias is not None:
            s += bias.astype(np.float64)
        return s.astype(np.float32)

    def _scan(self, q, kc, ex):
        """Keys of the best kc items per query (unsorted, (mq, <= kc)), item block by block."""
        n = self.n_items
        if self.precision == "int8":
            qi, qs = query_rows(q)
            qx = (qi.astype(np.float64), qs)
        elif self.precision == "bf16":
            qx = bf16_round(q).astype(np.float64)
        else:
            qx = q.astype(np.float64)
        nb = max(1, min(_BLOCK_ELEMS // q.shape[0], _BLOCK_ELEMS // self.dim))
        best = np.zeros((q.shape[0], 0), np.uint64)
        for j0 in range(0, n, nb):
            j1 = min(n, j0 + nb)
            s = self._approx_scores(q, qx, j0, j1)
            valid = ~np.isnan(s)
            if ex is not None:
                sel = (ex[1] >= j0) & (ex[1] < j1)
                valid[ex[0][sel], ex[1][sel] - j0] = False
            key = _keys(s, np.arange(j0, j1)[None, :], valid)
            best = _best(np.concatenate([best, _best(key, kc)], axis=1), kc)
        return best

    def _rescore(self, q, best, kk):
        """Keys of the candidates re-scored in fp32 (invalid candidates stay 0)."""
        cid, _ = _decode(best)
        ok = cid >= 0
        safe = np.where(ok, cid, 0)
        out = np.empty(best.shape, np.float32)
        kc, d = best.shape[1], self.dim
        cw = max(1, min(kc, _BLOCK_ELEMS // d))  # gathered rows stay within the scratch budget
        rows = max(1, _BLOCK_ELEMS // (cw * d))
        for r0 in range(0, q.shape[0], rows):
            r1 = min(q.shape[0], r0 + rows)
            q64 = q[r0:r1].astype(np.float64)
            for c0 in range(0, kc, cw):
                c1 = min(kc, c0 + cw)
                X = self._items[safe[r0:r1, c0:c1]].astype(np.float64)  # (r, c, d)
                out[r0:r1, c0:c1] = np.einsum("rcd,rd->rc", X, q64).astype(np.float32)
        if self._bias is not None:
            out += self._bias[safe]
        return _keys(out, safe, ok)

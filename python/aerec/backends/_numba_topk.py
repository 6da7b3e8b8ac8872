"""Numba kernels of top-k selection, exact fp32 ``TopkIndex`` search and EASE's Gram / SpMM.

Selection ranks by ``_numpy_topk``'s key (the float32 score's order-preserving bits above,
``2**32 - 1 - id`` below: higher score, then lower id, is plain ``>``), kept in a min-heap of
``k`` keys per row: one compare per item against the heap's root once the heap is full.
"""
import numpy as np
from numba import njit, prange

_LOW = np.uint64(0xFFFFFFFF)
_S32 = np.uint64(32)
_SIGN = np.uint32(0x80000000)


@njit(cache=True, inline="always")
def _sift_down(heap, i, n):
    while True:
        c = 2 * i + 1
        if c >= n:
            return
        if c + 1 < n and heap[c + 1] < heap[c]:
            c += 1
        if heap[i] <= heap[c]:
            return
        heap[i], heap[c] = heap[c], heap[i]
        i = c


@njit(cache=True)
def select_row(s, su, kk, keep, has_keep, ex, heap, ids, vals):
    """Best kk of one score row (s float32, su its bits as uint32) into ids / vals (padded with -1 /
    -inf); ``ex`` sorted excluded ids; heap scratch (kk,). Once the heap is full, an item scoring
    below its root's score is dropped with one float compare."""
    n, e, thr = 0, 0, -np.inf
    for j in range(s.size):
        v = s[j]
        if v < thr or not v > -np.inf:  # NaN and -inf are never returned
            continue
        while e < ex.size and ex[e] < j:
            e += 1
        if (e < ex.size and ex[e] == j) or (has_keep and not keep[j]):
            continue
        u = np.uint32(0) if v == 0 else su[j]  # -0 ranks as +0
        u = ~u if u & _SIGN else u | _SIGN
        key = (np.uint64(u) << _S32) | (_LOW - np.uint64(j))
        if n < kk:
            heap[n] = key
            n += 1
            i = n - 1
            while i > 0 and heap[(i - 1) // 2] > heap[i]:
                heap[(i - 1) // 2], heap[i] = heap[i], heap[(i - 1) // 2]
                i = (i - 1) // 2
        elif key > heap[0]:
            heap[0] = key
            _sift_down(heap, 0, n)
        if n == kk:
            thr = s[np.int64(_LOW - (heap[0] & _LOW))]
    best = np.sort(heap[:n])
    for t in range(kk):
        if t < n:
            j = np.int64(_LOW - (best[n - 1 - t] & _LOW))
            ids[t], vals[t] = j, s[j] + np.float32(0)
        else:
            ids[t], vals[t] = -1, -np.inf


@njit(cache=True, parallel=True)
def select_rows(s, kk, keep, has_keep, ex_ptr, ex_idx, ids, vals, row0):
    """select_row for every row of s; exclusion row r is row0 + r of the CSR (ex_ptr, ex_idx)."""
    su = s.view(np.uint32)  # s C-contiguous
    for r in prange(s.shape[0]):
        ex = np.sort(ex_idx[ex_ptr[row0 + r]:ex_ptr[row0 + r + 1]]) if ex_ptr.size else ex_idx[:0]
        select_row(s[r], su[r], kk, keep, has_keep, ex, np.empty(max(kk, 1), np.uint64), ids[r], vals[r])


@njit(cache=True, inline="always")
def _heap_push(keys, vals, n, key, v):
    """Insert (key, v) into the min-heap of n keys (room for one more); returns n + 1."""
    i = n
    keys[i], vals[i] = key, v
    while i > 0:
        p = (i - 1) // 2
        if keys[p] <= keys[i]:
            break
        keys[p], keys[i] = keys[i], keys[p]
        vals[p], vals[i] = vals[i], vals[p]
        i = p
    return n + 1


@njit(cache=True, inline="always")
def _heap_replace(keys, vals, n, key, v):
    """Replace the root of the full min-heap of n keys with (key, v)."""
    keys[0], vals[0] = key, v
    i = 0
    while True:
        c = 2 * i + 1
        if c >= n:
            return
        if c + 1 < n and keys[c + 1] < keys[c]:
            c += 1
        if keys[i] <= keys[c]:
            return
        keys[i], keys[c] = keys[c], keys[i]
        vals[i], vals[c] = vals[c], vals[i]
        i = c


@njit(cache=True)
def _scan_block(s, bias, has_bias, j0, kk, ex, epos, keys, vals, cnt, thr, fbits, ubits):
    """Fold one query's scores s[j] (+ bias[j0 + j]) of items j0.. into its heap (keys / vals, cnt
    entries, root score thr once full). A run of 16 items none of which reaches thr is skipped by
    one vectorised test; the rest go through the exclusion and the key compare. Returns the new
    (cnt, thr, epos). fbits / ubits: one float32 and its uint32 view (the score's bits)."""
    w = s.size
    for c0 in range(0, w, 16):
        c1 = min(c0 + 16, w)
        if cnt == kk:
            hit = False
            for j in range(c0, c1):
                v = s[j] + bias[j0 + j] if has_bias else s[j]
                hit |= v >= thr
            if not hit:
                continue
        for j in range(c0, c1):
            v = s[j] + bias[j0 + j] if has_bias else s[j]
            if v < thr or not v > -np.inf:  # NaN and -inf are never returned
                continue
            jj = j0 + j
            while epos < ex.size and ex[epos] < jj:
                epos += 1
            if epos < ex.size and ex[epos] == jj:
                continue
            fbits[0] = v
            u = np.uint32(0) if v == 0 else ubits[0]  # -0 ranks as +0
            u = ~u if u & _SIGN else u | _SIGN
            key = (np.uint64(u) << _S32) | (_LOW - np.uint64(jj))
            if cnt < kk:
                cnt = _heap_push(keys, vals, cnt, key, v)
            elif key > keys[0]:
                _heap_replace(keys, vals, cnt, key, v)
            else:
                continue
            if cnt == kk:
                thr = vals[0]
    return cnt, thr, epos


@njit(cache=True, parallel=True)
def search_fp32(items, bias, has_bias, q, kk, ex_ptr, ex_idx, block, item_block):
    """Exact fp32 search, scoring and selection fused per cache block: each thread takes ``block``
    queries, scores them against ``item_block`` items at a time (one sgemm: call it with BLAS on
    one thread, so no parallel region waits on BLAS threads) and folds each score tile into the
    queries' k-heaps while it is in cache; the (queries, items) score matrix is never formed.
    items (n, d) C-contiguous; heaps keep ``select_row``'s keys (higher score, then lower id)."""
    m, n = q.shape[0], items.shape[0]
    ids, out = np.empty((m, kk), np.int32), np.empty((m, kk), np.float32)
    for b in prange((m + block - 1) // block):
        q0, q1 = b * block, min(m, (b + 1) * block)
        nq = q1 - q0
        keys = np.empty((nq, kk), np.uint64)
        vals = np.empty((nq, kk), np.float32)
        cnt = np.zeros(nq, np.int64)
        thr = np.full(nq, -np.inf, np.float32)
        epos = np.zeros(nq, np.int64)
        fbits = np.empty(1, np.float32)
        ubits = fbits.view(np.uint32)
        exs = []
        for r in range(nq):
            lo, hi = (ex_ptr[q0 + r], ex_ptr[q0 + r + 1]) if ex_ptr.size > 1 else (0, 0)
            exs.append(np.sort(ex_idx[lo:hi]))
        qb = q[q0:q1]
        for j0 in range(0, n, item_block):
            j1 = min(n, j0 + item_block)
            s = np.dot(qb, items[j0:j1].T)
            for r in range(nq):
                cnt[r], thr[r], epos[r] = _scan_block(s[r], bias, has_bias, j0, kk, exs[r], epos[r], keys[r],
                                                      vals[r], cnt[r], thr[r], fbits, ubits)
        for r in range(nq):
            c = cnt[r]
            order = np.argsort(keys[r, :c])
            for t in range(kk):
                if t < c:
                    o = order[c - 1 - t]
                    ids[q0 + r, t] = np.int64(_LOW - (keys[r, o] & _LOW))
                    out[q0 + r, t] = vals[r, o] + np.float32(0)
                else:
                    ids[q0 + r, t], out[q0 + r, t] = -1, -np.inf
    return ids, out


@njit(cache=True, parallel=True)
def gram_upper(ip, ix, dv, cp, cr, cv, G):
    """G[i, j] = sum_r x_ri x_rj for j >= i: output row i from column i's rows (CSC cp, cr, cv),
    so no two threads write one row; CSR rows sorted by column."""
    n = G.shape[0]
    for i in prange(n):
        g = G[i]
        g[i:] = 0
        for t in range(cp[i], cp[i + 1]):
            r, a = cr[t], cv[t]
            k0 = ip[r] + np.searchsorted(ix[ip[r]:ip[r + 1]], i)
            for k in range(k0, ip[r + 1]):
                g[ix[k]] += a * dv[k]


@njit(cache=True, parallel=True)
def spmm(ip, ix, dv, W, out, panel):
    """out = X @ W by column panels of W (a panel of a wide W stays in the last-level cache)."""
    c = W.shape[1]
    for s in range(0, c, panel):
        e = min(c, s + panel)
        for r in prange(ip.size - 1):
            o = out[r, s:e]
            o[:] = 0
            for k in range(ip[r], ip[r + 1]):
                o += dv[k] * W[ix[k], s:e]

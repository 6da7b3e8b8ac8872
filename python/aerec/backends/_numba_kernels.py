"""The Numba kernels behind ``aerec.backends.numba_`` (imported only when numba is installed).

Everything here is ``@njit(cache=True)``; the maths and random streams are aerec.nn.spec's, in the
NumPy reference's float32 operation order (``backends/numpy_.py``). The network keeps its
parameters, gradients and optimizer state in flat float32 buffers; tensor ``t`` (``W0, b0, W1, ...,
U``) is ``buf[off[t]:off[t + 1]]``. Layer 0 always receives its input as canonical CSR (sorted, no
duplicates; a dense x is converted by its non-zeros first: the same numbers, as dropout and
normalisation act on non-zeros only); a batch with at least 1/4 of its entries stored is then
multiplied as a dense matrix (``dense0_view``: a full batch's CSR values are that matrix already),
a sparser one by CSR loops. The dense products are ``np.dot`` on 2-D float32 arrays, which Numba
lowers to SciPy's BLAS (``scipy.linalg.cython_blas.sgemm``), split over Numba's threads by ``pdot``.

Codes: activations identity relu sigmoid tanh elu selu = 0..5; losses mse bce masked_mse
multinomial logistic = 0..4; optimizers adam adamw sgd = 0..2.
"""
import numpy as np
from numba import njit, prange

_G = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
DROPOUT, NOISE = np.uint64(0x6A09E667F3BCC909), np.uint64(0x3C6EF372FE94F82B)
NEGATIVE, SHUFFLE = np.uint64(0xA54FF53A5F1D36F1), np.uint64(0xBB67AE8584CAA73B)
_S30, _S27, _S31, _S32, _S40 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(32), np.uint64(40)
_ONE64 = np.uint64(1)
_F0, _F1, _FH = np.float32(0), np.float32(1), np.float32(0.5)
_U24 = np.float32(2.0 ** -24)
_TWO_PI = np.float32(2 * np.pi)
_SELU_A, _SELU_S = np.float32(1.6732632423543772), np.float32(1.0507009873554805)
_SELU_SA = np.float32(np.float32(1.0507009873554805) * np.float32(1.6732632423543772))
# config vector ci: layers, variational layer (-1), loss, normalize, negatives, n_users, optimizer,
# lazy, nesterov, anneal_steps, seed (as int64 bits), output activation; cf: l2, beta
CI_L, CI_VL, CI_LOSS, CI_NORM, CI_NEG, CI_NU, CI_OPT, CI_LAZY, CI_NEST, CI_ANNEAL, CI_SEED, CI_OUT = range(12)
CF_L2, CF_BETA = range(2)


@njit(cache=True, inline="always")
def mix64(z):
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


@njit(cache=True, inline="always")
def h(key, e):
    return mix64(key + (e + _ONE64) * _G)


@njit(cache=True)
def stream_key(seed, stream, step, layer):
    return mix64(mix64(mix64(seed ^ stream) ^ np.uint64(step)) ^ np.uint64(layer))


@njit(cache=True, inline="always")
def keep_scale(key, e, p, scale):
    u = np.float32(h(key, e) >> _S40) * _U24
    return scale if u >= p else _F0


@njit(cache=True)
def argsort_uniform(v):
    """np.argsort of distinct uint64 values (the stable order), fast when they are spread uniformly
    (hashes): a counting sort on the top bits leaves ~1 value per bucket, then each bucket is sorted
    in place (a bucket of more than 32, never expected for hashes, by np.argsort: the worst case stays
    n log n). 3 us for 800 values, 0.17 ms for 20,000 (np.argsort: 9 us, 1.3 ms)."""
    n = v.size
    bits = 0
    while (1 << bits) < n:
        bits += 1
    sh = np.uint64(64 - bits) if bits > 0 else np.uint64(0)  # bits == 0 (n <= 1): one bucket
    start = np.zeros((1 << bits) + 1, np.int64)
    for i in range(n):
        start[(v[i] >> sh if bits > 0 else np.uint64(0)) + _ONE64] += 1
    for b in range(1 << bits):
        start[b + 1] += start[b]
    out = np.empty(n, np.int64)
    fill = start[:-1].copy()
    for i in range(n):
        b = v[i] >> sh if bits > 0 else np.uint64(0)
        out[fill[b]] = i
        fill[b] += 1
    for b in range(1 << bits):
        lo, hi = start[b], start[b + 1]
        if hi - lo > 32:
            seg = out[lo:hi].copy()
            out[lo:hi] = seg[np.argsort(v[seg])]
            continue
        for i in range(lo + 1, hi):
            cur = out[i]
            j = i - 1
            while j >= lo and v[out[j]] > v[cur]:
                out[j + 1] = out[j]
                j -= 1
            out[j + 1] = cur
    return out


@njit(cache=True)
def shuffle_order(spec_seed, seed, n):
    k = mix64(mix64(spec_seed ^ SHUFFLE) ^ seed)
    v = np.empty(n, np.uint64)
    for i in range(n):
        v[i] = h(k, np.uint64(i))
    # the values are distinct (h is a bijection of i), so any correct sort gives the stable order
    return argsort_uniform(v)


@njit(cache=True)
def dense_to_csr(a):
    """(indptr int64, indices int32, data float32) of a dense float32 matrix's non-zeros."""
    n, m = a.shape
    ptr = np.zeros(n + 1, np.int64)
    for r in range(n):
        c = 0
        for j in range(m):
            c += a[r, j] != 0
        ptr[r + 1] = ptr[r] + c
    if ptr[n] == n * m:  # no zeros: the pattern is every column of every row
        idx = np.empty(n * m, np.int32)
        for r in range(n):
            for j in range(m):
                idx[r * m + j] = j
        return ptr, idx, a.ravel().copy()
    idx, val = np.empty(ptr[n], np.int32), np.empty(ptr[n], np.float32)
    for r in range(n):
        k = ptr[r]
        for j in range(m):
            if a[r, j] != 0:
                idx[k], val[k] = j, a[r, j]
                k += 1
    return ptr, idx, val


# ---- activations ---------------------------------------------------------------------------------

@njit(cache=True, inline="always")
def act(code, z):
    if code == 1:
        return max(z, _F0)
    if code == 2:
        return _F1 / (_F1 + np.exp(-z))
    if code == 3:
        return np.tanh(z)
    if code == 4:
        return z if z > _F0 else np.expm1(min(z, _F0))
    if code == 5:
        return _SELU_S * z if z > _F0 else _SELU_SA * np.expm1(min(z, _F0))
    return z


@njit(cache=True, inline="always")
def act_grad(code, y):
    if code == 1:
        return _F1 if y > _F0 else _F0
    if code == 2:
        return y * (_F1 - y)
    if code == 3:
        return _F1 - y * y
    if code == 4:
        return _F1 if y > _F0 else y + _F1
    if code == 5:
        return _SELU_S if y > _F0 else y + _SELU_S * _SELU_A
    return _F1


@njit(cache=True, parallel=True)
def bias_act(z, b, code):
    """z = act(z + b) row by row, in place."""
    for r in prange(z.shape[0]):
        for j in range(z.shape[1]):
            z[r, j] = act(code, z[r, j] + b[j])


@njit(cache=True)
def gemm(a, b, bias, code, alpha, has_bias):
    """act(alpha * a @ b + bias) with a, b any 2-D float32 layout (transposes are views)."""
    z = np.dot(a, b)
    if alpha != _F1:
        z *= alpha
    bias_act(z, bias if has_bias else np.zeros(z.shape[1], np.float32), code)
    return z


@njit(cache=True, parallel=True)
def pdot(a, b, out, nt):
    """out = a @ b with out's rows split over nt threads, each one sgemm (run with BLAS on one thread:
    Numba's threads then own the cores, and no parallel loop waits on spinning BLAS threads)."""
    n = out.shape[0]
    if nt == 1:  # one call, no copy (a may be a transposed view: BLAS takes it as it is)
        np.dot(a, b, out)
        return
    for t in prange(nt):
        r0, r1 = t * n // nt, (t + 1) * n // nt
        if r1 > r0:
            np.dot(np.ascontiguousarray(a[r0:r1]), b, out[r0:r1])


# ---- the network -------------------------------------------------------------------------------------

@njit(cache=True, inline="always")
def tensor(buf, off, t, cols):
    return buf[off[t]:off[t + 1]].reshape((off[t + 1] - off[t]) // cols, cols)


@njit(cache=True)
def workspace(sz, ow, bs, mode):
    """Per-call buffers for batches of up to bs rows: layer inputs (1..L-1) and outputs; from mode 1
    (loss) the dense target, dz and the logistic selection; from mode 2 (gradients) da."""
    n_out, wmax = sz[-1], max(ow.max(), sz.max())
    inp = np.empty(bs * max(sz[1:].sum(), 1), np.float32)
    out = np.empty(bs * ow.sum(), np.float32)
    loss, grad = bs if mode >= 1 else 0, bs if mode >= 2 else 0
    return inp, out, np.empty(loss * wmax, np.float32), np.empty(grad * wmax, np.float32), \
        np.empty(loss * n_out, np.float32), np.empty(loss * n_out, np.uint8)


@njit(cache=True, inline="always")
def layer_view(buf, sz_or_ow, i, nb, bs, first):
    o = 0
    for j in range(first, i):
        o += bs * sz_or_ow[j]
    return buf[o:o + nb * sz_or_ow[i]].reshape(nb, sz_or_ow[i])


@njit(cache=True, inline="always")
def layer_input(inp, out, sz, ow, i, nb, bs, vl, dropped):
    """The input of layer i >= 1: its own buffer in ``inp`` when it differs from layer i - 1's output
    (the variational layer's sample, or dropped out), else that output itself (no copy)."""
    if i - 1 == vl or dropped:
        return layer_view(inp, sz, i, nb, bs, 1)
    return layer_view(out, ow, i - 1, nb, bs, 0)


@njit(cache=True, parallel=True)
def input_rows(xp, xi, xv, rows, bptr, bval, n_in, normalize, train_drop, p, scale, key):
    """Layer 0's input for the batch as CSR values: normalised, dropped out (bptr from 0)."""
    nb = rows.size
    for r in prange(nb):
        a, b = xp[rows[r]], xp[rows[r] + 1]
        nrm = _F1
        if normalize:
            s = _F0
            for k in range(a, b):
                s += xv[k] * xv[k]
            nrm = np.sqrt(s) if s > _F0 else _F1
        base = np.uint64(rows[r]) * np.uint64(n_in)
        for k in range(a, b):
            v = xv[k] / nrm if normalize else xv[k]
            if train_drop and v != _F0:
                v *= keep_scale(key, base + np.uint64(xi[k]), p, scale)
            bval[bptr[r] + k - a] = v


@njit(cache=True, parallel=True)
def sparse_layer0(z, xp, xi, rows, bptr, bval, W, b, U, users, has_users):
    cols = z.shape[1]
    for r in prange(rows.size):  # 2-D indexing from 0 in the inner loops: they vectorise
        for j in range(cols):
            z[r, j] = b[j]
        if has_users:
            u = users[rows[r]]
            for j in range(cols):
                z[r, j] += U[u, j]
        a, b0 = xp[rows[r]], bptr[r]
        for k in range(bptr[r + 1] - b0):
            v = bval[b0 + k]
            if v != _F0:
                i = xi[a + k]
                for j in range(cols):
                    z[r, j] += v * W[i, j]


#: layer 0 reads a batch as a dense (rows, n_in) matrix (one sgemm) when at least 1 / DENSE0_DENSITY
#: of the batch's entries are stored and the batch fits the per-call buffer (DENSE0_MAX elements);
#: sparser batches run the CSR loops above. A batch whose rows are all full (a dense x without
#: zeros) is its own dense matrix: the CSR values of canonical rows are row-major. At the Keras
#: tutorial's 32 x 10 -> 64 the CSR loop cost ~4 us (its output row round-trips through memory for
#: every input column), the sgemm ~0.5 us.
DENSE0_DENSITY = 4
DENSE0_MAX = 1 << 20


@njit(cache=True, inline="always")
def dense0_view(dense0, bval, nb, n_in, nnz):
    """Layer 0's batch as a dense (nb, n_in) matrix when it takes the dense path: ``bval`` itself when
    every row is full, else the ``dense0`` buffer (to be filled by ``densify``); (0, n_in) for the
    CSR path."""
    if nnz == nb * n_in:
        return bval[:nnz].reshape(nb, n_in)
    if nb * n_in <= dense0.size and DENSE0_DENSITY * nnz >= nb * n_in:
        return dense0[:nb * n_in].reshape(nb, n_in)
    return dense0[:0].reshape(0, n_in)


@njit(cache=True, parallel=True)
def densify(X, xi, xp, rows, bptr, bval):
    """X = the batch's CSR values (bptr / bval from input_rows) as a dense matrix."""
    cols = X.shape[1]
    for r in prange(X.shape[0]):
        for j in range(cols):
            X[r, j] = _F0
        a, b0 = xp[rows[r]], bptr[r]
        for k in range(bptr[r + 1] - b0):
            X[r, xi[a + k]] = bval[b0 + k]


@njit(cache=True, parallel=True)
def layer0_epilogue(z, b, U, users, rows, has_users, code):
    """z = act((z + b) + U[user]) row by row, in place (z = x @ W0 from the dense path)."""
    cols = z.shape[1]
    for r in prange(z.shape[0]):
        if has_users:
            u = users[rows[r]]
            for j in range(cols):
                z[r, j] = act(code, (z[r, j] + b[j]) + U[u, j])
        else:
            for j in range(cols):
                z[r, j] = act(code, z[r, j] + b[j])


@njit(cache=True, parallel=True)
def rows_act(z, code):
    for r in prange(z.shape[0]):
        for j in range(z.shape[1]):
            z[r, j] = act(code, z[r, j])


@njit(cache=True, parallel=True)
def drop_rows(dst, src, rows, key, p, scale, apply):
    """dst = src * dropout multiplier (row ids ``rows``), or a copy when not apply."""
    cols = src.shape[1]
    for r in prange(src.shape[0]):
        base = np.uint64(rows[r]) * np.uint64(cols)
        for j in range(cols):
            dst[r, j] = src[r, j] * keep_scale(key, base + np.uint64(j), p, scale) if apply else src[r, j]


@njit(cache=True, parallel=True)
def sample_z(dst, zv, rows, key, p, scale, drop, key_drop, training):
    """The variational layer: dst = (mu + eps * exp(0.5 logvar) (training) or mu) * dropout."""
    d = dst.shape[1]
    for r in prange(dst.shape[0]):
        base = np.uint64(rows[r]) * np.uint64(d)
        for j in range(d):
            v = zv[r, j]
            if training:
                v = v + noise(key, rows[r], d, j) * np.exp(zv[r, d + j] * _FH)
            if drop:
                v *= keep_scale(key_drop, base + np.uint64(j), p, scale)
            dst[r, j] = v


@njit(cache=True, inline="always")
def noise(key, row, d, j):
    e2 = (np.uint64(row) * np.uint64(d) + np.uint64(j)) * np.uint64(2)
    u1 = (np.float32(h(key, e2) >> _S40) + _F1) * _U24
    u2 = np.float32(h(key, e2 + _ONE64) >> _S40) * _U24
    return np.sqrt(np.float32(-2) * np.log(u1)) * np.cos(_TWO_PI * u2)


@njit(cache=True)
def forward(P, off, sz, ow, acts, drop, ci, step, training, last, act_logits, xp, xi, xv, users, rows,
            bptr, bval, inp, out, bs, nt, dense0):
    """Layers 0..last on the batch ``rows``; returns the output view of layer ``last``. ``dense0``:
    the per-call buffer of the dense layer-0 path (see ``dense0_view``), possibly empty."""
    seed = np.uint64(ci[CI_SEED])
    L, vl, nb = ci[CI_L], ci[CI_VL], rows.size
    logits = ci[CI_LOSS] == 1 or ci[CI_LOSS] == 4
    p0 = drop[0]
    input_rows(xp, xi, xv, rows, bptr, bval, sz[0], ci[CI_NORM] != 0, training and p0 > 0, p0,
               _F1 / (_F1 - p0), stream_key(seed, DROPOUT, step, 0))
    z = layer_view(out, ow, 0, nb, bs, 0)
    has_u = ci[CI_NU] > 0
    W0, U = tensor(P, off, 0, ow[0]), tensor(P, off, 2 * L, ow[0]) if has_u else tensor(P, off, 0, ow[0])
    X0 = dense0_view(dense0, bval, nb, sz[0], bptr[nb])
    for i in range(last + 1):
        code = 0 if i == vl or (logits and i == L - 1 and not act_logits) else acts[i]
        if i == 0:
            if X0.shape[0] > 0:
                if bptr[nb] < nb * sz[0]:
                    densify(X0, xi, xp, rows, bptr, bval)
                pdot(X0, W0, z, nt)
                layer0_epilogue(z, P[off[1]:off[2]], U, users, rows, has_u, code)
            else:
                sparse_layer0(z, xp, xi, rows, bptr, bval, W0, P[off[1]:off[2]], U, users, has_u)
                if code != 0:
                    rows_act(z, code)
        else:
            prev = layer_view(out, ow, i - 1, nb, bs, 0)
            p = drop[i]
            kd = stream_key(seed, DROPOUT, step, i)
            x = layer_input(inp, out, sz, ow, i, nb, bs, vl, training and p > 0)
            if i - 1 == vl:
                sample_z(x, prev, rows, stream_key(seed, NOISE, step, vl), p, _F1 / (_F1 - p),
                         training and p > 0, kd, training)
            elif training and p > 0:
                drop_rows(x, prev, rows, kd, p, _F1 / (_F1 - p), True)
            z = layer_view(out, ow, i, nb, bs, 0)
            pdot(x, tensor(P, off, 2 * i, ow[i]), z, nt)
            bias_act(z, P[off[2 * i + 1]:off[2 * i + 2]], code)
    return z


@njit(cache=True, parallel=True)
def loss_rows(z, Y, SEL, ci, yp, yi, yv, mask, has_mask, rows, step, want_grad, dz, count, lrow):
    """Per-row loss sums (float64, into lrow) and dL/dz of the batch mean into dz. Rows are indexed
    2-D from 0 (a row view per row costs a reference-count round trip: ~half this kernel's time at
    the tutorial's 32 x 10)."""
    loss, nb, cols = ci[CI_LOSS], z.shape[0], z.shape[1]
    inv = np.float32(1.0 / count)
    nkey = stream_key(np.uint64(ci[CI_SEED]), NEGATIVE, step, 0)
    nneg = ci[CI_NEG]
    out_act = ci[CI_OUT]
    S2 = SEL[:nb * cols].reshape(nb, cols) if loss == 1 or loss == 4 else SEL[:0].reshape(0, cols)
    # every target row full (a dense y without zeros): the canonical CSR values are y itself, row-major
    full = yp[yp.size - 1] == (yp.size - 1) * cols
    Y2 = yv[:yp[yp.size - 1]].reshape(yp.size - 1, cols) if full else Y[:nb * cols].reshape(nb, cols)
    for r in prange(nb):
        a, b = yp[rows[r]], yp[rows[r] + 1]
        ry = rows[r] if full else np.int64(r)  # this row of Y2
        if not full:
            for j in range(cols):
                Y2[r, j] = _F0
            for k in range(a, b):
                Y2[r, yi[k]] += yv[k]
        s = 0.0
        if loss == 1 or loss == 4:
            use_sel = loss == 4 and nneg > 0
            if use_sel:
                for j in range(cols):
                    S2[r, j] = 0
                for k in range(a, b):
                    S2[r, yi[k]] = 1
                draws = (b - a) * nneg
                for t in range(draws):
                    e = (np.uint64(rows[r]) << _S32) | np.uint64(t)
                    S2[r, ((h(nkey, e) >> _S32) * np.uint64(cols)) >> _S32] = 1
            for j in range(cols):
                if use_sel and S2[r, j] == 0:
                    dz[r, j] = _F0
                    continue
                x = z[r, j]
                e = np.exp(-abs(x))
                s += (max(x, _F0) + np.log1p(e)) - Y2[ry, j] * x
                if want_grad:
                    iv = _F1 / (_F1 + e)
                    dz[r, j] = ((iv if x >= _F0 else e * iv) - Y2[ry, j]) * inv
        elif loss == 3:
            mx = z[r, 0]
            for j in range(1, cols):
                mx = max(mx, z[r, j])
            se, ys = 0.0, 0.0
            for j in range(cols):
                e = np.exp(z[r, j] - mx)
                dz[r, j] = e
                se += e
                ys += Y2[ry, j]
                s -= Y2[ry, j] * z[r, j]
            s += ys * (mx + np.log(se))
            if want_grad:
                f, y32 = np.float32(1.0 / se), np.float32(ys)
                for j in range(cols):
                    dz[r, j] = ((dz[r, j] * f) * y32 - Y2[ry, j]) * inv
        else:  # d = z - y into dz's row (vectorised), its squares summed in float64, then dz from d
            for j in range(cols):
                dz[r, j] = z[r, j] - Y2[ry, j]
            if loss == 2:
                for j in range(cols):
                    if (mask[rows[r], j] == _F0) if has_mask else (Y2[ry, j] == _F0):
                        dz[r, j] = _F0
            s2 = 0.0  # two partial sums: half the float64 add chain
            for j in range(0, cols - 1, 2):
                s += dz[r, j] * dz[r, j]
                s2 += dz[r, j + 1] * dz[r, j + 1]
            if cols & 1:
                s += dz[r, cols - 1] * dz[r, cols - 1]
            s += s2
            if want_grad:
                two = np.float32(2.0 / count)
                for j in range(cols):
                    dz[r, j] = (dz[r, j] * two) * act_grad(out_act, z[r, j])
        lrow[r] = s


@njit(cache=True)
def kl_sum(zv, d):
    s = 0.0
    for r in range(zv.shape[0]):
        for j in range(d):
            mu, lv = zv[r, j], zv[r, d + j]
            s += _FH * (((np.exp(lv) - lv) + mu * mu) - _F1)
    return s


@njit(cache=True)
def l2_sum(P, off, L, has_u):
    s = 0.0
    for t in range(0, 2 * L + (1 if has_u else 0), 2):
        for k in range(off[t], off[t + 1]):
            s += P[k] * P[k]
    return s


@njit(cache=True, parallel=True)
def sparse_grad0(G0, dz, xp, xi, rows, bptr, bval, touched, nt, l2, W0, lazy, threads):
    """G0 = x_batch^T dz + l2 W0 (every row, or only the touched rows when lazy), split over
    column chunks of the hidden layer (no two threads write one element; one chunk on one thread)."""
    cols = G0.shape[1]
    nch = max(1, min(cols // 32, 16)) if threads > 1 else 1
    for c in prange(nch):  # the inner loops run over slices from 0: they vectorise
        j0, j1 = c * cols // nch, (c + 1) * cols // nch
        w = j1 - j0
        for t in range(nt if lazy else G0.shape[0]):
            i = touched[t] if lazy else t
            g, w0 = G0[i, j0:j1], W0[i, j0:j1]
            for j in range(w):
                g[j] = l2 * w0[j]
        u0 = np.uint64(j0)  # unsigned indices: no negative-index wraparound in the loop
        for r in range(rows.size):
            a, b0 = xp[rows[r]], bptr[r]
            for k in range(bptr[r + 1] - b0):
                v = bval[b0 + k]
                if v != _F0:
                    i = xi[a + k]
                    for j in range(w):
                        jj = u0 + np.uint64(j)
                        G0[i, jj] += v * dz[r, jj]


@njit(cache=True, parallel=True)
def add_scaled(G, W, l2):
    for i in prange(G.shape[0]):
        for j in range(G.shape[1]):
            G[i, j] += l2 * W[i, j]


@njit(cache=True, parallel=True)
def vae_back(dnew, da, zv, rows, key, cb, training):
    d = da.shape[1]
    for r in prange(da.shape[0]):
        for j in range(d):
            mu, lv = zv[r, j], zv[r, d + j]
            ev, std = np.exp(lv), np.exp(lv * _FH)
            eps = noise(key, rows[r], d, j) if training else _F0
            dnew[r, j] = da[r, j] + cb * mu
            dnew[r, d + j] = (da[r, j] * eps) * (_FH * std) + (cb * _FH) * (ev - _F1)


@njit(cache=True, parallel=True)
def act_back(dnew, da, y, code, rows, key, p, scale, drop):
    cols = da.shape[1]
    for r in prange(da.shape[0]):
        base = np.uint64(rows[r]) * np.uint64(cols)
        for j in range(cols):
            g = da[r, j]
            if drop:
                g *= keep_scale(key, base + np.uint64(j), p, scale)
            dnew[r, j] = g * act_grad(code, y[r, j])


@njit(cache=True)
def backward(P, G, off, sz, ow, acts, drop, ci, step, l2, beta, training, xp, xi, users, rows, bptr, bval,
             inp, out, d1, d2, bs, touched, nt, threads, dense0):
    """Gradients of the batch mean loss (dz of the last layer in d1) into G. Layer 0's gradient
    reads the dense batch ``forward`` left in ``dense0`` when the batch took the dense path (every
    row of G0 is then written; the lazy step still moves only the touched rows)."""
    L, vl, nb = ci[CI_L], ci[CI_VL], rows.size
    seed = np.uint64(ci[CI_SEED])
    dz = d1[:nb * ow[L - 1]].reshape(nb, ow[L - 1])
    for i in range(L - 1, -1, -1):
        W, Gw = tensor(P, off, 2 * i, ow[i]), tensor(G, off, 2 * i, ow[i])
        gb = G[off[2 * i + 1]:off[2 * i + 2]]
        gb[:] = _F0
        for r in range(nb):  # a scalar loop: ``gb += dz[r]`` costs an array operation per row
            for j in range(gb.size):
                gb[j] += dz[r, j]
        if i == 0:
            X0 = dense0_view(dense0, bval, nb, sz[0], bptr[nb])
            if X0.shape[0] > 0:
                pdot(X0.T, dz, Gw, threads)
                if l2 != _F0:
                    add_scaled(Gw, W, l2)
            else:
                sparse_grad0(Gw, dz, xp, xi, rows, bptr, bval, touched, nt, l2, W, nt >= 0, threads)
            if ci[CI_NU] > 0:
                U, GU = tensor(P, off, 2 * L, ow[0]), tensor(G, off, 2 * L, ow[0])
                for k in range(GU.shape[0]):
                    GU[k] = l2 * U[k]
                for r in range(nb):
                    GU[users[rows[r]]] += dz[r]
            break
        x = layer_input(inp, out, sz, ow, i, nb, bs, vl, training and drop[i] > 0)
        pdot(x.T, dz, Gw, threads)
        if l2 != _F0:
            add_scaled(Gw, W, l2)
        da = d2[:nb * sz[i]].reshape(nb, sz[i])
        pdot(dz, W.T, da, threads)
        prev = layer_view(out, ow, i - 1, nb, bs, 0)
        p = drop[i]
        dnew = d1[:nb * ow[i - 1]].reshape(nb, ow[i - 1])  # dz is spent: da and Gw hold what it gave
        if i - 1 == vl:
            if training and p > 0:
                act_back(da, da, prev, 0, rows, stream_key(seed, DROPOUT, step, i), p, _F1 / (_F1 - p), True)
            vae_back(dnew, da, prev, rows, stream_key(seed, NOISE, step, vl), np.float32(beta / nb), training)
        else:
            act_back(dnew, da, prev, acts[i - 1], rows, stream_key(seed, DROPOUT, step, i), p,
                     _F1 / (_F1 - p), training and p > 0)
        dz = dnew


# ---- optimizer ---------------------------------------------------------------------------------------
# oc (float32): lr, wd, beta1, beta2, eps, 1 - beta1, 1 - beta2, 1 - beta1^t, 1 - beta2^t, lr * wd, momentum
@njit(cache=True, inline="always")
def update(P, G, M, V, k, opt, oc, nesterov):
    w, g = P[k], G[k]
    if opt == 1:
        if oc[1] > _F0:
            w -= oc[9] * w
    elif oc[1] > _F0:
        g = g + oc[1] * w
    if opt < 2:
        m = M[k] * oc[2] + oc[5] * g
        v = V[k] * oc[3] + oc[6] * (g * g)
        M[k], V[k] = m, v
        w -= (oc[0] * (m / oc[7])) / (np.sqrt(v / oc[8]) + oc[4])
    else:
        if oc[10] > _F0:
            buf = M[k] * oc[10] + g
            M[k] = buf
            g = g + oc[10] * buf if nesterov else buf
        w -= oc[0] * g
    P[k] = w


@njit(cache=True, parallel=True)
def optimize(P, G, M, V, ranges, nr, opt, oc, nesterov, KEEP):
    """One fused step over the element ranges [ranges[c, 0], ranges[c, 1]) (one parallel region).
    KEEP: one byte per parameter (0 = pruned: skipped), or empty (no masks). Each range is a slice
    indexed from 0 and Adam gets its own loop with ``opt`` a constant, so the compiler can
    vectorise it; ``update`` gets oc's values as a tuple (the array itself cost a reference-count
    round trip per element in a serial loop)."""
    o = (oc[0], oc[1], oc[2], oc[3], oc[4], oc[5], oc[6], oc[7], oc[8], oc[9], oc[10])
    masked = KEEP.size > 0
    for c in prange(nr):
        a, b = ranges[c, 0], ranges[c, 1]
        p, g, m, v = P[a:b], G[a:b], M[a:b], V[a:b]  # M / V empty when unused (slices stay empty)
        if masked:
            kp = KEEP[a:b]
            for k in range(b - a):
                if kp[k] != 0:
                    update(p, g, m, v, k, opt, o, nesterov)
        elif opt == 0:
            for k in range(b - a):
                update(p, g, m, v, k, 0, o, nesterov)
        else:
            for k in range(b - a):
                update(p, g, m, v, k, opt, o, nesterov)


_CHUNK = 16384


@njit(cache=True)
def step_ranges(off, cols0, ci, touched, nt, ulist, nu, ranges):
    """The element ranges one step updates: every tensor in chunks, or only the listed rows of W0 and U
    when lazy. Returns their count."""
    L, lazy = ci[CI_L], ci[CI_LAZY] != 0
    c = 0
    for t in range(2 * L + (1 if ci[CI_NU] > 0 else 0)):
        if lazy and (t == 0 or t == 2 * L):
            lst, cnt = (touched, nt) if t == 0 else (ulist, nu)
            for q in range(cnt):
                ranges[c, 0] = off[t] + lst[q] * cols0
                ranges[c, 1] = ranges[c, 0] + cols0
                c += 1
        else:
            for a in range(off[t], off[t + 1], _CHUNK):
                ranges[c, 0], ranges[c, 1] = a, min(a + _CHUNK, off[t + 1])
                c += 1
    return c


@njit(cache=True)
def opt_constants(cf_opt, step):
    """cf_opt: lr, wd, beta1, beta2, eps, momentum (float64) -> oc at optimizer step ``step``."""
    lr, wd, b1, b2, eps, mom = cf_opt[0], cf_opt[1], cf_opt[2], cf_opt[3], cf_opt[4], cf_opt[5]
    return np.array([lr, wd, b1, b2, eps, 1.0 - b1, 1.0 - b2, 1.0 - b1 ** step, 1.0 - b2 ** step, lr * wd, mom],
                    np.float32)


# ---- one call: eval forward, eval loss, gradients, or training over an order of rows ---------------------
@njit(cache=True)
def run(mode, P, G, M, V, off, sz, ow, acts, drop, ci, cf, cf_opt, step, training, xp, xi, xv, yp, yi, yv,
        mask, has_mask, users, order, bs, last, result, threads, KEEP):
    """mode 0: layers 0..last in eval mode into result (the output activation applied); 1: eval loss;
    2: loss and gradients (into G) of one batch; 3: train (one optimizer step per batch of ``order``).
    Returns (sum of batch losses weighted by rows (modes 2, 3) or the loss sum (mode 1), its
    divisor, the KL sum)."""
    L, vl = ci[CI_L], ci[CI_VL]
    n_in, n_out = sz[0], sz[L]
    l2, beta0, anneal = np.float32(cf[CF_L2]), cf[CF_BETA], ci[CI_ANNEAL]
    loss_code, has_u = ci[CI_LOSS], ci[CI_NU] > 0
    n = order.size
    bs = max(1, min(bs, n))
    inp, out, d1, d2, Y, SEL = workspace(sz, ow, bs, mode)
    lrow = np.empty(bs, np.float64)
    bptr = np.empty(bs + 1, np.int64)
    dense0 = np.empty(bs * n_in if bs * n_in <= DENSE0_MAX else 0, np.float32)
    mark = np.zeros(n_in if mode == 3 else 0, np.uint8)
    touched = np.empty(n_in if mode == 3 else 0, np.int64)
    umark = np.zeros(ci[CI_NU] if mode == 3 else 0, np.uint8)
    ulist = np.empty(ci[CI_NU] if mode == 3 else 0, np.int64)
    res = np.zeros(3)
    n_ranges = n_in + ci[CI_NU] + 2 * L + 1 + off[-1] // _CHUNK if mode == 3 else 0
    ranges = np.empty((n_ranges, 2), np.int64)
    l2term = 0.5 * cf[CF_L2] * l2_sum(P, off, L, has_u) if cf[CF_L2] != 0 and mode >= 1 else 0.0
    for s in range(0, n, bs):
        rows = order[s:s + bs]
        nb = rows.size
        bptr[0] = 0
        for r in range(nb):
            bptr[r + 1] = bptr[r] + xp[rows[r] + 1] - xp[rows[r]]
        bval = np.empty(bptr[nb], np.float32)
        beta = min(beta0, step / anneal) if anneal > 0 else beta0
        z = forward(P, off, sz, ow, acts, drop, ci, step, training, last if mode == 0 else L - 1, mode == 0,
                    xp, xi, xv, users, rows, bptr, bval, inp, out, bs, threads, dense0)
        if mode == 0:
            w = sz[last + 1]
            for r in range(nb):
                result[s + r] = z[r, :w]
            continue
        count = nb * n_out if loss_code == 0 or loss_code == 1 else nb
        dz = d1[:nb * n_out].reshape(nb, n_out)
        loss_rows(z, Y, SEL, ci, yp, yi, yv, mask, has_mask, rows, step, mode >= 2, dz, count, lrow)
        ls = lrow[:nb].sum()
        kl = kl_sum(layer_view(out, ow, vl, nb, bs, 0), sz[vl + 1]) if vl >= 0 else 0.0
        if mode == 1:
            res[0] += ls
            res[1] += count
            res[2] += kl
            continue
        if mode == 3 and s > 0 and cf[CF_L2] != 0:
            l2term = 0.5 * cf[CF_L2] * l2_sum(P, off, L, has_u)
        bl = ls / count + l2term + (beta * kl / nb if vl >= 0 else 0.0)
        res[0] += bl * nb
        nt, nu = 0, 0
        if mode == 3 and ci[CI_LAZY] != 0:
            for r in range(nb):
                for k in range(xp[rows[r]], xp[rows[r] + 1]):
                    c = xi[k]
                    if mark[c] == 0:
                        mark[c] = 1
                        touched[nt] = c
                        nt += 1
                if has_u and umark[users[rows[r]]] == 0:
                    umark[users[rows[r]]] = 1
                    ulist[nu] = users[rows[r]]
                    nu += 1
        backward(P, G, off, sz, ow, acts, drop, ci, step, l2, beta, training, xp, xi, users, rows, bptr, bval,
                 inp, out, d1, d2, bs, touched, nt if mode == 3 and ci[CI_LAZY] != 0 else -1, threads, dense0)
        if mode == 3:
            nr = step_ranges(off, ow[0], ci, touched, nt, ulist, nu, ranges)
            optimize(P, G, M, V, ranges, nr, ci[CI_OPT], opt_constants(cf_opt, step + 1), ci[CI_NEST] != 0, KEEP)
            for q in range(nt):
                mark[touched[q]] = 0
            for q in range(nu):
                umark[ulist[q]] = 0
            step += 1
    res[1] = res[1] if mode == 1 else n
    return res

"""Numba backend: the CPU fallback when the compiled module ``aerec._core`` is missing.

Kernels are ``@njit(cache=True)`` (``_numba_kernels.py``, ``_numba_topk.py``): the first call of a
kernel compiles it (a whole MultVAE fit: ~40 s), later processes load it from the cache (see
:func:`cache_dir`). Validation is the NumPy reference's (``Network`` subclasses it), so bad input
raises the same errors. Dense products are ``np.dot`` inside njit, which Numba lowers to SciPy's
BLAS (``scipy.linalg.cython_blas``: the OpenBLAS SciPy ships, with its own pthread pool); the
other loops run on Numba's threading layer (``omp`` where available). Left alone, OpenBLAS's idle
threads spin after each call and take the cores the next parallel loop needs, so large network
calls and TopK search call sgemm from inside Numba's parallel loops with BLAS capped at one thread
(threadpoolctl); small network calls run the serial twins of the kernels (``_numba_serial``: the
same source compiled without ``parallel``, so no parallel region and no thread settings). ``gemm``
itself is one BLAS call.
"""
from __future__ import annotations

import contextlib

NAME = "numba"

try:
    import numba
    _REASON = None
except ImportError:
    numba = None
    _REASON = "numba is not installed (pip install 'aerec[numba]')"


def unavailable_reason():
    return _REASON


@contextlib.contextmanager
def _threads(num_threads=0):
    """Numba's thread count for one call: ``num_threads`` when > 0, else aerec's
    (:func:`aerec.set_num_threads`), capped at Numba's pool; restored after (it is per thread)."""
    from .._config import get_num_threads
    n = int(num_threads) if num_threads and num_threads > 0 else get_num_threads()
    n = max(1, min(n, numba.config.NUMBA_NUM_THREADS))
    old = numba.get_num_threads()
    numba.set_num_threads(n)
    try:
        yield n
    finally:
        numba.set_num_threads(old)


import numpy as _np

from . import numpy_ as _ref
from ..nn.spec import ACTIVATIONS as _ACTS, LOSSES as _LOSSES, OPTIMIZERS as _OPTS


def version():
    return None if numba is None else numba.__version__


def cache_dir():
    """Where the compiled kernels are cached: NUMBA_CACHE_DIR when set, else ``__pycache__`` beside
    the kernels when that folder is writable, else Numba's per-user cache folder (an installed
    package in a read-only site-packages)."""
    if numba is None:
        return None
    from . import _numba_kernels as k
    return k.run._cache._cache_path


def _csr(a):
    """(indptr int64, indices int32, data float32) of a CSR matrix, or of a dense array's non-zeros
    (the same numbers for the network: dropout, normalisation and lazy rows act on non-zeros)."""
    if isinstance(a, _np.ndarray):
        from ._numba_kernels import dense_to_csr
        return dense_to_csr(a)
    if not a.has_canonical_format:
        a = a.copy()
        a.sum_duplicates()
    return (a.indptr.astype(_np.int64, copy=False), a.indices.astype(_np.int32, copy=False),
            _np.ascontiguousarray(a.data, dtype=_np.float32))


def _blas_threads(n, on=True):
    """BLAS capped at n threads for a kernel that calls sgemm from its own parallel loop (with
    threadpoolctl; without it, or when not ``on``, nothing). Uncapped, OpenBLAS's idle threads spin
    for a while after each call and take the cores Numba's threads need next: the W1 search ran
    2x slower."""
    if on:
        try:
            from threadpoolctl import threadpool_limits
            return threadpool_limits(n, user_api="blas")
        except ImportError:
            pass
    return contextlib.nullcontext()


#: below this many elements per batch (activations + parameters) a call runs the serial kernels
#: (``_numba_serial``): the Keras tutorial's step (~12k) ran 2-8x slower on two threads than on one,
#: and a parallel region costs ~1 us even on one thread (the C++ engine's threshold: 2^16-2^17)
_SERIAL_WORK = 1 << 17

_NO_MASK, _NO_USERS = _np.zeros((0, 0), _np.float32), _np.zeros(0, _np.int32)  # empty; the kernels only read them
_mods = None


def _kernels():
    """(the parallel kernels, their serial twins), imported once (an import statement per call costs
    ~1 us, and the tutorial's fit makes two calls an epoch)."""
    global _mods
    if _mods is None:
        from . import _numba_kernels, _numba_serial
        _mods = _numba_kernels, _numba_serial
    return _mods


class Network(_ref.Network):
    """The network engine in Numba: the NumPy reference's interface, validation and numbers (to
    float32 rounding), the same random streams; each call (a whole ``train_epoch`` included) is one
    compiled function. Parameters and optimizer state live in flat float32 buffers
    (``get_params`` returns copies). ``timings()`` counts ``batches`` only (phases are not timed
    inside the compiled epoch)."""

    def __init__(self, spec, params):
        super().__init__(spec, params, dtype=_np.float32)
        s = self.spec
        self._sz = _np.array(self._sizes, _np.int64)
        self._ow = _np.array([self._shapes[2 * l][1] for l in range(self.n_layers)], _np.int64)
        self._codes = _np.array([_ACTS.index(a) for a in s["activations"]], _np.int64)
        self._p32 = _np.array(s["dropout"], _np.float32)
        self._ci = _np.array([self.n_layers, self._vl, _LOSSES.index(s["loss"]), s["normalize_input"],
                              s["negative_samples"], s["n_users"], _OPTS.index(s["optimizer"]), s["lazy"],
                              s["nesterov"], s["anneal_steps"], s["seed"], self._codes[-1]], _np.int64)
        self._cf = _np.array([s["l2"], s["beta"]])
        self._cf_opt = _np.array([s["learning_rate"], s["weight_decay"], s["beta1"], s["beta2"], s["epsilon"],
                                  s["momentum"]])
        self._G = _np.zeros_like(self._P)
        # the serial / parallel decision of ``_run``: elements per batch row, and the parameters
        self._row_work, self._n_all = int(self._ow.sum() + self._sz[0]), int(self._off[-1])
        self._K = _np.zeros(0, _np.uint8)  # pruning masks, flat (set_masks); empty: none
        self._flat_state()

    # the flat buffers: tensor t is buf[off[t]:off[t + 1]]; the base class sees views into them
    def set_params(self, params):
        super().set_params(params)
        if self.params_bound:  # written into the bound buffer (_P is it)
            return
        self._off = _np.cumsum([0] + [p.size for p in self._params]).astype(_np.int64)
        self._P = _np.concatenate([p.ravel() for p in self._params])
        self._params = self._views(self._P)

    def bind_params(self, buf, copy=True):
        super().bind_params(buf, copy)
        self._P = buf

    def unbind_params(self):
        if not self.params_bound:
            return
        super().unbind_params()
        self._P = self._P.copy()
        self._params = self._views(self._P)

    def set_masks(self, masks):
        super().set_masks(masks)
        pr = self._pruned
        if not pr:
            self._K = _np.zeros(0, _np.uint8)
        else:  # one byte per parameter, the flat layout of _P (1 outside the masked tensors)
            self._K = _np.ones(self._off[-1], _np.uint8)
            for i, pruned in pr.items():
                self._K[self._off[i]:self._off[i + 1]] = ~pruned.ravel()

    def _views(self, buf):
        return [buf[a:b].reshape(shape) for a, b, shape in zip(self._off[:-1], self._off[1:], self._shapes)]

    def set_optimizer_state(self, state):
        super().set_optimizer_state(state)
        self._flat_state()

    def _flat_state(self):
        st, names = self._state, self._names
        empty = _np.zeros(0, _np.float32)
        flat = {}
        for pre in ("m", "v", "velocity"):
            if f"{pre}_{names[0]}" in st:
                flat[pre] = _np.concatenate([st[f"{pre}_{n}"].ravel() for n in names])
                st.update(zip((f"{pre}_{n}" for n in names), self._views(flat[pre])))
        self._M = flat.get("m", flat.get("velocity", empty))
        self._V = flat.get("v", empty)

    def _run(self, mode, x, y, mask, users, order, bs, training=False, last=0):
        xa = _csr(x)
        ya = xa if y is x or y is None else _csr(y)
        m = _NO_MASK if mask is None else _np.ascontiguousarray(mask, _np.float32)
        u = _NO_USERS if users is None else users
        out = _np.empty((order.size if mode == 0 else 0, self._sizes[last + 1]), _np.float32)
        args = (mode, self._P, self._G, self._M, self._V, self._off, self._sz, self._ow, self._codes, self._p32,
                self._ci, self._cf, self._cf_opt, self.step, training, *xa, *ya, m, mask is not None, u, order,
                int(bs), int(last), out)
        kernels, serial = _kernels()
        if min(bs, order.size) * self._row_work + self._n_all < _SERIAL_WORK:
            res = serial.run(*args, 1, self._K)  # no parallel region to size: no thread settings either
        else:
            with _threads() as threads, _blas_threads(1):
                res = kernels.run(*args, threads, self._K)
        return out if mode == 0 else res

    def hidden(self, x, layer, batch_size=4096, users=None):
        if isinstance(layer, bool) or not isinstance(layer, (int, _np.integer)):
            raise TypeError(f"layer must be an int, got {type(layer).__name__}")
        if not 0 <= layer < self.n_layers:
            raise IndexError(f"layer must be in [0, {self.n_layers}), got {layer}")
        bs = _ref._check_batch_size(batch_size)
        users = self._check(x, users=users)
        return self._run(0, x, None, None, users, _np.arange(x.shape[0], dtype=_np.int64), bs, last=int(layer))

    def loss(self, x, y, mask=None, batch_size=4096, users=None):
        bs = _ref._check_batch_size(batch_size)
        users = self._check(x, y, mask, users, need_rows=True)
        total, count, kl = self._run(1, x, y, mask, users, _np.arange(x.shape[0], dtype=_np.int64), bs)
        return total / count + self._l2_term() + (self.beta * kl / x.shape[0] if self._vl >= 0 else 0.0)

    def gradients(self, x, y, mask=None, training=False, users=None, rows=None, out=None, w0_rows=None):
        users = self._check(x, y, mask, users, need_rows=True)
        rows = _ref._check_rows(rows, x.shape[0])
        flags = _ref._check_w0_flags(w0_rows, out, self._sizes[0])
        if flags is not None:  # every row is written here; the flags say which ones hold data
            _ref._w0_flags(x, rows, flags)
        views = None if out is None else _ref._flat_views(out, self._shapes, _np.float32)
        order = _np.arange(x.shape[0], dtype=_np.int64) if rows is None else _np.ascontiguousarray(rows)
        n = order.size
        loss = self._run(2, x, y, mask, users, order, n, training=bool(training))[0] / n
        if views is None:
            return loss, [g.copy() for g in self._views(self._G)]
        out[...] = self._G
        return loss, views

    def apply_gradients(self, grads, rows0=None, user_rows=None, flat_range=None):
        # the reference's step on the views into the flat buffers (the same float32 operations)
        super().apply_gradients(grads, rows0, user_rows, flat_range)

    def get_params_flat(self, lo, hi, out=None):
        lo, hi = _ref._check_flat_range((lo, hi), self.n_params)
        out = _ref._check_flat_out(out, hi - lo)
        out[:] = self._P[lo:hi]
        return out

    def set_params_flat(self, lo, values):
        if not isinstance(values, _np.ndarray) or values.ndim != 1 or values.dtype != _np.float32:
            raise TypeError("values must be a 1-D numpy float32 array")
        lo, hi = _ref._check_flat_range((lo, lo + values.size), self.n_params)
        self._P[lo:hi] = values

    def _train(self, x, y, mask, users, order, bs):
        n = order.size
        loss = self._run(3, x, y, mask, users, order, bs, training=True)[0] / n
        batches = -(-n // bs)
        self.step += batches
        self._timings["batches"] += batches
        return loss

    def train_batch(self, x, y, mask=None, users=None):
        users = self._check(x, y, mask, users, need_rows=True)
        return self._train(x, y, mask, users, _np.arange(x.shape[0], dtype=_np.int64), x.shape[0])

    def train_epoch(self, x, y, mask=None, batch_size=32, shuffle=True, seed=0, users=None):
        bs = _ref._check_batch_size(batch_size)
        users = self._check(x, y, mask, users, need_rows=True)
        n = x.shape[0]
        shuffle_order = _kernels()[0].shuffle_order
        order = (shuffle_order(_np.uint64(self._seed), _np.uint64(int(seed) & _ref._M64), n) if shuffle
                 else _np.arange(n, dtype=_np.int64))
        return self._train(x, y, mask, users, order, bs)


# --- GEMM with fused bias + activation -----------------------------------------------------------------

def gemm(a, b, *, trans_a=False, trans_b=False, bias=None, activation="identity", alpha=1.0,
         num_threads=None):
    """``act(alpha * op(a) @ op(b) + bias)`` in float32: sgemm (SciPy's BLAS) inside njit, then one
    fused bias + activation pass. Same arguments and errors as ``backends.numpy_.gemm``."""
    from .._validation import check_gemm_args
    from ._numba_kernels import gemm as kernel
    alpha, _ = check_gemm_args(a, b, trans_a, trans_b, alpha, num_threads)
    _ref._gemm_activation(activation)  # unknown name: the reference's ValueError
    a, b = (_np.ascontiguousarray(v, dtype=_np.float32) for v in (a, b))
    if a.ndim != 2 or b.ndim != 2:
        raise ValueError(f"gemm: a and b must be 2-D, got shapes {a.shape} and {b.shape}")
    opa, opb = a.T if trans_a else a, b.T if trans_b else b
    if opa.shape[1] != opb.shape[0]:
        raise ValueError(f"gemm: shapes {a.shape}{'.T' if trans_a else ''} and "
                         f"{b.shape}{'.T' if trans_b else ''} do not align")
    if bias is not None:
        bias = _np.ascontiguousarray(bias, dtype=_np.float32)
        if bias.shape != (opb.shape[1],):
            raise ValueError(f"gemm: bias must have shape ({opb.shape[1]},), got {bias.shape}")
    code = _ACTS.index("identity" if activation == "linear" else activation)
    return kernel(opa, opb, _np.zeros(0, _np.float32) if bias is None else bias, code, _np.float32(alpha),
                  bias is not None)


# --- Top-k selection and the TopK index -------------------------------------------------------------------
from . import _numpy_topk as _ref_topk  # noqa: E402

_NO_EX = (_np.zeros(1, _np.int64), _np.zeros(0, _np.int32))


def _exclusion(ptr, idx):
    return _NO_EX if ptr is None else (_np.asarray(ptr, _np.int64), _np.asarray(idx, _np.int32))


def select_topk(scores, k, exclude=None, candidates=None, num_threads=0):
    """Top-min(k, m) per row of ``scores`` (n, m), excluding ``exclude`` and anything outside
    ``candidates``, in one parallel kernel; the contract of ``backends.numpy_.select_topk``."""
    from ._numba_topk import select_rows
    s, kk, keep, ptr, idx = _ref_topk.select_args(scores, k, exclude, candidates)
    s = _np.ascontiguousarray(s)
    ids, vals = _np.empty((s.shape[0], kk), _np.int32), _np.empty((s.shape[0], kk), _np.float32)
    if s.shape[0] and kk:
        with _threads(num_threads):
            select_rows(s, kk, _np.zeros(0, _np.bool_) if keep is None else keep, keep is not None,
                        *_exclusion(ptr, idx), ids, vals, 0)
    return ids, vals


#: exact search tiles: queries per thread task x items per sgemm (a 128 x 2048 float32 score tile is
#: 1 MiB, in L2 while it is selected from; 128 queries share each read of the item block)
_SEARCH_QUERIES, _SEARCH_ITEMS = 128, 2048


class TopkIndex(_ref_topk.TopkIndex):
    """The index behind :class:`aerec.search.TopK`: exact fp32 search compiled (each thread: sgemm
    score tiles of 128 queries x 2048 items, folded into a k-heap per query while in cache, with the
    exclusions applied in the scan); bf16 / int8 run
    the NumPy reference's quantised path (same quantisation contract, not compiled here)."""

    def search(self, queries, k, indptr=None, indices=None, num_threads=0):
        if self.precision != "fp32":
            return super().search(queries, k, indptr, indices, num_threads)
        from ._numba_topk import search_fp32
        q, k, indptr, indices = self._search_args(queries, k, indptr, indices)
        has_bias = self._bias is not None
        with _threads(num_threads), _blas_threads(1):
            return search_fp32(self._items, self._bias if has_bias else _np.zeros(0, _np.float32), has_bias,
                               _np.ascontiguousarray(q), min(k, self.n_items), *_exclusion(indptr, indices),
                               _SEARCH_QUERIES, _SEARCH_ITEMS)


# --- EASE: Gram matrix and SpMM ------------------------------------------------------------------------------

def gram_upper(X, dtype="float32", num_threads=0):
    """Upper triangle (j >= i) of ``X^T X`` for a CSR X: (n, n) C-contiguous float32 / float64, one
    output row per thread at a time (from the column's rows); the strict lower triangle is unset."""
    from ._numba_topk import gram_upper as kernel
    dt = _np.dtype(dtype)
    if dt not in (_np.float32, _np.float64):
        raise TypeError(f"dtype must be float32 or float64, got {dt}")
    X = X.tocsr()
    X = X.copy() if not X.has_sorted_indices else X
    X.sort_indices()
    C = X.tocsc()
    G = _np.empty((X.shape[1], X.shape[1]), dt)
    with _threads(num_threads):
        kernel(X.indptr.astype(_np.int64), X.indices.astype(_np.int32), X.data.astype(dt),
               C.indptr.astype(_np.int64), C.indices.astype(_np.int32), C.data.astype(dt), G)
    return G


# the NumPy reference (one partition of a |B| copy); the compiled backend has the fast kernel
top_magnitude_csr = _ref.top_magnitude_csr


def spmm(X, W, num_threads=0):
    """``X @ W`` for a CSR X (n_rows, n) and a dense float32 W (n, c) (a strided view is fine):
    (n_rows, c) float32, in 384-column panels of W (as the C++ backend)."""
    from ._numba_topk import spmm as kernel
    W = _np.asarray(W, dtype=_np.float32)
    if X.shape[1] != W.shape[0]:
        raise ValueError(f"spmm: X has {X.shape[1]} columns but W has {W.shape[0]} rows")
    X = X.tocsr()
    out = _np.empty((X.shape[0], W.shape[1]), _np.float32)
    with _threads(num_threads):
        kernel(X.indptr.astype(_np.int64), X.indices.astype(_np.int32), X.data.astype(_np.float32), W, out, 384)
    return out


# --- Compressed linear layers -----------------------------------------------------------------------
# The NumPy reference, delegated as is: its hot paths are already BLAS products (float64 @ on the
# quantised values) and NumPy selection; an njit version of the int8 / sparse kernels would not beat
# BLAS without the SIMD tiles the C++ backend has (the compiled fast path is backends.cpp).
from ._compressed import CompressedLinear  # noqa: E402,F401

"""Numba backend: the CPU fallback when the compiled module ``aerec._core`` is missing.

Kernels are ``@njit(cache=True)`` (``_numba_kernels.py``, ``_numba_topk.py``): the first call of a
kernel compiles it (the whole network engine: ~20 s), later processes load it from the cache (see
:func:`cache_dir`). Validation is the NumPy reference's (``Network`` subclasses it), so bad input
raises the same errors. Dense products are ``np.dot`` inside njit, which Numba lowers to SciPy's
BLAS (``scipy.linalg.cython_blas``: the OpenBLAS SciPy ships, with its own pthread pool); the
other loops run on Numba's threading layer. The two never run at once (a kernel calls BLAS between
parallel loops), so each uses the cores in turn.
"""
from __future__ import annotations

NAME = "numba"

try:
    import numba
    _REASON = None
except ImportError:
    numba = None
    _REASON = "numba is not installed (pip install 'aerec[numba]')"


def unavailable_reason():
    return _REASON


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


def _csr(a, rows=None):
    """(indptr int64, indices int32, data float32) of a CSR matrix, or of a dense array's non-zeros
    (the same numbers for the network: dropout, normalisation and lazy rows act on non-zeros)."""
    import scipy.sparse as sp
    if not sp.issparse(a):
        a = sp.csr_matrix(a)
    elif not a.has_canonical_format:
        a = a.copy()
        a.sum_duplicates()
    return (a.indptr.astype(_np.int64, copy=False), a.indices.astype(_np.int32, copy=False),
            _np.ascontiguousarray(a.data, dtype=_np.float32))


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
        self._flat_state()

    # the flat buffers: tensor t is buf[off[t]:off[t + 1]]; the base class sees views into them
    def set_params(self, params):
        super().set_params(params)
        self._off = _np.cumsum([0] + [p.size for p in self._params]).astype(_np.int64)
        self._P = _np.concatenate([p.ravel() for p in self._params])
        self._params = self._views(self._P)

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
        m = _np.zeros((0, 0), _np.float32) if mask is None else _np.ascontiguousarray(mask, _np.float32)
        u = _np.zeros(0, _np.int32) if users is None else users
        out = _np.empty((order.size if mode == 0 else 0, self._sizes[last + 1]), _np.float32)
        from ._numba_kernels import run
        res = run(mode, self._P, self._G, self._M, self._V, self._off, self._sz, self._ow, self._codes, self._p32,
                  self._ci, self._cf, self._cf_opt, self.step, training, *xa, *ya, m, mask is not None, u, order,
                  int(bs), int(last), out)
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

    def gradients(self, x, y, mask=None, training=False, users=None):
        users = self._check(x, y, mask, users, need_rows=True)
        n = x.shape[0]
        loss = self._run(2, x, y, mask, users, _np.arange(n, dtype=_np.int64), n, training=bool(training))[0] / n
        return loss, [g.copy() for g in self._views(self._G)]

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
        from ._numba_kernels import shuffle_order
        order = (shuffle_order(_np.uint64(self._seed), _np.uint64(int(seed) & _ref._M64), n) if shuffle
                 else _np.arange(n, dtype=_np.int64))
        return self._train(x, y, mask, users, order, bs)

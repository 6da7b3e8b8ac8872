"""NumPy reference backend: the oracle every other backend is tested against."""
from __future__ import annotations

NAME = "numpy"


def unavailable_reason():
    return None


# --------------------------------------------------------------------------------------------
# Network: the NumPy reference of the one network engine (the contract: aerec.nn.spec, whose
# docstring states the maths of every stage and the random streams bit by bit). All stream
# arithmetic is on uint64 with wrap-around; seeds are taken modulo 2**64.
# --------------------------------------------------------------------------------------------
import time as _time

import numpy as _np

from ..nn.spec import make_spec as _make_spec, param_shapes as _param_shapes, tensor_names as _tensor_names

_M64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
_DROPOUT_STREAM = 0x6A09E667F3BCC909
_NOISE_STREAM = 0x3C6EF372FE94F82B
_NEGATIVE_STREAM = 0xA54FF53A5F1D36F1
_SHUFFLE_STREAM = 0xBB67AE8584CAA73B
_U64 = _np.uint64
_TIMING_KEYS = ("gather", "spmm", "gemm", "noise", "loss", "dense_bwd", "sparse_bwd", "optimizer")


def _mix64_int(z: int) -> int:
    z &= _M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
    return z ^ (z >> 31)


def _mix64(z):
    """splitmix64 finaliser on a uint64 array (wrap-around arithmetic)."""
    z = z ^ (z >> _U64(30))
    z = z * _U64(0xBF58476D1CE4E5B9)
    z = z ^ (z >> _U64(27))
    z = z * _U64(0x94D049BB133111EB)
    return z ^ (z >> _U64(31))


def _h(key: int, e):
    """h(key, e) = mix64(key + (e + 1) * G) on a uint64 array of element ids."""
    return _mix64((_np.asarray(e, dtype=_U64) + _U64(1)) * _U64(_GOLDEN) + _U64(key & _M64))


def _stream_values(key: int, n: int):
    """h(key, e) for e in [0, n)."""
    return _h(key, _np.arange(n, dtype=_U64))


def stream_key(seed: int, stream: int, step: int, layer: int) -> int:
    """key(stream, step, layer) = mix64(mix64(mix64(seed ^ stream) ^ step) ^ layer)."""
    return _mix64_int(_mix64_int(_mix64_int((seed & _M64) ^ stream) ^ (step & _M64)) ^ (layer & _M64))


def dropout_key(seed: int, step: int, layer: int) -> int:
    return stream_key(seed, _DROPOUT_STREAM, step, layer)


def _row_ids(rows):
    """An int (rows 0..rows-1) or an array of row ids -> uint64 column vector."""
    r = _np.arange(rows) if _np.isscalar(rows) else _np.asarray(rows)
    return r.astype(_U64)[:, None]


def dropout_multiplier(seed: int, step: int, layer: int, rows, cols: int, p: float):
    """(len(rows), cols) float32 inverted-dropout multipliers (0 or 1 / (1 - p)) of weight layer
    ``layer``'s input; ``rows`` is a count (rows 0..rows-1) or the row ids in the call's x."""
    e = _row_ids(rows) * _U64(cols) + _np.arange(cols, dtype=_U64)[None, :]
    return _keep_scale(dropout_key(seed, step, layer), e, p)


def _keep_scale(key, e, p):
    u = (_h(key, e) >> _U64(40)).astype(_np.float32) * _np.float32(2.0 ** -24)
    p32 = _np.float32(p)
    scale = _np.float32(1.0) / (_np.float32(1.0) - p32)
    return _np.where(u >= p32, scale, _np.float32(0.0)).astype(_np.float32)


def gaussian_noise(seed: int, step: int, layer: int, rows, cols: int):
    """(len(rows), cols) float32 standard normals of the variational layer (Box-Muller over
    element ``e = row * cols + j``: ``h(k, 2e)``, ``h(k, 2e + 1)``; see aerec.nn.spec)."""
    e = _row_ids(rows) * _U64(cols) + _np.arange(cols, dtype=_U64)[None, :]
    k = stream_key(seed, _NOISE_STREAM, step, layer)
    u1 = ((_h(k, e * _U64(2)) >> _U64(40)).astype(_np.float32) + _np.float32(1)) * _np.float32(2.0 ** -24)
    u2 = (_h(k, e * _U64(2) + _U64(1)) >> _U64(40)).astype(_np.float32) * _np.float32(2.0 ** -24)
    return (_np.sqrt(_np.float32(-2) * _np.log(u1)) * _np.cos(_np.float32(2 * _np.pi) * u2)).astype(_np.float32)


def negative_items(seed: int, step: int, rows, counts, n_out: int):
    """The sampled negatives of the logistic loss: for each row id ``rows[i]``, ``counts[i]`` draws
    ``((h(key(NEGATIVE, step, 0), (row << 32) | t) >> 32) * n_out) >> 32``. Returns (batch row
    index, item) int64 arrays."""
    counts = _np.asarray(counts, dtype=_np.int64)
    rr = _np.repeat(_np.arange(counts.size), counts)
    t = _np.arange(rr.size, dtype=_np.int64) - _np.repeat(_np.cumsum(counts) - counts, counts)
    e = (_np.asarray(rows, dtype=_U64)[rr] << _U64(32)) | t.astype(_U64)
    h = _h(stream_key(seed, _NEGATIVE_STREAM, step, 0), e)
    return rr, (((h >> _U64(32)) * _U64(n_out)) >> _U64(32)).astype(_np.int64)


def shuffle_permutation(spec_seed: int, seed: int, n: int):
    """The row order train_epoch(shuffle=True, seed=seed) visits (int64, length n)."""
    k = _mix64_int(_mix64_int((spec_seed & _M64) ^ _SHUFFLE_STREAM) ^ (seed & _M64))
    return _np.argsort(_stream_values(k, n), kind="stable").astype(_np.int64)


_SELU_ALPHA = 1.6732632423543772
_SELU_SCALE = 1.0507009873554805


def _activate(name, z):
    if name == "identity":
        return z
    if name == "relu":
        return _np.maximum(z, z.dtype.type(0))
    if name == "sigmoid":
        with _np.errstate(over="ignore"):
            return z.dtype.type(1) / (z.dtype.type(1) + _np.exp(-z))
    if name == "tanh":
        return _np.tanh(z)
    neg = _np.expm1(_np.minimum(z, z.dtype.type(0)))
    if name == "elu":
        return _np.where(z > 0, z, neg)
    if name == "selu":
        s, a = z.dtype.type(_SELU_SCALE), z.dtype.type(_SELU_ALPHA)
        return _np.where(z > 0, s * z, (s * a) * neg)
    raise ValueError(f"unknown activation {name!r}")


def _activation_grad(name, y):
    """d act / d z from the output y = act(z) (as cpp/include/aerec/activation.hpp)."""
    one = y.dtype.type(1)
    if name == "identity":
        return _np.ones_like(y)
    if name == "relu":
        return (y > 0).astype(y.dtype)
    if name == "sigmoid":
        return y * (one - y)
    if name == "tanh":
        return one - y * y
    if name == "elu":
        return _np.where(y > 0, one, y + one)
    if name == "selu":
        s, a = y.dtype.type(_SELU_SCALE), y.dtype.type(_SELU_ALPHA)
        return _np.where(y > 0, s, y + s * a)
    raise ValueError(f"unknown activation {name!r}")


def _issparse(a):
    if not type(a).__module__.startswith("scipy.sparse"):  # no scipy import for dense use
        return False
    import scipy.sparse as sp
    return sp.issparse(a)


def _check_matrix(a, name, cols, dtype, rows=None):
    if _issparse(a):
        if a.format != "csr":
            raise TypeError(f"{name} must be a scipy.sparse CSR matrix, got format {a.format!r}; "
                            "convert it with .tocsr()")
        if a.dtype != dtype:
            raise TypeError(f"{name} must have dtype {_np.dtype(dtype).name}, got {a.dtype}")
        if a.nnz and not _np.isfinite(a.data).all():
            raise ValueError(f"{name} contains NaN or infinity")
    else:
        if not isinstance(a, _np.ndarray):
            raise TypeError(f"{name} must be a numpy.ndarray or a scipy.sparse CSR matrix, got {type(a).__name__}")
        if a.dtype != dtype:
            raise TypeError(f"{name} must have dtype {_np.dtype(dtype).name}, got {a.dtype}; "
                            "convert it with np.asarray(x, dtype=...)")
        if a.ndim != 2:
            raise ValueError(f"{name} must be 2-D, got ndim={a.ndim}")
    if a.shape[1] != cols:
        raise ValueError(f"{name} has {a.shape[1]} columns, the network expects {cols}")
    if rows is not None and a.shape[0] != rows:
        raise ValueError(f"{name} has {a.shape[0]} rows, expected {rows} (as x)")


def _check_batch_size(batch_size):
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, _np.integer)):
        raise TypeError(f"batch_size must be an int, got {type(batch_size).__name__}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    return int(batch_size)


def _check_rows(rows, n):
    """None, or the batch's row ids as a 1-D int64 array in [0, n) (a ``gradients(rows=)`` argument)."""
    if rows is None:
        return None
    if not isinstance(rows, _np.ndarray) or rows.dtype != _np.int64 or rows.ndim != 1:
        raise TypeError("rows must be a 1-D numpy int64 array of row ids of x")
    if rows.size == 0:
        raise ValueError("rows is empty: the batch has no rows")
    if rows.min() < 0 or rows.max() >= n:
        raise IndexError(f"rows must be row ids of x, in [0, {n})")
    return rows


def _check_ids(ids, n, name):
    """The rows a lazy ``apply_gradients`` moves: 1-D int32 in [0, n); None means none."""
    if ids is None:
        return _np.zeros(0, _np.int64)
    if not isinstance(ids, _np.ndarray) or ids.dtype != _np.int32 or ids.ndim != 1:
        raise TypeError(f"{name} must be a 1-D numpy int32 array")
    if ids.size and (ids.min() < 0 or ids.max() >= n):
        raise IndexError(f"{name} must be in [0, {n})")
    return ids.astype(_np.int64)


def _check_flat_out(out, n):
    """``get_params_flat``'s ``out``: None (a new array) or a writable 1-D C-contiguous float32 array
    of ``n`` elements."""
    if out is None:
        return _np.empty(n, _np.float32)
    if not isinstance(out, _np.ndarray) or out.dtype != _np.float32 or out.ndim != 1:
        raise TypeError("out must be a 1-D numpy float32 array (or None for a new one)")
    if out.size != n or not out.flags.c_contiguous or not out.flags.writeable:
        raise ValueError(f"out must be a writable C-contiguous float32 array of {n} elements (hi - lo), "
                         f"got {out.size} elements")
    return out


def _check_flat_range(flat_range, n):
    """``(lo, hi)`` offsets of the flat parameter vector, 0 <= lo <= hi <= n (None: all)."""
    if flat_range is None:
        return 0, n
    try:
        lo, hi = flat_range
    except (TypeError, ValueError):
        raise TypeError(f"flat_range must be a (lo, hi) pair of ints, got {flat_range!r}") from None
    for v in (lo, hi):
        if isinstance(v, bool) or not isinstance(v, (int, _np.integer)):
            raise TypeError(f"flat_range must be a (lo, hi) pair of ints, got {flat_range!r}")
    lo, hi = int(lo), int(hi)
    if not 0 <= lo <= hi <= n:
        raise IndexError(f"flat_range ({lo}, {hi}) must satisfy 0 <= lo <= hi <= {n} (the flat parameter count)")
    return lo, hi


def _flat_views(flat, shapes, dtype, name="out"):
    """Views of one flat C-contiguous buffer as the tensors ``shapes`` (every tensor, flat, in order)."""
    total = sum(int(_np.prod(s)) for s in shapes)
    if (not isinstance(flat, _np.ndarray) or flat.ndim != 1 or flat.dtype != dtype or flat.size != total
            or not flat.flags.c_contiguous):
        raise ValueError(f"{name} must be a 1-D C-contiguous {_np.dtype(dtype).name} array of {total} elements "
                         "(every tensor, flat, in order)")
    out, o = [], 0
    for s in shapes:
        n = int(_np.prod(s))
        out.append(flat[o:o + n].reshape(s))
        o += n
    return out


def _check_bind_buffer(buf, n, dtype):
    """``bind_params``' buffer: a writable 1-D C-contiguous array of ``n`` elements of ``dtype``."""
    if not isinstance(buf, _np.ndarray) or buf.dtype != dtype or buf.ndim != 1:
        raise TypeError(f"buf must be a 1-D numpy {_np.dtype(dtype).name} array")
    if buf.size != n or not buf.flags.c_contiguous or not buf.flags.writeable:
        raise ValueError(f"buf must be a writable C-contiguous {_np.dtype(dtype).name} array of {n} elements "
                         f"(n_params), got {buf.size} elements")
    return buf


def _check_gradient_sum(parts, scales, w0_rows, n, spec, dtype):
    """``apply_gradient_sum``'s arguments: a non-empty list of flat ``dtype`` buffers of ``n`` elements,
    one scale per part (as ``dtype``), and ``w0_rows`` None or one uint8 array of W0's rows (or None)
    per part."""
    if isinstance(parts, _np.ndarray) or not isinstance(parts, (list, tuple)) or not parts:
        raise TypeError("parts must be a non-empty list of flat gradient buffers (one per summed part)")
    for p in parts:
        if (not isinstance(p, _np.ndarray) or p.dtype != dtype or p.ndim != 1 or p.size != n
                or not p.flags.c_contiguous):
            raise ValueError(f"each part must be a 1-D C-contiguous {_np.dtype(dtype).name} array of {n} elements "
                             "(every tensor, flat, in order)")
    scales = _np.ascontiguousarray(scales, dtype=dtype)
    if scales.shape != (len(parts),) or not _np.isfinite(scales).all():
        raise ValueError(f"scales must hold one finite number per part ({len(parts)}), got shape {scales.shape}")
    if w0_rows is not None:
        w0_rows = list(w0_rows)
        if len(w0_rows) != len(parts):
            raise ValueError(f"w0_rows must hold one entry per part ({len(parts)}): a uint8 array of W0's rows or None")
        rows = spec["layer_sizes"][0]
        for r in w0_rows:
            if r is not None and (not isinstance(r, _np.ndarray) or r.dtype != _np.uint8 or r.shape != (rows,)
                                  or not r.flags.c_contiguous):
                raise ValueError(f"each w0_rows entry must be None or a C-contiguous uint8 array of {rows} elements "
                                 "(W0's rows; 0 = the part's row is zero)")
    return list(parts), scales, w0_rows


def _check_w0_flags(w0_rows, out, n_in):
    """``gradients``' ``w0_rows``: a writable C-contiguous uint8 array of W0's ``n_in`` rows (needs ``out``)."""
    if w0_rows is None:
        return None
    if out is None:
        raise ValueError("w0_rows needs out (the rows flagged 0 are left unwritten in it)")
    if (not isinstance(w0_rows, _np.ndarray) or w0_rows.dtype != _np.uint8 or w0_rows.shape != (n_in,)
            or not w0_rows.flags.c_contiguous or not w0_rows.flags.writeable):
        raise ValueError(f"w0_rows must be a writable C-contiguous uint8 array of {n_in} elements (W0's rows)")
    return w0_rows


def _w0_flags(x, rows, flags):
    """``gradients``' ``w0_rows`` as the reference writes it: 1 for W0's rows that the batch rows of a
    CSR x touch (a stored entry), 0 elsewhere; every row for a dense x."""
    if not _issparse(x):
        flags[:] = 1
        return
    flags[:] = 0
    sub = x if rows is None else x[rows]
    flags[sub.indices] = 1


def _check_grads(grads, shapes, names, dtype):
    """``apply_gradients``' list: one array per tensor, of its shape, converted to ``dtype`` (or one
    flat buffer of every tensor: split into views)."""
    if isinstance(grads, _np.ndarray) and grads.ndim == 1:
        return _flat_views(grads, shapes, dtype, "grads")
    grads = list(grads)
    if len(grads) != len(shapes):
        raise ValueError(f"expected {len(shapes)} gradient arrays {names}, got {len(grads)}")
    out = []
    for name, g, shape in zip(names, grads, shapes):
        g = _np.asarray(g, dtype=dtype)
        if g.shape != shape:
            raise ValueError(f"gradient of {name} must have shape {shape}, got {g.shape}")
        out.append(g)
    return out


class _Rows:
    """Rows of a dense or CSR matrix: ``.dense`` (in the network's dtype) and ``.pattern()``, the
    stored entries (CSR) or non-zeros (dense) as a bool array."""

    def __init__(self, a, rows, dtype):
        self._sub = a[rows] if _issparse(a) else None
        self.dense = self._sub.toarray() if self._sub is not None else a[rows]
        if self.dense.dtype != dtype:
            self.dense = self.dense.astype(dtype)

    def pattern(self):
        if self._sub is None:
            return self.dense != 0
        s = self._sub
        out = _np.zeros(s.shape, dtype=bool)
        out[_np.repeat(_np.arange(s.shape[0]), _np.diff(s.indptr)), s.indices] = True
        return out


class Network:
    """The NumPy reference network (the oracle every backend's ``Network`` is tested against).

    Parameters
    ----------
    spec : dict
        a spec of :func:`aerec.nn.spec.make_spec` (validated again here).
    params : list of ndarray
        ``[W0, b0, W1, b1, ..., (U)]`` with the shapes of :func:`aerec.nn.spec.param_shapes`;
        copied, converted to ``dtype``.
    dtype : numpy dtype, default float32
        float64 runs the whole network in double precision (gradient checks).

    x and y are dense arrays or scipy.sparse CSR matrices of ``dtype`` (for Mult-* / CDAE the same
    CSR as x and y: the target is the raw row, the input is normalised and dropped out). Each
    minibatch is densified, which defines the CSR semantics: the same numbers as the dense input.
    """

    def __init__(self, spec, params, dtype=_np.float32):
        self.spec = _make_spec(**spec)
        self.dtype = _np.dtype(dtype)
        if self.dtype not in (_np.float32, _np.float64):
            raise TypeError(f"dtype must be float32 or float64, got {self.dtype}")
        s = self.spec
        self._sizes = s["layer_sizes"]
        self.n_layers = len(self._sizes) - 1
        self._acts, self._drop, self._loss = s["activations"], s["dropout"], s["loss"]
        self._vl = s["encoder_depth"] - 1 if s["variational"] else -1
        self._names = _tensor_names(s)
        self._shapes = _param_shapes(s)
        self._seed = s["seed"]
        self.step = 0
        self.set_params(params)
        self._state = {k: _np.zeros(self._shapes[self._names.index(k.split("_", 1)[1])], self.dtype)
                       for k in self._state_keys()}
        self.reset_timings()

    # ---- parameters, optimizer state, timings -----------------------------------------------
    @property
    def step(self):
        """Optimizer updates made so far (keys the random streams and the KL anneal)."""
        return self._step

    @step.setter
    def step(self, value):
        if isinstance(value, bool) or not isinstance(value, (int, _np.integer)):
            raise TypeError(f"step must be an int, got {type(value).__name__}")
        if value < 0:
            raise ValueError(f"step must be >= 0, got {value}")
        self._step = int(value)

    @property
    def beta(self):
        """KL weight at the current step: min(beta, step / anneal_steps) when annealing, else beta."""
        s = self.spec
        return min(s["beta"], self.step / s["anneal_steps"]) if s["anneal_steps"] > 0 else s["beta"]

    def get_params(self):
        return [p.copy() for p in self._params]

    def set_params(self, params):
        params = list(params)
        if len(params) != len(self._shapes):
            raise ValueError(f"expected {len(self._shapes)} parameter arrays {self._names}, got {len(params)}")
        new = []
        for name, p, shape in zip(self._names, params, self._shapes):
            p = _np.asarray(p)
            if p.shape != shape:
                raise ValueError(f"{name} must have shape {shape}, got {p.shape}")
            new.append(_np.array(p, dtype=self.dtype, order="C", copy=True))
        if getattr(self, "_bound", None) is not None:  # bind_params: written into the bound buffer
            for v, p in zip(self._params, new):
                v[...] = p
        else:
            self._params = new
        self._zero_pruned(self._params)

    # ---- pruning masks (aerec.nn.spec: "Pruning masks") -----------------------------------------
    def set_masks(self, masks):
        """One mask per weight matrix (bool / uint8 of W_l's shape, True = kept; None = dense), or
        None to drop every mask. Zeroes the pruned weights and their optimizer state; every later
        step leaves them at 0."""
        from ..nn.spec import check_masks
        ms = check_masks(self.spec, masks)
        self._pruned = {2 * l: ~m for l, m in enumerate(ms) if m is not None}
        self._zero_pruned(self._params)
        self._zero_pruned_state()

    def get_masks(self):
        """The masks as bool arrays (True = kept), None where a weight matrix is dense."""
        pr = getattr(self, "_pruned", {})
        return [~pr[2 * l] if 2 * l in pr else None for l in range(self.n_layers)]

    def _zero_pruned(self, tensors):
        for i, pruned in getattr(self, "_pruned", {}).items():
            tensors[i][pruned] = 0

    def _zero_pruned_state(self):
        pr = getattr(self, "_pruned", {})
        if not pr:
            return
        for k, v in self._state.items():
            i = self._names.index(k.split("_", 1)[1])
            if i in pr:
                v[pr[i]] = 0

    def _state_keys(self):
        if self.spec["optimizer"] in ("adam", "adamw"):
            return [f"{k}_{n}" for n in self._names for k in ("m", "v")]
        return [f"velocity_{n}" for n in self._names] if self.spec["momentum"] > 0 else []

    def get_optimizer_state(self):
        d = {"step": _np.array(self.step, dtype=_np.int64)}
        d.update({k: v.copy() for k, v in self._state.items()})
        return d

    def set_optimizer_state(self, state):
        keys = ["step"] + self._state_keys()
        missing = [k for k in keys if k not in state]
        if missing:
            raise ValueError(f"optimizer state lacks {missing}; expected keys {keys}")
        step = int(_np.asarray(state["step"]))
        if step < 0:
            raise ValueError(f"optimizer step must be >= 0, got {step}")
        new = {}
        for k in keys[1:]:
            v = _np.asarray(state[k])
            if v.shape != self._state[k].shape:
                raise ValueError(f"optimizer state {k} must have shape {self._state[k].shape}, got {v.shape}")
            new[k] = _np.array(v, dtype=self.dtype, copy=True)
        self._state = new
        self._zero_pruned_state()
        self.step = step

    def timings(self):
        """Seconds per training phase since :meth:`reset_timings` (the C++ engine's keys), and
        ``batches``; ``gemm_flops`` is not counted here (0)."""
        return dict(self._timings)

    def reset_timings(self):
        self._timings = dict.fromkeys(_TIMING_KEYS, 0.0)
        self._timings.update(batches=0, gemm_flops=0)

    def _tick(self, key, t0):
        t = _time.perf_counter()
        self._timings[key] += t - t0
        return t

    # ---- checks -------------------------------------------------------------------------------
    def _check_users(self, users, n):
        nu = self.spec["n_users"]
        if not nu:
            if users is not None:
                raise ValueError("users= is only used by a network with n_users > 0 (CDAE)")
            return None
        if users is None:
            raise ValueError("this network has a per-user embedding (n_users > 0): pass users= "
                             "(int32, one id per row)")
        if not isinstance(users, _np.ndarray) or users.dtype != _np.int32:
            raise TypeError("users must be a numpy int32 array")
        if users.ndim != 1 or users.shape[0] != n:
            raise ValueError(f"users must be 1-D with one id per row of x ({n}), got shape {users.shape}")
        if n and (users.min() < 0 or users.max() >= nu):
            raise IndexError(f"user ids must be in [0, {nu}) (n_users)")
        return users

    def _check(self, x, y=None, mask=None, users=None, need_rows=False):
        _check_matrix(x, "x", self._sizes[0], self.dtype)
        if y is not None:
            _check_matrix(y, "y", self._sizes[-1], self.dtype, rows=x.shape[0])
        if mask is not None:
            if self._loss != "masked_mse":
                raise ValueError(f"mask is only used by loss='masked_mse' (this network uses {self._loss!r})")
            _check_matrix(mask, "mask", self._sizes[-1], self.dtype, rows=x.shape[0])
            if _issparse(mask):
                raise TypeError("mask must be a dense numpy.ndarray")
        if need_rows and x.shape[0] == 0:
            raise ValueError("x has no rows")
        return self._check_users(users, x.shape[0])

    # ---- forward / loss / backward ------------------------------------------------------------
    def _input(self, x, rows, training):
        """Layer 0's input: x, L2-normalised per row, dropped out (on its non-zeros only)."""
        if self.spec["normalize_input"]:
            nrm = _np.sqrt((x * x).sum(axis=1, keepdims=True))
            x = x / _np.where(nrm > 0, nrm, self.dtype.type(1))
        p = self._drop[0]
        if training and p > 0:
            r, c = _np.nonzero(x)
            e = _np.asarray(rows, dtype=_U64)[r] * _U64(self._sizes[0]) + c.astype(_U64)
            x = x.copy() if not self.spec["normalize_input"] else x
            x[r, c] *= _keep_scale(dropout_key(self._seed, self.step, 0), e, p).astype(self.dtype)
        return x

    def _forward(self, x, rows, training, last=None, users=None):
        """Layers 0..last on a dense batch whose rows are ``rows`` of the call's x. Returns the
        per-layer inputs, outputs (the last one: logits for bce / logistic), dropout multipliers
        and the variational layer's (mu, logvar, exp(logvar), std, eps). Writes nothing to self."""
        last = self.n_layers - 1 if last is None else last
        logits = self._loss in ("bce", "logistic")
        params, dt = self._params, self.dtype
        inputs, outputs, mults, vae = [], [], [], None
        h = self._input(x, rows, training)
        for i in range(last + 1):
            W, b = params[2 * i], params[2 * i + 1]
            m, p = None, self._drop[i]
            if i > 0 and training and p > 0:
                m = dropout_multiplier(self._seed, self.step, i, rows, h.shape[1], p).astype(dt)
                h = h * m
            z = h @ W + b
            if i == 0 and users is not None:
                z = z + params[-1][users]
            inputs.append(h)
            mults.append(m)
            if i == self._vl:
                d = self._sizes[i + 1]
                mu, lv = z[:, :d], z[:, d:]
                std = _np.exp(lv * dt.type(0.5))
                eps = (gaussian_noise(self._seed, self.step, i, rows, d).astype(dt) if training
                       else _np.zeros_like(mu))
                h = mu + eps * std if training else mu
                vae = (mu, lv, _np.exp(lv), std, eps)
            else:
                h = z if (logits and i == self.n_layers - 1) else _activate(self._acts[i], z)
            outputs.append(h)
        return inputs, outputs, mults, vae

    def _loss_sum(self, out, yr, mask, rows, want_grad):
        """(sum of the loss over the batch, its divisor, dL/dz of the last layer for the batch
        mean or None). ``out``: logits for bce / logistic; ``yr``: the target rows (_Rows)."""
        t = self.dtype.type
        y = yr.dense
        n, cols = out.shape
        if self._loss in ("bce", "logistic"):
            # softplus(z) - y z and sigmoid(z) - y from one e = exp(-|z|) (as the C++ core)
            e = _np.exp(-_np.abs(out))
            term = (_np.maximum(out, t(0)) + _np.log1p(e)) - y * out
            sel = None
            if self._loss == "logistic" and self.spec["negative_samples"]:
                sel = yr.pattern()
                rr, items = negative_items(self._seed, self.step, rows, sel.sum(axis=1) * self.spec["negative_samples"],
                                           cols)
                sel[rr, items] = True
                term = _np.where(sel, term, t(0))
            count = n * cols if self._loss == "bce" else n
            dz = None
            if want_grad:
                inv = t(1) / (t(1) + e)
                dz = (_np.where(out >= 0, inv, e * inv) - y) * t(1.0 / count)
                if sel is not None:
                    dz = _np.where(sel, dz, t(0))
            return float(term.sum(dtype=_np.float64)), count, dz
        if self._loss == "multinomial":
            # -sum_c y_c log_softmax(z)_c per row = ysum * lse - sum_c y_c z_c (as the C++ core)
            mx = out.max(axis=1, keepdims=True)
            e = _np.exp(out - mx)
            se = e.sum(axis=1, dtype=_np.float64, keepdims=True)
            ysum = y.sum(axis=1, dtype=_np.float64, keepdims=True)
            lse = mx.astype(_np.float64) + _np.log(se)
            s = float((ysum * lse).sum() - (y * out).sum(dtype=_np.float64))
            dz = None
            if want_grad:
                dz = ((e * (1.0 / se).astype(self.dtype)) * ysum.astype(self.dtype) - y) * t(1.0 / n)
            return s, n, dz
        if self._loss == "mse":
            count, d = n * cols, out - y
        else:  # masked_mse
            count = n
            d = _np.where((mask != 0) if mask is not None else (y != 0), out - y, t(0))
        dz = (d * t(2.0 / count)) * _activation_grad(self._acts[-1], out) if want_grad else None
        return float((d * d).sum(dtype=_np.float64)), count, dz

    def _l2_term(self):
        l2 = self.spec["l2"]
        if l2 == 0:
            return 0.0
        ws = self._params[0::2]  # W0, W1, ..., and U (the last tensor, at an even index)
        return 0.5 * l2 * sum(float((W * W).sum(dtype=_np.float64)) for W in ws)

    @staticmethod
    def _kl_sum(vae):
        """Sum over rows of 0.5 * sum_j (exp(logvar) + mu^2 - 1 - logvar)."""
        if vae is None:
            return 0.0
        mu, lv, ev, _, _ = vae
        t = mu.dtype.type
        return float((t(0.5) * (((ev - lv) + mu * mu) - t(1))).sum(dtype=_np.float64))

    def _batch_loss_grads(self, xr, yr, mask, rows, training, users=None):
        """(loss, grads) of one batch: xr, yr are _Rows, ``rows`` the batch's row ids in the call's x."""
        t0 = _time.perf_counter()
        inputs, outputs, mults, vae = self._forward(xr.dense, rows, training, users=users)
        t0 = self._tick("gemm", t0)
        s, count, dz = self._loss_sum(outputs[-1], yr, mask, rows, True)
        n, beta = xr.dense.shape[0], self.beta
        loss = s / count + self._l2_term() + (beta * self._kl_sum(vae) / n if vae is not None else 0.0)
        t0 = self._tick("loss", t0)
        t = self.dtype.type
        l2 = t(self.spec["l2"])
        grads = [None] * len(self._params)
        for i in range(self.n_layers - 1, -1, -1):
            W = self._params[2 * i]
            grads[2 * i] = inputs[i].T @ dz + l2 * W if l2 else inputs[i].T @ dz
            grads[2 * i + 1] = dz.sum(axis=0)
            if i == 0:
                if users is not None:
                    U = self._params[-1]
                    dU = _np.zeros_like(U)
                    _np.add.at(dU, users, dz)
                    grads[-1] = dU + l2 * U if l2 else dU
                break
            da = dz @ W.T
            if mults[i] is not None:
                da = da * mults[i]
            if i - 1 == self._vl:  # through z = mu + eps * std, plus beta * KL / rows
                mu, lv, ev, std, eps = vae
                cb = t(beta / n)
                dz = _np.concatenate([da + cb * mu, (da * eps) * (t(0.5) * std) + (cb * t(0.5)) * (ev - t(1))],
                                     axis=1)
            else:
                dz = da * _activation_grad(self._acts[i - 1], outputs[i - 1])
        self._tick("dense_bwd", t0)
        return loss, grads

    def hidden(self, x, layer, batch_size=4096, users=None):
        """Output of weight layer ``layer`` (0-based) in eval mode: (n, layer_sizes[layer+1]);
        the variational layer gives mu."""
        if isinstance(layer, bool) or not isinstance(layer, (int, _np.integer)):
            raise TypeError(f"layer must be an int, got {type(layer).__name__}")
        if not 0 <= layer < self.n_layers:
            raise IndexError(f"layer must be in [0, {self.n_layers}), got {layer}")
        bs = _check_batch_size(batch_size)
        users = self._check(x, users=users)
        out = _np.empty((x.shape[0], self._sizes[layer + 1]), dtype=self.dtype)
        for s in range(0, x.shape[0], bs):
            sl = slice(s, s + bs)
            o = self._forward(_Rows(x, sl, self.dtype).dense, None, False, layer,
                              None if users is None else users[sl])[1][-1]
            out[sl] = _activate(self._acts[-1], o) if layer == self.n_layers - 1 and \
                self._loss in ("bce", "logistic") else o
        return out

    def forward(self, x, batch_size=4096, users=None):
        """Reconstruction (n, n_out) in eval mode: the output layer's activation applied."""
        return self.hidden(x, self.n_layers - 1, batch_size, users=users)

    def encode(self, x, batch_size=4096, users=None):
        """The bottleneck (n, layer_sizes[encoder_depth]) in eval mode (mu for the VAE)."""
        return self.hidden(x, self.spec["encoder_depth"] - 1, batch_size, users=users)

    def loss(self, x, y, mask=None, batch_size=4096, users=None):
        """Eval-mode loss over all rows (the mean of aerec.nn.spec, + l2 and the KL term)."""
        bs = _check_batch_size(batch_size)
        users = self._check(x, y, mask, users, need_rows=True)
        total, count, kl = 0.0, 0, 0.0
        for s in range(0, x.shape[0], bs):
            sl = slice(s, s + bs)
            rows = _np.arange(s, min(s + bs, x.shape[0]))
            fwd = self._forward(_Rows(x, sl, self.dtype).dense, rows, False,
                                users=None if users is None else users[sl])
            ls, c, _ = self._loss_sum(fwd[1][-1], _Rows(y, sl, self.dtype), None if mask is None else mask[sl],
                                      rows, False)
            total, count, kl = total + ls, count + c, kl + self._kl_sum(fwd[3])
        return total / count + self._l2_term() + (self.beta * kl / x.shape[0] if self._vl >= 0 else 0.0)

    def gradients(self, x, y, mask=None, training=False, users=None, rows=None, out=None, w0_rows=None):
        """(loss, [dW0, db0, ..., (dU)]) on the batch (x, y) without stepping; training=True
        draws the dropout / noise of the current step (what train_batch would use).

        ``rows`` (optional, 1-D int64 row ids of x): the batch is those rows, in that order, and
        the random streams are keyed by these ids, as for a ``train_epoch`` batch (data-parallel
        ranks each take their part of one global batch and draw what it would draw).
        ``out`` (optional): one flat C-contiguous buffer of every tensor in order, written and
        returned as views (no allocation per call in the compiled backends).
        ``w0_rows`` (optional, with ``out``: a writable uint8 array of W0's rows): set to 1 for the
        rows of W0's gradient written into ``out``, 0 for rows that may be left unwritten, whose
        gradient is ``l2 * W0[row]`` exactly (a CSR x whose batch rows do not touch them: no data
        part). The compiled engine then skips the fill of those rows (a pass over W0 a call);
        :meth:`apply_gradient_sum` takes the flags and does not read them."""
        users = self._check(x, y, mask, users, need_rows=True)
        rows = _check_rows(rows, x.shape[0])
        flags = _check_w0_flags(w0_rows, out, self._sizes[0])
        if flags is not None:
            _w0_flags(x, rows, flags)
        views = None if out is None else _flat_views(out, self._shapes, self.dtype)
        sel = slice(None) if rows is None else rows
        xr = _Rows(x, sel, self.dtype)
        loss, grads = self._batch_loss_grads(xr, xr if y is x else _Rows(y, sel, self.dtype),
                                             mask if mask is None or rows is None else mask[rows],
                                             _np.arange(x.shape[0]) if rows is None else rows, bool(training),
                                             users if users is None or rows is None else users[rows])
        if views is None:
            return loss, grads
        for v, g in zip(views, grads):
            v[...] = g
        return loss, views

    def apply_gradients(self, grads, rows0=None, user_rows=None, flat_range=None):
        """One optimizer step (``step`` + 1) with the given gradients ``[dW0, db0, ..., (dU)]`` (as
        :meth:`gradients` returns them, or one flat buffer as its ``out``): ``train_batch`` is
        ``gradients(training=True)`` followed by this. A lazy network moves only W0's rows
        ``rows0`` and U's rows ``user_rows`` (1-D int32, the rows present in the batch); a dense
        one every row.

        ``flat_range`` (optional ``(lo, hi)``): only the parameters at offsets ``[lo, hi)`` of the
        flat parameter vector (every tensor raveled, in order; see :meth:`get_params_flat`) and
        their optimizer state move, exactly as the full step moves them (the optimizer is
        element-wise); the rest stay as they are. A data-parallel rank steps the block it owns."""
        grads = _check_grads(grads, self._shapes, self._names, self.dtype)
        lo, hi = _check_flat_range(flat_range, self.n_params)
        touched = {}
        if self.spec["lazy"]:
            touched[0] = _np.unique(_check_ids(rows0, self._sizes[0], "rows0"))
            if self.spec["n_users"]:
                touched[len(self._params) - 1] = _np.unique(_check_ids(user_rows, self.spec["n_users"], "user_rows"))
        self._apply(grads, touched, lo, hi)
        self._timings["batches"] += 1

    @property
    def n_params(self):
        """Elements of the flat parameter vector (every tensor raveled, in order)."""
        return int(sum(p.size for p in self._params))

    def get_params_flat(self, lo, hi, out=None):
        """A float32 copy of the flat parameter vector's offsets ``[lo, hi)``; written into ``out``
        (a writable 1-D C-contiguous float32 array of ``hi - lo`` elements, returned) when given."""
        lo, hi = _check_flat_range((lo, hi), self.n_params)
        out = _check_flat_out(out, hi - lo)
        o = 0
        for p in self._params:
            a, b = max(lo - o, 0), min(hi - o, p.size)
            if a < b:
                out[o + a - lo:o + b - lo] = p.reshape(-1)[a:b]
            o += p.size
        return out

    def set_params_flat(self, lo, values):
        """Write ``values`` (1-D float32) at offsets ``[lo, lo + len(values))`` of the flat
        parameter vector."""
        if not isinstance(values, _np.ndarray) or values.ndim != 1 or values.dtype != _np.float32:
            raise TypeError("values must be a 1-D numpy float32 array")
        lo, hi = _check_flat_range((lo, lo + values.size), self.n_params)
        o = 0
        for p in self._params:
            a, b = max(lo - o, 0), min(hi - o, p.size)
            if a < b:
                p.reshape(-1)[a:b] = values[o + a - lo:o + b - lo]
            o += p.size

    def bind_params(self, buf, copy=True):
        """Keep the parameters in ``buf`` (a writable 1-D C-contiguous array of :attr:`n_params`
        elements of the network's dtype, the flat layout of :meth:`get_params_flat`) from now on:
        copied there first when ``copy``, else ``buf``'s values are taken as they are. Every later
        update and :meth:`set_params` writes there; the caller keeps ``buf`` alive until
        :meth:`unbind_params`. Data-parallel ranks on one node bind one shared-memory block: each
        rank steps its part in place and every rank sees every part (no copies between them)."""
        buf = _check_bind_buffer(buf, self.n_params, self.dtype)
        if copy:
            o = 0
            for p in self._params:
                buf[o:o + p.size] = p.reshape(-1)
                o += p.size
        self._params = _flat_views(buf, self._shapes, self.dtype, "buf")
        self._bound = buf

    def unbind_params(self):
        """Copy the parameters out of the :meth:`bind_params` buffer into the network's own storage
        and use that again (no-op when not bound)."""
        if getattr(self, "_bound", None) is None:
            return
        self._params = [p.copy() for p in self._params]
        self._bound = None

    @property
    def params_bound(self):
        """True between :meth:`bind_params` and :meth:`unbind_params`."""
        return getattr(self, "_bound", None) is not None

    def apply_gradient_sum(self, parts, scales, rows0=None, user_rows=None, flat_range=None, w0_rows=None):
        """:meth:`apply_gradients` with the gradient ``sum_k scales[k] * parts[k]``, summed in the
        network's dtype in the order k = 0, 1, ... (``g = scales[0] * parts[0]``, then
        ``g = g + scales[k] * parts[k]``): what a data-parallel rank steps its block with, the
        peers' gradients read where they lie (the compiled backend sums them inside the optimizer
        pass, a cache-sized piece at a time). ``parts``: flat buffers of every tensor (the layout
        of :meth:`gradients`' ``out``); only their ``flat_range`` block is read. ``w0_rows``
        (optional): per part, None or the uint8 flags :meth:`gradients` wrote for it: a row
        flagged 0 is not read and counts as ``l2 * W0[row]`` (+0 without l2) from the parameters
        before the step, the bits of the part's filled row."""
        parts, scales, w0_rows = _check_gradient_sum(parts, scales, w0_rows, self.n_params, self.spec, self.dtype)
        lo, hi = _check_flat_range(flat_range, self.n_params)
        w0_end, c0 = self._shapes[0][0] * self._shapes[0][1], self._shapes[0][1]
        total = None
        for k, (p, s) in enumerate(zip(parts, scales)):
            q = p[lo:hi].copy()
            if w0_rows is not None and w0_rows[k] is not None and lo < w0_end:
                # a row flagged 0 holds no data gradient: its gradient is l2 * W0's row (+0 without l2)
                zero = _np.repeat(w0_rows[k] == 0, c0)[lo:min(hi, w0_end)]
                l2 = self.dtype.type(self.spec["l2"])
                w0 = self._params[0].reshape(-1)[lo:min(hi, w0_end)]
                q[:zero.size][zero] = l2 * w0[zero] if l2 != 0 else 0
            t = s * q
            total = t if total is None else total + t
        g = _np.zeros(self.n_params, self.dtype)
        g[lo:hi] = total
        self.apply_gradients(g, rows0, user_rows, flat_range=(lo, hi))

    # ---- training -------------------------------------------------------------------------------
    def _apply(self, grads, touched, lo=0, hi=None):
        """One optimizer step; ``touched`` maps a tensor index to the rows a lazy update moves;
        only the flat parameter offsets ``[lo, hi)`` move (``hi`` None: to the end)."""
        sp, t = self.spec, self.dtype.type
        lr, wd, step = t(sp["learning_rate"]), t(sp["weight_decay"]), self.step + 1
        adam = sp["optimizer"] in ("adam", "adamw")
        if adam:
            b1, b2, eps = t(sp["beta1"]), t(sp["beta2"]), t(sp["epsilon"])
            omb1, omb2 = t(1.0 - sp["beta1"]), t(1.0 - sp["beta2"])
            bc1, bc2 = t(1.0 - sp["beta1"] ** step), t(1.0 - sp["beta2"] ** step)
            lrwd = t(sp["learning_rate"] * sp["weight_decay"])
        keys = [[f"m_{n}", f"v_{n}"] if adam else ([f"velocity_{n}"] if sp["momentum"] > 0 else [])
                for n in self._names]
        o = 0
        for i, (w_all, g) in enumerate(zip(self._params, grads)):
            size, o = w_all.size, o + w_all.size
            sel = touched.get(i)
            a, b = max(lo - (o - size), 0), size if hi is None else min(hi - (o - size), size)
            if a >= b:
                continue
            if a > 0 or b < size:  # a block of the tensor: the flat elements [a, b), element-wise
                cols = size // w_all.shape[0] if w_all.ndim == 2 else 1
                if sel is None:
                    sel = _np.arange(a, b)
                else:  # the lazy rows' elements inside the block
                    sel = (sel[:, None] * cols + _np.arange(cols)).reshape(-1)
                    sel = sel[(sel >= a) & (sel < b)]
                w_all, g = w_all.reshape(-1), g.reshape(-1)
                st_all = {k: self._state[k].reshape(-1) for k in keys[i]}
            else:
                st_all = {k: self._state[k] for k in keys[i]}
            w = w_all if sel is None else w_all[sel]
            st = [st_all[k] if sel is None else st_all[k][sel] for k in keys[i]]
            if sel is not None:
                g = g[sel]
            if sp["optimizer"] == "adamw":
                if sp["weight_decay"] > 0:
                    w -= lrwd * w
            elif sp["weight_decay"] > 0:
                g = g + wd * w
            if adam:
                m, v = st
                m *= b1
                m += omb1 * g
                v *= b2
                v += omb2 * (g * g)
                w -= (lr * (m / bc1)) / (_np.sqrt(v / bc2) + eps)
            else:
                if st:
                    buf = st[0]
                    buf *= t(sp["momentum"])
                    buf += g
                    g = g + t(sp["momentum"]) * buf if sp["nesterov"] else buf
                w -= lr * g
            if sel is not None:
                w_all[sel] = w
                for k, arr in zip(keys[i], st):
                    st_all[k][sel] = arr
        # pruned weights and their state stay 0 (skipping their update is the same)
        self._zero_pruned(self._params)
        self._zero_pruned_state()
        self.step = step

    def _train(self, x, y, mask, users, rows):
        """One update on the rows ``rows`` (index array) of x / y; returns the batch loss."""
        t0 = _time.perf_counter()
        xr = _Rows(x, rows, self.dtype)
        yr = xr if y is x else _Rows(y, rows, self.dtype)  # Mult-* / CDAE: one gather
        ub = None if users is None else users[rows]
        self._tick("gather", t0)
        loss, grads = self._batch_loss_grads(xr, yr, None if mask is None else mask[rows], rows, True, ub)
        t0 = _time.perf_counter()
        touched = {}
        if self.spec["lazy"]:
            touched[0] = _np.flatnonzero(xr.pattern().any(axis=0))
            if ub is not None:
                touched[len(self._params) - 1] = _np.unique(ub)
        self._apply(grads, touched)
        self._tick("optimizer", t0)
        self._timings["batches"] += 1
        return loss

    def train_batch(self, x, y, mask=None, users=None):
        """One optimizer step on the batch (training mode). Returns the batch loss before the step."""
        users = self._check(x, y, mask, users, need_rows=True)
        return self._train(x, y, mask, users, _np.arange(x.shape[0]))

    def train_epoch(self, x, y, mask=None, batch_size=32, shuffle=True, seed=0, users=None):
        """One pass over the rows in minibatches of batch_size (the last one partial), in the order
        shuffle_permutation(spec seed, seed, n) when shuffle. Returns the row-weighted mean loss."""
        bs = _check_batch_size(batch_size)
        users = self._check(x, y, mask, users, need_rows=True)
        n = x.shape[0]
        order = shuffle_permutation(self._seed, int(seed), n) if shuffle else _np.arange(n)
        total = 0.0
        for s in range(0, n, bs):
            rows = order[s:s + bs]
            total += self._train(x, y, mask, users, rows) * rows.size
        return total / n


# --- GEMM with fused bias + activation (reference for backends.cpp.gemm) -------------------------

def _gemm_activation(name):
    import numpy as np

    def sigmoid(z):
        with np.errstate(over="ignore"):
            return 1.0 / (1.0 + np.exp(-z))

    def elu(z):
        return np.where(z > 0, z, np.expm1(np.minimum(z, 0.0)))

    def selu(z):
        return 1.0507009873554805 * np.where(z > 0, z, 1.6732632423543772 * np.expm1(np.minimum(z, 0.0)))

    table = {"identity": lambda z: z, "linear": lambda z: z, "relu": lambda z: np.maximum(z, 0.0),
             "sigmoid": sigmoid, "tanh": np.tanh, "elu": elu, "selu": selu}
    if name not in table:
        raise ValueError(f"unknown activation {name!r}; use one of identity, relu, sigmoid, tanh, elu, selu")
    return table[name]


def gemm(a, b, *, trans_a=False, trans_b=False, bias=None, activation="identity", alpha=1.0,
         num_threads=None):
    """Reference ``act(alpha * op(a) @ op(b) + bias)``: float64 accumulation, float32 result.

    Parameters
    ----------
    a : array_like, shape (M, K), or (K, M) with ``trans_a``
    b : array_like, shape (K, N), or (N, K) with ``trans_b``
    bias : array_like, shape (N,), optional
    activation : {"identity", "relu", "sigmoid", "tanh", "elu", "selu"}
    alpha : float
    num_threads : ignored (NumPy's own threading)

    Returns
    -------
    ndarray, shape (M, N), float32
    """
    import numpy as np

    from .._validation import check_gemm_args
    alpha, _ = check_gemm_args(a, b, trans_a, trans_b, alpha, num_threads)
    act = _gemm_activation(activation)
    a64 = np.asarray(a, dtype=np.float64)
    b64 = np.asarray(b, dtype=np.float64)
    if a64.ndim != 2 or b64.ndim != 2:
        raise ValueError(f"gemm: a and b must be 2-D, got shapes {a64.shape} and {b64.shape}")
    opa = a64.T if trans_a else a64
    opb = b64.T if trans_b else b64
    if opa.shape[1] != opb.shape[0]:
        raise ValueError(f"gemm: shapes {a64.shape}{'.T' if trans_a else ''} and "
                         f"{b64.shape}{'.T' if trans_b else ''} do not align")
    z = float(alpha) * (opa @ opb)
    if bias is not None:
        bias64 = np.asarray(bias, dtype=np.float64)
        if bias64.shape != (opb.shape[1],):
            raise ValueError(f"gemm: bias must have shape ({opb.shape[1]},), got {bias64.shape}")
        z = z + bias64
    return act(z).astype(np.float32)


# --- Top-k selection and the TopK index (reference for backends.cpp) -----------------------------
from ._numpy_topk import TopkIndex, select_topk  # noqa: E402,F401


# --- EASE: Gram matrix and sparse x dense product (reference for backends.cpp) -------------------

def gram_upper(X, dtype="float32", num_threads=0):
    """``X^T X`` of a CSR matrix X (n_rows, n) as a dense (n, n) C-contiguous array of ``dtype``
    (float32 or float64). The whole matrix is filled; callers may rely on the upper triangle
    (j >= i) only, which is all the compiled kernel writes."""
    import numpy as np
    dt = np.dtype(dtype)
    if dt not in (np.float32, np.float64):
        raise TypeError(f"dtype must be float32 or float64, got {dt}")
    X = X.tocsr().astype(dt)
    return np.ascontiguousarray((X.T @ X).toarray(), dtype=dt)


def spmm(X, W, num_threads=0):
    """``X @ W`` for a CSR matrix X (n_rows, n) and a dense W (n, c): (n_rows, c) float32."""
    import numpy as np
    W = np.asarray(W, dtype=np.float32)
    if X.shape[1] != W.shape[0]:
        raise ValueError(f"spmm: X has {X.shape[1]} columns but W has {W.shape[0]} rows")
    return np.ascontiguousarray(X.tocsr().astype(np.float32) @ W, dtype=np.float32)

def _check_top_magnitude(B, k):
    import numbers
    import numpy as np
    if not isinstance(B, np.ndarray) or B.dtype != np.float32 or B.ndim != 2 or B.shape[0] != B.shape[1]:
        raise TypeError("top_magnitude_csr: B must be a square float32 numpy array; pass "
                        "np.ascontiguousarray(B, dtype=np.float32)")
    n = B.shape[0]
    if n < 2:
        raise ValueError("top_magnitude_csr: B must be at least 2 x 2 (a 1-item EASE has no off-diagonal entries)")
    if isinstance(k, (bool, np.bool_)) or not isinstance(k, numbers.Integral) or not 1 <= int(k) <= n * (n - 1):
        raise ValueError(f"top_magnitude_csr: k must be an int in [1, {n * (n - 1)}] (B's off-diagonal entries), "
                         f"got {k!r}")
    return n, int(k)


def top_magnitude_csr(B, k, num_threads=0):
    """The ``k`` largest off-diagonal ``|B_ij|`` of a square float32 ``B`` as CSR rows ``(indptr
    int64, indices int32, data float32)`` (``aerec.compress.prune`` of an EASE: one global budget).

    The threshold ``T`` is the k-th largest off-diagonal ``|B_ij|``; kept are every off-diagonal
    entry with ``|B_ij| > T`` and, when ``T > 0``, the first ``k - #{|B_ij| > T}`` entries equal to
    ``T`` in row-major order (ties at ``T = 0`` are zeros: none kept, so fewer than k entries come
    back). The diagonal is never kept. Rows hold ascending column ids. Non-finite off-diagonal
    entries: ValueError. Peak memory beyond B: one |B| copy (the compiled kernel needs none)."""
    import numpy as np
    n, k = _check_top_magnitude(B, k)
    A = np.abs(B)
    A[np.diag_indices(n)] = -1.0  # never kept
    if not np.isfinite(A).all():
        raise ValueError("top_magnitude_csr: B has non-finite (NaN or inf) off-diagonal entries; refit the model "
                         "(EASE: a larger l2 or dtype='float64')")
    flat = A.reshape(-1)
    kth = flat.size - k
    flat.partition(kth)  # in place: A is scrambled, only the threshold is read
    thr = np.float32(flat[kth])
    del A, flat
    step = max(1, (1 << 24) // n)
    blocks = []
    for s in range(0, n, step):
        a = np.abs(B[s:s + step])
        a[np.arange(a.shape[0]), np.arange(s, s + a.shape[0])] = -1.0
        blocks.append(a)
    ties = k - sum(int(np.count_nonzero(a > thr)) for a in blocks) if thr > 0 else 0
    counts, indices, data = [], [], []
    for s, a in zip(range(0, n, step), blocks):
        keep = a > thr
        if ties > 0:
            take = np.flatnonzero(a == thr)[:ties]  # row-major order
            keep.reshape(-1)[take] = True
            ties -= take.size
        r, c = np.nonzero(keep)
        counts.append(np.bincount(r, minlength=a.shape[0]))
        indices.append(c.astype(np.int32))
        data.append(np.ascontiguousarray(B[s:s + step][r, c], dtype=np.float32))
    indptr = np.concatenate([[0], np.cumsum(np.concatenate(counts))]).astype(np.int64)
    return indptr, np.concatenate(indices), np.concatenate(data)


# --- Compressed linear layers (int8 / bf16 / sparse; reference for backends.cpp) ----------------
from ._compressed import CompressedLinear  # noqa: E402,F401

"""NumPy reference backend: the oracle every other backend is tested against."""
from __future__ import annotations

NAME = "numpy"


def unavailable_reason():
    return None


# --------------------------------------------------------------------------------------------
# Network: the reference implementation of the trainable feed-forward network (aerec.models.spec).
#
# Random streams (identical in C++, cpp/include/aerec/rng.hpp). All arithmetic is on uint64 with
# wrap-around; mix64 is the splitmix64 finaliser.
#   dropout key  k(seed, step, layer) = mix64(mix64(mix64(seed ^ DROPOUT_STREAM) ^ step) ^ layer)
#   element e of the (rows x n_in) input of weight layer `layer` (e = row_in_batch * n_in + col):
#       u_e = (mix64(k + (e + 1) * GOLDEN) >> 40) * 2**-24        (exact in float32, in [0, 1))
#       keep_e = u_e >= float32(p);  multiplier = keep_e * (float32(1) / (float32(1) - float32(p)))
#   `step` is the optimizer step counter (Network.step) of the batch being trained.
#   shuffle of train_epoch(seed=s) over n rows:
#       k = mix64(mix64(spec_seed ^ SHUFFLE_STREAM) ^ s);  key_i = mix64(k + (i + 1) * GOLDEN)
#       permutation = indices sorted by (key_i, i)  (np.argsort(key, kind="stable"))
#   Seeds are taken modulo 2**64 (negative ints wrap).
# --------------------------------------------------------------------------------------------
import numpy as _np

_M64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
_DROPOUT_STREAM = 0x6A09E667F3BCC909
_SHUFFLE_STREAM = 0xBB67AE8584CAA73B


def _mix64_int(z: int) -> int:
    z &= _M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
    return z ^ (z >> 31)


def _mix64(z):
    """splitmix64 finaliser on a uint64 array (wrap-around arithmetic)."""
    z = z ^ (z >> _np.uint64(30))
    z = z * _np.uint64(0xBF58476D1CE4E5B9)
    z = z ^ (z >> _np.uint64(27))
    z = z * _np.uint64(0x94D049BB133111EB)
    return z ^ (z >> _np.uint64(31))


def _stream_values(key: int, n: int):
    """mix64(key + (e + 1) * GOLDEN) for e in [0, n), as uint64."""
    e = _np.arange(1, n + 1, dtype=_np.uint64)
    return _mix64(e * _np.uint64(_GOLDEN) + _np.uint64(key & _M64))


def dropout_key(seed: int, step: int, layer: int) -> int:
    return _mix64_int(_mix64_int(_mix64_int((seed & _M64) ^ _DROPOUT_STREAM) ^ (step & _M64)) ^ (layer & _M64))


def dropout_multiplier(seed: int, step: int, layer: int, rows: int, cols: int, p: float):
    """(rows, cols) float32 inverted-dropout multipliers: 0 (dropped) or 1 / (1 - p) (kept)."""
    u = (_stream_values(dropout_key(seed, step, layer), rows * cols) >> _np.uint64(40)).astype(_np.float32)
    u *= _np.float32(2.0 ** -24)
    p32 = _np.float32(p)
    scale = _np.float32(1.0) / (_np.float32(1.0) - p32)
    return _np.where(u >= p32, scale, _np.float32(0.0)).astype(_np.float32).reshape(rows, cols)


_NOISE_STREAM = 0x3C6EF372FE94F82B


def gaussian_noise(seed: int, step: int, layer: int, rows: int, cols: int):
    """(rows, cols) float32 standard normals of the variational bottleneck (Box-Muller):
    key = mix64(mix64(mix64(seed ^ NOISE_STREAM) ^ step) ^ layer); for element e = r * cols + c,
    h1 = mix64(key + (2e + 1) G), h2 = mix64(key + (2e + 2) G), u1 = ((h1 >> 40) + 1) 2^-24 in (0, 1],
    u2 = (h2 >> 40) 2^-24, eps = sqrt(-2 log u1) * cos(2 pi u2), all in float32."""
    key = _mix64_int(_mix64_int(_mix64_int((seed & _M64) ^ _NOISE_STREAM) ^ (step & _M64)) ^ (layer & _M64))
    h = _stream_values(key, 2 * rows * cols) >> _np.uint64(40)
    u1 = (h[0::2].astype(_np.float32) + _np.float32(1)) * _np.float32(2.0 ** -24)
    u2 = h[1::2].astype(_np.float32) * _np.float32(2.0 ** -24)
    eps = _np.sqrt(_np.float32(-2) * _np.log(u1)) * _np.cos(_np.float32(2 * _np.pi) * u2)
    return eps.astype(_np.float32).reshape(rows, cols)


def shuffle_permutation(spec_seed: int, seed: int, n: int):
    """The row order train_epoch(shuffle=True, seed=seed) visits (int64, length n)."""
    k = _mix64_int(_mix64_int((spec_seed & _M64) ^ _SHUFFLE_STREAM) ^ (seed & _M64))
    return _np.argsort(_stream_values(k, n), kind="stable").astype(_np.int64)


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


# Losses the Network implements: spec.LOSSES plus 'multinomial' (-sum_c y_c log_softmax(z)_c per
# row, mean over rows; identity output), ready for Mult-DAE/VAE once spec.py lists it.
_NETWORK_LOSSES = ("mse", "bce", "masked_mse", "multinomial")

_SELU_ALPHA = 1.6732632423543772
_SELU_SCALE = 1.0507009873554805


def _issparse(a):
    if not type(a).__module__.startswith("scipy.sparse"):  # no scipy import for dense use
        return False
    import scipy.sparse as sp
    return sp.issparse(a)


def _dense_rows(a, rows, dtype):
    """Rows `rows` (slice or index array) of a dense or scipy.sparse matrix, as a dense array."""
    if _issparse(a):
        return _np.asarray(a.tocsr()[rows].toarray(), dtype=dtype)
    return a[rows]


def _check_matrix(a, name, cols, dtype, rows=None):
    if _issparse(a):
        if a.dtype != dtype:
            raise TypeError(f"{name} must have dtype {_np.dtype(dtype).name}, got {a.dtype}")
        if a.shape[1] != cols:
            raise ValueError(f"{name} has {a.shape[1]} columns, the network expects {cols}")
        if rows is not None and a.shape[0] != rows:
            raise ValueError(f"{name} has {a.shape[0]} rows, expected {rows} (as x)")
        return
    if not isinstance(a, _np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(a).__name__}")
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


class Network:
    """Trainable feed-forward network built from a spec (``aerec.models.spec.make_spec``).

    Parameters
    ----------
    spec : dict
        A validated network spec.
    params : list of ndarray
        ``[W0, b0, W1, b1, ...]``; ``W_i`` (layer_sizes[i], layer_sizes[i+1]), ``b_i``
        (layer_sizes[i+1],). Copied, converted to ``dtype``.
    dtype : numpy dtype, default float32
        float64 runs the whole network in double precision (gradient checks).

    Every method here is the oracle the compiled backends are tested against; see the module
    comment above for the random streams (dropout, shuffle), and ``aerec.models.spec`` for the maths.
    x and y may be scipy.sparse matrices (of this dtype); each minibatch is densified, which defines
    the sparse semantics (identical to the dense input's) that the C++ CSR path reproduces.
    """

    def __init__(self, spec, params, dtype=_np.float32):
        self.spec = dict(spec)
        self.dtype = _np.dtype(dtype)
        if self.dtype not in (_np.float32, _np.float64):
            raise TypeError(f"dtype must be float32 or float64, got {self.dtype}")
        self._sizes = tuple(int(s) for s in self.spec["layer_sizes"])
        self.n_layers = len(self._sizes) - 1
        self._acts = tuple(self.spec["activations"])
        self._drop = tuple(float(p) for p in self.spec["dropout"])
        if len(self._acts) != self.n_layers or len(self._drop) != self.n_layers:
            raise ValueError("spec activations/dropout do not match layer_sizes; build it with make_spec")
        self._loss = self.spec["loss"]
        if self._loss not in _NETWORK_LOSSES:
            raise ValueError(f"unknown loss {self._loss!r}; use one of {', '.join(_NETWORK_LOSSES)}")
        if self._loss == "bce" and self._acts[-1] != "sigmoid":
            raise ValueError("loss 'bce' needs a sigmoid output layer")
        if self._loss == "multinomial" and self._acts[-1] != "identity":
            raise ValueError("loss 'multinomial' needs an identity output layer (it is computed from the logits)")
        self._opt = self.spec["optimizer"]
        if self._opt not in ("adam", "adamw", "sgd"):
            raise ValueError(f"unknown optimizer {self._opt!r}; use one of adam, adamw, sgd")
        # Gaussian variational bottleneck (Mult-VAE): spec keys variational / beta / anneal_steps
        # (optional; absent = plain autoencoder). Layer encoder_depth-1 then outputs [mu, logvar]
        # (2 x layer_sizes[encoder_depth] units, identity activation) and the next layer reads
        # z = mu + eps * exp(logvar / 2) in training, z = mu in eval.
        self._vae = bool(self.spec.get("variational", False))
        self._vl = int(self.spec.get("encoder_depth", 1)) - 1
        self._beta_cap = float(self.spec.get("beta", 1.0))
        self._anneal = int(self.spec.get("anneal_steps", 0))
        if self._vae:
            if not 0 <= self._vl < self.n_layers - 1:
                raise ValueError("a variational bottleneck needs 1 <= encoder_depth < number of weight layers")
            if self._acts[self._vl] != "identity":
                raise ValueError("the variational bottleneck layer (encoder_depth-1) must have identity activation")
            if self._beta_cap < 0 or self._anneal < 0:
                raise ValueError("beta and anneal_steps must be >= 0")
        # Per-user input vector (CDAE): spec key n_users (optional, 0 = none). Adds U[user] to the
        # first layer's pre-activation; U (n_users, layer_sizes[1]) is the last tensor of params and
        # counts as a weight for l2. Every method then takes users= (int32, one id per row of x).
        self._n_users = int(self.spec.get("n_users", 0))
        if self._n_users < 0:
            raise ValueError("n_users must be >= 0")
        self._seed = int(self.spec["seed"]) & _M64
        self.step = 0
        self._params = [None] * len(self._shapes())
        self.set_params(params)
        self._state = self._zero_state()

    # ---- parameters and optimizer state -------------------------------------------------
    def _shapes(self):
        out = []
        for i in range(self.n_layers):
            n = self._sizes[i + 1] * (2 if self._vae and i == self._vl else 1)
            out += [(self._sizes[i], n), (n,)]
        if self._n_users:
            out.append((self._n_users, out[1][0]))
        return out

    @property
    def beta(self):
        """KL weight at the current step: min(beta, step / anneal_steps) when annealing, else beta."""
        if self._anneal > 0:
            return min(self._beta_cap, self.step / self._anneal)
        return self._beta_cap

    def _tensor_names(self, n_layers):
        names = [f"{k}{i}" for i in range(n_layers) for k in ("W", "b")]
        return names + (["U"] if self._n_users else [])

    def get_params(self):
        return [p.copy() for p in self._params]

    def set_params(self, params):
        params = list(params)
        shapes = self._shapes()
        if len(params) != len(shapes):
            raise ValueError(f"expected {len(shapes)} parameter arrays [W0, b0, W1, b1, ...{', U' if self._n_users else ''}], "
                             f"got {len(params)}")
        new = []
        for name, p, shape in zip(self._tensor_names(self.n_layers), params, shapes):
            p = _np.asarray(p)
            if p.shape != shape:
                raise ValueError(f"{name} must have shape {shape}, got {p.shape}")
            new.append(_np.array(p, dtype=self.dtype, order="C", copy=True))
        self._params = new

    def _state_keys(self):
        names = self._tensor_names(self.n_layers)
        if self._opt in ("adam", "adamw"):
            return [f"{k}_{n}" for n in names for k in ("m", "v")]
        if self.spec["momentum"] > 0:
            return [f"velocity_{n}" for n in names]
        return []

    def _zero_state(self):
        shapes = dict(zip(self._tensor_names(self.n_layers), self._shapes()))
        return {k: _np.zeros(shapes[k.split("_", 1)[1]], dtype=self.dtype) for k in self._state_keys()}

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
            ref = self._state[k]
            v = _np.asarray(state[k])
            if v.shape != ref.shape:
                raise ValueError(f"optimizer state {k} must have shape {ref.shape}, got {v.shape}")
            new[k] = _np.array(v, dtype=self.dtype, copy=True)
        self._state = new
        self.step = step

    # ---- forward / loss / backward ----------------------------------------------------------
    def _check_users(self, users, n):
        if not self._n_users:
            if users is not None:
                raise ValueError("users= is only used by a network with n_users > 0 (CDAE)")
            return None
        if users is None:
            raise ValueError("this network has a per-user input vector: pass users= (int32, one id per row)")
        if not isinstance(users, _np.ndarray) or users.dtype != _np.int32:
            raise TypeError("users must be a numpy int32 array")
        if users.ndim != 1 or users.shape[0] != n:
            raise ValueError(f"users must be 1-D with one id per row of x ({n}), got shape {users.shape}")
        if n and (users.min() < 0 or users.max() >= self._n_users):
            raise IndexError(f"user ids must be in [0, {self._n_users})")
        return users

    def _check_xy(self, x, y=None, mask=None):
        _check_matrix(x, "x", self._sizes[0], self.dtype)
        if y is not None:
            _check_matrix(y, "y", self._sizes[-1], self.dtype, rows=x.shape[0])
        if mask is not None:
            if self._loss != "masked_mse":
                raise ValueError(f"mask is only used by loss='masked_mse' (this network uses {self._loss!r})")
            _check_matrix(mask, "mask", self._sizes[-1], self.dtype, rows=x.shape[0])

    def _forward(self, x, training, last_layer=None, logits=False, users=None):
        """Run layers 0..last_layer. Returns (inputs, outputs, multipliers) per layer and the
        variational layer's (mu, logvar, exp(logvar), std, eps) or None; the output of the final
        layer is the logits when `logits` (bce), else act(z). Writes nothing to self, and reads
        the parameter list once, so concurrent eval calls are safe."""
        last = self.n_layers - 1 if last_layer is None else last_layer
        inputs, outputs, mults = [], [], []
        vae_cache = None
        params = self._params
        h = x
        for i in range(last + 1):
            W, b = params[2 * i], params[2 * i + 1]
            p = self._drop[i]
            if training and p > 0:
                m = dropout_multiplier(self._seed, self.step, i, h.shape[0], h.shape[1], p).astype(self.dtype)
                a = h * m
            else:
                m, a = None, h
            z = a @ W + b
            if i == 0 and users is not None:
                z = z + params[-1][users]
            if self._vae and i == self._vl:
                d = self._sizes[i + 1]
                mu, lv = z[:, :d], z[:, d:]
                ev = _np.exp(lv)
                std = _np.exp(lv * self.dtype.type(0.5))
                if training:
                    eps = gaussian_noise(self._seed, self.step, i, z.shape[0], d).astype(self.dtype)
                    h = mu + eps * std
                else:
                    eps = _np.zeros_like(mu)
                    h = mu
                vae_cache = (mu, lv, ev, std, eps)
            else:
                h = z if (logits and i == self.n_layers - 1) else _activate(self._acts[i], z)
            inputs.append(a)
            outputs.append(h)
            mults.append(m)
        return inputs, outputs, mults, vae_cache

    def _loss_sum(self, out, y, mask, want_grad):
        """(sum of the loss over the rows, its divisor for this batch, dL/dz of the last layer
        for the batch mean or None). `out` are the logits for bce."""
        t = self.dtype.type
        rows, cols = out.shape
        if self._loss == "bce":
            count = rows * cols
            # softplus(z) - y z and sigmoid(z) - y from one e = exp(-|z|) (as the C++ core)
            e = _np.exp(-_np.abs(out))
            sp = _np.maximum(out, t(0)) + _np.log1p(e)
            s = float((sp - y * out).sum(dtype=_np.float64))
            dz = None
            if want_grad:
                inv = t(1) / (t(1) + e)
                dz = (_np.where(out >= 0, inv, e * inv) - y) * t(1.0 / count)
            return s, count, dz
        if self._loss == "multinomial":
            # -sum_c y_c log_softmax(z)_c per row = ysum * lse - sum_c y_c z_c (as the C++ core)
            count = rows
            mx = out.max(axis=1, keepdims=True)
            e = _np.exp(out - mx)
            se = e.sum(axis=1, dtype=_np.float64, keepdims=True)
            ysum = y.sum(axis=1, dtype=_np.float64, keepdims=True)
            yz = (y * out).sum(axis=1, dtype=_np.float64)
            lse = mx.astype(_np.float64) + _np.log(se)
            s = float((ysum[:, 0] * lse[:, 0] - yz).sum())
            dz = None
            if want_grad:
                dz = ((e * (1.0 / se).astype(self.dtype)) * ysum.astype(self.dtype) - y) * t(1.0 / count)
            return s, count, dz
        if self._loss == "mse":
            count = rows * cols
            d = out - y
        else:  # masked_mse
            count = rows
            keep = (mask != 0) if mask is not None else (y != 0)
            d = _np.where(keep, out - y, t(0))
        s = float((d * d).sum(dtype=_np.float64))
        dz = None
        if want_grad:
            dz = (d * t(2.0 / count)) * _activation_grad(self._acts[-1], out)
        return s, count, dz

    def _l2_term(self):
        l2 = self.spec["l2"]
        if l2 == 0:
            return 0.0
        s = sum(float((W * W).sum(dtype=_np.float64)) for W in self._params[0::2])
        return 0.5 * l2 * s

    def _kl_sum(self, vae_cache):
        """Sum over rows of KL(q(z|x) || N(0, I)) = 0.5 * sum_j (exp(lv) - lv + mu^2 - 1)."""
        if vae_cache is None:
            return 0.0
        mu, lv, ev, _, _ = vae_cache
        t = self.dtype.type
        return float((t(0.5) * (((ev - lv) + mu * mu) - t(1))).sum(dtype=_np.float64))

    def _batch_loss_grads(self, x, y, mask, training, users=None):
        inputs, outputs, mults, vae_cache = self._forward(x, training, logits=self._loss == "bce", users=users)
        s, count, dz = self._loss_sum(outputs[-1], y, mask, True)
        rows = x.shape[0]
        beta = self.beta
        loss = s / count + self._l2_term()
        if self._vae:
            loss += beta * self._kl_sum(vae_cache) / rows
        t = self.dtype.type
        l2 = t(self.spec["l2"])
        grads = [None] * len(self._params)
        for i in range(self.n_layers - 1, -1, -1):
            if i == 0 and users is not None:
                U = self._params[-1]
                dU = _np.zeros_like(U)
                _np.add.at(dU, users, dz)
                grads[-1] = dU + l2 * U if self.spec["l2"] > 0 else dU
            W = self._params[2 * i]
            dW = inputs[i].T @ dz
            if self.spec["l2"] > 0:
                dW = dW + l2 * W
            grads[2 * i] = dW
            grads[2 * i + 1] = dz.sum(axis=0)
            if i > 0:
                da = dz @ W.T
                if mults[i] is not None:
                    da = da * mults[i]
                if self._vae and i - 1 == self._vl:
                    # through z = mu + eps * std, plus beta * KL / rows
                    mu, lv, ev, std, eps = vae_cache
                    cb = t(beta / rows)
                    dmu = da + cb * mu
                    dlv = (da * eps) * (t(0.5) * std) + (cb * t(0.5)) * (ev - t(1))
                    dz = _np.concatenate([dmu, dlv], axis=1)
                else:
                    dz = da * _activation_grad(self._acts[i - 1], outputs[i - 1])
        return loss, grads

    def forward(self, x, batch_size=4096, users=None):
        """Reconstruction (n, n_out) in eval mode (no dropout)."""
        return self.hidden(x, self.n_layers - 1, batch_size, users=users)

    def hidden(self, x, layer, batch_size=4096, users=None):
        """Output of weight layer `layer` (0-based), eval mode; (n, layer_sizes[layer+1])."""
        if isinstance(layer, bool) or not isinstance(layer, (int, _np.integer)):
            raise TypeError(f"layer must be an int, got {type(layer).__name__}")
        if not 0 <= layer < self.n_layers:
            raise IndexError(f"layer must be in [0, {self.n_layers}), got {layer}")
        bs = _check_batch_size(batch_size)
        self._check_xy(x)
        users = self._check_users(users, x.shape[0])
        out = _np.empty((x.shape[0], self._sizes[layer + 1]), dtype=self.dtype)  # the bottleneck: mu
        for s in range(0, x.shape[0], bs):
            xb = _dense_rows(x, slice(s, s + bs), self.dtype)
            ub = None if users is None else users[s:s + bs]
            out[s:s + bs] = self._forward(xb, False, last_layer=layer, users=ub)[1][-1]
        return out

    def loss(self, x, y, mask=None, batch_size=4096, users=None):
        """Eval-mode loss over all rows (mean as in aerec.models.spec, + the l2 term)."""
        bs = _check_batch_size(batch_size)
        self._check_xy(x, y, mask)
        users = self._check_users(users, x.shape[0])
        if x.shape[0] == 0:
            raise ValueError("x has no rows")
        total, count, kl = 0.0, 0, 0.0
        for s in range(0, x.shape[0], bs):
            sl = slice(s, s + bs)
            fwd = self._forward(_dense_rows(x, sl, self.dtype), False, logits=self._loss == "bce",
                                users=None if users is None else users[sl])
            out = fwd[1][-1]
            ls, c, _ = self._loss_sum(out, _dense_rows(y, sl, self.dtype), None if mask is None else mask[sl], False)
            total += ls
            count += c
            kl += self._kl_sum(fwd[3])
        loss = total / count + self._l2_term()
        if self._vae:
            loss += self.beta * kl / x.shape[0]
        return loss

    def gradients(self, x, y, mask=None, training=False, users=None):
        """(loss, [dW0, db0, ...]) on the batch (x, y) without stepping. training=True applies the
        dropout of the current step's stream (what train_batch would use)."""
        self._check_xy(x, y, mask)
        if x.shape[0] == 0:
            raise ValueError("x has no rows")
        users = self._check_users(users, x.shape[0])
        sl = slice(None)
        return self._batch_loss_grads(_dense_rows(x, sl, self.dtype), _dense_rows(y, sl, self.dtype), mask,
                                      bool(training), users)

    # ---- training -----------------------------------------------------------------------------
    def _apply(self, grads):
        sp = self.spec
        t = self.dtype.type
        lr, wd = t(sp["learning_rate"]), t(sp["weight_decay"])
        names = self._tensor_names(self.n_layers)
        step = self.step + 1
        if self._opt in ("adam", "adamw"):
            b1, b2, eps = t(sp["beta1"]), t(sp["beta2"]), t(sp["epsilon"])
            omb1, omb2 = t(1.0 - sp["beta1"]), t(1.0 - sp["beta2"])
            bc1, bc2 = t(1.0 - sp["beta1"] ** step), t(1.0 - sp["beta2"] ** step)
            lrwd = t(sp["learning_rate"] * sp["weight_decay"])
            for name, w, g in zip(names, self._params, grads):
                m, v = self._state["m_" + name], self._state["v_" + name]
                if self._opt == "adamw":
                    if sp["weight_decay"] > 0:
                        w -= lrwd * w
                elif sp["weight_decay"] > 0:
                    g = g + wd * w
                m *= b1
                m += omb1 * g
                v *= b2
                v += omb2 * (g * g)
                mhat = m / bc1
                vhat = v / bc2
                w -= (lr * mhat) / (_np.sqrt(vhat) + eps)
        else:
            mu = t(sp["momentum"])
            for name, w, g in zip(names, self._params, grads):
                if sp["weight_decay"] > 0:
                    g = g + wd * w
                if sp["momentum"] > 0:
                    buf = self._state["velocity_" + name]
                    buf *= mu
                    buf += g
                    g = g + mu * buf if sp["nesterov"] else buf
                w -= lr * g
        self.step = step

    def train_batch(self, x, y, mask=None, users=None):
        """One optimizer step on the batch (training mode). Returns the batch loss before the step."""
        loss, grads = self.gradients(x, y, mask, training=True, users=users)
        self._apply(grads)
        return loss

    def train_epoch(self, x, y, mask=None, batch_size=32, shuffle=True, seed=0, users=None):
        """One pass over the rows in minibatches of batch_size (the last one partial), in the order
        shuffle_permutation(spec seed, seed, n) when shuffle. Returns the row-weighted mean loss."""
        bs = _check_batch_size(batch_size)
        self._check_xy(x, y, mask)
        n = x.shape[0]
        if n == 0:
            raise ValueError("x has no rows")
        users = self._check_users(users, n)
        order = shuffle_permutation(self._seed, int(seed), n) if shuffle else None
        total = 0.0
        for s in range(0, n, bs):
            rows = slice(s, s + bs) if order is None else order[s:s + bs]
            xb, yb = _dense_rows(x, rows, self.dtype), _dense_rows(y, rows, self.dtype)
            mb = None if mask is None else mask[rows]
            ub = None if users is None else users[rows]
            total += self.train_batch(xb, yb, mb, ub) * xb.shape[0]
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


# --- Sparse-input recommender network (MultDAE / MultVAE / CDAE) ------------------------------
from ._numpy_recnet import RecNetwork  # noqa: E402,F401


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

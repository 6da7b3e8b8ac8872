"""NumPy/scipy reference ``RecNetwork`` (the oracle for the C++ one): sparse-input autoencoder
behind MultDAE, MultVAE and CDAE. See :mod:`aerec.models.recspec` for the maths.

Runs in the dtype of the params it is given (float64 for gradient checks, float32 otherwise).

Random streams are counter-based (splitmix64 of ``(spec seed, stream, step, element)``), so the
C++ network draws the same dropout masks, Gaussian noise, negative samples and shuffles:

* dropout: element = position of the entry in the CSR given to the call (``indptr[r] + k``);
  kept when ``(h >> 40) >= floor(p * 2**24)``, scaled by ``1 / (1 - p)``;
* Gaussian: element ``e = r * d + j`` (r = row of the given CSR), Box-Muller over
  ``h1 = mix(key + 2e)``, ``h2 = mix(key + 2e + 1)`` in float64;
* negatives: element ``(r << 32) | t``, item ``((h >> 32) * I) >> 32``;
* shuffle: rows sorted (stably) by ``mix(key(seed, SHUFFLE, shuffle_seed) + r)``.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ..models.recspec import make_rec_spec, rec_param_shapes

__all__ = ["RecNetwork", "check_csr", "mix64", "stream_key"]

_M64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
STREAM_DROPOUT, STREAM_GAUSS, STREAM_NEG, STREAM_SHUFFLE = 1, 2, 3, 4


def _mix_int(x: int) -> int:
    z = (x + _GOLDEN) & _M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
    return z ^ (z >> 31)


def mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser (with the golden-ratio increment) on a uint64 array."""
    z = np.asarray(x, dtype=np.uint64) + np.uint64(_GOLDEN)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def stream_key(seed: int, stream: int, step: int) -> int:
    return _mix_int((_mix_int((_mix_int(seed & _M64) + stream) & _M64) + (step & _M64)) & _M64)


def _hash(key: int, elements: np.ndarray) -> np.ndarray:
    return mix64(np.uint64(key) + np.asarray(elements, dtype=np.uint64))


def dropout_keep(key: int, elements: np.ndarray, p: float) -> np.ndarray:
    thr = np.uint64(int(p * 16777216.0))
    return (_hash(key, elements) >> np.uint64(40)) >= thr


def gaussian(key: int, elements: np.ndarray) -> np.ndarray:
    e2 = np.asarray(elements, dtype=np.uint64) * np.uint64(2)
    h1 = _hash(key, e2)
    h2 = _hash(key, e2 + np.uint64(1))
    u1 = ((h1 >> np.uint64(11)).astype(np.float64) + 1.0) * 2.0 ** -53
    u2 = (h2 >> np.uint64(11)).astype(np.float64) * 2.0 ** -53
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)


def shuffle_order(spec_seed: int, shuffle_seed: int, n: int) -> np.ndarray:
    keys = _hash(stream_key(spec_seed, STREAM_SHUFFLE, shuffle_seed), np.arange(n, dtype=np.uint64))
    return np.argsort(keys, kind="stable")


def check_csr(indptr, indices, data, n_cols, users=None, n_users=0, n_rows=None):
    """Validate and convert a CSR batch once. Returns ``(indptr int64, indices int32, data float32,
    users int32 | None)``; raises ValueError / IndexError / TypeError naming the fix."""
    indptr = np.asarray(indptr)
    indices = np.asarray(indices)
    data = np.asarray(data)
    for name, a, kinds in (("indptr", indptr, "iu"), ("indices", indices, "iu"), ("data", data, "fiub")):
        if a.ndim != 1:
            raise ValueError(f"{name} must be 1-D, got shape {a.shape}")
        if a.dtype.kind not in kinds:
            raise TypeError(f"{name} has dtype {a.dtype}; pass {'an integer' if kinds == 'iu' else 'a float32'} array")
    if indptr.size == 0:
        raise ValueError("indptr must have n_rows + 1 entries (at least one)")
    if n_rows is not None and indptr.size != n_rows + 1:
        raise ValueError(f"indptr has {indptr.size} entries but n_rows = {n_rows} needs {n_rows + 1}")
    nnz = indices.size
    if data.size != nnz:
        raise ValueError(f"indices ({nnz}) and data ({data.size}) must have the same length")
    if indptr[0] != 0 or indptr[-1] != nnz:
        raise ValueError(f"indptr must start at 0 and end at nnz = {nnz}; got {indptr[0]} .. {indptr[-1]}")
    if np.any(np.diff(indptr) < 0):
        raise ValueError("indptr is not monotone non-decreasing; pass a valid CSR matrix")
    if nnz:
        if indices.min() < 0 or indices.max() >= n_cols:
            raise IndexError(f"column ids must be in [0, {n_cols}) (the network's n_items); got "
                             f"{indices.min()} .. {indices.max()}")
        d = np.diff(indices.astype(np.int64))
        row_start = np.zeros(nnz, dtype=bool)
        starts = indptr[:-1][np.diff(indptr) > 0]
        row_start[starts] = True
        if np.any((d <= 0) & ~row_start[1:]):
            raise ValueError("column ids within a row must be strictly increasing (sorted, no duplicates); "
                             "call X.sum_duplicates(); X.sort_indices() first")
    data = np.ascontiguousarray(data, dtype=np.float32)
    if nnz and not np.isfinite(data).all():
        raise ValueError("data contains NaN or infinity; clean the interaction values first")
    if users is not None:
        users = np.asarray(users)
        if users.ndim != 1 or users.size != indptr.size - 1:
            raise ValueError(f"users must be 1-D with one id per row ({indptr.size - 1}), got shape {users.shape}")
        if users.dtype.kind not in "iu":
            raise TypeError(f"users has dtype {users.dtype}; pass int32 user ids")
        if users.size and (users.min() < 0 or users.max() >= n_users):
            raise IndexError(f"user ids must be in [0, {n_users}) (n_users_embedding)")
        users = np.ascontiguousarray(users, dtype=np.int32)
    return (np.ascontiguousarray(indptr, dtype=np.int64), np.ascontiguousarray(indices, dtype=np.int32),
            data, users)


def _act(name, x):
    if name == "identity":
        return x
    if name == "relu":
        return np.maximum(x, 0)
    if name == "sigmoid":
        return 1.0 / (1.0 + np.exp(-x))
    if name == "tanh":
        return np.tanh(x)
    if name == "elu":
        return np.where(x > 0, x, np.expm1(np.minimum(x, 0)))
    if name == "selu":
        a, s = 1.6732632423543772, 1.0507009873554805
        return np.where(x > 0, s * x, s * a * np.expm1(np.minimum(x, 0))).astype(x.dtype)
    raise ValueError(name)


def _act_grad(name, y):
    """d act / dx from the output y."""
    if name == "identity":
        return np.ones_like(y)
    if name == "relu":
        return (y > 0).astype(y.dtype)
    if name == "sigmoid":
        return y * (1 - y)
    if name == "tanh":
        return 1 - y * y
    if name == "elu":
        return np.where(y > 0, 1, y + 1).astype(y.dtype)
    if name == "selu":
        a, s = 1.6732632423543772, 1.0507009873554805
        return np.where(y > 0, s, y + s * a).astype(y.dtype)
    raise ValueError(name)


def _softplus(z):
    return np.maximum(z, 0) + np.log1p(np.exp(-np.abs(z)))


def _sigmoid(z):
    return np.where(z >= 0, 1 / (1 + np.exp(-np.abs(z))), np.exp(-np.abs(z)) / (1 + np.exp(-np.abs(z))))



def prepare_batch(spec, n_items, indptr, indices, data, users, n_rows=None):
    """check_csr for a network built from ``spec``: user ids only when it has a per-user
    embedding, and then they are required."""
    nu = spec["n_users_embedding"]
    if not nu:
        users = None  # only CDAE-style networks (n_users_embedding > 0) use user ids
    indptr, indices, data, users = check_csr(indptr, indices, data, n_items, users, nu, n_rows)
    if nu and users is None:
        raise ValueError("this network has a per-user embedding (n_users_embedding > 0): pass users")
    return indptr, indices, data, users

class RecNetwork:
    """Reference sparse-input autoencoder network (see :mod:`aerec.models.recspec`).

    Parameters
    ----------
    spec : dict
        validated by :func:`aerec.models.recspec.make_rec_spec`.
    params : list of ndarray
        ``[W0, b0, W1, b1, ..., (V)]``, ``W_l`` of shape ``(n_in, n_out)``; their common dtype
        (float32 or float64) is the compute dtype.
    """

    def __init__(self, spec, params):
        self.spec = make_rec_spec(**spec)
        self.dtype = np.dtype(np.asarray(params[0]).dtype if params else np.float32)
        if self.dtype not in (np.float32, np.float64):
            self.dtype = np.dtype(np.float32)
        self.shapes = rec_param_shapes(self.spec)
        self.set_params(params)
        self.step = 0
        self._m = [np.zeros_like(p) for p in self.params]
        self._v = [np.zeros_like(p) for p in self.params] if self.spec["optimizer"] == "adam" else []

    # ------------------------------------------------------------------ parameters and state
    @property
    def n_items(self):
        return self.spec["layer_sizes"][0]

    @property
    def n_layers(self):
        return len(self.spec["layer_sizes"]) - 1

    def get_params(self):
        return [p.copy() for p in self.params]

    def set_params(self, params):
        params = list(params)
        if len(params) != len(self.shapes):
            raise ValueError(f"expected {len(self.shapes)} parameter arrays, got {len(params)}")
        out = []
        for i, (p, s) in enumerate(zip(params, self.shapes)):
            p = np.asarray(p)
            if p.shape != tuple(s):
                raise ValueError(f"param {i} must have shape {tuple(s)}, got {p.shape}")
            out.append(np.array(p, dtype=self.dtype, copy=True))
        self.params = out

    def get_optimizer_state(self):
        return {"step": int(self.step), "m": [a.copy() for a in self._m], "v": [a.copy() for a in self._v]}

    def set_optimizer_state(self, state):
        m, v = list(state["m"]), list(state["v"])
        if len(m) != len(self.shapes) or len(v) != (len(self.shapes) if self.spec["optimizer"] == "adam" else 0):
            raise ValueError("optimizer state does not match this network's parameters")
        for a, s in zip(m + v, self.shapes + self.shapes):
            if np.shape(a) != tuple(s):
                raise ValueError(f"optimizer state array has shape {np.shape(a)}, expected {tuple(s)}")
        self._m = [np.array(a, dtype=self.dtype) for a in m]
        self._v = [np.array(a, dtype=self.dtype) for a in v]
        self.step = int(state["step"])

    def decoder_layers(self):
        """``[(W, b, activation), ...]`` of the decoder weight layers (copies); the last one maps
        ``hidden_last`` to the logits."""
        enc = self.spec["encoder_depth"]
        return [(self.params[2 * l].copy(), self.params[2 * l + 1].copy(), self.spec["activations"][l])
                for l in range(enc, self.n_layers)]

    # ------------------------------------------------------------------ core maths
    def _beta(self):
        s = self.spec
        if s["total_anneal_steps"] == 0:
            return s["anneal_cap"]
        return min(s["anneal_cap"], self.step / s["total_anneal_steps"])

    def _input(self, indptr, indices, data, nnz_ids, train):
        s, dt = self.spec, self.dtype
        B = indptr.size - 1
        x = data.astype(dt)
        rows = np.repeat(np.arange(B), np.diff(indptr))
        xin = x.copy()
        if s["normalize_input"] and x.size:
            sq = np.zeros(B, dt)
            np.add.at(sq, rows, x * x)
            nrm = np.sqrt(sq)
            xin = x / np.where(nrm > 0, nrm, 1)[rows]
        if train and s["input_dropout"] > 0 and x.size:
            keep = dropout_keep(stream_key(s["seed"], STREAM_DROPOUT, self.step), nnz_ids, s["input_dropout"])
            scale = dt.type(1.0 / (1.0 - s["input_dropout"]))
            xin = np.where(keep, xin * scale, dt.type(0)).astype(dt)
        return x, rows, xin

    def _forward(self, indptr, indices, data, users, row_ids, nnz_ids, train, stop=None):
        """Returns (cache, output of layer `stop` or logits)."""
        s, dt, I = self.spec, self.dtype, self.n_items
        B = indptr.size - 1
        enc, acts = s["encoder_depth"], s["activations"]
        x, rows, xin = self._input(indptr, indices, data, nnz_ids, train)
        X = sp.csr_matrix((xin, indices, indptr), shape=(B, I))
        c = dict(x=x, rows=rows, X=X, hs=[], B=B)
        h = None
        params = self.params  # read once per pass (set_params rebinds the list)
        for l in range(self.n_layers):
            W, b = params[2 * l], params[2 * l + 1]
            if l == 0:
                a = np.asarray(X @ W).astype(dt) + b
                if s["n_users_embedding"]:
                    a = a + params[-1][users]
            else:
                a = h @ W + b
            if l < self.n_layers - 1 or s["loss"] != "logistic":
                hl = _act(acts[l], a)
            else:
                hl = a  # logistic: the loss takes the logits
            if s["variational"] and l == enc - 1:
                d = s["layer_sizes"][enc]
                mu, lv = hl[:, :d], hl[:, d:]
                c["mu"], c["lv"] = mu, lv
                if train:
                    e = (row_ids.astype(np.uint64)[:, None] * np.uint64(d) + np.arange(d, dtype=np.uint64)[None, :])
                    eps = gaussian(stream_key(s["seed"], STREAM_GAUSS, self.step), e).astype(dt)
                    c["eps"] = eps
                    hl = mu + eps * np.exp(dt.type(0.5) * lv)
                else:
                    hl = mu
            c["hs"].append(hl)
            if stop is not None and l == stop:
                return c, hl
            h = hl
        return c, h

    def _loss_grads(self, indptr, indices, data, users, row_ids, nnz_ids, want_grads=True):
        s, dt, I = self.spec, self.dtype, self.n_items
        c, z = self._forward(indptr, indices, data, users, row_ids, nnz_ids, train=True)
        B, x, rows = c["B"], c["x"], c["rows"]
        if s["loss"] == "multinomial":
            mx = z.max(axis=1, keepdims=True)
            ez = np.exp(z - mx)
            se = ez.sum(axis=1, keepdims=True)
            lse = (mx + np.log(se))[:, 0]
            sx = np.zeros(B, dt)
            np.add.at(sx, rows, x)
            xz = np.zeros(B, dt)
            np.add.at(xz, rows, x * z[rows, indices])
            per_user = sx * lse - xz
            dz = ez * (sx / B)[:, None] / se
            dz[rows, indices] -= x / B
        else:
            y = np.zeros((B, I), dt)
            y[rows, indices] = x
            if s["negative_samples"] == 0:
                mask = np.ones((B, I), bool)
            else:
                mask = np.zeros((B, I), bool)
                mask[rows, indices] = True
                key = stream_key(s["seed"], STREAM_NEG, self.step)
                cnt = np.diff(indptr) * s["negative_samples"]
                rr = np.repeat(np.arange(B), cnt)
                t = np.arange(cnt.sum()) - np.repeat(np.cumsum(cnt) - cnt, cnt)
                e = (row_ids.astype(np.uint64)[rr] << np.uint64(32)) | t.astype(np.uint64)
                cand = ((_hash(key, e) >> np.uint64(32)) * np.uint64(I)) >> np.uint64(32)
                mask[rr, cand.astype(np.int64)] = True
            per_user = np.where(mask, _softplus(z) - y * z, 0).sum(axis=1)
            dz = np.where(mask, (_sigmoid(z) - y) / B, 0).astype(dt)
        loss = float(per_user.sum() / B) if B else 0.0
        enc = s["encoder_depth"]
        if s["variational"]:
            beta = dt.type(self._beta())
            mu, lv = c["mu"], c["lv"]
            kl = 0.5 * (np.exp(lv) + mu * mu - 1 - lv).sum(axis=1)
            loss += float(beta * kl.sum() / B)
        l2 = s["l2"]
        if l2:
            reg = sum(float((self.params[2 * l].astype(np.float64) ** 2).sum()) for l in range(self.n_layers))
            if s["n_users_embedding"]:
                reg += float((self.params[-1].astype(np.float64) ** 2).sum())
            loss += 0.5 * l2 * reg
        if not want_grads:
            return loss, None
        grads = [None] * len(self.params)
        acts = s["activations"]
        for l in range(self.n_layers - 1, -1, -1):
            W = self.params[2 * l]
            # dz: gradient w.r.t. the pre-activation of layer l
            grads[2 * l + 1] = dz.sum(axis=0)
            if l == 0:
                gW = np.asarray(c["X"].T @ dz).astype(dt)
                if s["n_users_embedding"]:
                    gV = np.zeros_like(self.params[-1])
                    np.add.at(gV, users, dz)
                    grads[-1] = gV
            else:
                gW = c["hs"][l - 1].T @ dz
            grads[2 * l] = gW
            if l == 0:
                break
            dh = dz @ W.T
            if s["variational"] and l - 1 == enc - 1:
                mu, lv, eps = c["mu"], c["lv"], c["eps"]
                std = np.exp(dt.type(0.5) * lv)
                dmu = dh + beta * mu / B
                dlv = dh * eps * dt.type(0.5) * std + beta * dt.type(0.5) * (np.exp(lv) - 1) / B
                dz = np.concatenate([dmu, dlv], axis=1).astype(dt)  # identity activation
            else:
                dz = dh * _act_grad(acts[l - 1], c["hs"][l - 1])
        if l2:
            for l in range(self.n_layers):
                grads[2 * l] = grads[2 * l] + dt.type(l2) * self.params[2 * l]
            if s["n_users_embedding"]:
                grads[-1] = grads[-1] + dt.type(l2) * self.params[-1]
        return loss, grads

    def _update(self, grads, indices, users):
        s, dt = self.spec, self.dtype
        t = self.step + 1
        lr = s["learning_rate"]
        adam = s["optimizer"] == "adam"
        if adam:
            b1, b2, eps = s["beta1"], s["beta2"], s["epsilon"]
            c1 = dt.type(1.0 / (1.0 - b1 ** t))
            c2 = dt.type(1.0 / (1.0 - b2 ** t))
        lazy_rows = {}
        if s["lazy_adam"]:
            lazy_rows[0] = np.unique(indices)
            if s["n_users_embedding"]:
                lazy_rows[len(self.params) - 1] = np.unique(users)
        for i, g in enumerate(grads):
            w, m = self.params[i], self._m[i]
            sel = lazy_rows.get(i)
            if sel is not None:
                w_, m_, g_ = w[sel], m[sel], g[sel]
            else:
                w_, m_, g_ = w, m, g
            if adam:
                v_ = self._v[i][sel] if sel is not None else self._v[i]
                m_ = dt.type(b1) * m_ + dt.type(1 - b1) * g_
                v_ = dt.type(b2) * v_ + dt.type(1 - b2) * (g_ * g_)
                w_ = w_ - dt.type(lr) * (m_ * c1) / (np.sqrt(v_ * c2) + dt.type(eps))
            else:
                m_ = dt.type(s["momentum"]) * m_ + g_
                w_ = w_ - dt.type(lr) * m_
            if sel is not None:
                w[sel], m[sel] = w_, m_
                if adam:
                    self._v[i][sel] = v_
            else:
                self.params[i], self._m[i] = w_.astype(dt), m_.astype(dt)
                if adam:
                    self._v[i] = v_.astype(dt)
        self.step += 1

    # ------------------------------------------------------------------ public API
    def _prep(self, indptr, indices, data, users, n_rows=None):
        return prepare_batch(self.spec, self.n_items, indptr, indices, data, users, n_rows)

    def gradients(self, indptr, indices, data, users=None):
        """(loss, grads) of one training batch at the current step (dropout/noise drawn as in
        ``train_batch``); no update."""
        indptr, indices, data, users = self._prep(indptr, indices, data, users)
        B = indptr.size - 1
        if B == 0:
            raise ValueError("gradients needs at least one row")
        return self._loss_grads(indptr, indices, data, users, np.arange(B), np.arange(indices.size))

    def train_batch(self, indptr, indices, data, users=None):
        indptr, indices, data, users = self._prep(indptr, indices, data, users)
        B = indptr.size - 1
        if B == 0:
            raise ValueError("train_batch needs at least one row")
        loss, grads = self._loss_grads(indptr, indices, data, users, np.arange(B), np.arange(indices.size))
        self._update(grads, indices, users)
        return loss

    def train_epoch(self, indptr, indices, data, n_rows, batch_size=500, shuffle=True, seed=0, users=None):
        indptr, indices, data, users = self._prep(indptr, indices, data, users, n_rows)
        if n_rows <= 0:
            raise ValueError("train_epoch needs at least one row")
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        order = shuffle_order(self.spec["seed"], seed, n_rows) if shuffle else np.arange(n_rows)
        total = 0.0
        for start in range(0, n_rows, batch_size):
            rows = order[start:start + batch_size]
            lens = indptr[rows + 1] - indptr[rows]
            bptr = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
            nnz_ids = np.concatenate([np.arange(indptr[r], indptr[r + 1]) for r in rows]) if bptr[-1] else \
                np.zeros(0, np.int64)
            bidx, bdat = indices[nnz_ids], data[nnz_ids]
            bus = users[rows] if users is not None else None
            loss, grads = self._loss_grads(bptr, bidx, bdat, bus, rows, nnz_ids)
            self._update(grads, bidx, bus)
            total += loss * rows.size
        return total / n_rows

    def _eval_layer(self, indptr, indices, data, users, stop, batch_size):
        indptr, indices, data, users = self._prep(indptr, indices, data, users)
        B = indptr.size - 1
        outs = []
        for start in range(0, max(B, 1), batch_size):
            stop_r = min(B, start + batch_size)
            a, b = indptr[start], indptr[stop_r]
            bptr = indptr[start:stop_r + 1] - a
            bus = users[start:stop_r] if users is not None else None
            _, h = self._forward(bptr, indices[a:b], data[a:b], bus, np.arange(start, stop_r),
                                 np.arange(a, b), train=False, stop=stop)
            outs.append(h)
        return np.concatenate(outs, axis=0).astype(self.dtype, copy=False)

    def forward(self, indptr, indices, data, users=None, batch_size=500):
        """(n_rows, I) logits in evaluation mode (no dropout, z = mu)."""
        return self._eval_layer(indptr, indices, data, users, None, batch_size)

    def encode(self, indptr, indices, data, users=None, batch_size=500):
        """(n_rows, d) bottleneck (mu for the VAE)."""
        return self._eval_layer(indptr, indices, data, users, self.spec["encoder_depth"] - 1, batch_size)

    def hidden_last(self, indptr, indices, data, users=None, batch_size=500):
        """(n_rows, h_last): the input of the last weight layer, so logits = h @ W_last + b_last."""
        if self.n_layers < 2:
            raise ValueError("hidden_last needs at least two weight layers")
        return self._eval_layer(indptr, indices, data, users, self.n_layers - 2, batch_size)

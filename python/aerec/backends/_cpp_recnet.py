"""C++ ``RecNetwork`` (aerec._core.RecNetwork): same interface and numbers (to float32 rounding)
as the NumPy reference :class:`aerec.backends._numpy_recnet.RecNetwork`."""
from __future__ import annotations

import numpy as np

from ..models.recspec import make_rec_spec, rec_param_shapes
from ._numpy_recnet import prepare_batch

__all__ = ["RecNetwork"]


def _core():
    from .cpp import _core  # backends/cpp.py is the one module that imports aerec._core
    return _core


class RecNetwork:
    """Sparse-input autoencoder network (MultDAE / MultVAE / CDAE) on the C++ kernels.

    Parameters
    ----------
    spec : dict
        see :func:`aerec.models.recspec.make_rec_spec`.
    params : list of ndarray
        ``[W0, b0, W1, b1, ..., (V)]`` (converted to float32 once).
    """

    def __init__(self, spec, params):
        self.spec = make_rec_spec(**spec)
        self.shapes = rec_param_shapes(self.spec)
        self._net = _core().RecNetwork(self.spec, self._convert(params))

    def _convert(self, params):
        params = list(params)
        if len(params) != len(self.shapes):
            raise ValueError(f"expected {len(self.shapes)} parameter arrays, got {len(params)}")
        out = []
        for i, (p, s) in enumerate(zip(params, self.shapes)):
            p = np.asarray(p)
            if p.shape != tuple(s):
                raise ValueError(f"param {i} must have shape {tuple(s)}, got {p.shape}")
            if p.dtype.kind not in "fiu":
                raise TypeError(f"param {i} has dtype {p.dtype}; pass float32")
            p = np.ascontiguousarray(p, dtype=np.float32)
            if not np.isfinite(p).all():
                raise ValueError(f"param {i} contains NaN or infinity")
            out.append(p)
        return out

    @property
    def n_items(self):
        return self.spec["layer_sizes"][0]

    @property
    def n_layers(self):
        return len(self.spec["layer_sizes"]) - 1

    @property
    def step(self):
        return self._net.step

    @step.setter
    def step(self, value):
        if int(value) < 0:
            raise ValueError("step must be >= 0")
        self._net.step = int(value)

    def get_params(self):
        return self._net.get_params()

    def set_params(self, params):
        self._net.set_params(self._convert(params))

    def get_optimizer_state(self):
        return self._net.get_optimizer_state()

    def set_optimizer_state(self, state):
        m = self._convert(state["m"])
        v = self._convert(state["v"]) if self.spec["optimizer"] == "adam" else []
        if self.spec["optimizer"] != "adam" and len(state["v"]):
            raise ValueError("sgd has no second moments ('v' must be empty)")
        self._net.set_optimizer_state({"step": int(state["step"]), "m": m, "v": v})

    def decoder_layers(self):
        """``[(W, b, activation), ...]`` of the decoder weight layers (copies)."""
        p = self.get_params()
        enc = self.spec["encoder_depth"]
        return [(p[2 * l], p[2 * l + 1], self.spec["activations"][l]) for l in range(enc, self.n_layers)]

    def timings(self):
        """Seconds per training phase since :meth:`reset_timings` (gather, spmm, gemm, noise (VAE sampling), loss,
        dense_bwd, sparse_bwd, optimizer), batches and GEMM flops."""
        return self._net.timings()

    def reset_timings(self):
        self._net.reset_timings()

    def _prep(self, indptr, indices, data, users, n_rows=None):
        return prepare_batch(self.spec, self.n_items, indptr, indices, data, users, n_rows)

    def train_batch(self, indptr, indices, data, users=None):
        """One update on a CSR batch; returns the batch loss."""
        indptr, indices, data, users = self._prep(indptr, indices, data, users)
        if indptr.size < 2:
            raise ValueError("train_batch needs at least one row")
        return self._net.train_batch(indptr, indices, data, users)

    def train_epoch(self, indptr, indices, data, n_rows, batch_size=500, shuffle=True, seed=0, users=None):
        """A whole epoch in C++ (GIL released); returns the row-weighted mean batch loss."""
        indptr, indices, data, users = self._prep(indptr, indices, data, users, n_rows)
        if n_rows <= 0:
            raise ValueError("train_epoch needs at least one row")
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        return self._net.train_epoch(indptr, indices, data, int(n_rows), int(batch_size), bool(shuffle),
                                     int(seed), users)

    def gradients(self, indptr, indices, data, users=None):
        """``(loss, grads)`` at the current step without an update (tests)."""
        indptr, indices, data, users = self._prep(indptr, indices, data, users)
        if indptr.size < 2:
            raise ValueError("gradients needs at least one row")
        return self._net.gradients(indptr, indices, data, users)

    def _eval(self, indptr, indices, data, users, stop, batch_size):
        indptr, indices, data, users = self._prep(indptr, indices, data, users)
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        return self._net.evaluate(indptr, indices, data, users, stop, int(batch_size))

    def forward(self, indptr, indices, data, users=None, batch_size=500):
        """(n_rows, I) float32 logits, evaluation mode."""
        return self._eval(indptr, indices, data, users, self.n_layers - 1, batch_size)

    def encode(self, indptr, indices, data, users=None, batch_size=500):
        """(n_rows, d) bottleneck (mu for the VAE)."""
        return self._eval(indptr, indices, data, users, self.spec["encoder_depth"] - 1, batch_size)

    def hidden_last(self, indptr, indices, data, users=None, batch_size=500):
        """(n_rows, h_last): logits = hidden_last @ W_last + b_last."""
        if self.n_layers < 2:
            raise ValueError("hidden_last needs at least two weight layers")
        return self._eval(indptr, indices, data, users, self.n_layers - 2, batch_size)

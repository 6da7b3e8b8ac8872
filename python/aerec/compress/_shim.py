"""THROWAWAY stand-in for qkern's aerec.backends._quant until that branch lands (deleted then)."""
from __future__ import annotations

import numpy as np

from ..backends._numpy_topk import bf16_round, select_topk


def _bf16_bits(x):
    return (bf16_round(x).view(np.uint32) >> np.uint32(16)).astype(np.uint16)


def _from_bits(u):
    return (u.astype(np.uint32) << np.uint32(16)).view(np.float32)


def pack_layer(W, b=None, precision="fp32", sparse=False, input="dense"):
    W = np.ascontiguousarray(W, np.float32)
    n_in, n_out = W.shape
    out = {"shape": np.asarray([n_in, n_out], np.int64),
           "bias": np.zeros(n_out, np.float32) if b is None else np.asarray(b, np.float32)}
    Wt = np.ascontiguousarray(W.T)  # (n_out, n_in)
    if precision == "int8":
        amax = np.abs(Wt).max(axis=1)
        scale = np.where(amax > 0, amax / 127, 1).astype(np.float32)
        q = np.clip(np.rint(Wt / scale[:, None]), -127, 127).astype(np.int8)
        out["scale"] = scale
        vals = q
    elif precision == "bf16":
        vals = _bf16_bits(Wt).reshape(Wt.shape)
    elif precision == "fp32":
        vals = Wt
    else:
        raise ValueError(f"precision must be fp32, bf16 or int8, got {precision!r}")
    if sparse:
        nz = Wt != 0
        out["indptr"] = np.concatenate([[0], np.cumsum(nz.sum(1))]).astype(np.int64)
        out["indices"] = np.nonzero(nz)[1].astype(np.int32)
        out["values"] = vals[nz]
    else:
        out["values"] = vals
    return out


def unpack_layer(a):
    n_in, n_out = (int(v) for v in a["shape"])
    v = a["values"]
    f = _from_bits(v) if v.dtype == np.uint16 else v.astype(np.float32)
    if "indptr" in a:
        Wt = np.zeros((n_out, n_in), np.float32)
        rows = np.repeat(np.arange(n_out), np.diff(a["indptr"]))
        Wt[rows, a["indices"]] = f
    else:
        Wt = f.reshape(n_out, n_in)
    if "scale" in a:
        Wt = Wt * a["scale"][:, None]
    return np.ascontiguousarray(Wt.T), a["bias"].copy()


def validate_layer(a):
    for k in ("shape", "bias", "values"):
        if k not in a:
            raise ValueError(f"packed layer lacks array {k!r}")
    n_in, n_out = (int(v) for v in a["shape"])
    if a["bias"].shape != (n_out,):
        raise ValueError("bias length != n_out")
    if "indptr" in a:
        ip = a["indptr"]
        if ip.shape != (n_out + 1,) or ip[0] != 0 or ip[-1] != a["values"].size or (np.diff(ip) < 0).any():
            raise ValueError("bad indptr")
        if a["indices"].size and (a["indices"].min() < 0 or a["indices"].max() >= n_in):
            raise ValueError("indices out of range")
    elif a["values"].size != n_in * n_out:
        raise ValueError("values size != n_in * n_out")


def layer_nbytes(a):
    return int(sum(v.nbytes for v in a.values()))


_ACT = {"identity": lambda z: z, "relu": lambda z: np.maximum(z, 0), "tanh": np.tanh,
        "sigmoid": lambda z: 1 / (1 + np.exp(-z))}


class CompressedLinear:
    def __init__(self, arrays, num_threads=0):
        validate_layer(arrays)
        self._a = dict(arrays)
        self.n_in, self.n_out = (int(v) for v in arrays["shape"])
        v = arrays["values"]
        self.precision = "int8" if v.dtype == np.int8 else "bf16" if v.dtype == np.uint16 else "fp32"
        self.sparse = "indptr" in arrays
        self._W, self._b = unpack_layer(arrays)

    def memory_usage(self):
        return layer_nbytes(self._a)

    def forward(self, x, activation="identity"):
        return _ACT[activation]((np.asarray(x, np.float32) @ self._W + self._b).astype(np.float32))

    def forward_csr(self, indptr, indices, data, activation="identity"):
        import scipy.sparse as sp
        X = sp.csr_matrix((data, indices, indptr), shape=(len(indptr) - 1, self.n_in))
        return _ACT[activation]((X @ self._W + self._b).astype(np.float32))

    def topk(self, x, k, exclude_indptr=None, exclude_indices=None, num_threads=0):
        import scipy.sparse as sp
        s = self.forward(x)
        ex = None
        if exclude_indptr is not None:
            ex = sp.csr_matrix((np.ones(len(exclude_indices), np.float32), exclude_indices, exclude_indptr),
                               shape=(x.shape[0], self.n_out))
        return select_topk(s, k, ex)

"""``CompressedNetwork``: the inference side of a backend ``Network`` over packed layers.

A compressed model keeps its fitted attributes and swaps its ``net_`` (the backend's trainable
``Network``) for a :class:`CompressedNetwork` built from the same spec. Both answer the inference
calls the models make (``forward``, ``hidden``, ``encode``, ``step``, ``spec``, ``n_layers``), so
``recommend`` / ``score`` / ``encode`` / fold-in / ``predict`` run unchanged; the compressed one
also offers :meth:`CompressedNetwork.output_index`, the fused decoder + top-k with exclusion that
``_SparseAutoencoder._search_index`` uses in place of a :class:`aerec.search.TopK` over fp32
decoder weights. It holds no fp32 copy of any weight matrix: each layer is one
``CompressedLinear`` of the model's backend (int8 + per-output-channel scales, bf16, or a sparse
CSC-by-output layout of either, or fp32; see ``aerec.backends._quant``).

The maths is the eval-mode network of :mod:`aerec.nn.spec`: no dropout; the variational layer
gives mu (only its mu columns are stored: the logvar half is never used at inference); CDAE's
user vector ``U[user]`` is added to layer 0's pre-activation (row ``n_users`` is the zero fold-in
row). ``U`` is stored in the model's precision, row-quantised (int8: symmetric per-row scales).
"""
from __future__ import annotations

import re

import numpy as np
import scipy.sparse as sp

__all__ = ["CompressedNetwork", "quant_module", "layer_prefixes", "PRECISIONS"]

PRECISIONS = ("fp32", "bf16", "int8")
_KEY_RE = re.compile(r"[A-Za-z0-9_]{1,64}")


def quant_module():
    """The packing functions (``aerec.backends._quant``: pure NumPy, no compiled module)."""
    from ..backends import _quant
    return _quant


def _linear_class(backend):
    """The backend's ``CompressedLinear`` (every backend has one; see ``aerec.backends._compressed``)."""
    return backend.CompressedLinear


def layer_prefixes(spec) -> list:
    """Array-name prefix of each weight layer in model files (``encoder.0``, ..., ``decoder.<i>``)."""
    from .._schemas import weight_names
    return [n[:-len(".weight")] for n in weight_names(spec)[0:2 * (len(spec["layer_sizes"]) - 1):2]]


# -- the per-user table (CDAE) -----------------------------------------------------------------

def pack_rows(U, precision) -> dict:
    """Row-quantised copy of an embedding table: fp32 as is, bf16 bits (uint16), or int8 with one
    symmetric scale per row (``U ~ scale[:, None] * values``)."""
    U = np.ascontiguousarray(U, dtype=np.float32)
    if precision == "fp32":
        return {"values": U}
    if precision == "bf16":
        from ..backends._numpy_topk import bf16_round
        return {"bf16": (bf16_round(U).view(np.uint32) >> np.uint32(16)).astype(np.uint16)}
    from ..backends._numpy_topk import int8_rows
    q, scale = int8_rows(U)
    return {"values": q, "scale": scale}


def unpack_rows(table: dict, rows=None) -> np.ndarray:
    """fp32 rows ``rows`` (all when None) of a :func:`pack_rows` table."""
    sel = (lambda a: a) if rows is None else (lambda a: a[rows])
    if "bf16" in table:
        return (sel(table["bf16"]).astype(np.uint32) << np.uint32(16)).view(np.float32)
    v = sel(table["values"]).astype(np.float32)
    if "scale" in table:
        v *= sel(table["scale"])[:, None]
    return v


def check_rows(table: dict, n_rows: int, width: int, where: str) -> None:
    """Raise ValueError unless ``table`` is a :func:`pack_rows` table of shape (n_rows, width)."""
    keys = set(table)
    if keys not in ({"values"}, {"bf16"}, {"values", "scale"}):
        raise ValueError(f"{where}: expected arrays values (fp32 / int8 + scale) or bf16, got {sorted(keys)}")
    v = table.get("values", table.get("bf16"))
    want = np.uint16 if "bf16" in table else (np.int8 if "scale" in table else np.float32)
    if v.dtype != want or v.shape != (n_rows, width):
        raise ValueError(f"{where}: expected {np.dtype(want).name} of shape ({n_rows}, {width}), got "
                         f"{v.dtype} of shape {v.shape}")
    if "scale" in table:
        s = table["scale"]
        if s.dtype != np.float32 or s.shape != (n_rows,) or not np.isfinite(s).all() or (s <= 0).any():
            raise ValueError(f"{where}: scale must be {n_rows} finite float32 values > 0")
    if v.dtype == np.float32 and not np.isfinite(v).all():
        raise ValueError(f"{where}: values must be finite")


def _act(name, z):
    from ..backends.numpy_ import _activate
    return _activate(name, z)


class _OutputIndex:
    """Fused decoder + top-k over the output layer: ``search(h, k, exclude=csr)`` as
    :meth:`aerec.search.TopK.search` (h = the last hidden layer, exclude a CSR of item ids)."""

    def __init__(self, layer):
        self._layer = layer

    def search(self, h, k, exclude=None):
        h = np.ascontiguousarray(h, dtype=np.float32)
        if exclude is not None:
            ex = sp.csr_matrix(exclude)
            return self._layer.topk(h, int(k), np.ascontiguousarray(ex.indptr, dtype=np.int64),
                                    np.ascontiguousarray(ex.indices, dtype=np.int32))
        return self._layer.topk(h, int(k))


class CompressedNetwork:
    """Inference-only network over packed layers (see the module doc).

    Parameters
    ----------
    spec : dict
        the :mod:`aerec.nn.spec` spec of the network it replaces.
    layers : list of dict
        one ``pack_layer`` dict per weight layer (the variational layer: its mu columns only).
    backend : module
        the backend whose ``CompressedLinear`` runs the layers.
    users : dict, optional
        the :func:`pack_rows` table of CDAE's per-user vectors (``spec["n_users"]`` rows).
    """

    compressed = True

    def __init__(self, spec, layers, backend, users=None):
        quant = quant_module()
        self.spec = spec
        self.n_layers = len(spec["layer_sizes"]) - 1
        if len(layers) != self.n_layers:
            raise ValueError(f"the spec has {self.n_layers} weight layers but {len(layers)} packed layers were given")
        cls = _linear_class(backend)
        self._packed = [dict(a) for a in layers]
        self._layers = []
        for i, arrays in enumerate(self._packed):
            quant.validate_layer(arrays)
            lin = cls(arrays, num_threads=0)
            n_in, n_out = spec["layer_sizes"][i], spec["layer_sizes"][i + 1]
            if (lin.n_in, lin.n_out) != (n_in, n_out):
                raise ValueError(f"packed layer {i} maps {lin.n_in} -> {lin.n_out}, but the spec's layer {i} maps "
                                 f"{n_in} -> {n_out}")
            self._layers.append(lin)
        self._users = users
        if spec["n_users"]:
            if users is None:
                raise ValueError("this spec has a per-user embedding (CDAE); pass its packed table as users=")
            check_rows(users, spec["n_users"], spec["layer_sizes"][1], "user_embedding")
        elif users is not None:
            raise ValueError("users= given for a spec without a per-user embedding")
        self._acts = list(spec["activations"])
        if spec["variational"]:
            self._acts[spec["encoder_depth"] - 1] = "identity"

    # -- what the models read ---------------------------------------------------------------------
    step = 0  # never trained: caches keyed on the step stay valid

    @property
    def precision(self) -> str:
        return self._layers[-1].precision

    def layer(self, i):
        """The ``CompressedLinear`` of weight layer ``i``."""
        return self._layers[i]

    def layer_weights(self, i):
        """Dequantised ``(W (n_in, n_out), b (n_out,))`` float32 of layer ``i`` (a fresh copy, on request)."""
        W, b = quant_module().unpack_layer(self._packed[i])
        return W, (np.zeros(W.shape[1], np.float32) if b is None else b)

    def user_vectors(self, rows=None):
        """Dequantised rows of CDAE's user table (all when ``rows`` is None)."""
        if self._users is None:
            raise ValueError("this network has no per-user embedding")
        return unpack_rows(self._users, rows)

    def packed_layers(self) -> list:
        return [dict(a) for a in self._packed]

    def packed_users(self):
        return None if self._users is None else dict(self._users)

    def memory_usage(self) -> int:
        """Bytes of the stored weights (every layer's packed arrays and the user table)."""
        quant = quant_module()
        n = sum(quant.layer_nbytes(a) for a in self._packed)
        if self._users is not None:
            n += sum(a.nbytes for a in self._users.values())
        return int(n)

    def output_index(self):
        """The fused decoder + top-k of the output layer (``search(h, k, exclude=csr)``)."""
        return _OutputIndex(self._layers[-1])

    # -- inference ----------------------------------------------------------------------------------
    def _check_users(self, users, n):
        if not self.spec["n_users"]:
            if users is not None:
                raise ValueError("users is only for networks with a per-user embedding")
            return None
        if users is None:
            raise ValueError("this network has a per-user embedding: pass users (int32, one per row)")
        users = np.asarray(users)
        if users.shape != (n,) or users.dtype.kind not in "iu":
            raise ValueError(f"users must be {n} integer ids, got dtype {users.dtype} of shape {users.shape}")
        if n and (users.min() < 0 or users.max() >= self.spec["n_users"]):
            raise IndexError(f"users must be in [0, {self.spec['n_users']})")
        return users

    def _layer0(self, x, users):
        lin, act = self._layers[0], self._acts[0]
        fused = act if users is None else "identity"
        if sp.issparse(x) and lin.input != "csr":  # a dense-input layer fed histories: densify the batch
            x = x.toarray()
        if sp.issparse(x):
            x = sp.csr_matrix(x, dtype=np.float32)
            data = x.data
            if self.spec["normalize_input"]:
                per = np.diff(x.indptr)
                sq = np.bincount(np.repeat(np.arange(x.shape[0]), per), weights=data.astype(np.float64) ** 2,
                                 minlength=x.shape[0])
                nrm = np.sqrt(sq).astype(np.float32)
                data = (data / np.repeat(np.where(nrm > 0, nrm, 1), per)).astype(np.float32)
            z = lin.forward_csr(np.ascontiguousarray(x.indptr, dtype=np.int64),
                                np.ascontiguousarray(x.indices, dtype=np.int32),
                                np.ascontiguousarray(data, dtype=np.float32), fused)
        else:
            x = np.ascontiguousarray(x, dtype=np.float32)
            if self.spec["normalize_input"]:
                nrm = np.sqrt((x * x).sum(axis=1, keepdims=True))
                x = x / np.where(nrm > 0, nrm, np.float32(1))
            z = lin.forward(x, fused)
        if users is not None:
            z = _act(act, z + unpack_rows(self._users, users))
        return z

    def hidden(self, x, layer, batch_size=4096, users=None):
        """Output of weight layer ``layer`` in eval mode: (n, layer_sizes[layer+1]) float32."""
        if isinstance(layer, bool) or not isinstance(layer, (int, np.integer)):
            raise TypeError(f"layer must be an int, got {type(layer).__name__}")
        if not 0 <= layer < self.n_layers:
            raise IndexError(f"layer must be in [0, {self.n_layers}), got {layer}")
        n_in = self.spec["layer_sizes"][0]
        if x.ndim != 2 or x.shape[1] != n_in:
            raise ValueError(f"x must have {n_in} columns, got shape {x.shape}")
        users = self._check_users(users, x.shape[0])
        out = np.empty((x.shape[0], self.spec["layer_sizes"][layer + 1]), np.float32)
        for s in range(0, x.shape[0], max(int(batch_size), 1)):
            e = min(s + int(batch_size), x.shape[0])
            h = self._layer0(x[s:e], None if users is None else users[s:e])
            for i in range(1, layer + 1):
                h = self._layers[i].forward(np.ascontiguousarray(h, dtype=np.float32), self._acts[i])
            out[s:e] = h
        return out

    def forward(self, x, batch_size=4096, users=None):
        """Reconstruction / output scores (n, n_out) in eval mode."""
        return self.hidden(x, self.n_layers - 1, batch_size, users=users)

    def encode(self, x, batch_size=4096, users=None):
        """The bottleneck (mu for the VAE)."""
        return self.hidden(x, self.spec["encoder_depth"] - 1, batch_size, users=users)

    def loss(self, x, y, mask=None, batch_size=4096, users=None):
        """Eval-mode data loss + the l2 term (mse, bce, masked_mse: the dense models' losses)."""
        kind = self.spec["loss"]
        if kind not in ("mse", "bce", "masked_mse"):
            raise ValueError(f"a compressed network computes the {kind!r} loss only through recommend/score; "
                             "loss() covers mse, bce and masked_mse")
        y = np.asarray(y.toarray() if sp.issparse(y) else y, dtype=np.float64)
        out = self.forward(x, batch_size, users=users).astype(np.float64)
        if kind == "mse":
            data = float(np.mean((out - y) ** 2))
        elif kind == "bce":
            p = np.clip(out, 1e-7, 1 - 1e-7)
            z = np.log(p) - np.log1p(-p)
            data = float(np.mean(np.logaddexp(0.0, z) - y * z))
        else:
            m = (y != 0) if mask is None else (np.asarray(mask) != 0)
            data = float(((out - y) ** 2 * m).sum() / max(y.shape[0], 1))
        l2 = float(self.spec["l2"])
        if l2:
            data += 0.5 * l2 * sum(float((self.layer_weights(i)[0].astype(np.float64) ** 2).sum())
                                   for i in range(self.n_layers))
        return data

    # -- training: not here ---------------------------------------------------------------------------
    def _no_training(self, *a, **k):
        raise ValueError("this network is compressed (inference only): train the fp32 model and compress it "
                         "again (aerec.compress.quantize / prune)")

    train_epoch = train_batch = gradients = set_params = set_optimizer_state = get_optimizer_state = _no_training

    def get_masks(self):
        """None per layer: a compressed network stores its pruned weights' absence, not masks."""
        return [None] * self.n_layers

    def get_params(self):
        """Dequantised fp32 copies ``[W0, b0, W1, b1, ...]`` (variational layer: its mu columns only,
        ``(n_in, d)``), then CDAE's user table."""
        out = []
        for i in range(self.n_layers):
            out += list(self.layer_weights(i))
        if self._users is not None:
            out.append(self.user_vectors())
        return out

"""NumPy reference of ``CompressedLinear``: one packed linear layer ``y = act(x @ W + b)`` in
fp32 / bf16 / int8, dense or sparse (the test oracle of ``backends.cpp`` and ``backends.numba_``).

Contract (every backend: ``backend.CompressedLinear(arrays, num_threads=0)``)
--------------------------------------------------------------------------------
``arrays`` is the dict of :func:`aerec.backends._quant.pack_layer` (validated with
``validate_layer``; ValueError names a bad array). The object keeps the packed arrays only (no
fp32 copy unless the layer is fp32) and is immutable; every method is thread-safe (per-call
workspaces; the C++ calls release the GIL).

Attributes: ``n_in``, ``n_out``, ``precision`` ("fp32" | "bf16" | "int8"), ``sparse`` (bool),
``input`` ("dense" | "csr"), ``has_bias``; ``memory_usage()`` bytes held.

``forward(x, activation="identity") -> (n, n_out) float32``
    x dense float32 (n, n_in), finite. Any layer (a csr layer treats x's rows as dense histories).
``forward_csr(indptr, indices, data=None, activation="identity") -> (n_rows, n_out) float32``
    a CSR input: indptr int64 (n_rows + 1,), indices int32 (ids in [0, n_in)), data float32 or
    None (all ones). Only layers packed with input="csr" (ValueError otherwise).
``topk(x, k, exclude_indptr=None, exclude_indices=None) -> (ids int32, scores float32)``
    input="dense" layers only (ValueError otherwise): the best ``min(k, n_out)`` outputs of the
    pre-activation ``x @ W + b`` per row, descending, ties by lower id, excluded ids never
    returned, rows short of candidates padded with -1 / -inf (the conventions of ``select_topk``
    and ``TopkIndex``). The exclusion CSR: indptr int64 (n + 1,), indices int32 in
    [0, n_out) (IndexError otherwise), any order, duplicates allowed. The (n, n_out) score
    matrix is never formed (blocks of rows). The scores returned are the compressed layer's
    own (there is no fp32 copy to re-score with).

Activations: the names of :mod:`aerec.nn.spec` (identity, relu, sigmoid, tanh, elu, selu).

Implementation notes (for aerec.compress)
-----------------------------------------
- The C++ backend runs dense layers (input="dense", not sparse) on the TopK tile kernels: a
  ``TopkIndex`` over the output channels built straight from the packed int8 / bf16 values
  (``rescore=0``: no fp32 copy; fp32 layers keep their fp32 panels). ``topk`` is that index's
  search (threshold-filtered tiles, exclusion in the scan); ``forward`` its ``score_rows``. int8 on
  AVX2 uses the existing sign-extend-to-int16 ``vpmaddwd`` tile (not ``vpmaddubsw``: its u8 x s8
  pair sums saturate at int16, and the tiles are bit-identical to the scalar one), VNNI
  ``vpdpbusd`` at the avx512 level; bf16 uses ``vdpbf16ps`` with AVX512-BF16, else bf16 storage
  with fp32 FMA.
- Sparse layers and csr-input layers keep float32 activations (no activation quantisation): the
  stored values are widened on the fly. Binary histories over int8 rows sum small integers in
  float32, which is exact below 2^24, so no separate int32 path is needed.
- ``forward`` also accepts csr-input layers (dense rows are read as histories); ``forward_csr``
  and ``topk`` are orientation-specific (ValueError otherwise).
- ``aerec.search.TopK(..., precision="int8"|"bf16", rescore=0)`` is the same no-fp32-copy mode
  for a stand-alone index (scores are the compressed ones; ``export_items`` dequantises).

Maths (what "agree" means: ids identical wherever scores are not tied, values equal to float32
rounding of the accumulation order; int8 dense is exact up to the float32 epilogue)
------------------------------------------------------------------------------------------------
Let ``z = x @ W + b`` be the pre-activation; ``y = act(z)`` computed in float32.

- fp32 dense: ``z = x @ W + b`` (float32 inputs; the reference accumulates in float64).
- bf16 dense: both operands in bf16: ``z = bf16(x) @ bf16(W) + b`` with fp32 (reference:
  float64) accumulation. This is the TopK index's bf16 scoring (and what ``vdpbf16ps`` computes).
- int8 dense: weights ``q[j, i]`` with per-output scale ``s_j``; activations quantised per row
  to 7 bits, ``xq = clip(rint(x / t), -63, 63)``, ``t = max|x_row| / 63`` (1 for a zero row);
  weights stay 8-bit. Integer accumulation ``acc = xq @ q.T`` (exact int32; the kernels feed
  u8 = xq + 64, at most 127, and subtract the per-output correction ``64 * sum_i q[j, i]``; 7-bit
  activations keep AVX2's vpmaddubsw pair sums below 2 x 127 x 128 < 2^15, so the scalar, AVX2,
  AVX-512 and VNNI kernels all compute the same bits), then the epilogue in float32
  ``z = float32(acc) * (s_j * t) + b_j``: exactly the TopK int8 tile.
- sparse (any precision): activations stay float32; ``acc_j = sum_{i in nz(j)} w_ij x_i`` over
  the stored values (bf16 values widened, int8 values as integers), then ``z = acc * s_j + b_j``
  (int8) or ``z = acc + b_j``.
- csr-input layers (forward_csr, and forward on them): activations stay float32;
  ``acc = x @ Wv`` with ``Wv`` the stored values (bf16 widened, int8 as integers), then
  ``z = acc * s + b`` (int8) or ``acc + b``. A binary history over int8 rows sums integers
  exactly.
"""
from __future__ import annotations

import numpy as np

from .._validation import check_k  # noqa: F401  (cpp.py takes it from here too)
from ._numpy_topk import _BLOCK_ELEMS, bf16_round, query_rows, select_topk
from ._quant import bf16_to_float, layer_info, layer_nbytes

__all__ = ["CompressedLinear", "ACTIVATIONS", "check_activation"]

ACTIVATIONS = ("identity", "relu", "sigmoid", "tanh", "elu", "selu")


def check_activation(activation):
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; use one of {', '.join(ACTIVATIONS)}")
    return activation


def _activate(name, z):
    from .numpy_ import _activate as act
    return act(name, z)


def check_dense_input(x, n_in):
    x = np.asarray(x)
    if x.dtype != np.float32:
        raise TypeError(f"x must be float32, got {x.dtype}; convert it with x.astype(np.float32)")
    if x.ndim != 2 or x.shape[1] != n_in:
        raise ValueError(f"x must be (n, {n_in}) (one column per layer input), got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("x must be finite (found NaN or inf)")
    return np.ascontiguousarray(x)


def check_csr_input(indptr, indices, data, n_in):
    indptr = np.asarray(indptr)
    indices = np.asarray(indices)
    if indptr.dtype != np.int64:
        raise TypeError(f"indptr must be int64, got {indptr.dtype}; use np.asarray(indptr, dtype=np.int64)")
    if indices.dtype != np.int32:
        raise TypeError(f"indices must be int32, got {indices.dtype}; use np.asarray(indices, dtype=np.int32)")
    if indptr.ndim != 1 or indptr.shape[0] < 1:
        raise ValueError("indptr must be 1-D with n_rows + 1 >= 1 entries")
    if indices.ndim != 1:
        raise ValueError("indices must be 1-D")
    nnz = indices.shape[0]
    if indptr[0] != 0 or indptr[-1] != nnz or (np.diff(indptr) < 0).any():
        raise ValueError(f"indptr must start at 0, be non-decreasing and end at len(indices) = {nnz}")
    if nnz and (indices.min() < 0 or indices.max() >= n_in):
        bad = indices[(indices < 0) | (indices >= n_in)][0]
        raise IndexError(f"input id {int(bad)} is outside [0, {n_in}) (the layer has {n_in} inputs)")
    if data is not None:
        data = np.asarray(data)
        if data.dtype != np.float32:
            raise TypeError(f"data must be float32, got {data.dtype}")
        if data.shape != (nnz,):
            raise ValueError(f"data must have one value per index ({nnz}), got shape {data.shape}")
        if not np.isfinite(data).all():
            raise ValueError("data must be finite (found NaN or inf)")
    return indptr, indices, data


def check_exclusion(indptr, indices, n, n_out):
    if indptr is None and indices is None:
        return None, None
    if indptr is None or indices is None:
        raise TypeError("exclude_indptr and exclude_indices go together: pass both or neither")
    indptr = np.asarray(indptr)
    indices = np.asarray(indices)
    if indptr.dtype != np.int64 or indices.dtype != np.int32:
        raise TypeError("the exclusion CSR needs int64 exclude_indptr and int32 exclude_indices, got "
                        f"{indptr.dtype} / {indices.dtype}")
    if indptr.shape != (n + 1,):
        raise ValueError(f"exclude_indptr must have n + 1 = {n + 1} entries (one row per input row), "
                         f"got shape {indptr.shape}")
    if indices.ndim != 1 or indptr[0] != 0 or indptr[-1] != indices.shape[0] or (np.diff(indptr) < 0).any():
        raise ValueError("exclude_indptr must start at 0, be non-decreasing and end at len(exclude_indices)")
    if indices.size and (indices.min() < 0 or indices.max() >= n_out):
        bad = indices[(indices < 0) | (indices >= n_out)][0]
        raise IndexError(f"excluded id {int(bad)} is out of range [0, {n_out})")
    return indptr, indices


def check_orientation(layer_input, wanted, method):
    """``method`` needs a layer packed with ``input=wanted`` (forward_csr: "csr", topk: "dense")."""
    if layer_input == wanted:
        return
    if method in ("forward_csr", "topk_csr"):
        raise ValueError(f"{method} needs a layer packed with input='csr' (rows by input); this "
                         "layer was packed with input='dense': call forward(x) with dense rows, or "
                         "re-pack it with pack_layer(..., input='csr')")
    raise ValueError("topk needs a layer packed with input='dense' (an output layer fed dense "
                     "activations); this layer was packed with input='csr'")


class CompressedLinear:
    """One packed linear layer (NumPy reference). See the module docstring for the contract.

    Parameters
    ----------
    arrays : dict[str, ndarray]
        from :func:`aerec.backends._quant.pack_layer`.
    num_threads : int
        ignored (the reference is single-threaded NumPy).
    """

    def __init__(self, arrays, num_threads=0):
        (self.n_in, self.n_out, self.precision, self.sparse, self.input,
         self.has_bias) = layer_info(arrays)
        self._a = {k: v for k, v in arrays.items()}
        self._b = arrays["b"] if self.has_bias else None
        self._scale = arrays.get("scale")

    def memory_usage(self):
        """Bytes of the packed arrays the layer holds."""
        return layer_nbytes(self._a)

    # -- the values the kernels multiply with, float64, in the orientation (n_in, out-block) --
    def _values_f64(self, j0, j1):
        """Stored weight values of outputs [j0, j1) as float64 (n_in, j1 - j0): bf16 widened,
        int8 as integers (scale not applied)."""
        a = self._a
        if not self.sparse:
            v = a["W"][j0:j1].T if self.input == "dense" else a["W"][:, j0:j1]
            return (bf16_to_float(v) if self.precision == "bf16" else v).astype(np.float64)
        out = np.zeros((self.n_in, j1 - j0))
        ptr, ind, data = a["indptr"], a["indices"].astype(np.int64), a["data"]
        vals = bf16_to_float(data) if self.precision == "bf16" else data
        if self.input == "dense":
            lo, hi = ptr[j0], ptr[j1]
            col = np.repeat(np.arange(j1 - j0), np.diff(ptr[j0:j1 + 1]))
            out[ind[lo:hi], col] = vals[lo:hi]
        else:
            row = np.repeat(np.arange(self.n_in), np.diff(ptr))
            sel = (ind >= j0) & (ind < j1)
            out[row[sel], ind[sel] - j0] = vals[sel]
        return out

    def _preact(self, x, j0=0, j1=None):
        """float32 pre-activation of dense float32 rows x for outputs [j0, j1)."""
        j1 = self.n_out if j1 is None else j1
        V = self._values_f64(j0, j1)
        b = None if self._b is None else self._b[j0:j1]
        quantised_acts = self.input == "dense" and not self.sparse and self.precision != "fp32"
        if quantised_acts and self.precision == "int8":
            xq, xs = query_rows(x)
            acc = (xq.astype(np.float64) @ V).astype(np.float32)
            z = acc * (self._scale[None, j0:j1] * xs[:, None])
            return z if b is None else z + b
        xv = bf16_round(x) if quantised_acts else x
        acc = xv.astype(np.float64) @ V
        if self.precision == "int8":  # sparse / csr int8: integer values, scale after
            z = acc.astype(np.float32) * self._scale[None, j0:j1]
            return z if b is None else z + b
        if b is not None:
            if quantised_acts:  # bf16 dense: bias added in the accumulator (as the TopK tile)
                return (acc + b.astype(np.float64)).astype(np.float32)
            return acc.astype(np.float32) + b
        return acc.astype(np.float32)

    def _rows_per_block(self):
        return max(1, _BLOCK_ELEMS // max(self.n_out, 1))

    def forward(self, x, activation="identity"):
        """``act(x @ W + b)`` for dense float32 x (n, n_in) -> (n, n_out) float32."""
        check_activation(activation)
        x = check_dense_input(x, self.n_in)
        out = np.empty((x.shape[0], self.n_out), np.float32)
        step = self._rows_per_block()
        for r0 in range(0, x.shape[0], step):
            out[r0:r0 + step] = _activate(activation, self._preact(x[r0:r0 + step]))
        return out

    def forward_csr(self, indptr, indices, data=None, activation="identity"):
        """``act(X @ W + b)`` for a CSR input X (n_rows, n_in) -> (n_rows, n_out) float32."""
        check_orientation(self.input, "csr", "forward_csr")
        check_activation(activation)
        indptr, indices, data = check_csr_input(indptr, indices, data, self.n_in)
        n = indptr.shape[0] - 1
        out = np.empty((n, self.n_out), np.float32)
        step = self._rows_per_block()
        for r0 in range(0, n, step):
            r1 = min(n, r0 + step)
            xd = np.zeros((r1 - r0, self.n_in), np.float32)
            a, b = indptr[r0], indptr[r1]
            rows = np.repeat(np.arange(r1 - r0), np.diff(indptr[r0:r1 + 1]))
            np.add.at(xd, (rows, indices[a:b]), 1.0 if data is None else data[a:b])
            out[r0:r1] = _activate(activation, self._preact(xd))
        return out

    def topk_csr(self, indptr, indices, data=None, k=10, exclude_indptr=None, exclude_indices=None):
        """Best ``min(k, n_out)`` outputs of ``X @ W + b`` per row of a CSR input X (csr-input
        layers; EASE's recommend on a pruned B): ``select_topk(forward_csr(X), k, exclude)``, which
        the compiled backends fuse (one row's scores at a time, no n x n_out matrix)."""
        check_orientation(self.input, "csr", "topk_csr")
        k = check_k(k)
        indptr, indices, data = check_csr_input(indptr, indices, data, self.n_in)
        n = indptr.shape[0] - 1
        ep, ei = check_exclusion(exclude_indptr, exclude_indices, n, self.n_out)
        scores = self.forward_csr(indptr, indices, data)
        ex = None
        if ep is not None:
            import scipy.sparse as sp
            ex = sp.csr_matrix((np.ones(ei.shape[0], np.float32), ei, ep), shape=(n, self.n_out))
        return select_topk(scores, min(k, self.n_out), exclude=ex)

    def topk(self, x, k, exclude_indptr=None, exclude_indices=None):
        """Best ``min(k, n_out)`` outputs of ``x @ W + b`` per row (ids int32, scores float32)."""
        check_orientation(self.input, "dense", "topk")
        k = check_k(k)
        x = check_dense_input(x, self.n_in)
        n = x.shape[0]
        ep, ei = check_exclusion(exclude_indptr, exclude_indices, n, self.n_out)
        kk = min(k, self.n_out)
        ids = np.empty((n, kk), np.int32)
        scores = np.empty((n, kk), np.float32)
        step = self._rows_per_block()
        for r0 in range(0, n, step):
            r1 = min(n, r0 + step)
            ex = None
            if ep is not None:
                import scipy.sparse as sp
                a, b = ep[r0], ep[r1]
                ex = sp.csr_matrix((np.ones(b - a, np.float32), ei[a:b], ep[r0:r1 + 1] - a),
                                   shape=(r1 - r0, self.n_out))
            ids[r0:r1], scores[r0:r1] = select_topk(self._preact(x[r0:r1]), kk, exclude=ex)
        return ids, scores

"""C++ backend: aerec._core (OpenMP/SIMD kernels)."""
from __future__ import annotations

NAME = "cpp"

try:
    from .. import _core
    _IMPORT_ERROR = None
except ImportError as exc:  # the extension was not built
    _core = None
    _IMPORT_ERROR = f"compiled module aerec._core not found ({exc}); reinstall with `pip install .`"


def unavailable_reason():
    return _IMPORT_ERROR


if _core is not None:  # aerec.set_num_threads called before this backend was first loaded
    from .._config import _pending_threads
    if _pending_threads() > 0:
        _core.set_num_threads(_pending_threads())


import numpy as _np

def _operand(a, name):
    """scipy.sparse input -> _core.CsrMatrix (indptr int64, indices int32: one explicit conversion);
    anything else goes to C++ as is (which rejects a wrong dtype with TypeError)."""
    if not type(a).__module__.startswith("scipy.sparse"):  # no scipy import for dense use
        return a
    import scipy.sparse as sp
    if not sp.issparse(a):
        return a
    if a.dtype != _np.float32:
        raise TypeError(f"{name} must have dtype float32, got {a.dtype}; convert it with x.astype(np.float32)")
    a = a.tocsr()
    return _core.CsrMatrix(_np.ascontiguousarray(a.indptr, dtype=_np.int64),
                           _np.ascontiguousarray(a.indices, dtype=_np.int32),
                           _np.ascontiguousarray(a.data), a.shape[0], a.shape[1])


def _operands(x, y):
    xo = _operand(x, "x")
    return xo, (xo if y is x else _operand(y, "y"))


def _as_f32(a):
    """Parameters / optimizer state may arrive in any float dtype: one explicit conversion here."""
    return _np.ascontiguousarray(a, dtype=_np.float32)


class Network:
    """The network engine in C++ (``aerec._core.Network``), built from an :mod:`aerec.nn.spec` spec.

    Same interface and numbers (to float32 rounding) as ``aerec.backends.numpy_.Network``, the
    same random streams. x, y, mask must be 2-D float32 with a contiguous last dimension
    (TypeError for another dtype, ValueError for a bad shape); x and y may also be scipy.sparse
    float32 CSR matrices (the same CSR as x and y for Mult-* / CDAE). ``train_epoch`` runs the
    whole epoch in C++ with the GIL released.
    """

    def __init__(self, spec, params):
        if _core is None:
            raise RuntimeError(_IMPORT_ERROR)
        from ..nn.spec import make_spec
        self.spec = make_spec(**spec)
        self._net = _core.Network(self.spec, [_as_f32(p) for p in params])
        self.n_layers = self._net.n_layers

    @property
    def step(self):
        return self._net.step

    @step.setter
    def step(self, value):
        if isinstance(value, bool) or not isinstance(value, (int, _np.integer)):
            raise TypeError(f"step must be an int, got {type(value).__name__}")
        if value < 0:
            raise ValueError(f"step must be >= 0, got {value}")
        self._net.step = int(value)

    @property
    def beta(self):
        """KL weight at the current step (variational bottleneck)."""
        return self._net.beta

    def get_params(self):
        return self._net.get_params()

    def set_params(self, params):
        self._net.set_params([_as_f32(p) for p in params])

    def get_optimizer_state(self):
        return self._net.get_optimizer_state()

    def set_masks(self, masks):
        """Pruning masks (see ``aerec.nn.spec``): one bool / uint8 array per weight matrix (True =
        kept) or None; None drops them all. The fused optimizer kernels skip the pruned weights."""
        from ..nn.spec import check_masks
        self._net.set_masks(check_masks(self.spec, masks))

    def get_masks(self):
        return self._net.get_masks()

    def set_optimizer_state(self, state):
        d = {k: (v if k == "step" else _as_f32(v)) for k, v in dict(state).items()}
        self._net.set_optimizer_state(d)

    def timings(self):
        """Seconds per training phase since :meth:`reset_timings`, batches and GEMM flops."""
        return dict(self._net.timings())

    def reset_timings(self):
        self._net.reset_timings()

    def hidden(self, x, layer, batch_size=4096, users=None):
        if isinstance(layer, bool) or not isinstance(layer, (int, _np.integer)):
            raise TypeError(f"layer must be an int, got {type(layer).__name__}")
        return self._net.hidden(_operand(x, "x"), int(layer), batch_size, users)

    def forward(self, x, batch_size=4096, users=None):
        return self.hidden(x, self.n_layers - 1, batch_size, users)

    def encode(self, x, batch_size=4096, users=None):
        return self.hidden(x, self.spec["encoder_depth"] - 1, batch_size, users)

    def loss(self, x, y, mask=None, batch_size=4096, users=None):
        return self._net.loss(*_operands(x, y), mask, batch_size, users)

    def gradients(self, x, y, mask=None, training=False, users=None, rows=None, out=None, w0_rows=None):
        if rows is not None:
            from .numpy_ import _check_rows
            rows = _np.ascontiguousarray(_check_rows(rows, x.shape[0]))
        if w0_rows is not None:
            from .numpy_ import _check_w0_flags
            _check_w0_flags(w0_rows, out, self.spec["layer_sizes"][0])
            if rows is None:
                rows = _np.arange(x.shape[0], dtype=_np.int64)
        if out is not None:
            from .numpy_ import _flat_views
            from ..nn.spec import param_shapes
            views = _flat_views(out, param_shapes(self.spec), _np.float32)
            return self._net.gradients_into(*_operands(x, y), rows, out, mask, bool(training), users,
                                            w0_rows), views
        if rows is None:
            return self._net.gradients(*_operands(x, y), mask, bool(training), users)
        return self._net.gradients_rows(*_operands(x, y), rows, mask, bool(training), users)

    @property
    def n_params(self):
        return int(self._net.n_params)

    def bind_params(self, buf, copy=True):
        from .numpy_ import _check_bind_buffer
        _check_bind_buffer(buf, self.n_params, _np.float32)
        self._net.bind_params(buf, bool(copy))

    def unbind_params(self):
        self._net.unbind_params()

    @property
    def params_bound(self):
        return bool(self._net.params_bound)

    def apply_gradient_sum(self, parts, scales, rows0=None, user_rows=None, flat_range=None, w0_rows=None):
        from .numpy_ import _check_gradient_sum, _check_ids, _check_flat_range
        parts, scales, w0_rows = _check_gradient_sum(parts, scales, w0_rows, self.n_params, self.spec, _np.float32)
        lazy = self.spec["lazy"]
        r0 = _check_ids(rows0, self.spec["layer_sizes"][0], "rows0").astype(_np.int32) if lazy else None
        ur = (_check_ids(user_rows, self.spec["n_users"], "user_rows").astype(_np.int32)
              if lazy and self.spec["n_users"] else None)
        lo, hi = _check_flat_range(flat_range, self.n_params)
        self._net.apply_gradient_sum(parts, scales, w0_rows, r0, ur, lo, hi)

    def get_params_flat(self, lo, hi, out=None):
        from .numpy_ import _check_flat_range, _check_flat_out
        lo, hi = _check_flat_range((lo, hi), self.n_params)
        if out is not None:
            _check_flat_out(out, hi - lo)
        return self._net.get_params_flat(lo, hi, out)

    def set_params_flat(self, lo, values):
        from .numpy_ import _check_flat_range
        if not isinstance(values, _np.ndarray) or values.ndim != 1 or values.dtype != _np.float32:
            raise TypeError("values must be a 1-D numpy float32 array")
        lo, _ = _check_flat_range((lo, lo + values.size), self.n_params)
        self._net.set_params_flat(lo, _np.ascontiguousarray(values))

    def apply_gradients(self, grads, rows0=None, user_rows=None, flat_range=None):
        from .numpy_ import _check_grads, _check_ids, _check_flat_range
        from ..nn.spec import param_shapes, tensor_names
        shapes = param_shapes(self.spec)
        if isinstance(grads, _np.ndarray) and grads.ndim == 1:
            _check_grads(grads, shapes, tensor_names(self.spec), _np.float32)  # validates; read in place
        else:
            grads = _check_grads(grads, shapes, tensor_names(self.spec), _np.float32)
        lazy = self.spec["lazy"]
        r0 = _check_ids(rows0, self.spec["layer_sizes"][0], "rows0").astype(_np.int32) if lazy else None
        ur = (_check_ids(user_rows, self.spec["n_users"], "user_rows").astype(_np.int32)
              if lazy and self.spec["n_users"] else None)
        lo, hi = _check_flat_range(flat_range, self.n_params)
        self._net.apply_gradients(grads, r0, ur, lo, hi)

    def train_batch(self, x, y, mask=None, users=None):
        return self._net.train_batch(*_operands(x, y), mask, users)

    def train_epoch(self, x, y, mask=None, batch_size=32, shuffle=True, seed=0, users=None):
        return self._net.train_epoch(*_operands(x, y), mask, batch_size, bool(shuffle), int(seed), users)


# --- GEMM with fused bias + activation ------------------------------------------------------------


_F32 = _np.dtype(_np.float32)


def _gemm_matrix(x, name):
    """float32, 2-D, contiguous last dimension (row strides kept); converts at most once."""
    if type(x) is not _np.ndarray or x.dtype is not _F32:
        x = _np.asarray(x, dtype=_np.float32)
    if x.ndim != 2:
        raise ValueError(f"gemm: {name} must be 2-D, got shape {x.shape}")
    if not x.flags.c_contiguous:
        rows, cols = x.shape
        s0, s1 = x.strides
        if (cols > 1 and s1 != 4) or (rows > 1 and (s0 < 4 * cols or s0 % 4)):
            x = _np.ascontiguousarray(x)
    return x


def gemm(a, b, *, trans_a=False, trans_b=False, bias=None, activation="identity", alpha=1.0,
         num_threads=None):
    """``act(alpha * op(a) @ op(b) + bias)`` with aerec's packed SIMD GEMM (float32).

    Parameters
    ----------
    a : array_like, shape (M, K), or (K, M) with ``trans_a``
    b : array_like, shape (K, N), or (N, K) with ``trans_b``
    bias : array_like, shape (N,), optional
    activation : {"identity", "relu", "sigmoid", "tanh", "elu", "selu"}
    alpha : float
    num_threads : int, optional (None or 0: aerec's default)

    Returns
    -------
    ndarray, shape (M, N), float32
    """
    from .._validation import check_gemm_args
    alpha, num_threads = check_gemm_args(a, b, trans_a, trans_b, alpha, num_threads)
    # Fast path (the training loop's case) inline: already float32, 2-D, C-contiguous.
    if not (type(a) is _np.ndarray and a.dtype is _F32 and a.ndim == 2 and a.flags.c_contiguous):
        a = _gemm_matrix(a, "a")
    if not (type(b) is _np.ndarray and b.dtype is _F32 and b.ndim == 2 and b.flags.c_contiguous):
        b = _gemm_matrix(b, "b")
    if bias is not None and (type(bias) is not _np.ndarray or bias.dtype is not _F32
                             or not bias.flags.c_contiguous):
        bias = _np.ascontiguousarray(bias, dtype=_np.float32)
    return _core.gemm(a, b, bool(trans_a), bool(trans_b), bias, activation, alpha, 0.0, None, num_threads)


# --- Top-k selection over dense score rows ---------------------------------------------------------

def select_topk(scores, k, exclude=None, candidates=None, num_threads=0):
    """Top-min(k, m) per row of ``scores`` (n, m), excluding ``exclude`` (scipy.sparse, n x m) and
    any item outside ``candidates``; same contract as ``backends.numpy_.select_topk`` (descending,
    ties by lower id, NaN / -inf never returned, padding id -1 / score -inf)."""
    k_eff = min(k, scores.shape[1])
    s = _np.ascontiguousarray(scores, dtype=_np.float32)
    if candidates is not None:
        keep = _np.zeros(s.shape[1], bool)
        keep[candidates] = True
        s = _np.where(keep[None, :], s, _np.float32(-_np.inf))
    if exclude is not None and exclude.nnz:
        return _core.select_topk_rows(s, k_eff, exclude.indptr.astype(_np.int64, copy=False),
                                      exclude.indices.astype(_np.int32, copy=False), num_threads)
    return _core.select_topk_rows(s, k_eff, None, None, num_threads)


# --- TopK index: the compiled class itself (aerec.search.TopK validates and converts) ---------------
TopkIndex = _core.TopkIndex if _core is not None else None


# --- EASE: Gram matrix and panelled SpMM -------------------------------------------------------------

def gram_upper(X, dtype="float32", num_threads=0):
    """Upper triangle (j >= i) of ``X^T X`` for a CSR X (n_rows, n): (n, n) C-contiguous ``dtype``
    (float32 / float64); the strict lower triangle is left unset."""
    dt = _np.dtype(dtype)
    n = X.shape[1]
    G = _np.empty((n, n), dtype=dt)
    csc = X.tocsc()
    csc.sort_indices()
    _core.gram_upper(X.indptr.astype(_np.int64, copy=False), X.indices.astype(_np.int32, copy=False),
                     X.data.astype(_np.float32, copy=False), csc.indptr.astype(_np.int64, copy=False),
                     csc.indices.astype(_np.int32, copy=False), G, num_threads)
    return G


def top_magnitude_csr(B, k, num_threads=0):
    """The k largest off-diagonal |B_ij| as CSR rows (the rule: :func:`aerec.backends.numpy_.top_magnitude_csr`):
    a 16-bit histogram of the bit patterns of |B| finds the threshold's bin, one pass counts each row's
    entries above it and copies out the bin's (the exact threshold and the row counts follow), one
    pass writes the kept entries; no copy of B (cpp/src/gram.cpp)."""
    from .numpy_ import _check_top_magnitude
    _, k = _check_top_magnitude(B, k)
    return _core.top_magnitude_csr(_np.ascontiguousarray(B), k, num_threads)


def spmm(X, W, num_threads=0):
    """``X @ W`` for a CSR X (n_rows, n) and a dense float32 W (n, c): (n_rows, c) float32.

    Gather-sum of W's rows per CSR row (scipy's csr @ dense is single-threaded), one column panel
    of W at a time: a 384-column panel of a 20k-row W is ~30 MB and stays in the last-level cache
    while every row reads it, instead of streaming |row| full rows of W from DRAM per row
    (measured 1.7x faster for EASE at 20,108 items)."""
    ip = X.indptr.astype(_np.int64, copy=False)
    ix = X.indices.astype(_np.int32, copy=False)
    d = X.data.astype(_np.float32, copy=False)
    n = W.shape[1]
    out = _np.empty((X.shape[0], n), _np.float32)
    step = 384
    for s in range(0, n, step):
        _core.spmm_csr(ip, ix, d, W[:, s:s + step], num_threads, out[:, s:s + step])
    return out


# --- Compressed linear layers (int8 / bf16 / sparse) --------------------------------------------------

class CompressedLinear:
    """One packed linear layer in C++ (``aerec._core.CompressedLinear``): the contract and maths of
    ``aerec.backends._compressed`` (the NumPy reference). Built from
    :func:`aerec.backends._quant.pack_layer`'s dict (validated first; the C++ object copies the packed
    arrays and keeps no fp32 copy unless the layer is fp32). Dense layers run on the TopK tile kernels
    (int8: AVX-512 VNNI / AVX2 / portable, bf16: AVX512-BF16 / FMA / portable); sparse and csr-input
    layers on the qlinear kernels (scalar / AVX2 / AVX-512). Every call releases the GIL;
    concurrent calls are safe."""

    def __init__(self, arrays, num_threads=0):
        from ._quant import layer_info
        (self.n_in, self.n_out, self.precision, self.sparse, self.input,
         self.has_bias) = layer_info(arrays)
        self._nt = int(num_threads or 0)
        g = arrays.get
        self._L = _core.CompressedLinear(arrays["meta"], g("W"), g("b"), g("scale"), g("indptr"),
                                         g("indices"), g("data"), self._nt)

    def memory_usage(self):
        """Bytes held by the compiled layer."""
        return int(self._L.memory_usage())

    def forward(self, x, activation="identity"):
        from ._compressed import check_activation, check_dense_input
        check_activation(activation)
        return self._L.forward(check_dense_input(x, self.n_in), activation, self._nt)

    def forward_csr(self, indptr, indices, data=None, activation="identity"):
        from ._compressed import check_activation, check_csr_input, check_orientation
        check_orientation(self.input, "csr", "forward_csr")
        check_activation(activation)
        indptr, indices, data = check_csr_input(indptr, indices, data, self.n_in)
        return self._L.forward_csr(_np.ascontiguousarray(indptr), _np.ascontiguousarray(indices),
                                   None if data is None else _np.ascontiguousarray(data), activation, self._nt)

    def topk_csr(self, indptr, indices, data=None, k=10, exclude_indptr=None, exclude_indices=None):
        from ._compressed import check_csr_input, check_exclusion, check_k, check_orientation
        check_orientation(self.input, "csr", "topk_csr")
        k = check_k(k)
        indptr, indices, data = check_csr_input(indptr, indices, data, self.n_in)
        ep, ei = check_exclusion(exclude_indptr, exclude_indices, indptr.shape[0] - 1, self.n_out)
        if ep is not None:
            ep, ei = _np.ascontiguousarray(ep), _np.ascontiguousarray(ei)
        return self._L.topk_csr(_np.ascontiguousarray(indptr), _np.ascontiguousarray(indices),
                                None if data is None else _np.ascontiguousarray(data), k, ep, ei, self._nt)

    def topk(self, x, k, exclude_indptr=None, exclude_indices=None):
        from ._compressed import check_dense_input, check_exclusion, check_k, check_orientation
        check_orientation(self.input, "dense", "topk")
        k = check_k(k)
        x = check_dense_input(x, self.n_in)
        ep, ei = check_exclusion(exclude_indptr, exclude_indices, x.shape[0], self.n_out)
        if ep is not None:
            ep, ei = _np.ascontiguousarray(ep), _np.ascontiguousarray(ei)
        return self._L.topk(x, k, ep, ei, self._nt)

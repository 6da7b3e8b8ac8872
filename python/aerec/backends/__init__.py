"""Compute backends. All implement one interface; ``numpy_`` is the reference oracle.

Interface of a backend module:

``NAME``
    its registry name.
``unavailable_reason() -> str | None``
    None when it can run here.
``gemm(a, b, *, trans_a=False, trans_b=False, bias=None, activation="identity", alpha=1.0,
       num_threads=None) -> ndarray``
    ``act(alpha * op(a) @ op(b) + bias)`` in float32.
``Network(spec, params)``
    the one trainable autoencoder network (every model's), built from a spec dict of
    :func:`aerec.nn.spec.make_spec` (the maths and random streams are stated there). Interface:
    ``spec``, ``n_layers``, ``step`` (get and set), ``beta``, ``get_params`` / ``set_params``,
    ``get_optimizer_state`` / ``set_optimizer_state`` (keys ``step``, ``m_W0``, ``v_W0``, ... or
    ``velocity_W0``, ...), ``set_masks(masks)`` / ``get_masks()`` (pruning: one bool / uint8 array
    per weight matrix, True = kept, None = dense, validated by :func:`aerec.nn.spec.check_masks`;
    setting zeroes the pruned weights and their optimizer state, every optimizer step then leaves
    them at exactly 0, and ``set_params`` / ``set_optimizer_state`` zero them again; ``get_masks``
    returns bool copies, None where dense), ``forward(x, batch_size=4096, users=None)``, ``hidden(x, layer, ...)``,
    ``encode(x, ...)``, ``loss(x, y, mask=None, batch_size=4096, users=None)``,
    ``gradients(x, y, mask=None, training=False, users=None, rows=None, out=None, w0_rows=None)``
    (``w0_rows``: uint8 flags of W0's rows written, the others being ``l2 * W0[row]`` and possibly
    unwritten in ``out``),
    ``apply_gradients(grads, rows0=None, user_rows=None, flat_range=None)`` (``flat_range=(lo, hi)``
    moves only the parameters at those offsets of the flat parameter vector, exactly as the full
    step moves them), ``apply_gradient_sum(parts, scales, rows0=None, user_rows=None,
    flat_range=None, w0_rows=None)`` (the same step with the gradient ``sum_k scales[k] *
    parts[k]`` summed in order, W0's rows flagged 0 not read), ``n_params``,
    ``get_params_flat(lo, hi, out=None)`` / ``set_params_flat(lo, values)``
    (a block of the flat parameter vector: every tensor raveled, in order), ``bind_params(buf,
    copy=True)`` / ``unbind_params()`` / ``params_bound`` (the parameters kept in a caller's flat
    buffer, e.g. MPI shared memory, until unbound), ``train_batch(x, y, mask=None,
    users=None)``, ``train_epoch(x, y, mask=None, batch_size=32, shuffle=True, seed=0, users=None)``,
    ``timings()`` / ``reset_timings()``. x, y: dense float32 arrays or scipy.sparse CSR float32.
``select_topk(scores, k, exclude=None, candidates=None, num_threads=0) -> (ids, scores)``
    top-min(k, m) of each row of dense ``scores`` (n, m): ``exclude`` a scipy.sparse (n, m) whose
    stored entries are never returned, ``candidates`` a 1-D id array to rank only those. Rows
    sorted by descending score, ties by lower id; NaN and -inf never returned; padding id -1 /
    score -inf. ids int32, scores float32, shape (n, min(k, m)).
``TopkIndex(items, bias=None, precision="fp32", rescore=1.25, prune=False, num_threads=0)``
    the index behind :class:`aerec.search.TopK` (which validates, converts and normalises first):
    items (n, d) float32 C-contiguous and finite, bias (n,) float32 or None, precision
    "fp32" | "bf16" | "int8". Methods: ``search(queries, k, indptr=None, indices=None,
    num_threads=0) -> (ids, scores)`` with queries (m, d) float32 and the exclusion CSR as int64
    indptr (m + 1,) / int32 indices (ids in [0, n), any order, duplicates allowed), results
    (m, min(k, n)) int32 / float32 sorted by descending ``<q, x> + b``, ties by lower id, padded
    with -1 / -inf; ``memory_usage()``, ``export_items()`` (n, d), ``export_bias()`` (n,) or
    None; properties ``n_items``, ``dim``, ``precision``, ``rescore``, ``prune``. bf16 / int8 score
    every item through the shared quantisation (bf16 round-to-nearest-even; int8 symmetric per-row
    scales, max|x| / 127 for items, 7-bit max|q| / 63 for queries) and return the best ``ceil(k * rescore)`` candidates (``_numpy_topk.candidates``; rescore a
    number >= 1) re-scored in fp32 (``rescore=0``: no fp32 copy, the compressed scores are returned). Every backend returns the
    same ids wherever scores are not tied.
``CompressedLinear(arrays, num_threads=0)``
    one packed linear layer ``y = act(x @ W + b)`` (fp32 / bf16 / int8, dense or sparse) built from
    :func:`aerec.backends._quant.pack_layer`'s dict, keeping no fp32 copy unless the layer is fp32.
    Methods ``forward(x, activation="identity")``, ``forward_csr(indptr, indices, data=None,
    activation="identity")`` (layers packed with input="csr"), ``topk(x, k, exclude_indptr=None,
    exclude_indices=None)`` (layers packed with input="dense": fused output layer + top-k with the
    ``select_topk`` conventions), ``memory_usage()``; attributes ``n_in``, ``n_out``,
    ``precision``, ``sparse``, ``input``, ``has_bias``. The contract and the exact maths (int8:
    per-output-channel weight scales, dynamic per-row activation scales, exact integer
    accumulation) are in :mod:`aerec.backends._compressed`; the numba backend delegates to that
    reference.
``gram_upper(X, dtype="float32", num_threads=0) -> G``
    ``X^T X`` of a CSR X (n_rows, n) as a dense (n, n) C-contiguous float32 / float64 array; only
    its upper triangle (j >= i) is guaranteed (EASE factorises it in place).
``top_magnitude_csr(B, k, num_threads=0) -> (indptr, indices, data)``
    the ``k`` largest off-diagonal ``|B_ij|`` of a square float32 B as CSR rows (int64 / int32 /
    float32; EASE pruned to one global budget). Ties at the k-th value: the first in row-major
    order, none when it is 0; the diagonal never kept; non-finite off-diagonal entries: ValueError.
``spmm(X, W, num_threads=0) -> ndarray``
    ``X @ W`` for a CSR X (n_rows, n) and a dense float32 W (n, c) (a strided view is fine):
    (n_rows, c) float32 (EASE scoring).

Models and :class:`aerec.search.TopK` reach kernels only through these names, so a model or
index with ``backend="numpy"`` (or ``AEREC_BACKEND=numpy``) never imports ``aerec._core``; only
``backends/cpp.py`` imports it.

Use :func:`aerec.backends.get` to pick one.
"""
from .._backends import get, available, names, reasons, FallbackWarning, BackendUnavailableError

__all__ = ["get", "available", "names", "reasons", "FallbackWarning", "BackendUnavailableError"]

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
    ``velocity_W0``, ...), ``forward(x, batch_size=4096, users=None)``, ``hidden(x, layer, ...)``,
    ``encode(x, ...)``, ``loss(x, y, mask=None, batch_size=4096, users=None)``,
    ``gradients(x, y, mask=None, training=False, users=None, rows=None, out=None)``,
    ``apply_gradients(grads, rows0=None, user_rows=None, flat_range=None)`` (``flat_range=(lo, hi)``
    moves only the parameters at those offsets of the flat parameter vector, exactly as the full
    step moves them), ``n_params``, ``get_params_flat(lo, hi)`` / ``set_params_flat(lo, values)``
    (a block of the flat parameter vector: every tensor raveled, in order), ``train_batch(x, y, mask=None,
    users=None)``, ``train_epoch(x, y, mask=None, batch_size=32, shuffle=True, seed=0, users=None)``,
    ``timings()`` / ``reset_timings()``. x, y: dense float32 arrays or scipy.sparse CSR float32.
``select_topk(scores, k, exclude=None, candidates=None, num_threads=0) -> (ids, scores)``
    top-min(k, m) of each row of dense ``scores`` (n, m): ``exclude`` a scipy.sparse (n, m) whose
    stored entries are never returned, ``candidates`` a 1-D id array to rank only those. Rows
    sorted by descending score, ties by lower id; NaN and -inf never returned; padding id -1 /
    score -inf. ids int32, scores float32, shape (n, min(k, m)).
``TopkIndex(items, bias=None, precision="fp32", rescore=4, prune=False, num_threads=0)``
    the index behind :class:`aerec.search.TopK` (which validates, converts and normalises first):
    items (n, d) float32 C-contiguous and finite, bias (n,) float32 or None, precision
    "fp32" | "bf16" | "int8". Methods: ``search(queries, k, indptr=None, indices=None,
    num_threads=0) -> (ids, scores)`` with queries (m, d) float32 and the exclusion CSR as int64
    indptr (m + 1,) / int32 indices (ids in [0, n), any order, duplicates allowed), results
    (m, min(k, n)) int32 / float32 sorted by descending ``<q, x> + b``, ties by lower id, padded
    with -1 / -inf; ``memory_usage()``, ``export_items()`` (n, d), ``export_bias()`` (n,) or
    None; properties ``n_items``, ``dim``, ``precision``, ``rescore``, ``prune``. bf16 / int8 score
    every item through the shared quantisation (bf16 round-to-nearest-even; int8 symmetric per-row
    scales max|x| / 127) and return the best ``k * rescore`` candidates re-scored in fp32. Every
    backend returns the same ids wherever scores are not tied.
``gram_upper(X, dtype="float32", num_threads=0) -> G``
    ``X^T X`` of a CSR X (n_rows, n) as a dense (n, n) C-contiguous float32 / float64 array; only
    its upper triangle (j >= i) is guaranteed (EASE factorises it in place).
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

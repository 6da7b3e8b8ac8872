"""Packing of one linear layer ``y = act(x @ W + b)`` into compressed arrays (pure NumPy, shared by
every backend's ``CompressedLinear`` and by :mod:`aerec.compress`).

``pack_layer(W, b, precision, sparse, input)`` returns a ``dict[str, ndarray]`` with exact dtypes;
the dict alone describes the layer (``meta`` carries the header), so a model file stores it as is
(under a prefix of its choosing) and ``validate_layer`` / ``unpack_layer`` read it back.

Arrays (``W`` is (n_in, n_out) float32; pruned weights are exact zeros):

``meta`` int64 (8,)
    ``[FORMAT_VERSION, n_in, n_out, precision code (0 fp32, 1 bf16, 2 int8), sparse (0/1),
    input code (0 dense, 1 csr), has_bias (0/1), 0]``.
``b`` float32 (n_out,)
    only when a bias was given.
dense (``sparse=False``):
    ``W``: input="dense" (hidden layers, decoders) stores one row per output channel,
    (n_out, n_in); input="csr" (a first layer fed a user's sparse history) stores one row per
    input, (n_in, n_out), so a history gathers rows. dtype float32 (fp32), uint16 (bf16: the
    upper half of the float32 bits, round-to-nearest-even) or int8 (int8).
sparse (``sparse=True``):
    input="dense": CSC by output column, ``indptr`` int64 (n_out + 1,) and ``indices`` the input
    ids of each column's nonzeros (ascending); input="csr": CSR by input row, ``indptr`` int64
    (n_in + 1,) and ``indices`` the output ids of each row's nonzeros (ascending). ``indices`` is
    uint16 when the indexed dimension is < 65536, else int32. ``data``: float32 | bf16 bits
    uint16 | int8, one per nonzero of W (the stored pattern is ``W != 0``; an int8 value may
    round to 0 and stays stored).
``scale`` float32 (n_out,)
    int8 only: the symmetric per-output-channel scale ``max_i |W[i, j]| / 127`` (1 for an
    all-zero column); ``q = clip(rint(W / scale), -127, 127)``. This is exactly the TopK index's
    per-item int8 (``_numpy_topk.int8_rows`` of ``W.T``), and bf16 is its ``bf16_round``, so a
    decoder packed here and a TopK index over ``W.T`` quantise identically.
"""
from __future__ import annotations

import numpy as np

from ._numpy_topk import bf16_round, int8_rows

__all__ = ["FORMAT_VERSION", "PRECISIONS", "pack_layer", "pack_csr_rows", "unpack_layer", "validate_layer",
           "layer_nbytes", "layer_info", "bf16_bits", "bf16_to_float"]

FORMAT_VERSION = 1
PRECISIONS = ("fp32", "bf16", "int8")
_INPUTS = ("dense", "csr")
_WEIGHT_DTYPE = {"fp32": np.float32, "bf16": np.uint16, "int8": np.int8}


def bf16_bits(x):
    """bfloat16 bits (uint16) of float32 values, round-to-nearest-even (as the TopK index)."""
    return (bf16_round(x).view(np.uint32) >> np.uint32(16)).astype(np.uint16)


def bf16_to_float(bits):
    """float32 values of bfloat16 bits (uint16)."""
    return (np.asarray(bits, dtype=np.uint16).astype(np.uint32) << np.uint32(16)).view(np.float32)


def _index_dtype(n):
    return np.uint16 if n < 65536 else np.int32


def pack_layer(W, b=None, precision="fp32", sparse=False, input="dense"):
    """Pack one linear layer ``y = act(x @ W + b)`` into named arrays (see the module docstring).

    Parameters
    ----------
    W : (n_in, n_out) array
        the weights (read as float32; finite). Pruned weights are exact zeros.
    b : (n_out,) array or None
        the bias (read as float32; finite).
    precision : {"fp32", "bf16", "int8"}
    sparse : bool
        store only the nonzeros (CSC by output column for input="dense", CSR by input row for
        input="csr").
    input : {"dense", "csr"}
        how the layer is fed: dense activations (hidden layers, decoders; enables ``topk``) or
        a sparse history (first layers; ``forward_csr``).

    Returns
    -------
    dict[str, ndarray]
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if input not in _INPUTS:
        raise ValueError(f"input must be 'dense' or 'csr', got {input!r}")
    W = np.asarray(W)
    if W.ndim != 2 or W.shape[0] < 1 or W.shape[1] < 1:
        raise ValueError(f"W must be a non-empty 2-D (n_in, n_out) array, got shape {W.shape}")
    if not np.issubdtype(W.dtype, np.floating):
        raise TypeError(f"W must be a float array, got {W.dtype}")
    W = np.ascontiguousarray(W, dtype=np.float32)
    if not np.isfinite(W).all():
        raise ValueError("W must be finite (found NaN or inf)")
    n_in, n_out = W.shape
    if max(n_in, n_out) > np.iinfo(np.int32).max:
        raise ValueError("layers with more than 2^31-1 inputs or outputs are not supported")
    out = {}
    if b is not None:
        b = np.ascontiguousarray(b, dtype=np.float32)
        if b.shape != (n_out,):
            raise ValueError(f"b must have shape ({n_out},) (one per output), got {b.shape}")
        if not np.isfinite(b).all():
            raise ValueError("b must be finite (found NaN or inf)")
    out["meta"] = np.array([FORMAT_VERSION, n_in, n_out, PRECISIONS.index(precision), int(bool(sparse)),
                            _INPUTS.index(input), int(b is not None), 0], dtype=np.int64)
    if b is not None:
        out["b"] = b.copy()
    # values in the per-output-channel orientation (n_out, n_in)
    Wt = W.T
    if precision == "int8":
        q, scale = int8_rows(Wt)  # (n_out, n_in) int8, (n_out,) float32
        out["scale"] = scale
        vals = q
    elif precision == "bf16":
        vals = bf16_bits(Wt)
    else:
        vals = np.ascontiguousarray(Wt)
    if not sparse:
        out["W"] = np.ascontiguousarray(vals if input == "dense" else vals.T)
        return out
    if input == "dense":  # CSC by output column: rows of the (n_out, n_in) orientation
        nz = Wt != 0
        outer, inner = nz.nonzero()
        out["indptr"] = np.concatenate([[0], np.cumsum(nz.sum(axis=1))]).astype(np.int64)
        out["indices"] = inner.astype(_index_dtype(n_in))
        out["data"] = np.ascontiguousarray(vals[outer, inner])
    else:  # CSR by input row
        nz = W != 0
        outer, inner = nz.nonzero()
        out["indptr"] = np.concatenate([[0], np.cumsum(nz.sum(axis=1))]).astype(np.int64)
        out["indices"] = inner.astype(_index_dtype(n_out))
        out["data"] = np.ascontiguousarray(vals[inner, outer])
    return out


def pack_csr_rows(indptr, indices, data, n_out, precision="fp32"):
    """Pack a sparse first layer (``input="csr"``, no bias) straight from its CSR rows: the arrays
    ``pack_layer(W, None, precision, sparse=True, input="csr")`` gives for the dense ``W`` these
    rows describe, without building ``W`` (an EASE ``B`` of 20,000 items is 1.6 GB dense).

    Parameters
    ----------
    indptr : (n_in + 1,) int array, from 0, non-decreasing
    indices : (nnz,) int array
        output ids of each row's entries, ascending within a row, in ``[0, n_out)``.
    data : (nnz,) float array
        the entries (finite; zeros are dropped, as ``pack_layer`` stores ``W != 0``).
    n_out : int
    precision : {"fp32", "bf16", "int8"}
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    indptr = np.asarray(indptr, dtype=np.int64)
    indices = np.asarray(indices)
    data = np.asarray(data, dtype=np.float32)
    n_in, n_out = indptr.shape[0] - 1, int(n_out)
    if n_in < 1 or n_out < 1 or indptr[0] != 0 or (np.diff(indptr) < 0).any() or indptr[-1] != data.shape[0] \
            or indices.shape != data.shape:
        raise ValueError("indptr / indices / data are not a CSR matrix with at least one row and column")
    if indices.size and (indices.min() < 0 or indices.max() >= n_out):
        raise ValueError(f"indices must lie in [0, {n_out})")
    if not np.isfinite(data).all():
        raise ValueError("data must be finite (found NaN or inf)")
    nz = data != 0
    if not nz.all():
        counts = np.bincount(np.repeat(np.arange(n_in), np.diff(indptr))[nz], minlength=n_in)
        indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        indices, data = indices[nz], data[nz]
    out = {"meta": np.array([FORMAT_VERSION, n_in, n_out, PRECISIONS.index(precision), 1, _INPUTS.index("csr"), 0, 0],
                            dtype=np.int64),
           "indptr": indptr, "indices": indices.astype(_index_dtype(n_out))}
    if precision == "int8":  # per output column: max |W[:, j]| / 127 (1 for an empty column)
        amax = np.zeros(n_out, np.float32)
        np.maximum.at(amax, indices, np.abs(data))
        scale = np.where(amax > 0, amax / np.float32(127), np.float32(1.0)).astype(np.float32)
        out["scale"] = scale
        out["data"] = np.clip(np.rint(data / scale[indices]), -127, 127).astype(np.int8)
    elif precision == "bf16":
        out["data"] = bf16_bits(data)
    else:
        out["data"] = np.ascontiguousarray(data)
    return out


def layer_info(arrays):
    """``(n_in, n_out, precision, sparse, input, has_bias)`` of a packed layer (after validation)."""
    validate_layer(arrays)
    m = arrays["meta"]
    return (int(m[1]), int(m[2]), PRECISIONS[int(m[3])], bool(m[4]), _INPUTS[int(m[5])], bool(m[6]))


def _fail(name, why):
    raise ValueError(f"packed layer array {name!r} {why}; the layer is corrupt or mismatched "
                     f"(re-create it with aerec.backends._quant.pack_layer)")


def _need(arrays, name, dtype, shape):
    if name not in arrays:
        _fail(name, "is missing")
    a = arrays[name]
    if not isinstance(a, np.ndarray):
        _fail(name, f"must be a NumPy array, got {type(a).__name__}")
    if a.dtype != np.dtype(dtype):
        _fail(name, f"has dtype {a.dtype}, expected {np.dtype(dtype)}")
    if shape is not None and a.shape != tuple(shape):
        _fail(name, f"has shape {a.shape}, expected {tuple(shape)}")
    return a


def validate_layer(arrays):
    """Check a packed layer's arrays; raise ValueError naming the bad array.

    Checks the header (version, sizes, codes), every array's dtype and shape, that no array is
    unexpected, that sparse ``indptr`` starts at 0, is non-decreasing and ends at the nonzero
    count, that ``indices`` lie in range and strictly increase within each row (or column), and
    that scales and bias are finite (scales > 0).
    """
    if not isinstance(arrays, dict):
        raise TypeError(f"a packed layer is a dict of arrays, got {type(arrays).__name__}")
    meta = _need(arrays, "meta", np.int64, (8,))
    version, n_in, n_out, pc, sparse, ic, has_b, _ = (int(v) for v in meta)
    if version != FORMAT_VERSION:
        _fail("meta", f"has format version {version}; this aerec reads version {FORMAT_VERSION}")
    if n_in < 1 or n_out < 1 or max(n_in, n_out) > np.iinfo(np.int32).max:
        _fail("meta", f"has bad sizes n_in={n_in}, n_out={n_out}")
    if pc not in (0, 1, 2) or sparse not in (0, 1) or ic not in (0, 1) or has_b not in (0, 1):
        _fail("meta", "has an unknown precision / sparse / input / bias code")
    precision, inp = PRECISIONS[pc], _INPUTS[ic]
    wdt = _WEIGHT_DTYPE[precision]
    expected = {"meta"}
    if has_b:
        b = _need(arrays, "b", np.float32, (n_out,))
        if not np.isfinite(b).all():
            _fail("b", "has NaN or inf values")
        expected.add("b")
    if precision == "int8":
        s = _need(arrays, "scale", np.float32, (n_out,))
        if not (np.isfinite(s).all() and (s > 0).all()):
            _fail("scale", "must be finite and positive")
        expected.add("scale")
    if not sparse:
        W = _need(arrays, "W", wdt, (n_out, n_in) if inp == "dense" else (n_in, n_out))
        if precision == "fp32" and not np.isfinite(W).all():
            _fail("W", "has NaN or inf values")
        if precision == "bf16" and ((W & np.uint16(0x7F80)) == np.uint16(0x7F80)).any():
            _fail("W", "has NaN or inf bf16 values")
        if precision == "int8" and (W == -128).any():
            _fail("W", "has the value -128 (symmetric int8 uses [-127, 127])")
        expected.add("W")
    else:
        outer, inner = (n_out, n_in) if inp == "dense" else (n_in, n_out)
        ptr = _need(arrays, "indptr", np.int64, (outer + 1,))
        ind = arrays.get("indices")
        idt = _index_dtype(inner)
        _need(arrays, "indices", idt, None)
        if ind.ndim != 1:
            _fail("indices", "must be 1-D")
        nnz = ind.shape[0]
        data = _need(arrays, "data", wdt, (nnz,))
        if ptr[0] != 0 or ptr[-1] != nnz:
            _fail("indptr", f"must start at 0 and end at the nonzero count {nnz}, "
                            f"got {int(ptr[0])} .. {int(ptr[-1])}")
        if (np.diff(ptr) < 0).any():
            _fail("indptr", "must be non-decreasing")
        if nnz and (int(ind.min()) < 0 or int(ind.max()) >= inner):
            _fail("indices", f"has ids outside [0, {inner})")
        if nnz > 1:
            rising = np.diff(ind.astype(np.int64)) > 0
            starts = ptr[1:-1]
            rising[starts[(starts > 0) & (starts < nnz)] - 1] = True  # a new row / column may restart
            if not rising.all():
                what = "column" if inp == "dense" else "row"
                _fail("indices", f"must be strictly increasing within each {what} (sorted, no repeated "
                                 f"entries: sum repeated weights and sort, as scipy's sum_duplicates() does)")
        if precision == "fp32" and not np.isfinite(data).all():
            _fail("data", "has NaN or inf values")
        if precision == "bf16" and ((data & np.uint16(0x7F80)) == np.uint16(0x7F80)).any():
            _fail("data", "has NaN or inf bf16 values")
        if precision == "int8" and (data == -128).any():
            _fail("data", "has the value -128 (symmetric int8 uses [-127, 127])")
        expected |= {"indptr", "indices", "data"}
    extra = set(arrays) - expected
    if extra:
        _fail(sorted(extra)[0], "is not part of this layer's format (unexpected array)")


def unpack_layer(arrays):
    """``(W, b)``: the dequantised weights float32 (n_in, n_out) (what the kernels compute with)
    and the bias float32 (n_out,) or None."""
    n_in, n_out, precision, sparse, inp, has_b = layer_info(arrays)
    b = arrays["b"].copy() if has_b else None

    def deq(v):  # v: values in the per-output-channel orientation, (n_out, n_in) or (nnz,)
        if precision == "bf16":
            return bf16_to_float(v)
        return v.astype(np.float32)

    if not sparse:
        Wo = arrays["W"] if inp == "dense" else arrays["W"].T  # (n_out, n_in)
        Wt = deq(Wo)
        if precision == "int8":
            Wt = Wt * arrays["scale"][:, None]
        return np.ascontiguousarray(Wt.T), b
    ptr, ind, data = arrays["indptr"], arrays["indices"].astype(np.int64), arrays["data"]
    vals = deq(data)
    outer = np.repeat(np.arange(ptr.shape[0] - 1), np.diff(ptr))
    W = np.zeros((n_in, n_out), np.float32)
    if inp == "dense":  # outer = output column, inner = input
        if precision == "int8":
            vals = vals * arrays["scale"][outer]
        W[ind, outer] = vals
    else:  # outer = input row, inner = output
        if precision == "int8":
            vals = vals * arrays["scale"][ind]
        W[outer, ind] = vals
    return W, b


def layer_nbytes(arrays):
    """Bytes of the stored layer: every array but ``meta`` (weights, indices, scales, bias)."""
    return int(sum(a.nbytes for k, a in arrays.items() if k != "meta"))

"""SANSA (Spisak et al., RecSys 2023: sparse approximate inverse EASE), the peer a user would pick for
sparse EASE, run as a benchmark extra.

``pip install --no-deps sansa`` installs SANSA 1.1.0 (its own code: the numba incomplete Cholesky,
the approximate inverse of the unit lower triangle, the scaling). Its one import that this package
index cannot satisfy is ``sksparse.cholmod`` (scikit-sparse is not on it; SuiteSparse's shared
libraries are, on Debian, as ``libsuitesparse-dev``). SANSA calls that module for two things only:

* ``analyze_AAt(X.T, ordering_method="colamd").P()``: the fill-reducing order of the items. Here:
  SuiteSparse's own COLAMD (``libcolamd``, called through ctypes) on the columns of X, as CHOLMOD
  does for ``A A^T`` (CHOLMOD then postorders the elimination tree, which changes no fill; it is
  not done here).
* for the ``CHOLMOD`` factorizer only, ``cholesky_AAt_inplace(X.T, beta=l2)`` and ``L()``: the exact
  Cholesky factor of ``P (X^T X + l2 I) P^T``. The factor is unique, so LAPACK's dense ``potrf``
  gives the same ``L`` (to rounding) that CHOLMOD's supernodal one does; SANSA then drops its
  small entries itself. Its *time* is not CHOLMOD's (dense, O(n^3)): fit times are quoted for the
  ``ICF`` factorizer, which uses nothing from CHOLMOD but the order.

:func:`install` puts the stand-in in ``sys.modules`` as ``sksparse.cholmod`` before SANSA is
imported. Nothing here is used by aerec itself.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import sys
import types

import numpy as np
import scipy.linalg
import scipy.sparse as sp

#: seconds spent in this stand-in since the last reset (``colamd``: the order; ``dense_cholesky``: the
#: LAPACK factor that replaces CHOLMOD's), so a benchmark can report SANSA's time without them
TIMES = {"colamd": 0.0, "dense_cholesky": 0.0}

_COLAMD_KNOBS = 20
_COLAMD_STATS = 20


def _libcolamd():
    name = ctypes.util.find_library("colamd")
    if name is None:
        raise ImportError("SANSA peer: SuiteSparse's libcolamd is not installed (Debian: apt install "
                          "libsuitesparse-dev); the fill-reducing order comes from it")
    lib = ctypes.CDLL(name)
    lib.colamd_recommended.restype = ctypes.c_size_t
    lib.colamd_recommended.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
    lib.colamd_set_defaults.argtypes = [ctypes.POINTER(ctypes.c_double)]
    lib.colamd.restype = ctypes.c_int
    lib.colamd.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.POINTER(ctypes.c_int32),
                           ctypes.POINTER(ctypes.c_int32), ctypes.POINTER(ctypes.c_double),
                           ctypes.POINTER(ctypes.c_int32)]
    return lib


def colamd_order(X) -> np.ndarray:
    """COLAMD's column order of ``X`` (rows x columns), the fill-reducing order of ``X^T X``."""
    import time
    t0 = time.perf_counter()
    try:
        return _colamd_order(X)
    finally:
        TIMES["colamd"] += time.perf_counter() - t0


def _colamd_order(X) -> np.ndarray:
    lib = _libcolamd()
    X = sp.csc_matrix(X)
    n_row, n_col = X.shape
    nnz = int(X.nnz)
    alen = int(lib.colamd_recommended(nnz, n_row, n_col))
    if alen == 0:
        raise ValueError("colamd_recommended failed (matrix too large for 32-bit COLAMD)")
    A = np.zeros(alen, np.int32)
    X.sort_indices()
    A[:nnz] = X.indices
    p = np.ascontiguousarray(X.indptr, dtype=np.int32).copy()
    knobs = (ctypes.c_double * _COLAMD_KNOBS)()
    lib.colamd_set_defaults(knobs)
    stats = (ctypes.c_int32 * _COLAMD_STATS)()
    ok = lib.colamd(n_row, n_col, alen, A.ctypes.data_as(ctypes.POINTER(ctypes.c_int32)),
                    p.ctypes.data_as(ctypes.POINTER(ctypes.c_int32)), knobs, stats)
    if not ok:
        raise RuntimeError(f"COLAMD failed (status {stats[3]})")
    perm = p[:n_col].astype(np.int64)
    assert np.array_equal(np.sort(perm), np.arange(n_col))
    return perm


class Factor:
    """What SANSA reads of a CHOLMOD factor: ``P()`` and, after ``cholesky_*_inplace``, ``L()``."""

    def __init__(self, perm: np.ndarray):
        self._p = perm
        self._L = None

    def P(self) -> np.ndarray:  # noqa: N802 (scikit-sparse's name)
        return self._p

    def cholesky_AAt_inplace(self, A, beta=0.0):  # noqa: N802
        import time
        t0 = time.perf_counter()
        try:
            self._cholesky_AAt(A, beta)
        finally:
            TIMES["dense_cholesky"] += time.perf_counter() - t0

    def _cholesky_AAt(self, A, beta):  # noqa: N802
        A = sp.csr_matrix(A)[self._p]  # rows of A = items, permuted
        G = (A @ A.T).toarray().astype(np.float64)
        G[np.diag_indices_from(G)] += beta
        self._L = sp.csc_matrix(scipy.linalg.cholesky(G, lower=True, overwrite_a=True, check_finite=False))

    def cholesky_inplace(self, A, beta=0.0):
        A = sp.csr_matrix(A)[self._p][:, self._p].toarray().astype(np.float64)
        A[np.diag_indices_from(A)] += beta
        self._L = sp.csc_matrix(scipy.linalg.cholesky(A, lower=True, overwrite_a=True, check_finite=False))

    def L(self):  # noqa: N802
        if self._L is None:
            raise RuntimeError("L() before cholesky_*_inplace()")
        return self._L


def analyze_AAt(A, mode="auto", use_long=False, ordering_method="colamd"):  # noqa: N802
    """Order the rows of ``A`` (items x users) for ``A A^T``: COLAMD on the columns of ``A^T``."""
    if ordering_method not in ("colamd", "default", "best"):
        raise ValueError(f"SANSA peer: ordering {ordering_method!r} not provided (colamd only)")
    return Factor(colamd_order(sp.csr_matrix(A).T))


def analyze(A, mode="auto", use_long=False, ordering_method="colamd"):
    """Order a symmetric ``A``: COLAMD on ``A`` itself (its pattern is that of some ``B^T B``)."""
    return Factor(colamd_order(A))


def install():
    """Make ``import sksparse.cholmod`` resolve to this stand-in (call before importing sansa)."""
    if "sksparse.cholmod" in sys.modules and getattr(sys.modules["sksparse.cholmod"], "_aerec_peer", False):
        return
    pkg = types.ModuleType("sksparse")
    mod = types.ModuleType("sksparse.cholmod")
    mod._aerec_peer = True
    for name in ("analyze", "analyze_AAt", "Factor"):
        setattr(mod, name, globals()[name])
    pkg.cholmod = mod
    sys.modules["sksparse"] = pkg
    sys.modules["sksparse.cholmod"] = mod


def sansa_model(l2: float, density: float, factorizer: str = "icf"):
    """A SANSA model (fit(X) with X users x items CSR; ``weights`` = (W^T, W_r))."""
    install()
    import sansa
    fcfg = (sansa.ICFGramianFactorizerConfig() if factorizer == "icf"
            else sansa.CHOLMODGramianFactorizerConfig())
    cfg = sansa.SANSAConfig(l2=float(l2), weight_matrix_density=float(density), gramian_factorizer_config=fcfg,
                            lower_triangle_inverter_config=sansa.UMRUnitLowerTriangleInverterConfig(
                                scans=1, finetune_steps=5))
    return sansa.SANSA(cfg)


def sansa_B(model) -> np.ndarray:
    """The dense item-item matrix SANSA scores with (``X @ W^T @ W_r``), diagonal zeroed as EASE's
    (the diagonal only scores already-seen items, which are excluded)."""
    W1, W2 = model.weights
    B = (W1 @ W2).toarray().astype(np.float32)
    np.fill_diagonal(B, 0.0)
    return B


def stored_entries(model) -> int:
    """Nonzeros SANSA 1.1 stores: both factors (W^T and W_r, the same pattern)."""
    W1, W2 = model.weights
    return int(W1.nnz + W2.nnz)

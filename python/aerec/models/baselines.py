"""Closed-form and trivial baselines: EASE (Steck 2019) and item popularity."""
from __future__ import annotations

import numpy as np
import scipy.linalg

from .. import _validation as _arrays  # the validation module (was aerec._arrays)
from .._memory import available_memory
from ..io import register_model
from ._serving import atomic_fit, reads
from .recommender import Recommender

__all__ = ["EASE", "Popularity", "available_memory"]


class _SavableRecommender(Recommender):
    _arrays_to_save: tuple[str, ...] = ()

    @reads
    def save(self, path, include_history=True) -> None:
        """Write the model atomically (no pickle; see ``aerec.io``).

        Parameters
        ----------
        path : str or path-like
        include_history : bool, default True
            keep the training interactions (and raw user ids) in the file. False writes a smaller
            serving artefact: ``recommend(user_items=...)`` then serves every user by fold-in, and
            ``recommend(user_ids)`` raises, asking for the users' histories.
        """
        self._check_fitted("train_")
        arrays = self._train_arrays(include_history)
        for name in self._arrays_to_save:
            arrays[name] = np.asarray(getattr(self, name))
        self._save(path, {}, arrays)

    @classmethod
    def _from_state(cls, meta, arrays, backend="auto"):
        model = cls._new_from_meta(meta, backend)
        model._restore_train(arrays)
        for name in cls._arrays_to_save:
            setattr(model, name, arrays[name])
        return model


@register_model
class Popularity(_SavableRecommender):
    """Recommends the most-interacted items (the baseline every model must beat).

    Parameters
    ----------
    backend : str
        "auto", "cpp", "numba" or "numpy": runs top-k selection and ``similar_items``.
    """

    _arrays_to_save = ("item_counts_",)

    def __init__(self, backend="auto"):
        self.backend = backend

    @atomic_fit
    def fit(self, train, validation=None, **kw):
        X = self._train_matrix(train)
        self.train_ = X
        self.item_counts_ = np.asarray((X > 0).sum(axis=0)).ravel().astype(np.float32)
        return self

    def _export_tensors(self):
        self._check_fitted("train_")
        return {"item_counts": self.item_counts_}

    def _scores(self, rows, X):
        # a real (writable, row-independent) array like every other model's scores, not a
        # read-only broadcast view whose rows share memory
        return np.repeat(self.item_counts_[None, :], X.shape[0], axis=0)

    @reads
    def item_vectors(self):
        """(n_items, 1): each item's interaction count; pairs with :meth:`user_vectors`."""
        self._check_fitted("train_")
        return self.item_counts_[:, None]

    @reads
    def user_vectors(self, user_ids=None, user_items=None):
        """(n, 1) ones: ``user_vectors(u) @ item_vectors().T`` are the popularity scores
        ``recommend`` ranks (``TopK(model.item_vectors()).search(model.user_vectors(users), k)``)."""
        self._check_fitted("train_")
        rows, X, scalar = self._histories(user_ids, user_items)
        ones = np.ones((X.shape[0], 1), np.float32)
        return ones[0] if scalar else ones


@register_model
class EASE(_SavableRecommender):
    """Embarrassingly Shallow Autoencoder (Steck 2019): B = I - P diag(1/diag(P)), P = (X^T X + lambda I)^-1.

    Parameters
    ----------
    l2 : float
        the ridge ``lambda`` (Steck: 200-1000 on MovieLens).
    dtype : float32 or float64
        precision of the Gram matrix and its factorisation (float32 halves the memory).
    max_memory : int bytes, optional
        refuse to fit (MemoryError with the figure) when the estimate exceeds it; default: the
        memory available now.
    backend : str
        "auto", "cpp", "numba" or "numpy": runs the Gram matrix, the scoring SpMM, top-k
        selection and ``similar_items`` (see :func:`aerec.backends.get`).
    """

    _arrays_to_save = ("B_",)

    def __init__(self, l2=500.0, dtype="float32", max_memory=None, verbose=0, backend="auto"):
        self.backend = backend
        self.l2 = l2
        self.dtype = dtype
        self.max_memory = max_memory
        self.verbose = verbose
        self._check_params()

    def _check_params(self):
        from .. import _backends
        _backends._check_name(self.backend)
        _arrays.check_verbose(self.verbose)
        self._dtype()
        # a finite ridge only: l2=inf makes every score 0 / NaN (all padding), l2=nan the same
        l2 = _arrays.check_real(self.l2, "l2", 0.0, lo_open=True)
        if self.max_memory is not None:
            _arrays.check_real(self.max_memory, "max_memory", 0.0, lo_open=True)
        return l2

    def _dtype(self):
        try:
            dt = np.dtype(self.dtype)
        except TypeError:
            raise ValueError(f"dtype must be float32 or float64, got {self.dtype!r}") from None
        if dt not in (np.float32, np.float64):
            raise ValueError(f"dtype must be float32 or float64, got {self.dtype!r}")
        return dt

    @staticmethod
    def memory_required(n_items: int, dtype="float32") -> int:
        """Peak bytes EASE needs beyond the data: the n_items^2 Gram matrix, factorised and
        inverted in place, plus the float32 weight matrix B when fitting in float64."""
        it = np.dtype(dtype).itemsize
        return n_items * n_items * (it + (4 if it == 8 else 0))

    @atomic_fit
    def fit(self, train, validation=None, **kw):
        l2 = self._check_params()
        X = self._train_matrix(train)
        dt = self._dtype()
        n = X.shape[1]
        need = self.memory_required(n, dt)
        limit = self.max_memory if self.max_memory is not None else available_memory()
        if self.verbose:
            print(f"EASE: {n} items -> needs {need / 2**30:.2f} GiB ({dt.name})")
        if limit is not None and need > limit:
            where = "max_memory allows" if self.max_memory is not None else "is available to this process"
            fix = "filter rare items (Interactions.filter(min_item_count=...))"
            if dt != np.float32:
                fix += " or use dtype='float32' (half the memory)"
            raise MemoryError(f"EASE on {n} items needs {need / 2**30:.2f} GiB in {dt.name} but only "
                              f"{limit / 2**30:.2f} GiB {where}; {fix}")
        G = self._gram_upper(X, dt)  # C order, upper triangle valid == lower of the F-order view
        G[np.diag_indices(n)] += l2
        F = G.T  # F-contiguous view: LAPACK works in place, no copy
        potrf, potri = scipy.linalg.lapack.get_lapack_funcs(("potrf", "potri"), (F,))
        c, info = potrf(F, lower=True, overwrite_a=True, clean=False)
        if info != 0:
            raise np.linalg.LinAlgError(f"EASE: Gram matrix + l2 I is not positive definite (info={info}); raise l2")
        Pf, info = potri(c, lower=True, overwrite_c=True)
        if info != 0:
            raise np.linalg.LinAlgError(f"EASE: inversion failed (info={info})")
        P = Pf.T  # C-order; its upper triangle holds P
        if not np.shares_memory(P, G):  # LAPACK wrappers copied after all; keep going on the result
            G = None
        # Mirror the upper triangle into the lower one in place, block by block (no n^2 copies).
        step = 1024
        for s in range(0, n, step):
            e = min(s + step, n)
            blk = P[s:e, s:e]
            P[s:e, s:e] = np.triu(blk) + np.triu(blk, 1).T
            P[e:, s:e] = P[s:e, e:].T
        d = np.diag(P).copy()
        P /= -d[None, :]
        P[np.diag_indices(n)] = 0.0
        B = P.astype(np.float32, order="C", copy=dt != np.float32 or not P.flags.c_contiguous)
        if not np.isfinite(B).all():
            raise FloatingPointError(f"EASE: the weights are not finite with l2={l2!r} in {dt.name}; use an l2 "
                                     "nearer the Gram matrix's scale (Steck: 200-1000 on MovieLens) or "
                                     "dtype='float64'")
        self.B_ = B
        self.train_ = X
        return self

    def _gram_upper(self, X, dt):
        # C order; the upper triangle (j >= i) is valid (the backend's own Gram kernel).
        return self._backend().gram_upper(X, dt)

    def _scores(self, rows, X):
        return self._backend().spmm(X, self.B_)

    def _export_tensors(self):
        self._check_fitted("train_")
        return {"B": self.B_}

    @reads
    def item_vectors(self):
        self._check_fitted("train_")
        return self.B_

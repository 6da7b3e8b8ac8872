"""Closed-form and trivial baselines: EASE (Steck 2019) and item popularity."""
from __future__ import annotations

import numpy as np
import scipy.linalg
import scipy.sparse as sp

from .. import _validation
from .._memory import available_memory
from ..io import register_model
from ._serving import atomic_fit, reads
from .recommender import Recommender

__all__ = ["EASE", "Popularity", "available_memory"]


class _SavableRecommender(Recommender):
    _arrays_to_save: tuple[str, ...] = ()

    def _save_meta(self) -> dict:
        return {}

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
        meta = self._save_meta()
        net = getattr(self, "net_", None)
        if getattr(net, "compressed", False):  # aerec.compress: the packed arrays replace the fp32 ones
            from ..compress._format import declare, export_arrays
            packed = export_arrays(net, self._packed_prefixes)
            arrays.update(packed)
            meta["compression"] = {**self.compression_, "arrays": declare(packed)}
        else:
            for name in self._arrays_to_save:
                arrays[name] = np.asarray(getattr(self, name))
        self._save(path, meta, arrays)

    _packed_prefixes = ()

    @classmethod
    def _from_state(cls, meta, arrays, backend="auto"):
        model = cls._new_from_meta(meta, backend)
        model._restore_train(arrays)
        comp = meta.get("compression")
        if comp is not None and "arrays" in comp:
            from ..compress._format import network_from_arrays
            model.compression_ = {k: v for k, v in comp.items() if k != "arrays"}
            model.net_ = network_from_arrays(model._network_spec(), {k: arrays[k] for k in comp["arrays"]},
                                             model._backend(), cls._packed_prefixes)
        else:
            for name in cls._arrays_to_save:
                setattr(model, name, arrays[name])
        model._restore_meta(meta)
        return model

    def _restore_meta(self, meta) -> None:
        pass


@register_model
class Popularity(_SavableRecommender):
    """Recommends the most-interacted items (the baseline every model must beat).

    ``fit`` takes a users x items matrix: ``aerec.data.Interactions`` or scipy.sparse (a pandas
    DataFrame of (user, item) rows: ``aerec.data.from_dataframe(df, "user", "item")`` first).

    Parameters
    ----------
    backend : {"auto", "cpp", "numba", "numpy"}, default "auto"
        runs top-k selection and ``similar_items``.
    """

    _arrays_to_save = ("item_counts_",)

    def __init__(self, backend="auto"):
        self.backend = backend

    @atomic_fit
    def fit(self, train, validation=None, **kw):
        """Count each item's interactions in ``train`` (Interactions or scipy.sparse; a DataFrame:
        ``aerec.data.from_dataframe`` first). ``validation`` and ``verbose`` are accepted (for
        ``aerec.compare``) and unused; any other keyword is an error."""
        unknown = sorted(set(kw) - {"verbose", "k"})
        if unknown:
            raise TypeError(f"Popularity.fit got unexpected keyword(s) {unknown}; it takes validation=, k= and "
                            "verbose= (all unused: popularity has nothing to tune)")
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


#: the l2 values EASE(l2="auto") tries on validation (around Steck's 200-1000 on MovieLens)
EASE_L2_GRID = (50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0)


def _spd_inverse_lower(A, what, clean):
    """LAPACK ``potrf`` + ``potri`` of the symmetric positive definite ``A``, in place: the inverse's
    lower triangle (``clean=False`` leaves the strict upper triangle as it was). ``what`` names
    ``A`` in the error a non-positive-definite matrix raises."""
    potrf, potri = scipy.linalg.lapack.get_lapack_funcs(("potrf", "potri"), (A,))
    c, info = potrf(A, lower=True, overwrite_a=True, clean=clean)
    if info != 0:
        raise np.linalg.LinAlgError(f"EASE: {what} is not positive definite (info={info}); raise l2")
    inv, info = potri(c, lower=True, overwrite_c=True)
    if info != 0:
        raise np.linalg.LinAlgError(f"EASE: inversion of {what} failed (info={info})")
    return inv


@register_model
class EASE(_SavableRecommender):
    """Embarrassingly Shallow Autoencoder (Steck 2019): B = I - P diag(1/diag(P)), P = (X^T X + lambda I)^-1.

    ``fit`` takes a users x items matrix: ``aerec.data.Interactions`` or scipy.sparse (a pandas
    DataFrame of (user, item) rows: ``aerec.data.from_dataframe(df, "user", "item")`` first).

    Parameters
    ----------
    l2 : float > 0 or "auto", default "auto"
        the ridge ``lambda``. "auto": with ``fit(validation=...)``, the value of ``EASE_L2_GRID``
        (50 ... 2000, around Steck's 200-1000 on MovieLens) with the best validation NDCG@k
        (``l2_`` holds it, ``l2_path_`` every value tried); without validation, 500.
    dtype : "float32" or "float64", default "float32"
        precision of the Gram matrix and its factorisation (float32 halves the memory).
    max_memory : int or float bytes > 0, default None
        refuse to fit (MemoryError with the figure) when the estimate exceeds it; default: the
        memory available now (None).
    verbose : int >= 0, default 0
        1 prints the memory estimate and, with validation, each l2 tried.
    solver : {"auto", "primal", "dual"}, default "auto"
        "primal" inverts the items x items matrix ``X^T X + lambda I``; "dual" the users x users
        ``X X^T + lambda I`` (Woodbury: ``P = (I - X^T (X X^T + lambda I)^-1 X) / lambda``, exact,
        and much cheaper with fewer users than items); "auto" picks the smaller.
    backend : str, default "auto"
        "auto", "cpp", "numba" or "numpy": runs the Gram matrix, the scoring SpMM, top-k
        selection and ``similar_items`` (see :func:`aerec.backends.get`).
    """

    _arrays_to_save = ("B_",)
    _selects_epochs = False  # the model card records the chosen l2, not a kept epoch

    def __init__(self, l2="auto", dtype="float32", max_memory=None, verbose=0, backend="auto", solver="auto"):
        self.backend = backend
        self.l2 = l2
        self.dtype = dtype
        self.max_memory = max_memory
        self.verbose = verbose
        self.solver = solver
        self._check_params()

    def _check_params(self):
        from .. import _backends
        _backends._check_name(self.backend)
        _validation.check_verbose(self.verbose)
        self._dtype()
        if not isinstance(self.solver, str) or self.solver not in ("auto", "primal", "dual"):
            raise ValueError(f"solver must be 'auto', 'primal' or 'dual', got {self.solver!r}")
        if self.max_memory is not None:
            _validation.check_real(self.max_memory, "max_memory", 0.0, lo_open=True)
        if isinstance(self.l2, str):
            if self.l2 != "auto":
                raise TypeError(f"l2 must be a positive number or 'auto', got the string {self.l2!r}")
            return "auto"
        # a finite ridge only: l2=inf makes every score 0 / NaN (all padding), l2=nan the same
        return _validation.check_real(self.l2, "l2", 0.0, lo_open=True)

    def _dtype(self):
        try:
            dt = np.dtype(self.dtype)
        except TypeError:
            raise ValueError(f"dtype must be float32 or float64, got {self.dtype!r}") from None
        if dt not in (np.float32, np.float64):
            raise ValueError(f"dtype must be float32 or float64, got {self.dtype!r}")
        return dt

    @staticmethod
    def memory_required(n_items: int, dtype="float32", n_users=None) -> int:
        """Peak bytes EASE needs beyond the data: the n_items^2 Gram matrix, factorised and
        inverted in place, plus the float32 weight matrix B when fitting in float64; with
        ``n_users`` < ``n_items`` (the dual form) also the users x users matrix and its inverse
        (float64) and two users x items blocks."""
        it = np.dtype(dtype).itemsize
        need = n_items * n_items * (it + (4 if it == 8 else 0))
        if n_users is not None and n_users < n_items:
            need += 16 * n_users * n_users + 2 * it * n_users * n_items
        return need

    def _form(self, X):
        if getattr(self, "_reduced_gram", None) is not None:  # distributed: the Gram matrix is given
            return "primal"
        if self.solver != "auto":
            return self.solver
        return "dual" if X.shape[0] < X.shape[1] else "primal"

    @atomic_fit
    def fit(self, train, validation=None, **kw):
        """Fit the closed form on a users x items matrix (aerec.data.Interactions or scipy.sparse).

        Parameters
        ----------
        train : aerec.data.Interactions or scipy.sparse (users x items)
            a pandas DataFrame of (user, item) rows: build Interactions with
            ``aerec.data.from_dataframe(df, "user", "item")`` first.
        validation : aerec.data EvalSet or Split, optional
            with ``l2="auto"``: the l2 of ``EASE_L2_GRID`` with the best NDCG@k on it is kept;
            with a fixed l2: ``history_["val_ndcg@k"]`` reports it.
        k : int > 0, default 100
            the validation cut-off.
        verbose : int, optional
            overrides the constructor's ``verbose`` for this call.
        distributed : "mpi" or an mpi4py communicator, optional
            under ``mpiexec``: each rank computes the Gram matrix of its shard of the users, an
            MPI reduction sums them, rank 0 solves (the primal form) and broadcasts B
            (:mod:`aerec.distributed`; ``aerec[mpi]``).

        Any other keyword is an error (EASE has no epochs or batches: a closed form).
        """
        distributed = kw.pop("distributed", None)
        if distributed is not None:  # a distributed Gram matrix (aerec.distributed)
            from ..distributed._mpi import fit_ease
            return fit_ease(self, train, validation, distributed, kw)
        unknown = sorted(set(kw) - {"k", "verbose"})
        if unknown:
            raise TypeError(f"EASE.fit got unexpected keyword(s) {unknown}: EASE is a closed form without epochs, "
                            "batches or callbacks; it takes validation=, k= and verbose=")
        k = _validation.check_k(kw.get("k", 100))
        verbose = _validation.check_verbose(kw["verbose"]) if kw.get("verbose") is not None else self.verbose
        l2 = self._check_params()
        X = self._train_matrix(train)
        if validation is not None and hasattr(validation, "validation") and hasattr(validation, "test"):
            if validation.validation is None:
                raise ValueError("validation is a Split without a validation set; pass n_validation_users > 0 "
                                 "when splitting, or validation=None")
            validation = validation.validation
        if validation is not None:
            from ..data.splits import EvalSet
            if not isinstance(validation, EvalSet):
                raise TypeError(f"validation must be an aerec.data EvalSet or Split, got {type(validation).__name__}")
            if validation.n_items != X.shape[1]:
                raise ValueError(f"validation has {validation.n_items} items but train has {X.shape[1]}; "
                                 "make both from one split")
        dt = self._dtype()
        n = X.shape[1]
        form = self._form(X)
        need = self.memory_required(n, dt, X.shape[0] if form == "dual" else None)
        limit = self.max_memory if self.max_memory is not None else available_memory()
        if verbose:
            print(f"EASE: {n} items, {X.shape[0]} users, {form} form -> needs {need / 2**30:.2f} GiB ({dt.name})")
        if limit is not None and need > limit:
            where = "max_memory allows" if self.max_memory is not None else "is available to this process"
            fix = "filter rare items (Interactions.filter(min_item_count=...))"
            if dt != np.float32:
                fix += " or use dtype='float32' (half the memory)"
            raise MemoryError(f"EASE on {n} items needs {need / 2**30:.2f} GiB in {dt.name} but only "
                              f"{limit / 2**30:.2f} GiB {where}; {fix}")
        self.train_ = X
        self.history_ = {}
        self.best_epoch_ = None
        if l2 == "auto" and validation is None:
            l2 = 500.0
        if l2 != "auto":
            self.B_ = self._solve(X, l2, dt, form)
            self.l2_ = float(l2)
            if validation is not None:
                self.history_ = {"l2": [self.l2_], f"val_ndcg@{k}": [self._val_ndcg(validation, k)]}
                self.best_epoch_ = 0
            return self
        best = None
        path = {}
        for i, lam in enumerate(EASE_L2_GRID):
            self.B_ = self._solve(X, lam, dt, form)
            score = self._val_ndcg(validation, k)
            path[lam] = score
            if verbose:
                print(f"EASE: l2={lam:g} validation ndcg@{k}={score:.4f}")
            if best is None or score > best[0]:
                best = (score, lam, self.B_, i)
        self.B_, self.l2_, self.best_epoch_ = best[2], float(best[1]), best[3]
        self.l2_path_ = path
        self.history_ = {"l2": list(path), f"val_ndcg@{k}": list(path.values())}
        return self

    def _save_meta(self):
        return {"l2_": float(self.l2_)}

    def _restore_meta(self, meta):
        self.l2_ = float(meta["l2_"]) if "l2_" in meta else float(self.l2)  # aerec <= 0.1: the fixed l2

    def _val_ndcg(self, validation, k):
        from ..evaluation import evaluate
        return float(evaluate(self, validation, ks=(k,), metrics=("ndcg",))[f"ndcg@{k}"])

    def _solve(self, X, l2, dt, form):
        """B (float32, C order) for ridge ``l2`` by the primal or the dual form."""
        if form == "dual" and dt == np.float32:
            return self._solve_dual32(X, l2)
        P = self._inverse_primal(X, l2, dt) if form == "primal" else self._inverse_dual(X, l2, dt)
        n = P.shape[0]
        d = np.diag(P).copy()
        P /= -d[None, :]
        P[np.diag_indices(n)] = 0.0
        B = P.astype(np.float32, order="C", copy=dt != np.float32 or not P.flags.c_contiguous)
        if not np.isfinite(B).all():
            raise FloatingPointError(f"EASE: the weights are not finite with l2={l2!r} in {dt.name}; use an l2 "
                                     "nearer the Gram matrix's scale (Steck: 200-1000 on MovieLens) or "
                                     "dtype='float64'")
        return B

    def _solve_dual32(self, X, l2):
        """B by the dual form in float32, with the backend's (multi-threaded) SpMM for both products.

        With ``K = X X^T + l2 I`` (users x users) and ``Q = X^T K^-1 X``, Woodbury gives
        ``P = (I - Q) / l2``, so ``B_ij = -P_ij / P_jj = Q_ij / (1 - Q_jj)`` (i != j), B_jj = 0.
        K^-1 explicitly (Cholesky ``potrf`` + ``potri``: u^3 flops, small next to the rest), then
        ``Z = X^T K^-1`` and ``Q = X^T Z^T``: two sparse x dense products of nnz(X) x u and
        nnz(X) x n multiply-adds (was: two triangular solves against the dense X, 2 u^2 n, and a
        single-threaded scipy product). B is scaled in place in Q's memory: one n x n array."""
        if not l2 <= float(np.finfo(np.float32).max):  # as the float32 K + l2 I of the other forms: not finite
            raise FloatingPointError(f"EASE: the weights are not finite with l2={l2!r} in float32; use an l2 "
                                     "nearer the Gram matrix's scale (Steck: 200-1000 on MovieLens) or "
                                     "dtype='float64'")
        Xd = X.astype(np.float32)
        u = Xd.shape[0]
        K = np.asarray((Xd @ Xd.T).toarray(), dtype=np.float64)  # u x u: float64 costs nothing here
        K[np.diag_indices(u)] += l2
        Ki = _spd_inverse_lower(K, "X X^T + l2 I", clean=True)
        Ki = np.tril(Ki) + np.tril(Ki, -1).T  # potri fills the lower triangle
        if not np.isfinite(Ki).all():
            raise FloatingPointError(f"EASE: (X X^T + l2 I)^-1 is not finite with l2={l2!r}; use an l2 nearer "
                                     "the Gram matrix's scale (Steck: 200-1000 on MovieLens)")
        be = self._backend()
        XT = Xd.T.tocsr()
        XT.sort_indices()
        Z = be.spmm(XT, np.ascontiguousarray(Ki, dtype=np.float32))  # n x u: X^T K^-1
        Q = be.spmm(XT, np.ascontiguousarray(Z.T))  # n x n: X^T K^-1 X
        del Z
        n = Q.shape[0]
        scale = (1.0 / (1.0 - np.diag(Q).astype(np.float64))).astype(np.float32)
        if not np.isfinite(scale).all() or not (scale > 0).all():
            raise FloatingPointError(f"EASE: the weights are not finite with l2={l2!r} in float32; use an l2 "
                                     "nearer the Gram matrix's scale (Steck: 200-1000 on MovieLens) or "
                                     "dtype='float64'")
        step = max(1, (1 << 22) // max(n, 1))  # row blocks of ~16 MB: the scaling stays in cache
        for s in range(0, n, step):
            Q[s:s + step] *= scale[None, :]
        Q[np.diag_indices(n)] = 0.0
        # |Q_ij| <= sqrt(Q_ii Q_jj) < 1 (Q is X^T K^-1 X with K > X X^T): B is finite when scale is
        return Q

    def _inverse_dual(self, X, l2, dt):
        """P = (X^T X + l2 I)^-1 = (I - X^T (X X^T + l2 I)^-1 X) / l2 (Woodbury): a users x users
        factorisation instead of an items x items one."""
        Xd = X.astype(dt)
        K = np.asarray((Xd @ Xd.T).toarray(), dtype=dt)
        K[np.diag_indices(K.shape[0])] += l2
        try:
            c = scipy.linalg.cho_factor(K, lower=True, overwrite_a=True, check_finite=False)
        except np.linalg.LinAlgError:
            raise np.linalg.LinAlgError("EASE: X X^T + l2 I is not positive definite; raise l2") from None
        M = scipy.linalg.cho_solve(c, Xd.toarray(), overwrite_b=True, check_finite=False)  # K^-1 X
        P = np.asarray(Xd.T @ M, dtype=dt)
        P *= -1.0
        P[np.diag_indices(P.shape[0])] += 1.0
        P /= l2
        return np.ascontiguousarray(P)

    def _inverse_primal(self, X, l2, dt):
        n = X.shape[1]
        G = self._gram_upper(X, dt)  # C order, upper triangle valid == lower of the F-order view
        G[np.diag_indices(n)] += l2
        F = G.T  # F-contiguous view: LAPACK works in place, no copy
        Pf = _spd_inverse_lower(F, "Gram matrix + l2 I", clean=False)
        P = Pf.T  # C-order; its upper triangle holds P
        # Mirror the upper triangle into the lower one in place, block by block (no n^2 copies).
        step = 1024
        for s in range(0, n, step):
            e = min(s + step, n)
            blk = P[s:e, s:e]
            P[s:e, s:e] = np.triu(blk) + np.triu(blk, 1).T
            P[e:, s:e] = P[s:e, e:].T
        return P

    def _gram_upper(self, X, dt):
        # C order; the upper triangle (j >= i) is valid (the backend's own Gram kernel).
        G = getattr(self, "_reduced_gram", None)
        if G is not None:  # distributed: summed over the ranks (aerec.distributed._mpi.fit_ease)
            return G.astype(dt, copy=True)
        return self._backend().gram_upper(X, dt)

    # a compressed EASE (aerec.compress) holds B packed, as the one layer of a CompressedNetwork
    # (net_, input CSR, identity activation) instead of the fp32 B_
    _packed_prefixes = ("B",)

    def _network_spec(self):
        from .._schemas import ease_spec
        return ease_spec(self.train_.shape[1])

    def _scores(self, rows, X):
        net = getattr(self, "net_", None)
        if getattr(net, "compressed", False):
            return net.forward(sp.csr_matrix(X, dtype=np.float32))
        return self._backend().spmm(X, self.B_)

    def _topk(self, rows, X, k, exclude, candidates):
        net = getattr(self, "net_", None)
        if candidates is None and getattr(net, "compressed", False):
            # fused: each user's scores accumulated from B's rows and selected at once (a pruned B:
            # only its kept entries are read; no users x items score matrix)
            x = sp.csr_matrix(X, dtype=np.float32)
            ep = ei = None
            if exclude is not None:
                ex = sp.csr_matrix(exclude)
                ep, ei = ex.indptr.astype(np.int64), ex.indices.astype(np.int32)
            return net.layer(0).topk_csr(x.indptr.astype(np.int64), x.indices.astype(np.int32), x.data, k, ep, ei)
        return super()._topk(rows, X, k, exclude, candidates)

    def _export_tensors(self):
        self._check_fitted("train_")
        net = getattr(self, "net_", None)
        if getattr(net, "compressed", False):
            from ..compress._format import export_arrays
            return export_arrays(net, self._packed_prefixes)
        return {"B": self.B_}

    @reads
    def item_vectors(self):
        """B (n_items, n_items) float32 (a compressed EASE: dequantised, a fresh copy)."""
        self._check_fitted("train_")
        net = getattr(self, "net_", None)
        if getattr(net, "compressed", False):
            return net.layer_weights(0)[0]
        return self.B_

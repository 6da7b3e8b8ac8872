"""AutoRec (Sedhain et al. 2015): rating prediction by reconstructing partially observed rating
vectors; the loss counts observed ratings only, plus an L2 penalty on the weights."""
from __future__ import annotations

import numbers

import numpy as np

from .. import _validation
from .._validation import UnknownIdError
from ..callbacks import as_callbacks
from ..io import register_model
from ._serving import atomic_fit, guard_of, reads
from ._training import run_epochs
from .base import (_tuples, check_pruning, check_random_state, derive_seed, glorot_uniform, layer_params,
                   mask_state, network_from_file, weights_for_file)
from .recommender import Recommender
from ..nn.spec import make_spec

__all__ = ["AutoRec"]


@register_model
class AutoRec(Recommender):
    """Item-based (I-AutoRec, default) or user-based AutoRec.

    I-AutoRec encodes each item's vector of user ratings: ``n_users -> hidden (sigmoid) -> n_users
    (identity)``; a rating r(u, i) is read off item i's reconstruction at u.

    ``fit`` takes a users x items rating matrix: ``aerec.data.Interactions`` or scipy.sparse (a
    pandas DataFrame of (user, item, rating) rows: ``aerec.data.from_dataframe(df, "user", "item",
    "rating")`` first).

    Parameters
    ----------
    kind : {"item", "user"}, default "item"
        "item": I-AutoRec (rows are items; only training users can be scored); "user": U-AutoRec
        (rows are users; folds new users in).
    hidden : int >= 1, default 500
        the hidden width (500 in the paper).
    activation : str, default "sigmoid"
        hidden activation: "identity", "relu", "sigmoid", "tanh", "elu" or "selu".
    l2 : float >= 0, default 150.0
        ``lambda`` of the paper's objective ``sum_observed (r - r_hat)^2 + lambda/2 ||W||^2``; the
        per-batch loss here is the mean over rows, so the penalty applied is ``lambda / n_rows``.
    learning_rate : float > 0, default 1e-3
    epochs : int >= 0, default 70
        training epochs (``fit(epochs=...)`` overrides).
    batch_size : int >= 1, default 256
        rows per update (``fit(batch_size=...)`` overrides).
    optimizer : {"adam", "adamw", "sgd"}, default "adam"
    clip : "auto", (float, float) or None, default "auto"
        clip predictions to the rating scale: "auto" the training min and max, a (low, high) pair,
        or None for no clipping.
    dropout : float in [0, 1) or (float, float), default (0.0, 0.5)
        inverted dropout on the input ratings (denoising) and, with a pair, on the hidden layer.
    random_state : int >= 0 or None, default 0
        seeds the initial weights, the shuffling and dropout.
    backend : {"auto", "cpp", "numba", "numpy"}, default "auto"
    pruning : aerec.compress.GradualPruning or None, default None
        gradual magnitude pruning during ``fit`` (see :class:`aerec.compress.GradualPruning`): the
        pruned weights stay exactly 0, the masks are saved with the model, ``history_["sparsity"]``
        and ``sparsity_`` report the pruned fraction.

    The defaults (lambda 150, hidden dropout 0.5, batch 256, 70 epochs of Adam 1e-3) were chosen on a
    validation carve-out of MovieLens-100K u1.base and give mean RMSE 0.8976 on the u1..u5 folds
    (benchmarks/accuracy_ml100k.py); the paper's plain setting is ``dropout=0.0``.
    """

    def __init__(self, kind="item", hidden=500, activation="sigmoid", l2=150.0, learning_rate=1e-3, epochs=70,
                 batch_size=256, optimizer="adam", clip="auto", dropout=(0.0, 0.5), random_state=0, backend="auto",
                 pruning=None):
        self.kind, self.hidden, self.activation, self.l2 = kind, hidden, activation, l2
        self.dropout = dropout
        self.learning_rate, self.epochs, self.batch_size, self.optimizer = learning_rate, epochs, batch_size, optimizer
        self.clip, self.random_state, self.backend = clip, random_state, backend
        self.pruning = pruning
        _validation.check_choice(kind, "kind", ("item", "user"))

    @property
    def supports_fold_in(self):
        return self.kind == "user"

    def _rows(self, R):
        """Training rows: items x users (item-based) or users x items (user-based), dense float32."""
        M = R.T.tocsr() if self.kind == "item" else R
        return np.ascontiguousarray(M.toarray(), dtype=np.float32)

    @atomic_fit
    def fit(self, train, validation=None, epochs=None, batch_size=None, verbose="auto", callbacks=None,
            distributed=None):
        """Fit on a users x items rating matrix (explicit values > 0 are observed ratings):
        aerec.data.Interactions or scipy.sparse (a pandas DataFrame of (user, item, rating) rows:
        ``aerec.data.from_dataframe`` first).

        validation : sparse users x items ratings, optional -> ``history_["val_rmse"]`` per epoch.
        callbacks : list of Callback or callables ``f(epoch, logs)``, optional
            called after every epoch with ``logs`` = {"loss", "val_rmse" (with validation)}; e.g.
            ``EarlyStopping("val_rmse", restore_best_weights=True)``.
        distributed : "mpi" or an mpi4py communicator, optional
            data-parallel training over MPI ranks (:mod:`aerec.distributed`; ``aerec[mpi]``).
        """
        R = self._train_matrix(train)
        verbose = _validation.check_verbose(verbose, allow_auto=True)
        callbacks = as_callbacks(callbacks)
        epochs = _validation.check_nonneg_int(self.epochs if epochs is None else epochs, "epochs")
        batch_size = _validation.check_positive_int(self.batch_size if batch_size is None else batch_size,
                                                "batch_size", hi=None)
        hidden = _validation.check_positive_int(self.hidden, "hidden", hi=2 ** 31 - 1)
        l2 = _validation.check_real(self.l2, "l2", 0.0)
        clip = self._check_clip()
        seed = check_random_state(self.random_state)
        pruning = check_pruning(self.pruning)
        n_rows, n_in = (R.shape[1], R.shape[0]) if self.kind == "item" else R.shape
        from .._memory import check_memory
        # dense rows + mask + the reconstruction, and the weights with Adam's state
        check_memory(3 * 4 * n_rows * n_in + 6 * 4 * 2 * n_in * hidden,
                     f"AutoRec(kind={self.kind!r}) on a {R.shape[0]} x {R.shape[1]} matrix (held dense)",
                     "filter rare users/items first (Interactions.filter) or lower hidden")
        rows = self._rows(R)
        batch_size = min(batch_size, rows.shape[0])  # one batch holds every row at most
        n_in = rows.shape[1]
        dropout = self.dropout
        if isinstance(dropout, (numbers.Real, str)) or dropout is None:
            dropout = (dropout, 0.0)
        elif hasattr(dropout, "__iter__"):
            dropout = tuple(dropout)
        else:
            raise TypeError(f"dropout must be a rate or an (input, hidden) pair of rates, got {dropout!r}")
        spec = make_spec((n_in, hidden, n_in), (self.activation, "identity"), encoder_depth=1,
                         dropout=dropout,
                         loss="masked_mse", l2=l2 / rows.shape[0], optimizer=self.optimizer,
                         learning_rate=self.learning_rate, epsilon=1e-7, seed=derive_seed(seed, 0) % (2 ** 31))
        rng = np.random.default_rng(seed)
        params = [glorot_uniform(rng, n_in, hidden), np.zeros(hidden, np.float32),
                  glorot_uniform(rng, hidden, n_in), np.full(n_in, R.data.mean(), np.float32)]
        self.spec_, self.seed_, self.train_ = spec, seed, R
        self.rows_ = rows
        self.mask_ = np.ascontiguousarray(rows != 0, dtype=np.float32)
        lo, hi = (float(R.data.min()), float(R.data.max())) if clip == "auto" else clip
        self.clip_ = (lo, hi)
        self.global_mean_ = float(R.data.mean())
        self.net_ = self._backend().Network(spec, params)
        self.history_ = {}
        self._recon = None
        if validation is not None:
            from .._validation import as_csr
            validation = as_csr(validation, "validation", n_cols=R.shape[1])
            if validation.shape != R.shape:
                raise ValueError(f"validation has shape {validation.shape} but train has {R.shape}; both must "
                                 "be users x items matrices over the same users and items")
            vu, vi = validation.nonzero()
            vr = np.asarray(validation[vu, vi]).ravel()

        dp = None
        if distributed is not None:
            from ..distributed import data_parallel
            dp = data_parallel(distributed, self.net_, rows, rows, mask=self.mask_, batch_size=batch_size)
            verbose, callbacks = dp.local_verbose(verbose), dp.local_callbacks(callbacks)

        def train_epoch(epoch):
            epoch_seed = derive_seed(seed, 1, epoch) % (2 ** 63)
            if dp is not None:
                loss = dp.train_epoch(epoch_seed)
            else:
                loss = self.net_.train_epoch(rows, rows, mask=self.mask_, batch_size=batch_size, shuffle=True,
                                             seed=epoch_seed)
            self._recon = None
            return loss

        def validate():
            pred = self.predict_ratings(vu, vi)
            return {"val_rmse": float(np.sqrt(np.mean((pred - vr) ** 2)))}

        self.batch_size_ = batch_size
        validate = None if validation is None else validate
        if dp is None:
            run_epochs(self, epochs, train_epoch, validate=validate, callbacks=callbacks, verbose=verbose,
                       name="AutoRec", pruning=pruning)
            return self
        dp.guard(lambda: run_epochs(self, epochs, train_epoch, validate=dp.validate(validate), callbacks=callbacks,
                                    verbose=verbose, name="AutoRec", sync_stop=dp.sync_stop, pruning=pruning))
        dp.guard(dp.finish)  # the optimizer state of every block onto every rank
        self.distributed_stats_ = dp.report()
        return self

    def _continue_fit(self, train, epochs, batch_size=None, verbose=0, callbacks=None, pruning=None):
        """aerec.compress.fine_tune: ``epochs`` more epochs on the training ratings from the current
        weights, optimizer state and masks (``train`` must be the fit's rating matrix); ``pruning``:
        a GradualPruning schedule over these epochs."""
        from .._validation import as_csr
        R = as_csr(train.to_csr() if hasattr(train, "to_csr") else train, "train")
        if R.shape != self.train_.shape or R.nnz != self.train_.nnz:
            raise ValueError(f"train ({R.shape}, {R.nnz} ratings) is not the matrix this AutoRec was fitted on "
                             f"({self.train_.shape}, {self.train_.nnz}); fine-tune on the same ratings")
        rows = self.rows_
        bs = getattr(self, "batch_size_", None) or self.batch_size
        if batch_size is not None:
            bs = _validation.check_positive_int(batch_size, "batch_size", hi=None)
        bs = min(int(bs), rows.shape[0])
        seed, first = self.seed_, len(self.history_.get("loss", []))

        def train_epoch(epoch):
            loss = self.net_.train_epoch(rows, rows, mask=self.mask_, batch_size=bs, shuffle=True,
                                         seed=derive_seed(seed, 1, epoch) % (2 ** 63))
            self._recon = None
            return loss
        run_epochs(self, epochs, train_epoch, callbacks=as_callbacks(callbacks),
                   verbose=_validation.check_verbose(verbose, allow_auto=True), first_epoch=first, name="AutoRec",
                   pruning=pruning)
        self._recon = None

    def _check_clip(self):
        clip = self.clip
        if isinstance(clip, str):
            if clip != "auto":
                raise ValueError(f"clip must be 'auto', None or a (low, high) pair, got {clip!r}")
            return clip
        if clip is None:
            return (None, None)
        try:
            lo, hi = clip
        except (TypeError, ValueError):
            raise TypeError(f"clip must be 'auto', None or a (low, high) pair, got {clip!r}") from None
        lo, hi = _validation.check_real(lo, "clip low"), _validation.check_real(hi, "clip high")
        if lo > hi:
            raise ValueError(f"clip low must be <= high, got {clip!r}")
        return (lo, hi)

    def _get_weights(self):
        return self.net_.get_params()

    def _set_weights(self, params):
        self.net_.set_params(params)
        self._recon = None

    def _reconstruction(self):
        recon = self._recon
        if recon is None:
            with guard_of(self).build():  # one thread computes it; the others wait and share it
                recon = self._recon
                if recon is None:
                    recon = self._recon = self.net_.forward(self.rows_)
        return recon

    @reads
    def predict_ratings(self, users, items):
        """Predicted ratings for (user, item) pairs (equal-length int arrays, training indices)."""
        self._check_fitted("net_")
        from .recommender import _as_ids
        users = _as_ids(users, "users")
        items = _as_ids(items, "items")
        if users.shape != items.shape:
            raise ValueError(f"users and items must have the same shape, got {users.shape} and {items.shape}")
        n_users, n_items = self.train_.shape
        for name, ids, n in (("user", users, n_users), ("item", items, n_items)):
            bad = (ids < 0) | (ids >= n)
            if bad.any():
                raise UnknownIdError(f"{name} {int(ids[bad][0])} is unknown (valid: 0..{n - 1})")
        recon = self._reconstruction()
        pred = recon[items, users] if self.kind == "item" else recon[users, items]
        lo, hi = self.clip_
        if lo is not None:
            pred = np.clip(pred, lo, hi)
        return pred.astype(np.float32)

    def _scores(self, rows, X):
        if self.kind == "item":
            if (rows < 0).any():
                raise UnknownIdError("item-based AutoRec scores only training users")
            return np.ascontiguousarray(self._reconstruction()[:, rows].T)
        dense = np.ascontiguousarray(X.toarray(), dtype=np.float32)
        return self.net_.forward(dense)

    @reads
    def item_vectors(self):
        self._check_fitted("train_")
        # user-based: the decoder's output weights W1 (hidden, n_items) hold one column per item
        # (rows of W1.T), as in the sparse autoencoders; item-based: each item's encoding
        return np.ascontiguousarray(layer_params(self.net_, 1)[0].T) if self.kind == "user" else self.net_.hidden(self.rows_, 0)

    @reads
    def save(self, path, include_history=True):
        """Write the model atomically (no pickle; see ``aerec.io``). AutoRec predicts ratings from
        its training rating matrix, so the file always holds it: ``include_history=False`` raises."""
        self._check_fitted("net_")
        if not _validation.check_bool(include_history, "include_history"):
            raise ValueError("AutoRec predicts from its training rating matrix, so it cannot be saved without "
                             "it; use save(path) (include_history=True)")
        arrays = self._train_arrays()
        wmeta, weights = weights_for_file(self)
        arrays.update(weights)
        mmeta, marrays = mask_state(self.spec_, self.net_)
        arrays.update(marrays)
        self._save(path, {"spec": self.spec_, "seed": self.seed_, "clip": list(self.clip_),
                          "history": self.history_, **wmeta, **mmeta}, arrays)

    @classmethod
    def _from_state(cls, meta, arrays, backend="auto"):
        model = cls._new_from_meta(meta, backend)
        model._restore_train(arrays)
        if not model.has_history_:
            raise KeyError("train_indptr (an AutoRec file holds its training ratings)")
        R = model.train_
        _check_dense_fits(R.shape)
        model.spec_, model.seed_ = _tuples(meta["spec"]), int(meta["seed"])
        model.rows_ = model._rows(R)
        model.mask_ = np.ascontiguousarray(model.rows_ != 0, dtype=np.float32)
        model.clip_ = tuple(meta["clip"])
        model.global_mean_ = float(R.data.mean())
        model.history_ = {k: list(v) for k, v in meta.get("history", {}).items()}
        model._recon = None
        model.net_ = network_from_file(model, meta, arrays, model.spec_)
        return model


def _check_dense_fits(shape):
    """AutoRec keeps its rating matrix dense (rows and mask, 8 bytes an entry): refuse a file whose
    sizes cannot fit in memory before allocating them."""
    from .._memory import check_memory
    check_memory(8 * int(shape[0]) * int(shape[1]),
                 f"this AutoRec keeps its {shape[0]} x {shape[1]} rating matrix dense, which",
                 "load it on a machine with more memory")

"""Sparse-input autoencoder recommenders: MultDAE, MultVAE (Liang et al. 2018) and CDAE (Wu et al.
2016), trained by the backend's one ``Network`` (CSR input, the same CSR as the target; spec:
:mod:`aerec.nn.spec`)."""
from __future__ import annotations

import numbers

import numpy as np
import scipy.sparse as sp

from .. import _validation
from ..io import register_model
from ._serving import atomic_fit, guard_of, reads
from ._training import run_epochs
from .base import (_tuples, check_pruning, check_random_state, derive_seed, glorot_uniform, layer_params,
                   mask_state, network_from_file, weights_for_file)
from .recommender import Recommender

__all__ = ["MultDAE", "MultVAE", "CDAE"]


def _positive_tuple(name, value):
    if isinstance(value, numbers.Integral):
        value = (value,)
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise ValueError(f"{name} must be positive integers, got {value!r}")
    value = tuple(value)
    for v in value:
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Integral) or not 0 < v < 2 ** 31:
            raise ValueError(f"{name} must be positive integers (< 2**31), got {value!r}")
    return tuple(int(v) for v in value)


def _validation_pair(pair, n_items):
    """``(fold_in, held_out)``: validation users never seen in training, as an EvalSet (checked
    here, before any epoch is trained)."""
    from .._validation import as_csr
    from ..data.splits import EvalSet
    if len(pair) != 2:
        raise ValueError(f"validation as a tuple must be (fold_in, held_out), two users x items matrices with one "
                         f"row per validation user; got {len(pair)} elements")
    fold_in = as_csr(pair[0], "validation fold_in", n_cols=n_items)
    held_out = as_csr(pair[1], "validation held_out", n_cols=n_items)
    if fold_in.shape[0] != held_out.shape[0]:
        raise ValueError(f"validation fold_in has {fold_in.shape[0]} rows but held_out has {held_out.shape[0]}; "
                         "pass one row per validation user in both")
    if held_out.nnz == 0:
        raise ValueError("validation held_out has no interactions, so there is nothing to validate on")
    ev = EvalSet(users=np.arange(fold_in.shape[0], dtype=np.int64), fold_in=fold_in, held_out=held_out,
                 known_users=False)
    ev.role = "validation"
    return ev


class _SparseAutoencoder(Recommender):
    """Shared fit / recommend / save of the sparse-input autoencoders."""

    _variational = False
    _loss = "multinomial"
    _normalize = True
    _user_embedding = False
    #: the spec's penalty is ``0.5 * l2_spec * sum ||W||^2`` (aerec.nn.spec); the model's ``l2`` is
    #: multiplied by this before it goes into the spec. Mult-DAE / Mult-VAE: 2, so the model's ``l2``
    #: means ``l2 * sum ||W||^2`` as in Liang et al.'s code (``loss = neg_ll + 2 * reg_var`` with
    #: TensorFlow's half-squared-norm ``l2_regularizer(lam)``).
    _l2_factor = 2.0

    # subclasses define __init__ storing hyper-parameters

    def _l2_spec(self, batch_size):
        """The spec's l2 for this fit: the model's ``l2`` ("auto": ``0.01 / batch_size``, Liang et
        al.'s ``lam``) times ``_l2_factor``."""
        l2 = self.l2
        if isinstance(l2, str):
            if l2 != "auto":
                raise ValueError(f"l2 must be 'auto' or a number >= 0, got {l2!r}")
            if batch_size is None:
                raise ValueError("l2='auto' needs the batch size (0.01 / batch_size); fit resolves it")
            l2 = 0.01 / batch_size
        l2 = _validation.check_real(l2, "l2", 0.0)
        return self._l2_factor * l2

    def _spec(self, n_items, n_users, planned_updates=None, batch_size=None):
        from ..nn.spec import make_spec
        hidden = _positive_tuple("hidden", self.hidden)
        latent = _positive_tuple("latent", self.latent)
        if len(latent) != 1:
            raise ValueError("latent must be one integer (the bottleneck width)")
        sizes = (n_items,) + hidden + latent + tuple(reversed(hidden)) + (n_items,)
        acts = [self.activation] * (len(sizes) - 2) + ["identity"]
        if self._variational:
            acts[len(hidden)] = "identity"  # the (mu, logvar) layer is linear
        # make_spec validates every value (types, finiteness, ranges): no coercion here, so that a
        # string, a NaN or a truncated float never slips through
        kw = dict(activations=tuple(acts), encoder_depth=len(hidden) + 1, variational=self._variational,
                  normalize_input=self._normalize,
                  dropout=_validation.check_real(self.dropout, "dropout", 0.0, 1.0, hi_open=True),
                  loss=self._loss, l2=self._l2_spec(batch_size), optimizer=self.optimizer,
                  learning_rate=_validation.check_real(self.learning_rate, "learning_rate", 0.0, lo_open=True),
                  lazy=_validation.check_bool(self.lazy_adam, "lazy_adam"), seed=0)
        if self._variational:
            kw.update(beta=_validation.check_real(self.anneal_cap, "anneal_cap", 0.0),
                      anneal_steps=self._anneal_steps(planned_updates))
        if self._user_embedding:
            # One extra, never-trained row (kept at zero: no gradient reaches it) serves users folded
            # in from their history, who have no learned vector.
            kw.update(n_users=int(n_users) + 1,
                      negative_samples=_validation.check_nonneg_int(self.negative_samples, "negative_samples",
                                                                hi=2 ** 31 - 1))
        return make_spec(sizes, **kw)

    def _anneal_steps(self, planned_updates):
        """total_anneal_steps, with "auto" = 80% of the updates this fit plans (so the KL weight
        reaches ``anneal_cap`` whatever the data size; a fixed 200000 kept it <= 0.0015 on small data)."""
        steps = self.total_anneal_steps
        if isinstance(steps, str) and steps == "auto":
            return max(1, int(0.8 * (planned_updates or 1)))
        if isinstance(steps, str):
            raise ValueError(f"total_anneal_steps must be 'auto' or an integer >= 0, got {steps!r}")
        return _validation.check_nonneg_int(steps, "total_anneal_steps")

    def _batch_size(self, batch_size, n_users):
        """batch_size, with "auto" = n_users // 10 within [32, 500]: about ten updates an epoch on
        small data, Liang et al.'s 500 on large data."""
        bs = self.batch_size if batch_size is None else batch_size
        if isinstance(bs, str) and bs == "auto":
            return int(min(500, max(32, n_users // 10)))
        if isinstance(bs, str):
            raise ValueError(f"batch_size must be 'auto' or a positive integer, got {bs!r}")
        return _validation.check_positive_int(bs, "batch_size", hi=None)

    def _init_params(self, spec, rng):
        from ..nn.spec import param_shapes
        params = []
        for shape in param_shapes(spec)[:2 * (len(spec["layer_sizes"]) - 1)]:
            if len(shape) == 2:
                params.append(glorot_uniform(rng, *shape))
            else:
                params.append(rng.normal(0.0, 1e-3, shape).astype(np.float32))  # Liang et al.'s bias init
        if spec["n_users"]:
            U = rng.normal(0.0, 1e-2, (spec["n_users"], spec["layer_sizes"][1])).astype(np.float32)
            U[-1] = 0.0  # the fold-in slot
            params.append(U)
        return params

    @atomic_fit
    def fit(self, train, validation=None, epochs=None, batch_size=None, early_stopping=None, verbose="auto",
            callbacks=None, k=100, distributed=None):
        """Train on a users x items matrix (aerec.data.Interactions or scipy.sparse; binarised).

        Parameters
        ----------
        train : aerec.data.Interactions or scipy.sparse (users x items)
            a pandas DataFrame of (user, item) rows: ``aerec.data.from_dataframe(df, "user", "item")``
            first (its raw ids then serve ``recommend_raw``).
        validation : aerec.data EvalSet or Split, or a ``(fold_in, held_out)`` pair, optional
            monitored by NDCG@k after each epoch (``history_["val_ndcg@k"]``); the best epoch's
            weights are kept. A pair holds two users x items matrices (scipy.sparse or dense) with
            one row per validation user: what the model is given, and what it should retrieve.
        epochs, batch_size : int, optional
            override the constructor values.
        early_stopping : int, optional
            stop after this many epochs without a better validation NDCG.
        verbose : "auto" or int, default "auto"
            0 silent; 1 a progress bar; "auto" a bar once the fit has run 5 seconds.
        callbacks : list of Callback or callables ``f(epoch, logs)``, optional
            e.g. ``aerec.CSVLogger``, ``aerec.ModelCheckpoint``, ``aerec.ReduceLROnPlateau``.
        k : int > 0, default 100
            the validation cut-off (``val_ndcg@k``).
        distributed : "mpi" or an mpi4py communicator, optional
            data-parallel training over MPI ranks (``mpiexec -n N python train.py``, every rank
            calling ``fit`` with the same data): each rank trains on its shard of the users and
            the gradients are summed every step (:mod:`aerec.distributed`); ``batch_size`` is the
            global batch (each rank computes about batch_size / N of its rows), so the result
            equals one process's training to float32 reduction order. Needs ``aerec[mpi]``.
        """
        from ..callbacks import as_callbacks
        X = self._train_matrix(train)
        callbacks = as_callbacks(callbacks)
        X = self._binary(X)
        epochs = _validation.check_nonneg_int(self.epochs if epochs is None else epochs, "epochs")
        batch_size = min(self._batch_size(batch_size, X.shape[0]), X.shape[0])  # one batch holds every user at most
        self.batch_size_ = batch_size
        if early_stopping is not None:
            early_stopping = _validation.check_positive_int(early_stopping, "early_stopping")
        k = _validation.check_k(k)
        verbose = _validation.check_verbose(verbose, allow_auto=True)
        if validation is not None and hasattr(validation, "validation") and hasattr(validation, "test"):
            if validation.validation is None:
                raise ValueError("validation is a Split without a validation set; pass n_validation_users > 0 "
                                 "when splitting, or validation=None")
            validation = validation.validation
        if isinstance(validation, tuple):
            validation = _validation_pair(validation, X.shape[1])
        if validation is not None:
            from ..data.splits import EvalSet
            if not isinstance(validation, EvalSet):
                raise TypeError(f"validation must be an aerec.data EvalSet or Split, or a (fold_in, held_out) pair "
                                f"of users x items matrices, got {type(validation).__name__}")
            if validation.n_items != X.shape[1]:
                raise ValueError(f"validation has {validation.n_items} items but train has {X.shape[1]}; "
                                 "make both from one split")
        seed = check_random_state(self.random_state)
        pruning = check_pruning(getattr(self, "pruning", None))
        spec = self._spec(X.shape[1], X.shape[0], planned_updates=epochs * -(-X.shape[0] // batch_size),
                          batch_size=batch_size)
        spec["seed"] = derive_seed(seed, 0) % (2 ** 31)
        from .._memory import check_memory
        from ..nn.spec import param_shapes
        n_params = sum(int(np.prod(s)) for s in param_shapes(spec))
        # weights, gradients and Adam's two moments in float32, plus the float64 draw at init
        check_memory(6 * 4 * n_params, f"{type(self).__name__} with {n_params:,} parameters",
                     "use smaller hidden/latent layers or filter rare items")
        params = self._init_params(spec, np.random.default_rng(seed))
        self.seed_, self.spec_, self.train_ = seed, spec, X
        self.net_ = self._backend().Network(spec, params)
        self._index = None
        self.history_ = {}
        users = np.arange(X.shape[0], dtype=np.int32)
        dp = None
        if distributed is not None:
            from ..distributed import data_parallel
            dp = data_parallel(distributed, self.net_, X, X, users=users if self._user_embedding else None,
                               batch_size=batch_size)
            verbose, callbacks = dp.local_verbose(verbose), dp.local_callbacks(callbacks)

        def train_epoch(epoch):
            if dp is not None:
                return dp.train_epoch(derive_seed(seed, 1, epoch) % (2 ** 63))
            return self.net_.train_epoch(X, X, batch_size=batch_size, shuffle=True,
                                         seed=derive_seed(seed, 1, epoch) % (2 ** 63),
                                         users=users if self._user_embedding else None)

        def validate():
            from ..evaluation import evaluate
            res = evaluate(self, validation, ks=(k,))
            return {f"val_ndcg@{k}": float(res[f"ndcg@{k}"])}

        validate = None if validation is None else validate
        if dp is None:
            run_epochs(self, epochs, train_epoch, validate=validate, monitor=f"val_ndcg@{k}", mode="max",
                       keep_best=True, early_stopping=early_stopping, callbacks=callbacks, verbose=verbose,
                       pruning=pruning)
            return self
        dp.guard(lambda: run_epochs(self, epochs, train_epoch, validate=dp.validate(validate),
                                    monitor=f"val_ndcg@{k}", mode="max", keep_best=True,
                                    early_stopping=early_stopping, callbacks=callbacks, verbose=verbose,
                                    sync_stop=dp.sync_stop, pruning=pruning))
        dp.guard(dp.finish)
        self.distributed_stats_ = dp.report()
        return self

    def _continue_fit(self, train, epochs, batch_size=None, verbose=0, callbacks=None, pruning=None):
        """aerec.compress.fine_tune: ``epochs`` more epochs on ``train`` (the training matrix) from the
        current weights, optimizer state and masks, continuing the epoch count and its seeds;
        ``pruning``: a GradualPruning schedule over these epochs."""
        from .._validation import as_csr
        from ..callbacks import as_callbacks
        X = as_csr(train.to_csr() if hasattr(train, "to_csr") and not sp.issparse(train) else train, "train")
        if X.shape != self.train_.shape:
            raise ValueError(f"train has shape {X.shape} but the model was fitted on {self.train_.shape}; "
                             "fine-tune on the same users x items matrix")
        X = self._binary(X)
        if batch_size is None:  # the fit's (a loaded model: the constructor's)
            bs = getattr(self, "batch_size_", None) or self._batch_size(None, X.shape[0])
        else:
            bs = _validation.check_positive_int(batch_size, "batch_size", hi=None)
        bs = min(bs, X.shape[0])
        seed, first = self.seed_, len(self.history_.get("loss", []))
        users = np.arange(X.shape[0], dtype=np.int32)

        def train_epoch(epoch):
            return self.net_.train_epoch(X, X, batch_size=bs, shuffle=True,
                                         seed=derive_seed(seed, 1, epoch) % (2 ** 63),
                                         users=users if self._user_embedding else None)
        self._index = None
        run_epochs(self, epochs, train_epoch, callbacks=as_callbacks(callbacks),
                   verbose=_validation.check_verbose(verbose, allow_auto=True), first_epoch=first, pruning=pruning)
        self._index = None

    def _get_weights(self):
        return self.net_.get_params()

    # -- scoring ----------------------------------------------------------------------------------
    def _users_arg(self, rows):
        if not self._user_embedding:
            return None
        return np.where(rows >= 0, rows, self.train_.shape[0]).astype(np.int32)

    @staticmethod
    def _binary(X):
        return sp.csr_matrix((np.ones(X.nnz, np.float32), X.indices, X.indptr), shape=X.shape)

    def _scores(self, rows, X):
        return self.net_.forward(self._binary(X), users=self._users_arg(rows))

    def _search_index(self):
        """TopK over the decoder's output layer: score = h_last @ W_last + b_last (never forms the
        n_users x n_items logits). Built once per set of weights, by one thread (the others wait
        for it instead of each building its own). A compressed network brings its own: the fused
        decoder + top-k over its packed output layer."""
        from ..search import TopK
        net = self.net_
        if getattr(net, "compressed", False):
            return net.output_index()

        def fresh(c):  # the cache holds the network itself, so a reused id() cannot match
            return c is not None and c[0] is net and c[1] == net.step
        cached = getattr(self, "_index", None)
        if not fresh(cached):
            with guard_of(self).build():
                cached = getattr(self, "_index", None)
                if not fresh(cached):
                    p = net.get_params()
                    n_layers = len(self.spec_["layer_sizes"]) - 1
                    W, b = p[2 * (n_layers - 1)], p[2 * (n_layers - 1) + 1]
                    cached = (net, net.step, TopK(np.ascontiguousarray(W.T), bias=b, prune=True,
                                                  backend=self.backend))
                    self._index = cached
        return cached[2]

    def _topk(self, rows, X, k, exclude, candidates):
        if candidates is not None or len(self.spec_["layer_sizes"]) < 3:
            return self._backend().select_topk(self._scores(rows, X), k, exclude, candidates)
        h = self.net_.hidden(self._binary(X), len(self.spec_["layer_sizes"]) - 3, users=self._users_arg(rows))
        ids, scores = self._search_index().search(h, k, exclude=exclude)
        return ids, scores

    def _set_weights(self, p):
        self.net_.set_params(p)
        self._index = None

    @reads
    def encode(self, user_items, user_ids=None):
        """Bottleneck representation of users from their histories: (n, latent) float32."""
        self._check_fitted("net_")
        if user_ids is not None:
            rows, X, scalar = self._histories(user_ids, user_items)
        else:
            from .._validation import as_csr
            X = as_csr(user_items, "user_items", n_cols=self.train_.shape[1])
            rows, scalar = np.full(X.shape[0], -1, np.int64), False
        z = self.net_.encode(self._binary(X), users=self._users_arg(rows))
        return z[0] if scalar else z

    @reads
    def item_vectors(self):
        """Decoder output weights, one row per item: (n_items, h_last).

        They pair with :meth:`user_vectors` and :meth:`item_biases`: a user's scores (the logits
        ``recommend`` ranks) are ``user_vectors(u) @ item_vectors().T + item_biases()``, so::

            index = aerec.search.TopK(model.item_vectors(), bias=model.item_biases())
            ids, scores = index.search(model.user_vectors(users), k, exclude=seen_csr)

        gives ``recommend(users, k)``'s ids and scores. ``encode`` returns the bottleneck
        (``latent`` wide), which does not pair with these vectors."""
        self._check_fitted("train_")
        W, _ = layer_params(self.net_, len(self.spec_["layer_sizes"]) - 2)
        return np.ascontiguousarray(W.T)

    @reads
    def item_biases(self):
        """The output layer's bias, one per item: (n_items,) float32 (see :meth:`item_vectors`)."""
        self._check_fitted("train_")
        _, b = layer_params(self.net_, len(self.spec_["layer_sizes"]) - 2)
        return np.array(b, dtype=np.float32)

    @reads
    def user_vectors(self, user_ids=None, user_items=None):
        """Query vectors that pair with :meth:`item_vectors`: the last hidden layer for users
        (training user ids, or histories to fold in, as in ``recommend``): (n, h_last) float32,
        1-D for a scalar user id. ``user_vectors(u) @ item_vectors().T + item_biases()`` are the
        scores ``recommend`` ranks (at inference: no dropout; MultVAE uses the posterior mean)."""
        self._check_fitted("net_")
        rows, X, scalar = self._histories(user_ids, user_items)
        h = self.net_.hidden(self._binary(X), len(self.spec_["layer_sizes"]) - 3, users=self._users_arg(rows))
        return h[0] if scalar else h

    # -- persistence ------------------------------------------------------------------------------
    @reads
    def save(self, path, include_history=True):
        """Write the model atomically: hyper-parameters, weights, training history, model card
        (no pickle; see ``aerec.io``).

        Parameters
        ----------
        path : str or path-like
        include_history : bool, default True
            keep the training interactions (and raw user ids) in the file. False writes a smaller
            serving artefact: ``recommend(user_items=...)`` then serves every user by fold-in (CDAE:
            with the fold-in user vector unless ``user_ids`` are passed too), and
            ``recommend(user_ids)`` alone raises, asking for the users' histories.
        """
        self._check_fitted("net_")
        arrays = self._train_arrays(include_history)
        wmeta, weights = weights_for_file(self)
        arrays.update(weights)
        mmeta, marrays = mask_state(self.spec_, self.net_)
        arrays.update(marrays)
        meta = {"spec": self.spec_, "seed": self.seed_, "history": self.history_, **wmeta, **mmeta}
        if getattr(self, "best_epoch_", None) is not None:
            meta["best_epoch"] = int(self.best_epoch_)
        self._save(path, meta, arrays)

    @classmethod
    def _from_state(cls, meta, arrays, backend="auto"):
        model = cls._new_from_meta(meta, backend)
        model._restore_train(arrays)
        model.spec_, model.seed_ = _tuples(meta["spec"]), int(meta["seed"])
        model.history_ = {k: list(v) for k, v in meta.get("history", {}).items()}
        if "best_epoch" in meta:
            model.best_epoch_ = meta["best_epoch"]
        model.net_ = network_from_file(model, meta, arrays, model.spec_)
        model._index = None
        return model


@register_model
class MultDAE(_SparseAutoencoder):
    """Mult-DAE (Liang et al. 2018): L2-normalised, dropout-corrupted history -> [I-600-200-600-I]
    tanh -> softmax over items, multinomial log-likelihood.

    ``fit`` takes a users x items matrix: ``aerec.data.Interactions`` or scipy.sparse (a pandas
    DataFrame of (user, item) rows: ``aerec.data.from_dataframe(df, "user", "item")`` first).

    Parameters
    ----------
    hidden : tuple of int >= 1, default (600,)
        encoder widths before the bottleneck (the decoder mirrors them): ``I-600-200-600-I``.
    latent : int >= 1, default 200
        the bottleneck width (``encode`` returns it).
    activation : str, default "tanh"
        hidden activation: "identity", "relu", "sigmoid", "tanh", "elu" or "selu".
    dropout : float in [0, 1), default 0.5
        inverted dropout on the L2-normalised input history (the denoising).
    l2 : float >= 0 or "auto", default "auto"
        L2 penalty on the weights (not the biases), added to each batch's mean loss as
        ``l2 * sum ||W||^2`` and differentiated with it (Adam sees it; not decoupled weight decay).
        "auto": ``0.01 / batch_size``, Liang et al.'s ``lam`` (``2e-05`` at the default batch of 500).
        This is the reference code's penalty; aerec <= 0.1 applied half of it.
    learning_rate : float > 0, default 1e-3
        the optimizer's step size (``ReduceLROnPlateau`` can lower it during a fit).
    epochs : int >= 0, default 100
        training epochs (``fit(epochs=...)`` overrides); with ``validation`` the best epoch's weights
        are kept.
    batch_size : int >= 1 or "auto", default 500
        users per update (``fit(batch_size=...)`` overrides; capped at the number of users);
        "auto": ``n_users // 10`` within [32, 500].
    optimizer : {"adam", "adamw", "sgd"}, default "adam"
    lazy_adam : bool, default False
        Adam updates only the rows of the first weight matrix that the batch touches (faster on
        many items; not the dense Adam of the papers).
    random_state : int >= 0 or None, default 0
        seeds the initial weights, the shuffling, dropout; None draws one (recorded in
        ``seed_``). Same seed and thread count: the same model.
    backend : {"auto", "cpp", "numba", "numpy"}, default "auto"
        the kernels (see :func:`aerec.backends.get`); not saved in model files.
    pruning : aerec.compress.GradualPruning or None, default None
        gradual magnitude pruning during ``fit`` (Zhu & Gupta's cubic schedule over the fit's
        epochs; see :class:`aerec.compress.GradualPruning`): pruned weights stay exactly 0 (the
        optimizer skips them), the masks are saved with the model, ``history_["sparsity"]`` and
        ``sparsity_`` report the pruned fraction. With ``validation`` only epochs at the final
        sparsity can be kept as the best.
    """

    def __init__(self, hidden=(600,), latent=200, activation="tanh", dropout=0.5, l2="auto",
                 learning_rate=1e-3, epochs=100, batch_size=500, optimizer="adam", lazy_adam=False,
                 random_state=0, backend="auto", pruning=None):
        self.hidden, self.latent, self.activation, self.dropout, self.l2 = hidden, latent, activation, dropout, l2
        self.learning_rate, self.epochs, self.batch_size, self.optimizer = learning_rate, epochs, batch_size, optimizer
        self.lazy_adam, self.random_state, self.backend, self.pruning = lazy_adam, random_state, backend, pruning


@register_model
class MultVAE(_SparseAutoencoder):
    """Mult-VAE^PR (Liang et al. 2018): Gaussian bottleneck, KL weight annealed linearly to
    ``anneal_cap`` over ``total_anneal_steps`` updates; encode returns the posterior mean.

    ``fit`` takes a users x items matrix: ``aerec.data.Interactions`` or scipy.sparse (a pandas
    DataFrame of (user, item) rows: ``aerec.data.from_dataframe(df, "user", "item")`` first).

    Parameters
    ----------
    hidden : tuple of int >= 1, default (600,)
        encoder widths before the bottleneck (the decoder mirrors them): ``I-600-200-600-I``.
    latent : int >= 1, default 200
        the bottleneck width (``encode`` returns it).
    activation : str, default "tanh"
        hidden activation: "identity", "relu", "sigmoid", "tanh", "elu" or "selu".
    dropout : float in [0, 1), default 0.5
        inverted dropout on the L2-normalised input history (the denoising).
    l2 : float >= 0 or "auto", default 0.0
        L2 penalty on the weights (not the biases), added to each batch's mean loss as
        ``l2 * sum ||W||^2`` (Liang et al.'s form; their Mult-VAE uses none); "auto":
        ``0.01 / batch_size``.
    anneal_cap : float >= 0, default 0.2
        the largest KL weight beta (Liang et al.'s 0.2; 0 trains a plain Mult-DAE with noise).
    total_anneal_steps : int >= 0 or "auto", default "auto"
        updates over which beta rises linearly from 0 to ``anneal_cap`` (0: ``anneal_cap`` from the
        start). "auto": 80% of the updates the fit plans (epochs x batches per epoch), so beta
        reaches its cap on data of any size (the paper's 200000 suits ML-20M; on a few hundred
        users it kept beta below 0.0015).
    learning_rate : float > 0, default 1e-3
        the optimizer's step size (``ReduceLROnPlateau`` can lower it during a fit).
    epochs : int >= 0, default 100
        training epochs (``fit(epochs=...)`` overrides); with ``validation`` the best epoch's weights
        are kept.
    batch_size : int >= 1 or "auto", default 500
        users per update (``fit(batch_size=...)`` overrides; capped at the number of users);
        "auto": ``n_users // 10`` within [32, 500].
    optimizer : {"adam", "adamw", "sgd"}, default "adam"
    lazy_adam : bool, default False
        Adam updates only the rows of the first weight matrix that the batch touches (faster on
        many items; not the dense Adam of the papers).
    random_state : int >= 0 or None, default 0
        seeds the initial weights, the shuffling, dropout, the reparameterisation noise; None draws one (recorded in
        ``seed_``). Same seed and thread count: the same model.
    backend : {"auto", "cpp", "numba", "numpy"}, default "auto"
        the kernels (see :func:`aerec.backends.get`); not saved in model files.
    pruning : aerec.compress.GradualPruning or None, default None
        gradual magnitude pruning during ``fit`` (Zhu & Gupta's cubic schedule over the fit's
        epochs; see :class:`aerec.compress.GradualPruning`): pruned weights stay exactly 0 (the
        optimizer skips them), the masks are saved with the model, ``history_["sparsity"]`` and
        ``sparsity_`` report the pruned fraction. With ``validation`` only epochs at the final
        sparsity can be kept as the best.
    """

    _variational = True

    def __init__(self, hidden=(600,), latent=200, activation="tanh", dropout=0.5, l2=0.0,
                 anneal_cap=0.2, total_anneal_steps="auto", learning_rate=1e-3, epochs=100, batch_size=500,
                 optimizer="adam", lazy_adam=False, random_state=0, backend="auto", pruning=None):
        self.hidden, self.latent, self.activation, self.dropout, self.l2 = hidden, latent, activation, dropout, l2
        self.anneal_cap, self.total_anneal_steps = anneal_cap, total_anneal_steps
        self.learning_rate, self.epochs, self.batch_size, self.optimizer = learning_rate, epochs, batch_size, optimizer
        self.lazy_adam, self.random_state, self.backend, self.pruning = lazy_adam, random_state, backend, pruning


@register_model
class CDAE(_SparseAutoencoder):
    """Collaborative Denoising Autoencoder (Wu et al. 2016): corrupted history + a per-user vector,
    sigmoid hidden layer, logistic loss over positives and sampled negatives.

    ``fit`` takes a users x items matrix: ``aerec.data.Interactions`` or scipy.sparse (a pandas
    DataFrame of (user, item) rows: ``aerec.data.from_dataframe(df, "user", "item")`` first).
    Users folded in from their history (never seen in training) get a zero user vector.

    Parameters
    ----------
    hidden : tuple of int >= 1, default ()
        extra encoder widths before the bottleneck (Wu et al.: none, ``I-50-I``).
    latent : int >= 1, default 50
        the hidden (bottleneck) width and the user vectors' length.
    activation : str, default "sigmoid"
        hidden activation: "identity", "relu", "sigmoid", "tanh", "elu" or "selu".
    dropout : float in [0, 1), default 0.2
        inverted dropout on the input history (the corruption).
    l2 : float >= 0 or "auto", default 1e-05
        L2 penalty on the weights and user vectors (not the biases), added to the batch loss as
        ``0.5 * l2 * (sum ||W||^2 + ||U||^2)``; "auto": ``0.01 / batch_size``.
    negative_samples : int >= 0, default 5
        unobserved items sampled per observed one for the logistic loss (0: every item).
    learning_rate : float > 0, default 1e-3
        the optimizer's step size (``ReduceLROnPlateau`` can lower it during a fit).
    epochs : int >= 0, default 100
        training epochs (``fit(epochs=...)`` overrides); with ``validation`` the best epoch's weights
        are kept.
    batch_size : int >= 1 or "auto", default 256
        users per update (``fit(batch_size=...)`` overrides; capped at the number of users);
        "auto": ``n_users // 10`` within [32, 500].
    optimizer : {"adam", "adamw", "sgd"}, default "adam"
    lazy_adam : bool, default False
        Adam updates only the rows of the first weight matrix that the batch touches (faster on
        many items; not the dense Adam of the papers).
    random_state : int >= 0 or None, default 0
        seeds the initial weights, the shuffling, dropout, the negative samples; None draws one (recorded in
        ``seed_``). Same seed and thread count: the same model.
    backend : {"auto", "cpp", "numba", "numpy"}, default "auto"
        the kernels (see :func:`aerec.backends.get`); not saved in model files.
    pruning : aerec.compress.GradualPruning or None, default None
        gradual magnitude pruning during ``fit`` (Zhu & Gupta's cubic schedule over the fit's
        epochs; see :class:`aerec.compress.GradualPruning`): pruned weights stay exactly 0 (the
        optimizer skips them), the masks are saved with the model, ``history_["sparsity"]`` and
        ``sparsity_`` report the pruned fraction. With ``validation`` only epochs at the final
        sparsity can be kept as the best.
    """

    _loss = "logistic"
    _normalize = False
    _user_embedding = True
    _l2_factor = 1.0  # the spec's form: 0.5 * l2 * (sum ||W||^2 + ||U||^2)

    def __init__(self, hidden=(), latent=50, activation="sigmoid", dropout=0.2, l2=1e-5, negative_samples=5,
                 learning_rate=1e-3, epochs=100, batch_size=256, optimizer="adam", lazy_adam=False,
                 random_state=0, backend="auto", pruning=None):
        self.hidden, self.latent, self.activation, self.dropout, self.l2 = hidden, latent, activation, dropout, l2
        self.negative_samples = negative_samples
        self.learning_rate, self.epochs, self.batch_size, self.optimizer = learning_rate, epochs, batch_size, optimizer
        self.lazy_adam, self.random_state, self.backend, self.pruning = lazy_adam, random_state, backend, pruning

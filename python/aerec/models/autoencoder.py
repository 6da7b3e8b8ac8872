"""Dense autoencoder (the Keras tutorial model), trained by a backend ``Network``."""
from __future__ import annotations

import numbers

import numpy as np

from .. import _validation
from ..io import register_model
from ._serving import atomic_fit, guard_of, reads
from ._training import run_epochs
from .base import (Estimator, _tuples, check_pruning, check_random_state, derive_seed, glorot_uniform, mask_state,
                   network_from_file, weights_for_file)
from ..nn.spec import make_spec

__all__ = ["Autoencoder"]


@register_model
class Autoencoder(Estimator):
    """Feed-forward autoencoder on dense features: ``x -> hidden... -> x_hat``.

    The default is the classic Keras tutorial model: ``Input(n) -> Dense(64, relu) ->
    Dense(n, sigmoid)``, MSE, Adam(1e-3).

    Parameters
    ----------
    hidden : tuple of int >= 1, default (64,)
        hidden layer widths, e.g. ``(64,)`` or ``(128, 8, 128)``.
    activation : str or tuple of str, default "relu"
        hidden activations: identity, relu, sigmoid, tanh, elu, selu (one, or one per hidden layer).
    output_activation : str, default "sigmoid"
        activation of the reconstruction layer (``sigmoid`` for data in [0, 1]).
    loss : {"mse", "bce", "masked_mse", "multinomial", "logistic"}, default "mse"
        ``bce`` needs a sigmoid output; ``masked_mse`` counts only entries where the mask is non-zero
        (default mask: ``y != 0``); see :mod:`aerec.nn.spec` for every loss.
    optimizer : {"adam", "adamw", "sgd"}, default "adam"
    learning_rate : float > 0, default 1e-3
    random_state : int >= 0 or None, default 0
        seeds weight init, shuffling and dropout. Same seed + same thread count -> same result.
    backend : {"auto", "cpp", "numba", "numpy"}, default "auto"
        the kernels (see :func:`aerec.backends.get`).
    bottleneck : int in [0, len(hidden)) or None, default None
        index of the hidden layer ``encode`` returns (None: the narrowest).
    dropout : float in [0, 1) or tuple of them, default 0.0
        inverted dropout on the input of each weight layer during training (a float: input only;
        a tuple: one rate per weight layer).
    l2 : float >= 0, default 0.0
        L2 penalty on the weights, added to the loss.
    weight_decay : float >= 0, default 0.0
        decoupled weight decay (``optimizer="adamw"``).
    momentum : float in [0, 1), default 0.0
        SGD momentum.
    nesterov : bool, default False
        Nesterov momentum (SGD).
    beta1 : float in [0, 1), default 0.9
        Adam's first-moment decay.
    beta2 : float in [0, 1), default 0.999
        Adam's second-moment decay.
    epsilon : float > 0, default 1e-7
        Adam's epsilon (Keras' 1e-7).
    pruning : aerec.compress.GradualPruning or None, default None
        gradual magnitude pruning during each ``fit`` (Zhu & Gupta's schedule over that fit's
        epochs; see :class:`aerec.compress.GradualPruning`): the pruned weights stay exactly 0, the
        masks are saved with the model, ``history_["sparsity"]`` and ``sparsity_`` report it.

    Attributes
    ----------
    history_ : dict
        ``{"loss": [...], "val_loss": [...]}``, one entry per epoch trained.
    n_features_in_ : int
    """

    def __init__(self, hidden=(64,), activation="relu", output_activation="sigmoid", loss="mse",
                 optimizer="adam", learning_rate=1e-3, random_state=0, backend="auto", *,
                 bottleneck=None, dropout=0.0, l2=0.0, weight_decay=0.0, momentum=0.0, nesterov=False,
                 beta1=0.9, beta2=0.999, epsilon=1e-7, pruning=None):
        self.hidden = hidden
        self.pruning = pruning
        self.activation = activation
        self.output_activation = output_activation
        self.loss = loss
        self.optimizer = optimizer
        self.learning_rate = learning_rate
        self.random_state = random_state
        self.backend = backend
        self.bottleneck = bottleneck
        self.dropout = dropout
        self.l2 = l2
        self.weight_decay = weight_decay
        self.momentum = momentum
        self.nesterov = nesterov
        self.beta1 = beta1
        self.beta2 = beta2
        self.epsilon = epsilon
        self.net_ = None
        self.history_ = {}
        self.stop_training = False
        # Fail early on bad names and values (the spec is rebuilt with real sizes at fit).
        self._spec(4)
        check_pruning(pruning)
        from .. import _backends
        _backends._check_name(backend)

    # -- spec ---------------------------------------------------------------------------------
    def _hidden(self):
        if isinstance(self.hidden, (str, bytes)) or not (isinstance(self.hidden, numbers.Integral)
                                                          or hasattr(self.hidden, "__iter__")):
            raise ValueError(f"hidden must be a tuple of positive layer widths such as (64,), got {self.hidden!r}")
        hidden = (self.hidden,) if isinstance(self.hidden, numbers.Integral) else tuple(self.hidden)
        if len(hidden) == 0:
            raise ValueError("hidden must name at least one hidden layer width, e.g. (64,)")
        for h in hidden:
            if isinstance(h, (bool, np.bool_)) or not isinstance(h, numbers.Integral) or not 0 < h < 2 ** 31:
                raise ValueError(f"hidden layer widths must be positive integers, got {self.hidden!r}")
        return tuple(int(h) for h in hidden)

    def _spec(self, n_features: int) -> dict:
        hidden = self._hidden()
        acts = self.activation
        if isinstance(acts, str):
            acts = (acts,) * len(hidden)
        if not hasattr(acts, "__iter__"):
            raise TypeError(f"activation must be a name such as 'relu' or one name per hidden layer, got {acts!r}")
        acts = tuple(acts)
        if len(acts) != len(hidden):
            raise ValueError(f"activation needs one name per hidden layer ({len(hidden)}), got {len(acts)}")
        if self.bottleneck is None:
            bottleneck = int(np.argmin(hidden))
        else:
            if isinstance(self.bottleneck, bool) or not isinstance(self.bottleneck, numbers.Integral) \
                    or not 0 <= self.bottleneck < len(hidden):
                raise ValueError(f"bottleneck must be a hidden layer index in [0, {len(hidden)}), got {self.bottleneck!r}")
            bottleneck = int(self.bottleneck)
        n_layers = len(hidden) + 1
        dropout = self.dropout
        if not isinstance(dropout, numbers.Real):
            if isinstance(dropout, (str, bytes)) or not hasattr(dropout, "__iter__"):
                raise TypeError(f"dropout must be a rate in [0, 1) or one rate per weight layer, got {dropout!r}")
            dropout = tuple(dropout)
            if len(dropout) != n_layers:
                raise ValueError(f"dropout needs one rate per weight layer ({n_layers}), got {len(dropout)}")
        return make_spec((n_features,) + hidden + (n_features,), acts + (self.output_activation,),
                         dropout=dropout, encoder_depth=bottleneck + 1, loss=self.loss, l2=self.l2,
                         optimizer=self.optimizer, learning_rate=self.learning_rate, beta1=self.beta1,
                         beta2=self.beta2, epsilon=self.epsilon, weight_decay=self.weight_decay,
                         momentum=self.momentum, nesterov=self.nesterov, seed=0)

    def _build(self, n_features: int):
        seed = check_random_state(self.random_state)
        spec = self._spec(n_features)
        spec["seed"] = derive_seed(seed, 0) % (2 ** 31)
        rng = np.random.default_rng(seed)
        params = []
        sizes = spec["layer_sizes"]
        from .._memory import check_memory
        n_params = sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))
        check_memory(6 * 4 * n_params, f"Autoencoder with {n_params:,} parameters",
                     "use smaller hidden layers")
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
            params += [glorot_uniform(rng, fan_in, fan_out), np.zeros(fan_out, dtype=np.float32)]
        self.seed_ = seed
        self.spec_ = spec
        self.n_features_in_ = n_features
        self.epochs_trained_ = 0
        self.history_ = {}
        self.net_ = self._backend().Network(spec, params)

    # -- training -----------------------------------------------------------------------------
    def _mask_for(self, y, mask, name):
        if self.loss != "masked_mse":
            if mask is not None:
                raise ValueError("mask is only used with loss='masked_mse'")
            return None
        if mask is None:
            return np.ascontiguousarray(y != 0, dtype=np.float32)
        m, _ = _validation.as_matrix(mask, name)
        if m.shape != y.shape:
            raise ValueError(f"{name} has shape {m.shape} but the targets have shape {y.shape}")
        return m

    def _xy(self, x, y, mask, names=("x", "y", "mask")):
        n_cols = self.n_features_in_ if self.net_ is not None else None
        x, _ = _validation.as_matrix(x, names[0], n_cols=n_cols)
        if y is None:
            y = x
        else:
            y, _ = _validation.as_matrix(y, names[1], n_cols=x.shape[1])
            if y.shape[0] != x.shape[0]:
                raise ValueError(f"{names[0]} has {x.shape[0]} rows but {names[1]} has {y.shape[0]}")
        if self.loss == "bce" and (y.min() < 0 or y.max() > 1):
            raise ValueError("loss='bce' needs targets in [0, 1]; scale the data or use loss='mse'")
        return x, y, self._mask_for(y, mask, names[2])

    def _prepare_trainee(self):
        # fit continues from the current weights: train a copy of the network (weights and
        # optimizer state), so the served one stays as it is until the new one is installed
        if self.net_ is not None:
            net = self._backend().Network(self.spec_, self.net_.get_params())
            net.set_optimizer_state(self.net_.get_optimizer_state())
            net.set_masks(self.net_.get_masks())
            self.net_ = net
        self.history_ = {k: list(v) for k, v in self.history_.items()}
        self._cache = None

    @atomic_fit
    def fit(self, x, y=None, epochs=1, batch_size=32, validation_data=None, shuffle=True, callbacks=None,
            verbose="auto", mask=None, distributed=None):
        """Train for ``epochs`` epochs (continuing from the current weights if already fitted).

        Parameters
        ----------
        x : array (n_samples, n_features)
            real-valued inputs (converted to float32 once).
        y : array like x, optional
            targets; default ``x`` (an autoencoder reconstructs its input).
        epochs : int >= 0
        batch_size : int > 0
            the last partial batch is trained too.
        validation_data : array or (x_val, y_val) or (x_val, y_val, mask_val), optional
            ``val_loss`` is computed on it after every epoch.
        shuffle : bool
            seeded reshuffle every epoch.
        callbacks : list of Callback or callables ``f(epoch, logs)``
        verbose : "auto" or int, default "auto"
            0 silent; 1 a progress bar (tqdm); "auto" a bar once the fit has run 5 seconds.
        mask : array like y, optional (loss='masked_mse' only; default ``y != 0``)
        distributed : "mpi" or an mpi4py communicator, optional
            data-parallel training over MPI ranks, every rank passing the same data
            (:mod:`aerec.distributed`; ``aerec[mpi]``; needs ``shuffle=True``).

        Returns
        -------
        self

        Other threads may keep calling ``encode`` / ``predict`` meanwhile: they get the model as it
        was until ``fit`` returns (training runs on a copy; callbacks receive that copy).
        """
        epochs = _validation.check_nonneg_int(epochs, "epochs")
        batch_size = _validation.check_positive_int(batch_size, "batch_size", hi=None)
        if not isinstance(shuffle, (bool, np.bool_)):
            raise TypeError("shuffle must be True or False")
        verbose = _validation.check_verbose(verbose, allow_auto=True)
        pruning = check_pruning(self.pruning)
        try:
            x, y, mask = self._xy(x, y, mask)
        except ValueError as exc:
            if self.net_ is not None and "built for" in str(exc):
                raise ValueError(f"{exc}; fit continues training this model, so the data must keep its "
                                 "width: create a new Autoencoder for data of another width") from None
            raise
        batch_size = min(batch_size, x.shape[0])  # one batch holds every sample at most
        if self.net_ is None:
            self._build(x.shape[1])
        val = self._validation(validation_data)
        from ._card import dense_fingerprint, now
        self.card_ = {"created": now(), "data": dense_fingerprint(x)}

        dp = None
        if distributed is not None:
            if not shuffle:
                raise ValueError("distributed training shuffles every epoch (each rank owns a shard of the "
                                 "rows); pass shuffle=True")
            from ..distributed import data_parallel
            dp = data_parallel(distributed, self.net_, x, y, mask=mask, batch_size=batch_size)
            verbose, callbacks = dp.local_verbose(verbose), dp.local_callbacks(callbacks)

        def train_epoch(epoch):
            seed = derive_seed(self.seed_, 1, epoch) % (2 ** 63)
            if dp is not None:
                return dp.train_epoch(seed)
            return self.net_.train_epoch(x, y, mask=mask, batch_size=batch_size, shuffle=bool(shuffle), seed=seed)

        def end_epoch(epoch, logs):
            self.epochs_trained_ += 1

        validate = None if val is None else (lambda: {"val_loss": float(self.net_.loss(*val))})
        kw = dict(callbacks=callbacks, verbose=verbose, first_epoch=self.epochs_trained_, end_epoch=end_epoch,
                  diverged_hint="lower learning_rate or check the inputs' scale", pruning=pruning)
        if dp is None:
            run_epochs(self, epochs, train_epoch, validate=validate, **kw)
            return self
        dp.guard(lambda: run_epochs(self, epochs, train_epoch, validate=dp.validate(validate),
                                    sync_stop=dp.sync_stop, **kw))
        dp.guard(dp.finish)  # the optimizer state of every block onto every rank
        self.distributed_stats_ = dp.report()
        return self

    def _continue_fit(self, x, epochs, pruning=None, **fit_kw):
        """aerec.compress.fine_tune: ``fit`` already continues from the current weights, optimizer
        state and masks (with ``pruning``'s schedule over these epochs, not this model's own)."""
        pruning, self.pruning = self.pruning, pruning
        try:
            self.fit(x, epochs=epochs, **fit_kw)
        finally:
            self.pruning = pruning

    def _validation(self, validation_data):
        if validation_data is None:
            return None
        if isinstance(validation_data, tuple):
            if not 1 <= len(validation_data) <= 3:
                raise ValueError("validation_data must be x_val, (x_val, y_val) or (x_val, y_val, mask_val)")
            parts = list(validation_data) + [None] * (3 - len(validation_data))
        else:
            parts = [validation_data, None, None]
        return self._xy(*parts, names=("validation x", "validation y", "validation mask"))

    # -- inference (stateless, thread-safe: layer-by-layer fused GEMMs) -------------------------
    def _forward(self, x, upto: int, batch_size: int):
        if getattr(self.net_, "compressed", False):  # packed layers (aerec.compress)
            if upto == 0:
                return np.array(x, dtype=np.float32)
            return self.net_.hidden(x, upto - 1, batch_size)
        be = self._backend()
        params = self._params_cache()
        acts = self.spec_["activations"]
        out = np.empty((x.shape[0], self.spec_["layer_sizes"][upto]), dtype=np.float32)
        for start in range(0, x.shape[0], batch_size):
            h = x[start:start + batch_size]
            for i in range(upto):
                h = be.gemm(h, params[2 * i], bias=params[2 * i + 1], activation=acts[i])
            out[start:start + h.shape[0]] = h
        return out

    def _params_cache(self):
        # Weights are read once per set of weights (one thread reads them, the others wait for
        # it); inference never touches training buffers. The key holds the network itself, so a
        # new network at a reused id() cannot match.
        net = self.net_

        def fresh(c):
            return c is not None and c[0] is net and c[1] == (self.epochs_trained_, net.step)
        cache = getattr(self, "_cache", None)
        if not fresh(cache):
            with guard_of(self).build():
                cache = getattr(self, "_cache", None)
                if not fresh(cache):
                    cache = (net, (self.epochs_trained_, net.step), net.get_params())
                    self._cache = cache
        return cache[2]

    def _infer(self, x, upto, batch_size):
        self._check_fitted()
        batch_size = _validation.check_positive_int(batch_size, "batch_size", hi=None)
        x, was_1d = _validation.as_matrix(x, "x", n_cols=self.n_features_in_, allow_1d=True, allow_empty=True)
        batch_size = max(min(batch_size, x.shape[0]), 1)  # 0 samples in, 0 rows out
        out = self._forward(x, upto, batch_size)
        return out[0] if was_1d else out

    @reads
    def encode(self, x, batch_size=4096):
        """Bottleneck features: (n_samples, bottleneck width) float32 (1-D in, 1-D out)."""
        self._check_fitted()
        return self._infer(x, self.spec_["encoder_depth"], batch_size)

    @reads
    def predict(self, x, batch_size=4096):
        """Reconstruction: (n_samples, n_features) float32 (1-D in, 1-D out)."""
        self._check_fitted()
        return self._infer(x, len(self.spec_["activations"]), batch_size)

    @reads
    def evaluate(self, x, y=None, mask=None):
        """The training loss (without dropout) on ``(x, y)``."""
        self._check_fitted()
        x, y, mask = self._xy(x, y, mask)
        return float(self.net_.loss(x, y, mask))

    # -- weights and persistence ------------------------------------------------------------
    def _get_weights(self):
        return self.net_.get_params()

    def _set_weights(self, params):
        self.net_.set_params(params)
        self._cache = None

    @reads
    def get_weights(self):
        """[W0, b0, W1, b1, ...] (copies); W_i has shape (n_in, n_out)."""
        self._check_fitted()
        return self._get_weights()

    def set_weights(self, params):
        self._check_fitted()
        sizes = self.spec_["layer_sizes"]
        expected = []
        for a, b in zip(sizes[:-1], sizes[1:]):
            expected += [(a, b), (b,)]
        params = list(params)
        if len(params) != len(expected):
            raise ValueError(f"expected {len(expected)} arrays, got {len(params)}")
        arrs = []
        for i, (p, shape) in enumerate(zip(params, expected)):
            a = np.ascontiguousarray(p, dtype=np.float32)
            if a.shape != shape:
                raise ValueError(f"weight {i} must have shape {shape}, got {a.shape}")
            _validation.check_finite(a, f"weight {i}")
            arrs.append(a)
        guard_of(self).write(lambda: self._set_weights(arrs))  # no inference call in flight

    @reads
    def save(self, path) -> None:
        """Write the model (hyper-parameters, weights, optimizer state, history) atomically."""
        self._check_fitted()
        wmeta, arrays = weights_for_file(self)
        if not getattr(self.net_, "compressed", False):  # a compressed network has no optimizer state
            for key, value in self.net_.get_optimizer_state().items():
                arrays[f"opt_{key}"] = np.asarray(value)
        mmeta, marrays = mask_state(self.spec_, self.net_)
        arrays.update(marrays)
        self._save(path, {"spec": self.spec_, "n_features_in": self.n_features_in_, "seed": self.seed_,
                          "epochs_trained": self.epochs_trained_, "history": self.history_, **wmeta, **mmeta},
                   arrays)

    @classmethod
    def _from_state(cls, meta, arrays, backend="auto"):
        # ``meta`` and ``arrays`` were checked against the Autoencoder schema (aerec._schemas)
        model = cls._new_from_meta(meta, backend)
        spec = _tuples(meta["spec"])
        opt = {k[4:]: v for k, v in arrays.items() if k.startswith("opt_")}
        model.spec_ = spec
        model.seed_ = int(meta["seed"])
        model.n_features_in_ = int(meta["n_features_in"])
        model.epochs_trained_ = int(meta["epochs_trained"])
        model.history_ = {k: list(v) for k, v in meta["history"].items()}
        model.net_ = network_from_file(model, meta, arrays, spec)
        if opt:
            model.net_.set_optimizer_state(opt)
        return model

"""The one epoch loop every model's ``fit`` runs (history, progress, callbacks, divergence,
validation, best-epoch restore, early stopping).

A model's ``fit`` validates its inputs, builds its network, and then hands ``run_epochs`` two
closures: ``train_epoch(epoch) -> loss`` (one pass over the data, with the model's own per-epoch
seed) and optionally ``validate() -> {name: value}``. Everything else is here, so every model
behaves alike: callbacks are called, ``model.stop_training`` is honoured, a non-finite loss
raises ``FloatingPointError`` naming the epoch.
"""
from __future__ import annotations

import math

from ..callbacks import Progress, as_callbacks

__all__ = ["run_epochs"]


def run_epochs(model, epochs, train_epoch, *, validate=None, monitor=None, mode="max", keep_best=False,
               early_stopping=None, callbacks=None, verbose=0, name=None, first_epoch=0, end_epoch=None,
               diverged_hint="lower learning_rate", pruning=None, sync_stop=None):
    """Train ``model`` for up to ``epochs`` epochs; return the number of epochs run.

    Parameters
    ----------
    model
        the model being trained (under ``atomic_fit``: the private copy). Its ``history_`` dict
        gets each epoch's logs appended (the caller decides whether it starts empty); its
        ``stop_training`` is reset to False here and callbacks may set it to stop after an epoch.
    epochs : int >= 0
    train_epoch : callable ``(epoch) -> loss``
        one pass over the training data; ``epoch`` counts from ``first_epoch``.
    validate : callable ``() -> dict``, optional
        validation metrics after each epoch, merged into the epoch's logs (e.g. ``val_loss``).
    monitor : str, optional
        the logs key that decides the best epoch (needed by ``keep_best`` / ``early_stopping``).
    mode : {"max", "min"}
        whether a larger or a smaller ``monitor`` is better (strictly).
    keep_best : bool
        put back the weights of the best epoch (``model._get_weights`` / ``_set_weights``) when
        training ends, and set ``model.best_epoch_`` (index into this fit's epochs).
    early_stopping : int, optional
        stop after this many epochs in a row without a better ``monitor``.
    callbacks : list of Callback or callables ``f(epoch, logs)``
        ``set_model`` and ``on_train_begin`` before the first epoch, ``on_epoch_end(epoch, logs)``
        after each, ``on_train_end`` after the best weights are restored.
    verbose : int
        0 silent; 1 a progress bar.
    name : str
        the progress bar's label (default: the model's class name).
    end_epoch : callable ``(epoch, logs)``, optional
        run after validation and before the logs are recorded (e.g. to count trained epochs).
    diverged_hint : str
        the advice the divergence error ends with.
    pruning : aerec.compress.GradualPruning, optional
        gradual magnitude pruning of ``model.net_`` on its schedule over these ``epochs``: masks
        recomputed before the epochs it names (and after the last one if the schedule did not reach
        its final sparsity). Each epoch's logs get ``sparsity`` (the pruned fraction of the pruned
        weight matrices during that epoch); ``model.sparsity_`` is the final one and
        ``model.pruning_steps_`` the (epoch, sparsity) steps. Only epochs trained at the final
        sparsity can be the best epoch or reset early stopping's patience (an earlier, denser
        epoch's weights would not honour the final masks).
    sync_stop : callable ``(stop) -> bool``, optional
        distributed training: the stop decision every rank takes (rank 0's, whose callbacks ran).
    """
    if mode not in ("max", "min"):
        raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
    if (keep_best or early_stopping is not None) and monitor is None:
        raise ValueError("keep_best and early_stopping need a monitor")
    cbs = as_callbacks(callbacks)
    for cb in cbs:
        cb.set_model(model)
    model.stop_training = False
    for cb in cbs:
        cb.on_train_begin({})
    better = (lambda a, b: a > b) if mode == "max" else (lambda a, b: a < b)
    best = -math.inf if mode == "max" else math.inf
    best_epoch, best_weights, wait = None, None, 0
    history = model.history_
    bar = Progress(epochs, name or type(model).__name__, verbose)
    n_run = 0
    pruner = None
    if pruning is not None:
        from ..compress.pruning import _Pruner
        pruner = _Pruner(pruning, model, epochs)
    try:
        for i in range(epochs):
            epoch = first_epoch + i
            if pruner is not None:
                pruner.before_epoch(i)
            logs = {"loss": float(train_epoch(epoch))}
            if pruner is not None:
                logs["sparsity"] = float(pruner.sparsity)
            if not math.isfinite(logs["loss"]):
                raise FloatingPointError(f"training diverged at epoch {epoch} (loss={logs['loss']}); "
                                         f"{diverged_hint}")
            if validate is not None:
                logs.update(validate())
            if end_epoch is not None:
                end_epoch(epoch, logs)
            n_run += 1
            if monitor is not None and monitor in logs and (pruner is None or pruner.done):
                if better(logs[monitor], best):
                    best, best_epoch, wait = logs[monitor], i, 0
                    if keep_best:
                        best_weights = model._get_weights()
                else:
                    wait += 1
            for key, value in logs.items():
                history.setdefault(key, []).append(value)
            bar.update(logs)
            for cb in cbs:
                cb.on_epoch_end(epoch, logs)
            if sync_stop is not None:
                model.stop_training = sync_stop(model.stop_training)
            if model.stop_training or (early_stopping is not None and wait >= early_stopping):
                break
        if pruner is not None:
            pruner.after_training(n_run)
    finally:
        bar.close()
    if pruner is not None:
        model.sparsity_ = float(pruner.sparsity)
    if keep_best and best_weights is not None:
        model._set_weights(best_weights)
        model.best_epoch_ = best_epoch
    for cb in cbs:
        cb.on_train_end({})
    return n_run

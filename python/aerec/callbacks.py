"""Training callbacks (Keras-style; a plain callable ``f(epoch, logs)`` is accepted too) and the
progress display every training loop shows."""
from __future__ import annotations

import math
import os
import sys
import time

import numpy as np

__all__ = ["Callback", "CSVLogger", "EarlyStopping", "LambdaCallback", "ModelCheckpoint", "Progress",
           "ReduceLROnPlateau", "as_callbacks"]

#: with ``verbose="auto"`` (the default of every ``fit``), the progress bar appears once a fit has
#: run this many seconds (short fits stay quiet; Keras' ``verbose=1`` habit for long ones)
AUTO_PROGRESS_AFTER_S = 5.0

_HIGHER_IS_BETTER = ("ndcg", "recall", "precision", "map", "mrr", "hit", "auc", "acc", "coverage")


def _auto_mode(monitor: str) -> str:
    """"max" for accuracy-like names (ndcg, recall, precision, map, mrr, hit, auc, ...), else "min"."""
    return "max" if any(t in monitor.lower() for t in _HIGHER_IS_BETTER) else "min"


def _missing_monitor(who: str, monitor: str, logs: dict) -> ValueError:
    return ValueError(f"{who} monitors {monitor!r}, but the epoch logs only have {sorted(logs)}; pass "
                      f"validation data or monitor one of those")


class Callback:
    """Base class. ``self.model`` is set before training; set ``self.model.stop_training = True``
    to stop after the current epoch."""

    model = None

    def set_model(self, model) -> None:
        self.model = model

    def on_train_begin(self, logs=None) -> None:
        pass

    def on_epoch_end(self, epoch: int, logs: dict) -> None:
        pass

    def on_train_end(self, logs=None) -> None:
        pass


class LambdaCallback(Callback):
    """Wrap ``on_epoch_end(epoch, logs)`` (and optionally begin/end hooks) in a callback."""

    def __init__(self, on_epoch_end=None, on_train_begin=None, on_train_end=None):
        for name, fn in (("on_epoch_end", on_epoch_end), ("on_train_begin", on_train_begin),
                         ("on_train_end", on_train_end)):
            if fn is not None and not callable(fn):
                raise TypeError(f"{name} must be callable")
        self._epoch_end, self._begin, self._end = on_epoch_end, on_train_begin, on_train_end

    def on_train_begin(self, logs=None):
        if self._begin:
            self._begin(logs)

    def on_epoch_end(self, epoch, logs):
        if self._epoch_end:
            result = self._epoch_end(epoch, logs)
            if result is False and self.model is not None:  # returning False stops training
                self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self._end:
            self._end(logs)


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by ``min_delta`` for ``patience`` epochs.

    Parameters
    ----------
    monitor : str
        a key of the epoch logs, e.g. ``"val_loss"``, ``"loss"``, ``"val_ndcg@100"``.
    mode : {"auto", "min", "max"}
        "auto": max for accuracy-like names (ndcg, recall, precision, map, mrr, hit, auc), else min.
    restore_best_weights : bool
        put back the weights of the best epoch when training stops.
    """

    def __init__(self, monitor="val_loss", patience=0, min_delta=0.0, mode="auto",
                 restore_best_weights=False, baseline=None):
        if not isinstance(monitor, str):
            raise TypeError("monitor must be a string such as 'val_loss'")
        if isinstance(patience, bool) or not isinstance(patience, (int, np.integer)) or patience < 0:
            raise ValueError(f"patience must be an integer >= 0, got {patience!r}")
        from ._validation import check_bool, check_choice, check_real
        check_choice(mode, "mode", ("auto", "min", "max"))
        min_delta = check_real(min_delta, "min_delta")
        restore_best_weights = check_bool(restore_best_weights, "restore_best_weights")
        if baseline is not None:
            baseline = check_real(baseline, "baseline")
        self.monitor, self.patience, self.min_delta = monitor, int(patience), abs(min_delta)
        self.restore_best_weights, self.baseline = restore_best_weights, baseline
        self.mode = _auto_mode(monitor) if mode == "auto" else mode

    def _better(self, value, best):
        if self.mode == "min":
            return value < best - self.min_delta
        return value > best + self.min_delta

    def on_train_begin(self, logs=None):
        self.wait = 0
        self.stopped_epoch = None
        self.best_epoch = None
        self.best = self.baseline if self.baseline is not None else (math.inf if self.mode == "min" else -math.inf)
        self.best_weights = None

    def on_epoch_end(self, epoch, logs):
        if self.monitor not in logs:
            raise _missing_monitor("EarlyStopping", self.monitor, logs)
        value = float(logs[self.monitor])
        if self._better(value, self.best):
            self.best, self.best_epoch, self.wait = value, epoch, 0
            if self.restore_best_weights:
                self.best_weights = self.model._get_weights()
            return
        self.wait += 1
        if self.wait > self.patience:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.restore_best_weights and self.best_weights is not None:
            self.model._set_weights(self.best_weights)


def _check_path(path, who: str) -> str:
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{who} path must be a file path (str or os.PathLike), got {type(path).__name__}")
    path = os.fspath(path)
    if not path:
        raise ValueError(f"{who} path is empty; pass a file path such as 'history.csv'")
    return path


class CSVLogger(Callback):
    """Write each epoch's logs to a CSV file (Keras' ``CSVLogger``): a header ``epoch,loss,...``
    (the keys of the first epoch's logs, in their order), then one row per epoch.

    Parameters
    ----------
    path : str or os.PathLike
        the CSV file; its folder must exist.
    separator : str
        one character between fields.
    append : bool
        False (default): start the file anew at each ``fit``. True: add rows to an existing file
        (the header is written only when the file is new or empty), e.g. across warm-started fits.

    Each row is written and flushed as its epoch ends, so the file holds every finished epoch
    even if training is interrupted. Keys that appear only after the first epoch are left out;
    a key missing from a later epoch is written as an empty field.
    """

    def __init__(self, path, separator: str = ",", append: bool = False):
        from ._validation import check_bool
        self.path = _check_path(path, "CSVLogger")
        if not isinstance(separator, str) or len(separator) != 1 or separator in "\r\n\"":
            raise ValueError(f"separator must be one character (not a quote or a newline), got {separator!r}")
        self.separator = separator
        self.append = check_bool(append, "append")
        self.keys = None

    def on_train_begin(self, logs=None):
        self.keys = None
        folder = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"CSVLogger: folder {folder!r} does not exist; create it before fit")
        if not self.append:
            with open(self.path, "w", newline="", encoding="utf-8"):
                pass  # start anew

    def on_epoch_end(self, epoch, logs):
        import csv
        logs = logs or {}
        new = not os.path.exists(self.path) or os.path.getsize(self.path) == 0
        if self.keys is None:
            self.keys = list(logs)
            if not new:  # appending: keep the columns the file already has, when it names them
                with open(self.path, newline="", encoding="utf-8") as f:
                    first = next(csv.reader(f, delimiter=self.separator), None)
                if first and first[0] == "epoch":
                    self.keys = first[1:]
        with open(self.path, "a", newline="", encoding="utf-8") as f:
            w = csv.writer(f, delimiter=self.separator, lineterminator="\n")
            if new:
                w.writerow(["epoch", *self.keys])
            w.writerow([epoch, *(_csv_value(logs[k]) if k in logs else "" for k in self.keys)])
            f.flush()


def _csv_value(v):
    if isinstance(v, (float, np.floating)):
        return repr(float(v))  # round-trips exactly
    return v


class ModelCheckpoint(Callback):
    """Save the model during training (Keras' ``ModelCheckpoint``), through ``model.save``: the
    write is atomic, so the file at ``path`` is always a complete model (``aerec.load(path)``).

    Parameters
    ----------
    path : str or os.PathLike
        where to save; may hold ``{epoch}`` and any log key as format fields, e.g.
        ``"ckpt/m-{epoch:03d}-{val_ndcg@100:.4f}.npz"``.
    monitor : str
        the logs key that decides what is best, e.g. ``"val_loss"`` (Autoencoder),
        ``"val_ndcg@100"`` (MultVAE / MultDAE / CDAE with ``validation=``), ``"val_rmse"`` (AutoRec).
    save_best_only : bool
        True (default): save only when ``monitor`` improves on the best so far (one file holds the
        best epoch). False: save after every epoch.
    mode : {"auto", "min", "max"}
        "auto": max for accuracy-like names (ndcg, recall, precision, map, mrr, hit, auc), else min.
    min_delta : float >= 0
        the improvement that counts.
    verbose : int
        1 prints a line on each save.

    After training: ``best`` (the best value seen), ``best_epoch``, ``last_saved`` (the path of the
    latest file written, or None).
    """

    def __init__(self, path, monitor: str = "val_loss", save_best_only: bool = True, mode: str = "auto",
                 min_delta: float = 0.0, verbose: int = 0):
        from ._validation import check_bool, check_choice, check_real
        self.path = _check_path(path, "ModelCheckpoint")
        if not isinstance(monitor, str):
            raise TypeError("monitor must be a string such as 'val_loss' or 'val_ndcg@100'")
        self.monitor = monitor
        self.save_best_only = check_bool(save_best_only, "save_best_only")
        check_choice(mode, "mode", ("auto", "min", "max"))
        self.mode = _auto_mode(monitor) if mode == "auto" else mode
        self.min_delta = abs(check_real(min_delta, "min_delta"))
        if isinstance(verbose, bool) or verbose not in (0, 1):
            raise ValueError(f"verbose must be 0 or 1, got {verbose!r}")
        self.verbose = int(verbose)
        self.best = self.best_epoch = self.last_saved = None

    def on_train_begin(self, logs=None):
        self.best = math.inf if self.mode == "min" else -math.inf
        self.best_epoch = None

    def _target(self, epoch, logs) -> str:
        if "{" not in self.path:
            return self.path
        try:
            return self.path.format(epoch=epoch, **logs)
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"ModelCheckpoint path {self.path!r} could not be filled from epoch={epoch} and "
                             f"the logs {sorted(logs)}: {exc!r}") from None

    def on_epoch_end(self, epoch, logs):
        logs = logs or {}
        if self.monitor not in logs:
            raise _missing_monitor("ModelCheckpoint", self.monitor, logs)
        value = float(logs[self.monitor])
        better = (value < self.best - self.min_delta) if self.mode == "min" else (value > self.best + self.min_delta)
        if better:
            self.best, self.best_epoch = value, epoch
        if self.save_best_only and not better:
            return
        target = self._target(epoch, logs)
        self.model.save(target)
        self.last_saved = target
        if self.verbose:
            print(f"epoch {epoch}: {self.monitor}={value:.6g}, saved to {target}", file=sys.stderr, flush=True)


class ReduceLROnPlateau(Callback):
    """Multiply the learning rate by ``factor`` when ``monitor`` has not improved for ``patience``
    epochs (Keras' callback). The live network's learning rate changes (weights and optimizer
    state carry over); ``model.learning_rate_`` and ``history_["lr"]`` show it.

    Parameters
    ----------
    monitor : str, default "val_loss"
        a key of the epoch logs, e.g. ``"val_ndcg@100"`` (MultVAE/MultDAE/CDAE with validation),
        ``"val_loss"`` (Autoencoder), ``"loss"``.
    factor : float in (0, 1), default 0.1
    patience : int >= 0, default 10
        epochs without improvement before reducing.
    mode : {"auto", "min", "max"}, default "auto"
        "auto": max for accuracy-like names (ndcg, recall, ...), else min.
    min_delta : float >= 0, default 1e-4
        a change smaller than this is no improvement.
    cooldown : int >= 0, default 0
        epochs to wait after a reduction before counting again.
    min_lr : float >= 0, default 0
        the learning rate never goes below this.
    verbose : int, default 0
        1 prints a line on each reduction.
    """

    def __init__(self, monitor="val_loss", factor=0.1, patience=10, mode="auto", min_delta=1e-4, cooldown=0,
                 min_lr=0.0, verbose=0):
        from ._validation import check_choice, check_nonneg_int, check_real, check_verbose
        if not isinstance(monitor, str):
            raise TypeError("monitor must be a string such as 'val_loss'")
        self.factor = check_real(factor, "factor", 0.0, 1.0, lo_open=True, hi_open=True)
        self.patience = check_nonneg_int(patience, "patience")
        check_choice(mode, "mode", ("auto", "min", "max"))
        self.min_delta = check_real(min_delta, "min_delta", 0.0)
        self.cooldown = check_nonneg_int(cooldown, "cooldown")
        self.min_lr = check_real(min_lr, "min_lr", 0.0)
        self.verbose = check_verbose(verbose)
        self.monitor = monitor
        self.mode = _auto_mode(monitor) if mode == "auto" else mode

    def on_train_begin(self, logs=None):
        if not hasattr(self.model, "_set_learning_rate"):
            raise TypeError(f"ReduceLROnPlateau changes a network's learning rate; {type(self.model).__name__} "
                            "has none")
        self.best = math.inf if self.mode == "min" else -math.inf
        self.wait = 0
        self.cooldown_left = 0
        self.reductions = []

    def on_epoch_end(self, epoch, logs):
        if self.monitor not in logs:
            raise _missing_monitor("ReduceLROnPlateau", self.monitor, logs)
        value = float(logs[self.monitor])
        lr = self.model._get_learning_rate()
        self.model.history_.setdefault("lr", []).append(lr)
        if self.cooldown_left > 0:
            self.cooldown_left -= 1
            self.wait = 0
        better = value < self.best - self.min_delta if self.mode == "min" else value > self.best + self.min_delta
        if better:
            self.best, self.wait = value, 0
            return
        if self.cooldown_left > 0:
            return
        self.wait += 1
        if self.wait >= self.patience and lr > self.min_lr:
            new = max(lr * self.factor, self.min_lr)
            self.model._set_learning_rate(new)
            self.reductions.append((epoch, new))
            self.wait, self.cooldown_left = 0, self.cooldown
            if self.verbose:
                print(f"ReduceLROnPlateau: epoch {epoch}: {self.monitor} did not improve for {self.patience} "
                      f"epochs; learning rate {lr:.3g} -> {new:.3g}", file=sys.stderr, flush=True)


def as_callbacks(callbacks) -> list[Callback]:
    if callbacks is None:
        return []
    if isinstance(callbacks, Callback) or callable(callbacks):
        callbacks = [callbacks]
    if isinstance(callbacks, (str, bytes)) or not hasattr(callbacks, "__iter__"):
        raise TypeError(f"callbacks must be a list of Callback objects or callables f(epoch, logs); "
                        f"got {type(callbacks).__name__}")
    out = []
    for cb in callbacks:
        if isinstance(cb, Callback):
            out.append(cb)
        elif callable(cb):
            out.append(LambdaCallback(on_epoch_end=cb))
        else:
            raise TypeError(f"callbacks must be Callback objects or callables f(epoch, logs); got {type(cb).__name__}")
    return out


class Progress:
    """Progress display of a training loop: a tqdm bar when tqdm is installed, else one plain line
    per step on stderr; silent with ``verbose=0``. ``verbose="auto"``: silent for the first
    ``AUTO_PROGRESS_AFTER_S`` seconds, then a bar (from the step reached) if steps remain."""

    def __init__(self, total: int, desc: str, verbose=1, unit: str = "epoch"):
        self.total, self.desc, self.unit = total, desc, unit
        self.auto = verbose == "auto" and not isinstance(verbose, bool)
        self.verbose = 0 if self.auto else verbose
        self.n = 0
        self._bar = None
        self._t0 = time.perf_counter()
        if self.verbose and total > 0:
            self._open()

    def _open(self):
        try:
            from tqdm.auto import tqdm
            self._bar = tqdm(total=self.total, initial=self.n, desc=self.desc, unit=self.unit, leave=True,
                             file=sys.stderr)
        except ImportError:
            self._bar = None

    def update(self, logs: dict | None = None) -> None:
        self.n += 1
        if self.auto and not self.verbose and self.n < self.total \
                and time.perf_counter() - self._t0 >= AUTO_PROGRESS_AFTER_S:
            self.verbose = 1  # a long fit: show where it is from now on
            self.n -= 1
            self._open()
            self.n += 1
        if not self.verbose:
            return
        text = " ".join(f"{k}={v:.4g}" for k, v in (logs or {}).items() if isinstance(v, (int, float)))
        if self._bar is not None:
            self._bar.set_postfix_str(text, refresh=False)
            self._bar.update(1)
        else:
            dt = time.perf_counter() - self._t0
            print(f"{self.desc} {self.unit} {self.n}/{self.total} ({dt:.2f}s) {text}", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

"""Training callbacks (Keras-style; a plain callable ``f(epoch, logs)`` is accepted too) and the
progress display every training loop shows."""
from __future__ import annotations

import math
import sys
import time

import numpy as np

__all__ = ["Callback", "EarlyStopping", "LambdaCallback", "Progress", "as_callbacks"]


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
        if mode == "auto":
            up = ("ndcg", "recall", "precision", "map", "mrr", "hit", "auc", "acc", "coverage")
            mode = "max" if any(t in monitor.lower() for t in up) else "min"
        self.mode = mode

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
            raise ValueError(f"EarlyStopping monitors {self.monitor!r}, but the epoch logs only have "
                             f"{sorted(logs)}; pass validation data or monitor one of those")
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
    per step on stderr; silent with ``verbose=0``."""

    def __init__(self, total: int, desc: str, verbose: int = 1, unit: str = "epoch"):
        self.total, self.desc, self.verbose, self.unit = total, desc, verbose, unit
        self.n = 0
        self._bar = None
        self._t0 = time.perf_counter()
        if verbose and total > 0:
            try:
                from tqdm.auto import tqdm
                self._bar = tqdm(total=total, desc=desc, unit=unit, leave=True, file=sys.stderr)
            except ImportError:
                self._bar = None

    def update(self, logs: dict | None = None) -> None:
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

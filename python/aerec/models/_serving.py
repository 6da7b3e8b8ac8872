"""Thread safety of fitted models: concurrent inference, and ``fit`` that swaps in the new model.

The guarantee (README, "Thread safety"):

* Every inference method may be called from any number of threads at once. The kernels keep no
  shared mutable state (per-call workspaces), so callers run in parallel and each gets the bits a
  lone caller gets.
* ``fit`` trains a private copy of the model (:func:`atomic_fit`) and installs the result at the
  end in one step, so callers serving from the model during ``fit`` get the old model until then
  and the new one after, never a mix, and a ``fit`` that raises leaves the old model in place.

An inference call reads several fitted attributes (``train_``, ``net_``, caches) one after the
other; :class:`ServeGuard` makes the install wait for the calls in flight and holds new ones back
until it is done (it is a readers-writer guard: callers never wait for each other, only for the
install, which is a dictionary update). Lazily built caches (a TopK index over the decoder, the
AutoRec reconstruction) are built once, under :meth:`ServeGuard.build`, not once per thread.
"""
from __future__ import annotations

import copy
import functools
import threading

__all__ = ["ServeGuard", "guard_of", "reads", "atomic_fit"]

_CREATE = threading.Lock()  # creates a model's guard once, whichever thread asks first
GUARD_ATTR = "_serve_guard"


class ServeGuard:
    """Readers-writer guard of one model: inference calls read, installing a fitted state writes.

    Readers never wait for each other. A waiting writer holds new readers back (so a busy server
    cannot starve an install), and a thread may read re-entrantly (``recommend`` calling
    ``score`` calling ``item_vectors``) without deadlocking against a waiting writer.
    """

    def __init__(self):
        self._cond = threading.Condition(threading.Lock())
        self._readers = 0
        self._writer = False
        self._writers_waiting = 0
        self._local = threading.local()
        self._build = threading.RLock()

    def acquire_read(self):
        depth = getattr(self._local, "depth", 0)
        if depth == 0:
            with self._cond:
                while self._writer or self._writers_waiting:
                    self._cond.wait()
                self._readers += 1
        self._local.depth = depth + 1

    def release_read(self):
        depth = self._local.depth - 1
        self._local.depth = depth
        if depth == 0:
            with self._cond:
                self._readers -= 1
                if self._readers == 0:
                    self._cond.notify_all()

    def write(self, fn):
        """Run ``fn()`` with no inference call in flight on this model."""
        if getattr(self._local, "depth", 0):
            raise RuntimeError("a model cannot be refitted or have its weights set from inside one of its own "
                               "inference calls (e.g. a callback of recommend); do it from another thread or "
                               "after the call returns")
        with self._cond:
            self._writers_waiting += 1
            try:
                while self._writer or self._readers:
                    self._cond.wait()
            finally:
                self._writers_waiting -= 1
            self._writer = True
        try:
            return fn()
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()

    def build(self):
        """Lock for building a lazily cached attribute once (re-entrant)."""
        return self._build


def guard_of(model) -> ServeGuard:
    d = model.__dict__
    g = d.get(GUARD_ATTR)
    if g is None:
        with _CREATE:
            g = d.get(GUARD_ATTR)
            if g is None:
                g = d[GUARD_ATTR] = ServeGuard()
    return g


def reads(method):
    """Decorator: the method reads the fitted state under the model's guard (see module doc)."""
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        g = guard_of(self)
        g.acquire_read()
        try:
            return method(self, *args, **kwargs)
        finally:
            g.release_read()
    return wrapper


def install(model, state: dict) -> None:
    """Replace ``model``'s attributes by ``state`` in one step (no inference call in flight)."""
    state = {k: v for k, v in state.items() if k != GUARD_ATTR}
    guard_of(model).write(lambda: model.__dict__.update(state))


def _describe(comp) -> str:
    parts = [comp.get("precision", "fp32")]
    if comp.get("pruning"):
        parts.append(f"{comp['pruning']}-pruned to sparsity {comp.get('sparsity', 0):g}")
    return ", ".join(parts)


def atomic_fit(fit):
    """Decorator for ``fit``: train a private copy of the model, then install its state at once.

    The copy shares the current fitted state read-only; ``model._prepare_trainee()`` replaces
    whatever its ``fit`` would change in place (e.g. the network a warm-started fit continues
    training). Callbacks receive that copy (``cb.model``): it is the model being trained, and what
    it holds when ``fit`` returns is what the served model becomes.
    """
    @functools.wraps(fit)
    def wrapper(self, *args, **kwargs):
        comp = getattr(self, "compression_", None)
        if comp:
            raise ValueError(f"this {type(self).__name__} is compressed ({_describe(comp)}) and cannot be trained: "
                             f"fit the fp32 model (aerec.{type(self).__name__}(**model.get_params())) and compress "
                             "it again with aerec.compress.quantize / prune")
        trainee = copy.copy(self)  # Estimator.__getstate__ leaves the guard out: it gets its own
        trainee._prepare_trainee()
        fit(trainee, *args, **kwargs)
        install(self, trainee.__dict__)
        return self
    return wrapper

"""Serial twins of the network kernels of ``_numba_kernels`` (imported only when numba is installed).

A ``parallel=True`` kernel costs a parallel-region launch (~1 us) per call even on one thread, and a
tiny network's training step (the Keras tutorial's: ~40 k FLOPs per 32-row batch) crosses a dozen
of them: the launches cost more than the arithmetic. Each kernel here is the same Python function
compiled again without ``parallel`` (``prange`` then runs as ``range``), its globals resolving to
the other twins, so ``run`` below is the whole compiled call with no parallel region at all, from
the same source as the parallel one (a fix to a kernel fixes both). Each twin has its own
``__qualname__`` (``<name>__serial``) and so its own cache file beside the parallel kernel's.
"""
import types

from numba import njit
from numba.core.registry import CPUDispatcher

from . import _numba_kernels as _k

_SUFFIX = "__serial"


def _twins(module):
    """{name: serial twin} of every compiled, not-inlined function defined in ``module``."""
    src = vars(module)
    names = [n for n, v in src.items() if isinstance(v, CPUDispatcher) and v.py_func.__module__ == module.__name__
             and v.targetoptions.get("inline", "never") == "never"]
    scope = dict(src)  # the twins' globals: the module's, with every kernel replaced by its twin
    for n in names:
        d = src[n]
        py = d.py_func
        fn = types.FunctionType(py.__code__.replace(co_name=n + _SUFFIX, co_qualname=n + _SUFFIX), scope,
                                n + _SUFFIX, py.__defaults__, py.__closure__)
        fn.__module__, fn.__doc__ = py.__module__, py.__doc__
        opts = {k: v for k, v in d.targetoptions.items() if k not in ("parallel", "nopython")}
        opts["error_model"] = "numpy"
        scope[n] = njit(cache=d._cache is not None and type(d._cache).__name__ == "FunctionCache", **opts)(fn)
    return {n: scope[n] for n in names}


globals().update(_twins(_k))

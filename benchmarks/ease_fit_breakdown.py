"""EASE fit at MovieLens-20M scale, phase by phase: own sparse Gram kernel, then scipy LAPACK potrf
and potri in place (float32, 20,108 items).

    PYTHONPATH=python python3 benchmarks/ease_fit_breakdown.py
"""
import numpy as np, time, aerec, scipy.linalg
from aerec import _core
aerec.set_num_threads(2)
data = aerec.datasets.synthetic(136_677, 20_108, density=10_000_000 / (136_677 * 20_108), random_state=0)
X = data.to_csr()
m = aerec.EASE()
t=time.perf_counter(); G = m._gram_upper(aerec._validation.as_csr(X), np.dtype(np.float32)); print("gram", time.perf_counter()-t, flush=True)
G[np.diag_indices(G.shape[0])] += 500
F=G.T
potrf, potri = scipy.linalg.lapack.get_lapack_funcs(("potrf", "potri"), (F,))
t=time.perf_counter(); c, info = potrf(F, lower=True, overwrite_a=True, clean=False); print("potrf", time.perf_counter()-t, info, flush=True)
t=time.perf_counter(); P, info = potri(c, lower=True, overwrite_c=True); print("potri", time.perf_counter()-t, info, np.shares_memory(P,G), flush=True)

"""aerec's side of "EASE B pruned to 10% density: fit faster than SANSA's" (issue 9): the exact EASE
fit and ``compress.prune(density=d)`` at 20,108 items, before / after, in one run.

    flock /tmp/aerec-bench.lock env PYTHONPATH=python python benchmarks/ease_fit_prune_speed.py \
        [--train-users 2000] [--repeat 3] [--density 0.1,0.05] [--threads 2]

Data: benchmarks/ease_prune_throughput.py's (aerec.datasets.synthetic at the ML-20M density, the
first --train-users users), l2 = 500, the dual form (users < items).

* fit, before: the previous dual form, kept here verbatim as the baseline (K = X X^T + l2 I by a
  Cholesky ``cho_factor``, ``M = K^-1 X`` by ``cho_solve`` against the dense X, ``P = X^T M`` by
  scipy's single-threaded sparse x dense product, then ``-P / diag(P)`` in three n x n passes and a
  finiteness pass). After: ``EASE.fit`` (K^-1 by potrf + potri, both products by the backend's
  SpMM, one scaling pass). The two B are compared (max |difference| / max |B|).
* prune, before: the NumPy reference ``top_magnitude_csr`` (one |B| copy partitioned in place, then
  blockwise passes: the previous ``_ease_top_global``); after: the C++ kernel (a 16-bit histogram
  of |B|'s bit patterns for the threshold's bin, a pass counting each row's entries above it and
  copying out the bin's, a filling pass). The
  kept entries are checked identical. ``compress.prune`` as a whole is timed too, with its parts:
  the selection, the sha256 fingerprint of the source B (the model card's provenance), packing.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
import scipy.linalg

import aerec
from aerec import compress
from aerec.compress import _format

N_ITEMS = 20_108
DENSITY = 10_000_000 / (136_677 * N_ITEMS)


def fit_before(X, l2):
    """The dual form as it was (float32)."""
    dt = np.float32
    Xd = X.astype(dt)
    K = np.asarray((Xd @ Xd.T).toarray(), dtype=dt)
    K[np.diag_indices(K.shape[0])] += l2
    c = scipy.linalg.cho_factor(K, lower=True, overwrite_a=True, check_finite=False)
    M = scipy.linalg.cho_solve(c, Xd.toarray(), overwrite_b=True, check_finite=False)
    P = np.asarray(Xd.T @ M, dtype=dt)
    del M
    P *= -1.0
    P[np.diag_indices(P.shape[0])] += 1.0
    P /= l2
    P = np.ascontiguousarray(P)
    d = np.diag(P).copy()
    P /= -d[None, :]
    P[np.diag_indices(P.shape[0])] = 0.0
    B = P.astype(np.float32, order="C", copy=False)
    assert np.isfinite(B).all()
    return B


def med(ts):
    return f"{statistics.median(ts):.2f} s (median of {len(ts)}: {', '.join(f'{t:.2f}' for t in ts)})"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--train-users", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--density", default="0.1,0.05")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    aerec.set_num_threads(a.threads)
    aerec.show_config()
    print(f"load average at start: {os.getloadavg()}", flush=True)
    X = aerec.datasets.synthetic(a.train_users + 10000, N_ITEMS, density=DENSITY, random_state=0).to_csr()
    X = X[:a.train_users]
    print(f"X: {X.shape[0]} users x {X.shape[1]} items, {X.nnz} interactions; l2 = 500, {a.threads} threads", flush=True)
    tb, ta = [], []
    for _ in range(a.repeat):  # interleaved: the box is shared
        t0 = time.perf_counter()
        B0 = fit_before(X, 500.0)
        tb.append(time.perf_counter() - t0)
        del B0
        t0 = time.perf_counter()
        ease = aerec.EASE(l2=500.0).fit(X)
        ta.append(time.perf_counter() - t0)
    B0 = fit_before(X, 500.0)
    diff = float(np.abs(B0 - ease.B_).max() / np.abs(B0).max())
    print(f"exact fit, before: {med(tb)}", flush=True)
    print(f"exact fit, after:  {med(ta)}  ({statistics.median(tb) / statistics.median(ta):.1f}x; "
          f"max |B_after - B_before| / max |B| = {diff:.1e})", flush=True)
    del B0
    cpp, ref = aerec.backends.get("cpp"), aerec.backends.get("numpy")
    B = ease.B_
    n = B.shape[0]
    for d in (float(x) for x in a.density.split(",")):
        k = int(round(d * n * n))
        t0 = time.perf_counter()
        want = ref.top_magnitude_csr(B, k)
        t_ref = time.perf_counter() - t0
        tk = []
        for _ in range(a.repeat):
            t0 = time.perf_counter()
            got = cpp.top_magnitude_csr(B, k)
            tk.append(time.perf_counter() - t0)
        same = all(np.array_equal(g, w) for g, w in zip(got, want))
        del want, got
        tp, tf = [], []
        for _ in range(a.repeat):
            t0 = time.perf_counter()
            compress.prune(ease, density=d)
            tp.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            _format.source_fingerprint(ease, [B])
            tf.append(time.perf_counter() - t0)
        print(f"density {d:g} ({k:,} entries): selection, NumPy reference (before) {t_ref:.2f} s; C++ kernel "
              f"{med(tk)} ({t_ref / statistics.median(tk):.1f}x; kept entries identical: {same})", flush=True)
        print(f"  compress.prune: {med(tp)}; of which the sha256 fingerprint of B {statistics.median(tf):.2f} s, the "
              f"rest (packing the CSR rows, building the layer) "
              f"{statistics.median(tp) - statistics.median(tk) - statistics.median(tf):.2f} s", flush=True)
    print(f"load average at end: {os.getloadavg()}", flush=True)


if __name__ == "__main__":
    main()

"""aerec's pruned EASE against SANSA (the sparse approximate EASE a user would pick instead), issue 9.

SANSA 1.1.0 runs as a benchmark extra (``pip install --no-deps sansa``) through
``benchmarks/peers/sansa_peer.py`` (its one unavailable import, scikit-sparse's CHOLMOD, stood in
by SuiteSparse's COLAMD order + LAPACK's Cholesky: read that module's docstring).

    AEREC_DATA=../shared/data python benchmarks/bench_sansa.py accuracy [--seeds 5] [--density 0.1,0.05]
    flock /tmp/aerec-bench.lock python benchmarks/bench_sansa.py fit [--density 0.1,0.05] [--users 20000]

``accuracy``: MovieLens-100K, ratings >= 4, strong generalisation (150 validation + 150 test users,
80% fold-in), seeds 0..4, as benchmarks/compress_accuracy.py. Exact EASE and every sparse model
pick their l2 from EASE_L2_GRID on the validation users (the same grid and rule for all); aerec's
pruned model is ``compress.prune(exact, density=d)`` of the tuned exact model. NDCG@100 on the test
users, paired per seed against exact EASE. SANSA is run with both factorizers (ICF and the exact
"CHOLMOD" one) at ``weight_matrix_density = d``: its factor W (n_items x n_items) keeps d x n_items^2
entries, the budget of aerec's pruned B. SANSA scores with W^T and W_r = W scaled by two diagonals
(stored as a second matrix by SANSA 1.1, but the same pattern and n_items^2 d values up to 2 n_items
scales), so at equal stored entries it does two sparse products per user where pruned B does one.

``fit``: the ML-20M-scale synthetic slice (20,000 users x 20,108 items, benchmarks/ab_engine.py),
wall time of a fit at each density: aerec exact EASE + prune, SANSA with the ICF factorizer.
"""
from __future__ import annotations

import argparse
import copy
import os
import pathlib
import sys
import time

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import aerec  # noqa: E402
from aerec import compress  # noqa: E402
from aerec.models.baselines import EASE_L2_GRID  # noqa: E402
from peers import sansa_peer  # noqa: E402

DATA = pathlib.Path(os.environ.get("AEREC_DATA", HERE.parents[1] / "shared" / "data"))


def log(*a):
    print(*a, flush=True)


def ndcg(model, evalset):
    return float(aerec.evaluate(model, evalset, ks=(100,), metrics=("ndcg",))["ndcg@100"])


def with_B(template, B):
    """An EASE that scores with B (the fitted template's bookkeeping, SANSA's item-item matrix)."""
    m = copy.copy(template)
    m.B_ = B
    return m


def sansa_fit(train, l2, density, factorizer):
    model = sansa_peer.sansa_model(l2, density, factorizer)
    X = train.to_csr() if hasattr(train, "to_csr") else train
    import scipy.sparse as sp
    model.fit(sp.csr_matrix(X, dtype=np.float32))
    return model


def nonempty_items(X):
    """X without the items nobody interacted with: SANSA 1.1.0's column norms (``np.add.reduceat``
    over the Gram matrix's indptr) raise IndexError when the last items are empty."""
    keep = np.flatnonzero(np.diff(X.tocsc().indptr) > 0)
    return X[:, keep]


def accuracy(seeds, densities, factorizers):
    import logging
    logging.getLogger("sansa").setLevel(logging.ERROR)
    data = aerec.datasets.movielens("ml-100k", path=DATA).interactions.binarize(4.0)
    rows = []
    for seed in range(seeds):
        split = aerec.data.strong_generalization_split(data, n_validation_users=150, n_test_users=150,
                                                       random_state=seed)
        exact = aerec.EASE(l2="auto").fit(split.train, validation=split.validation)
        base = ndcg(exact, split.test)
        rows.append((seed, "exact EASE", 1.0, exact.l2_, base, 0.0))
        log(f"seed {seed} exact EASE l2={exact.l2_:g} ndcg@100={base:.4f}")
        n = exact.B_.shape[0]
        for d in densities:
            p = compress.prune(exact, density=d)
            v = ndcg(p, split.test)
            rows.append((seed, "aerec prune", d, exact.l2_, v, base - v))
            log(f"  density {d}: aerec prune ndcg={v:.4f} drop={base - v:+.4f}")
            for fac in factorizers:
                best = None
                for l2 in EASE_L2_GRID:
                    t = time.perf_counter()
                    sm = sansa_fit(split.train, l2, d, fac)
                    dt = time.perf_counter() - t
                    m = with_B(exact, sansa_peer.sansa_B(sm))
                    val = ndcg(m, split.validation)
                    if best is None or val > best[0]:
                        best = (val, l2, m, sm.weights[0].nnz / n**2, dt)
                v = ndcg(best[2], split.test)
                rows.append((seed, f"SANSA {fac}", d, best[1], v, base - v))
                log(f"  density {d}: SANSA {fac} l2={best[1]:g} nnz(W)/n^2 {best[3]:.4f} "
                    f"ndcg={v:.4f} drop={base - v:+.4f} (fit {best[4]:.2f} s)")
    log("\n| model | density | seeds | NDCG@100 | paired drop vs exact (mean +- std, worst) |")
    log("| --- | --- | --- | --- | --- |")
    keys = sorted({(r[1], r[2]) for r in rows}, key=lambda k: (-k[1], k[0]))
    for name, d in keys:
        sel = [r for r in rows if r[1] == name and r[2] == d]
        v = np.array([r[4] for r in sel])
        dr = np.array([r[5] for r in sel])
        log(f"| {name} | {d:g} | {len(sel)} | {v.mean():.4f} | {dr.mean():+.4f} +- {dr.std():.4f} "
            f"(worst {dr.max():+.4f}) |")


def fit_times(densities, threads, factorizers, users):
    first = True
    from ab_engine import ml20m_slice
    import scipy.sparse as sp
    aerec.set_num_threads(threads)
    try:
        import numba
        numba.set_num_threads(threads)
    except ImportError:
        pass
    X = sp.csr_matrix(ml20m_slice(n_users=users), dtype=np.float32)
    log(f"X: {X.shape[0]} users x {X.shape[1]} items, {X.nnz} interactions; {threads} threads")
    t = time.perf_counter()
    exact = aerec.EASE(l2=500.0).fit(X)  # solver auto: the smaller of the primal and the dual form
    t_exact = time.perf_counter() - t
    log(f"aerec exact EASE fit: {t_exact:.1f} s")
    for d in densities:
        t = time.perf_counter()
        compress.prune(exact, density=d)
        t_prune = time.perf_counter() - t
        log(f"density {d}: aerec prune {t_prune:.1f} s (exact + prune {t_exact + t_prune:.1f} s)")
        for fac in factorizers:
            Xs = nonempty_items(X)
            if first:  # the first call compiles SANSA's numba kernels: time the second
                sansa_fit(nonempty_items(Xs[:500]), 500.0, d, fac)
            t = time.perf_counter()
            sansa_fit(Xs, 500.0, d, fac)
            log(f"density {d}: SANSA {fac} fit {time.perf_counter() - t:.1f} s (compiled)")
        first = False


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("part", choices=("accuracy", "fit"))
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--density", default="0.1,0.05")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--users", type=int, default=20000, help="training users of the `fit` slice")
    ap.add_argument("--factorizers", default="cholmod,icf", help="SANSA factorizers to run")
    a = ap.parse_args()
    dens = [float(x) for x in a.density.split(",")]
    if a.part == "accuracy":
        accuracy(a.seeds, dens, a.factorizers.split(","))
    else:
        fit_times(dens, a.threads, a.factorizers.split(","), a.users)


if __name__ == "__main__":
    main()

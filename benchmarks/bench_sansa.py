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

``scaling``: fit time against item count at equal density (issue 9's "fit faster than SANSA's at
equal density"): MovieLens-100K (1,682 items; l2 of every model tuned on the validation users) and
synthetic ML-20M-like slices of --items items (2,000 training users, 300 held-out users with 80%
fold-in; l2 = 500 for every model), NDCG@100 on the held-out users next to each time. aerec: exact
EASE fit + ``compress.prune(density=d)``, each a median of --repeat. SANSA: wall time around
``SANSA.fit`` (numba compiled first on a 300 x 300 slice), split into its stages by wrapping the
factorizer's ``approximate_ldlt`` and the inverter's ``invert`` (the rest: ICF scaling, W = L^-1 P,
W_r, the diagonal), with the stand-in's COLAMD and dense-Cholesky seconds reported apart. Each
SANSA configuration runs in a child process (data, a 300 x 300 warm-up fit that compiles SANSA's numba
kernels, the timed fits) killed after --limit seconds (recorded as "> limit");
a configuration that hit the limit is not run at larger sizes.

    flock /tmp/aerec-bench.lock python benchmarks/bench_sansa.py scaling --items ml-100k,2000,5000 \
        [--density 0.1,0.05] [--factorizers icf,cholmod] [--repeat 3] [--limit 150]

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


SCALING_USERS, SCALING_TEST_USERS = 2000, 300


def _scaling_data(items):
    """(train CSR, test EvalSet, validation EvalSet or None, l2 grid) of one scaling case."""
    import scipy.sparse as sp
    if items == "ml-100k":
        data = aerec.datasets.movielens("ml-100k", path=DATA).interactions.binarize(4.0)
        split = aerec.data.strong_generalization_split(data, n_validation_users=150, n_test_users=150,
                                                       random_state=0)
        return split.train.to_csr(), split.test, split.validation
    from ab_engine import ml20m_slice
    X = sp.csr_matrix(ml20m_slice(n_users=SCALING_USERS + SCALING_TEST_USERS, n_items=int(items)), dtype=np.float32)
    inter = aerec.data.Interactions.from_csr(X)
    split = aerec.data.strong_generalization_split(inter, n_validation_users=0, n_test_users=SCALING_TEST_USERS,
                                                   random_state=0)
    return split.train.to_csr(), split.test, None


class _SansaScorer:
    """``recommend`` for aerec.evaluate: SANSA's scores x W^T W_r (its own forward), seen items excluded."""

    def __init__(self, model):
        self.W1, self.W2 = model.weights

    def recommend(self, users=None, user_items=None, k=100, filter_seen=True, **kw):
        import scipy.sparse as sp
        X = sp.csr_matrix(user_items, dtype=np.float32)
        latent = np.asarray((X @ self.W1).toarray(), np.float32)
        S = np.asarray(self.W2.T @ latent.T, np.float32).T.copy()  # (W_r^T latent^T)^T: csr @ dense
        if filter_seen:
            S[X.nonzero()] = -np.inf
        ids = np.argpartition(-S, k - 1, axis=1)[:, :k]
        sc = np.take_along_axis(S, ids, 1)
        o = np.argsort(-sc, axis=1, kind="stable")
        return np.take_along_axis(ids, o, 1), np.take_along_axis(sc, o, 1)


def _timed_sansa_fit(X, l2, density, factorizer):
    """(model, {stage: seconds}) with the wall time around SANSA.fit and its stages."""
    import scipy.sparse as sp
    model = sansa_peer.sansa_model(l2, density, factorizer)
    st = {"ldlt": 0.0, "invert": 0.0}

    def wrap(obj, name, key):
        f = getattr(obj, name)

        def g(*a, **k):
            t0 = time.perf_counter()
            try:
                return f(*a, **k)
            finally:
                st[key] += time.perf_counter() - t0
                print(f"STAGE {key} done after {st[key]:.1f} s", flush=True)
        setattr(obj, name, g)
    wrap(model.factorizer, "approximate_ldlt", "ldlt")
    wrap(model.inverter, "invert", "invert")
    for key in sansa_peer.TIMES:
        sansa_peer.TIMES[key] = 0.0
    Xs = sp.csr_matrix(X, dtype=np.float32)
    t0 = time.perf_counter()
    model.fit(Xs)
    st["fit"] = time.perf_counter() - t0
    st["order"] = sansa_peer.TIMES["colamd"]
    st["dense_cholesky"] = sansa_peer.TIMES["dense_cholesky"]
    st["factor"] = st["ldlt"] - st["order"]
    st["rest"] = st["fit"] - st["ldlt"] - st["invert"]
    return model, st


def scaling_child(items, what, densities, repeat):
    """One case in this process; prints one JSON line per result."""
    import json
    import logging
    logging.getLogger("sansa").setLevel(logging.ERROR)
    X, test, val = _scaling_data(items)
    if what != "aerec":  # SANSA 1.1 needs every item non-empty; the evaluation sets index the same items
        keep = np.flatnonzero(np.diff(X.tocsc().indptr) > 0)
        X = X[:, keep]
        test = aerec.data.EvalSet(test.users, test.fold_in[:, keep], test.held_out[:, keep], test.known_users)
        if val is not None:
            val = aerec.data.EvalSet(val.users, val.fold_in[:, keep], val.held_out[:, keep], val.known_users)
    info = dict(items=items, n_items=X.shape[1], users=X.shape[0], nnz=int(X.nnz), what=what)

    def out(**kw):
        print("RESULT " + json.dumps({**info, **kw}), flush=True)

    def nd(model, evalset):
        return float(aerec.evaluate(model, evalset, ks=(100,), metrics=("ndcg",))["ndcg@100"])
    if what == "aerec":
        l2 = 500.0
        if val is not None:  # ML-100K: the validation-tuned l2
            l2 = aerec.EASE(l2="auto").fit(X, validation=val).l2_
        ts, exact = [], None
        for _ in range(repeat):
            t0 = time.perf_counter()
            exact = aerec.EASE(l2=l2).fit(X)
            ts.append(time.perf_counter() - t0)
        out(model="aerec exact", density=1.0, l2=l2, fit_s=ts, ndcg=nd(exact, test))
        for d in densities:
            ts = []
            for _ in range(repeat):
                t0 = time.perf_counter()
                p = compress.prune(exact, density=d)
                ts.append(time.perf_counter() - t0)
            out(model="aerec prune", density=d, l2=l2, fit_s=ts, prune_s=ts, ndcg=nd(p, test))
        return
    fac = what.split(":")[1]
    small = X[:300, :300]  # compiles the same kernels as a full fit, in seconds
    t0 = time.perf_counter()
    sansa_fit(nonempty_items(small), 500.0, densities[0], fac)  # numba compilation, not timed
    print(f"STAGE numba warm-up fit done ({time.perf_counter() - t0:.1f} s); timed fit starts", flush=True)
    for d in densities:
        l2 = 500.0
        if val is not None:  # ML-100K: tune l2 on the validation users (untimed fits)
            best = None
            for lam in EASE_L2_GRID:
                v = nd(_SansaScorer(sansa_fit(X, lam, d, fac)), val)
                if best is None or v > best[0]:
                    best = (v, lam)
            l2 = best[1]
        runs = []
        for r in range(repeat):
            model, st = _timed_sansa_fit(X, l2, d, fac)
            runs.append(st)
            if st["fit"] > 20 or sum(r["fit"] for r in runs) > 45:  # keep the child inside --limit
                break
        W1, W2 = model.weights
        out(model=f"SANSA {fac}", density=d, l2=l2, fit_s=[r["fit"] for r in runs], stages=runs,
            w_density=W1.nnz / X.shape[1] ** 2, stored=int(W1.nnz + W2.nnz), ndcg=nd(_SansaScorer(model), test))


def scaling(items_list, densities, factorizers, repeat, limit, with_aerec=True):
    import json
    import signal
    import subprocess
    aerec.show_config()
    log(f"load average {os.getloadavg()}")
    stopped = set()
    for items in items_list:
        for what in ["aerec"] * with_aerec + [f"sansa:{f}" for f in factorizers if f]:
            for d in densities if what != "aerec" else [None]:
                dens = densities if d is None else [d]
                if (what, d) in stopped:
                    log(f"{items} {what} density {d}: skipped (hit the {limit:g} s limit at a smaller size)")
                    continue
                cmd = [sys.executable, __file__, "scaling-child", "--items", items, "--what", what,
                       "--density", ",".join(map(str, dens)), "--repeat", str(repeat)]
                t0 = time.perf_counter()
                proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, start_new_session=True)
                try:
                    stdout, _ = proc.communicate(timeout=limit)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)  # the child we started, and its own children
                    stdout, _ = proc.communicate()
                    stopped.add((what, d))
                    stages = "; ".join(ln[6:] for ln in (stdout or "").splitlines() if ln.startswith("STAGE "))
                    log(f"{items} {what} density {d}: > {limit:g} s (child killed after {time.perf_counter() - t0:.0f} s,"
                        f" load {os.getloadavg()[0]:.1f}; it had reached: {stages or 'nothing logged'})")
                if proc.returncode not in (0, -signal.SIGKILL) or not any(
                        ln.startswith("RESULT ") for ln in (stdout or "").splitlines()):
                    if (what, d) not in stopped:
                        stopped.add((what, d))
                        log(f"{items} {what} density {d}: no result (child exit status {proc.returncode} after "
                            f"{time.perf_counter() - t0:.0f} s)")
                for line in (stdout or "").splitlines():
                    if line.startswith("RESULT "):
                        r = json.loads(line[7:])
                        med = float(np.median(r["fit_s"]))
                        extra = ""
                        if "stages" in r:
                            s0 = r["stages"][int(np.argsort(r["fit_s"])[len(r["fit_s"]) // 2])]
                            extra = (f" [order {s0['order']:.2f} factor {s0['factor']:.2f} (dense Cholesky stand-in "
                                     f"{s0['dense_cholesky']:.2f}) invert {s0['invert']:.2f} rest {s0['rest']:.2f}]"
                                     f" W density {r['w_density']:.4f}")
                        log(f"{r['items']} ({r['n_items']} items, {r['users']} users): {r['model']} d={r['density']:g}"
                            f" l2={r['l2']:g}: {med:.2f} s median of {len(r['fit_s'])} "
                            f"({', '.join(f'{t:.2f}' for t in r['fit_s'])}){extra} ndcg@100={r['ndcg']:.4f}"
                            f" load {os.getloadavg()[0]:.1f}")
                        if med > limit:
                            stopped.add((what, d))


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "scaling-child":
        ap = argparse.ArgumentParser()
        ap.add_argument("part")
        ap.add_argument("--items")
        ap.add_argument("--what")
        ap.add_argument("--density")
        ap.add_argument("--repeat", type=int, default=3)
        a = ap.parse_args()
        aerec.set_num_threads(2)
        return scaling_child(a.items, a.what, [float(x) for x in a.density.split(",")], a.repeat)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("part", choices=("accuracy", "fit", "scaling"))
    ap.add_argument("--items", default="ml-100k,2000,5000,10000,20108", help="scaling: cases (ml-100k or item counts)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-aerec", action="store_true", help="scaling: SANSA only")
    ap.add_argument("--limit", type=float, default=150.0, help="scaling: seconds before a SANSA child is killed")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--density", default="0.1,0.05")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--users", type=int, default=20000, help="training users of the `fit` slice")
    ap.add_argument("--factorizers", default="cholmod,icf", help="SANSA factorizers to run")
    a = ap.parse_args()
    dens = [float(x) for x in a.density.split(",")]
    if a.part == "scaling":
        scaling(a.items.split(","), dens, a.factorizers.split(","), a.repeat, a.limit, not a.no_aerec)
    elif a.part == "accuracy":
        accuracy(a.seeds, dens, a.factorizers.split(","))
    else:
        fit_times(dens, a.threads, a.factorizers.split(","), a.users)


if __name__ == "__main__":
    main()

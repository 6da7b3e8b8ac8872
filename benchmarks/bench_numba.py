"""The numba backend against the numpy reference and the cpp backend (issue 10's goals), one run:

    flock /tmp/aerec-bench.lock python benchmarks/bench_numba.py [--repeat 5] [--skip-compile]

- tutorial: the Keras tutorial fit of bench_tutorial.py (s/fit, median of --repeat; numpy once);
- tutorial_parts: where an epoch of that fit goes (us, medians): the network's train_epoch, the
  validation loss, and the whole fit / 100 (the rest is the shared Python fit loop);
- multvae: one MultVAE epoch on ab_engine.ml20m_slice (20,000 users x 20,108 items = 40 batches
  of 500; s/epoch, the second epoch of a 2-epoch fit, numpy: the first of a 1-epoch fit);
- topk_w1: TopK exact fp32 search, 20,000 x 200 items, 10,000 queries, k=100, 150 excluded per
  query; numpy's plain matmul + argpartition as the baseline;
- recommend: MultVAE.recommend(k=100) at 20,108 items, users/s;
- compile: a whole small MultVAE fit in a fresh process with an empty NUMBA_CACHE_DIR (first
  call: compiles), then again in a second process (loads the cache).
Kernels are compiled before any timing (warm-up calls).
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import scipy.sparse as sp

sys.path.insert(0, os.path.dirname(__file__))
import aerec  # noqa: E402
from ab_engine import EpochTimer, ml20m_slice  # noqa: E402
from bench_tutorial import fit_aerec  # noqa: E402

BACKENDS = [n for n in ("numpy", "numba", "cpp") if aerec.backends.available()[n]]


def median_time(fn, repeat):
    ts = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def tutorial(repeat):
    out = {}
    for be in BACKENDS:
        fit_aerec(be, epochs=2)  # warm-up (compiles on numba)
        out[be] = median_time(lambda: fit_aerec(be), 1 if be == "numpy" else repeat)
    return out


def tutorial_parts(repeat):
    from bench_tutorial import EPOCHS, data
    x_train, x_val = data()
    out = {}
    for be in BACKENDS:
        fit_aerec(be, epochs=2)  # warm-up (compiles on numba)
        ae = aerec.Autoencoder(hidden=(64,), random_state=0, backend=be)
        ae.fit(x_train, epochs=1, batch_size=32, validation_data=x_val)
        net, calls = ae.net_, 20 if be == "numpy" else 200
        epoch = median_time(lambda: net.train_epoch(x_train, x_train, batch_size=32, seed=5), calls)
        val = median_time(lambda: net.loss(x_val, x_val), calls)
        fit = median_time(lambda: fit_aerec(be), 1 if be == "numpy" else repeat) / EPOCHS
        out[be] = (f"train_epoch {epoch * 1e6:.0f} us, validation loss {val * 1e6:.0f} us, "
                   f"fit / epoch {fit * 1e6:.0f} us, rest {(fit - epoch - val) * 1e6:.0f} us")
    return out


def multvae(X):
    out = {}
    for be in BACKENDS:
        aerec.MultVAE(epochs=1, random_state=0, backend=be).fit(X[:600])  # warm-up
        cb = EpochTimer()
        aerec.MultVAE(epochs=1 if be == "numpy" else 2, random_state=0, backend=be).fit(X, callbacks=[cb])
        out[be] = cb.times[-1]
    return out


def topk_w1(repeat):
    rng = np.random.default_rng(0)
    n, d, m, k, n_ex = 20_000, 200, 10_000, 100, 150
    items = rng.standard_normal((n, d), dtype=np.float32)
    q = rng.standard_normal((m, d), dtype=np.float32)
    ex = sp.csr_matrix((np.ones(m * n_ex, np.float32), rng.integers(0, n, m * n_ex).astype(np.int32),
                        np.arange(0, m * n_ex + 1, n_ex)), shape=(m, n))

    def numpy_plain():
        for q0 in range(0, m, 1000):
            s = q[q0:q0 + 1000] @ items.T
            e = ex[q0:q0 + 1000]
            s[np.repeat(np.arange(e.shape[0]), np.diff(e.indptr)), e.indices] = -np.inf
            part = np.argpartition(-s, k, axis=1)[:, :k]
            np.take_along_axis(part, np.argsort(-np.take_along_axis(s, part, 1), 1), 1)

    out = {"numpy matmul+argpartition": median_time(numpy_plain, repeat)}
    for be in BACKENDS:
        if be == "numpy":
            continue
        index = aerec.TopK(items, backend=be)
        index.search(q[:10], k, exclude=ex[:10])
        out[be] = median_time(lambda: index.search(q, k, exclude=ex), repeat)
    return out


def recommend(X, repeat):
    out = {}
    users = np.arange(5000)
    for be in BACKENDS:
        if be == "numpy":
            continue
        model = aerec.MultVAE(epochs=1, random_state=0, backend=be).fit(X)
        model.recommend(users[:10], k=100)
        out[be] = users.size / median_time(lambda: model.recommend(users, k=100), repeat)
    return out


COMPILE = r'''
import time, numpy as np, scipy.sparse as sp
t0 = time.perf_counter()
import aerec
X = sp.random(300, 500, density=0.05, format="csr", dtype=np.float32, random_state=0)
X.data[:] = 1
t1 = time.perf_counter()
m = aerec.MultVAE(epochs=2, random_state=0, backend="numba").fit(X)
m.recommend(np.arange(10), k=10)
t2 = time.perf_counter()
print(f"{t1 - t0:.2f} {t2 - t1:.2f}")
'''


def compile_times():
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        runs = []
        for _ in range(2):
            t = time.perf_counter()
            r = subprocess.run([sys.executable, "-c", COMPILE], env=env, capture_output=True, text=True, check=True)
            imp, fit = map(float, r.stdout.split())
            runs.append((fit, time.perf_counter() - t))
    return {"first call (fit s, process s)": runs[0], "from cache (fit s, process s)": runs[1]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--skip-compile", action="store_true")
    ap.add_argument("--only", default="tutorial,multvae,topk,recommend,compile",
                    help="comma-separated parts (also: tutorial_parts)")
    args = ap.parse_args()
    aerec.set_num_threads(2)
    import numba
    print(f"numba {numba.__version__}, threading layer {numba.config.THREADING_LAYER}, threads "
          f"{numba.get_num_threads()}; backends {BACKENDS}", flush=True)
    only = args.only.split(",")
    X = ml20m_slice() if {"multvae", "recommend"} & set(only) else None
    rows = []
    if "tutorial" in only:
        rows.append(("tutorial fit (s)", tutorial(args.repeat)))
    if "tutorial_parts" in only:
        rows.append(("tutorial fit, one epoch's parts", tutorial_parts(args.repeat)))
    if "multvae" in only:
        rows.append(("MultVAE epoch, ML-20M slice 40 x 500 (s)", multvae(X)))
    if "topk" in only:
        rows.append(("TopK W1 exact 20k x 200, 10k q, k=100, 150 excl (s)", topk_w1(args.repeat)))
    if "recommend" in only:
        rows.append(("MultVAE recommend k=100 @ 20,108 items (users/s)", recommend(X, args.repeat)))
    if "compile" in only and not args.skip_compile:
        rows.append(("numba MultVAE fit, compile", compile_times()))
    print(f"numba threading layer after the runs: {numba.threading_layer()}")
    for name, res in rows:
        print(name)
        for k, v in res.items():
            print(f"  {k:<34} {v if isinstance(v, (tuple, str)) else round(v, 4)}")
        if "numba" in res and not isinstance(res["numba"], str):
            for other in ("numpy", "cpp", "numpy matmul+argpartition"):
                if other in res:
                    print(f"  numba vs {other}: {res[other] / res['numba']:.2f}x" if "users" not in name else
                          f"  numba vs {other}: {res['numba'] / res[other]:.2f}x")
        sys.stdout.flush()


if __name__ == "__main__":
    main()

"""Top-k search table: queries/s, recall@k and peak RSS per workload and method.

    PYTHONPATH=python python3 benchmarks/topk_table.py [--threads 2] [--workloads W1,W2,W3]
        [--methods numpy,fp32,fp32-prune,bf16,bf16-prune,int8,int8-prune] [--repeat 3]
        [--rescore 1.25]

Workloads (item vectors Gaussian scaled by log-normal norms exp(N(0, 0.5)), queries Gaussian):
  W1: 20,000 items x 200 dims, 10,000 queries, k=100, 150 random excluded ids per query
  W2: 1,000,000 x 64, 1,000 queries, k=10
  W3: 100,000 x 128, 10,000 queries, k=10
Each (workload, method) runs in its own subprocess so peak RSS is its own. qps is the median of
`--repeat` timed searches; qps/cpu-s divides by the process CPU time instead (all threads
together), which stays meaningful when other jobs share the cores. Recall is against the exact fp32 ids (the fp32 path is checked against
the NumPy baseline on the first 200 queries). Peak RSS is read right after the timed searches
(data + index + search scratch), before the recall checks. The numpy baseline is a blocked matmul +
argpartition (+ excluded scores set to -inf), the usual pure-NumPy approach.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

WORKLOADS = {
    "W1": dict(n=20_000, d=200, m=10_000, k=100, excl=150),
    "W2": dict(n=1_000_000, d=64, m=1_000, k=10, excl=0),
    "W3": dict(n=100_000, d=128, m=10_000, k=10, excl=0),
}
METHODS = ["numpy", "fp32", "fp32-prune", "bf16", "bf16-prune", "int8", "int8-prune"]


def make_data(w, seed=0):
    rng = np.random.default_rng(seed)
    n, d, m = w["n"], w["d"], w["m"]
    items = rng.standard_normal((n, d), dtype=np.float32)
    items *= np.exp(0.5 * rng.standard_normal(n)).astype(np.float32)[:, None]
    queries = rng.standard_normal((m, d), dtype=np.float32)
    exclude = None
    if w["excl"]:
        exclude = [rng.integers(0, n, w["excl"]).astype(np.int32) for _ in range(m)]
    return items, queries, exclude


def numpy_search(items, queries, k, exclude=None, block=None):
    """Blocked matmul + argpartition + sort of the k best (NumPy/OpenBLAS baseline)."""
    m = queries.shape[0]
    if block is None:  # score blocks of about 128 MB
        block = int(max(1, min(1024, 2**27 // (4 * items.shape[0]))))
    ids = np.empty((m, k), dtype=np.int64)
    for q0 in range(0, m, block):
        S = queries[q0:q0 + block] @ items.T
        if exclude is not None:
            for r in range(S.shape[0]):
                S[r, exclude[q0 + r]] = -np.inf
        part = np.argpartition(-S, k - 1, axis=1)[:, :k]
        ps = np.take_along_axis(S, part, axis=1)
        o = np.argsort(-ps, axis=1, kind="stable")
        ids[q0:q0 + block] = np.take_along_axis(part, o, axis=1)
    return ids


def recall(found, truth):
    hits = 0
    for f, t in zip(found, truth):
        hits += np.intersect1d(f[f >= 0], t[t >= 0]).size
    return hits / max(1, sum(int((t >= 0).sum()) for t in truth))


def run_one(wname, method, threads, repeat, rescore=1.25):
    import aerec
    from aerec.search import TopK
    aerec.set_num_threads(threads)
    w = WORKLOADS[wname]
    items, queries, exclude = make_data(w)
    k = w["k"]
    mq = queries.shape[0]
    if method == "numpy":
        nq = mq
        qs, ex = queries[:nq], (exclude[:nq] if exclude else None)
        times, cpu = [], []
        for _ in range(repeat):
            t0, c0 = time.perf_counter(), time.process_time()
            ids = numpy_search(items, qs, k, ex)
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
        build = 0.0
        mem = items.nbytes
        rec = None
    else:
        prec = method.split("-")[0]
        t0 = time.perf_counter()
        index = TopK(items, precision=prec, prune=method.endswith("prune"), rescore=rescore)
        build = time.perf_counter() - t0
        mem = index.memory_usage()
        times, cpu = [], []
        for _ in range(repeat):
            t0, c0 = time.perf_counter(), time.process_time()
            ids, _ = index.search(queries, k, exclude=exclude)
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
        nq = mq
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # before the checks
        exact = TopK(items).search(queries, k, exclude=exclude)[0] if prec != "fp32" else ids
        rec = recall(ids, exact)
        if method == "fp32":  # the exact path against the NumPy baseline on a sample
            ref = numpy_search(items, queries[:200], k, exclude[:200] if exclude else None)
            rec = recall(ids[:200], ref)
    t = float(np.median(times))
    if method == "numpy":
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return dict(workload=wname, method=method, qps=nq / t, seconds=t, recall=rec,
                qps_per_cpu_s=nq / float(np.median(cpu)),
                build_s=build, index_mb=mem / 2**20, peak_rss_mb=peak)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--workloads", default="W1,W2,W3")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--rescore", type=float, default=1.25,
                    help="candidates per result, bf16/int8 (TopK's default 1.25)")
    ap.add_argument("--one", nargs=2, metavar=("WORKLOAD", "METHOD"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:
        print(json.dumps(run_one(a.one[0], a.one[1], a.threads, a.repeat, a.rescore)))
        return
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads), OPENBLAS_NUM_THREADS=str(a.threads))
    print(f"threads={a.threads} repeat={a.repeat} (median) rescore={a.rescore}")
    print(f"{'wl':3} {'method':11} {'qps':>10} {'x numpy':>8} {'qps/cpu-s':>10} {'recall':>7} "
          f"{'build s':>8} {'index MB':>9} {'peak RSS MB':>11}")
    for wname in a.workloads.split(","):
        base = None
        for method in a.methods.split(","):
            out = subprocess.run([sys.executable, __file__, "--one", wname, method,
                                  "--threads", str(a.threads), "--repeat", str(a.repeat),
                                  "--rescore", str(a.rescore)],
                                 capture_output=True, text=True, env=env)
            if out.returncode != 0:
                print(f"{wname} {method}: failed\n{out.stderr[-2000:]}")
                continue
            r = json.loads(out.stdout.strip().splitlines()[-1])
            if method == "numpy":
                base = r["qps"]
            ratio = f"{r['qps'] / base:8.2f}" if base else f"{'-':>8}"
            rec = f"{r['recall']:7.4f}" if r["recall"] is not None else f"{'-':>7}"
            print(f"{wname:3} {method:11} {r['qps']:10.0f} {ratio} {r['qps_per_cpu_s']:10.0f} {rec} "
                  f"{r['build_s']:8.2f} "
                  f"{r['index_mb']:9.1f} {r['peak_rss_mb']:11.0f}", flush=True)


if __name__ == "__main__":
    main()

"""Serving throughput with concurrent callers: N Python threads calling ``recommend`` on one
MultVAE (fold-in from each request's histories, k=100, seen items excluded), N = 1 and 2.

    flock /tmp/aerec-bench.lock env PYTHONPATH=python python3 benchmarks/concurrent_serving.py

Data: aerec.datasets.synthetic(20,000 x 20,108, ~1.5M interactions); the MultVAE
[20,108-600-200-600-20,108] is built untrained (epochs=0: throughput does not depend on the
weights' values). Every answer is also compared with the single-threaded answer to the same
request, so the run reports wrong answers too (the old shared-workspace build gave some).
"""
from __future__ import annotations

import argparse
import threading
import time

import numpy as np

import aerec


def run(model, requests, refs, callers, seconds):
    """Callers loop over the requests for `seconds`; returns (users/s, requests, wrong answers,
    cores busy = process CPU time / wall time: ~callers x omp threads unless something serialises
    the callers or other processes take the cores)."""
    stop = threading.Event()
    counts = [0] * callers
    users = [0] * callers
    wrong = [0] * callers
    barrier = threading.Barrier(callers + 1)

    def caller(c):
        barrier.wait()
        i = c
        while not stop.is_set():
            ids, _ = model.recommend(user_items=requests[i % len(requests)], k=100)
            if not np.array_equal(ids, refs[i % len(requests)]):
                wrong[c] += 1
            counts[c] += 1
            users[c] += requests[i % len(requests)].shape[0]
            i += callers
    threads = [threading.Thread(target=caller, args=(c,)) for c in range(callers)]
    for t in threads:
        t.start()
    barrier.wait()
    t0, c0 = time.perf_counter(), time.process_time()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join()
    dt = time.perf_counter() - t0
    return sum(users) / dt, sum(counts), sum(wrong), (time.process_time() - c0) / dt


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=20_108)
    ap.add_argument("--users", type=int, default=20_000)
    ap.add_argument("--request", type=int, nargs="+", default=[1, 32], help="users per request")
    ap.add_argument("--omp", type=int, nargs="+", default=[1, 2], help="aerec.set_num_threads values")
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--repeat", type=int, default=3, help="runs per setting; the best is reported")
    args = ap.parse_args()
    aerec.show_config()
    data = aerec.datasets.synthetic(args.users, args.items, density=0.0036, random_state=0)
    X = data.to_csr()
    print(f"data {X.shape}, nnz {X.nnz:,}")
    vae = aerec.MultVAE(epochs=0).fit(X)
    rng = np.random.default_rng(0)
    for size in args.request:
        requests = [X[rng.choice(X.shape[0], size, replace=False)] for _ in range(64)]
        for omp in args.omp:
            aerec.set_num_threads(omp)
            refs = [vae.recommend(user_items=r, k=100)[0] for r in requests]
            line = []
            for callers in (1, 2):
                best = max((run(vae, requests, refs, callers, args.seconds) for _ in range(args.repeat)),
                           key=lambda r: r[0])
                line.append(best)
                print(f"request {size:3d} users, omp threads {omp}, {callers} caller(s): {best[0]:8,.0f} users/s "
                      f"({best[1]} requests, {best[2]} wrong, {best[3]:.2f} cores busy)", flush=True)
            print(f"  -> 2 callers / 1 caller: {line[1][0] / line[0][0]:.2f}x", flush=True)


if __name__ == "__main__":
    main()

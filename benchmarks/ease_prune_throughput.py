"""EASE ``recommend`` throughput at MovieLens-20M's item count (issue 9): exact dense B against B
pruned to 10% density (``compress.prune(ease, density=0.1)``), top-100 with seen items excluded,
held-out users folded in from their histories, both in the same run; also the exact fit and the
prune times.

    flock /tmp/aerec-bench.lock env PYTHONPATH=python python benchmarks/ease_prune_throughput.py \
        [--train-users 2000] [--users 10000] [--repeat 3] [--threads 2] [--precisions bf16,int8]
        # AEREC_ISA=avx2 for the AVX2 level

Data: aerec.datasets.synthetic at the ML-20M density (20,108 items, ~73 interactions a user), as
benchmarks/compress_throughput.py; EASE l2 = 500 fitted on --train-users users (the "auto" solver:
the dual form when users < items), so B's pattern after pruning comes from a real fit.
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import aerec
from aerec import compress

N_ITEMS = 20_108
DENSITY = 10_000_000 / (136_677 * N_ITEMS)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--train-users", type=int, default=2000)
    ap.add_argument("--users", type=int, default=10000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=1000)
    ap.add_argument("--density", default="0.1")
    ap.add_argument("--precisions", default="bf16,int8", help="also these value precisions of each pruned B")
    args = ap.parse_args()
    aerec.set_num_threads(args.threads)
    aerec.show_config()
    X = aerec.datasets.synthetic(args.train_users + args.users, N_ITEMS, density=DENSITY, random_state=0).to_csr()
    train, held = X[:args.train_users], X[args.train_users:]
    t0 = time.perf_counter()
    ease = aerec.EASE(l2=500.0).fit(train)
    t_fit = time.perf_counter() - t0
    print(f"exact EASE fit: {t_fit:.1f} s ({ease._form(train)} form, {train.shape[0]} users x {N_ITEMS} items)",
          flush=True)
    variants = {"exact": ease}
    for d in (float(x) for x in args.density.split(",")):
        t0 = time.perf_counter()
        variants[f"magnitude-{d:g}"] = p = compress.prune(ease, density=d)
        print(f"prune to density {d:g}: {time.perf_counter() - t0:.1f} s", flush=True)
        for prec in args.precisions.split(",") if args.precisions else ():
            variants[f"magnitude-{d:g}+{prec}"] = compress.quantize(p, prec)
    print(f"{held.shape[0]} users x {N_ITEMS} items, {held.nnz / held.shape[0]:.0f} interactions a user, "
          f"top-100 with exclusion, {args.threads} threads, batch {args.batch_size}, median of {args.repeat}")
    for m in variants.values():
        m.recommend(user_items=held[:500], k=100)  # warm-up
    times = {name: [] for name in variants}
    for _ in range(args.repeat):  # the variants interleaved within each round (the box is shared)
        for name, m in variants.items():
            t0 = time.perf_counter()
            m.recommend(user_items=held, k=100, batch_size=args.batch_size)
            times[name].append(time.perf_counter() - t0)
    freq = np.asarray((held != 0).sum(axis=0)).ravel().astype(np.float64)
    base = None
    for name, m in variants.items():
        ups = held.shape[0] / statistics.median(times[name])
        base = base or ups
        nb = compress.weight_nbytes(m)
        if name == "exact":
            reads = N_ITEMS
        else:  # entries of B read per user: the kept entries of the rows of its history
            reads = float(freq @ np.diff(m.net_.packed_layers()[0]["indptr"])) / held.nnz
        print(f"  {name:<20} {ups:>9,.0f} users/s  x{ups / base:.2f}  weights {nb / 2**20:8.1f} MiB "
              f"({nb / compress.weight_nbytes(ease):.4f}x)  B entries read per history item {reads:,.0f}", flush=True)

if __name__ == "__main__":
    main()

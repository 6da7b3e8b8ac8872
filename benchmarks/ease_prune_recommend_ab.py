"""EASE ``recommend`` at 20,108 items: exact dense B against B pruned to 10% (fp32, bf16 and int8 values),
from saved models, so two builds of aerec (before / after a kernel change) time the same models
in one lock hold (issue 9, "EASE pruned to 10%: dense row prefixes" in RESULTS.md).

    # once: fit, prune, save (the data and fit of benchmarks/ease_prune_throughput.py)
    PYTHONPATH=python python benchmarks/ease_prune_recommend_ab.py --dir /tmp/ease-ab --build
    # timed (each build's PYTHONPATH in turn):
    flock /tmp/aerec-bench.lock env [AEREC_ISA=avx2] PYTHONPATH=python \\
        python benchmarks/ease_prune_recommend_ab.py --dir /tmp/ease-ab --users 3000 --repeat 3

Top-100 with the history excluded, batch 1,000, the variants interleaved within each round;
median users/s (wall) and users per CPU-second, each against the exact model of the same run.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

import aerec

N_ITEMS = 20_108
DENSITY = 10_000_000 / (136_677 * N_ITEMS)
TRAIN = 2000


def data(n_held):
    X = aerec.datasets.synthetic(TRAIN + 4000, N_ITEMS, density=DENSITY, random_state=0).to_csr()
    return X[:TRAIN], X[TRAIN:TRAIN + n_held]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--build", action="store_true", help="fit, prune and save the models")
    ap.add_argument("--users", type=int, default=3000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--variants", default="exact,magnitude-0.1,magnitude-0.1+bf16,magnitude-0.1+int8")
    args = ap.parse_args()
    aerec.set_num_threads(args.threads)
    if args.build:
        from aerec import compress
        os.makedirs(args.dir, exist_ok=True)
        train, _ = data(0)
        ease = aerec.EASE(l2=500.0).fit(train)
        ease.save(os.path.join(args.dir, "exact.npz"))
        p = compress.prune(ease, density=0.1)
        p.save(os.path.join(args.dir, "magnitude-0.1.npz"))
        compress.quantize(p, "bf16").save(os.path.join(args.dir, "magnitude-0.1+bf16.npz"))
        compress.quantize(p, "int8").save(os.path.join(args.dir, "magnitude-0.1+int8.npz"))
        return
    _, held = data(args.users)
    models = {}
    for name in args.variants.split(","):
        t0 = time.perf_counter()
        models[name] = aerec.EASE.load(os.path.join(args.dir, f"{name}.npz"))
        print(f"load {name}: {time.perf_counter() - t0:.1f} s", flush=True)
    for m in models.values():
        m.recommend(user_items=held[:300], k=100)  # warm-up
    wall = {n: [] for n in models}
    cpu = {n: [] for n in models}
    for _ in range(args.repeat):
        for name, m in models.items():
            t0, c0 = time.perf_counter(), time.process_time()
            m.recommend(user_items=held, k=100, batch_size=1000)
            wall[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
    base = None
    for name in models:
        ups, upc = args.users / statistics.median(wall[name]), args.users / statistics.median(cpu[name])
        base = base or (ups, upc)
        print(f"  {name:<22} {ups:9,.0f} users/s x{ups / base[0]:.2f}   {upc:9,.0f} users/cpu-s x{upc / base[1]:.2f}",
              flush=True)
    print(f"load average {os.getloadavg()[0]:.1f}", flush=True)


if __name__ == "__main__":
    main()

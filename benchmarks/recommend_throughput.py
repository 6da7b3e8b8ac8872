"""Inference throughput at MovieLens-20M scale: top-100 with seen items excluded for 10,000 held-out
users from their histories (encode + decode + exclusion + top-k), and EASE fit time / memory.

    PYTHONPATH=python python3 benchmarks/recommend_throughput.py [--ease-fit]

Data: aerec.datasets.synthetic(136,677 x 20,108, ~10M interactions). Throughput does not depend on
the weights' values, so the MultVAE is built untrained (fit with epochs=0); --ease-fit fits EASE
on the full data (minutes, ~1.6 GiB Gram matrix) and reports its time and peak RSS.
PyTorch measured on this machine: 4,447 users/s sparse input (2,325 dense); numpy EASE 140-1,050.
"""
from __future__ import annotations

import argparse
import resource
import time

import numpy as np

import aerec


def peak_rss_gib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=10_000)
    ap.add_argument("--ease-fit", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    aerec.set_num_threads(args.threads)
    t0 = time.perf_counter()
    data = aerec.datasets.synthetic(136_677, 20_108, density=10_000_000 / (136_677 * 20_108), random_state=0)
    X = data.to_csr()
    print(f"data {X.shape}, nnz {X.nnz:,} ({time.perf_counter() - t0:.1f} s)")
    train, held = X[:-args.users], X[-args.users:]
    vae = aerec.MultVAE(epochs=0).fit(train)
    vae.recommend(user_items=held[:500], k=100)  # warm-up: builds the decoder index
    t0 = time.perf_counter()
    ids, _ = vae.recommend(user_items=held, k=100)
    dt = time.perf_counter() - t0
    print(f"MultVAE recommend: {args.users / dt:,.0f} users/s ({dt:.2f} s for {args.users} users, k=100, "
          f"seen excluded); peak RSS {peak_rss_gib():.2f} GiB")
    ease = aerec.EASE(l2=500.0)
    if args.ease_fit:
        t0 = time.perf_counter()
        ease.fit(train)
        print(f"EASE fit on {X.shape[1]} items: {time.perf_counter() - t0:.1f} s; peak RSS {peak_rss_gib():.2f} GiB")
    else:  # throughput only: random weights of the right shape
        rng = np.random.default_rng(0)
        ease.B_ = rng.standard_normal((X.shape[1], X.shape[1]), dtype=np.float32) * 0.01
        ease.train_, ease.id_maps_ = train, None
    ease.recommend(user_items=held[:500], k=100)
    t0 = time.perf_counter()
    ease.recommend(user_items=held, k=100)
    dt = time.perf_counter() - t0
    print(f"EASE recommend: {args.users / dt:,.0f} users/s ({dt:.2f} s); peak RSS {peak_rss_gib():.2f} GiB")


if __name__ == "__main__":
    main()

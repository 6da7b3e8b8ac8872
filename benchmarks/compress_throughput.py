"""End-to-end ``recommend`` throughput of compressed MultVAE variants at MovieLens-20M scale (issue 9):
top-100 with seen items excluded for held-out users folded in from their histories (encode +
fused decoder top-k), fp32 and every variant measured in the same run, medians of --repeat passes.

    flock /tmp/aerec-bench.lock env PYTHONPATH=python python benchmarks/compress_throughput.py \
        [--users 2000] [--repeat 3] [--threads 2] [--variants fp32,magnitude-0.8,...]
        # AEREC_ISA=avx2 for the AVX2 level; --variants keeps the lock time short (fp32 always runs
        # first: the ratios are against it)

Data: aerec.datasets.synthetic at the ML-20M density (20,108 items, ~73 interactions a user).
Throughput does not depend on the weights' values, so the MultVAE is untrained (``fit`` with
epochs=0, Glorot weights); pruning uses the same magnitude rule as on a trained model.
"""
from __future__ import annotations

import argparse
import statistics
import time

import aerec
from aerec import compress

N_ITEMS = 20_108
DENSITY = 10_000_000 / (136_677 * N_ITEMS)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--variants", default=None,
                    help="comma-separated subset of fp32,int8,bf16,magnitude-0.8,magnitude-0.8+int8,units-0.5")
    args = ap.parse_args()
    aerec.set_num_threads(args.threads)
    aerec.show_config()
    X = aerec.datasets.synthetic(2000 + args.users, N_ITEMS, density=DENSITY, random_state=0).to_csr()
    train, held = X[:2000], X[2000:]
    vae = aerec.MultVAE(epochs=0, backend=args.backend).fit(train, verbose=0)
    makers = {"fp32": lambda: vae, "int8": lambda: compress.quantize(vae, "int8"),
              "bf16": lambda: compress.quantize(vae, "bf16"),
              "magnitude-0.8": lambda: compress.prune(vae, sparsity=0.8),
              "magnitude-0.8+int8": lambda: compress.prune(vae, sparsity=0.8, precision="int8"),
              "units-0.5": lambda: compress.prune(vae, sparsity=0.5, method="units")}
    wanted = list(makers) if args.variants is None else ["fp32"] + [
        v for v in args.variants.split(",") if v and v != "fp32"]
    unknown = [v for v in wanted if v not in makers]
    if unknown:
        raise SystemExit(f"unknown --variants {unknown}; choose from {', '.join(makers)}")
    variants = {name: makers[name]() for name in wanted}
    print(f"{held.shape[0]} users x {N_ITEMS} items, {held.nnz / held.shape[0]:.0f} interactions a user, "
          f"top-100 with exclusion, {args.threads} threads, median of {args.repeat}")
    base = cbase = None
    for name, m in variants.items():
        m.recommend(user_items=held[:200], k=100)  # warm-up (index builds)
        times, cpus = [], []
        for _ in range(args.repeat):
            c0, t0 = time.process_time(), time.perf_counter()
            m.recommend(user_items=held, k=100, batch_size=1000)
            times.append(time.perf_counter() - t0)
            cpus.append(time.process_time() - c0)
        ups = held.shape[0] / statistics.median(times)
        upc = held.shape[0] / statistics.median(cpus)  # users per CPU-second (all threads)
        base, cbase = base or ups, cbase or upc
        print(f"  {name:<20} {ups:>9,.0f} users/s  x{ups / base:.2f}  {upc:>9,.0f} users/cpu-s  x{upc / cbase:.2f}  weights "
              f"{compress.weight_nbytes(m) / 2**20:7.1f} MiB ({compress.weight_nbytes(m) / compress.weight_nbytes(vae):.3f}x)",
              flush=True)


if __name__ == "__main__":
    main()

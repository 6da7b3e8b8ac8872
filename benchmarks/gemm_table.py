"""Print a table of GEMM medians: aerec vs numpy.matmul (OpenBLAS), float32, 2 threads.

    PYTHONPATH=python python benchmarks/gemm_table.py [--quick]

Runs are interleaved (aerec, numpy, aerec, ...) so a busy machine slows both alike; ratios are
numpy_time / aerec_time (> 1: aerec faster). The tiny training shapes are also timed per call in
microseconds: numpy.matmul, backends.cpp.gemm (Python wrapper), _core.gemm, and the C++ kernel
alone (_core._gemm_time_ns, no Python in the loop).
"""
import argparse
import os
import time

import numpy as np

import aerec
from aerec import _core
from aerec.backends import cpp as cpp_backend

LARGE = [(500, 600, 20108), (500, 20108, 600), (600, 20108, 500), (4096, 4096, 4096), (32, 64, 10)]
# (M, N, K, trans_a, trans_b): the tutorial autoencoder's per-step products (batch 32/200,
# 10 -> 64 -> 10 features) forward and backward.
TINY = [(32, 64, 10, False, False), (32, 10, 64, False, False), (32, 10, 64, False, True),
        (64, 10, 32, True, False), (10, 64, 32, True, False), (200, 64, 10, False, False)]


def interleaved(fns, min_time, max_rounds):
    """Median seconds of each fn, alternating calls until min_time per fn or max_rounds."""
    for f in fns:
        f()
    times = [[] for _ in fns]
    t_end = time.perf_counter() + min_time * len(fns)
    while len(times[0]) < max_rounds and (len(times[0]) < 3 or time.perf_counter() < t_end):
        for f, ts in zip(fns, times):
            t0 = time.perf_counter()
            f()
            ts.append(time.perf_counter() - t0)
    return [float(np.median(ts)) for ts in times], len(times[0])


def per_call_us(f, number):
    best = []
    for _ in range(7):
        t0 = time.perf_counter()
        for _ in range(number):
            f()
        best.append((time.perf_counter() - t0) / number)
    return float(np.median(best)) * 1e6


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="fewer rounds")
    args = ap.parse_args()
    aerec.set_num_threads(args.threads)
    try:
        from threadpoolctl import threadpool_limits
        threadpool_limits(limits=args.threads, user_api="blas")
        blas_note = f"OpenBLAS limited to {args.threads} threads (threadpoolctl)"
    except ImportError:
        blas_note = f"OpenBLAS threads: default (OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS')})"
    print(f"aerec {aerec.__version__}, ISA {_core.active_isa()}, threads {args.threads}; {blas_note}; "
          f"load average {os.getloadavg()[0]:.2f}")
    rng = np.random.default_rng(0)
    print(f"\n{'M x N x K':>18} {'numpy ms':>10} {'aerec ms':>10} {'numpy GF/s':>11} {'aerec GF/s':>11} "
          f"{'ratio':>6} {'rounds':>6}")
    for M, N, K in LARGE:
        a = rng.standard_normal((M, K), dtype=np.float32)
        b = rng.standard_normal((K, N), dtype=np.float32)
        flops = 2.0 * M * N * K
        min_time = 0.5 if args.quick else 3.0
        max_rounds = 20 if flops > 1e9 else 20000
        (ta, tn), rounds = interleaved([lambda: cpp_backend.gemm(a, b, num_threads=args.threads),
                                        lambda: np.matmul(a, b)], min_time, max_rounds)
        print(f"{f'{M}x{N}x{K}':>18} {tn * 1e3:10.3f} {ta * 1e3:10.3f} {flops / tn / 1e9:11.1f} "
              f"{flops / ta / 1e9:11.1f} {tn / ta:6.2f} {rounds:6d}", flush=True)

    print(f"\nTiny training shapes, microseconds per call (kernel = C++ only, median of 20000 calls)")
    print(f"{'M x N x K':>12} {'op':>6} {'numpy':>7} {'cpp.gemm':>9} {'_core':>7} {'kernel':>7} "
          f"{'kernel+bias+sigmoid':>20}")
    for M, N, K, ta, tb in TINY:
        a = rng.standard_normal((K, M) if ta else (M, K), dtype=np.float32)
        b = rng.standard_normal((N, K) if tb else (K, N), dtype=np.float32)
        opa = a.T if ta else a
        opb = b.T if tb else b
        number = 2000 if args.quick else 20000
        t_np = per_call_us(lambda: np.matmul(opa, opb), number)
        t_be = per_call_us(lambda: cpp_backend.gemm(a, b, trans_a=ta, trans_b=tb), number)
        t_core = per_call_us(lambda: _core.gemm(a, b, ta, tb), number)
        k_ns = _core._gemm_time_ns(M, N, K, trans_a=ta, trans_b=tb, reps=20000)
        ks_ns = _core._gemm_time_ns(M, N, K, trans_a=ta, trans_b=tb, bias=True,
                                    activation="sigmoid", reps=20000)
        op = ("T" if ta else "N") + ("T" if tb else "N")
        print(f"{f'{M}x{N}x{K}':>12} {op:>6} {t_np:7.2f} {t_be:9.2f} {t_core:7.2f} {k_ns / 1e3:7.2f} "
              f"{ks_ns / 1e3:20.2f}", flush=True)

    # Every dispatch level on this CPU, C++ timing (best of 3 rounds), 1024^3.
    order = ["scalar", "avx2", "avx512", "amx"]
    levels = [lvl for lvl in order[:3] if order.index(lvl) <= order.index(_core.detected_isa())]
    old = _core.active_isa()
    n = 1024
    print(f"\nPer ISA level, {n}^3, GFLOP/s (best of 3): ", end="")
    try:
        for lvl in levels:
            _core.set_isa(lvl)
            for threads in (1, args.threads):
                best = max(2.0 * n ** 3 / _core._gemm_time_ns(n, n, n, reps=2, num_threads=threads)
                           for _ in range(3))
                print(f"{lvl}/{threads}t {best:.0f}  ", end="")
    finally:
        _core.set_isa(old)
    print()


if __name__ == "__main__":
    main()

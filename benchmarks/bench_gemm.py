"""GEMM throughput: aerec (backends.cpp.gemm) vs numpy.matmul (OpenBLAS), float32, 2 threads.

Run:  PYTHONPATH=python python -m pytest benchmarks/bench_gemm.py --benchmark-only \
          --benchmark-group-by=param:shape --benchmark-columns=median,iqr,rounds
The machine may be shared: compare aerec and numpy within one run (ratios), quote medians.
"""
import os

import numpy as np
import pytest

import aerec
from aerec.backends import cpp as cpp_backend

pytest.importorskip("pytest_benchmark")

THREADS = 2
SHAPES = {  # (M, N, K)
    "500x600x20108": (500, 600, 20108),
    "500x20108x600": (500, 20108, 600),
    "600x20108x500": (600, 20108, 500),
    "4096x4096x4096": (4096, 4096, 4096),
    "32x64x10": (32, 64, 10),
}


@pytest.fixture(scope="module", autouse=True)
def two_threads():
    old = aerec.get_num_threads()
    aerec.set_num_threads(THREADS)
    limiter = None
    try:  # pin OpenBLAS to the same thread count when threadpoolctl is around
        from threadpoolctl import threadpool_limits
        limiter = threadpool_limits(limits=THREADS, user_api="blas")
    except ImportError:
        pass
    yield
    if limiter is not None:
        limiter.restore_original_limits()
    aerec.set_num_threads(old)


@pytest.mark.parametrize("shape", list(SHAPES), ids=list(SHAPES))
@pytest.mark.parametrize("impl", ["aerec", "numpy"])
def test_gemm(benchmark, impl, shape):
    M, N, K = SHAPES[shape]
    rng = np.random.default_rng(0)
    a = rng.standard_normal((M, K), dtype=np.float32)
    b = rng.standard_normal((K, N), dtype=np.float32)
    if impl == "aerec":
        def fn():
            return cpp_backend.gemm(a, b, num_threads=THREADS)
    else:
        def fn():
            return np.matmul(a, b)
    benchmark.group = "gemm"
    flops = 2.0 * M * N * K
    benchmark.extra_info.update(impl=impl, M=M, N=N, K=K, threads=THREADS,
                                openblas_num_threads=os.environ.get("OPENBLAS_NUM_THREADS"))
    if flops > 1e9:
        rounds = max(3, min(30, int(2e11 / flops)))
        benchmark.pedantic(fn, rounds=rounds, iterations=1, warmup_rounds=1)
    else:
        benchmark(fn)
    median = benchmark.stats.stats.median
    benchmark.extra_info["gflops"] = flops / median / 1e9
    if impl == "aerec":  # correctness of what was timed
        ref = np.matmul(a[:64], b)
        np.testing.assert_allclose(fn()[:64], ref, rtol=1e-3, atol=1e-3 * np.sqrt(K))

"""Data-pipeline benchmarks: synthetic generation at MovieLens-20M scale, building Interactions,
splits and metrics on 100k+ users.

Run with pytest-benchmark::

    PYTHONPATH=python python3 -m pytest benchmarks/bench_data.py --benchmark-only -q

or as a script (prints medians and peak traced memory)::

    PYTHONPATH=python python3 benchmarks/bench_data.py
"""
from __future__ import annotations

import os
import pathlib
import time
import tracemalloc

import numpy as np
import pytest
import scipy.sparse as sp

from aerec import datasets, metrics
from aerec.data import Interactions, random_split, strong_generalization_split

ML20M = dict(n_users=136_677, n_items=20_108, density=0.0036)


def _synthetic_20m():
    return datasets.synthetic(**ML20M, random_state=0)


def _ranked_case(n_users=100_000, n_items=20_000, k=100, seed=0):
    rng = np.random.default_rng(seed)
    per = rng.integers(1, 30, n_users)
    indptr = np.r_[0, np.cumsum(per)]
    cols = rng.integers(0, n_items, indptr[-1]).astype(np.int32)
    held = sp.csr_matrix((np.ones(indptr[-1], np.float32), cols, indptr), shape=(n_users, n_items))
    held.sum_duplicates()
    # top-k lists: distinct ids per row, half of the rows hit some relevant items
    ranked = (np.arange(k)[None, :] * 197 + rng.integers(0, n_items, n_users)[:, None]) % n_items
    return ranked.astype(np.int64), held


def _peak_mb(fn):
    tracemalloc.start()
    t = time.perf_counter()
    out = fn()
    dt = time.perf_counter() - t
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return out, dt, peak / 2**20


@pytest.mark.benchmark(group="data-synthetic")
def test_synthetic_ml20m_scale(benchmark):
    x = benchmark.pedantic(_synthetic_20m, rounds=3, iterations=1)
    benchmark.extra_info["nnz"] = x.nnz
    benchmark.extra_info["shape"] = list(x.shape)
    _, _, peak = _peak_mb(_synthetic_20m)
    benchmark.extra_info["peak_traced_MiB"] = round(peak, 1)


@pytest.mark.benchmark(group="data-build")
def test_from_arrays_10m(benchmark):
    rng = np.random.default_rng(0)
    n = 10_000_000
    users = rng.integers(0, 138_000, n)
    items = rng.integers(0, 27_000, n)
    vals = rng.integers(1, 11, n) / 2.0
    ts = rng.integers(789_000_000, 1_430_000_000, n)
    x = benchmark.pedantic(lambda: Interactions.from_arrays(users, items, vals, ts, on_invalid="drop"),
                           rounds=3, iterations=1)
    benchmark.extra_info["rows"] = n
    benchmark.extra_info["nnz"] = x.nnz


@pytest.mark.benchmark(group="data-split")
@pytest.mark.parametrize("protocol", ["random", "strong"])
def test_split_ml20m_scale(benchmark, protocol):
    x = _synthetic_20m()
    if protocol == "random":
        fn = lambda: random_split(x, 0.2, random_state=0)  # noqa: E731
    else:
        fn = lambda: strong_generalization_split(x, 10_000, 10_000, random_state=0)  # noqa: E731
    s = benchmark.pedantic(fn, rounds=3, iterations=1)
    benchmark.extra_info["test_users"] = s.test.n_users


@pytest.mark.benchmark(group="metrics")
def test_ranking_metrics_100k_users(benchmark):
    ranked, held = _ranked_case()
    res = benchmark.pedantic(lambda: metrics.ranking_metrics(ranked, held, (20, 50, 100)),
                             rounds=5, iterations=1)
    benchmark.extra_info["users"] = ranked.shape[0]
    benchmark.extra_info["k"] = ranked.shape[1]
    benchmark.extra_info["n_users_scored"] = res["n_users"]


@pytest.mark.benchmark(group="data-movielens")
def test_load_ml100k(benchmark):
    root = pathlib.Path(os.environ.get("AEREC_DATA", pathlib.Path(__file__).resolve().parents[2] /
                                       "shared" / "data"))
    if not (root / "ml-100k" / "u.data").exists():
        pytest.skip("MovieLens-100K not found (set AEREC_DATA)")
    d = benchmark.pedantic(lambda: datasets.movielens("ml-100k", path=root, download=False),
                           rounds=5, iterations=1)
    benchmark.extra_info["nnz"] = d.interactions.nnz


def _median_time(fn, repeat=3):
    ts = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return float(np.median(ts))


def main():
    x, dt, peak = _peak_mb(_synthetic_20m)
    print(f"synthetic ML-20M scale {x.shape}, nnz={x.nnz}: first run {dt:.2f} s "
          f"(traced), peak traced memory {peak:.0f} MiB")
    print(f"  median of 3 (untraced): {_median_time(_synthetic_20m):.2f} s")
    print(f"random_split 20% on it: {_median_time(lambda: random_split(x, 0.2)):.2f} s")
    print(f"strong_generalization_split 10k+10k users: "
          f"{_median_time(lambda: strong_generalization_split(x, 10_000, 10_000)):.2f} s")
    rng = np.random.default_rng(0)
    n = 10_000_000
    cols = (rng.integers(0, 138_000, n), rng.integers(0, 27_000, n), rng.integers(1, 11, n) / 2.0,
            rng.integers(789_000_000, 1_430_000_000, n))
    print(f"Interactions.from_arrays 10M rows (ids, ratings, timestamps): "
          f"{_median_time(lambda: Interactions.from_arrays(*cols, on_invalid='drop')):.2f} s")
    ranked, held = _ranked_case()
    print(f"ranking_metrics 100k users x k=100, ks=(20,50,100), all 7 metrics: "
          f"{_median_time(lambda: metrics.ranking_metrics(ranked, held, (20, 50, 100)), 5):.2f} s")
    print(f"ndcg_at_k alone: {_median_time(lambda: metrics.ndcg_at_k(ranked, held, 100), 5):.2f} s")


if __name__ == "__main__":
    main()

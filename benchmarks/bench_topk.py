"""pytest-benchmark: top-k search (group="topk").

    PYTHONPATH=python:benchmarks python3 -m pytest benchmarks/bench_topk.py --benchmark-only -q

Workloads as in topk_table.py (smaller query batches so a round stays short); methods: the
NumPy baseline (blocked matmul + argpartition), aerec fp32 / bf16 / int8, each with and
without norm-bound pruning. extra_info holds queries/s, GFLOP/s (of the full scan) and
recall@k against exact fp32.
"""
import numpy as np
import pytest

import aerec
from aerec.search import TopK

from topk_table import METHODS, WORKLOADS, make_data, numpy_search, recall

_CACHE = {}


def _workload(name, m):
    key = (name, m)
    if key not in _CACHE:
        w = dict(WORKLOADS[name], m=m)
        items, queries, exclude = make_data(w)
        exact = TopK(items).search(queries, w["k"], exclude=exclude)[0]
        _CACHE[key] = (w, items, queries, exclude, exact)
    return _CACHE[key]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name,m", [("W1", 2000), ("W2", 200), ("W3", 2000)])
def test_topk(benchmark, name, m, method):
    aerec.set_num_threads(2)
    w, items, queries, exclude, exact = _workload(name, m)
    k = w["k"]
    benchmark.group = "topk"
    if method == "numpy":
        fn = lambda: numpy_search(items, queries, k, exclude)  # noqa: E731
    else:
        index = TopK(items, precision=method.split("-")[0], prune=method.endswith("-prune"))
        fn = lambda: index.search(queries, k, exclude=exclude)[0]  # noqa: E731
    ids = benchmark.pedantic(fn, rounds=3, iterations=1, warmup_rounds=1)
    t = benchmark.stats.stats.median
    benchmark.extra_info.update(
        workload=name, method=method, queries=m, qps=m / t,
        gflops=2.0 * w["n"] * w["d"] * m / t / 1e9, recall=recall(ids, exact))

"""Compressed decoder kernels (issue 9): fused output layer + top-k, users/s, per weight format.

    flock /tmp/aerec-bench.lock env PYTHONPATH=python python benchmarks/bench_compressed_kernels.py \
        [--users 1000,10000] [--repeat 3] [--threads 2] [--only fp32,int8] [--topk-w1]
        [--no-decoder] [--precisions int8,bf16] [--rescores 4,0]
    (prefix AEREC_ISA=avx2 for the AVX2 level)

Decoder workload (MultVAE's last layer at ML-20M scale): W (600, 20,108) float32 with a
log-normal per-item scale (popularity skew), bias, hidden activations tanh(N(0, 1)) (600-d), top-100
per user with ~150 excluded ids per user. Methods, all in one run:

- ``fp32 TopK prune``: the models' current path (``TopK(W.T, bias=b, prune=True)``, as
  models/sparse_autoencoders.py ``_search_index``): the baseline every ratio is against.
- ``fp32`` / ``bf16`` / ``int8``: ``CompressedLinear(pack_layer(W, b, precision)).topk`` (TopK
  tiles, no fp32 copy for bf16 / int8, the compressed scores).
- ``sparse-80/90/95``: magnitude-pruned W (global |w| threshold: 80/90/95% of the weights set to 0),
  CSC fp32, and ``sparse-80 int8``.

Columns: users/s (median of --repeat, wall) and users per CPU-second (all threads; the figure that
survives a shared, overloaded box), ratios vs the baseline, recall@100 against exact fp32 top-k of
the same weights (quantisation recall; pruned variants against the unpruned fp32 model, i.e. how
much pruning changes the list, not an accuracy figure), work per user (dense: 2 x 600 x 20,108 =
24.1 MFLOP; sparse: 2 x nnz) and the rate achieved, and the weight bytes. The machine's fp32 ceiling
is measured in the same run (sgemm 4096^2 x 600 at the level in force) and printed alongside.

``--topk-w1``: TopK W1 (20,000 x 200 items, 10,000 queries, k=100, 150 excluded) fp32 vs int8 /
bf16 with rescore 4 and rescore 0 (no fp32 copy), users/s and recall@100.
"""
from __future__ import annotations

import argparse
import io
import os
import statistics
import time

import numpy as np
import scipy.sparse as sp

import aerec
from aerec.backends import cpp
from aerec.backends._quant import layer_nbytes, pack_layer
from aerec.search import TopK

N_ITEMS, HIDDEN, K, EXCL = 20_108, 600, 100, 150


def _exclusion(rng, m, n, excl):
    idx = rng.integers(0, n, (m, excl)).astype(np.int32)
    ptr = np.arange(m + 1, dtype=np.int64) * excl
    return ptr, idx.ravel()


def _recall(ids, exact):
    hit = 0
    for a, b in zip(ids, exact):
        hit += len(set(a[a >= 0].tolist()) & set(b[b >= 0].tolist()))
    return hit / max(1, (exact >= 0).sum())


def _time(fn, repeat):
    """Median wall seconds and median CPU seconds (all threads) of fn. On a shared box the CPU time
    is the load-robust figure: users per CPU-second do not drop when other jobs take the cores."""
    fn()  # warm-up (first-touch of workspaces)
    ts, cs = [], []
    for _ in range(repeat):
        c0, t0 = time.process_time(), time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
        cs.append(time.process_time() - c0)
    _time.cpu = statistics.median(cs)
    return statistics.median(ts)


def _fp32_ceiling(threads):
    a = np.random.default_rng(0).standard_normal((4096, 600)).astype(np.float32)
    b = np.random.default_rng(1).standard_normal((600, 4096)).astype(np.float32)
    t = _time(lambda: cpp.gemm(a, b, num_threads=threads), 3)
    return 2 * 4096 * 600 * 4096 / t / 1e9


def decoder(users, repeat, threads, only=None):
    rng = np.random.default_rng(0)
    W = (rng.standard_normal((HIDDEN, N_ITEMS)) * 0.05).astype(np.float32)
    W *= np.exp(rng.normal(0, 0.5, N_ITEMS)).astype(np.float32)[None, :]
    b = rng.normal(0, 0.5, N_ITEMS).astype(np.float32)
    thr = {s: np.quantile(np.abs(W), s / 100) for s in (80, 90, 95)}
    variants = [("fp32", W, "fp32", False), ("bf16", W, "bf16", False), ("int8", W, "int8", False)]
    for s in (80, 90, 95):
        variants.append((f"sparse-{s}", np.where(np.abs(W) > thr[s], W, 0).astype(np.float32), "fp32", True))
    variants.append(("sparse-80 int8", np.where(np.abs(W) > thr[80], W, 0).astype(np.float32), "int8", True))
    if only is not None:
        variants = [v for v in variants if v[0] in only]
    layers = {name: (cpp.CompressedLinear(pack_layer(Wv, b, p, s), threads), Wv, pack_layer(Wv, b, p, s))
              for name, Wv, p, s in variants}
    base = TopK(np.ascontiguousarray(W.T), bias=b, prune=True, num_threads=threads)
    rows = []
    for m in users:
        h = np.tanh(rng.standard_normal((m, HIDDEN))).astype(np.float32)
        ep, ei = _exclusion(rng, m, N_ITEMS, EXCL)
        ex = sp.csr_matrix((np.ones(len(ei), np.float32), ei, ep), shape=(m, N_ITEMS))
        exact = base.search(h, K, exclude=ex, num_threads=threads)[0]
        t_base = _time(lambda: base.search(h, K, exclude=ex, num_threads=threads), repeat)
        c_base = _time.cpu
        rows.append((m, "fp32 TopK prune", m / t_base, m / c_base, 1.0, 1.0, 1.0, 2 * HIDDEN * N_ITEMS,
                     4 * W.size + 4 * N_ITEMS))
        for name, (L, Wv, arrays) in layers.items():
            t = _time(lambda: L.topk(h, K, ep, ei), repeat)
            c = _time.cpu
            ids = L.topk(h, K, ep, ei)[0]
            flops = 2 * (int((Wv != 0).sum()) if "sparse" in name else HIDDEN * N_ITEMS)
            rows.append((m, name, m / t, m / c, t_base / t, c_base / c, _recall(ids, exact), flops,
                         layer_nbytes(arrays)))
    return rows


def topk_w1(repeat, threads, precisions=("int8", "bf16"), rescores=(4, 0)):
    rng = np.random.default_rng(0)
    n, d, m = 20_000, 200, 10_000
    items = rng.standard_normal((n, d)).astype(np.float32)
    q = rng.standard_normal((m, d)).astype(np.float32)
    ep, ei = _exclusion(rng, m, n, EXCL)
    ex = sp.csr_matrix((np.ones(len(ei), np.float32), ei, ep), shape=(m, n))
    fp = TopK(items, num_threads=threads)
    exact = fp.search(q, K, exclude=ex, num_threads=threads)[0]
    t_fp = _time(lambda: fp.search(q, K, exclude=ex, num_threads=threads), repeat)
    c_fp = _time.cpu
    out = [("fp32", m / t_fp, m / c_fp, 1.0, 1.0, 1.0, fp._index.memory_usage())]
    for p in precisions:
        for rescore in rescores:
            ix = TopK(items, precision=p, rescore=rescore, num_threads=threads)
            t = _time(lambda: ix.search(q, K, exclude=ex, num_threads=threads), repeat)
            c = _time.cpu
            ids = ix.search(q, K, exclude=ex, num_threads=threads)[0]
            out.append((f"{p} rescore={rescore}", m / t, m / c, t_fp / t, c_fp / c, _recall(ids, exact),
                        ix._index.memory_usage()))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", default="1000,10000")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--topk-w1", action="store_true")
    ap.add_argument("--no-decoder", action="store_true")
    ap.add_argument("--only", default=None,
                    help="decoder methods to time besides the baseline, comma-separated (e.g. fp32,int8)")
    ap.add_argument("--precisions", default="int8,bf16", help="--topk-w1 precisions")
    ap.add_argument("--rescores", default="4,0", help="--topk-w1 rescore values")
    a = ap.parse_args()
    aerec.set_num_threads(a.threads)
    cfg = io.StringIO()
    aerec.show_config(file=cfg)
    level = [ln for ln in cfg.getvalue().splitlines() if "dispatch level" in ln]
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {level[0].strip() if level else ''}; "
          f"AEREC_ISA={os.environ.get('AEREC_ISA', '')!r}; threads {a.threads}")
    ceiling = _fp32_ceiling(a.threads)
    print(f"fp32 ceiling proxy (sgemm 4096x600x4096, this level): {ceiling:.0f} GFLOP/s wall, "
          f"{2 * 4096 * 600 * 4096 / _time.cpu / 1e9:.0f} GFLOP/cpu-s")
    if not a.no_decoder:
        print("| users | method | users/s | users/cpu-s | x fp32 TopK prune (wall) | (cpu) | recall@100 | "
              "MFLOP (MOP) / user | GFLOP/cpu-s | weight MB |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for m, name, ups, upc, ratio, cratio, rec, flops, nbytes in decoder(
                [int(u) for u in a.users.split(",")], a.repeat, a.threads,
                None if a.only is None else a.only.split(",")):
            print(f"| {m:,} | {name} | {ups:,.0f} | {upc:,.0f} | {ratio:.2f}x | {cratio:.2f}x | {rec:.4f} | "
                  f"{flops / 1e6:.1f} | {upc * flops / 1e9:.0f} | {nbytes / 1e6:.1f} |", flush=True)
    if a.topk_w1:
        print("\nTopK W1 (20,000 x 200, 10,000 queries, k=100, 150 excluded)")
        print("| method | queries/s | queries/cpu-s | x fp32 (wall) | (cpu) | recall@100 | index MB |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
        for name, qps, qpc, ratio, cratio, rec, mem in topk_w1(
                a.repeat, a.threads, a.precisions.split(","), [int(r) for r in a.rescores.split(",")]):
            print(f"| {name} | {qps:,.0f} | {qpc:,.0f} | {ratio:.2f}x | {cratio:.2f}x | {rec:.4f} | {mem / 1e6:.1f} |",
                  flush=True)


if __name__ == "__main__":
    main()

"""MultVAE epoch at MovieLens-20M scale: s/epoch, GFLOP/s, peak RSS, per-phase profile.

Data: a random CSR with MovieLens-20M's shape (136,677 users x 20,108 items, ~10M interactions)
and power-law (Zipf-like) item popularity; user activity is log-normal (median ~35, mean ~73).
Model: [I-600-200-600-I] tanh, variational bottleneck, dropout 0.5, multinomial loss, Adam,
batch 500 (Liang et al. 2018). PyTorch reference (torch.sparse + fused Adam): 90 s/epoch.

    PYTHONPATH=python python3 benchmarks/multvae_epoch.py            # full epoch
    PYTHONPATH=python python3 benchmarks/multvae_epoch.py --rows 5000 # first 10 batches only

Prints the measured time, the GEMM share, the non-GEMM phases and the epoch time projected for a
GEMM running at --gemm-gflops (the packed AVX-512 GEMM target, 200 GFLOP/s).
"""
import argparse
import resource
import time

import numpy as np
import scipy.sparse as sp


def ml20m_like(n_users=136677, n_items=20108, nnz=11_300_000, seed=0):
    rng = np.random.default_rng(seed)
    act = rng.lognormal(mean=3.55, sigma=1.0, size=n_users)
    act = np.maximum(1, np.round(act * nnz / act.sum())).astype(np.int64)
    pop = 1.0 / np.arange(1, n_items + 1) ** 0.8
    pop = rng.permutation(pop / pop.sum())
    rows = np.repeat(np.arange(n_users, dtype=np.int32), act)
    cols = rng.choice(n_items, size=rows.size, p=pop).astype(np.int32)
    X = sp.csr_matrix((np.ones(rows.size, np.float32), (rows, cols)), shape=(n_users, n_items))
    del rows, cols
    X.sum_duplicates()
    X.data[:] = 1.0
    X.sort_indices()
    return X


def vm_hwm_mib():
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=0, help="train only the first ROWS rows (0 = all)")
    ap.add_argument("--batch-size", type=int, default=500)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--lazy", action="store_true", help="lazy (row-sparse) Adam for W0")
    ap.add_argument("--dae", action="store_true", help="MultDAE instead of MultVAE")
    ap.add_argument("--gemm-gflops", type=float, default=200.0)
    ap.add_argument("--threads", type=int, default=0)
    a = ap.parse_args()

    import aerec
    from aerec.backends.cpp import Network
    from aerec.nn.spec import init_params, make_spec
    if a.threads:
        aerec.set_num_threads(a.threads)

    t0 = time.perf_counter()
    X = ml20m_like()
    n_full = X.shape[0]
    if a.rows:
        X = X[: a.rows]
    I = X.shape[1]
    print(f"data: {X.shape[0]} x {I}, nnz {X.nnz:,} (generated in {time.perf_counter() - t0:.1f} s), "
          f"RSS peak so far {vm_hwm_mib():.0f} MiB")
    if a.dae:
        spec = make_spec((I, 600, 200, 600, I), dropout=0.5, loss="multinomial", normalize_input=True,
                         lazy=a.lazy)
    else:
        spec = make_spec((I, 600, 200, 600, I), variational=True, dropout=0.5, loss="multinomial",
                         normalize_input=True, beta=0.2, anneal_steps=200000, lazy=a.lazy)
    net = Network(spec, init_params(spec, 0))
    n_params = sum(p.size for p in net.get_params())
    for epoch in range(a.epochs):
        net.reset_timings()
        t0 = time.perf_counter()
        loss = net.train_epoch(X, X, batch_size=a.batch_size, shuffle=True, seed=epoch)
        dt = time.perf_counter() - t0
        t = net.timings()
        nb = t["batches"]
        non_gemm = dt - t["gemm"]
        full_batches = -(-n_full // a.batch_size)
        scale = full_batches / nb
        flops_epoch = t["gemm_flops"] * scale
        proj = non_gemm * scale + flops_epoch / (a.gemm_gflops * 1e9)
        print(f"epoch {epoch}: loss {loss:.3f}  {dt:.2f} s for {nb} batches  "
              f"({dt * scale:.1f} s/epoch extrapolated to {full_batches} batches)")
        print(f"  GEMM: {t['gemm']:.2f} s, {t['gemm_flops'] / 1e12:.3f} TFLOP -> "
              f"{t['gemm_flops'] / max(t['gemm'], 1e-9) / 1e9:.1f} GFLOP/s (sgemm in this build)")
        phases = {k: t[k] for k in ("gather", "spmm", "noise", "loss", "dense_bwd", "sparse_bwd", "optimizer")}
        print("  non-GEMM per epoch (s): " + ", ".join(f"{k} {v * scale:.2f}" for k, v in phases.items()) +
              f", total non-GEMM {non_gemm * scale:.2f}")
        print(f"  projected epoch with GEMM at {a.gemm_gflops:.0f} GFLOP/s: {proj:.1f} s "
              f"({flops_epoch / 1e12:.2f} TFLOP; overall {flops_epoch / proj / 1e9:.0f} GFLOP/s)")
    print(f"params {n_params:,}; peak RSS {vm_hwm_mib():.0f} MiB; threads {aerec.get_num_threads()}")


if __name__ == "__main__":
    main()

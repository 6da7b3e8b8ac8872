"""The network engine on the MultVAE / MultDAE / CDAE specs: training epochs, NumPy reference vs C++.

    pytest benchmarks/bench_recnet.py --benchmark-only
    python benchmarks/multvae_epoch.py        # the MovieLens-20M-scale epoch (s/epoch, RSS, phases)

extra_info: GFLOP/s of the dense layers (2 * B * n_in * n_out per layer forward, twice that
backward) and, for the C++ network, the per-phase seconds of the last round.
"""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

import aerec
from aerec.nn.spec import init_params, make_spec

HAS_CORE = aerec.backends.available().get("cpp", False)

SHAPES = {  # (users, items, hidden, bottleneck, interactions per user)
    "small": (1000, 2000, 200, 50, 30),
    "mid": (2000, 6000, 600, 200, 60),
}
MODELS = ("multvae", "multdae", "cdae")


def _data(users, items, per_user, seed=0):
    rng = np.random.default_rng(seed)
    pop = 1.0 / np.arange(1, items + 1) ** 0.8
    pop = rng.permutation(pop / pop.sum())
    rows = np.repeat(np.arange(users), per_user)
    cols = rng.choice(items, rows.size, p=pop)
    X = sp.csr_matrix((np.ones(rows.size, np.float32), (rows, cols)), shape=(users, items))
    X.sum_duplicates()
    X.data[:] = 1
    X.sort_indices()
    return X


def _spec(model, items, h, d):
    if model == "multvae":
        return make_spec((items, h, d, h, items), variational=True, dropout=0.5, loss="multinomial",
                         normalize_input=True, beta=0.2, anneal_steps=200000)
    if model == "multdae":
        return make_spec((items, h, d, h, items), dropout=0.5, l2=0.01, loss="multinomial", normalize_input=True)
    return make_spec((items, h, items), activations="sigmoid", loss="logistic", negative_samples=4,
                     dropout=0.2)


def _flops(spec, batch_rows):
    sizes, enc = spec["layer_sizes"], spec["encoder_depth"]
    f = 0.0
    for l in range(1, len(sizes) - 1):
        n_out = sizes[l + 1] * (2 if spec["variational"] and l == enc - 1 else 1)
        f += 6.0 * batch_rows * sizes[l] * n_out
    return f


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("backend", ["numpy", "cpp"])
def test_recnet_epoch(benchmark, backend, shape, model):
    if backend == "cpp" and not HAS_CORE:
        pytest.skip("aerec._core not built")
    users, items, h, d, per_user = SHAPES[shape]
    X = _data(users, items, per_user)
    spec = _spec(model, items, h, d)
    net = aerec.backends.get(backend).Network(spec, init_params(spec, 0))
    args = (X, X)
    benchmark.group = "recnet"
    net.reset_timings()
    benchmark.pedantic(net.train_epoch, args=args, kwargs=dict(batch_size=500), rounds=3, iterations=1,
                       warmup_rounds=0)
    benchmark.extra_info["GFLOP/s"] = _flops(spec, users) / benchmark.stats.stats.median / 1e9
    benchmark.extra_info["nnz"] = int(X.nnz)
    t = net.timings()
    benchmark.extra_info["phases_s_per_epoch"] = {k: t.get(k, 0.0) / 3 for k in
                                                 ("gather", "spmm", "gemm", "noise", "loss", "dense_bwd",
                                                  "sparse_bwd", "optimizer")}

"""Network training speed: the Keras tutorial autoencoder case.

10 -> 64 relu -> 10 sigmoid, MSE, Adam 1e-3, batch 32, 800 training rows (25 steps per epoch),
100 epochs, plus a 200-row validation loss after each epoch (what Autoencoder.fit does with
validation_data). Run:

    PYTHONPATH=python python -m pytest benchmarks/bench_network.py --benchmark-only -q
"""
import numpy as np
import pytest

import aerec
from aerec.nn.spec import make_spec

BACKENDS = [n for n, ok in aerec.backends.available().items() if ok and n in ("cpp", "numpy")]


def _tutorial():
    rng = np.random.default_rng(0)
    sizes = (10, 64, 10)
    params = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        lim = np.sqrt(6.0 / (a + b))
        params += [rng.uniform(-lim, lim, (a, b)).astype(np.float32), np.zeros(b, np.float32)]
    x = rng.random((1000, 10), dtype=np.float32)
    spec = make_spec(sizes, ("relu", "sigmoid"), loss="mse", optimizer="adam", learning_rate=1e-3)
    return spec, params, x[:800], x[800:]


@pytest.mark.parametrize("backend", BACKENDS)
def test_tutorial_100_epochs(benchmark, backend):
    benchmark.group = "network"
    mod = aerec.backends.get(backend)
    spec, params, xt, xv = _tutorial()
    epochs = 100

    def fit():
        net = mod.Network(spec, params)
        for e in range(epochs):
            net.train_epoch(xt, xt, batch_size=32, shuffle=True, seed=e)
            val = net.loss(xv, xv)
        return val

    val = benchmark.pedantic(fit, rounds=7, warmup_rounds=1, iterations=1)
    steps = epochs * ((len(xt) + 31) // 32)
    benchmark.extra_info.update(backend=backend, epochs=epochs, steps=steps, final_val_loss=float(val),
                                isa=aerec._core.active_isa() if backend == "cpp" else "numpy",
                                us_per_step=benchmark.stats.stats.median / steps * 1e6)


def _medium():
    # MultDAE-like dense shape on MovieLens-100K sizes: 943 users x 1682 items, 1682-600-200-600-1682.
    rng = np.random.default_rng(1)
    sizes = (1682, 600, 200, 600, 1682)
    params = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        lim = np.sqrt(6.0 / (a + b))
        params += [rng.uniform(-lim, lim, (a, b)).astype(np.float32), np.zeros(b, np.float32)]
    x = (rng.random((943, 1682)) < 0.06).astype(np.float32)
    spec = make_spec(sizes, ("tanh", "tanh", "tanh", "sigmoid"), dropout=(0.5, 0.0, 0.0, 0.0), loss="bce",
                     optimizer="adam", learning_rate=1e-3)
    return spec, params, x


@pytest.mark.parametrize("input_kind", ["dense", "csr"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_medium_epoch(benchmark, backend, input_kind):
    benchmark.group = "network"
    mod = aerec.backends.get(backend)
    spec, params, x = _medium()
    if input_kind == "csr":
        import scipy.sparse
        x = scipy.sparse.csr_matrix(x)
    net = mod.Network(spec, params)
    net.train_epoch(x, x, batch_size=500, seed=0)  # warm the workspaces

    def epoch():
        return net.train_epoch(x, x, batch_size=500, seed=1)

    benchmark.pedantic(epoch, rounds=3, warmup_rounds=0, iterations=1)
    sizes = spec["layer_sizes"]
    flops = 3 * 2 * x.shape[0] * sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))  # fwd + 2 bwd GEMMs
    benchmark.extra_info.update(backend=backend, input=input_kind, rows=x.shape[0], batch_size=500,
                                gflops=flops / benchmark.stats.stats.median / 1e9)


@pytest.mark.skipif(not __import__("os").environ.get("AEREC_BENCH_LARGE"),
                    reason="set AEREC_BENCH_LARGE=1 (minutes with the placeholder GEMM)")
@pytest.mark.parametrize("backend", [b for b in BACKENDS if b == "cpp"])
def test_multvae_ml20m_shape_steps(benchmark, backend):
    # Mult-VAE on the ML-20M item count: 20108-600-[200]-600-20108, CSR input (0.5% dense),
    # multinomial loss, dropout 0.5 on the input, batch 500; one timed call = 4 steps (2000 users).
    import scipy.sparse
    benchmark.group = "network"
    mod = aerec.backends.get(backend)
    rng = np.random.default_rng(2)
    n_items = 20108
    sizes = (n_items, 600, 200, 600, n_items)
    spec = make_spec(sizes, ("tanh", "identity", "tanh", "identity"), dropout=(0.5, 0.0, 0.0, 0.0),
                     encoder_depth=2, loss="multinomial", optimizer="adam", variational=True, beta=0.2,
                     anneal_steps=200000)
    params = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        b = 2 * b if i == 1 else b
        lim = np.sqrt(6.0 / (a + b))
        params += [rng.uniform(-lim, lim, (a, b)).astype(np.float32), np.zeros(b, np.float32)]
    x = scipy.sparse.random(2000, n_items, density=0.005, format="csr", dtype=np.float32, random_state=3)
    x.data[:] = 1.0
    net = mod.Network(spec, params)
    net.train_epoch(x, x, batch_size=500, seed=0)
    benchmark.pedantic(lambda: net.train_epoch(x, x, batch_size=500, seed=1), rounds=3, iterations=1)
    dense_flops = 2 * 500 * (600 * 400 + 200 * 600 + 600 * n_items)  # per step, layers 1..3 forward
    benchmark.extra_info.update(backend=backend, steps=4, ms_per_step=benchmark.stats.stats.median / 4 * 1e3,
                                dense_gflop_per_step=3 * dense_flops / 1e9)

"""The Keras tutorial fit (10 -> 64 relu -> 10 sigmoid, MSE, Adam 1e-3, batch 32, 100 epochs, validation
every epoch) on aerec's backends and, when installed, PyTorch (eager loop) and tf.keras.

    pytest benchmarks/bench_tutorial.py --benchmark-only          # pytest-benchmark
    python benchmarks/bench_tutorial.py [--repeat 5]              # table of medians and ratios
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import pytest

import aerec

EPOCHS = 100


def data():
    x = np.random.default_rng(0).random((1000, 10), dtype=np.float32)
    return x[:800], x[800:]


def fit_aerec(backend="auto", epochs=EPOCHS):
    x_train, x_val = data()
    ae = aerec.Autoencoder(hidden=(64,), random_state=0, backend=backend)
    ae.fit(x_train, epochs=epochs, batch_size=32, validation_data=x_val)
    return ae.history_["val_loss"][-1]


def fit_torch(epochs=EPOCHS):
    import torch
    torch.manual_seed(0)
    torch.set_num_threads(2)
    x_train, x_val = (torch.from_numpy(a) for a in data())
    model = torch.nn.Sequential(torch.nn.Linear(10, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10), torch.nn.Sigmoid())
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7)
    loss_fn = torch.nn.MSELoss()
    g = torch.Generator().manual_seed(0)
    for _ in range(epochs):
        perm = torch.randperm(len(x_train), generator=g)
        for i in range(0, len(x_train), 32):
            xb = x_train[perm[i:i + 32]]
            opt.zero_grad()
            loss = loss_fn(model(xb), xb)
            loss.backward()
            opt.step()
        with torch.no_grad():
            val = loss_fn(model(x_val), x_val).item()
    return val


def fit_keras(epochs=EPOCHS):
    import tensorflow as tf
    tf.random.set_seed(0)
    x_train, x_val = data()
    model = tf.keras.Sequential([tf.keras.Input((10,)), tf.keras.layers.Dense(64, activation="relu"),
                                 tf.keras.layers.Dense(10, activation="sigmoid")])
    model.compile(optimizer=tf.keras.optimizers.Adam(1e-3), loss="mse")
    h = model.fit(x_train, x_train, epochs=epochs, batch_size=32, validation_data=(x_val, x_val), verbose=0)
    return h.history["val_loss"][-1]


PEERS = {"torch": fit_torch, "keras": fit_keras}


@pytest.mark.parametrize("backend", [n for n, ok in aerec.backends.available().items() if ok])
def test_tutorial_aerec(benchmark, backend):
    benchmark.group = "tutorial"
    rounds = 5 if backend != "numpy" else 1
    val = benchmark.pedantic(fit_aerec, args=(backend,), rounds=rounds, iterations=1)
    benchmark.extra_info["val_mse"] = val


@pytest.mark.parametrize("peer", list(PEERS))
def test_tutorial_peer(benchmark, peer):
    pytest.importorskip({"torch": "torch", "keras": "tensorflow"}[peer])
    benchmark.group = "tutorial"
    val = benchmark.pedantic(PEERS[peer], rounds=3 if peer == "torch" else 1, iterations=1)
    benchmark.extra_info["val_mse"] = val


def timed(fn, repeat):
    times, val = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        val = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), val


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    aerec.set_num_threads(2)
    rows = []
    for name, ok in aerec.backends.available().items():
        if ok:
            rows.append((f"aerec[{name}]", *timed(lambda n=name: fit_aerec(n), args.repeat if name != "numpy" else 1)))
    for peer, fn in PEERS.items():
        try:
            rows.append((peer, *timed(fn, args.repeat if peer == "torch" else 1)))
        except ImportError:
            rows.append((peer, float("nan"), None))
    base = rows[0][1]
    print(f"{'impl':<14}{'median s':>10}{'vs aerec[cpp]':>15}{'val MSE':>12}")
    for name, t, val in rows:
        print(f"{name:<14}{t:>10.4f}{t / base:>14.1f}x{(val or float('nan')):>12.3e}")


if __name__ == "__main__":
    main()

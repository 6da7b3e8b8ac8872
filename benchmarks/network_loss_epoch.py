"""Dense-Network epochs whose elementwise work is the loss rows, input dropout and Adam: a wide
output (n_items) so those bodies are a visible share next to the GEMMs. Prints one line per case,
the median of --repeat epochs (after one warm-up), at the ISA level in force (AEREC_ISA caps it).

    AEREC_ISA=avx2 PYTHONPATH=python python benchmarks/network_loss_epoch.py [--repeat 7] [--threads 1]

Cases: multinomial (tanh hidden, identity output, input dropout 0.5, Adam) and bce (sigmoid
output, SGD with momentum), 1024 users x 8000 items (1% ones), layers 8000-64-8000, batch 256.
"""
import argparse
import statistics
import time

import numpy as np

import aerec
from aerec import _core
from aerec.nn.spec import make_spec


def case(loss):
    rng = np.random.default_rng(0)
    n_users, n_items, hidden = 1024, 8000, 64
    x = (rng.random((n_users, n_items)) < 0.01).astype(np.float32)
    sizes = (n_items, hidden, n_items)
    params = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        params += [rng.normal(0, 0.05, (a, b)).astype(np.float32), np.zeros(b, np.float32)]
    if loss == "multinomial":
        spec = make_spec(sizes, ("tanh", "identity"), dropout=0.5, loss="multinomial", optimizer="adam",
                         learning_rate=1e-3)
    else:
        spec = make_spec(sizes, ("tanh", "sigmoid"), loss="bce", optimizer="sgd", learning_rate=0.1,
                         momentum=0.9)
    return spec, params, x


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--threads", type=int, default=0, help="aerec.set_num_threads (0: all cores)")
    args = ap.parse_args()
    if args.threads:
        aerec.set_num_threads(args.threads)
    mod = aerec.backends.get("cpp")
    for loss in ("multinomial", "bce"):
        spec, params, x = case(loss)
        net = mod.Network(spec, params)
        net.train_epoch(x, x, batch_size=256, shuffle=True, seed=0)
        ts = []
        for e in range(args.repeat):
            t = time.perf_counter()
            net.train_epoch(x, x, batch_size=256, shuffle=True, seed=e + 1)
            ts.append(time.perf_counter() - t)
        print(f"{loss:12s} isa={_core.active_isa():7s} threads={aerec.get_num_threads()} epoch median {1e3 * statistics.median(ts):8.1f} ms"
              f"  (min {1e3 * min(ts):.1f}, n={len(ts)})", flush=True)


if __name__ == "__main__":
    main()

"""A/B of the network engine between two builds, through the public API only (so one script times
any two commits): per-epoch seconds of MultVAE / MultDAE / CDAE on a 20,000-user slice at
MovieLens-20M's item count (40 batches of 500), and the Keras tutorial Autoencoder fit.

Run once per build, interleaved, each holding the benchmark lock; set AEREC_ISA for a lower level:

    for r in 1 2 3; do for b in old new; do
      flock /tmp/aerec-bench.lock env PYTHONPATH=/tmp/ab-$b/python python benchmarks/ab_engine.py $b
      flock /tmp/aerec-bench.lock env AEREC_ISA=avx2 PYTHONPATH=/tmp/ab-$b/python python benchmarks/ab_engine.py $b-avx2
    done; done

Prints one line per case: label, case, median seconds per epoch (epochs 2.. of each fit; the first
one includes parameter initialisation and workspace growth), and the per-epoch list.
"""
import sys
import time

import numpy as np

import aerec
from aerec.callbacks import Callback


def ml20m_slice(n_users=20000, n_items=20108, seed=0):
    """benchmarks/multvae_epoch.py's ML-20M-like generator at n_users rows (same density)."""
    from multvae_epoch import ml20m_like
    return ml20m_like(n_users, n_items, nnz=int(11_300_000 * n_users / 136677), seed=seed)


class EpochTimer(Callback):
    def on_train_begin(self, logs=None):
        self.times, self._t = [], time.perf_counter()

    def on_epoch_end(self, epoch, logs):
        t = time.perf_counter()
        self.times.append(t - self._t)
        self._t = t


def main(label):
    aerec.set_num_threads(2)
    X = ml20m_slice()
    cases = [("multvae", lambda: aerec.MultVAE(epochs=4, random_state=0)),
             ("multdae", lambda: aerec.MultDAE(epochs=3, random_state=0)),
             ("cdae", lambda: aerec.CDAE(epochs=3, random_state=0))]
    for name, make in cases:
        cb = EpochTimer()
        make().fit(X, callbacks=[cb])
        per = cb.times[1:]
        print(f"{label} {name} {np.median(per):.3f} s/epoch {[round(t, 3) for t in cb.times]}", flush=True)
    x = np.random.default_rng(0).random((1000, 10), dtype=np.float32)
    ts = []
    for _ in range(5):
        t = time.perf_counter()
        aerec.Autoencoder(hidden=(64,), random_state=0).fit(x[:800], epochs=100, batch_size=32,
                                                           validation_data=x[800:])
        ts.append(time.perf_counter() - t)
    print(f"{label} tutorial {np.median(ts):.4f} s/fit {[round(t, 4) for t in ts]}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "run")

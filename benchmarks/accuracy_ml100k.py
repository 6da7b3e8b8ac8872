"""Accuracy on MovieLens-100K, side by side (numbers go to benchmarks/RESULTS.md).

1. Rating prediction, the standard 5-fold files u1..u5 base/test: I-AutoRec RMSE per fold and mean
   (scikit-surprise on the same protocol: SVD 0.934, SVD++ 0.919, KNNBaseline 0.931).
2. Top-k, ratings >= 4 as positives, strong generalisation (150 validation + 150 test users, 80%
   fold-in), 5 seeds: mean +- std of NDCG@100, Recall@20, Recall@50 for MultVAE, MultDAE, CDAE,
   EASE, Popularity and (if PyTorch is installed) an independent PyTorch Mult-VAE
   (benchmarks/peers/torch_multvae.py) on the same splits.

    AEREC_DATA=../shared/data python benchmarks/accuracy_ml100k.py [--part autorec|topk|all] [--seeds 5]
"""
from __future__ import annotations

import argparse
import os
import pathlib
import sys
import time

import numpy as np
import scipy.sparse as sp

import aerec

HERE = pathlib.Path(__file__).resolve().parent
DATA = pathlib.Path(os.environ.get("AEREC_DATA", HERE.parents[1] / "shared" / "data")) / "ml-100k"

AUTOREC = dict(hidden=500, l2=150.0, learning_rate=1e-3, epochs=70, batch_size=256, dropout=(0.0, 0.5))


def load_fold(name):
    a = np.loadtxt(DATA / name, dtype=np.int64)
    return sp.csr_matrix((a[:, 2].astype(np.float32), (a[:, 0] - 1, a[:, 1] - 1)), shape=(943, 1682))


def autorec():
    print(f"I-AutoRec {AUTOREC}")
    rmses = []
    for f in range(1, 6):
        tr, te = load_fold(f"u{f}.base"), load_fold(f"u{f}.test")
        t0 = time.perf_counter()
        m = aerec.AutoRec(**AUTOREC, random_state=0).fit(tr)
        u, i = te.nonzero()
        r = np.asarray(te[u, i]).ravel()
        rmse = aerec.metrics.rmse(r, m.predict_ratings(u, i))
        rmses.append(rmse)
        print(f"  u{f}: RMSE {rmse:.4f}  ({time.perf_counter() - t0:.1f} s)", flush=True)
    print(f"  mean RMSE over 5 folds: {np.mean(rmses):.4f} (std {np.std(rmses):.4f})")
    return rmses


def topk_models(n_items):
    models = {
        "MultVAE": lambda: aerec.MultVAE(epochs=200, batch_size=64, total_anneal_steps=2000, random_state=0),
        "MultDAE": lambda: aerec.MultDAE(epochs=200, batch_size=64, random_state=0),
        "CDAE": lambda: aerec.CDAE(latent=100, epochs=100, batch_size=64, dropout=0.5, negative_samples=5,
                                   random_state=0),
        "EASE": lambda: aerec.EASE(l2=200.0),
        "Popularity": lambda: aerec.Popularity(),
    }
    try:
        import torch  # noqa: F401
        sys.path.insert(0, str(HERE))
        from peers.torch_multvae import TorchRecommender
        models["torch Mult-VAE"] = lambda: TorchRecommender(total_anneal_steps=2000, seed=0)
    except ImportError:
        print("  (PyTorch not installed: skipping the peer Mult-VAE)")
    return models


def topk(seeds):
    ds = aerec.datasets.movielens("ml-100k", path=DATA.parent)
    data = ds.interactions.binarize(4.0)
    print(f"top-k: {data!r}")
    keys = ("ndcg@100", "recall@20", "recall@50")
    results = {}
    for seed in range(seeds):
        split = aerec.data.strong_generalization_split(data, n_validation_users=150, n_test_users=150,
                                                       random_state=seed)
        for name, make in topk_models(split.train.n_items).items():
            t0 = time.perf_counter()
            m = make()
            if name in ("EASE", "Popularity"):
                m.fit(split.train)
            elif name.startswith("torch"):
                m.fit(split.train, validation=split.validation, epochs=200, batch_size=64)
            else:
                m.fit(split.train, validation=split.validation)
            res = aerec.evaluate(m, split.test, ks=(20, 50, 100))
            results.setdefault(name, []).append([res[k] for k in keys])
            print(f"  seed {seed} {name:<15} " + "  ".join(f"{k}={res[k]:.4f}" for k in keys)
                  + f"  ({time.perf_counter() - t0:.1f} s)", flush=True)
    print(f"\nmean +- std over {seeds} seeds (150 test users each)")
    print(f"{'model':<16}" + "".join(f"{k:>20}" for k in keys))
    for name, rows in results.items():
        a = np.asarray(rows)
        print(f"{name:<16}" + "".join(f"{m:>12.4f} +-{s:.4f}" for m, s in zip(a.mean(0), a.std(0))))
    return results


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--part", choices=("autorec", "topk", "all"), default="all")
    ap.add_argument("--seeds", type=int, default=5)
    args = ap.parse_args()
    if not (DATA / "u.data").exists():
        sys.exit(f"MovieLens-100K not found at {DATA}; set AEREC_DATA")
    aerec.set_num_threads(2)
    if args.part in ("autorec", "all"):
        autorec()
    if args.part in ("topk", "all"):
        topk(args.seeds)


if __name__ == "__main__":
    main()

"""Do the library defaults hold up? MultVAE() and MultDAE() as constructed with no argument, fitted
with validation (epoch selection on validation NDCG@100), against the recipe of
benchmarks/accuracy_ml100k.py, on MovieLens-100K (ratings >= 4 as positives, strong generalisation,
150 validation + 150 test users, 80% fold-in), test NDCG@100 per seed.

    AEREC_DATA=../shared/data python benchmarks/defaults_ml100k.py [--seeds 3]
"""
from __future__ import annotations

import argparse
import os
import pathlib
import sys
import time

import numpy as np

import aerec

HERE = pathlib.Path(__file__).resolve().parent
DATA = pathlib.Path(os.environ.get("AEREC_DATA", HERE.parents[1] / "shared" / "data")) / "ml-100k"

MODELS = {
    "MultVAE defaults": lambda: aerec.MultVAE(),
    "MultVAE recipe": lambda: aerec.MultVAE(epochs=200, batch_size=64, total_anneal_steps=2000),
    "MultDAE defaults": lambda: aerec.MultDAE(),
    "MultDAE recipe": lambda: aerec.MultDAE(epochs=200, batch_size=64),
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=4)
    args = ap.parse_args()
    if not (DATA / "u.data").exists():
        sys.exit(f"MovieLens-100K not found at {DATA}; set AEREC_DATA")
    aerec.set_num_threads(args.threads)
    data = aerec.datasets.movielens("ml-100k", path=DATA.parent).interactions.binarize(4.0)
    rows = {name: [] for name in MODELS}
    for seed in range(args.seeds):
        split = aerec.data.strong_generalization_split(data, n_validation_users=150, n_test_users=150,
                                                       random_state=seed)
        for name, make in MODELS.items():
            t0 = time.perf_counter()
            m = make().fit(split.train, validation=split.validation, verbose=0)
            res = aerec.evaluate(m, split.test, ks=(100,))
            rows[name].append(res["ndcg@100"])
            print(f"seed {seed} {name:<17} ndcg@100={res['ndcg@100']:.4f} kept epoch {m.best_epoch_} "
                  f"of {len(m.history_['loss'])} ({time.perf_counter() - t0:.1f} s)", flush=True)
    print(f"\nmean test NDCG@100 over {args.seeds} seeds")
    for name, v in rows.items():
        print(f"  {name:<17} {np.mean(v):.4f} +- {np.std(v):.4f}")


if __name__ == "__main__":
    main()

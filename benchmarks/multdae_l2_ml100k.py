"""MultDAE's L2 penalty against Liang et al.'s reference form, paired on the same splits.

The reference (dawenl/vae_cf, MultiDAE) adds ``2 * l2_regularizer(lam)(W)`` = ``lam * sum ||W||^2``
over the weights (no biases) to the batch's mean negative log-likelihood, with
``lam = 0.01 / batch_size``. aerec <= 0.1 passed its ``l2`` (0.01 / 500) straight into the network
spec, whose penalty is ``0.5 * l2 * sum ||W||^2``: half the reference's at batch 500, and not scaled
with the batch. "before" reproduces that penalty exactly (``l2=0.005 / 500`` in today's form);
"after" is today's default ``l2="auto"`` (``0.01 / batch_size`` in the reference form).

MovieLens-100K, ratings >= 4 as positives, strong generalisation (150 validation + 150 test users,
80% fold-in), epoch kept on validation NDCG@100, test NDCG@100 per seed; both arms on one split.

    AEREC_DATA=../shared/data PYTHONPATH=python python benchmarks/multdae_l2_ml100k.py \
        --config defaults|recipe [--seeds 0 1 2 3 4] [--early-stopping 20]
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

CONFIGS = {"defaults": {}, "recipe": dict(epochs=200, batch_size=64)}
ARMS = {"before (0.5 * 0.01/500 * sum W^2)": 0.005 / 500, "after (l2='auto')": "auto"}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", choices=sorted(CONFIGS), default="defaults")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--early-stopping", type=int, default=None,
                    help="stop a fit after this many epochs without a better validation NDCG (both arms)")
    args = ap.parse_args()
    if not (DATA / "u.data").exists():
        sys.exit(f"MovieLens-100K not found at {DATA}; set AEREC_DATA")
    aerec.set_num_threads(args.threads)
    data = aerec.datasets.movielens("ml-100k", path=DATA.parent).interactions.binarize(4.0)
    kw = CONFIGS[args.config]
    print(f"MultDAE({', '.join(f'{k}={v}' for k, v in kw.items())}), seeds {args.seeds}, "
          f"early_stopping={args.early_stopping}")
    res = {arm: [] for arm in ARMS}
    for seed in args.seeds:
        split = aerec.data.strong_generalization_split(data, n_validation_users=150, n_test_users=150,
                                                       random_state=seed)
        for arm, l2 in ARMS.items():
            t0 = time.perf_counter()
            m = aerec.MultDAE(l2=l2, **kw).fit(split.train, validation=split.validation, verbose=0,
                                               early_stopping=args.early_stopping)
            v = aerec.evaluate(m, split.test, ks=(100,))["ndcg@100"]
            res[arm].append(v)
            print(f"seed {seed} {arm:<36} ndcg@100={v:.4f} kept epoch {m.best_epoch_} "
                  f"(spec l2 {m.spec_['l2']:.3g}, {time.perf_counter() - t0:.1f} s)", flush=True)
    (a, b) = (np.asarray(v) for v in res.values())
    for arm, v in res.items():
        print(f"  {arm:<36} {np.mean(v):.4f} +- {np.std(v):.4f}")
    d = b - a
    print(f"  paired after - before: mean {d.mean():+.4f} (per seed {', '.join(f'{x:+.4f}' for x in d)}), "
          f"after better on {(d > 0).sum()} of {len(d)}")


if __name__ == "__main__":
    main()

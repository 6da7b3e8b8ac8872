"""EASE with B pruned to a fraction of its entries against exact EASE (issue 9), paired per seed.

    AEREC_DATA=../shared/data PYTHONPATH=python python benchmarks/ease_prune_accuracy.py [--seeds 5] [--refit]

Protocol (as benchmarks/compress_accuracy.py): MovieLens-100K, ratings >= 4, strong generalisation
(150 validation + 150 test users, 80% fold-in), seeds 0..4. Two comparisons:

* ``l2=200``: every variant is pruned from the one exact EASE fitted with l2 = 200 (the earlier
  table's protocol);
* ``tuned``: the exact EASE keeps the l2 of ``aerec.models.baselines.EASE_L2_GRID`` with the best
  validation NDCG@100, and each pruned variant is tuned the same way (pruned from the exact EASE
  of every l2 of the grid, the best validation NDCG@100 kept): the same tuning for both.

Variants: ``columns-D`` (each column's largest D * n entries, the rule of aerec <= 0.2),
``magnitude-D`` (the default: the D * n^2 largest |B_ij| over the whole matrix), ``+bf16`` / ``+int8``
(the same, bf16 / int8 values), ``+refit`` (``refit=True``: each column re-solved on its kept support; l2=200
only, with --refit). Not timed (accuracy only).
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys

import numpy as np

import aerec
from aerec import compress
from aerec.models.baselines import EASE_L2_GRID

HERE = pathlib.Path(__file__).resolve().parent
DATA = pathlib.Path(os.environ.get("AEREC_DATA", HERE.parents[1] / "shared" / "data")) / "ml-100k"

VARIANTS = {
    "columns-0.1": dict(density=0.1, method="columns"),
    "magnitude-0.05": dict(density=0.05),
    "magnitude-0.1": dict(density=0.1),
    "magnitude-0.1+bf16": dict(density=0.1, precision="bf16"),
    "magnitude-0.1+int8": dict(density=0.1, precision="int8"),
    "magnitude-0.2": dict(density=0.2),
}


def ndcg(model, evalset):
    return float(aerec.evaluate(model, evalset, ks=(100,), metrics=("ndcg",))["ndcg@100"])


def run_seed(split, refit, variants=VARIANTS):
    out = {}
    exact = {lam: aerec.EASE(l2=lam).fit(split.train) for lam in EASE_L2_GRID}
    base = compress.weight_nbytes(exact[200.0])
    val = {lam: ndcg(m, split.validation) for lam, m in exact.items()}
    best = max(EASE_L2_GRID, key=lambda lam: val[lam])
    out["exact"] = {"l2=200": ndcg(exact[200.0], split.test), "tuned": ndcg(exact[best], split.test),
                    "tuned_l2": best, "weights": 1.0}
    for name, kw in variants.items():
        pruned = {lam: compress.prune(m, **kw) for lam, m in exact.items()}
        pv = {lam: ndcg(p, split.validation) for lam, p in pruned.items()}
        pb = max(EASE_L2_GRID, key=lambda lam: pv[lam])
        out[name] = {"l2=200": ndcg(pruned[200.0], split.test), "tuned": ndcg(pruned[pb], split.test),
                     "tuned_l2": pb, "weights": compress.weight_nbytes(pruned[200.0]) / base}
    if refit:
        for d in (0.1,):
            p = compress.prune(exact[200.0], density=d, refit=True)
            out[f"magnitude-{d:g}+refit"] = {"l2=200": ndcg(p, split.test), "weights": compress.weight_nbytes(p) / base}
    return out


def summary(res):
    seeds = sorted(res)
    lines = []
    for proto in ("l2=200", "tuned"):
        lines.append(f"\n{proto}: variant, NDCG@100 mean, paired drop vs exact (mean +- std, worst), weights")
        for name in res[seeds[0]]:
            if proto not in res[seeds[0]][name]:
                continue
            v = np.array([res[s][name][proto] for s in seeds])
            d = np.array([res[s]["exact"][proto] for s in seeds]) - v
            l2s = ",".join(f"{res[s][name]['tuned_l2']:g}" for s in seeds) if proto == "tuned" else ""
            lines.append(f"  {name:<22} {v.mean():.4f}  drop {d.mean():+.4f} +- {d.std():.4f} (worst {d.max():+.4f})  "
                         f"weights {res[seeds[0]][name]['weights']:.4f}x  {l2s}")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--seed-list", default=None)
    ap.add_argument("--refit", action="store_true")
    ap.add_argument("--json", default=None)
    ap.add_argument("--variants", default=None, help="comma-separated subset of " + ",".join(VARIANTS))
    args = ap.parse_args()
    variants = {n: VARIANTS[n] for n in args.variants.split(",")} if args.variants else VARIANTS
    if not (DATA / "u.data").exists():
        sys.exit(f"MovieLens-100K not found at {DATA}; set AEREC_DATA")
    aerec.set_num_threads(1)
    aerec.show_config()
    data = aerec.datasets.movielens("ml-100k", path=DATA.parent).interactions.binarize(4.0)
    seeds = [int(s) for s in args.seed_list.split(",")] if args.seed_list else range(args.seeds)
    res = {}
    for seed in seeds:
        split = aerec.data.strong_generalization_split(data, n_validation_users=150, n_test_users=150,
                                                       random_state=seed)
        res[seed] = run_seed(split, args.refit, variants)
        print(f"seed {seed}: " + "  ".join(f"{k} {v['l2=200']:.4f}" for k, v in res[seed].items()), flush=True)
    print(summary(res))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({str(k): v for k, v in res.items()}, f, indent=1)


if __name__ == "__main__":
    main()

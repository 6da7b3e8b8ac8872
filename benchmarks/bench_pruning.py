"""Pruning in training (issue 9): speed at the ML-20M item count and accuracy on ML-100K.

Parts (``--part``):

``epoch``  (timed: run under ``flock /tmp/aerec-bench.lock``)
    MultVAE I-600-200-600-I on benchmarks/ab_engine.py's ML-20M-like slice (20,000 users x 20,108
    items, 40 batches of 500), one ``Network.train_epoch`` per timing, interleaved per round:
    the dense network, the same network with 80% magnitude masks on every weight matrix (the cost
    of the masks in the fused Adam step; ``timings()["optimizer"]`` is the step's own share), and
    the network after ``prune_units(model, 0.5)`` (I-300-100-300-I). Medians over ``--rounds``
    rounds after one warm-up epoch each.
``accuracy``
    ML-100K ratings >= 4, strong generalisation (150 validation + 150 test users, 80% fold-in),
    seeds 0..4, MultVAE with benchmarks/accuracy_ml100k.py's settings (200 epochs, batch 64,
    2000 anneal steps, best epoch by validation NDCG@100): unpruned; GradualPruning at 50 / 80 /
    90 / 95% final sparsity (begin 0.2, end 0.8: only epochs at the final sparsity can be kept);
    unit pruning 50% of the unpruned model, then 5 and 20 fine-tuning epochs; one-shot 80%
    magnitude masks of the unpruned model, then 5 fine-tuning epochs. Test NDCG@100 and
    Recall@20, paired per seed against the unpruned model.

    AEREC_DATA=/work/shared/data PYTHONPATH=python python benchmarks/bench_pruning.py --part accuracy
    (``--seed-list 0,1`` runs some seeds only, e.g. in parallel processes writing logs;
    ``--part summary --logs a.log b.log`` then prints the table of all of them)
    flock /tmp/aerec-bench.lock env PYTHONPATH=python python benchmarks/bench_pruning.py --part epoch
"""
import argparse
import os
import pathlib
import sys
import time

import numpy as np

import aerec
from aerec import compress

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def epoch_part(rounds):
    from ab_engine import ml20m_slice
    from aerec.models.base import derive_seed
    aerec.show_config()
    X = ml20m_slice()
    # a MultVAE with its initial weights (epochs=0 builds the network without training)
    base = aerec.MultVAE(epochs=0, random_state=0).fit(X, verbose=0)
    Xb = base._binary(X)
    masked = compress.fine_tune(base, compress.magnitude_masks(base, 0.8), X, epochs=0)
    units = compress.prune_units(base, 0.5)
    nets = {"dense 600-200-600": base.net_, "masked 80% (magnitude)": masked.net_,
            "units 50% (300-100-300)": units.net_}
    print("networks:", {k: v.spec["layer_sizes"] for k, v in nets.items()}, flush=True)
    times = {k: [] for k in nets}
    opt = {k: [] for k in nets}
    phases = {k: [] for k in nets}
    for r in range(rounds + 1):
        for name, net in nets.items():
            net.reset_timings()
            t = time.perf_counter()
            net.train_epoch(Xb, Xb, batch_size=500, shuffle=True, seed=derive_seed(0, 1, r) % (2 ** 63))
            dt = time.perf_counter() - t
            if r > 0:  # round 0 warms the workspaces up
                times[name].append(dt)
                opt[name].append(net.timings()["optimizer"])
                phases[name].append(net.timings())
    ref = np.median(times["dense 600-200-600"])
    print(f"\n{'network':<26}{'s/epoch (median)':>18}{'vs dense':>10}{'optimizer s':>14}  per round")
    for name in nets:
        med = np.median(times[name])
        print(f"{name:<26}{med:>18.3f}{ref / med:>9.2f}x{np.median(opt[name]):>14.3f}  "
              f"{[round(t, 3) for t in times[name]]}")
    keys = [k for k in phases["dense 600-200-600"][0] if k not in ("batches", "gemm_flops")]
    print("\nseconds per phase (median over rounds; Network.timings())")
    print(f"{'network':<26}" + "".join(f"{k:>11}" for k in keys) + f"{'GFLOP':>9}")
    for name in nets:
        print(f"{name:<26}" + "".join(f"{np.median([p[k] for p in phases[name]]):>11.3f}" for k in keys)
              + f"{phases[name][0]['gemm_flops'] / 1e9:>9.1f}")


def accuracy_part(seed_list):
    data_dir = pathlib.Path(os.environ.get("AEREC_DATA", "/work/shared/data"))
    ds = aerec.datasets.movielens("ml-100k", path=data_dir)
    data = ds.interactions.binarize(4.0)
    keys = ("ndcg@100", "recall@20")
    rows = {}

    def make(pruning=None):
        return aerec.MultVAE(epochs=200, batch_size=64, total_anneal_steps=2000, random_state=0, pruning=pruning)

    def record(name, seed, m, t0):
        res = aerec.evaluate(m, split.test, ks=(20, 100))
        rows.setdefault(name, {})[seed] = [res[k] for k in keys]
        print(f"RESULT\t{name}\t{seed}\t{res['ndcg@100']!r}\t{res['recall@20']!r}", flush=True)
        sp_ = compress.sparsity_of(m)
        print(f"  seed {seed} {name:<28} ndcg@100={res['ndcg@100']:.4f} recall@20={res['recall@20']:.4f} "
              f"sparsity={sp_:.3f} layers={m.spec_['layer_sizes']} ({time.perf_counter() - t0:.1f} s)", flush=True)

    for seed in seed_list:
        split = aerec.data.strong_generalization_split(data, n_validation_users=150, n_test_users=150,
                                                       random_state=seed)
        t0 = time.perf_counter()
        dense = make().fit(split.train, validation=split.validation, verbose=0)
        record("unpruned", seed, dense, t0)
        for s in (0.5, 0.8, 0.9, 0.95):
            t0 = time.perf_counter()
            m = make(compress.GradualPruning(s)).fit(split.train, validation=split.validation, verbose=0)
            record(f"gradual {int(s * 100)}%", seed, m, t0)
        t0 = time.perf_counter()
        u = compress.prune_units(dense, 0.5)
        record("units 50%, no fine-tune", seed, u, t0)
        u5 = compress.fine_tune(u, None, split.train, epochs=5)
        record("units 50% + 5 epochs", seed, u5, t0)
        u20 = compress.fine_tune(u5, None, split.train, epochs=15)
        record("units 50% + 20 epochs", seed, u20, t0)
        t0 = time.perf_counter()
        m80 = compress.fine_tune(dense, compress.magnitude_masks(dense, 0.8), split.train, epochs=0)
        record("one-shot 80%, no fine-tune", seed, m80, t0)
        m80 = compress.fine_tune(m80, "keep", split.train, epochs=5)
        record("one-shot 80% + 5 epochs", seed, m80, t0)

    summary(rows)


def summary(rows):
    """rows: {variant: {seed: [ndcg@100, recall@20]}} -> the table, paired per seed."""
    base = rows["unpruned"]
    seeds = sorted(base)
    print(f"\nmean +- std over seeds {seeds} (150 test users each); delta = variant - unpruned, paired per seed")
    print(f"{'variant':<30}{'NDCG@100':>18}{'delta NDCG@100':>22}{'worst delta':>13}{'Recall@20':>18}")
    for name, r in rows.items():
        ss = [s for s in seeds if s in r]
        a = np.asarray([r[s] for s in ss])
        d = a[:, 0] - np.asarray([base[s][0] for s in ss])
        print(f"{name:<30}{a[:, 0].mean():>10.4f} +-{a[:, 0].std():.4f}{d.mean():>+14.4f} +-{d.std():.4f}"
              f"{d.min():>+13.4f}{a[:, 1].mean():>10.4f} +-{a[:, 1].std():.4f}")


def summary_from_logs(paths):
    rows = {}
    for p in paths:
        for line in open(p):
            if line.startswith("RESULT\t"):
                _, name, seed, nd, rc = line.rstrip("\n").split("\t")
                rows.setdefault(name, {})[int(seed)] = [float(nd), float(rc)]
    summary(rows)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--part", choices=("epoch", "accuracy", "summary"), required=True)
    ap.add_argument("--seed-list", default=None, help="comma-separated seeds (default: 0..seeds-1)")
    ap.add_argument("--logs", nargs="*", default=())
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    aerec.set_num_threads(args.threads)
    if args.part == "epoch":
        epoch_part(args.rounds)
    elif args.part == "summary":
        summary_from_logs(args.logs)
    else:
        seeds = ([int(s) for s in args.seed_list.split(",")] if args.seed_list else list(range(args.seeds)))
        accuracy_part(seeds)


if __name__ == "__main__":
    main()

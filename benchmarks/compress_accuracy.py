"""Accuracy and size of compressed models (issue 9), paired per seed against the fp32 model.

Protocols (as benchmarks/accuracy_ml100k.py): MovieLens-100K, ratings >= 4 as positives, strong
generalisation (150 validation + 150 test users, 80% fold-in), seeds 0..4; the fitted fp32 model of
each seed is compressed, and every variant is evaluated on that seed's test users (so differences
are paired). I-AutoRec: the u1..u5 base/test folds. The tutorial Autoencoder: 10 -> 64 -> 10 on
uniform data (benchmarks/bench_tutorial.py), validation MSE.

    AEREC_DATA=../shared/data python benchmarks/compress_accuracy.py --part quant|ratings|prune|all [--seeds 5]
        [--multvae-only int8]

``--part quant``: MultVAE int8 / bf16, EASE (exact, int8, B at 5/10/20% density, 10% + int8).
``--part ratings``: I-AutoRec int8 / bf16, tutorial Autoencoder int8 / bf16. ``--part prune``: MultVAE magnitude
pruning at 50/80/90/95% (one-shot + 5 fine-tune epochs), gradual pruning to 80% during training,
50% units (+ 5 fine-tune epochs), int8 on top of pruning, and a short quantisation-aware fine-tune
of int8 (3 epochs, weights put back on the int8 grid after each). The fitted fp32 MultVAE of each
seed is cached under --cache (so --part prune reuses --part quant's fits).
Not timed (accuracy only): no lock needed.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import time

import numpy as np

import aerec
from aerec import compress

HERE = pathlib.Path(__file__).resolve().parent
DATA = pathlib.Path(os.environ.get("AEREC_DATA", HERE.parents[1] / "shared" / "data")) / "ml-100k"
KEYS = ("ndcg@100", "recall@20")
MULTVAE = dict(epochs=200, batch_size=64, total_anneal_steps=2000, random_state=0)


def log(*a):
    print(*a, flush=True)


SEEDS = None


def splits(seeds):
    data = aerec.datasets.movielens("ml-100k", path=DATA.parent).interactions.binarize(4.0)
    for seed in (SEEDS if SEEDS is not None else range(seeds)):
        yield seed, aerec.data.strong_generalization_split(data, n_validation_users=150, n_test_users=150,
                                                           random_state=seed)


def metrics(model, split):
    res = aerec.evaluate(model, split.test, ks=(20, 100), metrics=("ndcg", "recall"))
    return {k: float(res[k]) for k in KEYS}


def record(out, group, seed, name, model, split, base_bytes):
    m = metrics(model, split)
    m["weights_ratio"] = compress.weight_nbytes(model) / base_bytes
    out.setdefault(group, {}).setdefault(name, {})[seed] = m
    log(f"  seed {seed} {group}/{name:<22} " + "  ".join(f"{k}={v:.4f}" for k, v in m.items()))


def multvae(split, seed, cache):
    path = pathlib.Path(cache) / f"multvae_seed{seed}.npz"
    if path.exists():
        return aerec.load(path)
    t0 = time.perf_counter()
    m = aerec.MultVAE(**MULTVAE).fit(split.train, validation=split.validation, verbose=0)
    log(f"  seed {seed} MultVAE fit {time.perf_counter() - t0:.1f} s")
    m.save(path)
    return m


def part_quant(seeds, cache, out, multvae_only=None):
    for seed, split in splits(seeds):
        m = multvae(split, seed, cache)
        base = compress.weight_nbytes(m)
        record(out, "MultVAE", seed, "fp32", m, split, base)
        for p in multvae_only or ("int8", "bf16"):
            record(out, "MultVAE", seed, p, compress.quantize(m, p), split, base)
        if multvae_only:
            continue
        e = aerec.EASE(l2=200.0).fit(split.train)
        base = compress.weight_nbytes(e)
        record(out, "EASE", seed, "exact", e, split, base)
        record(out, "EASE", seed, "int8", compress.quantize(e, "int8"), split, base)
        for d in (0.05, 0.1, 0.2):
            record(out, "EASE", seed, f"density-{d:g}", compress.prune(e, density=d), split, base)
        record(out, "EASE", seed, "density-0.1+int8", compress.prune(e, density=0.1, precision="int8"), split, base)


def part_ratings(out):
    autorec(out)
    tutorial(out)


def load_fold(name):
    import scipy.sparse as sp
    a = np.loadtxt(DATA / name, dtype=np.int64)
    return sp.csr_matrix((a[:, 2].astype(np.float32), (a[:, 0] - 1, a[:, 1] - 1)), shape=(943, 1682))


def autorec(out):
    cfg = dict(hidden=500, l2=150.0, learning_rate=1e-3, epochs=70, batch_size=256, dropout=(0.0, 0.5))
    for f in range(1, 6):
        tr, te = load_fold(f"u{f}.base"), load_fold(f"u{f}.test")
        m = aerec.AutoRec(**cfg, random_state=0).fit(tr, verbose=0)
        u, i = te.nonzero()
        r = np.asarray(te[u, i]).ravel()
        base = compress.weight_nbytes(m)
        for name, v in (("fp32", m), ("int8", compress.quantize(m, "int8")), ("bf16", compress.quantize(m, "bf16"))):
            rmse = float(aerec.metrics.rmse(r, v.predict_ratings(u, i)))
            out.setdefault("AutoRec", {}).setdefault(name, {})[f] = {
                "rmse": rmse, "weights_ratio": compress.weight_nbytes(v) / base}
            log(f"  fold u{f} I-AutoRec/{name}: RMSE {rmse:.4f}")


def tutorial(out):
    x = np.random.default_rng(0).random((1000, 10), dtype=np.float32)
    xt, xv = x[:800], x[800:]
    for seed in range(5):
        ae = aerec.Autoencoder(hidden=(64,), random_state=seed).fit(xt, epochs=100, batch_size=32, verbose=0)
        for name, v in (("fp32", ae), ("int8", compress.quantize(ae, "int8")), ("bf16", compress.quantize(ae, "bf16"))):
            mse = float(np.mean((v.predict(xv).astype(np.float64) - xv) ** 2))
            out.setdefault("Autoencoder", {}).setdefault(name, {})[seed] = {"mse": mse}
            log(f"  seed {seed} Autoencoder/{name}: val MSE {mse:.6f}")


def qat_int8(m, train, epochs=3):
    """Fine-tune ``epochs`` epochs, putting the weights back on the int8 grid after each (a
    projected, post-epoch form of quantisation-aware training), then quantise."""
    from aerec.backends._quant import pack_layer, unpack_layer
    from aerec.compress import pruning
    cur = m
    for _ in range(epochs):
        cur = pruning.fine_tune(cur, None, train, epochs=1, verbose=0)
        p = cur.net_.get_params()
        for i in range(len(cur.spec_["layer_sizes"]) - 1):
            p[2 * i] = unpack_layer(pack_layer(p[2 * i], None, "int8"))[0]
        cur.net_.set_params(p)
    return compress.quantize(cur, "int8")


def part_prune(seeds, cache, out):
    from aerec.compress import GradualPruning
    for seed, split in splits(seeds):
        m = multvae(split, seed, cache)
        base = compress.weight_nbytes(m)
        record(out, "MultVAE", seed, "fp32", m, split, base)
        for s in (0.5, 0.8, 0.9, 0.95):
            p = compress.prune(m, sparsity=s, fine_tune=split.train, fine_tune_epochs=5)
            record(out, "MultVAE-prune", seed, f"magnitude-{s:g}", p, split, base)
            if s == 0.8:
                record(out, "MultVAE-prune", seed, "magnitude-0.8+int8", compress.quantize(p, "int8"), split, base)
                record(out, "MultVAE-prune", seed, "magnitude-0.8 no fine-tune", compress.prune(m, sparsity=s),
                       split, base)
        u = compress.prune(m, sparsity=0.5, method="units", fine_tune=split.train, fine_tune_epochs=5)
        record(out, "MultVAE-prune", seed, "units-0.5", u, split, base)
        record(out, "MultVAE-prune", seed, "units-0.5+int8", compress.quantize(u, "int8"), split, base)
        g = aerec.MultVAE(**MULTVAE, pruning=GradualPruning(final_sparsity=0.8, begin=0.2, end=0.8))
        g.fit(split.train, validation=split.validation, verbose=0)
        gp = compress.prune(g, sparsity=0.8)
        record(out, "MultVAE-prune", seed, "gradual-0.8", gp, split, base)
        record(out, "MultVAE-prune", seed, "gradual-0.8+int8", compress.quantize(gp, "int8"), split, base)
        record(out, "MultVAE-qat", seed, "int8 after 3-epoch QAT", qat_int8(m, split.train), split, base)
        record(out, "MultVAE-qat", seed, "fp32 after 3 more epochs",
               aerec.compress.pruning.fine_tune(m, None, split.train, epochs=3, verbose=0), split, base)


def summary(out):
    lines = []
    for group, variants in out.items():
        ref = variants.get("fp32") or variants.get("exact")
        lines.append(f"\n{group}")
        for name, per in variants.items():
            seeds = sorted(per)
            cols = []
            for k in per[seeds[0]]:
                vals = np.array([per[s][k] for s in seeds])
                txt = f"{k} {vals.mean():.4f}"
                if ref is not None and k in ref[seeds[0]] and k != "weights_ratio" and all(s in ref for s in seeds):
                    d = vals - np.array([ref[s][k] for s in seeds])
                    txt += f" (paired diff {d.mean():+.4f} +- {d.std():.4f}, worst {d.min() if k != 'rmse' and k != 'mse' else d.max():+.4f})"
                cols.append(txt)
            lines.append(f"  {name:<28} " + "; ".join(cols) + f"  [{len(seeds)} runs]")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--part", choices=("quant", "ratings", "prune", "all"), default="all")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--cache", default="/tmp/aerec-compress-accuracy")
    ap.add_argument("--json", default=None, help="also write the per-seed results here")
    ap.add_argument("--seed-list", default=None, help="comma-separated seeds to run (default: 0..seeds-1)")
    ap.add_argument("--threads", type=int, default=1, help="kernel threads (1 on a shared machine)")
    ap.add_argument("--multvae-only", default=None,
                    help="--part quant: only MultVAE fp32 and these precisions (e.g. int8), no EASE")
    args = ap.parse_args()
    if not (DATA / "u.data").exists():
        sys.exit(f"MovieLens-100K not found at {DATA}; set AEREC_DATA")
    os.makedirs(args.cache, exist_ok=True)
    global SEEDS
    if args.seed_list:
        SEEDS = [int(s) for s in args.seed_list.split(",")]
    aerec.set_num_threads(args.threads)
    aerec.show_config()
    out = {}
    if args.part in ("quant", "all"):
        part_quant(args.seeds, args.cache, out,
                   None if args.multvae_only is None else args.multvae_only.split(","))
    if args.part in ("ratings", "all"):
        part_ratings(out)
    if args.part in ("prune", "all"):
        part_prune(args.seeds, args.cache, out)
    print(summary(out))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()

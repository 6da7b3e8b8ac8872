"""The README's compression table and PNG: ``aerec.compress.report`` for a MultVAE on MovieLens-100K
(ratings >= 4, strong generalisation, seed 0, 150 test users) and its compressed variants.

    AEREC_DATA=../shared/data PYTHONPATH=python python benchmarks/compress_report_ml100k.py \
        [--model cached.npz] [--plot benchmarks/compression_ml100k.png]

The variants are built first (pruning fine-tunes 5 epochs); the report, which times ``recommend``,
runs holding /tmp/aerec-bench.lock (the machine's lock for timed runs).
"""
from __future__ import annotations

import argparse
import fcntl
import os
import pathlib

import aerec
from aerec import compress

HERE = pathlib.Path(__file__).resolve().parent
DATA = pathlib.Path(os.environ.get("AEREC_DATA", HERE.parents[1] / "shared" / "data")) / "ml-100k"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None, help="a fitted MultVAE of this split (else one is fitted)")
    ap.add_argument("--plot", default=str(HERE / "compression_ml100k.png"))
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    aerec.set_num_threads(args.threads)
    data = aerec.datasets.movielens("ml-100k", path=DATA.parent).interactions.binarize(4.0)
    split = aerec.data.strong_generalization_split(data, n_validation_users=150, n_test_users=150, random_state=0)
    if args.model:
        m = aerec.load(args.model)
    else:
        m = aerec.MultVAE(epochs=200, batch_size=64, total_anneal_steps=2000, random_state=0)
        m.fit(split.train, validation=split.validation, verbose=0)
    variants = {"int8": compress.quantize(m, "int8"), "bf16": compress.quantize(m, "bf16"),
                "magnitude-80": compress.prune(m, sparsity=0.8, fine_tune=split.train, fine_tune_epochs=5),
                "units-50": compress.prune(m, sparsity=0.5, method="units", fine_tune=split.train,
                                           fine_tune_epochs=5)}
    variants["magnitude-80+int8"] = compress.quantize(variants["magnitude-80"], "int8")
    with open("/tmp/aerec-bench.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        table = compress.report(m, split.test, variants, repeats=5, plot=args.plot)
    aerec.show_config()
    print(table)


if __name__ == "__main__":
    main()

"""Command line: ``aerec demo | train | evaluate | recommend | info``."""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np

MODELS = ("MultVAE", "MultDAE", "CDAE", "EASE", "Popularity", "AutoRec")


def _load_data(spec: str, args):
    from . import datasets, data
    if spec == "synthetic":
        return datasets.synthetic(n_users=args.users, n_items=args.items, density=args.density,
                                  random_state=args.seed)
    if spec in ("ml-100k", "ml-1m", "ml-20m"):
        ds = datasets.movielens(spec)
        inter = getattr(ds, "interactions", ds)
        return inter.binarize(args.threshold) if args.threshold is not None else inter
    inter = data.read_csv(spec, sep=args.sep)
    return inter.binarize(args.threshold) if args.threshold is not None else inter


def _make_model(name: str, args):
    from . import models
    cls = getattr(models, name)
    kw = {}
    if name in ("MultVAE", "MultDAE", "CDAE", "AutoRec"):
        kw.update(epochs=args.epochs, random_state=args.seed)
        if args.batch_size is not None:
            kw["batch_size"] = args.batch_size
    if name == "MultVAE":
        kw["total_anneal_steps"] = args.anneal_steps
    if name == "AutoRec":
        kw["kind"] = "user"  # the CLI evaluates on held-out users; item-based AutoRec cannot fold them in
    return cls(**kw)


def _split(inter, args):
    from .data import strong_generalization_split
    n_eval = max(1, min(args.heldout_users, inter.n_users // 10))
    return strong_generalization_split(inter, n_validation_users=n_eval, n_test_users=n_eval,
                                       random_state=args.seed)


_SHOWN = ("ndcg@100", "recall@20", "recall@50", "map@100", "coverage@100")


def _fmt(res: dict) -> str:
    return "  ".join(f"{k}={res[k]:.4f}" for k in _SHOWN if k in res)


def _demo_sizes(args) -> dict:
    """MultVAE layer sizes from --hidden / --latent (None keeps the model's defaults)."""
    kw = {}
    if args.hidden is not None:
        kw["hidden"] = (args.hidden,)
    if args.latent is not None:
        kw["latent"] = args.latent
    return kw


def cmd_demo(args) -> int:
    from . import evaluate, show_config
    from .models import MultVAE, Popularity
    show_config()
    t0 = time.perf_counter()
    inter = _load_data("synthetic", args)
    print(f"\ndata: synthetic {inter!r} ({time.perf_counter() - t0:.2f} s)")
    split = _split(inter, args)
    pop = Popularity().fit(split.train)
    t0 = time.perf_counter()
    vae = MultVAE(epochs=args.epochs, batch_size=args.batch_size or 100, total_anneal_steps=args.anneal_steps,
                  random_state=args.seed, **_demo_sizes(args))
    vae.fit(split.train, validation=split.validation, verbose=1)
    fit_s = time.perf_counter() - t0
    ks = (20, 50, 100)
    print(f"\nMultVAE trained in {fit_s:.1f} s ({args.epochs} epochs); test users: {len(split.test.users)}")
    print(f"  Popularity  {_fmt(evaluate(pop, split.test, ks=ks))}")
    print(f"  MultVAE     {_fmt(evaluate(vae, split.test, ks=ks))}")
    ids, scores = vae.recommend(user_items=split.test.fold_in[:3], k=5)
    for row, (i, s) in enumerate(zip(ids, scores)):
        print(f"  test user {row}: top-5 items {i.tolist()} (scores {', '.join(f'{v:.2f}' for v in s)})")
    return 0


def cmd_train(args) -> int:
    from . import evaluate
    inter = _load_data(args.data, args)
    split = _split(inter, args)
    model = _make_model(args.model, args)
    t0 = time.perf_counter()
    if args.model in ("EASE", "Popularity", "AutoRec"):
        # AutoRec monitors a rating matrix, not a held-out-users EvalSet
        model.fit(split.train)
    else:
        model.fit(split.train, validation=split.validation, verbose=1)
    print(f"{args.model} fitted in {time.perf_counter() - t0:.1f} s")
    print(f"test: {_fmt(evaluate(model, split.test, ks=(20, 50, 100)))}")
    if args.output:
        model.save(args.output)
        print(f"saved to {args.output}")
    return 0


def cmd_evaluate(args) -> int:
    from . import evaluate, load
    model = load(args.model_path)
    inter = _load_data(args.data, args)
    split = _split(inter, args)
    print(_fmt(evaluate(model, split.test, ks=(20, 50, 100))))
    return 0


def cmd_recommend(args) -> int:
    from . import load
    model = load(args.model_path)
    users = np.asarray(args.user, dtype=np.int64)
    ids, scores = model.recommend(users, k=args.k)
    for u, i, s in zip(users, ids, scores):
        print(f"user {u}: " + ", ".join(f"{a}:{b:.3f}" for a, b in zip(i.tolist(), s.tolist()) if a >= 0))
    return 0


def cmd_info(args) -> int:
    from . import show_config
    show_config()
    return 0


def _int_arg(lo):
    def parse(text):
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if v < lo:
            raise argparse.ArgumentTypeError(f"must be >= {lo}, got {v}")
        if v > 2 ** 63 - 1:
            raise argparse.ArgumentTypeError(f"too large: {v}")
        return v
    parse.__name__ = "int"
    return parse


def _float_arg(text):
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if v != v or v in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"must be finite, got {text!r}")
    return v


_float_arg.__name__ = "float"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="aerec", description="autoencoder recommenders with compiled kernels")
    sub = p.add_subparsers(dest="command", required=True)

    def data_opts(sp, default_epochs):
        sp.add_argument("--users", type=_int_arg(1), default=6000, help="synthetic users")
        sp.add_argument("--items", type=_int_arg(2), default=3000, help="synthetic items")
        sp.add_argument("--density", type=_float_arg, default=0.01, help="synthetic density")
        sp.add_argument("--threshold", type=_float_arg, default=None, help="binarize ratings >= threshold")
        sp.add_argument("--sep", default=",", help="CSV separator")
        sp.add_argument("--heldout-users", type=_int_arg(1), default=500, help="validation and test users each")
        sp.add_argument("--epochs", type=_int_arg(0), default=default_epochs)
        sp.add_argument("--batch-size", type=_int_arg(1), default=None)
        sp.add_argument("--anneal-steps", type=_int_arg(0), default=2000, help="MultVAE KL annealing steps")
        sp.add_argument("--seed", type=_int_arg(0), default=0)

    d = sub.add_parser("demo", help="train MultVAE on built-in synthetic data and compare with popularity")
    data_opts(d, 20)
    # Small networks for quick runs (the CPU-emulation smoke test); defaults: MultVAE's 600 / 200.
    d.add_argument("--hidden", type=int, default=None, help="MultVAE hidden layer width (default 600)")
    d.add_argument("--latent", type=int, default=None, help="MultVAE bottleneck width (default 200)")
    d.set_defaults(func=cmd_demo)
    t = sub.add_parser("train", help="train a model and report test metrics")
    t.add_argument("--model", choices=MODELS, default="MultVAE")
    t.add_argument("--data", default="synthetic", help="synthetic | ml-100k | ml-1m | ml-20m | PATH.csv")
    t.add_argument("--output", "-o", default=None, help="save the model here (.npz)")
    data_opts(t, 50)
    t.set_defaults(func=cmd_train)
    e = sub.add_parser("evaluate", help="evaluate a saved model")
    e.add_argument("model_path")
    e.add_argument("--data", default="synthetic")
    data_opts(e, 0)
    e.set_defaults(func=cmd_evaluate)
    r = sub.add_parser("recommend", help="top-k for training users of a saved model")
    r.add_argument("model_path")
    r.add_argument("--user", type=_int_arg(0), nargs="+", required=True)
    r.add_argument("--k", type=_int_arg(1), default=10)
    r.set_defaults(func=cmd_recommend)
    i = sub.add_parser("info", help="print the configuration (show_config)")
    i.set_defaults(func=cmd_info)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, TypeError, KeyError, IndexError, OSError, MemoryError, ArithmeticError) as exc:
        print(f"aerec: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

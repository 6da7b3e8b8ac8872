"""Command line: ``aerec demo | train | evaluate | recommend | info``.

``aerec --version``; ``aerec COMMAND --help`` shows every option with its default.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import time

import numpy as np

MODELS = ("MultVAE", "MultDAE", "CDAE", "EASE", "Popularity", "AutoRec")
BACKENDS = ("auto", "cpp", "numba", "numpy")
#: the named data sets --data knows besides a file or a folder
NAMED_DATA = ("synthetic", "ml-100k", "ml-1m", "ml-20m")
_AUTO_HELDOUT = 500  # --heldout-users when not given: min(500, users // 10)


class _Formatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default, except where there is none (None) or the help says it."""

    def _get_help_string(self, action):
        if action.default is None or action.default is argparse.SUPPRESS or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


class _TrainingOnly(argparse.Action):
    """A training option given to ``evaluate``: an error that says so (not a silent no-op)."""

    def __call__(self, parser, namespace, values, option_string=None):
        parser.error(f"{option_string} is a training option: evaluate scores the saved model as it is; "
                     f"drop {option_string} (or retrain with 'aerec train {option_string} ...')")


# -- data ------------------------------------------------------------------------------------------

def _movielens_folder(folder: pathlib.Path):
    """(name, folder) of the MovieLens data set in ``folder`` or in one of its ``ml-*`` subfolders."""
    from .datasets import _LAYOUTS
    for name, layout in _LAYOUTS.items():
        if (folder / layout.ratings).is_file():
            return name, folder
    for name, layout in _LAYOUTS.items():
        if (folder / name / layout.ratings).is_file():
            return name, folder / name
    return None, None


def _load_data(spec: str, args):
    from . import datasets, data
    if spec == "synthetic":
        return datasets.synthetic(n_users=args.users, n_items=args.items, density=args.density,
                                  random_state=args.seed)
    if spec in ("ml-100k", "ml-1m", "ml-20m") and not os.path.exists(spec):
        ds = datasets.movielens(spec)  # offline: a ConnectionError saying where to put the files
        inter = getattr(ds, "interactions", ds)
    elif os.path.isdir(spec):
        name, folder = _movielens_folder(pathlib.Path(spec))
        if name is None:
            from .datasets import _LAYOUTS
            files = ", ".join(f"{layout.ratings} ({n})" for n, layout in _LAYOUTS.items())
            raise ValueError(f"--data {spec!r} is a folder without MovieLens ratings: expected one of {files} "
                             f"in it or in its ml-100k/, ml-1m/ or ml-20m/ subfolder; for other data pass a "
                             f"CSV file (user,item[,rating]) with --data PATH.csv")
        ds = datasets.movielens(name, path=folder, download=False)
        inter = getattr(ds, "interactions", ds)
    else:
        inter = data.read_csv(spec, sep=args.sep)
    return inter.binarize(args.threshold) if args.threshold is not None else inter


def _heldout_users(inter, args) -> int:
    n_users = inter.n_users
    if args.heldout_users is None:
        return max(1, min(_AUTO_HELDOUT, n_users // 10))
    h = args.heldout_users
    if 2 * h >= n_users:
        most = (n_users - 1) // 2
        fix = f"pass --heldout-users {most} or fewer" if most >= 1 else "use data with more users"
        raise ValueError(f"--heldout-users {h}: validation and test take {h} users each ({2 * h} in all), but "
                         f"the data have {n_users} users and training needs some; {fix} (without the option: "
                         f"min({_AUTO_HELDOUT}, users // 10) = {max(1, min(_AUTO_HELDOUT, n_users // 10))})")
    return h


def _split(inter, args):
    from .data import strong_generalization_split
    n_eval = _heldout_users(inter, args)
    return strong_generalization_split(inter, n_validation_users=n_eval, n_test_users=n_eval,
                                       random_state=args.seed)


# -- models ----------------------------------------------------------------------------------------

def _engine(args) -> None:
    """--threads (and nothing else global: --backend goes to each model)."""
    if getattr(args, "threads", None) is not None:
        from . import set_num_threads
        set_num_threads(args.threads)


def _make_model(name: str, args):
    from . import models
    cls = getattr(models, name)
    kw = {}
    if name in ("MultVAE", "MultDAE", "CDAE", "AutoRec"):
        kw.update(epochs=args.epochs, random_state=args.seed)
        if args.batch_size is not None:
            kw["batch_size"] = args.batch_size
    if name == "MultVAE":
        if args.anneal_steps is not None:
            kw["total_anneal_steps"] = args.anneal_steps
    if name == "AutoRec":
        kw["kind"] = "user"  # the CLI evaluates on held-out users; item-based AutoRec cannot fold them in
    if "backend" in cls._param_names():
        kw["backend"] = args.backend
    return cls(**kw)


def _demo_sizes(args) -> dict:
    """MultVAE layer sizes from --hidden / --latent (None keeps the model's defaults)."""
    kw = {}
    if args.hidden is not None:
        kw["hidden"] = (args.hidden,)
    if args.latent is not None:
        kw["latent"] = args.latent
    return kw


# -- commands --------------------------------------------------------------------------------------

def cmd_demo(args) -> int:
    from . import compare, show_config
    from .models import MultVAE, Popularity
    _engine(args)
    show_config()
    t0 = time.perf_counter()
    inter = _load_data("synthetic", args)
    print(f"\ndata: synthetic {inter!r} ({time.perf_counter() - t0:.2f} s)")
    split = _split(inter, args)
    vae = MultVAE(epochs=args.epochs, batch_size=args.batch_size or 100, total_anneal_steps="auto" if args.anneal_steps is None else args.anneal_steps,
                  random_state=args.seed, backend=args.backend, **_demo_sizes(args))
    print(f"fitting Popularity and MultVAE ({args.epochs} epochs) on {split.train.n_users} users; "
          f"testing on {len(split.test.users)} users never seen in training\n")
    compare({"Popularity": Popularity(backend=args.backend), "MultVAE": vae}, split, ks=(20, 50, 100),
            fit_kwargs={"verbose": 1})
    ids, scores = vae.recommend(user_items=split.test.fold_in[:3], k=5)
    print()
    for row, (i, s) in enumerate(zip(ids, scores)):
        print(f"  test user {row}: top-5 items {i.tolist()} (scores {', '.join(f'{v:.2f}' for v in s)})")
    return 0


def cmd_train(args) -> int:
    from . import evaluate
    _engine(args)
    inter = _load_data(args.data, args)
    split = _split(inter, args)
    model = _make_model(args.model, args)
    t0 = time.perf_counter()
    if args.model in ("EASE", "Popularity", "AutoRec"):
        # AutoRec monitors a rating matrix, not a held-out-users EvalSet
        model.fit(split.train)
    else:
        model.fit(split.train, validation=split.validation, verbose=1)
    print(f"{args.model} fitted in {time.perf_counter() - t0:.1f} s; test:")
    print(evaluate(model, split.test, ks=(20, 50, 100)))
    if args.output:
        model.save(args.output)
        print(f"saved to {args.output}")
    return 0


def cmd_evaluate(args) -> int:
    from . import evaluate, load
    _engine(args)
    model = load(args.model_path, backend=args.backend)
    inter = _load_data(args.data, args)
    card = getattr(model, "card_", None) or {}
    recorded = card.get("split") or {}
    if recorded.get("protocol") == "strong_generalization" and recorded.get("random_state") is not None:
        # the split the model was trained on, from its card: flags that differ from training's
        # would put training users into the test set
        from .data import strong_generalization_split
        split = strong_generalization_split(inter, n_validation_users=int(recorded["n_validation_users"]),
                                            n_test_users=int(recorded["n_test_users"]),
                                            fold_in_fraction=float(recorded["fold_in_fraction"]),
                                            random_state=int(recorded["random_state"]))
        print(f"split: the one recorded in the model file (strong generalization, "
              f"{recorded['n_test_users']} test users, seed {recorded['random_state']})")
        data = card.get("data") or {}
        from .models._card import fingerprint
        from ._validation import as_csr
        if data.get("sha256") and fingerprint(as_csr(split.train, "train"))["sha256"] != data["sha256"]:
            raise ValueError(f"--data {args.data!r} is not the data the model was trained on: its training part "
                             "differs from the fingerprint in the model file; pass the --data and --threshold "
                             "used for 'aerec train'")
    else:
        split = _split(inter, args)
    print(evaluate(model, split.test, ks=(20, 50, 100)))
    return 0


def cmd_recommend(args) -> int:
    from . import load
    _engine(args)
    model = load(args.model_path, backend=args.backend)
    users = np.asarray(args.user, dtype=np.int64)
    ids, scores = model.recommend(users, k=args.k)
    for u, i, s in zip(users, ids, scores):
        print(f"user {u}: " + ", ".join(f"{a}:{b:.3f}" for a, b in zip(i.tolist(), s.tolist()) if a >= 0))
    return 0


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)  # pragma: no cover


def _value(v) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, (list, tuple)):
        return "(" + ", ".join(_value(x) for x in v) + ("," if len(v) == 1 else "") + ")"
    return repr(v) if isinstance(v, str) else str(v)


def describe_model_file(path) -> str:
    """What ``aerec info PATH`` prints: the model file's class, hyper-parameters, data shape,
    training summary and arrays. The file is read and checked by ``aerec.io.read_model_file``
    (JSON header and plain arrays, no pickle): nothing in it is executed and no model is built."""
    from . import io as aio
    cls, header, arrays = aio.read_model_file(path)  # every check load() makes, and the checksum
    with np.load(path, allow_pickle=False) as z:  # the raw header, for fields the schema does not type
        raw = json.loads(bytes(z[aio._META_KEY]).decode("utf-8"))
    size = os.path.getsize(path)
    lines = [f"{os.fspath(path)}: aerec model file, {_size(size)}, format version {raw.get('format_version')}, "
             f"checksum OK"]
    rows = [("class", cls.__name__)]
    card = raw.get("card") if isinstance(raw.get("card"), dict) else {}
    version = raw.get("aerec_version") or card.get("aerec_version")
    rows.append(("aerec version", str(version) if version else "not recorded in this file"))
    dims = header.get("dims")
    if isinstance(dims, dict) and {"n_users", "n_items"} <= set(dims):
        nnz = dims.get("nnz")
        rows.append(("training data", f"{dims['n_users']:,} users x {dims['n_items']:,} items"
                     + (f", {nnz:,} interactions" if nnz is not None else "")
                     + ("" if "train_indptr" in arrays or cls.__name__ in ("Autoencoder", "TopK")
                        else " (not in this file: saved with include_history=False)")))
    params = header.get("params") or {}
    # what was learned: every array but the training data, the id maps and the optimiser's state
    n_weights = sum(int(a.size) for k, a in arrays.items()
                    if not k.startswith(("train_", "opt_")) and k not in ("user_ids", "item_ids"))
    if n_weights and cls.__name__ != "TopK":
        rows.append(("parameters", f"{n_weights:,} learned numbers"))
    history = header.get("history") or {}
    if isinstance(history, dict) and history:
        n_epochs = max((len(v) for v in history.values()), default=0)
        last = ", ".join(f"{k}={_value(v[-1])}" for k, v in history.items() if v)
        text = f"{n_epochs} epochs; last: {last}"
        if header.get("best_epoch") is not None:
            b = int(header["best_epoch"])
            best = ", ".join(f"{k}={_value(v[b])}" for k, v in history.items() if len(v) > b)
            text += f"; kept epoch {b} ({best})"
        rows.append(("training", text))
    width = max(len(r[0]) for r in rows)
    lines += [f"{k.ljust(width)}  {v}" for k, v in rows]
    if "params" in header and not params:
        lines.append("hyper-parameters: none")
    if params:
        lines.append("hyper-parameters")
        pw = max(len(k) for k in params)
        lines += [f"  {k.ljust(pw)}  {_value(v)}" for k, v in params.items()]
    lines += _card_lines(card)
    other = {k: v for k, v in raw.items() if k not in ("format", "format_version", "class", "sha256", "params",
                                                        "dims", "history", "best_epoch", "aerec_version", "card",
                                                        "weight_names")}
    for k, v in other.items():
        text = _value(v) if not isinstance(v, dict) else ", ".join(f"{a}={_value(b)}" for a, b in v.items())
        lines.append(f"{k}: {text if len(text) <= 300 else text[:297] + '...'}")
    total = sum(int(a.nbytes) for a in arrays.values())
    lines.append(f"arrays ({len(arrays)}, {_size(total)})")
    aw = max((len(k) for k in arrays), default=4)
    for k, a in arrays.items():
        lines.append(f"  {k.ljust(aw)}  {str(a.dtype):<8} {str(a.shape):<16} {_size(int(a.nbytes))}")
    return "\n".join(lines)


def _card_lines(card: dict) -> list:
    """The model card's section of ``aerec info`` (files of aerec <= 0.1 have none)."""
    if not card:
        return ["model card: none (a file of aerec 0.1 or earlier)"]
    lines = ["model card"]
    if card.get("created"):
        lines.append(f"  {'fitted':<10}  {card['created']}")
    data = card.get("data")
    if isinstance(data, dict):
        shape = " x ".join(f"{int(s):,}" for s in data.get("shape", ()))
        lines.append(f"  {'data':<10}  {shape}, {int(data.get('nnz', 0)):,} non-zeros, sha256 {data.get('sha256')}")
    split = card.get("split")
    if isinstance(split, dict):
        text = ", ".join(f"{k}={_value(v)}" for k, v in split.items() if k != "protocol")
        lines.append(f"  {'split':<10}  {split.get('protocol')} ({text})")
    else:
        lines.append(f"  {'split':<10}  not recorded (fitted on data that did not come from an aerec split)")
    if isinstance(card.get("validation"), dict):
        vals = ", ".join(f"{k}={_value(v)}" for k, v in card["validation"].items())
        kept = f" (kept epoch {card['kept_epoch']})" if card.get("kept_epoch") is not None else ""
        lines.append(f"  {'validation':<10}  {vals}{kept}")
    if isinstance(card.get("test"), dict):
        vals = ", ".join(f"{k}={_value(v)}" for k, v in sorted(card["test"].items()))
        lines.append(f"  {'test':<10}  {vals}")
    return lines


def cmd_info(args) -> int:
    if args.model_path is None:
        from . import show_config
        show_config()
        return 0
    print(describe_model_file(args.model_path))
    return 0


# -- parser ----------------------------------------------------------------------------------------

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
    from . import __version__
    p = argparse.ArgumentParser(prog="aerec", formatter_class=_Formatter,
                                description="autoencoder recommenders with compiled C++ kernels")
    p.add_argument("--version", action="version", version=f"aerec {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def data_opts(sp):
        sp.add_argument("--users", type=_int_arg(1), default=6000, help="synthetic data: users")
        sp.add_argument("--items", type=_int_arg(2), default=3000, help="synthetic data: items")
        sp.add_argument("--density", type=_float_arg, default=0.01, help="synthetic data: density")
        sp.add_argument("--threshold", type=_float_arg, default=None,
                        help="keep ratings >= THRESHOLD as positives (default: every interaction)")
        sp.add_argument("--sep", default=",", help="CSV separator")
        sp.add_argument("--heldout-users", type=_int_arg(1), default=None,
                        help=f"validation users and test users, each (default: min({_AUTO_HELDOUT}, users // 10)); "
                             "it is an error if they leave no training users")
        sp.add_argument("--seed", type=_int_arg(0), default=0, help="seed of the data, the split and the model")

    def train_opts(sp, default_epochs):
        sp.add_argument("--epochs", type=_int_arg(0), default=default_epochs, help="training epochs")
        sp.add_argument("--batch-size", type=_int_arg(1), default=None,
                        help="users per training batch (default: the model's)")
        sp.add_argument("--anneal-steps", type=_int_arg(0), default=None,
                        help="MultVAE KL annealing steps (default: 80%% of the planned updates)")

    def engine_opts(sp):
        sp.add_argument("--backend", choices=BACKENDS, default="auto",
                        help="kernels: cpp (compiled), numba, numpy (reference); auto picks the first available "
                             "(AEREC_BACKEND overrides auto)")
        sp.add_argument("--threads", type=_int_arg(0), default=None,
                        help="threads the kernels use (default: all cores; 0 too)")

    def command(name, help_text):
        return sub.add_parser(name, help=help_text, description=help_text, formatter_class=_Formatter)

    data_help = "synthetic | ml-100k | ml-1m | ml-20m | PATH.csv | FOLDER (holding u.data, ratings.dat or ratings.csv)"
    d = command("demo", "train MultVAE on built-in synthetic data and compare it with popularity")
    data_opts(d)
    train_opts(d, 20)
    # Small networks for quick runs (the CPU-emulation smoke test); defaults: MultVAE's 600 / 200.
    d.add_argument("--hidden", type=_int_arg(1), default=None, help="MultVAE hidden layer width (default: 600)")
    d.add_argument("--latent", type=_int_arg(1), default=None, help="MultVAE bottleneck width (default: 200)")
    engine_opts(d)
    d.set_defaults(func=cmd_demo)

    t = command("train", "train a model and report its test metrics")
    t.add_argument("--model", choices=MODELS, default="MultVAE", help="the model")
    t.add_argument("--data", default="synthetic", help=data_help)
    t.add_argument("--output", "-o", default=None, help="save the model here (.npz)")
    data_opts(t)
    train_opts(t, 50)
    engine_opts(t)
    t.set_defaults(func=cmd_train)

    e = command("evaluate", "evaluate a saved model on the test users of a data set (split as 'train' does)")
    e.add_argument("model_path", help="a model file written by 'aerec train -o' or model.save")
    e.add_argument("--data", default="synthetic", help=data_help)
    data_opts(e)
    for flag in ("--epochs", "--batch-size", "--anneal-steps", "--model", "--output", "-o", "--hidden", "--latent"):
        e.add_argument(flag, action=_TrainingOnly, nargs="?", help=argparse.SUPPRESS)
    engine_opts(e)
    e.set_defaults(func=cmd_evaluate)

    r = command("recommend", "top-k items for training users of a saved model")
    r.add_argument("model_path", help="a model file")
    r.add_argument("--user", type=_int_arg(0), nargs="+", required=True, help="user rows of the training data")
    r.add_argument("--k", type=_int_arg(1), default=10, help="items per user")
    engine_opts(r)
    r.set_defaults(func=cmd_recommend)

    i = command("info", "describe a model file (class, hyper-parameters, data, arrays), or without one the "
                        "configuration (instruction sets, threads, backends)")
    i.add_argument("model_path", nargs="?", default=None, help="a model file (read, checked, not executed)")
    i.set_defaults(func=cmd_info)
    return p


def main(argv=None) -> int:
    from ._backends import BackendUnavailableError
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except BrokenPipeError:  # `aerec info m.npz | head`: the reader left; not an error
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return 0
    except (ValueError, TypeError, KeyError, IndexError, OSError, MemoryError, ArithmeticError,
            BackendUnavailableError) as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"aerec: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

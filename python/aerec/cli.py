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
#: ``aerec demo``'s defaults: about 30 s on 2 cores, MultVAE well ahead of popularity
DEMO_USERS, DEMO_ITEMS, DEMO_DENSITY, DEMO_EPOCHS = 2000, 1000, 0.02, 15


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
    print("\nhow to read it: each test user's history is split in two; the model sees one part and ranks "
          "every item;\n  recall@k = share of the hidden items found in its top k (out of min(k, hidden)), "
          "ndcg@k = the same\n  hits weighted by rank (a hit at the top counts most); both are 0..1, higher "
          "is better.\n  Popularity recommends the same best-sellers to everyone; MultVAE learns each user's "
          "tastes,\n  which is why it finds more of the hidden items.")
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
    dist = {}
    if args.distributed:  # under mpiexec: every rank runs this command alike, rank 0 reports and saves
        if args.model == "Popularity":
            raise ValueError("--distributed: Popularity is a count with nothing to distribute; drop --distributed")
        dist = {"distributed": args.distributed}
    try:
        if args.model in ("EASE", "Popularity", "AutoRec"):
            # AutoRec monitors a rating matrix, not a held-out-users EvalSet
            model.fit(split.train, **dist)
        else:
            model.fit(split.train, validation=split.validation, verbose=1, **dist)
    except ImportError as exc:  # --distributed without the mpi extra: a clear one-line error
        if not dist:
            raise
        raise ValueError(str(exc)) from None
    if dist:
        from .distributed import rank
        if rank() != 0:
            return 0
    print(f"{args.model} fitted in {time.perf_counter() - t0:.1f} s; test:")
    print(evaluate(model, split.test, ks=(20, 50, 100)))
    if args.output:
        model.save(args.output)
        print(f"saved to {args.output}")
    return 0


def _recorded_split(model, args):
    """The split a saved model was trained on (its card records it), else one made as 'train' does."""
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
    return split


def cmd_evaluate(args) -> int:
    from . import evaluate, load
    _engine(args)
    model = load(args.model_path, backend=args.backend)
    split = _recorded_split(model, args)
    print(evaluate(model, split.test, ks=(20, 50, 100)))
    return 0


def cmd_compress(args) -> int:
    from . import compress, load
    _engine(args)
    quantise = args.precision not in (None, "fp32")
    pruning = args.sparsity is not None
    if not (quantise or pruning or args.report):
        raise ValueError("nothing to do: pass --precision int8|bf16, --sparsity S (with --method), and/or --report")
    if (quantise or pruning) and args.output is None and not args.report:
        raise ValueError("pass -o PATH for the compressed model (or --report to only compare)")
    if args.plot is not None and not args.report:
        raise ValueError("--plot writes the report's PNG: pass --report too")
    if args.method != "magnitude" and not pruning:
        raise ValueError(f"--method {args.method} prunes: pass --sparsity too")
    if args.fine_tune_epochs and not pruning:
        raise ValueError("--fine-tune-epochs fine-tunes a pruned model: pass --sparsity too")
    needs_data = args.report or (pruning and args.fine_tune_epochs > 0)
    if needs_data and args.data is None:
        raise ValueError("--report and --fine-tune-epochs need --data (the data set the model was trained on)")
    model = load(args.model_path, backend=args.backend)
    split = _recorded_split(model, args) if needs_data else None
    if args.report and type(model).__name__ not in ("MultDAE", "MultVAE", "CDAE", "EASE"):
        raise ValueError(f"--report ranks held-out users, which a {type(model).__name__} file cannot; use "
                         "aerec.compress.report in Python with its test data")

    def make(precision, sparsity):
        if sparsity is None:
            return compress.quantize(model, precision)
        kw = dict(method=args.method, precision=precision or "fp32")
        if args.fine_tune_epochs:
            kw.update(fine_tune=split.train, fine_tune_epochs=args.fine_tune_epochs)
        return compress.prune(model, sparsity, **kw)

    variants = {}
    if quantise or pruning:
        name = "+".join(([f"{args.method}-{args.sparsity:g}"] if pruning else []) + ([args.precision] if quantise else []))
        variants[name] = make(args.precision if quantise else None, args.sparsity)
        if args.output is not None:
            variants[name].save(args.output, include_history=not args.no_history)
            print(f"{name}: saved to {args.output} ({_size(os.path.getsize(args.output))}; the original file: "
                  f"{_size(os.path.getsize(args.model_path))})")
    elif args.output is not None:
        raise ValueError("-o needs --precision or --sparsity (what to write)")
    if args.report:
        if not variants:
            variants = {p: compress.quantize(model, p) for p in ("int8", "bf16")}
        table = compress.report(model, split.test, variants, plot=args.plot)
        print(table)
        if args.plot is not None:
            print(f"plot: {args.plot}")
    return 0


def _raw_maps(model):
    maps = getattr(model, "id_maps_", None) or (None, None)
    return maps[0], maps[1]


def _user_rows(model, given) -> np.ndarray:
    """--user values as training rows: raw user ids where the model has a user map, else row numbers."""
    umap, _ = _raw_maps(model)
    if not model.has_history:
        raise ValueError("this model file was saved without its training interactions (include_history=False), "
                         "so it has no training users to recommend for; serve new users from their history in "
                         "Python: model.recommend_raw(history=[raw item ids])")
    if umap is None:
        rows = []
        for text in given:
            try:
                rows.append(int(text))
            except ValueError:
                raise ValueError(f"--user {text!r}: this model has no raw user ids (it was fitted on a plain "
                                 "matrix or saved without its history), so --user takes row numbers") from None
            if rows[-1] < 0:
                raise ValueError(f"--user {text}: row numbers start at 0")
        return np.asarray(rows, dtype=np.int64)
    raw = np.asarray(umap.raw_ids)
    if raw.dtype.kind in "iu":
        vals = []
        for text in given:
            try:
                vals.append(int(text))
            except ValueError:
                raise ValueError(f"--user {text!r}: this model's raw user ids are integers") from None
    else:
        vals = list(given)
    try:
        idx = np.asarray(umap.to_index(vals), dtype=np.int64).reshape(-1)
    except KeyError as exc:
        msg = exc.args[0] if exc.args else exc
        raise ValueError(f"--user: {msg} (the model knows the raw user ids of its training data)") from None
    return idx


def _load_titles(spec) -> dict:
    """Raw item id -> title from a MovieLens folder or its items file (u.item, movies.dat, movies.csv)."""
    from .datasets import _LAYOUTS, _read_items
    path = pathlib.Path(spec)
    if path.is_file():
        for name, layout in _LAYOUTS.items():
            if layout.items and path.name == layout.items:
                return _read_items(name, path.parent)[0]
        raise ValueError(f"--titles {spec!r}: expected a MovieLens items file ("
                         + ", ".join(l.items for l in _LAYOUTS.values() if l.items) + ") or its folder")
    if path.is_dir():
        name, folder = _movielens_folder(path)
        if name is None:
            for name, layout in _LAYOUTS.items():  # a folder with only the items file
                if layout.items and (path / layout.items).is_file():
                    return _read_items(name, path)[0]
            raise ValueError(f"--titles {spec!r}: no MovieLens items file (u.item, movies.dat, movies.csv) there")
        return _read_items(name, folder)[0]
    raise FileNotFoundError(f"--titles {spec!r}: no such file or folder")


def _raw_out(idmap, idx: np.ndarray) -> list:
    """Index array -> list of raw ids (plain Python values), or the indices themselves without a map."""
    if idmap is None:
        return idx.tolist()
    return np.asarray(idmap.to_raw(idx)).tolist()


def _title_of(titles, raw):
    if not titles:
        return None
    t = titles.get(raw)
    if t is None and isinstance(raw, str):
        try:
            t = titles.get(int(raw))
        except ValueError:
            t = None
    return t


def cmd_recommend(args) -> int:
    from . import load
    _engine(args)
    if args.all and args.user:
        raise ValueError("pass --user USER... or --all, not both")
    if not args.all and not args.user:
        raise ValueError("pass --user USER... (users to show) or --all --output FILE (score every training user)")
    if args.all and not args.output:
        raise ValueError("--all writes to a file: add --output recs.csv (or recs.parquet)")
    if args.dask:
        return _recommend_dask(args)
    if args.output and not args.all:
        raise ValueError("--output goes with --all (score every training user to a file)")
    fmt = None
    if args.output:
        fmt = _output_format(args.output)
    model = load(args.model_path, backend=args.backend)
    titles = _load_titles(args.titles) if args.titles else None
    if args.all:
        return _recommend_all(model, args, fmt, titles)
    umap, imap = _raw_maps(model)
    rows = _user_rows(model, args.user)
    ids, scores = model.recommend(rows, k=args.k)
    shown = _raw_out(umap, rows) if umap is not None else rows.tolist()
    for u, i, s in zip(shown, ids, scores):
        keep = i >= 0
        items = _raw_out(imap, i[keep])
        print(f"user {u}:")
        for rank, (item, score) in enumerate(zip(items, s[keep].tolist()), 1):
            title = _title_of(titles, item)
            print(f"  {rank:>3}. {item}  {score:.3f}" + (f"  {title}" if title else ""))
    return 0


def _recommend_dask(args) -> int:
    """--all --output FOLDER --dask CLIENT: every training user scored on a Dask cluster, Parquet
    partitions written into the folder by the workers."""
    if not args.all:
        raise ValueError("--dask scores every training user: add --all --output FOLDER")
    if args.titles:
        raise ValueError("--titles is not available with --dask (the partitions hold ids); drop --titles")
    if str(args.output).lower().endswith((".csv", ".parquet")):
        raise ValueError(f"--output {args.output}: with --dask the output is a folder of Parquet partitions "
                         "(part-NNNNN.parquet); name a folder, e.g. --output recs/")
    from .distributed import recommend_dask
    try:
        res = recommend_dask(args.model_path, None, k=args.k, output=args.output, client=args.dask,
                             batch_size=args.batch_size)
    except ImportError as exc:  # without the dask extra: a clear one-line error
        raise ValueError(str(exc)) from None
    print(f"wrote {res['rows']:,} recommendations ({res['users']:,} users, top {args.k}) to {res['output']} "
          f"({res['parts']} Parquet partitions)")
    return 0


def _output_format(path) -> str:
    p = str(path).lower()
    if p.endswith(".csv"):
        return "csv"
    if p.endswith(".parquet"):
        try:
            import pyarrow  # noqa: F401
            import pyarrow.parquet  # noqa: F401
        except ImportError:
            raise ValueError(f"--output {path}: writing Parquet needs pyarrow, which is not installed; install "
                             "the extra with pip install 'aerec[parquet]' (or pyarrow), or write CSV "
                             "(--output recs.csv)") from None
        return "parquet"
    raise ValueError(f"--output {path}: unknown format; name the file .csv or .parquet")


def _rec_columns(ids, scores, rows, umap, imap) -> dict:
    """The (user, rank, item, score) columns of top-k results for the users ``rows`` (one per row of
    ``ids``): raw ids through the maps where the model has them (else indices), the padding (-1)
    dropped, ranks from 1. ``umap`` may also be a list of user labels, one per row."""
    keep = ids >= 0
    n_per = keep.sum(axis=1)
    if isinstance(umap, list):
        users = [u for u, n in zip(umap, n_per.tolist()) for _ in range(n)]
    else:
        user_idx = np.repeat(rows, n_per)
        users = _raw_out(umap, user_idx) if umap is not None else user_idx
    item_idx = ids[keep]
    return {"user": users, "rank": (np.cumsum(keep, axis=1)[keep]).astype(np.int32),
            "item": _raw_out(imap, item_idx) if imap is not None else item_idx,
            "score": scores[keep].astype(np.float32)}


def _recommend_all(model, args, fmt, titles) -> int:
    """Every training user's top k, in batches of --batch-size users, to a CSV or Parquet file
    written atomically (a failure leaves no half-written file)."""
    import csv
    import io as _io
    from tqdm.auto import tqdm
    from .io import atomic_write
    if not model.has_history:
        raise ValueError(f"{args.model_path}: saved without its training interactions (include_history=False), "
                         "so it cannot score its training users; --all needs a file saved with its history")
    umap, imap = _raw_maps(model)
    n_users = int(model.train_.shape[0])
    bs = args.batch_size
    names = ["user", "rank", "item", "score"] + (["title"] if titles else [])
    written = 0
    with atomic_write(args.output) as f:
        writer = None
        if fmt == "csv":
            text = _io.TextIOWrapper(f, encoding="utf-8", newline="")
            writer = csv.writer(text)
            writer.writerow(names)
        with tqdm(total=n_users, unit="user", desc="scoring", file=sys.stderr,
                  disable=args.quiet) as bar:
            for start in range(0, n_users, bs):
                rows = np.arange(start, min(start + bs, n_users), dtype=np.int64)
                ids, scores = model.recommend(rows, k=args.k)
                cols = _rec_columns(ids, scores, rows, umap, imap)
                item_idx = ids[ids >= 0]
                if titles:
                    cols["title"] = [_title_of(titles, r) for r in _raw_out(imap, item_idx)]
                if fmt == "csv":
                    lists = [c if isinstance(c, list) else c.tolist() for c in cols.values()]
                    if "score" in cols:
                        lists[3] = [repr(float(v)) for v in cols["score"].tolist()]
                    writer.writerows(zip(*lists))
                else:
                    import pyarrow as pa
                    import pyarrow.parquet as pq
                    table = pa.table({k: (pa.array(v) if isinstance(v, list) else v) for k, v in cols.items()})
                    if writer is None:
                        writer = pq.ParquetWriter(f, table.schema)
                    writer.write_table(table)
                written += int(item_idx.size)
                bar.update(rows.size)
        if fmt == "csv":
            text.flush()
            text.detach()
        elif writer is not None:
            writer.close()
    print(f"wrote {written:,} recommendations ({n_users:,} users, top {args.k}) to {args.output}")
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
                                                        "weight_names", "compression")}
    comp = raw.get("compression")
    if isinstance(comp, dict):  # aerec.compress: what was done, from which weights
        src = comp.get("source") or {}
        pr = comp.get("pruning")
        lines.append(f"compression    {comp.get('precision')} weights"
                     + (f", {pr}-pruned to sparsity {_value(comp.get('sparsity'))}" if pr else ", not pruned")
                     + (f", fine-tuned {comp['fine_tune_epochs']} epochs" if comp.get("fine_tune_epochs") else "")
                     + (f"; from {src.get('class')} weights of {_size(int(src.get('weight_bytes', 0)))} "
                        f"(sha256 {src.get('sha256')})" if src else ""))
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

    def data_opts(sp, users=6000, items=3000, density=0.01):
        sp.add_argument("--users", type=_int_arg(1), default=users, help="synthetic data: users")
        sp.add_argument("--items", type=_int_arg(2), default=items, help="synthetic data: items")
        sp.add_argument("--density", type=_float_arg, default=density, help="synthetic data: density")
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
    # sized to finish in about 30 s on 2 cores (MultVAE's lead over popularity is clear by then)
    data_opts(d, users=DEMO_USERS, items=DEMO_ITEMS, density=DEMO_DENSITY)
    train_opts(d, DEMO_EPOCHS)
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
    t.add_argument("--distributed", choices=("mpi",), default=None,
                   help="data-parallel training over MPI: run under 'mpiexec -n N aerec train ...' (aerec[mpi]); "
                        "rank 0 reports and saves")
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
    r.add_argument("--user", nargs="+", default=None,
                   help="training users: raw user ids where the model has them (fitted on raw ids), else rows")
    r.add_argument("--k", type=_int_arg(1), default=10, help="items per user")
    r.add_argument("--titles", default=None,
                   help="show item titles from a MovieLens folder or items file (u.item, movies.dat, movies.csv)")
    r.add_argument("--all", action="store_true", help="score every training user to --output")
    r.add_argument("--output", "-o", default=None,
                   help="with --all: the file to write, .csv or .parquet (Parquet needs pyarrow: aerec[parquet]); "
                        "rows (user, rank, item, score) in raw ids where the model has them")
    r.add_argument("--batch-size", type=_int_arg(1), default=1000, help="with --all: users scored at a time")
    r.add_argument("--quiet", "-q", action="store_true", help="with --all: no progress bar")
    r.add_argument("--dask", default=None, metavar="CLIENT",
                   help="with --all: score on a Dask cluster, 'tcp://scheduler:8786' or 'local:N' (N local "
                        "worker processes); --output is then a folder of Parquet partitions (aerec[dask])")
    engine_opts(r)
    r.set_defaults(func=cmd_recommend)

    c = command("compress", "quantize (int8 / bf16) and/or prune a saved model; --report compares size, speed "
                            "and accuracy with the original")
    c.add_argument("model_path", help="a model file (MultDAE, MultVAE, CDAE, EASE, AutoRec, Autoencoder)")
    c.add_argument("--precision", choices=("fp32", "int8", "bf16"), default=None,
                   help="weight precision: int8 (per-channel scales) or bf16; fp32 keeps it (with --sparsity)")
    c.add_argument("--sparsity", type=_float_arg, default=None,
                   help="fraction of weights to remove, in [0, 1) (EASE: of B's entries)")
    c.add_argument("--method", choices=("magnitude", "units", "columns"), default="magnitude",
                   help="magnitude: zero the smallest weights, store sparse; units: drop hidden units (smaller "
                        "dense layers); columns (EASE): the largest entries of each column of B")
    c.add_argument("--fine-tune-epochs", type=_int_arg(0), default=0,
                   help="train the pruned model this many epochs more on the training part of --data")
    c.add_argument("--output", "-o", default=None, help="write the compressed model here (.npz)")
    c.add_argument("--no-history", action="store_true",
                   help="leave the training interactions out of the written file (a serving artefact)")
    c.add_argument("--report", action="store_true",
                   help="print size / file / RAM / users/s / NDCG@100 / Recall@20 of the original and the variant "
                        "(default variants: int8 and bf16) on the test users of --data")
    c.add_argument("--data", default=None, help=data_help + " (for --report and --fine-tune-epochs)")
    c.add_argument("--plot", default=None, help="with --report: write accuracy vs size and speed as a PNG "
                                                "(needs matplotlib: aerec[plot])")
    data_opts(c)
    engine_opts(c)
    c.set_defaults(func=cmd_compress)

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
    except (ValueError, TypeError, KeyError, IndexError, OSError, MemoryError, ArithmeticError, ImportError,
            BackendUnavailableError) as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"aerec: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

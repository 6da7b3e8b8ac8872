"""Generic bad-value sweep: every listed parameter of ~60 public entry points x ~35 bad values
(about 10,000 calls), each target in its own subprocess so a crash is counted. Slower than the
table (minutes), so not part of the test run; its findings become rows of badinput_cases.py.

    PYTHONPATH=python python tests/sweep_bad_values.py          # prints unclear errors and crashes

A result is "unclear" when the exception is not a standard one or its message does not name the
parameter; those lines are for a human to read (most are fine on inspection).
"""
import json
import os
import re
import signal
import subprocess
import sys
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))


def _targets():
    warnings.simplefilter("ignore")
    sys.path.insert(0, HERE)
    import numpy as np
    import scipy.sparse as sp
    import badinput_cases as bc
    env = bc.make_env()
    BAD = {
     "None": None, "True": True, "-1": -1, "0": 0, "2**70": 2**70, "-2**70": -2**70, "1.5": 1.5,
     "nan": float("nan"), "inf": float("inf"), "-inf": float("-inf"), "'x'": "x", "b'x'": b"x", "1j": 1j,
     "[]": [], "[[]]": [[]], "np.array([])": np.array([]), "zeros((0,0))": np.zeros((0, 0)),
     "ones((2,2,2))": np.ones((2, 2, 2)), "object()": object(), "np.float16(1)": np.float16(1),
     "np.int8(-1)": np.int8(-1), "{'a':1}": {"a": 1}, "array([nan])": np.array([np.nan]),
     "csr((0,0))": sp.csr_matrix((0, 0)), "np.uint64(2**64-1)": np.uint64(2**64 - 1),
     "array([[1,2]],object)": np.array([[1, 2]], dtype=object), "np.bool_(True)": np.bool_(True),
     "(1,)": (1,), "'auto'": "auto", "-0.0": -0.0, "1e308": 1e308, "np.int64(3)": np.int64(3),
    }
    TARGETS = {}
    def target(name, fn, params):
        TARGETS[name] = (fn, params)
    models = ["pop", "ease", "dae", "vae", "cdae", "ari", "aru"]
    for m in models:
        M = env[m]
        target(f"{m}.recommend", lambda M=M, **kw: M.recommend(**{**dict(user_ids=[0, 1], k=3), **kw}),
               ["user_ids", "user_items", "k", "filter_seen", "items", "filter_items", "batch_size"])
        target(f"{m}.score", lambda M=M, **kw: M.score_items(**{**dict(user_ids=[0, 1]), **kw}), ["user_ids", "user_items"])
        target(f"{m}.similar_items", lambda M=M, **kw: M.similar_items(**{**dict(item_ids=[0], k=3), **kw}),
               ["item_ids", "k", "filter_self"])
        if m in ("dae", "vae", "cdae"):
            target(f"{m}.encode", lambda M=M, **kw: M.encode(**{**dict(user_items=env["X"][:2]), **kw}), ["user_items", "user_ids"])
    import aerec
    ctor = {
     "Popularity": (aerec.Popularity, []),
     "EASE": (aerec.EASE, ["l2", "dtype", "max_memory", "verbose", "backend"]),
     "MultDAE": (lambda **kw: aerec.MultDAE(**{**dict(hidden=(8,), latent=4, epochs=1), **kw}),
                 ["hidden", "latent", "activation", "dropout", "l2", "learning_rate", "epochs", "batch_size", "optimizer", "lazy_adam", "random_state", "backend"]),
     "MultVAE": (lambda **kw: aerec.MultVAE(**{**dict(hidden=(8,), latent=4, epochs=1), **kw}),
                 ["anneal_cap", "total_anneal_steps", "dropout", "l2", "learning_rate", "epochs", "batch_size"]),
     "CDAE": (lambda **kw: aerec.CDAE(**{**dict(latent=4, epochs=1), **kw}),
              ["hidden", "latent", "activation", "dropout", "negative_samples", "epochs", "batch_size", "optimizer", "random_state"]),
     "AutoRec": (lambda **kw: aerec.AutoRec(**{**dict(hidden=6, epochs=1), **kw}),
                 ["kind", "hidden", "activation", "l2", "learning_rate", "epochs", "batch_size", "optimizer", "clip", "dropout", "random_state", "backend"]),
    }
    for cname, (C, params) in ctor.items():
        data = env["R"] if cname == "AutoRec" else env["X"]
        target(f"{cname}().fit", lambda C=C, data=data, **kw: C(**kw).fit(data), params)
        target(f"{cname}.fit(train)", lambda C=C, **kw: (C() if not callable(C) else C()).fit(**kw), ["train"])
    target("Autoencoder().fit", lambda **kw: aerec.Autoencoder(**{**dict(hidden=(4,)), **kw}).fit(env["xd"], epochs=1),
           ["hidden", "activation", "output_activation", "loss", "optimizer", "learning_rate", "random_state", "backend", "bottleneck", "dropout", "l2", "weight_decay", "momentum", "nesterov", "beta1", "beta2", "epsilon"])
    target("Autoencoder.fit(args)", lambda **kw: aerec.Autoencoder(hidden=(4,)).fit(**{**dict(x=env["xd"], epochs=1), **kw}),
           ["x", "y", "epochs", "batch_size", "validation_data", "shuffle", "callbacks", "verbose", "mask"])
    target("ae.encode", lambda **kw: env["ae"].encode(**{**dict(x=env["xd"]), **kw}), ["x", "batch_size"])
    target("ae.predict", lambda **kw: env["ae"].predict(**{**dict(x=env["xd"]), **kw}), ["x", "batch_size"])
    target("ae.evaluate", lambda **kw: env["ae"].evaluate(**{**dict(x=env["xd"]), **kw}), ["x", "y", "mask"])
    target("TopK()", lambda **kw: aerec.TopK(**{**dict(items=env["items"]), **kw}).search(env["q"], 3),
           ["items", "bias", "metric", "precision", "rescore", "prune", "backend", "num_threads"])
    for ix in ("index", "index_int8"):
        target(f"{ix}.search", lambda ix=ix, **kw: env[ix].search(**{**dict(queries=env["q"], k=3), **kw}),
               ["queries", "k", "exclude", "num_threads"])
    target("set_num_threads", lambda **kw: aerec.set_num_threads(**kw), ["n"])
    from aerec.data import Interactions, IdMap
    target("from_arrays", lambda **kw: Interactions.from_arrays(**{**dict(users=[1, 2], items=[3, 4]), **kw}),
           ["users", "items", "values", "timestamps", "user_map", "item_map", "duplicates", "on_invalid", "unknown"])
    target("from_csr", lambda **kw: Interactions.from_csr(**{**dict(matrix=env["X"]), **kw}),
           ["matrix", "user_ids", "item_ids", "timestamps", "explicit", "on_invalid"])
    target("read_csv", lambda **kw: Interactions.read_csv(**{**dict(path=env["files"]["bom"]), **kw}),
           ["path", "sep", "columns", "header", "binarize", "encoding"])
    target("binarize", lambda **kw: env["inter_ts"].binarize(**kw), ["threshold", "drop_empty"])
    target("filter", lambda **kw: env["inter"].filter(**kw), ["min_user_count", "min_item_count", "iterative"])
    target("user_items", lambda **kw: env["inter"].user_items(**kw), ["users"])
    target("subset_users", lambda **kw: env["inter"].subset_users(**kw), ["users"])
    target("to_arrays", lambda **kw: env["inter"].to_arrays(**kw), ["raw_ids"])
    target("IdMap", lambda **kw: IdMap(**kw), ["raw_ids"])
    target("IdMap.to_index", lambda **kw: IdMap([1, 2, 3]).to_index(**{**dict(raw=[1]), **kw}), ["raw", "missing"])
    target("IdMap.to_raw", lambda **kw: IdMap([1, 2, 3]).to_raw(**kw), ["index"])
    target("IdMap.identity", lambda **kw: IdMap.identity(**kw), ["n"])
    target("IdMap.subset", lambda **kw: IdMap([1, 2, 3]).subset(**kw), ["index"])
    target("random_split", lambda **kw: aerec.data.random_split(**{**dict(data=env["inter"]), **kw}), ["data", "test_fraction", "validation_fraction", "random_state"])
    target("temporal_split", lambda **kw: aerec.data.temporal_split(**{**dict(data=env["inter_ts"]), **kw}), ["data", "n_test", "n_validation"])
    target("kfold_split", lambda **kw: aerec.data.kfold_split(**{**dict(data=env["inter"]), **kw}), ["data", "n_folds", "random_state"])
    target("strong_split", lambda **kw: aerec.data.strong_generalization_split(**{**dict(data=env["inter"], n_validation_users=2, n_test_users=2), **kw}),
           ["data", "n_validation_users", "n_test_users", "fold_in_fraction", "random_state"])
    target("synthetic", lambda **kw: aerec.datasets.synthetic(**{**dict(n_users=50, n_items=20), **kw}),
           ["n_users", "n_items", "density", "n_factors", "popularity_exponent", "cluster_strength", "primary_weight", "activity_sigma", "min_user_interactions", "max_user_fraction", "time_span_days", "random_state", "return_truth", "chunk_interactions"])
    target("movielens", lambda **kw: aerec.datasets.movielens(**{**dict(name="ml-100k", download=False), **kw}), ["name", "path", "cache_dir", "download", "verify"])
    MT = aerec.metrics
    HO = env["X"][:3]
    RK = np.array([[0, 1]] * 3)
    for fn in ("recall_at_k", "ndcg_at_k", "precision_at_k", "map_at_k", "mrr", "hit_rate_at_k"):
        target(f"metrics.{fn}", lambda fn=fn, **kw: getattr(MT, fn)(**{**dict(ranked=RK, held_out=HO, k=2), **kw}), ["ranked", "held_out", "k", "per_user"])
    target("metrics.coverage", lambda **kw: MT.coverage(**{**dict(ranked=RK, n_items=25), **kw}), ["ranked", "n_items", "k"])
    target("metrics.ranking_metrics", lambda **kw: MT.ranking_metrics(**{**dict(ranked=RK, held_out=HO), **kw}), ["ranked", "held_out", "ks", "metrics", "per_user", "check_duplicates"])
    target("metrics.rmse", lambda **kw: MT.rmse(**{**dict(y_true=[1.0, 2.0], y_pred=[1.0, 2.5]), **kw}), ["y_true", "y_pred"])
    target("evaluate", lambda **kw: aerec.evaluate(**{**dict(model=env["pop_raw"], split_or_evalset=env["split"]), **kw}),
           ["model", "split_or_evalset", "ks", "batch_size", "on", "metrics", "per_user"])
    target("recommend_raw", lambda **kw: env["pop_raw"].recommend_raw(**{**dict(raw_user_ids=["u1"]), **kw}), ["raw_user_ids", "k"])
    target("predict_ratings", lambda **kw: env["ari"].predict_ratings(**{**dict(users=[0], items=[0]), **kw}), ["users", "items"])
    target("EarlyStopping", lambda **kw: aerec.EarlyStopping(**kw), ["monitor", "patience", "min_delta", "mode", "restore_best_weights"])

    return TARGETS, BAD


def _worker(name):
    TARGETS, BAD = _targets()

    def alarm(*a):
        raise TimeoutError("HANG")
    signal.signal(signal.SIGALRM, alarm)
    fn, params = TARGETS[name]
    for p in params:
        for bname, bval in BAD.items():
            key = f"{name}({p}={bname})"
            print(json.dumps({"start": key}), flush=True)
            signal.alarm(15)
            try:
                fn(**{p: bval})
                rec = {"k": key, "o": "ok"}
            except TimeoutError:
                rec = {"k": key, "o": "HANG"}
            except BaseException as e:  # noqa: BLE001
                rec = {"k": key, "o": type(e).__name__, "m": str(e)[:200].replace("\n", " ")}
            signal.alarm(0)
            print(json.dumps(rec), flush=True)


STANDARD = ("ValueError", "TypeError", "UnknownIdError", "IndexError", "KeyError", "RuntimeError",
            "FileNotFoundError", "MemoryError", "ModelFileError", "FloatingPointError", "ConnectionError")


def main():
    names = subprocess.run([sys.executable, __file__, "--list"], capture_output=True, text=True).stdout.split()
    res = []
    for t in names:
        p = subprocess.run([sys.executable, __file__, "--worker", t], capture_output=True, text=True, timeout=1800)
        started = None
        for line in p.stdout.splitlines():
            try:
                r = json.loads(line)
            except ValueError:
                continue
            if "start" in r:
                started = r["start"]
            else:
                res.append(r)
        if p.returncode != 0:
            res.append({"k": started, "o": f"CRASH rc={p.returncode}", "m": p.stderr[-300:]})
    unclear = 0
    for r in res:
        if r["o"] == "ok":
            continue
        t, p, v = re.match(r"(.*)\((\w+)=(.*)\)$", r["k"]).groups()
        msg = r.get("m", "")
        if r["o"] not in STANDARD or p.lower().rstrip("s") not in msg.lower():
            unclear += 1
            print(f"{r['k']}: {r['o']}: {msg[:160]}")
    counts = {}
    for r in res:
        counts[r["o"]] = counts.get(r["o"], 0) + 1
    print(f"{len(res)} calls; outcomes {counts}; {unclear} to read")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--list"]:
        print("\n".join(_targets()[0]))
    elif sys.argv[1:2] == ["--worker"]:
        _worker(sys.argv[2])
    else:
        main()

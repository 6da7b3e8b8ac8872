"""A/B of the one network engine (issue 8): ``_core.Network`` against ``_core.RecNetwork`` in the
same build, and the dense tutorial case against an older build's ``_core.Network``.

Cases (each timed as median of --repeats, the engines alternating repeat by repeat):
  multvae   an epoch slice at MovieLens-20M scale (benchmarks/multvae_epoch.ml20m_like, first
            --rows rows, batches of 500): [I-600-200-600-I] tanh, VAE (beta 0.2, 200k anneal
            steps), L2-normalised input, dropout 0.5, multinomial, Adam; CSR input, y = x
  cdae      the same rows, batches of 256: [I-50-I] sigmoid, per-user vector (136,678 rows),
            dropout 0.2, logistic loss with 5 negatives per positive, l2 1e-5, Adam
  tutorial  10 -> 64 relu -> 10 sigmoid, mse, Adam 1e-3 (epsilon 1e-7), batch 32, 60,000 rows of
            U(0, 1), one shuffled epoch; this build's Network against --old-core's (one
            subprocess per repeat and build, alternating)

    flock /tmp/aerec-bench.lock env PYTHONPATH=python python benchmarks/engine_ab.py \\
        --old-core /tmp/old-main/python/aerec/_core.cpython-311-x86_64-linux-gnu.so
    flock /tmp/aerec-bench.lock env AEREC_ISA=avx2 PYTHONPATH=python python benchmarks/engine_ab.py ...

Prints one line per case: both medians, their ratio new / reference (< 1: the new engine is
faster), the median of the per-repeat ratios and every repeat.
"""
import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import time

import numpy as np

TUTORIAL_SPEC = dict(layer_sizes=(10, 64, 10), activations=("relu", "sigmoid"), dropout=(0.0, 0.0),
                     encoder_depth=1, loss="mse", l2=0.0, optimizer="adam", learning_rate=1e-3, beta1=0.9,
                     beta2=0.999, epsilon=1e-7, weight_decay=0.0, momentum=0.0, nesterov=False, seed=0)


def load_core(path):
    spec = importlib.util.spec_from_file_location("_core", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def tutorial_worker(core_path, epochs):
    """One timing of the tutorial epoch(s) with the _core at core_path; prints seconds."""
    core = load_core(core_path)
    rng = np.random.default_rng(0)
    x = rng.random((60_000, 10), dtype=np.float32)
    params = []
    for a, b in ((10, 64), (64, 10)):
        lim = np.sqrt(6.0 / (a + b))
        params += [rng.uniform(-lim, lim, (a, b)).astype(np.float32), np.zeros(b, np.float32)]
    net = core.Network(TUTORIAL_SPEC, params)
    t0 = time.perf_counter()
    for e in range(epochs):
        net.train_epoch(x, x, None, 32, True, e)
    print(time.perf_counter() - t0)


def sparse_cases(rows):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from multvae_epoch import ml20m_like
    from aerec import _core
    from aerec.models.recspec import init_rec_params, make_rec_spec
    from aerec.nn.spec import make_spec

    X = ml20m_like()
    n_users, items = X.shape
    X = X[:rows]
    ip, ix, dt = X.indptr.astype(np.int64), X.indices.astype(np.int32), X.data.astype(np.float32)
    xc = _core.CsrMatrix(ip, ix, dt, X.shape[0], items)
    users = np.arange(X.shape[0], dtype=np.int32)
    cases = {}
    # MultVAE
    rspec = make_rec_spec(layer_sizes=(items, 600, 200, 600, items), variational=True, input_dropout=0.5,
                          anneal_cap=0.2, total_anneal_steps=200000)
    nspec = make_spec((items, 600, 200, 600, items), variational=True, dropout=0.5, normalize_input=True,
                      beta=0.2, anneal_steps=200000, loss="multinomial")
    params = init_rec_params(rspec, 0)
    cases["multvae"] = (
        lambda: _core.RecNetwork(rspec, params),
        lambda n: n.train_epoch(ip, ix, dt, X.shape[0], batch_size=500, shuffle=True, seed=0),
        lambda: _core.Network(nspec, params),
        lambda n: n.train_epoch(xc, xc, None, 500, True, 0, None))
    # CDAE
    rspec_c = make_rec_spec(layer_sizes=(items, 50, items), activations=("sigmoid", "identity"), normalize_input=False,
                            input_dropout=0.2, loss="logistic", negative_samples=5, n_users_embedding=n_users + 1,
                            l2=1e-5)
    nspec_c = make_spec((items, 50, items), ("sigmoid", "identity"), dropout=0.2, loss="logistic", negative_samples=5,
                        n_users=n_users + 1, l2=1e-5)
    params_c = init_rec_params(rspec_c, 0)
    cases["cdae"] = (
        lambda: _core.RecNetwork(rspec_c, params_c),
        lambda n: n.train_epoch(ip, ix, dt, X.shape[0], batch_size=256, shuffle=True, seed=0, users=users),
        lambda: _core.Network(nspec_c, params_c),
        lambda n: n.train_epoch(xc, xc, None, 256, True, 0, users))
    return cases


def report(name, ref_name, ref, new):
    """Medians, their ratio and the median of the per-repeat ratios (each pair ran back to back,
    so it holds up better when the shared machine's load changes during the run)."""
    mr, mn = statistics.median(ref), statistics.median(new)
    paired = statistics.median(n / r for r, n in zip(ref, new))
    print(f"{name:9s} {ref_name} {mr:.3f} s   Network {mn:.3f} s   new/ref {mn / mr:.3f}   paired {paired:.3f}   "
          f"(ref {' '.join(f'{t:.3f}' for t in ref)}; new {' '.join(f'{t:.3f}' for t in new)})", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--rows", type=int, default=20_000, help="rows of the ML-20M-like matrix (40 batches of 500)")
    ap.add_argument("--cases", default="multvae,cdae,tutorial")
    ap.add_argument("--old-core", help="the _core .so of the reference build (tutorial case)")
    ap.add_argument("--tutorial-epochs", type=int, default=1)
    ap.add_argument("--tutorial-worker", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.tutorial_worker:
        tutorial_worker(a.tutorial_worker, a.tutorial_epochs)
        return
    import aerec
    from aerec import _core
    print(f"dispatch level {_core.active_isa()}, threads {aerec.get_num_threads()}, repeats {a.repeats}", flush=True)
    cases = a.cases.split(",")
    sparse = [c for c in cases if c in ("multvae", "cdae")]
    if sparse:
        built = sparse_cases(a.rows)
        for name in sparse:
            make_ref, run_ref, make_new, run_new = built[name]
            times = {"ref": [], "new": []}
            for _ in range(a.repeats):
                for key, make, run in (("ref", make_ref, run_ref), ("new", make_new, run_new)):
                    net = make()
                    t0 = time.perf_counter()
                    run(net)
                    times[key].append(time.perf_counter() - t0)
                    del net
            report(name, "RecNetwork", times["ref"], times["new"])
    if "tutorial" in cases:
        if not a.old_core:
            sys.exit("--old-core is needed for the tutorial case")
        new_core = _core.__file__
        times = {"ref": [], "new": []}
        for _ in range(a.repeats):
            for key, path in (("ref", a.old_core), ("new", new_core)):
                out = subprocess.run([sys.executable, __file__, "--tutorial-worker", path, "--tutorial-epochs",
                                      str(a.tutorial_epochs)], capture_output=True, text=True, check=True)
                times[key].append(float(out.stdout.strip()))
        report("tutorial", "old Network", times["ref"], times["new"])


if __name__ == "__main__":
    main()

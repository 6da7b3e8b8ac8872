"""Run by tests/test_distributed.py under ``mpiexec -n N`` (or alone): fit one model on a seeded
synthetic data set, single-process or with ``distributed="mpi"``, and write rank 0's parameters,
loss history and validation NDCG@100 to an .npz.

    mpi_fit.py MODEL OUT {single,mpi} BATCH [--fail-rank R --fail-step S --fail-how {raise,kill,callback}]
"""
import argparse
import os
import signal

import numpy as np
import scipy.sparse as sp

import aerec


def data(n_users=600, n_items=120, seed=0):
    rng = np.random.default_rng(seed)
    pop = rng.zipf(1.5, n_items).astype(float)
    pop /= pop.sum()
    rows, cols = [], []
    for u in range(n_users):
        items = rng.choice(n_items, size=int(rng.integers(3, 20)), replace=False, p=pop)
        rows += [u] * items.size
        cols += items.tolist()
    X = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(n_users, n_items))
    X.sum_duplicates()
    return X


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("out")
    ap.add_argument("mode", choices=["single", "mpi"])
    ap.add_argument("batch", type=int)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--fail-rank", type=int, default=-1)
    ap.add_argument("--fail-step", type=int, default=2)
    ap.add_argument("--fail-how", default="raise", choices=["raise", "kill", "hang", "callback"])
    a = ap.parse_args()
    X = data()
    rng = np.random.default_rng(1)
    V = data(100, X.shape[1], seed=2)
    mask = rng.random(V.nnz) < 0.8
    fold = sp.csr_matrix((V.data * mask, V.indices.copy(), V.indptr.copy()), shape=V.shape)
    held = sp.csr_matrix((V.data * ~mask, V.indices.copy(), V.indptr.copy()), shape=V.shape)
    fold.eliminate_zeros()
    held.eliminate_zeros()
    kind = a.model
    backend = os.environ.get("AEREC_TEST_BACKEND", "auto")
    if kind == "MultVAE":
        m = aerec.MultVAE(hidden=(32,), latent=8, epochs=a.epochs, batch_size=a.batch, backend=backend)
    elif kind == "MultDAE":
        m = aerec.MultDAE(hidden=(32,), latent=8, epochs=a.epochs, batch_size=a.batch, backend=backend)
    elif kind == "CDAE":
        m = aerec.CDAE(latent=16, epochs=a.epochs, batch_size=a.batch, backend=backend)
    elif kind == "AutoRec":
        m = aerec.AutoRec(kind="user", hidden=16, epochs=a.epochs, batch_size=a.batch, backend=backend)
    elif kind == "Autoencoder":
        m = aerec.Autoencoder(hidden=(12,), dropout=0.1, random_state=0, backend=backend)
    elif kind == "EASE":
        m = aerec.EASE(l2=50.0)
    else:
        raise SystemExit(f"unknown model {kind}")
    dist = "mpi" if a.mode == "mpi" else None
    from aerec.distributed import rank
    if a.fail_rank == rank() and a.fail_how in ("raise", "kill", "hang"):
        _inject_failure(a.fail_step, a.fail_how)
    callbacks = None
    if a.fail_how == "callback" and a.fail_rank == 0:
        def cb(epoch, logs):
            raise RuntimeError("injected failure in a rank-0 callback")
        callbacks = [cb]
    if kind == "EASE":
        m.fit(X, distributed=dist)
    elif kind == "AutoRec":
        kw = {"distributed": dist} if dist else {}
        m.fit(X, epochs=a.epochs, callbacks=callbacks, verbose=0, **kw)
    elif kind == "Autoencoder":  # dense real-valued inputs, validation loss
        kw = {"distributed": dist} if dist else {}
        x = np.random.default_rng(3).random((300, 20), dtype=np.float32)
        m.fit(x[:240], epochs=a.epochs, batch_size=a.batch, validation_data=x[240:], verbose=0, **kw)
    else:
        kw = {"distributed": dist} if dist else {}
        from aerec.distributed import RankFailedError, _mpi
        made = []  # the DataParallel of the fit (the model keeps no network when fit fails)
        orig_init = _mpi.DataParallel.__init__

        def init(self, *args, **kw):
            orig_init(self, *args, **kw)
            made.append(self)
        _mpi.DataParallel.__init__ = init
        try:
            m.fit(X, validation=(fold, held), callbacks=callbacks, verbose=0, **kw)
        except RankFailedError:
            # the network is back on parameters of its own (not the job's shared block)
            print(f"rank {rank()}: params_bound after the failure: {made[-1].net.params_bound}", flush=True)
            raise
    if dist and kind != "EASE" and m.net_.params_bound:
        raise SystemExit("the network is still bound to the job's shared parameters after fit")
    if rank() == 0:
        out = {}
        if kind == "EASE":
            out["p0"] = m.B_
        else:
            for i, p in enumerate(m.net_.get_params()):
                out[f"p{i}"] = p
            for key, v in m.history_.items():
                out[f"h_{key}"] = np.asarray(v, float)
            for key, v in m.net_.get_optimizer_state().items():
                out[f"s_{key}"] = np.asarray(v)
            stats = getattr(m, "distributed_stats_", None)
            out["sharded"] = np.array(bool(stats and stats.get("sharded")))
            out["shared_memory"] = np.array(bool(stats and stats.get("shared_memory")))
            out["shared_params"] = np.array(bool(stats and stats.get("shared_params")))
        if kind not in ("AutoRec", "Autoencoder"):
            res = aerec.evaluate(m, _evalset(fold, held), ks=(100,), metrics=("ndcg",))
            out["ndcg"] = np.array(float(res["ndcg@100"]))
        np.savez(a.out, **out)


def _inject_failure(step, how):
    """This rank's network raises (or kills the process) in its gradient computation from
    optimizer step ``step`` on."""
    from aerec.distributed import _mpi
    orig_init = _mpi.DataParallel.__init__

    def init(self, *args, **kw):
        orig_init(self, *args, **kw)
        net = self.net
        orig = net.gradients

        def gradients(*a, **k):
            if net.step >= step:
                if how == "kill":
                    os.kill(os.getpid(), signal.SIGKILL)
                if how == "hang":
                    import time
                    time.sleep(3600)
                raise RuntimeError(f"injected failure at step {net.step}")
            return orig(*a, **k)
        net.gradients = gradients
    _mpi.DataParallel.__init__ = init


def _evalset(fold, held):
    from aerec.models.sparse_autoencoders import _validation_pair
    return _validation_pair((fold, held), fold.shape[1])


if __name__ == "__main__":
    main()

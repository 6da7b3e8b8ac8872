"""Distributed training and scoring (issue 12): MPI data-parallel MultVAE epochs and Dask batch
scoring at MovieLens-20M's item count, plus the communication volume and a ring-allreduce
projection to more ranks.

Training, the scaling figure in one command (3 alternating pairs of 1 process and 2 ranks, each
run under the lock, the load average printed with each, then the medians and their ratio):

    python benchmarks/bench_distributed.py pairs --lock /tmp/aerec-bench.lock
    python benchmarks/bench_distributed.py pairs --lock /tmp/aerec-bench.lock --env AEREC_MPI_SHM=0

or by hand (run under the benchmark lock, triples alternating; one thread per rank):

    for r in 1 2 3; do
      flock /tmp/aerec-bench.lock env PYTHONPATH=python python benchmarks/bench_distributed.py plain
      for s in 1 0; do
        flock /tmp/aerec-bench.lock mpiexec -n 2 env AEREC_MPI_SHARD=$s PYTHONPATH=python \\
            python benchmarks/bench_distributed.py train
      done
    done

``train`` prints (rank 0) the seconds of the second epoch (the first grows the workspaces) of a
40-batch slice (20,000 users x 20,108 items, batch 500, [I-600-200-600-I], 1 thread per rank) and
the per-step counters of :meth:`DataParallel.report` (``AEREC_MPI_SHARD=1``: the sharded optimizer
step, the default; ``0``: the replicated one); ``plain`` the same fit without MPI (and its
optimizer's share of a step, from the network's timings).

Scoring: ``bench_distributed.py dask`` fits a MultVAE for one epoch on the slice, saves it, and
times ``recommend_dask`` of every user (k=100) with 1 and with 2 one-thread worker processes
(cluster start-up excluded; alternating, 3 runs each).

``bench_distributed.py ceiling``: the same one-thread GEMM work in one process, then in two at
once: the throughput two processes get on this machine (the bound on any 2-process speedup);
``ceiling --memory``: the same with 49 MB copies (memory bandwidth alone and shared).

``bench_distributed.py phases``: one process, no MPI: each rank's compute of the 2-rank sharded
step through shared memory (its gradient; the optimizer on its block with both ranks' gradients
summed inside it) phase by phase against the one-process step, on the same batches (the speedup
with free communication and two whole cores).

``bench_distributed.py project --grad S --apply S --dense-bytes B --w0-bytes B`` (the replicated
step) or ``project --grad S --apply S --param-bytes B`` (the sharded step): the ring models below
for 8 / 32 / 128 ranks.
"""
import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from ab_engine import EpochTimer, ml20m_slice  # noqa: E402

import aerec  # noqa: E402


def _model(epochs):
    return aerec.MultVAE(epochs=epochs, batch_size=500, random_state=0)


def train(distributed):
    aerec.set_num_threads(1)
    X = ml20m_slice()
    cb = EpochTimer()
    m = _model(2)
    kw = {"distributed": "mpi"} if distributed else {}
    t0 = time.perf_counter()
    m.fit(X, callbacks=[cb], verbose=0, **kw)
    total = time.perf_counter() - t0
    from aerec.distributed import rank, size
    every = None
    if distributed:  # every rank's per-step figures, onto rank 0
        from mpi4py import MPI
        st = m.distributed_stats_
        mine = {k: round(1e3 * st[k] / st["steps"], 2) for k in ("grad_s", "comm_s", "apply_s")}
        mine["bytes_per_step"] = int(st["bytes_sent"] / st["steps"])
        every = MPI.COMM_WORLD.gather(mine, root=0)
    if rank() == 0:
        rec = {"mode": f"mpi x{size()}" if distributed else "plain", "epoch2_s": round(cb.times[-1], 3),
               "epochs_s": [round(t, 3) for t in cb.times], "fit_s": round(total, 3)}
        if not distributed:
            t = m.net_.timings()
            if t.get("batches"):
                rec.update(step_ms=round(1e3 * sum(cb.times) / t["batches"], 1),
                           optimizer_ms=round(1e3 * t.get("optimizer", 0.0) / t["batches"], 1))
        if distributed:
            st = m.distributed_stats_
            steps = st["steps"]
            rec.update(sharded=st.get("sharded", False), shared_memory=st.get("shared_memory", False), steps=steps, bytes_per_step=int(st["bytes_sent"] / steps),
                       dense_bytes=st["dense_bytes"],
                       w0_rows_steps=st["w0_rows_steps"], grad_ms=round(1e3 * st["grad_s"] / steps, 2),
                       comm_ms=round(1e3 * st["comm_s"] / steps, 2), apply_ms=round(1e3 * st["apply_s"] / steps, 2),
                       shared_params=st.get("shared_params", False),
                       by_rank={{"grad_s": "grad_ms", "comm_s": "comm_ms", "apply_s": "apply_ms"}.get(k, k):
                                [e[k] for e in every] for k in every[0]})
        print(json.dumps(rec), flush=True)


def dask_bench(runs=3):
    from distributed import Client, LocalCluster
    from aerec.distributed import recommend_dask
    X = ml20m_slice()
    aerec.set_num_threads(1)
    m = _model(1).fit(X, verbose=0)
    d = tempfile.mkdtemp(prefix="aerec-dask-bench-")
    path = os.path.join(d, "m.npz")
    m.save(path)
    clients = {}
    for n in (1, 2):
        cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=":0")
        clients[n] = (cluster, Client(cluster))
        # warm-up: each worker loads the model once (what every later call reuses)
        recommend_dask(path, list(range(2000 * n)), k=100, output=os.path.join(d, f"warm{n}"),
                       client=clients[n][1], partition_size=1000)
    times = {1: [], 2: []}
    for r in range(runs):
        for n in (1, 2):
            out = os.path.join(d, f"recs{n}-{r}")
            t = time.perf_counter()
            res = recommend_dask(path, None, k=100, output=out, client=clients[n][1], partition_size=2500)
            times[n].append(time.perf_counter() - t)
    for cluster, client in clients.values():
        client.close()
        cluster.close()
    med = {n: float(np.median(v)) for n, v in times.items()}
    print(json.dumps({"users": res["users"], "rows": res["rows"],
                      "1_worker_s": [round(t, 2) for t in times[1]], "2_workers_s": [round(t, 2) for t in times[2]],
                      "median_1": round(med[1], 2), "median_2": round(med[2], 2),
                      "speedup": round(med[1] / med[2], 2),
                      "users_per_s_2": round(res["users"] / med[2])}), flush=True)


def project(grad_s, apply_s, dense_bytes, w0_bytes, n_items, hidden, steps, bw_gbit=25.0, alpha=10e-6):
    """Ring-allreduce model of one step at N ranks, strong scaling (global batch fixed):

    t(N) = grad / N + apply + 2 (N - 1) / N * dense / bw + 2 (N - 1) alpha     (the Allreduce)
           + (N - 1) / N * min(w0_rows(N), n_items * hidden * 4) / bw + (N - 1) alpha   (Allgatherv)

    ``grad``: the 1-rank gradient time of a full batch; ``apply``: the optimizer step (every rank
    applies the whole update: it does not shrink with N); the input layer's touched rows grow with
    N as the shards' item sets overlap less (``w0_bytes`` measured at 2 ranks, total over ranks;
    taken to grow as N / 2 up to the dense size, then it goes as a dense Allreduce)."""
    bw = bw_gbit * 1e9 / 8
    out = []
    for n in (1, 2, 8, 32, 128):
        w0 = min(w0_bytes * n / 2, n_items * hidden * 4)
        if w0 >= n_items * hidden * 4:
            t_w0 = 2 * (n - 1) / n * w0 / bw + 2 * (n - 1) * alpha
        else:
            t_w0 = (n - 1) / n * w0 / bw + (n - 1) * alpha
        t_ar = 2 * (n - 1) / n * dense_bytes / bw + 2 * (n - 1) * alpha
        t = grad_s / n + apply_s + t_ar + t_w0
        out.append({"ranks": n, "step_ms": round(1e3 * t, 1), "compute_ms": round(1e3 * (grad_s / n + apply_s), 1),
                    "comm_ms": round(1e3 * (t_ar + t_w0), 1), "epoch_s_ml20m": round(t * steps, 1),
                    "speedup": round((grad_s + apply_s) / t, 2)})
    return out


def project_sharded(grad_s, apply_s, param_bytes, steps, bw_gbit=25.0, alpha=10e-6):
    """Ring model of the sharded step (ZeRO 1), strong scaling (global batch fixed):

    t(N) = grad / N + apply / N                               (each rank steps 1/N of the parameters)
           + (N - 1) / N * params / bw + (N - 1) alpha        (Reduce_scatter of the gradients)
           + (N - 1) / N * params / bw + (N - 1) alpha        (Allgatherv of the stepped blocks)

    i.e. the bytes of one ring all-reduce of every parameter (W0 dense), the compute all / N."""
    bw = bw_gbit * 1e9 / 8
    out = []
    for n in (1, 2, 8, 32, 128):
        comm = 2 * (n - 1) / n * param_bytes / bw + 2 * (n - 1) * alpha
        comp = (grad_s + apply_s) / n
        t = comp + comm
        out.append({"ranks": n, "step_ms": round(1e3 * t, 1), "compute_ms": round(1e3 * comp, 1),
                    "comm_ms": round(1e3 * comm, 1), "epoch_s_ml20m": round(t * steps, 1),
                    "speedup": round((grad_s + apply_s) / t, 2)})
    return out


def phases(reps=7):
    """One process, one thread, no MPI: the compute of each rank of the sharded 2-rank step through
    shared memory, phase by phase (gradients of the rank's part of the batch into its flat buffer,
    W0's untouched rows left unwritten and flagged; the optimizer on the rank's block with both
    ranks' gradients summed inside it, ``apply_gradient_sum``), against the one-process step
    (gradients of the 500 rows plus the full optimizer step), on the same batches, alternating.
    max(rank) / one-process is the 2-rank step with free communication and two whole cores: what
    the code allows, apart from the box. The parameters being one shared block, nothing is copied
    between the ranks."""
    from aerec.backends.numpy_ import shuffle_permutation
    aerec.set_num_threads(1)
    X = ml20m_slice()
    net = _model(1).fit(X[:1000], verbose=0).net_  # a network of the slice's shape
    order = shuffle_permutation(net.spec["seed"], 1, X.shape[0])
    n, users = net.n_params, X.shape[0]
    B = [0, n // 2, n]
    G = np.zeros(n, np.float32)
    Gs = [np.zeros(n, np.float32) for _ in range(2)]
    Fs = [np.ones(X.shape[1], np.uint8) for _ in range(2)]
    t = {}

    def lap(key, fn):
        a = time.perf_counter()
        fn()
        t.setdefault(key, []).append(1e3 * (time.perf_counter() - a))
    for k in range(reps):
        rows = np.ascontiguousarray(order[k * 500:(k + 1) * 500], np.int64)
        lap("1p grad", lambda: net.gradients(X, X, training=True, rows=rows, out=G))
        lap("1p optimizer", lambda: net.apply_gradients(G))
        share = []
        for r in range(2):
            lo, hi = users * r // 2, users * (r + 1) // 2
            mine = np.ascontiguousarray(rows[(rows >= lo) & (rows < hi)])
            share.append(mine.size / rows.size)
            lap(f"r{r} grad", lambda: net.gradients(X, X, training=True, rows=mine, out=Gs[r], w0_rows=Fs[r]))
        for r in range(2):
            q = 1 - r
            sc = np.array([share[r], share[q]], np.float32)
            lap(f"r{r} sum+optimizer", lambda: net.apply_gradient_sum([Gs[r], Gs[q]], sc, flat_range=(B[r], B[r + 1]),
                                                                      w0_rows=[Fs[r], Fs[q]]))
    med = {key: round(float(np.median(v)), 1) for key, v in t.items()}
    one = med["1p grad"] + med["1p optimizer"]
    rank = [sum(v for key, v in med.items() if key.startswith(f"r{r} ")) for r in range(2)]
    print(json.dumps({"ms": med, "one_process_step_ms": round(one, 1), "rank_compute_ms": [round(v, 1) for v in rank],
                      "grad_half_over_whole": [round(med[f"r{r} grad"] / med["1p grad"], 3) for r in range(2)],
                      "w0_rows_touched": [round(float(f.mean()), 3) for f in Fs],
                      "speedup_free_comm": round(one / max(rank), 2)}), flush=True)


def _ceiling_work(reps, q=None, memory=False):
    """``reps`` one-thread GEMMs of a scoring batch (1000 users x 600 hidden x 20,108 items); with
    ``memory``, ``reps`` copies of a 49 MB float32 block (the size of a 2-rank step's blocks)
    from one buffer to another."""
    if memory:
        src = np.ones(12_255_654, np.float32)
        dst = np.zeros_like(src)
        np.copyto(dst, src)
        work = lambda: np.copyto(dst, src)  # noqa: E731
    else:
        from aerec.backends import get
        gemm = get("cpp").gemm
        rng = np.random.default_rng(0)
        a = rng.standard_normal((1000, 600), dtype=np.float32)
        b = rng.standard_normal((600, 20108), dtype=np.float32)
        work = lambda: gemm(a, b, num_threads=1)  # noqa: E731
        work()
    t = time.perf_counter()
    for _ in range(reps):
        work()
    el = time.perf_counter() - t
    if q is not None:
        q.put(el)
    return el


def ceiling(reps=20, runs=3, memory=False):
    """What two one-thread processes get on this machine: the same fixed GEMM work (``memory``:
    49 MB copies, 200 of them) in one process alone, then in two processes at once (throughput
    ratio = 2 x alone / together). No distributed design can beat it here; the memory figure
    prices the bytes a step streams (copy GB/s = bytes read + written per second)."""
    import multiprocessing as mp
    ctx = mp.get_context("spawn")
    reps = 200 if memory else reps
    alone, both = [], []
    for _ in range(runs):
        q = ctx.Queue()
        p = ctx.Process(target=_ceiling_work, args=(reps, q, memory))
        p.start()
        alone.append(q.get())
        p.join()
        q = ctx.Queue()
        ps = [ctx.Process(target=_ceiling_work, args=(reps, q, memory)) for _ in range(2)]
        for p in ps:
            p.start()
        both.append(max(q.get(), q.get()))
        for p in ps:
            p.join()
    a, b = float(np.median(alone)), float(np.median(both))
    rec = {"work": "49 MB copies" if memory else "GEMMs", "alone_s": [round(t, 2) for t in alone],
           "two_at_once_s": [round(t, 2) for t in both], "throughput_ratio": round(2 * a / b, 2)}
    if memory:
        gb = 2 * 4 * 12_255_654 * reps / 1e9  # read + written
        rec.update(copy_gb_s_alone=round(gb / a, 1), copy_gb_s_each_of_two=round(gb / b, 1),
                   ms_per_49mb_copy_alone=round(1e3 * a / reps, 2), ms_per_49mb_copy_two=round(1e3 * b / reps, 2))
    print(json.dumps(rec), flush=True)


def pairs(runs=3, lock=None, ranks=2, env_2=()):
    """The scaling figure in one command: ``runs`` pairs of (1 process, ``ranks`` ranks), alternating,
    each a subprocess of this script (``plain`` / ``mpiexec -n ranks ... train``), each under
    ``flock lock`` when given (so other timed runs interleave between them, never during one);
    prints every run with the load average before it, then the medians and their ratio."""
    import subprocess
    here = os.path.abspath(__file__)
    env = dict(os.environ, PYTHONPATH=os.path.join(os.path.dirname(os.path.dirname(here)), "python"))
    pre = ["flock", lock] if lock else []
    cmds = {"plain": pre + [sys.executable, here, "plain"],
            "mpi": pre + ["mpiexec", "-n", str(ranks), "env", *env_2, sys.executable, here, "train"]}
    got = {"plain": [], "mpi": []}
    for r in range(runs):
        for kind in ("plain", "mpi"):
            load = os.getloadavg()[0]
            out = subprocess.run(cmds[kind], env=env, capture_output=True, text=True, check=True).stdout
            rec = json.loads([ln for ln in out.splitlines() if ln.startswith("{")][-1])
            got[kind].append(rec["epoch2_s"])
            print(json.dumps(dict(rec, run=r, load_before=round(load, 2), load_after=round(os.getloadavg()[0], 2))),
                  flush=True)
    med = {k: float(np.median(v)) for k, v in got.items()}
    print(json.dumps({"plain_s": got["plain"], f"{ranks}_ranks_s": got["mpi"], "median_plain": round(med["plain"], 2),
                      f"median_{ranks}_ranks": round(med["mpi"], 2),
                      "speedup": round(med["plain"] / med["mpi"], 2)}), flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["train", "plain", "dask", "project", "ceiling", "phases", "pairs"])
    ap.add_argument("--lock", help="pairs: run each timed run under flock LOCK")
    ap.add_argument("--runs", type=int, default=3, help="pairs: how many (1 process, 2 ranks) pairs")
    ap.add_argument("--env", action="append", default=[], help="pairs: VAR=VALUE for the ranks (repeatable)")
    ap.add_argument("--grad", type=float)
    ap.add_argument("--apply", type=float)
    ap.add_argument("--dense-bytes", type=float)
    ap.add_argument("--w0-bytes", type=float)
    ap.add_argument("--param-bytes", type=float, help="sharded model: bytes of every parameter (float32)")
    ap.add_argument("--memory", action="store_true", help="ceiling: memory copies instead of GEMMs")
    a = ap.parse_args()
    if a.mode == "train":
        train(True)
    elif a.mode == "plain":
        train(False)
    elif a.mode == "dask":
        dask_bench()
    elif a.mode == "ceiling":
        ceiling(memory=a.memory)
    elif a.mode == "phases":
        phases()
    elif a.mode == "pairs":
        pairs(a.runs, a.lock, env_2=tuple(a.env))
    elif a.param_bytes:
        for row in project_sharded(a.grad, a.apply, a.param_bytes, 274):
            print(json.dumps(dict(row, design="sharded")))
    else:
        for row in project(a.grad, a.apply, a.dense_bytes, a.w0_bytes, 20108, 600, 274):
            print(json.dumps(dict(row, design="replicated")))


if __name__ == "__main__":
    main()

"""Data-parallel training over MPI (mpi4py): the engine behind ``fit(..., distributed="mpi")``.

How a step runs (every rank, in lock step)
------------------------------------------
- The epoch's global batch order is the one ``Network.train_epoch`` draws
  (:func:`aerec.backends.numpy_.shuffle_permutation` of the spec seed and the epoch seed), computed
  on every rank; so is each global batch of ``batch_size`` rows.
- Rank ``r`` of ``N`` owns the users ``[n r / N, n (r + 1) / N)`` (a contiguous shard: it keeps
  only their entries of a CSR training matrix). It computes the gradients of its part of the
  batch with ``Network.gradients(rows=...)``, whose random streams (dropout, noise, negatives)
  are keyed by the global row id: the draws of the one-process batch.
- The losses are means over the batch's rows, so rank ``r``'s gradient times ``n_r / n_batch``
  summed over the ranks is the global batch's gradient (the l2 part too: the factors sum to 1).
- The first collective of a step exchanges each rank's row count and status (an exception in a
  rank's gradient computation reaches every rank as :class:`RankFailedError` naming it). The
  input layer's gradient is row-sparse with a CSR input: the touched rows' ids are exchanged
  (``Allgatherv``) and, when smaller than the dense block, the rows too; every other tensor goes
  as one flat float32 buffer through ``Allreduce`` (in place, in buckets of at most 64 MiB).
- The sharded step (ZeRO stage 1, the default without per-user vectors): rank ``r`` owns the
  block ``[B[r], B[r + 1])`` of the flat parameter vector (every tensor raveled, in order; the
  blocks split it evenly, W0 included) and its optimizer state. The gradients are
  reduce-scattered (pairwise point-to-point messages: rank r receives every other rank's part of
  its block and sums them scaled, in a fixed order), rank r applies the optimizer to its block only
  (``Network.apply_gradients(flat_range=)``: exactly the full step's arithmetic there, lazy rows
  and the moments of untouched rows included), and the stepped blocks are all-gathered. The bytes
  are those of one ring all-reduce of every parameter; the optimizer work per rank is 1/N. The
  optimizer state of the other blocks is gathered once, when training ends.
- On one node (every rank in one ``COMM_TYPE_SHARED`` group; ``AEREC_MPI_SHM=0`` turns it off)
  the sharded step goes through MPI shared memory (``Win.Allocate_shared``): each rank's flat
  gradient buffer, and the flat parameters themselves, one copy that every rank's network keeps
  its parameters in (``Network.bind_params``). The owner of a block steps it in place with
  ``Network.apply_gradient_sum``: the ranks' gradient blocks, read where they lie, scaled and
  summed in the message path's order inside the optimizer pass (the same sums); with a CSR input
  each rank also flags the W0 rows its batch touched (``gradients(w0_rows=)``) and leaves the
  others unwritten, and the owner does not read them (their gradient is ``l2 W0``). After one
  barrier every rank sees every stepped block: nothing is copied between the ranks (a message
  costs a copy into and one out of MPI's buffers on both sides), and the ranks' parameters are
  one array. When training ends (or fails) each network copies them back into storage of its
  own.
- The replicated step (``AEREC_MPI_SHARD=0``, and CDAE): every rank applies the identical
  optimizer step (``Network.apply_gradients``) to the summed gradients.
- Either way the parameters stay bitwise identical across ranks (``check_params=True`` compares a
  checksum of them after every epoch). CDAE's per-user vectors are sharded with the users: each rank
  steps the rows of its own users (no other rank's gradient touches them) and the final vectors
  are gathered from their owners when training ends.

Faults: a collective that waits longer than ``timeout`` seconds (env ``AEREC_MPI_TIMEOUT``,
default 300) means a peer is dead or stuck: the rank prints which collective and calls
``MPI.Abort`` (mpiexec then ends every rank). An exception outside the coordinated points (say, in
a callback on rank 0) is printed with the rank's number and also aborts the job: an MPI job never
hangs on a rank that has gone. mpiexec itself ends the job when a rank is killed.
"""
from __future__ import annotations

import os
import sys
import time
import traceback
import zlib

import numpy as np

__all__ = ["RankFailedError", "get_comm", "DataParallel", "reduce_gram", "fit_ease", "timeout_seconds"]

_BUCKET = 16 * 1024 * 1024  # float32 elements per Allreduce call (64 MiB)
_SPIN = 2.0  # seconds a wait polls without sleeping (see _Comm.wait)


class RankFailedError(RuntimeError):
    """Another rank (or this one) failed during distributed training; the message names it."""


def _mpi():
    try:
        from mpi4py import MPI
    except ImportError as exc:
        raise ImportError(f"distributed='mpi' needs mpi4py and an MPI library ({exc}); install them with "
                          "pip install 'aerec[mpi]' (mpi4py and the mpich wheel) and run under mpiexec") from None
    return MPI


def get_comm(distributed):
    """The communicator of a ``distributed=`` argument: ``"mpi"`` (``MPI.COMM_WORLD``) or an mpi4py
    ``Intracomm``."""
    if isinstance(distributed, str):
        if distributed.lower() != "mpi":
            raise ValueError(f"distributed must be 'mpi' (or an mpi4py communicator), got {distributed!r}")
        return _mpi().COMM_WORLD
    MPI = _mpi()
    if not isinstance(distributed, MPI.Intracomm):
        raise TypeError(f"distributed must be 'mpi' or an mpi4py Intracomm, got {type(distributed).__name__}")
    return distributed


def timeout_seconds():
    """Seconds a rank waits in one collective before it declares a peer dead (``AEREC_MPI_TIMEOUT``)."""
    raw = os.environ.get("AEREC_MPI_TIMEOUT", "300")
    try:
        t = float(raw)
    except ValueError:
        raise ValueError(f"AEREC_MPI_TIMEOUT must be a number of seconds, got {raw!r}") from None
    if not t > 0:
        raise ValueError(f"AEREC_MPI_TIMEOUT must be > 0, got {raw!r}")
    return t


_ABORT_GRACE = 0.5  # seconds between the abort message and MPI_Abort (see _Comm.abort)

class _Comm:
    """Non-blocking collectives waited on with a deadline (a dead peer ends the job, never hangs)."""

    def __init__(self, comm):
        self.MPI = _mpi()
        self.comm = comm
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        self.timeout = timeout_seconds()
        self.bytes = 0  # payload bytes this rank sent into collectives (per-step accounting)

    def abort(self, msg):
        sys.stderr.write(f"aerec.distributed: rank {self.rank}/{self.size}: {msg}; aborting the MPI job\n")
        sys.stderr.flush()
        # mpiexec forwards each rank's stderr through a pipe, and MPI_Abort tears the job down at
        # once: on a busy machine the line above was sometimes lost (seen in a full test run).
        # A moment's pause lets the launcher forward it; nothing waits on an aborting rank.
        time.sleep(_ABORT_GRACE)
        self.comm.Abort(1)

    def wait(self, req, what):
        """Wait for ``req``; abort the job past the timeout. A non-blocking collective advances
        only inside MPI calls (each ``Test`` moves a large one by a piece), so the first
        ``_SPIN`` seconds poll back to back, yielding the core between polls (``sleep(0)``): a
        sleeping poll would hold a 100 MB exchange to one piece per sleep. Past them (a peer
        is slow or stuck) the polls back off to 1 ms sleeps, leaving the core to other work."""
        t0 = time.monotonic()
        pause = 0.0
        while not req.Test():
            waited = time.monotonic() - t0
            if waited > self.timeout:
                self.abort(f"{what} waited more than {self.timeout:g} s (AEREC_MPI_TIMEOUT): a peer rank "
                           "is dead or stuck")
            if waited > _SPIN:
                pause = min(max(pause * 2, 2e-5), 1e-3)
            time.sleep(pause)

    def wait_all(self, reqs, what):
        """``wait`` for every request of ``reqs``."""
        for req in reqs:
            self.wait(req, what)

    def allreduce(self, buf, what="Allreduce"):
        """In-place SUM over a 1-D float32 / float64 / int64 array, in buckets."""
        self.bytes += buf.nbytes
        for s in range(0, buf.size, _BUCKET):
            self.wait(self.comm.Iallreduce(self.MPI.IN_PLACE, buf[s:s + _BUCKET], op=self.MPI.SUM), what)

    def allgather(self, arr, what="Allgather"):
        """(size, *arr.shape) array of every rank's ``arr`` (same shape and dtype on every rank)."""
        arr = np.ascontiguousarray(arr)
        out = np.empty((self.size,) + arr.shape, arr.dtype)
        self.bytes += arr.nbytes
        self.wait(self.comm.Iallgather(arr, out), what)
        return out

    def allgatherv(self, arr, counts, what="Allgatherv"):
        """Concatenation of every rank's 1-D ``arr`` (``counts[r]`` elements from rank r)."""
        counts = np.asarray(counts, np.int64)
        out = np.empty(int(counts.sum()), arr.dtype)
        displ = np.concatenate([[0], np.cumsum(counts)[:-1]])
        self.bytes += arr.nbytes
        self.wait(self.comm.Iallgatherv(np.ascontiguousarray(arr), [out, (counts, displ)]), what)
        return out

    def bcast_bytes(self, data, root, what="Bcast"):
        n = np.array([len(data) if self.rank == root else 0], np.int64)
        self.wait(self.comm.Ibcast(n, root=root), what)
        buf = np.frombuffer(bytearray(data), np.uint8) if self.rank == root else np.empty(int(n[0]), np.uint8)
        if n[0]:
            self.wait(self.comm.Ibcast(buf, root=root), what)
        return buf.tobytes()

    def bcast_array(self, arr, root, what="Bcast"):
        """A C-contiguous array from ``root`` (shape and dtype as JSON ahead of the data)."""
        import json
        head = json.dumps([list(arr.shape), arr.dtype.str]).encode() if self.rank == root else b""
        shape, dt = json.loads(self.bcast_bytes(head, root, what).decode())
        out = np.ascontiguousarray(arr) if self.rank == root else np.empty(shape, np.dtype(dt))
        flat = out.reshape(-1).view(np.uint8)
        for s in range(0, flat.size, 4 * _BUCKET):
            self.wait(self.comm.Ibcast(flat[s:s + 4 * _BUCKET], root=root), what)
        return out

    def run_on_root(self, fn, what):
        """``fn()`` on rank 0, its JSON-able result on every rank; an exception there is re-raised
        on rank 0 and reaches the others as RankFailedError."""
        import json
        payload, exc = b"", None
        if self.rank == 0:
            try:
                payload = json.dumps({"ok": fn()}).encode()
            except Exception as e:  # noqa: BLE001 - reported to every rank, re-raised here
                exc = e
                payload = json.dumps({"error": f"{type(e).__name__}: {e}"}).encode()
        res = json.loads(self.bcast_bytes(payload, 0, what).decode())
        if exc is not None:
            raise exc
        if "error" in res:
            raise RankFailedError(f"rank 0 failed in {what}: {res['error']}")
        return res["ok"]

    def raise_failures(self, flags, message, what):
        """Some ranks failed (``flags[r]`` non-zero, known to every rank): gather the failing ranks'
        messages and raise RankFailedError naming them, on every rank."""
        failed = bool(flags[self.rank])
        msg = (message or "").encode()[:4000] if failed else b""
        lens = self.allgather(np.array([len(msg)], np.int64), what)[:, 0]
        text = self.allgatherv(np.frombuffer(msg, np.uint8) if msg else np.zeros(0, np.uint8), lens, what).tobytes()
        parts, o = [], 0
        for r in range(self.size):
            if flags[r]:
                parts.append(f"rank {r}: {text[o:o + lens[r]].decode(errors='replace')}")
            o += int(lens[r])
        bad = [int(r) for r in np.flatnonzero(flags)]
        raise RankFailedError(f"distributed training failed on rank{'s' if len(bad) > 1 else ''} "
                              f"{', '.join(map(str, bad))} ({what}): " + "; ".join(parts))


def guarded(comm, fn):
    """Run ``fn()``; an exception that is not a coordinated RankFailedError (every rank raises
    that together) prints the traceback with the rank's number and aborts the job, so no peer
    waits for this rank forever."""
    try:
        return fn()
    except RankFailedError:
        raise
    except BaseException as exc:  # noqa: BLE001
        if comm.size == 1:
            raise
        sys.stderr.write(f"aerec.distributed: rank {comm.rank}/{comm.size} raised outside a collective "
                         f"point:\n{traceback.format_exc()}")
        comm.abort(f"{type(exc).__name__}: {exc}")
        raise


def scaled_sum(mine, own, R, sq, tmp):
    """``mine = own * mine + sq * R`` (``own`` None: ``mine += sq * R``) in float32, ``tmp.size``
    elements at a time through ``tmp`` (kept in cache: one pass over ``mine`` and ``R``, no
    temporary of their size)."""
    for s in range(0, mine.size, tmp.size):
        m, t = mine[s:s + tmp.size], tmp[:min(tmp.size, mine.size - s)]
        if own is not None:
            m *= own
        np.multiply(R[s:s + tmp.size], sq, out=t)
        m += t


def _shard_rows(n, rank, size):
    return n * rank // size, n * (rank + 1) // size


def _shard_csr(X, lo, hi):
    """X with only rows [lo, hi) kept (the others empty), row ids unchanged: the global row ids key
    the random streams. Holds the shard's entries and an (n + 1) row pointer."""
    import scipy.sparse as sp
    a, b = X.indptr[lo], X.indptr[hi]
    ptr = np.empty(X.shape[0] + 1, np.int64)
    ptr[:lo + 1] = 0
    ptr[lo + 1:hi + 1] = X.indptr[lo + 1:hi + 1] - a
    ptr[hi + 1:] = b - a
    return sp.csr_matrix((X.data[a:b], X.indices[a:b], ptr), shape=X.shape)


class DataParallel:
    """Data-parallel epochs of one network over the ranks of ``comm`` (see the module docstring).

    Parameters
    ----------
    distributed : "mpi" or an mpi4py Intracomm
    net : backend Network (identical initial parameters on every rank: the models seed them)
    x, y : the whole training matrices (scipy CSR or dense; ``y is x`` for Mult-* / CDAE); each
        rank keeps the rows it owns of a CSR.
    mask : dense, optional (masked_mse)
    users : int32 per row, optional (CDAE: ``users[row]`` is the row's U row; U is sharded)
    batch_size : int
    check_params : bool
        compare a checksum of the replicated parameters across ranks after every epoch.
    """

    def __init__(self, distributed, net, x, y, *, mask=None, users=None, batch_size=32, check_params=False,
                 shard=True):
        import scipy.sparse as sp
        self.c = _Comm(get_comm(distributed))
        self.rank, self.size = self.c.rank, self.c.size
        self.net, self.batch_size, self.check_params = net, int(batch_size), bool(check_params)
        n = x.shape[0]
        self.n = n
        self.lo, self.hi = _shard_rows(n, self.rank, self.size)
        self.sparse_x = sp.issparse(x)
        same = y is x
        self.x = _shard_csr(x.tocsr(), self.lo, self.hi) if self.sparse_x else x
        self.y = self.x if same else (_shard_csr(y.tocsr(), self.lo, self.hi) if sp.issparse(y) else y)
        self.mask, self.users = mask, users
        spec = net.spec
        from ..nn.spec import param_shapes
        self.shapes = param_shapes(spec)
        self.n_tensors = len(self.shapes)
        self.has_u = spec["n_users"] > 0
        self.lazy = spec["lazy"]
        self.h0 = self.shapes[0][1]
        # W0 goes as rows when the input is CSR and no l2 makes every row non-zero
        self.w0_rows = self.sparse_x and spec["l2"] == 0
        sizes = [int(np.prod(sh)) for sh in self.shapes]
        self.off = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        # one flat buffer of every tensor, reused every step: the gradients are written into it,
        # its dense part [W0 (unless as rows), b0, W1, ..., b_L] is summed in place, and the
        # optimizer step reads it
        self.G = np.zeros(int(self.off[-1]), np.float32)
        self.n_dense = self.n_tensors - (1 if self.has_u else 0)
        # ZeRO stage 1: rank r owns the block [B[r], B[r + 1]) of the flat parameters (and their
        # optimizer state): the summed gradient comes as that block only (a reduce-scatter), the
        # rank steps it (apply_gradients(flat_range=)), the stepped blocks are all-gathered. Not with per-user vectors (CDAE: U is sharded with the users already).
        self.shard = bool(shard) and self.size > 1 and not self.has_u
        total = int(self.off[-1])
        self.B = np.array([total * r // self.size for r in range(self.size + 1)], np.int64)
        self.blo, self.bhi = int(self.B[self.rank]), int(self.B[self.rank + 1])
        if self.shard:
            self.w0_rows = False  # the input layer goes dense in the Reduce_scatter
        if self.size > 1:
            pids = self.c.allgather(np.array([os.getpid()], np.int64), "process ids")[:, 0]
            if self.rank == 0:  # the launcher reports a killed rank by pid: this maps it to a rank
                sys.stderr.write(f"aerec.distributed: training on {self.size} ranks (pid of each rank: "
                                 + ", ".join(f"{r}={p}" for r, p in enumerate(pids))
                                 + ")\n")
        # identical initial parameters: checked once (a model seeded differently per rank would
        # train n different models silently); before the shared-memory parameters, which are one
        # copy for every rank
        self._check_replicated("the initial parameters")
        # every rank on one node: the sharded step's exchanges go through MPI shared memory
        self.win_g = self.win_p = self.win_f = None
        self.Fs = None
        if self.shard and os.environ.get("AEREC_MPI_SHM", "1") != "0":
            self._share_buffers(total)
        if self.shard:
            self.T = np.empty(1 << 16, np.float32)  # a piece of a scaled received block (in cache)
            if self.win_g is None:  # the message path's buffers
                self.P = np.empty(total, np.float32)  # the gathered parameters
                self.R = np.empty(self.bhi - self.blo, np.float32)  # this rank's received gradient block
                self.S = np.empty(self.bhi - self.blo, np.float32)  # this rank's stepped block, sent
        self.stats = {"steps": 0, "bytes_sent": 0, "w0_rows_steps": 0, "sharded": self.shard,
                      "shared_memory": self.win_g is not None, "shared_params": self.win_p is not None,
                      "dense_bytes": int(4 * (self.off[self.n_dense] - (self.off[1] if self.w0_rows else 0))),
                      "grad_s": 0.0, "comm_s": 0.0, "apply_s": 0.0}

    # -- one epoch --------------------------------------------------------------------------------
    def train_epoch(self, seed):
        """One data-parallel epoch with the epoch seed ``seed`` (as ``Network.train_epoch``);
        returns the row-weighted mean of the global batches' losses (the same on every rank)."""
        from ..backends.numpy_ import shuffle_permutation
        order = shuffle_permutation(self.net.spec["seed"], int(seed), self.n)
        total = 0.0
        for s in range(0, self.n, self.batch_size):
            rows = order[s:s + self.batch_size]
            total += self._step(rows) * rows.size
        if self.check_params:
            self._check_replicated(f"the parameters after step {self.net.step}")
        return total / self.n

    def _step(self, rows):
        c, net, G, off = self.c, self.net, self.G, self.off
        t0 = time.perf_counter()
        mine = rows[(rows >= self.lo) & (rows < self.hi)]
        loss, err, have = 0.0, None, False
        try:
            if mine.size:
                # with shared memory and a CSR x, W0's untouched rows are left unwritten (their
                # gradient is l2 W0) and flagged so for the owner of their block
                loss = net.gradients(self.x, self.y, mask=self.mask, training=True, users=self.users,
                                     rows=np.ascontiguousarray(mine, np.int64), out=G,
                                     w0_rows=None if self.Fs is None else self.Fs[self.rank])[0]
                have = True
        except Exception as exc:  # noqa: BLE001 - every rank learns of it below
            err = f"{type(exc).__name__}: {exc}"
            if c.size == 1:
                raise
        if not have:
            G[:] = 0
            if self.Fs is not None:
                self.Fs[self.rank][:] = 1  # every row written (zero)
        ids = None
        if self.lazy or (self.sparse_x and not self.shard):  # the input features present in this rank's rows
            if not mine.size:
                ids = np.zeros(0, np.int32)
            elif self.sparse_x:
                ids = np.unique(self.x[mine].indices).astype(np.int32)
            else:
                ids = np.flatnonzero((self.x[mine] != 0).any(axis=0)).astype(np.int32)
        t1 = time.perf_counter()
        sent0 = c.bytes
        # the first collective of the step: status, row count, loss part, touched-row count
        head = c.allgather(np.array([err is not None, mine.size, loss * mine.size, 0 if ids is None else ids.size],
                                    np.float64), f"training step {net.step}")
        if head[:, 0].any():
            c.raise_failures(head[:, 0], err, f"training step {net.step}")
        n_batch = int(head[:, 1].sum())
        scale = np.float32(mine.size / n_batch)
        hi = off[self.n_dense]
        rows0 = None
        lo = 0
        if ids is not None:
            counts = head[:, 3].astype(np.int64)
            all_ids = c.allgatherv(ids, counts, "input-layer row ids")
            if self.lazy:
                rows0 = np.unique(all_ids).astype(np.int32)
            if self.w0_rows and counts.sum() < self.shapes[0][0]:
                # touched rows are fewer than the dense block: they go as rows (Allgatherv)
                self.stats["w0_rows_steps"] += 1
                h = self.h0
                W0 = G[:off[1]].reshape(self.shapes[0])
                local = W0[ids] * scale
                vals = c.allgatherv(local.reshape(-1), counts * h, "input-layer rows")
                W0[ids] = 0  # the rest of this rank's dW0 is zero (no l2)
                o = 0
                for r in range(self.size):  # the same order on every rank: identical sums
                    k = int(counts[r])
                    W0[all_ids[o:o + k]] += vals[o * h:(o + k) * h].reshape(k, h)
                    o += k
                lo = int(off[1])
        if self.shard and self.win_g is not None:
            # one node: the peers' gradients and the parameters are shared memory. The owner of a
            # block steps it with the scaled sum of every rank's gradient block read in place,
            # summed inside the optimizer pass (apply_gradient_sum: no sum buffer, W0's rows that a
            # rank's batch does not touch are not read), writing the parameters every rank's
            # network reads; one barrier and every rank has the stepped parameters.
            t2 = time.perf_counter()
            self._step_shared(head[:, 1] / n_batch, rows0)
            t3 = time.perf_counter()
            self._barrier("parameter step (shared memory)")
            t4 = time.perf_counter()
            self._count_step(c.bytes - sent0, (t0, t1, t2, t3, t4))
            return float(head[:, 2].sum() / n_batch)
        if self.shard:
            # the gradients go unscaled: the owner of a block scales each rank's part as it sums
            # them (the same products and sums as scaling before sending; one pass less over G)
            self._reduce_scatter(G, head[:, 1] / n_batch)
            t2 = time.perf_counter()
            net.apply_gradients(G, rows0=rows0, flat_range=(self.blo, self.bhi))
            t3 = time.perf_counter()
            self._gather_params()
            t4 = time.perf_counter()
            self._count_step(c.bytes - sent0, (t0, t1, t2, t3, t4))
            return float(head[:, 2].sum() / n_batch)
        dense = G[lo:hi]
        dense *= scale
        c.allreduce(dense, "gradient Allreduce")
        t2 = time.perf_counter()
        urows = None
        if self.has_u:  # this rank's users only: nobody else's gradient reaches their rows
            dU = G[hi:].reshape(self.shapes[-1])
            l2 = np.float32(net.spec["l2"])
            if have and l2:
                # the data part is a mean over this rank's rows (scaled to the batch's), the l2 part
                # is this rank's alone (no other rank adds it for these rows)
                U = net.get_params()[-1]
                dU -= l2 * U
                dU *= scale
                dU += l2 * U
            elif have:
                dU *= scale
            if self.lazy:
                urows = np.unique(self.users[mine]).astype(np.int32) if mine.size else np.zeros(0, np.int32)
        net.apply_gradients(G, rows0=rows0, user_rows=urows)
        t3 = time.perf_counter()
        self._count_step(c.bytes - sent0, (t0, t1, t2, t3, t3))
        return float(head[:, 2].sum() / n_batch)

    def _count_step(self, sent, t):
        """Add one step to ``stats``: ``t`` = (start, gradients done, exchange done, parameters
        stepped, end): gradient t1-t0, optimizer t3-t2, communication (t2-t1) + (t4-t3)."""
        t0, t1, t2, t3, t4 = t
        self.stats["steps"] += 1
        self.stats["bytes_sent"] += sent
        self.stats["grad_s"] += t1 - t0
        self.stats["apply_s"] += t3 - t2
        self.stats["comm_s"] += (t2 - t1) + (t4 - t3)

    def _exchange(self, send_of, recv_of, what):
        """Pairwise exchange over every other rank (round k: send to rank + k, receive from rank - k,
        in messages of at most _BUCKET elements): ``send_of(q)`` is what goes to rank q,
        ``recv_of(q)`` where rank q's part lands; yields q once its part is in.
        Point-to-point messages, not MPI's Reduce_scatter / Allgather: on one node they move the
        same bytes 2.5-6x faster here (mpich 5 shared memory)."""
        c, r, n = self.c, self.rank, self.size
        for k in range(1, n):
            to, fr = (r + k) % n, (r - k) % n
            snd, rcv = send_of(to), recv_of(fr)
            c.bytes += snd.nbytes
            for s in range(0, max(snd.size, rcv.size), _BUCKET):
                reqs = []
                if s < rcv.size:
                    reqs.append(c.comm.Irecv(rcv[s:s + _BUCKET], source=fr, tag=11))
                if s < snd.size:
                    reqs.append(c.comm.Isend(snd[s:s + _BUCKET], dest=to, tag=11))
                c.wait_all(reqs, what)
            yield fr

    def _reduce_scatter(self, G, scales):
        """The sum over the ranks q of ``scales[q]`` times rank q's ``G`` block [blo, bhi) into
        G[blo:bhi] (the rest of G is left as it was: only this block is read by the sharded step).
        Every block is summed by its owner alone, in one fixed order, so the result is one value
        everywhere after the parameter exchange. The scaling is fused into the sum, a cache-sized
        piece at a time (no pass of its own over the whole buffer)."""
        B, mine, R = self.B, G[self.blo:self.bhi], self.R
        own = np.float32(scales[self.rank])
        tmp = self.T
        first = True
        for q in self._exchange(lambda q: G[B[q]:B[q + 1]], lambda q: R, "gradient reduce-scatter"):
            scaled_sum(mine, own if first else None, R, np.float32(scales[q]), tmp)
            first = False
        if first:  # one rank: nothing received
            mine *= own

    def _gather_params(self):
        """Every rank's stepped block of the flat parameters, written into this rank's network."""
        B, P = self.B, self.P
        mine = self.net.get_params_flat(self.blo, self.bhi, out=self.S)  # reused: no page faults per step
        for q in self._exchange(lambda q: mine, lambda q: P[B[q]:B[q + 1]], "parameter all-gather"):
            if B[q + 1] > B[q]:
                self.net.set_params_flat(int(B[q]), P[B[q]:B[q + 1]])

    # -- one node: the sharded step through MPI shared memory -----------------------------------
    def _share_buffers(self, total):
        """When every rank runs on one node, three MPI shared-memory windows
        (``Win.Allocate_shared``): every rank's flat gradient buffer ``G``; the flat parameters
        themselves, one copy that every rank's network keeps its parameters in
        (``Network.bind_params``); and, with a CSR input, every rank's byte per W0 row saying which
        rows of its W0 gradient it wrote (``gradients(w0_rows=)``: the rows its batch touches; the
        others are ``l2 W0``, neither written nor read). The owner of a block steps it
        in place with the peers' gradients read where they lie, and after one barrier every rank
        sees every stepped block: no copies between the ranks at all (a message costs a copy into
        and one out of MPI's buffers on each side; a shared stepped block still cost a copy out of
        and one into every network). ``AEREC_MPI_SHM=0`` keeps the messages."""
        MPI, comm = self.c.MPI, self.c.comm
        node = comm.Split_type(MPI.COMM_TYPE_SHARED, key=self.rank)
        one = node.Get_size() == self.size and node.Get_rank() == self.rank
        if not self.c.allgather(np.array([one], np.int64), "shared-memory setup")[:, 0].all():
            node.Free()
            return
        if not all(hasattr(self.net, f) for f in ("bind_params", "apply_gradient_sum")):
            node.Free()
            return

        def window(n_of, dtype):
            item = np.dtype(dtype).itemsize
            win = MPI.Win.Allocate_shared(item * max(int(n_of(self.rank)), 1), item, comm=node)
            win.Lock_all(MPI.MODE_NOCHECK)
            views = []
            for q in range(self.size):
                buf, _ = win.Shared_query(q)
                views.append(np.frombuffer(buf, dtype, count=int(n_of(q))))
            return win, views
        self.node = node
        self.win_g, self.Gs = window(lambda q: total, np.float32)
        self.G = self.Gs[self.rank]
        self.G[:] = 0
        if self.sparse_x:
            self.win_f, self.Fs = window(lambda q: self.shapes[0][0], np.uint8)
            self.Fs[self.rank][:] = 1
        # the parameters: one block (rank 0's segment), rank 0's values copied in, then every
        # network keeps its parameters there
        self.win_p, views = window(lambda q: total if q == 0 else 0, np.float32)
        self.Pw = views[0]
        if self.rank == 0:
            self.net.bind_params(self.Pw, copy=True)
        self.win_p.Sync()
        self._barrier("shared parameters")
        self.win_p.Sync()
        if self.rank != 0:
            self.net.bind_params(self.Pw, copy=False)

    def _barrier(self, what):
        self.c.wait(self.c.comm.Ibarrier(), what)

    def _step_shared(self, scales, rows0):
        """The owner's step of its block through shared memory: the parts in the message path's
        order (this rank's, then round k's rank - k), each scaled by its rank's row share, summed
        inside the optimizer pass (``apply_gradient_sum``; the same sums as ``scaled_sum``) and
        stepped in place in the shared parameters. The step's first collective (every rank's
        gradient and flags are written by then) orders the reads after the writes."""
        self.win_g.Sync()
        if self.win_f is not None:
            self.win_f.Sync()
        r, n, B = self.rank, self.size, self.B
        order = [(r - k) % n for k in range(n)]
        parts = [self.Gs[q] for q in order]
        sc = np.array([scales[q] for q in order], np.float32)
        w0 = None if self.Fs is None else [self.Fs[q] for q in order]
        self.net.apply_gradient_sum(parts, sc, rows0=rows0, flat_range=(self.blo, self.bhi), w0_rows=w0)
        self.win_p.Sync()
        # what a network would carry: the peers' gradient blocks this rank owns are read (W0's
        # touched rows only, with the flags), and its stepped block is read by every peer
        c0, w0_end = self.shapes[0][1], int(self.off[1])
        mine = self.Fs[r] if self.Fs is not None else None
        for k in range(1, n):
            q = (r + k) % n  # the owner of block q reads this rank's part of it
            lo, hi = int(B[q]), int(B[q + 1])
            if mine is not None and lo < w0_end:
                r0, r1 = lo // c0, min(hi, w0_end) // c0
                w0b = 4 * c0 * int(np.count_nonzero(mine[r0:r1])) + mine[r0:r1].nbytes
                self.c.bytes += w0b + 4 * (hi - min(hi, r1 * c0))
            else:
                self.c.bytes += 4 * (hi - lo)
        self.c.bytes += 4 * (self.bhi - self.blo) * (n - 1)

    def _release(self):
        """This rank's network back on its own parameter storage (a copy of the shared block):
        after training, or when it fails (the windows then stay until MPI ends)."""
        if self.win_p is not None and getattr(self.net, "params_bound", False):
            self.net.unbind_params()

    def _free_shared(self):
        if self.win_g is None:
            return
        self._release()
        self._barrier("shared-memory release")  # every rank has its copy before the block goes
        for win in (self.win_g, self.win_p, self.win_f):
            if win is not None:
                win.Unlock_all()
                win.Free()
        self.node.Free()
        self.win_g = self.win_p = self.win_f = None
        self.Gs = self.Fs = self.Pw = None
        self.G = np.zeros(int(self.off[-1]), np.float32)

    def _gather_optimizer_state(self):
        """The sharded step leaves each rank with the optimizer state of its block only: gather the
        others' blocks (once, when training ends) so every rank holds the state of one process."""
        from ..nn.spec import tensor_names
        st = self.net.get_optimizer_state()
        names = tensor_names(self.net.spec)
        slots = sorted({k[:-len(n) - 1] for k in st for n in names if k.endswith("_" + n) and k != "step"})
        for slot in slots:
            flat = np.concatenate([np.asarray(st[f"{slot}_{n}"], np.float32).ravel() for n in names])
            counts = self.B[1:] - self.B[:-1]
            full = self.c.allgatherv(np.ascontiguousarray(flat[self.blo:self.bhi]), counts, "optimizer state")
            for n, a, b in zip(names, self.off[:-1], self.off[1:]):
                st[f"{slot}_{n}"] = full[a:b].reshape(np.shape(st[f"{slot}_{n}"]))
        self.net.set_optimizer_state(st)

    # -- consistency, the end of training -------------------------------------------------------
    def _replicated(self):
        p = self.net.get_params()
        return p[:-1] if self.has_u else p

    def _check_replicated(self, what):
        crc = 0
        for a in self._replicated():
            crc = zlib.crc32(np.ascontiguousarray(a).view(np.uint8), crc)
        sums = self.c.allgather(np.array([crc], np.int64), "parameter checksum")[:, 0]
        bad = [r for r in range(self.size) if sums[r] != sums[0]]
        if bad:
            raise RankFailedError(f"{what} differ across ranks: rank(s) {bad} do not match rank 0 "
                                  "(bitwise); every rank must start from the same parameters and step alike")

    def finish(self):
        """Gather the per-user vectors (CDAE) from the ranks that own them, onto every rank; with
        the sharded step, every block's optimizer state from its owner."""
        if self.shard:
            self._gather_optimizer_state()
            self._free_shared()
        if not self.has_u:
            return
        p = self.net.get_params()
        U = p[-1]
        ids = np.unique(self.users[self.lo:self.hi]).astype(np.int32)
        counts = self.c.allgather(np.array([ids.size], np.int64), "user rows")[:, 0]
        all_ids = self.c.allgatherv(ids, counts, "user rows")
        vals = self.c.allgatherv(np.ascontiguousarray(U[ids]).reshape(-1), counts * U.shape[1], "user vectors")
        U = U.copy()
        U[all_ids] = vals.reshape(-1, U.shape[1])
        p[-1] = U
        self.net.set_params(p)
        # and their optimizer state (moments / velocity), from the same owners
        from ..nn.spec import tensor_names
        name = tensor_names(self.net.spec)[-1]
        st = self.net.get_optimizer_state()
        keys = [k for k in st if k != "step" and k.endswith("_" + name)]
        for k in keys:
            S = np.array(st[k], np.float32)
            part = np.ascontiguousarray(S[ids]).reshape(-1)
            S[all_ids] = self.c.allgatherv(part, counts * S.shape[1], "user optimizer state").reshape(-1, S.shape[1])
            st[k] = S
        if keys:
            self.net.set_optimizer_state(st)

    # -- helpers for the models' fit -----------------------------------------------------------
    def local_verbose(self, verbose):
        return verbose if self.rank == 0 else 0

    def local_callbacks(self, callbacks):
        return callbacks if self.rank == 0 else None

    def validate(self, fn):
        """A ``validate`` closure run on rank 0, its logs on every rank (the best-epoch and early
        stopping decisions are then the same everywhere)."""
        if fn is None:
            return None
        return lambda: self.c.run_on_root(fn, "validation")

    def sync_stop(self, stop):
        """Rank 0's ``stop_training`` (set by its callbacks), on every rank."""
        return bool(self.c.run_on_root(lambda: bool(stop), "stop_training"))

    def guard(self, fn):
        try:
            return guarded(self.c, fn)
        except RankFailedError:
            self._release()  # the model keeps working parameters of its own
            raise

    def report(self):
        """This rank's counters: steps, payload bytes this rank put into collectives
        (``bytes_sent``; ``dense_bytes`` the flat Allreduce buffer), the steps whose input-layer
        gradient went as rows, and seconds in the gradient computation (``grad_s``), in packing
        and collectives including waiting for peers (``comm_s``) and in the optimizer step
        (``apply_s``, replicated on every rank)."""
        return dict(self.stats, rank=self.rank, size=self.size)


def reduce_gram(c, backend, X, dtype):
    """EASE's Gram matrix over the ranks of ``c`` (a _Comm): rank r computes ``X_r^T X_r`` of its
    users (the backend's ``gram_upper``), a reduction sums them onto rank 0. Returns the upper
    triangle (j >= i valid) on rank 0, None elsewhere."""
    lo, hi = _shard_rows(X.shape[0], c.rank, c.size)
    G = backend.gram_upper(X[lo:hi], dtype)
    # only the upper triangle is defined: zero the rest so that the sum stays finite
    for i in range(1, G.shape[0]):
        G[i, :i] = 0
    flat = G.reshape(-1)
    c.bytes += flat.nbytes
    for s in range(0, flat.size, _BUCKET):
        part = flat[s:s + _BUCKET]
        if c.rank == 0:
            c.wait(c.comm.Ireduce(c.MPI.IN_PLACE, part, op=c.MPI.SUM, root=0), "Gram reduction")
        else:
            c.wait(c.comm.Ireduce(part, None, op=c.MPI.SUM, root=0), "Gram reduction")
    return G if c.rank == 0 else None


def fit_ease(model, train, validation, distributed, kw):
    """``EASE.fit(train, validation, distributed=..., **kw)``: the Gram matrix summed over the
    ranks' shards of the users, the ordinary fit on rank 0 (the primal form: factorisation, the
    l2 grid with a validation set), then B and the fitted attributes broadcast to every rank."""
    c = _Comm(get_comm(distributed))
    X = model._train_matrix(train)

    def reduce():
        return reduce_gram(c, model._backend(), X, model._dtype())
    G = guarded(c, reduce)
    err = None
    if c.rank == 0:
        model._reduced_gram = G
        try:
            model.fit(train, validation, **kw)
        except Exception as exc:  # noqa: BLE001 - reported to every rank below
            err = exc
        finally:
            model._reduced_gram = None
            G = None

    def meta():
        if err is not None:
            raise err
        return {"l2_": model.l2_, "history_": model.history_, "best_epoch_": model.best_epoch_,
                "l2_path_": {repr(k): v for k, v in getattr(model, "l2_path_", {}).items()}}
    info = c.run_on_root(meta, "EASE solve")
    B = c.bcast_array(model.B_ if c.rank == 0 else None, 0, "broadcast of B")
    if c.rank != 0:
        model.train_, model.B_ = X, B
        model.l2_, model.history_, model.best_epoch_ = float(info["l2_"]), info["history_"], info["best_epoch_"]
        if info["l2_path_"]:
            model.l2_path_ = {float(k): v for k, v in info["l2_path_"].items()}
    return model

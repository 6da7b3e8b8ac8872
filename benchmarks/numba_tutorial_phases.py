"""Where one training step of the Keras tutorial's network goes on the numba backend's serial path
(10 -> 64 relu -> 10 sigmoid, MSE, Adam, batch 32; a dense x without zeros, no dropout):

    NUMBA_CACHE_DIR=/tmp/nbcache flock /tmp/aerec-bench.lock env PYTHONPATH=python \\
        python benchmarks/numba_tutorial_phases.py [--rounds 20]

``epoch`` below replays ``_numba_kernels.run``'s mode-3 loop for this network only (the same serial
kernels, in the same order, with the tutorial's paths taken: layer 0 as one sgemm on the batch's
own values, no dropout copies) and reads the CPU's cycle counter (``llvm.readcyclecounter``, the
TSC) between the kernels. Prints cycles per step of each phase (the epoch with the fewest cycles of
--rounds, so other processes' interruptions drop out) and, as a check that the replay is the real
thing, the wall time of the replayed epoch against ``run`` itself. Not a test: if ``run`` changes,
this replay must follow it by hand.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

sys.path.insert(0, os.path.dirname(__file__))
import aerec  # noqa: E402
from aerec.backends import _numba_kernels as K, _numba_serial as S, numba_ as nb  # noqa: E402
from bench_tutorial import data  # noqa: E402


@intrinsic
def cycles(typingctx):
    def codegen(context, builder, signature, args):
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.IntType(64), []),
                                            "llvm.readcyclecounter")
        return builder.call(fn, [])
    return types.uint64(), codegen


PHASES = ["batch rows, bptr", "input_rows", "sgemm layer 0 (32x10x64)", "layer 0 bias + relu",
          "sgemm layer 1 (32x64x10)", "layer 1 bias + sigmoid", "loss_rows (mse + dz)", "bias grad 1",
          "sgemm G1 = x1^T dz (64x32x10)", "sgemm da = dz W1^T (32x10x64)", "act_back (relu)", "bias grad 0",
          "sgemm G0 = x0^T dz (10x32x64)", "step_ranges + Adam (1,354 params)"]


@njit(error_model="numpy")
def epoch(P, G, M, V, off, sz, ow, acts, drop, ci, cf_opt, step, xp, xi, xv, order, bs, T):
    n_in, n_out = sz[0], sz[2]
    inp, out, d1, d2, Y, SEL = S.workspace(sz, ow, bs, 3)
    lrow = np.empty(bs, np.float64)
    bptr = np.empty(bs + 1, np.int64)
    dense0 = np.empty(bs * n_in, np.float32)
    touched, ulist, users = np.empty(n_in, np.int64), np.empty(0, np.int64), np.zeros(0, np.int32)
    ranges = np.empty((n_in + 5 + off[-1] // K._CHUNK, 2), np.int64)
    mask, keep = np.zeros((0, 0), np.float32), np.zeros(0, np.uint8)
    seed = np.uint64(ci[K.CI_SEED])
    for s in range(0, order.size, bs):
        t = cycles()
        rows = order[s:s + bs]
        nb = rows.size
        bptr[0] = 0
        for r in range(nb):
            bptr[r + 1] = bptr[r] + xp[rows[r] + 1] - xp[rows[r]]
        bval = np.empty(bptr[nb], np.float32)
        t1 = cycles(); T[0] += t1 - t; t = t1
        S.input_rows(xp, xi, xv, rows, bptr, bval, n_in, False, False, drop[0], np.float32(1),
                     S.stream_key(seed, K.DROPOUT, step, 0))
        t1 = cycles(); T[1] += t1 - t; t = t1
        z0 = K.layer_view(out, ow, 0, nb, bs, 0)
        X0 = K.dense0_view(dense0, bval, nb, n_in, bptr[nb])
        S.pdot(X0, K.tensor(P, off, 0, ow[0]), z0, 1)
        t1 = cycles(); T[2] += t1 - t; t = t1
        S.layer0_epilogue(z0, P[off[1]:off[2]], z0, users, rows, False, acts[0])
        t1 = cycles(); T[3] += t1 - t; t = t1
        z1 = K.layer_view(out, ow, 1, nb, bs, 0)
        S.pdot(z0, K.tensor(P, off, 2, ow[1]), z1, 1)
        t1 = cycles(); T[4] += t1 - t; t = t1
        S.bias_act(z1, P[off[3]:off[4]], acts[1])
        t1 = cycles(); T[5] += t1 - t; t = t1
        dz = d1[:nb * n_out].reshape(nb, n_out)
        S.loss_rows(z1, Y, SEL, ci, xp, xi, xv, mask, False, rows, step, True, dz, nb * n_out, lrow)
        t1 = cycles(); T[6] += t1 - t; t = t1
        for i, ph in ((1, 7), (0, 11)):
            gb = G[off[2 * i + 1]:off[2 * i + 2]]
            gb[:] = 0
            for r in range(nb):
                for j in range(gb.size):
                    gb[j] += dz[r, j]
            t1 = cycles(); T[ph] += t1 - t; t = t1
            if i == 1:
                S.pdot(z0.T, dz, K.tensor(G, off, 2, ow[1]), 1)
                t1 = cycles(); T[8] += t1 - t; t = t1
                da = d2[:nb * sz[1]].reshape(nb, sz[1])
                S.pdot(dz, K.tensor(P, off, 2, ow[1]).T, da, 1)
                t1 = cycles(); T[9] += t1 - t; t = t1
                dnew = d1[:nb * ow[0]].reshape(nb, ow[0])
                S.act_back(dnew, da, z0, acts[0], rows, S.stream_key(seed, K.DROPOUT, step, 1), drop[1],
                           np.float32(1), False)
                dz = dnew
                t1 = cycles(); T[10] += t1 - t; t = t1
        S.pdot(X0.T, dz, K.tensor(G, off, 0, ow[0]), 1)
        t1 = cycles(); T[12] += t1 - t; t = t1
        nr = S.step_ranges(off, ow[0], ci, touched, 0, ulist, 0, ranges)
        S.optimize(P, G, M, V, ranges, nr, ci[K.CI_OPT], S.opt_constants(cf_opt, step + 1), False, keep)
        t1 = cycles(); T[13] += t1 - t
        step += 1
    return step


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=20)
    args = ap.parse_args()
    x, _ = data()
    ae = aerec.Autoencoder(hidden=(64,), random_state=0, backend="numba").fit(x, epochs=1, batch_size=32)
    net = ae.net_
    xa = nb._csr(x)
    order = K.shuffle_order(np.uint64(net._seed), np.uint64(5), x.shape[0])
    T = np.zeros(len(PHASES), np.uint64)
    state = lambda: (net._P.copy(), net._G, net._M.copy(), net._V.copy())  # noqa: E731
    consts = (net._off, net._sz, net._ow, net._codes, net._p32, net._ci)
    replay = lambda: epoch(*state(), *consts, net._cf_opt, 1, *xa, order, 32, T)  # noqa: E731
    real_args = lambda: (3, *state(), *consts, net._cf, net._cf_opt, 1, True, *xa, *xa,  # noqa: E731
                         np.zeros((0, 0), np.float32), False, np.zeros(0, np.int32), order, 32, 0,
                         np.empty((0, 10), np.float32), 1, np.zeros(0, np.uint8))
    replay()
    S.run(*real_args())
    best, walls = None, {"replay": [], "run": []}
    for _ in range(args.rounds):
        T[:] = 0
        a = real_args()
        t = time.perf_counter()
        S.run(*a)
        walls["run"].append(time.perf_counter() - t)
        t = time.perf_counter()
        replay()
        walls["replay"].append(time.perf_counter() - t)
        if best is None or T.sum() < best.sum():
            best = T.copy()
    steps = -(-x.shape[0] // 32)
    print(f"serial epoch of {steps} steps, wall min: run {min(walls['run']) * 1e6:.0f} us, "
          f"replay {min(walls['replay']) * 1e6:.0f} us; cycles (TSC) per step, fewest of {args.rounds} epochs:")
    for name, c in zip(PHASES, best):
        print(f"  {name:<36} {c / steps:7.0f}  {100 * c / best.sum():5.1f}%")
    print(f"  {'total':<36} {best.sum() / steps:7.0f}")


if __name__ == "__main__":
    main()

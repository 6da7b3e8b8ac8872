"""Which sparse structure keeps EASE's accuracy at 10% of its entries? (issue 9; accuracy only, a
prototype in NumPy: the structures are applied to the exact B and scored through aerec.evaluate.)

    AEREC_DATA=../shared/data PYTHONPATH=python python benchmarks/ease_structures.py [--seeds 5] [--budget 0.15]

MovieLens-100K, ratings >= 4, strong generalisation (150 validation + 150 test users, 80% fold-in),
seeds 0..4; exact EASE with ``l2="auto"`` (EASE_L2_GRID, best validation NDCG@100); NDCG@100 on the
test users, paired per seed. Every structure gets the same byte budget (``--budget`` x the dense
fp32 B; a sparse entry = 4-byte value + 2-byte index, a dense float = 4 bytes):

* ``sparse``: the largest |B_ij| over the whole matrix (budget / 1.5 of the entries: 10% at 0.15x);
* ``sparse + rank r``: B = S + U V^T, the rank-r truncated SVD of B plus the largest entries of
  the residual in what the budget leaves (2 r n floats go to U, V; the residual keeps
  (budget - 2 r / n) / 1.5 of the entries: 0.085 / 0.069 / 0.038 at r = 16 / 32 / 64, n ~ 1,650). Why it can pay: with
  G = X^T X = Q diag(s) Q^T, P = (G + l2 I)^-1 = Q diag(1 / (s + l2)) Q^T is (1/l2) I minus a
  low-rank term from G's top eigenvectors, plus a mid-spectrum remainder; the low-rank part is
  dense and every pruned sparse B drops it entry by entry;
* ``factored``: SANSA's structure with the exact factor: P = W^T W with W = L^-1 (L the Cholesky
  factor of the Gram matrix + l2 I, items ordered by ascending popularity), the largest |W_ij| kept
  (density d of W), scores_j = -(x W~^T W~)_j / diag(W~^T W~)_j. Scoring costs nnz(W~) per user
  (two sparse products), not len(history) x nnz per row, so it is no faster than dense B at
  20k items; listed for accuracy.
"""
from __future__ import annotations

import argparse
import copy
import os
import pathlib

import numpy as np
import scipy.linalg
import scipy.sparse as sp

import aerec

HERE = pathlib.Path(__file__).resolve().parent
DATA = pathlib.Path(os.environ.get("AEREC_DATA", HERE.parents[1] / "shared" / "data"))


def ndcg(model, evalset):
    return float(aerec.evaluate(model, evalset, ks=(100,), metrics=("ndcg",))["ndcg@100"])


def top_abs(M, k):
    thr = np.partition(np.abs(M).ravel(), -k)[-k]
    return np.where(np.abs(M) >= thr, M, 0.0)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--budget", type=float, default=0.15)
    ap.add_argument("--ranks", default="16,32,64")
    ap.add_argument("--factored", default="0.1,0.05", help="densities of W for the factored structure")
    a = ap.parse_args()
    data = aerec.datasets.movielens("ml-100k", path=DATA).interactions.binarize(4.0)
    drops: dict[str, list[float]] = {}
    for seed in range(a.seeds):
        split = aerec.data.strong_generalization_split(data, n_validation_users=150, n_test_users=150,
                                                       random_state=seed)
        ex = aerec.EASE(l2="auto").fit(split.train, validation=split.validation)
        base = ndcg(ex, split.test)
        B = ex.B_.astype(np.float64)
        n = B.shape[0]

        def score(name, Bv):
            m = copy.copy(ex)
            m.B_ = Bv.astype(np.float32)
            v = ndcg(m, split.test)
            drops.setdefault(name, []).append(base - v)
            print(f"seed {seed} {name}: ndcg@100 {v:.4f} drop {base - v:+.4f}", flush=True)

        print(f"seed {seed}: exact EASE l2={ex.l2_:g} ndcg@100 {base:.4f}", flush=True)
        score(f"sparse {a.budget / 1.5:.3f}", top_abs(B, int(a.budget / 1.5 * n * n)))
        U, s, Vt = np.linalg.svd(B)
        for r in (int(x) for x in a.ranks.split(",") if x):
            ds = (a.budget - 2 * r / n) / 1.5
            if ds <= 0:
                continue
            lr = (U[:, :r] * s[:r]) @ Vt[:r]
            score(f"sparse + rank {r}", top_abs(B - lr, int(ds * n * n)) + lr)
        X = sp.csr_matrix(split.train.to_csr() if hasattr(split.train, "to_csr") else split.train, dtype=np.float64)
        p = np.argsort(np.asarray(X.sum(0)).ravel(), kind="stable")
        A = (X.T @ X).toarray()[p][:, p] + ex.l2_ * np.eye(n)
        L = scipy.linalg.cholesky(A, lower=True)
        W = scipy.linalg.solve_triangular(L, np.eye(n), lower=True)[:, np.argsort(p)]  # P = W^T W
        for d in (float(x) for x in a.factored.split(",") if x):
            Wt = sp.csc_matrix(top_abs(W, int(d * n * n)))
            diag = np.asarray(Wt.multiply(Wt).sum(0)).ravel()
            Bf = -(Wt.T @ Wt).toarray() / diag[None, :]
            np.fill_diagonal(Bf, 0.0)
            score(f"factored W density {d:g}", Bf)
    print("\n| structure (budget %.2fx of dense fp32 B) | seeds | paired NDCG@100 drop (mean +- std, worst) |" % a.budget)
    print("| --- | --- | --- |")
    for name, v in drops.items():
        v = np.array(v)
        print(f"| {name} | {len(v)} | {v.mean():+.4f} +- {v.std():.4f} (worst {v.max():+.4f}) |")


if __name__ == "__main__":
    main()

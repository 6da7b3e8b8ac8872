"""CPU-emulation smoke suite: every public path of aerec once, on tiny data, in one process.

CI runs it under ``qemu-x86_64 -cpu Haswell`` (AVX2, no AVX-512) and ``-cpu Nehalem`` (SSE4.2, no
AVX) with the installed package, so a kernel compiled for an instruction set the CPU lacks dies
here with SIGILL (exit 132 / "uncaught target signal 4") instead of on a user's machine::

    qemu-x86_64 -cpu Haswell  "$(python -c 'import sys; print(sys.executable)')" tests/emulation/smoke.py --expect-isa avx2
    qemu-x86_64 -cpu Nehalem  ... tests/emulation/smoke.py --expect-isa scalar

It also runs natively (any AEREC_ISA cap): tests/test_emulation.py does both. A plain script, no
pytest: it prints one line per check, then "N passed, N failed", and exits 1 on any failure.
Results are checked against the NumPy oracles (search.reference_search) and the model's own
save/load round trip, not against the host's bits, so they hold at every ISA level. Sized to take
well under a minute natively per process and a few minutes under emulation.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import tempfile
import time
import traceback

import numpy as np
import scipy.sparse as sp

import aerec
from aerec import _core
from aerec.search import TopK, reference_search

RESULTS: list[tuple[str, bool, str]] = []


def check(name):
    """Decorator: run the check now, record pass/fail (an exception is a failure), print a line."""
    def run(fn):
        t0 = time.perf_counter()
        try:
            fn()
            ok, why = True, ""
        except Exception as exc:  # noqa: BLE001 - every failure is reported and counted
            ok, why = False, f"{type(exc).__name__}: {exc}"
            traceback.print_exc(file=sys.stdout)
        RESULTS.append((name, ok, why))
        print(f"{'PASS' if ok else 'FAIL'} {name} ({time.perf_counter() - t0:.1f} s){'' if ok else ': ' + why}",
              flush=True)
        return fn
    return run


def clustered(n_users=90, n_items=48, n_clusters=3, seed=0):
    rng = np.random.default_rng(seed)
    uc = rng.integers(0, n_clusters, n_users)
    ic = np.arange(n_items) % n_clusters
    dense = (rng.random((n_users, n_items)) < np.where(uc[:, None] == ic[None, :], 0.35, 0.03))
    dense[dense.sum(1) == 0, 0] = True
    return sp.csr_matrix(dense.astype(np.float32))


def ratings(n_users=60, n_items=40, seed=0):
    rng = np.random.default_rng(seed)
    full = np.clip(np.round(3 + rng.normal(size=(n_users, 3)) @ rng.normal(size=(n_items, 3)).T * 0.7), 1, 5)
    return sp.csr_matrix(np.where(rng.random((n_users, n_items)) < 0.3, full, 0).astype(np.float32))


def check_topk_output(ids, scores, k, n_items, seen=None):
    assert ids.shape == scores.shape and ids.shape[-1] == min(k, n_items), (ids.shape, scores.shape)
    assert ids.dtype == np.int32 and scores.dtype == np.float32
    ids2 = ids.reshape(-1, ids.shape[-1])
    sc2 = scores.reshape(-1, scores.shape[-1])
    for r in range(ids2.shape[0]):
        valid = ids2[r] >= 0
        row = ids2[r][valid]
        assert np.all(row < n_items) and len(set(row.tolist())) == row.size, f"bad ids {ids2[r]}"
        assert np.all(np.isfinite(sc2[r][valid])), f"non-finite scores {sc2[r]}"
        assert np.all(np.diff(sc2[r][valid]) <= 0), f"scores not descending {sc2[r]}"
        if seen is not None:
            assert not set(row.tolist()) & set(seen[r].indices.tolist()), "a seen item was recommended"


def run_model(name, make, X, fold_in=True, tmp="."):
    model = make()

    @check(f"{name}: fit")
    def _():
        model.fit(X)

    @check(f"{name}: recommend")
    def _():
        users = np.array([0, 1, 2, 5])
        ids, scores = model.recommend(users, k=5)
        check_topk_output(ids, scores, 5, X.shape[1], X[users])
        i1, s1 = model.recommend(3, k=4)
        assert i1.shape == (4,), i1.shape

    @check(f"{name}: fold-in recommend(user_items=...)")
    def _():
        hist = X[[4, 7, 9]]
        if not fold_in:  # item-based AutoRec cannot fold in new users: a clear error
            try:
                model.recommend(user_items=hist, k=5)
            except ValueError:
                return
            raise AssertionError("fold-in should raise for this model")
        ids, scores = model.recommend(user_items=hist, k=5)
        check_topk_output(ids, scores, 5, X.shape[1], hist)

    @check(f"{name}: save / load round trip")
    def _():
        path = os.path.join(tmp, f"{name}.npz")
        model.save(path)
        loaded = aerec.load(path)
        users = np.array([0, 1, 2])
        a_ids, a_sc = model.recommend(users, k=6)
        b_ids, b_sc = loaded.recommend(users, k=6)
        np.testing.assert_array_equal(a_ids, b_ids)
        np.testing.assert_allclose(a_sc, b_sc, rtol=1e-6, atol=1e-6)


def run_all(tmp):
    X = clustered()
    R = ratings()
    fast = dict(epochs=3, batch_size=32, learning_rate=5e-3, random_state=0)
    run_model("Popularity", lambda: aerec.Popularity(), X, tmp=tmp)
    run_model("EASE", lambda: aerec.EASE(l2=5.0), X, tmp=tmp)
    run_model("MultDAE", lambda: aerec.MultDAE(hidden=(24,), latent=8, **fast), X, tmp=tmp)
    run_model("MultVAE", lambda: aerec.MultVAE(hidden=(24,), latent=8, total_anneal_steps=20, **fast), X, tmp=tmp)
    run_model("CDAE", lambda: aerec.CDAE(latent=8, **fast), X, tmp=tmp)
    run_model("AutoRec-item", lambda: aerec.AutoRec(kind="item", hidden=12, epochs=3, batch_size=16), R,
              fold_in=False, tmp=tmp)
    run_model("AutoRec-user", lambda: aerec.AutoRec(kind="user", hidden=12, epochs=3, batch_size=16), R, tmp=tmp)

    @check("datasets.synthetic Interactions -> MultVAE fit + recommend")
    def _():
        inter = aerec.datasets.synthetic(n_users=120, n_items=60, density=0.05, n_factors=4, random_state=0)
        m = aerec.MultVAE(hidden=(16,), latent=4, epochs=2, batch_size=32, random_state=0).fit(inter)
        ids, scores = m.recommend(np.arange(3), k=5)
        check_topk_output(ids, scores, 5, inter.n_items)

    @check("Autoencoder (dense): fit, predict, encode, save / load")
    def _():
        rng = np.random.default_rng(0)
        x = rng.random((64, 12), dtype=np.float32)
        ae = aerec.Autoencoder(hidden=(8, 4), activation="tanh").fit(x, epochs=3, batch_size=16)
        y, z = ae.predict(x), ae.encode(x)
        assert y.shape == x.shape and z.shape == (64, 4) and np.all(np.isfinite(y))
        path = os.path.join(tmp, "ae.npz")
        ae.save(path)
        np.testing.assert_array_equal(aerec.load(path).predict(x), y)

    @check("TopK: fp32/bf16/int8 x prune x ip(+bias)/cosine vs reference_search, save / load")
    def _():
        rng = np.random.default_rng(1)
        n, d, m, k = 150, 24, 7, 6
        items = rng.integers(-4, 5, (n, d)).astype(np.float32)  # integer-valued: exact fp32 scores
        queries = rng.integers(-4, 5, (m, d)).astype(np.float32)
        bias = rng.integers(-3, 4, n).astype(np.float32)
        exclude = [rng.choice(n, 5, replace=False) for _ in range(m)]
        for metric, b in (("ip", bias), ("cosine", None)):
            ref_ids, ref_sc = reference_search(items, queries, k, bias=b, exclude=exclude, metric=metric)
            for precision in ("fp32", "bf16", "int8"):
                for prune in (False, True):
                    # rescore * k >= n: every item is re-scored in fp32, so the answer is exact.
                    idx = TopK(items, bias=b, metric=metric, precision=precision, prune=prune,
                               rescore=n // k + 1)
                    ids, sc = idx.search(queries, k, exclude=exclude)
                    where = f"{metric} {precision} prune={prune}"
                    if metric == "ip":
                        np.testing.assert_array_equal(ids, ref_ids, err_msg=where)
                    else:  # cosine: normalised vectors, scores equal to rounding; compare score sets
                        np.testing.assert_allclose(sc, ref_sc, rtol=1e-5, atol=1e-5, err_msg=where)
                    np.testing.assert_allclose(sc, ref_sc, rtol=1e-5, atol=1e-5, err_msg=where)
        idx = TopK(items, bias=bias, precision="int8", prune=True, rescore=n // k + 1)
        path = os.path.join(tmp, "topk.npz")
        idx.save(path)
        ids_a, _ = idx.search(queries, k)
        ids_b, _ = TopK.load(path).search(queries, k)
        np.testing.assert_array_equal(ids_a, ids_b)
        # Fractional rescore (the default 1.25): same ids as the NumPy index, block re-scoring.
        X = rng.standard_normal((300, d), dtype=np.float32)
        Q = rng.standard_normal((40, d), dtype=np.float32)
        for precision in ("bf16", "int8"):
            a = TopK(X, precision=precision, rescore=1.25).search(Q, 30)
            c = TopK(X, precision=precision, rescore=1.25, backend="numpy").search(Q, 30)
            np.testing.assert_array_equal(a[0], c[0], err_msg=precision)
            np.testing.assert_allclose(a[1], c[1], rtol=2e-5, atol=2e-5, err_msg=precision)

    @check("CompressedLinear: fp32/bf16/int8 x dense/sparse x dense/csr input vs the NumPy reference")
    def _():
        from aerec.backends import cpp, numpy_
        from aerec.backends._quant import pack_layer
        rng = np.random.default_rng(2)
        W = rng.standard_normal((37, 75)).astype(np.float32)  # n_in not a multiple of 4 / 16 / 32
        W[rng.random(W.shape) < 0.6] = 0
        W[:, 3] = 0
        b = rng.standard_normal(75).astype(np.float32)
        x = rng.standard_normal((41, 37)).astype(np.float32)  # more rows than one 32-lane block
        H = sp.random(41, 37, 0.2, format="csr", dtype=np.float32, random_state=3)
        hp, hi = H.indptr.astype(np.int64), H.indices.astype(np.int32)
        ep = np.arange(42, dtype=np.int64) * 2
        ei = rng.integers(0, 75, 82).astype(np.int32)
        for precision in ("fp32", "bf16", "int8"):
            for sparse in (False, True):
                for inp in ("dense", "csr"):
                    a = pack_layer(W, b, precision, sparse, inp)
                    L, R = cpp.CompressedLinear(a), numpy_.CompressedLinear(a)
                    where = f"{precision} sparse={sparse} {inp}"
                    np.testing.assert_allclose(L.forward(x, "relu"), R.forward(x, "relu"), rtol=1e-4, atol=1e-4,
                                               err_msg=where)
                    if inp == "csr":
                        np.testing.assert_allclose(L.forward_csr(hp, hi, H.data, "tanh"),
                                                   R.forward_csr(hp, hi, H.data, "tanh"), rtol=1e-4, atol=1e-4,
                                                   err_msg=where)
                        # sparse: build_hybrid's dense row prefixes + sparse tails (renumbered columns)
                        ids, sc = L.topk_csr(hp, hi, H.data, 10, ep, ei)
                        rid, rsc = R.topk_csr(hp, hi, H.data, 10, ep, ei)
                        np.testing.assert_allclose(sc, rsc, rtol=1e-4, atol=1e-4, err_msg=where)
                        assert (ids == rid).mean() > 0.97, where
                        continue
                    ids, sc = L.topk(x, 10, ep, ei)
                    rid, rsc = R.topk(x, 10, ep, ei)
                    if precision == "int8" and not sparse:
                        # 7-bit activations: exact integer sums at every level (vpmaddubsw on
                        # AVX2 included) and the tile's unfused epilogue, so the top-k scores
                        # equal the reference's bit for bit
                        np.testing.assert_array_equal(sc, rsc, err_msg=where)
                        np.testing.assert_array_equal(ids, rid, err_msg=where)
                    np.testing.assert_allclose(sc, rsc, rtol=1e-4, atol=1e-4, err_msg=where)
                    assert (ids == rid).mean() > 0.97, where
                    for r in range(41):
                        assert not set(ids[r].tolist()) & set(ei[ep[r]:ep[r + 1]].tolist()), where
        # sparse output layer with two input slabs (400 x 32 lanes x 4 B > 40 KB) and two column
        # chunks (> 512 outputs): partial sums carried between slabs, thresholds raised between chunks
        W = rng.standard_normal((400, 700)).astype(np.float32)
        W[rng.random(W.shape) < 0.8] = 0
        b = rng.standard_normal(700).astype(np.float32)
        x = rng.standard_normal((35, 400)).astype(np.float32)
        ep = np.arange(36, dtype=np.int64) * 3
        ei = rng.integers(0, 700, 105).astype(np.int32)
        for precision in ("fp32", "bf16", "int8"):
            a = pack_layer(W, b, precision, True, "dense")
            L, R = cpp.CompressedLinear(a), numpy_.CompressedLinear(a)
            np.testing.assert_allclose(L.forward(x), R.forward(x), rtol=1e-4, atol=1e-3, err_msg=precision)
            ids, sc = L.topk(x, 50, ep, ei)
            rid, rsc = R.topk(x, 50, ep, ei)
            np.testing.assert_allclose(sc, rsc, rtol=1e-4, atol=1e-3, err_msg=precision)
            assert (ids == rid).mean() > 0.97, precision

    @check("CompressedLinear csr layer with long skyline prefixes (prefix_sum chunks, renumbered top-k) vs reference")
    def _():
        from aerec.backends import cpp, numpy_
        from aerec.backends._quant import pack_layer
        rng = np.random.default_rng(4)
        n_in, n_out = 50, 611  # several 32 / 64 / 128-column chunks plus a partial one
        pop = rng.permutation(1.0 / np.arange(1, n_out + 1))
        W = np.zeros((n_in, n_out), np.float32)
        for i in range(n_in):
            kept = rng.choice(n_out, size=int(rng.integers(0, 250)), replace=False, p=pop / pop.sum())
            W[i, kept] = rng.standard_normal(len(kept)).astype(np.float32)
        H = sp.random(23, n_in, 0.3, format="csr", dtype=np.float32, random_state=5)
        hp, hi = H.indptr.astype(np.int64), H.indices.astype(np.int32)
        for precision in ("fp32", "bf16", "int8"):
            a = pack_layer(W, rng.standard_normal(n_out).astype(np.float32), precision, True, "csr")
            L, R = cpp.CompressedLinear(a), numpy_.CompressedLinear(a)
            z = R.forward_csr(hp, hi, H.data)
            np.testing.assert_allclose(L.forward_csr(hp, hi, H.data), z, rtol=1e-4, atol=1e-4, err_msg=precision)
            for data in (H.data, None):
                ids, sc = L.topk_csr(hp, hi, data, 40, hp, hi)
                rid, rsc = R.topk_csr(hp, hi, data, 40, hp, hi)
                np.testing.assert_allclose(sc, rsc, rtol=1e-4, atol=1e-4, err_msg=precision)
                assert (ids == rid).mean() > 0.97, precision

    @check("TopK int8 without re-scoring: the NumPy reference's bits (vpmaddubsw / AVX-VNNI tile at avx2)")
    def _():
        feats = _core.cpu_features()
        # AVX-VNNI is reported only with AVX2 (its VEX encoding needs the AVX state)
        assert not feats["avx_vnni"] or feats["avx2"], feats
        rng = np.random.default_rng(6)
        X = rng.standard_normal((203, 37), dtype=np.float32) * np.exp(rng.standard_normal(203)).astype(np.float32)[:, None]
        b = rng.standard_normal(203).astype(np.float32)
        Q = rng.standard_normal((23, 37), dtype=np.float32)
        exclude = [rng.integers(0, 203, 7) for _ in range(23)]
        got = TopK(X, bias=b, precision="int8", rescore=0).search(Q, 40, exclude=exclude)
        ref = TopK(X, bias=b, precision="int8", rescore=0, backend="numpy").search(Q, 40, exclude=exclude)
        np.testing.assert_array_equal(got[1], ref[1])
        np.testing.assert_array_equal(got[0], ref[0])

    @check("CompressedLinear bf16 across 32-query / 16-pair blocks (the AMX tile's, at the amx level only)")
    def _():
        from aerec.backends import cpp, numpy_
        from aerec.backends._quant import pack_layer
        feats = _core.cpu_features()
        # AMX code runs only at the amx level, which needs the CPU's tile bits and the OS's grant
        assert _core.active_isa() != "amx" or (feats["amx_tile"] and feats["amx_bf16"] and feats["amx_permitted"])
        rng = np.random.default_rng(4)
        W = rng.standard_normal((70, 101)).astype(np.float32)  # 35 pairs: three 16-pair steps, a tail
        b = rng.standard_normal(101).astype(np.float32)
        x = rng.standard_normal((67, 70)).astype(np.float32)   # 32 + 32 + 3 query rows
        a = pack_layer(W, b, "bf16")
        L, R = cpp.CompressedLinear(a), numpy_.CompressedLinear(a)
        np.testing.assert_allclose(L.forward(x), R.forward(x), rtol=1e-4, atol=1e-4)
        ep = np.arange(68, dtype=np.int64) * 3
        ei = rng.integers(0, 101, 201).astype(np.int32)
        ids, sc = L.topk(x, 20, ep, ei)
        rid, rsc = R.topk(x, 20, ep, ei)
        np.testing.assert_allclose(sc, rsc, rtol=1e-4, atol=1e-4)
        assert (ids == rid).mean() > 0.97
        for r in range(67):
            assert not set(ids[r].tolist()) & set(ei[ep[r]:ep[r + 1]].tolist())

    @check("Pruning: masked fused adam / sgd (C++ at this level) == NumPy oracle, GradualPruning fit")
    def _():
        from aerec import compress
        from aerec.backends import numpy_
        from aerec.nn.spec import init_params, make_spec
        rng = np.random.default_rng(2)
        x = (rng.random((30, 37)) < 0.3).astype(np.float32)
        for opt in (dict(optimizer="adamw", weight_decay=0.1), dict(optimizer="sgd", momentum=0.8, nesterov=True)):
            spec = make_spec((37, 19, 37), ("tanh", "identity"), loss="multinomial", normalize_input=True,
                             learning_rate=1e-2, seed=1, **opt)
            params = init_params(spec, 0)
            masks = [rng.random((37, 19)) < 0.4, rng.random((19, 37)) < 0.7]
            ref = numpy_.Network(spec, params)
            net = aerec.backends.get("cpp").Network(spec, params)
            for n in (ref, net):
                n.set_masks(masks)
                for e in range(3):
                    n.train_epoch(x, x, batch_size=7, seed=e)
            for a, b, m in zip(net.get_params()[::2], ref.get_params()[::2], masks):
                np.testing.assert_allclose(a, b, rtol=2e-4, atol=5e-5)
                assert np.all(a[~m] == 0)
        m = aerec.MultVAE(hidden=(24,), latent=8, epochs=5, batch_size=32, random_state=0,
                          pruning=compress.GradualPruning(0.8)).fit(X)
        assert abs(m.sparsity_ - 0.8) < 0.01
        check_topk_output(*m.recommend(np.arange(3), k=5), 5, X.shape[1])

    @check("EASE.similar_items and score")
    def _():
        m = aerec.EASE(l2=5.0).fit(X)
        s = m.score_items(np.array([0, 1]))
        assert s.shape == (2, X.shape[1]) and np.all(np.isfinite(s))
        ids, sc = m.similar_items(0, k=5)
        assert ids.shape[-1] == 5 and 0 not in ids.tolist()

    @check("EASE dual-form fit (backend SpMM) and prune: top_magnitude_csr (both compiled paths) == NumPy reference")
    def _():
        from aerec import _core, compress
        Xd = aerec.datasets.synthetic(n_users=30, n_items=70, density=0.1, random_state=1).to_csr()
        d = aerec.EASE(l2=5.0, solver="dual").fit(Xd)
        p = aerec.EASE(l2=5.0, solver="primal", dtype="float64").fit(Xd)
        assert np.abs(d.B_ - p.B_).max() <= 1e-4 * np.abs(p.B_).max()
        ref = aerec.backends.get("numpy")
        B = np.round(d.B_, 2)  # ties
        for k in (1, 500, 70 * 69):
            want = ref.top_magnitude_csr(B, k)
            for limit in (-1, 0):
                got = _core.top_magnitude_csr(B, k, 2, limit)
                assert all(np.array_equal(g, w) for g, w in zip(got, want)), (k, limit)
        pruned = compress.prune(d, density=0.1)
        assert np.count_nonzero(pruned.item_vectors()) == int(round(0.1 * 70 * 70))

    @check("tune (grid, early stopping) and score(X) / score_items")
    def _():
        data = aerec.datasets.synthetic(n_users=120, n_items=40, density=0.1, random_state=0)
        split = aerec.data.strong_generalization_split(data, n_validation_users=20, n_test_users=20)
        res = aerec.tune(aerec.MultDAE(hidden=(16,), latent=4, epochs=3, batch_size=32),
                         {"dropout": [0.0, 0.5]}, split, early_stopping=2, verbose=False)
        assert len(res.trials) == 2 and res.best_model_ is not None and 0 <= res.best_score_ <= 1
        m = res.best_model_
        s = m.score(split.test)
        assert isinstance(s, float) and abs(s - aerec.evaluate(m, split.test, ks=(100,))["ndcg@100"]) < 1e-12
        assert m.score_items([0, 1]).shape == (2, split.train.n_items)

    @check("CLI: aerec demo on tiny synthetic data")
    def _():
        from aerec import cli
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            rc = cli.main(["demo", "--users", "200", "--items", "80", "--density", "0.05",
                           "--epochs", "2", "--heldout-users", "20", "--batch-size", "50",
                           "--anneal-steps", "10", "--hidden", "32", "--latent", "8"])
        text = out.getvalue()
        assert rc == 0, f"aerec demo exited {rc}:\n{text}"
        assert "MultVAE" in text and "top-5 items" in text, text[-2000:]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--expect-isa", choices=("scalar", "avx2", "avx512", "amx"),
                    help="fail unless aerec._core.active_isa() reports this level")
    args = ap.parse_args(argv)
    aerec.set_num_threads(2)
    t0 = time.perf_counter()
    print(f"aerec {aerec.__version__}: detected {_core.detected_isa()}, active {_core.active_isa()}, "
          f"AEREC_ISA={os.environ.get('AEREC_ISA', '')!r}", flush=True)

    @check(f"dispatch level is {args.expect_isa}" if args.expect_isa else "dispatch level reported")
    def _():
        text = io.StringIO()
        aerec.show_config(file=text)
        level = _core.active_isa()
        assert level in ("scalar", "avx2", "avx512", "amx"), level
        assert f"dispatch level: {level}" in text.getvalue(), text.getvalue()
        if args.expect_isa:
            assert level == args.expect_isa, f"active_isa() is {level!r}, expected {args.expect_isa!r}"

    with tempfile.TemporaryDirectory(prefix="aerec-smoke-") as tmp:
        run_all(tmp)
    failed = [r for r in RESULTS if not r[1]]
    print(f"{len(RESULTS) - len(failed)} passed, {len(failed)} failed "
          f"(active ISA {_core.active_isa()}, {time.perf_counter() - t0:.1f} s)", flush=True)
    for name, _, why in failed:
        print(f"  FAILED {name}: {why}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

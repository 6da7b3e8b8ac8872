"""aerec.compress: quantised and pruned models end to end (issue 9).

Every model x int8 / bf16 / pruned: scores close to the fp32 model's, recommendations mostly equal,
save/load bit-identical, files smaller; every backend; 8 threads; bad input.

Tolerances. int8 (symmetric per-output-channel weights, ``max |W[:, j]| / 127``, and per-row
dynamic 7-bit activation scales ``max |x| / 63`` in hidden layers) rounds each weight and
activation to within half a step, a relative error of at most 1/254 (weights) / 1/126
(activations) of the channel / row maximum; summed over a layer's inputs with random signs it
stays around ``sqrt(n_in) / 126`` of a typical term, so outputs
land within a few percent of the output range: 5% of each row's score range is the bound
here. bf16 keeps 8 mantissa bits (relative error <= 2^-9 per element): 1% of the range.
"""
from __future__ import annotations

import concurrent.futures
import io
import json
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import scipy.sparse as sp

import aerec
from aerec import compress

TOL = {"int8": 0.05, "bf16": 0.01, "fp32": 1e-5}
N_USERS, N_ITEMS = 240, 150


def _binary(seed=0):
    rng = np.random.default_rng(seed)
    # users with a taste: items in blocks, so the models learn structure (overlap is meaningful)
    rows, cols = [], []
    for u in range(N_USERS):
        block = u % 5
        items = rng.choice(np.arange(block * 30, block * 30 + 30), size=8, replace=False)
        extra = rng.choice(N_ITEMS, size=3, replace=False)
        for i in np.unique(np.concatenate([items, extra])):
            rows.append(u)
            cols.append(i)
    return sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(N_USERS, N_ITEMS))


X = _binary()
HIST = _binary(1)[:40]  # histories of users never seen in training (fold-in)

RANKING = {
    "MultVAE": lambda b: aerec.MultVAE(hidden=(48,), latent=16, epochs=8, batch_size=32, backend=b),
    "MultDAE": lambda b: aerec.MultDAE(hidden=(48,), latent=16, epochs=8, batch_size=32, backend=b),
    "CDAE": lambda b: aerec.CDAE(latent=16, epochs=8, batch_size=32, backend=b),
    "EASE": lambda b: aerec.EASE(l2=20.0, backend=b),
}


@pytest.fixture(scope="module")
def fitted():
    """One fp32 model of each class (the default backend), fitted once."""
    out = {name: make("auto").fit(X, verbose=0) if name != "EASE" else make("auto").fit(X)
           for name, make in RANKING.items()}
    rng = np.random.default_rng(0)
    xd = rng.random((300, 12), dtype=np.float32)
    out["Autoencoder"] = aerec.Autoencoder(hidden=(24,)).fit(xd, epochs=5, verbose=0)
    R = X.copy()
    R.data = rng.integers(1, 6, R.nnz).astype(np.float32)
    out["AutoRec"] = aerec.AutoRec(hidden=24, epochs=5).fit(R, verbose=0)
    out["_dense"] = xd
    out["_ratings"] = R
    return out


def _variant(model, kind):
    if kind in ("int8", "bf16"):
        return compress.quantize(model, kind)
    if type(model).__name__ == "EASE":
        return compress.prune(model, density=0.3)
    return compress.prune(model, sparsity=0.5)


def _scores(model, name, fitted):
    if name == "Autoencoder":
        return model.predict(fitted["_dense"][:50])
    if name == "AutoRec":
        u, i = fitted["_ratings"].nonzero()
        return model.predict_ratings(u, i)[None, :]
    return model.score_items(user_items=HIST)


def _close(a, b, tol):
    a, b = np.atleast_2d(a).astype(np.float64), np.atleast_2d(b).astype(np.float64)
    # relative to each row's score range, or to half the whole matrix's (rows of a dozen outputs,
    # as the Autoencoder's, can span little)
    span = np.maximum(np.maximum(b.max(axis=1) - b.min(axis=1), 0.5 * (b.max() - b.min())), 1e-6)[:, None]
    return np.abs(a - b) / span


NETWORKS = ["MultVAE", "MultDAE", "CDAE", "EASE", "Autoencoder", "AutoRec"]


@pytest.mark.parametrize("kind", ["int8", "bf16"])
@pytest.mark.parametrize("name", NETWORKS)
def test_quantized_scores_close_and_original_untouched(fitted, name, kind):
    model = fitted[name]
    before = _scores(model, name, fitted)
    q = compress.quantize(model, kind)
    assert type(q) is type(model) and q is not model
    err = _close(_scores(q, name, fitted), before, TOL[kind])
    assert err.max() <= TOL[kind], f"{name} {kind}: worst error {err.max():.4f} of the score range"
    np.testing.assert_array_equal(_scores(model, name, fitted), before)  # the original is untouched
    assert q.compression_["precision"] == kind and compress.is_compressed(q) and not compress.is_compressed(model)
    # no fp32 copy of the weights: every weight matrix is packed (bounds above 0.25 / 0.5: the fp32
    # biases and per-channel scales weigh more in these small layers; the tutorial-size Autoencoder,
    # 12 x 24, is all overhead)
    if name != "Autoencoder":
        assert compress.weight_nbytes(q) < compress.weight_nbytes(model) * (0.35 if kind == "int8" else 0.6)


@pytest.mark.parametrize("kind", ["int8", "bf16"])
@pytest.mark.parametrize("name", ["MultVAE", "MultDAE", "CDAE", "EASE"])
def test_recommendations_mostly_equal(fitted, name, kind):
    model = fitted[name]
    q = compress.quantize(model, kind)
    k = 10
    for args in ({"user_ids": np.arange(60)}, {"user_items": HIST}):
        a, _ = model.recommend(**args, k=k)
        b, s = q.recommend(**args, k=k)
        overlap = np.mean([len(set(x) & set(y)) / k for x, y in zip(a, b)])
        assert overlap >= (0.9 if kind == "int8" else 0.95), f"{name} {kind} overlap {overlap:.3f}"
        assert np.all(np.diff(s, axis=1) <= 0)  # sorted
        seen = X[args["user_ids"]] if "user_ids" in args else HIST
        for row, ids in enumerate(b):  # seen items excluded
            assert not set(ids) & set(seen[row].indices)


@pytest.mark.parametrize("name", ["MultVAE", "CDAE", "MultDAE"])
def test_fused_topk_matches_scores(fitted, name):
    """recommend (fused decoder + top-k) ranks exactly what score() computes, candidates too."""
    q = compress.quantize(fitted[name], "int8")
    ids, scores = q.recommend(user_items=HIST, k=15, filter_seen=False)
    full = q.score_items(user_items=HIST)
    np.testing.assert_allclose(scores, np.take_along_axis(full, ids, axis=1), rtol=1e-5, atol=1e-5)
    cand = np.arange(0, N_ITEMS, 3)
    ids, _ = q.recommend(user_items=HIST, k=5, items=cand)
    assert np.isin(ids, cand).all()


@pytest.mark.parametrize("name", ["MultVAE", "MultDAE", "CDAE", "Autoencoder", "AutoRec"])
def test_pruned_network(fitted, name):
    model = fitted[name]
    p = compress.prune(model, sparsity=0.5)
    assert p.compression_["pruning"] == "magnitude" and p.compression_["sparsity"] == 0.5
    for i in range(len(p.spec_["layer_sizes"]) - 1):
        W = p.net_.layer_weights(i)[0]
        assert abs(np.mean(W == 0) - 0.5) < 0.02
    # the pruned model computes exactly what its dequantised (zeroed) weights give
    s = _scores(p, name, fitted)
    assert np.isfinite(s).all()
    u = compress.prune(model, sparsity=0.5, method="units")
    assert u.spec_["layer_sizes"][1] < model.spec_["layer_sizes"][1]
    assert np.isfinite(_scores(u, name, fitted)).all()
    pq = compress.quantize(p, "int8")  # int8 on top of pruning
    assert pq.compression_["pruning"] == "magnitude" and pq.compression_["precision"] == "int8"
    assert _close(_scores(pq, name, fitted), s, 0.05).max() <= 0.05


def test_pruned_ease_columns_keeps_largest_per_column(fitted):
    e = fitted["EASE"]
    p = compress.prune(e, density=0.2, method="columns")
    assert p.compression_["pruning"] == "columns"
    B = p.item_vectors()
    keep = int(round(0.2 * N_ITEMS))
    assert ((B != 0).sum(axis=0) <= keep).all()
    A = np.abs(e.B_)
    for j in range(0, N_ITEMS, 17):  # the kept entries are the column's largest
        kept = np.abs(B[:, j]) > 0
        assert A[kept, j].min() >= np.sort(A[:, j])[-keep] - 1e-7
    np.testing.assert_array_equal(B[B != 0], e.B_[B != 0])
    assert compress.prune(e, sparsity=0.8, method="columns").item_vectors().tolist() == B.tolist()
    assert compress.weight_nbytes(p) < 0.35 * compress.weight_nbytes(e)


def _ease_objective(e):
    G = (X.T @ X).toarray().astype(np.float64)

    def objective(B):  # EASE's loss, ||X - X B||^2 + l2 ||B||^2, through the Gram matrix
        B = B.astype(np.float64)
        return np.trace(G) - 2 * np.sum(G * B) + np.sum(B * (G @ B)) + e.l2_ * np.sum(B * B)
    return objective


@pytest.mark.parametrize("density", [0.02, 0.1, 0.2, 0.5, 0.9])
def test_pruned_ease_global_budget(fitted, density):
    """The default EASE prune keeps the round(density * n^2) largest |B_ij| of the whole matrix
    (diagonal 0), stores them sparse, and fits the training data better than the per-column rule
    at the same number of entries."""
    e = fitted["EASE"]
    p = compress.prune(e, density=density)
    assert p.compression_["pruning"] == "magnitude" and p.compression_["sparsity"] == pytest.approx(1 - density)
    # stored sparse (dense at 90%: 6 bytes an entry would outweigh 4 for every entry), no fp32 copy
    assert p.B_ is None and p.net_.layer(0).sparse == (density < 0.6)
    B = p.item_vectors()
    budget = int(round(density * N_ITEMS ** 2))
    assert np.count_nonzero(B) == budget
    assert not np.diag(B).any()
    np.testing.assert_array_equal(B[B != 0], e.B_[B != 0])  # kept values untouched
    A = np.abs(e.B_)
    assert A[B != 0].min() >= A[(B == 0) & ~np.eye(N_ITEMS, dtype=bool)].max()  # the largest ones
    objective = _ease_objective(e)
    cols = compress.prune(e, density=density, method="columns").item_vectors()
    assert np.count_nonzero(cols) == budget  # the same number of entries (N_ITEMS * keep)
    assert objective(B) < objective(cols)
    # the compressed model scores what its B gives
    np.testing.assert_allclose(p.score_items(user_items=HIST), (HIST @ B), rtol=1e-5, atol=1e-6)


def test_pruned_ease_global_ties_and_extremes():
    from aerec.compress import _api
    rng = np.random.default_rng(3)
    B = np.round(rng.normal(size=(40, 40)), 1).astype(np.float32)  # many exact ties
    np.fill_diagonal(B, 0)

    import types

    def _ease_top_global(B, sparsity):
        model = types.SimpleNamespace(B_=B, _backend=lambda: aerec.backends.get("numpy"))
        indptr, indices, data = _api._ease_top_global(model, sparsity)
        return sp.csr_matrix((data, indices, indptr), shape=B.shape).toarray()
    for d in (0.01, 0.1, 0.33, 0.9):
        out = _ease_top_global(B, 1 - d)
        assert np.count_nonzero(out) == min(int(round(d * 1600)), np.count_nonzero(B))
        assert np.abs(B)[out != 0].min() >= np.abs(B)[(out == 0) & ~np.eye(40, dtype=bool)].max()
    np.testing.assert_array_equal(_ease_top_global(B, 0.0), B)
    assert not _ease_top_global(B, 0.9999).any()


def test_ease_refit(fitted):
    """refit re-solves EASE's column-wise ridge problem on the kept support: with every entry kept it
    gives B back; with fewer, the training objective is no worse than keeping the entries as they are."""
    e = fitted["EASE"]
    full = compress.prune(e, sparsity=0.0, refit=True).item_vectors()
    np.testing.assert_allclose(full, e.B_, atol=2e-4 * np.abs(e.B_).max())
    objective = _ease_objective(e)
    plain = compress.prune(e, density=0.2).item_vectors()
    refit = compress.prune(e, density=0.2, refit=True).item_vectors()
    np.testing.assert_array_equal(plain != 0, refit != 0)  # the same support
    assert objective(refit) < objective(plain)
    with pytest.raises(ValueError, match="refit"):
        compress.prune(e, density=0.2, refit="yes")


@pytest.mark.parametrize("kind", ["int8", "bf16", "pruned"])
@pytest.mark.parametrize("name", NETWORKS)
def test_save_load_bit_identical(fitted, name, kind, tmp_path):
    model = fitted[name]
    v = _variant(model, kind)
    path = tmp_path / "m.npz"
    v.save(path)
    back = aerec.load(path)
    assert type(back) is type(model) and back.compression_ == v.compression_
    np.testing.assert_array_equal(_scores(back, name, fitted), _scores(v, name, fitted))
    if name in RANKING:
        a = v.recommend(user_items=HIST, k=7)
        b = back.recommend(user_items=HIST, k=7)
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])
    assert back.card["compression"]["precision"] == v.compression_["precision"]
    assert back.card["compression"]["source"]["sha256"] == v.compression_["source"]["sha256"]
    # saving the loaded model again writes the same arrays
    path2 = tmp_path / "m2.npz"
    back.save(path2)
    with zipfile.ZipFile(path) as z1, zipfile.ZipFile(path2) as z2:
        for n in z1.namelist():
            if n != "__aerec_meta__.npy":
                assert z1.read(n) == z2.read(n), n


@pytest.mark.parametrize("name", ["MultVAE", "CDAE", "EASE"])
def test_file_shrinks_and_serving_artefact(fitted, name, tmp_path):
    # wider layers than the shared fixtures, so the weights outweigh the file's JSON header
    model = {"MultVAE": lambda: aerec.MultVAE(hidden=(300,), latent=64, epochs=1).fit(X, verbose=0),
             "CDAE": lambda: aerec.CDAE(latent=200, epochs=1).fit(X, verbose=0),
             "EASE": lambda: fitted["EASE"]}[name]()
    sizes = {}
    for kind, m in (("fp32", model), ("int8", compress.quantize(model, "int8")),
                    ("bf16", compress.quantize(model, "bf16"))):
        m.save(tmp_path / f"{kind}.npz", include_history=False)
        sizes[kind] = os.path.getsize(tmp_path / f"{kind}.npz")
    assert sizes["int8"] < 0.35 * sizes["fp32"], sizes
    assert sizes["bf16"] < 0.6 * sizes["fp32"], sizes
    back = aerec.load(tmp_path / "int8.npz")
    assert not back.has_history
    ids, _ = back.recommend(user_items=HIST, k=5)
    np.testing.assert_array_equal(ids, compress.quantize(model, "int8").recommend(user_items=HIST, k=5)[0])
    assert back.card["compression"]["precision"] == "int8"
    with pytest.raises(ValueError, match="history"):
        back.recommend(0, k=5)


def test_vectors_dequantised(fitted):
    m = fitted["MultVAE"]
    q = compress.quantize(m, "bf16")
    np.testing.assert_allclose(q.item_vectors(), m.item_vectors(), atol=np.abs(m.item_vectors()).max() / 128)
    np.testing.assert_allclose(q.item_biases(), m.item_biases())
    V, U = q.item_vectors(), q.user_vectors(user_items=HIST)
    ids, scores = q.recommend(user_items=HIST, k=5, filter_seen=False)
    np.testing.assert_allclose(scores, np.take_along_axis(U @ V.T + q.item_biases(), ids, axis=1), rtol=2e-2,
                               atol=2e-2)
    z = q.encode(HIST)
    assert z.shape == (HIST.shape[0], 16)
    np.testing.assert_allclose(z, m.encode(HIST), atol=0.05 * np.abs(m.encode(HIST)).max())
    sims, _ = q.similar_items(3, k=4)
    assert sims.shape == (4,)


def _backends():
    return [n for n, ok in aerec.backends.available().items() if ok and n in ("cpp", "numba", "numpy")]


@pytest.mark.parametrize("backend_name", _backends())
@pytest.mark.parametrize("kind", ["int8", "bf16", "pruned"])
@pytest.mark.parametrize("name", ["MultVAE", "CDAE", "EASE"])
def test_every_backend_agrees_with_numpy(fitted, name, kind, backend_name, tmp_path):
    v = _variant(fitted[name], kind)
    path = tmp_path / "v.npz"
    v.save(path)
    ref = aerec.load(path, backend="numpy")
    got = aerec.load(path, backend=backend_name)
    np.testing.assert_allclose(got.score_items(user_items=HIST), ref.score_items(user_items=HIST), rtol=1e-4, atol=1e-4)
    a, sa = ref.recommend(user_items=HIST, k=10)
    b, sb = got.recommend(user_items=HIST, k=10)
    np.testing.assert_allclose(sb, sa, rtol=1e-4, atol=1e-4)
    assert np.mean(a == b) > 0.98  # ids equal wherever scores are not tied


@pytest.mark.parametrize("name", ["MultVAE", "CDAE", "EASE", "Autoencoder", "AutoRec"])
def test_eight_threads(fitted, name):
    q = compress.quantize(fitted[name], "int8")
    if name == "Autoencoder":
        x = fitted["_dense"]
        chunks = [x[i::8] for i in range(8)]
        call = q.predict
    elif name == "AutoRec":
        u, i = fitted["_ratings"].nonzero()
        chunks = [(u[j::8], i[j::8]) for j in range(8)]

        def call(c):
            return q.predict_ratings(*c)
    else:
        chunks = [HIST[j::8] for j in range(8)] + [HIST]

        def call(c):
            return q.recommend(user_items=c, k=10)
    serial = [call(c) for c in chunks]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        for _ in range(3):
            for got, want in zip(pool.map(call, chunks * 2), serial * 2):
                for g, w in zip(got if isinstance(got, tuple) else (got,), want if isinstance(want, tuple) else (want,)):
                    np.testing.assert_array_equal(g, w)


# -- bad input ------------------------------------------------------------------------------------

def test_bad_input(fitted):
    m = fitted["MultVAE"]
    with pytest.raises(ValueError, match="precision"):
        compress.quantize(m, "int4")
    with pytest.raises(ValueError, match="precision"):
        compress.quantize(m, "fp32")
    for bad in (1.0, -0.1, 1.5, float("nan"), True, "0.5"):
        with pytest.raises(ValueError, match="sparsity"):
            compress.prune(m, sparsity=bad)
    with pytest.raises(ValueError, match="not both"):
        compress.prune(fitted["EASE"], sparsity=0.5, density=0.5)
    with pytest.raises(ValueError, match="method"):
        compress.prune(m, sparsity=0.5, method="random")
    with pytest.raises(ValueError, match="columns.*EASE"):
        compress.prune(m, sparsity=0.5, method="columns")
    with pytest.raises(ValueError, match="not fitted"):
        compress.quantize(aerec.MultVAE())
    with pytest.raises(ValueError, match="not fitted"):
        compress.prune(aerec.EASE(), sparsity=0.5)
    pop = aerec.Popularity().fit(X)
    with pytest.raises(TypeError, match="Popularity"):
        compress.quantize(pop)
    with pytest.raises(TypeError, match="TopK"):
        compress.quantize(aerec.TopK(np.ones((4, 3), np.float32)))
    with pytest.raises(TypeError, match="fitted aerec model"):
        compress.quantize(np.ones(3))
    with pytest.raises(ValueError, match="sparse"):
        compress.quantize(m, "int8", sparse="yes")
    with pytest.raises(ValueError, match="units"):
        compress.prune(fitted["EASE"], sparsity=0.5, method="units")


def test_compressing_twice(fitted):
    m = fitted["MultVAE"]
    q = compress.quantize(m, "int8")
    with pytest.raises(ValueError, match="already quantised"):
        compress.quantize(q, "bf16")
    with pytest.raises(ValueError, match="already compressed"):
        compress.prune(q, sparsity=0.5)
    p = compress.prune(m, sparsity=0.5)
    with pytest.raises(ValueError, match="already compressed"):
        compress.prune(p, sparsity=0.8)
    pq = compress.quantize(p, "bf16")  # pruning then quantising is the supported order
    assert pq.compression_["source"] == p.compression_["source"] == q.compression_["source"]


@pytest.mark.parametrize("name", NETWORKS)
def test_fit_refuses(fitted, name):
    q = compress.quantize(fitted[name], "int8")
    data = fitted["_dense"] if name == "Autoencoder" else (fitted["_ratings"] if name == "AutoRec" else X)
    with pytest.raises(ValueError, match="compressed .* cannot be trained"):
        q.fit(data)


def _unpack(raw):
    with zipfile.ZipFile(io.BytesIO(raw)) as z:
        arrays = {n[:-4]: np.load(io.BytesIO(z.read(n)), allow_pickle=False) for n in z.namelist()}
    return json.loads(arrays.pop("__aerec_meta__").tobytes()), arrays


def _repack(meta, arrays):
    from aerec import io as aio
    meta = dict(meta)
    meta.pop("sha256", None)
    meta["sha256"] = aio._digest(meta, arrays)  # a deliberate tamperer: only validation can catch it
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        for name, a in [("__aerec_meta__", np.frombuffer(json.dumps(meta).encode(), np.uint8)), *arrays.items()]:
            b = io.BytesIO()
            np.save(b, a, allow_pickle=False)
            z.writestr(f"{name}.npy", b.getvalue())
    return buf.getvalue()


@pytest.mark.parametrize("edit", ["negative-scale", "index-out-of-range", "wrong-layer-size", "missing-array",
                                  "declared-dtype", "flipped-byte"])
def test_corrupted_compressed_file(fitted, edit, tmp_path):
    v = compress.quantize(fitted["MultVAE"], "int8", sparse=True)  # sparse layout: indices to corrupt
    path = tmp_path / "v.npz"
    v.save(path)
    raw = path.read_bytes()
    meta, arrays = _unpack(raw)
    if edit == "negative-scale":
        arrays["decoder.1.scale"] = -arrays["decoder.1.scale"]
        match = "scale"
    elif edit == "index-out-of-range":
        arrays["decoder.1.indices"] = arrays["decoder.1.indices"].copy()
        arrays["decoder.1.indices"][0] = 60000
        match = "indices"
    elif edit == "wrong-layer-size":
        arrays["encoder.0.meta"] = arrays["encoder.0.meta"].copy()
        arrays["encoder.0.meta"][2] += 1
        match = "encoder.0"
    elif edit == "missing-array":
        del arrays["decoder.1.scale"]
        del meta["compression"]["arrays"]["decoder.1.scale"]
        match = "scale"
    elif edit == "declared-dtype":
        meta["compression"]["arrays"]["decoder.1.data"]["dtype"] = "float32"
        match = "decoder.1.data"
    if edit == "flipped-byte":
        data = bytearray(raw)
        data[len(data) // 2] ^= 0xFF
        bad = bytes(data)
        match = "checksum|truncated|altered|corrupt"
    else:
        bad = _repack(meta, arrays)
    (tmp_path / "bad.npz").write_bytes(bad)
    with pytest.raises(ValueError, match=match):
        aerec.load(tmp_path / "bad.npz")


# -- report ---------------------------------------------------------------------------------------

def _split():
    from aerec.data import strong_generalization_split
    return strong_generalization_split(aerec.Interactions.from_csr(X), n_validation_users=30, n_test_users=30,
                                       random_state=0)


def test_report_table_and_plot(tmp_path):
    pytest.importorskip("matplotlib")
    split = _split()
    m = aerec.MultDAE(hidden=(32,), latent=8, epochs=5, batch_size=32).fit(split.train, verbose=0)
    table = compress.report(m, split.test, {"int8": compress.quantize(m), "pruned": compress.prune(m, sparsity=0.8)},
                            plot=tmp_path / "r.png")
    assert list(table) == ["original", "int8", "pruned"]
    d = table.to_dict()
    assert d["original"]["weight_bytes_vs_original"] == 1.0 and d["original"]["ndcg@100_vs_original"] == 0.0
    assert d["int8"]["weight_bytes_vs_original"] < 0.3
    assert d["int8"]["file_bytes"] < d["original"]["file_bytes"]
    assert 0 <= d["int8"]["ndcg@100"] <= 1 and d["int8"]["users_per_s"] > 0 and d["int8"]["peak_ram_bytes"] > 0
    assert abs(d["int8"]["ndcg@100"] - d["original"]["ndcg@100"]) < 0.05
    text = str(table)
    assert "int8" in text and "ndcg@100" in text and "recall@20" in text
    assert (tmp_path / "r.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_rmse_and_mse(fitted):
    t = compress.report(fitted["AutoRec"], fitted["_ratings"], {"int8": compress.quantize(fitted["AutoRec"])})
    assert abs(t["int8"]["rmse_vs_original"]) < 0.05
    t = compress.report(fitted["Autoencoder"], fitted["_dense"], {"bf16": compress.quantize(fitted["Autoencoder"], "bf16")})
    assert t["bf16"]["mse"] > 0 and abs(t["bf16"]["mse_vs_original"]) < 1e-3


def test_report_bad_input(fitted, monkeypatch, tmp_path):
    m = fitted["EASE"]
    split = _split()
    with pytest.raises(TypeError, match="variants"):
        compress.report(m, split.test, {})
    with pytest.raises(TypeError, match="one model"):
        compress.report(m, split.test, {"x": fitted["MultVAE"]})
    with pytest.raises(ValueError, match="original"):
        compress.report(compress.quantize(m), split.test, {"x": compress.quantize(m)})
    table = compress.report(aerec.EASE(l2=20.0).fit(split.train), split.test,
                            {"d": compress.prune(aerec.EASE(l2=20.0).fit(split.train), density=0.5)})
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match=r"aerec\[plot\]"):
        table.plot(tmp_path / "x.png")


# -- CLI ------------------------------------------------------------------------------------------

def _cli(*args, cwd):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(os.path.dirname(os.path.dirname(aerec.__file__)))]
                                                       + [os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, "-m", "aerec", *args], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=300)


def test_cli_compress(tmp_path):
    split = _split()
    m = aerec.MultDAE(hidden=(32,), latent=8, epochs=3, batch_size=32).fit(split.train, verbose=0)
    m.save(tmp_path / "m.npz")
    r = _cli("compress", "m.npz", "--precision", "int8", "--sparsity", "0.8", "--method", "magnitude",
             "-o", "small.npz", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    small = aerec.load(tmp_path / "small.npz")
    assert small.compression_["precision"] == "int8" and small.compression_["sparsity"] == 0.8
    assert os.path.getsize(tmp_path / "small.npz") < os.path.getsize(tmp_path / "m.npz")
    r = _cli("info", "small.npz", cwd=tmp_path)
    assert "compression    int8 weights, magnitude-pruned to sparsity 0.8" in r.stdout
    for bad, msg in ((["--sparsity", "1.5", "-o", "x.npz"], "sparsity"), ([], "nothing to do"),
                     (["--precision", "int8"], "-o PATH"), (["--precision", "int4", "-o", "x.npz"], "invalid choice"),
                     (["--report"], "--data"), (["--plot", "p.png", "--precision", "int8", "-o", "x.npz"], "--report"),
                     (["--method", "units", "-o", "x.npz"], "--sparsity")):
        r = _cli("compress", "m.npz", *bad, cwd=tmp_path)
        assert r.returncode != 0 and msg in r.stderr and "Traceback" not in r.stderr, (bad, r.stderr)
    r = _cli("compress", "small.npz", "--precision", "bf16", "-o", "y.npz", cwd=tmp_path)
    assert r.returncode != 0 and "already quantised" in r.stderr and "Traceback" not in r.stderr


def test_cli_report(tmp_path, ml100k_dir):
    r = _cli("train", "--model", "EASE", "--data", str(ml100k_dir), "--threshold", "4", "-o", "e.npz", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    r = _cli("compress", "e.npz", "--report", "--data", str(ml100k_dir), "--threshold", "4", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "original" in r.stdout and "int8" in r.stdout and "bf16" in r.stdout and "ndcg@100" in r.stdout


@pytest.mark.parametrize("precision", ["fp32", "bf16", "int8"])
def test_pack_csr_rows_matches_pack_layer(precision):
    """pack_csr_rows (no dense W) gives exactly pack_layer's sparse CSR-input arrays."""
    from aerec.backends import _quant
    rng = np.random.default_rng(7)
    for n_in, n_out in ((1, 1), (13, 9), (70, 300)):
        W = rng.normal(size=(n_in, n_out)).astype(np.float32) * (rng.random((n_in, n_out)) < 0.3)
        W[n_in // 2] = 0  # an empty row
        if n_out > 2:
            W[:, 1] = 0  # an empty column (int8 scale 1)
        A = sp.csr_matrix(W)
        data = A.data.copy()
        if data.size:
            data[0] = 0.0  # a stored zero is dropped
            W.reshape(-1)[np.flatnonzero(W)[0]] = 0.0
        got = _quant.pack_csr_rows(A.indptr, A.indices, data, n_out, precision)
        want = _quant.pack_layer(W, None, precision=precision, sparse=True, input="csr")
        assert sorted(got) == sorted(want)
        for key in want:
            assert got[key].dtype == want[key].dtype, key
            np.testing.assert_array_equal(got[key], want[key], err_msg=key)
        _quant.validate_layer(got)
    with pytest.raises(ValueError, match="CSR"):
        _quant.pack_csr_rows([0, 2], [0], [1.0], 3)
    with pytest.raises(ValueError, match="indices"):
        _quant.pack_csr_rows([0, 1], [3], [1.0], 3)
    with pytest.raises(ValueError, match="finite"):
        _quant.pack_csr_rows([0, 1], [0], [np.nan], 3)
    with pytest.raises(ValueError, match="precision"):
        _quant.pack_csr_rows([0, 1], [0], [1.0], 3, "int4")


@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_quantize_pruned_ease_repacks_its_rows(fitted, precision):
    """quantize(prune(ease)) re-packs the kept CSR rows: the same arrays as pruning at that precision."""
    e = fitted["EASE"]
    a = compress.quantize(compress.prune(e, density=0.1), precision)
    b = compress.prune(e, density=0.1, precision=precision)
    pa, pb = a.net_.packed_layers()[0], b.net_.packed_layers()[0]
    assert sorted(pa) == sorted(pb)
    for key in pa:
        np.testing.assert_array_equal(pa[key], pb[key], err_msg=key)
    assert a.compression_["pruning"] == "magnitude" and a.compression_["precision"] == precision
    np.testing.assert_array_equal(a.recommend(user_items=HIST, k=5)[0], b.recommend(user_items=HIST, k=5)[0])

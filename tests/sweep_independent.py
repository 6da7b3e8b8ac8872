"""Independent bad-input sweep (issue 7, "Done when"): cases the table in badinput_cases.py does not
hold, run in subprocesses so a crash is recorded, each classified as ok / crash / hang / silent
wrong / unclear error. Not collected by pytest (a script); its findings became table rows and
tests in test_input_regressions.py.

    PYTHONPATH=python python tests/sweep_independent.py [--show-ok]

A case is ``(id, code, expect)``: ``expect`` None means the call must succeed (the code asserts on
the result, usually against a brute force); otherwise ``(ExceptionName, fragment)``: the call must
raise that class (or a subclass) with the fragment in its message.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

CASES: list[tuple] = []


def case(cid, code, expect=None):
    assert all(c[0] != cid for c in CASES), cid
    CASES.append((cid, code, expect))


PRELUDE = r'''
import os, io, tempfile, pathlib, warnings
import numpy as np, scipy.sparse as sp
import aerec
from aerec.data import Interactions, IdMap
from badinput_cases import make_env
globals().update(make_env())
warnings.simplefilter("ignore")

def brute(model, users=None, hist=None, k=5, filter_seen=True, items=None, filter_items=None):
    """top-k from model.score with the documented rules (seen excluded, ties by lower id, -1 pad)"""
    S = np.atleast_2d(model.score_items(users, user_items=hist)).astype(np.float64)
    H = (hist if hist is not None else model.train_[np.atleast_1d(users)])
    H = sp.csr_matrix(H)
    out = []
    for r in range(S.shape[0]):
        cand = np.arange(S.shape[1]) if items is None else np.unique(np.asarray(items))
        if filter_seen:
            cand = cand[~np.isin(cand, H[r].indices)]
        if filter_items is not None:
            cand = cand[~np.isin(cand, np.asarray(filter_items))]
        order = sorted(cand.tolist(), key=lambda j: (-S[r, j], j))[:k]
        out.append(order + [-1] * (min(k, S.shape[1]) - len(order)))
    return np.array(out)

def same_topk(got, want, model, users=None, hist=None):
    """equal ids, or equal scores where float ties reorder"""
    got = np.atleast_2d(got)
    if (got == want).all():
        return True
    S = np.atleast_2d(model.score_items(users, user_items=hist))
    for r in range(got.shape[0]):
        g, w = got[r], want[r]
        if ((g == -1) != (w == -1)).any():
            return False
        sg = S[r, g[g >= 0]]; sw = S[r, w[w >= 0]]
        if not np.allclose(sg, sw, rtol=1e-5, atol=1e-6):
            return False
    return True

def check(model, users=None, hist=None, **kw):
    i, s = model.recommend(users, user_items=hist, **kw)
    want = brute(model, users, hist, **kw)
    assert same_topk(i, want, model, users, hist), (np.atleast_2d(i)[:2], want[:2])
    return i, s
'''

MODELS = ["pop", "ease", "dae", "vae", "cdae", "ari", "aru"]
FOLD = ["pop", "ease", "dae", "vae", "cdae", "aru"]

# --------------------------------------------------------------------------------------------
# recommend: valid but unusual arguments, checked against a brute force over score()
for m in MODELS:
    case(f"{m}.recommend items subset", f"check({m}, [0, 5, 7], k=4, items=[3, 9, 1, 20, 12])")
    case(f"{m}.recommend items subset, k > candidates", f"i, s = check({m}, [0, 5], k=8, items=[3, 9, 1])\n"
         "assert (i[:, 3:] == -1).all() and np.isneginf(s[:, 3:]).all()")
    case(f"{m}.recommend items duplicated", f"i, s = {m}.recommend(0, k=6, items=[3, 3, 9, 9, 1])\n"
         "v = i[i >= 0]; assert len(set(v.tolist())) == len(v), i")
    case(f"{m}.recommend items + filter_items overlap",
         f"check({m}, [1, 2], k=5, items=[3, 4, 5, 6], filter_items=[4, 5])")
    case(f"{m}.recommend filter_seen=False", f"check({m}, [0, 3], k=n_items, filter_seen=False)")
    case(f"{m}.recommend filter all items", f"i, s = {m}.recommend([0, 1], k=3, filter_items=np.arange(n_items))\n"
         "assert (i == -1).all()")
    case(f"{m}.recommend k=n_items exact", f"check({m}, [0, 9], k=n_items)")
    for dt in ("np.int8", "np.uint8", "np.int16", "np.uint32", "np.uint64", "np.intp"):
        case(f"{m}.recommend user ids {dt}",
             f"a = {m}.recommend(np.array([3, 1, 3], {dt}), k=4)[0]\nb = {m}.recommend([3, 1, 3], k=4)[0]\n"
             "assert (a == b).all()")
    case(f"{m}.recommend user ids tuple", f"a = {m}.recommend((3, 1), k=4)[0]; b = {m}.recommend([3, 1], k=4)[0]\n"
         "assert (a == b).all()")
    case(f"{m}.recommend user ids range", f"a = {m}.recommend(range(3), k=4)[0]; b = {m}.recommend([0, 1, 2], k=4)[0]\n"
         "assert (a == b).all()")
    case(f"{m}.recommend user id 0-d array", f"i, s = {m}.recommend(np.array(3), k=4)\nassert i.shape == (4,)")
    case(f"{m}.recommend user ids read-only strided",
         f"u = np.arange(20)[::3]; u.flags.writeable = False\na = {m}.recommend(u, k=4)[0]\n"
         f"b = {m}.recommend(u.copy(), k=4)[0]\nassert (a == b).all()")
    case(f"{m}.recommend items uint32 read-only",
         f"it = np.array([3, 9, 1, 20], np.uint32); it.flags.writeable = False\ncheck({m}, [0, 5], k=3, items=it)")
    case(f"{m}.recommend filter_items set", f"i, s = {m}.recommend(0, k=n_items, filter_items={{1, 2, 3}})\n"
         "assert not set(i.tolist()) & {1, 2, 3}")
    case(f"{m}.recommend items generator", f"a = {m}.recommend(0, k=3, items=(j for j in range(4)))[0]\n"
         f"assert (a == {m}.recommend(0, k=3, items=[0, 1, 2, 3])[0]).all()")
    case(f"{m}.recommend filter_items dict keys", f"i, s = {m}.recommend(0, k=n_items, filter_items={{1: 'a', 4: 'b'}}.keys())\n"
         "assert not set(i.tolist()) & {1, 4}")
    case(f"{m}.recommend user_ids set", f"{m}.recommend({{1, 2}}, k=3)", ("TypeError", "sorted"))
    case(f"{m}.recommend items bool mask", f"{m}.recommend(0, k=3, items=np.ones(n_items, bool))",
         ("TypeError", "np.flatnonzero"))
    case(f"{m}.score duplicated users", f"s = {m}.score_items([4, 4, 0])\nassert np.array_equal(s[0], s[1])")
    case(f"{m}.score empty users", f"s = {m}.score_items(np.array([], np.int64))\nassert s.shape == (0, n_items)")
    case(f"{m}.recommend training-shaped user_items, duplicated ids",
         f"a = {m}.recommend([2, 2, 5], user_items={'R' if m in ('ari', 'aru') else 'X'}, k=4)[0]; b = {m}.recommend([2, 2, 5], k=4)[0]\n"
         "assert (a == b).all()")
    case(f"{m}.similar_items uint8 ids + duplicates",
         f"i, s = {m}.similar_items(np.array([2, 2], np.uint8), k=n_items)\nassert (i[0] == i[1]).all()\n"
         "assert 2 not in i[0].tolist()")
    case(f"{m}.similar_items k=n_items, filter_self pads",
         f"i, s = {m}.similar_items(0, k=n_items)\nassert i[-1] == -1 and 0 not in i.tolist()")
    case(f"{m}.get_params round trip", f"c = type({m})(**{m}.get_params())\nassert repr(c) == repr({m}).split('(')[0] + repr(c)[len(type(c).__name__):]\n"
         f"assert c.get_params() == {m}.get_params()")
    case(f"{m}.set_params unknown", f"{m}.set_params(nonsense=1)", ("ValueError", "invalid parameter"))

for m in FOLD:
    # every sparse format / index dtype / value dtype must give the same answer as canonical CSR
    base = "H = X[[0, 5, 9]].astype(np.float32)\nref = {m}.recommend(user_items=H, k=6)[0]\n"
    for fmt, conv in (("csr_array", "sp.csr_array(H)"), ("csc", "H.tocsc()"), ("csc_array", "sp.csc_array(H)"),
                      ("coo", "H.tocoo()"), ("coo_array", "sp.coo_array(H)"), ("lil", "H.tolil()"),
                      ("dok", "H.todok()"), ("dia", "H.todia()"), ("bsr", "H.tobsr()"),
                      ("bsr 1x5 blocks", "H.tobsr(blocksize=(1, 5))"),
                      ("int64 indices", "sp.csr_matrix((H.data, H.indices.astype(np.int64), H.indptr.astype(np.int64)), shape=H.shape)"),
                      ("uint32 indices", "sp.csr_matrix((H.data, H.indices.astype(np.uint32), H.indptr.astype(np.uint32)), shape=H.shape)"),
                      ("float64 data", "H.astype(np.float64)"), ("int8 data", "H.astype(np.int8)"),
                      ("bool data", "H.astype(bool)"), ("uint16 data", "H.astype(np.uint16)"),
                      ("dense float64", "H.toarray().astype(np.float64)"), ("dense int", "H.toarray().astype(int)"),
                      ("dense fortran", "np.asfortranarray(H.toarray())"),
                      ("dense strided", "np.repeat(H.toarray(), 2, axis=1)[:, ::2]"),
                      ("dense list", "H.toarray().tolist()"), ("np.matrix", "np.asmatrix(H.toarray())"),
                      ("read-only csr", "(lambda c: ([a.setflags(write=False) for a in (c.data, c.indices, c.indptr)], c)[1])(H.copy())"),
                      ("read-only dense", "(lambda d: (d.setflags(write=False), d)[1])(H.toarray())"),
                      ("unsorted indices", "(lambda c: (c.indices.__setitem__(slice(0, 2), c.indices[:2][::-1].copy()), setattr(c, 'has_sorted_indices', False), c)[2])(H.copy())"),
                      ):
        case(f"{m}.recommend user_items {fmt}", base.format(m=m) + f"H2 = {conv}\n"
             f"got = {m}.recommend(user_items=H2, k=6)[0]\nassert (got == ref).all(), (got, ref)")
    case(f"{m}.recommend user_items memmap",
         base.format(m=m) + "p = os.path.join(tmp, 'mm.dat')\nmm = np.memmap(p, np.float32, 'w+', shape=H.shape)\n"
         f"mm[:] = H.toarray(); mm.flush()\nro = np.memmap(p, np.float32, 'r', shape=H.shape)\n"
         f"got = {m}.recommend(user_items=ro, k=6)[0]\nassert (got == ref).all()")
    case(f"{m}.recommend user_items explicit zeros = absent",
         base.format(m=m) + "z = sp.csr_matrix((np.r_[H.data, 0.0].astype(np.float32), np.r_[H.indices, [j for j in range(n_items) if j not in H[2].indices][0]], "
         "np.r_[H.indptr[:-1], H.nnz + 1]), shape=H.shape)\nz.has_sorted_indices = False\n"
         f"got, sc = {m}.recommend(user_items=z, k=n_items)\nref2, rs = {m}.recommend(user_items=H, k=n_items)\n"
         "assert (got == ref2).all(), (got[2], ref2[2])")
    case(f"{m}.recommend user_items coo duplicates", "H = X[[0]].tocoo()\n"
         "D = sp.coo_matrix((np.r_[H.data, H.data[:1]], (np.r_[H.row, H.row[:1]], np.r_[H.col, H.col[:1]])), shape=H.shape)\n"
         f"{m}.recommend(user_items=D, k=3)", ("ValueError", "duplicate"))
    case(f"{m}.recommend user_items csc duplicates", "H = X[[0]].tocsc()\n"
         "c = H.indptr.copy(); j = int(np.flatnonzero(np.diff(c))[0])\n"
         "D = sp.csc_matrix((np.r_[H.data, 1.0], np.r_[H.indices, 0], np.r_[c[:j + 1], c[j + 1:] + 1]), shape=H.shape)\n"
         "D.has_sorted_indices = False\n"
         f"{m}.recommend(user_items=D, k=3)", ("ValueError", "duplicate"))
    case(f"{m}.recommend user_items all items seen", f"i, s = {m}.recommend(user_items=np.ones((2, n_items)), k=4)\n"
         "assert (i == -1).all() and np.isneginf(s).all()")
    case(f"{m}.recommend user_items empty history, one row",
         f"i, s = {m}.recommend(user_items=sp.csr_matrix((1, n_items)), k=n_items)\nassert (i >= 0).all()\n"
         f"assert sorted(i.ravel().tolist()) == list(range(n_items))")
    case(f"{m}.recommend user_items 0 rows dense",
         f"i, s = {m}.recommend(user_items=np.zeros((0, n_items)), k=3)\nassert i.shape == (0, 3)")
    case(f"{m}.recommend user_items 1-D dense", f"{m}.recommend(user_items=np.zeros(n_items), k=3)",
         ("TypeError", "2-D"))
    case(f"{m}.recommend user_items + brute", f"check({m}, None, X[[3, 8]], k=7, items=[0, 2, 4, 6, 8, 10])")

# --------------------------------------------------------------------------------------------
# fit: explicit zeros, formats, refits of another shape
FIT = {"pop": "aerec.Popularity()", "ease": "aerec.EASE(l2=10.0)",
       "dae": "aerec.MultDAE(hidden=(8,), latent=4, epochs=2, random_state=0)",
       "vae": "aerec.MultVAE(hidden=(8,), latent=4, epochs=2, random_state=0)",
       "cdae": "aerec.CDAE(latent=4, epochs=2, random_state=0)",
       "ari": "aerec.AutoRec(hidden=6, epochs=2, random_state=0)",
       "aru": "aerec.AutoRec(kind='user', hidden=6, epochs=2, random_state=0)"}
for m, make in FIT.items():
    data = "R" if m in ("ari", "aru") else "X"
    case(f"{m}.fit explicit zeros = absent",
         f"T = {data}.copy().tolil(); z = [(u, j) for u in range(n_users) for j in range(n_items) if T[u, j] == 0][:30]\n"
         f"T = {data}.tocoo(); r = np.r_[T.row, [u for u, _ in z]]; c = np.r_[T.col, [j for _, j in z]]\n"
         "v = np.r_[T.data, np.zeros(len(z))].astype(np.float32)\n"
         f"Z = sp.csr_matrix((v, (r, c)), shape=T.shape)\nassert Z.nnz == T.nnz + len(z)\n"
         f"a = {make}.fit(Z); b = {make}.fit({data})\n"
         "assert np.allclose(a.score_items(np.arange(n_users)), b.score_items(np.arange(n_users)), atol=1e-5)")
    case(f"{m}.fit twice, other shape",
         f"mm = {make}.fit({data})\nmm.fit({data}[:20, :15])\ni, s = mm.recommend([0, 19], k=40)\n"
         "assert i.shape == (2, 15) and mm.score_items(0).shape == (15,)\n"
         "assert mm.similar_items(14, k=3)[0].shape == (3,)")
    case(f"{m}.fit memmap read-only dense",
         f"p = os.path.join(tmp, 'fit_{m}.dat'); d = {data}.toarray()\nmm = np.memmap(p, np.float32, 'w+', shape=d.shape); mm[:] = d; mm.flush()\n"
         f"ro = np.memmap(p, np.float32, 'r', shape=d.shape)\na = {make}.fit(ro); b = {make}.fit({data})\n"
         "assert np.allclose(a.score_items(np.arange(5)), b.score_items(np.arange(5)), atol=1e-5)")
    case(f"{m}.fit coo with duplicates", f"T = {data}.tocoo()\n"
         "D = sp.coo_matrix((np.r_[T.data, T.data[:1]], (np.r_[T.row, T.row[:1]], np.r_[T.col, T.col[:1]])), shape=T.shape)\n"
         f"{make}.fit(D)", ("ValueError", "duplicate"))
    case(f"{m}.fit 1 user", f"mm = {make}.fit({data}[:1])\ni, s = mm.recommend(0, k=3)\nassert i.shape == (3,)")
    case(f"{m}.fit 1 item", f"mm = {make}.fit(sp.csr_matrix(np.ones((4, 1), np.float32)))\n"
         "i, s = mm.recommend(0, k=3)\nassert i.tolist() == [-1]")
    case(f"{m}.recommend before fit", f"{make}.recommend(0)", ("RuntimeError", "not fitted"))
    case(f"{m}.score before fit", f"{make}.score_items(0)", ("RuntimeError", "not fitted"))
    case(f"{m}.save before fit", f"{make}.save(os.path.join(tmp, 'x.npz'))", ("RuntimeError", "not fitted"))
    case(f"{m}.save into missing folder", f"{m}.save(os.path.join(tmp, 'no', 'such', 'dir', 'm.npz'))",
         ("FileNotFoundError", "no/such/dir"))
    case(f"{m}.save path without .npz", f"p = os.path.join(tmp, 'noext_{m}')\n{m}.save(p)\n"
         f"l = aerec.load(p)\nassert (l.recommend(0, k=3)[0] == {m}.recommend(0, k=3)[0]).all()")
    case(f"{m}.save pathlib + overwrite while loaded",
         f"p = pathlib.Path(tmp) / 'ow_{m}.npz'\n{m}.save(p)\nl = aerec.load(p)\n{m}.save(p)\nl2 = type({m}).load(p)\n"
         f"assert (l.recommend([0, 1], k=3)[0] == l2.recommend([0, 1], k=3)[0]).all()")
    case(f"{m}.save bytes path", f"p = os.path.join(tmp, 'bytes_{m}.npz').encode()\n{m}.save(p)\naerec.load(p)")
    case(f"{m}.save unwritable", f"{m}.save('/proc/aerec_nope.npz')", ("OSError", "aerec_nope"))

# --------------------------------------------------------------------------------------------
# predict_ratings / encode
case("ari.predict_ratings int8 + scalars",
     "a = ari.predict_ratings(np.array([1, 2], np.int8), np.array([3, 4], np.uint16))\n"
     "b = ari.predict_ratings([1, 2], [3, 4])\nassert np.allclose(a, b)\n"
     "c = ari.predict_ratings(1, 3)\nassert np.ndim(c) == 0 and np.isclose(c, b[0])")
case("aru.predict_ratings empty", "v = aru.predict_ratings([], [])\nassert len(v) == 0")
case("ari.predict_ratings item n_items", "ari.predict_ratings([0], [n_items])", ("IndexError", "item"))
for m in ("dae", "vae", "cdae"):
    case(f"{m}.encode csc + dense agree", f"a = {m}.encode(X[:4].tocsc()); b = {m}.encode(X[:4].toarray())\n"
         "assert np.allclose(a, b)")
    case(f"{m}.encode 0 rows", f"e = {m}.encode(sp.csr_matrix((0, n_items)))\nassert e.shape[0] == 0")

# --------------------------------------------------------------------------------------------
# TopK
case("TopK ip vs reference, read-only fortran queries",
     "qq = np.asfortranarray(np.random.default_rng(1).standard_normal((5, 4)).astype(np.float32)); qq.setflags(write=False)\n"
     "i, s = index.search(qq, 7)\nri, rs = aerec.search.reference_search(items, np.ascontiguousarray(qq), 7)\n"
     "assert (i == ri).all() and np.allclose(s, rs, atol=1e-5)")
case("TopK int queries", "i, s = index.search(np.array([[1, 0, 2, -1]], np.int8), 3)\n"
     "ri, rs = aerec.search.reference_search(items, np.array([[1, 0, 2, -1]], np.float32), 3)\nassert (i == ri).all()")
case("TopK float64 strided items", "it = np.repeat(items.astype(np.float64), 2, axis=1)[:, ::2]\n"
     "i, s = aerec.TopK(it).search(q, 5)\nri, rs = aerec.search.reference_search(items, q, 5)\nassert (i == ri).all()")
case("TopK cosine zero item", "it = items.copy(); it[3] = 0\ni, s = aerec.TopK(it, metric='cosine').search(q, 20)\n"
     "assert np.isfinite(s[i >= 0]).all(), s")
case("TopK cosine zero query", "i, s = aerec.TopK(items, metric='cosine').search(np.zeros((1, 4)), 5)\n"
     "assert np.isfinite(s[i >= 0]).all(), s")
case("TopK exclude csr_array int64", "E = sp.csr_array((np.ones(3), np.array([0, 1, 2], np.int64), np.array([0, 3, 3, 3], np.int64)), shape=(3, 20))\n"
     "i, s = index.search(q, 20, exclude=E)\nassert not set(i[0].tolist()) & {0, 1, 2} and i[0, -3:].tolist() == [-1] * 3")
case("TopK exclude duplicates in a row", "i, s = index.search(q[:1], 20, exclude=[[1, 1, 2]])\n"
     "assert (i[0, -2:] == -1).all() and (i[0, :-2] >= 0).all()")
case("TopK exclude tuple of uint8 arrays", "i, s = index.search(q[:2], 4, exclude=(np.array([1], np.uint8), np.array([], np.uint8)))\n"
     "assert 1 not in i[0].tolist()")
case("TopK exclude coo", "E = sp.coo_matrix((np.ones(2), ([0, 1], [4, 5])), shape=(3, 20))\n"
     "i, s = index.search(q, 20, exclude=E)\nassert 4 not in i[0].tolist() and 5 not in i[1].tolist()")
case("TopK exclude dense bool", "index.search(q, 3, exclude=np.zeros((3, 20), bool))", ("TypeError", "exclude"))
case("TopK int8 close to fp32", "i, s = index_int8.search(q, 5)\nri, rs = index.search(q, 5)\n"
     "assert len(set(i[0].tolist()) & set(ri[0].tolist())) >= 4")
case("TopK bias ip brute", "b = np.linspace(-1, 1, 20).astype(np.float32)\ni, s = aerec.TopK(items, bias=b).search(q, 6)\n"
     "S = q @ items.T + b\nwant = np.argsort(-S, axis=1, kind='stable')[:, :6]\nassert (i == want).all()")
case("TopK save/load unicode path", "p = os.path.join(tmp, 'índex ü.npz')\nindex.save(p)\n"
     "j = aerec.TopK.load(p)\nassert (j.search(q, 3)[0] == index.search(q, 3)[0]).all()")
case("TopK one item", "i, s = aerec.TopK(items[:1]).search(q, 3)\nassert i.shape == (3, 1) and (i == 0).all()")
case("TopK one dim", "i, s = aerec.TopK(items[:, :1]).search(q[:, :1], 2)\nri, rs = aerec.search.reference_search(items[:, :1], q[:, :1], 2)\n"
     "assert np.allclose(s, rs)")
case("TopK queries list 1-D", "i, s = index.search(q[0].tolist(), 3)\nassert i.shape == (3,)")

# --------------------------------------------------------------------------------------------
# dense Autoencoder
case("Autoencoder predict read-only memmap", "p = os.path.join(tmp, 'ae.dat')\nmm = np.memmap(p, np.float32, 'w+', shape=xd.shape); mm[:] = xd; mm.flush()\n"
     "ro = np.memmap(p, np.float32, 'r', shape=xd.shape)\nassert np.allclose(ae.predict(ro), ae.predict(xd))")
case("Autoencoder predict int", "assert np.allclose(ae.predict(np.ones((2, 6), np.int8)), ae.predict(np.ones((2, 6), np.float32)))")
case("Autoencoder encode strided", "a = ae.encode(np.repeat(xd, 2, axis=1)[:, ::2]); b = ae.encode(xd)\nassert np.allclose(a, b)")
case("Autoencoder evaluate before fit", "aerec.Autoencoder().evaluate(xd)", ("RuntimeError", "not fitted"))
case("Autoencoder evaluate wrong width", "ae.evaluate(xd[:, :3])", ("ValueError", "features"))
case("Autoencoder fit other width twice", "a = aerec.Autoencoder(hidden=(4,), random_state=0)\na.fit(xd, epochs=1)\n"
     "a.fit(xd[:, :3], epochs=1)", ("ValueError", "new Autoencoder"))
case("Autoencoder fit y other width", "aerec.Autoencoder(hidden=(4,)).fit(xd, xd[:, :2], epochs=1)", ("ValueError", "features"))
case("Autoencoder get_params round trip", "c = aerec.Autoencoder(**ae.get_params())\nassert c.get_params() == ae.get_params()")
case("Autoencoder save/load no ext", "p = os.path.join(tmp, 'ae_noext')\nae.save(p)\nassert np.allclose(aerec.load(p).predict(xd), ae.predict(xd))")
case("Autoencoder fit 1 row", "aerec.Autoencoder(hidden=(2,)).fit(xd[:1], epochs=1, batch_size=4)")

# --------------------------------------------------------------------------------------------
# metrics against brute-force definitions
MB = r'''
rng = np.random.default_rng(3)
ranked = np.array([rng.permutation(n_items)[:6] for _ in range(8)])
ranked[2, 4:] = -1
HO = X[:8].copy()
HO = sp.csr_matrix(HO); HO = HO.tolil(); HO[5, :] = 0; HO = sp.csr_matrix(HO); HO.eliminate_zeros()
def bf(kind, k):
    vals = []
    for r in range(8):
        rel = set(HO[r].indices.tolist())
        if not rel: continue
        top = [j for j in ranked[r, :k].tolist()]
        hits = [1 if j in rel and j >= 0 else 0 for j in top]
        if kind == 'recall': vals.append(sum(hits) / min(k, len(rel)))
        if kind == 'precision': vals.append(sum(hits) / k)
        if kind == 'hit': vals.append(float(any(hits)))
        if kind == 'ndcg':
            dcg = sum(h / np.log2(i + 2) for i, h in enumerate(hits)); idcg = sum(1 / np.log2(i + 2) for i in range(min(k, len(rel))))
            vals.append(dcg / idcg)
    return float(np.mean(vals))
'''
for kind, fn in (("recall", "recall_at_k"), ("precision", "precision_at_k"), ("hit", "hit_rate_at_k"),
                 ("ndcg", "ndcg_at_k")):
    for k in (3, 6):
        case(f"metrics.{fn} k={k} brute (padding, empty user)", MB + f"v = aerec.metrics.{fn}(ranked, HO, {k})\n"
             f"w = bf({kind!r}, {k})\nassert np.isclose(v, w), (v, w)")
case("metrics k > ranked columns", MB + "a = aerec.metrics.recall_at_k(ranked, HO, 50); b = aerec.metrics.recall_at_k(ranked, HO, 6)\n"
     "p = aerec.metrics.precision_at_k(ranked, HO, 50)\nassert np.isfinite(a) and np.isfinite(p)")
case("metrics all users empty", "v = aerec.metrics.recall_at_k(np.zeros((2, 3), int) + np.arange(3), sp.csr_matrix((2, n_items)), 3)\n"
     "assert v == 0 or np.isnan(v)")
case("metrics ranked uint8 + read-only", MB + "r = ranked.copy(); r[r < 0] = 0\nfor j in range(8):\n    u, ix = np.unique(r[j], return_index=True); r[j] = -1; r[j, :len(u)] = u\n"
     "r8 = r.astype(np.int16); r8.setflags(write=False)\nassert aerec.metrics.ndcg_at_k(r8, HO, 3) == aerec.metrics.ndcg_at_k(r, HO, 3)")
case("metrics ranked list of lists", MB + "assert aerec.metrics.recall_at_k(ranked.tolist(), HO, 3) == aerec.metrics.recall_at_k(ranked, HO, 3)")
case("metrics held_out csr_array", MB + "assert aerec.metrics.recall_at_k(ranked, sp.csr_array(HO), 3) == aerec.metrics.recall_at_k(ranked, HO, 3)")
case("metrics held_out explicit zeros", MB + "C = HO.tocoo(); H2 = sp.csr_matrix((np.r_[C.data, 0.0], (np.r_[C.row, 5], np.r_[C.col, ranked[5, 0]])), shape=HO.shape)\n"
     "assert H2.nnz == HO.nnz + 1\nassert aerec.metrics.recall_at_k(ranked, H2, 3) == aerec.metrics.recall_at_k(ranked, HO, 3)")
case("metrics ranked 0 rows", "v = aerec.metrics.recall_at_k(np.zeros((0, 3), int), sp.csr_matrix((0, n_items)), 3)")
case("metrics rmse int + sparse agree", "a = aerec.metrics.rmse(np.array([1, 2, 3]), np.array([1, 2, 5]))\nassert np.isclose(a, np.sqrt(4 / 3))")
case("metrics rmse sparse different patterns", "A = sp.csr_matrix([[1.0, 0], [0, 2]]); B = sp.csr_matrix([[1.0, 3], [0, 0]])\n"
     "aerec.metrics.rmse(A, B)", ("ValueError", "same"))
case("metrics coverage k", "v = aerec.metrics.coverage(np.array([[0, 1, 2], [3, 4, -1]]), 10, k=2)\nassert np.isclose(v, 4 / 10), v")
case("metrics mrr brute", MB + "v = aerec.metrics.mrr(ranked, HO, 6)\nw = []\nfor r in range(8):\n    rel = set(HO[r].indices.tolist())\n"
     "    if not rel: continue\n    pos = [i for i, j in enumerate(ranked[r, :6].tolist()) if j in rel]\n    w.append(1 / (pos[0] + 1) if pos else 0.0)\n"
     "assert np.isclose(v, np.mean(w)), (v, np.mean(w))")

# --------------------------------------------------------------------------------------------
# evaluate
case("evaluate split with empty test users", "s = aerec.data.random_split(inter, 0.05, random_state=1)\n"
     "r = aerec.evaluate(pop_raw, s, ks=(5,))\nassert r['n_users'] <= s.test.n_users if hasattr(s.test, 'n_users') else True")
case("evaluate EvalSet of 0 users", "from aerec.data import EvalSet\n"
     "e = EvalSet(np.array([], np.int64), sp.csr_matrix((0, n_items), dtype=np.float32), sp.csr_matrix((0, n_items), dtype=np.float32), True)\n"
     "r = aerec.evaluate(pop, e, ks=(5,))\nassert r['n_users'] == 0")
case("evaluate model of other item count", "mm = aerec.Popularity().fit(X[:, :10])\naerec.evaluate(mm, split)",
     ("ValueError", "items"))
case("evaluate ks tuple of numpy ints", "r = aerec.evaluate(pop_raw, split, ks=(np.int64(5), np.uint8(10)))\nassert r['n_users'] > 0")
case("evaluate ks=n_items*10", "r = aerec.evaluate(pop_raw, split, ks=(1000,))\nassert r['n_users'] > 0")

# --------------------------------------------------------------------------------------------
# data: splits on tiny data, readers on odd files, ids
for fn, call in (("random_split", "aerec.data.random_split(d, 0.5, random_state=0)"),
                 ("temporal_split", "aerec.data.temporal_split(d)"),
                 ("kfold_split", "aerec.data.kfold_split(d, 2)"),
                 ("strong split", "aerec.data.strong_generalization_split(d, 1, 1)")):
    # one interaction: random/temporal splits keep it in training (an empty test set); the others refuse
    case(f"{fn} one interaction", "d = Interactions.from_arrays([1], [1], timestamps=[5])\n" + call,
         None if fn in ("random_split", "temporal_split") else ("ValueError", "folds" if fn == "kfold_split" else "training users"))
    case(f"{fn} 3 users x 2 items", "d = Interactions.from_arrays([1, 1, 2, 2, 3, 3], [1, 2, 1, 2, 1, 2], timestamps=[1, 2, 3, 4, 5, 6])\n"
         f"s = {call}\ns = s[0] if isinstance(s, list) else s\n"
         "tr = s.train.to_csr() if hasattr(s.train, 'to_csr') else s.train\nassert tr.nnz > 0")
case("temporal_split tied timestamps deterministic", "d = Interactions.from_arrays([1, 1, 1, 2, 2], [1, 2, 3, 1, 2], timestamps=[5, 5, 5, 7, 7])\n"
     "a = aerec.data.temporal_split(d); b = aerec.data.temporal_split(d)\n"
     "ta = a.test.held_out if hasattr(a.test, 'held_out') else a.test\ntb = b.test.held_out if hasattr(b.test, 'held_out') else b.test\n"
     "assert (sp.csr_matrix(ta) != sp.csr_matrix(tb)).nnz == 0")
case("random_split test_fraction=0", "s = aerec.data.random_split(inter, 0.0, random_state=0)", ("ValueError", "test_fraction"))
case("kfold_split n_folds > interactions", "d = Interactions.from_arrays([1, 2, 3], [1, 2, 3])\naerec.data.kfold_split(d, 5)",
     ("ValueError", "folds"))

RD = "p = os.path.join(tmp, 'r.csv')\nopen(p, 'wb').write({data!r})\n"
for name, data, code, expect in (
        ("headers only", b"user,item,rating\n", "d = Interactions.read_csv(p)\nassert d.nnz == 0", None),
        ("headers only CRLF", b"user,item,rating\r\n", "d = Interactions.read_csv(p)\nassert d.nnz == 0", None),
        ("whitespace only", b"   \n  \n", "Interactions.read_csv(p)", ("ValueError", "empty")),
        ("blank first line", b"\n1,2,3\n", "Interactions.read_csv(p)", ("ValueError", "empty")),
        ("CRLF", b"user,item,rating\r\n1,2,3\r\n2,3,4\r\n", "d = Interactions.read_csv(p)\nassert d.nnz == 2 and set(d.values.tolist()) == {3.0, 4.0}", None),
        ("CRLF no header", b"1,2,3\r\n2,3,4\r\n", "d = Interactions.read_csv(p)\nassert d.nnz == 2 and set(d.values.tolist()) == {3.0, 4.0}", None),
        ("CR only (old Mac)", b"1,2,3\r2,3,4\r", "d = Interactions.read_csv(p)\nassert d.nnz == 2", None),
        ("trailing blank lines", b"1,2,3\n2,3,4\n\n\n", "d = Interactions.read_csv(p)\nassert d.nnz == 2", None),
        ("quoted fields", b'"user","item","rating"\n"a","x","3"\n"b","y","4"\n',
         "d = Interactions.read_csv(p)\nassert d.nnz == 2 and sorted(d.user_map.raw_ids.tolist()) == ['a', 'b']", None),
        ("quoted field with sep", b'user,item,rating\n"a,1",x,3\nb,y,4\n',
         "d = Interactions.read_csv(p)\nassert d.nnz == 2 and 'a,1' in d.user_map.raw_ids.tolist()", None),
        ("NaN id (empty field)", b"user,item,rating\n1,2,3\n,3,4\n5,6,1\n",
         "d = Interactions.read_csv(p)\nassert d.nnz == 2, d.nnz", None),
        ("NaN id raise", b"user,item,rating\n1,2,3\n,3,4\n",
         "Interactions.read_csv(p, on_invalid='raise')", ("ValueError", "on_invalid='drop'")),
        ("mixed-type ids", b"user,item,rating\n1,2,3\nbob,3,4\n",
         "d = Interactions.read_csv(p)\nassert d.n_users == 2 and sorted(map(str, d.user_map.raw_ids.tolist())) == ['1', 'bob']", None),
        ("tab sep with spaces", b"1\t 2\t 3\n2\t3\t4\n", "d = Interactions.read_csv(p, sep='\\t')\nassert d.nnz == 2", None),
        ("semicolon detect", b"1;2;3\n2;3;4\n", "d = Interactions.read_csv(p, sep=None)\nassert d.nnz == 2", None),
        ("float ids 1.0", b"1.0,2.0,3\n2.0,3.0,4\n", "d = Interactions.read_csv(p)\nassert d.nnz == 2", None),
        ("rating NaN text", b"1,2,nan\n2,3,4\n", "d = Interactions.read_csv(p)\nassert d.nnz == 1", None),
        ("utf-16 file", "user,item\n1,2\n".encode("utf-16"), "Interactions.read_csv(p)", ("ValueError", "encoding")),
        ("huge field count", b"1,2," + b",".join([b"3"] * 5000) + b"\n", "d = Interactions.read_csv(p)\nassert d.nnz == 1", None),
        ("duplicate rows", b"1,2,3\n1,2,5\n", "d = Interactions.read_csv(p)\nassert d.nnz == 1", None),
):
    case(f"read_csv {name}", RD.format(data=data) + code, expect)

case("from_arrays NaN user float ids", "d = Interactions.from_arrays(np.array([1.0, np.nan, 2.0]), [1, 2, 3])\nassert d.nnz == 2")
case("from_arrays numpy str + int object", "Interactions.from_arrays(np.array(['a', 1], dtype=object), [1, 2])",
     ("TypeError", "mix"))
case("from_arrays np.str_ ids", "d = Interactions.from_arrays(np.array(['a', 'b']), np.array(['x', 'x']))\nassert d.n_items == 1")
case("from_arrays int8 ids", "d = Interactions.from_arrays(np.array([-1, 5], np.int8), np.array([1, 2], np.uint8))\n"
     "assert sorted(d.user_map.raw_ids.tolist()) == [-1, 5]")
case("from_arrays tuple/range", "d = Interactions.from_arrays(range(3), (4, 5, 6))\nassert d.nnz == 3")
case("from_arrays read-only", "u = np.array([1, 2]); u.setflags(write=False)\nd = Interactions.from_arrays(u, u)\nassert d.nnz == 2")
case("from_arrays None users", "Interactions.from_arrays(None, [1])", ("TypeError", "users"))
case("from_arrays values None elements", "d = Interactions.from_arrays([1, 2], [1, 2], [None, 3.0])\nassert d.nnz == 1")
case("from_csr explicit zeros", "Z = sp.csr_matrix((np.array([1.0, 0.0], np.float32), np.array([0, 1]), np.array([0, 2])), shape=(1, 3))\n"
     "d = Interactions.from_csr(Z)\nassert d.nnz == 1, d.nnz")
case("from_csr csr_array int64", "d = Interactions.from_csr(sp.csr_array(X).astype(np.float64))\nassert d.nnz == X.nnz")
case("from_csr coo duplicates", "T = X.tocoo()\nD = sp.coo_matrix((np.r_[T.data, T.data[:1]], (np.r_[T.row, T.row[:1]], np.r_[T.col, T.col[:1]])), shape=T.shape)\n"
     "d = Interactions.from_csr(D)\nassert d.to_csr().max() <= 1 or d.nnz == X.nnz", None)
case("IdMap mixed np.int64 and str", "IdMap([np.int64(1), 'a'])", ("TypeError", "mix"))
case("IdMap np.str_", "m = IdMap(np.array(['a', 'b']))\nassert m.to_index(['b'])[0] == 1")
case("IdMap to_index scalar", "m = IdMap([10, 20])\nr = m.to_index(20)\nassert int(np.asarray(r).ravel()[0]) == 1")
case("IdMap to_index int vs str", "IdMap([10, 20]).to_index(['10'])", ("KeyError", "unknown raw id"))
case("IdMap to_raw uint8", "assert IdMap([10, 20]).to_raw(np.array([1], np.uint8)).tolist() == [20]")
case("Interactions.user_items duplicates + int8", "a = inter.user_items(np.array([2, 2], np.int8))\nassert a.shape[0] == 2 and (a[0] != a[1]).nnz == 0")
case("Interactions.subset_users bool mask", "s = inter.subset_users(np.arange(n_users) < 5)\nassert s.n_users == 5")
case("Interactions.filter high thresholds", "s = inter.filter(10**6, 10**6)\nassert s.nnz == 0")
case("Interactions.binarize threshold above all", "s = inter_ts.binarize(100.0)", ("ValueError", "without a threshold"))
case("Interactions.binarize ratings threshold above all", "d = Interactions.from_arrays([1, 2], [1, 2], [3.0, 4.0])\n"
     "s = d.binarize(100.0)\nassert s.nnz == 0")

# --------------------------------------------------------------------------------------------
# datasets.synthetic edge sizes
for args, expect in (("n_users=1, n_items=2", ("ValueError", "pass min_user_interactions")),
                     ("n_users=1, n_items=2, min_user_interactions=1", None),
                     ("n_users=2, n_items=2, density=1.0", ("ValueError", "density")),
                     ("n_users=50, n_items=20, density=1e-9", None),
                     ("n_users=10, n_items=10, n_factors=1", None),
                     ("n_users=10, n_items=10, n_factors=100", None), ("n_users=10, n_items=5, density=0.0", ("ValueError", "density"))):
    code = f"d = aerec.datasets.synthetic({args}, random_state=0)\nd = d[0] if isinstance(d, tuple) else d\n" \
           "assert d.n_users >= 1 and d.nnz >= 1"
    case(f"synthetic({args})", code, expect)
case("synthetic same seed same data", "a = aerec.datasets.synthetic(100, 30, random_state=4); b = aerec.datasets.synthetic(100, 30, random_state=4)\n"
     "a = a[0] if isinstance(a, tuple) else a; b = b[0] if isinstance(b, tuple) else b\nassert (a.to_csr() != b.to_csr()).nnz == 0")

# --------------------------------------------------------------------------------------------
# CLI
CLI = "from aerec import cli\nimport contextlib\nbuf = io.StringIO()\nwith contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):\n    rc = cli.main({argv})\n"
case("cli no arguments", CLI.format(argv="[]"), ("SystemExit", "2"))
case("cli info", CLI.format(argv="['info']") + "assert rc in (0, None), buf.getvalue()")
case("cli info missing model file", CLI.format(argv="['info', os.path.join(tmp, 'absent.npz')]")
     + "assert rc == 2 and 'No such file' in buf.getvalue(), buf.getvalue()")
case("cli info two files", CLI.format(argv="['info', 'a.npz', 'b.npz']"), ("SystemExit", "2"))
case("cli recommend k huge", "p = os.path.join(tmp, 'cli_pop2.npz'); pop.save(p)\n" + CLI.format(argv="['recommend', p, '--user', '1', '--k', '100000']")
     + "assert rc == 0, buf.getvalue()")
case("cli recommend user == n_users", "p = os.path.join(tmp, 'cli_pop3.npz'); pop.save(p)\n" + CLI.format(argv="['recommend', p, '--user', str(n_users)]")
     + "assert rc != 0", None)
case("cli recommend not a model", CLI.format(argv="['recommend', files['text'], '--user', '0']") + "assert rc == 2 and 'not an aerec model' in buf.getvalue(), buf.getvalue()")
case("cli recommend directory", CLI.format(argv="['recommend', tmp, '--user', '0']") + "assert rc == 2 and 'directory' in buf.getvalue(), buf.getvalue()")
case("cli evaluate csv path missing", "p = os.path.join(tmp, 'cli_pop4.npz'); pop.save(p)\n" + CLI.format(argv="['evaluate', p, '--data', os.path.join(tmp, 'none.csv')]") + "assert rc == 2, buf.getvalue()")
case("cli demo tiny", CLI.format(argv="['demo', '--users', '30', '--items', '10', '--epochs', '1']") + "assert rc == 0, buf.getvalue()[-500:]")
case("cli --help", CLI.format(argv="['--help']"), ("SystemExit", "0"))



# --------------------------------------------------------------------------------------------
# round 2: backends against each other, more data entry points, pandas (run by a pandas python)
NP_MAKE = {"pop": "aerec.Popularity(backend={b!r})", "ease": "aerec.EASE(l2=10.0, backend={b!r})",
           "dae": "aerec.MultDAE(hidden=(8,), latent=4, epochs=2, random_state=0, backend={b!r})",
           "vae": "aerec.MultVAE(hidden=(8,), latent=4, epochs=2, random_state=0, backend={b!r})",
           "cdae": "aerec.CDAE(latent=4, epochs=2, random_state=0, backend={b!r})",
           "ari": "aerec.AutoRec(hidden=6, epochs=2, random_state=0, backend={b!r})",
           "aru": "aerec.AutoRec(kind='user', hidden=6, epochs=2, random_state=0, backend={b!r})"}
for m, make in NP_MAKE.items():
    data = "R" if m in ("ari", "aru") else "X"
    case(f"{m} cpp vs numpy backend: fit + recommend + similar_items",
         f"a = {make.format(b='cpp')}.fit({data}); b = {make.format(b='numpy')}.fit({data})\n"
         "sa, sb = a.score_items(np.arange(n_users)), b.score_items(np.arange(n_users))\n"
         "assert np.allclose(sa, sb, rtol=1e-3, atol=1e-4), np.abs(sa - sb).max()\n"
         "ia = a.recommend(np.arange(n_users), k=5, items=np.arange(0, n_items, 2), filter_items=[4])[0]\n"
         "ib = b.recommend(np.arange(n_users), k=5, items=np.arange(0, n_items, 2), filter_items=[4])[0]\n"
         "assert (ia == ib).mean() > 0.95 and same_topk(ia, brute(b, np.arange(n_users), k=5, items=np.arange(0, n_items, 2), filter_items=[4]), b, np.arange(n_users))\n"
         "ja = a.similar_items([0, 3], k=5)[0]; jb = b.similar_items([0, 3], k=5)[0]\nassert (ja == jb).mean() > 0.8")
    case(f"{m} set_params(backend='numpy') after fit",
         f"a = {make.format(b='cpp')}.fit({data})\nr1 = a.recommend([0, 1], k=4)[0]\na.set_params(backend='numpy')\n"
         "r2 = a.recommend([0, 1], k=4)[0]\nassert (r1 == r2).all()")
    case(f"{m} set_params bad backend then recommend", f"a = {make.format(b='cpp')}.fit({data})\na.set_params(backend='gpu')\n"
         "a.recommend(0, k=3)", ("ValueError", "backend"))
    case(f"{m} recommend user_ids with a different history",
         f"H = sp.csr_matrix(np.eye(n_items, dtype=np.float32)[[5, 6]])\n"
         f"i, s = {m}.recommend([0, 1], user_items=H, k=n_items)\nassert 5 not in i[0].tolist() and 6 not in i[1].tolist()\n"
         "seen0 = set(X[0].indices.tolist()) - {5}\nassert set(i[0].tolist()) & seen0 or True")
    case(f"{m} score user_items dense list", f"s = {m}.score_items(user_items=np.zeros((2, n_items)).tolist()) if {m}.supports_fold_in else {m}.score_items([0, 1])\n"
         "assert s.shape == (2, n_items) and np.isfinite(s).all()")

# numba installed: the backend resolves (its JIT compile would exceed the 20 s case limit; the
# numba models run in test_recommenders); not installed: the error names numba
case("numba backend (installed or not)", "try:\n    assert aerec.backends.get('numba').NAME == 'numba'\n"
     "except aerec.BackendUnavailableError as e:\n    assert 'numba' in str(e)")
case("set_num_threads(0) default", "aerec.set_num_threads(0)\nassert aerec.get_num_threads() >= 1")
case("recommend_raw items as raw ids", "i, s = pop_raw.recommend_raw('u1', k=3, items=['i3', 'i5', 'i6'])\n"
     "w = pop_raw.recommend(1, k=3, items=[3, 5, 6])[0]\nassert [x for x in i if x is not None] == [f'i{j}' for j in w if j >= 0]")
case("recommend_raw filter_items raw set", "i, s = pop_raw.recommend_raw('u1', k=n_items, filter_items={'i3', 'i5'})\n"
     "assert not {'i3', 'i5'} & set(i.tolist())")
case("recommend_raw items unknown raw", "pop_raw.recommend_raw('u1', k=3, items=['nope'])", ("KeyError", "raw item ids"))
case("recommend_raw numpy str array", "i, s = pop_raw.recommend_raw(np.array(['u1', 'u2']), k=3)\nassert i.shape == (2, 3) and str(i[0, 0]).startswith('i')")
case("recommend_raw tuple", "i, s = pop_raw.recommend_raw(('u1',), k=3)\nassert i.shape == (1, 3)")
case("recommend_raw int id on string map", "pop_raw.recommend_raw([1], k=3)", ("KeyError", "unknown raw id"))
case("recommend_raw k > n_items padding None", "i, s = pop_raw.recommend_raw('u1', k=100)\n"
     "assert len(i) == n_items and (i[s == -np.inf] == None).all()")

# Interactions
case("Interactions.user_items(-1)", "inter.user_items(-1)", ("IndexError", "out of range"))
case("Interactions.subset_users negative", "inter.subset_users([-1])", ("IndexError", "out of range"))
case("Interactions.subset_users order", "s = inter.subset_users([3, 1])\nassert (s.to_csr()[0] != inter.to_csr()[3]).nnz == 0")
case("Interactions.subset_users duplicates", "inter.subset_users([3, 1, 3])", ("ValueError", "np.unique"))
case("from_arrays datetime64 timestamps", "d = Interactions.from_arrays([1, 2], [1, 2], timestamps=np.array(['2020-01-01', '2021-01-01'], 'datetime64[s]'))\n"
     "s = aerec.data.temporal_split(Interactions.from_arrays([1, 1, 1], [1, 2, 3], timestamps=np.array(['2020-01-01', '2021-01-01', '2019-01-01'], 'datetime64[s]')))\nassert s.train.nnz == 2")
case("from_arrays string timestamps", "d = Interactions.from_arrays([1, 2], [1, 2], timestamps=['a', 'b'], on_invalid='raise')", ("ValueError", "timestamp"))
case("from_arrays NaN timestamps dropped", "d = Interactions.from_arrays([1, 2, 3], [1, 2, 3], timestamps=[1.0, np.nan, 3.0])\nassert d.nnz == 2")
case("from_arrays value 0 dropped", "d = Interactions.from_arrays([1, 2], [1, 2], [0.0, 3.0])\nassert d.nnz == 1")
case("from_arrays duplicates='sum'/'last'", "d = Interactions.from_arrays([1, 1], [2, 2], [1.0, 4.0], duplicates='last')\nassert d.to_csr().data.tolist() == [4.0]")
case("from_arrays huge int ids numpy uint64", "d = Interactions.from_arrays(np.array([2**63, 1], np.uint64), [1, 2])\nassert d.n_users == 2")
case("Interactions.filter iterative converges", "d = Interactions.from_arrays([1, 1, 2, 3, 3, 3], [1, 2, 1, 1, 2, 3])\n"
     "f = d.filter(2, 2)\nc = f.to_csr()\nassert (np.diff(c.indptr) >= 2).all() and (np.bincount(c.indices, minlength=c.shape[1]) >= 2).all()")
case("Interactions.binarize threshold keeps >=", "d = Interactions.from_arrays([1, 2, 3], [1, 2, 3], [3.0, 4.0, 5.0])\n"
     "b = d.binarize(4.0)\nassert b.nnz == 2")
case("Interactions.to_arrays raw ids round trip", "a = inter.to_arrays(raw_ids=True)\nd = Interactions.from_arrays(a['users'], a['items'])\n"
     "assert d.nnz == inter.nnz")
case("IdMap subset negative", "IdMap([1, 2]).subset([-1])", ("IndexError", "out of range"))
case("IdMap to_index numpy str array", "m = IdMap(['a', 'b'])\nassert m.to_index(np.array(['b', 'a'])).tolist() == [1, 0]")
case("IdMap float ids to_index int", "m = IdMap([1.0, 2.5])\nassert m.to_index([2.5]).tolist() == [1]")

# EvalSet / evaluate / splits
case("evaluate strong split with item AutoRec (no fold-in)",
     "s = aerec.data.strong_generalization_split(aerec.data.Interactions.from_csr(R), 3, 3, random_state=0)\n"
     "m = aerec.AutoRec(hidden=4, epochs=1).fit(s.train)\naerec.evaluate(m, s)", ("ValueError", "fold"))
case("evaluate known-users split, brute recall", "s = aerec.data.random_split(inter, 0.3, random_state=2)\n"
     "m = aerec.Popularity().fit(s.train)\nr = aerec.evaluate(m, s, ks=(5,), metrics=('recall',))\n"
     "t = s.test\nids = m.recommend(t.users, user_items=t.fold_in, k=5)[0]\n"
     "v = aerec.metrics.recall_at_k(ids, t.held_out, 5)\nassert np.isclose(r['recall@5'], v), (r, v)")
case("evaluate per_user NaN for empty", "s = aerec.data.random_split(inter, 0.2, random_state=0)\n"
     "r = aerec.evaluate(pop_raw, s, ks=(5,), per_user=True)\nv = r['recall@5']\nassert len(v) == s.test.n_users")
case("strong split fold_in_fraction=0", "aerec.data.strong_generalization_split(inter, 2, 2, fold_in_fraction=0.0)", ("ValueError", "fold_in_fraction"))
case("kfold_split folds disjoint + cover", "fs = aerec.data.kfold_split(inter, 3, random_state=0)\n"
     "tot = sum(f.test.held_out.nnz for f in fs)\nassert tot <= inter.nnz")
case("EvalSet users float", "from aerec.data import EvalSet\nEvalSet(np.array([0.5]), X[:1], X[:1], True)", ("TypeError", "integer"))
case("EvalSet fold_in coo duplicates then evaluate", "from aerec.data import EvalSet\nc = X[:2].tocoo()\n"
     "F = sp.coo_matrix((np.r_[c.data, 1.0], (np.r_[c.row, c.row[0]], np.r_[c.col, c.col[0]])), shape=c.shape)\n"
     "e = EvalSet(np.array([0, 1]), F, X[2:4], True)\naerec.evaluate(pop, e, ks=(3,))", ("ValueError", "duplicate"))

# callbacks
case("EarlyStopping monitor missing", "aerec.Autoencoder(hidden=(4,), random_state=0).fit(xd, epochs=3, callbacks=[aerec.EarlyStopping(monitor='val_loss')])",
     ("ValueError", "pass validation data"))
case("EvalSet users 0-d", "from aerec.data import EvalSet\nEvalSet(np.int64(0), X[:1], X[:1], True)", ("ValueError", "1-D"))
case("EvalSet users empty list", "from aerec.data import EvalSet\ne = EvalSet([], X[:0], X[:0], True)\nassert e.n_users == 0")
case("LambdaCallback raising propagates", "aerec.Autoencoder(hidden=(4,)).fit(xd, epochs=2, callbacks=[aerec.LambdaCallback(on_epoch_end=lambda e, logs: 1 / 0)])",
     ("ZeroDivisionError", ""))
case("callbacks plain function", "seen = []\naerec.Autoencoder(hidden=(4,)).fit(xd, epochs=2, callbacks=[lambda e, logs: seen.append(e)])\nassert seen == [0, 1]")
case("MultDAE validation of other item count", "s = aerec.data.random_split(aerec.data.Interactions.from_csr(X[:, :10]), 0.3, random_state=0)\n"
     "aerec.MultDAE(latent=4, epochs=1).fit(X, validation=s.test)", ("ValueError", "items"))

# Autoencoder masked_mse
case("Autoencoder masked_mse all-zero mask", "a = aerec.Autoencoder(hidden=(4,), loss='masked_mse', random_state=0)\n"
     "a.fit(xd, epochs=1, mask=np.zeros_like(xd))\nassert all(np.isfinite(v).all() for v in a.get_weights())")
case("Autoencoder masked_mse bool mask", "a = aerec.Autoencoder(hidden=(4,), loss='masked_mse', random_state=0)\n"
     "a.fit(xd, epochs=1, mask=xd > 0.5)")
case("Autoencoder mask NaN", "a = aerec.Autoencoder(hidden=(4,), loss='masked_mse')\nm = np.ones_like(xd); m[0, 0] = np.nan\na.fit(xd, mask=m)", ("ValueError", "NaN"))
case("Autoencoder mask wrong shape", "aerec.Autoencoder(hidden=(4,), loss='masked_mse').fit(xd, mask=np.ones((3, 6)))", ("ValueError", "mask"))
case("Autoencoder validation tuple with mask", "a = aerec.Autoencoder(hidden=(4,), loss='masked_mse', random_state=0)\n"
     "a.fit(xd, epochs=1, validation_data=(xd, xd, np.ones_like(xd)))\nassert 'val_loss' in a.history_ if hasattr(a, 'history_') else True")
case("Autoencoder evaluate = loss", "v = ae.evaluate(xd)\nassert np.isfinite(v)")

# TopK numerics
case("TopK huge magnitudes ip", "it = items * 1e18\ni, s = aerec.TopK(it).search(q, 5)\nri, rs = aerec.search.reference_search(it, q, 5)\n"
     "assert (i == ri).all() and np.isfinite(s).all()")
case("TopK overflow to inf", "it = items.copy(); it[0] = 3e38\ni, s = aerec.TopK(it).search(np.ones((1, 4)), 3)\n"
     "assert 0 in i[0].tolist() or not np.isfinite(s).all()")
case("TopK int8 zero item cosine", "it = items.copy(); it[2] = 0\ni, s = aerec.TopK(it, metric='cosine', precision='int8').search(q, 20)\n"
     "assert np.isfinite(s[i >= 0]).all()")
case("TopK int8 constant items", "it = np.ones((10, 4), np.float32)\ni, s = aerec.TopK(it, precision='int8').search(q, 3)\nassert (i >= 0).all()")
case("TopK exclude list with None rows", "i, s = index.search(q, 3, exclude=[None, [1], None])\nassert 1 not in i[1].tolist()")
case("TopK memory_usage", "assert index.memory_usage() > 0")
case("TopK search k numpy uint8", "i, s = index.search(q, np.uint8(3))\nassert i.shape == (3, 3)")

# readers / movielens
case("movielens ml-100k loads", "d = aerec.datasets.movielens('ml-100k', path=os.environ.get('AEREC_DATA', '/work/shared/data') + '/ml-100k', download=False)\n"
     "d = d[0] if isinstance(d, tuple) else d\nassert getattr(d, 'nnz', None) or True")
case("movielens empty folder", "e = os.path.join(tmp, 'ml-empty'); os.makedirs(e, exist_ok=True)\n"
     "aerec.datasets.movielens('ml-100k', path=e, download=False)", ("FileNotFoundError", "not found"))
case("movielens headers-only u.data", "e = os.path.join(tmp, 'ml-100k-bad'); os.makedirs(e, exist_ok=True)\nopen(os.path.join(e, 'u.data'), 'w').write('')\n"
     "aerec.datasets.movielens('ml-100k', path=e, download=False)", ("ValueError", "empty"))
case("read_csv columns dict", "p = os.path.join(tmp, 'cd.csv'); open(p, 'w').write('ts,item,user\\n5,a,u\\n6,b,v\\n')\n"
     "d = Interactions.read_csv(p, columns={'user': 'user', 'item': 'item', 'timestamp': 'ts'})\nassert d.n_users == 2 and d.timestamps is not None")
case("read_csv ISO timestamps", "p = os.path.join(tmp, 'iso.csv'); open(p, 'w').write('user,item,rating,timestamp\\n1,2,3,2020-01-01\\n2,3,4,2021-05-05\\n')\n"
     "d = Interactions.read_csv(p)\nassert d.nnz == 2")
case("read_csv pathlib + sep multi '::'", "p = pathlib.Path(tmp) / 'ml.dat'; p.write_text('1::2::3::4\\n2::3::4::5\\n')\nd = Interactions.read_csv(p, sep='::')\nassert d.nnz == 2")
case("read_csv directory", "Interactions.read_csv(tmp)", ("IsADirectoryError", "is a directory"))

# CLI
case("cli train csv", "p = os.path.join(tmp, 'cli.csv'); rng = np.random.default_rng(0)\n"
     "open(p, 'w').write('user,item,rating\\n' + ''.join(f'{u},{i},1\\n' for u in range(60) for i in rng.choice(30, 8, replace=False)))\n"
     + CLI.format(argv="['train', '--model', 'Popularity', '--data', p, '--heldout-users', '5', '--epochs', '1']") + "assert rc == 0, buf.getvalue()[-800:]")
case("cli train --output missing dir", CLI.format(argv="['train', '--model', 'Popularity', '--users', '60', '--items', '20', '--density', '0.3', '--heldout-users', '5', '--output', os.path.join(tmp, 'no', 'dir', 'm.npz')]")
     + "assert rc == 2 and 'no/dir' in buf.getvalue(), buf.getvalue()[-500:]")
case("cli evaluate model of other items", "p = os.path.join(tmp, 'cli_pop5.npz'); pop.save(p)\n"
     + CLI.format(argv="['evaluate', p, '--users', '60', '--items', '30', '--density', '0.3', '--heldout-users', '5']")
     + "assert rc == 2 and 'items' in buf.getvalue(), buf.getvalue()[-500:]")

# pandas (these run under a python with pandas: /tmp/pdenv)
PD = "import pandas as pd\n"
case("pandas: recommend user_ids Series", PD + "a = pop.recommend(pd.Series([3, 1]), k=4)[0]\nassert (a == pop.recommend([3, 1], k=4)[0]).all()")
case("pandas: recommend user_ids Index", PD + "a = ease.recommend(pd.Index([3, 1]), k=4)[0]\nassert (a == ease.recommend([3, 1], k=4)[0]).all()")
case("pandas: recommend items nullable Int64", PD + "a = pop.recommend(0, k=3, items=pd.array([3, 9, 1], dtype='Int64'))[0]\n"
     "assert (a == pop.recommend(0, k=3, items=[3, 9, 1])[0]).all()")
case("pandas: user_ids Series with NA", PD + "pop.recommend(pd.array([1, None], dtype='Int64'), k=3)", ("TypeError", "missing id"))
case("pandas: Autoencoder DataFrame", PD + "df = pd.DataFrame(xd)\nassert np.allclose(ae.predict(df), ae.predict(xd))")
case("pandas: DataFrame user_items", PD + "df = pd.DataFrame(dense[:2])\na = ease.recommend(user_items=df, k=3)[0]\n"
     "assert (a == ease.recommend(user_items=dense[:2], k=3)[0]).all()")
case("pandas: from_dataframe categorical + NaN", PD + "df = pd.DataFrame({'user': pd.Categorical(['a', 'b', None]), 'item': [1, 2, 3], 'rating': [1.0, 2.0, 3.0]})\n"
     "d = Interactions.from_dataframe(df)\nassert d.nnz == 2")
case("pandas: from_dataframe nullable ints", PD + "df = pd.DataFrame({'user': pd.array([1, 2, None], dtype='Int64'), 'item': [1, 2, 3]})\n"
     "d = Interactions.from_dataframe(df)\nassert d.nnz == 2")
case("pandas: from_dataframe datetime timestamps", PD + "df = pd.DataFrame({'user': [1, 1, 2], 'item': [1, 2, 3], 'timestamp': pd.to_datetime(['2020-01-01', '2020-02-01', '2020-03-01'])})\n"
     "d = Interactions.from_dataframe(df)\ns = aerec.data.temporal_split(d)\nassert s.train.nnz >= 1")
case("pandas: from_dataframe tz-aware timestamps", PD + "df = pd.DataFrame({'user': [1, 1], 'item': [1, 2], 'timestamp': pd.to_datetime(['2020-01-01', '2020-02-01']).tz_localize('UTC')})\n"
     "d = Interactions.from_dataframe(df)\nassert d.nnz == 2")
case("pandas: from_dataframe empty", PD + "d = Interactions.from_dataframe(pd.DataFrame({'user': [], 'item': []}))\nassert d.nnz == 0")
case("pandas: from_dataframe mixed object ids", PD + "Interactions.from_dataframe(pd.DataFrame({'user': [1, 'a'], 'item': [1, 2]}))", ("TypeError", "mix"))
case("pandas: read_csv CRLF quoted NaN", PD + "p = os.path.join(tmp, 'pd.csv'); open(p, 'wb').write(b'\"user\",\"item\",\"rating\"\\r\\n\"a\",1,3\\r\\n,2,4\\r\\n\"c\",3,5\\r\\n')\n"
     "d = Interactions.read_csv(p)\nassert d.nnz == 2 and sorted(d.user_map.raw_ids.tolist()) == ['a', 'c']")
case("pandas: read_csv headers only", PD + "p = os.path.join(tmp, 'pdh.csv'); open(p, 'w').write('user,item,rating\\n')\nd = Interactions.read_csv(p)\nassert d.nnz == 0")
case("pandas: read_csv mixed ids", PD + "p = os.path.join(tmp, 'pdm.csv'); open(p, 'w').write('user,item\\n1,2\\nbob,3\\n')\nd = Interactions.read_csv(p)\nassert d.n_users == 2")
case("pandas: metrics ranked DataFrame", PD + "r = pd.DataFrame(np.array([[0, 1], [2, 3], [4, 5]]))\nassert aerec.metrics.recall_at_k(r, X[:3], 2) == aerec.metrics.recall_at_k(r.to_numpy(), X[:3], 2)")


# --------------------------------------------------------------------------------------------
# round 3: returned arrays, degenerate training data, methods before fit
for m in MODELS:
    data = "R" if m in ("ari", "aru") else "X"
    case(f"{m}.score returns a writable float32 array", f"s = {m}.score_items([0, 1])\nassert s.dtype == np.float32 and s.shape == (2, n_items)\n"
         "s[0, 0] = -np.inf\nassert s[1, 0] != -np.inf or True")
    case(f"{m}.score rows independent", f"s = {m}.score_items([0, 1])\ns[0] = 0\nt = {m}.score_items([1])\nassert np.allclose(s[1], t[0], atol=1e-6) and not np.shares_memory(s, t)")
    case(f"{m}.recommend arrays writable", f"i, s = {m}.recommend([0, 1], k=3)\ni[0, 0] = 7; s[0, 0] = 1.0")
    case(f"{m}.similar_items k=1", f"i, s = {m}.similar_items(3, k=1)\nassert i.shape == (1,) and i[0] != 3")
    case(f"{m}.item_vectors before fit", f"{FIT[m]}.item_vectors()", ("RuntimeError", "not fitted"))
    case(f"{m}.similar_items before fit", f"{FIT[m]}.similar_items(0)", ("RuntimeError", "not fitted"))
    case(f"{m}.recommend_raw before fit", f"{FIT[m]}.recommend_raw('u1')", ("RuntimeError", "not fitted"))
    case(f"{m}.fit empty rows and columns", f"T = {data}.tolil(); T[3, :] = 0; T[:, 7] = 0; T = sp.csr_matrix(T); T.eliminate_zeros()\n"
         f"mm = {FIT[m]}.fit(T)\ns = mm.score_items(np.arange(n_users))\nassert np.isfinite(s).all()\n"
         "i, sc = mm.recommend([3], k=n_items)\nassert (i[0] >= 0).sum() == n_items\n"
         "j, js = mm.similar_items(7, k=5)\nassert np.isfinite(js[j >= 0]).all(), js\n"
         "j2, js2 = mm.similar_items(0, k=n_items)\nassert np.isfinite(js2[j2 >= 0]).all(), js2")
    case(f"{m}.fit identical columns", f"T = {data}.toarray(); T[:, 1] = T[:, 0]; mm = {FIT[m]}.fit(sp.csr_matrix(T))\n"
         "assert np.isfinite(mm.score_items(np.arange(n_users))).all()")
case("ease tiny l2 singular gram float32", "T = X.toarray(); T[:, 1] = T[:, 0]\nassert np.isfinite(aerec.EASE(l2=1e-30).fit(sp.csr_matrix(T)).score_items([0])).all()")
case("ease tiny l2 singular gram float64", "T = X.toarray(); T[:, 1] = T[:, 0]\naerec.EASE(l2=1e-30, dtype='float64').fit(sp.csr_matrix(T))", ("ValueError", "raise l2"))
case("predict_ratings before fit", "aerec.AutoRec().predict_ratings([0], [0])", ("RuntimeError", "not fitted"))
case("Autoencoder get_weights before fit", "aerec.Autoencoder().get_weights()", ("RuntimeError", "not fitted"))
case("Autoencoder set_weights before fit", "aerec.Autoencoder().set_weights(ae.get_weights())", ("RuntimeError", "not fitted"))
case("Autoencoder save before fit", "aerec.Autoencoder().save(os.path.join(tmp, 'ae0.npz'))", ("RuntimeError", "not fitted"))
case("Autoencoder predict returns writable", "p = ae.predict(xd)\np[0, 0] = 1.0")
case("ranking_metrics ks unsorted dup", "r = aerec.metrics.ranking_metrics(np.array([[0, 1, 2]] * 3), X[:3], ks=(3, 1, 3))\nassert 'recall@1' in r and 'recall@3' in r")
case("evaluate ks duplicates", "r = aerec.evaluate(pop_raw, split, ks=(5, 5))\nassert 'recall@5' in r")
case("random_split Generator", "g = np.random.default_rng(0)\na = aerec.data.random_split(inter, 0.2, random_state=g)\nassert a.test.held_out.nnz > 0")
case("from_arrays bool values", "d = Interactions.from_arrays([1, 2], [1, 2], np.array([True, False]))\nassert d.nnz == 1")
case("from_arrays int values", "d = Interactions.from_arrays([1, 2], [1, 2], np.array([3, 5], np.int8))\nassert d.values.tolist() == [3.0, 5.0]")
case("synthetic return_truth", "r = aerec.datasets.synthetic(100, 30, random_state=0, return_truth=True)\nassert isinstance(r, tuple) and len(r) == 2")
case("cli recommend duplicate users", "p = os.path.join(tmp, 'cli_pop6.npz'); pop.save(p)\n" + CLI.format(argv="['recommend', p, '--user', '1', '1', '2']") + "assert rc == 0, buf.getvalue()")
case("load TopK via aerec.load", "p = os.path.join(tmp, 'tk.npz'); index.save(p)\nassert isinstance(aerec.load(p), aerec.TopK)")
case("MultVAE clone via get_params then fit", "c = aerec.MultVAE(**vae.get_params()).set_params(epochs=1)\nc.fit(X)\nassert c.recommend(0, k=3)[0].shape == (3,)")
case("set_params invalid value then fit", "aerec.MultDAE().set_params(latent=-1, epochs=1).fit(X)", ("ValueError", "latent"))
case("set_params returns self", "m = aerec.EASE()\nassert m.set_params(l2=5.0) is m and m.l2 == 5.0")


# --------------------------------------------------------------------------------------------
# round 4: memory layouts of sparse components (strided, big-endian, odd index widths)
SPARSE_VARIANTS = (
    ("strided data", "c = H.copy(); c.data = np.repeat(c.data, 2)[::2]; c"),
    ("strided indices", "c = H.copy(); c.indices = np.repeat(c.indices, 2)[::2]; c"),
    ("strided indptr", "c = H.copy(); c.indptr = np.repeat(c.indptr, 2)[::2]; c"),
    ("big-endian data", "c = H.copy(); c.data = c.data.astype('>f4'); c"),
    ("big-endian indices", "c = H.copy(); c.indices = c.indices.astype('>i4'); c.indptr = c.indptr.astype('>i4'); c"),
    ("big-endian float64 data", "c = H.copy(); c.data = c.data.astype('>f8'); c"),
    ("int8 indices", "c = H.copy(); c.indices = c.indices.astype(np.int8); c"),
    ("uint64 indices", "c = H.copy(); c.indices = c.indices.astype(np.uint64); c.indptr = c.indptr.astype(np.uint64); c"),
    ("int16 indptr", "c = H.copy(); c.indptr = c.indptr.astype(np.int16); c"),
    ("coo strided big-endian", "c = H.tocoo(); c.row = np.repeat(c.row, 2)[::2].astype('>i8'); c.col = c.col.astype('>i4'); c.data = c.data.astype('>f4'); c"),
    ("csc big-endian", "c = H.tocsc(); c.data = c.data.astype('>f4'); c.indices = c.indices.astype('>i4'); c"),
)
for m in FOLD:
    for name, build in SPARSE_VARIANTS:
        hist = "R" if m in ("ari", "aru") else "X"
        code = (f"H = {hist}[[0, 5, 9]].astype(np.float32)\nref = {m}.recommend(user_items=H, k=6)\n"
                f"exec({build.rsplit('; ', 1)[0]!r})\nc = {build.rsplit('; ', 1)[1]}\n"
                f"got = {m}.recommend(user_items=c, k=6)\nassert (got[0] == ref[0]).all() and np.allclose(got[1], ref[1]), (got, ref)\n"
                f"assert np.allclose({m}.score_items(user_items=c), {m}.score_items(user_items=H))")
        case(f"{m}.recommend user_items {name}", code)
for name, build in SPARSE_VARIANTS[:6]:
    case(f"pop.fit {name}", f"H = X.copy()\nexec({build.rsplit('; ', 1)[0]!r})\nc = {build.rsplit('; ', 1)[1]}\n"
         "a = aerec.Popularity().fit(c)\nassert np.array_equal(a.item_counts_, pop.item_counts_)")
    case(f"dae.fit {name}", f"H = X.copy()\nexec({build.rsplit('; ', 1)[0]!r})\nc = {build.rsplit('; ', 1)[1]}\n"
         "mk = lambda: aerec.MultDAE(hidden=(8,), latent=4, epochs=1, random_state=0)\n"
         "assert np.allclose(mk().fit(c).score_items([0, 1]), mk().fit(X).score_items([0, 1]), atol=1e-6)")
    case(f"ari.fit {name}", f"H = R.copy()\nexec({build.rsplit('; ', 1)[0]!r})\nc = {build.rsplit('; ', 1)[1]}\n"
         "mk = lambda: aerec.AutoRec(hidden=4, epochs=1, random_state=0)\n"
         "assert np.allclose(mk().fit(c).score_items([0, 1]), mk().fit(R).score_items([0, 1]), atol=1e-6)")
    case(f"TopK exclude {name}", f"H = sp.csr_matrix((np.ones(4, np.float32), np.array([1, 2, 5, 7]), np.array([0, 2, 3, 4])), shape=(3, 20))\n"
         f"exec({build.rsplit('; ', 1)[0]!r})\nc = {build.rsplit('; ', 1)[1]}\n"
         "a = index.search(q, 20, exclude=c)[0]; b = index.search(q, 20, exclude=H)[0]\nassert (a == b).all()")
    case(f"metrics held_out {name}", f"H = X[:8].copy()\nexec({build.rsplit('; ', 1)[0]!r})\nc = {build.rsplit('; ', 1)[1]}\n"
         "r = np.tile(np.arange(6), (8, 1))\nassert aerec.metrics.ndcg_at_k(r, c, 6) == aerec.metrics.ndcg_at_k(r, X[:8], 6)")
    case(f"from_csr {name}", f"H = X.copy()\nexec({build.rsplit('; ', 1)[0]!r})\nc = {build.rsplit('; ', 1)[1]}\n"
         "assert (Interactions.from_csr(c).to_csr() != Interactions.from_csr(X).to_csr()).nnz == 0")
case("1-D sparse array user_items", "pop.recommend(user_items=sp.coo_array(np.ones(n_items)), k=3)", ("ValueError", "2-D"))
case("big-endian dense everywhere", "a = ae.predict(xd.astype('>f8')); assert np.allclose(a, ae.predict(xd))\n"
     "i = aerec.TopK(items.astype('>f4')).search(q.astype('>f8'), 3)[0]; assert (i == index.search(q, 3)[0]).all()\n"
     "u = pop.recommend(np.array([1, 2], '>i8'), k=3)[0]; assert (u == pop.recommend([1, 2], k=3)[0]).all()\n"
     "r = np.array([[0, 1], [2, 3], [4, 5]], '>i4'); assert aerec.metrics.recall_at_k(r, X[:3], 2) == aerec.metrics.recall_at_k(r.astype(int), X[:3], 2)")
case("recommend training matrix + permuted all ids",
     "ids = np.arange(n_users)[::-1].copy()\na = pop.recommend(ids, user_items=X, k=3)[0]\n"
     "assert (a == pop.recommend(ids, k=3)[0]).all()")


# --------------------------------------------------------------------------------------------
# round 5 (written after the fixes, run before looking at any result): invariants against brute force
case("recommend k=1 ties by lower id (Popularity)", "i, s = pop.recommend(np.arange(n_users), k=1)\n"
     "for u in range(n_users):\n    c = pop.item_counts_.copy(); c[X[u].indices] = -np.inf\n"
     "    assert i[u, 0] == int(np.flatnonzero(c == c.max())[0]), (u, i[u])")
case("AutoRec predict_ratings == score entries", "u = np.array([0, 3, 7]); it = np.array([1, 4, 9])\n"
     "for mm in (ari, aru):\n    p = mm.predict_ratings(u, it); s = mm.score_items(u)\n"
     "    assert np.allclose(p, s[np.arange(3), it], atol=1e-5) or True")
case("DAE encode(user_ids) == encode(train rows)", "a = dae.encode(None, user_ids=[1, 2]); b = dae.encode(X[[1, 2]])\nassert np.allclose(a, b, atol=1e-6)")
case("CDAE encode known vs folded differ only by embedding", "a = cdae.encode(None, user_ids=[1]); b = cdae.encode(X[[1]])\nassert a.shape == b.shape")
case("save/load recommend_raw identical", "p = os.path.join(tmp, 'raw.npz'); pop_raw.save(p)\nl = aerec.load(p)\n"
     "a = l.recommend_raw(['u1', 'u7'], k=5, filter_items=['i2']); b = pop_raw.recommend_raw(['u1', 'u7'], k=5, filter_items=['i2'])\n"
     "assert (a[0] == b[0]).all() and np.array_equal(a[1], b[1])")
case("EASE float64 vs float32 top-5 agree", "a = aerec.EASE(l2=10.0, dtype='float64').fit(X)\n"
     "assert (a.recommend(np.arange(n_users), k=5)[0] == ease.recommend(np.arange(n_users), k=5)[0]).mean() > 0.95")
case("evaluate batch_size=1 == default", "a = aerec.evaluate(pop_raw, split, ks=(3, 10), batch_size=1); b = aerec.evaluate(pop_raw, split, ks=(3, 10))\n"
     "assert all(np.isclose(a[k], b[k]) for k in b)")
case("Autoencoder predict batch_size=1 == full", "assert np.allclose(ae.predict(xd, batch_size=1), ae.predict(xd), atol=1e-6)")
case("map_at_k brute", "rng = np.random.default_rng(5); r = np.array([rng.permutation(n_items)[:5] for _ in range(10)])\n"
     "v = aerec.metrics.map_at_k(r, X[:10], 5)\nw = []\nfor u in range(10):\n    rel = set(X[u].indices.tolist()); h = [j in rel for j in r[u]]\n"
     "    ap = sum(sum(h[:i + 1]) / (i + 1) for i in range(5) if h[i]) / min(5, len(rel))\n    w.append(ap)\n"
     "assert np.isclose(v, np.mean(w)), (v, np.mean(w))")
case("hits_at_k shape and values", "r = np.array([[0, 1, 2], [3, 4, -1]])\nh = aerec.metrics.hits_at_k(r, X[:2], 2)\n"
     "assert h.shape == (2, 2) and h[0, 0] == (0 in X[0].indices)")
case("coverage k=None", "v = aerec.metrics.coverage(np.array([[0, 1], [1, 2]]), 4)\nassert np.isclose(v, 0.75)")
case("random_split partitions interactions", "s = aerec.data.random_split(inter, 0.3, random_state=3)\nt = s.test\n"
     "tot = s.train.nnz + t.held_out.nnz\nfull = inter.to_csr()\n"
     "assert tot == inter.nnz or s.train.nnz + t.held_out.nnz + t.fold_in.nnz >= inter.nnz")
case("temporal_split holds out the latest", "d = Interactions.from_arrays([1, 1, 1, 2, 2], [1, 2, 3, 1, 2], timestamps=[3, 9, 5, 2, 1])\n"
     "s = aerec.data.temporal_split(d)\nho = s.test.held_out\nraw_items = d.item_map.raw_ids\n"
     "got = {int(d.user_map.raw_ids[s.test.users[r]]): int(raw_items[ho[r].indices[0]]) for r in range(ho.shape[0]) if ho[r].nnz}\n"
     "assert got.get(1) == 2 and got.get(2, 1) == 1, got")
case("kfold each interaction tested once", "fs = aerec.data.kfold_split(inter, 4, random_state=1)\n"
     "assert sum(f.test.held_out.nnz for f in fs) == inter.nnz or sum(f.test.held_out.nnz for f in fs) <= inter.nnz")
case("strong split users disjoint", "s = aerec.data.strong_generalization_split(inter, 3, 4, random_state=0)\n"
     "assert s.train.n_users + s.test.n_users + s.validation.n_users <= inter.n_users\nassert not s.test.known_users")
case("from_arrays duplicates='sum' brute", "d = Interactions.from_arrays([1, 1, 2], [5, 5, 5], [1.0, 2.0, 4.0], duplicates='sum')\n"
     "assert sorted(d.to_csr().data.tolist()) == [3.0, 4.0]")
case("from_arrays duplicates='first' with timestamps", "d = Interactions.from_arrays([1, 1], [5, 5], [1.0, 2.0], timestamps=[9, 3], duplicates='first')\n"
     "assert d.to_csr().data.tolist() == [2.0], d.to_csr().data")
case("filter non-iterative", "d = Interactions.from_arrays([1, 1, 2, 3, 3, 3], [1, 2, 1, 1, 2, 3])\nf = d.filter(2, 1, iterative=False)\nassert f.n_users == 2 or f.nnz == 5")
case("reference_search cosine == TopK cosine", "a = aerec.search.reference_search(items, q, 5, metric='cosine')\n"
     "b = aerec.TopK(items, metric='cosine').search(q, 5)\nassert (a[0] == b[0]).all() and np.allclose(a[1], b[1], atol=1e-5)")
case("reference_search exclude == TopK exclude", "ex = [[0, 1], [], [5]]\na = aerec.search.reference_search(items, q, 5, exclude=ex)\n"
     "b = index.search(q, 5, exclude=ex)\nassert (a[0] == b[0]).all()")
case("TopK bias+prune save/load", "t = aerec.TopK(items, bias=np.linspace(0, 1, 20).astype(np.float32), prune=True)\np = os.path.join(tmp, 'tkb.npz'); t.save(p)\n"
     "u = aerec.TopK.load(p)\nassert (u.search(q, 4)[0] == t.search(q, 4)[0]).all()")
case("show_config to StringIO", "b = io.StringIO(); aerec.show_config(file=b)\nassert len(b.getvalue()) > 0")
case("MultVAE early stopping best_epoch", "s = aerec.data.strong_generalization_split(inter, 4, 4, random_state=0)\n"
     "m = aerec.MultVAE(hidden=(8,), latent=4, epochs=3, random_state=0).fit(s.train, validation=s, early_stopping=1)\n"
     "assert hasattr(m, 'best_epoch_')")
case("IdMap to_raw(to_index) roundtrip big ints", "m = IdMap([2**63 + 5, 7, 2**64 - 1])\nassert m.to_raw(m.to_index([7, 2**64 - 1])).tolist() == [7, 2**64 - 1]")
case("read_csv numeric-looking header", "p = os.path.join(tmp, 'nh.csv'); open(p, 'w').write('1,2,3\\n4,5,6\\n')\nd = Interactions.read_csv(p)\nassert d.nnz == 2")
case("read_csv header=True numeric names", "p = os.path.join(tmp, 'nh2.csv'); open(p, 'w').write('1,2,3\\n4,5,6\\n')\nd = Interactions.read_csv(p, header=True)",
     ("KeyError", "columns="))
case("read_csv header=True numeric names, positions", "p = os.path.join(tmp, 'nh3.csv'); open(p, 'w').write('1,2,3\\n4,5,6\\n')\nd = Interactions.read_csv(p, header=True, columns=[0, 1, 2])\nassert d.nnz == 1")
case("recommend filter_seen=np.False_", "i, s = pop.recommend(0, k=n_items, filter_seen=np.False_)\nassert (i >= 0).all()")
case("similar_items filter_self=False includes self first for cosine", "i, s = ease.similar_items(3, k=2, filter_self=False)\nassert i[0] == 3 or np.isclose(s[0], s[1])")
case("recommend user_items with values >1 == binary for DAE", "H = X[[1, 2]].copy(); H.data = H.data * 5\n"
     "assert (dae.recommend(user_items=H, k=5)[0] == dae.recommend(user_items=X[[1, 2]], k=5)[0]).all()")

# --------------------------------------------------------------------------------------------
RUNNER = r'''
import json, signal, sys, traceback
sys.path.insert(0, {here!r})
exec({prelude!r}, globals())
import sweep_independent as S
table = {{c[0]: c for c in S.CASES}}
class Hang(BaseException): pass
def alarm(*a): raise Hang()
signal.signal(signal.SIGALRM, alarm)
for cid in sys.argv[1:]:
    print(json.dumps({{"start": cid}}), flush=True)
    ns = dict(globals())
    signal.alarm(20)
    try:
        exec(table[cid][1], ns)
        rec = dict(outcome="ok")
    except Hang:
        rec = dict(outcome="hang")
    except BaseException as e:
        rec = dict(outcome="raised", exc=type(e).__name__, mro=[k.__name__ for k in type(e).__mro__],
                   msg=str(e)[:600], tb=traceback.format_exc(limit=6)[-1200:])
    finally:
        signal.alarm(0)
    rec["id"] = cid
    print(json.dumps(rec), flush=True)
'''

UNCLEAR = {"KeyError", "AttributeError", "IndexError", "TypeError", "ValueError", "ZeroDivisionError",
           "RuntimeError", "UnboundLocalError", "NameError", "OverflowError", "FloatingPointError"}


def classify(case_, rec):
    cid, code, expect = case_
    if rec is None:
        return "crash", "process died"
    if rec["outcome"] == "hang":
        return "hang", ""
    if expect is None:
        if rec["outcome"] == "ok":
            return "ok", ""
        if rec["exc"] == "AssertionError":
            return "silent wrong", rec["msg"] or rec["tb"]
        return "unclear error", f"{rec['exc']}: {rec['msg']}"  # valid input refused
    exc, frag = expect
    if rec["outcome"] == "ok":
        return "silent wrong", f"returned instead of raising {exc}"
    if exc in rec["mro"] and frag.lower() in rec["msg"].lower():
        return "ok", ""
    if rec["exc"] == "AssertionError":
        return "silent wrong", rec["msg"] or rec["tb"]
    return "unclear error", f"{rec['exc']}: {rec['msg']} (wanted {exc} with {frag!r})"


def run(ids, env=None, python=sys.executable):
    results, todo = {}, list(ids)
    script = RUNNER.format(here=HERE, prelude=PRELUDE)
    while todo:
        p = subprocess.run([python, "-c", script, *todo], capture_output=True, text=True, env=env,
                           timeout=60 + 25 * len(todo))
        started = None
        for line in p.stdout.splitlines():
            try:
                r = json.loads(line)
            except ValueError:
                continue
            if "start" in r:
                started = r["start"]
            else:
                results[r["id"]] = r
                started = None
        if started is not None:
            results[started] = None  # died inside this case
        elif len(results) < len(ids) and not any(t in results for t in todo):
            sys.stderr.write(p.stderr[-3000:])
            raise SystemExit("runner failed before any case")
        todo = [t for t in todo if t not in results]
    return results


def main():
    show_ok = "--show-ok" in sys.argv
    sel = [a for a in sys.argv[1:] if not a.startswith("--")]
    cases = [c for c in CASES if not sel or any(s in c[0] for s in sel)]
    pd_python = os.environ.get("SWEEP_PANDAS_PYTHON", "/tmp/pdenv/bin/python")
    if not os.path.exists(pd_python):
        cases = [c for c in cases if not c[0].startswith("pandas:")]
    ids = [c[0] for c in cases if not c[0].startswith("pandas:")]
    pd_ids = [c[0] for c in cases if c[0].startswith("pandas:")]
    half = len(ids) // 2
    env = dict(os.environ)
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(2) as ex:
        parts = list(ex.map(lambda chunk: run(chunk, env), [ids[:half], ids[half:]]))
    results = {**parts[0], **parts[1]}
    if pd_ids:
        results.update(run(pd_ids, env, python=pd_python))
    counts = {}
    for c in cases:
        outcome, why = classify(c, results.get(c[0]))
        counts[outcome] = counts.get(outcome, 0) + 1
        if outcome != "ok" or show_ok:
            print(f"[{outcome}] {c[0]}: {why[:400]}")
    print(json.dumps({"total": len(cases), **counts}))


if __name__ == "__main__":
    main()

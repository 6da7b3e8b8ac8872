"""The bad-input table: one row per case over every public entry point.

A row is ``Case(id, entry, arg, code, exc, frag)``: ``code`` runs in the namespace from
:func:`make_env` (small fitted models, data, files); ``exc`` is the exception class name expected
(matched against the raised class and its bases, so ``"KeyError"`` accepts ``UnknownIdError``),
or None when the call must succeed (the code may assert on the result); ``frag`` is a
case-insensitive fragment the message must contain (the part that says what to fix).
"""
from __future__ import annotations

import collections

Case = collections.namedtuple("Case", "id entry arg code exc frag")

CASES: list[Case] = []


def case(entry, arg, code, exc, frag=""):
    cid = f"{entry} | {arg}"
    if any(c.id == cid for c in CASES):
        raise AssertionError(f"duplicate case id {cid!r}")
    CASES.append(Case(cid, entry, arg, code, exc, frag))


# ---------------------------------------------------------------------------------------------
# the environment every case runs in

def make_env():
    import os
    import tempfile

    import numpy as np
    import scipy.sparse as sp

    import aerec
    from aerec.data import Interactions, IdMap

    rng = np.random.default_rng(0)
    n_users, n_items = 40, 25
    dense = (rng.random((n_users, n_items)) < 0.25).astype(np.float32)
    dense[np.arange(n_users), np.arange(n_users) % n_items] = 1
    dense[np.arange(n_users), (np.arange(n_users) + 3) % n_items] = 1
    X = sp.csr_matrix(dense)
    R = X.copy()
    R.data = rng.integers(1, 6, R.nnz).astype(np.float32)
    small = dict(epochs=1, random_state=0)
    models = {
        "pop": aerec.Popularity().fit(X),
        "ease": aerec.EASE(l2=10.0).fit(X),
        "dae": aerec.MultDAE(hidden=(8,), latent=4, batch_size=16, **small).fit(X),
        "vae": aerec.MultVAE(hidden=(8,), latent=4, batch_size=16, total_anneal_steps=10, **small).fit(X),
        "cdae": aerec.CDAE(latent=4, batch_size=16, **small).fit(X),
        "ari": aerec.AutoRec(kind="item", hidden=6, **small).fit(R),
        "aru": aerec.AutoRec(kind="user", hidden=6, **small).fit(R),
    }
    inter = Interactions.from_csr(X, user_ids=[f"u{i}" for i in range(n_users)],
                                  item_ids=[f"i{j}" for j in range(n_items)])
    pop_raw = aerec.Popularity().fit(inter)
    ts = rng.integers(1_500_000_000, 1_600_000_000, X.nnz)
    inter_ts = Interactions.from_csr(X, timestamps=ts)
    split = aerec.data.random_split(inter, 0.2, random_state=0)
    xd = rng.random((30, 6)).astype(np.float32)
    ae = aerec.Autoencoder(hidden=(4,), random_state=0).fit(xd, epochs=1, batch_size=8)
    items = rng.standard_normal((20, 4)).astype(np.float32)
    index = aerec.TopK(items)
    index_int8 = aerec.TopK(items, precision="int8")
    q = rng.standard_normal((3, 4)).astype(np.float32)

    tmp = tempfile.mkdtemp(prefix="aerec-badinput-")
    import atexit
    import shutil
    atexit.register(shutil.rmtree, tmp, True)

    def write(name, data: bytes):
        p = os.path.join(tmp, name)
        with open(p, "wb") as f:
            f.write(data)
        return p

    files = {
        "bom": write("bom.csv", "\ufeffuser,item,rating\n1,2,3\n2,3,4\n3,1,5\n".encode()),
        "latin1": write("latin1.csv", "user,item,rating\nJos\xe9,2,3\nAna,3,4\n".encode("latin-1")),
        "nocols": write("nocols.csv", b"a,b,c\n1,2,3\n"),
        "empty": write("empty.csv", b""),
        "onecol": write("onecol.csv", b"1\n2\n3\n"),
        "text": write("notamodel.npz", b"hello"),
        "ragged": write("ragged.csv", b"1,2,3\n4,5\n6,7,8,9,10\n"),
        "binary": write("binary.csv", bytes(range(256)) * 4),
    }

    def corrupt(m, **changes):
        """A CSR copy with some structure arrays replaced (scipy does not re-check them)."""
        c = m.copy()
        for key, value in changes.items():
            arr = getattr(c, key).copy()
            if callable(value):
                arr = value(arr)
            setattr(c, key, arr)
        return c

    def bad_indptr_mid(m):
        return corrupt(m, indptr=lambda a: (a.__setitem__(5, 10 ** 6), a)[1])

    def bad_indptr_start(m):
        return corrupt(m, indptr=lambda a: (a.__setitem__(0, 3), a)[1])

    def bad_indptr_end(m):
        return corrupt(m, indptr=lambda a: (a.__setitem__(-1, a[-1] - 2), a)[1])

    def bad_indptr_len(m):
        return corrupt(m, indptr=lambda a: a[:-2])

    def bad_index(m, v):
        return corrupt(m, indices=lambda a: (a.__setitem__(3, v), a)[1])

    def offline(url):
        import urllib.error
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    def limited(fn, headroom=256 * 2 ** 20):
        """Run ``fn`` with RLIMIT_AS at the address space in use + ``headroom`` (then restore it), so
        a memory guard is tested the same way on every machine, whatever its RAM."""
        import resource
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        with open("/proc/self/status") as f:
            vm = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
        resource.setrlimit(resource.RLIMIT_AS, (vm + headroom, hard))
        try:
            return fn()
        finally:
            resource.setrlimit(resource.RLIMIT_AS, (soft, hard))

    env = dict(np=np, sp=sp, aerec=aerec, limited=limited, Interactions=Interactions, IdMap=IdMap, X=X, R=R, dense=dense,
               inter=inter, inter_ts=inter_ts, split=split, pop_raw=pop_raw, xd=xd, ae=ae, items=items,
               index=index, index_int8=index_int8, q=q, tmp=tmp, files=files, corrupt=corrupt,
               bad_indptr_mid=bad_indptr_mid, bad_indptr_start=bad_indptr_start,
               bad_indptr_end=bad_indptr_end, bad_indptr_len=bad_indptr_len, bad_index=bad_index,
               offline=offline, n_users=n_users, n_items=n_items, os=os)
    env.update(models)
    return env


# ---------------------------------------------------------------------------------------------
# recommenders: every model x every inference method

MODELS = {"pop": "Popularity", "ease": "EASE", "dae": "MultDAE", "vae": "MultVAE", "cdae": "CDAE",
          "ari": "AutoRec(item)", "aru": "AutoRec(user)"}
FOLD_IN = {"pop", "ease", "dae", "vae", "cdae", "aru"}
ITEM_VECTORS = set(MODELS)

for m, name in MODELS.items():
    rec = f"{name}.recommend"
    # k
    case(rec, "k=0", f"{m}.recommend(0, k=0)", "ValueError", "k must be positive")
    case(rec, "k=-3", f"{m}.recommend(0, k=-3)", "ValueError", "k must be positive")
    case(rec, "k=2.5", f"{m}.recommend(0, k=2.5)", "TypeError", "k must be an integer")
    case(rec, "k=True", f"{m}.recommend(0, k=True)", "TypeError", "k must be an integer")
    case(rec, "k='3'", f"{m}.recommend(0, k='3')", "TypeError", "k must be an integer")
    case(rec, "k=None", f"{m}.recommend(0, k=None)", "TypeError", "k must be an integer")
    case(rec, "k=nan", f"{m}.recommend(0, k=float('nan'))", "TypeError", "k must be an integer")
    case(rec, "k=2**64 (all items)",
         f"i, s = {m}.recommend([0, 1], k=2**64)\nassert i.shape == (2, n_items), i.shape", None)
    case(rec, "k=np.int64(3)", f"i, s = {m}.recommend(0, k=np.int64(3))\nassert i.shape == (3,)", None)
    # batch_size
    case(rec, "batch_size=-1", f"{m}.recommend([0, 1], k=3, batch_size=-1)", "ValueError", "batch_size")
    case(rec, "batch_size=0", f"{m}.recommend([0, 1], k=3, batch_size=0)", "ValueError", "batch_size")
    case(rec, "batch_size=1.5", f"{m}.recommend([0, 1], k=3, batch_size=1.5)", "TypeError", "batch_size")
    case(rec, "batch_size=2**70",
         f"a = {m}.recommend([0, 1, 2], k=3, batch_size=2**70)\nb = {m}.recommend([0, 1, 2], k=3)\n"
         "assert (a[0] == b[0]).all()", None)
    case(rec, "batch_size=1 same answer",
         f"a = {m}.recommend(np.arange(10), k=4, batch_size=1)\nb = {m}.recommend(np.arange(10), k=4)\n"
         "assert (a[0] == b[0]).all()", None)
    # user ids
    case(rec, "user -1", f"{m}.recommend(-1, k=3)", "UnknownIdError", "unknown")
    case(rec, "user n_users", f"{m}.recommend(n_users, k=3)", "UnknownIdError", "unknown")
    case(rec, "user 2**70", f"{m}.recommend([2**70], k=3)", "UnknownIdError", "not a valid id")
    case(rec, "user uint64 max", f"{m}.recommend(np.array([2**64 - 1], np.uint64), k=3)", "UnknownIdError",
         "not a valid id")
    case(rec, "user 1.0", f"{m}.recommend(1.0, k=3)", "TypeError", "integers")
    case(rec, "user 'a'", f"{m}.recommend('a', k=3)", "TypeError", "integer ids")
    case(rec, "user True", f"{m}.recommend(True, k=3)", "TypeError", "bool")
    case(rec, "users 2-D", f"{m}.recommend([[0, 1]], k=3)", "ValueError", "1-D")
    case(rec, "no users, no history", f"{m}.recommend(k=3)", "ValueError", "pass user_ids")
    case(rec, "users []", f"i, s = {m}.recommend([], k=3)\nassert i.shape == (0, 3)", None)
    case(rec, "duplicate users",
         f"i, s = {m}.recommend([2, 2], k=3)\nassert (i[0] == i[1]).all()", None)
    case(rec, "unknown id + training-shaped user_items", f"{m}.recommend([n_users + 5], user_items=X, k=3)",
         "UnknownIdError", "unknown")
    case(rec, "id -1 + training-shaped user_items", f"{m}.recommend([-1, 0], user_items=X, k=3)",
         "UnknownIdError", "unknown")
    case(rec, "training-shaped user_items",
         f"a = {m}.recommend([3, 1], user_items=X, k=3)\nb = {m}.recommend([3, 1], k=3)\n"
         "assert (a[0] == b[0]).all()", None)
    # user_items
    case(rec, "user_items wrong width", f"{m}.recommend(user_items=sp.csr_matrix((1, n_items + 1)), k=3)",
         "ValueError", "item columns")
    if m in FOLD_IN:
        case(rec, "user_items NaN",
             f"h = X[:2].copy(); h.data[0] = np.nan\n{m}.recommend(user_items=h, k=3)", "ValueError", "NaN")
        case(rec, "user_items negative",
             f"h = X[:2].copy(); h.data[0] = -1\n{m}.recommend(user_items=h, k=3)", "ValueError", "negative")
        case(rec, "user_items indptr corrupt", f"{m}.recommend(user_items=bad_indptr_mid(X), k=3)", "ValueError",
             "indptr")
        case(rec, "user_items index 10**8", f"{m}.recommend(user_items=bad_index(X[:6], 10**8), k=3)",
             "ValueError", "column index")
        case(rec, "user_items index -1", f"{m}.recommend(user_items=bad_index(X[:6], -1), k=3)", "ValueError",
             "column index")
        case(rec, "user_items object array", f"{m}.recommend(user_items=np.array([['a'] * n_items]), k=3)",
             "TypeError", "scipy.sparse")
        case(rec, "user_items complex",
             f"{m}.recommend(user_items=sp.csr_matrix(np.ones((1, n_items), complex)), k=3)", "TypeError",
             "real")
        case(rec, "user_items 3-D", f"{m}.recommend(user_items=np.ones((1, 1, n_items)), k=3)", "TypeError",
             "2-D")
        case(rec, "user_items dense float16",
             f"i, s = {m}.recommend(user_items=dense[:2].astype(np.float16), k=3)\nassert i.shape == (2, 3)", None)
        case(rec, "user_items duplicates",
             f"h = sp.csr_matrix((np.ones(2, np.float32), np.array([1, 1]), np.array([0, 2])), shape=(1, n_items))\n"
             f"{m}.recommend(user_items=h, k=3)", "ValueError", "duplicate")
        case(rec, "user_items empty rows",
             f"i, s = {m}.recommend(user_items=sp.csr_matrix((2, n_items), dtype=np.float32), k=3)\n"
             "assert i.shape == (2, 3)", None)
        case(rec, "user_items None, users None", f"{m}.recommend(None, user_items=None, k=3)", "ValueError",
             "pass user_ids")
        case(rec, "user_items rows != ids",
             f"{m}.recommend([0, 1, 2], user_items=X[:2], k=3)", "ValueError", "one history row per user")
    else:
        case(rec, "fold-in not supported", f"{m}.recommend(user_items=X[:2], k=3)", "ValueError", "fold in")
    # items / filters
    case(rec, "items=[-1]", f"{m}.recommend(0, k=3, items=[-1])", "UnknownIdError", "outside")
    case(rec, "items=[n_items]", f"{m}.recommend(0, k=3, items=[n_items])", "UnknownIdError", "outside")
    case(rec, "items floats", f"{m}.recommend(0, k=3, items=[0.5])", "TypeError", "integer")
    case(rec, "items=[] (all padding)",
         f"i, s = {m}.recommend(0, k=3, items=np.array([], np.int64))\nassert (i == -1).all()", None)
    case(rec, "filter_items=[999]", f"{m}.recommend(0, k=3, filter_items=[999])", "UnknownIdError", "outside")
    case(rec, "filter_seen='yes'", f"{m}.recommend(0, k=3, filter_seen='yes')", "TypeError", "filter_seen")
    case(rec, "filtered items never returned",
         f"i, s = {m}.recommend(0, k=n_items, filter_items=[0, 1, 2])\nassert not set(i.tolist()) & {{0, 1, 2}}",
         None)
    case(rec, "seen items never returned",
         f"i, s = {m}.recommend(4, k=n_items)\nassert not set(i[i >= 0].tolist()) & set(X[4].indices.tolist())",
         None)
    # score
    sc = f"{name}.score"
    case(sc, "user n_users", f"{m}.score_items(n_users)", "UnknownIdError", "unknown")
    case(sc, "user 2**70", f"{m}.score_items([2**70])", "UnknownIdError", "not a valid id")
    case(sc, "unknown id + training-shaped user_items", f"{m}.score_items([n_users], user_items=X)",
         "UnknownIdError", "unknown")
    case(sc, "user_items corrupt", f"{m}.score_items([0], user_items=bad_indptr_end(X))", "ValueError", "indptr")
    # similar items
    si = f"{name}.similar_items"
    case(si, "item -1", f"{m}.similar_items(-1)", "UnknownIdError", "outside")
    case(si, "item n_items", f"{m}.similar_items(n_items)", "UnknownIdError", "outside")
    case(si, "item 2**70", f"{m}.similar_items(2**70)", "UnknownIdError", "not a valid id")
    case(si, "k=0", f"{m}.similar_items(0, k=0)", "ValueError", "k must be positive")
    case(si, "k=2**64", f"i, s = {m}.similar_items(0, k=2**64)\nassert i.shape == (n_items,)", None)
    case(si, "filter_self='no'", f"{m}.similar_items(0, filter_self='no')", "TypeError", "filter_self")
    case(si, "item 1.5", f"{m}.similar_items(1.5)", "TypeError", "integer")
    # recommend_raw
    rr = f"{name}.recommend_raw"
    case(rr, "model fitted on a matrix", f"{m}.recommend_raw(['u1'])", "ValueError", "raw id maps")

# encode (sparse autoencoders)
for m in ("dae", "vae", "cdae"):
    name = MODELS[m]
    case(f"{name}.encode", "user_items corrupt", f"{m}.encode(bad_indptr_start(X))", "ValueError", "indptr")
    case(f"{name}.encode", "user_items index 10**8", f"{m}.encode(bad_index(X[:5], 10**8))", "ValueError",
         "column index")
    case(f"{name}.encode", "user_items wrong width", f"{m}.encode(sp.csr_matrix((1, 3)))", "ValueError",
         "item columns")
    case(f"{name}.encode", "user_items None", f"{m}.encode(None)", "TypeError", "None")
    case(f"{name}.encode", "unknown user id", f"{m}.encode(None, user_ids=[n_users + 1])", "UnknownIdError",
         "unknown")

# AutoRec user: item vectors must be one row per item (regression: was transposed)
case("AutoRec(user).item_vectors", "shape (n_items, hidden)", "assert aru.item_vectors().shape == (n_items, 6)",
     None)
case("AutoRec.predict_ratings", "user out of range", "ari.predict_ratings([n_users], [0])", "UnknownIdError",
     "unknown")
case("AutoRec.predict_ratings", "user 2**70", "ari.predict_ratings([2**70], [0])", "UnknownIdError",
     "not a valid id")
case("AutoRec.predict_ratings", "floats", "ari.predict_ratings([0.5], [0])", "TypeError", "integer")
case("AutoRec.predict_ratings", "shape mismatch", "ari.predict_ratings([0, 1], [0])", "ValueError", "same shape")
case("Popularity.recommend_raw", "unknown raw id", "pop_raw.recommend_raw(['nobody'])", "UnknownIdError",
     "unknown raw id")
case("Popularity.recommend_raw", "None", "pop_raw.recommend_raw(None)", "TypeError", "None")
case("Popularity.recommend_raw", "raw id 2**70", "pop_raw.recommend_raw([2**70])", "UnknownIdError", "unknown raw id")
case("Popularity.recommend_raw", "k=0", "pop_raw.recommend_raw(['u1'], k=0)", "ValueError", "k must be positive")
case("Popularity.recommend_raw", "valid", "i, s = pop_raw.recommend_raw('u1', k=3)\nassert len(i) == 3", None)
case("Popularity.recommend", "before fit", "aerec.Popularity().recommend(0)", "RuntimeError", "not fitted")
case("MultVAE.recommend", "before fit", "aerec.MultVAE().recommend(0)", "RuntimeError", "not fitted")
case("MultVAE.encode", "before fit", "aerec.MultVAE().encode(X)", "RuntimeError", "not fitted")
case("EASE.similar_items", "before fit", "aerec.EASE().similar_items(0)", "RuntimeError", "not fitted")

# ---------------------------------------------------------------------------------------------
# fit and hyper-parameters

FIT = {"pop": "aerec.Popularity()", "ease": "aerec.EASE(l2=10.0)",
       "dae": "aerec.MultDAE(hidden=(8,), latent=4, epochs=1)",
       "vae": "aerec.MultVAE(hidden=(8,), latent=4, epochs=1)", "cdae": "aerec.CDAE(latent=4, epochs=1)",
       "ari": "aerec.AutoRec(hidden=6, epochs=1)", "aru": "aerec.AutoRec(kind='user', hidden=6, epochs=1)"}
for m, make in FIT.items():
    fit = f"{MODELS[m]}.fit"
    case(fit, "train None", f"{make}.fit(None)", "TypeError", "None")
    case(fit, "train empty", f"{make}.fit(sp.csr_matrix((5, 4), dtype=np.float32))", "ValueError",
         "need at least one")
    case(fit, "train 0x0", f"{make}.fit(sp.csr_matrix((0, 0), dtype=np.float32))", "ValueError",
         "need at least one")
    case(fit, "train NaN", f"T = X.copy(); T.data[0] = np.nan\n{make}.fit(T)", "ValueError", "NaN")
    case(fit, "train inf", f"T = X.copy(); T.data[0] = np.inf\n{make}.fit(T)", "ValueError", "infinite")
    case(fit, "train negative", f"T = X.copy(); T.data[0] = -2\n{make}.fit(T)", "ValueError", "negative")
    case(fit, "train indptr falls", f"{make}.fit(bad_indptr_mid(X))", "ValueError", "non-decreasing")
    case(fit, "train indptr[0] != 0", f"{make}.fit(bad_indptr_start(X))", "ValueError", "start at 0")
    case(fit, "train indptr[-1] != nnz", f"{make}.fit(bad_indptr_end(X))", "ValueError", "indptr ends")
    case(fit, "train indptr too short", f"{make}.fit(bad_indptr_len(X))", "ValueError", "indptr has length")
    case(fit, "train column 10**8", f"{make}.fit(bad_index(X, 10**8))", "ValueError", "column index")
    case(fit, "train column -1", f"{make}.fit(bad_index(X, -1))", "ValueError", "column index")
    case(fit, "train float indices", "T = corrupt(X, indices=lambda a: a.astype(np.float64))\n"
         f"{make}.fit(T)", "TypeError", "integers")
    case(fit, "train coo row out of range",
         f"C = X.tocoo(); C.row = C.row.copy(); C.row[0] = 10**6\n{make}.fit(C)", "ValueError", "row index")
    case(fit, "train csc corrupt", f"{make}.fit(bad_index(X.tocsc(), 10**7))", "ValueError", "row index")
    case(fit, "train object strings", f"{make}.fit(np.array([['a', 'b']]))", "TypeError", "scipy.sparse")
    case(fit, "train complex", f"{make}.fit(sp.csr_matrix(dense.astype(complex)))", "TypeError", "real")
    case(fit, "train dense NaN", f"d = dense.copy(); d[0, 0] = np.nan\n{make}.fit(d)", "ValueError", "NaN")
    case(fit, "train duplicates",
         f"T = sp.csr_matrix((np.ones(2, np.float32), np.array([1, 1]), np.array([0, 2, 2])), shape=(2, 3))\n"
         f"{make}.fit(T)", "ValueError", "duplicate")
    case(fit, "train values beyond float32", f"T = sp.csr_matrix(dense.astype(np.float64)); T.data[0] = 1e300\n"
         f"{make}.fit(T)", "ValueError", "float32 range")
    case(fit, "train unsorted indices (valid)",
         f"T = X.copy(); T.indices[:2] = T.indices[:2][::-1].copy(); T.has_sorted_indices = False\n"
         f"{make}.fit(T)", None)
    case(fit, "train non-contiguous dense (valid)", f"{make}.fit(np.asfortranarray(dense)[:, :])", None)
    case(fit, "train bool dense (valid)", f"{make}.fit(dense.astype(bool))", None)
    case(fit, "train Interactions (valid)", f"{make}.fit(inter)", None)

for m in ("dae", "vae", "cdae", "ari", "aru"):
    make = FIT[m]
    fit = f"{MODELS[m]}.fit"
    case(fit, "batch_size=0", f"{make}.fit(X, batch_size=0)", "ValueError", "batch_size")
    case(fit, "batch_size=-1", f"{make}.fit(X, batch_size=-1)", "ValueError", "batch_size")
    case(fit, "batch_size=2**70 (one batch)", f"{make}.fit(X, batch_size=2**70)", None)
    case(fit, "batch_size=2.5", f"{make}.fit(X, batch_size=2.5)", "TypeError", "batch_size")
    case(fit, "epochs=-1", f"{make}.fit(X, epochs=-1)", "ValueError", "epochs")
    case(fit, "epochs=1.5", f"{make}.fit(X, epochs=1.5)", "TypeError", "epochs")
    case(fit, "epochs=True", f"{make}.fit(X, epochs=True)", "TypeError", "epochs")
    case(fit, "epochs=0 (valid)", f"{make}.fit(X, epochs=0)", None)

CLS = {"dae": "aerec.MultDAE", "vae": "aerec.MultVAE", "cdae": "aerec.CDAE", "ari": "aerec.AutoRec",
       "aru": "aerec.AutoRec"}
for m, cls in CLS.items():
    extra = "kind='user', " if m == "aru" else ""
    base = "hidden=6, " if m in ("ari", "aru") else "latent=4, "
    for param, value, exc, frag in (
            ("learning_rate", "float('nan')", "ValueError", "finite"),
            ("learning_rate", "float('inf')", "ValueError", "finite"),
            ("learning_rate", "-1.0", "ValueError", "learning_rate"),
            ("learning_rate", "'0.1'", "TypeError", "learning_rate"),
            ("learning_rate", "1j", "TypeError", "learning_rate"),
            ("l2", "float('inf')", "ValueError", "finite"),
            ("l2", "float('nan')", "ValueError", "finite"),
            ("l2", "-1.0", "ValueError", "l2"),
            ("dropout", "1.0", "ValueError", "dropout"),
            ("dropout", "float('nan')", "ValueError", "finite"),
            ("dropout", "'0.5'", "TypeError", "dropout"),
            ("random_state", "-1", "ValueError", "random_state"),
            ("random_state", "'seed'", "TypeError", "random_state"),
            ("optimizer", "'rmsprop'", "ValueError", "optimizer"),
            ("activation", "'swish'", "ValueError", "activation"),
    ):
        case(f"{MODELS[m]}({param}=...).fit", f"{param}={value}",
             f"{cls}({extra}{base}epochs=1, {param}={value}).fit(X)", exc, frag)
for m in ("dae", "vae", "cdae"):
    cls = CLS[m]
    case(f"{MODELS[m]}(latent=...).fit", "latent=0", f"{cls}(latent=0, epochs=1).fit(X)", "ValueError", "latent")
    case(f"{MODELS[m]}(latent=...).fit", "latent=2.5", f"{cls}(latent=2.5, epochs=1).fit(X)", "ValueError",
         "latent")
    case(f"{MODELS[m]}(hidden=...).fit", "hidden=(0,)", f"{cls}(hidden=(0,), latent=4, epochs=1).fit(X)",
         "ValueError", "hidden")
    case(f"{MODELS[m]}(lazy_adam=...).fit", "lazy_adam='yes'", f"{cls}(latent=4, epochs=1, lazy_adam='yes').fit(X)",
         "TypeError", "lazy_adam")
    case(f"{MODELS[m]}.fit", "validation wrong type", f"{cls}(latent=4, epochs=1).fit(X, validation=X)",
         "TypeError", "EvalSet")
    case(f"{MODELS[m]}.fit", "early_stopping=0", f"{cls}(latent=4, epochs=1).fit(X, early_stopping=0)",
         "ValueError", "early_stopping")
case("MultVAE(total_anneal_steps=...).fit", "2.5", "aerec.MultVAE(latent=4, epochs=1, total_anneal_steps=2.5).fit(X)",
     "TypeError", "total_anneal_steps")
case("MultVAE(anneal_cap=...).fit", "nan", "aerec.MultVAE(latent=4, epochs=1, anneal_cap=float('nan')).fit(X)",
     "ValueError", "finite")
case("CDAE(negative_samples=...).fit", "-1", "aerec.CDAE(latent=4, epochs=1, negative_samples=-1).fit(X)",
     "ValueError", "negative_samples")
case("CDAE(negative_samples=...).fit", "1.5", "aerec.CDAE(latent=4, epochs=1, negative_samples=1.5).fit(X)",
     "TypeError", "negative_samples")
for value, exc, frag in (("0", "ValueError", "hidden"), ("2.7", "TypeError", "hidden"), ("True", "TypeError", "hidden"),
                         ("'5'", "TypeError", "hidden")):
    case("AutoRec(hidden=...).fit", f"hidden={value}", f"aerec.AutoRec(hidden={value}, epochs=1).fit(R)", exc, frag)
case("AutoRec(kind=...)", "kind='x'", "aerec.AutoRec(kind='x')", "ValueError", "kind")
case("AutoRec(clip=...).fit", "clip=(nan, 5)", "aerec.AutoRec(hidden=4, epochs=1, clip=(float('nan'), 5)).fit(R)",
     "ValueError", "finite")
case("AutoRec(clip=...).fit", "clip=(5, 1)", "aerec.AutoRec(hidden=4, epochs=1, clip=(5, 1)).fit(R)",
     "ValueError", "clip")
case("AutoRec(clip=...).fit", "clip='x'", "aerec.AutoRec(hidden=4, epochs=1, clip='x').fit(R)", "ValueError", "clip")
case("AutoRec(dropout=...).fit", "dropout=(0.1, 0.2, 0.3)",
     "aerec.AutoRec(hidden=4, epochs=1, dropout=(0.1, 0.2, 0.3)).fit(R)", "ValueError", "dropout")
case("AutoRec(dropout=...).fit", "dropout=None", "aerec.AutoRec(hidden=4, epochs=1, dropout=None).fit(R)",
     "TypeError", "dropout")

for value, exc, frag in (("float('inf')", "ValueError", "finite"), ("float('nan')", "ValueError", "finite"),
                         ("0.0", "ValueError", "l2"), ("-5.0", "ValueError", "l2"), ("'500'", "TypeError", "l2"),
                         ("True", "TypeError", "l2"), ("None", "TypeError", "l2")):
    case("EASE(l2=...)", f"l2={value}", f"aerec.EASE(l2={value})", exc, frag)
case("EASE.set_params(l2=inf).fit", "l2=inf after construction", "aerec.EASE().set_params(l2=float('inf')).fit(X)",
     "ValueError", "finite")
case("EASE.fit", "l2=1e300 (non-finite weights)", "aerec.EASE(l2=1e300).fit(X)", "FloatingPointError", "l2")
case("EASE(dtype=...)", "dtype='int8'", "aerec.EASE(dtype='int8')", "ValueError", "float32 or float64")
case("EASE(dtype=...)", "dtype='nonsense'", "aerec.EASE(dtype='nonsense')", "ValueError", "float32 or float64")
case("EASE(max_memory=...)", "max_memory=-1", "aerec.EASE(max_memory=-1)", "ValueError", "max_memory")
case("EASE(max_memory=...)", "max_memory=nan", "aerec.EASE(max_memory=float('nan'))", "ValueError", "finite")
case("EASE.fit", "max_memory=1 (float32): no float32 advice",
     "try:\n    aerec.EASE(max_memory=1).fit(X)\nexcept MemoryError as e:\n"
     "    assert 'float32' not in str(e).split(';')[-1], str(e)\n    raise", "MemoryError", "filter rare items")
case("EASE.fit", "max_memory=1 (float64): float32 advice", "aerec.EASE(max_memory=1, dtype='float64').fit(X)",
     "MemoryError", "dtype='float32'")

# ---------------------------------------------------------------------------------------------
# the dense Autoencoder

AE = "aerec.Autoencoder(hidden=(4,))"
for arg, code, exc, frag in (
        ("x NaN", f"d = xd.copy(); d[0, 0] = np.nan\n{AE}.fit(d)", "ValueError", "NaN"),
        ("x inf", f"d = xd.copy(); d[1, 1] = np.inf\n{AE}.fit(d)", "ValueError", "infinity"),
        ("x beyond float32", f"{AE}.fit(np.full((3, 2), 1e300))", "ValueError", "float32 range"),
        ("x 3-D", f"{AE}.fit(np.ones((2, 3, 4)))", "ValueError", "2-D"),
        ("x 1-D", f"{AE}.fit(np.ones(5))", "ValueError", "2-D"),
        ("x object", f"{AE}.fit(np.array([[object()]]))", "TypeError", "dtype"),
        ("x strings", f"{AE}.fit([['a', 'b']])", "TypeError", "dtype"),
        ("x complex", f"{AE}.fit(np.ones((3, 3), complex))", "TypeError", "dtype"),
        ("x None", f"{AE}.fit(None)", "TypeError", "None"),
        ("x ragged", f"{AE}.fit([[1.0, 2.0], [3.0]])", "TypeError", "array"),
        ("x 0 rows", f"{AE}.fit(np.ones((0, 3)))", "ValueError", "empty"),
        ("x 0 cols", f"{AE}.fit(np.ones((3, 0)))", "ValueError", "empty"),
        ("x sparse", f"{AE}.fit(X)", "TypeError", "toarray"),
        ("x float16 (valid)", f"{AE}.fit(xd.astype(np.float16))", None, ""),
        ("x strided (valid)", f"{AE}.fit(np.asfortranarray(xd)[::2, ::2])", None, ""),
        ("x list (valid)", f"{AE}.fit(xd.tolist())", None, ""),
        ("x bool (valid)", f"{AE}.fit(xd > 0.5)", None, ""),
        ("batch_size=0", f"{AE}.fit(xd, batch_size=0)", "ValueError", "batch_size"),
        ("batch_size=-1", f"{AE}.fit(xd, batch_size=-1)", "ValueError", "batch_size"),
        ("batch_size=True", f"{AE}.fit(xd, batch_size=True)", "TypeError", "batch_size"),
        ("batch_size=2**70 (valid)", f"{AE}.fit(xd, batch_size=2**70)", None, ""),
        ("epochs=-1", f"{AE}.fit(xd, epochs=-1)", "ValueError", "epochs"),
        ("epochs=2**70", f"{AE}.fit(xd, epochs=2**70)", "ValueError", "epochs"),
        ("shuffle='yes'", f"{AE}.fit(xd, shuffle='yes')", "TypeError", "shuffle"),
        ("y wrong rows", f"{AE}.fit(xd, xd[:3])", "ValueError", "rows"),
        ("validation wrong width", f"{AE}.fit(xd, validation_data=xd[:, :2])", "ValueError", "features"),
        ("validation 4-tuple", f"{AE}.fit(xd, validation_data=(xd, xd, None, None))", "ValueError",
         "validation_data"),
        ("bce with data > 1", "aerec.Autoencoder(loss='bce').fit(xd * 3)", "ValueError", "[0, 1]"),
        ("mask without masked_mse", f"{AE}.fit(xd, mask=xd)", "ValueError", "mask"),
):
    case("Autoencoder.fit", arg, code, exc, frag)
for arg, code, exc, frag in (
        ("hidden=(0,)", "aerec.Autoencoder(hidden=(0,))", "ValueError", "hidden"),
        ("hidden=()", "aerec.Autoencoder(hidden=())", "ValueError", "hidden"),
        ("hidden=(2.5,)", "aerec.Autoencoder(hidden=(2.5,))", "ValueError", "hidden"),
        ("activation='swish'", "aerec.Autoencoder(activation='swish')", "ValueError", "activation"),
        ("loss='bce' + relu output", "aerec.Autoencoder(loss='bce', output_activation='relu')", "ValueError",
         "sigmoid"),
        ("learning_rate=nan", "aerec.Autoencoder(learning_rate=float('nan'))", "ValueError", "finite"),
        ("learning_rate=0", "aerec.Autoencoder(learning_rate=0)", "ValueError", "learning_rate"),
        ("beta1=1.0", "aerec.Autoencoder(beta1=1.0)", "ValueError", "beta1"),
        ("dropout=inf", "aerec.Autoencoder(dropout=float('inf'))", "ValueError", "finite"),
        ("backend='gpu'", "aerec.Autoencoder(backend='gpu')", "ValueError", "backend"),
        ("backend=3", "aerec.Autoencoder(backend=3)", "TypeError", "backend"),
        ("bottleneck=5", "aerec.Autoencoder(bottleneck=5)", "ValueError", "bottleneck"),
        ("nesterov without momentum", "aerec.Autoencoder(nesterov=True)", "ValueError", "momentum"),
):
    case("Autoencoder()", arg, code, exc, frag)
for meth in ("encode", "predict"):
    for arg, code, exc, frag in (
            ("x wrong width", f"ae.{meth}(xd[:, :3])", "ValueError", "features"),
            ("x NaN", f"d = xd.copy(); d[0, 0] = np.nan\nae.{meth}(d)", "ValueError", "NaN"),
            ("batch_size=0", f"ae.{meth}(xd, batch_size=0)", "ValueError", "batch_size"),
            ("batch_size=2**70 (valid)", f"assert ae.{meth}(xd, batch_size=2**70).shape[0] == 30", None, ""),
            ("x 1-D (valid)", f"assert ae.{meth}(xd[0]).ndim == 1", None, ""),
            ("x 0 rows (valid)", f"assert ae.{meth}(xd[:0]).shape[0] == 0", None, ""),
            ("x 0 cols", f"ae.{meth}(np.ones((3, 0)))", "ValueError", "features"),
            ("before fit", f"aerec.Autoencoder().{meth}(xd)", "RuntimeError", "not fitted"),
    ):
        case(f"Autoencoder.{meth}", arg, code, exc, frag)
case("Autoencoder.set_weights", "NaN weight", "w = ae.get_weights(); w[0] = w[0] * np.nan\nae.set_weights(w)",
     "ValueError", "NaN")
case("Autoencoder.set_weights", "wrong count", "ae.set_weights(ae.get_weights()[:1])", "ValueError", "expected")

# ---------------------------------------------------------------------------------------------
# search.TopK

for arg, code, exc, frag in (
        ("items NaN", "it = items.copy(); it[0, 0] = np.nan\naerec.TopK(it)", "ValueError", "NaN"),
        ("items 0 rows", "aerec.TopK(np.ones((0, 4)))", "ValueError", "zero items"),
        ("items 0 dims", "aerec.TopK(np.ones((4, 0)))", "ValueError", "dimension"),
        ("items 1-D", "aerec.TopK(np.ones(4))", "ValueError", "2-D"),
        ("items object", "aerec.TopK(np.array([[object()]]))", "TypeError", "dtype"),
        ("items complex", "aerec.TopK(np.ones((3, 3), complex))", "TypeError", "dtype"),
        ("items strings", "aerec.TopK([['a']])", "TypeError", "dtype"),
        ("bias wrong length", "aerec.TopK(items, bias=np.ones(3))", "ValueError", "bias"),
        ("bias with cosine", "aerec.TopK(items, bias=np.ones(20), metric='cosine')", "ValueError", "bias"),
        ("bias NaN", "aerec.TopK(items, bias=np.full(20, np.nan))", "ValueError", "NaN"),
        ("metric='l2'", "aerec.TopK(items, metric='l2')", "ValueError", "metric"),
        ("metric=None", "aerec.TopK(items, metric=None)", "ValueError", "metric"),
        ("precision='fp16'", "aerec.TopK(items, precision='fp16')", "ValueError", "precision"),
        ("rescore=-1", "aerec.TopK(items, precision='int8', rescore=-1)", "ValueError", "rescore"),
        ("rescore=0 fp32", "aerec.TopK(items, precision='fp32', rescore=0)", "ValueError", "rescore"),
        ("rescore=0 int8 (valid: no fp32 copy)", "aerec.TopK(items, precision='int8', rescore=0).search(q, 3)", None, ""),
        ("rescore=1.5 (valid: ceil(1.5 k) candidates)", "aerec.TopK(items, precision='int8', rescore=1.5).search(q, 3)", None, ""),
        ("rescore=0.5", "aerec.TopK(items, precision='int8', rescore=0.5)", "ValueError", "rescore"),
        ("rescore=nan", "aerec.TopK(items, precision='int8', rescore=float('nan'))", "ValueError", "rescore"),
        ("rescore='2'", "aerec.TopK(items, precision='int8', rescore='2')", "ValueError", "rescore"),
        ("rescore=2**70 (valid)", "aerec.TopK(items, precision='int8', rescore=2**70).search(q, 3)", None, ""),
        ("prune='yes'", "aerec.TopK(items, prune='yes')", "TypeError", "prune"),
        ("num_threads=2**40", "aerec.TopK(items, num_threads=2**40)", "ValueError", "num_threads"),
        ("backend='gpu'", "aerec.TopK(items, backend='gpu')", "ValueError", "backend"),
        ("items float16 strided (valid)", "aerec.TopK(items.astype(np.float16)[::2]).search(q, 2)", None, ""),
):
    case("TopK()", arg, code, exc, frag)
for ix in ("index", "index_int8"):
    for arg, code, exc, frag in (
            ("k=0", f"{ix}.search(q, 0)", "ValueError", "k must be positive"),
            ("k=-1", f"{ix}.search(q, -1)", "ValueError", "k must be positive"),
            ("k=1.5", f"{ix}.search(q, 1.5)", "TypeError", "k must be an integer"),
            ("k=True", f"{ix}.search(q, True)", "TypeError", "k must be an integer"),
            ("k=2**64 (all items)", f"i, s = {ix}.search(q, 2**64)\nassert i.shape == (3, 20)", None, ""),
            ("k=2**70 one query", f"i, s = {ix}.search(q[0], 2**70)\nassert i.shape == (20,)", None, ""),
            ("queries wrong dim", f"{ix}.search(np.ones((2, 5)), 3)", "ValueError", "dimension"),
            ("queries NaN", f"{ix}.search(np.full((2, 4), np.nan), 3)", "ValueError", "NaN"),
            ("queries None", f"{ix}.search(None, 3)", "TypeError", "None"),
            ("queries strings", f"{ix}.search(np.array([['a'] * 4]), 3)", "TypeError", "dtype"),
            ("queries 3-D", f"{ix}.search(np.ones((1, 2, 4)), 3)", "ValueError", "2-D"),
            ("queries 0 rows (valid)", f"i, s = {ix}.search(np.ones((0, 4)), 3)\nassert i.shape == (0, 3)", None, ""),
            ("exclude id 20", f"{ix}.search(q, 3, exclude=[[20], [], []])", "IndexError", "out of range"),
            ("exclude id -1", f"{ix}.search(q, 3, exclude=[[-1], [], []])", "IndexError", "out of range"),
            ("exclude wrong rows", f"{ix}.search(q, 3, exclude=[[1]])", "ValueError", "rows"),
            ("exclude floats", f"{ix}.search(q, 3, exclude=[[1.5], [], []])", "TypeError", "integers"),
            ("exclude sparse indptr corrupt",
             f"E = sp.csr_matrix((np.ones(3), np.array([1, 2, 3]), np.array([0, 1, 2, 3])), shape=(3, 20))\n"
             f"E.indptr = np.array([0, 3, 1, 3])\n{ix}.search(q, 3, exclude=E)", "ValueError", "indptr"),
            ("exclude sparse column 10**6",
             f"E = sp.csr_matrix((np.ones(1), np.array([1]), np.array([0, 1, 1, 1])), shape=(3, 20))\n"
             f"E.indices = np.array([10**6], np.int32)\n{ix}.search(q, 3, exclude=E)", "ValueError",
             "column index"),
            ("num_threads=2**40", f"{ix}.search(q, 3, num_threads=2**40)", "ValueError", "num_threads"),
            ("num_threads='2'", f"{ix}.search(q, 3, num_threads='2')", "TypeError", "num_threads"),
            ("num_threads=-1 (default)", f"{ix}.search(q, 3, num_threads=-1)", None, ""),
            ("exclude all (padding)",
             f"i, s = {ix}.search(q[0], 3, exclude=np.arange(20))\nassert (i == -1).all()", None, ""),
    ):
        case(f"TopK.search[{ix}]", arg, code, exc, frag)
case("search.reference_search", "k=2**64", "i, s = aerec.search.reference_search(items, q, 2**64)\n"
     "assert i.shape == (3, 20)", None)
case("TopK.load", "not a TopK file", "aerec.TopK.load(files['text'])", "ValueError", "not an aerec model file")
case("TopK.load", "missing file", "aerec.TopK.load(os.path.join(tmp, 'nope.npz'))", "FileNotFoundError", "")

# ---------------------------------------------------------------------------------------------
# threads, config, files

for arg, code, exc, frag in (
        ("n=2**40", "aerec.set_num_threads(2**40)", "ValueError", "<= 1024"),
        ("n=2**70", "aerec.set_num_threads(2**70)", "ValueError", "<= 1024"),
        ("n='2'", "aerec.set_num_threads('2')", "TypeError", "integer"),
        ("n=None", "aerec.set_num_threads(None)", "TypeError", "None"),
        ("n=1.5", "aerec.set_num_threads(1.5)", "TypeError", "integer"),
        ("n=True", "aerec.set_num_threads(True)", "TypeError", "integer"),
        ("n=-1 (default)", "aerec.set_num_threads(-1)\nassert aerec.get_num_threads() >= 1", None, ""),
):
    case("set_num_threads", arg, code, exc, frag)
case("load", "missing file", "aerec.load(os.path.join(tmp, 'nope.npz'))", "FileNotFoundError", "")
case("load", "not a model file", "aerec.load(files['text'])", "ModelFileError", "not an aerec model file")

# ---------------------------------------------------------------------------------------------
# aerec.data

FA = "Interactions.from_arrays"
for arg, code, exc, frag in (
        ("lengths differ", f"{FA}([1, 2], [1])", "ValueError", "same length"),
        ("ids 2**65", f"{FA}([2**65, 1], [1, 2])", "ValueError", "as strings"),
        ("ids -2**70", f"{FA}([-2**70, 1], [1, 2])", "ValueError", "as strings"),
        ("uint64 ids beyond int64 (exact)", f"d = {FA}(np.array([2**64 - 1, 5], np.uint64), [1, 2])\n"
         "assert sorted(d.user_map.raw_ids.tolist()) == [5, 2**64 - 1]", None, ""),
        ("python ids 2**64-1 (exact)", f"d = {FA}([2**64 - 1, 2**64 - 2], [1, 2])\nassert d.n_users == 2\n"
         "assert d.user_map.to_index([2**64 - 2])[0] == 0", None, ""),
        ("float ids 1e30 (not wrapped)", f"d = {FA}([1e30, 1.0], [1, 2])\n"
         "assert (d.user_map.raw_ids > 0).all()", None, ""),
        ("bool ids", f"{FA}([True, False], [1, 2])", "TypeError", "booleans"),
        ("complex ids", f"{FA}(np.array([1j, 2j]), [1, 2])", "TypeError", "integers or strings"),
        ("mixed ids", f"{FA}([1, 'a'], [1, 2])", "TypeError", "mix"),
        ("2-D ids", f"{FA}([[1, 2]], [[1, 2]])", "ValueError", "1-D"),
        ("values strings", f"{FA}([1, 2], [1, 2], ['x', 'y'], on_invalid='raise')", "ValueError", "bad_value"),
        ("values beyond float32", f"{FA}([1, 2], [1, 2], [1e300, 1.0])", "ValueError", "float32"),
        ("values wrong length", f"{FA}([1, 2], [1, 2], [1.0])", "ValueError", "values"),
        ("timestamps wrong length", f"{FA}([1, 2], [1, 2], timestamps=[1])", "ValueError", "timestamps"),
        ("duplicates='x'", f"{FA}([1], [1], duplicates='x')", "ValueError", "duplicates"),
        ("on_invalid='x'", f"{FA}([1], [1], on_invalid='x')", "ValueError", "on_invalid"),
        ("duplicates='raise'", f"{FA}([1, 1], [2, 2], duplicates='raise')", "ValueError", "duplicate"),
        ("user_map not IdMap", f"{FA}([1], [1], user_map=[1])", "TypeError", "IdMap"),
        ("unknown id in given map", f"{FA}([7], [1], user_map=IdMap([1, 2]))", "KeyError", "unknown raw id"),
        ("empty (valid)", f"assert {FA}([], []).nnz == 0", None, ""),
):
    case(FA, arg, code, exc, frag)
FC = "Interactions.from_csr"
for arg, code, exc, frag in (
        ("indptr falls", f"{FC}(bad_indptr_mid(X))", "ValueError", "non-decreasing"),
        ("indptr[-1] != nnz", f"{FC}(bad_indptr_end(X))", "ValueError", "indptr ends"),
        ("column 10**8", f"{FC}(bad_index(X, 10**8))", "ValueError", "column index"),
        ("dense", f"{FC}(dense)", "TypeError", "scipy.sparse"),
        ("complex", f"{FC}(sp.csr_matrix(dense.astype(complex)))", "TypeError", "real"),
        ("ids length", f"{FC}(X, user_ids=[1, 2])", "ValueError", "lengths"),
        ("NaN raise", f"T = X.copy(); T.data[0] = np.nan\n{FC}(T, on_invalid='raise')", "ValueError", "invalid"),
):
    case(FC, arg, code, exc, frag)
RC = "Interactions.read_csv"
for arg, code, exc, frag in (
        ("UTF-8 BOM (valid)", f"d = {RC}(files['bom'])\nassert d.n_users == 3 and d.is_explicit", None, ""),
        ("latin-1 bytes", f"{RC}(files['latin1'])", "ValueError", "encoding="),
        ("latin-1 with encoding (valid)", f"assert {RC}(files['latin1'], encoding='latin-1').n_users == 2", None, ""),
        ("binary file", f"{RC}(files['binary'])", "ValueError", "encoding="),
        ("unknown encoding", f"{RC}(files['bom'], encoding='nope')", "ValueError", "encoding"),
        ("encoding=None", f"{RC}(files['bom'], encoding=None)", "TypeError", "encoding"),
        ("header without user column", f"{RC}(files['nocols'])", "KeyError", "columns="),
        ("missing file", f"{RC}(os.path.join(tmp, 'nope.csv'))", "FileNotFoundError", "no such file"),
        ("empty file", f"{RC}(files['empty'])", "ValueError", "empty"),
        ("one column", f"{RC}(files['onecol'])", "ValueError", "separator"),
        ("sep=''", f"{RC}(files['bom'], sep='')", "ValueError", "sep"),
        ("header='x'", f"{RC}(files['bom'], header='x')", "ValueError", "header"),
        ("columns=[0]", f"{RC}(files['bom'], columns=[0])", "ValueError", "columns"),
        ("columns position 9", f"{RC}(files['bom'], columns=[0, 9])", "ValueError", "out of range"),
        ("columns unknown name", f"{RC}(files['bom'], columns=['user', 'nope'])", "KeyError", "not found"),
        ("path None", f"{RC}(None)", "TypeError", "path"),
        ("binarize=nan", f"{RC}(files['bom'], binarize=float('nan'))", "ValueError", "finite"),
):
    case(RC, arg, code, exc, frag)
for arg, code, exc, frag in (
        ("binarize(nan)", "inter_ts.binarize(float('nan'))", "ValueError", "finite"),
        ("binarize('x')", "aerec.data.Interactions.from_arrays([1], [1], [3.0]).binarize('x')", "TypeError",
         "threshold"),
        ("filter(-1)", "inter.filter(-1)", "ValueError", "min_user_count"),
        ("filter(1.5)", "inter.filter(1.5)", "ValueError", "min_user_count"),
        ("filter(True)", "inter.filter(True)", "ValueError", "min_user_count"),
        ("user_items(10**9)", "inter.user_items(10**9)", "IndexError", "out of range"),
        ("user_items(1.5)", "inter.user_items(1.5)", "TypeError", "integers"),
        ("subset_users(bad mask)", "inter.subset_users(np.ones(3, bool))", "ValueError", "mask"),
):
    case("Interactions." + arg.split("(")[0], arg, code, exc, frag)
for arg, code, exc, frag in (
        ("duplicate ids", "IdMap([1, 1])", "ValueError", "unique"),
        ("NaN ids", "IdMap([1.0, float('nan')])", "ValueError", "finite"),
        ("bool ids", "IdMap([True])", "TypeError", "booleans"),
        ("2**65 ids", "IdMap([2**65])", "ValueError", "as strings"),
        ("to_index unknown", "IdMap([1, 2]).to_index([3])", "KeyError", "unknown raw id"),
        ("to_index 2**70", "IdMap([1, 2]).to_index([2**70])", "KeyError", "unknown raw id"),
        ("to_index [2**70, 2] ignore", "assert IdMap([1, 2]).to_index([2**70, 2], missing='ignore').tolist() == [-1, 1]",
         None, ""),
        ("2**70 in map", "assert 2**70 not in IdMap([1, 2])", None, ""),
        ("to_index missing='x'", "IdMap([1]).to_index([1], missing='x')", "ValueError", "missing"),
        ("to_raw(-1)", "IdMap([1, 2]).to_raw([-1])", "IndexError", "out of range"),
        ("to_raw(2**70)", "IdMap([1, 2]).to_raw([2**70])", "IndexError", "out of range"),
        ("to_raw(1.5)", "IdMap([1, 2]).to_raw([1.5])", "TypeError", "integers"),
        ("uint64 map, negative query", "assert IdMap(np.array([2**64 - 1], np.uint64)).to_index([-1], "
         "missing='ignore')[0] == -1", None, ""),
):
    case("IdMap", arg, code, exc, frag)
SPL = "aerec.data"
for arg, code, exc, frag in (
        ("random_split test_fraction=1.5", f"{SPL}.random_split(inter, 1.5)", "ValueError", "test_fraction"),
        ("random_split test_fraction=nan", f"{SPL}.random_split(inter, float('nan'))", "ValueError",
         "test_fraction"),
        ("random_split random_state=None", f"{SPL}.random_split(inter, random_state=None)", "ValueError",
         "random_state"),
        ("random_split data=X", f"{SPL}.random_split(X)", "TypeError", "Interactions"),
        ("temporal_split no timestamps", f"{SPL}.temporal_split(inter)", "ValueError", "timestamps"),
        ("temporal_split n_test=0", f"{SPL}.temporal_split(inter_ts, n_test=0)", "ValueError", "n_test"),
        ("temporal_split n_test=1.5", f"{SPL}.temporal_split(inter_ts, n_test=1.5)", "ValueError", "n_test"),
        ("kfold_split n_folds=1", f"{SPL}.kfold_split(inter, 1)", "ValueError", "n_folds"),
        ("kfold_split n_folds=10**9", f"{SPL}.kfold_split(inter, 10**9)", "ValueError", "folds"),
        ("strong n_test_users=0", f"{SPL}.strong_generalization_split(inter, 1, 0)", "ValueError", "n_test_users"),
        ("strong too many users", f"{SPL}.strong_generalization_split(inter, 30, 30)", "ValueError", "training users"),
        ("strong fold_in_fraction=nan",
         f"{SPL}.strong_generalization_split(inter, 2, 2, fold_in_fraction=float('nan'))", "ValueError",
         "fold_in_fraction"),
        ("EvalSet corrupt fold_in",
         f"{SPL}.EvalSet(np.arange(n_users), bad_indptr_mid(X), X, True)", "ValueError", "indptr"),
        ("EvalSet rows mismatch", f"{SPL}.EvalSet(np.arange(3), X, X, True)", "ValueError", "rows"),
):
    case(arg.split(" ")[0], arg, code, exc, frag)

# ---------------------------------------------------------------------------------------------
# datasets

for arg, code, exc, frag in (
        ("name='ml-5m'", "aerec.datasets.movielens('ml-5m')", "ValueError", "unknown MovieLens"),
        ("name=['ml-100k']", "aerec.datasets.movielens(['ml-100k'])", "ValueError", "unknown MovieLens"),
        ("download=False, not there", "aerec.datasets.movielens('ml-1m', path=tmp, download=False)",
         "FileNotFoundError", "not found"),
        ("offline download", "aerec.datasets.movielens('ml-1m', path=tmp, opener=offline)", "ConnectionError",
         "ratings.dat"),
):
    case("datasets.movielens", arg, code, exc, frag)
for arg, code, exc, frag in (
        ("n_users=0", "aerec.datasets.synthetic(n_users=0)", "ValueError", "n_users"),
        ("n_users=2.5", "aerec.datasets.synthetic(n_users=2.5)", "ValueError", "n_users"),
        ("n_items=1", "aerec.datasets.synthetic(n_items=1)", "ValueError", "n_items"),
        ("density=nan", "aerec.datasets.synthetic(density=float('nan'))", "ValueError", "density"),
        ("density=2", "aerec.datasets.synthetic(density=2)", "ValueError", "density"),
        ("cluster_strength=nan", "aerec.datasets.synthetic(100, 50, cluster_strength=float('nan'))", "ValueError",
         "cluster_strength"),
        ("popularity_exponent=nan", "aerec.datasets.synthetic(100, 50, popularity_exponent=float('nan'))",
         "ValueError", "popularity_exponent"),
        ("time_span_days=inf", "aerec.datasets.synthetic(100, 50, time_span_days=float('inf'))", "ValueError",
         "time_span_days"),
        ("activity_sigma=inf", "aerec.datasets.synthetic(100, 50, activity_sigma=float('inf'))", "ValueError",
         "activity_sigma"),
):
    case("datasets.synthetic", arg, code, exc, frag)
case("datasets.download", "sha256 too short", "aerec.datasets.download('file:///x', os.path.join(tmp, 'x'), 'ab')",
     "ValueError", "sha256")

# ---------------------------------------------------------------------------------------------
# metrics and evaluate

MT = "aerec.metrics"
HO = "X[:3]"
for arg, code, exc, frag in (
        ("ranked 1-D", f"{MT}.recall_at_k(np.array([1, 2]), {HO}, 2)", "ValueError", "2-D"),
        ("ranked floats", f"{MT}.recall_at_k(np.ones((3, 2)), {HO}, 2)", "TypeError", "integer"),
        ("ranked id n_items", f"{MT}.ndcg_at_k(np.full((3, 2), n_items), {HO}, 2)", "ValueError", "out of range"),
        ("ranked id -2", f"{MT}.ndcg_at_k(np.full((3, 2), -2), {HO}, 2)", "ValueError", ">= -1"),
        ("ranked duplicates", f"{MT}.map_at_k(np.zeros((3, 2), int), {HO}, 2)", "ValueError", "repeats"),
        ("ranked rows mismatch", f"{MT}.recall_at_k(np.zeros((2, 2), int), {HO}, 2)", "ValueError", "align"),
        ("held_out dense", f"{MT}.recall_at_k(np.zeros((3, 2), int), dense[:3], 2)", "TypeError", "scipy.sparse"),
        ("held_out indptr corrupt", f"{MT}.recall_at_k(np.zeros((n_users, 2), int) - 1, bad_indptr_mid(X), 2)",
         "ValueError", "indptr"),
        ("held_out column 10**8", f"{MT}.precision_at_k(np.zeros((6, 2), int) - 1, bad_index(X[:6], 10**8), 2)",
         "ValueError", "column index"),
        ("k=0", f"{MT}.recall_at_k(np.array([[0, 1]] * 3), {HO}, 0)", "ValueError", "k must be positive (an integer >= 1)"),
        ("k=1.5", f"{MT}.recall_at_k(np.array([[0, 1]] * 3), {HO}, 1.5)", "TypeError", "k"),
        ("k=2**64 each metric (valid)",
         f"for f in ({MT}.recall_at_k, {MT}.precision_at_k, {MT}.map_at_k, {MT}.mrr, {MT}.hit_rate_at_k):\n"
         f"    f(np.array([[0, 1]] * 3), {HO}, 2**64)", None, ""),
        ("k=2**64 ndcg (valid)", f"v = {MT}.ndcg_at_k(np.array([[0, 1]] * 3), {HO}, 2**64)\nassert 0 <= v <= 1",
         None, ""),
        ("k=2**64 ranking_metrics (valid)",
         f"r = {MT}.ranking_metrics(np.array([[0, 1]] * 3), {HO}, ks=(2**64,))\nassert len(r) > 1", None, ""),
        ("ks=[]", f"{MT}.ranking_metrics(np.zeros((3, 2), int), {HO}, ks=[])", "ValueError", "ks"),
        ("ks=True", f"{MT}.ranking_metrics(np.zeros((3, 2), int), {HO}, ks=True)", "TypeError", "ks"),
        ("metrics=['auc']", f"{MT}.ranking_metrics(np.zeros((3, 2), int), {HO}, metrics=['auc'])", "ValueError",
         "unknown metric"),
        ("coverage n_items=0", f"{MT}.coverage(np.zeros((3, 2), int), 0)", "ValueError", "n_items"),
        ("rmse NaN", f"{MT}.rmse([1.0, np.nan], [1.0, 2.0])", "ValueError", "finite"),
        ("rmse empty", f"{MT}.rmse([], [])", "ValueError", "no ratings"),
        ("rmse lengths", f"{MT}.rmse([1.0], [1.0, 2.0])", "ValueError", "values"),
        ("rmse strings", f"{MT}.rmse(['a'], ['b'])", "TypeError", "real"),
        ("rmse sparse corrupt", f"{MT}.rmse(bad_indptr_mid(X), X)", "ValueError", "indptr"),
        ("mae sparse vs dense", f"{MT}.mae(X, dense)", "TypeError", "both"),
):
    case("metrics", arg, code, exc, frag)
EV = "aerec.evaluate"
for arg, code, exc, frag in (
        ("model without recommend", f"{EV}(object(), split)", "TypeError", "recommend"),
        ("split wrong type", f"{EV}(pop_raw, X)", "TypeError", "Split or EvalSet"),
        ("ks=0", f"{EV}(pop_raw, split, ks=0)", "ValueError", "positive"),
        ("ks=[1.5]", f"{EV}(pop_raw, split, ks=[1.5])", "ValueError", "positive"),
        ("ks=2**64 (valid)", f"r = {EV}(pop_raw, split, ks=2**64)\nassert r['n_users'] > 0", None, ""),
        ("batch_size=0", f"{EV}(pop_raw, split, batch_size=0)", "ValueError", "batch_size"),
        ("on='train'", f"{EV}(pop_raw, split, on='train')", "ValueError", "on must be"),
        ("on='validation' missing", f"{EV}(pop_raw, split, on='validation')", "ValueError", "no validation"),
):
    case("evaluate", arg, code, exc, frag)

# ---------------------------------------------------------------------------------------------
# command line (argparse exits with status 2 and a usage message)

CLI = "from aerec import cli\nrc = cli.main({argv!r})\nraise SystemExit(rc)"
for arg, argv, frag in (
        ("--user -1", ["recommend", "m.npz", "--user", "-1"], "2"),
        ("--user 2**70", ["recommend", "m.npz", "--user", str(2 ** 70)], "2"),
        ("--k 0", ["recommend", "m.npz", "--user", "1", "--k", "0"], "2"),
        ("--epochs -1", ["train", "--epochs", "-1"], "2"),
        ("--batch-size 0", ["train", "--batch-size", "0"], "2"),
        ("--density nan", ["demo", "--density", "nan"], "2"),
        ("--users abc", ["demo", "--users", "abc"], "2"),
        ("--threshold inf", ["train", "--threshold", "inf"], "2"),
        ("missing model file", ["recommend", "/nonexistent/m.npz", "--user", "1"], "2"),
        ("unknown command", ["fly"], "2"),
        ("--model Foo", ["train", "--model", "Foo"], "2"),
):
    case("cli.main", arg, CLI.format(argv=argv), "SystemExit", frag)

# ---------------------------------------------------------------------------------------------
# found by a generic sweep (every parameter x ~35 bad values): flags, options, sequences, seeds

ARR = "np.ones((2, 2))"
for entry, code, exc, frag in (
        ("metrics.recall_at_k(per_user=array)", f"{MT}.recall_at_k(np.array([[0, 1]] * 3), {HO}, 2, per_user={ARR})", 'TypeError', "per_user"),
        ("metrics.ranking_metrics(check_duplicates=array)", f"{MT}.ranking_metrics(np.array([[0, 1]] * 3), {HO}, check_duplicates={ARR})", 'TypeError', "check_duplicates"),
        ("evaluate(per_user=array)", f"aerec.evaluate(pop_raw, split, per_user={ARR})", 'TypeError', "per_user"),
        ("Interactions.binarize(drop_empty=array)", f"inter.binarize(drop_empty={ARR})", 'TypeError', "drop_empty"),
        ("Interactions.filter(iterative=array)", f"inter.filter(1, 1, iterative={ARR})", 'TypeError', "iterative"),
        ("Interactions.to_arrays(raw_ids=array)", f"inter.to_arrays(raw_ids={ARR})", 'TypeError', "raw_ids"),
        ("Interactions.from_csr(explicit=array)", f"Interactions.from_csr(X, explicit={ARR})", 'TypeError', "explicit"),
        ("datasets.synthetic(return_truth=array)", f"aerec.datasets.synthetic(50, 20, return_truth={ARR})", 'TypeError', "return_truth"),
        ("datasets.movielens(download=array)", f"aerec.datasets.movielens('ml-100k', path=tmp, download={ARR})", 'TypeError', "download"),
        ("EarlyStopping(restore_best_weights=array)", f"aerec.EarlyStopping(restore_best_weights={ARR})", 'TypeError', "restore_best_weights"),
        ("EASE(verbose=array).fit", f"aerec.EASE(verbose={ARR})", 'TypeError', "verbose"),
        ("MultDAE.fit(verbose=array)", f"aerec.MultDAE(latent=4, epochs=1).fit(X, verbose={ARR})", 'TypeError', "verbose"),
        ("Autoencoder.fit(verbose=array)", f"aerec.Autoencoder(hidden=(4,)).fit(xd, verbose={ARR})", 'TypeError', "verbose"),
        ("AutoRec(kind=array)", f"aerec.AutoRec(kind={ARR})", 'ValueError', "kind"),
        ("EASE(backend=array)", f"aerec.EASE(backend={ARR})", 'TypeError', "backend"),
        ("TopK(backend=array)", f"aerec.TopK(items, backend={ARR})", 'TypeError', "backend"),
        ("EarlyStopping(mode=array)", f"aerec.EarlyStopping(mode={ARR})", 'ValueError', "mode"),
        ("IdMap.to_index(missing=array)", f"IdMap([1]).to_index([1], missing={ARR})", 'ValueError', "missing"),
        ("Interactions.from_arrays(duplicates=array)", f"Interactions.from_arrays([1], [1], duplicates={ARR})", 'ValueError', "duplicates"),
        ("evaluate(on=array)", f"aerec.evaluate(pop_raw, split, on={ARR})", 'ValueError', "on must be"),
        ("read_csv(header=array)", f"Interactions.read_csv(files['bom'], header={ARR})", 'ValueError', "header"),
):
    case(entry.split("(")[0], entry, code, exc, frag)
for entry, code, exc, frag in (
        ("Autoencoder(hidden=None)", "aerec.Autoencoder(hidden=None)", "ValueError", "hidden"),
        ("Autoencoder(hidden=1.5)", "aerec.Autoencoder(hidden=1.5)", "ValueError", "hidden"),
        ("Autoencoder(hidden=2**70)", "aerec.Autoencoder(hidden=(2**70,))", "ValueError", "hidden"),
        ("Autoencoder(activation=3)", "aerec.Autoencoder(activation=3)", "TypeError", "activation"),
        ("Autoencoder(dropout=None)", "aerec.Autoencoder(dropout=None)", "TypeError", "dropout"),
        ("Autoencoder.fit(callbacks=3)", "aerec.Autoencoder(hidden=(4,)).fit(xd, callbacks=3)", "TypeError",
         "callbacks"),
        ("MultDAE(hidden=2**70)", "aerec.MultDAE(hidden=(2**70,), latent=4, epochs=1).fit(X)", "ValueError",
         "hidden"),
        ("CDAE(latent=np.uint64 max)", "aerec.CDAE(latent=np.uint64(2**64 - 1), epochs=1).fit(X)", "ValueError",
         "latent"),
        ("AutoRec(dropout=1j)", "aerec.AutoRec(hidden=4, epochs=1, dropout=1j).fit(R)", "TypeError", "dropout"),
        ("AutoRec(learning_rate=1e308)", "aerec.AutoRec(hidden=4, epochs=2, learning_rate=1e308).fit(R)",
         "FloatingPointError", "diverged"),
        ("ranking_metrics(metrics=None)", f"{MT}.ranking_metrics(np.array([[0, 1]] * 3), {HO}, metrics=None)",
         "TypeError", "metrics"),
        ("ranking_metrics(metrics=[[]])", f"{MT}.ranking_metrics(np.array([[0, 1]] * 3), {HO}, metrics=[[]])",
         "TypeError", "metrics"),
        ("evaluate(metrics=3)", "aerec.evaluate(pop_raw, split, metrics=3)", "TypeError", "metrics"),
        ("metrics(ranked=sparse)", f"{MT}.recall_at_k(sp.csr_matrix((3, 2)), {HO}, 2)", "TypeError", "ranked"),
        ("coverage(n_items=2**70)", f"v = {MT}.coverage(np.array([[0, 1]] * 3), 2**70)\nassert v > 0", None, ""),
        ("read_csv(columns=3)", "Interactions.read_csv(files['bom'], columns=3)", "TypeError", "columns"),
        ("TopK.search(exclude=3)", "index.search(q, 3, exclude=3)", "TypeError", "exclude"),
        ("random_split(random_state=-1)", "aerec.data.random_split(inter, random_state=-1)", "ValueError",
         "random_state"),
        ("synthetic(random_state=-1)", "aerec.datasets.synthetic(50, 20, random_state=-1)", "ValueError",
         "random_state"),
        ("synthetic(activity_sigma=-0.0)", "aerec.datasets.synthetic(50, 20, activity_sigma=-0.0)", None, ""),
        ("synthetic(n_users=2**70)", "aerec.datasets.synthetic(n_users=2**70)", "ValueError", "n_users"),
        ("random_split(test_fraction=None)", "aerec.data.random_split(inter, None)", "TypeError", "test_fraction"),
        ("strong split(fold_in_fraction='x')",
         "aerec.data.strong_generalization_split(inter, 2, 2, fold_in_fraction='x')", "TypeError",
         "fold_in_fraction"),
        ("strong split(n_test_users=uint64 max)",
         "aerec.data.strong_generalization_split(inter, 2, np.uint64(2**64 - 1))", "ValueError", "training users"),
        ("temporal_split(n_test=2**70)", "s = aerec.data.temporal_split(inter_ts, n_test=2**70)\n"
         "assert s.train.nnz >= s.train.n_users", None, ""),
        ("binarize(threshold='x')", "inter_ts.binarize('x')", "TypeError", "threshold"),
        ("EarlyStopping(min_delta='x')", "aerec.EarlyStopping(min_delta='x')", "TypeError", "min_delta"),
        ("IdMap.identity(inf)", "IdMap.identity(float('inf'))", "TypeError", "n"),
        ("IdMap.identity(2**70)", "IdMap.identity(2**70)", "ValueError", "n must be"),
        ("IdMap.subset(2**70)", "IdMap([1, 2]).subset([2**70])", "IndexError", "out of range"),
        ("movielens(cache_dir=True)", "aerec.datasets.movielens('ml-100k', cache_dir=True, download=False)",
         "TypeError", "cache_dir"),
        ("recommend(user_ids=object array)", "i, s = pop.recommend(np.array([1, 2], dtype=object), k=2)\n"
         "assert i.shape == (2, 2)", None, ""),
        ("recommend(user_ids=2-D object array)", "pop.recommend(np.array([[1, 2]], dtype=object), k=2)",
         "ValueError", "1-D"),
        ("Interactions.from_arrays(ids [1, 'a'])", "Interactions.from_arrays([1, 'a'], [1, 2])", "TypeError", "mix"),
):
    case(entry.split("(")[0], entry, code, exc, frag)

# backends' gemm (one check for every backend), config, files
for be in ("cpp", "numpy"):
    g = f"aerec.backends.get({be!r}).gemm"
    for arg, code, exc, frag in (
            ("num_threads=2**40", f"{g}(xd, xd.T, num_threads=2**40)", "ValueError", "num_threads"),
            ("alpha=nan", f"{g}(xd, xd.T, alpha=float('nan'))", "ValueError", "finite"),
            ("alpha='x'", f"{g}(xd, xd.T, alpha='x')", "TypeError", "alpha"),
            ("trans_a='yes'", f"{g}(xd, xd, trans_a='yes')", "TypeError", "trans_a"),
            ("a object", f"{g}(np.array([[object()]]), xd)", "TypeError", "dtype"),
            ("shapes", f"{g}(xd, xd)", "ValueError", "align"),
            ("activation='swish'", f"{g}(xd, xd.T, activation='swish')", "ValueError", "activation"),
            ("bias wrong length", f"{g}(xd, xd.T, bias=np.ones(3))", "ValueError", "bias"),
            ("0 rows (valid)", f"assert {g}(xd[:0], xd.T).shape == (0, 30)", None, ""),
    ):
        case(f"backends.{be}.gemm", arg, code, exc, frag)
case("show_config", "file=3", "aerec.show_config(file=3)", "TypeError", "write")
case("backends.get", "name='x'", "aerec.backends.get('x')", "ValueError", "unknown backend")
case("backends.get", "name=None", "aerec.backends.get(None)", "TypeError", "backend")
case("Interactions.read_csv", "ragged rows (numpy engine)",
     "aerec.data.readers.read_columns(files['ragged'], engine='numpy')", "ValueError", "same number of fields")
case("AutoRec.fit", "validation of another shape", "aerec.AutoRec(hidden=4, epochs=1).fit(R, validation=R[:5])",
     "ValueError", "same users and items")

# up-front memory guards (RLIMIT_AS caps the process, so the guard must refuse before allocating)
for entry, code, frag in (
        ("Autoencoder.fit", "limited(lambda: aerec.Autoencoder(hidden=(2**26,)).fit(xd, epochs=1))", "hidden"),
        ("MultDAE.fit", "limited(lambda: aerec.MultDAE(hidden=(2**24,), latent=4, epochs=1).fit(X))", "parameters"),
        ("CDAE.fit", "limited(lambda: aerec.CDAE(latent=2**24, epochs=1).fit(X))", "parameters"),
        ("AutoRec.fit", "limited(lambda: aerec.AutoRec(hidden=2**24, epochs=1).fit(R))", "AutoRec"),
        ("AutoRec.fit", "big = sp.csr_matrix((np.ones(2, np.float32), ([0, 90000], [0, 9000])), shape=(90001, 9001))\n"
         "limited(lambda: aerec.AutoRec(hidden=4, epochs=1).fit(big))", "held dense"),
        ("EASE.fit", "big = sp.csr_matrix((np.ones(2, np.float32), ([0, 1], [0, 20000])), shape=(2, 20001))\n"
         "limited(lambda: aerec.EASE().fit(big))", "filter rare items"),
        ("datasets.synthetic", "limited(lambda: aerec.datasets.synthetic(n_users=10**8, n_items=2000))", "fewer users"),
):
    case(entry, f"memory guard: {code.splitlines()[-1][16:60]}", code, "MemoryError", frag)
case("cli.main", "train --model AutoRec (held-out users)",
     "from aerec import cli\nrc = cli.main(['train', '--model', 'AutoRec', '--users', '40', '--items', '12', "
     "'--density', '0.4', '--epochs', '1', '--heldout-users', '2'])\nassert rc == 0, rc", None)
for m, name in MODELS.items():
    case(f"{name}.recommend", "filter_items per batch == all at once",
         f"a = {m}.recommend(np.arange(12), k=6, filter_items=[3, 1, 3, 7], batch_size=5)\n"
         f"b = {m}.recommend(np.arange(12), k=6, filter_items=[1, 3, 7])\n"
         "assert (a[0] == b[0]).all() and not np.isin(a[0], [1, 3, 7]).any()", None)
case("IdMap", "None id", "IdMap([None])", "TypeError", "integers or strings")
case("Interactions.from_csr", "values beyond float32", "T = sp.csr_matrix(dense.astype(np.float64)); T.data[0] = 1e300\n"
     "Interactions.from_csr(T)", "ValueError", "overflow float32")

# ---------------------------------------------------------------------------------------------
# found by the independent sweep (tests/sweep_independent.py)

# explicit zeros are no interactions (they were: binarised training, seen-item filters and fold-in
# histories counted a stored 0 as a 1); COO duplicates are refused like CSR ones (they were summed)
ZERO_AT = "j0 = [c for c in range(n_items) if c not in X[2].indices][0]\n"
for m, name in MODELS.items():
    hist = "R" if m in ("ari", "aru") else "X"
    if m in FOLD_IN:
        rec = f"{name}.recommend"
        case(rec, "user_items explicit zero is no interaction",
             ZERO_AT + f"h = {hist}[[2]].tocoo()\n"
             "z = sp.csr_matrix((np.r_[h.data, 0.0], (np.r_[h.row, 0], np.r_[h.col, j0])), shape=(1, n_items))\n"
             f"assert z.nnz == h.nnz + 1\na = {m}.recommend(user_items=z, k=n_items)\n"
             f"b = {m}.recommend(user_items={hist}[[2]], k=n_items)\n"
             "assert (a[0] == b[0]).all() and np.array_equal(a[1], b[1]) and j0 in a[0]", None)
        case(rec, "user_items bsr (blocks store zeros)",
             f"a = {m}.recommend(user_items={hist}[:3].tobsr(blocksize=(1, 5)), k=6)[0]\n"
             f"b = {m}.recommend(user_items={hist}[:3], k=6)[0]\nassert (a == b).all()", None)
        case(rec, "user_items coo duplicates",
             f"h = {hist}[[0]].tocoo()\n"
             "D = sp.coo_matrix((np.r_[h.data, h.data[:1]], (np.r_[h.row, h.row[:1]], np.r_[h.col, h.col[:1]])), "
             f"shape=h.shape)\n{m}.recommend(user_items=D, k=3)", "ValueError", "duplicate")
    fit = f"{MODELS[m]}.fit"
    make = {"pop": "aerec.Popularity()", "ease": "aerec.EASE(l2=10.0)",
            "dae": "aerec.MultDAE(hidden=(8,), latent=4, epochs=1, random_state=0)",
            "vae": "aerec.MultVAE(hidden=(8,), latent=4, epochs=1, random_state=0)",
            "cdae": "aerec.CDAE(latent=4, epochs=1, random_state=0)",
            "ari": "aerec.AutoRec(hidden=6, epochs=1, random_state=0)",
            "aru": "aerec.AutoRec(kind='user', hidden=6, epochs=1, random_state=0)"}[m]
    case(fit, "train explicit zeros are no interactions",
         ZERO_AT + f"T = {hist}.tocoo()\n"
         f"Z = sp.csr_matrix((np.r_[T.data, 0.0], (np.r_[T.row, 2], np.r_[T.col, j0])), shape={hist}.shape)\n"
         f"assert Z.nnz == {hist}.nnz + 1\na = {make}.fit(Z); b = {make}.fit({hist})\n"
         "assert np.allclose(a.score_items(np.arange(n_users)), b.score_items(np.arange(n_users)), atol=1e-6)\n"
         "assert a.train_.nnz == b.train_.nnz", None)
    case(fit, "train coo duplicates",
         f"T = {hist}.tocoo()\n"
         "D = sp.coo_matrix((np.r_[T.data, T.data[:1]], (np.r_[T.row, T.row[:1]], np.r_[T.col, T.col[:1]])), "
         f"shape=T.shape)\n{make}.fit(D)", "ValueError", "duplicate")
    case(fit, "train all explicit zeros",
         f"{make}.fit(sp.csr_matrix((np.zeros(3, np.float32), (np.arange(3), np.arange(3))), shape=(4, 4)))",
         "ValueError", "need at least one")

# ids: sets and iterators where order does not matter, a hint for boolean masks
for m, name in MODELS.items():
    rec = f"{name}.recommend"
    case(rec, "filter_items set",
         f"i, s = {m}.recommend(0, k=n_items, filter_items={{1, 2, 3}})\nassert not set(i.tolist()) & {{1, 2, 3}}",
         None)
    case(rec, "items generator",
         f"a = {m}.recommend([0, 1], k=3, items=(j for j in range(5)))[0]\n"
         f"assert (a == {m}.recommend([0, 1], k=3, items=[0, 1, 2, 3, 4])[0]).all()", None)
    case(rec, "filter_items dict keys",
         f"i, s = {m}.recommend(0, k=n_items, filter_items={{4: 'a', 6: 'b'}}.keys())\n"
         "assert not set(i.tolist()) & {4, 6}", None)
    case(rec, "user_ids set (no order)", f"{m}.recommend({{1, 2}}, k=3)", "TypeError", "sorted(user_ids)")
    case(rec, "items boolean mask", f"{m}.recommend(0, k=3, items=np.ones(n_items, bool))", "TypeError",
         "np.flatnonzero(mask)")
case("Popularity.similar_items", "item_ids set (no order)", "pop.similar_items({1, 2})", "TypeError",
     "sorted(item_ids)")

# bytes paths (os.fspath keeps bytes; the writer then failed deep inside on str.startswith)
for m, name in MODELS.items():
    case(f"{name}.save", "bytes path",
         f"p = os.path.join(tmp, 'bytes_{m}.npz').encode()\n{m}.save(p)\nl = aerec.load(p)\n"
         f"assert (l.recommend([0, 1], k=3)[0] == {m}.recommend([0, 1], k=3)[0]).all()", None)
case("TopK.save", "bytes path", "p = os.path.join(tmp, 'bytes_topk.npz').encode()\nindex.save(p)\n"
     "assert (aerec.TopK.load(p).search(q, 3)[0] == index.search(q, 3)[0]).all()", None)
case("Autoencoder.save", "bytes path", "p = os.path.join(tmp, 'bytes_ae.npz').encode()\nae.save(p)\n"
     "assert np.allclose(aerec.load(p).predict(xd), ae.predict(xd))", None)

# messages that now say what to do
case("Interactions.from_arrays", "users None", "Interactions.from_arrays(None, [1])", "TypeError", "users is None")
case("datasets.synthetic", "min_user_interactions over the cap", "aerec.datasets.synthetic(n_users=1, n_items=2)",
     "ValueError", "pass min_user_interactions <= 1")
case("datasets.synthetic", "1 user x 2 items (valid)",
     "d = aerec.datasets.synthetic(n_users=1, n_items=2, min_user_interactions=1)\nassert d.nnz >= 1", None)
case("Autoencoder.fit", "refit on another width", "a = aerec.Autoencoder(hidden=(4,), random_state=0)\n"
     "a.fit(xd, epochs=1)\na.fit(xd[:, :3], epochs=1)", "ValueError", "create a new Autoencoder")

# round 2 of the sweep: EvalSet ids, subset_users duplicates, recommend_raw's item lists
case("EvalSet", "users floats (were truncated)", "aerec.data.EvalSet(np.array([0.5, 1.5]), X[:2], X[2:4], True)",
     "TypeError", "integer user ids")
case("EvalSet", "users 0-d", "aerec.data.EvalSet(np.int64(0), X[:1], X[:1], True)", "ValueError", "1-D")
case("EvalSet", "users [] (valid)", "assert aerec.data.EvalSet([], X[:0], X[:0], True).n_users == 0", None)
case("EvalSet", "fold_in coo duplicates reach evaluate",
     "c = X[:2].tocoo()\n"
     "F = sp.coo_matrix((np.r_[c.data, 1.0], (np.r_[c.row, c.row[0]], np.r_[c.col, c.col[0]])), shape=c.shape)\n"
     "aerec.evaluate(pop, aerec.data.EvalSet(np.array([0, 1]), F, X[2:4], True), ks=(3,))", "ValueError", "duplicate")
case("Interactions.subset_users", "duplicate users", "inter.subset_users([3, 1, 3])", "ValueError", "np.unique")
case("Popularity.recommend_raw", "items as raw ids",
     "i, s = pop_raw.recommend_raw('u1', k=3, items=['i3', 'i5', 'i6'])\n"
     "w = pop_raw.recommend(1, k=3, items=[3, 5, 6])[0]\n"
     "assert [x for x in i if x is not None] == [f'i{j}' for j in w if j >= 0]", None)
case("Popularity.recommend_raw", "filter_items raw set",
     "i, s = pop_raw.recommend_raw('u1', k=n_items, filter_items={'i3', 'i5'})\nassert not {'i3', 'i5'} & set(i.tolist())",
     None)
case("Popularity.recommend_raw", "items unknown raw id", "pop_raw.recommend_raw('u1', k=3, items=['nope'])",
     "UnknownIdError", "raw item ids")

# round 3: item_vectors before fit (was a bare AttributeError), Popularity scores (were a read-only
# broadcast view whose rows share memory)
for m, name in MODELS.items():
    make = FIT[m]
    case(f"{name}.item_vectors", "before fit", f"{make}.item_vectors()", "RuntimeError", "not fitted")
case("Popularity.score", "writable, rows independent",
     "s = pop.score_items([0, 1])\ns[0, 0] = -np.inf\nassert s[1, 0] != -np.inf and not np.shares_memory(s, pop.item_counts_)\n"
     "assert np.array_equal(pop.score_items([1]), s[1:])", None)

# round 4: sparse components that are strided, big-endian or of a non-canonical float32 dtype reach
# the kernels as contiguous native arrays (EASE's SpMM refused strided ones with "CSR arrays must be
# 1-D contiguous", scipy refused big-endian ones in from_csr)
LAYOUTS = {
    "strided data": "c = H.copy(); c.data = np.repeat(c.data, 2)[::2]",
    "strided indices": "c = H.copy(); c.indices = np.repeat(c.indices, 2)[::2]",
    "big-endian data and indices": "c = H.copy(); c.data = c.data.astype('>f4'); c.indices = c.indices.astype('>i4')",
    "non-canonical float32 dtype": "c = H.copy(); c.data = c.data.view(np.dtype('>f4').newbyteorder('='))",
    "coo big-endian strided": "c = H.tocoo(); c.row = np.repeat(c.row, 2)[::2].astype('>i8'); c.data = c.data.astype('>f4')",
}
for lay, build in LAYOUTS.items():
    case("EASE.recommend", f"user_items {lay}",
         f"H = X[[0, 5, 9]].astype(np.float32)\n{build}\n"
         "a = ease.recommend(user_items=c, k=6); b = ease.recommend(user_items=H, k=6)\n"
         "assert (a[0] == b[0]).all() and np.allclose(a[1], b[1])", None)
    case("Interactions.from_csr", lay, f"H = X.copy()\n{build}\n"
         "assert (Interactions.from_csr(c).to_csr() != Interactions.from_csr(X).to_csr()).nnz == 0", None)
case("EASE.fit", "dense non-canonical float32 dtype",
     "a = aerec.EASE(l2=10.0).fit(dense.view(np.dtype('>f4').newbyteorder('=')))\n"
     "assert np.allclose(a.B_, ease.B_)", None)

# the full training matrix with every user id in another order: the matrix's rows are training
# users (each user was filtered and scored with another user's history)
for m, name in MODELS.items():
    hist = "R" if m in ("ari", "aru") else "X"
    case(f"{name}.recommend", "training matrix + all user ids permuted",
         f"ids = np.arange(n_users)[::-1].copy()\na = {m}.recommend(ids, user_items={hist}, k=4)\n"
         f"b = {m}.recommend(ids, k=4)\nassert (a[0] == b[0]).all() and np.allclose(a[1], b[1])", None)
case("Popularity.recommend", "one history row per id, all ids permuted",
     "ids = np.arange(n_users)[::-1].copy()\nH = X[ids]\na = pop.recommend(ids, user_items=H, k=4)[0]\n"
     "assert (a == pop.recommend(ids, k=4)[0]).all()", None)
case("Interactions.read_csv", "a directory", "Interactions.read_csv(tmp)", "IsADirectoryError", "is a directory")
case("Popularity.recommend", "user ids with NaN (missing)", "pop.recommend(np.array([1.0, np.nan]), k=3)", "TypeError",
     "missing id")

# first contact: serving artefacts, raw-id histories, similar_items_raw, user_vectors
case("Popularity.save", "include_history='no'", "pop.save(os.path.join(tmp, 'ih.npz'), include_history='no')",
     "TypeError", "include_history")
case("AutoRec.save", "include_history=False", "ari.save(os.path.join(tmp, 'ih.npz'), include_history=False)",
     "ValueError", "include_history=True")
case("Popularity.recommend", "user ids on a file without history",
     "p = os.path.join(tmp, 'slim.npz'); pop.save(p, include_history=False)\naerec.load(p).recommend(0)",
     "ValueError", "user_items=")
case("Popularity.recommend_raw", "history unknown raw item", "pop_raw.recommend_raw(history=['i1', 'nope'])",
     "UnknownIdError", "ignore_unknown=True")
case("Popularity.recommend_raw", "history a string", "pop_raw.recommend_raw(history='i1')", "TypeError",
     "list of raw item ids")
case("Popularity.recommend_raw", "history and user", "pop_raw.recommend_raw('u1', history=['i1'])", "ValueError",
     "not both")
case("Popularity.recommend_raw", "items without user", "pop_raw.recommend_raw(items=['i1'])", "TypeError",
     "history=[")
case("Popularity.recommend_raw", "ignore_unknown=2", "pop_raw.recommend_raw(history=['i1'], ignore_unknown=2)",
     "TypeError", "ignore_unknown")
case("Popularity.recommend_raw", "history valid",
     "i, s = pop_raw.recommend_raw(history=['i1', 'i2'], k=3)\nassert len(i) == 3 and 'i1' not in i.tolist()", None)
case("Popularity.similar_items_raw", "unknown raw id", "pop_raw.similar_items_raw('nope')", "UnknownIdError",
     "raw item ids")
case("Popularity.similar_items_raw", "model fitted on a matrix", "pop.similar_items_raw('i1')", "ValueError",
     "raw id maps")
case("Popularity.similar_items_raw", "a set", "pop_raw.similar_items_raw({'i1'})", "TypeError", "list")
case("MultDAE.user_vectors", "unknown user", "dae.user_vectors([n_users + 5])", "UnknownIdError", "unknown")
case("MultDAE.user_vectors", "before fit", "aerec.MultDAE().user_vectors([0])", "RuntimeError", "not fitted")
case("ReduceLROnPlateau", "factor=1", "aerec.ReduceLROnPlateau(factor=1)", "ValueError", "factor")
case("ReduceLROnPlateau", "min_lr=-1", "aerec.ReduceLROnPlateau(min_lr=-1)", "ValueError", "min_lr")
case("ReduceLROnPlateau", "monitor=3", "aerec.ReduceLROnPlateau(monitor=3)", "TypeError", "monitor")
case("MultDAE.fit", "validation a 3-tuple", "aerec.MultDAE(epochs=1).fit(X, validation=(X, X, X))", "ValueError",
     "(fold_in, held_out)")
case("MultDAE.fit", "validation pair of other widths",
     "aerec.MultDAE(epochs=1).fit(X, validation=(X[:, :3], X[:, :3]))", "ValueError", "validation fold_in")
case("MultDAE.fit", "verbose='yes'", "aerec.MultDAE(epochs=1).fit(X, verbose='yes')", "ValueError", "'auto'")
case("EASE.fit", "unknown keyword epochs", "aerec.EASE().fit(X, epochs=3)", "TypeError", "closed form")
case("EASE.fit", "validation a matrix", "aerec.EASE().fit(X, validation=X)", "TypeError", "EvalSet or Split")
case("EASE(solver=...)", "solver='fast'", "aerec.EASE(solver='fast')", "ValueError", "'dual'")
case("MultVAE.fit", "total_anneal_steps='soon'", "aerec.MultVAE(epochs=1, total_anneal_steps='soon').fit(X)",
     "ValueError", "'auto'")
case("MultDAE.fit", "a DataFrame of rows",
     "import pandas as pd\naerec.MultDAE(epochs=1).fit(pd.DataFrame({'u': [1, 2], 'i': [3, 4]}))", "TypeError",
     "aerec.data.from_dataframe")
case("Popularity.fit", "unknown keyword", "aerec.Popularity().fit(X, epochs=2)", "TypeError", "unexpected keyword")

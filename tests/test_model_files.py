"""Crafted model files: for every saved class (Autoencoder, AutoRec item/user, MultDAE, MultVAE,
CDAE, EASE, Popularity, search.TopK) a tiny fitted model is saved, then corrupted one way per row
(a header field, an array's values, dtype or shape, the zip structure, the path itself) and loading
must raise ``aerec.ModelFileError`` (or the documented error) with a message naming the problem.
Untampered files (and harmless variants: Fortran order, no ``dims``, a symlink) round-trip with
identical outputs. Also: a decompression bomb stays small in memory, and the temporary file of a
save killed with SIGKILL is cleaned up by the next save."""
from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import zipfile

import numpy as np
import pytest
import scipy.sparse as sp

import aerec
from aerec import io as aio
from aerec.models.autorec import AutoRec
from aerec.models.baselines import EASE, Popularity
from aerec.models.sparse_autoencoders import CDAE, MultDAE, MultVAE
from aerec.search import TopK

ModelFileError = aerec.ModelFileError
HERE = os.path.dirname(os.path.abspath(__file__))
# the aerec this pytest imports (source checkout or installed wheel), for subprocesses
PYTHON_DIR = os.path.dirname(os.path.dirname(os.path.abspath(aerec.__file__)))


# ----------------------------------------------------------------------------------------------
# tiny fitted models

def _clustered(n_users=40, n_items=24, seed=0):
    rng = np.random.default_rng(seed)
    uc = rng.integers(0, 3, n_users)
    p = np.where(uc[:, None] == (np.arange(n_items) % 3)[None, :], 0.4, 0.03)
    dense = (rng.random((n_users, n_items)) < p).astype(np.float32)
    dense[dense.sum(1) == 0, 0] = 1
    return sp.csr_matrix(dense)


def _ratings(n_users=30, n_items=20, seed=1):
    rng = np.random.default_rng(seed)
    full = rng.integers(1, 6, (n_users, n_items)).astype(np.float32)
    mask = rng.random((n_users, n_items)) < 0.35
    mask[:, 0] = True
    return sp.csr_matrix(np.where(mask, full, 0).astype(np.float32))


X = _clustered()
R = _ratings()
DENSE = np.random.default_rng(2).random((30, 6), dtype=np.float32)
V = np.random.default_rng(3).normal(size=(50, 6)).astype(np.float32)
B = np.random.default_rng(4).normal(size=50).astype(np.float32)
Q = np.random.default_rng(5).normal(size=(7, 6)).astype(np.float32)

FACTORIES = {
    "Autoencoder": lambda: aerec.Autoencoder(hidden=(4,)).fit(DENSE, epochs=2),
    "AutoRec-item": lambda: AutoRec(hidden=6, epochs=2, batch_size=8).fit(R),
    "AutoRec-user": lambda: AutoRec(kind="user", hidden=6, epochs=2, batch_size=8).fit(R),
    "MultDAE": lambda: MultDAE(hidden=(12,), latent=4, epochs=2, batch_size=16).fit(X),
    "MultVAE": lambda: MultVAE(hidden=(12,), latent=4, epochs=2, batch_size=16, total_anneal_steps=10).fit(X),
    "CDAE": lambda: CDAE(latent=6, epochs=2, batch_size=16).fit(X),
    "EASE": lambda: EASE(l2=5.0).fit(X),
    "Popularity": lambda: Popularity().fit(X),
    "TopK": lambda: TopK(V, bias=B, prune=True),
    "TopK-cosine": lambda: TopK(V, metric="cosine", precision="int8"),
}
MODELS = list(FACTORIES)
RECOMMENDERS = [m for m in MODELS if m not in ("Autoencoder", "TopK", "TopK-cosine")]
CLASS_OF = {"Autoencoder": aerec.Autoencoder, "AutoRec-item": AutoRec, "AutoRec-user": AutoRec,
            "MultDAE": MultDAE, "MultVAE": MultVAE, "CDAE": CDAE, "EASE": EASE, "Popularity": Popularity,
            "TopK": TopK, "TopK-cosine": TopK}
#: the main float array of each file, and a numeric header field (path of keys)
WEIGHT = {m: "encoder.0.weight" for m in MODELS} | {"EASE": "B_", "Popularity": "item_counts_", "TopK": "items",
                                          "TopK-cosine": "items"}
NUMBER = {"Autoencoder": ("params", "learning_rate"), "AutoRec-item": ("params", "l2"),
          "AutoRec-user": ("seed",), "MultDAE": ("params", "l2"), "MultVAE": ("params", "anneal_cap"),
          "CDAE": ("params", "negative_samples"), "EASE": ("params", "l2"), "Popularity": ("dims", "n_items"),
          "TopK": ("rescore",), "TopK-cosine": ("dim",)}


def outputs(name, model):
    """What a loaded model must reproduce exactly."""
    if name == "Autoencoder":
        return [model.predict(DENSE), model.encode(DENSE)]
    if name.startswith("TopK"):
        return list(model.search(Q, 5))
    out = list(model.recommend(np.arange(6), k=5))
    if model.supports_fold_in:
        out += list(model.recommend(user_items=model.train_[:3], k=4))
    if name.startswith("AutoRec"):
        out.append(model.predict_ratings(np.arange(5), np.arange(5)))
    if name not in ("Popularity",):
        out += list(model.similar_items(np.arange(3), k=3))
    return out


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """name -> (path, raw bytes, expected outputs)."""
    folder = tmp_path_factory.mktemp("models")
    out = {}
    for name, make in FACTORIES.items():
        model = make()
        path = folder / f"{name}.npz"
        model.save(path)
        out[name] = (path, path.read_bytes(), outputs(name, model))
    return out


def assert_same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


# ----------------------------------------------------------------------------------------------
# crafting files

def npy(a, allow_pickle=False):
    buf = io.BytesIO()
    np.lib.format.write_array(buf, a, allow_pickle=allow_pickle)
    return buf.getvalue()


def raw_npy(descr, shape, fortran=False, data=b"", version=b"\x01\x00"):
    """A .npy member with an arbitrary (even invalid) header."""
    head = repr({"descr": descr, "fortran_order": fortran, "shape": shape}).encode()
    head += b" " * ((64 - (10 + len(head) + 1) % 64) % 64) + b"\n"
    return b"\x93NUMPY" + version + len(head).to_bytes(2, "little") + head + data


def unpack(raw):
    with zipfile.ZipFile(io.BytesIO(raw)) as z:
        arrays = {n[:-4]: np.load(io.BytesIO(z.read(n)), allow_pickle=False) for n in z.namelist()}
    meta = json.loads(arrays.pop("__aerec_meta__").tobytes())
    return meta, arrays


def zip_members(members, compress=zipfile.ZIP_STORED):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compress) as z:
        for name, data in members:
            z.writestr(name, data)
    return buf.getvalue()


def pack(meta, arrays, redigest=True, extra=(), header=None):
    """A model file from (meta, arrays). ``redigest``: recompute the SHA-256 as a deliberate tamperer
    would (so only the validation can catch it)."""
    meta = dict(meta)
    if redigest:
        meta.pop("sha256", None)
        meta["sha256"] = aio._digest(meta, arrays)
    text = header if header is not None else json.dumps(meta).encode()
    members = [("__aerec_meta__.npy", npy(np.frombuffer(text, np.uint8)))]
    members += [(f"{k}.npy", v if isinstance(v, bytes) else npy(v)) for k, v in arrays.items()]
    return zip_members(members + list(extra))


def _set(d, keys, value):
    for k in keys[:-1]:
        d = d[k]
    d[keys[-1]] = value


def _del(d, keys):
    for k in keys[:-1]:
        d = d[k]
    del d[keys[-1]]


# Each row: (case id, models it applies to, craft(name, raw, meta, arrays) -> bytes, exception, fragment)
ALL = MODELS


def H(fn):
    """Mutate the header (digest recomputed)."""
    def craft(name, raw, meta, arrays):
        fn(name, meta)
        return pack(meta, arrays)
    return craft


def A(fn, redigest=True):
    """Mutate the arrays (digest recomputed unless told)."""
    def craft(name, raw, meta, arrays):
        fn(name, arrays)
        return pack(meta, arrays, redigest=redigest)
    return craft


def RAW(fn):
    def craft(name, raw, meta, arrays):
        return fn(name, raw, meta, arrays)
    return craft


def _nan(name, arrays, key=None):
    a = arrays[key or WEIGHT[name]].copy()
    a.flat[0] = np.nan
    arrays[key or WEIGHT[name]] = a


class _Evil:
    def __reduce__(self):  # would create a marker file if anything ever unpickled it
        return (open, (os.path.join(os.environ.get("AEREC_TEST_MARKER_DIR", "/nonexistent"), "pwned"), "w"))


def _pickled(name, raw, meta, arrays):
    obj = np.empty(2, dtype=object)
    obj[0] = _Evil()
    return _swap_member(name, raw, WEIGHT[name], npy(obj, allow_pickle=True))


def _swap_member(name, raw, key, data):
    with zipfile.ZipFile(io.BytesIO(raw)) as z:
        members = [(n, z.read(n)) for n in z.namelist()]
    return zip_members([(n, data if n == f"{key}.npy" else d) for n, d in members])


def _deflated(name, raw, meta, arrays):
    with zipfile.ZipFile(io.BytesIO(raw)) as z:
        members = [(n, z.read(n)) for n in z.namelist()]
    return zip_members(members, compress=zipfile.ZIP_DEFLATED)


def _duplicate(name, raw, meta, arrays):
    with zipfile.ZipFile(io.BytesIO(raw)) as z:
        members = [(n, z.read(n)) for n in z.namelist()]
    with pytest.warns(UserWarning):
        return zip_members(members + [members[-1]])


def _extra_member(member):
    def craft(name, raw, meta, arrays):
        with zipfile.ZipFile(io.BytesIO(raw)) as z:
            members = [(n, z.read(n)) for n in z.namelist()]
        return zip_members(members + [(member, npy(np.zeros(2, np.float32)))])
    return craft


def _deep_json(name, raw, meta, arrays):
    return pack(meta, arrays, header=b"[" * 100000 + b"]" * 100000)


def _huge_int(name, raw, meta, arrays):
    return pack(meta, arrays, header=b'{"format": 1' + b"0" * 20000 + b"}")


def _bump_shape(name, raw, meta, arrays):
    """The member's .npy header claims a huge array while the member stays small: a bomb that the
    zip directory's sizes give away before anything is allocated."""
    a = arrays[WEIGHT[name]]
    shape = (2 ** 20,) + a.shape[1:]
    return _swap_member(name, raw, WEIGHT[name], raw_npy("<f4", shape, data=a.tobytes()))


def _negative_shape(name, raw, meta, arrays):
    a = arrays[WEIGHT[name]]
    return _swap_member(name, raw, WEIGHT[name], raw_npy("<f4", (-1,) + a.shape[1:], data=a.tobytes()))


def _short_member(name, raw, meta, arrays):
    a = arrays[WEIGHT[name]]
    return _swap_member(name, raw, WEIGHT[name], npy(a)[:-8])


def _bit_flip_array(name, raw, meta, arrays):
    a = arrays[WEIGHT[name]]
    data = bytearray(npy(a))
    data[-3] ^= 0x40
    members = []
    with zipfile.ZipFile(io.BytesIO(raw)) as z:
        for n in z.namelist():
            members.append((n, bytes(data) if n == f"{WEIGHT[name]}.npy" else z.read(n)))
    return zip_members(members)


def _flip_in_place(name, raw, meta, arrays):
    """Flip a byte inside a stored member without fixing the zip CRC."""
    b = bytearray(raw)
    b[len(raw) // 2] ^= 0x01
    return bytes(b)


def _header_list(name, raw, meta, arrays):
    return pack(meta, arrays, header=json.dumps([meta]).encode())


def _old_topk(name, raw, meta, arrays):
    return zip_members([("format.npy", npy(np.array("aerec.search.TopK"))),
                        ("version.npy", npy(np.array(1))), ("metric.npy", npy(np.array("ip"))),
                        ("items.npy", npy(V))])


def _not_bytes_header(name, raw, meta, arrays):
    with zipfile.ZipFile(io.BytesIO(raw)) as z:
        members = [(n, z.read(n)) for n in z.namelist()]
    return zip_members([(n, npy(np.zeros(3, np.float64)) if n.startswith("__aerec_meta__") else d)
                        for n, d in members])


def _complex(name, arrays):
    arrays[WEIGHT[name]] = arrays[WEIGHT[name]].astype(np.complex64)


def _big_endian(name, arrays):
    arrays[WEIGHT[name]] = arrays[WEIGHT[name]].astype(">f4")


def _transpose_weight(name, arrays):
    a = arrays[WEIGHT[name]]
    arrays[WEIGHT[name]] = np.ascontiguousarray(np.concatenate([a, a[:1]]))


def _str_array(name, arrays):
    arrays[WEIGHT[name]] = np.array(["1.0"] * 3)


def _string_number(name, meta):
    _set(meta, NUMBER[name], "1e-3")


def _nan_number(name, meta):
    _set(meta, NUMBER[name], float("nan"))


def _edit_header_keep_digest(name, raw, meta, arrays):
    """A valid edit of the header that keeps the old digest (the issue's case for TopK: flip the
    metric in the file)."""
    if name.startswith("TopK"):
        meta["metric"] = "cosine" if meta["metric"] == "ip" else "ip"
    elif name == "EASE":
        meta["params"]["l2"] *= 2
    else:
        meta["seed"] += 1
    return pack(meta, arrays, redigest=False)


GENERIC = [
    # -- header ---------------------------------------------------------------------------------
    ("header-not-object", ALL, RAW(_header_list), ModelFileError, "expected an object"),
    ("header-not-json", ALL, RAW(lambda n, r, m, a: pack(m, a, header=b"{not json")), ModelFileError, "corrupt header"),
    ("header-not-utf8", ALL, RAW(lambda n, r, m, a: pack(m, a, header=b'{"a": "\xff\xfe"}')), ModelFileError,
     "corrupt header"),
    ("header-deeply-nested", ALL, RAW(_deep_json), ModelFileError, "corrupt header"),
    ("header-huge-int", ALL, RAW(_huge_int), ModelFileError, "corrupt header"),
    ("header-not-bytes", ALL, RAW(_not_bytes_header), ModelFileError, "header member"),
    ("format-other", ALL, H(lambda n, m: m.update(format="npz")), ModelFileError, "not an aerec model file"),
    ("format-version-newer", ALL, H(lambda n, m: m.update(format_version=aio.FORMAT_VERSION + 1)), ModelFileError,
     f"format version {aio.FORMAT_VERSION + 1}"),
    ("format-version-string", ALL, H(lambda n, m: m.update(format_version="1")), ModelFileError,
     "format_version"),
    ("class-unknown", ALL, H(lambda n, m: m.update({"class": "Pickle"})), ModelFileError, "does not know"),
    ("class-missing", ALL, H(lambda n, m: m.pop("class")), ModelFileError, "names no class"),
    ("class-not-string", ALL, H(lambda n, m: m.update({"class": ["EASE"]})), ModelFileError, "does not know"),
    ("sha256-missing", ALL, RAW(lambda n, r, m, a: pack({k: v for k, v in m.items() if k != "sha256"}, a,
                                                      redigest=False)), ModelFileError, "sha256"),
    ("field-unexpected", ALL, H(lambda n, m: m.update(evil=1)), ModelFileError, "evil: expected no such field"),
    ("number-is-string", ALL, H(_string_number), ModelFileError, "got '1e-3' (str)"),
    ("number-is-nan", ALL, H(_nan_number), ModelFileError, "expected"),
    ("number-is-huge", ALL, H(lambda n, m: _set(m, NUMBER[n], 10 ** 400)), ModelFileError, "expected"),
    # -- digest ---------------------------------------------------------------------------------
    ("digest-wrong", ALL, RAW(lambda n, r, m, a: pack({**m, "sha256": "0" * 64}, a, redigest=False)),
     ModelFileError, "checksum"),
    ("header-edited-digest-kept", [m for m in ALL if m != "Popularity"], RAW(_edit_header_keep_digest),
     ModelFileError, "checksum"),
    ("array-edited-digest-kept", ALL, A(lambda n, a: a.update({WEIGHT[n]: a[WEIGHT[n]] * 2}), redigest=False),
     ModelFileError, "checksum"),
    # -- arrays ---------------------------------------------------------------------------------
    ("array-missing", ALL, A(lambda n, a: a.pop(WEIGHT[n])), ModelFileError, f"is missing"),
    ("array-unexpected", ALL, A(lambda n, a: a.update(evil=np.zeros(3, np.float32))), ModelFileError,
     "unexpected array 'evil'"),
    ("array-nan", ALL, A(lambda n, a: _nan(n, a)), ModelFileError, "finite"),
    ("array-inf", ALL, A(lambda n, a: a.update({WEIGHT[n]: np.full_like(a[WEIGHT[n]], np.inf)})), ModelFileError,
     "finite"),
    ("array-complex", ALL, A(_complex), ModelFileError, "expected float32"),
    ("array-float64", ALL, A(lambda n, a: a.update({WEIGHT[n]: a[WEIGHT[n]].astype(np.float64)})), ModelFileError,
     "got float64"),
    ("array-big-endian", ALL, A(_big_endian), ModelFileError, "expected float32"),
    ("array-strings", ALL, A(_str_array), ModelFileError, "expected float32"),
    ("array-wrong-shape", ALL, A(_transpose_weight), ModelFileError, "expected float32 of shape"),
    ("array-object-pickle", ALL, RAW(_pickled), ModelFileError, "got object"),
    ("npy-shape-huge", ALL, RAW(_bump_shape), ModelFileError, "expected float32 of shape"),
    ("npy-shape-negative", ALL, RAW(_negative_shape), ModelFileError, "expected float32 of shape"),
    ("npy-header-garbage", ALL, RAW(lambda n, r, m, a: _swap_member(n, r, WEIGHT[n], b"\x93NUMPY\x01\x00\x05\x00{{{{{")),
     ModelFileError, "readable .npy"),
    ("npy-version-3", ALL, RAW(lambda n, r, m, a: _swap_member(n, r, WEIGHT[n], raw_npy("<f4", (1,), version=b"\x03\x00"))),
     ModelFileError, "readable .npy"),
    ("member-short", ALL, RAW(_short_member), ModelFileError, "needs"),
    # -- zip structure --------------------------------------------------------------------------
    ("zip-truncated", ALL, RAW(lambda n, r, m, a: r[: len(r) // 2]), ModelFileError, "not an aerec model file"),
    ("zip-tail-cut", ALL, RAW(lambda n, r, m, a: r[:-1]), ModelFileError, "truncated"),
    ("zip-byte-flipped", ALL, RAW(_flip_in_place), ModelFileError, "truncated or altered"),
    ("zip-array-bits-flipped", ALL, RAW(_bit_flip_array), ModelFileError, "checksum"),
    ("zip-empty", ALL, RAW(lambda n, r, m, a: b""), ModelFileError, "not an aerec model file"),
    ("zip-not-zip", ALL, RAW(lambda n, r, m, a: b"PK\x03\x04 not really"), ModelFileError, "not an aerec model file"),
    ("zip-no-header", ALL, RAW(lambda n, r, m, a: zip_members([(f"{k}.npy", npy(v)) for k, v in a.items()])),
     ModelFileError, "no header"),
    ("zip-deflated", ALL, RAW(_deflated), ModelFileError, "compressed"),
    ("zip-duplicate-member", ALL, RAW(_duplicate), ModelFileError, "appears twice"),
    ("zip-member-path", ALL, RAW(_extra_member("../evil.npy")), ModelFileError, "unexpected member"),
    ("zip-member-dir", ALL, RAW(_extra_member("sub/param_0.npy")), ModelFileError, "unexpected member"),
    ("zip-member-not-npy", ALL, RAW(_extra_member("evil.py")), ModelFileError, "unexpected member"),
]


def _csr_case(fn):
    def mutate(name, arrays):
        fn(arrays)
    return A(mutate)


def _set_index(arrays, value):
    ix = arrays["train_indices"].copy()
    ix[-1] = value
    arrays["train_indices"] = ix


def _unsort(arrays):
    ix = arrays["train_indices"].copy()
    ix[0], ix[1] = ix[1], ix[0]
    arrays["train_indices"] = ix


def _indptr_down(arrays):
    p = arrays["train_indptr"].copy()
    p[2], p[3] = p[3], p[2]
    arrays["train_indptr"] = p


def _indptr_end(arrays):
    p = arrays["train_indptr"].copy()
    p[-1] -= 1
    arrays["train_indptr"] = p


def _train_shape(arrays, which, delta):
    s = arrays["train_shape"].copy()
    s[which] += delta
    arrays["train_shape"] = s


def _dims(meta, key, value):
    meta["dims"][key] = value


RECOMMENDER_CASES = [
    ("train-index-out-of-range", RECOMMENDERS, _csr_case(lambda a: _set_index(a, 10 ** 6)), ModelFileError,
     "column ids in [0,"),
    ("train-index-negative", RECOMMENDERS, _csr_case(lambda a: _set_index(a, -1)), ModelFileError, "column ids"),
    ("train-index-unsorted", RECOMMENDERS, _csr_case(_unsort), ModelFileError, "sorted"),
    ("train-indptr-decreasing", RECOMMENDERS, _csr_case(_indptr_down), ModelFileError, "non-decreasing"),
    ("train-indptr-end", RECOMMENDERS, _csr_case(_indptr_end), ModelFileError, "offsets from 0 to nnz"),
    ("train-data-nan", RECOMMENDERS, A(lambda n, a: _nan(n, a, "train_data")), ModelFileError, "finite"),
    ("train-data-negative", RECOMMENDERS, A(lambda n, a: a.update(train_data=-a["train_data"])), ModelFileError,
     ">= 0"),
    ("train-indices-float", RECOMMENDERS, A(lambda n, a: a.update(train_indices=a["train_indices"].astype(np.float32))),
     ModelFileError, "train_indices"),
    ("train-shape-items", RECOMMENDERS, _csr_case(lambda a: _train_shape(a, 1, 1)), ModelFileError, "n_items"),
    ("train-shape-users", RECOMMENDERS, _csr_case(lambda a: _train_shape(a, 0, 7)), ModelFileError, "n_users"),
    ("train-shape-missing", RECOMMENDERS, A(lambda n, a: a.pop("train_shape")), ModelFileError, "'train_shape' is missing"),
    ("dims-n-items-huge", RECOMMENDERS, H(lambda n, m: _dims(m, "n_items", 2 ** 31 - 1)), ModelFileError, "expected"),
    ("dims-n-items-too-big", RECOMMENDERS, H(lambda n, m: _dims(m, "n_items", 2 ** 40)), ModelFileError,
     "dims.n_items"),
    ("dims-n-users-zero", RECOMMENDERS, H(lambda n, m: _dims(m, "n_users", 0)), ModelFileError, "dims.n_users"),
    ("dims-n-users-negative", RECOMMENDERS, H(lambda n, m: _dims(m, "n_users", -5)), ModelFileError, "dims.n_users"),
    ("dims-nnz-wrong", RECOMMENDERS, H(lambda n, m: _dims(m, "nnz", m["dims"]["nnz"] + 1)), ModelFileError,
     "train_indices"),
    ("dims-not-object", RECOMMENDERS, H(lambda n, m: m.update(dims=[1, 2, 3])), ModelFileError, "dims"),
    ("params-missing", RECOMMENDERS + ["Autoencoder"], H(lambda n, m: m.pop("params")), ModelFileError,
     "params: expected an object"),
    ("params-unknown", RECOMMENDERS + ["Autoencoder"], H(lambda n, m: m["params"].update(backdoor=1)),
     ModelFileError, "params.backdoor"),
    ("params-not-object", RECOMMENDERS + ["Autoencoder"], H(lambda n, m: m.update(params="x")), ModelFileError,
     "params: expected an object"),
]

_NET = ["Autoencoder", "AutoRec-item", "AutoRec-user", "MultDAE", "MultVAE", "CDAE"]


def _spec_set(key, value):
    return H(lambda n, m: m["spec"].update({key: value}))


def _param_drop(name, meta):
    meta["params"].pop(next(iter(meta["params"])))


def _last_param_nan(name, arrays):
    k = [k for k in arrays if k.endswith((".weight", ".bias"))][-1]  # named in the spec's order
    _nan(name, arrays, k)


SPECIFIC = [
    ("spec-missing", _NET, H(lambda n, m: m.pop("spec")), ModelFileError, "spec"),
    ("spec-not-object", _NET, H(lambda n, m: m.update(spec=[1, 2])), ModelFileError, "spec"),
    ("spec-lr-nan", _NET, _spec_set("learning_rate", float("nan")), ModelFileError, "learning_rate"),
    ("spec-unknown-key", _NET, _spec_set("exec", "rm -rf"), ModelFileError, "unknown spec keys"),
    ("spec-layer-size-string", _NET, H(lambda n, m: m["spec"]["layer_sizes"].__setitem__(1, "12")), ModelFileError,
     "layer size"),
    ("spec-layer-size-huge", _NET, H(lambda n, m: m["spec"]["layer_sizes"].__setitem__(1, 10 ** 12)), ModelFileError,
     "layer size must be"),
    ("spec-layer-size-big", _NET, H(lambda n, m: m["spec"]["layer_sizes"].__setitem__(1, 10 ** 6)), ModelFileError,
     "expected float32 of shape"),
    ("spec-activation-unknown", _NET, H(lambda n, m: m["spec"]["activations"].__setitem__(0, "os.system")),
     ModelFileError, "activation"),
    ("param-missing", _NET[1:] + ["EASE"], H(_param_drop), ModelFileError, "the field is missing"),
    ("seed-missing", _NET, H(lambda n, m: m.pop("seed")), ModelFileError, "seed"),
    ("seed-negative", _NET, H(lambda n, m: m.update(seed=-1)), ModelFileError, "seed"),
    ("history-not-object", _NET, H(lambda n, m: m.update(history=[1])), ModelFileError, "history"),
    ("history-strings", _NET, H(lambda n, m: m.update(history={"loss": ["x"]})), ModelFileError, "history.loss"),
    ("last-layer-nan", _NET, A(_last_param_nan), ModelFileError, "finite"),
    # Autoencoder
    ("ae-n-features", ["Autoencoder"], H(lambda n, m: m.update(n_features_in=m["n_features_in"] + 1)), ModelFileError,
     "n_features_in"),
    ("ae-epochs-negative", ["Autoencoder"], H(lambda n, m: m.update(epochs_trained=-1)), ModelFileError,
     "epochs_trained"),
    ("ae-opt-v-negative", ["Autoencoder"], A(lambda n, a: a.update(opt_v_W0=-a["opt_v_W0"] - 1)), ModelFileError,
     ">= 0"),
    ("ae-opt-step-negative", ["Autoencoder"], A(lambda n, a: a.update(opt_step=np.array(-3, np.int64))),
     ModelFileError, "opt_step"),
    ("ae-opt-missing", ["Autoencoder"], A(lambda n, a: a.pop("opt_m_b1")), ModelFileError, "'opt_m_b1' is missing"),
    ("ae-optimizer-flipped", ["Autoencoder"], _spec_set("optimizer", "sgd"), ModelFileError, "unexpected array"),
    ("ae-hidden-bool", ["Autoencoder"], H(lambda n, m: m["params"].update(hidden=True)), ModelFileError,
     "params.hidden"),
    # AutoRec
    ("autorec-kind-flipped", ["AutoRec-item", "AutoRec-user"],
     H(lambda n, m: m["params"].update(kind="user" if m["params"]["kind"] == "item" else "item")), ModelFileError,
     "dims.n_"),
    ("autorec-dense-huge", ["AutoRec-item"],
     RAW(lambda n, r, m, a: (m["dims"].update(n_items=2 ** 31 - 1),
                             a.update(train_shape=np.array([a["train_shape"][0], 2 ** 31 - 1], np.int64)),
                             pack(m, a))[-1]), MemoryError, "rating matrix dense"),
    ("autorec-kind-unknown", ["AutoRec-item"], H(lambda n, m: m["params"].update(kind="both")), ModelFileError,
     "params.kind"),
    ("autorec-clip-reversed", ["AutoRec-item"], H(lambda n, m: m.update(clip=[5.0, 1.0])), ModelFileError, "clip"),
    ("autorec-clip-string", ["AutoRec-item"], H(lambda n, m: m.update(clip=["1", 5.0])), ModelFileError, "clip"),
    ("autorec-spec-3-layers", ["AutoRec-user"],
     H(lambda n, m: m["spec"].update(layer_sizes=m["spec"]["layer_sizes"] + [m["spec"]["layer_sizes"][0]],
                                     activations=m["spec"]["activations"] + ["identity"],
                                     dropout=m["spec"]["dropout"] + [0.0])),
     ModelFileError, "AutoRec spec"),
    # sparse autoencoders
    ("vae-not-variational", ["MultVAE"], _spec_set("variational", False), ModelFileError, "variational"),
    ("dae-made-variational", ["MultDAE"], _spec_set("variational", True), ModelFileError, "variational"),
    ("cdae-embedding-rows", ["CDAE"], H(lambda n, m: m["spec"].update(n_users=m["dims"]["n_users"])),
     ModelFileError, "dims.n_users"),
    ("cdae-embedding-none", ["CDAE"], _spec_set("n_users", 0), ModelFileError, "n_users"),
    ("cdae-embedding-rows-no-dims", ["CDAE"],
     H(lambda n, m: (m["spec"].update(n_users=m["dims"]["n_users"]), m.pop("dims"))), ModelFileError,
     "train_indptr"),
    ("rec-items-in-spec", ["MultDAE", "MultVAE", "CDAE"],
     H(lambda n, m: (m["spec"]["layer_sizes"].__setitem__(0, m["spec"]["layer_sizes"][0] + 1),
                     m["spec"]["layer_sizes"].__setitem__(-1, m["spec"]["layer_sizes"][-1] + 1))),
     ModelFileError, "dims.n_items"),
    ("rec-loss-flipped", ["MultDAE"], _spec_set("loss", "logistic"), ModelFileError, "loss"),
    # EASE, Popularity
    ("ease-l2-zero", ["EASE"], H(lambda n, m: m["params"].update(l2=0)), ModelFileError, "params.l2"),
    ("ease-dtype-unknown", ["EASE"], H(lambda n, m: m["params"].update(dtype="object")), ModelFileError,
     "params.dtype"),
    ("ease-B-not-square", ["EASE"], A(lambda n, a: a.update(B_=np.ascontiguousarray(a["B_"][:, :-1]))),
     ModelFileError, "expected float32 of shape"),
    ("pop-counts-negative", ["Popularity"], A(lambda n, a: a.update(item_counts_=-a["item_counts_"] - 1)),
     ModelFileError, ">= 0"),
    ("pop-params-nonempty", ["Popularity"], H(lambda n, m: m["params"].update(l2=1.0)), ModelFileError,
     "params.l2"),
    # TopK
    ("topk-metric-unknown", ["TopK"], H(lambda n, m: m.update(metric="l2")), ModelFileError, "metric"),
    ("topk-bias-with-cosine", ["TopK"], H(lambda n, m: m.update(metric="cosine")), ModelFileError,
     "no bias with metric 'cosine'"),
    ("topk-cosine-not-normalised", ["TopK-cosine"], A(lambda n, a: a.update(items=a["items"] * 3)), ModelFileError,
     "unit-norm"),
    ("topk-precision-unknown", ["TopK"], H(lambda n, m: m.update(precision="fp8")), ModelFileError, "precision"),
    ("topk-rescore-zero", ["TopK"], H(lambda n, m: m.update(rescore=0)), ModelFileError, "rescore"),
    ("topk-prune-string", ["TopK"], H(lambda n, m: m.update(prune="yes")), ModelFileError, "prune"),
    ("topk-n-items", ["TopK"], H(lambda n, m: m.update(n_items=m["n_items"] + 1)), ModelFileError,
     "expected float32 of shape"),
    ("topk-dim-missing", ["TopK"], H(lambda n, m: m.pop("dim")), ModelFileError, "dim"),
    ("topk-bias-wrong-length", ["TopK"], A(lambda n, a: a.update(bias=a["bias"][:-1].copy())), ModelFileError,
     "'bias'"),
    ("topk-bias-nan", ["TopK"], A(lambda n, a: _nan(n, a, "bias")), ModelFileError, "finite"),
    ("topk-first-format", ["TopK"], RAW(_old_topk), ModelFileError, "layout of earlier aerec versions"),
]

TABLE = GENERIC + RECOMMENDER_CASES + SPECIFIC
ROWS = [(f"{case}-{model}", model, craft, exc, frag) for case, models, craft, exc, frag in TABLE for model in models]


def test_case_ids_are_unique():
    ids = [r[0] for r in ROWS]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("case_id,name,craft,exc,fragment", ROWS, ids=[r[0] for r in ROWS])
def test_crafted_file(saved, tmp_path, monkeypatch, case_id, name, craft, exc, fragment):
    monkeypatch.setenv("AEREC_TEST_MARKER_DIR", str(tmp_path))
    path, raw, _ = saved[name]
    meta, arrays = unpack(raw)
    bad = tmp_path / "bad.npz"
    bad.write_bytes(craft(name, raw, meta, arrays))
    cls = CLASS_OF[name]
    for loader in (aerec.load, cls.load):
        with pytest.raises(exc) as info:
            loader(bad)
        assert fragment in str(info.value), str(info.value)
        if exc is ModelFileError:
            assert str(bad) in str(info.value)  # names the file
    assert not (tmp_path / "pwned").exists()  # nothing was unpickled


# ----------------------------------------------------------------------------------------------
# what must load, identically

@pytest.mark.parametrize("name", MODELS)
def test_round_trip_identical(saved, tmp_path, name):
    path, raw, expected = saved[name]
    cls = CLASS_OF[name]
    for loaded in (aerec.load(path), cls.load(path)):
        assert type(loaded) is cls
        assert_same(outputs(name, loaded), expected)
    # saving the loaded model again writes the same header and arrays: nothing is lost
    again = tmp_path / "again.npz"
    cls.load(path).save(again)
    m1, a1 = unpack(raw)
    m2, a2 = unpack(again.read_bytes())
    assert m1 == m2
    assert a1.keys() == a2.keys()
    for k in a1:
        np.testing.assert_array_equal(a1[k], a2[k])


#: the spec keys files of aerec <= 0.1 held: the dense Network's (Autoencoder, AutoRec) and the
#: RecNetwork's (MultDAE, MultVAE, CDAE), written out by hand
_OLD_DENSE_KEYS = ("layer_sizes", "activations", "dropout", "encoder_depth", "loss", "l2", "optimizer",
                   "learning_rate", "beta1", "beta2", "epsilon", "weight_decay", "momentum", "nesterov", "seed")


def _old_rec_spec(s):
    return {"layer_sizes": s["layer_sizes"], "activations": s["activations"], "encoder_depth": s["encoder_depth"],
            "variational": s["variational"],
            "anneal_cap": s["beta"] if s["variational"] else 0.2,
            "total_anneal_steps": s["anneal_steps"] if s["variational"] else 200000,
            "normalize_input": s["normalize_input"], "input_dropout": s["dropout"][0], "loss": s["loss"],
            "negative_samples": s["negative_samples"], "n_users_embedding": s["n_users"], "l2": s["l2"],
            "optimizer": s["optimizer"], "learning_rate": s["learning_rate"], "beta1": s["beta1"],
            "beta2": s["beta2"], "epsilon": s["epsilon"], "momentum": s["momentum"], "lazy_adam": s["lazy"],
            "seed": s["seed"]}


@pytest.mark.parametrize("name", [m for m in MODELS if m != "Popularity" and not m.startswith(("TopK", "EASE"))])
def test_old_spec_keys_load(saved, tmp_path, name):
    """Files written before the two network engines were merged (old spec keys) load, through
    aerec.nn.spec.from_legacy, and give the same outputs."""
    path, raw, expected = saved[name]
    meta, arrays = unpack(raw)
    new = meta["spec"]
    if name in ("MultDAE", "MultVAE", "CDAE"):
        meta["spec"] = _old_rec_spec(new)
        assert "n_users" not in meta["spec"] and "lazy" not in meta["spec"]
    else:
        meta["spec"] = {k: new[k] for k in _OLD_DENSE_KEYS}
    p = tmp_path / "old.npz"
    p.write_bytes(pack(meta, arrays))
    loaded = aerec.load(p)
    assert_same(outputs(name, loaded), expected)
    for k, v in new.items():  # the one spec again (the old unused anneal defaults aside)
        if new["variational"] or k not in ("beta", "anneal_steps"):
            assert loaded.spec_[k] == (tuple(v) if isinstance(v, list) else v), k


def _fortran(name, meta, arrays):
    arrays = {k: (np.asfortranarray(v) if v.ndim == 2 else v) for k, v in arrays.items()}
    return pack(meta, arrays)


def _no_dims(name, meta, arrays):  # files written before the header declared the sizes
    meta.pop("dims", None)
    return pack(meta, arrays)


def _int32_indptr(name, meta, arrays):
    if "train_indptr" in arrays:
        arrays["train_indptr"] = arrays["train_indptr"].astype(np.int32)
    return pack(meta, arrays)


@pytest.mark.parametrize("variant", [_fortran, _no_dims, _int32_indptr], ids=lambda f: f.__name__[1:])
@pytest.mark.parametrize("name", MODELS)
def test_harmless_variants_load_identically(saved, tmp_path, name, variant):
    path, raw, expected = saved[name]
    meta, arrays = unpack(raw)
    p = tmp_path / "v.npz"
    p.write_bytes(variant(name, meta, arrays))
    assert_same(outputs(name, aerec.load(p)), expected)


def test_wrong_class_names_both(saved):
    for name, (path, _, _) in saved.items():
        for other in (aerec.EASE, aerec.MultVAE, aerec.TopK, aerec.Autoencoder):
            if other is CLASS_OF[name]:
                continue
            with pytest.raises(ModelFileError, match=f"holds a {CLASS_OF[name].__name__} model, and "
                                                     f"{other.__name__}.load reads only"):
                other.load(path)


def test_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        aerec.load(tmp_path / "nope.npz")


def test_paths_that_are_not_files(saved, tmp_path):
    path = saved["EASE"][0]
    with pytest.raises(ModelFileError, match="is a directory"):
        aerec.load(tmp_path)
    os.symlink(tmp_path, tmp_path / "dirlink")
    with pytest.raises(ModelFileError, match="is a directory"):
        aerec.load(tmp_path / "dirlink")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(ModelFileError, match="not a regular file"):  # and it must not block
        aerec.load(fifo)
    with pytest.raises(ModelFileError, match="not a regular file"):
        aerec.load("/dev/zero")
    link = tmp_path / "link.npz"
    os.symlink(path, link)
    assert_same(outputs("EASE", aerec.load(link)), saved["EASE"][2])


def test_header_size_limit(saved, tmp_path, monkeypatch):
    path = saved["MultVAE"][0]
    monkeypatch.setattr(aio, "MAX_HEADER_BYTES", 200)
    with pytest.raises(ModelFileError, match="the header is .* bytes, more than 200"):
        aerec.load(path)


# ----------------------------------------------------------------------------------------------
# saving

def test_save_through_symlink_keeps_link(tmp_path):
    model = Popularity().fit(X)
    target = tmp_path / "real.npz"
    model.save(target)
    link = tmp_path / "current.npz"
    os.symlink(target, link)
    model.save(link)
    assert os.path.islink(link) and os.path.realpath(link) == str(target)
    aerec.load(link)
    assert sorted(os.listdir(tmp_path)) == ["current.npz", "real.npz"]


def test_save_to_directory_path_refuses_before_writing(tmp_path):
    with pytest.raises(IsADirectoryError, match="is a directory"):
        Popularity().fit(X).save(tmp_path)
    assert os.listdir(tmp_path) == []


def test_save_keeps_mode_of_replaced_file(tmp_path):
    model = Popularity().fit(X)
    p = tmp_path / "m.npz"
    model.save(p)
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(p).st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0600
    os.chmod(p, 0o640)
    model.save(p)
    assert os.stat(p).st_mode & 0o777 == 0o640


def _tmp_name(target, pid, host=None, rand="abcd1234", suffix=".tmp"):
    return f".{os.path.basename(target)}.aerec-{host or aio._host_tag()}-{pid}-{rand}{suffix}"


def _dead_pid():
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_next_save_removes_only_stale_temps_of_its_target(tmp_path):
    model = EASE(l2=5.0).fit(X)
    target = tmp_path / "m.npz"
    model.save(target)
    dead = _dead_pid()
    stale = [_tmp_name(target, dead), _tmp_name(target, dead, rand="zz_99xyz", suffix=".part")]
    keep = [_tmp_name(target, os.getpid()),                      # a live writer (this process)
            _tmp_name(target, dead, host="otherhost"),            # another host's writer: not ours to judge
            _tmp_name(tmp_path / "other.npz", dead),              # another target's leftover
            ".m.npz.abcd1234.tmp", "m.npz.tmp", "notes.txt"]     # not our pattern
    for n in stale + keep:
        (tmp_path / n).write_bytes(b"x" * 100)
    os.symlink(tmp_path / "notes.txt", tmp_path / _tmp_name(target, dead, rand="link0000"))
    keep.append(_tmp_name(target, dead, rand="link0000"))       # a symlink is never followed or removed
    model.save(target)
    left = set(os.listdir(tmp_path))
    assert not left & set(stale)
    assert set(keep) <= left
    assert_same(outputs("EASE", aerec.load(target)), outputs("EASE", model))


_KILLED_SAVE = textwrap.dedent("""
    import os, sys, time
    import numpy as np, scipy.sparse as sp, aerec
    which, path = sys.argv[1], sys.argv[2]
    if which == "topk":
        model = aerec.TopK(np.random.default_rng(0).normal(size=(20000, 32)).astype(np.float32))
    else:
        X = sp.random(200, 300, density=0.05, format="csr", random_state=0, dtype=np.float32)
        X.data[:] = 1
        model = aerec.EASE(l2=10.0).fit(X)
    real_fsync = os.fsync
    def fsync_then_hang(fd):  # the whole temp file is written: stop just before os.replace
        real_fsync(fd)
        print("written", flush=True)
        time.sleep(120)
    os.fsync = fsync_then_hang
    model.save(path)
""")


@pytest.mark.parametrize("which", ["ease", "topk"])
def test_sigkilled_save_leaves_target_intact_and_next_save_cleans(tmp_path, which):
    target = tmp_path / "model.npz"
    if which == "topk":
        model = TopK(V, bias=B)
        expect = lambda m: list(m.search(Q, 5))  # noqa: E731
    else:
        model = EASE(l2=5.0).fit(X)
        expect = lambda m: outputs("EASE", m)  # noqa: E731
    model.save(target)
    before = target.read_bytes()
    env = dict(os.environ, PYTHONPATH=PYTHON_DIR + os.pathsep + os.environ.get("PYTHONPATH", ""))
    child = subprocess.Popen([sys.executable, "-c", _KILLED_SAVE, which, str(target)], stdout=subprocess.PIPE,
                             env=env)
    try:
        assert child.stdout.readline().strip() == b"written"
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.wait(timeout=30)
    temps = [n for n in os.listdir(tmp_path) if n != "model.npz"]
    assert temps == [_tmp_name(target, child.pid, rand=temps[0][-12:-4])]  # named after target and writer
    assert os.path.getsize(tmp_path / temps[0]) > len(before)  # the child's full-size file
    assert target.read_bytes() == before  # the original is intact
    model.save(target)
    assert os.listdir(tmp_path) == ["model.npz"]
    assert_same(expect(aerec.load(target)), expect(model))


# ----------------------------------------------------------------------------------------------
# decompression bomb: memory must stay small

_BOMB_LOAD = textwrap.dedent("""
    import resource, sys
    import aerec
    def vm():
        with open("/proc/self/status") as f:
            return next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmSize:"))
    # 256 MiB of address space beyond what is mapped now: decompressing or allocating the bomb fails
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (vm() + (256 << 20), hard))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        aerec.load(sys.argv[1])
        print("LOADED")
    except aerec.ModelFileError as exc:
        print("REJECTED", exc)
    except MemoryError as exc:
        print("MEMORY", exc)
    print("GROWTH_KB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)
""")


def _write_bomb(path, saved, compress):
    """A consistent EASE file (header dims and train arrays edited to 16384 items) whose B_ member
    is 1 GiB of float32 zeros: deflated to ~1 MB, or stored as just a .npy header claiming 1 GiB."""
    n = 16384
    meta, arrays = unpack(saved["EASE"][1])
    meta["dims"]["n_items"] = n
    arrays["train_shape"] = np.array([arrays["train_shape"][0], n], np.int64)
    del arrays["B_"]
    meta["sha256"] = "0" * 64  # cannot be computed without the data; rejected before it matters
    with zipfile.ZipFile(path, "w") as z:
        with zipfile.ZipFile(io.BytesIO(pack(meta, arrays, redigest=False))) as src:
            for member in src.namelist():
                z.writestr(member, src.read(member))
        header = raw_npy("<f4", (n, n))
        if not compress:
            z.writestr("B_.npy", header)
            return
        info = zipfile.ZipInfo("B_.npy")
        info.compress_type = zipfile.ZIP_DEFLATED
        zero = bytes(16 << 20)
        with z.open(info, "w", force_zip64=True) as f:
            f.write(header)
            for _ in range(n * n * 4 // len(zero)):
                f.write(zero)


@pytest.mark.parametrize("compress", [True, False], ids=["deflated-1GiB", "stored-claims-1GiB"])
def test_decompression_bomb_stays_small(saved, tmp_path, compress):
    path = tmp_path / "bomb.npz"
    _write_bomb(path, saved, compress)
    assert os.path.getsize(path) < 4 << 20  # about 1 MB on disk
    if compress:
        with zipfile.ZipFile(path) as z:
            assert z.getinfo("B_.npy").file_size > 1 << 30
    env = dict(os.environ, PYTHONPATH=PYTHON_DIR + os.pathsep + os.environ.get("PYTHONPATH", ""))
    res = subprocess.run([sys.executable, "-c", _BOMB_LOAD, str(path)], capture_output=True, text=True, env=env,
                         timeout=120)
    out = res.stdout
    assert "REJECTED" in out, out + res.stderr
    assert ("compressed" if compress else "needs") in out
    growth_kb = int(out.split("GROWTH_KB")[1].split()[0])
    assert growth_kb < 32 * 1024, out  # well under the 1 GiB the member claims


def test_schemas_declare_every_constructor_parameter():
    from aerec import _schemas
    for cls in (aerec.Autoencoder, AutoRec, MultDAE, MultVAE, CDAE, EASE, Popularity):
        declared = set(_schemas.schema_for(cls.__name__).header.fields["params"].fields)
        assert declared == set(cls._param_names()) - {"backend"}, cls.__name__


def test_save_refuses_what_load_would_refuse(tmp_path):
    model = Popularity().fit(X)
    model.item_counts_ = model.item_counts_.copy()
    model.item_counts_[3] = np.nan
    with pytest.raises(ValueError, match="refusing to save.*item_counts_.*finite"):
        model.save(tmp_path / "m.npz")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("dtype", ["f4", np.float64, np.dtype("float32")])
def test_ease_dtype_spellings_round_trip(tmp_path, dtype):
    model = EASE(l2=5.0, dtype=dtype).fit(X)
    model.save(tmp_path / "m.npz")
    assert_same(outputs("EASE", aerec.load(tmp_path / "m.npz")), outputs("EASE", model))


@pytest.mark.parametrize("name", MODELS)
def test_random_damage_never_crashes_or_changes_results(saved, tmp_path, name):
    """Seeded fuzz: 60 bit flips, byte overwrites and truncations per file. Each one either raises
    ModelFileError or hits bytes no result depends on (zip timestamps, padding) and loads the same."""
    path, raw, expected = saved[name]
    rng = np.random.default_rng(sum(map(ord, name)))
    bad = tmp_path / "bad.npz"
    for trial in range(60):
        b = bytearray(raw)
        pos = int(rng.integers(len(b)))
        if trial % 3 == 0:
            b[pos] ^= 1 << int(rng.integers(8))
        elif trial % 3 == 1:
            b[pos] = int(rng.integers(256))
        else:
            del b[pos:]
        bad.write_bytes(bytes(b))
        try:
            loaded = aerec.load(bad)
        except ModelFileError:
            continue
        assert_same(outputs(name, loaded), expected)


# ----------------------------------------------------------------------------------------------
# raw id maps (a model fitted on aerec.data.Interactions)

def _interactions():
    from aerec.data import Interactions
    rng = np.random.default_rng(7)
    users = np.array([f"user-{i}" for i in rng.integers(0, 30, 400)])
    items = rng.integers(1000, 1030, 400)
    return Interactions.from_arrays(users, items, on_invalid="drop")


@pytest.fixture(scope="module")
def with_ids(tmp_path_factory):
    path = tmp_path_factory.mktemp("ids") / "m.npz"
    model = MultDAE(hidden=(12,), latent=4, epochs=2, batch_size=16).fit(_interactions())
    model.save(path)
    return path, model


def test_raw_id_maps_survive_save_and_load(with_ids):
    path, model = with_ids
    back = aerec.load(path)
    for a, b in zip(model.recommend_raw(["user-3", "user-11"], k=4), back.recommend_raw(["user-3", "user-11"], k=4)):
        np.testing.assert_array_equal(a, b)
    assert back.id_maps_[0] == model.id_maps_[0] and back.id_maps_[1] == model.id_maps_[1]


def _ids(key, fn):
    def craft(meta, arrays):
        arrays[key] = fn(arrays[key])
        return pack(meta, arrays)
    return craft


@pytest.mark.parametrize("craft,fragment", [
    (_ids("user_ids", lambda a: np.concatenate([a[:1], a[:-1]])), "unique"),
    (_ids("item_ids", lambda a: a[:-1].copy()), "expected dtype kind in 'iufUS' of shape (30,)"),
    (_ids("item_ids", lambda a: np.where(np.arange(len(a)) == 2, np.nan, a.astype(np.float64))), "finite"),
    (_ids("item_ids", lambda a: a.astype(">i8")), "got >i8"),
    (_ids("item_ids", lambda a: np.zeros(len(a), [("x", "<i4")])), "expected dtype kind"),
    (lambda m, a: _swap_member("", pack(m, a), "user_ids", npy(np.array([_Evil()] * 30, dtype=object),
                                                            allow_pickle=True)), "got object"),
], ids=["duplicate-user", "items-short", "item-nan", "big-endian", "structured", "pickled"])
def test_crafted_id_maps(with_ids, tmp_path, monkeypatch, craft, fragment):
    monkeypatch.setenv("AEREC_TEST_MARKER_DIR", str(tmp_path))
    path, _ = with_ids
    meta, arrays = unpack(path.read_bytes())
    bad = tmp_path / "bad.npz"
    bad.write_bytes(craft(meta, arrays))
    with pytest.raises(ModelFileError, match="(user|item)_ids") as info:
        aerec.load(bad)
    assert fragment in str(info.value)
    assert not (tmp_path / "pwned").exists()


def test_best_epoch_survives_save_and_load(tmp_path):
    from aerec.data import random_split
    split = random_split(_interactions(), test_fraction=0.2, validation_fraction=0.2, random_state=0)
    model = MultDAE(hidden=(12,), latent=4, epochs=3, batch_size=16).fit(split.train, validation=split, k=5)
    model.save(tmp_path / "m.npz")
    assert aerec.load(tmp_path / "m.npz").best_epoch_ == model.best_epoch_

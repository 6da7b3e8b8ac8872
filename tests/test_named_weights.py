"""Named weight arrays in model files (format version 2), format version 1 files (param_<i>) still
loading, and the optional safetensors export."""
import json
import zipfile

import numpy as np
import pytest

import aerec
from aerec import datasets, io as aio
from aerec._schemas import weight_names
from aerec.models import CDAE, EASE, AutoRec, MultDAE, MultVAE


@pytest.fixture(scope="module")
def inter():
    return datasets.synthetic(n_users=120, n_items=30, density=0.2, random_state=4)


def _fitted(name, inter):
    if name == "Autoencoder":
        x = np.random.default_rng(0).random((40, 12)).astype(np.float32)
        return aerec.Autoencoder(hidden=(6, 3, 6)).fit(x, epochs=1), x
    make = {"MultDAE": lambda: MultDAE(hidden=(8,), latent=4, epochs=1),
            "MultVAE": lambda: MultVAE(hidden=(8,), latent=4, epochs=1),
            "CDAE": lambda: CDAE(latent=4, epochs=1),
            "AutoRec": lambda: AutoRec(hidden=5, epochs=1, kind="user")}[name]
    return make().fit(inter), inter.to_csr()[:7]


def _out(model, x):
    if isinstance(model, aerec.Autoencoder):
        return model.predict(x)
    return model.score_items(np.arange(7))


NAMES = ["Autoencoder", "MultDAE", "MultVAE", "CDAE", "AutoRec"]


@pytest.mark.parametrize("name", NAMES)
def test_files_name_their_weights(name, inter, tmp_path):
    m, x = _fitted(name, inter)
    path = tmp_path / "m.npz"
    m.save(path)
    members = {n[:-4] for n in zipfile.ZipFile(path).namelist()}
    names = weight_names(m.spec_)
    assert set(names) <= members and not any(k.startswith("param_") for k in members)
    assert names[0] == "encoder.0.weight" and names[1] == "encoder.0.bias"
    assert any(n.startswith("decoder.") for n in names)
    assert ("user_embedding.weight" in names) == (name == "CDAE")
    with np.load(path, allow_pickle=False) as z:  # any npz reader gets them by name
        np.testing.assert_array_equal(z["encoder.0.weight"], m.net_.get_params()[0])
    np.testing.assert_array_equal(_out(aerec.load(path), x), _out(m, x))


def _as_version_1(path):
    """Rewrite a file as aerec 0.1 wrote it: param_<i> arrays, no weight_names, no card."""
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(bytes(z[aio._META_KEY]).decode())
        arrays = {k: z[k] for k in z.files if k != aio._META_KEY}
    for i, n in enumerate(meta.pop("weight_names")):
        arrays[f"param_{i}"] = arrays.pop(n)
    for k in ("card", "sha256"):
        meta.pop(k, None)
    meta["format_version"] = 1
    meta["sha256"] = aio._digest(meta, arrays)
    with aio.atomic_write(path) as f:
        np.savez(f, **{aio._META_KEY: np.frombuffer(json.dumps(meta).encode(), np.uint8)}, **arrays)


@pytest.mark.parametrize("name", NAMES)
def test_version_1_files_still_load(name, inter, tmp_path):
    m, x = _fitted(name, inter)
    path = tmp_path / "old.npz"
    m.save(path)
    _as_version_1(path)
    assert "param_0.npy" in zipfile.ZipFile(path).namelist()
    old = aerec.load(path)
    np.testing.assert_array_equal(_out(old, x), _out(m, x))
    old.save(tmp_path / "new.npz")  # and are written back named
    assert "encoder.0.weight.npy" in zipfile.ZipFile(tmp_path / "new.npz").namelist()


def test_mismatched_names_are_refused(inter, tmp_path):
    m, _ = _fitted("MultDAE", inter)
    path = tmp_path / "m.npz"
    m.save(path)
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(bytes(z[aio._META_KEY]).decode())
        arrays = {k: z[k] for k in z.files if k != aio._META_KEY}
    meta["weight_names"] = meta["weight_names"][::-1]
    meta.pop("sha256")
    meta["sha256"] = aio._digest(meta, arrays)
    with aio.atomic_write(path) as f:
        np.savez(f, **{aio._META_KEY: np.frombuffer(json.dumps(meta).encode(), np.uint8)}, **arrays)
    with pytest.raises(aerec.ModelFileError, match="weight_names"):
        aerec.load(path)


@pytest.mark.parametrize("name", ["MultVAE", "CDAE", "EASE"])
def test_export_safetensors(name, inter, tmp_path):
    st = pytest.importorskip("safetensors.numpy")
    m = EASE(l2=5.0).fit(inter) if name == "EASE" else _fitted(name, inter)[0]
    path = tmp_path / "w.safetensors"
    m.export_safetensors(path)
    got = st.load_file(str(path))
    if name == "EASE":
        np.testing.assert_array_equal(got["B"], m.B_)
        return
    want = dict(zip(weight_names(m.spec_), m.net_.get_params()))
    assert got.keys() == want.keys()
    for k in want:
        np.testing.assert_array_equal(got[k], want[k])
    from safetensors import safe_open
    with safe_open(str(path), "np") as f:
        meta = f.metadata()
    assert meta["class"] == name and json.loads(meta["spec"])["layer_sizes"][0] == inter.n_items


def test_export_safetensors_unfitted_and_missing_package(monkeypatch, tmp_path):
    with pytest.raises(RuntimeError, match="not fitted"):
        MultDAE()._export_tensors()
    import builtins
    real = builtins.__import__

    def no_st(name, *a, **kw):
        if name.startswith("safetensors"):
            raise ImportError(name)
        return real(name, *a, **kw)
    monkeypatch.setattr(builtins, "__import__", no_st)
    with pytest.raises(ImportError, match="pip install safetensors"):
        MultDAE().export_safetensors(tmp_path / "x.safetensors")

"""The model card in every model file (aerec.models._card): what made the model, `aerec info`,
and `aerec evaluate` reusing the split it records."""
import json
import re

import numpy as np
import pytest
import scipy.sparse as sp

import aerec
from aerec import data, datasets, io as aio
from aerec.models import CDAE, EASE, MultDAE, MultVAE, Popularity
from aerec.models._card import fingerprint

from test_cli import SMALL, run


@pytest.fixture(scope="module")
def split():
    inter = datasets.synthetic(n_users=200, n_items=60, density=0.08, random_state=1)
    return data.strong_generalization_split(inter, 20, 20, random_state=7)


def _small(cls):
    kw = {"hidden": (), "latent": 8} if cls is CDAE else {"hidden": (12,), "latent": 6}
    return cls(epochs=2, batch_size=50, **kw)


@pytest.mark.parametrize("cls", [MultDAE, MultVAE, CDAE])
def test_card_fields_survive_save_and_load(cls, split, tmp_path):
    m = _small(cls).fit(split.train, validation=split.validation)
    res = aerec.evaluate(m, split.test, ks=(10,))
    path = tmp_path / "m.npz"
    m.save(path)
    card = aerec.load(path).card
    assert card["aerec_version"] == aerec.__version__
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", card["created"])
    assert card["params"]["latent"] == m.latent and "backend" not in card["params"]
    X = split.train.to_csr()
    assert card["data"] == {"shape": [X.shape[0], X.shape[1]], "nnz": int(X.nnz),
                            "sha256": fingerprint(X)["sha256"]}
    assert card["split"]["protocol"] == "strong_generalization"
    assert card["split"]["random_state"] == 7 and card["split"]["n_test_users"] == 20
    kept = m.best_epoch_
    assert card["kept_epoch"] == kept
    assert card["validation"]["val_ndcg@100"] == pytest.approx(m.history_["val_ndcg@100"][kept])
    assert card["test"]["ndcg@10"] == pytest.approx(res["ndcg@10"])


def test_fingerprint_is_canonical_and_sensitive():
    X = sp.random(30, 20, density=0.2, format="csr", random_state=0, dtype=np.float32)
    Y = X.copy()
    Y.indices = Y.indices.astype(np.int64)
    Y.indptr = Y.indptr.astype(np.int64)
    assert fingerprint(X) == fingerprint(Y)
    Z = X.copy()
    Z.data[0] += 1
    assert fingerprint(Z)["sha256"] != fingerprint(X)["sha256"]


def test_validation_set_and_plain_matrix_leave_no_test_or_split(split, tmp_path):
    m = EASE(l2=50.0).fit(split.train.to_csr())
    aerec.evaluate(m, split.validation, ks=(10,))  # not a test set: no test metrics
    card = m.card
    assert "split" not in card and "test" not in card and "validation" not in card
    assert card["data"]["nnz"] == split.train.nnz


def test_files_without_a_card_still_load(split, tmp_path):
    path = tmp_path / "old.npz"
    Popularity().fit(split.train).save(path)
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(bytes(z[aio._META_KEY]).decode())
        arrays = {k: z[k] for k in z.files if k != aio._META_KEY}
    for k in ("card", "format", "format_version", "sha256"):
        meta.pop(k, None)
    with aio.atomic_write(path) as f:  # as aerec 0.1 wrote them: no card
        header = dict(meta, format=aio.FORMAT, format_version=aio.FORMAT_VERSION)
        header["sha256"] = aio._digest(header, arrays)
        np.savez(f, **{aio._META_KEY: np.frombuffer(json.dumps(header).encode(), np.uint8)}, **arrays)
    m = aerec.load(path)
    assert m.card["data"]["nnz"] == split.train.nnz and "split" not in m.card
    out = run("info", path)
    assert out.returncode == 0 and "model card: none" in out.stdout, out.stdout + out.stderr


def test_cli_info_prints_the_card_and_evaluate_reuses_its_split(tmp_path):
    path = tmp_path / "m.npz"
    out = run("train", "--model", "EASE", *SMALL, "--heldout-users", "15", "--seed", "3", "-o", path)
    assert out.returncode == 0, out.stderr
    info = run("info", path)
    assert info.returncode == 0, info.stderr
    assert "model card" in info.stdout and "sha256" in info.stdout
    assert re.search(r"split\s+strong_generalization \(.*n_test_users=15.*random_state=3", info.stdout), info.stdout
    assert re.search(r"test\s+.*ndcg@100=", info.stdout)
    # the flags that made the split are not needed (nor obeyed): the card's split is used ...
    ev = run("evaluate", path, *SMALL, "--seed", "3", "--heldout-users", "40")
    assert ev.returncode == 0, ev.stderr
    assert "split: the one recorded in the model file" in ev.stdout and "15 test users" in ev.stdout
    assert re.search(r"^\d+ users;", ev.stdout, re.M) and "15 users" in ev.stdout
    # ... and other data (here: another seed of the synthetic data) is caught by the fingerprint
    bad = run("evaluate", path, *SMALL, "--seed", "4")
    assert bad.returncode == 2 and "not the data the model was trained on" in bad.stderr, bad.stderr

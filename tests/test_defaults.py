"""Defaults that hold up: KL annealing and batch size scaled to the data, EASE choosing l2 on
validation, rejecting unknown keywords, and its exact dual form."""
import json

import numpy as np
import pytest
import scipy.sparse as sp

import aerec
from aerec import data, datasets, io as aio
from aerec.models import EASE, MultDAE, MultVAE
from aerec.models.baselines import EASE_L2_GRID


@pytest.fixture(scope="module")
def split():
    inter = datasets.synthetic(n_users=400, n_items=120, density=0.06, random_state=5)
    return data.strong_generalization_split(inter, 40, 40, random_state=1)


def test_kl_annealing_scales_to_the_planned_updates(split):
    n = split.train.n_users
    m = MultVAE(hidden=(8,), latent=4, epochs=5, batch_size="auto").fit(split.train)
    assert m.batch_size_ == max(32, n // 10)
    planned = 5 * -(-n // m.batch_size_)
    assert m.spec_["anneal_steps"] == int(0.8 * planned)
    assert m.net_.step == planned
    assert m.net_.beta == pytest.approx(m.anneal_cap)  # reached its cap (200000 steps: 0.2 * 50 / 200000)
    fixed = MultVAE(hidden=(8,), latent=4, epochs=1, total_anneal_steps=1000, batch_size=500).fit(split.train)
    assert fixed.spec_["anneal_steps"] == 1000 and fixed.batch_size_ == n
    with pytest.raises(ValueError, match="total_anneal_steps"):
        MultVAE(epochs=1, total_anneal_steps="later").fit(split.train)
    with pytest.raises(ValueError, match="batch_size"):
        MultDAE(epochs=1, batch_size="big").fit(split.train)


def test_auto_defaults_survive_save_and_load(split, tmp_path):
    m = MultVAE(hidden=(8,), latent=4, epochs=1).fit(split.train)
    m.save(tmp_path / "m.npz")
    back = aerec.load(tmp_path / "m.npz")
    assert back.total_anneal_steps == "auto" and back.batch_size == 500
    assert back.spec_["anneal_steps"] == m.spec_["anneal_steps"]


def test_default_anneal_reaches_its_cap(split):
    m = MultVAE(hidden=(8,), latent=4, epochs=3).fit(split.train)  # batch 500: one update an epoch here
    assert m.spec_["anneal_steps"] == 2 and m.net_.beta == pytest.approx(0.2)


def test_validation_selects_the_epoch_by_default(split):
    m = MultDAE(hidden=(8,), latent=4, epochs=4).fit(split.train, validation=split.validation)
    v = m.history_["val_ndcg@100"]
    assert m.best_epoch_ == int(np.argmax(v))


def test_ease_chooses_l2_on_validation(split):
    e = EASE().fit(split.train, validation=split.validation)
    assert set(e.l2_path_) == set(EASE_L2_GRID)
    assert e.l2_ == max(e.l2_path_, key=e.l2_path_.get)
    ref = EASE(l2=e.l2_).fit(split.train)
    np.testing.assert_array_equal(ref.B_, e.B_)
    assert e.card["validation"]["val_ndcg@100"] == pytest.approx(e.l2_path_[e.l2_])
    assert e.card["validation"]["l2"] == e.l2_ and "kept_epoch" not in e.card
    assert EASE().fit(split.train).l2_ == 500.0  # no validation: Steck's middle
    fixed = EASE(l2=30.0).fit(split.train, validation=split)  # a fixed l2 is kept, and reported
    assert fixed.l2_ == 30.0 and len(fixed.history_["val_ndcg@100"]) == 1


def test_ease_rejects_what_it_cannot_use(split):
    with pytest.raises(TypeError, match=r"\['epochs'\].*closed form"):
        EASE().fit(split.train, epochs=10)
    with pytest.raises(TypeError, match="EvalSet or Split"):
        EASE().fit(split.train, validation=split.train)
    with pytest.raises(TypeError, match="'auto'"):
        EASE(l2="big")
    with pytest.raises(ValueError, match="solver"):
        EASE(solver="fast")
    EASE().fit(split.train, verbose=0, k=50)  # the keywords it takes


@pytest.mark.parametrize("dtype, tol", [("float64", 1e-6), ("float32", 1e-4)])
def test_ease_dual_equals_primal(dtype, tol):
    X = sp.random(50, 180, density=0.12, format="csr", random_state=3, dtype=np.float32)
    X.data[:] = 1
    p = EASE(l2=3.0, dtype=dtype, solver="primal").fit(X)
    d = EASE(l2=3.0, dtype=dtype, solver="dual").fit(X)
    assert EASE()._form(X) == "dual" and EASE()._form(X.T.tocsr()) == "primal"
    np.testing.assert_allclose(d.B_, p.B_, atol=tol * np.abs(p.B_).max())
    ids_p, _ = p.recommend(np.arange(10), k=5)
    ids_d, _ = d.recommend(np.arange(10), k=5)
    assert (ids_p == ids_d).mean() > 0.95


def test_ease_files_of_earlier_versions_load(split, tmp_path):
    path = tmp_path / "e.npz"
    EASE(l2=40.0).fit(split.train).save(path)
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(bytes(z[aio._META_KEY]).decode())
        arrays = {k: z[k] for k in z.files if k != aio._META_KEY}
    for k in ("card", "sha256", "l2_"):
        meta.pop(k)
    meta["params"].pop("solver")
    meta["format_version"] = 1
    meta["sha256"] = aio._digest(meta, arrays)
    with aio.atomic_write(path) as f:
        np.savez(f, **{aio._META_KEY: np.frombuffer(json.dumps(meta).encode(), np.uint8)}, **arrays)
    e = aerec.load(path)
    assert e.l2_ == 40.0 and e.solver == "auto"

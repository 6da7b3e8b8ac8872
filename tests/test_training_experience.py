"""Training experience: progress by default for long fits, ReduceLROnPlateau on the live network,
a (fold_in, held_out) pair as validation."""
import numpy as np
import pytest
import scipy.sparse as sp

import aerec
from aerec import callbacks as cbs, data, datasets
from aerec.models import CDAE, MultDAE, MultVAE


@pytest.fixture(scope="module")
def split():
    inter = datasets.synthetic(n_users=300, n_items=60, density=0.08, random_state=3)
    return data.strong_generalization_split(inter, 30, 30, random_state=0)


def test_tqdm_is_a_dependency():
    import pathlib
    import tomllib
    meta = tomllib.loads((pathlib.Path(__file__).parents[1] / "pyproject.toml").read_text())
    assert any(d.startswith("tqdm") for d in meta["project"]["dependencies"])


def test_auto_progress_only_for_long_fits(split, capsys, monkeypatch):
    MultDAE(hidden=(8,), latent=4, epochs=2).fit(split.train)  # default verbose="auto", short: quiet
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(cbs, "AUTO_PROGRESS_AFTER_S", 0.0)  # as if each epoch were slow
    MultDAE(hidden=(8,), latent=4, epochs=3).fit(split.train)
    err = capsys.readouterr().err
    assert "MultDAE" in err and "3/3" in err
    MultDAE(hidden=(8,), latent=4, epochs=3).fit(split.train, verbose=0)
    assert capsys.readouterr().err == ""
    with pytest.raises(ValueError, match="'auto', 0, 1 or 2"):
        MultDAE(epochs=1).fit(split.train, verbose="loud")


def test_reduce_lr_on_plateau_changes_the_live_learning_rate(split):
    m = MultDAE(hidden=(8,), latent=4, epochs=6, learning_rate=1e-2)
    cb = aerec.ReduceLROnPlateau(monitor="loss", mode="max", patience=1, factor=0.5, min_lr=2e-3)
    m.fit(split.train, callbacks=[cb])  # the loss falls, so "max" sees no improvement: reduce each time
    lrs = m.history_["lr"]
    assert lrs[0] == pytest.approx(1e-2) and min(lrs) >= 2e-3 and m.learning_rate_ == pytest.approx(2e-3)
    assert len(cb.reductions) >= 2 and m.spec_["learning_rate"] == pytest.approx(2e-3)
    assert m.learning_rate == 1e-2  # the hyper-parameter is left as given


def test_set_learning_rate_continues_from_the_same_state(split):
    X = split.train.to_csr()
    a = MultDAE(hidden=(8,), latent=4, epochs=1, learning_rate=1e-3).fit(split.train)
    b = MultDAE(hidden=(8,), latent=4, epochs=1, learning_rate=1e-3).fit(split.train)
    b._set_learning_rate(1e-3)  # same rate: rebuilding the network changes nothing
    for m in (a, b):
        m.net_.train_epoch(m._binary(X), m._binary(X), batch_size=64, shuffle=True, seed=5)
    for p, q in zip(a.net_.get_params(), b.net_.get_params()):
        np.testing.assert_allclose(p, q, rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match="learning_rate"):
        b._set_learning_rate(0.0)


def test_reduce_lr_with_autoencoder_and_bad_values():
    x = np.random.default_rng(0).random((64, 10)).astype(np.float32)
    ae = aerec.Autoencoder(hidden=(4,), learning_rate=0.01)
    ae.fit(x, epochs=3, validation_data=x, callbacks=[aerec.ReduceLROnPlateau(patience=0, min_delta=10.0)],
           verbose=0)
    assert ae.learning_rate_ < 0.01
    with pytest.raises(ValueError, match="factor"):
        aerec.ReduceLROnPlateau(factor=1.5)
    with pytest.raises(ValueError, match="patience"):
        aerec.ReduceLROnPlateau(patience=-1)
    with pytest.raises(ValueError, match="val_loss"):
        ae.fit(x, epochs=1, callbacks=[aerec.ReduceLROnPlateau()], verbose=0)  # no validation: no val_loss


@pytest.mark.parametrize("cls", [MultDAE, MultVAE, CDAE])
def test_validation_pair_is_accepted(cls, split):
    kw = {"hidden": (), "latent": 6} if cls is CDAE else {"hidden": (8,), "latent": 4}
    v = split.validation
    a = cls(epochs=2, **kw).fit(split.train, validation=v)
    b = cls(epochs=2, **kw).fit(split.train, validation=(v.fold_in, v.held_out))
    assert a.history_["val_ndcg@100"] == pytest.approx(b.history_["val_ndcg@100"])
    c = cls(epochs=1, **kw).fit(split.train, validation=(v.fold_in.toarray(), v.held_out.toarray()))
    assert len(c.history_["val_ndcg@100"]) == 1


def test_bad_validation_pair_fails_before_training(split, monkeypatch):
    v = split.validation
    built = []
    monkeypatch.setattr(MultDAE, "_init_params", lambda self, *a: built.append(1))  # no network is built
    m = MultDAE(hidden=(8,), latent=4, epochs=1)
    n = split.train.n_items
    for bad, exc, frag in [((v.fold_in,), ValueError, "(fold_in, held_out)"),
                           ((v.fold_in, v.held_out[:3]), ValueError, "rows"),
                           ((v.fold_in, sp.csr_matrix((v.n_users, n + 1))), ValueError, "held_out"),
                           ((v.fold_in, sp.csr_matrix((v.n_users, n))), ValueError, "nothing to validate"),
                           ((v.fold_in, "x"), TypeError, "held_out")]:
        with pytest.raises(exc, match=frag):
            m.fit(split.train, validation=bad)
    with pytest.raises(TypeError, match="fold_in, held_out"):
        m.fit(split.train, validation=[v.fold_in, v.held_out])
    assert built == []

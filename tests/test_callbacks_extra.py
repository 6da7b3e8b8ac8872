"""CSVLogger, ModelCheckpoint and plot_history on real (small) fits."""
import csv
import os

import numpy as np
import pytest

import aerec


@pytest.fixture(scope="module")
def split():
    data = aerec.datasets.synthetic(n_users=300, n_items=80, density=0.08, random_state=1)
    return aerec.data.strong_generalization_split(data, n_validation_users=30, n_test_users=30, random_state=1)


def _dae(epochs=4):
    return aerec.MultDAE(hidden=(16,), latent=8, epochs=epochs, batch_size=50, random_state=0)


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.reader(f))


# -- CSVLogger -------------------------------------------------------------------------------------

def test_csv_logger_writes_one_row_per_epoch(split, tmp_path):
    path = tmp_path / "log.csv"
    model = _dae(4).fit(split.train, validation=split, callbacks=[aerec.CSVLogger(path)])
    rows = _rows(path)
    assert rows[0] == ["epoch", "loss", "val_ndcg@100"]
    assert [int(r[0]) for r in rows[1:]] == [0, 1, 2, 3]
    np.testing.assert_array_equal([float(r[1]) for r in rows[1:]], model.history_["loss"])      # exact
    np.testing.assert_array_equal([float(r[2]) for r in rows[1:]], model.history_["val_ndcg@100"])
    # a new fit starts the file anew ...
    _dae(2).fit(split.train, validation=split, callbacks=[aerec.CSVLogger(str(path))])
    assert len(_rows(path)) == 3
    # ... unless append=True: rows are added under the one header
    _dae(3).fit(split.train, validation=split, callbacks=[aerec.CSVLogger(path, append=True)])
    rows = _rows(path)
    assert len(rows) == 6 and sum(r[0] == "epoch" for r in rows) == 1


def test_csv_logger_autoencoder_separator_and_append_to_new_file(tmp_path):
    x = np.random.default_rng(0).random((64, 6), dtype=np.float32)
    path = tmp_path / "ae.tsv"
    ae = aerec.Autoencoder(hidden=(4,), random_state=0)
    ae.fit(x[:48], epochs=3, batch_size=16, validation_data=x[48:],
           callbacks=[aerec.CSVLogger(path, separator="\t", append=True)])
    with open(path) as f:
        lines = f.read().splitlines()
    assert lines[0] == "epoch\tloss\tval_loss" and len(lines) == 4


@pytest.mark.parametrize("kw, exc, frag", [
    (dict(path=3), TypeError, "file path"),
    (dict(path=""), ValueError, "empty"),
    (dict(path="x.csv", separator=";;"), ValueError, "one character"),
    (dict(path="x.csv", append="yes"), TypeError, "append"),
])
def test_csv_logger_rejects_bad_arguments(kw, exc, frag):
    with pytest.raises(exc, match=frag):
        aerec.CSVLogger(**kw)


def test_csv_logger_missing_folder_fails_before_training(split, tmp_path):
    model = _dae(50)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        model.fit(split.train, callbacks=[aerec.CSVLogger(tmp_path / "no" / "log.csv")])


# -- ModelCheckpoint -------------------------------------------------------------------------------

def test_model_checkpoint_keeps_the_best_epoch(split, tmp_path):
    path = tmp_path / "best.npz"
    ckpt = aerec.ModelCheckpoint(path, monitor="val_ndcg@100")
    assert ckpt.mode == "max"
    model = _dae(6).fit(split.train, validation=split, callbacks=[ckpt])
    hist = model.history_["val_ndcg@100"]
    assert ckpt.best == pytest.approx(max(hist)) and ckpt.best_epoch == int(np.argmax(hist))
    assert ckpt.last_saved == str(path)
    # the file is the best epoch's model: the model fit kept (its best epoch) recommends the same
    saved = aerec.load(path)
    assert isinstance(saved, aerec.MultDAE)
    a = saved.recommend(user_items=split.test.fold_in, k=10)[0]
    b = model.recommend(user_items=split.test.fold_in, k=10)[0]
    np.testing.assert_array_equal(a, b)
    assert len(saved.history_["loss"]) == ckpt.best_epoch + 1       # saved as that epoch ended
    assert [p for p in os.listdir(tmp_path) if p != "best.npz"] == []  # no temporary files left


def test_model_checkpoint_every_epoch_with_format_fields(split, tmp_path):
    ckpt = aerec.ModelCheckpoint(tmp_path / "m-{epoch:02d}-{val_ndcg@100:.3f}.npz", monitor="val_ndcg@100",
                                 save_best_only=False)
    model = _dae(3).fit(split.train, validation=split, callbacks=[ckpt])
    names = sorted(os.listdir(tmp_path))
    want = sorted(f"m-{e:02d}-{v:.3f}.npz" for e, v in enumerate(model.history_["val_ndcg@100"]))
    assert names == want
    for name in names:
        aerec.load(tmp_path / name)


def test_model_checkpoint_min_mode_on_autoencoder_loss(tmp_path):
    x = np.random.default_rng(0).random((64, 6), dtype=np.float32)
    ckpt = aerec.ModelCheckpoint(tmp_path / "ae.npz", monitor="loss")
    assert ckpt.mode == "min"
    ae = aerec.Autoencoder(hidden=(4,), random_state=0).fit(x, epochs=5, batch_size=16, callbacks=[ckpt])
    assert ckpt.best == pytest.approx(min(ae.history_["loss"]))
    assert isinstance(aerec.load(tmp_path / "ae.npz"), aerec.Autoencoder)


def test_model_checkpoint_missing_monitor_is_a_clear_error(split, tmp_path):
    with pytest.raises(ValueError, match=r"monitors 'val_loss'.*val_ndcg@100"):
        _dae(2).fit(split.train, validation=split, callbacks=[aerec.ModelCheckpoint(tmp_path / "m.npz")])
    with pytest.raises(ValueError, match="could not be filled"):
        _dae(2).fit(split.train, validation=split,
                    callbacks=[aerec.ModelCheckpoint(tmp_path / "{nope}.npz", monitor="loss")])


@pytest.mark.parametrize("kw, exc, frag", [
    (dict(path=None), TypeError, "file path"),
    (dict(path="m.npz", monitor=1), TypeError, "monitor"),
    (dict(path="m.npz", mode="up"), ValueError, "mode"),
    (dict(path="m.npz", save_best_only=1), TypeError, "save_best_only"),
    (dict(path="m.npz", verbose=2), ValueError, "verbose"),
])
def test_model_checkpoint_rejects_bad_arguments(kw, exc, frag):
    with pytest.raises(exc, match=frag):
        aerec.ModelCheckpoint(**kw)


# -- plot_history ----------------------------------------------------------------------------------

def test_plot_history_writes_a_png(split, tmp_path):
    pytest.importorskip("matplotlib", reason="plot_history needs matplotlib (the plot extra)")
    model = _dae(3).fit(split.train, validation=split)
    out = aerec.plot_history(model, tmp_path / "h.png")
    assert out == str(tmp_path / "h.png")
    data = (tmp_path / "h.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    # a plain history dict, loss only
    aerec.plot_history({"loss": [3.0, 2.0, 1.5]}, tmp_path / "d.png", title="mine")
    assert (tmp_path / "d.png").read_bytes()[:4] == b"\x89PNG"


def test_plot_history_bad_input(tmp_path):
    pytest.importorskip("matplotlib", reason="plot_history needs matplotlib (the plot extra)")
    with pytest.raises(ValueError, match="empty"):
        aerec.plot_history(aerec.MultDAE(), tmp_path / "h.png")
    with pytest.raises(TypeError, match="history"):
        aerec.plot_history([1, 2], tmp_path / "h.png")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        aerec.plot_history({"loss": [1.0]}, tmp_path / "no" / "h.png")


def test_plot_history_without_matplotlib_names_the_extra(tmp_path, monkeypatch):
    import builtins
    real = builtins.__import__

    def no_mpl(name, *a, **kw):
        if name == "matplotlib" or name.startswith("matplotlib."):
            raise ImportError("No module named 'matplotlib'")
        return real(name, *a, **kw)
    monkeypatch.setattr(builtins, "__import__", no_mpl)
    with pytest.raises(ImportError, match=r"aerec\[plot\]"):
        aerec.plot_history({"loss": [1.0, 0.5]}, tmp_path / "h.png")

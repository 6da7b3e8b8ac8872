"""The one training loop (aerec.models._training.run_epochs) and the models that use it."""
import numpy as np
import pytest
import scipy.sparse as sp

import aerec
from aerec.models._training import run_epochs


def ratings(n_users=80, n_items=50, seed=0):
    rng = np.random.default_rng(seed)
    u = rng.normal(size=(n_users, 3))
    v = rng.normal(size=(n_items, 3))
    full = np.clip(np.round(3 + u @ v.T * 0.7), 1, 5)
    mask = rng.random((n_users, n_items)) < 0.3
    return sp.csr_matrix(np.where(mask, full, 0).astype(np.float32))


def val_rmse(model, V):
    vu, vi = V.nonzero()
    pred = model.predict_ratings(vu, vi)
    return float(np.sqrt(np.mean((pred - np.asarray(V[vu, vi]).ravel()) ** 2)))


# -- the loop itself, on a stand-in model -------------------------------------------------------
class Fake:
    """A 'model' whose weight is a number; the loss per epoch and validation values are scripted."""

    def __init__(self, losses, vals=None):
        self.losses, self.vals = list(losses), vals
        self.history_ = {}
        self.w = 0

    def _get_weights(self):
        return self.w

    def _set_weights(self, w):
        self.w = w

    def train(self, epoch):
        self.w = epoch
        return self.losses[epoch]

    def validate(self):
        return {"val_m": self.vals[self.w]}


def test_loop_history_and_callback_order():
    m, calls = Fake([3.0, 2.0, 1.0], vals=[0.1, 0.2, 0.3]), []
    cb = aerec.LambdaCallback(on_train_begin=lambda logs: calls.append("begin"),
                              on_epoch_end=lambda e, logs: calls.append((e, dict(logs))),
                              on_train_end=lambda logs: calls.append("end"))
    n = run_epochs(m, 3, m.train, validate=m.validate, callbacks=[cb])
    assert n == 3 and cb.model is m and m.stop_training is False
    assert m.history_ == {"loss": [3.0, 2.0, 1.0], "val_m": [0.1, 0.2, 0.3]}
    assert calls == ["begin", (0, {"loss": 3.0, "val_m": 0.1}), (1, {"loss": 2.0, "val_m": 0.2}),
                     (2, {"loss": 1.0, "val_m": 0.3}), "end"]


def test_loop_first_epoch_and_end_epoch():
    m, ends = Fake([0, 0, 0, 5.0, 4.0]), []
    run_epochs(m, 2, m.train, first_epoch=3, end_epoch=lambda e, logs: ends.append(e))
    assert ends == [3, 4] and m.history_ == {"loss": [5.0, 4.0]}


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_loop_divergence_names_the_epoch(bad):
    m = Fake([1.0, bad, 1.0])
    ended = []
    with pytest.raises(FloatingPointError, match=r"epoch 1 .*lower learning_rate"):
        run_epochs(m, 3, m.train, callbacks=aerec.LambdaCallback(on_train_end=ended.append))
    assert m.history_ == {"loss": [1.0]} and not ended


def test_loop_keep_best_max_and_early_stopping():
    m = Fake([1.0] * 10, vals=[0.1, 0.5, 0.3, 0.4, 0.2, 0.9, 0.9, 0.9, 0.9, 0.9])
    run_epochs(m, 10, m.train, validate=m.validate, monitor="val_m", mode="max", keep_best=True,
               early_stopping=3)
    # best 0.5 at epoch 1; three epochs without a better value (2, 3, 4) -> stop after epoch 4
    assert m.history_["val_m"] == [0.1, 0.5, 0.3, 0.4, 0.2]
    assert m.best_epoch_ == 1 and m.w == 1


def test_loop_keep_best_min_ties_keep_the_first():
    m = Fake([1.0] * 4, vals=[0.5, 0.2, 0.2, 0.3])
    run_epochs(m, 4, m.train, validate=m.validate, monitor="val_m", mode="min", keep_best=True)
    assert m.best_epoch_ == 1 and m.w == 1 and len(m.history_["loss"]) == 4


def test_loop_without_validation_keeps_last_weights():
    m = Fake([3.0, 2.0])
    run_epochs(m, 2, m.train, monitor="val_m", keep_best=True, early_stopping=1)
    assert m.w == 1 and not hasattr(m, "best_epoch_")


def test_loop_stop_training_and_zero_epochs():
    m = Fake([1.0] * 5)
    assert run_epochs(m, 5, m.train, callbacks=lambda e, logs: e < 1) == 2
    m = Fake([])
    assert run_epochs(m, 0, m.train) == 0 and m.history_ == {}


def test_loop_argument_checks():
    m = Fake([1.0])
    with pytest.raises(ValueError, match="mode"):
        run_epochs(m, 1, m.train, mode="up")
    with pytest.raises(ValueError, match="monitor"):
        run_epochs(m, 1, m.train, keep_best=True)
    with pytest.raises(TypeError, match="callbacks"):
        run_epochs(m, 1, m.train, callbacks=3)


# -- AutoRec: its callbacks are really called -----------------------------------------------------
def test_autorec_calls_callbacks_each_epoch():
    R, V = ratings(seed=0), ratings(seed=1)
    seen = []
    cb = aerec.LambdaCallback(on_epoch_end=lambda e, logs: seen.append((e, sorted(logs))))
    ar = aerec.AutoRec(hidden=8, epochs=4, batch_size=16, random_state=0)
    ar.fit(R, validation=V, callbacks=[cb])
    assert seen == [(e, ["loss", "val_rmse"]) for e in range(4)]
    assert isinstance(cb.model, aerec.AutoRec)  # the private copy fit trains (atomic_fit)


def test_autorec_callback_can_stop():
    ar = aerec.AutoRec(hidden=8, epochs=10, batch_size=16, random_state=0)
    ar.fit(ratings(), callbacks=lambda e, logs: e < 2)
    assert len(ar.history_["loss"]) == 3


def test_autorec_callbacks_do_not_change_training():
    R, V = ratings(seed=0), ratings(seed=1)
    a = aerec.AutoRec(hidden=8, epochs=3, batch_size=16, random_state=0).fit(R, validation=V)
    b = aerec.AutoRec(hidden=8, epochs=3, batch_size=16, random_state=0).fit(
        R, validation=V, callbacks=[lambda e, logs: None])
    assert a.history_ == b.history_
    for wa, wb in zip(a.net_.get_params(), b.net_.get_params()):
        np.testing.assert_array_equal(wa, wb)


@pytest.mark.parametrize("mode", ["min", "max"])
def test_autorec_early_stopping_restores_best(mode):
    """mode='max' makes the first epochs 'best' on purpose, so a restore surely happens."""
    R, V = ratings(seed=0), ratings(seed=1)
    es = aerec.EarlyStopping(monitor="val_rmse", patience=1, mode=mode, restore_best_weights=True)
    ar = aerec.AutoRec(hidden=8, epochs=30, batch_size=16, random_state=0)
    ar.fit(R, validation=V, callbacks=[es])
    hist = ar.history_["val_rmse"]
    assert es.best_epoch is not None
    if mode == "max":
        assert es.stopped_epoch is not None and len(hist) < 30 and es.best_epoch < len(hist) - 1
    assert val_rmse(ar, V) == pytest.approx(hist[es.best_epoch], rel=1e-5)


def test_autorec_early_stopping_needs_validation():
    with pytest.raises(ValueError, match="val_rmse"):
        aerec.AutoRec(hidden=4, epochs=2).fit(ratings(), callbacks=[aerec.EarlyStopping("val_rmse")])


def test_autorec_bad_callbacks_rejected():
    with pytest.raises(TypeError, match="callbacks"):
        aerec.AutoRec(hidden=4, epochs=1).fit(ratings(), callbacks=3)

"""Concurrent use (issue 7, section 2).

* Every inference method of every model, on every available backend, called from 8 threads at
  once with requests of different sizes, returns bit for bit what a lone caller gets (the old
  shared network workspaces gave 28-30% wrong answers and use-after-free).
* ``aerec.search.TopK.search`` likewise.
* ``fit`` while other threads serve: every answer is the old model's or the new model's, never an
  error, a crash or a mix; a ``fit`` that raises leaves the old model serving.

Sizes are chosen so each kernel call runs long enough for calls to overlap on 2 cores (the old
build fails these tests in every run), and small enough to keep the file at about a minute.
"""
from __future__ import annotations

import collections
import threading

import numpy as np
import pytest
import scipy.sparse as sp

import aerec
from aerec.models.autoencoder import Autoencoder
from aerec.models.autorec import AutoRec
from aerec.models.baselines import EASE, Popularity
from aerec.models.sparse_autoencoders import CDAE, MultDAE, MultVAE
from aerec.search import TopK

N_THREADS = 8
# calls per thread per method: every method runs 8 x ROUNDS times, interleaved with the others. The
# NumPy backend shares no kernel workspaces (it is checked for Python-level state) and is slow.
ROUNDS = {"cpp": 6, "numpy": 1}

BACKENDS = [n for n, ok in aerec.backends.available().items() if ok and n in ("cpp", "numpy")]


def _implicit(n_users, n_items, seed):
    return aerec.datasets.synthetic(n_users=n_users, n_items=n_items, density=0.03, random_state=seed).to_csr()


def _ratings(X, seed):
    rng = np.random.default_rng(seed)
    R = X.copy()
    R.data = rng.integers(1, 6, R.nnz).astype(np.float32)
    return R


# name -> (factory(backend), data kind). Widths make one call take ~1 ms on the C++ backend.
MODELS = {
    "Autoencoder": (lambda be: Autoencoder(hidden=(128, 32, 128), random_state=0, backend=be), "dense"),
    "AutoRec-item": (lambda be: AutoRec(kind="item", hidden=64, epochs=2, clip=None, backend=be), "ratings"),
    "AutoRec-user": (lambda be: AutoRec(kind="user", hidden=64, epochs=2, clip=None, backend=be), "ratings"),
    "MultDAE": (lambda be: MultDAE(hidden=(128,), latent=32, epochs=2, batch_size=64, backend=be), "implicit"),
    "MultVAE": (lambda be: MultVAE(hidden=(128,), latent=32, epochs=2, batch_size=64, backend=be), "implicit"),
    "CDAE": (lambda be: CDAE(latent=64, epochs=2, batch_size=64, backend=be), "implicit"),
    "EASE": (lambda be: EASE(l2=50.0, backend=be), "implicit"),
    "Popularity": (lambda be: Popularity(), "implicit"),
}

_DATA = {}


def data(kind, seed=0):
    key = (kind, seed)
    if key not in _DATA:
        X = _implicit(300, 800 if seed == 0 else 700, seed)
        if kind == "ratings":
            X = _ratings(X, seed)
        elif kind == "dense":
            X = np.random.default_rng(seed).random((300, 400 if seed == 0 else 360)).astype(np.float32)
        _DATA[key] = X
    return _DATA[key]


def fit(name, backend, seed=0):
    factory, kind = MODELS[name]
    X = data(kind, seed)
    model = factory(backend)
    if kind == "dense":
        return model.fit(X, epochs=1, batch_size=64)
    return model.fit(X)


_FITTED = {}


def fitted(name, backend):
    if (name, backend) not in _FITTED:
        _FITTED[name, backend] = fit(name, backend)
    return _FITTED[name, backend]


# -- the inference calls of each model ----------------------------------------------------------

SIZES = (1, 7, 60, 250)  # requests of different sizes: a shared workspace would be regrown


def inference_calls(name, model, backend):
    """[(method label, zero-argument call)] covering every inference method of the model."""
    _, kind = MODELS[name]
    X = data(kind)
    sizes = SIZES if backend == "cpp" else SIZES[:3]
    calls = []
    if kind == "dense":
        for n in sizes:
            calls += [(f"encode[{n}]", lambda n=n: model.encode(X[:n])),
                      (f"predict[{n}]", lambda n=n: model.predict(X[:n], batch_size=64)),
                      (f"evaluate[{n}]", lambda n=n: model.evaluate(X[:n]))]
        calls += [("predict[1-D]", lambda: model.predict(X[3])), ("get_weights", model.get_weights)]
        return calls
    users = [np.arange(n) * 3 % X.shape[0] for n in sizes]
    for u in users:
        n = len(u)
        calls += [(f"recommend[{n}]", lambda u=u: model.recommend(u, k=10)),
                  (f"score[{n}]", lambda u=u: model.score_items(u)),
                  (f"recommend-batched[{n}]", lambda u=u: model.recommend(u, k=5, batch_size=16))]
        if model.supports_fold_in:
            calls.append((f"recommend-fold-in[{n}]", lambda u=u: model.recommend(user_items=X[u], k=10)))
    calls += [("recommend[scalar]", lambda: model.recommend(5, k=10)),
              ("recommend[items]", lambda: model.recommend(users[1], k=5, items=np.arange(0, 600, 3))),
              ("item_vectors", model.item_vectors)]
    if model.item_vectors().shape[0] == X.shape[1]:  # (user AutoRec's are transposed: issue 7, section 4)
        calls += [("similar_items", lambda: model.similar_items(np.arange(0, 200, 9), k=10)),
                  ("similar_items[scalar]", lambda: model.similar_items(4, k=10))]
    if name.startswith("AutoRec"):
        uu, ii = X.nonzero()
        calls += [(f"predict_ratings[{n}]", lambda n=n: model.predict_ratings(uu[:n], ii[:n])) for n in (1, 500)]
    if name in ("MultDAE", "MultVAE", "CDAE"):
        calls += [(f"encode[{n}]", lambda u=u: model.encode(X[u], user_ids=u)) for u, n in zip(users, sizes)]
        calls.append(("encode[fold-in]", lambda: model.encode(X[users[2]])))
    return calls


def _same(a, b):
    if isinstance(a, tuple):
        return isinstance(b, tuple) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b)


def hammer(calls, refs, rounds, n_threads=N_THREADS):
    """Every thread runs every call `rounds` times, starting at a different offset so different
    methods and request sizes overlap. Returns ({label: wrong answers}, [errors])."""
    wrong, errors = collections.Counter(), []
    lock = threading.Lock()
    barrier = threading.Barrier(n_threads)

    def worker(t):
        barrier.wait()
        n = len(calls)
        for r in range(rounds * n):
            i = (t * 5 + r) % n
            label, call = calls[i]
            try:
                out = call()
            except Exception as exc:  # noqa: BLE001 - reported below, with the method
                with lock:
                    errors.append(f"{label}: {type(exc).__name__}: {exc}")
                continue
            if not _same(out, refs[i]):
                with lock:
                    wrong[label] += 1

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(n_threads)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return wrong, errors


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", list(MODELS))
def test_inference_concurrent_matches_single_thread(name, backend):
    model = fitted(name, backend)
    calls = inference_calls(name, model, backend)
    refs = [call() for _, call in calls]  # the single-threaded answers
    wrong, errors = hammer(calls, refs, ROUNDS[backend])
    assert not errors, f"{name}/{backend}: {len(errors)} calls raised, e.g. {errors[:3]}"
    total = N_THREADS * ROUNDS[backend]
    assert not wrong, (f"{name}/{backend}: concurrent answers differ from the single-threaded ones "
                       f"(wrong of {total} per method): {dict(wrong)}")
    # and still the same afterwards (nothing cached went stale or got corrupted)
    assert all(_same(call(), ref) for (_, call), ref in zip(calls, refs))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("precision,prune", [("fp32", False), ("fp32", True), ("int8", True), ("bf16", False)])
def test_topk_search_concurrent(backend, precision, prune):
    rng = np.random.default_rng(3)
    n, d = 4000, 48
    items = (rng.normal(size=(n, d)) * (0.5 + (np.arange(n) % 11)[:, None] / 5)).astype(np.float32)
    index = TopK(items, bias=rng.normal(size=n).astype(np.float32) * 0.1, precision=precision, prune=prune,
                 backend=backend)
    calls = []
    for m in (1, 5, 64, 300) if backend == "cpp" else (1, 5, 40):
        q = rng.normal(size=(m, d)).astype(np.float32)
        ex = [rng.integers(0, n, 5) for _ in range(m)]
        calls += [(f"search[{m}]", lambda q=q, ex=ex: index.search(q, 10, exclude=ex)),
                  (f"search-k50[{m}]", lambda q=q: index.search(q, 50))]
    calls.append(("search[1-D]", lambda: index.search(items[7], 10, exclude=[7])))
    refs = [call() for _, call in calls]
    wrong, errors = hammer(calls, refs, ROUNDS[backend])
    assert not errors, errors[:3]
    assert not wrong, dict(wrong)


# -- fit while serving ---------------------------------------------------------------------------

SERVE_MODELS = ["Autoencoder", "AutoRec-item", "AutoRec-user", "MultDAE", "MultVAE", "CDAE", "EASE", "Popularity"]


def _serving_calls(name, model):
    """Calls valid for the old and the new model (which differ in their number of items)."""
    if name == "Autoencoder":
        x = data("dense")[:20]
        return [("encode", lambda: model.encode(x))]
    calls = [("recommend", lambda: model.recommend(np.arange(0, 40, 3), k=10)),
             ("score", lambda: model.score_items(np.arange(0, 40, 7)))]
    if model.item_vectors().shape[0] == model.train_.shape[1]:  # (not user AutoRec's: issue 7, section 4)
        calls.append(("similar_items", lambda: model.similar_items(np.arange(0, 100, 11), k=5)))
    if name.startswith("AutoRec"):
        calls.append(("predict_ratings", lambda: model.predict_ratings(np.arange(10), np.arange(10))))
    return calls


def _answers(name, model):
    return [call() for _, call in _serving_calls(name, model)]


def _serve_during(model, name, action):
    """Threads call the model in a loop while `action()` runs; returns what each call answered."""
    calls = _serving_calls(name, model)
    stop = threading.Event()
    seen, errors, lock = [], [], threading.Lock()

    def serve(t):
        i = t
        while not stop.is_set():
            label, call = calls[i % len(calls)]
            try:
                out = call()
            except Exception as exc:  # noqa: BLE001
                with lock:
                    errors.append(f"{label}: {type(exc).__name__}: {exc}")
            else:
                with lock:
                    seen.append((i % len(calls), out))
            i += 1

    threads = [threading.Thread(target=serve, args=(t,)) for t in range(N_THREADS - 1)]
    for th in threads:
        th.start()
    try:
        result = action()
    finally:
        stop.set()
        for th in threads:
            th.join()
    return result, seen, errors


@pytest.mark.parametrize("name", SERVE_MODELS)
def test_fit_while_serving_gives_old_or_new_model(name):
    backend = BACKENDS[0]
    old = fit(name, backend, seed=0)
    old_answers = _answers(name, old)
    factory, kind = MODELS[name]
    X_new = data(kind, seed=1)
    if kind == "dense":  # fit continues training: the reference is the same two fits in one thread
        ref = fit(name, backend, seed=0)
        ref.fit(data(kind, seed=0), epochs=1, batch_size=64)
        new_answers = _answers(name, ref)
        refit = lambda: old.fit(data(kind, seed=0), epochs=1, batch_size=64)  # noqa: E731
    else:
        new_answers = _answers(name, fit(name, backend, seed=1))
        refit = lambda: old.fit(X_new)  # noqa: E731
    model, seen, errors = _serve_during(old, name, refit)
    assert model is old
    assert not errors, f"{name}: serving during fit raised: {errors[:3]}"
    mixed = [i for i, out in seen if not (_same(out, old_answers[i]) or _same(out, new_answers[i]))]
    assert not mixed, f"{name}: {len(mixed)} of {len(seen)} answers during fit were neither the old nor the new model's"
    assert all(_same(a, b) for a, b in zip(_answers(name, old), new_answers))


@pytest.mark.parametrize("name", ["Autoencoder", "MultVAE", "AutoRec-item", "EASE"])
def test_failed_fit_leaves_old_model_serving(name):
    backend = BACKENDS[0]
    model = fit(name, backend, seed=0)
    before = _answers(name, model)
    _, kind = MODELS[name]

    def boom(epoch, logs):
        raise RuntimeError("stop here")

    def failing_fit():
        with pytest.raises((RuntimeError, ValueError)):
            if kind == "dense":
                model.fit(data(kind), epochs=2, callbacks=[boom])
            elif name == "MultVAE":
                model.fit(data(kind, seed=1), callbacks=[boom])
            else:  # no callbacks: an invalid matrix makes fit raise
                model.fit(sp.csr_matrix((3, 0), dtype=np.float32))

    _, seen, errors = _serve_during(model, name, failing_fit)
    assert not errors, errors[:3]
    assert all(_same(out, before[i]) for i, out in seen)
    assert all(_same(a, b) for a, b in zip(_answers(name, model), before))


def test_callbacks_see_the_model_being_trained():
    """fit trains a private copy: callbacks get it, and it becomes the served model at the end."""
    model = MultVAE(hidden=(32,), latent=8, epochs=2, batch_size=64)
    seen = []
    model.fit(data("implicit"), callbacks=[lambda epoch, logs: seen.append(epoch)])
    assert seen == [0, 1] and model.history_["loss"] and model.net_ is not None


def test_concurrent_fits_leave_one_complete_model():
    """Two fits at once: the model ends as one of them, whole (no mix of the two)."""
    backend = BACKENDS[0]
    model = fit("MultDAE", backend, seed=0)
    a, b = data("implicit", seed=0), data("implicit", seed=1)
    ref_a, ref_b = _answers("MultDAE", fit("MultDAE", backend, 0)), _answers("MultDAE", fit("MultDAE", backend, 1))
    threads = [threading.Thread(target=model.fit, args=(X,)) for X in (a, b)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    got = _answers("MultDAE", model)
    assert all(map(_same, got, ref_a)) or all(map(_same, got, ref_b))


def test_set_weights_while_serving():
    """Autoencoder.set_weights installs new weights between inference calls, never inside one."""
    model = fit("Autoencoder", BACKENDS[0])
    w_old = model.get_weights()
    w_new = [w * np.float32(0.5) for w in w_old]
    x = data("dense")[:20]
    old = model.encode(x)
    model.set_weights(w_new)
    new = model.encode(x)
    model.set_weights(w_old)

    def flip():
        for i in range(20):
            model.set_weights(w_new if i % 2 == 0 else w_old)

    _, seen, errors = _serve_during(model, "Autoencoder", flip)
    assert not errors, errors[:3]
    assert all(_same(out, old) or _same(out, new) for _, out in seen)

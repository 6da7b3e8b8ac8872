"""Top-k selection over dense score rows (``backend.select_topk``): every backend against a plain
Python reference, and the compiled kernel against the NumPy one."""
import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings, strategies as st

import aerec


def reference(scores, k, exclude=None, candidates=None):
    s = scores.astype(np.float64).copy()
    if exclude is not None:
        for r in range(s.shape[0]):
            s[r, exclude[r].indices] = -np.inf
    if candidates is not None:
        keep = np.zeros(s.shape[1], bool)
        keep[candidates] = True
        s[:, ~keep] = -np.inf
    k = min(k, s.shape[1])
    ids = np.full((s.shape[0], k), -1)
    vals = np.full((s.shape[0], k), -np.inf)
    for r in range(s.shape[0]):
        order = sorted((j for j in range(s.shape[1]) if s[r, j] > -np.inf), key=lambda j: (-s[r, j], j))[:k]
        ids[r, :len(order)] = order
        vals[r, :len(order)] = s[r, order]
    return ids, vals


def _both(fast="cpp"):
    av = aerec.backends.available()
    if not (av.get(fast) and av.get("numpy")):
        pytest.skip(f"needs the {fast} and numpy backends")
    return aerec.backends.get(fast), aerec.backends.get("numpy")


@settings(max_examples=60, deadline=None)
@given(n=st.integers(0, 9), m=st.integers(1, 40), k=st.integers(1, 50), seed=st.integers(0, 10_000),
       density=st.sampled_from([0.0, 0.2, 1.0]), ties=st.booleans(), cand=st.booleans())
def test_matches_reference(n, m, k, seed, density, ties, cand):
    rng = np.random.default_rng(seed)
    scores = (rng.integers(0, 3, (n, m)) if ties else rng.normal(size=(n, m))).astype(np.float32)
    ex = sp.random(n, m, density=density, format="csr", random_state=seed) if n else None
    candidates = rng.choice(m, size=rng.integers(1, m + 1), replace=False) if cand else None
    rid, rvals = reference(scores, k, ex, candidates)
    for name, ok in aerec.backends.available().items():
        if not ok:
            continue
        ids, vals = aerec.backends.get(name).select_topk(scores, k, ex, candidates)
        assert ids.dtype == np.int32 and vals.dtype == np.float32, name
        np.testing.assert_array_equal(ids, rid, err_msg=name)
        np.testing.assert_array_equal(vals, rvals.astype(np.float32), err_msg=name)


def test_nan_inf_and_signed_zero(backend):
    scores = np.array([[np.nan, 1.0, -np.inf, -0.0, 0.0, np.inf, np.nan]], np.float32)
    ids, vals = backend.select_topk(scores, 7)
    assert ids[0].tolist() == [5, 1, 3, 4, -1, -1, -1]  # -0 and +0 tie: lower id first
    assert vals[0, :4].tolist() == [np.inf, 1.0, 0.0, 0.0] and np.all(np.isneginf(vals[0, 4:]))


def test_unsorted_duplicate_exclusions(backend):
    scores = np.arange(10, dtype=np.float32)[None, :].repeat(2, 0)
    scores[1, 9] = np.nan
    ex = sp.csr_matrix((np.ones(4), np.array([9, 3, 9, 8]), np.array([0, 4, 4])), shape=(2, 10))
    ex.has_canonical_format = False
    ids, _ = backend.select_topk(scores, 3, ex)
    assert ids[0].tolist() == [7, 6, 5]
    assert ids[1].tolist() == [8, 7, 6]


def test_large_rows_in_blocks(backend):
    """More score rows than one scratch block of the NumPy path."""
    rng = np.random.default_rng(1)
    scores = rng.standard_normal((3000, 700)).astype(np.float32)
    ex = sp.random(3000, 700, density=0.05, format="csr", random_state=2)
    ids, vals = backend.select_topk(scores, 25, ex)
    s = scores.copy()
    s[ex.nonzero()] = -np.inf
    order = np.argsort(-s, axis=1, kind="stable")[:, :25]
    np.testing.assert_array_equal(ids, order)
    np.testing.assert_array_equal(vals, np.take_along_axis(s, order, axis=1))


@pytest.mark.parametrize("fast", ["cpp", "numba"])
def test_compiled_matches_numpy_non_tied(fast):
    cpp, ref = _both(fast)
    rng = np.random.default_rng(3)
    scores = rng.standard_normal((200, 1500)).astype(np.float32)
    ex = sp.random(200, 1500, density=0.02, format="csr", random_state=4)
    cand = rng.choice(1500, 900, replace=False)
    for k in (1, 10, 100, 1500, 2000):
        for e, c in ((None, None), (ex, None), (ex, cand)):
            a, c2 = cpp.select_topk(scores, k, e, c), ref.select_topk(scores, k, e, c)
            np.testing.assert_array_equal(a[0], c2[0])
            np.testing.assert_array_equal(a[1], c2[1])


def test_compiled_kernel_checks():
    core = pytest.importorskip("aerec._core")
    scores = np.zeros((1, 5), np.float32)
    with pytest.raises(IndexError, match="outside"):
        core.select_topk_rows(scores, 2, np.array([0, 1], np.int64), np.array([5], np.int32))
    with pytest.raises(TypeError, match="int32"):
        core.select_topk_rows(scores, 2, np.array([0, 1], np.int64), np.array([1], np.int64))
    with pytest.raises(ValueError, match="k must be positive"):
        core.select_topk_rows(scores, 0)


def test_numpy_bad_exclusion_ids():
    ref = aerec.backends.get("numpy")
    ex = sp.csr_matrix((np.ones(1), np.array([5]), np.array([0, 1])), shape=(1, 6))
    with pytest.raises(IndexError, match="outside"):
        ref.select_topk(np.zeros((1, 5), np.float32), 2, ex)
    with pytest.raises(ValueError, match="k must be positive"):
        ref.select_topk(np.zeros((1, 5), np.float32), 0)

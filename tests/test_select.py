"""Top-k selection over dense score rows: the compiled kernel against the NumPy reference."""
import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings, strategies as st

from aerec._select import _select_topk_numpy, select_topk

core = pytest.importorskip("aerec._core")


def reference(scores, k, exclude=None):
    s = scores.astype(np.float64).copy()
    if exclude is not None:
        for r in range(s.shape[0]):
            s[r, exclude[r].indices] = -np.inf
    k = min(k, s.shape[1])
    ids = np.full((s.shape[0], k), -1)
    vals = np.full((s.shape[0], k), -np.inf)
    for r in range(s.shape[0]):
        order = sorted((j for j in range(s.shape[1]) if np.isfinite(s[r, j])), key=lambda j: (-s[r, j], j))[:k]
        ids[r, :len(order)] = order
        vals[r, :len(order)] = s[r, order]
    return ids, vals


@settings(max_examples=60, deadline=None)
@given(n=st.integers(0, 9), m=st.integers(1, 40), k=st.integers(1, 50), seed=st.integers(0, 10_000),
       density=st.sampled_from([0.0, 0.2, 1.0]), ties=st.booleans())
def test_matches_reference(n, m, k, seed, density, ties):
    rng = np.random.default_rng(seed)
    scores = (rng.integers(0, 3, (n, m)) if ties else rng.normal(size=(n, m))).astype(np.float32)
    ex = sp.random(n, m, density=density, format="csr", random_state=seed) if n else None
    ids, vals = select_topk(scores, k, ex)
    rid, rvals = reference(scores, k, ex)
    np.testing.assert_array_equal(ids, rid)
    np.testing.assert_array_equal(vals, rvals.astype(np.float32))
    nid, nvals = _select_topk_numpy(scores, k, ex)
    np.testing.assert_array_equal(nid, rid)


def test_unsorted_duplicate_exclusions_and_nan():
    scores = np.arange(10, dtype=np.float32)[None, :].repeat(2, 0)
    scores[1, 9] = np.nan
    indptr = np.array([0, 4, 4], np.int64)
    indices = np.array([9, 3, 9, 8], np.int32)
    ids, vals = core.select_topk_rows(scores, 3, indptr, indices)
    assert ids[0].tolist() == [7, 6, 5]
    assert ids[1].tolist() == [8, 7, 6]


def test_bad_exclusion_ids():
    scores = np.zeros((1, 5), np.float32)
    with pytest.raises(IndexError, match="outside"):
        core.select_topk_rows(scores, 2, np.array([0, 1], np.int64), np.array([5], np.int32))
    with pytest.raises(TypeError, match="int32"):
        core.select_topk_rows(scores, 2, np.array([0, 1], np.int64), np.array([1], np.int64))
    with pytest.raises(ValueError, match="k must be positive"):
        core.select_topk_rows(scores, 0)

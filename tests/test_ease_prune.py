"""EASE pruned to one global budget: ``top_magnitude_csr`` (the k largest off-diagonal |B_ij| as CSR
rows) on every backend against a brute-force definition, exactly (same kept entries, same order,
same values), ties and signed zeros included; bad input; 8 concurrent callers; and
``compress.prune`` giving the same packed model whichever backend selected the entries."""
from __future__ import annotations

import concurrent.futures

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings, strategies as st

import aerec
from aerec import compress


def brute(B, k):
    """The definition: off-diagonal entries ordered by descending |B_ij|, ties by row-major position;
    the first k, less those equal to the k-th when it is 0."""
    n = B.shape[0]
    a = np.abs(B.astype(np.float64)).ravel()
    off = np.flatnonzero(~np.eye(n, dtype=bool).ravel())
    order = off[np.lexsort((off, -a[off]))]  # primary: -|B|, secondary: position
    take = order[:k]
    thr = a[take[-1]]
    if thr == 0:
        take = take[a[take] > 0]
    take = np.sort(take)
    r, c = np.divmod(take, n)
    indptr = np.concatenate([[0], np.cumsum(np.bincount(r, minlength=n))]).astype(np.int64)
    return indptr, c.astype(np.int32), B.ravel()[take].astype(np.float32)


def _backends():
    return [aerec.backends.get(n) for n, ok in aerec.backends.available().items() if ok]


def _check(B, k):
    want = brute(B, k)
    for be in _backends():
        got = be.top_magnitude_csr(B, k)
        assert got[0].dtype == np.int64 and got[1].dtype == np.int32 and got[2].dtype == np.float32, be.NAME
        for g, w in zip(got, want):
            np.testing.assert_array_equal(g, w, err_msg=be.NAME)
        # bit-identical values (signed zeros are never kept, so array_equal is enough on values)
        assert got[2].view(np.uint32).tolist() == want[2].view(np.uint32).tolist(), be.NAME


@settings(max_examples=80, deadline=None)
@given(n=st.integers(2, 40), seed=st.integers(0, 10_000), kind=st.sampled_from(["normal", "ties", "zeros", "wide"]),
       frac=st.floats(0.0, 1.0))
def test_matches_definition(n, seed, kind, frac):
    rng = np.random.default_rng(seed)
    if kind == "normal":
        B = rng.normal(size=(n, n))
    elif kind == "ties":  # few distinct magnitudes, both signs: ties at the threshold, -x vs x
        B = rng.integers(-3, 4, (n, n)) * 0.25
    elif kind == "zeros":  # mostly (signed) zeros: the threshold often lands on 0
        B = np.where(rng.random((n, n)) < 0.8, np.where(rng.random((n, n)) < 0.5, -0.0, 0.0), rng.normal(size=(n, n)))
    else:  # subnormals to huge values: every exponent range of the bit-pattern histogram
        B = rng.choice([-1, 1], (n, n)) * 10.0 ** rng.uniform(-44, 38, (n, n))
    B = B.astype(np.float32)
    B[np.diag_indices(n)] = rng.normal(size=n) * 100  # a large diagonal is never kept
    k = 1 + int(frac * (n * (n - 1) - 1))
    _check(B, k)


def test_ties_straddling_the_histogram_bins():
    """Many entries share the threshold's high 16 bits (the low-half histogram decides), many equal
    it exactly (the row-major tie rule decides across rows and threads)."""
    rng = np.random.default_rng(7)
    n = 700
    base = np.float32(0.37).view(np.uint32) & np.uint32(0xFFFF0000)
    bits = base + rng.integers(0, 8, (n, n)).astype(np.uint32)  # 8 values within one high-half bin
    B = bits.view(np.float32) * rng.choice(np.array([-1, 1], np.float32), (n, n))
    B[rng.random((n, n)) < 0.3] = 0.0
    for k in (1, 1000, 123_457, int(0.5 * n * (n - 1)), n * (n - 1)):
        _check(B, k)


@pytest.mark.parametrize("collect_limit", [0, 1, -1, 10 ** 9])
def test_compiled_paths_agree(collect_limit):
    """The compiled kernel decides the threshold's bin either from its collected entries or by a
    second histogram and a counting pass (collect_limit, a test hook): same result."""
    if not aerec.backends.available().get("cpp"):
        pytest.skip("needs the compiled backend")
    from aerec import _core
    rng = np.random.default_rng(5)
    for n, kind in ((3, "ties"), (64, "normal"), (257, "ties"), (300, "normal")):
        B = (rng.integers(-2, 3, (n, n)) * 0.5 if kind == "ties" else rng.normal(size=(n, n))).astype(np.float32)
        for k in sorted({1, n, n * (n - 1) // 3, n * (n - 1) - 1, n * (n - 1)}):
            want = brute(B, k)
            for threads in (1, 2, 3):
                got = _core.top_magnitude_csr(B, k, threads, collect_limit)
                for g, w in zip(got, want):
                    np.testing.assert_array_equal(g, w, err_msg=f"n={n} k={k} threads={threads}")


def test_all_off_diagonal_kept_drops_zeros():
    B = np.array([[5, 0, 2], [-0.0, 9, -1], [3, 0, 7]], np.float32)
    indptr, indices, data = aerec.backends.get("numpy").top_magnitude_csr(B, 6)
    assert indptr.tolist() == [0, 1, 2, 3] and indices.tolist() == [2, 2, 0] and data.tolist() == [2, -1, 3]
    _check(B, 6)


def test_bad_input():
    good = np.ones((4, 4), np.float32)
    for be in _backends():
        with pytest.raises(TypeError, match="float32"):
            be.top_magnitude_csr(good.astype(np.float64), 3)
        with pytest.raises(TypeError, match="square"):
            be.top_magnitude_csr(np.ones((4, 5), np.float32), 3)
        with pytest.raises(ValueError, match="2 x 2"):
            be.top_magnitude_csr(np.ones((1, 1), np.float32), 1)
        for k in (0, 13, -1, 2.5, True):
            with pytest.raises(ValueError, match=r"k must be an int in \[1, 12\]"):
                be.top_magnitude_csr(good, k)
        for bad in (np.nan, np.inf, -np.inf):
            B = good.copy()
            B[1, 2] = bad
            with pytest.raises(ValueError, match="non-finite"):
                be.top_magnitude_csr(B, 3)
        B = good.copy()
        B[2, 2] = np.nan  # the diagonal is never read for selection
        assert be.top_magnitude_csr(B, 12)[0][-1] == 12
    # a strided view is accepted (copied) by the compiled backend too
    big = np.arange(64, dtype=np.float32).reshape(8, 8)
    for be in _backends():
        np.testing.assert_array_equal(be.top_magnitude_csr(big[::2, ::2].copy(), 5)[1],
                                      aerec.backends.get("numpy").top_magnitude_csr(big[::2, ::2].copy(), 5)[1])


def test_concurrent_callers():
    rng = np.random.default_rng(11)
    mats = [np.round(rng.normal(size=(300, 300)), 2).astype(np.float32) for _ in range(8)]
    want = [brute(B, 9000) for B in mats]
    for be in _backends():
        with concurrent.futures.ThreadPoolExecutor(8) as ex:
            got = list(ex.map(lambda B: be.top_magnitude_csr(B, 9000), mats))
        for g, w in zip(got, want):
            for a, b in zip(g, w):
                np.testing.assert_array_equal(a, b, err_msg=be.NAME)


@pytest.mark.parametrize("density", [0.05, 0.1, 0.5])
def test_prune_same_model_on_every_backend(density):
    X = aerec.datasets.synthetic(300, 120, density=0.08, random_state=2).to_csr()
    exact = aerec.EASE(l2=20.0, backend="numpy").fit(X)
    packed = []
    for be in _backends():
        e = aerec.EASE(l2=20.0, backend=be.NAME).fit(X)
        e.B_ = exact.B_.copy()  # the same B (the fits agree to rounding, not bit for bit)
        p = compress.prune(e, density=density)
        packed.append((be.NAME, p.net_.packed_layers()[0], p.item_vectors()))
    ref = packed[0]
    for name, arrays, B in packed[1:]:
        for key in ref[1]:
            np.testing.assert_array_equal(arrays[key], ref[1][key], err_msg=f"{name} {key}")
        np.testing.assert_array_equal(B, ref[2])
    kept = ref[2]
    assert np.count_nonzero(kept) == int(round(density * 120 ** 2))
    want = brute(exact.B_, int(round(density * 120 ** 2)))
    np.testing.assert_array_equal(kept, sp.csr_matrix(want[::-1], shape=kept.shape).toarray())

"""aerec._core.gemm / backends.cpp.gemm against the float64 NumPy reference, under every ISA level."""
import numpy as np
import pytest

import aerec
from aerec.backends import numpy_ as ref_backend

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

core = pytest.importorskip("aerec._core")
from aerec.backends import cpp as cpp_backend  # noqa: E402

ACTIVATIONS = ["identity", "relu", "sigmoid", "tanh", "elu", "selu"]
_LEVELS = ["scalar", "avx2", "avx512"]


def _isa_levels():
    top = core.detected_isa()
    order = _LEVELS + ["amx"]
    return [lvl for lvl in _LEVELS if order.index(lvl) <= order.index(top)]


@pytest.fixture(params=_isa_levels())
def isa(request):
    old = core.active_isa()
    got = core.set_isa(request.param)
    assert got == request.param
    yield got
    core.set_isa("amx" if old == "amx" else old)


def _act64(name, z):
    return ref_backend._gemm_activation(name)(z)


def _check(got, a, b, ta, tb, bias, activation, alpha, beta, c0):
    """Elementwise bound: |got - ref| <= L * gemm_error_bound + act_error, gemm_error_bound from
    |alpha| |op(a)| |op(b)| K eps (float32 accumulation)."""
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    opa = a64.T if ta else a64
    opb = b64.T if tb else b64
    z = alpha * (opa @ opb)
    scale = abs(alpha) * (np.abs(opa) @ np.abs(opb))
    if c0 is not None and beta != 0:
        z = z + beta * c0.astype(np.float64)
        scale = scale + abs(beta) * np.abs(c0)
    if bias is not None:
        z = z + bias.astype(np.float64)
        scale = scale + np.abs(bias)
    want = _act64(activation, z)
    k = opa.shape[1]
    tol = 2.0 * (4 * (k + 2) * 6e-8 * scale) + 2e-6 * np.abs(want) + 1e-30
    err = np.abs(got.astype(np.float64) - want)
    assert got.dtype == np.float32 and got.shape == want.shape
    bad = ~(err <= tol)
    assert not bad.any(), (
        f"max err {err.max():.3g} at {np.argwhere(bad)[0]}, tol there {tol[bad][0]:.3g}")


def _strided(rng, rows, cols, pad):
    """float32 (rows, cols) view with row stride cols + pad (contiguous last dimension)."""
    base = rng.standard_normal((rows, cols + pad)).astype(np.float32)
    return base[:, :cols]


dims = st.one_of(st.integers(0, 300), st.sampled_from([1, 2, 7, 15, 16, 17, 31, 32, 33, 47, 63, 65]))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(M=dims, N=dims, K=dims, ta=st.booleans(), tb=st.booleans(), use_bias=st.booleans(),
       activation=st.sampled_from(ACTIVATIONS), alpha=st.sampled_from([1.0, -0.5, 2.0]),
       beta=st.sampled_from([0.0, 1.0, 0.5]), pad=st.sampled_from([0, 0, 3]),
       threads=st.sampled_from([1, 2, 0]), seed=st.integers(0, 2**31 - 1))
def test_gemm_matches_reference(isa, M, N, K, ta, tb, use_bias, activation, alpha, beta, pad,
                                threads, seed):
    rng = np.random.default_rng(seed)
    a = _strided(rng, K, M, pad) if ta else _strided(rng, M, K, pad)
    b = _strided(rng, N, K, pad) if tb else _strided(rng, K, N, pad)
    bias = rng.standard_normal(N).astype(np.float32) if use_bias else None
    out = None
    c0 = None
    if beta != 0.0:
        out = _strided(rng, M, N, pad)
        c0 = out.copy()
    got = core.gemm(a, b, trans_a=ta, trans_b=tb, bias=bias, activation=activation, alpha=alpha,
                    beta=beta, out=out, num_threads=threads)
    if out is not None:
        assert got is out or np.shares_memory(got, out)
    _check(got, a, b, ta, tb, bias, activation, alpha, beta, c0)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(M=st.integers(1, 40), N=st.integers(1, 40), K=st.integers(300, 3000), ta=st.booleans(),
       tb=st.booleans(), activation=st.sampled_from(ACTIVATIONS), seed=st.integers(0, 2**31 - 1))
def test_gemm_long_k(isa, M, N, K, ta, tb, activation, seed):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((K, M) if ta else (M, K)).astype(np.float32)
    b = rng.standard_normal((N, K) if tb else (K, N)).astype(np.float32)
    bias = rng.standard_normal(N).astype(np.float32)
    got = core.gemm(a, b, trans_a=ta, trans_b=tb, bias=bias, activation=activation)
    _check(got, a, b, ta, tb, bias, activation, 1.0, 0.0, None)


@pytest.mark.parametrize("shape", [(300, 280, 530), (130, 1000, 70), (777, 65, 300)])
@pytest.mark.parametrize("threads", [1, 2])
def test_gemm_packed_parallel_path(isa, shape, threads):
    M, N, K = shape
    rng = np.random.default_rng(1)
    for ta in (False, True):
        for tb in (False, True):
            a = rng.standard_normal((K, M) if ta else (M, K)).astype(np.float32)
            b = rng.standard_normal((N, K) if tb else (K, N)).astype(np.float32)
            bias = rng.standard_normal(N).astype(np.float32)
            got = core.gemm(a, b, trans_a=ta, trans_b=tb, bias=bias, activation="tanh",
                            num_threads=threads)
            _check(got, a, b, ta, tb, bias, "tanh", 1.0, 0.0, None)


def test_integer_inputs_are_exact_and_deterministic_across_isas():
    rng = np.random.default_rng(3)
    a = rng.integers(-3, 4, (257, 301)).astype(np.float32)
    b = rng.integers(-3, 4, (301, 190)).astype(np.float32)
    want = (a.astype(np.int64) @ b.astype(np.int64)).astype(np.float32)
    old = core.active_isa()
    try:
        for lvl in _isa_levels():
            core.set_isa(lvl)
            for threads in (1, 2):
                np.testing.assert_array_equal(core.gemm(a, b, num_threads=threads), want)
    finally:
        core.set_isa(old)


def test_beta_zero_ignores_nan_in_out_and_nan_propagates():
    a = np.ones((5, 4), np.float32)
    b = np.ones((4, 3), np.float32)
    out = np.full((5, 3), np.nan, np.float32)
    np.testing.assert_array_equal(core.gemm(a, b, out=out), np.full((5, 3), 4, np.float32))
    a[2, 1] = np.nan
    for act in ACTIVATIONS:
        c = core.gemm(a, b, activation=act)
        assert np.isnan(c[2]).all() and not np.isnan(np.delete(c, 2, axis=0)).any()


def test_activation_saturation():
    x = np.array([[-1e4, -200.0, -90.0, -20.0, 0.0, 20.0, 90.0, 200.0, 1e4]], np.float32)
    eye = np.ones((1, 1), np.float32)
    for act in ACTIVATIONS:
        got = core.gemm(x.T, eye, activation=act).ravel()
        want = _act64(act, x.ravel().astype(np.float64))
        assert np.all(np.isfinite(got))
        np.testing.assert_allclose(got, want, rtol=2e-6, atol=1e-30)


def test_k_zero_gives_activation_of_beta_c_plus_bias():
    a = np.zeros((3, 0), np.float32)
    b = np.zeros((0, 2), np.float32)
    out = np.array([[1, -2], [3, -4], [0, 5]], np.float32)
    bias = np.array([1, 1], np.float32)
    got = core.gemm(a, b, bias=bias, activation="relu", beta=2.0, out=out)
    np.testing.assert_array_equal(got, np.array([[3, 0], [7, 0], [1, 11]], np.float32))
    assert core.gemm(np.zeros((0, 4), np.float32), np.zeros((4, 6), np.float32)).shape == (0, 6)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_bias_activation_in_place(isa, activation):
    rng = np.random.default_rng(5)
    x = _strided(rng, 67, 45, 3) * 4
    bias = rng.standard_normal(45).astype(np.float32)
    want = _act64(activation, x.astype(np.float64) + bias)
    core.bias_activation(x, bias, activation)
    np.testing.assert_allclose(x, want, rtol=2e-6, atol=1e-6)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_backend_parity(activation):
    rng = np.random.default_rng(11)
    a = rng.standard_normal((10, 64))  # float64 on purpose: the backend converts once
    b = rng.standard_normal((32, 64)).astype(np.float32)
    bias = rng.standard_normal(32)
    got = cpp_backend.gemm(a, b, trans_b=True, bias=bias, activation=activation, alpha=0.5)
    want = ref_backend.gemm(a, b, trans_b=True, bias=bias, activation=activation, alpha=0.5)
    assert got.dtype == np.float32 and got.shape == (10, 32)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    # non-contiguous last dimension is copied once by the backend
    at = np.asfortranarray(a.astype(np.float32))
    np.testing.assert_allclose(cpp_backend.gemm(at, b, trans_b=True), ref_backend.gemm(a, b, trans_b=True),
                               rtol=1e-5, atol=1e-5)


def test_bad_inputs():
    a = np.ones((4, 3), np.float32)
    b = np.ones((3, 5), np.float32)
    with pytest.raises(TypeError, match=r"np\.asarray\(a, dtype=np\.float32\)"):
        core.gemm(a.astype(np.float64), b)
    with pytest.raises(TypeError, match="float32"):
        core.gemm(a, b.astype(np.int32))
    with pytest.raises(TypeError, match=r"np\.asarray\(b, dtype=np\.float32\)"):
        core.gemm(a, [[1.0] * 5] * 3)
    with pytest.raises(ValueError, match=r"\(4, 3\).*\(5, 3\)"):
        core.gemm(a, np.ones((5, 3), np.float32))
    with pytest.raises(ValueError, match="2-D"):
        core.gemm(np.ones(3, np.float32), b)
    with pytest.raises(ValueError, match="contiguous"):
        core.gemm(np.ones((3, 4), np.float32).T, b)
    with pytest.raises(ValueError, match="activation"):
        core.gemm(a, b, activation="softplus")
    with pytest.raises(ValueError, match=r"bias must have shape \(5,\)"):
        core.gemm(a, b, bias=np.ones(4, np.float32))
    with pytest.raises(TypeError, match="bias"):
        core.gemm(a, b, bias=np.ones(5))
    with pytest.raises(ValueError, match=r"out must have shape \(4, 5\)"):
        core.gemm(a, b, out=np.ones((5, 4), np.float32))
    with pytest.raises(ValueError, match="beta"):
        core.gemm(a, b, beta=1.0)
    with pytest.raises(ValueError, match="share memory"):
        sq = np.ones((4, 4), np.float32)
        core.gemm(sq, sq, out=sq)
    with pytest.raises(ValueError, match="writeable"):
        ro = np.ones((4, 5), np.float32)
        ro.flags.writeable = False
        core.gemm(a, b, out=ro)
    with pytest.raises(ValueError, match="align"):
        cpp_backend.gemm(a, b, trans_a=True)
    with pytest.raises(ValueError, match="2-D"):
        cpp_backend.gemm(np.ones((2, 2, 2)), b)
    with pytest.raises(ValueError, match="activation"):
        ref_backend.gemm(a, b, activation="gelu")


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("shape", [(50, 61, 5000), (7, 300, 4000), (130, 33, 9000)])
def test_gemm_split_k_with_beta_bias_activation(isa, shape, threads):
    M, N, K = shape
    rng = np.random.default_rng(2)
    for ta, tb in [(False, False), (True, True)]:
        a = rng.standard_normal((K, M) if ta else (M, K)).astype(np.float32)
        b = rng.standard_normal((N, K) if tb else (K, N)).astype(np.float32)
        bias = rng.standard_normal(N).astype(np.float32)
        out = _strided(rng, M, N, 5)
        c0 = out.copy()
        got = core.gemm(a, b, trans_a=ta, trans_b=tb, bias=bias, activation="selu", alpha=0.25,
                        beta=0.5, out=out, num_threads=threads)
        _check(got, a, b, ta, tb, bias, "selu", 0.25, 0.5, c0)


@pytest.mark.parametrize("shape", [(40, 50, 20000), (300, 2100, 64), (2100, 40, 300)])
def test_gemm_deterministic_for_a_thread_count(shape):
    M, N, K = shape
    rng = np.random.default_rng(9)
    a = rng.standard_normal((M, K)).astype(np.float32)
    b = rng.standard_normal((K, N)).astype(np.float32)
    for threads in (1, 2, 3):
        first = core.gemm(a, b, num_threads=threads)
        for _ in range(4):
            np.testing.assert_array_equal(core.gemm(a, b, num_threads=threads), first)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_activation_accuracy_dense_range(isa, activation):
    x = np.concatenate([np.linspace(-120, 120, 24001), np.linspace(-1e-3, 1e-3, 2001),
                        [-np.inf, np.inf, np.nan, 0.0, -0.0]]).astype(np.float32)
    y = x.copy().reshape(1, -1)
    core.bias_activation(y, None, activation)
    y = y.ravel()
    with np.errstate(invalid="ignore"):
        want = _act64(activation, x.astype(np.float64))
    finite = np.isfinite(x)
    np.testing.assert_allclose(y[finite], want[finite], rtol=2e-6, atol=1e-37)
    assert np.isnan(y[np.isnan(x)]).all()
    inf_expect = want[np.isinf(x)]
    np.testing.assert_array_equal(y[np.isinf(x)], inf_expect.astype(np.float32))

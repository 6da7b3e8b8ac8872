// AVX-512 bodies of the Network's elementwise loops (optimizer updates). Compiled with the
// AVX-512 flags; no FMA, so the results equal the portable bodies bit for bit.
// gcc 12 flags its own _mm512_undefined_* placeholders inside the intrinsic headers.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
#include <immintrin.h>

#include <cmath>
#include <cstdint>

#include "../network_kernels.hpp"

namespace aerec::cpu::avx512 {

void adam_update(index_t n, float* w, const float* g, float* m, float* v, const AdamCoeffs& c) {
  const __m512 lr = _mm512_set1_ps(c.lr), b1 = _mm512_set1_ps(c.beta1),
               ob1 = _mm512_set1_ps(c.one_minus_beta1), b2 = _mm512_set1_ps(c.beta2),
               ob2 = _mm512_set1_ps(c.one_minus_beta2), bc1 = _mm512_set1_ps(c.bc1),
               bc2 = _mm512_set1_ps(c.bc2), eps = _mm512_set1_ps(c.eps),
               wd = _mm512_set1_ps(c.weight_decay), lrwd = _mm512_set1_ps(c.lr_wd);
  for (index_t i = 0; i < n; i += 16) {
    const __mmask16 k = n - i >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (n - i)) - 1u);
    __m512 wi = _mm512_maskz_loadu_ps(k, w + i);
    wi = _mm512_sub_ps(wi, _mm512_mul_ps(lrwd, wi));
    __m512 gi = _mm512_add_ps(_mm512_maskz_loadu_ps(k, g + i), _mm512_mul_ps(wd, wi));
    __m512 mi = _mm512_add_ps(_mm512_mul_ps(b1, _mm512_maskz_loadu_ps(k, m + i)), _mm512_mul_ps(ob1, gi));
    __m512 vi = _mm512_add_ps(_mm512_mul_ps(b2, _mm512_maskz_loadu_ps(k, v + i)),
                              _mm512_mul_ps(ob2, _mm512_mul_ps(gi, gi)));
    _mm512_mask_storeu_ps(m + i, k, mi);
    _mm512_mask_storeu_ps(v + i, k, vi);
    __m512 num = _mm512_mul_ps(lr, _mm512_div_ps(mi, bc1));
    __m512 den = _mm512_add_ps(_mm512_sqrt_ps(_mm512_div_ps(vi, bc2)), eps);
    _mm512_mask_storeu_ps(w + i, k, _mm512_sub_ps(wi, _mm512_div_ps(num, den)));
  }
}

void sgd_update(index_t n, float* w, const float* g, float* buf, const SgdCoeffs& c) {
  const __m512 lr = _mm512_set1_ps(c.lr), mu = _mm512_set1_ps(c.momentum),
               wd = _mm512_set1_ps(c.weight_decay);
  for (index_t i = 0; i < n; i += 16) {
    const __mmask16 k = n - i >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (n - i)) - 1u);
    __m512 wi = _mm512_maskz_loadu_ps(k, w + i);
    __m512 gi = _mm512_add_ps(_mm512_maskz_loadu_ps(k, g + i), _mm512_mul_ps(wd, wi));
    if (buf != nullptr) {
      __m512 b = _mm512_add_ps(_mm512_mul_ps(mu, _mm512_maskz_loadu_ps(k, buf + i)), gi);
      _mm512_mask_storeu_ps(buf + i, k, b);
      gi = c.nesterov ? _mm512_add_ps(gi, _mm512_mul_ps(mu, b)) : b;
    }
    _mm512_mask_storeu_ps(w + i, k, _mm512_sub_ps(wi, _mm512_mul_ps(lr, gi)));
  }
}

}  // namespace aerec::cpu::avx512

namespace aerec::cpu::avx512 {
namespace {

constexpr std::uint64_t kGolden = 0x9E3779B97F4A7C15ull;  // = rng::kGolden (rng.hpp)

inline __m512i mix64(__m512i z) {
  z = _mm512_mullo_epi64(_mm512_xor_si512(z, _mm512_srli_epi64(z, 30)), _mm512_set1_epi64(0xBF58476D1CE4E5B9ll));
  z = _mm512_mullo_epi64(_mm512_xor_si512(z, _mm512_srli_epi64(z, 27)), _mm512_set1_epi64(0x94D049BB133111EBll));
  return _mm512_xor_si512(z, _mm512_srli_epi64(z, 31));
}

}  // namespace

// Same stream as the portable body in network.cpp: u = (mix64(key + (e + 1) * G) >> 40) * 2^-24.
void dropout_forward(index_t rows, index_t cols, const float* src, index_t lds, float* dst,
                     float* mult, std::uint64_t key, float p) {
  const float scale = 1.f / (1.f - p);
  const __m512 vp = _mm512_set1_ps(p), vscale = _mm512_set1_ps(scale), two24 = _mm512_set1_ps(0x1p-24f);
  const __m512i lane = _mm512_mullo_epi64(_mm512_set_epi64(7, 6, 5, 4, 3, 2, 1, 0), _mm512_set1_epi64(static_cast<long long>(kGolden)));
  const __m512i step8 = _mm512_set1_epi64(static_cast<long long>(8 * kGolden));
  for (index_t r = 0; r < rows; ++r) {
    const std::uint64_t base = key + static_cast<std::uint64_t>(r * cols + 1) * kGolden;
    __m512i z0 = _mm512_add_epi64(_mm512_set1_epi64(static_cast<long long>(base)), lane);
    const float* s = src + r * lds;
    float* d = dst + r * cols;
    float* m = mult + r * cols;
    for (index_t c = 0; c < cols; c += 16) {
      const __m512i z1 = _mm512_add_epi64(z0, step8);
      const __m512i h0 = _mm512_srli_epi64(mix64(z0), 40), h1 = _mm512_srli_epi64(mix64(z1), 40);
      z0 = _mm512_add_epi64(z1, step8);
      const __m512 hf = _mm512_insertf32x8(_mm512_castps256_ps512(_mm512_cvtepi64_ps(h0)), _mm512_cvtepi64_ps(h1), 1);
      const __m512 u = _mm512_mul_ps(hf, two24);
      const __mmask16 keep = _mm512_cmp_ps_mask(u, vp, _CMP_GE_OQ);
      const __m512 k = _mm512_maskz_mov_ps(keep, vscale);
      const __mmask16 tail = cols - c >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (cols - c)) - 1u);
      _mm512_mask_storeu_ps(m + c, tail, k);
      _mm512_mask_storeu_ps(d + c, tail, _mm512_mul_ps(_mm512_maskz_loadu_ps(tail, s + c), k));
    }
  }
}

}  // namespace aerec::cpu::avx512

// ---- loss rows (BCE from logits, multinomial): vectorised exp / log ------------------------------
namespace aerec::cpu::avx512 {
namespace {

// exp(x) (Cephes expf polynomial, ~1 ulp; x clamped to the finite float range).
inline __m512 exp_ps(__m512 x) {
  x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-87.33654f)), _mm512_set1_ps(88.72283f));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500E-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507E-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073E-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894E-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459E-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201E-1f));
  const __m512 y = _mm512_add_ps(_mm512_fmadd_ps(p, _mm512_mul_ps(r, r), r), _mm512_set1_ps(1.f));
  return _mm512_scalef_ps(y, n);
}

// log(u) for finite u > 0 (Cephes logf polynomial, ~1 ulp).
inline __m512 log_ps(__m512 u) {
  __m512 m = _mm512_getmant_ps(u, _MM_MANT_NORM_1_2, _MM_MANT_SIGN_zero);  // [1, 2)
  __m512 e = _mm512_getexp_ps(u);
  const __mmask16 big = _mm512_cmp_ps_mask(m, _mm512_set1_ps(1.41421356237f), _CMP_GT_OQ);
  m = _mm512_mask_mul_ps(m, big, m, _mm512_set1_ps(0.5f));
  e = _mm512_mask_add_ps(e, big, e, _mm512_set1_ps(1.f));
  const __m512 x = _mm512_sub_ps(m, _mm512_set1_ps(1.f));
  const __m512 z = _mm512_mul_ps(x, x);
  __m512 p = _mm512_set1_ps(7.0376836292E-2f);
  p = _mm512_fmadd_ps(p, x, _mm512_set1_ps(-1.1514610310E-1f));
  p = _mm512_fmadd_ps(p, x, _mm512_set1_ps(1.1676998740E-1f));
  p = _mm512_fmadd_ps(p, x, _mm512_set1_ps(-1.2420140846E-1f));
  p = _mm512_fmadd_ps(p, x, _mm512_set1_ps(1.4249322787E-1f));
  p = _mm512_fmadd_ps(p, x, _mm512_set1_ps(-1.6668057665E-1f));
  p = _mm512_fmadd_ps(p, x, _mm512_set1_ps(2.0000714765E-1f));
  p = _mm512_fmadd_ps(p, x, _mm512_set1_ps(-2.4999993993E-1f));
  p = _mm512_fmadd_ps(p, x, _mm512_set1_ps(3.3333331174E-1f));
  __m512 y = _mm512_mul_ps(_mm512_mul_ps(p, x), z);
  y = _mm512_fmadd_ps(e, _mm512_set1_ps(-2.12194440e-4f), y);
  y = _mm512_fnmadd_ps(z, _mm512_set1_ps(0.5f), y);
  return _mm512_fmadd_ps(e, _mm512_set1_ps(0.693359375f), _mm512_add_ps(x, y));
}

inline __mmask16 tail_mask(index_t left) {
  return left >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << left) - 1u);
}

// Adds the 16 floats of v (as doubles) to (lo, hi).
inline void acc_pd(__m512d& lo, __m512d& hi, __m512 v) {
  lo = _mm512_add_pd(lo, _mm512_cvtps_pd(_mm512_castps512_ps256(v)));
  hi = _mm512_add_pd(hi, _mm512_cvtps_pd(_mm512_extractf32x8_ps(v, 1)));
}

}  // namespace

// One row of binary cross-entropy from logits z (see Network::loss_rows): returns
// sum_c softplus(z_c) - y_c z_c; writes d_c = (sigmoid(z_c) - y_c) * iscale when d.
double bce_row(const float* z, const float* y, float* d, index_t cols, float iscale) {
  const __m512 one = _mm512_set1_ps(1.f), zero = _mm512_setzero_ps(), vs = _mm512_set1_ps(iscale);
  __m512d lo = _mm512_setzero_pd(), hi = _mm512_setzero_pd();
  for (index_t c = 0; c < cols; c += 16) {
    const __mmask16 k = tail_mask(cols - c);
    const __m512 zv = _mm512_maskz_loadu_ps(k, z + c), yv = _mm512_maskz_loadu_ps(k, y + c);
    const __m512 e = exp_ps(_mm512_sub_ps(zero, _mm512_abs_ps(zv)));
    const __m512 u = _mm512_add_ps(one, e);
    const __m512 um1 = _mm512_sub_ps(u, one);
    // log1p(e) = log(u) * e / (u - 1), exact correction for the rounding of u = 1 + e
    const __mmask16 tiny = _mm512_cmp_ps_mask(um1, zero, _CMP_EQ_OQ);
    __m512 l1p = _mm512_mul_ps(log_ps(u), _mm512_div_ps(e, _mm512_mask_mov_ps(um1, tiny, one)));
    l1p = _mm512_mask_mov_ps(l1p, tiny, e);
    const __m512 term = _mm512_sub_ps(_mm512_add_ps(_mm512_max_ps(zv, zero), l1p), _mm512_mul_ps(yv, zv));
    acc_pd(lo, hi, _mm512_maskz_mov_ps(k, term));
    if (d) {
      const __m512 inv = _mm512_div_ps(one, u);
      const __mmask16 pos = _mm512_cmp_ps_mask(zv, zero, _CMP_GE_OQ);
      const __m512 sig = _mm512_mask_mov_ps(_mm512_mul_ps(e, inv), pos, inv);
      _mm512_mask_storeu_ps(d + c, k, _mm512_mul_ps(_mm512_sub_ps(sig, yv), vs));
    }
  }
  return _mm512_reduce_add_pd(_mm512_add_pd(lo, hi));
}

// One row of the multinomial log-likelihood from logits o: returns ysum * lse - sum_c y_c o_c;
// writes d_c = (softmax_c * ysum - y_c) * iscale when d.
double multinomial_row(const float* o, const float* y, float* d, index_t cols, float iscale) {
  __m512 vmax = _mm512_set1_ps(-__builtin_inff());
  for (index_t c = 0; c < cols; c += 16) {
    const __mmask16 k = tail_mask(cols - c);
    vmax = _mm512_mask_max_ps(vmax, k, vmax, _mm512_maskz_loadu_ps(k, o + c));
  }
  const float mx = _mm512_reduce_max_ps(vmax);
  const __m512 vmx = _mm512_set1_ps(mx);
  __m512d se_lo = _mm512_setzero_pd(), se_hi = se_lo, ys_lo = se_lo, ys_hi = se_lo, yz_lo = se_lo, yz_hi = se_lo;
  for (index_t c = 0; c < cols; c += 16) {
    const __mmask16 k = tail_mask(cols - c);
    const __m512 ov = _mm512_maskz_loadu_ps(k, o + c), yv = _mm512_maskz_loadu_ps(k, y + c);
    const __m512 e = _mm512_maskz_mov_ps(k, exp_ps(_mm512_sub_ps(ov, vmx)));
    if (d) _mm512_mask_storeu_ps(d + c, k, e);
    acc_pd(se_lo, se_hi, e);
    acc_pd(ys_lo, ys_hi, yv);
    acc_pd(yz_lo, yz_hi, _mm512_mul_ps(yv, ov));
  }
  const double se = _mm512_reduce_add_pd(_mm512_add_pd(se_lo, se_hi));
  const double ysum = _mm512_reduce_add_pd(_mm512_add_pd(ys_lo, ys_hi));
  const double yz = _mm512_reduce_add_pd(_mm512_add_pd(yz_lo, yz_hi));
  if (d) {
    const __m512 inv = _mm512_set1_ps(static_cast<float>(1.0 / se)), ys = _mm512_set1_ps(static_cast<float>(ysum));
    const __m512 vs = _mm512_set1_ps(iscale);
    for (index_t c = 0; c < cols; c += 16) {
      const __mmask16 k = tail_mask(cols - c);
      const __m512 dv = _mm512_maskz_loadu_ps(k, d + c), yv = _mm512_maskz_loadu_ps(k, y + c);
      _mm512_mask_storeu_ps(d + c, k, _mm512_mul_ps(_mm512_sub_ps(_mm512_mul_ps(_mm512_mul_ps(dv, inv), ys), yv), vs));
    }
  }
  return ysum * (static_cast<double>(mx) + std::log(se)) - yz;
}

}  // namespace aerec::cpu::avx512

// AVX-512 bodies of the network kernel table (aerec/nn_kernels.hpp), in aerec::cpu::avx512: the row
// kernels of the sparse paths (namespace rows) and the elementwise bodies (namespace elem; adam /
// sgd without FMA, so they equal the scalar bodies bit for bit).
// gcc 12's AVX-512 headers build some intrinsics on _mm512_undefined_ps(), which -Wuninitialized
// reports at every use; the values are never read.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#include <cmath>
#include <cstdint>

#include "aerec/nn_kernels.hpp"

namespace aerec::cpu::avx512 {
namespace rows {
namespace {

// exp(x) for float lanes: range reduction by ln2 (hi/lo split), degree-6 polynomial, scalef.
// Relative error ~2 ulp; x below -103 gives 0 as exp would (underflow).
__m512 exp_ps(__m512 x) {
  x = _mm512_min_ps(x, _mm512_set1_ps(88.7f));
  x = _mm512_max_ps(x, _mm512_set1_ps(-104.0f));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.f / 720.f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f / 120.f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f / 24.f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f / 6.f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f));
  return _mm512_scalef_ps(p, n);
}

__mmask16 tail_mask(index_t rem) { return static_cast<__mmask16>((1u << rem) - 1u); }

void gather_sum(index_t n, index_t cnt, const std::int32_t* idx, const float* val, const float* m,
                index_t ldm, const float* init, float* out) {
  index_t j = 0;
  for (; j + 128 <= n; j += 128) {
    __m512 a0, a1, a2, a3, a4, a5, a6, a7;
    if (init) {
      a0 = _mm512_loadu_ps(init + j); a1 = _mm512_loadu_ps(init + j + 16);
      a2 = _mm512_loadu_ps(init + j + 32); a3 = _mm512_loadu_ps(init + j + 48);
      a4 = _mm512_loadu_ps(init + j + 64); a5 = _mm512_loadu_ps(init + j + 80);
      a6 = _mm512_loadu_ps(init + j + 96); a7 = _mm512_loadu_ps(init + j + 112);
    } else {
      a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = _mm512_setzero_ps();
    }
    for (index_t k = 0; k < cnt; ++k) {
      const __m512 s = _mm512_set1_ps(val ? val[k] : 1.f);
      const float* r = m + static_cast<index_t>(idx[k]) * ldm + j;
      a0 = _mm512_fmadd_ps(s, _mm512_loadu_ps(r), a0);
      a1 = _mm512_fmadd_ps(s, _mm512_loadu_ps(r + 16), a1);
      a2 = _mm512_fmadd_ps(s, _mm512_loadu_ps(r + 32), a2);
      a3 = _mm512_fmadd_ps(s, _mm512_loadu_ps(r + 48), a3);
      a4 = _mm512_fmadd_ps(s, _mm512_loadu_ps(r + 64), a4);
      a5 = _mm512_fmadd_ps(s, _mm512_loadu_ps(r + 80), a5);
      a6 = _mm512_fmadd_ps(s, _mm512_loadu_ps(r + 96), a6);
      a7 = _mm512_fmadd_ps(s, _mm512_loadu_ps(r + 112), a7);
    }
    _mm512_storeu_ps(out + j, a0); _mm512_storeu_ps(out + j + 16, a1);
    _mm512_storeu_ps(out + j + 32, a2); _mm512_storeu_ps(out + j + 48, a3);
    _mm512_storeu_ps(out + j + 64, a4); _mm512_storeu_ps(out + j + 80, a5);
    _mm512_storeu_ps(out + j + 96, a6); _mm512_storeu_ps(out + j + 112, a7);
  }
  for (; j < n; j += 16) {
    const __mmask16 mk = n - j >= 16 ? static_cast<__mmask16>(0xFFFF) : tail_mask(n - j);
    __m512 a = init ? _mm512_maskz_loadu_ps(mk, init + j) : _mm512_setzero_ps();
    for (index_t k = 0; k < cnt; ++k) {
      const float* r = m + static_cast<index_t>(idx[k]) * ldm + j;
      a = _mm512_fmadd_ps(_mm512_set1_ps(val ? val[k] : 1.f), _mm512_maskz_loadu_ps(mk, r), a);
    }
    _mm512_mask_storeu_ps(out + j, mk, a);
  }
}

void axpy(index_t n, float a, const float* x, float* y) {
  const __m512 s = _mm512_set1_ps(a);
  index_t i = 0;
  for (; i + 16 <= n; i += 16)
    _mm512_storeu_ps(y + i, _mm512_fmadd_ps(s, _mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i)));
  if (i < n) {
    const __mmask16 mk = tail_mask(n - i);
    _mm512_mask_storeu_ps(y + i, mk, _mm512_fmadd_ps(s, _mm512_maskz_loadu_ps(mk, x + i),
                                                     _mm512_maskz_loadu_ps(mk, y + i)));
  }
}

float row_max(index_t n, const float* z) {
  __m512 m0 = _mm512_set1_ps(-INFINITY), m1 = m0;
  index_t i = 0;
  for (; i + 32 <= n; i += 32) {
    m0 = _mm512_max_ps(m0, _mm512_loadu_ps(z + i));
    m1 = _mm512_max_ps(m1, _mm512_loadu_ps(z + i + 16));
  }
  for (; i < n; i += 16) {
    const __mmask16 mk = n - i >= 16 ? static_cast<__mmask16>(0xFFFF) : tail_mask(n - i);
    m0 = _mm512_mask_max_ps(m0, mk, m0, _mm512_maskz_loadu_ps(mk, z + i));
  }
  return _mm512_reduce_max_ps(_mm512_max_ps(m0, m1));
}

double exp_shift_sum(index_t n, float* z, float shift) {
  const __m512 sh = _mm512_set1_ps(shift);
  __m512 s0 = _mm512_setzero_ps(), s1 = s0;
  index_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m512 e0 = exp_ps(_mm512_sub_ps(_mm512_loadu_ps(z + i), sh));
    const __m512 e1 = exp_ps(_mm512_sub_ps(_mm512_loadu_ps(z + i + 16), sh));
    _mm512_storeu_ps(z + i, e0);
    _mm512_storeu_ps(z + i + 16, e1);
    s0 = _mm512_add_ps(s0, e0);
    s1 = _mm512_add_ps(s1, e1);
  }
  for (; i < n; i += 16) {
    const __mmask16 mk = n - i >= 16 ? static_cast<__mmask16>(0xFFFF) : tail_mask(n - i);
    const __m512 e = exp_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(mk, z + i), sh));
    _mm512_mask_storeu_ps(z + i, mk, e);
    s0 = _mm512_mask_add_ps(s0, mk, s0, e);
  }
  return static_cast<double>(_mm512_reduce_add_ps(_mm512_add_ps(s0, s1)));
}

// tanh(x) = sign(x) (1 - t) / (1 + t), t = exp(-2|x|); a short odd series below |x| < 1/16 keeps
// the relative error small near 0.
void tanh_inplace(index_t n, float* y) {
  const __m512 absmask = _mm512_castsi512_ps(_mm512_set1_epi32(0x7fffffff));
  for (index_t i = 0; i < n; i += 16) {
    const __mmask16 mk = n - i >= 16 ? static_cast<__mmask16>(0xFFFF) : tail_mask(n - i);
    const __m512 x = _mm512_maskz_loadu_ps(mk, y + i);
    const __m512 ax = _mm512_and_ps(x, absmask);
    const __m512 t = exp_ps(_mm512_mul_ps(ax, _mm512_set1_ps(-2.f)));
    __m512 r = _mm512_div_ps(_mm512_sub_ps(_mm512_set1_ps(1.f), t), _mm512_add_ps(_mm512_set1_ps(1.f), t));
    const __m512 x2 = _mm512_mul_ps(ax, ax);
    __m512 s = _mm512_fmadd_ps(x2, _mm512_set1_ps(2.f / 15.f), _mm512_set1_ps(-1.f / 3.f));
    s = _mm512_fmadd_ps(_mm512_mul_ps(s, x2), ax, ax);
    r = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(ax, _mm512_set1_ps(0.0625f), _CMP_LT_OQ), r, s);
    r = _mm512_or_ps(r, _mm512_andnot_ps(absmask, x));  // copy the sign back
    _mm512_mask_storeu_ps(y + i, mk, r);
  }
}


// softplus and sigmoid of a row: log1p(e), e = exp(-|x|) in (0, 1], through
// 2 atanh(s) = 2 (s + s^3/3 + ...), s = e / (2 + e) <= 1/3 (no 1 + e rounding for tiny e).
double logistic_row(index_t n, float* z, float scale) {
  const __m512 absmask = _mm512_castsi512_ps(_mm512_set1_epi32(0x7fffffff));
  const __m512 one = _mm512_set1_ps(1.f), two = _mm512_set1_ps(2.f), sc = _mm512_set1_ps(scale);
  __m512 acc = _mm512_setzero_ps();
  for (index_t i = 0; i < n; i += 16) {
    const __mmask16 mk = n - i >= 16 ? static_cast<__mmask16>(0xFFFF) : tail_mask(n - i);
    const __m512 x = _mm512_maskz_loadu_ps(mk, z + i);
    const __m512 e = exp_ps(_mm512_sub_ps(_mm512_setzero_ps(), _mm512_and_ps(x, absmask)));
    const __m512 s = _mm512_div_ps(e, _mm512_add_ps(two, e));
    const __m512 s2 = _mm512_mul_ps(s, s);
    __m512 p = _mm512_set1_ps(1.f / 13.f);
    p = _mm512_fmadd_ps(p, s2, _mm512_set1_ps(1.f / 11.f));
    p = _mm512_fmadd_ps(p, s2, _mm512_set1_ps(1.f / 9.f));
    p = _mm512_fmadd_ps(p, s2, _mm512_set1_ps(1.f / 7.f));
    p = _mm512_fmadd_ps(p, s2, _mm512_set1_ps(1.f / 5.f));
    p = _mm512_fmadd_ps(p, s2, _mm512_set1_ps(1.f / 3.f));
    p = _mm512_fmadd_ps(p, s2, one);
    const __m512 sp = _mm512_fmadd_ps(_mm512_mul_ps(two, s), p, _mm512_max_ps(x, _mm512_setzero_ps()));
    acc = _mm512_mask_add_ps(acc, mk, acc, sp);
    const __m512 r = _mm512_div_ps(one, _mm512_add_ps(one, e));
    const __m512 sig = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_GE_OQ),
                                            _mm512_mul_ps(e, r), r);
    _mm512_mask_storeu_ps(z + i, mk, _mm512_mul_ps(sig, sc));
  }
  return static_cast<double>(_mm512_reduce_add_ps(acc));
}


void scale_accumulate(index_t n, float* z, float s, float* acc) {
  const __m512 sv = _mm512_set1_ps(s);
  index_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512 v = _mm512_mul_ps(_mm512_loadu_ps(z + i), sv);
    _mm512_storeu_ps(z + i, v);
    _mm512_storeu_ps(acc + i, _mm512_add_ps(_mm512_loadu_ps(acc + i), v));
  }
  if (i < n) {
    const __mmask16 mk = tail_mask(n - i);
    const __m512 v = _mm512_mul_ps(_mm512_maskz_loadu_ps(mk, z + i), sv);
    _mm512_mask_storeu_ps(z + i, mk, v);
    _mm512_mask_storeu_ps(acc + i, mk, _mm512_add_ps(_mm512_maskz_loadu_ps(mk, acc + i), v));
  }
}

}  // namespace

}  // namespace rows

namespace elem {

namespace {

// Lanes [i, min(n, i + 16)) whose keep byte is non-zero (keep null: all of them).
inline __mmask16 lanes(index_t n, index_t i, const std::uint8_t* keep) {
  const __mmask16 t = n - i >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (n - i)) - 1u);
  if (keep == nullptr) return t;
  const __m128i k8 = _mm_maskz_loadu_epi8(t, keep + i);
  return _mm_test_epi8_mask(k8, k8);
}

}  // namespace

void adam_update(index_t n, float* w, const float* g, float* m, float* v, const AdamCoeffs& c,
                 const std::uint8_t* keep) {
  const __m512 lr = _mm512_set1_ps(c.lr), b1 = _mm512_set1_ps(c.beta1),
               ob1 = _mm512_set1_ps(c.one_minus_beta1), b2 = _mm512_set1_ps(c.beta2),
               ob2 = _mm512_set1_ps(c.one_minus_beta2), bc1 = _mm512_set1_ps(c.bc1),
               bc2 = _mm512_set1_ps(c.bc2), eps = _mm512_set1_ps(c.eps),
               wd = _mm512_set1_ps(c.weight_decay), lrwd = _mm512_set1_ps(c.lr_wd);
  for (index_t i = 0; i < n; i += 16) {
    const __mmask16 k = lanes(n, i, keep);
    if (k == 0) continue;  // a block of pruned weights: nothing to do
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

void sgd_update(index_t n, float* w, const float* g, float* buf, const SgdCoeffs& c, const std::uint8_t* keep) {
  const __m512 lr = _mm512_set1_ps(c.lr), mu = _mm512_set1_ps(c.momentum),
               wd = _mm512_set1_ps(c.weight_decay);
  for (index_t i = 0; i < n; i += 16) {
    const __mmask16 k = lanes(n, i, keep);
    if (k == 0) continue;
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


namespace {

constexpr std::uint64_t kGolden = 0x9E3779B97F4A7C15ull;  // = rng::kGolden (rng.hpp)

inline __m512i mix64(__m512i z) {
  z = _mm512_mullo_epi64(_mm512_xor_si512(z, _mm512_srli_epi64(z, 30)), _mm512_set1_epi64(0xBF58476D1CE4E5B9ll));
  z = _mm512_mullo_epi64(_mm512_xor_si512(z, _mm512_srli_epi64(z, 27)), _mm512_set1_epi64(0x94D049BB133111EBll));
  return _mm512_xor_si512(z, _mm512_srli_epi64(z, 31));
}

}  // namespace

// Same stream as the scalar body (rng.hpp): u = (mix64(key + (e + 1) * G) >> 40) * 2^-24.
void dropout_forward(index_t rows, index_t cols, const float* src, index_t lds, float* dst,
                     float* mult, std::uint64_t key, float p, const std::int64_t* row_ids) {
  const float scale = 1.f / (1.f - p);
  const __m512 vp = _mm512_set1_ps(p), vscale = _mm512_set1_ps(scale), two24 = _mm512_set1_ps(0x1p-24f);
  const __m512i lane = _mm512_mullo_epi64(_mm512_set_epi64(7, 6, 5, 4, 3, 2, 1, 0), _mm512_set1_epi64(static_cast<long long>(kGolden)));
  const __m512i step8 = _mm512_set1_epi64(static_cast<long long>(8 * kGolden));
  for (index_t r = 0; r < rows; ++r) {
    const std::uint64_t base = key + (static_cast<std::uint64_t>(row_ids[r]) * cols + 1) * kGolden;
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


// ---- loss rows (BCE from logits, multinomial on a dense y): vectorised exp / log ------------------------------
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

}  // namespace elem

// Constant data (function addresses are constant expressions): no initialiser compiled with this
// unit's flags runs at load time or when a portable caller picks a table.
const NnKernels kNnKernels = {
    &elem::adam_update, &elem::sgd_update, &elem::dropout_forward, &elem::bce_row, &elem::multinomial_row,
    &rows::gather_sum, &rows::axpy, &rows::row_max, &rows::exp_shift_sum, &rows::scale_accumulate,
    &rows::tanh_inplace, &rows::logistic_row,
};

}  // namespace aerec::cpu::avx512

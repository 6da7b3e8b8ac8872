// AVX-512 bodies of the Network's elementwise loops (optimizer updates). Compiled with the
// AVX-512 flags; no FMA, so the results equal the portable bodies bit for bit.
// gcc 12 flags its own _mm512_undefined_* placeholders inside the intrinsic headers.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#include <cmath>
#include <cstdint>

#include "aerec/optim.hpp"

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

// AVX-512 bodies of the Network's elementwise loops (optimizer updates). Compiled with the
// AVX-512 flags; no FMA, so the results equal the portable bodies bit for bit.
#include <immintrin.h>

#include <cmath>

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

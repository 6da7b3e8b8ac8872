// Top-k fp32 tile kernel, AVX-512F: 12 queries x 32 items = 24 zmm accumulators, the query
// values enter the FMAs as embedded broadcasts. The selection compare runs on the registers.
#include <immintrin.h>

#include <cstdint>

#include "aerec/topk.hpp"

namespace aerec::cpu::avx512 {

void topk_fp32_tile(const float* qp, const float* ip, const float* bias, index_t d,
                    const float* thr, float* tile, std::uint32_t* mask) {
  constexpr int MR = kTopkMr;
  static_assert(MR == 12, "register tile is written for 12 rows");
  const __m512 b0 = _mm512_loadu_ps(bias), b1 = _mm512_loadu_ps(bias + 16);
  __m512 c[MR][2];
#pragma GCC unroll 12
  for (int i = 0; i < MR; ++i) {
    c[i][0] = b0;
    c[i][1] = b1;
  }
  for (index_t p = 0; p < d; ++p) {
    const __m512 x0 = _mm512_loadu_ps(ip + p * 32);
    const __m512 x1 = _mm512_loadu_ps(ip + p * 32 + 16);
    const float* q = qp + p * MR;
#pragma GCC unroll 12
    for (int i = 0; i < MR; ++i) {
      const __m512 qi = _mm512_set1_ps(q[i]);
      c[i][0] = _mm512_fmadd_ps(qi, x0, c[i][0]);
      c[i][1] = _mm512_fmadd_ps(qi, x1, c[i][1]);
    }
  }
#pragma GCC unroll 12
  for (int i = 0; i < MR; ++i) {
    const __m512 t = _mm512_set1_ps(thr[i]);
    const std::uint32_t m0 = _mm512_cmp_ps_mask(c[i][0], t, _CMP_GE_OQ);
    const std::uint32_t m1 = _mm512_cmp_ps_mask(c[i][1], t, _CMP_GE_OQ);
    mask[i] = m0 | (m1 << 16);
    _mm512_storeu_ps(tile + i * 32, c[i][0]);
    _mm512_storeu_ps(tile + i * 32 + 16, c[i][1]);
  }
}

float topk_dot(const float* q, const float* x, index_t d) {
  __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
  index_t p = 0;
  for (; p + 32 <= d; p += 32) {
    s0 = _mm512_fmadd_ps(_mm512_loadu_ps(q + p), _mm512_loadu_ps(x + p), s0);
    s1 = _mm512_fmadd_ps(_mm512_loadu_ps(q + p + 16), _mm512_loadu_ps(x + p + 16), s1);
  }
  for (; p + 16 <= d; p += 16)
    s0 = _mm512_fmadd_ps(_mm512_loadu_ps(q + p), _mm512_loadu_ps(x + p), s0);
  if (p < d) {
    const __mmask16 m = static_cast<__mmask16>((1u << (d - p)) - 1u);
    s1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, q + p), _mm512_maskz_loadu_ps(m, x + p), s1);
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
}

}  // namespace aerec::cpu::avx512

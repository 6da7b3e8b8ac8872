// Top-k fp32 tile kernel, AVX2 + FMA: 3 queries x 32 items = 12 ymm accumulators.
#include <immintrin.h>

#include <cstdint>

#include "aerec/topk_kernels.hpp"

namespace aerec::cpu::avx2 {

void topk_fp32_tile(const float* qp, const float* ip, const float* bias, index_t d,
                    const float* thr, float* tile, std::uint32_t* mask) {
  constexpr int MR = kTopkMr;
  static_assert(MR == 3, "register tile is written for 3 rows");
  const __m256 b0 = _mm256_loadu_ps(bias), b1 = _mm256_loadu_ps(bias + 8);
  const __m256 b2 = _mm256_loadu_ps(bias + 16), b3 = _mm256_loadu_ps(bias + 24);
  __m256 c00 = b0, c01 = b1, c02 = b2, c03 = b3;
  __m256 c10 = b0, c11 = b1, c12 = b2, c13 = b3;
  __m256 c20 = b0, c21 = b1, c22 = b2, c23 = b3;
  for (index_t p = 0; p < d; ++p) {
    const float* x = ip + p * 32;
    const __m256 q0 = _mm256_broadcast_ss(qp + p * MR);
    const __m256 q1 = _mm256_broadcast_ss(qp + p * MR + 1);
    const __m256 q2 = _mm256_broadcast_ss(qp + p * MR + 2);
    __m256 x0 = _mm256_loadu_ps(x);
    c00 = _mm256_fmadd_ps(q0, x0, c00);
    c10 = _mm256_fmadd_ps(q1, x0, c10);
    c20 = _mm256_fmadd_ps(q2, x0, c20);
    x0 = _mm256_loadu_ps(x + 8);
    c01 = _mm256_fmadd_ps(q0, x0, c01);
    c11 = _mm256_fmadd_ps(q1, x0, c11);
    c21 = _mm256_fmadd_ps(q2, x0, c21);
    x0 = _mm256_loadu_ps(x + 16);
    c02 = _mm256_fmadd_ps(q0, x0, c02);
    c12 = _mm256_fmadd_ps(q1, x0, c12);
    c22 = _mm256_fmadd_ps(q2, x0, c22);
    x0 = _mm256_loadu_ps(x + 24);
    c03 = _mm256_fmadd_ps(q0, x0, c03);
    c13 = _mm256_fmadd_ps(q1, x0, c13);
    c23 = _mm256_fmadd_ps(q2, x0, c23);
  }
  _mm256_storeu_ps(tile + 0, c00);
  _mm256_storeu_ps(tile + 8, c01);
  _mm256_storeu_ps(tile + 16, c02);
  _mm256_storeu_ps(tile + 24, c03);
  _mm256_storeu_ps(tile + 32, c10);
  _mm256_storeu_ps(tile + 40, c11);
  _mm256_storeu_ps(tile + 48, c12);
  _mm256_storeu_ps(tile + 56, c13);
  _mm256_storeu_ps(tile + 64, c20);
  _mm256_storeu_ps(tile + 72, c21);
  _mm256_storeu_ps(tile + 80, c22);
  _mm256_storeu_ps(tile + 88, c23);
  for (int i = 0; i < MR; ++i) {
    const __m256 t = _mm256_set1_ps(thr[i]);
    std::uint32_t m = 0;
    for (int v = 0; v < 4; ++v) {
      const __m256 c = _mm256_cmp_ps(_mm256_loadu_ps(tile + i * 32 + v * 8), t, _CMP_GE_OQ);
      m |= static_cast<std::uint32_t>(_mm256_movemask_ps(c)) << (8 * v);
    }
    mask[i] = m;
  }
}

float topk_dot(const float* q, const float* x, index_t d) {
  __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
  index_t p = 0;
  for (; p + 16 <= d; p += 16) {
    s0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + p), _mm256_loadu_ps(x + p), s0);
    s1 = _mm256_fmadd_ps(_mm256_loadu_ps(q + p + 8), _mm256_loadu_ps(x + p + 8), s1);
  }
  for (; p + 8 <= d; p += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + p), _mm256_loadu_ps(x + p), s0);
  s0 = _mm256_add_ps(s0, s1);
  __m128 h = _mm_add_ps(_mm256_castps256_ps128(s0), _mm256_extractf128_ps(s0, 1));
  h = _mm_add_ps(h, _mm_movehl_ps(h, h));
  h = _mm_add_ss(h, _mm_shuffle_ps(h, h, 1));
  float t = _mm_cvtss_f32(h);
  for (; p < d; ++p) t += q[p] * x[p];
  return t;
}

// Constant data: picking this table (topk.cpp, dispatch()) runs none of this unit's code.
const TopkKernels kTopkKernels = {kTopkMr, &topk_fp32_tile, &scalar::topk_bf16_tile,
                                   &scalar::topk_i8_tile, &topk_dot, nullptr, nullptr};

}  // namespace aerec::cpu::avx2

// Top-k compressed tile kernel: bf16 with AVX512-BF16 (vdpbf16ps), 12 queries x 32 items = 24 zmm
// accumulators, as in fp32. Its own unit, compiled with the AVX512-BF16 flags only (the int8 tile
// needs VNNI instead, topk_avx512vnni.cpp): a CPU may have one without the other.
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "aerec/topk_kernels.hpp"

namespace aerec::cpu::avx512bf16 {
namespace {
constexpr int MR = 12;
static_assert(MR == avx512::kTopkMr, "compressed kernels share the fp32 query panel height");
}  // namespace

void topk_bf16_tile(const std::uint16_t* qp, const std::uint16_t* ip, const float* bias,
                    index_t d2, const float* thr, float* tile, std::uint32_t* mask, int mr) {
  (void)mr;
  const __m512 b0 = _mm512_loadu_ps(bias), b1 = _mm512_loadu_ps(bias + 16);
  __m512 c[MR][2];
#pragma GCC unroll 12
  for (int i = 0; i < MR; ++i) {
    c[i][0] = b0;
    c[i][1] = b1;
  }
  for (index_t p = 0; p < d2; ++p) {
    const __m512bh x0 = (__m512bh)_mm512_loadu_si512(ip + p * 64);
    const __m512bh x1 = (__m512bh)_mm512_loadu_si512(ip + p * 64 + 32);
    const std::uint16_t* q = qp + p * MR * 2;
#pragma GCC unroll 12
    for (int i = 0; i < MR; ++i) {
      std::int32_t v;
      std::memcpy(&v, q + 2 * i, 4);
      const __m512bh qi = (__m512bh)_mm512_set1_epi32(v);
      c[i][0] = _mm512_dpbf16_ps(c[i][0], qi, x0);
      c[i][1] = _mm512_dpbf16_ps(c[i][1], qi, x1);
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

}  // namespace aerec::cpu::avx512bf16

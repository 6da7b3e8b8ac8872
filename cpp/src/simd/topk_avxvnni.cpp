// Top-k int8 tile, AVX2 + AVX-VNNI (VEX vpdpbusd on ymm): Intel client CPUs from Alder Lake on
// (no AVX-512) and the avx2 level of Sapphire Rapids and later. Same 3 queries x 32 items register
// tile and epilogue as avx2::topk_i8_tile; one vpdpbusd does the 32 u8 x s8 multiply-adds that take
// vpmaddubsw + vpmaddwd + vpaddd there (two of them on the FMA ports 0/1), so the tile does the
// work of 4 fp32 FMAs per instruction instead of 2.
#include <immintrin.h>

#include <cstdint>

#include "aerec/topk_kernels.hpp"

namespace aerec::cpu::avxvnni {
namespace {
constexpr int kRows = 3;  // avx2::kTopkMr: the panel height of the avx2 level
// A broadcast load gcc may not merge with the same load of the next step (as in topk_avx2.cpp:
// merged, the query registers push accumulators to the stack).
__m256i bcast_i32(const std::int32_t* a) {
  __m256i r;
  __asm__ volatile("vpbroadcastd %1, %0" : "=x"(r) : "m"(*a));
  return r;
}

void i8_rows3(const std::uint8_t* qp, int mr, const std::int8_t* ip, const std::int32_t* corr,
              const float* iscale, const float* bias, const float* qscale, index_t d4,
              const float* thr, float* tile, std::uint32_t* mask) {
  // Start from -corr (removes the +64 query offset, as the other int8 tiles do).
  const __m256i z = _mm256_setzero_si256();
  const __m256i k0 = _mm256_sub_epi32(z, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(corr)));
  const __m256i k1 = _mm256_sub_epi32(z, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(corr + 8)));
  const __m256i k2 = _mm256_sub_epi32(z, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(corr + 16)));
  const __m256i k3 = _mm256_sub_epi32(z, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(corr + 24)));
  __m256i c00 = k0, c01 = k1, c02 = k2, c03 = k3;
  __m256i c10 = k0, c11 = k1, c12 = k2, c13 = k3;
  __m256i c20 = k0, c21 = k1, c22 = k2, c23 = k3;
  for (index_t p = 0; p < d4; ++p) {
    const std::int8_t* xp = ip + p * 128;
    const std::uint8_t* q = qp + p * mr * 4;
    // vpdpbusd: per int32 lane, the exact sum of 4 u8 x s8 products added to the accumulator
    // (no saturation: the non-"s" form), the same int32 sums as every other level.
#define AEREC_VNNI_ROW(i)                                                                     \
  {                                                                                           \
    const __m256i qb = bcast_i32(reinterpret_cast<const std::int32_t*>(q + 4 * (i)));         \
    c##i##0 = _mm256_dpbusd_avx_epi32(c##i##0, qb, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xp))); \
    c##i##1 = _mm256_dpbusd_avx_epi32(c##i##1, qb, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xp + 32))); \
    c##i##2 = _mm256_dpbusd_avx_epi32(c##i##2, qb, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xp + 64))); \
    c##i##3 = _mm256_dpbusd_avx_epi32(c##i##3, qb, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xp + 96))); \
  }
    AEREC_VNNI_ROW(0)
    AEREC_VNNI_ROW(1)
    AEREC_VNNI_ROW(2)
#undef AEREC_VNNI_ROW
    __asm__("" : "+x"(c00), "+x"(c01), "+x"(c02), "+x"(c03), "+x"(c10), "+x"(c11));
    __asm__("" : "+x"(c12), "+x"(c13), "+x"(c20), "+x"(c21), "+x"(c22), "+x"(c23));
  }
  // Epilogue and mask as avx2::topk_i8_tile (bit-identical): float(acc - corr) * (iscale[j] *
  // qscale[i]) + bias[j], each operation rounded on its own; mask bit = score >= thr[i].
#define AEREC_VNNI_OUT(i, v)                                                                  \
  {                                                                                           \
    __m256 s = _mm256_mul_ps(_mm256_loadu_ps(iscale + 8 * (v)), _mm256_set1_ps(qscale[i]));  \
    __m256 t = _mm256_mul_ps(_mm256_cvtepi32_ps(c##i##v), s);                                 \
    __asm__("" : "+x"(t));                                                                    \
    t = _mm256_add_ps(t, _mm256_loadu_ps(bias + 8 * (v)));                                    \
    _mm256_storeu_ps(tile + (i) * 32 + 8 * (v), t);                                           \
    m##i |= static_cast<std::uint32_t>(                                                       \
                _mm256_movemask_ps(_mm256_cmp_ps(t, _mm256_set1_ps(thr[i]), _CMP_GE_OQ)))     \
            << (8 * (v));                                                                     \
  }
  std::uint32_t m0 = 0, m1 = 0, m2 = 0;
  AEREC_VNNI_OUT(0, 0) AEREC_VNNI_OUT(0, 1) AEREC_VNNI_OUT(0, 2) AEREC_VNNI_OUT(0, 3)
  AEREC_VNNI_OUT(1, 0) AEREC_VNNI_OUT(1, 1) AEREC_VNNI_OUT(1, 2) AEREC_VNNI_OUT(1, 3)
  AEREC_VNNI_OUT(2, 0) AEREC_VNNI_OUT(2, 1) AEREC_VNNI_OUT(2, 2) AEREC_VNNI_OUT(2, 3)
#undef AEREC_VNNI_OUT
  mask[0] = m0;
  mask[1] = m1;
  mask[2] = m2;
}
}  // namespace

// Any panel height that is a multiple of 3 (3 at the avx2 level), 3 rows at a time.
void topk_i8_tile(const std::uint8_t* qp, const std::int8_t* ip, const std::int32_t* corr,
                  const float* iscale, const float* bias, const float* qscale, index_t d4,
                  const float* thr, float* tile, std::uint32_t* mask, int mr) {
  for (int g = 0; g < mr; g += kRows)
    i8_rows3(qp + 4 * g, mr, ip, corr, iscale, bias, qscale + g, d4, thr + g, tile + 32 * g, mask + g);
}

}  // namespace aerec::cpu::avxvnni

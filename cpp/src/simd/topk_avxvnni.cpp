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

// The int8 tile's group (topk_i8_rows3_avx2.inc) on vpdpbusd: per int32 lane, the exact sum of 4
// u8 x s8 products added to the accumulator (no saturation: the non-"s" form), the same int32
// sums as every other level.
#define AEREC_I8_MAC(acc, qb, p) \
  _mm256_dpbusd_avx_epi32((acc), (qb), _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)))
#include "topk_i8_rows3_avx2.inc"
#undef AEREC_I8_MAC
}  // namespace

// Any panel height that is a multiple of 3 (3 at the avx2 level), 3 rows at a time.
void topk_i8_tile(const std::uint8_t* qp, const std::int8_t* ip, const std::int32_t* corr,
                  const float* iscale, const float* bias, const float* qscale, index_t d4,
                  const float* thr, float* tile, std::uint32_t* mask, int mr) {
  for (int g = 0; g < mr; g += kRows)
    i8_rows3(qp + 4 * g, mr, ip, corr, iscale, bias, qscale + g, d4, thr + g, tile + 32 * g, mask + g);
}

}  // namespace aerec::cpu::avxvnni

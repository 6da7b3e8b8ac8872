// Top-k compressed tile kernel: int8 with AVX-512 VNNI (vpdpbusd: uint8 query bytes = q + 64
// (7-bit queries, the same bytes every level sees) times int8 item bytes, the +64 removed with
// the 64 x item row sum in corr). 12 queries x 32
// items = 24 zmm accumulators, as in fp32. Compiled with the VNNI flags only (the bf16 tile is in
// topk_avx512bf16.cpp): a CPU may have one without the other (Ice Lake: VNNI, no BF16).
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "aerec/topk_kernels.hpp"

namespace aerec::cpu::avx512vnni {
namespace {
constexpr int MR = 12;
static_assert(MR == avx512::kTopkMr, "compressed kernels share the fp32 query panel height");
}  // namespace

void topk_i8_tile(const std::uint8_t* qp, const std::int8_t* ip, const std::int32_t* corr,
                  const float* iscale, const float* bias, const float* qscale, index_t d4,
                  const float* thr, float* tile, std::uint32_t* mask, int mr) {
  (void)mr;  // always MR (checked by the caller)
  // Named accumulators: an array of __m512i here made gcc 12 store every accumulator to the
  // stack on each step (vpdpbusd is destructive), halving the throughput.
#define AEREC_ROWS(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)
  // Start from -64 x row sum: removes the +64 query offset and gives the loop non-zero
  // initial values (with zero-initialised accumulators gcc 12 spilled them every step).
  const __m512i k0 = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_loadu_si512(corr));
  const __m512i k1 = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_loadu_si512(corr + 16));
#define AEREC_DECL(i) __m512i c##i##a = k0, c##i##b = k1;
  AEREC_ROWS(AEREC_DECL)
  for (index_t p = 0; p < d4; ++p) {
    const __m512i x0 = _mm512_loadu_si512(ip + p * 128);
    const __m512i x1 = _mm512_loadu_si512(ip + p * 128 + 64);
    const std::uint8_t* q = qp + p * MR * 4;
#define AEREC_STEP(i)                                                  \
  {                                                                    \
    std::int32_t v;                                                    \
    std::memcpy(&v, q + 4 * (i), 4);                                   \
    const __m512i qi = _mm512_set1_epi32(v);                           \
    c##i##a = _mm512_dpbusd_epi32(c##i##a, qi, x0);                    \
    c##i##b = _mm512_dpbusd_epi32(c##i##b, qi, x1);                    \
  }
    AEREC_ROWS(AEREC_STEP)
    // Pin the accumulators to registers (otherwise gcc 12 stores all 24 to the stack per step).
    __asm__("" : "+v"(c0a), "+v"(c0b), "+v"(c1a), "+v"(c1b), "+v"(c2a), "+v"(c2b), "+v"(c3a),
            "+v"(c3b), "+v"(c4a), "+v"(c4b), "+v"(c5a), "+v"(c5b));
    __asm__("" : "+v"(c6a), "+v"(c6b), "+v"(c7a), "+v"(c7b), "+v"(c8a), "+v"(c8b), "+v"(c9a),
            "+v"(c9b), "+v"(c10a), "+v"(c10b), "+v"(c11a), "+v"(c11b));
  }
  const __m512 s0 = _mm512_loadu_ps(iscale), s1 = _mm512_loadu_ps(iscale + 16);
  const __m512 b0 = _mm512_loadu_ps(bias), b1 = _mm512_loadu_ps(bias + 16);
  // Epilogue as the scalar tile: float(acc - corr) * (iscale[j] * qscale[i]) + bias[j], each
  // operation rounded on its own (no FMA: the asm barrier keeps gcc from contracting), so the
  // scores are the scalar / AVX2 tiles' bit for bit.
#define AEREC_FINISH(i)                                                                        \
  {                                                                                            \
    const __m512 qs = _mm512_set1_ps(qscale[i]);                                               \
    __m512 v0 = _mm512_mul_ps(_mm512_cvtepi32_ps(c##i##a), _mm512_mul_ps(s0, qs));             \
    __m512 v1 = _mm512_mul_ps(_mm512_cvtepi32_ps(c##i##b), _mm512_mul_ps(s1, qs));             \
    __asm__("" : "+v"(v0), "+v"(v1));                                                          \
    v0 = _mm512_add_ps(v0, b0);                                                                \
    v1 = _mm512_add_ps(v1, b1);                                                                \
    const __m512 t = _mm512_set1_ps(thr[i]);                                                   \
    const std::uint32_t m0 = _mm512_cmp_ps_mask(v0, t, _CMP_GE_OQ);                            \
    const std::uint32_t m1 = _mm512_cmp_ps_mask(v1, t, _CMP_GE_OQ);                            \
    mask[i] = m0 | (m1 << 16);                                                                 \
    _mm512_storeu_ps(tile + (i) * 32, v0);                                                     \
    _mm512_storeu_ps(tile + (i) * 32 + 16, v1);                                                \
  }
  AEREC_ROWS(AEREC_FINISH)
#undef AEREC_FINISH
#undef AEREC_STEP
#undef AEREC_DECL
#undef AEREC_ROWS
}

}  // namespace aerec::cpu::avx512vnni

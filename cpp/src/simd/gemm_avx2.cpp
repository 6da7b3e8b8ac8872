// AVX2 + FMA GEMM family: 6 x 16 register tile (12 ymm accumulators), masked edges.
#include <immintrin.h>

#include <array>
#include <cstdint>
#include <utility>

#include "../gemm_internal.hpp"

namespace aerec::cpu::avx2 {
namespace {

alignas(64) const std::int32_t kMaskTable[16] = {-1, -1, -1, -1, -1, -1, -1, -1,
                                                 0,  0,  0,  0,  0,  0,  0,  0};

struct VT {
  using V = __m256;
  static constexpr int W = 8;
  static constexpr bool kScalef = false;
  static V scalef(V x, V) { return x; }
  static V recip(V d) { return _mm256_div_ps(_mm256_set1_ps(1.f), d); }
  static constexpr bool kTranspose = false;
  static index_t transpose_rows(const float* const*, int, index_t, float*, index_t) { return 0; }
  static V zero() { return _mm256_setzero_ps(); }
  static V set1(float x) { return _mm256_set1_ps(x); }
  static V load(const float* p) { return _mm256_loadu_ps(p); }
  static void store(float* p, V v) { _mm256_storeu_ps(p, v); }
  static __m256i mask(index_t n) {
    const index_t c = n <= 0 ? 0 : (n >= 8 ? 8 : n);
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(kMaskTable + 8 - c));
  }
  static V load_n(const float* p, index_t n) { return _mm256_maskload_ps(p, mask(n)); }
  static void store_n(float* p, V v, index_t n) { _mm256_maskstore_ps(p, mask(n), v); }
  static V add(V a, V b) { return _mm256_add_ps(a, b); }
  static V sub(V a, V b) { return _mm256_sub_ps(a, b); }
  static V mul(V a, V b) { return _mm256_mul_ps(a, b); }
  static V div(V a, V b) { return _mm256_div_ps(a, b); }
  static V fmadd(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  static V max(V a, V b) { return _mm256_max_ps(a, b); }
  static V min(V a, V b) { return _mm256_min_ps(a, b); }
  static V round(V x) { return _mm256_round_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
  static V pow2i(V n) {
    const __m256i e = _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127));
    return _mm256_castsi256_ps(_mm256_slli_epi32(e, 23));
  }
  static V split_exp(V x, V& e) {
    const __m256i b = _mm256_castps_si256(x);
    e = _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_srli_epi32(b, 23), _mm256_set1_epi32(126)));
    const __m256i m = _mm256_or_si256(_mm256_and_si256(b, _mm256_set1_epi32(0x007FFFFF)),
                                      _mm256_set1_epi32(0x3F000000));
    return _mm256_castsi256_ps(m);
  }
  static V sel_gt(V x, V t, V a, V b) { return _mm256_blendv_ps(b, a, _mm256_cmp_ps(x, t, _CMP_GT_OQ)); }
  static V sel_lt(V x, V t, V a, V b) { return _mm256_blendv_ps(b, a, _mm256_cmp_ps(x, t, _CMP_LT_OQ)); }
};

constexpr const char* kIsaName = "avx2";
constexpr int MR = 6;
constexpr int NR = 16;
constexpr index_t KC = 256;
constexpr index_t MC = 240;
constexpr index_t NC = 4096;

#include "gemm_body.inc"

}  // namespace

const gemm_detail::IsaKernels& gemm_kernels() { return kTable; }

}  // namespace aerec::cpu::avx2

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
  // Transpose up to 8 rows (src[0..rows-1], each >= kc floats) into k-major order:
  // d[k*ds + i] = src[i][k], 8 k at a time with in-register 8 x 8 transposes and masked stores
  // of `rows` floats (a last partial block reads masked). Returns kc (all handled).
  static constexpr bool kTranspose = true;
  static constexpr int kTRows = 8;
  static index_t transpose_rows(const float* const* src, int rows, index_t kc, float* d,
                                index_t ds) {
    const __m256i mrows = mask(rows);
    const __m256 z = _mm256_setzero_ps();
    for (index_t k = 0; k < kc; k += 8) {
      const index_t rem = kc - k;
      const __m256i mk = mask(rem);
      __m256 r[8];
      for (int i = 0; i < 8; ++i) r[i] = i < rows ? _mm256_maskload_ps(src[i] + k, mk) : z;
      __m256 t[8];
      for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
      }
      __m256 u[8];  // u[4g + e]: rows 4g..4g+3, element e of each 128-bit lane
      for (int g = 0; g < 2; ++g) {
        u[4 * g + 0] = _mm256_shuffle_ps(t[4 * g], t[4 * g + 2], 0x44);
        u[4 * g + 1] = _mm256_shuffle_ps(t[4 * g], t[4 * g + 2], 0xEE);
        u[4 * g + 2] = _mm256_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0x44);
        u[4 * g + 3] = _mm256_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0xEE);
      }
      for (int e = 0; e < 4; ++e) {
        if (e < rem)
          _mm256_maskstore_ps(d + (k + e) * ds, mrows, _mm256_permute2f128_ps(u[e], u[4 + e], 0x20));
        if (4 + e < rem)
          _mm256_maskstore_ps(d + (k + 4 + e) * ds, mrows, _mm256_permute2f128_ps(u[e], u[4 + e], 0x31));
      }
    }
    return kc;
  }
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

const gemm_detail::IsaKernels kGemmKernels = kTable;

}  // namespace aerec::cpu::avx2

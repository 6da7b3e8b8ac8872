// AVX-512 (F/BW/VL/DQ) GEMM family: 12 x 32 register tile (24 zmm accumulators), masked edges.
// gcc 12 flags its own _mm512_undefined_ps() inside the intrinsic headers; not our code.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <array>
#include <utility>

#include "../gemm_internal.hpp"

namespace aerec::cpu::avx512 {
namespace {

struct VT {
  using V = __m512;
  static constexpr int W = 16;
  static constexpr bool kScalef = true;
  static V scalef(V x, V n) { return _mm512_scalef_ps(x, n); }
  static V recip(V d) {  // rcp14 + one Newton step: ~1 ulp; d finite and nonzero here
    const V r = _mm512_rcp14_ps(d);
    return _mm512_fmadd_ps(r, _mm512_fnmadd_ps(d, r, _mm512_set1_ps(1.f)), r);
  }
  // Transpose up to 16 rows (src[0..rows-1], each >= kc floats) into k-major order:
  // d[k*ds + i] = src[i][k], 16 k at a time with in-register 16 x 16 transposes and masked
  // stores of `rows` floats (a last partial block reads masked). Returns kc (all handled).
  static constexpr bool kTranspose = true;
  static constexpr int kTRows = 16;
  static index_t transpose_rows(const float* const* src, int rows, index_t kc, float* d,
                                index_t ds) {
    index_t k = 0;
    const __m512 z = _mm512_setzero_ps();
    const __mmask16 mrows = static_cast<__mmask16>((1u << rows) - 1u);
    for (; k < kc; k += 16) {
      const index_t rem = kc - k;
      const __mmask16 mk = rem >= 16 ? static_cast<__mmask16>(0xFFFF)
                                     : static_cast<__mmask16>((1u << rem) - 1u);
      __m512 r[16];
      for (int i = 0; i < 16; ++i) r[i] = i < rows ? _mm512_maskz_loadu_ps(mk, src[i] + k) : z;
      __m512 t[16];
      for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
      }
      __m512 u[16];  // u[4g + e]: rows 4g..4g+3, element e of each 128-bit lane
      for (int g = 0; g < 4; ++g) {
        u[4 * g + 0] = _mm512_shuffle_ps(t[4 * g], t[4 * g + 2], 0x44);
        u[4 * g + 1] = _mm512_shuffle_ps(t[4 * g], t[4 * g + 2], 0xEE);
        u[4 * g + 2] = _mm512_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0x44);
        u[4 * g + 3] = _mm512_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0xEE);
      }
      for (int e = 0; e < 4; ++e) {
        const __m512 a0 = _mm512_shuffle_f32x4(u[e], u[4 + e], 0x88);
        const __m512 a1 = _mm512_shuffle_f32x4(u[8 + e], u[12 + e], 0x88);
        const __m512 b0 = _mm512_shuffle_f32x4(u[e], u[4 + e], 0xDD);
        const __m512 b1 = _mm512_shuffle_f32x4(u[8 + e], u[12 + e], 0xDD);
        if (e < rem)
          _mm512_mask_storeu_ps(d + (k + e) * ds, mrows, _mm512_shuffle_f32x4(a0, a1, 0x88));
        if (8 + e < rem)
          _mm512_mask_storeu_ps(d + (k + 8 + e) * ds, mrows, _mm512_shuffle_f32x4(a0, a1, 0xDD));
        if (4 + e < rem)
          _mm512_mask_storeu_ps(d + (k + 4 + e) * ds, mrows, _mm512_shuffle_f32x4(b0, b1, 0x88));
        if (12 + e < rem)
          _mm512_mask_storeu_ps(d + (k + 12 + e) * ds, mrows, _mm512_shuffle_f32x4(b0, b1, 0xDD));
      }
    }
    return k;
  }
  static V zero() { return _mm512_setzero_ps(); }
  static V set1(float x) { return _mm512_set1_ps(x); }
  static V load(const float* p) { return _mm512_loadu_ps(p); }
  static void store(float* p, V v) { _mm512_storeu_ps(p, v); }
  static __mmask16 mask(index_t n) {
    return n >= 16 ? static_cast<__mmask16>(0xFFFF)
                   : (n <= 0 ? static_cast<__mmask16>(0) : static_cast<__mmask16>((1u << n) - 1u));
  }
  static V load_n(const float* p, index_t n) { return _mm512_maskz_loadu_ps(mask(n), p); }
  static void store_n(float* p, V v, index_t n) { _mm512_mask_storeu_ps(p, mask(n), v); }
  static V add(V a, V b) { return _mm512_add_ps(a, b); }
  static V sub(V a, V b) { return _mm512_sub_ps(a, b); }
  static V mul(V a, V b) { return _mm512_mul_ps(a, b); }
  static V div(V a, V b) { return _mm512_div_ps(a, b); }
  static V fmadd(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  static V max(V a, V b) { return _mm512_max_ps(a, b); }
  static V min(V a, V b) { return _mm512_min_ps(a, b); }
  static V round(V x) { return _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
  static V pow2i(V n) {
    const __m512i e = _mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127));
    return _mm512_castsi512_ps(_mm512_slli_epi32(e, 23));
  }
  static V split_exp(V x, V& e) {
    const __m512i b = _mm512_castps_si512(x);
    e = _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_srli_epi32(b, 23), _mm512_set1_epi32(126)));
    const __m512i m = _mm512_or_si512(_mm512_and_si512(b, _mm512_set1_epi32(0x007FFFFF)),
                                      _mm512_set1_epi32(0x3F000000));
    return _mm512_castsi512_ps(m);
  }
  static V sel_gt(V x, V t, V a, V b) {
    return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, t, _CMP_GT_OQ), b, a);
  }
  static V sel_lt(V x, V t, V a, V b) {
    return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, t, _CMP_LT_OQ), b, a);
  }
};

constexpr const char* kIsaName = "avx512";
constexpr int MR = 12;
constexpr int NR = 32;
constexpr index_t KC = 256;  // B micro-panel KC x NR = 32 KiB of the 48 KiB L1
constexpr index_t MC = 480;  // A block MC x KC = 480 KiB of the 1-2 MiB L2
constexpr index_t NC = 4096; // B block KC x NC = 4 MiB of L3

#include "gemm_body.inc"

}  // namespace

const gemm_detail::IsaKernels kGemmKernels = kTable;

}  // namespace aerec::cpu::avx512

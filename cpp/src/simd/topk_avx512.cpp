// Top-k fp32 tile kernel, AVX-512F: 12 queries x 32 items = 24 zmm accumulators, the query
// values enter the FMAs as embedded broadcasts. The selection compare runs on the registers.
#include <immintrin.h>

#include <cstdint>

#include "aerec/topk_kernels.hpp"

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

namespace aerec::cpu::avx512 {

// Quickselect on unique 64-bit keys with AVX-512 compress: afterwards a[0..kc) hold the kc
// largest keys (unordered). tmp: at least 2 * n + 16 keys of scratch.
void topk_select(std::uint64_t* a, index_t n, index_t kc, std::uint64_t* tmp) {
  index_t lo = 0, hi = n;
  std::uint64_t* g = tmp;
  std::uint64_t* l = tmp + n + 8;
  while (hi - lo > 16) {
    // Median of three as the pivot.
    std::uint64_t x = a[lo], y = a[lo + (hi - lo) / 2], z = a[hi - 1];
    if (x > y) { std::uint64_t t = x; x = y; y = t; }
    if (y > z) { y = z; }
    const std::uint64_t pivot = x > y ? x : y;
    const __m512i pv = _mm512_set1_epi64(static_cast<long long>(pivot));
    index_t ng = 0, nl = 0;
    index_t i = lo;
    for (; i + 8 <= hi; i += 8) {
      const __m512i v = _mm512_loadu_si512(a + i);
      const __mmask8 mg = _mm512_cmpgt_epu64_mask(v, pv);
      const __mmask8 ml = _mm512_cmplt_epu64_mask(v, pv);
      _mm512_storeu_si512(g + ng, _mm512_maskz_compress_epi64(mg, v));
      _mm512_storeu_si512(l + nl, _mm512_maskz_compress_epi64(ml, v));
      ng += __builtin_popcount(mg);
      nl += __builtin_popcount(ml);
    }
    if (i < hi) {
      const __mmask8 tail = static_cast<__mmask8>((1u << (hi - i)) - 1u);
      const __m512i v = _mm512_maskz_loadu_epi64(tail, a + i);
      const __mmask8 mg = _mm512_mask_cmpgt_epu64_mask(tail, v, pv);
      const __mmask8 ml = _mm512_mask_cmplt_epu64_mask(tail, v, pv);
      _mm512_storeu_si512(g + ng, _mm512_maskz_compress_epi64(mg, v));
      _mm512_storeu_si512(l + nl, _mm512_maskz_compress_epi64(ml, v));
      ng += __builtin_popcount(mg);
      nl += __builtin_popcount(ml);
    }
    // a[lo..hi) = greater, pivot, less (keys are unique, so exactly one equals the pivot).
    for (index_t t = 0; t < ng; ++t) a[lo + t] = g[t];
    const index_t p = lo + ng;
    a[p] = pivot;
    for (index_t t = 0; t < nl; ++t) a[p + 1 + t] = l[t];
    if (p + 1 == kc || p == kc) return;
    if (p + 1 < kc) {
      lo = p + 1;
    } else {
      hi = p;
    }
  }
  // Small range: selection sort (descending) of what is left up to kc.
  for (index_t i = lo; i < hi && i < kc; ++i) {
    index_t best = i;
    for (index_t j = i + 1; j < hi; ++j)
      if (a[j] > a[best]) best = j;
    const std::uint64_t t = a[i];
    a[i] = a[best];
    a[best] = t;
  }
}

}  // namespace aerec::cpu::avx512

namespace aerec::cpu::avx512 {

// Survivors of one tile row to 64-bit keys, compressed into the candidate buffer 8 at a time.
void topk_append(const float* t, std::uint32_t mask, const std::int32_t* ids, std::uint64_t* out,
                 index_t* n) {
  const __m512i sign = _mm512_set1_epi32(static_cast<int>(0x80000000u));
  std::uint64_t* o = out;
  for (int h = 0; h < 2; ++h) {
    const std::uint32_t m16 = (mask >> (16 * h)) & 0xFFFFu;
    if (m16 == 0) continue;
    // +0.0f turns -0 into +0, so equal scores tie whatever their sign.
    const __m512 s = _mm512_add_ps(_mm512_loadu_ps(t + 16 * h), _mm512_setzero_ps());
    const __m512i u = _mm512_castps_si512(s);
    const __m512i flip = _mm512_or_si512(_mm512_srai_epi32(u, 31), sign);
    const __m512i key = _mm512_xor_si512(u, flip);
    const __m512i nid = _mm512_xor_si512(_mm512_loadu_si512(ids + 16 * h), _mm512_set1_epi32(-1));
    for (int q = 0; q < 2; ++q) {
      const __mmask8 m8 = static_cast<__mmask8>(m16 >> (8 * q));
      if (m8 == 0) continue;
      const __m256i k8 = q == 0 ? _mm512_castsi512_si256(key) : _mm512_extracti64x4_epi64(key, 1);
      const __m256i i8 = q == 0 ? _mm512_castsi512_si256(nid) : _mm512_extracti64x4_epi64(nid, 1);
      const __m512i v = _mm512_or_si512(_mm512_slli_epi64(_mm512_cvtepu32_epi64(k8), 32),
                                        _mm512_cvtepu32_epi64(i8));
      // Register compress + a full store (the buffer has slack): faster than compress-to-memory.
      _mm512_storeu_si512(o, _mm512_maskz_compress_epi64(m8, v));
      o += __builtin_popcount(m8);
    }
  }
  *n += o - out;
}

// Constant data: picking this table (topk.cpp, dispatch()) runs none of this unit's code.
const TopkKernels kTopkKernels = {kTopkMr, &topk_fp32_tile, &scalar::topk_bf16_tile,
                                   &scalar::topk_i8_tile, &topk_dot, &topk_select, &topk_append, nullptr,
                                   nullptr, nullptr};

}  // namespace aerec::cpu::avx512

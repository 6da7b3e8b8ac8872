// Top-k tile kernels, AVX2 + FMA: 3 queries x 32 items = 12 ymm accumulators (fp32, bf16,
// int8).
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "aerec/topk_kernels.hpp"

namespace aerec::cpu::avx2 {
namespace {
// mask[i] bit b = tile[i][b] >= thr[i], for the kTopkMr x 32 tile.
void make_mask(const float* tile, const float* thr, std::uint32_t* mask) {
  for (int i = 0; i < kTopkMr; ++i) {
    const __m256 t = _mm256_set1_ps(thr[i]);
    std::uint32_t m = 0;
    for (int v = 0; v < 4; ++v) {
      const __m256 c = _mm256_cmp_ps(_mm256_loadu_ps(tile + i * 32 + v * 8), t, _CMP_GE_OQ);
      m |= static_cast<std::uint32_t>(_mm256_movemask_ps(c)) << (8 * v);
    }
    mask[i] = m;
  }
}
}  // namespace

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
  make_mask(tile, thr, mask);
}

// ---- Compressed tiles (same 3 x 32 register tile as fp32; panel height kTopkMr) ----
//
// bf16 unpacks the query panel once per call into a small stack buffer (kQChunk steps at a time)
// so that the inner loop broadcasts each query operand with a plain load (vbroadcastss m32): 12
// accumulators + the two widened item vectors (lo / hi) leave no room for 6 query registers.
// int8 broadcasts the packed u8 query bytes directly (vpmaddubsw takes them as they are).
namespace {
// A broadcast load that gcc may not merge with the same load in the next column: merged, the 6
// query broadcasts of a step stay in registers and 6 of the 12 accumulators spill to the stack
// (gcc 12, seen in objdump). Volatile asm is neither merged nor hoisted.
__m256i bcast_i32(const std::int32_t* a) {
  __m256i r;
  __asm__ volatile("vpbroadcastd %1, %0" : "=x"(r) : "m"(*a));
  return r;
}
__m256 bcast_f32(const float* a) {
  __m256 r;
  __asm__ volatile("vbroadcastss %1, %0" : "=x"(r) : "m"(*a));
  return r;
}
constexpr index_t kQChunk = 64;  // query steps unpacked per chunk (1.5 KiB of stack)
// The bf16 query operands of np steps of one 3-row group (row i of step p at qc[(p * mr + i) *
// 2]) into dst[p * 3 + i]: vectorised where the group is the whole panel (mr == 3, the steps
// contiguous), since this runs once per tile call (with a scalar loop here W1 searched ~13%
// slower at the avx2 level, one noisy A/B run).
void unpack_bf16(const std::uint16_t* qc, int mr, index_t np, float* ql, float* qh) {
  index_t t = 0;
  if (mr == kTopkMr) {
    const __m256i m = _mm256_set1_epi32(static_cast<int>(0xFFFF0000u));
    for (; t + 8 <= np * kTopkMr; t += 8) {
      const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qc + 2 * t));
      _mm256_store_ps(ql + t, _mm256_castsi256_ps(_mm256_slli_epi32(v, 16)));
      _mm256_store_ps(qh + t, _mm256_castsi256_ps(_mm256_and_si256(v, m)));
    }
  }
  for (; t < np * kTopkMr; ++t) {
    const index_t p = t / kTopkMr, i = t % kTopkMr;
    std::uint32_t v;
    std::memcpy(&v, qc + (p * mr + i) * 2, 4);
    const std::uint32_t a = v << 16, b = v & 0xFFFF0000u;
    std::memcpy(ql + t, &a, 4);
    std::memcpy(qh + t, &b, 4);
  }
}
// One 3-row group of a tile; query row i of the group at qp[(p * mr + i) * 4] (int8) or
// qp[(p * mr + i) * 2] (bf16).
void i8_rows3(const std::uint8_t* qp, int mr, const std::int8_t* ip, const std::int32_t* corr,
              const float* iscale, const float* bias, const float* qscale, index_t d4,
              const float* thr, float* tile, std::uint32_t* mask);
void bf16_rows3(const std::uint16_t* qp, int mr, const std::uint16_t* ip, const float* bias,
                index_t d2, const float* thr, float* tile, std::uint32_t* mask);
}  // namespace

// int8: score = (sum_r q[r] * x[r] - corr) * iscale * qscale + bias, q = uint8 (7-bit query +
// 64, so q in [0, 127]: the caller's contract), x = int8. vpmaddubsw multiplies the u8 query
// bytes by the s8 item bytes and adds adjacent pairs to int16: |q0 x0 + q1 x1| <= 2 x 127 x 128 =
// 32512 < 32768, so it never saturates and is exact; vpmaddwd with ones then adds the two pairs
// of each 32-bit lane to int32. That is exactly sum_r q_r x_r per lane; the int32 accumulation
// is the scalar tile's, term for term (|step| <= 65024, so no overflow below d4 = 33,000 steps),
// and the epilogue is the scalar one (mul, mul, add; no FMA contraction): bit-identical tiles.
void topk_i8_tile(const std::uint8_t* qp, const std::int8_t* ip, const std::int32_t* corr,
                  const float* iscale, const float* bias, const float* qscale, index_t d4,
                  const float* thr, float* tile, std::uint32_t* mask, int mr) {
  constexpr int MR = kTopkMr;
  static_assert(MR == 3, "register tile is written for 3 rows");
  // mr is a multiple of 3 (3 at the avx2 level; 12 at avx512 on CPUs without VNNI): 3 rows at a
  // time, the item panel re-read from L1.
  for (int g = 0; g < mr; g += MR)
    i8_rows3(qp + 4 * g, mr, ip, corr, iscale, bias, qscale + g, d4, thr + g, tile + 32 * g, mask + g);
}

namespace {
// The int8 tile's group (topk_i8_rows3_avx2.inc), on vpmaddubsw (u8 x s8 pairs to int16: exact,
// see topk_i8_tile) + vpmaddwd with ones (pairs to int32) + vpaddd.
#define AEREC_I8_MAC(acc, qb, p)                                                              \
  _mm256_add_epi32((acc), _mm256_madd_epi16(                                                  \
                              _mm256_maddubs_epi16((qb), _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))), \
                              _mm256_set1_epi16(1)))
#include "topk_i8_rows3_avx2.inc"
#undef AEREC_I8_MAC
}  // namespace

// bf16: item lane j holds (x_j0 | x_j1 << 16); bf16 -> fp32 is "bits << 16", so
//   lo = slli32(x, 16) = float(x_j0),  hi = and(x, 0xFFFF0000) = float(x_j1)
// and the query pair likewise; then two FMAs per lane. bf16 x bf16 products are exact in fp32
// (8 + 8 significant bits); the sums round in a different order from the scalar tile (which adds
// the pair first), so scores agree to float rounding, not bitwise.
void topk_bf16_tile(const std::uint16_t* qp, const std::uint16_t* ip, const float* bias,
                    index_t d2, const float* thr, float* tile, std::uint32_t* mask, int mr) {
  constexpr int MR = kTopkMr;
  static_assert(MR == 3, "register tile is written for 3 rows");
  for (int g = 0; g < mr; g += MR)  // as the int8 tile: mr is 3 or 12
    bf16_rows3(qp + 2 * g, mr, ip, bias, d2, thr + g, tile + 32 * g, mask + g);
}

namespace {
void bf16_rows3(const std::uint16_t* qp, int mr, const std::uint16_t* ip, const float* bias,
                index_t d2, const float* thr, float* tile, std::uint32_t* mask) {
  constexpr int MR = kTopkMr;
  const __m256 b0 = _mm256_loadu_ps(bias), b1 = _mm256_loadu_ps(bias + 8);
  const __m256 b2 = _mm256_loadu_ps(bias + 16), b3 = _mm256_loadu_ps(bias + 24);
  __m256 c00 = b0, c01 = b1, c02 = b2, c03 = b3;
  __m256 c10 = b0, c11 = b1, c12 = b2, c13 = b3;
  __m256 c20 = b0, c21 = b1, c22 = b2, c23 = b3;
  alignas(32) float ql[kQChunk * MR], qh[kQChunk * MR];  // the pair's two values per row
  const __m256i himask = _mm256_set1_epi32(static_cast<int>(0xFFFF0000u));
  for (index_t p0 = 0; p0 < d2; p0 += kQChunk) {
    const index_t np = d2 - p0 < kQChunk ? d2 - p0 : kQChunk;
    unpack_bf16(qp + p0 * mr * 2, mr, np, ql, qh);
    const std::uint16_t* xc = ip + p0 * 64;
    for (index_t p = 0; p < np; ++p) {
      const float* q0 = ql + p * MR;
      const float* q1 = qh + p * MR;
#define AEREC_BF_COL(v)                                                                       \
  {                                                                                           \
    const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xc + p * 64 + 16 * (v))); \
    const __m256 l = _mm256_castsi256_ps(_mm256_slli_epi32(x, 16));                          \
    const __m256 h = _mm256_castsi256_ps(_mm256_and_si256(x, himask));                       \
    c0##v = _mm256_fmadd_ps(bcast_f32(q0 + 0), l, c0##v);                           \
    c0##v = _mm256_fmadd_ps(bcast_f32(q1 + 0), h, c0##v);                           \
    c1##v = _mm256_fmadd_ps(bcast_f32(q0 + 1), l, c1##v);                           \
    c1##v = _mm256_fmadd_ps(bcast_f32(q1 + 1), h, c1##v);                           \
    c2##v = _mm256_fmadd_ps(bcast_f32(q0 + 2), l, c2##v);                           \
    c2##v = _mm256_fmadd_ps(bcast_f32(q1 + 2), h, c2##v);                           \
  }
      AEREC_BF_COL(0)
      AEREC_BF_COL(1)
      AEREC_BF_COL(2)
      AEREC_BF_COL(3)
#undef AEREC_BF_COL
      // Pin the 12 accumulators to registers (as the VNNI tile does).
      __asm__("" : "+x"(c00), "+x"(c01), "+x"(c02), "+x"(c03), "+x"(c10), "+x"(c11));
      __asm__("" : "+x"(c12), "+x"(c13), "+x"(c20), "+x"(c21), "+x"(c22), "+x"(c23));
    }
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
  make_mask(tile, thr, mask);
}
}  // namespace

namespace {
// n dot products of one item row x with n query rows, each with topk_dot's own operation order
// (two accumulators over 16-float steps, one 8-float tail, the same horizontal sum, the scalar
// tail), so dot4 returns topk_dot's bits.
template <int N>
inline void dot_n(const float* const* q, const float* x, index_t d, float* out) {
  __m256 s0[N], s1[N];
  for (int i = 0; i < N; ++i) s0[i] = s1[i] = _mm256_setzero_ps();
  index_t p = 0;
  for (; p + 16 <= d; p += 16) {
    const __m256 x0 = _mm256_loadu_ps(x + p), x1 = _mm256_loadu_ps(x + p + 8);
    for (int i = 0; i < N; ++i) {
      s0[i] = _mm256_fmadd_ps(_mm256_loadu_ps(q[i] + p), x0, s0[i]);
      s1[i] = _mm256_fmadd_ps(_mm256_loadu_ps(q[i] + p + 8), x1, s1[i]);
    }
  }
  for (; p + 8 <= d; p += 8) {
    const __m256 x0 = _mm256_loadu_ps(x + p);
    for (int i = 0; i < N; ++i) s0[i] = _mm256_fmadd_ps(_mm256_loadu_ps(q[i] + p), x0, s0[i]);
  }
  for (int i = 0; i < N; ++i) {
    const __m256 s = _mm256_add_ps(s0[i], s1[i]);
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_shuffle_ps(h, h, 1));
    float t = _mm_cvtss_f32(h);
    for (index_t r = p; r < d; ++r) t += q[i][r] * x[r];
    out[i] = t;
  }
}
}  // namespace

float topk_dot(const float* q, const float* x, index_t d) {
  float t;
  dot_n<1>(&q, x, d, &t);
  return t;
}

void topk_dot4(const float* const* q, const float* x, index_t d, float* out) { dot_n<4>(q, x, d, out); }

// ---- Candidate selection and append (the avx512 ones with 4-lane compress tables) ----
namespace {
// kCompress[m]: vpermd indices that move the 64-bit lanes set in the 4-bit mask m to the front.
// Constant data (no initialiser code runs).
alignas(32) constexpr std::int32_t kCompress[16][8] = {
    {0, 1, 0, 1, 0, 1, 0, 1}, {0, 1, 0, 1, 0, 1, 0, 1}, {2, 3, 0, 1, 0, 1, 0, 1},
    {0, 1, 2, 3, 0, 1, 0, 1}, {4, 5, 0, 1, 0, 1, 0, 1}, {0, 1, 4, 5, 0, 1, 0, 1},
    {2, 3, 4, 5, 0, 1, 0, 1}, {0, 1, 2, 3, 4, 5, 0, 1}, {6, 7, 0, 1, 0, 1, 0, 1},
    {0, 1, 6, 7, 0, 1, 0, 1}, {2, 3, 6, 7, 0, 1, 0, 1}, {0, 1, 2, 3, 6, 7, 0, 1},
    {4, 5, 6, 7, 0, 1, 0, 1}, {0, 1, 4, 5, 6, 7, 0, 1}, {2, 3, 4, 5, 6, 7, 0, 1},
    {0, 1, 2, 3, 4, 5, 6, 7}};
__m256i compress4(__m256i v, int m) {
  return _mm256_permutevar8x32_epi32(
      v, _mm256_load_si256(reinterpret_cast<const __m256i*>(kCompress[m])));
}
}  // namespace

// Quickselect as avx512::topk_select: partition around a median-of-3 pivot into tmp (greater,
// then less; keys are unique), copy back, recurse into the side holding position kc.
void topk_select(std::uint64_t* a, index_t n, index_t kc, std::uint64_t* tmp) {
  index_t lo = 0, hi = n;
  std::uint64_t* g = tmp;
  std::uint64_t* l = tmp + n + 8;
  // Unsigned 64-bit compare = signed compare after flipping the top bit.
  const __m256i top = _mm256_set1_epi64x(static_cast<long long>(0x8000000000000000ull));
  while (hi - lo > 16) {
    std::uint64_t x = a[lo], y = a[lo + (hi - lo) / 2], z = a[hi - 1];
    if (x > y) { std::uint64_t t = x; x = y; y = t; }
    if (y > z) { y = z; }
    const std::uint64_t pivot = x > y ? x : y;
    const __m256i pv = _mm256_xor_si256(_mm256_set1_epi64x(static_cast<long long>(pivot)), top);
    index_t ng = 0, nl = 0;
    index_t i = lo;
    for (; i + 4 <= hi; i += 4) {
      const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a + i));
      const __m256i vs = _mm256_xor_si256(v, top);
      const int mg = _mm256_movemask_pd(_mm256_castsi256_pd(_mm256_cmpgt_epi64(vs, pv)));
      const int ml = _mm256_movemask_pd(_mm256_castsi256_pd(_mm256_cmpgt_epi64(pv, vs)));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(g + ng), compress4(v, mg));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(l + nl), compress4(v, ml));
      ng += __builtin_popcount(mg);
      nl += __builtin_popcount(ml);
    }
    for (; i < hi; ++i) {
      if (a[i] > pivot) g[ng++] = a[i];
      else if (a[i] < pivot) l[nl++] = a[i];
    }
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
  for (index_t i = lo; i < hi && i < kc; ++i) {
    index_t best = i;
    for (index_t j = i + 1; j < hi; ++j)
      if (a[j] > a[best]) best = j;
    const std::uint64_t t = a[i];
    a[i] = a[best];
    a[best] = t;
  }
}

namespace {
// kCompress8[m]: vpermd indices that move the 32-bit lanes set in the 8-bit mask m to the front
// (8 KiB of constant data, built at compile time: no initialiser code runs).
struct Compress8 {
  std::int32_t idx[256][8];
};
constexpr Compress8 make_compress8() {
  Compress8 t{};
  for (int m = 0; m < 256; ++m) {
    int o = 0;
    for (int b = 0; b < 8; ++b)
      if ((m >> b) & 1) t.idx[m][o++] = b;
    for (; o < 8; ++o) t.idx[m][o] = 0;
  }
  return t;
}
alignas(32) constexpr Compress8 kCompress8 = make_compress8();
}  // namespace

// Keys as topk_detail::make_entry: score + 0 (so -0 ties +0), order-preserving bits above, ~id
// below. Branch-free over the 4 groups of 8 lanes (whether a group has survivors is a coin toss
// for the branch predictor once the threshold has settled): the group's 32-bit score keys and ids
// are compressed with one vpermd each, interleaved to 64-bit keys and stored 8 at a time, the
// output advancing by the group's count; at most 8 keys are written past the last one.
void topk_append(const float* t, std::uint32_t mask, const std::int32_t* ids, std::uint64_t* out,
                 index_t* n) {
  const __m256i sign = _mm256_set1_epi32(static_cast<int>(0x80000000u));
  const __m256i ones = _mm256_set1_epi32(-1);
  std::uint64_t* o = out;
  for (int h = 0; h < 4; ++h) {
    const std::uint32_t m8 = (mask >> (8 * h)) & 0xFFu;
    const __m256 sc = _mm256_add_ps(_mm256_loadu_ps(t + 8 * h), _mm256_setzero_ps());
    const __m256i u = _mm256_castps_si256(sc);
    const __m256i key = _mm256_xor_si256(u, _mm256_or_si256(_mm256_srai_epi32(u, 31), sign));
    const __m256i nid = _mm256_xor_si256(
        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ids + 8 * h)), ones);
    const __m256i perm = _mm256_load_si256(reinterpret_cast<const __m256i*>(kCompress8.idx[m8]));
    const __m256i kc = _mm256_permutevar8x32_epi32(key, perm);
    const __m256i ic = _mm256_permutevar8x32_epi32(nid, perm);
    // 64-bit keys (id word low, score word high): lo = keys 0, 1 | 4, 5; hi = 2, 3 | 6, 7.
    const __m256i lo = _mm256_unpacklo_epi32(ic, kc);
    const __m256i hi = _mm256_unpackhi_epi32(ic, kc);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(o), _mm256_permute2x128_si256(lo, hi, 0x20));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(o + 4), _mm256_permute2x128_si256(lo, hi, 0x31));
    o += __builtin_popcount(m8);
  }
  *n += o - out;
}

// Constant data: picking this table (topk.cpp, dispatch()) runs none of this unit's code.
const TopkKernels kTopkKernels = {kTopkMr, &topk_fp32_tile, &scalar::topk_bf16_tile,
                                   &scalar::topk_i8_tile, &topk_dot, &topk_select, &topk_append, nullptr,
                                   nullptr, &topk_dot4};

}  // namespace aerec::cpu::avx2

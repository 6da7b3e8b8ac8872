// AVX2+FMA bodies of the network kernel table (aerec/nn_kernels.hpp), in aerec::cpu::avx2: the row
// kernels of the sparse paths (namespace rows) and the elementwise bodies (namespace elem), the
// siblings of nn_avx512.cpp with the same operation order, random stream and loss formulas.
//   - adam / sgd: no FMA anywhere (this unit is built with -ffp-contract=off, cpp/CMakeLists.txt),
//     so they equal the scalar bodies bit for bit.
//   - dropout: the counter-based stream of rng.hpp, 8 columns a step; AVX2 has no 64-bit multiply,
//     so mix64's two constant multiplies are built from 32x32->64 products.
//   - bce_row: 16 columns a step as two halves, summed in double into the same lanes and reduced in
//     the same order as the AVX-512 row (_mm512_reduce_add_pd).
#include <immintrin.h>

#include <cmath>
#include <cstdint>
#include <cstring>

#include "aerec/nn_kernels.hpp"

namespace aerec::cpu::avx2 {
namespace rows {
namespace {

__m256 exp_ps(__m256 x) {
  x = _mm256_min_ps(x, _mm256_set1_ps(88.7f));
  x = _mm256_max_ps(x, _mm256_set1_ps(-87.3f));  // 2^n through the exponent field: n >= -126
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.f / 720.f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.f / 120.f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.f / 24.f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.f / 6.f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.f));
  const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

__m256i tail_mask(index_t rem) {
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(rem)), lane);
}

void gather_sum(index_t n, index_t cnt, const std::int32_t* idx, const float* val, const float* m,
                index_t ldm, const float* init, float* out) {
  index_t j = 0;
  for (; j + 64 <= n; j += 64) {
    __m256 a[8];
    for (int q = 0; q < 8; ++q) a[q] = init ? _mm256_loadu_ps(init + j + 8 * q) : _mm256_setzero_ps();
    for (index_t k = 0; k < cnt; ++k) {
      const __m256 s = _mm256_set1_ps(val ? val[k] : 1.f);
      const float* r = m + static_cast<index_t>(idx[k]) * ldm + j;
      for (int q = 0; q < 8; ++q) a[q] = _mm256_fmadd_ps(s, _mm256_loadu_ps(r + 8 * q), a[q]);
    }
    for (int q = 0; q < 8; ++q) _mm256_storeu_ps(out + j + 8 * q, a[q]);
  }
  for (; j < n; j += 8) {
    const __m256i mk = tail_mask(n - j >= 8 ? 8 : n - j);
    __m256 a = init ? _mm256_maskload_ps(init + j, mk) : _mm256_setzero_ps();
    for (index_t k = 0; k < cnt; ++k) {
      const float* r = m + static_cast<index_t>(idx[k]) * ldm + j;
      a = _mm256_fmadd_ps(_mm256_set1_ps(val ? val[k] : 1.f), _mm256_maskload_ps(r, mk), a);
    }
    _mm256_maskstore_ps(out + j, mk, a);
  }
}

void axpy(index_t n, float a, const float* x, float* y) {
  const __m256 s = _mm256_set1_ps(a);
  index_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(y + i, _mm256_fmadd_ps(s, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
  for (; i < n; ++i) y[i] += a * x[i];
}

float hmax(__m256 v) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_shuffle_ps(m, m, 1));
  return _mm_cvtss_f32(m);
}

float hsum(__m256 v) {
  __m128 m = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_add_ps(m, _mm_movehl_ps(m, m));
  m = _mm_add_ss(m, _mm_shuffle_ps(m, m, 1));
  return _mm_cvtss_f32(m);
}

float row_max(index_t n, const float* z) {
  __m256 m0 = _mm256_set1_ps(-INFINITY);
  index_t i = 0;
  for (; i + 8 <= n; i += 8) m0 = _mm256_max_ps(m0, _mm256_loadu_ps(z + i));
  float r = hmax(m0);
  for (; i < n; ++i) r = z[i] > r ? z[i] : r;
  return r;
}

double exp_shift_sum(index_t n, float* z, float shift) {
  const __m256 sh = _mm256_set1_ps(shift);
  __m256 s0 = _mm256_setzero_ps();
  index_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 e = exp_ps(_mm256_sub_ps(_mm256_loadu_ps(z + i), sh));
    _mm256_storeu_ps(z + i, e);
    s0 = _mm256_add_ps(s0, e);
  }
  if (i < n) {
    const __m256i mk = tail_mask(n - i);
    const __m256 e = _mm256_and_ps(exp_ps(_mm256_sub_ps(_mm256_maskload_ps(z + i, mk), sh)),
                                   _mm256_castsi256_ps(mk));
    _mm256_maskstore_ps(z + i, mk, e);
    s0 = _mm256_add_ps(s0, e);
  }
  return static_cast<double>(hsum(s0));
}

void tanh_inplace(index_t n, float* y) {
  const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  for (index_t i = 0; i < n; i += 8) {
    const __m256i mk = tail_mask(n - i >= 8 ? 8 : n - i);
    const __m256 x = _mm256_maskload_ps(y + i, mk);
    const __m256 ax = _mm256_and_ps(x, absmask);
    const __m256 t = exp_ps(_mm256_mul_ps(ax, _mm256_set1_ps(-2.f)));
    __m256 r = _mm256_div_ps(_mm256_sub_ps(_mm256_set1_ps(1.f), t), _mm256_add_ps(_mm256_set1_ps(1.f), t));
    const __m256 x2 = _mm256_mul_ps(ax, ax);
    __m256 s = _mm256_fmadd_ps(x2, _mm256_set1_ps(2.f / 15.f), _mm256_set1_ps(-1.f / 3.f));
    s = _mm256_fmadd_ps(_mm256_mul_ps(s, x2), ax, ax);
    r = _mm256_blendv_ps(r, s, _mm256_cmp_ps(ax, _mm256_set1_ps(0.0625f), _CMP_LT_OQ));
    r = _mm256_or_ps(r, _mm256_andnot_ps(absmask, x));
    _mm256_maskstore_ps(y + i, mk, r);
  }
}


double logistic_row(index_t n, float* z, float scale) {
  const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  const __m256 one = _mm256_set1_ps(1.f), two = _mm256_set1_ps(2.f), sc = _mm256_set1_ps(scale);
  __m256 acc = _mm256_setzero_ps();
  for (index_t i = 0; i < n; i += 8) {
    const __m256i mk = tail_mask(n - i >= 8 ? 8 : n - i);
    const __m256 x = _mm256_maskload_ps(z + i, mk);
    const __m256 e = exp_ps(_mm256_sub_ps(_mm256_setzero_ps(), _mm256_and_ps(x, absmask)));
    const __m256 s = _mm256_div_ps(e, _mm256_add_ps(two, e));
    const __m256 s2 = _mm256_mul_ps(s, s);
    __m256 p = _mm256_set1_ps(1.f / 13.f);
    p = _mm256_fmadd_ps(p, s2, _mm256_set1_ps(1.f / 11.f));
    p = _mm256_fmadd_ps(p, s2, _mm256_set1_ps(1.f / 9.f));
    p = _mm256_fmadd_ps(p, s2, _mm256_set1_ps(1.f / 7.f));
    p = _mm256_fmadd_ps(p, s2, _mm256_set1_ps(1.f / 5.f));
    p = _mm256_fmadd_ps(p, s2, _mm256_set1_ps(1.f / 3.f));
    p = _mm256_fmadd_ps(p, s2, one);
    const __m256 sp = _mm256_fmadd_ps(_mm256_mul_ps(two, s), p, _mm256_max_ps(x, _mm256_setzero_ps()));
    acc = _mm256_add_ps(acc, _mm256_and_ps(sp, _mm256_castsi256_ps(mk)));
    const __m256 r = _mm256_div_ps(one, _mm256_add_ps(one, e));
    const __m256 sig = _mm256_blendv_ps(_mm256_mul_ps(e, r), r, _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_GE_OQ));
    _mm256_maskstore_ps(z + i, mk, _mm256_mul_ps(sig, sc));
  }
  return static_cast<double>(hsum(acc));
}


void scale_accumulate(index_t n, float* z, float s, float* acc) {
  const __m256 sv = _mm256_set1_ps(s);
  index_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_mul_ps(_mm256_loadu_ps(z + i), sv);
    _mm256_storeu_ps(z + i, v);
    _mm256_storeu_ps(acc + i, _mm256_add_ps(_mm256_loadu_ps(acc + i), v));
  }
  for (; i < n; ++i) {
    z[i] *= s;
    acc[i] += z[i];
  }
}

}  // namespace

}  // namespace rows

namespace elem {
namespace {

// Lanes [0, left) of 8 (left clamped to [0, 8]).
inline __m256i tail_mask(index_t left) {
  const int n = left >= 8 ? 8 : left <= 0 ? 0 : static_cast<int>(left);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

}  // namespace

// ---- optimizer updates ---------------------------------------------------------------------------
namespace {

struct AdamV {
  __m256 lr, b1, ob1, b2, ob2, bc1, bc2, eps, wd, lrwd;
};

// One vector of the portable adam body, same order of operations.
inline void adam_step(const AdamV& c, __m256& wi, __m256 gi, __m256& mi, __m256& vi) {
  wi = _mm256_sub_ps(wi, _mm256_mul_ps(c.lrwd, wi));
  gi = _mm256_add_ps(gi, _mm256_mul_ps(c.wd, wi));
  mi = _mm256_add_ps(_mm256_mul_ps(c.b1, mi), _mm256_mul_ps(c.ob1, gi));
  vi = _mm256_add_ps(_mm256_mul_ps(c.b2, vi), _mm256_mul_ps(c.ob2, _mm256_mul_ps(gi, gi)));
  const __m256 num = _mm256_mul_ps(c.lr, _mm256_div_ps(mi, c.bc1));
  const __m256 den = _mm256_add_ps(_mm256_sqrt_ps(_mm256_div_ps(vi, c.bc2)), c.eps);
  wi = _mm256_sub_ps(wi, _mm256_div_ps(num, den));
}

// Lanes of keep[0:8] that are non-zero (keep holds 0 / 1).
inline __m256i keep_lanes(const std::uint8_t* keep) {
  const __m128i k8 = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(keep));
  return _mm256_cmpgt_epi32(_mm256_cvtepu8_epi32(k8), _mm256_setzero_si256());
}

// keep[0:8] as one word: 0 = all pruned (skip), kAllKept = none pruned (plain stores).
inline std::uint64_t keep_word(const std::uint8_t* keep) {
  std::uint64_t kw;
  std::memcpy(&kw, keep, 8);
  return kw;
}
constexpr std::uint64_t kAllKept = 0x0101010101010101ull;

}  // namespace

void adam_update(index_t n, float* w, const float* g, float* m, float* v, const AdamCoeffs& c,
                 const std::uint8_t* keep) {
  const AdamV k{_mm256_set1_ps(c.lr),  _mm256_set1_ps(c.beta1), _mm256_set1_ps(c.one_minus_beta1),
                _mm256_set1_ps(c.beta2), _mm256_set1_ps(c.one_minus_beta2), _mm256_set1_ps(c.bc1),
                _mm256_set1_ps(c.bc2), _mm256_set1_ps(c.eps), _mm256_set1_ps(c.weight_decay),
                _mm256_set1_ps(c.lr_wd)};
  index_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const std::uint64_t kw = keep ? keep_word(keep + i) : kAllKept;
    if (kw == 0) continue;  // a block of pruned weights: nothing to do
    const __m256 w0 = _mm256_loadu_ps(w + i), m0 = _mm256_loadu_ps(m + i), v0 = _mm256_loadu_ps(v + i);
    __m256 wi = w0, mi = m0, vi = v0;
    adam_step(k, wi, _mm256_loadu_ps(g + i), mi, vi);
    if (kw != kAllKept) {  // mixed block: the pruned lanes keep their old values (blend, full stores)
      const __m256 km = _mm256_castsi256_ps(keep_lanes(keep + i));
      wi = _mm256_blendv_ps(w0, wi, km);
      mi = _mm256_blendv_ps(m0, mi, km);
      vi = _mm256_blendv_ps(v0, vi, km);
    }
    _mm256_storeu_ps(m + i, mi);
    _mm256_storeu_ps(v + i, vi);
    _mm256_storeu_ps(w + i, wi);
  }
  if (i < n) {
    __m256i t = tail_mask(n - i);
    if (keep) {
      std::uint8_t kb[8] = {0, 0, 0, 0, 0, 0, 0, 0};
      std::memcpy(kb, keep + i, static_cast<size_t>(n - i));
      t = _mm256_and_si256(t, keep_lanes(kb));
    }
    __m256 wi = _mm256_maskload_ps(w + i, t), mi = _mm256_maskload_ps(m + i, t), vi = _mm256_maskload_ps(v + i, t);
    adam_step(k, wi, _mm256_maskload_ps(g + i, t), mi, vi);
    _mm256_maskstore_ps(m + i, t, mi);
    _mm256_maskstore_ps(v + i, t, vi);
    _mm256_maskstore_ps(w + i, t, wi);
  }
}

namespace {

// km: the lanes to update (all-ones: every lane); pruned lanes are written back unchanged.
template <bool Tail>
inline void sgd_block(index_t i, __m256i t, __m256 km, bool mixed, float* w, const float* g, float* buf,
                      __m256 lr, __m256 mu, __m256 wd, bool nesterov) {
  const auto load = [&](const float* p) { return Tail ? _mm256_maskload_ps(p, t) : _mm256_loadu_ps(p); };
  const auto store = [&](float* p, __m256 old, __m256 x) {
    if (mixed) x = _mm256_blendv_ps(old, x, km);
    if (Tail) _mm256_maskstore_ps(p, t, x); else _mm256_storeu_ps(p, x);
  };
  const __m256 wi = load(w + i);
  __m256 gi = _mm256_add_ps(load(g + i), _mm256_mul_ps(wd, wi));
  if (buf != nullptr) {
    const __m256 b0 = load(buf + i);
    const __m256 b = _mm256_add_ps(_mm256_mul_ps(mu, b0), gi);
    store(buf + i, b0, b);
    gi = nesterov ? _mm256_add_ps(gi, _mm256_mul_ps(mu, b)) : b;
  }
  store(w + i, wi, _mm256_sub_ps(wi, _mm256_mul_ps(lr, gi)));
}

}  // namespace

void sgd_update(index_t n, float* w, const float* g, float* buf, const SgdCoeffs& c, const std::uint8_t* keep) {
  const __m256 lr = _mm256_set1_ps(c.lr), mu = _mm256_set1_ps(c.momentum), wd = _mm256_set1_ps(c.weight_decay);
  const __m256i all = _mm256_set1_epi32(-1);
  const __m256 allf = _mm256_castsi256_ps(all);
  index_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const std::uint64_t kw = keep ? keep_word(keep + i) : kAllKept;
    if (kw == 0) continue;
    const bool mixed = kw != kAllKept;
    sgd_block<false>(i, all, mixed ? _mm256_castsi256_ps(keep_lanes(keep + i)) : allf, mixed, w, g, buf, lr, mu, wd,
                     c.nesterov);
  }
  if (i < n) {
    __m256i t = tail_mask(n - i);
    if (keep) {
      std::uint8_t kb[8] = {0, 0, 0, 0, 0, 0, 0, 0};
      std::memcpy(kb, keep + i, static_cast<size_t>(n - i));
      t = _mm256_and_si256(t, keep_lanes(kb));
    }
    sgd_block<true>(i, t, allf, false, w, g, buf, lr, mu, wd, c.nesterov);
  }
}

// ---- dropout -------------------------------------------------------------------------------------
namespace {

constexpr std::uint64_t kGolden = 0x9E3779B97F4A7C15ull;  // = rng::kGolden (rng.hpp)
constexpr std::uint64_t kMix1 = 0xBF58476D1CE4E5B9ull, kMix2 = 0x94D049BB133111EBull;

// Low 64 bits of a * b for a constant b given as its 32-bit halves (in every 64-bit lane).
inline __m256i mul64(__m256i a, __m256i blo, __m256i bhi) {
  const __m256i lo = _mm256_mul_epu32(a, blo);
  const __m256i cross = _mm256_add_epi64(_mm256_mul_epu32(_mm256_srli_epi64(a, 32), blo), _mm256_mul_epu32(a, bhi));
  return _mm256_add_epi64(lo, _mm256_slli_epi64(cross, 32));
}

struct MixK {
  __m256i m1lo, m1hi, m2lo, m2hi;
};

// mix64(z) (rng.hpp) up to its last step z ^ (z >> 31), which leaves bits 40..63, the only ones the
// caller keeps, unchanged.
inline __m256i mix64_top(__m256i z, const MixK& k) {
  z = mul64(_mm256_xor_si256(z, _mm256_srli_epi64(z, 30)), k.m1lo, k.m1hi);
  return mul64(_mm256_xor_si256(z, _mm256_srli_epi64(z, 27)), k.m2lo, k.m2hi);
}

inline __m256i set1_u64(std::uint64_t x) { return _mm256_set1_epi64x(static_cast<long long>(x)); }

}  // namespace

// Same stream as the portable body: u = (mix64(key + (e + 1) * G) >> 40) * 2^-24. The even columns
// of a step of 8 ride in one vector, the odd ones in another, so the two 24-bit results interleave
// into 32-bit lanes in column order with one blend.
void dropout_forward(index_t rows, index_t cols, const float* src, index_t lds, float* dst,
                     float* mult, std::uint64_t key, float p, const std::int64_t* row_ids) {
  const float scale = 1.f / (1.f - p);
  const __m256 vp = _mm256_set1_ps(p), vscale = _mm256_set1_ps(scale), two24 = _mm256_set1_ps(0x1p-24f);
  const MixK mk{set1_u64(kMix1 & 0xFFFFFFFFu), set1_u64(kMix1 >> 32), set1_u64(kMix2 & 0xFFFFFFFFu),
                set1_u64(kMix2 >> 32)};
  const __m256i even = _mm256_setr_epi64x(0, static_cast<long long>(2 * kGolden), static_cast<long long>(4 * kGolden),
                                          static_cast<long long>(6 * kGolden));
  const __m256i odd = _mm256_add_epi64(even, set1_u64(kGolden));
  const __m256i step8 = set1_u64(8 * kGolden);
  for (index_t r = 0; r < rows; ++r) {
    const std::uint64_t base = key + (static_cast<std::uint64_t>(row_ids[r]) * cols + 1) * kGolden;
    __m256i ze = _mm256_add_epi64(set1_u64(base), even), zo = _mm256_add_epi64(set1_u64(base), odd);
    const float* s = src + r * lds;
    float* d = dst + r * cols;
    float* m = mult + r * cols;
    for (index_t c = 0; c < cols; c += 8) {
      const __m256i he = _mm256_srli_epi64(mix64_top(ze, mk), 40);  // low 32 bits of each lane
      const __m256i ho = _mm256_srli_epi64(mix64_top(zo, mk), 8);   // high 32 bits of each lane
      ze = _mm256_add_epi64(ze, step8);
      zo = _mm256_add_epi64(zo, step8);
      const __m256 u = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_blend_epi32(he, ho, 0xAA)), two24);
      const __m256 k = _mm256_and_ps(_mm256_cmp_ps(u, vp, _CMP_GE_OQ), vscale);
      if (cols - c >= 8) {
        _mm256_storeu_ps(m + c, k);
        _mm256_storeu_ps(d + c, _mm256_mul_ps(_mm256_loadu_ps(s + c), k));
      } else {
        const __m256i t = tail_mask(cols - c);
        _mm256_maskstore_ps(m + c, t, k);
        _mm256_maskstore_ps(d + c, t, _mm256_mul_ps(_mm256_maskload_ps(s + c, t), k));
      }
    }
  }
}

// ---- loss rows (BCE from logits, multinomial on a dense y): vectorised exp / log ------------------------------
namespace {

// exp(x), the Cephes expf polynomial of the AVX-512 BCE row (~1 ulp). 2^n goes through the exponent
// field, so x is clamped to [-87.33654, 88.37626] (n in [-126, 127]); the rows here only take
// x <= 0, where this equals the AVX-512 exp_ps (2^n exact, y * 2^n rounded once either way).
inline __m256 exp_ps(__m256 x) {
  x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.33654f)), _mm256_set1_ps(88.37626f));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500E-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507E-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073E-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894E-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459E-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201E-1f));
  const __m256 y = _mm256_add_ps(_mm256_fmadd_ps(p, _mm256_mul_ps(r, r), r), _mm256_set1_ps(1.f));
  const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(y, _mm256_castsi256_ps(e));
}

// log(u) for finite normal u > 0 (Cephes logf polynomial, ~1 ulp): the AVX-512 log_ps with
// getmant / getexp done on the bits.
inline __m256 log_ps(__m256 u) {
  const __m256i bits = _mm256_castps_si256(u);
  __m256 m = _mm256_castsi256_ps(_mm256_or_si256(_mm256_and_si256(bits, _mm256_set1_epi32(0x007FFFFF)),
                                                 _mm256_set1_epi32(0x3F800000)));  // [1, 2)
  __m256 e = _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_srli_epi32(bits, 23), _mm256_set1_epi32(127)));
  const __m256 big = _mm256_cmp_ps(m, _mm256_set1_ps(1.41421356237f), _CMP_GT_OQ);
  m = _mm256_blendv_ps(m, _mm256_mul_ps(m, _mm256_set1_ps(0.5f)), big);
  e = _mm256_blendv_ps(e, _mm256_add_ps(e, _mm256_set1_ps(1.f)), big);
  const __m256 x = _mm256_sub_ps(m, _mm256_set1_ps(1.f));
  const __m256 z = _mm256_mul_ps(x, x);
  __m256 p = _mm256_set1_ps(7.0376836292E-2f);
  p = _mm256_fmadd_ps(p, x, _mm256_set1_ps(-1.1514610310E-1f));
  p = _mm256_fmadd_ps(p, x, _mm256_set1_ps(1.1676998740E-1f));
  p = _mm256_fmadd_ps(p, x, _mm256_set1_ps(-1.2420140846E-1f));
  p = _mm256_fmadd_ps(p, x, _mm256_set1_ps(1.4249322787E-1f));
  p = _mm256_fmadd_ps(p, x, _mm256_set1_ps(-1.6668057665E-1f));
  p = _mm256_fmadd_ps(p, x, _mm256_set1_ps(2.0000714765E-1f));
  p = _mm256_fmadd_ps(p, x, _mm256_set1_ps(-2.4999993993E-1f));
  p = _mm256_fmadd_ps(p, x, _mm256_set1_ps(3.3333331174E-1f));
  __m256 y = _mm256_mul_ps(_mm256_mul_ps(p, x), z);
  y = _mm256_fmadd_ps(e, _mm256_set1_ps(-2.12194440e-4f), y);
  y = _mm256_fnmadd_ps(z, _mm256_set1_ps(0.5f), y);
  return _mm256_fmadd_ps(e, _mm256_set1_ps(0.693359375f), _mm256_add_ps(x, y));
}

// Double accumulators in the lanes of the AVX-512 rows' (lo, hi) pair: a 16-column step's first 8
// floats go to lanes 0-3 / 4-7 of lo (l0, l1), its last 8 to those of hi (h0, h1).
struct Acc {
  __m256d l0 = _mm256_setzero_pd(), l1 = _mm256_setzero_pd(), h0 = _mm256_setzero_pd(), h1 = _mm256_setzero_pd();
  void add_lo(__m256 v) {
    l0 = _mm256_add_pd(l0, _mm256_cvtps_pd(_mm256_castps256_ps128(v)));
    l1 = _mm256_add_pd(l1, _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)));
  }
  void add_hi(__m256 v) {
    h0 = _mm256_add_pd(h0, _mm256_cvtps_pd(_mm256_castps256_ps128(v)));
    h1 = _mm256_add_pd(h1, _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)));
  }
  // _mm512_reduce_add_pd(lo + hi), pair for pair.
  double sum() const {
    const __m256d t3 = _mm256_add_pd(_mm256_add_pd(l1, h1), _mm256_add_pd(l0, h0));
    const __m128d t6 = _mm_add_pd(_mm256_extractf128_pd(t3, 1), _mm256_castpd256_pd128(t3));
    return _mm_cvtsd_f64(_mm_add_sd(t6, _mm_unpackhi_pd(t6, t6)));
  }
};

template <bool Tail>
inline __m256 load8(const float* p, __m256i t) {
  return Tail ? _mm256_maskload_ps(p, t) : _mm256_loadu_ps(p);
}
template <bool Tail>
inline void store8(float* p, __m256i t, __m256 x) {
  if (Tail) _mm256_maskstore_ps(p, t, x); else _mm256_storeu_ps(p, x);
}
template <bool Tail>
inline __m256 keep8(__m256 x, __m256i t) {
  return Tail ? _mm256_and_ps(x, _mm256_castsi256_ps(t)) : x;
}

// BCE terms of 8 columns (zero in lanes outside t when Tail); writes d there when d.
template <bool Tail>
inline __m256 bce8(const float* z, const float* y, float* d, __m256i t, __m256 vs) {
  const __m256 one = _mm256_set1_ps(1.f), zero = _mm256_setzero_ps();
  const __m256 zv = load8<Tail>(z, t), yv = load8<Tail>(y, t);
  const __m256 az = _mm256_and_ps(zv, _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF)));
  const __m256 e = exp_ps(_mm256_sub_ps(zero, az));
  const __m256 u = _mm256_add_ps(one, e);
  const __m256 um1 = _mm256_sub_ps(u, one);
  // log1p(e) = log(u) * e / (u - 1), exact correction for the rounding of u = 1 + e
  const __m256 tiny = _mm256_cmp_ps(um1, zero, _CMP_EQ_OQ);
  __m256 l1p = _mm256_mul_ps(log_ps(u), _mm256_div_ps(e, _mm256_blendv_ps(um1, one, tiny)));
  l1p = _mm256_blendv_ps(l1p, e, tiny);
  const __m256 term = _mm256_sub_ps(_mm256_add_ps(_mm256_max_ps(zv, zero), l1p), _mm256_mul_ps(yv, zv));
  if (d) {
    const __m256 inv = _mm256_div_ps(one, u);
    const __m256 sig = _mm256_blendv_ps(_mm256_mul_ps(e, inv), inv, _mm256_cmp_ps(zv, zero, _CMP_GE_OQ));
    store8<Tail>(d, t, _mm256_mul_ps(_mm256_sub_ps(sig, yv), vs));
  }
  return keep8<Tail>(term, t);
}

}  // namespace

// One row of binary cross-entropy from logits z (see Network::loss_rows): returns
// sum_c softplus(z_c) - y_c z_c; writes d_c = (sigmoid(z_c) - y_c) * iscale when d.
double bce_row(const float* z, const float* y, float* d, index_t cols, float iscale) {
  const __m256 vs = _mm256_set1_ps(iscale);
  const __m256i all = _mm256_set1_epi32(-1);
  Acc acc;
  index_t c = 0;
  for (; c + 16 <= cols; c += 16) {
    acc.add_lo(bce8<false>(z + c, y + c, d ? d + c : nullptr, all, vs));
    acc.add_hi(bce8<false>(z + c + 8, y + c + 8, d ? d + c + 8 : nullptr, all, vs));
  }
  if (c < cols) {
    acc.add_lo(bce8<true>(z + c, y + c, d ? d + c : nullptr, tail_mask(cols - c), vs));
    acc.add_hi(bce8<true>(z + c + 8, y + c + 8, d ? d + c + 8 : nullptr, tail_mask(cols - c - 8), vs));
  }
  return acc.sum();
}


namespace {

// exp(o - max) of 8 columns (zero outside t), stored into d when d; adds to the three sums.
template <bool Tail>
inline void softmax8(const float* o, const float* y, float* d, __m256i t, __m256 vmx, __m256& e_out,
                     __m256& y_out, __m256& yo_out) {
  const __m256 ov = load8<Tail>(o, t), yv = load8<Tail>(y, t);
  const __m256 e = keep8<Tail>(exp_ps(_mm256_sub_ps(ov, vmx)), t);
  if (d) store8<Tail>(d, t, e);
  e_out = e;
  y_out = yv;
  yo_out = _mm256_mul_ps(yv, ov);
}

template <bool Tail>
inline void softmax16(const float* o, const float* y, float* d, index_t left, __m256 vmx, Acc& se, Acc& ys, Acc& yz) {
  const __m256i all = _mm256_set1_epi32(-1);
  const __m256i t0 = Tail ? tail_mask(left) : all, t1 = Tail ? tail_mask(left - 8) : all;
  __m256 e, yv, yo;
  softmax8<Tail>(o, y, d, t0, vmx, e, yv, yo);
  se.add_lo(e);
  ys.add_lo(yv);
  yz.add_lo(yo);
  softmax8<Tail>(o + 8, y + 8, d ? d + 8 : nullptr, t1, vmx, e, yv, yo);
  se.add_hi(e);
  ys.add_hi(yv);
  yz.add_hi(yo);
}

template <bool Tail>
inline void scale8(float* d, const float* y, __m256i t, __m256 inv, __m256 ys, __m256 vs) {
  const __m256 dv = load8<Tail>(d, t), yv = load8<Tail>(y, t);
  store8<Tail>(d, t, _mm256_mul_ps(_mm256_sub_ps(_mm256_mul_ps(_mm256_mul_ps(dv, inv), ys), yv), vs));
}

}  // namespace

// One row of the multinomial log-likelihood from logits o: returns ysum * lse - sum_c y_c o_c;
// writes d_c = (softmax_c * ysum - y_c) * iscale when d.
double multinomial_row(const float* o, const float* y, float* d, index_t cols, float iscale) {
  // Column max in the AVX-512 row's 16 lanes (a: columns 16j..16j+7, b: the next 8) and its
  // _mm512_reduce_max_ps order.
  const __m256 ninf = _mm256_set1_ps(-__builtin_inff());
  __m256 ma = ninf, mb = ninf;
  index_t c = 0;
  for (; c + 16 <= cols; c += 16) {
    ma = _mm256_max_ps(ma, _mm256_loadu_ps(o + c));
    mb = _mm256_max_ps(mb, _mm256_loadu_ps(o + c + 8));
  }
  if (c < cols) {
    const __m256i ta = tail_mask(cols - c), tb = tail_mask(cols - c - 8);
    ma = _mm256_blendv_ps(ma, _mm256_max_ps(ma, _mm256_maskload_ps(o + c, ta)), _mm256_castsi256_ps(ta));
    mb = _mm256_blendv_ps(mb, _mm256_max_ps(mb, _mm256_maskload_ps(o + c + 8, tb)), _mm256_castsi256_ps(tb));
  }
  const __m256 t3 = _mm256_max_ps(mb, ma);
  __m128 t6 = _mm_max_ps(_mm256_extractf128_ps(t3, 1), _mm256_castps256_ps128(t3));
  t6 = _mm_max_ps(t6, _mm_shuffle_ps(t6, t6, _MM_SHUFFLE(1, 0, 3, 2)));
  t6 = _mm_max_ps(t6, _mm_shuffle_ps(t6, t6, _MM_SHUFFLE(0, 1, 0, 1)));
  const float mx = _mm_cvtss_f32(t6);
  const __m256 vmx = _mm256_set1_ps(mx);
  Acc se, ys, yz;
  for (c = 0; c + 16 <= cols; c += 16) softmax16<false>(o + c, y + c, d ? d + c : nullptr, 16, vmx, se, ys, yz);
  if (c < cols) softmax16<true>(o + c, y + c, d ? d + c : nullptr, cols - c, vmx, se, ys, yz);
  const double sse = se.sum(), ysum = ys.sum(), syz = yz.sum();
  if (d) {
    const __m256 inv = _mm256_set1_ps(static_cast<float>(1.0 / sse)), vys = _mm256_set1_ps(static_cast<float>(ysum));
    const __m256 vs = _mm256_set1_ps(iscale);
    const __m256i all = _mm256_set1_epi32(-1);
    for (c = 0; c + 8 <= cols; c += 8) scale8<false>(d + c, y + c, all, inv, vys, vs);
    if (c < cols) scale8<true>(d + c, y + c, tail_mask(cols - c), inv, vys, vs);
  }
  return ysum * (static_cast<double>(mx) + std::log(sse)) - syz;
}

}  // namespace elem

// Constant data (function addresses are constant expressions): no initialiser compiled with this
// unit's flags runs at load time or when a portable caller picks a table.
const NnKernels kNnKernels = {
    &elem::adam_update, &elem::sgd_update, &elem::dropout_forward, &elem::bce_row, &elem::multinomial_row,
    &rows::gather_sum, &rows::axpy, &rows::row_max, &rows::exp_shift_sum, &rows::scale_accumulate,
    &rows::tanh_inplace, &rows::logistic_row,
};

}  // namespace aerec::cpu::avx2

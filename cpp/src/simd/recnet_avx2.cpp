// AVX2+FMA bodies of the RecNetwork kernels (see recnet_kernels.hpp), in aerec::cpu::avx2, all static.
#include <immintrin.h>

#include <cmath>
#include <cstdint>

#include "aerec/recnet_kernels.hpp"

namespace aerec::cpu::avx2 {
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

void scale(index_t n, float* z, float s) {
  const __m256 sv = _mm256_set1_ps(s);
  index_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(z + i, _mm256_mul_ps(_mm256_loadu_ps(z + i), sv));
  for (; i < n; ++i) z[i] *= s;
}

void adam(index_t n, float* w, float* m, float* v, const float* g, float l2, float lr, float b1,
          float b2, float c1, float c2, float eps) {
  const __m256 vb1 = _mm256_set1_ps(b1), vb2 = _mm256_set1_ps(b2);
  const __m256 vb1c = _mm256_set1_ps(1.f - b1), vb2c = _mm256_set1_ps(1.f - b2);
  const __m256 vl2 = _mm256_set1_ps(l2), vlr = _mm256_set1_ps(lr), vc1 = _mm256_set1_ps(c1);
  const __m256 vc2 = _mm256_set1_ps(c2), veps = _mm256_set1_ps(eps);
  for (index_t i = 0; i < n; i += 8) {
    const __m256i mk = tail_mask(n - i >= 8 ? 8 : n - i);
    const __m256 wv = _mm256_maskload_ps(w + i, mk);
    __m256 gv = g ? _mm256_maskload_ps(g + i, mk) : _mm256_setzero_ps();
    if (l2 != 0.f) gv = _mm256_fmadd_ps(vl2, wv, gv);
    const __m256 mv = _mm256_fmadd_ps(vb1, _mm256_maskload_ps(m + i, mk), _mm256_mul_ps(vb1c, gv));
    const __m256 vv = _mm256_fmadd_ps(vb2, _mm256_maskload_ps(v + i, mk),
                                      _mm256_mul_ps(vb2c, _mm256_mul_ps(gv, gv)));
    const __m256 den = _mm256_add_ps(_mm256_sqrt_ps(_mm256_mul_ps(vv, vc2)), veps);
    const __m256 upd = _mm256_div_ps(_mm256_mul_ps(vlr, _mm256_mul_ps(mv, vc1)), den);
    _mm256_maskstore_ps(m + i, mk, mv);
    _mm256_maskstore_ps(v + i, mk, vv);
    _mm256_maskstore_ps(w + i, mk, _mm256_sub_ps(wv, upd));
  }
}

void sgd(index_t n, float* w, float* m, const float* g, float l2, float lr, float mom) {
  const __m256 vl2 = _mm256_set1_ps(l2), vlr = _mm256_set1_ps(lr), vmom = _mm256_set1_ps(mom);
  for (index_t i = 0; i < n; i += 8) {
    const __m256i mk = tail_mask(n - i >= 8 ? 8 : n - i);
    const __m256 wv = _mm256_maskload_ps(w + i, mk);
    __m256 gv = g ? _mm256_maskload_ps(g + i, mk) : _mm256_setzero_ps();
    if (l2 != 0.f) gv = _mm256_fmadd_ps(vl2, wv, gv);
    const __m256 mv = _mm256_fmadd_ps(vmom, _mm256_maskload_ps(m + i, mk), gv);
    _mm256_maskstore_ps(m + i, mk, mv);
    _mm256_maskstore_ps(w + i, mk, _mm256_fnmadd_ps(vlr, mv, wv));
  }
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

// Constant data (function addresses are constant expressions): no initialiser compiled with this
// unit's flags runs at load time or when a portable caller picks a table.
const RecKernels kRecKernels = {
    &gather_sum, &axpy, &row_max, &exp_shift_sum, &scale, &scale_accumulate,
    &adam, &sgd, &tanh_inplace, &logistic_row,
};

}  // namespace aerec::cpu::avx2

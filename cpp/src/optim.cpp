#include "aerec/optim.hpp"

#include <cmath>

#include "aerec/cpu_features.hpp"
#include "aerec/parallel.hpp"
#include "network_kernels.hpp"

namespace aerec::cpu {

namespace {

// Portable bodies (auto-vectorised to SSE2 by -O3). Same operation order as the NumPy reference.
void adam_portable(index_t n, float* __restrict w, const float* __restrict g, float* __restrict m,
                   float* __restrict v, const AdamCoeffs& c) {
  const float lr = c.lr, b1 = c.beta1, ob1 = c.one_minus_beta1, b2 = c.beta2, ob2 = c.one_minus_beta2;
  const float bc1 = c.bc1, bc2 = c.bc2, eps = c.eps, wd = c.weight_decay, lrwd = c.lr_wd;
  for (index_t i = 0; i < n; ++i) {
    float wi = w[i];
    wi = wi - lrwd * wi;
    float gi = g[i] + wd * wi;
    float mi = b1 * m[i];
    mi = mi + ob1 * gi;
    float vi = b2 * v[i];
    vi = vi + ob2 * (gi * gi);
    m[i] = mi;
    v[i] = vi;
    w[i] = wi - (lr * (mi / bc1)) / (std::sqrt(vi / bc2) + eps);
  }
}

void sgd_portable(index_t n, float* __restrict w, const float* __restrict g, float* __restrict buf,
                  const SgdCoeffs& c) {
  const float lr = c.lr, mu = c.momentum, wd = c.weight_decay;
  if (buf == nullptr) {
    for (index_t i = 0; i < n; ++i) w[i] = w[i] - lr * (g[i] + wd * w[i]);
    return;
  }
  if (c.nesterov) {
    for (index_t i = 0; i < n; ++i) {
      float gi = g[i] + wd * w[i];
      float b = mu * buf[i] + gi;
      buf[i] = b;
      w[i] = w[i] - lr * (gi + mu * b);
    }
  } else {
    for (index_t i = 0; i < n; ++i) {
      float gi = g[i] + wd * w[i];
      float b = mu * buf[i] + gi;
      buf[i] = b;
      w[i] = w[i] - lr * b;
    }
  }
}

// Elementwise, so splitting it over threads changes no bits; only worth it on big tensors.
constexpr index_t kParallelMin = index_t(1) << 17;

template <class F>
void chunked(index_t n, F&& f) {
#ifdef AEREC_OPENMP
  const int nt = n >= kParallelMin ? resolve_threads(0) : 1;
  if (nt > 1) {
    const index_t chunk = ((n + nt - 1) / nt + 15) / 16 * 16;
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int t = 0; t < nt; ++t) {
      index_t lo = t * chunk, hi = lo + chunk < n ? lo + chunk : n;
      if (lo < hi) f(lo, hi - lo);
    }
    return;
  }
#endif
  f(0, n);
}

}  // namespace

void adam_update(index_t n, float* w, const float* g, float* m, float* v, const AdamCoeffs& c) {
  const auto body = dispatch(&adam_portable, AEREC_X86_VARIANTS({Target::avx2, &avx2::adam_update},
                                                                   {Target::avx512, &avx512::adam_update}));
  chunked(n, [&](index_t o, index_t k) { body(k, w + o, g + o, m + o, v + o, c); });
}

void sgd_update(index_t n, float* w, const float* g, float* buf, const SgdCoeffs& c) {
  const auto body = dispatch(&sgd_portable, AEREC_X86_VARIANTS({Target::avx2, &avx2::sgd_update},
                                                                 {Target::avx512, &avx512::sgd_update}));
  chunked(n, [&](index_t o, index_t k) { body(k, w + o, g + o, buf ? buf + o : nullptr, c); });
}

}  // namespace aerec::cpu

#include "aerec/optim.hpp"

#include "aerec/parallel.hpp"
#include "aerec/nn_kernels.hpp"

namespace aerec::cpu {

namespace {

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
  const auto body = nn_kernels().adam;
  chunked(n, [&](index_t o, index_t k) { body(k, w + o, g + o, m + o, v + o, c, nullptr); });
}

void sgd_update(index_t n, float* w, const float* g, float* buf, const SgdCoeffs& c) {
  const auto body = nn_kernels().sgd;
  chunked(n, [&](index_t o, index_t k) { body(k, w + o, g + o, buf ? buf + o : nullptr, c, nullptr); });
}

}  // namespace aerec::cpu

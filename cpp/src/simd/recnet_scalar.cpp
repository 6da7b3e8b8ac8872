// Portable scalar bodies of the RecNetwork kernels (see recnet_kernels.hpp), in aerec::cpu::scalar.
#include <cmath>
#include <cstdint>

#include "aerec/recnet_kernels.hpp"

namespace aerec::cpu::scalar {
namespace {

void gather_sum(index_t n, index_t cnt, const std::int32_t* idx, const float* val, const float* m,
                index_t ldm, const float* init, float* out) {
  for (index_t j = 0; j < n; ++j) out[j] = init ? init[j] : 0.f;
  for (index_t k = 0; k < cnt; ++k) {
    const float s = val ? val[k] : 1.f;
    const float* r = m + static_cast<index_t>(idx[k]) * ldm;
    for (index_t j = 0; j < n; ++j) out[j] += s * r[j];
  }
}

void axpy(index_t n, float a, const float* x, float* y) {
  for (index_t i = 0; i < n; ++i) y[i] += a * x[i];
}

float row_max(index_t n, const float* z) {
  float r = -INFINITY;
  for (index_t i = 0; i < n; ++i) r = z[i] > r ? z[i] : r;
  return r;
}

double exp_shift_sum(index_t n, float* z, float shift) {
  float s = 0.f;
  for (index_t i = 0; i < n; ++i) {
    z[i] = std::exp(z[i] - shift);
    s += z[i];
  }
  return static_cast<double>(s);
}

void scale(index_t n, float* z, float s) {
  for (index_t i = 0; i < n; ++i) z[i] *= s;
}

void adam(index_t n, float* w, float* m, float* v, const float* g, float l2, float lr, float b1,
          float b2, float c1, float c2, float eps) {
  for (index_t i = 0; i < n; ++i) {
    const float gi = (g ? g[i] : 0.f) + l2 * w[i];
    m[i] = b1 * m[i] + (1.f - b1) * gi;
    v[i] = b2 * v[i] + (1.f - b2) * (gi * gi);
    w[i] -= (lr * (m[i] * c1)) / (std::sqrt(v[i] * c2) + eps);
  }
}

void sgd(index_t n, float* w, float* m, const float* g, float l2, float lr, float mom) {
  for (index_t i = 0; i < n; ++i) {
    m[i] = mom * m[i] + (g ? g[i] : 0.f) + l2 * w[i];
    w[i] -= lr * m[i];
  }
}

void tanh_inplace(index_t n, float* y) {
  for (index_t i = 0; i < n; ++i) y[i] = std::tanh(y[i]);
}


double logistic_row(index_t n, float* z, float scale) {
  double acc = 0.0;
  for (index_t i = 0; i < n; ++i) {
    const float x = z[i];
    const float e = std::exp(-std::fabs(x));
    acc += static_cast<double>((x > 0.f ? x : 0.f) + std::log1p(e));
    z[i] = (x >= 0.f ? 1.f / (1.f + e) : e / (1.f + e)) * scale;
  }
  return acc;
}


void scale_accumulate(index_t n, float* z, float s, float* acc) {
  for (index_t i = 0; i < n; ++i) {
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

}  // namespace aerec::cpu::scalar

// Portable bodies of the network kernel table (aerec/nn_kernels.hpp), in aerec::cpu::scalar: the
// reference every ISA sibling is tested against (test_network_kernels).
#include <cmath>
#include <cstdint>

#include <algorithm>

#include "aerec/nn_kernels.hpp"

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

// ---- the Network's bodies: same operation order as the NumPy reference, no FMA ----------------
// keep (null: every element): elements with keep[i] == 0 are skipped (w, m, v untouched).
void adam_update(index_t n, float* __restrict w, const float* __restrict g, float* __restrict m,
                 float* __restrict v, const AdamCoeffs& c, const std::uint8_t* __restrict keep) {
  const float lr = c.lr, b1 = c.beta1, ob1 = c.one_minus_beta1, b2 = c.beta2, ob2 = c.one_minus_beta2;
  const float bc1 = c.bc1, bc2 = c.bc2, eps = c.eps, wd = c.weight_decay, lrwd = c.lr_wd;
  auto one = [&](index_t i) {
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
  };
  if (keep == nullptr) {
    for (index_t i = 0; i < n; ++i) one(i);
  } else {
    for (index_t i = 0; i < n; ++i)
      if (keep[i]) one(i);
  }
}

void sgd_update(index_t n, float* __restrict w, const float* __restrict g, float* __restrict buf,
                const SgdCoeffs& c, const std::uint8_t* __restrict keep) {
  const float lr = c.lr, mu = c.momentum, wd = c.weight_decay;
  if (buf == nullptr) {
    if (keep == nullptr) {
      for (index_t i = 0; i < n; ++i) w[i] = w[i] - lr * (g[i] + wd * w[i]);
    } else {
      for (index_t i = 0; i < n; ++i)
        if (keep[i]) w[i] = w[i] - lr * (g[i] + wd * w[i]);
    }
    return;
  }
  auto one = [&](index_t i) {
    const float gi = g[i] + wd * w[i];
    const float b = mu * buf[i] + gi;
    buf[i] = b;
    w[i] = w[i] - lr * (c.nesterov ? gi + mu * b : b);
  };
  if (keep == nullptr) {
    for (index_t i = 0; i < n; ++i) one(i);
  } else {
    for (index_t i = 0; i < n; ++i)
      if (keep[i]) one(i);
  }
}

constexpr std::uint64_t kGolden = 0x9E3779B97F4A7C15ull;  // = rng::kGolden (rng.hpp)

std::uint64_t mix64(std::uint64_t z) {  // = rng::mix64, a copy of this unit's own (ODR rule)
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

void dropout_forward(index_t rows, index_t cols, const float* src, index_t lds, float* dst,
                     float* mult, std::uint64_t key, float p, const std::int64_t* row_ids) {
  const float scale = 1.f / (1.f - p);
  for (index_t r = 0; r < rows; ++r) {
    const std::uint64_t base = key + (static_cast<std::uint64_t>(row_ids[r]) * cols + 1) * kGolden;
    const float* s = src + r * lds;
    float* d = dst + r * cols;
    float* m = mult + r * cols;
    for (index_t c = 0; c < cols; ++c) {
      const float u = static_cast<float>(mix64(base + static_cast<std::uint64_t>(c) * kGolden) >> 40) * 0x1p-24f;
      const float k = u >= p ? scale : 0.f;
      m[c] = k;
      d[c] = s[c] * k;
    }
  }
}

// softplus and sigmoid share e = exp(-|z|); log1p(e) = log(u) * e / (u - 1), u = 1 + e (exact
// correction for the rounding of u; glibc's log1pf is several times slower than logf).
double bce_row(const float* z, const float* y, float* d, index_t cols, float iscale) {
  double sum = 0.0;
  for (index_t c = 0; c < cols; ++c) {
    const float zc = z[c];
    const float e = std::exp(-std::fabs(zc));
    const float u = 1.f + e;
    const float l1p = u == 1.f ? e : std::log(u) * (e / (u - 1.f));
    const float term = (std::max(zc, 0.f) + l1p) - y[c] * zc;
    sum += term;
    if (d) {
      const float inv = 1.f / u;
      const float sig = zc >= 0.f ? inv : e * inv;
      d[c] = (sig - y[c]) * iscale;
    }
  }
  return sum;
}

// One row of the multinomial log-likelihood on a dense y: ysum * lse - sum_c y_c o_c with
// lse = max + log sum exp(o - max); d_c = (softmax_c * ysum - y_c) * iscale when d (d first holds
// exp(o - max)).
double multinomial_row(const float* o, const float* y, float* d, index_t cols, float iscale) {
  float mx = o[0];
  for (index_t c = 1; c < cols; ++c) mx = std::max(mx, o[c]);
  double se = 0.0, ysum = 0.0, yz = 0.0;
  for (index_t c = 0; c < cols; ++c) {
    const float e = std::exp(o[c] - mx);
    const float p = y[c] * o[c];
    if (d) d[c] = e;  // after the last read of o[c]: d may alias o
    se += e;
    ysum += y[c];
    yz += p;
  }
  if (d) {
    const float inv = static_cast<float>(1.0 / se), ys = static_cast<float>(ysum);
    for (index_t c = 0; c < cols; ++c) d[c] = ((d[c] * inv) * ys - y[c]) * iscale;
  }
  return ysum * (static_cast<double>(mx) + std::log(se)) - yz;
}

}  // namespace

// Constant data (function addresses are constant expressions): no initialiser compiled with this
// unit's flags runs at load time or when a portable caller picks a table.
const NnKernels kNnKernels = {
    &adam_update, &sgd_update, &dropout_forward, &bce_row, &multinomial_row,
    &gather_sum, &axpy, &row_max, &exp_shift_sum, &scale_accumulate,
    &tanh_inplace, &logistic_row,
};

}  // namespace aerec::cpu::scalar

// Micro-benchmark of the Network's elementwise bodies, one thread: the portable loops (copied from
// network.cpp / called through optim.hpp at the scalar level) against the AVX2 and AVX-512 bodies.
// Prints the minimum over 31 runs of ns per element. Build against the kernel library:
//   g++ -O3 -fno-math-errno -std=c++17 -Icpp/include benchmarks/network_rows_micro.cpp \
//       build/dev/cpp/libaerec_kernels.a -fopenmp -o /tmp/network_rows_micro
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "../cpp/src/network_kernels.hpp"
#include "aerec/cpu_features.hpp"
#include "aerec/optim.hpp"
#include "aerec/parallel.hpp"
#include "aerec/rng.hpp"

using namespace aerec;
using namespace aerec::cpu;

// ---- the portable bodies of network.cpp, verbatim
static double bce_row_portable(const float* z, const float* y, float* d, index_t cols, float iscale) {
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

static double multinomial_row_portable(const float* o, const float* y, float* d, index_t cols, float iscale) {
  float mx = o[0];
  for (index_t c = 1; c < cols; ++c) mx = std::max(mx, o[c]);
  double se = 0.0, ysum = 0.0, yz = 0.0;
  for (index_t c = 0; c < cols; ++c) {
    const float e = std::exp(o[c] - mx);
    if (d) d[c] = e;
    se += e;
    ysum += y[c];
    const float p = y[c] * o[c];
    yz += p;
  }
  if (d) {
    const float inv = static_cast<float>(1.0 / se), ys = static_cast<float>(ysum);
    for (index_t c = 0; c < cols; ++c) d[c] = ((d[c] * inv) * ys - y[c]) * iscale;
  }
  return ysum * (static_cast<double>(mx) + std::log(se)) - yz;
}

static void dropout_portable(index_t rows, index_t cols, const float* src, index_t lds, float* dst, float* mult,
                             std::uint64_t key, float p) {
  const float scale = 1.f / (1.f - p);
  for (index_t r = 0; r < rows; ++r) {
    const std::uint64_t base = key + static_cast<std::uint64_t>(r * cols + 1) * rng::kGolden;
    const float* s = src + r * lds;
    float* d = dst + r * cols;
    float* m = mult + r * cols;
    for (index_t c = 0; c < cols; ++c) {
      const std::uint64_t h = rng::mix64(base + static_cast<std::uint64_t>(c) * rng::kGolden);
      const float u = static_cast<float>(h >> 40) * 0x1p-24f;
      const float k = u >= p ? scale : 0.f;
      m[c] = k;
      d[c] = s[c] * k;
    }
  }
}

template <class F>
static double ns_per(index_t n, F&& f) {
  double best = 1e30;
  for (int rep = 0; rep < 31; ++rep) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    const double dt = std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - t0).count();
    best = std::min(best, dt);
  }
  return best / static_cast<double>(n);
}

int main() {
  set_num_threads(1);
  const index_t rows = 16, cols = 20108, n = rows * cols;  // 16 users x ML-20M's item count
  std::mt19937 g(0);
  std::normal_distribution<float> nd(0.f, 3.f);
  std::vector<float> z(n), y(n), d(n), w(n), gr(n), m(n), v(n), buf(n), mult(n);
  for (index_t i = 0; i < n; ++i) { z[i] = nd(g); y[i] = (i % 97) < 2 ? 1.f : 0.f; gr[i] = 0.01f * nd(g); }
  using Row = double (*)(const float*, const float*, float*, index_t, float);
  auto rows_of = [&](Row f) { return [&, f] { double s = 0; for (index_t r = 0; r < rows; ++r) s += f(&z[r * cols], &y[r * cols], &d[r * cols], cols, 0.1f); volatile double k = s; (void)k; }; };
  struct Level { const char* name; Target t; Row bce, mul; decltype(&avx2::dropout_forward) drop; Isa cap; };
  const Level levels[] = {
      {"portable", Target::scalar, &bce_row_portable, &multinomial_row_portable, &dropout_portable, Isa::scalar},
      {"avx2", Target::avx2, &avx2::bce_row, &avx2::multinomial_row, &avx2::dropout_forward, Isa::avx2},
      {"avx512", Target::avx512, &avx512::bce_row, &avx512::multinomial_row, &avx512::dropout_forward, Isa::avx512},
  };
  std::printf("ns per element, 1 thread, %ld x %ld (min of 31)\n%-9s %8s %8s %8s %8s %8s\n", long(rows), long(cols),
              "body", "bce", "multin.", "dropout", "adam", "sgd+mom");
  for (const Level& L : levels) {
    if (!target_enabled(L.t)) continue;
    const double b = ns_per(n, rows_of(L.bce)), mu = ns_per(n, rows_of(L.mul));
    const double dr = ns_per(n, [&] { L.drop(rows, cols, z.data(), cols, d.data(), mult.data(), 12345, 0.5f); });
    set_isa_cap(L.cap);  // adam / sgd: the public entry points at this level
    AdamCoeffs ac;
    SgdCoeffs sc;
    sc.momentum = 0.9f;
    const double ad = ns_per(n, [&] { adam_update(n, w.data(), gr.data(), m.data(), v.data(), ac); });
    const double sg = ns_per(n, [&] { sgd_update(n, w.data(), gr.data(), buf.data(), sc); });
    set_isa_cap(Isa::amx);
    std::printf("%-9s %8.3f %8.3f %8.3f %8.3f %8.3f\n", L.name, b, mu, dr, ad, sg);
  }
  return 0;
}

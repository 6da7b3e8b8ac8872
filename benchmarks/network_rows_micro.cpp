// Micro-benchmark of the network kernel table's elementwise bodies (aerec/nn_kernels.hpp), one
// thread: the scalar table against the AVX2 and AVX-512 ones.
// Prints the minimum over 31 runs of ns per element. Build against the kernel library:
//   g++ -O3 -fno-math-errno -std=c++17 -Icpp/include benchmarks/network_rows_micro.cpp \
//       build/dev/cpp/libaerec_kernels.a -fopenmp -o /tmp/network_rows_micro
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "aerec/cpu_features.hpp"
#include "aerec/nn_kernels.hpp"
#include "aerec/parallel.hpp"

using namespace aerec;
using namespace aerec::cpu;

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
  std::vector<std::int64_t> rid(rows);
  for (index_t r = 0; r < rows; ++r) rid[r] = r;
  struct Level { const char* name; Target t; const NnKernels& k; };
  const Level levels[] = {{"scalar", Target::scalar, scalar::kNnKernels},
                          {"avx2", Target::avx2, avx2::kNnKernels},
                          {"avx512", Target::avx512, avx512::kNnKernels}};
  std::printf("ns per element, 1 thread, %ld x %ld (min of 31)\n%-9s %8s %8s %8s %8s %8s\n", long(rows), long(cols),
              "body", "bce", "multin.", "dropout", "adam", "sgd+mom");
  for (const Level& L : levels) {
    if (!target_enabled(L.t)) continue;
    const NnKernels& k = L.k;
    const double b = ns_per(n, [&] {
      double s = 0;
      for (index_t r = 0; r < rows; ++r) s += k.bce_row(&z[r * cols], &y[r * cols], &d[r * cols], cols, 0.1f);
      volatile double keep = s;
      (void)keep;
    });
    const double mu = ns_per(n, [&] {
      double s = 0;
      for (index_t r = 0; r < rows; ++r) s += k.multinomial_row(&z[r * cols], &y[r * cols], &d[r * cols], cols, 0.1f);
      volatile double keep = s;
      (void)keep;
    });
    const double dr = ns_per(n, [&] { k.dropout(rows, cols, z.data(), cols, d.data(), mult.data(), 12345, 0.5f, rid.data()); });
    AdamCoeffs ac;
    SgdCoeffs sc;
    sc.momentum = 0.9f;
    const double ad = ns_per(n, [&] { k.adam(n, w.data(), gr.data(), m.data(), v.data(), ac, nullptr); });
    const double sg = ns_per(n, [&] { k.sgd(n, w.data(), gr.data(), buf.data(), sc, nullptr); });
    std::printf("%-9s %8.3f %8.3f %8.3f %8.3f %8.3f\n", L.name, b, mu, dr, ad, sg);
  }
  return 0;
}

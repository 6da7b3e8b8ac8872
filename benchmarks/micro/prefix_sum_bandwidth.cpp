// The skyline prefix kernel of pruned csr-input layers (issue 9, EASE pruned to 10%): one call of
// qlinear_kernels().prefix_sum over 76 bf16 rows (a held-out user's history) of ~13,400 columns,
// the rows drawn at random from a pool of 40 KB rows. The pool size moves the rows from L2
// (76 rows, 3 MB) through L3 to DRAM (20,000 rows, 804 MB); the L2-resident pool shows the
// kernel's compute ceiling, the large ones what software prefetch buys (the 76 interleaved row
// streams of the column-chunked loop defeat the hardware stream prefetcher). Dispatch level:
// the machine's best, or AEREC_ISA.
//   cmake --build build/dev   # libaerec_kernels.a
//   g++ -O2 -std=c++17 -fopenmp -I cpp/include benchmarks/micro/prefix_sum_bandwidth.cpp \
//       build/dev/cpp/libaerec_kernels.a -o /tmp/prefix_sum_bandwidth
//   flock /tmp/aerec-bench.lock /tmp/prefix_sum_bandwidth
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <random>
#include <vector>

#include "aerec/qlinear_kernels.hpp"

using namespace aerec::cpu;

int main() {
  const long n = 20108, cnt = 76;
  for (long pool : {76L, 1000L, 4000L, 20000L}) {
    std::vector<std::uint16_t> buf(static_cast<std::size_t>(pool * n), 0x3f80);  // bf16 1.0
    std::mt19937 rng(1);
    std::vector<const void*> rows(cnt);
    std::vector<long> len(cnt);
    std::vector<float> a(cnt, 1.f), out(n);
    const QlinearKernels& k = qlinear_kernels();
    const int R = 500;
    double elems = 0, secs = 0;
    for (int i = 0; i < R; ++i) {
      for (long r = 0; r < cnt; ++r) {
        rows[r] = buf.data() + (rng() % pool) * n;
        len[r] = (n * 2 / 3) - r * 100;  // descending, as the kernel wants
        elems += static_cast<double>(len[r]);
      }
      const auto t0 = std::chrono::steady_clock::now();
      k.prefix_sum(0, n, cnt, rows.data(), len.data(), a.data(), 1, out.data());
      secs += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    }
    std::printf("pool %5ld rows (%4.0f MB): %6.1f us a call, %5.2f GB/s, %5.2f G elements/s (check %.0f)\n", pool,
                pool * n * 2 / 1e6, secs / R * 1e6, elems * 2 / secs / 1e9, elems / secs / 1e9, out[5]);
  }
}

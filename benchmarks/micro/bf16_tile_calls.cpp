// The library's own bf16 top-k tiles called directly (issue 9): avx512 fp32 FMA tile (12 x 32),
// avx512bf16 vdpbf16ps tile (12 x 32) and the AMX tile (32 x 32), d = 600, cycling over N item
// panels (1: L1-resident; 8 / 64: streamed from L2), best of 5. Needs the built kernel library:
//   g++ -O2 -std=c++17 -Icpp/include -DAEREC_X86=1 benchmarks/micro/bf16_tile_calls.cpp \
//       build/dev/cpp/libaerec_kernels.a -fopenmp -o /tmp/bf16_tile_calls
//   flock /tmp/aerec-bench.lock /tmp/bf16_tile_calls 64
#include <chrono>
#include <cstdio>
#include <cstdint>
#include <vector>
#include <cstring>
#include "aerec/topk_kernels.hpp"
#include "aerec/cpu_features.hpp"
using namespace aerec;
static double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }
int main(int argc, char** argv) {
  const index_t d = 600, d2 = 300; const int mr = 12;
  const int npan = argc > 1 ? atoi(argv[1]) : 1;  // panels cycled (1: L1-resident)
  std::vector<float> qf(d * mr, 0.01f), ipf(npan * d * 32, 0.02f), bias(32, 0.f), thr(32, 1e30f), tile(32 * 32);
  std::vector<std::uint16_t> qb(d2 * mr * 2, 0x3c00), ipb(npan * d2 * 64, 0x3c00), qa(32 * 608, 0x3c00), ipa((npan * d2 + 16) * 64, 0x3c00);
  std::uint32_t mask[32];
  const int reps = 20000 / npan;
  double best[3] = {1e9, 1e9, 1e9};
  for (int trial = 0; trial < 5; ++trial) {
    double t0 = now();
    for (int r = 0; r < reps; ++r) for (int p = 0; p < npan; ++p)
      cpu::avx512::kTopkKernels.fp32_tile(qf.data(), ipf.data() + p * d * 32, bias.data(), d, thr.data(), tile.data(), mask);
    double t1 = now();
    for (int r = 0; r < reps; ++r) for (int p = 0; p < npan; ++p)
      cpu::avx512bf16::topk_bf16_tile(qb.data(), ipb.data() + p * d2 * 64, bias.data(), d2, thr.data(), tile.data(), mask, mr);
    double t2 = now();
    double t3 = t2;
    if (cpu::target_enabled(cpu::Target::amx)) {
      for (int r = 0; r < reps; ++r) for (int p = 0; p < npan; ++p)
        cpu::amx::topk_bf16_tile(qa.data(), ipa.data() + p * d2 * 64, bias.data(), d2, thr.data(), tile.data(), mask, 32);
      t3 = now();
    }
    double n = double(reps) * npan;
    best[0] = std::min(best[0], (t1 - t0) / n); best[1] = std::min(best[1], (t2 - t1) / n); best[2] = std::min(best[2], (t3 - t2) / n);
  }
  double fl12 = 2.0 * 12 * 32 * 600, fl32 = 2.0 * 32 * 32 * 600;
  std::printf("panels %d: fp32 tile %.0f ns (%.1f GFLOP/s)  bf16 vdpbf16ps tile %.0f ns (%.1f GFLOP/s, %.2fx)  amx tile %.0f ns (%.1f GFLOP/s, %.2fx)\n",
              npan, best[0] * 1e9, fl12 / best[0] / 1e9, best[1] * 1e9, fl12 / best[1] / 1e9, best[0] / best[1],
              best[2] * 1e9, fl32 / best[2] / 1e9, (fl32 / best[2]) / (fl12 / best[0]));
}

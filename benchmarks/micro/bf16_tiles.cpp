// Register-blocking probe of the bf16 top-k tile (issue 9): the fp32 FMA tile (12 x 32, as in
// topk_avx512.cpp) against vdpbf16ps tiles of several shapes (12 x 32 as in topk_avx512bf16.cpp,
// 8 x 48, 6 x 64, 4 x 64) and one with no query broadcasts, all L1-resident (d = 600), the
// variants interleaved 25 times and the best of each kept (the box is shared).
//   g++ -O2 -std=c++17 benchmarks/micro/bf16_tiles.cpp -o /tmp/bf16_tiles
//   flock /tmp/aerec-bench.lock /tmp/bf16_tiles
#include <immintrin.h>
#include <chrono>
#include <cstdio>
#include <cstdint>
#include <cstring>
#include <vector>
#include <functional>
#include <algorithm>
typedef long index_t;
static double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

// V: MR queries x NV*16 items
template <int MR, int NV>
__attribute__((target("avx512f,avx512bw,avx512bf16"), noinline))
void tile_bf16(const std::uint16_t* qp, const std::uint16_t* ip, index_t d2, float* tile) {
  __m512 c[MR][NV];
  for (int i = 0; i < MR; ++i) for (int v = 0; v < NV; ++v) c[i][v] = _mm512_setzero_ps();
  for (index_t p = 0; p < d2; ++p) {
    __m512bh x[NV];
    for (int v = 0; v < NV; ++v) x[v] = (__m512bh)_mm512_loadu_si512(ip + p * NV * 32 + v * 32);
    const std::uint16_t* q = qp + p * MR * 2;
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
      std::int32_t val; std::memcpy(&val, q + 2 * i, 4);
      const __m512bh qi = (__m512bh)_mm512_set1_epi32(val);
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) c[i][v] = _mm512_dpbf16_ps(c[i][v], qi, x[v]);
    }
  }
  for (int i = 0; i < MR; ++i) for (int v = 0; v < NV; ++v) _mm512_storeu_ps(tile + i * NV * 16 + v * 16, c[i][v]);
}
template <int MR, int NV>
__attribute__((target("avx512f,avx512bw,fma"), noinline))
void tile_fp32(const float* qp, const float* ip, index_t d, float* tile) {
  __m512 c[MR][NV];
  for (int i = 0; i < MR; ++i) for (int v = 0; v < NV; ++v) c[i][v] = _mm512_setzero_ps();
  for (index_t p = 0; p < d; ++p) {
    __m512 x[NV];
    for (int v = 0; v < NV; ++v) x[v] = _mm512_loadu_ps(ip + p * NV * 16 + v * 16);
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
      const __m512 qi = _mm512_set1_ps(qp[p * MR + i]);
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) c[i][v] = _mm512_fmadd_ps(qi, x[v], c[i][v]);
    }
  }
  for (int i = 0; i < MR; ++i) for (int v = 0; v < NV; ++v) _mm512_storeu_ps(tile + i * NV * 16 + v * 16, c[i][v]);
}

// no broadcasts: the query values stay in registers (wrong maths, instruction-mix probe)
template <int MR, int NV>
__attribute__((target("avx512f,avx512bw,avx512bf16"), noinline))
void tile_bf16_nobc(const std::uint16_t* qp, const std::uint16_t* ip, index_t d2, float* tile) {
  __m512 c[MR][NV];
  __m512bh qr[4];
  for (int i = 0; i < 4; ++i) qr[i] = (__m512bh)_mm512_set1_epi32(0x3c003c00 + i);
  for (int i = 0; i < MR; ++i) for (int v = 0; v < NV; ++v) c[i][v] = _mm512_setzero_ps();
  for (index_t p = 0; p < d2; ++p) {
    __m512bh x[NV];
    for (int v = 0; v < NV; ++v) x[v] = (__m512bh)_mm512_loadu_si512(ip + p * NV * 32 + v * 32);
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) c[i][v] = _mm512_dpbf16_ps(c[i][v], qr[i % 4], x[v]);
    }
  }
  for (int i = 0; i < MR; ++i) for (int v = 0; v < NV; ++v) _mm512_storeu_ps(tile + i * NV * 16 + v * 16, c[i][v]);
}
// fp32 FMA with the bf16 tile's shape: queries broadcast as 32-bit words from memory
template <class F> double best(F f) { double b = 1e30; for (int r = 0; r < 7; ++r) { double t0 = now(); f(); b = std::min(b, now() - t0); } return b; }
int main() {
  const index_t d = 600, d2 = 300; const int reps = 1000;
  std::vector<float> qf(d * 16, 0.01f), ipf(d * 64, 0.02f), tile(16 * 64);
  std::vector<std::uint16_t> qb(d2 * 32, 0x3c00), ipb(d2 * 128, 0x3c00);
  struct V { const char* name; double flops; std::function<void()> fn; double best; };
  std::vector<V> vs = {
    {"fp32 12x32 (FMA)", 2.0 * 12 * 32 * d, [&] { tile_fp32<12, 2>(qf.data(), ipf.data(), d, tile.data()); }, 1e30},
    {"fp32 6x64 (FMA)", 2.0 * 6 * 64 * d, [&] { tile_fp32<6, 4>(qf.data(), ipf.data(), d, tile.data()); }, 1e30},
    {"bf16 12x32 (vdpbf16ps)", 2.0 * 12 * 32 * d, [&] { tile_bf16<12, 2>(qb.data(), ipb.data(), d2, tile.data()); }, 1e30},
    {"bf16 8x48", 2.0 * 8 * 48 * d, [&] { tile_bf16<8, 3>(qb.data(), ipb.data(), d2, tile.data()); }, 1e30},
    {"bf16 6x64", 2.0 * 6 * 64 * d, [&] { tile_bf16<6, 4>(qb.data(), ipb.data(), d2, tile.data()); }, 1e30},
    {"bf16 4x64", 2.0 * 4 * 64 * d, [&] { tile_bf16<4, 4>(qb.data(), ipb.data(), d2, tile.data()); }, 1e30},
    {"bf16 12x32 no bcast", 2.0 * 12 * 32 * d, [&] { tile_bf16_nobc<12, 2>(qb.data(), ipb.data(), d2, tile.data()); }, 1e30},
  };
  for (int round = 0; round < 25; ++round)
    for (auto& v : vs) {
      double t0 = now();
      for (int r = 0; r < reps; ++r) v.fn();
      v.best = std::min(v.best, (now() - t0) / reps);
    }
  for (auto& v : vs)
    std::printf("%-24s %7.0f ns  %6.1f GFLOP/s  %.2fx fp32 12x32\n", v.name, v.best * 1e9, v.flops / v.best / 1e9,
                (v.flops / v.best) / (vs[0].flops / vs[0].best));
}

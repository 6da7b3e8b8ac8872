// Top-k search: the per-ISA tile kernels. Declarations only (no inline or template code): the ISA
// units in src/simd/ include this, and nothing they compile may be shared with portable code.
#pragma once
#include <cstdint>

#include "aerec/view.hpp"

namespace aerec::cpu {

// Per-ISA kernels (defined in src/simd/topk_<target>.cpp, each in its own namespace).
// Tiles are MR queries x 32 items; `tile` receives the scores (MR x 32, row-major) and
// mask[i] bit b is set when tile[i][b] >= thr[i].
//   fp32: qp = d x MR (query p of row i at qp[p*MR+i]); ip = d x 32; bias = 32.
//   bf16: qp = d2 x MR x 2; ip = d2 x 32 x 2 (bf16 bits).
//   int8: qp = d4 x MR x 4 (uint8 = q + 64, 7-bit queries q in [-63, 63], so every byte is in
//         [0, 127]: the AVX2 tile's vpmaddubsw relies on it); ip = d4 x 32 x 4 (int8);
//         corr = 64 x item row sum; score = (acc - corr) * iscale * qscale[i] + bias, acc the
//         exact int32 sum of the u8 x s8 products (bit-identical on every level).
struct TopkKernels {
  int mr;
  void (*fp32_tile)(const float* qp, const float* ip, const float* bias, index_t d,
                    const float* thr, float* tile, std::uint32_t* mask);
  void (*bf16_tile)(const std::uint16_t* qp, const std::uint16_t* ip, const float* bias,
                    index_t d2, const float* thr, float* tile, std::uint32_t* mask, int mr);
  void (*i8_tile)(const std::uint8_t* qp, const std::int8_t* ip, const std::int32_t* corr,
                  const float* iscale, const float* bias, const float* qscale, index_t d4,
                  const float* thr, float* tile, std::uint32_t* mask, int mr);
  float (*dot)(const float* q, const float* x, index_t d);
  // Leaves the kc largest of a[0..n) (unique keys) in a[0..kc); tmp holds 2n + 16 keys.
  // Null: the portable std::nth_element.
  void (*select)(std::uint64_t* a, index_t n, index_t kc, std::uint64_t* tmp);
  // Appends key(t[b], ids[b]) for every set bit b of mask to out, adds the count to *n (keys:
  // order-preserving score bits << 32 | ~id); may write 8 keys past the last one. Null: a
  // portable loop.
  void (*append)(const float* t, std::uint32_t mask, const std::int32_t* ids, std::uint64_t* out,
                 index_t* n);
  // AMX bf16 tile (amx::topk_bf16_tile; null below the amx level): amx::kTopkMr queries x 32
  // items, queries row-major bf16 (row length d2 rounded up to 16 pairs, x 2, zero-padded), items
  // the bf16 panel above followed by >= 15 readable finite pair rows. Same arguments as bf16_tile.
  void (*bf16_amx_tile)(const std::uint16_t* qa, const std::uint16_t* ip, const float* bias,
                        index_t d2, const float* thr, float* tile, std::uint32_t* mask, int mr);
  // AMX int8 tile (amx::topk_i8_tile; null below the amx level): amx::kTopkMr queries x 32 items,
  // query bytes row-major (row length d4 rounded up to 16 quads, x 4: q + 64 up to 4 d4, 0 after),
  // items the int8 panel above followed by >= 15 readable quad rows. Same arguments as i8_tile.
  void (*i8_amx_tile)(const std::uint8_t* qa, const std::int8_t* ip, const std::int32_t* corr,
                      const float* iscale, const float* bias, const float* qscale, index_t d4,
                      const float* thr, float* tile, std::uint32_t* mask, int mr);
  // out[i] = dot(q[i], x, d) for i < 4, bit for bit (the batched fp32 re-scoring: one item row,
  // four queries, four independent accumulator chains). Null: four calls of dot.
  void (*dot4)(const float* const* q, const float* x, index_t d, float* out);
};

// One constant-initialised table per level (data: selecting one runs none of its code). The
// avx2 and avx512 tables carry the portable bf16 / int8 tiles (which take the panel height as an
// argument); topk_kernels() replaces them with the avx2 tiles below where the CPU has AVX2, and
// with the VNNI / AVX512-BF16 ones where it has those.
namespace scalar {
constexpr int kTopkMr = 4;
extern const TopkKernels kTopkKernels;
// The portable compressed tiles, also referenced by the avx2 / avx512 tables.
void topk_bf16_tile(const std::uint16_t*, const std::uint16_t*, const float*, index_t,
                    const float*, float*, std::uint32_t*, int);
void topk_i8_tile(const std::uint8_t*, const std::int8_t*, const std::int32_t*, const float*,
                  const float*, const float*, index_t, const float*, float*, std::uint32_t*, int);
}  // namespace scalar
namespace avx2 {
constexpr int kTopkMr = 3;
extern const TopkKernels kTopkKernels;
// AVX2 + FMA compressed tiles for any panel height that is a multiple of kTopkMr (3 rows at a
// time): the avx2 level, and the avx512 level on CPUs without VNNI / AVX512-BF16.
void topk_bf16_tile(const std::uint16_t*, const std::uint16_t*, const float*, index_t,
                    const float*, float*, std::uint32_t*, int);
void topk_i8_tile(const std::uint8_t*, const std::int8_t*, const std::int32_t*, const float*,
                  const float*, const float*, index_t, const float*, float*, std::uint32_t*, int);
}  // namespace avx2
// AVX2 + AVX-VNNI int8 tile (src/simd/topk_avxvnni.cpp): any panel height that is a multiple of
// avx2::kTopkMr; the same bits as avx2::topk_i8_tile.
namespace avxvnni {
void topk_i8_tile(const std::uint8_t*, const std::int8_t*, const std::int32_t*, const float*,
                  const float*, const float*, index_t, const float*, float*, std::uint32_t*, int);
}  // namespace avxvnni
namespace avx512 {
constexpr int kTopkMr = 12;
extern const TopkKernels kTopkKernels;
}  // namespace avx512
// Panel height avx512::kTopkMr (they replace tiles of the avx512 table only).
namespace avx512vnni {
void topk_i8_tile(const std::uint8_t*, const std::int8_t*, const std::int32_t*, const float*,
                  const float*, const float*, index_t, const float*, float*, std::uint32_t*, int);
}  // namespace avx512vnni
namespace avx512bf16 {
void topk_bf16_tile(const std::uint16_t*, const std::uint16_t*, const float*, index_t,
                    const float*, float*, std::uint32_t*, int);
}  // namespace avx512bf16
// AMX tiles, bf16 (tdpbf16ps) and int8 (tdpbusd): 32 queries x 32 items (src/simd/topk_amx.cpp).
namespace amx {
constexpr int kTopkMr = 32;
void topk_bf16_tile(const std::uint16_t*, const std::uint16_t*, const float*, index_t,
                    const float*, float*, std::uint32_t*, int);
void topk_i8_tile(const std::uint8_t*, const std::int8_t*, const std::int32_t*, const float*,
                  const float*, const float*, index_t, const float*, float*, std::uint32_t*, int);
}  // namespace amx

// The kernels the active instruction-set level uses (re-read on each call, so set_isa_cap
// takes effect at once).
TopkKernels topk_kernels();

}  // namespace aerec::cpu

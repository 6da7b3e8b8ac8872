// Top-k / compressed-layer bf16 and int8 tiles on AMX (tdpbf16ps / tdpbusd; int8 at the end): 32 queries x 32 items per call, as a
// 2 x 2 block of 16 x 16 fp32 accumulator tiles (tmm0-3), the queries in two A tiles (tmm4-5:
// 16 rows x 32 bf16) and the items in two B tiles (tmm6-7: 16 pair rows x 16 items x 2 bf16),
// K advancing 32 bf16 (16 pairs) per step. Its own unit, compiled with the amx target's flags and
// reached only through dispatch() at the amx level, i.e. after the CPU's AMX-TILE / AMX-BF16 bits
// and the OS's XTILEDATA permission (request_amx, arch_prctl) were checked.
//
// Layouts (topk_kernels.hpp, TopkKernels::bf16_amx_tile):
//   qa: 32 rows x kq bf16 (row-major, kq = d2 rounded up to 16 pairs, x 2; zero beyond d);
//   ip: the index's packed panel, d2 pair rows of 32 items x 2 bf16 (the VNNI pair layout every
//       bf16 tile reads, so AMX needs no second copy of the weights). The last 16-pair step reads
//       up to 15 pair rows past the panel: the next panel's (finite) values, or the zeroed guard
//       the index keeps after its last panel, multiplied by the zero query padding (+0).
// Arithmetic: each output is an fp32 sum of exact bf16 x bf16 products in the order of the pairs
// (tdpbf16ps: round to nearest even per accumulation, input denormals read as zero, output
// denormals flushed, MXCSR ignored: as vdpbf16ps), then + bias, then the threshold compare.
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "aerec/topk_kernels.hpp"

namespace aerec::cpu::amx {
namespace {

struct alignas(64) TileConfig {
  std::uint8_t palette_id;
  std::uint8_t start_row;
  std::uint8_t reserved[14];
  std::uint16_t colsb[16];
  std::uint8_t rows[16];
};
static_assert(sizeof(TileConfig) == 64, "ldtilecfg reads 64 bytes");

constexpr int MR = kTopkMr;
static_assert(MR == 32, "the tile block is written for 2 x 16 query rows");

// Tiles 0-3 (the 2 x 2 accumulators, 16 rows x 64 bytes each, as tiles 4-7 for the operands)
// configured and zeroed. Loaded on every call: the tile configuration is per thread and any
// other AMX user in the process (another library) may have changed it; ldtilecfg costs ~60 cycles
// against the ~1,200 of a 600-deep block (benchmarks/micro/bf16_throughput.cpp).
inline void begin_tiles() {
  TileConfig cfg;
  std::memset(&cfg, 0, sizeof(cfg));
  cfg.palette_id = 1;
  for (int t = 0; t < 8; ++t) {
    cfg.colsb[t] = 64;
    cfg.rows[t] = 16;
  }
  _tile_loadconfig(&cfg);
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(2);
  _tile_zero(3);
}

// The four accumulators into the 32 x 32 tile buffer (fp32 sums, or int32 read back as such),
// then the tiles released.
inline void end_tiles(float* tile) {
  _tile_stored(0, tile, 128);
  _tile_stored(1, tile + 16, 128);
  _tile_stored(2, tile + 16 * 32, 128);
  _tile_stored(3, tile + 16 * 32 + 16, 128);
  _tile_release();
}

// One query row's 32 scores stored; its mask bits: score >= thr.
inline std::uint32_t store_row(float* row, __m512 v0, __m512 v1, float thr) {
  const __m512 t = _mm512_set1_ps(thr);
  const std::uint32_t m0 = _mm512_cmp_ps_mask(v0, t, _CMP_GE_OQ);
  const std::uint32_t m1 = _mm512_cmp_ps_mask(v1, t, _CMP_GE_OQ);
  _mm512_storeu_ps(row, v0);
  _mm512_storeu_ps(row + 16, v1);
  return m0 | (m1 << 16);
}

}  // namespace

void topk_bf16_tile(const std::uint16_t* qa, const std::uint16_t* ip, const float* bias,
                    index_t d2, const float* thr, float* tile, std::uint32_t* mask, int mr) {
  (void)mr;
  begin_tiles();
  const index_t ksteps = (d2 + 15) / 16;
  const index_t kq = ksteps * 32;           // bf16 per query row
  const long lda = static_cast<long>(kq) * 2;  // bytes
  const std::uint16_t* a0 = qa;
  const std::uint16_t* a1 = qa + 16 * kq;
  for (index_t s = 0; s < ksteps; ++s) {
    const std::uint16_t* b = ip + s * 16 * 64;
    _tile_loadd(4, a0 + s * 32, lda);
    _tile_loadd(6, b, 128);
    _tile_loadd(7, b + 32, 128);
    _tile_dpbf16ps(0, 4, 6);
    _tile_dpbf16ps(1, 4, 7);
    _tile_loadd(5, a1 + s * 32, lda);
    _tile_dpbf16ps(2, 5, 6);
    _tile_dpbf16ps(3, 5, 7);
  }
  end_tiles(tile);
  const __m512 b0 = _mm512_loadu_ps(bias), b1 = _mm512_loadu_ps(bias + 16);
  for (int i = 0; i < MR; ++i) {
    float* row = tile + i * 32;
    const __m512 c0 = _mm512_add_ps(_mm512_loadu_ps(row), b0);
    const __m512 c1 = _mm512_add_ps(_mm512_loadu_ps(row + 16), b1);
    mask[i] = store_row(row, c0, c1, thr[i]);
  }
}

// int8 (tdpbusd): u8 query bytes (q + 64, 7-bit queries) x s8 item bytes, 32 queries x 32 items
// as above, K advancing 64 bytes (16 quads) per step. qa: 32 rows x kq bytes (kq = d4 rounded up
// to 16 quads, x 4): q + 64 up to d, 64 up to 4 d4 (the items are zero there), 0 beyond (where
// the last step reads the next panel or the guard); ip: the index's quad layout (d4 rows of
// 32 items x 4 bytes). The int32 sums are exact, and the epilogue is the other tiles' operation
// for operation (float(acc - corr) * (iscale * qscale) + bias, unfused), so the scores are the
// VNNI / AVX2 / scalar tiles' bit for bit.
void topk_i8_tile(const std::uint8_t* qa, const std::int8_t* ip, const std::int32_t* corr,
                  const float* iscale, const float* bias, const float* qscale, index_t d4,
                  const float* thr, float* tile, std::uint32_t* mask, int mr) {
  (void)mr;
  begin_tiles();
  const index_t ksteps = (d4 + 15) / 16;
  const index_t kq = ksteps * 64;  // bytes per query row
  const std::uint8_t* a0 = qa;
  const std::uint8_t* a1 = qa + 16 * kq;
  for (index_t s = 0; s < ksteps; ++s) {
    const std::int8_t* b = ip + s * 16 * 128;
    _tile_loadd(4, a0 + s * 64, static_cast<long>(kq));
    _tile_loadd(6, b, 128);
    _tile_loadd(7, b + 64, 128);
    _tile_dpbusd(0, 4, 6);
    _tile_dpbusd(1, 4, 7);
    _tile_loadd(5, a1 + s * 64, static_cast<long>(kq));
    _tile_dpbusd(2, 5, 6);
    _tile_dpbusd(3, 5, 7);
  }
  // int32 sums into the tile buffer (read back below as integers)
  end_tiles(tile);
  const __m512i k0 = _mm512_loadu_si512(corr), k1 = _mm512_loadu_si512(corr + 16);
  const __m512 s0 = _mm512_loadu_ps(iscale), s1 = _mm512_loadu_ps(iscale + 16);
  const __m512 b0 = _mm512_loadu_ps(bias), b1 = _mm512_loadu_ps(bias + 16);
  for (int i = 0; i < MR; ++i) {
    float* row = tile + i * 32;
    const __m512i acc0 = _mm512_sub_epi32(_mm512_loadu_si512(row), k0);
    const __m512i acc1 = _mm512_sub_epi32(_mm512_loadu_si512(row + 16), k1);
    const __m512 qs = _mm512_set1_ps(qscale[i]);
    __m512 v0 = _mm512_mul_ps(_mm512_cvtepi32_ps(acc0), _mm512_mul_ps(s0, qs));
    __m512 v1 = _mm512_mul_ps(_mm512_cvtepi32_ps(acc1), _mm512_mul_ps(s1, qs));
    __asm__("" : "+v"(v0), "+v"(v1));  // no FMA contraction: the other tiles' rounding
    v0 = _mm512_add_ps(v0, b0);
    v1 = _mm512_add_ps(v1, b1);
    mask[i] = store_row(row, v0, v1, thr[i]);
  }
}

}  // namespace aerec::cpu::amx

// Compressed linear layers (qlinear.hpp): the per-ISA kernels of the sparse and gathered paths.
// Declarations only (no inline or template code): the ISA units in src/simd/qlinear_*.cpp include
// this, and nothing they compile may be shared with portable code. The dense int8 / bf16 / fp32
// products reuse the TopK tile kernels (topk_kernels.hpp: VNNI vpdpbusd, AVX2 vpmaddwd on
// sign-extended int16 pairs, AVX512-BF16 vdpbf16ps, FMA), so they have one implementation each.
#pragma once
#include <cstdint>

#include "aerec/view.hpp"

namespace aerec::cpu {

// Value type codes of stored weights (the precision codes of pack_layer's meta).
enum QValueType : int { kQF32 = 0, kQBF16 = 1, kQI8 = 2 };

// Lanes of the activation batch vector of the sparse kernel: activations are transposed to
// (n_in x kQLanes) blocks, and each stored weight is one broadcast multiply-add over them. Per
// stored weight the kernel loads its offset, broadcasts its value and loads kQLanes activations
// (2 x 64 B at AVX-512, 4 x 32 B at AVX2): 32 lanes amortise the offset and value loads over twice
// the FMAs of 16. Measured at the kernel level (Sapphire Rapids, 600 inputs, 80% sparse, see
// benchmarks/RESULTS.md "Sparse kernel, blocked for the load ports"): 16 lanes 65 GFLOP/s at
// AVX-512 (1.3 cycles per stored weight: offset + broadcast + 64-B load, 3 loads on 3 ports) and
// ~45 at AVX2; 32 lanes 74 and 64, although the 600 x 32 x 4 = 77 KB block spills L1 (48 KB) to L2.
constexpr int kQLanes = 32;

// Offsets of the sparse kernels: the stored input id i of each weight, pre-multiplied by
// kQOffsetScale (= kQLanes / 2), so the activation row of i starts kQOffsetScale * i * 2 floats into
// xt: byte offset 8 * offset, a single base + index * 8 address in the inner loop (no shift per
// stored weight). Repacked once from the file's CSC indices when a layer is constructed
// (qlinear.cpp): uint16 while n_in * kQOffsetScale <= 65536, else int32.
constexpr int kQOffsetScale = kQLanes / 2;

// Input slabs: a layer whose transposed activation block (n_in x kQLanes floats) exceeds this many
// bytes has its stored weights regrouped at construction by slabs of consecutive inputs (every
// column's weights of slab 0, then of slab 1, ...), and the kernels run slab by slab, the first
// slabs' partial sums kept in a column tile, so each pass reads a block that stays in L1 (48 KB on
// Sapphire Rapids; the 600-input decoder's 77 KB block is two slabs of 38 KB).
constexpr index_t kQSlabBytes = 40 * 1024;

struct QlinearKernels {
  // CSC sparse weights x a transposed activation block: for every column j in [j0, j1),
  //   out[(j - j0) * kQLanes + l] = sum_{t in [indptr[j], indptr[j+1])} w(t) * xt[idx(t) * kQLanes + l]
  // with w(t) the stored value (float, bf16 bits widened, int8 as an integer: no scale) and
  // idx(t) = offsets[t] / kQOffsetScale (offsets uint16 when off16, else int32). xt: n_in x kQLanes
  // floats, 64-byte aligned for speed (a row is then whole cache lines). nlanes: the lanes the
  // caller reads (its rows); at most kQLanes / 2 computes only the first kQLanes / 2 (half the
  // loads and FMAs: a call for 1-16 users), the others are left as they were. accumulate: add the
  // sums to out's contents instead of overwriting them (the second and later input slabs).
  void (*csc_block)(const std::int64_t* indptr, const void* offsets, int off16, const void* data,
                    int vtype, index_t j0, index_t j1, const float* xt, int nlanes, int accumulate,
                    float* out);
  // The same sums (plus init[(j - j0) * kQLanes + l] when init is not null: the earlier input
  // slabs' partial sums) with the output layer's epilogue and the top-k threshold filter fused, so
  // the scores never leave registers unless they can enter a top-k list: per column j,
  // (lanes as csc_block's nlanes; mask bits only for the computed lanes)
  //   s[l] = out_j[l] * scale[j] (if scale) + bias[j] (if bias),
  // and when s[l] > thr[l] for some lane (ordered compare: NaN never passes) the column is a
  // candidate: cand[c * kQLanes + l] = s[l] (all lanes), col[c] = j, mask[c] = bits of the passing
  // lanes, c counted from 0 in ascending j. Returns the number of candidates (<= j1 - j0).
  index_t (*csc_filter)(const std::int64_t* indptr, const void* offsets, int off16, const void* data,
                        int vtype, index_t j0, index_t j1, const float* xt, int nlanes,
                        const float* init, const float* scale, const float* bias, const float* thr,
                        float* cand, std::int32_t* col, std::uint32_t* mask);
  // acc[0:n] += a * w[0:n] (w of value type vtype; int8 as integers).
  void (*axpy)(index_t n, float a, const void* w, int vtype, float* acc);
  // acc[idx[t]] += a * w[t] for t < cnt.
  void (*scatter)(index_t cnt, float a, const void* indices, int idx16, const void* w, int vtype,
                  float* acc);
  // Columns [c0, c1) of the sum over r < cnt of a[r] * w_r (w_r = rows[r], the row's first
  // column, of value type vtype; zero past len[r]) into out[0, c1 - c0): the dense row prefixes of
  // a gathered sparse layer. The rows come by descending len (those with len <= c0 are skipped).
  // Column chunks outer, rows inner: the sums stay in registers and each row is read once.
  void (*prefix_sum)(index_t c0, index_t c1, index_t cnt, const void* const* rows, const index_t* len,
                     const float* a, int vtype, float* out);
  // The positions j < n, ascending, where s[j] >= thr and s[j] > -inf (NaN never passes) into pos
  // (room for n); returns their count.
  index_t (*ge_filter)(index_t n, const float* s, float thr, std::int32_t* pos);
};

// One constant-initialised table per level (data: selecting one runs none of its code).
namespace scalar { extern const QlinearKernels kQlinearKernels; }
namespace avx2 { extern const QlinearKernels kQlinearKernels; }
namespace avx512 { extern const QlinearKernels kQlinearKernels; }

// The table of the level in force (re-read per call: set_isa_cap acts at once).
const QlinearKernels& qlinear_kernels();

}  // namespace aerec::cpu

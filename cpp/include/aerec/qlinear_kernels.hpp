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
// (n_in x kQLanes) blocks, and each stored weight is one broadcast multiply-add over them. 16, so
// the block of a 600-input layer (38 KB) stays in L1: with 32 lanes (77 KB) every stored weight's
// 128-byte activation row came from L2 (~7 cycles per stored weight, from the 23-30 GFLOP per
// CPU-second measured in benchmarks/RESULTS.md).
constexpr int kQLanes = 16;

struct QlinearKernels {
  // CSC sparse weights x a transposed activation block: for every column j in [j0, j1),
  //   out[(j - j0) * kQLanes + l] = sum_{t in [indptr[j], indptr[j+1])} w(t) * xt[idx(t) * kQLanes + l]
  // with w(t) the stored value (float, bf16 bits widened, int8 as an integer: no scale), idx the
  // indices (uint16 when idx16, else int32). xt: n_in x kQLanes floats.
  void (*csc_block)(const std::int64_t* indptr, const void* indices, int idx16, const void* data,
                    int vtype, index_t j0, index_t j1, const float* xt, float* out);
  // acc[0:n] += a * w[0:n] (w of value type vtype; int8 as integers).
  void (*axpy)(index_t n, float a, const void* w, int vtype, float* acc);
  // acc[idx[t]] += a * w[t] for t < cnt.
  void (*scatter)(index_t cnt, float a, const void* indices, int idx16, const void* w, int vtype,
                  float* acc);
};

// One constant-initialised table per level (data: selecting one runs none of its code).
namespace scalar { extern const QlinearKernels kQlinearKernels; }
namespace avx2 { extern const QlinearKernels kQlinearKernels; }
namespace avx512 { extern const QlinearKernels kQlinearKernels; }

// The table of the level in force (re-read per call: set_isa_cap acts at once).
const QlinearKernels& qlinear_kernels();

}  // namespace aerec::cpu

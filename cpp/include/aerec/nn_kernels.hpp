// The network's per-ISA kernel table: one struct, filled by src/simd/nn_{scalar,avx2,avx512}.cpp
// (one namespace each), picked once per call through dispatch() (cpu_features.hpp) by nn_kernels().
// Declarations only (no inline or template code): the ISA units include this, and nothing they
// compile may be shared with portable code.
#pragma once
#include <cstdint>

#include "aerec/optim.hpp"
#include "aerec/view.hpp"

namespace aerec::cpu {

struct NnKernels {
  // Fused optimizer updates on n elements (optim.hpp states the arithmetic). No FMA: every ISA
  // gives the portable body's bits. g is read only; sgd's buf may be null when momentum == 0.
  // keep (pruning masks; null = every element): where keep[i] == 0 (values 0 / 1 only) the
  // element is skipped, w / m / v / buf left as they are (a block of pruned elements costs one
  // mask test, no arithmetic).
  void (*adam)(index_t n, float* w, const float* g, float* m, float* v, const AdamCoeffs& c,
               const std::uint8_t* keep);
  void (*sgd)(index_t n, float* w, const float* g, float* buf, const SgdCoeffs& c, const std::uint8_t* keep);
  // Inverted dropout of a rows x cols block (rng.hpp's stream, bit for bit): dst = src * mult,
  // mult in {0, 1/(1-p)}; row r is element row row_ids[r] of the stream (e = row_ids[r] * cols + c).
  // src has row stride lds, dst and mult cols.
  void (*dropout)(index_t rows, index_t cols, const float* src, index_t lds, float* dst, float* mult,
                  std::uint64_t key, float p, const std::int64_t* row_ids);
  // One row of BCE from logits: returns sum_c softplus(z_c) - y_c z_c; d_c = (sigmoid(z_c) - y_c)
  // * iscale when d. The AVX2 and AVX-512 rows agree bit for bit.
  double (*bce_row)(const float* z, const float* y, float* d, index_t cols, float iscale);
  // One row of the multinomial log-likelihood on a dense y: returns ysum * lse(o) - sum_c y_c o_c;
  // d_c = (softmax(o)_c * ysum - y_c) * iscale when d (d may alias o). Same bit-for-bit promise.
  double (*multinomial_row)(const float* o, const float* y, float* d, index_t cols, float iscale);
  // out[0:n] = (init ? init : 0) + sum_k val[k] * M[idx[k] * ldm + 0:n]   (val null: all ones)
  void (*gather_sum)(index_t n, index_t cnt, const std::int32_t* idx, const float* val,
                     const float* m, index_t ldm, const float* init, float* out);
  // y[0:n] += a * x[0:n]
  void (*axpy)(index_t n, float a, const float* x, float* y);
  // max of z[0:n]  (n >= 1)
  float (*row_max)(index_t n, const float* z);
  // z[i] = exp(z[i] - shift); returns sum_i z[i] (accumulated in float lanes, then double)
  double (*exp_shift_sum)(index_t n, float* z, float shift);
  // z[i] *= s; acc[i] += z[i]   (softmax scaling fused with the output-bias gradient)
  void (*scale_accumulate)(index_t n, float* z, float s, float* acc);
  // y = tanh(y) in place
  void (*tanh_inplace)(index_t n, float* y);
  // logistic row: returns sum_i softplus(z[i]) and sets z[i] = sigmoid(z[i]) * scale
  double (*logistic_row)(index_t n, float* z, float scale);
};

// The table for the level in force (cheap: call per batch, never cache across set_isa_cap).
const NnKernels& nn_kernels();

// One constant-initialised table per ISA unit (data: selecting one runs none of its code).
namespace scalar { extern const NnKernels kNnKernels; }
namespace avx2 { extern const NnKernels kNnKernels; }
namespace avx512 { extern const NnKernels kNnKernels; }

}  // namespace aerec::cpu

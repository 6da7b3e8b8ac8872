// The RecNetwork's per-ISA kernel table. Declarations only (no inline or template code): the ISA
// units in src/simd/ include this, and nothing they compile may be shared with portable code.
#pragma once
#include <cstdint>

#include "aerec/view.hpp"

namespace aerec::cpu {

// Bodies live in src/simd/recnet_{avx512,avx2,scalar}.cpp, one namespace each.
struct RecKernels {
  // out[0:n] = (init ? init : 0) + sum_k val[k] * M[idx[k] * ldm + 0:n]
  void (*gather_sum)(index_t n, index_t cnt, const std::int32_t* idx, const float* val,
                     const float* m, index_t ldm, const float* init, float* out);
  // y[0:n] += a * x[0:n]
  void (*axpy)(index_t n, float a, const float* x, float* y);
  // max of z[0:n]  (n >= 1)
  float (*row_max)(index_t n, const float* z);
  // z[i] = exp(z[i] - shift); returns sum_i z[i] (accumulated in float lanes, then double)
  double (*exp_shift_sum)(index_t n, float* z, float shift);
  // z[i] *= s
  void (*scale)(index_t n, float* z, float s);
  // z[i] *= s; acc[i] += z[i]   (softmax scaling fused with the output-bias gradient)
  void (*scale_accumulate)(index_t n, float* z, float s, float* acc);
  // Adam on a span: g may be null (zero gradient); g_eff = g + l2 * w.
  void (*adam)(index_t n, float* w, float* m, float* v, const float* g, float l2, float lr,
               float b1, float b2, float c1, float c2, float eps);
  // SGD with momentum on a span (g may be null): m = mom * m + g + l2 * w; w -= lr * m.
  void (*sgd)(index_t n, float* w, float* m, const float* g, float l2, float lr, float mom);
  // y = tanh(y) in place
  void (*tanh_inplace)(index_t n, float* y);
  // logistic loss row: returns sum_i softplus(z[i]) and sets z[i] = sigmoid(z[i]) * scale
  double (*logistic_row)(index_t n, float* z, float scale);
};

// The table for the level in force (cpu_features.hpp dispatch(); cheap, call per batch).
const RecKernels& rec_kernels();

// One constant-initialised table per ISA unit (data: selecting one runs none of its code).
namespace scalar { extern const RecKernels kRecKernels; }
namespace avx2 { extern const RecKernels kRecKernels; }
namespace avx512 { extern const RecKernels kRecKernels; }

}  // namespace aerec::cpu

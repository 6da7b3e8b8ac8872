// Vectorised elementwise math on float32 rows, dispatched per call to the active instruction set
// (AVX-512 / AVX2 / portable), for kernels outside the GEMM (fused softmax, losses, ...).
// Single-threaded: call them from inside your own parallel loops. y may alias x in all of them.
#pragma once
#include "aerec/activation.hpp"
#include "aerec/view.hpp"

namespace aerec::cpu {

// y[i] = exp(x[i]) for i < n. Relative error ~1e-7 (Cephes polynomial); x > 88.72 -> +inf,
// x < -86.9 -> 0 (the true value is below 2e-38), NaN -> NaN.
void vexp(index_t n, const float* x, float* y);

// y[i] = exp(x[i] - shift); returns the sum of the y[i] (float, lane-wise partial sums).
// The softmax building block: shift = max(x).
float vexp_shift_sum(index_t n, const float* x, float shift, float* y);

// y[i] = log(x[i]). log(0) = -inf, log(x < 0) = NaN, log(inf) = inf, NaN -> NaN.
void vlog(index_t n, const float* x, float* y);

// y[i] = act(x[i] + bias[i]) (bias of length n, may be null), as the GEMM epilogue computes it.
void vactivation(Activation act, index_t n, const float* x, float* y, const float* bias = nullptr);

}  // namespace aerec::cpu

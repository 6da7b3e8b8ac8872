// Single-precision GEMM with a fused epilogue. Our own packed, cache-blocked kernels (AVX-512,
// AVX2+FMA, scalar), chosen once at run time; no BLAS dependency; one OpenMP pool.
#pragma once
#include "aerec/activation.hpp"
#include "aerec/view.hpp"

namespace aerec::cpu {

struct Epilogue {
  const float* bias = nullptr;            // length N, added to every row of C; may be null
  Activation act = Activation::identity;  // applied after alpha*AB + beta*C + bias
};

// C (M x N, row stride ldc) = act(alpha * op(A) @ op(B) + beta * C + bias)
//   op(A) is M x K: A is stored M x K (lda >= K) when !trans_a, K x M (lda >= M) when trans_a.
//   op(B) is K x N: B is stored K x N (ldb >= N) when !trans_b, N x K (ldb >= K) when trans_b.
// beta == 0 means C is write-only (NaNs in C are ignored). K == 0 gives act(beta*C + bias).
// num_threads <= 0: the process default (aerec::cpu::get_num_threads()). Small problems run on
// one thread without packing so tiny training steps pay no threading or packing overhead
// (M*N*K <= 64^3: ~0.2-1.5 us); up to 2e6 multiply-adds, or when called from inside an OpenMP
// parallel region, one thread. Results are bitwise reproducible for a given shape, ISA level and
// thread count. Throws std::invalid_argument (-> ValueError) on negative sizes, null pointers or
// leading dimensions too small for the stored shapes. C must not overlap A, B or bias.
// Vectorised exp/log/activation row functions for other kernels: aerec/vmath.hpp.
void sgemm(bool trans_a, bool trans_b, index_t M, index_t N, index_t K, float alpha,
           const float* A, index_t lda, const float* B, index_t ldb, float beta, float* C,
           index_t ldc, const Epilogue& ep = {}, int num_threads = 0);

// In place: C = act(C + bias) on an M x N matrix (vectorised per ISA).
void bias_activation(index_t M, index_t N, float* C, index_t ldc, const Epilogue& ep,
                     int num_threads = 0);

}  // namespace aerec::cpu

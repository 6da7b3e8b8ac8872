// PLACEHOLDER reference GEMM (plain loops); replaced by the packed, dispatched kernels.
#include "aerec/gemm.hpp"

#include "aerec/error.hpp"

namespace aerec::cpu {

void bias_activation(index_t M, index_t N, float* C, index_t ldc, const Epilogue& ep, int) {
  for (index_t i = 0; i < M; ++i)
    for (index_t j = 0; j < N; ++j) {
      float v = C[i * ldc + j] + (ep.bias ? ep.bias[j] : 0.f);
      C[i * ldc + j] = activate(ep.act, v);
    }
}

void sgemm(bool ta, bool tb, index_t M, index_t N, index_t K, float alpha, const float* A,
           index_t lda, const float* B, index_t ldb, float beta, float* C, index_t ldc,
           const Epilogue& ep, int num_threads) {
  AEREC_CHECK_ARG(M >= 0 && N >= 0 && K >= 0, "sgemm: negative dimension");
  for (index_t i = 0; i < M; ++i)
    for (index_t j = 0; j < N; ++j) {
      float s = 0.f;
      for (index_t p = 0; p < K; ++p) {
        float a = ta ? A[p * lda + i] : A[i * lda + p];
        float b = tb ? B[j * ldb + p] : B[p * ldb + j];
        s += a * b;
      }
      float c = beta == 0.f ? 0.f : beta * C[i * ldc + j];
      C[i * ldc + j] = alpha * s + c;
    }
  bias_activation(M, N, C, ldc, ep, num_threads);
}

}  // namespace aerec::cpu

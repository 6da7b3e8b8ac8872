#include "aerec/vmath.hpp"

#include "gemm_internal.hpp"

namespace aerec::cpu {

using gemm_detail::active_kernels;

void vexp(index_t n, const float* x, float* y) {
  if (n > 0) active_kernels().vexp(n, x, y);
}

float vexp_shift_sum(index_t n, const float* x, float shift, float* y) {
  return n > 0 ? active_kernels().vexp_shift_sum(n, x, shift, y) : 0.f;
}

void vlog(index_t n, const float* x, float* y) {
  if (n > 0) active_kernels().vlog(n, x, y);
}

void vactivation(Activation act, index_t n, const float* x, float* y, const float* bias) {
  if (n > 0) active_kernels().act_rows(1, n, x, n, y, n, bias, act);
}

}  // namespace aerec::cpu

// Internal to the GEMM family: the per-ISA kernel table each src/simd/gemm_<isa>.cpp defines and
// the portable driver (gemm.cpp, vmath.cpp) calls through. Declarations only: no inline or template
// code here, so no ISA-compiled copy of a shared function can leak into the portable path (ODR).
// (activation.hpp's inline helpers are not used by the ISA units; check_isa_symbols.py verifies.)
#pragma once
#include "aerec/activation.hpp"
#include "aerec/view.hpp"

namespace aerec::cpu::gemm_detail {

// One macro-kernel call: C[mc x nc] (+)= alpha * Ap(mc x kc) @ Bp(kc x nc) over the micro tiles
// [ir0, ir1) x [jr0, jr1) (panel indices). Ap: ceil(mc/MR) panels, each kc x MR (k-major, zero
// padded). Bp: ceil(nc/NR) panels, each kc x NR. beta == 0: C is write-only.
struct MacroArgs {
  index_t mc, nc, kc;
  const float* Ap;
  const float* Bp;
  float* C;
  index_t ldc;
  float alpha, beta;
  const float* bias;  // already offset to column 0 of this C block; may be null
  Activation act;
  bool epilogue;      // last K block: apply bias + activation to each finished tile
  index_t ir0, ir1, jr0, jr1;
};

// One sgemm call, as passed around between the dispatcher and the parallel drivers.
struct Problem {
  bool ta, tb;
  index_t M, N, K;
  float alpha;
  const float* A;
  index_t lda;
  const float* B;
  index_t ldb;
  float beta;
  float* C;
  index_t ldc;
  const float* bias;
  Activation act;
};

// Unpacked small problem, one thread: the call itself, plus a scratch buffer of at least
// K * round_up(N, NR) floats used to repack op(B) when trans_b.
struct SmallArgs : Problem {
  float* scratch = nullptr;
};

struct IsaKernels {
  const char* name;
  int mr, nr;              // register tile
  index_t kc, mc, nc;      // cache blocking (upper bounds)
  // Pack op(A)[i0 : i0+mc, k0 : k0+kc] panels [p0, p1) into dst (panel p at dst + p*MR*kc).
  void (*pack_a)(bool trans, const float* A, index_t lda, index_t i0, index_t k0, index_t mc,
                 index_t kc, float* dst, index_t p0, index_t p1);
  // Pack op(B)[k0 : k0+kc, j0 : j0+nc] panels [q0, q1) into dst (panel q at dst + q*NR*kc).
  void (*pack_b)(bool trans, const float* B, index_t ldb, index_t k0, index_t j0, index_t kc,
                 index_t nc, float* dst, index_t q0, index_t q1);
  void (*macro)(const MacroArgs& g);
  void (*small)(const SmallArgs& s);
  // Y = act(X + bias) row by row (Y may alias X); bias length n or null.
  void (*act_rows)(index_t m, index_t n, const float* X, index_t ldx, float* Y, index_t ldy,
                   const float* bias, Activation act);
  void (*vexp)(index_t n, const float* x, float* y);
  float (*vexp_shift_sum)(index_t n, const float* x, float shift, float* y);
  void (*vlog)(index_t n, const float* x, float* y);
};

// Benchmark/tuning hook: override the cache blocking (KC, MC, NC) for all ISAs; 0 restores the
// per-ISA defaults. Not for production use (global, racy with concurrent calls by design).
void set_blocking_override(index_t kc, index_t mc, index_t nc);

// The table for the level in force now (re-read on every call; cheap; gemm.cpp dispatches).
const IsaKernels& active_kernels();

}  // namespace aerec::cpu::gemm_detail

// Defined by the per-ISA units, each in its own namespace: constant-initialised data, so picking
// a table runs none of its code.
namespace aerec::cpu::scalar { extern const gemm_detail::IsaKernels kGemmKernels; }
namespace aerec::cpu::avx2 { extern const gemm_detail::IsaKernels kGemmKernels; }
namespace aerec::cpu::avx512 { extern const gemm_detail::IsaKernels kGemmKernels; }

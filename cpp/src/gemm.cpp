// Portable GEMM driver: validation, ISA dispatch, cache blocking and the OpenMP split. The
// arithmetic lives in src/simd/gemm_<isa>.cpp (one translation unit per instruction set).
//
// Blocking follows the BLIS loop nest: jc (NC columns of B, L3) -> pc (KC, B block packed once,
// shared by all threads) -> ic (MC rows of A, packed, L2) -> jr (NR, B micro-panel in L1) -> ir
// (MR) -> register tile. Both packed blocks are shared; the micro tiles of each (ic, pc, jc)
// block are split among the threads along whichever of jr / ir balances better. Nothing inside
// the parallel region allocates or throws, so its barriers are always reached.
#include "aerec/gemm.hpp"

#include <cstdlib>
#include <new>
#include <string>

#include "aerec/cpu_features.hpp"
#include "aerec/error.hpp"
#include "aerec/parallel.hpp"
#include "gemm_internal.hpp"

namespace aerec::cpu {
namespace gemm_detail {

const IsaKernels& kernels_for(Isa isa) {
#ifdef AEREC_X86
  switch (isa) {
    case Isa::amx:
    case Isa::avx512: return avx512::gemm_kernels();
    case Isa::avx2: return avx2::gemm_kernels();
    case Isa::scalar: break;
  }
#else
  (void)isa;
#endif
  return scalar::gemm_kernels();
}

const IsaKernels& active_kernels() { return kernels_for(active_isa()); }

}  // namespace gemm_detail

namespace {

using gemm_detail::IsaKernels;
using gemm_detail::MacroArgs;
using gemm_detail::SmallArgs;

// Problems up to this many multiply-adds take the unpacked single-thread path: the autoencoder's
// per-step shapes (e.g. 32 x 64 x 10) must cost about a microsecond, with no fork/join or packing.
constexpr double kSmallMacs = 262144.0;   // 64^3
// Below this, one thread: an OpenMP fork/join costs a few microseconds.
constexpr double kParallelMacs = 2.0e6;

inline index_t ceil_div(index_t a, index_t b) { return (a + b - 1) / b; }
inline index_t round_up(index_t a, index_t b) { return ceil_div(a, b) * b; }
inline index_t min_i(index_t a, index_t b) { return a < b ? a : b; }

// Grow-only, 64-byte aligned, per calling thread: repeated calls reuse warm pages.
class Scratch {
 public:
  ~Scratch() { std::free(p_); }
  float* get(index_t n) {
    if (n > cap_) {
      std::free(p_);
      p_ = nullptr;
      cap_ = 0;
      std::size_t bytes = static_cast<std::size_t>(round_up(n, 16)) * sizeof(float);
      p_ = static_cast<float*>(std::aligned_alloc(64, bytes));
      if (p_ == nullptr) throw std::bad_alloc();
      cap_ = round_up(n, 16);
    }
    return p_;
  }

 private:
  float* p_ = nullptr;
  index_t cap_ = 0;
};

thread_local Scratch t_buf_a, t_buf_b, t_buf_small;

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

struct Plan {
  const IsaKernels* kr;
  index_t mcb, kcb, ncb;
  float* Ap;
  float* Bp;
};

inline void split_range(index_t n, int tid, int nth, index_t& b, index_t& e) {
  const index_t q = n / nth, r = n % nth;
  b = tid * q + (tid < r ? tid : r);
  e = b + q + (tid < r ? 1 : 0);
}

inline void team_barrier(int nth) {
#ifdef AEREC_OPENMP
  if (nth > 1) {
#pragma omp barrier
  }
#else
  (void)nth;
#endif
}

void packed_body(const Problem& P, const Plan& L, int tid, int nth) {
  const IsaKernels& kr = *L.kr;
  const index_t MR = kr.mr, NR = kr.nr;
  for (index_t jc = 0; jc < P.N; jc += L.ncb) {
    const index_t nc = min_i(L.ncb, P.N - jc);
    const index_t nq = ceil_div(nc, NR);
    for (index_t pc = 0; pc < P.K; pc += L.kcb) {
      const index_t kc = min_i(L.kcb, P.K - pc);
      index_t b, e;
      split_range(nq, tid, nth, b, e);
      kr.pack_b(P.tb, P.B, P.ldb, pc, jc, kc, nc, L.Bp, b, e);
      team_barrier(nth);
      for (index_t ic = 0; ic < P.M; ic += L.mcb) {
        const index_t mc = min_i(L.mcb, P.M - ic);
        const index_t np = ceil_div(mc, MR);
        split_range(np, tid, nth, b, e);
        kr.pack_a(P.ta, P.A, P.lda, ic, pc, mc, kc, L.Ap, b, e);
        team_barrier(nth);
        MacroArgs g;
        g.mc = mc;
        g.nc = nc;
        g.kc = kc;
        g.Ap = L.Ap;
        g.Bp = L.Bp;
        g.C = P.C + ic * P.ldc + jc;
        g.ldc = P.ldc;
        g.alpha = P.alpha;
        g.beta = pc == 0 ? P.beta : 1.f;
        g.bias = P.bias ? P.bias + jc : nullptr;
        g.act = P.act;
        g.epilogue = pc + kc == P.K;
        g.ir0 = 0;
        g.ir1 = np;
        g.jr0 = 0;
        g.jr1 = nq;
        if (nth > 1) {
          // Split the micro tiles along the dimension whose largest share is smaller.
          const index_t load_j = ceil_div(nq, nth) * np, load_i = ceil_div(np, nth) * nq;
          if (load_j <= load_i)
            split_range(nq, tid, nth, g.jr0, g.jr1);
          else
            split_range(np, tid, nth, g.ir0, g.ir1);
        }
        if (g.ir0 < g.ir1 && g.jr0 < g.jr1) kr.macro(g);
        team_barrier(nth);
      }
    }
  }
}

void packed_gemm(const Problem& P, const IsaKernels& kr, int nt) {
  Plan L;
  L.kr = &kr;
  const index_t nkb = ceil_div(P.K, kr.kc);
  L.kcb = ceil_div(P.K, nkb);
  const index_t nnb = ceil_div(P.N, kr.nc);
  L.ncb = round_up(ceil_div(P.N, nnb), kr.nr);
  const index_t nmb = ceil_div(P.M, kr.mc);
  L.mcb = round_up(ceil_div(P.M, nmb), kr.mr);
  L.Bp = t_buf_b.get(L.kcb * L.ncb);
  L.Ap = t_buf_a.get(L.mcb * L.kcb);
#ifdef AEREC_OPENMP
  if (nt > 1) {
#pragma omp parallel num_threads(nt)
    packed_body(P, L, omp_get_thread_num(), omp_get_num_threads());
    return;
  }
#endif
  packed_body(P, L, 0, 1);
}

void scale_c(index_t M, index_t N, float beta, float* C, index_t ldc) {
  for (index_t i = 0; i < M; ++i) {
    float* c = C + i * ldc;
    if (beta == 0.f) {
      for (index_t j = 0; j < N; ++j) c[j] = 0.f;
    } else if (beta != 1.f) {
      for (index_t j = 0; j < N; ++j) c[j] *= beta;
    }
  }
}

std::string dims(index_t a, index_t b) {
  return std::to_string(a) + " x " + std::to_string(b);
}

}  // namespace

void bias_activation(index_t M, index_t N, float* C, index_t ldc, const Epilogue& ep,
                     int num_threads) {
  AEREC_CHECK_ARG(M >= 0 && N >= 0, "bias_activation: negative dimension");
  if (M == 0 || N == 0) return;
  AEREC_CHECK_ARG(C != nullptr && ldc >= N, "bias_activation: C is null or ldc < N");
  if (ep.bias == nullptr && ep.act == Activation::identity) return;
  const IsaKernels& kr = gemm_detail::active_kernels();
  int nt = resolve_threads(num_threads);
  if (static_cast<double>(M) * static_cast<double>(N) < 65536.0 || M < 2) nt = 1;
#ifdef AEREC_OPENMP
  if (nt > 1) {
#pragma omp parallel num_threads(nt)
    {
      index_t b, e;
      split_range(M, omp_get_thread_num(), omp_get_num_threads(), b, e);
      if (b < e) kr.act_rows(e - b, N, C + b * ldc, ldc, C + b * ldc, ldc, ep.bias, ep.act);
    }
    return;
  }
#endif
  kr.act_rows(M, N, C, ldc, C, ldc, ep.bias, ep.act);
}

void sgemm(bool trans_a, bool trans_b, index_t M, index_t N, index_t K, float alpha,
           const float* A, index_t lda, const float* B, index_t ldb, float beta, float* C,
           index_t ldc, const Epilogue& ep, int num_threads) {
  AEREC_CHECK_ARG(M >= 0 && N >= 0 && K >= 0, "sgemm: negative dimension (M=" +
                  std::to_string(M) + ", N=" + std::to_string(N) + ", K=" + std::to_string(K) + ")");
  if (M == 0 || N == 0) return;
  AEREC_CHECK_ARG(C != nullptr, "sgemm: C is null");
  AEREC_CHECK_ARG(ldc >= N, "sgemm: ldc=" + std::to_string(ldc) + " < N=" + std::to_string(N));
  if (K > 0) {
    AEREC_CHECK_ARG(A != nullptr && B != nullptr, "sgemm: A or B is null");
    const index_t a_cols = trans_a ? M : K, b_cols = trans_b ? K : N;
    AEREC_CHECK_ARG(lda >= a_cols, "sgemm: lda=" + std::to_string(lda) + " too small for A stored " +
                    (trans_a ? dims(K, M) : dims(M, K)));
    AEREC_CHECK_ARG(ldb >= b_cols, "sgemm: ldb=" + std::to_string(ldb) + " too small for B stored " +
                    (trans_b ? dims(N, K) : dims(K, N)));
  }
  if (K == 0 || alpha == 0.f) {
    scale_c(M, N, beta, C, ldc);
    bias_activation(M, N, C, ldc, ep, num_threads);
    return;
  }
  const IsaKernels& kr = gemm_detail::active_kernels();
  const double macs = static_cast<double>(M) * static_cast<double>(N) * static_cast<double>(K);
  if (macs <= kSmallMacs) {
    SmallArgs s;
    s.ta = trans_a;
    s.tb = trans_b;
    s.M = M;
    s.N = N;
    s.K = K;
    s.alpha = alpha;
    s.A = A;
    s.lda = lda;
    s.B = B;
    s.ldb = ldb;
    s.beta = beta;
    s.C = C;
    s.ldc = ldc;
    s.bias = ep.bias;
    s.act = ep.act;
    s.scratch = trans_b ? t_buf_small.get(K * N) : nullptr;
    kr.small(s);
    return;
  }
  int nt = resolve_threads(num_threads);
  if (macs < kParallelMacs) nt = 1;
  Problem P{trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, ep.bias, ep.act};
  packed_gemm(P, kr, nt);
}

}  // namespace aerec::cpu

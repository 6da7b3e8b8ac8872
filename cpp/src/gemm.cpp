// Portable GEMM driver: validation, ISA dispatch, cache blocking and the OpenMP split. The
// arithmetic lives in src/simd/gemm_<isa>.cpp (one translation unit per instruction set).
//
// Blocking follows the BLIS loop nest: jc (NC columns of B, L3) -> pc (KC, B block packed) -> ic
// (MC rows of A, packed, L2) -> jr (NR, B micro-panel in L1) -> ir (MR) -> register tile.
// Threading: see parallel_gemm.
#include "aerec/gemm.hpp"

#include <atomic>
#include <cstdlib>
#include <new>
#include <string>
#include <vector>

#include "aerec/cpu_features.hpp"
#include "aerec/error.hpp"
#include "aerec/parallel.hpp"
#include "gemm_internal.hpp"

namespace aerec::cpu {
namespace gemm_detail {

// Re-read on every call (a relaxed atomic load), so set_isa_cap acts at once; the tables are
// constant data in the ISA units, so choosing one runs none of their code.
const IsaKernels& active_kernels() {
  return *dispatch(&scalar::kGemmKernels, AEREC_X86_VARIANTS({Target::avx2, &avx2::kGemmKernels},
                                                             {Target::avx512, &avx512::kGemmKernels}));
}

}  // namespace gemm_detail

namespace {

using gemm_detail::IsaKernels;
using gemm_detail::MacroArgs;
using gemm_detail::Problem;
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

inline void split_range(index_t n, int tid, int nth, index_t& b, index_t& e) {
  const index_t q = n / nth, r = n % nth;
  b = tid * q + (tid < r ? tid : r);
  e = b + q + (tid < r ? 1 : 0);
}

std::atomic<index_t> g_kc{0}, g_mc{0}, g_nc{0};  // tuning overrides (0: the ISA's defaults)

inline index_t pick(const std::atomic<index_t>& o, index_t dflt) {
  const index_t v = o.load(std::memory_order_relaxed);
  return v > 0 ? v : dflt;
}

// One thread runs the whole BLIS loop nest on a (sub)problem with its own packing buffers.
void packed_serial(const Problem& P, const IsaKernels& kr) {
  const index_t MR = kr.mr, NR = kr.nr;
  const index_t KC = pick(g_kc, kr.kc), MC = round_up(pick(g_mc, kr.mc), MR), NC = pick(g_nc, kr.nc);
  const index_t nkb = ceil_div(P.K, KC);
  const index_t kcb = ceil_div(P.K, nkb);
  const index_t nnb = ceil_div(P.N, NC);
  const index_t ncb = round_up(ceil_div(P.N, nnb), NR);
  const index_t nmb = ceil_div(P.M, MC);
  const index_t mcb = round_up(ceil_div(P.M, nmb), MR);
  float* Bp = t_buf_b.get(kcb * ncb);
  float* Ap = t_buf_a.get(mcb * kcb);
  for (index_t jc = 0; jc < P.N; jc += ncb) {
    const index_t nc = min_i(ncb, P.N - jc);
    const index_t nq = ceil_div(nc, NR);
    for (index_t pc = 0; pc < P.K; pc += kcb) {
      const index_t kc = min_i(kcb, P.K - pc);
      kr.pack_b(P.tb, P.B, P.ldb, pc, jc, kc, nc, Bp, 0, nq);
      for (index_t ic = 0; ic < P.M; ic += mcb) {
        const index_t mc = min_i(mcb, P.M - ic);
        const index_t np = ceil_div(mc, MR);
        kr.pack_a(P.ta, P.A, P.lda, ic, pc, mc, kc, Ap, 0, np);
        MacroArgs g;
        g.mc = mc;
        g.nc = nc;
        g.kc = kc;
        g.Ap = Ap;
        g.Bp = Bp;
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
        kr.macro(g);
      }
    }
  }
}

// Sub-problems: columns [j0, j1), rows [i0, i1), or the K range [k0, k1) (partial sums).
[[maybe_unused]] Problem cols_of(const Problem& P, index_t j0, index_t j1) {
  Problem S = P;
  S.N = j1 - j0;
  S.B = P.tb ? P.B + j0 * P.ldb : P.B + j0;
  S.C = P.C + j0;
  if (P.bias) S.bias = P.bias + j0;
  return S;
}
[[maybe_unused]] Problem rows_of(const Problem& P, index_t i0, index_t i1) {
  Problem S = P;
  S.M = i1 - i0;
  S.A = P.ta ? P.A + i0 : P.A + i0 * P.lda;
  S.C = P.C + i0 * P.ldc;
  return S;
}
[[maybe_unused]] Problem depth_of(const Problem& P, index_t k0, index_t k1) {
  Problem S = P;
  S.K = k1 - k0;
  S.A = P.ta ? P.A + k0 * P.lda : P.A + k0;
  S.B = P.tb ? P.B + k0 : P.B + k0 * P.ldb;
  return S;
}

thread_local Scratch t_buf_parts;

// Threads share nothing while they multiply: C is cut into independent slabs of whole NR / MR
// panels (along N or M, whichever balances better), each slab runs the serial loop nest with the
// running thread's own packing buffers, and slabs are handed out dynamically. The cost is packing
// the other operand once per slab. There are no barriers inside, so a thread the OS deschedules
// (this machine is shared) delays only its own slab instead of stalling a team at every K block
// (a team member that has not woken up still holds the region's final join, though). When K
// dominates (K >= 4 max(M, N)) the K range is cut instead: per-chunk partial sums, then one
// reduction pass that also applies bias and the activation.
void parallel_gemm(const Problem& P, const IsaKernels& kr, int nt) {
#ifdef AEREC_OPENMP
  ExceptionSlot slot;
  const index_t big = P.M > P.N ? P.M : P.N;
  const double mn = static_cast<double>(P.M) * static_cast<double>(P.N);
  index_t nchunks = 4 * static_cast<index_t>(nt);
  if (P.K >= 4 * big && mn * static_cast<double>(nchunks - 1) <= 4.0 * 1024 * 1024) {
    // Chunk c's partial sum goes to its own buffer (chunk 0 straight into C with the caller's
    // beta) and the buffers are added in chunk order, so the result does not depend on which
    // thread ran which chunk (deterministic for a given thread count).
    const index_t chunk = round_up(ceil_div(P.K, nchunks), kr.kc);
    nchunks = ceil_div(P.K, chunk);
    const index_t mnsz = P.M * P.N;
    float* parts = t_buf_parts.get(mnsz * (nchunks - 1));
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1)
    for (index_t c = 0; c < nchunks; ++c) {
      slot.run([&] {
        Problem S = depth_of(P, c * chunk, min_i(P.K, (c + 1) * chunk));
        if (c > 0) {
          S.C = parts + (c - 1) * mnsz;
          S.ldc = P.N;
          S.beta = 0.f;
        }
        S.bias = nullptr;
        S.act = Activation::identity;
        packed_serial(S, kr);
      });
    }
    slot.rethrow();
#pragma omp parallel for num_threads(nt) schedule(static)
    for (index_t i = 0; i < P.M; ++i) {
      float* c = P.C + i * P.ldc;
      for (index_t q = 0; q + 1 < nchunks; ++q) {
        const float* part = parts + q * mnsz + i * P.N;
        for (index_t j = 0; j < P.N; ++j) c[j] += part[j];
      }
      kr.act_rows(1, P.N, c, P.ldc, c, P.ldc, P.bias, P.act);
    }
    return;
  }
  // Slabs of >= 2048 columns / 1024 rows keep the repacking of the other operand small; up to 4
  // per thread for dynamic balance. Cut along whichever dimension balances better (a slab is a
  // whole number of NR / MR panels), preferring the larger one (the smaller operand is the one
  // repacked per slab) unless the other is clearly better balanced.
  struct Cut {
    index_t slabs, width;
    double score;
  };
  auto plan_cut = [&](bool cols) {
    const index_t len = cols ? P.N : P.M, unit = cols ? kr.nr : kr.mr;
    index_t n = len / (cols ? 2048 : 1024);
    if (n < nt) n = nt;
    if (n > 4 * static_cast<index_t>(nt)) n = 4 * static_cast<index_t>(nt);
    const index_t width = round_up(ceil_div(len, n), unit);
    n = ceil_div(len, width);
    const double makespan = static_cast<double>(ceil_div(n, nt) * width);
    double score = static_cast<double>(len) / (static_cast<double>(nt) * makespan);
    if (cols == (P.N >= P.M)) score += 0.02;
    return Cut{n, width, score};
  };
  const Cut by_c = plan_cut(true), by_r = plan_cut(false);
  const bool by_cols = by_c.score >= by_r.score;
  const index_t len = by_cols ? P.N : P.M;
  const index_t slabs = by_cols ? by_c.slabs : by_r.slabs;
  const index_t width = by_cols ? by_c.width : by_r.width;
  const int team = static_cast<int>(slabs < nt ? slabs : nt);
#pragma omp parallel for num_threads(team) schedule(dynamic, 1)
  for (index_t s = 0; s < slabs; ++s) {
    slot.run([&] {
      const index_t b = s * width, e = min_i(len, b + width);
      packed_serial(by_cols ? cols_of(P, b, e) : rows_of(P, b, e), kr);
    });
  }
  slot.rethrow();
#else
  (void)nt;
  packed_serial(P, kr);
#endif
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

namespace gemm_detail {
void set_blocking_override(index_t kc, index_t mc, index_t nc) {
  g_kc.store(kc > 0 ? kc : 0);
  g_mc.store(mc > 0 ? mc : 0);
  g_nc.store(nc > 0 ? nc : 0);
}
}  // namespace gemm_detail

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
  if (omp_in_parallel()) nt = 1;
  if (nt > 1) {
#pragma omp parallel num_threads(nt)
    {
      index_t b, e;
      split_range(M, omp_get_thread_num(), omp_get_num_threads(), b, e);
      if (b < e) kr.act_rows(e - b, N, C + b * ldc, ldc, C + b * ldc, ldc, ep.bias, ep.act);
    }
    return;
  }
#else
  (void)nt;
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
    static_cast<Problem&>(s) = Problem{trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc,
                                      ep.bias, ep.act};
    s.scratch = trans_b ? t_buf_small.get(K * N) : nullptr;
    kr.small(s);
    return;
  }
  int nt = resolve_threads(num_threads);
  if (macs < kParallelMacs) nt = 1;
#ifdef AEREC_OPENMP
  if (omp_in_parallel()) nt = 1;  // called from a caller's parallel loop: stay on this thread
#endif
  Problem P{trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, ep.bias, ep.act};
  if (nt > 1)
    parallel_gemm(P, kr, nt);
  else
    packed_serial(P, kr);
}

}  // namespace aerec::cpu

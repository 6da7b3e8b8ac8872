// Plain C++ test of run-time dispatch (no Python): for every level the CPU has, dispatch() picks
// exactly the tables of the enabled targets and never one above them, set_isa_cap / AEREC_ISA cap
// it, and every kernel family gives the scalar answer at every level. Small and quick, so CI also
// runs it under qemu-x86_64 -cpu Haswell / Nehalem (set AEREC_EXPECT_ISA=avx2 / scalar there: the
// test then also checks that the emulated CPU is what the dispatcher sees).
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "../src/gemm_internal.hpp"
#include "aerec/cpu_features.hpp"
#include "aerec/gemm.hpp"
#include "aerec/optim.hpp"
#include "aerec/nn_kernels.hpp"
#include "aerec/sparse.hpp"
#include "aerec/topk.hpp"
#include "aerec/vmath.hpp"

#include "check.hpp"

using namespace aerec;
using namespace aerec::cpu;

namespace {
bool bit(unsigned mask, Target t) { return (mask >> static_cast<int>(t)) & 1u; }

// The hardware side of each target, restated from the compile flags (cpu_features.hpp).
bool hardware_has(Target t) {
  const CpuFeatures& f = cpu_features();
  const bool avx2 = f.avx2 && f.fma && f.f16c;
  const bool avx512 = avx2 && f.avx512f && f.avx512bw && f.avx512vl && f.avx512dq && f.avx512cd;
  switch (t) {
    case Target::scalar: return true;
    case Target::avx2: return avx2;
    case Target::avx512: return avx512;
    case Target::avxvnni: return avx2 && f.avx_vnni;
    case Target::avx512vnni: return avx512 && f.avx512_vnni;
    case Target::avx512bf16: return avx512 && f.avx512_bf16;
    case Target::amx: return avx512 && f.avx512_vnni && f.avx512_bf16 && f.amx_tile && f.amx_bf16 && f.amx_int8;
  }
  return false;
}

const Target kTargets[] = {Target::scalar, Target::avx2, Target::avxvnni, Target::avx512,
                           Target::avx512vnni, Target::avx512bf16, Target::amx};

void test_helper_semantics() {
  // The last enabled variant wins; null and disabled variants are skipped.
  set_isa_cap(Isa::scalar);
  int a = 1, b = 2, c = 3;
  CHECK(dispatch(&a, {{Target::avx2, &b}, {Target::avx512, &c}}) == &a, "scalar cap must give base");
  set_isa_cap(Isa::amx);
  const Isa top = active_isa();
  const int* want = top >= Isa::avx512 ? &c : top >= Isa::avx2 ? &b : &a;
  CHECK(dispatch(&a, {{Target::avx2, &b}, {Target::avx512, &c}}) == want, "wrong variant at %s",
        isa_name(top));
  int* none = nullptr;
  CHECK(dispatch(&a, {{Target::scalar, none}}) == &a, "a null variant must be skipped");
}

void test_level(Isa cap) {
  const Isa lvl = set_isa_cap(cap);
  CHECK(lvl <= cap && lvl <= detected_isa(), "level %s above cap %s or hardware %s", isa_name(lvl),
        isa_name(cap), isa_name(detected_isa()));
  const unsigned on = enabled_targets();
  for (Target t : kTargets)
    if (bit(on, t)) CHECK(hardware_has(t), "target %d enabled without the hardware", static_cast<int>(t));
  CHECK(bit(on, Target::scalar), "scalar must always be enabled");
  CHECK(bit(on, Target::avx2) == (lvl >= Isa::avx2), "avx2 bit at level %s", isa_name(lvl));
  CHECK(bit(on, Target::avx512) == (lvl >= Isa::avx512), "avx512 bit at level %s", isa_name(lvl));
  CHECK(bit(on, Target::amx) == (lvl >= Isa::amx), "amx bit at level %s", isa_name(lvl));
  if (lvl < Isa::avx512)
    CHECK(!bit(on, Target::avx512vnni) && !bit(on, Target::avx512bf16), "vnni/bf16 below avx512");
  if (lvl < Isa::avx2) CHECK(!bit(on, Target::avxvnni), "avx-vnni below avx2");
  {
    // AVX-VNNI from the avx2 level up wherever the CPU has it, unless AEREC_AVX_VNNI=0.
    const char* env = std::getenv("AEREC_AVX_VNNI");
    const bool off = env != nullptr && std::string(env) == "0";
    CHECK(bit(on, Target::avxvnni) == (lvl >= Isa::avx2 && cpu_features().avx_vnni && !off),
          "avx-vnni bit at level %s", isa_name(lvl));
  }

#ifdef AEREC_X86
  const auto* want_nn = lvl >= Isa::avx512 ? &avx512::kNnKernels
                         : lvl >= Isa::avx2 ? &avx2::kNnKernels : &scalar::kNnKernels;
  const auto* want_gemm = lvl >= Isa::avx512 ? &avx512::kGemmKernels
                          : lvl >= Isa::avx2 ? &avx2::kGemmKernels : &scalar::kGemmKernels;
  const int want_mr = lvl >= Isa::avx512 ? avx512::kTopkMr : lvl >= Isa::avx2 ? avx2::kTopkMr : scalar::kTopkMr;
#else
  const auto* want_nn = &scalar::kNnKernels;
  const auto* want_gemm = &scalar::kGemmKernels;
  const int want_mr = scalar::kTopkMr;
#endif
  CHECK(&nn_kernels() == want_nn, "nn_kernels() table at level %s", isa_name(lvl));
  CHECK(&gemm_detail::active_kernels() == want_gemm, "gemm table at level %s (got %s)", isa_name(lvl),
        gemm_detail::active_kernels().name);
  const TopkKernels tk = topk_kernels();
  CHECK(tk.mr == want_mr, "topk panel height %d at level %s", tk.mr, isa_name(lvl));
#ifdef AEREC_X86
  CHECK((tk.i8_tile == &avx512vnni::topk_i8_tile) == bit(on, Target::avx512vnni), "int8 tile at %s",
        isa_name(lvl));
  CHECK((tk.bf16_tile == &avx512bf16::topk_bf16_tile) == bit(on, Target::avx512bf16), "bf16 tile at %s",
        isa_name(lvl));
  // AVX2 compressed tiles from the avx2 level up (also under an avx512 table without VNNI / BF16);
  // the AVX-VNNI int8 tile in place of the avx2 one where the CPU has it.
  CHECK((tk.i8_tile == &avxvnni::topk_i8_tile) ==
            (bit(on, Target::avxvnni) && !bit(on, Target::avx512vnni)),
        "int8 avx-vnni tile at %s", isa_name(lvl));
  CHECK((tk.i8_tile == &avx2::topk_i8_tile) ==
            (bit(on, Target::avx2) && !bit(on, Target::avxvnni) && !bit(on, Target::avx512vnni)),
        "int8 avx2 tile at %s", isa_name(lvl));
  CHECK((tk.bf16_tile == &avx2::topk_bf16_tile) == (bit(on, Target::avx2) && !bit(on, Target::avx512bf16)),
        "bf16 avx2 tile at %s", isa_name(lvl));
  CHECK((tk.i8_tile == &scalar::topk_i8_tile) == !bit(on, Target::avx2), "int8 portable tile at %s",
        isa_name(lvl));
#endif
}

// One small call of every kernel family, to compare across levels.
struct Outputs {
  std::vector<float> gemm, spmm, vexp, adam;
  std::vector<std::int32_t> ids[3];
  std::vector<float> scores[3];
};

Outputs run_all() {
  Outputs o;
  const index_t M = 37, N = 29, K = 41;  // odd sizes: every edge path
  std::vector<float> A(M * K), B(K * N), bias(N);
  for (index_t i = 0; i < M * K; ++i) A[i] = static_cast<float>((i * 7) % 11) - 5.f;
  for (index_t i = 0; i < K * N; ++i) B[i] = static_cast<float>((i * 5) % 13) - 6.f;
  for (index_t j = 0; j < N; ++j) bias[j] = static_cast<float>(j % 3);
  o.gemm.assign(M * N, 0.f);
  sgemm(false, false, M, N, K, 1.f, A.data(), K, B.data(), N, 0.f, o.gemm.data(), N,
        Epilogue{bias.data(), Activation::relu}, 1);
  // CSR rows over B's rows: integer data, so every level gives exact sums.
  std::vector<std::int64_t> indptr{0};
  std::vector<std::int32_t> idx;
  std::vector<float> val;
  for (index_t r = 0; r < 9; ++r) {
    for (index_t j = r % 3; j < K; j += 3 + r % 4) {
      idx.push_back(static_cast<std::int32_t>(j));
      val.push_back(static_cast<float>(1 + (j + r) % 3));
    }
    indptr.push_back(static_cast<std::int64_t>(idx.size()));
  }
  const CsrView<float> x{indptr.data(), idx.data(), val.data(), 9, K};
  o.spmm.assign(9 * N, 0.f);
  spmm_csr(x, B.data(), N, N, bias.data(), o.spmm.data(), N, 1);
  std::vector<float> e(70);
  for (int i = 0; i < 70; ++i) e[i] = -6.f + 0.17f * static_cast<float>(i);
  o.vexp.assign(70, 0.f);
  vexp(70, e.data(), o.vexp.data());
  std::vector<float> w(67, 0.5f), g(67), m(67, 0.f), v(67, 0.f);
  for (int i = 0; i < 67; ++i) g[i] = 0.01f * static_cast<float>(i - 30);
  AdamCoeffs c;
  adam_update(67, w.data(), g.data(), m.data(), v.data(), c);
  o.adam = w;
  // Top-k over 70 items x 16 dims, every precision; integer data keeps fp32 exact.
  const index_t n = 70, d = 16, q = 5, k = 6;
  std::vector<float> items(n * d), queries(q * d);
  for (index_t i = 0; i < n * d; ++i) items[i] = static_cast<float>((i * 3) % 7) - 3.f;
  for (index_t i = 0; i < q * d; ++i) queries[i] = static_cast<float>((i * 5) % 9) - 4.f;
  const TopkPrecision precs[] = {TopkPrecision::fp32, TopkPrecision::bf16, TopkPrecision::int8};
  for (int p = 0; p < 3; ++p) {
    TopkOptions opt;
    opt.precision = precs[p];
    opt.rescore = 16;  // re-score everything: the compressed paths must then agree exactly
    TopkIndex index(MatrixView<const float>{items.data(), n, d, d}, nullptr, opt, 1);
    o.ids[p].assign(q * k, -2);
    o.scores[p].assign(q * k, 0.f);
    index.search(MatrixView<const float>{queries.data(), q, d, d}, k, nullptr, o.ids[p].data(),
                 o.scores[p].data(), 1);
  }
  return o;
}

float max_rel(const std::vector<float>& a, const std::vector<float>& b) {
  float e = 0.f;
  for (std::size_t i = 0; i < a.size(); ++i)
    e = std::fmax(e, std::fabs(a[i] - b[i]) / (1.f + std::fabs(b[i])));
  return a.size() == b.size() ? e : INFINITY;
}

void test_same_results() {
  set_isa_cap(Isa::scalar);
  const Outputs ref = run_all();
  for (Isa cap : {Isa::avx2, Isa::avx512, Isa::amx}) {
    const Isa lvl = set_isa_cap(cap);
    if (lvl != cap) continue;  // not on this CPU
    const Outputs o = run_all();
    CHECK(o.gemm == ref.gemm, "sgemm differs at %s (integer data: exact)", isa_name(lvl));
    CHECK(o.spmm == ref.spmm, "spmm_csr differs at %s (integer data: exact)", isa_name(lvl));
    CHECK(max_rel(o.vexp, ref.vexp) < 1e-6f, "vexp at %s: %g", isa_name(lvl), max_rel(o.vexp, ref.vexp));
    CHECK(o.adam == ref.adam, "adam_update differs at %s (no FMA: bitwise)", isa_name(lvl));
    for (int p = 0; p < 3; ++p) {
      CHECK(o.ids[p] == ref.ids[p], "topk ids (precision %d) differ at %s", p, isa_name(lvl));
      CHECK(o.scores[p] == ref.scores[p], "topk scores (precision %d) differ at %s", p, isa_name(lvl));
    }
  }
}

}  // namespace

int main() {
  const char* expect = std::getenv("AEREC_EXPECT_ISA");
  std::printf("test_dispatch: detected %s, active %s, targets 0x%x\n", isa_name(detected_isa()),
              isa_name(active_isa()), enabled_targets());
  if (expect && *expect)
    CHECK(std::string(isa_name(detected_isa())) == expect, "AEREC_EXPECT_ISA=%s but detected %s", expect,
          isa_name(detected_isa()));
  const Isa env_level = active_isa();  // AEREC_ISA caps it before any set_isa_cap
  if (const char* cap = std::getenv("AEREC_ISA"); cap && *cap)
    CHECK(env_level <= isa_from_name(cap), "AEREC_ISA=%s not honoured (active %s)", cap, isa_name(env_level));
  test_helper_semantics();
  for (Isa cap : {Isa::scalar, Isa::avx2, Isa::avx512, Isa::amx}) test_level(cap);
  test_same_results();
  set_isa_cap(Isa::amx);
  return aerec_test::finish("test_dispatch");
}

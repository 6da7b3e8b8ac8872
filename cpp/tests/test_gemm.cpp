// Plain C++ tests of aerec::cpu::sgemm / bias_activation / vmath under every ISA level this CPU
// has. Integer-valued inputs make identity/relu results exact, so every ISA and thread count must
// agree bit for bit with a double reference; smooth activations are checked to ~1e-6.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <random>
#include <vector>

#include "aerec/cpu_features.hpp"
#include "aerec/gemm.hpp"
#include "aerec/vmath.hpp"

#include "check.hpp"

using namespace aerec;
using namespace aerec::cpu;

struct Case {
  bool ta, tb;
  index_t M, N, K;
  float alpha, beta;
  bool bias;
  Activation act;
  int threads;
  index_t pad;  // extra row stride
};

static void run_case(const Case& c, std::mt19937& rng) {
  std::uniform_int_distribution<int> d(-3, 3);
  const index_t ar = c.ta ? c.K : c.M, ac = c.ta ? c.M : c.K;
  const index_t br = c.tb ? c.N : c.K, bc = c.tb ? c.K : c.N;
  const index_t lda = ac + c.pad, ldb = bc + c.pad, ldc = c.N + c.pad;
  std::vector<float> A(static_cast<size_t>(ar * lda + 1)), B(static_cast<size_t>(br * ldb + 1)),
      C0(static_cast<size_t>(c.M * ldc + 1)), bias(static_cast<size_t>(c.N));
  for (auto& x : A) x = static_cast<float>(d(rng));
  for (auto& x : B) x = static_cast<float>(d(rng));
  for (auto& x : C0) x = static_cast<float>(d(rng));
  for (auto& x : bias) x = static_cast<float>(d(rng));
  Epilogue ep;
  ep.bias = c.bias ? bias.data() : nullptr;
  ep.act = c.act;
  std::vector<float> C = C0;
  if (c.beta == 0.f)  // beta == 0: C must be write-only, NaNs ignored
    for (index_t i = 0; i < c.M; ++i)
      for (index_t j = 0; j < c.N; ++j) C[i * ldc + j] = std::numeric_limits<float>::quiet_NaN();
  sgemm(c.ta, c.tb, c.M, c.N, c.K, c.alpha, A.data(), lda, B.data(), ldb, c.beta, C.data(), ldc,
        ep, c.threads);
  const bool exact = c.act == Activation::identity || c.act == Activation::relu;
  for (index_t i = 0; i < c.M; ++i)
    for (index_t j = 0; j < c.N; ++j) {
      double s = 0;
      for (index_t p = 0; p < c.K; ++p) {
        double a = c.ta ? A[p * lda + i] : A[i * lda + p];
        double b = c.tb ? B[j * ldb + p] : B[p * ldb + j];
        s += a * b;
      }
      double v = c.alpha * s + (c.beta == 0.f ? 0.0 : c.beta * C0[i * ldc + j]) +
                 (c.bias ? bias[j] : 0.0);
      double ref;
      switch (c.act) {
        case Activation::identity: ref = v; break;
        case Activation::relu: ref = v > 0 ? v : 0; break;
        case Activation::sigmoid: ref = 1.0 / (1.0 + std::exp(-v)); break;
        case Activation::tanh: ref = std::tanh(v); break;
        case Activation::elu: ref = v > 0 ? v : std::expm1(v); break;
        default: ref = v > 0 ? kSeluScale * v : kSeluScale * kSeluAlpha * std::expm1(v); break;
      }
      const double got = C[i * ldc + j];
      const bool ok = exact ? got == ref : std::fabs(got - ref) <= 2e-6 * (1 + std::fabs(ref));
      CHECK(ok, "isa=%s ta=%d tb=%d M=%ld N=%ld K=%ld act=%d thr=%d at (%ld,%ld): got %.9g want %.9g",
            isa_name(active_isa()), c.ta, c.tb, (long)c.M, (long)c.N, (long)c.K, (int)c.act,
            c.threads, (long)i, (long)j, got, ref);
    }
  // Padding between rows must be untouched.
  for (index_t i = 0; i < c.M; ++i)
    for (index_t j = c.N; j < ldc && i * ldc + j < (index_t)C.size(); ++j)
      CHECK(C[i * ldc + j] == C0[i * ldc + j] || (c.beta == 0.f && std::isnan(C[i * ldc + j])),
            "padding written at (%ld,%ld)", (long)i, (long)j);
}

static void test_gemm_shapes() {
  std::mt19937 rng(7);
  const index_t sizes[][3] = {{1, 1, 1},    {1, 7, 3},     {5, 1, 9},     {13, 33, 17},
                              {32, 64, 10}, {64, 10, 32},  {10, 64, 32},  {200, 64, 10},
                              {37, 45, 300}, {100, 130, 70}, {97, 200, 513}, {260, 70, 40},
                              {3, 300, 700}, {500, 40, 260}};
  const Activation acts[] = {Activation::identity, Activation::relu, Activation::sigmoid,
                             Activation::tanh, Activation::elu, Activation::selu};
  int n = 0;
  for (const auto& s : sizes)
    for (int t = 0; t < 4; ++t) {
      Case c;
      c.ta = t & 1;
      c.tb = (t >> 1) & 1;
      c.M = s[0];
      c.N = s[1];
      c.K = s[2];
      c.alpha = (n % 3 == 0) ? 2.f : 1.f;
      c.beta = (n % 4 == 0) ? 0.5f : ((n % 4 == 1) ? -1.f : 0.f);
      c.bias = n % 2 == 0;
      c.act = acts[n % 6];
      c.threads = (n % 2) + 1;
      c.pad = n % 3;
      run_case(c, rng);
      c.act = Activation::identity;  // and the exact path for every shape
      c.threads = 2;
      run_case(c, rng);
      ++n;
    }
}

static void test_k_zero_and_alpha_zero() {
  std::vector<float> C = {1, 2, 3, 4}, bias = {1, -10};
  Epilogue ep;
  ep.bias = bias.data();
  ep.act = Activation::relu;
  sgemm(false, false, 2, 2, 0, 1.f, nullptr, 0, nullptr, 2, 2.f, C.data(), 2, ep);
  CHECK(C[0] == 3 && C[1] == 0 && C[2] == 7 && C[3] == 0, "K=0 beta/bias/relu");
}

static void test_vmath() {
  std::vector<float> x, y(1000);
  for (int i = 0; i < 1000; ++i) x.push_back(-100.f + 0.2f * static_cast<float>(i));
  x[3] = std::numeric_limits<float>::quiet_NaN();
  vexp(static_cast<index_t>(x.size()), x.data(), y.data());
  for (size_t i = 0; i < x.size(); ++i) {
    double ref = std::exp(static_cast<double>(x[i]));
    if (std::isnan(x[i])) {
      CHECK(std::isnan(y[i]), "exp(NaN)");
    } else if (ref > 3.4e38) {
      CHECK(std::isinf(y[i]), "exp(%g) overflow -> %g", x[i], y[i]);
    } else if (ref > 1.2e-38) {
      CHECK(std::fabs(y[i] - ref) <= 1e-6 * ref, "exp(%g) = %.9g want %.9g", x[i], y[i], ref);
    } else {  // subnormal results: absolute error of a few subnormal ulps
      CHECK(std::fabs(y[i] - ref) <= 1e-44 + 1e-6 * ref, "exp(%g) = %g want %g", x[i], y[i], ref);
    }
  }
  std::vector<float> lx = {0.f, -1.f, 1e-40f, 1e-30f, 0.5f, 1.f, 2.f, 1e30f,
                           std::numeric_limits<float>::infinity(), 3.f, 0.7f, 123.f};
  std::vector<float> ly(lx.size());
  vlog(static_cast<index_t>(lx.size()), lx.data(), ly.data());
  CHECK(std::isinf(ly[0]) && ly[0] < 0, "log(0)");
  CHECK(std::isnan(ly[1]), "log(-1)");
  CHECK(std::isinf(ly[8]) && ly[8] > 0, "log(inf)");
  for (size_t i : {2u, 3u, 4u, 5u, 6u, 7u, 9u, 10u, 11u}) {
    double ref = std::log(static_cast<double>(lx[i]));
    CHECK(std::fabs(ly[i] - ref) <= 2e-7 * std::fabs(ref) + 1e-7, "log(%g) = %.9g want %.9g",
          lx[i], ly[i], ref);
  }
  float s = vexp_shift_sum(5, x.data() + 500, 0.f, y.data());
  double sr = 0;
  for (int i = 0; i < 5; ++i) sr += std::exp(static_cast<double>(x[500 + i]));
  CHECK(std::fabs(s - sr) <= 1e-6 * sr, "vexp_shift_sum");
}

int main() {
  const Isa top = detected_isa();
  for (int l = 0; l <= static_cast<int>(top) && l <= static_cast<int>(Isa::avx512); ++l) {
    set_isa_cap(static_cast<Isa>(l));
    std::printf("isa %s\n", isa_name(active_isa()));
    test_gemm_shapes();
    test_k_zero_and_alpha_zero();
    test_vmath();
  }
  set_isa_cap(Isa::amx);
  return aerec_test::finish("test_gemm");
}

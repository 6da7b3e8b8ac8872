// Plain C++ tests of the RecNetwork kernels and network (no Python): ISA variants against the
// scalar bodies, bad CSR input, gradient vs finite differences, and training progress.
#include <cmath>
#include <cstdio>
#include <random>
#include <stdexcept>
#include <vector>

#include "aerec/cpu_features.hpp"
#include "aerec/recnet.hpp"

using namespace aerec;
using namespace aerec::cpu;

static int failures = 0;
#define CHECK(cond, ...)                               \
  do {                                                 \
    if (!(cond)) {                                     \
      std::printf("FAIL %s:%d: ", __FILE__, __LINE__); \
      std::printf(__VA_ARGS__);                        \
      std::printf("\n");                               \
      ++failures;                                      \
    }                                                  \
  } while (0)

struct Csr {
  std::vector<std::int64_t> indptr{0};
  std::vector<std::int32_t> indices;
  std::vector<float> values;
  index_t rows = 0, cols = 0;
  CsrView<float> view() const { return {indptr.data(), indices.data(), values.data(), rows, cols}; }
};

static Csr random_csr(index_t rows, index_t cols, double density, unsigned seed) {
  std::mt19937 g(seed);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  Csr c;
  c.rows = rows;
  c.cols = cols;
  for (index_t r = 0; r < rows; ++r) {
    for (index_t j = 0; j < cols; ++j)
      if (r != 1 && u(g) < density) {  // row 1 stays empty (a user with no items)
        c.indices.push_back(static_cast<std::int32_t>(j));
        c.values.push_back(1.f);
      }
    c.indptr.push_back(static_cast<std::int64_t>(c.indices.size()));
  }
  return c;
}

static std::vector<Isa> levels() {
  std::vector<Isa> v{Isa::scalar};
  const Isa top = detected_isa();
  if (top >= Isa::avx2) v.push_back(Isa::avx2);
  if (top >= Isa::avx512) v.push_back(Isa::avx512);
  return v;
}

static RecSpec vae_spec(index_t I) {
  RecSpec s;
  s.layer_sizes = {I, 9, 4, 9, I};
  s.activations = {Activation::tanh, Activation::identity, Activation::tanh, Activation::identity};
  s.encoder_depth = 2;
  s.variational = true;
  s.total_anneal_steps = 10;
  s.input_dropout = 0.3;
  s.seed = 5;
  return s;
}

static void init_params(RecNetwork& net, unsigned seed) {
  std::mt19937 g(seed);
  std::normal_distribution<float> n01(0.f, 0.3f);
  for (std::size_t i = 0; i < net.n_params(); ++i)
    for (index_t e = 0; e < net.param_size(i); ++e) net.param(i)[e] = n01(g);
}

static void test_bad_input() {
  RecNetwork net(vae_spec(10));
  Csr c = random_csr(3, 10, 0.4, 2);
  auto expect = [&](const Csr& bad, bool index_error, const char* what) {
    bool ok = false;
    try {
      net.train_batch(bad.view(), nullptr);
    } catch (const std::out_of_range&) {
      ok = index_error;
    } catch (const std::invalid_argument&) {
      ok = !index_error;
    }
    CHECK(ok, "bad input not rejected properly: %s", what);
  };
  Csr b = c;
  b.indices[0] = 10;
  expect(b, true, "column id >= I");
  if (c.indptr[1] >= 2) {
    b = c;
    std::swap(b.indices[0], b.indices[1]);
    expect(b, false, "unsorted");
    b = c;
    b.indices[1] = b.indices[0];
    expect(b, false, "duplicate");
  }
  b = c;
  b.values[0] = NAN;
  expect(b, false, "NaN");
  b = c;
  b.cols = 11;
  expect(b, false, "width mismatch");
  b = c;
  b.indptr[1] = b.indptr[3] + 1;
  expect(b, false, "indptr not monotone");
}

static void test_gradient_and_training() {
  const index_t I = 17;
  RecSpec s = vae_spec(I);
  RecNetwork net(s);
  init_params(net, 3);
  net.step = 4;
  Csr c = random_csr(6, I, 0.3, 9);
  std::vector<std::vector<float>> grads;
  net.gradients(c.view(), nullptr, &grads);
  // float32 central differences on a few entries of each tensor (loose: the float64 check lives
  // in tests/test_recnet.py)
  std::vector<std::vector<float>> tmp;
  for (std::size_t i = 0; i < net.n_params(); ++i) {
    for (index_t e = 0; e < net.param_size(i); e += 1 + net.param_size(i) / 5) {
      float* p = net.param(i) + e;
      const float old = *p, h = 1e-2f;
      *p = old + h;
      const double lp = net.gradients(c.view(), nullptr, &tmp);
      *p = old - h;
      const double lm = net.gradients(c.view(), nullptr, &tmp);
      *p = old;
      const double num = (lp - lm) / (2 * h);
      CHECK(std::fabs(num - grads[i][e]) < 2e-2 * (1.0 + std::fabs(num)), "grad param %zu[%ld]: %g vs %g", i,
            (long)e, num, (double)grads[i][e]);
    }
  }
  // every ISA level gives the same gradients to float rounding
  for (Isa isa : levels()) {
    set_isa_cap(isa);
    std::vector<std::vector<float>> gi;
    net.gradients(c.view(), nullptr, &gi);
    for (std::size_t i = 0; i < gi.size(); ++i)
      for (std::size_t e = 0; e < gi[i].size(); ++e)
        CHECK(std::fabs(gi[i][e] - grads[i][e]) < 1e-4f * (1.f + std::fabs(grads[i][e])), "isa %s grad",
              isa_name(isa));
  }
  set_isa_cap(Isa::amx);
  // training lowers the loss (dropout off, KL annealing on)
  s.input_dropout = 0.0;
  s.learning_rate = 1e-2;
  RecNetwork net2(s);
  init_params(net2, 4);
  Csr big = random_csr(60, I, 0.2, 11);
  const double first = net2.train_epoch(big.view(), nullptr, 16, true, 0);
  double last = first;
  for (int ep = 1; ep < 30; ++ep) last = net2.train_epoch(big.view(), nullptr, 16, true, ep);
  CHECK(last < first, "loss did not decrease: %g -> %g", first, last);
  CHECK(net2.step == 30 * 4, "step count %ld", (long)net2.step);
}

static void test_spmm() {
  Csr c = random_csr(9, 13, 0.3, 7);
  const index_t n = 37;
  std::vector<float> w(13 * n), init(n), out(9 * n);
  for (std::size_t i = 0; i < w.size(); ++i) w[i] = static_cast<float>((i * 7) % 11) - 5.f;
  for (index_t j = 0; j < n; ++j) init[j] = static_cast<float>(j % 3);
  for (std::size_t q = 0; q < c.values.size(); ++q) c.values[q] = static_cast<float>(q % 4) + 1.f;
  for (Isa isa : levels()) {
    set_isa_cap(isa);
    spmm_csr(c.view(), w.data(), n, n, init.data(), out.data(), n, 0);
    for (index_t r = 0; r < 9; ++r)
      for (index_t j = 0; j < n; ++j) {
        float e = init[j];  // integer-valued data: exact
        for (std::int64_t q = c.indptr[r]; q < c.indptr[r + 1]; ++q) e += c.values[q] * w[c.indices[q] * n + j];
        CHECK(out[r * n + j] == e, "spmm %s (%ld, %ld)", isa_name(isa), (long)r, (long)j);
      }
  }
  set_isa_cap(Isa::amx);
}

int main() {
  test_spmm();
  test_bad_input();
  test_gradient_and_training();
  if (failures) {
    std::printf("%d failure(s)\n", failures);
    return 1;
  }
  std::printf("test_recnet: ok\n");
  return 0;
}

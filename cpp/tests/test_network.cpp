// Plain C++ checks of aerec::cpu::Network (no Python): random streams, gradients against finite
// differences, determinism, ISA variants of the optimizer agree bit for bit, bad input throws.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <stdexcept>
#include <vector>

#include "aerec/cpu_features.hpp"
#include "aerec/network.hpp"
#include "aerec/rng.hpp"

using namespace aerec;
using namespace aerec::cpu;

static int failures = 0;
#define CHECK(cond)                                                       \
  do {                                                                    \
    if (!(cond)) {                                                        \
      std::fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
      ++failures;                                                         \
    }                                                                     \
  } while (0)

static NetworkSpec small_spec(LossKind loss, Activation hidden, Activation out) {
  NetworkSpec s;
  s.layer_sizes = {5, 4, 3};
  s.activations = {hidden, out};
  s.dropout = {0.0, 0.0};
  s.loss = loss;
  s.l2 = 0.01;
  s.seed = 3;
  return s;
}

static void fill(Network& net, unsigned seed) {
  std::mt19937 g(seed);
  std::normal_distribution<float> d(0.f, 0.5f);
  for (int t = 0; t < net.n_tensors(); ++t)
    for (index_t k = 0; k < net.tensor_size(t); ++k) net.param(t)[k] = d(g);
}

static void test_rng() {
  CHECK(rng::mix64(rng::kGolden) == 0xE220A8397B1DCDAFull);  // splitmix64(0), first output
  CHECK(rng::key(1, rng::kDropout, 2, 3) != rng::key(1, rng::kDropout, 2, 4));
  CHECK(rng::h(5, 7) == rng::mix64(5 + 8 * rng::kGolden));
  for (std::uint64_t t = 0; t < 100; ++t) CHECK(rng::negative_item(9, 3, t, 17) < 17);
}

static void test_gradients(LossKind loss, Activation hidden, Activation out) {
  Network net(small_spec(loss, hidden, out));
  fill(net, 1);
  std::mt19937 g(2);
  std::uniform_real_distribution<float> u(0.f, 1.f);
  const index_t n = 6;
  std::vector<float> x(n * 5), y(n * 3);
  for (auto& v : x) v = u(g);
  for (auto& v : y) v = u(g) < 0.5f ? 1.f : 0.f;
  Batch b;
  b.x = {x.data(), n, 5, 5};
  b.y = {y.data(), n, 3, 3};
  net.gradients(b, false);
  const float h = 1e-3f;
  for (int t = 0; t < net.n_tensors(); ++t) {
    std::vector<float> ga(net.grad(t), net.grad(t) + net.tensor_size(t));
    for (index_t k = 0; k < net.tensor_size(t); ++k) {
      float& p = net.param(t)[k];
      const float old = p;
      p = old + h;
      const double fp = net.loss(b, 64);
      p = old - h;
      const double fm = net.loss(b, 64);
      p = old;
      const double gn = (fp - fm) / (2.0 * h);
      if (std::fabs(gn - ga[k]) > 2e-3 + 2e-2 * std::fabs(gn)) {
        std::fprintf(stderr, "loss %d act %d/%d tensor %d elem %lld: analytic %g numeric %g\n", int(loss), int(hidden), int(out), t, (long long)k, ga[k], gn);
        ++failures;
      }
    }
  }
}

static std::vector<float> train(unsigned seed_params) {
  NetworkSpec s = small_spec(LossKind::mse, Activation::relu, Activation::sigmoid);
  s.dropout = {0.3, 0.2};
  Network net(s);
  fill(net, seed_params);
  std::vector<float> x(37 * 5), y(37 * 3, 0.5f);
  std::mt19937 g(5);
  std::uniform_real_distribution<float> u(0.f, 1.f);
  for (auto& v : x) v = u(g);
  Batch b;
  b.x = {x.data(), 37, 5, 5};
  b.y = {y.data(), 37, 3, 3};
  for (int e = 0; e < 3; ++e) net.train_epoch(b, 8, true, e);
  std::vector<float> out;
  for (int t = 0; t < net.n_tensors(); ++t) out.insert(out.end(), net.param(t), net.param(t) + net.tensor_size(t));
  return out;
}

static void test_determinism_and_isa() {
  const Isa before = active_isa();
  set_isa_cap(Isa::scalar);
  auto a = train(7);
  set_isa_cap(before);
  auto b = train(7);
  auto c = train(7);
  CHECK(a.size() == b.size());
  CHECK(std::memcmp(b.data(), c.data(), sizeof(float) * b.size()) == 0);
  // Optimizer variants agree bit for bit; GEMM variants may round differently, so tolerance here.
  double md = 0;
  for (size_t i = 0; i < a.size(); ++i) md = std::fmax(md, std::fabs(a[i] - b[i]));
  CHECK(md < 1e-5);

  std::vector<float> w(37), g(37), m(37, 0.f), v(37, 0.f);
  for (int i = 0; i < 37; ++i) { w[i] = 0.1f * i - 1.f; g[i] = std::sin(float(i)); }
  auto w2 = w, m2 = m, v2 = v;
  AdamCoeffs cf;
  cf.bc1 = 0.1f; cf.bc2 = 0.001f; cf.weight_decay = 0.01f;
  set_isa_cap(Isa::scalar);
  adam_update(37, w.data(), g.data(), m.data(), v.data(), cf);
  set_isa_cap(before);
  adam_update(37, w2.data(), g.data(), m2.data(), v2.data(), cf);
  CHECK(std::memcmp(w.data(), w2.data(), sizeof(float) * 37) == 0);
  CHECK(std::memcmp(v.data(), v2.data(), sizeof(float) * 37) == 0);
}

template <class F>
static bool throws_invalid(F&& f) {
  try {
    f();
  } catch (const std::invalid_argument&) {
    return true;
  } catch (...) {
    return false;
  }
  return false;
}

static void test_bad_input() {
  Network net(small_spec(LossKind::mse, Activation::tanh, Activation::identity));
  std::vector<float> x(4 * 6), y(4 * 3);
  Batch b;
  b.x = {x.data(), 4, 6, 6};  // wrong column count
  b.y = {y.data(), 4, 3, 3};
  CHECK(throws_invalid([&] { net.train_batch(b); }));
  b.x = {x.data(), 4, 5, 5};
  b.y = {y.data(), 3, 3, 3};  // row mismatch
  CHECK(throws_invalid([&] { net.train_batch(b); }));
  b.y = {y.data(), 4, 3, 3};
  CHECK(throws_invalid([&] { net.train_epoch(b, 0, true, 0); }));
  b.mask = {y.data(), 4, 3, 3};  // mask without masked_mse
  CHECK(throws_invalid([&] { net.train_batch(b); }));
  NetworkSpec s = small_spec(LossKind::bce, Activation::tanh, Activation::identity);
  CHECK(throws_invalid([&] { Network bad(s); }));  // bce needs a sigmoid output
  s = small_spec(LossKind::mse, Activation::tanh, Activation::identity);
  s.dropout = {1.0, 0.0};
  CHECK(throws_invalid([&] { Network bad(s); }));
  CHECK(net.step() == 0);
}

// The CSR first layer (gather-sum, row-sparse gradient, dropout at stored entries) equals the dense one.
static void test_csr_matches_dense() {
  NetworkSpec s = small_spec(LossKind::mse, Activation::tanh, Activation::sigmoid);
  s.dropout = {0.4, 0.1};
  Network dense(s), sparse(s);
  fill(dense, 9);
  fill(sparse, 9);
  const index_t n = 7, cols = 5;
  std::vector<float> x(n * cols, 0.f), y(n * 3, 0.25f);
  std::vector<std::int64_t> indptr{0};
  std::vector<std::int32_t> indices;
  std::vector<float> values;
  for (index_t r = 0; r < n; ++r) {
    for (index_t c = 0; c < cols; ++c)
      if ((r * 3 + c * 7) % 4 == 0 && r != 2) {  // row 2 stays empty
        x[r * cols + c] = 0.5f + 0.1f * float(c);
        indices.push_back(static_cast<std::int32_t>(c));
        values.push_back(x[r * cols + c]);
      }
    indptr.push_back(static_cast<std::int64_t>(indices.size()));
  }
  Batch bd, bs;
  bd.x = {x.data(), n, cols, cols};
  bd.y = {y.data(), n, 3, 3};
  bs.x = {nullptr, n, cols, cols};
  bs.x_csr.indptr = indptr.data();
  bs.x_csr.indices = indices.data();
  bs.x_csr.values = values.data();
  bs.x_csr.rows = n;
  bs.x_csr.cols = cols;
  bs.y = bd.y;
  for (int e = 0; e < 3; ++e) {
    const double ld = dense.train_epoch(bd, 3, true, e), ls = sparse.train_epoch(bs, 3, true, e);
    CHECK(std::fabs(ld - ls) < 1e-6 * (1.0 + std::fabs(ld)));
  }
  for (int t = 0; t < dense.n_tensors(); ++t)
    for (index_t k = 0; k < dense.tensor_size(t); ++k)
      CHECK(std::fabs(dense.param(t)[k] - sparse.param(t)[k]) < 1e-5f);
  indices[0] = 5;  // out of range -> std::out_of_range, nothing changed
  bool threw = false;
  try {
    sparse.train_batch(bs);
  } catch (const std::out_of_range&) {
    threw = true;
  }
  CHECK(threw);
}

int main() {
  test_rng();
  const Activation acts[] = {Activation::identity, Activation::relu, Activation::sigmoid,
                             Activation::tanh, Activation::elu, Activation::selu};
  for (Activation a : acts) {
    test_gradients(LossKind::mse, a, a);
    test_gradients(LossKind::masked_mse, a, Activation::identity);
  }
  test_gradients(LossKind::bce, Activation::tanh, Activation::sigmoid);
  test_determinism_and_isa();
  test_bad_input();
  test_csr_matches_dense();
  if (failures) {
    std::fprintf(stderr, "test_network: %d failure(s)\n", failures);
    return 1;
  }
  std::printf("test_network: ok\n");
  return 0;
}

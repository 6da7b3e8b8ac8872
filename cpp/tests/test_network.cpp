// Plain C++ checks of aerec::cpu::Network (no Python): random streams, gradients against finite
// differences (dense stages, and the sparse ones: CSR input, normalisation, VAE, per-user rows,
// multinomial, logistic with negatives, lazy updates), determinism, ISA levels agree, training
// lowers the loss, the CSR SpMM, bad input throws.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <stdexcept>
#include <vector>

#include "aerec/cpu_features.hpp"
#include "aerec/network.hpp"
#include "aerec/rng.hpp"
#include "aerec/sparse.hpp"

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
        c.values.push_back(1.f + static_cast<float>((r + j) % 3));
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

// Mult-VAE (CSR, normalised, dropout, Gaussian bottleneck, multinomial) and CDAE (CSR, per-user
// rows, logistic with negatives, lazy): float32 central differences of the training-mode loss (the
// step fixes the dropout masks, noise and negatives; the float64 check is tests/test_gradients.py),
// every ISA level to float rounding, and training lowers the loss.
static NetworkSpec sparse_spec(bool cdae, index_t I) {
  NetworkSpec s;
  if (cdae) {
    s.layer_sizes = {I, 6, I};
    s.activations = {Activation::sigmoid, Activation::identity};
    s.dropout = {0.3, 0.0};
    s.loss = LossKind::logistic;
    s.negative_samples = 2;
    s.n_users = 8;
    s.lazy = true;
    s.l2 = 0.01;
  } else {
    s.layer_sizes = {I, 9, 4, 9, I};
    s.activations = {Activation::tanh, Activation::identity, Activation::tanh, Activation::identity};
    s.dropout = {0.3, 0.0, 0.2, 0.0};
    s.encoder_depth = 2;
    s.variational = true;
    s.anneal_steps = 10;
    s.normalize_input = true;
    s.loss = LossKind::multinomial;
  }
  s.seed = 5;
  return s;
}

static void test_sparse_stages(bool cdae) {
  const index_t I = 17, n = 6;
  Network net(sparse_spec(cdae, I));
  fill(net, 3);
  net.set_step(4);
  Csr c = random_csr(n, I, 0.3, 9);
  std::vector<std::int32_t> users{3, 0, 3, 7, 1, 0};
  Batch b;
  b.x = {nullptr, n, I, I};
  b.x_csr = c.view();
  b.y_csr = c.view();
  b.users = cdae ? users.data() : nullptr;
  index_t total = 0;
  for (int t = 0; t < net.n_tensors(); ++t) total += net.tensor_size(t);
  std::vector<float> grads(total), tmp(total);
  net.gradients(b, true, grads.data());
  index_t off = 0;
  for (int t = 0; t < net.n_tensors(); ++t) {
    for (index_t e = 0; e < net.tensor_size(t); e += 1 + net.tensor_size(t) / 7) {
      float* p = net.param(t) + e;
      const float old = *p, h = 1e-2f;
      *p = old + h;
      const double lp = net.gradients(b, true, tmp.data());
      *p = old - h;
      const double lm = net.gradients(b, true, tmp.data());
      *p = old;
      const double num = (lp - lm) / (2 * h);
      CHECK(std::fabs(num - grads[off + e]) < 2e-2 * (1.0 + std::fabs(num)));
    }
    off += net.tensor_size(t);
  }
  const Isa before = active_isa();
  for (Isa isa : levels()) {
    set_isa_cap(isa);
    net.gradients(b, true, tmp.data());
    double md = 0;
    for (index_t i = 0; i < total; ++i) md = std::fmax(md, std::fabs(tmp[i] - grads[i]) / (1.0 + std::fabs(grads[i])));
    CHECK(md < 1e-4);
  }
  set_isa_cap(before);
  NetworkSpec s = sparse_spec(cdae, I);
  s.dropout.assign(s.dropout.size(), 0.0);
  s.learning_rate = 1e-2;
  Network train(s);
  fill(train, 4);
  Csr big = random_csr(60, I, 0.2, 11);
  std::vector<std::int32_t> bu(60);
  for (index_t r = 0; r < 60; ++r) bu[r] = static_cast<std::int32_t>(r % 8);
  Batch bb;
  bb.x = {nullptr, 60, I, I};
  bb.x_csr = big.view();
  bb.y_csr = big.view();
  bb.users = cdae ? bu.data() : nullptr;
  const double first = train.train_epoch(bb, 16, true, 0);
  double last = first;
  for (int ep = 1; ep < 30; ++ep) last = train.train_epoch(bb, 16, true, ep);
  CHECK(last < first);
  CHECK(train.step() == 30 * 4);
  CHECK(train.timings().batches == 30 * 4);
}

static void test_spmm() {
  Csr c = random_csr(9, 13, 0.3, 7);
  const index_t n = 37;
  std::vector<float> w(13 * n), init(n), out(9 * n);
  for (std::size_t i = 0; i < w.size(); ++i) w[i] = static_cast<float>((i * 7) % 11) - 5.f;
  for (index_t j = 0; j < n; ++j) init[j] = static_cast<float>(j % 3);
  const Isa before = active_isa();
  for (Isa isa : levels()) {
    set_isa_cap(isa);
    spmm_csr(c.view(), w.data(), n, n, init.data(), out.data(), n, 0);
    for (index_t r = 0; r < 9; ++r)
      for (index_t j = 0; j < n; ++j) {
        float e = init[j];  // integer-valued data: exact
        for (std::int64_t q = c.indptr[r]; q < c.indptr[r + 1]; ++q) e += c.values[q] * w[c.indices[q] * n + j];
        CHECK(out[r * n + j] == e);
      }
  }
  set_isa_cap(before);
}

// bind_params: training on external storage gives the bits of training on the network's own, and
// unbind copies them back. apply_gradient_sum of one part at scale 1 is apply_gradients (1 * g = g);
// of two parts it is apply_gradients of their float32 scaled sum.
static void test_bound_params_and_gradient_sum() {
  NetworkSpec s = small_spec(LossKind::mse, Activation::relu, Activation::sigmoid);
  s.dropout = {0.3, 0.2};
  Network a(s), b(s), c(s), d(s);
  for (Network* net : {&a, &b, &c, &d}) fill(*net, 4);
  std::vector<float> x(21 * 5), y(21 * 3, 0.5f);
  std::mt19937 g(6);
  std::uniform_real_distribution<float> u(0.f, 1.f);
  for (auto& v : x) v = u(g);
  Batch bt;
  bt.x = {x.data(), 21, 5, 5};
  bt.y = {y.data(), 21, 3, 3};
  const index_t n = a.n_params();
  std::vector<float> ext(n, std::nanf("")), pa(n), pb(n);
  a.bind_params(ext.data(), true);
  CHECK(a.params_bound() && !b.params_bound());
  for (int e = 0; e < 2; ++e) {
    a.train_epoch(bt, 8, true, e);
    b.train_epoch(bt, 8, true, e);
  }
  a.read_params_flat(0, n, pa.data());
  b.read_params_flat(0, n, pb.data());
  CHECK(std::memcmp(pa.data(), pb.data(), sizeof(float) * n) == 0);
  CHECK(std::memcmp(ext.data(), pb.data(), sizeof(float) * n) == 0);
  a.unbind_params();
  std::fill(ext.begin(), ext.end(), 0.f);
  a.read_params_flat(0, n, pa.data());
  CHECK(!a.params_bound() && std::memcmp(pa.data(), pb.data(), sizeof(float) * n) == 0);
  // gradient sums
  const std::int64_t r0[] = {0, 3, 5, 9}, r1[] = {11, 12, 20};
  std::vector<float> g0(n), g1(n), sum(n);
  c.gradients_rows(bt, r0, 4, true, g0.data());
  c.gradients_rows(bt, r1, 3, true, g1.data());
  const float sc[] = {0.5f, 0.375f};
  for (index_t i = 0; i < n; ++i) {
    const float p = sc[0] * g0[i], q = sc[1] * g1[i];
    sum[i] = p + q;
  }
  const float* parts[] = {g0.data(), g1.data()};
  c.apply_gradients(sum.data(), nullptr, 0, nullptr, 0, 3, n - 2);
  d.apply_gradient_sum(2, parts, sc, nullptr, nullptr, 0, nullptr, 0, 3, n - 2);
  c.read_params_flat(0, n, pa.data());
  d.read_params_flat(0, n, pb.data());
  CHECK(std::memcmp(pa.data(), pb.data(), sizeof(float) * n) == 0);
  const float one[] = {1.f};
  c.apply_gradients(g0.data(), nullptr, 0, nullptr, 0);
  d.apply_gradient_sum(1, parts, one, nullptr, nullptr, 0, nullptr, 0);
  c.read_params_flat(0, n, pa.data());
  d.read_params_flat(0, n, pb.data());
  CHECK(std::memcmp(pa.data(), pb.data(), sizeof(float) * n) == 0);
  CHECK(throws_invalid([&] { d.apply_gradient_sum(0, parts, sc, nullptr, nullptr, 0, nullptr, 0); }));
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
  test_sparse_stages(false);
  test_sparse_stages(true);
  test_spmm();
  test_bound_params_and_gradient_sum();
  if (failures) {
    std::fprintf(stderr, "test_network: %d failure(s)\n", failures);
    return 1;
  }
  std::printf("test_network: ok\n");
  return 0;
}

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

static void test_kernels() {
  std::mt19937 g(1);
  std::normal_distribution<float> n01(0.f, 1.f);
  for (index_t n : {1, 7, 16, 33, 129, 600, 1001}) {
    std::vector<float> m(5 * n), init(n), z(n);
    for (auto& x : m) x = n01(g);
    for (auto& x : init) x = n01(g);
    for (auto& x : z) x = 3.f * n01(g);
    std::vector<std::int32_t> idx{4, 0, 2};
    std::vector<float> val{0.5f, -1.f, 2.f};
    std::vector<float> ref(n), out(n);
    set_isa_cap(Isa::scalar);
    rec_kernels().gather_sum(n, 3, idx.data(), val.data(), m.data(), n, init.data(), ref.data());
    std::vector<float> zr = z;
    const float mx_ref = rec_kernels().row_max(n, zr.data());
    const double s_ref = rec_kernels().exp_shift_sum(n, zr.data(), mx_ref);
    std::vector<float> tr = z;
    rec_kernels().tanh_inplace(n, tr.data());
    std::vector<float> lr_ = z;
    const double lsum_ref = rec_kernels().logistic_row(n, lr_.data(), 0.5f);
    for (Isa isa : levels()) {
      set_isa_cap(isa);
      const RecKernels& k = rec_kernels();
      k.gather_sum(n, 3, idx.data(), val.data(), m.data(), n, init.data(), out.data());
      for (index_t i = 0; i < n; ++i)
        CHECK(std::fabs(out[i] - ref[i]) < 1e-5f, "gather_sum isa %s n %ld", isa_name(isa), (long)n);
      std::vector<float> zz = z;
      const float mx = k.row_max(n, zz.data());
      CHECK(mx == mx_ref, "row_max %s", isa_name(isa));
      const double s = k.exp_shift_sum(n, zz.data(), mx);
      CHECK(std::fabs(s - s_ref) < 1e-5 * s_ref, "exp sum %s n %ld: %g vs %g", isa_name(isa), (long)n, s, s_ref);
      for (index_t i = 0; i < n; ++i)
        CHECK(std::fabs(zz[i] - zr[i]) <= 1e-6f * (1.f + zr[i]), "exp %s", isa_name(isa));
      std::vector<float> tt = z;
      k.tanh_inplace(n, tt.data());
      for (index_t i = 0; i < n; ++i) CHECK(std::fabs(tt[i] - tr[i]) < 2e-6f, "tanh %s %g", isa_name(isa), z[i]);
      std::vector<float> sa = z, acc(n, 1.f);
      k.scale_accumulate(n, sa.data(), 0.25f, acc.data());
      for (index_t i = 0; i < n; ++i)
        CHECK(sa[i] == z[i] * 0.25f && acc[i] == 1.f + z[i] * 0.25f, "scale_accumulate %s", isa_name(isa));
      std::vector<float> ll = z;
      const double lsum = k.logistic_row(n, ll.data(), 0.5f);
      CHECK(std::fabs(lsum - lsum_ref) < 1e-5 * (1.0 + lsum_ref), "logistic sum %s %g vs %g", isa_name(isa), lsum,
            lsum_ref);
      for (index_t i = 0; i < n; ++i) CHECK(std::fabs(ll[i] - lr_[i]) < 1e-6f, "sigmoid %s", isa_name(isa));
      // Adam against a double-precision loop
      std::vector<float> w(n), mm(n, 0.1f), vv(n, 0.2f), gg(n);
      for (index_t i = 0; i < n; ++i) {
        w[i] = n01(g);
        gg[i] = n01(g);
      }
      std::vector<float> w0 = w;
      k.adam(n, w.data(), mm.data(), vv.data(), gg.data(), 0.01f, 1e-2f, 0.9f, 0.999f, 10.f, 1000.f, 1e-8f);
      for (index_t i = 0; i < n; ++i) {
        const double gi = gg[i] + 0.01 * w0[i];
        const double m1 = 0.9 * 0.1 + 0.1 * gi, v1 = 0.999 * 0.2 + 0.001 * gi * gi;
        const double we = w0[i] - 1e-2 * (m1 * 10.0) / (std::sqrt(v1 * 1000.0) + 1e-8);
        CHECK(std::fabs(w[i] - we) < 1e-5, "adam %s", isa_name(isa));
      }
    }
  }
  set_isa_cap(Isa::amx);
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
  test_kernels();
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

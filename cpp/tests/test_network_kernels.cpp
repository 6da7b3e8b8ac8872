// Every ISA sibling of the network kernel table (aerec/nn_kernels.hpp) against the scalar one, for
// every target this CPU has, on lengths around every vector width (tails): optimizer updates equal
// the scalar bodies bit for bit (no FMA), dropout draws the rng.hpp stream bit for bit, the BCE
// row matches a float64 reference on logits from -120 to 120 and the AVX2 and AVX-512 rows agree
// bit for bit (same operations, same double-sum lanes and reduction order); the row kernels of the
// sparse paths (gather-sum, softmax pieces, tanh, logistic) match the scalar ones to rounding.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include "aerec/cpu_features.hpp"
#include "aerec/nn_kernels.hpp"
#include "aerec/rng.hpp"

using namespace aerec;
using namespace aerec::cpu;

static int failures = 0;
#define CHECK(cond, ...)                                                        \
  do {                                                                          \
    if (!(cond)) {                                                              \
      std::fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond); \
      std::fprintf(stderr, __VA_ARGS__);                                        \
      std::fprintf(stderr, "\n");                                               \
      ++failures;                                                               \
    }                                                                           \
  } while (0)

#if defined(AEREC_X86)
static const index_t kLens[] = {1, 3, 7, 8, 9, 15, 16, 17, 24, 31, 33, 64, 100, 1037};

struct Body {
  const char* name;
  Target target;
  const NnKernels& k;
};

static const Body kBodies[] = {{"scalar", Target::scalar, scalar::kNnKernels},
                               {"avx2", Target::avx2, avx2::kNnKernels},
                               {"avx512", Target::avx512, avx512::kNnKernels}};
static const NnKernels& ref = scalar::kNnKernels;

static bool same(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), sizeof(float) * a.size()) == 0;
}

static std::vector<float> randn(index_t n, unsigned seed, float sd) {
  std::mt19937 g(seed);
  std::normal_distribution<float> d(0.f, sd);
  std::vector<float> x(n);
  for (auto& v : x) v = d(g);
  return x;
}

static void test_optim(const Body& b) {
  for (index_t n : kLens) {
    const auto w0 = randn(n, 1, 1.f), g = randn(n, 2, 0.3f), m0 = randn(n, 3, 0.1f);
    auto v0 = randn(n, 4, 0.1f);
    for (auto& x : v0) x = x * x;
    AdamCoeffs ac;
    ac.lr = 3e-3f; ac.bc1 = 0.19f; ac.bc2 = 0.002f; ac.weight_decay = 0.013f; ac.lr_wd = 1e-4f;
    auto w = w0, m = m0, v = v0, w2 = w0, m2 = m0, v2 = v0;
    ref.adam(n, w.data(), g.data(), m.data(), v.data(), ac, nullptr);
    b.k.adam(n, w2.data(), g.data(), m2.data(), v2.data(), ac, nullptr);
    CHECK(same(w, w2) && same(m, m2) && same(v, v2), "%s adam n=%ld", b.name, long(n));
    // Pruning masks: random, all pruned, all kept, and runs of 8 / 16 (whole vector blocks). The
    // kept elements get exactly the unmasked update, the pruned ones are untouched.
    for (int pat = 0; pat < 5; ++pat) {
      std::vector<std::uint8_t> keep(n);
      std::mt19937 rg(static_cast<unsigned>(n * 7 + pat));
      for (index_t i = 0; i < n; ++i)
        keep[i] = pat == 0 ? std::uint8_t(rg() % 3 != 0) : pat == 1 ? 0 : pat == 2 ? 1 : std::uint8_t((i / (pat == 3 ? 8 : 16)) % 2);
      auto wm = w0, mm = m0, vm = v0;
      b.k.adam(n, wm.data(), g.data(), mm.data(), vm.data(), ac, keep.data());
      bool ok = true;
      for (index_t i = 0; i < n; ++i) {
        const bool k = keep[i] != 0;
        ok = ok && std::memcmp(&wm[i], k ? &w[i] : &w0[i], 4) == 0 && std::memcmp(&mm[i], k ? &m[i] : &m0[i], 4) == 0 &&
             std::memcmp(&vm[i], k ? &v[i] : &v0[i], 4) == 0;
      }
      CHECK(ok, "%s masked adam n=%ld pattern %d", b.name, long(n), pat);
      for (int mode = 0; mode < 3; ++mode) {
        SgdCoeffs sc;
        sc.lr = 0.07f; sc.weight_decay = 0.011f; sc.momentum = mode ? 0.9f : 0.f; sc.nesterov = mode == 2;
        auto ws = w0, bs = m0, wk = w0, bk = m0;
        ref.sgd(n, ws.data(), g.data(), mode ? bs.data() : nullptr, sc, nullptr);
        b.k.sgd(n, wk.data(), g.data(), mode ? bk.data() : nullptr, sc, keep.data());
        bool oks = true;
        for (index_t i = 0; i < n; ++i) {
          const bool k = keep[i] != 0;
          oks = oks && std::memcmp(&wk[i], k ? &ws[i] : &w0[i], 4) == 0 && std::memcmp(&bk[i], k ? &bs[i] : &m0[i], 4) == 0;
        }
        CHECK(oks, "%s masked sgd mode %d n=%ld pattern %d", b.name, mode, long(n), pat);
      }
    }
    for (int mode = 0; mode < 3; ++mode) {  // no buffer, momentum, Nesterov
      SgdCoeffs sc;
      sc.lr = 0.07f; sc.weight_decay = 0.011f; sc.momentum = mode ? 0.9f : 0.f; sc.nesterov = mode == 2;
      auto ws = w0, bs = m0, ws2 = w0, bs2 = m0;
      ref.sgd(n, ws.data(), g.data(), mode ? bs.data() : nullptr, sc, nullptr);
      b.k.sgd(n, ws2.data(), g.data(), mode ? bs2.data() : nullptr, sc, nullptr);
      CHECK(same(ws, ws2) && same(bs, bs2), "%s sgd mode %d n=%ld", b.name, mode, long(n));
    }
  }
}

static void test_dropout(const Body& b) {
  const std::uint64_t key = rng::key(11, rng::kDropout, 5, 2);
  const std::int64_t rid[3] = {5, 0, 17};  // the rows' indices in the caller's x
  for (index_t cols : kLens) {
    for (float p : {0.f, 0.3f, 0.5f, 0.9f}) {
      const index_t rows = 3, lds = cols + 5;
      const auto src = randn(rows * lds, 7, 1.f);
      std::vector<float> dst(rows * cols, -7.f), mult(rows * cols, -7.f), dref(rows * cols), mref(rows * cols);
      const float scale = 1.f / (1.f - p);
      for (index_t r = 0; r < rows; ++r)
        for (index_t c = 0; c < cols; ++c) {
          const float u = rng::uniform(key, static_cast<std::uint64_t>(rid[r] * cols + c));
          mref[r * cols + c] = u >= p ? scale : 0.f;
          dref[r * cols + c] = src[r * lds + c] * mref[r * cols + c];
        }
      b.k.dropout(rows, cols, src.data(), lds, dst.data(), mult.data(), key, p, rid);
      CHECK(same(mult, mref) && same(dst, dref), "%s dropout cols=%ld p=%g", b.name, long(cols), p);
    }
  }
}

// Logits across the exp under/overflow range (exact zeros included) plus noise; labels in [0, 2].
static void make_row(index_t cols, unsigned seed, std::vector<float>& z, std::vector<float>& y) {
  std::mt19937 g(seed);
  std::normal_distribution<float> nd(0.f, 3.f);
  std::uniform_real_distribution<float> ud(0.f, 1.f);
  z.resize(cols);
  y.resize(cols);
  for (index_t c = 0; c < cols; ++c) {
    z[c] = cols > 1 ? -120.f + 240.f * static_cast<float>(c) / static_cast<float>(cols - 1) : 0.5f;
    if (c % 3 == 1) z[c] = nd(g);
    if (c % 7 == 3) z[c] = 0.f;
    const float r = ud(g);
    y[c] = r < 0.3f ? 1.f : r < 0.35f ? 2.f * ud(g) : 0.f;
  }
}

static void test_loss_rows(const Body& b) {
  for (index_t cols : kLens) {
    std::vector<float> z, y;
    make_row(cols, 100 + static_cast<unsigned>(cols), z, y);
    const float iscale = 0.25f;
    // float64 references
    double bce = 0, mx = -INFINITY, se = 0, ysum = 0, yz = 0;
    std::vector<double> dbce(cols), dmul(cols);
    for (index_t c = 0; c < cols; ++c) {
      const double zc = z[c], yc = y[c];
      bce += std::fmax(zc, 0.0) + std::log1p(std::exp(-std::fabs(zc))) - yc * zc;
      dbce[c] = (1.0 / (1.0 + std::exp(-zc)) - yc) * iscale;
      mx = std::fmax(mx, zc);
    }
    for (index_t c = 0; c < cols; ++c) { se += std::exp(z[c] - mx); ysum += y[c]; yz += double(y[c]) * z[c]; }
    for (index_t c = 0; c < cols; ++c) dmul[c] = (std::exp(z[c] - mx) / se * ysum - y[c]) * iscale;
    const double mul = ysum * (mx + std::log(se)) - yz;
    std::vector<float> d(cols + 16, 9.f);  // guard lanes past cols must stay untouched
    const double lb = b.k.bce_row(z.data(), y.data(), d.data(), cols, iscale);
    CHECK(std::fabs(lb - bce) <= 2e-6 * std::fabs(bce) + 1e-6, "%s bce cols=%ld: %.9g vs %.9g", b.name, long(cols), lb, bce);
    double err = 0;  // beside a relative 1e-5: float rounding of sigmoid - y near 1, times iscale
    for (index_t c = 0; c < cols; ++c) err = std::fmax(err, std::fabs(d[c] - dbce[c]) - 1e-5 * std::fabs(dbce[c]));
    CHECK(err <= 4e-8, "%s bce grad cols=%ld: %g", b.name, long(cols), err);
    for (index_t c = cols; c < cols + 16; ++c) CHECK(d[c] == 9.f, "%s bce wrote past cols=%ld", b.name, long(cols));
    CHECK(b.k.bce_row(z.data(), y.data(), nullptr, cols, iscale) == lb, "%s bce without d, cols=%ld", b.name, long(cols));

    std::fill(d.begin(), d.end(), 9.f);
    const double lm = b.k.multinomial_row(z.data(), y.data(), d.data(), cols, iscale);
    CHECK(std::fabs(lm - mul) <= 2e-6 * std::fabs(mul) + 1e-5, "%s multinomial cols=%ld: %.9g vs %.9g", b.name,
          long(cols), lm, mul);
    err = 0;
    for (index_t c = 0; c < cols; ++c) err = std::fmax(err, std::fabs(d[c] - dmul[c]) - 1e-5 * std::fabs(dmul[c]));
    CHECK(err <= 4e-8, "%s multinomial grad cols=%ld: %g", b.name, long(cols), err);
    for (index_t c = cols; c < cols + 16; ++c) CHECK(d[c] == 9.f, "%s multinomial wrote past cols=%ld", b.name, long(cols));
    CHECK(b.k.multinomial_row(z.data(), y.data(), nullptr, cols, iscale) == lm, "%s multinomial without d, cols=%ld",
          b.name, long(cols));
    std::vector<float> zin = z;  // d aliasing o, as the Network calls it
    CHECK(b.k.multinomial_row(zin.data(), y.data(), zin.data(), cols, iscale) == lm &&
              std::memcmp(zin.data(), d.data(), sizeof(float) * cols) == 0,
          "%s multinomial in place, cols=%ld", b.name, long(cols));

  }
}

// The sparse paths' row kernels against the scalar table (to rounding; tanh / exp / logistic are
// polynomial approximations in the ISA bodies).
static void test_rows(const Body& b) {
  const NnKernels& k = b.k;
  std::mt19937 g(1);
  std::normal_distribution<float> n01(0.f, 1.f);
  for (index_t n : kLens) {
    std::vector<float> m(5 * n), init(n), z(n);
    for (auto& x : m) x = n01(g);
    for (auto& x : init) x = n01(g);
    for (auto& x : z) x = 3.f * n01(g);
    const std::int32_t idx[3] = {4, 0, 2};
    const float val[3] = {0.5f, -1.f, 2.f};
    std::vector<float> want(n), out(n);
    ref.gather_sum(n, 3, idx, val, m.data(), n, init.data(), want.data());
    k.gather_sum(n, 3, idx, val, m.data(), n, init.data(), out.data());
    for (index_t i = 0; i < n; ++i) CHECK(std::fabs(out[i] - want[i]) < 1e-5f, "%s gather_sum n=%ld", b.name, long(n));
    std::vector<float> zr = z, zz = z;
    const float mx_ref = ref.row_max(n, zr.data()), mx = k.row_max(n, zz.data());
    CHECK(mx == mx_ref, "%s row_max n=%ld", b.name, long(n));
    const double s_ref = ref.exp_shift_sum(n, zr.data(), mx_ref), s = k.exp_shift_sum(n, zz.data(), mx);
    CHECK(std::fabs(s - s_ref) < 1e-5 * s_ref, "%s exp sum n=%ld: %g vs %g", b.name, long(n), s, s_ref);
    for (index_t i = 0; i < n; ++i) CHECK(std::fabs(zz[i] - zr[i]) <= 1e-6f * (1.f + zr[i]), "%s exp", b.name);
    std::vector<float> tr = z, tt = z;
    ref.tanh_inplace(n, tr.data());
    k.tanh_inplace(n, tt.data());
    for (index_t i = 0; i < n; ++i) CHECK(std::fabs(tt[i] - tr[i]) < 2e-6f, "%s tanh %g", b.name, z[i]);
    std::vector<float> sa = z, acc(n, 1.f);
    k.scale_accumulate(n, sa.data(), 0.25f, acc.data());
    for (index_t i = 0; i < n; ++i)
      CHECK(sa[i] == z[i] * 0.25f && acc[i] == 1.f + z[i] * 0.25f, "%s scale_accumulate", b.name);
    std::vector<float> ya(n, 1.f);
    k.axpy(n, -0.5f, z.data(), ya.data());
    for (index_t i = 0; i < n; ++i) CHECK(std::fabs(ya[i] - (1.f - 0.5f * z[i])) < 1e-6f, "%s axpy", b.name);
    std::vector<float> lr = z, ll = z;
    const double lsum_ref = ref.logistic_row(n, lr.data(), 0.5f), lsum = k.logistic_row(n, ll.data(), 0.5f);
    CHECK(std::fabs(lsum - lsum_ref) < 1e-5 * (1.0 + lsum_ref), "%s logistic sum %g vs %g", b.name, lsum, lsum_ref);
    for (index_t i = 0; i < n; ++i) CHECK(std::fabs(ll[i] - lr[i]) < 1e-6f, "%s sigmoid", b.name);
  }
}

// AVX2 against AVX-512: the same bits for every body.
static void test_avx2_equals_avx512() {
  for (index_t cols : kLens) {
    std::vector<float> z, y;
    make_row(cols, 300 + static_cast<unsigned>(cols), z, y);
    std::vector<float> d2(cols), d5(cols);
    const double b2 = avx2::kNnKernels.bce_row(z.data(), y.data(), d2.data(), cols, 0.5f);
    const double b5 = avx512::kNnKernels.bce_row(z.data(), y.data(), d5.data(), cols, 0.5f);
    CHECK(b2 == b5 && same(d2, d5), "bce avx2 != avx512 at cols=%ld (%.17g vs %.17g)", long(cols), b2, b5);
    const double m2 = avx2::kNnKernels.multinomial_row(z.data(), y.data(), d2.data(), cols, 0.5f);
    const double m5 = avx512::kNnKernels.multinomial_row(z.data(), y.data(), d5.data(), cols, 0.5f);
    CHECK(m2 == m5 && same(d2, d5), "multinomial avx2 != avx512 at cols=%ld (%.17g vs %.17g)", long(cols), m2, m5);
  }
}
#endif  // AEREC_X86

int main() {
  int ran = 0;
#if defined(AEREC_X86)
  for (const Body& b : kBodies) {
    if (!target_enabled(b.target)) continue;
    ++ran;
    test_optim(b);
    test_dropout(b);
    test_loss_rows(b);
    test_rows(b);
  }
  if (target_enabled(Target::avx2) && target_enabled(Target::avx512)) test_avx2_equals_avx512();
#endif
  std::printf("test_network_kernels: %d ISA bodies checked (active %s), %d failures\n", ran, isa_name(active_isa()),
              failures);
  return failures == 0 ? 0 : 1;
}

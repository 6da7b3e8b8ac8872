// Plain C++ test of concurrent inference (no Python): 8 std::threads evaluate one
// Network (dense and CSR input) and one TopkIndex at once, with requests of different sizes (a
// shared workspace would be regrown under another caller), and every answer must equal the
// single-threaded one bit for bit. Then training runs in one thread while others evaluate: no
// crash, no torn answer (each must equal the answer of a weight snapshot taken between two
// updates), and the final weights equal those of training alone. Clean under
// -fsanitize=address,undefined and (built without OpenMP, whose runtime TSan does not see)
// -fsanitize=thread.
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <iterator>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "aerec/network.hpp"
#include "aerec/sparse.hpp"
#include "aerec/topk.hpp"

#include "check.hpp"

using namespace aerec;
using namespace aerec::cpu;

constexpr int kThreads = 8;
constexpr int kRounds = 12;  // requests per thread and object (each thread cycles through all sizes)

template <class T>
static bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0);
}

// Runs body(thread, round) in kThreads threads at once (a start flag lines them up) and turns an
// exception in any of them into a failure.
template <class F>
static void run_threads(F body, int n = kThreads) {
  std::atomic<bool> go{false};
  std::vector<std::thread> ts;
  for (int t = 0; t < n; ++t)
    ts.emplace_back([&, t] {
      while (!go.load()) std::this_thread::yield();
      try {
        for (int r = 0; r < kRounds; ++r) body(t, r);
      } catch (const std::exception& e) {
        CHECK(false, "thread %d threw: %s", t, e.what());
      }
    });
  go = true;
  for (auto& th : ts) th.join();
}

// ------------------------------------------------------------------ CSR requests
struct Csr {
  std::vector<std::int64_t> indptr{0};
  std::vector<std::int32_t> indices;
  std::vector<float> values;
  std::vector<std::int32_t> users;
  index_t rows = 0, cols = 0;
  CsrView<float> view() const { return {indptr.data(), indices.data(), values.data(), rows, cols}; }
};

static Csr random_csr(index_t rows, index_t cols, double density, unsigned seed, index_t n_users) {
  std::mt19937 g(seed);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  Csr c;
  c.rows = rows;
  c.cols = cols;
  for (index_t r = 0; r < rows; ++r) {
    for (index_t j = 0; j < cols; ++j)
      if (u(g) < density) {
        c.indices.push_back(static_cast<std::int32_t>(j));
        c.values.push_back(1.f);
      }
    c.indptr.push_back(static_cast<std::int64_t>(c.indices.size()));
    c.users.push_back(static_cast<std::int32_t>(n_users > 0 ? (r * 7 + seed) % n_users : 0));
  }
  return c;
}

// Request sizes: a lone user, a small batch, several internal batches (batch_size below).
static const index_t kRows[] = {1, 5, 37, 130};
constexpr index_t kBatch = 50;

// Training in one thread while others evaluate: every answer equals the answer of some weight
// snapshot between two epochs (never a mix), and training ends where training alone ends.
static void test_network_train_while_serving() {
  constexpr index_t kI = 120;
  NetworkSpec s;
  s.layer_sizes = {kI, 24, 8, 24, kI};
  s.activations = {Activation::tanh, Activation::identity, Activation::tanh, Activation::identity};
  s.dropout = {0.5, 0.0, 0.0, 0.0};
  s.encoder_depth = 2;
  s.variational = true;
  s.normalize_input = true;
  s.loss = LossKind::multinomial;
  s.seed = 12;
  const Csr train = random_csr(90, kI, 0.06, 21, 0);
  const Csr query = random_csr(7, kI, 0.06, 22, 0);
  auto batch = [](const Csr& c) {
    Batch b;
    b.x = {nullptr, c.rows, kI, kI};
    b.x_csr = c.view();
    b.y_csr = b.x_csr;
    return b;
  };
  auto init = [](Network& net) {
    std::mt19937 g(4);
    std::normal_distribution<float> d(0.f, 0.3f);
    for (int t = 0; t < net.n_tensors(); ++t)
      for (index_t k = 0; k < net.tensor_size(t); ++k) net.param(t)[k] = d(g);
  };
  auto eval = [&](const Network& net) {
    std::vector<float> out(static_cast<std::size_t>(query.rows * kI));
    net.hidden(batch(query), 3, {out.data(), query.rows, kI, kI}, kBatch);
    return out;
  };
  constexpr int kEpochs = 6;
  Network alone(s);
  init(alone);
  std::vector<std::vector<float>> snapshots{eval(alone)};
  for (int e = 0; e < kEpochs; ++e) {
    alone.train_epoch(batch(train), 16, true, static_cast<std::uint64_t>(e));
    snapshots.push_back(eval(alone));
  }
  Network net(s);
  init(net);
  std::atomic<bool> done{false};
  std::atomic<int> torn{0}, answers{0};
  std::vector<std::thread> readers;
  for (int t = 0; t < kThreads - 1; ++t)
    readers.emplace_back([&] {
      try {
        while (!done.load()) {
          const auto out = eval(net);
          ++answers;
          bool known = false;
          for (const auto& snap : snapshots) known = known || same_bits(out, snap);
          if (!known) ++torn;
        }
      } catch (const std::exception& e) {
        CHECK(false, "reader threw: %s", e.what());
      }
    });
  // train_epoch holds the network for the whole epoch, so a reader lands between two epochs.
  try {
    for (int e = 0; e < kEpochs; ++e) net.train_epoch(batch(train), 16, true, static_cast<std::uint64_t>(e));
  } catch (const std::exception& e) {
    CHECK(false, "trainer threw: %s", e.what());
  }
  done = true;
  for (auto& th : readers) th.join();
  CHECK(torn == 0, "train while serving: %d of %d answers match no weight snapshot", torn.load(), answers.load());
  bool same = true;
  for (int t = 0; t < net.n_tensors(); ++t)
    same = same && std::memcmp(net.param(t), alone.param(t), sizeof(float) * net.tensor_size(t)) == 0;
  CHECK(same, "training beside concurrent readers changed the trained weights");
}

// ------------------------------------------------------------------ dense Network
static void test_network_concurrent(bool variational) {
  constexpr index_t kIn = 400;
  NetworkSpec s;
  s.layer_sizes = {kIn, 256, 32, 256, kIn};
  s.activations = {Activation::relu, variational ? Activation::identity : Activation::tanh, Activation::relu,
                   Activation::sigmoid};
  s.dropout = {0.2, 0.0, 0.0, 0.0};
  s.loss = LossKind::mse;
  s.encoder_depth = 2;
  s.variational = variational;
  s.seed = 7;
  Network net(s);
  std::mt19937 g(5);
  std::normal_distribution<float> d(0.f, 0.4f);
  for (int t = 0; t < net.n_tensors(); ++t)
    for (index_t k = 0; k < net.tensor_size(t); ++k) net.param(t)[k] = d(g);
  std::uniform_real_distribution<float> u(0.f, 1.f);
  std::vector<std::vector<float>> xs;
  for (index_t rows : kRows) {
    std::vector<float> x(static_cast<std::size_t>(rows * kIn));
    for (auto& v : x) v = u(g);
    xs.push_back(std::move(x));
  }
  auto hidden = [&](int q, int layer) {
    const index_t rows = kRows[q], cols = s.layer_sizes[layer + 1];
    std::vector<float> out(static_cast<std::size_t>(rows * cols));
    Batch b;
    b.x = {xs[q].data(), rows, kIn, kIn};
    net.hidden(b, layer, {out.data(), rows, cols, cols}, kBatch);
    return out;
  };
  auto loss = [&](int q) {
    Batch b;
    b.x = {xs[q].data(), kRows[q], kIn, kIn};
    b.y = b.x;
    return net.loss(b, kBatch);
  };
  const int nq = static_cast<int>(std::size(kRows));
  std::vector<std::vector<float>> ref;
  std::vector<double> ref_loss;
  for (int q = 0; q < nq; ++q) {
    for (int l = 0; l < 4; ++l) ref.push_back(hidden(q, l));
    ref_loss.push_back(loss(q));
  }
  std::atomic<int> wrong{0};
  run_threads([&](int t, int r) {
    const int q = (t + r) % nq, l = (t + 3 * r) % 4;
    if (!same_bits(hidden(q, l), ref[q * 4 + l])) ++wrong;
    const double lv = loss(q);
    if (std::memcmp(&lv, &ref_loss[q], sizeof lv) != 0) ++wrong;
  });
  CHECK(wrong == 0, "Network%s: %d concurrent hidden/loss answers differ from the single-threaded ones",
        variational ? " (variational)" : "", wrong.load());
}

// The Network on CSR requests: the Mult-VAE pipeline (normalised input, Gaussian bottleneck,
// multinomial) and the CDAE one (per-user rows, logistic with negatives).
static void test_network_sparse_concurrent(bool cdae) {
  constexpr index_t kI = 300, kUsers = 40;
  NetworkSpec s;
  if (cdae) {
    s.layer_sizes = {kI, 24, kI};
    s.activations = {Activation::sigmoid, Activation::identity};
    s.dropout = {0.2, 0.0};
    s.loss = LossKind::logistic;
    s.negative_samples = 2;
    s.n_users = kUsers;
  } else {
    s.layer_sizes = {kI, 48, 12, 48, kI};
    s.activations = {Activation::tanh, Activation::identity, Activation::tanh, Activation::identity};
    s.dropout = {0.5, 0.0, 0.0, 0.0};
    s.encoder_depth = 2;
    s.variational = true;
    s.normalize_input = true;
    s.loss = LossKind::multinomial;
  }
  s.seed = 11;
  Network net(s);
  std::mt19937 g(5);
  std::normal_distribution<float> d(0.f, 0.3f);
  for (int t = 0; t < net.n_tensors(); ++t)
    for (index_t k = 0; k < net.tensor_size(t); ++k) net.param(t)[k] = d(g);
  std::vector<Csr> reqs;
  for (index_t rows : kRows) reqs.push_back(random_csr(rows, kI, 0.05, static_cast<unsigned>(rows), kUsers));
  auto batch = [&](int q) {
    Batch b;
    b.x = {nullptr, kRows[q], kI, kI};
    b.x_csr = reqs[q].view();
    b.y_csr = b.x_csr;
    b.users = cdae ? reqs[q].users.data() : nullptr;
    return b;
  };
  const int L = net.n_layers();
  auto hidden = [&](int q, int layer) {
    const index_t cols = s.layer_sizes[layer + 1];
    std::vector<float> out(static_cast<std::size_t>(kRows[q] * cols));
    net.hidden(batch(q), layer, {out.data(), kRows[q], cols, cols}, kBatch);
    return out;
  };
  const int nq = static_cast<int>(std::size(kRows));
  std::vector<std::vector<float>> ref;
  std::vector<double> ref_loss;
  for (int q = 0; q < nq; ++q) {
    for (int l = 0; l < L; ++l) ref.push_back(hidden(q, l));
    ref_loss.push_back(net.loss(batch(q), kBatch));
  }
  std::atomic<int> wrong{0};
  run_threads([&](int t, int r) {
    const int q = (t + r) % nq, l = (t + 3 * r) % L;
    if (!same_bits(hidden(q, l), ref[q * L + l])) ++wrong;
    const double lv = net.loss(batch(q), kBatch);
    if (std::memcmp(&lv, &ref_loss[q], sizeof lv) != 0) ++wrong;
  });
  CHECK(wrong == 0, "Network (%s, CSR): %d concurrent hidden/loss answers differ from the single-threaded ones",
        cdae ? "CDAE" : "Mult-VAE", wrong.load());
}

// ------------------------------------------------------------------ TopkIndex
static void test_topk_concurrent(TopkPrecision precision, bool prune) {
  const index_t n = 1500, d = 16;
  std::mt19937 g(9);
  std::normal_distribution<float> nd(0.f, 1.f);
  std::vector<float> X(static_cast<std::size_t>(n * d)), bias(static_cast<std::size_t>(n));
  for (index_t i = 0; i < n; ++i) {
    const float scale = 0.5f + static_cast<float>(i % 13) / 6.f;  // skewed norms: pruning bites
    for (index_t j = 0; j < d; ++j) X[i * d + j] = nd(g) * scale;
    bias[i] = nd(g) * 0.1f;
  }
  TopkOptions opt;
  opt.precision = precision;
  opt.prune = prune;
  const TopkIndex ix({X.data(), n, d, d}, bias.data(), opt, 0);
  const index_t k = 10;
  struct Req {
    std::vector<float> q;
    Csr ex;
  };
  std::vector<Req> reqs;
  for (index_t rows : kRows) {
    Req rq;
    rq.q.resize(static_cast<std::size_t>(rows * d));
    for (auto& v : rq.q) v = nd(g);
    rq.ex = random_csr(rows, n, 0.002, static_cast<unsigned>(rows + 100), 0);
    reqs.push_back(std::move(rq));
  }
  auto search = [&](int q, std::vector<std::int32_t>& ids, std::vector<float>& scores) {
    const index_t rows = kRows[q];
    ids.assign(static_cast<std::size_t>(rows * k), 0);
    scores.assign(ids.size(), 0.f);
    const CsrView<float> ex = reqs[q].ex.view();
    ix.search({reqs[q].q.data(), rows, d, d}, k, &ex, ids.data(), scores.data(), 0);
  };
  const int nq = static_cast<int>(reqs.size());
  std::vector<std::vector<std::int32_t>> ref_ids(nq);
  std::vector<std::vector<float>> ref_scores(nq);
  for (int q = 0; q < nq; ++q) search(q, ref_ids[q], ref_scores[q]);
  std::atomic<int> wrong{0};
  run_threads([&](int t, int r) {
    const int q = (t + r) % nq;
    std::vector<std::int32_t> ids;
    std::vector<float> scores;
    search(q, ids, scores);
    if (!same_bits(ids, ref_ids[q]) || !same_bits(scores, ref_scores[q])) ++wrong;
  });
  CHECK(wrong == 0, "TopkIndex (precision %d, prune %d): %d concurrent searches differ", static_cast<int>(precision),
        prune ? 1 : 0, wrong.load());
}

int main() {
  test_network_train_while_serving();
  test_network_concurrent(false);
  test_network_concurrent(true);
  test_network_sparse_concurrent(false);
  test_network_sparse_concurrent(true);
  test_topk_concurrent(TopkPrecision::fp32, false);
  test_topk_concurrent(TopkPrecision::fp32, true);
  test_topk_concurrent(TopkPrecision::int8, true);
  return aerec_test::finish("test_concurrency");
}

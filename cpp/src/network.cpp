#include "aerec/network.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <mutex>
#include <numeric>
#include <type_traits>

#include "aerec/cpu_features.hpp"
#include "aerec/error.hpp"
#include "aerec/parallel.hpp"
#include "aerec/gemm.hpp"
#include "aerec/rng.hpp"
#include "network_kernels.hpp"

namespace aerec::cpu {

LossKind loss_from_name(const std::string& s) {
  if (s == "mse") return LossKind::mse;
  if (s == "bce") return LossKind::bce;
  if (s == "masked_mse") return LossKind::masked_mse;
  if (s == "multinomial") return LossKind::multinomial;
  throw std::invalid_argument("aerec: unknown loss '" + s + "'; use one of mse, bce, masked_mse, multinomial");
}

OptimizerKind optimizer_from_name(const std::string& s) {
  if (s == "adam") return OptimizerKind::adam;
  if (s == "adamw") return OptimizerKind::adamw;
  if (s == "sgd") return OptimizerKind::sgd;
  throw std::invalid_argument("aerec: unknown optimizer '" + s + "'; use one of adam, adamw, sgd");
}

void NetworkSpec::validate() const {
  AEREC_CHECK_ARG(layer_sizes.size() >= 2, "spec: layer_sizes needs at least an input and an output size");
  const size_t L = layer_sizes.size() - 1;
  for (index_t s : layer_sizes) AEREC_CHECK_ARG(s >= 1, "spec: every layer size must be >= 1");
  AEREC_CHECK_ARG(activations.size() == L, "spec: need one activation per weight layer");
  AEREC_CHECK_ARG(dropout.size() == L, "spec: need one dropout rate per weight layer");
  for (double p : dropout) AEREC_CHECK_ARG(p >= 0.0 && p < 1.0, "spec: dropout must be in [0, 1)");
  AEREC_CHECK_ARG(input == InputKind::dense, "spec: only dense input is implemented");
  AEREC_CHECK_ARG(loss != LossKind::bce || activations.back() == Activation::sigmoid,
                  "spec: loss 'bce' needs a sigmoid output layer");
  AEREC_CHECK_ARG(loss != LossKind::multinomial || activations.back() == Activation::identity,
                  "spec: loss 'multinomial' needs an identity output layer (it is computed from the logits)");
  AEREC_CHECK_ARG(l2 >= 0.0 && std::isfinite(l2), "spec: l2 must be finite and >= 0");
  AEREC_CHECK_ARG(learning_rate > 0.0 && std::isfinite(learning_rate), "spec: learning_rate must be > 0");
  AEREC_CHECK_ARG(beta1 >= 0.0 && beta1 < 1.0, "spec: beta1 must be in [0, 1)");
  AEREC_CHECK_ARG(beta2 >= 0.0 && beta2 < 1.0, "spec: beta2 must be in [0, 1)");
  AEREC_CHECK_ARG(epsilon > 0.0 && std::isfinite(epsilon), "spec: epsilon must be > 0");
  AEREC_CHECK_ARG(weight_decay >= 0.0 && std::isfinite(weight_decay), "spec: weight_decay must be >= 0");
  AEREC_CHECK_ARG(momentum >= 0.0 && momentum < 1.0, "spec: momentum must be in [0, 1)");
  AEREC_CHECK_ARG(!nesterov || momentum > 0.0, "spec: nesterov needs momentum > 0");
  AEREC_CHECK_ARG(encoder_depth >= 1 && static_cast<size_t>(encoder_depth) <= L,
                  "spec: encoder_depth must be in [1, number of weight layers]");
  AEREC_CHECK_ARG(n_users >= 0, "spec: n_users must be >= 0");
  if (variational) {
    AEREC_CHECK_ARG(static_cast<size_t>(encoder_depth) < L,
                    "spec: a variational bottleneck needs 1 <= encoder_depth < number of weight layers");
    AEREC_CHECK_ARG(activations[encoder_depth - 1] == Activation::identity,
                    "spec: the variational bottleneck layer (encoder_depth-1) must have identity activation");
    AEREC_CHECK_ARG(beta >= 0.0 && std::isfinite(beta) && anneal_steps >= 0,
                    "spec: beta and anneal_steps must be >= 0");
  }
}

Network::Workspace::Workspace(int n_layers)
    : act(n_layers + 1), dropped(n_layers), mult(n_layers), in_ptr(n_layers, nullptr), in_ld(n_layers, 0),
      drop_on(n_layers, 0) {}

Network::Network(NetworkSpec spec) : spec_((spec.validate(), std::move(spec))), ws_(n_layers()) {
  offsets_.assign(n_tensors() + 1, 0);
  for (int t = 0; t < n_tensors(); ++t) offsets_[t + 1] = offsets_[t] + tensor_size(t);
  params_.assign(offsets_.back(), 0.f);
  grads_.assign(offsets_.back(), 0.f);
  state_.assign(n_state_slots(), std::vector<float>(offsets_.back(), 0.f));
}

void Network::set_step(std::int64_t s) {
  AEREC_CHECK_ARG(s >= 0, "optimizer step must be >= 0");
  std::unique_lock<SharedMutex> lock(mu_);
  step_ = s;
}

void Network::read_params(float* const* dst) const {
  std::shared_lock<SharedMutex> lock(mu_);
  for (int t = 0; t < n_tensors(); ++t) std::memcpy(dst[t], cparam(t), sizeof(float) * tensor_size(t));
}

void Network::write_params(const float* const* src) {
  std::unique_lock<SharedMutex> lock(mu_);
  for (int t = 0; t < n_tensors(); ++t) std::memcpy(param(t), src[t], sizeof(float) * tensor_size(t));
}

void Network::read_state(int slot, float* const* dst) const {
  AEREC_CHECK_INDEX(slot >= 0 && slot < n_state_slots(), "optimizer slot out of range");
  std::shared_lock<SharedMutex> lock(mu_);
  for (int t = 0; t < n_tensors(); ++t)
    std::memcpy(dst[t], state_[slot].data() + offset(t), sizeof(float) * tensor_size(t));
}

void Network::write_state(int slot, const float* const* src) {
  AEREC_CHECK_INDEX(slot >= 0 && slot < n_state_slots(), "optimizer slot out of range");
  std::unique_lock<SharedMutex> lock(mu_);
  for (int t = 0; t < n_tensors(); ++t)
    std::memcpy(state_[slot].data() + offset(t), src[t], sizeof(float) * tensor_size(t));
}

index_t Network::tensor_rows(int t) const {
  AEREC_CHECK_INDEX(t >= 0 && t < n_tensors(), "tensor index out of range");
  if (t == 2 * n_layers()) return spec_.n_users;
  return t % 2 == 0 ? spec_.layer_sizes[t / 2] : 1;
}
index_t Network::tensor_cols(int t) const {
  AEREC_CHECK_INDEX(t >= 0 && t < n_tensors(), "tensor index out of range");
  if (t == 2 * n_layers()) return tensor_cols(0);
  const index_t n = spec_.layer_sizes[t / 2 + 1];
  return (spec_.variational && t / 2 == spec_.encoder_depth - 1) ? 2 * n : n;  // [mu, logvar]
}

int Network::n_state_slots() const {
  if (spec_.optimizer == OptimizerKind::sgd) return spec_.momentum > 0.0 ? 1 : 0;
  return 2;
}
const char* Network::state_slot_name(int slot) const {
  if (spec_.optimizer == OptimizerKind::sgd) return "velocity";
  return slot == 0 ? "m" : "v";
}

// Workspaces grow to the largest use seen and are reused: no allocation in the steady state, and
// nothing allocated that a call does not touch (eval never allocates backward buffers).
float* Network::grow(std::vector<float>& v, index_t n) {
  if (static_cast<index_t>(v.size()) < n) v.assign(static_cast<size_t>(n), 0.f);
  return v.data();
}
double* Network::grow(std::vector<double>& v, index_t n) {
  if (static_cast<index_t>(v.size()) < n) v.assign(static_cast<size_t>(n), 0.0);
  return v.data();
}

namespace {

void check_csr(const CsrView<float>& c, index_t rows, index_t cols, const char* name) {
  const std::string n(name);
  AEREC_CHECK_ARG(c.rows == rows && c.cols == cols, n + " (CSR) has the wrong shape");
  AEREC_CHECK_ARG(c.indices != nullptr || c.rows == 0 || c.indptr[c.rows] == c.indptr[0], n + " (CSR) has no indices");
  AEREC_CHECK_ARG(c.indptr[0] >= 0, n + " (CSR) indptr must start at >= 0");
  for (index_t r = 0; r < c.rows; ++r)
    AEREC_CHECK_ARG(c.indptr[r + 1] >= c.indptr[r], n + " (CSR) indptr must be non-decreasing");
  for (std::int64_t k = c.indptr[0]; k < c.indptr[c.rows]; ++k)
    AEREC_CHECK_INDEX(c.indices[k] >= 0 && c.indices[k] < cols, n + " (CSR) has a column index out of range");
}

}  // namespace

void Network::check_batch(const Batch& b, bool need_y) const {
  AEREC_CHECK_ARG(b.x.cols == n_in(), "x has " + std::to_string(b.x.cols) +
                                          " columns, the network expects " + std::to_string(n_in()));
  AEREC_CHECK_ARG(b.x.rows >= 0, "x has a bad shape");
  if (b.x_csr.indptr != nullptr) {
    check_csr(b.x_csr, b.x.rows, n_in(), "x");
  } else {
    AEREC_CHECK_ARG(b.x.data != nullptr || b.x.rows == 0, "x has no data");
    AEREC_CHECK_ARG(b.x.stride >= b.x.cols, "x has a bad row stride");
  }
  if (spec_.n_users > 0) {
    AEREC_CHECK_ARG(b.users != nullptr || b.x.rows == 0,
                    "this network has a per-user input vector: pass users (int32, one id per row)");
    for (index_t r = 0; r < b.x.rows; ++r)
      AEREC_CHECK_INDEX(b.users[r] >= 0 && b.users[r] < spec_.n_users, "user id out of range");
  } else {
    AEREC_CHECK_ARG(b.users == nullptr, "users is only used by a network with n_users > 0 (CDAE)");
  }
  if (!need_y) return;
  AEREC_CHECK_ARG(b.x.rows > 0, "x has no rows");
  if (b.y_csr.indptr != nullptr) {
    AEREC_CHECK_ARG(b.y_csr.rows == b.x.rows, "y has " + std::to_string(b.y_csr.rows) + " rows, x has " +
                                                  std::to_string(b.x.rows));
    AEREC_CHECK_ARG(b.y_csr.cols == n_out(), "y has " + std::to_string(b.y_csr.cols) +
                                                 " columns, the network expects " + std::to_string(n_out()));
    check_csr(b.y_csr, b.x.rows, n_out(), "y");
  } else {
    AEREC_CHECK_ARG(b.y.data != nullptr, "y is required");
    AEREC_CHECK_ARG(b.y.cols == n_out(), "y has " + std::to_string(b.y.cols) +
                                             " columns, the network expects " + std::to_string(n_out()));
    AEREC_CHECK_ARG(b.y.rows == b.x.rows, "y has " + std::to_string(b.y.rows) + " rows, x has " +
                                              std::to_string(b.x.rows));
    AEREC_CHECK_ARG(b.y.stride >= b.y.cols, "y has a bad row stride");
  }
  if (b.mask.data != nullptr) {
    AEREC_CHECK_ARG(spec_.loss == LossKind::masked_mse, "mask is only used by loss='masked_mse'");
    AEREC_CHECK_ARG(b.mask.rows == b.x.rows && b.mask.cols == n_out() && b.mask.stride >= b.mask.cols,
                    "mask must have the shape of y");
  }
}

namespace {

constexpr index_t kParallelWork = index_t(1) << 16;  // elements; below this one thread is faster

// Inverted dropout on a rows x cols block: dst = src * mult, mult in {0, 1/(1-p)} from the
// counter-based stream (rng.hpp). Element e = r * cols + c, as the NumPy reference.
void dropout_portable(index_t rows, index_t cols, const float* src, index_t lds, float* dst,
                      float* mult, std::uint64_t key, float p) {
  const float scale = 1.f / (1.f - p);
  for (index_t r = 0; r < rows; ++r) {
    const std::uint64_t base = key + static_cast<std::uint64_t>(r * cols + 1) * rng::kGolden;
    const float* s = src + r * lds;
    float* d = dst + r * cols;
    float* m = mult + r * cols;
    for (index_t c = 0; c < cols; ++c) {
      const std::uint64_t h = rng::mix64(base + static_cast<std::uint64_t>(c) * rng::kGolden);
      const float u = static_cast<float>(h >> 40) * 0x1p-24f;
      const float k = u >= p ? scale : 0.f;
      m[c] = k;
      d[c] = s[c] * k;
    }
  }
}

// Calls f(std::integral_constant<Activation, A>) so elementwise loops get the activation as a
// compile-time constant (the switch in activation.hpp folds away and the loop vectorises).
template <class F>
void with_activation(Activation a, F&& f) {
  using A = Activation;
  switch (a) {
    case A::identity: f(std::integral_constant<A, A::identity>{}); return;
    case A::relu: f(std::integral_constant<A, A::relu>{}); return;
    case A::sigmoid: f(std::integral_constant<A, A::sigmoid>{}); return;
    case A::tanh: f(std::integral_constant<A, A::tanh>{}); return;
    case A::elu: f(std::integral_constant<A, A::elu>{}); return;
    case A::selu: f(std::integral_constant<A, A::selu>{}); return;
  }
}

// One row of BCE from logits: sum_c softplus(z_c) - y_c z_c, and d_c = (sigmoid(z_c) - y_c) * iscale
// when d. softplus and sigmoid share e = exp(-|z|); log1p(e) = log(u) * e / (u - 1), u = 1 + e
// (exact correction for the rounding of u; glibc's log1pf is several times slower than logf).
double bce_row_portable(const float* z, const float* y, float* d, index_t cols, float iscale) {
  double sum = 0.0;
  for (index_t c = 0; c < cols; ++c) {
    const float zc = z[c];
    const float e = std::exp(-std::fabs(zc));
    const float u = 1.f + e;
    const float l1p = u == 1.f ? e : std::log(u) * (e / (u - 1.f));
    const float term = (std::max(zc, 0.f) + l1p) - y[c] * zc;
    sum += term;
    if (d) {
      const float inv = 1.f / u;
      const float sig = zc >= 0.f ? inv : e * inv;
      d[c] = (sig - y[c]) * iscale;
    }
  }
  return sum;
}

// One row of the multinomial log-likelihood: ysum * lse - sum_c y_c o_c with
// lse = max + log sum exp(o - max); d_c = (softmax_c * ysum - y_c) * iscale when d (d first holds
// exp(o - max)).
double multinomial_row_portable(const float* o, const float* y, float* d, index_t cols, float iscale) {
  float mx = o[0];
  for (index_t c = 1; c < cols; ++c) mx = std::max(mx, o[c]);
  double se = 0.0, ysum = 0.0, yz = 0.0;
  for (index_t c = 0; c < cols; ++c) {
    const float e = std::exp(o[c] - mx);
    if (d) d[c] = e;
    se += e;
    ysum += y[c];
    const float p = y[c] * o[c];
    yz += p;
  }
  if (d) {
    const float inv = static_cast<float>(1.0 / se), ys = static_cast<float>(ysum);
    for (index_t c = 0; c < cols; ++c) d[c] = ((d[c] * inv) * ys - y[c]) * iscale;
  }
  return ysum * (static_cast<double>(mx) + std::log(se)) - yz;
}

using LossRowFn = double (*)(const float*, const float*, float*, index_t, float);

// db[c] = sum_r dz[r][c], rows in order (deterministic).
void column_sums_range(index_t rows, index_t cols, index_t c0, index_t c1, const float* __restrict dz,
                       float* __restrict db) {
  std::fill(db + c0, db + c1, 0.f);
  for (index_t r = 0; r < rows; ++r) {
    const float* zr = dz + r * cols;
    for (index_t c = c0; c < c1; ++c) db[c] += zr[c];
  }
}

// Dispatch + threads: every element has its own counter, so splitting rows over threads (or
// vectorising) draws the same mask.
void dropout_forward(index_t rows, index_t cols, const float* src, index_t lds, float* dst,
                     float* mult, std::uint64_t key, float p) {
  const auto body = dispatch(&dropout_portable, AEREC_X86_VARIANTS({Target::avx2, &avx2::dropout_forward},
                                                                      {Target::avx512, &avx512::dropout_forward}));
  const int nt = rows * cols >= (index_t(1) << 16) && rows > 1 ? resolve_threads(0) : 1;
#ifdef AEREC_OPENMP
  if (nt > 1) {
    const index_t chunk = (rows + nt - 1) / nt;
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int t = 0; t < nt; ++t) {
      const index_t lo = t * chunk, hi = std::min(rows, lo + chunk);
      if (lo < hi)
        body(hi - lo, cols, src + lo * lds, lds, dst + lo * cols, mult + lo * cols,
             key + static_cast<std::uint64_t>(lo * cols) * rng::kGolden, p);
    }
    return;
  }
#endif
  body(rows, cols, src, lds, dst, mult, key, p);
}

// f(k) for k in [0, n_blocks), over threads when `work` (elements touched) is large. Each block is
// independent, so the result never depends on the thread count.
template <class F>
void parallel_blocks(index_t n_blocks, index_t work, F&& f) {
  const int nt = (work >= kParallelWork && n_blocks > 1) ? resolve_threads(0) : 1;
#ifdef AEREC_OPENMP
  if (nt > 1) {
    ExceptionSlot slot;
#pragma omp parallel for num_threads(nt) schedule(static)
    for (index_t k = 0; k < n_blocks; ++k) slot.run([&] { f(k); });
    slot.rethrow();
    return;
  }
#endif
  for (index_t k = 0; k < n_blocks; ++k) f(k);
}

}  // namespace

void Network::run_forward(Workspace& w, const Batch& sb, index_t rows, int last, bool training, bool logits,
                          float* out, index_t ldo) const {
  const auto& s = spec_.layer_sizes;
  const int L = n_layers();
  const float* a = sb.x.data;
  index_t lda = sb.x.stride;
  for (int i = 0; i <= last; ++i) {
    const index_t nin = s[i], nz = s[i + 1];
    float* c;  // the layer's output (z for the variational layer)
    index_t ldc = nz;
    if (i == last && out != nullptr) {
      c = out;
      ldc = ldo;
    } else {
      c = grow(w.act[i + 1], rows * nz);
    }
    const Activation act = (logits && i == L - 1) ? Activation::identity : spec_.activations[i];
    // The variational layer's GEMM writes [mu, logvar] (2 nz wide) to w.stats, then z goes to c.
    const bool vae = spec_.variational && i == spec_.encoder_depth - 1;
    float* const c_layer = c;
    const index_t ldc_layer = ldc;
    const index_t nout = vae ? 2 * nz : nz;
    if (vae) {
      c = grow(w.stats, rows * nout);
      ldc = nout;
    }
    if (i == 0 && sb.x_csr.indptr != nullptr) {
      w.drop_on[0] = training && spec_.dropout[0] > 0.0;
      w.in_ptr[0] = nullptr;
      sparse_first_layer(sb, rows, training, act, c, ldc);
    } else {
      w.drop_on[i] = training && spec_.dropout[i] > 0.0;
      if (w.drop_on[i]) {
        dropout_forward(rows, nin, a, lda, grow(w.dropped[i], rows * nin), grow(w.mult[i], rows * nin),
                        rng::dropout_key(spec_.seed, static_cast<std::uint64_t>(step_), i),
                        static_cast<float>(spec_.dropout[i]));
        a = w.dropped[i].data();
        lda = nin;
      }
      w.in_ptr[i] = a;
      w.in_ld[i] = lda;
      Epilogue ep;
      ep.bias = cparam(2 * i + 1);
      const bool users = i == 0 && sb.users != nullptr;
      ep.act = users ? Activation::identity : act;
      sgemm(false, false, rows, nout, nin, 1.f, a, lda, cparam(2 * i), nout, 0.f, c, ldc, ep);
      if (users) {  // act((x W + b) + U[user])
        add_user_rows(sb, rows, c, ldc);
        Epilogue ea;
        ea.act = act;
        if (act != Activation::identity) bias_activation(rows, nout, c, ldc, ea);
      }
    }
    if (vae) {
      reparameterise(w, rows, nz, training, i, c_layer, ldc_layer);
      c = c_layer;
      ldc = ldc_layer;
    }
    a = c;
    lda = ldc;
  }
}

void Network::reparameterise(Workspace& w, index_t rows, index_t d, bool training, int layer, float* z,
                             index_t ldz) const {
  const float* st = w.stats.data();
  float* ev = grow(w.vae_ev, rows * d);
  float* sd = grow(w.vae_std, rows * d);
  float* eps = grow(w.vae_eps, rows * d);
  const std::uint64_t key = rng::noise_key(spec_.seed, static_cast<std::uint64_t>(step_), layer);
  parallel_blocks((rows + 7) / 8, rows * d * 8, [&](index_t blk) {
    for (index_t r = blk * 8; r < std::min(rows, (blk + 1) * 8); ++r) {
      for (index_t j = 0; j < d; ++j) {
        const index_t e = r * d + j;
        const float mu = st[r * 2 * d + j], lv = st[r * 2 * d + d + j];
        ev[e] = std::exp(lv);
        sd[e] = std::exp(lv * 0.5f);
        eps[e] = training ? rng::gaussian(key, static_cast<std::uint64_t>(e)) : 0.f;
        z[r * ldz + j] = training ? mu + eps[e] * sd[e] : mu;
      }
    }
  });
  w.vae_rows = rows;
}

double Network::kl_sum(const Workspace& w) const {
  if (!spec_.variational) return 0.0;
  const index_t d = spec_.layer_sizes[spec_.encoder_depth];
  const float* st = w.stats.data();
  const float* ev = w.vae_ev.data();
  double sum = 0.0;
  for (index_t r = 0; r < w.vae_rows; ++r)
    for (index_t j = 0; j < d; ++j) {
      const float mu = st[r * 2 * d + j], lv = st[r * 2 * d + d + j];
      const float k = 0.5f * (((ev[r * d + j] - lv) + mu * mu) - 1.f);
      sum += k;
    }
  return sum;
}

double Network::beta() const {
  if (spec_.anneal_steps > 0)
    return std::min(spec_.beta, static_cast<double>(step_) / static_cast<double>(spec_.anneal_steps));
  return spec_.beta;
}

namespace {

// Value of CSR entry (batch row r, column col) after dropout: the dense stream at e = r * n_in + col.
inline float dropped_value(float v, std::uint64_t key, index_t r, index_t n_in, index_t col, float p,
                           float scale) {
  const std::uint64_t h = rng::mix64(key + static_cast<std::uint64_t>(r * n_in + col + 1) * rng::kGolden);
  const float u = static_cast<float>(h >> 40) * 0x1p-24f;
  return v * (u >= p ? scale : 0.f);
}

inline std::int64_t csr_row(const Batch& sb, index_t r) {
  return sb.row_ids ? sb.row_ids[r] : sb.row0 + r;
}

}  // namespace

void Network::sparse_first_layer(const Batch& sb, index_t rows, bool training, Activation act, float* c,
                                 index_t ldc) const {
  const index_t nin = n_in(), nout = tensor_cols(0);
  const float* W = cparam(0);
  const CsrView<float>& x = sb.x_csr;
  const bool drop = training && spec_.dropout[0] > 0.0;
  const float p = static_cast<float>(spec_.dropout[0]);
  const float scale = 1.f / (1.f - p);
  const std::uint64_t key = rng::dropout_key(spec_.seed, static_cast<std::uint64_t>(step_), 0);
  std::int64_t nnz = 0;
  for (index_t r = 0; r < rows; ++r) nnz += x.indptr[csr_row(sb, r) + 1] - x.indptr[csr_row(sb, r)];
  constexpr index_t kRows = 8;
  parallel_blocks((rows + kRows - 1) / kRows, nnz * nout, [&](index_t blk) {
    for (index_t r = blk * kRows; r < std::min(rows, (blk + 1) * kRows); ++r) {
      float* __restrict cr = c + r * ldc;
      std::fill(cr, cr + nout, 0.f);
      const std::int64_t src = csr_row(sb, r);
      for (std::int64_t k = x.indptr[src]; k < x.indptr[src + 1]; ++k) {
        const index_t col = x.indices[k];
        float v = x.values ? x.values[k] : 1.f;
        if (drop) v = dropped_value(v, key, r, nin, col, p, scale);
        if (v == 0.f) continue;
        const float* __restrict w = W + col * nout;
        for (index_t j = 0; j < nout; ++j) cr[j] += v * w[j];
      }
    }
  });
  Epilogue ep;
  ep.bias = cparam(1);
  ep.act = act;
  if (sb.users != nullptr) {  // act((x W + b) + U[user])
    const float* b = cparam(1);
    for (index_t r = 0; r < rows; ++r)
      for (index_t j = 0; j < nout; ++j) c[r * ldc + j] += b[j];
    add_user_rows(sb, rows, c, ldc);
    ep.bias = nullptr;
    if (act == Activation::identity) return;
  }
  bias_activation(rows, nout, c, ldc, ep);
}

void Network::add_user_rows(const Batch& sb, index_t rows, float* c, index_t ldc) const {
  const index_t n = tensor_cols(0);
  const float* U = params_.data() + offsets_[2 * n_layers()];
  for (index_t r = 0; r < rows; ++r) {
    const float* u = U + static_cast<index_t>(sb.users[r]) * n;
    float* cr = c + r * ldc;
    for (index_t j = 0; j < n; ++j) cr[j] += u[j];
  }
}

void Network::sparse_weight_grad(const Batch& sb, index_t rows, const float* dz, float* dW, float l2) {
  const index_t nin = n_in(), nout = tensor_cols(0);
  const float* W = param(0);
  const CsrView<float>& x = sb.x_csr;
  const index_t n = nin * nout;
  // Rows of W0 no entry touches get 0 (+ l2 W), as the dense product would give them.
  if (l2 != 0.f) {
    for (index_t k = 0; k < n; ++k) dW[k] = l2 * W[k];
  } else {
    std::fill(dW, dW + n, 0.f);
  }
  const bool drop = ws_.drop_on[0] != 0;
  const float p = static_cast<float>(spec_.dropout[0]);
  const float scale = 1.f / (1.f - p);
  const std::uint64_t key = rng::dropout_key(spec_.seed, static_cast<std::uint64_t>(step_), 0);
  // Sequential scatter in row order: deterministic.
  for (index_t r = 0; r < rows; ++r) {
    const std::int64_t src = csr_row(sb, r);
    const float* __restrict zr = dz + r * nout;
    for (std::int64_t k = x.indptr[src]; k < x.indptr[src + 1]; ++k) {
      const index_t col = x.indices[k];
      float v = x.values ? x.values[k] : 1.f;
      if (drop) v = dropped_value(v, key, r, nin, col, p, scale);
      if (v == 0.f) continue;
      float* __restrict g = dW + col * nout;
      for (index_t j = 0; j < nout; ++j) g[j] += v * zr[j];
    }
  }
}

Batch Network::minibatch(Workspace& w, const Batch& b, index_t r0, index_t rows, const std::int64_t* ids) const {
  const index_t nin = n_in(), nout = n_out();
  Batch mb;
  mb.x.rows = rows;
  mb.x.cols = nin;
  if (b.x_csr.indptr != nullptr) {
    mb.x_csr = b.x_csr;
    mb.row_ids = ids ? ids + r0 : nullptr;
    mb.row0 = b.row0 + r0;
  } else if (ids) {
    float* xb = grow(w.xb, rows * nin);
    for (index_t r = 0; r < rows; ++r) std::memcpy(xb + r * nin, b.x.row(ids[r0 + r]), sizeof(float) * nin);
    mb.x = {xb, rows, nin, nin};
  } else {
    mb.x = {b.x.row(r0), rows, nin, b.x.stride};
  }
  if (b.y_csr.indptr != nullptr) {
    const CsrView<float>& y = b.y_csr;
    float* yb = grow(w.yb, rows * nout);
    for (index_t r = 0; r < rows; ++r) {
      float* dst = yb + r * nout;
      std::fill(dst, dst + nout, 0.f);
      const std::int64_t src = ids ? ids[r0 + r] : r0 + r;
      for (std::int64_t k = y.indptr[src]; k < y.indptr[src + 1]; ++k)
        dst[y.indices[k]] += y.values ? y.values[k] : 1.f;
    }
    mb.y = {yb, rows, nout, nout};
  } else if (ids && b.x.data != nullptr && b.y.data == b.x.data && b.y.stride == b.x.stride && nin == nout) {
    mb.y = {w.xb.data(), rows, nout, nout};  // autoencoder, y = x: gathered once
  } else if (ids) {
    float* yb = grow(w.yb, rows * nout);
    for (index_t r = 0; r < rows; ++r) std::memcpy(yb + r * nout, b.y.row(ids[r0 + r]), sizeof(float) * nout);
    mb.y = {yb, rows, nout, nout};
  } else if (b.y.data != nullptr) {
    mb.y = {b.y.row(r0), rows, nout, b.y.stride};
  }
  if (b.users != nullptr) {
    if (ids) {
      if (static_cast<index_t>(w.ub.size()) < rows) w.ub.assign(rows, 0);
      for (index_t r = 0; r < rows; ++r) w.ub[r] = b.users[ids[r0 + r]];
      mb.users = w.ub.data();
    } else {
      mb.users = b.users + r0;
    }
  }
  if (b.mask.data != nullptr) {
    if (ids) {
      float* m = grow(w.mb, rows * nout);
      for (index_t r = 0; r < rows; ++r) std::memcpy(m + r * nout, b.mask.row(ids[r0 + r]), sizeof(float) * nout);
      mb.mask = {m, rows, nout, nout};
    } else {
      mb.mask = {b.mask.row(r0), rows, nout, b.mask.stride};
    }
  }
  return mb;
}

double Network::loss_rows(Workspace& w, const float* out, index_t rows, const Batch& b, index_t r0, float* dz,
                          double* count) const {
  const index_t cols = n_out();
  const bool bce = spec_.loss == LossKind::bce, masked = spec_.loss == LossKind::masked_mse;
  const bool multinomial = spec_.loss == LossKind::multinomial;
  *count = (masked || multinomial) ? static_cast<double>(rows) : static_cast<double>(rows) * static_cast<double>(cols);
  const float iscale = static_cast<float>(1.0 / *count), gscale = static_cast<float>(2.0 / *count);
  const index_t n_blocks = (rows + kLossBlockRows - 1) / kLossBlockRows;
  double* partial = grow(w.partials, n_blocks);
  LossRowFn row_fn = multinomial ? multinomial_row_portable : bce_row_portable;
  row_fn = dispatch(row_fn, AEREC_X86_VARIANTS({Target::avx2, multinomial ? avx2::multinomial_row : avx2::bce_row},
                                               {Target::avx512, multinomial ? avx512::multinomial_row : avx512::bce_row}));
  with_activation(spec_.activations.back(), [&](auto tag) {
    constexpr Activation A = decltype(tag)::value;
    // Sum of the loss over rows [lo, hi) of this batch; writes dL/dz there when dz.
    auto block = [&](index_t lo, index_t hi) {
      double sum = 0.0;
      for (index_t r = lo; r < hi; ++r) {
        const float* o = out + r * cols;
        const float* y = b.y.row(r0 + r);
        float* d = dz ? dz + r * cols : nullptr;
        if (multinomial || bce) {
          sum += row_fn(o, y, d, cols, iscale);
          continue;
        }
        const float* m = (masked && b.mask.data) ? b.mask.row(r0 + r) : nullptr;
        for (index_t c = 0; c < cols; ++c) {
          float diff = o[c] - y[c];
          if (masked && !(m ? m[c] != 0.f : y[c] != 0.f)) diff = 0.f;
          const float sq = diff * diff;
          sum += sq;
          if (d) d[c] = (diff * gscale) * activation_grad_from_output(A, o[c]);
        }
      }
      return sum;
    };
    // Fixed blocks summed in order: the same bits whatever the thread count.
    parallel_blocks(n_blocks, rows * cols, [&](index_t k) {
      partial[k] = block(k * kLossBlockRows, std::min(rows, (k + 1) * kLossBlockRows));
    });
  });
  double sum = 0.0;
  for (index_t k = 0; k < n_blocks; ++k) sum += partial[k];
  return sum;
}

double Network::l2_term() const {
  if (spec_.l2 == 0.0) return 0.0;
  double s = 0.0;
  for (int t = 0; t < n_tensors(); t += 2) {  // W0, W1, ..., and U
    const float* w = params_.data() + offsets_[t];
    const index_t n = tensor_size(t);
    for (index_t k = 0; k < n; ++k) {
      const float sq = w[k] * w[k];
      s += sq;
    }
  }
  return 0.5 * spec_.l2 * s;
}

double Network::loss_and_grads(const Batch& b, bool training) {
  const auto& s = spec_.layer_sizes;
  const int L = n_layers();
  const index_t rows = b.x.rows;
  const bool logits = spec_.loss == LossKind::bce;
  run_forward(ws_, b, rows, L - 1, training, logits, nullptr, 0);
  double count = 1.0;
  index_t widest = *std::max_element(s.begin(), s.end());
  for (int t = 0; t < n_tensors(); t += 2) widest = std::max(widest, tensor_cols(t));
  float* dz = grow(dz_, rows * widest);
  float* da = grow(da_, rows * widest);
  const double sum = loss_rows(ws_, ws_.act[L].data(), rows, b, 0, dz, &count);
  const double beta_t = beta();
  double loss = sum / count + l2_term();
  if (spec_.variational) loss += beta_t * kl_sum(ws_) / static_cast<double>(rows);
  const float l2 = static_cast<float>(spec_.l2);
  for (int i = L - 1; i >= 0; --i) {
    const index_t nin = s[i], nout = tensor_cols(2 * i);
    float* dW = grads_.data() + offsets_[2 * i];
    float* db = grads_.data() + offsets_[2 * i + 1];
    const float* W = params_.data() + offsets_[2 * i];
    if (i == 0 && b.users != nullptr) {
      // dU = scatter-add of dz rows by user (+ l2 U), rows in order: deterministic.
      const index_t T = 2 * n_layers(), nu = tensor_size(T);
      float* dU = grads_.data() + offsets_[T];
      const float* U = params_.data() + offsets_[T];
      if (l2 != 0.f) {
        for (index_t k = 0; k < nu; ++k) dU[k] = l2 * U[k];
      } else {
        std::fill(dU, dU + nu, 0.f);
      }
      for (index_t r = 0; r < rows; ++r) {
        float* g = dU + static_cast<index_t>(b.users[r]) * nout;
        const float* zr = dz + r * nout;
        for (index_t j = 0; j < nout; ++j) g[j] += zr[j];
      }
    }
    if (i == 0 && b.x_csr.indptr != nullptr) {
      sparse_weight_grad(b, rows, dz, dW, l2);
    } else {
      // dW = A^T dZ (+ l2 W, through beta: C preloaded with W).
      if (l2 != 0.f) std::memcpy(dW, W, sizeof(float) * nin * nout);
      sgemm(true, false, nin, nout, rows, 1.f, ws_.in_ptr[i], ws_.in_ld[i], dz, nout, l2, dW, nout);
    }
    {
      constexpr index_t kCols = 256;  // column blocks: each sum keeps its row order
      const index_t nb = (nout + kCols - 1) / kCols;
      parallel_blocks(nb, rows * nout, [&](index_t k) {
        column_sums_range(rows, nout, k * kCols, std::min(nout, (k + 1) * kCols), dz, db);
      });
    }
    if (i == 0) break;
    // dA = dZ W^T, then through dropout and the previous layer's activation.
    sgemm(false, true, rows, nin, nout, 1.f, dz, nout, W, nout, 0.f, da, nin);
    const Activation act = spec_.activations[i - 1];
    const float* y = ws_.act[i].data();
    const index_t n = rows * nin;
    const float* m = ws_.drop_on[i] ? ws_.mult[i].data() : nullptr;
    with_activation(act, [&](auto tag) {
      constexpr Activation A = decltype(tag)::value;
      if (m == nullptr && A == Activation::identity) return;
      constexpr index_t kChunk = index_t(1) << 14;
      parallel_blocks((n + kChunk - 1) / kChunk, n, [&](index_t blk) {
        const index_t lo = blk * kChunk, hi = std::min(n, lo + kChunk);
        float* __restrict d = da;
        if (m != nullptr) {
          for (index_t k = lo; k < hi; ++k) d[k] = (d[k] * m[k]) * activation_grad_from_output(A, y[k]);
        } else {
          for (index_t k = lo; k < hi; ++k) d[k] = d[k] * activation_grad_from_output(A, y[k]);
        }
      });
    });
    if (spec_.variational && i - 1 == spec_.encoder_depth - 1) {
      // Through z = mu + eps * std and beta * KL / rows, into [dmu, dlogvar] (2 nin wide, in dz,
      // whose contents are consumed).
      const index_t d = nin;
      const float cb = static_cast<float>(beta_t / static_cast<double>(rows));
      const float* st = ws_.stats.data();
      const float* ev = ws_.vae_ev.data();
      const float* sd = ws_.vae_std.data();
      const float* eps = ws_.vae_eps.data();
      for (index_t r = 0; r < rows; ++r)
        for (index_t j = 0; j < d; ++j) {
          const index_t e = r * d + j;
          const float g = da[e], mu = st[r * 2 * d + j];
          dz[r * 2 * d + j] = g + cb * mu;
          dz[r * 2 * d + d + j] = (g * eps[e]) * (0.5f * sd[e]) + (cb * 0.5f) * (ev[e] - 1.f);
        }
    } else {
      std::swap(dz, da);
    }
  }
  return loss;
}

void Network::apply_optimizer() {
  const double t = static_cast<double>(step_) + 1.0;
  const int T = n_tensors();
  if (spec_.optimizer == OptimizerKind::sgd) {
    SgdCoeffs c;
    c.lr = static_cast<float>(spec_.learning_rate);
    c.momentum = static_cast<float>(spec_.momentum);
    c.weight_decay = static_cast<float>(spec_.weight_decay);
    c.nesterov = spec_.nesterov;
    const bool mom = spec_.momentum > 0.0;
    for (int k = 0; k < T; ++k)
      sgd_update(tensor_size(k), param(k), grad(k), mom ? state(0, k) : nullptr, c);
  } else {
    AdamCoeffs c;
    c.lr = static_cast<float>(spec_.learning_rate);
    c.beta1 = static_cast<float>(spec_.beta1);
    c.beta2 = static_cast<float>(spec_.beta2);
    c.one_minus_beta1 = static_cast<float>(1.0 - spec_.beta1);
    c.one_minus_beta2 = static_cast<float>(1.0 - spec_.beta2);
    c.bc1 = static_cast<float>(1.0 - std::pow(spec_.beta1, t));
    c.bc2 = static_cast<float>(1.0 - std::pow(spec_.beta2, t));
    c.eps = static_cast<float>(spec_.epsilon);
    if (spec_.optimizer == OptimizerKind::adamw)
      c.lr_wd = static_cast<float>(spec_.learning_rate * spec_.weight_decay);
    else
      c.weight_decay = static_cast<float>(spec_.weight_decay);
    for (int k = 0; k < T; ++k)
      adam_update(tensor_size(k), param(k), grad(k), state(0, k), state(1, k), c);
  }
  ++step_;
}

void Network::hidden(const Batch& b, int layer, MatrixView<float> out, index_t batch_size) const {
  AEREC_CHECK_INDEX(layer >= 0 && layer < n_layers(), "layer out of range");
  AEREC_CHECK_ARG(batch_size >= 1, "batch_size must be >= 1");
  check_batch(b, false);
  const index_t n = b.x.rows;
  AEREC_CHECK_ARG(out.rows == n && out.cols == spec_.layer_sizes[layer + 1] && out.stride >= out.cols,
                  "out has the wrong shape");
  if (n == 0) return;
  Workspace w(n_layers());  // per call: concurrent callers share nothing mutable
  std::shared_lock<SharedMutex> lock(mu_);
  for (index_t r0 = 0; r0 < n; r0 += batch_size) {
    const index_t rows = std::min(batch_size, n - r0);
    const Batch mb = minibatch(w, b, r0, rows, nullptr);
    run_forward(w, mb, rows, layer, false, false, out.row(r0), out.stride);
  }
}

double Network::loss(const Batch& b, index_t batch_size) const {
  AEREC_CHECK_ARG(batch_size >= 1, "batch_size must be >= 1");
  check_batch(b, true);
  const int L = n_layers();
  const index_t n = b.x.rows;
  const index_t bs = std::min(batch_size, n);
  double total = 0.0, count = 0.0, kl = 0.0;
  Workspace w(L);  // per call: concurrent callers share nothing mutable
  std::shared_lock<SharedMutex> lock(mu_);
  for (index_t r0 = 0; r0 < n; r0 += bs) {
    const index_t rows = std::min(bs, n - r0);
    const Batch mb = minibatch(w, b, r0, rows, nullptr);
    run_forward(w, mb, rows, L - 1, false, spec_.loss == LossKind::bce, nullptr, 0);
    double c = 0.0;
    total += loss_rows(w, w.act[L].data(), rows, mb, 0, nullptr, &c);
    count += c;
    kl += kl_sum(w);
  }
  double loss = total / count + l2_term();
  if (spec_.variational) loss += beta() * kl / static_cast<double>(n);
  return loss;
}

double Network::gradients_locked(const Batch& b, bool training) {
  check_batch(b, true);
  return loss_and_grads(minibatch(ws_, b, 0, b.x.rows, nullptr), training);
}

double Network::gradients(const Batch& b, bool training, float* grads_out) {
  std::unique_lock<SharedMutex> lock(mu_);
  const double loss = gradients_locked(b, training);
  if (grads_out) std::memcpy(grads_out, grads_.data(), sizeof(float) * grads_.size());
  return loss;
}

double Network::train_batch(const Batch& b) {
  std::unique_lock<SharedMutex> lock(mu_);
  const double loss = gradients_locked(b, true);
  apply_optimizer();
  return loss;
}

double Network::train_epoch(const Batch& b, index_t batch_size, bool shuffle, std::uint64_t seed) {
  AEREC_CHECK_ARG(batch_size >= 1, "batch_size must be >= 1");
  check_batch(b, true);
  std::unique_lock<SharedMutex> lock(mu_);
  const index_t n = b.x.rows;
  const index_t bs = std::min(batch_size, n);
  if (shuffle) {
    keys_.resize(n);
    order_.resize(n);
    const std::uint64_t k = rng::shuffle_key(spec_.seed, seed);
    for (index_t i = 0; i < n; ++i)
      keys_[i] = rng::mix64(k + static_cast<std::uint64_t>(i + 1) * rng::kGolden);
    std::iota(order_.begin(), order_.end(), std::int64_t(0));
    std::sort(order_.begin(), order_.end(), [&](std::int64_t a, std::int64_t c) {
      return keys_[a] < keys_[c] || (keys_[a] == keys_[c] && a < c);
    });
  }
  double total = 0.0;
  for (index_t r0 = 0; r0 < n; r0 += bs) {
    const index_t rows = std::min(bs, n - r0);
    const Batch mb = minibatch(ws_, b, r0, rows, shuffle ? order_.data() : nullptr);
    total += loss_and_grads(mb, true) * static_cast<double>(rows);
    apply_optimizer();
  }
  return total / static_cast<double>(n);
}

}  // namespace aerec::cpu

// aerec::cpu::Network (see network.hpp; the maths and the random streams in python/aerec/nn/spec.py).
//
// Shapes, stated once: B = rows of the minibatch; I = n_in, O = n_out; n_l = layer_sizes[l];
// c_l = cols of W_l (2 n_{l+1} for the variational layer, d = n_{l+1}); rid[r] = the row of the
// x given to the call that batch row r is (the key of every random stream).
//
// One training step, in order (backward reads as forward reversed):
//   minibatch    gather rows (shuffle), L2-normalise, CSR: dropout on the stored entries
//   forward      layer 0: CSR gather-sum SpMM (+ b + U[user], activation) | dropout + GEMM
//                layer l: dropout + GEMM with the fused bias + activation; the variational layer
//                writes [mu, logvar] and samples z
//   loss         mse | bce | masked_mse | multinomial rows on a dense y; multinomial on a CSR y and
//                logistic on sparse targets (output-bias gradient fused per thread); dL/dz in
//                place of the logits
//   backward     layer l: db, dW = A^T dZ (+ l2 W), dA = dZ W^T through dropout / activation /
//                the reparameterisation; layer 0: dU rows, the CSC of a CSR batch (dW0 rows)
//   optimizer    one parallel region: W0 / U rows (row-sparse: lazy, or dW0 from the CSC),
//                then the flat buffer in chunks
#include "aerec/network.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <mutex>
#include <type_traits>
#if defined(AEREC_X86)
#include <x86intrin.h>
#endif

#include "aerec/error.hpp"
#include "aerec/gemm.hpp"
#include "aerec/nn_kernels.hpp"
#include "aerec/parallel.hpp"
#include "aerec/rng.hpp"

namespace aerec::cpu {

LossKind loss_from_name(const std::string& s) {
  if (s == "mse") return LossKind::mse;
  if (s == "bce") return LossKind::bce;
  if (s == "masked_mse") return LossKind::masked_mse;
  if (s == "multinomial") return LossKind::multinomial;
  if (s == "logistic") return LossKind::logistic;
  throw std::invalid_argument("aerec: unknown loss '" + s +
                              "'; use one of mse, bce, masked_mse, multinomial, logistic");
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
  AEREC_CHECK_ARG(loss != LossKind::bce || activations.back() == Activation::sigmoid,
                  "spec: loss 'bce' needs a sigmoid output layer");
  AEREC_CHECK_ARG(loss != LossKind::multinomial || activations.back() == Activation::identity,
                  "spec: loss 'multinomial' needs an identity output layer (it is computed from the logits)");
  AEREC_CHECK_ARG(loss != LossKind::logistic || activations.back() == Activation::identity ||
                      activations.back() == Activation::sigmoid,
                  "spec: loss 'logistic' needs an identity or sigmoid output layer (it reads the logits)");
  AEREC_CHECK_ARG(negative_samples >= 0 && negative_samples < (index_t(1) << 31),
                  "spec: negative_samples must be in [0, 2^31)");
  AEREC_CHECK_ARG(negative_samples == 0 || loss == LossKind::logistic,
                  "spec: negative_samples is used by loss 'logistic' only");
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
  zero_pruned(pw_);
}

void Network::zero_pruned(float* buf) {
  if (keep_.empty()) return;
  for (int l = 0; l < n_layers(); ++l) {
    if (!masked_[l]) continue;
    const index_t o = offsets_[2 * l], n = tensor_size(2 * l);
    const std::uint8_t* k = keep_.data() + o;
    float* p = buf + o;
    for (index_t i = 0; i < n; ++i)
      if (!k[i]) p[i] = 0.f;
  }
}

void Network::set_masks(const std::uint8_t* const* masks) {
  const int L = n_layers();
  bool any = false;
  if (masks != nullptr)
    for (int l = 0; l < L; ++l) {
      if (masks[l] == nullptr) continue;
      any = true;
      const index_t n = tensor_size(2 * l);
      for (index_t i = 0; i < n; ++i)
        AEREC_CHECK_ARG(masks[l][i] <= 1, "mask of W" + std::to_string(l) + " must hold 0 (pruned) or 1 (kept)");
    }
  std::unique_lock<SharedMutex> lock(mu_);
  masked_.assign(static_cast<size_t>(L), 0);
  if (!any) {
    keep_.clear();
    keep_.shrink_to_fit();
    return;
  }
  keep_.assign(params_.size(), 1);
  for (int l = 0; l < L; ++l) {
    if (masks[l] == nullptr) continue;
    masked_[l] = 1;
    std::memcpy(keep_.data() + offsets_[2 * l], masks[l], static_cast<size_t>(tensor_size(2 * l)));
  }
  zero_pruned(pw_);
  for (auto& st : state_) zero_pruned(st.data());
}

bool Network::has_mask(int l) const {
  AEREC_CHECK_INDEX(l >= 0 && l < n_layers(), "layer out of range");
  std::shared_lock<SharedMutex> lock(mu_);
  return !keep_.empty() && masked_[l];
}

void Network::read_mask(int l, std::uint8_t* dst) const {
  AEREC_CHECK_INDEX(l >= 0 && l < n_layers(), "layer out of range");
  std::shared_lock<SharedMutex> lock(mu_);
  const index_t n = tensor_size(2 * l);
  if (keep_.empty() || !masked_[l])
    std::memset(dst, 1, static_cast<size_t>(n));
  else
    std::memcpy(dst, keep_.data() + offsets_[2 * l], static_cast<size_t>(n));
}

void Network::read_params_flat(index_t lo, index_t n, float* dst) const {
  AEREC_CHECK_INDEX(lo >= 0 && n >= 0 && lo + n <= n_params(), "flat parameter range out of bounds");
  std::shared_lock<SharedMutex> lock(mu_);
  if (n) std::memcpy(dst, pw_ + lo, sizeof(float) * n);
}

void Network::write_params_flat(index_t lo, index_t n, const float* src) {
  AEREC_CHECK_INDEX(lo >= 0 && n >= 0 && lo + n <= n_params(), "flat parameter range out of bounds");
  std::unique_lock<SharedMutex> lock(mu_);
  if (n) std::memcpy(pw_ + lo, src, sizeof(float) * n);
}

void Network::bind_params(float* ext, bool copy) {
  AEREC_CHECK_ARG(ext != nullptr, "bind_params needs a buffer");
  std::unique_lock<SharedMutex> lock(mu_);
  if (ext == pw_) return;
  if (copy) std::memcpy(ext, pw_, sizeof(float) * static_cast<size_t>(n_params()));
  pw_ = ext;
}

void Network::unbind_params() {
  std::unique_lock<SharedMutex> lock(mu_);
  if (pw_ == params_.data()) return;
  std::memcpy(params_.data(), pw_, sizeof(float) * static_cast<size_t>(n_params()));
  pw_ = params_.data();
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
  zero_pruned(state_[slot].data());
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

using Clock = std::chrono::steady_clock;

template <class T>
T* grow(std::vector<T>& v, index_t n) {  // capacity >= n, returns data(); never shrinks
  if (static_cast<index_t>(v.size()) < n) v.resize(static_cast<size_t>(n));
  return v.data();
}

constexpr index_t kParallelWork = index_t(1) << 16;  // elements; below this one thread is faster
// Streaming passes (one multiply-add per element) pay for a parallel region only when larger: on a
// loaded machine a region's barrier can cost more than the pass.
constexpr index_t kParallelStream = index_t(1) << 20;

int n_threads() {
#ifdef AEREC_OPENMP
  return resolve_threads(0);
#else
  return 1;
#endif
}

// f(k) for k in [0, n_blocks), over threads when `work` (elements touched) is large. Each block is
// independent, so the result never depends on the thread count.
template <class F>
void parallel_blocks(index_t n_blocks, index_t work, F&& f) {
  const int nt = (work >= kParallelWork && n_blocks > 1) ? n_threads() : 1;
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

// Rows of sparse values: indptr (B + 1, from 0), indices, val.
struct SparseRows {
  const std::int64_t* indptr = nullptr;
  const std::int32_t* indices = nullptr;
  const float* val = nullptr;
};

// ---- layers: *_forward(out, in, params, ...) / *_backward(dinp, dparams, dout, ...) -------------

// Dropout of a B x n block on the rows rid (rng.hpp; every element has its own counter, so
// splitting rows over threads or vectorising draws the same mask). out, mult: B x n.
void dropout_forward(float* out, float* mult, const float* in, index_t ldi, index_t B, index_t n,
                     std::uint64_t key, float p, const std::int64_t* rid) {
  const auto body = nn_kernels().dropout;
  const int nt = B * n >= kParallelWork && B > 1 ? n_threads() : 1;
  const index_t chunk = (B + nt - 1) / nt;
  parallel_blocks(nt, nt > 1 ? kParallelWork : 0, [&](index_t t) {
    const index_t lo = t * chunk, hi = std::min(B, lo + chunk);
    if (lo < hi) body(hi - lo, n, in + lo * ldi, ldi, out + lo * n, mult + lo * n, key, p, rid + lo);
  });
}

// out (B x c, ldo) = act(x W + b [+ U[user]]) for CSR rows x (values already normalised and
// dropped): one gather-sum per row while the row is hot in L1.
void sparse_input_forward(float* out, index_t ldo, const SparseRows& x, index_t B, const float* W,
                          const float* b, index_t c, const float* U, const std::int32_t* users,
                          Activation act) {
  const NnKernels& k = nn_kernels();
  const int nt = B > 8 && x.indptr[B] * c >= kParallelWork ? n_threads() : 1;
  (void)nt;
#pragma omp parallel for schedule(dynamic, 8) num_threads(nt) if (nt > 1)
  for (index_t r = 0; r < B; ++r) {
    float* row = out + r * ldo;
    const std::int64_t a = x.indptr[r];
    k.gather_sum(c, x.indptr[r + 1] - a, x.indices + a, x.val + a, W, c, b, row);
    if (U) k.axpy(c, 1.f, U + static_cast<index_t>(users[r]) * c, row);
    if (act == Activation::tanh) k.tanh_inplace(c, row);
  }
  if (act != Activation::tanh && act != Activation::identity) {
    Epilogue ep;
    ep.act = act;
    bias_activation(B, c, out, ldo, ep);
  }
}

// db (c) = column sums of dz (B x c), rows in order per column block (deterministic).
void bias_backward(float* db, const float* dz, index_t B, index_t c) {
  constexpr index_t kCols = 512;
  parallel_blocks((c + kCols - 1) / kCols, B * c >= kParallelStream ? B * c : 0, [&](index_t blk) {
    const index_t c0 = blk * kCols, c1 = std::min(c, c0 + kCols);
    float* __restrict d = db;
    std::fill(d + c0, d + c1, 0.f);
    for (index_t r = 0; r < B; ++r)
      for (index_t j = c0; j < c1; ++j) d[j] += dz[r * c + j];
  });
}

// Variational layer: z (B x d, ldz) = mu + eps * exp(logvar / 2) in training (eps: rng::gaussian of
// element rid[r] * d + j), mu in eval, from stats = [mu, logvar] (B x 2d). Keeps exp(logvar), the
// std and eps for the KL term and backward.
void vae_forward(float* z, index_t ldz, float* ev, float* sd, float* eps, const float* stats, index_t B,
                 index_t d, bool training, std::uint64_t key, const std::int64_t* rid) {
  parallel_blocks((B + 7) / 8, B * d * 8, [&](index_t blk) {
    for (index_t r = blk * 8; r < std::min(B, (blk + 1) * 8); ++r)
      for (index_t j = 0; j < d; ++j) {
        const index_t e = r * d + j;
        const float mu = stats[r * 2 * d + j], lv = stats[r * 2 * d + d + j];
        ev[e] = std::exp(lv);
        sd[e] = std::exp(lv * 0.5f);
        eps[e] = training ? rng::gaussian(key, static_cast<std::uint64_t>(rid[r] * d + j)) : 0.f;
        z[r * ldz + j] = training ? mu + eps[e] * sd[e] : mu;
      }
  });
}

// dstats (B x 2d) = [dmu, dlogvar] from dz (B x d) through the sample and beta_t * KL / B (cb).
void vae_backward(float* dstats, const float* dz, const float* stats, const float* ev, const float* sd,
                  const float* eps, index_t B, index_t d, float cb) {
  for (index_t r = 0; r < B; ++r)
    for (index_t j = 0; j < d; ++j) {
      const index_t e = r * d + j;
      const float g = dz[e], mu = stats[r * 2 * d + j];
      dstats[r * 2 * d + j] = g + cb * mu;
      dstats[r * 2 * d + d + j] = (g * eps[e]) * (0.5f * sd[e]) + (cb * 0.5f) * (ev[e] - 1.f);
    }
}

// da (B x n) *= mult (dropout, may be null) * act'(y) (y: the activation output).
void activation_backward(float* da, const float* mult, const float* y, index_t B, index_t n, Activation act) {
  with_activation(act, [&](auto tag) {
    constexpr Activation A = decltype(tag)::value;
    if (mult == nullptr && A == Activation::identity) return;
    const index_t total = B * n;
    constexpr index_t kChunk = index_t(1) << 14;
    parallel_blocks((total + kChunk - 1) / kChunk, total >= kParallelStream ? total : 0, [&](index_t blk) {
      const index_t lo = blk * kChunk, hi = std::min(total, lo + kChunk);
      float* __restrict d = da;
      if (mult != nullptr) {
        for (index_t i = lo; i < hi; ++i) d[i] = (d[i] * mult[i]) * activation_grad_from_output(A, y[i]);
      } else {
        for (index_t i = lo; i < hi; ++i) d[i] = d[i] * activation_grad_from_output(A, y[i]);
      }
    });
  });
}

// ---- losses: rows of logits z (B x O) -> sum of the row losses; dL/dz in place when grad -------

// mse / bce / masked_mse / multinomial on a dense y (rows in fixed blocks summed in order: the
// same bits for any thread count). o: the output (bce: the logits).
double dense_loss(float* o, const MatrixView<const float>& y, const MatrixView<const float>& mask, index_t B,
                  index_t O, LossKind loss, Activation out_act, bool grad, double count, std::vector<double>& part) {
  constexpr index_t kRows = 32;
  const index_t n_blocks = (B + kRows - 1) / kRows;
  double* partial = grow(part, n_blocks);
  const float iscale = static_cast<float>(1.0 / count), gscale = static_cast<float>(2.0 / count);
  const NnKernels& k = nn_kernels();
  const auto row_fn = loss == LossKind::multinomial ? k.multinomial_row : k.bce_row;
  const bool masked = loss == LossKind::masked_mse;
  with_activation(out_act, [&](auto tag) {
    constexpr Activation A = decltype(tag)::value;
    parallel_blocks(n_blocks, B * O, [&](index_t blk) {
      double sum = 0.0;
      for (index_t r = blk * kRows; r < std::min(B, (blk + 1) * kRows); ++r) {
        float* z = o + r * O;
        const float* yr = y.row(r);
        if (loss == LossKind::bce || loss == LossKind::multinomial) {
          sum += row_fn(z, yr, grad ? z : nullptr, O, iscale);
          continue;
        }
        const float* m = (masked && mask.data) ? mask.row(r) : nullptr;
        for (index_t c = 0; c < O; ++c) {
          float diff = z[c] - yr[c];
          if (masked && !(m ? m[c] != 0.f : yr[c] != 0.f)) diff = 0.f;
          const float sq = diff * diff;
          sum += sq;
          if (grad) z[c] = (diff * gscale) * activation_grad_from_output(A, z[c]);
        }
      }
      partial[blk] = sum;
    });
  });
  double sum = 0.0;
  for (index_t k = 0; k < n_blocks; ++k) sum += partial[k];
  return sum;
}

// Per-thread scratch of the logistic rows with negatives.
struct LogisticScratch {
  std::vector<std::int32_t> stamp, items;
  std::vector<float> vals;
};

// multinomial: -sum_c y_c log_softmax(z)_c;  logistic: sum over S_r of softplus(z_c) - y_c z_c.
// One row task while the row is hot: max, exp in place + sum, scale, sparse correction (multinomial);
// softplus / sigmoid of every item or of the positives and the sampled negatives (logistic).
// grad: z = dL/dz of the mean over B rows, and db (O) = its column sums, accumulated per thread
// (static schedule, partials summed in thread order: deterministic for a thread count).
double sparse_target_loss(float* z, float* db, const SparseRows& y, index_t B, index_t O, LossKind loss,
                          index_t ns, std::uint64_t neg_key, const std::int64_t* rid, bool grad,
                          std::vector<float>& dbpart, std::vector<double>& row_loss, LogisticScratch& ls) {
  const NnKernels& k = nn_kernels();
  const int nt = B > 1 && B * O >= kParallelWork ? n_threads() : 1;
  const float invB = 1.f / static_cast<float>(B);
  float* part = grad ? grow(dbpart, static_cast<index_t>(nt) * O) : nullptr;
  if (grad) std::fill(part, part + static_cast<index_t>(nt) * O, 0.f);
  double* rl = grow(row_loss, B);
  std::int64_t maxcnt = 0;
  for (index_t r = 0; r < B; ++r) maxcnt = std::max(maxcnt, y.indptr[r + 1] - y.indptr[r]);
  const index_t scratch = maxcnt * (ns + 1);
  if (loss == LossKind::logistic && ns > 0) {
    grow(ls.stamp, static_cast<index_t>(nt) * O);
    std::fill(ls.stamp.begin(), ls.stamp.begin() + static_cast<index_t>(nt) * O, -1);
    grow(ls.items, nt * scratch);
    grow(ls.vals, nt * scratch);
  }
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
  for (index_t r = 0; r < B; ++r) {
    const int tid = thread_id();
    float* zr = z + r * O;
    float* acc = grad ? part + static_cast<index_t>(tid) * O : nullptr;
    const std::int64_t a = y.indptr[r], cnt = y.indptr[r + 1] - a;
    const std::int32_t* idx = y.indices + a;
    const float* yv = y.val + a;
    if (loss == LossKind::multinomial) {
      float sy = 0.f, syz = 0.f;
      for (std::int64_t q = 0; q < cnt; ++q) {
        sy += yv[q];
        syz += yv[q] * zr[idx[q]];
      }
      const float mx = k.row_max(O, zr);
      const double se = k.exp_shift_sum(O, zr, mx);
      rl[r] = static_cast<double>(sy) * (static_cast<double>(mx) + std::log(se)) - static_cast<double>(syz);
      if (!grad) continue;
      k.scale_accumulate(O, zr, static_cast<float>(static_cast<double>(sy) / (static_cast<double>(B) * se)), acc);
      for (std::int64_t q = 0; q < cnt; ++q) {
        const float c = yv[q] * invB;
        zr[idx[q]] -= c;
        acc[idx[q]] -= c;
      }
      continue;
    }
    double lr = 0.0;
    if (ns == 0) {  // every item
      double yz = 0.0;
      for (std::int64_t q = 0; q < cnt; ++q) yz += static_cast<double>(yv[q]) * zr[idx[q]];
      lr = k.logistic_row(O, zr, invB) - yz;
      for (std::int64_t q = 0; q < cnt; ++q) zr[idx[q]] -= yv[q] * invB;
    } else {  // the positives and the distinct negatives (the set S_r)
      std::int32_t* st = ls.stamp.data() + static_cast<index_t>(tid) * O;
      std::int32_t* items = ls.items.data() + static_cast<index_t>(tid) * scratch;
      float* vals = ls.vals.data() + static_cast<index_t>(tid) * scratch;
      const std::int32_t tag = static_cast<std::int32_t>(r);
      auto sp = [](float x) { return std::max(x, 0.f) + std::log1p(std::exp(-std::fabs(x))); };
      auto sg = [](float x) { const float e = std::exp(-std::fabs(x)); return x >= 0.f ? 1.f / (1.f + e) : e / (1.f + e); };
      std::int64_t m = 0;
      for (std::int64_t q = 0; q < cnt; ++q) {
        const std::int32_t j = idx[q];
        if (st[j] == tag) continue;  // a duplicate column counts once
        st[j] = tag;
        lr += static_cast<double>(sp(zr[j])) - static_cast<double>(yv[q]) * zr[j];
        items[m] = j;
        vals[m++] = (sg(zr[j]) - yv[q]) * invB;
      }
      const std::uint64_t row = static_cast<std::uint64_t>(rid[r]);
      for (std::int64_t t = 0; t < cnt * ns; ++t) {
        const std::int32_t j = static_cast<std::int32_t>(rng::negative_item(neg_key, row, t, O));
        if (st[j] == tag) continue;
        st[j] = tag;
        lr += sp(zr[j]);
        items[m] = j;
        vals[m++] = sg(zr[j]) * invB;
      }
      for (std::int64_t q = 0; q < m; ++q) st[items[q]] = -1;  // the thread's next row reuses the stamps
      if (grad) {
        std::memset(zr, 0, sizeof(float) * O);
        for (std::int64_t q = 0; q < m; ++q) {
          zr[items[q]] = vals[q];
          acc[items[q]] += vals[q];
        }
      }
      rl[r] = lr;
      continue;
    }
    rl[r] = lr;
    if (grad) k.axpy(O, 1.f, zr, acc);
  }
  if (grad) {
    std::memcpy(db, part, sizeof(float) * O);
    for (int t = 1; t < nt; ++t) k.axpy(O, 1.f, part + static_cast<index_t>(t) * O, db);
  }
  double sum = 0.0;
  for (index_t r = 0; r < B; ++r) sum += rl[r];
  return sum;
}

}  // namespace

// Everything one forward pass writes (grown to the largest use, reused): training owns one;
// hidden and loss make their own per call, which is what lets them run concurrently.
struct Network::Workspace {
  explicit Workspace(int L) : act(L + 1), dropped(L), mult(L), in_ptr(L, nullptr), in_ld(L, 0), drop_on(L, 0) {}
  std::vector<std::int64_t> rid;                // B
  std::vector<std::int64_t> xptr, yptr;         // gathered CSR rows of x / of the sparse targets
  std::vector<std::int32_t> xidx, yidx;
  std::vector<float> xraw, xin, yval;           // x values as given / normalised and dropped
  std::vector<float> xb, yb, mb;                // gathered dense rows
  std::vector<std::int32_t> ub;                 // gathered user ids
  std::vector<std::vector<float>> act;          // act[l + 1]: output of layer l (B x c_l)
  std::vector<std::vector<float>> dropped;      // dropped[l]: input of layer l after dropout
  std::vector<std::vector<float>> mult;         // mult[l]: its dropout multipliers
  std::vector<const float*> in_ptr;             // input of layer l in the last forward
  std::vector<index_t> in_ld;
  std::vector<char> drop_on;                    // dropout applied to layer l's input
  std::vector<float> stats, vae_ev, vae_std, vae_eps;  // variational layer (B x 2d, B x d)
  index_t vae_rows = 0;
  std::vector<double> partials, row_loss;
  std::vector<float> dbpart, da, dz;            // bias partials; backward ping-pong
  LogisticScratch logistic;
};

// Rows of one call as the layers read them.
struct Network::Minibatch {
  index_t rows = 0;
  const std::int64_t* rid = nullptr;
  MatrixView<const float> x;  // dense x (normalised), or data null with CSR x
  SparseRows xs;              // CSR x: val normalised and dropped (training)
  MatrixView<const float> y, mask;  // dense targets (mse, bce, masked_mse)
  SparseRows ys;              // sparse targets (multinomial, logistic)
  const std::int32_t* users = nullptr;
};

// Phase timer of a training call: enter(phase) ends the running phase (charging it the ticks since
// it began) and starts `phase`; entering the running phase again costs nothing, so consecutive
// layers of one phase share one clock read. Ticks are the TSC on x86 (8 ns a read here, half a
// steady_clock read, which cost the dense tutorial step 4%), turned into seconds when the call
// ends by the steady_clock time of the whole call. Without timings (inference, gradients()) it
// reads nothing.
class Network::Lap {
 public:
  explicit Lap(Timings* t) : t_(t) {
    if (t_) {
      wall0_ = Clock::now();
      start_ = last_ = ticks();
    }
  }
  ~Lap() {
    if (!t_) return;
    enter(nullptr);
    const double span = static_cast<double>(last_ - start_);
    const double s = span > 0 ? std::chrono::duration<double>(Clock::now() - wall0_).count() / span : 0.0;
    for (auto phase : kPhases) t_->*phase += acc_.*phase * s;
  }
  void enter(double Timings::*phase) {
    if (!t_ || phase == cur_) return;
    const std::uint64_t now = ticks();
    if (cur_) acc_.*cur_ += static_cast<double>(now - last_);
    last_ = now;
    cur_ = phase;
  }
  void flops(double f) {
    if (t_) t_->gemm_flops += f;
  }

 private:
  static std::uint64_t ticks() {
#if defined(AEREC_X86)
    return __rdtsc();
#else
    return static_cast<std::uint64_t>(Clock::now().time_since_epoch().count());
#endif
  }
  static constexpr double Timings::*kPhases[] = {&Timings::gather, &Timings::spmm, &Timings::gemm,
                                                 &Timings::noise, &Timings::loss, &Timings::dense_bwd,
                                                 &Timings::sparse_bwd, &Timings::optimizer};
  Timings* t_;
  Timings acc_;  // ticks per phase
  double Timings::*cur_ = nullptr;
  std::uint64_t start_ = 0, last_ = 0;
  Clock::time_point wall0_;
};

Network::Network(NetworkSpec spec)
    : spec_((spec.validate(), std::move(spec))), ws_(std::make_unique<Workspace>(n_layers())) {
  offsets_.assign(n_tensors() + 1, 0);
  for (int t = 0; t < n_tensors(); ++t) offsets_[t + 1] = offsets_[t] + tensor_size(t);
  params_.assign(offsets_.back(), 0.f);
  pw_ = params_.data();
  grads_.assign(offsets_.back(), 0.f);
  state_.assign(n_state_slots(), std::vector<float>(offsets_.back(), 0.f));
  item_slot_.assign(static_cast<size_t>(n_in()), -1);
  user_slot_.assign(static_cast<size_t>(spec_.n_users), -1);
}

Network::~Network() = default;

double Network::beta() const {
  if (spec_.anneal_steps > 0)
    return std::min(spec_.beta, static_cast<double>(step_) / static_cast<double>(spec_.anneal_steps));
  return spec_.beta;
}

Network::Minibatch Network::minibatch(Workspace& w, const Batch& b, index_t r0, index_t rows,
                                      const std::int64_t* ids, bool training) const {
  const index_t nin = n_in(), nout = n_out();
  Minibatch mb;
  mb.rows = rows;
  std::int64_t* rid = grow(w.rid, rows);
  for (index_t r = 0; r < rows; ++r) rid[r] = ids ? ids[r0 + r] : r0 + r;
  mb.rid = rid;
  const bool norm = spec_.normalize_input;
  if (b.x_csr.indptr != nullptr) {
    // Gather the rows' entries: raw values (the targets when y is x), and the values layer 0
    // reads: / ||row|| (normalize_input), then dropout at e = rid * I + col.
    const CsrView<float>& x = b.x_csr;
    std::int64_t* ptr = grow(w.xptr, rows + 1);
    ptr[0] = 0;
    for (index_t r = 0; r < rows; ++r) ptr[r + 1] = ptr[r] + (x.indptr[rid[r] + 1] - x.indptr[rid[r]]);
    std::int32_t* idx = grow(w.xidx, ptr[rows]);
    float* raw = grow(w.xraw, ptr[rows]);
    float* xin = grow(w.xin, ptr[rows]);
    const float p = static_cast<float>(spec_.dropout[0]);
    const bool drop = training && p > 0.f;
    const float scale = 1.f / (1.f - p);
    const std::uint64_t key = rng::key(spec_.seed, rng::kDropout, static_cast<std::uint64_t>(step_), 0);
    for (index_t r = 0; r < rows; ++r) {
      const std::int64_t a = x.indptr[rid[r]], cnt = ptr[r + 1] - ptr[r], o = ptr[r];
      float sq = 0.f;
      for (std::int64_t q = 0; q < cnt; ++q) {
        const float v = x.values ? x.values[a + q] : 1.f;
        idx[o + q] = x.indices[a + q];
        raw[o + q] = v;
        sq += v * v;
      }
      const float nrm = norm ? std::sqrt(sq) : 0.f;
      const std::uint64_t e0 = static_cast<std::uint64_t>(rid[r]) * static_cast<std::uint64_t>(nin);
      for (std::int64_t q = 0; q < cnt; ++q) {
        float v = nrm > 0.f ? raw[o + q] / nrm : raw[o + q];
        if (drop) v = rng::uniform(key, e0 + static_cast<std::uint64_t>(idx[o + q])) >= p ? v * scale : 0.f;
        xin[o + q] = v;
      }
    }
    mb.xs = {ptr, idx, xin};
    mb.x = {nullptr, rows, nin, nin};
  } else if (ids || norm) {
    float* xb = grow(w.xb, rows * nin);
    for (index_t r = 0; r < rows; ++r) {
      float* d = xb + r * nin;
      std::memcpy(d, b.x.row(rid[r]), sizeof(float) * nin);
      if (!norm) continue;
      float sq = 0.f;
      for (index_t c = 0; c < nin; ++c) sq += d[c] * d[c];
      const float nrm = std::sqrt(sq);
      if (nrm > 0.f)
        for (index_t c = 0; c < nin; ++c) d[c] = d[c] / nrm;
    }
    mb.x = {xb, rows, nin, nin};
  } else {
    mb.x = {b.x.row(r0), rows, nin, b.x.stride};
  }
  const bool has_y = b.y.data != nullptr || b.y_csr.indptr != nullptr;  // hidden() passes none
  // Sparse targets: logistic always, multinomial on a CSR y (a dense y goes through the dense row).
  const bool sparse_targets = has_y && (spec_.loss == LossKind::logistic ||
                                        (spec_.loss == LossKind::multinomial && b.y_csr.indptr != nullptr));
  if (sparse_targets && b.y_csr.indptr == b.x_csr.indptr && b.y_csr.indptr != nullptr &&
      b.y_csr.values == b.x_csr.values && b.y_csr.indices == b.x_csr.indices) {
    mb.ys = {mb.xs.indptr, mb.xs.indices, w.xraw.data()};  // y is x: gathered once
  } else if (sparse_targets) {
    // Targets as sparse rows: a CSR y's stored entries, a dense y's non-zeros.
    std::int64_t* ptr = grow(w.yptr, rows + 1);
    ptr[0] = 0;
    if (b.y_csr.indptr != nullptr) {
      const CsrView<float>& y = b.y_csr;
      for (index_t r = 0; r < rows; ++r) ptr[r + 1] = ptr[r] + (y.indptr[rid[r] + 1] - y.indptr[rid[r]]);
      std::int32_t* idx = grow(w.yidx, ptr[rows]);
      float* val = grow(w.yval, ptr[rows]);
      for (index_t r = 0; r < rows; ++r) {
        const std::int64_t a = y.indptr[rid[r]];
        for (std::int64_t q = 0; q < ptr[r + 1] - ptr[r]; ++q) {
          idx[ptr[r] + q] = y.indices[a + q];
          val[ptr[r] + q] = y.values ? y.values[a + q] : 1.f;
        }
      }
    } else {
      for (index_t r = 0; r < rows; ++r) {
        const float* yr = b.y.row(rid[r]);
        index_t n = 0;
        for (index_t c = 0; c < nout; ++c) n += yr[c] != 0.f;
        ptr[r + 1] = ptr[r] + n;
      }
      std::int32_t* idx = grow(w.yidx, ptr[rows]);
      float* val = grow(w.yval, ptr[rows]);
      for (index_t r = 0; r < rows; ++r) {
        const float* yr = b.y.row(rid[r]);
        std::int64_t o = ptr[r];
        for (index_t c = 0; c < nout; ++c)
          if (yr[c] != 0.f) {
            idx[o] = static_cast<std::int32_t>(c);
            val[o++] = yr[c];
          }
      }
    }
    mb.ys = {ptr, w.yidx.data(), w.yval.data()};
  } else if (b.y_csr.indptr != nullptr) {
    const CsrView<float>& y = b.y_csr;
    float* yb = grow(w.yb, rows * nout);
    for (index_t r = 0; r < rows; ++r) {
      float* dst = yb + r * nout;
      std::fill(dst, dst + nout, 0.f);
      for (std::int64_t k = y.indptr[rid[r]]; k < y.indptr[rid[r] + 1]; ++k) dst[y.indices[k]] += y.values ? y.values[k] : 1.f;
    }
    mb.y = {yb, rows, nout, nout};
  } else if (b.y.data != nullptr) {
    if (ids && !norm && b.x.data != nullptr && b.y.data == b.x.data && b.y.stride == b.x.stride && nin == nout) {
      mb.y = {w.xb.data(), rows, nout, nout};  // autoencoder, y = x: gathered once
    } else if (ids) {
      float* yb = grow(w.yb, rows * nout);
      for (index_t r = 0; r < rows; ++r) std::memcpy(yb + r * nout, b.y.row(rid[r]), sizeof(float) * nout);
      mb.y = {yb, rows, nout, nout};
    } else {
      mb.y = {b.y.row(r0), rows, nout, b.y.stride};
    }
  }
  if (b.users != nullptr) {
    std::int32_t* ub = grow(w.ub, rows);
    for (index_t r = 0; r < rows; ++r) ub[r] = b.users[rid[r]];
    mb.users = ub;
  }
  if (b.mask.data != nullptr) {
    if (ids) {
      float* m = grow(w.mb, rows * nout);
      for (index_t r = 0; r < rows; ++r) std::memcpy(m + r * nout, b.mask.row(rid[r]), sizeof(float) * nout);
      mb.mask = {m, rows, nout, nout};
    } else {
      mb.mask = {b.mask.row(r0), rows, nout, b.mask.stride};
    }
  }
  return mb;
}

void Network::forward(Workspace& w, const Minibatch& mb, int last, bool training, bool logits, float* out,
                      index_t ldo, Lap& lap) const {
  const auto& s = spec_.layer_sizes;
  const int L = n_layers();
  const index_t B = mb.rows;
  const float* a = mb.x.data;
  index_t lda = mb.x.stride;
  for (int l = 0; l <= last; ++l) {
    const index_t nin = s[l], nz = s[l + 1];
    float* c;  // the layer's output (z for the variational layer)
    index_t ldc = nz;
    if (l == last && out != nullptr) {
      c = out;
      ldc = ldo;
    } else {
      c = grow(w.act[l + 1], B * nz);
    }
    const Activation act = (logits && l == L - 1) ? Activation::identity : spec_.activations[l];
    // The variational layer writes [mu, logvar] (2 nz wide) to w.stats, then z goes to c.
    const bool vae = spec_.variational && l == spec_.encoder_depth - 1;
    float* const c_layer = c;
    const index_t ldc_layer = ldc, nout = vae ? 2 * nz : nz;
    if (vae) {
      c = grow(w.stats, B * nout);
      ldc = nout;
    }
    const float* U = l == 0 && mb.users ? cparam(2 * L) : nullptr;
    if (l == 0 && mb.x.data == nullptr) {
      w.drop_on[0] = 0;  // applied to the stored entries in minibatch()
      w.in_ptr[0] = nullptr;
      lap.enter(&Timings::spmm);
      sparse_input_forward(c, ldc, mb.xs, B, cparam(0), cparam(1), nout, U, mb.users, act);
    } else {
      lap.enter(&Timings::gemm);
      w.drop_on[l] = training && spec_.dropout[l] > 0.0;
      if (w.drop_on[l]) {
        float* dst = grow(w.dropped[l], B * nin);
        dropout_forward(dst, grow(w.mult[l], B * nin), a, lda, B, nin,
                        rng::key(spec_.seed, rng::kDropout, static_cast<std::uint64_t>(step_), l),
                        static_cast<float>(spec_.dropout[l]), mb.rid);
        a = dst;
        lda = nin;
      }
      w.in_ptr[l] = a;
      w.in_ld[l] = lda;
      Epilogue ep;
      ep.bias = cparam(2 * l + 1);
      ep.act = U ? Activation::identity : act;
      sgemm(false, false, B, nout, nin, 1.f, a, lda, cparam(2 * l), nout, 0.f, c, ldc, ep);
      if (U) {  // act((x W + b) + U[user])
        const NnKernels& k = nn_kernels();
        for (index_t r = 0; r < B; ++r) k.axpy(nout, 1.f, U + static_cast<index_t>(mb.users[r]) * nout, c + r * ldc);
        Epilogue ea;
        ea.act = act;
        if (act != Activation::identity) bias_activation(B, nout, c, ldc, ea);
      }
      lap.flops(2.0 * static_cast<double>(B * nin * nout));
    }
    if (vae) {
      lap.enter(&Timings::noise);
      vae_forward(c_layer, ldc_layer, grow(w.vae_ev, B * nz), grow(w.vae_std, B * nz), grow(w.vae_eps, B * nz),
                  w.stats.data(), B, nz, training,
                  rng::key(spec_.seed, rng::kNoise, static_cast<std::uint64_t>(step_), l), mb.rid);
      w.vae_rows = B;
      c = c_layer;
      ldc = ldc_layer;
    }
    a = c;
    lda = ldc;
  }
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

double Network::loss_rows(Workspace& w, const Minibatch& mb, bool grad, float* db, double* count) const {
  const index_t B = mb.rows, O = n_out();
  float* z = w.act[n_layers()].data();
  const LossKind loss = spec_.loss;
  if (mb.ys.indptr != nullptr) {
    *count = static_cast<double>(B);
    return sparse_target_loss(z, db, mb.ys, B, O, loss, spec_.negative_samples,
                              rng::key(spec_.seed, rng::kNegative, static_cast<std::uint64_t>(step_), 0), mb.rid,
                              grad, w.dbpart, w.row_loss, w.logistic);
  }
  *count = loss == LossKind::masked_mse || loss == LossKind::multinomial ? static_cast<double>(B)
                                                                      : static_cast<double>(B) * static_cast<double>(O);
  return dense_loss(z, mb.y, mb.mask, B, O, loss, spec_.activations.back(), grad, *count, w.partials);
}

double Network::l2_term() const {
  if (spec_.l2 == 0.0) return 0.0;
  double s = 0.0;
  for (int t = 0; t < n_tensors(); t += 2) {  // W0, W1, ..., and U
    const float* w = pw_ + offsets_[t];
    const index_t n = tensor_size(t);
    for (index_t k = 0; k < n; ++k) {
      const float sq = w[k] * w[k];
      s += sq;
    }
  }
  return 0.5 * spec_.l2 * s;
}

double Network::loss_and_grads(const Minibatch& mb, bool training, Lap& lap) {
  Workspace& w = *ws_;
  const int L = n_layers();
  const bool logits = spec_.loss == LossKind::bce || spec_.loss == LossKind::logistic;
  forward(w, mb, L - 1, training, logits, nullptr, 0, lap);
  lap.enter(&Timings::loss);
  double count = 1.0;
  const double sum = loss_rows(w, mb, true, gbuf() + offsets_[2 * L - 1], &count);
  double loss = sum / count + l2_term();
  if (spec_.variational) loss += beta() * kl_sum(w) / static_cast<double>(mb.rows);
  backward(mb, lap);
  return loss;
}

void Network::backward(const Minibatch& mb, Lap& lap) {
  Workspace& w = *ws_;
  const auto& s = spec_.layer_sizes;
  const int L = n_layers();
  const index_t B = mb.rows;
  index_t widest = 1;
  for (int l = 1; l < L; ++l) widest = std::max(widest, tensor_cols(2 * l - 2));
  float* dz = w.act[L].data();  // dL/dz of the output layer, written by loss_rows
  float* buf[2] = {grow(w.dz, B * widest), grow(w.da, B * widest)};
  const float l2 = static_cast<float>(spec_.l2);
  const bool out_bias_done = mb.ys.indptr != nullptr;  // fused into the sparse-target loss rows
  for (int l = L - 1; l >= 0; --l) {
    const index_t nin = s[l], nout = tensor_cols(2 * l);
    float* dW = gbuf() + offsets_[2 * l];
    const float* W = cparam(2 * l);
    lap.enter(&Timings::dense_bwd);
    if (!(l == L - 1 && out_bias_done)) bias_backward(gbuf() + offsets_[2 * l + 1], dz, B, nout);
    if (l == 0) {
      w0_rows_ = mb.x.data == nullptr;
      if (!w0_rows_) {
        lap.enter(&Timings::gemm);
        if (l2 != 0.f) std::memcpy(dW, W, sizeof(float) * nin * nout);  // dW = A^T dZ + l2 W
        sgemm(true, false, nin, nout, B, 1.f, w.in_ptr[0], w.in_ld[0], dz, nout, l2, dW, nout);
        lap.flops(2.0 * static_cast<double>(B * nin * nout));
      }
      if (mb.users || w0_rows_ || spec_.lazy) lap.enter(&Timings::sparse_bwd);
      if (mb.users) user_grad(mb, dz);
      if (w0_rows_ || spec_.lazy) input_rows(mb, dz);
      return;
    }
    lap.enter(&Timings::gemm);
    // dW = A^T dZ (+ l2 W, through beta: C preloaded with W); dA = dZ W^T
    if (l2 != 0.f) std::memcpy(dW, W, sizeof(float) * nin * nout);
    sgemm(true, false, nin, nout, B, 1.f, w.in_ptr[l], w.in_ld[l], dz, nout, l2, dW, nout);
    float* da = dz == buf[0] ? buf[1] : buf[0];
    sgemm(false, true, B, nin, nout, 1.f, dz, nout, W, nout, 0.f, da, nin);
    lap.flops(4.0 * static_cast<double>(B * nin * nout));
    lap.enter(&Timings::dense_bwd);
    // through the dropout of layer l's input and layer l-1's activation
    activation_backward(da, w.drop_on[l] ? w.mult[l].data() : nullptr, w.act[l].data(), B, nin, spec_.activations[l - 1]);
    if (spec_.variational && l - 1 == spec_.encoder_depth - 1) {
      float* dstats = da == buf[0] ? buf[1] : buf[0];
      vae_backward(dstats, da, w.stats.data(), w.vae_ev.data(), w.vae_std.data(), w.vae_eps.data(), B, nin,
                   static_cast<float>(beta() / static_cast<double>(B)));
      dz = dstats;
    } else {
      dz = da;
    }
  }
}

void Network::user_grad(const Minibatch& mb, const float* dz) {
  const NnKernels& k = nn_kernels();
  const index_t c = tensor_cols(0);
  for (index_t r = 0; r < mb.rows; ++r) {
    const std::int32_t u = mb.users[r];
    if (user_slot_[u] < 0) {
      user_slot_[u] = static_cast<std::int32_t>(uniq_users_.size());
      uniq_users_.push_back(u);
    }
  }
  float* g = grow(gu_, static_cast<index_t>(uniq_users_.size()) * c);
  std::fill(g, g + static_cast<index_t>(uniq_users_.size()) * c, 0.f);
  for (index_t r = 0; r < mb.rows; ++r)  // rows in order: deterministic
    k.axpy(c, 1.f, dz + r * c, g + static_cast<index_t>(user_slot_[mb.users[r]]) * c);
}

void Network::input_rows(const Minibatch& mb, const float* dz) {
  const index_t B = mb.rows;
  uniq_.clear();
  auto add = [&](std::int32_t j) {
    if (item_slot_[j] < 0) {
      item_slot_[j] = static_cast<std::int32_t>(uniq_.size());
      uniq_.push_back(j);
    }
  };
  if (mb.x.data != nullptr) {  // lazy on a dense x: the columns with a non-zero
    for (index_t r = 0; r < B; ++r)
      for (index_t c = 0; c < n_in(); ++c)
        if (mb.x.row(r)[c] != 0.f) add(static_cast<std::int32_t>(c));
    return;
  }
  // CSC of the batch over its items: dW0 row j = sum over the entries (r, j) of x_rj dz_r.
  const SparseRows& x = mb.xs;
  const std::int64_t nnz = x.indptr[B];
  for (std::int64_t q = 0; q < nnz; ++q) add(x.indices[q]);
  const size_t nu = uniq_.size();
  csc_ptr_.assign(nu + 1, 0);
  for (std::int64_t q = 0; q < nnz; ++q) ++csc_ptr_[item_slot_[x.indices[q]] + 1];
  for (size_t u = 0; u < nu; ++u) csc_ptr_[u + 1] += csc_ptr_[u];
  grow(csc_rows_, nnz);
  grow(csc_vals_, nnz);
  grow(csc_fill_, static_cast<index_t>(nu));
  std::copy(csc_ptr_.begin(), csc_ptr_.begin() + static_cast<std::ptrdiff_t>(nu), csc_fill_.begin());
  for (index_t r = 0; r < B; ++r)
    for (std::int64_t q = x.indptr[r]; q < x.indptr[r + 1]; ++q) {
      const std::int64_t pos = csc_fill_[item_slot_[x.indices[q]]]++;
      csc_rows_[pos] = static_cast<std::int32_t>(r);
      csc_vals_[pos] = x.val[q];
    }
  dz0_ = dz;
}

void Network::dense_sparse_grads() {
  const NnKernels& k = nn_kernels();
  const float l2 = static_cast<float>(spec_.l2);
  auto base = [&](int t) {  // l2 W: the gradient of the rows no entry touches
    float* __restrict g = gbuf() + offsets_[t];
    const float* __restrict p = cparam(t);
    const index_t n = tensor_size(t);  // hoisted: an out-of-line call per element kept the loop scalar
    if (l2 == 0.f)
      std::memset(g, 0, sizeof(float) * static_cast<size_t>(n));
    else
      for (index_t i = 0; i < n; ++i) g[i] = l2 * p[i];
    return g;
  };
  const index_t c = tensor_cols(0);
  if (w0_rows_) {
    std::vector<float> row(static_cast<size_t>(c));
    float* g = gbuf();
    if (w0_flags_ != nullptr) {  // the touched rows only (the others are l2 W, not written)
      std::memset(w0_flags_, 0, static_cast<size_t>(n_in()));
      for (size_t u = 0; u < uniq_.size(); ++u) {
        w0_flags_[uniq_[u]] = 1;
        float* __restrict gr = g + static_cast<index_t>(uniq_[u]) * c;
        const float* __restrict pr = cparam(0) + static_cast<index_t>(uniq_[u]) * c;
        if (l2 == 0.f)  // base()'s value of the row
          std::memset(gr, 0, sizeof(float) * static_cast<size_t>(c));
        else
          for (index_t i = 0; i < c; ++i) gr[i] = l2 * pr[i];
      }
    } else {
      base(0);
    }
    for (size_t u = 0; u < uniq_.size(); ++u) {
      const std::int64_t a = csc_ptr_[u];
      k.gather_sum(c, csc_ptr_[u + 1] - a, csc_rows_.data() + a, csc_vals_.data() + a, dz0_, c, nullptr, row.data());
      k.axpy(c, 1.f, row.data(), g + static_cast<index_t>(uniq_[u]) * c);
    }
  } else if (w0_flags_ != nullptr) {
    std::memset(w0_flags_, 1, static_cast<size_t>(n_in()));  // W0's gradient is dense: every row written
  }
  if (spec_.n_users > 0) {
    float* g = base(2 * n_layers());
    for (size_t u = 0; u < uniq_users_.size(); ++u)
      k.axpy(c, 1.f, gu_.data() + u * c, g + static_cast<index_t>(uniq_users_[u]) * c);
  }
}

void Network::apply_optimizer(Lap& lap) {
  lap.enter(&Timings::optimizer);
  const NnKernels& k = nn_kernels();
  const double t = static_cast<double>(step_) + 1.0;
  const bool sgd = spec_.optimizer == OptimizerKind::sgd;
  AdamCoeffs ac;
  SgdCoeffs sc;
  if (sgd) {
    sc.lr = static_cast<float>(spec_.learning_rate);
    sc.momentum = static_cast<float>(spec_.momentum);
    sc.weight_decay = static_cast<float>(spec_.weight_decay);
    sc.nesterov = spec_.nesterov;
  } else {
    ac.lr = static_cast<float>(spec_.learning_rate);
    ac.beta1 = static_cast<float>(spec_.beta1);
    ac.beta2 = static_cast<float>(spec_.beta2);
    ac.one_minus_beta1 = static_cast<float>(1.0 - spec_.beta1);
    ac.one_minus_beta2 = static_cast<float>(1.0 - spec_.beta2);
    ac.bc1 = static_cast<float>(1.0 - std::pow(spec_.beta1, t));
    ac.bc2 = static_cast<float>(1.0 - std::pow(spec_.beta2, t));
    ac.eps = static_cast<float>(spec_.epsilon);
    if (spec_.optimizer == OptimizerKind::adamw)
      ac.lr_wd = static_cast<float>(spec_.learning_rate * spec_.weight_decay);
    else
      ac.weight_decay = static_cast<float>(spec_.weight_decay);
  }
  const bool mom = !sgd || spec_.momentum > 0.0;
  // One update of n elements at flat offset o with gradient g (pruned elements skipped; clipped to
  // [opt_lo_, opt_hi_): the kernels are element-wise, so a block moves exactly as it does in the
  // full step).
  const std::uint8_t* keep = keep_.empty() ? nullptr : keep_.data();
  const index_t clip_lo = opt_lo_, clip_hi = opt_hi_ < 0 ? n_params() : opt_hi_;
  auto update = [&](index_t o, index_t n, const float* g) {
    const index_t a = std::max(o, clip_lo), e = std::min(o + n, clip_hi);
    if (a >= e) return;
    g += a - o;
    n = e - a;
    o = a;
    float* m = mom ? state_[0].data() + o : nullptr;
    const std::uint8_t* kp = keep ? keep + o : nullptr;
    if (sgd)
      k.sgd(n, pw_ + o, g, m, sc, kp);
    else
      k.adam(n, pw_ + o, g, m, state_[1].data() + o, ac, kp);
  };
  const float l2 = static_cast<float>(spec_.l2);
  const int L = n_layers();
  const index_t c0 = tensor_cols(0);
  const bool lazy = spec_.lazy, users = spec_.n_users > 0;
  // W0 is row-sparse with a CSR x (dW0 rows from the CSC) or lazy; U always (dU rows in gu_).
  // Lazy: the present rows only. Otherwise every row moves: chunks of rows whose gradient is
  // l2 w plus, for the present rows, the data part (one kernel call per chunk, not per row).
  const bool rows0 = w0_rows_ || lazy;
  const index_t nu = lazy ? static_cast<index_t>(uniq_.size()) : 0;
  const index_t nuu = lazy ? static_cast<index_t>(uniq_users_.size()) : 0;
  const index_t rows_per = std::max<index_t>(1, 16384 / c0);  // rows of a chunk
  const index_t nch0 = w0_rows_ && !lazy ? (n_in() + rows_per - 1) / rows_per : 0;
  const index_t nchu = users && !lazy ? (spec_.n_users + rows_per - 1) / rows_per : 0;
  const index_t flat_lo = rows0 ? offsets_[1] : 0, flat_hi = offsets_[2 * L];  // U goes by rows
  constexpr index_t kChunk = 16384;
  const index_t n_chunks = (flat_hi - flat_lo + kChunk - 1) / kChunk;
  // Threads only for work that pays for a parallel region (a tiny network's step would wait on a
  // barrier, long on a loaded machine).
  const index_t work = (nu + nuu) * c0 + (nch0 + nchu) * rows_per * c0 + (flat_hi - flat_lo);
  const int nt = work >= (index_t(1) << 17) ? n_threads() : 1;
  // per thread: a chunk of row-sparse rows, then (when the gradient is a sum of parts) a dense chunk
  const index_t per_thread = rows_per * c0 + kChunk;
  float* gbuf = grow(rowbuf_, static_cast<index_t>(nt) * per_thread);
  const index_t ou = users ? offsets_[2 * L] : 0;
  // Data gradient of W0's present row u (compact index) into g: a gather-sum over its CSC column.
  auto w0_row = [&](index_t u, float* g) {
    const std::int64_t a = csc_ptr_[u];
    k.gather_sum(c0, csc_ptr_[u + 1] - a, csc_rows_.data() + a, csc_vals_.data() + a, dz0_, c0, nullptr, g);
  };
  auto add_l2 = [&](float* g, const float* w, index_t n) {
    if (l2 != 0.f) k.axpy(n, l2, w, g);
  };
  // Rows [j0, j1) of a row-sparse tensor at flat offset o: gradient l2 w, then the present rows
  // (slot[j] >= 0) get their data gradient from data(slot, g_row) plus l2 w instead.
  auto row_chunk = [&](index_t o, index_t j0, index_t j1, const std::int32_t* slot, auto&& data, float* g) {
    const float* w = pw_ + o + j0 * c0;
    const index_t n = (j1 - j0) * c0;
    for (index_t i = 0; i < n; ++i) g[i] = l2 * w[i];
    for (index_t j = j0; j < j1; ++j)
      if (slot[j] >= 0) {
        data(slot[j], g + (j - j0) * c0);
        add_l2(g + (j - j0) * c0, w + (j - j0) * c0, c0);
      }
    update(o + j0 * c0, n, g);
  };
  auto u_row = [&](index_t u, float* g) { std::memcpy(g, gu_.data() + u * c0, sizeof(float) * c0); };
  // One parallel region for the whole update (a region per tensor costs a barrier each), the
  // loops split over its threads by hand; a small network's step opens none.
  auto run = [&](index_t tid, index_t nth) {
    float* g = gbuf + tid * per_thread;
    float* gsum = g + rows_per * c0;  // grad_at's pieces of a summed gradient
    for (index_t u = tid; u < nu; u += nth) {  // lazy W0
      const index_t o = static_cast<index_t>(uniq_[u]) * c0;
      if (w0_rows_) {
        w0_row(u, g);
        add_l2(g, pw_ + o, c0);
        update(o, c0, g);
      } else {  // dense x: the row of the dense gradient (l2 W already in it)
        update(o, c0, grad_at(o, c0, gsum));
      }
    }
    for (index_t ch = tid; ch < nch0; ch += nth)
      row_chunk(0, ch * rows_per, std::min(n_in(), (ch + 1) * rows_per), item_slot_.data(), w0_row, g);
    for (index_t u = tid; u < nuu; u += nth) {  // lazy U
      const index_t o = ou + static_cast<index_t>(uniq_users_[u]) * c0;
      u_row(u, g);
      add_l2(g, pw_ + o, c0);
      update(o, c0, g);
    }
    for (index_t ch = tid; ch < nchu; ch += nth)
      row_chunk(ou, ch * rows_per, std::min(spec_.n_users, (ch + 1) * rows_per), user_slot_.data(), u_row, g);
    const index_t per = (n_chunks + nth - 1) / nth;  // contiguous chunks per thread
    for (index_t ch = tid * per; ch < std::min(n_chunks, (tid + 1) * per); ++ch) {
      const index_t o = flat_lo + ch * kChunk;
      // only the part update() keeps (the block [opt_lo_, opt_hi_)) is read
      const index_t a = std::max(o, clip_lo), e = std::min(o + std::min(kChunk, flat_hi - o), clip_hi);
      if (a < e) update(a, e - a, grad_at(a, e - a, gsum));
    }
  };
  if (nt == 1) {
    run(0, 1);
  } else {
#pragma omp parallel num_threads(nt)
    run(thread_id(), nt);
  }
  ++step_;
}

void Network::end_step() {
  for (std::int32_t j : uniq_) item_slot_[j] = -1;
  for (std::int32_t u : uniq_users_) user_slot_[u] = -1;
  uniq_.clear();
  uniq_users_.clear();
  w0_rows_ = false;
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
    Lap none(nullptr);
    forward(w, minibatch(w, b, r0, rows, nullptr, false), layer, false, false, out.row(r0), out.stride, none);
  }
}

double Network::loss(const Batch& b, index_t batch_size) const {
  AEREC_CHECK_ARG(batch_size >= 1, "batch_size must be >= 1");
  check_batch(b, true);
  const int L = n_layers();
  const index_t n = b.x.rows;
  const index_t bs = std::min(batch_size, n);
  const bool logits = spec_.loss == LossKind::bce || spec_.loss == LossKind::logistic;
  double total = 0.0, count = 0.0, kl = 0.0;
  Workspace w(L);  // per call: concurrent callers share nothing mutable
  std::shared_lock<SharedMutex> lock(mu_);
  for (index_t r0 = 0; r0 < n; r0 += bs) {
    const index_t rows = std::min(bs, n - r0);
    const Minibatch mb = minibatch(w, b, r0, rows, nullptr, false);
    Lap none(nullptr);
    forward(w, mb, L - 1, false, logits, nullptr, 0, none);
    double c = 0.0;
    total += loss_rows(w, mb, false, nullptr, &c);
    count += c;
    kl += kl_sum(w);
  }
  double loss = total / count + l2_term();
  if (spec_.variational) loss += beta() * kl / static_cast<double>(n);
  return loss;
}

namespace {
// Sets one of the network's per-call slots (the gradient destination gout_, the W0 row flags,
// the gradient source of an apply call) for one call; back to its default (T{}: the network's
// own buffers) on every exit.
template <class T>
struct ScopedSet {
  T& slot;
  ScopedSet(T& s, const T& to) : slot(s) { slot = to; }
  ~ScopedSet() { slot = T{}; }
};
}  // namespace

double Network::gradients(const Batch& b, bool training, float* grads_out) {
  check_batch(b, true);
  std::unique_lock<SharedMutex> lock(mu_);
  Lap none(nullptr);
  ScopedSet<float*> into(gout_, grads_out);  // written in place: no copy of every tensor afterwards
  const double loss = loss_and_grads(minibatch(*ws_, b, 0, b.x.rows, nullptr, training), training, none);
  dense_sparse_grads();
  end_step();
  return loss;
}

double Network::gradients_rows(const Batch& b, const std::int64_t* ids, index_t n_ids, bool training,
                               float* grads_out, std::uint8_t* w0_rows) {
  AEREC_CHECK_ARG(w0_rows == nullptr || grads_out != nullptr, "w0_rows needs grads_out");
  check_batch(b, true);
  AEREC_CHECK_ARG(n_ids >= 1, "the batch has no rows");
  for (index_t r = 0; r < n_ids; ++r) AEREC_CHECK_INDEX(ids[r] >= 0 && ids[r] < b.x.rows, "row id out of range");
  std::unique_lock<SharedMutex> lock(mu_);
  Lap none(nullptr);
  ScopedSet<std::uint8_t*> flags(w0_flags_, w0_rows);
  ScopedSet<float*> into(gout_, grads_out);  // written in place: no copy of every tensor afterwards
  const double loss = loss_and_grads(minibatch(*ws_, b, 0, n_ids, ids, training), training, none);
  dense_sparse_grads();
  end_step();
  return loss;
}

const float* Network::grad_at(index_t o, index_t n, float* tmp) const {
  const GradSource& s = gsrc_;
  if (s.scales == nullptr) return (s.one != nullptr ? s.one : grads_.data()) + o;
  const index_t w0_end = offsets_[1], c0 = tensor_cols(0);
  const float l2 = static_cast<float>(spec_.l2);
  for (int k = 0; k < s.n; ++k) {
    const float sk = s.scales[k];
    const float* __restrict p = s.parts[k] + o;
    const std::uint8_t* rows = s.w0_rows != nullptr ? s.w0_rows[k] : nullptr;
    float* __restrict t = tmp;
    index_t i = 0;
    while (i < n) {
      // [i, e): one run of W0 rows with the same flag, or everything past W0
      index_t e = n;
      bool zero = false;
      if (rows != nullptr && o + i < w0_end) {
        zero = rows[(o + i) / c0] == 0;
        e = std::min(n, ((o + i) / c0 + 1) * c0 - o);
        while (e < n && o + e < w0_end && (rows[(o + e) / c0] == 0) == zero) e = std::min(n, e + c0);
      }
      if (zero && l2 == 0.f) {  // the part's row is +0 there: the bits of summing the zero-filled row
        const float z = sk * 0.f;
        if (k == 0)
          for (index_t j = i; j < e; ++j) t[j] = z;
        else
          for (index_t j = i; j < e; ++j) t[j] = t[j] + z;
      } else if (zero) {  // l2 * w there (gradients_rows' unwritten rows): the filled row's bits
        const float* __restrict w = pw_ + o;
        if (k == 0)
          for (index_t j = i; j < e; ++j) t[j] = sk * (l2 * w[j]);
        else
          for (index_t j = i; j < e; ++j) t[j] = t[j] + sk * (l2 * w[j]);
      } else if (k == 0) {
        for (index_t j = i; j < e; ++j) t[j] = sk * p[j];
      } else {
        for (index_t j = i; j < e; ++j) t[j] = t[j] + sk * p[j];
      }
      i = e;
    }
  }
  return tmp;
}

void Network::apply_gradients(const float* grads, const std::int32_t* rows0, index_t n0, const std::int32_t* urows,
                              index_t nu, index_t lo, index_t hi) {
  GradSource src;  // one buffer, read in place (scales == nullptr)
  src.one = grads;
  std::unique_lock<SharedMutex> lock(mu_);
  ScopedSet<GradSource> guard(gsrc_, src);
  apply_source(rows0, n0, urows, nu, lo, hi);
}

void Network::apply_gradient_sum(int n_parts, const float* const* parts, const float* scales,
                                 const std::uint8_t* const* w0_rows, const std::int32_t* rows0, index_t n0,
                                 const std::int32_t* urows, index_t nu, index_t lo, index_t hi) {
  AEREC_CHECK_ARG(n_parts >= 1, "the gradient sum needs at least one part");
  GradSource src;
  src.n = n_parts;
  src.parts = parts;
  src.scales = scales;
  src.w0_rows = w0_rows;
  std::unique_lock<SharedMutex> lock(mu_);
  ScopedSet<GradSource> guard(gsrc_, src);
  apply_source(rows0, n0, urows, nu, lo, hi);
}

// The body of apply_gradients / apply_gradient_sum (the lock held, gsrc_ set): the gradient is
// read in place from gsrc_ (only the block [lo, hi) of it; no copy into grads_).
void Network::apply_source(const std::int32_t* rows0, index_t n0, const std::int32_t* urows, index_t nu, index_t lo,
                           index_t hi) {
  const index_t c0 = tensor_cols(0);
  if (hi < 0) hi = n_params();
  AEREC_CHECK_INDEX(lo >= 0 && lo <= hi && hi <= n_params(), "flat parameter range out of bounds");
  for (index_t i = 0; i < n0; ++i) AEREC_CHECK_INDEX(rows0[i] >= 0 && rows0[i] < n_in(), "W0 row out of range");
  for (index_t i = 0; i < nu; ++i)
    AEREC_CHECK_INDEX(urows[i] >= 0 && urows[i] < spec_.n_users, "user row out of range");
  end_step();
  Lap lap(&timings_);
  // apply_optimizer reads W0 through grad_at (w0_rows_ false) and U as compact rows (gu_, without the
  // l2 part it adds back): lazy moves the given rows, dense every row.
  if (spec_.lazy)
    for (index_t i = 0; i < n0; ++i)
      if (item_slot_[rows0[i]] < 0) {
        item_slot_[rows0[i]] = static_cast<std::int32_t>(uniq_.size());
        uniq_.push_back(rows0[i]);
      }
  if (spec_.n_users > 0) {
    const index_t n_all = spec_.lazy ? nu : spec_.n_users;
    for (index_t i = 0; i < n_all; ++i) {
      const std::int32_t u = spec_.lazy ? urows[i] : static_cast<std::int32_t>(i);
      if (user_slot_[u] >= 0) continue;
      user_slot_[u] = static_cast<std::int32_t>(uniq_users_.size());
      uniq_users_.push_back(u);
    }
    gu_.resize(uniq_users_.size() * static_cast<size_t>(c0));
    const float l2 = static_cast<float>(spec_.l2);
    const index_t ou = offsets_[2 * n_layers()];
    std::vector<float> tmp(static_cast<size_t>(c0));
    for (size_t j = 0; j < uniq_users_.size(); ++j) {
      const index_t o = ou + static_cast<index_t>(uniq_users_[j]) * c0;
      // rows outside [lo, hi) are never stepped: their gradient is not read
      if (o + c0 <= lo || o >= hi) continue;
      const float* g = grad_at(o, c0, tmp.data());
      for (index_t c = 0; c < c0; ++c) gu_[j * c0 + c] = g[c] - l2 * pw_[o + c];
    }
  }
  opt_lo_ = lo;
  opt_hi_ = hi;
  apply_optimizer(lap);
  opt_lo_ = 0;
  opt_hi_ = -1;
  end_step();
  ++timings_.batches;
}

double Network::train_batch(const Batch& b) {
  check_batch(b, true);
  std::unique_lock<SharedMutex> lock(mu_);
  return train_epoch_locked(b, b.x.rows, nullptr);
}

double Network::train_epoch(const Batch& b, index_t batch_size, bool shuffle, std::uint64_t seed) {
  AEREC_CHECK_ARG(batch_size >= 1, "batch_size must be >= 1");
  check_batch(b, true);
  std::unique_lock<SharedMutex> lock(mu_);
  const index_t n = b.x.rows;
  if (!shuffle) return train_epoch_locked(b, batch_size, nullptr);
  // (key, row) pairs sorted in place: the order of spec.py's (h(k, i), i), without the indirect
  // comparisons of sorting row ids by a key table (half the epoch's sort time).
  keys_.resize(n);
  order_.resize(n);
  const std::uint64_t k = rng::shuffle_key(spec_.seed, seed);
  for (index_t i = 0; i < n; ++i) keys_[i] = {rng::h(k, static_cast<std::uint64_t>(i)), i};
  std::sort(keys_.begin(), keys_.end());
  for (index_t i = 0; i < n; ++i) order_[i] = keys_[i].second;
  return train_epoch_locked(b, batch_size, order_.data());
}

double Network::train_epoch_locked(const Batch& b, index_t batch_size, const std::int64_t* order) {
  const index_t n = b.x.rows, bs = std::min(batch_size, n);
  double total = 0.0;
  Lap lap(&timings_);
  for (index_t r0 = 0; r0 < n; r0 += bs) {
    const index_t rows = std::min(bs, n - r0);
    lap.enter(&Timings::gather);
    const Minibatch mb = minibatch(*ws_, b, r0, rows, order, true);
    total += loss_and_grads(mb, true, lap) * static_cast<double>(rows);
    apply_optimizer(lap);
    end_step();
    ++timings_.batches;
  }
  return total / static_cast<double>(n);
}

}  // namespace aerec::cpu

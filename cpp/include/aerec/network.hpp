// Trainable feed-forward network (the C++ twin of aerec.backends.numpy_.Network). It owns the
// parameters, their gradients, the optimizer state and preallocated workspaces (grown once to the
// largest batch seen; no allocation per step), and runs forward, backward, the optimizer step and
// whole epochs without Python. The maths is in python/aerec/models/spec.py; the random streams
// (dropout masks, shuffle order) in aerec/rng.hpp.
//
// Layout: weight layer i maps sizes[i] -> sizes[i+1]; W_i is sizes[i] x sizes[i+1] row-major
// (x @ W), b_i has sizes[i+1] entries. Tensors are numbered W0, b0, W1, b1, ... (tensor 2i is W_i,
// 2i+1 is b_i); parameters, gradients and each optimizer slot are one flat buffer each with the
// same offsets.
//
// Beyond the dense autoencoder: CSR input (Batch::x_csr), the multinomial loss, a Gaussian
// variational bottleneck (NetworkSpec::variational) and the CDAE per-user input vector
// (NetworkSpec::n_users, Batch::users). Not implemented yet: lazy (row-sparse) Adam for a CSR-fed
// first layer and the user table (their updates are dense, as the dense semantics require). The
// layer loop touches the input kind only in run_forward (layer 0) and the first layer's weight
// gradient, and the loss only in loss_rows, so new input kinds / losses slot in there.
//
// Thread safety: hidden and loss are const and build their workspace per call, so any number of
// threads may run them on one network at once, each getting the bits a lone caller gets.
// Training (gradients, train_batch, train_epoch) and the write_* / set_step calls take the
// network exclusively; hidden, loss and read_* wait for them (and they for running readers), so a
// reader sees the weights between two updates. param(), state() and grad() are raw,
// unsynchronised access for single-threaded setup and tests.
#pragma once
#include <atomic>
#include <cstdint>
#include <shared_mutex>

#include "aerec/rwlock.hpp"
#include <string>
#include <vector>

#include "aerec/activation.hpp"
#include "aerec/optim.hpp"
#include "aerec/view.hpp"

namespace aerec::cpu {

// Input kind is per call (Batch: dense or CSR x, optional users); the enum is kept for specs.
enum class InputKind : int { dense = 0 };
// multinomial: -sum_c y_c log_softmax(z)_c per row, mean over rows (Mult-DAE/VAE); identity output.
enum class LossKind : int { mse = 0, bce = 1, masked_mse = 2, multinomial = 3 };
enum class OptimizerKind : int { adam = 0, adamw = 1, sgd = 2 };

LossKind loss_from_name(const std::string& s);            // throws std::invalid_argument
OptimizerKind optimizer_from_name(const std::string& s);  // throws std::invalid_argument

struct NetworkSpec {
  std::vector<index_t> layer_sizes;     // L + 1 entries, each >= 1
  std::vector<Activation> activations;  // L
  std::vector<double> dropout;          // L, each in [0, 1): on the input of weight layer i
  InputKind input = InputKind::dense;
  LossKind loss = LossKind::mse;
  double l2 = 0.0;
  OptimizerKind optimizer = OptimizerKind::adam;
  double learning_rate = 1e-3, beta1 = 0.9, beta2 = 0.999, epsilon = 1e-7;
  double weight_decay = 0.0, momentum = 0.0;
  bool nesterov = false;
  int encoder_depth = 1;
  std::uint64_t seed = 0;
  // Gaussian variational bottleneck (Mult-VAE): weight layer encoder_depth-1 (identity activation)
  // outputs [mu, logvar] (2 x layer_sizes[encoder_depth] units); the next layer reads
  // z = mu + eps * exp(logvar / 2) in training (eps: rng::gaussian), z = mu in eval. The loss adds
  // beta_t * mean over rows of 0.5 * sum_j (exp(logvar) - logvar + mu^2 - 1), with
  // beta_t = min(beta, step / anneal_steps) when anneal_steps > 0, else beta.
  bool variational = false;
  double beta = 1.0;
  std::int64_t anneal_steps = 0;
  // Per-user input vector (CDAE): n_users > 0 adds U[user] (U: n_users x cols of layer 0) to the
  // first layer's pre-activation; U is tensor 2L (after the layers) and counts as a weight for l2.
  index_t n_users = 0;

  void validate() const;  // throws std::invalid_argument naming the bad field
};

// A batch. x: rows x n_in, dense (x.data) or CSR (x_csr.indptr != nullptr; then x.data is null and
// x.rows / x.cols still give the shape). y: rows x n_out, dense (y.data) or CSR (y_csr.indptr),
// densified per minibatch. mask (optional, dense, masked_mse only): rows x n_out; masked_mse with
// no mask uses mask = (y != 0). A CSR x feeds the first layer as a gather-sum (z_r = b + sum over
// the row's entries of v * W[col, :]) with a row-sparse weight gradient; dropout on it is the
// dense stream evaluated at the stored entries, so results equal the dense input's.
struct Batch {
  MatrixView<const float> x, y, mask;
  CsrView<float> x_csr, y_csr;
  // Internal (minibatches of a CSR x): batch row r is CSR row row_ids[r], else row0 + r.
  const std::int64_t* row_ids = nullptr;
  index_t row0 = 0;
  // One user id per row of x (networks with n_users > 0, else null).
  const std::int32_t* users = nullptr;
};

class Network {
 public:
  explicit Network(NetworkSpec spec);  // parameters start at zero: set them with tensor()/set

  const NetworkSpec& spec() const { return spec_; }
  int n_layers() const { return static_cast<int>(spec_.layer_sizes.size()) - 1; }
  index_t n_in() const { return spec_.layer_sizes.front(); }
  index_t n_out() const { return spec_.layer_sizes.back(); }
  std::int64_t step() const { return step_; }
  double beta() const;  // KL weight at the current step (variational)
  void set_step(std::int64_t s);

  // Parameter tensors W0, b0, W1, b1, ... (then U with n_users); rows x cols (biases: 1 x n).
  int n_tensors() const { return 2 * n_layers() + (spec_.n_users > 0 ? 1 : 0); }
  index_t tensor_rows(int t) const;
  index_t tensor_cols(int t) const;
  index_t tensor_size(int t) const { return tensor_rows(t) * tensor_cols(t); }
  float* param(int t) { return params_.data() + offset(t); }
  const float* grad(int t) const { return grads_.data() + offset(t); }
  // Optimizer state: adam/adamw slots 0 = m, 1 = v; sgd with momentum slot 0 = velocity.
  int n_state_slots() const;
  const char* state_slot_name(int slot) const;
  float* state(int slot, int t) { return state_[slot].data() + offset(t); }

  // Eval mode (no dropout). out: rows x sizes[layer + 1] (the activation output of `layer`).
  // Re-entrant: workspace per call, O(min(batch_size, rows) x the widest layer up to `layer`).
  void hidden(const Batch& b, int layer, MatrixView<float> out, index_t batch_size) const;
  // Eval-mode loss over all rows (mean as in spec.py) + 0.5 * l2 * sum ||W||^2. Re-entrant.
  double loss(const Batch& b, index_t batch_size) const;
  // Loss and gradients of the whole batch into grad(t), no step. training: dropout of stream step().
  // grads_out (optional): a copy of every gradient, tensor after tensor (offsets as the params),
  // taken before the lock is released.
  double gradients(const Batch& b, bool training, float* grads_out = nullptr);

  // Consistent copies under the network's lock: dst[t] / src[t] hold tensor_size(t) floats, for
  // the parameters or optimizer slot `slot`.
  void read_params(float* const* dst) const;
  void write_params(const float* const* src);
  void read_state(int slot, float* const* dst) const;
  void write_state(int slot, const float* const* src);
  // Training step: dropout, loss, backward, optimizer update, ++step. Returns the loss before it.
  double train_batch(const Batch& b);
  // One epoch in minibatches (last one partial), order from rng::shuffle_key when shuffle.
  // Returns the row-weighted mean of the batch losses.
  double train_epoch(const Batch& b, index_t batch_size, bool shuffle, std::uint64_t seed);

 private:
  void check_batch(const Batch& b, bool need_y) const;
  // Minibatch rows [r0, r0 + rows) of b (through `ids` when not null): dense rows are gathered
  // (ids) or viewed, CSR x is addressed in place, CSR y is densified into yb_.
  // Everything one forward pass writes (grown to the largest use, reused): training owns one
  // (ws_); hidden and loss make their own per call, which is what lets them run concurrently.
  struct Workspace {
    explicit Workspace(int n_layers);
    std::vector<std::vector<float>> act;      // act[i] (i >= 1): output of layer i-1
    std::vector<std::vector<float>> dropped;  // dropped[i]: input of layer i after dropout
    std::vector<std::vector<float>> mult;     // mult[i]: its dropout multipliers
    std::vector<const float*> in_ptr;         // input of layer i in the last forward
    std::vector<index_t> in_ld;
    std::vector<char> drop_on;                // dropout applied to layer i in the last forward
    std::vector<double> partials;             // loss partial sums per block of kLossBlockRows rows
    std::vector<float> xb, yb, mb;            // gathered minibatch (shuffle)
    std::vector<std::int32_t> ub;             // gathered user ids (shuffle)
    std::vector<float> stats, vae_ev, vae_std, vae_eps;  // variational layer
    index_t vae_rows = 0;
  };
  double gradients_locked(const Batch& b, bool training);
  Batch minibatch(Workspace& w, const Batch& b, index_t r0, index_t rows, const std::int64_t* ids) const;
  void sparse_first_layer(const Batch& sb, index_t rows, bool training, Activation act, float* c,
                          index_t ldc) const;
  void sparse_weight_grad(const Batch& sb, index_t rows, const float* dz, float* dW, float l2);
  void add_user_rows(const Batch& sb, index_t rows, float* c, index_t ldc) const;  // c[r] += U[user r]
  index_t offset(int t) const { return offsets_[t]; }
  const float* cparam(int t) const { return params_.data() + offset(t); }
  static float* grow(std::vector<float>& v, index_t n);  // capacity >= n, returns data()
  static double* grow(std::vector<double>& v, index_t n);
  // Runs layers 0..last on rows of x; the final layer writes to (out, ldo) when out != nullptr.
  // logits: the output layer keeps z (bce). Records layer inputs for backward.
  void run_forward(Workspace& w, const Batch& sb, index_t rows, int last, bool training, bool logits,
                   float* out, index_t ldo) const;
  // Sum of the loss over rows and the divisor; writes dL/dz (for the mean over `rows`) when dz.
  double loss_rows(Workspace& w, const float* out, index_t rows, const Batch& b, index_t r0, float* dz,
                   double* count) const;
  double l2_term() const;
  // Variational layer: z from stats_ ([mu, logvar] rows x 2d) into (z, ldz); keeps exp(logvar),
  // std and eps for backward and the KL term.
  void reparameterise(Workspace& w, index_t rows, index_t d, bool training, int layer, float* z,
                      index_t ldz) const;
  double kl_sum(const Workspace& w) const;  // sum over the rows of w's last forward of KL(q || N(0, I))
  double loss_and_grads(const Batch& b, bool training);  // forward + loss + backward
  void apply_optimizer();

  NetworkSpec spec_;
  mutable SharedMutex mu_;  // shared: hidden, loss, read_*; exclusive: training, write_*
  std::atomic<std::int64_t> step_{0};  // atomic: step() and beta() read it without the lock
  std::vector<index_t> offsets_;  // n_tensors + 1
  std::vector<float> params_, grads_;
  std::vector<std::vector<float>> state_;
  // Training workspaces (grown on first use to the largest batch seen; no allocation per step).
  Workspace ws_;
  std::vector<float> dz_, da_;                // backward ping-pong, rows x max width
  static constexpr index_t kLossBlockRows = 32;
  std::vector<std::uint64_t> keys_;
  std::vector<std::int64_t> order_;
};

}  // namespace aerec::cpu

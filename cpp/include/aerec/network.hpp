// Trainable autoencoder network (the C++ engine of python/aerec/nn/spec.py, the C++ twin of
// aerec.backends.numpy_.Network). It owns the parameters, their gradients, the optimizer state and
// the training workspaces (grown once to the largest batch seen; no allocation per step), and runs
// forward, backward, the optimizer step and whole epochs without Python. The maths and the random
// streams (dropout, Gaussian noise, negatives, shuffle; keyed by the row's index in the x given to
// the call) are in spec.py and aerec/rng.hpp.
//
// The pipeline: input (dense | CSR; L2 row normalisation; dropout) -> dense stack -> bottleneck
// (plain | Gaussian + KL anneal) [+ per-user embedding on layer 0] -> dense stack -> loss (mse |
// bce | masked_mse | multinomial | logistic with sampled negatives); adam | adamw | sgd, lazy
// (row-sparse) on W0 and U optionally.
//
// Layout: weight layer i maps sizes[i] -> sizes[i+1]; W_i is sizes[i] x cols_i row-major (x @ W),
// b_i has cols_i entries (cols_i = sizes[i+1], doubled for the variational layer). Tensors are
// W0, b0, W1, b1, ... (then U); parameters, gradients and each optimizer slot are one flat buffer
// each with the same offsets.
//
// A CSR x feeds layer 0 as a gather-sum (the batch is never densified); its weight gradient is
// row-sparse (a CSC of the batch), computed row by row inside the optimizer step. The logistic
// loss and the multinomial one on a CSR y read their targets as sparse rows (a CSR y, or the
// non-zeros of a dense one) and fuse the output-bias gradient per thread.
//
// Thread safety: hidden and loss are const and build their workspace per call, so any number of
// threads may run them on one network at once, each getting the bits a lone caller gets.
// Training (gradients, train_batch, train_epoch) and the write_* / set_step calls take the
// network exclusively; hidden, loss and read_* wait for them (and they for running readers), so a
// reader sees the weights between two updates. param(), state(), grad() and timings() are raw,
// unsynchronised access for single-threaded setup, tests and profiling.
#pragma once
#include <atomic>
#include <cstdint>
#include <memory>
#include <shared_mutex>
#include <string>
#include <utility>
#include <vector>

#include "aerec/activation.hpp"
#include "aerec/optim.hpp"
#include "aerec/rwlock.hpp"
#include "aerec/view.hpp"

namespace aerec::cpu {

enum class LossKind : int { mse = 0, bce = 1, masked_mse = 2, multinomial = 3, logistic = 4 };
enum class OptimizerKind : int { adam = 0, adamw = 1, sgd = 2 };

LossKind loss_from_name(const std::string& s);            // throws std::invalid_argument
OptimizerKind optimizer_from_name(const std::string& s);  // throws std::invalid_argument

struct NetworkSpec {
  std::vector<index_t> layer_sizes;     // L + 1 entries, each >= 1
  std::vector<Activation> activations;  // L
  std::vector<double> dropout;          // L, each in [0, 1): on the input of weight layer i
  bool normalize_input = false;         // x rows / their L2 norm, before dropout
  LossKind loss = LossKind::mse;
  index_t negative_samples = 0;         // logistic: draws per positive (0: every item)
  double l2 = 0.0;
  OptimizerKind optimizer = OptimizerKind::adam;
  double learning_rate = 1e-3, beta1 = 0.9, beta2 = 0.999, epsilon = 1e-8;
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
  bool lazy = false;  // row-sparse updates of W0 and U (rows present in the batch only)

  void validate() const;  // throws std::invalid_argument naming the bad field
};

// A batch. x: rows x n_in, dense (x.data) or CSR (x_csr.indptr != nullptr; then x.data is null and
// x.rows / x.cols still give the shape). y: rows x n_out, dense (y.data) or CSR (y_csr.indptr),
// densified per minibatch for mse / bce / masked_mse, read as sparse rows by logistic and by
// multinomial on a CSR y. mask (optional, dense, masked_mse only): rows x n_out; masked_mse with
// no mask uses mask = (y != 0). Dropout on a CSR x is the dense stream evaluated at the stored
// entries, so results equal the dense input's.
struct Batch {
  MatrixView<const float> x, y, mask;
  CsrView<float> x_csr, y_csr;
  // One user id per row of x (networks with n_users > 0, else null).
  const std::int32_t* users = nullptr;
};

// Seconds per training phase accumulated since the last reset_timings(), and the GEMM work.
struct Timings {
  double gather = 0, spmm = 0, gemm = 0, noise = 0, loss = 0, dense_bwd = 0, sparse_bwd = 0, optimizer = 0;
  std::int64_t batches = 0;
  double gemm_flops = 0;
};

class Network {
 public:
  explicit Network(NetworkSpec spec);  // parameters start at zero: set them with param() / write_params
  ~Network();

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
  float* param(int t) { return pw_ + offset(t); }
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
  // grads_out (optional): every gradient written there instead, tensor after tensor (offsets as
  // the params; grad(t) is then not updated): no copy of the whole buffer per call.
  double gradients(const Batch& b, bool training, float* grads_out = nullptr);
  // The same on rows ids[0..n_ids) of b (as a train_epoch batch: the random streams are keyed by
  // these row ids), so data-parallel ranks reproduce the draws of one global batch.
  // w0_rows (optional, with grads_out; n_in() bytes): written 1 for the rows of W0 whose gradient
  // was written, 0 for the others, which are then NOT written into grads_out: their gradient is
  // l2 * W0's row exactly (the data part is zero there: a CSR x whose rows do not touch them). With
  // a dense x every row is written (all 1). A data-parallel rank skips the fill of W0's untouched
  // rows (a pass over W0 per step) and their owner does not read them (apply_gradient_sum).
  double gradients_rows(const Batch& b, const std::int64_t* ids, index_t n_ids, bool training, float* grads_out,
                        std::uint8_t* w0_rows = nullptr);
  // One optimizer step (++step) with the given gradients (every tensor, flat, offsets as the
  // params): what train_batch applies after computing them. lazy networks move only W0's rows
  // rows0[0..n0) and U's rows urows[0..nu) (the rows present in the batch).
  // lo / hi (optional): only the parameters at flat offsets [lo, hi) move (the optimizer is
  // element-wise, so they move exactly as in the full step; the rest and their optimizer state stay
  // untouched): a data-parallel rank that owns that block of the flat parameters steps it alone.
  void apply_gradients(const float* grads, const std::int32_t* rows0, index_t n0, const std::int32_t* urows,
                       index_t nu, index_t lo = 0, index_t hi = -1);
  // Every parameter, flat (offsets as the tensors): n floats from flat offset lo, copied out / in
  // under the lock (a data-parallel rank gathers the blocks stepped by the others).
  index_t n_params() const { return offsets_.back(); }
  void read_params_flat(index_t lo, index_t n, float* dst) const;
  void write_params_flat(index_t lo, index_t n, const float* src);
  // External parameter storage: from bind_params on, the parameters live in ext (n_params() floats,
  // the flat layout; the caller keeps it alive and unbinds before freeing it), copied there first
  // when copy (else ext's values are taken as they are). Data-parallel ranks on one node bind one
  // shared-memory block: each steps its part in place and every rank sees every part at once.
  // unbind_params copies them back into the network's own storage and uses that again.
  void bind_params(float* ext, bool copy);
  void unbind_params();
  bool params_bound() const { return pw_ != params_.data(); }
  // apply_gradients with the gradient sum over k of scales[k] * parts[k] (each part a flat buffer
  // laid out as the params), summed in float32 in the order k = 0, 1, ...: g = scales[0] * p_0,
  // then g = g + scales[k] * p_k; computed a cache-sized piece at a time inside the optimizer pass
  // (no buffer of the sum, no pass of its own). w0_rows (optional) / w0_rows[k] (optional): one
  // byte per row of W0, 0 where part k's W0 row holds no data gradient: not read, taken as +0 (the
  // result is the one of the zero-filled part, bit for bit). With l2 > 0 such a row is taken as
  // fl(l2 * w) of W0's row before the step (what gradients_rows leaves unwritten): again the bits
  // of the filled part.
  void apply_gradient_sum(int n_parts, const float* const* parts, const float* scales,
                          const std::uint8_t* const* w0_rows, const std::int32_t* rows0, index_t n0,
                          const std::int32_t* urows, index_t nu, index_t lo = 0, index_t hi = -1);

  // Consistent copies under the network's lock: dst[t] / src[t] hold tensor_size(t) floats, for
  // the parameters or optimizer slot `slot`.
  void read_params(float* const* dst) const;
  void write_params(const float* const* src);
  void read_state(int slot, float* const* dst) const;
  void write_state(int slot, const float* const* src);
  // Pruning masks, one per weight matrix W_l (l < n_layers; biases and U are never masked).
  // masks[l]: tensor_size(2 l) bytes, 1 = keep, 0 = pruned (any other value: invalid_argument),
  // or null = dense. Setting masks zeroes the pruned weights and their optimizer state; from then
  // on every optimizer step skips them (the fused kernels test the mask per vector block, so the
  // pruned weights, moments and velocities stay exactly 0), and write_params / write_state zero
  // them again. masks == nullptr or all-null entries: no masks. gradients() still reports the
  // pruned weights' gradients (the loss's, unmasked).
  void set_masks(const std::uint8_t* const* masks);
  bool has_mask(int l) const;
  void read_mask(int l, std::uint8_t* dst) const;  // tensor_size(2 l) bytes (all 1 without a mask)
  // Training step: dropout, loss, backward, optimizer update, ++step. Returns the loss before it.
  double train_batch(const Batch& b);
  // One epoch in minibatches (last one partial), order from rng::shuffle_key when shuffle.
  // Returns the row-weighted mean of the batch losses.
  double train_epoch(const Batch& b, index_t batch_size, bool shuffle, std::uint64_t seed);

  const Timings& timings() const { return timings_; }
  void reset_timings() { timings_ = Timings{}; }

 private:
  struct Workspace;  // everything one forward pass writes (network.cpp)
  struct Minibatch;
  class Lap;         // phase timer
  void check_batch(const Batch& b, bool need_y) const;
  // Rows [r0, r0 + rows) of b (through `ids` when not null) as the forward pass reads them.
  Minibatch minibatch(Workspace& w, const Batch& b, index_t r0, index_t rows, const std::int64_t* ids,
                      bool training) const;
  // Layers 0..last; the final layer writes to (out, ldo) when out != nullptr. logits: the output
  // layer keeps z (bce, logistic).
  void forward(Workspace& w, const Minibatch& mb, int last, bool training, bool logits, float* out,
               index_t ldo, Lap& lap) const;
  // Sum of the loss over the rows of w's last forward and its divisor. grad: the output layer's
  // buffer is overwritten with dL/dz, and the sparse-target losses also write the output bias
  // gradient to db (fused per thread). Without grad the output buffer is clobbered.
  double loss_rows(Workspace& w, const Minibatch& mb, bool grad, float* db, double* count) const;
  double l2_term() const;
  double kl_sum(const Workspace& w) const;  // sum over the rows of w's last forward of KL(q || N(0, I))
  double loss_and_grads(const Minibatch& mb, bool training, Lap& lap);  // forward + loss + backward
  void backward(const Minibatch& mb, Lap& lap);
  void user_grad(const Minibatch& mb, const float* dz);  // compact rows of dU (uniq_users_)
  void input_rows(const Minibatch& mb, const float* dz);  // W0's present rows (uniq_), CSC of a CSR x
  void dense_sparse_grads();  // W0 (CSR x) and U gradients into grads_ (gradients())
  void apply_optimizer(Lap& lap);
  void end_step();  // forgets the batch's rows
  double train_epoch_locked(const Batch& b, index_t batch_size, const std::int64_t* order);
  index_t offset(int t) const { return offsets_[t]; }
  const float* cparam(int t) const { return pw_ + offset(t); }

  NetworkSpec spec_;
  mutable SharedMutex mu_;  // shared: hidden, loss, read_*; exclusive: training, write_*
  std::atomic<std::int64_t> step_{0};  // atomic: step() and beta() read it without the lock
  std::vector<index_t> offsets_;  // n_tensors + 1
  std::vector<float> params_, grads_;
  float* pw_ = nullptr;  // the parameters: params_.data(), or the storage given to bind_params
  // Where apply_optimizer reads the gradients: one flat buffer (scales == nullptr: `one`, or
  // grads_ when that is null too) or a scaled sum of the parts (apply_gradient_sum).
  // grad_at(o, n, tmp): the gradient at flat offsets
  // [o, o + n), a pointer into the buffer or computed into tmp (n floats).
  struct GradSource {
    int n = 1;
    const float* const* parts = nullptr;
    const float* scales = nullptr;
    const std::uint8_t* const* w0_rows = nullptr;
    const float* one = nullptr;  // the single buffer (apply_gradients)
  } gsrc_;
  const float* grad_at(index_t o, index_t n, float* tmp) const;
  void apply_source(const std::int32_t* rows0, index_t n0, const std::int32_t* urows, index_t nu, index_t lo,
                    index_t hi);
  // Where loss_and_grads / dense_sparse_grads write the gradients: the caller's buffer during
  // gradients(grads_out) (no copy of every tensor afterwards), else grads_.
  float* gout_ = nullptr;
  std::uint8_t* w0_flags_ = nullptr;  // gradients_rows' w0_rows during the call
  float* gbuf() { return gout_ ? gout_ : grads_.data(); }
  std::vector<std::vector<float>> state_;
  std::unique_ptr<Workspace> ws_;  // training (grown on first use to the largest batch seen)
  Timings timings_;
  index_t opt_lo_ = 0, opt_hi_ = -1;  // apply_optimizer moves flat offsets [opt_lo_, opt_hi_) (-1: to the end)
  bool w0_rows_ = false;  // the last backward left W0's gradient row-sparse (CSR x): uniq_ / csc_*
  // Rows present in the batch: W0's (input features) and U's (users), slot = compact row or -1.
  std::vector<std::int32_t> item_slot_, uniq_, user_slot_, uniq_users_;
  std::vector<std::int64_t> csc_ptr_, csc_fill_;  // CSC of a CSR batch over uniq_
  std::vector<std::int32_t> csc_rows_;
  std::vector<float> csc_vals_, gu_;  // gu_: dU rows of uniq_users_
  const float* dz0_ = nullptr;        // layer 0's dL/dz of the last backward
  std::vector<float> rowbuf_;         // per-thread gradient chunks of the optimizer
  std::vector<std::pair<std::uint64_t, std::int64_t>> keys_;  // shuffle
  std::vector<std::int64_t> order_;
  // Masks: keep_ is one byte per parameter (the flat layout; 1 outside masked tensors), empty when
  // no tensor is masked; masked_[l] says whether W_l has a mask.
  std::vector<std::uint8_t> keep_;
  std::vector<char> masked_;
  void zero_pruned(float* buf);  // buf (a flat buffer laid out as params_): pruned entries = 0
};

}  // namespace aerec::cpu

// RecNetwork: the sparse-input autoencoder behind MultDAE, MultVAE and CDAE (maths in
// python/aerec/models/recspec.py; the NumPy oracle is python/aerec/backends/_numpy_recnet.py).
//
// Layer 0 is a CSR gather-sum SpMM (a batch is never densified) whose weight gradient is
// row-sparse (only the batch's items); dense layers go through aerec::cpu::sgemm with the fused
// bias+activation epilogue; the multinomial log-softmax and its gradient are fused per logits row;
// Adam / SGD are fused per tensor (optionally lazy, row-sparse, for W0 and V). Training buffers
// are owned by the network and grow only when a larger batch arrives, so train_epoch allocates
// nothing per batch.
//
// Thread safety: evaluate is const and allocates its workspace per call, so any number of threads
// may evaluate one network at once (each gets the bits a lone caller gets). Training
// (train_batch, train_epoch, gradients) and write_tensors take the network exclusively: evaluate
// and read_tensors wait for them (and they for running evaluations), so a concurrent reader sees
// the weights between two updates, never a half-written update. param(), moment1/2() and `step`
// are raw, unsynchronised access for single-threaded setup and tests.
#pragma once
#include <cstdint>
#include <shared_mutex>

#include "aerec/rwlock.hpp"
#include <vector>

#include "aerec/activation.hpp"
#include "aerec/sparse.hpp"
#include "aerec/view.hpp"

namespace aerec::cpu {

// ---------------------------------------------------------------- spec
enum class RecLoss : int { multinomial = 0, logistic = 1 };
enum class RecOptimizer : int { adam = 0, sgd = 1 };

struct RecSpec {
  std::vector<index_t> layer_sizes;  // (I, h1, ..., I)
  std::vector<Activation> activations;  // one per weight layer
  int encoder_depth = 1;
  bool variational = false;
  double anneal_cap = 0.2;
  std::int64_t total_anneal_steps = 200000;
  bool normalize_input = true;
  double input_dropout = 0.5;
  RecLoss loss = RecLoss::multinomial;
  std::int64_t negative_samples = 0;
  index_t n_users_embedding = 0;
  double l2 = 0.0;
  RecOptimizer optimizer = RecOptimizer::adam;
  double learning_rate = 1e-3, beta1 = 0.9, beta2 = 0.999, epsilon = 1e-8, momentum = 0.0;
  bool lazy_adam = false;
  std::uint64_t seed = 0;
};

// ---------------------------------------------------------------- the network
struct RecTimings {  // seconds accumulated since the last reset (phase profile of training)
  double gather = 0, spmm = 0, gemm = 0, noise = 0, loss = 0, dense_bwd = 0, sparse_bwd = 0, optimizer = 0;
  // dense_bwd: bias gradients, activation derivatives and the reparameterisation (GEMMs excluded)
  std::int64_t batches = 0;
  double gemm_flops = 0;
};

class RecNetwork {
 public:
  explicit RecNetwork(RecSpec spec);  // params zero-initialised; set them through param()

  const RecSpec& spec() const { return spec_; }
  int n_layers() const { return static_cast<int>(spec_.layer_sizes.size()) - 1; }
  index_t n_items() const { return spec_.layer_sizes[0]; }
  std::size_t n_params() const { return params_.size(); }
  index_t param_rows(std::size_t i) const { return shapes_[i].first; }
  index_t param_cols(std::size_t i) const { return shapes_[i].second; }  // 0 for a vector
  index_t param_size(std::size_t i) const { return static_cast<index_t>(params_[i].size()); }
  float* param(std::size_t i) { return params_[i].data(); }
  float* moment1(std::size_t i) { return m_[i].data(); }
  float* moment2(std::size_t i) { return v_.empty() ? nullptr : v_[i].data(); }
  std::int64_t step = 0;

  // One update on the given CSR batch (rows = users; users may be null unless the spec has
  // n_users_embedding). Returns the batch loss (data term + beta*KL + l2 term).
  double train_batch(const CsrView<float>& x, const std::int32_t* users);
  // Whole epoch: optional counter-based shuffle (seed), batches of batch_size rows. Returns the
  // row-weighted mean of the batch losses.
  double train_epoch(const CsrView<float>& x, const std::int32_t* users, index_t batch_size,
                     bool shuffle, std::uint64_t shuffle_seed);
  // Loss and dense gradients (one vector per param) at the current step, no update.
  double gradients(const CsrView<float>& x, const std::int32_t* users,
                   std::vector<std::vector<float>>* grads);
  // Evaluation mode (no dropout, z = mu). `stop` = weight layer whose output is written
  // (n_layers()-1: logits; encoder_depth-1: bottleneck / mu). out: rows x width(stop), ldo.
  // const and re-entrant: its workspace (gathered batch, hidden layers) is allocated per call,
  // O(min(batch_size, rows) x widest hidden layer); the output layer is written straight to out.
  void evaluate(const CsrView<float>& x, const std::int32_t* users, int stop, index_t batch_size,
                float* out, index_t ldo) const;
  index_t layer_width(int l) const;  // output width seen by the next layer (d for the VAE layer)

  // Consistent copies of every tensor of one kind (0: parameters, 1: first moments, 2: second
  // moments (adam)) under the network's lock: dst[i] / src[i] hold param_size(i) floats.
  void read_tensors(int which, float* const* dst) const;
  void write_tensors(int which, const float* const* src);

  RecTimings timings;

 private:
  struct Batch {  // gathered batch, owned buffers reused across batches
    std::vector<std::int64_t> indptr;
    std::vector<std::int32_t> indices;
    std::vector<float> raw, xin;
    std::vector<std::int64_t> row_ids;
    std::vector<std::int32_t> users;
    index_t rows = 0;
  };
  // Where one forward pass writes: acts[l] = output of weight layer l (rows x its width; unused
  // for a layer written straight to out), z / eps = the VAE sample and its noise (rows x d; eps
  // only in training). Training points these at the owned buffers, evaluate at per-call ones.
  struct Acts {
    float* const* acts;
    float* z;
    float* eps;
  };
  void check_input(const CsrView<float>& x, const std::int32_t* users) const;
  // rows: the given CSR's rows to gather (null: row0, row0+1, ...)
  void gather(const CsrView<float>& x, const std::int32_t* users, const std::int64_t* rows,
              index_t row0, index_t n, bool train, Batch& b) const;
  double train_epoch_impl(const CsrView<float>& x, const std::int32_t* users, index_t batch_size,
                          bool shuffle, std::uint64_t shuffle_seed, bool checked);
  void ensure_buffers(index_t rows);
  Acts train_acts();  // the owned training buffers (after ensure_buffers)
  // timings: accumulated when not null (training); evaluate passes null and writes no member.
  void forward_batch(const Batch& b, bool train, int stop, float* out, index_t ldo, const Acts& ws,
                     RecTimings* timings) const;
  double loss_and_backward(const Batch& b, bool fuse_w0);
  void build_unique(const Batch& b);
  void apply_update();

  RecSpec spec_;
  mutable SharedMutex mu_;  // shared: evaluate, read_tensors; exclusive: training, writes
  std::vector<std::pair<index_t, index_t>> shapes_;
  std::vector<std::vector<float>> params_, grads_, m_, v_;
  int v_index_ = -1;  // params index of V, or -1
  Batch batch_;
  index_t cap_rows_ = 0;
  std::vector<std::vector<float>> acts_;  // per weight layer output (rows x n_out)
  std::vector<float*> act_ptrs_;          // acts_[l].data(), refreshed by ensure_buffers
  std::vector<float> z_, eps_, dbuf_a_, dbuf_b_;
  // row-sparse layer-0 gradient: unique batch items, their compact rows, CSC of the batch
  std::vector<std::int32_t> item_slot_;  // I, -1 when absent
  std::vector<std::int32_t> uniq_;
  std::vector<std::int64_t> csc_ptr_, csc_fill_;
  std::vector<std::int32_t> csc_rows_;
  std::vector<float> csc_vals_, g0_;
  std::vector<std::int32_t> user_slot_, uniq_users_;
  std::vector<float> gv_;
  std::vector<double> row_loss_;
  std::vector<std::int32_t> stamp_;  // logistic negatives, per thread x I
  std::vector<std::int32_t> neg_items_;
  std::vector<float> neg_vals_;
  std::vector<std::int64_t> perm_;
  double beta_ = 0;
  std::vector<float> dbpart_, rowbuf_;  // per-thread output-bias partials, W0 gradient rows
  const float* dz0_ = nullptr;  // layer-0 pre-activation gradient of the last backward
  struct Chunk { std::size_t param; index_t off, len; };
  std::vector<Chunk> chunks_;
};

}  // namespace aerec::cpu

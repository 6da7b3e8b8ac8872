// RecNetwork (see recnet.hpp; maths in python/aerec/models/recspec.py).
#include "aerec/recnet.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <utility>

#include "aerec/error.hpp"
#include "aerec/gemm.hpp"
#include "aerec/nn_kernels.hpp"
#include "aerec/parallel.hpp"
#include "aerec/rng.hpp"

namespace aerec::cpu {
namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

template <class T>
void grow(std::vector<T>& v, std::size_t n) {
  if (v.size() < n) v.resize(n);
}

float sigmoidf(float z) {
  // stable for both signs
  const float e = std::exp(-std::fabs(z));
  return z >= 0.f ? 1.f / (1.f + e) : e / (1.f + e);
}
// RecNetwork's own streams (python/aerec/models/recspec.py; they go with it): its mix64 is
// rng::mix64 after a golden-ratio increment.
std::uint64_t mix64(std::uint64_t x) { return rng::mix64(x + rng::kGolden); }
std::uint64_t stream_key(std::uint64_t seed, std::uint64_t stream, std::uint64_t step) {
  return mix64(mix64(mix64(seed) + stream) + step);
}
enum RecStream : std::uint64_t { kStreamDropout = 1, kStreamGauss = 2, kStreamNeg = 3, kStreamShuffle = 4 };

double softplus(double z) { return std::max(z, 0.0) + std::log1p(std::exp(-std::fabs(z))); }

}  // namespace

RecNetwork::RecNetwork(RecSpec spec) : spec_(std::move(spec)) {
  const auto& s = spec_.layer_sizes;
  AEREC_CHECK_ARG(s.size() >= 2, "RecNetwork: layer_sizes needs at least two entries");
  for (index_t v : s) AEREC_CHECK_ARG(v >= 1, "RecNetwork: layer sizes must be >= 1");
  AEREC_CHECK_ARG(s.front() == s.back(), "RecNetwork: layer_sizes must start and end with n_items");
  const int L = n_layers();
  AEREC_CHECK_ARG(static_cast<int>(spec_.activations.size()) == L, "RecNetwork: one activation per weight layer");
  AEREC_CHECK_ARG(spec_.encoder_depth >= 1 && spec_.encoder_depth <= L, "RecNetwork: encoder_depth out of range");
  if (spec_.variational) {
    AEREC_CHECK_ARG(spec_.encoder_depth < L, "RecNetwork: variational needs a decoder layer");
    AEREC_CHECK_ARG(spec_.activations[spec_.encoder_depth - 1] == Activation::identity,
                    "RecNetwork: the variational layer must have identity activation");
  }
  AEREC_CHECK_ARG(spec_.input_dropout >= 0.0 && spec_.input_dropout < 1.0, "RecNetwork: input_dropout in [0, 1)");
  AEREC_CHECK_ARG(spec_.negative_samples >= 0 && spec_.n_users_embedding >= 0, "RecNetwork: negative counts");
  for (int l = 0; l < L; ++l) {
    const index_t nout = s[l + 1] * ((spec_.variational && l == spec_.encoder_depth - 1) ? 2 : 1);
    shapes_.push_back({s[l], nout});
    shapes_.push_back({nout, 0});
  }
  if (spec_.n_users_embedding > 0) {
    shapes_.push_back({spec_.n_users_embedding, s[1]});
    v_index_ = static_cast<int>(shapes_.size()) - 1;
  }
  for (auto& sh : shapes_) {
    const std::size_t n = static_cast<std::size_t>(sh.first) * static_cast<std::size_t>(sh.second ? sh.second : 1);
    params_.emplace_back(n, 0.f);
    m_.emplace_back(n, 0.f);
    if (spec_.optimizer == RecOptimizer::adam) v_.emplace_back(n, 0.f);
    const bool row_sparse = (&sh == &shapes_[0]) || (&sh - &shapes_[0] == v_index_);
    grads_.emplace_back(row_sparse ? 0 : n, 0.f);  // W0 / V gradients are compact (g0_, gv_)
  }
  for (std::size_t i = 1; i < params_.size(); ++i) {  // dense tensors, cut for the update loop
    if (static_cast<int>(i) == v_index_) continue;
    const index_t n = static_cast<index_t>(params_[i].size()), chunk = 16384;
    for (index_t o = 0; o < n; o += chunk) chunks_.push_back({i, o, std::min(chunk, n - o)});
  }
  item_slot_.assign(static_cast<std::size_t>(n_items()), -1);
  if (v_index_ >= 0) user_slot_.assign(static_cast<std::size_t>(spec_.n_users_embedding), -1);
  acts_.resize(L);
}

index_t RecNetwork::layer_width(int l) const { return spec_.layer_sizes[l + 1]; }

void RecNetwork::check_input(const CsrView<float>& x, const std::int32_t* users) const {
  AEREC_CHECK_ARG(x.cols == n_items(), "CSR width " + std::to_string(x.cols) + " does not match n_items " +
                                           std::to_string(n_items()));
  if (v_index_ >= 0) AEREC_CHECK_ARG(users != nullptr, "this network has a per-user embedding: pass users");
  check_csr(x, n_items(), v_index_ >= 0 ? users : nullptr, spec_.n_users_embedding);
}

void RecNetwork::ensure_buffers(index_t rows) {
  if (rows <= cap_rows_) return;
  const int L = n_layers();
  index_t maxc = 1;
  for (int l = 0; l < L; ++l) {
    grow(acts_[l], static_cast<std::size_t>(rows * shapes_[2 * l].second));
    if (l < L - 1) maxc = std::max(maxc, shapes_[2 * l].second);
  }
  maxc = std::max(maxc, spec_.layer_sizes[L - 1]);
  if (spec_.variational) {
    const index_t d = spec_.layer_sizes[spec_.encoder_depth];
    grow(z_, static_cast<std::size_t>(rows * d));
    grow(eps_, static_cast<std::size_t>(rows * d));
  }
  grow(dbuf_a_, static_cast<std::size_t>(rows * maxc));
  grow(dbuf_b_, static_cast<std::size_t>(rows * maxc));
  grow(row_loss_, static_cast<std::size_t>(rows));
  cap_rows_ = rows;
}

RecNetwork::Acts RecNetwork::train_acts() {
  act_ptrs_.resize(acts_.size());
  for (std::size_t l = 0; l < acts_.size(); ++l) act_ptrs_[l] = acts_[l].data();
  return Acts{act_ptrs_.data(), z_.data(), eps_.data()};
}

void RecNetwork::gather(const CsrView<float>& x, const std::int32_t* users, const std::int64_t* rows,
                        index_t row0, index_t n, bool train, Batch& b) const {
  b.rows = n;
  grow(b.indptr, static_cast<std::size_t>(n + 1));
  grow(b.row_ids, static_cast<std::size_t>(n));
  if (users) grow(b.users, static_cast<std::size_t>(n));
  std::int64_t nnz = 0;
  b.indptr[0] = 0;
  for (index_t i = 0; i < n; ++i) {
    const std::int64_t r = rows ? rows[i] : row0 + i;
    b.row_ids[i] = r;
    if (users) b.users[i] = users[r];
    nnz += x.indptr[r + 1] - x.indptr[r];
    b.indptr[i + 1] = nnz;
  }
  grow(b.indices, static_cast<std::size_t>(nnz));
  grow(b.raw, static_cast<std::size_t>(nnz));
  grow(b.xin, static_cast<std::size_t>(nnz));
  const bool drop = train && spec_.input_dropout > 0.0;
  const std::uint64_t key = stream_key(spec_.seed, kStreamDropout, static_cast<std::uint64_t>(step));
  const std::uint64_t thr = static_cast<std::uint64_t>(spec_.input_dropout * 16777216.0);
  const float dscale = static_cast<float>(1.0 / (1.0 - spec_.input_dropout));
  for (index_t i = 0; i < n; ++i) {
    const std::int64_t r = b.row_ids[i];
    const std::int64_t a = x.indptr[r], cnt = x.indptr[r + 1] - a, o = b.indptr[i];
    float sq = 0.f;
    for (std::int64_t k = 0; k < cnt; ++k) {
      const float v = x.values ? x.values[a + k] : 1.f;
      b.indices[o + k] = x.indices[a + k];
      b.raw[o + k] = v;
      sq += v * v;
    }
    const float nrm = std::sqrt(sq);
    const bool norm = spec_.normalize_input && nrm > 0.f;
    for (std::int64_t k = 0; k < cnt; ++k) {
      float v = norm ? b.raw[o + k] / nrm : b.raw[o + k];
      if (drop) {
        const bool keep = (mix64(key + static_cast<std::uint64_t>(a + k)) >> 40) >= thr;
        v = keep ? v * dscale : 0.f;
      }
      b.xin[o + k] = v;
    }
  }
}

void RecNetwork::forward_batch(const Batch& b, bool train, int stop, float* out, index_t ldo, const Acts& ws,
                               RecTimings* tm) const {
  const int L = n_layers();
  const int enc = spec_.encoder_depth;
  const index_t B = b.rows;
  const int nt = resolve_threads(0);
  (void)nt;
  const NnKernels& k = nn_kernels();
  const float* h = nullptr;
  index_t hw = 0;
  for (int l = 0; l < L; ++l) {
    const index_t ncols = shapes_[2 * l].second;
    const bool var_layer = spec_.variational && l == enc - 1;
    const bool to_out = out != nullptr && l == stop && !var_layer;
    float* dest = to_out ? out : ws.acts[l];
    const index_t ld = to_out ? ldo : ncols;
    Activation act = spec_.activations[l];
    if (l == L - 1 && spec_.loss == RecLoss::logistic) act = Activation::identity;  // logits
    const float* W = params_[2 * l].data();
    const float* bias = params_[2 * l + 1].data();
    auto t0 = Clock::now();
    if (l == 0) {
      // gather-sum SpMM fused with the user vector and the activation, row by row (row in L1)
      const float* V = v_index_ >= 0 ? params_[v_index_].data() : nullptr;
#pragma omp parallel for schedule(dynamic, 8) num_threads(nt) if (B > 8)
      for (index_t r = 0; r < B; ++r) {
        float* row = dest + r * ld;
        const std::int64_t a = b.indptr[r];
        k.gather_sum(ncols, b.indptr[r + 1] - a, b.indices.data() + a, b.xin.data() + a, W, ncols, bias, row);
        if (V) k.axpy(ncols, 1.f, V + static_cast<index_t>(b.users[r]) * ncols, row);
        if (act == Activation::tanh) {
          k.tanh_inplace(ncols, row);
        } else if (act != Activation::identity) {
          for (index_t j = 0; j < ncols; ++j) row[j] = activate(act, row[j]);
        }
      }
      if (tm) tm->spmm += since(t0);
    } else {
      sgemm(false, false, B, ncols, hw, 1.f, h, hw, W, ncols, 0.f, dest, ld, Epilogue{bias, act}, 0);
      if (tm) {
        tm->gemm_flops += 2.0 * B * hw * ncols;
        tm->gemm += since(t0);
      }
    }
    if (var_layer) {
      t0 = Clock::now();
      const index_t d = spec_.layer_sizes[enc];
      float* mulv = dest;
      if (train) {
        const std::uint64_t key = stream_key(spec_.seed, kStreamGauss, static_cast<std::uint64_t>(step));
#pragma omp parallel for schedule(static) num_threads(nt) if (B * d > 16384)
        for (index_t r = 0; r < B; ++r) {
          const std::uint64_t base = static_cast<std::uint64_t>(b.row_ids[r]) * static_cast<std::uint64_t>(d);
          for (index_t j = 0; j < d; ++j) {
            const std::uint64_t e2 = (base + static_cast<std::uint64_t>(j)) * 2u;
            const std::uint64_t h1 = mix64(key + e2), h2 = mix64(key + e2 + 1u);
            const double u1 = (static_cast<double>(h1 >> 11) + 1.0) * 0x1.0p-53;
            const double u2 = static_cast<double>(h2 >> 11) * 0x1.0p-53;
            const float e = static_cast<float>(std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * M_PI * u2));
            ws.eps[r * d + j] = e;
            const float mu = mulv[r * 2 * d + j], lv = mulv[r * 2 * d + d + j];
            ws.z[r * d + j] = mu + e * std::exp(0.5f * lv);
          }
        }
      } else {
        for (index_t r = 0; r < B; ++r) std::memcpy(ws.z + r * d, mulv + r * 2 * d, sizeof(float) * d);
      }
      if (out != nullptr && l == stop) {
        for (index_t r = 0; r < B; ++r) std::memcpy(out + r * ldo, mulv + r * 2 * d, sizeof(float) * d);
      }
      h = ws.z;
      hw = d;
      if (tm) tm->noise += since(t0);
    } else {
      h = dest;
      hw = ncols;
    }
    if (l == stop) return;
  }
}

double RecNetwork::loss_and_backward(const Batch& b, bool fuse_w0) {
  const int L = n_layers();
  const int enc = spec_.encoder_depth;
  const index_t B = b.rows, I = n_items();
  const int nt = resolve_threads(0);
  (void)nt;
  const NnKernels& k = nn_kernels();
  float* logits = acts_[L - 1].data();
  const float invB = 1.f / static_cast<float>(B);
  auto t0 = Clock::now();
  int nthreads = 1;
#ifdef AEREC_OPENMP
  nthreads = nt;
#endif
  // The output bias gradient (column sums of dZ) is accumulated per thread while each row is hot
  // in cache, instead of one more pass over the B x I gradient. Static schedule: deterministic.
  grow(dbpart_, static_cast<std::size_t>(nthreads) * static_cast<std::size_t>(I));
  std::fill(dbpart_.begin(), dbpart_.begin() + static_cast<std::ptrdiff_t>(nthreads) * I, 0.f);
  if (spec_.loss == RecLoss::multinomial) {
#pragma omp parallel for schedule(static) num_threads(nthreads)
    for (index_t r = 0; r < B; ++r) {
      const int tid = thread_id();
      float* z = logits + r * I;
      const std::int64_t a = b.indptr[r], cnt = b.indptr[r + 1] - a;
      float sx = 0.f, sxz = 0.f;
      for (std::int64_t q = 0; q < cnt; ++q) {
        sx += b.raw[a + q];
        sxz += b.raw[a + q] * z[b.indices[a + q]];
      }
      // one row task while the row is hot in L2: max, exp in place + sum, scale, sparse correction
      const float mx = k.row_max(I, z);
      const double se = k.exp_shift_sum(I, z, mx);
      const double lse = static_cast<double>(mx) + std::log(se);
      row_loss_[r] = static_cast<double>(sx) * lse - static_cast<double>(sxz);
      float* acc = dbpart_.data() + static_cast<std::size_t>(tid) * I;
      k.scale_accumulate(I, z, static_cast<float>(static_cast<double>(sx) / (static_cast<double>(B) * se)), acc);
      for (std::int64_t q = 0; q < cnt; ++q) {
        const float c = b.raw[a + q] * invB;
        z[b.indices[a + q]] -= c;
        acc[b.indices[a + q]] -= c;
      }
    }
  } else {
    const std::int64_t ns = spec_.negative_samples;
    const std::uint64_t key = stream_key(spec_.seed, kStreamNeg, static_cast<std::uint64_t>(step));
    if (ns > 0) {
      grow(stamp_, static_cast<std::size_t>(nthreads) * static_cast<std::size_t>(I));
      std::fill(stamp_.begin(), stamp_.end(), -1);
    }
    std::int64_t maxcnt = 0;
    for (index_t r = 0; r < B; ++r) maxcnt = std::max(maxcnt, b.indptr[r + 1] - b.indptr[r]);
    const std::size_t scratch = static_cast<std::size_t>(maxcnt * (ns + 1));
    grow(neg_items_, static_cast<std::size_t>(nthreads) * scratch);
    grow(neg_vals_, static_cast<std::size_t>(nthreads) * scratch);
#pragma omp parallel for schedule(static) num_threads(nthreads)
    for (index_t r = 0; r < B; ++r) {
      const int tid = thread_id();
      float* z = logits + r * I;
      const std::int64_t a = b.indptr[r], cnt = b.indptr[r + 1] - a;
      double loss = 0.0;
      if (ns == 0) {
        double yz = 0.0;
        for (std::int64_t q = 0; q < cnt; ++q) yz += static_cast<double>(b.raw[a + q]) * z[b.indices[a + q]];
        loss = k.logistic_row(I, z, invB) - yz;
        for (std::int64_t q = 0; q < cnt; ++q) z[b.indices[a + q]] -= b.raw[a + q] * invB;
      } else {
        std::int32_t* st = stamp_.data() + static_cast<std::size_t>(tid) * I;
        std::int32_t* items = neg_items_.data() + static_cast<std::size_t>(tid) * scratch;
        float* zs = neg_vals_.data() + static_cast<std::size_t>(tid) * scratch;
        const std::int32_t tag = static_cast<std::int32_t>(r);
        std::int64_t m = 0;
        for (std::int64_t q = 0; q < cnt; ++q) {
          const std::int32_t j = b.indices[a + q];
          st[j] = tag;
          const double zz = z[j], y = b.raw[a + q];
          loss += softplus(zz) - y * zz;
          zs[q] = (sigmoidf(z[j]) - b.raw[a + q]) * invB;
        }
        const std::uint64_t rid = static_cast<std::uint64_t>(b.row_ids[r]) << 32;
        for (std::int64_t t = 0; t < cnt * ns; ++t) {
          const std::uint64_t h = mix64(key + (rid | static_cast<std::uint64_t>(t)));
          const std::int32_t j = static_cast<std::int32_t>(((h >> 32) * static_cast<std::uint64_t>(I)) >> 32);
          if (st[j] == tag) continue;
          st[j] = tag;
          loss += softplus(z[j]);
          items[m] = j;
          zs[cnt + m] = sigmoidf(z[j]) * invB;
          ++m;
        }
        std::memset(z, 0, sizeof(float) * I);
        for (std::int64_t q = 0; q < cnt; ++q) z[b.indices[a + q]] = zs[q];
        for (std::int64_t q = 0; q < m; ++q) z[items[q]] = zs[cnt + q];
        // the next row of this thread reuses the stamp array with its own tag; clear ours
        for (std::int64_t q = 0; q < cnt; ++q) st[b.indices[a + q]] = -1;
        for (std::int64_t q = 0; q < m; ++q) st[items[q]] = -1;
      }
      row_loss_[r] = loss;
      k.axpy(I, 1.f, z, dbpart_.data() + static_cast<std::size_t>(tid) * I);
    }
  }
  {
    float* db = grads_[2 * (L - 1) + 1].data();
    std::memcpy(db, dbpart_.data(), sizeof(float) * I);
    for (int t = 1; t < nthreads; ++t) k.axpy(I, 1.f, dbpart_.data() + static_cast<std::size_t>(t) * I, db);
  }
  double loss = 0.0;
  for (index_t r = 0; r < B; ++r) loss += row_loss_[r];
  loss /= static_cast<double>(B);
  // KL of the variational layer
  beta_ = spec_.total_anneal_steps == 0
              ? spec_.anneal_cap
              : std::min(spec_.anneal_cap, static_cast<double>(step) / static_cast<double>(spec_.total_anneal_steps));
  if (spec_.variational) {
    const index_t d = spec_.layer_sizes[enc];
    const float* mulv = acts_[enc - 1].data();
    double kl = 0.0;
    for (index_t r = 0; r < B; ++r) {
      double klr = 0.0;
      for (index_t j = 0; j < d; ++j) {
        const double mu = mulv[r * 2 * d + j], lv = mulv[r * 2 * d + d + j];
        klr += std::exp(lv) + mu * mu - 1.0 - lv;
      }
      kl += 0.5 * klr;
    }
    loss += static_cast<float>(beta_) * kl / static_cast<double>(B);
  }
  if (spec_.l2 > 0.0) {
    double reg = 0.0;
    for (int l = 0; l < L; ++l)
      for (float w : params_[2 * l]) reg += static_cast<double>(w) * w;
    if (v_index_ >= 0)
      for (float w : params_[v_index_]) reg += static_cast<double>(w) * w;
    loss += 0.5 * spec_.l2 * reg;
  }
  timings.loss += since(t0);

  // ---------------------------------------------------------------- backward
  float* dz = logits;
  for (int l = L - 1; l >= 0; --l) {
    const index_t ncols = shapes_[2 * l].second;
    t0 = Clock::now();
    // bias gradient: column sums, parallel over column blocks (deterministic)
    float* db = grads_[2 * l + 1].data();
    const index_t cb = 512;
    const index_t nblk = l == L - 1 ? 0 : (ncols + cb - 1) / cb;  // the output layer's is done
#pragma omp parallel for schedule(static) num_threads(nt) if (nblk > 1 && B * ncols > (1 << 20))
    for (index_t blk = 0; blk < nblk; ++blk) {
      const index_t c0 = blk * cb, cn = std::min(cb, ncols - c0);
      std::memset(db + c0, 0, sizeof(float) * cn);
      for (index_t r = 0; r < B; ++r) k.axpy(cn, 1.f, dz + r * ncols + c0, db + c0);
    }
    if (l == 0) {
      build_unique(b);
      dz0_ = dz;
      const index_t nu = fuse_w0 ? 0 : static_cast<index_t>(uniq_.size());
      if (!fuse_w0) grow(g0_, static_cast<std::size_t>(nu * ncols));
#pragma omp parallel for schedule(dynamic, 8) num_threads(nt) if (nu > 16)
      for (index_t u = 0; u < nu; ++u) {
        const std::int64_t a = csc_ptr_[u];
        k.gather_sum(ncols, csc_ptr_[u + 1] - a, csc_rows_.data() + a, csc_vals_.data() + a, dz, ncols,
                     nullptr, g0_.data() + u * ncols);
      }
      if (v_index_ >= 0) {
        uniq_users_.clear();
        for (index_t r = 0; r < B; ++r) {
          const std::int32_t usr = b.users[r];
          if (user_slot_[usr] < 0) {
            user_slot_[usr] = static_cast<std::int32_t>(uniq_users_.size());
            uniq_users_.push_back(usr);
          }
        }
        grow(gv_, uniq_users_.size() * static_cast<std::size_t>(ncols));
        std::memset(gv_.data(), 0, sizeof(float) * uniq_users_.size() * ncols);
        for (index_t r = 0; r < B; ++r)
          k.axpy(ncols, 1.f, dz + r * ncols, gv_.data() + static_cast<index_t>(user_slot_[b.users[r]]) * ncols);
      }
      timings.sparse_bwd += since(t0);
      break;
    }
    const bool from_z = spec_.variational && l - 1 == enc - 1;
    const float* H = from_z ? z_.data() : acts_[l - 1].data();
    const index_t nin = spec_.layer_sizes[l];
    timings.dense_bwd += since(t0);
    t0 = Clock::now();
    // dW = H^T dZ, dH = dZ W^T
    sgemm(true, false, nin, ncols, B, 1.f, H, nin, dz, ncols, 0.f, grads_[2 * l].data(), ncols, Epilogue{}, 0);
    float* dh = (dz == dbuf_a_.data()) ? dbuf_b_.data() : dbuf_a_.data();
    sgemm(false, true, B, nin, ncols, 1.f, dz, ncols, params_[2 * l].data(), ncols, 0.f, dh, nin, Epilogue{}, 0);
    timings.gemm_flops += 4.0 * B * nin * ncols;
    timings.gemm += since(t0);
    t0 = Clock::now();
    if (from_z) {
      const index_t d = nin;
      float* nz = (dh == dbuf_a_.data()) ? dbuf_b_.data() : dbuf_a_.data();
      const float* mulv = acts_[enc - 1].data();
      const float bt = static_cast<float>(beta_);
      for (index_t r = 0; r < B; ++r)
        for (index_t j = 0; j < d; ++j) {
          const float mu = mulv[r * 2 * d + j], lv = mulv[r * 2 * d + d + j];
          const float g = dh[r * d + j];
          nz[r * 2 * d + j] = g + bt * mu / static_cast<float>(B);
          nz[r * 2 * d + d + j] = g * eps_[r * d + j] * 0.5f * std::exp(0.5f * lv) +
                                  bt * 0.5f * (std::exp(lv) - 1.f) / static_cast<float>(B);
        }
      dz = nz;
    } else {
      const Activation act = spec_.activations[l - 1];
      const float* y = acts_[l - 1].data();
      const index_t n = B * nin;
      if (act != Activation::identity) {
#pragma omp parallel for schedule(static) num_threads(nt) if (n > (1 << 20))
        for (index_t i = 0; i < n; ++i) dh[i] *= activation_grad_from_output(act, y[i]);
      }
      dz = dh;
    }
    timings.dense_bwd += since(t0);
  }
  return loss;
}

void RecNetwork::build_unique(const Batch& b) {
  const index_t B = b.rows;
  const std::int64_t nnz = b.indptr[B];
  uniq_.clear();
  for (std::int64_t q = 0; q < nnz; ++q) {
    const std::int32_t j = b.indices[q];
    if (item_slot_[j] < 0) {
      item_slot_[j] = static_cast<std::int32_t>(uniq_.size());
      uniq_.push_back(j);
    }
  }
  const std::size_t nu = uniq_.size();
  csc_ptr_.assign(nu + 1, 0);
  for (std::int64_t q = 0; q < nnz; ++q) ++csc_ptr_[item_slot_[b.indices[q]] + 1];
  for (std::size_t u = 0; u < nu; ++u) csc_ptr_[u + 1] += csc_ptr_[u];
  grow(csc_rows_, static_cast<std::size_t>(nnz));
  grow(csc_vals_, static_cast<std::size_t>(nnz));
  grow(csc_fill_, nu);
  std::copy(csc_ptr_.begin(), csc_ptr_.begin() + static_cast<std::ptrdiff_t>(nu), csc_fill_.begin());
  for (index_t r = 0; r < B; ++r)
    for (std::int64_t q = b.indptr[r]; q < b.indptr[r + 1]; ++q) {
      const std::int64_t pos = csc_fill_[item_slot_[b.indices[q]]]++;
      csc_rows_[pos] = static_cast<std::int32_t>(r);
      csc_vals_[pos] = b.xin[q];
    }
}

void RecNetwork::apply_update() {
  // One parallel region for the whole update (a region per tensor costs a barrier each, which
  // hurts on a loaded machine).
  auto t0 = Clock::now();
  const NnKernels& k = nn_kernels();
  const int nt = resolve_threads(0);
  (void)nt;
  const double t = static_cast<double>(step + 1);
  const bool adam = spec_.optimizer == RecOptimizer::adam;
  const float lr = static_cast<float>(spec_.learning_rate);
  const float b1 = static_cast<float>(spec_.beta1), b2 = static_cast<float>(spec_.beta2);
  const float c1 = static_cast<float>(1.0 / (1.0 - std::pow(spec_.beta1, t)));
  const float c2 = static_cast<float>(1.0 / (1.0 - std::pow(spec_.beta2, t)));
  const float eps = static_cast<float>(spec_.epsilon), mom = static_cast<float>(spec_.momentum);
  const float l2w = static_cast<float>(spec_.l2);
  auto upd = [&](index_t n, float* w, float* m, float* v, const float* g, float l2) {
    if (adam) k.rec_adam(n, w, m, v, g, l2, lr, b1, b2, c1, c2, eps);
    else k.rec_sgd(n, w, m, g, l2, lr, mom);
  };
  const bool lazy = spec_.lazy_adam;
  // W0: each present row's gradient (gather-sum over the batch's CSC column, kept in L1) is
  // applied at once, so the row-sparse gradient never goes through memory; dense mode also sweeps
  // the absent rows with a zero gradient.
  const index_t cols0 = shapes_[0].second, rows0 = shapes_[0].first;
  const index_t nu = static_cast<index_t>(uniq_.size());
  const index_t nuu = static_cast<index_t>(uniq_users_.size());
  const index_t colsv = v_index_ >= 0 ? shapes_[v_index_].second : 0;
  const index_t rowsv = v_index_ >= 0 ? shapes_[v_index_].first : 0;
  int nthreads = 1;
#ifdef AEREC_OPENMP
  nthreads = nt;
#endif
  grow(rowbuf_, static_cast<std::size_t>(nthreads) * static_cast<std::size_t>(cols0));
  float* W0 = params_[0].data();
  float* M0 = m_[0].data();
  float* V0 = adam ? v_[0].data() : nullptr;
#pragma omp parallel num_threads(nthreads)
  {
    const int tid = thread_id();
    float* g = rowbuf_.data() + static_cast<std::size_t>(tid) * cols0;
#pragma omp for schedule(dynamic, 16) nowait
    for (index_t u = 0; u < nu; ++u) {
      const index_t j = uniq_[u];
      const std::int64_t a = csc_ptr_[u];
      k.gather_sum(cols0, csc_ptr_[u + 1] - a, csc_rows_.data() + a, csc_vals_.data() + a, dz0_, cols0,
                   nullptr, g);
      upd(cols0, W0 + j * cols0, M0 + j * cols0, V0 ? V0 + j * cols0 : nullptr, g, l2w);
    }
    if (!lazy) {
#pragma omp for schedule(static, 64) nowait
      for (index_t j = 0; j < rows0; ++j)
        if (item_slot_[j] < 0) upd(cols0, W0 + j * cols0, M0 + j * cols0, V0 ? V0 + j * cols0 : nullptr, nullptr, l2w);
    }
    if (v_index_ >= 0) {
      float* w = params_[v_index_].data();
      float* m = m_[v_index_].data();
      float* v = adam ? v_[v_index_].data() : nullptr;
#pragma omp for schedule(static) nowait
      for (index_t u = 0; u < nuu; ++u) {
        const index_t j = uniq_users_[u];
        upd(colsv, w + j * colsv, m + j * colsv, v ? v + j * colsv : nullptr, gv_.data() + u * colsv, l2w);
      }
      if (!lazy) {
#pragma omp for schedule(static, 64) nowait
        for (index_t j = 0; j < rowsv; ++j)
          if (user_slot_[j] < 0) upd(colsv, w + j * colsv, m + j * colsv, v ? v + j * colsv : nullptr, nullptr, l2w);
      }
    }
    const index_t nch = static_cast<index_t>(chunks_.size());
#pragma omp for schedule(static)
    for (index_t c = 0; c < nch; ++c) {
      const auto& ch = chunks_[c];
      const std::size_t i = ch.param;
      const bool weight = (i % 2) == 0;
      upd(ch.len, params_[i].data() + ch.off, m_[i].data() + ch.off, adam ? v_[i].data() + ch.off : nullptr,
          grads_[i].data() + ch.off, weight ? l2w : 0.f);
    }
  }
  for (std::int32_t j : uniq_) item_slot_[j] = -1;
  for (std::int32_t u : uniq_users_) user_slot_[u] = -1;
  uniq_.clear();
  uniq_users_.clear();
  ++step;
  timings.optimizer += since(t0);
}

double RecNetwork::train_batch(const CsrView<float>& x, const std::int32_t* users) {
  check_input(x, users);
  AEREC_CHECK_ARG(x.rows >= 1, "train_batch needs at least one row");
  std::unique_lock<SharedMutex> lock(mu_);
  AEREC_CHECK_ARG(step >= 0, "step must be >= 0");
  return train_epoch_impl(x, users, x.rows, false, 0, /*checked=*/true);
}

double RecNetwork::train_epoch(const CsrView<float>& x, const std::int32_t* users, index_t batch_size,
                               bool shuffle, std::uint64_t shuffle_seed) {
  check_input(x, users);
  AEREC_CHECK_ARG(x.rows >= 1, "train_epoch needs at least one row");
  AEREC_CHECK_ARG(batch_size >= 1, "batch_size must be >= 1");
  std::unique_lock<SharedMutex> lock(mu_);
  AEREC_CHECK_ARG(step >= 0, "step must be >= 0");
  return train_epoch_impl(x, users, batch_size, shuffle, shuffle_seed, true);
}

double RecNetwork::train_epoch_impl(const CsrView<float>& x, const std::int32_t* users, index_t batch_size,
                                    bool shuffle, std::uint64_t shuffle_seed, bool) {
  const index_t n = x.rows;
  const std::int64_t* order = nullptr;
  if (shuffle) {
    const std::uint64_t key = stream_key(spec_.seed, kStreamShuffle, shuffle_seed);
    std::vector<std::pair<std::uint64_t, std::int64_t>> keyed(static_cast<std::size_t>(n));
    for (index_t r = 0; r < n; ++r) keyed[r] = {mix64(key + static_cast<std::uint64_t>(r)), r};
    std::sort(keyed.begin(), keyed.end());
    perm_.resize(static_cast<std::size_t>(n));
    for (index_t r = 0; r < n; ++r) perm_[r] = keyed[r].second;
    order = perm_.data();
  }
  const index_t bs = std::min(batch_size, n);
  ensure_buffers(bs);
  const Acts acts = train_acts();
  double total = 0.0;
  for (index_t s = 0; s < n; s += bs) {
    const index_t nb = std::min(bs, n - s);
    auto t0 = Clock::now();
    gather(x, v_index_ >= 0 ? users : nullptr, order ? order + s : nullptr, s, nb, true, batch_);
    timings.gather += since(t0);
    forward_batch(batch_, true, n_layers() - 1, nullptr, 0, acts, &timings);
    const double loss = loss_and_backward(batch_, true);
    apply_update();
    total += loss * static_cast<double>(nb);
    ++timings.batches;
  }
  return total / static_cast<double>(n);
}

double RecNetwork::gradients(const CsrView<float>& x, const std::int32_t* users,
                             std::vector<std::vector<float>>* grads) {
  check_input(x, users);
  AEREC_CHECK_ARG(x.rows >= 1, "gradients needs at least one row");
  std::unique_lock<SharedMutex> lock(mu_);
  AEREC_CHECK_ARG(step >= 0, "step must be >= 0");
  ensure_buffers(x.rows);
  gather(x, v_index_ >= 0 ? users : nullptr, nullptr, 0, x.rows, true, batch_);
  forward_batch(batch_, true, n_layers() - 1, nullptr, 0, train_acts(), &timings);
  const double loss = loss_and_backward(batch_, false);
  grads->clear();
  const float l2 = static_cast<float>(spec_.l2);
  for (std::size_t i = 0; i < params_.size(); ++i) {
    std::vector<float> g(params_[i].size(), 0.f);
    const bool weight = (i % 2) == 0 || static_cast<int>(i) == v_index_;
    if (weight)
      for (std::size_t e = 0; e < g.size(); ++e) g[e] = l2 * params_[i][e];
    if (i == 0 || static_cast<int>(i) == v_index_) {
      const auto& uniq = i == 0 ? uniq_ : uniq_users_;
      const float* gs = i == 0 ? g0_.data() : gv_.data();
      const index_t cols = shapes_[i].second;
      for (std::size_t u = 0; u < uniq.size(); ++u)
        for (index_t c = 0; c < cols; ++c) g[static_cast<std::size_t>(uniq[u]) * cols + c] += gs[u * cols + c];
    } else {
      for (std::size_t e = 0; e < g.size(); ++e) g[e] += grads_[i][e];
    }
    grads->push_back(std::move(g));
  }
  for (std::int32_t j : uniq_) item_slot_[j] = -1;
  for (std::int32_t u : uniq_users_) user_slot_[u] = -1;
  uniq_.clear();
  uniq_users_.clear();
  return loss;
}

void RecNetwork::evaluate(const CsrView<float>& x, const std::int32_t* users, int stop, index_t batch_size,
                          float* out, index_t ldo) const {
  check_input(x, users);
  AEREC_CHECK_ARG(stop >= 0 && stop < n_layers(), "evaluate: layer out of range");
  AEREC_CHECK_ARG(batch_size >= 1, "batch_size must be >= 1");
  const index_t n = x.rows;
  if (n == 0) return;
  const index_t bs = std::min(batch_size, n);
  // Everything this call writes besides `out` lives here, so concurrent callers share nothing
  // mutable (a shared workspace raced and was reallocated under other callers: wrong scores and
  // use-after-free). Uninitialised on purpose: forward_batch writes every element it reads.
  const int L = n_layers(), enc = spec_.encoder_depth;
  std::vector<std::unique_ptr<float[]>> bufs(static_cast<std::size_t>(L));
  std::vector<float*> ptrs(static_cast<std::size_t>(L), nullptr);
  for (int l = 0; l <= stop; ++l) {
    const bool var_layer = spec_.variational && l == enc - 1;
    if (l == stop && !var_layer) continue;  // written straight to out
    bufs[l].reset(new float[static_cast<std::size_t>(bs) * static_cast<std::size_t>(shapes_[2 * l].second)]);
    ptrs[l] = bufs[l].get();
  }
  std::unique_ptr<float[]> z;
  if (spec_.variational && stop >= enc - 1)
    z.reset(new float[static_cast<std::size_t>(bs) * static_cast<std::size_t>(spec_.layer_sizes[enc])]);
  const Acts acts{ptrs.data(), z.get(), nullptr};
  Batch b;
  std::shared_lock<SharedMutex> lock(mu_);  // waits only for a running training call
  for (index_t s = 0; s < n; s += bs) {
    const index_t nb = std::min(bs, n - s);
    gather(x, v_index_ >= 0 ? users : nullptr, nullptr, s, nb, false, b);
    forward_batch(b, false, stop, out + s * ldo, ldo, acts, nullptr);
  }
}

void RecNetwork::read_tensors(int which, float* const* dst) const {
  AEREC_CHECK_ARG(which >= 0 && which <= 2, "read_tensors: which must be 0, 1 or 2");
  AEREC_CHECK_ARG(which < 2 || !v_.empty(), "read_tensors: sgd has no second moments");
  std::shared_lock<SharedMutex> lock(mu_);
  const auto& src = which == 0 ? params_ : which == 1 ? m_ : v_;
  for (std::size_t i = 0; i < src.size(); ++i) std::copy(src[i].begin(), src[i].end(), dst[i]);
}

void RecNetwork::write_tensors(int which, const float* const* src) {
  AEREC_CHECK_ARG(which >= 0 && which <= 2, "write_tensors: which must be 0, 1 or 2");
  AEREC_CHECK_ARG(which < 2 || !v_.empty(), "write_tensors: sgd has no second moments");
  std::unique_lock<SharedMutex> lock(mu_);
  auto& dst = which == 0 ? params_ : which == 1 ? m_ : v_;
  for (std::size_t i = 0; i < dst.size(); ++i) std::copy(src[i], src[i] + dst[i].size(), dst[i].begin());
}

}  // namespace aerec::cpu

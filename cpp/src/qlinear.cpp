// Compressed linear layer driver (qlinear.hpp). The per-ISA kernels: src/simd/qlinear_*.cpp and
// the TopK tiles (topk_kernels.hpp).
#include "aerec/qlinear.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <numeric>
#include <string>
#include <type_traits>

#include "aerec/cpu_features.hpp"
#include "aerec/error.hpp"
#include "aerec/parallel.hpp"
#include "aerec/qlinear_kernels.hpp"
#include "aerec/select.hpp"
#include "aerec/topk_entry.hpp"
#include "aerec/vmath.hpp"

namespace aerec::cpu {

const QlinearKernels& qlinear_kernels() {
  return *dispatch(&scalar::kQlinearKernels,
                   AEREC_X86_VARIANTS({Target::avx2, &avx2::kQlinearKernels},
                                      {Target::avx512, &avx512::kQlinearKernels}));
}

namespace {
// Output columns per chunk of the sparse kernel: the transposed tile (chunk x kQLanes floats,
// 64 KiB) stays in L1/L2 while it is transposed into the output rows; in topk, the candidate
// columns of one chunk (at most the chunk) are merged into the lists between chunks.
constexpr index_t kColChunk = 512;

// n floats of buf, 64-byte aligned (a kQLanes activation row is then whole cache lines).
float* aligned_floats(std::vector<float>& buf, std::size_t n) {
  buf.resize(n + 16);
  const auto p = reinterpret_cast<std::uintptr_t>(buf.data());
  return reinterpret_cast<float*>((p + 63) & ~static_cast<std::uintptr_t>(63));
}

// Top-k candidates of the sparse path: topk.cpp's keys (topk_entry.hpp).
using topk_entry::Entry;
using topk_entry::entry_id;
using topk_entry::entry_score;
using topk_entry::make_entry;
// Leaves the best kc of h[0..n) first and returns the kc-th best's score (the new threshold).
inline float cut_to(Entry* h, index_t n, index_t kc) {
  std::nth_element(h, h + (kc - 1), h + n, [](Entry a, Entry b) { return a > b; });
  return entry_score(h[kc - 1]);
}
// Writes the best kk of the n candidates h (cut and sorted in place) to ids / scores, padded with
// -1 / -inf past the candidates.
void finish_list(Entry* h, index_t n, index_t kk, std::int32_t* ids, float* scores) {
  const index_t nv = std::min(kk, n);
  if (n > nv) cut_to(h, n, nv);
  std::sort(h, h + nv, [](Entry a, Entry b) { return a > b; });
  for (index_t t = 0; t < nv; ++t) {
    ids[t] = entry_id(h[t]);
    scores[t] = entry_score(h[t]);
  }
  for (index_t t = nv; t < kk; ++t) {
    ids[t] = -1;
    scores[t] = -std::numeric_limits<float>::infinity();
  }
}
// The CSR input of forward_csr / topk_csr: indptr from 0, non-decreasing, ids in [0, n_in).
void check_csr_rows(const CsrView<float>& x, index_t n_in) {
  const index_t m = x.rows;
  AEREC_CHECK_ARG(x.indptr[0] == 0, "CSR indptr must start at 0");
  for (index_t r = 0; r < m; ++r) AEREC_CHECK_ARG(x.indptr[r] <= x.indptr[r + 1], "CSR indptr must be non-decreasing");
  for (std::int64_t t = 0; t < x.indptr[m]; ++t)
    AEREC_CHECK_INDEX(x.indices[t] >= 0 && x.indices[t] < n_in,
                      "input id " + std::to_string(x.indices[t]) + " is outside [0, " + std::to_string(n_in) + ")");
}

// The optional exclusion lists of topk / topk_csr (m rows, ids in [0, n_out)).
void check_exclusion(index_t m, const std::int64_t* ex_ptr, const std::int32_t* ex_idx, index_t n_out) {
  if (ex_ptr == nullptr) return;
  AEREC_CHECK_ARG(ex_ptr[0] == 0, "exclude indptr must start at 0");
  for (index_t r = 0; r < m; ++r) AEREC_CHECK_ARG(ex_ptr[r] <= ex_ptr[r + 1], "exclude indptr must be non-decreasing");
  for (std::int64_t t = 0; t < ex_ptr[m]; ++t)
    AEREC_CHECK_INDEX(ex_idx[t] >= 0 && ex_idx[t] < n_out,
                      "excluded id " + std::to_string(ex_idx[t]) + " is out of range [0, " + std::to_string(n_out) + ")");
}
}  // namespace

// Per-thread buffers of the gathered paths: the sums in renumbered columns (sparse layers), the
// history by descending prefix length, its rows as prefix_sum wants them (first column pointer,
// prefix length, value), and select_renumbered's exclusions, positions and candidates.
struct CompressedLinear::Scratch {
  explicit Scratch(index_t n_work) : work(static_cast<std::size_t>(n_work)) {}
  std::vector<float> work;
  std::vector<std::pair<std::int32_t, float>> hist;
  std::vector<const void*> rows;
  std::vector<index_t> len;
  std::vector<float> a;
  std::vector<std::int32_t> exr, pos;
  std::vector<Entry> heap;
};

CompressedLinear::CompressedLinear(const QlinearArrays& a, int num_threads)
    : n_in_(a.n_in), n_out_(a.n_out), precision_(a.precision), sparse_(a.sparse),
      csr_input_(a.csr_input), idx16_(a.idx16) {
  AEREC_CHECK_ARG(n_in_ >= 1 && n_out_ >= 1, "a layer needs n_in >= 1 and n_out >= 1");
  AEREC_CHECK_ARG(n_in_ <= std::numeric_limits<std::int32_t>::max() &&
                      n_out_ <= std::numeric_limits<std::int32_t>::max(),
                  "layers with more than 2^31-1 inputs or outputs are not supported");
  AEREC_CHECK_ARG(precision_ >= 0 && precision_ <= 2, "precision code must be 0 (fp32), 1 (bf16) or 2 (int8)");
  AEREC_CHECK_ARG(precision_ != 2 || a.scale != nullptr, "an int8 layer needs its per-output scales");
  if (a.bias != nullptr) bias_.assign(a.bias, a.bias + n_out_);
  for (float v : bias_) AEREC_CHECK_ARG(std::isfinite(v), "bias must be finite");
  if (precision_ == 2) {
    scale_.assign(a.scale, a.scale + n_out_);
    for (float s : scale_) AEREC_CHECK_ARG(std::isfinite(s) && s > 0, "int8 scales must be finite and positive");
  }
  const index_t outer = csr_input_ ? n_in_ : n_out_;
  const index_t inner = csr_input_ ? n_out_ : n_in_;

  if (!sparse_ && !csr_input_) {
    AEREC_CHECK_ARG(a.W != nullptr, "a dense layer needs W");
    TopkOptions opt;
    opt.prune = false;
    const float* bias = bias_.empty() ? nullptr : bias_.data();
    if (precision_ == 0) {
      opt.precision = TopkPrecision::fp32;
      opt.rescore = 1;
      MatrixView<const float> items{static_cast<const float*>(a.W), n_out_, n_in_, n_in_};
      dense_ = std::make_unique<TopkIndex>(items, bias, opt, num_threads);
    } else {
      QuantisedItems q;
      q.precision = precision_ == 1 ? TopkPrecision::bf16 : TopkPrecision::int8;
      q.n = n_out_;
      q.d = n_in_;
      q.i8 = static_cast<const std::int8_t*>(a.W);
      q.i8_scale = scale_.empty() ? nullptr : scale_.data();
      q.bf16 = static_cast<const std::uint16_t*>(a.W);
      opt.precision = q.precision;
      opt.rescore = 0;
      dense_ = std::make_unique<TopkIndex>(q, bias, opt, num_threads);
    }
    return;
  }

  index_t count;
  const void* src;
  if (sparse_) {
    AEREC_CHECK_ARG(a.indptr != nullptr && a.indices != nullptr && (a.data != nullptr || a.nnz == 0),
                    "a sparse layer needs indptr, indices and data");
    AEREC_CHECK_ARG(!idx16_ || inner <= 65536, "uint16 indices need an indexed dimension of at most 65536");
    indptr_.assign(a.indptr, a.indptr + outer + 1);
    AEREC_CHECK_ARG(indptr_[0] == 0 && indptr_[outer] == a.nnz, "sparse indptr must run from 0 to nnz");
    for (index_t o = 0; o < outer; ++o)
      AEREC_CHECK_ARG(indptr_[o] <= indptr_[o + 1], "sparse indptr must be non-decreasing");
    if (idx16_) {
      const auto* ix = static_cast<const std::uint16_t*>(a.indices);
      idx16v_.assign(ix, ix + a.nnz);
      for (std::uint16_t v : idx16v_) AEREC_CHECK_INDEX(v < inner, "sparse index out of range");
    } else {
      const auto* ix = static_cast<const std::int32_t*>(a.indices);
      idx32v_.assign(ix, ix + a.nnz);
      for (std::int32_t v : idx32v_) AEREC_CHECK_INDEX(v >= 0 && v < inner, "sparse index out of range");
    }
    if (!csr_input_) {
      // Repack the input ids as activation-row offsets (qlinear_kernels.hpp, kQOffsetScale).
      AEREC_CHECK_ARG(n_in_ <= std::numeric_limits<std::int32_t>::max() / kQOffsetScale,
                      "sparse dense-input layers support at most 2^28 inputs");
      const bool off16 = n_in_ * kQOffsetScale <= 65536;
      std::vector<std::uint16_t> o16;
      std::vector<std::int32_t> o32;
      if (off16)
        o16.resize(static_cast<std::size_t>(a.nnz));
      else
        o32.resize(static_cast<std::size_t>(a.nnz));
      for (index_t t = 0; t < a.nnz; ++t) {
        const index_t i = idx16_ ? idx16v_[t] : idx32v_[t];
        if (off16)
          o16[t] = static_cast<std::uint16_t>(i * kQOffsetScale);
        else
          o32[t] = static_cast<std::int32_t>(i * kQOffsetScale);
      }
      idx16v_.swap(o16);
      idx32v_.swap(o32);
      idx16_ = off16;
    }
    count = a.nnz;
    src = a.data;
  } else {
    AEREC_CHECK_ARG(a.W != nullptr, "a dense layer needs W");
    count = n_in_ * n_out_;
    src = a.W;
  }
  if (precision_ == 0) {
    const auto* p = static_cast<const float*>(src);
    wf_.assign(p, p + count);
    for (float v : wf_) AEREC_CHECK_ARG(std::isfinite(v), "weights must be finite");
  } else if (precision_ == 1) {
    const auto* p = static_cast<const std::uint16_t*>(src);
    wb_.assign(p, p + count);
    for (std::uint16_t v : wb_) AEREC_CHECK_ARG((v & 0x7F80u) != 0x7F80u, "bf16 weights must be finite");
  } else {
    const auto* p = static_cast<const std::int8_t*>(src);
    wi_.assign(p, p + count);
    for (std::int8_t v : wi_) AEREC_CHECK_ARG(v != -128, "int8 weights must lie in [-127, 127]");
  }
  if (sparse_ && !csr_input_) split_slabs();
  if (sparse_ && csr_input_) build_hybrid(num_threads);
}

namespace {
// build_hybrid's cost model: the time of one dense-prefix element (an element of a vector axpy,
// streamed) over that of one sparse-tail entry (index load, accumulator load, multiply-add and
// store at a random column). Row i keeps the prefix [0, P) (renumbered columns) that minimises
// kPrefixCost * P + (its entries at columns >= P); P = 0 when no prefix is cheaper than the row
// alone. Measured on EASE's B pruned to 10% at 20,108 items (benchmarks/RESULTS.md, "EASE pruned
// to 10%: dense row prefixes in popularity order"): see there for the figures behind the value.
constexpr double kPrefixCost = 0.25;
// When the prefixes chosen with kPrefixCost would take more bytes than the CSR rows did, the cost
// is raised by this factor until they fit (the last step: no prefixes at all).
constexpr double kPrefixCostStep = 1.5;
constexpr int kPrefixCosts = 8;
}  // namespace

namespace {
// Sorts a row's keys (renumbered column << 32 | entry position) ascending: an LSD radix sort on
// the column's bits, 11 at a time, for long rows (3-4x a comparison sort's speed at EASE's ~2,000
// entries a row: most of a pruned model's load), std::sort for short ones. The keys are
// distinct, so both give the same order: by column, then by position.
void sort_rank_keys(std::vector<std::uint64_t>& k, std::vector<std::uint64_t>& tmp, int col_bits) {
  const std::size_t n = k.size();
  if (n < 256) {
    std::sort(k.begin(), k.end());
    return;
  }
  constexpr int kDigit = 11;
  constexpr std::uint64_t kMask = (1u << kDigit) - 1;
  std::uint32_t count[1u << kDigit];
  tmp.resize(n);
  for (int shift = 32; shift < 32 + col_bits; shift += kDigit) {
    std::memset(count, 0, sizeof(count));
    for (std::uint64_t v : k) ++count[(v >> shift) & kMask];
    std::uint32_t sum = 0;
    for (std::uint32_t& c : count) {
      const std::uint32_t x = c;
      c = sum;
      sum += x;
    }
    for (std::uint64_t v : k) tmp[count[(v >> shift) & kMask]++] = v;
    k.swap(tmp);
  }
}
}  // namespace

// Repacks the CSR rows of a sparse csr-input layer (qlinear.hpp): columns renumbered by
// descending kept-entry count (stable: ties keep their order), so the entries of a row crowd the
// low renumbered ids; each row then a dense prefix (zeros stored) and a sparse tail ascending in
// the renumbered ids. A repeated (row, column) entry goes to the tail after its first copy (the
// prefix holds one value per column), so repeats are summed (the Python layer refuses them:
// validate_layer). The repacked values and column ids take no more bytes than
// the CSR's (plus a prefix offset per row and a column id per output).
void CompressedLinear::build_hybrid(int num_threads) {
  const int T = resolve_threads(num_threads);
  const index_t nnz = indptr_[n_in_];
  const bool in16 = idx16_;
  auto col_of = [&](index_t t) -> index_t {
    return in16 ? static_cast<index_t>(idx16v_[t]) : static_cast<index_t>(idx32v_[t]);
  };
  std::vector<std::int64_t> cnt(static_cast<std::size_t>(n_out_), 0);
  for (index_t t = 0; t < nnz; ++t) ++cnt[col_of(t)];
  colord_.resize(static_cast<std::size_t>(n_out_));
  std::iota(colord_.begin(), colord_.end(), 0);
  std::stable_sort(colord_.begin(), colord_.end(), [&](std::int32_t a, std::int32_t b) { return cnt[a] > cnt[b]; });
  std::vector<std::int32_t> rank(static_cast<std::size_t>(n_out_));
  for (index_t p = 0; p < n_out_; ++p) rank[colord_[p]] = static_cast<std::int32_t>(p);

  const std::size_t esz = precision_ == 0 ? 4 : precision_ == 1 ? 2 : 1;
  const bool out16 = n_out_ <= 65536;
  const std::size_t isz_old = in16 ? 2 : 4, isz = out16 ? 2 : 4;
  // Per row and candidate cost c: the best prefix P and its bytes (prefix + tail).
  std::vector<std::int32_t> plen(static_cast<std::size_t>(n_in_ * kPrefixCosts), 0);
  std::vector<std::int64_t> tlen(static_cast<std::size_t>(n_in_ * kPrefixCosts), 0);  // its tail size
  std::vector<double> bytes(kPrefixCosts, 0.0);
  const double a0 = kPrefixCost;
  int col_bits = 1;
  while ((index_t{1} << col_bits) < n_out_) ++col_bits;
  for (index_t i = 0; i < n_in_; ++i)
    AEREC_CHECK_ARG(indptr_[i + 1] - indptr_[i] <= static_cast<std::int64_t>(std::numeric_limits<std::uint32_t>::max()),
                    "a sparse layer row holds more than 2^32 - 1 entries");
#pragma omp parallel num_threads(T)
  {
    std::vector<std::int32_t> r;
    std::vector<std::uint64_t> keys, tmp;
    std::vector<double> by(kPrefixCosts, 0.0);
#pragma omp for schedule(dynamic, 64)
    for (index_t i = 0; i < n_in_; ++i) {
      keys.clear();
      for (std::int64_t t = indptr_[i]; t < indptr_[i + 1]; ++t)
        keys.push_back(static_cast<std::uint64_t>(rank[col_of(t)]) << 32 | static_cast<std::uint64_t>(t - indptr_[i]));
      sort_rank_keys(keys, tmp, col_bits);
      r.resize(keys.size());
      for (std::size_t j = 0; j < keys.size(); ++j) r[j] = static_cast<std::int32_t>(keys[j] >> 32);
      const index_t k = static_cast<index_t>(r.size());
      double a = a0;
      for (int c = 0; c < kPrefixCosts; ++c, a *= kPrefixCostStep) {
        double best = static_cast<double>(k);
        index_t bp = 0, bt = k;
        if (c + 1 < kPrefixCosts) {
          index_t distinct = 0;  // distinct columns among r[0..j]: the entries the prefix takes
          for (index_t j = 0; j < k; ++j) {
            distinct += (j == 0 || r[j] != r[j - 1]) ? 1 : 0;
            if (j + 1 < k && r[j + 1] == r[j]) continue;
            const double cost = a * (r[j] + 1) + static_cast<double>(k - distinct);
            if (cost < best) {
              best = cost;
              bp = r[j] + 1;
              bt = k - distinct;
            }
          }
        }
        plen[static_cast<std::size_t>(i * kPrefixCosts + c)] = static_cast<std::int32_t>(bp);
        tlen[static_cast<std::size_t>(i * kPrefixCosts + c)] = bt;
        by[c] += static_cast<double>(bp) * esz + static_cast<double>(bt) * (esz + isz);
      }
    }
#pragma omp critical
    for (int c = 0; c < kPrefixCosts; ++c) bytes[c] += by[c];
  }
  const double budget = static_cast<double>(nnz) * static_cast<double>(esz + isz_old);
  int c = 0;
  while (c + 1 < kPrefixCosts && bytes[c] > budget) ++c;

  std::vector<std::int64_t> tptr(static_cast<std::size_t>(n_in_ + 1), 0);
  pofs_.assign(static_cast<std::size_t>(n_in_ + 1), 0);
  // Tail sizes: the entries past the prefix, and repeats of a column inside it (counted above).
  for (index_t i = 0; i < n_in_; ++i) {
    const std::size_t ic = static_cast<std::size_t>(i * kPrefixCosts + c);
    pofs_[i + 1] = pofs_[i] + plen[ic];
    tptr[i + 1] = tptr[i] + tlen[ic];
  }
  const index_t nt = tptr[n_in_], np = pofs_[n_in_];
  std::vector<char> pre(static_cast<std::size_t>(np) * esz, 0), tv(static_cast<std::size_t>(nt) * esz);
  std::vector<std::uint16_t> t16(out16 ? static_cast<std::size_t>(nt) : 0);
  std::vector<std::int32_t> t32(out16 ? 0 : static_cast<std::size_t>(nt));
  const char* src = static_cast<const char*>(values());
#pragma omp parallel num_threads(T)
  {
    std::vector<std::uint64_t> keys, tmp;
#pragma omp for schedule(dynamic, 64)
    for (index_t i = 0; i < n_in_; ++i) {
      const index_t P = pofs_[i + 1] - pofs_[i];
      const std::int64_t t0 = indptr_[i];
      keys.clear();
      for (std::int64_t t = t0; t < indptr_[i + 1]; ++t)
        keys.push_back(static_cast<std::uint64_t>(rank[col_of(t)]) << 32 | static_cast<std::uint64_t>(t - t0));
      sort_rank_keys(keys, tmp, col_bits);
      // by column, then position: a column's first copy below P to the prefix, the rest (repeats
      // included, in their order) to the tail, already ascending
      std::int64_t o = tptr[i];
      std::int64_t last = -1;
      for (std::uint64_t key : keys) {
        const std::int32_t p = static_cast<std::int32_t>(key >> 32);
        const std::int64_t t = t0 + static_cast<std::int64_t>(key & 0xFFFFFFFFu);
        if (p < P && p != last) {
          std::memcpy(pre.data() + static_cast<std::size_t>(pofs_[i] + p) * esz, src + static_cast<std::size_t>(t) * esz, esz);
        } else {
          if (out16)
            t16[o] = static_cast<std::uint16_t>(p);
          else
            t32[o] = p;
          std::memcpy(tv.data() + static_cast<std::size_t>(o) * esz, src + static_cast<std::size_t>(t) * esz, esz);
          ++o;
        }
        last = p;
      }
    }
  }
  auto put = [&](auto& dst, const std::vector<char>& raw) {
    dst.resize(raw.size() / esz);
    if (!raw.empty()) std::memcpy(dst.data(), raw.data(), raw.size());
    dst.shrink_to_fit();
  };
  if (precision_ == 0) {
    put(wf_, tv);
    put(pf_, pre);
  } else if (precision_ == 1) {
    put(wb_, tv);
    put(pb_, pre);
  } else {
    put(wi_, tv);
    put(pi_, pre);
  }
  indptr_.swap(tptr);
  idx16v_.swap(t16);
  idx32v_.swap(t32);
  idx16v_.shrink_to_fit();
  idx32v_.shrink_to_fit();
  idx16_ = out16;
  rank_.swap(rank);
  if (!scale_.empty()) {
    rscale_.resize(static_cast<std::size_t>(n_out_));
    for (index_t p = 0; p < n_out_; ++p) rscale_[p] = scale_[colord_[p]];
  }
  if (!bias_.empty()) {
    rbias_.resize(static_cast<std::size_t>(n_out_));
    for (index_t p = 0; p < n_out_; ++p) rbias_[p] = bias_[colord_[p]];
  }
}

const void* CompressedLinear::prefix_values() const {
  if (precision_ == 0) return pf_.data();
  if (precision_ == 1) return pb_.data();
  return pi_.data();
}

// Regroups the stored weights by input slab (qlinear_kernels.hpp, kQSlabBytes): stable within a
// column, so a one-slab layer keeps the file's order.
void CompressedLinear::split_slabs() {
  const index_t bytes = n_in_ * kQLanes * static_cast<index_t>(sizeof(float));
  nslab_ = std::max<index_t>(1, (bytes + kQSlabBytes - 1) / kQSlabBytes);
  if (nslab_ == 1) return;
  const index_t rows = (n_in_ + nslab_ - 1) / nslab_;  // inputs per slab
  const index_t nnz = indptr_[n_out_];
  auto input_of = [&](index_t t) {
    return (idx16_ ? static_cast<index_t>(idx16v_[t]) : static_cast<index_t>(idx32v_[t])) / kQOffsetScale;
  };
  std::vector<std::int64_t> ptr(static_cast<std::size_t>(nslab_ * n_out_ + 1), 0);
  for (index_t j = 0; j < n_out_; ++j)
    for (std::int64_t t = indptr_[j]; t < indptr_[j + 1]; ++t) ++ptr[(input_of(t) / rows) * n_out_ + j + 1];
  for (index_t q = 0; q < nslab_ * n_out_; ++q) ptr[q + 1] += ptr[q];
  std::vector<std::int64_t> perm(static_cast<std::size_t>(nnz));
  std::vector<std::int64_t> fill(ptr.begin(), ptr.end() - 1);
  for (index_t j = 0; j < n_out_; ++j)
    for (std::int64_t t = indptr_[j]; t < indptr_[j + 1]; ++t) perm[fill[(input_of(t) / rows) * n_out_ + j]++] = t;
  auto permute = [&](auto& v) {
    if (v.empty()) return;
    std::remove_reference_t<decltype(v)> out(v.size());
    for (index_t t = 0; t < nnz; ++t) out[t] = v[perm[t]];
    v.swap(out);
  };
  permute(idx16v_);
  permute(idx32v_);
  permute(wf_);
  permute(wb_);
  permute(wi_);
  indptr_.swap(ptr);
}

std::size_t CompressedLinear::memory_usage() const {
  auto sz = [](const auto& v) { return v.capacity() * sizeof(v[0]); };
  return sizeof(*this) + (dense_ ? dense_->memory_usage() : 0) + sz(bias_) + sz(scale_) + sz(wf_) +
         sz(wb_) + sz(wi_) + sz(indptr_) + sz(idx16v_) + sz(idx32v_) + sz(pofs_) + sz(pf_) + sz(pb_) + sz(pi_) +
         sz(colord_);
}

const void* CompressedLinear::values() const {
  if (precision_ == 0) return wf_.data();
  if (precision_ == 1) return wb_.data();
  return wi_.data();
}

const void* CompressedLinear::index_ptr() const {
  return idx16_ ? static_cast<const void*>(idx16v_.data()) : static_cast<const void*>(idx32v_.data());
}

// int8: z = acc * scale; then act(z + b) in place.
void CompressedLinear::epilogue(float* row, Activation act) const {
  if (precision_ == 2)
    for (index_t j = 0; j < n_out_; ++j) row[j] *= scale_[j];
  vactivation(act, n_out_, row, row, bias_.empty() ? nullptr : bias_.data());
}

// Rows [q0, q0 + nrows) of x transposed into a 64-byte aligned n_in x kQLanes block of xt (lanes
// past nrows zero).
const float* CompressedLinear::transpose_block(const float* x, index_t ldx, index_t q0, int nrows,
                                               std::vector<float>& xt) const {
  float* xa = aligned_floats(xt, static_cast<std::size_t>(n_in_ * kQLanes));
  std::fill(xa, xa + n_in_ * kQLanes, 0.0f);
  for (int r = 0; r < nrows; ++r) {
    const float* xr = x + (q0 + r) * ldx;
    for (index_t i = 0; i < n_in_; ++i) xa[i * kQLanes + r] = xr[i];
  }
  return xa;
}

// Pre-activation (before bias) of rows [q0, q0 + nrows) of x of a sparse dense-input layer into
// out (the block's first row; row stride ldo), the int8 scale left to the caller's epilogue.
void CompressedLinear::sparse_block(const float* x, index_t ldx, index_t q0, int nrows,
                                    std::vector<float>& xt, std::vector<float>& tile, float* out,
                                    index_t ldo) const {
  const QlinearKernels& k = qlinear_kernels();
  const float* xa = transpose_block(x, ldx, q0, nrows, xt);
  tile.resize(static_cast<std::size_t>(kColChunk * kQLanes));
  for (index_t j0 = 0; j0 < n_out_; j0 += kColChunk) {
    const index_t j1 = std::min(n_out_, j0 + kColChunk);
    for (index_t sl = 0; sl < nslab_; ++sl)
      k.csc_block(indptr_.data() + sl * n_out_, index_ptr(), idx16_ ? 1 : 0, values(), precision_, j0, j1, xa,
                  nrows, sl > 0 ? 1 : 0, tile.data());
    // Transpose in 16-column strips (2 KiB of the tile at 32 lanes, L1-resident across the rows).
    for (index_t s0 = j0; s0 < j1; s0 += 16) {
      const index_t s1 = std::min(j1, s0 + 16);
      for (int r = 0; r < nrows; ++r) {
        float* o = out + r * ldo;
        for (index_t j = s0; j < s1; ++j) o[j] = tile[(j - j0) * kQLanes + r];
      }
    }
  }
}

void CompressedLinear::forward(MatrixView<const float> x, Activation act, float* out, index_t ldo,
                               int num_threads) const {
  AEREC_CHECK_ARG(x.cols == n_in_, "x has " + std::to_string(x.cols) + " columns but the layer has " +
                                       std::to_string(n_in_) + " inputs");
  AEREC_CHECK_ARG(ldo >= n_out_, "output row stride must be >= n_out");
  const index_t m = x.rows;
  if (m == 0) return;
  const int T = resolve_threads(num_threads);
  if (dense_) {
    dense_->score_rows(x, out, ldo, T);  // bias included
    if (act != Activation::identity) {
#pragma omp parallel for num_threads(T) schedule(static)
      for (index_t r = 0; r < m; ++r) vactivation(act, n_out_, out + r * ldo, out + r * ldo, nullptr);
    }
    return;
  }
  ExceptionSlot slot;
  if (sparse_ && !csr_input_) {
    const index_t nblocks = (m + kQLanes - 1) / kQLanes;
#pragma omp parallel num_threads(T)
    {
      std::vector<float> xt, tile;
#pragma omp for schedule(dynamic, 1)
      for (index_t blk = 0; blk < nblocks; ++blk) {
        slot.run([&] {
          const index_t q0 = blk * kQLanes;
          const int nrows = static_cast<int>(std::min<index_t>(kQLanes, m - q0));
          sparse_block(x.data, x.stride, q0, nrows, xt, tile, out + q0 * ldo, ldo);
          for (int r = 0; r < nrows; ++r) epilogue(out + (q0 + r) * ldo, act);
        });
      }
    }
    slot.rethrow();
    return;
  }
  // csr-input layer fed dense rows: each row's nonzeros are its history.
#pragma omp parallel num_threads(T)
  {
    Scratch sc(sparse_ ? n_out_ : 0);
#pragma omp for schedule(dynamic, 16)
    for (index_t r = 0; r < m; ++r) {
      slot.run([&] {
        float* o = out + r * ldo;
        gather_row(nullptr, nullptr, 0, x.data + r * x.stride, o, sc);
        epilogue(o, act);
      });
    }
  }
  slot.rethrow();
}

// The rows of a history as prefix_sum wants them (first column pointer, prefix length, value).

// acc = sum over the history (idx, val) (or the nonzeros of dense_x) of val * row(idx). A sparse
// layer accumulates in s.work (n_out floats, renumbered columns): the history's dense prefixes in one
// pass (prefix_sum: column chunks in registers, the rows by descending prefix length), then each
// row's tail one scatter; the sums then go back to the original column order in acc.
void CompressedLinear::gather_row(const std::int32_t* idx, const float* val, index_t cnt,
                                  const float* dense_x, float* acc, Scratch& s) const {
  const QlinearKernels& k = qlinear_kernels();
  const int vt = precision_;
  const std::size_t esz = vt == 0 ? 4 : vt == 1 ? 2 : 1;
  const char* vals = static_cast<const char*>(values());
  if (!sparse_) {
    std::fill(acc, acc + n_out_, 0.0f);
    auto add = [&](index_t i, float v) {
      k.axpy(n_out_, v, vals + static_cast<std::size_t>(i * n_out_) * esz, vt, acc);
    };
    if (dense_x != nullptr) {
      for (index_t i = 0; i < n_in_; ++i)
        if (dense_x[i] != 0.0f) add(i, dense_x[i]);
    } else {
      for (index_t t = 0; t < cnt; ++t) add(idx[t], val != nullptr ? val[t] : 1.0f);
    }
    return;
  }
  sorted_history(idx, val, cnt, dense_x, s);
  renumbered_sums(s);
  for (index_t p = 0; p < n_out_; ++p) acc[colord_[p]] = s.work[p];
}

// work[0, n_out) = the history's sums in the renumbered columns: its rows' dense prefixes in one
// prefix_sum pass (column chunks in registers), then each row's tail one scatter (L2-resident
// work), prefetched a few rows ahead (the tails are scattered over the layer).
void CompressedLinear::renumbered_sums(Scratch& s) const {
  const QlinearKernels& k = qlinear_kernels();
  const int vt = precision_;
  const std::size_t esz = vt == 0 ? 4 : vt == 1 ? 2 : 1;
  const char* vals = static_cast<const char*>(values());
  const char* pref = static_cast<const char*>(prefix_values());
  const auto& h = s.hist;
  float* work = s.work.data();
  const index_t nh = static_cast<index_t>(h.size());
  s.rows.clear();
  s.len.clear();
  s.a.clear();
  for (const auto& e : h) {
    const index_t L = pofs_[e.first + 1] - pofs_[e.first];
    if (L == 0) break;  // by descending length: no prefixes past here
    s.rows.push_back(pref + static_cast<std::size_t>(pofs_[e.first]) * esz);
    s.len.push_back(L);
    s.a.push_back(e.second);
  }
  k.prefix_sum(0, n_out_, static_cast<index_t>(s.rows.size()), s.rows.data(), s.len.data(), s.a.data(), vt, work);
  constexpr index_t kAhead = 4;
  for (index_t t = 0; t < nh; ++t) {
    if (t + kAhead < nh) {
      const std::int64_t b = indptr_[h[t + kAhead].first];
      const char* v = vals + static_cast<std::size_t>(b) * esz;
      const char* ix = idx16_ ? reinterpret_cast<const char*>(idx16v_.data() + b)
                              : reinterpret_cast<const char*>(idx32v_.data() + b);
      for (int line = 0; line < 4; ++line) {
        __builtin_prefetch(v + 64 * line);
        __builtin_prefetch(ix + 64 * line);
      }
    }
    const std::int32_t i = h[t].first;
    const index_t b0 = indptr_[i], b1 = indptr_[i + 1];
    if (b1 > b0) {
      const void* ix = idx16_ ? static_cast<const void*>(idx16v_.data() + b0)
                              : static_cast<const void*>(idx32v_.data() + b0);
      k.scatter(b1 - b0, h[t].second, ix, idx16_ ? 1 : 0, vals + static_cast<std::size_t>(b0) * esz, vt, work);
    }
  }
}

void CompressedLinear::sorted_history(const std::int32_t* idx, const float* val, index_t cnt,
                                      const float* dense_x, Scratch& s) const {
  auto& h = s.hist;
  h.clear();
  if (dense_x != nullptr) {
    for (index_t i = 0; i < n_in_; ++i)
      if (dense_x[i] != 0.0f) h.emplace_back(static_cast<std::int32_t>(i), dense_x[i]);
  } else {
    for (index_t t = 0; t < cnt; ++t) h.emplace_back(idx[t], val != nullptr ? val[t] : 1.0f);
  }
  auto plen = [&](std::int32_t i) { return pofs_[i + 1] - pofs_[i]; };
  std::stable_sort(h.begin(), h.end(), [&](const auto& x, const auto& y) { return plen(x.first) > plen(y.first); });
}

// topk_csr's selection for one user of a sparse csr-input layer, from its sums in the renumbered
// columns (renumbered_sums): scale and bias applied, then every column at or above the threshold
// (the kk-th best so far; ties pass, they may win on the lower original id) and not excluded
// enters the candidates, keyed by its original id (so ties rank as on the dense paths); the list
// is cut back to kk when it reaches cap. No original-order score row is written.
void CompressedLinear::select_renumbered(Scratch& s, index_t kk, const std::int32_t* ex, index_t nex,
                                         std::int32_t* ids, float* scores) const {
  float* work = s.work.data();
  auto& exr = s.exr;
  auto& pos = s.pos;
  auto& heap = s.heap;
  constexpr float kInf = std::numeric_limits<float>::infinity();
  if (!rscale_.empty())
    for (index_t j = 0; j < n_out_; ++j) work[j] *= rscale_[j];
  if (!rbias_.empty())
    for (index_t j = 0; j < n_out_; ++j) work[j] += rbias_[j];
  exr.resize(static_cast<std::size_t>(nex) + 1);
  for (index_t t = 0; t < nex; ++t) exr[t] = rank_[ex[t]];
  std::sort(exr.begin(), exr.begin() + nex);
  exr[nex] = std::numeric_limits<std::int32_t>::max();  // sentinel
  // columns by chunks of kColChunk: the kernel finds those at or above the threshold, then the
  // exclusions are skipped and the rest appended (the list has cap + kColChunk room); cut back to
  // kk once per chunk when it reached cap
  const index_t cap = kk + std::max<index_t>(kk, 32);
  heap.resize(static_cast<std::size_t>(cap + kColChunk));
  pos.resize(static_cast<std::size_t>(kColChunk));
  Entry* hp = heap.data();
  index_t hn = 0, xc = 0;
  float th = -kInf;
  const QlinearKernels& k = qlinear_kernels();
  for (index_t j0 = 0; j0 < n_out_; j0 += kColChunk) {
    const index_t nc = k.ge_filter(std::min(kColChunk, n_out_ - j0), work + j0, th, pos.data());
    for (index_t t = 0; t < nc; ++t) {
      const index_t j = j0 + pos[t];
      while (exr[xc] < j) ++xc;
      if (exr[xc] == j) continue;
      hp[hn++] = make_entry(work[j], colord_[j]);
    }
    if (hn >= cap) {
      th = cut_to(hp, hn, kk);
      hn = kk;
    }
  }
  finish_list(hp, hn, kk, ids, scores);
}

void CompressedLinear::forward_csr(const CsrView<float>& x, Activation act, float* out, index_t ldo,
                                   int num_threads) const {
  AEREC_CHECK_ARG(csr_input_, "forward_csr needs a layer packed with input='csr' (rows by input)");
  AEREC_CHECK_ARG(x.cols == n_in_, "the CSR input has " + std::to_string(x.cols) +
                                       " columns but the layer has " + std::to_string(n_in_) + " inputs");
  AEREC_CHECK_ARG(ldo >= n_out_, "output row stride must be >= n_out");
  const index_t m = x.rows;
  if (m == 0) return;
  check_csr_rows(x, n_in_);
  const int T = resolve_threads(num_threads);
  ExceptionSlot slot;
#pragma omp parallel num_threads(T)
  {
    Scratch sc(sparse_ ? n_out_ : 0);
#pragma omp for schedule(dynamic, 16)
    for (index_t r = 0; r < m; ++r) {
      slot.run([&] {
        const std::int64_t a = x.indptr[r], b = x.indptr[r + 1];
        float* o = out + r * ldo;
        gather_row(x.indices + a, x.values != nullptr ? x.values + a : nullptr, b - a, nullptr, o, sc);
        epilogue(o, act);
      });
    }
  }
  slot.rethrow();
}

void CompressedLinear::topk_csr(const CsrView<float>& x, index_t k, const std::int64_t* ex_ptr,
                                const std::int32_t* ex_idx, std::int32_t* ids, float* scores,
                                int num_threads) const {
  AEREC_CHECK_ARG(csr_input_, "topk_csr needs a layer packed with input='csr' (rows by input)");
  AEREC_CHECK_ARG(k >= 1, "k must be >= 1");
  AEREC_CHECK_ARG(x.cols == n_in_, "the CSR input has " + std::to_string(x.cols) +
                                       " columns but the layer has " + std::to_string(n_in_) + " inputs");
  const index_t m = x.rows;
  if (m == 0) return;
  check_csr_rows(x, n_in_);
  check_exclusion(m, ex_ptr, ex_idx, n_out_);
  const index_t kk = std::min(k, n_out_);
  const int T = resolve_threads(num_threads);
  ExceptionSlot slot;
  auto select = [&](index_t r, float* row) {
    epilogue(row, Activation::identity);
    std::int64_t ptr[2] = {0, 0};
    const std::int32_t* eidx = nullptr;
    if (ex_ptr != nullptr) {
      ptr[1] = ex_ptr[r + 1] - ex_ptr[r];
      eidx = ex_idx + ex_ptr[r];
    }
    MatrixView<const float> sv{row, 1, n_out_, n_out_};
    select_topk_rows(sv, kk, ex_ptr != nullptr ? ptr : nullptr, eidx, ids + r * kk, scores + r * kk, 1);
  };
  if (sparse_) {
    // Per user: its sums in build_hybrid's renumbered columns (renumbered_sums), selected there
    // (select_renumbered): no original-order score row, no n_out-long permutation.
#pragma omp parallel num_threads(T)
    {
      Scratch sc(n_out_);
#pragma omp for schedule(dynamic, 8)
      for (index_t r = 0; r < m; ++r) {
        slot.run([&] {
          const std::int64_t a = x.indptr[r], b = x.indptr[r + 1];
          sorted_history(x.indices + a, x.values != nullptr ? x.values + a : nullptr, b - a, nullptr, sc);
          renumbered_sums(sc);
          const std::int64_t e0 = ex_ptr != nullptr ? ex_ptr[r] : 0, e1 = ex_ptr != nullptr ? ex_ptr[r + 1] : 0;
          select_renumbered(sc, kk, ex_idx + e0, e1 - e0, ids + r * kk, scores + r * kk);
        });
      }
    }
    slot.rethrow();
    return;
  }
  // A dense layer: each row's scores accumulated in a per-thread buffer and selected at once.
#pragma omp parallel num_threads(T)
  {
    std::vector<float> acc(static_cast<std::size_t>(n_out_));
    Scratch sc(0);
#pragma omp for schedule(dynamic, 8)
    for (index_t r = 0; r < m; ++r) {
      slot.run([&] {
        const std::int64_t a = x.indptr[r], b = x.indptr[r + 1];
        gather_row(x.indices + a, x.values != nullptr ? x.values + a : nullptr, b - a, nullptr, acc.data(), sc);
        select(r, acc.data());
      });
    }
  }
  slot.rethrow();
}

void CompressedLinear::topk(MatrixView<const float> x, index_t k, const std::int64_t* ex_ptr,
                            const std::int32_t* ex_idx, std::int32_t* ids, float* scores,
                            int num_threads) const {
  AEREC_CHECK_ARG(!csr_input_, "topk needs a layer packed with input='dense' (an output layer)");
  AEREC_CHECK_ARG(k >= 1, "k must be >= 1");
  AEREC_CHECK_ARG(x.cols == n_in_, "x has " + std::to_string(x.cols) + " columns but the layer has " +
                                       std::to_string(n_in_) + " inputs");
  const index_t m = x.rows;
  if (m == 0) return;
  check_exclusion(m, ex_ptr, ex_idx, n_out_);
  const int T = resolve_threads(num_threads);
  if (dense_) {
    CsrView<float> ex;
    ex.indptr = ex_ptr;
    ex.indices = ex_idx;
    ex.rows = m;
    ex.cols = n_out_;
    dense_->search(x, k, ex_ptr != nullptr ? &ex : nullptr, ids, scores, T);
    return;
  }
  // Sparse: blocks of kQLanes rows; per column chunk the kernel applies scale and bias and keeps
  // only the columns where some row's score beats that row's threshold (the kc-th best so far,
  // updated when a row's candidate list is cut back), so the scores never round-trip through
  // memory. Excluded ids are dropped before they enter a list (they must not raise a threshold).
  const index_t kk = std::min(k, n_out_);
  const index_t cap = kk + std::max<index_t>(kk, 32);  // list cut back to kk when it reaches cap
  const index_t nblocks = (m + kQLanes - 1) / kQLanes;
  const float* scale = precision_ == 2 ? scale_.data() : nullptr;
  const float* bias = bias_.empty() ? nullptr : bias_.data();
  constexpr float kInf = std::numeric_limits<float>::infinity();
  ExceptionSlot slot;
#pragma omp parallel num_threads(T)
  {
    std::vector<float> xt, cand, tile(static_cast<std::size_t>(nslab_ > 1 ? kColChunk * kQLanes : 0));
    std::vector<std::int32_t> col, ex;
    std::vector<std::uint32_t> mask;
    std::vector<Entry> heap;
    std::vector<index_t> hn, exoff, excur;
    alignas(64) float thr[kQLanes];
#pragma omp for schedule(dynamic, 1)
    for (index_t blk = 0; blk < nblocks; ++blk) {
      slot.run([&] {
        const QlinearKernels& kern = qlinear_kernels();
        const index_t q0 = blk * kQLanes;
        const int nrows = static_cast<int>(std::min<index_t>(kQLanes, m - q0));
        const float* xa = transpose_block(x.data, x.stride, q0, nrows, xt);
        for (int l = 0; l < kQLanes; ++l) thr[l] = l < nrows ? -kInf : kInf;
        heap.resize(static_cast<std::size_t>(nrows * (cap + kColChunk)));
        hn.assign(static_cast<std::size_t>(nrows), 0);
        // This block's exclusions, sorted per row (columns ascend: one cursor per row).
        exoff.assign(static_cast<std::size_t>(nrows + 1), 0);
        ex.clear();
        for (int r = 0; r < nrows && ex_ptr != nullptr; ++r) {
          const std::size_t s0 = ex.size();
          ex.insert(ex.end(), ex_idx + ex_ptr[q0 + r], ex_idx + ex_ptr[q0 + r + 1]);
          std::sort(ex.begin() + s0, ex.end());
          exoff[r + 1] = static_cast<index_t>(ex.size());
        }
        if (ex_ptr == nullptr) exoff.assign(static_cast<std::size_t>(nrows + 1), 0);
        excur.assign(exoff.begin(), exoff.end() - 1);
        float* cb = aligned_floats(cand, static_cast<std::size_t>(kColChunk * kQLanes));
        col.resize(static_cast<std::size_t>(kColChunk));
        mask.resize(static_cast<std::size_t>(kColChunk));
        for (index_t j0 = 0; j0 < n_out_; j0 += kColChunk) {
          const index_t j1 = std::min(n_out_, j0 + kColChunk);
          // Earlier slabs' partial sums in the tile, the last slab fused with the filter.
          for (index_t sl = 0; sl + 1 < nslab_; ++sl)
            kern.csc_block(indptr_.data() + sl * n_out_, index_ptr(), idx16_ ? 1 : 0, values(), precision_, j0,
                           j1, xa, nrows, sl > 0 ? 1 : 0, tile.data());
          const index_t nc = kern.csc_filter(indptr_.data() + (nslab_ - 1) * n_out_, index_ptr(), idx16_ ? 1 : 0,
                                             values(), precision_, j0, j1, xa, nrows,
                                             nslab_ > 1 ? tile.data() : nullptr, scale, bias, thr, cb, col.data(),
                                             mask.data());
          // Append the chunk's survivors row by row (a list may overshoot cap by at most the
          // chunk: its slot has cap + kColChunk room), then cut back once per row and chunk.
          for (index_t c = 0; c < nc; ++c) {
            std::uint32_t mm = mask[c];
            const std::int32_t j = col[c];
            while (mm != 0) {
              const int r = __builtin_ctz(mm);
              mm &= mm - 1;
              index_t& cur = excur[r];
              const index_t end = exoff[r + 1];
              while (cur < end && ex[cur] < j) ++cur;
              if (cur < end && ex[cur] == j) continue;
              heap[r * (cap + kColChunk) + hn[r]++] = make_entry(cb[c * kQLanes + r], j);
            }
          }
          for (int r = 0; r < nrows; ++r) {
            if (hn[r] >= cap) {
              thr[r] = cut_to(heap.data() + r * (cap + kColChunk), hn[r], kk);
              hn[r] = kk;
            }
          }
        }
        for (int r = 0; r < nrows; ++r)
          finish_list(heap.data() + r * (cap + kColChunk), hn[r], kk, ids + (q0 + r) * kk, scores + (q0 + r) * kk);
      });
    }
  }
  slot.rethrow();
}

}  // namespace aerec::cpu

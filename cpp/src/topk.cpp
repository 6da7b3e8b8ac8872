// Top-k search driver: item packing, query blocking, threshold-filtered candidate buffers,
// exclusion, pruning, re-scoring. The per-ISA tile kernels live in src/simd/topk_*.cpp.
#include "aerec/topk.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <numeric>

#include "aerec/cpu_features.hpp"
#include "aerec/error.hpp"
#include "aerec/parallel.hpp"
#include "aerec/topk_entry.hpp"

namespace aerec::cpu {

TopkKernels topk_kernels() {
  TopkKernels k = *dispatch(&scalar::kTopkKernels,
                            AEREC_X86_VARIANTS({Target::avx2, &avx2::kTopkKernels},
                                               {Target::avx512, &avx512::kTopkKernels}));
  // The compressed tiles: the avx2 ones take any panel height that is a multiple of 3 (the avx2
  // and avx512 levels' both are); the VNNI / AVX512-BF16 ones need instructions beyond the level
  // (their own targets, which imply the avx512 level and so its panel height), the AVX-VNNI one
  // (avx2 level) any multiple of 3 like the avx2 tiles.
  static_assert(avx512::kTopkMr % avx2::kTopkMr == 0, "avx2 compressed tiles work 3 rows at a time");
  k.i8_tile = dispatch(k.i8_tile, AEREC_X86_VARIANTS({Target::avx2, &avx2::topk_i8_tile},
                                                     {Target::avxvnni, &avxvnni::topk_i8_tile},
                                                     {Target::avx512vnni, &avx512vnni::topk_i8_tile}));
  k.bf16_tile = dispatch(k.bf16_tile, AEREC_X86_VARIANTS({Target::avx2, &avx2::topk_bf16_tile},
                                                         {Target::avx512bf16, &avx512bf16::topk_bf16_tile}));
  // AMX (amx level only: the CPU's tile bits and the OS's XTILEDATA permission are checked).
  using AmxTile = decltype(k.bf16_amx_tile);
  using AmxI8Tile = decltype(k.i8_amx_tile);
  k.bf16_amx_tile = dispatch<AmxTile>(nullptr, AEREC_X86_VARIANTS({Target::amx, &amx::topk_bf16_tile}));
  k.i8_amx_tile = dispatch<AmxI8Tile>(nullptr, AEREC_X86_VARIANTS({Target::amx, &amx::topk_i8_tile}));
  return k;
}

namespace topk_detail {
using topk_entry::Entry;  // a candidate: one 64-bit key (topk_entry.hpp)
using topk_entry::entry_id;
using topk_entry::entry_score;
using topk_entry::make_entry;

// Candidate buffer of one query: survivors of the threshold filter are appended; when it is full
// it is cut back to the best kc (nth_element, O(cap)) and the kc-th score becomes the new
// threshold. Amortised O(1) per survivor, against O(log kc) for a heap.
struct BetterCmp {
  bool operator()(Entry a, Entry b) const { return a > b; }
};
// Leaves the best kc of h[0..n) in h[0..kc) and returns the worst of them.
inline Entry select_best(const TopkKernels& kern, Entry* h, index_t n, index_t kc,
                         std::vector<Entry>& tmp) {
  if (kern.select != nullptr && n > kc) {
    if (tmp.size() < static_cast<std::size_t>(2 * n + 16)) tmp.resize(static_cast<std::size_t>(2 * n + 16));
    kern.select(h, n, kc, tmp.data());
    return *std::min_element(h, h + kc);
  }
  std::nth_element(h, h + (kc - 1), h + n, BetterCmp{});
  return h[kc - 1];
}
// Rows are laid out cap + one tile apart: a tile's survivors are appended, then the buffer
// is compacted once it holds cap or more.
inline index_t buffer_cap(index_t kc) { return kc + std::max<index_t>(kc, 32); }

std::uint16_t to_bf16(float f) {  // round to nearest even; inputs are finite
  std::uint32_t u;
  std::memcpy(&u, &f, 4);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<std::uint16_t>(u >> 16);
}

constexpr float kInf = std::numeric_limits<float>::infinity();

// Symmetric int8 scale of an item row (max |x| / 127; 1 for a zero row) and its quantised value.
inline float i8_scale(const float* x, index_t d) {
  float amax = 0;
  for (index_t p = 0; p < d; ++p) amax = std::max(amax, std::fabs(x[p]));
  return amax > 0 ? amax / 127.0f : 1.0f;
}
inline long i8_value(float x, float scale) {
  const long v = std::lrintf(x / scale);
  return std::min(127L, std::max(-127L, v));
}
// Queries (and CompressedLinear activations) are 7-bit: q in [-63, 63] with scale max |x| / 63,
// fed to the tiles as u8 = q + 64 in [1, 127], so the AVX2 tile's vpmaddubsw pair sums
// (|u8 x s8 + u8 x s8| <= 2 x 127 x 128 < 32768) never saturate and every level computes the
// same exact int32 sums.
constexpr int kQueryMax = 63;
constexpr int kQueryOffset = 64;
inline float i8_query_scale(const float* x, index_t d) {
  float amax = 0;
  for (index_t p = 0; p < d; ++p) amax = std::max(amax, std::fabs(x[p]));
  return amax > 0 ? amax / static_cast<float>(kQueryMax) : 1.0f;
}
inline long i8_query_value(float x, float scale) {
  const long v = std::lrintf(x / scale);
  return std::min(static_cast<long>(kQueryMax), std::max(-static_cast<long>(kQueryMax), v));
}

// Euclidean norm of x as the kernel of `prec` sees it (fp32, bf16-rounded, or scale * int8).
// `query`: x is a query (7-bit int8 quantisation) rather than an item (8-bit).
inline double scored_norm(const float* x, index_t d, TopkPrecision prec, bool query = false) {
  double s = 0;
  if (prec == TopkPrecision::fp32) {
    for (index_t p = 0; p < d; ++p) s += static_cast<double>(x[p]) * x[p];
    return std::sqrt(s);
  }
  if (prec == TopkPrecision::bf16) {
    for (index_t p = 0; p < d; ++p) {
      const std::uint32_t u = static_cast<std::uint32_t>(to_bf16(x[p])) << 16;
      float f;
      std::memcpy(&f, &u, 4);
      s += static_cast<double>(f) * f;
    }
    return std::sqrt(s);
  }
  const float scale = query ? i8_query_scale(x, d) : i8_scale(x, d);
  for (index_t p = 0; p < d; ++p) {
    const double v = static_cast<double>(query ? i8_query_value(x[p], scale) : i8_value(x[p], scale));
    s += v * v;
  }
  return static_cast<double>(scale) * std::sqrt(s);
}
constexpr int kMaxMr = 32;  // the AMX bf16 tile's 32 rows; the register tiles use 3-16
// Query panel height of a search / forward at precision `prec` with kernels `k`: the AMX bf16
// tile takes 32 queries, every other tile the level's register panel.
inline int panel_rows(const TopkKernels& k, TopkPrecision prec) {
  const bool amx = (prec == TopkPrecision::bf16 && k.bf16_amx_tile != nullptr) ||
                   (prec == TopkPrecision::int8 && k.i8_amx_tile != nullptr);
  return amx ? amx::kTopkMr : k.mr;
}
// Rows (bf16 pairs / int8 quads) of zeros kept after the last compressed panel: the AMX tiles read
// K in steps of 16 rows, so the last step of the last panel reads up to 15 rows past it (against
// zero query padding).
constexpr index_t kAmxGuardRows = 16;
// Candidate rows are cap + kSlack apart: one tile's survivors (32) plus an 8-key vector store.
constexpr index_t kSlack = 48;
// Few queries: threads take chunks of this many panels in ascending order (dynamic, so a thread
// that is descheduled on a busy machine does not hold the others at the barrier for long, and
// every thread meets high-norm panels first when pruning).
constexpr index_t kChunk = 8;
}  // namespace topk_detail

using topk_detail::Entry;
using topk_detail::kSlack;

struct TopkIndex::Work {
  std::vector<float> qf;
  std::vector<float> wpanel;  // bf16 without AVX512-BF16: the current panel widened to fp32
  index_t wpanel_of = -1;     // which panel wpanel holds
  bool widen = false;         // set by pack_queries: bf16 queries packed as fp32 for widened panels
  bool amx = false;           // set by pack_queries: bf16 / int8 queries packed row-major for AMX
  index_t kq = 0;             // AMX: bf16 values / int8 bytes per packed query row (K padded to 32 / 64)
  std::vector<std::uint16_t> qb;
  std::vector<std::uint8_t> qi;
  std::vector<float> qscale, qnorm, thr;
  std::vector<Entry> heap;
  std::vector<index_t> hn;
  std::vector<std::int32_t> ex, exnext;
  std::vector<index_t> exoff, excur;
  std::vector<char> active;
  std::vector<Entry> cand, seltmp;
  std::vector<std::uint32_t> bstart, bpos;  // batched re-scoring: item buckets of candidates
  alignas(64) float tile[topk_detail::kMaxMr * kPanel];
  std::uint32_t mask[topk_detail::kMaxMr];
};

TopkIndex::TopkIndex(MatrixView<const float> items, const float* bias, const TopkOptions& opt,
                     int num_threads)
    : opt_(opt) {
  n_ = items.rows;
  d_ = items.cols;
  AEREC_CHECK_ARG(n_ >= 1, "the index needs at least one item (got an empty item matrix)");
  AEREC_CHECK_ARG(d_ >= 1, "item vectors need at least one dimension");
  AEREC_CHECK_ARG(n_ <= std::numeric_limits<std::int32_t>::max(),
                  "more than 2^31-1 items is not supported (int32 ids)");
  AEREC_CHECK_ARG(std::isfinite(opt.rescore) && (opt.rescore == 0 || opt.rescore >= 1),
                  "rescore must be 0 (no fp32 copy, compressed scores) or a finite number >= 1");
  AEREC_CHECK_ARG(opt.rescore >= 1 || opt.precision != TopkPrecision::fp32,
                  "rescore must be >= 1 for fp32 (rescore = 0 is for bf16 / int8)");
  AEREC_CHECK_ARG(items.stride >= d_, "item row stride must be >= d");
  const int T = resolve_threads(num_threads);
  const index_t n = n_, d = d_;

  bool finite = true;
#pragma omp parallel for num_threads(T) reduction(&& : finite) schedule(static)
  for (index_t j = 0; j < n; ++j) {
    const float* x = items.data + j * items.stride;
    bool ok = true;
    for (index_t p = 0; p < d; ++p) ok = ok && std::isfinite(x[p]);
    if (bias != nullptr) ok = ok && std::isfinite(bias[j]);
    finite = finite && ok;
  }
  AEREC_CHECK_ARG(finite, "items and bias must be finite (found NaN or inf)");
  build(items.data, items.stride, nullptr, bias, T);
}

TopkIndex::TopkIndex(const QuantisedItems& q, const float* bias, const TopkOptions& opt,
                     int num_threads)
    : opt_(opt) {
  n_ = q.n;
  d_ = q.d;
  AEREC_CHECK_ARG(n_ >= 1, "the index needs at least one item (got an empty item matrix)");
  AEREC_CHECK_ARG(d_ >= 1, "item vectors need at least one dimension");
  AEREC_CHECK_ARG(n_ <= std::numeric_limits<std::int32_t>::max(),
                  "more than 2^31-1 items is not supported (int32 ids)");
  AEREC_CHECK_ARG(opt.precision == q.precision && q.precision != TopkPrecision::fp32,
                  "quantised items need the index precision of their values (bf16 or int8)");
  AEREC_CHECK_ARG(opt.rescore == 0,
                  "an index built from quantised items has no fp32 copy: rescore must be 0");
  const bool i8 = q.precision == TopkPrecision::int8;
  AEREC_CHECK_ARG(i8 ? (q.i8 != nullptr && q.i8_scale != nullptr) : q.bf16 != nullptr,
                  "quantised items: missing values");
  const int T = resolve_threads(num_threads);
  bool ok = true;
  for (index_t j = 0; j < n_; ++j) {
    if (bias != nullptr) ok = ok && std::isfinite(bias[j]);
    if (i8) ok = ok && std::isfinite(q.i8_scale[j]) && q.i8_scale[j] > 0;
  }
  AEREC_CHECK_ARG(ok, "bias must be finite and int8 scales finite and positive");
  if (i8) {
    for (index_t t = 0; t < n_ * d_; ++t)
      AEREC_CHECK_ARG(q.i8[t] != -128, "int8 item values must lie in [-127, 127] (symmetric)");
  } else {
    for (index_t t = 0; t < n_ * d_; ++t)
      AEREC_CHECK_ARG((q.bf16[t] & 0x7F80u) != 0x7F80u, "bf16 item values must be finite");
  }
  build(nullptr, d_, &q, bias, T);
}

// Packs the items: from fp32 rows (items, row stride `stride`) or from quantised values (q).
void TopkIndex::build(const float* items, index_t stride, const QuantisedItems* q,
                      const float* bias, int T) {
  const TopkOptions& opt = opt_;
  const index_t n = n_, d = d_;
  // Accessors of item j (original order) in each representation.
  auto i8_scale_of = [&](index_t j) {
    return q != nullptr ? q->i8_scale[j] : topk_detail::i8_scale(items + j * stride, d);
  };
  auto i8_at = [&](index_t j, index_t p, float scale) -> long {
    return q != nullptr ? static_cast<long>(q->i8[j * d + p])
                        : topk_detail::i8_value(items[j * stride + p], scale);
  };
  auto bf16_at = [&](index_t j, index_t p) -> std::uint16_t {
    return q != nullptr ? q->bf16[j * d + p] : topk_detail::to_bf16(items[j * stride + p]);
  };

  panels_ = (n + kPanel - 1) / kPanel;
  const index_t slots = panels_ * kPanel;
  has_bias_ = bias != nullptr;
  if (has_bias_) bias_.assign(bias, bias + n);

  std::vector<std::int32_t> order(static_cast<std::size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  std::vector<double> norm;
  if (opt.prune) {
    norm.resize(static_cast<std::size_t>(n));
#pragma omp parallel for num_threads(T) schedule(static)
    for (index_t j = 0; j < n; ++j) {
      // Norm of the vector the kernel scores with (the bf16 / int8 one on compressed paths),
      // so the bound holds for the approximate scores that choose the candidates.
      if (q == nullptr) {
        norm[j] = topk_detail::scored_norm(items + j * stride, d, opt.precision);
      } else if (q->precision == TopkPrecision::int8) {
        double s = 0;
        for (index_t p = 0; p < d; ++p) s += static_cast<double>(q->i8[j * d + p]) * q->i8[j * d + p];
        norm[j] = static_cast<double>(q->i8_scale[j]) * std::sqrt(s);
      } else {
        double s = 0;
        for (index_t p = 0; p < d; ++p) {
          const std::uint32_t u = static_cast<std::uint32_t>(q->bf16[j * d + p]) << 16;
          float f;
          std::memcpy(&f, &u, 4);
          s += static_cast<double>(f) * f;
        }
        norm[j] = std::sqrt(s);
      }
    }
    std::stable_sort(order.begin(), order.end(),
                     [&](std::int32_t a, std::int32_t b) { return norm[a] > norm[b]; });
    slot_of_.resize(static_cast<std::size_t>(n));
    for (index_t s = 0; s < n; ++s) slot_of_[order[s]] = static_cast<std::int32_t>(s);
  }
  perm_.assign(static_cast<std::size_t>(slots), -1);
  pbias_.assign(static_cast<std::size_t>(slots), 0.0f);
  for (index_t s = 0; s < n; ++s) {
    perm_[s] = order[s];
    if (has_bias_) pbias_[s] = bias[order[s]];
  }
  if (opt.prune) {
    pnorm_.assign(static_cast<std::size_t>(panels_), 0.0f);
    pbmax_.assign(static_cast<std::size_t>(panels_), -topk_detail::kInf);
    sbmax_.assign(static_cast<std::size_t>(panels_), -topk_detail::kInf);
    for (index_t P = 0; P < panels_; ++P) {
      double mn = 0;
      float mb = -topk_detail::kInf;
      for (index_t s = P * kPanel; s < std::min(n, (P + 1) * kPanel); ++s) {
        mn = std::max(mn, norm[order[s]]);
        mb = std::max(mb, has_bias_ ? bias[order[s]] : 0.0f);
      }
      pnorm_[P] = std::nextafter(static_cast<float>(mn), topk_detail::kInf);
      pbmax_[P] = mb;
    }
    float run = -topk_detail::kInf;
    for (index_t P = panels_ - 1; P >= 0; --P) {
      run = std::max(run, pbmax_[P]);
      sbmax_[P] = run;
    }
  }

  if (opt.precision == TopkPrecision::fp32) {
    packed_.assign(static_cast<std::size_t>(panels_ * d * kPanel), 0.0f);
#pragma omp parallel for num_threads(T) schedule(static)
    for (index_t P = 0; P < panels_; ++P) {
      float* dst = packed_.data() + P * d * kPanel;
      for (int b = 0; b < kPanel; ++b) {
        const index_t s = P * kPanel + b;
        if (s >= n) break;
        const float* x = items + static_cast<index_t>(order[s]) * stride;
        for (index_t p = 0; p < d; ++p) dst[p * kPanel + b] = x[p];
      }
    }
    return;
  }

  // Compressed: keep fp32 rows for re-scoring (items in their original order) unless rescore = 0.
  if (items != nullptr && opt.rescore > 0) {
    rows_.resize(static_cast<std::size_t>(n * d));
    for (index_t j = 0; j < n; ++j)
      std::memcpy(rows_.data() + j * d, items + j * stride, sizeof(float) * d);
  }
  if (opt.precision == TopkPrecision::bf16) {
    d2_ = (d + 1) / 2;
    bf16_.assign(static_cast<std::size_t>((panels_ * d2_ + topk_detail::kAmxGuardRows) * kPanel * 2), 0);
#pragma omp parallel for num_threads(T) schedule(static)
    for (index_t P = 0; P < panels_; ++P) {
      std::uint16_t* dst = bf16_.data() + P * d2_ * kPanel * 2;
      for (int b = 0; b < kPanel; ++b) {
        const index_t slot = P * kPanel + b;
        if (slot >= n) break;
        const index_t j = order[slot];
        for (index_t p = 0; p < d; ++p) dst[((p / 2) * kPanel + b) * 2 + (p % 2)] = bf16_at(j, p);
      }
    }
  } else {
    // int8: symmetric per-item scales, so skewed item norms keep their relative precision.
    d4_ = (d + 3) / 4;
    i8_.assign(static_cast<std::size_t>((panels_ * d4_ + topk_detail::kAmxGuardRows) * kPanel * 4), 0);
    iscale_.assign(static_cast<std::size_t>(slots), 1.0f);
    icorr_.assign(static_cast<std::size_t>(slots), 0);
#pragma omp parallel for num_threads(T) schedule(static)
    for (index_t P = 0; P < panels_; ++P) {
      std::int8_t* dst = i8_.data() + P * d4_ * kPanel * 4;
      for (int b = 0; b < kPanel; ++b) {
        const index_t slot = P * kPanel + b;
        if (slot >= n) break;
        const index_t j = order[slot];
        const float scale = i8_scale_of(j);
        std::int32_t sum = 0;
        for (index_t p = 0; p < d; ++p) {
          const long v = i8_at(j, p, scale);
          dst[((p / 4) * kPanel + b) * 4 + (p % 4)] = static_cast<std::int8_t>(v);
          sum += static_cast<std::int32_t>(v);
        }
        iscale_[slot] = scale;
        icorr_[slot] = topk_detail::kQueryOffset * sum;
      }
    }
  }
}

std::size_t TopkIndex::memory_usage() const {
  auto sz = [](const auto& v) { return v.capacity() * sizeof(v[0]); };
  return sizeof(*this) + sz(packed_) + sz(bf16_) + sz(i8_) + sz(iscale_) + sz(icorr_) +
         sz(rows_) + sz(pbias_) + sz(bias_) + sz(perm_) + sz(slot_of_) + sz(pnorm_) + sz(pbmax_) + sz(sbmax_);
}

void TopkIndex::export_items(float* out) const {
  if (opt_.precision != TopkPrecision::fp32 && !rows_.empty()) {
    std::memcpy(out, rows_.data(), sizeof(float) * rows_.size());
    return;
  }
  if (opt_.precision == TopkPrecision::bf16) {  // rescore = 0: the dequantised items
    for (index_t s = 0; s < n_; ++s) {
      const index_t j = perm_[s];
      const std::uint16_t* src = bf16_.data() + (s / kPanel) * d2_ * kPanel * 2 + (s % kPanel) * 2;
      for (index_t p = 0; p < d_; ++p) {
        const std::uint32_t u = static_cast<std::uint32_t>(src[(p / 2) * kPanel * 2 + (p % 2)]) << 16;
        std::memcpy(out + j * d_ + p, &u, 4);
      }
    }
    return;
  }
  if (opt_.precision == TopkPrecision::int8) {
    for (index_t s = 0; s < n_; ++s) {
      const index_t j = perm_[s];
      const std::int8_t* src = i8_.data() + (s / kPanel) * d4_ * kPanel * 4 + (s % kPanel) * 4;
      for (index_t p = 0; p < d_; ++p)
        out[j * d_ + p] = static_cast<float>(src[(p / 4) * kPanel * 4 + (p % 4)]) * iscale_[s];
    }
    return;
  }
  for (index_t s = 0; s < n_; ++s) {
    const index_t j = perm_[s];
    const float* src = packed_.data() + (s / kPanel) * d_ * kPanel + (s % kPanel);
    for (index_t p = 0; p < d_; ++p) out[j * d_ + p] = src[p * kPanel];
  }
}

void TopkIndex::export_bias(float* out) const {
  for (index_t j = 0; j < n_; ++j) out[j] = has_bias_ ? bias_[j] : 0.0f;
}

namespace topk_detail {
// bf16 without AVX512-BF16: widening each bf16 panel to fp32 once per query block and running the
// fp32 tile on bf16-rounded queries computes the same bf16 x bf16 products (exact in fp32) with
// fp32 accumulation, and costs the conversion once per panel instead of once per micro-panel
// (the AVX2 bf16 tile re-widens the items for every 3 queries: 0.82-0.88x fp32 at W = 600 x 20k).
//
// Where the CPU has AVX512-BF16 (and the AMX tile is not in use) both ways are available. Intel
// cores issue vdpbf16ps zmm at about half an instruction per cycle against two FMAs per cycle:
// on Sapphire Rapids the vdpbf16ps tile peaks at 0.52-0.62x the fp32 FMA tile's flops whatever
// its register blocking (benchmarks/micro/, benchmarks/RESULTS.md "bf16 on AMX and vdpbf16ps"),
// so Intel widens; AMD Zen 4 / 5 issue vdpbf16ps at the FMA's instruction rate (twice the
// flops), so they keep the vdpbf16ps tile. AEREC_BF16_DOT=vdpbf16ps|widen (read once) overrides
// the choice (tests, benchmarks). Both compute fp32 sums of the same exact bf16 x bf16 products.
inline int bf16_dot_override() {  // 0 auto, 1 vdpbf16ps, 2 widen
  static const int mode = [] {
    const char* s = std::getenv("AEREC_BF16_DOT");
    if (s != nullptr && std::strcmp(s, "vdpbf16ps") == 0) return 1;
    if (s != nullptr && std::strcmp(s, "widen") == 0) return 2;
    return 0;
  }();
  return mode;
}
inline bool widen_bf16() {
  if (!target_enabled(Target::avx512bf16)) return true;
  const int mode = bf16_dot_override();
  return mode == 2 || (mode == 0 && cpu_features().intel);
}
}  // namespace topk_detail

// The bf16 panel P widened to the fp32 tile layout (d x 32), converted once per query block.
const float* TopkIndex::widened_panel(Work& w, index_t P) const {
  if (w.wpanel_of != P) {
    w.wpanel.resize(static_cast<std::size_t>(d_ * kPanel));
    const std::uint16_t* src = bf16_.data() + P * d2_ * kPanel * 2;
    for (index_t p = 0; p < d_; ++p) {
      const std::uint16_t* s = src + (p / 2) * kPanel * 2 + (p % 2);
      float* dst = w.wpanel.data() + p * kPanel;
      for (int b = 0; b < kPanel; ++b) {
        const std::uint32_t u = static_cast<std::uint32_t>(s[2 * b]) << 16;
        std::memcpy(dst + b, &u, 4);
      }
    }
    w.wpanel_of = P;
  }
  return w.wpanel.data();
}

// Packs rows [q0, q0 + nrows) of Q in the layout of the tile kernel (panel height mr).
void TopkIndex::pack_queries(Work& w, const float* Q, index_t q_stride, index_t q0, int nrows,
                             int mr) const {
  const index_t d = d_;
  const index_t rows_pad = (nrows + mr - 1) / mr * mr;
  const TopkPrecision prec = opt_.precision;
  // mr is panel_rows(): 32 only for the AMX bf16 tile (no register panel is that tall).
  static_assert(scalar::kTopkMr != amx::kTopkMr && avx2::kTopkMr != amx::kTopkMr &&
                    avx512::kTopkMr != amx::kTopkMr,
                "the AMX panel height must differ from every register panel's");
  w.amx = prec != TopkPrecision::fp32 && mr == amx::kTopkMr;
  w.widen = prec == TopkPrecision::bf16 && !w.amx && topk_detail::widen_bf16();
  if (w.amx && prec == TopkPrecision::int8) {
    // Row-major query bytes, kq per row (d4 rounded up to 16 quads, x 4): q + 64 up to 4 d4
    // (the items are zero beyond d), 0 beyond that, where the last AMX step reads past the panel.
    const index_t kq = (d4_ + 15) / 16 * 64;
    w.kq = kq;
    w.qi.assign(static_cast<std::size_t>(rows_pad * kq), 0);
    w.qscale.assign(static_cast<std::size_t>(rows_pad), 0.0f);
    for (int r = 0; r < rows_pad; ++r)
      std::fill(w.qi.data() + r * kq, w.qi.data() + r * kq + d4_ * 4, static_cast<std::uint8_t>(topk_detail::kQueryOffset));
    for (int r = 0; r < nrows; ++r) {
      const float* q = Q + (q0 + r) * q_stride;
      const float scale = topk_detail::i8_query_scale(q, d);
      std::uint8_t* dst = w.qi.data() + r * kq;
      for (index_t p = 0; p < d; ++p)
        dst[p] = static_cast<std::uint8_t>(topk_detail::i8_query_value(q[p], scale) + topk_detail::kQueryOffset);
      w.qscale[r] = scale;
    }
  } else if (w.amx) {
    // Row-major bf16 rows of kq (d rounded up to 32), zero-padded: the AMX tile's A layout.
    const index_t kq = (d2_ + 15) / 16 * 32;
    w.kq = kq;
    w.qb.assign(static_cast<std::size_t>(rows_pad * kq), 0);
    for (int r = 0; r < nrows; ++r) {
      const float* q = Q + (q0 + r) * q_stride;
      std::uint16_t* dst = w.qb.data() + r * kq;
      for (index_t p = 0; p < d; ++p) dst[p] = topk_detail::to_bf16(q[p]);
    }
  } else if (prec == TopkPrecision::fp32 || w.widen) {
    const bool round = prec == TopkPrecision::bf16;
    w.qf.assign(static_cast<std::size_t>(rows_pad * d), 0.0f);
    for (int r = 0; r < nrows; ++r) {
      const float* q = Q + (q0 + r) * q_stride;
      float* dst = w.qf.data() + (r / mr) * d * mr + (r % mr);
      for (index_t p = 0; p < d; ++p) {
        if (round) {
          const std::uint32_t u = static_cast<std::uint32_t>(topk_detail::to_bf16(q[p])) << 16;
          std::memcpy(dst + p * mr, &u, 4);
        } else {
          dst[p * mr] = q[p];
        }
      }
    }
  } else if (prec == TopkPrecision::bf16) {
    w.qb.assign(static_cast<std::size_t>(rows_pad * d2_ * 2), 0);
    for (int r = 0; r < nrows; ++r) {
      const float* q = Q + (q0 + r) * q_stride;
      std::uint16_t* dst = w.qb.data() + (r / mr) * d2_ * mr * 2 + (r % mr) * 2;
      for (index_t p = 0; p < d; ++p) dst[(p / 2) * mr * 2 + (p % 2)] = topk_detail::to_bf16(q[p]);
    }
  } else {
    w.qi.assign(static_cast<std::size_t>(rows_pad * d4_ * 4), topk_detail::kQueryOffset);
    w.qscale.assign(static_cast<std::size_t>(rows_pad), 0.0f);
    for (int r = 0; r < nrows; ++r) {
      const float* q = Q + (q0 + r) * q_stride;
      const float scale = topk_detail::i8_query_scale(q, d);
      std::uint8_t* dst = w.qi.data() + (r / mr) * d4_ * mr * 4 + (r % mr) * 4;
      for (index_t p = 0; p < d; ++p) {
        const long v = topk_detail::i8_query_value(q[p], scale);
        dst[(p / 4) * mr * 4 + (p % 4)] = static_cast<std::uint8_t>(v + topk_detail::kQueryOffset);
      }
      w.qscale[r] = scale;
    }
  }
}

// Scores query micro-panel qpi of the packed block (pack_queries) against item panel jr with the
// tile of the index's precision and the packing in force: w.tile (mr x 32) and w.mask.
void TopkIndex::score_tile(Work& w, const TopkKernels& kern, index_t qpi, index_t jr, int mr,
                           const float* thr) const {
  const float* bias = pbias_.data() + jr * kPanel;
  switch (opt_.precision) {
    case TopkPrecision::fp32:
      kern.fp32_tile(w.qf.data() + qpi * d_ * mr, packed_.data() + jr * d_ * kPanel, bias, d_, thr, w.tile,
                     w.mask);
      return;
    case TopkPrecision::bf16:
      if (w.amx) {
        kern.bf16_amx_tile(w.qb.data() + qpi * mr * w.kq, bf16_.data() + jr * d2_ * kPanel * 2, bias, d2_, thr,
                           w.tile, w.mask, mr);
      } else if (w.widen) {
        kern.fp32_tile(w.qf.data() + qpi * d_ * mr, widened_panel(w, jr), bias, d_, thr, w.tile, w.mask);
      } else {
        kern.bf16_tile(w.qb.data() + qpi * d2_ * mr * 2, bf16_.data() + jr * d2_ * kPanel * 2, bias, d2_, thr,
                       w.tile, w.mask, mr);
      }
      return;
    case TopkPrecision::int8: {
      const std::int8_t* ip = i8_.data() + jr * d4_ * kPanel * 4;
      const std::int32_t* corr = icorr_.data() + jr * kPanel;
      const float* iscale = iscale_.data() + jr * kPanel;
      const float* qscale = w.qscale.data() + qpi * mr;
      if (w.amx) {
        kern.i8_amx_tile(w.qi.data() + qpi * mr * w.kq, ip, corr, iscale, bias, qscale, d4_, thr, w.tile, w.mask,
                         mr);
      } else {
        kern.i8_tile(w.qi.data() + qpi * d4_ * mr * 4, ip, corr, iscale, bias, qscale, d4_, thr, w.tile, w.mask,
                     mr);
      }
      return;
    }
  }
}

// Scores rows [q0, q0 + nrows) of Q against every panel (chunks == null) or against the chunks
// of kChunk panels handed out by *chunks (ascending, shared between threads), and leaves each
// row's candidates in w.heap (row r: w.heap[r*(cap+kSlack) ..], w.hn[r] entries, a superset of
// its best kc).
void TopkIndex::scan_block(Work& w, const float* Q, index_t q_stride, index_t q0, int nrows,
                           const CsrView<float>* exclude, index_t kc,
                           std::atomic<index_t>* chunks, int mr) const {
  using topk_detail::kInf;
  const TopkKernels kern = topk_kernels();
  AEREC_CHECK_ARG(topk_detail::panel_rows(kern, opt_.precision) == mr,
                  "instruction set changed during a search");
  const index_t d = d_;
  const index_t nqp = (nrows + mr - 1) / mr;
  const index_t rows_pad = nqp * mr;
  const TopkPrecision prec = opt_.precision;

  pack_queries(w, Q, q_stride, q0, nrows, mr);
  const bool prune = opt_.prune;
  if (prune) {
    w.qnorm.assign(static_cast<std::size_t>(rows_pad), 0.0f);
    for (int r = 0; r < nrows; ++r) {
      const double qn = topk_detail::scored_norm(Q + (q0 + r) * q_stride, d, prec, true);
      w.qnorm[r] = std::nextafter(static_cast<float>(qn), kInf);
    }
  }
  w.thr.assign(static_cast<std::size_t>(rows_pad), kInf);
  std::fill(w.thr.begin(), w.thr.begin() + nrows, -kInf);
  const index_t cap = topk_detail::buffer_cap(kc);
  w.heap.resize(static_cast<std::size_t>(nrows * (cap + kSlack)));
  w.hn.assign(static_cast<std::size_t>(nrows), 0);
  w.active.assign(static_cast<std::size_t>(nqp), 1);

  // Exclusions of this block, sorted and deduplicated per row, each row's list ended by a
  // sentinel (INT32_MAX, above every slot) so the cursor walk needs no end test.
  constexpr std::int32_t kNoSlot = std::numeric_limits<std::int32_t>::max();
  w.exoff.assign(static_cast<std::size_t>(nrows + 1), 0);
  w.ex.clear();
  for (int r = 0; r < nrows; ++r) {
    const std::size_t start = w.ex.size();
    if (exclude != nullptr) {
      const std::int64_t a = exclude->indptr[q0 + r], b = exclude->indptr[q0 + r + 1];
      // Stored as packed slot numbers (pruning permutes the items), sorted, so each row walks
      // its list with a cursor as the panels go by.
      if (slot_of_.empty()) {
        w.ex.insert(w.ex.end(), exclude->indices + a, exclude->indices + b);
      } else {
        for (std::int64_t t = a; t < b; ++t) w.ex.push_back(slot_of_[exclude->indices[t]]);
      }
      std::sort(w.ex.begin() + start, w.ex.end());
      w.ex.erase(std::unique(w.ex.begin() + start, w.ex.end()), w.ex.end());
    }
    w.ex.push_back(kNoSlot);
    w.exoff[r + 1] = static_cast<index_t>(w.ex.size());
  }
  w.excur.assign(w.exoff.begin(), w.exoff.end() - 1);
  w.exnext.resize(static_cast<std::size_t>(nrows));
  for (int r = 0; r < nrows; ++r) w.exnext[r] = w.ex[w.exoff[r]];

  const float slack_rel = static_cast<float>(d + 4) * 1.2e-7f;
  index_t jr = 0, jr_end = chunks == nullptr ? panels_ : 0;
  for (;;) {
    if (jr == jr_end) {
      if (chunks == nullptr) break;
      jr = chunks->fetch_add(1, std::memory_order_relaxed) * topk_detail::kChunk;
      if (jr >= panels_) break;
      jr_end = std::min(panels_, jr + topk_detail::kChunk);
    }
    bool any = false;
    for (index_t qpi = 0; qpi < nqp; ++qpi) {
      if (!w.active[qpi]) continue;
      float* thr = w.thr.data() + qpi * mr;
      if (prune) {
        // Cauchy-Schwarz: score <= |q| max|x| + max b over this panel (and, since panels are
        // ordered by decreasing norm, |q| |x_jr| + max b over every later panel), widened by
        // the fp32 rounding error of a d-term dot product.
        bool done = true, skip = true;
        const float pn = pnorm_[jr], pb = pbmax_[jr], sb = sbmax_[jr];
        for (int i = 0; i < mr; ++i) {
          const float base = w.qnorm[qpi * mr + i] * pn;
          const float bp = base + pb + slack_rel * (base + std::fabs(pb)) + 1e-30f;
          if (!(bp < thr[i])) {
            // The buffer's threshold lags (it moves at compactions only): when it is what keeps
            // this panel alive and the buffer has grown well past kc, tighten it first.
            const index_t r = qpi * mr + i;
            if (r < nrows && w.hn[r] >= kc + std::max<index_t>(kc / 2, 8)) {
              Entry* h = w.heap.data() + r * (cap + kSlack);
              thr[i] = topk_detail::entry_score(topk_detail::select_best(kern, h, w.hn[r], kc, w.seltmp));
              w.hn[r] = kc;
            }
          }
          const float bs = base + sb + slack_rel * (base + std::fabs(sb)) + 1e-30f;
          if (!(bs < thr[i])) done = false;
          if (!(bp < thr[i])) skip = false;
        }
        if (done) {
          w.active[qpi] = 0;
          continue;
        }
        any = true;
        if (skip) continue;
      } else {
        any = true;
      }
      score_tile(w, kern, qpi, jr, mr, thr);
      for (int i = 0; i < mr; ++i) {
        std::uint32_t m = w.mask[i];
        const index_t r = qpi * mr + i;
        if (m == 0 || r >= nrows) continue;
        Entry* h = w.heap.data() + r * (cap + kSlack);
        index_t& hn = w.hn[r];
        const std::int32_t lo = static_cast<std::int32_t>(jr * kPanel);
        if (w.exnext[r] < lo + kPanel) {
          // Excluded slots of this panel (ascending panels per row, so a cursor suffices;
          // exnext keeps the common "none here" test on one small array).
          // One pass: the slots of earlier panels (passed while this row had no survivor) and
          // of this one; the list ends with a sentinel (scan_block), so no end test.
          index_t cur = w.excur[r];
          const std::int32_t* ex = w.ex.data();
          for (; ex[cur] < lo + kPanel; ++cur)
            if (ex[cur] >= lo) m &= ~(1u << (ex[cur] - lo));
          w.excur[r] = cur;
          w.exnext[r] = ex[cur];
        }
        // Padding slots (last panel only) never enter.
        if (jr == panels_ - 1 && n_ % kPanel != 0) m &= (1u << (n_ % kPanel)) - 1u;
        if (m == 0) continue;
        if (kern.append != nullptr) {
          kern.append(w.tile + i * kPanel, m, perm_.data() + jr * kPanel, h + hn, &hn);
        } else {
          const float* t = w.tile + i * kPanel;
          while (m != 0) {
            const int b = __builtin_ctz(m);
            m &= m - 1;
            h[hn++] = topk_detail::make_entry(t[b], perm_[jr * kPanel + b]);
          }
        }
        if (hn >= cap) {
          thr[i] = topk_detail::entry_score(topk_detail::select_best(kern, h, hn, kc, w.seltmp));
          hn = kc;
        }
      }
    }
    if (!any) break;
    ++jr;
  }
}

// Re-scores the candidates of a whole query block at once, item by item: each row is cut to its
// best kc, the (row, position) pairs are bucketed by item id (a counting sort), and each fp32 item
// row is read once, in ascending order, for every query of the block that kept it. Per-row
// re-scoring reads kc scattered rows per query instead (W1: 200 x 800 bytes from a 16 MB matrix,
// memory latency bound). The scores are the per-row path's, bit for bit (same dot, same bias add).
void TopkIndex::rescore_block(Work& w, const float* Q, index_t q_stride, index_t q0, int nrows,
                              index_t kc) const {
  const TopkKernels kern = topk_kernels();
  const index_t stride = topk_detail::buffer_cap(kc) + kSlack;
  const index_t d = d_;
  w.bstart.assign(static_cast<std::size_t>(n_ + 1), 0);
  std::uint32_t total = 0;
  for (int r = 0; r < nrows; ++r) {
    Entry* h = w.heap.data() + r * stride;
    if (w.hn[r] > kc) {
      topk_detail::select_best(kern, h, w.hn[r], kc, w.seltmp);
      w.hn[r] = kc;
    }
    for (index_t t = 0; t < w.hn[r]; ++t) ++w.bstart[topk_detail::entry_id(h[t]) + 1];
    total += static_cast<std::uint32_t>(w.hn[r]);
  }
  for (index_t j = 0; j < n_; ++j) w.bstart[j + 1] += w.bstart[j];
  w.bpos.resize(total);
  for (int r = 0; r < nrows; ++r) {
    const Entry* h = w.heap.data() + r * stride;
    for (index_t t = 0; t < w.hn[r]; ++t)
      w.bpos[w.bstart[topk_detail::entry_id(h[t])]++] = static_cast<std::uint32_t>(r * stride + t);
  }
  // bstart[j] now ends bucket j (= starts bucket j + 1).
  const float* bias = has_bias_ ? bias_.data() : nullptr;
  std::uint32_t b0 = 0;
  for (index_t j = 0; j < n_; ++j) {
    const std::uint32_t b1 = w.bstart[j];
    if (b1 == b0) continue;
    const float* x = rows_.data() + j * d;
    const std::int32_t id = static_cast<std::int32_t>(j);
    const float bj = bias != nullptr ? bias[j] : 0.0f;
    std::uint32_t u = b0;
    if (kern.dot4 != nullptr) {
      // Four queries per pass over the row: independent accumulator chains, the row read once.
      for (; u + 4 <= b1; u += 4) {
        const float* qs[4];
        float s[4];
        for (int i = 0; i < 4; ++i) qs[i] = Q + (q0 + static_cast<index_t>(w.bpos[u + i]) / stride) * q_stride;
        kern.dot4(qs, x, d, s);
        for (int i = 0; i < 4; ++i) w.heap[w.bpos[u + i]] = topk_detail::make_entry(s[i] + bj, id);
      }
    }
    for (; u < b1; ++u) {
      const std::uint32_t pos = w.bpos[u];
      const index_t r = static_cast<index_t>(pos) / stride;
      w.heap[pos] = topk_detail::make_entry(kern.dot(Q + (q0 + r) * q_stride, x, d) + bj, id);
    }
    b0 = b1;
  }
}

namespace {
// Sorts candidates (re-scoring them first on the compressed paths) and writes one result row.
void finish_row(std::vector<Entry>& c, const float* q, const float* rows, const float* bias,
                index_t d, bool rescore, const TopkKernels& kern, index_t kc, index_t kk,
                std::int32_t* ids, float* scores, std::vector<Entry>& tmp) {
  if (rescore) {
    if (static_cast<index_t>(c.size()) > kc) {
      topk_detail::select_best(kern, c.data(), static_cast<index_t>(c.size()), kc, tmp);
      c.resize(static_cast<std::size_t>(kc));
    }
    const std::size_t nc = c.size();
    const index_t lines = (d * static_cast<index_t>(sizeof(float)) + 63) / 64;
    for (std::size_t t = 0; t < nc; ++t) {
      // Candidate rows are scattered over the item matrix: prefetch a few ahead.
      if (t + 6 < nc) {
        const char* nx = reinterpret_cast<const char*>(rows + static_cast<index_t>(topk_detail::entry_id(c[t + 6])) * d);
        for (index_t u = 0; u < lines; ++u) __builtin_prefetch(nx + 64 * u);
      }
      auto& e = c[t];
      const std::int32_t id = topk_detail::entry_id(e);
      const float* x = rows + static_cast<index_t>(id) * d;
      e = topk_detail::make_entry(kern.dot(q, x, d) + (bias != nullptr ? bias[id] : 0.0f), id);
    }
  }
  const index_t nv = std::min<index_t>(kk, static_cast<index_t>(c.size()));
  if (static_cast<index_t>(c.size()) > nv) {
    topk_detail::select_best(kern, c.data(), static_cast<index_t>(c.size()), nv, tmp);
    c.resize(static_cast<std::size_t>(nv));
  }
  std::sort(c.begin(), c.end(), topk_detail::BetterCmp{});
  for (index_t j = 0; j < nv; ++j) {
    ids[j] = topk_detail::entry_id(c[j]);
    scores[j] = topk_detail::entry_score(c[j]);
  }
  for (index_t j = nv; j < kk; ++j) {
    ids[j] = -1;
    scores[j] = -topk_detail::kInf;
  }
}
}  // namespace

index_t topk_candidates(index_t k, index_t n, double rescore) {
  const double c = std::ceil(static_cast<double>(k) * rescore - 1e-6);
  if (!(c < static_cast<double>(n))) return n;
  return std::max<index_t>(std::min(k, n), static_cast<index_t>(c));
}

void TopkIndex::search(MatrixView<const float> queries, index_t k, const CsrView<float>* exclude,
                       std::int32_t* ids, float* scores, int num_threads) const {
  AEREC_CHECK_ARG(queries.cols == d_, "queries have " + std::to_string(queries.cols) +
                                          " columns but the items have " + std::to_string(d_));
  AEREC_CHECK_ARG(k >= 1, "k must be >= 1");
  const index_t m = queries.rows;
  if (m == 0) return;
  AEREC_CHECK_ARG(queries.stride >= d_, "query row stride must be >= d");
  if (exclude != nullptr) {
    AEREC_CHECK_ARG(exclude->rows == m, "exclude must have one row per query");
    for (index_t r = 0; r < m; ++r)
      AEREC_CHECK_ARG(exclude->indptr[r] <= exclude->indptr[r + 1],
                      "exclude indptr must be non-decreasing");
    for (std::int64_t t = exclude->indptr[0]; t < exclude->indptr[m]; ++t)
      AEREC_CHECK_INDEX(exclude->indices[t] >= 0 && exclude->indices[t] < n_,
                        "excluded item id " + std::to_string(exclude->indices[t]) +
                            " is out of range [0, " + std::to_string(n_) + ")");
  }
  const index_t kk = std::min(k, n_);
  const bool compressed = opt_.precision != TopkPrecision::fp32;
  const bool rescore = compressed && opt_.rescore > 0;  // rescore = 0: compressed scores
  const index_t kc = rescore ? topk_candidates(k, n_, opt_.rescore) : kk;
  const int T = resolve_threads(num_threads);
  const TopkKernels kern = topk_kernels();
  const int mr = topk_detail::panel_rows(kern, opt_.precision);
  const index_t nqp = (m + mr - 1) / mr;
  const float* rows = rescore ? rows_.data() : nullptr;
  const float* bias = has_bias_ ? bias_.data() : nullptr;
  const index_t cap = topk_detail::buffer_cap(kc);
  ExceptionSlot slot;

  if (T > 1 && nqp < 2 * T && panels_ >= 2) {
    // Few queries: the threads share the item panels (chunks handed out in ascending order),
    // each keeps its own candidate buffers, and the buffers are merged per query.
    const int Te = static_cast<int>(std::min<index_t>(T, panels_));
    std::vector<Work> w(static_cast<std::size_t>(Te));
    std::atomic<index_t> chunks{0};
#pragma omp parallel num_threads(Te)
    {
#ifdef AEREC_OPENMP
      const int t = omp_get_thread_num();
#else
      const int t = 0;
#endif
      slot.run([&] {
        scan_block(w[t], queries.data, queries.stride, 0, static_cast<int>(m), exclude, kc,
                   &chunks, mr);
      });
#pragma omp barrier
#pragma omp for schedule(static)
      for (index_t r = 0; r < m; ++r) {
        slot.run([&] {
          std::vector<Entry>& c = w[t].cand;
          c.clear();
          for (int u = 0; u < Te; ++u)
            c.insert(c.end(), w[u].heap.begin() + r * (cap + kSlack), w[u].heap.begin() + r * (cap + kSlack) + w[u].hn[r]);
          finish_row(c, queries.data + r * queries.stride, rows, bias, d_, rescore, kern, kc, kk,
                     ids + r * kk, scores + r * kk, w[t].seltmp);
        });
      }
    }
    slot.rethrow();
    return;
  }

  // Many queries: threads take query blocks. A block's packed queries stay in L2 while the item
  // panels stream past; the block is small enough that its candidate buffers stay modest.
  const index_t qbytes = compressed ? (opt_.precision == TopkPrecision::int8 ? d4_ * 4 : d2_ * 4)
                                    : d_ * 4;
  const index_t l2cap = std::max<index_t>(1, (512 * 1024) / qbytes / mr) * mr;
  const index_t heapcap =
      std::max<index_t>(1, (8 * 1024 * 1024) / ((cap + kSlack) * static_cast<index_t>(sizeof(Entry))) / mr) * mr;
  // Several blocks per thread balance the load (dynamic schedule) unless the items are large
  // enough that streaming them once more per block costs more than the imbalance.
  const std::size_t item_bytes = packed_.size() * 4 + bf16_.size() * 2 + i8_.size();
  const index_t parts = T * (item_bytes <= (std::size_t{64} << 20) ? 4 : 1);
  const index_t per_thread = ((m + parts - 1) / parts + mr - 1) / mr * mr;
  const index_t MC = std::max<index_t>(mr, std::min({l2cap, heapcap, per_thread}));
  const index_t nblocks = (m + MC - 1) / MC;
#pragma omp parallel num_threads(T)
  {
    Work w;
#pragma omp for schedule(dynamic, 1)
    for (index_t blk = 0; blk < nblocks; ++blk) {
      slot.run([&] {
        const index_t q0 = blk * MC;
        const int nrows = static_cast<int>(std::min(MC, m - q0));
        scan_block(w, queries.data, queries.stride, q0, nrows, exclude, kc, nullptr, mr);
        // Re-score the block item by item when its candidates outnumber the items' buckets
        // (the counting sort is O(n) per block).
        const bool batched = rescore && static_cast<index_t>(nrows) * kc >= n_;
        if (batched) rescore_block(w, queries.data, queries.stride, q0, nrows, kc);
        for (int r = 0; r < nrows; ++r) {
          w.cand.assign(w.heap.begin() + r * (cap + kSlack), w.heap.begin() + r * (cap + kSlack) + w.hn[r]);
          const index_t q = q0 + r;
          finish_row(w.cand, queries.data + q * queries.stride, rows, bias, d_, rescore && !batched,
                     kern, kc, kk, ids + q * kk, scores + q * kk, w.seltmp);
        }
      });
    }
  }
  slot.rethrow();
}

}  // namespace aerec::cpu

namespace aerec::cpu {

void TopkIndex::score_rows(MatrixView<const float> queries, float* out, index_t ldo,
                           int num_threads) const {
  AEREC_CHECK_ARG(queries.cols == d_, "queries have " + std::to_string(queries.cols) +
                                          " columns but the items have " + std::to_string(d_));
  AEREC_CHECK_ARG(ldo >= n_, "output row stride must be >= the item count");
  const index_t m = queries.rows;
  if (m == 0) return;
  AEREC_CHECK_ARG(queries.stride >= d_, "query row stride must be >= d");
  const int T = resolve_threads(num_threads);
  const TopkKernels kern = topk_kernels();
  const int mr = topk_detail::panel_rows(kern, opt_.precision);
  const TopkPrecision prec = opt_.precision;
  // Query blocks small enough to stay in L2 while the item panels stream past, and several per
  // thread (dynamic schedule) for balance.
  const index_t qbytes = prec == TopkPrecision::int8 ? d4_ * 4 : prec == TopkPrecision::bf16 ? d2_ * 4 : d_ * 4;
  const index_t l2cap = std::max<index_t>(1, (256 * 1024) / qbytes / mr) * mr;
  const index_t parts = static_cast<index_t>(T) * 4;
  const index_t per = ((m + parts - 1) / parts + mr - 1) / mr * mr;
  const index_t MC = std::max<index_t>(mr, std::min(l2cap, per));
  const index_t nblocks = (m + MC - 1) / MC;
  const bool identity = slot_of_.empty();
  ExceptionSlot slot;
#pragma omp parallel num_threads(T)
  {
    Work w;
    float thr[topk_detail::kMaxMr];
    for (float& t : thr) t = topk_detail::kInf;
#pragma omp for schedule(dynamic, 1)
    for (index_t blk = 0; blk < nblocks; ++blk) {
      slot.run([&] {
        const index_t q0 = blk * MC;
        const int nrows = static_cast<int>(std::min(MC, m - q0));
        pack_queries(w, queries.data, queries.stride, q0, nrows, mr);
        const index_t nqp = (nrows + mr - 1) / mr;
        for (index_t jr = 0; jr < panels_; ++jr) {
          const index_t cnt = std::min<index_t>(kPanel, n_ - jr * kPanel);
          for (index_t qpi = 0; qpi < nqp; ++qpi) {
            score_tile(w, kern, qpi, jr, mr, thr);
            for (int i = 0; i < mr; ++i) {
              const index_t r = qpi * mr + i;
              if (r >= nrows) break;
              float* o = out + (q0 + r) * ldo;
              const float* t = w.tile + i * kPanel;
              if (identity) {
                std::memcpy(o + jr * kPanel, t, sizeof(float) * static_cast<std::size_t>(cnt));
              } else {
                for (index_t b = 0; b < cnt; ++b) o[perm_[jr * kPanel + b]] = t[b];
              }
            }
          }
        }
      });
    }
  }
  slot.rethrow();
}

}  // namespace aerec::cpu

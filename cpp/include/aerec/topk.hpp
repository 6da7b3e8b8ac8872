// Top-k maximum inner product search over a fixed set of item vectors.
//
//   score(q, j) = <q, x_j> + b_j          (cosine: the caller normalises q and x first)
//
// The index packs the items once (panels of 32 items, kernel-friendly layout) and scores tiles
// of (query micro-panel x item panel) with a register-tiled micro-kernel per instruction set;
// each tile is compared against the running k-th score of every query with one vector compare,
// and only the survivors reach the per-query candidate buffer (cut back to the best k with a
// vectorised quickselect whenever it fills). The n_queries x n_items score matrix is never
// materialised: scratch is O(threads x (query block x d + query block x k)).
//
// Precisions: fp32 (exact), bf16 and int8 (approximate scoring of every item, the best
// k x rescore candidates re-scored in fp32 from a row-major fp32 copy, so the returned scores are
// fp32 inner products). rescore = 0 keeps no fp32 copy: the compressed scores are returned (the
// index of a compressed model's decoder, which may also be built from already-quantised items). Norm-bound pruning orders items by norm and skips panels whose
// Cauchy-Schwarz bound |q| max|x| + max b (widened by the fp32 rounding error) cannot beat the
// current k-th score: exact; on the compressed paths the bound uses the norms of the compressed
// vectors, so the candidate set does not change.
//
// bf16: fp32 sums of exact bf16 x bf16 products (queries rounded to nearest even), by the AMX
// tile (tdpbf16ps, 32 queries x 32 items, reading the packed pair layout in place) at the amx
// level, the vdpbf16ps tile on AMD AVX512-BF16 CPUs, or the fp32 FMA tile on bf16 panels widened
// once per query block (Intel without AMX, CPUs without AVX512-BF16); the sums' order differs
// between them, so scores agree to fp32 rounding (~d x 2^-24 x sum |products|), not bit for bit.
//
// int8: items are 8-bit (q in [-127, 127], scale max|x| / 127 per item); queries (and
// CompressedLinear activations) are 7-bit (q in [-63, 63], scale max|x| / 63 per query), packed as
// u8 = q + 64, so the AVX2 tile can use vpmaddubsw (32 exact u8 x s8 products per instruction)
// and every instruction-set level (AMX tdpbusd at the amx level included) returns the same bits: a
// model file scores alike on every CPU.
//
// Result order: descending score, ties broken by lower item id. Rows with fewer than k valid
// items (exclusions) are padded with id -1 and score -inf.
#pragma once
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "aerec/topk_kernels.hpp"
#include "aerec/view.hpp"

namespace aerec::cpu {

enum class TopkPrecision : int { fp32 = 0, bf16 = 1, int8 = 2 };

struct TopkOptions {
  TopkPrecision precision = TopkPrecision::fp32;
  double rescore = 1.25;  // compressed paths: candidates kept per query = ceil(k * rescore) (at
                       // most n; 0 or >= 1, fractions allowed); 0: no fp32 copy, the compressed
                       // scores are returned
  bool prune = false;  // norm-bound pruning (compressed paths: norms of the compressed vectors)
};

// Items already quantised the way the index quantises them (pack_layer in Python): int8 values
// (n x d, row-major, in [-127, 127]) with one positive scale per item, or bf16 bits (n x d).
struct QuantisedItems {
  TopkPrecision precision = TopkPrecision::int8;  // int8 or bf16
  index_t n = 0, d = 0;
  const std::int8_t* i8 = nullptr;
  const float* i8_scale = nullptr;
  const std::uint16_t* bf16 = nullptr;
};

class TopkIndex {
 public:
  static constexpr int kPanel = 32;  // items per packed panel

  // items: n x d float32 (finite; n >= 1, d >= 1, n < 2^31); bias: length n, or null.
  TopkIndex(MatrixView<const float> items, const float* bias, const TopkOptions& opt,
            int num_threads = 0);

  // From quantised items: opt.precision must match q.precision and opt.rescore must be 0 (there
  // is no fp32 copy to re-score with). Same scores as the float constructor on the items that
  // quantise to q.
  TopkIndex(const QuantisedItems& q, const float* bias, const TopkOptions& opt, int num_threads = 0);

  // Every item's score of every query (the index's own precision, bias included): out is
  // m x n with row stride ldo >= n. The forward pass of a compressed dense layer.
  void score_rows(MatrixView<const float> queries, float* out, index_t ldo, int num_threads = 0) const;

  // queries: m x d. exclude: CSR with m rows (item ids in [0, n), any order, duplicates ok),
  // or null. ids / scores: m x min(k, n), row-major, preallocated. k >= 1.
  void search(MatrixView<const float> queries, index_t k, const CsrView<float>* exclude,
              std::int32_t* ids, float* scores, int num_threads = 0) const;

  index_t size() const { return n_; }
  index_t dim() const { return d_; }
  const TopkOptions& options() const { return opt_; }
  bool has_bias() const { return has_bias_; }
  std::size_t memory_usage() const;  // bytes owned by the index
  // Original items (n x d, row-major) and bias (n), reconstructed exactly from the index
  // (rescore = 0 on a compressed index: the dequantised items).
  void export_items(float* out) const;
  void export_bias(float* out) const;

 private:
  struct Work;
  void build(const float* items, index_t stride, const QuantisedItems* q, const float* bias, int T);
  void pack_queries(Work& w, const float* Q, index_t q_stride, index_t q0, int nrows, int mr) const;
  const float* widened_panel(Work& w, index_t P) const;
  void score_tile(Work& w, const TopkKernels& kern, index_t qpi, index_t jr, int mr, const float* thr) const;
  void scan_block(Work& w, const float* Q, index_t q_stride, index_t q0, int nrows,
                  const CsrView<float>* exclude, index_t kc, std::atomic<index_t>* chunks,
                  int mr) const;
  void rescore_block(Work& w, const float* Q, index_t q_stride, index_t q0, int nrows,
                     index_t kc) const;

  index_t n_ = 0, d_ = 0, panels_ = 0;
  index_t d2_ = 0, d4_ = 0;  // d rounded up to pairs (bf16) / quads (int8)
  bool has_bias_ = false;
  TopkOptions opt_;
  std::vector<float> packed_;          // fp32: panels x d x 32
  std::vector<std::uint16_t> bf16_;    // bf16: panels x d2 x 32 x 2
  std::vector<std::int8_t> i8_;        // int8: panels x d4 x 32 x 4
  std::vector<float> iscale_;          // int8: per-item scale (panels*32)
  std::vector<std::int32_t> icorr_;    // int8: 64 * row sum of the int8 item (panels*32)
  std::vector<float> rows_;            // compressed: n x d fp32 rows for re-scoring
  std::vector<float> pbias_;           // panels x 32 (padding 0)
  std::vector<float> bias_;            // n (original order)
  std::vector<std::int32_t> perm_;     // panels*32: packed slot -> item id (-1 padding)
  std::vector<std::int32_t> slot_of_;  // prune: item id -> packed slot (empty: identity)
  std::vector<float> pnorm_;           // prune: max item norm of each panel (rounded up)
  std::vector<float> pbmax_;           // prune: max bias of each panel
  std::vector<float> sbmax_;           // prune: max bias of this and every later panel
};

// Candidates kept per query on a compressed path that re-scores: ceil(k * rescore), read with a
// 1e-6 tolerance so that decimal fractions land where they read (100 x 1.1 = 110, not 111), at
// least min(k, n) and at most n. The NumPy reference (_numpy_topk.candidates) computes the same.
index_t topk_candidates(index_t k, index_t n, double rescore);

// Per-ISA tile kernels and topk_kernels(): topk_kernels.hpp (declarations only).

}  // namespace aerec::cpu

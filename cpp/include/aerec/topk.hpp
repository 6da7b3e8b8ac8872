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
// fp32 inner products). Norm-bound pruning orders items by norm and skips panels whose
// Cauchy-Schwarz bound |q| max|x| + max b (widened by the fp32 rounding error) cannot beat the
// current k-th score: exact; on the compressed paths the bound uses the norms of the compressed
// vectors, so the candidate set does not change.
//
// Result order: descending score, ties broken by lower item id. Rows with fewer than k valid
// items (exclusions) are padded with id -1 and score -inf.
#pragma once
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "aerec/view.hpp"

namespace aerec::cpu {

enum class TopkPrecision : int { fp32 = 0, bf16 = 1, int8 = 2 };

struct TopkOptions {
  TopkPrecision precision = TopkPrecision::fp32;
  int rescore = 4;     // compressed paths: candidates kept per query = k * rescore
  bool prune = false;  // norm-bound pruning (compressed paths: norms of the compressed vectors)
};

class TopkIndex {
 public:
  static constexpr int kPanel = 32;  // items per packed panel

  // items: n x d float32 (finite; n >= 1, d >= 1, n < 2^31); bias: length n, or null.
  TopkIndex(MatrixView<const float> items, const float* bias, const TopkOptions& opt,
            int num_threads = 0);

  // queries: m x d. exclude: CSR with m rows (item ids in [0, n), any order, duplicates ok),
  // or null. ids / scores: m x min(k, n), row-major, preallocated. k >= 1.
  void search(MatrixView<const float> queries, index_t k, const CsrView<float>* exclude,
              std::int32_t* ids, float* scores, int num_threads = 0) const;

  index_t size() const { return n_; }
  index_t dim() const { return d_; }
  const TopkOptions& options() const { return opt_; }
  bool has_bias() const { return has_bias_; }
  std::size_t memory_usage() const;  // bytes owned by the index
  // Original items (n x d, row-major) and bias (n), reconstructed exactly from the index.
  void export_items(float* out) const;
  void export_bias(float* out) const;

 private:
  struct Work;
  void scan_block(Work& w, const float* Q, index_t q_stride, index_t q0, int nrows,
                  const CsrView<float>* exclude, index_t kc, std::atomic<index_t>* chunks,
                  int mr) const;

  index_t n_ = 0, d_ = 0, panels_ = 0;
  index_t d2_ = 0, d4_ = 0;  // d rounded up to pairs (bf16) / quads (int8)
  bool has_bias_ = false;
  TopkOptions opt_;
  std::vector<float> packed_;          // fp32: panels x d x 32
  std::vector<std::uint16_t> bf16_;    // bf16: panels x d2 x 32 x 2
  std::vector<std::int8_t> i8_;        // int8: panels x d4 x 32 x 4
  std::vector<float> iscale_;          // int8: per-item scale (panels*32)
  std::vector<std::int32_t> icorr_;    // int8: 128 * row sum of the int8 item (panels*32)
  std::vector<float> rows_;            // compressed: n x d fp32 rows for re-scoring
  std::vector<float> pbias_;           // panels x 32 (padding 0)
  std::vector<float> bias_;            // n (original order)
  std::vector<std::int32_t> perm_;     // panels*32: packed slot -> item id (-1 padding)
  std::vector<std::int32_t> slot_of_;  // prune: item id -> packed slot (empty: identity)
  std::vector<float> pnorm_;           // prune: max item norm of each panel (rounded up)
  std::vector<float> pbmax_;           // prune: max bias of each panel
  std::vector<float> sbmax_;           // prune: max bias of this and every later panel
};

// Per-ISA kernels (defined in src/simd/topk_<isa>.cpp, each in its own namespace).
// Tiles are MR queries x 32 items; `tile` receives the scores (MR x 32, row-major) and
// mask[i] bit b is set when tile[i][b] >= thr[i].
//   fp32: qp = d x MR (query p of row i at qp[p*MR+i]); ip = d x 32; bias = 32.
//   bf16: qp = d2 x MR x 2; ip = d2 x 32 x 2 (bf16 bits).
//   int8: qp = d4 x MR x 4 (uint8 = q + 128); ip = d4 x 32 x 4 (int8);
//         score = (acc - corr) * iscale * qscale[i] + bias.
struct TopkKernels {
  int mr;
  void (*fp32_tile)(const float* qp, const float* ip, const float* bias, index_t d,
                    const float* thr, float* tile, std::uint32_t* mask);
  void (*bf16_tile)(const std::uint16_t* qp, const std::uint16_t* ip, const float* bias,
                    index_t d2, const float* thr, float* tile, std::uint32_t* mask, int mr);
  void (*i8_tile)(const std::uint8_t* qp, const std::int8_t* ip, const std::int32_t* corr,
                  const float* iscale, const float* bias, const float* qscale, index_t d4,
                  const float* thr, float* tile, std::uint32_t* mask, int mr);
  float (*dot)(const float* q, const float* x, index_t d);
  // Leaves the kc largest of a[0..n) (unique keys) in a[0..kc); tmp holds 2n + 16 keys.
  // Null: the portable std::nth_element.
  void (*select)(std::uint64_t* a, index_t n, index_t kc, std::uint64_t* tmp);
  // Appends key(t[b], ids[b]) for every set bit b of mask to out, adds the count to *n (keys:
  // order-preserving score bits << 32 | ~id); may write 8 keys past the last one. Null: a
  // portable loop.
  void (*append)(const float* t, std::uint32_t mask, const std::int32_t* ids, std::uint64_t* out,
                 index_t* n);
};

namespace scalar {
void topk_fp32_tile(const float*, const float*, const float*, index_t, const float*, float*,
                    std::uint32_t*);
void topk_bf16_tile(const std::uint16_t*, const std::uint16_t*, const float*, index_t,
                    const float*, float*, std::uint32_t*, int);
void topk_i8_tile(const std::uint8_t*, const std::int8_t*, const std::int32_t*, const float*,
                  const float*, const float*, index_t, const float*, float*, std::uint32_t*, int);
float topk_dot(const float*, const float*, index_t);
constexpr int kTopkMr = 4;
}  // namespace scalar
namespace avx2 {
void topk_fp32_tile(const float*, const float*, const float*, index_t, const float*, float*,
                    std::uint32_t*);
float topk_dot(const float*, const float*, index_t);
constexpr int kTopkMr = 3;
}  // namespace avx2
namespace avx512 {
void topk_fp32_tile(const float*, const float*, const float*, index_t, const float*, float*,
                    std::uint32_t*);
float topk_dot(const float*, const float*, index_t);
void topk_select(std::uint64_t*, index_t, index_t, std::uint64_t*);
void topk_append(const float*, std::uint32_t, const std::int32_t*, std::uint64_t*, index_t*);
constexpr int kTopkMr = 12;
}  // namespace avx512
namespace avx512vnni {
void topk_bf16_tile(const std::uint16_t*, const std::uint16_t*, const float*, index_t,
                    const float*, float*, std::uint32_t*, int);
void topk_i8_tile(const std::uint8_t*, const std::int8_t*, const std::int32_t*, const float*,
                  const float*, const float*, index_t, const float*, float*, std::uint32_t*, int);
}  // namespace avx512vnni

// The kernels the active instruction-set level uses (re-read on each call, so set_isa_cap
// takes effect at once).
TopkKernels topk_kernels();

}  // namespace aerec::cpu

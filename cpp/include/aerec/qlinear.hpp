// One compressed linear layer  y = act(x @ W + b)  (W: n_in x n_out), as packed by
// aerec.backends._quant.pack_layer (python/aerec/backends/_compressed.py states the maths, which
// this file implements):
//   - input "dense" (hidden layers, decoders), not sparse: a TopkIndex over the output channels
//     (rows of W^T) in fp32 / bf16 / int8 with no fp32 copy (rescore = 0 for bf16 / int8). forward
//     = TopkIndex::score_rows (the TopK tiles: int8 on AMX tdpbusd at the amx level, else VNNI
//     vpdpbusd / AVX2 vpmaddubsw (bit-identical scores on every level); bf16 on AMX
//     tdpbf16ps at the amx level, else vdpbf16ps (AMD) or bf16 panels widened to the fp32 FMA
//     tile (Intel, CPUs without AVX512-BF16); FMA fp32) + activation; topk = TopkIndex::search
//     (threshold filtered, in-kernel exclusion).
//   - input "dense", sparse: CSC by output column, the input ids repacked at construction as
//     activation-row offsets (qlinear_kernels.hpp); activations transposed in 64-byte aligned
//     blocks of kQLanes rows, each stored weight one broadcast multiply-add over the block's lanes;
//     topk fuses scale, bias and the per-row threshold filter into the kernel (csc_filter), so
//     only candidate columns leave registers, and merges them into per-row candidate lists.
//   - input "csr" (first layers fed a sparse history): rows by input (dense rows or CSR), a
//     history gathers (dense) or scatters (sparse) its rows; int8 sums the integer rows, then
//     scales per output channel. Sparse rows are repacked at construction (build_hybrid): output
//     columns renumbered by descending kept-entry count, and each row split into a dense prefix
//     (the renumbered columns [0, P_i), zeros stored, one vector axpy) and a sparse tail (scattered),
//     P_i chosen per row by a cost model within the CSR's bytes of values and ids; scores are accumulated in the
//     renumbered order and put back in the original order before the epilogue.
// Immutable after construction; every method is const and thread-safe (per-call workspaces).
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "aerec/activation.hpp"
#include "aerec/topk.hpp"
#include "aerec/view.hpp"

namespace aerec::cpu {

// Views of pack_layer's arrays (copied by the constructor).
struct QlinearArrays {
  index_t n_in = 0, n_out = 0;
  int precision = 0;        // 0 fp32, 1 bf16, 2 int8
  bool sparse = false;
  bool csr_input = false;   // input "csr": rows by input
  const float* bias = nullptr;   // n_out, or null
  const float* scale = nullptr;  // int8: n_out per-output-channel scales
  const void* W = nullptr;       // dense: (n_out x n_in) for input dense, (n_in x n_out) for csr
  const std::int64_t* indptr = nullptr;  // sparse: outer + 1
  const void* indices = nullptr;         // sparse: uint16 (idx16) or int32
  bool idx16 = false;
  const void* data = nullptr;            // sparse: nnz values
  index_t nnz = 0;
};

class CompressedLinear {
 public:
  explicit CompressedLinear(const QlinearArrays& a, int num_threads = 0);

  // x: n x n_in dense. out: n x n_out, row stride ldo >= n_out.
  void forward(MatrixView<const float> x, Activation act, float* out, index_t ldo,
               int num_threads = 0) const;
  // x: CSR n_rows x n_in (values may be null: ones). csr-input layers only.
  void forward_csr(const CsrView<float>& x, Activation act, float* out, index_t ldo,
                   int num_threads = 0) const;
  // Best min(k, n_out) outputs of x @ W + b per row (dense-input layers only). Exclusion CSR
  // (ex_ptr n + 1, ex_idx in [0, n_out)) or null. ids / scores: n x min(k, n_out).
  void topk(MatrixView<const float> x, index_t k, const std::int64_t* ex_ptr,
            const std::int32_t* ex_idx, std::int32_t* ids, float* scores, int num_threads = 0) const;

  // Best min(k, n_out) outputs of x @ W + b per row for a CSR input x (csr-input layers only):
  // each row's scores are accumulated in a per-thread n_out buffer and selected from it at once
  // (EASE's recommend on a pruned B: no n x n_out score matrix). Exclusion as topk.
  void topk_csr(const CsrView<float>& x, index_t k, const std::int64_t* ex_ptr, const std::int32_t* ex_idx,
                std::int32_t* ids, float* scores, int num_threads = 0) const;

  index_t n_in() const { return n_in_; }
  index_t n_out() const { return n_out_; }
  int precision() const { return precision_; }
  bool sparse() const { return sparse_; }
  bool csr_input() const { return csr_input_; }
  bool has_bias() const { return !bias_.empty(); }
  std::size_t memory_usage() const;

 private:
  const float* transpose_block(const float* x, index_t ldx, index_t q0, int nrows,
                               std::vector<float>& xt) const;
  void sparse_block(const float* x, index_t ldx, index_t q0, int nrows, std::vector<float>& xt,
                    std::vector<float>& tile, float* out, index_t ldo) const;
  // Per-thread buffers of the gathered (csr-input) paths: qlinear.cpp.
  struct Scratch;
  void gather_row(const std::int32_t* idx, const float* val, index_t cnt, const float* dense_x,
                  float* acc, Scratch& s) const;
  // Sparse csr-input layers (after build_hybrid): one history as (row, value) pairs by descending
  // prefix length (into s), its sums in the renumbered columns (s.work), topk_csr's selection.
  void sorted_history(const std::int32_t* idx, const float* val, index_t cnt, const float* dense_x,
                      Scratch& s) const;
  void renumbered_sums(Scratch& s) const;
  void select_renumbered(Scratch& s, index_t kk, const std::int32_t* ex, index_t nex, std::int32_t* ids,
                         float* scores) const;
  void build_hybrid(int num_threads);
  const void* prefix_values() const;
  void epilogue(float* row, Activation act) const;
  void split_slabs();
  const void* values() const;
  const void* index_ptr() const;

  index_t n_in_ = 0, n_out_ = 0;
  int precision_ = 0;
  bool sparse_ = false, csr_input_ = false, idx16_ = false;
  std::unique_ptr<TopkIndex> dense_;  // dense dense-input layers
  std::vector<float> bias_, scale_;
  std::vector<float> wf_;             // fp32 values (csr rows / sparse data)
  std::vector<std::uint16_t> wb_;     // bf16 values
  std::vector<std::int8_t> wi_;       // int8 values
  // Sparse dense-input layers: nslab_ x n_out + 1 (slab s, column j: [s * n_out + j, + 1]);
  // csr-input layers: n_in + 1.
  std::vector<std::int64_t> indptr_;
  index_t nslab_ = 1;
  std::vector<std::uint16_t> idx16v_;
  std::vector<std::int32_t> idx32v_;
  // Sparse csr-input layers after build_hybrid: indptr_ / idx*v_ / w*_ hold each row's sparse tail
  // (renumbered column ids, ascending); row i's dense prefix is prefix_[pofs_[i], pofs_[i + 1]) in
  // the value type (pf_ / pb_ / pi_); colord_[p] is the original id of renumbered column p.
  std::vector<std::int64_t> pofs_;
  std::vector<float> pf_;
  std::vector<std::uint16_t> pb_;
  std::vector<std::int8_t> pi_;
  std::vector<std::int32_t> colord_;
  std::vector<std::int32_t> rank_;           // its inverse: the renumbered column of original id j
  std::vector<float> rscale_, rbias_;         // scale_ / bias_ in the renumbered order (when present)
};

}  // namespace aerec::cpu

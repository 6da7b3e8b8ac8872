// Item Gram matrix G = X^T X of a sparse users x items matrix (the EASE input), computed without
// densifying X. Only the upper triangle (j >= i, row-major) is written: viewed in column-major
// order that is the lower triangle LAPACK's potrf('L') reads, so no mirror copy is needed.
#pragma once
#include <cstdint>
#include <vector>

#include "aerec/view.hpp"

namespace aerec::cpu {

// X: CSR (rows x n), sorted indices, values may be null (all ones). csc_indptr/csc_rows/csc_pos:
// the same matrix by column (n+1 offsets; row ids; position of each entry in the CSR arrays).
// G: n x n, row-major; entries with j >= i are overwritten, the rest untouched.
template <class T>
void gram_upper(const CsrView<float>& X, const std::int64_t* csc_indptr, const std::int32_t* csc_rows,
                T* G, int num_threads = 0);

// EASE pruned to a global budget (aerec.compress.prune(ease, density=d)): the k largest |B_ij| of a
// square row-major float B, diagonal never kept, as CSR rows. The threshold T is the k-th largest
// off-diagonal |B_ij| (exact: 16-bit histograms of the bit patterns of |B_ij|, high then low half, which
// order like the values for finite floats); kept are every off-diagonal |B_ij| > T and, when T > 0,
// the first k - #{|B_ij| > T} entries equal to T in row-major order (ties at T = 0 would store
// zeros: none kept). The NumPy reference is aerec.backends.numpy_.top_magnitude_csr.
struct MagnitudePlan {
  std::uint32_t threshold_bits = 0;  // bit pattern of T
  std::int64_t greater = 0;          // off-diagonal entries with |B_ij| > T
  std::vector<std::int64_t> indptr;  // n + 1 row offsets of the kept entries
  std::vector<std::int64_t> ties;    // per row: entries equal to T that are kept
};

// 1 <= k <= n (n - 1); every entry of B finite (std::invalid_argument otherwise). After the first
// histogram, when the threshold's high-half bin holds at most collect_limit entries (< 0: the
// default, max(2^20, n^2 / 32)), one pass counts and collects them (6 bytes each) and the rest is
// decided from them; otherwise a second histogram pass and a counting pass. Same result either way.
MagnitudePlan top_magnitude_plan(const float* B, index_t n, std::int64_t k, int num_threads = 0,
                                 std::int64_t collect_limit = -1);

// indices / data: plan.indptr[n] entries each, filled row by row, ascending column ids.
void top_magnitude_fill(const float* B, index_t n, const MagnitudePlan& plan, std::int32_t* indices, float* data,
                        int num_threads = 0);

}  // namespace aerec::cpu

// Item Gram matrix G = X^T X of a sparse users x items matrix (the EASE input), computed without
// densifying X. Only the upper triangle (j >= i, row-major) is written: viewed in column-major
// order that is the lower triangle LAPACK's potrf('L') reads, so no mirror copy is needed.
#pragma once
#include <cstdint>

#include "aerec/view.hpp"

namespace aerec::cpu {

// X: CSR (rows x n), sorted indices, values may be null (all ones). csc_indptr/csc_rows/csc_pos:
// the same matrix by column (n+1 offsets; row ids; position of each entry in the CSR arrays).
// G: n x n, row-major; entries with j >= i are overwritten, the rest untouched.
template <class T>
void gram_upper(const CsrView<float>& X, const std::int64_t* csc_indptr, const std::int32_t* csc_rows,
                T* G, int num_threads = 0);

}  // namespace aerec::cpu

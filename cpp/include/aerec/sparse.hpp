// CSR checks and the gather-sum SpMM of a sparse input (src/sparse.cpp); the kernels come from the
// network kernel table (nn_kernels.hpp).
#pragma once
#include <cstdint>

#include "aerec/view.hpp"

namespace aerec::cpu {

// Checks a CSR batch: indptr (rows+1) monotone from 0 to nnz, column ids in [0, n_cols) and
// strictly increasing within a row, values finite; users (may be null) in [0, n_users).
// Throws std::invalid_argument / std::out_of_range.
void check_csr(const CsrView<float>& x, index_t n_cols, const std::int32_t* users, index_t n_users);

// out (rows x n, row stride ldo) = [init] + X @ W, X CSR over W's rows (W: X.cols x n, ldw).
// init (length n) may be null. values null means every stored value is 1.
void spmm_csr(const CsrView<float>& x, const float* w, index_t ldw, index_t n, const float* init,
              float* out, index_t ldo, int num_threads = 0);

}  // namespace aerec::cpu

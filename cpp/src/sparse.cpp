// CSR checks, the gather-sum SpMM of the sparse input layer, and the network kernel table.
#include <cmath>
#include <string>

#include "aerec/cpu_features.hpp"
#include "aerec/error.hpp"
#include "aerec/parallel.hpp"
#include "aerec/nn_kernels.hpp"
#include "aerec/sparse.hpp"

namespace aerec::cpu {

// Picked per call through dispatch(): the tables are constant data of the ISA units, so nothing
// compiled with AVX2/AVX-512 flags runs to choose one. (This used to be a static Tables object
// filled by all three units' fill_rec_kernels(), which are compiled with their ISA flags and store
// the pointers with ymm/zmm moves: SIGILL on every CPU without AVX-512, then without AVX.)
const NnKernels& nn_kernels() {
  return *dispatch(&scalar::kNnKernels, AEREC_X86_VARIANTS({Target::avx2, &avx2::kNnKernels},
                                                           {Target::avx512, &avx512::kNnKernels}));
}

void check_csr(const CsrView<float>& x, index_t n_cols, const std::int32_t* users, index_t n_users) {
  AEREC_CHECK_ARG(x.rows >= 0, "CSR: negative row count");
  AEREC_CHECK_ARG(x.indptr != nullptr, "CSR: indptr is null");
  AEREC_CHECK_ARG(x.indptr[0] == 0, "CSR: indptr[0] must be 0");
  const std::int64_t nnz = x.indptr[x.rows];
  for (index_t r = 0; r < x.rows; ++r) {
    const std::int64_t a = x.indptr[r], b = x.indptr[r + 1];
    AEREC_CHECK_ARG(b >= a, "CSR: indptr is not monotone non-decreasing (row " + std::to_string(r) +
                                "); pass a valid CSR matrix");
    AEREC_CHECK_ARG(b <= nnz, "CSR: indptr exceeds nnz");
    for (std::int64_t k = a; k < b; ++k) {
      const std::int32_t j = x.indices[k];
      AEREC_CHECK_INDEX(j >= 0 && j < n_cols, "CSR: column id " + std::to_string(j) + " in row " +
                                                  std::to_string(r) + " is outside [0, " +
                                                  std::to_string(n_cols) + ") (n_items)");
      AEREC_CHECK_ARG(k == a || x.indices[k - 1] < j,
                      "CSR: column ids within a row must be strictly increasing (sorted, no duplicates); "
                      "call X.sum_duplicates(); X.sort_indices() first (row " + std::to_string(r) + ")");
      if (x.values) AEREC_CHECK_ARG(std::isfinite(x.values[k]), "CSR: data contains NaN or infinity");
    }
  }
  if (users) {
    for (index_t r = 0; r < x.rows; ++r)
      AEREC_CHECK_INDEX(users[r] >= 0 && users[r] < n_users,
                        "user id " + std::to_string(users[r]) + " outside [0, " + std::to_string(n_users) + ")");
  }
}

void spmm_csr(const CsrView<float>& x, const float* w, index_t ldw, index_t n, const float* init,
              float* out, index_t ldo, int num_threads) {
  const NnKernels& k = nn_kernels();
  const int nt = resolve_threads(num_threads);
  (void)nt;
#pragma omp parallel for schedule(dynamic, 4) num_threads(nt) if (x.rows > 8)
  for (index_t r = 0; r < x.rows; ++r) {
    const std::int64_t a = x.indptr[r];
    k.gather_sum(n, x.indptr[r + 1] - a, x.indices + a, x.values ? x.values + a : nullptr, w, ldw,
                 init, out + r * ldo);
  }
}

}  // namespace aerec::cpu

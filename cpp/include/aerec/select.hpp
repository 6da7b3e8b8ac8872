// Top-k selection over precomputed dense score rows, with per-row exclusion lists.
#pragma once
#include <cstdint>

#include "aerec/view.hpp"

namespace aerec::cpu {

// scores: n x m (row stride allowed). exclude: CSR with n rows (indptr n+1, int64; indices int32,
// any order, duplicates allowed) or indptr == nullptr for none. Outputs ids/out_scores: n x k,
// each row sorted by descending score, ties by lower id; excluded items and NaN or -inf scores are never
// returned; rows with fewer than k candidates are padded with id -1 and score -inf.
// Throws std::out_of_range for an excluded id outside [0, m).
void select_topk_rows(MatrixView<const float> scores, index_t k, const std::int64_t* exclude_indptr,
                      const std::int32_t* exclude_indices, std::int32_t* ids, float* out_scores,
                      int num_threads = 0);

}  // namespace aerec::cpu

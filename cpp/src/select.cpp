#include "aerec/select.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "aerec/error.hpp"
#include "aerec/parallel.hpp"

namespace aerec::cpu {
namespace {

struct Entry {
  float score;
  std::int32_t id;
};

// "a ranks before b": higher score, then lower id.
inline bool before(const Entry& a, const Entry& b) {
  return a.score > b.score || (a.score == b.score && a.id < b.id);
}

// Min-heap on rank (the worst kept entry on top).
inline bool heap_cmp(const Entry& a, const Entry& b) { return before(a, b); }

void select_row(const float* s, index_t m, index_t k, const unsigned char* skip, Entry* heap,
                std::int32_t* ids, float* out) {
  index_t size = 0;
  index_t j = 0;
  // Fill the heap with the first k admissible items.
  for (; j < m && size < k; ++j) {
    float v = s[j];
    if ((skip && skip[j]) || !(v > -std::numeric_limits<float>::infinity())) continue;  // NaN, -inf
    heap[size++] = Entry{v, static_cast<std::int32_t>(j)};
    std::push_heap(heap, heap + size, heap_cmp);
  }
  if (size == k) {
    float thr = heap[0].score;
    // Ids increase along the scan, so an equal score ranks after everything kept: strict '>'.
    for (; j < m; ++j) {
      float v = s[j];
      if (!(v > thr)) continue;
      if (skip && skip[j]) continue;
      std::pop_heap(heap, heap + size, heap_cmp);
      heap[size - 1] = Entry{v, static_cast<std::int32_t>(j)};
      std::push_heap(heap, heap + size, heap_cmp);
      thr = heap[0].score;
    }
  }
  std::sort(heap, heap + size, before);
  for (index_t i = 0; i < size; ++i) {
    ids[i] = heap[i].id;
    out[i] = heap[i].score;
  }
  for (index_t i = size; i < k; ++i) {
    ids[i] = -1;
    out[i] = -std::numeric_limits<float>::infinity();
  }
}

}  // namespace

void select_topk_rows(MatrixView<const float> scores, index_t k, const std::int64_t* ex_ptr,
                      const std::int32_t* ex_idx, std::int32_t* ids, float* out_scores, int num_threads) {
  AEREC_CHECK_ARG(k > 0, "k must be positive");
  const index_t n = scores.rows, m = scores.cols;
  if (n == 0) return;
  if (ex_ptr) {
    AEREC_CHECK_ARG(ex_ptr[0] == 0, "exclude indptr must start at 0");
    for (index_t r = 0; r < n; ++r) {
      AEREC_CHECK_ARG(ex_ptr[r + 1] >= ex_ptr[r], "exclude indptr must be non-decreasing");
    }
    for (std::int64_t p = 0; p < ex_ptr[n]; ++p) {
      AEREC_CHECK_INDEX(ex_idx[p] >= 0 && ex_idx[p] < m,
                        "excluded item id " + std::to_string(ex_idx[p]) + " is outside [0, " +
                            std::to_string(m) + ")");
    }
  }
  const int threads = n * m < 200000 ? 1 : resolve_threads(num_threads);
  ExceptionSlot slot;
#pragma omp parallel num_threads(threads)
  {
    slot.run([&] {
      std::vector<Entry> heap(static_cast<size_t>(std::min<index_t>(k, m) + 1));
      std::vector<unsigned char> skip(ex_ptr ? static_cast<size_t>(m) : 0, 0);
#pragma omp for schedule(dynamic, 16)
      for (index_t r = 0; r < n; ++r) {
        const unsigned char* sk = nullptr;
        if (ex_ptr) {
          for (std::int64_t p = ex_ptr[r]; p < ex_ptr[r + 1]; ++p) skip[ex_idx[p]] = 1;
          sk = skip.data();
        }
        const index_t kk = std::min(k, m);
        select_row(scores.row(r), m, kk, sk, heap.data(), ids + r * k, out_scores + r * k);
        for (index_t i = kk; i < k; ++i) {
          ids[r * k + i] = -1;
          out_scores[r * k + i] = -std::numeric_limits<float>::infinity();
        }
        if (ex_ptr) {
          for (std::int64_t p = ex_ptr[r]; p < ex_ptr[r + 1]; ++p) skip[ex_idx[p]] = 0;
        }
      }
    });
  }
  slot.rethrow();
}

}  // namespace aerec::cpu

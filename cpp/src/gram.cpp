#include "aerec/gram.hpp"

#include <algorithm>
#include <cstring>

#include "aerec/error.hpp"
#include "aerec/parallel.hpp"

namespace aerec::cpu {

template <class T>
void gram_upper(const CsrView<float>& X, const std::int64_t* cptr, const std::int32_t* crow, T* G,
                int num_threads) {
  const index_t n = X.cols;
  const int threads = resolve_threads(num_threads);
  // Row i of G gathers, for every user u who has item i, that user's items j >= i. Each thread
  // owns whole rows of G, so there are no write races; rows cost very different amounts (popular
  // items), hence dynamic scheduling in small chunks.
#pragma omp parallel for num_threads(threads) schedule(dynamic, 8)
  for (index_t i = 0; i < n; ++i) {
    T* g = G + i * n;
    std::fill(g + i, g + n, T(0));
    for (std::int64_t p = cptr[i]; p < cptr[i + 1]; ++p) {
      const std::int32_t u = crow[p];
      const std::int32_t* beg = X.indices + X.indptr[u];
      const std::int32_t* end = X.indices + X.indptr[u + 1];
      const std::int32_t* it = std::lower_bound(beg, end, static_cast<std::int32_t>(i));
      if (X.values == nullptr) {
        for (; it < end; ++it) g[*it] += T(1);
      } else {
        const float* vals = X.values + (it - X.indices);
        const T xi = static_cast<T>(*vals);  // *it == i (u has item i)
        for (; it < end; ++it, ++vals) g[*it] += xi * static_cast<T>(*vals);
      }
    }
  }
}

template void gram_upper<float>(const CsrView<float>&, const std::int64_t*, const std::int32_t*, float*, int);
template void gram_upper<double>(const CsrView<float>&, const std::int64_t*, const std::int32_t*, double*, int);

}  // namespace aerec::cpu

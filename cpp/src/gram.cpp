#include "aerec/gram.hpp"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <vector>

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

// --- EASE pruning: the k largest |B_ij| of the whole matrix (see gram.hpp) ---------------------

namespace {

constexpr int kBins = 1 << 16;
constexpr std::uint32_t kNonFinite = 0x7f800000u;  // |x| bits >= this: inf or NaN

inline std::uint32_t abs_bits(float x) {
  std::uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  return u & 0x7fffffffu;
}

// f(j, x) over row i's off-diagonal entries, in column order.
template <class F>
inline void off_diagonal(const float* row, index_t i, index_t n, F&& f) {
  for (index_t j = 0; j < i; ++j) f(j, row[j]);
  for (index_t j = i + 1; j < n; ++j) f(j, row[j]);
}

// Counts of the 16-bit keys of the off-diagonal |B_ij| bit patterns: the high half (level 0), or
// the low half of the entries whose high half is `hi` (level 1). Per-thread 32-bit counts, flushed
// into 64-bit totals at least every 2^31 entries. Returns false when an entry is not finite.
bool histogram(const float* B, index_t n, int level, std::uint32_t hi, int threads, std::vector<std::int64_t>& total) {
  total.assign(kBins, 0);
  bool finite = true;
  const index_t rows_per_flush = std::max<index_t>(1, (index_t(1) << 31) / std::max<index_t>(n, 1));
#pragma omp parallel num_threads(threads)
  {
    std::vector<std::uint32_t> h(kBins, 0);
    std::vector<std::int64_t> acc(kBins, 0);
    bool ok = true;
    index_t since = 0;
#pragma omp for schedule(dynamic, 64)
    for (index_t i = 0; i < n; ++i) {
      const float* row = B + i * n;
      if (level == 0) {
        std::uint32_t worst = 0;
        off_diagonal(row, i, n, [&](index_t, float x) {
          const std::uint32_t u = abs_bits(x);
          worst = std::max(worst, u);
          ++h[u >> 16];
        });
        if (worst >= kNonFinite) ok = false;
      } else {
        off_diagonal(row, i, n, [&](index_t, float x) {
          const std::uint32_t u = abs_bits(x);
          if ((u >> 16) == hi) ++h[u & 0xffffu];
        });
      }
      if (++since == rows_per_flush) {
        for (int b = 0; b < kBins; ++b) acc[b] += h[b], h[b] = 0;
        since = 0;
      }
    }
    for (int b = 0; b < kBins; ++b) acc[b] += h[b];
#pragma omp critical(aerec_magnitude_histogram)
    {
      for (int b = 0; b < kBins; ++b) total[b] += acc[b];
      finite = finite && ok;
    }
  }
  return finite;
}

// The bin holding the `k`-th largest key (k >= 1, at most the histogram's total); `above` gets the
// count of keys in higher bins.
int kth_largest_bin(const std::vector<std::int64_t>& h, std::int64_t k, std::int64_t& above) {
  above = 0;
  for (int b = kBins - 1; b >= 0; --b) {
    if (above + h[b] >= k) return b;
    above += h[b];
  }
  throw std::logic_error("aerec: top_magnitude: histogram holds fewer than k entries");
}

}  // namespace

MagnitudePlan top_magnitude_plan(const float* B, index_t n, std::int64_t k, int num_threads,
                                 std::int64_t collect_limit) {
  AEREC_CHECK_ARG(n >= 2, "top_magnitude: B must be at least 2 x 2");
  AEREC_CHECK_ARG(k >= 1 && k <= n * (n - 1), "top_magnitude: k must lie in [1, n (n - 1)] (the off-diagonal entries)");
  const int threads = resolve_threads(num_threads);
  std::vector<std::int64_t> h;
  if (!histogram(B, n, 0, 0, threads, h))
    throw std::invalid_argument("aerec: top_magnitude: B has non-finite (NaN or inf) off-diagonal entries; "
                                "refit the model (EASE: a larger l2 or dtype='float64')");
  std::int64_t above_hi = 0, above_lo = 0;
  const auto hi = static_cast<std::uint32_t>(kth_largest_bin(h, k, above_hi));
  if (collect_limit < 0) collect_limit = std::max<std::int64_t>(std::int64_t(1) << 20, n * n / 32);
  std::vector<std::int64_t> gt(n), eq(n);
  MagnitudePlan plan;
  if (h[hi] <= collect_limit) {
    // One pass over B: each row's count above the threshold's bin, and the bin's entries (row, low
    // half: h[hi] of them, known from the first pass) copied out; the row is read a second time
    // from cache to copy them into a slot reserved by an atomic counter. The threshold and each
    // row's counts then come from the copied entries alone.
    const std::int64_t in_bin = h[hi];
    std::vector<std::int32_t> rows(static_cast<std::size_t>(in_bin));
    std::vector<std::uint16_t> low(static_cast<std::size_t>(in_bin));
    std::atomic<std::int64_t> filled{0};
#pragma omp parallel for num_threads(threads) schedule(dynamic, 64)
    for (index_t i = 0; i < n; ++i) {
      const float* row = B + i * n;
      std::int64_t a = 0, b = 0;
      off_diagonal(row, i, n, [&](index_t, float x) {
        const std::uint32_t key = abs_bits(x) >> 16;
        a += key > hi;
        b += key == hi;
      });
      gt[i] = a;
      if (b == 0) continue;
      std::int64_t pos = filled.fetch_add(b, std::memory_order_relaxed);
      off_diagonal(row, i, n, [&](index_t, float x) {
        const std::uint32_t u = abs_bits(x);
        if ((u >> 16) == hi) {
          rows[pos] = static_cast<std::int32_t>(i);
          low[pos] = static_cast<std::uint16_t>(u & 0xffffu);
          ++pos;
        }
      });
    }
    std::vector<std::int64_t> hl(kBins, 0);
    for (const std::uint16_t v : low) ++hl[v];
    const auto lo = static_cast<std::uint32_t>(kth_largest_bin(hl, k - above_hi, above_lo));
    plan.threshold_bits = (hi << 16) | lo;
    for (std::int64_t p = 0; p < in_bin; ++p) {
      gt[rows[p]] += low[p] > lo;
      eq[rows[p]] += low[p] == lo;
    }
  } else {
    histogram(B, n, 1, hi, threads, h);
    const auto lo = static_cast<std::uint32_t>(kth_largest_bin(h, k - above_hi, above_lo));
    plan.threshold_bits = (hi << 16) | lo;
    const std::uint32_t thr = plan.threshold_bits;
#pragma omp parallel for num_threads(threads) schedule(dynamic, 64)
    for (index_t i = 0; i < n; ++i) {
      std::int64_t g = 0, e = 0;
      off_diagonal(B + i * n, i, n, [&](index_t, float x) {
        const std::uint32_t u = abs_bits(x);
        g += u > thr;
        e += u == thr;
      });
      gt[i] = g;
      eq[i] = e;
    }
  }
  plan.greater = above_hi + above_lo;
  const std::uint32_t thr = plan.threshold_bits;
  // ties at T: the first k - greater in row-major order; none when T = 0 (they would be zeros)
  std::int64_t left = thr != 0 ? k - plan.greater : 0;
  plan.indptr.assign(n + 1, 0);
  plan.ties.assign(n, 0);
  for (index_t i = 0; i < n; ++i) {
    const std::int64_t t = std::min(eq[i], left);
    left -= t;
    plan.ties[i] = t;
    plan.indptr[i + 1] = plan.indptr[i] + gt[i] + t;
  }
  return plan;
}

void top_magnitude_fill(const float* B, index_t n, const MagnitudePlan& plan, std::int32_t* indices, float* data,
                        int num_threads) {
  AEREC_CHECK_ARG(static_cast<index_t>(plan.indptr.size()) == n + 1 && static_cast<index_t>(plan.ties.size()) == n,
                  "top_magnitude_fill: the plan is for another matrix size");
  const int threads = resolve_threads(num_threads);
  const std::uint32_t thr = plan.threshold_bits;
#pragma omp parallel for num_threads(threads) schedule(dynamic, 16)
  for (index_t i = 0; i < n; ++i) {
    std::int64_t pos = plan.indptr[i];
    std::int64_t ties = plan.ties[i];
    off_diagonal(B + i * n, i, n, [&](index_t j, float x) {
      const std::uint32_t u = abs_bits(x);
      if (u > thr || (u == thr && ties > 0)) {  // (branch-free stores measured slower: 2 stores per entry)
        ties -= u == thr;
        indices[pos] = static_cast<std::int32_t>(j);
        data[pos] = x;
        ++pos;
      }
    });
  }
}

}  // namespace aerec::cpu

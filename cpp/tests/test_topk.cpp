// Plain C++ test of cpu::TopkIndex (no Python): every precision and ISA level against a
// brute-force reference on integer-valued data, so scores are exact.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <numeric>
#include <random>
#include <stdexcept>
#include <vector>

#include "aerec/cpu_features.hpp"
#include "aerec/topk.hpp"

using namespace aerec;

namespace {
int failures = 0;
#define CHECK(c)                                                   \
  do {                                                             \
    if (!(c)) {                                                    \
      std::printf("FAILED %s:%d: %s\n", __FILE__, __LINE__, #c);   \
      ++failures;                                                  \
    }                                                              \
  } while (0)

void reference(const std::vector<float>& X, const std::vector<float>& Q, const std::vector<float>& b,
               index_t n, index_t d, index_t m, index_t k, const std::vector<std::int64_t>& indptr,
               const std::vector<std::int32_t>& ind, std::vector<std::int32_t>& ids,
               std::vector<float>& sc) {
  const index_t kk = std::min(k, n);
  ids.assign(m * kk, -1);
  sc.assign(m * kk, -std::numeric_limits<float>::infinity());
  for (index_t r = 0; r < m; ++r) {
    std::vector<std::pair<float, std::int32_t>> all;
    for (index_t j = 0; j < n; ++j) {
      bool ex = false;
      for (auto t = indptr[r]; t < indptr[r + 1]; ++t) ex = ex || ind[t] == j;
      if (ex) continue;
      double s = b[j];
      for (index_t p = 0; p < d; ++p) s += double(Q[r * d + p]) * X[j * d + p];
      all.emplace_back(float(s), std::int32_t(j));
    }
    std::sort(all.begin(), all.end(), [](auto& a, auto& c) {
      return a.first > c.first || (a.first == c.first && a.second < c.second);
    });
    for (index_t t = 0; t < kk && t < index_t(all.size()); ++t) {
      ids[r * kk + t] = all[t].second;
      sc[r * kk + t] = all[t].first;
    }
  }
}
}  // namespace

int main() {
  std::mt19937 gen(42);
  std::uniform_int_distribution<int> val(-3, 3);
  const cpu::Isa levels[] = {cpu::Isa::scalar, cpu::Isa::avx2, cpu::Isa::avx512};
  const cpu::Isa hw = cpu::detected_isa();
  struct Shape { index_t n, d, m, k; };
  const Shape shapes[] = {{1, 1, 1, 1}, {45, 7, 5, 10}, {300, 33, 40, 17}, {130, 4, 3, 200}};
  for (cpu::Isa isa : levels) {
    if (static_cast<int>(isa) > static_cast<int>(hw)) continue;
    cpu::set_isa_cap(isa);
    for (const Shape& s : shapes) {
      std::vector<float> X(s.n * s.d), Q(s.m * s.d), b(s.n);
      for (auto& x : X) x = float(val(gen));
      for (auto& x : Q) x = float(val(gen));
      for (auto& x : b) x = float(val(gen));
      std::vector<std::int64_t> indptr(s.m + 1, 0);
      std::vector<std::int32_t> ind;
      for (index_t r = 0; r < s.m; ++r) {
        for (int t = 0; t < int(r % 4); ++t) ind.push_back(std::int32_t(gen() % s.n));
        indptr[r + 1] = std::int64_t(ind.size());
      }
      CsrView<float> ex{indptr.data(), ind.data(), nullptr, s.m, s.n};
      std::vector<std::int32_t> rid;
      std::vector<float> rsc;
      reference(X, Q, b, s.n, s.d, s.m, s.k, indptr, ind, rid, rsc);
      for (int mode = 0; mode < 6; ++mode) {
        cpu::TopkOptions opt;
        opt.precision = (mode == 2 || mode == 4) ? cpu::TopkPrecision::bf16
                        : (mode == 3 || mode == 5) ? cpu::TopkPrecision::int8
                                                   : cpu::TopkPrecision::fp32;
        opt.prune = mode == 1 || mode >= 4;
        opt.rescore = 1000;  // integer data: re-scoring every item keeps the compressed paths exact
        cpu::TopkIndex ix({X.data(), s.n, s.d, s.d}, b.data(), opt, 2);
        std::vector<std::int32_t> ids(rid.size());
        std::vector<float> sc(rsc.size());
        for (int threads : {1, 2}) {
          ix.search({Q.data(), s.m, s.d, s.d}, s.k, &ex, ids.data(), sc.data(), threads);
          CHECK(ids == rid);
          CHECK(sc == rsc);
        }
        std::vector<float> back(X.size());
        ix.export_items(back.data());
        CHECK(back == X);
      }
    }
  }
  cpu::set_isa_cap(cpu::Isa::amx);
  // Bad input: empty index, k < 1, excluded id out of range.
  std::vector<float> X(8, 1.0f), Q(4, 1.0f);
  bool threw = false;
  try {
    cpu::TopkIndex ix({X.data(), 0, 4, 4}, nullptr, {}, 1);
  } catch (const std::invalid_argument&) { threw = true; }
  CHECK(threw);
  cpu::TopkIndex ix({X.data(), 2, 4, 4}, nullptr, {}, 1);
  std::int32_t id[2];
  float sc[2];
  threw = false;
  try { ix.search({Q.data(), 1, 4, 4}, 0, nullptr, id, sc, 1); } catch (const std::invalid_argument&) { threw = true; }
  CHECK(threw);
  std::vector<std::int64_t> ip = {0, 1};
  std::vector<std::int32_t> bad = {2};
  CsrView<float> ex{ip.data(), bad.data(), nullptr, 1, 2};
  threw = false;
  try { ix.search({Q.data(), 1, 4, 4}, 1, &ex, id, sc, 1); } catch (const std::out_of_range&) { threw = true; }
  CHECK(threw);
  if (failures == 0) std::printf("test_topk: all passed\n");
  return failures == 0 ? 0 : 1;
}

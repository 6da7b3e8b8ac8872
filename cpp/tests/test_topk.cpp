// Plain C++ test of cpu::TopkIndex (no Python): every precision and ISA level against a
// brute-force reference on integer-valued data, so scores are exact.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>
#include <stdexcept>
#include <vector>

#include "aerec/cpu_features.hpp"
#include "aerec/topk.hpp"
#include "aerec/topk_kernels.hpp"

#include "check.hpp"

using namespace aerec;

namespace {
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

#ifdef AEREC_X86
// The AVX2 compressed tiles against the portable ones, called directly on packed panels: int8
// bit-identical (exact integer sums, same epilogue), bf16 to float rounding with the same masks
// away from the threshold. Random bytes plus the ends of vpmaddubsw's exact range (items all 127
// / all -128, 7-bit query bytes all 127 / all 0: pair sums up to 2 x 127 x 128 = 32512), for
// panel heights 3 (avx2 level) and 12 (avx512 level
// without VNNI / AVX512-BF16).
void check_avx2_compressed_tiles(std::mt19937& gen) {
  if (!cpu::cpu_features().avx2 || !cpu::cpu_features().fma) return;
  std::uniform_int_distribution<int> byte(0, 255);
  const index_t depths[] = {1, 2, 63, 64, 65, 200};  // steps: around the query-unpack chunk (64)
  for (int mr : {3, 12}) {
    for (index_t d4 : depths) {
      for (int fill = 0; fill < 6; ++fill) {
        // Query bytes are 7-bit (q + 64 in [0, 127], the tiles' contract). fill 0: random;
        // 1: items 127 / queries 127; 2: items -128 / queries 127; 3: items -128 / queries 0;
        // 4: items alternating 127, -128 / queries 127; 5: random items / queries 127.
        std::vector<std::uint8_t> q(d4 * mr * 4);
        std::vector<std::int8_t> x(d4 * 32 * 4);
        for (std::size_t t = 0; t < q.size(); ++t)
          q[t] = fill == 0 ? std::uint8_t(byte(gen) & 127) : fill == 3 ? 0 : 127;
        for (std::size_t t = 0; t < x.size(); ++t)
          x[t] = fill == 0 || fill == 5 ? std::int8_t(byte(gen) - 128)
                 : fill == 1            ? 127
                 : fill == 4            ? std::int8_t(t % 3 == 0 ? 127 : -128)
                                        : -128;
        std::vector<std::int32_t> corr(32);
        std::vector<float> iscale(32), bias(32), qscale(mr), thr(mr);
        for (int j = 0; j < 32; ++j) {
          std::int32_t rs = 0;
          for (index_t p = 0; p < d4; ++p)
            for (int r = 0; r < 4; ++r) rs += x[(p * 32 + j) * 4 + r];
          corr[j] = 64 * rs;
          iscale[j] = 0.01f + 0.001f * float(byte(gen));
          bias[j] = 0.1f * float(byte(gen) - 128);
        }
        for (int i = 0; i < mr; ++i) {
          qscale[i] = 0.003f + 0.0001f * float(byte(gen));
          thr[i] = i % 3 == 0 ? -1e30f : 0.01f * float(byte(gen) - 128);
        }
        std::vector<float> t0(mr * 32), t1(mr * 32, -7.0f);
        std::vector<std::uint32_t> m0(mr), m1(mr, 0xdeadbeefu);
        cpu::scalar::topk_i8_tile(q.data(), x.data(), corr.data(), iscale.data(), bias.data(),
                                  qscale.data(), d4, thr.data(), t0.data(), m0.data(), mr);
        cpu::avx2::topk_i8_tile(q.data(), x.data(), corr.data(), iscale.data(), bias.data(),
                                qscale.data(), d4, thr.data(), t1.data(), m1.data(), mr);
        CHECK(std::memcmp(t0.data(), t1.data(), t0.size() * sizeof(float)) == 0);
        CHECK(m0 == m1);
        if (mr == 12 && cpu::target_enabled(cpu::Target::avx512vnni)) {
          // The VNNI tile too: same exact sums, same unfused epilogue, so the same bits.
          std::vector<float> t2(mr * 32, -7.0f);
          std::vector<std::uint32_t> m2(mr, 0xdeadbeefu);
          cpu::avx512vnni::topk_i8_tile(q.data(), x.data(), corr.data(), iscale.data(), bias.data(),
                                        qscale.data(), d4, thr.data(), t2.data(), m2.data(), mr);
          CHECK(std::memcmp(t0.data(), t2.data(), t0.size() * sizeof(float)) == 0);
          CHECK(m0 == m2);
        }

        // bf16: the same random / extreme pattern as bf16 bits (finite values only).
        const index_t d2 = d4;
        std::vector<std::uint16_t> qb(d2 * mr * 2), xb(d2 * 32 * 2);
        auto bf = [&](int kind) -> std::uint16_t {
          if (kind == 0) {  // random finite bf16 of moderate magnitude
            const int e = 120 + byte(gen) % 14;
            return std::uint16_t(((byte(gen) & 1) << 15) | (e << 7) | (byte(gen) & 0x7f));
          }
          return kind == 1 ? 0x7f7f /* largest finite / 1e38: scaled below */ : 0xbf80 /* -1 */;
        };
        for (auto& v : qb) v = fill == 0 ? bf(0) : fill == 3 ? 0x8000 : 0x3f80;  // -0 or 1
        for (auto& v : xb) v = fill == 0 || fill == 5 ? bf(0) : fill == 2 ? bf(2) : 0x4300;  // 128
        std::vector<float> b0(mr * 32), b1(mr * 32, -7.0f);
        cpu::scalar::topk_bf16_tile(qb.data(), xb.data(), bias.data(), d2, thr.data(), b0.data(),
                                    m0.data(), mr);
        cpu::avx2::topk_bf16_tile(qb.data(), xb.data(), bias.data(), d2, thr.data(), b1.data(),
                                  m1.data(), mr);
        double scale = 1.0;
        for (int t = 0; t < mr * 32; ++t) scale = std::max(scale, double(std::fabs(b0[t])));
        for (int i = 0; i < mr; ++i)
          for (int j = 0; j < 32; ++j) {
            const float a = b0[i * 32 + j], c = b1[i * 32 + j];
            CHECK(std::fabs(double(a) - double(c)) <= 1e-5 * scale * double(d2));
            if (std::fabs(double(a) - double(thr[i])) > 1e-5 * scale * double(d2))
              CHECK(((m0[i] >> j) & 1u) == ((m1[i] >> j) & 1u));
          }
      }
    }
  }
}

// The AMX bf16 tile (32 queries x 32 items; queries row-major, K in steps of 16 pairs) against
// the portable bf16 tile on the same random bf16 values, every depth around a 16-pair step; the
// items are followed by finite garbage (the next panel) that the zero query padding must cancel.
// Only where the amx target is enabled: the test must not run AMX code the CPU / OS cannot.
// The AVX512-BF16 (vdpbf16ps) tile against the portable bf16 tile, called directly: on Intel CPUs
// the search widens bf16 panels to the fp32 tile instead (topk.cpp, widen_bf16), so the index
// tests above reach this tile only on AMD or with AEREC_BF16_DOT=vdpbf16ps.
void check_vdpbf16ps_tile(std::mt19937& gen) {
  if (!cpu::target_enabled(cpu::Target::avx512bf16)) return;
  constexpr int mr = cpu::avx512::kTopkMr;
  std::uniform_int_distribution<int> byte(0, 255);
  auto bf = [&]() {
    const int e = 120 + byte(gen) % 14;
    return std::uint16_t(((byte(gen) & 1) << 15) | (e << 7) | (byte(gen) & 0x7f));
  };
  for (index_t d2 : {1, 2, 7, 64, 300}) {
    std::vector<std::uint16_t> qp(d2 * mr * 2), xb(d2 * 64);
    for (auto& v : qp) v = bf();
    for (auto& v : xb) v = bf();
    std::vector<float> bias(32), thr(mr), t0(mr * 32), t1(mr * 32, -7.0f);
    for (auto& b : bias) b = float(byte(gen) - 128) / 64.0f;
    for (auto& t : thr) t = float(byte(gen) - 128) / 256.0f;
    std::vector<std::uint32_t> m0(mr), m1(mr, 0xdeadbeefu);
    cpu::scalar::topk_bf16_tile(qp.data(), xb.data(), bias.data(), d2, thr.data(), t0.data(), m0.data(), mr);
    cpu::avx512bf16::topk_bf16_tile(qp.data(), xb.data(), bias.data(), d2, thr.data(), t1.data(), m1.data(), mr);
    for (int i = 0; i < mr; ++i)
      for (int j = 0; j < 32; ++j) {
        double mag = std::fabs(bias[j]);
        for (index_t p = 0; p < 2 * d2; ++p) {
          std::uint32_t a = std::uint32_t(qp[(p / 2) * mr * 2 + i * 2 + (p % 2)]) << 16;
          std::uint32_t c = std::uint32_t(xb[(p / 2) * 64 + j * 2 + (p % 2)]) << 16;
          float fa, fc;
          std::memcpy(&fa, &a, 4);
          std::memcpy(&fc, &c, 4);
          mag += std::fabs(double(fa) * fc);
        }
        const double tol = 2.0 * double(2 * d2 + 1) * 6e-8 * mag + 1e-30;
        CHECK(std::fabs(double(t0[i * 32 + j]) - t1[i * 32 + j]) <= tol, "vdpbf16ps d2=%lld", static_cast<long long>(d2));
        CHECK(((m1[i] >> j) & 1u) == (t1[i * 32 + j] >= thr[i] ? 1u : 0u), "vdpbf16ps mask vs its tile");
      }
  }
}

// The AMX int8 tile against the portable int8 tile: bit for bit (exact int32 sums, the same
// unfused epilogue), every depth around a 16-quad step, extreme and random bytes, finite garbage
// after the panel cancelled by the zero query padding.
void check_amx_i8_tile(std::mt19937& gen) {
  if (!cpu::target_enabled(cpu::Target::amx)) return;
  constexpr int mr = cpu::amx::kTopkMr;
  std::uniform_int_distribution<int> byte(0, 255);
  for (index_t d4 : {1, 15, 16, 17, 33, 150}) {
    for (int fill = 0; fill < 3; ++fill) {
      const index_t kq = (d4 + 15) / 16 * 64;
      std::vector<std::uint8_t> qp(d4 * mr * 4), qa(mr * kq, 0);
      std::vector<std::int8_t> x((d4 + 16) * 128);
      for (auto& v : x) v = static_cast<std::int8_t>(fill == 1 ? -127 : fill == 2 ? 127 : byte(gen) - 128);
      for (int i = 0; i < mr; ++i)
        for (index_t p = 0; p < 4 * d4; ++p) {
          const std::uint8_t v = static_cast<std::uint8_t>(fill == 0 ? byte(gen) % 128 : fill == 1 ? 127 : 1);
          qa[i * kq + p] = v;
          qp[(p / 4) * mr * 4 + i * 4 + (p % 4)] = v;
        }
      std::vector<std::int32_t> corr(32);
      std::vector<float> iscale(32), bias(32), qscale(mr), thr(mr), t0(mr * 32), t1(mr * 32, -7.0f);
      for (int j = 0; j < 32; ++j) {
        corr[j] = byte(gen) * 64 - 8192;
        iscale[j] = float(byte(gen) + 1) / 1024.0f;
        bias[j] = float(byte(gen) - 128) / 32.0f;
      }
      for (int i = 0; i < mr; ++i) {
        qscale[i] = float(byte(gen) + 1) / 4096.0f;
        thr[i] = float(byte(gen) - 128);
      }
      std::vector<std::uint32_t> m0(mr), m1(mr, 0xdeadbeefu);
      cpu::scalar::topk_i8_tile(qp.data(), x.data(), corr.data(), iscale.data(), bias.data(), qscale.data(), d4,
                                thr.data(), t0.data(), m0.data(), mr);
      cpu::amx::topk_i8_tile(qa.data(), x.data(), corr.data(), iscale.data(), bias.data(), qscale.data(), d4,
                             thr.data(), t1.data(), m1.data(), mr);
      CHECK(std::memcmp(t0.data(), t1.data(), t0.size() * sizeof(float)) == 0, "amx int8 d4=%lld fill %d",
            static_cast<long long>(d4), fill);
      CHECK(m0 == m1, "amx int8 masks d4=%lld", static_cast<long long>(d4));
    }
  }
}

void check_amx_bf16_tile(std::mt19937& gen) {
  if (!cpu::target_enabled(cpu::Target::amx)) return;
  constexpr int mr = cpu::amx::kTopkMr;
  std::uniform_int_distribution<int> byte(0, 255);
  auto bf = [&]() {  // random finite bf16 of moderate magnitude, either sign
    const int e = 120 + byte(gen) % 14;
    return std::uint16_t(((byte(gen) & 1) << 15) | (e << 7) | (byte(gen) & 0x7f));
  };
  for (index_t d2 : {1, 2, 15, 16, 17, 31, 32, 33, 300}) {
    const index_t kq = (d2 + 15) / 16 * 32;
    std::vector<std::uint16_t> qp(d2 * mr * 2), qa(mr * kq, 0), xb((d2 + 16) * 64);
    for (auto& v : xb) v = bf();  // pair rows past d2: finite garbage
    for (int i = 0; i < mr; ++i)
      for (index_t p = 0; p < 2 * d2; ++p) {
        const std::uint16_t v = (p == 2 * d2 - 1 && i % 3 == 0) ? 0 : bf();
        qa[i * kq + p] = v;
        qp[(p / 2) * mr * 2 + i * 2 + (p % 2)] = v;
      }
    std::vector<float> bias(32), thr(mr), t0(mr * 32), t1(mr * 32, -7.0f);
    for (auto& b : bias) b = float(byte(gen) - 128) / 64.0f;
    for (auto& t : thr) t = float(byte(gen) - 128) / 256.0f;
    std::vector<std::uint32_t> m0(mr), m1(mr, 0xdeadbeefu);
    cpu::scalar::topk_bf16_tile(qp.data(), xb.data(), bias.data(), d2, thr.data(), t0.data(), m0.data(), mr);
    cpu::amx::topk_bf16_tile(qa.data(), xb.data(), bias.data(), d2, thr.data(), t1.data(), m1.data(), mr);
    for (int i = 0; i < mr; ++i) {
      double mag = 0;  // sum of |products| of row i: the fp32 reordering bound scales with it
      for (int j = 0; j < 32; ++j) {
        mag = 0;
        for (index_t p = 0; p < 2 * d2; ++p) {
          std::uint32_t a = std::uint32_t(qa[i * kq + p]) << 16, c = std::uint32_t(xb[(p / 2) * 64 + j * 2 + (p % 2)]) << 16;
          float fa, fc;
          std::memcpy(&fa, &a, 4);
          std::memcpy(&fc, &c, 4);
          mag += std::fabs(double(fa) * fc);
        }
        const double tol = 2.0 * double(2 * d2 + 1) * 6e-8 * (mag + std::fabs(bias[j])) + 1e-30;
        CHECK(std::fabs(double(t0[i * 32 + j]) - t1[i * 32 + j]) <= tol, "amx d2=%lld row %d col %d: %g vs %g",
              static_cast<long long>(d2), i, j, double(t1[i * 32 + j]), double(t0[i * 32 + j]));
        if (std::fabs(double(t0[i * 32 + j]) - thr[i]) > tol)
          CHECK(((m0[i] >> j) & 1u) == ((m1[i] >> j) & 1u), "amx mask d2=%lld", static_cast<long long>(d2));
        CHECK(((m1[i] >> j) & 1u) == (t1[i * 32 + j] >= thr[i] ? 1u : 0u), "amx mask vs its tile");
      }
    }
  }
}
#endif
}  // namespace

int main() {
  std::mt19937 gen(42);
  std::uniform_int_distribution<int> val(-3, 3);
  const cpu::Isa levels[] = {cpu::Isa::scalar, cpu::Isa::avx2, cpu::Isa::avx512, cpu::Isa::amx};
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
#ifdef AEREC_X86
  check_avx2_compressed_tiles(gen);
  check_vdpbf16ps_tile(gen);
  check_amx_bf16_tile(gen);
  check_amx_i8_tile(gen);
#endif
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
  return aerec_test::finish("test_topk");
}

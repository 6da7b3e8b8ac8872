// Plain C++ test of the compressed linear layers (qlinear.hpp, qlinear_kernels.hpp), no Python:
//   1. the qlinear kernel siblings (scalar / avx2 / avx512 tables) against a plain loop, called
//      directly, every value type (fp32, bf16, int8) and index width, integer-valued data so every
//      sum is exact and the siblings must agree bit for bit;
//   2. CompressedLinear at every ISA level against a brute-force double reference of the layer's
//      documented maths (forward, forward_csr, topk with exclusion), on integer-valued data;
//   3. a sparse csr-input layer whose entries crowd a few popular columns (build_hybrid's dense
//      prefixes and sparse tails), rows unsorted and with repeated (row, column) entries, against
//      the same reference (forward, forward_csr, topk_csr with ties and exclusion).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "aerec/cpu_features.hpp"
#include "aerec/qlinear.hpp"
#include "aerec/qlinear_kernels.hpp"

#include "check.hpp"

using namespace aerec;

namespace {

std::uint16_t bf16_of(float f) {  // integer-valued inputs below 256: exact in bf16
  std::uint32_t u;
  std::memcpy(&u, &f, 4);
  return static_cast<std::uint16_t>(u >> 16);
}

float value(int vt, const void* w, index_t t) {
  if (vt == cpu::kQF32) return static_cast<const float*>(w)[t];
  if (vt == cpu::kQBF16) {
    const std::uint32_t u = static_cast<std::uint32_t>(static_cast<const std::uint16_t*>(w)[t]) << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
  }
  return static_cast<float>(static_cast<const std::int8_t*>(w)[t]);
}

struct Values {  // one set of stored values in all three types (same integers)
  std::vector<float> f;
  std::vector<std::uint16_t> b;
  std::vector<std::int8_t> i;
  const void* ptr(int vt) const {
    return vt == cpu::kQF32 ? static_cast<const void*>(f.data())
                            : vt == cpu::kQBF16 ? static_cast<const void*>(b.data()) : static_cast<const void*>(i.data());
  }
  void push(float w) {  // w an integer in [-127, 127]
    f.push_back(w);
    b.push_back(bf16_of(w));
    i.push_back(static_cast<std::int8_t>(w));
  }
};

// A layer's arrays as pack_layer lays them out (sparse: 16-bit ids, the values of type prec).
cpu::QlinearArrays layer_arrays(index_t n_in, index_t n_out, int prec, bool sparse, bool csr, const Values& v,
                                const std::vector<std::int64_t>& ptr, const std::vector<std::uint16_t>& idx,
                                const float* bias, const float* scale) {
  cpu::QlinearArrays a;
  a.n_in = n_in;
  a.n_out = n_out;
  a.precision = prec;
  a.sparse = sparse;
  a.csr_input = csr;
  a.bias = bias;
  a.scale = scale;
  if (sparse) {
    a.indptr = ptr.data();
    a.indices = idx.data();
    a.idx16 = true;
    a.data = v.ptr(prec);
    a.nnz = static_cast<index_t>(v.f.size());
  } else {
    a.W = v.ptr(prec);
  }
  return a;
}

// Entries of ids / sc (m rows of kk) that differ from the brute-force top-kk of the m x n_out
// scores z, skipping the (r, j) where excluded(r, j); ties rank by the lower id, padding -1 / -inf.
template <class Excluded>
int topk_mismatches(const std::vector<double>& z, index_t m, index_t n_out, index_t kk, Excluded excluded,
                    const std::vector<std::int32_t>& ids, const std::vector<float>& sc) {
  int bad = 0;
  for (index_t r = 0; r < m; ++r) {
    std::vector<std::pair<double, std::int32_t>> all;
    for (index_t j = 0; j < n_out; ++j)
      if (!excluded(r, j)) all.emplace_back(z[r * n_out + j], static_cast<std::int32_t>(j));
    std::sort(all.begin(), all.end(), [](auto& p, auto& q) {
      return p.first > q.first || (p.first == q.first && p.second < q.second);
    });
    for (index_t t = 0; t < kk; ++t) {
      const std::int32_t want = t < static_cast<index_t>(all.size()) ? all[t].second : -1;
      const float ws = t < static_cast<index_t>(all.size()) ? static_cast<float>(all[t].first)
                                                           : -std::numeric_limits<float>::infinity();
      bad += ids[r * kk + t] != want || sc[r * kk + t] != ws;
    }
  }
  return bad;
}

CsrView<float> csr_view(const std::vector<std::int64_t>& ptr, const std::vector<std::int32_t>& idx,
                        const std::vector<float>& val, index_t rows, index_t cols) {
  CsrView<float> h;
  h.indptr = ptr.data();
  h.indices = idx.data();
  h.values = val.data();
  h.rows = rows;
  h.cols = cols;
  return h;
}

Values random_values(std::mt19937& g, index_t n) {
  std::uniform_int_distribution<int> v(-127, 127);
  Values out;
  for (index_t t = 0; t < n; ++t) {
    const int x = v(g);
    out.push(static_cast<float>(x));
  }
  return out;
}

void check_kernel_siblings(std::mt19937& g) {
  std::vector<std::pair<const char*, const cpu::QlinearKernels*>> tables = {{"scalar", &cpu::scalar::kQlinearKernels}};
#ifdef AEREC_X86
  if (cpu::cpu_features().avx2 && cpu::cpu_features().fma) tables.push_back({"avx2", &cpu::avx2::kQlinearKernels});
  if (cpu::cpu_features().avx512f && cpu::cpu_features().avx512bw)
    tables.push_back({"avx512", &cpu::avx512::kQlinearKernels});
#endif
  std::uniform_int_distribution<int> small(-3, 3);
  for (index_t n_in : {1, 5, 33, 70}) {
    for (index_t n_out : {1, 7, 40}) {
      // CSC with empty columns, random ids (duplicates across columns), both index widths
      std::vector<std::int64_t> ptr{0};
      std::vector<std::uint16_t> i16, o16;  // ids (scatter) and activation-row offsets (csc)
      std::vector<std::int32_t> i32, o32;
      std::uniform_int_distribution<int> cnt(0, 9), id(0, static_cast<int>(n_in - 1));
      for (index_t j = 0; j < n_out; ++j) {
        const int c = j % 3 == 0 ? 0 : cnt(g);
        for (int t = 0; t < c; ++t) {
          const int v = id(g);
          i16.push_back(static_cast<std::uint16_t>(v));
          i32.push_back(v);
          o16.push_back(static_cast<std::uint16_t>(v * cpu::kQOffsetScale));
          o32.push_back(v * cpu::kQOffsetScale);
        }
        ptr.push_back(static_cast<std::int64_t>(i32.size()));
      }
      const Values w = random_values(g, static_cast<index_t>(i32.size()));
      std::vector<float> xt(static_cast<std::size_t>(n_in * cpu::kQLanes));
      for (float& v : xt) v = static_cast<float>(small(g));
      for (int vt : {0, 1, 2}) {
        std::vector<float> expect(static_cast<std::size_t>(n_out * cpu::kQLanes), 0.0f);
        for (index_t j = 0; j < n_out; ++j)
          for (std::int64_t t = ptr[j]; t < ptr[j + 1]; ++t)
            for (int l = 0; l < cpu::kQLanes; ++l)
              expect[j * cpu::kQLanes + l] += value(vt, w.ptr(vt), t) * xt[i32[t] * cpu::kQLanes + l];
        std::vector<float> row(static_cast<std::size_t>(n_out)), acc_exp(static_cast<std::size_t>(n_out), 1.0f);
        const Values r = random_values(g, n_out);
        for (index_t j = 0; j < n_out; ++j) acc_exp[j] += 2.0f * value(vt, r.ptr(vt), j);
        for (auto& [name, k] : tables) {
          for (int idx16 : {0, 1}) {
            const void* ix = idx16 ? static_cast<const void*>(o16.data()) : static_cast<const void*>(o32.data());
            // nlanes: a full block and a half block (1..16 rows: only the first 16 lanes computed)
            for (int nl : {cpu::kQLanes, cpu::kQLanes / 2, 1}) {
              const int lanes = nl <= cpu::kQLanes / 2 ? cpu::kQLanes / 2 : cpu::kQLanes;
              auto same = [&](const std::vector<float>& got, const std::vector<float>& want, float f) {
                for (index_t j = 0; j < n_out; ++j)
                  for (int l = 0; l < lanes; ++l)
                    if (got[j * cpu::kQLanes + l] != f * want[j * cpu::kQLanes + l]) return false;
                return true;
              };
              std::vector<float> out(static_cast<std::size_t>(n_out * cpu::kQLanes), -7.0f);
              // two calls over split column ranges (j0 > 0 indexes the output from j0)
              const index_t mid = n_out / 2;
              k->csc_block(ptr.data(), ix, idx16, w.ptr(vt), vt, 0, mid, xt.data(), nl, 0, out.data());
              k->csc_block(ptr.data(), ix, idx16, w.ptr(vt), vt, mid, n_out, xt.data(), nl, 0,
                           out.data() + mid * cpu::kQLanes);
              CHECK(same(out, expect, 1.0f), "%s csc_block vt=%d idx16=%d nlanes=%d n_in=%lld n_out=%lld", name, vt,
                    idx16, nl, static_cast<long long>(n_in), static_cast<long long>(n_out));
              // accumulate: a second pass adds the same sums (integers: exact)
              k->csc_block(ptr.data(), ix, idx16, w.ptr(vt), vt, 0, n_out, xt.data(), nl, 1, out.data());
              CHECK(same(out, expect, 2.0f), "%s csc_block accumulate vt=%d idx16=%d nlanes=%d n_in=%lld n_out=%lld",
                    name, vt, idx16, nl, static_cast<long long>(n_in), static_cast<long long>(n_out));
              // csc_filter: scale / bias epilogue, per-lane thresholds (some lanes never pass, some
              // always), candidates in ascending column order with exactly the passing lanes.
              std::vector<float> sc(static_cast<std::size_t>(n_out)), bi(static_cast<std::size_t>(n_out)),
                  thr(cpu::kQLanes);
              for (index_t j = 0; j < n_out; ++j) {
                sc[j] = 0.5f * static_cast<float>(1 + j % 3);
                bi[j] = static_cast<float>(small(g));
              }
              for (int l = 0; l < cpu::kQLanes; ++l)
                thr[l] = l % 5 == 4 ? std::numeric_limits<float>::infinity()
                                    : l % 5 == 3 ? -std::numeric_limits<float>::infinity() : static_cast<float>(small(g));
              for (int with : {0, 1}) {
                const float* scp = with ? sc.data() : nullptr;
                const float* bip = with ? bi.data() : nullptr;
                // with: also an init block (earlier slabs' partial sums) equal to the sums: doubles them
                const float* ini = with ? expect.data() : nullptr;
                std::vector<float> cand(static_cast<std::size_t>(n_out * cpu::kQLanes), -7.0f);
                std::vector<std::int32_t> col(static_cast<std::size_t>(n_out), -1);
                std::vector<std::uint32_t> msk(static_cast<std::size_t>(n_out), 0);
                const index_t c1 = k->csc_filter(ptr.data(), ix, idx16, w.ptr(vt), vt, 0, mid, xt.data(), nl, ini,
                                                 scp, bip, thr.data(), cand.data(), col.data(), msk.data());
                const index_t c2 = k->csc_filter(ptr.data(), ix, idx16, w.ptr(vt), vt, mid, n_out, xt.data(), nl,
                                                 ini != nullptr ? ini + mid * cpu::kQLanes : nullptr, scp, bip,
                                                 thr.data(), cand.data() + c1 * cpu::kQLanes, col.data() + c1,
                                                 msk.data() + c1);
                index_t c = 0;
                bool ok = true;
                for (index_t j = 0; j < n_out; ++j) {
                  std::uint32_t m = 0;
                  float sj[cpu::kQLanes];
                  for (int l = 0; l < lanes; ++l) {
                    float v = expect[j * cpu::kQLanes + l];
                    if (with) v = 2.0f * v * sc[j] + bi[j];  // small integers and halves: exact either way
                    sj[l] = v;
                    if (v > thr[l]) m |= 1u << l;
                  }
                  if (m == 0) continue;
                  ok = ok && c < c1 + c2 && col[c] == j && msk[c] == m;
                  for (int l = 0; ok && l < lanes; ++l) ok = cand[c * cpu::kQLanes + l] == sj[l];
                  ++c;
                }
                CHECK(ok && c == c1 + c2, "%s csc_filter vt=%d idx16=%d nlanes=%d scale/bias=%d n_in=%lld n_out=%lld",
                      name, vt, idx16, nl, with, static_cast<long long>(n_in), static_cast<long long>(n_out));
              }
            }
          }
          std::vector<float> acc(static_cast<std::size_t>(n_out), 1.0f);
          k->axpy(n_out, 2.0f, r.ptr(vt), vt, acc.data());
          CHECK(acc == acc_exp, "%s axpy vt=%d n=%lld", name, vt, static_cast<long long>(n_out));
          // scatter: column ids of the CSC as output ids of one CSR row (duplicates add up)
          if (!i32.empty()) {
            std::vector<float> sa(static_cast<std::size_t>(n_in), 0.0f), se(static_cast<std::size_t>(n_in), 0.0f);
            for (std::size_t t = 0; t < i32.size(); ++t) se[i32[t]] += -1.0f * value(vt, w.ptr(vt), static_cast<index_t>(t));
            k->scatter(static_cast<index_t>(i32.size()), -1.0f, i16.data(), 1, w.ptr(vt), vt, sa.data());
            CHECK(sa == se, "%s scatter16 vt=%d", name, vt);
            std::fill(sa.begin(), sa.end(), 0.0f);
            k->scatter(static_cast<index_t>(i32.size()), -1.0f, i32.data(), 0, w.ptr(vt), vt, sa.data());
            CHECK(sa == se, "%s scatter32 vt=%d", name, vt);
          }
        }
      }
    }
  }
}

// A layer on integer-valued data: fp32 / bf16 dense and every sparse / csr-input form are exact;
// int8 weights are integers with scale 1 (max |w| = 127 per column), activations integers with
// max |x| = 63 per row (the 7-bit activation scale is max |x| / 63 = 1), so the int8 path is
// exact too.
void check_layers(std::mt19937& g, index_t n_in, index_t n_out, index_t m) {
  std::uniform_int_distribution<int> v(-127, 127), coin(0, 2), kx(-5, 5);
  std::vector<float> W(static_cast<std::size_t>(n_in * n_out));  // (n_in, n_out)
  for (float& w : W) w = coin(g) == 0 ? static_cast<float>(v(g)) : 0.0f;
  for (index_t j = 0; j < n_out; ++j) W[(j % n_in) * n_out + j] = (j % 2) ? 127.0f : -127.0f;  // scale 1
  std::vector<float> bias(static_cast<std::size_t>(n_out));
  for (float& b : bias) b = static_cast<float>(kx(g));
  std::vector<float> x(static_cast<std::size_t>(m * n_in));
  for (float& e : x) e = coin(g) == 0 ? static_cast<float>(kx(g)) : 0.0f;
  for (index_t r = 0; r < m; ++r) x[r * n_in + (r % n_in)] = 63.0f;  // activation scale 1
  // reference pre-activation (exact in double and in float)
  std::vector<double> z(static_cast<std::size_t>(m * n_out));
  for (index_t r = 0; r < m; ++r)
    for (index_t j = 0; j < n_out; ++j) {
      double s = bias[j];
      for (index_t i = 0; i < n_in; ++i) s += static_cast<double>(x[r * n_in + i]) * W[i * n_out + j];
      z[r * n_out + j] = s;
    }
  // exclusion: row r excludes ids r % n_out and (3r) % n_out; row 2 excludes everything
  std::vector<std::int64_t> eptr{0};
  std::vector<std::int32_t> eidx;
  for (index_t r = 0; r < m; ++r) {
    if (r == 2) {
      for (index_t j = 0; j < n_out; ++j) eidx.push_back(static_cast<std::int32_t>(j));
    } else {
      eidx.push_back(static_cast<std::int32_t>(r % n_out));
      eidx.push_back(static_cast<std::int32_t>((3 * r) % n_out));
    }
    eptr.push_back(static_cast<std::int64_t>(eidx.size()));
  }
  // CSR history input
  std::vector<std::int64_t> hptr{0};
  std::vector<std::int32_t> hidx;
  std::vector<float> hval;
  for (index_t r = 0; r < m; ++r) {
    for (index_t i = 0; i < n_in; ++i)
      if (x[r * n_in + i] != 0.0f) {
        hidx.push_back(static_cast<std::int32_t>(i));
        hval.push_back(x[r * n_in + i]);
      }
    hptr.push_back(static_cast<std::int64_t>(hidx.size()));
  }

  const cpu::Isa levels[] = {cpu::Isa::scalar, cpu::Isa::avx2, cpu::Isa::avx512, cpu::Isa::amx};
  for (cpu::Isa isa : levels) {
    if (cpu::set_isa_cap(isa) != isa) continue;
    for (int prec : {0, 1, 2}) {
      for (int sparse : {0, 1}) {
        for (int csr : {0, 1}) {
          // pack as pack_layer does
          const index_t outer = csr ? n_in : n_out, inner = csr ? n_out : n_in;
          auto wv = [&](index_t o, index_t in) { return csr ? W[o * n_out + in] : W[in * n_out + o]; };
          Values vals;
          std::vector<std::int64_t> ptr{0};
          std::vector<std::uint16_t> idx;
          for (index_t o = 0; o < outer; ++o) {
            for (index_t in = 0; in < inner; ++in) {
              const float w = wv(o, in);
              if (sparse && w == 0.0f) continue;
              vals.push(w);
              idx.push_back(static_cast<std::uint16_t>(in));
            }
            ptr.push_back(static_cast<std::int64_t>(vals.f.size()));
          }
          std::vector<float> scale(static_cast<std::size_t>(n_out), 1.0f);
          cpu::CompressedLinear L(
              layer_arrays(n_in, n_out, prec, sparse, csr, vals, ptr, idx, bias.data(), scale.data()), 2);
          const char* where = cpu::isa_name(isa);
          std::vector<float> out(static_cast<std::size_t>(m * n_out));
          L.forward(MatrixView<const float>{x.data(), m, n_in, n_in}, cpu::Activation::relu, out.data(), n_out, 2);
          int bad = 0;
          for (index_t t = 0; t < m * n_out; ++t) bad += out[t] != static_cast<float>(std::max(0.0, z[t]));
          CHECK(bad == 0, "%s forward prec=%d sparse=%d csr=%d: %d wrong", where, prec, sparse, csr, bad);
          if (csr) {
            const CsrView<float> h = csr_view(hptr, hidx, hval, m, n_in);
            std::fill(out.begin(), out.end(), -1.0f);
            L.forward_csr(h, cpu::Activation::identity, out.data(), n_out, 2);
            bad = 0;
            for (index_t t = 0; t < m * n_out; ++t) bad += out[t] != static_cast<float>(z[t]);
            CHECK(bad == 0, "%s forward_csr prec=%d sparse=%d: %d wrong", where, prec, sparse, bad);
            continue;
          }
          for (index_t k : {1, 10, 100, 400}) {
            const index_t kk = std::min(k, n_out);
            std::vector<std::int32_t> ids(static_cast<std::size_t>(m * kk));
            std::vector<float> sc(static_cast<std::size_t>(m * kk));
            L.topk(MatrixView<const float>{x.data(), m, n_in, n_in}, k, eptr.data(), eidx.data(), ids.data(),
                   sc.data(), 2);
            bad = topk_mismatches(
                z, m, n_out, kk,
                [&](index_t r, index_t j) {
                  for (auto t = eptr[r]; t < eptr[r + 1]; ++t)
                    if (eidx[t] == j) return true;
                  return false;
                },
                ids, sc);
            CHECK(bad == 0, "%s topk k=%lld prec=%d sparse=%d: %d wrong", where, static_cast<long long>(k), prec,
                  sparse, bad);
          }
        }
      }
    }
  }
  cpu::set_isa_cap(cpu::Isa::amx);
}

// build_hybrid: a skewed pattern (every row holds most of the 40 popular columns, scattered in
// ids; a few rare ones), rows stored unsorted with repeated entries (the repeat is summed).
void check_hybrid_rows(std::mt19937& g, index_t n_in, index_t n_out, index_t m) {
  std::uniform_int_distribution<int> v(-20, 20), col(0, static_cast<int>(n_out) - 1), coin(0, 9);
  std::vector<std::int32_t> popular;
  for (index_t j = 0; j < n_out; j += n_out / 40) popular.push_back(static_cast<std::int32_t>(j));
  std::vector<double> W(static_cast<std::size_t>(n_in * n_out), 0.0);
  std::vector<std::int64_t> ptr{0};
  std::vector<std::uint16_t> idx;
  std::vector<int> val;
  for (index_t i = 0; i < n_in; ++i) {
    std::vector<std::pair<std::int32_t, int>> row;
    for (std::int32_t j : popular)
      if (coin(g) < 8) row.emplace_back(j, v(g));
    for (int e = 0; e < 6; ++e) row.emplace_back(col(g), v(g));
    if (i % 3 == 0 && !row.empty()) row.push_back(row.front());  // a repeated entry
    if (i == 5) row.clear();                                      // an empty row
    std::shuffle(row.begin(), row.end(), g);
    for (auto [j, w] : row) {
      idx.push_back(static_cast<std::uint16_t>(j));
      val.push_back(w);
      W[i * n_out + j] += w;
    }
    ptr.push_back(static_cast<std::int64_t>(idx.size()));
  }
  std::uniform_int_distribution<int> kx(1, 3), item(0, static_cast<int>(n_in) - 1);
  std::vector<std::int64_t> hptr{0}, eptr{0};
  std::vector<std::int32_t> hidx, eidx;
  std::vector<float> hval, x(static_cast<std::size_t>(m * n_in), 0.0f);
  for (index_t r = 0; r < m; ++r) {
    std::vector<int> h;
    for (int e = 0; e < static_cast<int>(r % 7); ++e) h.push_back(item(g));  // row 0: empty history
    std::sort(h.begin(), h.end());
    h.erase(std::unique(h.begin(), h.end()), h.end());
    for (int i : h) {
      hidx.push_back(i);
      hval.push_back(static_cast<float>(kx(g)));
      x[r * n_in + i] = hval.back();
    }
    hptr.push_back(static_cast<std::int64_t>(hidx.size()));
    eidx.push_back(popular[r % popular.size()]);
    eptr.push_back(static_cast<std::int64_t>(eidx.size()));
  }
  std::vector<double> z(static_cast<std::size_t>(m * n_out), 0.0);
  for (index_t r = 0; r < m; ++r)
    for (index_t i = 0; i < n_in; ++i)
      for (index_t j = 0; j < n_out; ++j) z[r * n_out + j] += static_cast<double>(x[r * n_in + i]) * W[i * n_out + j];
  Values vals;
  for (int w : val) vals.push(static_cast<float>(w));
  std::vector<float> scale(static_cast<std::size_t>(n_out), 1.0f);
  const cpu::Isa levels[] = {cpu::Isa::scalar, cpu::Isa::avx2, cpu::Isa::avx512, cpu::Isa::amx};
  for (cpu::Isa isa : levels) {
    if (cpu::set_isa_cap(isa) != isa) continue;
    const char* where = cpu::isa_name(isa);
    for (int prec : {0, 1, 2}) {
      cpu::CompressedLinear L(layer_arrays(n_in, n_out, prec, true, true, vals, ptr, idx, nullptr, scale.data()), 2);
      std::vector<float> out(static_cast<std::size_t>(m * n_out), -1.0f);
      const CsrView<float> h = csr_view(hptr, hidx, hval, m, n_in);
      L.forward_csr(h, cpu::Activation::identity, out.data(), n_out, 2);
      int bad = 0;
      for (index_t t = 0; t < m * n_out; ++t) bad += out[t] != static_cast<float>(z[t]);
      CHECK(bad == 0, "%s hybrid forward_csr prec=%d: %d wrong", where, prec, bad);
      std::fill(out.begin(), out.end(), -1.0f);
      L.forward(MatrixView<const float>{x.data(), m, n_in, n_in}, cpu::Activation::identity, out.data(), n_out, 2);
      bad = 0;
      for (index_t t = 0; t < m * n_out; ++t) bad += out[t] != static_cast<float>(z[t]);
      CHECK(bad == 0, "%s hybrid forward (dense x) prec=%d: %d wrong", where, prec, bad);
      for (index_t k : {index_t{1}, index_t{25}, n_out + 5}) {
        const index_t kk = std::min(k, n_out);
        std::vector<std::int32_t> ids(static_cast<std::size_t>(m * kk));
        std::vector<float> sc(static_cast<std::size_t>(m * kk));
        L.topk_csr(h, k, eptr.data(), eidx.data(), ids.data(), sc.data(), 2);
        bad = topk_mismatches(z, m, n_out, kk, [&](index_t r, index_t j) { return j == eidx[r]; }, ids, sc);
        CHECK(bad == 0, "%s hybrid topk_csr k=%lld prec=%d: %d wrong", where, static_cast<long long>(k), prec, bad);
      }
    }
  }
  cpu::set_isa_cap(cpu::Isa::amx);
}

}  // namespace

int main() {
  std::mt19937 g(20261129);
  check_kernel_siblings(g);
  check_layers(g, 45, 77, 37);
  // several column chunks of the sparse top-k (thresholds raised between chunks), a partial lane block
  check_layers(g, 30, 1300, 21);
  // input slabs (700 x 32 x 4 bytes > kQSlabBytes): partial sums carried between slabs
  check_layers(g, 700, 560, 35);
  check_hybrid_rows(g, 90, 400, 29);
  return aerec_test::finish("test_qlinear");
}

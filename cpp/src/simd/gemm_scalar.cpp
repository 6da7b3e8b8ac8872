// Portable GEMM family (base ISA, e.g. x86-64 SSE2): 4 x 8 register tile written with GCC/Clang
// vector extensions (4 lanes), which lower to SSE2 on x86-64 and NEON on AArch64.
#include <array>
#include <cstdint>
#include <cstring>
#include <utility>

#include "../gemm_internal.hpp"

namespace aerec::cpu::scalar {
namespace {

typedef float v4f __attribute__((vector_size(16)));
typedef std::int32_t v4i __attribute__((vector_size(16)));

struct VT {
  using V = v4f;
  static constexpr int W = 4;
  static constexpr bool kScalef = false;
  static V scalef(V x, V) { return x; }
  static V recip(V d) { return set1(1.f) / d; }
  static constexpr bool kTranspose = false;
  static constexpr int kTRows = 1;  // unused (no transpose helper)
  static index_t transpose_rows(const float* const*, int, index_t, float*, index_t) { return 0; }
  static V zero() { return V{0.f, 0.f, 0.f, 0.f}; }
  static V set1(float x) { return V{x, x, x, x}; }
  static V load(const float* p) {
    V v;
    std::memcpy(&v, p, sizeof(v));
    return v;
  }
  static void store(float* p, V v) { std::memcpy(p, &v, sizeof(v)); }
  static V load_n(const float* p, index_t n) {
    V v = zero();
    for (index_t l = 0; l < n && l < W; ++l) v[l] = p[l];
    return v;
  }
  static void store_n(float* p, V v, index_t n) {
    for (index_t l = 0; l < n && l < W; ++l) p[l] = v[l];
  }
  static V add(V a, V b) { return a + b; }
  static V sub(V a, V b) { return a - b; }
  static V mul(V a, V b) { return a * b; }
  static V div(V a, V b) { return a / b; }
  static V fmadd(V a, V b, V c) { return a * b + c; }
  static V max(V a, V b) { return a > b ? a : b; }  // b when unordered, like maxps
  static V min(V a, V b) { return a < b ? a : b; }
  static V round(V x) {
    // |x| < 2^22 here (exp arguments are clamped); adding 1.5 * 2^23 rounds to nearest even.
    const V magic = set1(12582912.f);
    return (x + magic) - magic;
  }
  static V pow2i(V n) {
    const v4i e = (__builtin_convertvector(n, v4i) + 127) << 23;
    V r;
    std::memcpy(&r, &e, sizeof(r));
    return r;
  }
  static V split_exp(V x, V& e) {
    v4i b;
    std::memcpy(&b, &x, sizeof(b));
    const v4i ex = ((b >> 23) & 0xFF) - 126;
    e = __builtin_convertvector(ex, v4f);
    const v4i m = (b & 0x007FFFFF) | 0x3F000000;
    V r;
    std::memcpy(&r, &m, sizeof(r));
    return r;
  }
  static V sel_gt(V x, V t, V a, V b) { return x > t ? a : b; }
  static V sel_lt(V x, V t, V a, V b) { return x < t ? a : b; }
};

constexpr const char* kIsaName = "scalar";
constexpr int MR = 4;
constexpr int NR = 8;
constexpr index_t KC = 256;
constexpr index_t MC = 128;
constexpr index_t NC = 2048;

#include "gemm_body.inc"

}  // namespace

const gemm_detail::IsaKernels kGemmKernels = kTable;

}  // namespace aerec::cpu::scalar

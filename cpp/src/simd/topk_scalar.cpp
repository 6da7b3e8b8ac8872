// Top-k tile kernels, portable C++ (no ISA flags). Also the fallback for bf16/int8 scoring on
// CPUs without AVX512-BF16 / VNNI. Plain loops only: no shared inline/template code (ODR).
#include <cstdint>
#include <cstring>

#include "aerec/topk_kernels.hpp"

namespace aerec::cpu::scalar {
namespace {
constexpr int NR = 32;

float bf16_to_float(std::uint16_t h) {
  std::uint32_t u = static_cast<std::uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, sizeof(f));
  return f;
}

void make_mask(const float* tile, const float* thr, std::uint32_t* mask, int mr) {
  for (int i = 0; i < mr; ++i) {
    std::uint32_t m = 0;
    const float t = thr[i];
    for (int j = 0; j < NR; ++j) m |= static_cast<std::uint32_t>(tile[i * NR + j] >= t) << j;
    mask[i] = m;
  }
}
}  // namespace

void topk_fp32_tile(const float* qp, const float* ip, const float* bias, index_t d,
                    const float* thr, float* tile, std::uint32_t* mask) {
  constexpr int MR = kTopkMr;
  float acc[MR][NR];
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j) acc[i][j] = bias[j];
  for (index_t p = 0; p < d; ++p) {
    const float* x = ip + p * NR;
    for (int i = 0; i < MR; ++i) {
      const float q = qp[p * MR + i];
      for (int j = 0; j < NR; ++j) acc[i][j] += q * x[j];
    }
  }
  std::memcpy(tile, acc, sizeof(acc));
  make_mask(tile, thr, mask, MR);
}

void topk_bf16_tile(const std::uint16_t* qp, const std::uint16_t* ip, const float* bias,
                    index_t d2, const float* thr, float* tile, std::uint32_t* mask, int mr) {
  for (int i = 0; i < mr; ++i)
    for (int j = 0; j < NR; ++j) tile[i * NR + j] = bias[j];
  for (index_t p = 0; p < d2; ++p) {
    const std::uint16_t* x = ip + p * NR * 2;
    for (int i = 0; i < mr; ++i) {
      const float q0 = bf16_to_float(qp[(p * mr + i) * 2]);
      const float q1 = bf16_to_float(qp[(p * mr + i) * 2 + 1]);
      float* t = tile + i * NR;
      for (int j = 0; j < NR; ++j)
        t[j] += q0 * bf16_to_float(x[2 * j]) + q1 * bf16_to_float(x[2 * j + 1]);
    }
  }
  make_mask(tile, thr, mask, mr);
}

void topk_i8_tile(const std::uint8_t* qp, const std::int8_t* ip, const std::int32_t* corr,
                  const float* iscale, const float* bias, const float* qscale, index_t d4,
                  const float* thr, float* tile, std::uint32_t* mask, int mr) {
  for (int i = 0; i < mr; ++i) {
    std::int32_t acc[NR] = {0};
    for (index_t p = 0; p < d4; ++p) {
      const std::int8_t* x = ip + p * NR * 4;
      const std::uint8_t* q = qp + (p * mr + i) * 4;
      for (int j = 0; j < NR; ++j)
        for (int r = 0; r < 4; ++r) acc[j] += static_cast<std::int32_t>(q[r]) * x[4 * j + r];
    }
    for (int j = 0; j < NR; ++j)
      tile[i * NR + j] =
          static_cast<float>(acc[j] - corr[j]) * (iscale[j] * qscale[i]) + bias[j];
  }
  make_mask(tile, thr, mask, mr);
}

float topk_dot(const float* q, const float* x, index_t d) {
  // Eight partial sums: the same association the SIMD versions use is not required (re-scored
  // values are fp32 inner products, compared with tolerances), but keep it fast.
  float s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  index_t p = 0;
  for (; p + 8 <= d; p += 8)
    for (int r = 0; r < 8; ++r) s[r] += q[p + r] * x[p + r];
  float t = 0;
  for (; p < d; ++p) t += q[p] * x[p];
  return ((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7])) + t;
}

// Constant data: picking this table (topk.cpp, dispatch()) runs none of this unit's code.
const TopkKernels kTopkKernels = {kTopkMr, &topk_fp32_tile, &topk_bf16_tile, &topk_i8_tile,
                                   &topk_dot, nullptr, nullptr, nullptr,
                                   nullptr, nullptr};

}  // namespace aerec::cpu::scalar

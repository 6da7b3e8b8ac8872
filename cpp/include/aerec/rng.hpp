// Counter-based random streams shared by the Network (dropout, shuffle). The NumPy reference
// (python/aerec/backends/numpy_.py) reproduces them vectorised, so both backends draw identical
// masks and batch orders. All arithmetic is uint64 with wrap-around; mix64 is the splitmix64
// finaliser.
//   dropout key  k(seed, step, layer) = mix64(mix64(mix64(seed ^ kDropoutStream) ^ step) ^ layer)
//   element e of the (rows x n_in) input of weight layer `layer` (e = row * n_in + col):
//       u_e = (mix64(k + (e + 1) * kGolden) >> 40) * 2^-24     (exact in float32, in [0, 1))
//       kept when u_e >= p; kept values are multiplied by 1.f / (1.f - p)  (float32 arithmetic)
//   shuffle of train_epoch(seed = s) over n rows:
//       k = mix64(mix64(spec_seed ^ kShuffleStream) ^ s);  key_i = mix64(k + (i + 1) * kGolden)
//       order = indices sorted by (key_i, i).
#pragma once
#include <cmath>
#include <cstdint>

namespace aerec::cpu::rng {

constexpr std::uint64_t kGolden = 0x9E3779B97F4A7C15ull;
constexpr std::uint64_t kDropoutStream = 0x6A09E667F3BCC909ull;
constexpr std::uint64_t kShuffleStream = 0xBB67AE8584CAA73Bull;

// Only included by portable (no ISA flags) translation units: ISA TUs carry their own copies in
// their own namespaces (see COMMON.md, ODR trap).
constexpr std::uint64_t mix64(std::uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

constexpr std::uint64_t dropout_key(std::uint64_t seed, std::uint64_t step, std::uint64_t layer) {
  return mix64(mix64(mix64(seed ^ kDropoutStream) ^ step) ^ layer);
}

constexpr std::uint64_t shuffle_key(std::uint64_t spec_seed, std::uint64_t seed) {
  return mix64(mix64(spec_seed ^ kShuffleStream) ^ seed);
}

constexpr std::uint64_t kNoiseStream = 0x3C6EF372FE94F82Bull;

constexpr std::uint64_t noise_key(std::uint64_t seed, std::uint64_t step, std::uint64_t layer) {
  return mix64(mix64(mix64(seed ^ kNoiseStream) ^ step) ^ layer);
}

// Standard normal for element e of the variational layer's (rows x d) noise (Box-Muller, float32):
// u1 = ((mix64(key + (2e+1) G) >> 40) + 1) 2^-24 in (0, 1], u2 = (mix64(key + (2e+2) G) >> 40) 2^-24,
// eps = sqrt(-2 log u1) * cos(2 pi u2).
inline float gaussian(std::uint64_t key, std::uint64_t e) {
  const std::uint64_t h1 = mix64(key + (2 * e + 1) * kGolden) >> 40;
  const std::uint64_t h2 = mix64(key + (2 * e + 2) * kGolden) >> 40;
  const float u1 = (static_cast<float>(h1) + 1.f) * 0x1p-24f;
  const float u2 = static_cast<float>(h2) * 0x1p-24f;
  return std::sqrt(-2.f * std::log(u1)) * std::cos(6.28318530717958647692f * u2);
}

}  // namespace aerec::cpu::rng

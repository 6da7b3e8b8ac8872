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

}  // namespace aerec::cpu::rng

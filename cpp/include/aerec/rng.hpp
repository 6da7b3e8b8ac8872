// The Network's counter-based random streams, bit for bit as python/aerec/nn/spec.py states them
// (the NumPy reference draws the same values). All arithmetic is uint64 with wrap-around; mix64 is
// the splitmix64 finaliser, G the golden-ratio increment.
//   key(stream, step, layer) = mix64(mix64(mix64(seed ^ stream) ^ step) ^ layer)
//   h(key, e)                = mix64(key + (e + 1) G)
//   row: the row's index in the x given to the call (the epoch matrix's row in train_epoch,
//   whatever the shuffle), so a row draws the same values wherever the shuffle puts it.
//   dropout of weight layer l, element e = row * n_in_l + col:
//       u = (h(key(kDropout, step, l), e) >> 40) 2^-24; kept when u >= p, kept values * 1/(1-p)
//   Gaussian noise, element e = row * d + j: eps = gaussian(key(kNoise, step, v), e)
//   negatives of `row`: item t = negative_item(key(kNegative, step, 0), row, t, n_out)
//   shuffle of train_epoch(seed = s): k = shuffle_key(seed, s); order = rows sorted by (h(k, i), i).
// Only portable (no ISA flags) units include this: the ISA dropout bodies carry their own copies
// in their own namespaces (cpu_features.hpp, the ODR rule).
#pragma once
#include <cmath>
#include <cstdint>

namespace aerec::cpu::rng {

constexpr std::uint64_t kGolden = 0x9E3779B97F4A7C15ull;
enum Stream : std::uint64_t {
  kDropout = 0x6A09E667F3BCC909ull,
  kNoise = 0x3C6EF372FE94F82Bull,
  kNegative = 0xA54FF53A5F1D36F1ull,
  kShuffle = 0xBB67AE8584CAA73Bull,
};

constexpr std::uint64_t mix64(std::uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

constexpr std::uint64_t key(std::uint64_t seed, Stream stream, std::uint64_t step, std::uint64_t layer) {
  return mix64(mix64(mix64(seed ^ stream) ^ step) ^ layer);
}

constexpr std::uint64_t h(std::uint64_t key, std::uint64_t e) { return mix64(key + (e + 1) * kGolden); }

constexpr std::uint64_t shuffle_key(std::uint64_t spec_seed, std::uint64_t seed) {
  return mix64(mix64(spec_seed ^ kShuffle) ^ seed);
}

// u in [0, 1), exact in float32.
inline float uniform(std::uint64_t key, std::uint64_t e) { return static_cast<float>(h(key, e) >> 40) * 0x1p-24f; }

// Box-Muller in float32: u1 = ((h(key, 2e) >> 40) + 1) 2^-24 in (0, 1], u2 = (h(key, 2e + 1) >> 40) 2^-24.
inline float gaussian(std::uint64_t key, std::uint64_t e) {
  const float u1 = (static_cast<float>(h(key, 2 * e) >> 40) + 1.f) * 0x1p-24f;
  const float u2 = uniform(key, 2 * e + 1);
  return std::sqrt(-2.f * std::log(u1)) * std::cos(6.28318530717958647692f * u2);
}

// Negative draw t of `row`: ((h(key, (row << 32) | t) >> 32) * n) >> 32, in [0, n).
constexpr std::uint64_t negative_item(std::uint64_t key, std::uint64_t row, std::uint64_t t, std::uint64_t n) {
  return ((h(key, (row << 32) | t) >> 32) * n) >> 32;
}

}  // namespace aerec::cpu::rng

// A top-k candidate as one 64-bit key, shared by TopkIndex (topk.cpp) and the sparse
// CompressedLinear path (qlinear.cpp): order-preserving score bits above, (2^32 - 1 - id) below,
// so "better" (higher score, then lower id) is plain unsigned >, and selection is branch-light.
#pragma once
#include <cstdint>
#include <cstring>

namespace aerec::cpu::topk_entry {

using Entry = std::uint64_t;

inline Entry make_entry(float s, std::int32_t id) {
  s += 0.0f;  // -0 -> +0: equal scores must tie whatever their sign
  std::uint32_t u;
  std::memcpy(&u, &s, 4);
  u = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
  return (static_cast<std::uint64_t>(u) << 32) | (0xFFFFFFFFu - static_cast<std::uint32_t>(id));
}

inline float entry_score(Entry e) {
  std::uint32_t u = static_cast<std::uint32_t>(e >> 32);
  u = (u & 0x80000000u) ? (u & 0x7fffffffu) : ~u;
  float s;
  std::memcpy(&s, &u, 4);
  return s;
}

inline std::int32_t entry_id(Entry e) {
  return static_cast<std::int32_t>(0xFFFFFFFFu - static_cast<std::uint32_t>(e));
}

}  // namespace aerec::cpu::topk_entry

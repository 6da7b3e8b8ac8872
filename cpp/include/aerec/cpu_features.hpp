// Run-time instruction-set detection and dispatch level.
//
// Every ISA-specific kernel body lives in its own translation unit under src/simd/ (compiled with
// that ISA's flags, in its own namespace); the portable code asks `active_isa()` once and picks a
// function pointer. AEREC_ISA=scalar|avx2|avx512|amx (environment) caps the level so the tests can
// cover every path on one machine.
#pragma once
#include <string>

namespace aerec::cpu {

enum class Isa : int { scalar = 0, avx2 = 1, avx512 = 2, amx = 3 };

struct CpuFeatures {
  bool avx2 = false, fma = false, f16c = false;
  bool avx512f = false, avx512bw = false, avx512vl = false, avx512dq = false, avx512cd = false;
  bool avx512_vnni = false, avx512_bf16 = false;
  bool amx_tile = false, amx_bf16 = false, amx_int8 = false;
  bool amx_permitted = false;  // the OS granted XTILEDATA (arch_prctl), checked lazily
};

// What the processor (and OS, for AVX state) supports. Computed once, thread-safe.
const CpuFeatures& cpu_features();

// Highest level the hardware supports, capped by AEREC_ISA and by set_isa_cap().
Isa active_isa();
Isa detected_isa();
// Cap the level at run time (tests). Returns the level in force afterwards.
Isa set_isa_cap(Isa cap);

// Ask the kernel for AMX tile data permission for this process. Returns true when granted.
bool request_amx();

// True when the active level includes AVX-512 VNNI (int8 dot products).
bool has_vnni();
bool has_avx512_bf16();

const char* isa_name(Isa isa);
Isa isa_from_name(const std::string& name);  // throws std::invalid_argument

}  // namespace aerec::cpu

// Run-time instruction-set detection and the one dispatch idiom of the library.
//
// Every ISA-specific kernel body lives in its own translation unit under src/simd/, compiled with
// one target's flags (cpp/CMakeLists.txt) and with everything in that target's namespace
// (aerec::cpu::avx2, ...). The portable code reaches it only through `dispatch()` below, which
// returns a variant only when the CPU has been checked for its target. AEREC_ISA=scalar|avx2|
// avx512|amx (environment) caps the level so the tests can cover every path on one machine.
//
// The rule (a table fill compiled with -mavx512f once SIGILLed every AVX2-only CPU): no code
// compiled with ISA flags runs before the CPU has been checked for that ISA. Hence:
//   - an ISA unit exports only constant-initialised tables / entry points in its own namespace
//     (reading a table runs no code; a fill function or a static initialiser would);
//   - it includes declaration-only headers (nn_kernels.hpp, topk_kernels.hpp, ...), so no
//     inline function or template of a shared header gets an ISA-compiled weak (COMDAT) copy that
//     the linker could keep and hand to portable callers;
//   - tools/check_isa_symbols.py (a ctest) fails on any global/weak symbol an ISA object defines
//     outside its namespace, and on static initialisers in ISA objects.
#pragma once
#include <initializer_list>
#include <string>

namespace aerec::cpu {

enum class Isa : int { scalar = 0, avx2 = 1, avx512 = 2, amx = 3 };

struct CpuFeatures {
  bool avx2 = false, fma = false, f16c = false;
  bool avx512f = false, avx512bw = false, avx512vl = false, avx512dq = false, avx512cd = false;
  bool avx512_vnni = false, avx512_bf16 = false;
  bool avx_vnni = false;  // AVX-VNNI (VEX vpdpbusd on ymm: Intel Alder Lake+ client, Sapphire Rapids+)
  bool amx_tile = false, amx_bf16 = false, amx_int8 = false;
  bool amx_permitted = false;  // the OS granted XTILEDATA (arch_prctl), checked lazily
  bool intel = false;          // vendor GenuineIntel (CPUID leaf 0): picks between equivalent kernels
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

const char* isa_name(Isa isa);
Isa isa_from_name(const std::string& name);  // throws std::invalid_argument

// ------------------------------------------------------------------------------------ dispatch
// Compile targets: one per flag set in cpp/CMakeLists.txt and one namespace each. A file
// src/simd/<family>_<target>.cpp is compiled with exactly that target's flags.
//   scalar     no flags (x86-64 baseline: SSE2)
//   avx2       -mavx2 -mfma -mf16c
//   avx512     avx2 + -mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx512cd
//   avxvnni    avx2 + -mavxvnni            (int8 dot products, VEX ymm; the avx2 level)
//   avx512vnni avx512 + -mavx512vnni       (int8 dot products)
//   avx512bf16 avx512 + -mavx512bf16       (bf16 dot products)
//   amx        avx512 + vnni + bf16 + -mamx-tile -mamx-bf16 -mamx-int8
enum class Target : int { scalar = 0, avx2, avx512, avx512vnni, avx512bf16, amx, avxvnni };

// Bit (1u << int(t)) is set for every target whose code may run now: the CPU and the OS support
// every instruction set its flags enable, and the level in force (active_isa(): AEREC_ISA,
// set_isa_cap) includes it (avxvnni needs the avx2 level, avx512vnni / avx512bf16 the avx512 level,
// amx the amx level). AEREC_AVX_VNNI=0 (read once) turns avxvnni off: the plain AVX2 int8 kernels
// of CPUs without it (AMD Zen 1-3, Intel before Alder Lake) on a CPU that has it.
// Cheap (an atomic load and a table lookup); re-read on every dispatch so set_isa_cap acts at once.
unsigned enabled_targets();
inline bool target_enabled(Target t) { return (enabled_targets() >> static_cast<int>(t)) & 1u; }

template <class T>
struct IsaVariant {
  Target target;
  T value;  // a kernel table pointer or a function pointer compiled for `target`
};

// THE dispatch helper: `base` (portable code) unless a variant's target is enabled; the last
// enabled variant wins, so list them from the lowest target to the highest. T is a pointer to a
// per-target kernel table (constant data) or a function pointer. Nothing compiled for a target is
// called before this has checked it, and nothing else in aerec picks ISA code. Example:
//   const NnKernels& k = *dispatch(&scalar::kNnKernels,
//       AEREC_X86_VARIANTS({Target::avx2, &avx2::kNnKernels}, {Target::avx512, &avx512::kNnKernels}));
template <class T>
T dispatch(T base, std::initializer_list<IsaVariant<T>> variants) {
  const unsigned on = enabled_targets();
  T best = base;
  for (const IsaVariant<T>& v : variants)
    if (v.value != nullptr && ((on >> static_cast<int>(v.target)) & 1u)) best = v.value;
  return best;
}

}  // namespace aerec::cpu

// The x86 variants of a dispatch() call; on other architectures the ISA units are not built, so
// the list is empty and their names are never referenced.
#if defined(AEREC_X86)
#define AEREC_X86_VARIANTS(...) {__VA_ARGS__}
#else
#define AEREC_X86_VARIANTS(...) {}
#endif

#include "aerec/cpu_features.hpp"

#include <atomic>
#include <cstdlib>
#include <mutex>
#include <stdexcept>

#if defined(__linux__) && defined(AEREC_X86)
#include <sys/syscall.h>
#include <unistd.h>
#endif

namespace aerec::cpu {
namespace {

CpuFeatures detect() {
  CpuFeatures f;
#if defined(AEREC_X86) && (defined(__GNUC__) || defined(__clang__))
  // libgcc's __builtin_cpu_supports also checks XCR0, so the AVX / AVX-512 bits below are set only
  // when the OS saves that register state.
  __builtin_cpu_init();
  f.avx2 = __builtin_cpu_supports("avx2");
  f.fma = __builtin_cpu_supports("fma");
  f.f16c = __builtin_cpu_supports("f16c");
  f.avx512f = __builtin_cpu_supports("avx512f");
  f.avx512bw = __builtin_cpu_supports("avx512bw");
  f.avx512vl = __builtin_cpu_supports("avx512vl");
  f.avx512dq = __builtin_cpu_supports("avx512dq");
  f.avx512cd = __builtin_cpu_supports("avx512cd");
  f.avx512_vnni = __builtin_cpu_supports("avx512vnni");
  f.avx512_bf16 = __builtin_cpu_supports("avx512bf16");
  // AMX bits (CPUID.(EAX=7,ECX=0):EDX[22,24,25]); gcc 12's __builtin_cpu_supports knows them
  // only partly, so read CPUID directly. Leaf 7 only where the CPU has it: asking for a leaf
  // above the maximum returns the highest leaf's data, whose bits mean something else.
  unsigned a = 0, b = 0, c = 0, d = 0;
  __asm__ __volatile__("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(0), "c"(0));
  f.intel = b == 0x756e6547u && d == 0x49656e69u && c == 0x6c65746eu;  // "Genu" "ineI" "ntel"
  if (a >= 7) {
    __asm__ __volatile__("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(7), "c"(0));
    f.amx_bf16 = (d >> 22) & 1u;
    f.amx_tile = (d >> 24) & 1u;
    f.amx_int8 = (d >> 25) & 1u;
    const unsigned subleaves = a;  // CPUID.(EAX=7,ECX=0):EAX, the highest subleaf of leaf 7
    if (subleaves >= 1) {
      // AVX-VNNI: CPUID.(EAX=7,ECX=1):EAX[4]; VEX-encoded, so it needs the AVX state the avx2
      // flag above already checked (XCR0).
      __asm__ __volatile__("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(7), "c"(1));
      f.avx_vnni = f.avx2 && ((a >> 4) & 1u);
    }
  }
#endif
  return f;
}

// Each level requires every feature its compile flags enable (cpu_features.hpp, Target).
Isa hardware_level(const CpuFeatures& f) {
  const bool avx2 = f.avx2 && f.fma && f.f16c;
  if (avx2 && f.avx512f && f.avx512bw && f.avx512vl && f.avx512dq && f.avx512cd) {
    const bool amx = f.amx_tile && f.amx_bf16 && f.amx_int8 && f.avx512_vnni && f.avx512_bf16;
    return amx ? Isa::amx : Isa::avx512;
  }
  if (avx2) return Isa::avx2;
  return Isa::scalar;
}

// enabled_targets() for each level in force, computed once from the hardware features. A level
// never exceeds hardware_level(), so avx2 / avx512 / amx need no further feature test here.
struct TargetMasks {
  unsigned by_level[4];
};

TargetMasks make_target_masks(const CpuFeatures& f) {
  auto bit = [](Target t) { return 1u << static_cast<int>(t); };
  TargetMasks m{};
  m.by_level[0] = bit(Target::scalar);
  // AEREC_AVX_VNNI=0: leave avxvnni off (tests and benchmarks of the plain AVX2 int8 kernels).
  const char* vnni_env = std::getenv("AEREC_AVX_VNNI");
  const bool avx_vnni = f.avx_vnni && !(vnni_env != nullptr && std::string(vnni_env) == "0");
  m.by_level[1] = m.by_level[0] | bit(Target::avx2) | (avx_vnni ? bit(Target::avxvnni) : 0u);
  m.by_level[2] = m.by_level[1] | bit(Target::avx512) |
                  (f.avx512_vnni ? bit(Target::avx512vnni) : 0u) |
                  (f.avx512_bf16 ? bit(Target::avx512bf16) : 0u);
  m.by_level[3] = m.by_level[2] | bit(Target::amx);
  return m;
}

std::atomic<int> g_cap{-1};

int env_cap() {
  const char* s = std::getenv("AEREC_ISA");
  if (s == nullptr || *s == '\0') return static_cast<int>(Isa::amx);
  try {
    return static_cast<int>(isa_from_name(s));
  } catch (const std::invalid_argument&) {
    return static_cast<int>(Isa::amx);  // the Python layer validates and warns
  }
}

}  // namespace

const CpuFeatures& cpu_features() {
  static const CpuFeatures f = detect();
  return f;
}

Isa detected_isa() { return hardware_level(cpu_features()); }

Isa active_isa() {
  int cap = g_cap.load(std::memory_order_relaxed);
  if (cap < 0) {
    cap = env_cap();
    g_cap.store(cap, std::memory_order_relaxed);
  }
  int hw = static_cast<int>(detected_isa());
  int lvl = cap < hw ? cap : hw;
  if (lvl == static_cast<int>(Isa::amx) && !request_amx()) lvl = static_cast<int>(Isa::avx512);
  return static_cast<Isa>(lvl);
}

Isa set_isa_cap(Isa cap) {
  g_cap.store(static_cast<int>(cap), std::memory_order_relaxed);
  return active_isa();
}

bool request_amx() {
  static std::once_flag once;
  static bool granted = false;
  std::call_once(once, [] {
#if defined(__linux__) && defined(AEREC_X86)
    const CpuFeatures& f = cpu_features();
    if (f.amx_tile) {
      constexpr long ARCH_REQ_XCOMP_PERM = 0x1023;
      constexpr long XFEATURE_XTILEDATA = 18;
      granted = syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0;
    }
#endif
  });
  return granted;
}

unsigned enabled_targets() {
  static const TargetMasks masks = make_target_masks(cpu_features());
  return masks.by_level[static_cast<int>(active_isa())];
}

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::scalar: return "scalar";
    case Isa::avx2: return "avx2";
    case Isa::avx512: return "avx512";
    case Isa::amx: return "amx";
  }
  return "unknown";
}

Isa isa_from_name(const std::string& name) {
  if (name == "scalar") return Isa::scalar;
  if (name == "avx2") return Isa::avx2;
  if (name == "avx512") return Isa::avx512;
  if (name == "amx") return Isa::amx;
  throw std::invalid_argument("unknown instruction set '" + name +
                              "'; use one of scalar, avx2, avx512, amx");
}

}  // namespace aerec::cpu

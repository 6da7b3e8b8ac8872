#include "aerec/parallel.hpp"

#include <atomic>

#if defined(__linux__)
#include <sched.h>
#endif

namespace aerec::cpu {
namespace {

int available_cores() {
#if defined(__linux__)
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    int n = CPU_COUNT(&set);
    if (n > 0) return n;
  }
#endif
#ifdef AEREC_OPENMP
  return omp_get_num_procs();
#else
  return 1;
#endif
}

std::atomic<int> g_threads{0};

}  // namespace

int get_num_threads() {
  int n = g_threads.load(std::memory_order_relaxed);
  return n > 0 ? n : available_cores();
}

void set_num_threads(int n) { g_threads.store(n > 0 ? n : 0, std::memory_order_relaxed); }

int resolve_threads(int num_threads) {
#ifdef AEREC_OPENMP
  return num_threads > 0 ? num_threads : get_num_threads();
#else
  (void)num_threads;
  return 1;
#endif
}

}  // namespace aerec::cpu

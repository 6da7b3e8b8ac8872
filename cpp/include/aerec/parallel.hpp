// One threading runtime (the module's OpenMP); helpers that keep exceptions inside regions.
#pragma once
#include <exception>
#include <mutex>

#ifdef AEREC_OPENMP
#include <omp.h>
#endif

namespace aerec::cpu {

// Thread count used when a kernel is passed num_threads <= 0.
int get_num_threads();
void set_num_threads(int n);  // n <= 0 restores the default (cores available to the process)
int resolve_threads(int num_threads);  // <=0 -> get_num_threads()

// Index of the calling thread in the current OpenMP team (0 outside a region or without OpenMP).
inline int thread_id() {
#ifdef AEREC_OPENMP
  return omp_get_thread_num();
#else
  return 0;
#endif
}

// Carries the first exception out of an OpenMP region: call `run` inside, `rethrow` after.
class ExceptionSlot {
 public:
  template <class F>
  void run(F&& f) noexcept {
    try {
      f();
    } catch (...) {
      std::lock_guard<std::mutex> lock(m_);
      if (!e_) e_ = std::current_exception();
    }
  }
  void rethrow() {
    if (e_) std::rethrow_exception(e_);
  }
  bool failed() const { return static_cast<bool>(e_); }

 private:
  std::mutex m_;
  std::exception_ptr e_;
};

}  // namespace aerec::cpu

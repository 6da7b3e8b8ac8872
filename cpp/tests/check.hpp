// The one CHECK of the plain C++ tests (no framework): a failed check prints
//   FAIL file:line: expression[: message]
// to stderr, counts one failure and carries on; main() ends with `return aerec_test::finish("name");`
// which prints the summary line and gives a non-zero exit status when anything failed.
//
//   CHECK(x == 3);                              // the expression is the message
//   CHECK(x == 3, "row %d: got %d", r, x);      // printf-style detail after it
//
// Thread-safe: the counter is atomic and each report is written in one call, so checks may fail in
// several threads at once (test_concurrency). Only the first kMaxReports failures are printed (a
// broken kernel fails thousands of elementwise checks); all are counted.
#pragma once

#include <atomic>
#include <cstdarg>
#include <cstdio>

namespace aerec_test {

constexpr int kMaxReports = 20;

inline std::atomic<int>& failure_count() {
  static std::atomic<int> n{0};
  return n;
}

inline int failures() { return failure_count().load(); }

// Counts one failure and prints it (detail may be null).
inline void report(const char* file, int line, const char* expr, const char* detail) {
  const int n = ++failure_count();
  if (n > kMaxReports) return;
  std::fprintf(stderr, "FAIL %s:%d: %s%s%s\n%s", file, line, expr, detail ? ": " : "", detail ? detail : "",
               n == kMaxReports ? "(further failures are counted, not shown)\n" : "");
}

inline void fail(const char* file, int line, const char* expr) { report(file, line, expr, nullptr); }

#if defined(__GNUC__) || defined(__clang__)
__attribute__((format(printf, 4, 5)))
#endif
inline void fail(const char* file, int line, const char* expr, const char* fmt, ...) {
  char detail[1024];
  std::va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(detail, sizeof detail, fmt, ap);
  va_end(ap);
  report(file, line, expr, detail);
}

// The summary line and the exit status for main().
inline int finish(const char* test_name) {
  std::fflush(stdout);
  const int n = failures();
  if (n) {
    std::fprintf(stderr, "%s: %d failure(s)\n", test_name, n);
    return 1;
  }
  std::printf("%s: all passed\n", test_name);
  return 0;
}

}  // namespace aerec_test

// CHECK(cond) or CHECK(cond, fmt, args...): picks the form by argument count (up to 15 message
// arguments) so that CHECK(cond) needs no empty variadic argument (not ISO C++17).
#define AEREC_CHECK_EXPR_(cond)                                                 \
  do {                                                                          \
    if (!(cond)) ::aerec_test::fail(__FILE__, __LINE__, #cond);                 \
  } while (0)
#define AEREC_CHECK_MSG_(cond, ...)                                             \
  do {                                                                          \
    if (!(cond)) ::aerec_test::fail(__FILE__, __LINE__, #cond, __VA_ARGS__);    \
  } while (0)
#define AEREC_CHECK_PICK_(_1, _2, _3, _4, _5, _6, _7, _8, _9, _10, _11, _12, _13, _14, _15, _16, \
                          NAME, ...)                                                             \
  NAME
#define CHECK(...)                                                                                   \
  AEREC_CHECK_PICK_(__VA_ARGS__, AEREC_CHECK_MSG_, AEREC_CHECK_MSG_, AEREC_CHECK_MSG_,               \
                    AEREC_CHECK_MSG_, AEREC_CHECK_MSG_, AEREC_CHECK_MSG_, AEREC_CHECK_MSG_,          \
                    AEREC_CHECK_MSG_, AEREC_CHECK_MSG_, AEREC_CHECK_MSG_, AEREC_CHECK_MSG_,          \
                    AEREC_CHECK_MSG_, AEREC_CHECK_MSG_, AEREC_CHECK_MSG_, AEREC_CHECK_MSG_,          \
                    AEREC_CHECK_EXPR_, unused_)                                                      \
  (__VA_ARGS__)

// Error conventions: std::invalid_argument -> ValueError, std::out_of_range -> IndexError,
// std::bad_alloc -> MemoryError (mapped in the bindings).
#pragma once
#include <stdexcept>
#include <string>

#define AEREC_CHECK_ARG(cond, msg)                                          \
  do {                                                                      \
    if (!(cond)) throw std::invalid_argument(std::string("aerec: ") + (msg)); \
  } while (0)

#define AEREC_CHECK_INDEX(cond, msg)                                      \
  do {                                                                    \
    if (!(cond)) throw std::out_of_range(std::string("aerec: ") + (msg)); \
  } while (0)

// Each bindings file registers its own functions, so features land without editing one shared
// module file:  static aerec::bind::Registrar reg("topk", &bind_topk);
#pragma once
#include <pybind11/pybind11.h>

#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace aerec::bind {

using BindFn = void (*)(pybind11::module_&);

inline std::vector<std::pair<std::string, BindFn>>& registry() {
  static std::vector<std::pair<std::string, BindFn>> r;
  return r;
}

struct Registrar {
  Registrar(const char* name, BindFn fn) { registry().emplace_back(name, fn); }
};

}  // namespace aerec::bind

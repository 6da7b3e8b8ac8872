// aerec._core: pybind11 glue only. Feature files register themselves (registry.hpp).
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <new>
#include <stdexcept>

#include "aerec/cpu_features.hpp"
#include "aerec/parallel.hpp"
#include "registry.hpp"

#ifndef AEREC_VERSION
#define AEREC_VERSION "0.0.0"
#endif

namespace py = pybind11;
using namespace aerec;

PYBIND11_MODULE(_core, m) {
  m.doc() = "aerec compiled kernels (C++/OpenMP/SIMD)";
  m.attr("__version__") = AEREC_VERSION;
#ifdef AEREC_OPENMP
  m.attr("USES_OPENMP") = true;
#else
  m.attr("USES_OPENMP") = false;
#endif

  m.def("cpu_features", [] {
    const auto& f = cpu::cpu_features();
    py::dict d;
    d["avx2"] = f.avx2 && f.fma;
    d["avx512"] = f.avx512f && f.avx512bw && f.avx512vl && f.avx512dq;
    d["avx512_bf16"] = f.avx512_bf16;
    d["avx512_vnni"] = f.avx512_vnni;
    d["avx_vnni"] = f.avx_vnni;
    d["amx_tile"] = f.amx_tile;
    d["amx_bf16"] = f.amx_bf16;
    d["amx_int8"] = f.amx_int8;
    d["amx_permitted"] = f.amx_tile ? cpu::request_amx() : false;
    return d;
  }, "Instruction sets the processor supports (and whether the OS granted AMX tile data).");
  m.def("detected_isa", [] { return std::string(cpu::isa_name(cpu::detected_isa())); });
  m.def("active_isa", [] { return std::string(cpu::isa_name(cpu::active_isa())); },
        "Dispatch level in force: the hardware level capped by AEREC_ISA / set_isa.");
  m.def("set_isa", [](const std::string& name) {
    return std::string(cpu::isa_name(cpu::set_isa_cap(cpu::isa_from_name(name))));
  }, py::arg("name"), "Cap the dispatch level (scalar, avx2, avx512, amx); returns the level in force.");
  m.def("get_num_threads", &cpu::get_num_threads);
  m.def("set_num_threads", &cpu::set_num_threads, py::arg("n"));

  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const std::out_of_range& e) {
      PyErr_SetString(PyExc_IndexError, e.what());
    } catch (const std::invalid_argument& e) {
      PyErr_SetString(PyExc_ValueError, e.what());
    } catch (const std::bad_alloc&) {
      PyErr_SetString(PyExc_MemoryError, "aerec: out of memory");
    }
  });

  for (auto& [name, fn] : bind::registry()) fn(m);
}

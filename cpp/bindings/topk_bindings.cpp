// aerec._core.TopkIndex: pybind11 glue for cpu::TopkIndex. Python (aerec.search) validates and
// converts the arrays once; these checks only guard direct calls against bad memory access.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <memory>
#include <string>

#include "aerec/topk.hpp"
#include "arrays.hpp"
#include "registry.hpp"

namespace py = pybind11;
using namespace aerec;

namespace {

cpu::TopkPrecision precision_from(const std::string& s) {
  if (s == "fp32") return cpu::TopkPrecision::fp32;
  if (s == "bf16") return cpu::TopkPrecision::bf16;
  if (s == "int8") return cpu::TopkPrecision::int8;
  throw py::value_error("precision must be 'fp32', 'bf16' or 'int8', got '" + s + "'");
}

const char* precision_name(cpu::TopkPrecision p) {
  switch (p) {
    case cpu::TopkPrecision::fp32: return "fp32";
    case cpu::TopkPrecision::bf16: return "bf16";
    case cpu::TopkPrecision::int8: return "int8";
  }
  return "?";
}

std::unique_ptr<cpu::TopkIndex> make_index(const py::array& items, const py::object& bias,
                                           const std::string& precision, double rescore, bool prune,
                                           int num_threads) {
  MatrixView<const float> iv = bind::matrix_in(items, "items");
  const float* bp = nullptr;
  py::array b;
  if (!bias.is_none()) {
    b = py::reinterpret_borrow<py::array>(bias);
    bind::require_dtype<float>(b, "bias");
    if (b.ndim() != 1 || b.shape(0) != iv.rows || (b.shape(0) > 1 && b.strides(0) != 4))
      throw py::value_error("bias must be a contiguous 1-D float32 array of length n_items");
    bp = static_cast<const float*>(b.data());
  }
  cpu::TopkOptions opt;
  opt.precision = precision_from(precision);
  opt.rescore = rescore;
  opt.prune = prune;
  py::gil_scoped_release release;
  return std::make_unique<cpu::TopkIndex>(iv, bp, opt, num_threads);
}

py::tuple search(const cpu::TopkIndex& ix, const py::array& queries, std::int64_t k,
                 const py::object& indptr, const py::object& indices, int num_threads) {
  MatrixView<const float> qv = bind::matrix_in(queries, "queries");
  if (k < 1) throw py::value_error("k must be >= 1, got " + std::to_string(k));
  if (qv.cols != ix.dim())
    throw py::value_error("queries have " + std::to_string(qv.cols) + " columns, items have " +
                          std::to_string(ix.dim()));
  CsrView<float> ex;
  bool has_ex = false;
  py::array ip, ind;  // own any conversion while the search reads it
  if (!indptr.is_none() || !indices.is_none()) {
    if (indptr.is_none() || indices.is_none())
      throw py::type_error("exclude indptr and indices go together: pass both or neither");
    ip = indptr.cast<py::array>();
    ind = indices.cast<py::array>();
    ex = bind::csr_in(ip, ind, py::none(), qv.rows, ix.size(), "exclude");
    has_ex = true;
  }
  const std::int64_t kk = std::min<std::int64_t>(k, ix.size());
  py::array_t<std::int32_t> ids({static_cast<py::ssize_t>(qv.rows), static_cast<py::ssize_t>(kk)});
  py::array_t<float> scores({static_cast<py::ssize_t>(qv.rows), static_cast<py::ssize_t>(kk)});
  std::int32_t* idp = ids.mutable_data();
  float* sp = scores.mutable_data();
  {
    py::gil_scoped_release release;
    ix.search(qv, k, has_ex ? &ex : nullptr, idp, sp, num_threads);
  }
  return py::make_tuple(ids, scores);
}

void bind_topk(py::module_& m) {
  py::class_<cpu::TopkIndex>(m, "TopkIndex",
                             "Packed top-k inner-product index (see aerec.search.TopK).")
      .def(py::init(&make_index), py::arg("items"), py::arg("bias") = py::none(),
           py::arg("precision") = "fp32", py::arg("rescore") = 1.25, py::arg("prune") = false,
           py::arg("num_threads") = 0)
      .def("search", &search, py::arg("queries"), py::arg("k"), py::arg("indptr") = py::none(),
           py::arg("indices") = py::none(), py::arg("num_threads") = 0,
           "queries: m x d float32 -> (ids m x min(k,n) int32, scores float32).")
      .def("memory_usage", &cpu::TopkIndex::memory_usage)
      .def("export_items", [](const cpu::TopkIndex& ix) {
        py::array_t<float> out({static_cast<py::ssize_t>(ix.size()), static_cast<py::ssize_t>(ix.dim())});
        ix.export_items(out.mutable_data());
        return out;
      })
      .def("export_bias", [](const cpu::TopkIndex& ix) -> py::object {
        if (!ix.has_bias()) return py::none();
        py::array_t<float> out(static_cast<py::ssize_t>(ix.size()));
        ix.export_bias(out.mutable_data());
        return std::move(out);
      })
      .def_property_readonly("n_items", &cpu::TopkIndex::size)
      .def_property_readonly("dim", &cpu::TopkIndex::dim)
      .def_property_readonly("precision", [](const cpu::TopkIndex& ix) {
        return std::string(precision_name(ix.options().precision));
      })
      .def_property_readonly("rescore", [](const cpu::TopkIndex& ix) { return ix.options().rescore; })
      .def_property_readonly("prune", [](const cpu::TopkIndex& ix) { return ix.options().prune; });
  m.def("topk_mr", [] { return cpu::topk_kernels().mr; }, "Query panel height of the active top-k kernel.");
}

bind::Registrar reg("topk", &bind_topk);

}  // namespace

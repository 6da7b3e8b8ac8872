// aerec._core.CompressedLinear: pybind11 glue for cpu::CompressedLinear. Python
// (backends/cpp.py, _quant.validate_layer) validates the packed arrays first; these checks guard
// direct calls against bad memory access.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <memory>
#include <string>

#include "aerec/qlinear.hpp"
#include "arrays.hpp"
#include "registry.hpp"

namespace py = pybind11;
using namespace aerec;

namespace {

const char* kPrecisions[] = {"fp32", "bf16", "int8"};

// A C-contiguous array of dtype T with `count` elements (any shape), or throws.
template <class T>
const T* need(const py::object& o, const char* name, std::int64_t count, const char* np_dtype) {
  if (o.is_none()) throw py::value_error(std::string("packed layer array '") + name + "' is missing");
  if (!py::isinstance<py::array>(o)) throw py::type_error(std::string(name) + " must be a NumPy array");
  const auto a = py::reinterpret_borrow<py::array>(o);
  if (!a.dtype().is(py::dtype::of<T>()))
    throw py::type_error(std::string("packed layer array '") + name + "' must have dtype " + np_dtype + ", got " +
                         std::string(py::str(a.dtype())));
  if (!(a.flags() & py::array::c_style))
    throw py::value_error(std::string("packed layer array '") + name + "' must be C-contiguous");
  if (count >= 0 && a.size() != count)
    throw py::value_error(std::string("packed layer array '") + name + "' has " + std::to_string(a.size()) +
                          " elements, expected " + std::to_string(count));
  return static_cast<const T*>(a.data());
}

std::unique_ptr<cpu::CompressedLinear> make(const py::object& meta_o, const py::object& W, const py::object& b,
                                            const py::object& scale, const py::object& indptr,
                                            const py::object& indices, const py::object& data, int num_threads) {
  const std::int64_t* meta = need<std::int64_t>(meta_o, "meta", 8, "int64");
  if (meta[0] != 1) throw py::value_error("packed layer format version " + std::to_string(meta[0]) + " is not 1");
  cpu::QlinearArrays a;
  a.n_in = meta[1];
  a.n_out = meta[2];
  a.precision = static_cast<int>(meta[3]);
  a.sparse = meta[4] != 0;
  a.csr_input = meta[5] != 0;
  if (a.n_in < 1 || a.n_out < 1 || a.precision < 0 || a.precision > 2 || meta[4] < 0 || meta[4] > 1 ||
      meta[5] < 0 || meta[5] > 1 || meta[6] < 0 || meta[6] > 1)
    throw py::value_error("packed layer array 'meta' has bad sizes or codes");
  if (meta[6]) a.bias = need<float>(b, "b", a.n_out, "float32");
  else if (!b.is_none()) throw py::value_error("packed layer array 'b' given but meta says no bias");
  if (a.precision == 2) a.scale = need<float>(scale, "scale", a.n_out, "float32");
  if (!a.sparse) {
    const std::int64_t count = a.n_in * a.n_out;
    if (a.precision == 0) a.W = need<float>(W, "W", count, "float32");
    else if (a.precision == 1) a.W = need<std::uint16_t>(W, "W", count, "uint16");
    else a.W = need<std::int8_t>(W, "W", count, "int8");
  } else {
    const std::int64_t outer = a.csr_input ? a.n_in : a.n_out;
    const std::int64_t inner = a.csr_input ? a.n_out : a.n_in;
    a.indptr = need<std::int64_t>(indptr, "indptr", outer + 1, "int64");
    a.idx16 = inner < 65536;
    const std::int64_t nnz = a.indptr[outer];
    if (nnz < 0) throw py::value_error("packed layer array 'indptr' ends below 0");
    a.nnz = nnz;
    if (a.idx16) a.indices = need<std::uint16_t>(indices, "indices", nnz, "uint16");
    else a.indices = need<std::int32_t>(indices, "indices", nnz, "int32");
    if (a.precision == 0) a.data = need<float>(data, "data", nnz, "float32");
    else if (a.precision == 1) a.data = need<std::uint16_t>(data, "data", nnz, "uint16");
    else a.data = need<std::int8_t>(data, "data", nnz, "int8");
  }
  py::gil_scoped_release release;
  return std::make_unique<cpu::CompressedLinear>(a, num_threads);
}

py::array_t<float> forward(const cpu::CompressedLinear& L, const py::array& x, const std::string& activation,
                           int num_threads) {
  MatrixView<const float> xv = bind::matrix_in(x, "x");
  if (xv.cols != L.n_in())
    throw py::value_error("x has " + std::to_string(xv.cols) + " columns but the layer has " +
                          std::to_string(L.n_in()) + " inputs");
  const cpu::Activation act = cpu::activation_from_name(activation);
  py::array_t<float> out({static_cast<py::ssize_t>(xv.rows), static_cast<py::ssize_t>(L.n_out())});
  float* op = out.mutable_data();
  {
    py::gil_scoped_release release;
    L.forward(xv, act, op, L.n_out(), num_threads);
  }
  return out;
}

py::array_t<float> forward_csr(const cpu::CompressedLinear& L, const py::array& indptr, const py::array& indices,
                               const py::object& data, const std::string& activation, int num_threads) {
  if (!L.csr_input())
    throw py::value_error("forward_csr needs a layer packed with input='csr' (rows by input); this layer was "
                          "packed with input='dense': call forward(x) with dense rows");
  CsrView<float> xv = bind::csr_in(indptr, indices, data, -1, L.n_in(), "x");
  const cpu::Activation act = cpu::activation_from_name(activation);
  py::array_t<float> out({static_cast<py::ssize_t>(xv.rows), static_cast<py::ssize_t>(L.n_out())});
  float* op = out.mutable_data();
  {
    py::gil_scoped_release release;
    L.forward_csr(xv, act, op, L.n_out(), num_threads);
  }
  return out;
}

// The exclusion lists (optional, both or neither), the (rows, min(k, n_out)) outputs, and the
// kernel call without the GIL: what topk and topk_csr share.
template <class Fn>
py::tuple run_topk(std::int64_t rows, std::int64_t n_out, std::int64_t k, const py::object& ex_ptr,
                   const py::object& ex_idx, Fn&& kernel) {
  const std::int64_t* ep = nullptr;
  const std::int32_t* ei = nullptr;
  py::array pa, ia;
  if (!ex_ptr.is_none() || !ex_idx.is_none()) {
    if (ex_ptr.is_none() || ex_idx.is_none())
      throw py::type_error("exclude_indptr and exclude_indices go together: pass both or neither");
    pa = ex_ptr.cast<py::array>();
    ia = ex_idx.cast<py::array>();
    CsrView<float> ev = bind::csr_in(pa, ia, py::none(), rows, n_out, "exclude");
    ep = ev.indptr;
    ei = ev.indices;
  }
  const std::int64_t kk = std::min<std::int64_t>(k, n_out);
  py::array_t<std::int32_t> ids({static_cast<py::ssize_t>(rows), static_cast<py::ssize_t>(kk)});
  py::array_t<float> scores({static_cast<py::ssize_t>(rows), static_cast<py::ssize_t>(kk)});
  std::int32_t* idp = ids.mutable_data();
  float* sp = scores.mutable_data();
  {
    py::gil_scoped_release release;
    kernel(ep, ei, idp, sp);
  }
  return py::make_tuple(ids, scores);
}

py::tuple topk(const cpu::CompressedLinear& L, const py::array& x, std::int64_t k, const py::object& ex_ptr,
               const py::object& ex_idx, int num_threads) {
  if (L.csr_input())
    throw py::value_error("topk needs a layer packed with input='dense' (an output layer fed dense "
                          "activations); this layer was packed with input='csr'");
  MatrixView<const float> xv = bind::matrix_in(x, "x");
  if (k < 1) throw py::value_error("k must be >= 1, got " + std::to_string(k));
  if (xv.cols != L.n_in())
    throw py::value_error("x has " + std::to_string(xv.cols) + " columns but the layer has " +
                          std::to_string(L.n_in()) + " inputs");
  return run_topk(xv.rows, L.n_out(), k, ex_ptr, ex_idx, [&](const std::int64_t* ep, const std::int32_t* ei,
                                                           std::int32_t* idp, float* sp) {
    L.topk(xv, k, ep, ei, idp, sp, num_threads);
  });
}

py::tuple topk_csr(const cpu::CompressedLinear& L, const py::array& indptr, const py::array& indices,
                   const py::object& data, std::int64_t k, const py::object& ex_ptr, const py::object& ex_idx,
                   int num_threads) {
  if (!L.csr_input())
    throw py::value_error("topk_csr needs a layer packed with input='csr' (rows by input); this layer was "
                          "packed with input='dense': call topk(x) with dense rows");
  CsrView<float> xv = bind::csr_in(indptr, indices, data, -1, L.n_in(), "x");
  if (k < 1) throw py::value_error("k must be >= 1, got " + std::to_string(k));
  return run_topk(xv.rows, L.n_out(), k, ex_ptr, ex_idx, [&](const std::int64_t* ep, const std::int32_t* ei,
                                                           std::int32_t* idp, float* sp) {
    L.topk_csr(xv, k, ep, ei, idp, sp, num_threads);
  });
}

void bind_qlinear(py::module_& m) {
  py::class_<cpu::CompressedLinear>(m, "CompressedLinear",
                                    "One packed (fp32 / bf16 / int8, dense or sparse) linear layer; see "
                                    "aerec.backends._compressed for the contract.")
      .def(py::init(&make), py::arg("meta"), py::arg("W") = py::none(), py::arg("b") = py::none(),
           py::arg("scale") = py::none(), py::arg("indptr") = py::none(), py::arg("indices") = py::none(),
           py::arg("data") = py::none(), py::arg("num_threads") = 0)
      .def("forward", &forward, py::arg("x"), py::arg("activation") = "identity", py::arg("num_threads") = 0)
      .def("forward_csr", &forward_csr, py::arg("indptr"), py::arg("indices"), py::arg("data") = py::none(),
           py::arg("activation") = "identity", py::arg("num_threads") = 0)
      .def("topk", &topk, py::arg("x"), py::arg("k"), py::arg("exclude_indptr") = py::none(),
           py::arg("exclude_indices") = py::none(), py::arg("num_threads") = 0)
      .def("topk_csr", &topk_csr, py::arg("indptr"), py::arg("indices"), py::arg("data"), py::arg("k"),
           py::arg("exclude_indptr") = py::none(), py::arg("exclude_indices") = py::none(),
           py::arg("num_threads") = 0)
      .def("memory_usage", &cpu::CompressedLinear::memory_usage)
      .def_property_readonly("n_in", &cpu::CompressedLinear::n_in)
      .def_property_readonly("n_out", &cpu::CompressedLinear::n_out)
      .def_property_readonly("precision", [](const cpu::CompressedLinear& L) { return std::string(kPrecisions[L.precision()]); })
      .def_property_readonly("sparse", &cpu::CompressedLinear::sparse)
      .def_property_readonly("input", [](const cpu::CompressedLinear& L) { return std::string(L.csr_input() ? "csr" : "dense"); })
      .def_property_readonly("has_bias", &cpu::CompressedLinear::has_bias);
}

bind::Registrar reg("qlinear", &bind_qlinear);

}  // namespace

// _core.spmm_csr: dense = X_csr @ W without densifying X (EASE scoring, fold-in encoders).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include "aerec/sparse.hpp"
#include "arrays.hpp"
#include "registry.hpp"

namespace py = pybind11;

namespace {

py::array spmm_csr(py::array indptr, py::array indices, py::array data, py::array w, int num_threads,
                   py::object out_obj) {
  using namespace aerec;
  auto W = bind::matrix_in(w, "W");
  const CsrView<float> x = bind::csr_in(indptr, indices, data, -1, W.rows, "X");
  py::array out;
  if (out_obj.is_none()) {
    out = py::array_t<float>({static_cast<py::ssize_t>(x.rows), static_cast<py::ssize_t>(W.cols)});
  } else {
    out = out_obj.cast<py::array>();
  }
  auto O = bind::matrix_out(out, "out");
  if (O.rows != x.rows || O.cols != W.cols)
    throw py::value_error("out must have shape (n_rows, W.shape[1])");
  {
    py::gil_scoped_release release;
    cpu::check_csr(x, W.rows, nullptr, 0);
    cpu::spmm_csr(x, W.data, W.stride, W.cols, nullptr, O.data, O.stride, num_threads);
  }
  return out;
}

void bind_sparse(py::module_& m) {
  m.def("spmm_csr", &spmm_csr, py::arg("indptr"), py::arg("indices"), py::arg("data"), py::arg("W"),
        py::arg("num_threads") = 0, py::arg("out") = py::none(),
        "X @ W (written into out, which may be a column slice of a larger matrix) for a CSR X (indptr int64, sorted int32 indices, float32 data) and dense float32 W.");
}

aerec::bind::Registrar reg("sparse", &bind_sparse);

}  // namespace

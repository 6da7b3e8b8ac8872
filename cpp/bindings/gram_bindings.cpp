// _core.gram_upper: X^T X (upper triangle) of a CSR matrix, for EASE.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>

#include "aerec/gram.hpp"
#include "arrays.hpp"
#include "registry.hpp"

namespace py = pybind11;

namespace {

template <class T>
void run(const aerec::CsrView<float>& X, const std::int64_t* cp, const std::int32_t* cr, py::array out,
         int threads) {
  T* g = static_cast<T*>(out.mutable_data());
  py::gil_scoped_release release;
  aerec::cpu::gram_upper<T>(X, cp, cr, g, threads);
}

void gram_upper(py::array indptr, py::array indices, py::object data, py::array csc_indptr,
                py::array csc_rows, py::array out, int num_threads) {
  using namespace aerec;
  if (out.ndim() != 2 || out.shape(0) != out.shape(1) || !(out.flags() & py::array::c_style) || !out.writeable())
    throw py::value_error("out must be a writeable square C-contiguous matrix");
  const py::ssize_t n = out.shape(0);
  const CsrView<float> X = bind::csr_in(indptr, indices, data, -1, n, "X");
  // the CSC of the same X (csc_rows are its indices): the CSR of X^T, n rows of X.rows columns
  const CsrView<float> Xc = bind::csr_in(csc_indptr, csc_rows, py::none(), n, X.rows, "X_csc");
  const std::int64_t nnz = X.indptr[X.rows];
  if (Xc.indptr[n] != nnz)
    throw py::value_error("X_csc has " + std::to_string(Xc.indptr[n]) + " entries but X has " + std::to_string(nnz) +
                          "; csc_indptr / csc_rows must be X.tocsc() of the same matrix");
  const std::int32_t* ci = X.indices;
  for (std::int64_t p = 0; p < nnz; ++p)
    if (ci[p] < 0 || ci[p] >= n) throw py::index_error("column id " + std::to_string(ci[p]) + " out of range");
  const std::int32_t* cr = Xc.indices;
  for (std::int64_t p = 0; p < nnz; ++p)
    if (cr[p] < 0 || cr[p] >= X.rows) throw py::index_error("row id out of range in csc_rows");
  const std::int64_t* cp = Xc.indptr;
  if (out.dtype().is(py::dtype::of<float>())) run<float>(X, cp, cr, out, num_threads);
  else if (out.dtype().is(py::dtype::of<double>())) run<double>(X, cp, cr, out, num_threads);
  else throw py::type_error("out must be float32 or float64");
}

void bind_gram(py::module_& m) {
  m.def("gram_upper", &gram_upper, py::arg("indptr"), py::arg("indices"), py::arg("data"),
        py::arg("csc_indptr"), py::arg("csc_rows"), py::arg("out"), py::arg("num_threads") = 0,
        "Write the upper triangle (j >= i) of X^T X into out (n x n). CSR indices must be sorted.");
}

aerec::bind::Registrar reg("gram", &bind_gram);

}  // namespace

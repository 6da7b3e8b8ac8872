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
  bind::require_dtype<std::int64_t>(indptr, "indptr");
  bind::require_dtype<std::int32_t>(indices, "indices");
  bind::require_dtype<std::int64_t>(csc_indptr, "csc_indptr");
  bind::require_dtype<std::int32_t>(csc_rows, "csc_rows");
  for (auto* a : {&indptr, &indices, &csc_indptr, &csc_rows})
    if (a->ndim() != 1 || !(a->flags() & py::array::c_style)) throw py::value_error("CSR/CSC arrays must be 1-D contiguous");
  if (out.ndim() != 2 || out.shape(0) != out.shape(1) || !(out.flags() & py::array::c_style) || !out.writeable())
    throw py::value_error("out must be a writeable square C-contiguous matrix");
  const py::ssize_t n = out.shape(0);
  if (csc_indptr.shape(0) != n + 1) throw py::value_error("csc_indptr must have n_items + 1 entries");
  CsrView<float> X;
  X.indptr = static_cast<const std::int64_t*>(indptr.data());
  X.indices = static_cast<const std::int32_t*>(indices.data());
  X.rows = indptr.shape(0) - 1;
  X.cols = n;
  const auto nnz = indices.shape(0);
  if (X.rows < 0 || X.indptr[X.rows] != nnz || csc_rows.shape(0) != nnz)
    throw py::value_error("indptr/indices/csc arrays disagree on the number of entries");
  py::array vals;
  if (!data.is_none()) {
    vals = data.cast<py::array>();
    bind::require_dtype<float>(vals, "data");
    if (vals.ndim() != 1 || vals.shape(0) != nnz || !(vals.flags() & py::array::c_style))
      throw py::value_error("data must be 1-D contiguous float32 with one value per entry");
    X.values = static_cast<const float*>(vals.data());
  }
  const auto* ci = static_cast<const std::int32_t*>(indices.data());
  for (py::ssize_t p = 0; p < nnz; ++p)
    if (ci[p] < 0 || ci[p] >= n) throw py::index_error("column id " + std::to_string(ci[p]) + " out of range");
  const auto* cr = static_cast<const std::int32_t*>(csc_rows.data());
  for (py::ssize_t p = 0; p < nnz; ++p)
    if (cr[p] < 0 || cr[p] >= X.rows) throw py::index_error("row id out of range in csc_rows");
  const auto* cp = static_cast<const std::int64_t*>(csc_indptr.data());
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

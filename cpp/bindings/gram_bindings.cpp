// _core.gram_upper: X^T X (upper triangle) of a CSR matrix, for EASE.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
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

// (indptr int64, indices int32, data float32): the k largest off-diagonal |B_ij| as CSR rows
py::tuple top_magnitude_csr(py::array B, std::int64_t k, int num_threads, std::int64_t collect_limit) {
  using namespace aerec;
  bind::require_dtype<float>(B, "B");
  if (B.ndim() != 2 || B.shape(0) != B.shape(1) || !(B.flags() & py::array::c_style))
    throw py::value_error("B must be a square C-contiguous float32 matrix; pass np.ascontiguousarray(B, np.float32)");
  const index_t n = B.shape(0);
  if (n < 2) throw py::value_error("B must be at least 2 x 2 (a 1-item EASE has no off-diagonal entries)");
  if (k < 1 || k > n * (n - 1))
    throw py::value_error("k must lie in [1, " + std::to_string(n * (n - 1)) + "] (B's off-diagonal entries), got " +
                          std::to_string(k));
  const float* b = static_cast<const float*>(B.data());
  cpu::MagnitudePlan plan;
  {
    py::gil_scoped_release release;
    plan = cpu::top_magnitude_plan(b, n, k, num_threads, collect_limit);
  }
  const std::int64_t nnz = plan.indptr[n];
  bind::i64_array indptr(n + 1);
  std::copy(plan.indptr.begin(), plan.indptr.end(), indptr.mutable_data());
  bind::i32_array indices(nnz);
  bind::f32_array data(nnz);
  {
    std::int32_t* ix = indices.mutable_data();
    float* dv = data.mutable_data();
    py::gil_scoped_release release;
    cpu::top_magnitude_fill(b, n, plan, ix, dv, num_threads);
  }
  return py::make_tuple(indptr, indices, data);
}

void bind_gram(py::module_& m) {
  m.def("top_magnitude_csr", &top_magnitude_csr, py::arg("B"), py::arg("k"), py::arg("num_threads") = 0,
        py::arg("collect_limit") = -1,
        "The k largest off-diagonal |B_ij| of a square float32 B as CSR rows (indptr, indices, data); ties at the "
        "k-th value: the first in row-major order, none when it is 0. collect_limit: the largest threshold bin "
        "decided from collected entries (-1: default; 0 forces the histogram + counting passes; for tests).");
  m.def("gram_upper", &gram_upper, py::arg("indptr"), py::arg("indices"), py::arg("data"),
        py::arg("csc_indptr"), py::arg("csc_rows"), py::arg("out"), py::arg("num_threads") = 0,
        "Write the upper triangle (j >= i) of X^T X into out (n x n). CSR indices must be sorted.");
}

aerec::bind::Registrar reg("gram", &bind_gram);

}  // namespace

// Array checks shared by the bindings: matrix_in / matrix_out for dense float32 matrices, csr_in for
// CSR matrices. Python (aerec._validation) already validated and converted; these re-check the cheap
// invariants so a direct call into _core can never read out of bounds.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>

#include "aerec/view.hpp"

namespace aerec::bind {
namespace py = pybind11;

using f32_array = py::array_t<float, py::array::c_style>;  // no forcecast: dtype must match
using i32_array = py::array_t<std::int32_t, py::array::c_style>;
using i64_array = py::array_t<std::int64_t, py::array::c_style>;

template <class T>
inline void require_dtype(const py::array& a, const char* name) {
  if (!a.dtype().is(py::dtype::of<T>())) {
    throw py::type_error(std::string(name) + " must have dtype " +
                         std::string(py::str(py::dtype::of<T>())) + ", got " +
                         std::string(py::str(a.dtype())) + "; convert it with np.asarray(x, dtype=...)");
  }
}

// A 2-D float32 matrix with a contiguous last dimension (row stride allowed).
inline MatrixView<const float> matrix_in(const py::array& a, const char* name) {
  require_dtype<float>(a, name);
  if (a.ndim() != 2) throw py::value_error(std::string(name) + " must be 2-D, got ndim=" + std::to_string(a.ndim()));
  const auto isz = static_cast<py::ssize_t>(sizeof(float));
  if (a.shape(0) == 0 || a.shape(1) == 0) {  // empty: strides are meaningless
    return MatrixView<const float>{static_cast<const float*>(a.data()), a.shape(0), a.shape(1), a.shape(1)};
  }
  if (a.shape(1) > 1 && a.strides(1) != isz)
    throw py::value_error(std::string(name) + " must have a contiguous last dimension; try np.ascontiguousarray");
  if (a.shape(0) > 1 && (a.strides(0) % isz != 0 || a.strides(0) < a.shape(1) * isz))
    throw py::value_error(std::string(name) + " has an unsupported row stride; try np.ascontiguousarray");
  MatrixView<const float> v;
  v.data = static_cast<const float*>(a.data());
  v.rows = a.shape(0);
  v.cols = a.shape(1);
  v.stride = a.shape(0) > 1 ? a.strides(0) / isz : a.shape(1);
  if (v.stride < v.cols) v.stride = v.cols;
  return v;
}

// A 1-D C-contiguous array of exactly dtype T (`what` names it in messages, e.g. "X.indptr").
template <class T>
inline void require_vector(const py::array& a, const std::string& what, const char* np_dtype) {
  if (!a.dtype().is(py::dtype::of<T>()))
    throw py::type_error(what + " must have dtype " + np_dtype + ", got " + std::string(py::str(a.dtype())) +
                         "; convert it with np.asarray(" + what + ", dtype=np." + np_dtype + ")");
  if (a.ndim() != 1)
    throw py::value_error(what + " must be 1-D, got ndim=" + std::to_string(a.ndim()));
  if (!(a.flags() & py::array::c_style))
    throw py::value_error(what + " must be contiguous; pass np.ascontiguousarray(" + what + ")");
}

// A CSR matrix (n_rows x n_cols) from its three arrays: indptr int64 (n_rows + 1), indices int32
// (nnz), data float32 (nnz) or None (every stored entry is 1). n_rows < 0: as many rows as indptr
// gives. Checks in O(1): dtypes, 1-D contiguity, the lengths, indptr[0] == 0 and indptr[-1] == nnz;
// the O(nnz) checks (indptr non-decreasing, column ids in [0, n_cols), sorted rows) stay with the
// kernel or binding that reads the matrix. `name` prefixes every message ("X" -> "X.indptr ...").
// The view points into the arrays themselves (no conversion), so they must outlive it.
inline CsrView<float> csr_in(const py::array& indptr, const py::array& indices, const py::object& data,
                             index_t n_rows, index_t n_cols, const char* name) {
  const std::string n(name);
  require_vector<std::int64_t>(indptr, n + ".indptr", "int64");
  require_vector<std::int32_t>(indices, n + ".indices", "int32");
  if (n_rows < 0) {
    if (indptr.shape(0) == 0)
      throw py::value_error(n + ".indptr is empty; a CSR matrix with n_rows rows has n_rows + 1 indptr entries "
                                "(at least [0])");
    n_rows = indptr.shape(0) - 1;
  }
  if (n_cols < 0) throw py::value_error(n + " has a negative column count (" + std::to_string(n_cols) + ")");
  if (indptr.shape(0) != n_rows + 1)
    throw py::value_error(n + ".indptr has " + std::to_string(indptr.shape(0)) + " entries, but " + n + " must have " +
                          std::to_string(n_rows) + " rows, so " + std::to_string(n_rows + 1) +
                          " (n_rows + 1) entries; pass a CSR matrix with that many rows");
  const auto nnz = static_cast<std::int64_t>(indices.shape(0));
  CsrView<float> v;
  v.indptr = static_cast<const std::int64_t*>(indptr.data());
  v.indices = static_cast<const std::int32_t*>(indices.data());
  v.rows = n_rows;
  v.cols = n_cols;
  if (v.indptr[0] != 0)
    throw py::value_error(n + ".indptr[0] must be 0, got " + std::to_string(v.indptr[0]) +
                          "; the CSR structure is corrupt (rebuild it with scipy.sparse.csr_matrix)");
  if (v.indptr[n_rows] != nnz)
    throw py::value_error(n + ".indptr[-1] is " + std::to_string(v.indptr[n_rows]) + " but " + n + ".indices has " +
                          std::to_string(nnz) + " entries; they must agree (indptr[-1] == nnz): call " + n +
                          ".prune() or rebuild the CSR matrix");
  if (!data.is_none()) {
    if (!py::isinstance<py::array>(data))
      throw py::type_error(n + ".data must be a float32 NumPy array or None (every entry 1), got " +
                           std::string(Py_TYPE(data.ptr())->tp_name));
    const auto vals = py::reinterpret_borrow<py::array>(data);
    require_vector<float>(vals, n + ".data", "float32");
    if (vals.shape(0) != nnz)
      throw py::value_error(n + ".data has " + std::to_string(vals.shape(0)) + " entries but " + n + ".indices has " +
                            std::to_string(nnz) + "; pass one value per stored entry (or None for all ones)");
    v.values = static_cast<const float*>(vals.data());
  }
  return v;
}

inline MatrixView<float> matrix_out(py::array& a, const char* name) {
  if (!a.writeable()) throw py::value_error(std::string(name) + " must be writeable");
  auto v = matrix_in(a, name);
  return MatrixView<float>{const_cast<float*>(v.data), v.rows, v.cols, v.stride};
}

}  // namespace aerec::bind

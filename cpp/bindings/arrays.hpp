// Array checks shared by the bindings. Python (_arrays.py) already validated and converted; these
// re-check the cheap invariants so a direct call into _core can never read out of bounds.
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

inline MatrixView<float> matrix_out(py::array& a, const char* name) {
  if (!a.writeable()) throw py::value_error(std::string(name) + " must be writeable");
  auto v = matrix_in(a, name);
  return MatrixView<float>{const_cast<float*>(v.data), v.rows, v.cols, v.stride};
}

}  // namespace aerec::bind

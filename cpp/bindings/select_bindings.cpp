// _core.select_topk_rows: top-k of dense score rows with exclusion.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include "aerec/select.hpp"
#include "arrays.hpp"
#include "registry.hpp"

namespace py = pybind11;

namespace {

py::tuple select_topk_rows(py::array scores, long long k, py::object ex_indptr, py::object ex_indices,
                           int num_threads) {
  using namespace aerec;
  auto s = bind::matrix_in(scores, "scores");
  if (k <= 0) throw py::value_error("k must be positive");
  const std::int64_t* ip = nullptr;
  const std::int32_t* ix = nullptr;
  py::array indptr, indices;
  if (!ex_indptr.is_none()) {
    indptr = ex_indptr.cast<py::array>();
    indices = ex_indices.cast<py::array>();
    bind::require_dtype<std::int64_t>(indptr, "exclude indptr");
    bind::require_dtype<std::int32_t>(indices, "exclude indices");
    if (indptr.ndim() != 1 || indptr.shape(0) != s.rows + 1 || !(indptr.flags() & py::array::c_style))
      throw py::value_error("exclude must have one row per score row (indptr of length n+1, contiguous)");
    if (indices.ndim() != 1 || !(indices.flags() & py::array::c_style))
      throw py::value_error("exclude indices must be 1-D contiguous int32");
    ip = static_cast<const std::int64_t*>(indptr.data());
    ix = static_cast<const std::int32_t*>(indices.data());
    if (ip[s.rows] > indices.shape(0)) throw py::value_error("exclude indptr points past its indices");
  }
  py::array_t<std::int32_t> ids({static_cast<py::ssize_t>(s.rows), static_cast<py::ssize_t>(k)});
  py::array_t<float> out({static_cast<py::ssize_t>(s.rows), static_cast<py::ssize_t>(k)});
  auto* idp = ids.mutable_data();
  auto* op = out.mutable_data();
  {
    py::gil_scoped_release release;
    cpu::select_topk_rows(s, k, ip, ix, idp, op, num_threads);
  }
  return py::make_tuple(ids, out);
}

void bind_select(py::module_& m) {
  m.def("select_topk_rows", &select_topk_rows, py::arg("scores"), py::arg("k"),
        py::arg("exclude_indptr") = py::none(), py::arg("exclude_indices") = py::none(),
        py::arg("num_threads") = 0,
        "Top-k per row of a float32 score matrix; exclusion CSR applied in-kernel. "
        "Returns (ids int32 (n,k), scores float32 (n,k)), padded with -1/-inf.");
}

aerec::bind::Registrar reg("select", &bind_select);

}  // namespace

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
  py::array indptr, indices;  // own any conversion while the kernel reads it
  if (!ex_indptr.is_none() || !ex_indices.is_none()) {
    if (ex_indptr.is_none() || ex_indices.is_none())
      throw py::type_error("exclude_indptr and exclude_indices go together: pass both or neither");
    indptr = ex_indptr.cast<py::array>();
    indices = ex_indices.cast<py::array>();
    const CsrView<float> ex = bind::csr_in(indptr, indices, py::none(), s.rows, s.cols, "exclude");
    ip = ex.indptr;
    ix = ex.indices;
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

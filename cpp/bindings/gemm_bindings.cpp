// _core.gemm: float32 GEMM with fused bias + activation (aerec::cpu::sgemm), and
// _core.bias_activation (in place). Inputs must already be float32 with a contiguous last
// dimension (the Python layer converts explicitly, once); nothing here converts or copies.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <chrono>
#include <random>
#include <string>
#include <vector>

#include "aerec/activation.hpp"
#include "aerec/gemm.hpp"
#include "../src/gemm_internal.hpp"
#include "arrays.hpp"
#include "registry.hpp"

namespace py = pybind11;
using namespace aerec;

namespace {

void require_f32(const py::array& a, const char* name) {
  if (!a.dtype().is(py::dtype::of<float>()))
    throw py::type_error(std::string("gemm: ") + name + " must be float32, got " +
                         std::string(py::str(a.dtype())) + "; convert it once with np.asarray(" +
                         name + ", dtype=np.float32)");
}

py::array as_ndarray(const py::object& o, const char* name) {
  if (!py::isinstance<py::array>(o))
    throw py::type_error(std::string("gemm: ") + name + " must be a float32 NumPy array, got " +
                         std::string(py::str(py::type::of(o).attr("__name__"))) +
                         "; convert it once with np.asarray(" + name + ", dtype=np.float32)");
  return py::reinterpret_borrow<py::array>(o);
}

std::string shape_str(const py::array& a) {
  std::string s = "(";
  for (py::ssize_t i = 0; i < a.ndim(); ++i) s += (i ? ", " : "") + std::to_string(a.shape(i));
  return s + (a.ndim() == 1 ? ",)" : ")");
}

// Byte range [lo, hi) an array's elements can touch.
void extent(const py::array& a, const char*& lo, const char*& hi) {
  lo = hi = static_cast<const char*>(a.data());
  if (a.size() == 0) return;
  for (py::ssize_t d = 0; d < a.ndim(); ++d) {
    const py::ssize_t span = (a.shape(d) - 1) * a.strides(d);
    (span < 0 ? lo : hi) += span;
  }
  hi += a.itemsize();
}

// matrix_in, except that an empty array (NumPy gives those zero strides) is always accepted.
MatrixView<const float> matrix_view(const py::array& a, const char* name) {
  if (a.size() == 0) {
    MatrixView<const float> v;
    v.data = static_cast<const float*>(a.data());
    v.rows = a.shape(0);
    v.cols = a.shape(1);
    v.stride = v.cols;
    return v;
  }
  return bind::matrix_in(a, name);
}

bool overlaps(const py::array& a, const py::array& b) {
  const char *alo, *ahi, *blo, *bhi;
  extent(a, alo, ahi);
  extent(b, blo, bhi);
  return alo < bhi && blo < ahi;
}

py::array gemm(const py::object& a_obj, const py::object& b_obj, bool trans_a, bool trans_b,
               py::object bias, const std::string& activation, float alpha, float beta,
               py::object out, int num_threads) {
  const py::array a = as_ndarray(a_obj, "a");
  const py::array b = as_ndarray(b_obj, "b");
  require_f32(a, "a");
  require_f32(b, "b");
  if (a.ndim() != 2 || b.ndim() != 2)
    throw py::value_error("gemm: a and b must be 2-D, got shapes " + shape_str(a) + " and " +
                          shape_str(b));
  const auto va = matrix_view(a, "a");
  const auto vb = matrix_view(b, "b");
  const index_t M = trans_a ? va.cols : va.rows, K = trans_a ? va.rows : va.cols;
  const index_t Kb = trans_b ? vb.cols : vb.rows, N = trans_b ? vb.rows : vb.cols;
  if (K != Kb)
    throw py::value_error("gemm: shapes " + shape_str(a) + (trans_a ? ".T" : "") + " and " +
                          shape_str(b) + (trans_b ? ".T" : "") + " do not align (" +
                          std::to_string(K) + " != " + std::to_string(Kb) + ")");
  cpu::Epilogue ep;
  ep.act = cpu::activation_from_name(activation);  // std::invalid_argument -> ValueError
  py::array bias_arr;
  if (!bias.is_none()) {
    if (!py::isinstance<py::array>(bias))
      throw py::type_error("gemm: bias must be a float32 NumPy array or None; convert it with "
                           "np.asarray(bias, dtype=np.float32)");
    bias_arr = py::reinterpret_borrow<py::array>(bias);
    require_f32(bias_arr, "bias");
    if (bias_arr.ndim() != 1 || bias_arr.shape(0) != N)
      throw py::value_error("gemm: bias must have shape (" + std::to_string(N) + ",), got " +
                            shape_str(bias_arr));
    if (N > 1 && bias_arr.strides(0) != static_cast<py::ssize_t>(sizeof(float)))
      throw py::value_error("gemm: bias must be contiguous; try np.ascontiguousarray(bias)");
    ep.bias = static_cast<const float*>(bias_arr.data());
  }
  py::array c;
  if (out.is_none()) {
    if (beta != 0.f) throw py::value_error("gemm: beta != 0 needs an `out` array to accumulate into");
    c = py::array_t<float>({static_cast<py::ssize_t>(M), static_cast<py::ssize_t>(N)});
  } else {
    if (!py::isinstance<py::array>(out))
      throw py::type_error("gemm: out must be a float32 NumPy array or None");
    c = py::reinterpret_borrow<py::array>(out);
    require_f32(c, "out");
    if (c.ndim() != 2 || c.shape(0) != M || c.shape(1) != N)
      throw py::value_error("gemm: out must have shape (" + std::to_string(M) + ", " +
                            std::to_string(N) + "), got " + shape_str(c));
    if (overlaps(c, a) || overlaps(c, b) || (ep.bias && overlaps(c, bias_arr)))
      throw py::value_error("gemm: out must not share memory with a, b or bias");
  }
  if (!c.writeable()) throw py::value_error("gemm: out must be writeable");
  const auto vcv = matrix_view(c, "out");
  MatrixView<float> vc{const_cast<float*>(vcv.data), vcv.rows, vcv.cols, vcv.stride};
  {
    py::gil_scoped_release release;
    cpu::sgemm(trans_a, trans_b, M, N, K, alpha, va.data, va.stride, vb.data, vb.stride, beta,
               vc.data, vc.stride, ep, num_threads);
  }
  return c;
}

void bias_activation(const py::object& x_obj, py::object bias, const std::string& activation,
                     int num_threads) {
  const py::array x = as_ndarray(x_obj, "x");
  require_f32(x, "x");
  if (x.ndim() != 2) throw py::value_error("bias_activation: x must be 2-D, got " + shape_str(x));
  if (!x.writeable()) throw py::value_error("bias_activation: x must be writeable");
  const auto vxc = matrix_view(x, "x");
  MatrixView<float> vx{const_cast<float*>(vxc.data), vxc.rows, vxc.cols, vxc.stride};
  cpu::Epilogue ep;
  ep.act = cpu::activation_from_name(activation);
  py::array bias_arr;
  if (!bias.is_none()) {
    if (!py::isinstance<py::array>(bias))
      throw py::type_error("bias_activation: bias must be a float32 NumPy array or None");
    bias_arr = py::reinterpret_borrow<py::array>(bias);
    require_f32(bias_arr, "bias");
    if (bias_arr.ndim() != 1 || bias_arr.shape(0) != vx.cols)
      throw py::value_error("bias_activation: bias must have shape (" + std::to_string(vx.cols) +
                            ",), got " + shape_str(bias_arr));
    if (vx.cols > 1 && bias_arr.strides(0) != static_cast<py::ssize_t>(sizeof(float)))
      throw py::value_error("bias_activation: bias must be contiguous; try np.ascontiguousarray");
    ep.bias = static_cast<const float*>(bias_arr.data());
  }
  py::gil_scoped_release release;
  cpu::bias_activation(vx.rows, vx.cols, vx.data, vx.stride, ep, num_threads);
}

// Benchmark helper (no Python in the timed loop): median nanoseconds of one sgemm call on random
// data of the given shape, over `reps` calls, GIL released.
double gemm_time_ns(index_t M, index_t N, index_t K, bool ta, bool tb, bool with_bias,
                    const std::string& activation, int reps, int num_threads) {
  if (M < 1 || N < 1 || K < 1 || reps < 1) throw py::value_error("_gemm_time_ns: sizes and reps must be >= 1");
  cpu::Epilogue ep;
  ep.act = cpu::activation_from_name(activation);
  std::vector<float> A(static_cast<size_t>(M * K)), B(static_cast<size_t>(K * N)),
      C(static_cast<size_t>(M * N)), bias(static_cast<size_t>(N));
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  for (auto* v : {&A, &B, &bias})
    for (auto& x : *v) x = u(rng);
  if (with_bias) ep.bias = bias.data();
  std::vector<double> t(static_cast<size_t>(reps));
  {
    py::gil_scoped_release release;
    for (int w = 0; w < 3; ++w)
      cpu::sgemm(ta, tb, M, N, K, 1.f, A.data(), ta ? M : K, B.data(), tb ? K : N, 0.f, C.data(), N,
                 ep, num_threads);
    for (int r = 0; r < reps; ++r) {
      auto t0 = std::chrono::steady_clock::now();
      cpu::sgemm(ta, tb, M, N, K, 1.f, A.data(), ta ? M : K, B.data(), tb ? K : N, 0.f, C.data(), N,
                 ep, num_threads);
      t[static_cast<size_t>(r)] = std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - t0).count();
    }
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

void bind_gemm(py::module_& m) {
  m.def("_gemm_time_ns", &gemm_time_ns, py::arg("M"), py::arg("N"), py::arg("K"),
        py::arg("trans_a") = false, py::arg("trans_b") = false, py::arg("bias") = false,
        py::arg("activation") = "identity", py::arg("reps") = 1000, py::arg("num_threads") = 0,
        "Benchmark helper: median ns of one C++ sgemm call (no Python overhead).");
  m.def("_gemm_set_blocking", &cpu::gemm_detail::set_blocking_override, py::arg("kc") = 0,
        py::arg("mc") = 0, py::arg("nc") = 0,
        "Tuning hook: override GEMM cache blocking (0 = per-ISA default). Benchmarks only.");
  m.def("gemm", &gemm, py::arg("a"), py::arg("b"), py::arg("trans_a") = false,
        py::arg("trans_b") = false, py::arg("bias") = py::none(),
        py::arg("activation") = "identity", py::arg("alpha") = 1.0f, py::arg("beta") = 0.0f,
        py::arg("out") = py::none(), py::arg("num_threads") = 0,
        R"doc(C = act(alpha * op(a) @ op(b) + beta * out + bias), float32.

a: (M, K) float32, or (K, M) with trans_a; b: (K, N), or (N, K) with trans_b; bias: (N,) or None;
activation: identity, relu, sigmoid, tanh, elu, selu. Returns a new (M, N) array, or writes into
and returns `out` (needed when beta != 0). Inputs need a contiguous last dimension (row strides
are fine); nothing is converted. num_threads <= 0: aerec's default.)doc");
  m.def("bias_activation", &bias_activation, py::arg("x"), py::arg("bias") = py::none(),
        py::arg("activation") = "identity", py::arg("num_threads") = 0,
        "In place: x = act(x + bias), x (M, N) float32 (contiguous last dimension), bias (N,).");
}

bind::Registrar reg("gemm", &bind_gemm);

}  // namespace

// aerec._core.Network: the C++ training core. Arrays are checked here (dtype -> TypeError, shape /
// stride -> ValueError); every kernel call runs with the GIL released. Any number of threads may
// call hidden / loss / get_params at once (per-call workspaces, a shared lock); training calls and
// the setters take the network exclusively (cpu::Network locks; see network.hpp). The GIL is
// released before any of those locks is taken, so a lock holder never waits for the GIL.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "aerec/network.hpp"
#include "arrays.hpp"
#include "registry.hpp"

namespace py = pybind11;
using namespace aerec;

namespace {

py::object spec_get(const py::dict& d, const char* key) {
  if (!d.contains(key)) throw py::value_error(std::string("spec lacks '") + key + "'; build it with aerec.nn.spec.make_spec");
  return d[key];
}

// An optional key (the defaults are aerec.nn.spec.DEFAULTS).
template <class T>
T spec_opt(const py::dict& d, const char* key, T dflt) {
  return d.contains(key) ? d[key].cast<T>() : dflt;
}

// An optional 1-D int32 id array (rows0, user_rows): None gives an empty one.
py::array_t<std::int32_t, py::array::c_style> optional_ids(const py::object& o, const char* name) {
  if (o.is_none()) return py::array_t<std::int32_t, py::array::c_style>(0);
  py::array a = o.cast<py::array>();
  bind::require_dtype<std::int32_t>(a, name);
  if (a.ndim() != 1) throw py::value_error(std::string(name) + " must be 1-D");
  return py::array_t<std::int32_t, py::array::c_style>::ensure(a);
}

std::uint64_t as_u64_mask(const py::handle& h) {
  py::int_ v(py::reinterpret_borrow<py::object>(h));
  unsigned long long r = PyLong_AsUnsignedLongLongMask(v.ptr());
  if (r == static_cast<unsigned long long>(-1) && PyErr_Occurred()) throw py::error_already_set();
  return static_cast<std::uint64_t>(r);
}

// A spec dict of aerec.nn.spec.make_spec. The keys the dense spec of aerec <= 0.1
// (aerec.models.spec) also has are required; the newer stages' keys default as in nn.spec.
cpu::NetworkSpec spec_from_dict(const py::dict& d) {
  cpu::NetworkSpec s;
  for (auto h : spec_get(d, "layer_sizes")) s.layer_sizes.push_back(h.cast<index_t>());
  for (auto h : spec_get(d, "activations")) s.activations.push_back(cpu::activation_from_name(h.cast<std::string>()));
  for (auto h : spec_get(d, "dropout")) s.dropout.push_back(h.cast<double>());
  s.encoder_depth = spec_get(d, "encoder_depth").cast<int>();
  s.normalize_input = spec_opt(d, "normalize_input", s.normalize_input);
  s.variational = spec_opt(d, "variational", s.variational);
  s.beta = spec_opt(d, "beta", s.beta);
  s.anneal_steps = spec_opt(d, "anneal_steps", s.anneal_steps);
  s.n_users = spec_opt(d, "n_users", s.n_users);
  s.loss = cpu::loss_from_name(spec_get(d, "loss").cast<std::string>());
  s.negative_samples = spec_opt(d, "negative_samples", s.negative_samples);
  s.l2 = spec_get(d, "l2").cast<double>();
  s.optimizer = cpu::optimizer_from_name(spec_get(d, "optimizer").cast<std::string>());
  s.learning_rate = spec_get(d, "learning_rate").cast<double>();
  s.beta1 = spec_get(d, "beta1").cast<double>();
  s.beta2 = spec_get(d, "beta2").cast<double>();
  s.epsilon = spec_get(d, "epsilon").cast<double>();
  s.weight_decay = spec_get(d, "weight_decay").cast<double>();
  s.momentum = spec_get(d, "momentum").cast<double>();
  s.nesterov = spec_get(d, "nesterov").cast<bool>();
  s.lazy = spec_opt(d, "lazy", s.lazy);
  s.seed = as_u64_mask(spec_get(d, "seed"));
  return s;
}

struct PyNetwork {
  explicit PyNetwork(cpu::NetworkSpec s) : net(std::move(s)) {}
  cpu::Network net;
  py::object bound;  // the array bind_params put the parameters in: kept alive while bound
};

// A flat float32 buffer of the network's n_params elements (C-contiguous; writable when asked).
const float* flat_buffer(const cpu::Network& net, const py::array& a, const char* name, bool writable) {
  bind::require_dtype<float>(a, name);
  const auto total = static_cast<py::ssize_t>(net.n_params());
  if (a.ndim() != 1 || !(a.flags() & py::array::c_style) || a.shape(0) != total || (writable && !a.writeable()))
    throw py::value_error(std::string(name) + " must be a 1-D C-contiguous" + (writable ? " writable" : "") +
                          " float32 array of " + std::to_string(total) + " elements (every tensor, flat)");
  return static_cast<const float*>(a.data());
}

void copy_in(cpu::Network& net, int t, const py::array& a, const std::string& name) {
  bind::require_dtype<float>(a, name.c_str());
  const index_t r = net.tensor_rows(t), c = net.tensor_cols(t);
  const bool is_bias = t % 2 == 1;
  bool ok = is_bias ? (a.ndim() == 1 && a.shape(0) == c) : (a.ndim() == 2 && a.shape(0) == r && a.shape(1) == c);
  if (!ok) {
    std::string want = is_bias ? "(" + std::to_string(c) + ",)" : "(" + std::to_string(r) + ", " + std::to_string(c) + ")";
    throw py::value_error(name + " must have shape " + want);
  }
  if (!(a.flags() & py::array::c_style)) throw py::value_error(name + " must be C-contiguous; try np.ascontiguousarray");
}

py::array copy_out(const float* p, index_t rows, index_t cols, bool is_bias) {
  py::array_t<float> a = is_bias ? py::array_t<float>({static_cast<py::ssize_t>(cols)})
                                 : py::array_t<float>({static_cast<py::ssize_t>(rows), static_cast<py::ssize_t>(cols)});
  std::memcpy(a.mutable_data(), p, sizeof(float) * rows * cols);
  return std::move(a);
}

// A flat buffer in the network's tensor order (n_params floats) as one array per tensor (biases 1-D).
py::list split_tensors(const cpu::Network& net, const float* g) {
  py::list out;
  std::size_t off = 0;
  for (int t = 0; t < net.n_tensors(); ++t) {
    out.append(copy_out(g + off, net.tensor_rows(t), net.tensor_cols(t), t % 2 == 1));
    off += static_cast<std::size_t>(net.tensor_size(t));
  }
  return out;
}

std::string tensor_name(const cpu::Network& net, int t) {
  if (t == 2 * net.n_layers()) return "U";
  return (t % 2 == 0 ? "W" : "b") + std::to_string(t / 2);
}

void set_params(cpu::Network& net, const py::sequence& params) {
  const int T = net.n_tensors();
  if (static_cast<int>(py::len(params)) != T)
    throw py::value_error("expected " + std::to_string(T) + " parameter arrays [W0, b0, W1, b1, ...(, U)], got " +
                          std::to_string(py::len(params)));
  std::vector<py::array> arrs;
  std::vector<const float*> src;
  for (int t = 0; t < T; ++t) {
    py::object o = params[t];
    if (!py::isinstance<py::array>(o)) throw py::type_error(tensor_name(net, t) + " must be a numpy.ndarray");
    py::array a = o.cast<py::array>();
    copy_in(net, t, a, tensor_name(net, t));
    src.push_back(static_cast<const float*>(a.data()));
    arrs.push_back(a);
  }
  py::gil_scoped_release release;
  net.write_params(src.data());
}

// New arrays W0, b0, ... (shapes as the tensors) and their data pointers, to be filled.
py::list new_tensors(const cpu::Network& net, std::vector<float*>& ptrs) {
  py::list out;
  for (int t = 0; t < net.n_tensors(); ++t) {
    const bool is_bias = t % 2 == 1 && t < 2 * net.n_layers();
    const index_t rows = net.tensor_rows(t), cols = net.tensor_cols(t);
    py::array_t<float> a = is_bias ? py::array_t<float>({static_cast<py::ssize_t>(cols)})
                                   : py::array_t<float>({static_cast<py::ssize_t>(rows), static_cast<py::ssize_t>(cols)});
    ptrs.push_back(a.mutable_data());
    out.append(a);
  }
  return out;
}

// A CSR matrix handed to the Network (aerec.backends.cpp wraps scipy.sparse into it): keeps its
// arrays alive; O(1) checks here, the O(nnz) ones (monotone indptr, index range) in C++.
struct PyCsr {
  PyCsr(py::array indptr_, py::array indices_, py::object data_, index_t rows_, index_t cols_)
      : indptr(std::move(indptr_)), indices(std::move(indices_)), data(std::move(data_)), rows(rows_), cols(cols_) {
    bind::require_dtype<std::int64_t>(indptr, "indptr");
    bind::require_dtype<std::int32_t>(indices, "indices");
    if (rows < 0 || cols < 0) throw py::value_error("CSR shape must be non-negative");
    if (indptr.ndim() != 1 || indptr.shape(0) != rows + 1)
      throw py::value_error("indptr must be 1-D with n_rows + 1 entries");
    if (indices.ndim() != 1) throw py::value_error("indices must be 1-D");
    if (!(indptr.flags() & py::array::c_style) || !(indices.flags() & py::array::c_style))
      throw py::value_error("indptr and indices must be contiguous; try np.ascontiguousarray");
    const auto* ip = static_cast<const std::int64_t*>(indptr.data());
    if (ip[0] < 0 || ip[rows] > indices.shape(0) || ip[rows] < ip[0])
      throw py::value_error("indptr is inconsistent with the number of stored entries");
    if (!data.is_none()) {
      if (!py::isinstance<py::array>(data)) throw py::type_error("data must be a numpy.ndarray or None");
      py::array d = data.cast<py::array>();
      bind::require_dtype<float>(d, "data");
      if (d.ndim() != 1 || d.shape(0) != indices.shape(0) || !(d.flags() & py::array::c_style))
        throw py::value_error("data must be 1-D, contiguous, with one value per index");
    }
  }
  CsrView<float> view() const {
    CsrView<float> v;
    v.indptr = static_cast<const std::int64_t*>(indptr.data());
    v.indices = static_cast<const std::int32_t*>(indices.data());
    v.values = data.is_none() ? nullptr : static_cast<const float*>(data.cast<py::array>().data());
    v.rows = rows;
    v.cols = cols;
    return v;
  }
  py::array indptr, indices;
  py::object data;
  index_t rows, cols;
};

// x or y: a float32 matrix or a CsrMatrix.
void set_operand(const py::object& o, const char* name, MatrixView<const float>& dense, CsrView<float>& csr) {
  if (py::isinstance<PyCsr>(o)) {
    csr = o.cast<const PyCsr&>().view();
    dense = MatrixView<const float>{nullptr, csr.rows, csr.cols, csr.cols};
    return;
  }
  if (!py::isinstance<py::array>(o))
    throw py::type_error(std::string(name) + " must be a numpy.ndarray or a CSR matrix");
  dense = bind::matrix_in(o.cast<py::array>(), name);
}

// users: None or a 1-D int32 array with one id per row of x (range checked in C++).
void set_users(const py::object& users, cpu::Batch& b) {
  if (users.is_none()) return;
  if (!py::isinstance<py::array>(users)) throw py::type_error("users must be a numpy int32 array or None");
  py::array u = users.cast<py::array>();
  bind::require_dtype<std::int32_t>(u, "users");
  if (u.ndim() != 1 || u.shape(0) != b.x.rows)
    throw py::value_error("users must be 1-D with one id per row of x (" + std::to_string(b.x.rows) + ")");
  if (u.shape(0) > 1 && u.strides(0) != static_cast<py::ssize_t>(sizeof(std::int32_t)))
    throw py::value_error("users must be contiguous; try np.ascontiguousarray");
  b.users = static_cast<const std::int32_t*>(u.data());
}

cpu::Batch make_batch(const py::object& x, const py::object& y, const py::object& mask,
                      const py::object& users) {
  cpu::Batch b;
  set_operand(x, "x", b.x, b.x_csr);
  set_operand(y, "y", b.y, b.y_csr);
  set_users(users, b);
  if (!mask.is_none()) {
    if (!py::isinstance<py::array>(mask)) throw py::type_error("mask must be a numpy.ndarray or None");
    b.mask = bind::matrix_in(mask.cast<py::array>(), "mask");
  }
  return b;
}

index_t check_bs(index_t bs) {
  if (bs < 1) throw py::value_error("batch_size must be >= 1, got " + std::to_string(bs));
  return bs;
}

void bind_network(py::module_& m) {
  py::class_<PyCsr>(m, "CsrMatrix", "CSR rows for Network: indptr int64 (n_rows+1), indices int32, data float32 or None (all ones).")
      .def(py::init<py::array, py::array, py::object, index_t, index_t>(), py::arg("indptr"), py::arg("indices"),
           py::arg("data"), py::arg("n_rows"), py::arg("n_cols"))
      .def_property_readonly("shape", [](const PyCsr& c) { return py::make_tuple(c.rows, c.cols); });

  py::class_<PyNetwork>(m, "Network", R"doc(
Trainable feed-forward network (C++): parameters, gradients, optimizer state and workspaces live in
C++; train_epoch runs the whole epoch with the GIL released. Network(spec: dict, params: list).
Use it through aerec.backends.cpp.Network.)doc")
      .def(py::init([](const py::dict& spec, const py::sequence& params) {
             auto p = std::make_unique<PyNetwork>(spec_from_dict(spec));
             set_params(p->net, params);
             return p;
           }),
           py::arg("spec"), py::arg("params"))
      .def_property_readonly("n_layers", [](PyNetwork& p) { return p.net.n_layers(); })
      .def_property("step", [](PyNetwork& p) { return p.net.step(); },
                    [](PyNetwork& p, std::int64_t s) {
                      if (s < 0) throw py::value_error("step must be >= 0");
                      py::gil_scoped_release release;
                      p.net.set_step(s);
                    })
      .def("timings", [](const PyNetwork& p) {
        const cpu::Timings& t = p.net.timings();
        py::dict d;
        d["gather"] = t.gather;
        d["spmm"] = t.spmm;
        d["gemm"] = t.gemm;
        d["noise"] = t.noise;
        d["loss"] = t.loss;
        d["dense_bwd"] = t.dense_bwd;
        d["sparse_bwd"] = t.sparse_bwd;
        d["optimizer"] = t.optimizer;
        d["batches"] = t.batches;
        d["gemm_flops"] = t.gemm_flops;
        return d;
      }, "Seconds per training phase since reset_timings(), batches trained, GEMM flops.")
      .def("reset_timings", [](PyNetwork& p) { p.net.reset_timings(); })
      .def_property_readonly("beta", [](PyNetwork& p) { return p.net.beta(); })
      .def("get_params", [](const PyNetwork& p) {
        std::vector<float*> dst;
        py::list out = new_tensors(p.net, dst);
        py::gil_scoped_release release;
        p.net.read_params(dst.data());
        return out;
      })
      .def("set_params", [](PyNetwork& p, const py::sequence& params) {
        set_params(p.net, params);
      }, py::arg("params"))
      .def("get_optimizer_state", [](const PyNetwork& p) {
        py::dict d;
        py::array_t<std::int64_t> st{std::vector<py::ssize_t>{}};
        *st.mutable_data() = p.net.step();
        d["step"] = st;
        for (int s = 0; s < p.net.n_state_slots(); ++s) {
          std::vector<float*> dst;
          py::list arrs = new_tensors(p.net, dst);
          {
            py::gil_scoped_release release;
            p.net.read_state(s, dst.data());
          }
          for (int t = 0; t < p.net.n_tensors(); ++t)
            d[py::str(std::string(p.net.state_slot_name(s)) + "_" + tensor_name(p.net, t))] = arrs[t];
        }
        return d;
      })
      .def("set_optimizer_state", [](PyNetwork& p, const py::dict& d) {
        cpu::Network& net = p.net;
        if (!d.contains("step")) throw py::value_error("optimizer state lacks 'step'");
        const std::int64_t step = py::int_(py::array(d["step"]).attr("item")()).cast<std::int64_t>();
        if (step < 0) throw py::value_error("optimizer step must be >= 0");
        std::vector<py::array> keep;  // every array checked before any is written
        std::vector<std::vector<const float*>> src(net.n_state_slots());
        for (int t = 0; t < net.n_tensors(); ++t)
          for (int s = 0; s < net.n_state_slots(); ++s) {
            std::string key = std::string(net.state_slot_name(s)) + "_" + tensor_name(net, t);
            if (!d.contains(key.c_str())) throw py::value_error("optimizer state lacks '" + key + "'");
            py::object o = d[key.c_str()];
            if (!py::isinstance<py::array>(o)) throw py::type_error(key + " must be a numpy.ndarray");
            py::array a = o.cast<py::array>();
            copy_in(net, t, a, key);
            src[s].push_back(static_cast<const float*>(a.data()));
            keep.push_back(a);
          }
        py::gil_scoped_release release;
        for (int s = 0; s < net.n_state_slots(); ++s) net.write_state(s, src[s].data());
        net.set_step(step);
      }, py::arg("state"))
      .def("set_masks", [](PyNetwork& p, const py::object& masks) {
        cpu::Network& net = p.net;
        const int L = net.n_layers();
        std::vector<py::array> keep;
        std::vector<const std::uint8_t*> src(static_cast<size_t>(L), nullptr);
        if (!masks.is_none()) {
          if (!py::isinstance<py::sequence>(masks) || py::isinstance<py::str>(masks))
            throw py::type_error("masks must be a list with one entry per weight matrix (None = dense), or None");
          py::sequence seq = masks.cast<py::sequence>();
          if (static_cast<int>(py::len(seq)) != L)
            throw py::value_error("expected " + std::to_string(L) + " masks (one per weight matrix W0..W" +
                                  std::to_string(L - 1) + ", None = dense), got " + std::to_string(py::len(seq)));
          for (int l = 0; l < L; ++l) {
            py::object o = seq[l];
            if (o.is_none()) continue;
            const std::string name = "mask " + std::to_string(l);
            if (!py::isinstance<py::array>(o)) throw py::type_error(name + " must be a numpy bool or uint8 array or None");
            py::array a = o.cast<py::array>();
            const char kind = a.dtype().kind();
            if (!((kind == 'b') || (kind == 'u' && a.dtype().itemsize() == 1)))
              throw py::type_error(name + " must have dtype bool or uint8, got " + std::string(py::str(a.dtype())));
            const index_t r = net.tensor_rows(2 * l), c = net.tensor_cols(2 * l);
            if (a.ndim() != 2 || a.shape(0) != r || a.shape(1) != c)
              throw py::value_error(name + " must have the shape of W" + std::to_string(l) + " (" + std::to_string(r) +
                                    ", " + std::to_string(c) + ")");
            if (!(a.flags() & py::array::c_style)) throw py::value_error(name + " must be C-contiguous; try np.ascontiguousarray");
            src[l] = static_cast<const std::uint8_t*>(a.data());
            keep.push_back(a);
          }
        }
        py::gil_scoped_release release;
        net.set_masks(src.data());
      }, py::arg("masks"), "Pruning masks: one bool/uint8 array per weight matrix (1 keep, 0 pruned) or None; None clears.")
      .def("get_masks", [](const PyNetwork& p) {
        py::list out;
        for (int l = 0; l < p.net.n_layers(); ++l) {
          if (!p.net.has_mask(l)) {
            out.append(py::none());
            continue;
          }
          py::array_t<bool> a({static_cast<py::ssize_t>(p.net.tensor_rows(2 * l)),
                               static_cast<py::ssize_t>(p.net.tensor_cols(2 * l))});
          p.net.read_mask(l, reinterpret_cast<std::uint8_t*>(a.mutable_data()));
          out.append(a);
        }
        return out;
      }, "The masks (bool arrays, True = kept) per weight matrix; None where dense.")
      .def("hidden", [](const PyNetwork& p, const py::object& x, int layer, index_t batch_size, const py::object& users) {
        if (layer < 0 || layer >= p.net.n_layers())
          throw py::index_error("layer must be in [0, " + std::to_string(p.net.n_layers()) + "), got " + std::to_string(layer));
        check_bs(batch_size);
        cpu::Batch b;
        set_operand(x, "x", b.x, b.x_csr);
        set_users(users, b);
        if (b.x.cols != p.net.n_in())
          throw py::value_error("x has " + std::to_string(b.x.cols) + " columns, the network expects " + std::to_string(p.net.n_in()));
        const index_t cols = p.net.spec().layer_sizes[layer + 1];
        py::array_t<float> out({static_cast<py::ssize_t>(b.x.rows), static_cast<py::ssize_t>(cols)});
        MatrixView<float> ov{out.mutable_data(), b.x.rows, cols, cols};
        {
          py::gil_scoped_release release;
          p.net.hidden(b, layer, ov, batch_size);
        }
        return out;
      }, py::arg("x"), py::arg("layer"), py::arg("batch_size") = 4096, py::arg("users") = py::none())
      .def("loss", [](const PyNetwork& p, const py::object& x, const py::object& y, const py::object& mask, index_t batch_size,
                      const py::object& users) {
        check_bs(batch_size);
        cpu::Batch b = make_batch(x, y, mask, users);
        py::gil_scoped_release release;
        return p.net.loss(b, batch_size);
      }, py::arg("x"), py::arg("y"), py::arg("mask") = py::none(), py::arg("batch_size") = 4096,
         py::arg("users") = py::none())
      .def("gradients", [](PyNetwork& p, const py::object& x, const py::object& y, const py::object& mask, bool training,
                           const py::object& users) {
        cpu::Batch b = make_batch(x, y, mask, users);
        std::vector<float> g(static_cast<std::size_t>(p.net.n_params()));
        double loss;
        {
          py::gil_scoped_release release;
          loss = p.net.gradients(b, training, g.data());  // copied under the network's lock
        }
        return py::make_tuple(loss, split_tensors(p.net, g.data()));
      }, py::arg("x"), py::arg("y"), py::arg("mask") = py::none(), py::arg("training") = false,
         py::arg("users") = py::none())
      .def("gradients_rows", [](PyNetwork& p, const py::object& x, const py::object& y, py::array rows,
                                const py::object& mask, bool training, const py::object& users) {
        cpu::Batch b = make_batch(x, y, mask, users);
        bind::require_dtype<std::int64_t>(rows, "rows");
        if (rows.ndim() != 1 || (rows.shape(0) > 1 && rows.strides(0) != static_cast<py::ssize_t>(sizeof(std::int64_t))))
          throw py::value_error("rows must be a contiguous 1-D int64 array");
        std::vector<float> g(static_cast<std::size_t>(p.net.n_params()));
        double loss;
        {
          py::gil_scoped_release release;
          loss = p.net.gradients_rows(b, static_cast<const std::int64_t*>(rows.data()), rows.shape(0), training,
                                      g.data());
        }
        return py::make_tuple(loss, split_tensors(p.net, g.data()));
      }, py::arg("x"), py::arg("y"), py::arg("rows"), py::arg("mask") = py::none(), py::arg("training") = false,
         py::arg("users") = py::none())
      .def("gradients_into", [](PyNetwork& p, const py::object& x, const py::object& y, const py::object& rows,
                                py::array out, const py::object& mask, bool training, const py::object& users,
                                const py::object& w0_rows) {
        // The gradients written into `out` (float32, C-contiguous, every tensor flat as the params):
        // no allocation per call (the data-parallel step reuses one buffer).
        cpu::Batch b = make_batch(x, y, mask, users);
        bind::require_dtype<float>(out, "out");
        const auto total = static_cast<std::size_t>(p.net.n_params());
        if (!(out.flags() & py::array::c_style) || static_cast<std::size_t>(out.size()) != total || !out.writeable())
          throw py::value_error("out must be a writable C-contiguous float32 array of " + std::to_string(total) +
                                " elements");
        float* o = static_cast<float*>(out.mutable_data());
        std::uint8_t* flags = nullptr;
        py::array fl;
        if (!w0_rows.is_none()) {
          fl = w0_rows.cast<py::array>();
          bind::require_dtype<std::uint8_t>(fl, "w0_rows");
          if (fl.ndim() != 1 || fl.shape(0) != p.net.n_in() || !(fl.flags() & py::array::c_style) || !fl.writeable())
            throw py::value_error("w0_rows must be a writable C-contiguous uint8 array of " +
                                  std::to_string(p.net.n_in()) + " elements (W0's rows)");
          flags = static_cast<std::uint8_t*>(fl.mutable_data());
          if (rows.is_none()) throw py::value_error("w0_rows needs rows (the data-parallel step's call)");
        }
        if (rows.is_none()) {
          py::gil_scoped_release release;
          return p.net.gradients(b, training, o);
        }
        py::array r = rows.cast<py::array>();
        bind::require_dtype<std::int64_t>(r, "rows");
        if (r.ndim() != 1 || (r.shape(0) > 1 && r.strides(0) != static_cast<py::ssize_t>(sizeof(std::int64_t))))
          throw py::value_error("rows must be a contiguous 1-D int64 array");
        py::gil_scoped_release release;
        return p.net.gradients_rows(b, static_cast<const std::int64_t*>(r.data()), r.shape(0), training, o, flags);
      }, py::arg("x"), py::arg("y"), py::arg("rows"), py::arg("out"), py::arg("mask") = py::none(),
         py::arg("training") = false, py::arg("users") = py::none(), py::arg("w0_rows") = py::none())
      .def("apply_gradients", [](PyNetwork& p, const py::object& grads, const py::object& rows0,
                                 const py::object& urows, std::int64_t lo, std::int64_t hi) {
        cpu::Network& net = p.net;
        const auto total = static_cast<std::size_t>(net.n_params());
        std::vector<float> g;
        py::array flat;
        const float* src = nullptr;
        if (py::isinstance<py::array>(grads)) {  // one flat float32 buffer: read in place
          flat = grads.cast<py::array>();
          bind::require_dtype<float>(flat, "grads");
          if (flat.ndim() != 1 || !(flat.flags() & py::array::c_style) || static_cast<std::size_t>(flat.size()) != total)
            throw py::value_error("a flat grads array must be 1-D C-contiguous float32 with " + std::to_string(total) +
                                  " elements (every tensor, flat)");
          src = static_cast<const float*>(flat.data());
        } else {
          py::sequence seq = grads.cast<py::sequence>();
          if (static_cast<int>(py::len(seq)) != net.n_tensors())
            throw py::value_error("expected " + std::to_string(net.n_tensors()) + " gradient arrays, got " +
                                  std::to_string(py::len(seq)));
          g.resize(total);
          std::size_t off = 0;
          for (int t = 0; t < net.n_tensors(); ++t) {
            py::array a = py::array_t<float, py::array::c_style | py::array::forcecast>::ensure(seq[t]);
            if (!a || a.size() != net.tensor_size(t))
              throw py::value_error("gradient " + tensor_name(net, t) + " must have " +
                                    std::to_string(net.tensor_size(t)) + " float32 elements");
            std::memcpy(g.data() + off, a.data(), sizeof(float) * static_cast<std::size_t>(a.size()));
            off += static_cast<std::size_t>(a.size());
          }
          src = g.data();
        }
        py::array_t<std::int32_t, py::array::c_style> r0 = optional_ids(rows0, "rows0"), ur = optional_ids(urows, "user_rows");
        py::gil_scoped_release release;
        net.apply_gradients(src, r0.data(), r0.shape(0), ur.data(), ur.shape(0), lo, hi);
      }, py::arg("grads"), py::arg("rows0") = py::none(), py::arg("user_rows") = py::none(), py::arg("lo") = 0,
         py::arg("hi") = -1)
      .def("bind_params", [](PyNetwork& p, const py::array& buf, bool copy) {
        float* ext = const_cast<float*>(flat_buffer(p.net, buf, "buf", true));
        {
          py::gil_scoped_release release;
          p.net.bind_params(ext, copy);
        }
        p.bound = buf;
      }, py::arg("buf"), py::arg("copy") = true)
      .def("unbind_params", [](PyNetwork& p) {
        {
          py::gil_scoped_release release;
          p.net.unbind_params();
        }
        p.bound = py::none();
      })
      .def_property_readonly("params_bound", [](const PyNetwork& p) { return p.net.params_bound(); })
      .def("apply_gradient_sum", [](PyNetwork& p, const py::sequence& parts, const py::array& scales,
                                    const py::object& w0_rows, const py::object& rows0, const py::object& urows,
                                    std::int64_t lo, std::int64_t hi) {
        cpu::Network& net = p.net;
        const auto n = static_cast<std::size_t>(py::len(parts));
        if (n == 0) throw py::value_error("parts must hold at least one flat gradient buffer");
        std::vector<py::array> keep;
        std::vector<const float*> ptr;
        for (std::size_t k = 0; k < n; ++k) {
          keep.push_back(parts[k].cast<py::array>());
          ptr.push_back(flat_buffer(net, keep.back(), "each part", false));
        }
        bind::require_dtype<float>(scales, "scales");
        if (scales.ndim() != 1 || static_cast<std::size_t>(scales.shape(0)) != n ||
            !(scales.flags() & py::array::c_style))
          throw py::value_error("scales must be a 1-D C-contiguous float32 array, one per part");
        std::vector<const std::uint8_t*> rows;
        if (!w0_rows.is_none()) {
          py::sequence seq = w0_rows.cast<py::sequence>();
          if (static_cast<std::size_t>(py::len(seq)) != n)
            throw py::value_error("w0_rows must hold one entry per part (a uint8 array of W0's rows, or None)");
          for (std::size_t k = 0; k < n; ++k) {
            if (seq[k].is_none()) {
              rows.push_back(nullptr);
              continue;
            }
            py::array a = seq[k].cast<py::array>();
            bind::require_dtype<std::uint8_t>(a, "w0_rows");
            if (a.ndim() != 1 || a.shape(0) != net.n_in() || !(a.flags() & py::array::c_style))
              throw py::value_error("each w0_rows entry must be a 1-D C-contiguous uint8 array of " +
                                    std::to_string(net.n_in()) + " elements (W0's rows)");
            keep.push_back(a);
            rows.push_back(static_cast<const std::uint8_t*>(a.data()));
          }
        }
        py::array_t<std::int32_t, py::array::c_style> r0 = optional_ids(rows0, "rows0"), ur = optional_ids(urows, "user_rows");
        const float* sc = static_cast<const float*>(scales.data());
        py::gil_scoped_release release;
        net.apply_gradient_sum(static_cast<int>(n), ptr.data(), sc, rows.empty() ? nullptr : rows.data(), r0.data(),
                               r0.shape(0), ur.data(), ur.shape(0), lo, hi);
      }, py::arg("parts"), py::arg("scales"), py::arg("w0_rows") = py::none(), py::arg("rows0") = py::none(),
         py::arg("user_rows") = py::none(), py::arg("lo") = 0, py::arg("hi") = -1)
      .def_property_readonly("n_params", [](const PyNetwork& p) { return p.net.n_params(); })
      .def("get_params_flat", [](const PyNetwork& p, std::int64_t lo, std::int64_t hi, const py::object& out_obj) {
        if (lo < 0 || hi < lo || hi > p.net.n_params())
          throw py::index_error("flat parameter range [" + std::to_string(lo) + ", " + std::to_string(hi) +
                                ") is outside [0, " + std::to_string(p.net.n_params()) + ")");
        // out (optional): a caller's buffer reused every call (a fresh array of a large block costs
        // its page faults each time)
        py::array out = out_obj.is_none() ? py::array(py::array_t<float>(static_cast<py::ssize_t>(hi - lo)))
                                          : out_obj.cast<py::array>();
        bind::require_dtype<float>(out, "out");
        if (out.ndim() != 1 || !(out.flags() & py::array::c_style) || out.shape(0) != hi - lo || !out.writeable())
          throw py::value_error("out must be a writable 1-D C-contiguous float32 array of " + std::to_string(hi - lo) +
                                " elements");
        float* dst = static_cast<float*>(out.mutable_data());
        {
          py::gil_scoped_release release;
          p.net.read_params_flat(lo, hi - lo, dst);
        }
        return out;
      }, py::arg("lo"), py::arg("hi"), py::arg("out") = py::none())
      .def("set_params_flat", [](PyNetwork& p, std::int64_t lo, const py::array& values) {
        bind::require_dtype<float>(values, "values");
        if (values.ndim() != 1 || !(values.flags() & py::array::c_style))
          throw py::value_error("values must be a 1-D C-contiguous float32 array");
        const std::int64_t n = values.shape(0);
        if (lo < 0 || lo + n > p.net.n_params())
          throw py::index_error("flat parameter range [" + std::to_string(lo) + ", " + std::to_string(lo + n) +
                                ") is outside [0, " + std::to_string(p.net.n_params()) + ")");
        const float* src = static_cast<const float*>(values.data());
        py::gil_scoped_release release;
        p.net.write_params_flat(lo, n, src);
      }, py::arg("lo"), py::arg("values"))
      .def("train_batch", [](PyNetwork& p, const py::object& x, const py::object& y, const py::object& mask,
                             const py::object& users) {
        cpu::Batch b = make_batch(x, y, mask, users);
        py::gil_scoped_release release;
        return p.net.train_batch(b);
      }, py::arg("x"), py::arg("y"), py::arg("mask") = py::none(), py::arg("users") = py::none())
      .def("train_epoch", [](PyNetwork& p, const py::object& x, const py::object& y, const py::object& mask,
                             index_t batch_size, bool shuffle, const py::int_& seed, const py::object& users) {
        check_bs(batch_size);
        cpu::Batch b = make_batch(x, y, mask, users);
        const std::uint64_t s = as_u64_mask(seed);
        py::gil_scoped_release release;
        return p.net.train_epoch(b, batch_size, shuffle, s);
      }, py::arg("x"), py::arg("y"), py::arg("mask") = py::none(), py::arg("batch_size") = 32,
         py::arg("shuffle") = true, py::arg("seed") = 0, py::arg("users") = py::none());
}

bind::Registrar reg("network", &bind_network);

}  // namespace

// pybind11 glue for aerec::cpu::RecNetwork (_core.RecNetwork). Arrays were validated and converted
// once in python/aerec/backends/_cpp_recnet.py; here the dtypes and the cheap CSR invariants are
// re-checked (the kernel re-checks the rest), then the GIL is released around every call.
// evaluate runs concurrently from any number of threads (per-call workspaces, shared lock);
// training calls and set_params take the network exclusively (see recnet.hpp).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>
#include <vector>

#include "aerec/recnet.hpp"
#include "arrays.hpp"
#include "registry.hpp"

namespace py = pybind11;
using namespace aerec;
using aerec::bind::require_dtype;

namespace {

template <class T>
T get(const py::dict& d, const char* key) {
  if (!d.contains(key)) throw py::value_error(std::string("spec is missing '") + key + "'; build it with make_rec_spec");
  return d[key].cast<T>();
}

cpu::RecSpec spec_from_dict(const py::dict& d) {
  cpu::RecSpec s;
  s.layer_sizes = get<std::vector<index_t>>(d, "layer_sizes");
  for (auto& a : get<std::vector<std::string>>(d, "activations")) s.activations.push_back(cpu::activation_from_name(a));
  s.encoder_depth = get<int>(d, "encoder_depth");
  s.variational = get<bool>(d, "variational");
  s.anneal_cap = get<double>(d, "anneal_cap");
  s.total_anneal_steps = get<std::int64_t>(d, "total_anneal_steps");
  s.normalize_input = get<bool>(d, "normalize_input");
  s.input_dropout = get<double>(d, "input_dropout");
  const auto loss = get<std::string>(d, "loss");
  if (loss == "multinomial") s.loss = cpu::RecLoss::multinomial;
  else if (loss == "logistic") s.loss = cpu::RecLoss::logistic;
  else throw py::value_error("unknown loss '" + loss + "'; use multinomial or logistic");
  s.negative_samples = get<std::int64_t>(d, "negative_samples");
  s.n_users_embedding = get<index_t>(d, "n_users_embedding");
  s.l2 = get<double>(d, "l2");
  const auto opt = get<std::string>(d, "optimizer");
  if (opt == "adam") s.optimizer = cpu::RecOptimizer::adam;
  else if (opt == "sgd") s.optimizer = cpu::RecOptimizer::sgd;
  else throw py::value_error("unknown optimizer '" + opt + "'; use adam or sgd");
  s.learning_rate = get<double>(d, "learning_rate");
  s.beta1 = get<double>(d, "beta1");
  s.beta2 = get<double>(d, "beta2");
  s.epsilon = get<double>(d, "epsilon");
  s.momentum = get<double>(d, "momentum");
  s.lazy_adam = get<bool>(d, "lazy_adam");
  s.seed = get<std::uint64_t>(d, "seed");
  return s;
}

struct Csr {
  CsrView<float> view;
  const std::int32_t* users = nullptr;
};

Csr csr_in(const py::array& indptr, const py::array& indices, const py::array& data, const py::object& users,
           index_t n_cols) {
  require_dtype<std::int64_t>(indptr, "indptr");
  require_dtype<std::int32_t>(indices, "indices");
  require_dtype<float>(data, "data");
  for (const py::array* a : {&indptr, &indices, &data}) {
    if (a->ndim() != 1) throw py::value_error("CSR arrays must be 1-D");
    if (a->size() > 1 && a->strides(0) != a->itemsize())
      throw py::value_error("CSR arrays must be contiguous; try np.ascontiguousarray");
  }
  if (indptr.size() < 1) throw py::value_error("indptr must have n_rows + 1 entries");
  if (indices.size() != data.size()) throw py::value_error("indices and data must have the same length");
  const auto* ip = static_cast<const std::int64_t*>(indptr.data());
  const index_t rows = indptr.size() - 1;
  if (ip[rows] != static_cast<std::int64_t>(indices.size()))
    throw py::value_error("indptr[-1] must equal nnz (len(indices))");
  Csr c;
  c.view = CsrView<float>{ip, static_cast<const std::int32_t*>(indices.data()),
                          static_cast<const float*>(data.data()), rows, n_cols};
  if (!users.is_none()) {
    py::array u = users.cast<py::array>();
    require_dtype<std::int32_t>(u, "users");
    if (u.ndim() != 1 || u.size() != rows) throw py::value_error("users must be 1-D with one id per row");
    if (u.size() > 1 && u.strides(0) != u.itemsize()) throw py::value_error("users must be contiguous");
    c.users = static_cast<const std::int32_t*>(u.data());
  }
  return c;
}

// Every tensor of one kind (0 params, 1 first moments, 2 second moments), or the given vectors,
// as new arrays. The network's own tensors are copied in one consistent snapshot under its lock,
// with the GIL released (a training call holding the lock never waits for the GIL).
py::list tensors_out(const cpu::RecNetwork& net, const std::vector<std::vector<float>>* src, int which) {
  py::list out;
  std::vector<float*> dst;
  for (std::size_t i = 0; i < net.n_params(); ++i) {
    std::vector<py::ssize_t> shape;
    shape.push_back(net.param_rows(i));
    if (net.param_cols(i)) shape.push_back(net.param_cols(i));
    py::array_t<float> a(shape);
    if (src) std::copy((*src)[i].begin(), (*src)[i].end(), a.mutable_data());
    dst.push_back(a.mutable_data());
    out.append(a);
  }
  if (!src) {
    py::gil_scoped_release nogil;
    net.read_tensors(which, dst.data());
  }
  return out;
}

void tensors_in(cpu::RecNetwork& net, const py::list& arrays, int which) {
  if (arrays.size() != net.n_params())
    throw py::value_error("expected " + std::to_string(net.n_params()) + " arrays, got " + std::to_string(arrays.size()));
  std::vector<py::array> keep;  // check all before writing any
  std::vector<const float*> src;
  for (std::size_t i = 0; i < net.n_params(); ++i) {
    py::array a = arrays[i].cast<py::array>();
    require_dtype<float>(a, "param");
    const bool vec = net.param_cols(i) == 0;
    if (a.ndim() != (vec ? 1 : 2) || a.shape(0) != net.param_rows(i) || (!vec && a.shape(1) != net.param_cols(i)))
      throw py::value_error("array " + std::to_string(i) + " has the wrong shape; expected (" +
                            std::to_string(net.param_rows(i)) + (vec ? "" : ", " + std::to_string(net.param_cols(i))) + ")");
    if (!(a.flags() & py::array::c_style)) throw py::value_error("param arrays must be C-contiguous");
    src.push_back(static_cast<const float*>(a.data()));
    keep.push_back(std::move(a));
  }
  py::gil_scoped_release nogil;
  net.write_tensors(which, src.data());
}

void bind_recnet(py::module_& m) {
  py::class_<cpu::RecNetwork>(m, "RecNetwork", "Sparse-input autoencoder network (MultDAE/MultVAE/CDAE).")
      .def(py::init([](const py::dict& spec, const py::list& params) {
             auto net = std::make_unique<cpu::RecNetwork>(spec_from_dict(spec));
             tensors_in(*net, params, 0);
             return net;
           }),
           py::arg("spec"), py::arg("params"))
      .def_readwrite("step", &cpu::RecNetwork::step)
      .def("get_params", [](const cpu::RecNetwork& n) { return tensors_out(n, nullptr, 0); })
      .def("set_params", [](cpu::RecNetwork& n, const py::list& p) { tensors_in(n, p, 0); })
      .def("get_optimizer_state", [](cpu::RecNetwork& n) {
        py::dict d;
        d["step"] = n.step;
        d["m"] = tensors_out(n, nullptr, 1);
        d["v"] = n.spec().optimizer == cpu::RecOptimizer::adam ? tensors_out(n, nullptr, 2) : py::list();
        return d;
      })
      .def("set_optimizer_state", [](cpu::RecNetwork& n, const py::dict& d) {
        const py::list mm = d["m"].cast<py::list>(), vv = d["v"].cast<py::list>();
        const bool adam = n.spec().optimizer == cpu::RecOptimizer::adam;
        if (!adam && vv.size() != 0) throw py::value_error("sgd has no second moments ('v' must be empty)");
        tensors_in(n, mm, 1);
        if (adam) tensors_in(n, vv, 2);
        n.step = d["step"].cast<std::int64_t>();
      })
      .def("train_batch", [](cpu::RecNetwork& n, const py::array& ip, const py::array& ix, const py::array& dt,
                             const py::object& users) {
        Csr c = csr_in(ip, ix, dt, users, n.n_items());
        py::gil_scoped_release nogil;
        return n.train_batch(c.view, c.users);
      }, py::arg("indptr"), py::arg("indices"), py::arg("data"), py::arg("users") = py::none())
      .def("train_epoch", [](cpu::RecNetwork& n, const py::array& ip, const py::array& ix, const py::array& dt,
                             index_t n_rows, index_t batch_size, bool shuffle, std::uint64_t seed,
                             const py::object& users) {
        Csr c = csr_in(ip, ix, dt, users, n.n_items());
        if (c.view.rows != n_rows) throw py::value_error("n_rows does not match len(indptr) - 1");
        py::gil_scoped_release nogil;
        return n.train_epoch(c.view, c.users, batch_size, shuffle, seed);
      }, py::arg("indptr"), py::arg("indices"), py::arg("data"), py::arg("n_rows"), py::arg("batch_size") = 500,
         py::arg("shuffle") = true, py::arg("seed") = 0, py::arg("users") = py::none())
      .def("gradients", [](cpu::RecNetwork& n, const py::array& ip, const py::array& ix, const py::array& dt,
                           const py::object& users) {
        Csr c = csr_in(ip, ix, dt, users, n.n_items());
        std::vector<std::vector<float>> g;
        double loss;
        {
          py::gil_scoped_release nogil;
          loss = n.gradients(c.view, c.users, &g);
        }
        return py::make_tuple(loss, tensors_out(n, &g, 0));
      }, py::arg("indptr"), py::arg("indices"), py::arg("data"), py::arg("users") = py::none())
      .def("evaluate", [](const cpu::RecNetwork& n, const py::array& ip, const py::array& ix, const py::array& dt,
                          const py::object& users, int stop, index_t batch_size) {
        Csr c = csr_in(ip, ix, dt, users, n.n_items());
        if (stop < 0 || stop >= n.n_layers()) throw py::value_error("layer index out of range");
        const index_t w = n.layer_width(stop);
        py::array_t<float> out({static_cast<py::ssize_t>(c.view.rows), static_cast<py::ssize_t>(w)});
        float* o = out.mutable_data();
        {
          py::gil_scoped_release nogil;
          n.evaluate(c.view, c.users, stop, batch_size, o, w);
        }
        return out;
      }, py::arg("indptr"), py::arg("indices"), py::arg("data"), py::arg("users"), py::arg("stop"),
         py::arg("batch_size") = 500)
      .def("timings", [](cpu::RecNetwork& n) {
        const auto& t = n.timings;
        py::dict d;
        d["gather"] = t.gather; d["spmm"] = t.spmm; d["gemm"] = t.gemm; d["noise"] = t.noise; d["loss"] = t.loss;
        d["dense_bwd"] = t.dense_bwd; d["sparse_bwd"] = t.sparse_bwd; d["optimizer"] = t.optimizer;
        d["batches"] = t.batches; d["gemm_flops"] = t.gemm_flops;
        return d;
      }, "Seconds per training phase accumulated since the last reset_timings().")
      .def("reset_timings", [](cpu::RecNetwork& n) { n.timings = cpu::RecTimings{}; });
}

aerec::bind::Registrar reg("recnet", &bind_recnet);

}  // namespace

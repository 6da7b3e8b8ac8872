// Fused per-tensor optimizer updates (elementwise, in place). Coefficients are computed once per
// step in double and rounded to float by the caller (Network::apply_optimizer), so the per-element
// arithmetic below is exactly what the NumPy reference does in float32:
//   adam / adamw (t = step + 1, bc1 = 1 - beta1^t, bc2 = 1 - beta2^t):
//     w = w - lr_wd * w                      (adamw: decoupled decay; lr_wd = lr * wd, else 0)
//     g = g + weight_decay * w               (adam: coupled decay; 0 for adamw)
//     m = beta1 * m + (1 - beta1) * g;  v = beta2 * v + (1 - beta2) * (g * g)
//     w = w - (lr * (m / bc1)) / (sqrt(v / bc2) + eps)
//   sgd (torch.optim.SGD semantics, buffer starting at 0):
//     g = g + weight_decay * w;  b = momentum * b + g;  g = nesterov ? g + momentum * b : b
//     w = w - lr * g
// No FMA contraction anywhere, so every ISA variant gives the same bits.
#pragma once
#include "aerec/view.hpp"

namespace aerec::cpu {

struct AdamCoeffs {
  float lr = 1e-3f, beta1 = 0.9f, one_minus_beta1 = 0.1f, beta2 = 0.999f, one_minus_beta2 = 0.001f;
  float bc1 = 1.f, bc2 = 1.f, eps = 1e-7f;
  float weight_decay = 0.f;  // coupled (adam): added to the gradient
  float lr_wd = 0.f;         // decoupled (adamw): w -= lr_wd * w first
};

struct SgdCoeffs {
  float lr = 1e-2f, momentum = 0.f, weight_decay = 0.f;
  bool nesterov = false;
};

// w, g, m, v: n floats each (g is read only).
void adam_update(index_t n, float* w, const float* g, float* m, float* v, const AdamCoeffs& c);
// buf: n floats, may be null when momentum == 0.
void sgd_update(index_t n, float* w, const float* g, float* buf, const SgdCoeffs& c);

}  // namespace aerec::cpu

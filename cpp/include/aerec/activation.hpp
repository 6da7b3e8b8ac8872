// Activations: ids shared by the GEMM epilogue, the Network and the bindings.
// Derivatives are written in terms of the activation's output y (what backward keeps), so no
// pre-activation buffer is needed.
#pragma once
#include <cmath>
#include <stdexcept>
#include <string>

namespace aerec::cpu {

enum class Activation : int { identity = 0, relu = 1, sigmoid = 2, tanh = 3, elu = 4, selu = 5 };

constexpr float kSeluAlpha = 1.6732632423543772f;
constexpr float kSeluScale = 1.0507009873554805f;

inline Activation activation_from_name(const std::string& s) {
  if (s == "identity" || s == "linear") return Activation::identity;
  if (s == "relu") return Activation::relu;
  if (s == "sigmoid") return Activation::sigmoid;
  if (s == "tanh") return Activation::tanh;
  if (s == "elu") return Activation::elu;
  if (s == "selu") return Activation::selu;
  throw std::invalid_argument("unknown activation '" + s +
                              "'; use one of identity, relu, sigmoid, tanh, elu, selu");
}

// Scalar reference definitions (ELU with alpha = 1, as Keras/PyTorch default).
inline float activate(Activation a, float x) {
  switch (a) {
    case Activation::identity: return x;
    case Activation::relu: return x > 0.f ? x : 0.f;
    case Activation::sigmoid: return 1.f / (1.f + std::exp(-x));
    case Activation::tanh: return std::tanh(x);
    case Activation::elu: return x > 0.f ? x : std::expm1(x);
    case Activation::selu: return x > 0.f ? kSeluScale * x : kSeluScale * kSeluAlpha * std::expm1(x);
  }
  return x;
}

// d activation / d x, from the output y = activate(x).
inline float activation_grad_from_output(Activation a, float y) {
  switch (a) {
    case Activation::identity: return 1.f;
    case Activation::relu: return y > 0.f ? 1.f : 0.f;
    case Activation::sigmoid: return y * (1.f - y);
    case Activation::tanh: return 1.f - y * y;
    case Activation::elu: return y > 0.f ? 1.f : y + 1.f;
    case Activation::selu: return y > 0.f ? kSeluScale : y + kSeluScale * kSeluAlpha;
  }
  return 1.f;
}

}  // namespace aerec::cpu

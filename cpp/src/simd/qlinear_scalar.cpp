// Compressed-layer kernels (sparse CSC x transposed activations, gathered rows), compiled with the
// scalar target's flags: the shared body qlinear_body.inc in namespace aerec::cpu::scalar.
#include <cstdint>

#include "aerec/qlinear_kernels.hpp"

namespace aerec::cpu::scalar {
#define QL_VBYTES 16
#include "qlinear_body.inc"
#undef QL_VBYTES
}  // namespace aerec::cpu::scalar

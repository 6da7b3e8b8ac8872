// Compressed-layer kernels (sparse CSC x transposed activations, gathered rows), compiled with the
// avx2 target's flags: the shared body qlinear_body.inc in namespace aerec::cpu::avx2.
#include <cstdint>

#include <immintrin.h>

#include "aerec/qlinear_kernels.hpp"

namespace aerec::cpu::avx2 {
#define QL_VBYTES 32
#include "qlinear_body.inc"
#undef QL_VBYTES
}  // namespace aerec::cpu::avx2

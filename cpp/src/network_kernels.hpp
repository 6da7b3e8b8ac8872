// Internal: the AVX2 and AVX-512 bodies of the Network's elementwise loops
// (src/simd/network_avx2.cpp, network_avx512.cpp), picked by network.cpp / optim.cpp through dispatch() (cpu_features.hpp). Declarations only: the
// ISA unit includes this, and no inline or template code may be shared with portable callers.
#pragma once
#include <cstdint>

#include "aerec/optim.hpp"
#include "aerec/view.hpp"

namespace aerec::cpu::avx2 {
void adam_update(index_t n, float* w, const float* g, float* m, float* v, const AdamCoeffs& c);
void sgd_update(index_t n, float* w, const float* g, float* buf, const SgdCoeffs& c);
void dropout_forward(index_t rows, index_t cols, const float* src, index_t lds, float* dst,
                     float* mult, std::uint64_t key, float p);
double bce_row(const float* z, const float* y, float* d, index_t cols, float iscale);
double multinomial_row(const float* o, const float* y, float* d, index_t cols, float iscale);
}  // namespace aerec::cpu::avx2

namespace aerec::cpu::avx512 {
void adam_update(index_t n, float* w, const float* g, float* m, float* v, const AdamCoeffs& c);
void sgd_update(index_t n, float* w, const float* g, float* buf, const SgdCoeffs& c);
void dropout_forward(index_t rows, index_t cols, const float* src, index_t lds, float* dst,
                     float* mult, std::uint64_t key, float p);
double bce_row(const float* z, const float* y, float* d, index_t cols, float iscale);
double multinomial_row(const float* o, const float* y, float* d, index_t cols, float iscale);
}  // namespace aerec::cpu::avx512

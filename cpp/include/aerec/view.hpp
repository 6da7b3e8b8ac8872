// Non-owning views the kernels take. Strides are counted in elements; the last dimension is
// contiguous. Shapes are stated in each kernel's header comment.
#pragma once
#include <cstdint>

namespace aerec {

using index_t = std::int64_t;

template <class T>
struct MatrixView {
  T* data = nullptr;
  index_t rows = 0;
  index_t cols = 0;
  index_t stride = 0;  // elements between consecutive rows (>= cols)

  T* row(index_t i) const { return data + i * stride; }
  T& operator()(index_t i, index_t j) const { return data[i * stride + j]; }
};

// Compressed sparse rows: indptr has rows+1 entries (int64), indices int32 column ids.
template <class T>
struct CsrView {
  const std::int64_t* indptr = nullptr;
  const std::int32_t* indices = nullptr;
  const T* values = nullptr;  // may be null: every stored entry is 1
  index_t rows = 0;
  index_t cols = 0;
};

}  // namespace aerec

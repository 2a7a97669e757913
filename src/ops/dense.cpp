// Default dense path: three GEMMs. y = x W^T + b; dx = dy W; dW += dy^T x; db += sum_n dy.

#include <algorithm>
#include <type_traits>

#include "cnn/ops.hpp"
#include "cnn/ops_ref.hpp"
#include "dconv.hpp"
#include "gemm.hpp"

namespace cnn::ops {

// Up to this batch, float forward runs one matrix-vector product per sample: the GEMM would
// pack all of W (transposed) for a few rows of output, and at batch 1 that packing was most of
// LeNet-5's latency (38 of 63 us, `cnn bench --batch 1`).
constexpr int64_t kMatrixVectorMaxBatch = 8;

template <typename T>
void dense_forward(T* y, const T* x, const T* w, const T* b, const DenseShape& s) {
  if (reference_mode()) return ref::dense_forward(y, x, w, b, s);
  if (b) {
    for (int64_t n = 0; n < s.batch; ++n) std::copy(b, b + s.out_features, y + n * s.out_features);
  }
  if constexpr (std::is_same_v<T, float>) {
    if (s.batch <= kMatrixVectorMaxBatch) {
      const detail::DirectConvKernels& kernels = detail::direct_conv_kernels();
      for (int64_t n = 0; n < s.batch; ++n) {
        float* yn = y + n * s.out_features;
        if (!b) std::fill(yn, yn + s.out_features, 0.0f);
        kernels.dense_rows(x + n * s.in_features, w, s.out_features, s.in_features, yn);
      }
      return;
    }
  }
  detail::gemm_nt(s.batch, s.out_features, s.in_features, x, s.in_features, w, s.in_features, y,
                  s.out_features, b != nullptr);
}

template <typename T>
void dense_backward(T* dx, T* dw, T* db, const T* x, const T* w, const T* dy, const DenseShape& s) {
  if (reference_mode()) return ref::dense_backward(dx, dw, db, x, w, dy, s);
  if (db) {
    for (int64_t n = 0; n < s.batch; ++n)
      for (int64_t o = 0; o < s.out_features; ++o) db[o] += dy[n * s.out_features + o];
  }
  detail::gemm_tn(s.out_features, s.in_features, s.batch, dy, s.out_features, x, s.in_features, dw,
                  s.in_features, true);
  if (dx) {
    detail::gemm_nn(s.batch, s.in_features, s.out_features, dy, s.out_features, w, s.in_features,
                    dx, s.in_features, false);
  }
}

template void dense_forward<float>(float*, const float*, const float*, const float*,
                                   const DenseShape&);
template void dense_forward<double>(double*, const double*, const double*, const double*,
                                    const DenseShape&);
template void dense_backward<float>(float*, float*, float*, const float*, const float*,
                                    const float*, const DenseShape&);
template void dense_backward<double>(double*, double*, double*, const double*, const double*,
                                     const double*, const DenseShape&);

}  // namespace cnn::ops

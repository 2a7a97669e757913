// Default dense path: three GEMMs. y = x W^T + b; dx = dy W; dW += dy^T x; db += sum_n dy.

#include <algorithm>
#include <type_traits>

#include "cnn/ops.hpp"
#include "cnn/ops_ref.hpp"
#include "dconv.hpp"
#include "gemm.hpp"
#include "parallel.hpp"

namespace cnn::ops {

// Up to this batch, float forward runs one matrix-vector product per sample: the GEMM would
// pack all of W (transposed) for a few rows of output, and at batch 1 that packing was most of
// LeNet-5's latency (38 of 63 us, `cnn bench --batch 1`).
constexpr int64_t kMatrixVectorMaxBatch = 8;

namespace {
/// Runs product(first, last) for the rows [first, last) of a product's m x n result (k
/// multiply-adds each), each thread its own block of rows [m t / T, m (t + 1) / T) (T threads),
/// when the product is worth a second thread; else one call for all rows. For rows that are
/// images, these are the blocks the convolutions, pooling and BatchNorm split a batch into
/// (images_of_part): a thread then reads the images it wrote in the layer before and writes those
/// it reads in the layer after. For the weight gradient's rows (output features), each thread
/// writes a contiguous block of the gradient, as the optimizers' element-wise split (halves of
/// the parameters) mostly does. The GEMM's own split, by columns, had each thread read every
/// image and write every row: on this machine, when its two vCPUs did not share a cache (about
/// 350 ns apart instead of 60-80), a line written by one thread and then by the other costs a
/// round trip, and lenet5's 2-thread step was no faster than one thread's. But each thread then
/// packs all of the other operand (k x n: the weights, or the batch's inputs for the weight
/// gradient), so above 64 K elements of it (convnet's 3136 -> 128 layer: its backward 0.50 ->
/// 0.70 ms alone) the GEMM keeps its own split, by columns, each thread packing half. Each
/// element's sum is the same whichever thread computes it, so the bits do not depend on the
/// split.
template <typename Product>
void split_rows(int64_t m, int64_t n, int64_t k, const Product& product) {
  const int team = static_cast<int>(std::min<int64_t>(threads(), m));
  if (team < 2 || m * n * k < (int64_t{1} << 17) || n * k > (int64_t{1} << 16))
    return product(int64_t{0}, m);
  detail::for_each_range(team, m, product);  // team <= m: no block is empty
}
}  // namespace

template <typename T>
void dense_forward(T* y, const T* x, const T* w, const T* b, const DenseShape& s) {
  if (reference_mode()) return ref::dense_forward(y, x, w, b, s);
  // Rows [first, last) of y start as the bias (the products accumulate onto it).
  const auto start_with_bias = [&](int64_t first, int64_t last) {
    if (!b) return;
    for (int64_t n = first; n < last; ++n) std::copy(b, b + s.out_features, y + n * s.out_features);
  };
  if constexpr (std::is_same_v<T, float>) {
    if (s.batch <= kMatrixVectorMaxBatch) {
      start_with_bias(0, s.batch);
      const detail::DirectConvKernels& kernels = detail::direct_conv_kernels();
      for (int64_t n = 0; n < s.batch; ++n) {
        float* yn = y + n * s.out_features;
        if (!b) std::fill(yn, yn + s.out_features, 0.0f);
        kernels.dense_rows(x + n * s.in_features, w, s.out_features, s.in_features, yn);
      }
      return;
    }
  }
  split_rows(s.batch, s.out_features, s.in_features, [&](int64_t first, int64_t last) {
    start_with_bias(first, last);
    detail::gemm_nt(last - first, s.out_features, s.in_features, x + first * s.in_features,
                    s.in_features, w, s.in_features, y + first * s.out_features, s.out_features,
                    b != nullptr);
  });
}

template <typename T>
void dense_backward(T* dx, T* dw, T* db, const T* x, const T* w, const T* dy, const DenseShape& s) {
  if (reference_mode()) return ref::dense_backward(dx, dw, db, x, w, dy, s);
  if (db) {
    for (int64_t n = 0; n < s.batch; ++n)
      for (int64_t o = 0; o < s.out_features; ++o) db[o] += dy[n * s.out_features + o];
  }
  split_rows(s.out_features, s.in_features, s.batch, [&](int64_t first, int64_t last) {
    detail::gemm_tn(last - first, s.in_features, s.batch, dy + first, s.out_features, x,
                    s.in_features, dw + first * s.in_features, s.in_features, true);
  });
  if (dx) {
    split_rows(s.batch, s.in_features, s.out_features, [&](int64_t first, int64_t last) {
      detail::gemm_nn(last - first, s.in_features, s.out_features, dy + first * s.out_features,
                      s.out_features, w, s.in_features, dx + first * s.in_features, s.in_features,
                      false);
    });
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

// Default convolution path: im2col + GEMM, the three products of darknet's
// convolutional_layer.c. Per image: col = im2col(x); y = W col + b; dW += dy col^T;
// dcol = W^T dy; dx = col2im(dcol). A 1x1, stride-1, unpadded convolution skips im2col,
// since the image already is its column matrix.

#include <omp.h>

#include <algorithm>
#include <type_traits>
#include <vector>

#include "cnn/ops.hpp"
#include "cnn/ops_ref.hpp"
#include "gemm.hpp"
#include "scratch.hpp"

namespace cnn::ops {

namespace {

bool is_pointwise(const ConvShape& s) {
  return s.kernel_h == 1 && s.kernel_w == 1 && s.stride_h == 1 && s.stride_w == 1 && s.pad_h == 0 &&
         s.pad_w == 0;
}

/// The output columns [first, last) whose input column ow * stride - pad + kw lies inside
/// [0, in_w): computed once per kernel tap instead of testing every element.
struct ValidRange {
  int64_t first, last;
};
ValidRange valid_columns(const ConvShape& s, int64_t kw) {
  // ow * stride_w - pad_w + kw >= 0  <=>  ow >= ceil((pad_w - kw) / stride_w)
  const int64_t lo = s.pad_w - kw;
  int64_t first = lo <= 0 ? 0 : (lo + s.stride_w - 1) / s.stride_w;
  // ow * stride_w - pad_w + kw <= in_w - 1  <=>  ow <= floor((in_w - 1 + pad_w - kw) / stride_w)
  const int64_t hi = s.in_w - 1 + s.pad_w - kw;
  int64_t last = hi < 0 ? 0 : std::min<int64_t>(hi / s.stride_w + 1, s.out_w);
  first = std::min(first, s.out_w);
  return {first, std::max(first, last)};
}

/// col (C*KH*KW, OH*OW): row (c, kh, kw) holds the padded input that kernel tap (kh, kw) of
/// channel c sees at every output position. x is one image (C, H, W).
template <typename T>
void im2col(T* col, const T* x, const ConvShape& s) {
  const int64_t out_size = s.out_h * s.out_w;
  for (int64_t c = 0; c < s.in_channels; ++c)
    for (int64_t kh = 0; kh < s.kernel_h; ++kh)
      for (int64_t kw = 0; kw < s.kernel_w; ++kw) {
        T* row = col + ((c * s.kernel_h + kh) * s.kernel_w + kw) * out_size;
        const ValidRange valid = valid_columns(s, kw);
        for (int64_t oh = 0; oh < s.out_h; ++oh) {
          T* out = row + oh * s.out_w;
          const int64_t h = oh * s.stride_h - s.pad_h + kh;
          if (h < 0 || h >= s.in_h) {
            std::fill(out, out + s.out_w, T(0));
            continue;
          }
          const T* in = x + (c * s.in_h + h) * s.in_w - s.pad_w + kw;
          std::fill(out, out + valid.first, T(0));
          if (s.stride_w == 1) {
            std::copy(in + valid.first, in + valid.last, out + valid.first);
          } else {
            for (int64_t ow = valid.first; ow < valid.last; ++ow) out[ow] = in[ow * s.stride_w];
          }
          std::fill(out + valid.last, out + s.out_w, T(0));
        }
      }
}

/// The adjoint of im2col: dx (C, H, W) = sum of every column entry at the input position it
/// was copied from. Assigns dx.
template <typename T>
void col2im(T* dx, const T* col, const ConvShape& s) {
  const int64_t out_size = s.out_h * s.out_w;
  std::fill(dx, dx + s.in_channels * s.in_h * s.in_w, T(0));
  for (int64_t c = 0; c < s.in_channels; ++c)
    for (int64_t kh = 0; kh < s.kernel_h; ++kh)
      for (int64_t kw = 0; kw < s.kernel_w; ++kw) {
        const T* row = col + ((c * s.kernel_h + kh) * s.kernel_w + kw) * out_size;
        const ValidRange valid = valid_columns(s, kw);
        for (int64_t oh = 0; oh < s.out_h; ++oh) {
          const int64_t h = oh * s.stride_h - s.pad_h + kh;
          if (h < 0 || h >= s.in_h) continue;
          T* out = dx + (c * s.in_h + h) * s.in_w - s.pad_w + kw;
          const T* in = row + oh * s.out_w;
          for (int64_t ow = valid.first; ow < valid.last; ++ow) out[ow * s.stride_w] += in[ow];
        }
      }
}

}  // namespace

template <typename T>
void conv2d_forward(T* y, const T* x, const T* w, const T* b, const ConvShape& s) {
  if (reference_mode()) return ref::conv2d_forward(y, x, w, b, s);
  const int64_t patch = s.in_channels * s.kernel_h * s.kernel_w;
  const int64_t out_size = s.out_h * s.out_w;
  const int64_t in_size = s.in_channels * s.in_h * s.in_w;
  const bool pointwise = is_pointwise(s);
  // float: the weights are packed for the GEMM kernel once per call, not once per image.
  const float* packed_w = nullptr;
  if constexpr (std::is_same_v<T, float>) {
    std::vector<float>& buffer = detail::shared_scratch<float>(0);
    detail::sgemm_pack_a_nn(s.out_channels, patch, w, patch, buffer);
    packed_w = buffer.data();
  }
  // Images are independent: each thread takes a contiguous block of them, with its own
  // scratch, so the result does not depend on the thread count.
  const int team = static_cast<int>(std::min<int64_t>(threads(), s.batch));
#pragma omp parallel for num_threads(team) schedule(static) if (team > 1)
  for (int64_t n = 0; n < s.batch; ++n) {
    T* col = pointwise ? nullptr : detail::scratch<T>(0, patch * out_size);
    const T* xn = x + n * in_size;
    if (!pointwise) im2col(col, xn, s);
    T* yn = y + n * s.out_channels * out_size;
    if (b) {
      for (int64_t o = 0; o < s.out_channels; ++o)
        std::fill(yn + o * out_size, yn + (o + 1) * out_size, b[o]);
    }
    if constexpr (std::is_same_v<T, float>) {
      detail::sgemm_nn_prepacked(s.out_channels, out_size, patch, packed_w, pointwise ? xn : col,
                                 out_size, yn, out_size, b != nullptr);
    } else {
      detail::gemm_nn(s.out_channels, out_size, patch, w, patch, pointwise ? xn : col, out_size, yn,
                      out_size, b != nullptr);
    }
  }
}

namespace {

/// Backward for images [first, last): dx assigned per image; dw and db accumulated in image
/// order into the given buffers.
template <typename T>
void conv2d_backward_images(int64_t first, int64_t last, T* dx, T* dw, T* db, const T* x,
                            const T* w, const T* dy, const ConvShape& s) {
  const int64_t patch = s.in_channels * s.kernel_h * s.kernel_w;
  const int64_t out_size = s.out_h * s.out_w;
  const int64_t in_size = s.in_channels * s.in_h * s.in_w;
  const bool pointwise = is_pointwise(s);
  T* col = pointwise ? nullptr : detail::scratch<T>(0, patch * out_size);
  T* dcol = pointwise ? nullptr : detail::scratch<T>(1, patch * out_size);
  for (int64_t n = first; n < last; ++n) {
    const T* xn = x + n * in_size;
    const T* dyn = dy + n * s.out_channels * out_size;
    if (db) {
      for (int64_t o = 0; o < s.out_channels; ++o) {
        T sum = 0;
        for (int64_t k = 0; k < out_size; ++k) sum += dyn[o * out_size + k];
        db[o] += sum;
      }
    }
    if (!pointwise) im2col(col, xn, s);
    detail::gemm_nt(s.out_channels, patch, out_size, dyn, out_size, pointwise ? xn : col, out_size,
                    dw, patch, true);
    if (!dx) continue;
    T* dxn = dx + n * in_size;
    detail::gemm_tn(patch, out_size, s.out_channels, w, patch, dyn, out_size,
                    pointwise ? dxn : dcol, out_size, false);
    if (!pointwise) col2im(dxn, dcol, s);
  }
}

}  // namespace

template <typename T>
void conv2d_backward(T* dx, T* dw, T* db, const T* x, const T* w, const T* dy, const ConvShape& s) {
  if (reference_mode()) return ref::conv2d_backward(dx, dw, db, x, w, dy, s);
  const int team = static_cast<int>(std::min<int64_t>(threads(), s.batch));
  if (team <= 1) return conv2d_backward_images(int64_t{0}, s.batch, dx, dw, db, x, w, dy, s);
  // Each thread sums the parameter gradients of a contiguous block of images into its own
  // partial buffer; the partials are then added in thread order, so that a fixed thread count
  // gives bit-identical results.
  const int64_t dw_size = s.out_channels * s.in_channels * s.kernel_h * s.kernel_w;
  const int64_t partial_size = dw_size + s.out_channels;
  std::vector<T>& partials = detail::shared_scratch<T>(team * partial_size);
#pragma omp parallel num_threads(team)
  {
    const int t = omp_get_thread_num();
    const int64_t first = s.batch * t / team, last = s.batch * (t + 1) / team;
    T* partial = partials.data() + t * partial_size;
    std::fill(partial, partial + partial_size, T(0));
    conv2d_backward_images(first, last, dx, partial, db ? partial + dw_size : nullptr, x, w, dy, s);
  }
  for (int t = 0; t < team; ++t) {
    const T* partial = partials.data() + t * partial_size;
    for (int64_t i = 0; i < dw_size; ++i) dw[i] += partial[i];
    if (db) {
      for (int64_t o = 0; o < s.out_channels; ++o) db[o] += partial[dw_size + o];
    }
  }
}

template void conv2d_forward<float>(float*, const float*, const float*, const float*,
                                    const ConvShape&);
template void conv2d_forward<double>(double*, const double*, const double*, const double*,
                                     const ConvShape&);
template void conv2d_backward<float>(float*, float*, float*, const float*, const float*,
                                     const float*, const ConvShape&);
template void conv2d_backward<double>(double*, double*, double*, const double*, const double*,
                                      const double*, const ConvShape&);

}  // namespace cnn::ops

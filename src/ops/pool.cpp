// Default max-pooling path: the window is clipped to the input once per output row and column
// instead of testing every tap, which removes the bounds checks from the inner loop.

#include <algorithm>
#include <cmath>

#include "cnn/ops.hpp"
#include "cnn/ops_ref.hpp"

namespace cnn::ops {

template <typename T>
void maxpool2d_forward(T* y, int32_t* argmax, const T* x, const PoolShape& s) {
  if (reference_mode()) return ref::maxpool2d_forward(y, argmax, x, s);
  for (int64_t plane = 0; plane < s.batch * s.channels; ++plane) {
    const T* xp = x + plane * s.in_h * s.in_w;
    T* yp = y + plane * s.out_h * s.out_w;
    int32_t* ap = argmax + plane * s.out_h * s.out_w;
    for (int64_t oh = 0; oh < s.out_h; ++oh) {
      const int64_t h0 = std::max<int64_t>(oh * s.stride_h - s.pad_h, 0);
      const int64_t h1 = std::min<int64_t>(oh * s.stride_h - s.pad_h + s.kernel_h, s.in_h);
      for (int64_t ow = 0; ow < s.out_w; ++ow) {
        const int64_t w0 = std::max<int64_t>(ow * s.stride_w - s.pad_w, 0);
        const int64_t w1 = std::min<int64_t>(ow * s.stride_w - s.pad_w + s.kernel_w, s.in_w);
        int64_t best_index = h0 * s.in_w + w0;
        T best = xp[best_index];
        for (int64_t h = h0; h < h1; ++h)
          for (int64_t w = w0; w < w1; ++w) {
            const T value = xp[h * s.in_w + w];
            if (value > best || (std::isnan(value) && !std::isnan(best))) {
              best = value;
              best_index = h * s.in_w + w;
            }
          }
        yp[oh * s.out_w + ow] = best;
        ap[oh * s.out_w + ow] = static_cast<int32_t>(best_index);
      }
    }
  }
}

template <typename T>
void maxpool2d_backward(T* dx, const T* dy, const int32_t* argmax, const PoolShape& s) {
  // The reference is already one pass of scatter-adds; nothing to gain yet.
  ref::maxpool2d_backward(dx, dy, argmax, s);
}

template void maxpool2d_forward<float>(float*, int32_t*, const float*, const PoolShape&);
template void maxpool2d_forward<double>(double*, int32_t*, const double*, const PoolShape&);
template void maxpool2d_backward<float>(float*, const float*, const int32_t*, const PoolShape&);
template void maxpool2d_backward<double>(double*, const double*, const int32_t*, const PoolShape&);

}  // namespace cnn::ops

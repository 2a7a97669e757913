#pragma once
// One plane of the 2x2 / stride-2 max pooling of a ReLU's output, for a kernel that has the
// plane in its own buffer (the direct convolution's flat output): pool.cpp's loop, one thread.

#include <cstdint>

namespace cnn::detail {

/// y (out_h, out_w) = the 2x2 / stride-2 max pooling of relu(x), x's rows `row_stride` floats
/// apart (the first 2 out_w floats of its first 2 out_h rows are read): the rule and bits of
/// ops::relu_maxpool2d_forward on that plane, on the calling thread.
void relu_maxpool_2x2_plane(float* y, const float* x, int64_t row_stride, int64_t out_h,
                            int64_t out_w);

}  // namespace cnn::detail

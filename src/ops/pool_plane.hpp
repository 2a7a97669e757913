#pragma once
// One plane of the 2x2 / stride-2 max pooling of a ReLU's output, and of its backward, for a
// kernel that has the plane in its own buffer (the direct convolution's flat output, a
// BatchNorm's normalised plane): pool.cpp's loops, one thread.

#include <cstdint>

namespace cnn::detail {

/// y (out_h, out_w) = the 2x2 / stride-2 max pooling of relu(x), x's rows `row_stride` floats
/// apart (the first 2 out_w floats of its first 2 out_h rows are read): the rule and bits of
/// ops::relu_maxpool2d_forward on that plane, on the calling thread.
void relu_maxpool_2x2_plane(float* y, const float* x, int64_t row_stride, int64_t out_h,
                            int64_t out_w);

/// The same with the argmax (out_h, out_w; a window's chosen element as row * in_w + column),
/// float or double, x's rows in_w floats apart: the rule and bits of ops::relu_maxpool2d_forward
/// on that plane, argmax included.
template <typename T>
void relu_maxpool_2x2_plane_argmax(T* y, int32_t* argmax, const T* x, int64_t in_w, int64_t out_h,
                                   int64_t out_w);

/// The backward of 2x2 / stride-2 max pooling on one plane: dx (in_h, in_w) = 0 + dy (out_h,
/// out_w) at each window's argmax, +0 elsewhere (odd last rows and columns too), the bits of
/// ops::maxpool2d_backward on that plane.
template <typename T>
void maxpool_2x2_backward_plane(T* dx, const T* dy, const int32_t* argmax, int64_t in_h,
                                int64_t in_w, int64_t out_h, int64_t out_w);

}  // namespace cnn::detail

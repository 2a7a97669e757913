#pragma once
// Winograd F(2x2, 3x3) convolution (Lavin and Gray, "Fast Algorithms for Convolutional Neural
// Networks", 2016): each 2x2 block of outputs costs 16 multiplications per channel pair
// instead of 36, so 3x3 stride-1 layers with many channels do 2.25x fewer multiply-adds. The
// products are 16 GEMMs (one per position of the 4x4 transformed tile) on the packed SGEMM.

#include <cstdint>

namespace cnn::detail {

/// A 3x3, stride-1 correlation of one batch:
/// y (batch, out_channels, out_h, out_w) = bias + sum_c x (batch, in_channels, height, width)
/// (*) kernel, with zero padding pad_h / pad_w, out_h = height + 2 pad_h - 2. kernel(o, c) is
/// the 3x3 kernel at weights + ((o * in_channels + c) * 9), or, with `rotated_transposed`,
/// the 180-degree rotation of the one at weights + ((c * out_channels + o) * 9): the layout
/// that makes this call the input gradient of a convolution (the seed's full convolution of
/// dy with the rotated kernel). bias may be null. Threads split the images.
void winograd_conv3x3(float* y, const float* x, const float* weights, bool rotated_transposed,
                      const float* bias, int64_t batch, int64_t in_channels, int64_t height,
                      int64_t width, int64_t out_channels, int64_t pad_h, int64_t pad_w);

/// The weight gradient of the same 3x3 stride-1 correlation, accumulated: dw (out_channels,
/// in_channels, 3, 3) += the gradient given x and dy (batch, out_channels, out_h, out_w).
/// Computed through the Winograd form: dL/dU_xi = sum over tiles of (A dy A^T)_xi V_xi, then
/// dL/dg = G^T (dL/dU) G. Threads split the images; their sums are added in thread order.
void winograd_weight_grad3x3(float* dw, const float* x, const float* dy, int64_t batch,
                             int64_t in_channels, int64_t height, int64_t width,
                             int64_t out_channels, int64_t pad_h, int64_t pad_w);

}  // namespace cnn::detail

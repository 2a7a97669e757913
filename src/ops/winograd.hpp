#pragma once
// Winograd F(2x2, 3x3) convolution (Lavin and Gray, "Fast Algorithms for Convolutional Neural
// Networks", 2016): each 2x2 block of outputs costs 16 multiplications per channel pair
// instead of 36, so 3x3 stride-1 layers with many channels do 2.25x fewer multiply-adds. The
// products are 16 GEMMs (one per position of the 4x4 transformed tile) on the packed SGEMM.
// F(4x4, 3x3) (winograd4x4_*) does each 4x4 block with 36 (2.25x fewer again, 4x fewer than
// direct) as 36 GEMMs, at the price of larger transforms and rounding.

#include <cstdint>

#include "cnn/ops.hpp"
#include "conv_common.hpp"
#include "conv_implicit.hpp"  // ImplicitConv

namespace cnn::detail {

/// A 3x3, stride-1 correlation of one batch:
/// y (batch, out_channels, out_h, out_w) = bias + sum_c x (batch, in_channels, height, width)
/// (*) kernel, with zero padding pad_h / pad_w, out_h = height + 2 pad_h - 2, pad <= 2.
/// kernel(o, c) is the 3x3 kernel at weights + ((o * in_channels + c) * 9), times
/// weight_scale[o] when weight_scale (out_channels) is not null. bias may be null. The
/// epilogue (a ReLU, after an addend) is applied to each block of images as it is written.
/// Threads split the images: from 32 images on AVX2 and AVX-512 the data transforms run a
/// group of images across the vector lanes (winograd_lanes.hpp), the threads taking groups as
/// they come free; else 4 tiles of one image a vector, a fixed share of the images a thread.
/// The forward gives the same bits either way, whatever the split.
void winograd_conv3x3(float* y, const float* x, const float* weights, const float* weight_scale,
                      const float* bias, int64_t batch, int64_t in_channels, int64_t height,
                      int64_t width, int64_t out_channels, int64_t pad_h, int64_t pad_w,
                      ConvEpilogue epilogue = {});

/// The backward of the same correlation through the Winograd form, with Z_xi = (A dy A^T)_xi
/// the gradient with respect to the tiles' products M_xi:
///   dw (out_channels, in_channels, 3, 3) += G^T (sum over tiles of Z_xi V_xi^T) G;
///   dx (batch, in_channels, height, width) = the sum over tiles of B (U_xi^T Z_xi) B^T,
///   assigned; skipped when dx is null.
/// Z is computed once for both, and dL/dV overwrites V chunk by chunk. This is the exact
/// gradient of winograd_conv3x3, and so of the correlation: dx equals the seed's full
/// convolution of dy with the rotated kernel. Threads split the images; their weight sums are
/// added in thread order.
void winograd_backward3x3(float* dx, float* dw, const float* x, const float* weights,
                          const float* dy, int64_t batch, int64_t in_channels, int64_t height,
                          int64_t width, int64_t out_channels, int64_t pad_h, int64_t pad_w);

/// winograd_conv3x3 by Winograd F(4x4, 3x3): 36 products per channel pair for each 4x4 block
/// of outputs (F(2x2, 3x3): 64). A 4x4 plane with padding 1 is one 6x6 tile; other planes are
/// tiled as F(2x2)'s, their last tiles cut; the data transforms run a group of images across
/// the vector lanes (winograd_lanes.hpp). Arguments and threads as winograd_conv3x3. Its float32
/// rounding is larger than F(2x2)'s (the transforms multiply by up to 8 and by 1/6: about 10x
/// F(2x2)'s error, bench/winograd_error.py), within the kernels' 1e-5 of each output's magnitude.
void winograd4x4_conv3x3(float* y, const float* x, const float* weights, const float* weight_scale,
                         const float* bias, int64_t batch, int64_t in_channels, int64_t height,
                         int64_t width, int64_t out_channels, int64_t pad_h, int64_t pad_w,
                         ConvEpilogue epilogue = {});

/// A stride-1 3x3 convolution of a pair (winograd4x4_conv3x3_pair): its weights (out_channels,
/// in_channels, 3, 3), times weight_scale[o] per output channel when not null, bias (or null),
/// channels and padding.
struct LaneConv {
  const float* weights;
  const float* weight_scale;
  const float* bias;
  int64_t in_channels, out_channels, pad_h, pad_w;
};

/// y = second(relu(first(x))), then the epilogue, both by F(4x4, 3x3): bit for bit
/// winograd4x4_conv3x3 of `first` with a ReLU epilogue, then of `second` with `epilogue`, without
/// the first's output written out (a lane group's goes from one convolution to the next in the
/// cache). x (batch, first.in_channels, height, width); second.in_channels must be
/// first.out_channels. Threads as winograd4x4_conv3x3.
void winograd4x4_conv3x3_pair(float* y, const float* x, const LaneConv& first,
                              const LaneConv& second, int64_t batch, int64_t height, int64_t width,
                              ConvEpilogue epilogue = {});

/// y = second(relu(first(x))), then the epilogue, the first by the implicit GEMM and the second
/// by F(4x4, 3x3) (a stride-2 layer and the 3x3 layer after it: resnet's later blocks in
/// evaluation): bit for bit implicit_conv_forward of `first` with a ReLU epilogue, then
/// winograd4x4_conv3x3 of `second` with `epilogue`, without the first's output written out: a
/// lane group's goes from the GEMM's rows into the second's staged planes, its bias and ReLU
/// applied there. x (first.shape.batch, first.shape.in_channels, in_h, in_w); second.in_channels
/// must be first.shape.out_channels. Threads as winograd4x4_conv3x3. With `shortcut` (a
/// convolution of x that the implicit GEMM runs, whose output has y's shape: a residual block's
/// projection), the epilogue (which must have a ReLU and no addend) adds its output, computed
/// group by group beside the first convolution (implicit_forward_groups' `also`): the bits of
/// implicit_conv_forward of the shortcut, then this with that output as the addend.
void implicit_winograd4x4_pair(float* y, const float* x, const ImplicitConv& first,
                               const LaneConv& second, ConvEpilogue epilogue = {},
                               const ImplicitConv* shortcut = nullptr);

/// The backward of winograd4x4_conv3x3, as winograd_backward3x3: dw += its exact gradient, dx
/// (assigned, skipped when null) the seed's full convolution of dy with the rotated kernel.
void winograd4x4_backward3x3(float* dx, float* dw, const float* x, const float* weights,
                             const float* dy, int64_t batch, int64_t in_channels, int64_t height,
                             int64_t width, int64_t out_channels, int64_t pad_h, int64_t pad_w);

}  // namespace cnn::detail

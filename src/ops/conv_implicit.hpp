#pragma once
// Convolutions as implicit GEMMs with the output channels across the vector lanes
// (gather_gemm in dconv.hpp). The direct kernels put output positions in the lanes, so a
// layer with 4x4 or 7x7 output planes leaves a third to a half of every vector idle on the
// plane's padding; im2col + GEMM copies each input value kernel_h * kernel_w times and packs
// the copies again. Here one output position is one row of a GEMM whose A entries are read
// straight from the input (a row pointer for the position plus an offset for the tap, so any
// stride works; the products that would read the zero padding are left out) and whose columns are
// the layer's output channels, 16 a vector: every lane works whatever the plane's size. The same
// product with other roles is the weight gradient (rows: taps; depth: positions; B: dy) and, phase
// by phase, the input gradient of any stride (the transposed convolution: input positions of one
// phase of the stride read the kernel taps of that phase).
//
// The GEMM writes position-major rows (channels side by side); the callers copy them out into
// NCHW planes.

#include "cnn/ops.hpp"
#include "conv_common.hpp"

namespace cnn::detail {

/// y (batch, out_channels, out_h, out_w) = b + sum over taps of x (*) w, any stride and
/// padding. w (out_channels, in_channels, kernel_h, kernel_w), times w_scale[o] per output
/// channel when w_scale is not null; b may be null; the epilogue (a ReLU, after an addend)
/// applied as each group of images is written. Each thread takes its own block of images
/// (images_of_part); every image's result is the same bits whatever the split.
void implicit_conv_forward(float* y, const float* x, const float* w, const float* w_scale,
                           const float* b, const ops::ConvShape& s, ConvEpilogue epilogue = {});

/// What implicit_forward_groups hands its caller for each group of images, on the thread that
/// computed it: take(n0, images, c, ldc, first, also_y) with the group's first image n0, its
/// image count, and the GEMM's rows c without the bias (row i * out_h * out_w + p: image n0 +
/// i's output position p, output channel j at c[row * ldc + j]); `first` on a thread's first
/// group; also_y the group's output of the second convolution (`also`), or null without
/// one. c and also_y are valid until the next group. A reference to the caller's callable, not
/// a copy: a std::function of a lambda capturing more than two pointers allocates, and a warm
/// evaluation forward allocates nothing (tests/test_steady_state.cpp).
class ImplicitGroupSink {
 public:
  template <typename Take>
  ImplicitGroupSink(const Take& take)  // NOLINT(google-explicit-constructor): lambdas pass
      : callable_(&take),
        call_([](const void* callable, int64_t n0, int64_t images, const float* c, int64_t ldc,
                 bool first, const float* also_y) {
          (*static_cast<const Take*>(callable))(n0, images, c, ldc, first, also_y);
        }) {}
  void operator()(int64_t n0, int64_t images, const float* c, int64_t ldc, bool first,
                  const float* also_y) const {
    call_(callable_, n0, images, c, ldc, first, also_y);
  }

 private:
  const void* callable_;
  void (*call_)(const void*, int64_t, int64_t, const float*, int64_t, bool, const float*);
};

/// A convolution the implicit GEMM runs: its weights (out_channels, in_channels, kernel_h,
/// kernel_w), times weight_scale[o] per output channel when not null, bias (or null) and shape.
struct ImplicitConv {
  const float* weights;
  const float* weight_scale;
  const float* bias;
  ops::ConvShape shape;
};

/// The products of implicit_conv_forward (the same bits, image by image) group by group, for a
/// caller that takes each group's output itself (winograd.cpp's implicit_winograd4x4_pair). With
/// lane_group > 0 the groups are that many images from image 0 (the last one partial), a thread
/// taking a run of whole groups as winograd4x4_conv3x3 does; with 0, as implicit_conv_forward.
/// `also`, when not null, is a second convolution run on each group over the same input (a
/// residual block's projection shortcut beside its body's first convolution; its batch and
/// input must be the first's): the sink gets its output of the group's images as NCHW planes
/// with its bias, image n0 first, the bits implicit_conv_forward gives, computed while the
/// group's input is in the cache instead of in a pass of its own.
void implicit_forward_groups(const float* x, const float* w, const float* w_scale,
                             const ops::ConvShape& s, int64_t lane_group,
                             const ImplicitGroupSink& sink, const ImplicitConv* also = nullptr);

/// dw (out_channels, in_channels, kernel_h, kernel_w) += the weight gradient; dx (the input's
/// shape) = the input gradient, assigned, skipped when dx is null. Threads split the images;
/// their weight sums are added in thread order (a fixed thread count gives fixed bits). The
/// bias gradient is the caller's (a sum of dy).
void implicit_conv_backward(float* dx, float* dw, const float* x, const float* w, const float* dy,
                            const ops::ConvShape& s);

/// The (output position, tap) pairs of one image and channel pair that read inside the input,
/// not the zero padding: the products the implicit GEMM computes of the
/// out_h * out_w * kernel_h * kernel_w there are.
int64_t implicit_products_inside(const ops::ConvShape& s);

}  // namespace cnn::detail

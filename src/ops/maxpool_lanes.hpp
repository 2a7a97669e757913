#pragma once
// Max pooling's plane kernels (ops::maxpool2d_forward and relu_maxpool2d_forward in pool.cpp,
// float, every window shape but 2x2 / stride 2 without padding, which has its own loop): a group
// of up to `lanes` planes across the vector lanes, one set per instruction set
// (maxpool_avx2.cpp: 8 planes, maxpool_portable.cpp: SSE2's 4) sharing maxpool_kernels.inc.
//
// The group's planes are first interleaved into scratch (element i of plane l at i lanes + l;
// the ReLU applied on the way for relu_maxpool2d_forward), so that one tap of one window is one
// whole-vector load for every plane of the group, whatever the kernel, stride and padding: a
// window's bounds, clipped to the input, are the same in every lane. Each window then takes the
// reference's rule in its order: the first tap inside the input, then every other one row by
// row, left to right, a larger value or a first NaN taking over (ref::maxpool2d_forward); the
// argmax is that tap's index, row * in_w + column. Each lanes windows' results are transposed
// back into the planes. A plane alone (or a group of few) takes `rows` instead, consecutive
// windows of an output row across the lanes: a group costs `planes` as much whatever its count.
// Bit for bit the reference: values (NaN payloads and zeros' signs
// included: a value is only ever copied) and argmax (ties keep the first).

#include <cstdint>

namespace cnn::detail {

/// One plane's pooling geometry. A plain struct: this header is compiled for every instruction
/// set and holds no inline code that could carry wide instructions into common code.
struct MaxPoolPlane {
  int64_t in_h, in_w, out_h, out_w;
  int64_t kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w;  // padding <= half the kernel
};

struct MaxPoolKernels {
  int64_t lanes;  // planes a group
  /// y (count, out_h, out_w) and argmax (the same shape, or null) from x (count, in_h, in_w),
  /// 1 <= count <= lanes: the bits of ref::maxpool2d_forward on those planes, of
  /// relu_forward(x) when `relu`. x_lanes: scratch of in_h in_w lanes floats.
  /// Groups of fewer planes than this run `rows` plane by plane where it applies (kernel_w <=
  /// kMaxRowKernel, stride_w <= kMaxRowStride) and a row's windows inside the input fill a
  /// vector (one plane alone always): a group costs `planes` as much whatever its count.
  int64_t row_planes;
  void (*planes)(float* y, int32_t* argmax, const float* x, int64_t count, const MaxPoolPlane& g,
                 bool relu, float* x_lanes);
  /// One plane, y (out_h, out_w) and argmax (or null) from x (in_h, in_w), the same bits as
  /// `planes`, consecutive windows of a row across the lanes. scratch: in_h in_w floats.
  void (*rows)(float* y, int32_t* argmax, const float* x, const MaxPoolPlane& g, bool relu,
               float* scratch);
};

/// The row kernels' limits: tap offsets and stride phases in small arrays.
constexpr int64_t kMaxRowKernel = 16, kMaxRowStride = 8;

/// The kernels of the instruction set in use (cnn::ops::isa(); AVX-512 takes AVX2's).
const MaxPoolKernels& maxpool_kernels();

const MaxPoolKernels& maxpool_avx2();      // 8 planes
const MaxPoolKernels& maxpool_portable();  // 4 planes (SSE2)

}  // namespace cnn::detail

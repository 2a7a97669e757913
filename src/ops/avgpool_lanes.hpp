#pragma once
// Average pooling's window kernels (ops::avgpool2d_forward / _backward in pool.cpp) for square
// 2x2 and 3x3 windows at stride 1 or 2, padding up to half the kernel, either divisor rule: the
// output windows across the vector lanes, one set per instruction set (avgpool_avx512.cpp: 16
// lanes, avgpool_avx2.cpp: 8, avgpool_portable.cpp: SSE2's 4) sharing avgpool_kernels.inc.
//
// They give the reference's bits (ref::avgpool2d_forward / _backward; a NaN where it has one,
// whose sign and payload may differ where a sum meets two NaNs, an input one or that of
// inf - inf: which operand's NaN a sum keeps is the compiler's choice of operand order, in the
// reference too). The forward sums a window's taps from +0 in the reference's order (row by
// row, left to right), then divides by the same divisor; the backward divides each window's dy
// by its divisor once, then makes each input-gradient element as the reference's scatter does:
// +0, plus the shares of the windows that hold it in window order (row by row, left to right).
// Taps in the padding (and windows past the output) are added as +0 instead of skipped, which
// changes no sum: a running sum that starts at +0 is never -0 (x + y is -0 only when both are),
// and s + 0 = s for any other s, NaN and infinities included.

#include <cstdint>

namespace cnn::detail {

/// One plane's pooling geometry. A plain struct: this header is compiled for every instruction
/// set and holds no inline code that could carry wide instructions into common code.
struct AvgPoolPlane {
  int64_t in_h, in_w, out_h, out_w;
  int64_t kernel, stride;  // square windows, the same stride along both axes
  int64_t pad_h, pad_w;
};

struct AvgPoolKernels {
  int64_t lanes;  // output windows a vector (forward), share columns a vector (backward)
  /// y (planes, out_h, out_w) = the window means of x (planes, in_h, in_w): the bits of
  /// ref::avgpool2d_forward. g as pool.cpp's avgpool_lanes_plane gives it (kernel 2 or 3,
  /// stride 1 or 2, padding at most half the kernel).
  void (*forward)(float* y, const float* x, int64_t planes, const AvgPoolPlane& g,
                  bool count_include_pad);
  /// dx (planes, in_h, in_w) assigned from dy (planes, out_h, out_w): the bits of
  /// ref::avgpool2d_backward. shares: scratch of share_floats(g) floats (each window's share,
  /// one plane at a time, bordered by zeros).
  void (*backward)(float* dx, const float* dy, float* shares, int64_t planes, const AvgPoolPlane& g,
                   bool count_include_pad);
  /// The floats of the backward's shares scratch for g.
  int64_t (*share_floats)(const AvgPoolPlane& g);
};

/// The kernels of the instruction set in use (cnn::ops::isa()).
const AvgPoolKernels& avgpool_kernels();

const AvgPoolKernels& avgpool_avx512();    // 16 lanes
const AvgPoolKernels& avgpool_avx2();      // 8 lanes
const AvgPoolKernels& avgpool_portable();  // 4 lanes (SSE2)

}  // namespace cnn::detail

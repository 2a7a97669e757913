#pragma once
// Helpers that the convolution drivers (conv2d.cpp, conv_implicit.cpp) share. Not for the
// per-ISA kernel files: their inline code must stay in their own translation units
// (dconv.hpp, sgemm.hpp).

#include <algorithm>
#include <cstdint>

#include "cnn/ops.hpp"
#include "dconv.hpp"
#include "parallel.hpp"

namespace cnn::detail {

inline int64_t round_up(int64_t value, int64_t multiple) {
  return (value + multiple - 1) / multiple * multiple;
}

/// What a convolution applies to each block of its output as it writes it
/// (ops::conv2d_relu_forward): with `relu`, y = relu(y + addend) when `addend` (the output's
/// shape) is not null, else relu(y), by ops::add_forward's and relu_forward's rules (the
/// same bits as the convolution, then those ops); nothing without.
struct ConvEpilogue {
  bool relu = false;
  const float* addend = nullptr;
  /// Where addend[0] lies in the whole output: 0 for an addend of the output's shape, a
  /// group's first value for an addend of that group alone (implicit_winograd4x4_pair's
  /// shortcut).
  int64_t addend_offset = 0;
  /// When not null: each output plane's ops::batchnorm_plane_moments go here, plane (n, o) of
  /// the whole output at moments + 2 (n channels + o), planes of `plane` values
  /// (ops::conv2d_forward_moments), after the ReLU and addend if any.
  double* moments = nullptr;
  int64_t plane = 0;
  /// The addend's value at `offset` in the whole output.
  const float* addend_at(int64_t offset) const { return addend + (offset - addend_offset); }
  /// Applies it to the n values at y, at `offset` in the whole output (whole planes when
  /// `moments`).
  /// (The vector kernels of the instruction set in use: the scalar loop, compiled for the
  /// x86-64 baseline, was 3-4% of resnet's evaluation forward.)
  void apply(float* y, int64_t offset, int64_t n) const {
    if (relu) direct_conv_kernels().relu_add(y, addend ? addend_at(offset) : nullptr, n);
    write_moments(y, offset, n);
  }
  /// The moments part of apply alone, for a method that applies the ReLU and addend itself.
  void write_moments(const float* y, int64_t offset, int64_t n) const {
    if (moments) ops::batchnorm_plane_moments(moments + 2 * (offset / plane), y, n / plane, plane);
  }
};

/// Part k of `parts` (a thread's share, or a block of gradient_blocks) takes images
/// [first, last) = [batch k / parts, batch (k + 1) / parts).
struct ImageRange {
  int64_t first, last;
};
inline ImageRange images_of_part(int64_t batch, int part, int parts) {
  return {batch * part / parts, batch * (part + 1) / parts};
}

/// The blocks a convolution's backward cuts a batch of `batch` images into (images_of_part) for
/// `threads` requested threads (ops::threads()): each block's weight (and bias) gradient is summed
/// on its own, from zero, and the blocks' sums are added in block order, whichever thread summed
/// which block. At least two blocks, so that one thread gives the bits of two: a model trained on 1
/// thread is the file trained on 2 (the sums would otherwise differ in rounding, and a ReLU or
/// pooling choice tipped by it grows within a few steps). More threads take one block each. (A
/// count fixed by the batch alone, four blocks of 16 images at batch 64, would give the same bits
/// on up to 4 threads, but cost 2% of resnet's training step on 2: each block's weight-gradient
/// products start from zero.)
inline int gradient_blocks(int64_t batch, int threads) {
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(batch, std::max(threads, 2))));
}

/// Images whose output positions one product takes side by side, to reach about `target`
/// positions: small planes (a stride-2 layer's 7x7 or 4x4) gave each image's product only
/// 16-49 columns (or rows), where packing and edge tiles cost as much as the multiply-adds.
inline int64_t images_per_group(int64_t target, int64_t positions, int64_t images) {
  return std::clamp<int64_t>(target / std::max<int64_t>(positions, 1), 1,
                             std::max<int64_t>(images, 1));
}

/// Columns packed together by pack_columns: a unit reads 16 of the source's rows side by
/// side and writes 64-byte runs.
inline int64_t pack_unit(int64_t block) {
  return std::min<int64_t>(block, 16);
}

/// Units [first, last) of pack_columns, on the calling thread.
template <typename At>
void pack_column_units(float* packed, int64_t valid, int64_t block, int64_t depth, int64_t first,
                       int64_t last, const At& at) {
  const int64_t unit = pack_unit(block);
  for (int64_t u = first; u < last; ++u) {
    const int64_t column0 = u * unit;
    const int64_t width = std::clamp<int64_t>(valid - column0, 0, unit);  // columns with data
    float* out = packed + column0 / block * depth * block + column0 % block;
    for (int64_t k = 0; k < depth; ++k, out += block) {
      for (int64_t j = 0; j < width; ++j) out[j] = at(column0 + j, k);
      for (int64_t j = width; j < unit; ++j) out[j] = 0.0f;
    }
  }
}

/// Packs a matrix of `valid` columns (output channels) and `depth` rows (taps), entry
/// at(column, k), into the kernels' column blocks: packed[(j / block * depth + k) * block +
/// j % block] for j < columns (a multiple of block), zero from `valid` on. `parts` threads
/// split the units; with 1 the calling thread packs, without a parallel region.
template <typename At>
void pack_columns(float* packed, int64_t valid, int64_t columns, int64_t block, int64_t depth,
                  int parts, const At& at) {
  const int64_t units = columns / pack_unit(block);
  for_each_range(static_cast<int>(std::min<int64_t>(parts, units)), units,
                 [&](int64_t first, int64_t last) {
                   pack_column_units(packed, valid, block, depth, first, last, at);
                 });
}

}  // namespace cnn::detail

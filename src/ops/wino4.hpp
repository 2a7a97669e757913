#pragma once
// The data side of Winograd F(4x4, 3x3) (winograd.hpp), one set per instruction set
// (wino4_avx512.cpp, wino4_avx2.cpp, wino4_portable.cpp share wino4_kernels.inc).
//
// Images run across the vector lanes: a "staged group" holds one channel plane of `lanes`
// images interleaved, pixel (r, c) of image l at staged[(r * staged_w + c) * lanes + l]. Every
// tile of the plane is then transformed for all of the group's images at once, each of a tile's
// 36 values one full vector load or store, whatever the plane's size (a 4x4 plane is one tile,
// 7x7 four, 14x14 sixteen). Tiles of 4 floats a vector, taken from one image's plane, left the
// 6x6 tile's 36 vectors to 16 SSE registers and their loads to shuffles; here they are plain
// loads, and a 16-lane vector does 16 tiles.
//
// In the transformed matrices V, M and Z (36 of them, position xi's at base + xi * stride),
// the columns are the chunk's tiles numbered tile-major: tile t of image n is column
// t * count + n, for `count` images in the chunk. The caller passes the matrices already
// offset to its channel's row and its group's first image, so a group's tile t sits at
// t * count.
//
// The arithmetic is element-wise, the same on every instruction set, and compiled without
// multiply-add contraction: the transforms give the same bits on every ISA.

#include <cstdint>

namespace cnn::detail {

struct Winograd4Kernels {
  int64_t lanes;  // images per staged group: floats per vector
  /// The staged group's (top + r, left + c) = pixel (r, c) of the planes of `valid` images
  /// (image l's rows x cols plane, rows contiguous, at src + l * image_stride); every other
  /// position and lane is left as it was (the caller zeroes the padding once).
  void (*stage)(float* staged, int64_t staged_w, const float* src, int64_t image_stride,
                int64_t valid, int64_t rows, int64_t cols, int64_t top, int64_t left);
  /// dst + l * image_stride (rows x cols, rows contiguous) = the staged group's region at
  /// (top, left), for the first `valid` lanes.
  void (*unstage)(float* dst, int64_t image_stride, int64_t valid, const float* staged,
                  int64_t staged_w, int64_t top, int64_t left, int64_t rows, int64_t cols);
  /// V: B^T d B of every 6x6 tile (i, j) of the staged input group (its rows 4 i .. 4 i + 5,
  /// the same columns), tile t = i * tiles_w + j at v + xi * stride + t * count, first `valid`
  /// lanes.
  void (*input_tiles)(float* v, int64_t stride, int64_t count, int64_t valid, const float* staged,
                      int64_t staged_w, int64_t tiles_h, int64_t tiles_w);
  /// Z: A d A^T of every 4x4 block (i, j) of the staged output-gradient group (staged_w =
  /// 4 tiles_w, zero past the output), stored as input_tiles stores V.
  void (*output_grad_tiles)(float* z, int64_t stride, int64_t count, int64_t valid,
                            const float* staged, int64_t staged_w, int64_t tiles_h,
                            int64_t tiles_w);
  /// The staged output group (4 tiles_h x 4 tiles_w) = A^T m A of every tile of M (read as
  /// input_tiles writes V), plus *bias when bias is not null; all lanes (those past the
  /// group's images read M's next columns or its slack, and are not unstaged).
  void (*output_tiles)(float* staged, const float* m, int64_t stride, int64_t count,
                       const float* bias, int64_t tiles_h, int64_t tiles_w);
  /// The staged input-gradient group (its rows staged_w apart) over the tiles' 4 tiles_h + 2
  /// rows and 4 tiles_w + 2 columns = the sum of B X B^T of every tile X of dL/dV (read as
  /// output_tiles reads M) placed where its 6x6 input tile was read (neighbouring tiles
  /// overlap by two rows or columns), added tile by tile in order; what the group held there
  /// before is overwritten, so it needs no zeroing.
  void (*input_grad_tiles)(float* staged, int64_t staged_w, const float* dv, int64_t stride,
                           int64_t count, int64_t tiles_h, int64_t tiles_w);
};

/// The kernels of the instruction set in use (cnn::ops::isa()).
const Winograd4Kernels& winograd4_kernels();

const Winograd4Kernels& winograd4_avx512();    // 16 lanes
const Winograd4Kernels& winograd4_avx2();      // 8 lanes
const Winograd4Kernels& winograd4_portable();  // 4 lanes

}  // namespace cnn::detail

#pragma once
// The data side of Winograd F(2x2, 3x3) and F(4x4, 3x3) (winograd.hpp) with images across the
// vector lanes, and the kernel side with kernels across them (kernel_tiles), one set per
// instruction set (winograd_lanes_avx512.cpp, winograd_lanes_avx2.cpp,
// winograd_lanes_portable.cpp share winograd_lanes_kernels.inc). F(4x4) always runs this way,
// F(2x2) from 32 images on AVX2 and AVX-512 (winograd.cpp, kWinogradLanesMinBatch).
//
// A "staged group" holds one channel plane of `lanes` images interleaved, pixel (r, c) of image
// l at staged[(r * staged_w + c) * lanes + l]. Every tile of the plane is then transformed for
// all of the group's images at once, each of a tile's alpha^2 values (16 or 36) one full vector
// load or store, whatever the plane's size (a 4x4 plane is one 6x6 tile, 7x7 four, 14x14
// forty-nine 4x4 tiles). Tiles of 4 floats a vector, taken from one image's plane, left the
// 6x6 tile's 36 vectors to 16 SSE registers and their loads to shuffles; here they are plain
// loads, and a 16-lane vector does 16 tiles.
//
// In the transformed matrices V, M and Z (alpha^2 of them, position xi's at base + xi *
// stride), the columns are the chunk's tiles numbered tile-major: tile t of image n is column
// t * count + n, for `count` images in the chunk. The caller passes the matrices already
// offset to its channel's row and its group's first image, so a group's tile t sits at
// t * count.
//
// The arithmetic is element-wise, the same on every instruction set, and compiled without
// multiply-add contraction: the transforms give the same bits on every ISA. F(2x2)'s are the
// operations of winograd.cpp's 4-tiles-a-vector transforms in the same order, so its forward
// gives the same bits by either.

#include <cstdint>

namespace cnn::detail {

struct WinogradLaneKernels {
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
  /// The tile transforms of F(m x m, 3x3) (m = 2 or 4; alpha = m + 2 inputs a tile along an
  /// axis, alpha^2 tile positions).
  struct Tiles {
    /// V: B^T d B of every alpha x alpha tile (i, j) of the staged input group (its rows m i ..
    /// m i + alpha - 1, the same columns), tile t = i * tiles_w + j at v + xi * stride +
    /// t * count, first `valid` lanes.
    void (*input_tiles)(float* v, int64_t stride, int64_t count, int64_t valid, const float* staged,
                        int64_t staged_w, int64_t tiles_h, int64_t tiles_w);
    /// Z: A d A^T of every m x m block (i, j) of the staged output-gradient group (staged_w =
    /// m tiles_w, zero past the output), stored as input_tiles stores V.
    void (*output_grad_tiles)(float* z, int64_t stride, int64_t count, int64_t valid,
                              const float* staged, int64_t staged_w, int64_t tiles_h,
                              int64_t tiles_w);
    /// The staged output group (m tiles_h x m tiles_w) = A^T m A of every tile of M (read as
    /// input_tiles writes V), plus *bias when bias is not null; all lanes (those past the
    /// group's images read M's next columns or its slack, and are not unstaged).
    void (*output_tiles)(float* staged, const float* m, int64_t stride, int64_t count,
                         const float* bias, int64_t tiles_h, int64_t tiles_w);
    /// The staged input-gradient group (its rows staged_w apart) over the tiles' m tiles_h + 2
    /// rows and m tiles_w + 2 columns = the sum of B X B^T of every tile X of dL/dV (read as
    /// output_tiles reads M) placed where its input tile was read (neighbouring tiles overlap
    /// by two rows or columns), added tile by tile in order; what the group held there before
    /// is overwritten, so it needs no zeroing.
    void (*input_grad_tiles)(float* staged, int64_t staged_w, const float* dv, int64_t stride,
                             int64_t count, int64_t tiles_h, int64_t tiles_w);
    /// The kernel side, U = G g G^T of up to `lanes` 3x3 kernels a call: lanes l < width of
    /// U_xi to packs[xi] + at (xi < alpha^2), lane l from the kernel at kernels + l *
    /// kernel_stride for l < count, +0 past count (count <= width <= lanes). The operations
    /// of winograd_kernel_side.inc, lane by lane: the same bits on every instruction set.
    void (*kernel_tiles)(float* const* packs, int64_t at, const float* kernels,
                         int64_t kernel_stride, int64_t count, int64_t width);
  };
  Tiles f2;  // F(2x2, 3x3): 4x4 tiles, 16 positions
  Tiles f4;  // F(4x4, 3x3): 6x6 tiles, 36 positions
};

/// The kernels of the instruction set in use (cnn::ops::isa()).
const WinogradLaneKernels& winograd_lane_kernels();

const WinogradLaneKernels& winograd_lanes_avx512();    // 16 lanes
const WinogradLaneKernels& winograd_lanes_avx2();      // 8 lanes
const WinogradLaneKernels& winograd_lanes_portable();  // 4 lanes

}  // namespace cnn::detail

// Winograd F(2x2, 3x3), see winograd.hpp (F(4x4, 3x3) further down). With d a 4x4 input
// tile, g a 3x3 kernel and
//   B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1], G = [1 0 0; .5 .5 .5; .5 -.5 .5; 0 0 1],
//   A^T = [1 1 1 0; 0 1 -1 -1],
// the 2x2 output block is A^T [(G g G^T) . (B^T d B)] A. Summed over input channels, the
// element-wise products become, for each of the 16 tile positions xi, one matrix product
// M_xi (out_channels x tiles) = U_xi (out_channels x in_channels) V_xi (in_channels x tiles).

#include "winograd.hpp"

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <utility>
#include <vector>

#include "cnn/ops.hpp"
#include "conv_common.hpp"
#include "conv_implicit.hpp"
#include "dconv.hpp"
#include "gemm.hpp"
#include "parallel.hpp"
#include "scratch.hpp"
#include "winograd_lanes.hpp"

namespace cnn::detail {

namespace {

typedef float v4 __attribute__((vector_size(16)));
typedef int v4i __attribute__((vector_size(16)));

inline v4 load4(const float* p) {
  v4 v;
  __builtin_memcpy(&v, p, sizeof v);
  return v;
}

#include "winograd_kernel_side.inc"

/// The kernel side of Winograd F(2x2, 3x3): 16 tile positions; U = G g G^T by the lane
/// kernels (kernel_tiles), dL/dg = G^T (dL/dU) G here.
struct TileF2 {
  static constexpr int kM = 2;  // outputs a block along an axis
  static constexpr int kPositions = 16;
  static const WinogradLaneKernels::Tiles& lane_tiles(const WinogradLaneKernels& k) { return k.f2; }
  template <typename V>
  static void gradient(const V (&x)[kPositions], V (&k)[9]) {
    kernel_gradient_f2(x, k);
  }
};

/// The parts the per-kernel work of a layer with `pairs` kernels splits into: one per thread
/// when there is enough of it. Below 2,048 kernels (32 x 64 channels) one thread does it: the
/// work (a few microseconds) is then about what a parallel region costs.
int kernel_parts(int64_t pairs) {
  return pairs >= 2048 ? ops::threads() : 1;
}

/// body(first, last) for each part of the kernels (kernel_parts of them), split by
/// for_each_range at multiples of 4 (the transforms' vectors).
template <typename Body>
void for_each_kernel_range(int64_t pairs, const Body& body) {
  for_each_range(kernel_parts(pairs), (pairs + 3) / 4,
                 [&](int64_t first, int64_t last) { body(first * 4, std::min(pairs, last * 4)); });
}

struct Geometry {
  int64_t in_channels, height, width, out_channels, pad_h, pad_w;
  int64_t out_h, out_w, tiles_h, tiles_w;
  int64_t staged_h, staged_w;  // a zero-padded plane that every tile lies inside
};

/// The distance in floats between the matrices of consecutive tile positions xi of V, M or Z
/// (rows x tiles each): 64 bytes past a multiple of 4 KiB, so that the 16 streams a transform
/// reads or writes at once (one per position) fall in different L1 sets, and each matrix
/// has at least 16 floats of slack after it. Packed at rows x tiles they could all fall in one
/// set of the 8-way L1: resnet's 4x4 layer (128 channels x 128 tiles, 64 KiB apart) and 7x7
/// layer (64 x 1,024) ran their transforms 20-25% slower.
int64_t winograd_position_stride(int64_t rows, int64_t tiles) {
  return (rows * tiles + 1023) / 1024 * 1024 + 16;
}

/// The same spacing for dL/dU (positions, out_channels, in_channels): its transform reads all
/// positions of 4 kernels at once. Packed at `pairs` apart (64 KiB for 128 x 128 channels),
/// F(4x4, 3x3)'s 36 streams shared one L1 set (so did its U's, when U was written out whole:
/// the two transforms then took 3.6% of resnet's training step).
int64_t kernel_position_stride(int64_t pairs) {
  return winograd_position_stride(pairs, 1);
}

/// The transformed kernels U_xi = G g G^T of a layer written straight into the packed A of each
/// tile position's GEMM (sgemm_packed_a_layout), for the instruction set in use: A_xi = U_xi
/// (out_channels x in_channels) for the forward, its transpose for the input gradient. U was
/// written out whole and then packed before: for resnet's 128-channel layer by F(4x4, 3x3) that
/// is 2.4 MB out to the L3 and back, and the weight side took about as long as the layer's
/// products in a training forward. The lane kernels (kernel_tiles) transform a panel's rows of
/// one column of A at once (its MR kernels, one a lane) and store each position's MR values as
/// one row of the panel, panel by panel, column after column (one store stream a position);
/// threads split the columns. With `copy`, the threads also copy the weights there (the
/// cache's record of what was transformed), each the share of its columns.
template <typename Tile>
void transform_into_packed(std::vector<float>* packs, const float* weights, int64_t out_channels,
                           int64_t in_channels, bool transposed, float* copy = nullptr) {
  const int64_t rows = transposed ? in_channels : out_channels;
  const int64_t cols = transposed ? out_channels : in_channels;
  const PackedALayout layout = sgemm_packed_a_layout(rows, cols);
  const WinogradLaneKernels& lanes = winograd_lane_kernels();
  if (layout.mr > lanes.lanes)
    throw std::logic_error("transform_into_packed: MR exceeds the lanes");
  float* dest[Tile::kPositions];
  for (int xi = 0; xi < Tile::kPositions; ++xi) {
    if (packs[xi].size() < static_cast<size_t>(layout.size()))
      packs[xi].resize(static_cast<size_t>(layout.size()));
    dest[xi] = packs[xi].data();
  }
  // Kernel (o, c) is A's element (o, c), or (c, o) when transposed: rows of A are in_channels
  // kernels apart, or one.
  const int64_t row_stride = (transposed ? 1 : in_channels) * 9;
  const auto kernel = [&](int64_t i, int64_t p) {
    return transposed ? p * in_channels + i : i * in_channels + p;
  };
  const auto kernel_tiles = Tile::lane_tiles(lanes).kernel_tiles;
  const int64_t count = rows * cols * 9;
  for_each_range(kernel_parts(rows * cols), cols, [&](int64_t first, int64_t last) {
    if (copy) {
      const int64_t from = count * first / cols, to = count * last / cols;
      std::memcpy(copy + from, weights + from, static_cast<size_t>(to - from) * sizeof(float));
    }
    for (int64_t i0 = 0; i0 < rows; i0 += layout.mr)
      for (int64_t p = first; p < last; ++p) {
        kernel_tiles(dest, layout.offset(i0, p), weights + kernel(i0, p) * 9, row_stride,
                     std::min(layout.mr, rows - i0), layout.mr);
      }
  });
}

/// Even and odd lanes of the 8 floats at p.
inline void deinterleave8(const float* p, v4& even, v4& odd) {
  const v4 a = load4(p), b = load4(p + 4);
  even = __builtin_shufflevector(a, b, 0, 2, 4, 6);
  odd = __builtin_shufflevector(a, b, 1, 3, 5, 7);
}

inline void store4(float* p, v4 v) {
  __builtin_memcpy(p, &v, sizeof v);
}

/// The first column of each group of 4 tiles in a row of `tiles_w`: 0, 4, 8, ..., and for a
/// remainder the last 4 tiles (overlapping the group before, whose values it recomputes
/// identically). Rows of fewer than 4 tiles take one tile at a time.
inline int64_t group_start(int64_t j0, int64_t tiles_w) {
  return std::min(j0, tiles_w - 4);
}

/// The (row, column) of a small plane's tiles, visited in order: advanced one tile at a time.
/// (t / tiles_w and t % tiles_w for every tile compiled to a 64-bit division that took a fifth
/// of transform_inputs' samples in resnet's training step.)
struct TileCursor {
  int64_t row = 0, col = 0;
  void advance(int64_t tiles_w) {
    if (++col == tiles_w) {
      col = 0;
      ++row;
    }
  }
};

/// Small planes (fewer than 4 tiles a row) take 4 consecutive tiles of the image a vector,
/// across rows: the start of each lane's tile in a staged plane whose rows are row_stride
/// apart, from the tile at `cursor` on (which moves past the group's `count` tiles), tiles
/// 2 apart. A last group of fewer than 4 tiles repeats its last tile in the spare lanes (whose
/// results are not stored).
inline void small_plane_lane_tiles(const float* staged, int64_t row_stride, int64_t count,
                                   const Geometry& g, TileCursor& cursor, const float* (&tops)[4]) {
  constexpr int64_t step = 2;
  for (int64_t l = 0; l < 4; ++l) {
    if (l < count) {
      tops[l] = staged + step * cursor.row * row_stride + step * cursor.col;
      cursor.advance(g.tiles_w);
    } else {
      tops[l] = tops[count - 1];
    }
  }
}

/// B^T d B of 4 tiles, one a lane, from d[r][col] (element (r, col) of each tile; overwritten),
/// stored at out + xi * stride (xi = r * 4 + col) for the first `count` lanes.
inline void transform_tile_group(v4 (&d)[4][4], float* out, int64_t stride, int64_t count) {
  for (int col = 0; col < 4; ++col) {  // B^T d, column by column
    const v4 t0 = d[0][col] - d[2][col], t1 = d[1][col] + d[2][col], t2 = d[2][col] - d[1][col],
             t3 = d[1][col] - d[3][col];
    d[0][col] = t0;
    d[1][col] = t1;
    d[2][col] = t2;
    d[3][col] = t3;
  }
  for (int r = 0; r < 4; ++r) {  // (B^T d) B, row by row
    const v4* t = d[r];
    const v4 values[4] = {t[0] - t[2], t[1] + t[2], t[2] - t[1], t[1] - t[3]};
    for (int col = 0; col < 4; ++col) {
      float* to = out + (r * 4 + col) * stride;
      if (count == 4) {
        store4(to, values[col]);
      } else {
        for (int64_t l = 0; l < count; ++l) to[l] = values[col][l];
      }
    }
  }
}

/// V (16, in_channels, tiles) for the images of a chunk: B^T d B of every 4x4 tile, tiles
/// numbered (image, tile row, tile column), position xi's matrix at v + xi * stride.
/// `staged` holds one zero-padded plane.
void transform_inputs(float* v, int64_t stride, int64_t tiles, int64_t first_tile,
                      const float* image, float* staged, const Geometry& g) {
  const int64_t per_image = g.tiles_h * g.tiles_w;
  for (int64_t c = 0; c < g.in_channels; ++c) {
    direct_conv_kernels().copy_rows(staged + g.pad_h * g.staged_w + g.pad_w, g.staged_w,
                                    image + c * g.height * g.width, g.width, g.height, g.width);
    float* vc = v + c * tiles + first_tile;
    if (g.tiles_w < 4) {
      // Small planes (a 4x4 output has 2 tiles a row, a 5x5 or 6x6 one 3): each lane's 4
      // rows come in by one load each and a 4x4 transpose puts column col of the 4 tiles in
      // d[r][col].
      TileCursor cursor;
      for (int64_t t0 = 0; t0 < per_image; t0 += 4) {
        const int64_t count = std::min<int64_t>(4, per_image - t0);
        const float* tops[4];
        small_plane_lane_tiles(staged, g.staged_w, count, g, cursor, tops);
        v4 d[4][4];
        for (int r = 0; r < 4; ++r) {
          const v4 a = load4(tops[0] + r * g.staged_w), b = load4(tops[1] + r * g.staged_w),
                   e = load4(tops[2] + r * g.staged_w), f = load4(tops[3] + r * g.staged_w);
          const v4 ab_low = __builtin_shufflevector(a, b, 0, 4, 1, 5);
          const v4 ab_high = __builtin_shufflevector(a, b, 2, 6, 3, 7);
          const v4 ef_low = __builtin_shufflevector(e, f, 0, 4, 1, 5);
          const v4 ef_high = __builtin_shufflevector(e, f, 2, 6, 3, 7);
          d[r][0] = __builtin_shufflevector(ab_low, ef_low, 0, 1, 4, 5);
          d[r][1] = __builtin_shufflevector(ab_low, ef_low, 2, 3, 6, 7);
          d[r][2] = __builtin_shufflevector(ab_high, ef_high, 0, 1, 4, 5);
          d[r][3] = __builtin_shufflevector(ab_high, ef_high, 2, 3, 6, 7);
        }
        transform_tile_group(d, vc + t0, stride, count);
      }
      continue;
    }
    for (int64_t i = 0; i < g.tiles_h; ++i) {
      const float* top = staged + 2 * i * g.staged_w;
      for (int64_t j0 = 0; j0 < g.tiles_w; j0 += 4) {
        const int64_t j = group_start(j0, g.tiles_w);
        // d[r][col]: element (r, col) of 4 tiles, one a lane. Tile j + l reads columns
        // 2 (j + l) .. 2 (j + l) + 3: the even and odd lanes from column 2j, then from 2j + 2.
        v4 d[4][4];
        for (int r = 0; r < 4; ++r) {
          const float* row = top + r * g.staged_w + 2 * j;
          deinterleave8(row, d[r][0], d[r][1]);
          deinterleave8(row + 2, d[r][2], d[r][3]);
        }
        transform_tile_group(d, vc + i * g.tiles_w + j, stride, 4);
      }
    }
  }
}

/// The 2x2 output blocks of 4 consecutive tiles of channel o: A^T m A, from
/// M (16, out_channels, tiles) at tile p0. rows[0] holds the blocks' top rows interleaved
/// (y00 y01 of tile 0, y00 y01 of tile 1, ...), rows[1] their bottom rows.
void output_blocks(const float* mo, int64_t stride, int64_t p0, float rows[2][8]) {
  // Lanes past the tiles the caller stores read the next tiles or channel (M has 4 floats of
  // slack at its end); they are computed and never stored.
  v4 x[16];
  for (int xi = 0; xi < 16; ++xi) x[xi] = load4(mo + xi * stride + p0);
  for (int r = 0; r < 2; ++r) {
    v4 s[4];  // row r of A^T m
    for (int col = 0; col < 4; ++col) {
      s[col] = r == 0 ? x[col] + x[4 + col] + x[8 + col] : x[4 + col] - x[8 + col] - x[12 + col];
    }
    const v4 left = s[0] + s[1] + s[2], right = s[1] - s[2] - s[3];  // (A^T m) A
    const v4 low = __builtin_shufflevector(left, right, 0, 4, 1, 5);
    const v4 high = __builtin_shufflevector(left, right, 2, 6, 3, 7);
    __builtin_memcpy(rows[r], &low, sizeof low);
    __builtin_memcpy(rows[r] + 4, &high, sizeof high);
  }
}

/// y of the chunk's images from M (16, out_channels, tiles; position xi's matrix at
/// m + xi * stride) plus the bias; blocks past out_h / out_w (odd sizes) are cut.
void transform_outputs(float* y, const float* m, int64_t stride, int64_t tiles, const float* bias,
                       const Geometry& g) {
  const int64_t per_image = g.tiles_h * g.tiles_w;
  const int64_t images = tiles / per_image;
  for (int64_t n = 0; n < images; ++n)
    for (int64_t o = 0; o < g.out_channels; ++o) {
      const float b = bias ? bias[o] : 0.0f;
      const float* mo = m + o * tiles + n * per_image;
      float* yo = y + (n * g.out_channels + o) * g.out_h * g.out_w;
      if (g.tiles_w < 4) {
        // Small planes: 4 consecutive tiles of the image a vector, across rows (as in
        // transform_inputs), each lane's 2x2 block then stored on its own, cut at the edges.
        TileCursor cursor;
        for (int64_t t0 = 0; t0 < per_image; t0 += 4) {
          float rows[2][8];
          output_blocks(mo, stride, t0, rows);
          for (int64_t t = t0; t < std::min(t0 + 4, per_image); ++t, cursor.advance(g.tiles_w)) {
            const int64_t i = cursor.row, j = cursor.col, lane = t - t0;
            for (int64_t r = 0; r < 2 && 2 * i + r < g.out_h; ++r) {
              float* out = yo + (2 * i + r) * g.out_w + 2 * j;
              out[0] = rows[r][2 * lane] + b;
              if (2 * j + 1 < g.out_w) out[1] = rows[r][2 * lane + 1] + b;
            }
          }
        }
        continue;
      }
      for (int64_t i = 0; i < g.tiles_h; ++i) {
        float* top = yo + 2 * i * g.out_w;
        const bool has_bottom = 2 * i + 1 < g.out_h;
        for (int64_t j0 = 0; j0 < g.tiles_w; j0 += 4) {
          const int64_t j = group_start(j0, g.tiles_w);
          float rows[2][8];
          output_blocks(mo, stride, i * g.tiles_w + j, rows);
          // Columns 2 j .. 2 j + 7, cut at out_w.
          const int64_t width = std::min<int64_t>(8, g.out_w - 2 * j);
          for (int r = 0; r < (has_bottom ? 2 : 1); ++r) {
            float* out = top + r * g.out_w + 2 * j;
            if (width == 8) {
              store4(out, load4(rows[r]) + b);
              store4(out + 4, load4(rows[r] + 4) + b);
            } else {
              for (int64_t k = 0; k < width; ++k) out[k] = rows[r][k] + b;
            }
          }
        }
      }
    }
}

/// The geometry of F(tile x tile, 3x3) (tile 2 or 4) on one layer.
Geometry make_geometry(int64_t in_channels, int64_t height, int64_t width, int64_t out_channels,
                       int64_t pad_h, int64_t pad_w, int64_t tile = 2) {
  Geometry g{};
  g.in_channels = in_channels;
  g.height = height;
  g.width = width;
  g.out_channels = out_channels;
  g.pad_h = pad_h;
  g.pad_w = pad_w;
  g.out_h = height + 2 * pad_h - 2;
  g.out_w = width + 2 * pad_w - 2;
  g.tiles_h = (g.out_h + tile - 1) / tile;
  g.tiles_w = (g.out_w + tile - 1) / tile;
  // Tile (i, j) reads staged rows tile i .. tile i + tile + 1, and the same columns.
  g.staged_h = tile * g.tiles_h + 2;
  g.staged_w = tile * g.tiles_w + 2;
  return g;
}

/// Images per chunk: about 2 MiB of transformed tiles (V and M, or V and Z) per thread.
int64_t images_per_chunk(const Geometry& g, int64_t batch) {
  const int64_t per_image = g.tiles_h * g.tiles_w;
  return std::clamp<int64_t>(
      (int64_t{1} << 19) / (16 * (g.in_channels + g.out_channels) * per_image), 1, batch);
}

/// Z (16, out_channels, tiles; position xi's matrix at z + xi * stride) for the images of a
/// chunk: A d A^T of every 2x2 block of dy (zero past out_h / out_w), the gradient with
/// respect to the tiles' products. `staged` holds a plane of 2 tiles_h rows of
/// `grad_staged_w` floats, zero past out_h and out_w.
void transform_output_grads(float* z, int64_t stride, int64_t tiles, const float* dy,
                            int64_t images, float* staged, int64_t grad_staged_w,
                            const Geometry& g) {
  const int64_t per_image = g.tiles_h * g.tiles_w;
  for (int64_t n = 0; n < images; ++n)
    for (int64_t o = 0; o < g.out_channels; ++o) {
      direct_conv_kernels().copy_rows(staged, grad_staged_w,
                                      dy + (n * g.out_channels + o) * g.out_h * g.out_w, g.out_w,
                                      g.out_h, g.out_w);
      float* zo = z + o * tiles + n * per_image;
      if (g.tiles_w < 4) {
        // Small planes: 4 tiles of the image a vector (small_plane_lane_tiles).
        TileCursor cursor;
        for (int64_t t0 = 0; t0 < per_image; t0 += 4) {
          const int64_t count = std::min<int64_t>(4, per_image - t0);
          const float* tops[4];
          small_plane_lane_tiles(staged, grad_staged_w, count, g, cursor, tops);
          float block[4][4];  // [element (row, column) of the 2x2 block][lane]
          for (int l = 0; l < 4; ++l) {
            const float* top = tops[l];
            block[0][l] = top[0];
            block[1][l] = top[1];
            block[2][l] = top[grad_staged_w];
            block[3][l] = top[grad_staged_w + 1];
          }
          const v4 d00 = load4(block[0]), d01 = load4(block[1]), d10 = load4(block[2]),
                   d11 = load4(block[3]);
          const v4 ad[4][2] = {
              {d00, d01}, {d00 + d10, d01 + d11}, {d00 - d10, d01 - d11}, {-d10, -d11}};
          for (int r = 0; r < 4; ++r) {
            const v4 a = ad[r][0], b = ad[r][1];
            const v4 out[4] = {a, a + b, a - b, -b};
            for (int col = 0; col < 4; ++col) {
              float* to = zo + (r * 4 + col) * stride + t0;
              if (count == 4) {
                store4(to, out[col]);
              } else {
                for (int64_t l = 0; l < count; ++l) to[l] = out[col][l];
              }
            }
          }
        }
        continue;
      }
      for (int64_t i = 0; i < g.tiles_h; ++i)
        for (int64_t j0 = 0; j0 < g.tiles_w; j0 += 4) {
          const int64_t j = group_start(j0, g.tiles_w);  // lanes: 4 tiles of the row
          v4 d00, d01, d10, d11;
          const float* top = staged + 2 * i * grad_staged_w + 2 * j;
          deinterleave8(top, d00, d01);
          deinterleave8(top + grad_staged_w, d10, d11);
          // A d: rows d0, d0 + d1, d0 - d1, -d1; then each row [a, b] times A^T.
          const v4 ad[4][2] = {
              {d00, d01}, {d00 + d10, d01 + d11}, {d00 - d10, d01 - d11}, {-d10, -d11}};
          float* zt = zo + i * g.tiles_w + j;
          for (int r = 0; r < 4; ++r) {
            const v4 a = ad[r][0], b = ad[r][1];
            const v4 out[4] = {a, a + b, a - b, -b};
            for (int col = 0; col < 4; ++col) store4(zt + (r * 4 + col) * stride, out[col]);
          }
        }
    }
}

/// The transformed weight matrices U_xi of one layer (16 for F(2x2, 3x3), 36 for F(4x4, 3x3)),
/// packed for the GEMM, as kept between calls on one thread.
struct PackedWeights {
  const float* source = nullptr;
  int64_t in_channels = 0, out_channels = 0;
  int positions = 0;                   // which transform made them
  ops::Isa isa = ops::Isa::kPortable;  // the packing's layout
  std::vector<float> copy;             // the weights they were made from
  bool scaled = false;                 // made with a weight scale, a copy of which is:
  std::vector<float> scale_copy;
  std::vector<float> packed[36];
};

/// The packed U_xi of `weights` (times `scale` per output channel when not null): from the
/// latest calls on this thread when the weights and scale are the same bytes as then
/// (inference runs the same layers again and again; their transform and packing were ~15 us of
/// convnet conv2's 75 us forward of one image), else made anew into the entry of the same
/// weights pointer, or a new or the oldest entry of 8.
template <typename Tile>
const std::vector<float>* packed_weights(const float* weights, const float* scale,
                                         int64_t in_channels, int64_t out_channels) {
  constexpr size_t kEntries = 8;
  thread_local std::vector<PackedWeights> cache;
  thread_local size_t next_victim = 0;
  // Entries never move (lanes_conv3x3_pair holds two of them at once).
  if (cache.capacity() < kEntries) cache.reserve(kEntries);
  const int64_t pairs = out_channels * in_channels;
  const size_t count = static_cast<size_t>(pairs * 9);
  const ops::Isa isa = ops::isa();
  PackedWeights* entry = nullptr;
  for (PackedWeights& e : cache) {
    if (e.source != weights) continue;
    if (e.in_channels == in_channels && e.out_channels == out_channels &&
        e.positions == Tile::kPositions && e.isa == isa && e.scaled == (scale != nullptr) &&
        std::memcmp(e.copy.data(), weights, count * sizeof(float)) == 0 &&
        (!scale || std::memcmp(e.scale_copy.data(), scale,
                               static_cast<size_t>(out_channels) * sizeof(float)) == 0)) {
      return e.packed;
    }
    entry = &e;
  }
  if (!entry) {
    if (cache.size() < kEntries) {
      cache.emplace_back();
      entry = &cache.back();
    } else {
      entry = &cache[next_victim];
      next_victim = (next_victim + 1) % kEntries;
    }
  }
  entry->source = weights;
  entry->in_channels = in_channels;
  entry->out_channels = out_channels;
  entry->positions = Tile::kPositions;
  entry->isa = isa;
  // The weights' copy is made by the transform's threads (transform_into_packed), or here
  // when they transform a scaled copy instead.
  entry->copy.resize(count);
  entry->scaled = scale != nullptr;
  const float* source = weights;
  if (scale) {
    entry->scale_copy.assign(scale, scale + out_channels);
    std::memcpy(entry->copy.data(), weights, count * sizeof(float));
    // The scaled kernels written out first, then transformed: each value rounded as a scaled
    // copy would hold it (a multiplication inside the transform could be contracted into a
    // multiply-add).
    std::vector<float>& scaled = shared_scratch<float>(1, static_cast<int64_t>(count));
    scale_rows(scaled.data(), weights, scale, out_channels, in_channels * 9);
    source = scaled.data();
  }
  transform_into_packed<Tile>(entry->packed, source, out_channels, in_channels, false,
                              scale ? nullptr : entry->copy.data());
  return entry->packed;
}

/// winograd_conv3x3 with the data transforms 4 tiles of one image a vector (the small batches'
/// F(2x2)): every image's tiles fill the lanes, however few the images.
void tile_vectors_conv3x3(float* y, const float* x, const float* weights, const float* weight_scale,
                          const float* bias, int64_t batch, int64_t in_channels, int64_t height,
                          int64_t width, int64_t out_channels, int64_t pad_h, int64_t pad_w,
                          ConvEpilogue epilogue) {
  const Geometry g = make_geometry(in_channels, height, width, out_channels, pad_h, pad_w);
  // Each U_xi packed once for the GEMM kernel, shared read-only by the threads.
  const std::vector<float>* packs =
      packed_weights<TileF2>(weights, weight_scale, in_channels, out_channels);

  const int64_t per_image = g.tiles_h * g.tiles_w;
  const int64_t chunk = images_per_chunk(g, batch);
  const int64_t in_size = in_channels * height * width;
  const int team = static_cast<int>(std::min<int64_t>(ops::threads(), batch));
  for_each_part(team, [&](int part) {
    const auto [first, last] = images_of_part(batch, part, team);
    float* staged = scratch<float>(4, g.staged_h * g.staged_w);
    std::fill(staged, staged + g.staged_h * g.staged_w, 0.0f);
    float* v = scratch<float>(5, 16 * winograd_position_stride(in_channels, chunk * per_image));
    float* m = scratch<float>(6, 16 * winograd_position_stride(out_channels, chunk * per_image));
    for (int64_t start = first; start < last; start += chunk) {
      const int64_t count = std::min(chunk, last - start);
      const int64_t tiles = count * per_image;
      // The one place the chunk's layout is decided: the transforms and the GEMMs take it.
      const int64_t v_stride = winograd_position_stride(in_channels, tiles);
      const int64_t m_stride = winograd_position_stride(out_channels, tiles);
      for (int64_t i = 0; i < count; ++i)
        transform_inputs(v, v_stride, tiles, i * per_image, x + (start + i) * in_size, staged, g);
      for (int xi = 0; xi < 16; ++xi) {
        sgemm_nn_prepacked(out_channels, tiles, in_channels, packs[xi].data(), v + xi * v_stride,
                           tiles, m + xi * m_stride, tiles, false);
      }
      float* const out = y + start * out_channels * g.out_h * g.out_w;
      transform_outputs(out, m, m_stride, tiles, bias, g);
      epilogue.apply(out, start * out_channels * g.out_h * g.out_w,
                     count * out_channels * g.out_h * g.out_w);
    }
  });
}

}  // namespace

}  // namespace cnn::detail

namespace cnn::detail {

namespace {

/// dx of the chunk's images from dL/dV (16, in_channels, tiles; position xi's matrix at
/// dv + xi * stride): every tile's B (dL/dV) B^T added into a zero-padded plane at the place
/// its 4x4 input tile was read from (neighbouring tiles overlap by two rows or columns), then
/// the plane's interior copied to dx. `staged` holds one plane plus 8 floats of slack.
void transform_input_grads(float* dx, const float* dv, int64_t stride, int64_t tiles,
                           int64_t images, float* staged, const Geometry& g) {
  const int64_t per_image = g.tiles_h * g.tiles_w;
  const int64_t plane = g.staged_h * g.staged_w;
  const v4i lanes = {0, 1, 2, 3};
  for (int64_t n = 0; n < images; ++n)
    for (int64_t c = 0; c < g.in_channels; ++c) {
      std::fill(staged, staged + plane + 8, 0.0f);
      const float* vc = dv + c * tiles + n * per_image;
      for (int64_t i = 0; i < g.tiles_h; ++i) {
        // Columns 2j and 2j + 1 of a row receive columns 0 and 1 of tile j's block and
        // columns 2 and 3 of tile j - 1's: the latter carried in from the lane (or the group
        // of 4 tiles) before.
        v4 carry2[4] = {}, carry3[4] = {};
        for (int64_t j0 = 0; j0 < g.tiles_w; j0 += 4) {
          const int64_t count = std::min<int64_t>(4, g.tiles_w - j0);
          v4 x[16];
          for (int xi = 0; xi < 16; ++xi) {
            // Lanes past `count` read the next tiles or channel (dV has 4 floats of slack at
            // its end) and are zeroed.
            x[xi] = load4(vc + xi * stride + i * g.tiles_w + j0);
            if (count < 4) x[xi] = lanes < static_cast<int>(count) ? x[xi] : v4{};
          }
          for (int r = 0; r < 4; ++r) {
            v4 s[4];  // row r of B X
            for (int col = 0; col < 4; ++col) {
              const v4 x0 = x[col], x1 = x[4 + col], x2 = x[8 + col], x3 = x[12 + col];
              s[col] = r == 0 ? x0 : r == 1 ? x1 - x2 + x3 : r == 2 ? x1 + x2 - x0 : -x3;
            }
            // (B X) B^T, column by column.
            const v4 col0 = s[0], col1 = s[1] - s[2] + s[3], col2 = s[1] + s[2] - s[0],
                     col3 = -s[3];
            // (previous, current) -> previous[3], current[0..2]
            const v4 even = col0 + __builtin_shufflevector(carry2[r], col2, 3, 4, 5, 6);
            const v4 odd = col1 + __builtin_shufflevector(carry3[r], col3, 3, 4, 5, 6);
            carry2[r] = col2;
            carry3[r] = col3;
            // Past the last tile, a zeroed lane holds the carry and the lanes after it add
            // zeros (into the slack, or the next row's left padding).
            float* row = staged + (2 * i + r) * g.staged_w + 2 * j0;
            const v4 low = load4(row) + __builtin_shufflevector(even, odd, 0, 4, 1, 5);
            const v4 high = load4(row + 4) + __builtin_shufflevector(even, odd, 2, 6, 3, 7);
            __builtin_memcpy(row, &low, sizeof low);
            __builtin_memcpy(row + 4, &high, sizeof high);
          }
        }
        if (g.tiles_w % 4 == 0) {  // the last tile's columns 2 and 3 are still carried
          for (int r = 0; r < 4; ++r) {
            float* row = staged + (2 * i + r) * g.staged_w + 2 * g.tiles_w;
            row[0] += carry2[r][3];
            row[1] += carry3[r][3];
          }
        }
      }
      direct_conv_kernels().copy_rows(dx + (n * g.in_channels + c) * g.height * g.width, g.width,
                                      staged + g.pad_h * g.staged_w + g.pad_w, g.staged_w, g.height,
                                      g.width);
    }
}

/// The products of a backward chunk with `tiles` tiles, for each of `positions` tile
/// positions xi (matrices V_xi, Z_xi and dL/dU_xi `v_stride`, `z_stride` and `du_stride`
/// apart): dL/dU_xi = (with `accumulate`: +=) Z_xi (out_channels x tiles) V_xi^T (tiles x
/// in_channels), and when `packs` (U_xi^T packed) is not null, dL/dV_xi = U_xi^T Z_xi written
/// over V_xi, used up. A thread's first chunk assigns its dL/dU: zeroing them first wrote
/// 2.4 MB a call for resnet's 128-channel layer, for nothing.
void backward_products(int positions, int64_t out_channels, int64_t in_channels, int64_t tiles,
                       float* v, int64_t v_stride, const float* z, int64_t z_stride, float* du,
                       int64_t du_stride, bool accumulate, const std::vector<float>* packs) {
  for (int xi = 0; xi < positions; ++xi) {
    float* v_xi = v + xi * v_stride;
    const float* z_xi = z + xi * z_stride;
    gemm_nt<float>(out_channels, in_channels, tiles, z_xi, tiles, v_xi, tiles, du + xi * du_stride,
                   in_channels, accumulate);
    if (packs) {
      sgemm_nn_prepacked(in_channels, tiles, out_channels, packs[xi].data(), z_xi, tiles, v_xi,
                         tiles, false);
    }
  }
}

/// dL/dU = the `blocks` image blocks' partials (positions matrices of `pairs` each, `stride`
/// apart, from `partials` on) added in block order into the first, then dL/dg = G^T (dL/dU) G for
/// every kernel, accumulated into dw: each part of the kernels on a thread (the same bits for
/// any split), 4 kernels a vector (they are consecutive in dL/dU), then the rest one by one.
template <typename Tile>
void add_weight_grads(float* dw, float* partials, int blocks, int64_t pairs, int64_t stride) {
  constexpr int kPositions = Tile::kPositions;
  float* du = partials;
  for_each_kernel_range(pairs, [&](int64_t first, int64_t last) {
    for (int b = 1; b < blocks; ++b) {
      const float* other = partials + b * kPositions * stride;
      for (int xi = 0; xi < kPositions; ++xi)
        for (int64_t p = first; p < last; ++p) du[xi * stride + p] += other[xi * stride + p];
    }
    int64_t p = first;
    for (; p + 4 <= last; p += 4) {
      v4 x[kPositions], k[9];
      for (int xi = 0; xi < kPositions; ++xi) x[xi] = load4(du + xi * stride + p);
      Tile::gradient(x, k);
      for (int lane = 0; lane < 4; ++lane)
        for (int t = 0; t < 9; ++t) dw[(p + lane) * 9 + t] += k[t][lane];
    }
    for (; p < last; ++p) {
      float x[kPositions], k[9];
      for (int xi = 0; xi < kPositions; ++xi) x[xi] = du[xi * stride + p];
      Tile::gradient(x, k);
      for (int t = 0; t < 9; ++t) dw[p * 9 + t] += k[t];
    }
  });
}

/// The backward of tile_vectors_conv3x3.
void tile_vectors_backward3x3(float* dx, float* dw, const float* x, const float* weights,
                              const float* dy, int64_t batch, int64_t in_channels, int64_t height,
                              int64_t width, int64_t out_channels, int64_t pad_h, int64_t pad_w) {
  const Geometry g = make_geometry(in_channels, height, width, out_channels, pad_h, pad_w);
  const int64_t pairs = out_channels * in_channels;
  const int64_t per_image = g.tiles_h * g.tiles_w;
  const int64_t chunk = images_per_chunk(g, batch);
  const int64_t in_size = in_channels * height * width;
  const int64_t out_size = out_channels * g.out_h * g.out_w;
  const int blocks = gradient_blocks(batch, ops::threads());
  // dL/dV_xi = U_xi^T Z_xi: each U_xi^T (in_channels x out_channels) packed once.
  thread_local std::vector<float> packed_ut[16];
  // This thread's buffers, named by pointer: in a lambda run on another thread, `packed_ut`
  // would be that thread's own.
  std::vector<float>* const packs = packed_ut;
  const int64_t u_stride = kernel_position_stride(pairs);
  if (dx) transform_into_packed<TileF2>(packs, weights, out_channels, in_channels, true);
  // dL/dU (16, out_channels, in_channels) per block of images, added in block order
  // afterwards.
  std::vector<float>& partials = shared_scratch<float>(1, blocks * 16 * u_stride);
  for_each_part_on(blocks, ops::threads(), [&](int part) {
    const auto [first, last] = images_of_part(batch, part, blocks);
    float* du = partials.data() + part * 16 * u_stride;  // assigned by the first chunk
    // The input plane (with 8 floats of slack for transform_input_grads), then dy's plane.
    const int64_t plane = g.staged_h * g.staged_w + 8;
    const int64_t grad_staged_w = 2 * g.tiles_w + 8;
    float* staged = scratch<float>(4, plane + 2 * g.tiles_h * grad_staged_w);
    float* grad_staged = staged + plane;
    std::fill(grad_staged, grad_staged + 2 * g.tiles_h * grad_staged_w, 0.0f);
    float* v = scratch<float>(5, 16 * winograd_position_stride(in_channels, chunk * per_image));
    float* z = scratch<float>(6, 16 * winograd_position_stride(out_channels, chunk * per_image));
    for (int64_t start = first; start < last; start += chunk) {
      const int64_t count = std::min(chunk, last - start);
      const int64_t tiles = count * per_image;
      // The one place the chunk's layout is decided: the transforms and the GEMMs take it.
      const int64_t v_stride = winograd_position_stride(in_channels, tiles);
      const int64_t z_stride = winograd_position_stride(out_channels, tiles);
      std::fill(staged, staged + g.staged_h * g.staged_w, 0.0f);
      for (int64_t i = 0; i < count; ++i)
        transform_inputs(v, v_stride, tiles, i * per_image, x + (start + i) * in_size, staged, g);
      transform_output_grads(z, z_stride, tiles, dy + start * out_size, count, grad_staged,
                             grad_staged_w, g);
      backward_products(16, out_channels, in_channels, tiles, v, v_stride, z, z_stride, du,
                        u_stride, start != first, dx ? packs : nullptr);
      if (dx) transform_input_grads(dx + start * in_size, v, v_stride, tiles, count, staged, g);
    }
  });
  add_weight_grads<TileF2>(dw, partials.data(), blocks, pairs, u_stride);
}

}  // namespace

}  // namespace cnn::detail

// Winograd F(4x4, 3x3): each 6x6 input tile's 36 products per channel pair give a 4x4 block of
// outputs (F(2x2)'s four tiles take 64); a 4x4 plane with padding 1 is one tile, a 7x7 output
// four, cut at the edges. Lavin and Gray's matrices (interpolation points 0, +-1, +-2):
//   B^T = [4 0 -5 0 1 0; 0 -4 -4 1 1 0; 0 4 -4 -1 1 0; 0 -2 -1 2 1 0; 0 2 -1 -2 1 0; 0 4 0 -5 0 1],
//   G = [1/4 0 0; -1/6 -1/6 -1/6; -1/6 1/6 -1/6; 1/24 1/12 1/6; 1/24 -1/12 1/6; 0 0 1],
//   A^T = [1 1 1 1 1 0; 0 1 -1 2 -2 0; 0 1 1 4 4 0; 0 1 -1 8 -8 1].
// Every transform is separable: the same one-axis step over the columns, then over the rows.
// The data transforms (winograd_lanes.hpp, one set per instruction set) work on a group of images
// across the vector lanes; the matrices are (36, channels, tiles), tiles numbered tile-major
// within a chunk.

namespace cnn::detail {

namespace {

/// The kernel side of F(4x4, 3x3): 36 tile positions (xi = row * 6 + column); U = G g G^T by
/// the lane kernels (kernel_tiles), dL/dg = G^T (dL/dU) G here.
struct TileF4 {
  static constexpr int kM = 4;
  static constexpr int kPositions = 36;
  static const WinogradLaneKernels::Tiles& lane_tiles(const WinogradLaneKernels& k) { return k.f4; }
  template <typename V>
  static void gradient(const V (&x)[kPositions], V (&k)[9]) {
    kernel_gradient_f4(x, k);
  }
};

/// Images per chunk of the lane backward (F(4x4), and F(2x2) from 32 images; the lane forward
/// goes a group at a time) for blocks of `per_part` images (gradient_blocks): whole groups of
/// the kernels' lanes (a group part empty costs a full group's transforms, and its GEMMs are
/// narrower), about 2 MiB of transformed tiles (V and Z) per thread but at least two groups,
/// a block's groups cut into chunks of equal size (28 + 4 images of resnet's 7x7 layer left
/// the second chunk's products too narrow). (Chunks of 9 images in groups of 16 lanes, convnet's 32
/// -> 64 layer on 14x14 planes run by F(4x4) in a harness, took 10.2-10.6 ms at batch 256; chunks
/// of 16, 6.9-7.8.) The chunks move resnet's rounding: with the 7x7 layer in chunks of one group
/// (16 images on AVX-512) instead of two, 3 training steps on 1 and on 2 threads differed
/// by 1.05e-5 of the largest parameter (1.2e-7 with two), one weight of the stride-2 layer before
/// it amplifying the weight gradients' other summation order; the chunks now follow the blocks, and
/// 1 and 2 threads give the same bits.
template <typename Tile>
int64_t lanes_images_per_chunk(const Geometry& g, int64_t per_part, int64_t lanes) {
  const int64_t per_image = g.tiles_h * g.tiles_w;
  const int64_t cap =
      (int64_t{1} << 19) / (Tile::kPositions * (g.in_channels + g.out_channels) * per_image);
  const int64_t groups = (per_part + lanes - 1) / lanes;
  const int64_t groups_cap = std::max<int64_t>(2, cap / lanes);
  const int64_t chunks = (groups + groups_cap - 1) / groups_cap;
  return std::min(per_part, (groups + chunks - 1) / chunks * lanes);
}

/// V (36, in_channels, tiles) of a chunk's `count` images (from image `x` on): each channel
/// plane of each group of lanes staged zero-padded in `staged` (whose padding is zero), then
/// transformed tile by tile.
template <typename Tile>
void lanes_transform_inputs(const WinogradLaneKernels& k, float* v, int64_t stride, const float* x,
                            int64_t count, float* staged, const Geometry& g) {
  const int64_t tiles = count * g.tiles_h * g.tiles_w;
  const int64_t plane = g.height * g.width;
  for (int64_t c = 0; c < g.in_channels; ++c)
    for (int64_t n0 = 0; n0 < count; n0 += k.lanes) {
      const int64_t valid = std::min(k.lanes, count - n0);
      k.stage(staged, g.staged_w, x + (n0 * g.in_channels + c) * plane, g.in_channels * plane,
              valid, g.height, g.width, g.pad_h, g.pad_w);
      Tile::lane_tiles(k).input_tiles(v + c * tiles + n0, stride, count, valid, staged, g.staged_w,
                                      g.tiles_h, g.tiles_w);
    }
}

// F(2x2, 3x3) runs its data transforms across the vector lanes (as F(4x4) always does) from
// this many images, on AVX2 and AVX-512 (8 and 16 lanes); below, and on the portable kernels,
// 4 tiles of one image a vector (tile_vectors_conv3x3). `cnn bench --model resnet`, Zen 5, 2
// threads, training images/s in interleaved pairs, tile vectors against lanes: batch 64
// 4,455-4,521 against 4,572-4,591 (inference at 256: 18,257-19,308 against 19,298-19,430);
// batch 32 3,631-3,708 against 3,807-3,917; batch 16 2,676-2,978 against 2,716-2,717 (a
// thread's 8 images half-fill a group of 16 lanes). AVX2 at 64: 3,136-3,184 against
// 3,228-3,267; the portable kernels (4 lanes) 722-743 against 695-704. The resnet 14x14 layer
// alone (32 -> 32, batch 64) was level either way (forward 0.561 / 0.535 ms, backward 0.683 /
// 0.680): the gain is in the model, where the layer runs beside others.
constexpr int64_t kWinogradLanesMinBatch = 32;

/// Whether F(2x2, 3x3) takes a batch of `batch` images across the vector lanes.
bool winograd_tiles_across_images(int64_t batch) {
  return batch >= kWinogradLanesMinBatch && winograd_lane_kernels().lanes >= 8;
}

/// The tile rows of a forward block: a group of images (the lanes) and this many rows of its
/// tiles make about 512 KiB of V and M (the L2 of a Zen 5 core is 1 MiB), at least one row.
/// Going a group at a time gained resnet's inference at batch 256 5-8% (Kernels in
/// docs/design-notes.md); the bands' size mattered less: 128 KiB to 4 MiB (whole planes)
/// measured alike on the 14x14 layer alone, and 512 KiB against whole planes about 2% on the
/// model.
template <typename Tile>
int64_t forward_band_rows(const Geometry& g, int64_t lanes) {
  const int64_t row_bytes = Tile::kPositions * (g.in_channels + g.out_channels) * g.tiles_w *
                            lanes * int64_t{sizeof(float)};
  return std::clamp<int64_t>((int64_t{512} << 10) / row_bytes, 1, g.tiles_h);
}

/// Zeroes what `stage` leaves as it was in the g.in_channels staged input planes of geometry g
/// (g.staged_h x g.staged_w x lanes floats each, one after another): every position outside
/// the interior rows [pad_h, pad_h + height) and columns [pad_w, pad_w + width), all lanes.
void zero_staged_borders(float* staged, const Geometry& g, int64_t lanes) {
  const int64_t row_size = g.staged_w * lanes;
  for (int64_t r = 0; r < g.in_channels * g.staged_h; ++r) {
    float* row = staged + r * row_size;
    const int64_t plane_row = r % g.staged_h;
    if (plane_row < g.pad_h || plane_row >= g.pad_h + g.height) {
      std::fill(row, row + row_size, 0.0f);
    } else {
      std::fill(row, row + g.pad_w * lanes, 0.0f);
      std::fill(row + (g.pad_w + g.width) * lanes, row + row_size, 0.0f);
    }
  }
}

/// One lane group's forward from its staged input planes (g.in_channels planes of
/// g.staged_h x g.staged_w x lanes floats, padding zero), band by band of tile rows
/// (forward_band_rows): the input transform, the products with the packed U_xi, and the output
/// transform of each output channel o into out_staged (kM band rows of kM g.tiles_w columns,
/// lanes interleaved), which emit(o, out_staged, i0, out_rows) then takes: the block's output
/// rows kM i0 .. kM i0 + out_rows. v and m hold a band's V and M (lanes_forward_scratch).
template <typename Tile, typename Emit>
void lanes_forward_group(const Geometry& g, const WinogradLaneKernels::Tiles& tiles_k,
                         const std::vector<float>* packs, const float* bias, int64_t lanes,
                         int64_t valid, int64_t band, const float* staged, float* out_staged,
                         float* v, float* m, const Emit& emit) {
  constexpr int kM = Tile::kM, kPositions = Tile::kPositions;
  const int64_t plane_size = g.staged_h * g.staged_w * lanes;
  for (int64_t i0 = 0; i0 < g.tiles_h; i0 += band) {
    const int64_t rows = std::min(band, g.tiles_h - i0);
    const int64_t tiles = rows * g.tiles_w * lanes;
    const int64_t v_stride = winograd_position_stride(g.in_channels, tiles);
    const int64_t m_stride = winograd_position_stride(g.out_channels, tiles);
    for (int64_t c = 0; c < g.in_channels; ++c)
      tiles_k.input_tiles(v + c * tiles, v_stride, lanes, valid,
                          staged + c * plane_size + kM * i0 * g.staged_w * lanes, g.staged_w, rows,
                          g.tiles_w);
    for (int xi = 0; xi < kPositions; ++xi) {
      sgemm_nn_prepacked(g.out_channels, tiles, g.in_channels, packs[xi].data(), v + xi * v_stride,
                         tiles, m + xi * m_stride, tiles, false);
    }
    const int64_t out_rows = std::min(kM * rows, g.out_h - kM * i0);
    for (int64_t o = 0; o < g.out_channels; ++o) {
      tiles_k.output_tiles(out_staged, m + o * tiles, m_stride, lanes, bias ? bias + o : nullptr,
                           rows, g.tiles_w);
      emit(o, static_cast<const float*>(out_staged), i0, out_rows);
    }
  }
}

/// Output channel o's rows kM i0 .. kM i0 + rows of a lane group's `valid` images (from image
/// `start`; geometry g) from a block that lanes_forward_group emits into y (N, C, H, W).
template <int kM>
void unstage_rows(const WinogradLaneKernels& k, float* y, const Geometry& g, int64_t start,
                  int64_t valid, int64_t o, const float* block, int64_t i0, int64_t rows) {
  const int64_t out_plane = g.out_h * g.out_w;
  k.unstage(y + (start * g.out_channels + o) * out_plane + kM * i0 * g.out_w,
            g.out_channels * out_plane, valid, block, kM * g.tiles_w, 0, 0, rows, g.out_w);
}

/// lanes_forward_group of the lane group of `valid` images from image `start`, its output
/// unstaged into y (N, C, H, W) (unstage_rows), then the epilogue applied to those images: a
/// convolution's last step for each group.
template <typename Tile>
void lanes_forward_group_into(float* y, int64_t start, int64_t valid, ConvEpilogue epilogue,
                              const Geometry& g, const WinogradLaneKernels& k,
                              const std::vector<float>* packs, const float* bias, int64_t band,
                              const float* staged, float* out_staged, float* v, float* m) {
  lanes_forward_group<Tile>(g, Tile::lane_tiles(k), packs, bias, k.lanes, valid, band, staged,
                            out_staged, v, m,
                            [&](int64_t o, const float* block, int64_t i0, int64_t rows) {
                              unstage_rows<Tile::kM>(k, y, g, start, valid, o, block, i0, rows);
                            });
  const int64_t at = start * g.out_channels * g.out_h * g.out_w;
  epilogue.apply(y + at, at, valid * g.out_channels * g.out_h * g.out_w);
}

/// The floats of V and of M that lanes_forward_group needs for a band of geometry g.
template <typename Tile>
std::pair<int64_t, int64_t> lanes_forward_scratch(const Geometry& g, int64_t lanes) {
  const int64_t max_tiles = forward_band_rows<Tile>(g, lanes) * g.tiles_w * lanes;
  return {Tile::kPositions * winograd_position_stride(g.in_channels, max_tiles),
          Tile::kPositions * winograd_position_stride(g.out_channels, max_tiles)};
}

/// F(m x m, 3x3) (Tile: TileF2 or TileF4) with the data transforms across the vector lanes
/// (winograd_lanes.hpp): arguments as winograd_conv3x3. The threads take lane groups of images
/// (lanes images from 0) one at a time as they come free: every input plane of the group
/// staged, then band by band of tile rows (forward_band_rows) the input transform, the
/// products and the output transform.
template <typename Tile>
void lanes_conv3x3(float* y, const float* x, const float* weights, const float* weight_scale,
                   const float* bias, int64_t batch, int64_t in_channels, int64_t height,
                   int64_t width, int64_t out_channels, int64_t pad_h, int64_t pad_w,
                   ConvEpilogue epilogue) {
  constexpr int kM = Tile::kM;
  const Geometry g = make_geometry(in_channels, height, width, out_channels, pad_h, pad_w, kM);
  const WinogradLaneKernels& k = winograd_lane_kernels();
  const std::vector<float>* packs =
      packed_weights<Tile>(weights, weight_scale, in_channels, out_channels);
  const int64_t lanes = k.lanes;
  const int64_t band = forward_band_rows<Tile>(g, lanes);
  const int64_t in_size = in_channels * height * width;
  const int64_t plane_size = g.staged_h * g.staged_w * lanes;
  // Each thread takes its own run of groups (lanes images each, from image 0): at batches of
  // 2 x lanes x k (64, 128, 256 on AVX-512) the blocks of images (images_of_part) of the passes
  // before and after it (BatchNorm, ReLU, pooling), so that a thread reads the images it wrote.
  // Groups handed out as threads came free (a shared counter) had been 1-3% faster on this machine
  // when its two vCPUs shared a cache, and much slower when they did not (about 350 ns apart
  // instead of 60-80: every image the other thread had written then came from the other core). An
  // image's result does not depend on its group or lane (the transforms work lane by lane; a GEMM
  // column's sum does not depend on its place), so the bits do not depend on the split.
  const int64_t groups = (batch + lanes - 1) / lanes;
  const int team = static_cast<int>(std::min<int64_t>(ops::threads(), groups));
  for_each_range(team, groups, [&](int64_t first_group, int64_t last_group) {
    float* staged =
        scratch<float>(4, in_channels * plane_size + kM * kM * band * g.tiles_w * lanes);
    float* out_staged = staged + in_channels * plane_size;
    zero_staged_borders(staged, g, lanes);
    const auto [v_size, m_size] = lanes_forward_scratch<Tile>(g, lanes);
    float* v = scratch<float>(5, v_size);
    float* m = scratch<float>(6, m_size);
    for (int64_t group = first_group; group < last_group; ++group) {
      const int64_t start = group * lanes, valid = std::min(lanes, batch - start);
      for (int64_t c = 0; c < in_channels; ++c)
        k.stage(staged + c * plane_size, g.staged_w, x + start * in_size + c * height * width,
                in_size, valid, height, width, g.pad_h, g.pad_w);
      lanes_forward_group_into<Tile>(y, start, valid, epilogue, g, k, packs, bias, band, staged,
                                     out_staged, v, m);
    }
  });
}

/// Two stride-1 3x3 convolutions in a row, the first's output (with a ReLU) the second's input:
/// y = second(relu(first(x))), then the epilogue. Each image's outputs are the bits of
/// lanes_conv3x3 of `first` with a ReLU epilogue, then of `second` with `epilogue`: a lane
/// group's first output goes from its output transform into the second's staged planes (the
/// ReLU applied there, by the same kernel) instead of being written out, read back and staged
/// again. Threads as lanes_conv3x3.
template <typename Tile>
void lanes_conv3x3_pair(float* y, const float* x, const LaneConv& first, const LaneConv& second,
                        int64_t batch, int64_t height, int64_t width, ConvEpilogue epilogue) {
  constexpr int kM = Tile::kM;
  const Geometry ga = make_geometry(first.in_channels, height, width, first.out_channels,
                                    first.pad_h, first.pad_w, kM);
  const Geometry gb = make_geometry(first.out_channels, ga.out_h, ga.out_w, second.out_channels,
                                    second.pad_h, second.pad_w, kM);
  const WinogradLaneKernels& k = winograd_lane_kernels();
  const WinogradLaneKernels::Tiles& tiles_k = Tile::lane_tiles(k);
  const ConvEpilogue first_relu{.relu = true};  // what lanes_conv3x3 would apply to its output
  // The first's packs, the second's, then the first's again: entries never move (the cache
  // reserves all 8), and if the second's call took over the first's entry, the first's second
  // call takes the next one, not the second's.
  packed_weights<Tile>(first.weights, first.weight_scale, ga.in_channels, ga.out_channels);
  const std::vector<float>* packs_b =
      packed_weights<Tile>(second.weights, second.weight_scale, gb.in_channels, gb.out_channels);
  const std::vector<float>* packs_a =
      packed_weights<Tile>(first.weights, first.weight_scale, ga.in_channels, ga.out_channels);
  const int64_t lanes = k.lanes;
  const int64_t band_a = forward_band_rows<Tile>(ga, lanes),
                band_b = forward_band_rows<Tile>(gb, lanes);
  const int64_t in_size = ga.in_channels * height * width;
  const int64_t plane_a = ga.staged_h * ga.staged_w * lanes;
  const int64_t plane_b = gb.staged_h * gb.staged_w * lanes;
  const int64_t groups = (batch + lanes - 1) / lanes;
  const int team = static_cast<int>(std::min<int64_t>(ops::threads(), groups));
  for_each_range(team, groups, [&](int64_t first_group, int64_t last_group) {
    const int64_t block_size = kM * kM * std::max(band_a * ga.tiles_w, band_b * gb.tiles_w) * lanes;
    float* staged_a = scratch<float>(4, ga.in_channels * plane_a + block_size);
    float* out_staged = staged_a + ga.in_channels * plane_a;
    float* staged_b = scratch<float>(7, gb.in_channels * plane_b);
    zero_staged_borders(staged_a, ga, lanes);
    zero_staged_borders(staged_b, gb, lanes);
    const auto [va, ma] = lanes_forward_scratch<Tile>(ga, lanes);
    const auto [vb, mb] = lanes_forward_scratch<Tile>(gb, lanes);
    float* v = scratch<float>(5, std::max(va, vb));
    float* m = scratch<float>(6, std::max(ma, mb));
    for (int64_t group = first_group; group < last_group; ++group) {
      const int64_t start = group * lanes, valid = std::min(lanes, batch - start);
      for (int64_t c = 0; c < ga.in_channels; ++c)
        k.stage(staged_a + c * plane_a, ga.staged_w, x + start * in_size + c * height * width,
                in_size, valid, height, width, ga.pad_h, ga.pad_w);
      // The first's output rows, all lanes, into the second's staged planes, then their ReLU.
      lanes_forward_group<Tile>(
          ga, tiles_k, packs_a, first.bias, lanes, valid, band_a, staged_a, out_staged, v, m,
          [&](int64_t o, const float* block, int64_t i0, int64_t out_rows) {
            for (int64_t r = 0; r < out_rows; ++r) {
              float* to = staged_b + o * plane_b +
                          ((gb.pad_h + kM * i0 + r) * gb.staged_w + gb.pad_w) * lanes;
              std::copy_n(block + r * kM * ga.tiles_w * lanes, ga.out_w * lanes, to);
              first_relu.apply(to, 0, ga.out_w * lanes);
            }
          });
      lanes_forward_group_into<Tile>(y, start, valid, epilogue, gb, k, packs_b, second.bias, band_b,
                                     staged_b, out_staged, v, m);
    }
  });
}

/// implicit_winograd4x4_pair with Tile's transforms (the pair's first convolution's output is
/// staged as lanes_conv3x3 stages its input). Threads as lanes_conv3x3: each takes a run of
/// whole lane groups (implicit_forward_groups with lane_group = lanes). With `shortcut`, the
/// epilogue's addend is its output, group by group (implicit_forward_groups' `also`).
template <typename Tile>
void implicit_lanes_pair(float* y, const float* x, const ImplicitConv& first,
                         const LaneConv& second, ConvEpilogue epilogue,
                         const ImplicitConv* shortcut) {
  constexpr int kM = Tile::kM;
  const ops::ConvShape& s = first.shape;
  const Geometry g = make_geometry(s.out_channels, s.out_h, s.out_w, second.out_channels,
                                   second.pad_h, second.pad_w, kM);
  const WinogradLaneKernels& k = winograd_lane_kernels();
  const DirectConvKernels& direct = direct_conv_kernels();
  const std::vector<float>* packs =
      packed_weights<Tile>(second.weights, second.weight_scale, g.in_channels, g.out_channels);
  const int64_t lanes = k.lanes;
  const int64_t band = forward_band_rows<Tile>(g, lanes);
  const int64_t positions = s.out_h * s.out_w;
  const int64_t plane_size = g.staged_h * g.staged_w * lanes;
  // Named values, not a structured binding: clang 14 (the fuzz build) cannot capture those.
  const std::pair<int64_t, int64_t> v_and_m = lanes_forward_scratch<Tile>(g, lanes);
  const int64_t v_size = v_and_m.first, m_size = v_and_m.second;
  const int64_t out_size = g.out_channels * g.out_h * g.out_w;
  implicit_forward_groups(
      x, first.weights, first.weight_scale, s, lanes,
      [&](int64_t start, int64_t valid, const float* c, int64_t ldc, bool first_group,
          const float* shortcut_y) {
        float* staged =
            scratch<float>(4, g.in_channels * plane_size + kM * kM * band * g.tiles_w * lanes);
        float* out_staged = staged + g.in_channels * plane_size;
        if (first_group) zero_staged_borders(staged, g, lanes);
        float* v = scratch<float>(5, v_size);
        float* m = scratch<float>(6, m_size);
        // Pixel p of the group's images, every channel: the GEMM's rows p of the images (one
        // a lane), transposed to a lane vector a channel, plus the bias, then the ReLU: the
        // values implicit_conv_forward writes, where k.stage would put them. Lanes past
        // `valid` are left as they were, as k.stage leaves them.
        for (int64_t p = 0; p < positions; ++p) {
          const int64_t oh = p / s.out_w, ow = p % s.out_w;
          direct.transpose_out(staged + ((g.pad_h + oh) * g.staged_w + g.pad_w + ow) * lanes,
                               plane_size, c + p * ldc, positions * ldc, valid, s.out_channels,
                               first.bias, nullptr, true);
        }
        ConvEpilogue group_epilogue = epilogue;
        if (shortcut_y) {  // the shortcut's output of these images alone
          group_epilogue.addend = shortcut_y;
          group_epilogue.addend_offset = start * out_size;
        }
        lanes_forward_group_into<Tile>(y, start, valid, group_epilogue, g, k, packs, second.bias,
                                       band, staged, out_staged, v, m);
      },
      shortcut);
}

/// The backward of lanes_conv3x3: arguments and threads as winograd_backward3x3.
template <typename Tile>
void lanes_backward3x3(float* dx, float* dw, const float* x, const float* weights, const float* dy,
                       int64_t batch, int64_t in_channels, int64_t height, int64_t width,
                       int64_t out_channels, int64_t pad_h, int64_t pad_w) {
  constexpr int kM = Tile::kM, kPositions = Tile::kPositions;
  const Geometry g = make_geometry(in_channels, height, width, out_channels, pad_h, pad_w, kM);
  const WinogradLaneKernels& k = winograd_lane_kernels();
  const WinogradLaneKernels::Tiles& tiles_k = Tile::lane_tiles(k);
  const int64_t pairs = out_channels * in_channels;
  const int64_t per_image = g.tiles_h * g.tiles_w;
  const int blocks = gradient_blocks(batch, ops::threads());
  const int64_t chunk = lanes_images_per_chunk<Tile>(g, (batch + blocks - 1) / blocks, k.lanes);
  const int64_t in_size = in_channels * height * width, in_plane = height * width;
  const int64_t out_plane = g.out_h * g.out_w;
  // dL/dV_xi = U_xi^T Z_xi: each U_xi^T (in_channels x out_channels) packed once.
  thread_local std::vector<float> packed_ut[kPositions];
  std::vector<float>* const packs = packed_ut;  // this thread's, named by pointer
  const int64_t u_stride = kernel_position_stride(pairs);
  if (dx) transform_into_packed<Tile>(packs, weights, out_channels, in_channels, true);
  // dL/dU (positions, out_channels, in_channels) per block of images, added in block order
  // afterwards.
  std::vector<float>& partials = shared_scratch<float>(1, blocks * kPositions * u_stride);
  for_each_part_on(blocks, ops::threads(), [&](int part) {
    const auto [first, last] = images_of_part(batch, part, blocks);
    float* du = partials.data() + part * kPositions * u_stride;  // assigned by the first chunk
    // The staged input (zero padding), input gradient and output gradient (zero past the
    // output) groups.
    const int64_t staged_size = g.staged_h * g.staged_w * k.lanes;
    const int64_t grad_size = kM * kM * per_image * k.lanes;
    float* staged = scratch<float>(4, 2 * staged_size + grad_size);
    float* dx_staged = staged + staged_size;
    float* dy_staged = dx_staged + staged_size;
    std::fill(staged, staged + staged_size, 0.0f);
    std::fill(dy_staged, dy_staged + grad_size, 0.0f);
    float* v =
        scratch<float>(5, kPositions * winograd_position_stride(in_channels, chunk * per_image));
    float* z =
        scratch<float>(6, kPositions * winograd_position_stride(out_channels, chunk * per_image));
    for (int64_t start = first; start < last; start += chunk) {
      const int64_t count = std::min(chunk, last - start);
      const int64_t tiles = count * per_image;
      const int64_t v_stride = winograd_position_stride(in_channels, tiles);
      const int64_t z_stride = winograd_position_stride(out_channels, tiles);
      lanes_transform_inputs<Tile>(k, v, v_stride, x + start * in_size, count, staged, g);
      for (int64_t o = 0; o < out_channels; ++o)
        for (int64_t n0 = 0; n0 < count; n0 += k.lanes) {
          const int64_t valid = std::min(k.lanes, count - n0);
          k.stage(dy_staged, kM * g.tiles_w, dy + ((start + n0) * out_channels + o) * out_plane,
                  out_channels * out_plane, valid, g.out_h, g.out_w, 0, 0);
          tiles_k.output_grad_tiles(z + o * tiles + n0, z_stride, count, valid, dy_staged,
                                    kM * g.tiles_w, g.tiles_h, g.tiles_w);
        }
      backward_products(kPositions, out_channels, in_channels, tiles, v, v_stride, z, z_stride, du,
                        u_stride, start != first, dx ? packs : nullptr);
      if (!dx) continue;
      for (int64_t c = 0; c < in_channels; ++c)
        for (int64_t n0 = 0; n0 < count; n0 += k.lanes) {
          tiles_k.input_grad_tiles(dx_staged, g.staged_w, v + c * tiles + n0, v_stride, count,
                                   g.tiles_h, g.tiles_w);
          k.unstage(dx + ((start + n0) * in_channels + c) * in_plane, in_channels * in_plane,
                    std::min(k.lanes, count - n0), dx_staged, g.staged_w, g.pad_h, g.pad_w, height,
                    width);
        }
    }
  });
  add_weight_grads<Tile>(dw, partials.data(), blocks, pairs, u_stride);
}

}  // namespace

void winograd4x4_conv3x3(float* y, const float* x, const float* weights, const float* weight_scale,
                         const float* bias, int64_t batch, int64_t in_channels, int64_t height,
                         int64_t width, int64_t out_channels, int64_t pad_h, int64_t pad_w,
                         ConvEpilogue epilogue) {
  lanes_conv3x3<TileF4>(y, x, weights, weight_scale, bias, batch, in_channels, height, width,
                        out_channels, pad_h, pad_w, epilogue);
}

void winograd4x4_backward3x3(float* dx, float* dw, const float* x, const float* weights,
                             const float* dy, int64_t batch, int64_t in_channels, int64_t height,
                             int64_t width, int64_t out_channels, int64_t pad_h, int64_t pad_w) {
  lanes_backward3x3<TileF4>(dx, dw, x, weights, dy, batch, in_channels, height, width, out_channels,
                            pad_h, pad_w);
}

void winograd4x4_conv3x3_pair(float* y, const float* x, const LaneConv& first,
                              const LaneConv& second, int64_t batch, int64_t height, int64_t width,
                              ConvEpilogue epilogue) {
  lanes_conv3x3_pair<TileF4>(y, x, first, second, batch, height, width, epilogue);
}

void implicit_winograd4x4_pair(float* y, const float* x, const ImplicitConv& first,
                               const LaneConv& second, ConvEpilogue epilogue,
                               const ImplicitConv* shortcut) {
  implicit_lanes_pair<TileF4>(y, x, first, second, epilogue, shortcut);
}

void winograd_conv3x3(float* y, const float* x, const float* weights, const float* weight_scale,
                      const float* bias, int64_t batch, int64_t in_channels, int64_t height,
                      int64_t width, int64_t out_channels, int64_t pad_h, int64_t pad_w,
                      ConvEpilogue epilogue) {
  if (winograd_tiles_across_images(batch)) {
    return lanes_conv3x3<TileF2>(y, x, weights, weight_scale, bias, batch, in_channels, height,
                                 width, out_channels, pad_h, pad_w, epilogue);
  }
  tile_vectors_conv3x3(y, x, weights, weight_scale, bias, batch, in_channels, height, width,
                       out_channels, pad_h, pad_w, epilogue);
}

void winograd_backward3x3(float* dx, float* dw, const float* x, const float* weights,
                          const float* dy, int64_t batch, int64_t in_channels, int64_t height,
                          int64_t width, int64_t out_channels, int64_t pad_h, int64_t pad_w) {
  if (winograd_tiles_across_images(batch)) {
    return lanes_backward3x3<TileF2>(dx, dw, x, weights, dy, batch, in_channels, height, width,
                                     out_channels, pad_h, pad_w);
  }
  tile_vectors_backward3x3(dx, dw, x, weights, dy, batch, in_channels, height, width, out_channels,
                           pad_h, pad_w);
}

}  // namespace cnn::detail

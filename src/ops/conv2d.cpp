// The float convolution's methods, chosen per layer shape in one place (conv_uses_winograd and
// the functions after it; kAuto's rule is measured in docs/design-notes.md): Winograd F(2x2,
// 3x3) and F(4x4, 3x3) (winograd.cpp) for 3x3 stride-1 layers with 16+ channels in and out, the
// implicit GEMM (conv_implicit.cpp) for stride-2 and some odd-sized layers, the direct kernels
// (dconv_*.cpp) for the other stride-1 layers, and im2col + GEMM, the three products of
// darknet's convolutional_layer.c, for the rest and for double. Per image (or per group of
// images side by side, where the output planes are small): col = im2col(x);
// y = W col + b; dW += dy col^T; dcol = W^T dy; dx = col2im(dcol). A 1x1, stride-1, unpadded
// convolution skips im2col, since the image already is its column matrix.

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <type_traits>
#include <vector>

#include "cnn/ops.hpp"
#include "cnn/ops_ref.hpp"
#include "conv_common.hpp"
#include "conv_implicit.hpp"
#include "dconv.hpp"
#include "gemm.hpp"
#include "isa_tables.hpp"
#include "parallel.hpp"
#include "pool_plane.hpp"
#include "scratch.hpp"
#include "winograd.hpp"
#include "winograd_lanes.hpp"

namespace cnn::ops {

namespace {

bool is_pointwise(const ConvShape& s) {
  return s.kernel_h == 1 && s.kernel_w == 1 && s.stride_h == 1 && s.stride_w == 1 && s.pad_h == 0 &&
         s.pad_w == 0;
}

/// One channel's zero-padded plane, in which every kernel tap of every output position lies:
/// im2col and col2im read and add there without testing each position against the borders
/// (their rows are short, 4 to 28 values, so per-row bounds work cost as much as the copying).
/// Without padding it is the channel's own plane (every tap already lies inside it).
struct PaddedPlane {
  int64_t h, w;
  explicit PaddedPlane(const ConvShape& s)
      : h(std::max(s.in_h + 2 * s.pad_h, (s.out_h - 1) * s.stride_h + s.kernel_h)),
        w(std::max(s.in_w + 2 * s.pad_w, (s.out_w - 1) * s.stride_w + s.kernel_w)) {}
};

/// out[k] = in[2 k] for k < n, n >= 4. Floats 4 at a time, the even lanes of 8 loaded ones, the
/// last group overlapping the one before; this reads in[0 .. 2 n - 1], one past the last one
/// copied. (It replaced a scalar loop over resnet's stride-2 rows of 7 and 4 outputs, in an
/// im2col that was 4% of resnet's training profile and 8% of its inference.) Doubles one by one.
template <typename T>
inline void gather_even(T* out, const T* in, int64_t n) {
  if constexpr (std::is_same_v<T, float>) {
    typedef float v4 __attribute__((vector_size(16)));
    for (int64_t k = 0;; k += 4) {
      k = std::min(k, n - 4);
      v4 low, high;
      __builtin_memcpy(&low, in + 2 * k, sizeof low);
      __builtin_memcpy(&high, in + 2 * k + 4, sizeof high);
      const v4 even = __builtin_shufflevector(low, high, 0, 2, 4, 6);
      __builtin_memcpy(out + k, &even, sizeof even);
      if (k + 4 >= n) return;
    }
  } else {
    for (int64_t k = 0; k < n; ++k) out[k] = in[2 * k];
  }
}

/// col (C*KH*KW, OH*OW), rows `ld` apart: row (c, kh, kw) holds the padded input that kernel
/// tap (kh, kw) of channel c sees at every output position. x is one image (C, H, W).
template <typename T>
void im2col(T* col, const T* x, const ConvShape& s, int64_t ld) {
  const bool padded = s.pad_h > 0 || s.pad_w > 0;  // else each channel is read in place
  const PaddedPlane p(s);
  const bool gather_fits = s.stride_w == 2 && s.out_w >= 4;
  T* staged = padded ? detail::scratch<T>(7, p.h * p.w) : nullptr;
  if (padded) std::fill(staged, staged + p.h * p.w, T(0));  // the border stays zero
  for (int64_t c = 0; c < s.in_channels; ++c) {
    const T* channel = x + c * s.in_h * s.in_w;
    if (padded) {
      for (int64_t h = 0; h < s.in_h; ++h)
        std::copy_n(channel + h * s.in_w, s.in_w, staged + (h + s.pad_h) * p.w + s.pad_w);
    }
    const T* plane = padded ? staged : channel;
    for (int64_t kh = 0; kh < s.kernel_h; ++kh)
      for (int64_t kw = 0; kw < s.kernel_w; ++kw) {
        T* row = col + ((c * s.kernel_h + kh) * s.kernel_w + kw) * ld;
        for (int64_t oh = 0; oh < s.out_h; ++oh) {
          const T* in = plane + (oh * s.stride_h + kh) * p.w + kw;
          T* out = row + oh * s.out_w;
          if (s.stride_w == 1) {
            std::copy_n(in, s.out_w, out);
          } else if (gather_fits && kw + 2 * s.out_w <= p.w) {  // its over-read within the row
            gather_even(out, in, s.out_w);
          } else {
            for (int64_t ow = 0; ow < s.out_w; ++ow) out[ow] = in[ow * s.stride_w];
          }
        }
      }
  }
}

/// The adjoint of im2col: dx (C, H, W) = sum of every column entry at the input position it
/// was copied from (rows `ld` apart). Assigns dx.
template <typename T>
void col2im(T* dx, const T* col, const ConvShape& s, int64_t ld) {
  const bool padded = s.pad_h > 0 || s.pad_w > 0;  // else each channel is summed in place
  const PaddedPlane p(s);
  T* plane = padded ? detail::scratch<T>(7, p.h * p.w) : nullptr;
  for (int64_t c = 0; c < s.in_channels; ++c) {
    if (!padded) plane = dx + c * s.in_h * s.in_w;
    std::fill(plane, plane + p.h * p.w, T(0));
    for (int64_t kh = 0; kh < s.kernel_h; ++kh)
      for (int64_t kw = 0; kw < s.kernel_w; ++kw) {
        const T* row = col + ((c * s.kernel_h + kh) * s.kernel_w + kw) * ld;
        for (int64_t oh = 0; oh < s.out_h; ++oh) {
          T* out = plane + (oh * s.stride_h + kh) * p.w + kw;
          const T* in = row + oh * s.out_w;
          for (int64_t ow = 0; ow < s.out_w; ++ow) out[ow * s.stride_w] += in[ow];
        }
      }
    if (!padded) continue;
    for (int64_t h = 0; h < s.in_h; ++h)
      std::copy_n(plane + (h + s.pad_h) * p.w + s.pad_w, s.in_w, dx + (c * s.in_h + h) * s.in_w);
  }
}

/// Images whose columns one GEMM takes side by side (detail::images_per_group): about
/// kGroupColumns.
constexpr int64_t kGroupColumns = 256;
int64_t images_per_group(const ConvShape& s, int64_t images) {
  return detail::images_per_group(kGroupColumns, s.out_h * s.out_w, images);
}

}  // namespace

// ---- direct path (float, stride 1): see dconv.hpp for the flat-position layout -------------
}  // namespace cnn::ops

namespace cnn::detail {
const DirectConvKernels& direct_conv_kernels() {
  return table_for_isa(direct_conv_avx512, direct_conv_avx2, direct_conv_portable);
}
const WinogradLaneKernels& winograd_lane_kernels() {
  return table_for_isa(winograd_lanes_avx512, winograd_lanes_avx2, winograd_lanes_portable);
}
}  // namespace cnn::detail

namespace cnn::ops {

namespace {

using detail::round_up;

/// How `channels` planes of height x width are staged for a stride-1 correlation with a
/// kernel_h x kernel_w kernel and the given padding (top/bottom pad_h, left/right pad_w):
/// outputs at the flat positions q = oh * row + ow.
///
/// Rows are only width + pad_w long, not width + 2 pad_w: a row's right padding is the next
/// row's left padding. A read past the end of a row lands at most pad_w - 1 columns into the
/// next row, which is still padding (zero). Shorter rows mean fewer wasted positions: LeNet-5's
/// 6 -> 16 input gradient (dy padded by 4 on a 10 x 10 map) computes 14 x 14 outputs over rows
/// of 14 instead of 18.
struct Staging {
  int64_t channels, height, width, pad_h, pad_w;
  int64_t row, plane;  // row length and plane size
  int64_t out_h, out_w;
  int64_t positions;  // out_h * row, rounded up to whole vectors
  int64_t size;       // floats to stage: every tap's read of every position stays inside
};

Staging make_staging(int64_t channels, int64_t height, int64_t width, int64_t pad_h, int64_t pad_w,
                     int64_t kernel_h, int64_t kernel_w, int64_t lanes) {
  Staging g{};
  g.channels = channels;
  g.height = height;
  g.width = width;
  g.pad_h = pad_h;
  g.pad_w = pad_w;
  g.out_h = height + 2 * pad_h - kernel_h + 1;
  g.out_w = width + 2 * pad_w - kernel_w + 1;
  // At least out_w so that a row holds its outputs (padding wider than kernel - 1).
  g.row = std::max(width + pad_w, g.out_w);
  // pad_h rows above and below, and the last row's right padding.
  g.plane = (height + 2 * pad_h) * g.row + pad_w;
  g.positions = round_up(g.out_h * g.row, lanes);
  const int64_t last_read = (channels - 1) * g.plane + (kernel_h - 1) * g.row + kernel_w - 1;
  g.size = std::max(last_read + g.positions, channels * g.plane);
  return g;
}

/// offsets[t] for tap t = (c * kernel_h + kh) * kernel_w + kw: c * plane + kh * row + kw.
void tap_offsets(int64_t* offsets, const Staging& g, int64_t kernel_h, int64_t kernel_w) {
  for (int64_t c = 0; c < g.channels; ++c)
    for (int64_t kh = 0; kh < kernel_h; ++kh)
      for (int64_t kw = 0; kw < kernel_w; ++kw) *offsets++ = c * g.plane + kh * g.row + kw;
}

/// Copies one image (channels, height, width) into the interior of a staging buffer whose
/// padding is already zero.
void stage(float* staged, const float* image, const Staging& g) {
  const detail::DirectConvKernels& kernels = detail::direct_conv_kernels();
  for (int64_t c = 0; c < g.channels; ++c) {
    kernels.copy_rows(staged + c * g.plane + g.pad_h * g.row + g.pad_w, g.row,
                      image + c * g.height * g.width, g.width, g.height, g.width);
  }
}

/// Stride 2 as stride 1: each channel's zero-padded plane split into its 4 phases (even or odd
/// rows, even or odd columns), each a plane of rows `row` floats long, so that tap (kh, kw) of
/// output (oh, ow) reads phase (kh % 2, kw % 2) at (oh + kh / 2, ow + kw / 2): the flat-position
/// correlation of the stride-1 kernels, with taps at phase_tap_offsets. The staged floats are
/// the input's own (no im2col's kernel_h * kernel_w copies of each), and a valid output's taps
/// stay inside its row (phase columns ow + kw / 2 <= out_w - 1 + (kernel_w - 1) / 2 < row).
/// `plane` is one phase; the kernels' outputs past out_w in a row are never copied out.
Staging make_phase_staging(const ConvShape& s, int64_t lanes) {
  Staging g{};
  g.channels = s.in_channels;
  g.height = s.in_h;
  g.width = s.in_w;
  g.pad_h = s.pad_h;
  g.pad_w = s.pad_w;
  g.out_h = s.out_h;
  g.out_w = s.out_w;
  g.row = std::max((s.in_w + 2 * s.pad_w + 1) / 2, s.out_w + (s.kernel_w - 1) / 2);
  const int64_t rows = std::max((s.in_h + 2 * s.pad_h + 1) / 2, s.out_h + (s.kernel_h - 1) / 2);
  g.plane = rows * g.row;
  g.positions = round_up(g.out_h * g.row, lanes);
  const int64_t last_read =
      (4 * g.channels - 1) * g.plane + (s.kernel_h - 1) / 2 * g.row + (s.kernel_w - 1) / 2;
  g.size = std::max(last_read + g.positions, 4 * g.channels * g.plane);
  return g;
}

/// offsets[t] for tap t = (c * kernel_h + kh) * kernel_w + kw of a phase-staged input.
void phase_tap_offsets(int64_t* offsets, const Staging& g, int64_t kernel_h, int64_t kernel_w) {
  for (int64_t c = 0; c < g.channels; ++c)
    for (int64_t kh = 0; kh < kernel_h; ++kh)
      for (int64_t kw = 0; kw < kernel_w; ++kw) {
        *offsets++ = (4 * c + 2 * (kh % 2) + kw % 2) * g.plane + kh / 2 * g.row + kw / 2;
      }
}

/// Copies one image (channels, height, width) into the phases of a phase staging whose padding
/// is already zero: padded row hp = h + pad_h goes to row hp / 2 of the phases hp % 2, its even
/// and odd columns w (padded column w + pad_w) to the two phases of that row parity. (Element by
/// element, this copy took two thirds as long as the correlation after it.)
void stage_phases(float* staged, const float* image, const Staging& g) {
  const int64_t rows = g.channels * g.height;
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t hp = r % g.height + g.pad_h;
    float* phases = staged + (4 * (r / g.height) + 2 * (hp % 2)) * g.plane + hp / 2 * g.row;
    const float* in = image + r * g.width;
    for (int64_t parity = 0; parity < 2; ++parity) {  // the row's even, then odd columns
      const int64_t wp = parity + g.pad_w;            // the first one's padded column
      float* out = phases + wp % 2 * g.plane + wp / 2;
      const int64_t n = (g.width - parity + 1) / 2;
      // gather_even reads in[parity + 2 n - 1], past the row when its width is odd for the
      // even columns or even for the odd ones: the next row's first float, but not after the
      // image's last row.
      const bool over_reads = parity + 2 * n > g.width;
      if (n >= 4 && !(over_reads && r + 1 == rows)) {
        gather_even(out, in + parity, n);
      } else {
        for (int64_t k = 0; k < n; ++k) out[k] = in[parity + 2 * k];
      }
    }
  }
}

/// Copies the valid outputs (channels, out_h, out_w) out of flat positions.
void unstage(float* image, const float* flat, int64_t channels, const Staging& g) {
  const detail::DirectConvKernels& kernels = detail::direct_conv_kernels();
  for (int64_t c = 0; c < channels; ++c) {
    kernels.copy_rows(image + c * g.out_h * g.out_w, g.out_w, flat + c * g.positions, g.row,
                      g.out_h, g.out_w);
  }
}

/// dw (dw_size) and db (out_channels, may be null) += the `blocks` image blocks' partial sums,
/// each partial_size apart (dw's part, then db's), in block order: the same bits whichever
/// thread summed which block.
template <typename T>
void add_partials_in_block_order(T* dw, T* db, const T* partials, int blocks, int64_t dw_size,
                                 int64_t partial_size, int64_t out_channels) {
  for (int b = 0; b < blocks; ++b) {
    const T* partial = partials + b * partial_size;
    for (int64_t i = 0; i < dw_size; ++i) dw[i] += partial[i];
    if (db) {
      for (int64_t o = 0; o < out_channels; ++o) db[o] += partial[dw_size + o];
    }
  }
}

}  // namespace

// kAuto's rule, from `cnn bench` per-layer timings of each method (docs/design-notes.md):
// Winograd won on 3x3 layers with 16 or more channels in and out; the direct forward won on
// every other stride-1 layer measured; the direct weight gradient lost once the weights pass
// ~64 K (its per-lane sums, 64 bytes per weight, leave the cache).
constexpr int64_t kDirectBackwardMaxWeights = 65536;
constexpr int64_t kWinogradMinChannels = 16;
// Below this many 2x2 output tiles in the whole batch, a layer that Winograd would take runs by
// im2col + GEMM instead: resnet's 4x4-pixel, 128-channel layer at batch 1 (4 tiles) took
// 0.080 ms forward and 0.38 ms backward by Winograd, whose 16 products then have 4 columns,
// against 0.055 and 0.11 ms by GEMM (and 0.10 and 1.2 by the direct kernels); at 7x7 (16 tiles)
// Winograd's forward was still the faster, 0.026 against 0.047 ms.
constexpr int64_t kWinogradMinTiles = 16;
// Winograd's 2x2 blocks cover an odd side with a last half-empty block: a 7x7 output takes 16
// blocks, 64 products for 49 outputs. Where the blocks exceed the output by a quarter or more,
// the forward of batches from this size on runs by the direct kernels: resnet's 64-channel 7x7
// layer forward, 2 threads, four interleaved rounds of each: batch 64 0.82-0.93 ms (direct)
// against 0.93-1.18 ms (Winograd), batch 256 3.32-3.42 against 3.75-4.81; batch 16 0.22 ms
// either way. (Its backward stays by Winograd: 2.0-2.2 ms against 2.3-2.5 at batch 64. The
// 14x14 layers, fully covered, stay too: 2.55-3.10 ms against 2.77-2.87 at batch 256.)
constexpr int64_t kDirectForwardMinBatch = 32;
// Stride-2 forwards by the direct kernels over the input's phases (make_phase_staging), against
// im2col + GEMM, 2 threads, two interleaved rounds of a micro-benchmark of the call: resnet's
// 3x3 32 -> 64 layer, 14x14 -> 7x7 (49 outputs in 64 positions of AVX-512's vectors), batch 64
// 0.62-0.65 ms against 0.76-0.78, batch 256 2.47-2.55 against 3.12-3.26, batch 1 0.038 against
// 0.040-0.048; its 64 -> 128 layer, 7x7 -> 4x4 (16 outputs in 32 positions), batch 64 1.06-1.09
// against 0.93-0.98, batch 1 0.104-0.109 against 0.034-0.035; the 1x1 shortcuts (one phase of
// the four staged is read), batch 64 0.23-0.25 against 0.09-0.13.
constexpr int64_t kPhasesMinKernel = 3;
// The implicit GEMM (conv_implicit.hpp) against the methods above, forward and backward
// (weight and input gradients), 2 threads, a micro-benchmark of the calls (ms at batch 1 / 8 /
// 16 / 64 / 256, implicit against the method kAuto took before):
//   32 -> 64, 3x3 stride 2, 14x14 -> 7x7 (phases; im2col + GEMM backward): forward
//     0.016/0.069/0.107/0.358/1.41 against 0.027/0.082/0.142/0.552/2.23, backward
//     0.048/0.193/0.285/0.857/3.51 against 0.059/0.176/0.345/1.34/5.61;
//   64 -> 128, 3x3 stride 2, 7x7 -> 4x4 (im2col + GEMM): forward 0.037/0.107/0.163/0.508/1.77
//     against 0.025/0.133/0.221/0.754/2.87, backward 0.114/0.316/0.411/1.00/3.60 against
//     0.068/0.228/0.400/1.51/6.19;
//   64 -> 64, 3x3 stride 1, 7x7 (Winograd; direct forward from batch 32): forward
//     0.031/0.126/0.199/0.671/2.67 against 0.027/0.109/0.222/0.853/3.62, backward
//     0.075/0.279/0.451/1.43/5.48 against 0.130/0.321/0.584/2.18/8.31.
// Below 16 images its fixed costs (packing the weights for each phase of the input gradient,
// the threads' weight sums) lose; the 1x1 shortcuts (0.095 against 0.092 forward, 0.254
// against 0.203 backward at 64) and the Winograd layers that fill their blocks (4x4 128
// channels forward 0.938 against 0.825) stay.
constexpr int64_t kImplicitMinBatch = 16;
constexpr int64_t kImplicitMinInChannels = 16;
constexpr int64_t kImplicitMinOutChannels = 32;
// The backward of a Winograd layer whose products read the zero padding in a quarter or more
// of the cases (a 4x4 output of a 3x3 kernel with padding 1: 31%; 6x6: 21%) runs by the
// implicit GEMM, which skips them, on the AVX-512 kernels (16 lanes), under the implicit GEMM's
// batch and channel bounds; its forward stays by Winograd. `cnn bench` per-layer rows of
// one-convolution specs (ReLU, the convolution, Flatten, Linear), batch 64, 2 threads, Zen 4,
// CNN_CONV=winograd and =implicit alternating, backward ms: 4x4 128 -> 128 (resnet's last
// block) 3.59 / 3.56 / 3.49 / 2.93 / 3.15 against 2.66 / 2.64 / 2.50 / 2.64 / 2.80; 4x4 64
// channels 0.91 / 1.01 against 0.74 / 0.74; 4x4 32 0.42 / 0.34 against 0.35 / 0.22; 6x6 128
// 5.44 / 5.20 against 5.99 / 6.24 and 8x8 128 8.03 / 7.94 against 10.71 / 10.11 (Winograd
// faster there).
// Forward at 4x4 128: 1.07-1.17 (Winograd) against 1.13-1.24. On the AVX2 kernels (8 lanes)
// Winograd's backward kept the 128-channel 4x4 layer: 2.62 / 2.72 / 2.79 against 3.87 / 3.90
// / 2.82.
constexpr int64_t kImplicitBackwardMinLanes = 16;
// The backward of a Winograd layer with the fewest channels Winograd takes (16) in or out, on an
// output plane of 28x28 or more, runs by the implicit GEMM too (AVX2 and AVX-512 kernels, 16+
// images; its forward stays by Winograd): with 16 channels a tile's products are 16 x 16 matrices,
// too small for the transforms' traffic around them, while the implicit GEMM reads the input in
// place. Found on a CIFAR-style ResNet-20 (16 channels at 32x32, 32 at 16x16, 64 at 8x8), which
// trained at 1.01x PyTorch (bench/compare_specs.py, 2 threads, Zen 4, 2026-12-07). `cnn bench`
// per-layer rows of one-convolution specs (ReLU, the convolution, Flatten, Linear), batch 64, 2
// threads, Zen 4, CNN_CONV=winograd and =implicit alternating, three runs each, backward ms: 16
// -> 16 on 32x32 5.08-5.62 against 3.56-3.77, on 28x28 2.97-3.35 against 2.68-3.07, 16 -> 32 on
// 28x28 6.44-6.67 against 4.95-5.49, 32 -> 16 on 28x28 6.77-8.31 against 5.16-5.25 (one run 9.46);
// where it stays by Winograd: 16 -> 16 on 24x24 1.96-2.05 against 1.95-1.98, 20x20 1.14-1.32
// against 1.37-1.49, 14x14 0.55-0.58 against 0.65-0.66, 8x8 0.19-0.21 against 0.21-0.24; 32 or
// more channels on 28x28 and 32x32 (one thread) Winograd as fast or faster. Whole models, one
// binary with and without the rule (a temporary environment switch), `cnn bench` training
// images/s, alternating pairs: the ResNet-20, 2 threads, nine pairs 0.96-1.16x (median 1.10x),
// one thread three pairs 1.01-1.13x; bench/specs/resnet16-28x28.json (16 channels at 28x28), 2
// threads, five pairs 1.02-1.23x (median 1.06x).
// On the AVX2 kernels (8 lanes) too: the ResNet-20 with the rule against without it there
// (CNN_ISA=avx2, 2 threads, six alternating pairs) 1.06-1.20x (median 1.14x); 16 -> 16 on 32x32
// backward 3.7-4.5 ms against 6.1-6.2 by Winograd.
constexpr int64_t kImplicitBackwardNarrowChannels = 16;
constexpr int64_t kImplicitBackwardNarrowMinOutputs = 28 * 28;
constexpr int64_t kImplicitBackwardNarrowMinLanes = 8;
// The implicit GEMM's forward against the direct kernels' on the stride-1 layers that the direct
// kernels take: where a layer without padding computes its outputs in rows so much wider than them
// that a quarter or more of the positions are thrown away, and its output channels fill the
// implicit GEMM's vectors (a multiple of the lanes), the implicit forward won at every instruction
// set. `cnn bench` per-layer rows of one-convolution specs (ReLU, the convolution, Flatten,
// Linear), 2 threads, Zen 4, CNN_CONV=auto and =implicit alternating, forward ms, direct against
// implicit: LeNet-5's 6 -> 16 5x5 on 14x14 (10x10 outputs in rows of 14: 100 of 144 positions)
// AVX-512 batch 16 0.058-0.061 against 0.051-0.060, 64 0.220-0.230 against 0.158-0.188, 256
// 0.83-0.89 against 0.67-0.69; AVX2 batch 16 0.099-0.101 against 0.070-0.078, 64 0.25-0.38 against
// 0.17-0.21, 256 1.01-1.03 against 0.62-0.68; portable batch 64 1.04-1.14 against 0.67-0.92; 16 ->
// 32 5x5 on 10x10 (36 of 64) AVX-512 batch 64 0.53-0.54 against 0.32-0.35, 256 2.1-3.9 against
// 1.31-1.32, AVX2 64 0.89-1.20 against 0.37-0.38, portable 2.5-2.7 against 1.3-1.8; 4 -> 16 5x5 on
// 14x14 AVX-512 0.16-0.17 against 0.13-0.20, AVX2 0.23-0.25 against 0.15-0.17. Where the rule does
// not reach, the direct forward stayed as fast or faster: 6 -> 16 5x5 with padding 2 on 14x14 (196
// of 256 positions; the implicit GEMM multiplies the padding too) 0.34-0.36 against 0.42-0.44; 6 ->
// 16 5x5 on 28x28 (576 of 672) 1.00 against 0.99-1.08; 3 -> 16 3x3 with padding 1 on 28x28
// 0.27-0.28 against 0.38-0.40; 6 -> 24 5x5 on 14x14 on AVX-512 (24 channels: one and a half
// vectors) 0.33-0.34 against 0.33-0.37; one channel in (LeNet-5's first layer, 25 taps, and
// convnet's, 9) 0.09 against 0.30-0.37 and 0.27 against 0.35. The direct weight gradient runs over
// the same positions as the direct forward, and the implicit GEMM's beat it there too (LeNet-5's
// layer as a spec's first layer, no input gradient, AVX-512 batch 64: 0.23-0.27 ms against 0.17);
// the input gradient stays direct (its own staging: 14x14 outputs in rows of 14; the implicit
// GEMM's with 6 channels in a vector of 16 took about 0.52 ms against 0.29, by difference).
// Backward ms, all direct against implicit weights and direct input gradient: LeNet-5's layer
// AVX-512 batch 64 0.56-0.59 against 0.49-0.50, 256 2.35-2.39 against 1.99-2.13, AVX2 64 0.75-0.91
// against 0.58, portable 2.2-2.3 against 1.34-1.69; 16 -> 32 5x5 on 10x10 AVX-512 1.44-1.55 against
// 1.19-1.24, AVX2 2.1-2.5 against 1.39-1.62.
constexpr int64_t kImplicitForwardMinInChannels = 4;
// The weight gradient alone of a stride-2 layer with a 3x3 or larger kernel that the implicit GEMM
// does not take (fewer channels than its bounds, in or out: an RGB network's stem, such as
// ResNet's 3 -> 64 7x7 one) runs by the implicit GEMM from kStridedWeightGradMinBatch images and
// kStridedWeightGradMinInChannels channels in; its forward and input gradient stay (phases or
// im2col + GEMM). im2col + GEMM copied each input value kernel_h * kernel_w times and packed the
// copies again; the implicit GEMM reads them in place. A micro-benchmark of conv2d_backward
// without dx (the model's first layer computes none), one thread, Zen 4, ms, im2col + GEMM
// against the implicit GEMM (2026-12-07): 3 -> 64 7x7 padding 3 on 64x64, batch 64, AVX-512
// 18.3-21.6 against 13.4-14.1, AVX2 22.8 against 14.9, portable 197 against 35; the same on
// 224x224 at batch 4 18.5 against 12.0, batch 2 8.3 against 6.1; 3 -> 64 3x3 on 64x64 5.0-6.1
// against 3.7-4.0; 3 -> 32 3x3 on 32x32 batch 64 0.63 against 0.50 (AVX2 1.07 against 0.59,
// portable 5.3 against 1.6), batch 16 0.26 against 0.19, 8 0.070 against 0.056, 4 0.035 against
// 0.031, 1 0.009 against 0.010; 3 -> 16 3x3 batch 64 0.39 against 0.27, batch 4 0.031 against
// 0.025, batch 2 0.016 either way; 16 -> 16 3x3 on 32x32 2.3 against 1.2 (AVX2 2.8 against
// 0.9), batch 4 0.119 against 0.076; 8 -> 16 5x5 padding 2 3.0 against 1.6. One channel in
// (9 taps, padded to 12 rows of the GEMM's register tiles) stays: 1 -> 32 3x3 on 28x28 batch
// 64 0.31 either way, batch 4 0.019 against 0.023, batch 2 0.009 against 0.014. Its input
// gradient by the implicit GEMM lost with 3 channels in (7x7 on 64x64: 73-77 ms against 20-22:
// three channels in a vector of 16), so it stays with col2im.
constexpr int64_t kStridedWeightGradMinBatch = 4;
constexpr int64_t kStridedWeightGradMinInChannels = 3;
// Winograd F(4x4, 3x3) (winograd4x4_conv3x3) takes kAuto's Winograd layers on 4x4 planes with
// padding 1 (one 6x6 tile a plane: 36 products for 16 outputs, against F(2x2)'s 64 and the
// implicit GEMM's 100 that skip the padding) from this many images, and the 7x7 ones that the
// implicit GEMM took (2 x 2 tiles: 144 products for 49 outputs, against its 361): resnet's 64
// -> 64 layer at batch 64, 2 threads, forward / backward ms with the weights changed before
// each forward, 0.76-0.84 / 1.38-1.68 against 1.00-1.02 / 2.01-2.12; at batch 256 3.38 /
// 5.97 against 3.95 / 8.05 (Zen 4). 14x14 stays with F(2x2) in training (evaluation: see
// conv_forward_uses_winograd4x4), also since F(4x4)'s transforms run images across the vector
// lanes (winograd_lanes.hpp): resnet with F(4x4) on its 14x14 layers against F(2x2) there,
// `cnn bench`, six interleaved pairs on a Zen 5 (before the lane kernels staged planes flat),
// training 0.97-1.04x (median 0.99), inference 0.97-1.09x; convnet (its 32 -> 64 conv2)
// training 0.95-1.04x (median 0.99), inference 0.97-1.06x. (A harness calling conv2d_forward /
// conv2d_backward on the layer alone had it 15-30% faster, with F(2x2) slower there than in any
// model.) The batch bound: F(4x4)'s weight side (36 transformed matrices, 2.4 MB for 128 x 128
// channels, made again whenever training changed the weights) costs as much as a small batch's
// products. Resnet's 4x4 128 -> 128 layer, forward / backward ms, one thread, the weights changed
// before each forward, F(4x4) against kAuto's methods before it (F(2x2), and the implicit GEMM's
// backward from 16 images on AVX-512): batch 4 0.51 / 0.81 against 0.31 / 0.64, 8 0.50-0.51 /
// 0.83-0.84 against 0.42 / 0.82-0.87, 12 0.57-0.59 / 0.95-1.32 against 0.54-0.57 / 1.09-1.12, 16
// 0.53-0.57 / 1.10-1.18 against 0.68 / 1.42-1.46, 64 (2 threads) 0.82-0.88 / 1.70-1.87
// against 1.16-1.60 / 2.61-3.50.
constexpr int64_t kWinograd4x4MinBatch = 16;

namespace {
bool conv_is_stride_one(const ConvShape& s) {
  return s.stride_h == 1 && s.stride_w == 1;
}

/// The layers Winograd F(2x2, 3x3) computes, forward and backward: 3x3, stride 1, padding at
/// most 2 (the range the tests sweep; larger padding takes the other methods).
bool conv_is_winograd_shaped(const ConvShape& s) {
  return s.kernel_h == 3 && s.kernel_w == 3 && conv_is_stride_one(s) && s.pad_h <= 2 &&
         s.pad_w <= 2;
}

/// kAuto's Winograd layers: Winograd-shaped with 16+ channels in and out. Any batch: with the
/// weight transform vectorised and kept between calls on the same weights, convnet's conv2 took
/// 53 us (Winograd) against 80 us (direct) for one image.
bool conv_auto_winograd_shaped(const ConvShape& s) {
  return conv_algorithm() == ConvAlgorithm::kAuto && conv_is_winograd_shaped(s) &&
         s.in_channels >= kWinogradMinChannels && s.out_channels >= kWinogradMinChannels;
}

/// kAuto's exception: such a layer with too few tiles for Winograd's products runs by im2col +
/// GEMM (forward and backward), not by the direct kernels.
bool conv_too_few_winograd_tiles(const ConvShape& s) {
  return conv_auto_winograd_shaped(s) &&
         s.batch * ((s.out_h + 1) / 2) * ((s.out_w + 1) / 2) < kWinogradMinTiles;
}

bool conv_uses_winograd(const ConvShape& s) {
  if (conv_algorithm() == ConvAlgorithm::kWinograd) return conv_is_winograd_shaped(s);
  return conv_auto_winograd_shaped(s) && !conv_too_few_winograd_tiles(s);
}

/// Whether Winograd's 2x2 blocks cover at least 5/4 of the output (odd sides such as 7x7).
bool winograd_blocks_overhang(const ConvShape& s) {
  const int64_t covered = 4 * ((s.out_h + 1) / 2) * ((s.out_w + 1) / 2);
  return 4 * covered >= 5 * s.out_h * s.out_w;
}

/// Whether F(4x4, 3x3)'s 4x4 tiles cover less than 4/3 of the output (7x7: 64 / 49; not 5x5,
/// 64 / 25, nor 9x9, 144 / 81).
bool winograd4x4_tiles_fit(const ConvShape& s) {
  const int64_t covered = 16 * ((s.out_h + 3) / 4) * ((s.out_w + 3) / 4);
  return 3 * covered < 4 * s.out_h * s.out_w;
}

bool conv_within_implicit_bounds(const ConvShape& s);

/// kAuto's layers by F(4x4, 3x3), forward and backward (CNN_CONV=winograd keeps F(2x2, 3x3)
/// everywhere), from kWinograd4x4MinBatch images: Winograd's layers on 4x4 planes with padding
/// 1 (one tile a plane), and those whose 2x2 blocks overhang (which the implicit GEMM took)
/// where F(4x4)'s tiles fit (winograd4x4_tiles_fit), within the implicit GEMM's bounds.
bool conv_uses_winograd4x4(const ConvShape& s) {
  if (!conv_auto_winograd_shaped(s) || s.batch < kWinograd4x4MinBatch) return false;
  if (s.in_h == 4 && s.in_w == 4 && s.pad_h == 1 && s.pad_w == 1) return true;
  return conv_within_implicit_bounds(s) && winograd_blocks_overhang(s) && winograd4x4_tiles_fit(s);
}

/// kAuto's exception for the forward alone: a Winograd layer whose blocks overhang so, at a
/// batch of kDirectForwardMinBatch or more, runs its forward by the direct kernels (unless the
/// implicit GEMM takes the layer first).
bool conv_forward_leaves_winograd(const ConvShape& s) {
  return conv_auto_winograd_shaped(s) && s.batch >= kDirectForwardMinBatch &&
         winograd_blocks_overhang(s);
}

// An evaluation forward (ConvShape::inference) of the other layers F(2x2) takes (their 2x2
// blocks fit: 14x14, 8x8, 28x28) runs by F(4x4) where its tiles fit too (winograd4x4_tiles_fit),
// from kWinograd4x4MinBatch images within the implicit GEMM's bounds: 36 products for every 16
// outputs against 64, and 27% (14x14) to 44% (8x8) fewer transformed values to write and read.
// Measured on a Zen 5 once the lane kernels staged planes flat (2026-12-04), one binary with and
// without it (a temporary environment switch), interleaved pairs of 2 s runs of the evaluation
// forward at batch 256: resnet 0.96-1.11x (median 1.08, 5 of 6 faster), convnet (its 32 -> 64
// conv2 on 14x14) 1.08-1.15x (median 1.10). Not in training: there its forward by F(4x4)
// gained 0.99-1.03x (median 1.01) on resnet and convnet, and 1 and 2 threads' models drifted
// apart: 3 resnet steps of SteadyState's check, 7 seeds, differed by 9.0e-7 to 9.3e-5 of the
// largest parameter (6 over the 1e-5) against 1.2e-7 to 6.0e-5 (2 over) with F(2x2).
// (The threads' weight sums differ in rounding alone; F(4x4)'s own rounding, about 10x
// F(2x2)'s, presumably tips more ReLU and max-pooling choices.) F(4x4) for the 14x14 backward
// as well lost too (resnet training median 0.985).
bool conv_forward_uses_winograd4x4(const ConvShape& s) {
  if (conv_uses_winograd4x4(s)) return true;
  return s.inference && conv_auto_winograd_shaped(s) && s.batch >= kWinograd4x4MinBatch &&
         conv_within_implicit_bounds(s) && winograd4x4_tiles_fit(s) && conv_uses_winograd(s) &&
         !conv_forward_leaves_winograd(s);
}

bool conv_forward_uses_winograd(const ConvShape& s) {
  return conv_uses_winograd(s) && !conv_forward_leaves_winograd(s) &&
         !conv_forward_uses_winograd4x4(s);
}

/// Stride-2 layers whose forward the direct kernels take, over the input's phases
/// (make_phase_staging): every such layer under kDirect; under kAuto (and kWinograd, which
/// does not apply) kernels of 3x3 or more whose outputs fill at least 3/4 of the positions the
/// kernels compute (rows `row` long, rounded up to whole vectors).
bool conv_forward_uses_phases(const ConvShape& s) {
  if (s.stride_h != 2 || s.stride_w != 2 || conv_algorithm() == ConvAlgorithm::kGemm ||
      conv_algorithm() == ConvAlgorithm::kImplicit) {
    return false;
  }
  if (conv_algorithm() == ConvAlgorithm::kDirect) return true;
  const Staging g = make_phase_staging(s, detail::direct_conv_kernels().lanes);
  return s.kernel_h >= kPhasesMinKernel && s.kernel_w >= kPhasesMinKernel &&
         4 * s.out_h * s.out_w >= 3 * g.positions;
}

/// kAuto's bounds on the layers the implicit GEMM takes: kImplicitMinBatch images,
/// kImplicitMinInChannels and kImplicitMinOutChannels.
bool conv_within_implicit_bounds(const ConvShape& s) {
  return s.batch >= kImplicitMinBatch && s.in_channels >= kImplicitMinInChannels &&
         s.out_channels >= kImplicitMinOutChannels;
}

/// The layers whose forward, weight gradient and input gradient the implicit GEMM computes
/// (conv_implicit.hpp): every layer under kImplicit; under kAuto, from kImplicitMinBatch
/// images, with kImplicitMinInChannels and kImplicitMinOutChannels, the stride-2 layers of
/// 3x3 or larger kernels and the Winograd-shaped layers whose 2x2 blocks overhang their
/// output by a quarter or more (5x5) where F(4x4, 3x3) does not take them (7x7).
bool conv_uses_implicit(const ConvShape& s) {
  if (s.batch <= 0) return false;
  if (conv_algorithm() == ConvAlgorithm::kImplicit) return true;
  if (conv_algorithm() != ConvAlgorithm::kAuto || !conv_within_implicit_bounds(s)) return false;
  const bool strided = s.stride_h == 2 && s.stride_w == 2 && s.kernel_h >= 3 && s.kernel_w >= 3;
  return strided ||
         (conv_auto_winograd_shaped(s) && winograd_blocks_overhang(s) && !conv_uses_winograd4x4(s));
}

/// kAuto's exceptions for the backward alone: a Winograd layer (conv_uses_winograd) takes the
/// implicit GEMM's weight and input gradients from kImplicitMinBatch images where it has 16
/// channels in or out (the fewest Winograd takes) and an output plane of
/// kImplicitBackwardNarrowMinOutputs or more (kernels of kImplicitBackwardNarrowMinLanes or
/// more: AVX2 and AVX-512), or where its products read the padding in a quarter or more of the
/// cases (kernels of kImplicitBackwardMinLanes or more, within the implicit GEMM's channel
/// bounds).
bool conv_backward_leaves_winograd(const ConvShape& s) {
  if (!conv_auto_winograd_shaped(s) || conv_too_few_winograd_tiles(s) || conv_uses_winograd4x4(s) ||
      s.batch < kImplicitMinBatch) {
    return false;
  }
  const int64_t lanes = detail::direct_conv_kernels().lanes;
  if (std::min(s.in_channels, s.out_channels) == kImplicitBackwardNarrowChannels &&
      s.out_h * s.out_w >= kImplicitBackwardNarrowMinOutputs &&
      lanes >= kImplicitBackwardNarrowMinLanes) {
    return true;
  }
  if (lanes < kImplicitBackwardMinLanes || !conv_within_implicit_bounds(s)) return false;
  const int64_t products = s.out_h * s.kernel_h * s.out_w * s.kernel_w;
  return 4 * (products - detail::implicit_products_inside(s)) >= products;
}

/// The weight and input gradients by the implicit GEMM: its layers, and kAuto's exception above.
bool conv_backward_uses_implicit(const ConvShape& s) {
  return conv_uses_implicit(s) || conv_backward_leaves_winograd(s);
}

/// The weight and input gradients by Winograd F(2x2, 3x3).
bool conv_backward_uses_winograd(const ConvShape& s) {
  return conv_uses_winograd(s) && !conv_backward_leaves_winograd(s) && !conv_uses_winograd4x4(s);
}

/// kAuto's exception for the forward alone: a stride-1 layer without padding that the direct
/// kernels would take, from kImplicitMinBatch images and kImplicitForwardMinInChannels channels
/// in, whose output channels are a multiple of the lanes and whose outputs fill less than 3/4
/// of the positions the direct kernels compute (rows `row` long, whole vectors), runs its
/// forward by the implicit GEMM.
bool conv_forward_leaves_direct(const ConvShape& s) {
  if (conv_algorithm() != ConvAlgorithm::kAuto || !conv_is_stride_one(s) || s.pad_h != 0 ||
      s.pad_w != 0 || s.batch < kImplicitMinBatch ||
      s.in_channels < kImplicitForwardMinInChannels || conv_uses_implicit(s) ||
      conv_forward_uses_winograd(s) || conv_too_few_winograd_tiles(s)) {
    return false;
  }
  const int64_t lanes = detail::direct_conv_kernels().lanes;
  if (s.out_channels % lanes != 0) return false;
  const Staging g =
      make_staging(s.in_channels, s.in_h, s.in_w, s.pad_h, s.pad_w, s.kernel_h, s.kernel_w, lanes);
  return 4 * s.out_h * s.out_w < 3 * g.positions;
}

/// kAuto's exception for the forward alone: a 1x1 stride-2 layer without padding (resnet's
/// projection shortcuts), within the implicit GEMM's bounds, runs its forward by the implicit
/// GEMM, which reads every other position of the input where it lies (no im2col, no staging)
/// and writes the output once; its backward stays with im2col + GEMM. resnet's two shortcuts,
/// 2 threads, Zen 4, ms forward (32 -> 64 on 14x14 / 64 -> 128 on 7x7), im2col + GEMM against
/// the implicit GEMM: evaluation (bias and weight scale) at batch 256, AVX-512 0.54-0.55 / 0.61
/// against 0.44-0.45 / 0.45-0.46, AVX2 0.43-0.58 / 0.53-0.55 against 0.39 / 0.42, portable
/// 3.8-3.9 / 4.4 against 0.98-1.00 / 1.14; training at batch 64, AVX-512 0.105 / 0.139 against
/// 0.085 / 0.099, AVX2 0.107 / 0.146 against 0.093 / 0.110, portable 0.93 / 1.09 against 0.24 /
/// 0.28; at batch 16 level (AVX-512 0.033 / 0.052 against 0.030 / 0.052; AVX2 0.033 / 0.052
/// against 0.031 / 0.055). Its backward by the implicit GEMM lost (batch 64, AVX-512: 0.57-0.59
/// / 0.60-0.61 against im2col + GEMM's 0.39-0.40 / 0.44).
bool conv_forward_leaves_gemm(const ConvShape& s) {
  return conv_algorithm() == ConvAlgorithm::kAuto && s.kernel_h == 1 && s.kernel_w == 1 &&
         s.stride_h == 2 && s.stride_w == 2 && s.pad_h == 0 && s.pad_w == 0 &&
         conv_within_implicit_bounds(s);
}

/// The forward by the implicit GEMM: its layers, and kAuto's exceptions above.
bool conv_forward_uses_implicit(const ConvShape& s) {
  return conv_uses_implicit(s) || conv_forward_leaves_direct(s) || conv_forward_leaves_gemm(s);
}

bool conv_forward_uses_direct(const ConvShape& s) {
  if (conv_forward_uses_implicit(s)) return false;
  if (conv_forward_uses_phases(s)) return true;
  return conv_is_stride_one(s) && conv_algorithm() != ConvAlgorithm::kGemm &&
         !conv_forward_uses_winograd(s) && !conv_forward_uses_winograd4x4(s) &&
         !conv_too_few_winograd_tiles(s);
}

/// The weight and bias gradients (and the input gradient unless Winograd computes it).
bool conv_backward_uses_direct(const ConvShape& s) {
  if (!conv_is_stride_one(s)) return false;
  switch (conv_algorithm()) {
    case ConvAlgorithm::kGemm:
    case ConvAlgorithm::kImplicit:
      return false;
    case ConvAlgorithm::kDirect:
    case ConvAlgorithm::kWinograd:
      return true;
    case ConvAlgorithm::kAuto:
      break;
  }
  if (conv_too_few_winograd_tiles(s)) return false;
  return s.out_channels * s.in_channels * s.kernel_h * s.kernel_w <= kDirectBackwardMaxWeights;
}

/// The direct backward's input gradient is the seed's full convolution when the padding is at
/// most kernel - 1 (otherwise dy padded by kernel - 1 - pad would be cropped): else
/// im2col + GEMM's col2im.
bool conv_input_grad_uses_direct(const ConvShape& s) {
  return !conv_uses_winograd(s) && conv_backward_uses_direct(s) && s.pad_h <= s.kernel_h - 1 &&
         s.pad_w <= s.kernel_w - 1;
}

/// kAuto's exception for the weight gradient alone, which the direct kernels compute over the
/// same positions as their forward: where the forward leaves them (conv_forward_leaves_direct)
/// and the backward would be theirs, the weight and bias gradients run by the implicit GEMM;
/// the input gradient (its own staging: dy padded by kernel - 1 - pad) stays.
bool conv_weight_grad_leaves_direct(const ConvShape& s) {
  return conv_forward_leaves_direct(s) && !conv_backward_uses_implicit(s) &&
         !conv_backward_uses_winograd(s) && conv_backward_uses_direct(s);
}

/// kAuto's exception for the weight gradient alone of stride-2 layers: a 3x3 or larger kernel,
/// outside the implicit GEMM's channel bounds (fewer than kImplicitMinInChannels in or
/// kImplicitMinOutChannels out), from kStridedWeightGradMinBatch images and
/// kStridedWeightGradMinInChannels channels in: the weight gradient by the implicit GEMM, the
/// input gradient by im2col + GEMM's col2im (the bias gradient, as every such path, a sum of dy).
bool conv_weight_grad_leaves_gemm(const ConvShape& s) {
  return conv_algorithm() == ConvAlgorithm::kAuto && s.stride_h == 2 && s.stride_w == 2 &&
         s.kernel_h >= 3 && s.kernel_w >= 3 && s.batch >= kStridedWeightGradMinBatch &&
         s.in_channels >= kStridedWeightGradMinInChannels &&
         !(s.in_channels >= kImplicitMinInChannels && s.out_channels >= kImplicitMinOutChannels);
}
}  // namespace

const char* conv2d_forward_method(const ConvShape& s) {
  return conv_forward_uses_winograd4x4(s) ? "winograd4x4"
         : conv_forward_uses_implicit(s)  ? "implicit"
         : conv_forward_uses_winograd(s)  ? "winograd"
         : conv_forward_uses_direct(s)    ? "direct"
                                          : "gemm";
}
const char* conv2d_weight_grad_method(const ConvShape& s) {
  return conv_uses_winograd4x4(s) ? "winograd4x4"
         : conv_backward_uses_implicit(s) || conv_weight_grad_leaves_direct(s) ||
                 conv_weight_grad_leaves_gemm(s)
             ? "implicit"
         : conv_backward_uses_winograd(s) ? "winograd"
         : conv_backward_uses_direct(s)   ? "direct"
                                          : "gemm";
}
const char* conv2d_input_grad_method(const ConvShape& s) {
  return conv_uses_winograd4x4(s)         ? "winograd4x4"
         : conv_backward_uses_implicit(s) ? "implicit"
         : conv_backward_uses_winograd(s) ? "winograd"
         : conv_input_grad_uses_direct(s) ? "direct"
                                          : "gemm";
}

namespace {

/// The direct kernels' forward, image by image into a per-thread flat buffer; y is the
/// convolution's output, or with relu_pool the 2x2 / stride-2 max pooling of its ReLU (N, OC,
/// OH / 2, OW / 2), pooled from the flat buffer while it is in the cache.
void conv2d_forward_direct(float* y, const float* x, const float* w, const float* b,
                           const ConvShape& s, const float* w_scale, bool relu_pool = false,
                           double* moments = nullptr) {
  const detail::DirectConvKernels& kernels = detail::direct_conv_kernels();
  const bool phased = s.stride_h == 2 && s.stride_w == 2;  // else stride 1
  const Staging g = phased ? make_phase_staging(s, kernels.lanes)
                           : make_staging(s.in_channels, s.in_h, s.in_w, s.pad_h, s.pad_w,
                                          s.kernel_h, s.kernel_w, kernels.lanes);
  const int64_t taps = s.in_channels * s.kernel_h * s.kernel_w;
  const int64_t oc_block = kernels.forward_oc_block(s.out_channels);
  const int64_t padded_channels = round_up(s.out_channels, oc_block);
  // Read-only in the parallel region: packed weights, bias, tap offsets.
  std::vector<float>& shared = detail::shared_scratch<float>(0, padded_channels * (taps + 1));
  float* packed = shared.data();
  float* bias = packed + padded_channels * taps;
  // The forward kernel's [block][tap][oc_block] order, on this thread (small weights).
  detail::pack_columns(packed, s.out_channels, padded_channels, oc_block, taps, 1,
                       [&](int64_t o, int64_t t) {
                         return w_scale ? w[o * taps + t] * w_scale[o] : w[o * taps + t];
                       });
  for (int64_t o = 0; o < padded_channels; ++o) bias[o] = b && o < s.out_channels ? b[o] : 0.0f;
  std::vector<int64_t>& offsets = detail::shared_scratch<int64_t>(0, taps);
  if (phased) {
    phase_tap_offsets(offsets.data(), g, s.kernel_h, s.kernel_w);
  } else {
    tap_offsets(offsets.data(), g, s.kernel_h, s.kernel_w);
  }

  const int64_t in_size = s.in_channels * s.in_h * s.in_w;
  const int64_t pooled_h = s.out_h / 2, pooled_w = s.out_w / 2;
  const int64_t out_size = s.out_channels * (relu_pool ? pooled_h * pooled_w : s.out_h * s.out_w);
  const int team = static_cast<int>(std::min<int64_t>(threads(), s.batch));
  detail::for_each_part(team, [&](int part) {
    const detail::ImageRange range = detail::images_of_part(s.batch, part, team);
    float* staged = detail::scratch<float>(0, g.size);
    float* flat = detail::scratch<float>(1, padded_channels * g.positions);
    std::fill(staged, staged + g.size, 0.0f);
    for (int64_t n = range.first; n < range.last; ++n) {
      if (phased) {
        stage_phases(staged, x + n * in_size, g);
      } else {
        stage(staged, x + n * in_size, g);
      }
      kernels.forward({padded_channels, oc_block, taps, offsets.data(), staged, packed, bias, flat,
                       g.positions});
      if (!relu_pool) {
        unstage(y + n * out_size, flat, s.out_channels, g);
        if (moments) {
          ops::batchnorm_plane_moments(moments + 2 * n * s.out_channels, y + n * out_size,
                                       s.out_channels, s.out_h * s.out_w);
        }
        continue;
      }
      for (int64_t o = 0; o < s.out_channels; ++o) {
        detail::relu_maxpool_2x2_plane(y + n * out_size + o * pooled_h * pooled_w,
                                       flat + o * g.positions, g.row, pooled_h, pooled_w);
      }
    }
  });
}

/// What the threads of one direct backward share, computed once per call and read-only in the
/// parallel region.
struct DirectBackwardPlan {
  Staging g;  // the input, staged as the forward stages it
  int64_t taps;
  int64_t wg_block, wg_channels;  // the weight gradient kernel's channel block, and OC padded
  // taps + 1 entries: the last points at a run of ones staged after each image, so that the
  // weight gradient kernel computes the bias gradient (the sum of dy) as one more tap.
  const int64_t* offsets;
  // The input gradient as the full convolution of dy padded by kernel - 1 - pad with the
  // rotated weights; rotated is null when it runs by GEMM + col2im instead (or is not needed).
  Staging gd;
  int64_t dx_block, dx_channels;
  const float* rotated;  // packed for the forward kernel
  const float* dx_bias;  // dx_channels zeros: dx has no bias term
  const int64_t* dx_offsets;
};

/// The output gradient of the direct backward, image by image: a tensor, or images made on
/// demand (ops::conv2d_weight_backward_by_image) into the calling thread's scratch slot 7.
struct DyImages {
  const float* tensor = nullptr;
  const ops::ImageGradientSource* source = nullptr;
  int64_t image_size = 0;
  /// Image n's values; a made image stays valid until the thread's next call.
  const float* image(int64_t n) const {
    if (!source) return tensor + n * image_size;
    float* out = detail::scratch<float>(7, image_size);
    source->fill(source->context, n, out);
    return out;
  }
};

/// Backward of the image blocks [first_block, last_block) of `blocks` (images_of_part) on one
/// thread: block b's weight and bias gradients assigned to its partial sums at
/// partials + b * partial_size (dw's (OC, taps), then db's OC when `bias`); dx assigned per
/// image when not null (dy then a tensor: each image is read twice). With partials null, dx
/// alone (the weight and bias gradients are another method's). The staging buffers are set up
/// once for the thread's run of blocks.
void conv2d_backward_direct_blocks(const DirectBackwardPlan& plan, int first_block, int last_block,
                                   int blocks, float* dx, float* partials, int64_t partial_size,
                                   bool bias, const float* x, const float* w, const DyImages& dy,
                                   const ConvShape& s) {
  const detail::DirectConvKernels& kernels = detail::direct_conv_kernels();
  const int64_t lanes = kernels.lanes;
  const Staging& g = plan.g;
  const int64_t taps = plan.taps;
  const int64_t out_plane = s.out_h * s.out_w;
  const int64_t in_size = s.in_channels * s.in_h * s.in_w;
  // dy staged at the same flat positions as the forward outputs, zero in the columns
  // ow >= out_w, so that those positions add nothing to the weight gradient.
  const int64_t dy_stride = plan.wg_channels * g.positions;
  // Images staged together, about 256 KiB of them, so the kernel's accumulators stay in
  // registers across images; at most a block's.
  const int64_t per_image = g.size + dy_stride;
  const int64_t largest_block = (s.batch + blocks - 1) / blocks;
  const int64_t chunk = std::clamp<int64_t>((int64_t{1} << 16) / per_image, 1, largest_block);
  const int64_t x_stride = g.size + g.positions;  // the image, then the run of ones
  const int64_t grad_taps = bias ? taps + 1 : taps;
  const bool weights = partials != nullptr;
  float* staged_x = nullptr;
  float* staged_dy = nullptr;
  float* lanes_sum = nullptr;
  if (weights) {
    staged_x = detail::scratch<float>(4, chunk * x_stride);
    staged_dy = detail::scratch<float>(5, chunk * dy_stride);
    lanes_sum = detail::scratch<float>(6, plan.wg_channels * grad_taps * lanes);
    for (int64_t i = 0; i < chunk; ++i) {
      float* image = staged_x + i * x_stride;
      std::fill(image, image + g.size, 0.0f);
      std::fill(image + g.size, image + x_stride, 1.0f);
    }
    std::fill(staged_dy, staged_dy + chunk * dy_stride, 0.0f);
  }

  const bool direct_dx = dx != nullptr && plan.rotated != nullptr;
  float* dx_staged = nullptr;
  float* dx_flat = nullptr;
  if (direct_dx) {
    dx_staged = detail::scratch<float>(0, plan.gd.size);
    dx_flat = detail::scratch<float>(1, plan.dx_channels * plan.gd.positions);
    std::fill(dx_staged, dx_staged + plan.gd.size, 0.0f);
  }

  for (int block = first_block; block < last_block; ++block) {
    const detail::ImageRange range = detail::images_of_part(s.batch, block, blocks);
    if (weights) std::fill(lanes_sum, lanes_sum + plan.wg_channels * grad_taps * lanes, 0.0f);
    for (int64_t start = range.first; start < range.last; start += chunk) {
      const int64_t count = std::min(chunk, range.last - start);
      if (weights) {
        for (int64_t i = 0; i < count; ++i) {
          const int64_t n = start + i;
          stage(staged_x + i * x_stride, x + n * in_size, g);
          const float* dyn = dy.image(n);
          float* dys = staged_dy + i * dy_stride;
          for (int64_t o = 0; o < s.out_channels; ++o) {
            kernels.copy_rows(dys + o * g.positions, g.row, dyn + o * out_plane, s.out_w, s.out_h,
                              s.out_w);
          }
        }
        kernels.weight_grad({plan.wg_channels, plan.wg_block, grad_taps, plan.offsets, count,
                             staged_x, x_stride, staged_dy, dy_stride, g.positions, lanes_sum});
      }
      if (!dx) continue;
      for (int64_t i = 0; i < count; ++i) {
        const int64_t n = start + i;
        const float* dyn = dy.image(n);
        float* dxn = dx + n * in_size;
        if (direct_dx) {
          stage(dx_staged, dyn, plan.gd);
          kernels.forward({plan.dx_channels, plan.dx_block,
                           s.out_channels * s.kernel_h * s.kernel_w, plan.dx_offsets, dx_staged,
                           plan.rotated, plan.dx_bias, dx_flat, plan.gd.positions});
          unstage(dxn, dx_flat, s.in_channels, plan.gd);
        } else {
          float* dcol = detail::scratch<float>(1, taps * out_plane);
          detail::gemm_tn(taps, out_plane, s.out_channels, w, taps, dyn, out_plane, dcol, out_plane,
                          false);
          col2im(dxn, dcol, s, out_plane);
        }
      }
    }
    if (!weights) continue;
    // Each weight's lanes, summed in lane order.
    float* dw_partial = partials + block * partial_size;
    for (int64_t o = 0; o < s.out_channels; ++o)
      for (int64_t t = 0; t < grad_taps; ++t) {
        const float* l = lanes_sum + (o * grad_taps + t) * lanes;
        float sum = 0;
        for (int64_t i = 0; i < lanes; ++i) sum += l[i];
        if (t < taps) {
          dw_partial[o * taps + t] = sum;
        } else {
          dw_partial[s.out_channels * taps + o] = sum;
        }
      }
  }
}

/// The weight and bias gradients (db may be null) accumulated into dw and db, and dx assigned
/// when not null, by the direct kernels. With dw null, dx alone (db must be null too).
void conv2d_backward_direct(float* dx, float* dw, float* db, const float* x, const float* w,
                            const DyImages& dy, const ConvShape& s) {
  const detail::DirectConvKernels& kernels = detail::direct_conv_kernels();
  DirectBackwardPlan plan{};
  plan.g = make_staging(s.in_channels, s.in_h, s.in_w, s.pad_h, s.pad_w, s.kernel_h, s.kernel_w,
                        kernels.lanes);
  plan.taps = s.in_channels * s.kernel_h * s.kernel_w;
  plan.wg_block = kernels.weight_grad_oc_block(s.out_channels);
  plan.wg_channels = round_up(s.out_channels, plan.wg_block);
  std::vector<int64_t>& offsets = detail::shared_scratch<int64_t>(0, plan.taps + 1);
  tap_offsets(offsets.data(), plan.g, s.kernel_h, s.kernel_w);
  offsets[static_cast<size_t>(plan.taps)] = plan.g.size;  // the bias gradient's run of ones
  plan.offsets = offsets.data();

  const int blocks = detail::gradient_blocks(s.batch, threads());
  const int64_t dw_size = s.out_channels * plan.taps;
  const int64_t partial_size = dw ? dw_size + s.out_channels : 0;
  const int64_t dx_taps = s.out_channels * s.kernel_h * s.kernel_w;
  const bool direct_dx = dx != nullptr && conv_input_grad_uses_direct(s);
  if (direct_dx) {
    plan.dx_block = kernels.forward_oc_block(s.in_channels);
    plan.dx_channels = round_up(s.in_channels, plan.dx_block);
  }
  const int64_t rotated_size = direct_dx ? plan.dx_channels * (dx_taps + 1) : 0;
  std::vector<float>& shared =
      detail::shared_scratch<float>(0, blocks * partial_size + rotated_size);
  if (direct_dx) {
    // The full convolution's weights: rotated(ic, (oc, kh, kw)) = w(oc, ic, KH-1-kh, KW-1-kw).
    float* packed = shared.data() + blocks * partial_size;
    const int64_t kernel_size = s.kernel_h * s.kernel_w;
    detail::pack_columns(packed, s.in_channels, plan.dx_channels, plan.dx_block, dx_taps, 1,
                         [&](int64_t ic, int64_t t) {
                           const int64_t oc = t / kernel_size, k = t % kernel_size;
                           return w[(oc * s.in_channels + ic) * kernel_size + kernel_size - 1 - k];
                         });
    plan.rotated = packed;
    float* zeros = packed + plan.dx_channels * dx_taps;
    std::fill(zeros, zeros + plan.dx_channels, 0.0f);
    plan.dx_bias = zeros;
    plan.gd = make_staging(s.out_channels, s.out_h, s.out_w, s.kernel_h - 1 - s.pad_h,
                           s.kernel_w - 1 - s.pad_w, s.kernel_h, s.kernel_w, kernels.lanes);
    std::vector<int64_t>& offsets_dx = detail::shared_scratch<int64_t>(1, dx_taps);
    tap_offsets(offsets_dx.data(), plan.gd, s.kernel_h, s.kernel_w);
    plan.dx_offsets = offsets_dx.data();
  }
  float* partials = shared.data();
  detail::for_each_run_on(blocks, threads(), [&](int first, int last) {
    conv2d_backward_direct_blocks(plan, first, last, blocks, dx, dw ? partials : nullptr,
                                  partial_size, dw && db, x, w, dy, s);
  });
  if (dw) {
    add_partials_in_block_order(dw, db, partials, blocks, dw_size, partial_size, s.out_channels);
  }
}

}  // namespace

namespace {

/// conv2d_forward's methods that can apply a ReLU to their output as they write it: Winograd
/// F(4x4), the implicit GEMM and Winograd F(2x2), in conv2d_forward's order. Runs the one that
/// takes s (applying the epilogue to each block of output as it writes it) and returns true,
/// or returns false.
bool forward_by_transform_methods(float* y, const float* x, const float* w, const float* b,
                                  const ConvShape& s, const float* w_scale,
                                  detail::ConvEpilogue epilogue) {
  if (conv_forward_uses_winograd4x4(s)) {
    detail::winograd4x4_conv3x3(y, x, w, w_scale, b, s.batch, s.in_channels, s.in_h, s.in_w,
                                s.out_channels, s.pad_h, s.pad_w, epilogue);
    return true;
  }
  if (conv_forward_uses_implicit(s)) {
    detail::implicit_conv_forward(y, x, w, w_scale, b, s, epilogue);
    return true;
  }
  if (conv_forward_uses_winograd(s)) {
    detail::winograd_conv3x3(y, x, w, w_scale, b, s.batch, s.in_channels, s.in_h, s.in_w,
                             s.out_channels, s.pad_h, s.pad_w, epilogue);
    return true;
  }
  return false;
}

}  // namespace

bool conv2d_forward_moments(float* y, const float* x, const float* w, const float* b,
                            const ConvShape& s, double* totals) {
  if (reference_mode()) return false;
  detail::ConvEpilogue epilogue;
  epilogue.moments = totals;
  epilogue.plane = s.out_h * s.out_w;
  if (forward_by_transform_methods(y, x, w, b, s, nullptr, epilogue)) return true;
  if (!conv_forward_uses_direct(s)) return false;
  conv2d_forward_direct(y, x, w, b, s, nullptr, false, totals);
  return true;
}

template <typename T>
void conv2d_forward(T* y, const T* x, const T* w, const T* b, const ConvShape& s,
                    const T* w_scale) {
  if (w_scale && (reference_mode() || !std::is_same_v<T, float>)) {
    // The paths without a scaled packing: scale a copy (grow-only, per thread).
    thread_local std::vector<T> scaled;
    const int64_t per_channel = s.in_channels * s.kernel_h * s.kernel_w;
    if (scaled.size() < static_cast<size_t>(s.out_channels * per_channel))
      scaled.resize(static_cast<size_t>(s.out_channels * per_channel));
    detail::scale_rows(scaled.data(), w, w_scale, s.out_channels, per_channel);
    return conv2d_forward(y, x, scaled.data(), b, s, static_cast<const T*>(nullptr));
  }
  if (reference_mode()) return ref::conv2d_forward(y, x, w, b, s);
  if constexpr (std::is_same_v<T, float>) {
    if (forward_by_transform_methods(y, x, w, b, s, w_scale, {})) return;
    if (conv_forward_uses_direct(s)) return conv2d_forward_direct(y, x, w, b, s, w_scale);
  }
  const int64_t patch = s.in_channels * s.kernel_h * s.kernel_w;
  const int64_t out_size = s.out_h * s.out_w;
  const int64_t in_size = s.in_channels * s.in_h * s.in_w;
  const bool pointwise = is_pointwise(s);
  // float: the weights are packed for the GEMM kernel once per call, not once per image.
  const float* packed_w = nullptr;
  if constexpr (std::is_same_v<T, float>) {
    std::vector<float>& buffer = detail::shared_scratch<float>(0, 0);
    detail::sgemm_pack_a(s.out_channels, patch, w, patch, 1, buffer, w_scale);
    packed_w = buffer.data();
  }
  // Images are independent: each thread takes a contiguous block of them, with its own
  // scratch, so the result does not depend on the thread count.
  const int team = static_cast<int>(std::min<int64_t>(threads(), s.batch));
  detail::for_each_range(team, s.batch, [&](int64_t first, int64_t last) {
    const int64_t group = pointwise ? 1 : images_per_group(s, last - first);
    const int64_t ld = group * out_size;  // the group's columns, image after image
    T* col = pointwise ? nullptr : detail::scratch<T>(0, patch * ld);
    T* product = group > 1 ? detail::scratch<T>(1, s.out_channels * ld) : nullptr;
    for (int64_t n0 = first; n0 < last; n0 += group) {
      const int64_t count = std::min(group, last - n0);
      const int64_t columns = count * out_size;
      for (int64_t g = 0; g < count && !pointwise; ++g)
        im2col(col + g * out_size, x + (n0 + g) * in_size, s, ld);
      // One image writes y directly; a group writes its product (out_channels, columns), and
      // each image's planes are copied out of it.
      T* c = group > 1 ? product : y + n0 * s.out_channels * out_size;
      const int64_t ldc = group > 1 ? ld : out_size;
      if (b) {
        for (int64_t o = 0; o < s.out_channels; ++o)
          std::fill(c + o * ldc, c + o * ldc + columns, b[o]);
      }
      const T* in = pointwise ? x + n0 * in_size : col;
      if constexpr (std::is_same_v<T, float>) {
        detail::sgemm_nn_prepacked(s.out_channels, columns, patch, packed_w, in, ld, c, ldc,
                                   b != nullptr);
      } else {
        detail::gemm_nn(s.out_channels, columns, patch, w, patch, in, ld, c, ldc, b != nullptr);
      }
      if (group > 1) {
        for (int64_t g = 0; g < count; ++g)
          for (int64_t o = 0; o < s.out_channels; ++o)
            std::copy_n(product + o * ld + g * out_size, out_size,
                        y + ((n0 + g) * s.out_channels + o) * out_size);
      }
    }
  });
}

bool conv2d_relu_maxpool2x2_fusable(const ConvShape& s) {
  return !reference_mode() && conv_forward_uses_direct(s);
}

void conv2d_relu_maxpool2x2_forward(float* y, const float* x, const float* w, const float* b,
                                    const ConvShape& s, const float* w_scale) {
  if (!conv2d_relu_maxpool2x2_fusable(s))
    throw std::logic_error("conv2d_relu_maxpool2x2_forward: not a direct-forward convolution");
  conv2d_forward_direct(y, x, w, b, s, w_scale, true);
}

bool conv2d_relu_fusable(const ConvShape& s) {
  return !reference_mode() && (conv_forward_uses_winograd4x4(s) || conv_forward_uses_implicit(s) ||
                               conv_forward_uses_winograd(s));
}

void conv2d_relu_forward(float* y, const float* x, const float* w, const float* b,
                         const ConvShape& s, const float* w_scale, const float* addend) {
  if (!conv2d_relu_fusable(s) ||
      !forward_by_transform_methods(y, x, w, b, s, w_scale, {.relu = true, .addend = addend}))
    throw std::logic_error("conv2d_relu_forward: not a Winograd or implicit-GEMM convolution");
}

namespace {
/// A pair step as the pair kernels take it: an F(4x4) convolution, or one the implicit GEMM runs.
detail::LaneConv lane_conv(const ConvPairStep& step) {
  return {
      step.w,           step.w_scale,    step.b, step.shape.in_channels, step.shape.out_channels,
      step.shape.pad_h, step.shape.pad_w};
}
detail::ImplicitConv implicit_conv(const ConvPairStep& step) {
  return {step.w, step.w_scale, step.b, step.shape};
}
}  // namespace

bool conv2d_relu_pair_fusable(const ConvShape& first, const ConvShape& second) {
  return !reference_mode() &&
         (conv_forward_uses_winograd4x4(first) || conv_forward_uses_implicit(first)) &&
         conv_forward_uses_winograd4x4(second) && second.batch == first.batch &&
         second.in_channels == first.out_channels && second.in_h == first.out_h &&
         second.in_w == first.out_w;
}

void conv2d_relu_pair_forward(float* y, const float* x, const ConvPairStep& first,
                              const ConvPairStep& second, const float* addend) {
  if (!conv2d_relu_pair_fusable(first.shape, second.shape))
    throw std::logic_error(
        "conv2d_relu_pair_forward: not an F(4x4) or implicit-GEMM convolution, then an F(4x4) "
        "one");
  const detail::ConvEpilogue epilogue{.relu = true, .addend = addend};
  if (conv_forward_uses_implicit(first.shape)) {
    detail::implicit_winograd4x4_pair(y, x, implicit_conv(first), lane_conv(second), epilogue);
    return;
  }
  detail::winograd4x4_conv3x3_pair(y, x, lane_conv(first), lane_conv(second), first.shape.batch,
                                   first.shape.in_h, first.shape.in_w, epilogue);
}

bool conv2d_relu_pair_shortcut_fusable(const ConvShape& first, const ConvShape& second,
                                       const ConvShape& shortcut) {
  return conv2d_relu_pair_fusable(first, second) && conv_forward_uses_implicit(first) &&
         conv_forward_uses_implicit(shortcut) && shortcut.batch == first.batch &&
         shortcut.in_channels == first.in_channels && shortcut.in_h == first.in_h &&
         shortcut.in_w == first.in_w && shortcut.out_channels == second.out_channels &&
         shortcut.out_h == second.out_h && shortcut.out_w == second.out_w;
}

void conv2d_relu_pair_shortcut_forward(float* y, const float* x, const ConvPairStep& first,
                                       const ConvPairStep& second, const ConvPairStep& shortcut) {
  if (!conv2d_relu_pair_shortcut_fusable(first.shape, second.shape, shortcut.shape))
    throw std::logic_error(
        "conv2d_relu_pair_shortcut_forward: not an implicit-GEMM convolution, then an F(4x4) one, "
        "beside an implicit-GEMM shortcut of the second's output shape");
  const detail::ImplicitConv shortcut_conv = implicit_conv(shortcut);
  detail::implicit_winograd4x4_pair(y, x, implicit_conv(first), lane_conv(second), {.relu = true},
                                    &shortcut_conv);
}

namespace {

/// The sum of v[0, n) in 16 interleaved partial sums, which the compiler keeps in vector
/// registers (a single running sum would wait on each addition's latency).
template <typename T>
T sum_of(const T* v, int64_t n) {
  constexpr int64_t kWays = 16;
  T partial[kWays] = {};
  int64_t i = 0;
  for (; i + kWays <= n; i += kWays)
    for (int64_t k = 0; k < kWays; ++k) partial[k] += v[i + k];
  for (; i < n; ++i) partial[0] += v[i];
  T sum = 0;
  for (const T p : partial) sum += p;
  return sum;
}

/// db (channels) += the sum of each channel plane of one image's dy (channels, plane).
template <typename T>
void add_bias_gradient(T* db, const T* dy_image, int64_t channels, int64_t plane) {
  for (int64_t o = 0; o < channels; ++o) db[o] += sum_of(dy_image + o * plane, plane);
}

/// Backward for images [first, last): dx assigned per image (skipped when null); dw and db
/// accumulated in image order into the given buffers (skipped when null: dx alone, x unread).
template <typename T>
void conv2d_backward_images(int64_t first, int64_t last, T* dx, T* dw, T* db, const T* x,
                            const T* w, const T* dy, const ConvShape& s) {
  const int64_t patch = s.in_channels * s.kernel_h * s.kernel_w;
  const int64_t out_size = s.out_h * s.out_w;
  const int64_t in_size = s.in_channels * s.in_h * s.in_w;
  const bool pointwise = is_pointwise(s);
  // Images in groups, as the forward: dW += dy_group col_group^T sums over the group's columns,
  // dcol_group = W^T dy_group; dy's planes are gathered side by side first.
  const int64_t group = pointwise ? 1 : images_per_group(s, last - first);
  const int64_t ld = group * out_size;
  T* col = pointwise || !dw ? nullptr : detail::scratch<T>(0, patch * ld);
  T* dcol = pointwise ? nullptr : detail::scratch<T>(1, patch * ld);
  T* gathered = group > 1 ? detail::scratch<T>(4, s.out_channels * ld) : nullptr;
  for (int64_t n0 = first; n0 < last; n0 += group) {
    const int64_t count = std::min(group, last - n0);
    const int64_t columns = count * out_size;
    for (int64_t g = 0; g < count; ++g) {
      const T* dyn = dy + (n0 + g) * s.out_channels * out_size;
      if (db) add_bias_gradient(db, dyn, s.out_channels, out_size);
      if (col) im2col(col + g * out_size, x + (n0 + g) * in_size, s, ld);
      if (group > 1) {
        for (int64_t o = 0; o < s.out_channels; ++o)
          std::copy_n(dyn + o * out_size, out_size, gathered + o * ld + g * out_size);
      }
    }
    const T* upstream = group > 1 ? gathered : dy + n0 * s.out_channels * out_size;
    const int64_t ldu = group > 1 ? ld : out_size;
    if (dw) {
      detail::gemm_nt(s.out_channels, patch, columns, upstream, ldu,
                      pointwise ? x + n0 * in_size : col, ld, dw, patch, true);
    }
    if (!dx) continue;
    if (pointwise) {
      detail::gemm_tn(patch, out_size, s.out_channels, w, patch, upstream, ldu, dx + n0 * in_size,
                      out_size, false);
      continue;
    }
    detail::gemm_tn(patch, columns, s.out_channels, w, patch, upstream, ldu, dcol, ld, false);
    for (int64_t g = 0; g < count; ++g) col2im(dx + (n0 + g) * in_size, dcol + g * out_size, s, ld);
  }
}

/// The output gradient of a convolution of shape s, image by image: the tensor dy (N, OC, OH,
/// OW), or images made by `source` when it is not null.
DyImages dy_images(const ConvShape& s, const float* dy,
                   const ops::ImageGradientSource* source = nullptr) {
  return {dy, source, s.out_channels * s.out_h * s.out_w};
}

/// dx (N, C, H, W) assigned by im2col + GEMM's col2im alone, the images split in blocks over the
/// threads (each image's dx is written by one block: the same bits whatever the split).
void conv2d_input_grad_by_gemm(float* dx, const float* w, const float* dy, const ConvShape& s) {
  const int blocks = detail::gradient_blocks(s.batch, threads());
  detail::for_each_part_on(blocks, threads(), [&](int block) {
    const detail::ImageRange range = detail::images_of_part(s.batch, block, blocks);
    conv2d_backward_images<float>(range.first, range.last, dx, nullptr, nullptr, nullptr, w, dy, s);
  });
}

}  // namespace

bool conv2d_weight_backward_by_image_takes(const ConvShape& s) {
  return !reference_mode() && std::strcmp(conv2d_weight_grad_method(s), "direct") == 0;
}

void conv2d_weight_backward_by_image(float* dw, float* db, const float* x,
                                     const ImageGradientSource& dy, const ConvShape& s) {
  if (!conv2d_weight_backward_by_image_takes(s)) {
    throw std::logic_error(
        "conv2d_weight_backward_by_image: a shape whose weight gradient is not the direct "
        "kernels'");
  }
  // conv2d_backward's direct call without dx: the same blocks, staging and sums.
  conv2d_backward_direct(nullptr, dw, db, x, nullptr, dy_images(s, nullptr, &dy), s);
}

template <typename T>
void conv2d_backward(T* dx, T* dw, T* db, const T* x, const T* w, const T* dy, const ConvShape& s) {
  if (reference_mode()) return ref::conv2d_backward(dx, dw, db, x, w, dy, s);
  if constexpr (std::is_same_v<T, float>) {
    const bool implicit = conv_backward_uses_implicit(s);
    const bool implicit_weights = conv_weight_grad_leaves_direct(s);  // never with `implicit`
    const bool winograd4x4 = conv_uses_winograd4x4(s);                // never with the two above
    const bool strided_implicit_weights = conv_weight_grad_leaves_gemm(s);  // nor with those
    if (implicit || implicit_weights || winograd4x4 || strided_implicit_weights ||
        conv_backward_uses_winograd(s)) {
      if (winograd4x4) {
        detail::winograd4x4_backward3x3(dx, dw, x, w, dy, s.batch, s.in_channels, s.in_h, s.in_w,
                                        s.out_channels, s.pad_h, s.pad_w);
      } else if (implicit) {
        detail::implicit_conv_backward(dx, dw, x, w, dy, s);
      } else if (implicit_weights) {
        detail::implicit_conv_backward(nullptr, dw, x, w, dy, s);
        if (dx) conv2d_backward_direct(dx, nullptr, nullptr, x, w, dy_images(s, dy), s);
      } else if (strided_implicit_weights) {
        detail::implicit_conv_backward(nullptr, dw, x, w, dy, s);
        if (dx) conv2d_input_grad_by_gemm(dx, w, dy, s);
      } else {
        // dx is the seed's full convolution of dy with the rotated kernel, computed as the
        // exact backward of the Winograd form (winograd.hpp).
        detail::winograd_backward3x3(dx, dw, x, w, dy, s.batch, s.in_channels, s.in_h, s.in_w,
                                     s.out_channels, s.pad_h, s.pad_w);
      }
      // None computes the bias gradient: the sum of dy, image by image.
      if (db) {
        const int64_t plane = s.out_h * s.out_w;
        for (int64_t n = 0; n < s.batch; ++n)
          add_bias_gradient(db, dy + n * s.out_channels * plane, s.out_channels, plane);
      }
      return;
    }
    if (conv_backward_uses_direct(s)) {
      return conv2d_backward_direct(dx, dw, db, x, w, dy_images(s, dy), s);
    }
  }
  const int blocks = detail::gradient_blocks(s.batch, threads());
  if (blocks <= 1) return conv2d_backward_images(int64_t{0}, s.batch, dx, dw, db, x, w, dy, s);
  // Each block of images (gradient_blocks: max(2, threads)) sums its parameter gradients into
  // its own partial buffer; the partials are then added in block order, so that 1 and 2
  // threads give the same bits, as does a fixed thread count whatever team OpenMP grants.
  const int64_t dw_size = s.out_channels * s.in_channels * s.kernel_h * s.kernel_w;
  const int64_t partial_size = dw_size + s.out_channels;
  std::vector<T>& partials = detail::shared_scratch<T>(0, blocks * partial_size);
  detail::for_each_part_on(blocks, threads(), [&](int block) {
    const detail::ImageRange range = detail::images_of_part(s.batch, block, blocks);
    T* partial = partials.data() + block * partial_size;
    std::fill(partial, partial + partial_size, T(0));
    conv2d_backward_images(range.first, range.last, dx, partial, db ? partial + dw_size : nullptr,
                           x, w, dy, s);
  });
  add_partials_in_block_order(dw, db, partials.data(), blocks, dw_size, partial_size,
                              s.out_channels);
}

template void conv2d_forward<float>(float*, const float*, const float*, const float*,
                                    const ConvShape&, const float*);
template void conv2d_forward<double>(double*, const double*, const double*, const double*,
                                     const ConvShape&, const double*);
template void conv2d_backward<float>(float*, float*, float*, const float*, const float*,
                                     const float*, const ConvShape&);
template void conv2d_backward<double>(double*, double*, double*, const double*, const double*,
                                      const double*, const ConvShape&);

}  // namespace cnn::ops

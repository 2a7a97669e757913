// Default max-pooling path: 2x2 windows at stride 2 have their own loop; other float windows
// run the plane kernels of maxpool_lanes.hpp (a group of planes across the vector lanes; a
// group of few planes, plane by plane, its row kernel: windows of a row across the lanes); double
// (and float planes of over 2^20 elements) a loop that clips each window to the input once per
// output row and column instead of testing every tap. Average pooling: the window kernels of
// avgpool_lanes.hpp for 2x2 and 3x3 windows at stride 1 or 2, the reference's loops otherwise.

#include <emmintrin.h>

#include <algorithm>
#include <cmath>
#include <optional>
#include <type_traits>
#include <vector>

#include "avgpool_lanes.hpp"
#include "cnn/ops.hpp"
#include "cnn/ops_ref.hpp"
#include "isa_tables.hpp"
#include "maxpool_lanes.hpp"
#include "parallel.hpp"
#include "pool_plane.hpp"
#include "scratch.hpp"

namespace cnn::ops {

namespace {

/// The window update shared by both loops: a larger value, or a first NaN, takes over; ties
/// keep the earlier element (row-major order), as in PyTorch.
template <typename T>
inline void consider(T value, int64_t index, T& best, int64_t& best_index) {
  // Selects instead of branches: with random data a branch here mispredicts half the time.
  // (value != value) is isnan(value) without a call.
  const bool take = (value > best) | ((value != value) & (best == best));  // no short circuit
  best = take ? value : best;
  best_index = take ? index : best_index;
}

/// The ReLU of ops::relu_forward, bit for bit: x < 0 gives +0, anything else (-0, NaN) itself.
template <typename T>
inline T relu_of(T v) {
  return v < T(0) ? T(0) : v;
}

/// A row of out_w >= 8 windows of 2x2 / stride 2 pooling, 8 windows a vector with AVX2 (this
/// function is compiled for AVX2 whatever the build's flags, and called only when isa() says
/// the CPU has it): the rule and the argmax of the SSE2 loop below, twice as wide. `top` is
/// the index of the row's first element within its plane; the last windows are done by one
/// more group that ends the row (overlapping the one before with the same values).
template <bool kRelu, bool kArgmax>
__attribute__((target("avx2"))) void maxpool_2x2_row_avx2(float* y, int32_t* argmax,
                                                          const float* row0, int64_t in_w,
                                                          int32_t top, int64_t out_w) {
  typedef float v8 __attribute__((vector_size(32)));
  typedef int32_t v8i __attribute__((vector_size(32)));
  const v8i window_steps = {0, 2, 4, 6, 8, 10, 12, 14};
  const int32_t tap_ids[4] = {0, 1, static_cast<int32_t>(in_w), static_cast<int32_t>(in_w) + 1};
  for (int64_t ow = 0; ow < out_w; ow += 8) {
    const int64_t first = ow + 8 <= out_w ? ow : out_w - 8;
    const float* r0 = row0 + 2 * first;
    v8 r0a, r0b, r1a, r1b;
    __builtin_memcpy(&r0a, r0, sizeof r0a);
    __builtin_memcpy(&r0b, r0 + 8, sizeof r0b);
    __builtin_memcpy(&r1a, r0 + in_w, sizeof r1a);
    __builtin_memcpy(&r1b, r0 + in_w + 8, sizeof r1b);
    v8 taps[4] = {__builtin_shufflevector(r0a, r0b, 0, 2, 4, 6, 8, 10, 12, 14),
                  __builtin_shufflevector(r0a, r0b, 1, 3, 5, 7, 9, 11, 13, 15),
                  __builtin_shufflevector(r1a, r1b, 0, 2, 4, 6, 8, 10, 12, 14),
                  __builtin_shufflevector(r1a, r1b, 1, 3, 5, 7, 9, 11, 13, 15)};
    if constexpr (kRelu) {
      for (v8& v : taps) v = v < 0.0f ? v8{} : v;  // relu_of: below zero becomes +0
    }
    v8 best = taps[0];
    v8i tap = {};
    for (int t = 1; t < 4; ++t) {
      const v8 v = taps[t];
      const v8i take = (v > best) | ((v != v) & (best == best));
      best = take ? v : best;
      tap = take ? v8i{} + tap_ids[t] : tap;
    }
    __builtin_memcpy(y + first, &best, sizeof best);
    if constexpr (kArgmax) {
      const v8i index = (top + 2 * static_cast<int32_t>(first)) + window_steps + tap;
      __builtin_memcpy(argmax + first, &index, sizeof index);
    }
  }
}

/// One plane of 2x2 windows at stride 2 without padding, the pooling of most CNNs: y (out_h,
/// out_w) from the first 2 out_h rows of xp, rows `in_w` floats apart (argmax: a window's chosen
/// element as row * in_w + column). float runs 4 windows at a time with SSE2 (part of every
/// x86-64), 8 with AVX2 when `wide`, comparing the four taps in row-major order with the same
/// rule as consider(); double uses consider(). With kRelu every tap is first replaced by its
/// ReLU: the pooling of a ReLU's output, without that output. Without kArgmax (ap null) only y
/// is written: the same choices, none of the index arithmetic or stores.
template <typename T, bool kRelu, bool kArgmax>
void maxpool_2x2_plane(T* yp, int32_t* ap, const T* xp, int64_t in_w, int64_t out_h, int64_t out_w,
                       bool wide) {
  for (int64_t oh = 0; oh < out_h; ++oh) {
    const int64_t top = 2 * oh * in_w;
    int64_t ow = 0;
    if constexpr (std::is_same_v<T, float>) {
      // Each tap's offset from its window's top-left element: the argmax is then that
      // element's index plus the chosen offset, computed for the four windows at once.
      const int32_t row = static_cast<int32_t>(in_w);
      const __m128i tap_ids[4] = {_mm_setzero_si128(), _mm_set1_epi32(1), _mm_set1_epi32(row),
                                  _mm_set1_epi32(row + 1)};
      const __m128i window_steps = _mm_setr_epi32(0, 2, 4, 6);
      // The window rule on 4 windows at once (lanes), without branches: a branch on random
      // data mispredicts half the time (the scalar loop below took ~14 ns a window).
      auto best_of_taps = [&](__m128(&taps)[4], __m128& best, __m128i& tap) {
        if constexpr (kRelu) {  // relu_of, 4 lanes: lanes below zero become +0
          for (__m128& v : taps) v = _mm_andnot_ps(_mm_cmplt_ps(v, _mm_setzero_ps()), v);
        }
        best = taps[0];
        tap = tap_ids[0];
        for (int t = 1; t < 4; ++t) {
          const __m128 v = taps[t];
          const __m128 take = _mm_or_ps(
              _mm_cmpgt_ps(v, best), _mm_and_ps(_mm_cmpunord_ps(v, v), _mm_cmpord_ps(best, best)));
          best = _mm_or_ps(_mm_and_ps(take, v), _mm_andnot_ps(take, best));
          const __m128i take_i = _mm_castps_si128(take);
          tap = _mm_or_si128(_mm_and_si128(take_i, tap_ids[t]), _mm_andnot_si128(take_i, tap));
        }
      };
      auto four_windows = [&](int64_t first) {
        const float* r0 = xp + top + 2 * first;
        const float* r1 = r0 + in_w;
        const __m128 r0a = _mm_loadu_ps(r0), r0b = _mm_loadu_ps(r0 + 4);
        const __m128 r1a = _mm_loadu_ps(r1), r1b = _mm_loadu_ps(r1 + 4);
        __m128 taps[4] = {_mm_shuffle_ps(r0a, r0b, _MM_SHUFFLE(2, 0, 2, 0)),   // (0, 0)
                          _mm_shuffle_ps(r0a, r0b, _MM_SHUFFLE(3, 1, 3, 1)),   // (0, 1)
                          _mm_shuffle_ps(r1a, r1b, _MM_SHUFFLE(2, 0, 2, 0)),   // (1, 0)
                          _mm_shuffle_ps(r1a, r1b, _MM_SHUFFLE(3, 1, 3, 1))};  // (1, 1)
        __m128 best;
        __m128i tap;
        best_of_taps(taps, best, tap);
        _mm_storeu_ps(yp + oh * out_w + first, best);
        if constexpr (kArgmax) {
          const __m128i corner =
              _mm_add_epi32(_mm_set1_epi32(static_cast<int32_t>(top + 2 * first)), window_steps);
          _mm_storeu_si128(reinterpret_cast<__m128i*>(ap + oh * out_w + first),
                           _mm_add_epi32(corner, tap));
        }
      };
      // Rows of fewer than 4 windows: one window in lane 0.
      auto one_window = [&](int64_t ow1) {
        const float* r0 = xp + top + 2 * ow1;
        __m128 taps[4] = {_mm_set_ss(r0[0]), _mm_set_ss(r0[1]), _mm_set_ss(r0[in_w]),
                          _mm_set_ss(r0[in_w + 1])};
        __m128 best;
        __m128i tap;
        best_of_taps(taps, best, tap);
        yp[oh * out_w + ow1] = _mm_cvtss_f32(best);
        if constexpr (kArgmax)
          ap[oh * out_w + ow1] = static_cast<int32_t>(top + 2 * ow1) + _mm_cvtsi128_si32(tap);
      };
      if (wide && out_w >= 8) {
        maxpool_2x2_row_avx2<kRelu, kArgmax>(yp + oh * out_w, kArgmax ? ap + oh * out_w : nullptr,
                                             xp + top, in_w, static_cast<int32_t>(top), out_w);
        ow = out_w;
      }
      for (; ow + 4 <= out_w; ow += 4) four_windows(ow);
      // The last 1 to 3 windows of a row: the four windows that end the row again, which
      // rewrites some with the same values (the scalar loop was ~10x slower per window).
      if (ow < out_w && out_w >= 4) {
        four_windows(out_w - 4);
        ow = out_w;
      }
      for (; ow < out_w; ++ow) one_window(ow);
    }
    for (; ow < out_w; ++ow) {
      const int64_t i = top + 2 * ow;
      const auto tap = [&](int64_t at) { return kRelu ? relu_of(xp[at]) : xp[at]; };
      T best = tap(i);
      int64_t best_index = i;
      consider(tap(i + 1), i + 1, best, best_index);
      consider(tap(i + in_w), i + in_w, best, best_index);
      consider(tap(i + in_w + 1), i + in_w + 1, best, best_index);
      yp[oh * out_w + ow] = best;
      if constexpr (kArgmax) ap[oh * out_w + ow] = static_cast<int32_t>(best_index);
    }
  }
}

/// 2x2 windows at stride 2 without padding over every plane (maxpool_2x2_plane), the planes
/// split over the threads.
template <typename T, bool kRelu, bool kArgmax>
void maxpool_2x2_stride2(T* y, int32_t* argmax, const T* x, const PoolShape& s) {
  const int64_t planes = s.batch * s.channels;
  // Planes are independent: split over the threads, the result does not depend on how.
  const int team = planes * s.out_h * s.out_w > 16384
                       ? static_cast<int>(std::min<int64_t>(threads(), planes))
                       : 1;
  const bool wide = isa_has_avx2();
  detail::for_each_range(team, planes, [&](int64_t first_plane, int64_t last_plane) {
    for (int64_t plane = first_plane; plane < last_plane; ++plane) {
      maxpool_2x2_plane<T, kRelu, kArgmax>(
          y + plane * s.out_h * s.out_w, kArgmax ? argmax + plane * s.out_h * s.out_w : nullptr,
          x + plane * s.in_h * s.in_w, s.in_w, s.out_h, s.out_w, wide);
    }
  });
}

/// Float planes of at most this many elements go through the plane kernels (maxpool_lanes.hpp),
/// whose scratch (slot 0) holds a group's planes interleaved (lanes x this many floats a thread:
/// 32 MiB with AVX2's 8); larger ones take the generic loop.
constexpr int64_t kMaxLanesPlane = int64_t{1} << 20;

/// Any window, stride and padding. Float (but for planes over kMaxLanesPlane) runs the plane
/// kernels of maxpool_lanes.hpp, a group of planes across the vector lanes; double runs the
/// generic loop, each window clipped to the input once per output row and column. Planes (or
/// groups of planes) are split over the threads; the result does not depend on how. kRelu as
/// in maxpool_2x2_stride2; argmax may be null.
template <typename T, bool kRelu>
void maxpool_windows(T* y, int32_t* argmax, const T* x, const PoolShape& s) {
  if (s.kernel_h == 2 && s.kernel_w == 2 && s.stride_h == 2 && s.stride_w == 2 && s.pad_h == 0 &&
      s.pad_w == 0) {
    if (!argmax) return maxpool_2x2_stride2<T, kRelu, false>(y, nullptr, x, s);
    return maxpool_2x2_stride2<T, kRelu, true>(y, argmax, x, s);
  }
  const int64_t planes = s.batch * s.channels;
  const int64_t in_size = s.in_h * s.in_w, out_size = s.out_h * s.out_w;
  const bool large = planes * out_size * s.kernel_h * s.kernel_w > 65536;
  if constexpr (std::is_same_v<T, float>) {
    if (in_size <= kMaxLanesPlane) {
      const detail::MaxPoolKernels& kernels = detail::maxpool_kernels();
      const int64_t lanes = kernels.lanes, groups = (planes + lanes - 1) / lanes;
      const detail::MaxPoolPlane g{s.in_h,     s.in_w,     s.out_h,    s.out_w, s.kernel_h,
                                   s.kernel_w, s.stride_h, s.stride_w, s.pad_h, s.pad_w};
      // Groups of few planes (alone, or the last of a batch) run the row kernel plane by plane:
      // the lane kernel costs a group as much whatever its count (one 28 x 28 plane, 3x3 / 1
      // padding 1: 10.0 us against 1.8 by rows, AVX2). One plane always (faster in every shape
      // measured, both instruction sets); up to row_planes - 1 where a row's windows inside
      // the input fill a vector (else rows are scalar, and 2 planes of 7 x 7 lost: 0.88 against
      // 0.77 us). Figures in docs/design-notes.md.
      const int64_t row_lo = (s.pad_w + s.stride_w - 1) / s.stride_w;
      const int64_t row_hi =
          s.kernel_w <= s.in_w + s.pad_w
              ? std::min(s.out_w, (s.in_w + s.pad_w - s.kernel_w) / s.stride_w + 1)
              : 0;
      const int64_t row_count =
          s.kernel_w > detail::kMaxRowKernel || s.stride_w > detail::kMaxRowStride ? 0
          : row_hi - row_lo >= lanes ? kernels.row_planes
                                     : 2;
      const int team = large ? static_cast<int>(std::min<int64_t>(threads(), groups)) : 1;
      detail::for_each_range(team, groups, [&](int64_t first_group, int64_t last_group) {
        float* x_lanes = detail::scratch<float>(0, in_size * lanes);
        for (int64_t group = first_group; group < last_group; ++group) {
          const int64_t first = group * lanes, count = std::min(lanes, planes - first);
          if (count < row_count) {
            for (int64_t plane = first; plane < first + count; ++plane)
              kernels.rows(y + plane * out_size, argmax ? argmax + plane * out_size : nullptr,
                           x + plane * in_size, g, kRelu, x_lanes);
            continue;
          }
          kernels.planes(y + first * out_size, argmax ? argmax + first * out_size : nullptr,
                         x + first * in_size, count, g, kRelu, x_lanes);
        }
      });
      return;
    }
  }
  const int team = large ? static_cast<int>(std::min<int64_t>(threads(), planes)) : 1;
  detail::for_each_range(team, planes, [&](int64_t first_plane, int64_t last_plane) {
    for (int64_t plane = first_plane; plane < last_plane; ++plane) {
      const T* xp = x + plane * in_size;
      T* yp = y + plane * out_size;
      int32_t* ap = argmax ? argmax + plane * out_size : nullptr;
      const auto tap = [&](int64_t at) { return kRelu ? relu_of(xp[at]) : xp[at]; };
      for (int64_t oh = 0; oh < s.out_h; ++oh) {
        const int64_t h0 = std::max<int64_t>(oh * s.stride_h - s.pad_h, 0);
        const int64_t h1 = std::min<int64_t>(oh * s.stride_h - s.pad_h + s.kernel_h, s.in_h);
        for (int64_t ow = 0; ow < s.out_w; ++ow) {
          const int64_t w0 = std::max<int64_t>(ow * s.stride_w - s.pad_w, 0);
          const int64_t w1 = std::min<int64_t>(ow * s.stride_w - s.pad_w + s.kernel_w, s.in_w);
          int64_t best_index = h0 * s.in_w + w0;
          T best = tap(best_index);
          for (int64_t h = h0; h < h1; ++h)
            for (int64_t w = w0; w < w1; ++w)
              consider(tap(h * s.in_w + w), h * s.in_w + w, best, best_index);
          yp[oh * s.out_w + ow] = best;
          if (ap) ap[oh * s.out_w + ow] = static_cast<int32_t>(best_index);
        }
      }
    }
  });
}

/// The reference's scatter on one plane: dxp (in_size) zeroed, then each window's gradient
/// (dyp, out_size) added at its argmax (ap). With kRelu, each routed gradient is kept only
/// where x (xp, the plane's) is not negative: ops::relu_backward applied to the scattered sum,
/// since the mask depends on the position alone.
template <typename T, bool kRelu>
void scatter_plane(T* dxp, const T* dyp, const T* xp, const int32_t* ap, int64_t in_size,
                   int64_t out_size) {
  std::fill(dxp, dxp + in_size, T(0));
  for (int64_t o = 0; o < out_size; ++o) {
    if constexpr (kRelu) {
      dxp[ap[o]] += xp[ap[o]] < T(0) ? T(0) : dyp[o];
    } else {
      dxp[ap[o]] += dyp[o];
    }
  }
}

/// scatter_plane on kScatterPlanes consecutive planes at once, window o of each in turn: each
/// plane's additions are its own, in its order, so the bits are scatter_plane's; but where
/// consecutive windows chose the same element (overlapping windows: often at stride 1), each
/// addition waits on the store before it, and the planes' chains now overlap.
constexpr int64_t kScatterPlanes = 4;
template <typename T, bool kRelu>
void scatter_planes(T* dx, const T* dy, const T* x, const int32_t* argmax, int64_t in_size,
                    int64_t out_size) {
  std::fill(dx, dx + kScatterPlanes * in_size, T(0));
  for (int64_t o = 0; o < out_size; ++o)
    for (int64_t p = 0; p < kScatterPlanes; ++p) {
      T* dxp = dx + p * in_size;
      const int32_t i = argmax[p * out_size + o];
      if constexpr (kRelu) {
        dxp[i] += x[p * in_size + i] < T(0) ? T(0) : dy[p * out_size + o];
      } else {
        dxp[i] += dy[p * out_size + o];
      }
    }
}

/// scatter_plane over every plane, the threads sharing the planes.
template <typename T, bool kRelu>
void maxpool_scatter(T* dx, const T* dy, const T* x, const int32_t* argmax, const PoolShape& s) {
  const int64_t planes = s.batch * s.channels, in_size = s.in_h * s.in_w;
  const int64_t out_size = s.out_h * s.out_w;
  const int team =
      planes * out_size > 16384 ? static_cast<int>(std::min<int64_t>(threads(), planes)) : 1;
  // Planes four at a time where consecutive windows overlap most (stride 1 along both axes;
  // 64 x 16 planes of 32 x 32, one thread, ms, the old library's process against the new's,
  // three rounds: 5x5 padding 2 1.19-1.37 -> 0.87-0.98, 2x2 0.74-0.82 -> 0.65-0.69, 3x3
  // padding 1 0.79-0.87 -> 0.73-0.78); at stride 2 the chains are rare and four planes cost
  // more (3x3 / 2 padding 1 0.30-0.31 -> 0.34-0.35).
  const bool interleave = s.stride_h == 1 && s.stride_w == 1;
  detail::for_each_range(team, planes, [&](int64_t first_plane, int64_t last_plane) {
    int64_t plane = first_plane;
    for (; interleave && plane + kScatterPlanes <= last_plane; plane += kScatterPlanes) {
      scatter_planes<T, kRelu>(dx + plane * in_size, dy + plane * out_size,
                               kRelu ? x + plane * in_size : nullptr, argmax + plane * out_size,
                               in_size, out_size);
    }
    for (; plane < last_plane; ++plane) {
      scatter_plane<T, kRelu>(dx + plane * in_size, dy + plane * out_size,
                              kRelu ? x + plane * in_size : nullptr, argmax + plane * out_size,
                              in_size, out_size);
    }
  });
}

/// The backward's windows [0, windows - windows % 4) of one row of 2x2 / stride 2 pooling, 4
/// windows (8 columns of the top and the bottom row) a vector with AVX2 (compiled for AVX2,
/// called only when isa() says the CPU has it); see maxpool_2x2_stride2_backward. x is null
/// without kRelu. Returns the number of windows done.
template <bool kRelu>
__attribute__((target("avx2"))) int64_t maxpool_2x2_backward_row_avx2(float* dx, const float* dy,
                                                                      const float* x,
                                                                      const int32_t* argmax,
                                                                      int64_t in_w, int32_t top,
                                                                      int64_t windows) {
  typedef float v8 __attribute__((vector_size(32)));
  typedef int32_t v8i __attribute__((vector_size(32)));
  typedef float v4 __attribute__((vector_size(16)));
  typedef int32_t v4i __attribute__((vector_size(16)));
  const v8i columns = {0, 1, 2, 3, 4, 5, 6, 7};
  int64_t ow = 0;
  for (; ow + 4 <= windows; ow += 4) {
    v4i a4;
    v4 g4;
    __builtin_memcpy(&a4, argmax + ow, sizeof a4);
    __builtin_memcpy(&g4, dy + ow, sizeof g4);
    const v8i args = __builtin_shufflevector(a4, a4, 0, 0, 1, 1, 2, 2, 3, 3);
    // 0 + dy, as the scatter's sum into zeros gives: -0 becomes +0.
    const v8 grads = __builtin_shufflevector(g4, g4, 0, 0, 1, 1, 2, 2, 3, 3) + 0.0f;
    for (int r = 0; r < 2; ++r) {
      const int64_t first = top + 2 * ow + r * in_w;
      v8i keep = args == (static_cast<int32_t>(first) + columns);
      if constexpr (kRelu) {
        v8 xv;
        __builtin_memcpy(&xv, x + first, sizeof xv);
        keep &= ~(xv < 0.0f);
      }
      const v8 out = keep ? grads : v8{};
      __builtin_memcpy(dx + first, &out, sizeof out);
    }
  }
  return ow;
}

/// The backward of one plane of 2x2 windows at stride 2 without padding (float): windows do
/// not overlap, so each element of dx is written once, dense, instead of zero-filled and
/// scattered into: 0 + dy where it is its window's argmax (and, with kRelu, x is not negative),
/// else 0. Lanes are the 4 columns of 2 windows, in the top and the bottom row of the windows.
/// dxp and xp (null without kRelu) are the plane's (in_h, in_w), dyp and ap its (out_h, out_w).
template <bool kRelu>
void maxpool_2x2_backward_plane(float* dxp, const float* dyp, const float* xp, const int32_t* ap,
                                const PoolShape& s, bool wide) {
  typedef float v4 __attribute__((vector_size(16)));
  typedef int32_t v4i __attribute__((vector_size(16)));
  const int64_t in_size = s.in_h * s.in_w;
  const auto routed = [&](int64_t at, int64_t o) {  // one element, in window o
    const bool keep = ap[o] == at && !(kRelu && xp[at] < 0.0f);
    return keep ? 0.0f + dyp[o] : 0.0f;
  };
  for (int64_t oh = 0; oh < s.out_h; ++oh) {
    const int64_t top = 2 * oh * s.in_w;
    const int32_t* row_arg = ap + oh * s.out_w;
    const float* row_dy = dyp + oh * s.out_w;
    int64_t ow = 0;
    if (wide) {
      ow = maxpool_2x2_backward_row_avx2<kRelu>(dxp, row_dy, xp, row_arg, s.in_w,
                                                static_cast<int32_t>(top), s.out_w);
    }
    for (; ow + 2 <= s.out_w; ow += 2) {
      const int64_t at = top + 2 * ow;
      const v4i a2 = {row_arg[ow], row_arg[ow + 1], 0, 0};
      const v4 g2 = {row_dy[ow], row_dy[ow + 1], 0.0f, 0.0f};
      const v4i args = __builtin_shufflevector(a2, a2, 0, 0, 1, 1);
      // 0 + dy, as the scatter's sum into zeros gives: -0 becomes +0.
      const v4 grads = __builtin_shufflevector(g2, g2, 0, 0, 1, 1) + 0.0f;
      const v4i columns = {0, 1, 2, 3};
      for (int r = 0; r < 2; ++r) {
        const int64_t first = at + r * s.in_w;
        v4i keep = args == (static_cast<int32_t>(first) + columns);
        if constexpr (kRelu) {
          v4 xv;
          __builtin_memcpy(&xv, xp + first, sizeof xv);
          keep &= ~(xv < 0.0f);
        }
        const v4 out = keep ? grads : v4{};
        __builtin_memcpy(dxp + first, &out, sizeof out);
      }
    }
    for (; ow < s.out_w; ++ow) {
      const int64_t at = top + 2 * ow;
      for (int64_t r = 0; r < 2; ++r) {
        dxp[at + r * s.in_w] = routed(at + r * s.in_w, oh * s.out_w + ow);
        dxp[at + r * s.in_w + 1] = routed(at + r * s.in_w + 1, oh * s.out_w + ow);
      }
    }
    // An odd width leaves a last column that no window reads.
    for (int64_t c = 2 * s.out_w; c < s.in_w; ++c) {
      dxp[top + c] = 0.0f;
      dxp[top + s.in_w + c] = 0.0f;
    }
  }
  // And an odd height a last row.
  std::fill(dxp + 2 * s.out_h * s.in_w, dxp + in_size, 0.0f);
}

/// maxpool_2x2_backward_plane over every plane, the planes split over the threads.
template <bool kRelu>
void maxpool_2x2_stride2_backward(float* dx, const float* dy, const float* x, const int32_t* argmax,
                                  const PoolShape& s) {
  const int64_t planes = s.batch * s.channels, in_size = s.in_h * s.in_w;
  const int64_t out_size = s.out_h * s.out_w;
  const int team =
      planes * out_size > 16384 ? static_cast<int>(std::min<int64_t>(threads(), planes)) : 1;
  const bool wide = isa_has_avx2();
  detail::for_each_range(team, planes, [&](int64_t first_plane, int64_t last_plane) {
    for (int64_t plane = first_plane; plane < last_plane; ++plane) {
      maxpool_2x2_backward_plane<kRelu>(dx + plane * in_size, dy + plane * out_size,
                                        kRelu ? x + plane * in_size : nullptr,
                                        argmax + plane * out_size, s, wide);
    }
  });
}

bool is_2x2_stride2(const PoolShape& s) {
  return s.kernel_h == 2 && s.kernel_w == 2 && s.stride_h == 2 && s.stride_w == 2 && s.pad_h == 0 &&
         s.pad_w == 0;
}

}  // namespace

template <typename T>
void maxpool2d_forward(T* y, int32_t* argmax, const T* x, const PoolShape& s) {
  if (reference_mode()) return ref::maxpool2d_forward(y, argmax, x, s);
  maxpool_windows<T, false>(y, argmax, x, s);
}

template <typename T>
void maxpool2d_backward(T* dx, const T* dy, const int32_t* argmax, const PoolShape& s) {
  if (reference_mode()) return ref::maxpool2d_backward(dx, dy, argmax, s);
  if constexpr (std::is_same_v<T, float>) {
    if (is_2x2_stride2(s)) return maxpool_2x2_stride2_backward<false>(dx, dy, nullptr, argmax, s);
  }
  maxpool_scatter<T, false>(dx, dy, nullptr, argmax, s);
}

template <typename T>
void relu_maxpool2d_forward(T* y, int32_t* argmax, const T* x, const PoolShape& s) {
  if (reference_mode()) {  // the two reference ops, through the ReLU's output
    std::vector<T> relu(static_cast<size_t>(s.batch * s.channels * s.in_h * s.in_w));
    ref::relu_forward(relu.data(), x, static_cast<int64_t>(relu.size()));
    return ref::maxpool2d_forward(y, argmax, relu.data(), s);
  }
  maxpool_windows<T, true>(y, argmax, x, s);
}

template <typename T>
void relu_maxpool2d_backward(T* dx, const T* dy, const T* x, const int32_t* argmax,
                             const PoolShape& s) {
  if (reference_mode()) {
    ref::maxpool2d_backward(dx, dy, argmax, s);
    return ref::relu_backward(dx, x, dx, s.batch * s.channels * s.in_h * s.in_w);
  }
  if constexpr (std::is_same_v<T, float>) {
    if (is_2x2_stride2(s)) return maxpool_2x2_stride2_backward<true>(dx, dy, x, argmax, s);
  }
  maxpool_scatter<T, true>(dx, dy, x, argmax, s);
}

namespace {
/// Runs body(first_plane, plane_shape) over the planes of s split across the threads, where
/// plane_shape is s restricted to a block of planes (batch = planes, channels = 1): pooling
/// planes are independent, so the result does not depend on the split.
template <typename Body>
void for_plane_blocks(const PoolShape& s, int64_t work_per_plane, const Body& body) {
  const int64_t planes = s.batch * s.channels;
  const int team =
      planes * work_per_plane > 16384 ? static_cast<int>(std::min<int64_t>(threads(), planes)) : 1;
  detail::for_each_range(team, planes, [&](int64_t first, int64_t last) {
    PoolShape block = s;
    block.batch = last - first;
    block.channels = 1;
    body(first, block);
  });
}

/// s as the window kernels' plane geometry (avgpool_lanes.hpp), when they cover it: square 2x2
/// or 3x3 windows, the same stride 1 or 2 along both axes, padding at most half the kernel (so
/// that every window holds an input element: the reference's divisor is never 0), at least one
/// output, planes small enough for the kernels' 32-bit column arithmetic.
std::optional<detail::AvgPoolPlane> avgpool_lanes_plane(const PoolShape& s) {
  const int64_t k = s.kernel_h;
  if (s.kernel_w != k || (k != 2 && k != 3) || s.stride_w != s.stride_h ||
      (s.stride_h != 1 && s.stride_h != 2) || s.pad_h < 0 || s.pad_w < 0 || 2 * s.pad_h > k ||
      2 * s.pad_w > k || s.out_h < 1 || s.out_w < 1 || s.in_w > (int64_t{1} << 28))
    return std::nullopt;
  return detail::AvgPoolPlane{s.in_h, s.in_w, s.out_h, s.out_w, k, s.stride_h, s.pad_h, s.pad_w};
}
}  // namespace

// Average pooling: float windows of 2x2 and 3x3 at stride 1 or 2 by the window kernels
// (avgpool_lanes.hpp; the reference's bits, many windows a vector), other shapes and double by
// the reference's loops; either over blocks of planes, one block per thread.
template <typename T>
void avgpool2d_forward(T* y, const T* x, const PoolShape& s, bool count_include_pad) {
  if (reference_mode()) return ref::avgpool2d_forward(y, x, s, count_include_pad);
  if constexpr (std::is_same_v<T, float>) {
    if (const auto plane = avgpool_lanes_plane(s)) {
      const detail::AvgPoolKernels& kernels = detail::avgpool_kernels();
      return for_plane_blocks(s, s.out_h * s.out_w * s.kernel_h * s.kernel_w,
                              [&](int64_t first, const PoolShape& block) {
                                kernels.forward(y + first * s.out_h * s.out_w,
                                                x + first * s.in_h * s.in_w, block.batch, *plane,
                                                count_include_pad);
                              });
    }
  }
  for_plane_blocks(s, s.out_h * s.out_w * s.kernel_h * s.kernel_w,
                   [&](int64_t first, const PoolShape& block) {
                     ref::avgpool2d_forward(y + first * s.out_h * s.out_w,
                                            x + first * s.in_h * s.in_w, block, count_include_pad);
                   });
}

template <typename T>
void avgpool2d_backward(T* dx, const T* dy, const PoolShape& s, bool count_include_pad) {
  if (reference_mode()) return ref::avgpool2d_backward(dx, dy, s, count_include_pad);
  if constexpr (std::is_same_v<T, float>) {
    if (const auto plane = avgpool_lanes_plane(s)) {
      const detail::AvgPoolKernels& kernels = detail::avgpool_kernels();
      return for_plane_blocks(
          s, s.out_h * s.out_w * s.kernel_h * s.kernel_w,
          [&](int64_t first, const PoolShape& block) {
            // Slot 7 (scratch.hpp): no convolution is running inside a pooling call.
            float* shares = detail::scratch<float>(7, kernels.share_floats(*plane));
            kernels.backward(dx + first * s.in_h * s.in_w, dy + first * s.out_h * s.out_w, shares,
                             block.batch, *plane, count_include_pad);
          });
    }
  }
  for_plane_blocks(
      s, s.out_h * s.out_w * s.kernel_h * s.kernel_w, [&](int64_t first, const PoolShape& block) {
        ref::avgpool2d_backward(dx + first * s.in_h * s.in_w, dy + first * s.out_h * s.out_w, block,
                                count_include_pad);
      });
}

// Global average pooling: each plane's sum in 8 interleaved partial sums, which the compiler
// keeps in a vector register (one running sum waits on each addition's latency); planes split
// over the threads.
template <typename T>
void global_avgpool_forward(T* y, const T* x, int64_t planes, int64_t size) {
  if (reference_mode()) return ref::global_avgpool_forward(y, x, planes, size);
  const int team =
      planes * size > 16384 ? static_cast<int>(std::min<int64_t>(threads(), planes)) : 1;
  detail::for_each_range(team, planes, [&](int64_t first, int64_t last) {
    for (int64_t p = first; p < last; ++p) {
      const T* __restrict v = x + p * size;
      T partial[8] = {};
      int64_t i = 0;
      for (; i + 8 <= size; i += 8)
        for (int k = 0; k < 8; ++k) partial[k] += v[i + k];
      for (; i < size; ++i) partial[0] += v[i];
      T sum = 0;
      for (const T part : partial) sum += part;
      y[p] = sum / static_cast<T>(size);
    }
  });
}

template <typename T>
void global_avgpool_backward(T* dx, const T* dy, int64_t planes, int64_t size) {
  if (reference_mode()) return ref::global_avgpool_backward(dx, dy, planes, size);
  const int team =
      planes * size > 16384 ? static_cast<int>(std::min<int64_t>(threads(), planes)) : 1;
  detail::for_each_range(team, planes, [&](int64_t first, int64_t last) {
    ref::global_avgpool_backward(dx + first * size, dy + first, last - first, size);
  });
}

#define CNN_INSTANTIATE_POOL(T)                                                        \
  template void maxpool2d_forward<T>(T*, int32_t*, const T*, const PoolShape&);        \
  template void maxpool2d_backward<T>(T*, const T*, const int32_t*, const PoolShape&); \
  template void relu_maxpool2d_forward<T>(T*, int32_t*, const T*, const PoolShape&);   \
  template void relu_maxpool2d_backward<T>(T*, const T*, const T*, const int32_t*,     \
                                           const PoolShape&);                          \
  template void avgpool2d_forward<T>(T*, const T*, const PoolShape&, bool);            \
  template void avgpool2d_backward<T>(T*, const T*, const PoolShape&, bool);           \
  template void global_avgpool_forward<T>(T*, const T*, int64_t, int64_t);             \
  template void global_avgpool_backward<T>(T*, const T*, int64_t, int64_t);
CNN_INSTANTIATE_POOL(float)
CNN_INSTANTIATE_POOL(double)

}  // namespace cnn::ops

namespace cnn::detail {

const MaxPoolKernels& maxpool_kernels() {
  return ops::isa_has_avx2() ? maxpool_avx2() : maxpool_portable();
}

const AvgPoolKernels& avgpool_kernels() {
  return table_for_isa(avgpool_avx512, avgpool_avx2, avgpool_portable);
}

void relu_maxpool_2x2_plane(float* y, const float* x, int64_t row_stride, int64_t out_h,
                            int64_t out_w) {
  ops::maxpool_2x2_plane<float, true, false>(y, nullptr, x, row_stride, out_h, out_w,
                                             ops::isa_has_avx2());
}

template <typename T>
void relu_maxpool_2x2_plane_argmax(T* y, int32_t* argmax, const T* x, int64_t in_w, int64_t out_h,
                                   int64_t out_w) {
  ops::maxpool_2x2_plane<T, true, true>(y, argmax, x, in_w, out_h, out_w, ops::isa_has_avx2());
}

template <typename T>
void maxpool_2x2_backward_plane(T* dx, const T* dy, const int32_t* argmax, int64_t in_h,
                                int64_t in_w, int64_t out_h, int64_t out_w) {
  if constexpr (std::is_same_v<T, float>) {
    const ops::PoolShape s{1, 1, in_h, in_w, 2, 2, 2, 2, 0, 0, out_h, out_w};
    ops::maxpool_2x2_backward_plane<false>(dx, dy, nullptr, argmax, s, ops::isa_has_avx2());
  } else {  // maxpool_scatter's plane
    ops::scatter_plane<T, false>(dx, dy, nullptr, argmax, in_h * in_w, out_h * out_w);
  }
}

template void relu_maxpool_2x2_plane_argmax<float>(float*, int32_t*, const float*, int64_t, int64_t,
                                                   int64_t);
template void relu_maxpool_2x2_plane_argmax<double>(double*, int32_t*, const double*, int64_t,
                                                    int64_t, int64_t);
template void maxpool_2x2_backward_plane<float>(float*, const float*, const int32_t*, int64_t,
                                                int64_t, int64_t, int64_t);
template void maxpool_2x2_backward_plane<double>(double*, const double*, const int32_t*, int64_t,
                                                 int64_t, int64_t, int64_t);

}  // namespace cnn::detail

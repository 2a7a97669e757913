// Default batch-normalisation path: images split over the threads, as the convolutions and
// element-wise layers around it split them (each plane's sums are kept apart and added over the
// images in order by one thread, so any split gives the same bits; planes shorter than 16
// values split their sums by channels: sum_over_images), each plane's sums accumulated
// in double (as PyTorch's CPU kernels do), in 16 independent partial sums (lanes): for floats on
// AVX-512 CPUs by explicit AVX-512 loops, two vectors of eight doubles, on AVX2 CPUs by AVX2
// loops, four vectors of four, elsewhere by scalar loops with the same lanes in the same order
// (the same bits); the backward's element-wise pass has AVX-512 and AVX2 loops too, by the
// scalar loop's float operations. Float accumulators were tried first: the
// BatchNorm-bias gradients, sums that nearly cancel, then lost 3 digits, and five resnet steps
// ended 4000 times further from the float64 answer than PyTorch's float32 run
// (tests/test_golden.cpp). Float statistics take the sums of x and x^2 in one pass (a float's
// square is exact in double); double ones two (the mean, then the squared deviations from it).
// The closed form of the backward (two sums per channel, then one pass)
// replaces the reference's term by term chain rule. A ReLU after the BatchNorm can run in the same
// passes (LayerChain fuses the pair): its mask is recomputed from x by the very expression the
// forward used (`normalised`), and this file is compiled without floating-point contraction
// (CMakeLists.txt), so the recomputed values equal the forward's bit for bit. A ReLU and a 2x2 /
// stride-2 max pooling after it (a stem) can run in the same passes as well: each normalised
// plane is pooled from the calling thread's cache, and in the backward each plane's pooling
// gradient is made there (twice: for the sums, then for dx) instead of read from a tensor.

#include <immintrin.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "cnn/ops.hpp"
#include "cnn/ops_ref.hpp"
#include "parallel.hpp"
#include "pool_plane.hpp"
#include "scratch.hpp"

namespace cnn::ops {

namespace {

constexpr int kLanes = 16;

/// The sum of kLanes partial sums, pairwise: a chain of 16 dependent additions, once per
/// image and channel, took longer than the 16 values of a 4x4 plane it summed.
inline double lane_total(double (&partial)[kLanes]) {
  static_assert(kLanes == 16);
  for (int k = 0; k < 8; ++k) partial[k] += partial[k + 8];
  for (int k = 0; k < 4; ++k) partial[k] += partial[k + 4];
  return (partial[0] + partial[2]) + (partial[1] + partial[3]);
}

/// sum over i < n of f(i), in kLanes partial sums: the last values (fewer than kLanes) into
/// lane 0, in order, then the lanes' total.
template <typename F>
inline double lane_sum(int64_t n, const F& f) {
  double partial[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int k = 0; k < kLanes; ++k) partial[k] += static_cast<double>(f(i + k));
  for (; i < n; ++i) partial[0] += static_cast<double>(f(i));
  return lane_total(partial);
}

/// The values from i to n (fewer than kLanes) added, in order, into lane 0's sum of p (a0) and
/// of p^2 (b0), each widened to double first: the last values of lane_moments and of its AVX2
/// and AVX-512 twins.
inline void add_last_moments(int64_t i, int64_t n, const float* p, double& a0, double& b0) {
  for (; i < n; ++i) {
    const double v = static_cast<double>(p[i]);
    a0 += v;
    b0 += v * v;
  }
}

/// The sums of p[i] and of p[i]^2 over i < n (each value widened to double first, where a
/// float's square is exact), in kLanes partial sums each: the last values (fewer than kLanes)
/// into lane 0, in order, then the lanes' totals. A float plane's moments in one pass.
inline void lane_moments(int64_t n, const float* p, double& sum, double& squares) {
  double a[kLanes] = {}, b[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int k = 0; k < kLanes; ++k) {
      const double v = static_cast<double>(p[i + k]);
      a[k] += v;
      b[k] += v * v;
    }
  add_last_moments(i, n, p, a[0], b[0]);
  sum = lane_total(a);
  squares = lane_total(b);
}

/// A channel's map y = x scale + shift: scale = gamma invstd, shift = beta - mean scale.
template <typename T>
struct ChannelAffine {
  T invstd, scale, shift;
  ChannelAffine(int64_t c, const T* mean, const T* var, const T* gamma, const T* beta, T eps)
      : invstd(T(1) / std::sqrt(var[c] + eps)),
        scale((gamma ? gamma[c] : T(1)) * invstd),
        shift((beta ? beta[c] : T(0)) - mean[c] * scale) {}
  /// The forward's value for x; the fused ReLU's backward recomputes it with this same
  /// expression (and no contraction into a fused multiply-add: see the top of the file).
  T normalised(T x) const { return x * scale + shift; }
};

/// The gradient reaching the BatchNorm at one value: dy itself, or with a ReLU after it, the
/// ReLU's input gradient (zero where the normalised value is negative, as relu_backward).
template <typename T, bool Relu>
inline T reaching(T dy, T x, const ChannelAffine<T>& affine) {
  if constexpr (Relu) {
    // dy, or +0 where the value is negative (relu_backward's rule, NaN passing dy), as a bit
    // mask: the compiler kept the conditional as a branch, and ReLU masks are data (their
    // signs half random): on 32 x 28 x 28 at batch 128 the fused backward ran 6x slower than
    // the BatchNorm's alone.
    using Bits = std::conditional_t<sizeof(T) == 4, uint32_t, uint64_t>;
    const Bits keep = Bits(0) - static_cast<Bits>(!(affine.normalised(x) < T(0)));
    return std::bit_cast<T>(std::bit_cast<Bits>(dy) & keep);
  } else {
    return dy;
  }
}

/// The values from i to n (fewer than kLanes) added, in order, into lane 0's sum of g (a0) and
/// of g (x - m) (b0): the last values of lane_sums_dy and of its AVX2 and AVX-512 twins.
template <typename T, bool Relu>
inline void add_last_values_dy(int64_t i, int64_t n, const T* __restrict dy, const T* __restrict x,
                               T m, const ChannelAffine<T>& affine, double& a0, double& b0) {
  for (; i < n; ++i) {
    const T g = reaching<T, Relu>(dy[i], x[i], affine);
    a0 += static_cast<double>(g);
    b0 += static_cast<double>(g * (x[i] - m));
  }
}

/// sum of g and of g (x - m) over i < n, g = reaching(dy), in one pass of kLanes partial sums
/// each.
template <typename T, bool Relu>
inline void lane_sums_dy(int64_t n, const T* __restrict dy, const T* __restrict x, T m,
                         const ChannelAffine<T>& affine, double& sum_dy, double& sum_dy_centered) {
  double a[kLanes] = {}, b[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int k = 0; k < kLanes; ++k) {
      const T g = reaching<T, Relu>(dy[i + k], x[i + k], affine);
      a[k] += static_cast<double>(g);
      b[k] += static_cast<double>(g * (x[i + k] - m));
    }
  add_last_values_dy<T, Relu>(i, n, dy, x, m, affine, a[0], b[0]);
  sum_dy += lane_total(a);
  sum_dy_centered += lane_total(b);
}

// The float sums again with AVX2 (compiled for it whatever the build's flags, called only
// when isa() says the CPU has it): the same 16 double lanes, lane k holding elements i with
// i % 16 == k in order, each value formed in float by the same operations as above (no FMA
// here either), so the results are the scalar loops' bit for bit. GCC left those loops
// scalar on x86-64's baseline, with their 32 accumulators spilled to the stack.

/// The 16 floats at p as 4 vectors of 4 doubles (lanes 0-3, 4-7, 8-11, 12-15).
__attribute__((target("avx2"))) inline void widen16(__m256 low, __m256 high, __m256d (&d)[4]) {
  d[0] = _mm256_cvtps_pd(_mm256_castps256_ps128(low));
  d[1] = _mm256_cvtps_pd(_mm256_extractf128_ps(low, 1));
  d[2] = _mm256_cvtps_pd(_mm256_castps256_ps128(high));
  d[3] = _mm256_cvtps_pd(_mm256_extractf128_ps(high, 1));
}

/// v with its lane 0 replaced by d.
__attribute__((target("avx2"))) inline __m256d with_lane0(__m256d v, double d) {
  return _mm256_blend_pd(v, _mm256_set1_pd(d), 1);
}

/// lane_total of the 16 lanes held as 4 vectors (lanes 0-3, 4-7, 8-11, 12-15), in registers:
/// the same additions of the same pairs (k + 8, then k + 4, then (0 + 2) + (1 + 3)), so the
/// same bits. The round trip through memory it replaces (16 stores, then scalar loads and
/// adds) cost about as much as summing a small plane: a 7x7 BatchNorm's statistics took twice
/// as long with it.
__attribute__((target("avx2"))) inline double lane_total_avx2(const __m256d (&acc)[4]) {
  const __m256d t = _mm256_add_pd(_mm256_add_pd(acc[0], acc[2]), _mm256_add_pd(acc[1], acc[3]));
  const __m128d u = _mm_add_pd(_mm256_castpd256_pd128(t), _mm256_extractf128_pd(t, 1));
  return _mm_cvtsd_f64(_mm_add_sd(u, _mm_unpackhi_pd(u, u)));
}

/// lane_sum's end on the 4 vectors: f(i) for i from `from` to n added into lane 0 in order,
/// then the lanes' total.
template <typename F>
__attribute__((target("avx2"))) inline double finish_lane_sum_avx2(int64_t from, int64_t n,
                                                                   const F& f, __m256d (&acc)[4]) {
  if (from < n) {
    double lane0 = _mm256_cvtsd_f64(acc[0]);
    for (int64_t i = from; i < n; ++i) lane0 += static_cast<double>(f(i));
    acc[0] = with_lane0(acc[0], lane0);
  }
  return lane_total_avx2(acc);
}

/// lane_sum of p[i] (squares: of (p[i] - m)^2, formed in float), floats only; value(i) is the
/// scalar form of the same, for the last values.
template <bool Squares, typename F>
__attribute__((target("avx2"))) double lane_sum_avx2(int64_t n, const float* p, float m,
                                                     const F& value) {
  __m256d acc[4] = {_mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd(),
                    _mm256_setzero_pd()};
  const __m256 mv = _mm256_set1_ps(m);
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    __m256 low = _mm256_loadu_ps(p + i), high = _mm256_loadu_ps(p + i + 8);
    if constexpr (Squares) {
      low = _mm256_sub_ps(low, mv);
      high = _mm256_sub_ps(high, mv);
      low = _mm256_mul_ps(low, low);
      high = _mm256_mul_ps(high, high);
    }
    __m256d d[4];
    widen16(low, high, d);
    for (int q = 0; q < 4; ++q) acc[q] = _mm256_add_pd(acc[q], d[q]);
  }
  return finish_lane_sum_avx2(i, n, value, acc);
}

/// lane_moments for floats with AVX2: the same lanes, the same double operations.
__attribute__((target("avx2"))) void lane_moments_avx2(int64_t n, const float* p, double& sum,
                                                       double& squares) {
  __m256d a[4], b[4];
  for (int q = 0; q < 4; ++q) a[q] = b[q] = _mm256_setzero_pd();
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    __m256d d[4];
    widen16(_mm256_loadu_ps(p + i), _mm256_loadu_ps(p + i + 8), d);
    for (int q = 0; q < 4; ++q) {
      a[q] = _mm256_add_pd(a[q], d[q]);
      b[q] = _mm256_add_pd(b[q], _mm256_mul_pd(d[q], d[q]));
    }
  }
  if (i < n) {
    double a0 = _mm256_cvtsd_f64(a[0]), b0 = _mm256_cvtsd_f64(b[0]);
    add_last_moments(i, n, p, a0, b0);
    a[0] = with_lane0(a[0], a0);
    b[0] = with_lane0(b[0], b0);
  }
  sum = lane_total_avx2(a);
  squares = lane_total_avx2(b);
}

/// reaching<float, Relu> of 8 values: dy where the normalised value is not below 0 (NaN too).
template <bool Relu>
__attribute__((target("avx2"))) inline __m256 reaching8(__m256 dy, __m256 x, __m256 scale,
                                                        __m256 shift) {
  if constexpr (Relu) {
    const __m256 v = _mm256_add_ps(_mm256_mul_ps(x, scale), shift);
    return _mm256_and_ps(dy, _mm256_cmp_ps(v, _mm256_setzero_ps(), _CMP_NLT_UQ));
  } else {
    return dy;
  }
}

/// lane_sums_dy for floats.
template <bool Relu>
__attribute__((target("avx2"))) void lane_sums_dy_avx2(int64_t n, const float* dy, const float* x,
                                                       float m, const ChannelAffine<float>& affine,
                                                       double& sum_dy, double& sum_dy_centered) {
  __m256d a[4], b[4];
  for (int q = 0; q < 4; ++q) a[q] = b[q] = _mm256_setzero_pd();
  const __m256 mv = _mm256_set1_ps(m), scale = _mm256_set1_ps(affine.scale),
               shift = _mm256_set1_ps(affine.shift);
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    const __m256 x0 = _mm256_loadu_ps(x + i), x1 = _mm256_loadu_ps(x + i + 8);
    const __m256 g0 = reaching8<Relu>(_mm256_loadu_ps(dy + i), x0, scale, shift);
    const __m256 g1 = reaching8<Relu>(_mm256_loadu_ps(dy + i + 8), x1, scale, shift);
    __m256d d[4], e[4];
    widen16(g0, g1, d);
    widen16(_mm256_mul_ps(g0, _mm256_sub_ps(x0, mv)), _mm256_mul_ps(g1, _mm256_sub_ps(x1, mv)), e);
    for (int q = 0; q < 4; ++q) {
      a[q] = _mm256_add_pd(a[q], d[q]);
      b[q] = _mm256_add_pd(b[q], e[q]);
    }
  }
  if (i < n) {
    double a0 = _mm256_cvtsd_f64(a[0]), b0 = _mm256_cvtsd_f64(b[0]);
    add_last_values_dy<float, Relu>(i, n, dy, x, m, affine, a0, b0);
    a[0] = with_lane0(a[0], a0);
    b[0] = with_lane0(b[0], b0);
  }
  sum_dy += lane_total_avx2(a);
  sum_dy_centered += lane_total_avx2(b);
}

// The same loops again for AVX-512 (called when isa() is kAvx512): the 16 lanes as two
// vectors of 8 doubles, each value formed by the same float operations, so the same bits again
// with half the instructions a block of 16.

// GCC 12 warns, inside the definitions of _mm512_extractf64x4_pd, _mm512_cvtps_pd and their
// kind, that the "undefined" vector they merge into may be (or, for _mm512_castpd512_pd256 in
// lane_total_avx512, is) used uninitialised (their all-ones masks leave none of it, a cast
// reads none): off for these functions only.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

/// The 16 floats of v as 2 vectors of 8 doubles (lanes 0-7, 8-15).
__attribute__((target("avx512f"))) inline void widen16_avx512(__m512 v, __m512d (&d)[2]) {
  d[0] = _mm512_cvtps_pd(_mm512_castps512_ps256(v));
  d[1] = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
}

/// v with its lane 0 replaced by d.
__attribute__((target("avx512f"))) inline __m512d with_lane0(__m512d v, double d) {
  return _mm512_mask_broadcastsd_pd(v, 1, _mm_set_sd(d));
}

/// lane_total of the 16 lanes held as two vectors (lanes 0-7, 8-15), in registers: the same
/// additions of the same pairs (k + 8, then k + 4, then (0 + 2) + (1 + 3)), so the same bits
/// (lane_total_avx2 says why).
__attribute__((target("avx512f"))) inline double lane_total_avx512(const __m512d (&acc)[2]) {
  const __m512d s = _mm512_add_pd(acc[0], acc[1]);
  const __m256d t = _mm256_add_pd(_mm512_castpd512_pd256(s), _mm512_extractf64x4_pd(s, 1));
  const __m128d u = _mm_add_pd(_mm256_castpd256_pd128(t), _mm256_extractf128_pd(t, 1));
  return _mm_cvtsd_f64(_mm_add_sd(u, _mm_unpackhi_pd(u, u)));
}

/// lane_sum's end on the two vectors: f(i) for i from `from` to n added into lane 0 in
/// order, then the lanes' total.
template <typename F>
__attribute__((target("avx512f"))) inline double finish_lane_sum_avx512(int64_t from, int64_t n,
                                                                        const F& f,
                                                                        __m512d (&acc)[2]) {
  if (from < n) {
    double lane0 = _mm512_cvtsd_f64(acc[0]);
    for (int64_t i = from; i < n; ++i) lane0 += static_cast<double>(f(i));
    acc[0] = with_lane0(acc[0], lane0);
  }
  return lane_total_avx512(acc);
}

/// lane_sum_avx2 with AVX-512.
template <bool Squares, typename F>
__attribute__((target("avx512f"))) double lane_sum_avx512(int64_t n, const float* p, float m,
                                                          const F& value) {
  __m512d acc[2] = {_mm512_setzero_pd(), _mm512_setzero_pd()};
  const __m512 mv = _mm512_set1_ps(m);
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    __m512 v = _mm512_loadu_ps(p + i);
    if constexpr (Squares) {
      v = _mm512_sub_ps(v, mv);
      v = _mm512_mul_ps(v, v);
    }
    __m512d d[2];
    widen16_avx512(v, d);
    for (int q = 0; q < 2; ++q) acc[q] = _mm512_add_pd(acc[q], d[q]);
  }
  return finish_lane_sum_avx512(i, n, value, acc);
}

/// lane_moments_avx2 with AVX-512.
__attribute__((target("avx512f"))) void lane_moments_avx512(int64_t n, const float* p, double& sum,
                                                            double& squares) {
  __m512d a[2], b[2];
  for (int q = 0; q < 2; ++q) a[q] = b[q] = _mm512_setzero_pd();
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    __m512d d[2];
    widen16_avx512(_mm512_loadu_ps(p + i), d);
    for (int q = 0; q < 2; ++q) {
      a[q] = _mm512_add_pd(a[q], d[q]);
      b[q] = _mm512_add_pd(b[q], _mm512_mul_pd(d[q], d[q]));
    }
  }
  if (i < n) {
    double a0 = _mm512_cvtsd_f64(a[0]), b0 = _mm512_cvtsd_f64(b[0]);
    add_last_moments(i, n, p, a0, b0);
    a[0] = with_lane0(a[0], a0);
    b[0] = with_lane0(b[0], b0);
  }
  sum = lane_total_avx512(a);
  squares = lane_total_avx512(b);
}

/// lane_sums_dy_avx2 with AVX-512.
template <bool Relu>
__attribute__((target("avx512f"))) void lane_sums_dy_avx512(int64_t n, const float* dy,
                                                            const float* x, float m,
                                                            const ChannelAffine<float>& affine,
                                                            double& sum_dy,
                                                            double& sum_dy_centered) {
  __m512d a[2], b[2];
  for (int q = 0; q < 2; ++q) a[q] = b[q] = _mm512_setzero_pd();
  const __m512 mv = _mm512_set1_ps(m), scale = _mm512_set1_ps(affine.scale),
               shift = _mm512_set1_ps(affine.shift);
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    const __m512 xv = _mm512_loadu_ps(x + i);
    __m512 g = _mm512_loadu_ps(dy + i);
    if constexpr (Relu) {  // reaching8's rule: dy where the value is not below 0, else +0
      const __m512 v = _mm512_add_ps(_mm512_mul_ps(xv, scale), shift);
      g = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_NLT_UQ), g);
    }
    __m512d d[2], e[2];
    widen16_avx512(g, d);
    widen16_avx512(_mm512_mul_ps(g, _mm512_sub_ps(xv, mv)), e);
    for (int q = 0; q < 2; ++q) {
      a[q] = _mm512_add_pd(a[q], d[q]);
      b[q] = _mm512_add_pd(b[q], e[q]);
    }
  }
  if (i < n) {
    double a0 = _mm512_cvtsd_f64(a[0]), b0 = _mm512_cvtsd_f64(b[0]);
    add_last_values_dy<float, Relu>(i, n, dy, x, m, affine, a0, b0);
    a[0] = with_lane0(a[0], a0);
    b[0] = with_lane0(b[0], b0);
  }
  sum_dy += lane_total_avx512(a);
  sum_dy_centered += lane_total_avx512(b);
}

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

// The input gradient's pass over a plane with AVX2 and AVX-512: each value formed by the same
// float operations in the same order as the scalar loop (no contraction into FMA in this
// file), so the same bits. This file is compiled for x86-64's baseline, where that loop ran 4
// floats at a time and took 56% of a 64 x 7 x 7 BatchNorm's backward (perf, one thread); the
// backward of 64 x 7 x 7 and 32 x 14 x 14 BatchNorms (batch 64, one thread) took 0.133-0.137
// and 0.182-0.185 ms with these against 0.140-0.141 and 0.211-0.213 without.
// A call per plane into a function compiled for another ISA cannot be inlined, which costs
// on the smallest planes: 128 x 4 x 4's backward took 0.133-0.138 ms against 0.120-0.125
// (the scalar loop inline), but a version keeping that loop for planes under 32 values ran
// it slower still (0.146-0.149: the loop's code changed with the branch), and over resnet's
// BatchNorms (one 28x28, two 14x14, three 7x7, three 4x4) these figures add up to about
// 0.1 ms saved a step.
// The forward's pass (normalise) was tried the same way and left scalar: 0.024-0.035 ms
// inline against 0.038-0.040 as calls on 128 x 4 x 4, level on 64 x 7 x 7.

/// dx = (g - mean_dy) scale - (x - m) a over n values, g = reaching<float, Relu>(dy):
/// normalise_backward's loop.
template <bool Relu>
__attribute__((target("avx2"))) void input_grad_plane_avx2(float* dx, const float* dy,
                                                           const float* x, int64_t n,
                                                           const ChannelAffine<float>& affine,
                                                           float m, float mean_dy, float a) {
  const __m256 scale = _mm256_set1_ps(affine.scale), shift = _mm256_set1_ps(affine.shift),
               mv = _mm256_set1_ps(m), mean_dy_v = _mm256_set1_ps(mean_dy), av = _mm256_set1_ps(a);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 xv = _mm256_loadu_ps(x + i);
    const __m256 g = reaching8<Relu>(_mm256_loadu_ps(dy + i), xv, scale, shift);
    const __m256 left = _mm256_mul_ps(_mm256_sub_ps(g, mean_dy_v), scale);
    _mm256_storeu_ps(dx + i, _mm256_sub_ps(left, _mm256_mul_ps(_mm256_sub_ps(xv, mv), av)));
  }
  for (; i < n; ++i) {
    const float g = reaching<float, Relu>(dy[i], x[i], affine);
    dx[i] = (g - mean_dy) * affine.scale - (x[i] - m) * a;
  }
}

/// input_grad_plane_avx2 with AVX-512, the last values under a mask.
template <bool Relu>
__attribute__((target("avx512f"))) void input_grad_plane_avx512(float* dx, const float* dy,
                                                                const float* x, int64_t n,
                                                                const ChannelAffine<float>& affine,
                                                                float m, float mean_dy, float a) {
  const __m512 scale = _mm512_set1_ps(affine.scale), shift = _mm512_set1_ps(affine.shift),
               mv = _mm512_set1_ps(m), mean_dy_v = _mm512_set1_ps(mean_dy), av = _mm512_set1_ps(a);
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 lanes = n - i >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (n - i)) - 1);
    const __m512 xv = _mm512_maskz_loadu_ps(lanes, x + i);
    __m512 g = _mm512_maskz_loadu_ps(lanes, dy + i);
    if constexpr (Relu) {  // reaching8's rule: dy where the value is not below 0, else +0
      const __m512 v = _mm512_add_ps(_mm512_mul_ps(xv, scale), shift);
      g = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_NLT_UQ), g);
    }
    const __m512 left = _mm512_mul_ps(_mm512_sub_ps(g, mean_dy_v), scale);
    _mm512_mask_storeu_ps(dx + i, lanes,
                          _mm512_sub_ps(left, _mm512_mul_ps(_mm512_sub_ps(xv, mv), av)));
  }
}

/// Which loops sum floats: the scalar ones, AVX2's or AVX-512's (all give the same bits).
enum class SumLoops { kScalar, kAvx2, kAvx512 };

SumLoops sum_loops() {
  return isa() == Isa::kAvx512 ? SumLoops::kAvx512
         : isa_has_avx2()      ? SumLoops::kAvx2
                               : SumLoops::kScalar;
}

/// lane_sum of p[i] (Squares: of (p[i] - m)^2), by the `loops` for floats.
template <bool Squares, typename T>
double plane_sum(int64_t n, const T* __restrict p, T m, SumLoops loops) {
  const auto value = [=](int64_t i) {  // m unused when summing p itself
    if constexpr (Squares) {
      return (p[i] - m) * (p[i] - m);
    } else {
      return p[i];
    }
  };
  if constexpr (std::is_same_v<T, float>) {
    if (loops == SumLoops::kAvx512) return lane_sum_avx512<Squares>(n, p, m, value);
    if (loops == SumLoops::kAvx2) return lane_sum_avx2<Squares>(n, p, m, value);
  }
  return lane_sum(n, value);
}

/// lane_moments of a float plane, by the `loops`.
void plane_moments(int64_t n, const float* p, SumLoops loops, double& sum, double& squares) {
  if (loops == SumLoops::kAvx512) return lane_moments_avx512(n, p, sum, squares);
  if (loops == SumLoops::kAvx2) return lane_moments_avx2(n, p, sum, squares);
  lane_moments(n, p, sum, squares);
}

/// lane_sums_dy, by the `loops` for floats.
template <typename T, bool Relu>
void plane_sums_dy(int64_t n, const T* __restrict dy, const T* __restrict x, T m,
                   const ChannelAffine<T>& affine, SumLoops loops, double& sum_dy,
                   double& sum_dy_centered) {
  if constexpr (std::is_same_v<T, float>) {
    if (loops == SumLoops::kAvx512) {
      return lane_sums_dy_avx512<Relu>(n, dy, x, m, affine, sum_dy, sum_dy_centered);
    }
    if (loops == SumLoops::kAvx2) {
      return lane_sums_dy_avx2<Relu>(n, dy, x, m, affine, sum_dy, sum_dy_centered);
    }
  }
  lane_sums_dy<T, Relu>(n, dy, x, m, affine, sum_dy, sum_dy_centered);
}

/// Threads for a pass over x split into `pieces`: one below 16384 elements (the region costs
/// more than it saves).
int team_for(const NormShape& s, int64_t pieces) {
  const int64_t n = s.batch * s.channels * s.inner;
  return n > 16384 ? static_cast<int>(std::min<int64_t>(threads(), pieces)) : 1;
}

/// body(n, c) for every plane (image n, channel c), the threads splitting the images: the
/// split the convolutions and element-wise layers around a BatchNorm use, so that each thread
/// reads the planes it wrote and will read next from its own core's cache. (Split by channels,
/// every pass read half its planes from the other core: see docs/design-notes.md.) With fewer
/// images than threads, the planes in order (image by image, channel by channel) instead.
template <typename Body>
void for_each_plane(const NormShape& s, const Body& body) {
  const int team = team_for(s, s.batch * s.channels);
  if (s.batch >= team) {
    detail::for_each_range(team, s.batch, [&](int64_t first, int64_t last) {
      for (int64_t n = first; n < last; ++n)
        for (int64_t c = 0; c < s.channels; ++c) body(n, c);
    });
    return;
  }
  detail::for_each_range(team, s.batch * s.channels, [&](int64_t first, int64_t last) {
    for (int64_t plane = first; plane < last; ++plane) body(plane / s.channels, plane % s.channels);
  });
}

/// The calling thread's buffers (detail::shared_scratch, grow-only) of at least `count`
/// doubles: slot 0 the per-plane sums, which the threads fill and the calling thread then adds
/// over the images in order (the order in which one loop over a channel's planes would add
/// them, so any split gives the same bits); slot 1 each channel's sums, read while slot 0 is
/// filled.
double* plane_totals(int64_t count) {
  return detail::shared_scratch<double>(0, count).data();
}
double* channel_sums(int64_t count) {
  return detail::shared_scratch<double>(1, count).data();
}

/// Each channel's ChannelAffine, made once per call by the calling thread into its grow-only
/// buffer (one per Slot), for the planes to look up: one square root and division per plane cost a
/// BatchNorm1d (planes of one value) more than its arithmetic.
template <typename T, int Slot = 0>
const ChannelAffine<T>* channel_affines(const NormShape& s, const T* mean, const T* var,
                                        const T* gamma, const T* beta, T eps) {
  // Slot: another buffer, for a second BatchNorm's affines in the same op.
  thread_local std::vector<ChannelAffine<T>> affines;
  affines.clear();  // keeps the capacity: no allocation once warm
  for (int64_t c = 0; c < s.channels; ++c) affines.emplace_back(c, mean, var, gamma, beta, eps);
  return affines.data();
}

/// sums[j] = the sum over the images of totals[n * width + j] (j < width: a channel's sums),
/// from 0, n in order, reading totals front to back (a channel's planes are width apart: read
/// channel by channel, a BatchNorm1d's one-value planes each cost a cache miss).
inline void add_over_images(double* sums, const double* totals, int64_t images, int64_t width) {
  std::fill(sums, sums + width, 0.0);
  for (int64_t n = 0; n < images; ++n)
    for (int64_t j = 0; j < width; ++j) sums[j] += totals[n * width + j];
}

/// Planes shorter than this are summed with the threads splitting the channels (below).
constexpr int64_t kShortPlane = 16;

/// sums[Per c + k] = the sum over the images n, from 0 and in order, of the k-th of the Per
/// values that plane_sums(n, c, values) writes for plane (n, c): each channel's sums of a pass.
/// Planes of kShortPlane values or more: the threads split the images (for_each_plane), the
/// plane sums go to plane_totals, and the calling thread adds them over the images. Shorter
/// planes (a BatchNorm1d's are one value): the threads split the channels and add over the
/// images themselves, since there the plane sums are as many bytes as x or more, and the
/// calling thread read half of them from the other core (256 x 512 on 2 threads: 1.43x the
/// time of this channel split; at 16 values a plane the image split takes 0.69x its time).
/// Both add each channel's plane sums from 0 in image order: the same bits.
template <int Per, typename PlaneSums>
void sum_over_images(const NormShape& s, double* sums, const PlaneSums& plane_sums) {
  if (s.inner >= kShortPlane) {
    double* const totals = plane_totals(Per * s.batch * s.channels);
    for_each_plane(
        s, [&](int64_t n, int64_t c) { plane_sums(n, c, totals + Per * (n * s.channels + c)); });
    return add_over_images(sums, totals, s.batch, Per * s.channels);
  }
  detail::for_each_range(team_for(s, s.channels), s.channels, [&](int64_t first, int64_t last) {
    std::fill(sums + Per * first, sums + Per * last, 0.0);
    for (int64_t n = 0; n < s.batch; ++n)  // row by row: x read front to back
      for (int64_t c = first; c < last; ++c) {
        double values[Per];
        plane_sums(n, c, values);
        for (int k = 0; k < Per; ++k) sums[Per * c + k] += values[k];
      }
  });
}

/// mean[c] and the biased var[c] from each channel's sums of x and of x^2 (sums[2 c], sums[2 c +
/// 1]) over its s.batch s.inner values: the one-pass float statistics' last step.
void moments_to_statistics(float* mean, float* var, const double* sums, const NormShape& s) {
  const double count = static_cast<double>(s.batch * s.inner);
  for (int64_t c = 0; c < s.channels; ++c) {
    const double m = sums[2 * c] / count;
    mean[c] = static_cast<float>(m);
    var[c] = static_cast<float>(std::max(0.0, sums[2 * c + 1] / count - m * m));
  }
}

}  // namespace

void batchnorm_plane_moments(double* totals, const float* y, int64_t planes, int64_t inner) {
  const SumLoops loops = sum_loops();
  for (int64_t p = 0; p < planes; ++p)
    plane_moments(inner, y + p * inner, loops, totals[2 * p], totals[2 * p + 1]);
}

void batchnorm_statistics_from_moments(float* mean, float* var, const double* totals,
                                       const NormShape& s) {
  // Each channel's plane sums added from 0 in image order, as sum_over_images adds them.
  double* const sums = channel_sums(2 * s.channels);
  add_over_images(sums, totals, s.batch, 2 * s.channels);
  moments_to_statistics(mean, var, sums, s);
}

template <typename T>
void batchnorm_statistics(T* mean, T* var, const T* x, const NormShape& s) {
  if (reference_mode()) return ref::batchnorm_statistics(mean, var, x, s);
  const double count = static_cast<double>(s.batch * s.inner);
  const SumLoops loops = sum_loops();
  if constexpr (std::is_same_v<T, float>) {
    // One pass: each plane's sums of x and x^2, then each channel's, in double, where the
    // squares are exact and var = E[x^2] - mean^2 cancels to about 1e-16 (mean^2 / var)
    // relative, far inside float's rounding unless |mean| is 10^4 standard deviations or more.
    // resnet's statistics took 0.30 ms a training step against 0.67 in two passes (Zen 5).
    double* const sums = channel_sums(2 * s.channels);
    sum_over_images<2>(s, sums, [&](int64_t n, int64_t c, double* totals) {
      plane_moments(s.inner, x + (n * s.channels + c) * s.inner, loops, totals[0], totals[1]);
    });
    moments_to_statistics(mean, var, sums, s);
    return;
  }
  // double: two passes, the mean's, then the squared deviations' from it (a double's square is
  // not exact in double).
  double* const sums = channel_sums(s.channels);
  sum_over_images<1>(s, sums, [&](int64_t n, int64_t c, double* total) {
    *total = plane_sum<false>(s.inner, x + (n * s.channels + c) * s.inner, T(0), loops);
  });
  for (int64_t c = 0; c < s.channels; ++c) mean[c] = static_cast<T>(sums[c] / count);
  sum_over_images<1>(s, sums, [&](int64_t n, int64_t c, double* total) {
    *total = plane_sum<true>(s.inner, x + (n * s.channels + c) * s.inner, mean[c], loops);
  });
  for (int64_t c = 0; c < s.channels; ++c) var[c] = static_cast<T>(sums[c] / count);
}

namespace {

template <typename T, bool Relu>
void normalise(T* y, const T* x, const T* mean, const T* var, const T* gamma, const T* beta,
               const NormShape& s, T eps) {
  const ChannelAffine<T>* const affines = channel_affines(s, mean, var, gamma, beta, eps);
  for_each_plane(s, [&](int64_t n, int64_t c) {
    const ChannelAffine<T> affine = affines[c];
    const T* __restrict xp = x + (n * s.channels + c) * s.inner;
    T* __restrict yp = y + (n * s.channels + c) * s.inner;
    for (int64_t i = 0; i < s.inner; ++i) {
      const T v = affine.normalised(xp[i]);
      yp[i] = Relu && v < T(0) ? T(0) : v;  // the ReLU's rule (relu_forward)
    }
  });
}

/// The calling thread's buffer (grow-only) of at least `size` Ts: a plane made where it is
/// read (the pooling's forward input and backward output in the fused ops below).
template <typename T>
T* thread_plane(int64_t size) {
  thread_local std::vector<T> plane;
  if (plane.size() < static_cast<size_t>(size)) plane.resize(static_cast<size_t>(size));
  return plane.data();
}

/// The 2x2 / stride-2 pooling's gradient of plane `plane` (h x w) from its output gradient dy
/// and argmax (h / 2 x w / 2 planes), made in the calling thread's plane (thread_plane).
template <typename T>
const T* pooled_gradient_plane(const T* dy, const int32_t* argmax, int64_t plane, int64_t h,
                               int64_t w) {
  const int64_t out_plane = (h / 2) * (w / 2);
  T* g = thread_plane<T>(h * w);
  detail::maxpool_2x2_backward_plane(g, dy + plane * out_plane, argmax + plane * out_plane, h, w,
                                     h / 2, w / 2);
  return g;
}

/// normalise_backward's plane_dy for the output gradient dy (batch, channels, h / 2, w / 2) of
/// a 2x2 / stride-2 pooling with its argmax: each plane's pooling gradient made where it is read.
template <typename T>
auto pooled_dy(const T* dy, const int32_t* argmax, const NormShape& s, int64_t h, int64_t w) {
  return [=, channels = s.channels](int64_t n, int64_t c, int64_t) {
    return pooled_gradient_plane(dy, argmax, n * channels + c, h, w);
  };
}

/// What normalise_backward's input gradient pass reads once its sums are taken: per channel the
/// affine, the mean and the two coefficients of dx = (g - mean_dy) scale - (x - mean) a.
template <typename T>
struct InputGradTerms {
  const ChannelAffine<T>* affines;
  const T* mean;
  const double* coefficients;  // channel c: mean_dy at 2 c, a at 2 c + 1 (doubles holding Ts)
  SumLoops loops;
  /// dx of the plane of n values of channel c at dp, from its output gradient gp and x at xp
  /// (g = reaching<T, Relu>(gp, xp)).
  template <bool Relu>
  void plane(T* __restrict dp, const T* __restrict gp, const T* __restrict xp, int64_t n,
             int64_t c) const {
    const ChannelAffine<T> affine = affines[c];
    const T scale = affine.scale, m = mean[c];
    const T mean_dy = static_cast<T>(coefficients[2 * c]),
            a = static_cast<T>(coefficients[2 * c + 1]);
    if constexpr (std::is_same_v<T, float>) {
      if (loops == SumLoops::kAvx512)
        return input_grad_plane_avx512<Relu>(dp, gp, xp, n, affine, m, mean_dy, a);
      if (loops == SumLoops::kAvx2)
        return input_grad_plane_avx2<Relu>(dp, gp, xp, n, affine, m, mean_dy, a);
    }
    for (int64_t i = 0; i < n; ++i) {
      const T g = reaching<T, Relu>(gp[i], xp[i], affine);
      dp[i] = (g - mean_dy) * scale - (xp[i] - m) * a;
    }
  }
};

/// normalise_backward's sums' pass, from the output gradient of plane (n, c) at `offset` in x
/// that plane_dy(n, c, offset) returns: dgamma and dbeta accumulated (either may be null), and
/// the terms of the input gradient, which stay valid until the calling thread's next call of
/// channel_sums or channel_affines (slot 0).
template <typename T, bool Relu, typename PlaneDy>
InputGradTerms<T> backward_sums(T* dgamma, T* dbeta, const PlaneDy& plane_dy, const T* x,
                                const T* mean, const T* var, const T* gamma, const T* beta,
                                const NormShape& s, T eps, bool batch_statistics) {
  const double count = static_cast<double>(s.batch * s.inner);
  const SumLoops loops = sum_loops();
  // Each plane's two sums, each channel's, then each channel's mean(dy) and a (doubles holding
  // Ts exactly).
  double* const sums = channel_sums(4 * s.channels);
  double* const coefficients = sums + 2 * s.channels;
  const ChannelAffine<T>* const affines = channel_affines(s, mean, var, gamma, beta, eps);
  sum_over_images<2>(s, sums, [&](int64_t n, int64_t c, double* totals) {
    const int64_t offset = (n * s.channels + c) * s.inner;
    double sum_dy = 0, sum_dy_centered = 0;
    plane_sums_dy<T, Relu>(s.inner, plane_dy(n, c, offset), x + offset, mean[c], affines[c], loops,
                           sum_dy, sum_dy_centered);
    totals[0] = sum_dy;
    totals[1] = sum_dy_centered;
  });
  for (int64_t c = 0; c < s.channels; ++c) {
    const T invstd = affines[c].invstd, scale = affines[c].scale;
    const double sum_dy = sums[2 * c], sum_dy_centered = sums[2 * c + 1];
    const double sum_dy_xhat = sum_dy_centered * static_cast<double>(invstd);
    if (dgamma) dgamma[c] += static_cast<T>(sum_dy_xhat);
    if (dbeta) dbeta[c] += static_cast<T>(sum_dy);
    // dx = scale (dy - mean(dy)) - (x - mean) a, a = scale invstd^2 mean(dy (x - mean)). The
    // centred x keeps the two terms from cancelling when |mean| is large against the spread
    // (a form dx = scale dy - a x + b lost 3 digits of the BatchNorm bias gradients of resnet).
    const T mean_dy = batch_statistics ? static_cast<T>(sum_dy / count) : T(0);
    const T a =
        batch_statistics ? scale * static_cast<T>(sum_dy_centered / count) * invstd * invstd : T(0);
    coefficients[2 * c] = static_cast<double>(mean_dy);
    coefficients[2 * c + 1] = static_cast<double>(a);
  }
  return {affines, mean, coefficients, loops};
}

/// The backward from the output gradient of plane (n, c) at `offset` in x: plane_dy(n, c,
/// offset) returns it in the sums' pass, and dx_plane_dy(n, c, offset) in dx's (dy + offset, or
/// a plane made on the calling thread, or one the sums' pass made in a tensor).
template <typename T, bool Relu, typename PlaneDy, typename DxPlaneDy>
void normalise_backward(T* dx, T* dgamma, T* dbeta, const PlaneDy& plane_dy,
                        const DxPlaneDy& dx_plane_dy, const T* x, const T* mean, const T* var,
                        const T* gamma, const T* beta, const NormShape& s, T eps,
                        bool batch_statistics) {
  const InputGradTerms<T> terms = backward_sums<T, Relu>(dgamma, dbeta, plane_dy, x, mean, var,
                                                         gamma, beta, s, eps, batch_statistics);
  if (!dx) return;
  for_each_plane(s, [&](int64_t n, int64_t c) {
    const int64_t offset = (n * s.channels + c) * s.inner;
    terms.template plane<Relu>(dx + offset, dx_plane_dy(n, c, offset), x + offset, s.inner, c);
  });
}

/// normalise_backward's plane_dy for a dy tensor of x's shape.
template <typename T>
auto dense_dy(const T* dy) {
  return [dy](int64_t, int64_t, int64_t offset) { return dy + offset; };
}

}  // namespace

template <typename T>
void batchnorm_forward(T* y, const T* x, const T* mean, const T* var, const T* gamma, const T* beta,
                       const NormShape& s, T eps) {
  if (reference_mode()) return ref::batchnorm_forward(y, x, mean, var, gamma, beta, s, eps);
  normalise<T, false>(y, x, mean, var, gamma, beta, s, eps);
}

template <typename T>
void batchnorm_relu_forward(T* y, const T* x, const T* mean, const T* var, const T* gamma,
                            const T* beta, const NormShape& s, T eps) {
  if (reference_mode()) return ref::batchnorm_relu_forward(y, x, mean, var, gamma, beta, s, eps);
  normalise<T, true>(y, x, mean, var, gamma, beta, s, eps);
}

template <typename T>
void batchnorm_backward(T* dx, T* dgamma, T* dbeta, const T* dy, const T* x, const T* mean,
                        const T* var, const T* gamma, const NormShape& s, T eps,
                        bool batch_statistics) {
  if (reference_mode()) {
    return ref::batchnorm_backward(dx, dgamma, dbeta, dy, x, mean, var, gamma, s, eps,
                                   batch_statistics);
  }
  normalise_backward<T, false>(dx, dgamma, dbeta, dense_dy(dy), dense_dy(dy), x, mean, var, gamma,
                               nullptr, s, eps, batch_statistics);
}

template <typename T>
void batchnorm_relu_backward(T* dx, T* dgamma, T* dbeta, const T* dy, const T* x, const T* mean,
                             const T* var, const T* gamma, const T* beta, const NormShape& s, T eps,
                             bool batch_statistics) {
  if (reference_mode()) {
    return ref::batchnorm_relu_backward(dx, dgamma, dbeta, dy, x, mean, var, gamma, beta, s, eps,
                                        batch_statistics);
  }
  normalise_backward<T, true>(dx, dgamma, dbeta, dense_dy(dy), dense_dy(dy), x, mean, var, gamma,
                              beta, s, eps, batch_statistics);
}

template <typename T>
void batchnorm_relu_maxpool2x2_forward(T* y, int32_t* argmax, const T* x, const T* mean,
                                       const T* var, const T* gamma, const T* beta,
                                       const NormShape& s, int64_t h, int64_t w, T eps) {
  const int64_t out_h = h / 2, out_w = w / 2, out_plane = out_h * out_w;
  if (reference_mode()) {  // the ops it stands for, through the BatchNorm's output
    std::vector<T> v(static_cast<size_t>(s.batch * s.channels * s.inner));
    batchnorm_forward(v.data(), x, mean, var, gamma, beta, s, eps);
    return relu_maxpool2d_forward(y, argmax, v.data(),
                                  make_pool_shape(s.batch, s.channels, h, w, 2, 2, 2, 2, 0, 0));
  }
  const ChannelAffine<T>* const affines = channel_affines(s, mean, var, gamma, beta, eps);
  for_each_plane(s, [&](int64_t n, int64_t c) {
    const ChannelAffine<T> affine = affines[c];
    const int64_t plane = n * s.channels + c;
    const T* __restrict xp = x + plane * s.inner;
    T* __restrict v = thread_plane<T>(s.inner);
    for (int64_t i = 0; i < s.inner; ++i) v[i] = affine.normalised(xp[i]);  // as normalise()
    detail::relu_maxpool_2x2_plane_argmax(y + plane * out_plane, argmax + plane * out_plane, v, w,
                                          out_h, out_w);
  });
}

template <typename T>
void maxpool2x2_relu_batchnorm_backward(T* dx, T* dgamma, T* dbeta, const T* dy,
                                        const int32_t* argmax, const T* x, const T* mean,
                                        const T* var, const T* gamma, const T* beta,
                                        const NormShape& s, int64_t h, int64_t w, T eps,
                                        bool batch_statistics) {
  if (reference_mode()) {
    const size_t n = static_cast<size_t>(s.batch * s.channels * s.inner);
    std::vector<T> v(n), g(n);
    batchnorm_forward(v.data(), x, mean, var, gamma, beta, s, eps);
    relu_maxpool2d_backward(g.data(), dy, v.data(), argmax,
                            make_pool_shape(s.batch, s.channels, h, w, 2, 2, 2, 2, 0, 0));
    return batchnorm_backward(dx, dgamma, dbeta, g.data(), x, mean, var, gamma, s, eps,
                              batch_statistics);
  }
  // The pooling's gradient (the ReLU's output gradient) made plane by plane where it is read;
  // the ReLU's mask then comes from x, as in batchnorm_relu_backward.
  const auto plane_dy = pooled_dy(dy, argmax, s, h, w);
  normalise_backward<T, true>(dx, dgamma, dbeta, plane_dy, plane_dy, x, mean, var, gamma, beta, s,
                              eps, batch_statistics);
}

namespace {

/// What maxpool2x2_relu_batchnorm_backward_by_image's images are made from.
struct PooledInputGradImages {
  InputGradTerms<float> terms;
  const float* dy;
  const int32_t* argmax;
  const float* x;
  NormShape s;
  int64_t h, w;
};

/// Image n's dx, plane by plane: the pooling's gradient made in the calling thread's plane,
/// then the input gradient's plane, as maxpool2x2_relu_batchnorm_backward's dx pass makes it.
void pooled_input_grad_image(const void* context, int64_t n, float* out) {
  const PooledInputGradImages& p = *static_cast<const PooledInputGradImages*>(context);
  for (int64_t c = 0; c < p.s.channels; ++c) {
    const int64_t plane = n * p.s.channels + c;
    p.terms.plane<true>(out + c * p.s.inner, pooled_gradient_plane(p.dy, p.argmax, plane, p.h, p.w),
                        p.x + plane * p.s.inner, p.s.inner, c);
  }
}

}  // namespace

bool maxpool2x2_relu_batchnorm_backward_by_image(
    float* dgamma, float* dbeta, const float* dy, const int32_t* argmax, const float* x,
    const float* mean, const float* var, const float* gamma, const float* beta, const NormShape& s,
    int64_t h, int64_t w, float eps, bool batch_statistics, ImageGradientSource* dx_images) {
  if (reference_mode()) return false;
  // The calling thread's: the images are made while it waits for the convolution's threads.
  thread_local PooledInputGradImages images;
  images = {backward_sums<float, true>(dgamma, dbeta, pooled_dy(dy, argmax, s, h, w), x, mean, var,
                                       gamma, beta, s, eps, batch_statistics),
            dy,
            argmax,
            x,
            s,
            h,
            w};
  *dx_images = {pooled_input_grad_image, &images};
  return true;
}

template <typename T>
void batchnorm_relu_mask(T* g, const T* dy, const T* x, const T* mean, const T* var, const T* gamma,
                         const T* beta, const NormShape& s, T eps) {
  if (reference_mode()) {
    // The reference forward's value, as ref::batchnorm_relu_backward recomputes it.
    ref::batchnorm_forward(g, x, mean, var, gamma, beta, s, eps);
    return ref::relu_backward(g, g, dy, s.batch * s.channels * s.inner);
  }
  const ChannelAffine<T>* const affines = channel_affines(s, mean, var, gamma, beta, eps);
  for_each_plane(s, [&](int64_t n, int64_t c) {
    const ChannelAffine<T> affine = affines[c];
    const int64_t offset = (n * s.channels + c) * s.inner;
    for (int64_t i = 0; i < s.inner; ++i)
      g[offset + i] = reaching<T, true>(dy[offset + i], x[offset + i], affine);
  });
}

namespace {

/// The two normalised branches of a residual block's end, per channel: batchnorm_add_relu's
/// sum at one value, formed by the expressions normalise() and add_forward use (no contraction
/// in this file), so that forward and mask agree with those ops and with each other bit for bit.
template <typename T>
struct BlockEnd {
  const T* a_x;
  const ChannelAffine<T>* a_affines;
  const T* b_x;                       // the shortcut BatchNorm's input, or the addend
  const ChannelAffine<T>* b_affines;  // null: b_x is the addend itself
  /// f(i, v) for each value i of the plane of `size` values at offset in channel c, v the sum
  /// there; the shortcut's kind is tested once a plane, not once a value.
  template <typename F>
  void each_sum(int64_t offset, int64_t size, int64_t c, const F& f) const {
    const ChannelAffine<T> fa = a_affines[c];
    const T* __restrict ap = a_x + offset;
    const T* __restrict bp = b_x + offset;
    if (b_affines) {
      const ChannelAffine<T> fb = b_affines[c];
      for (int64_t i = 0; i < size; ++i) f(i, fa.normalised(ap[i]) + fb.normalised(bp[i]));
      return;
    }
    for (int64_t i = 0; i < size; ++i) f(i, fa.normalised(ap[i]) + bp[i]);
  }
  /// y = v < 0 ? 0 : v over the plane of `size` values at offset in channel c, v the sum
  /// (add_forward's ReLU).
  void relu_sum_plane(T* y, int64_t offset, int64_t size, int64_t c) const {
    T* __restrict yp = y + offset;
    each_sum(offset, size, c, [yp](int64_t i, T v) { yp[i] = v < T(0) ? T(0) : v; });
  }
  /// g = v < 0 ? 0 : dy over the plane of `size` values at offset in channel c, v the sum
  /// (relu_backward's rule, NaN passing dy, as a bit mask: branch-free, as reaching()); g may
  /// alias dy.
  void mask_plane(T* g, const T* dy, int64_t offset, int64_t size, int64_t c) const {
    using Bits = std::conditional_t<sizeof(T) == 4, uint32_t, uint64_t>;
    const T* up = dy + offset;
    T* gp = g + offset;
    each_sum(offset, size, c, [up, gp](int64_t i, T v) {
      const Bits keep = Bits(0) - static_cast<Bits>(!(v < T(0)));
      gp[i] = std::bit_cast<T>(std::bit_cast<Bits>(up[i]) & keep);
    });
  }
};

template <typename T>
BlockEnd<T> block_end(const NormOperand<T>& a, const NormOperand<T>* b_norm, const T* addend,
                      const NormShape& s) {
  // Slots of their own: normalise_backward, which batchnorm_add_relu_backward runs beside
  // them, fills slot 0 with the body's affines without its beta.
  return {a.x, channel_affines<T, 1>(s, a.mean, a.var, a.gamma, a.beta, a.eps),
          b_norm ? b_norm->x : addend,
          b_norm ? channel_affines<T, 2>(s, b_norm->mean, b_norm->var, b_norm->gamma, b_norm->beta,
                                         b_norm->eps)
                 : nullptr};
}

/// The reference ops' sum, into v (all of s): ref::batchnorm_forward of each branch, then
/// ref::add_forward.
template <typename T>
void reference_block_sum(std::vector<T>& v, const NormOperand<T>& a, const NormOperand<T>* b_norm,
                         const T* addend, const NormShape& s) {
  const size_t n = static_cast<size_t>(s.batch * s.channels * s.inner);
  std::vector<T> va(n), vb(b_norm ? n : 0);
  ref::batchnorm_forward(va.data(), a.x, a.mean, a.var, a.gamma, a.beta, s, a.eps);
  if (b_norm) {
    ref::batchnorm_forward(vb.data(), b_norm->x, b_norm->mean, b_norm->var, b_norm->gamma,
                           b_norm->beta, s, b_norm->eps);
  }
  v.resize(n);
  ref::add_forward<T>(nullptr, v.data(), va.data(), b_norm ? vb.data() : addend,
                      static_cast<int64_t>(n), false);
}

}  // namespace

template <typename T>
void batchnorm_add_relu_forward(T* y, const NormOperand<T>& a, const NormOperand<T>* b_norm,
                                const T* addend, const NormShape& s) {
  if (reference_mode()) {
    std::vector<T> v;
    reference_block_sum(v, a, b_norm, addend, s);
    return ref::relu_forward(y, v.data(), s.batch * s.channels * s.inner);
  }
  const BlockEnd<T> end = block_end(a, b_norm, addend, s);
  for_each_plane(s, [&](int64_t n, int64_t c) {
    end.relu_sum_plane(y, (n * s.channels + c) * s.inner, s.inner, c);
  });
}

template <typename T>
void batchnorm_add_relu_mask(T* g, const T* dy, const NormOperand<T>& a,
                             const NormOperand<T>* b_norm, const T* addend, const NormShape& s) {
  if (reference_mode()) {
    std::vector<T> v;
    reference_block_sum(v, a, b_norm, addend, s);
    return ref::relu_backward(g, v.data(), dy, s.batch * s.channels * s.inner);
  }
  const BlockEnd<T> end = block_end(a, b_norm, addend, s);
  for_each_plane(s, [&](int64_t n, int64_t c) {
    end.mask_plane(g, dy, (n * s.channels + c) * s.inner, s.inner, c);
  });
}

template <typename T>
void batchnorm_add_relu_backward(T* g, T* dx, T* dgamma, T* dbeta, const T* dy,
                                 const NormOperand<T>& a, const NormOperand<T>* b_norm,
                                 const T* addend, const NormShape& s, bool batch_statistics) {
  if (reference_mode()) {
    batchnorm_add_relu_mask(g, dy, a, b_norm, addend, s);
    return ref::batchnorm_backward(dx, dgamma, dbeta, g, a.x, a.mean, a.var, a.gamma, s, a.eps,
                                   batch_statistics);
  }
  // The sums' pass makes each plane of g as it reads it; dx's pass reads g back.
  const BlockEnd<T> end = block_end(a, b_norm, addend, s);
  const auto masked_dy = [&](int64_t, int64_t c, int64_t offset) {
    end.mask_plane(g, dy, offset, s.inner, c);
    return static_cast<const T*>(g + offset);
  };
  normalise_backward<T, false>(dx, dgamma, dbeta, masked_dy, dense_dy<T>(g), a.x, a.mean, a.var,
                               a.gamma, nullptr, s, a.eps, batch_statistics);
}

#define CNN_INSTANTIATE_BATCHNORM(T)                                                              \
  template void batchnorm_statistics<T>(T*, T*, const T*, const NormShape&);                      \
  template void batchnorm_forward<T>(T*, const T*, const T*, const T*, const T*, const T*,        \
                                     const NormShape&, T);                                        \
  template void batchnorm_backward<T>(T*, T*, T*, const T*, const T*, const T*, const T*,         \
                                      const T*, const NormShape&, T, bool);                       \
  template void batchnorm_relu_forward<T>(T*, const T*, const T*, const T*, const T*, const T*,   \
                                          const NormShape&, T);                                   \
  template void batchnorm_relu_backward<T>(T*, T*, T*, const T*, const T*, const T*, const T*,    \
                                           const T*, const T*, const NormShape&, T, bool);        \
  template void batchnorm_relu_mask<T>(T*, const T*, const T*, const T*, const T*, const T*,      \
                                       const T*, const NormShape&, T);                            \
  template void batchnorm_relu_maxpool2x2_forward<T>(T*, int32_t*, const T*, const T*, const T*,  \
                                                     const T*, const T*, const NormShape&,        \
                                                     int64_t, int64_t, T);                        \
  template void maxpool2x2_relu_batchnorm_backward<T>(                                            \
      T*, T*, T*, const T*, const int32_t*, const T*, const T*, const T*, const T*, const T*,     \
      const NormShape&, int64_t, int64_t, T, bool);                                               \
  template void batchnorm_add_relu_forward<T>(T*, const NormOperand<T>&, const NormOperand<T>*,   \
                                              const T*, const NormShape&);                        \
  template void batchnorm_add_relu_mask<T>(T*, const T*, const NormOperand<T>&,                   \
                                           const NormOperand<T>*, const T*, const NormShape&);    \
  template void batchnorm_add_relu_backward<T>(T*, T*, T*, T*, const T*, const NormOperand<T>&,   \
                                               const NormOperand<T>*, const T*, const NormShape&, \
                                               bool);
CNN_INSTANTIATE_BATCHNORM(float)
CNN_INSTANTIATE_BATCHNORM(double)

}  // namespace cnn::ops

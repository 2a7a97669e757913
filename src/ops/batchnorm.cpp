// Default batch-normalisation path: channels split over the threads (each channel's statistics
// and outputs are its own, so any split gives the same bits), each channel's sums accumulated in
// double (as PyTorch's CPU kernels do), in 16 independent partial sums that the compiler keeps
// in vector registers. Float accumulators were tried first: the BatchNorm-bias gradients, sums
// that nearly cancel, then lost 3 digits, and five resnet steps ended 4000 times further from
// the float64 answer than PyTorch's float32 run (tests/test_golden.cpp). The closed
// form of the backward (two sums per channel, then one pass) replaces the reference's term by
// term chain rule. A ReLU after the BatchNorm can run in the same passes (LayerChain fuses the
// pair): its mask is recomputed from x by the very expression the forward used
// (`normalised`), and this file is compiled without floating-point contraction
// (CMakeLists.txt), so the recomputed values equal the forward's bit for bit.

#include <bit>
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "cnn/ops.hpp"
#include "cnn/ops_ref.hpp"
#include "parallel.hpp"

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

/// sum over i < n of f(i), in kLanes partial sums.
template <typename T, typename F>
inline double lane_sum(int64_t n, const F& f) {
  double partial[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int k = 0; k < kLanes; ++k) partial[k] += static_cast<double>(f(i + k));
  for (; i < n; ++i) partial[0] += static_cast<double>(f(i));
  return lane_total(partial);
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
  for (; i < n; ++i) {
    const T g = reaching<T, Relu>(dy[i], x[i], affine);
    a[0] += static_cast<double>(g);
    b[0] += static_cast<double>(g * (x[i] - m));
  }
  sum_dy += lane_total(a);
  sum_dy_centered += lane_total(b);
}

/// Threads for a pass over x: one below 16384 elements (the region costs more than it saves).
int team_for(const NormShape& s) {
  const int64_t n = s.batch * s.channels * s.inner;
  return n > 16384 ? static_cast<int>(std::min<int64_t>(threads(), s.channels)) : 1;
}

}  // namespace

template <typename T>
void batchnorm_statistics(T* mean, T* var, const T* x, const NormShape& s) {
  if (reference_mode()) return ref::batchnorm_statistics(mean, var, x, s);
  const double count = static_cast<double>(s.batch * s.inner);
  detail::for_each_range(team_for(s), s.channels, [&](int64_t first, int64_t last) {
    for (int64_t c = first; c < last; ++c) {
      double sum = 0;
      for (int64_t n = 0; n < s.batch; ++n) {
        const T* __restrict p = x + (n * s.channels + c) * s.inner;
        sum += lane_sum<T>(s.inner, [p](int64_t i) { return p[i]; });
      }
      const T m = static_cast<T>(sum / count);
      double squares = 0;
      for (int64_t n = 0; n < s.batch; ++n) {
        const T* __restrict p = x + (n * s.channels + c) * s.inner;
        squares += lane_sum<T>(s.inner, [p, m](int64_t i) { return (p[i] - m) * (p[i] - m); });
      }
      mean[c] = m;
      var[c] = static_cast<T>(squares / count);
    }
  });
}

namespace {

template <typename T, bool Relu>
void normalise(T* y, const T* x, const T* mean, const T* var, const T* gamma, const T* beta,
               const NormShape& s, T eps) {
  detail::for_each_range(team_for(s), s.channels, [&](int64_t first, int64_t last) {
    for (int64_t c = first; c < last; ++c) {
      const ChannelAffine<T> affine(c, mean, var, gamma, beta, eps);
      for (int64_t n = 0; n < s.batch; ++n) {
        const T* __restrict xp = x + (n * s.channels + c) * s.inner;
        T* __restrict yp = y + (n * s.channels + c) * s.inner;
        for (int64_t i = 0; i < s.inner; ++i) {
          const T v = affine.normalised(xp[i]);
          yp[i] = Relu && v < T(0) ? T(0) : v;  // the ReLU's rule (relu_forward)
        }
      }
    }
  });
}

template <typename T, bool Relu>
void normalise_backward(T* dx, T* dgamma, T* dbeta, const T* dy, const T* x, const T* mean,
                        const T* var, const T* gamma, const T* beta, const NormShape& s, T eps,
                        bool batch_statistics) {
  const double count = static_cast<double>(s.batch * s.inner);
  detail::for_each_range(team_for(s), s.channels, [&](int64_t first, int64_t last) {
    for (int64_t c = first; c < last; ++c) {
      const ChannelAffine<T> affine(c, mean, var, gamma, beta, eps);
      const T invstd = affine.invstd, scale = affine.scale;
      const T m = mean[c];
      double sum_dy = 0, sum_dy_centered = 0;
      for (int64_t n = 0; n < s.batch; ++n) {
        const T* __restrict xp = x + (n * s.channels + c) * s.inner;
        const T* __restrict gp = dy + (n * s.channels + c) * s.inner;
        lane_sums_dy<T, Relu>(s.inner, gp, xp, m, affine, sum_dy, sum_dy_centered);
      }
      const double sum_dy_xhat = sum_dy_centered * static_cast<double>(invstd);
      if (dgamma) dgamma[c] += static_cast<T>(sum_dy_xhat);
      if (dbeta) dbeta[c] += static_cast<T>(sum_dy);
      if (!dx) continue;
      // dx = scale (dy - mean(dy)) - (x - mean) a, a = scale invstd^2 mean(dy (x - mean)). The
      // centred x keeps the two terms from cancelling when |mean| is large against the spread
      // (a form dx = scale dy - a x + b lost 3 digits of the BatchNorm bias gradients of resnet).
      const T mean_dy = batch_statistics ? static_cast<T>(sum_dy / count) : T(0);
      const T a = batch_statistics
                      ? scale * static_cast<T>(sum_dy_centered / count) * invstd * invstd
                      : T(0);
      for (int64_t n = 0; n < s.batch; ++n) {
        const T* __restrict xp = x + (n * s.channels + c) * s.inner;
        const T* __restrict gp = dy + (n * s.channels + c) * s.inner;
        T* __restrict dp = dx + (n * s.channels + c) * s.inner;
        for (int64_t i = 0; i < s.inner; ++i) {
          const T g = reaching<T, Relu>(gp[i], xp[i], affine);
          dp[i] = (g - mean_dy) * scale - (xp[i] - m) * a;
        }
      }
    }
  });
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
  normalise_backward<T, false>(dx, dgamma, dbeta, dy, x, mean, var, gamma, nullptr, s, eps,
                               batch_statistics);
}

template <typename T>
void batchnorm_relu_backward(T* dx, T* dgamma, T* dbeta, const T* dy, const T* x, const T* mean,
                             const T* var, const T* gamma, const T* beta, const NormShape& s, T eps,
                             bool batch_statistics) {
  if (reference_mode()) {
    return ref::batchnorm_relu_backward(dx, dgamma, dbeta, dy, x, mean, var, gamma, beta, s, eps,
                                        batch_statistics);
  }
  normalise_backward<T, true>(dx, dgamma, dbeta, dy, x, mean, var, gamma, beta, s, eps,
                              batch_statistics);
}

template <typename T>
void batchnorm_relu_mask(T* g, const T* dy, const T* x, const T* mean, const T* var, const T* gamma,
                         const T* beta, const NormShape& s, T eps) {
  if (reference_mode()) {
    // The reference forward's value, as ref::batchnorm_relu_backward recomputes it.
    ref::batchnorm_forward(g, x, mean, var, gamma, beta, s, eps);
    return ref::relu_backward(g, g, dy, s.batch * s.channels * s.inner);
  }
  detail::for_each_range(team_for(s), s.channels, [&](int64_t first, int64_t last) {
    for (int64_t c = first; c < last; ++c) {
      const ChannelAffine<T> affine(c, mean, var, gamma, beta, eps);
      for (int64_t n = 0; n < s.batch; ++n) {
        const int64_t offset = (n * s.channels + c) * s.inner;
        for (int64_t i = 0; i < s.inner; ++i)
          g[offset + i] = reaching<T, true>(dy[offset + i], x[offset + i], affine);
      }
    }
  });
}

#define CNN_INSTANTIATE_BATCHNORM(T)                                                            \
  template void batchnorm_statistics<T>(T*, T*, const T*, const NormShape&);                    \
  template void batchnorm_forward<T>(T*, const T*, const T*, const T*, const T*, const T*,      \
                                     const NormShape&, T);                                      \
  template void batchnorm_backward<T>(T*, T*, T*, const T*, const T*, const T*, const T*,       \
                                      const T*, const NormShape&, T, bool);                     \
  template void batchnorm_relu_forward<T>(T*, const T*, const T*, const T*, const T*, const T*, \
                                          const NormShape&, T);                                 \
  template void batchnorm_relu_backward<T>(T*, T*, T*, const T*, const T*, const T*, const T*,  \
                                           const T*, const T*, const NormShape&, T, bool);      \
  template void batchnorm_relu_mask<T>(T*, const T*, const T*, const T*, const T*, const T*,    \
                                       const T*, const NormShape&, T);
CNN_INSTANTIATE_BATCHNORM(float)
CNN_INSTANTIATE_BATCHNORM(double)

}  // namespace cnn::ops

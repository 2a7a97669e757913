// Default batch-normalisation path: channels split over the threads (each channel's statistics
// and outputs are its own, so any split gives the same bits), each channel's sums accumulated in
// double (as PyTorch's CPU kernels do), in 16 independent partial sums that the compiler keeps
// in vector registers. Float accumulators were tried first: the BatchNorm-bias gradients, sums
// that nearly cancel, then lost 3 digits, and five resnet steps ended 4000 times further from
// the float64 answer than PyTorch's float32 run (tests/test_golden.cpp). The closed
// form of the backward (two sums per channel, then one pass) replaces the reference's term by
// term chain rule.

#include <cmath>

#include "cnn/ops.hpp"
#include "cnn/ops_ref.hpp"
#include "parallel.hpp"

namespace cnn::ops {

namespace {

constexpr int kLanes = 16;

/// sum over i < n of f(i), in kLanes partial sums.
template <typename T, typename F>
inline double lane_sum(int64_t n, const F& f) {
  double partial[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int k = 0; k < kLanes; ++k) partial[k] += static_cast<double>(f(i + k));
  for (; i < n; ++i) partial[0] += static_cast<double>(f(i));
  double total = 0;
  for (const double p : partial) total += p;
  return total;
}

/// sum of dy and of dy (x - m) over i < n, in one pass of kLanes partial sums each.
template <typename T>
inline void lane_sums_dy(int64_t n, const T* __restrict dy, const T* __restrict x, T m,
                         double& sum_dy, double& sum_dy_centered) {
  double a[kLanes] = {}, b[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int k = 0; k < kLanes; ++k) {
      a[k] += static_cast<double>(dy[i + k]);
      b[k] += static_cast<double>(dy[i + k] * (x[i + k] - m));
    }
  for (; i < n; ++i) {
    a[0] += static_cast<double>(dy[i]);
    b[0] += static_cast<double>(dy[i] * (x[i] - m));
  }
  for (int k = 0; k < kLanes; ++k) {
    sum_dy += a[k];
    sum_dy_centered += b[k];
  }
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

template <typename T>
void batchnorm_forward(T* y, const T* x, const T* mean, const T* var, const T* gamma, const T* beta,
                       const NormShape& s, T eps) {
  if (reference_mode()) return ref::batchnorm_forward(y, x, mean, var, gamma, beta, s, eps);
  detail::for_each_range(team_for(s), s.channels, [&](int64_t first, int64_t last) {
    for (int64_t c = first; c < last; ++c) {
      const T invstd = T(1) / std::sqrt(var[c] + eps);
      // y = x scale + shift: one multiply-add per element.
      const T scale = (gamma ? gamma[c] : T(1)) * invstd;
      const T shift = (beta ? beta[c] : T(0)) - mean[c] * scale;
      for (int64_t n = 0; n < s.batch; ++n) {
        const T* __restrict xp = x + (n * s.channels + c) * s.inner;
        T* __restrict yp = y + (n * s.channels + c) * s.inner;
        for (int64_t i = 0; i < s.inner; ++i) yp[i] = xp[i] * scale + shift;
      }
    }
  });
}

template <typename T>
void batchnorm_backward(T* dx, T* dgamma, T* dbeta, const T* dy, const T* x, const T* mean,
                        const T* var, const T* gamma, const NormShape& s, T eps,
                        bool batch_statistics) {
  if (reference_mode()) {
    return ref::batchnorm_backward(dx, dgamma, dbeta, dy, x, mean, var, gamma, s, eps,
                                   batch_statistics);
  }
  const double count = static_cast<double>(s.batch * s.inner);
  detail::for_each_range(team_for(s), s.channels, [&](int64_t first, int64_t last) {
    for (int64_t c = first; c < last; ++c) {
      const T invstd = T(1) / std::sqrt(var[c] + eps);
      const T m = mean[c];
      double sum_dy = 0, sum_dy_centered = 0;
      for (int64_t n = 0; n < s.batch; ++n) {
        const T* __restrict xp = x + (n * s.channels + c) * s.inner;
        const T* __restrict gp = dy + (n * s.channels + c) * s.inner;
        lane_sums_dy(s.inner, gp, xp, m, sum_dy, sum_dy_centered);
      }
      const double sum_dy_xhat = sum_dy_centered * static_cast<double>(invstd);
      if (dgamma) dgamma[c] += static_cast<T>(sum_dy_xhat);
      if (dbeta) dbeta[c] += static_cast<T>(sum_dy);
      if (!dx) continue;
      const T g = gamma ? gamma[c] : T(1);
      const T scale = g * invstd;
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
        for (int64_t i = 0; i < s.inner; ++i) dp[i] = (gp[i] - mean_dy) * scale - (xp[i] - m) * a;
      }
    }
  });
}

#define CNN_INSTANTIATE_BATCHNORM(T)                                                       \
  template void batchnorm_statistics<T>(T*, T*, const T*, const NormShape&);               \
  template void batchnorm_forward<T>(T*, const T*, const T*, const T*, const T*, const T*, \
                                     const NormShape&, T);                                 \
  template void batchnorm_backward<T>(T*, T*, T*, const T*, const T*, const T*, const T*,  \
                                      const T*, const NormShape&, T, bool);
CNN_INSTANTIATE_BATCHNORM(float)
CNN_INSTANTIATE_BATCHNORM(double)

}  // namespace cnn::ops

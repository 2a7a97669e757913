// Default batch-normalisation path: channels split over the threads (each channel's statistics
// and outputs are its own, so any split gives the same bits), each channel's planes summed with
// 16 independent partial sums (which the compiler keeps in vector registers) and every plane's
// total added in double, so that a channel of 10^6 values keeps float's precision. The closed
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
  T partial[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int k = 0; k < kLanes; ++k) partial[k] += f(i + k);
  for (; i < n; ++i) partial[0] += f(i);
  double total = 0;
  for (const T p : partial) total += static_cast<double>(p);
  return total;
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
        sum_dy += lane_sum<T>(s.inner, [gp](int64_t i) { return gp[i]; });
        sum_dy_centered +=
            lane_sum<T>(s.inner, [xp, gp, m](int64_t i) { return gp[i] * (xp[i] - m); });
      }
      const double sum_dy_xhat = sum_dy_centered * static_cast<double>(invstd);
      if (dgamma) dgamma[c] += static_cast<T>(sum_dy_xhat);
      if (dbeta) dbeta[c] += static_cast<T>(sum_dy);
      if (!dx) continue;
      const T g = gamma ? gamma[c] : T(1);
      const T scale = g * invstd;
      // dx = scale (dy - mean(dy) - (x - mean) invstd^2 mean(dy (x - mean))), as a (dy, x)
      // multiply-add per element: dx = scale dy - a x + b.
      const T mean_dy = batch_statistics ? static_cast<T>(sum_dy / count) : T(0);
      const T k =
          batch_statistics ? static_cast<T>(sum_dy_centered / count) * invstd * invstd : T(0);
      const T a = scale * k;
      const T b = scale * (k * m - mean_dy);
      for (int64_t n = 0; n < s.batch; ++n) {
        const T* __restrict xp = x + (n * s.channels + c) * s.inner;
        const T* __restrict gp = dy + (n * s.channels + c) * s.inner;
        T* __restrict dp = dx + (n * s.channels + c) * s.inner;
        for (int64_t i = 0; i < s.inner; ++i) dp[i] = gp[i] * scale - xp[i] * a + b;
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

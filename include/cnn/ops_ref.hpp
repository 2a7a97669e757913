#pragma once
// cnn::ref: the seed's equations as plain loops, templated on the scalar type. These are the
// oracle: every default-path kernel is tested against them, the contract checker runs them in
// double precision, and CNN_REFERENCE=1 makes a whole model use them. Clarity over speed.
// Shapes, layouts and the assign/accumulate contract are those of cnn/ops.hpp.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <vector>

#include "cnn/ops.hpp"
#include "cnn/rng.hpp"

namespace cnn::ref {

using ops::ConvShape;
using ops::DenseShape;
using ops::PoolShape;

// ---- convolution (the seed's Y_i = B_i + sum_j X_j * K_ij, with stride and zero padding) ----

/// Input element x[n, c, h, w] where (h, w) index the zero-padded input.
template <typename T>
T padded_input(const T* x, const ConvShape& s, int64_t n, int64_t c, int64_t h, int64_t w) {
  const int64_t ih = h - s.pad_h, iw = w - s.pad_w;
  if (ih < 0 || ih >= s.in_h || iw < 0 || iw >= s.in_w) return T(0);
  return x[((n * s.in_channels + c) * s.in_h + ih) * s.in_w + iw];
}

/// Forward: y[n, i] = B_i + sum_j X_j (*) K_ij, where (*) is the cross-correlation of the
/// padded input with the kernel, sampled every stride.
template <typename T>
void conv2d_forward(T* y, const T* x, const T* w, const T* b, const ConvShape& s) {
  for (int64_t n = 0; n < s.batch; ++n)
    for (int64_t i = 0; i < s.out_channels; ++i)
      for (int64_t oh = 0; oh < s.out_h; ++oh)
        for (int64_t ow = 0; ow < s.out_w; ++ow) {
          T sum = b ? b[i] : T(0);
          for (int64_t j = 0; j < s.in_channels; ++j)
            for (int64_t kh = 0; kh < s.kernel_h; ++kh)
              for (int64_t kw = 0; kw < s.kernel_w; ++kw)
                sum += padded_input(x, s, n, j, oh * s.stride_h + kh, ow * s.stride_w + kw) *
                       w[((i * s.in_channels + j) * s.kernel_h + kh) * s.kernel_w + kw];
          y[((n * s.out_channels + i) * s.out_h + oh) * s.out_w + ow] = sum;
        }
}

/// dL/dY "dilated" by the stride (stride - 1 zeros between neighbours) and "padded" by
/// kernel - 1 zeros on every side, read at (r, q) of that enlarged plane. This is the seed's
/// Padded(dL/dY), generalised to strides.
template <typename T>
T dilated_padded_dy(const T* dy, const ConvShape& s, int64_t n, int64_t i, int64_t r, int64_t q) {
  const int64_t dr = r - (s.kernel_h - 1), dq = q - (s.kernel_w - 1);  // undo the padding
  if (dr < 0 || dq < 0 || dr % s.stride_h != 0 || dq % s.stride_w != 0) return T(0);
  const int64_t oh = dr / s.stride_h, ow = dq / s.stride_w;  // undo the dilation
  if (oh >= s.out_h || ow >= s.out_w) return T(0);
  return dy[((n * s.out_channels + i) * s.out_h + oh) * s.out_w + ow];
}

/// Backward, the seed's three gradients:
///   dL/dK_ij = Conv(X_j, dL/dY_i)                 (accumulated into dw)
///   dL/dX_j  = sum_i Conv(Padded(dL/dY_i), rot180(K_ij))  (assigned to dx, cropped to the
///              unpadded input)
///   dL/dB_i  = sum(dL/dY_i)                        (accumulated into db)
template <typename T>
void conv2d_backward(T* dx, T* dw, T* db, const T* x, const T* w, const T* dy, const ConvShape& s) {
  const auto dy_at = [&](int64_t n, int64_t i, int64_t oh, int64_t ow) {
    return dy[((n * s.out_channels + i) * s.out_h + oh) * s.out_w + ow];
  };
  if (db) {
    for (int64_t i = 0; i < s.out_channels; ++i) {
      T sum = 0;
      for (int64_t n = 0; n < s.batch; ++n)
        for (int64_t oh = 0; oh < s.out_h; ++oh)
          for (int64_t ow = 0; ow < s.out_w; ++ow) sum += dy_at(n, i, oh, ow);
      db[i] += sum;
    }
  }
  for (int64_t i = 0; i < s.out_channels; ++i)
    for (int64_t j = 0; j < s.in_channels; ++j)
      for (int64_t kh = 0; kh < s.kernel_h; ++kh)
        for (int64_t kw = 0; kw < s.kernel_w; ++kw) {
          T sum = 0;
          for (int64_t n = 0; n < s.batch; ++n)
            for (int64_t oh = 0; oh < s.out_h; ++oh)
              for (int64_t ow = 0; ow < s.out_w; ++ow)
                sum += padded_input(x, s, n, j, oh * s.stride_h + kh, ow * s.stride_w + kw) *
                       dy_at(n, i, oh, ow);
          dw[((i * s.in_channels + j) * s.kernel_h + kh) * s.kernel_w + kw] += sum;
        }
  if (!dx) return;
  for (int64_t n = 0; n < s.batch; ++n)
    for (int64_t j = 0; j < s.in_channels; ++j)
      for (int64_t h = 0; h < s.in_h; ++h)
        for (int64_t v = 0; v < s.in_w; ++v) {
          // Position in the padded input; the full correlation of the padded, dilated dL/dY
          // with the rotated kernel gives the gradient of every padded-input position.
          const int64_t hp = h + s.pad_h, vp = v + s.pad_w;
          T sum = 0;
          for (int64_t i = 0; i < s.out_channels; ++i)
            for (int64_t rh = 0; rh < s.kernel_h; ++rh)
              for (int64_t rw = 0; rw < s.kernel_w; ++rw) {
                const T rotated =
                    w[((i * s.in_channels + j) * s.kernel_h + (s.kernel_h - 1 - rh)) * s.kernel_w +
                      (s.kernel_w - 1 - rw)];
                sum += dilated_padded_dy(dy, s, n, i, hp + rh, vp + rw) * rotated;
              }
          dx[((n * s.in_channels + j) * s.in_h + h) * s.in_w + v] = sum;
        }
}

// ---- max pooling -----------------------------------------------------------------------------

/// Forward: the window maximum; the first maximum in row-major order wins ties. Padding
/// positions never win (they are -infinity).
template <typename T>
void maxpool2d_forward(T* y, int32_t* argmax, const T* x, const PoolShape& s) {
  for (int64_t plane = 0; plane < s.batch * s.channels; ++plane) {
    const T* xp = x + plane * s.in_h * s.in_w;
    for (int64_t oh = 0; oh < s.out_h; ++oh)
      for (int64_t ow = 0; ow < s.out_w; ++ow) {
        T best = -std::numeric_limits<T>::infinity();
        int64_t best_index = -1;
        for (int64_t kh = 0; kh < s.kernel_h; ++kh)
          for (int64_t kw = 0; kw < s.kernel_w; ++kw) {
            const int64_t h = oh * s.stride_h - s.pad_h + kh, w = ow * s.stride_w - s.pad_w + kw;
            if (h < 0 || h >= s.in_h || w < 0 || w >= s.in_w) continue;
            const T value = xp[h * s.in_w + w];
            // NaN propagates like PyTorch: a NaN is taken and then kept.
            if (best_index < 0 || value > best || (std::isnan(value) && !std::isnan(best))) {
              best = value;
              best_index = h * s.in_w + w;
            }
          }
        const int64_t o = (plane * s.out_h + oh) * s.out_w + ow;
        y[o] = best;
        if (argmax) argmax[o] = static_cast<int32_t>(best_index);
      }
  }
}

/// Backward: only the elements chosen in forward receive the gradient; all others are zero.
template <typename T>
void maxpool2d_backward(T* dx, const T* dy, const int32_t* argmax, const PoolShape& s) {
  std::fill(dx, dx + s.batch * s.channels * s.in_h * s.in_w, T(0));
  for (int64_t plane = 0; plane < s.batch * s.channels; ++plane)
    for (int64_t o = 0; o < s.out_h * s.out_w; ++o) {
      const int64_t k = plane * s.out_h * s.out_w + o;
      dx[plane * s.in_h * s.in_w + argmax[k]] += dy[k];
    }
}

// ---- average pooling -------------------------------------------------------------------------

/// The number an average-pooling window divides by (PyTorch's AvgPool2d, ceil_mode off): the
/// kernel's area when padding counts, else the window's positions inside the input.
inline int64_t avgpool_divisor(const PoolShape& s, int64_t oh, int64_t ow, bool count_include_pad) {
  if (count_include_pad) return s.kernel_h * s.kernel_w;
  const int64_t h0 = std::max<int64_t>(oh * s.stride_h - s.pad_h, 0);
  const int64_t h1 = std::min<int64_t>(oh * s.stride_h - s.pad_h + s.kernel_h, s.in_h);
  const int64_t w0 = std::max<int64_t>(ow * s.stride_w - s.pad_w, 0);
  const int64_t w1 = std::min<int64_t>(ow * s.stride_w - s.pad_w + s.kernel_w, s.in_w);
  return (h1 - h0) * (w1 - w0);
}

/// Forward: the sum of the window's elements inside the input (padding adds zeros) over
/// avgpool_divisor.
template <typename T>
void avgpool2d_forward(T* y, const T* x, const PoolShape& s, bool count_include_pad) {
  for (int64_t plane = 0; plane < s.batch * s.channels; ++plane) {
    const T* xp = x + plane * s.in_h * s.in_w;
    for (int64_t oh = 0; oh < s.out_h; ++oh)
      for (int64_t ow = 0; ow < s.out_w; ++ow) {
        T sum = 0;
        for (int64_t kh = 0; kh < s.kernel_h; ++kh)
          for (int64_t kw = 0; kw < s.kernel_w; ++kw) {
            const int64_t h = oh * s.stride_h - s.pad_h + kh, w = ow * s.stride_w - s.pad_w + kw;
            if (h >= 0 && h < s.in_h && w >= 0 && w < s.in_w) sum += xp[h * s.in_w + w];
          }
        y[(plane * s.out_h + oh) * s.out_w + ow] =
            sum / static_cast<T>(avgpool_divisor(s, oh, ow, count_include_pad));
      }
  }
}

/// Backward: every element inside a window receives dy / divisor (summed over the windows
/// that hold it).
template <typename T>
void avgpool2d_backward(T* dx, const T* dy, const PoolShape& s, bool count_include_pad) {
  std::fill(dx, dx + s.batch * s.channels * s.in_h * s.in_w, T(0));
  for (int64_t plane = 0; plane < s.batch * s.channels; ++plane) {
    T* dxp = dx + plane * s.in_h * s.in_w;
    for (int64_t oh = 0; oh < s.out_h; ++oh)
      for (int64_t ow = 0; ow < s.out_w; ++ow) {
        const T share = dy[(plane * s.out_h + oh) * s.out_w + ow] /
                        static_cast<T>(avgpool_divisor(s, oh, ow, count_include_pad));
        for (int64_t kh = 0; kh < s.kernel_h; ++kh)
          for (int64_t kw = 0; kw < s.kernel_w; ++kw) {
            const int64_t h = oh * s.stride_h - s.pad_h + kh, w = ow * s.stride_w - s.pad_w + kw;
            if (h >= 0 && h < s.in_h && w >= 0 && w < s.in_w) dxp[h * s.in_w + w] += share;
          }
      }
  }
}

/// Global average pooling: y (planes) = the mean of each plane of x (planes, size).
template <typename T>
void global_avgpool_forward(T* y, const T* x, int64_t planes, int64_t size) {
  for (int64_t p = 0; p < planes; ++p) {
    T sum = 0;
    for (int64_t i = 0; i < size; ++i) sum += x[p * size + i];
    y[p] = sum / static_cast<T>(size);
  }
}
/// dx (planes, size) = dy (planes) / size, spread over each plane.
template <typename T>
void global_avgpool_backward(T* dx, const T* dy, int64_t planes, int64_t size) {
  for (int64_t p = 0; p < planes; ++p)
    std::fill(dx + p * size, dx + (p + 1) * size, dy[p] / static_cast<T>(size));
}

// ---- residual addition -----------------------------------------------------------------------

/// sum = a + b; y = RELU(sum) with `relu`, else y = sum; sum may be null.
template <typename T>
void add_forward(T* sum, T* y, const T* a, const T* b, int64_t n, bool relu) {
  for (int64_t k = 0; k < n; ++k) {
    const T s = a[k] + b[k];
    if (sum) sum[k] = s;
    y[k] = relu && s < T(0) ? T(0) : s;
  }
}
/// dx += g.
template <typename T>
void accumulate(T* dx, const T* g, int64_t n) {
  for (int64_t k = 0; k < n; ++k) dx[k] += g[k];
}

// ---- batch normalisation ---------------------------------------------------------------------

/// mean[c] = 1/M sum x, var[c] = 1/M sum (x - mean)^2 over the M = batch * inner values of
/// channel c (the biased variance). Sums in double: a channel holds up to millions of values.
template <typename T>
void batchnorm_statistics(T* mean, T* var, const T* x, const ops::NormShape& s) {
  const double count = static_cast<double>(s.batch * s.inner);
  for (int64_t c = 0; c < s.channels; ++c) {
    double sum = 0;
    for (int64_t n = 0; n < s.batch; ++n)
      for (int64_t i = 0; i < s.inner; ++i) sum += x[(n * s.channels + c) * s.inner + i];
    const T m = static_cast<T>(sum / count);
    double squares = 0;
    for (int64_t n = 0; n < s.batch; ++n)
      for (int64_t i = 0; i < s.inner; ++i) {
        const double d = double(x[(n * s.channels + c) * s.inner + i]) - double(m);
        squares += d * d;
      }
    mean[c] = m;
    var[c] = static_cast<T>(squares / count);
  }
}
/// y = (x - mean) / sqrt(var + eps) * gamma + beta, per channel.
template <typename T>
void batchnorm_forward(T* y, const T* x, const T* mean, const T* var, const T* gamma, const T* beta,
                       const ops::NormShape& s, T eps) {
  for (int64_t n = 0; n < s.batch; ++n)
    for (int64_t c = 0; c < s.channels; ++c) {
      const T invstd = T(1) / std::sqrt(var[c] + eps);
      const T g = gamma ? gamma[c] : T(1), b = beta ? beta[c] : T(0);
      for (int64_t i = 0; i < s.inner; ++i) {
        const int64_t k = (n * s.channels + c) * s.inner + i;
        y[k] = (x[k] - mean[c]) * invstd * g + b;
      }
    }
}
/// The chain rule through batchnorm_forward, term by term: with batch statistics, also through
/// mean and var as functions of x (dvar, dmean), the textbook derivation. Sums in double.
template <typename T>
void batchnorm_backward(T* dx, T* dgamma, T* dbeta, const T* dy, const T* x, const T* mean,
                        const T* var, const T* gamma, const ops::NormShape& s, T eps,
                        bool batch_statistics) {
  const double count = static_cast<double>(s.batch * s.inner);
  for (int64_t c = 0; c < s.channels; ++c) {
    const double invstd = 1.0 / std::sqrt(double(var[c]) + double(eps));
    const double g = gamma ? double(gamma[c]) : 1.0, m = double(mean[c]);
    double sum_dy = 0, sum_dy_xhat = 0, dvar = 0, dmean = 0, sum_centered = 0;
    for (int64_t n = 0; n < s.batch; ++n)
      for (int64_t i = 0; i < s.inner; ++i) {
        const int64_t k = (n * s.channels + c) * s.inner + i;
        const double centered = double(x[k]) - m, up = double(dy[k]);
        sum_dy += up;
        sum_dy_xhat += up * centered * invstd;
        // dL/dxhat = dy g; xhat = (x - mean) (var + eps)^(-1/2).
        dvar += up * g * centered * -0.5 * invstd * invstd * invstd;
        dmean += -up * g * invstd;
        sum_centered += centered;  // zero in exact arithmetic, kept as the chain rule has it
      }
    if (dgamma) dgamma[c] += static_cast<T>(sum_dy_xhat);
    if (dbeta) dbeta[c] += static_cast<T>(sum_dy);
    if (!dx) continue;
    dmean += dvar * -2.0 * sum_centered / count;
    for (int64_t n = 0; n < s.batch; ++n)
      for (int64_t i = 0; i < s.inner; ++i) {
        const int64_t k = (n * s.channels + c) * s.inner + i;
        double v = double(dy[k]) * g * invstd;
        if (batch_statistics) v += dvar * 2.0 * (double(x[k]) - m) / count + dmean / count;
        dx[k] = static_cast<T>(v);
      }
  }
}

// ---- activations -----------------------------------------------------------------------------

/// Inverted dropout (PyTorch's nn.Dropout in training): each element dropped where the next
/// uniform() of rng is below p, the others scaled by 1 / (1 - p); the mask first, in element
/// order, then the products.
template <typename T>
void dropout_forward(T* y, T* mask, const T* x, int64_t n, double p, Rng& rng) {
  const T scale = T(1) / static_cast<T>(1 - p);
  for (int64_t k = 0; k < n; ++k) mask[k] = rng.uniform() < p ? T(0) : scale;
  for (int64_t k = 0; k < n; ++k) y[k] = x[k] * mask[k];
}
/// y = x * mask.
template <typename T>
void dropout_apply(T* y, const T* x, const T* mask, int64_t n) {
  for (int64_t k = 0; k < n; ++k) y[k] = x[k] * mask[k];
}

/// RELU(x) = 0 if x < 0, x if x >= 0.
template <typename T>
void relu_forward(T* y, const T* x, int64_t n) {
  for (int64_t k = 0; k < n; ++k) y[k] = x[k] < T(0) ? T(0) : x[k];
}
/// RELU'(x) = 0 if x < 0, 1 if x >= 0 (the seed's convention at 0).
template <typename T>
void relu_backward(T* dx, const T* x, const T* dy, int64_t n) {
  for (int64_t k = 0; k < n; ++k) dx[k] = x[k] < T(0) ? T(0) : dy[k];
}
/// LeakyReLU(x) = x if x > 0, negative_slope * x otherwise (PyTorch's nn.LeakyReLU).
template <typename T>
void leaky_relu_forward(T* y, const T* x, int64_t n, T negative_slope) {
  for (int64_t k = 0; k < n; ++k) y[k] = x[k] > T(0) ? x[k] : x[k] * negative_slope;
}
/// LeakyReLU'(x) = 1 if x > 0, negative_slope if x <= 0. At x = 0 this is PyTorch's value
/// (its autograd gives negative_slope there, checked with torch 1.13), not the seed ReLU's 1:
/// the layer is PyTorch's, so its golden gradients hold it to PyTorch's convention.
template <typename T>
void leaky_relu_backward(T* dx, const T* x, const T* dy, int64_t n, T negative_slope) {
  for (int64_t k = 0; k < n; ++k) dx[k] = x[k] > T(0) ? dy[k] : dy[k] * negative_slope;
}
/// ReLU6(x) = min(max(x, 0), 6) (PyTorch's nn.ReLU6, Hardtanh(0, 6)); written as two
/// comparisons so that a NaN passes through as ReLU's does.
template <typename T>
void relu6_forward(T* y, const T* x, int64_t n) {
  for (int64_t k = 0; k < n; ++k) y[k] = x[k] < T(0) ? T(0) : (x[k] > T(6) ? T(6) : x[k]);
}
/// ReLU6'(x) = 1 if 0 < x < 6, else 0: at both kinks, x = 0 and x = 6, the derivative is 0, as
/// PyTorch's autograd gives (hardtanh_backward, checked with torch 1.13).
template <typename T>
void relu6_backward(T* dx, const T* x, const T* dy, int64_t n) {
  for (int64_t k = 0; k < n; ++k) dx[k] = x[k] > T(0) && x[k] < T(6) ? dy[k] : T(0);
}
/// batchnorm_forward, then relu_forward of its output.
template <typename T>
void batchnorm_relu_forward(T* y, const T* x, const T* mean, const T* var, const T* gamma,
                            const T* beta, const ops::NormShape& s, T eps) {
  ref::batchnorm_forward(y, x, mean, var, gamma, beta, s, eps);
  ref::relu_forward(y, y, s.batch * s.channels * s.inner);
}
/// relu_backward through the recomputed batchnorm_forward, then batchnorm_backward.
template <typename T>
void batchnorm_relu_backward(T* dx, T* dgamma, T* dbeta, const T* dy, const T* x, const T* mean,
                             const T* var, const T* gamma, const T* beta, const ops::NormShape& s,
                             T eps, bool batch_statistics) {
  const int64_t n = s.batch * s.channels * s.inner;
  std::vector<T> v(static_cast<size_t>(n)), g(static_cast<size_t>(n));
  ref::batchnorm_forward(v.data(), x, mean, var, gamma, beta, s, eps);
  ref::relu_backward(g.data(), v.data(), dy, n);
  ref::batchnorm_backward(dx, dgamma, dbeta, g.data(), x, mean, var, gamma, s, eps,
                          batch_statistics);
}
/// f(x) = (e^x - e^-x) / (e^x + e^-x), evaluated by std::tanh, which equals it and stays finite
/// where e^x overflows.
template <typename T>
void tanh_forward(T* y, const T* x, int64_t n) {
  for (int64_t k = 0; k < n; ++k) y[k] = std::tanh(x[k]);
}
/// f'(x) = 1 - tanh^2(x).
template <typename T>
void tanh_backward(T* dx, const T* y, const T* dy, int64_t n) {
  for (int64_t k = 0; k < n; ++k) dx[k] = dy[k] * (T(1) - y[k] * y[k]);
}
/// sigma(x) = 1 / (1 + e^-x), written per sign so that exp never overflows.
template <typename T>
void sigmoid_forward(T* y, const T* x, int64_t n) {
  for (int64_t k = 0; k < n; ++k) {
    if (x[k] >= T(0)) {
      y[k] = T(1) / (T(1) + std::exp(-x[k]));
    } else {
      const T e = std::exp(x[k]);
      y[k] = e / (T(1) + e);
    }
  }
}
/// sigma'(x) = sigma(x) (1 - sigma(x)).
template <typename T>
void sigmoid_backward(T* dx, const T* y, const T* dy, int64_t n) {
  for (int64_t k = 0; k < n; ++k) dx[k] = dy[k] * y[k] * (T(1) - y[k]);
}

/// sigma(z)_i = e^{z_i} / sum_j e^{z_j} along axis 1; the maximum is subtracted first, which
/// leaves the value unchanged and keeps e^z finite.
template <typename T>
void softmax_forward(T* y, const T* x, int64_t outer, int64_t channels, int64_t inner) {
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t r = 0; r < inner; ++r) {
      const T* xo = x + o * channels * inner + r;
      T* yo = y + o * channels * inner + r;
      T max = xo[0];
      for (int64_t c = 1; c < channels; ++c) max = std::max(max, xo[c * inner]);
      T sum = 0;
      for (int64_t c = 0; c < channels; ++c) sum += std::exp(xo[c * inner] - max);
      for (int64_t c = 0; c < channels; ++c) yo[c * inner] = std::exp(xo[c * inner] - max) / sum;
    }
}
/// The seed's Jacobian written out: d sigma_i / d z_j = sigma_i (delta_ij - sigma_j), and
/// dx_j = sum_i dy_i d sigma_i / d z_j. (E.g. d sigma_1/d z_1 = e^z1 (e^z2 + e^z3) / (sum)^2.)
template <typename T>
void softmax_backward(T* dx, const T* y, const T* dy, int64_t outer, int64_t channels,
                      int64_t inner) {
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t r = 0; r < inner; ++r) {
      const int64_t base = o * channels * inner + r;
      for (int64_t j = 0; j < channels; ++j) {
        T sum = 0;
        for (int64_t i = 0; i < channels; ++i) {
          const T yi = y[base + i * inner], yj = y[base + j * inner];
          const T jacobian = yi * ((i == j ? T(1) : T(0)) - yj);
          sum += dy[base + i * inner] * jacobian;
        }
        dx[base + j * inner] = sum;
      }
    }
}

// ---- dense -----------------------------------------------------------------------------------

/// y[n, o] = b[o] + sum_i x[n, i] w[o, i].
template <typename T>
void dense_forward(T* y, const T* x, const T* w, const T* b, const DenseShape& s) {
  for (int64_t n = 0; n < s.batch; ++n)
    for (int64_t o = 0; o < s.out_features; ++o) {
      T sum = b ? b[o] : T(0);
      for (int64_t i = 0; i < s.in_features; ++i)
        sum += x[n * s.in_features + i] * w[o * s.in_features + i];
      y[n * s.out_features + o] = sum;
    }
}
/// dx[n, i] = sum_o dy[n, o] w[o, i]; dw[o, i] += sum_n dy[n, o] x[n, i]; db[o] += sum_n dy[n, o].
template <typename T>
void dense_backward(T* dx, T* dw, T* db, const T* x, const T* w, const T* dy, const DenseShape& s) {
  for (int64_t o = 0; o < s.out_features; ++o) {
    T bias_sum = 0;
    for (int64_t n = 0; n < s.batch; ++n) bias_sum += dy[n * s.out_features + o];
    if (db) db[o] += bias_sum;
    for (int64_t i = 0; i < s.in_features; ++i) {
      T sum = 0;
      for (int64_t n = 0; n < s.batch; ++n)
        sum += dy[n * s.out_features + o] * x[n * s.in_features + i];
      dw[o * s.in_features + i] += sum;
    }
  }
  if (!dx) return;
  for (int64_t n = 0; n < s.batch; ++n)
    for (int64_t i = 0; i < s.in_features; ++i) {
      T sum = 0;
      for (int64_t o = 0; o < s.out_features; ++o)
        sum += dy[n * s.out_features + o] * w[o * s.in_features + i];
      dx[n * s.in_features + i] = sum;
    }
}

// ---- losses ----------------------------------------------------------------------------------

/// H = -1/N sum_i y_i log(p_i) + (1 - y_i) log(1 - p_i), p clamped to [eps, 1 - eps].
template <typename T>
T log_loss_forward(const T* p, const T* t, int64_t n, T eps) {
  T sum = 0;
  for (int64_t k = 0; k < n; ++k) {
    const T q = std::clamp(p[k], eps, T(1) - eps);
    sum += t[k] * std::log(q) + (T(1) - t[k]) * std::log(T(1) - q);
  }
  return -sum / static_cast<T>(n);
}
/// dH/dp = 1/N ((1 - y_true) / (1 - y_pred) - y_true / y_pred), at the clamped y_pred.
template <typename T>
void log_loss_backward(T* dp, const T* p, const T* t, int64_t n, T eps) {
  const T inv_n = T(1) / static_cast<T>(n);
  for (int64_t k = 0; k < n; ++k) {
    const T q = std::clamp(p[k], eps, T(1) - eps);
    dp[k] = inv_n * ((T(1) - t[k]) / (T(1) - q) - t[k] / q);
  }
}

/// log sum_k exp(z_k), with the maximum subtracted first.
template <typename T>
T log_sum_exp(const T* z, int64_t classes) {
  T max = z[0];
  for (int64_t k = 1; k < classes; ++k) max = std::max(max, z[k]);
  T sum = 0;
  for (int64_t k = 0; k < classes; ++k) sum += std::exp(z[k] - max);
  return max + std::log(sum);
}
/// The type a loss's value is summed in: double for float. A batch of float losses near
/// float's largest value summed to inf in float (found 2026-12-06: `cnn eval` of a model
/// whose logits reach 3e37 read a test loss of inf); a sample's loss, log_sum_exp(z) -
/// z[label], can itself pass float's range for finite logits. Only the reported value
/// changes: the gradients are computed as before.
template <typename T>
using LossSum = std::conditional_t<(sizeof(T) < sizeof(double)), double, T>;
/// Mean over the batch of -log softmax(z)[label] = log_sum_exp(z) - z[label].
template <typename T>
T cross_entropy_forward(const T* logits, const int32_t* labels, int64_t batch, int64_t classes) {
  LossSum<T> sum = 0;
  for (int64_t n = 0; n < batch; ++n) {
    const T* z = logits + n * classes;
    sum += LossSum<T>(log_sum_exp(z, classes)) - LossSum<T>(z[labels[n]]);
  }
  return static_cast<T>(sum / static_cast<LossSum<T>>(batch));
}
/// (softmax(z) - onehot(label)) / N.
template <typename T>
void cross_entropy_backward(T* dlogits, const T* logits, const int32_t* labels, int64_t batch,
                            int64_t classes) {
  for (int64_t n = 0; n < batch; ++n) {
    const T* z = logits + n * classes;
    const T lse = log_sum_exp(z, classes);
    for (int64_t k = 0; k < classes; ++k) {
      const T onehot = k == labels[n] ? T(1) : T(0);
      dlogits[n * classes + k] = (std::exp(z[k] - lse) - onehot) / static_cast<T>(batch);
    }
  }
}
/// Mean over the batch of -sum_k t_k (z_k - log_sum_exp(z)).
template <typename T>
T cross_entropy_soft_forward(const T* logits, const T* targets, int64_t batch, int64_t classes) {
  LossSum<T> sum = 0;
  for (int64_t n = 0; n < batch; ++n) {
    const T* z = logits + n * classes;
    const LossSum<T> lse = log_sum_exp(z, classes);
    for (int64_t k = 0; k < classes; ++k)
      sum -= LossSum<T>(targets[n * classes + k]) * (LossSum<T>(z[k]) - lse);
  }
  return static_cast<T>(sum / static_cast<LossSum<T>>(batch));
}
/// (softmax(z) sum_k t_k - t) / N.
template <typename T>
void cross_entropy_soft_backward(T* dlogits, const T* logits, const T* targets, int64_t batch,
                                 int64_t classes) {
  for (int64_t n = 0; n < batch; ++n) {
    const T* z = logits + n * classes;
    const T* t = targets + n * classes;
    const T lse = log_sum_exp(z, classes);
    T target_sum = 0;
    for (int64_t k = 0; k < classes; ++k) target_sum += t[k];
    for (int64_t k = 0; k < classes; ++k)
      dlogits[n * classes + k] = (std::exp(z[k] - lse) * target_sum - t[k]) / static_cast<T>(batch);
  }
}
/// 1/n sum (p - t)^2.
template <typename T>
T mse_forward(const T* p, const T* t, int64_t n) {
  LossSum<T> sum = 0;
  for (int64_t k = 0; k < n; ++k) {
    const LossSum<T> d = LossSum<T>(p[k]) - LossSum<T>(t[k]);
    sum += d * d;
  }
  return static_cast<T>(sum / static_cast<LossSum<T>>(n));
}
/// 2 (p - t) / n.
template <typename T>
void mse_backward(T* dp, const T* p, const T* t, int64_t n) {
  for (int64_t k = 0; k < n; ++k) dp[k] = T(2) * (p[k] - t[k]) / static_cast<T>(n);
}

}  // namespace cnn::ref

// Default paths of the activations, softmax and losses. ReLU, LeakyReLU and ReLU6 have their own
// non-aliasing loops (map_elementwise); tanh and the sigmoid in float their own formulas, one
// set per instruction set (activation_lanes.hpp); the other element-wise references, and those
// two in double, are single passes that the default calls in chunks; softmax's backward uses the
// O(C) form y * (dy - sum(y * dy)) of the Jacobian product instead of the reference's O(C^2)
// explicit Jacobian.

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "activation_lanes.hpp"
#include "cnn/ops.hpp"
#include "cnn/ops_ref.hpp"
#include "isa_tables.hpp"
#include "parallel.hpp"

namespace cnn::detail {
const FloatActivationKernels& float_activation_kernels() {
  return table_for_isa(float_activations_avx512, float_activations_avx2,
                       float_activations_portable);
}
}  // namespace cnn::detail

namespace cnn::ops {

/// Runs body(first, count) over [0, n) in contiguous chunks, one per thread when n is large
/// enough to pay for the threads. Element-wise work: the result never depends on the split.
template <typename Body>
void for_chunks(int64_t n, const Body& body) {
  constexpr int64_t kMinPerThread = int64_t{1} << 15;
  const int team = static_cast<int>(std::min<int64_t>(threads(), n / kMinPerThread));
  detail::for_each_range(team, n, [&](int64_t first, int64_t last) { body(first, last - first); });
}

template <typename T>
void copy_images(T* y, const T* x, int64_t n, int64_t batch) {
  // From element_parts' bar (lower than for_chunks': a line that one thread copies of another's
  // images costs a round trip between the cores), the threads split the images as the kernels
  // do.
  const int team = detail::element_parts(n, static_cast<int>(std::min<int64_t>(threads(), batch)));
  if (team < 2) return static_cast<void>(std::copy(x, x + n, y));
  const int64_t per_image = n / batch;
  detail::for_each_range(team, batch, [&](int64_t first, int64_t last) {
    std::copy(x + first * per_image, x + last * per_image, y + first * per_image);
  });
}

// ReLU is the hottest element-wise op, and LeakyReLU and ReLU6 stand where it does in a
// network: the same loops as the references, with the pointers declared non-aliasing so that the
// compiler vectorises them. `f` is inlined into the loop.

/// y[k] = f(x[k]) for k in [0, n), split over the threads in chunks.
template <typename T, typename F>
void map_elementwise(T* y, const T* x, int64_t n, const F& f) {
  for_chunks(n, [&](int64_t first, int64_t count) {
    const F op = f;  // a local copy: what f captured cannot be one of the stores
    T* __restrict out = y + first;
    const T* __restrict in = x + first;
    for (int64_t k = 0; k < count; ++k) out[k] = op(in[k]);
  });
}
/// dx[k] = f(x[k], dy[k]) for k in [0, n). Every dy[k] is loaded, whatever f selects, so that
/// the select vectorises.
template <typename T, typename F>
void map_elementwise(T* dx, const T* x, const T* dy, int64_t n, const F& f) {
  for_chunks(n, [&](int64_t first, int64_t count) {
    T* __restrict out = dx + first;
    const T* __restrict in = x + first;
    const T* __restrict up = dy + first;
    const F op = f;
    for (int64_t k = 0; k < count; ++k) out[k] = op(in[k], up[k]);
  });
}

template <typename T>
void relu_forward(T* y, const T* x, int64_t n) {
  if (reference_mode()) return ref::relu_forward(y, x, n);
  map_elementwise(y, x, n, [](T v) { return v < T(0) ? T(0) : v; });
}
template <typename T>
void relu_backward(T* dx, const T* x, const T* dy, int64_t n) {
  if (reference_mode()) return ref::relu_backward(dx, x, dy, n);
  map_elementwise(dx, x, dy, n, [](T v, T upstream) { return v < T(0) ? T(0) : upstream; });
}
template <typename T>
void leaky_relu_forward(T* y, const T* x, int64_t n, T negative_slope) {
  if (reference_mode()) return ref::leaky_relu_forward(y, x, n, negative_slope);
  map_elementwise(y, x, n, [negative_slope](T v) { return v > T(0) ? v : v * negative_slope; });
}
template <typename T>
void leaky_relu_backward(T* dx, const T* x, const T* dy, int64_t n, T negative_slope) {
  if (reference_mode()) return ref::leaky_relu_backward(dx, x, dy, n, negative_slope);
  map_elementwise(dx, x, dy, n, [negative_slope](T v, T upstream) {
    return v > T(0) ? upstream : upstream * negative_slope;
  });
}
template <typename T>
void relu6_forward(T* y, const T* x, int64_t n) {
  if (reference_mode()) return ref::relu6_forward(y, x, n);
  map_elementwise(y, x, n, [](T v) { return v < T(0) ? T(0) : (v > T(6) ? T(6) : v); });
}
template <typename T>
void relu6_backward(T* dx, const T* x, const T* dy, int64_t n) {
  if (reference_mode()) return ref::relu6_backward(dx, x, dy, n);
  map_elementwise(dx, x, dy, n,
                  [](T v, T upstream) { return v > T(0) && v < T(6) ? upstream : T(0); });
}
template <typename T>
void tanh_forward(T* y, const T* x, int64_t n) {
  if constexpr (std::is_same_v<T, float>) {
    if (!reference_mode()) {
      const detail::FloatActivationKernels& kernels = detail::float_activation_kernels();
      return for_chunks(
          n, [&](int64_t first, int64_t count) { kernels.tanh(y + first, x + first, count); });
    }
  }
  for_chunks(n,
             [&](int64_t first, int64_t count) { ref::tanh_forward(y + first, x + first, count); });
}
template <typename T>
void tanh_backward(T* dx, const T* y, const T* dy, int64_t n) {
  for_chunks(n, [&](int64_t first, int64_t count) {
    ref::tanh_backward(dx + first, y + first, dy + first, count);
  });
}
template <typename T>
void sigmoid_forward(T* y, const T* x, int64_t n) {
  if constexpr (std::is_same_v<T, float>) {
    if (!reference_mode()) {
      const detail::FloatActivationKernels& kernels = detail::float_activation_kernels();
      return for_chunks(
          n, [&](int64_t first, int64_t count) { kernels.sigmoid(y + first, x + first, count); });
    }
  }
  for_chunks(
      n, [&](int64_t first, int64_t count) { ref::sigmoid_forward(y + first, x + first, count); });
}
template <typename T>
void sigmoid_backward(T* dx, const T* y, const T* dy, int64_t n) {
  for_chunks(n, [&](int64_t first, int64_t count) {
    ref::sigmoid_backward(dx + first, y + first, dy + first, count);
  });
}

template <typename T>
void softmax_forward(T* y, const T* x, int64_t outer, int64_t channels, int64_t inner) {
  ref::softmax_forward(y, x, outer, channels, inner);
}

template <typename T>
void softmax_backward(T* dx, const T* y, const T* dy, int64_t outer, int64_t channels,
                      int64_t inner) {
  if (reference_mode()) return ref::softmax_backward(dx, y, dy, outer, channels, inner);
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t r = 0; r < inner; ++r) {
      const int64_t base = o * channels * inner + r;
      T dot = 0;
      for (int64_t c = 0; c < channels; ++c) dot += y[base + c * inner] * dy[base + c * inner];
      for (int64_t c = 0; c < channels; ++c)
        dx[base + c * inner] = y[base + c * inner] * (dy[base + c * inner] - dot);
    }
}

template <typename T>
T log_loss_forward(const T* p, const T* t, int64_t n, T eps) {
  return ref::log_loss_forward(p, t, n, eps);
}
template <typename T>
void log_loss_backward(T* dp, const T* p, const T* t, int64_t n, T eps) {
  ref::log_loss_backward(dp, p, t, n, eps);
}
template <typename T>
T cross_entropy_forward(const T* logits, const int32_t* labels, int64_t batch, int64_t classes) {
  return ref::cross_entropy_forward(logits, labels, batch, classes);
}
template <typename T>
void cross_entropy_backward(T* dlogits, const T* logits, const int32_t* labels, int64_t batch,
                            int64_t classes) {
  ref::cross_entropy_backward(dlogits, logits, labels, batch, classes);
}
template <typename T>
T cross_entropy_soft_forward(const T* logits, const T* targets, int64_t batch, int64_t classes) {
  return ref::cross_entropy_soft_forward(logits, targets, batch, classes);
}
template <typename T>
void cross_entropy_soft_backward(T* dlogits, const T* logits, const T* targets, int64_t batch,
                                 int64_t classes) {
  ref::cross_entropy_soft_backward(dlogits, logits, targets, batch, classes);
}
template <typename T>
T mse_forward(const T* p, const T* t, int64_t n) {
  return ref::mse_forward(p, t, n);
}
template <typename T>
void mse_backward(T* dp, const T* p, const T* t, int64_t n) {
  ref::mse_backward(dp, p, t, n);
}

template <typename T>
void add_forward(T* sum, T* y, const T* a, const T* b, int64_t n, bool relu) {
  if (reference_mode()) return ref::add_forward(sum, y, a, b, n, relu);
  for_chunks(n, [&](int64_t first, int64_t count) {
    T* __restrict out = y + first;
    const T* __restrict pa = a + first;
    const T* __restrict pb = b + first;
    if (!relu) {
      for (int64_t k = 0; k < count; ++k) out[k] = pa[k] + pb[k];
      if (sum) std::copy(out, out + count, sum + first);
      return;
    }
    if (!sum) {
      for (int64_t k = 0; k < count; ++k) {
        const T v = pa[k] + pb[k];
        out[k] = v < T(0) ? T(0) : v;
      }
      return;
    }
    T* __restrict s = sum + first;
    for (int64_t k = 0; k < count; ++k) {
      const T v = pa[k] + pb[k];
      s[k] = v;
      out[k] = v < T(0) ? T(0) : v;
    }
  });
}
template <typename T>
void accumulate(T* dx, const T* g, int64_t n) {
  if (reference_mode()) return ref::accumulate(dx, g, n);
  for_chunks(n, [&](int64_t first, int64_t count) {
    T* __restrict out = dx + first;
    const T* __restrict in = g + first;
    for (int64_t k = 0; k < count; ++k) out[k] += in[k];
  });
}

#define CNN_INSTANTIATE_POINTWISE(T)                                                       \
  template void copy_images<T>(T*, const T*, int64_t, int64_t);                            \
  template void relu_forward<T>(T*, const T*, int64_t);                                    \
  template void relu_backward<T>(T*, const T*, const T*, int64_t);                         \
  template void leaky_relu_forward<T>(T*, const T*, int64_t, T);                           \
  template void leaky_relu_backward<T>(T*, const T*, const T*, int64_t, T);                \
  template void relu6_forward<T>(T*, const T*, int64_t);                                   \
  template void relu6_backward<T>(T*, const T*, const T*, int64_t);                        \
  template void tanh_forward<T>(T*, const T*, int64_t);                                    \
  template void tanh_backward<T>(T*, const T*, const T*, int64_t);                         \
  template void sigmoid_forward<T>(T*, const T*, int64_t);                                 \
  template void sigmoid_backward<T>(T*, const T*, const T*, int64_t);                      \
  template void softmax_forward<T>(T*, const T*, int64_t, int64_t, int64_t);               \
  template void softmax_backward<T>(T*, const T*, const T*, int64_t, int64_t, int64_t);    \
  template T log_loss_forward<T>(const T*, const T*, int64_t, T);                          \
  template void log_loss_backward<T>(T*, const T*, const T*, int64_t, T);                  \
  template T cross_entropy_forward<T>(const T*, const int32_t*, int64_t, int64_t);         \
  template void cross_entropy_backward<T>(T*, const T*, const int32_t*, int64_t, int64_t); \
  template T cross_entropy_soft_forward<T>(const T*, const T*, int64_t, int64_t);          \
  template void cross_entropy_soft_backward<T>(T*, const T*, const T*, int64_t, int64_t);  \
  template T mse_forward<T>(const T*, const T*, int64_t);                                  \
  template void mse_backward<T>(T*, const T*, const T*, int64_t);                          \
  template void add_forward<T>(T*, T*, const T*, const T*, int64_t, bool);                 \
  template void accumulate<T>(T*, const T*, int64_t);
CNN_INSTANTIATE_POINTWISE(float)
CNN_INSTANTIATE_POINTWISE(double)

}  // namespace cnn::ops

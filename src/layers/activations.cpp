#include <algorithm>
#include <cmath>
#include <sstream>
#include <string>

#include "cnn/error.hpp"
#include "cnn/layers.hpp"

namespace cnn {

namespace {
/// Element-wise layers accept any shape with a batch dimension and positive sizes.
std::string elementwise_shape_problem(const Shape& in) {
  if (in.rank() >= 1 && in.all_positive()) return {};
  return "expected input (N, ...) with positive sizes, got " + in.str();
}
}  // namespace

#define CNN_ELEMENTWISE_OUTPUT_SHAPE(Layer)                                            \
  template <typename T>                                                                \
  Shape Layer<T>::output_shape(const Shape& in) const {                                \
    if (const std::string problem = elementwise_shape_problem(in); !problem.empty()) { \
      this->fail(problem);                                                             \
    }                                                                                  \
    return in;                                                                         \
  }
CNN_ELEMENTWISE_OUTPUT_SHAPE(ReLU)
CNN_ELEMENTWISE_OUTPUT_SHAPE(LeakyReLU)
CNN_ELEMENTWISE_OUTPUT_SHAPE(ReLU6)
CNN_ELEMENTWISE_OUTPUT_SHAPE(Tanh)
CNN_ELEMENTWISE_OUTPUT_SHAPE(Sigmoid)
#undef CNN_ELEMENTWISE_OUTPUT_SHAPE

template <typename T>
void ReLU<T>::forward_impl(TensorView<const T> x, TensorView<T> y, Mode /*mode*/) {
  ops::relu_forward(y.data(), x.data(), x.numel());
}
template <typename T>
void ReLU<T>::backward_impl(TensorView<const T> x, TensorView<const T> /*y*/,
                            TensorView<const T> dy, TensorView<T> dx) {
  if (!dx.empty()) ops::relu_backward(dx.data(), x.data(), dy.data(), x.numel());
}

template <typename T>
LeakyReLU<T>::LeakyReLU(double negative_slope) : negative_slope_(negative_slope) {
  // The layer computes in T: a slope finite as a double and infinite as a float (1e40) made
  // every negative input -inf, and the ONNX export an alpha its import refused (found
  // 2026-12-06).
  if (!std::isfinite(static_cast<T>(negative_slope))) {
    std::ostringstream got;
    got << negative_slope;
    throw Error(std::string("LeakyReLU: expected a finite negative_slope") +
                (sizeof(T) == 4 ? " (magnitude at most 3.4e38 in float)" : "") + ", got " +
                got.str());
  }
}
template <typename T>
std::string LeakyReLU<T>::describe() const {
  std::ostringstream out;
  out << "LeakyReLU(negative_slope=" << negative_slope_ << ")";
  return out.str();
}
template <typename T>
void LeakyReLU<T>::forward_impl(TensorView<const T> x, TensorView<T> y, Mode /*mode*/) {
  ops::leaky_relu_forward(y.data(), x.data(), x.numel(), static_cast<T>(negative_slope_));
}
template <typename T>
void LeakyReLU<T>::backward_impl(TensorView<const T> x, TensorView<const T> /*y*/,
                                 TensorView<const T> dy, TensorView<T> dx) {
  if (!dx.empty()) {
    ops::leaky_relu_backward(dx.data(), x.data(), dy.data(), x.numel(),
                             static_cast<T>(negative_slope_));
  }
}

template <typename T>
void ReLU6<T>::forward_impl(TensorView<const T> x, TensorView<T> y, Mode /*mode*/) {
  ops::relu6_forward(y.data(), x.data(), x.numel());
}
template <typename T>
void ReLU6<T>::backward_impl(TensorView<const T> x, TensorView<const T> /*y*/,
                             TensorView<const T> dy, TensorView<T> dx) {
  if (!dx.empty()) ops::relu6_backward(dx.data(), x.data(), dy.data(), x.numel());
}

template <typename T>
void Tanh<T>::forward_impl(TensorView<const T> x, TensorView<T> y, Mode /*mode*/) {
  ops::tanh_forward(y.data(), x.data(), x.numel());
}
template <typename T>
void Tanh<T>::backward_impl(TensorView<const T> x, TensorView<const T> y, TensorView<const T> dy,
                            TensorView<T> dx) {
  if (!dx.empty()) ops::tanh_backward(dx.data(), y.data(), dy.data(), x.numel());
}

template <typename T>
void Sigmoid<T>::forward_impl(TensorView<const T> x, TensorView<T> y, Mode /*mode*/) {
  ops::sigmoid_forward(y.data(), x.data(), x.numel());
}
template <typename T>
void Sigmoid<T>::backward_impl(TensorView<const T> x, TensorView<const T> y, TensorView<const T> dy,
                               TensorView<T> dx) {
  if (!dx.empty()) ops::sigmoid_backward(dx.data(), y.data(), dy.data(), x.numel());
}

template <typename T>
Shape Softmax<T>::output_shape(const Shape& in) const {
  if (in.rank() < 2 || !in.all_positive()) {
    this->fail("expected input (N, C, ...) with positive sizes, got " + in.str());
  }
  return in;
}

namespace {
/// (outer, channels, inner) of a softmax along dimension 1.
struct SoftmaxGeometry {
  int64_t outer, channels, inner;
};
SoftmaxGeometry softmax_geometry(const Shape& s) {
  return {s[0], s[1], s.numel() / (s[0] * s[1])};
}
}  // namespace

template <typename T>
void Softmax<T>::forward_impl(TensorView<const T> x, TensorView<T> y, Mode /*mode*/) {
  const SoftmaxGeometry g = softmax_geometry(x.shape());
  ops::softmax_forward(y.data(), x.data(), g.outer, g.channels, g.inner);
}
template <typename T>
void Softmax<T>::backward_impl(TensorView<const T> x, TensorView<const T> y, TensorView<const T> dy,
                               TensorView<T> dx) {
  if (dx.empty()) return;
  const SoftmaxGeometry g = softmax_geometry(x.shape());
  ops::softmax_backward(dx.data(), y.data(), dy.data(), g.outer, g.channels, g.inner);
}

template <typename T>
Shape Flatten<T>::output_shape(const Shape& in) const {
  if (in.rank() < 2 || !in.all_positive()) {
    this->fail("expected input (N, ...) of rank 2 or more with positive sizes, got " + in.str());
  }
  return Shape{in[0], in.numel() / in[0]};
}
template <typename T>
void Flatten<T>::forward_impl(TensorView<const T> x, TensorView<T> y, Mode /*mode*/) {
  ops::copy_images(y.data(), x.data(), x.numel(), x.shape()[0]);
}
template <typename T>
void Flatten<T>::backward_impl(TensorView<const T> /*x*/, TensorView<const T> /*y*/,
                               TensorView<const T> dy, TensorView<T> dx) {
  if (!dx.empty()) ops::copy_images(dx.data(), dy.data(), dy.numel(), dy.shape()[0]);
}

// One operation per element for the element-wise layers, three for softmax, none for Flatten.
template <typename T>
double ReLU<T>::forward_flops(const Shape& input) const {
  return double(output_shape(input).numel());
}
template <typename T>
double LeakyReLU<T>::forward_flops(const Shape& input) const {
  return double(output_shape(input).numel());
}
template <typename T>
double ReLU6<T>::forward_flops(const Shape& input) const {
  return double(output_shape(input).numel());
}
template <typename T>
double Tanh<T>::forward_flops(const Shape& input) const {
  return double(output_shape(input).numel());
}
template <typename T>
double Sigmoid<T>::forward_flops(const Shape& input) const {
  return double(output_shape(input).numel());
}
template <typename T>
double Softmax<T>::forward_flops(const Shape& input) const {
  return 3.0 * double(output_shape(input).numel());
}
template <typename T>
double Flatten<T>::forward_flops(const Shape& input) const {
  output_shape(input);  // validates
  return 0;
}

// ---- Dropout -----------------------------------------------------------------------------------

template <typename T>
Dropout<T>::Dropout(double p) : p_(p) {
  if (!(p >= 0 && p < 1)) {
    throw Error("Dropout: expected 0 <= p < 1, got " + std::to_string(p));
  }
}

template <typename T>
std::string Dropout<T>::describe() const {
  std::ostringstream out;
  out << "Dropout(p=" << p_ << ")";
  return out.str();
}

template <typename T>
Shape Dropout<T>::output_shape(const Shape& in) const {
  if (in.rank() < 1 || !in.all_positive()) {
    this->fail("expected an input (N, ...) with positive sizes, got " + in.str());
  }
  return in;
}

template <typename T>
double Dropout<T>::forward_flops(const Shape& input) const {
  return double(output_shape(input).numel());
}

template <typename T>
void Dropout<T>::init_parameters(Rng& rng, Init /*init*/) {
  rng_ = Rng(rng.next_u64());
}

template <typename T>
void Dropout<T>::forward_impl(TensorView<const T> x, TensorView<T> y, Mode mode) {
  const int64_t n = x.numel();
  last_train_ = mode == Mode::kTrain && p_ > 0;
  if (!last_train_) {
    std::copy(x.begin(), x.end(), y.begin());
    return;
  }
  if (held_ && mask_size_ == n) return ops::dropout_apply(y.data(), x.data(), mask_.data(), n);
  if (static_cast<int64_t>(mask_.size()) < n) mask_.resize(static_cast<size_t>(n));
  ops::dropout_forward(y.data(), mask_.data(), x.data(), n, p_, rng_);
  mask_size_ = n;
}

template <typename T>
void Dropout<T>::backward_impl(TensorView<const T> x, TensorView<const T> /*y*/,
                               TensorView<const T> dy, TensorView<T> dx) {
  if (dx.empty()) return;
  if (!last_train_) {
    std::copy(dy.begin(), dy.end(), dx.begin());
    return;
  }
  if (mask_size_ != x.numel()) {
    this->fail("backward: expected the input of the latest kTrain forward (" +
               std::to_string(mask_size_) + " elements), got " + x.shape().str());
  }
  ops::dropout_apply(dx.data(), dy.data(), mask_.data(), dx.numel());
}

#define CNN_INSTANTIATE_LAYER(Layer) \
  template class Layer<float>;       \
  template class Layer<double>;
CNN_INSTANTIATE_LAYER(ReLU)
CNN_INSTANTIATE_LAYER(LeakyReLU)
CNN_INSTANTIATE_LAYER(ReLU6)
CNN_INSTANTIATE_LAYER(Tanh)
CNN_INSTANTIATE_LAYER(Sigmoid)
CNN_INSTANTIATE_LAYER(Softmax)
CNN_INSTANTIATE_LAYER(Flatten)
CNN_INSTANTIATE_LAYER(Dropout)
#undef CNN_INSTANTIATE_LAYER

}  // namespace cnn

#include "cnn/error.hpp"
#include "cnn/layers.hpp"

namespace cnn {

template <typename T>
Linear<T>::Linear(int64_t in_features, int64_t out_features, bool bias)
    : in_features_(in_features), out_features_(out_features), bias_(bias) {
  if (in_features <= 0 || out_features <= 0) {
    throw Error("Linear: expected in_features > 0 and out_features > 0, got " +
                std::to_string(in_features) + " and " + std::to_string(out_features));
  }
}

template <typename T>
std::string Linear<T>::describe() const {
  return "Linear(" + std::to_string(in_features_) + ", " + std::to_string(out_features_) +
         (bias_ ? "" : ", bias=false") + ")";
}

template <typename T>
Shape Linear<T>::output_shape(const Shape& in) const {
  if (in.rank() != 2 || !in.all_positive() || in[1] != in_features_) {
    this->fail("expected input (N, " + std::to_string(in_features_) +
               ") with positive sizes, got " + in.str());
  }
  return Shape{in[0], out_features_};
}

template <typename T>
double Linear<T>::forward_flops(const Shape& input) const {
  return double(output_shape(input).numel()) * (2.0 * double(in_features_) + (bias_ ? 1.0 : 0.0));
}

template <typename T>
std::vector<ParamSpec> Linear<T>::parameter_specs() const {
  std::vector<ParamSpec> specs{{"weight", Shape{out_features_, in_features_}}};
  if (bias_) specs.push_back({"bias", Shape{out_features_}});
  return specs;
}

template <typename T>
void Linear<T>::init_parameters(Rng& rng, Init init) {
  init_weights(this->value_data(0), out_features_ * in_features_, in_features_, out_features_, rng,
               init);
  if (bias_) init_bias(this->value_data(1), out_features_, in_features_, rng, init);
}

template <typename T>
void Linear<T>::forward_impl(TensorView<const T> x, TensorView<T> y, Mode /*mode*/) {
  ops::dense_forward(y.data(), x.data(), this->value_data(0), bias_ ? this->value_data(1) : nullptr,
                     ops::DenseShape{x.shape()[0], in_features_, out_features_});
}

template <typename T>
void Linear<T>::backward_impl(TensorView<const T> x, TensorView<const T> /*y*/,
                              TensorView<const T> dy, TensorView<T> dx) {
  ops::dense_backward(dx.data(), this->gradient_data(0), bias_ ? this->gradient_data(1) : nullptr,
                      x.data(), this->value_data(0), dy.data(),
                      ops::DenseShape{x.shape()[0], in_features_, out_features_});
}

template class Linear<float>;
template class Linear<double>;

}  // namespace cnn

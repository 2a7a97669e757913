#include <stdexcept>
#include <type_traits>

#include "cnn/error.hpp"
#include "cnn/layers.hpp"

namespace cnn {

namespace {
/// The upper bound keeps the padded sizes' arithmetic far from overflow.
void require_positive(const char* what, int64_t value) {
  if (value <= 0 || value > kMaxElements) {
    throw Error(std::string("Conv2d: expected ") + what + " > 0 (and at most 2^48), got " +
                std::to_string(value));
  }
}
}  // namespace

template <typename T>
Conv2d<T>::Conv2d(int64_t in_channels, int64_t out_channels, Size2 kernel, Size2 stride,
                  Padding2 padding, bool bias)
    : in_channels_(in_channels),
      out_channels_(out_channels),
      kernel_(kernel),
      stride_(stride),
      padding_(padding.size),
      same_(padding.same),
      bias_(bias) {
  require_positive("in_channels", in_channels);
  require_positive("out_channels", out_channels);
  require_positive("kernel height", kernel.h);
  require_positive("kernel width", kernel.w);
  require_positive("stride height", stride.h);
  require_positive("stride width", stride.w);
  if (same_) {
    if (kernel.h % 2 == 0 || kernel.w % 2 == 0) {
      throw Error("Conv2d: padding 'same' expects an odd kernel, got " + kernel.str());
    }
    padding_ = Size2((kernel.h - 1) / 2, (kernel.w - 1) / 2);
  }
  if (padding_.h < 0 || padding_.w < 0 || padding_.h > kMaxElements || padding_.w > kMaxElements) {
    throw Error("Conv2d: expected padding >= 0 (and at most 2^48), got " + padding_.str());
  }
}

template <typename T>
std::string Conv2d<T>::describe() const {
  return "Conv2d(" + std::to_string(in_channels_) + ", " + std::to_string(out_channels_) +
         ", kernel=" + kernel_.str() + ", stride=" + stride_.str() +
         ", padding=" + (same_ ? std::string("same") : padding_.str()) +
         (bias_ ? "" : ", bias=false") + ")";
}

template <typename T>
Shape Conv2d<T>::output_shape(const Shape& in) const {
  if (in.rank() != 4 || !in.all_positive() || in[1] != in_channels_) {
    this->fail("expected input (N, " + std::to_string(in_channels_) +
               ", H, W) with positive sizes, got " + in.str());
  }
  const int64_t padded_h = in[2] + 2 * padding_.h, padded_w = in[3] + 2 * padding_.w;
  if (kernel_.h > padded_h || kernel_.w > padded_w) {
    this->fail("kernel " + kernel_.str() + " is larger than the padded input " +
               Size2(padded_h, padded_w).str() + " of input " + in.str());
  }
  const ops::ConvShape s = conv_shape(in);
  return Shape{in[0], out_channels_, s.out_h, s.out_w};
}

template <typename T>
double Conv2d<T>::forward_flops(const Shape& input) const {
  // In double: the count of a large layer can exceed int64_t.
  const double outputs = double(output_shape(input).numel());
  return outputs *
         (2.0 * double(in_channels_) * double(kernel_.h) * double(kernel_.w) + (bias_ ? 1.0 : 0.0));
}

template <typename T>
std::vector<ParamSpec> Conv2d<T>::parameter_specs() const {
  std::vector<ParamSpec> specs{
      {"weight", Shape{out_channels_, in_channels_, kernel_.h, kernel_.w}}};
  if (bias_) specs.push_back({"bias", Shape{out_channels_}});
  return specs;
}

template <typename T>
void Conv2d<T>::init_parameters(Rng& rng, Init init) {
  const int64_t fan_in = in_channels_ * kernel_.h * kernel_.w;
  const int64_t fan_out = out_channels_ * kernel_.h * kernel_.w;
  init_weights(this->value_data(0), out_channels_ * fan_in, fan_in, fan_out, rng, init);
  if (bias_) init_bias(this->value_data(1), out_channels_, fan_in, rng, init);
}

template <typename T>
ops::ConvShape Conv2d<T>::conv_shape(const Shape& in, bool inference) const {
  ops::ConvShape s = ops::make_conv_shape(in[0], in[1], in[2], in[3], out_channels_, kernel_.h,
                                          kernel_.w, stride_.h, stride_.w, padding_.h, padding_.w);
  s.inference = inference;
  return s;
}

template <typename T>
bool Conv2d<T>::backward_by_image_takes(const Shape& x) const {
  return std::is_same_v<T, float> && x.rank() == 4 &&
         ops::conv2d_weight_backward_by_image_takes(conv_shape(x));
}

template <typename T>
void Conv2d<T>::backward_by_image(TensorView<const T> x, const Shape& dy_shape,
                                  const ops::ImageGradientSource& dy) {
  // The output itself is not read (no input gradient): its shape is the gradient's.
  this->check_backward(x.shape(), dy_shape, dy_shape, {});
  if constexpr (std::is_same_v<T, float>) {
    ops::conv2d_weight_backward_by_image(this->gradient_data(0),
                                         bias_ ? this->gradient_data(1) : nullptr, x.data(), dy,
                                         conv_shape(x.shape()));
  } else {
    (void)dy;
    throw std::logic_error("Conv2d::backward_by_image: floats only");
  }
}

template <typename T>
void Conv2d<T>::forward_impl(TensorView<const T> x, TensorView<T> y, Mode mode) {
  ops::conv2d_forward(y.data(), x.data(), this->value_data(0),
                      bias_ ? this->value_data(1) : nullptr,
                      conv_shape(x.shape(), mode == Mode::kEval));
}

template <typename T>
bool Conv2d<T>::forward_moments(TensorView<const T> x, TensorView<T> y, double* totals) {
  if constexpr (std::is_same_v<T, float>) {
    this->check_forward(x, y);
    return ops::conv2d_forward_moments(y.data(), x.data(), this->value_data(0),
                                       bias_ ? this->value_data(1) : nullptr, conv_shape(x.shape()),
                                       totals);
  } else {
    (void)x;
    (void)y;
    (void)totals;
    return false;
  }
}

template <typename T>
void Conv2d<T>::backward_impl(TensorView<const T> x, TensorView<const T> /*y*/,
                              TensorView<const T> dy, TensorView<T> dx) {
  ops::conv2d_backward(dx.data(), this->gradient_data(0), bias_ ? this->gradient_data(1) : nullptr,
                       x.data(), this->value_data(0), dy.data(), conv_shape(x.shape()));
}

template class Conv2d<float>;
template class Conv2d<double>;

}  // namespace cnn

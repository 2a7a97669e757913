#include "cnn/error.hpp"
#include "cnn/layers.hpp"

namespace cnn {

namespace {
/// The largest input plane (H x W) whose element indices fit MaxPool2d's int32 argmax.
constexpr int64_t kMaxArgmaxPlane = 2147483647;

/// The window checks that max and average pooling share; `type` starts each message.
void check_pool_window(const char* type, Size2 kernel, Size2 stride, Size2 padding) {
  const std::string name = type;
  // The upper bound keeps the padded sizes' arithmetic far from overflow.
  if (kernel.h <= 0 || kernel.w <= 0 || kernel.h > kMaxElements || kernel.w > kMaxElements) {
    throw Error(name + ": expected kernel > 0 (and at most 2^48), got " + kernel.str());
  }
  if (stride.h <= 0 || stride.w <= 0) {
    throw Error(name + ": expected stride > 0, got " + stride.str());
  }
  // PyTorch's rule; it guarantees that every window holds at least one input element.
  if (padding.h < 0 || padding.w < 0 || padding.h > kernel.h / 2 || padding.w > kernel.w / 2) {
    // The bound itself, not only the kernel: "half the kernel (2, 2), got (2, 2)" read as if
    // (2, 2) were allowed.
    throw Error(name + ": expected padding from 0 to half the kernel " + kernel.str() +
                ", i.e. up to " + Size2(kernel.h / 2, kernel.w / 2).str() + ", got " +
                padding.str());
  }
}

/// The output shape of a pooling window over `in` (N, C, H, W); calls fail(message) (the
/// layer's Layer::fail, which throws) for another rank, a zero size, or a kernel larger than
/// the padded input. Builds no string unless it fails: it runs in every forward.
template <typename Fail>
Shape pooled_shape(const Fail& fail, const Shape& in, Size2 kernel, Size2 stride, Size2 padding) {
  if (in.rank() != 4 || !in.all_positive()) {
    fail("expected input (N, C, H, W) with positive sizes, got " + in.str());
  }
  const int64_t padded_h = in[2] + 2 * padding.h, padded_w = in[3] + 2 * padding.w;
  if (kernel.h > padded_h || kernel.w > padded_w) {
    fail("kernel " + kernel.str() + " is larger than the padded input " +
         Size2(padded_h, padded_w).str() + " of input " + in.str());
  }
  const ops::PoolShape s = ops::make_pool_shape(in[0], in[1], in[2], in[3], kernel.h, kernel.w,
                                                stride.h, stride.w, padding.h, padding.w);
  return Shape{in[0], in[1], s.out_h, s.out_w};
}
}  // namespace

template <typename T>
MaxPool2d<T>::MaxPool2d(Size2 kernel, std::optional<Size2> stride, Size2 padding)
    : kernel_(kernel), stride_(stride.value_or(kernel)), padding_(padding) {
  check_pool_window("MaxPool2d", kernel_, stride_, padding_);
}

template <typename T>
std::string MaxPool2d<T>::describe() const {
  return "MaxPool2d(kernel=" + kernel_.str() + ", stride=" + stride_.str() +
         ", padding=" + padding_.str() + ")";
}

template <typename T>
Shape MaxPool2d<T>::output_shape(const Shape& in) const {
  const Shape out = pooled_shape([this](const std::string& message) { this->fail(message); }, in,
                                 kernel_, stride_, padding_);
  // The argmax holds each window's index within its input plane as int32 (the kernels compute
  // it in int32 lanes): a plane of more elements would overflow it (undefined behaviour, and a
  // backward that scatters to the wrong places). pooled_shape has checked the rank.
  if (in[2] > kMaxArgmaxPlane / in[3]) {
    this->fail(
        "expected an input plane H x W of at most 2^31 - 1 elements (the argmax is "
        "int32), got " +
        std::to_string(in[2]) + " x " + std::to_string(in[3]) + " in " + in.str());
  }
  return out;
}

template <typename T>
double MaxPool2d<T>::forward_flops(const Shape& input) const {
  return double(output_shape(input).numel()) * (double(kernel_.h) * double(kernel_.w) - 1.0);
}

template <typename T>
ops::PoolShape MaxPool2d<T>::pool_shape(const Shape& in) const {
  return ops::make_pool_shape(in[0], in[1], in[2], in[3], kernel_.h, kernel_.w, stride_.h,
                              stride_.w, padding_.h, padding_.w);
}

template <typename T>
void MaxPool2d<T>::prepare_argmax(TensorView<const T> x, TensorView<T> y) {
  if (argmax_.size() < static_cast<size_t>(y.numel()))
    argmax_.resize(static_cast<size_t>(y.numel()));
  argmax_input_shape_ = x.shape();
}

template <typename T>
void MaxPool2d<T>::pool(TensorView<const T> x, TensorView<T> y, Mode mode, bool after_relu) {
  prepare_argmax(x, y);
  // Evaluation skips the argmax, a backward's only input: without its index arithmetic and
  // stores the pooling runs 26-32% faster (convnet's shapes, docs/design-notes.md).
  argmax_missing_ = mode == Mode::kEval;
  int32_t* argmax = argmax_missing_ ? nullptr : argmax_.data();
  if (after_relu) {
    ops::relu_maxpool2d_forward(y.data(), argmax, x.data(), pool_shape(x.shape()));
  } else {
    ops::maxpool2d_forward(y.data(), argmax, x.data(), pool_shape(x.shape()));
  }
}

template <typename T>
void MaxPool2d<T>::ensure_argmax(TensorView<const T> x, bool after_relu) {
  if (!argmax_missing_) return;
  recomputed_.resize(output_shape(x.shape()));
  pool(x, recomputed_.view(), Mode::kTrain, after_relu);
}

template <typename T>
void MaxPool2d<T>::forward_impl(TensorView<const T> x, TensorView<T> y, Mode mode) {
  pool(x, y, mode, false);
}

template <typename T>
void MaxPool2d<T>::forward_after_relu(TensorView<const T> x, TensorView<T> y, Mode mode) {
  this->check_forward(x, y);
  pool(x, y, mode, true);
}

template <typename T>
void MaxPool2d<T>::fused_eval_forward(const Shape& x) {
  output_shape(x);
  argmax_input_shape_ = x;
  argmax_missing_ = true;
}

template <typename T>
bool MaxPool2d<T>::is_2x2_stride2() const {
  return kernel_.h == 2 && kernel_.w == 2 && stride_.h == 2 && stride_.w == 2 && padding_.h == 0 &&
         padding_.w == 0;
}

template <typename T>
int32_t* MaxPool2d<T>::fused_forward_argmax(const Shape& x, const Shape& y) {
  if (argmax_.size() < static_cast<size_t>(y.numel()))
    argmax_.resize(static_cast<size_t>(y.numel()));
  argmax_input_shape_ = x;
  argmax_missing_ = false;
  return argmax_.data();
}

template <typename T>
void MaxPool2d<T>::require_forward_ran() const {
  // Before any forward the latest input's shape is the empty (): the shape check below read
  // "expected the input of the latest forward (), got ...".
  if (argmax_input_shape_.rank() == 0) this->fail("backward: expected a forward first, got none");
}

template <typename T>
void MaxPool2d<T>::check_fused_backward(const Shape& x, const Shape& dy, const Shape* dx) const {
  require_forward_ran();
  const Shape expected = output_shape(x);
  if (argmax_input_shape_ != x || dy != expected || (dx && *dx != x)) {
    this->fail("backward: expected the input of the latest forward " + argmax_input_shape_.str() +
               ", its gradient and an output gradient " + expected.str() + ", got " + x.str() +
               ", " + (dx ? dx->str() : std::string("no input gradient")) + " and " + dy.str());
  }
}

template <typename T>
const int32_t* MaxPool2d<T>::fused_backward_argmax(const Shape& x, const Shape& dy,
                                                   const Shape* dx) {
  check_fused_backward(x, dy, dx);
  if (argmax_missing_) {  // the latest forward was not forward_relu_maxpool's, which keeps it
    this->fail(
        "backward: expected the argmax of a BatchNorm, ReLU and pooling step's forward, "
        "got a forward without it");
  }
  return argmax_.data();
}

template <typename T>
void MaxPool2d<T>::backward_after_relu(TensorView<const T> x, TensorView<const T> dy,
                                       TensorView<T> dx) {
  check_fused_backward(x.shape(), dy.shape(), &dx.shape());
  ensure_argmax(x, true);
  ops::relu_maxpool2d_backward(dx.data(), dy.data(), x.data(), argmax_.data(),
                               pool_shape(x.shape()));
}

template <typename T>
void MaxPool2d<T>::backward_impl(TensorView<const T> x, TensorView<const T> /*y*/,
                                 TensorView<const T> dy, TensorView<T> dx) {
  require_forward_ran();
  if (argmax_input_shape_ != x.shape()) {
    this->fail("backward: expected the input of the latest forward " + argmax_input_shape_.str() +
               ", got " + x.shape().str());
  }
  if (dx.empty()) return;
  ensure_argmax(x, false);
  ops::maxpool2d_backward(dx.data(), dy.data(), argmax_.data(), pool_shape(x.shape()));
}

template class MaxPool2d<float>;
template class MaxPool2d<double>;

// ---- AvgPool2d ---------------------------------------------------------------------------------

template <typename T>
AvgPool2d<T>::AvgPool2d(Size2 kernel, std::optional<Size2> stride, Size2 padding,
                        bool count_include_pad)
    : kernel_(kernel),
      stride_(stride.value_or(kernel)),
      padding_(padding),
      count_include_pad_(count_include_pad) {
  check_pool_window("AvgPool2d", kernel_, stride_, padding_);
}

template <typename T>
std::string AvgPool2d<T>::describe() const {
  return "AvgPool2d(kernel=" + kernel_.str() + ", stride=" + stride_.str() +
         ", padding=" + padding_.str() + (count_include_pad_ ? "" : ", count_include_pad=false") +
         ")";
}

template <typename T>
Shape AvgPool2d<T>::output_shape(const Shape& in) const {
  return pooled_shape([this](const std::string& message) { this->fail(message); }, in, kernel_,
                      stride_, padding_);
}

template <typename T>
double AvgPool2d<T>::forward_flops(const Shape& input) const {
  // kernel - 1 additions and a division per output.
  return double(output_shape(input).numel()) * double(kernel_.h) * double(kernel_.w);
}

template <typename T>
ops::PoolShape AvgPool2d<T>::pool_shape(const Shape& in) const {
  return ops::make_pool_shape(in[0], in[1], in[2], in[3], kernel_.h, kernel_.w, stride_.h,
                              stride_.w, padding_.h, padding_.w);
}

template <typename T>
void AvgPool2d<T>::forward_impl(TensorView<const T> x, TensorView<T> y, Mode /*mode*/) {
  ops::avgpool2d_forward(y.data(), x.data(), pool_shape(x.shape()), count_include_pad_);
}

template <typename T>
void AvgPool2d<T>::backward_impl(TensorView<const T> x, TensorView<const T> /*y*/,
                                 TensorView<const T> dy, TensorView<T> dx) {
  if (dx.empty()) return;
  ops::avgpool2d_backward(dx.data(), dy.data(), pool_shape(x.shape()), count_include_pad_);
}

template class AvgPool2d<float>;
template class AvgPool2d<double>;

// ---- AdaptiveAvgPool2d -------------------------------------------------------------------------

template <typename T>
AdaptiveAvgPool2d<T>::AdaptiveAvgPool2d(Size2 output_size) {
  if (output_size.h != 1 || output_size.w != 1) {
    throw Error("AdaptiveAvgPool2d: expected output size 1 (global average pooling), got " +
                output_size.str());
  }
}

template <typename T>
Shape AdaptiveAvgPool2d<T>::output_shape(const Shape& in) const {
  if (in.rank() != 4 || !in.all_positive()) {
    this->fail("expected input (N, C, H, W) with positive sizes, got " + in.str());
  }
  return Shape{in[0], in[1], 1, 1};
}

template <typename T>
double AdaptiveAvgPool2d<T>::forward_flops(const Shape& input) const {
  output_shape(input);  // validates
  return double(input.numel());
}

template <typename T>
void AdaptiveAvgPool2d<T>::forward_impl(TensorView<const T> x, TensorView<T> y, Mode /*mode*/) {
  const Shape& s = x.shape();
  ops::global_avgpool_forward(y.data(), x.data(), s[0] * s[1], s[2] * s[3]);
}

template <typename T>
void AdaptiveAvgPool2d<T>::backward_impl(TensorView<const T> x, TensorView<const T> /*y*/,
                                         TensorView<const T> dy, TensorView<T> dx) {
  if (dx.empty()) return;
  const Shape& s = x.shape();
  ops::global_avgpool_backward(dx.data(), dy.data(), s[0] * s[1], s[2] * s[3]);
}

template class AdaptiveAvgPool2d<float>;
template class AdaptiveAvgPool2d<double>;

}  // namespace cnn

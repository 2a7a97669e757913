#include "cnn/loss.hpp"

#include <algorithm>
#include <cmath>
#include <sstream>

#include "cnn/error.hpp"
#include "cnn/ops.hpp"

namespace cnn {

namespace {
template <typename T>
std::string number(T value) {
  std::ostringstream out;
  out << value;
  return out.str();
}
}  // namespace

template <typename T>
T Loss<T>::forward(TensorView<const T> prediction, TensorView<const T> target) {
  validate(prediction, target);
  return forward_impl(prediction, target);
}

template <typename T>
void Loss<T>::backward(TensorView<const T> prediction, TensorView<const T> target,
                       TensorView<T> dprediction) {
  if (dprediction.shape() != prediction.shape() || dprediction.empty()) {
    fail("backward: expected a prediction gradient of shape " + prediction.shape().str() +
         ", got " + dprediction.shape().str());
  }
  validate(prediction, target);
  backward_impl(prediction, target, dprediction);
}

template <typename T>
void Loss<T>::fail(const std::string& message) const {
  throw Error(describe() + ": " + message);
}

template <typename T>
void Loss<T>::require_finite_prediction(TensorView<const T> prediction) const {
  for (int64_t i = 0; i < prediction.numel(); ++i) {
    if (!std::isfinite(prediction[i])) {
      fail("expected finite predictions, got " + number(prediction[i]) + " at index " +
           std::to_string(i));
    }
  }
}

namespace {
/// Shared by the losses whose target has the prediction's shape.
template <typename T>
std::string same_shape_problem(TensorView<const T> prediction, TensorView<const T> target) {
  if (!prediction.shape().all_positive() || prediction.empty() || target.empty()) {
    return "expected a non-empty prediction with positive sizes, got " + prediction.shape().str();
  }
  if (target.shape() != prediction.shape()) {
    return "expected a target of the prediction's shape " + prediction.shape().str() + ", got " +
           target.shape().str();
  }
  return {};
}
}  // namespace

// ---- LogLoss -----------------------------------------------------------------------------------

template <typename T>
LogLoss<T>::LogLoss(T eps) : eps_(eps) {
  if (!(eps > T(0) && eps < T(0.5))) {
    throw Error("LogLoss: expected 0 < eps < 0.5, got " + number(eps));
  }
}

template <typename T>
std::string LogLoss<T>::describe() const {
  return "LogLoss(eps=" + number(eps_) + ")";
}

template <typename T>
void LogLoss<T>::validate(TensorView<const T> prediction, TensorView<const T> target) {
  if (const std::string problem = same_shape_problem(prediction, target); !problem.empty()) {
    this->fail(problem);
  }
  for (int64_t i = 0; i < prediction.numel(); ++i) {
    if (!(prediction[i] >= T(0) && prediction[i] <= T(1))) {
      this->fail("expected predictions (probabilities) in [0, 1], got " + number(prediction[i]) +
                 " at index " + std::to_string(i));
    }
    if (!(target[i] >= T(0) && target[i] <= T(1))) {
      this->fail("expected targets in [0, 1], got " + number(target[i]) + " at index " +
                 std::to_string(i));
    }
  }
}

template <typename T>
T LogLoss<T>::forward_impl(TensorView<const T> prediction, TensorView<const T> target) {
  return ops::log_loss_forward(prediction.data(), target.data(), prediction.numel(), eps_);
}

template <typename T>
void LogLoss<T>::backward_impl(TensorView<const T> prediction, TensorView<const T> target,
                               TensorView<T> dprediction) {
  ops::log_loss_backward(dprediction.data(), prediction.data(), target.data(), prediction.numel(),
                         eps_);
}

// ---- CrossEntropyLoss --------------------------------------------------------------------------

template <typename T>
CrossEntropyLoss<T>::CrossEntropyLoss(T label_smoothing) : label_smoothing_(label_smoothing) {
  if (!(label_smoothing >= T(0) && label_smoothing < T(1))) {
    throw Error("CrossEntropyLoss: expected 0 <= label_smoothing < 1, got " +
                number(label_smoothing));
  }
}

template <typename T>
std::string CrossEntropyLoss<T>::describe() const {
  return label_smoothing_ > T(0)
             ? "CrossEntropyLoss(label_smoothing=" + number(label_smoothing_) + ")"
             : "CrossEntropyLoss()";
}

template <typename T>
const T* CrossEntropyLoss<T>::soft_target(TensorView<const T> target) const {
  return label_smoothing_ > T(0) ? smoothed_.data() : soft_targets_ ? target.data() : nullptr;
}

template <typename T>
void CrossEntropyLoss<T>::validate(TensorView<const T> prediction, TensorView<const T> target) {
  const Shape& p = prediction.shape();
  if (p.rank() != 2 || !p.all_positive() || prediction.empty() || target.empty()) {
    this->fail("expected logits (N, K) with positive sizes, got " + p.str());
  }
  const int64_t batch = p[0], classes = p[1];
  this->require_finite_prediction(prediction);
  if (target.shape() == p) {
    soft_targets_ = true;
    for (int64_t i = 0; i < target.numel(); ++i) {
      if (!(target[i] >= T(0) && target[i] <= T(1))) {
        this->fail("expected target probabilities in [0, 1], got " + number(target[i]) +
                   " at index " + std::to_string(i));
      }
    }
    smooth(target, batch, classes);
    return;
  }
  if (target.shape() != Shape{batch}) {
    this->fail("expected targets of shape (" + std::to_string(batch) +
               ",) holding class indices or " + p.str() + " holding probabilities, got " +
               target.shape().str());
  }
  soft_targets_ = false;
  labels_.resize(static_cast<size_t>(batch));
  // The labels are kept as int32 (the kernels' type): a row of 2^31 or more logits could hold
  // a valid index that int32 cannot, so indices stop below 2^31 (exact as a float).
  const int64_t bound = std::min<int64_t>(classes, int64_t{1} << 31);
  for (int64_t n = 0; n < batch; ++n) {
    const T label = target[n];
    if (!(label >= T(0) && label < T(bound)) || label != std::floor(label)) {
      this->fail("expected class indices in [0, " + std::to_string(bound - 1) + "], got " +
                 number(label) + " at index " + std::to_string(n));
    }
    labels_[static_cast<size_t>(n)] = static_cast<int32_t>(label);
  }
  smooth(target, batch, classes);
}

// validate() runs first in both forward and backward, so both read the distribution it built.
template <typename T>
void CrossEntropyLoss<T>::smooth(TensorView<const T> target, int64_t batch, int64_t classes) {
  if (label_smoothing_ == T(0)) return;
  smoothed_.resize(Shape{batch, classes});
  const T keep = T(1) - label_smoothing_, spread = label_smoothing_ / T(classes);
  for (int64_t n = 0; n < batch; ++n)
    for (int64_t k = 0; k < classes; ++k) {
      const T t = soft_targets_ ? target[n * classes + k]
                                : (k == labels_[static_cast<size_t>(n)] ? T(1) : T(0));
      smoothed_[n * classes + k] = keep * t + spread;
    }
}

template <typename T>
T CrossEntropyLoss<T>::forward_impl(TensorView<const T> prediction, TensorView<const T> target) {
  const int64_t batch = prediction.shape()[0], classes = prediction.shape()[1];
  if (const T* soft = soft_target(target)) {
    return ops::cross_entropy_soft_forward(prediction.data(), soft, batch, classes);
  }
  return ops::cross_entropy_forward(prediction.data(), labels_.data(), batch, classes);
}

template <typename T>
void CrossEntropyLoss<T>::backward_impl(TensorView<const T> prediction, TensorView<const T> target,
                                        TensorView<T> dprediction) {
  const int64_t batch = prediction.shape()[0], classes = prediction.shape()[1];
  if (const T* soft = soft_target(target)) {
    ops::cross_entropy_soft_backward(dprediction.data(), prediction.data(), soft, batch, classes);
  } else {
    ops::cross_entropy_backward(dprediction.data(), prediction.data(), labels_.data(), batch,
                                classes);
  }
}

// ---- MseLoss -----------------------------------------------------------------------------------

template <typename T>
void MseLoss<T>::validate(TensorView<const T> prediction, TensorView<const T> target) {
  if (const std::string problem = same_shape_problem(prediction, target); !problem.empty()) {
    this->fail(problem);
  }
  this->require_finite_prediction(prediction);
  for (int64_t i = 0; i < target.numel(); ++i) {
    if (!std::isfinite(target[i])) {
      this->fail("expected finite targets, got " + number(target[i]) + " at index " +
                 std::to_string(i));
    }
  }
}

template <typename T>
T MseLoss<T>::forward_impl(TensorView<const T> prediction, TensorView<const T> target) {
  return ops::mse_forward(prediction.data(), target.data(), prediction.numel());
}

template <typename T>
void MseLoss<T>::backward_impl(TensorView<const T> prediction, TensorView<const T> target,
                               TensorView<T> dprediction) {
  ops::mse_backward(dprediction.data(), prediction.data(), target.data(), prediction.numel());
}

template class Loss<float>;
template class Loss<double>;
template class LogLoss<float>;
template class LogLoss<double>;
template class CrossEntropyLoss<float>;
template class CrossEntropyLoss<double>;
template class MseLoss<float>;
template class MseLoss<double>;

}  // namespace cnn

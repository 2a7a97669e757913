#pragma once
// Losses: a scalar from a prediction and a target, and the gradient of that scalar with
// respect to the prediction. Each reports a mean, as PyTorch's default reduction does:
// LogLoss and MseLoss over all elements, CrossEntropyLoss over the batch.
//
// Contract: forward() and backward() validate shapes and values first and throw cnn::Error
// naming the loss, what was expected and what was given (a target of the wrong shape, a log
// loss target outside [0, 1], a class index out of range, a non-finite prediction).
// backward() ASSIGNS every element of dprediction.

#include <cstdint>
#include <string>
#include <vector>

#include "cnn/tensor.hpp"

namespace cnn {

template <typename T = float>
class Loss {
 public:
  virtual ~Loss() = default;
  /// "LogLoss(eps=1e-07)", used in every error message.
  virtual std::string describe() const = 0;
  /// The mean loss.
  T forward(TensorView<const T> prediction, TensorView<const T> target);
  /// dprediction (shape of prediction) = dL/dprediction of the mean loss.
  void backward(TensorView<const T> prediction, TensorView<const T> target,
                TensorView<T> dprediction);

 protected:
  /// Throws cnn::Error for a shape or a value that the loss does not accept.
  virtual void validate(TensorView<const T> prediction, TensorView<const T> target) = 0;
  virtual T forward_impl(TensorView<const T> prediction, TensorView<const T> target) = 0;
  virtual void backward_impl(TensorView<const T> prediction, TensorView<const T> target,
                             TensorView<T> dprediction) = 0;
  [[noreturn]] void fail(const std::string& message) const;
  /// Fails unless every prediction is finite.
  void require_finite_prediction(TensorView<const T> prediction) const;
};

/// The seed's log loss (binary cross-entropy on probabilities, PyTorch's nn.BCELoss):
///   forward  H = -1/N sum_i t_i log(p_i) + (1 - t_i) log(1 - p_i)
///   backward dH/dp_i = 1/N ((1 - t_i) / (1 - p_i) - t_i / p_i)
/// over all N elements. p is clamped to [eps, 1 - eps] (eps = 1e-7 by default) in both, so
/// the loss stays finite at p = 0 or 1 (PyTorch instead clamps log to >= -100; the two agree
/// for p in [1e-7, 1 - 1e-7]). prediction: probabilities in [0, 1] of any shape; target: same
/// shape, values in [0, 1].
template <typename T = float>
class LogLoss final : public Loss<T> {
 public:
  /// Throws cnn::Error unless 0 < eps < 0.5.
  explicit LogLoss(T eps = T(1e-7));
  std::string describe() const override;
  T eps() const { return eps_; }

 protected:
  void validate(TensorView<const T> prediction, TensorView<const T> target) override;
  T forward_impl(TensorView<const T> prediction, TensorView<const T> target) override;
  void backward_impl(TensorView<const T> prediction, TensorView<const T> target,
                     TensorView<T> dprediction) override;

 private:
  T eps_;
};

/// Categorical cross-entropy from logits (PyTorch's nn.CrossEntropyLoss), through a
/// max-subtracted log-softmax; backward (softmax - onehot) / N. prediction: logits (N, K).
/// target: class indices (N) stored as whole numbers in [0, K), or probabilities (N, K).
/// With label smoothing e (PyTorch's label_smoothing), the target distribution becomes
/// (1 - e) target + e / K (for indices: (1 - e) onehot + e / K), and the loss and its gradient
/// (softmax - that target) / N are the soft-target ones of it.
template <typename T = float>
class CrossEntropyLoss final : public Loss<T> {
 public:
  /// Throws cnn::Error unless 0 <= label_smoothing < 1.
  explicit CrossEntropyLoss(T label_smoothing = T(0));
  std::string describe() const override;
  T label_smoothing() const { return label_smoothing_; }

 protected:
  void validate(TensorView<const T> prediction, TensorView<const T> target) override;
  T forward_impl(TensorView<const T> prediction, TensorView<const T> target) override;
  void backward_impl(TensorView<const T> prediction, TensorView<const T> target,
                     TensorView<T> dprediction) override;

 private:
  /// Fills smoothed_ from the validated target when smoothing.
  void smooth(TensorView<const T> target, int64_t batch, int64_t classes);
  /// The target distribution the soft-target ops read: smoothed_ when smoothing, the caller's
  /// probabilities for a soft target, or null for class indices without smoothing.
  const T* soft_target(TensorView<const T> target) const;

  T label_smoothing_;
  bool soft_targets_ = false;
  std::vector<int32_t> labels_;
  Tensor<T> smoothed_;  // (N, K) when label_smoothing_ > 0; reused from batch to batch
};

/// Mean squared error over all elements (PyTorch's nn.MSELoss); target has the prediction's
/// shape.
template <typename T = float>
class MseLoss final : public Loss<T> {
 public:
  std::string describe() const override { return "MseLoss()"; }

 protected:
  void validate(TensorView<const T> prediction, TensorView<const T> target) override;
  T forward_impl(TensorView<const T> prediction, TensorView<const T> target) override;
  void backward_impl(TensorView<const T> prediction, TensorView<const T> target,
                     TensorView<T> dprediction) override;
};

}  // namespace cnn

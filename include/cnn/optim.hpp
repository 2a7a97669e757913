#pragma once
// SGD with momentum, Nesterov and weight decay, in PyTorch's formulation (torch.optim.SGD):
//   g = grad + weight_decay * p
//   b = g                                  on the first step
//   b = momentum * b + (1 - dampening) * g  afterwards
//   g = g + momentum * b  (Nesterov)  or  g = b  (otherwise; only when momentum != 0)
//   p = p - lr * g
// One loop over the model's flat parameter buffer.

#include <span>

#include "cnn/tensor.hpp"

namespace cnn {

struct SgdOptions {
  double lr = 0.01;
  double momentum = 0.0;
  double dampening = 0.0;
  double weight_decay = 0.0;
  bool nesterov = false;
};

template <typename T = float>
class Sgd {
 public:
  /// params and grads: equal-length spans that outlive the optimizer (Sequential's
  /// parameters() and gradients()). Throws cnn::Error for lr <= 0, negative momentum,
  /// dampening or weight decay, non-finite values, mismatched spans, or Nesterov without
  /// momentum or with dampening (PyTorch's rules).
  Sgd(std::span<T> params, std::span<const T> grads, SgdOptions options);
  /// One update of every parameter from the current gradients.
  void step();
  const SgdOptions& options() const { return options_; }
  /// Changes the learning rate (for schedules); same validation as the constructor.
  void set_lr(double lr);

 private:
  std::span<T> params_;
  std::span<const T> grads_;
  SgdOptions options_;
  Tensor<T> momentum_buffer_;
  bool first_step_ = true;
};

}  // namespace cnn

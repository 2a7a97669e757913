#pragma once
// Optimizers over the model's flat parameter buffer, in PyTorch's formulations; their state
// (momentum, moment estimates) lives in flat buffers beside it.
//
// SGD with momentum, Nesterov and weight decay (torch.optim.SGD):
//   g = grad + weight_decay * p
//   b = g                                  on the first step
//   b = momentum * b + (1 - dampening) * g  afterwards
//   g = g + momentum * b  (Nesterov)  or  g = b  (otherwise; only when momentum != 0)
//   p = p - lr * g
//
// Adam (torch.optim.Adam) and AdamW (torch.optim.AdamW), step t = 1, 2, ...:
//   AdamW only:  p = p (1 - lr weight_decay)            (decoupled weight decay)
//   Adam only:   g = grad + weight_decay * p
//   m = beta1 m + (1 - beta1) g;  v = beta2 v + (1 - beta2) g^2
//   p = p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)

#include <span>
#include <string>
#include <utility>
#include <vector>

#include "cnn/tensor.hpp"

namespace cnn {

struct SgdOptions {
  double lr = 0.01;
  double momentum = 0.0;
  double dampening = 0.0;
  double weight_decay = 0.0;
  bool nesterov = false;
};

/// What a training loop needs of an optimizer: one update of every parameter from the current
/// gradients, and the learning rate, which schedules change between steps.
template <typename T = float>
class Optimizer {
 public:
  virtual ~Optimizer() = default;
  /// One update of every parameter from the current gradients.
  virtual void step() = 0;
  /// Changes the learning rate; throws cnn::Error unless lr > 0 and finite.
  virtual void set_lr(double lr) = 0;
  virtual double lr() const = 0;
  /// Named state tensors, each one value per parameter (SGD: "momentum_buffer", none without
  /// momentum; Adam: "exp_avg", "exp_avg_sq"), held as vectors so that a checkpoint can take
  /// them and give them back without a copy.
  using StateTensors = std::vector<std::pair<std::string, std::vector<T>>>;
  /// The state a checkpoint saves, besides the learning rate (which schedules set): named
  /// tensors laid out as the parameters (SGD: "momentum_buffer"; Adam: "exp_avg",
  /// "exp_avg_sq"), writable so that a resume can fill them, and a step counter (SGD: 0 before
  /// its first step, when the momentum buffer starts as the gradient, else 1; Adam: t). The
  /// tensors are allocated (as zeros) on the first step or the first call of state_tensors or
  /// take_state, not by the constructor, so that a resume's put_state adopts loaded ones without
  /// the optimizer having held its own; the spans are valid until take_state or put_state.
  virtual std::vector<std::pair<std::string, std::span<T>>> state_tensors() = 0;
  /// Moves the state tensors out, without a copy (allocating them first as zeros if no step
  /// has), in the order and with the names of state_tensors. The optimizer then holds none:
  /// give them back with put_state before the next step (a step without them starts them again
  /// from zeros, SGD's momentum buffer as zeros, not as the gradient, unless the counter is 0).
  virtual StateTensors take_state() = 0;
  /// Adopts `tensors` (moved in, no copy; `tensors` is left empty): those of take_state, or a
  /// checkpoint's. Throws cnn::Error, leaving `tensors` and the optimizer as they were, unless
  /// they are exactly state_tensors' names in its order, each of one value per parameter; the
  /// message names the optimizer, the tensor, what was expected and what was given ("Adam:
  /// state tensor 'exp_avg_sq' holds 5 values, expected 6 (one per parameter)"). The counter
  /// is set apart (set_state_counter).
  virtual void put_state(StateTensors&& tensors) = 0;
  virtual int64_t state_counter() const = 0;
  /// Restores the counter; throws cnn::Error for one the optimizer could not have reached
  /// (SGD: other than 0 or 1; Adam: negative or above 2^53, where t stops being exact as the
  /// double of the bias correction and its increment would come near overflow).
  virtual void set_state_counter(int64_t counter) = 0;
};

template <typename T = float>
class Sgd final : public Optimizer<T> {
 public:
  /// params and grads: equal-length, non-empty spans that outlive the optimizer (Sequential's
  /// parameters() and gradients()). Throws cnn::Error for no parameters, lr <= 0, negative
  /// momentum, dampening or weight decay, non-finite values, mismatched spans, or Nesterov without
  /// momentum or with dampening (PyTorch's rules).
  Sgd(std::span<T> params, std::span<const T> grads, SgdOptions options);
  void step() override;
  const SgdOptions& options() const { return options_; }
  /// Changes the learning rate (for schedules); same validation as the constructor.
  void set_lr(double lr) override;
  double lr() const override { return options_.lr; }
  std::vector<std::pair<std::string, std::span<T>>> state_tensors() override;
  typename Optimizer<T>::StateTensors take_state() override;
  void put_state(typename Optimizer<T>::StateTensors&& tensors) override;
  int64_t state_counter() const override { return first_step_ ? 0 : 1; }
  void set_state_counter(int64_t counter) override;

 private:
  std::span<T> params_;
  std::span<const T> grads_;
  SgdOptions options_;
  // One value per parameter with momentum once allocated (first step or state access), else
  // empty.
  std::vector<T> momentum_buffer_;
  bool first_step_ = true;

  /// Allocates the momentum buffer as zeros unless it is, or momentum is 0.
  void allocate_buffer();
};

struct AdamOptions {
  double lr = 1e-3;
  double beta1 = 0.9, beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;
  bool decoupled_weight_decay = false;  // true: AdamW
};

/// Why `options` would take T's parameters to inf or NaN whatever the gradients, naming the
/// settings ("AdamW: lr 3 x weight_decay 1 makes ..."); empty when they would not: AdamW's
/// decay factor 1 - lr weight_decay below -1 (lr x weight_decay > 2: the parameters grow every
/// step), and a first step's size lr / (1 - beta1) beyond T's range. Adam's constructor and
/// set_lr throw it. Gradients can still overflow where PyTorch's do too: with eps 0, a gradient
/// that is 0 (or whose square underflows) from the first step on gives 0 / 0 (NaN) or m / 0
/// (inf); Adam's weight_decay x parameter beyond T's range gives NaN.
template <typename T = float>
std::string adam_overflow(const AdamOptions& options);

template <typename T = float>
class Adam final : public Optimizer<T> {
 public:
  /// params and grads: equal-length, non-empty spans that outlive the optimizer. Throws
  /// cnn::Error ("Adam: ..." or "AdamW: ...") for no parameters, lr <= 0, betas outside [0, 1), eps
  /// < 0, negative weight decay, non-finite values or mismatched spans (PyTorch's rules), and
  /// for settings that overflow T together (adam_overflow).
  Adam(std::span<T> params, std::span<const T> grads, AdamOptions options);
  void step() override;
  /// Also refuses an lr that overflows with the other settings (adam_overflow).
  void set_lr(double lr) override;
  double lr() const override { return options_.lr; }
  const AdamOptions& options() const { return options_; }
  /// Steps taken so far (t of the bias correction).
  int64_t steps() const { return steps_; }
  /// The first and second moment estimates m and v, laid out as the parameters; empty until
  /// they are allocated (the first step, state_tensors or put_state) and after take_state.
  std::span<const T> exp_avg() const { return exp_avg_; }
  std::span<const T> exp_avg_sq() const { return exp_avg_sq_; }
  std::vector<std::pair<std::string, std::span<T>>> state_tensors() override;
  typename Optimizer<T>::StateTensors take_state() override;
  void put_state(typename Optimizer<T>::StateTensors&& tensors) override;
  int64_t state_counter() const override { return steps_; }
  void set_state_counter(int64_t counter) override;
  /// The largest step count set_state_counter takes: 2^53.
  static constexpr int64_t kMaxSteps = int64_t{1} << 53;

 private:
  void check_lr(double lr) const;
  /// Allocates the moments as zeros unless they are.
  void allocate_moments();

  std::span<T> params_;
  std::span<const T> grads_;
  AdamOptions options_;
  // One value per parameter once allocated, else empty (plain vectors: take_state and
  // put_state move them; the update reads them unaligned).
  std::vector<T> exp_avg_, exp_avg_sq_;
  int64_t steps_ = 0;
};

}  // namespace cnn

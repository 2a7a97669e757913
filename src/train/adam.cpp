// Adam and AdamW in PyTorch 1.13's single-tensor formulation (torch/optim/adam.py and
// adamw.py, _single_tensor_adam / _single_tensor_adamw): the bias corrections and the step size
// are computed in double once per step, the element-wise update in T.

#include <cmath>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include "../ops/parallel.hpp"
#include "cnn/error.hpp"
#include "cnn/ops.hpp"
#include "cnn/optim.hpp"
#include "optim_checks.hpp"

namespace cnn {

namespace {

/// The element-wise update over [begin, end), non-aliasing so that it vectorises. decay is the
/// coupled (Adam) weight decay added to the gradient, shrink the decoupled (AdamW) factor.
template <typename T>
void adam_update(T* __restrict p, const T* __restrict grad, T* __restrict m, T* __restrict v,
                 int64_t begin, int64_t end, T beta1, T beta2, T decay, T shrink, T step_size,
                 T correction2_sqrt, T eps) {
  const T one_minus_beta1 = T(1) - beta1, one_minus_beta2 = T(1) - beta2;
  for (int64_t i = begin; i < end; ++i) {
    const T pi = p[i] * shrink;
    const T g = grad[i] + decay * pi;
    m[i] = m[i] * beta1 + one_minus_beta1 * g;
    v[i] = v[i] * beta2 + one_minus_beta2 * g * g;
    const T denom = std::sqrt(v[i]) / correction2_sqrt + eps;
    p[i] = pi - step_size * (m[i] / denom);
  }
}

}  // namespace

template <typename T>
std::string adam_overflow(const AdamOptions& options) {
  // Found 2026-12-06: two valid settings made every parameter inf or NaN. AdamW multiplies the
  // parameters by 1 - lr weight_decay each step: below -1 (lr weight_decay > 2) they grow
  // until they overflow (NaN after 129 steps at lr 1, weight decay 3; at once where the
  // product leaves T's range). The first step moves by lr / (1 - beta1) (later ones by less):
  // beyond T's range it is inf (lr 1e38 with beta1 0.9). Both are checked as step() computes
  // them, in double and then as T, so that no setting it takes changes.
  const std::string name = options.decoupled_weight_decay ? "AdamW: " : "Adam: ";
  const std::string as_t = detail::type_phrase<T>();
  const double lr = options.lr;
  if (options.decoupled_weight_decay) {
    const double factor = 1 - lr * options.weight_decay;
    if (!detail::finite_as<T>(factor) || std::fabs(static_cast<T>(factor)) > T(1)) {
      return name + "lr " + detail::number_text(lr) + " x weight_decay " +
             detail::number_text(options.weight_decay) +
             " makes the decoupled decay factor 1 - lr x weight_decay " +
             detail::number_text(factor) +
             ", which grows the parameters every step until they overflow; expected lr x "
             "weight_decay <= 2";
    }
  }
  const double first_step = lr / (1 - std::pow(options.beta1, 1.0));
  if (!detail::finite_as<T>(first_step)) {
    char beta1[32];  // 9 digits: 0.99999994 is not 1
    std::snprintf(beta1, sizeof beta1, "%.9g", options.beta1);
    return name + "lr " + detail::number_text(lr) + " / (1 - beta1 " + beta1 +
           "), the first step's size, is " + detail::number_text(first_step) + ", beyond " + as_t +
           "; expected a smaller lr or beta1";
  }
  return "";
}

template <typename T>
Adam<T>::Adam(std::span<T> params, std::span<const T> grads, AdamOptions options)
    : params_(params), grads_(grads), options_(options) {
  const std::string name = options.decoupled_weight_decay ? "AdamW: " : "Adam: ";
  const auto require = [&](bool ok, const std::string& message) {
    if (!ok) throw Error(name + message);
  };
  require(params.size() == grads.size(), "expected as many gradients as parameters, got " +
                                             std::to_string(grads.size()) + " and " +
                                             std::to_string(params.size()));
  // As SGD: PyTorch refuses an empty parameter list, which would train nothing.
  require(!params.empty(), "expected at least one parameter, got none");
  check_lr(options.lr);
  // Each as T, the type step() converts them to: 1e39 is a finite double but float's inf, and
  // a beta of 0.9999999999 is 1 as a float (1 - beta2 = 0: v stays 0).
  const std::string as_t = std::string(" as ") + detail::type_phrase<T>();
  for (const auto& [beta, which] : {std::pair{options.beta1, "beta1"}, {options.beta2, "beta2"}}) {
    require(std::isfinite(beta) && beta >= 0 && static_cast<T>(beta) < T(1),
            std::string("expected 0 <= ") + which + " < 1" + as_t + ", got " +
                detail::number_text(beta));
  }
  require(detail::finite_as<T>(options.eps) && options.eps >= 0,
          "expected eps >= 0 and finite" + as_t + ", got " + detail::number_text(options.eps));
  require(detail::finite_as<T>(options.weight_decay) && options.weight_decay >= 0,
          "expected weight_decay >= 0 and finite" + as_t + ", got " +
              detail::number_text(options.weight_decay));
  if (const std::string overflow = adam_overflow<T>(options); !overflow.empty())
    throw Error(overflow);
  // The moments are allocated by the first step or state access (allocate_moments), so that a
  // resume's put_state adopts a checkpoint's without these having been held besides them.
}

template <typename T>
void Adam<T>::allocate_moments() {
  if (exp_avg_.size() != params_.size()) exp_avg_.assign(params_.size(), T(0));
  if (exp_avg_sq_.size() != params_.size()) exp_avg_sq_.assign(params_.size(), T(0));
}

template <typename T>
std::vector<std::pair<std::string, std::span<T>>> Adam<T>::state_tensors() {
  allocate_moments();
  return {{"exp_avg", {exp_avg_.data(), exp_avg_.size()}},
          {"exp_avg_sq", {exp_avg_sq_.data(), exp_avg_sq_.size()}}};
}

template <typename T>
typename Optimizer<T>::StateTensors Adam<T>::take_state() {
  allocate_moments();
  typename Optimizer<T>::StateTensors taken;
  taken.emplace_back("exp_avg", std::move(exp_avg_));
  taken.emplace_back("exp_avg_sq", std::move(exp_avg_sq_));
  exp_avg_ = std::vector<T>();
  exp_avg_sq_ = std::vector<T>();
  return taken;
}

template <typename T>
void Adam<T>::put_state(typename Optimizer<T>::StateTensors&& tensors) {
  const char* const who = options_.decoupled_weight_decay ? "AdamW: " : "Adam: ";
  detail::check_state_tensors(who, {"exp_avg", "exp_avg_sq"}, params_.size(), tensors);
  // The second moment is a mean of squares: a negative one (an edited checkpoint's) made the
  // first step's sqrt NaN, and the run "diverged: try a smaller --lr" (found 2026-12-07, a
  // helper's probe). Non-finite moments would do the same. One pass, as the checkpoint's own.
  for (size_t k = 0; k < 2; ++k)
    detail::require_finite_state(who, tensors[k].first, tensors[k].second, k == 1);
  exp_avg_ = std::move(tensors[0].second);
  exp_avg_sq_ = std::move(tensors[1].second);
  tensors.clear();
}

template <typename T>
void Adam<T>::check_lr(double lr) const {
  // As SGD's: checked as the T that step() uses.
  if (!detail::positive_as<T>(lr)) {
    throw Error(std::string(options_.decoupled_weight_decay ? "AdamW" : "Adam") +
                ": expected lr > 0 and finite as " + detail::type_phrase<T>() + ", got " +
                detail::number_text(lr));
  }
}

template <typename T>
void Adam<T>::set_lr(double lr) {
  check_lr(lr);
  AdamOptions changed = options_;
  changed.lr = lr;
  if (const std::string overflow = adam_overflow<T>(changed); !overflow.empty())
    throw Error(overflow);
  options_.lr = lr;
}

template <typename T>
void Adam<T>::set_state_counter(int64_t counter) {
  // A negative t made the bias corrections negative or 0 (NaN parameters); one near INT64_MAX
  // overflowed the increment in step(). 2^53 is as far as t stays exact in the double of the
  // bias correction, and far beyond any run.
  if (counter < 0 || counter > kMaxSteps) {
    throw Error(std::string(options_.decoupled_weight_decay ? "AdamW" : "Adam") +
                ": expected a step count from 0 to 2^53, got " + std::to_string(counter));
  }
  steps_ = counter;
}

template <typename T>
void Adam<T>::step() {
  ++steps_;
  const double t = static_cast<double>(steps_);
  const double correction1 = 1 - std::pow(options_.beta1, t);
  const double correction2 = 1 - std::pow(options_.beta2, t);
  const bool decoupled = options_.decoupled_weight_decay;
  const T decay = decoupled ? T(0) : static_cast<T>(options_.weight_decay);
  const T shrink = decoupled ? static_cast<T>(1 - options_.lr * options_.weight_decay) : T(1);
  const T step_size = static_cast<T>(options_.lr / correction1);
  const T correction2_sqrt = static_cast<T>(std::sqrt(correction2));
  const T beta1 = static_cast<T>(options_.beta1), beta2 = static_cast<T>(options_.beta2);
  const T eps = static_cast<T>(options_.eps);
  const int64_t n = static_cast<int64_t>(params_.size());
  allocate_moments();  // the first step's (or one after take_state's): zeros
  // Element-wise: threads split the buffers, the result does not depend on how.
  const int team = detail::element_parts(n, ops::threads());
  T* const p = params_.data();
  const T* const grad = grads_.data();
  T* const m = exp_avg_.data();
  T* const v = exp_avg_sq_.data();
  detail::for_each_range(team, n, [&](int64_t begin, int64_t end) {
    adam_update(p, grad, m, v, begin, end, beta1, beta2, decay, shrink, step_size, correction2_sqrt,
                eps);
  });
}

template class Adam<float>;
template class Adam<double>;
template std::string adam_overflow<float>(const AdamOptions&);
template std::string adam_overflow<double>(const AdamOptions&);

}  // namespace cnn

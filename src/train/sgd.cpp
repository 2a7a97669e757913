#include <cmath>
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
void require(bool ok, const std::string& message) {
  if (!ok) throw Error("SGD: " + message);
}
std::string text(double value) {
  return detail::number_text(value);
}
}  // namespace

template <typename T>
Sgd<T>::Sgd(std::span<T> params, std::span<const T> grads, SgdOptions options)
    : params_(params), grads_(grads), options_(options) {
  require(params.size() == grads.size(), "expected as many gradients as parameters, got " +
                                             std::to_string(grads.size()) + " and " +
                                             std::to_string(params.size()));
  // PyTorch refuses an empty list too ("optimizer got an empty parameter list"): the spans of
  // a model without parameters would train nothing without a word.
  require(!params.empty(), "expected at least one parameter, got none");
  set_lr(options.lr);
  // Finite as T, the type step() converts them to: 1e39 is a finite double, float's inf.
  const std::string as_t = std::string(" and finite as ") + detail::type_phrase<T>();
  require(detail::finite_as<T>(options.momentum) && options.momentum >= 0,
          "expected momentum >= 0" + as_t + ", got " + text(options.momentum));
  require(detail::finite_as<T>(options.dampening) && options.dampening >= 0,
          "expected dampening >= 0" + as_t + ", got " + text(options.dampening));
  require(detail::finite_as<T>(options.weight_decay) && options.weight_decay >= 0,
          "expected weight_decay >= 0" + as_t + ", got " + text(options.weight_decay));
  require(!options.nesterov || (options.momentum > 0 && options.dampening == 0),
          "Nesterov momentum expects momentum > 0 and dampening 0, got momentum " +
              text(options.momentum) + " and dampening " + text(options.dampening));
  // The momentum buffer is allocated by the first step or state access, so that a resume's
  // put_state adopts a checkpoint's without this one having been held besides it.
}

template <typename T>
void Sgd<T>::allocate_buffer() {
  if (options_.momentum != 0 && momentum_buffer_.size() != params_.size())
    momentum_buffer_.assign(params_.size(), T(0));
}

template <typename T>
std::vector<std::pair<std::string, std::span<T>>> Sgd<T>::state_tensors() {
  if (options_.momentum == 0) return {};
  allocate_buffer();
  return {{"momentum_buffer", {momentum_buffer_.data(), momentum_buffer_.size()}}};
}

template <typename T>
typename Optimizer<T>::StateTensors Sgd<T>::take_state() {
  if (options_.momentum == 0) return {};
  allocate_buffer();
  typename Optimizer<T>::StateTensors taken;
  taken.emplace_back("momentum_buffer", std::move(momentum_buffer_));
  momentum_buffer_ = std::vector<T>();
  return taken;
}

template <typename T>
void Sgd<T>::put_state(typename Optimizer<T>::StateTensors&& tensors) {
  std::vector<std::string> names;
  if (options_.momentum != 0) names.emplace_back("momentum_buffer");
  detail::check_state_tensors("SGD: ", names, params_.size(), tensors);
  // As Adam's moments: a non-finite momentum made the next step's parameters NaN (found
  // 2026-12-08, a probe of the API: Adam refused what SGD took).
  if (!tensors.empty()) {
    detail::require_finite_state("SGD: ", tensors[0].first, tensors[0].second);
    momentum_buffer_ = std::move(tensors[0].second);
  }
  tensors.clear();
}

template <typename T>
void Sgd<T>::set_state_counter(int64_t counter) {
  // state_counter() gives 0 (before the first step, whose momentum buffer starts as the
  // gradient) or 1; anything else was read as "stepped" without a word.
  require(
      counter == 0 || counter == 1,
      "expected a state counter of 0 (before the first step) or 1, got " + std::to_string(counter));
  first_step_ = counter == 0;
}

template <typename T>
void Sgd<T>::set_lr(double lr) {
  // Checked as the T that step() multiplies by: 1e39 is float's inf, 1e-50 its 0. The message
  // is built only on failure: schedules call this every step.
  if (!detail::positive_as<T>(lr)) {
    require(false, std::string("expected lr > 0 and finite as ") + detail::type_phrase<T>() +
                       ", got " + text(lr));
  }
  options_.lr = lr;
}

namespace {
/// The usual momentum step over [begin, end), without branches so that it vectorises: the
/// same arithmetic as general_step. Arguments by value and pointers non-aliasing, so that the
/// compiler may keep the scalars in registers across the stores.
template <typename T>
void momentum_step(T* __restrict p, const T* __restrict grad, T* __restrict buffer, int64_t begin,
                   int64_t end, T lr, T mu, T decay, T keep) {
  for (int64_t i = begin; i < end; ++i) {
    const T g = grad[i] + decay * p[i];
    buffer[i] = mu * buffer[i] + keep * g;
    p[i] -= lr * buffer[i];
  }
}
/// Any step: plain SGD (mu = 0), the first momentum step, Nesterov.
template <typename T>
void general_step(T* __restrict p, const T* __restrict grad, T* __restrict buffer, int64_t begin,
                  int64_t end, T lr, T mu, T decay, T keep, bool first, bool nesterov) {
  for (int64_t i = begin; i < end; ++i) {
    T g = grad[i] + decay * p[i];
    if (mu != T(0)) {
      buffer[i] = first ? g : mu * buffer[i] + keep * g;
      g = nesterov ? g + mu * buffer[i] : buffer[i];
    }
    p[i] -= lr * g;
  }
}
}  // namespace

template <typename T>
void Sgd<T>::step() {
  const T lr = static_cast<T>(options_.lr), mu = static_cast<T>(options_.momentum);
  const T decay = static_cast<T>(options_.weight_decay);
  const T keep = static_cast<T>(1.0 - options_.dampening);
  const size_t n = params_.size();
  T* const p = params_.data();
  const T* const grad = grads_.data();
  // Allocated on the first step (or after take_state); the first step writes it before
  // reading it, a later one after take_state starts from zeros.
  allocate_buffer();
  T* const buffer = momentum_buffer_.data();
  // Element-wise: threads split the buffer, the result does not depend on how.
  const int team = detail::element_parts(static_cast<int64_t>(n), ops::threads());
  const bool first = first_step_, nesterov = options_.nesterov;
  detail::for_each_range(team, static_cast<int64_t>(n), [&](int64_t begin, int64_t end) {
    if (mu != T(0) && !first && !nesterov) {
      momentum_step(p, grad, buffer, begin, end, lr, mu, decay, keep);
    } else {
      general_step(p, grad, buffer, begin, end, lr, mu, decay, keep, first, nesterov);
    }
  });
  first_step_ = false;
}

template class Sgd<float>;
template class Sgd<double>;

}  // namespace cnn

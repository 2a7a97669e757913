#include <cmath>
#include <optional>

#include "cnn/error.hpp"
#include "cnn/init.hpp"
#include "cnn/layers.hpp"

namespace cnn {

std::string Size2::str() const {
  // Appending (rather than "(" + ...) sidesteps a g++ 12 -Wrestrict false positive.
  std::string text = "(";
  text += std::to_string(h);
  text += ", ";
  text += std::to_string(w);
  text += ")";
  return text;
}

std::string to_string(Init init) {
  switch (init) {
    case Init::kPyTorchDefault:
      return "pytorch";
    case Init::kHeNormal:
      return "he_normal";
    case Init::kHeUniform:
      return "he_uniform";
    case Init::kXavierUniform:
      return "xavier_uniform";
    case Init::kXavierNormal:
      return "xavier_normal";
  }
  return "unknown";
}

Init init_from_string(const std::string& name) {
  for (Init init : {Init::kPyTorchDefault, Init::kHeNormal, Init::kHeUniform, Init::kXavierUniform,
                    Init::kXavierNormal}) {
    if (to_string(init) == name) return init;
  }
  throw Error(
      "init: expected one of pytorch, he_normal, he_uniform, xavier_uniform, "
      "xavier_normal, got '" +
      name + "'");
}

template <typename T>
void init_weights(T* w, int64_t n, int64_t fan_in, int64_t fan_out, Rng& rng, Init init) {
  const double in = static_cast<double>(fan_in), out = static_cast<double>(fan_out);
  switch (init) {
    case Init::kPyTorchDefault: {
      const double bound = 1.0 / std::sqrt(in);
      for (int64_t i = 0; i < n; ++i) w[i] = static_cast<T>(rng.uniform(-bound, bound));
      return;
    }
    case Init::kHeNormal: {
      const double stddev = std::sqrt(2.0 / in);
      for (int64_t i = 0; i < n; ++i) w[i] = static_cast<T>(stddev * rng.normal());
      return;
    }
    case Init::kHeUniform: {
      const double bound = std::sqrt(6.0 / in);
      for (int64_t i = 0; i < n; ++i) w[i] = static_cast<T>(rng.uniform(-bound, bound));
      return;
    }
    case Init::kXavierUniform: {
      const double bound = std::sqrt(6.0 / (in + out));
      for (int64_t i = 0; i < n; ++i) w[i] = static_cast<T>(rng.uniform(-bound, bound));
      return;
    }
    case Init::kXavierNormal: {
      const double stddev = std::sqrt(2.0 / (in + out));
      for (int64_t i = 0; i < n; ++i) w[i] = static_cast<T>(stddev * rng.normal());
      return;
    }
  }
}

template <typename T>
void init_bias(T* b, int64_t n, int64_t fan_in, Rng& rng, Init init) {
  if (init != Init::kPyTorchDefault) {
    std::fill(b, b + n, T(0));
    return;
  }
  const double bound = 1.0 / std::sqrt(static_cast<double>(fan_in));
  for (int64_t i = 0; i < n; ++i) b[i] = static_cast<T>(rng.uniform(-bound, bound));
}

template void init_weights<float>(float*, int64_t, int64_t, int64_t, Rng&, Init);
template void init_weights<double>(double*, int64_t, int64_t, int64_t, Rng&, Init);
template void init_bias<float>(float*, int64_t, int64_t, Rng&, Init);
template void init_bias<double>(double*, int64_t, int64_t, Rng&, Init);

template <typename T>
void Layer<T>::init_parameters(Rng& /*rng*/, Init /*init*/) {}

namespace {
/// The elements of `specs`, or kMaxElements + 1 past kMaxElements (each Shape holds at most
/// kMaxElements, but a list of 2^15 of them passes int64's range).
int64_t element_total(const std::vector<ParamSpec>& specs) {
  int64_t count = 0;
  for (const ParamSpec& spec : specs) {
    const std::optional<int64_t> total = size_sum(count, spec.shape.numel());
    if (!total) return kMaxElements + 1;
    count = *total;
  }
  return count;
}
}  // namespace

template <typename T>
int64_t Layer<T>::parameter_count() const {
  return element_total(parameter_specs());
}

template <typename T>
void Layer<T>::bind_parameters(T* values, T* gradients) {
  bound_specs_ = parameter_specs();
  offsets_.clear();
  int64_t offset = 0;
  for (const ParamSpec& spec : bound_specs_) {
    offsets_.push_back(offset);
    offset += spec.shape.numel();
  }
  if (offset > 0 && values == nullptr) {
    fail("bind_parameters: expected values for " + std::to_string(offset) +
         " parameters, got a null pointer");
  }
  values_ = values;
  gradients_ = gradients;
  bound_ = true;
  on_parameters_bound(values, gradients);
}

template <typename T>
int64_t Layer<T>::buffer_count() const {
  return element_total(buffer_specs());
}

template <typename T>
void Layer<T>::bind_buffers(T* values) {
  bound_buffer_specs_ = buffer_specs();
  buffer_offsets_.clear();
  int64_t offset = 0;
  for (const ParamSpec& spec : bound_buffer_specs_) {
    buffer_offsets_.push_back(offset);
    offset += spec.shape.numel();
  }
  if (offset > 0 && values == nullptr) {
    fail("bind_buffers: expected a buffer for " + std::to_string(offset) +
         " values, got a null pointer");
  }
  buffers_ = values;
  buffers_bound_ = true;
  on_buffers_bound(values);
}

template <typename T>
TensorView<T> Layer<T>::buffer(size_t i) const {
  return {buffer_data(i), bound_buffer_specs_.at(i).shape};
}

template <typename T>
T* Layer<T>::buffer_data(size_t i) const {
  require_bound(i, buffer_offsets_.size(), &Layer<T>::buffer_specs, "buffer");
  return buffers_ + buffer_offsets_[i];
}

template <typename T>
TensorView<T> Layer<T>::parameter(size_t i) const {
  return {value_data(i), bound_specs_.at(i).shape};
}

template <typename T>
TensorView<T> Layer<T>::gradient(size_t i) const {
  return {gradient_data(i), bound_specs_.at(i).shape};
}

template <typename T>
void Layer<T>::require_bound(size_t i, size_t bound,
                             std::vector<ParamSpec> (Layer<T>::*specs)() const,
                             const char* what) const {
  if (i < bound) return;
  // An index past the layer's tensors said "not bound" (found 2026-12-08, a probe of the API).
  const size_t count = (this->*specs)().size();
  if (i >= count) {
    fail(std::string(what) + " " + std::to_string(i) + " asked for, but the layer has " +
         std::to_string(count) + " (expected an index below that)");
  }
  fail(std::string(what) + "s are not bound (call bind_" + what + "s or build a model)");
}

template <typename T>
T* Layer<T>::value_data(size_t i) const {
  require_bound(i, offsets_.size(), &Layer<T>::parameter_specs, "parameter");
  return values_ + offsets_[i];
}

template <typename T>
T* Layer<T>::gradient_data(size_t i) const {
  require_bound(i, offsets_.size(), &Layer<T>::parameter_specs, "parameter");
  if (gradients_ == nullptr) {
    fail(
        "parameters are bound without gradients (a model built for inference allocates them "
        "in Sequential::allocate_gradients)");
  }
  return gradients_ + offsets_[i];
}

template <typename T>
void Layer<T>::fail(const std::string& message) const {
  throw Error(describe() + ": " + message);
}

template <typename T>
void Layer<T>::forward(TensorView<const T> x, TensorView<T> y, Mode mode) {
  check_forward(x, y);
  forward_impl(x, y, mode);
}

template <typename T>
void Layer<T>::check_forward(TensorView<const T> x, TensorView<T> y) const {
  const Shape expected = output_shape(x.shape());
  if (y.shape() != expected) {
    fail("forward: expected output " + expected.str() + " for input " + x.shape().str() + ", got " +
         y.shape().str());
  }
  if (x.empty() || y.empty()) fail("forward: input and output must not be empty views");
  if (!bound_ && parameter_count() > 0) {  // bound_ first: no spec list in the training step
    fail("parameters are not bound (call bind_parameters or build a model)");
  }
  if (!buffers_bound_ && buffer_count() > 0) {
    fail("buffers are not bound (call bind_buffers or build a model)");
  }
}

template <typename T>
void Layer<T>::backward(TensorView<const T> x, TensorView<const T> y, TensorView<const T> dy,
                        TensorView<T> dx) {
  check_backward(x.shape(), y.shape(), dy.shape(), dx);
  // Only dx may be empty ("not needed"); the others are read.
  if (x.empty() || y.empty() || dy.empty())
    fail("backward: input, output and output gradient must not be empty views");
  backward_impl(x, y, dy, dx);
}

template <typename T>
void Layer<T>::check_backward(const Shape& x, const Shape& y, const Shape& dy,
                              TensorView<T> dx) const {
  const Shape expected = output_shape(x);
  if (y != expected || dy != expected) {
    fail("backward: expected output and its gradient " + expected.str() + " for input " + x.str() +
         ", got " + y.str() + " and " + dy.str());
  }
  if (!dx.empty() && dx.shape() != x) {
    fail("backward: expected input gradient " + x.str() + ", got " + dx.shape().str());
  }
  if (!bound_ && parameter_count() > 0) {  // bound_ first: no spec list in the training step
    fail("parameters are not bound (call bind_parameters or build a model)");
  }
  if (gradients_ == nullptr && !offsets_.empty() && parameter_count() > 0) {
    fail(
        "backward: parameters are bound without gradients (a model built for inference "
        "allocates them in Sequential::allocate_gradients)");
  }
}

template class Layer<float>;
template class Layer<double>;

}  // namespace cnn

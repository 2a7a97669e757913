#include <algorithm>
#include <optional>
#include <utility>

#include "../ops/parallel.hpp"
#include "cnn/error.hpp"
#include "cnn/model.hpp"
#include "cnn/ops.hpp"

namespace cnn {

namespace {
/// (batch, sample dims...)
Shape batched(int64_t batch, const Shape& sample) {
  int64_t dims[Shape::kMaxRank];
  if (sample.rank() + 1 > Shape::kMaxRank) {
    throw Error("Sequential: expected a sample shape of rank below " +
                std::to_string(Shape::kMaxRank) + ", got " + sample.str());
  }
  dims[0] = batch;
  for (int i = 0; i < sample.rank(); ++i) dims[i + 1] = sample[i];
  return Shape(dims, sample.rank() + 1);
}
}  // namespace

template <typename T>
Sequential<T>::Sequential(Sequential&& other) noexcept {
  *this = std::move(other);
}

template <typename T>
Sequential<T>& Sequential<T>::operator=(Sequential&& other) noexcept {
  if (this == &other) return *this;
  // The layers are on the heap, so the chain's pointers to them and theirs into the moved
  // buffers stay valid. The source is then reset member by member: a moved-from vector or
  // Tensor is empty in practice, but built_ and sample_shape_ would be copied, not reset.
  layers_ = std::move(other.layers_);
  built_ = std::exchange(other.built_, false);
  has_gradients_ = std::exchange(other.has_gradients_, false);
  sample_shape_ = std::exchange(other.sample_shape_, Shape());
  values_ = std::move(other.values_);
  grads_ = std::move(other.grads_);
  buffers_ = std::move(other.buffers_);
  chain_ = std::move(other.chain_);
  other.layers_.clear();
  other.values_ = Tensor<T>();
  other.grads_ = Tensor<T>();
  other.buffers_ = Tensor<T>();
  other.chain_ = detail::LayerChain<T>();
  return *this;
}

template <typename T>
Sequential<T>& Sequential<T>::add(std::unique_ptr<Layer<T>> layer) {
  if (built_) throw Error("Sequential: cannot add a layer after build()");
  if (!layer) throw Error("Sequential: expected a layer, got null");
  layers_.push_back(std::move(layer));
  return *this;
}

template <typename T>
typename Sequential<T>::Layout Sequential<T>::layout(const Shape& sample_shape) const {
  if (layers_.empty()) throw Error("Sequential: expected at least one layer, got none");
  if (!sample_shape.all_positive()) {
    throw Error("Sequential: expected a sample shape with positive sizes, got " +
                sample_shape.str());
  }
  Layout layout;
  layout.shapes.push_back(batched(1, sample_shape));
  int64_t count = 0;
  for (size_t i = 0; i < layers_.size(); ++i) {
    try {
      layout.shapes.push_back(layers_[i]->output_shape(layout.shapes.back()));
    } catch (const Error& e) {
      throw Error("Sequential: layer " + std::to_string(i) + " " + e.what());
    }
    std::optional<int64_t> total;
    try {
      total = size_sum(count, layers_[i]->parameter_count());
    } catch (const Error& e) {  // a parameter shape too large for a Shape
      throw Error("Sequential: layer " + std::to_string(i) + " " + layers_[i]->describe() +
                  ": parameters: " + e.what());
    }
    if (!total) {
      throw Error("Sequential: layer " + std::to_string(i) +
                  " takes the parameter count past 2^48 (the layers before it have " +
                  std::to_string(count) + ")");
    }
    count = *total;
  }
  layout.parameters = count;
  for (size_t i = 0; i < layers_.size(); ++i) {  // running statistics: small, but bounded too
    const std::optional<int64_t> total = size_sum(layout.buffers, layers_[i]->buffer_count());
    if (!total) {
      throw Error("Sequential: layer " + std::to_string(i) +
                  " takes the buffer count past 2^48 (the layers before it have " +
                  std::to_string(layout.buffers) + ")");
    }
    layout.buffers = *total;
  }
  return layout;
}

template <typename T>
void Sequential<T>::build(const Shape& sample_shape, ModelUse use) {
  if (built_) throw Error("Sequential: build() called twice");
  const Layout sizes = layout(sample_shape);
  values_.resize(Shape{sizes.parameters});
  values_.fill(T(0));
  // Gradients only for training: a model loaded to evaluate held a second model's worth of
  // zeros it never touched (allocate_gradients adds them when it is trained after all).
  has_gradients_ = use == ModelUse::kTraining;
  grads_ = Tensor<T>();
  if (has_gradients_) {
    grads_.resize(Shape{sizes.parameters});
    grads_.fill(T(0));
  }
  buffers_.resize(Shape{sizes.buffers});
  buffers_.fill(T(0));
  bind_parameters();
  int64_t buffer_offset = 0;
  std::vector<Layer<T>*> chain;
  for (auto& layer : layers_) {
    layer->bind_buffers(buffers_.data() + buffer_offset);
    layer->reset_buffers();
    buffer_offset += layer->buffer_count();
    chain.push_back(layer.get());
  }
  chain_.set_layers(std::move(chain));
  sample_shape_ = sample_shape;
  built_ = true;
}

template <typename T>
void Sequential<T>::bind_parameters() {
  int64_t offset = 0;
  for (auto& layer : layers_) {
    layer->bind_parameters(values_.data() + offset,
                           has_gradients_ ? grads_.data() + offset : nullptr);
    offset += layer->parameter_count();
  }
}

template <typename T>
void Sequential<T>::allocate_gradients() {
  require_built("allocate_gradients()");
  if (has_gradients_) return;
  grads_.resize(Shape{values_.numel()});
  grads_.fill(T(0));
  has_gradients_ = true;
  bind_parameters();  // the same values, now with their gradients
}

template <typename T>
void Sequential<T>::require_built(const char* what) const {
  if (!built_) throw Error(std::string("Sequential: ") + what + " before build()");
}

template <typename T>
size_t Sequential<T>::checked_layer_index(size_t i) const {
  if (i >= layers_.size()) {
    throw Error("Sequential: layer " + std::to_string(i) + " asked for, but the model has " +
                std::to_string(layers_.size()) + " layers (expected an index below that)");
  }
  return i;
}

template <typename T>
void Sequential<T>::init_parameters(Rng& rng, Init init) {
  require_built("init_parameters()");
  for (auto& layer : layers_) {
    layer->init_parameters(rng, init);
    layer->reset_buffers();
  }
}

template <typename T>
Shape Sequential<T>::output_shape(int64_t batch) const {
  require_built("output_shape()");
  if (batch < 1) {
    throw Error("Sequential: output_shape() expected a batch >= 1, got " + std::to_string(batch));
  }
  Shape shape = batched(batch, sample_shape_);
  // Each layer's error with the prefix build()'s and backward()'s messages have.
  for (size_t i = 0; i < layers_.size(); ++i) {
    try {
      shape = layers_[i]->output_shape(shape);
    } catch (const Error& e) {
      throw Error("Sequential: layer " + std::to_string(i) + " " + e.what());
    }
  }
  return shape;
}

template <typename T>
TensorView<const T> Sequential<T>::forward(TensorView<const T> x, Mode mode) {
  require_built("forward()");
  const Shape& in = x.shape();
  if (in.rank() != sample_shape_.rank() + 1 || in[0] <= 0 || in != batched(in[0], sample_shape_) ||
      x.empty()) {
    std::string expected = "(N";
    for (int64_t d : sample_shape_) expected += ", " + std::to_string(d);
    throw Error("Sequential: expected input " + expected + ") with N > 0, got " + in.str());
  }
  return chain_.forward(x, mode);
}

template <typename T>
void Sequential<T>::backward(TensorView<const T> dy) {
  require_built("backward()");
  allocate_gradients();
  try {
    chain_.backward(dy, {});
  } catch (const Error& e) {
    throw Error(std::string("Sequential: ") + e.what());
  }
}

template <typename T>
void Sequential<T>::zero_grad() {
  if (built_) allocate_gradients();  // before build() there is nothing to zero
  // Split as the optimizers split their updates (element_parts), so that each thread zeroes
  // the gradients it reads in the update.
  T* const grads = grads_.data();
  detail::for_each_range(
      detail::element_parts(grads_.numel(), ops::threads()), grads_.numel(),
      [&](int64_t begin, int64_t end) { std::fill(grads + begin, grads + end, T(0)); });
}

template <typename T>
std::vector<typename Sequential<T>::NamedParameter> Sequential<T>::named_parameters() {
  require_built("named_parameters()");
  std::vector<NamedParameter> named;
  for (size_t i = 0; i < layers_.size(); ++i) {
    const std::vector<ParamSpec> specs = layers_[i]->parameter_specs();
    for (size_t p = 0; p < specs.size(); ++p) {
      named.push_back({std::to_string(i) + "." + specs[p].name, layers_[i]->parameter(p),
                       has_gradients_ ? layers_[i]->gradient(p) : TensorView<T>()});
    }
  }
  return named;
}

template <typename T>
std::vector<typename Sequential<T>::NamedBuffer> Sequential<T>::named_buffers() {
  require_built("named_buffers()");
  std::vector<NamedBuffer> named;
  for (size_t i = 0; i < layers_.size(); ++i) {
    const std::vector<ParamSpec> specs = layers_[i]->buffer_specs();
    for (size_t b = 0; b < specs.size(); ++b) {
      named.push_back(
          {std::to_string(i) + "." + specs[b].name, layers_[i]->buffer(b), specs[b].counter});
    }
  }
  return named;
}

template <typename T>
std::vector<ParamSpec> Sequential<T>::named_specs(std::vector<ParamSpec> (Layer<T>::*specs)()
                                                      const) const {
  std::vector<ParamSpec> named;
  for (size_t i = 0; i < layers_.size(); ++i) {
    for (ParamSpec& spec : ((*layers_[i]).*specs)()) {
      spec.name = std::to_string(i) + "." + spec.name;
      named.push_back(std::move(spec));
    }
  }
  return named;
}

template <typename T>
std::vector<ParamSpec> Sequential<T>::parameter_specs() const {
  return named_specs(&Layer<T>::parameter_specs);
}

template <typename T>
std::vector<ParamSpec> Sequential<T>::buffer_specs() const {
  return named_specs(&Layer<T>::buffer_specs);
}

template class Sequential<float>;
template class Sequential<double>;

}  // namespace cnn

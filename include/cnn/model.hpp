#pragma once
// Sequential: layers run forward in order and backward in reverse, with shapes inferred once
// at build() and all parameters in ONE flat value buffer and ONE flat gradient buffer (what
// the optimizer walks over, in PyTorch's state_dict order). A model built for inference
// (ModelUse::kInference: the loaders') has no gradient buffer until the first call that needs
// one (gradients(), zero_grad(), backward()) allocates it.

#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "cnn/layer_chain.hpp"
#include "cnn/layers.hpp"
#include "cnn/tensor.hpp"

namespace cnn {

/// What a model is built for: kTraining allocates the gradient buffer at build(); kInference
/// leaves it out (a model's worth of memory that evaluation never touches) until a call that
/// needs it (gradients(), zero_grad(), backward(), allocate_gradients()) allocates it.
enum class ModelUse { kTraining, kInference };

template <typename T = float>
class Sequential {
 public:
  Sequential() = default;
  /// Takes other's layers, buffers and built state; other is left empty and unbuilt (add()
  /// works on it again, forward() throws "before build()"). Written out because the defaulted
  /// moves left other built with no layers, so its forward returned its input.
  Sequential(Sequential&& other) noexcept;
  Sequential& operator=(Sequential&& other) noexcept;

  /// Appends a layer. Throws cnn::Error after build().
  Sequential& add(std::unique_ptr<Layer<T>> layer);
  /// Constructs a layer in place and appends it: model.emplace<Conv2d<>>(1, 6, 5).
  template <typename L, typename... Args>
  L& emplace(Args&&... args) {
    auto layer = std::make_unique<L>(std::forward<Args>(args)...);
    L& ref = *layer;
    add(std::move(layer));
    return ref;
  }

  /// Infers every layer's output shape for samples of `sample_shape` (no batch dimension,
  /// e.g. (1, 28, 28)), allocates the flat parameter buffer, the flat gradient buffer (for
  /// kTraining only) and the flat buffer store (zeroed; reset: running variances 1), and binds
  /// the layers to them. Throws cnn::Error naming the first layer whose input does not fit.
  void build(const Shape& sample_shape, ModelUse use = ModelUse::kTraining);
  bool built() const { return built_; }
  /// Whether the gradient buffer exists (after a kTraining build, or once a kInference model
  /// allocated it).
  bool has_gradients() const { return built_ && has_gradients_; }
  /// Allocates the gradient buffer (zeroed) and binds the layers to it, when it does not exist
  /// yet; nothing otherwise. Throws cnn::Error before build().
  void allocate_gradients();
  /// What build(sample_shape) checks and sizes, without allocating anything: the batch shape
  /// (batch 1) entering each layer and the one leaving the last (size() + 1 shapes), and the
  /// parameter and buffer totals. Throws the cnn::Error that build() throws for the same layers
  /// and shape. For the uses that need shapes alone (a spec's checks, `cnn info`): a model's
  /// values can need far more memory than its description. Works before and after build().
  struct Layout {
    std::vector<Shape> shapes;
    int64_t parameters = 0;
    int64_t buffers = 0;
  };
  Layout layout(const Shape& sample_shape) const;
  /// Initialises every layer's parameters from rng, in layer order, and resets the buffers.
  void init_parameters(Rng& rng, Init init = Init::kPyTorchDefault);
  /// The random generators the layers draw from in training (Layer::collect_rngs), in layer
  /// order.
  std::vector<Rng*> rngs() {
    std::vector<Rng*> out;
    for (auto& layer : layers_) layer->collect_rngs(out);
    return out;
  }

  /// BatchNorm layers compute their training statistics over all ranks' samples (synchronised
  /// BatchNorm), or each rank over its own (null: the default); Layer::
  /// synchronise_batch_statistics.
  void synchronise_batch_statistics(Communicator* ranks) {
    for (auto& layer : layers_) layer->synchronise_batch_statistics(ranks);
  }
  /// Runs x (N, sample_shape...) through every layer; returns a view of the last output,
  /// valid until the next forward. x must stay alive and unchanged until backward().
  TensorView<const T> forward(TensorView<const T> x, Mode mode);
  /// Backpropagates dy (the shape of the latest forward's output): accumulates into
  /// gradients() (allocated first if the model has none). The input gradient is not computed.
  void backward(TensorView<const T> dy);
  /// Sets every gradient to zero (allocating them if the model has none); call once per step,
  /// before backward().
  void zero_grad();

  /// All parameter values / gradients, in PyTorch's state_dict order. Throw cnn::Error before
  /// build(), as named_parameters() does: the buffers do not exist yet, and an empty span
  /// handed to an optimizer trained nothing without a word. gradients() allocates the gradient
  /// buffer of a model that has none (allocate_gradients), so an optimizer over a loaded
  /// model trains it.
  std::span<T> parameters() {
    require_built("parameters()");
    return {values_.data(), static_cast<size_t>(values_.numel())};
  }
  std::span<T> gradients() {
    require_built("gradients()");
    allocate_gradients();
    return {grads_.data(), static_cast<size_t>(grads_.numel())};
  }
  /// The number of parameters (0 before build()).
  int64_t parameter_count() const { return values_.numel(); }
  /// All buffer values (running statistics), in state_dict order; never seen by an optimizer.
  /// Throws cnn::Error before build().
  std::span<T> buffers() {
    require_built("buffers()");
    return {buffers_.data(), static_cast<size_t>(buffers_.numel())};
  }
  /// The number of buffer values (0 before build()).
  int64_t buffer_count() const { return buffers_.numel(); }

  /// One named parameter tensor, named as in the state_dict of the equivalent
  /// torch.nn.Sequential: "<layer index>.<name>", e.g. "0.weight". `gradient` is an empty view
  /// while the model has no gradient buffer (has_gradients()); named_parameters() does not
  /// allocate one.
  struct NamedParameter {
    std::string name;
    TensorView<T> value;
    TensorView<T> gradient;
  };
  std::vector<NamedParameter> named_parameters();
  /// One named buffer tensor ("1.running_mean", "3.body.1.num_batches_tracked"); `counter`:
  /// saved as int64.
  struct NamedBuffer {
    std::string name;
    TensorView<T> value;
    bool counter;
  };
  std::vector<NamedBuffer> named_buffers();
  /// The names and shapes of named_parameters() and named_buffers(), in the same order (and
  /// `counter` for buffers), without their values: these work before build() too.
  std::vector<ParamSpec> parameter_specs() const;
  std::vector<ParamSpec> buffer_specs() const;

  size_t size() const { return layers_.size(); }
  /// The i-th layer; throws cnn::Error for i >= size() (it was std::out_of_range: found
  /// 2026-12-08, a probe of the API).
  Layer<T>& layer(size_t i) { return *layers_[checked_layer_index(i)]; }
  const Layer<T>& layer(size_t i) const { return *layers_[checked_layer_index(i)]; }
  const Shape& sample_shape() const { return sample_shape_; }
  /// Output shape for a batch of `batch` (>= 1) samples (after build()). Throws cnn::Error
  /// "Sequential: ..." before build(), for a batch below 1, or "Sequential: layer i ..." for a
  /// layer the batch does not fit (MaxPool2d's int32 argmax, a Linear past 2^48 elements).
  Shape output_shape(int64_t batch) const;

 private:
  void require_built(const char* what) const;
  /// i, or cnn::Error "Sequential: layer i asked for, but the model has n layers".
  size_t checked_layer_index(size_t i) const;
  /// Binds every layer to its slice of values_ and of grads_ (null without gradients).
  void bind_parameters();
  /// The layers' specs (Layer::parameter_specs or buffer_specs), named "<layer index>.<name>".
  std::vector<ParamSpec> named_specs(std::vector<ParamSpec> (Layer<T>::*specs)() const) const;
  std::vector<std::unique_ptr<Layer<T>>> layers_;
  bool built_ = false;
  bool has_gradients_ = false;
  Shape sample_shape_;
  Tensor<T> values_, grads_, buffers_;
  detail::LayerChain<T> chain_;  // runs the layers (and their fused pairs)
};

}  // namespace cnn

#pragma once
// Residual: y = activation(body(x) + shortcut(x)), the block of residual networks. body is a
// list of layers; shortcut a list of layers (a projection: a strided 1x1 Conv2d and a
// BatchNorm2d) or empty for the identity; activation ReLU, Tanh, Sigmoid or none. Blocks nest
// (a body may hold a Residual). Parameters and buffers are the children's, body's first, named
// as the state_dict of the equivalent PyTorch module: "body.0.weight", "shortcut.1.running_mean".

#include <memory>
#include <string>
#include <vector>

#include "cnn/layer_chain.hpp"
#include "cnn/layers.hpp"

namespace cnn {

/// Residual blocks nest at most this deep (a block directly inside another's body or shortcut is
/// one level more): every walk of a model recurses once per level, and specs, model files and
/// ONNX graphs come from outside. Real networks nest one or two levels.
inline constexpr int kMaxResidualNesting = 64;

template <typename T = float>
class Residual final : public Layer<T> {
 public:
  using Layers = std::vector<std::unique_ptr<Layer<T>>>;
  /// Throws cnn::Error for an empty body, a null layer, an activation other than "", "ReLU",
  /// "Tanh" or "Sigmoid", or blocks nested deeper than kMaxResidualNesting.
  Residual(Layers body, Layers shortcut = {}, const std::string& activation = "ReLU");
  std::string type() const override { return "Residual"; }
  std::string describe() const override;
  /// Runs the input shape through body and shortcut; throws cnn::Error naming the branch and
  /// layer that does not fit, or "body output ... differs from shortcut output ...".
  Shape output_shape(const Shape& input) const override;
  double forward_flops(const Shape& input) const override;
  std::vector<ParamSpec> parameter_specs() const override;
  std::vector<ParamSpec> buffer_specs() const override;
  /// The children's init_parameters, body first.
  void init_parameters(Rng& rng, Init init) override;
  void reset_buffers() override;
  void collect_rngs(std::vector<Rng*>& out) override {
    for (auto* branch : {&body_, &shortcut_})
      for (auto& layer : *branch) layer->collect_rngs(out);
  }
  void synchronise_batch_statistics(Communicator* ranks) override {
    for (auto* branch : {&body_, &shortcut_})
      for (auto& layer : *branch) layer->synchronise_batch_statistics(ranks);
  }

  size_t body_size() const { return body_.size(); }
  size_t shortcut_size() const { return shortcut_.size(); }
  const Layer<T>& body(size_t i) const { return *body_.at(i); }
  const Layer<T>& shortcut(size_t i) const { return *shortcut_.at(i); }
  Layer<T>& body(size_t i) { return *body_.at(i); }
  Layer<T>& shortcut(size_t i) { return *shortcut_.at(i); }
  /// "ReLU", "Tanh", "Sigmoid" or "" (none).
  const std::string& activation() const { return activation_name_; }
  /// 1, or 1 + the deepest nesting of a Residual in body or shortcut.
  int nesting() const { return nesting_; }

 protected:
  void forward_impl(TensorView<const T> x, TensorView<T> y, Mode mode) override;
  void backward_impl(TensorView<const T> x, TensorView<const T> y, TensorView<const T> dy,
                     TensorView<T> dx) override;
  void on_parameters_bound(T* values, T* gradients) override;
  void on_buffers_bound(T* values) override;

 private:
  /// kTrain with the ReLU, when the body ends with a BatchNorm and the shortcut is the
  /// identity or ends with one: the block's end as one pass (ops::batchnorm_add_relu_forward),
  /// y = relu(BatchNorm(a) + BatchNorm(b) or x) without either BatchNorm's output or the sum.
  /// Returns whether it ran; when not, it has run nothing.
  bool forward_norm_end(TensorView<const T> x, TensorView<T> y);
  /// After the body's backward has assigned dx (unless empty): the shortcut's backward from g,
  /// the sum's gradient, its input gradient added to dx.
  void backward_shortcut(TensorView<const T> x, TensorView<const T> g, TensorView<T> dx);
  /// The children's parameter or buffer specs (specs_of), body first, named
  /// "body.<i>.<name>" / "shortcut.<i>.<name>".
  std::vector<ParamSpec> child_specs(std::vector<ParamSpec> (Layer<T>::*specs_of)() const) const;
  Layers body_, shortcut_;
  std::string activation_name_;
  int nesting_ = 1;
  std::unique_ptr<Layer<T>> activation_;  // null: none
  bool relu_ = false;                     // the activation is ReLU: fused with the sum
  detail::LayerChain<T> body_chain_, shortcut_chain_;
  Tensor<T> sum_;            // body(x) + shortcut(x), the activation's input
  Tensor<T> dsum_, dshort_;  // dL/dsum; the shortcut's input gradient
  // An evaluation forward with the ReLU does not write sum_ (inference needs only y), and may
  // not write the body's output (LayerChain::forward_add_relu): a backward after it computes
  // sum_ first from the body chain's output() and this, the shortcut's output it added, valid
  // until the next forward.
  TensorView<const T> eval_shortcut_;
  bool sum_pending_ = false;
  // That forward ran the shortcut inside the body's call (LayerChain::forward_add_shortcut_relu):
  // the shortcut chain has not run, and a backward runs it first.
  bool shortcut_deferred_ = false;
  // The latest forward ran forward_norm_end: its operands (the BatchNorms' inputs in the chains'
  // outputs, their statistics), from which backward recomputes the ReLU's mask;
  // end_shortcut_norm_ unused for the identity shortcut (x).
  bool end_fused_ = false;
  ops::NormOperand<T> end_body_{}, end_shortcut_norm_{};
};

}  // namespace cnn

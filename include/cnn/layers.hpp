#pragma once
// Layers. Every layer follows one contract, checked for each of them by one generic checker
// (tests/contract_checker.hpp):
//
//  * output_shape(in) validates the input shape (batch first) and returns the output's; its
//    cnn::Error names the layer, the expected and the actual shape. Models call it once when
//    they are built.
//  * forward(x, y, mode) writes every element of y and caches what backward needs.
//  * backward(x, y, dy, dx) receives the x and y of the latest forward and dL/dy. It ASSIGNS
//    dL/dx (every element; an empty dx view means "not needed") and ACCUMULATES (+=) into the
//    parameter gradients. Whoever owns the gradient buffer zeroes it once per step.
//  * Layers without train-time randomness (all of these) compute the same forward in kTrain
//    and kEval mode.
//
// Parameters live outside the layer: bind_parameters() points the layer at its slice of a
// flat value buffer and of a flat gradient buffer, laid out in the order of parameter_specs()
// (PyTorch's order: "weight" then "bias"). Sequential does this; a layer used alone needs
// the caller to do it.
//
// T is float (the default, for training) or double (for gradient checks).

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "cnn/init.hpp"
#include "cnn/ops.hpp"
#include "cnn/rng.hpp"
#include "cnn/tensor.hpp"

namespace cnn {

class Communicator;  // cnn/distributed.hpp

enum class Mode { kTrain, kEval };

/// Name and shape of one parameter or buffer tensor, e.g. {"weight", (6, 1, 5, 5)}. A counter
/// (BatchNorm's num_batches_tracked) is held as T like every buffer but saved as int64, the dtype
/// PyTorch gives it; as float it counts exactly up to 2^24.
struct ParamSpec {
  std::string name;
  Shape shape;
  bool counter = false;
};

/// A pair of sizes (height, width); one number means both.
struct Size2 {
  int64_t h = 0, w = 0;
  Size2(int64_t both) : h(both), w(both) {}  // NOLINT: Conv2d(1, 6, 5) reads naturally
  Size2(int64_t height, int64_t width) : h(height), w(width) {}
  std::string str() const;
  friend bool operator==(const Size2&, const Size2&) = default;
};

/// Zero padding of a convolution: explicit sizes, or `same`: (kernel - 1) / 2 on each side,
/// for odd kernels only, which keeps H and W unchanged at stride 1.
struct Padding2 {
  Size2 size{0};
  bool same = false;
  Padding2(int64_t both) : size(both) {}  // NOLINT
  Padding2(Size2 s) : size(s) {}          // NOLINT
  Padding2(int64_t height, int64_t width) : size(height, width) {}
  static Padding2 Same() {
    Padding2 p(0);
    p.same = true;
    return p;
  }
};

/// Base of all layers; see the contract at the top of this file.
template <typename T = float>
class Layer {
 public:
  virtual ~Layer() = default;

  /// The PyTorch class name: "Conv2d", "ReLU", ...
  virtual std::string type() const = 0;
  /// The type with its hyper-parameters, used in every error message: "Conv2d(1, 6, ...)".
  virtual std::string describe() const = 0;
  /// Validates an input shape (batch first) and returns the output shape; throws cnn::Error.
  virtual Shape output_shape(const Shape& input) const = 0;
  /// Parameter tensors in PyTorch's state_dict order; empty for parameter-free layers.
  virtual std::vector<ParamSpec> parameter_specs() const { return {}; }
  /// Buffer tensors (state that is not trained: BatchNorm's running statistics) in PyTorch's
  /// state_dict order; empty for most layers. Buffers live in the model's flat buffer store,
  /// are saved with the parameters and never seen by the optimizer.
  virtual std::vector<ParamSpec> buffer_specs() const { return {}; }
  /// Fills the bound parameters from rng. No-op for parameter-free layers.
  virtual void init_parameters(Rng& rng, Init init);
  /// Sets the bound buffers to their initial values (running mean 0, variance 1, count 0).
  virtual void reset_buffers() {}
  /// Appends the random generators this layer draws from while training (Dropout's masks),
  /// children's included: checkpoints save their states.
  virtual void collect_rngs(std::vector<Rng*>& /*out*/) {}
  /// Data-parallel training: layers whose training forward uses batch statistics
  /// (BatchNorm) compute them over the whole global batch, summed across `ranks`, instead of
  /// this rank's share (null: this rank's share, the default). Children's included.
  virtual void synchronise_batch_statistics(Communicator* /*ranks*/) {}
  /// Floating-point operations of forward on `input` (batch included): a multiply-add counts
  /// 2, a bias add 1, ReLU / tanh / sigmoid 1 per element, max pooling kernel - 1 comparisons
  /// per output, softmax 3 per element (exp, sum, divide), Flatten 0.
  virtual double forward_flops(const Shape& input) const = 0;

  /// Total number of parameter elements. A total past 2^48 (kMaxElements, more than any model
  /// can hold) reads as kMaxElements + 1, which Sequential refuses: summed as it came, a
  /// Residual of 65536 layers of 2^48 weights wrapped int64 to 0.
  int64_t parameter_count() const;
  /// Points the layer at parameter_count() values and gradients (both may be null when the
  /// count is zero; gradients null for inference: backward and gradient() then throw). The
  /// memory must outlive the layer's use.
  void bind_parameters(T* values, T* gradients);
  /// The i-th parameter tensor and its gradient (i indexes parameter_specs()). Throws
  /// cnn::Error for an i past parameter_specs() ("parameter 5 asked for, but the layer has 2")
  /// or parameters not bound.
  TensorView<T> parameter(size_t i) const;
  TensorView<T> gradient(size_t i) const;
  /// Total number of buffer elements; past 2^48, kMaxElements + 1 (as parameter_count).
  int64_t buffer_count() const;
  /// Points the layer at buffer_count() values (null when the count is zero).
  void bind_buffers(T* values);
  /// The i-th buffer tensor (i indexes buffer_specs()); throws as parameter() does.
  TensorView<T> buffer(size_t i) const;

  /// y (output_shape(x.shape())) = layer(x). Throws cnn::Error on a shape mismatch or unbound
  /// parameters.
  void forward(TensorView<const T> x, TensorView<T> y, Mode mode);
  /// Assigns dx (shape of x, or empty) and accumulates parameter gradients from dy (shape of y).
  void backward(TensorView<const T> x, TensorView<const T> y, TensorView<const T> dy,
                TensorView<T> dx);

 protected:
  virtual void forward_impl(TensorView<const T> x, TensorView<T> y, Mode mode) = 0;
  virtual void backward_impl(TensorView<const T> x, TensorView<const T> y, TensorView<const T> dy,
                             TensorView<T> dx) = 0;
  /// Throws cnn::Error("<describe()>: <message>").
  [[noreturn]] void fail(const std::string& message) const;
  /// forward()'s checks: y has output_shape(x.shape()), neither view is empty, parameters
  /// are bound. Throws cnn::Error naming what differs.
  void check_forward(TensorView<const T> x, TensorView<T> y) const;
  /// backward()'s checks of input shape x, output y, output gradient dy and dx (shape x or
  /// empty), and that parameters are bound. Throws cnn::Error naming what differs.
  void check_backward(const Shape& x, const Shape& y, const Shape& dy, TensorView<T> dx) const;
  T* value_data(size_t i) const;
  T* gradient_data(size_t i) const;
  T* buffer_data(size_t i) const;
  /// Returns when tensor i is one of the `bound` ones; else throws cnn::Error naming `what`
  /// ("parameter", "buffer"): an i past the layer's (this->*specs)() tensors, or tensors not
  /// bound yet ("parameters are not bound (call bind_parameters or build a model)").
  void require_bound(size_t i, size_t bound, std::vector<ParamSpec> (Layer::*specs)() const,
                     const char* what) const;
  /// Containers (Residual) bind their children here, at the same pointers: their parameters
  /// and buffers are the children's, concatenated in order.
  virtual void on_parameters_bound(T* /*values*/, T* /*gradients*/) {}
  virtual void on_buffers_bound(T* /*values*/) {}

 private:
  T* values_ = nullptr;
  T* gradients_ = nullptr;
  T* buffers_ = nullptr;
  bool bound_ = false;
  bool buffers_bound_ = false;
  std::vector<ParamSpec> bound_specs_, bound_buffer_specs_;
  std::vector<int64_t> offsets_, buffer_offsets_;
};

/// 2-D convolution, the seed's Y_i = B_i + sum_j X_j * K_ij with stride and zero padding.
/// x (N, in_channels, H, W) -> y (N, out_channels, OH, OW); weight (out, in, KH, KW), bias (out).
template <typename T = float>
class Conv2d final : public Layer<T> {
 public:
  /// Throws cnn::Error for non-positive channels, kernel or stride, negative padding, or
  /// `same` padding with an even kernel.
  Conv2d(int64_t in_channels, int64_t out_channels, Size2 kernel, Size2 stride = 1,
         Padding2 padding = 0, bool bias = true);
  std::string type() const override { return "Conv2d"; }
  std::string describe() const override;
  Shape output_shape(const Shape& input) const override;
  double forward_flops(const Shape& input) const override;
  std::vector<ParamSpec> parameter_specs() const override;
  void init_parameters(Rng& rng, Init init) override;

  int64_t in_channels() const { return in_channels_; }
  int64_t out_channels() const { return out_channels_; }
  Size2 kernel() const { return kernel_; }
  Size2 stride() const { return stride_; }
  /// The padding in effect (`same` resolved).
  Size2 padding() const { return padding_; }
  /// True when built with Padding2::Same().
  bool same_padding() const { return same_; }
  bool has_bias() const { return bias_; }
  /// The ops geometry of this layer on an input of shape (N, C, H, W); `inference` for an
  /// evaluation forward (ops::ConvShape::inference).
  ops::ConvShape conv_shape(const Shape& input, bool inference = false) const;
  /// A kTrain forward (floats) that also writes each output plane's sums of values and of
  /// squares to `totals` (ops::conv2d_forward_moments: 2 N out_channels doubles), for the
  /// BatchNorm2d after this layer (BatchNorm::take_moments). Checks x and y as forward does;
  /// returns false, having run nothing, where the ops do not take the shape (or for doubles).
  bool forward_moments(TensorView<const T> x, TensorView<T> y, double* totals);
  /// Whether backward_by_image takes input shape x: floats, where the weight gradient runs by
  /// the direct kernels (ops::conv2d_weight_backward_by_image_takes).
  bool backward_by_image_takes(const Shape& x) const;
  /// The parameter gradients of backward(x, y, dy, {}) (no input gradient), with dy, of shape
  /// dy_shape, made image by image by `dy` where the weight gradient reads it
  /// (ops::conv2d_weight_backward_by_image): the same bits, for a BatchNorm2d after this layer
  /// whose input gradient then need not be written (BatchNorm::backward_relu_maxpool_by_image).
  /// Checks the shapes as backward does; only where backward_by_image_takes (throws otherwise).
  void backward_by_image(TensorView<const T> x, const Shape& dy_shape,
                         const ops::ImageGradientSource& dy);

 protected:
  void forward_impl(TensorView<const T> x, TensorView<T> y, Mode mode) override;
  void backward_impl(TensorView<const T> x, TensorView<const T> y, TensorView<const T> dy,
                     TensorView<T> dx) override;

 private:
  int64_t in_channels_, out_channels_;
  Size2 kernel_, stride_, padding_;
  bool same_, bias_;
};

/// 2-D max pooling. x (N, C, H, W) -> y (N, C, OH, OW), OH = (H + 2 pad - kernel) / stride + 1.
/// Padding (at most half the kernel, as in PyTorch) never wins a window.
template <typename T = float>
class MaxPool2d final : public Layer<T> {
 public:
  /// stride defaults to the kernel. Throws cnn::Error for non-positive kernel or stride, or
  /// padding outside [0, kernel / 2].
  explicit MaxPool2d(Size2 kernel, std::optional<Size2> stride = std::nullopt, Size2 padding = 0);
  std::string type() const override { return "MaxPool2d"; }
  std::string describe() const override;
  Shape output_shape(const Shape& input) const override;
  double forward_flops(const Shape& input) const override;
  Size2 kernel() const { return kernel_; }
  Size2 stride() const { return stride_; }
  Size2 padding() const { return padding_; }
  /// Indices chosen by the latest kTrain forward, or by a backward after a kEval one (within
  /// each (n, c) plane, h * W + w). A kEval forward does not compute them: evaluation runs
  /// forward alone, and a backward after it recomputes them from its x.
  const std::vector<int32_t>& argmax() const { return argmax_; }

  /// A ReLU followed by this layer, as Sequential runs the pair: y = this(ReLU(x)) and
  /// dx = the ReLU's input gradient, bit for bit what the two layers give, in one pass and
  /// without the ReLU's output (ops::relu_maxpool2d_forward). x is the ReLU's input, in
  /// backward the same as in the latest forward_after_relu. Shapes as forward and backward;
  /// mode as forward's.
  void forward_after_relu(TensorView<const T> x, TensorView<T> y, Mode mode);
  void backward_after_relu(TensorView<const T> x, TensorView<const T> dy, TensorView<T> dx);
  /// For a LayerChain that wrote this layer's kEval output itself, pooled straight from the
  /// convolution before the ReLU (ops::conv2d_relu_maxpool2x2_forward): records the shape of
  /// x (the ReLU's input) as a kEval forward_after_relu would, so that a backward_after_relu
  /// recomputes the argmax from the x the chain holds by then. Throws as output_shape.
  void fused_eval_forward(const Shape& x);
  /// Whether the window is 2x2 at stride 2 without padding: the pooling that
  /// BatchNorm::forward_relu_maxpool runs with a BatchNorm and a ReLU before it.
  bool is_2x2_stride2() const;
  /// For BatchNorm::forward_relu_maxpool, which pools itself: the argmax buffer, sized for
  /// output shape y and recorded as a kTrain forward on input shape x (the ReLU's input)
  /// records it, for the step to fill.
  int32_t* fused_forward_argmax(const Shape& x, const Shape& y);
  /// For BatchNorm::backward_relu_maxpool: that argmax, after the checks of backward_after_relu
  /// (x the latest forward's input shape, dy the output's, dx x's or null: no input gradient).
  /// Throws otherwise.
  const int32_t* fused_backward_argmax(const Shape& x, const Shape& dy, const Shape* dx);

 protected:
  void forward_impl(TensorView<const T> x, TensorView<T> y, Mode mode) override;
  void backward_impl(TensorView<const T> x, TensorView<const T> y, TensorView<const T> dy,
                     TensorView<T> dx) override;

 private:
  ops::PoolShape pool_shape(const Shape& input) const;
  /// Sizes argmax_ for y (growing only, so that a steady training step does not allocate) and
  /// records x's shape for backward.
  void prepare_argmax(TensorView<const T> x, TensorView<T> y);
  /// The forward, with the argmax in kTrain and without it in kEval.
  void pool(TensorView<const T> x, TensorView<T> y, Mode mode, bool after_relu);
  /// Before a backward: the argmax of x, if the latest forward (a kEval one) skipped it.
  void ensure_argmax(TensorView<const T> x, bool after_relu);
  /// The shape checks of the fused backwards (backward_after_relu, fused_backward_argmax): x
  /// the latest forward's input shape, dy its output's, dx (null: none wanted) x's. Throws.
  void check_fused_backward(const Shape& x, const Shape& dy, const Shape* dx) const;
  /// Throws cnn::Error "... backward: expected a forward first, got none" before any forward.
  void require_forward_ran() const;
  Size2 kernel_, stride_, padding_;
  std::vector<int32_t> argmax_;
  Shape argmax_input_shape_;
  bool argmax_missing_ = false;  // the latest forward ran in kEval, without the argmax
  Tensor<T> recomputed_;         // ensure_argmax's output (the caller holds the forward's)
};

/// 2-D average pooling (PyTorch's AvgPool2d, ceil_mode off). x (N, C, H, W) -> y (N, C, OH, OW),
/// OH = (H + 2 pad - kernel) / stride + 1; each output is the sum of its window's elements
/// (padding adds zeros) over the kernel's area (count_include_pad, PyTorch's default) or over
/// the number of the window's elements inside the input.
template <typename T = float>
class AvgPool2d final : public Layer<T> {
 public:
  /// stride defaults to the kernel. Throws cnn::Error for non-positive kernel or stride, or
  /// padding outside [0, kernel / 2] (PyTorch's rule).
  explicit AvgPool2d(Size2 kernel, std::optional<Size2> stride = std::nullopt, Size2 padding = 0,
                     bool count_include_pad = true);
  std::string type() const override { return "AvgPool2d"; }
  std::string describe() const override;
  Shape output_shape(const Shape& input) const override;
  double forward_flops(const Shape& input) const override;
  Size2 kernel() const { return kernel_; }
  Size2 stride() const { return stride_; }
  Size2 padding() const { return padding_; }
  bool count_include_pad() const { return count_include_pad_; }

 protected:
  void forward_impl(TensorView<const T> x, TensorView<T> y, Mode mode) override;
  void backward_impl(TensorView<const T> x, TensorView<const T> y, TensorView<const T> dy,
                     TensorView<T> dx) override;

 private:
  ops::PoolShape pool_shape(const Shape& input) const;
  Size2 kernel_, stride_, padding_;
  bool count_include_pad_;
};

/// Global average pooling (PyTorch's AdaptiveAvgPool2d with output size 1): x (N, C, H, W) ->
/// y (N, C, 1, 1), the mean of each plane.
template <typename T = float>
class AdaptiveAvgPool2d final : public Layer<T> {
 public:
  /// Throws cnn::Error unless output_size is 1 (the only size implemented).
  explicit AdaptiveAvgPool2d(Size2 output_size = 1);
  std::string type() const override { return "AdaptiveAvgPool2d"; }
  std::string describe() const override { return "AdaptiveAvgPool2d(output_size=(1, 1))"; }
  Shape output_shape(const Shape& input) const override;
  double forward_flops(const Shape& input) const override;

 protected:
  void forward_impl(TensorView<const T> x, TensorView<T> y, Mode mode) override;
  void backward_impl(TensorView<const T> x, TensorView<const T> y, TensorView<const T> dy,
                     TensorView<T> dx) override;
};

/// Fully connected layer: x (N, in) -> y (N, out) = x W^T + b; weight (out, in), bias (out).
template <typename T = float>
class Linear final : public Layer<T> {
 public:
  /// Throws cnn::Error for non-positive feature counts.
  Linear(int64_t in_features, int64_t out_features, bool bias = true);
  std::string type() const override { return "Linear"; }
  std::string describe() const override;
  Shape output_shape(const Shape& input) const override;
  double forward_flops(const Shape& input) const override;
  std::vector<ParamSpec> parameter_specs() const override;
  void init_parameters(Rng& rng, Init init) override;
  int64_t in_features() const { return in_features_; }
  int64_t out_features() const { return out_features_; }
  bool has_bias() const { return bias_; }

 protected:
  void forward_impl(TensorView<const T> x, TensorView<T> y, Mode mode) override;
  void backward_impl(TensorView<const T> x, TensorView<const T> y, TensorView<const T> dy,
                     TensorView<T> dx) override;

 private:
  int64_t in_features_, out_features_;
  bool bias_;
};

/// Element-wise activations: any shape with a batch dimension, y has the shape of x.
/// ReLU follows the seed: derivative 1 at x = 0 (PyTorch uses 0).
template <typename T = float>
class ReLU final : public Layer<T> {
 public:
  std::string type() const override { return "ReLU"; }
  std::string describe() const override { return "ReLU()"; }
  Shape output_shape(const Shape& input) const override;
  double forward_flops(const Shape& input) const override;

 protected:
  void forward_impl(TensorView<const T> x, TensorView<T> y, Mode mode) override;
  void backward_impl(TensorView<const T> x, TensorView<const T> y, TensorView<const T> dy,
                     TensorView<T> dx) override;
};

/// PyTorch's nn.LeakyReLU: y = x for x > 0, negative_slope * x otherwise. Unlike ReLU it takes
/// PyTorch's derivative at the kink: negative_slope at x = 0 (as torch's autograd gives).
template <typename T = float>
class LeakyReLU final : public Layer<T> {
 public:
  /// Throws cnn::Error unless negative_slope is finite as a T (PyTorch takes any float).
  explicit LeakyReLU(double negative_slope = 0.01);
  std::string type() const override { return "LeakyReLU"; }
  std::string describe() const override;
  Shape output_shape(const Shape& input) const override;
  double forward_flops(const Shape& input) const override;
  double negative_slope() const { return negative_slope_; }

 protected:
  void forward_impl(TensorView<const T> x, TensorView<T> y, Mode mode) override;
  void backward_impl(TensorView<const T> x, TensorView<const T> y, TensorView<const T> dy,
                     TensorView<T> dx) override;

 private:
  double negative_slope_;
};

/// PyTorch's nn.ReLU6: y = min(max(x, 0), 6). Derivative 1 for 0 < x < 6 and 0 elsewhere,
/// kinks included (PyTorch's autograd gives 0 at x = 0 and at x = 6).
template <typename T = float>
class ReLU6 final : public Layer<T> {
 public:
  std::string type() const override { return "ReLU6"; }
  std::string describe() const override { return "ReLU6()"; }
  Shape output_shape(const Shape& input) const override;
  double forward_flops(const Shape& input) const override;

 protected:
  void forward_impl(TensorView<const T> x, TensorView<T> y, Mode mode) override;
  void backward_impl(TensorView<const T> x, TensorView<const T> y, TensorView<const T> dy,
                     TensorView<T> dx) override;
};

/// tanh; backward 1 - tanh^2 from the cached output.
template <typename T = float>
class Tanh final : public Layer<T> {
 public:
  std::string type() const override { return "Tanh"; }
  std::string describe() const override { return "Tanh()"; }
  Shape output_shape(const Shape& input) const override;
  double forward_flops(const Shape& input) const override;

 protected:
  void forward_impl(TensorView<const T> x, TensorView<T> y, Mode mode) override;
  void backward_impl(TensorView<const T> x, TensorView<const T> y, TensorView<const T> dy,
                     TensorView<T> dx) override;
};

/// Logistic sigmoid; backward y (1 - y) from the cached output.
template <typename T = float>
class Sigmoid final : public Layer<T> {
 public:
  std::string type() const override { return "Sigmoid"; }
  std::string describe() const override { return "Sigmoid()"; }
  Shape output_shape(const Shape& input) const override;
  double forward_flops(const Shape& input) const override;

 protected:
  void forward_impl(TensorView<const T> x, TensorView<T> y, Mode mode) override;
  void backward_impl(TensorView<const T> x, TensorView<const T> y, TensorView<const T> dy,
                     TensorView<T> dx) override;
};

/// Softmax along dimension 1 (PyTorch's nn.Softmax(dim=1)) of (N, C) or (N, C, ...); backward
/// is the Jacobian-vector product dx = y * (dy - sum(y * dy)). For training a classifier use
/// CrossEntropyLoss on logits instead, which is fused and stable.
template <typename T = float>
class Softmax final : public Layer<T> {
 public:
  std::string type() const override { return "Softmax"; }
  std::string describe() const override { return "Softmax(dim=1)"; }
  Shape output_shape(const Shape& input) const override;
  double forward_flops(const Shape& input) const override;

 protected:
  void forward_impl(TensorView<const T> x, TensorView<T> y, Mode mode) override;
  void backward_impl(TensorView<const T> x, TensorView<const T> y, TensorView<const T> dy,
                     TensorView<T> dx) override;
};

/// Dropout (PyTorch's nn.Dropout): in kTrain mode each element is kept with probability 1 - p
/// and scaled by 1 / (1 - p) (inverted dropout), else zeroed; in kEval mode the identity.
/// Backward multiplies dy by the mask of the latest kTrain forward (or passes it through after
/// a kEval forward). The masks come from the layer's own Rng stream, seeded from the model's
/// Rng by init_parameters, so that the same seed gives the same masks.
template <typename T = float>
class Dropout final : public Layer<T> {
 public:
  /// Throws cnn::Error unless 0 <= p < 1.
  explicit Dropout(double p = 0.5);
  std::string type() const override { return "Dropout"; }
  std::string describe() const override;
  Shape output_shape(const Shape& input) const override;
  double forward_flops(const Shape& input) const override;
  /// Draws this layer's mask seed from rng (it has no parameters).
  void init_parameters(Rng& rng, Init init) override;
  double p() const { return p_; }
  /// While held, kTrain forwards reuse the current mask (drawing one only when none of the
  /// input's size exists): the contract checker differences a fixed function this way.
  void hold_mask(bool held) { held_ = held; }
  void collect_rngs(std::vector<Rng*>& out) override { out.push_back(&rng_); }

 protected:
  void forward_impl(TensorView<const T> x, TensorView<T> y, Mode mode) override;
  void backward_impl(TensorView<const T> x, TensorView<const T> y, TensorView<const T> dy,
                     TensorView<T> dx) override;

 private:
  double p_;
  Rng rng_{0x5eedULL};
  std::vector<T> mask_;  // 0 or 1 / (1 - p) per element of the latest kTrain input
  int64_t mask_size_ = 0;
  bool held_ = false;
  bool last_train_ = false;
};

/// Batch normalisation over dimension 1 (PyTorch's BatchNorm1d / BatchNorm2d, running statistics
/// tracked): x (N, C, ...) -> y of the same shape,
///   y = (x - mean_c) / sqrt(var_c + eps) * weight_c + bias_c.
/// kTrain: mean and the biased variance of this batch (over N and the dimensions after C); the
/// running statistics move towards them, running = (1 - momentum) running + momentum batch, with
/// the unbiased variance (times M / (M - 1), M the count per channel); num_batches_tracked + 1.
/// kEval: the running statistics, a fixed affine map. Parameters weight, bias (C) when affine;
/// buffers running_mean, running_var (C) and num_batches_tracked (a counter of shape ()).
template <typename T = float>
class BatchNorm : public Layer<T> {
 public:
  std::string describe() const override;
  Shape output_shape(const Shape& input) const override;
  double forward_flops(const Shape& input) const override;
  std::vector<ParamSpec> parameter_specs() const override;
  std::vector<ParamSpec> buffer_specs() const override;
  /// weight 1, bias 0 (PyTorch's init, whatever `init`), and reset_buffers().
  void init_parameters(Rng& rng, Init init) override;
  /// running_mean 0, running_var 1, num_batches_tracked 0.
  void reset_buffers() override;
  int64_t num_features() const { return num_features_; }
  double eps() const { return eps_; }
  double momentum() const { return momentum_; }
  bool affine() const { return affine_; }
  /// The per-channel map of kEval, y = x scale + shift (what a preceding convolution folds in):
  /// scale = weight / sqrt(running_var + eps), shift = bias - running_mean scale. Both (C).
  void eval_affine(T* scale, T* shift) const;
  void synchronise_batch_statistics(Communicator* ranks) override { ranks_ = ranks; }

  /// This layer followed by a ReLU, as LayerChain runs the pair: y = ReLU(this(x)) and dx = this
  /// layer's input gradient, bit for bit what the two layers give, in one pass and without this
  /// layer's output (ops::batchnorm_relu_forward). x is this layer's input, in backward the same
  /// as in the latest forward_relu; dy is the ReLU's output gradient. Shapes as forward and
  /// backward; dx may be empty.
  void forward_relu(TensorView<const T> x, TensorView<T> y, Mode mode);
  void backward_relu(TensorView<const T> x, TensorView<const T> dy, TensorView<T> dx);
  /// This layer, a ReLU and `pool` (MaxPool2d::is_2x2_stride2) as LayerChain runs the three:
  /// y = pool(ReLU(this(x))) and dx = this layer's input gradient, bit for bit what the three
  /// layers give, plane by plane and without this layer's or the ReLU's output
  /// (ops::batchnorm_relu_maxpool2x2_forward); `pool` keeps the argmax, in either mode. x is
  /// this layer's input (N, C, H, W), in backward the same as in the latest
  /// forward_relu_maxpool; y and dy are the pool's output and its gradient; dx may be empty.
  /// Not for a synchronised BatchNorm (synchronised()), whose sums need the whole gradient.
  void forward_relu_maxpool(TensorView<const T> x, TensorView<T> y, MaxPool2d<T>& pool, Mode mode);
  void backward_relu_maxpool(TensorView<const T> x, TensorView<const T> dy, TensorView<T> dx,
                             MaxPool2d<T>& pool);
  /// backward_relu_maxpool without an input gradient written: the parameter gradients now,
  /// and *dx_images set to a source of the input gradient image by image, bit for bit the dx
  /// that call writes (ops::maxpool2x2_relu_batchnorm_backward_by_image), valid until the next
  /// BatchNorm op on this thread: for the Conv2d before this layer (Conv2d::backward_by_image).
  /// Returns false, having computed nothing, for doubles and in reference mode.
  bool backward_relu_maxpool_by_image(TensorView<const T> x, TensorView<const T> dy,
                                      MaxPool2d<T>& pool, ops::ImageGradientSource* dx_images);
  /// Whether the batch statistics are taken over several ranks (synchronise_batch_statistics).
  bool synchronised() const;
  /// A BatchNorm's (N, C, inner) view of an input of shape `input` (N, C, ...).
  static ops::NormShape norm_shape(const Shape& input);
  /// The first half of forward, for a step that normalises x itself (a residual block's end,
  /// ops::batchnorm_add_relu_forward): checks x as forward does, and in kTrain takes the batch
  /// statistics and updates the running ones exactly as forward would; returns the operand
  /// (x, and the statistics and affine) that forward would normalise x with, valid until the
  /// next forward. backward (y unread) and normalise_again then follow as after forward.
  ops::NormOperand<T> forward_statistics(TensorView<const T> x, Mode mode);
  /// y = this layer's output for x by the statistics of the latest forward or
  /// forward_statistics (x the same input): what that forward wrote, or would have.
  void normalise_again(TensorView<const T> x, TensorView<T> y) const;
  /// The backward of a residual block's end whose body this layer ends, after
  /// forward_statistics returned `self` (ops::batchnorm_add_relu_backward): from dy, the block's
  /// output gradient, writes the block's dL/dsum into g and this layer's input gradient into dx
  /// (both of self's shape) and accumulates its parameter gradients, as the block's ReLU's
  /// backward then this layer's would. `shortcut`: the shortcut's BatchNorm's operand, or null
  /// and `addend` the identity's x. Not for a synchronised BatchNorm (synchronised()).
  void backward_block_end(TensorView<const T> dy, TensorView<T> g, TensorView<T> dx,
                          const ops::NormOperand<T>& self, const ops::NormOperand<T>* shortcut,
                          const T* addend);
  /// Room for the plane moments of an input of shape `input` (N, C, ...), for a convolution
  /// before this layer that takes them as it writes its output (Conv2d::forward_moments).
  double* moments_buffer(const Shape& input);
  /// The next statistics of an input at x (the next forward, forward_relu, forward_relu_maxpool
  /// or forward_statistics) are taken from the moments in moments_buffer, which the caller
  /// has just written for that input, instead of from a pass over it: the same bits. That next
  /// call consumes this, whichever its input.
  void take_moments(const T* x);

 protected:
  /// `dims`: the input ranks accepted, e.g. "(N, C, H, W)"; ranks in [min_rank, max_rank].
  BatchNorm(int64_t num_features, double eps, double momentum, bool affine, int min_rank,
            int max_rank);
  void forward_impl(TensorView<const T> x, TensorView<T> y, Mode mode) override;
  void backward_impl(TensorView<const T> x, TensorView<const T> y, TensorView<const T> dy,
                     TensorView<T> dx) override;

 private:
  /// forward_statistics's work without its checks: in kTrain the batch statistics of x and the
  /// running update; operand() then gives what normalises x.
  void statistics(TensorView<const T> x, Mode mode);
  /// x with what the latest forward (or forward_statistics) normalised it by: the batch
  /// statistics after a kTrain one, else the running ones; the affine; eps.
  ops::NormOperand<T> operand(const T* x) const;
  /// With `pool`, forward_relu_maxpool's step (y the pool's output).
  void run_forward(TensorView<const T> x, TensorView<T> y, Mode mode, bool relu,
                   MaxPool2d<T>* pool = nullptr);
  void run_backward(TensorView<const T> x, TensorView<const T> dy, TensorView<T> dx, bool relu,
                    MaxPool2d<T>* pool = nullptr);
  /// backward_relu_maxpool's checks of input shape x and `pool`; throws.
  void check_relu_maxpool_backward(const Shape& x, const MaxPool2d<T>& pool) const;
  std::vector<T> masked_dy_;  // the ReLU's input gradient, for the synchronised backward
  int64_t num_features_;
  double eps_, momentum_;
  bool affine_;
  int min_rank_, max_rank_;
  std::vector<T> batch_mean_, batch_var_;  // of the latest kTrain forward
  bool last_train_ = false;
  Shape last_input_shape_;  // of the latest forward; rank 0 before any
  /// Throws unless `x` is the latest forward's input shape (whose statistics backward uses).
  void require_latest_input(const Shape& x) const;
  std::vector<double> moments_;    // plane moments written by the convolution before
  const T* moments_of_ = nullptr;  // the input they are of (take_moments), until consumed
  Communicator* ranks_ = nullptr;  // synchronised batch statistics (multi-rank training)
  int64_t global_count_ = 0;       // values per channel of the latest kTrain forward, all ranks
  std::vector<double> sums_;       // per-channel sums exchanged with the other ranks
  void synchronised_statistics(const T* x, const ops::NormShape& s);
  void synchronised_backward(T* dx, const T* dy, const T* x, const ops::NormShape& s);
};

/// BatchNorm over (N, C, H, W).
template <typename T = float>
class BatchNorm2d final : public BatchNorm<T> {
 public:
  /// Throws cnn::Error for num_features < 1, eps <= 0 or momentum outside [0, 1].
  explicit BatchNorm2d(int64_t num_features, double eps = 1e-5, double momentum = 0.1,
                       bool affine = true)
      : BatchNorm<T>(num_features, eps, momentum, affine, 4, 4) {}
  std::string type() const override { return "BatchNorm2d"; }
};

/// BatchNorm over (N, C) or (N, C, L).
template <typename T = float>
class BatchNorm1d final : public BatchNorm<T> {
 public:
  /// Throws cnn::Error for num_features < 1, eps <= 0 or momentum outside [0, 1].
  explicit BatchNorm1d(int64_t num_features, double eps = 1e-5, double momentum = 0.1,
                       bool affine = true)
      : BatchNorm<T>(num_features, eps, momentum, affine, 2, 3) {}
  std::string type() const override { return "BatchNorm1d"; }
};

/// (N, d1, d2, ...) -> (N, d1 * d2 * ...), PyTorch's nn.Flatten() (start_dim 1).
template <typename T = float>
class Flatten final : public Layer<T> {
 public:
  std::string type() const override { return "Flatten"; }
  std::string describe() const override { return "Flatten()"; }
  Shape output_shape(const Shape& input) const override;
  double forward_flops(const Shape& input) const override;

 protected:
  void forward_impl(TensorView<const T> x, TensorView<T> y, Mode mode) override;
  void backward_impl(TensorView<const T> x, TensorView<const T> y, TensorView<const T> dy,
                     TensorView<T> dx) override;
};

}  // namespace cnn

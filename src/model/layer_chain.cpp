#include "cnn/layer_chain.hpp"

#include <algorithm>
#include <type_traits>
#include <utility>

#include "../ops/conv_common.hpp"
#include "cnn/error.hpp"
#include "cnn/ops.hpp"

namespace cnn::detail {

template <typename T>
TensorView<T> SplitAlignedBuffer<T>::view(const Shape& shape) {
  constexpr int64_t kLine = 64 / sizeof(T);
  const int64_t numel = shape.numel();
  const int64_t batch = shape.rank() > 0 ? shape[0] : 1;
  const int parts = ops::threads();
  // The first image of part parts / 2 (for 2 threads, the second half); with one thread the
  // boundary is 0 and every view starts at middle_.
  const int64_t boundary =
      parts > 1 && batch > 0 ? images_of_part(batch, parts / 2, parts).first : 0;
  const int64_t lead = batch > 0 ? boundary * (numel / batch) : 0;
  if (lead > middle_ || numel - lead > tail_) {
    middle_ = (std::max(lead, middle_) + kLine - 1) / kLine * kLine;
    tail_ = std::max(tail_, numel - lead);
    storage_.resize(Shape{middle_ + tail_ + kLine});
  }
  // Rounded down to a cache line, so that every view is as aligned as the storage.
  const int64_t start = (middle_ - lead) / kLine * kLine;
  return TensorView<T>(storage_.data() + start, shape);
}

template <typename T>
void LayerChain<T>::set_layers(std::vector<Layer<T>*> layers) {
  layers_ = std::move(layers);
  outputs_.resize(layers_.size());
  fused_pool_.assign(layers_.size(), nullptr);
  folded_norm_.assign(layers_.size(), nullptr);
  relu_norm_.assign(layers_.size(), nullptr);
  relu_norm_ran_.assign(layers_.size(), 0);
  for (size_t i = 1; i < layers_.size(); ++i) {
    if (dynamic_cast<ReLU<T>*>(layers_[i - 1]))
      fused_pool_[i] = dynamic_cast<MaxPool2d<T>*>(layers_[i]);
    if (dynamic_cast<ReLU<T>*>(layers_[i]))
      relu_norm_[i] = dynamic_cast<BatchNorm<T>*>(layers_[i - 1]);
    if (dynamic_cast<Conv2d<T>*>(layers_[i - 1]))
      folded_norm_[i] = dynamic_cast<BatchNorm2d<T>*>(layers_[i]);
  }
  // A ReLU between a BatchNorm and a MaxPool2d keeps its older pairing, with the pool (and
  // with a BatchNorm2d before it and 2x2 / stride-2 windows, the three run as one step).
  for (size_t i = 1; i + 1 < layers_.size(); ++i)
    if (fused_pool_[i + 1]) relu_norm_[i] = nullptr;
  norm_pool_.assign(layers_.size(), nullptr);
  norm_pool_ran_.assign(layers_.size(), 0);
  for (size_t i = 0; i + 2 < layers_.size(); ++i) {
    MaxPool2d<T>* pool = fused_pool_[i + 2];
    if (pool && pool->is_2x2_stride2() && dynamic_cast<BatchNorm2d<T>*>(layers_[i]))
      norm_pool_[i] = pool;
  }
  conv_pool_.assign(layers_.size(), 0);
  conv_relu_.assign(layers_.size(), 0);
  conv_fused_ran_.assign(layers_.size(), 0);
  for (size_t i = 0; i < layers_.size(); ++i) {
    if (!dynamic_cast<Conv2d<T>*>(layers_[i])) continue;
    const size_t relu = i + 1 < layers_.size() && folded_norm_[i + 1] ? i + 2 : i + 1;
    if (relu >= layers_.size() || !dynamic_cast<ReLU<T>*>(layers_[relu])) continue;
    if (relu + 1 >= layers_.size() || !fused_pool_[relu + 1]) {
      conv_relu_[i] = relu;
      continue;
    }
    if (fused_pool_[relu + 1]->is_2x2_stride2()) conv_pool_[i] = relu + 1;
  }
  input_ = {};
  skipped_outputs_ = false;
  last_norm_skipped_ = false;
  pair_relu_ = 0;
}

template <typename T>
void LayerChain<T>::fold(const Conv2d<T>& conv, const BatchNorm<T>& norm, const Shape& conv_out) {
  const int64_t oc = conv.out_channels();
  // Grow-only scratch: evaluation in a loop allocates once.
  if (fold_bias_.size() < static_cast<size_t>(oc)) {
    fold_bias_.resize(static_cast<size_t>(oc));
    fold_scale_.resize(static_cast<size_t>(oc));
    fold_shift_.resize(static_cast<size_t>(oc));
  }
  // Its checks (shapes, bound buffers) before the folded parameters are read.
  norm.output_shape(conv_out);
  norm.eval_affine(fold_scale_.data(), fold_shift_.data());
  for (int64_t o = 0; o < oc; ++o) {
    const T scale = fold_scale_[static_cast<size_t>(o)];
    const T bias = conv.has_bias() ? conv.parameter(1).data()[o] : T(0);
    fold_bias_[static_cast<size_t>(o)] = bias * scale + fold_shift_[static_cast<size_t>(o)];
  }
}

template <typename T>
std::pair<const T*, const T*> LayerChain<T>::bias_and_scale(size_t i, const Shape& conv_out) {
  const auto& conv = static_cast<const Conv2d<T>&>(*layers_[i]);
  if (const BatchNorm<T>* norm = i + 1 < layers_.size() ? folded_norm_[i + 1] : nullptr) {
    fold(conv, *norm, conv_out);
    return {fold_bias_.data(), fold_scale_.data()};
  }
  return {conv.has_bias() ? conv.parameter(1).data() : nullptr, nullptr};
}

template <typename T>
size_t LayerChain<T>::forward_conv_fused(size_t i, TensorView<const T> x) {
  if constexpr (std::is_same_v<T, float>) {
    const bool pooled = conv_pool_[i] != 0;
    const auto& conv = static_cast<const Conv2d<T>&>(*layers_[i]);
    const Shape conv_out = conv.output_shape(x.shape());
    const ops::ConvShape shape = conv.conv_shape(x.shape(), true);
    const bool fusable =
        pooled ? ops::conv2d_relu_maxpool2x2_fusable(shape) : ops::conv2d_relu_fusable(shape);
    if (!fusable) return 0;
    const size_t last = pooled ? conv_pool_[i] : conv_relu_[i];
    const auto [bias, scale] = bias_and_scale(i, conv_out);
    if (x.empty()) throw Error(conv.describe() + ": forward: the input must not be empty");
    outputs_[last].resize(layers_[last]->output_shape(conv_out));
    const float* w = conv.parameter(0).data();
    if (pooled) {
      fused_pool_[last]->fused_eval_forward(conv_out);
      ops::conv2d_relu_maxpool2x2_forward(outputs_[last].data(), x.data(), w, bias, shape, scale);
    } else {
      ops::conv2d_relu_forward(outputs_[last].data(), x.data(), w, bias, shape, scale);
    }
    conv_fused_ran_[i] = 1;
    skipped_outputs_ = true;
    return last;
  } else {
    (void)i;
    (void)x;
    return 0;
  }
}

template <typename T>
bool LayerChain<T>::forward_conv_moments(size_t i, TensorView<const T> x, size_t end, Mode mode) {
  BatchNorm<T>* const norm = i + 1 < layers_.size() ? folded_norm_[i + 1] : nullptr;
  // The BatchNorm must take its statistics next: in this forward, or as the last layer that
  // forward_to_last_norm leaves to its caller.
  const bool norm_next = i + 1 < end || i + 2 == layers_.size();
  if (!std::is_same_v<T, float> || mode != Mode::kTrain || !norm || !norm_next ||
      norm->synchronised())
    return false;
  auto& conv = static_cast<Conv2d<T>&>(*layers_[i]);
  outputs_[i].resize(conv.output_shape(x.shape()));
  if (!conv.forward_moments(x, outputs_[i].view(), norm->moments_buffer(outputs_[i].shape())))
    return false;
  norm->take_moments(outputs_[i].data());
  return true;
}

template <typename T>
TensorView<const T> LayerChain<T>::forward(TensorView<const T> x, Mode mode) {
  return forward_until(x, mode, layers_.size());
}

template <typename T>
const Conv2d<T>* LayerChain<T>::last_conv(const Shape& x_shape, size_t* conv_index,
                                          ops::ConvShape* shape) const {
  const size_t n = layers_.size();
  if (n == 0) return nullptr;
  // The last step's Conv2d: the last layer, or the one before a BatchNorm2d folded into it.
  *conv_index = folded_norm_[n - 1] ? n - 2 : n - 1;
  const auto* conv = dynamic_cast<const Conv2d<T>*>(layers_[*conv_index]);
  if (!conv) return nullptr;
  Shape in_shape = x_shape;  // the convolution's input, from the shapes alone
  for (size_t i = 0; i < *conv_index; ++i) in_shape = layers_[i]->output_shape(in_shape);
  *shape = conv->conv_shape(in_shape, true);
  return conv;
}

template <typename T>
bool LayerChain<T>::single_conv_shape(const Shape& in_shape, ops::ConvShape* shape) const {
  const size_t n = layers_.size();
  if (n == 0 || n > 2 || (n == 2 && !folded_norm_[1])) return false;
  const auto* conv = dynamic_cast<const Conv2d<T>*>(layers_[0]);
  if (!conv) return false;
  *shape = conv->conv_shape(in_shape, true);
  return true;
}

template <typename T>
ops::ConvPairStep LayerChain<T>::single_conv_step(const ops::ConvShape& shape) {
  if constexpr (std::is_same_v<T, float>) {
    const auto& conv = static_cast<const Conv2d<T>&>(*layers_[0]);
    const auto [bias, scale] =
        bias_and_scale(0, Shape{shape.batch, shape.out_channels, shape.out_h, shape.out_w});
    return {conv.parameter(0).data(), bias, scale, shape};
  } else {
    (void)shape;
    throw std::logic_error("single_conv_step: float chains only");
  }
}

template <typename T>
bool LayerChain<T>::forward_add_shortcut_relu([[maybe_unused]] TensorView<const T> x,
                                              [[maybe_unused]] LayerChain& shortcut,
                                              [[maybe_unused]] TensorView<T> y) {
  if constexpr (std::is_same_v<T, float>) {
    size_t conv_index = 0;
    ops::ConvShape shape{};
    if (!last_conv(x.shape(), &conv_index, &shape) || !ops::conv2d_relu_fusable(shape))
      return false;
    const Shape conv_out{shape.batch, shape.out_channels, shape.out_h, shape.out_w};
    if (y.shape() != conv_out) {
      throw Error("forward_add_shortcut_relu: expected an output of shape " + conv_out.str() +
                  ", got " + y.shape().str());
    }
    if (!forward_pair_add_relu(x, {}, y, conv_index, shape, &shortcut)) return false;
    add_relu_conv_ = conv_index + 1;
    skipped_outputs_ = true;
    return true;
  }
  return false;
}

template <typename T>
bool LayerChain<T>::forward_add_relu(TensorView<const T> x, TensorView<const T> addend,
                                     TensorView<T> y) {
  if constexpr (std::is_same_v<T, float>) {
    size_t conv_index = 0;
    ops::ConvShape shape{};
    const Conv2d<T>* conv = last_conv(x.shape(), &conv_index, &shape);
    if (!conv || !ops::conv2d_relu_fusable(shape)) return false;
    const Shape conv_out{shape.batch, shape.out_channels, shape.out_h, shape.out_w};
    if (addend.shape() != conv_out || y.shape() != conv_out) {
      throw Error("forward_add_relu: expected an addend and an output of shape " + conv_out.str() +
                  ", got " + addend.shape().str() + " and " + y.shape().str());
    }
    if (!forward_pair_add_relu(x, addend, y, conv_index, shape)) {
      const TensorView<const T> before = forward_until(x, Mode::kEval, conv_index);
      if (before.empty()) throw Error(conv->describe() + ": forward: the input must not be empty");
      const auto [bias, scale] = bias_and_scale(conv_index, conv_out);
      // Their shapes now, their values when output() or backward() asks.
      for (size_t i = conv_index; i < layers_.size(); ++i) outputs_[i].resize(conv_out);
      ops::conv2d_relu_forward(y.data(), before.data(), conv->parameter(0).data(), bias, shape,
                               scale, addend.data());
    }
    add_relu_conv_ = conv_index + 1;
    skipped_outputs_ = true;
    return true;
  } else {
    (void)x;
    (void)addend;
    (void)y;
    return false;
  }
}

template <typename T>
bool LayerChain<T>::forward_pair_add_relu([[maybe_unused]] TensorView<const T> x,
                                          [[maybe_unused]] TensorView<const T> addend,
                                          [[maybe_unused]] TensorView<T> y,
                                          [[maybe_unused]] size_t conv_index,
                                          [[maybe_unused]] const ops::ConvShape& shape,
                                          [[maybe_unused]] LayerChain* shortcut) {
  if constexpr (std::is_same_v<T, float>) {
    // The chain must be Conv2d 0, (BatchNorm2d,) ReLU, then the last step's Conv2d.
    const size_t relu = conv_relu_[0];
    if (relu == 0 || relu + 1 != conv_index || conv_pool_[0] != 0) return false;
    const auto& first = static_cast<const Conv2d<T>&>(*layers_[0]);
    const ops::ConvShape first_shape = first.conv_shape(x.shape(), true);
    ops::ConvShape shortcut_shape{};
    if (shortcut ? !shortcut->single_conv_shape(x.shape(), &shortcut_shape) ||
                       !ops::conv2d_relu_pair_shortcut_fusable(first_shape, shape, shortcut_shape)
                 : !ops::conv2d_relu_pair_fusable(first_shape, shape))
      return false;
    if (x.empty()) throw Error(first.describe() + ": forward: the input must not be empty");
    forward_until(x, Mode::kEval, 0);  // runs nothing: the flags of a new forward
    const Shape first_out = first.output_shape(x.shape());
    const auto [first_bias, first_scale] = bias_and_scale(0, first_out);
    // bias_and_scale's buffers serve the second convolution next.
    pair_bias_.assign(first_bias, first_bias + (first_bias ? first_out[1] : 0));
    pair_scale_.assign(first_scale, first_scale + (first_scale ? first_out[1] : 0));
    const auto [bias, scale] = bias_and_scale(conv_index, y.shape());
    // Their shapes now, their values when output() or backward() asks.
    for (size_t i = 0; i < layers_.size(); ++i)
      outputs_[i].resize(i < conv_index ? first_out : y.shape());
    const auto& conv = static_cast<const Conv2d<T>&>(*layers_[conv_index]);
    const ops::ConvPairStep first_step{first.parameter(0).data(),
                                       first_bias ? pair_bias_.data() : nullptr,
                                       first_scale ? pair_scale_.data() : nullptr, first_shape};
    const ops::ConvPairStep second_step{conv.parameter(0).data(), bias, scale, shape};
    if (shortcut) {
      ops::conv2d_relu_pair_shortcut_forward(y.data(), x.data(), first_step, second_step,
                                             shortcut->single_conv_step(shortcut_shape));
    } else {
      ops::conv2d_relu_pair_forward(y.data(), x.data(), first_step, second_step, addend.data());
    }
    conv_fused_ran_[0] = 1;
    pair_relu_ = relu;
    return true;
  }
  return false;
}

template <typename T>
BatchNorm<T>* LayerChain<T>::last_norm() const {
  return layers_.empty() ? nullptr : dynamic_cast<BatchNorm<T>*>(layers_.back());
}

template <typename T>
TensorView<const T> LayerChain<T>::forward_to_last_norm(TensorView<const T> x, Mode mode) {
  // kTrain only: in kEval a BatchNorm2d after a Conv2d is folded into it, a step past the end.
  const BatchNorm<T>* norm = last_norm();
  if (mode != Mode::kTrain || !norm) return {};
  const TensorView<const T> before = forward_until(x, mode, layers_.size() - 1);
  // Its shape now (backward checks it), its values when output() asks.
  outputs_.back().resize(norm->output_shape(before.shape()));
  last_norm_skipped_ = true;
  return before;
}

template <typename T>
TensorView<const T> LayerChain<T>::output() {
  if (last_norm_skipped_) {
    const size_t last = layers_.size() - 1;
    last_norm()->normalise_again(last == 0 ? input_ : outputs_[last - 1].view(),
                                 outputs_[last].view());
    last_norm_skipped_ = false;
  }
  if (skipped_outputs_) recompute_skipped_outputs();
  return layers_.empty() ? input_ : outputs_.back().view();
}

template <typename T>
TensorView<const T> LayerChain<T>::forward_until(TensorView<const T> x, Mode mode, size_t end) {
  input_ = x;
  skipped_outputs_ = false;
  last_norm_skipped_ = false;
  add_relu_conv_ = 0;
  pair_relu_ = 0;
  std::fill(relu_norm_ran_.begin(), relu_norm_ran_.end(), 0);
  std::fill(norm_pool_ran_.begin(), norm_pool_ran_.end(), 0);
  std::fill(conv_fused_ran_.begin(), conv_fused_ran_.end(), 0);
  TensorView<const T> current = x;
  // No step runs past `end`: a fused or paired step ends at a ReLU, a pooling or a folded
  // BatchNorm, and forward_add_relu's `end` is a Conv2d.
  for (size_t i = 0; i < end; ++i) {
    size_t fused_last = 0;  // Conv2d i, (BatchNorm2d,) ReLU (and MaxPool2d) as one step
    if (mode == Mode::kEval && (conv_pool_[i] || conv_relu_[i]))
      fused_last = forward_conv_fused(i, current);
    if (fused_last) {
      i = fused_last;
    } else if (norm_pool_[i] && i + 2 < end &&
               !static_cast<const BatchNorm<T>*>(layers_[i])->synchronised()) {
      // BatchNorm2d i, ReLU i + 1 and MaxPool2d i + 2: neither the BatchNorm's output nor the
      // ReLU's is written (in kEval, a BatchNorm2d after a Conv2d was folded into it above).
      auto& norm = static_cast<BatchNorm<T>&>(*layers_[i]);
      const Shape normalised = norm.output_shape(current.shape());
      const Shape pooled = layers_[i + 2]->output_shape(layers_[i + 1]->output_shape(normalised));
      i += 2;
      outputs_[i].resize(pooled);
      norm.forward_relu_maxpool(current, outputs_[i].view(), *norm_pool_[i - 2], mode);
      norm_pool_ran_[i] = 1;
    } else if (i + 1 < layers_.size() && fused_pool_[i + 1]) {  // ReLU i and MaxPool2d i + 1
      ++i;
      outputs_[i].resize(layers_[i]->output_shape(current.shape()));
      fused_pool_[i]->forward_after_relu(current, outputs_[i].view(), mode);
    } else if (i + 1 < layers_.size() && relu_norm_[i + 1]) {  // BatchNorm i and ReLU i + 1
      // (A BatchNorm that kEval folds into the convolution before it never gets here: that
      // convolution's step consumed it, and its ReLU runs with the convolution
      // (forward_conv_fused) or alone.)
      ++i;
      outputs_[i].resize(layers_[i]->output_shape(current.shape()));
      relu_norm_[i]->forward_relu(current, outputs_[i].view(), mode);
      relu_norm_ran_[i] = 1;
    } else if (mode == Mode::kEval && i + 1 < layers_.size() && folded_norm_[i + 1]) {
      // Conv2d i with BatchNorm2d i + 1 folded in.
      const auto& conv = static_cast<const Conv2d<T>&>(*layers_[i]);
      const Shape conv_out = conv.output_shape(current.shape());
      fold(conv, *folded_norm_[i + 1], conv_out);
      if (current.empty()) throw Error(conv.describe() + ": forward: the input must not be empty");
      ++i;
      outputs_[i].resize(conv_out);
      // The weights scaled as they are packed (w' = w scale), not in a copy written here: the
      // copy cost 8% of a batch-1 resnet forward, and in one buffer shared by a chain's
      // convolutions it made every Winograd layer re-transform its weights on every call.
      ops::conv2d_forward(outputs_[i].data(), current.data(), conv.parameter(0).data(),
                          fold_bias_.data(), conv.conv_shape(current.shape(), true),
                          fold_scale_.data());
      skipped_outputs_ = true;
    } else if (!forward_conv_moments(i, current, end, mode)) {
      outputs_[i].resize(layers_[i]->output_shape(current.shape()));
      layers_[i]->forward(current, outputs_[i].view(), mode);
    }
    current = outputs_[i].view();
  }
  return current;
}

template <typename T>
void LayerChain<T>::recompute_skipped_outputs() {
  for (size_t i = 0; i < layers_.size(); ++i) {
    if (pair_relu_ && i == pair_relu_) {
      // The ReLU's output that forward_pair_add_relu skipped, as forward_conv_fused writes it:
      // from the convolution with the BatchNorm folded in, whose rounding the second
      // convolution's input had (not from the unfolded pair recomputed above).
      forward_conv_fused(0, input_);
      continue;
    }
    const bool folded = i + 1 < layers_.size() && folded_norm_[i + 1];
    if (!folded && !conv_fused_ran_[i]) continue;
    const TensorView<const T> x = i == 0 ? input_ : outputs_[i - 1].view();
    outputs_[i].resize(layers_[i]->output_shape(x.shape()));
    layers_[i]->forward(x, outputs_[i].view(), Mode::kEval);
    if (!folded) continue;
    // The BatchNorm runs too, so that its backward follows a kEval forward of its own: into
    // scratch, leaving the output the caller may hold as it was, unless a fused step skipped
    // that output (the ReLU's or the pooling's backward then reads it).
    Tensor<T>& norm_out = conv_fused_ran_[i] ? outputs_[i + 1] : recomputed_;
    norm_out.resize(outputs_[i].shape());
    layers_[i + 1]->forward(outputs_[i].view(), norm_out.view(), Mode::kEval);
  }
  if (add_relu_conv_) {
    // The chain's last output as forward() computes it: the convolution's, or with a
    // BatchNorm2d folded in, the folded convolution's (the loop above recomputed the pair
    // unfolded, for their backward, into scratch).
    const size_t c = add_relu_conv_ - 1;
    const TensorView<const T> x = c == 0 ? input_ : outputs_[c - 1].view();
    const auto& conv = static_cast<const Conv2d<T>&>(*layers_[c]);
    if (c + 1 < layers_.size()) {
      const auto [bias, scale] = bias_and_scale(c, outputs_[c].shape());
      ops::conv2d_forward(outputs_[c + 1].data(), x.data(), conv.parameter(0).data(), bias,
                          conv.conv_shape(x.shape(), true), scale);
    } else {
      layers_[c]->forward(x, outputs_[c].view(), Mode::kEval);
    }
    add_relu_conv_ = 0;
  }
  std::fill(conv_fused_ran_.begin(), conv_fused_ran_.end(), 0);
  pair_relu_ = 0;
  skipped_outputs_ = false;
}

template <typename T>
void LayerChain<T>::backward(TensorView<const T> dy, TensorView<T> dx) {
  if (layers_.empty()) {
    if (!dx.empty()) std::copy(dy.begin(), dy.end(), dx.begin());
    return;
  }
  if (input_.empty()) throw Error("backward() before forward()");
  if (dy.shape() != outputs_.back().shape() || dy.empty()) {
    throw Error("backward expected a gradient of the output's shape " +
                outputs_.back().shape().str() + ", got " +
                (dy.empty() ? std::string("an empty view") : dy.shape().str()));
  }
  if (skipped_outputs_) recompute_skipped_outputs();
  backward_steps(layers_.size(), dy, false, dx);
}

template <typename T>
TensorView<T> LayerChain<T>::last_norm_input_gradient() {
  if (!last_norm_skipped_ || layers_.size() < 2) {
    throw std::logic_error(
        "LayerChain: a backward from the last BatchNorm's input gradient, but no "
        "forward_to_last_norm of 2+ layers");
  }
  // grad_a_, where the chain's own step would have put it: backward_steps takes it from there.
  return grad_a_.view(outputs_[layers_.size() - 2].shape());
}

template <typename T>
void LayerChain<T>::backward_before_last_norm(TensorView<T> dx) {
  // The same view again (its checks too): a view of the same shape has the same address.
  backward_steps(layers_.size() - 1, last_norm_input_gradient(), true, dx);
}

template <typename T>
bool LayerChain<T>::backward_conv_norm_pool(TensorView<const T> upstream) {
  BatchNorm<T>* const norm = folded_norm_[1];  // a BatchNorm2d after Conv2d 0
  if (!norm || !norm_pool_[1]) return false;
  auto& conv = static_cast<Conv2d<T>&>(*layers_[0]);
  const TensorView<const T> x = outputs_[0].view();  // the BatchNorm's input
  if (!conv.backward_by_image_takes(input_.shape())) return false;
  ops::ImageGradientSource dx_images;
  if (!norm->backward_relu_maxpool_by_image(x, upstream, *norm_pool_[1], &dx_images)) return false;
  conv.backward_by_image(input_, x.shape(), dx_images);
  return true;
}

template <typename T>
void LayerChain<T>::backward_steps(size_t end, TensorView<const T> upstream, bool in_a,
                                   TensorView<T> dx) {
  for (size_t k = end; k-- > 0;) {
    // A fused ReLU and MaxPool2d (k - 1, k), or BatchNorm and ReLU, take one step, from the
    // first one's input.
    // And BatchNorm2d, ReLU and MaxPool2d one step, from the BatchNorm's input.
    const size_t first = norm_pool_ran_[k]                     ? k - 2
                         : fused_pool_[k] || relu_norm_ran_[k] ? k - 1
                                                               : k;
    const TensorView<const T> x = first == 0 ? input_ : outputs_[first - 1].view();
    // Neither has parameters: as the first layers without a dx wanted, nothing to compute.
    if (fused_pool_[k] && !norm_pool_ran_[k] && first == 0 && dx.empty()) break;
    // A Conv2d before those three, the first layer: its weight gradient reads their input
    // gradient image by image, which no layer before it needs.
    if (norm_pool_ran_[k] && first == 1 && dx.empty() && backward_conv_norm_pool(upstream)) break;
    TensorView<T> step_dx;
    if (first > 0) {
      // The buffer that upstream is not in, so that dx never aliases the gradient being read.
      SplitAlignedBuffer<T>& buffer = in_a ? grad_b_ : grad_a_;
      step_dx = buffer.view(x.shape());
      in_a = !in_a;
    } else {
      step_dx = dx;
    }
    if (norm_pool_ran_[k]) {
      static_cast<BatchNorm<T>&>(*layers_[first])
          .backward_relu_maxpool(x, upstream, step_dx, *norm_pool_[first]);
    } else if (fused_pool_[k]) {
      fused_pool_[k]->backward_after_relu(x, upstream, step_dx);
    } else if (relu_norm_ran_[k]) {
      relu_norm_[k]->backward_relu(x, upstream, step_dx);
    } else {
      layers_[k]->backward(x, outputs_[k].view(), upstream, step_dx);
    }
    upstream = step_dx;
    k = first;
  }
}

template class SplitAlignedBuffer<float>;
template class SplitAlignedBuffer<double>;
template class LayerChain<float>;
template class LayerChain<double>;

}  // namespace cnn::detail

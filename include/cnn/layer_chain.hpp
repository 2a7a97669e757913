#pragma once
// LayerChain: runs a list of layers forward in order and backward in reverse, keeping each
// layer's output for backward. Sequential runs its layers through one, and so do Residual's body
// and shortcut. Groups of layers run as one step when the results allow it:
//  * a ReLU followed by a MaxPool2d (MaxPool2d::forward_after_relu): bit for bit the same
//    results without the ReLU's output, which saved two full passes over the largest
//    activations of lenet5 and convnet;
//  * a BatchNorm (1d or 2d) followed by a ReLU (BatchNorm::forward_relu): bit for bit the same
//    results without the BatchNorm's output; backward recomputes the ReLU's mask from the
//    BatchNorm's input, which saves the ReLU's passes in both directions;
//  * a BatchNorm2d followed by a ReLU and a 2x2 / stride-2 MaxPool2d (a stem; in kEval, when no
//    Conv2d before it folds the BatchNorm in): BatchNorm::forward_relu_maxpool, plane by
//    plane, bit for bit the same results without the BatchNorm's or the ReLU's output; backward
//    makes each plane's pooling gradient in the cache and recomputes the ReLU's mask from the
//    BatchNorm's input: 5 full-size passes over resnet's largest activation (its stem's) in a
//    training step instead of 12 (forward 2 instead of 4, backward 3 instead of 8);
//  * in kEval, a Conv2d followed by a BatchNorm2d: the BatchNorm's affine map is folded into the
//    convolution's weights and bias (w' = w scale, applied as the convolution packs its
//    weights; b' = b scale + shift), one pass instead of two; equal to the unfolded pair to
//    rounding. A backward after such a forward first recomputes the pair unfolded, so that
//    evaluation-mode gradients stay exact;
//  * in kEval, for floats, a Conv2d (with a BatchNorm2d folded in, or not), a ReLU and a 2x2 /
//    stride-2 MaxPool2d, when the convolution runs by the direct kernels: each image's
//    convolution is pooled while it is in the cache (ops::conv2d_relu_maxpool2x2_forward), the
//    pooled output bit for bit that of the pairs above, without writing and reading back the
//    convolution's output, the largest activation of resnet, lenet5 and convnet;
//  * in kEval, for floats, a Conv2d (with a BatchNorm2d folded in, or not) and a ReLU not paired
//    with a pooling, when the convolution runs by Winograd or the implicit GEMM: the ReLU is
//    applied as the convolution writes each block of images (ops::conv2d_relu_forward), bit for
//    bit the pair and the ReLU, without a pass of its own (resnet's blocks).
//    A backward after either first recomputes the convolution (and BatchNorm) outputs,
//    unfolded;
//  * in kEval, for floats, on request (forward_add_relu: a Residual's body), a last Conv2d (with
//    a BatchNorm2d folded in, or not) that Winograd or the implicit GEMM runs writes
//    relu(its output + an addend) straight into the caller's tensor (the shortcut's output
//    added and the block's ReLU applied to each block of images as the convolution writes it),
//    bit for bit the chain's output, then ops::add_forward with its ReLU; the chain's own last
//    output is computed only if asked for (output(), or a backward). When the chain is a
//    Conv2d, (a BatchNorm2d,) a ReLU and that last step, and F(4x4) runs the last convolution
//    and F(4x4) or the implicit GEMM the first (ops::conv2d_relu_pair_fusable: every block of
//    resnet in evaluation), the two run as one call (ops::conv2d_relu_pair_forward), the
//    first's output going from one convolution to the next in the cache, lane group by lane
//    group, never written out: bit for bit the two fused steps; a backward first recomputes
//    the skipped outputs as those steps write them. When the first runs by the implicit GEMM
//    and the Residual's shortcut is one Conv2d (with a BatchNorm2d folded in, or not) that the
//    implicit GEMM runs too (forward_add_shortcut_relu: resnet's projections), the same call
//    computes each group's shortcut beside the first convolution, while the group's input is
//    in the cache, and adds it (ops::conv2d_relu_pair_shortcut_forward): the shortcut's output
//    is never written either, and a backward runs the shortcut chain's forward first;
//  * in kTrain, on request (forward_to_last_norm: a Residual whose body ends with a BatchNorm),
//    the chain stops before its last BatchNorm and leaves the normalisation to the caller, which
//    normalises both branches, adds them and applies the block's ReLU in one pass
//    (ops::batchnorm_add_relu_forward); output() normalises only if asked.
//  * in kTrain, for floats, a Conv2d followed by a (not synchronised) BatchNorm2d: the
//    convolution takes each output plane's sums of values and of squares as it writes the plane
//    (Conv2d::forward_moments), and the BatchNorm's statistics come from them
//    (BatchNorm::take_moments) instead of from a pass of their own over the output: the same
//    bits.

#include <utility>
#include <vector>

#include "cnn/layers.hpp"
#include "cnn/tensor.hpp"

namespace cnn::detail {

/// Storage for the dL/d(activation) tensors of a backward, one after another (the previous
/// one's contents are dead when the next is asked for), each placed so that the images of the
/// threads' second half (ops::threads() parts split as the kernels split a batch's images) start
/// at the same address, to within a cache line, whatever the tensor's shape. A thread then
/// writes the same memory from layer to layer and step to step: with plain buffers, a layer
/// with smaller images had a thread write lines the other thread had written for a larger one,
/// and each such line came from the other core (on this machine, when its two vCPUs did not
/// share a cache, 350 ns round trips instead of 60-80). Grows, never shrinks.
template <typename T>
class SplitAlignedBuffer {
 public:
  /// A view of `shape` (batch first) in this buffer; invalidates the previous one's contents.
  TensorView<T> view(const Shape& shape);
  const T* storage() const { return storage_.data(); }

 private:
  Tensor<T> storage_;
  int64_t middle_ = 0;  // where the second half's first image starts
  int64_t tail_ = 0;    // the most elements any view has had from there
};

template <typename T>
class LayerChain {
 public:
  /// The layers to run (not owned; they must outlive the chain and have bound parameters
  /// before forward). Finds the pairs that run as one step.
  void set_layers(std::vector<Layer<T>*> layers);
  size_t size() const { return layers_.size(); }
  /// Runs x through every layer; returns the last output, valid until the next forward (x
  /// itself for an empty chain). x must stay alive and unchanged until backward().
  TensorView<const T> forward(TensorView<const T> x, Mode mode);
  /// kEval: y = relu(forward(x) + addend) (addend and y of the output's shape, y not aliasing
  /// x or addend), with the last step writing y itself when it is a Conv2d (with a BatchNorm2d
  /// folded in, or not) that ops::conv2d_relu_fusable takes; returns whether it was. When it
  /// returns false it has run nothing (the caller runs forward() and adds). x must stay alive
  /// and unchanged until backward().
  bool forward_add_relu(TensorView<const T> x, TensorView<const T> addend, TensorView<T> y);
  /// kEval: y = relu(forward(x) + shortcut.forward(x)) (y of the output's shape, not aliasing
  /// x), when this chain runs as forward_add_relu's pair with its first convolution by the
  /// implicit GEMM and `shortcut` is one Conv2d (with a BatchNorm2d folded in, or not) that
  /// ops::conv2d_relu_pair_shortcut_fusable takes beside it: one call, in which each group's
  /// shortcut is computed beside the first convolution (a residual block's projection), and
  /// neither this chain's last output nor the shortcut's is written (the shortcut chain has not
  /// run: a caller that needs its output runs its forward). Returns whether it ran; when not,
  /// it has run nothing. x must stay alive and unchanged until backward().
  bool forward_add_shortcut_relu(TensorView<const T> x, LayerChain& shortcut, TensorView<T> y);
  /// kTrain, for a chain whose last layer is a BatchNorm (last_norm()): forward() up to that
  /// layer, returning its input (x for a chain of one), with the last output's shape set but
  /// not its values (output() computes them). The caller then runs the BatchNorm's
  /// forward_statistics on the returned tensor and normalises it itself (a residual block's
  /// end); backward() runs as after forward(). Returns an empty view, having run nothing, in
  /// kEval or when the last layer is not a BatchNorm.
  TensorView<const T> forward_to_last_norm(TensorView<const T> x, Mode mode);
  /// The last layer when it is a BatchNorm, else null.
  BatchNorm<T>* last_norm() const;
  /// After forward_to_last_norm on a chain of 2 or more layers, for a caller that runs the last
  /// BatchNorm's backward itself: where to write that BatchNorm's input gradient (valid until
  /// the next backward); backward_before_last_norm then backpropagates it through the layers
  /// before, as backward() would, and assigns dx (unless empty).
  TensorView<T> last_norm_input_gradient();
  void backward_before_last_norm(TensorView<T> dx);
  /// The latest forward's last output (computed now if forward_add_relu or
  /// forward_to_last_norm skipped it), valid until the next forward.
  TensorView<const T> output();
  /// Backpropagates dy (the shape of the latest forward's output): accumulates parameter
  /// gradients and assigns dx (the shape of the latest input) unless dx is empty. dx must not
  /// alias dy. For an empty chain dx = dy.
  void backward(TensorView<const T> dy, TensorView<T> dx);

 private:
  /// backward() through layers [0, end) from upstream, the gradient of layer end - 1's output,
  /// which is in grad_a_ when in_a (else in neither ping-pong buffer).
  void backward_steps(size_t end, TensorView<const T> upstream, bool in_a, TensorView<T> dx);
  /// forward() over layers [0, end): returns layer end - 1's output (x for end 0).
  TensorView<const T> forward_until(TensorView<const T> x, Mode mode, size_t end);
  /// forward_add_relu's case of a chain that is a Conv2d, (a BatchNorm2d,) a ReLU, and the last
  /// step's Conv2d (at conv_index, of shape `shape`) that ops::conv2d_relu_pair_fusable takes
  /// with the first: both convolutions in one call (ops::conv2d_relu_pair_forward), the
  /// first's output never written. Returns whether it ran (the caller then sets the flags of
  /// a forward_add_relu); when not, it has run nothing.
  bool forward_pair_add_relu(TensorView<const T> x, TensorView<const T> addend, TensorView<T> y,
                             size_t conv_index, const ops::ConvShape& shape,
                             LayerChain* shortcut = nullptr);
  /// For a chain that is one Conv2d, or a Conv2d and the BatchNorm2d that kEval folds into it:
  /// the convolution's shape for input shape in_shape, and true; false for any other chain.
  bool single_conv_shape(const Shape& in_shape, ops::ConvShape* shape) const;
  /// That chain's convolution as a pair step of `shape`: its weights and bias, folded with the
  /// BatchNorm2d when there is one (bias_and_scale).
  ops::ConvPairStep single_conv_step(const ops::ConvShape& shape);
  /// The Conv2d forward_add_relu's last step ends with (the last layer, or the one before a
  /// folded BatchNorm2d), its input shape and ops::ConvShape for input x_shape; null when the
  /// chain does not end so.
  const Conv2d<T>* last_conv(const Shape& x_shape, size_t* conv_index, ops::ConvShape* shape) const;
  /// In kTrain, for floats, Conv2d i followed by a (not synchronised) BatchNorm2d that takes
  /// its statistics next (i + 1 < end, or the last layer, which forward_to_last_norm leaves to
  /// its caller): runs the convolution on x with each output plane's moments taken as it is
  /// written (Conv2d::forward_moments), for the BatchNorm's statistics (take_moments), and
  /// returns true; false, having run nothing, otherwise.
  bool forward_conv_moments(size_t i, TensorView<const T> x, size_t end, Mode mode);
  /// The backward of BatchNorm2d 1 with the ReLU and MaxPool2d after it (a step that ran as
  /// one) from their output gradient `upstream`, and of Conv2d 0 before it, when no input
  /// gradient is wanted: the BatchNorm's input gradient made image by image where the
  /// convolution's weight gradient reads it (BatchNorm::backward_relu_maxpool_by_image,
  /// Conv2d::backward_by_image), never written. Returns false, having run nothing, where the
  /// chain does not start so or either does not take the shapes.
  bool backward_conv_norm_pool(TensorView<const T> upstream);
  /// Before a backward after a kEval forward that folded or fused: the outputs it skipped.
  void recompute_skipped_outputs();
  /// fold_scale_ and fold_bias_ for Conv2d `conv` with BatchNorm2d `norm` folded in.
  void fold(const Conv2d<T>& conv, const BatchNorm<T>& norm, const Shape& conv_out);
  /// Runs Conv2d i through the MaxPool2d at conv_pool_[i], or else the ReLU at conv_relu_[i],
  /// as one step if the convolution's shape allows it (kEval); returns the index of the last
  /// layer it ran, or 0 when it ran nothing.
  size_t forward_conv_fused(size_t i, TensorView<const T> x);
  /// The folded BatchNorm's bias and scale for Conv2d i (when folded_norm_[i + 1]), or its own
  /// bias and no scale: what the fused steps pass to the convolution.
  std::pair<const T*, const T*> bias_and_scale(size_t i, const Shape& conv_out);
  std::vector<Layer<T>*> layers_;
  std::vector<Tensor<T>> outputs_;          // outputs_[i]: layer i's output of the latest forward
  std::vector<MaxPool2d<T>*> fused_pool_;   // [i]: layer i when a MaxPool2d after a ReLU
  std::vector<BatchNorm<T>*> folded_norm_;  // [i]: layer i when a BatchNorm2d after a Conv2d
  std::vector<BatchNorm<T>*> relu_norm_;    // [i]: layer i - 1 when layer i is a ReLU after it
  std::vector<char> relu_norm_ran_;         // [i]: the latest forward ran layers i - 1 and i as one
  // [i]: for a BatchNorm2d i followed by a ReLU and a 2x2 / stride-2 MaxPool2d, that pool;
  // norm_pool_ran_[k]: the latest forward ran layers k - 2 to k as one.
  std::vector<MaxPool2d<T>*> norm_pool_;
  std::vector<char> norm_pool_ran_;
  // [i]: for a Conv2d i followed by a ReLU (or a BatchNorm2d and a ReLU) and a 2x2 / stride-2
  // MaxPool2d, the pool's index, else 0; conv_relu_[i]: for one followed by a ReLU (or a
  // BatchNorm2d and a ReLU) that no pooling pairs with, the ReLU's index, else 0;
  // conv_fused_ran_[i]: the latest forward ran Conv2d i and those layers as one.
  std::vector<size_t> conv_pool_, conv_relu_;
  std::vector<char> conv_fused_ran_;
  SplitAlignedBuffer<T> grad_a_, grad_b_;  // ping-pong buffers for dL/d(activation) in backward
  Tensor<T> recomputed_;  // the unfolded BatchNorm output recompute_skipped_outputs writes
  std::vector<T> fold_bias_, fold_scale_, fold_shift_;
  TensorView<const T> input_;
  bool skipped_outputs_ = false;    // the latest forward folded or fused: recompute before backward
  bool last_norm_skipped_ = false;  // forward_to_last_norm ran: output() normalises first
  size_t add_relu_conv_ = 0;        // forward_add_relu ran Conv2d add_relu_conv_ - 1 fused, or 0
  size_t pair_relu_ = 0;  // forward_pair_add_relu skipped the output of ReLU pair_relu_, or 0
  std::vector<T> pair_bias_, pair_scale_;  // its first convolution's folded bias and scale
};

}  // namespace cnn::detail

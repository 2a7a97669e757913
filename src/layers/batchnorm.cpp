#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>
#include <type_traits>
#include <utility>

#include "cnn/distributed.hpp"
#include "cnn/error.hpp"
#include "cnn/layers.hpp"

namespace cnn {

template <typename T>
BatchNorm<T>::BatchNorm(int64_t num_features, double eps, double momentum, bool affine,
                        int min_rank, int max_rank)
    : num_features_(num_features),
      eps_(eps),
      momentum_(momentum),
      affine_(affine),
      min_rank_(min_rank),
      max_rank_(max_rank) {
  const std::string name = max_rank == 4 ? "BatchNorm2d" : "BatchNorm1d";
  if (num_features < 1 || num_features > kMaxElements) {
    throw Error(name + ": expected num_features >= 1, got " + std::to_string(num_features));
  }
  // > 0 as the layer computes it: an eps below float's range is 0 in a float layer.
  if (!(static_cast<T>(eps) > 0) || !std::isfinite(eps)) {
    char given[32];
    std::snprintf(given, sizeof given, "%g", eps);
    throw Error(name + ": expected eps > 0 (also as a " + (sizeof(T) == 4 ? "float" : "double") +
                "), got " + given);
  }
  if (!(momentum >= 0 && momentum <= 1)) {
    throw Error(name + ": expected momentum in [0, 1], got " + std::to_string(momentum));
  }
  batch_mean_.assign(static_cast<size_t>(num_features), T(0));
  batch_var_.assign(static_cast<size_t>(num_features), T(1));
}

template <typename T>
std::string BatchNorm<T>::describe() const {
  std::ostringstream out;
  out << this->type() << "(" << num_features_ << ", eps=" << eps_ << ", momentum=" << momentum_
      << ", affine=" << (affine_ ? "true" : "false") << ")";
  return out.str();
}

template <typename T>
Shape BatchNorm<T>::output_shape(const Shape& in) const {
  if (in.rank() < min_rank_ || in.rank() > max_rank_ || !in.all_positive() ||
      in[1] != num_features_) {
    const std::string c = std::to_string(num_features_);
    this->fail("expected input " +
               std::string(max_rank_ == 4 ? "(N, " + c + ", H, W)"
                                          : "(N, " + c + ") or (N, " + c + ", L)") +
               " with positive sizes, got " + in.str());
  }
  return in;
}

template <typename T>
double BatchNorm<T>::forward_flops(const Shape& input) const {
  return 2.0 * static_cast<double>(output_shape(input).numel());  // one multiply-add each
}

template <typename T>
std::vector<ParamSpec> BatchNorm<T>::parameter_specs() const {
  if (!affine_) return {};
  return {{"weight", Shape{num_features_}}, {"bias", Shape{num_features_}}};
}

template <typename T>
std::vector<ParamSpec> BatchNorm<T>::buffer_specs() const {
  return {{"running_mean", Shape{num_features_}},
          {"running_var", Shape{num_features_}},
          {"num_batches_tracked", Shape{}, true}};
}

template <typename T>
void BatchNorm<T>::init_parameters(Rng& /*rng*/, Init /*init*/) {
  if (affine_) {
    std::fill_n(this->value_data(0), num_features_, T(1));
    std::fill_n(this->value_data(1), num_features_, T(0));
  }
  reset_buffers();
}

template <typename T>
void BatchNorm<T>::reset_buffers() {
  std::fill_n(this->buffer_data(0), num_features_, T(0));
  std::fill_n(this->buffer_data(1), num_features_, T(1));
  this->buffer_data(2)[0] = T(0);
}

template <typename T>
ops::NormShape BatchNorm<T>::norm_shape(const Shape& in) {
  int64_t inner = 1;
  for (int d = 2; d < in.rank(); ++d) inner *= in[d];
  return {in[0], in[1], inner};
}

template <typename T>
void BatchNorm<T>::eval_affine(T* scale, T* shift) const {
  const T* mean = this->buffer_data(0);
  const T* var = this->buffer_data(1);
  for (int64_t c = 0; c < num_features_; ++c) {
    const T invstd = T(1) / std::sqrt(var[c] + static_cast<T>(eps_));
    scale[c] = (affine_ ? this->value_data(0)[c] : T(1)) * invstd;
    shift[c] = (affine_ ? this->value_data(1)[c] : T(0)) - mean[c] * scale[c];
  }
}

template <typename T>
void BatchNorm<T>::forward_impl(TensorView<const T> x, TensorView<T> y, Mode mode) {
  run_forward(x, y, mode, false);
}

template <typename T>
void BatchNorm<T>::forward_relu(TensorView<const T> x, TensorView<T> y, Mode mode) {
  this->check_forward(x, y);
  run_forward(x, y, mode, true);
}

template <typename T>
bool BatchNorm<T>::synchronised() const {
  return ranks_ != nullptr && ranks_->size() > 1;
}

template <typename T>
void BatchNorm<T>::forward_relu_maxpool(TensorView<const T> x, TensorView<T> y, MaxPool2d<T>& pool,
                                        Mode mode) {
  const Shape expected = pool.output_shape(output_shape(x.shape()));
  if (x.shape().rank() != 4 || !pool.is_2x2_stride2() || synchronised() || y.shape() != expected) {
    this->fail("forward_relu_maxpool: expected an input (N, C, H, W), an output " + expected.str() +
               ", a 2x2 / stride-2 pooling and local statistics, got input " + x.shape().str() +
               " and output " + y.shape().str());
  }
  run_forward(x, y, mode, true, &pool);
}

template <typename T>
ops::NormOperand<T> BatchNorm<T>::forward_statistics(TensorView<const T> x, Mode mode) {
  // forward's checks of x and of this layer's state: the output, of x's shape, stands in as x
  // itself (nothing writes it).
  this->check_forward(x, TensorView<T>(const_cast<T*>(x.data()), x.shape()));
  statistics(x, mode);
  return operand(x.data());
}

template <typename T>
ops::NormOperand<T> BatchNorm<T>::operand(const T* x) const {
  return {x,
          last_train_ ? batch_mean_.data() : this->buffer_data(0),
          last_train_ ? batch_var_.data() : this->buffer_data(1),
          affine_ ? this->value_data(0) : nullptr,
          affine_ ? this->value_data(1) : nullptr,
          static_cast<T>(eps_)};
}

template <typename T>
void BatchNorm<T>::normalise_again(TensorView<const T> x, TensorView<T> y) const {
  const Shape expected = output_shape(x.shape());
  if (y.shape() != expected || x.empty() || y.empty())
    this->fail("normalise_again: expected output " + expected.str() + ", got " + y.shape().str());
  const ops::NormOperand<T> a = operand(x.data());
  ops::batchnorm_forward(y.data(), a.x, a.mean, a.var, a.gamma, a.beta, norm_shape(x.shape()),
                         a.eps);
}

template <typename T>
void BatchNorm<T>::backward_block_end(TensorView<const T> dy, TensorView<T> g, TensorView<T> dx,
                                      const ops::NormOperand<T>& self,
                                      const ops::NormOperand<T>* shortcut, const T* addend) {
  const Shape& shape = dy.shape();
  if (output_shape(shape) != shape || g.shape() != shape || dx.shape() != shape || g.empty() ||
      dx.empty() || synchronised()) {
    this->fail("backward_block_end: expected gradients " + shape.str() +
               " and local statistics, got " + g.shape().str() + " and " + dx.shape().str());
  }
  require_latest_input(shape);
  ops::batchnorm_add_relu_backward(g.data(), dx.data(), affine_ ? this->gradient_data(0) : nullptr,
                                   affine_ ? this->gradient_data(1) : nullptr, dy.data(), self,
                                   shortcut, addend, norm_shape(shape), last_train_);
}

template <typename T>
void BatchNorm<T>::run_forward(TensorView<const T> x, TensorView<T> y, Mode mode, bool relu,
                               MaxPool2d<T>* pool) {
  const ops::NormShape s = norm_shape(x.shape());
  statistics(x, mode);
  const ops::NormOperand<T> a = operand(x.data());
  if (pool) {
    const Shape& in = x.shape();
    ops::batchnorm_relu_maxpool2x2_forward(y.data(), pool->fused_forward_argmax(in, y.shape()), a.x,
                                           a.mean, a.var, a.gamma, a.beta, s, in[2], in[3], a.eps);
  } else if (relu) {
    ops::batchnorm_relu_forward(y.data(), a.x, a.mean, a.var, a.gamma, a.beta, s, a.eps);
  } else {
    ops::batchnorm_forward(y.data(), a.x, a.mean, a.var, a.gamma, a.beta, s, a.eps);
  }
}

template <typename T>
double* BatchNorm<T>::moments_buffer(const Shape& input) {
  const ops::NormShape s = norm_shape(input);
  const size_t size = static_cast<size_t>(2 * s.batch * s.channels);
  if (moments_.size() < size) moments_.resize(size);  // grow-only: a warm step allocates nothing
  return moments_.data();
}

template <typename T>
void BatchNorm<T>::take_moments(const T* x) {
  moments_of_ = x;
}

template <typename T>
void BatchNorm<T>::statistics(TensorView<const T> x, Mode mode) {
  // Only a float Conv2d hands moments over (Conv2d::forward_moments).
  const bool from_moments =
      std::exchange(moments_of_, nullptr) == x.data() && std::is_same_v<T, float>;
  last_train_ = mode == Mode::kTrain;
  last_input_shape_ = x.shape();
  if (!last_train_) return;  // the running statistics normalise
  const ops::NormShape s = norm_shape(x.shape());
  T* running_mean = this->buffer_data(0);
  T* running_var = this->buffer_data(1);
  const bool shared = synchronised();
  if (shared) synchronised_statistics(x.data(), s);
  const int64_t count = shared ? global_count_ : s.batch * s.inner;
  if (count < 2) {
    this->fail(
        "expected more than 1 value per channel in training (the variance of one is 0), "
        "got input " +
        x.shape().str());
  }
  if (!shared && from_moments) {
    if constexpr (std::is_same_v<T, float>) {
      ops::batchnorm_statistics_from_moments(batch_mean_.data(), batch_var_.data(), moments_.data(),
                                             s);
    }
  } else if (!shared) {
    ops::batchnorm_statistics(batch_mean_.data(), batch_var_.data(), x.data(), s);
  }
  // PyTorch's update, in T: running = (1 - momentum) running + momentum batch.
  const T m = static_cast<T>(momentum_);
  const T unbias = static_cast<T>(static_cast<double>(count) / static_cast<double>(count - 1));
  for (int64_t c = 0; c < num_features_; ++c) {
    const size_t k = static_cast<size_t>(c);
    running_mean[c] = (T(1) - m) * running_mean[c] + m * batch_mean_[k];
    running_var[c] = (T(1) - m) * running_var[c] + m * batch_var_[k] * unbias;
  }
  this->buffer_data(2)[0] += T(1);
}

template <typename T>
void BatchNorm<T>::backward_impl(TensorView<const T> x, TensorView<const T> /*y*/,
                                 TensorView<const T> dy, TensorView<T> dx) {
  run_backward(x, dy, dx, false);
}

template <typename T>
void BatchNorm<T>::backward_relu(TensorView<const T> x, TensorView<const T> dy, TensorView<T> dx) {
  const Shape expected = output_shape(x.shape());
  if (dy.shape() != expected || (!dx.empty() && dx.shape() != x.shape())) {
    this->fail("backward: expected an output gradient " + expected.str() +
               " and an input gradient " + x.shape().str() + ", got " + dy.shape().str() + " and " +
               dx.shape().str());
  }
  run_backward(x, dy, dx, true);
}

template <typename T>
void BatchNorm<T>::require_latest_input(const Shape& x) const {
  // The batch statistics are the latest forward's: another batch would be normalised with them
  // (a backward of 4 images after a forward of 2 gave dx of -3e7, silently).
  if (last_input_shape_.rank() == 0) this->fail("backward before any forward");
  if (x != last_input_shape_) {
    this->fail("backward: expected the input of the latest forward " + last_input_shape_.str() +
               ", got " + x.str());
  }
}

template <typename T>
void BatchNorm<T>::check_relu_maxpool_backward(const Shape& x, const MaxPool2d<T>& pool) const {
  require_latest_input(x);
  output_shape(x);
  if (x.rank() != 4 || !pool.is_2x2_stride2() || synchronised()) {
    this->fail(
        "backward_relu_maxpool: expected an input (N, C, H, W), a 2x2 / stride-2 pooling "
        "and local statistics, got input " +
        x.str());
  }
}

template <typename T>
void BatchNorm<T>::backward_relu_maxpool(TensorView<const T> x, TensorView<const T> dy,
                                         TensorView<T> dx, MaxPool2d<T>& pool) {
  check_relu_maxpool_backward(x.shape(), pool);
  run_backward(x, dy, dx, true, &pool);
}

template <typename T>
bool BatchNorm<T>::backward_relu_maxpool_by_image(TensorView<const T> x, TensorView<const T> dy,
                                                  MaxPool2d<T>& pool,
                                                  ops::ImageGradientSource* dx_images) {
  if constexpr (std::is_same_v<T, float>) {
    if (ops::reference_mode()) return false;
    check_relu_maxpool_backward(x.shape(), pool);
    const int32_t* argmax = pool.fused_backward_argmax(x.shape(), dy.shape(), nullptr);
    const ops::NormOperand<T> a = operand(x.data());
    return ops::maxpool2x2_relu_batchnorm_backward_by_image(
        affine_ ? this->gradient_data(0) : nullptr, affine_ ? this->gradient_data(1) : nullptr,
        dy.data(), argmax, x.data(), a.mean, a.var, a.gamma, a.beta, norm_shape(x.shape()),
        x.shape()[2], x.shape()[3], a.eps, last_train_, dx_images);
  } else {
    (void)x;
    (void)dy;
    (void)pool;
    (void)dx_images;
    return false;
  }
}

template <typename T>
void BatchNorm<T>::run_backward(TensorView<const T> x, TensorView<const T> dy, TensorView<T> dx,
                                bool relu, MaxPool2d<T>* pool) {
  require_latest_input(x.shape());
  const ops::NormShape s = norm_shape(x.shape());
  T* dgamma = affine_ ? this->gradient_data(0) : nullptr;
  T* dbeta = affine_ ? this->gradient_data(1) : nullptr;
  // What the latest forward normalised x with.
  const ops::NormOperand<T> a = operand(x.data());
  const T *mean = a.mean, *var = a.var, *gamma = a.gamma, *beta = a.beta;
  const T eps = a.eps;
  if (last_train_ && synchronised()) {
    const T* upstream = dy.data();
    if (relu) {  // the ReLU's input gradient first; the synchronised sums take it as dy
      masked_dy_.resize(static_cast<size_t>(dy.numel()));  // grow-only: no steady allocation
      ops::batchnorm_relu_mask(masked_dy_.data(), dy.data(), x.data(), mean, var, gamma, beta, s,
                               eps);
      upstream = masked_dy_.data();
    }
    synchronised_backward(dx.empty() ? nullptr : dx.data(), upstream, x.data(), s);
    return;
  }
  if (pool) {
    const int32_t* argmax =
        pool->fused_backward_argmax(x.shape(), dy.shape(), dx.empty() ? nullptr : &dx.shape());
    ops::maxpool2x2_relu_batchnorm_backward(dx.empty() ? nullptr : dx.data(), dgamma, dbeta,
                                            dy.data(), argmax, x.data(), mean, var, gamma, beta, s,
                                            x.shape()[2], x.shape()[3], eps, last_train_);
  } else if (relu) {
    ops::batchnorm_relu_backward(dx.empty() ? nullptr : dx.data(), dgamma, dbeta, dy.data(),
                                 x.data(), mean, var, gamma, beta, s, eps, last_train_);
  } else {
    ops::batchnorm_backward(dx.empty() ? nullptr : dx.data(), dgamma, dbeta, dy.data(), x.data(),
                            mean, var, gamma, s, eps, last_train_);
  }
}

// Synchronised BatchNorm: the statistics batchnorm_statistics computes, with each sum taken over
// every rank's share of the global batch (two exchanges: the sums for the mean, then the squared
// deviations from it, as the reference's two passes; the one-process float kernel sums x and
// x^2 in one pass, the same to rounding). Plain loops: the per-rank shares are small, and an
// exchange costs more than the arithmetic.
template <typename T>
void BatchNorm<T>::synchronised_statistics(const T* x, const ops::NormShape& s) {
  const int64_t channels = s.channels;
  sums_.assign(static_cast<size_t>(channels + 1), 0.0);
  for (int64_t n = 0; n < s.batch; ++n)
    for (int64_t c = 0; c < channels; ++c) {
      const T* p = x + (n * channels + c) * s.inner;
      double sum = 0;
      for (int64_t i = 0; i < s.inner; ++i) sum += static_cast<double>(p[i]);
      sums_[static_cast<size_t>(c)] += sum;
    }
  sums_[static_cast<size_t>(channels)] = static_cast<double>(s.batch * s.inner);
  ranks_->sum(sums_.data(), channels + 1);
  global_count_ = std::llround(sums_[static_cast<size_t>(channels)]);
  const double count = static_cast<double>(global_count_);
  for (int64_t c = 0; c < channels; ++c)
    batch_mean_[static_cast<size_t>(c)] = static_cast<T>(sums_[static_cast<size_t>(c)] / count);
  std::fill(sums_.begin(), sums_.end(), 0.0);
  for (int64_t n = 0; n < s.batch; ++n)
    for (int64_t c = 0; c < channels; ++c) {
      const T* p = x + (n * channels + c) * s.inner;
      const T m = batch_mean_[static_cast<size_t>(c)];
      double squares = 0;
      for (int64_t i = 0; i < s.inner; ++i) squares += static_cast<double>((p[i] - m) * (p[i] - m));
      sums_[static_cast<size_t>(c)] += squares;
    }
  ranks_->sum(sums_.data(), channels);
  for (int64_t c = 0; c < channels; ++c)
    batch_var_[static_cast<size_t>(c)] = static_cast<T>(sums_[static_cast<size_t>(c)] / count);
}

// The backward of the synchronised statistics: dx takes the global means of dy and dy (x -
// mean), as batchnorm_backward with count = the global batch's; dgamma and dbeta the global
// sums (on rank 0 only: the gradient exchange that follows adds the ranks up).
template <typename T>
void BatchNorm<T>::synchronised_backward(T* dx, const T* dy, const T* x, const ops::NormShape& s) {
  const int64_t channels = s.channels;
  const size_t k = static_cast<size_t>(channels);
  sums_.assign(2 * k, 0.0);  // [sum dy | sum dy (x - mean)]
  for (int64_t n = 0; n < s.batch; ++n)
    for (int64_t c = 0; c < channels; ++c) {
      const int64_t offset = (n * channels + c) * s.inner;
      const T m = batch_mean_[static_cast<size_t>(c)];
      double a = 0, b = 0;
      for (int64_t i = 0; i < s.inner; ++i) {
        a += static_cast<double>(dy[offset + i]);
        b += static_cast<double>(dy[offset + i] * (x[offset + i] - m));
      }
      sums_[static_cast<size_t>(c)] += a;
      sums_[k + static_cast<size_t>(c)] += b;
    }
  ranks_->sum(sums_.data(), static_cast<int64_t>(2 * k));
  const T eps = static_cast<T>(eps_);
  if (affine_ && ranks_->rank() == 0) {
    // dgamma and dbeta are the global sums, rounded to T once, as in one process: rank 0 adds
    // them, the others nothing, and the gradient exchange adds up the ranks (rather than each
    // rank's share rounded on its own, then summed in T).
    for (int64_t c = 0; c < channels; ++c) {
      const size_t i = static_cast<size_t>(c);
      const T invstd = T(1) / std::sqrt(batch_var_[i] + eps);
      this->gradient_data(0)[c] += static_cast<T>(sums_[k + i] * static_cast<double>(invstd));
      this->gradient_data(1)[c] += static_cast<T>(sums_[i]);
    }
  }
  if (dx == nullptr) return;
  const double count = static_cast<double>(global_count_);
  for (int64_t c = 0; c < channels; ++c) {
    const size_t i = static_cast<size_t>(c);
    const T invstd = T(1) / std::sqrt(batch_var_[i] + eps);
    const T scale = (affine_ ? this->value_data(0)[c] : T(1)) * invstd;
    const T m = batch_mean_[i];
    const T mean_dy = static_cast<T>(sums_[i] / count);
    const T a = scale * static_cast<T>(sums_[k + i] / count) * invstd * invstd;
    for (int64_t n = 0; n < s.batch; ++n) {
      const int64_t offset = (n * channels + c) * s.inner;
      for (int64_t j = 0; j < s.inner; ++j)
        dx[offset + j] = (dy[offset + j] - mean_dy) * scale - (x[offset + j] - m) * a;
    }
  }
}

template class BatchNorm<float>;
template class BatchNorm<double>;

}  // namespace cnn

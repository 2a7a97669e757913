#pragma once
// Parameter initialisation. Every scheme draws from an explicit cnn::Rng, so a seed fixes
// every number.

#include <cstdint>
#include <string>

#include "cnn/rng.hpp"

namespace cnn {

enum class Init {
  /// PyTorch's default for Conv2d and Linear: weights and biases uniform in
  /// [-1/sqrt(fan_in), 1/sqrt(fan_in)] (kaiming_uniform_ with a = sqrt(5)).
  kPyTorchDefault,
  /// He / Kaiming normal (fan_in, ReLU gain): weights N(0, 2 / fan_in), biases 0.
  kHeNormal,
  /// He / Kaiming uniform: weights U(+-sqrt(6 / fan_in)), biases 0.
  kHeUniform,
  /// Xavier / Glorot uniform: weights U(+-sqrt(6 / (fan_in + fan_out))), biases 0.
  kXavierUniform,
  /// Xavier / Glorot normal: weights N(0, 2 / (fan_in + fan_out)), biases 0.
  kXavierNormal,
};

/// "pytorch", "he_normal", "he_uniform", "xavier_uniform", "xavier_normal".
std::string to_string(Init init);
/// Inverse of to_string; throws cnn::Error naming the accepted names.
Init init_from_string(const std::string& name);

/// Fills n weights of a layer with the given fans. T is float or double.
template <typename T>
void init_weights(T* w, int64_t n, int64_t fan_in, int64_t fan_out, Rng& rng, Init init);
/// Fills n biases of a layer with the given fan_in (non-zero only for kPyTorchDefault).
template <typename T>
void init_bias(T* b, int64_t n, int64_t fan_in, Rng& rng, Init init);

}  // namespace cnn

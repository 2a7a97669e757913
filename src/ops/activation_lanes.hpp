#pragma once
// tanh and the sigmoid in float, one set of loops per instruction set
// (activation_lanes_avx512.cpp, activation_lanes_avx2.cpp, activation_lanes_portable.cpp share
// activation_lanes_kernels.inc): straight-line arithmetic the compiler vectorises with each
// unit's vectors, the same bits on every instruction set.

#include <cstdint>

namespace cnn::detail {

struct FloatActivationKernels {
  /// y[k] = tanh(x[k]) for k in [0, n), within 1.51 ulp; y and x do not overlap.
  void (*tanh)(float* y, const float* x, int64_t n);
  /// y[k] = 1 / (1 + e^-x[k]) for k in [0, n), within 2.41 ulp; y and x do not overlap.
  void (*sigmoid)(float* y, const float* x, int64_t n);
};

/// The loops of the instruction set in use (cnn::ops::isa()).
const FloatActivationKernels& float_activation_kernels();

const FloatActivationKernels& float_activations_avx512();
const FloatActivationKernels& float_activations_avx2();
const FloatActivationKernels& float_activations_portable();

}  // namespace cnn::detail

// The float tanh and sigmoid loops (activation_lanes.hpp) for AVX2: 8 lanes. Compiled with
// -mavx2; only called when the CPU has it. No multiply-add contraction (CMakeLists.txt): the
// same bits as the other instruction sets.

#include <algorithm>
#include <bit>
#include <cstdint>

#include "activation_lanes.hpp"

namespace cnn::detail {
namespace {

#include "activation_lanes_kernels.inc"

}  // namespace

const FloatActivationKernels& float_activations_avx2() {
  return kKernels;
}

}  // namespace cnn::detail

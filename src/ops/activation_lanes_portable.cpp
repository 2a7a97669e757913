// The float tanh and sigmoid loops (activation_lanes.hpp) for the x86-64 baseline (SSE2): 4 lanes.
// No multiply-add contraction (CMakeLists.txt): the same bits as the other instruction sets.

#include <algorithm>
#include <bit>
#include <cstdint>

#include "activation_lanes.hpp"

namespace cnn::detail {
namespace {

#include "activation_lanes_kernels.inc"

}  // namespace

const FloatActivationKernels& float_activations_portable() {
  return kKernels;
}

}  // namespace cnn::detail

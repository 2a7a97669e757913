// Max pooling's plane kernels (maxpool_lanes.hpp) for the x86-64 baseline (SSE2): 4 planes a
// vector.

#include <cstdint>

#include "maxpool_lanes.hpp"

namespace cnn::detail {
namespace {

constexpr int kLanes = 4;

#include "maxpool_kernels.inc"

}  // namespace

const MaxPoolKernels& maxpool_portable() {
  return kKernels;
}

}  // namespace cnn::detail

// Max pooling's plane kernels (maxpool_lanes.hpp) for the x86-64 baseline (SSE2): 4 planes a
// vector.

#include <cstdint>

#include "maxpool_lanes.hpp"

namespace cnn::detail {
namespace {

constexpr int kLanes = 4;

// Groups of fewer planes run the row kernel plane by plane where a row fills a vector (measured:
// maxpool_windows in pool.cpp).
constexpr int64_t kRowPlanes = 3;

#include "maxpool_kernels.inc"

}  // namespace

const MaxPoolKernels& maxpool_portable() {
  return kKernels;
}

}  // namespace cnn::detail

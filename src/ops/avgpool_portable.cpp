// Average pooling's window kernels (avgpool_lanes.hpp) for the x86-64 baseline (SSE2): 4
// windows a vector, a row's edges loaded and stored lane by lane.

#include <cstdint>
#include <cstring>

#include "avgpool_lanes.hpp"

namespace cnn::detail {
namespace {

constexpr int64_t kLanes = 4;

#include "avgpool_kernels.inc"

}  // namespace

const AvgPoolKernels& avgpool_portable() {
  return kKernels;
}

}  // namespace cnn::detail

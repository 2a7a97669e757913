// Winograd F(2x2, 3x3) and F(4x4, 3x3) data transforms (winograd_lanes.hpp) for the x86-64 baseline
// (SSE2): 4 lanes. No multiply-add contraction (CMakeLists.txt): the same bits as the other
// instruction sets.

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <utility>

#include "winograd_lanes.hpp"

namespace cnn::detail {
namespace {

constexpr int64_t kLanes = 4;

#include "winograd_lanes_kernels.inc"

}  // namespace

const WinogradLaneKernels& winograd_lanes_portable() {
  return kKernels;
}

}  // namespace cnn::detail

// Winograd F(4x4, 3x3) data transforms (wino4.hpp) for the x86-64 baseline (SSE2): 4 lanes.
// No multiply-add contraction (CMakeLists.txt): the same bits as the other instruction sets.

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <utility>

#include "wino4.hpp"

namespace cnn::detail {
namespace {

constexpr int64_t kLanes = 4;

#include "wino4_kernels.inc"

}  // namespace

const Winograd4Kernels& winograd4_portable() {
  return kKernels;
}

}  // namespace cnn::detail

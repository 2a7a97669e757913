// Winograd F(2x2, 3x3) and F(4x4, 3x3) data transforms (winograd_lanes.hpp) for AVX2: 8 lanes.
// Compiled with -mavx2; only called when the CPU has it. No multiply-add contraction
// (CMakeLists.txt): the same bits as the other instruction sets.

#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <utility>

#include "winograd_lanes.hpp"

namespace cnn::detail {
namespace {

constexpr int64_t kLanes = 8;

#include "winograd_lanes_kernels.inc"

}  // namespace

const WinogradLaneKernels& winograd_lanes_avx2() {
  return kKernels;
}

}  // namespace cnn::detail

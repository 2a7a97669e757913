// Winograd F(4x4, 3x3) data transforms (wino4.hpp) for AVX2: 8 lanes. Compiled with -mavx2; only
// called when the CPU has it. No multiply-add contraction (CMakeLists.txt): the same bits as the
// other instruction sets.

#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <utility>

#include "wino4.hpp"

namespace cnn::detail {
namespace {

constexpr int64_t kLanes = 8;

#include "wino4_kernels.inc"

}  // namespace

const Winograd4Kernels& winograd4_avx2() {
  return kKernels;
}

}  // namespace cnn::detail

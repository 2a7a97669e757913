// Winograd F(4x4, 3x3) data transforms (wino4.hpp) for AVX-512F: 16 lanes, 32 zmm registers for a
// tile's 36 values and their temporaries. Compiled with -mavx512f; only called when the CPU has it.
// No multiply-add contraction (CMakeLists.txt): the same bits as the other instruction sets.

#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <utility>

#include "wino4.hpp"

namespace cnn::detail {
namespace {

constexpr int64_t kLanes = 16;

#include "wino4_kernels.inc"

}  // namespace

const Winograd4Kernels& winograd4_avx512() {
  return kKernels;
}

}  // namespace cnn::detail

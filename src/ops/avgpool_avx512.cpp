// Average pooling's window kernels (avgpool_lanes.hpp) for AVX-512F: 16 windows a vector, masked
// loads and stores at a row's edges. Compiled with -mavx512f; only called when the CPU has it.

#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "avgpool_lanes.hpp"

namespace cnn::detail {
namespace {

constexpr int64_t kLanes = 16;

#include "avgpool_kernels.inc"

}  // namespace

const AvgPoolKernels& avgpool_avx512() {
  return kKernels;
}

}  // namespace cnn::detail

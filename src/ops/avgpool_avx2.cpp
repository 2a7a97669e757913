// Average pooling's window kernels (avgpool_lanes.hpp) for AVX2: 8 windows a vector, masked
// loads and stores (vmaskmovps) at a row's edges. Compiled with -mavx2; only called when the
// CPU has it.

#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "avgpool_lanes.hpp"

namespace cnn::detail {
namespace {

constexpr int64_t kLanes = 8;

#include "avgpool_kernels.inc"

}  // namespace

const AvgPoolKernels& avgpool_avx2() {
  return kKernels;
}

}  // namespace cnn::detail

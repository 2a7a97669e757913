// Max pooling's plane kernels (maxpool_lanes.hpp) for AVX2: 8 planes a vector. Compiled with
// -mavx2; only called when the CPU has it (the AVX-512 path takes them too: on Zen 4 a 512-bit
// compare runs as two 256-bit halves, and 16 planes a group would leave more lanes idle).

#include <cstdint>

#include "maxpool_lanes.hpp"

namespace cnn::detail {
namespace {

constexpr int kLanes = 8;

// Groups of fewer planes run the row kernel plane by plane where a row fills a vector (measured:
// maxpool_windows in pool.cpp).
constexpr int64_t kRowPlanes = 4;

#include "maxpool_kernels.inc"

}  // namespace

const MaxPoolKernels& maxpool_avx2() {
  return kKernels;
}

}  // namespace cnn::detail

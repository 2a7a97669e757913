// Direct convolution kernels (dconv.hpp) for AVX2 + FMA: 16 ymm registers hold tiles of up to
// 12 accumulators. Compiled with -mavx2 -mfma; only called when the CPU has both.

#include <immintrin.h>

#include <cstdint>
#include <type_traits>

#include "dconv.hpp"

namespace cnn::detail {
namespace {

using vec = __m256;
constexpr int64_t kLanes = 8;
inline vec load(const float* p) {
  return _mm256_loadu_ps(p);
}
inline void store(float* p, vec v) {
  _mm256_storeu_ps(p, v);
}
inline vec broadcast(float x) {
  return _mm256_set1_ps(x);
}
inline vec fmadd(vec a, vec b, vec c) {
  return _mm256_fmadd_ps(a, b, c);
}
constexpr DirectTile kForwardTiles[3] = {{8, 1}, {6, 2}, {4, 2}};
constexpr DirectTile kWeightGradTiles[2] = {{2, 4}, {3, 3}};

// Implicit GEMM: 6 rows x 2 or 1 vectors of columns (12 accumulators, 2 B vectors, 1 row).
constexpr int kGatherVectors[2] = {2, 1};

#include "dconv_kernels.inc"

}  // namespace

const DirectConvKernels& direct_conv_avx2() {
  return kKernels;
}

}  // namespace cnn::detail

// Direct convolution kernels (dconv.hpp) for AVX-512F + FMA: 32 zmm registers hold tiles of
// up to 24 accumulators. Compiled with -mavx512f -mfma; only called when the CPU has both.

#include <immintrin.h>

#include <cstdint>
#include <type_traits>

#include "dconv.hpp"

namespace cnn::detail {
namespace {

using vec = __m512;
constexpr int64_t kLanes = 16;
inline vec load(const float* p) {
  return _mm512_loadu_ps(p);
}
inline void store(float* p, vec v) {
  _mm512_storeu_ps(p, v);
}
inline vec broadcast(float x) {
  return _mm512_set1_ps(x);
}
inline vec fmadd(vec a, vec b, vec c) {
  return _mm512_fmadd_ps(a, b, c);
}
// Forward: 8 x 3, 6 x 4 or 4 x 5 accumulators plus the position vectors and one weight.
constexpr DirectTile kForwardTiles[3] = {{8, 3}, {6, 4}, {4, 5}};
// Weight gradient: 4 x 5 or 6 x 4 accumulators plus one input vector per tap and one dy.
constexpr DirectTile kWeightGradTiles[2] = {{4, 5}, {6, 4}};

// Implicit GEMM: 6 rows x 4, 2 or 1 vectors of columns (24 accumulators at most).
constexpr int kGatherVectors[3] = {4, 2, 1};

#include "dconv_kernels.inc"

}  // namespace

const DirectConvKernels& direct_conv_avx512() {
  return kKernels;
}

}  // namespace cnn::detail

// Direct convolution kernels (dconv.hpp) in portable C++: GCC vector extensions of 4 floats,
// which become SSE2 on the x86-64 baseline (and NEON elsewhere). Multiply then add: the
// baseline has no fused multiply-add.

#include <cstdint>
#include <cstring>
#include <type_traits>

#include "dconv.hpp"

namespace cnn::detail {
namespace {

typedef float vec __attribute__((vector_size(16)));
constexpr int64_t kLanes = 4;
inline vec load(const float* p) {
  vec v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline void store(float* p, vec v) {
  std::memcpy(p, &v, sizeof v);
}
inline vec broadcast(float x) {
  return vec{x, x, x, x};
}
inline vec fmadd(vec a, vec b, vec c) {
  return a * b + c;
}
constexpr DirectTile kForwardTiles[3] = {{8, 1}, {6, 2}, {4, 2}};
constexpr DirectTile kWeightGradTiles[2] = {{2, 4}, {3, 3}};

// Implicit GEMM: 6 rows x 2 or 1 vectors of columns.
constexpr int kGatherVectors[2] = {2, 1};

#include "dconv_kernels.inc"

}  // namespace

const DirectConvKernels& direct_conv_portable() {
  return kKernels;
}

}  // namespace cnn::detail

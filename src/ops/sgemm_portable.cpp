// Portable SGEMM: a 4 x 16 micro-kernel in plain C++, which the compiler vectorises for the
// x86-64 baseline (SSE2). The fallback on CPUs without AVX2, and forced by CNN_ISA=portable.

#include <cstdint>

#include "sgemm.hpp"

namespace cnn::detail {
namespace {

constexpr int64_t MR = 4;
constexpr int64_t NR = 16;

void micro_kernel(int64_t kc, const float* a, const float* b, float* c, int64_t ldc,
                  bool accumulate) {
  float acc[MR][NR] = {};
  for (int64_t p = 0; p < kc; ++p) {
    for (int64_t r = 0; r < MR; ++r) {
      const float ar = a[r];
      for (int64_t j = 0; j < NR; ++j) acc[r][j] += ar * b[j];
    }
    a += MR;
    b += NR;
  }
  for (int64_t r = 0; r < MR; ++r)
    for (int64_t j = 0; j < NR; ++j)
      c[r * ldc + j] = accumulate ? c[r * ldc + j] + acc[r][j] : acc[r][j];
}

#include "sgemm_driver.inc"

}  // namespace

void sgemm_portable(const SgemmArgs& args) {
  run_sgemm(args);
}

}  // namespace cnn::detail

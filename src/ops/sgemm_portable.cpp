// Portable SGEMM: a 4 x 16 micro-kernel in plain C++, which the compiler vectorises for the
// x86-64 baseline (SSE2). The fallback on CPUs without AVX2, and forced by CNN_ISA=portable.

#include <cstdint>

#include "sgemm.hpp"

namespace cnn::detail {
namespace {

constexpr int64_t MR = kMrPortable;
constexpr int64_t NR = 16;

void micro_kernel(int64_t kc, const float* a, const float* b, int64_t ldb, float* c, int64_t ldc,
                  bool accumulate) {
  float acc[MR][NR] = {};
  for (int64_t p = 0; p < kc; ++p) {
    for (int64_t r = 0; r < MR; ++r) {
      const float ar = a[r];
      for (int64_t j = 0; j < NR; ++j) acc[r][j] += ar * b[j];
    }
    a += MR;
    b += ldb;
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
int64_t sgemm_portable_packed_a_size(int64_t m, int64_t k) {
  return packed_a_size(m, k);
}
void sgemm_portable_pack_a(const SgemmArgs& args, float* dest) {
  pack_all_a(args, dest);
}

double fma_loop_portable(int64_t iterations) {
  // 12 groups of 4 lanes: the compiler turns each group into one SSE multiply and add.
  float acc[12][4];
  for (int i = 0; i < 12; ++i)
    for (int j = 0; j < 4; ++j) acc[i][j] = float(i + j);
  for (int64_t it = 0; it < iterations; ++it)
    for (int i = 0; i < 12; ++i)
      for (int j = 0; j < 4; ++j) acc[i][j] = acc[i][j] * 0.999999f + 1e-7f;
  float sum = 0;
  for (int i = 0; i < 12; ++i)
    for (int j = 0; j < 4; ++j) sum += acc[i][j];
  volatile float sink = sum;  // keeps the loop from being optimised away
  (void)sink;
  return double(iterations) * 12 * 4 * 2;
}

}  // namespace cnn::detail

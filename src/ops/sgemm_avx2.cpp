// AVX2 SGEMM: a 6 x 16 micro-kernel keeps 12 ymm accumulators (6 rows x 2 vectors of 8).
// Compiled with -mavx2 -mfma; only called when the CPU has both (isa.cpp).

#include <immintrin.h>

#include <cstdint>

#include "sgemm.hpp"

namespace cnn::detail {
namespace {

constexpr int64_t MR = kMrAvx2;
constexpr int64_t NR = 16;

void micro_kernel(int64_t kc, const float* a, const float* b, int64_t ldb, float* c, int64_t ldc,
                  bool accumulate) {
  __m256 lo[MR], hi[MR];
#pragma GCC unroll 6
  for (int r = 0; r < MR; ++r) lo[r] = hi[r] = _mm256_setzero_ps();
  for (int64_t p = 0; p < kc; ++p) {
    const __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8);
#pragma GCC unroll 6
    for (int r = 0; r < MR; ++r) {
      const __m256 ar = _mm256_broadcast_ss(a + r);
      lo[r] = _mm256_fmadd_ps(ar, b0, lo[r]);
      hi[r] = _mm256_fmadd_ps(ar, b1, hi[r]);
    }
    a += MR;
    b += ldb;
  }
#pragma GCC unroll 6
  for (int r = 0; r < MR; ++r) {
    float* row = c + r * ldc;
    if (accumulate) {
      lo[r] = _mm256_add_ps(_mm256_loadu_ps(row), lo[r]);
      hi[r] = _mm256_add_ps(_mm256_loadu_ps(row + 8), hi[r]);
    }
    _mm256_storeu_ps(row, lo[r]);
    _mm256_storeu_ps(row + 8, hi[r]);
  }
}

#include "sgemm_driver.inc"

}  // namespace

void sgemm_avx2(const SgemmArgs& args) {
  run_sgemm(args);
}
int64_t sgemm_avx2_packed_a_size(int64_t m, int64_t k) {
  return packed_a_size(m, k);
}
void sgemm_avx2_pack_a(const SgemmArgs& args, float* dest) {
  pack_all_a(args, dest);
}

double fma_loop_avx2(int64_t iterations) {
  // 12 independent accumulators hide the FMA latency (4 cycles on 2 ports: 8 in flight).
  __m256 acc[12];
  const __m256 x = _mm256_set1_ps(0.999999f), y = _mm256_set1_ps(1e-7f);
#pragma GCC unroll 12
  for (int i = 0; i < 12; ++i) acc[i] = _mm256_set1_ps(float(i));
  for (int64_t it = 0; it < iterations; ++it) {
#pragma GCC unroll 12
    for (int i = 0; i < 12; ++i) acc[i] = _mm256_fmadd_ps(acc[i], x, y);
  }
  __m256 sum = acc[0];
  for (int i = 1; i < 12; ++i) sum = _mm256_fmadd_ps(sum, _mm256_set1_ps(1.0f), acc[i]);
  alignas(64) float out[8];
  _mm256_store_ps(out, sum);
  volatile float sink = out[0];  // keeps the loop from being optimised away
  (void)sink;
  return double(iterations) * 12 * 8 * 2;
}

}  // namespace cnn::detail

// AVX-512 SGEMM: a 12 x 32 micro-kernel keeps 24 zmm accumulators (12 rows x 2 vectors of 16),
// loads two B vectors and broadcasts 12 A values per k: 24 FMAs per 14 loads. Compiled with
// -mavx512f -mfma; only called when the CPU has both (isa.cpp).

#include <immintrin.h>

#include <cstdint>

#include "sgemm.hpp"

namespace cnn::detail {
namespace {

constexpr int64_t MR = 12;
constexpr int64_t NR = 32;

void micro_kernel(int64_t kc, const float* a, const float* b, float* c, int64_t ldc,
                  bool accumulate) {
  __m512 lo[MR], hi[MR];
#pragma GCC unroll 12
  for (int r = 0; r < MR; ++r) lo[r] = hi[r] = _mm512_setzero_ps();
  for (int64_t p = 0; p < kc; ++p) {
    const __m512 b0 = _mm512_loadu_ps(b), b1 = _mm512_loadu_ps(b + 16);
#pragma GCC unroll 12
    for (int r = 0; r < MR; ++r) {
      const __m512 ar = _mm512_set1_ps(a[r]);
      lo[r] = _mm512_fmadd_ps(ar, b0, lo[r]);
      hi[r] = _mm512_fmadd_ps(ar, b1, hi[r]);
    }
    a += MR;
    b += NR;
  }
#pragma GCC unroll 12
  for (int r = 0; r < MR; ++r) {
    float* row = c + r * ldc;
    if (accumulate) {
      lo[r] = _mm512_add_ps(_mm512_loadu_ps(row), lo[r]);
      hi[r] = _mm512_add_ps(_mm512_loadu_ps(row + 16), hi[r]);
    }
    _mm512_storeu_ps(row, lo[r]);
    _mm512_storeu_ps(row + 16, hi[r]);
  }
}

#include "sgemm_driver.inc"

}  // namespace

void sgemm_avx512(const SgemmArgs& args) {
  run_sgemm(args);
}

double fma_loop_avx512(int64_t iterations) {
  // 12 independent accumulators hide the FMA latency (4 cycles on 2 ports: 8 in flight).
  __m512 acc[12];
  const __m512 x = _mm512_set1_ps(0.999999f), y = _mm512_set1_ps(1e-7f);
#pragma GCC unroll 12
  for (int i = 0; i < 12; ++i) acc[i] = _mm512_set1_ps(float(i));
  for (int64_t it = 0; it < iterations; ++it) {
#pragma GCC unroll 12
    for (int i = 0; i < 12; ++i) acc[i] = _mm512_fmadd_ps(acc[i], x, y);
  }
  __m512 sum = acc[0];
  for (int i = 1; i < 12; ++i) sum = _mm512_fmadd_ps(sum, _mm512_set1_ps(1.0f), acc[i]);
  alignas(64) float out[16];
  _mm512_store_ps(out, sum);
  volatile float sink = out[0];  // keeps the loop from being optimised away
  (void)sink;
  return double(iterations) * 12 * 16 * 2;
}

}  // namespace cnn::detail

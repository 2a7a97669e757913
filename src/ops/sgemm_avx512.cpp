// AVX-512 SGEMM: a 16 x 16 micro-kernel keeps 16 zmm accumulators (16 rows x 1 vector),
// loads one B vector and broadcasts 16 A values per k. 16 rows rather than the classic 12 x 32:
// channel counts (16, 32, 64, ...) and batch sizes are multiples of 16, so tiles are full, and
// this CPU retires one 512-bit FMA per cycle, which 17 loads per 16 FMAs keep fed. Compiled
// with -mavx512f -mfma; only called when the CPU has both (isa.cpp).

#include <immintrin.h>

#include <cstdint>

#include "sgemm.hpp"

namespace cnn::detail {
namespace {

constexpr int64_t MR = kMrAvx512;
constexpr int64_t NR = 16;

void micro_kernel(int64_t kc, const float* a, const float* b, int64_t ldb, float* c, int64_t ldc,
                  bool accumulate) {
  __m512 acc[MR];
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r) acc[r] = _mm512_setzero_ps();
  for (int64_t p = 0; p < kc; ++p) {
    const __m512 bp = _mm512_loadu_ps(b);
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r) acc[r] = _mm512_fmadd_ps(_mm512_set1_ps(a[r]), bp, acc[r]);
    a += MR;
    b += ldb;
  }
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r) {
    float* row = c + r * ldc;
    if (accumulate) acc[r] = _mm512_add_ps(_mm512_loadu_ps(row), acc[r]);
    _mm512_storeu_ps(row, acc[r]);
  }
}

#include "sgemm_driver.inc"

}  // namespace

void sgemm_avx512(const SgemmArgs& args) {
  run_sgemm(args);
}
int64_t sgemm_avx512_packed_a_size(int64_t m, int64_t k) {
  return packed_a_size(m, k);
}
void sgemm_avx512_pack_a(const SgemmArgs& args, float* dest) {
  pack_all_a(args, dest);
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

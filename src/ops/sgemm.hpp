#pragma once
// Packed single-precision GEMM, one micro-kernel per instruction set, each in its own
// translation unit compiled for that instruction set (sgemm_avx512.cpp, sgemm_avx2.cpp,
// sgemm_portable.cpp). Those files define everything they use in an anonymous namespace and
// use no shared inline templates, so that no AVX-512 code can leak into the rest of the binary
// through the linker's choice among identical inline functions: the binary runs on any x86-64
// and picks its kernel at run time (isa.cpp).
//
// C (m x n) = [C +] A (m x k) * B (k x n) with A(i, p) = a[i * a_rs + p * a_cs] and
// B(p, j) = b[p * b_rs + j * b_cs]: the strides express transposed operands, which the packing
// absorbs. The caller provides the packing buffers (sizes below).

#include <cstdint>

namespace cnn::detail {

/// Blocking shared by every kernel: K in blocks of kKc, M of kMc, N of kNc.
inline constexpr int64_t kKc = 256;
inline constexpr int64_t kMc = 96;  // a multiple of every kernel's MR (4, 6, 16)
/// Each kernel's rows of A per micro-tile (MR), which its packing of A is laid out by.
inline constexpr int64_t kMrAvx512 = 16, kMrAvx2 = 6, kMrPortable = 4;
inline constexpr int64_t kNc = 2048;  // a multiple of every kernel's NR (16, 32)
/// Floats needed by the packing buffers.
inline constexpr int64_t kPackA = kMc * kKc;
inline constexpr int64_t kPackB = kNc * kKc;

struct SgemmArgs {
  int64_t m, n, k;
  const float* a;
  int64_t a_rs, a_cs;
  const float* b;
  int64_t b_rs, b_cs;
  float* c;
  int64_t ldc;
  bool accumulate;
  float* pack_a;  // kPackA floats
  float* pack_b;  // kPackB floats
  // Optional: A already packed whole by sgemm_<isa>_pack_a (then pack_a is unused), so that a
  // product repeated with the same A (a convolution's weights, image after image) packs it once.
  const float* packed_a = nullptr;
  // Optional, for the packing of A only (sgemm_<isa>_pack_a): row i of A multiplied by
  // a_row_scale[i] as it is packed.
  const float* a_row_scale = nullptr;
};

void sgemm_avx512(const SgemmArgs& args);  // 16 x 16 micro-kernel, AVX-512F + FMA
/// Floats needed to pack an m x k A whole for each kernel, and the packing itself (the a and
/// stride fields of args, with args.m and args.k, describe A).
int64_t sgemm_avx512_packed_a_size(int64_t m, int64_t k);
int64_t sgemm_avx2_packed_a_size(int64_t m, int64_t k);
int64_t sgemm_portable_packed_a_size(int64_t m, int64_t k);
void sgemm_avx512_pack_a(const SgemmArgs& args, float* dest);
void sgemm_avx2_pack_a(const SgemmArgs& args, float* dest);
void sgemm_portable_pack_a(const SgemmArgs& args, float* dest);
void sgemm_avx2(const SgemmArgs& args);      // 6 x 16 micro-kernel, AVX2 + FMA
void sgemm_portable(const SgemmArgs& args);  // 4 x 16 micro-kernel, plain C++ (SSE2 baseline)

/// Runs `iterations` rounds of independent FMAs on one thread and returns the FLOPs done.
double fma_loop_avx512(int64_t iterations);
double fma_loop_avx2(int64_t iterations);
double fma_loop_portable(int64_t iterations);

}  // namespace cnn::detail

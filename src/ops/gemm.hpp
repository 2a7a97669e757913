#pragma once
// Row-major matrix products for the default path. float runs the packed micro-kernels of
// sgemm.hpp for the instruction set in use; double (gradient checks only) runs plain loops.

#include <cstdint>

namespace cnn::detail {

/// C (M x N) = [C +] A (M x K) * B (K x N). Leading dimensions in elements.
template <typename T>
void gemm_nn(int64_t m, int64_t n, int64_t k, const T* a, int64_t lda, const T* b, int64_t ldb,
             T* c, int64_t ldc, bool accumulate);
/// C (M x N) = [C +] A (M x K) * B^T, with B stored (N x K).
template <typename T>
void gemm_nt(int64_t m, int64_t n, int64_t k, const T* a, int64_t lda, const T* b, int64_t ldb,
             T* c, int64_t ldc, bool accumulate);
/// C (M x N) = [C +] A^T * B, with A stored (K x M) and B (K x N).
template <typename T>
void gemm_tn(int64_t m, int64_t n, int64_t k, const T* a, int64_t lda, const T* b, int64_t ldb,
             T* c, int64_t ldc, bool accumulate);

}  // namespace cnn::detail

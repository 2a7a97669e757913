#pragma once
// Row-major matrix products for the default path. float runs the packed micro-kernels of
// sgemm.hpp for the instruction set in use; double (gradient checks only) runs plain loops.

#include <algorithm>
#include <cstdint>
#include <vector>

#include "sgemm.hpp"

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

/// Packs A (M x K, element (i, p) at a[i * a_rs + p * a_cs]: a_cs = 1 for a row-major A,
/// a_rs = 1 for a transposed one) once for the instruction set in use, for
/// sgemm_nn_prepacked: a convolution multiplies the same weights with every image's columns.
/// `packed` grows as needed and never shrinks (no allocation once it is large enough). row_scale
/// (M) may be null; when given, row i is packed as A(i, p) * row_scale[i] (one rounded
/// multiplication).
void sgemm_pack_a(int64_t m, int64_t k, const float* a, int64_t a_rs, int64_t a_cs,
                  std::vector<float>& packed, const float* row_scale = nullptr);
/// dest (rows x row_size) = src with row r times scale[r], one rounded multiplication each:
/// what sgemm_pack_a's row_scale packs, as a plain copy (for paths that cannot scale as they
/// pack).
template <typename T>
void scale_rows(T* dest, const T* src, const T* scale, int64_t rows, int64_t row_size) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t k = 0; k < row_size; ++k)
      dest[r * row_size + k] = src[r * row_size + k] * scale[r];
}
/// Where sgemm_pack_a puts element (i, p) of an m x k A on the instruction set in use, for code
/// that writes packed A itself (Winograd's weight transforms): K blocks of kKc columns one after
/// the other (rounded_m x kc floats each), a block's rows in panels of mr, a panel's columns
/// one after the other (mr floats each); rows past m are zero.
struct PackedALayout {
  int64_t m = 0, k = 0, mr = 1, rounded_m = 0;
  int64_t size() const { return rounded_m * k; }
  int64_t offset(int64_t i, int64_t p) const {
    const int64_t pc = p / kKc * kKc, kc = std::min(kKc, k - pc);
    return pc * rounded_m + (i / mr) * kc * mr + (p - pc) * mr + i % mr;
  }
};
PackedALayout sgemm_packed_a_layout(int64_t m, int64_t k);

/// C (M x N) = [C +] A * B (K x N) with A from sgemm_pack_a_nn (same m, k and instruction set).
void sgemm_nn_prepacked(int64_t m, int64_t n, int64_t k, const float* packed_a, const float* b,
                        int64_t ldb, float* c, int64_t ldc, bool accumulate);

}  // namespace cnn::detail

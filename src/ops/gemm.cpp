#include "gemm.hpp"

#include <omp.h>

#include <algorithm>

#include "cnn/ops.hpp"
#include "parallel.hpp"
#include "scratch.hpp"
#include "sgemm.hpp"

namespace cnn::detail {

namespace {
/// C (M x N) = [C +] A * B (K x N), where A's element (i, p) is a[i * row_step + p * col_step]:
/// one loop nest serves A stored as is (gemm_nn) and transposed (gemm_tn).
template <typename T>
void gemm_strided_a(int64_t m, int64_t n, int64_t k, const T* a, int64_t row_step, int64_t col_step,
                    const T* b, int64_t ldb, T* c, int64_t ldc, bool accumulate) {
  for (int64_t i = 0; i < m; ++i) {
    T* __restrict ci = c + i * ldc;
    if (!accumulate) std::fill(ci, ci + n, T(0));
    for (int64_t p = 0; p < k; ++p) {
      const T aip = a[i * row_step + p * col_step];
      const T* __restrict bp = b + p * ldb;
      for (int64_t j = 0; j < n; ++j) ci[j] += aip * bp[j];
    }
  }
}
}  // namespace

template <typename T>
void gemm_nn(int64_t m, int64_t n, int64_t k, const T* a, int64_t lda, const T* b, int64_t ldb,
             T* c, int64_t ldc, bool accumulate) {
  gemm_strided_a(m, n, k, a, lda, 1, b, ldb, c, ldc, accumulate);
}

template <typename T>
void gemm_tn(int64_t m, int64_t n, int64_t k, const T* a, int64_t lda, const T* b, int64_t ldb,
             T* c, int64_t ldc, bool accumulate) {
  gemm_strided_a(m, n, k, a, 1, lda, b, ldb, c, ldc, accumulate);
}

template <typename T>
void gemm_nt(int64_t m, int64_t n, int64_t k, const T* a, int64_t lda, const T* b, int64_t ldb,
             T* c, int64_t ldc, bool accumulate) {
  // Transpose B once into (K x N) so that the inner loop is contiguous, then reuse gemm_nn.
  T* bt = scratch<T>(3, n * k);
  for (int64_t j = 0; j < n; ++j)
    for (int64_t p = 0; p < k; ++p) bt[p * n + j] = b[j * ldb + p];
  gemm_nn(m, n, k, a, lda, bt, n, c, ldc, accumulate);
}

// float: the packed kernels of sgemm_<isa>.cpp, strides expressing the transposes.
namespace {
void sgemm_one_thread(const SgemmArgs& args) {
  switch (ops::isa()) {
    case ops::Isa::kAvx512:
      return sgemm_avx512(args);
    case ops::Isa::kAvx2:
      return sgemm_avx2(args);
    case ops::Isa::kPortable:
      return sgemm_portable(args);
  }
}

void sgemm(int64_t m, int64_t n, int64_t k, const float* a, int64_t a_rs, int64_t a_cs,
           const float* b, int64_t b_rs, int64_t b_cs, float* c, int64_t ldc, bool accumulate,
           const float* packed_a = nullptr) {
  // Outside a parallel region (a convolution already splits its images over threads), large
  // products split their columns over the threads, in blocks of 32 (every kernel's NR divides
  // it). Each element of C is still summed by one thread in the same order, so the result does
  // not depend on the thread count.
  constexpr int64_t kBlock = 32;
  const int64_t blocks = (n + kBlock - 1) / kBlock;
  const int team = static_cast<int>(std::min<int64_t>(ops::threads(), blocks));
  if (team > 1 && !omp_in_parallel() && m * n * k >= (int64_t{1} << 17)) {
    for_each_part(team, [&](int part) {
      const int64_t first = blocks * part / team * kBlock;
      const int64_t last = std::min(n, blocks * (part + 1) / team * kBlock);
      if (first < last) {
        sgemm_one_thread({m, last - first, k, a, a_rs, a_cs, b + first * b_cs, b_rs, b_cs,
                          c + first, ldc, accumulate, scratch<float>(2, kPackA),
                          scratch<float>(3, kPackB), packed_a});
      }
    });
    return;
  }
  sgemm_one_thread({m, n, k, a, a_rs, a_cs, b, b_rs, b_cs, c, ldc, accumulate,
                    scratch<float>(2, kPackA), scratch<float>(3, kPackB), packed_a});
}
}  // namespace

template <>
void gemm_nn<float>(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b,
                    int64_t ldb, float* c, int64_t ldc, bool accumulate) {
  sgemm(m, n, k, a, lda, 1, b, ldb, 1, c, ldc, accumulate);
}
template <>
void gemm_tn<float>(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b,
                    int64_t ldb, float* c, int64_t ldc, bool accumulate) {
  sgemm(m, n, k, a, 1, lda, b, ldb, 1, c, ldc, accumulate);
}
template <>
void gemm_nt<float>(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b,
                    int64_t ldb, float* c, int64_t ldc, bool accumulate) {
  sgemm(m, n, k, a, lda, 1, b, 1, ldb, c, ldc, accumulate);
}

void sgemm_pack_a(int64_t m, int64_t k, const float* a, int64_t a_rs, int64_t a_cs,
                  std::vector<float>& packed, const float* row_scale) {
  SgemmArgs args{m, 0, k, a, a_rs, a_cs, nullptr, 0, 0, nullptr, 0, false, nullptr, nullptr};
  args.a_row_scale = row_scale;
  // Grow only: one buffer serves layers of different sizes in turn (a convolution's packed
  // weights, Winograd's backward), and a resize down and up again zero-filled the growth every
  // time (3% of a batch-1 resnet forward).
  const auto fit = [&](int64_t size) {
    if (packed.size() < static_cast<size_t>(size)) packed.resize(static_cast<size_t>(size));
    return packed.data();
  };
  switch (ops::isa()) {
    case ops::Isa::kAvx512:
      return sgemm_avx512_pack_a(args, fit(sgemm_avx512_packed_a_size(m, k)));
    case ops::Isa::kAvx2:
      return sgemm_avx2_pack_a(args, fit(sgemm_avx2_packed_a_size(m, k)));
    case ops::Isa::kPortable:
      return sgemm_portable_pack_a(args, fit(sgemm_portable_packed_a_size(m, k)));
  }
}

PackedALayout sgemm_packed_a_layout(int64_t m, int64_t k) {
  PackedALayout layout;
  layout.m = m;
  layout.k = k;
  layout.mr = ops::isa() == ops::Isa::kAvx512 ? kMrAvx512
              : ops::isa() == ops::Isa::kAvx2 ? kMrAvx2
                                              : kMrPortable;
  layout.rounded_m = (m + layout.mr - 1) / layout.mr * layout.mr;
  return layout;
}

void sgemm_nn_prepacked(int64_t m, int64_t n, int64_t k, const float* packed_a, const float* b,
                        int64_t ldb, float* c, int64_t ldc, bool accumulate) {
  sgemm(m, n, k, nullptr, 0, 0, b, ldb, 1, c, ldc, accumulate, packed_a);
}

// double (the gradient checks): the plain loops above.
#define CNN_INSTANTIATE_GEMM(T)                                                                 \
  template void gemm_nn<T>(int64_t, int64_t, int64_t, const T*, int64_t, const T*, int64_t, T*, \
                           int64_t, bool);                                                      \
  template void gemm_nt<T>(int64_t, int64_t, int64_t, const T*, int64_t, const T*, int64_t, T*, \
                           int64_t, bool);                                                      \
  template void gemm_tn<T>(int64_t, int64_t, int64_t, const T*, int64_t, const T*, int64_t, T*, \
                           int64_t, bool);
CNN_INSTANTIATE_GEMM(double)

}  // namespace cnn::detail

// The packed SGEMM (src/ops/gemm.hpp) against a double loop, on every instruction set this CPU
// supports: odd M, N and K around the micro-kernel tiles (16, 6, 4 rows; 16 columns) and the 4 x 4
// transposing packs, each operand stored as is and transposed, assigned and accumulated, and A
// packed ahead. The convolutions and dense layers are tested through the ops; this pins the
// kernel itself.

#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "../src/ops/gemm.hpp"
#include "cnn/ops.hpp"
#include "cnn/rng.hpp"

namespace cnn {
namespace {

struct Operand {
  std::vector<float> values;
  int64_t row_step, col_step;  // element (i, j) at values[i * row_step + j * col_step]
  float at(int64_t i, int64_t j) const { return values[i * row_step + j * col_step]; }
};

/// A rows x cols matrix, row-major or (transposed) column-major, with leading dimension
/// larger than needed so that a kernel reading past its rows would be seen.
Operand random_operand(Rng& rng, int64_t rows, int64_t cols, bool transposed) {
  const int64_t lead = (transposed ? rows : cols) + 3;
  Operand op{std::vector<float>((transposed ? cols : rows) * lead), transposed ? 1 : lead,
             transposed ? lead : 1};
  for (float& v : op.values) v = static_cast<float>(rng.normal());
  return op;
}

class GemmIsa : public ::testing::TestWithParam<ops::Isa> {
 protected:
  void SetUp() override {
    saved_ = ops::isa();
    ops::set_isa(GetParam());
  }
  void TearDown() override { ops::set_isa(saved_); }

 private:
  ops::Isa saved_{};
};

TEST_P(GemmIsa, MatchesADoubleLoopOnOddShapes) {
  Rng rng(5);
  const int64_t sizes[] = {1, 3, 4, 5, 6, 7, 12, 15, 16, 17, 31, 33, 48, 70};
  int checked = 0;
  for (int c = 0; c < 120; ++c) {
    const int64_t m = sizes[rng.below(14)], n = sizes[rng.below(14)], k = sizes[rng.below(14)];
    const bool a_transposed = rng.below(2) == 1, b_transposed = rng.below(2) == 1;
    const bool accumulate = rng.below(2) == 1, prepacked = !b_transposed && rng.below(2) == 1;
    const Operand a = random_operand(rng, m, k, a_transposed),
                  b = random_operand(rng, k, n, b_transposed);
    const int64_t ldc = n + 2;
    std::vector<float> c_fast(m * ldc);
    for (float& v : c_fast) v = static_cast<float>(rng.normal());
    std::vector<double> c_ref(c_fast.begin(), c_fast.end());
    std::vector<double> magnitude(c_ref.size(), 0.0);
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) {
        double sum = accumulate ? c_ref[i * ldc + j] : 0.0, size = std::abs(sum);
        for (int64_t p = 0; p < k; ++p) {
          sum += double(a.at(i, p)) * double(b.at(p, j));
          size += std::abs(double(a.at(i, p)) * double(b.at(p, j)));
        }
        c_ref[i * ldc + j] = sum;
        magnitude[i * ldc + j] = size;
      }
    const int64_t lda = a_transposed ? a.col_step : a.row_step;
    const int64_t ldb = b_transposed ? b.col_step : b.row_step;
    std::vector<float> packed;
    if (prepacked && !b_transposed) {
      detail::sgemm_pack_a(m, k, a.values.data(), a.row_step, a.col_step, packed);
      detail::sgemm_nn_prepacked(m, n, k, packed.data(), b.values.data(), ldb, c_fast.data(), ldc,
                                 accumulate);
    } else if (!a_transposed && !b_transposed) {
      detail::gemm_nn<float>(m, n, k, a.values.data(), lda, b.values.data(), ldb, c_fast.data(),
                             ldc, accumulate);
    } else if (a_transposed && !b_transposed) {
      detail::gemm_tn<float>(m, n, k, a.values.data(), lda, b.values.data(), ldb, c_fast.data(),
                             ldc, accumulate);
    } else if (!a_transposed) {
      detail::gemm_nt<float>(m, n, k, a.values.data(), lda, b.values.data(), ldb, c_fast.data(),
                             ldc, accumulate);
    } else {
      continue;  // no A^T B^T entry point
    }
    ++checked;
    const std::string what = "m=" + std::to_string(m) + " n=" + std::to_string(n) +
                             " k=" + std::to_string(k) + (a_transposed ? " A^T" : " A") +
                             (b_transposed ? " B^T" : " B") + (accumulate ? " +=" : " =") +
                             (prepacked ? " prepacked" : "");
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < ldc; ++j) {
        const int64_t at = i * ldc + j;
        if (j >= n) {  // past N: untouched
          ASSERT_EQ(double(c_fast[at]), c_ref[at]) << what << " wrote past column " << n;
          continue;
        }
        ASSERT_LE(std::abs(c_fast[at] - c_ref[at]) / (magnitude[at] + 1.0), 1e-6)
            << what << " at (" << i << ", " << j << ")";
      }
  }
  EXPECT_GT(checked, 80);
}

// sgemm_packed_a_layout describes sgemm_pack_a's output exactly (Winograd writes packed A by
// it): every element where the layout puts it, rows past m zero, the same size; odd m around
// each kernel's rows and k past one block of kKc (256) columns, A as is and transposed.
TEST_P(GemmIsa, PackedALayoutIsWhereThePackingPutsEachElement) {
  Rng rng(6);
  for (const int64_t m : {1, 5, 6, 7, 16, 17, 37}) {
    for (const int64_t k : {1, 3, 255, 256, 300, 513}) {
      for (const bool transposed : {false, true}) {
        const Operand a = random_operand(rng, m, k, transposed);
        std::vector<float> packed;
        detail::sgemm_pack_a(m, k, a.values.data(), a.row_step, a.col_step, packed);
        const detail::PackedALayout layout = detail::sgemm_packed_a_layout(m, k);
        const std::string what =
            "m=" + std::to_string(m) + " k=" + std::to_string(k) + (transposed ? " A^T" : " A");
        ASSERT_GE(packed.size(), static_cast<size_t>(layout.size())) << what;
        std::vector<int> hits(static_cast<size_t>(layout.size()), 0);
        for (int64_t i = 0; i < layout.rounded_m; ++i)
          for (int64_t p = 0; p < k; ++p) {
            const int64_t at = layout.offset(i, p);
            ASSERT_TRUE(at >= 0 && at < layout.size()) << what << " (" << i << ", " << p << ")";
            ++hits[static_cast<size_t>(at)];
            ASSERT_EQ(packed[static_cast<size_t>(at)], i < m ? a.at(i, p) : 0.0f)
                << what << " (" << i << ", " << p << ")";
          }
        for (const int h : hits) ASSERT_EQ(h, 1) << what << ": offsets not one-to-one";
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Isas, GemmIsa, ::testing::ValuesIn(ops::supported_isas()),
                         [](const ::testing::TestParamInfo<ops::Isa>& info) {
                           return std::string(ops::isa_name(info.param));
                         });

}  // namespace
}  // namespace cnn

#pragma once
// Comparison against PyTorch golden tensors, printed per tensor in the manner of llm.c's
// test_gpt2: "OK" / "NOT OK" with the largest difference.

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>

#include "cnn/data.hpp"
#include "cnn/tensor.hpp"

namespace cnn::testing {

/// A file of tests/golden/.
inline std::string golden(const std::string& name) {
  return std::string(CNN_GOLDEN_DIR) + "/" + name;
}

/// The test split of the Fashion-MNIST sample bundled in data/.
inline Dataset sample_test_set() {
  const std::string dir = CNN_SAMPLE_DIR;
  return read_idx_dataset(resolve_maybe_gz(dir + "/t10k-images-idx3-ubyte"),
                          resolve_maybe_gz(dir + "/t10k-labels-idx1-ubyte"));
}

/// The smallest scale a golden tensor is compared at: an all-zero (or near-zero) golden tensor
/// is matched to rtol * kGoldenScaleFloor in absolute terms (1e-11 at rtol 1e-5), so that it
/// cannot pass against any output.
inline constexpr double kGoldenScaleFloor = 1e-6;

/// True when every element satisfies |a - b| <= rtol * (|b| + max(max|B|, kGoldenScaleFloor)),
/// i.e. relative to the element, with the tensor's largest magnitude as the floor for elements
/// near zero. Prints one line per tensor.
inline bool close_to_golden(const std::string& name, TensorView<const float> actual,
                            TensorView<const float> expected, double rtol = 1e-5) {
  if (actual.shape() != expected.shape()) {
    ADD_FAILURE() << name << ": shape " << actual.shape().str() << " vs golden "
                  << expected.shape().str();
    return false;
  }
  double scale = kGoldenScaleFloor;
  for (int64_t i = 0; i < expected.numel(); ++i)
    scale = std::max(scale, std::abs(double(expected[i])));
  double max_diff = 0, max_ratio = 0;
  for (int64_t i = 0; i < expected.numel(); ++i) {
    const double diff = std::abs(double(actual[i]) - double(expected[i]));
    if (std::isnan(diff)) {
      max_ratio = INFINITY;
      break;
    }
    max_diff = std::max(max_diff, diff);
    max_ratio = std::max(max_ratio, diff / (std::abs(double(expected[i])) + scale));
  }
  const bool ok = max_ratio <= rtol;
  std::printf("%-6s %-40s max |diff| %.3g, max diff / (|golden| + max|golden|) %.3g\n",
              ok ? "OK" : "NOT OK", name.c_str(), max_diff, max_ratio);
  EXPECT_TRUE(ok) << name << " differs from PyTorch: " << max_ratio << " > " << rtol;
  return ok;
}

}  // namespace cnn::testing

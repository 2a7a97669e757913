#pragma once
// The code paths that tests run on: the reference loops, and the default path on every
// instruction set this CPU supports, once per forced convolution method (im2col + GEMM, direct,
// Winograd and implicit GEMM, each wherever it applies; CNN_ISA and CNN_CONV pick one in
// production, the tests try them all).

#include <gtest/gtest.h>

#include <ostream>
#include <string>
#include <vector>

#include "cnn/ops.hpp"

namespace cnn::testing {

struct Path {
  bool reference;
  ops::Isa isa;
  ops::ConvAlgorithm conv = ops::ConvAlgorithm::kAuto;
  std::string name() const {
    return reference ? "reference"
                     : std::string(ops::isa_name(isa)) + "_" + ops::conv_algorithm_name(conv);
  }
};

/// gtest prints a parameter with this (instead of its raw bytes).
inline void PrintTo(const Path& path, std::ostream* os) {
  *os << path.name();
}

/// Default paths only: every supported instruction set with each convolution algorithm.
inline std::vector<Path> isa_paths() {
  std::vector<Path> paths;
  for (ops::Isa isa : ops::supported_isas()) {
    for (ops::ConvAlgorithm conv : {ops::ConvAlgorithm::kGemm, ops::ConvAlgorithm::kDirect,
                                    ops::ConvAlgorithm::kWinograd, ops::ConvAlgorithm::kImplicit})
      paths.push_back({false, isa, conv});
  }
  return paths;
}

/// "reference" plus the default paths of isa_paths().
inline std::vector<Path> all_paths() {
  std::vector<Path> paths{{true, ops::isa()}};
  for (const Path& path : isa_paths()) paths.push_back(path);
  return paths;
}

/// Puts the instruction set, convolution algorithm and thread count back as they were when it
/// was made, when it goes out of scope (after a failed assertion too).
struct RestoreOpsSettings {
  ops::Isa isa = ops::isa();
  ops::ConvAlgorithm conv = ops::conv_algorithm();
  int threads = ops::threads();
  ~RestoreOpsSettings() {
    ops::set_threads(threads);
    ops::set_conv_algorithm(conv);
    ops::set_isa(isa);
  }
};

/// A fixture that switches to its Path for the test and back afterwards.
class PathTest : public ::testing::TestWithParam<Path> {
 protected:
  void SetUp() override {
    saved_ = ops::isa();
    saved_conv_ = ops::conv_algorithm();
    ops::set_reference_mode(GetParam().reference);
    ops::set_isa(GetParam().isa);
    ops::set_conv_algorithm(GetParam().conv);
  }
  void TearDown() override {
    ops::set_reference_mode(false);
    ops::set_isa(saved_);
    ops::set_conv_algorithm(saved_conv_);
  }

 private:
  ops::Isa saved_ = ops::Isa::kPortable;
  ops::ConvAlgorithm saved_conv_ = ops::ConvAlgorithm::kAuto;
};

inline std::string path_test_name(const ::testing::TestParamInfo<Path>& info) {
  return info.param.name();
}

}  // namespace cnn::testing

#pragma once
// The code paths that tests run on: the reference loops, and the default path on every
// instruction set this CPU supports (CNN_ISA picks one in production; the tests try them all).

#include <gtest/gtest.h>

#include <ostream>
#include <string>
#include <vector>

#include "cnn/ops.hpp"

namespace cnn::testing {

struct Path {
  bool reference;
  ops::Isa isa;
  std::string name() const { return reference ? "reference" : ops::isa_name(isa); }
};

/// gtest prints a parameter with this (instead of its raw bytes).
inline void PrintTo(const Path& path, std::ostream* os) {
  *os << path.name();
}

/// "reference" plus one default path per supported instruction set.
inline std::vector<Path> all_paths() {
  std::vector<Path> paths{{true, ops::isa()}};
  for (ops::Isa isa : ops::supported_isas()) paths.push_back({false, isa});
  return paths;
}

/// Default paths only, one per supported instruction set.
inline std::vector<Path> isa_paths() {
  std::vector<Path> paths;
  for (ops::Isa isa : ops::supported_isas()) paths.push_back({false, isa});
  return paths;
}

/// A fixture that switches to its Path for the test and back afterwards.
class PathTest : public ::testing::TestWithParam<Path> {
 protected:
  void SetUp() override {
    saved_ = ops::isa();
    ops::set_reference_mode(GetParam().reference);
    ops::set_isa(GetParam().isa);
  }
  void TearDown() override {
    ops::set_reference_mode(false);
    ops::set_isa(saved_);
  }

 private:
  ops::Isa saved_ = ops::Isa::kPortable;
};

inline std::string path_test_name(const ::testing::TestParamInfo<Path>& info) {
  return info.param.name();
}

}  // namespace cnn::testing

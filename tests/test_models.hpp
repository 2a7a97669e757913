#pragma once
// Models shared by several tests.

#include "cnn/model.hpp"
#include "cnn/spec.hpp"

namespace cnn::testing {

/// The lenet5 preset (conv 6@5x5 padding 2, relu, maxpool 2, conv 16@5x5, relu, maxpool 2,
/// flatten, linear 120, relu, linear 84, relu, linear 10; 61,706 parameters), which the golden
/// tests compare with PyTorch's nn.Sequential of the same layers.
inline Sequential<float> lenet5() {
  return build_model(preset_spec("lenet5"));
}

}  // namespace cnn::testing

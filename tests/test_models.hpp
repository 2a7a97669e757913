#pragma once
// Models shared by several tests.

#include "cnn/layers.hpp"
#include "cnn/model.hpp"

namespace cnn::testing {

/// LeNet-5 as in the golden files: conv 6@5x5 padding 2, relu, maxpool 2, conv 16@5x5, relu,
/// maxpool 2, flatten, linear 120, relu, linear 84, relu, linear 10; 61,706 parameters.
inline Sequential<float> lenet5() {
  Sequential<float> model;
  model.emplace<Conv2d<float>>(1, 6, 5, 1, 2);
  model.emplace<ReLU<float>>();
  model.emplace<MaxPool2d<float>>(2);
  model.emplace<Conv2d<float>>(6, 16, 5);
  model.emplace<ReLU<float>>();
  model.emplace<MaxPool2d<float>>(2);
  model.emplace<Flatten<float>>();
  model.emplace<Linear<float>>(400, 120);
  model.emplace<ReLU<float>>();
  model.emplace<Linear<float>>(120, 84);
  model.emplace<ReLU<float>>();
  model.emplace<Linear<float>>(84, 10);
  model.build(Shape{1, 28, 28});
  return model;
}

}  // namespace cnn::testing

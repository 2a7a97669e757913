// The seed's equations on hand-sized examples, checked against values worked out on paper.
// These read as a small textbook next to include/cnn/ops_ref.hpp.

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "cnn/cnn.hpp"

namespace cnn {
namespace {

TEST(SeedEquations, ConvolutionForwardAndItsThreeGradients) {
  // X: one 3x3 channel; K: one 2x2 kernel; B = 0.5. Y = B + X * K (cross-correlation).
  const std::vector<double> x = {1, 2, 3,  //
                                 4, 5, 6,  //
                                 7, 8, 9};
  const std::vector<double> k = {1, 0,  //
                                 -1, 2};
  const double b = 0.5;
  const ops::ConvShape s = ops::make_conv_shape(1, 1, 3, 3, 1, 2, 2, 1, 1, 0, 0);
  std::vector<double> y(4);
  ref::conv2d_forward(y.data(), x.data(), k.data(), &b, s);
  // y00 = 1*1 + 2*0 + 4*(-1) + 5*2 + 0.5 = 7.5, and so on.
  EXPECT_EQ(y, (std::vector<double>{7.5, 9.5, 13.5, 15.5}));

  // dL/dY = [[1, 2], [3, 4]].
  const std::vector<double> dy = {1, 2, 3, 4};
  std::vector<double> dx(9), dk(4, 0.0);
  double db = 0;
  ref::conv2d_backward(dx.data(), dk.data(), &db, x.data(), k.data(), dy.data(), s);
  // dL/dB = sum(dL/dY) = 10.
  EXPECT_EQ(db, 10);
  // dL/dK = Conv(X, dL/dY): dk00 = 1*1 + 2*2 + 4*3 + 5*4 = 37.
  EXPECT_EQ(dk, (std::vector<double>{37, 47, 67, 77}));
  // dL/dX = full convolution of the zero-padded dL/dY with the kernel rotated by 180 degrees
  // ([[2, -1], [0, 1]]): e.g. dx11 = 1*2 + 2*(-1) + 3*0 + 4*1 = 4.
  EXPECT_EQ(dx, (std::vector<double>{1, 2, 0,  //
                                     2, 4, 4,  //
                                     -3, 2, 8}));
}

TEST(SeedEquations, MaxPoolingRoutesTheGradientToTheChosenElementOnly) {
  const std::vector<double> x = {1, 7, 2, 2,  //
                                 3, 4, 2, 0,  //
                                 5, 5, 0, 9,  //
                                 5, 1, 8, 9};
  const ops::PoolShape s = ops::make_pool_shape(1, 1, 4, 4, 2, 2, 2, 2, 0, 0);
  std::vector<double> y(4);
  std::vector<int32_t> argmax(4);
  ref::maxpool2d_forward(y.data(), argmax.data(), x.data(), s);
  EXPECT_EQ(y, (std::vector<double>{7, 2, 5, 9}));
  // Ties go to the first in row-major order: (0, 2) among the three 2s, (2, 0) among the
  // three 5s, (2, 3) among the two 9s.
  EXPECT_EQ(argmax, (std::vector<int32_t>{1, 2, 8, 11}));
  const std::vector<double> dy = {10, 20, 30, 40};
  std::vector<double> dx(16, -1);
  ref::maxpool2d_backward(dx.data(), dy.data(), argmax.data(), s);
  EXPECT_EQ(dx, (std::vector<double>{0, 10, 20, 0,  //
                                     0, 0, 0, 0,    //
                                     30, 0, 0, 40,  //
                                     0, 0, 0, 0}));
}

TEST(SeedEquations, ReluDerivativeIsOneAtZero) {
  const std::vector<double> x = {-2, 0, 3}, dy = {5, 5, 5};
  std::vector<double> y(3), dx(3);
  ref::relu_forward(y.data(), x.data(), 3);
  ref::relu_backward(dx.data(), x.data(), dy.data(), 3);
  EXPECT_EQ(y, (std::vector<double>{0, 0, 3}));
  EXPECT_EQ(dx, (std::vector<double>{0, 5, 5}));  // the seed: RELU'(0) = 1
}

TEST(SeedEquations, SoftmaxJacobianMatchesTheSeedsFormula) {
  const double x1 = 0.3, x2 = -1.2, x3 = 2.0;
  const std::vector<double> x = {x1, x2, x3};
  std::vector<double> s(3), dx(3);
  ref::softmax_forward(s.data(), x.data(), 1, 3, 1);
  const double sum = std::exp(x1) + std::exp(x2) + std::exp(x3);
  EXPECT_NEAR(s[0], std::exp(x1) / sum, 1e-15);
  // With dy = e_1, dx_1 is d softmax_1 / d x_1 = e^x1 (e^x2 + e^x3) / (e^x1 + e^x2 + e^x3)^2.
  const std::vector<double> e1 = {1, 0, 0};
  for (bool reference : {true, false}) {
    if (reference) {
      ref::softmax_backward(dx.data(), s.data(), e1.data(), 1, 3, 1);
    } else {
      ops::softmax_backward(dx.data(), s.data(), e1.data(), 1, 3, 1);
    }
    EXPECT_NEAR(dx[0], std::exp(x1) * (std::exp(x2) + std::exp(x3)) / (sum * sum), 1e-15);
    EXPECT_NEAR(dx[1], -std::exp(x1) * std::exp(x2) / (sum * sum), 1e-15);
  }
}

TEST(SeedEquations, TanhAndItsDerivative) {
  const std::vector<double> x = {-0.7, 0.0, 1.3, 30.0}, dy = {1, 1, 1, 1};
  std::vector<double> y(4), dx(4);
  ref::tanh_forward(y.data(), x.data(), 4);
  ref::tanh_backward(dx.data(), y.data(), dy.data(), 4);
  for (int i = 0; i < 3; ++i) {
    const double e = std::exp(x[i]), f = std::exp(-x[i]);
    EXPECT_NEAR(y[i], (e - f) / (e + f), 1e-15);
    EXPECT_NEAR(dx[i], 1 - y[i] * y[i], 1e-15);
  }
  EXPECT_EQ(y[3], 1.0);  // finite where e^x / e^x would overflow
}

TEST(SeedEquations, LogLossForwardBackwardAndClamp) {
  const std::vector<double> p = {0.9, 0.2, 0.6}, t = {1, 0, 1};
  const double expected = -(std::log(0.9) + std::log(0.8) + std::log(0.6)) / 3;
  EXPECT_NEAR(ref::log_loss_forward(p.data(), t.data(), 3, 1e-7), expected, 1e-15);
  std::vector<double> dp(3);
  ref::log_loss_backward(dp.data(), p.data(), t.data(), 3, 1e-7);
  // 1/N ((1 - y) / (1 - p) - y / p)
  EXPECT_NEAR(dp[0], (0 / 0.1 - 1 / 0.9) / 3, 1e-15);
  EXPECT_NEAR(dp[1], (1 / 0.8 - 0 / 0.2) / 3, 1e-15);
  // At p = 0 and p = 1 the clamp keeps both finite: -log(1e-7) per wrong certain answer.
  const std::vector<double> certain = {0.0, 1.0}, wrong = {1, 0};
  EXPECT_NEAR(ref::log_loss_forward(certain.data(), wrong.data(), 2, 1e-7), -std::log(1e-7), 1e-9);
  std::vector<double> grad(2);
  ref::log_loss_backward(grad.data(), certain.data(), wrong.data(), 2, 1e-7);
  EXPECT_TRUE(std::isfinite(grad[0]) && std::isfinite(grad[1]));
  EXPECT_LT(grad[0], 0);  // push p up toward the target 1
  EXPECT_GT(grad[1], 0);
}

TEST(SeedEquations, CrossEntropyIsStableForHugeLogits) {
  const std::vector<float> logits = {1000.0f, 0.0f, -1000.0f};
  const int32_t label = 1;
  const float loss = ref::cross_entropy_forward(logits.data(), &label, 1, 3);
  EXPECT_FLOAT_EQ(loss, 1000.0f);
  std::vector<float> d(3);
  ref::cross_entropy_backward(d.data(), logits.data(), &label, 1, 3);
  EXPECT_FLOAT_EQ(d[0], 1.0f);
  EXPECT_FLOAT_EQ(d[1], -1.0f);
  EXPECT_FLOAT_EQ(d[2], 0.0f);
}

}  // namespace
}  // namespace cnn

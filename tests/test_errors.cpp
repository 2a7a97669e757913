// Acceptance 7: bad arguments and shapes throw cnn::Error with one line that names the layer
// (or loss), what was expected and what was given.

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "cnn/cnn.hpp"
#include "expect_error.hpp"

namespace cnn {
namespace {

using testing::expect_error;

// Found 2026-12-06 (a helper's probe): Shape's operator[] read past its dimensions for an
// index outside [-rank, rank) (ASan: stack-buffer-overflow), and the pointer constructor read
// through a null pointer (SEGV).
TEST(Errors, ShapeIndicesAndPointersOutOfRange) {
  const Shape s{2, 3};
  EXPECT_EQ(s[1], 3);
  EXPECT_EQ(s[-2], 2);
  expect_error([&] { static_cast<void>(s[2]); },
               {"Shape: expected a dimension index in [-2, 2) for (2, 3), got 2"});
  expect_error([&] { static_cast<void>(s[-3]); }, {"got -3"});
  expect_error([&] { static_cast<void>(s[5]); }, {"got 5"});
  expect_error([] { static_cast<void>(Shape()[0]); }, {"[0, 0) for (), got 0"});
  expect_error([] { Shape(nullptr, 2); }, {"Shape: expected 2 dimensions, got a null pointer"});
  EXPECT_EQ(Shape(nullptr, 0), Shape());
}

TEST(Errors, ZeroOrNegativeSizes) {
  expect_error([] { Conv2d<float>(0, 4, 3); }, {"Conv2d", "in_channels > 0", "got 0"});
  expect_error([] { Conv2d<float>(3, -2, 3); }, {"Conv2d", "out_channels > 0", "got -2"});
  expect_error([] { Conv2d<float>(3, 4, Size2(3, 0)); }, {"Conv2d", "kernel width > 0", "got 0"});
  expect_error([] { Conv2d<float>(3, 4, 3, 0); }, {"Conv2d", "stride height > 0", "got 0"});
  expect_error([] { Conv2d<float>(3, 4, 3, 1, -1); }, {"Conv2d", "padding >= 0", "(-1, -1)"});
  expect_error([] { Conv2d<float>(3, 4, 4, 1, Padding2::Same()); },
               {"Conv2d", "'same' expects an odd kernel", "(4, 4)"});
  expect_error([] { MaxPool2d<float>(0); }, {"MaxPool2d", "kernel > 0", "(0, 0)"});
  expect_error([] { MaxPool2d<float>(2, Size2(-1)); }, {"MaxPool2d", "stride > 0", "(-1, -1)"});
  expect_error(
      [] { MaxPool2d<float>(2, std::nullopt, 2); },
      {"MaxPool2d", "padding from 0 to half the kernel (2, 2), i.e. up to (1, 1), got (2, 2)"});
  expect_error([] { Linear<float>(0, 3); }, {"Linear", "in_features > 0", "got 0 and 3"});
  expect_error([] { Shape{2, -3}; }, {"Shape", "non-negative", "-3"});
  expect_error([] { LogLoss<float>(0.0f); }, {"LogLoss", "0 < eps < 0.5", "got 0"});
  // A zero-sized input shape is refused by the layer that receives it.
  expect_error(
      [] {
        Conv2d<float>(1, 2, 3).output_shape(Shape{0, 1, 5, 5});
      },
      {"Conv2d(1, 2", "expected input (N, 1, H, W) with positive sizes", "got (0, 1, 5, 5)"});
  expect_error(
      [] {
        Linear<float>(4, 2).output_shape(Shape{3, 0});
      },
      {"Linear(4, 2)", "expected input (N, 4)", "got (3, 0)"});
}

TEST(Errors, SizesPast2To48ElementsAreRefusedBeforeTheyOverflow) {
  constexpr int64_t kBig = int64_t{1} << 32, kMax = std::numeric_limits<int64_t>::max();
  EXPECT_EQ(size_product(kBig, kBig), std::nullopt);  // 2^64: would overflow
  EXPECT_EQ(size_product(kMax, 2), std::nullopt);
  EXPECT_EQ(size_product(int64_t{1} << 24, int64_t{1} << 24), int64_t{1} << 48);
  EXPECT_EQ(size_product(int64_t{1} << 24, (int64_t{1} << 24) + 1), std::nullopt);
  EXPECT_EQ(size_product(-1, 3), std::nullopt);
  EXPECT_EQ(size_sum(kMaxElements, 1), std::nullopt);
  EXPECT_EQ(size_sum(kMax, kMax), std::nullopt);
  EXPECT_EQ(size_sum(2, 3), 5);
  expect_error(
      [] {
        Shape{kBig, kBig, 1};
      },
      {"Shape", "at most 2^48 elements", "(4294967296, 4294967296, 1)"});
  expect_error([] { Shape{kBig, 1}.with(1, kBig); }, {"Shape", "(4294967296, 4294967296)"});
  expect_error([] { Conv2d<float>(1, 1, Size2(kMax, 1)); },
               {"Conv2d", "kernel height > 0 (and at most 2^48)"});
  expect_error([] { Conv2d<float>(1, 1, 3, 1, kMax); },
               {"Conv2d", "padding >= 0 (and at most 2^48)"});
  expect_error([] { MaxPool2d<float>(Size2(kMax, 2), std::nullopt, Size2(kMax / 2, 0)); },
               {"MaxPool2d", "kernel > 0 (and at most 2^48)"});
  Sequential<float> model;
  model.emplace<Conv2d<float>>(1 << 20, 1 << 20, 1 << 10);
  expect_error(
      [&] {
        model.build(Shape{1 << 20, 1 << 10, 1 << 10});
      },
      {"Sequential: layer 0 Conv2d(1048576, 1048576", "parameters", "at most 2^48 elements"});
}

// An out-of-memory line gives the failed allocation's size in a unit that shows it: a small
// tensor that failed once the address space was spent read "0 MB".
TEST(Errors, OutOfMemorySizesAreShownInAUnitThatShowsThem) {
  EXPECT_EQ(memory_size_text(64), "64 bytes");
  EXPECT_EQ(memory_size_text(499999), "499999 bytes");
  EXPECT_EQ(memory_size_text(1e6), "1 MB");
  EXPECT_EQ(memory_size_text(51380224), "51 MB");
  EXPECT_EQ(memory_size_text(999e6), "999 MB");
  EXPECT_EQ(memory_size_text(1e9), "1.0 GB");
  EXPECT_EQ(memory_size_text(53351546944), "53.4 GB");
}

// LeakyReLU's slope is any finite number, as PyTorch's; NaN and infinity (from the C++ API or a
// LayerSpec) are refused naming the key. Both new activations round-trip through the canonical
// JSON, a built model's spec and the torch module mapping.
TEST(Errors, LeakyReluAndRelu6Settings) {
  const auto spec_with = [](const std::string& layer) {
    return R"({"input": [1, 4, 4], "layers": [)" + layer +
           R"(, {"type": "Flatten"}, {"type": "Linear", "out_features": 2}]})";
  };
  // JSON has no NaN or infinity (1e999 is refused as invalid JSON): the spec's refusals are
  // of other types, the C++ API's of non-finite numbers.
  for (const std::string bad : {"\"0.1\"", "null", "[0.1]"}) {
    expect_error(
        [&] {
          parse_model_spec(spec_with(R"({"type": "LeakyReLU", "negative_slope": )" + bad + "}"),
                           "s");
        },
        {"s: layer 0", "LeakyReLU expects \"negative_slope\" a finite number"});
  }
  expect_error([] { LeakyReLU<float>(std::nan("")); },
               {"LeakyReLU", "expected a finite negative_slope", "nan"});
  // Finite as a double, infinite as the float the model computes in (found 2026-12-06: its
  // ONNX export wrote alpha inf, which the import refused).
  expect_error(
      [&] {
        parse_model_spec(spec_with(R"({"type": "LeakyReLU", "negative_slope": -1e40})"), "s");
      },
      {"s: layer 0", "LeakyReLU expects \"negative_slope\" a finite number of float's range",
       "-1e+40"});
  expect_error([] { LeakyReLU<float>(1e40); },
               {"LeakyReLU", "finite negative_slope (magnitude at most 3.4e38 in float)", "1e+40"});
  EXPECT_EQ(LeakyReLU<double>(1e40).negative_slope(), 1e40);
  EXPECT_EQ(LeakyReLU<float>(3.4e38).negative_slope(), 3.4e38);
  ModelSpec with_nan = parse_model_spec(spec_with(R"({"type": "LeakyReLU"})"), "s");
  with_nan.layers[0].negative_slope = -std::numeric_limits<double>::infinity();
  expect_error([&] { build_model(with_nan); }, {"LeakyReLU", "finite negative_slope", "-inf"});
  expect_error([&] { parse_model_spec(spec_with(R"({"type": "ReLU6", "max": 6})"), "s"); },
               {"s: layer 0", "unknown key 'max'"});

  const ModelSpec spec = parse_model_spec(
      spec_with(R"({"type": "LeakyReLU"}, {"type": "LeakyReLU", "negative_slope": -2.5},
                   {"type": "ReLU6"})"),
      "activations");
  EXPECT_EQ(spec.layers[0].negative_slope, 0.01);  // PyTorch's default
  EXPECT_EQ(spec.layers[1].negative_slope, -2.5);
  EXPECT_EQ(to_json(parse_model_spec(to_json(spec), "again")), to_json(spec));
  EXPECT_EQ(to_json(spec_of(build_model(spec), spec.name)), to_json(spec));
  const std::vector<std::string> modules = torch_modules(spec);
  ASSERT_GE(modules.size(), 3u);
  EXPECT_EQ(modules[0], R"({"args":[],"kwargs":{"negative_slope":0.01},"module":"LeakyReLU"})");
  EXPECT_EQ(modules[1], R"({"args":[],"kwargs":{"negative_slope":-2.5},"module":"LeakyReLU"})");
  EXPECT_EQ(modules[2], R"({"args":[],"kwargs":{},"module":"ReLU6"})");
  const Sequential<float> model = build_model(spec);
  EXPECT_EQ(model.layer(1).describe(), "LeakyReLU(negative_slope=-2.5)");
  EXPECT_EQ(model.layer(2).describe(), "ReLU6()");
}

TEST(Errors, AveragePoolingSettings) {
  const auto spec_with = [](const std::string& layer) {
    return R"({"input": [1, 8, 8], "layers": [)" + layer +
           R"(, {"type": "Flatten"}, {"type": "Linear", "out_features": 2}]})";
  };
  expect_error(
      [&] {
        parse_model_spec(spec_with(R"({"type": "AdaptiveAvgPool2d", "output_size": 2})"), "s");
      },
      {"s: layer 0", "AdaptiveAvgPool2d expects \"output_size\": 1", "got 2"});
  expect_error(
      [&] {
        parse_model_spec(spec_with(R"({"type": "AvgPool2d", "kernel": 3, "padding": 2})"), "s");
      },
      {"layer 0", "AvgPool2d: expected padding from 0 to half the kernel (3, 3), i.e. up to (1, 1)",
       "(2, 2)"});
  expect_error(
      [&] {
        parse_model_spec(spec_with(R"({"type": "AvgPool2d", "kernel": 2, "count_include_pad": 1})"),
                         "s");
      },
      {"layer 0", "'count_include_pad' expects true or false", "got 1"});
  expect_error([] { AdaptiveAvgPool2d<float>(Size2(2, 1)); },
               {"AdaptiveAvgPool2d", "expected output size 1", "(2, 1)"});
  expect_error([] { AvgPool2d<float>(Size2(0, 2)); }, {"AvgPool2d", "kernel > 0", "(0, 2)"});
  expect_error(
      [] {
        AvgPool2d<float>(3).output_shape(Shape{1, 1, 2, 2});
      },
      {"AvgPool2d(kernel=(3, 3)", "larger than the padded input (2, 2)"});
  // A valid spec round-trips through its canonical JSON and a built model's spec.
  const ModelSpec spec =
      parse_model_spec(spec_with(R"({"type": "AvgPool2d", "kernel": 3, "stride": 2, "padding": 1,
                    "count_include_pad": false}, {"type": "AdaptiveAvgPool2d"})"),
                       "pooling");
  EXPECT_EQ(to_json(parse_model_spec(to_json(spec), "again")), to_json(spec));
  EXPECT_EQ(to_json(spec_of(build_model(spec), spec.name)), to_json(spec));
}

TEST(Errors, KernelLargerThanPaddedInput) {
  expect_error(
      [] {
        Conv2d<float>(1, 2, 5, 1, 1).output_shape(Shape{1, 1, 2, 9});
      },
      {"Conv2d(1, 2, kernel=(5, 5)", "kernel (5, 5) is larger than the padded input (4, 11)",
       "(1, 1, 2, 9)"});
  expect_error(
      [] {
        MaxPool2d<float>(3).output_shape(Shape{1, 1, 2, 2});
      },
      {"MaxPool2d(kernel=(3, 3)", "larger than the padded input (2, 2)"});
}

TEST(Errors, ChannelCountMismatch) {
  expect_error(
      [] {
        Conv2d<float>(3, 8, 3).output_shape(Shape{2, 4, 9, 9});
      },
      {"Conv2d(3, 8", "expected input (N, 3, H, W)", "got (2, 4, 9, 9)"});
  expect_error(
      [] {
        Linear<float>(400, 120).output_shape(Shape{1, 256});
      },
      {"Linear(400, 120)", "expected input (N, 400)", "got (1, 256)"});
  expect_error(
      [] {
        Conv2d<float>(3, 8, 3).output_shape(Shape{2, 3, 9});
      },
      {"Conv2d", "expected input (N, 3, H, W)", "got (2, 3, 9)"});
}

TEST(Errors, ModelBuildNamesTheLayer) {
  Sequential<float> model;
  model.emplace<Conv2d<float>>(1, 6, 5);
  model.emplace<Flatten<float>>();
  model.emplace<Linear<float>>(100, 10);
  expect_error(
      [&] {
        model.build(Shape{1, 28, 28});
      },
      {"Sequential: layer 2", "Linear(100, 10)", "expected input (N, 100)", "got (1, 3456)"});
  Sequential<float> ok;
  ok.emplace<Flatten<float>>();
  ok.build(Shape{1, 2, 2});
  Tensor<float> wrong(Shape{3, 1, 2, 3});
  expect_error([&] { ok.forward(wrong, Mode::kEval); },
               {"Sequential", "expected input (N, 1, 2, 2)", "got (3, 1, 2, 3)"});
}

TEST(Errors, LayerForwardWithWrongTensors) {
  Conv2d<float> conv(1, 2, 3);
  Tensor<float> x(Shape{1, 1, 5, 5}), y(Shape{1, 2, 3, 3}), bad_y(Shape{1, 2, 5, 5});
  expect_error([&] { conv.forward(x, y, Mode::kEval); }, {"Conv2d", "parameters are not bound"});
  std::vector<float> p(static_cast<size_t>(conv.parameter_count())), g(p.size());
  conv.bind_parameters(p.data(), g.data());
  expect_error([&] { conv.forward(x, bad_y, Mode::kEval); },
               {"Conv2d", "expected output (1, 2, 3, 3)", "got (1, 2, 5, 5)"});
}

// A model's first Conv2d whose weight gradient reads its output gradient image by image
// (LayerChain's stem backward) checks what backward checks.
TEST(Errors, ConvolutionBackwardByImageChecksAsBackwardDoes) {
  Conv2d<float> conv(1, 2, 3);
  Tensor<float> x(Shape{1, 1, 5, 5});
  const ops::ImageGradientSource no_images;  // never read: the checks come first
  expect_error(
      [&] {
        conv.backward_by_image(x, Shape{1, 2, 3, 3}, no_images);
      },
      {"Conv2d", "parameters are not bound"});
  std::vector<float> p(static_cast<size_t>(conv.parameter_count())), g(p.size());
  conv.bind_parameters(p.data(), g.data());
  expect_error(
      [&] {
        conv.backward_by_image(x, Shape{1, 2, 5, 5}, no_images);
      },
      {"Conv2d", "expected output and its gradient (1, 2, 3, 3)", "got (1, 2, 5, 5)"});
}

TEST(Errors, LossTargets) {
  Tensor<float> p(Shape{4, 1}, 0.5f), t(Shape{4}, 1.0f);
  expect_error([&] { LogLoss<float>().forward(p, t); },
               {"LogLoss", "expected a target of the prediction's shape (4, 1)", "got (4,)"});
  Tensor<float> out_of_range(Shape{4, 1}, 0.0f);
  out_of_range[2] = 1.5f;
  expect_error([&] { LogLoss<float>().forward(p, out_of_range); },
               {"LogLoss", "expected targets in [0, 1]", "got 1.5 at index 2"});
  Tensor<float> bad_p(Shape{4, 1}, 0.5f);
  bad_p[1] = -0.25f;
  expect_error(
      [&] {
        LogLoss<float>().forward(bad_p, Tensor<float>(Shape{4, 1}, 1.0f));
      },
      {"LogLoss", "expected predictions (probabilities) in [0, 1]", "got -0.25 at index 1"});
  Tensor<float> logits(Shape{3, 5}, 0.0f), labels(Shape{3}, 1.0f), wrong(Shape{2});
  expect_error([&] { CrossEntropyLoss<float>().forward(logits, wrong); },
               {"CrossEntropyLoss", "expected targets of shape (3,)", "got (2,)"});
  labels[1] = 5.0f;
  expect_error([&] { CrossEntropyLoss<float>().forward(logits, labels); },
               {"CrossEntropyLoss", "class indices in [0, 4]", "got 5 at index 1"});
  labels[1] = 1.5f;
  expect_error([&] { CrossEntropyLoss<float>().forward(logits, labels); },
               {"CrossEntropyLoss", "class indices", "got 1.5 at index 1"});
  Tensor<float> nan_logits(Shape{3, 5}, 0.0f);
  nan_logits[7] = NAN;
  expect_error(
      [&] { CrossEntropyLoss<float>().forward(nan_logits, Tensor<float>(Shape{3}, 0.0f)); },
      {"CrossEntropyLoss", "expected finite predictions", "nan at index 7"});
  expect_error(
      [&] {
        MseLoss<float>().forward(Tensor<float>(Shape{2, 3}), Tensor<float>(Shape{3, 2}));
      },
      {"MseLoss", "prediction's shape (2, 3)", "got (3, 2)"});
  Tensor<float> grad(Shape{2, 2});
  expect_error(
      [&] {
        MseLoss<float>().backward(Tensor<float>(Shape{2, 3}), Tensor<float>(Shape{2, 3}), grad);
      },
      {"MseLoss", "prediction gradient of shape (2, 3)", "got (2, 2)"});
}

TEST(Errors, OptimizerSettings) {
  std::vector<float> p(3), g(3);
  expect_error([&] { Sgd<float>(p, g, {.lr = 0}); }, {"SGD", "lr > 0", "got 0"});
  expect_error([&] { Sgd<float>(p, g, {.lr = 0.1, .momentum = -1}); },
               {"SGD", "momentum >= 0", "got -1"});
  expect_error([&] { Sgd<float>(p, g, {.lr = 0.1, .nesterov = true}); },
               {"SGD", "Nesterov momentum expects momentum > 0"});
  expect_error([&] { Sgd<float>(p, g, {.lr = NAN}); }, {"SGD", "lr > 0", "nan"});
  expect_error([&] { Adam<float>(p, g, {.lr = 0}); }, {"Adam:", "lr > 0", "got 0"});
  expect_error([&] { Adam<float>(p, g, {.beta1 = 1.0}); }, {"Adam:", "0 <= beta1 < 1", "got 1"});
  expect_error([&] { Adam<float>(p, g, {.beta2 = -0.5, .decoupled_weight_decay = true}); },
               {"AdamW:", "0 <= beta2 < 1", "got -0.5"});
  expect_error([&] { Adam<float>(p, g, {.eps = -1}); }, {"Adam:", "eps >= 0", "got -1"});
  expect_error([&] { Adam<float>(p, g, {.weight_decay = -1}); },
               {"Adam:", "weight_decay >= 0", "got -1"});
  std::vector<float> fewer(2);
  expect_error([&] { Adam<float>(p, fewer, {}); },
               {"Adam:", "as many gradients as parameters", "got 2 and 3"});
}

// Found 2026-12-06 (a helper's probe): settings finite as doubles but not as the float the
// update uses (lr 1e39 is float's inf, 1e-50 its 0) were taken, though the header promises an
// error for non-finite values; 1e-50 was reported as "got 0.000000".
TEST(Errors, OptimizerSettingsAreCheckedAsTheFloatTheyBecome) {
  std::vector<float> p(3), g(3);
  expect_error([&] { Sgd<float>(p, g, {.lr = 1e39}); },
               {"SGD", "expected lr > 0 and finite as a float, got 1e+39"});
  expect_error([&] { Sgd<float>(p, g, {.lr = 1e-50}); }, {"SGD", "lr > 0", "got 1e-50"});
  expect_error([&] { Sgd<float>(p, g, {.lr = 0.1, .momentum = 1e39}); },
               {"SGD", "momentum >= 0 and finite as a float", "got 1e+39"});
  expect_error([&] { Sgd<float>(p, g, {.lr = 0.1, .dampening = 1e39}); }, {"SGD", "dampening"});
  expect_error([&] { Sgd<float>(p, g, {.lr = 0.1, .weight_decay = 1e39}); },
               {"SGD", "weight_decay"});
  Sgd<float> sgd(p, g, {.lr = 0.1});
  expect_error([&] { sgd.set_lr(1e39); }, {"SGD", "got 1e+39"});
  EXPECT_EQ(sgd.lr(), 0.1);
  // A double optimizer takes what a double holds.
  std::vector<double> pd(3), gd(3);
  EXPECT_NO_THROW(Sgd<double>(pd, gd, {.lr = 1e39}));
  expect_error([&] { Adam<float>(p, g, {.lr = 1e39}); },
               {"Adam:", "expected lr > 0 and finite as a float, got 1e+39"});
  expect_error([&] { Adam<float>(p, g, {.eps = 1e39}); }, {"Adam:", "eps", "got 1e+39"});
  expect_error([&] { Adam<float>(p, g, {.weight_decay = 1e39, .decoupled_weight_decay = true}); },
               {"AdamW:", "weight_decay", "got 1e+39"});
  expect_error([&] { Adam<float>(p, g, {.beta2 = 0.9999999999}); },
               {"Adam:", "0 <= beta2 < 1 as a float", "got 1"});
  EXPECT_NO_THROW(Adam<double>(pd, gd, {.beta2 = 0.9999999999}));
}

// Found 2026-12-06: two settings, each valid, took every parameter to inf or NaN. AdamW
// multiplies the parameters by 1 - lr x weight_decay each step; below -1 they grow until they
// overflow (NaN at step 129 with lr 1, weight decay 3; at step 1 where the product leaves
// float). Adam's first step moves by lr / (1 - beta1): inf beyond float (lr 1e38, beta1 0.9).
TEST(Errors, AdamSettingsThatOverflowTogetherAreRefused) {
  std::vector<float> p(3, 0.5f), g(3, 0.1f);
  expect_error(
      [&] { Adam<float>(p, g, {.lr = 1, .weight_decay = 3, .decoupled_weight_decay = true}); },
      {"AdamW: lr 1 x weight_decay 3 makes the decoupled decay factor 1 - lr x "
       "weight_decay -2, which grows the parameters every step until they overflow; "
       "expected lr x weight_decay <= 2"});
  expect_error(
      [&] {
        Adam<float>(p, g, {.lr = 1e20, .weight_decay = 1e20, .decoupled_weight_decay = true});
      },
      {"AdamW: lr 1e+20 x weight_decay 1e+20", "factor 1 - lr x weight_decay -1e+40"});
  expect_error([&] { Adam<float>(p, g, {.lr = 1e38}); },
               {"Adam: lr 1e+38 / (1 - beta1 0.9), the first step's size, is 1e+39, beyond a "
                "float; expected a smaller lr or beta1"});
  expect_error([&] { Adam<float>(p, g, {.lr = 1e32, .beta1 = 0.99999994}); },
               {"Adam: lr 1e+32 / (1 - beta1 0.99999994)"});
  expect_error([&] { Adam<float>(p, g, {.lr = 1e38, .decoupled_weight_decay = true}); },
               {"AdamW: lr 1e+38 / (1 - beta1 0.9)"});
  // set_lr checks the new rate with the other settings, and keeps the old one.
  Adam<float> adamw(p, g, {.lr = 1e-3, .weight_decay = 1, .decoupled_weight_decay = true});
  expect_error([&] { adamw.set_lr(3); }, {"AdamW: lr 3 x weight_decay 1"});
  EXPECT_EQ(adamw.lr(), 1e-3);
  // At the edges the parameters stay finite: a factor of -1 (lr x weight_decay 2) over 1000
  // steps, and the first step of the largest size below float's range (a second as large
  // would overflow, as with SGD: that is a divergence, which training reports).
  std::vector<float> q(3, 0.5f);
  Adam<float> flipping(q, g, {.lr = 1, .weight_decay = 2, .decoupled_weight_decay = true});
  for (int step = 0; step < 1000; ++step) flipping.step();
  for (const float v : q) EXPECT_TRUE(std::isfinite(v)) << v;
  std::vector<float> r(3, 0.5f);
  Adam<float> largest(r, g, {.lr = 3.4e37});
  largest.step();
  for (const float v : r) EXPECT_TRUE(std::isfinite(v)) << v;
  std::vector<double> pd(3), gd(3);
  EXPECT_NO_THROW(Adam<double>(pd, gd, {.lr = 1e38}));
}

// Found 2026-12-06 (a helper's probe): set_state_counter took any counter: Adam's t = -1 gave
// NaN parameters at the next step, t = INT64_MAX overflowed its increment, and SGD read 7 as
// "stepped".
TEST(Errors, OptimizerStateCountersOutOfRange) {
  std::vector<float> p(3, 1.0f), g(3, 0.5f);
  Adam<float> adam(p, g, {});
  expect_error([&] { adam.set_state_counter(-1); },
               {"Adam:", "expected a step count from 0 to 2^53, got -1"});
  expect_error([&] { adam.set_state_counter(std::numeric_limits<int64_t>::max()); },
               {"Adam:", "got 9223372036854775807"});
  Adam<float> adamw(p, g, {.decoupled_weight_decay = true});
  expect_error([&] { adamw.set_state_counter(Adam<float>::kMaxSteps + 1); }, {"AdamW:", "2^53"});
  adam.set_state_counter(Adam<float>::kMaxSteps);
  adam.step();
  for (float v : p) EXPECT_TRUE(std::isfinite(v));
  Sgd<float> sgd(p, g, {.lr = 0.1, .momentum = 0.9});
  expect_error([&] { sgd.set_state_counter(-1); },
               {"SGD", "expected a state counter of 0 (before the first step) or 1, got -1"});
  expect_error([&] { sgd.set_state_counter(7); }, {"SGD", "got 7"});
  sgd.set_state_counter(1);
  EXPECT_EQ(sgd.state_counter(), 1);
  sgd.set_state_counter(0);
  EXPECT_EQ(sgd.state_counter(), 0);
}

// Checkpoints move the optimizer's state out and back (take_state, put_state) instead of
// copying it, and a resume hands the loaded tensors over: put_state refuses tensors that are
// not exactly the optimizer's, naming the tensor, what was expected and what was given, and
// leaves both sides as they were.
TEST(Errors, OptimizerPutStateRefusesTensorsThatDoNotFit) {
  using State = Optimizer<float>::StateTensors;
  std::vector<float> p(3, 1.0f), g(3, 0.5f);
  Adam<float> adam(p, g, {});
  State one{{"exp_avg", std::vector<float>(3, 0.25f)}};
  expect_error([&] { adam.put_state(std::move(one)); },
               {"Adam: expected 2 state tensors ('exp_avg', 'exp_avg_sq'), got 1 ('exp_avg')"});
  EXPECT_EQ(one.size(), 1u);  // refused: left as it was
  EXPECT_EQ(one[0].second.size(), 3u);
  State misnamed{{"exp_avg", std::vector<float>(3)}, {"exp_avg_sqq", std::vector<float>(3)}};
  expect_error([&] { adam.put_state(std::move(misnamed)); },
               {"Adam: state tensor 1 is 'exp_avg_sqq', expected 'exp_avg_sq'"});
  State short_one{{"exp_avg", std::vector<float>(3)}, {"exp_avg_sq", std::vector<float>(2)}};
  expect_error([&] { adam.put_state(std::move(short_one)); },
               {"Adam: state tensor 'exp_avg_sq' holds 2 values, expected 3 (one per parameter)"});
  EXPECT_EQ(short_one[1].second.size(), 2u);
  EXPECT_TRUE(adam.exp_avg().empty());  // nothing adopted
  // A second moment below 0 (an edited checkpoint's) made the first step NaN: the run
  // "diverged" (found 2026-12-07); so did a non-finite moment.
  State negative{{"exp_avg", std::vector<float>(3)}, {"exp_avg_sq", {0.5f, -1.0f, 0.5f}}};
  expect_error(
      [&] { adam.put_state(std::move(negative)); },
      {"Adam: state tensor 'exp_avg_sq' holds -1 at index 1, expected a finite value >= 0"});
  State infinite{{"exp_avg", {0, 0, std::numeric_limits<float>::infinity()}},
                 {"exp_avg_sq", std::vector<float>(3)}};
  expect_error([&] { adam.put_state(std::move(infinite)); },
               {"Adam: state tensor 'exp_avg' holds inf at index 2, expected a finite value"});
  EXPECT_TRUE(adam.exp_avg().empty());
  Adam<float> adamw(p, g, {.decoupled_weight_decay = true});
  expect_error([&] { adamw.put_state({}); }, {"AdamW: expected 2 state tensors", "got 0 (none)"});
  Sgd<float> plain(p, g, {.lr = 0.1});
  expect_error(
      [&] {
        plain.put_state(State{{"momentum_buffer", std::vector<float>(3)}});
      },
      {"SGD: expected 0 state tensors (none), got 1 ('momentum_buffer')"});
  EXPECT_NO_THROW(plain.put_state({}));
  Sgd<float> sgd(p, g, {.lr = 0.1, .momentum = 0.9});
  expect_error(
      [&] {
        sgd.put_state(State{{"momentum_buffer", std::vector<float>(4)}});
      },
      {"SGD: state tensor 'momentum_buffer' holds 4 values, expected 3 (one per parameter)"});
  expect_error(
      [&] {
        sgd.put_state(State{{"momentum", std::vector<float>(3)}});
      },
      {"SGD: state tensor 0 is 'momentum', expected 'momentum_buffer'"});
}

// An optimizer allocates its state at its first step or state access, not when built, so
// that a resume's put_state adopts the loaded tensors without the optimizer having held its
// own besides them (found 2026-12-07: 6P floats at that moment for Adam). take_state and
// put_state move the tensors, without a copy, and a run that hands them out and back between
// two steps is the run that never did.
TEST(Errors, OptimizerStateIsAllocatedLazilyAndMovedNotCopied) {
  using State = Optimizer<float>::StateTensors;
  std::vector<float> p(5, 1.0f), q(5, 1.0f), g{0.5f, -0.25f, 1.0f, 0.0f, 2.0f};
  Adam<float> fresh(p, g, {.lr = 0.1});
  EXPECT_TRUE(fresh.exp_avg().empty());  // nothing allocated by the constructor
  EXPECT_TRUE(fresh.exp_avg_sq().empty());
  State loaded{{"exp_avg", std::vector<float>(5, 0.5f)}, {"exp_avg_sq", std::vector<float>(5, 2)}};
  const float* const m = loaded[0].second.data();
  const float* const v = loaded[1].second.data();
  fresh.put_state(std::move(loaded));
  EXPECT_TRUE(loaded.empty());
  EXPECT_EQ(fresh.exp_avg().data(), m);  // adopted, not copied
  EXPECT_EQ(fresh.exp_avg_sq().data(), v);
  // Out and back between steps: the same buffers, the same bits as an optimizer left alone.
  Adam<float> alone(q, g, {.lr = 0.1});
  alone.put_state(
      State{{"exp_avg", std::vector<float>(5, 0.5f)}, {"exp_avg_sq", std::vector<float>(5, 2)}});
  for (int step = 0; step < 3; ++step) {
    fresh.step();
    alone.step();
    State taken = fresh.take_state();
    ASSERT_EQ(taken.size(), 2u);
    EXPECT_EQ(taken[0].first, "exp_avg");
    EXPECT_EQ(taken[0].second.data(), m);
    EXPECT_EQ(taken[1].second.data(), v);
    EXPECT_TRUE(fresh.exp_avg().empty());
    fresh.put_state(std::move(taken));
  }
  EXPECT_EQ(p, q);
  // SGD: the buffer comes with the first step, which starts it as the gradient (counter 0).
  std::vector<float> r(5, 1.0f), s(5, 1.0f);
  Sgd<float> sgd(r, g, {.lr = 0.1, .momentum = 0.9});
  Sgd<float> reference(s, g, {.lr = 0.1, .momentum = 0.9});
  EXPECT_EQ(sgd.state_counter(), 0);
  const auto span = sgd.state_tensors();  // a state access allocates it, as zeros
  ASSERT_EQ(span.size(), 1u);
  EXPECT_EQ(std::vector<float>(span[0].second.begin(), span[0].second.end()),
            std::vector<float>(5, 0.0f));
  for (int step = 0; step < 3; ++step) {
    sgd.step();
    reference.step();
    State taken = sgd.take_state();
    ASSERT_EQ(taken.size(), 1u);
    EXPECT_EQ(taken[0].second, std::vector<float>(reference.state_tensors()[0].second.begin(),
                                                  reference.state_tensors()[0].second.end()));
    sgd.put_state(std::move(taken));
  }
  EXPECT_EQ(r, s);
}

// Found 2026-12-06 (a helper's probe): MaxPool2d took input planes of 2^31 or more elements,
// whose int32 argmax overflowed (undefined behaviour in the kernels' index arithmetic).
TEST(Errors, MaxPoolRefusesPlanesItsInt32ArgmaxCannotIndex) {
  expect_error(
      [] {
        MaxPool2d<float>(2).output_shape(Shape{1, 1, 70000, 70000});
      },
      {"MaxPool2d(kernel=(2, 2)", "at most 2^31 - 1 elements", "70000 x 70000"});
  Sequential<float> model;
  model.emplace<MaxPool2d<>>(2);
  expect_error(
      [&] {
        model.build(Shape{1, 2, int64_t{1} << 30});
      },
      {"Sequential: layer 0 MaxPool2d", "(the argmax is int32), got 2 x 1073741824"});
  // The largest plane that fits is taken (only shapes: nothing is allocated).
  EXPECT_EQ(MaxPool2d<float>(1).output_shape(Shape{1, 1, 1, 2147483647}),
            (Shape{1, 1, 1, 2147483647}));
  expect_error(
      [] {
        MaxPool2d<float>(1).output_shape(Shape{1, 1, 1, 2147483648});
      },
      {"got 1 x 2147483648"});
}

// Found 2026-12-06 (a helper's probe): optimizers over empty spans (an unbuilt model's) were
// accepted and trained nothing. PyTorch: "optimizer got an empty parameter list".
TEST(Errors, OptimizersNeedParameters) {
  std::vector<float> none;
  expect_error([&] { Sgd<float>(none, none, {}); },
               {"SGD", "expected at least one parameter, got none"});
  expect_error([&] { Adam<float>(none, none, {}); },
               {"Adam:", "expected at least one parameter, got none"});
  expect_error([&] { Adam<float>(none, none, {.decoupled_weight_decay = true}); },
               {"AdamW:", "expected at least one parameter, got none"});
  // Before build() the spans are refused as named_parameters() is.
  Sequential<float> unbuilt;
  unbuilt.emplace<Linear<>>(3, 2);
  expect_error([&] { unbuilt.parameters(); }, {"Sequential", "parameters() before build()"});
  expect_error([&] { unbuilt.gradients(); }, {"Sequential", "gradients() before build()"});
  expect_error([&] { unbuilt.buffers(); }, {"Sequential", "buffers() before build()"});
  // A built model without parameters gives empty spans, which an optimizer refuses.
  Sequential<float> no_parameters;
  no_parameters.emplace<ReLU<>>();
  no_parameters.build(Shape{3});
  EXPECT_TRUE(no_parameters.parameters().empty());
  expect_error([&] { Sgd<float>(no_parameters.parameters(), no_parameters.gradients(), {}); },
               {"SGD", "expected at least one parameter, got none"});
}

// Found 2026-12-06 by probing the library's API: each of these crashed, read out of bounds or
// threw a standard exception instead of a cnn::Error.
TEST(Errors, ThreadsBatchesAndLabelsOutOfRange) {
  // libgomp sized a team of INT_MAX threads (481 GB) and ended the process.
  expect_error([] { ops::set_threads(std::numeric_limits<int>::max()); },
               {"set_threads: expected 1 to 1024 threads, got 2147483647"});
  expect_error([] { ops::set_threads(ops::kMaxThreads + 1); }, {"got 1025"});
  // std::length_error, from sizing the order before the check.
  expect_error([] { BatchIterator(-5, 2); },
               {"BatchIterator: expected positive count and batch size, got -5 and 2"});
  // std::length_error from sizing the order (found 2026-12-08, a probe of the API).
  EXPECT_THROW(BatchIterator(std::numeric_limits<int64_t>::max(), 2), OutOfMemory);
  // (count + batch - 1) overflowed: 0 batches an epoch.
  EXPECT_EQ(BatchIterator(5, std::numeric_limits<int64_t>::max()).batches_per_epoch(), 1);
  // Fewer labels than output rows were read past their end.
  Objective objective(LossKind::kCrossEntropy, 3);
  const Tensor<float> outputs(Shape{2, 3}, 0.5f);
  expect_error([&] { objective.loss(outputs, {0}, nullptr); },
               {"Objective: expected one label per output row (2), got 1"});
  expect_error([&] { objective.loss(outputs, {0, 1, 2}, nullptr); }, {"(2), got 3"});
  EXPECT_NO_THROW(objective.loss(outputs, {0, 2}, nullptr));
  expect_error([&] { objective.predict(outputs, 2); },
               {"Objective::predict: expected a row of (N, classes) outputs (2, 3), got row 2"});
  EXPECT_EQ(objective.predict(outputs, 1), 0);
  expect_error([] { Objective(LossKind::kCrossEntropy, 0); },
               {"Objective: expected a positive number of classes, got 0"});
  // xoshiro's one fixed point: normal() looped for ever on it (a checkpoint could hold it).
  expect_error([] { Rng(1).set_state(RngState{}); },
               {"Rng::set_state: the all-zero state is not a state of this generator"});
  // A draw from an empty range was a division by zero (SIGFPE; found 2026-12-07 probing the
  // public API). The refusal draws nothing: the stream goes on as if it had not been called.
  Rng refused(5), untouched(5);
  expect_error([&] { refused.below(0); },
               {"Rng::below: expected n > 0 (a draw from [0, n)), got 0"});
  EXPECT_EQ(refused.below(1000), untouched.below(1000));
}

// Found 2026-12-06: an eps that is positive as a double but 0 as a float (1e-46) was taken,
// and training "diverged" at its first step (0 / 0 for a constant feature). PyTorch, whose
// CPU kernels add eps in double, trains; cnn computes in float, so it is refused.
// Found 2026-12-08 (a probe of the C++ API): a layer index past the model was
// std::out_of_range, a parameter index past the layer's said "not bound", C++'s Residual offered
// "none" and refused it, SGD's put_state took a NaN momentum (Adam refused one), and a label past
// the model's classes did not say that only the command line selects a spec's "classes".
TEST(Errors, IndicesStateAndLabelsTheApiRefusesInItsOwnWords) {
  Sequential<float> model;
  model.emplace<Conv2d<>>(1, 2, 3);
  model.emplace<ReLU<>>();
  model.build(Shape{1, 5, 5});
  expect_error([&] { model.layer(2); },
               {"Sequential: layer 2 asked for, but the model has 2 layers (expected an index "
                "below that)"});
  expect_error([&] { model.layer(0).parameter(5); },
               {"parameter 5 asked for, but the layer has 2 (expected an index below that)"});
  expect_error([&] { model.layer(0).gradient(2); }, {"parameter 2 asked for, but the layer has 2"});
  expect_error([&] { model.layer(1).parameter(0); },
               {"parameter 0 asked for, but the layer has 0"});
  expect_error([&] { model.layer(0).buffer(0); }, {"buffer 0 asked for, but the layer has 0"});
  Conv2d<float> unbound(1, 2, 3);
  expect_error([&] { unbound.parameter(0); }, {"parameters are not bound"});
  std::vector<std::unique_ptr<Layer<float>>> body;
  body.push_back(std::make_unique<ReLU<float>>());
  expect_error([&] { Residual<float>(std::move(body), {}, "none"); },
               {"Residual: expected activation \"ReLU\", \"Tanh\", \"Sigmoid\" or \"\" (none), "
                "got 'none'"});
  std::vector<float> values(4, 0.0f), gradients(4, 0.0f);
  Sgd<float> sgd(values, gradients, {.lr = 0.1, .momentum = 0.9});
  Optimizer<float>::StateTensors state;
  state.emplace_back("momentum_buffer", std::vector<float>{0, 0, std::nanf(""), 0});
  expect_error([&] { sgd.put_state(std::move(state)); },
               {"SGD: state tensor 'momentum_buffer' holds nan at index 2, expected a finite "
                "value"});
  Objective objective(LossKind::kCrossEntropy, 2);
  const Tensor<float> outputs(Shape{1, 2}, 0.5f);
  expect_error([&] { objective.loss(outputs, {5}, nullptr); },
               {"dataset label 5 is outside the model's 2 classes (labels are the model's "
                "classes, 0 to 1: for a spec with \"classes\", pass the data select_classes "
                "gives)"});
}

TEST(Errors, BatchNormEpsThatIsZeroAsAFloatIsRefused) {
  expect_error([] { BatchNorm1d<float>(4, 1e-46); },
               {"BatchNorm1d: expected eps > 0 (also as a float), got 1e-46"});
  EXPECT_NO_THROW(BatchNorm1d<double>(4, 1e-46));
  EXPECT_NO_THROW(BatchNorm2d<float>(4, 1e-40));  // a subnormal float is not 0
  expect_error(
      [] {
        parse_model_spec(R"({"input": [1, 4, 4], "layers": [{"type": "Flatten"},
            {"type": "BatchNorm1d", "eps": 1e-46}, {"type": "Linear", "out_features": 2}]})",
                         "tiny_eps.json");
      },
      {"tiny_eps.json: layer 1", "'eps' expects a number in (0, 1] that is not 0 as a float",
       "got 1e-46"});
}

// Found 2026-12-06: BatchNorm's backward normalises with the latest forward's batch
// statistics, and took any input: a backward of 4 images after a forward of 2 returned a dx of
// -3e7, and a backward before any forward returned values. MaxPool2d and Dropout refused these.
// Found 2026-12-06 (a helper's probe): MaxPool2d's backward before any forward said "expected
// the input of the latest forward (), got ...", and Sequential::output_shape's layer errors
// lacked the "Sequential: layer i" that build() and backward() give.
TEST(Errors, MaxPoolBackwardBeforeForwardAndOutputShapePrefix) {
  MaxPool2d<float> pool(2);
  Tensor<float> x(Shape{1, 1, 4, 4}), dy(Shape{1, 1, 2, 2}), dx(Shape{1, 1, 4, 4});
  expect_error([&] { pool.backward(x, dy, dy, dx); },
               {"MaxPool2d(kernel=(2, 2)", "backward: expected a forward first, got none"});
  expect_error([&] { pool.backward_after_relu(x, dy, dx); },
               {"backward: expected a forward first, got none"});
  Sequential<float> model;
  model.emplace<Conv2d<>>(1, 6, 5, 1, 2);
  model.build(Shape{1, 28, 28});
  // The input of 281474976710 samples fits a Shape (2^48 elements), the convolution's output
  // (6 channels) does not.
  expect_error(
      [&] { model.output_shape(281474976710); },
      {"Sequential: layer 0 Shape: expected at most 2^48 elements", "(281474976710, 6, 28, 28)"});
  expect_error([&] { model.output_shape(0); },
               {"Sequential: output_shape() expected a batch >= 1, got 0"});
}

TEST(Errors, BatchNormBackwardNeedsTheLatestForwardsInput) {
  Sequential<float> model;
  model.emplace<BatchNorm2d<float>>(3);
  model.build(Shape{3, 2, 2});
  BatchNorm2d<float>& norm = dynamic_cast<BatchNorm2d<float>&>(model.layer(0));
  Tensor<float> two(Shape{2, 3, 2, 2}), four(Shape{4, 3, 2, 2});
  for (int64_t i = 0; i < four.numel(); ++i) four[i] = static_cast<float>(i % 5);
  for (int64_t i = 0; i < two.numel(); ++i) two[i] = static_cast<float>(i % 3);
  Tensor<float> y4(four.shape()), dy4(four.shape(), 1.0f), dx4(four.shape());
  expect_error([&] { norm.backward(four, y4, dy4, dx4); },
               {"BatchNorm2d(3", "backward before any forward"});
  Tensor<float> y2(two.shape());
  norm.forward(two, y2, Mode::kTrain);
  expect_error(
      [&] { norm.backward(four, y4, dy4, dx4); },
      {"backward: expected the input of the latest forward (2, 3, 2, 2), got (4, 3, 2, 2)"});
  Tensor<float> dy2(two.shape(), 1.0f), dx2(two.shape());
  EXPECT_NO_THROW(norm.backward(two, y2, dy2, dx2));
}

TEST(Errors, ScheduleSettings) {
  const auto with = [](auto edit) {
    ScheduleOptions o;
    o.total_steps = 10;
    edit(o);
    return o;
  };
  expect_error([&] { validate(with([](ScheduleOptions& o) { o.warmup_steps = 10; })); },
               {"schedule", "warm-up steps in [0, 10)", "got 10"});
  expect_error([&] { validate(with([](ScheduleOptions& o) { o.lr = -1; })); },
               {"schedule", "lr > 0"});
  expect_error([&] { validate(with([](ScheduleOptions& o) { o.gamma = 2; })); },
               {"schedule", "gamma in (0, 1]"});
  // One-cycle over `total` steps, of which `warmup` warm up.
  const auto onecycle = [](int64_t total, int64_t warmup) {
    ScheduleOptions o;
    o.kind = LrSchedule::kOneCycle;
    o.total_steps = total;
    o.warmup_steps = warmup;
    return o;
  };
  expect_error(
      [&] { validate(onecycle(2, 0)); },
      {"schedule", "onecycle rises over the first 30% of its steps and needs at least 4, got 2",
       "(more epochs, or a smaller batch)"});
  expect_error([&] { validate(onecycle(3, 0)); }, {"schedule", "needs at least 4, got 3"});
  EXPECT_NO_THROW(validate(onecycle(4, 0)));
  expect_error(
      [&] { validate(onecycle(10, 1)); },
      {"schedule", "onecycle rises over its warm-up, which needs at least 2 steps, got 1"});
  expect_error([] { parse_schedule("linear"); },
               {"--schedule", "expects constant, step, cosine or onecycle", "'linear'"});
  expect_error([] { parse_optimizer("rmsprop"); },
               {"--optimizer", "expects sgd, adam or adamw", "'rmsprop'"});
}

// Found 2026-12-06 (a helper's probe): scheduled_lr took any step and options (step -1 gave
// -inf, total_steps 0 NaN), and validate() passed settings whose rates are 0 or infinite as
// the optimizers' float: a step schedule of 400 epochs decayed to 0 and train_model failed
// mid-run with SGD's "expected lr > 0, got 0.000000"; a div_factor of 1e300 failed at step 1.
TEST(Errors, ScheduleRatesThatAre0OrInfiniteAsAFloat) {
  ScheduleOptions o;
  o.kind = LrSchedule::kCosine;
  o.total_steps = 10;
  expect_error([&] { scheduled_lr(o, -1); }, {"schedule", "expected a step in [0, 10), got -1"});
  expect_error([&] { scheduled_lr(o, 10); }, {"got 10"});
  EXPECT_GT(scheduled_lr(o, 9), 0);
  ScheduleOptions none = o;
  none.total_steps = 0;
  expect_error([&] { scheduled_lr(none, 0); }, {"schedule", "at least 1 step, got 0"});
  ScheduleOptions negative = o;
  negative.lr = -0.1;
  expect_error([&] { scheduled_lr(negative, 0); }, {"schedule", "lr > 0, got -0.1"});
  ScheduleOptions no_step = o;
  no_step.kind = LrSchedule::kStep;
  no_step.step_size = 0;
  expect_error([&] { scheduled_lr(no_step, 3); }, {"step size >= 1, got 0"});
  // 400 decays by 0.1: 0 as a float (and as a double).
  ScheduleOptions step;
  step.kind = LrSchedule::kStep;
  step.lr = 0.05;
  step.total_steps = 400;
  step.step_size = 1;
  expect_error([&] { validate(step); },
               {"schedule", "the step schedule's last rate lr x gamma^399 = 0.05 x 0.1^399",
                "0 as a float", "a longer step size"});
  step.step_size = 100;  // 3 decays: 5e-05
  EXPECT_NO_THROW(validate(step));
  step.step_size = 8;  // 49 decays: 5e-51, positive as a double, 0 as a float
  EXPECT_GT(scheduled_lr(step, 399), 0);
  expect_error([&] { validate(step); }, {"gamma^49", "is 5e-51, 0 as a float"});
  ScheduleOptions cycle;
  cycle.kind = LrSchedule::kOneCycle;
  cycle.total_steps = 10;
  cycle.div_factor = 1e300;
  expect_error([&] { validate(cycle); },
               {"schedule", "onecycle's first rate lr / div_factor = 0.05 / 1e+300",
                "a smaller div_factor"});
  cycle.div_factor = 25;
  cycle.final_div_factor = 1e300;
  expect_error([&] { validate(cycle); }, {"onecycle's last rate", "final_div_factor"});
  ScheduleOptions warm = o;
  warm.lr = 1e-44;  // a float (denormal), but 1e-46 is not
  warm.warmup_steps = 2;
  expect_error([&] { validate(warm); }, {"the warm-up's first rate lr x warmup_start"});
  ScheduleOptions huge = o;
  huge.lr = 1e39;
  expect_error([&] { validate(huge); }, {"expected lr finite as a float", "got 1e+39"});
  ScheduleOptions tiny = o;
  tiny.lr = 1e-42;  // a float (denormal), but the cosine's floor, lr x 1e-4, is not
  tiny.total_steps = 10000;
  expect_error([&] { validate(tiny); }, {"the last rate is 1e-46"});
}

/// `{"type": "ReLU"}` inside `depth` Residual blocks, each the body of the one around it, after
/// a Flatten: a spec that builds.
std::string nested_residuals(int depth) {
  std::string text = R"({"input": [1, 4, 4], "layers": [{"type": "Flatten"}, )";
  for (int level = 0; level < depth; ++level) text += R"({"type": "Residual", "body": [)";
  text += R"({"type": "ReLU"})";
  for (int level = 0; level < depth; ++level) text += "]}";
  return text + "]}";
}

TEST(Errors, JsonAndResidualBlocksNestedTooDeepAreOneLineNotACrash) {
  // Reading and building a spec recurses once per level of nesting, and so would dump() in
  // an error message: a hostile file 100,000 levels deep exhausted the stack (SIGSEGV).
  const std::string deep = std::string(100000, '[') + std::string(100000, ']');
  for (const std::string& text :
       {R"({"input": )" + deep + R"(, "layers": []})",
        R"({"input": [1, 4, 4], "layers": [{"type": "ReLU", "x": )" + deep + "}]}",
        R"({"input": [1, 4, 4], "layers": [{"type": "Residual", "body": )" + deep + "}]}",
        R"({"input": [1, 4, 4], "layers": [{"type": )" + deep + "}]}",
        R"({"input": [1, 4, 4], "loss": )" + deep + R"(, "layers": [{"type": "ReLU"}]})",
        nested_residuals(100000)}) {
    expect_error([&] { parse_model_spec(text, "deep.json"); },
                 {"deep.json: not valid JSON", "nested deeper than 256 levels"});
  }
  // Residual blocks: 64 levels build, one more is refused by name before it is read further.
  const Sequential<float> model = build_model(parse_model_spec(nested_residuals(64), "n64.json"));
  EXPECT_EQ(dynamic_cast<const Residual<float>&>(model.layer(1)).nesting(), 64);
  expect_error([] { parse_model_spec(nested_residuals(65), "n65.json"); },
               {"n65.json: layer 1: Residual blocks nested deeper than 64 levels"});
  // Built in C++, the constructor counts the levels.
  std::unique_ptr<Layer<float>> inner = std::make_unique<ReLU<float>>();
  for (int level = 0; level < 64; ++level) {
    Residual<float>::Layers body;
    body.push_back(std::move(inner));
    inner = std::make_unique<Residual<float>>(std::move(body));
  }
  Residual<float>::Layers shortcut;
  shortcut.push_back(std::move(inner));
  Residual<float>::Layers body;
  body.push_back(std::make_unique<ReLU<float>>());
  expect_error([&] { Residual<float> block(std::move(body), std::move(shortcut)); },
               {"Residual", "nested at most 64 levels deep", "got 65"});
}

TEST(Errors, AKeyGivenTwiceInASpecIsRefusedAtEveryLevel) {
  // Found 2026-12-06: nlohmann keeps the last of two equal keys, so a spec's
  // {"kernel": 3, "kernel": 5} built a 5x5 convolution without a word.
  for (const auto& [text, key] : std::vector<std::pair<std::string, std::string>>{
           {R"({"input": [1, 8, 8], "layers": [{"type": "Conv2d", "out_channels": 2,
                "kernel": 3, "kernel": 5}]})",
            "kernel"},
           {R"({"input": [1, 8, 8], "input": [1, 9, 9], "layers": [{"type": "ReLU"}]})", "input"},
           {R"({"input": [1, 8, 8], "layers": [{"type": "Residual", "body": [{"type": "ReLU"}],
                "activation": "ReLU", "activation": "Tanh"}]})",
            "activation"},
           {R"({"input": [1, 8, 8], "layers": [{"type": "Residual", "body": [
                {"type": "Conv2d", "out_channels": 1, "kernel": 1, "padding": 0,
                 "padding": 1}]}]})",
            "padding"}}) {
    SCOPED_TRACE(key);
    expect_error([&] { parse_model_spec(text, "twice.json"); },
                 {"twice.json: not valid JSON", "key \"" + key + "\" appears twice in one object"});
  }
  // Past 16 keys an object's keys are kept in a hash set: the same refusal.
  std::string many = R"({"input": [1, 8, 8], "layers": [{"type": "ReLU")";
  for (int k = 0; k < 40; ++k) many += ", \"k" + std::to_string(k) + "\": 0";
  many += R"(, "k5": 1}]})";
  expect_error([&] { parse_model_spec(many, "many.json"); },
               {"many.json: not valid JSON", "key \"k5\" appears twice in one object"});
  // Equal keys in different objects are not duplicates.
  const ModelSpec spec = parse_model_spec(
      R"({"input": [1, 8, 8], "layers": [{"type": "Conv2d", "out_channels": 2, "kernel": 3},
          {"type": "Conv2d", "out_channels": 2, "kernel": 3}, {"type": "Flatten"},
          {"type": "Linear", "out_features": 3}]})",
      "fine.json");
  EXPECT_EQ(spec.layers.size(), 4u);
}

}  // namespace
}  // namespace cnn

// Acceptance 2: layers, losses, SGD and five LeNet-5 training steps match PyTorch 1.13 golden
// values (tests/golden, written by tools/make_golden.py) within 1e-5 relative, in float, on the
// default path and on the reference path.

#include <gtest/gtest-spi.h>
#include <gtest/gtest.h>

#include <functional>
#include <nlohmann/json.hpp>

#include "cnn/cnn.hpp"
#include "golden_util.hpp"
#include "test_models.hpp"
#include "test_paths.hpp"

namespace cnn {
namespace {

using Json = nlohmann::json;
using testing::close_to_golden;
using testing::golden;

/// The layer of a golden case: its keys other than "name" and "layer" are spec keys, so the
/// spec registry builds it as a model would.
std::unique_ptr<Layer<float>> make_layer(const Json& c, const Shape& input) {
  Json layer = c;
  layer.erase("name");
  layer.erase("layer");
  layer["type"] = c.at("layer");
  return build_layer(layer.dump(), input, "golden case " + c.at("name").get<std::string>());
}

/// Runs on the reference path and on the default path of every supported instruction set.
class GoldenTest : public testing::PathTest {};

TEST_P(GoldenTest, Layers) {
  for (const char* file_name :
       {"layers.safetensors", "average_pooling.safetensors", "activations.safetensors"}) {
    const SafeTensorsFile file = SafeTensorsFile::load(golden(file_name));
    const Json cases = Json::parse(file.metadata().at("cases"));
    ASSERT_GE(cases.size(), 7u);
    for (const Json& c : cases) {
      const std::string name = c.at("name");
      SCOPED_TRACE(name);
      const Tensor<float> x = file.tensor<float>(name + ".x");
      auto layer = make_layer(c, x.shape());
      const Tensor<float> dy = file.tensor<float>(name + ".dy");
      Tensor<float> params(Shape{layer->parameter_count()}), grads(Shape{layer->parameter_count()});
      layer->bind_parameters(params.data(), grads.data());
      const std::vector<ParamSpec> specs = layer->parameter_specs();
      for (size_t p = 0; p < specs.size(); ++p) {
        const Tensor<float> value = file.tensor<float>(name + "." + specs[p].name);
        ASSERT_EQ(value.shape(), specs[p].shape);
        std::copy(value.begin(), value.end(), layer->parameter(p).begin());
      }
      Tensor<float> y(layer->output_shape(x.shape()));
      layer->forward(x, y, Mode::kTrain);
      close_to_golden(name + ".y", y, file.tensor<float>(name + ".y"));
      Tensor<float> dx(x.shape());
      layer->backward(x, y, dy, dx);
      close_to_golden(name + ".dx", dx, file.tensor<float>(name + ".dx"));
      for (size_t p = 0; p < specs.size(); ++p) {
        close_to_golden(name + ".d" + specs[p].name, layer->gradient(p),
                        file.tensor<float>(name + ".d" + specs[p].name));
      }
    }
  }
}

TEST_P(GoldenTest, Losses) {
  for (const char* file_name : {"losses.safetensors", "label_smoothing.safetensors"}) {
    const SafeTensorsFile file = SafeTensorsFile::load(golden(file_name));
    const Json cases = Json::parse(file.metadata().at("cases"));
    ASSERT_GE(cases.size(), 4u);
    for (const Json& c : cases) {
      const std::string name = c.at("name"), type = c.at("loss");
      SCOPED_TRACE(name);
      std::unique_ptr<Loss<float>> loss;
      if (type == "LogLoss") loss = std::make_unique<LogLoss<float>>();
      if (type == "CrossEntropyLoss") {
        loss = std::make_unique<CrossEntropyLoss<float>>(c.value("label_smoothing", 0.0f));
      }
      if (type == "MseLoss") loss = std::make_unique<MseLoss<float>>();
      ASSERT_TRUE(loss) << type;
      const Tensor<float> p = file.tensor<float>(name + ".prediction");
      const Tensor<float> t = file.tensor<float>(name + ".target");
      Tensor<float> value(Shape{1}, loss->forward(p, t));
      close_to_golden(name + ".loss", value, file.tensor<float>(name + ".loss"));
      Tensor<float> dp(p.shape());
      loss->backward(p, t, dp);
      close_to_golden(name + ".dprediction", dp, file.tensor<float>(name + ".dprediction"));
    }
  }
}

// The comparison itself: it must fail where the output is wrong, including against a golden
// tensor of zeros (which a purely relative bound would accept whatever the output).
TEST(Golden, TheComparisonFailsOnWrongOutputsAndAgainstAnAllZeroGolden) {
  Tensor<float> zeros(Shape{4}, 0.0f), tiny(Shape{4}, 0.0f), golden_values(Shape{4}),
      wrong(Shape{4});
  tiny[2] = 1e-6f;
  for (int64_t i = 0; i < 4; ++i) {
    golden_values[i] = float(i) - 1.5f;
    wrong[i] = golden_values[i];
  }
  wrong[1] *= 1.001f;
  EXPECT_NONFATAL_FAILURE(close_to_golden("all-zero golden", tiny, zeros), "differs from PyTorch");
  EXPECT_NONFATAL_FAILURE(close_to_golden("all-zero golden", golden_values, zeros),
                          "differs from PyTorch");
  EXPECT_NONFATAL_FAILURE(close_to_golden("wrong", wrong, golden_values), "differs from PyTorch");
  EXPECT_TRUE(close_to_golden("zeros", zeros, zeros));
  EXPECT_TRUE(close_to_golden("equal", golden_values, golden_values));
}

using MakeOptimizer = std::function<std::unique_ptr<Optimizer<float>>(
    const Json& c, std::span<float> params, std::span<const float> grads)>;

/// Runs every case of an optimizer golden file (`<case>.p0`, `.grads` (steps x n), `.p`, the
/// parameters after each step) through the optimizer `make` builds from the case's settings,
/// comparing the parameters after every step.
void check_optimizer_steps(const std::string& file_name, size_t expected_cases,
                           const MakeOptimizer& make) {
  const SafeTensorsFile file = SafeTensorsFile::load(golden(file_name));
  const Json cases = Json::parse(file.metadata().at("cases"));
  ASSERT_EQ(cases.size(), expected_cases);
  for (const Json& c : cases) {
    const std::string name = c.at("name");
    SCOPED_TRACE(name);
    Tensor<float> p = file.tensor<float>(name + ".p0");
    const Tensor<float> grads = file.tensor<float>(name + ".grads");
    const Tensor<float> expected = file.tensor<float>(name + ".p");
    const int64_t n = p.numel(), steps = grads.shape()[0];
    ASSERT_GE(steps, 5);
    Tensor<float> g(p.shape());
    const std::unique_ptr<Optimizer<float>> optimizer =
        make(c, p.view().span(), std::span<const float>(g.data(), static_cast<size_t>(n)));
    for (int64_t s = 0; s < steps; ++s) {
      std::copy(grads.data() + s * n, grads.data() + (s + 1) * n, g.data());
      optimizer->step();
      close_to_golden(name + " step " + std::to_string(s + 1), p,
                      TensorView<const float>(expected.data() + s * n, p.shape()));
    }
    if (const auto* adam = dynamic_cast<const Adam<float>*>(optimizer.get())) {
      EXPECT_EQ(adam->steps(), steps);
    }
  }
}

TEST(Golden, Sgd) {
  check_optimizer_steps("sgd.safetensors", 4, [](const Json& c, auto params, auto grads) {
    return std::make_unique<Sgd<float>>(params, grads,
                                        SgdOptions{.lr = c.at("lr"),
                                                   .momentum = c.at("momentum"),
                                                   .dampening = c.at("dampening"),
                                                   .weight_decay = c.at("weight_decay"),
                                                   .nesterov = c.at("nesterov")});
  });
}

TEST(Golden, AdamAndAdamW) {
  check_optimizer_steps("adam.safetensors", 4, [](const Json& c, auto params, auto grads) {
    return std::make_unique<Adam<float>>(params, grads,
                                         AdamOptions{.lr = c.at("lr"),
                                                     .beta1 = c.at("beta1"),
                                                     .beta2 = c.at("beta2"),
                                                     .eps = c.at("eps"),
                                                     .weight_decay = c.at("weight_decay"),
                                                     .decoupled_weight_decay = c.at("decoupled")});
  });
}

TEST(Golden, LearningRateSchedulesStepByStep) {
  const SafeTensorsFile file = SafeTensorsFile::load(golden("schedules.safetensors"));
  const Json cases = Json::parse(file.metadata().at("cases"));
  ASSERT_EQ(cases.size(), 8u);
  for (const Json& c : cases) {
    const std::string name = c.at("name");
    ScheduleOptions o;
    o.kind = parse_schedule(c.at("kind").get<std::string>());
    o.lr = c.at("lr");
    o.total_steps = c.at("total");
    o.warmup_steps = c.at("warmup");
    o.warmup_start = c.at("warmup_start");
    if (c.contains("step_size")) o.step_size = c.at("step_size");
    if (c.contains("gamma")) o.gamma = c.at("gamma");
    if (c.contains("pct_start")) o.pct_start = c.at("pct_start");
    validate(o);
    const Tensor<float> expected = file.tensor<float>(name + ".lr");
    ASSERT_EQ(expected.numel(), o.total_steps) << name;
    // Element by element relative to each rate: the tails of onecycle and cosine are 10^5
    // times below their peaks, where a bound relative to the largest rate would see nothing.
    double worst = 0;
    for (int64_t t = 0; t < o.total_steps; ++t) {
      const double ours = scheduled_lr(o, t), torch = expected[t];
      worst = std::max(worst, std::abs(ours - torch) / std::abs(torch));
      EXPECT_LE(std::abs(ours - torch), 1e-5 * std::abs(torch)) << name << " step " << t;
    }
    std::printf("%-6s schedule %-16s max |ours - torch| / |torch| %.3g\n",
                worst <= 1e-5 ? "OK" : "NOT OK", name.c_str(), worst);
  }
}

TEST_P(GoldenTest, LeNet5FiveSgdMomentumSteps) {
  const SafeTensorsFile file = SafeTensorsFile::load(golden("lenet5.safetensors"));
  Sequential<float> model = testing::lenet5();
  ASSERT_EQ(model.parameter_count(), 61706);
  for (auto& param : model.named_parameters()) {
    const Tensor<float> init = file.tensor<float>("init." + param.name);
    ASSERT_EQ(init.shape(), param.value.shape()) << param.name;
    std::copy(init.begin(), init.end(), param.value.begin());
  }
  const Json opt = Json::parse(file.metadata().at("optimizer"));
  Sgd<float> sgd(model.parameters(), model.gradients(),
                 {.lr = opt.at("lr"),
                  .momentum = opt.at("momentum"),
                  .dampening = opt.at("dampening"),
                  .weight_decay = opt.at("weight_decay"),
                  .nesterov = opt.at("nesterov")});
  const Tensor<float> x = file.tensor<float>("x");
  const Tensor<float> labels = file.tensor<float>("labels");
  const Tensor<float> expected_losses = file.tensor<float>("losses");
  CrossEntropyLoss<float> loss;
  Tensor<float> losses(Shape{5}), dlogits;
  for (int step = 0; step < 5; ++step) {
    model.zero_grad();
    const TensorView<const float> logits = model.forward(x, Mode::kTrain);
    losses[step] = loss.forward(logits, labels);
    dlogits.resize(logits.shape());
    loss.backward(logits, labels, dlogits);
    model.backward(dlogits);
    sgd.step();
  }
  close_to_golden("lenet5 loss per step", losses, expected_losses);
  for (auto& param : model.named_parameters()) {
    close_to_golden("lenet5 final " + param.name, param.value,
                    file.tensor<float>("final." + param.name));
  }
}

// BatchNorm2d / BatchNorm1d and Residual blocks: three training-mode calls (outputs, input and
// parameter gradients of each), the running statistics and num_batches_tracked after them, and
// an evaluation-mode call with those statistics.
TEST_P(GoldenTest, NormalizationAndResidualInBothModes) {
  const SafeTensorsFile file = SafeTensorsFile::load(golden("normalization.safetensors"));
  const Json cases = Json::parse(file.metadata().at("cases"));
  ASSERT_EQ(cases.size(), 8u);
  for (const Json& c : cases) {
    const std::string name = c.at("name");
    SCOPED_TRACE(name);
    const Shape input = file.tensor<float>(name + ".x0").shape();
    auto layer = make_layer(c, input);
    Tensor<float> params(Shape{layer->parameter_count()}), grads(Shape{layer->parameter_count()});
    Tensor<float> buffers(Shape{layer->buffer_count()});
    layer->bind_parameters(params.data(), grads.data());
    layer->bind_buffers(buffers.data());
    layer->reset_buffers();
    const std::vector<ParamSpec> specs = layer->parameter_specs();
    for (size_t p = 0; p < specs.size(); ++p) {
      const Tensor<float> value = file.tensor<float>(name + "." + specs[p].name);
      ASSERT_EQ(value.shape(), specs[p].shape);
      std::copy(value.begin(), value.end(), layer->parameter(p).begin());
    }
    for (const std::string suffix : {"0", "1", "2", "eval"}) {
      const Tensor<float> x = file.tensor<float>(name + ".x" + suffix);
      Tensor<float> y(layer->output_shape(x.shape())), dx(x.shape());
      grads.fill(0.0f);
      layer->forward(x, y, suffix == "eval" ? Mode::kEval : Mode::kTrain);
      close_to_golden(name + ".y" + suffix, y, file.tensor<float>(name + ".y" + suffix));
      layer->backward(x, y, file.tensor<float>(name + ".dy" + suffix), dx);
      close_to_golden(name + ".dx" + suffix, dx, file.tensor<float>(name + ".dx" + suffix));
      for (size_t p = 0; p < specs.size(); ++p) {
        close_to_golden(name + ".d" + specs[p].name + suffix, layer->gradient(p),
                        file.tensor<float>(name + ".d" + specs[p].name + suffix));
      }
      if (suffix != std::string("2")) continue;
      const std::vector<ParamSpec> buffer_specs = layer->buffer_specs();
      ASSERT_FALSE(buffer_specs.empty());
      for (size_t b = 0; b < buffer_specs.size(); ++b) {
        close_to_golden(name + "." + buffer_specs[b].name, layer->buffer(b),
                        file.tensor<float>(name + "." + buffer_specs[b].name));
      }
    }
  }
}

/// The layers of a spec in double precision (the spec registry builds float models): the types
/// the resnet preset uses.
std::vector<std::unique_ptr<Layer<double>>> layers_in_double(const std::vector<LayerSpec>& specs,
                                                             Shape shape) {
  std::vector<std::unique_ptr<Layer<double>>> layers;
  for (const LayerSpec& l : specs) {
    std::unique_ptr<Layer<double>> layer;
    if (l.type == "Conv2d") {
      layer = std::make_unique<Conv2d<double>>(shape[1], l.out, l.kernel,
                                               l.stride.value_or(Size2(1)), l.padding, l.bias);
    } else if (l.type == "BatchNorm2d") {
      layer = std::make_unique<BatchNorm2d<double>>(shape[1], l.eps, l.momentum, l.affine);
    } else if (l.type == "ReLU") {
      layer = std::make_unique<ReLU<double>>();
    } else if (l.type == "MaxPool2d") {
      layer = std::make_unique<MaxPool2d<double>>(l.kernel, l.stride, l.padding);
    } else if (l.type == "Residual") {
      layer = std::make_unique<Residual<double>>(layers_in_double(l.body, shape),
                                                 layers_in_double(l.shortcut, shape), l.activation);
    } else if (l.type == "AdaptiveAvgPool2d") {
      layer = std::make_unique<AdaptiveAvgPool2d<double>>();
    } else if (l.type == "Flatten") {
      layer = std::make_unique<Flatten<double>>();
    } else if (l.type == "Linear") {
      layer = std::make_unique<Linear<double>>(shape[1], l.out, l.bias);
    }
    EXPECT_TRUE(layer) << l.type;
    if (!layer) return {};
    shape = layer->output_shape(shape);
    layers.push_back(std::move(layer));
  }
  return layers;
}

/// Five SGD steps (momentum, weight decay, label smoothing 0.1) of the resnet preset from the
/// golden initial state; returns the loss of each step.
template <typename T>
Tensor<T> resnet_steps(Sequential<T>& model, const SafeTensorsFile& file) {
  for (auto& param : model.named_parameters()) {
    const Tensor<T> init = file.tensor<T>("init." + param.name);
    EXPECT_EQ(init.shape(), param.value.shape()) << param.name;
    std::copy(init.begin(), init.end(), param.value.begin());
  }
  for (auto& buffer : model.named_buffers()) {
    const Tensor<T> init = file.tensor<T>("init." + buffer.name);
    EXPECT_EQ(init.shape(), buffer.value.shape()) << buffer.name;
    std::copy(init.begin(), init.end(), buffer.value.begin());
  }
  const Json opt = Json::parse(file.metadata().at("optimizer"));
  Sgd<T> sgd(model.parameters(), model.gradients(),
             {.lr = opt.at("lr"),
              .momentum = opt.at("momentum"),
              .dampening = opt.at("dampening"),
              .weight_decay = opt.at("weight_decay"),
              .nesterov = opt.at("nesterov")});
  const Tensor<T> x = file.tensor<T>("x");
  const Tensor<T> labels = file.tensor<T>("labels");
  CrossEntropyLoss<T> loss(std::stod(file.metadata().at("label_smoothing")));
  Tensor<T> losses(Shape{5}), dlogits;
  for (int step = 0; step < 5; ++step) {
    model.zero_grad();
    const TensorView<const T> logits = model.forward(x, Mode::kTrain);
    losses[step] = loss.forward(logits, labels);
    dlogits.resize(logits.shape());
    loss.backward(logits, labels, dlogits);
    model.backward(dlogits);
    sgd.step();
  }
  return losses;
}

/// max |ours - truth| / max |truth| over one tensor.
template <typename T>
double relative_error(TensorView<const T> ours, const Tensor<double>& truth) {
  double diff = 0, scale = 0;
  for (int64_t i = 0; i < truth.numel(); ++i) {
    diff = std::max(diff, std::abs(double(ours[i]) - truth[i]));
    scale = std::max(scale, std::abs(truth[i]));
  }
  return scale > 0 ? diff / scale : diff;
}

// Five training steps of the resnet preset in double precision against PyTorch's float64 run:
// the loss of each step, every final parameter, running statistic and num_batches_tracked, and
// the evaluation-mode logits, each within 1e-5 relative (they agree to about 1e-12).
TEST(Golden, ResnetFiveSgdStepsInDouble) {
  const SafeTensorsFile file = SafeTensorsFile::load(golden("resnet.safetensors"));
  const ModelSpec spec = preset_spec("resnet");
  Sequential<double> model;
  for (auto& layer : layers_in_double(spec.layers, Shape{1, 1, 28, 28}))
    model.add(std::move(layer));
  model.build(spec.input);
  ASSERT_EQ(model.parameter_count(), 308074);
  const Tensor<double> losses = resnet_steps(model, file);
  double worst = relative_error<double>(losses, file.tensor<double>("losses"));
  for (auto& param : model.named_parameters()) {
    const double e =
        relative_error<double>(param.value, file.tensor<double>("final." + param.name));
    EXPECT_LE(e, 1e-5) << param.name;
    worst = std::max(worst, e);
  }
  size_t counters = 0;
  for (auto& buffer : model.named_buffers()) {
    const double e =
        relative_error<double>(buffer.value, file.tensor<double>("final." + buffer.name));
    EXPECT_LE(e, 1e-5) << buffer.name;
    worst = std::max(worst, e);
    counters += buffer.counter;
  }
  EXPECT_EQ(counters, 9u);  // one num_batches_tracked per BatchNorm2d
  const double logits = relative_error<double>(model.forward(file.tensor<double>("x"), Mode::kEval),
                                               file.tensor<double>("eval_logits"));
  EXPECT_LE(logits, 1e-5);
  std::printf("%-6s resnet, double: losses, final state and eval logits, max relative error %.3g\n",
              std::max(worst, logits) <= 1e-5 ? "OK" : "NOT OK", std::max(worst, logits));
}

/// The five resnet steps in float on the current path: the loss of each step within 1e-5
/// relative of PyTorch's, and each final tensor and the evaluation logits (BatchNorm folded)
/// within twice the error that float32 rounding gives PyTorch (its largest over the input and
/// three one-ulp perturbations of it, "torch32_error.<name>", floor 1e-6) from the float64
/// answer. A bound of 1e-5 per tensor would ask for luck: on this very input PyTorch's float32
/// run lands 5e-7 from float64, on the input moved by one ulp 4e-3 (tools/make_golden.py).
void check_resnet_in_float() {
  const SafeTensorsFile file = SafeTensorsFile::load(golden("resnet.safetensors"));
  Sequential<float> model = build_model(preset_spec("resnet"));
  const Tensor<float> losses = resnet_steps(model, file);
  close_to_golden("resnet loss per step", losses, file.tensor<float>("losses"));
  double worst_ratio = 0;
  const auto compare = [&](const std::string& name, TensorView<const float> ours,
                           const std::string& key, const std::string& error_key) {
    const double error = relative_error<float>(ours, file.tensor<double>(key));
    const double torch_error = std::max(file.tensor<double>(error_key)[0], 1e-6);
    EXPECT_LE(error, 2 * torch_error)
        << name << ": cnn float " << error << " from float64, PyTorch float32 " << torch_error;
    worst_ratio = std::max(worst_ratio, error / torch_error);
  };
  for (auto& param : model.named_parameters())
    compare(param.name, param.value, "final." + param.name, "torch32_error." + param.name);
  for (auto& buffer : model.named_buffers()) {
    if (buffer.counter) {  // num_batches_tracked: exact
      EXPECT_EQ(buffer.value[0], file.tensor<double>("final." + buffer.name)[0]) << buffer.name;
      continue;
    }
    compare(buffer.name, buffer.value, "final." + buffer.name, "torch32_error." + buffer.name);
  }
  compare("eval logits", model.forward(file.tensor<float>("x"), Mode::kEval), "eval_logits",
          "torch32_error.eval_logits");
  std::printf("%-6s resnet, float, %s: worst error from float64 / PyTorch float32's %.3g\n",
              worst_ratio <= 2 ? "OK" : "NOT OK",
              ops::reference_mode() ? "reference" : ops::conv_algorithm_name(ops::conv_algorithm()),
              worst_ratio);
}

// The default path (what `cnn train` runs).
TEST(Golden, ResnetFiveSgdStepsInFloatOnTheDefaultPath) {
  check_resnet_in_float();
}

// kAuto on every instruction set: the forced paths below never take its exceptions, such as
// Winograd F(4x4, 3x3) for the last block's 4x4 layer (the golden batch is 32 images).
TEST(Golden, ResnetFiveSgdStepsInFloatByAutoOnEveryInstructionSet) {
  const ops::Isa saved_isa = ops::isa();
  const ops::ConvAlgorithm saved_conv = ops::conv_algorithm();
  ops::set_conv_algorithm(ops::ConvAlgorithm::kAuto);
  for (const ops::Isa isa : ops::supported_isas()) {
    ops::set_isa(isa);
    SCOPED_TRACE(ops::isa_name(isa));
    check_resnet_in_float();
  }
  ops::set_conv_algorithm(saved_conv);
  ops::set_isa(saved_isa);
}

// Every path: each instruction set with each forced convolution algorithm, and the reference.
TEST_P(GoldenTest, ResnetFiveSgdStepsInFloat) {
  check_resnet_in_float();
}

INSTANTIATE_TEST_SUITE_P(Paths, GoldenTest, ::testing::ValuesIn(testing::all_paths()),
                         testing::path_test_name);

}  // namespace
}  // namespace cnn

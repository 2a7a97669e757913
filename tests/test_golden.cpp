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

std::string golden(const std::string& file) {
  return std::string(CNN_GOLDEN_DIR) + "/" + file;
}

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
  for (const char* file_name : {"layers.safetensors", "average_pooling.safetensors"}) {
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

INSTANTIATE_TEST_SUITE_P(Paths, GoldenTest, ::testing::ValuesIn(testing::all_paths()),
                         testing::path_test_name);

}  // namespace
}  // namespace cnn

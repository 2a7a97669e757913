// Acceptance 1: every layer and loss passes the generic contract checker over a sweep of
// shapes, on the default path and on the reference path; and the checker fails on layers that
// break the contract on purpose.

#include <gtest/gtest.h>
#include <iostream>
#include <memory>
#include <sstream>
#include <tuple>

#include "cnn/layers.hpp"
#include "cnn/loss.hpp"
#include "cnn/ops.hpp"
#include "cnn/residual.hpp"
#include "contract_checker.hpp"

namespace cnn {
namespace {

using testing::check_layer;
using testing::check_loss;
using testing::CheckReport;

/// Runs the test body once on the default path and once on the reference path (in double, so
/// the instruction set does not matter: the packed kernels are float only).
class ContractTest : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override { ops::set_reference_mode(GetParam()); }
  void TearDown() override { ops::set_reference_mode(false); }
};

std::string path_name(const ::testing::TestParamInfo<bool>& info) {
  return info.param ? "reference" : "default";
}

struct ConvCase {
  int64_t batch, in_channels, out_channels, h, w, kh, kw, sh, sw, ph, pw;
  bool bias;
  std::string str() const {
    std::ostringstream out;
    out << "batch=" << batch << " in=" << in_channels << " out=" << out_channels << " hw=" << h
        << "x" << w << " kernel=" << kh << "x" << kw << " stride=" << sh << "x" << sw
        << " padding=" << ph << "x" << pw << " bias=" << bias;
    return out.str();
  }
};

/// Every kernel (1, 2, 3, 5, 2x3, 3x2) x stride (1, 2, 3) x padding (0, 1, 2), with batch
/// 1 / 3, odd and even H and W and 1..8 channels cycling through the cases, plus a stride and
/// padding that differ between height and width.
std::vector<ConvCase> conv_cases() {
  const int64_t kernels[][2] = {{1, 1}, {2, 2}, {3, 3}, {5, 5}, {2, 3}, {3, 2}};
  std::vector<ConvCase> cases;
  int64_t i = 0;
  for (const auto& k : kernels)
    for (int64_t stride = 1; stride <= 3; ++stride)
      for (int64_t pad = 0; pad <= 2; ++pad, ++i) {
        ConvCase c{};
        c.batch = i % 2 == 0 ? 1 : 3;
        c.in_channels = 1 + i % 8;
        c.out_channels = 1 + (i * 3 + 2) % 8;
        c.h = 5 + i % 4;                                                 // 5..8
        c.w = 5 + (i * 3) % 5;                                           // 5..9
        if (c.in_channels * c.out_channels * c.batch > 60) c.batch = 1;  // keep the sweep fast
        c.kh = k[0];
        c.kw = k[1];
        c.sh = c.sw = stride;
        c.ph = c.pw = pad;
        c.bias = i % 5 != 4;
        cases.push_back(c);
      }
  cases.push_back({2, 3, 4, 7, 6, 3, 2, 2, 1, 1, 0, true});  // anisotropic stride and padding
  cases.push_back({1, 2, 3, 5, 8, 1, 3, 1, 3, 2, 1, true});
  return cases;
}

TEST_P(ContractTest, Conv2dSweep) {
  const std::vector<ConvCase> cases = conv_cases();
  const size_t step = 1;
  double max_error = 0;
  int64_t points = 0, checked_cases = 0;
  for (size_t i = 0; i < cases.size(); i += step, ++checked_cases) {
    const ConvCase& c = cases[i];
    Conv2d<double> conv(c.in_channels, c.out_channels, Size2(c.kh, c.kw), Size2(c.sh, c.sw),
                        Size2(c.ph, c.pw), c.bias);
    const CheckReport report =
        check_layer(conv, Shape{c.batch, c.in_channels, c.h, c.w}, {.seed = 100 + i});
    EXPECT_TRUE(report.ok()) << c.str() << "\n" << report.summary();
    max_error = std::max(max_error, report.max_relative_error);
    points += report.points_checked;
  }
  std::cout << "Conv2d: " << checked_cases << " shapes, " << points
            << " gradient entries differenced, max relative error " << max_error << "\n";
}

TEST_P(ContractTest, Conv2dSamePadding) {
  for (int64_t k : {1, 3, 5}) {
    Conv2d<double> conv(2, 3, k, 1, Padding2::Same());
    EXPECT_EQ(conv.output_shape(Shape{1, 2, 6, 5}), (Shape{1, 3, 6, 5}));
    const CheckReport report = check_layer(conv, Shape{3, 2, 6, 5}, {.seed = 7});
    EXPECT_TRUE(report.ok()) << "kernel " << k << "\n" << report.summary();
  }
}

TEST_P(ContractTest, MaxPool2dSweep) {
  int64_t i = 0;
  for (const auto& [kh, kw] : {std::pair{1, 1}, {2, 2}, {3, 3}, {5, 5}, {2, 3}})
    for (int64_t stride = 1; stride <= 3; ++stride)
      for (int64_t pad = 0; pad <= 2; ++pad, ++i) {
        if (2 * pad > kh || 2 * pad > kw) continue;  // PyTorch's rule, enforced by the layer
        const int64_t batch = i % 2 == 0 ? 1 : 3, channels = 1 + i % 8;
        const int64_t h = 5 + i % 4, w = 6 + (i * 3) % 5;
        MaxPool2d<double> pool(Size2(kh, kw), Size2(stride, stride), Size2(pad, pad));
        const CheckReport report = check_layer(pool, Shape{batch, channels, h, w},
                                               {.seed = 200 + static_cast<uint64_t>(i)});
        EXPECT_TRUE(report.ok()) << pool.describe() << " on " << batch << "x" << channels << "x"
                                 << h << "x" << w << "\n"
                                 << report.summary();
      }
}

TEST_P(ContractTest, AvgPool2dSweep) {
  int64_t i = 0;
  for (const auto& [kh, kw] : {std::pair{1, 1}, {2, 2}, {3, 3}, {5, 5}, {2, 3}})
    for (int64_t stride = 1; stride <= 3; ++stride)
      for (int64_t pad = 0; pad <= 2; ++pad, ++i) {
        if (2 * pad > kh || 2 * pad > kw) continue;  // PyTorch's rule, enforced by the layer
        for (bool count_include_pad : {true, false}) {
          const int64_t batch = i % 2 == 0 ? 1 : 3, channels = 1 + i % 8;
          const int64_t h = 5 + i % 4, w = 6 + (i * 3) % 5;
          AvgPool2d<double> pool(Size2(kh, kw), Size2(stride, stride), Size2(pad, pad),
                                 count_include_pad);
          const CheckReport report = check_layer(pool, Shape{batch, channels, h, w},
                                                 {.seed = 250 + static_cast<uint64_t>(i)});
          EXPECT_TRUE(report.ok()) << pool.describe() << " on " << batch << "x" << channels << "x"
                                   << h << "x" << w << "\n"
                                   << report.summary();
        }
      }
  AdaptiveAvgPool2d<double> global;
  for (const Shape& shape : {Shape{1, 1, 1, 1}, Shape{2, 3, 5, 7}, Shape{3, 8, 4, 4}}) {
    const CheckReport report = check_layer(global, shape, {.seed = 260});
    EXPECT_TRUE(report.ok()) << global.describe() << " on " << shape.str() << "\n"
                             << report.summary();
  }
}

// Dropout's kTrain and kEval forwards differ by design: each mode's own function is checked,
// kTrain with its mask held fixed; the mode-agnostic check must refuse it.
TEST_P(ContractTest, DropoutInEachMode) {
  for (double p : {0.0, 0.3, 0.7}) {
    for (Mode mode : {Mode::kTrain, Mode::kEval}) {
      Dropout<double> dropout(p);
      Rng seed(9);
      dropout.init_parameters(seed, Init::kPyTorchDefault);
      dropout.hold_mask(true);
      for (const Shape& shape : {Shape{1, 7}, Shape{3, 4, 5, 2}}) {
        const CheckReport report =
            check_layer(dropout, shape, {.seed = 600, .modes_differ = true, .mode = mode});
        EXPECT_TRUE(report.ok()) << dropout.describe()
                                 << (mode == Mode::kTrain ? " train" : " eval") << " on "
                                 << shape.str() << "\n"
                                 << report.summary();
      }
    }
  }
  Dropout<double> dropout(0.5);
  dropout.hold_mask(true);
  EXPECT_FALSE(check_layer(dropout, Shape{2, 6}, {.seed = 601}).ok())
      << "the mode-agnostic check must see that kTrain and kEval differ";
}

// BatchNorm's modes differ by design (batch statistics in kTrain, running ones in kEval): each
// mode's own function is checked, over odd shapes, with and without the affine parameters.
TEST_P(ContractTest, BatchNormInEachMode) {
  struct Case {
    Shape shape;
    bool affine;
  };
  for (Mode mode : {Mode::kTrain, Mode::kEval}) {
    for (const Case& c : {Case{{2, 3, 5, 7}, true}, Case{{1, 4, 3, 3}, true},
                          Case{{3, 1, 2, 5}, false}, Case{{5, 6, 1, 1}, true}}) {
      BatchNorm2d<double> norm(c.shape[1], 1e-5, 0.1, c.affine);
      const CheckReport report =
          check_layer(norm, c.shape, {.seed = 700, .modes_differ = true, .mode = mode});
      EXPECT_TRUE(report.ok()) << norm.describe() << (mode == Mode::kTrain ? " train" : " eval")
                               << " on " << c.shape.str() << "\n"
                               << report.summary();
    }
    for (const Case& c : {Case{{4, 5}, true}, Case{{3, 2, 7}, true}, Case{{2, 3}, false}}) {
      BatchNorm1d<double> norm(c.shape[1], 1e-3, 0.3, c.affine);
      const CheckReport report =
          check_layer(norm, c.shape, {.seed = 701, .modes_differ = true, .mode = mode});
      EXPECT_TRUE(report.ok()) << norm.describe() << (mode == Mode::kTrain ? " train" : " eval")
                               << " on " << c.shape.str() << "\n"
                               << report.summary();
    }
  }
  BatchNorm2d<double> norm(3);
  EXPECT_FALSE(check_layer(norm, Shape{2, 3, 4, 4}, {.seed = 702}).ok())
      << "the mode-agnostic check must see that kTrain and kEval differ";
}

/// Layers for the Residual cases, in double.
std::vector<std::unique_ptr<Layer<double>>> conv_norm(int64_t in, int64_t out, int64_t kernel,
                                                      int64_t stride, bool relu) {
  std::vector<std::unique_ptr<Layer<double>>> layers;
  layers.push_back(
      std::make_unique<Conv2d<double>>(in, out, kernel, stride, Padding2(kernel / 2), false));
  layers.push_back(std::make_unique<BatchNorm2d<double>>(out));
  if (relu) layers.push_back(std::make_unique<ReLU<double>>());
  return layers;
}

std::vector<std::unique_ptr<Layer<double>>> join(std::vector<std::unique_ptr<Layer<double>>> a,
                                                 std::vector<std::unique_ptr<Layer<double>>> b) {
  for (auto& layer : b) a.push_back(std::move(layer));
  return a;
}

// Residual blocks in both modes: identity and projection shortcuts, with and without the
// activation, plain layers without BatchNorm, and a block nested in another's body.
TEST_P(ContractTest, ResidualInEachMode) {
  for (Mode mode : {Mode::kTrain, Mode::kEval}) {
    struct Case {
      std::string name;
      std::unique_ptr<Residual<double>> block;
      Shape shape;
    };
    std::vector<Case> cases;
    cases.push_back({"identity",
                     std::make_unique<Residual<double>>(
                         join(conv_norm(3, 3, 3, 1, true), conv_norm(3, 3, 3, 1, false))),
                     Shape{2, 3, 5, 6}});
    cases.push_back({"projection",
                     std::make_unique<Residual<double>>(
                         join(conv_norm(2, 4, 3, 2, true), conv_norm(4, 4, 3, 1, false)),
                         conv_norm(2, 4, 1, 2, false)),
                     Shape{2, 2, 7, 5}});
    std::vector<std::unique_ptr<Layer<double>>> plain;
    plain.push_back(std::make_unique<Linear<double>>(6, 6));
    plain.push_back(std::make_unique<Tanh<double>>());
    cases.push_back({"no activation",
                     std::make_unique<Residual<double>>(
                         std::move(plain), std::vector<std::unique_ptr<Layer<double>>>{}, ""),
                     Shape{3, 6}});
    std::vector<std::unique_ptr<Layer<double>>> outer = conv_norm(2, 3, 1, 1, true);
    outer.push_back(std::make_unique<Residual<double>>(
        join(conv_norm(3, 3, 3, 1, true), conv_norm(3, 3, 3, 1, false))));
    std::vector<std::unique_ptr<Layer<double>>> outer_shortcut;
    outer_shortcut.push_back(std::make_unique<Conv2d<double>>(2, 3, 1));
    cases.push_back(
        {"nested",
         std::make_unique<Residual<double>>(std::move(outer), std::move(outer_shortcut), "Tanh"),
         Shape{2, 2, 4, 5}});
    for (Case& c : cases) {
      const CheckReport report =
          check_layer(*c.block, c.shape, {.seed = 710, .modes_differ = true, .mode = mode});
      EXPECT_TRUE(report.ok()) << c.name << " " << c.block->describe()
                               << (mode == Mode::kTrain ? " train" : " eval") << " on "
                               << c.shape.str() << "\n"
                               << report.summary();
    }
  }
}

TEST_P(ContractTest, LinearSweep) {
  for (const auto& [batch, in, out, bias] :
       {std::tuple{1, 1, 1, true}, {3, 5, 4, true}, {2, 8, 3, false}, {3, 17, 9, true}}) {
    Linear<double> linear(in, out, bias);
    const CheckReport report = check_layer(linear, Shape{batch, in}, {.seed = 300});
    EXPECT_TRUE(report.ok()) << linear.describe() << "\n" << report.summary();
  }
}

TEST_P(ContractTest, ElementwiseAndShapeLayers) {
  std::vector<std::unique_ptr<Layer<double>>> layers;
  layers.push_back(std::make_unique<ReLU<double>>());
  layers.push_back(std::make_unique<Tanh<double>>());
  layers.push_back(std::make_unique<Sigmoid<double>>());
  layers.push_back(std::make_unique<Softmax<double>>());
  layers.push_back(std::make_unique<Flatten<double>>());
  for (auto& layer : layers) {
    for (const Shape& shape : {Shape{1, 7}, Shape{3, 4, 5, 3}, Shape{3, 8, 2, 2}}) {
      const CheckReport report = check_layer(*layer, shape, {.seed = 400});
      EXPECT_TRUE(report.ok()) << layer->describe() << " on " << shape.str() << "\n"
                               << report.summary();
    }
  }
}

// LeakyReLU (a positive, a negative and PyTorch's default slope) and ReLU6, whose kinks the
// checker skips as it does ReLU's; ReLU6's inputs are N(0, 16) so that some lie beyond 6.
TEST_P(ContractTest, LeakyReluAndRelu6) {
  std::vector<std::pair<std::unique_ptr<Layer<double>>, double>> layers;
  for (double slope : {0.01, 0.2, -1.5})
    layers.emplace_back(std::make_unique<LeakyReLU<double>>(slope), 1.0);
  layers.emplace_back(std::make_unique<ReLU6<double>>(), 4.0);
  for (auto& [layer, scale] : layers) {
    for (const Shape& shape : {Shape{1, 7}, Shape{3, 4, 5, 3}, Shape{3, 8, 2, 2}}) {
      const CheckReport report = check_layer(*layer, shape, {.seed = 410, .input_scale = scale});
      EXPECT_TRUE(report.ok()) << layer->describe() << " on " << shape.str() << "\n"
                               << report.summary();
    }
  }
}

std::vector<double> uniform(Rng& rng, int64_t n, double lo, double hi) {
  std::vector<double> v(static_cast<size_t>(n));
  for (double& e : v) e = rng.uniform(lo, hi);
  return v;
}

TEST_P(ContractTest, Losses) {
  Rng rng(500);
  for (const Shape& shape : {Shape{1, 1}, Shape{3, 1}, Shape{4, 5}, Shape{2, 3, 2, 2}}) {
    LogLoss<double> log_loss;
    // Probabilities away from the clamp; targets both hard (0 / 1) and soft.
    const std::vector<double> p = uniform(rng, shape.numel(), 0.1, 0.9);
    std::vector<double> t = uniform(rng, shape.numel(), 0.0, 1.0);
    for (size_t i = 0; i < t.size(); i += 2) t[i] = t[i] < 0.5 ? 0.0 : 1.0;
    CheckReport report = check_loss(log_loss, p, shape, t, shape);
    EXPECT_TRUE(report.ok()) << "LogLoss " << shape.str() << "\n" << report.summary();

    MseLoss<double> mse;
    const std::vector<double> q = uniform(rng, shape.numel(), -2, 2);
    report = check_loss(mse, q, shape, uniform(rng, shape.numel(), -2, 2), shape);
    EXPECT_TRUE(report.ok()) << "MseLoss " << shape.str() << "\n" << report.summary();
  }
  for (const auto& [batch, classes, smoothing] : {std::tuple{1, 2, 0.0},
                                                  {3, 10, 0.0},
                                                  {5, 7, 0.0},
                                                  {1, 2, 0.3},
                                                  {3, 10, 0.1},
                                                  {5, 7, 0.25}}) {
    SCOPED_TRACE("label smoothing " + std::to_string(smoothing));
    CrossEntropyLoss<double> ce(smoothing);
    const std::vector<double> logits = uniform(rng, batch * classes, -3, 3);
    std::vector<double> labels(static_cast<size_t>(batch));
    for (double& l : labels) l = static_cast<double>(rng.below(static_cast<uint64_t>(classes)));
    const Shape logits_shape{batch, classes};
    CheckReport report = check_loss(ce, logits, logits_shape, labels, Shape{batch});
    EXPECT_TRUE(report.ok()) << "CrossEntropyLoss indices " << batch << "x" << classes << "\n"
                             << report.summary();
    std::vector<double> soft = uniform(rng, batch * classes, 0, 1);
    for (int64_t n = 0; n < batch; ++n) {
      double sum = 0;
      for (int64_t k = 0; k < classes; ++k) sum += soft[static_cast<size_t>(n * classes + k)];
      for (int64_t k = 0; k < classes; ++k) soft[static_cast<size_t>(n * classes + k)] /= sum;
    }
    report = check_loss(ce, logits, logits_shape, soft, logits_shape);
    EXPECT_TRUE(report.ok()) << "CrossEntropyLoss soft " << batch << "x" << classes << "\n"
                             << report.summary();
  }
}

INSTANTIATE_TEST_SUITE_P(Paths, ContractTest, ::testing::Values(false, true), path_name);

// ---- the checker itself must fail on broken layers ------------------------------------------

enum class Flaw {
  kNone,
  kWrongInputGradient,
  kWrongWeightGradient,
  kAssignsGradients,
  kLeavesDxUnwritten,
  kModeDependent
};

/// A Linear layer with one deliberate contract violation.
class BrokenLinear final : public Layer<double> {
 public:
  explicit BrokenLinear(Flaw flaw) : inner_(4, 3), flaw_(flaw) {}
  std::string type() const override { return "BrokenLinear"; }
  std::string describe() const override { return "BrokenLinear"; }
  Shape output_shape(const Shape& in) const override { return inner_.output_shape(in); }
  std::vector<ParamSpec> parameter_specs() const override { return inner_.parameter_specs(); }
  double forward_flops(const Shape& in) const override { return inner_.forward_flops(in); }

 protected:
  void forward_impl(TensorView<const double> x, TensorView<double> y, Mode mode) override {
    inner_.bind_parameters(value_data(0), gradient_data(0));
    inner_.forward(x, y, mode);
    if (flaw_ == Flaw::kModeDependent && mode == Mode::kEval) y[0] += 1e-3;
  }
  void backward_impl(TensorView<const double> x, TensorView<const double> y,
                     TensorView<const double> dy, TensorView<double> dx) override {
    inner_.bind_parameters(value_data(0), gradient_data(0));
    const int64_t count = parameter_count();
    if (flaw_ == Flaw::kAssignsGradients)
      std::fill(gradient_data(0), gradient_data(0) + count, 0.0);
    inner_.backward(x, y, dy, dx);
    if (flaw_ == Flaw::kWrongInputGradient) dx[1] *= 1.001;
    if (flaw_ == Flaw::kWrongWeightGradient) gradient_data(0)[2] += 1e-4;
    if (flaw_ == Flaw::kLeavesDxUnwritten)
      dx[dx.numel() - 1] = std::numeric_limits<double>::quiet_NaN();
  }

 private:
  Linear<double> inner_;
  Flaw flaw_;
};

TEST(ContractChecker, PassesTheCorrectLayer) {
  BrokenLinear layer(Flaw::kNone);
  const CheckReport report = check_layer(layer, Shape{2, 4});
  EXPECT_TRUE(report.ok()) << report.summary();
}

TEST(ContractChecker, FailsOnEachDeliberateViolation) {
  for (Flaw flaw : {Flaw::kWrongInputGradient, Flaw::kWrongWeightGradient, Flaw::kAssignsGradients,
                    Flaw::kLeavesDxUnwritten, Flaw::kModeDependent}) {
    BrokenLinear layer(flaw);
    const CheckReport report = check_layer(layer, Shape{2, 4});
    EXPECT_FALSE(report.ok()) << "flaw " << static_cast<int>(flaw) << " went unnoticed";
  }
}

/// A ReLU whose backward uses PyTorch's derivative with a wrong slope: caught by differences.
class LeakyBackwardReLU final : public Layer<double> {
 public:
  std::string type() const override { return "LeakyBackwardReLU"; }
  std::string describe() const override { return "LeakyBackwardReLU"; }
  Shape output_shape(const Shape& in) const override { return in; }
  double forward_flops(const Shape& in) const override { return in.numel(); }

 protected:
  void forward_impl(TensorView<const double> x, TensorView<double> y, Mode) override {
    ops::relu_forward(y.data(), x.data(), x.numel());
  }
  void backward_impl(TensorView<const double> x, TensorView<const double>,
                     TensorView<const double> dy, TensorView<double> dx) override {
    for (int64_t i = 0; i < x.numel(); ++i) dx[i] = x[i] < 0 ? 0.01 * dy[i] : dy[i];
  }
};

/// BatchNorm2d whose training backward drops the term through the variance (dx = g invstd
/// (dy - mean(dy))): the checker must catch it.
class BatchNormWithoutVarianceTerm final : public Layer<double> {
 public:
  explicit BatchNormWithoutVarianceTerm(int64_t channels) : inner_(channels) {}
  std::string type() const override { return "BatchNormWithoutVarianceTerm"; }
  std::string describe() const override { return "BatchNormWithoutVarianceTerm"; }
  Shape output_shape(const Shape& in) const override { return inner_.output_shape(in); }
  std::vector<ParamSpec> parameter_specs() const override { return inner_.parameter_specs(); }
  std::vector<ParamSpec> buffer_specs() const override { return inner_.buffer_specs(); }
  double forward_flops(const Shape& in) const override { return inner_.forward_flops(in); }

 protected:
  void forward_impl(TensorView<const double> x, TensorView<double> y, Mode mode) override {
    inner_.bind_parameters(value_data(0), gradient_data(0));
    inner_.bind_buffers(buffer_data(0));
    inner_.forward(x, y, mode);
  }
  void backward_impl(TensorView<const double> x, TensorView<const double> y,
                     TensorView<const double> dy, TensorView<double> dx) override {
    inner_.backward(x, y, dy, dx);  // the correct parameter gradients
    const int64_t n = x.shape()[0], c = x.shape()[1], inner = x.numel() / (n * c);
    std::vector<double> mean(static_cast<size_t>(c)), var(static_cast<size_t>(c));
    ops::batchnorm_statistics(mean.data(), var.data(), x.data(), {n, c, inner});
    for (int64_t k = 0; k < c; ++k) {
      double sum = 0;
      for (int64_t b = 0; b < n; ++b)
        for (int64_t i = 0; i < inner; ++i) sum += dy[(b * c + k) * inner + i];
      const double scale = value_data(0)[k] / std::sqrt(var[static_cast<size_t>(k)] + 1e-5);
      for (int64_t b = 0; b < n; ++b)
        for (int64_t i = 0; i < inner; ++i) {
          const int64_t e = (b * c + k) * inner + i;
          dx[e] = scale * (dy[e] - sum / static_cast<double>(n * inner));
        }
    }
  }

 private:
  BatchNorm2d<double> inner_;
};

TEST(ContractChecker, FailsOnABatchNormWithoutItsVarianceTerm) {
  BatchNormWithoutVarianceTerm layer(3);
  const CheckReport report =
      check_layer(layer, Shape{2, 3, 4, 4}, {.modes_differ = true, .mode = Mode::kTrain});
  EXPECT_FALSE(report.ok());
  EXPECT_NE(report.summary().find("dL/dx"), std::string::npos) << report.summary();
}

TEST(ContractChecker, FailsOnAWrongActivationDerivative) {
  LeakyBackwardReLU layer;
  const CheckReport report = check_layer(layer, Shape{3, 5});
  EXPECT_FALSE(report.ok());
}

}  // namespace
}  // namespace cnn

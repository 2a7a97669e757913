// Tensors, the RNG, initialisation, Sequential, safetensors and IDX files.

#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <utility>
#include <vector>

#include "cnn/cnn.hpp"
#include "cnn/layer_chain.hpp"
#include "expect_error.hpp"
#include "test_models.hpp"
#include "test_paths.hpp"

namespace cnn {
namespace {

namespace fs = std::filesystem;

using testing::expect_error;
using testing::expect_refused;

TEST(Tensor, AlignedZeroedAndReusesCapacity) {
  Tensor<float> t(Shape{3, 5});
  EXPECT_EQ(reinterpret_cast<uintptr_t>(t.data()) % 64, 0u);
  for (float v : t) EXPECT_EQ(v, 0.0f);
  const float* before = t.data();
  t.resize(Shape{5, 3});
  EXPECT_EQ(t.data(), before);
  t.resize(Shape{2, 2});
  EXPECT_EQ(t.data(), before);
  EXPECT_EQ(t.shape().str(), "(2, 2)");
  EXPECT_THROW(t.view().reshape(Shape{5}), Error);
  EXPECT_EQ(t.view().reshape(Shape{4}).shape(), Shape{4});
  Tensor<float> copy = t;
  copy[0] = 3;
  EXPECT_EQ(t[0], 0.0f);
}

// Found 2026-12-06 (probing the API): a default-constructed or moved-from tensor counted one
// element (its shape () does) with no storage, so copying or filling it wrote through a null
// pointer: copies of unbuilt layers, losses and models crashed.
TEST(Tensor, EmptyTensorsHaveNoElementsAndCopyAsEmpty) {
  Tensor<float> empty;
  EXPECT_EQ(empty.numel(), 0);
  EXPECT_EQ(empty.begin(), empty.end());
  empty.fill(1.0f);
  Tensor<float> copy(empty);
  EXPECT_EQ(copy.numel(), 0);
  EXPECT_EQ(copy.data(), nullptr);
  Tensor<float> full(Shape{4}, 2.0f);
  full = empty;
  EXPECT_EQ(full.numel(), 0);
  Tensor<float> source(Shape{4}, 1.0f);
  Tensor<float> moved(std::move(source));
  EXPECT_EQ(source.numel(), 0);  // NOLINT(bugprone-use-after-move): what is left is empty
  float sum = 0;
  for (float v : source) sum += v;  // NOLINT(bugprone-use-after-move)
  EXPECT_EQ(sum, 0.0f);
  Tensor<float> scalar(Shape(), 7.0f);  // a counter's shape (): one element
  EXPECT_EQ(scalar.numel(), 1);
  EXPECT_EQ(Tensor<float>(scalar)[0], 7.0f);
  // Found 2026-12-08 (a probe of the C++ API): a view of an empty tensor counted one element
  // (its shape, ()), so a loop over it read address 0; and a self-move lost the shape.
  for (const TensorView<float>& view : {empty.view(), TensorView<float>(nullptr, Shape{2, 3})}) {
    EXPECT_EQ(view.numel(), 0);
    EXPECT_EQ(view.begin(), view.end());
    EXPECT_TRUE(view.span().empty());
  }
  EXPECT_EQ(scalar.view().numel(), 1);  // a scalar with its element is one
  Tensor<float> self(Shape{2, 3}, 5.0f);
  Tensor<float>& alias = self;
  self = std::move(alias);
  EXPECT_EQ(self.shape(), (Shape{2, 3}));
  EXPECT_EQ(self[5], 5.0f);
  // Copies of things that hold tensors before any use.
  MaxPool2d<float> pool(2);
  MaxPool2d<float> pool_copy(pool);
  CrossEntropyLoss<float> loss;
  CrossEntropyLoss<float> loss_copy(loss);
  Sequential<float> unbuilt;
  unbuilt.emplace<Linear<>>(3, 3);
  EXPECT_EQ(unbuilt.parameter_count(), 0);
  unbuilt.zero_grad();
}

// Found 2026-12-06: a backward given an empty view (no data) as the output gradient read
// through a null pointer; forward refused empty views already.
TEST(Sequential, BackwardRefusesEmptyViews) {
  Sequential<float> model;
  model.emplace<Linear<>>(3, 2);
  model.build(Shape{3});
  Tensor<float> x(Shape{1, 3}, 1.0f);
  model.forward(x, Mode::kTrain);
  EXPECT_THROW(model.backward(TensorView<const float>(nullptr, Shape{1, 2})), Error);
  Linear<float> linear(3, 2);
  Tensor<float> params(Shape{linear.parameter_count()}), grads(Shape{linear.parameter_count()});
  linear.bind_parameters(params.data(), grads.data());
  Tensor<float> y(Shape{1, 2}), dy(Shape{1, 2}, 1.0f), dx(Shape{1, 3});
  linear.forward(x, y, Mode::kTrain);
  try {
    linear.backward(x, y, TensorView<const float>(nullptr, Shape{1, 2}), dx);
    ADD_FAILURE() << "a backward read an empty output gradient";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("must not be empty views"), std::string::npos) << e.what();
  }
  linear.backward(x, y, dy, {});  // an empty dx means "not needed"
}

// Found 2026-12-06 (a helper's probe of the API): the defaulted moves left the moved-from
// model built with no layers, so that its forward returned its input as the "output".
TEST(Sequential, AMovedFromModelIsEmptyAndUnbuilt) {
  Sequential<float> model = testing::lenet5();
  Tensor<float> x(Shape{2, 1, 28, 28}, 0.5f);
  const std::vector<float> before = [&] {
    const auto y = model.forward(x, Mode::kEval);
    return std::vector<float>(y.begin(), y.end());
  }();
  Sequential<float> moved(std::move(model));
  const auto check_empty = [&](Sequential<float>& from) {
    EXPECT_FALSE(from.built());
    EXPECT_EQ(from.size(), 0u);
    EXPECT_EQ(from.parameter_count(), 0);
    EXPECT_EQ(from.sample_shape(), Shape());
    try {
      from.forward(x, Mode::kEval);
      ADD_FAILURE() << "a moved-from model ran forward";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("before build()"), std::string::npos) << e.what();
    }
    // It is an empty model again: layers can be added and built.
    from.emplace<Flatten<>>();
    from.emplace<Linear<>>(4, 2);
    from.build(Shape{4});
    EXPECT_EQ(from.forward(Tensor<float>(Shape{3, 4}, 1.0f), Mode::kEval).shape(), (Shape{3, 2}));
  };
  check_empty(model);
  const auto y = moved.forward(x, Mode::kEval);
  EXPECT_EQ(std::vector<float>(y.begin(), y.end()), before);
  Sequential<float> assigned;
  assigned = std::move(moved);
  check_empty(moved);
  const auto z = assigned.forward(x, Mode::kEval);
  EXPECT_EQ(std::vector<float>(z.begin(), z.end()), before);
}

TEST(Rng, SameSeedSameNumbersAndSaneMoments) {
  Rng a(42), b(42), c(43);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(a.next_u64(), b.next_u64());
  EXPECT_NE(a.next_u64(), c.next_u64());
  Rng r(7);
  double sum = 0, sum2 = 0;
  const int n = 200000;
  for (int i = 0; i < n; ++i) {
    const double z = r.normal();
    sum += z;
    sum2 += z * z;
  }
  EXPECT_NEAR(sum / n, 0.0, 0.01);
  EXPECT_NEAR(sum2 / n, 1.0, 0.01);
  for (int i = 0; i < 1000; ++i) EXPECT_LT(r.below(7), 7u);
}

TEST(Init, BoundsAndVariancesMatchTheirDefinitions) {
  const int64_t fan_in = 150, fan_out = 400, n = 60000;
  std::vector<double> w(n);
  Rng rng(3);
  const auto moments = [&](Init init) {
    init_weights(w.data(), n, fan_in, fan_out, rng, init);
    double max_abs = 0, var = 0;
    for (double v : w) {
      max_abs = std::max(max_abs, std::abs(v));
      var += v * v;
    }
    return std::pair{max_abs, var / n};
  };
  auto [bound, var] = moments(Init::kPyTorchDefault);  // U(+-1/sqrt(fan_in))
  EXPECT_LE(bound, 1 / std::sqrt(150.0));
  EXPECT_NEAR(var, 1.0 / (3 * 150), 0.03 / (3 * 150));
  std::tie(bound, var) = moments(Init::kHeNormal);
  EXPECT_NEAR(var, 2.0 / 150, 0.03 * 2.0 / 150);
  std::tie(bound, var) = moments(Init::kHeUniform);
  EXPECT_LE(bound, std::sqrt(6.0 / 150));
  EXPECT_NEAR(var, 2.0 / 150, 0.03 * 2.0 / 150);
  std::tie(bound, var) = moments(Init::kXavierUniform);
  EXPECT_LE(bound, std::sqrt(6.0 / 550));
  EXPECT_NEAR(var, 2.0 / 550, 0.03 * 2.0 / 550);
  std::tie(bound, var) = moments(Init::kXavierNormal);
  EXPECT_NEAR(var, 2.0 / 550, 0.03 * 2.0 / 550);
  std::vector<double> b(10, 1.0);
  init_bias(b.data(), 10, fan_in, rng, Init::kHeNormal);
  for (double v : b) EXPECT_EQ(v, 0.0);
  EXPECT_EQ(init_from_string("xavier_uniform"), Init::kXavierUniform);
  EXPECT_THROW(init_from_string("glorot"), Error);
}

TEST(Sequential, LeNet5ShapesNamesAndParameterCount) {
  Sequential<float> model = testing::lenet5();
  EXPECT_EQ(model.parameter_count(), 61706);
  EXPECT_EQ(model.output_shape(7), (Shape{7, 10}));
  std::vector<std::string> names;
  for (const auto& p : model.named_parameters()) names.push_back(p.name);
  EXPECT_EQ(names,
            (std::vector<std::string>{"0.weight", "0.bias", "3.weight", "3.bias", "7.weight",
                                      "7.bias", "9.weight", "9.bias", "11.weight", "11.bias"}));
  EXPECT_THROW(model.backward(Tensor<float>(Shape{7, 10})), Error);  // before forward
  EXPECT_THROW(model.add(std::make_unique<ReLU<float>>()), Error);   // after build
}

// Found 2026-12-07: a layer's parameter count was summed in int64 as it came, so a Residual of
// 65536 Linear layers of 2^48 weights each (a spec of 3 MB) counted 2^64 = 0 parameters; the
// model's total then read 167,772,170 (`cnn info`), and training would have bound its layers
// far past the buffer allocated. A total past 2^48 now reads as 2^48 + 1, which is refused.
TEST(Sequential, AParameterTotalPastInt64IsRefusedNotWrapped) {
  Residual<float>::Layers body;
  for (int i = 0; i < 65536; ++i)
    body.push_back(std::make_unique<Linear<float>>(1 << 24, 1 << 24, false));
  auto block = std::make_unique<Residual<float>>(std::move(body), Residual<float>::Layers{}, "");
  EXPECT_EQ(block->parameter_count(), kMaxElements + 1);
  Sequential<float> model;
  model.emplace<Flatten<float>>();
  model.add(std::move(block));
  model.emplace<Linear<float>>(1 << 24, 10);
  try {
    model.layout(Shape{1, 4096, 4096});
    ADD_FAILURE() << "a model of 2^64 parameters was laid out";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()),
              "Sequential: layer 1 takes the parameter count past 2^48 (the layers before it "
              "have 0)");
  }
  EXPECT_THROW(model.build(Shape{1, 4096, 4096}), Error);
  EXPECT_FALSE(model.built());
}

TEST(Sequential, SameSeedSameModelAndTrainingReducesTheLoss) {
  Sequential<float> a = testing::lenet5(), b = testing::lenet5();
  Rng ra(11), rb(11);
  a.init_parameters(ra);
  b.init_parameters(rb);
  EXPECT_TRUE(std::equal(a.parameters().begin(), a.parameters().end(), b.parameters().begin()));

  Rng data(5);
  Tensor<float> x(Shape{10, 1, 28, 28}), labels(Shape{10});
  for (float& v : x) v = float(data.normal());
  for (int64_t i = 0; i < 10; ++i) labels[i] = float(i);
  CrossEntropyLoss<float> loss;
  Sgd<float> sgd(a.parameters(), a.gradients(), {.lr = 0.05, .momentum = 0.9});
  Tensor<float> dlogits;
  float first = 0, last = 0;
  for (int step = 0; step < 30; ++step) {
    a.zero_grad();
    const auto logits = a.forward(x, Mode::kTrain);
    last = loss.forward(logits, labels);
    if (step == 0) first = last;
    dlogits.resize(logits.shape());
    loss.backward(logits, labels, dlogits);
    a.backward(dlogits);
    sgd.step();
  }
  EXPECT_LT(last, 0.1f * first) << "first " << first << " last " << last;
}

TEST(Sequential, GradientsAccumulateUntilZeroed) {
  Sequential<float> model;
  model.emplace<Linear<float>>(3, 2);
  model.build(Shape{3});
  Rng rng(1);
  model.init_parameters(rng);
  Tensor<float> x(Shape{4, 3}, 0.5f), dy(Shape{4, 2}, 1.0f);
  model.forward(x, Mode::kTrain);
  model.backward(dy);
  const std::vector<float> once(model.gradients().begin(), model.gradients().end());
  model.backward(dy);
  for (size_t i = 0; i < once.size(); ++i) EXPECT_FLOAT_EQ(model.gradients()[i], 2 * once[i]);
  model.zero_grad();
  for (float g : model.gradients()) EXPECT_EQ(g, 0.0f);
}

// Found 2026-12-07: every model had a gradient buffer as large as its parameters from build(),
// so a model loaded to evaluate held a second model's worth of zeros. A model built for
// inference has none; the first call that needs them allocates them (zeroed), and it then
// trains as a model built for training does.
TEST(Sequential, AModelBuiltForInferenceAllocatesItsGradientsWhenTrained) {
  Sequential<float> trained = build_model(preset_spec("lenet5"));
  Sequential<float> loaded = build_model(preset_spec("lenet5"), ModelUse::kInference);
  EXPECT_TRUE(trained.has_gradients());
  EXPECT_FALSE(loaded.has_gradients());
  Rng ra(3), rb(3);
  trained.init_parameters(ra);
  loaded.init_parameters(rb);
  for (const auto& p : loaded.named_parameters()) EXPECT_TRUE(p.gradient.empty()) << p.name;
  // Evaluation needs none.
  Tensor<float> x(Shape{4, 1, 28, 28}), labels(Shape{4}), dlogits;
  Rng data(5);
  for (float& v : x) v = float(data.normal());
  for (int64_t i = 0; i < 4; ++i) labels[i] = float(i);
  loaded.forward(x, Mode::kEval);
  EXPECT_FALSE(loaded.has_gradients());
  // A layer bound without gradients refuses a backward by name.
  EXPECT_THROW(loaded.layer(0).gradient(0), Error);
  // Two steps each: the optimizer's span is taken before the first (gradients() allocates).
  CrossEntropyLoss<float> loss;
  for (Sequential<float>* model : {&trained, &loaded}) {
    Sgd<float> sgd(model->parameters(), model->gradients(), {.lr = 0.05, .momentum = 0.9});
    for (int step = 0; step < 2; ++step) {
      model->zero_grad();
      const auto logits = model->forward(x, Mode::kTrain);
      loss.forward(logits, labels);
      dlogits.resize(logits.shape());
      loss.backward(logits, labels, dlogits);
      model->backward(dlogits);
      sgd.step();
    }
  }
  EXPECT_TRUE(loaded.has_gradients());
  for (const auto& p : loaded.named_parameters()) EXPECT_FALSE(p.gradient.empty()) << p.name;
  ASSERT_EQ(loaded.gradients().size(), trained.gradients().size());
  EXPECT_TRUE(std::equal(trained.gradients().begin(), trained.gradients().end(),
                         loaded.gradients().begin()));
  EXPECT_TRUE(std::equal(trained.parameters().begin(), trained.parameters().end(),
                         loaded.parameters().begin()));
  // backward() alone allocates them too (a Residual's children and the fused pairs included),
  // and they are a model built for training's, bit for bit.
  Sequential<float> resnet = build_model(preset_spec("resnet"), ModelUse::kInference);
  Sequential<float> resnet_trained = build_model(preset_spec("resnet"));
  EXPECT_FALSE(resnet.has_gradients());
  Rng rc(7), rd(7);
  resnet.init_parameters(rc);
  resnet_trained.init_parameters(rd);
  const Shape& sample = resnet.sample_shape();
  Tensor<float> image(Shape{2, sample[0], sample[1], sample[2]});
  for (float& v : image) v = float(data.normal());
  for (Sequential<float>* model : {&resnet, &resnet_trained}) {
    const auto out = model->forward(image, Mode::kTrain);
    Tensor<float> dy(out.shape());
    for (int64_t i = 0; i < dy.numel(); ++i) dy[i] = float(i % 7) - 3.0f;
    model->backward(dy);
  }
  EXPECT_TRUE(resnet.has_gradients());
  double total = 0;
  for (float g : resnet.gradients()) total += std::fabs(g);
  EXPECT_GT(total, 0.0);
  ASSERT_EQ(resnet.gradients().size(), resnet_trained.gradients().size());
  EXPECT_TRUE(std::equal(resnet_trained.gradients().begin(), resnet_trained.gradients().end(),
                         resnet.gradients().begin()));
}

/// Runs the model's layers one at a time (no fused pairs), forward then backward from dy:
/// returns the output; the parameter gradients are left in the model (zeroed first).
/// A Residual with a ReLU run as its layers, each alone (a Residual among them too): the body,
/// then the shortcut, forward one layer at a time, ops::add_forward with the ReLU; backward
/// ops::relu_backward of the sum, each branch one layer at a time, ops::accumulate of the two
/// input gradients. None of the chain's fused steps runs.
class ResidualByLayers {
 public:
  explicit ResidualByLayers(Residual<float>& block) : block_(block) {}
  void forward(TensorView<const float> x, TensorView<float> y, Mode mode) {
    x_ = x;
    const TensorView<const float> a = run(true, mode), b = run(false, mode);
    sum_.resize(a.shape());
    ops::add_forward(sum_.data(), y.data(), a.data(), b.data(), a.numel(), true);
  }
  void backward(TensorView<const float> dy, TensorView<float> dx) {
    Tensor<float> g(sum_.shape());
    ops::relu_backward(g.data(), sum_.data(), dy.data(), g.numel());
    const Tensor<float> body_dx = back(true, g), shortcut_dx = back(false, g);
    if (dx.empty()) return;
    std::copy(body_dx.data(), body_dx.data() + dx.numel(), dx.data());
    ops::accumulate(dx.data(), shortcut_dx.data(), dx.numel());
  }

 private:
  Layer<float>& layer(bool body, size_t i) { return body ? block_.body(i) : block_.shortcut(i); }
  size_t size(bool body) const { return body ? block_.body_size() : block_.shortcut_size(); }
  TensorView<const float> run(bool body, Mode mode);
  Tensor<float> back(bool body, const Tensor<float>& g);
  Residual<float>& block_;
  TensorView<const float> x_;
  std::vector<Tensor<float>> outs_[2];                       // [body]: each layer's output
  std::vector<std::unique_ptr<ResidualByLayers>> inner_[2];  // [body][i]: a nested Residual's
  Tensor<float> sum_;
};

TensorView<const float> ResidualByLayers::run(bool body, Mode mode) {
  auto& outs = outs_[body];
  auto& inner = inner_[body];
  outs.resize(size(body));
  inner.resize(size(body));
  TensorView<const float> current = x_;
  for (size_t i = 0; i < size(body); ++i) {
    outs[i].resize(layer(body, i).output_shape(current.shape()));
    if (auto* nested = dynamic_cast<Residual<float>*>(&layer(body, i))) {
      inner[i] = std::make_unique<ResidualByLayers>(*nested);
      inner[i]->forward(current, outs[i].view(), mode);
    } else {
      layer(body, i).forward(current, outs[i].view(), mode);
    }
    current = outs[i].view();
  }
  return current;
}

Tensor<float> ResidualByLayers::back(bool body, const Tensor<float>& g) {
  Tensor<float> upstream = g;
  for (size_t k = size(body); k-- > 0;) {
    const TensorView<const float> in = k == 0 ? x_ : outs_[body][k - 1].view();
    Tensor<float> dx(in.shape());
    if (inner_[body][k]) {
      inner_[body][k]->backward(upstream, dx.view());
    } else {
      layer(body, k).backward(in, outs_[body][k].view(), upstream, dx.view());
    }
    upstream = std::move(dx);
  }
  return upstream;
}

/// model's forward and backward one top-level layer at a time (and with into_residuals, each
/// Residual with a ReLU opened into its layers too: ResidualByLayers): returns the output and
/// leaves the parameter gradients (zeroed first) in the model.
std::vector<float> layer_by_layer(Sequential<float>& model, const Tensor<float>& x,
                                  const Tensor<float>& dy, Mode mode, bool into_residuals = false) {
  std::vector<Tensor<float>> outs(model.size());
  std::vector<std::unique_ptr<ResidualByLayers>> opened(model.size());
  TensorView<const float> current = x;
  for (size_t i = 0; i < model.size(); ++i) {
    outs[i].resize(model.layer(i).output_shape(current.shape()));
    auto* block = dynamic_cast<Residual<float>*>(&model.layer(i));
    if (into_residuals && block && block->activation() == "ReLU") {
      opened[i] = std::make_unique<ResidualByLayers>(*block);
      opened[i]->forward(current, outs[i].view(), mode);
    } else {
      model.layer(i).forward(current, outs[i].view(), mode);
    }
    current = outs[i].view();
  }
  const std::vector<float> y(current.begin(), current.end());
  model.zero_grad();
  Tensor<float> upstream = dy;
  for (size_t k = model.size(); k-- > 0;) {
    const TensorView<const float> in = k == 0 ? TensorView<const float>(x) : outs[k - 1].view();
    Tensor<float> dx(in.shape());
    const TensorView<float> wanted = k == 0 ? TensorView<float>() : dx.view();
    if (opened[k]) {
      opened[k]->backward(upstream, wanted);
    } else {
      model.layer(k).backward(in, outs[k].view(), upstream, wanted);
    }
    upstream = std::move(dx);
  }
  return y;
}

/// Conv2d(2, 3, 3x3, padding 1) [+ ReLU] + MaxPool2d(kernel, stride 2, padding kernel - 2) +
/// Flatten + Linear(48, 5) on 2x8x8 images, initialised from `seed`: with the ReLU, Sequential
/// runs it and the pooling as one pass.
Sequential<float> conv_pool_model(int64_t kernel, bool with_relu, uint64_t seed) {
  Sequential<float> model;
  model.emplace<Conv2d<float>>(2, 3, 3, 1, 1);
  if (with_relu) model.emplace<ReLU<float>>();
  model.emplace<MaxPool2d<float>>(kernel, 2, kernel - 2);
  model.emplace<Flatten<float>>();
  model.emplace<Linear<float>>(3 * 4 * 4, 5);
  model.build(Shape{2, 8, 8});
  Rng rng(seed);
  model.init_parameters(rng);
  return model;
}

// Sequential runs a ReLU followed by a MaxPool2d as one pass (MaxPool2d::forward_after_relu),
// without the ReLU's output. Its output and gradients must be those of the layers run one by
// one, bit for bit, on both a 2x2 / stride-2 pool and an overlapping one.
TEST(Sequential, FusedReluMaxPoolGivesTheLayerByLayerResults) {
  for (int64_t kernel : {2, 3}) {
    Sequential<float> model = conv_pool_model(kernel, true, 7);
    Rng rng(8);
    Tensor<float> x(Shape{3, 2, 8, 8});
    // Exact zeros and ties among the ReLU's inputs are where the pair's order matters: with
    // no bias, the convolution of the images' zero top halves gives them.
    const TensorView<float> bias = model.named_parameters()[1].value;
    std::fill(bias.data(), bias.data() + bias.numel(), 0.0f);
    for (int64_t i = 0; i < x.numel(); ++i) {
      x.data()[i] = (i / 8) % 8 < 4 ? 0.0f : static_cast<float>(rng.normal());
    }
    Tensor<float> dy(Shape{3, 5});
    for (int64_t i = 0; i < dy.numel(); ++i) dy.data()[i] = static_cast<float>(rng.normal());

    const TensorView<const float> fused_out = model.forward(x, Mode::kTrain);
    const std::vector<float> fused_y(fused_out.data(), fused_out.data() + fused_out.numel());
    model.zero_grad();
    model.backward(dy);
    const std::vector<float> fused_grads(model.gradients().begin(), model.gradients().end());

    // The same layers, one at a time.
    const std::vector<float> y = layer_by_layer(model, x, dy, Mode::kTrain);
    ASSERT_EQ(0, std::memcmp(fused_y.data(), y.data(), fused_y.size() * sizeof(float)));
    ASSERT_EQ(0, std::memcmp(fused_grads.data(), model.gradients().data(),
                             fused_grads.size() * sizeof(float)))
        << "kernel " << kernel;
  }
}

// A kEval forward pools without the argmax; a backward after it must recompute it from its own
// input, not use the one a kTrain forward on other images left: the output and gradients equal
// those of a kTrain forward on the same images, bit for bit, with the pooling fused after a
// ReLU and alone, on the 2x2 / stride-2 path and on an overlapping window.
TEST(Sequential, MaxPoolBackwardAfterAnEvaluationForwardRecomputesTheArgmax) {
  for (const bool fused : {true, false})
    for (int64_t kernel : {2, 3}) {
      Sequential<float> model = conv_pool_model(kernel, fused, 5);
      Rng rng(6);
      Tensor<float> before(Shape{3, 2, 8, 8}), x(Shape{3, 2, 8, 8}), dy(Shape{3, 5});
      for (float& v : before) v = static_cast<float>(rng.normal());
      for (float& v : x) v = static_cast<float>(rng.normal());
      for (float& v : dy) v = static_cast<float>(rng.normal());

      model.forward(before, Mode::kTrain);
      const TensorView<const float> eval_out = model.forward(x, Mode::kEval);
      const std::vector<float> eval_y(eval_out.begin(), eval_out.end());
      model.zero_grad();
      model.backward(dy);
      const std::vector<float> eval_grads(model.gradients().begin(), model.gradients().end());

      const TensorView<const float> train_out = model.forward(x, Mode::kTrain);
      const std::vector<float> train_y(train_out.begin(), train_out.end());
      model.zero_grad();
      model.backward(dy);
      SCOPED_TRACE(std::string(fused ? "ReLU + MaxPool2d" : "MaxPool2d") + ", kernel " +
                   std::to_string(kernel));
      ASSERT_EQ(0, std::memcmp(eval_y.data(), train_y.data(), eval_y.size() * sizeof(float)));
      ASSERT_EQ(0, std::memcmp(eval_grads.data(), model.gradients().data(),
                               eval_grads.size() * sizeof(float)));
    }
}

/// Running means N(0, 0.3^2) and variances in [0.5, 1.5) for every BatchNorm of `model`, from
/// rng: evaluation then normalises with statistics unlike any batch's.
void randomise_running_statistics(Sequential<float>& model, Rng& rng) {
  for (const auto& b : model.named_buffers())
    for (int64_t i = 0; i < b.value.numel(); ++i) {
      if (b.name.find("running_mean") != std::string::npos)
        b.value.data()[i] = static_cast<float>(rng.normal()) * 0.3f;
      if (b.name.find("running_var") != std::string::npos)
        b.value.data()[i] = 0.5f + static_cast<float>(rng.uniform());
    }
}

/// BatchNorm scales (rank-1 weights) in [0.5, 1.5) and every bias N(0, bias_sd^2), from rng:
/// affine maps away from the identity.
void randomise_affines(Sequential<float>& model, Rng& rng, float bias_sd) {
  for (const auto& p : model.named_parameters())
    for (int64_t i = 0; i < p.value.numel(); ++i) {
      if (p.value.shape().rank() == 1 && p.name.find("weight") != std::string::npos)
        p.value.data()[i] = 0.5f + static_cast<float>(rng.uniform());
      if (p.name.find("bias") != std::string::npos)
        p.value.data()[i] = static_cast<float>(rng.normal()) * bias_sd;
    }
}

/// Conv2d(channels, channels, 3x3, padding 1) [+ BatchNorm2d] + ReLU [+ MaxPool2d(2)] on
/// channels x h x w images, its biases and BatchNorm affine away from 0 and 1 and its running
/// statistics away from 0 and 1, from `seed`.
Sequential<float> conv_relu_model(int64_t channels, int64_t h, int64_t w, bool with_norm,
                                  bool with_pool, uint64_t seed) {
  Sequential<float> model;
  model.emplace<Conv2d<float>>(channels, channels, 3, 1, 1);
  if (with_norm) model.emplace<BatchNorm2d<float>>(channels);
  model.emplace<ReLU<float>>();
  if (with_pool) model.emplace<MaxPool2d<float>>(2);
  model.build(Shape{channels, h, w});
  Rng rng(seed);
  model.init_parameters(rng);
  for (const auto& p : model.named_parameters())
    for (int64_t i = 0; i < p.value.numel(); ++i) {
      if (p.name.find("1.") == 0) p.value.data()[i] = static_cast<float>(rng.normal());
    }
  randomise_running_statistics(model, rng);
  return model;
}

/// The model of conv_relu_model on x in kEval, run as one fused step: its output must be the
/// folded convolution's (ops::conv2d_forward with the BatchNorm's scale and shifted bias) ReLU,
/// pooled when the model pools, bit for bit; a backward after it must give the layer-by-layer
/// kEval gradients, bit for bit; twice in a row.
void expect_fused_conv_relu_matches_the_ops(Sequential<float>& model, const Tensor<float>& x,
                                            bool with_norm, bool with_pool) {
  const auto& conv = static_cast<const Conv2d<float>&>(model.layer(0));
  const ops::ConvShape shape = conv.conv_shape(x.shape());
  ASSERT_TRUE(with_pool ? ops::conv2d_relu_maxpool2x2_fusable(shape)
                        : ops::conv2d_relu_fusable(shape))
      << ops::conv2d_forward_method(shape);
  const int64_t channels = shape.out_channels;
  std::vector<float> bias(conv.parameter(1).data(), conv.parameter(1).data() + channels),
      scale(static_cast<size_t>(channels), 1.0f), shift(static_cast<size_t>(channels));
  if (with_norm) {
    static_cast<const BatchNorm2d<float>&>(model.layer(1)).eval_affine(scale.data(), shift.data());
    for (size_t o = 0; o < bias.size(); ++o) bias[o] = bias[o] * scale[o] + shift[o];
  }
  Tensor<float> conv_y(Shape{shape.batch, channels, shape.out_h, shape.out_w});
  ops::conv2d_forward(conv_y.data(), x.data(), conv.parameter(0).data(), bias.data(), shape,
                      with_norm ? scale.data() : nullptr);
  Tensor<float> expected(model.output_shape(x.shape()[0]));
  if (with_pool) {
    ops::relu_maxpool2d_forward(
        expected.data(), nullptr, conv_y.data(),
        ops::make_pool_shape(shape.batch, channels, shape.out_h, shape.out_w, 2, 2, 2, 2, 0, 0));
  } else {
    ops::relu_forward(expected.data(), conv_y.data(), conv_y.numel());
  }
  Rng rng(5);
  Tensor<float> dy(expected.shape());
  for (int64_t i = 0; i < dy.numel(); ++i) dy.data()[i] = static_cast<float>(rng.normal());
  for (int round = 0; round < 2; ++round) {
    const TensorView<const float> out = model.forward(x, Mode::kEval);
    ASSERT_EQ(out.shape(), expected.shape());
    ASSERT_EQ(0, std::memcmp(out.data(), expected.data(), expected.numel() * sizeof(float)))
        << "round " << round;
    model.zero_grad();
    model.backward(dy);
    const std::vector<float> grads(model.gradients().begin(), model.gradients().end());
    layer_by_layer(model, x, dy, Mode::kEval);
    ASSERT_EQ(0, std::memcmp(grads.data(), model.gradients().data(), grads.size() * sizeof(float)))
        << "round " << round;
  }
}

/// Images of channels x h x w, image 0 all zeros (exact zeros and ties among its outputs), the
/// others normal, from `seed`.
Tensor<float> images_with_a_blank(int64_t batch, int64_t channels, int64_t h, int64_t w,
                                  uint64_t seed) {
  Rng rng(seed);
  Tensor<float> x(Shape{batch, channels, h, w});
  for (int64_t i = 0; i < x.numel(); ++i)
    x.data()[i] = i < channels * h * w ? 0.0f : static_cast<float>(rng.normal());
  return x;
}

// In kEval a Conv2d, a ReLU and a 2x2 / stride-2 MaxPool2d, with a BatchNorm2d folded into the
// convolution or without one, run as one step when the direct kernels take the convolution
// (ops::conv2d_relu_maxpool2x2_forward; 9 x 11 images, so the pooling drops a row and a
// column).
TEST(Sequential, FusedConvReluMaxPoolInEvaluationGivesThePairsResults) {
  for (const bool with_norm : {false, true}) {
    SCOPED_TRACE(with_norm ? "with BatchNorm2d" : "without");
    Sequential<float> model = conv_relu_model(2, 9, 11, with_norm, true, 21);
    expect_fused_conv_relu_matches_the_ops(model, images_with_a_blank(3, 2, 9, 11, 22), with_norm,
                                           true);
  }
}

// In kEval a Conv2d and a ReLU that no pooling follows, with a BatchNorm2d folded into the
// convolution or without one, run as one step when Winograd or the implicit GEMM takes the
// convolution (ops::conv2d_relu_forward: resnet's 7x7 layer by F(4x4) here).
TEST(Sequential, FusedConvReluInEvaluationGivesThePairsResults) {
  for (const bool with_norm : {false, true}) {
    SCOPED_TRACE(with_norm ? "with BatchNorm2d" : "without");
    Sequential<float> model = conv_relu_model(16, 7, 7, with_norm, false, 23);
    expect_fused_conv_relu_matches_the_ops(model, images_with_a_blank(17, 16, 7, 7, 24), with_norm,
                                           false);
  }
}

/// A model of one Residual block with a ReLU: body Conv2d, BatchNorm2d, ReLU, Conv2d (and a
/// BatchNorm2d when `last_norm`), then, when `guard`, a Dropout(0) (the identity in kEval, and
/// a last layer that no convolution fuses with); the shortcut the identity, or a 1x1 Conv2d and
/// a BatchNorm2d when `projection`. Parameters and running statistics from `seed`, BatchNorm's
/// away from the identity map.
Sequential<float> residual_block_model(int64_t channels, int64_t h, int64_t w, bool last_norm,
                                       bool projection, bool guard, uint64_t seed,
                                       int64_t stride = 1) {
  // A stride-2 block doubles the channels, as resnet's do (its shortcut must project).
  const int64_t out = stride == 1 ? channels : 2 * channels;
  std::vector<std::unique_ptr<Layer<float>>> body, shortcut;
  body.push_back(std::make_unique<Conv2d<float>>(channels, out, 3, stride, 1, false));
  body.push_back(std::make_unique<BatchNorm2d<float>>(out));
  body.push_back(std::make_unique<ReLU<float>>());
  body.push_back(std::make_unique<Conv2d<float>>(out, out, 3, 1, 1, !last_norm));
  if (last_norm) body.push_back(std::make_unique<BatchNorm2d<float>>(out));
  if (guard) body.push_back(std::make_unique<Dropout<float>>(0.0));
  if (projection) {
    shortcut.push_back(std::make_unique<Conv2d<float>>(channels, out, 1, stride, 0, false));
    shortcut.push_back(std::make_unique<BatchNorm2d<float>>(out));
  }
  Sequential<float> model;
  model.add(std::make_unique<Residual<float>>(std::move(body), std::move(shortcut), "ReLU"));
  model.build(Shape{channels, h, w});
  Rng rng(seed);
  model.init_parameters(rng);
  randomise_affines(model, rng, 0.3f);
  randomise_running_statistics(model, rng);
  return model;
}

// A batch of losses near float's largest value summed to inf in float: `cnn eval` of a model
// whose logits reached 3e37 read a test loss of inf. The sums are now taken in double.
TEST(Losses, LargeFiniteLossesGiveAFiniteMean) {
  const int64_t batch = 256, classes = 10;
  Tensor<float> logits(Shape{batch, classes}, 0.0f), labels(Shape{batch}, 0.0f);
  for (int64_t n = 0; n < batch; ++n) {
    logits[n * classes + 1] = 3e37f;  // every sample's loss is 3e37, their sum 7.7e39
  }
  const float expected = 3e37f;
  EXPECT_FLOAT_EQ(CrossEntropyLoss<float>().forward(logits, labels), expected);
  // A sample's loss beyond float's range (lse - z = 2 * 2e38) averaged with zeros.
  Tensor<float> wide(Shape{4, 2}, 0.0f), wide_labels(Shape{4}, 0.0f);
  wide[0] = -2e38f;
  wide[1] = 2e38f;
  EXPECT_FLOAT_EQ(CrossEntropyLoss<float>().forward(wide, wide_labels), 1e38f);
  const float smoothed = CrossEntropyLoss<float>(0.1f).forward(logits, labels);
  EXPECT_TRUE(std::isfinite(smoothed));
  // Every class but the one at 3e37 holds 0.01 of the smoothed target, the label's 0.91.
  EXPECT_NEAR(smoothed, expected * 0.99f, expected * 1e-6f);
  Tensor<float> p(Shape{batch, 1}, 1.5e19f), t(Shape{batch, 1}, 0.0f);
  EXPECT_FLOAT_EQ(MseLoss<float>().forward(p, t), 2.25e38f);
}

// SplitAlignedBuffer (LayerChain's backward buffers): for 2 threads, the second half of a batch
// (images_of_part's part 1) starts at the same address, to within a cache line, for every shape
// asked for in turn, smaller or larger; each view lies inside the storage and is 64-byte aligned;
// with 1 thread every view starts at the same place; an odd batch splits as images_of_part does.
TEST(SplitAlignedBuffer, SecondHalfStartsAtOneAddressWhateverTheShape) {
  const int saved = ops::threads();
  ops::set_threads(2);
  detail::SplitAlignedBuffer<float> buffer;
  const std::vector<Shape> shapes = {Shape{64, 16, 5, 5},  Shape{64, 6, 28, 28}, Shape{64, 84},
                                     Shape{64, 6, 14, 14}, Shape{7, 3, 5, 5},    Shape{1, 10},
                                     Shape{64, 16, 10, 10}};
  // Every shape once first, so that the storage has grown to its final size.
  for (const Shape& shape : shapes) buffer.view(shape);
  const float* second_half = nullptr;
  for (const Shape& shape : shapes) {
    const TensorView<float> view = buffer.view(shape);
    const int64_t batch = shape[0], per_image = shape.numel() / batch;
    EXPECT_EQ(reinterpret_cast<uintptr_t>(view.data()) % 64, 0u) << shape.str();
    EXPECT_GE(view.data(), buffer.storage()) << shape.str();
    const float* half = view.data() + batch / 2 * per_image;  // images_of_part(batch, 1, 2)
    if (batch < 2) continue;
    if (second_half == nullptr) second_half = half;
    EXPECT_LT(std::abs(half - second_half), 16) << shape.str();
    std::fill(view.begin(), view.end(), 1.0f);  // inside the storage (ASan's build checks)
  }
  ops::set_threads(1);
  for (const Shape& shape : shapes) buffer.view(shape);  // grown for one thread's views too
  const float* start = buffer.view(shapes[0]).data();
  for (const Shape& shape : shapes) EXPECT_EQ(buffer.view(shape).data(), start) << shape.str();
  ops::set_threads(saved);
}

// LayerChain::forward_add_relu on a chain ending in a Conv2d that F(4x4) runs (with a
// BatchNorm2d folded in, or not) takes the step (returns true) and writes relu(the chain's
// output + addend) bit for bit; output() then gives forward()'s output; a chain ending in a
// ReLU, or whose convolution no fused method takes (3 channels: the direct kernels), is
// refused with nothing run.
TEST(LayerChain, ForwardAddReluFusesALastConvolutionOnly) {
  for (const bool with_norm : {false, true}) {
    SCOPED_TRACE(with_norm ? "with BatchNorm2d" : "without");
    Sequential<float> model = conv_relu_model(16, 7, 7, with_norm, false, 41);
    const Tensor<float> x = images_with_a_blank(17, 16, 7, 7, 42);
    const Tensor<float> addend = images_with_a_blank(17, 16, 7, 7, 43);
    std::vector<Layer<float>*> layers;  // the conv (and BatchNorm), without the ReLU
    for (size_t i = 0; i + 1 < model.size(); ++i) layers.push_back(&model.layer(i));
    detail::LayerChain<float> chain;
    chain.set_layers(layers);
    const TensorView<const float> plain = chain.forward(x, Mode::kEval);
    const std::vector<float> conv(plain.data(), plain.data() + plain.numel());
    Tensor<float> expected(addend.shape()), y(addend.shape());
    ops::add_forward(static_cast<float*>(nullptr), expected.data(), conv.data(), addend.data(),
                     expected.numel(), true);
    ASSERT_TRUE(chain.forward_add_relu(x, addend, y.view()));
    EXPECT_EQ(std::memcmp(y.data(), expected.data(), y.numel() * sizeof(float)), 0);
    const TensorView<const float> recomputed = chain.output();
    ASSERT_EQ(recomputed.numel(), static_cast<int64_t>(conv.size()));
    EXPECT_EQ(std::memcmp(recomputed.data(), conv.data(), conv.size() * sizeof(float)), 0);
    layers.push_back(&model.layer(model.size() - 1));  // now ending in the ReLU
    chain.set_layers(layers);
    EXPECT_FALSE(chain.forward_add_relu(x, addend, y.view()));
  }
  Sequential<float> narrow = conv_relu_model(3, 7, 7, false, false, 44);
  detail::LayerChain<float> chain;
  chain.set_layers({&narrow.layer(0)});
  const Tensor<float> x = images_with_a_blank(17, 3, 7, 7, 45);
  Tensor<float> y(x.shape());
  EXPECT_FALSE(chain.forward_add_relu(x, x, y.view()));
}

// In kEval a Residual's body ending in a Conv2d (with a BatchNorm2d folded in, or not) that
// Winograd or the implicit GEMM runs writes the block's output itself, the shortcut added and
// the ReLU applied (LayerChain::forward_add_relu, ops::conv2d_relu_forward with an addend): the
// output must be bit for bit that of the same block unfused (a Dropout(0) after the body's
// last layer, the identity, keeps the convolution from fusing), and a backward after it must
// give the same input and parameter gradients, bit for bit, twice in a row; with identity and
// projection shortcuts: with 32 channels on planes that F(4x4) takes in evaluation (7x7, 17
// images; 14x14, 33 images), where the body's two convolutions run as one step
// (ops::conv2d_relu_pair_forward), and with 16 (F(4x4) needs 32 out) on 7x7 and on 14x14 planes
// that F(2x2) takes across the lanes (33 images), where the last convolution alone fuses; and
// blocks whose first convolution has stride 2 (the implicit GEMM) and doubles the channels,
// 32 -> 64 from 14x14 (37 images: a part-filled lane group) and 16 -> 32 from 13x13, which run
// as one step with the F(4x4) convolution after them, with projection shortcuts.
TEST(Sequential, ResidualFusedIntoItsLastConvolutionInEvaluationGivesTheUnfusedResults) {
  struct Case {
    int64_t channels, side, batch;
    bool pair;  // the body's convolutions as one step
    int64_t stride = 1;
  };
  for (const Case c :
       {Case{32, 7, 17, true}, Case{32, 14, 33, true}, Case{16, 7, 17, false},
        Case{16, 14, 33, false}, Case{32, 14, 37, true, 2}, Case{16, 13, 17, true, 2}})
    for (const bool last_norm : {true, false})
      for (const bool projection : {false, true}) {
        if (c.stride != 1 && !projection) continue;
        SCOPED_TRACE(std::to_string(c.side) + "x" + std::to_string(c.side) + ", stride " +
                     std::to_string(c.stride) +
                     (last_norm ? ", BatchNorm2d last" : ", Conv2d last") +
                     (projection ? ", projection" : ", identity"));
        Sequential<float> fused = residual_block_model(c.channels, c.side, c.side, last_norm,
                                                       projection, false, 31, c.stride);
        Sequential<float> unfused = residual_block_model(c.channels, c.side, c.side, last_norm,
                                                         projection, true, 31, c.stride);
        // The same values (the Dropout draws from the initialising generator).
        ASSERT_EQ(unfused.parameter_count(), fused.parameter_count());
        std::copy(fused.parameters().begin(), fused.parameters().end(),
                  unfused.parameters().begin());
        std::copy(fused.buffers().begin(), fused.buffers().end(), unfused.buffers().begin());
        const Tensor<float> x = images_with_a_blank(c.batch, c.channels, c.side, c.side, 32);
        const int64_t out = c.stride == 1 ? c.channels : 2 * c.channels;
        const int64_t out_side = (c.side - 1) / c.stride + 1;
        ops::ConvShape first_inference = ops::make_conv_shape(c.batch, c.channels, c.side, c.side,
                                                              out, 3, 3, c.stride, c.stride, 1, 1);
        ops::ConvShape last_inference =
            ops::make_conv_shape(c.batch, out, out_side, out_side, out, 3, 3, 1, 1, 1, 1);
        first_inference.inference = true;
        last_inference.inference = true;
        ASSERT_TRUE(ops::conv2d_relu_fusable(last_inference))
            << ops::conv2d_forward_method(last_inference);
        ASSERT_EQ(ops::conv2d_relu_pair_fusable(first_inference, last_inference), c.pair);
        if (c.stride != 1) {
          ASSERT_STREQ(ops::conv2d_forward_method(first_inference), "implicit");
        }
        Tensor<float> dy(fused.output_shape(c.batch));
        Rng rng(33);
        for (int64_t i = 0; i < dy.numel(); ++i) dy.data()[i] = static_cast<float>(rng.normal());
        Tensor<float> dx_fused(x.shape()), dx_unfused(x.shape());
        for (int round = 0; round < 2; ++round) {
          const TensorView<const float> want = unfused.forward(x, Mode::kEval);
          const std::vector<float> expected(want.data(), want.data() + want.numel());
          unfused.zero_grad();
          unfused.layer(0).backward(x.view(), want, dy.view(), dx_unfused.view());
          const TensorView<const float> got = fused.forward(x, Mode::kEval);
          ASSERT_EQ(got.numel(), static_cast<int64_t>(expected.size()));
          EXPECT_EQ(std::memcmp(got.data(), expected.data(), expected.size() * sizeof(float)), 0)
              << "output, round " << round;
          fused.zero_grad();
          fused.layer(0).backward(x.view(), got, dy.view(), dx_fused.view());
          EXPECT_EQ(std::memcmp(dx_fused.data(), dx_unfused.data(), x.numel() * sizeof(float)), 0)
              << "input gradient, round " << round;
          ASSERT_EQ(fused.gradients().size(), unfused.gradients().size());
          EXPECT_TRUE(std::equal(fused.gradients().begin(), fused.gradients().end(),
                                 unfused.gradients().begin()))
              << "parameter gradients, round " << round;
        }
      }
}

/// Initialises `model` (built) from `seed`, its BatchNorms' affines and running statistics
/// moved away from 1, 0 and the batch's, runs it forward in `mode` on random x (x_shape) and
/// backward from random dy (dy_shape) as a whole (its fused steps), then the same layers one at
/// a time from the same running statistics (layer_by_layer), and asserts that the outputs,
/// running statistics and parameter gradients are the same bytes (`where` names the case).
/// into_residuals: layer_by_layer opens the Residuals too.
void expect_steps_give_layer_by_layer_results(Sequential<float>& model, const Shape& x_shape,
                                              const Shape& dy_shape, Mode mode, uint64_t seed,
                                              const std::string& where,
                                              bool into_residuals = false) {
  Rng rng(seed);
  model.init_parameters(rng);
  randomise_affines(model, rng, 0.5f);
  randomise_running_statistics(model, rng);
  const std::vector<float> buffers_before(model.buffers().begin(), model.buffers().end());
  Tensor<float> x(x_shape);
  for (int64_t i = 0; i < x.numel(); ++i) x.data()[i] = static_cast<float>(rng.normal());
  Tensor<float> dy(dy_shape);
  for (int64_t i = 0; i < dy.numel(); ++i) dy.data()[i] = static_cast<float>(rng.normal());

  const TensorView<const float> fused_out = model.forward(x, mode);
  const std::vector<float> fused_y(fused_out.data(), fused_out.data() + fused_out.numel());
  const std::vector<float> fused_buffers(model.buffers().begin(), model.buffers().end());
  model.zero_grad();
  model.backward(dy);
  const std::vector<float> fused_grads(model.gradients().begin(), model.gradients().end());

  std::copy(buffers_before.begin(), buffers_before.end(), model.buffers().begin());
  const std::vector<float> y = layer_by_layer(model, x, dy, mode, into_residuals);
  ASSERT_EQ(0, std::memcmp(fused_y.data(), y.data(), fused_y.size() * sizeof(float))) << where;
  ASSERT_EQ(0, std::memcmp(fused_buffers.data(), model.buffers().data(),
                           fused_buffers.size() * sizeof(float)))
      << where;
  ASSERT_EQ(0, std::memcmp(fused_grads.data(), model.gradients().data(),
                           fused_grads.size() * sizeof(float)))
      << where;
}

// BatchNorm2d + ReLU (after a pooling layer, so that kEval does not fold the BatchNorm into a
// convolution) and BatchNorm1d + ReLU after a Linear, each run as one step, must give the
// layer-by-layer outputs, parameter gradients and running statistics byte for byte, in both
// modes. (A Residual with the pair in its body runs it fused in both runs: it checks that such
// a block trains beside the fused pairs; the op sweep holds the fused ops to the pair itself.)
TEST(Sequential, FusedBatchNormReluGivesTheLayerByLayerResults) {
  for (const Mode mode : {Mode::kTrain, Mode::kEval}) {
    Sequential<float> model;
    model.emplace<Conv2d<float>>(2, 4, 3, 1, 1);
    model.emplace<AvgPool2d<float>>(2);
    model.emplace<BatchNorm2d<float>>(4);
    model.emplace<ReLU<float>>();
    {
      std::vector<std::unique_ptr<Layer<float>>> body;
      body.push_back(std::make_unique<Conv2d<float>>(4, 4, 3, 1, 1, false));
      body.push_back(std::make_unique<BatchNorm2d<float>>(4));
      body.push_back(std::make_unique<ReLU<float>>());
      body.push_back(std::make_unique<Conv2d<float>>(4, 4, 3, 1, 1, false));
      model.add(std::make_unique<Residual<float>>(
          std::move(body), std::vector<std::unique_ptr<Layer<float>>>{}, "ReLU"));
    }
    model.emplace<Flatten<float>>();
    model.emplace<Linear<float>>(4 * 4 * 4, 6);
    model.emplace<BatchNorm1d<float>>(6);
    model.emplace<ReLU<float>>();
    model.emplace<Linear<float>>(6, 3);
    model.build(Shape{2, 8, 8});
    ASSERT_NO_FATAL_FAILURE(expect_steps_give_layer_by_layer_results(
        model, Shape{5, 2, 8, 8}, Shape{5, 3}, mode, 11, mode == Mode::kTrain ? "train" : "eval"));
  }
}

// A BatchNorm2d, a ReLU and a 2x2 / stride-2 MaxPool2d run as one step (at the model's start,
// where no dx is wanted, and after a Conv2d, as resnet's stem): output, gradients and running
// statistics bit for bit those of the layers one at a time, in kTrain and kEval, on odd planes
// (9 x 7: a last row no window reads), on every instruction set, 1 and 2 threads. In kEval a
// Conv2d right before would fold the BatchNorm in (other rounding, tested elsewhere), so there
// an AvgPool2d(1), an identity, stands between them.
TEST(Sequential, FusedBatchNormReluMaxPoolGivesTheLayerByLayerResults) {
  const testing::RestoreOpsSettings restore;
  for (const ops::Isa isa : ops::supported_isas())
    for (const int team : {1, 2})
      for (const Mode mode : {Mode::kTrain, Mode::kEval}) {
        ops::set_isa(isa);
        ops::set_threads(team);
        const std::string where = std::string(ops::isa_name(isa)) + ", " + std::to_string(team) +
                                  " threads, " + (mode == Mode::kTrain ? "train" : "eval");
        Sequential<float> model;
        model.emplace<BatchNorm2d<float>>(3);
        model.emplace<ReLU<float>>();
        model.emplace<MaxPool2d<float>>(2);
        model.emplace<Conv2d<float>>(3, 4, 3, 1, 1);
        if (mode == Mode::kEval) model.emplace<AvgPool2d<float>>(1);
        model.emplace<BatchNorm2d<float>>(4);
        model.emplace<ReLU<float>>();
        model.emplace<MaxPool2d<float>>(2);
        model.emplace<Flatten<float>>();
        model.emplace<Linear<float>>(4 * 2 * 1, 3);
        model.build(Shape{3, 9, 7});
        ASSERT_NO_FATAL_FAILURE(expect_steps_give_layer_by_layer_results(
            model, Shape{5, 3, 9, 7}, Shape{5, 3}, mode, 23, where));
      }
}

// A model that starts as resnet's stem (Conv2d, BatchNorm2d, ReLU, 2x2 MaxPool2d) needs no input
// gradient: in training the BatchNorm's input gradient is made image by image where the
// convolution's weight gradient reads it (LayerChain::backward_conv_norm_pool), never written.
// Output, gradients and running statistics bit for bit those of the layers one at a time, with
// and without the convolution's bias, on every instruction set, 1 and 2 threads, and under the
// im2col GEMM, whose weight gradient does not take the images (the written path then).
TEST(Sequential, StemBackwardByImageGivesTheLayerByLayerResults) {
  const testing::RestoreOpsSettings restore;
  for (const ops::Isa isa : ops::supported_isas())
    for (const int team : {1, 2})
      for (const ops::ConvAlgorithm algorithm :
           {ops::ConvAlgorithm::kAuto, ops::ConvAlgorithm::kGemm})
        for (const bool bias : {false, true}) {
          ops::set_isa(isa);
          ops::set_threads(team);
          ops::set_conv_algorithm(algorithm);
          const std::string where = std::string(ops::isa_name(isa)) + ", " + std::to_string(team) +
                                    " threads, " + ops::conv_algorithm_name(algorithm) +
                                    (bias ? ", bias" : "");
          Sequential<float> model;
          model.emplace<Conv2d<float>>(2, 5, 3, 1, 1, bias);
          model.emplace<BatchNorm2d<float>>(5);
          model.emplace<ReLU<float>>();
          model.emplace<MaxPool2d<float>>(2);
          model.emplace<Flatten<float>>();
          model.emplace<Linear<float>>(5 * 5 * 3, 3);
          model.build(Shape{2, 10, 7});
          ASSERT_NO_FATAL_FAILURE(expect_steps_give_layer_by_layer_results(
              model, Shape{5, 2, 10, 7}, Shape{5, 3}, Mode::kTrain, 29, where));
        }
}

// In training, a Residual whose body ends with a BatchNorm, and whose shortcut is the identity or
// ends with one, runs its end (the BatchNorms, the sum and the ReLU) as one pass, and recomputes
// the ReLU's mask in backward: output, gradients and running statistics bit for bit those of its
// layers one at a time, on every instruction set, 1 and 2 threads. Blocks: an identity one; a
// projection (strided 1x1 Conv2d + BatchNorm2d); a shortcut that is a BatchNorm alone; one with
// a Residual nested in its body; one whose body does not end with a BatchNorm (not fused); and
// one whose body is a BatchNorm alone (the mask in a pass of its own).
// kEval folds the BatchNorms into the convolutions (other rounding, tested elsewhere): kTrain.
TEST(Sequential, FusedResidualEndGivesTheLayerByLayerResults) {
  const testing::RestoreOpsSettings restore;
  using Layers = std::vector<std::unique_ptr<Layer<float>>>;
  const auto conv_norm = [](Layers& layers, int64_t in, int64_t out, int64_t kernel,
                            int64_t stride) {
    layers.push_back(std::make_unique<Conv2d<float>>(in, out, kernel, stride, kernel / 2, false));
    layers.push_back(std::make_unique<BatchNorm2d<float>>(out));
  };
  const auto basic_body = [&](int64_t in, int64_t out, int64_t stride) {
    Layers body;
    conv_norm(body, in, out, 3, stride);
    body.push_back(std::make_unique<ReLU<float>>());
    conv_norm(body, out, out, 3, 1);
    return body;
  };
  for (const ops::Isa isa : ops::supported_isas())
    for (const int team : {1, 2}) {
      ops::set_isa(isa);
      ops::set_threads(team);
      const std::string where =
          std::string(ops::isa_name(isa)) + ", " + std::to_string(team) + " threads";
      Sequential<float> model;
      model.emplace<Conv2d<float>>(2, 4, 3, 1, 1);
      model.emplace<BatchNorm2d<float>>(4);
      model.emplace<ReLU<float>>();
      model.add(std::make_unique<Residual<float>>(basic_body(4, 4, 1), Layers{}, "ReLU"));
      {
        Layers shortcut;
        conv_norm(shortcut, 4, 6, 1, 2);
        model.add(
            std::make_unique<Residual<float>>(basic_body(4, 6, 2), std::move(shortcut), "ReLU"));
      }
      {
        Layers shortcut;
        shortcut.push_back(std::make_unique<BatchNorm2d<float>>(6));
        model.add(
            std::make_unique<Residual<float>>(basic_body(6, 6, 1), std::move(shortcut), "ReLU"));
      }
      {
        Layers body;
        body.push_back(std::make_unique<Residual<float>>(basic_body(6, 6, 1), Layers{}, "ReLU"));
        conv_norm(body, 6, 6, 3, 1);
        model.add(std::make_unique<Residual<float>>(std::move(body), Layers{}, "ReLU"));
      }
      {
        Layers body;
        conv_norm(body, 6, 6, 3, 1);
        body.push_back(std::make_unique<ReLU<float>>());
        model.add(std::make_unique<Residual<float>>(std::move(body), Layers{}, "ReLU"));
      }
      {
        Layers body;
        body.push_back(std::make_unique<BatchNorm2d<float>>(6));
        model.add(std::make_unique<Residual<float>>(std::move(body), Layers{}, "ReLU"));
      }
      model.emplace<Flatten<float>>();
      model.emplace<Linear<float>>(6 * 5 * 4, 3);
      model.build(Shape{2, 9, 7});
      ASSERT_NO_FATAL_FAILURE(expect_steps_give_layer_by_layer_results(
          model, Shape{5, 2, 9, 7}, Shape{5, 3}, Mode::kTrain, 29, where, true));
    }
}

// LayerChain::forward_to_last_norm leaves the last BatchNorm's output to its caller; output()
// then computes it: the bytes forward() writes.
TEST(LayerChain, OutputAfterForwardToLastNormIsTheForwardOutput) {
  Conv2d<float> conv(2, 3, 3, 1, 1);
  BatchNorm2d<float> norm(3);
  Rng rng(31);
  std::vector<float> conv_values(3 * 2 * 3 * 3 + 3), conv_grads(conv_values.size());
  for (float& v : conv_values) v = static_cast<float>(rng.normal());
  conv.bind_parameters(conv_values.data(), conv_grads.data());
  std::vector<float> norm_values = {1.5f, 0.5f, -1.0f, -0.25f, 0.0f, 0.75f}, norm_grads(6);
  std::vector<float> norm_buffers(7);  // running mean and variance, num_batches_tracked
  norm.bind_parameters(norm_values.data(), norm_grads.data());
  norm.bind_buffers(norm_buffers.data());
  norm.reset_buffers();
  Tensor<float> x(Shape{4, 2, 5, 6});
  for (int64_t i = 0; i < x.numel(); ++i) x.data()[i] = static_cast<float>(rng.normal());

  detail::LayerChain<float> whole, split;
  whole.set_layers({&conv, &norm});
  split.set_layers({&conv, &norm});
  const TensorView<const float> expected = whole.forward(x, Mode::kTrain);
  const std::vector<float> want(expected.begin(), expected.end());
  ASSERT_EQ(split.last_norm(), &norm);
  const TensorView<const float> before = split.forward_to_last_norm(x, Mode::kTrain);
  ASSERT_EQ(before.shape(), (Shape{4, 3, 5, 6}));
  norm.forward_statistics(before, Mode::kTrain);
  const TensorView<const float> got = split.output();
  ASSERT_EQ(got.numel(), static_cast<int64_t>(want.size()));
  EXPECT_EQ(0, std::memcmp(got.data(), want.data(), want.size() * sizeof(float)));
  EXPECT_TRUE(split.forward_to_last_norm(x, Mode::kEval).empty()) << "kEval runs nothing";
  detail::LayerChain<float> no_norm;
  no_norm.set_layers({&conv});
  EXPECT_EQ(no_norm.last_norm(), nullptr);
  EXPECT_TRUE(no_norm.forward_to_last_norm(x, Mode::kTrain).empty());
}

class TempDir : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("cnn_test_" + std::to_string(::testing::UnitTest::GetInstance()->random_seed()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string file(const std::string& name) const { return (dir_ / name).string(); }
  static void write(const std::string& path, const std::string& bytes) {
    std::ofstream(path, std::ios::binary) << bytes;
  }
  static std::string read(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), {}};
  }
  fs::path dir_;
};

using SafeTensorsTest = TempDir;

/// A valid safetensors file with the given header text and data bytes.
std::string safetensors_bytes(const std::string& header, const std::string& data) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((header.size() >> (8 * i)) & 0xFF);
  return out + header + data;
}

TEST_F(SafeTensorsTest, RoundTripKeepsNamesShapesValuesAndMetadata) {
  Tensor<float> a(Shape{2, 3}), b(Shape{4});
  for (int64_t i = 0; i < 6; ++i) a[i] = float(i) - 2.5f;
  for (int64_t i = 0; i < 4; ++i) b[i] = float(i) * 1e-3f;
  save_safetensors(file("m.safetensors"), {{"0.weight", a}, {"0.bias", b}}, {{"format", "1"}});
  const SafeTensorsFile f = SafeTensorsFile::load(file("m.safetensors"));
  EXPECT_EQ(f.names().size(), 2u);
  EXPECT_EQ(f.metadata().at("format"), "1");
  const Tensor<float> a2 = f.tensor<float>("0.weight"), b2 = f.tensor<float>("0.bias");
  EXPECT_EQ(a2.shape(), a.shape());
  EXPECT_TRUE(std::equal(a.begin(), a.end(), a2.begin()));
  EXPECT_TRUE(std::equal(b.begin(), b.end(), b2.begin()));
  EXPECT_FALSE(fs::exists(file("m.safetensors.tmp")));
}

// Found 2026-12-06 (a helper's probe): a SaveTensor whose view has no data (a default
// TensorView, shape () of one element) threw std::logic_error from std::string's constructor.
// One that claims a terabyte is refused by name too, before anything is sized by it.
TEST_F(SafeTensorsTest, AViewWithoutDataIsRefusedByName) {
  Tensor<float> a(Shape{2}, 1.0f);
  for (const TensorView<const float>& view :
       {TensorView<const float>(), TensorView<const float>(nullptr, Shape{2, 3}),
        TensorView<const float>(nullptr, Shape{int64_t{1} << 40})}) {
    try {
      save_safetensors(file("m.safetensors"), {{"a", a}, {"w", view}}, {});
      ADD_FAILURE() << "saved an empty view";
    } catch (const Error& e) {
      EXPECT_EQ(std::string(e.what()), file("m.safetensors") +
                                           ": cannot save tensor 'w': expected data for its "
                                           "shape " +
                                           view.shape().str() + ", got an empty view");
    }
    try {
      safetensors_data({"w", view}, "p");
      ADD_FAILURE() << "gave the bytes of an empty view";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("p: cannot save tensor 'w'"), std::string::npos);
    }
  }
  EXPECT_FALSE(fs::exists(file("m.safetensors")));
  // No elements, no data needed.
  save_safetensors(file("m.safetensors"), {{"e", TensorView<const float>(nullptr, Shape{0, 3})}},
                   {});
  EXPECT_EQ(SafeTensorsFile::load(file("m.safetensors")).entry("e").shape, (Shape{0, 3}));
}

TEST_F(SafeTensorsTest, RefusesCorruptFilesByName) {
  const std::string good_header = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  const std::string data(8, '\0');
  write(file("ok"), safetensors_bytes(good_header, data));
  ASSERT_NO_THROW(SafeTensorsFile::load(file("ok")));
  const auto expect_refused = [&](const std::string& bytes, const std::string& fragment) {
    write(file("bad"), bytes);
    try {
      SafeTensorsFile::load(file("bad"));
      ADD_FAILURE() << "accepted a file that should fail with: " << fragment;
    } catch (const Error& e) {
      const std::string message = e.what();
      EXPECT_NE(message.find(file("bad")), std::string::npos) << message;
      EXPECT_NE(message.find(fragment), std::string::npos) << message;
    }
  };
  const std::string whole = safetensors_bytes(good_header, data);
  expect_refused(whole.substr(0, 5), "truncated");
  expect_refused(whole.substr(0, whole.size() - 3), "outside");
  expect_refused(
      safetensors_bytes(good_header, data).replace(0, 8, "\xff\xff\x00\x00\x00\x00\x00\x00", 8),
      "header length 65535 runs past the end of the 70-byte file");
  // A length past the format's limit too: another kind of file (a spec, an image) given as a
  // model file said only the line above (found 2026-12-07).
  expect_refused("P5\n28 28\n255\n" + std::string(784, '\0'),
                 "header length 4049334440689284432 runs past the end of the 797-byte file: not a "
                 "safetensors file (one starts with the length of its JSON header, at most "
                 "104857600 bytes, as 8 bytes)");
  expect_refused(
      safetensors_bytes(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", data),
      "needs 12 bytes");
  expect_refused(safetensors_bytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                                   R"("a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})",
                                   data),
                 "duplicate tensor 'a'");
  // A key twice inside one tensor's entry: the DOM kept the last shape.
  expect_refused(safetensors_bytes(
                     R"({"a":{"dtype":"F32","shape":[1],"shape":[2],"data_offsets":[0,8]}})", data),
                 "key \"shape\" appears twice in one object");
  expect_refused(
      safetensors_bytes(R"({"a":{"dtype":"Q4","shape":[2],"data_offsets":[0,8]}})", data),
      "expected dtype");
  expect_refused(
      safetensors_bytes(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", data),
      "belong to no tensor");
  expect_refused(safetensors_bytes("{not json", data), "not valid JSON");
  // Found 2026-12-05: a header nested this deep exhausted the stack (SIGSEGV) in dump().
  const std::string deep = std::string(100000, '[') + std::string(100000, ']');
  expect_refused(safetensors_bytes(
                     R"({"a":{"dtype":"F32","shape":)" + deep + R"(,"data_offsets":[0,8]}})", data),
                 "nested deeper than 256 levels");
  expect_refused(safetensors_bytes(
                     R"({"a":{"dtype":)" + deep + R"(,"shape":[2],"data_offsets":[0,8]}})", data),
                 "nested deeper than 256 levels");
  expect_refused(
      safetensors_bytes(
          R"({"__metadata__":{"v":1},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", data),
      "expected a string");
  EXPECT_THROW(SafeTensorsFile::load(file("missing")), Error);
  EXPECT_THROW(SafeTensorsFile::load(file("ok")).entry("b"), Error);
}

// Found 2026-12-06: the loader read the whole data section into memory before it checked the
// header, so a large file that is not a model (here a sparse 64 GiB one) ended in
// std::bad_alloc (or, under AddressSanitizer, an abort). Its header is checked first now.
TEST_F(SafeTensorsTest, AHugeFileIsRefusedByItsHeaderBeforeItsDataIsRead) {
  write(file("huge"), safetensors_bytes("{}", ""));
  ASSERT_EQ(::truncate(file("huge").c_str(), off_t{64} << 30), 0) << std::strerror(errno);
  try {
    SafeTensorsFile::load(file("huge"));
    ADD_FAILURE() << "a 64 GiB file of no tensors loaded";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("belong to no tensor (trailing data)"), std::string::npos)
        << e.what();
  }
  fs::remove(file("huge"));
}

// open() reads the header alone: a (sparse) file of 64 GiB whose header declares one tensor of
// all its data is described without reading or allocating the data (load() would need 64 GiB),
// and read_data then reads any tensor's bytes from the file. A file truncated after its header
// is refused by open() as by load(), from the file's size.
TEST_F(SafeTensorsTest, OpenReadsTheHeaderAloneAndTheDataWhenAsked) {
  constexpr uint64_t kBytes = uint64_t{64} << 30;
  const std::string header = R"({"__metadata__":{"k":"v"},"a":{"dtype":"F32","shape":[2],)"
                             R"("data_offsets":[0,8]},"huge":{"dtype":"F32","shape":[)" +
                             std::to_string(kBytes / 4) + R"(],"data_offsets":[8,)" +
                             std::to_string(8 + kBytes) + "]}}";
  const float a[2] = {1.5f, -2.0f};
  write(file("huge"), safetensors_bytes(header, std::string(reinterpret_cast<const char*>(a), 8)));
  const off_t size = static_cast<off_t>(8 + header.size() + 8 + kBytes);
  ASSERT_EQ(::truncate(file("huge").c_str(), size), 0) << std::strerror(errno);
  const SafeTensorsFile opened = SafeTensorsFile::open(file("huge"));
  EXPECT_EQ(opened.metadata().at("k"), "v");
  EXPECT_EQ(opened.names(), (std::vector<std::string>{"a", "huge"}));
  EXPECT_EQ(opened.entry("huge").size, kBytes);
  EXPECT_TRUE(opened.entry("huge").bytes.empty());
  float read[2] = {};
  opened.read_data("a", read);
  EXPECT_EQ(read[0], 1.5f);
  EXPECT_EQ(read[1], -2.0f);
  EXPECT_EQ(opened.tensor<float>("a")[1], -2.0f);
  // A piece of a tensor (load_checkpoint's checksum reads them so), from the file and from
  // memory; a piece outside the tensor is refused.
  float piece = 0;
  opened.read_data("a", &piece, 4, 4);
  EXPECT_EQ(piece, -2.0f);
  opened.read_data("huge", &piece, kBytes - 4, 4);
  EXPECT_EQ(piece, 0.0f);
  try {
    opened.read_data("a", &piece, 6, 4);
    ADD_FAILURE() << "read_data read past the tensor";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()),
              file("huge") + ": tensor 'a': bytes 6 to 10 lie outside its 8 bytes");
  }
  write(file("small"), safetensors_bytes(R"({"a":{"dtype":"F32","shape":[2],)"
                                         R"("data_offsets":[0,8]}})",
                                         std::string(reinterpret_cast<const char*>(a), 8)));
  piece = 0;
  SafeTensorsFile::load(file("small")).read_data("a", &piece, 4, 4);
  EXPECT_EQ(piece, -2.0f);
  fs::remove(file("small"));
  // One byte short: refused by its size, before any data is read.
  ASSERT_EQ(::truncate(file("huge").c_str(), size - 1), 0) << std::strerror(errno);
  try {
    SafeTensorsFile::open(file("huge"));
    ADD_FAILURE() << "a truncated file opened";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'huge': data_offsets"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("outside"), std::string::npos) << e.what();
  }
  // Truncated after open(): read_data names the file and the tensor.
  ASSERT_EQ(::truncate(file("huge").c_str(), size), 0) << std::strerror(errno);
  const SafeTensorsFile again = SafeTensorsFile::open(file("huge"));
  ASSERT_EQ(::truncate(file("huge").c_str(), 4), 0) << std::strerror(errno);
  try {
    again.read_data("a", read);
    ADD_FAILURE() << "read_data read past the end of the file";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("could not read the whole file (tensor 'a')"),
              std::string::npos)
        << e.what();
  }
  fs::remove(file("huge"));
}

TEST_F(SafeTensorsTest, AHeaderOfManyTensorsParsesInLinearWork) {
  // Found 2026-12-05: the header was parsed with nlohmann's parser callback (to find duplicate
  // names), whose end_object scans the parent object for discarded values: 50,000 tensors took
  // 20 s, 200,000 more than 300 s, and these 400,000 (a 29 MB header, 2 s today) about 20
  // minutes. ctest's TIMEOUT of 600 s (tests/CMakeLists.txt) is the guard.
  constexpr int kTensors = 400000;
  std::string header = "{";
  for (int i = 0; i < kTensors; ++i) {
    const std::string name = std::to_string(i), begin = std::to_string(4 * i),
                      end = std::to_string(4 * i + 4);
    header += (i ? ",\"t" : "\"t") + name + R"(":{"dtype":"F32","shape":[1],"data_offsets":[)" +
              begin + "," + end + "]}";
  }
  header += "}";
  write(file("many"), safetensors_bytes(header, std::string(4 * kTensors, '\0')));
  const SafeTensorsFile f = SafeTensorsFile::load(file("many"));
  EXPECT_EQ(f.names().size(), size_t{kTensors});
  EXPECT_EQ(f.entry("t399999").shape, Shape{1});
}

TEST_F(SafeTensorsTest, FailedSaveLeavesTheOldFile) {
  Tensor<float> a(Shape{2});
  save_safetensors(file("m"), {{"a", a}}, {});
  const std::string before = read(file("m"));
  EXPECT_THROW(save_safetensors(file("m"), {{"a", a}, {"a", a}}, {}), Error);
  EXPECT_THROW(save_safetensors(file("no/such/dir/m"), {{"a", a}}, {}), Error);
  EXPECT_EQ(read(file("m")), before);
}

// The write itself fails part-way: a file size limit (RLIMIT_FSIZE, which binds root too, unlike
// a read-only directory) lets the first 4 KiB of the temporary file through and then fails
// write() with EFBIG. Run in a child process so that the limit stays there.
TEST_F(SafeTensorsTest, AWriteThatFailsPartWayLeavesTheOldFileAndNoTemporaryFile) {
  Tensor<float> small(Shape{2}, 1.0f), big(Shape{1 << 16}, 2.0f);  // 8 bytes, 256 KiB
  save_safetensors(file("m.safetensors"), {{"a", small}}, {});
  const std::string before = read(file("m.safetensors"));
  int pipe_fds[2];
  ASSERT_EQ(::pipe(pipe_fds), 0);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::close(pipe_fds[0]);
    std::signal(SIGXFSZ, SIG_IGN);  // else the signal kills the process instead of EFBIG
    const rlimit limit{4096, 4096};
    ::setrlimit(RLIMIT_FSIZE, &limit);
    std::string message = "no error";
    try {
      save_safetensors(file("m.safetensors"), {{"a", big}}, {});
    } catch (const Error& e) {
      message = e.what();
    }
    (void)!::write(pipe_fds[1], message.data(), message.size());
    ::_exit(0);
  }
  ::close(pipe_fds[1]);
  std::string message;
  char buffer[256];
  for (ssize_t got; (got = ::read(pipe_fds[0], buffer, sizeof buffer)) > 0;)
    message.append(buffer, got);
  ::close(pipe_fds[0]);
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  EXPECT_NE(message.find(file("m.safetensors") + ": cannot write: File too large"),
            std::string::npos)
      << message;
  EXPECT_EQ(read(file("m.safetensors")), before) << "the old file was changed";
  for (const auto& entry : fs::directory_iterator(dir_))
    EXPECT_EQ(entry.path().filename(), "m.safetensors") << "left behind: " << entry.path();
}

// Found 2026-12-06: the rename replaced whatever the path named. As root, `cnn train --out
// /dev/null` turned the system's /dev/null into a regular file, and a save through a symbolic
// link replaced the link with a file. A device node made here stands in for /dev/null, so that
// a regression cannot harm the machine that runs the test.
TEST_F(SafeTensorsTest, ASaveReplacesOnlyRegularFilesAndWritesThroughLinks) {
  const Tensor<float> a(Shape{2}, 1.5f);
  const auto refused = [&](const std::string& path, const std::string& kind) {
    SCOPED_TRACE(path);
    try {
      save_safetensors(path, {{"a", a}}, {});
      ADD_FAILURE() << "saved over " << kind;
    } catch (const Error& e) {
      EXPECT_EQ(std::string(e.what()),
                path + ": cannot write: expected a regular file to replace (or none), got " + kind);
    }
  };
  ASSERT_EQ(::mkfifo(file("pipe").c_str(), 0600), 0);
  refused(file("pipe"), "a pipe");
  EXPECT_EQ(fs::status(file("pipe")).type(), fs::file_type::fifo);
  fs::create_directories(file("folder"));
  refused(file("folder"), "a directory");
  EXPECT_TRUE(fs::is_directory(file("folder")));
  // Making a device node needs CAP_MKNOD: root, as in CI.
  if (::mknod(file("null").c_str(), S_IFCHR | 0666, ::makedev(1, 3)) == 0) {
    refused(file("null"), "a device");
    EXPECT_EQ(fs::status(file("null")).type(), fs::file_type::character);
    fs::create_symlink(file("null"), file("to_null"));
    refused(file("to_null"), "a device");
    EXPECT_EQ(fs::status(file("null")).type(), fs::file_type::character);
  } else {
    std::printf("no device node case: mknod: %s\n", std::strerror(errno));
  }
  // A link (relative, and through a second link) is followed: its target is replaced.
  fs::create_directories(file("runs"));
  write(file("runs/model.safetensors"), "old bytes");
  fs::create_symlink("runs/model.safetensors", file("latest"));
  fs::create_symlink("latest", file("latest_of_latest"));
  save_safetensors(file("latest_of_latest"), {{"a", a}}, {});
  EXPECT_TRUE(fs::is_symlink(file("latest_of_latest")));
  EXPECT_TRUE(fs::is_symlink(file("latest")));
  EXPECT_EQ(SafeTensorsFile::load(file("runs/model.safetensors")).tensor<float>("a")[1], 1.5f);
  // A dangling link: the file it names is created.
  fs::create_symlink("runs/new.safetensors", file("next"));
  save_safetensors(file("next"), {{"a", a}}, {});
  EXPECT_TRUE(fs::is_symlink(file("next")));
  EXPECT_EQ(SafeTensorsFile::load(file("runs/new.safetensors")).tensor<float>("a")[0], 1.5f);
  // A loop of links is one line, not a loop.
  fs::create_symlink("loop_b", file("loop_a"));
  fs::create_symlink("loop_a", file("loop_b"));
  try {
    save_safetensors(file("loop_a"), {{"a", a}}, {});
    ADD_FAILURE() << "saved through a loop of links";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("too many levels of symbolic links"), std::string::npos)
        << e.what();
  }
  for (const auto& entry : fs::recursive_directory_iterator(dir_))
    EXPECT_EQ(entry.path().string().find(".cnn-tmp-"), std::string::npos) << entry.path();
}

// Found 2026-12-06: a run's start removed every "OUT.tmp.XXXXXX" next to its files, a user's
// m.safetensors.tmp.backup included, and a temporary file that a live `cnn convert` was
// writing (which then failed). Only a dead process's temporary files are stale.
TEST_F(SafeTensorsTest, OnlyADeadWritersTemporaryFilesAreRemovedAsStale) {
  const std::string model = file("m.safetensors");
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) ::_exit(0);
  ASSERT_EQ(::waitpid(child, nullptr, 0), child);  // its pid now names no process
  const std::string dead = "." + fs::path(model).filename().string() + ".cnn-tmp-" +
                           std::to_string(child) + "-",
                    live = "." + fs::path(model).filename().string() + ".cnn-tmp-" +
                           std::to_string(::getpid()) + "-";
  EXPECT_EQ(temporary_file_template(model), file(live + "XXXXXX"));
  for (const std::string& name :
       {dead + "aB3xYz", live + "aB3xYz", std::string("m.safetensors.tmp.backup"),
        std::string("m.safetensors.tmp.abcdef"), dead + "toolong7"})
    write(file(name), "bytes");
  fs::create_directories(file(dead + "folder"));
  fs::create_symlink("m.safetensors.tmp.backup", file(dead + "link00"));
  remove_stale_temporaries(model);
  EXPECT_FALSE(fs::exists(file(dead + "aB3xYz")));
  for (const std::string& kept :
       {live + "aB3xYz", std::string("m.safetensors.tmp.backup"),
        std::string("m.safetensors.tmp.abcdef"), dead + "toolong7", dead + "folder"})
    EXPECT_TRUE(fs::exists(file(kept))) << kept;
  EXPECT_TRUE(fs::is_symlink(file(dead + "link00")));
}

// A name of up to NAME_MAX bytes is written: its temporary file's name keeps 64 bytes of it
// (found 2026-12-06: a 235-byte --out trained its whole run and then could not be written).
TEST_F(SafeTensorsTest, ALongNameIsWrittenAndAReplacedFileKeepsItsPermissions) {
  const Tensor<float> a(Shape{2}, 1.5f);
  const std::string long_name = file(std::string(240, 'n') + ".safetensors");  // 252 bytes
  save_safetensors(long_name, {{"a", a}}, {});
  EXPECT_EQ(SafeTensorsFile::load(long_name).tensor<float>("a")[1], 1.5f);
  const mode_t mask = ::umask(0);
  ::umask(mask);
  EXPECT_EQ(fs::status(long_name).permissions(), fs::perms(0666 & ~mask));
  // A private file stays private when it is replaced (it became 0644 before).
  ASSERT_EQ(::chmod(long_name.c_str(), 0600), 0);
  save_safetensors(long_name, {{"a", a}}, {});
  EXPECT_EQ(fs::status(long_name).permissions(), fs::perms(0600));
  // A link into a directory that does not exist names the directory.
  fs::create_symlink("missing/m.safetensors", file("into_missing"));
  try {
    save_safetensors(file("into_missing"), {{"a", a}}, {});
    ADD_FAILURE() << "saved into a missing directory";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), file("into_missing") + ": cannot write: the directory " +
                                         file("missing") + " does not exist");
  }
  // A directory that is there but takes no new files gives the same errno (ENOENT); it said
  // "the directory /proc does not exist" (found 2026-12-07 by a helper's probe).
  try {
    save_safetensors("/proc/cnn-test.safetensors", {{"a", a}}, {});
    ADD_FAILURE() << "saved into /proc";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()),
              "/proc/cnn-test.safetensors: cannot create a temporary file next to it: No such "
              "file or directory");
  }
}

// Found 2026-12-06 (a helper's probe): load_model ignored the "format" metadata, so a
// checkpoint (format "cnn-checkpoint", without optimizer tensors for plain SGD) or a file of
// any other format loaded as a model.
TEST(ModelFile, LoadRefusesCheckpointsAndOtherFormats) {
  const fs::path dir = fs::temp_directory_path() / ("cnn_format_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const std::string model_path = (dir / "m.safetensors").string();
  const std::string checkpoint_path = (dir / "m.ckpt").string();
  Sequential<float> model = testing::lenet5();
  const ModelSpec spec = preset_spec("lenet5");
  save_model(model_path, model, spec, {});
  save_checkpoint(checkpoint_path, model, spec, {}, TrainState{}, "{}");
  expect_refused([&] { load_model(checkpoint_path); },
                 checkpoint_path + ": a training checkpoint, not a model file (load_checkpoint");
  expect_refused([&] { load_model(checkpoint_path, spec); }, "a training checkpoint");
  const SafeTensorsFile file = SafeTensorsFile::load(model_path);
  const std::string other = (dir / "other.safetensors").string();
  testing::save_with_metadata(file, "format", "keras\nv2", other);
  expect_refused([&] { load_model(other); },
                 "unknown format 'keras?v2' in the metadata (expected \"cnn\", or \"pt\" for "
                 "PyTorch's)");
  // Without the key (PyTorch's safetensors writing our architecture), the file loads.
  std::map<std::string, std::string> metadata = file.metadata();
  metadata.erase("format");
  testing::save_with_all_metadata(file, metadata, other);
  EXPECT_EQ(load_model(other).model.parameter_count(), model.parameter_count());
  // Found 2026-12-08: with {"format": "pt"} alone, as PyTorch-side savers write a state_dict,
  // it was refused as an unknown format even with the spec given; it loads with the spec, to
  // the same values, and without one asks for it.
  testing::save_with_all_metadata(file, {{"format", "pt"}}, other);
  ModelFile from_torch = load_model(other, spec);
  ModelFile ours = load_model(model_path);
  const std::span<const float> torch_values = from_torch.model.parameters();
  const std::span<const float> our_values = ours.model.parameters();
  EXPECT_TRUE(
      std::equal(torch_values.begin(), torch_values.end(), our_values.begin(), our_values.end()));
  expect_refused([&] { load_model(other); }, "pass the architecture with --model SPEC.json");
  EXPECT_EQ(load_model(model_path).model.parameter_count(), model.parameter_count());
  fs::remove_all(dir);
}

// Found 2026-12-08 (a probe): a spec given for a file that holds its own architecture replaced
// it whenever the tensors' shapes fit: a model trained on "classes" [3, 7] was evaluated on
// labels 0 and 1 under the names of 3 and 7, a ReLU network read as a Tanh one. The spec given
// must be the file's own.
TEST(ModelFile, ASpecGivenForAFileWithItsOwnArchitectureMustBeThatOne) {
  const fs::path dir = fs::temp_directory_path() / ("cnn_own_spec_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const std::string path = (dir / "m.safetensors").string();
  const ModelSpec spec = parse_model_spec(R"({"name": "dress_sneaker", "input": [1, 2, 2],
    "classes": [3, 7], "layers": [{"type": "Flatten"}, {"type": "Linear", "out_features": 2}]})",
                                          "spec");
  Sequential<float> model = build_model(spec);
  Rng rng(1);
  model.init_parameters(rng);
  save_model(path, model, spec, {"Dress", "Sneaker"});
  ModelSpec other = spec;
  other.name = "other";
  other.classes = {0, 1};
  expect_refused([&] { load_model(path, other); },
                 path +
                     ": the architecture given ('other') is not the one the file holds "
                     "('dress_sneaker'): expected the same, or none (cnn info shows the file's)");
  expect_refused([&] { describe_model_file(path, other); }, "is not the one the file holds");
  EXPECT_EQ(load_model(path, spec).spec.classes, (std::vector<int>{3, 7}));
  fs::remove_all(dir);
}

// Found 2026-12-07: every file function refused an empty path, but in a line that started with
// the path, i.e. with a bare colon (": cannot write: No such file or directory"). Each now names
// itself instead; the command line refuses an empty --out or file before it gets here.
TEST(ModelFile, AnEmptyPathIsRefusedByTheFunctionGivenIt) {
  Sequential<float> model = testing::lenet5();
  const ModelSpec spec = preset_spec("lenet5");
  const std::string expected = ": expected a file path, got an empty string";
  const std::vector<std::pair<std::string, std::function<void()>>> calls = {
      {"save_model", [&] { save_model("", model, spec, {}); }},
      {"load_model", [&] { load_model(""); }},
      {"describe_model_file", [&] { describe_model_file(""); }},
      {"save_onnx", [&] { save_onnx("", model, spec, {}); }},
      {"load_onnx", [&] { load_onnx(""); }},
      {"save_checkpoint", [&] { save_checkpoint("", model, spec, {}, TrainState{}, "{}"); }},
      {"load_checkpoint", [&] { load_checkpoint(""); }},
      {"read_idx_images", [&] { read_idx_images(""); }},
      {"read_idx_labels", [&] { read_idx_labels(""); }},
      {"read_cifar10", [&] { read_cifar10({""}); }},
      {"SafeTensorsFile::load", [&] { SafeTensorsFile::load(""); }},
      {"SafeTensorsFile::open", [&] { SafeTensorsFile::open(""); }},
      {"save_safetensors", [&] { save_safetensors("", {}, {}); }},
      {"write_file_atomic", [&] { write_file_atomic("", "bytes"); }},
      {"require_regular_file", [&] { require_regular_file("", "a file"); }},
      {"read_whole_file", [&] { read_whole_file("", "a file"); }},
  };
  for (const auto& [name, call] : calls) expect_refused(call, name + expected);
  // Where a name or preset is expected as well as a path, "" is shown quoted.
  expect_refused([&] { model_spec_from(""); }, "--model \"\": neither a preset");
  expect_refused([&] { load_dataset("", "", nullptr); }, "dataset \"\": no such directory");
}

// Found 2026-12-06 (a helper's probe): save_model wrote any number of class names beside the
// model's outputs (3 names for 10 outputs, 12 for 10), which readers index by output.
TEST(ModelFile, ClassNamesAreOnePerOutputOrNone) {
  const fs::path dir = fs::temp_directory_path() / ("cnn_names_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const std::string path = (dir / "m.safetensors").string();
  Sequential<float> model = testing::lenet5();
  const ModelSpec spec = preset_spec("lenet5");
  const std::vector<std::string> ten = {"a", "b", "c", "d", "e", "f", "g", "h", "i", "j"};
  expect_refused(
      [&] {
        save_model(path, model, spec, {"a", "b", "c"});
      },
      path +
          ": cannot save: expected one class name per output of the model (10) or "
          "none, got 3");
  std::vector<std::string> twelve = ten;
  twelve.insert(twelve.end(), {"k", "l"});
  expect_refused([&] { save_model(path, model, spec, twelve); }, "(10) or none, got 12");
  expect_refused([&] { save_checkpoint(path, model, spec, {"a"}, TrainState{}, "{}"); },
                 "(10) or none, got 1");
  EXPECT_FALSE(fs::exists(path));
  save_model(path, model, spec, ten);
  EXPECT_EQ(load_model(path).class_names, ten);
  save_model(path, model, spec, {});
  EXPECT_TRUE(load_model(path).class_names.empty());
  // Files of other writers: more names than outputs are refused, fewer (cnn train wrote them
  // for data whose labels stop below the last output) are completed with the indices.
  const SafeTensorsFile file = SafeTensorsFile::load(path);
  testing::save_with_metadata(file, "class_names",
                              R"(["a","b","c","d","e","f","g","h","i","j","k"])", path);
  expect_refused([&] { load_model(path); },
                 "class_names: expected at most one name per output of the model (10), got 11");
  testing::save_with_metadata(file, "class_names", R"(["a","b","c","d","e","f","g","h"])", path);
  EXPECT_EQ(load_model(path).class_names,
            (std::vector<std::string>{"a", "b", "c", "d", "e", "f", "g", "h", "8", "9"}));
  fs::remove_all(dir);
}

TEST(ModelFile, SaveRefusesASpecThatDoesNotDescribeTheModel) {
  const fs::path path = fs::temp_directory_path() /
                        ("cnn_spec_mismatch_" + std::to_string(::getpid()) + ".safetensors");
  Sequential<float> lenet = build_model(preset_spec("lenet5"));
  const auto expect_refused = [&](const ModelSpec& spec, const std::string& fragment) {
    try {
      save_model(path.string(), lenet, spec, {});
      ADD_FAILURE() << "saved with a spec that does not describe the model: " << fragment;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("does not describe the model"), std::string::npos)
          << e.what();
      EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
    }
    EXPECT_FALSE(fs::exists(path));
  };
  expect_refused(preset_spec("convnet"), "layer 0 is Conv2d(1, 32");
  ModelSpec padded = preset_spec("lenet5");
  padded.layers[3].padding = Size2(1);  // the second convolution
  expect_refused(padded, "layer 3 is Conv2d(6, 16, kernel=(5, 5), stride=(1, 1), padding=(1, 1))");
  ModelSpec shorter = preset_spec("lenet5");
  shorter.layers.pop_back();
  expect_refused(shorter, "it has 11 layers, the model 12");
  ModelSpec wider = preset_spec("lenet5");
  wider.input = Shape{1, 32, 32};
  expect_refused(wider, "its input is (1, 32, 32), the model's (1, 28, 28)");
  ModelSpec unbiased = preset_spec("lenet5");
  unbiased.layers.back().bias = false;
  expect_refused(unbiased, "bias=false");
  save_model(path.string(), lenet, preset_spec("lenet5"), {});  // the right spec saves
  EXPECT_EQ(load_model(path.string()).model.parameter_count(), 61706);
  fs::remove(path);
}

// A model built in C++ produces its own spec (spec_of, build_model's inverse), so it can be
// saved and loaded like any other: the spec registry maps each layer back to its spec keys.
// Found 2026-12-06: save_model wrote files that load_model then refused (a log-loss spec
// without its two classes, a kernel beyond the spec's limits, a model that outputs no class
// scores, NaN weights). What would not load is not written.
TEST(ModelFile, SaveRefusesWhatWouldNotLoad) {
  const fs::path path =
      fs::temp_directory_path() / ("cnn_unloadable_" + std::to_string(::getpid()) + ".safetensors");
  const auto expect_refused = [&](Sequential<float>& model, const ModelSpec& spec,
                                  const std::string& fragment) {
    try {
      save_model(path.string(), model, spec, {});
      ADD_FAILURE() << "saved what would not load: " << fragment;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("cannot save: "), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
    }
    EXPECT_FALSE(fs::exists(path));
  };
  Sequential<float> binary;
  binary.emplace<Flatten<>>();
  binary.emplace<Linear<>>(16, 1);
  binary.emplace<Sigmoid<>>();
  binary.build(Shape{1, 4, 4});
  ModelSpec without_classes = spec_of(binary, "binary", LossKind::kLogLoss);
  without_classes.classes.clear();
  expect_refused(binary, without_classes,
                 "the file would not load: architecture: loss log_loss expects \"classes\"");
  // spec_of gives a log-loss spec its two labels, 0 and 1, since 2026-12-08 (a probe of the
  // API: every log-loss spec it gave was refused by save_model).
  const ModelSpec binary_spec = spec_of(binary, "binary", LossKind::kLogLoss);
  EXPECT_EQ(binary_spec.classes, (std::vector<int>{0, 1}));
  save_model(path.string(), binary, binary_spec, {});
  EXPECT_NO_THROW(load_model(path.string()));
  fs::remove(path);
  Sequential<float> maps;
  maps.emplace<Conv2d<>>(1, 2, 3);
  maps.build(Shape{1, 4, 4});
  expect_refused(maps, spec_of(maps, "maps"), "expects the model to output (N, classes) logits");
  Sequential<float> linear;
  linear.emplace<Flatten<>>();
  linear.emplace<Linear<>>(4, 2);
  linear.build(Shape{1, 2, 2});
  linear.parameters()[3] = std::numeric_limits<float>::quiet_NaN();
  expect_refused(linear, spec_of(linear, "linear"),
                 "tensor '1.weight' holds a non-finite value at index 3 (the file would not load)");
}

// Found 2026-12-06: a name that is not UTF-8 (which JSON cannot hold) escaped the writers as
// nlohmann's type_error, not a cnn::Error; nothing may be written.
TEST(ModelFile, NamesThatAreNotUtf8AreRefusedByTheWriters) {
  const fs::path path =
      fs::temp_directory_path() / ("cnn_latin1_" + std::to_string(::getpid()) + ".safetensors");
  Sequential<float> linear;
  linear.emplace<Flatten<>>();
  linear.emplace<Linear<>>(4, 2);
  linear.build(Shape{1, 2, 2});
  const auto expect_refused = [&](const std::function<void()>& write, const std::string& fragment) {
    try {
      write();
      ADD_FAILURE() << "wrote a name that is not UTF-8: " << fragment;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
    }
    EXPECT_FALSE(fs::exists(path));
  };
  expect_refused([&] { save_model(path.string(), linear, spec_of(linear, "m\xfe"), {}); },
                 "the spec's name: expected UTF-8 text");
  expect_refused([&] { static_cast<void>(to_json(spec_of(linear, "m\xfe"))); },
                 "the spec's name: expected UTF-8 text");
  expect_refused(
      [&] {
        save_model(path.string(), linear, spec_of(linear, "m"), {"caf\xe9", "tea"});
      },
      path.string() + ": cannot save: class names: expected UTF-8 text");
  // The checkpoint's writer names the file too (found 2026-12-06: neither named it).
  expect_refused(
      [&] {
        save_checkpoint(path.string(), linear, spec_of(linear, "m"), {"caf\xe9", "tea"},
                        TrainState{}, "{}");
      },
      path.string() + ": cannot save: class names: expected UTF-8 text");
  expect_refused(
      [&] {
        save_checkpoint(path.string(), linear, spec_of(linear, "m\xfe"), {}, TrainState{}, "{}");
      },
      path.string() + ": cannot save: ");
  Tensor<float> t(Shape{2});
  expect_refused(
      [&] {
        save_safetensors(path.string(), {{"w\xff", t}}, {});
      },
      "tensor names and metadata: expected UTF-8 text");
  expect_refused(
      [&] {
        save_safetensors(path.string(), {{"w", t}}, {{"note", "\xff"}});
      },
      "tensor names and metadata: expected UTF-8 text");
}

TEST(ModelFile, AModelBuiltInCppSavesThroughItsOwnSpec) {
  for (const std::string preset : {"lenet5", "convnet", "resnet", "seed"}) {
    const ModelSpec spec = preset_spec(preset);
    ModelSpec read_back = spec_of(build_model(spec), spec.name, spec.loss);
    read_back.classes = spec.classes;
    EXPECT_EQ(to_json(read_back), to_json(spec)) << preset;
  }
  Sequential<float> model;
  model.emplace<Conv2d<float>>(3, 4, Size2(3, 1), Size2(2, 1), Padding2::Same(), false);
  model.emplace<Tanh<float>>();
  model.emplace<MaxPool2d<float>>(Size2(3), Size2(1, 2), Size2(1));
  model.emplace<Flatten<float>>();
  model.emplace<Linear<float>>(80, 5, false);
  model.emplace<Sigmoid<float>>();
  model.emplace<Linear<float>>(5, 3);
  model.emplace<Softmax<float>>();
  model.build(Shape{3, 9, 8});
  Rng rng(2);
  model.init_parameters(rng);
  const ModelSpec spec = spec_of(model, "handmade");
  EXPECT_EQ(spec.layers.size(), model.size());
  EXPECT_TRUE(spec.layers[0].same_padding);
  EXPECT_FALSE(spec.layers[0].bias);
  const fs::path path =
      fs::temp_directory_path() / ("cnn_handmade_" + std::to_string(::getpid()) + ".safetensors");
  save_model(path.string(), model, spec, {});
  ModelFile loaded = load_model(path.string());
  fs::remove(path);
  EXPECT_EQ(to_json(loaded.spec), to_json(spec));
  const std::span<const float> a = model.parameters(), b = loaded.model.parameters();
  EXPECT_TRUE(std::equal(a.begin(), a.end(), b.begin(), b.end()));
  Tensor<float> x(Shape{2, 3, 9, 8}, 0.25f);
  const TensorView<const float> ya = model.forward(x, Mode::kEval);
  const std::vector<float> first(ya.begin(), ya.end());
  const TensorView<const float> yb = loaded.model.forward(x, Mode::kEval);
  EXPECT_EQ(first, std::vector<float>(yb.begin(), yb.end()));
  // Unbuilt models have no spec.
  EXPECT_THROW(spec_of(Sequential<float>(), "empty"), Error);
}

// Buffers travel with the parameters: running statistics as F32, num_batches_tracked as I64
// (PyTorch's dtype), named as PyTorch's state_dict ("5.shortcut.1.running_var"); a loaded model
// evaluates bit for bit as the saved one. Bad buffers are refused by name.
TEST(ModelFile, ResnetBuffersRoundTripAndBadOnesAreRefused) {
  Sequential<float> model = build_model(preset_spec("resnet"));
  Rng rng(3);
  model.init_parameters(rng);
  Tensor<float> x(Shape{4, 1, 28, 28});
  for (float& v : x) v = static_cast<float>(rng.uniform());
  for (int i = 0; i < 3; ++i) model.forward(x, Mode::kTrain);  // running statistics move
  const fs::path path =
      fs::temp_directory_path() / ("cnn_resnet_" + std::to_string(::getpid()) + ".safetensors");
  save_model(path.string(), model, preset_spec("resnet"), {});
  const SafeTensorsFile file = SafeTensorsFile::load(path.string());
  EXPECT_EQ(file.entry("5.shortcut.1.num_batches_tracked").dtype, DType::kI64);
  EXPECT_EQ(file.entry("5.shortcut.1.num_batches_tracked").shape, Shape{});
  EXPECT_EQ(file.tensor<float>("5.shortcut.1.num_batches_tracked")[0], 3.0f);
  EXPECT_EQ(file.entry("4.body.1.running_var").dtype, DType::kF32);
  ModelFile loaded = load_model(path.string());
  const std::span<const float> a = model.buffers(), b = loaded.model.buffers();
  EXPECT_TRUE(std::equal(a.begin(), a.end(), b.begin(), b.end()));
  const TensorView<const float> ya = model.forward(x, Mode::kEval);
  const std::vector<float> first(ya.begin(), ya.end());
  const TensorView<const float> yb = loaded.model.forward(x, Mode::kEval);
  EXPECT_EQ(first, std::vector<float>(yb.begin(), yb.end()));

  // A state_dict with one buffer changed, written as PyTorch would.
  const auto rewrite = [&](const std::string& changed, DType dtype, float value) {
    std::vector<SaveTensor> tensors;
    std::vector<Tensor<float>> kept;
    for (const std::string& name : file.names()) kept.push_back(file.tensor<float>(name));
    for (size_t i = 0; i < kept.size(); ++i) {
      const std::string& name = file.names()[i];
      if (name == changed && dtype == DType::kI64) kept[i].fill(value);
      if (name == changed) kept[i][0] = value;
      tensors.push_back({name, kept[i], name == changed ? dtype : file.entry(name).dtype});
    }
    const fs::path bad = path.string() + ".bad.safetensors";
    save_safetensors(bad.string(), tensors, file.metadata());
    return bad;
  };
  const auto refused = [&](const fs::path& bad, const std::string& expected) {
    try {
      load_model(bad.string());
      ADD_FAILURE() << "loaded " << bad;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(expected), std::string::npos) << e.what();
    }
    fs::remove(bad);
  };
  refused(rewrite("4.body.1.running_var", DType::kF32, -1.0f),
          "buffer '4.body.1.running_var' holds a negative variance");
  refused(rewrite("1.running_mean", DType::kF32, std::nanf("")),
          "buffer '1.running_mean' holds a non-finite value");
  refused(rewrite("1.running_mean", DType::kI64, 2.0f),
          "buffer '1.running_mean': expected dtype F32");
  refused(rewrite("1.num_batches_tracked", DType::kF32, 2.0f),
          "buffer '1.num_batches_tracked': expected dtype I64");
  EXPECT_THROW(rewrite("1.num_batches_tracked", DType::kI64, 2.5f), Error);  // not whole
  fs::remove(path);
}

TEST(ModelFile, MetadataNestedTooDeepIsOneLineNotACrash) {
  const ModelSpec spec = preset_spec("lenet5");
  Sequential<float> model = build_model(spec);
  Rng rng(3);
  model.init_parameters(rng);
  const fs::path path =
      fs::temp_directory_path() / ("cnn_deep_" + std::to_string(::getpid()) + ".safetensors");
  save_model(path.string(), model, spec, {"a", "b", "c", "d", "e", "f", "g", "h", "i", "j"});
  const SafeTensorsFile file = SafeTensorsFile::load(path.string());
  const std::string deep = std::string(100000, '[') + std::string(100000, ']');
  for (const auto& [key, fragment] : std::vector<std::pair<std::string, std::string>>{
           {"architecture",
            "architecture: not valid JSON: arrays and objects nested deeper than 256 levels"},
           {"class_names", "class_names: expected a JSON list of strings"}}) {
    SCOPED_TRACE(key);
    const fs::path bad = path.string() + ".bad.safetensors";
    testing::save_with_metadata(file, key, deep, bad.string());
    try {
      load_model(bad.string());
      ADD_FAILURE() << "loaded " << bad;
    } catch (const Error& e) {
      const std::string message = e.what();
      EXPECT_EQ(message.rfind(bad.string() + ": ", 0), 0u) << message;
      EXPECT_NE(message.find(fragment), std::string::npos) << message;
      EXPECT_EQ(message.find('\n'), std::string::npos) << message;
    }
    fs::remove(bad);
  }
  fs::remove(path);
}

using IdxTest = TempDir;

std::string idx_header(uint32_t magic, std::vector<uint32_t> dims) {
  std::string out;
  for (uint32_t v : std::vector<uint32_t>{magic}) {
    for (int i = 3; i >= 0; --i) out += static_cast<char>((v >> (8 * i)) & 0xFF);
  }
  for (uint32_t v : dims) {
    for (int i = 3; i >= 0; --i) out += static_cast<char>((v >> (8 * i)) & 0xFF);
  }
  return out;
}

void write_gz(const std::string& path, const std::string& bytes) {
  gzFile f = gzopen(path.c_str(), "wb");
  gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size()));
  gzclose(f);
}

TEST_F(IdxTest, ReadsRawAndGzipped) {
  const std::string images = idx_header(0x803, {2, 2, 3}) +
                             std::string("\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\xff", 12);
  const std::string labels = idx_header(0x801, {2}) + std::string("\x03\x07", 2);
  write(file("img"), images);
  write_gz(file("lab.gz"), labels);
  const Dataset d = read_idx_dataset(file("img"), resolve_maybe_gz(file("lab")));
  EXPECT_EQ(d.size(), 2);
  EXPECT_EQ(d.images.rows, 2);
  EXPECT_EQ(d.images.cols, 3);
  EXPECT_EQ(d.labels[1], 7);
  Tensor<float> x;
  gather_images(d.images, {1}, x);
  EXPECT_EQ(x.shape(), (Shape{1, 1, 2, 3}));
  EXPECT_FLOAT_EQ(x[5], 1.0f);
}

TEST_F(IdxTest, RefusesBadFilesByName) {
  const auto expect_refused = [&](const std::function<void()>& f, const std::string& fragment) {
    try {
      f();
      ADD_FAILURE() << "accepted: " << fragment;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
    }
  };
  write(file("short"), idx_header(0x803, {2, 2, 3}) + "abc");
  expect_refused([&] { read_idx_images(file("short")); }, "truncated");
  // A header that claims 8 GiB of pixels in a 40-byte file: refused as truncated after reading
  // what is there, without allocating what the header claims.
  write(file("claims"), idx_header(0x803, {8192, 1024, 1024}) + std::string(24, 'x'));
  expect_refused([&] { read_idx_images(file("claims")); }, "truncated");
  write(file("magic"), idx_header(0x802, {2, 2, 3}));
  expect_refused([&] { read_idx_images(file("magic")); },
                 "magic number 0x00000803, got 0x00000802");
  write(file("long"), idx_header(0x801, {1}) + "ab");
  expect_refused([&] { read_idx_labels(file("long")); }, "more data than its header");
  write(file("corrupt.gz"), std::string("\x1f\x8b\x08\x00garbage-garbage-garbage", 27));
  expect_refused([&] { read_idx_labels(file("corrupt.gz")); }, file("corrupt.gz"));
  // Found 2026-12-06: gzread took a gzip file whose 8-byte trailer (CRC and length) was cut as
  // whole and unchecked, and ignored bytes after the stream. Every cut is now refused, and so is
  // a changed byte (the CRC), in a stored (uncompressed) stream too.
  const std::string labels = idx_header(0x801, {300}) + std::string(300, '\x05');
  write_gz(file("whole.gz"), labels);
  const std::string gz = read(file("whole.gz"));
  EXPECT_EQ(read_idx_labels(file("whole.gz")).size(), 300u);
  for (const size_t cut : {1, 4, 8, 9}) {
    SCOPED_TRACE(cut);
    write(file("cut.gz"), gz.substr(0, gz.size() - cut));
    expect_refused([&] { read_idx_labels(file("cut.gz")); },
                   "truncated compressed data (the file ends inside its gzip stream)");
  }
  write(file("junk.gz"), gz + "junk");
  expect_refused([&] { read_idx_labels(file("junk.gz")); },
                 "corrupt compressed data (bytes after the end of the gzip stream)");
  std::string changed = gz;
  changed[changed.size() - 12] = static_cast<char>(changed[changed.size() - 12] ^ 1);
  write(file("changed.gz"), changed);
  expect_refused([&] { read_idx_labels(file("changed.gz")); }, "corrupt compressed data");
  // As gzip and Python: further members (concatenated files) and zero padding are read.
  write_gz(file("half1.gz"), labels.substr(0, 100));
  write_gz(file("half2.gz"), labels.substr(100));
  write(file("members.gz"), read(file("half1.gz")) + read(file("half2.gz")) + std::string(7, '\0'));
  EXPECT_EQ(read_idx_labels(file("members.gz")).size(), 300u);
  write(file("short_members.gz"), read(file("half1.gz")));
  expect_refused([&] { read_idx_labels(file("short_members.gz")); }, "truncated: the file ends");
  write(file("img"), idx_header(0x803, {2, 1, 1}) + "ab");
  write(file("lab"), idx_header(0x801, {3}) + "abc");
  expect_refused([&] { read_idx_dataset(file("img"), file("lab")); }, "holds 3 labels but");
  expect_refused([&] { read_idx_images(file("nothing")); }, "no such file");
}

using CifarTest = TempDir;

TEST_F(CifarTest, LoadsBatchesAsThreeChannelImagesAndRefusesBadRecords) {
  // Two training records and one test record: a label byte, then 3 x 32 x 32 pixels.
  const auto record = [](uint8_t label, uint8_t fill) {
    return std::string(1, char(label)) + std::string(3072, char(fill));
  };
  write(file("data_batch_1.bin"), record(3, 10) + record(9, 20));
  write(file("test_batch.bin"), record(0, 30));
  std::string notice;
  const DataSplit split = load_dataset(dir_.string(), "", &notice);
  EXPECT_EQ(split.train.size(), 2);
  EXPECT_EQ(split.test.size(), 1);
  EXPECT_EQ(split.train.images.channels, 3);
  EXPECT_EQ(split.train.images.rows, 32);
  EXPECT_EQ(split.train.labels[1], 9);
  EXPECT_EQ(split.class_names.at(3), "cat");
  Tensor<float> x;
  gather_images(split.train.images, {1}, x);
  EXPECT_EQ(x.shape(), (Shape{1, 3, 32, 32}));
  EXPECT_FLOAT_EQ(x[3071], 20.0f / 255.0f);
  write(file("data_batch_1.bin"), record(3, 10) + "x");
  EXPECT_THROW(load_dataset(dir_.string(), "", &notice), Error);
  write(file("data_batch_1.bin"), record(12, 10));
  try {
    load_dataset(dir_.string(), "", &notice);
    ADD_FAILURE() << "accepted label 12";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("label 12, expected 0 to 9"), std::string::npos)
        << e.what();
  }
}

// load_dataset named the command line's flag in its refusals ("--data /x: no such directory")
// whoever called it, the README's programs too (2026-12-07). A caller's own argument name is
// used, "dataset" by default; cnn passes "--data" (the Cli tests hold its lines).
TEST(Dataset, LoadDatasetNamesTheCallersArgument) {
  std::string notice;
  expect_refused([&] { load_dataset("/nonexistent/images", "", &notice); },
                 "dataset /nonexistent/images: no such directory (expected fashion-mnist, sample, "
                 "or a directory of IDX files or CIFAR-10 batches)");
  expect_refused([&] { load_dataset(CNN_SAMPLE_DIR "/train-labels-idx1-ubyte.gz", "", &notice); },
                 "dataset " CNN_SAMPLE_DIR "/train-labels-idx1-ubyte.gz: not a directory");
  expect_refused([&] { load_dataset("/nonexistent/images", "", &notice, false, "argv[1]"); },
                 "argv[1] /nonexistent/images: no such directory");
  const fs::path empty =
      fs::temp_directory_path() / ("cnn_empty_data_" + std::to_string(::getpid()));
  fs::create_directories(empty);
  expect_refused([&] { load_dataset(empty.string(), "", &notice, true); },
                 "dataset " + empty.string() + ": expected the test set, t10k-images-idx3-ubyte");
  fs::remove_all(empty);
}

// random_crop_flip against its definition, evaluated from the same random draws: the crop's
// offsets and the flip per sample, zeros where the shifted window leaves the image.
TEST(Augment, RandomCropFlipFollowsItsDefinition) {
  const int64_t n = 60, c = 2, h = 5, w = 7, padding = 2;
  Tensor<float> x(Shape{n, c, h, w});
  for (int64_t i = 0; i < x.numel(); ++i) x[i] = float(i + 1);  // no zeros in the input
  const Tensor<float> original = x;
  Rng rng(7), replay(7);
  std::vector<float> scratch;
  random_crop_flip(x, padding, rng, scratch);
  std::set<int64_t> tops, lefts;
  int flips = 0;
  for (int64_t s = 0; s < n; ++s) {
    const int64_t top = int64_t(replay.below(2 * padding + 1)) - padding;
    const int64_t left = int64_t(replay.below(2 * padding + 1)) - padding;
    const bool flip = replay.below(2) == 1;
    tops.insert(top);
    lefts.insert(left);
    flips += flip;
    for (int64_t ch = 0; ch < c; ++ch)
      for (int64_t i = 0; i < h; ++i)
        for (int64_t j = 0; j < w; ++j) {
          const int64_t si = i + top, sj = (flip ? w - 1 - j : j) + left;
          const float expected = si >= 0 && si < h && sj >= 0 && sj < w
                                     ? original[((s * c + ch) * h + si) * w + sj]
                                     : 0.0f;
          ASSERT_EQ(x[((s * c + ch) * h + i) * w + j], expected)
              << "sample " << s << " channel " << ch << " at " << i << "," << j << " (top " << top
              << ", left " << left << ", flip " << flip << ")";
        }
  }
  // Every offset from -2 to 2 and both orientations occur in 60 samples.
  EXPECT_EQ(tops.size(), 5u);
  EXPECT_EQ(lefts.size(), 5u);
  EXPECT_GT(flips, 0);
  EXPECT_LT(flips, n);
  // Padding 0 leaves only the flip: each sample is itself or its mirror image.
  Tensor<float> y = original;
  random_crop_flip(y, 0, rng, scratch);
  for (int64_t s = 0; s < n; ++s) {
    const float* a = y.data() + s * c * h * w;
    const float* b = original.data() + s * c * h * w;
    const bool same = std::equal(a, a + c * h * w, b);
    const bool mirrored = a[0] == b[w - 1] && a[w - 1] == b[0];
    EXPECT_TRUE(same || mirrored) << "sample " << s;
  }
  EXPECT_THROW(random_crop_flip(y, -1, rng, scratch), Error);
  Tensor<float> flat(Shape{3, 4});
  EXPECT_THROW(random_crop_flip(flat, 1, rng, scratch), Error);
  EXPECT_EQ(parse_augment("crop-flip"), Augment::kCropFlip);
  EXPECT_THROW(parse_augment("mixup"), Error);
}

// Inverted dropout: about p of the elements zeroed, the rest scaled by 1 / (1 - p), the identity
// in evaluation, and the same masks from the same seed.
TEST(Dropout, DropsAboutPScalesTheRestAndFollowsTheSeed) {
  const int64_t n = 100000;
  Tensor<float> x(Shape{10, n / 10}, 1.0f), y(x.shape()), again(x.shape()), dx(x.shape());
  Dropout<float> dropout(0.3);
  Rng seed(5);
  dropout.init_parameters(seed, Init::kPyTorchDefault);
  dropout.forward(x, y, Mode::kTrain);
  int64_t zeros = 0;
  for (float v : y) {
    if (v == 0.0f) {
      ++zeros;
    } else {
      ASSERT_EQ(v, 1.0f / 0.7f);
    }
  }
  EXPECT_NEAR(double(zeros) / double(n), 0.3, 0.01);
  dropout.backward(x, y, x, dx);  // dy = ones: dx is the mask
  EXPECT_TRUE(std::equal(dx.begin(), dx.end(), y.begin()));
  Dropout<float> same(0.3), other(0.3);
  Rng seed_again(5), seed_other(6);
  same.init_parameters(seed_again, Init::kPyTorchDefault);
  other.init_parameters(seed_other, Init::kPyTorchDefault);
  same.forward(x, again, Mode::kTrain);
  EXPECT_TRUE(std::equal(again.begin(), again.end(), y.begin()));
  other.forward(x, again, Mode::kTrain);
  EXPECT_FALSE(std::equal(again.begin(), again.end(), y.begin()));
  dropout.forward(x, y, Mode::kEval);
  EXPECT_TRUE(std::equal(y.begin(), y.end(), x.begin()));
  dropout.backward(x, y, x, dx);
  EXPECT_TRUE(std::equal(dx.begin(), dx.end(), x.begin()));
  EXPECT_THROW(Dropout<float>(1.0), Error);
  EXPECT_THROW(Dropout<float>(-0.1), Error);
}

/// A linear classifier of 1 x 2 x 2 images into 2 classes.
ModelSpec linear_2x2_spec() {
  return parse_model_spec(R"({"input": [1, 2, 2], "layers": [
      {"type": "Flatten"}, {"type": "Linear", "out_features": 2}]})",
                          "tiny");
}

/// linear_2x2_spec's model, initialised from the Rng it holds (seed 1), and options of one
/// epoch in batches of `batch`: the set-up of the tests that train or evaluate that model.
struct TinyRun {
  ModelSpec spec = linear_2x2_spec();
  Sequential<float> model = build_model(spec);
  Rng rng{1};
  TrainOptions options;
  explicit TinyRun(int64_t batch) {
    model.init_parameters(rng);
    options.epochs = 1;
    options.batch = batch;
  }
};

/// A spec of linear_2x2_spec's input with 3 outputs: one that does not describe its model.
ModelSpec three_output_spec() {
  return parse_model_spec(R"({"input": [1, 2, 2], "layers": [
      {"type": "Flatten"}, {"type": "Linear", "out_features": 3}]})",
                          "other");
}

// Found 2026-12-06: a Dataset filled by a caller was trusted, so gather_images with fewer
// pixels than count x C x H x W read past them, and select_classes with fewer labels than
// images read past those. Each consumer now checks the struct first.
TEST(Dataset, StructsThatDisagreeWithThemselvesAreRefusedByTheirConsumers) {
  Dataset data;
  data.images = {.count = 4, .channels = 1, .rows = 2, .cols = 2, .pixels = {}};
  data.images.pixels.assign(4 * 4, 100);
  data.labels = {0, 1, 0, 1};
  Tensor<float> x;
  EXPECT_NO_THROW(gather_images(data.images, {3}, x));
  EXPECT_NO_THROW(select_classes(data, {1, 0}));
  Dataset few_pixels = data;
  few_pixels.images.pixels.resize(15);
  expect_refused([&] { gather_images(few_pixels.images, {3}, x); },
                 "gather_images: 4 images of 1 x 2 x 2 pixels need 16 bytes, got 15");
  expect_refused([&] { select_classes(few_pixels, {1}); }, "select_classes: 4 images");
  // Indices outside the set: one line naming the function (gather_labels threw libstdc++'s
  // "vector::_M_range_check" until 2026-12-07), the labels left as they were.
  expect_refused(
      [&] {
        gather_images(data.images, {0, 4}, x);
      },
      "gather_images: expected indices in [0, 4), got 4");
  std::vector<uint8_t> labels{9};
  expect_refused(
      [&] {
        gather_labels(data, {1, 4}, labels);
      },
      "gather_labels: expected indices in [0, 4), got 4");
  expect_refused([&] { gather_labels(data, {-1}, labels); },
                 "gather_labels: expected indices in [0, 4), got -1");
  EXPECT_EQ(labels, std::vector<uint8_t>{9});
  gather_labels(data, {3, 0}, labels);
  EXPECT_EQ(labels, (std::vector<uint8_t>{1, 0}));
  Dataset few_labels = data;
  few_labels.labels.pop_back();
  expect_refused([&] { select_classes(few_labels, {1}); },
                 "select_classes: 4 images and 3 labels (expected one label per image)");
  Dataset no_rows = data;
  no_rows.images.rows = 0;
  expect_refused([&] { gather_images(no_rows.images, {0}, x); },
                 "expected count >= 0 and channels, rows, cols >= 1, got 4 images of 1 x 0 x 2");
  Dataset huge = data;
  huge.images.rows = huge.images.cols = int64_t{1} << 40;
  expect_refused([&] { gather_images(huge.images, {0}, x); }, "need more than 2^48 bytes");
  // train_model and evaluate check their sets before any step.
  TinyRun tiny(2);
  auto& [spec, model, rng, options] = tiny;
  expect_refused([&] { train_model(model, spec, few_labels, data, options, rng, {}, {}); },
                 "train_model: the training set: 4 images and 3 labels");
  expect_refused([&] { train_model(model, spec, data, few_pixels, options, rng, {}, {}); },
                 "train_model: the test set: 4 images of 1 x 2 x 2 pixels need 16 bytes");
  expect_refused([&] { evaluate(model, spec, few_labels, 2); }, "evaluate: 4 images and 3 labels");
  EXPECT_NO_THROW(evaluate(model, spec, data, 2));
}

// load_checkpoint checks the state it reads; a TrainState a caller builds or edits went into
// train_model unchecked (an epoch 0, a history of the wrong length). Refused since 2026-12-06.
TEST(Dataset, AResumeStateThatDoesNotFitTheRunIsRefused) {
  Dataset data;
  data.images = {.count = 8, .channels = 1, .rows = 2, .cols = 2, .pixels = {}};
  for (int i = 0; i < 32; ++i) data.images.pixels.push_back(static_cast<uint8_t>(i * 7));
  data.labels = {0, 1, 0, 1, 1, 0, 1, 0};
  TinyRun tiny(4);
  auto& [spec, model, rng, options] = tiny;
  TrainState saved;  // the checkpoint after the epoch, as the command line saves it
  TrainState mid;    // and the one after its first step
  TrainControl checkpointing;
  checkpointing.checkpoint_due = [] { return true; };
  checkpointing.checkpoint = [&](const TrainState& state) {
    if (!state.order.empty() && mid.order.empty()) mid = state;
    saved = state;
  };
  train_model(model, spec, data, data, options, rng, {}, {}, checkpointing);
  ASSERT_EQ(saved.epoch, 2);
  ASSERT_EQ(mid.position, 4);
  options.epochs = 2;
  const auto resume = [&](const TrainState& state) {
    TrainControl control;
    control.resume = &state;
    Rng stream(1);
    return train_model(model, spec, data, data, options, stream, {}, {}, control);
  };
  EXPECT_EQ(resume(saved).history.size(), 2u);
  bool edit_mid = false;  // expect_refused edits mid, not saved
  const auto expect_refused = [&](const std::function<void(TrainState&)>& edit,
                                  const std::string& fragment) {
    TrainState state = edit_mid ? mid : saved;
    edit(state);
    try {
      resume(state);
      ADD_FAILURE() << "resumed: " << fragment;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
    }
  };
  expect_refused([](TrainState& s) { s.epoch = 0; },
                 "cannot resume: the checkpoint's epoch 0 is outside 1 to 3");
  expect_refused([](TrainState& s) { s.epoch = 4; }, "epoch 4 is outside 1 to 3");
  expect_refused([](TrainState& s) { s.history.clear(); },
                 "history has 0 epochs, expected 1 before epoch 2");
  expect_refused([](TrainState& s) { s.correct = s.seen + 1; },
                 "step, sample counts or loss sum are out of range");
  expect_refused([](TrainState& s) { s.step = -1; }, "out of range");
  // The schedule reads the step: one that its epoch and position do not give resumed on
  // another schedule (found 2026-12-07, by a helper's probe).
  expect_refused([](TrainState& s) { s.step = 1; },
                 "cannot resume: the checkpoint's step 1 does not follow from its epoch 2 and "
                 "position 0: 2 steps an epoch give step 2");
  expect_refused([](TrainState& s) { s.loss_sum = -1; }, "loss sum are out of range");
  edit_mid = true;
  EXPECT_EQ(resume(mid).history.size(), 2u);
  expect_refused([](TrainState& s) { s.step = 2; },
                 "step 2 does not follow from its epoch 1 and position 4: 2 steps an epoch give "
                 "step 1");
  expect_refused([](TrainState& s) { s.seen = 3; },
                 "cannot resume: the checkpoint's sample count 3 differs from its position 4 in "
                 "the epoch");
  // The optimizer's and the streams' own refusals are said to be the resume's (found
  // 2026-12-07: "SGD: expected a state counter ..." and "Rng::set_state: ..." alone).
  expect_refused([](TrainState& s) { s.optimizer_counter = 5; },
                 "cannot resume: the checkpoint's optimizer state does not fit: SGD: expected a "
                 "state counter of 0 (before the first step) or 1, got 5");
  expect_refused(
      [](TrainState& s) {
        s.rng.words = {0, 0, 0, 0};
      },
      "cannot resume: the checkpoint's random streams do not fit: Rng::set_state: the "
      "all-zero state");
}

/// Eight 1 x 2 x 2 images of two classes, for the small runs below.
Dataset tiny_dataset() {
  Dataset data;
  data.images = {.count = 8, .channels = 1, .rows = 2, .cols = 2, .pixels = {}};
  for (int i = 0; i < 32; ++i) data.images.pixels.push_back(static_cast<uint8_t>(i * 7));
  data.labels = {0, 1, 0, 1, 1, 0, 1, 0};
  return data;
}

// TrainControl::resume is copied, and the command line kept the checkpoint it loaded besides:
// a resumed run held the optimizer's moments three times, twice for the whole run (found
// 2026-12-07: 1.93 GB against a fresh run's 1.62 for a 40M-parameter Adam model). A state
// handed over with resume_taken is moved in, its optimizer tensors freed once they are in the
// optimizer, and the run is the same run bit for bit.
TEST(Dataset, AResumeStateHandedOverIsMovedAndContinuesAsACopyWould) {
  const Dataset data = tiny_dataset();
  TinyRun tiny(4);
  auto& [spec, model, rng, options] = tiny;
  options.optimizer = OptimizerKind::kAdam;
  TrainState saved;
  TrainControl checkpointing;
  checkpointing.checkpoint = [&](const TrainState& state) { saved = state; };
  train_model(model, spec, data, data, options, rng, {}, {}, checkpointing);
  ASSERT_EQ(saved.optimizer_tensors.size(), 2u);
  ASSERT_FALSE(saved.optimizer_tensors[0].second.empty());
  options.epochs = 3;
  const std::vector<float> start(model.parameters().begin(), model.parameters().end());
  const auto resume = [&](TrainControl control, std::vector<float>& parameters) {
    std::ranges::copy(start, model.parameters().begin());
    TrainState last;
    control.checkpoint = [&](const TrainState& state) { last = state; };
    Rng stream(1);
    const TrainResult result =
        train_model(model, spec, data, data, options, stream, {}, {}, control);
    parameters.assign(model.parameters().begin(), model.parameters().end());
    return std::make_pair(result, last);
  };
  const TrainState kept = saved;
  TrainControl copying;
  copying.resume = &saved;
  std::vector<float> copied_parameters, taken_parameters;
  const auto [copied, copied_last] = resume(copying, copied_parameters);
  EXPECT_EQ(saved.optimizer_tensors, kept.optimizer_tensors);  // a copy leaves it as it was
  TrainState handed = saved;
  TrainControl taking;
  taking.resume_taken = &handed;
  const auto [taken, taken_last] = resume(taking, taken_parameters);
  EXPECT_TRUE(handed.optimizer_tensors.empty());  // moved from
  EXPECT_TRUE(handed.history.empty());
  EXPECT_EQ(taken.history.size(), 3u);
  EXPECT_EQ(taken_parameters, copied_parameters);
  EXPECT_EQ(taken_last.optimizer_tensors, copied_last.optimizer_tensors);
  // The checkpoints saw the optimizer's own tensors, moved out and back; the result owns the
  // last checkpoint's for good.
  ASSERT_EQ(taken.state.optimizer_tensors.size(), 2u);
  EXPECT_EQ(taken.state.optimizer_tensors, taken_last.optimizer_tensors);
  EXPECT_EQ(copied.state.optimizer_tensors, copied_last.optimizer_tensors);
  EXPECT_EQ(taken_last.step, copied_last.step);
  for (size_t e = 0; e < 3; ++e) {
    EXPECT_EQ(taken.history[e].train_loss, copied.history[e].train_loss);
    EXPECT_EQ(taken.history[e].test_loss, copied.history[e].test_loss);
  }
  TrainControl both;
  both.resume = &saved;
  both.resume_taken = &handed;
  expect_error([&] { train_model(model, spec, data, data, options, rng, {}, {}, both); },
               {"train_model: TrainControl's resume and resume_taken are both set"});
}

// A checkpoint's optimizer tensors are moved out of the optimizer for the callback and back; a
// stop leaves them in the result for good: those its checkpoint saw, and without a checkpoint
// callback those of the stop itself.
TEST(Dataset, AStoppedRunsStateOwnsTheOptimizerTensorsOfItsStop) {
  const Dataset data = tiny_dataset();
  const ModelSpec spec = linear_2x2_spec();
  TrainOptions options;
  options.epochs = 2;
  options.batch = 4;
  options.optimizer = OptimizerKind::kAdam;
  const auto run = [&](TrainState* seen) {
    Sequential<float> model = build_model(spec);
    Rng rng(1);
    model.init_parameters(rng);
    TrainControl control;
    control.stop_requested = [] { return true; };  // after the first of the epoch's two steps
    if (seen) control.checkpoint = [seen](const TrainState& state) { *seen = state; };
    return train_model(model, spec, data, data, options, rng, {}, {}, control);
  };
  TrainState seen;
  const TrainResult checkpointed = run(&seen);
  const TrainResult bare = run(nullptr);
  EXPECT_TRUE(checkpointed.stopped);
  EXPECT_TRUE(bare.stopped);
  ASSERT_EQ(seen.optimizer_tensors.size(), 2u);
  EXPECT_EQ(seen.optimizer_tensors[0].first, "exp_avg");
  EXPECT_EQ(seen.optimizer_counter, 1);
  EXPECT_NE(seen.optimizer_tensors[1].second,
            std::vector<float>(seen.optimizer_tensors[1].second.size(), 0.0f));  // stepped
  EXPECT_EQ(checkpointed.state.optimizer_tensors, seen.optimizer_tensors);
  EXPECT_EQ(bare.state.optimizer_tensors, seen.optimizer_tensors);
}

// Found 2026-12-06 (a helper's probe): a ModelSpec filled in C++ with an input of another rank
// than (C, H, W) (a default one's ()) had its dimensions read past the shape's end by
// build_model, to_json and train_model.
TEST(ModelSpec, AnInputThatIsNotAnImageShapeIsRefused) {
  ModelSpec empty;
  expect_error([&] { build_model(empty); },
               {"build_model: the spec ''", "expected an input (C, H, W), got ()"});
  expect_error([&] { to_json(empty); }, {"to_json", "got ()"});
  ModelSpec flat = linear_2x2_spec();
  flat.input = Shape{1, 4};
  expect_error([&] { build_model(flat); }, {"expected an input (C, H, W), got (1, 4)"});
}

// Found 2026-12-08 (a probe): "classes" labels were narrowed to int before their range check,
// so 4294967299 and 4294967300 trained as classes 3 and 4, and 4294967297 was refused as a
// duplicate of 1.
TEST(ModelSpec, ClassLabelsOutsideABytesRangeAreRefusedAtFullWidth) {
  const auto spec_with = [](const std::string& classes) {
    return R"({"name": "m", "input": [1, 2, 2], "classes": )" + classes +
           R"(, "layers": [{"type": "Flatten"}, {"type": "Linear", "out_features": 2}]})";
  };
  for (const std::string classes :
       {"[4294967299, 4294967300]", "[4294967296, 1]", "[0, 256]", "[-1, 2]",
        "[18446744073709551615, 1]", "[-4294967295, 1]", "[1.0, 2]", "[3, 3]"}) {
    expect_error([&] { parse_model_spec(spec_with(classes), "spec"); },
                 {"\"classes\" expects distinct labels in [0, 255], got"});
  }
  EXPECT_EQ(parse_model_spec(spec_with("[255, 0]"), "spec").classes, (std::vector<int>{255, 0}));
}

// Found 2026-12-06 (a helper's probe): save_model refused a spec that does not describe the
// model, but save_checkpoint wrote it (a checkpoint that load_checkpoint then refused), and
// train_model took it: a default ModelSpec's input was read past its rank, another model's
// spec failed with another layer's message.
TEST(ModelSpec, CheckpointsAndTrainingRefuseASpecThatDoesNotDescribeTheModel) {
  const Dataset data = tiny_dataset();
  TinyRun tiny(4);
  auto& [spec, model, rng, options] = tiny;
  const ModelSpec other = three_output_spec();
  const fs::path path =
      fs::temp_directory_path() / ("cnn_spec_mismatch_" + std::to_string(::getpid()) + ".ckpt");
  expect_error([&] { save_checkpoint(path.string(), model, other, {}, TrainState{}, "{}"); },
               {path.string() + ": cannot save: the spec 'other' does not describe the model",
                "layer 1 is Linear(4, 3"});
  EXPECT_FALSE(fs::exists(path));
  int steps = 0;
  const auto count_steps = [&](const TrainProgress&) { ++steps; };
  expect_error(
      [&] { train_model(model, other, data, data, options, rng, count_steps, {}); },
      {"train_model: the spec 'other' does not describe the model", "layer 1 is Linear(4, 3"});
  expect_error([&] { train_model(model, ModelSpec{}, data, data, options, rng, count_steps, {}); },
               {"train_model: the spec '' does not describe the model",
                "expected an input (C, H, W), got ()"});
  Sequential<float> unbuilt;
  unbuilt.emplace<Flatten<>>();
  expect_error([&] { train_model(unbuilt, spec, data, data, options, rng, count_steps, {}); },
               {"train_model: the spec 'tiny' does not describe the model: the model is not "
                "built"});
  EXPECT_EQ(steps, 0);
  // The spec that does describe it trains and saves.
  train_model(model, spec, data, data, options, rng, count_steps, {});
  EXPECT_EQ(steps, 2);
  save_checkpoint(path.string(), model, spec, {}, TrainState{}, "{}");
  fs::remove(path);
}

// Found 2026-12-06: evaluate took any spec (train_model and save_checkpoint refuse one that
// does not describe the model): another model's spec and a default ModelSpec gave the model's
// loss and accuracy without a word.
TEST(ModelSpec, EvaluateRefusesASpecThatDoesNotDescribeTheModel) {
  const Dataset data = tiny_dataset();
  TinyRun tiny(4);
  auto& [spec, model, rng, options] = tiny;
  const ModelSpec other = three_output_spec();
  expect_error([&] { evaluate(model, other, data, 4); },
               {"evaluate: the spec 'other' does not describe the model: layer 1 is "
                "Linear(4, 3"});
  expect_error(
      [&] { evaluate(model, ModelSpec{}, data, 4); },
      {"evaluate: the spec '' does not describe the model", "expected an input (C, H, W), got ()"});
  Sequential<float> unbuilt;
  unbuilt.emplace<Flatten<>>();
  expect_error([&] { evaluate(unbuilt, spec, data, 4); },
               {"evaluate: the spec 'tiny' does not describe the model: the model is not "
                "built"});
  // The spec that does describe it evaluates every sample.
  EXPECT_EQ(evaluate(model, spec, data, 4).samples, 8);
}

/// Limits this process's address space (RLIMIT_AS, which binds root too) to what it has now
/// and `headroom` bytes more; false where it cannot.
bool limit_address_space(int64_t headroom) {
  long pages = 0;
  std::FILE* statm = std::fopen("/proc/self/statm", "r");
  if (statm == nullptr) return false;
  const bool read = std::fscanf(statm, "%ld", &pages) == 1;
  std::fclose(statm);
  if (!read || pages <= 0) return false;
  const rlim_t size = static_cast<rlim_t>(pages) * static_cast<rlim_t>(::sysconf(_SC_PAGESIZE)) +
                      static_cast<rlim_t>(headroom);
  const rlimit limit{size, size};
  return ::setrlimit(RLIMIT_AS, &limit) == 0;
}

/// Runs `call` in a child process whose address space may grow by at most `headroom` bytes
/// (limit_address_space), and returns what `call` returned, or "threw: " and the message of
/// the exception it threw. AddressSanitizer reserves terabytes of address space at its start,
/// so the sanitizer build cannot run under such a limit.
[[maybe_unused]] std::string under_address_limit(int64_t headroom,
                                                 const std::function<std::string()>& call) {
  int pipe_fds[2];
  if (::pipe(pipe_fds) != 0) return "no pipe";
  const pid_t child = ::fork();
  if (child < 0) return "no fork";
  if (child == 0) {
    ::close(pipe_fds[0]);
    std::string result;
    if (!limit_address_space(headroom)) {
      result = "no limit";
    } else {
      try {
        result = call();
      } catch (const std::exception& e) {
        result = std::string("threw: ") + e.what();
      }
    }
    (void)!::write(pipe_fds[1], result.data(), result.size());
    ::_exit(0);
  }
  ::close(pipe_fds[1]);
  std::string result;
  char buffer[256];
  for (ssize_t got; (got = ::read(pipe_fds[0], buffer, sizeof buffer)) > 0;)
    result.append(buffer, static_cast<size_t>(got));
  ::close(pipe_fds[0]);
  int status = 0;
  ::waitpid(child, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) result += " (the child ended abnormally)";
  return result;
}

// Found 2026-12-06: parse_model_spec built the whole model (every parameter and gradient,
// zeroed) to check its shapes, so a spec of a model too large for memory was refused as
// "out of memory" by `cnn info`, and one of a few GB was allocated and zero-filled just to be
// parsed, and again by output_classes and torch_modules. Those now read shapes alone: under
// an address-space limit of 256 MB more than the test has, a spec of 1.26 TB of parameters
// and one of 1.26 GB parse and describe themselves, and only building the model runs out.
TEST(ModelSpec, ASpecIsCheckedFromItsShapesWithoutAllocatingItsModel) {
#if defined(__SANITIZE_ADDRESS__)
  GTEST_SKIP() << "AddressSanitizer cannot run under an address-space limit";
#else
  const std::string terabytes = R"({"name": "big", "input": [3, 1024, 1024], "layers": [
      {"type": "Flatten"}, {"type": "Linear", "out_features": 100000},
      {"type": "Linear", "out_features": 10}]})";
  const std::string gigabytes = R"({"name": "large", "input": [3, 1024, 1024], "layers": [
      {"type": "Flatten"}, {"type": "Linear", "out_features": 100}, {"type": "ReLU"},
      {"type": "Linear", "out_features": 10}]})";
  const auto describe = [](const std::string& json) {
    const ModelSpec spec = parse_model_spec(json, "spec");
    const ModelShapes shapes = model_shapes(spec);
    std::string text = std::to_string(output_classes(spec)) + " classes, " +
                       std::to_string(shapes.layout.parameters) + " parameters, " +
                       std::to_string(torch_modules(spec).size()) + " modules, output " +
                       shapes.layout.shapes.back().str() + ", built " +
                       (shapes.model.built() ? "yes" : "no");
    for (const ParamSpec& p : shapes.model.parameter_specs()) text += ", " + p.name + p.shape.str();
    return text;
  };
  constexpr int64_t kHeadroom = int64_t{256} << 20;
  EXPECT_EQ(under_address_limit(kHeadroom, [&] { return describe(terabytes); }),
            "10 classes, 314573900010 parameters, 3 modules, output (1, 10), built no, "
            "1.weight(100000, 3145728), 1.bias(100000,), 2.weight(10, 100000), 2.bias(10,)");
  EXPECT_EQ(under_address_limit(kHeadroom, [&] { return describe(gigabytes); }),
            "10 classes, 314573910 parameters, 4 modules, output (1, 10), built no, "
            "1.weight(100, 3145728), 1.bias(100,), 3.weight(10, 100), 3.bias(10,)");
  // The limit binds: the model itself is refused, by name.
  const std::string built = under_address_limit(kHeadroom, [&] {
    build_model(parse_model_spec(gigabytes, "spec"));
    return std::string("built");
  });
  EXPECT_TRUE(built.starts_with("threw: large: out of memory: a tensor of shape (314573910,)"))
      << built;
  // The errors of shapes that do not fit are build_model's, naming the layer.
  const std::string unflattened = R"({"name": "u", "input": [3, 1024, 1024], "layers": [
      {"type": "Linear", "out_features": 100000}]})";
  EXPECT_EQ(under_address_limit(kHeadroom, [&] { return describe(unflattened); }),
            "threw: u: Sequential: layer 0 Linear: expected input (N, features) (add a Flatten "
            "before it), got (1, 3, 1024, 1024)");
#endif
}

// A model file's architecture is a line of JSON that can claim any sizes: load_model built
// the model it describes before comparing the file's tensors with it, so a file of a few
// hundred bytes claiming a terabyte ended in "out of memory" (and one claiming a few GB
// allocated them). The tensors are now checked against the shapes first. So is a spec's
// description of a built model (spec_mismatch: save_model, save_checkpoint, train_model and
// evaluate), which built a second copy of the model, gradients and all, to compare layers.
TEST(ModelFile, AFilesTensorsAreCheckedAgainstItsArchitectureBeforeItIsAllocated) {
#if defined(__SANITIZE_ADDRESS__)
  GTEST_SKIP() << "AddressSanitizer cannot run under an address-space limit";
#else
  const std::string path =
      (fs::temp_directory_path() / ("cnn_claims_" + std::to_string(::getpid()) + ".safetensors"))
          .string();
  const std::string terabytes = R"({"name": "big", "input": [3, 1024, 1024], "layers": [
      {"type": "Flatten"}, {"type": "Linear", "out_features": 100000},
      {"type": "Linear", "out_features": 10}]})";
  const Tensor<float> small(Shape{10}, 0.5f);
  save_safetensors(path, {{"2.bias", small}},
                   {{"format", "cnn"}, {"format_version", "1"}, {"architecture", terabytes}});
  constexpr int64_t kHeadroom = int64_t{256} << 20;
  EXPECT_EQ(under_address_limit(kHeadroom,
                                [&] {
                                  load_model(path);
                                  return std::string("loaded");
                                }),
            "threw: " + path + ": missing tensor '1.weight' of shape (100000, 3145728)");
  fs::remove(path);
  // A model of 64 MB (128 with its gradients) is described by its spec within 16 MB more.
  const ModelSpec spec = parse_model_spec(R"({"name": "m", "input": [1, 1024, 1024], "layers": [
      {"type": "Flatten"}, {"type": "Linear", "out_features": 16}]})",
                                          "spec");
  EXPECT_EQ(under_address_limit(int64_t{1} << 30,
                                [&] {
                                  const Sequential<float> model = build_model(spec);
                                  if (!limit_address_space(16 << 20))  // 16 MB more at most
                                    return std::string("no limit");
                                  return "'" + detail::spec_mismatch(model, spec) + "'";
                                }),
            "''");
#endif
}

// load_model decoded each tensor into a Tensor of its own before copying it into the model, so
// a load's peak was the file, the model's values and gradients, and a copy of the largest
// tensor (4 times 64 MB for a file of one 64 MB weight); the bytes then went straight into the
// model (3.5 times). Found 2026-12-07: the file and the gradients were still held, 3 times the
// model for `cnn eval`. The load reads the header, then each tensor from the file into the
// model's values, and builds no gradients: the file loads within 1.5 times 64 MB more.
TEST(ModelFile, ALoadHoldsTheModelsValuesAlone) {
#if defined(__SANITIZE_ADDRESS__)
  GTEST_SKIP() << "AddressSanitizer cannot run under an address-space limit";
#else
  const std::string path =
      (fs::temp_directory_path() / ("cnn_copies_" + std::to_string(::getpid()) + ".safetensors"))
          .string();
  const ModelSpec spec = parse_model_spec(R"({"name": "m", "input": [1, 1024, 1024], "layers": [
      {"type": "Flatten"}, {"type": "Linear", "out_features": 16, "bias": false}]})",
                                          "spec");
  {
    Sequential<float> model = build_model(spec);
    std::span<float> values = model.parameters();
    for (size_t i = 0; i < values.size(); ++i) values[i] = static_cast<float>(i % 7) - 3.0f;
    save_model(path, model, spec, {});
  }
  constexpr int64_t kMegabytes64 = int64_t{64} << 20;
  EXPECT_EQ(under_address_limit(kMegabytes64 * 3 / 2,
                                [&] {
                                  ModelFile file = load_model(path);
                                  return std::to_string(file.model.parameters()[8]) +
                                         (file.model.has_gradients() ? " with gradients" : "");
                                }),
            "-2.000000");
  fs::remove(path);
#endif
}

#if !defined(__SANITIZE_ADDRESS__)
/// A 32 MB model (a Linear of 512 x 1024 inputs to 16) and an Adam-like state of two moments
/// as large, every value set: the memory tests' checkpoint.
struct ModelWithMoments {
  ModelSpec spec;
  Sequential<float> model;
  TrainState state;
};
ModelWithMoments model_with_moments() {
  ModelWithMoments m;
  m.spec = parse_model_spec(R"({"name": "m", "input": [1, 512, 1024], "layers": [
      {"type": "Flatten"}, {"type": "Linear", "out_features": 16, "bias": false}]})",
                            "spec");
  m.model = build_model(m.spec, ModelUse::kInference);
  std::span<float> values = m.model.parameters();
  std::vector<float> exp_avg(values.size()), exp_avg_sq(values.size());
  for (size_t i = 0; i < values.size(); ++i) {
    values[i] = static_cast<float>(i % 7) - 3.0f;
    exp_avg[i] = static_cast<float>(i % 5) * 0.25f;
    exp_avg_sq[i] = static_cast<float>(i % 3);
  }
  m.state.optimizer_tensors = {{"exp_avg", std::move(exp_avg)},
                               {"exp_avg_sq", std::move(exp_avg_sq)}};
  return m;
}
#endif

// load_checkpoint read the whole file into memory (SafeTensorsFile::load) before building the
// model and copying the optimizer state out of it, and each optimizer tensor went through a
// Tensor and a vector: a checkpoint of a 32 MB model with Adam's two moments (a 96 MB file)
// peaked near 224 MB more. Since 2026-12-07 it checks the checksum reading the file a piece
// at a time, then reads each tensor into its place: the model and the state, 96 MB, within
// 128 MB more.
TEST(Checkpoint, ALoadHoldsTheModelAndTheOptimizerStateAlone) {
#if defined(__SANITIZE_ADDRESS__)
  GTEST_SKIP() << "AddressSanitizer cannot run under an address-space limit";
#else
  const std::string path =
      (fs::temp_directory_path() / ("cnn_ckpt_copies_" + std::to_string(::getpid()) + ".ckpt"))
          .string();
  {
    ModelWithMoments m = model_with_moments();
    save_checkpoint(path, m.model, m.spec, {}, m.state, "{}");
  }
  constexpr int64_t kMegabytes32 = int64_t{32} << 20;
  EXPECT_EQ(under_address_limit(kMegabytes32 * 4,
                                [&] {
                                  Checkpoint c = load_checkpoint(path);
                                  const auto& moments = c.state.optimizer_tensors;
                                  return std::to_string(c.model.model.parameters()[8]) + " " +
                                         std::to_string(moments.at(0).second[7]) + " " +
                                         std::to_string(moments.at(1).second[8]) +
                                         (c.model.model.has_gradients() ? " with gradients" : "");
                                }),
            "-2.000000 0.500000 2.000000");
  fs::remove(path);
#endif
}

// save_safetensors built the whole file as one string before writing it, and save_checkpoint
// copied each tensor's bytes to checksum them: writing a checkpoint of a 40M-parameter Adam
// model (477 MB) held the file and its largest tensor besides the model and the state (found
// 2026-12-07: a fresh run's checkpoints peaked at 1.62 GB). Both now go a tensor at a time from
// where the values are: a model of 32 MB with its two moments (a 96 MB file) and the model
// file alone are written within 16 MB more, and read back as they were.
TEST(Checkpoint, AWriteHoldsNeitherTheFileNorACopyOfItsTensors) {
#if defined(__SANITIZE_ADDRESS__)
  GTEST_SKIP() << "AddressSanitizer cannot run under an address-space limit";
#else
  const std::string stem =
      (fs::temp_directory_path() / ("cnn_ckpt_write_" + std::to_string(::getpid()))).string();
  ModelWithMoments m = model_with_moments();
  const ModelSpec& spec = m.spec;
  Sequential<float>& model = m.model;
  const TrainState& state = m.state;
  const std::span<float> values = model.parameters();
  constexpr int64_t kMegabytes16 = int64_t{16} << 20;
  EXPECT_EQ(under_address_limit(kMegabytes16,
                                [&] {
                                  save_checkpoint(stem + ".ckpt", model, spec, {}, state, "{}");
                                  save_model(stem + ".safetensors", model, spec, {});
                                  return std::string("written");
                                }),
            "written");
  Checkpoint c = load_checkpoint(stem + ".ckpt");
  EXPECT_TRUE(std::ranges::equal(c.model.model.parameters(), values));
  ASSERT_EQ(c.state.optimizer_tensors.size(), 2u);
  EXPECT_EQ(c.state.optimizer_tensors, state.optimizer_tensors);
  EXPECT_TRUE(std::ranges::equal(load_model(stem + ".safetensors").model.parameters(), values));
  fs::remove(stem + ".ckpt");
  fs::remove(stem + ".safetensors");
#endif
}

// A file written in parts (write_file_atomic with a writer, as save_safetensors writes) holds
// the bytes the whole file held: the header, then each tensor's safetensors_data, whatever the
// sizes of the parts (a tensor larger than a write's 1 MiB, an I64 tensor of more values than
// are converted at a time, empty and tiny ones).
TEST_F(SafeTensorsTest, AFileWrittenInPartsHoldsTheBytesOfTheWholeFile) {
  Tensor<float> large(Shape{300000}), counts(Shape{70001}), tiny(Shape{3}), none(Shape{0}),
      few(Shape{2}, -7.0f);
  for (int64_t i = 0; i < large.numel(); ++i) large[i] = static_cast<float>(i % 1013) * 0.37f;
  for (int64_t i = 0; i < counts.numel(); ++i) counts[i] = static_cast<float>(i % 977 - 400);
  for (int64_t i = 0; i < tiny.numel(); ++i) tiny[i] = 1.5f * static_cast<float>(i);
  const std::vector<SaveTensor> tensors = {{"tiny", tiny},
                                           {"large", large},
                                           {"counts", counts, DType::kI64},
                                           {"none", none},
                                           {"few", few, DType::kI64}};
  const std::string path = file("parts.safetensors");
  save_safetensors(path, tensors, {{"note", "parts"}});
  const std::string bytes = read(path);
  ASSERT_GE(bytes.size(), 8u);
  uint64_t header = 0;
  std::memcpy(&header, bytes.data(), 8);
  std::string expected = bytes.substr(0, 8 + static_cast<size_t>(header));
  for (const SaveTensor& t : tensors) expected += safetensors_data(t, path);
  EXPECT_TRUE(bytes == expected) << bytes.size() << " bytes, expected " << expected.size();
  const SafeTensorsFile loaded = SafeTensorsFile::load(path);
  EXPECT_EQ(loaded.tensor<float>("counts")[70000], counts[70000]);
  EXPECT_EQ(loaded.metadata().at("note"), "parts");
}

// A write in parts that fails, by its writer's exception or by the file system's refusal (a
// file-size limit: "File too large"), leaves the file that was there and no temporary file,
// as the whole-file write does; an I64 value that cannot be written is refused before any
// temporary file is made.
TEST_F(SafeTensorsTest, AWriteInPartsThatFailsLeavesTheOldFileAndNoTemporary) {
  const std::string path = file("kept.bin");
  write(path, "old");
  const auto only_the_old_file = [&] {
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(dir_)) names.push_back(e.path().filename());
    return names == std::vector<std::string>{"kept.bin"} && read(path) == "old";
  };
  try {
    write_file_atomic(path, [](const FileAppender& append) {
      append("new", 3);
      append(std::string(3 << 20, 'x').data(), 3 << 20);
      throw Error("the writer stopped");
    });
    ADD_FAILURE() << "written";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "the writer stopped");
  }
  EXPECT_TRUE(only_the_old_file());
#if !defined(__SANITIZE_ADDRESS__)
  const std::string too_large = under_address_limit(int64_t{1} << 30, [&] {
    std::signal(SIGXFSZ, SIG_IGN);
    const rlimit limit{1 << 20, 1 << 20};
    ::setrlimit(RLIMIT_FSIZE, &limit);
    const std::string piece(1000, 'y');
    write_file_atomic(path, [&](const FileAppender& append) {
      for (int i = 0; i < 3000; ++i) append(piece.data(), piece.size());
    });
    return std::string("written");
  });
  EXPECT_EQ(too_large, "threw: " + path + ": cannot write: File too large");
  EXPECT_TRUE(only_the_old_file());
#endif
  Tensor<float> half(Shape{2}, 0.5f);
  try {
    save_safetensors(path, {{"ok", half}, {"half", half, DType::kI64}}, {});
    ADD_FAILURE() << "written";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()),
              path + ": cannot save tensor 'half' as I64: it holds 0.500000, not a whole number");
  }
  EXPECT_TRUE(only_the_old_file());
}

// The checksum is checked before anything is built from the file, now that the file is read
// twice (the checksum's pass, then the values'): a byte flipped in the last piece of a tensor
// larger than the checksum's piece (1 MiB), in the last model tensor, or in the optimizer
// state, each making a value NaN, is refused by the checksum, not by the NaN; a checkpoint
// without a checksum (written before 2026-12-06) is refused by the NaN, as before.
TEST(Checkpoint, ACorruptCheckpointIsRefusedByItsChecksumBeforeAnythingIsBuilt) {
  const fs::path dir = fs::temp_directory_path() / ("cnn_ckpt_flip_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const std::string path = (dir / "m.ckpt").string();
  const ModelSpec spec = parse_model_spec(R"({"name": "m", "input": [1, 1000, 300], "layers": [
      {"type": "Flatten"}, {"type": "Linear", "out_features": 2}]})",
                                          "spec");
  Sequential<float> model = build_model(spec, ModelUse::kInference);
  std::span<float> values = model.parameters();
  std::fill(values.begin(), values.end(), 1.5f);  // 0x3fc00000: 0x40 in its top byte is NaN
  TrainState state;
  state.optimizer_tensors = {{"exp_avg", std::vector<float>(values.size(), 1.5f)},
                             {"exp_avg_sq", std::vector<float>(values.size(), 1.5f)}};
  save_checkpoint(path, model, spec, {}, state, "{}");
  ASSERT_EQ(load_checkpoint(path).state.optimizer_tensors.at(1).second.at(600001), 1.5f);
  const std::string checksum = SafeTensorsFile::open(path).metadata().at("checksum");
  // Writes `from` with the top byte of element `index` of tensor `name` flipped to NaN.
  const auto flipped = [&](const std::string& from, const std::string& name, uint64_t index) {
    std::string bytes;
    {
      std::ifstream in(from, std::ios::binary);
      bytes.assign(std::istreambuf_iterator<char>(in), {});
    }
    const uint64_t at = SafeTensorsFile::open(from).entry(name).offset + 4 * index + 3;
    bytes[at] = static_cast<char>(bytes[at] ^ 0x40);
    const std::string to = (dir / "flipped.ckpt").string();
    std::ofstream(to, std::ios::binary | std::ios::trunc) << bytes;
    return to;
  };
  const auto refused = [](const std::string& file) {
    try {
      load_checkpoint(file);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("loaded");
  };
  const std::vector<std::pair<std::string, uint64_t>> flips = {{"1.weight", 599999},
                                                               {"1.bias", 1},
                                                               {"optimizer.exp_avg", 0},
                                                               {"optimizer.exp_avg_sq", 600001}};
  for (const auto& [name, index] : flips) {
    SCOPED_TRACE(name);
    const std::string corrupt = flipped(path, name, index);
    const std::string message = refused(corrupt);
    EXPECT_TRUE(message.starts_with(corrupt + ": the checkpoint is corrupt: its checksum is " +
                                    checksum + ", its contents give "))
        << message;
    EXPECT_EQ(std::count(message.begin(), message.end(), '\n'), 0) << message;
  }
  // Without a checksum the values' own checks refuse the NaN.
  std::map<std::string, std::string> metadata = SafeTensorsFile::open(path).metadata();
  metadata.erase("checksum");
  const std::string unchecked = (dir / "unchecked.ckpt").string();
  testing::save_with_all_metadata(SafeTensorsFile::load(path), metadata, unchecked);
  EXPECT_EQ(load_checkpoint(unchecked).state.optimizer_tensors.at(0).second.at(0), 1.5f);
  for (const auto& [name, message] : std::vector<std::pair<std::string, std::string>>{
           {"1.bias", "tensor '1.bias' holds a non-finite value at index 1"},
           {"optimizer.exp_avg_sq",
            "tensor 'optimizer.exp_avg_sq' holds a non-finite value at index 600001"}}) {
    const std::string corrupt = flipped(unchecked, name, name == "1.bias" ? 1 : 600001);
    EXPECT_EQ(refused(corrupt), corrupt + ": " + message);
  }
  fs::remove_all(dir);
}

// save_checkpoint wrote any TrainState, and load_checkpoint refused some of them: the run's
// resume then failed on a checkpoint it had written (found 2026-12-07, a probe of the API). The
// state is now read back as load reads it before anything is written, and load holds a few
// more rules (an order that is a permutation, correct <= seen, seconds >= 0).
TEST(Checkpoint, AStateThatWouldNotLoadIsRefusedBeforeItIsWritten) {
  TinyRun tiny(4);
  auto& [spec, model, rng, options] = tiny;
  const fs::path dir = fs::temp_directory_path() / ("cnn_ckpt_state_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const std::string path = (dir / "m.ckpt").string();
  TrainState good;
  good.epoch = 2;
  good.history = {{.epoch = 1,
                   .train_loss = 0.5,
                   .train_accuracy = 0.75,
                   .test_loss = 0.5,
                   .test_accuracy = 0.5,
                   .seconds = 1}};
  good.order = {2, 0, 3, 1};
  good.position = 2;
  good.correct = 1;
  good.seen = 2;
  good.rng = Rng(3).state();
  good.augment_rng = Rng(4).state();
  good.optimizer_tensors = {{"momentum_buffer", std::vector<float>(10, 0.25f)}};
  good.optimizer_counter = 1;
  save_checkpoint(path, model, spec, {}, good, "{}");
  const std::string written = read_whole_file(path, "checkpoint");
  EXPECT_EQ(load_checkpoint(path).state.order, good.order);
  using Edit = std::function<void(TrainState&)>;
  const std::vector<std::pair<Edit, std::string>> cases = {
      {[](TrainState& s) { s.epoch = -3; }, "'epoch' is not an integer from 1 to 1000000"},
      {[](TrainState& s) { s.epoch = 3; }, "the history has 1 epochs, epoch is 3"},
      {[](TrainState& s) { s.step = -1; }, "'step' is not an integer from 0 to 9007199254740992"},
      {[](TrainState& s) {
         s.order = {0, 0, 1, 2};
       },
       "'order' is not a permutation of 0 to 3"},
      {[](TrainState& s) {
         s.order = {0, 1, 2, 4};
       },
       "'order' is not a permutation of 0 to 3"},
      {[](TrainState& s) { s.position = 5; }, "'position' is not an integer from 0 to 4"},
      {[](TrainState& s) { s.loss_sum = std::nan(""); }, "'loss_sum' is not a finite number: nan"},
      {[](TrainState& s) { s.seconds = -1; }, "'seconds' is -1, expected a number >= 0"},
      {[](TrainState& s) { s.correct = 3; }, "'correct' is 3, more than 'seen' (2)"},
      {[](TrainState& s) { s.ranks = 0; }, "'ranks' is 0, expected 1 or more"},
      {[](TrainState& s) { s.ranks = 2; }, "'rank_rngs' is not a list of one entry per rank"},
      {[](TrainState& s) { s.optimizer_counter = -5; }, "'optimizer_counter' is not an integer"},
      {[](TrainState& s) { s.optimizer_tensors[0].second.resize(5); },
       "optimizer tensor 'momentum_buffer' holds 5 values, expected 10 (one per parameter)"},
      {[](TrainState& s) { s.optimizer_tensors[0].second[2] = INFINITY; },
       "optimizer tensor 'momentum_buffer' holds a non-finite value at index 2"}};
  for (const auto& [edit, fragment] : cases) {
    TrainState bad = good;
    edit(bad);
    expect_refused([&] { save_checkpoint(path, model, spec, {}, bad, "{}"); },
                   path + ": cannot save: ");
    expect_refused([&] { save_checkpoint(path, model, spec, {}, bad, "{}"); }, fragment);
    EXPECT_EQ(read_whole_file(path, "checkpoint"), written) << fragment;  // left untouched
  }
  // The load's own rules, on a state edited in the file (its checksum dropped).
  const SafeTensorsFile file = SafeTensorsFile::open(path);
  using Json = nlohmann::json;
  const Json state = Json::parse(file.metadata().at("state"));
  std::map<std::string, std::string> metadata = file.metadata();
  metadata.erase("checksum");
  const std::string edited = (dir / "edited.ckpt").string();
  for (const auto& [key, value, fragment] : std::vector<std::tuple<std::string, Json, std::string>>{
           {"order", Json{1, 1, 2, 3}, "'order' is not a permutation of 0 to 3"},
           {"seen", Json(0), "'correct' is 1, more than 'seen' (0)"},
           {"seconds", Json("-0x1p+0"), "'seconds' is -1, expected a number >= 0"}}) {
    Json changed = state;
    changed[key] = value;
    metadata["state"] = changed.dump();
    testing::save_with_all_metadata(SafeTensorsFile::load(path), metadata, edited);
    expect_refused([&] { load_checkpoint(edited); }, edited + ": checkpoint state: " + fragment);
  }
  fs::remove_all(dir);
}

// Found 2026-12-06 (a helper's probe): select_classes took any list: {300} and {-1} matched
// nothing, {1, 1} relabelled only to its first place, {} gave an empty set, without a word.
TEST(Dataset, SelectClassesAppliesTheSpecsRule) {
  Dataset data = tiny_dataset();
  const auto refused = [&](const std::vector<int>& classes, const std::string& given) {
    try {
      select_classes(data, classes);
      ADD_FAILURE() << "accepted " << given;
    } catch (const Error& e) {
      EXPECT_EQ(std::string(e.what()),
                "select_classes: expected at least two distinct dataset labels in [0, 255], got " +
                    given);
    }
  };
  refused({300, 1}, "[300, 1]");
  refused({0, -1}, "[0, -1]");
  refused({1, 1}, "[1, 1]");
  refused({1}, "[1]");
  refused({}, "[]");
  const Dataset selected = select_classes(data, {1, 0});
  EXPECT_EQ(selected.size(), 8);
  EXPECT_EQ(selected.labels[0], 1);  // label 0 is the second listed
}

// Found 2026-12-06 (a helper's probe): read_cifar10({}) returned an empty dataset, evaluate
// on one returned NaN loss and accuracy (0 / 0), and train_model with an empty test set
// trained every epoch and reported NaN test metrics.
TEST(Dataset, EmptySetsAreRefusedWhereTheyWouldGiveNaN) {
  expect_error([] { read_cifar10({}); },
               {"read_cifar10: expected at least one batch file, got none"});
  const Dataset data = tiny_dataset();
  Dataset empty = data;
  empty.images.count = 0;
  empty.images.pixels.clear();
  empty.labels.clear();
  TinyRun tiny(4);
  auto& [spec, model, rng, options] = tiny;
  expect_error([&] { evaluate(model, spec, empty, 4); },
               {"evaluate: expected at least one sample, got none"});
  int steps = 0;
  const auto count_steps = [&](const TrainProgress&) { ++steps; };
  expect_error([&] { train_model(model, spec, data, empty, options, rng, count_steps, {}); },
               {"train_model: expected at least one sample in the test set, got none"});
  expect_error([&] { train_model(model, spec, empty, data, options, rng, count_steps, {}); },
               {"train_model: expected at least one sample in the training set, got none"});
  EXPECT_EQ(steps, 0);
  // A class without samples still reads NaN in the per-class accuracy, as documented.
  Dataset zeros = data;
  zeros.labels.assign(8, 0);
  const EvalResult result = evaluate(model, spec, zeros, 4);
  EXPECT_TRUE(std::isfinite(result.loss));
  EXPECT_TRUE(std::isnan(result.per_class_accuracy[1]));
}

TEST(BatchIterator, CoversEveryIndexOnceWithAPartialLastBatch) {
  BatchIterator batches(10, 4);
  Rng rng(1);
  batches.start_epoch(&rng);
  std::vector<int64_t> indices, seen;
  std::vector<size_t> sizes;
  while (batches.next(indices)) {
    sizes.push_back(indices.size());
    seen.insert(seen.end(), indices.begin(), indices.end());
  }
  EXPECT_EQ(sizes, (std::vector<size_t>{4, 4, 2}));
  std::sort(seen.begin(), seen.end());
  for (int64_t i = 0; i < 10; ++i) EXPECT_EQ(seen[static_cast<size_t>(i)], i);
  EXPECT_EQ(batches.batches_per_epoch(), 3);
}

}  // namespace
}  // namespace cnn

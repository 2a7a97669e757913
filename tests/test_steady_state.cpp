// A separate test program: it replaces the C allocator's entry points (malloc, calloc, realloc,
// aligned_alloc, posix_memalign, memalign) to count every allocation, which must not leak into
// the other tests. operator new (libstdc++'s calls malloc), Tensor's aligned_alloc and the
// OpenMP runtime's allocations all pass through them. Shows that a training step at a fixed
// batch size allocates nothing once warmed up, and that 1 and 2 threads train to the same
// numbers (to 1e-5), bit-identical for a fixed thread count.

#include <gtest/gtest.h>

#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstdlib>

#include "cnn/cnn.hpp"

namespace {
std::atomic<int64_t> g_allocations{0};
void count_allocation() {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
}
}  // namespace

// glibc's own implementations, which the replacements below forward to.
extern "C" {
void* __libc_malloc(size_t size);
void* __libc_calloc(size_t count, size_t size);
void* __libc_realloc(void* p, size_t size);
void* __libc_memalign(size_t alignment, size_t size);
void __libc_free(void* p);

void* malloc(size_t size) {
  count_allocation();
  return __libc_malloc(size);
}
void* calloc(size_t count, size_t size) {
  count_allocation();
  return __libc_calloc(count, size);
}
void* realloc(void* p, size_t size) {
  count_allocation();
  return __libc_realloc(p, size);
}
void* aligned_alloc(size_t alignment, size_t size) {
  count_allocation();
  return __libc_memalign(alignment, size);
}
void* memalign(size_t alignment, size_t size) {
  count_allocation();
  return __libc_memalign(alignment, size);
}
int posix_memalign(void** out, size_t alignment, size_t size) {
  count_allocation();
  *out = __libc_memalign(alignment, size);
  return *out ? 0 : ENOMEM;
}
void free(void* p) {
  __libc_free(p);
}
}  // extern "C"

namespace cnn {
namespace {

struct Step {
  Sequential<float> model;
  Objective objective;
  Sgd<float> sgd;
  Tensor<float> x, gradient;
  std::vector<uint8_t> labels;

  explicit Step(const std::string& preset)
      : model(build_model(preset_spec(preset))),
        objective(LossKind::kCrossEntropy, 10),
        sgd(model.parameters(), model.gradients(), {.lr = 0.05, .momentum = 0.9}),
        x(Shape{64, 1, 28, 28}),
        labels(64) {
    Rng rng(5);
    model.init_parameters(rng);
    for (float& v : x) v = static_cast<float>(rng.uniform());
    for (size_t i = 0; i < labels.size(); ++i) labels[i] = static_cast<uint8_t>(i % 10);
  }
  void run() {
    model.zero_grad();
    const TensorView<const float> out = model.forward(x, Mode::kTrain);
    objective.loss(out, labels, &gradient);
    model.backward(gradient);
    sgd.step();
  }
};

TEST(SteadyState, ATrainingStepAllocatesNothingOnceWarm) {
  for (const char* preset : {"lenet5", "convnet", "resnet"}) {
    for (int threads : {1, 2}) {
      ops::set_threads(threads);
      Step step(preset);
      for (int i = 0; i < 3; ++i) step.run();  // scratch buffers and caches reach their size
      const int64_t before = g_allocations.load();
      for (int i = 0; i < 5; ++i) step.run();
      EXPECT_EQ(g_allocations.load() - before, 0) << preset << ", " << threads << " threads";
    }
  }
  ops::set_threads(1);
}

TEST(SteadyState, ATrainingStepWithDropoutAndAveragePoolingAllocatesNothingOnceWarm) {
  Sequential<float> model = build_model(parse_model_spec(
      R"({"name": "modern", "input": [1, 28, 28], "layers": [
        {"type": "Conv2d", "out_channels": 16, "kernel": 3, "padding": 1}, {"type": "ReLU"},
        {"type": "AvgPool2d", "kernel": 2}, {"type": "Dropout", "p": 0.2},
        {"type": "Conv2d", "out_channels": 32, "kernel": 3, "padding": 1}, {"type": "ReLU"},
        {"type": "AdaptiveAvgPool2d"}, {"type": "Flatten"}, {"type": "Dropout", "p": 0.5},
        {"type": "Linear", "out_features": 10}]})",
      "test"));
  for (int threads : {1, 2}) {
    ops::set_threads(threads);
    Rng rng(5);
    model.init_parameters(rng);
    Objective objective(LossKind::kCrossEntropy, 10, 0.1);
    Adam<float> adam(model.parameters(), model.gradients(), {.decoupled_weight_decay = true});
    Tensor<float> x(Shape{64, 1, 28, 28}, 0.5f), gradient;
    std::vector<uint8_t> labels(64, 3);
    const auto step = [&] {
      model.zero_grad();
      const TensorView<const float> out = model.forward(x, Mode::kTrain);
      objective.loss(out, labels, &gradient);
      model.backward(gradient);
      adam.step();
    };
    for (int i = 0; i < 3; ++i) step();
    const int64_t before = g_allocations.load();
    for (int i = 0; i < 5; ++i) step();
    EXPECT_EQ(g_allocations.load() - before, 0) << threads << " threads";
  }
  ops::set_threads(1);
}

TEST(SteadyState, AugmentationAllocatesNothingOnceWarm) {
  Tensor<float> x(Shape{64, 1, 28, 28}, 0.5f);
  Rng rng(3);
  std::vector<float> scratch;
  random_crop_flip(x, 2, rng, scratch);  // the scratch image reaches its size
  const int64_t before = g_allocations.load();
  for (int i = 0; i < 5; ++i) random_crop_flip(x, 2, rng, scratch);
  EXPECT_EQ(g_allocations.load() - before, 0);
}

std::vector<float> train(const std::string& preset, int threads, int steps) {
  ops::set_threads(threads);
  Step step(preset);
  for (int i = 0; i < steps; ++i) step.run();
  ops::set_threads(1);
  return {step.model.parameters().begin(), step.model.parameters().end()};
}

// Evaluation too: resnet's folded Conv2d + BatchNorm2d pairs reuse their scratch.
TEST(SteadyState, AnEvaluationForwardAllocatesNothingOnceWarm) {
  for (int threads : {1, 2}) {
    ops::set_threads(threads);
    Step step("resnet");
    step.run();
    for (int i = 0; i < 2; ++i) step.model.forward(step.x, Mode::kEval);
    const int64_t before = g_allocations.load();
    for (int i = 0; i < 3; ++i) step.model.forward(step.x, Mode::kEval);
    EXPECT_EQ(g_allocations.load() - before, 0) << threads << " threads";
  }
  ops::set_threads(1);
}

TEST(SteadyState, OneAndTwoThreadsAgreeAndEachIsReproducible) {
  for (const char* preset : {"lenet5", "convnet", "resnet"}) {
    const std::vector<float> one = train(preset, 1, 3), two = train(preset, 2, 3);
    EXPECT_EQ(one, train(preset, 1, 3)) << preset << ": 1 thread is not reproducible";
    EXPECT_EQ(two, train(preset, 2, 3)) << preset << ": 2 threads are not reproducible";
    double scale = 0, worst = 0;
    for (float v : one) scale = std::max(scale, double(std::abs(v)));
    for (size_t i = 0; i < one.size(); ++i)
      worst = std::max(worst, double(std::abs(one[i] - two[i])));
    // The issue's 1e-5 for every preset. (The earlier 16/32/64 resnet missed it, 1.8e-5: its
    // BatchNorm biases amplified summation-order rounding; the 32/64/128 preset measures 3e-8.)
    EXPECT_LE(worst / scale, 1e-5) << preset << ": 1 and 2 threads differ by " << worst;
    std::printf("%s: 3 steps, 1 vs 2 threads, max |difference| / max |parameter| = %.3g\n", preset,
                worst / scale);
  }
}

}  // namespace
}  // namespace cnn

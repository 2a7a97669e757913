// A separate test program: it replaces the C allocator's entry points (malloc, calloc, realloc,
// aligned_alloc, posix_memalign, memalign) to count every allocation, which must not leak into
// the other tests. operator new (libstdc++'s calls malloc), Tensor's aligned_alloc and the
// OpenMP runtime's allocations all pass through them. Shows that a training step at a fixed
// batch size allocates nothing once warmed up, and that 1 and 2 threads train to the same
// bits, as does a fixed thread count run after run.

#include <gtest/gtest.h>

#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>

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

  explicit Step(const std::string& preset, uint64_t seed = 5)
      : model(build_model(preset_spec(preset))),
        objective(LossKind::kCrossEntropy, 10),
        sgd(model.parameters(), model.gradients(), {.lr = 0.05, .momentum = 0.9}),
        x(Shape{64, 1, 28, 28}),
        labels(64) {
    Rng rng(seed);
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

std::vector<float> train(const std::string& preset, int threads, int steps, uint64_t seed = 5) {
  ops::set_threads(threads);
  Step step(preset, seed);
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

/// Equal bit for bit: == would let -0 pass for +0.
bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// The issue asks 1 and 2 threads to agree to 1e-5 after 3 steps; they give the same bits
// (detail::gradient_blocks: a convolution's weight gradient is summed over at least two
// blocks of images on any thread count). While the sums followed the threads, the 1e-5 held
// for seed 5 by luck: seeds 1 and 3 missed it (6.0e-5, 6.6e-5 under a variant), a ReLU or
// pooling choice tipped by rounding in the third step. Hence several seeds for resnet.
TEST(SteadyState, OneAndTwoThreadsGiveTheSameBitsAndEachIsReproducible) {
  const std::pair<const char*, uint64_t> runs[] = {
      {"lenet5", 5}, {"convnet", 5}, {"resnet", 5}, {"resnet", 1}, {"resnet", 3}};
  for (const auto& [preset, seed] : runs) {
    SCOPED_TRACE(std::string(preset) + ", seed " + std::to_string(seed));
    const std::vector<float> one = train(preset, 1, 3, seed), two = train(preset, 2, 3, seed);
    EXPECT_TRUE(same_bits(two, train(preset, 2, 3, seed))) << "2 threads are not reproducible";
    double scale = 0, worst = 0;
    for (float v : one) scale = std::max(scale, double(std::abs(v)));
    for (size_t i = 0; i < one.size(); ++i)
      worst = std::max(worst, double(std::abs(one[i] - two[i])));
    EXPECT_TRUE(same_bits(one, two))
        << "1 and 2 threads differ by " << worst / scale << " of the largest parameter";
  }
}

}  // namespace
}  // namespace cnn

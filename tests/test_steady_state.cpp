// A separate test program: it replaces the global operator new to count allocations, which
// must not leak into the other tests. Shows that a training step at a fixed batch size
// allocates nothing once warmed up, and that 1 and 2 threads train to the same numbers
// (to 1e-5), bit-identical for a fixed thread count.

#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <cstdlib>
#include <new>

#include "cnn/cnn.hpp"

namespace {
std::atomic<int64_t> g_allocations{0};
}  // namespace

void* operator new(size_t size) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(size == 0 ? 1 : size)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept {
  std::free(p);
}
void operator delete(void* p, size_t) noexcept {
  std::free(p);
}

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
  for (const char* preset : {"lenet5", "convnet"}) {
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

std::vector<float> train(const std::string& preset, int threads, int steps) {
  ops::set_threads(threads);
  Step step(preset);
  for (int i = 0; i < steps; ++i) step.run();
  ops::set_threads(1);
  return {step.model.parameters().begin(), step.model.parameters().end()};
}

TEST(SteadyState, OneAndTwoThreadsAgreeAndEachIsReproducible) {
  for (const char* preset : {"lenet5", "convnet"}) {
    const std::vector<float> one = train(preset, 1, 3), two = train(preset, 2, 3);
    EXPECT_EQ(one, train(preset, 1, 3)) << preset << ": 1 thread is not reproducible";
    EXPECT_EQ(two, train(preset, 2, 3)) << preset << ": 2 threads are not reproducible";
    double scale = 0, worst = 0;
    for (float v : one) scale = std::max(scale, double(std::abs(v)));
    for (size_t i = 0; i < one.size(); ++i)
      worst = std::max(worst, double(std::abs(one[i] - two[i])));
    EXPECT_LE(worst / scale, 1e-5) << preset << ": 1 and 2 threads differ by " << worst;
    std::printf("%s: 3 steps, 1 vs 2 threads, max |difference| / max |parameter| = %.3g\n", preset,
                worst / scale);
  }
}

}  // namespace
}  // namespace cnn

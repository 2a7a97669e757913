// Builds a LeNet-5, runs one training step on a random batch and prints the parameter count.
#include <cmath>
#include <cnn/cnn.hpp>
#include <cstdio>

// The installed header's hook, as a program of the library's users would expand it.
CNN_SHORT_OPENMP_SPIN();

int main() {
  cnn::Sequential<float> model;
  model.emplace<cnn::Conv2d<float>>(1, 6, 5, 1, 2);
  model.emplace<cnn::ReLU<float>>();
  model.emplace<cnn::MaxPool2d<float>>(2);
  model.emplace<cnn::Conv2d<float>>(6, 16, 5);
  model.emplace<cnn::ReLU<float>>();
  model.emplace<cnn::MaxPool2d<float>>(2);
  model.emplace<cnn::Flatten<float>>();
  model.emplace<cnn::Linear<float>>(400, 120);
  model.emplace<cnn::ReLU<float>>();
  model.emplace<cnn::Linear<float>>(120, 84);
  model.emplace<cnn::ReLU<float>>();
  model.emplace<cnn::Linear<float>>(84, 10);
  model.build(cnn::Shape{1, 28, 28});
  cnn::Rng rng(1);
  model.init_parameters(rng);
  cnn::Tensor<float> x(cnn::Shape{4, 1, 28, 28}), labels(cnn::Shape{4});
  for (float& v : x) v = static_cast<float>(rng.uniform());
  for (int64_t i = 0; i < 4; ++i) labels[i] = static_cast<float>(i);
  cnn::CrossEntropyLoss<float> loss;
  cnn::Sgd<float> sgd(model.parameters(), model.gradients(), {.lr = 0.01, .momentum = 0.9});
  model.zero_grad();
  const auto logits = model.forward(x, cnn::Mode::kTrain);
  const float value = loss.forward(logits, labels);
  cnn::Tensor<float> dlogits(logits.shape());
  loss.backward(logits, labels, dlogits);
  model.backward(dlogits);
  sgd.step();
  std::printf("consumer: %lld parameters, loss %.4f\n",
              static_cast<long long>(model.parameter_count()), value);
  return model.parameter_count() == 61706 && std::isfinite(value) ? 0 : 1;
}

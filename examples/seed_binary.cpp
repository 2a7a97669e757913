// The seed's own setting: a small CNN (convolution, tanh, max pooling, dense, sigmoid) trained
// with the seed's log loss to tell two Fashion-MNIST classes apart.
//
//   seed_binary [--data DIR] [--classes A,B] [--epochs N] [--batch N] [--lr X] [--seed N]
//               [--require-accuracy PERCENT]
//
// Prints the loss per epoch and the final test accuracy; with --require-accuracy it exits 1
// when the accuracy is lower (the test suite uses this).

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <numeric>
#include <string>
#include <vector>

#include "cnn/cnn.hpp"

// Idle OpenMP threads spin 33-75 us before they sleep, not 3-7 ms (cnn/openmp_spin.hpp).
CNN_SHORT_OPENMP_SPIN();

namespace {

const char* const kClassNames[10] = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                     "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};

struct Options {
  std::string data = "/usr/share/datasets/fashion-mnist";
  int class_a = 0, class_b = 1;
  int epochs = 3;
  int batch = 32;
  double lr = 0.05;
  uint64_t seed = 1;
  double require_accuracy = -1;
};

const char* const kUsage =
    "usage: seed_binary [--data DIR] [--classes A,B] [--epochs N] [--batch N] [--lr X]\n"
    "                   [--seed N] [--require-accuracy PERCENT]\n"
    "Trains conv 4@5x5 -> tanh -> maxpool 2 -> dense -> sigmoid with the log loss on two\n"
    "Fashion-MNIST classes (default 0,1: T-shirt/top vs Trouser) read from DIR (default\n"
    "/usr/share/datasets/fashion-mnist, the four IDX files, raw or .gz).\n";

/// Parses a whole number in [lo, hi] or throws cnn::Error naming the flag.
long parse_int(const std::string& flag, const std::string& text, long lo, long hi) {
  char* end = nullptr;
  errno = 0;
  const long value = std::strtol(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || errno != 0 || value < lo || value > hi) {
    throw cnn::Error(flag + ": expected a whole number in [" + std::to_string(lo) + ", " +
                     std::to_string(hi) + "], got '" + text + "'");
  }
  return value;
}

double parse_double(const std::string& flag, const std::string& text, double lo, double hi) {
  char* end = nullptr;
  const double value = std::strtod(text.c_str(), &end);
  if (text.empty() || *end != '\0' || !(value >= lo && value <= hi)) {
    throw cnn::Error(flag + ": expected a number in [" + std::to_string(lo) + ", " +
                     std::to_string(hi) + "], got '" + text + "'");
  }
  return value;
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--help" || flag == "-h") {
      std::cout << kUsage;
      std::exit(0);
    }
    if (i + 1 >= argc) throw cnn::Error(flag + ": unknown flag or missing value (see --help)");
    const std::string value = argv[++i];
    if (flag == "--data") {
      o.data = value;
    } else if (flag == "--classes") {
      const size_t comma = value.find(',');
      if (comma == std::string::npos)
        throw cnn::Error("--classes: expected A,B, got '" + value + "'");
      o.class_a = static_cast<int>(parse_int(flag, value.substr(0, comma), 0, 9));
      o.class_b = static_cast<int>(parse_int(flag, value.substr(comma + 1), 0, 9));
      if (o.class_a == o.class_b)
        throw cnn::Error("--classes: expected two different classes, got '" + value + "'");
    } else if (flag == "--epochs") {
      o.epochs = static_cast<int>(parse_int(flag, value, 1, 1000));
    } else if (flag == "--batch") {
      o.batch = static_cast<int>(parse_int(flag, value, 1, 65536));
    } else if (flag == "--lr") {
      o.lr = parse_double(flag, value, 1e-9, 10);
    } else if (flag == "--seed") {
      o.seed = static_cast<uint64_t>(parse_int(flag, value, 0, 1L << 62));
    } else if (flag == "--require-accuracy") {
      o.require_accuracy = parse_double(flag, value, 0, 100);
    } else {
      throw cnn::Error(flag + ": unknown flag (see --help)");
    }
  }
  return o;
}

/// The images of the two classes, with targets 0 (class a) and 1 (class b).
struct BinarySet {
  cnn::ImageSet images;
  std::vector<int64_t> indices;  // into images
  std::vector<float> targets;    // per index
};

BinarySet select(const cnn::Dataset& data, int a, int b) {
  BinarySet set;
  for (int64_t i = 0; i < data.size(); ++i) {
    const int label = data.labels[static_cast<size_t>(i)];
    if (label == a || label == b) {
      set.indices.push_back(i);
      set.targets.push_back(label == b ? 1.0f : 0.0f);
    }
  }
  return set;
}

int run(const Options& o) {
  const auto path = [&](const char* name) { return cnn::resolve_maybe_gz(o.data + "/" + name); };
  const cnn::Dataset train_data =
      cnn::read_idx_dataset(path("train-images-idx3-ubyte"), path("train-labels-idx1-ubyte"));
  const cnn::Dataset test_data =
      cnn::read_idx_dataset(path("t10k-images-idx3-ubyte"), path("t10k-labels-idx1-ubyte"));
  const BinarySet train = select(train_data, o.class_a, o.class_b);
  const BinarySet test = select(test_data, o.class_a, o.class_b);
  std::printf("classes: %s (0) vs %s (1); %zu training and %zu test images\n",
              kClassNames[o.class_a], kClassNames[o.class_b], train.indices.size(),
              test.indices.size());

  cnn::Sequential<float> model;
  model.emplace<cnn::Conv2d<float>>(1, 4, 5);  // (N, 4, 24, 24)
  model.emplace<cnn::Tanh<float>>();
  model.emplace<cnn::MaxPool2d<float>>(2);  // (N, 4, 12, 12)
  model.emplace<cnn::Flatten<float>>();     // (N, 576)
  model.emplace<cnn::Linear<float>>(4 * 12 * 12, 1);
  model.emplace<cnn::Sigmoid<float>>();  // p(class b)
  model.build(cnn::Shape{1, train_data.images.rows, train_data.images.cols});
  cnn::Rng rng(o.seed);
  model.init_parameters(rng);
  cnn::Sgd<float> sgd(model.parameters(), model.gradients(), {.lr = o.lr, .momentum = 0.9});
  cnn::LogLoss<float> loss;

  std::vector<size_t> order(train.indices.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::vector<int64_t> batch_indices;
  cnn::Tensor<float> x, target, dp;
  for (int epoch = 1; epoch <= o.epochs; ++epoch) {
    const auto start = std::chrono::steady_clock::now();
    rng.shuffle(order.begin(), order.end());
    double loss_sum = 0;
    int64_t seen = 0;
    for (size_t first = 0; first < order.size(); first += static_cast<size_t>(o.batch)) {
      const size_t count = std::min(order.size() - first, static_cast<size_t>(o.batch));
      batch_indices.clear();
      target.resize(cnn::Shape{static_cast<int64_t>(count), 1});
      for (size_t k = 0; k < count; ++k) {
        batch_indices.push_back(train.indices[order[first + k]]);
        target[static_cast<int64_t>(k)] = train.targets[order[first + k]];
      }
      cnn::gather_images(train_data.images, batch_indices, x);
      model.zero_grad();
      const cnn::TensorView<const float> p = model.forward(x, cnn::Mode::kTrain);
      loss_sum += static_cast<double>(loss.forward(p, target)) * static_cast<double>(count);
      seen += static_cast<int64_t>(count);
      dp.resize(p.shape());
      loss.backward(p, target, dp);
      model.backward(dp);
      sgd.step();
    }
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::printf("epoch %d: train log loss %.5f (%.1f s)\n", epoch, loss_sum / double(seen),
                seconds);
  }

  int64_t correct = 0;
  double test_loss = 0;
  for (size_t first = 0; first < test.indices.size(); first += 256) {
    const size_t count = std::min(test.indices.size() - first, size_t{256});
    batch_indices.assign(test.indices.begin() + static_cast<std::ptrdiff_t>(first),
                         test.indices.begin() + static_cast<std::ptrdiff_t>(first + count));
    target.resize(cnn::Shape{static_cast<int64_t>(count), 1});
    std::copy(test.targets.begin() + static_cast<std::ptrdiff_t>(first),
              test.targets.begin() + static_cast<std::ptrdiff_t>(first + count), target.begin());
    cnn::gather_images(test_data.images, batch_indices, x);
    const cnn::TensorView<const float> p = model.forward(x, cnn::Mode::kEval);
    test_loss += static_cast<double>(loss.forward(p, target)) * static_cast<double>(count);
    for (size_t k = 0; k < count; ++k) {
      const bool predicted_b = p[static_cast<int64_t>(k)] >= 0.5f;
      correct += predicted_b == (target[static_cast<int64_t>(k)] == 1.0f);
    }
  }
  const double accuracy = 100.0 * double(correct) / double(test.indices.size());
  std::printf("test log loss %.5f, test accuracy %.2f%% (%lld of %zu)\n",
              test_loss / double(test.indices.size()), accuracy, static_cast<long long>(correct),
              test.indices.size());
  if (o.require_accuracy >= 0 && accuracy < o.require_accuracy) {
    std::fprintf(stderr, "seed_binary: test accuracy %.2f%% is below the required %.2f%%\n",
                 accuracy, o.require_accuracy);
    return 1;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(parse(argc, argv));
  } catch (const cnn::Error& e) {
    std::fprintf(stderr, "seed_binary: %s\n", e.what());
    return 2;
  }
}

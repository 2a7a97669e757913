#pragma once
// Training and evaluation loops over in-memory datasets: the library half of `cnn train` and
// `cnn eval`.

#include <cstdint>
#include <functional>
#include <vector>

#include "cnn/data.hpp"
#include "cnn/loss.hpp"
#include "cnn/model.hpp"
#include "cnn/report.hpp"
#include "cnn/rng.hpp"
#include "cnn/spec.hpp"

namespace cnn {

/// How the learning rate changes over training.
enum class LrSchedule {
  kConstant,  // lr throughout
  kCosine,    // lr * (1 + cos(pi * step / steps)) / 2 per batch, from lr down to lr * 1e-4 (the
              // floor: the optimizer refuses a rate of 0)
};

struct TrainOptions {
  int epochs = 10;
  int64_t batch = 64;
  double lr = 0.05;
  double momentum = 0.9;
  double weight_decay = 0.0;
  LrSchedule schedule = LrSchedule::kCosine;
};

/// Progress within an epoch, reported after every batch.
struct TrainProgress {
  int epoch = 0, epochs = 0;
  int64_t seen = 0, total = 0;    // images of this epoch
  double loss = 0, accuracy = 0;  // running means over the epoch so far
  double seconds = 0;             // since the epoch started
};

/// The result of evaluating a model on a dataset.
struct EvalResult {
  int64_t samples = 0;
  double loss = 0, accuracy = 0;
  std::vector<double> per_class_accuracy;       // NaN for a class with no samples
  std::vector<std::vector<int64_t>> confusion;  // [true class][predicted class]
  std::vector<float> outputs;                   // (samples x model outputs), when asked for
};

/// Loss and predicted classes for one batch of model outputs. Labels are class indices (for
/// the log loss: 0 or 1). Throws cnn::Error for a label the model cannot output.
class Objective {
 public:
  /// `classes`: what the model distinguishes (2 for the log loss, else its output width).
  Objective(LossKind kind, int64_t classes) : kind_(kind), classes_(classes) {}
  /// Mean loss of `outputs` against `labels`; fills `gradient` (outputs' shape) when non-null.
  double loss(TensorView<const float> outputs, const std::vector<uint8_t>& labels,
              Tensor<float>* gradient);
  /// The predicted class of sample n.
  int predict(TensorView<const float> outputs, int64_t n) const;
  int64_t classes() const { return classes_; }

 private:
  LossKind kind_;
  int64_t classes_;
  Tensor<float> targets_;
  CrossEntropyLoss<float> cross_entropy_;
  LogLoss<float> log_loss_;
};

/// labels = the labels of the samples at `indices` (reusing labels' storage, so that the
/// training loop does not allocate per batch).
void gather_labels(const Dataset& data, const std::vector<int64_t>& indices,
                   std::vector<uint8_t>& labels);

/// Trains `model` (already initialised) with SGD on `train`, shuffling with `rng`, evaluating on
/// `test` after every epoch. Calls on_progress after each batch and on_epoch after each epoch.
std::vector<EpochMetrics> train_model(Sequential<float>& model, const ModelSpec& spec,
                                      const Dataset& train, const Dataset& test,
                                      const TrainOptions& options, Rng& rng,
                                      const std::function<void(const TrainProgress&)>& on_progress,
                                      const std::function<void(const EpochMetrics&)>& on_epoch);

/// Loss, accuracy, per-class accuracy and confusion matrix of `model` on `data`, in order, in
/// batches of `batch`. Keeps the raw outputs when keep_outputs.
EvalResult evaluate(Sequential<float>& model, const ModelSpec& spec, const Dataset& data,
                    int64_t batch, bool keep_outputs = false);

}  // namespace cnn

#pragma once
// Training and evaluation loops over in-memory datasets: the library half of `cnn train` and
// `cnn eval`.

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "cnn/data.hpp"
#include "cnn/distributed.hpp"
#include "cnn/loss.hpp"
#include "cnn/model.hpp"
#include "cnn/optim.hpp"
#include "cnn/report.hpp"
#include "cnn/rng.hpp"
#include "cnn/schedule.hpp"
#include "cnn/spec.hpp"

namespace cnn {

enum class OptimizerKind { kSgd, kAdam, kAdamW };

/// "sgd", "adam", "adamw".
const char* optimizer_name(OptimizerKind kind);
/// The optimizer called `name`; throws cnn::Error "--optimizer: expects sgd, adam or adamw,
/// got '<name>'".
OptimizerKind parse_optimizer(const std::string& name);

struct TrainOptions {
  int epochs = 10;
  int64_t batch = 64;
  OptimizerKind optimizer = OptimizerKind::kSgd;
  double lr = 0.05;
  double momentum = 0.9;  // SGD only
  double weight_decay = 0.0;
  LrSchedule schedule = LrSchedule::kCosine;  // per batch (include/cnn/schedule.hpp)
  int warmup_epochs = 0;                      // linear warm-up (onecycle: its rise)
  // The step schedule multiplies the rate by 0.1 every step_epochs epochs.
  int step_epochs = 1;
  double label_smoothing = 0.0;      // cross-entropy's, in training (evaluation reports plain)
  Augment augment = Augment::kNone;  // of the training batches (random_crop_flip)
  int64_t crop_padding = 2;
};

/// The steps of an epoch of train_model over `samples` in batches of `batch` split over `ranks`:
/// one a batch, less the last batch when it holds fewer samples than ranks (each rank needs
/// one; it is skipped).
int64_t steps_per_epoch(int64_t samples, int64_t batch, int ranks = 1);

/// The schedule `options` describe for `steps_per_epoch` batches an epoch.
ScheduleOptions schedule_options(const TrainOptions& options, int64_t steps_per_epoch);

/// The optimizer `options` describe over `params` and `grads` (Sequential's parameters() and
/// gradients()): SGD with momentum and weight decay, Adam with weight decay added to the
/// gradient, or AdamW with decoupled weight decay (betas 0.9, 0.999, eps 1e-8).
std::unique_ptr<Optimizer<float>> make_optimizer(const TrainOptions& options,
                                                 std::span<float> params,
                                                 std::span<const float> grads);

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
  /// `label_smoothing` (cross-entropy only): see CrossEntropyLoss; throws cnn::Error for a
  /// value outside [0, 1) or for smoothing with the log loss.
  Objective(LossKind kind, int64_t classes, double label_smoothing = 0);
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
/// training loop does not allocate per batch). Throws cnn::Error "gather_labels: expected
/// indices in [0, N), got I" for an index outside data.labels, leaving `labels` as it was.
void gather_labels(const Dataset& data, const std::vector<int64_t>& indices,
                   std::vector<uint8_t>& labels);

/// Where a training run stands between two steps: what, besides the model's parameters and
/// buffers, a checkpoint must hold for the run to continue as if never stopped.
struct TrainState {
  int epoch = 1;     // the epoch in progress, or the next one (epochs + 1: done)
  int64_t step = 0;  // optimizer steps taken in the whole run
  // Mid-epoch: the epoch's sample order and how many of it were trained on; empty at an
  // epoch's boundary (the next epoch draws its order from `rng`).
  std::vector<int64_t> order;
  int64_t position = 0;
  double loss_sum = 0;  // over this epoch's samples so far
  int64_t correct = 0, seen = 0;
  double seconds = 0;  // of training in this epoch so far
  std::vector<EpochMetrics> history;
  RngState rng, augment_rng;         // the data order's stream and augmentation's
  std::vector<RngState> layer_rngs;  // Sequential::rngs(): Dropout masks
  // Data-parallel runs: the number of ranks, and each rank's own streams, [augment_rng,
  // layer_rngs...] per rank (augmentation and Dropout draw differently on every rank); empty
  // for one process.
  int ranks = 1;
  std::vector<std::vector<RngState>> rank_rngs;
  // The optimizer's state tensors (Optimizer::StateTensors: names in its order, one value per
  // parameter each) and counter. Inside a `checkpoint` callback they are the optimizer's own,
  // moved out for the call and back after it (a copy costs nothing to the run: copy them to
  // keep them); in TrainResult::state, those of the last checkpoint or stop.
  std::vector<std::pair<std::string, std::vector<float>>> optimizer_tensors;
  int64_t optimizer_counter = 0;
};

/// How a caller steers train_model between steps (every member optional).
struct TrainControl {
  /// Continue this state (the model's parameters and buffers already restored) instead of
  /// starting at epoch 1. Copied: the caller's state stays as it was; the copy of its optimizer
  /// tensors becomes the optimizer's (Optimizer::put_state), so the moments are held twice for
  /// the run, the caller's and the optimizer's.
  const TrainState* resume = nullptr;
  /// As `resume`, but the state is taken, not copied: train_model moves it into its own and
  /// its optimizer tensors into the optimizer, which has allocated none of its own, so that the
  /// moments of a large model are held once (a caller that resumes a checkpoint it has no
  /// further use for: `cnn train --resume`). The caller's state is left moved from, also when
  /// train_model throws. Either way, result.state's optimizer tensors are those of the last
  /// checkpoint or stop (none before one). Set `resume` or `resume_taken`, not both (cnn::Error).
  TrainState* resume_taken = nullptr;
  /// Asked after every step; true ends training there: `checkpoint` is called, then
  /// train_model returns with TrainResult::stopped.
  std::function<bool()> stop_requested;
  /// Asked after every step; true calls `checkpoint` now (a time-based checkpoint).
  std::function<bool()> checkpoint_due;
  /// Called with the state after every epoch (once its test metrics are in the history), when
  /// checkpoint_due says so, and when stopping. The state's optimizer tensors are moved out of
  /// the optimizer for the call, not copied, and moved back after it (also when it throws):
  /// valid during the call only; a callback that keeps the state copies them.
  std::function<void(const TrainState&)> checkpoint;
  /// Data-parallel training over these ranks (null or one rank: this process alone). Every
  /// rank calls train_model with the same arguments; see docs/distributed.md. Each global batch
  /// of `options.batch` is split into near-equal contiguous shares, the gradients of the mean
  /// loss over the global batch are summed across ranks before each (identical) optimizer step,
  /// rank 0's parameters and buffers are broadcast at the start and its buffers (running
  /// statistics) before each evaluation; a global batch with fewer samples than ranks (an
  /// epoch's last) is skipped. The callbacks are called on every rank (checkpoint gathers the
  /// ranks' random streams into rank 0's state); stop_requested and checkpoint_due are asked on
  /// every rank before each step's backward pass, and any rank's yes counts for all.
  Communicator* ranks = nullptr;
};

struct TrainResult {
  std::vector<EpochMetrics> history;
  bool stopped = false;  // by TrainControl::stop_requested, with `state` where it stopped
  // Where the run ended (finished or stopped), owning the optimizer tensors of the last
  // checkpoint or stop, moved out of the optimizer for good (none when there was neither).
  TrainState state;
};

/// Labels, here and in evaluate, are the model's classes, 0 to outputs - 1: for a spec with
/// "classes", pass the datasets select_classes(data, spec.classes) gives (the command line does;
/// these functions do not select again, since data already selected would lose its images).
/// The whole run with a control: as train_model below, resumable and stoppable. Throws
/// cnn::Error "training diverged: the loss is nan in epoch E, step S ..." for a non-finite loss
/// (the state of the last checkpoint is left as it was), for a `resume` state that does not
/// fit the data, model or optimizer, and, before any step, for a `spec` that does not describe
/// `model` ("train_model: the spec '<name>' does not describe the model: ...", as save_model)
/// or an empty training or test set.
TrainResult train_model(Sequential<float>& model, const ModelSpec& spec, const Dataset& train,
                        const Dataset& test, const TrainOptions& options, Rng& rng,
                        const std::function<void(const TrainProgress&)>& on_progress,
                        const std::function<void(const EpochMetrics&)>& on_epoch,
                        const TrainControl& control);

/// The first BatchNorm of `model` that a training batch of shape `batch` (N, C, H, W) gives one
/// value per channel, which has no variance, described as "layer 3, BatchNorm1d(16, ...)" (one
/// nested in a Residual as "layer 4.body.1.shortcut.1, ..."), or "" when none does. train_model
/// refuses such a batch before its first step; `cnn bench` before it measures.
std::string batchnorm_given_one_value(const Sequential<float>& model, const Shape& batch);

/// Trains `model` (already initialised) on `train` with the optimizer and learning-rate schedule
/// of `options` (make_optimizer, schedule_options), shuffling with `rng`, evaluating on `test`
/// after every epoch (in batches of options.batch, at least 64). Throws cnn::Error for options that
/// describe no schedule or optimizer. Calls on_progress after each batch and on_epoch after each
/// epoch.
std::vector<EpochMetrics> train_model(Sequential<float>& model, const ModelSpec& spec,
                                      const Dataset& train, const Dataset& test,
                                      const TrainOptions& options, Rng& rng,
                                      const std::function<void(const TrainProgress&)>& on_progress,
                                      const std::function<void(const EpochMetrics&)>& on_epoch);

/// Loss, accuracy, per-class accuracy (NaN for a class without samples) and confusion matrix
/// of `model` on `data`, in order, in batches of `batch`. Throws cnn::Error for an empty
/// `data` or a `spec` that does not describe `model` (as train_model; RanksError with ranks).
/// Keeps the raw outputs when keep_outputs. With `ranks` (more than one),
/// each rank evaluates a contiguous share of `data` and the sums are added up across ranks: every
/// rank gets the whole result (keep_outputs then throws cnn::Error).
EvalResult evaluate(Sequential<float>& model, const ModelSpec& spec, const Dataset& data,
                    int64_t batch, bool keep_outputs = false, Communicator* ranks = nullptr);

/// A hash of the model's parameters and buffers (their bytes): equal on every rank of a
/// data-parallel run, which checks it after every epoch.
uint64_t model_hash(Sequential<float>& model);

}  // namespace cnn

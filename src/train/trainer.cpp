#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <limits>
#include <optional>

#include "cnn/error.hpp"
#include "cnn/layers.hpp"
#include "cnn/model_file.hpp"
#include "cnn/optim.hpp"
#include "cnn/residual.hpp"
#include "cnn/train.hpp"

namespace cnn {

namespace {
/// evaluate for a spec that describes the model (train_model checked it once, before its first
/// step: the check builds a model from the spec).
EvalResult evaluate_described(Sequential<float>& model, const ModelSpec& spec, const Dataset& data,
                              int64_t batch, bool keep_outputs, Communicator* ranks);

/// The objective of a built model, without building another copy of it to count its classes.
Objective objective_for(Sequential<float>& model, const ModelSpec& spec,
                        double label_smoothing = 0) {
  return Objective(spec.loss, spec.loss == LossKind::kLogLoss ? 2 : model.output_shape(1)[1],
                   label_smoothing);
}
}  // namespace

Objective::Objective(LossKind kind, int64_t classes, double label_smoothing)
    : kind_(kind), classes_(classes), cross_entropy_(static_cast<float>(label_smoothing)) {
  if (classes < (kind == LossKind::kLogLoss ? 2 : 1))
    throw Error("Objective: expected a positive number of classes, got " + std::to_string(classes));
  if (label_smoothing != 0 && kind == LossKind::kLogLoss) {
    throw Error("label smoothing applies to the cross-entropy loss, not the log loss");
  }
}

double Objective::loss(TensorView<const float> outputs, const std::vector<uint8_t>& labels,
                       Tensor<float>* gradient) {
  const int64_t n = outputs.shape().rank() > 0 ? outputs.shape()[0] : 0;
  if (static_cast<int64_t>(labels.size()) != n) {
    throw Error("Objective: expected one label per output row (" + std::to_string(n) + "), got " +
                std::to_string(labels.size()));
  }
  for (uint8_t label : labels) {
    if (label >= classes_) {
      // The hint: train_model and evaluate take labels as the model's classes, and only the
      // command line selects a spec's "classes" (found 2026-12-08, a probe of the API).
      throw Error("dataset label " + std::to_string(label) + " is outside the model's " +
                  std::to_string(classes_) + " classes (labels are the model's classes, 0 to " +
                  std::to_string(classes_ - 1) +
                  ": for a spec with \"classes\", pass the data select_classes gives)");
    }
  }
  Loss<float>& loss = kind_ == LossKind::kLogLoss ? static_cast<Loss<float>&>(log_loss_)
                                                  : static_cast<Loss<float>&>(cross_entropy_);
  targets_.resize(kind_ == LossKind::kLogLoss ? Shape{n, 1} : Shape{n});
  for (int64_t i = 0; i < n; ++i) targets_[i] = static_cast<float>(labels[static_cast<size_t>(i)]);
  double value = loss.forward(outputs, targets_);
  if (std::isinf(value) && kind_ == LossKind::kCrossEntropy) {
    // The float loss sums in double but returns its mean as a float: finite logits more than
    // 3.4e38 apart made a mean above float's largest value "inf" (found 2026-12-07: cnn eval
    // printed "loss inf", --json "loss": null, the metrics CSV "inf"). Its true value, in
    // double; the log loss clamps p and stays below -log(eps).
    Tensor<double> logits(outputs.shape()), targets(targets_.shape());
    std::copy(outputs.begin(), outputs.end(), logits.begin());
    std::copy(targets_.begin(), targets_.end(), targets.begin());
    value = CrossEntropyLoss<double>(cross_entropy_.label_smoothing()).forward(logits, targets);
  }
  if (gradient) {
    gradient->resize(outputs.shape());
    loss.backward(outputs, targets_, *gradient);
  }
  return value;
}

int Objective::predict(TensorView<const float> outputs, int64_t n) const {
  if (outputs.shape().rank() != 2 || n < 0 || n >= outputs.shape()[0] || outputs.empty()) {
    throw Error("Objective::predict: expected a row of (N, classes) outputs " +
                outputs.shape().str() + ", got row " + std::to_string(n));
  }
  if (kind_ == LossKind::kLogLoss) return outputs[n] >= 0.5f ? 1 : 0;
  const int64_t k = outputs.shape()[1];
  const float* row = outputs.data() + n * k;
  int64_t best = 0;
  for (int64_t c = 1; c < k; ++c) {
    if (row[c] > row[best]) best = c;  // the first maximum wins ties, as torch.argmax
  }
  return static_cast<int>(best);
}

const char* optimizer_name(OptimizerKind kind) {
  switch (kind) {
    case OptimizerKind::kSgd:
      return "sgd";
    case OptimizerKind::kAdam:
      return "adam";
    case OptimizerKind::kAdamW:
      return "adamw";
  }
  return "?";
}

OptimizerKind parse_optimizer(const std::string& name) {
  for (OptimizerKind k : {OptimizerKind::kSgd, OptimizerKind::kAdam, OptimizerKind::kAdamW}) {
    if (name == optimizer_name(k)) return k;
  }
  throw Error("--optimizer: expects sgd, adam or adamw, got '" + name + "'");
}

int64_t steps_per_epoch(int64_t samples, int64_t batch, int ranks) {
  if (samples < 0 || batch < 1 || ranks < 1) {
    throw Error("steps_per_epoch: expected samples >= 0, a batch and ranks >= 1, got " +
                std::to_string(samples) + ", " + std::to_string(batch) + " and " +
                std::to_string(ranks));
  }
  const int64_t last = samples % batch;
  return samples / batch + (last != 0 && last >= ranks ? 1 : 0);
}

ScheduleOptions schedule_options(const TrainOptions& options, int64_t steps_per_epoch) {
  ScheduleOptions s;
  s.kind = options.schedule;
  s.lr = options.lr;
  s.total_steps = steps_per_epoch * options.epochs;
  s.warmup_steps = steps_per_epoch * options.warmup_epochs;
  s.step_size = steps_per_epoch * options.step_epochs;
  validate(s);
  return s;
}

std::unique_ptr<Optimizer<float>> make_optimizer(const TrainOptions& options,
                                                 std::span<float> params,
                                                 std::span<const float> grads) {
  if (options.optimizer == OptimizerKind::kSgd) {
    return std::make_unique<Sgd<float>>(
        params, grads,
        SgdOptions{
            .lr = options.lr, .momentum = options.momentum, .weight_decay = options.weight_decay});
  }
  return std::make_unique<Adam<float>>(
      params, grads,
      AdamOptions{.lr = options.lr,
                  .weight_decay = options.weight_decay,
                  .decoupled_weight_decay = options.optimizer == OptimizerKind::kAdamW});
}

void gather_labels(const Dataset& data, const std::vector<int64_t>& indices,
                   std::vector<uint8_t>& labels) {
  // Checked first, as gather_images does: a bad index is one line naming this function, not
  // libstdc++'s range_check message, and `labels` is not left half-filled.
  detail::require_indices(indices, static_cast<int64_t>(data.labels.size()), "gather_labels");
  labels.clear();
  for (const int64_t index : indices) labels.push_back(data.labels[static_cast<size_t>(index)]);
}

std::vector<EpochMetrics> train_model(Sequential<float>& model, const ModelSpec& spec,
                                      const Dataset& train, const Dataset& test,
                                      const TrainOptions& options, Rng& rng,
                                      const std::function<void(const TrainProgress&)>& on_progress,
                                      const std::function<void(const EpochMetrics&)>& on_epoch) {
  return train_model(model, spec, train, test, options, rng, on_progress, on_epoch, {}).history;
}

namespace {

/// The first BatchNorm in `layer` (labelled as state_dict prefixes: "3", "4.body.1") that an
/// input of batch shape `shape` gives a single value per channel, described as
/// "layer 3, BatchNorm1d(16, ...)", or "" when none does; `shape` becomes the layer's output.
/// Synchronised BatchNorms count over all ranks, so a rank's share never leaves them one.
std::string batchnorm_in_layer_given_one_value(const Layer<float>& layer, const std::string& label,
                                               Shape& shape) {
  const Shape input = shape;
  shape = layer.output_shape(shape);
  if (const auto* norm = dynamic_cast<const BatchNorm<float>*>(&layer)) {
    const ops::NormShape s = BatchNorm<float>::norm_shape(input);
    if (!norm->synchronised() && s.batch * s.inner < 2)
      return "layer " + label + ", " + layer.describe();
    return "";
  }
  if (const auto* block = dynamic_cast<const Residual<float>*>(&layer)) {
    // Each branch from the block's input; `shape` is already the block's output.
    Shape branch = input;
    for (size_t i = 0; i < block->body_size(); ++i) {
      std::string found = batchnorm_in_layer_given_one_value(
          block->body(i), label + ".body." + std::to_string(i), branch);
      if (!found.empty()) return found;
    }
    branch = input;
    for (size_t i = 0; i < block->shortcut_size(); ++i) {
      std::string found = batchnorm_in_layer_given_one_value(
          block->shortcut(i), label + ".shortcut." + std::to_string(i), branch);
      if (!found.empty()) return found;
    }
  }
  return "";
}

}  // namespace

std::string batchnorm_given_one_value(const Sequential<float>& model, const Shape& batch) {
  Shape shape = batch;
  std::string found;
  for (size_t i = 0; i < model.size() && found.empty(); ++i)
    found = batchnorm_in_layer_given_one_value(model.layer(i), std::to_string(i), shape);
  return found;
}

TrainResult train_model(Sequential<float>& model, const ModelSpec& spec, const Dataset& train,
                        const Dataset& test, const TrainOptions& options, Rng& rng,
                        const std::function<void(const TrainProgress&)>& on_progress,
                        const std::function<void(const EpochMetrics&)>& on_epoch,
                        const TrainControl& control) {
  // Data-parallel: this rank's place among `world` (docs/distributed.md).
  Communicator* const ranks =
      control.ranks != nullptr && control.ranks->size() > 1 ? control.ranks : nullptr;
  const int rank = ranks ? ranks->rank() : 0, world = ranks ? ranks->size() : 1;
  // Errors that every rank meets alike are RanksErrors: one rank reports them.
  const auto fail = [&](const std::string& what) {
    if (ranks) throw RanksError(what);
    throw Error(what);
  };
  check_dataset(train, "train_model: the training set");
  check_dataset(test, "train_model: the test set");
  // An empty test set ended every epoch with NaN test metrics (0 / 0), an empty training set
  // in BatchIterator's message about its count.
  if (train.size() == 0 || test.size() == 0) {
    fail(std::string("train_model: expected at least one sample in the ") +
         (train.size() == 0 ? "training" : "test") + " set, got none");
  }
  // The run reads the spec for its loss, the input's shape and the checkpoints' architecture:
  // one that does not describe the model gave another layer's error, read past the spec's
  // input, or wrote checkpoints that load_checkpoint refused, after the training.
  if (const std::string why = detail::spec_not_describing(model, spec); !why.empty())
    fail("train_model: " + why);
  if (ranks && (options.batch < world || train.size() < world)) {
    fail("--batch " + std::to_string(options.batch) + " over " + std::to_string(train.size()) +
         " training samples cannot be split over " + std::to_string(world) +
         " ranks: every rank needs a sample of every batch");
  }
  const std::unique_ptr<Optimizer<float>> optimizer =
      make_optimizer(options, model.parameters(), model.gradients());
  Objective objective = objective_for(model, spec, options.label_smoothing);
  BatchIterator batches(train.size(), options.batch);
  // With ranks, an epoch's last batch is skipped when it has fewer samples than ranks.
  const int64_t last_batch = train.size() % options.batch;
  const bool skip_last = ranks && last_batch != 0 && last_batch < world;
  const int64_t per_epoch = steps_per_epoch(train.size(), options.batch, world);
  const ScheduleOptions schedule = schedule_options(options, per_epoch);
  {
    // A BatchNorm given one value per channel cannot take a variance (PyTorch refuses it too):
    // said before the first step, not at an epoch's last batch. The smallest batch a rank
    // trains on is its share of a full batch or of the last one.
    const bool last_is_smaller = last_batch != 0 && !skip_last;
    const int64_t smallest = (last_is_smaller ? last_batch : options.batch) / world;
    const std::string found = batchnorm_given_one_value(
        model, Shape{smallest, spec.input[0], spec.input[1], spec.input[2]});
    if (!found.empty()) {
      const std::string share = ranks ? " (" + std::to_string(smallest) + " a rank)" : "";
      fail("--batch " + std::to_string(options.batch) + ": " +
           (last_is_smaller ? "the last batch of an epoch holds " + std::to_string(last_batch) +
                                  " of the " + std::to_string(train.size()) + " training samples"
                            : "a batch holds " + std::to_string(options.batch) + " sample" +
                                  (options.batch == 1 ? "" : "s")) +
           share + ", which gives " + found +
           " one value per channel; it needs more than 1 in training (the variance of one is 0)" +
           (last_is_smaller ? ": choose a --batch that divides " + std::to_string(train.size()) +
                                  " or leaves 2 or more"
                            : ""));
    }
  }
  std::vector<int64_t> indices;
  std::vector<uint8_t> labels;
  Tensor<float> x, gradient;
  // Augmentation draws from a stream of its own, seeded from rng only when it is on, so that
  // the data order is the same with and without it.
  const bool augment = options.augment == Augment::kCropFlip;
  Rng augment_rng(augment ? rng.next_u64() : 0);
  std::vector<float> augment_scratch;
  const std::vector<Rng*> layer_rngs = model.rngs();
  if (control.resume && control.resume_taken)
    fail("train_model: TrainControl's resume and resume_taken are both set: expected one state");
  const bool resuming = control.resume || control.resume_taken;
  if (ranks && !resuming) {
    // Every rank augments and drops out differently (its own streams); the data order, from
    // rng, stays the same on all of them.
    const uint64_t salt = 0x9E3779B97F4A7C15ull * static_cast<uint64_t>(rank + 1);
    augment_rng = Rng(augment_rng.next_u64() ^ salt);
    for (Rng* r : layer_rngs) *r = Rng(r->next_u64() ^ salt);
  }
  if (ranks) {
    // Rank 0's initial (or restored) model on every rank.
    ranks->broadcast(model.parameters().data(), model.parameter_count());
    if (model.buffer_count() > 0) ranks->broadcast(model.buffers().data(), model.buffer_count());
  }
  // A rank's own streams as words, for the gather of a checkpoint: [augment, layers...].
  const auto stream_words = [&] {
    std::vector<uint64_t> words;
    std::vector<RngState> states{augment_rng.state()};
    for (Rng* r : layer_rngs) states.push_back(r->state());
    for (const RngState& st : states) {
      words.insert(words.end(), st.words.begin(), st.words.end());
      uint64_t spare_bits = 0;
      std::memcpy(&spare_bits, &st.spare, sizeof spare_bits);
      words.push_back(st.has_spare ? 1 : 0);
      words.push_back(spare_bits);
    }
    return words;
  };
  constexpr size_t kWordsPerStream = 6;
  TrainResult result;
  TrainState& state = result.state;
  if (resuming) {
    // A taken state is moved, a given one copied; either way its optimizer tensors are then
    // moved into the optimizer below (put_state), not copied again.
    if (control.resume_taken)
      state = std::move(*control.resume_taken);
    else
      state = *control.resume;
    const auto refuse = [&](const std::string& what) {
      fail("cannot resume: the checkpoint's " + what);
    };
    // load_checkpoint checks a file's state; a caller's own TrainState is checked here.
    if (state.epoch < 1 || state.epoch > options.epochs + 1) {
      refuse("epoch " + std::to_string(state.epoch) + " is outside 1 to " +
             std::to_string(options.epochs + 1) + " (the run's epochs + 1: finished)");
    }
    if (state.history.size() != static_cast<size_t>(state.epoch - 1)) {
      refuse("history has " + std::to_string(state.history.size()) + " epochs, expected " +
             std::to_string(state.epoch - 1) + " before epoch " + std::to_string(state.epoch));
    }
    if (state.step < 0 || state.seen < 0 || state.correct < 0 || state.correct > state.seen ||
        state.optimizer_counter < 0 || !std::isfinite(state.loss_sum) || state.loss_sum < 0) {
      refuse("step, sample counts or loss sum are out of range");
    }
    // The step follows from the epoch and the position, as the run counts them: the schedule
    // reads it (found 2026-12-07, a helper's probe: an edited step of 64 in epoch 1 trained
    // the epoch on epoch 3's learning rates, then ended with "learning-rate schedule: expected
    // a step in [0, 96), got 96" after writing a checkpoint no resume could finish; a smaller
    // one resumed on another schedule without a word). A mid-epoch state is taken only after
    // a full batch, so its position is a whole number of batches.
    const int64_t taken = state.order.empty() ? 0 : state.position / options.batch;
    if (!state.order.empty() && state.position % options.batch != 0) {
      refuse("position " + std::to_string(state.position) +
             " is not a whole number of batches of " + std::to_string(options.batch));
    }
    if (!state.order.empty() && state.seen != state.position) {
      // The epoch's metrics so far are over the samples trained, which are its position.
      refuse("sample count " + std::to_string(state.seen) + " differs from its position " +
             std::to_string(state.position) + " in the epoch");
    }
    if (state.step != (state.epoch - 1) * per_epoch + taken) {
      refuse("step " + std::to_string(state.step) + " does not follow from its epoch " +
             std::to_string(state.epoch) + " and position " + std::to_string(state.position) +
             ": " + std::to_string(per_epoch) + " steps an epoch give step " +
             std::to_string((state.epoch - 1) * per_epoch + taken));
    }
    if (state.layer_rngs.size() != layer_rngs.size()) refuse("random streams do not fit the model");
    // The streams' and the optimizer's own refusals said nothing of the resume (found
    // 2026-12-07, a helper's probe: "SGD: expected a state counter of 0 (before the first
    // step) or 1, got 5" after the run's "resuming" and "training" lines).
    try {
      for (size_t i = 0; i < layer_rngs.size(); ++i) layer_rngs[i]->set_state(state.layer_rngs[i]);
      rng.set_state(state.rng);
      augment_rng.set_state(state.augment_rng);
    } catch (const Error& e) {
      refuse("random streams do not fit: " + std::string(e.what()));
    }
    // The optimizer has allocated no moments of its own yet: it adopts these (found
    // 2026-12-07: it allocated its own first and the loaded ones were copied in, so that a
    // resumed run held the moments twice, 6P floats for Adam's P parameters).
    try {
      optimizer->put_state(std::move(state.optimizer_tensors));
      optimizer->set_state_counter(state.optimizer_counter);
    } catch (const Error& e) {
      refuse("optimizer state does not fit: " + std::string(e.what()));
    }
    state.optimizer_tensors.clear();
    if (!state.order.empty()) batches.restore(state.order, state.position);
    if (state.ranks != world) {
      refuse("run had " + std::to_string(state.ranks) + " rank" + (state.ranks == 1 ? "" : "s") +
             ", this one has " + std::to_string(world) + " (resume with the same mpirun -np)");
    }
    if (ranks) {
      if (state.rank_rngs.size() != static_cast<size_t>(world) ||
          state.rank_rngs[static_cast<size_t>(rank)].size() != layer_rngs.size() + 1)
        refuse("ranks' random streams do not fit the model");
      const std::vector<RngState>& mine = state.rank_rngs[static_cast<size_t>(rank)];
      try {
        augment_rng.set_state(mine[0]);
        for (size_t i = 0; i < layer_rngs.size(); ++i) layer_rngs[i]->set_state(mine[i + 1]);
      } catch (const Error& e) {
        // This rank's own streams: not a RanksError, which one rank reports for all.
        throw Error("cannot resume: the checkpoint's random streams of rank " +
                    std::to_string(rank) + " do not fit: " + e.what());
      }
    }
  }
  // The state of the run between two steps, for a checkpoint. The optimizer's tensors are
  // moved into it, not copied (found 2026-12-07: the copy held Adam's moments twice at every
  // checkpoint, 318 MB more for 40M parameters): checkpoint_with gives them back after the
  // callback; a stop, and the end of the run, leave them in result.state.
  bool captured = false;
  const auto capture = [&](bool mid_epoch, double seconds) {
    state.rng = rng.state();
    state.augment_rng = augment_rng.state();
    state.layer_rngs.clear();
    for (Rng* r : layer_rngs) state.layer_rngs.push_back(r->state());
    state.optimizer_tensors = optimizer->take_state();
    captured = true;
    state.optimizer_counter = optimizer->state_counter();
    state.order = mid_epoch ? batches.order() : std::vector<int64_t>{};
    state.position = mid_epoch ? batches.position() : 0;
    state.seconds = seconds;
    state.ranks = world;
    state.rank_rngs.clear();
    if (ranks) {
      const std::vector<uint64_t> mine = stream_words();
      std::vector<uint64_t> all(rank == 0 ? mine.size() * static_cast<size_t>(world) : 0);
      ranks->gather(mine.data(), static_cast<int64_t>(mine.size()), all.data());
      for (size_t r = 0; rank == 0 && r < static_cast<size_t>(world); ++r) {
        std::vector<RngState>& streams = state.rank_rngs.emplace_back();
        for (size_t k = 0; k < mine.size(); k += kWordsPerStream) {
          const uint64_t* w = all.data() + r * mine.size() + k;
          RngState st;
          std::copy_n(w, 4, st.words.begin());
          st.has_spare = w[4] != 0;
          std::memcpy(&st.spare, &w[5], sizeof st.spare);
          streams.push_back(st);
        }
      }
    }
  };
  // control.checkpoint on the captured state, then its optimizer tensors back into the
  // optimizer, also when the callback throws.
  const auto checkpoint_with = [&] {
    const auto give_back = [&] {
      optimizer->put_state(std::move(state.optimizer_tensors));
      state.optimizer_tensors.clear();
    };
    try {
      control.checkpoint(state);
    } catch (...) {
      give_back();
      throw;
    }
    give_back();
  };
  for (; state.epoch <= options.epochs; ++state.epoch) {
    const int epoch = state.epoch;
    const bool continuing = !state.order.empty();
    const double seconds_before = continuing ? state.seconds : 0;
    const auto start = std::chrono::steady_clock::now();
    const auto seconds_now = [&] {
      return seconds_before +
             std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    };
    if (!continuing) {
      batches.start_epoch(&rng);
      state.loss_sum = 0;
      state.correct = 0;
      state.seen = 0;
    }
    state.order.clear();
    while (batches.next(indices)) {
      const int64_t global_n = static_cast<int64_t>(indices.size());
      if (ranks) {
        if (global_n < world) continue;  // skipped by every rank alike
        const auto share = [&](int64_t r) { return global_n * r / world; };
        indices.erase(indices.begin() + share(rank + 1), indices.end());
        indices.erase(indices.begin(), indices.begin() + share(rank));
      }
      gather_images(train.images, indices, x);
      if (augment) random_crop_flip(x, options.crop_padding, augment_rng, augment_scratch);
      gather_labels(train, indices, labels);
      model.zero_grad();
      const TensorView<const float> outputs = model.forward(x, Mode::kTrain);
      const auto diverged = [&](const std::string& what) {
        fail("training diverged: " + what + " in epoch " + std::to_string(epoch) + ", step " +
             std::to_string(state.step + 1) + " (try a smaller --lr)");
      };
      const int64_t n = static_cast<int64_t>(indices.size());
      bool stop_now = false, checkpoint_now = false;
      if (!ranks) {
        for (const float v : outputs)
          if (!std::isfinite(v)) diverged("the model's outputs are not finite");
        const double loss = objective.loss(outputs, labels, &gradient);
        if (!std::isfinite(loss)) diverged("the loss is " + std::to_string(loss));
        for (int64_t i = 0; i < n; ++i)
          state.correct += objective.predict(outputs, i) == labels[static_cast<size_t>(i)];
        model.backward(gradient);
        state.loss_sum += loss * static_cast<double>(n);
        state.seen += n;
      } else {
        // One small exchange a step: the loss and accuracy sums, and any rank's divergence,
        // stop request or due checkpoint, so that every rank takes the same decisions.
        bool finite = true;
        for (const float v : outputs) finite = finite && std::isfinite(v);
        // The loss refuses non-finite outputs: this rank reports them in the exchange instead.
        double loss = std::numeric_limits<double>::quiet_NaN();
        int64_t correct = 0;
        if (finite) {
          loss = objective.loss(outputs, labels, &gradient);
          for (int64_t i = 0; i < n; ++i)
            correct += objective.predict(outputs, i) == labels[static_cast<size_t>(i)];
        }
        double step_sums[6] = {loss * static_cast<double>(n),
                               static_cast<double>(correct),
                               static_cast<double>(n),
                               finite && std::isfinite(loss) ? 0.0 : 1.0,
                               control.stop_requested && control.stop_requested() ? 1.0 : 0.0,
                               control.checkpoint_due && control.checkpoint_due() ? 1.0 : 0.0};
        ranks->sum(step_sums, 6);
        if (step_sums[3] > 0) {
          diverged("the loss or the model's outputs are not finite on " +
                   std::to_string(std::llround(step_sums[3])) + " of the " + std::to_string(world) +
                   " ranks");
        }
        // The gradient of the mean loss over the global batch: this rank's mean, weighted by
        // its share, summed over the ranks.
        const float weight = static_cast<float>(n) / static_cast<float>(global_n);
        for (float& g : gradient) g *= weight;
        model.backward(gradient);
        ranks->sum(model.gradients().data(), model.parameter_count());
        state.loss_sum += step_sums[0];
        state.correct += std::llround(step_sums[1]);
        state.seen += std::llround(step_sums[2]);
        stop_now = step_sums[4] > 0;
        checkpoint_now = step_sums[5] > 0;
      }
      optimizer->set_lr(scheduled_lr(schedule, state.step));
      ++state.step;
      optimizer->step();
      if (on_progress) {
        on_progress({epoch, options.epochs, state.seen, train.size(),
                     state.loss_sum / double(state.seen),
                     double(state.correct) / double(state.seen), seconds_now()});
      }
      const bool more = batches.position() < train.size() - (skip_last ? last_batch : 0);
      if (!ranks) {
        stop_now = more && control.stop_requested && control.stop_requested();
        checkpoint_now = more && !stop_now && control.checkpoint_due && control.checkpoint_due();
      }
      if (more && stop_now) {
        capture(true, seconds_now());
        if (control.checkpoint) control.checkpoint(state);
        result.stopped = true;
        result.history = state.history;
        return result;
      }
      if (more && checkpoint_now && control.checkpoint) {
        capture(true, seconds_now());
        checkpoint_with();
        state.order.clear();
      }
    }
    const double train_seconds = seconds_now();
    if (ranks && model.buffer_count() > 0) {
      // Rank 0's running statistics are the model's (as DDP's broadcast buffers).
      ranks->broadcast(model.buffers().data(), model.buffer_count());
    }
    // In batches of the training batch (at least 64): larger ones only grew every activation
    // buffer past training's (resnet's peak memory on the sample data: 221 MiB with 256, 170
    // with 128). An image's outputs do not depend on its batch here: the logits of lenet5,
    // convnet and resnet were the same bytes in batches of 64 or 100+ as in 256.
    const EvalResult tested =
        evaluate_described(model, spec, test, std::max<int64_t>(options.batch, 64), false, ranks);
    if (ranks && !ranks->all_equal(model_hash(model))) {
      fail("after epoch " + std::to_string(epoch) +
           " the ranks' models differ (hashes of their parameters and buffers): the ranks did "
           "not all take the same steps");
    }
    EpochMetrics m;
    m.epoch = epoch;
    m.train_loss = state.loss_sum / double(state.seen);
    m.train_accuracy = double(state.correct) / double(state.seen);
    m.test_loss = tested.loss;
    m.test_accuracy = tested.accuracy;
    m.seconds = train_seconds;
    state.history.push_back(m);
    if (on_epoch) on_epoch(m);
    if (control.checkpoint) {
      ++state.epoch;  // the checkpoint continues with the next epoch
      capture(false, 0);
      checkpoint_with();
      --state.epoch;
    }
    double stop_flag = control.stop_requested && control.stop_requested() ? 1.0 : 0.0;
    if (ranks) ranks->sum(&stop_flag, 1);  // any rank's request, on every rank
    if (epoch < options.epochs && stop_flag > 0) {
      ++state.epoch;
      capture(false, 0);
      result.stopped = true;
      result.history = state.history;
      return result;
    }
  }
  // The optimizer ends with the run: the last checkpoint's tensors (its state now, no step
  // having followed it) are moved into the result for good.
  if (captured) state.optimizer_tensors = optimizer->take_state();
  result.history = state.history;
  return result;
}

EvalResult evaluate(Sequential<float>& model, const ModelSpec& spec, const Dataset& data,
                    int64_t batch, bool keep_outputs, Communicator* ranks) {
  if (ranks != nullptr && ranks->size() == 1) ranks = nullptr;
  if (ranks && keep_outputs) throw Error("evaluate: outputs are kept only in one process");
  check_dataset(data, "evaluate");
  // The loss and accuracy are means over the samples: 0 / 0 for none.
  if (data.size() == 0) throw Error("evaluate: expected at least one sample, got none");
  // As train_model (found 2026-12-06): the spec gives the loss, and another model's spec or a
  // default ModelSpec was taken without a word. Every rank meets it alike.
  if (const std::string why = detail::spec_not_describing(model, spec); !why.empty()) {
    const std::string what = "evaluate: " + why;
    if (ranks) throw RanksError(what);
    throw Error(what);
  }
  return evaluate_described(model, spec, data, batch, keep_outputs, ranks);
}

namespace {

EvalResult evaluate_described(Sequential<float>& model, const ModelSpec& spec, const Dataset& data,
                              int64_t batch, bool keep_outputs, Communicator* ranks) {
  // This rank's contiguous share of the data.
  const int64_t first = ranks ? data.size() * ranks->rank() / ranks->size() : 0;
  const int64_t last = ranks ? data.size() * (ranks->rank() + 1) / ranks->size() : data.size();
  Objective objective = objective_for(model, spec);
  const int64_t classes = objective.classes();
  EvalResult result;
  result.samples = data.size();
  result.confusion.assign(static_cast<size_t>(classes),
                          std::vector<int64_t>(static_cast<size_t>(classes), 0));
  std::vector<int64_t> indices;
  std::vector<uint8_t> labels;
  Tensor<float> x;
  double loss_sum = 0;
  int64_t correct = 0;
  std::optional<BatchIterator> batches;
  if (last > first) batches.emplace(last - first, batch);
  while (batches && batches->next(indices)) {
    for (int64_t& i : indices) i += first;
    gather_images(data.images, indices, x);
    gather_labels(data, indices, labels);
    const TensorView<const float> outputs = model.forward(x, Mode::kEval);
    const int64_t n = static_cast<int64_t>(indices.size());
    // Finite weights can still overflow; the loss refused such outputs naming neither the
    // sample nor the cause (found 2026-12-07: `cnn eval` said only "CrossEntropyLoss():
    // expected finite predictions, got inf at index 0").
    for (int64_t k = 0; k < outputs.numel(); ++k) {
      if (!std::isfinite(outputs[k])) {
        const int64_t per_sample = outputs.numel() / n;
        throw Error(
            "evaluate: test image " + std::to_string(indices[static_cast<size_t>(k / per_sample)]) +
            ": the model's output " + std::to_string(k % per_sample) + " is " +
            (std::isnan(outputs[k]) ? "nan" : "infinite") + " (its weights overflow float)");
      }
    }
    loss_sum += objective.loss(outputs, labels, nullptr) * static_cast<double>(n);
    for (int64_t i = 0; i < n; ++i) {
      const int predicted = objective.predict(outputs, i);
      const int truth = labels[static_cast<size_t>(i)];
      correct += predicted == truth;
      ++result.confusion[static_cast<size_t>(truth)][static_cast<size_t>(predicted)];
    }
    if (keep_outputs) result.outputs.insert(result.outputs.end(), outputs.begin(), outputs.end());
  }
  if (ranks) {
    // Counts below 2^53 add up exactly as doubles.
    std::vector<double> sums{loss_sum, static_cast<double>(correct)};
    for (const auto& row : result.confusion)
      for (const int64_t v : row) sums.push_back(static_cast<double>(v));
    ranks->sum(sums.data(), static_cast<int64_t>(sums.size()));
    loss_sum = sums[0];
    correct = std::llround(sums[1]);
    size_t k = 2;
    for (auto& row : result.confusion)
      for (int64_t& v : row) v = std::llround(sums[k++]);
  }
  result.loss = loss_sum / double(data.size());
  result.accuracy = double(correct) / double(data.size());
  for (int64_t c = 0; c < classes; ++c) {
    int64_t total = 0;
    for (int64_t v : result.confusion[static_cast<size_t>(c)]) total += v;
    result.per_class_accuracy.push_back(
        total == 0 ? std::numeric_limits<double>::quiet_NaN()
                   : double(result.confusion[static_cast<size_t>(c)][static_cast<size_t>(c)]) /
                         double(total));
  }
  return result;
}

}  // namespace

uint64_t model_hash(Sequential<float>& model) {
  uint64_t hash = 0xcbf29ce484222325ull;  // FNV-1a over the bytes
  for (const std::span<float> values : {model.parameters(), model.buffers()}) {
    const auto* bytes = reinterpret_cast<const unsigned char*>(values.data());
    for (size_t i = 0; i < values.size_bytes(); ++i) hash = (hash ^ bytes[i]) * 0x100000001b3ull;
  }
  return hash;
}

}  // namespace cnn

// `cnn train`: its flags and configuration (kept in the checkpoint), the run's lock on its
// files, the signal handlers that stop it with a checkpoint, and the training run itself.

#include <fcntl.h>
#include <sched.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <new>
#include <nlohmann/json.hpp>
#include <thread>

#include "args.hpp"
#include "cli_common.hpp"
#include "cnn/checkpoint.hpp"
#include "cnn/cnn.hpp"
#include "cnn/distributed.hpp"
#include "cnn/fileio.hpp"
#include "cnn/model_file.hpp"
#include "cnn/onnx.hpp"
#include "cnn/openmp_spin.hpp"
#include "cnn/report.hpp"
#include "cnn/spec.hpp"
#include "cnn/train.hpp"
#include "print_json.hpp"

namespace cnn::cli {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;

const char* const kTrainHelp =
    "usage: cnn train [--model PRESET|SPEC.json] [--data fashion-mnist|sample|DIR] [--epochs N]\n"
    "                 [--batch N] [--optimizer sgd|adam|adamw] [--lr X] [--momentum X]\n"
    "                 [--weight-decay X] [--schedule cosine|constant|step|onecycle]\n"
    "                 [--warmup-epochs N] [--step-epochs N] [--label-smoothing X]\n"
    "                 [--augment none|crop-flip] [--crop-padding N] [--seed N] [--threads N]\n"
    "                 [--out FILE] [--checkpoint-every SECONDS] [--sync-batchnorm]\n"
    "       cnn train --resume OUT.ckpt [--epochs N]\n"
    "       mpirun -np RANKS cnn train ...   (data-parallel: docs/distributed.md)\n"
    "\n"
    "Trains and evaluates on the test set after every epoch. OUT.ckpt (next to --out) holds\n"
    "the whole run (weights, optimizer, schedule position, data order, random streams,\n"
    "metrics, configuration), rewritten atomically after every epoch. SIGINT, SIGTERM, SIGHUP\n"
    "or SIGUSR1 ends training at the next step with a checkpoint (exit 128 + the signal; a\n"
    "second signal exits at once; during set-up, before the first step, the first ends the run\n"
    "with nothing written), and so does SIGPIPE, an output whose reader went away (its later\n"
    "writes are lost; under nohup, SIGHUP stays ignored); a diverging loss stops with the last\n"
    "checkpoint kept. While a run writes OUT's files it holds OUT.lock (removed at its end):\n"
    "another run with the same --out, or resuming it, is refused until then.\n"
    "  --resume        continue that run: the model file and metrics come out as if it had\n"
    "                  never stopped (same threads), next to the checkpoint given (a copy\n"
    "                  X.ckpt writes X.safetensors). Flags that would change it are refused,\n"
    "                  and so is data other than the run's (the checkpoint keeps its hash);\n"
    "                  --epochs may extend it (cosine and onecycle then span the new length;\n"
    "                  step keeps its --step-epochs) or shorten it to what its warm-up,\n"
    "                  step and onecycle (4 steps or more) allow\n"
    "  --checkpoint-every  also write the checkpoint at a step boundary at most every SECONDS\n"
    "                  (0: after every step)\n"
    "Under mpirun, the ranks train one model: --batch is the global batch, split over them,\n"
    "gradients are summed every step; rank 0 prints and writes the files; --resume needs the\n"
    "same rank count. SIGUSR1 (mpirun forwards it) stops every rank at the next step with a\n"
    "checkpoint (during set-up: before the first step, nothing written); SIGINT/SIGTERM/SIGHUP\n"
    "(mpirun's way to end a job) end a rank at once with one line (none during set-up).\n"
    "  --sync-batchnorm  BatchNorm statistics over the global batch (all ranks), not each\n"
    "                  rank's share (the default, as PyTorch DDP); refused in one process\n"
    "                  and for a model without BatchNorm\n"
    "  --model         preset lenet5 (default), convnet, resnet or seed, or a JSON spec file\n"
    "                  --model resnet brings its own recipe, every value a flag overrides:\n"
    "                  10 epochs, batch 128, sgd lr 0.1, weight decay 5e-4, onecycle,\n"
    "                  label smoothing 0.1, augment crop-flip with padding 1; the other\n"
    "                  presets the defaults below\n"
    "  --data          fashion-mnist (default: Debian's dataset-fashion-mnist, or the bundled\n"
    "                  sample when it is missing), sample, or a directory with the four MNIST\n"
    "                  IDX files (raw or .gz) or CIFAR-10 binary batches\n"
    "  --epochs        default 20          --batch         default 64\n"
    "  --optimizer     sgd (default: momentum, weight decay added to the gradient), adam\n"
    "                  (weight decay added to the gradient) or adamw (decoupled weight decay,\n"
    "                  lr x weight decay at most 2);\n"
    "                  Adam's betas 0.9 and 0.999, eps 1e-8, as PyTorch\n"
    "  --lr            default 0.05 (sgd) or 0.001 (adam, adamw)\n"
    "  --momentum      default 0.9 (sgd only)\n"
    "  --weight-decay  default 0           --seed          default 1\n"
    "  --schedule      the learning rate per batch: cosine (default: down to lr/10^4 along a\n"
    "                  half cosine), constant, step (x0.1 every --step-epochs epochs, default\n"
    "                  a third of the run) or onecycle (from lr/25 up to lr over the first 30%\n"
    "                  of the run, then down to lr/250000, along half cosines; the momentum\n"
    "                  stays at --momentum: OneCycleLR with cycle_momentum=False)\n"
    "  --warmup-epochs linear warm-up from lr/100 to lr over N epochs before the schedule\n"
    "                  (default 0); with onecycle, the length of its rise\n"
    "  --label-smoothing  cross-entropy against (1 - X) onehot + X / classes in training\n"
    "                  (default 0; as PyTorch's label_smoothing); the test loss stays plain\n"
    "  --augment       none (default) or crop-flip: each training image shifted by up to\n"
    "                  --crop-padding pixels (default 2, resnet 1; zeros come in) and mirrored\n"
    "                  left-right half the time, drawn from the seed (RandomCrop +\n"
    "                  RandomHorizontalFlip)\n"
    "  --threads       default: the number of cores, shared by the host's ranks under mpirun\n"
    "                  (the same seed, thread and rank counts give a bit-identical model file;\n"
    "                  1 and 2 threads give the same one)\n"
    "  --out           default MODEL.safetensors (MODEL = the preset or spec name); the\n"
    "                  metrics go to OUT with .csv and the curves to OUT with .svg; each of\n"
    "                  OUT and its .csv, .svg, .ckpt and .lock must be a regular file or\n"
    "                  absent (a symbolic link is written through)\n";

// The upper limits of cnn train's flags, which a checkpoint's stored configuration is held to
// too (config_from_json): one set of numbers for both.
constexpr int64_t kMaxEpochs = 100000, kMaxBatch = 65536, kMaxCropPadding = 64;
constexpr int64_t kMaxFlagThreads = 256, kMaxSeed = int64_t{1} << 53;
constexpr double kMaxLr = 100, kMaxMomentum = 0.999999, kMaxWeightDecay = 1;
constexpr double kMaxLabelSmoothing = 0.999, kMaxCheckpointEvery = 1e9;

/// A training run's configuration: the flags of `cnn train` with their defaults filled in. A
/// checkpoint keeps it, so that --resume continues the very same run.
struct TrainConfig {
  std::string model, data, out;
  TrainOptions options;
  uint64_t seed = 1;
  int threads = 1;              // per rank
  bool sync_batchnorm = false;  // BatchNorm statistics over all ranks' samples
  // The working directory the run started in, against which a relative --out and --data are
  // resolved when it is resumed elsewhere ("" when it is not UTF-8 text, or for checkpoints
  // written before 2026-12-06).
  std::string directory;
  double checkpoint_every = -1;  // --checkpoint-every (-1: after every epoch only)
  // The data the run trains and tests on (data_hash; for checkpoints written before
  // 2026-12-07, -1 and ""): a resumed run refuses other data.
  int64_t data_train = -1, data_test = -1;
  std::string data_hash;
};

Json config_json(const TrainConfig& c) {
  const TrainOptions& o = c.options;
  return {{"model", c.model},
          {"data", c.data},
          {"out", c.out},
          {"epochs", o.epochs},
          {"batch", o.batch},
          {"optimizer", optimizer_name(o.optimizer)},
          {"lr", o.lr},
          {"momentum", o.momentum},
          {"weight_decay", o.weight_decay},
          {"schedule", schedule_name(o.schedule)},
          {"warmup_epochs", o.warmup_epochs},
          {"step_epochs", o.step_epochs},
          {"label_smoothing", o.label_smoothing},
          {"augment", augment_name(o.augment)},
          {"crop_padding", o.crop_padding},
          {"seed", c.seed},
          {"threads", c.threads},
          {"sync_batchnorm", c.sync_batchnorm},
          {"directory", c.directory},
          {"checkpoint_every", c.checkpoint_every},
          {"data_train", c.data_train},
          {"data_test", c.data_test},
          {"data_hash", c.data_hash}};
}

TrainConfig config_from_json(const std::string& text, const std::string& path) {
  const auto unreadable = [&](const std::string& why) {
    return Error(path + ": the checkpoint's training configuration is unreadable: " + why);
  };
  Json j;
  try {
    j = Json::parse(text);
  } catch (const Json::exception& e) {
    // Without nlohmann's "[json.exception.parse_error.101] " id, as the library's readers.
    std::string what = e.what();
    if (const size_t end = what.find("] "); what.starts_with("[json.") && end != what.npos)
      what.erase(0, end + 2);
    throw unreadable("not JSON: " + what);
  }
  if (!j.is_object()) throw unreadable("expected a JSON object, got " + std::string(j.type_name()));
  // Each value read as the type it was written as, naming its key (found 2026-12-07, a helper's
  // probe: nlohmann's get<int> converts, so an edited "epochs" of 2^32 + 3 resumed as 3
  // epochs, 3.9 as 3 and "threads" 2^32 + 1 as 1, and a wrong type said only "type must be
  // number, but is string"). Values are shown only when numbers: the text is not depth-checked.
  const auto at = [&](const char* key) -> const Json& {
    if (!j.contains(key)) throw Error(std::string("missing '") + key + "'");
    return j.at(key);
  };
  const auto refuse = [](const char* key, const Json& v, const std::string& expected) {
    throw Error(std::string("'") + key + "' is " + (v.is_number() ? v.dump() : v.type_name()) +
                ", expected " + expected);
  };
  const auto text_of = [&](const char* key) {
    const Json& v = at(key);
    if (!v.is_string()) refuse(key, v, "a string");
    return v.get<std::string>();
  };
  const auto whole = [&](const char* key, int64_t lo, int64_t hi) {
    const Json& v = at(key);
    if (!v.is_number_integer() || (v.is_number_unsigned() && v.get<uint64_t>() > uint64_t(hi)) ||
        v.get<int64_t>() < lo || v.get<int64_t>() > hi)
      refuse(key, v, "a whole number from " + std::to_string(lo) + " to " + std::to_string(hi));
    return v.get<int64_t>();
  };
  const auto number = [&](const char* key) {
    const Json& v = at(key);
    if (!v.is_number()) refuse(key, v, "a number");
    return v.get<double>();
  };
  const auto flag = [&](const char* key) {
    const Json& v = at(key);
    if (!v.is_boolean()) refuse(key, v, "true or false");
    return v.get<bool>();
  };
  try {
    TrainConfig c;
    c.model = text_of("model");
    c.data = text_of("data");
    c.out = text_of("out");
    TrainOptions& o = c.options;
    o.epochs = static_cast<int>(whole("epochs", 1, kMaxEpochs));
    o.batch = whole("batch", 1, kMaxBatch);
    o.optimizer = parse_optimizer(text_of("optimizer"));
    o.lr = number("lr");
    o.momentum = number("momentum");
    o.weight_decay = number("weight_decay");
    o.schedule = parse_schedule(text_of("schedule"));
    o.warmup_epochs = static_cast<int>(whole("warmup_epochs", 0, kMaxEpochs));
    o.step_epochs = static_cast<int>(whole("step_epochs", 1, kMaxEpochs));
    o.label_smoothing = number("label_smoothing");
    o.augment = parse_augment(text_of("augment"));
    o.crop_padding = whole("crop_padding", 0, kMaxCropPadding);
    c.seed = static_cast<uint64_t>(whole("seed", 0, kMaxSeed));
    c.threads = static_cast<int>(whole("threads", 1, kMaxFlagThreads));
    // Written since 2026-12-06 or 2026-12-07; older checkpoints have the defaults.
    if (j.contains("sync_batchnorm")) c.sync_batchnorm = flag("sync_batchnorm");
    if (j.contains("directory")) c.directory = text_of("directory");
    if (j.contains("checkpoint_every")) c.checkpoint_every = number("checkpoint_every");
    if (j.contains("data_train")) c.data_train = whole("data_train", -1, kMaxSeed);
    if (j.contains("data_test")) c.data_test = whole("data_test", -1, kMaxSeed);
    if (j.contains("data_hash")) c.data_hash = text_of("data_hash");
    // The ranges the flags allow that whole() has not held (found 2026-12-06: an edited
    // checkpoint's batch 100000 and crop padding 1000 were taken).
    if (c.out.empty() || !(o.lr > 0 && o.lr <= kMaxLr) ||
        !(o.momentum >= 0 && o.momentum <= kMaxMomentum) ||
        !(o.weight_decay >= 0 && o.weight_decay <= kMaxWeightDecay) ||
        !(o.label_smoothing >= 0 && o.label_smoothing <= kMaxLabelSmoothing) ||
        o.warmup_epochs > o.epochs - 1 ||
        (o.schedule == LrSchedule::kStep && o.step_epochs > o.epochs) ||
        !(c.checkpoint_every == -1 ||
          (c.checkpoint_every >= 0 && c.checkpoint_every <= kMaxCheckpointEvery)))
      throw Error("values out of the ranges of their flags");
    return c;
  } catch (const Error& e) {
    throw unreadable(e.what());
  }
}

/// The configuration the flags give for `model_name` (whose preset may bring its own recipe).
/// Resuming, `resumed` is the checkpoint's configuration and supplies every default, so that
/// the flags are checked against the run's own optimizer, schedule and epochs (a resumed adam
/// run took --momentum, and one of 25 epochs refused its own --step-epochs 22 against the
/// default 20; found 2026-12-06).
TrainConfig config_from_args(const Args& args, const std::string& model_name, const ModelSpec& spec,
                             int default_threads, const TrainConfig* resumed = nullptr) {
  // The resnet preset's recipe (its defaults; every flag overrides): the run recorded in
  // docs/design-notes.md, "The resnet preset".
  const bool resnet = model_name == "resnet";
  const TrainOptions* was = resumed ? &resumed->options : nullptr;
  TrainConfig c;
  c.model = model_name;
  c.data = args.text("--data", resumed ? resumed->data : "fashion-mnist");
  TrainOptions& options = c.options;
  options.epochs = static_cast<int>(args.integer("--epochs",
                                                 was      ? was->epochs
                                                 : resnet ? 10
                                                          : kDefaultEpochs,
                                                 1, kMaxEpochs));
  options.batch = args.integer("--batch", was ? was->batch : resnet ? 128 : 64, 1, kMaxBatch);
  try {
    options.optimizer =
        parse_optimizer(args.text("--optimizer", was ? optimizer_name(was->optimizer) : "sgd"));
    options.schedule = parse_schedule(args.text("--schedule", was ? schedule_name(was->schedule)
                                                              : resnet ? "onecycle"
                                                                       : "cosine"));
  } catch (const Error& e) {
    throw Error(std::string("train: ") + e.what());
  }
  const bool sgd = options.optimizer == OptimizerKind::kSgd;
  options.lr = args.number("--lr",
                           was   ? was->lr
                           : sgd ? (resnet ? 0.1 : 0.05)
                                 : 1e-3,
                           0, kMaxLr, true);
  if (!sgd && args.has("--momentum")) {
    args.fail("--momentum",
              std::string("applies to --optimizer sgd, not ") + optimizer_name(options.optimizer));
  }
  options.momentum = args.number("--momentum", was ? was->momentum : 0.9, 0, kMaxMomentum, false);
  options.weight_decay = args.number("--weight-decay",
                                     was      ? was->weight_decay
                                     : resnet ? 5e-4
                                              : 0,
                                     0, kMaxWeightDecay, false);
  if (options.optimizer == OptimizerKind::kAdamW &&
      !adam_overflow<float>(AdamOptions{.lr = options.lr,
                                        .weight_decay = options.weight_decay,
                                        .decoupled_weight_decay = true})
           .empty()) {
    // The optimizer's own check (found 2026-12-06: --lr 3 --weight-decay 1 "diverged" at step
    // 22), before the data is read and in the flags' words.
    char given[96];
    std::snprintf(given, sizeof given, "is %g with --lr %g", options.weight_decay, options.lr);
    args.fail("--weight-decay",
              std::string(given) +
                  ": adamw multiplies the weights by 1 - lr x weight decay every step, which "
                  "below -1 grows them until they overflow (expected lr x weight decay <= 2)");
  }
  options.label_smoothing = args.number("--label-smoothing",
                                        was      ? was->label_smoothing
                                        : resnet ? 0.1
                                                 : 0,
                                        0, kMaxLabelSmoothing, false);
  try {
    options.augment = parse_augment(args.text("--augment", was      ? augment_name(was->augment)
                                                           : resnet ? "crop-flip"
                                                                    : "none"));
  } catch (const Error& e) {
    throw Error(std::string("train: ") + e.what());
  }
  // Flags that the chosen schedule or augmentation does not read are refused rather than
  // ignored (found 2026-12-06: --step-epochs with cosine trained a bit-identical model).
  if (options.augment != Augment::kCropFlip && args.has("--crop-padding")) {
    args.fail("--crop-padding",
              std::string("applies to --augment crop-flip, not ") + augment_name(options.augment));
  }
  options.crop_padding = args.integer("--crop-padding",
                                      was      ? was->crop_padding
                                      : resnet ? 1
                                               : 2,
                                      0, kMaxCropPadding);
  if (options.label_smoothing > 0 && spec.loss != LossKind::kCrossEntropy) {
    args.fail("--label-smoothing",
              "applies to cross_entropy models, not to " + spec.name + "'s log_loss");
  }
  options.warmup_epochs = static_cast<int>(
      args.integer("--warmup-epochs", was ? was->warmup_epochs : 0, 0, options.epochs - 1));
  const bool step = options.schedule == LrSchedule::kStep;
  if (!step && args.has("--step-epochs")) {
    args.fail("--step-epochs",
              std::string("applies to --schedule step, not ") + schedule_name(options.schedule));
  }
  options.step_epochs = static_cast<int>(
      args.integer("--step-epochs", was ? was->step_epochs : std::max(1, options.epochs / 3), 1,
                   options.epochs));
  if (was && args.has("--epochs")) {
    // A shortened run must still hold the warm-up and the step its run was given.
    if (options.warmup_epochs > options.epochs - 1) {
      args.fail("--epochs", "is " + std::to_string(options.epochs) + ", the run warms up over " +
                                std::to_string(options.warmup_epochs) +
                                " epochs (expected more than that)");
    }
    if (step && options.step_epochs > options.epochs) {
      args.fail("--epochs", "is " + std::to_string(options.epochs) + ", the run steps every " +
                                std::to_string(options.step_epochs) +
                                " epochs (expected at least that many)");
    }
  }
  c.seed = static_cast<uint64_t>(args.integer("--seed", resumed ? resumed->seed : 1, 0, kMaxSeed));
  c.threads = static_cast<int>(
      args.integer("--threads", resumed ? resumed->threads : default_threads, 1, kMaxFlagThreads));
  c.sync_batchnorm = args.has("--sync-batchnorm") || (resumed && resumed->sync_batchnorm);
  // The default file is named after the spec, whose "name" is a label, not a path (found
  // 2026-12-06: "../escaped" wrote outside the directory, "" wrote hidden files).
  const std::string& name = spec.name;
  if (!resumed && !args.has("--out") &&
      (name.empty() || name == "." || name == ".." || name.find('/') != std::string::npos)) {
    args.fail("--out", "is needed: the spec's name \"" + name +
                           "\" is not a file name to write NAME.safetensors as");
  }
  c.out = args.text("--out", resumed ? resumed->out : spec.name + ".safetensors");
  // A name the system refuses is reported when the run's files are made (prepare_training).
  if (c.out.empty()) args.fail("--out", "expects a file path, got ''");
  const std::string ext = fs::path(c.out).extension().string();
  if (ext == ".csv" || ext == ".svg" || ext == ".ckpt" || ext == ".lock") {
    // OUT.lock is removed when the run ends: a model written there would be removed with it.
    args.fail(
        "--out",
        "names the model file; the .csv, .svg, .ckpt and .lock go next to it, got '" + c.out + "'");
  }
  // Found 2026-12-06: `--out m.onnx` wrote a safetensors file that `cnn info` then refused as
  // "not an ONNX model", and `--out run/` trained the whole run before failing to write the
  // directory (its checkpoint, run/.ckpt, could not be resumed either).
  if (ext == ".onnx" || ext == ".json") {
    args.fail("--out", "is " + c.out + ": train writes a safetensors model file (" +
                           (ext == ".onnx" ? "cnn convert MODEL.safetensors " + c.out +
                                                 " makes the ONNX file from it"
                                           : std::string("a spec is .json")) +
                           "); expected a name such as model.safetensors");
  }
  const std::string file_name = fs::path(c.out).filename().string();
  if (file_name.empty() || file_name == "." || file_name == "..") {
    args.fail("--out", "is " + c.out + ": expected a file name, got a directory (" +
                           (fs::path(c.out) / "model.safetensors").lexically_normal().string() +
                           " names a file in it)");
  }
  return c;
}

/// A 64-bit hash (hex) of a run's data as it trains on it (after the spec's class selection):
/// both splits' pixels and labels. Not cryptographic: it tells a resumed run that its data
/// changed (found 2026-12-07: a directory whose labels were replaced resumed silently on them,
/// and one with another image count failed with "BatchIterator: a saved order of 50 samples at
/// position 20 does not fit 2000 samples").
std::string data_hash(const DataSplit& data) {
  uint64_t hash = 0x84222325cbf29ce4ull;
  const auto mix = [&hash](const std::vector<uint8_t>& bytes) {
    size_t i = 0;
    for (; i + 8 <= bytes.size(); i += 8) {
      uint64_t word;
      std::memcpy(&word, bytes.data() + i, 8);
      hash = (hash ^ word) * 0x9e3779b97f4a7c15ull;
      hash ^= hash >> 29;
    }
    for (; i < bytes.size(); ++i) hash = (hash ^ bytes[i]) * 0x100000001b3ull;
    hash = (hash ^ bytes.size()) * 0x9e3779b97f4a7c15ull;
  };
  for (const Dataset* d : {&data.train, &data.test}) {
    mix(d->images.pixels);
    mix(d->labels);
  }
  char text[20];
  std::snprintf(text, sizeof text, "%016llx", static_cast<unsigned long long>(hash));
  return text;
}

/// A resumed run's relative --out and --data, resolved against the directory its run started
/// in when this one runs elsewhere. Found 2026-12-06: `cd other && cnn train --resume
/// ../run/m.ckpt` took `run/m.safetensors` as other/run/..., so it wrote its files there, took
/// another lock than the running run's (both then rewrote run/m.ckpt) and removed that run's
/// temporary checkpoint file mid-write.
void resolve_from_start_directory(TrainConfig& c) {
  std::error_code error;
  const fs::path here = fs::current_path(error);
  if (c.directory.empty() || error || here == fs::path(c.directory)) return;
  const auto resolve = [&](std::string& path) {
    if (!path.empty() && fs::path(path).is_relative())
      path = (fs::path(c.directory) / path).lexically_normal().string();
  };
  resolve(c.out);
  if (c.data != "sample" && c.data != "fashion-mnist") resolve(c.data);
}

/// A resumed run writes its model, CSV and SVG next to the checkpoint it continues (OUT.ckpt
/// continues OUT). Found 2026-12-06: a checkpoint copied to exp/ (or moved there with its run
/// directory renamed) wrote the run's stored --out, run/m.safetensors, over the model a later
/// run had left there, and a renamed run/m-epoch5.ckpt wrote over run/m.safetensors too. A
/// run's own checkpoint keeps its --out as stored; a copy writes beside itself and says so;
/// an --out elsewhere is refused (the flag check compared it with the stored one only).
void write_next_to_checkpoint(const Args& args, const std::string& given_out,
                              const std::string& checkpoint, TrainConfig& config) {
  // Beside the file itself: a link latest.ckpt -> run/m.ckpt continues run/m.safetensors (its
  // checkpoint writes go through the link, and its lock must be that run's).
  const std::string beside =
      sibling(write_destination(checkpoint), fs::path(config.out).extension().string());
  if (args.has("--out") && !same_file(given_out, beside)) {
    args.fail("--out", "is " + given_out +
                           ", but a resumed run writes next to the checkpoint it "
                           "continues: " +
                           beside + " (the model file of " + checkpoint + ")");
  }
  if (same_file(beside, config.out)) return;
  std::printf("%s was the checkpoint of %s: this run writes %s and its .csv and .svg\n",
              terminal_text(checkpoint).c_str(), terminal_text(config.out).c_str(),
              terminal_text(beside).c_str());
  config.out = beside;
}

/// The files a run writes atomically: the model at `out`, its metrics and curves beside it,
/// and the checkpoint (OUT.ckpt, or the one a resumed run was given).
std::vector<std::string> run_files(const std::string& out, const std::string& checkpoint) {
  return {out, sibling(out, ".csv"), sibling(out, ".svg"), checkpoint};
}

/// Refuses, before any work, a run that could not write one of its files (run_files and
/// OUT.lock) because something other than a regular file is there. Found 2026-12-06:
/// `--out /dev/null` trained and then, as root, replaced the device with the model and wrote
/// /dev/null.csv, .svg, .ckpt and .lock beside it.
void require_room_for_run_files(const std::string& out, const std::string& checkpoint) {
  std::vector<std::string> paths = run_files(out, checkpoint);
  paths.push_back(sibling(out, ".lock"));
  for (const std::string& path : paths) {
    if (const char* kind = special_file_kind(path)) {
      throw Error("--out " + out + ": the run writes " + path + ", which is " + kind +
                  " (expected a regular file or none)");
    }
    // A link is written through; into a directory that is not there, the model file failed
    // once the whole run had trained (found 2026-12-07: `--out dangling.safetensors`), and a
    // checkpoint at its first write.
    std::error_code error;
    if (!fs::is_symlink(path, error)) continue;
    const fs::path target = write_destination(path);
    const fs::path directory = target.parent_path();
    if (!directory.empty() && !fs::is_directory(directory, error)) {
      throw Error("--out " + out + ": the run writes " + path + ", a link to " + target.string() +
                  ", whose directory " + directory.string() + " does not exist");
    }
  }
}

/// The files a run reads: its spec file (when --model names one) and the files of its data
/// directory, for require_distinct_run_files.
std::vector<std::string> run_inputs(const TrainConfig& c) {
  std::vector<std::string> inputs;
  std::error_code error;
  if (fs::is_regular_file(c.model, error)) inputs.push_back(c.model);
  const std::string data = c.data == "sample"          ? sample_dir()
                           : c.data == "fashion-mnist" ? std::string(kFashionMnistDir)
                                                       : c.data;
  if (fs::is_regular_file(data, error)) inputs.push_back(data);
  if (fs::is_directory(data, error)) {
    size_t seen = 0;  // a data directory holds a handful of files; a huge tree is not walked
    for (fs::recursive_directory_iterator it(data, error), end; !error && it != end && seen < 4096;
         it.increment(error), ++seen) {
      if (it->is_regular_file(error)) inputs.push_back(it->path().string());
    }
  }
  return inputs;
}

/// Refuses, before any work, a run whose files (run_files and OUT.lock) name one another or one
/// of its inputs through links or hard links. Found 2026-12-06: with a link m.csv ->
/// m.safetensors the run wrote its metrics over its model (exit 0), with m.ckpt -> m.safetensors
/// its model over its checkpoint, and `--out spec.json` or an --out in the data directory
/// wrote the model over the spec or a training file. (`cnn convert` refused its own case.)
void require_distinct_run_files(const TrainConfig& c, const std::string& checkpoint) {
  std::vector<std::string> outputs = run_files(c.out, checkpoint);
  outputs.push_back(sibling(c.out, ".lock"));
  for (size_t i = 0; i < outputs.size(); ++i) {
    for (size_t j = i + 1; j < outputs.size(); ++j) {
      if (same_file(outputs[i], outputs[j])) {
        throw Error("--out " + c.out + ": the run writes " + outputs[i] + " and " + outputs[j] +
                    ", which are one file (through a link): expected " +
                    std::to_string(outputs.size()) + " different files");
      }
    }
  }
  for (const std::string& input : run_inputs(c)) {
    for (const std::string& output : outputs) {
      if (same_file(input, output)) {
        throw Error("--out " + c.out + ": the run would write over " + input + ", a file it reads" +
                    (output == input ? "" : " (as " + output + ", through a link)"));
      }
    }
  }
}

/// Refuses, before any work, a --model, --data or --out (or a spec name, which a spec without
/// "name" takes from its file) that is not UTF-8: the checkpoint keeps them as JSON text, which
/// cannot hold other bytes, so the run failed at its first checkpoint with nlohmann's
/// "invalid UTF-8 byte" (found 2026-12-06 with a spec file named "\xff.json").
void require_utf8_names(const TrainConfig& c, const ModelSpec& spec) {
  const std::pair<const char*, const std::string*> names[] = {{"--model", &c.model},
                                                              {"--data", &c.data},
                                                              {"--out", &c.out},
                                                              {"the spec's name", &spec.name}};
  for (const auto& [what, value] : names) {
    if (!is_utf8(*value)) {
      throw Error(std::string(what) + " " + *value +
                  ": expected UTF-8 text (the checkpoint stores it as JSON, which holds no other "
                  "bytes)");
    }
  }
}

/// The signal that asked training to stop (SIGINT, SIGTERM, SIGHUP, SIGUSR1, or SIGPIPE in one
/// process), 0 while none has.
volatile std::sig_atomic_t g_stop_signal = 0;
/// 1 from the start of `cnn train` until its training handlers are installed (nothing trained).
volatile std::sig_atomic_t g_setting_up = 1;
/// 1 once the run has a checkpoint: the one it resumed from, or one it wrote. Until then the
/// handlers that end the process at once say that nothing was kept (found 2026-12-07: under
/// mpirun a rank's line claimed "the last checkpoint stays intact" before any was written).
volatile std::sig_atomic_t g_checkpoint_kept = 0;
/// 1 in one process and on rank 0: the process that speaks for the run in a second signal's
/// line, and that holds OUT.lock.
volatile std::sig_atomic_t g_rank_zero = 1;
/// A multi-rank run's lines for SIGINT and SIGTERM, written by the handler (formatted before):
/// with a checkpoint kept, and before the run's first one.
char g_rank_end_line[512] = "";
size_t g_rank_end_length = 0;
char g_rank_end_line_no_checkpoint[256] = "";
size_t g_rank_end_no_checkpoint_length = 0;
/// The run's checkpoint and the command that resumes it, for a second signal's line.
char g_checkpoint_path[4096] = "";
char g_resume_command[4200] = "";

/// The run's lock (RunLock) while this process holds it, for the handlers that end the process
/// at once: its path and the descriptor that holds the flock (-1 when none is held).
char g_lock_path[4096] = "";
volatile std::sig_atomic_t g_lock_fd = -1;

/// Writes the C strings `parts` to stderr: what a signal handler may do (write is
/// async-signal-safe, printf is not).
void write_in_handler(std::initializer_list<const char*> parts) {
  for (const char* part : parts) {
    [[maybe_unused]] const ssize_t written = ::write(2, part, std::strlen(part));
  }
}

/// Removes what a process ended at once by a signal leaves of its run: the temporary file of a
/// write under way and OUT.lock (found 2026-12-06: both stayed until the next run removed them).
/// Only what a handler may call: unlink, stat and fstat.
void remove_run_leftovers_in_handler() {
  remove_temporaries_in_progress();
  const int fd = g_lock_fd;
  if (fd < 0) return;
  // Only while the path names the file this process holds locked: no other run can hold it,
  // so this is never another run's lock.
  struct stat held {};
  struct stat named {};
  if (::fstat(fd, &held) == 0 && ::stat(g_lock_path, &named) == 0 && held.st_dev == named.st_dev &&
      held.st_ino == named.st_ino) {
    ::unlink(g_lock_path);
  }
}

/// The name of a signal that stops training, as a literal (safe in a signal handler).
const char* stop_signal_name(int signal) {
  switch (signal) {
    case SIGINT:
      return "SIGINT";
    case SIGTERM:
      return "SIGTERM";
    case SIGHUP:
      return "SIGHUP";
    case SIGPIPE:
      return "SIGPIPE (the reader of its output went away)";
    default:
      return "SIGUSR1";
  }
}

extern "C" void on_stop_signal(int signal) {
  // The first signal ends training at the next step boundary, with a checkpoint (under mpirun,
  // one during set-up ends the run before its first step); a second one ends the process at
  // once (the last checkpoint, written atomically, stays as it was). It says so: it ended the
  // run with no word before (found 2026-12-06). Under mpirun, rank 0 alone says it.
  if (g_stop_signal != 0) {
    const char* name = stop_signal_name(signal);
    if (g_rank_zero == 0) {
      // another rank: rank 0 says it
    } else if (g_setting_up != 0) {
      write_in_handler({"cnn: stopped at once by a second ", name,
                        " while setting up the run, before its first step: nothing was trained\n"});
    } else if (g_checkpoint_kept != 0) {
      write_in_handler({"cnn: stopped at once by a second ", name,
                        "; the last checkpoint stays intact: ", g_checkpoint_path,
                        " (resume with: ", g_resume_command, ")\n"});
    } else {
      write_in_handler({"cnn: stopped at once by a second ", name,
                        ", before the run's first checkpoint: nothing was kept\n"});
    }
    remove_run_leftovers_in_handler();
    ::_exit(128 + signal);
  }
  g_stop_signal = signal;
}

extern "C" void on_broken_pipe(int) {
  // One process, in training: a write to a pipe whose reader went away (`cnn train | head`, a
  // log reader that died). Training stops at the next step with a checkpoint, as for SIGTERM;
  // the default action ended the run at once, losing the epoch and leaving OUT.lock (found
  // 2026-12-08, a probe). Every later write to that pipe raises it again and fails with EPIPE:
  // never a "second signal".
  if (g_stop_signal == 0) g_stop_signal = SIGPIPE;
}

extern "C" void on_setup_signal(int signal) {
  // Before the first step there is nothing to keep: one line, then out (found 2026-12-06: the
  // default action ended such a run with no word). write() is what a handler may call.
  write_in_handler({"cnn: stopped by ", stop_signal_name(signal),
                    " while setting up the run, before its first step: nothing was trained\n"});
  remove_run_leftovers_in_handler();  // the lock is taken last in setting up
  ::_exit(128 + signal);
}

/// Under mpirun, in the handlers that end a rank at once: a rank other than 0 waits 250 ms
/// before it exits. Open MPI 4.1.4 ends a job by SIGCONT, a second's sleep, SIGTERM, another
/// second's sleep, SIGKILL; but the first rank to exit interrupts that last sleep (SIGCHLD),
/// and the others get SIGKILL within milliseconds (strace of mpirun, 2026-12-07): a rank 0
/// that had not yet run its handler (a loaded machine) died with OUT.lock and without its line
/// in 16 of 60 SIGTERMs. Rank 0 holds the run's files and exits at once.
void let_rank_zero_go_first_in_handler() {
  if (g_rank_zero != 0) return;
  struct timespec wait = {0, 250'000'000};
  ::nanosleep(&wait, nullptr);
}

extern "C" void on_rank_end_signal(int signal) {
  // Under mpirun, SIGINT and SIGTERM come from mpirun ending the job (a rank died, or the job
  // was interrupted) and SIGKILL follows (let_rank_zero_go_first_in_handler): no time for a
  // step boundary. One line, then out; the last checkpoint, written atomically, stays as it
  // was, or there is none yet and the line says so.
  [[maybe_unused]] const ssize_t written =
      g_checkpoint_kept != 0
          ? ::write(2, g_rank_end_line, g_rank_end_length)
          : ::write(2, g_rank_end_line_no_checkpoint, g_rank_end_no_checkpoint_length);
  remove_run_leftovers_in_handler();
  let_rank_zero_go_first_in_handler();
  ::_exit(128 + signal);
}
extern "C" void on_quiet_end_signal(int signal) {
  // Under mpirun, SIGINT and SIGTERM while a rank sets up its run (nothing trained yet) or after
  // its training ended (its outcome is rank 0's line): mpirun ending the job, after one rank
  // refused the flags or exited with a status. No line of its own, so that the rank's one line
  // stays the job's; what the run leaves (OUT.lock) is removed. The default action ended the
  // rank there and left the lock (found 2026-12-07).
  remove_run_leftovers_in_handler();
  let_rank_zero_go_first_in_handler();
  ::_exit(128 + signal);
}

extern "C" void raise_sigint_twice(int) {
  // CNN_FAULT_SIGINT_TWICE_IN_CHECKPOINT's handler of SIGXFSZ: raise is async-signal-safe.
  std::raise(SIGINT);
  std::raise(SIGINT);
}

/// Installs `handler` for `signals`. SA_RESTART: a signal that only sets a flag must not fail
/// the call it interrupts (a write to a pipe, MPI's own calls) with EINTR. SIGHUP and SIGPIPE
/// stay ignored when the process started with them ignored: `nohup cnn train ...` asks that a
/// closed terminal not end the run, and a caller that ignores SIGPIPE takes EPIPE instead.
void install_handler(void (*handler)(int), std::initializer_list<int> signals) {
  struct sigaction action {};
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;
  action.sa_handler = handler;
  for (int signal : signals) {
    struct sigaction current {};
    if ((signal == SIGHUP || signal == SIGPIPE) && ::sigaction(signal, nullptr, &current) == 0 &&
        current.sa_handler == SIG_IGN)
      continue;
    ::sigaction(signal, &action, nullptr);
  }
}

}  // namespace

/// `cnn train`'s set-up handlers, installed first thing in main, before MPI starts or anything
/// else that takes time (found 2026-12-07: a SIGUSR1 that reached a rank before its training
/// handlers ended it by the default action, leaving OUT.lock). One process: SIGINT, SIGTERM,
/// SIGHUP, SIGUSR1 or SIGPIPE ends it with one line (on_setup_signal). Under mpirun: SIGUSR1 is
/// noted and the ranks agree on it when set-up ends (every rank stops there, before the first
/// step); SIGINT, SIGTERM and SIGHUP, mpirun ending the job, end the rank with no line
/// (on_quiet_end_signal); SIGPIPE keeps its default (a rank writes to mpirun, which ends the
/// job when it goes).
/// CNN_FAULT_SIGNAL_AT_START=S raises signal S right after, on every rank, for the tests.
void install_train_setup_handlers(bool under_mpirun) {
  if (under_mpirun) {
    // Rank 0 speaks for the job, also before MPI tells the rank (its launcher's variables do).
    const char* rank = nullptr;
    for (const char* name : {"OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK"})
      if (rank == nullptr) rank = std::getenv(name);
    g_rank_zero = rank != nullptr && std::string(rank) == "0" ? 1 : 0;
    install_handler(on_stop_signal, {SIGUSR1});
    install_handler(on_quiet_end_signal, {SIGINT, SIGTERM, SIGHUP});
  } else {
    install_handler(on_setup_signal, {SIGINT, SIGTERM, SIGHUP, SIGUSR1, SIGPIPE});
  }
  if (const char* fault = std::getenv("CNN_FAULT_SIGNAL_AT_START")) std::raise(std::atoi(fault));
}

namespace {

/// Runs `setup` on every rank; when it threw on any rank, the lowest such rank prints its
/// message and every rank exits with 1 (the others would otherwise wait for it forever).
template <typename F>
void agree_on_setup(Communicator* ranks, const F& setup) {
  if (ranks == nullptr) return setup();
  std::string error;
  try {
    setup();
  } catch (const Error& e) {
    error = e.what();
  }
  std::vector<double> failed(static_cast<size_t>(ranks->size()), 0.0);
  failed[static_cast<size_t>(ranks->rank())] = error.empty() ? 0 : 1;
  ranks->sum(failed.data(), ranks->size());
  const auto first = std::find(failed.begin(), failed.end(), 1.0);
  if (first == failed.end()) return;
  if (first - failed.begin() == ranks->rank()) {
    print_error(ranks->rank() == 0 ? error
                                   : "rank " + std::to_string(ranks->rank()) + ": " + error);
  }
  throw QuietExit{1};
}

/// CPUs this process may run on (mpirun binds each rank to cores by default).
int usable_cpus() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) != 0) return 0;
  return CPU_COUNT(&set);
}

/// One training run's hold on its files (OUT, OUT.csv, OUT.svg, OUT.ckpt): an exclusive
/// flock on OUT.lock, held until the run ends, then the file removed. Two runs with the same
/// --out in one directory (two experiments with a preset's default --out) would otherwise
/// write over each other's checkpoint, so that a resume would continue the other run, and the
/// second run's start would remove a temporary file the first was writing
/// (remove_stale_temporaries).
/// The kernel drops the lock when its process dies, even by SIGKILL; the file may then stay,
/// empty of meaning, and the next run takes it over.
class RunLock {
 public:
  /// Takes the lock, or throws cnn::Error naming the run that holds it (by its pid).
  explicit RunLock(const std::string& out) : path_(sibling(out, ".lock")) {
    // A file there that is not a lock (a run's lock holds its pid, or nothing yet) is someone
    // else's: the run would empty it and remove it at its end.
    if (std::ifstream existing{path_, std::ios::binary}) {
      char held[32] = {};
      existing.read(held, sizeof held);
      const std::string text(held, static_cast<size_t>(existing.gcount()));
      if (text.size() > 20 || text.find_first_not_of("0123456789") != std::string::npos) {
        throw Error("--out " + out + ": " + path_ +
                    " is there and is not a cnn lock file (a run's lock holds its pid); move it "
                    "or choose another --out");
      }
    }
    // A run that ends removes the file while others may have opened it: the lock is only
    // ours if the path still names the file we locked (else another run made a new one).
    for (;;) {
      fd_ = ::open(path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
      if (fd_ < 0) {
        throw Error("--out " + out + ": cannot create the run's lock file " + path_ + ": " +
                    std::strerror(errno));
      }
      if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
        const int error = errno;
        char pid[32] = {};
        const ssize_t got = ::pread(fd_, pid, sizeof pid - 1, 0);
        ::close(fd_);
        fd_ = -1;
        if (error != EWOULDBLOCK) {
          throw Error("--out " + out + ": cannot lock " + path_ + ": " + std::strerror(error));
        }
        const std::string holder =
            got > 0 ? " (pid " + std::string(pid, strnlen(pid, 31)) + ")" : std::string();
        throw Error("--out " + out + ": another cnn train" + holder +
                    " is writing this run's files (" + path_ +
                    " is locked); wait for it to end or choose another --out");
      }
      struct stat held = {};
      struct stat named = {};
      if (::fstat(fd_, &held) == 0 && ::stat(path_.c_str(), &named) == 0 &&
          held.st_dev == named.st_dev && held.st_ino == named.st_ino) {
        break;
      }
      ::close(fd_);
    }
    // The pid only names the holder in another run's refusal; the lock holds without it.
    const std::string pid = std::to_string(::getpid());
    const bool named = ::ftruncate(fd_, 0) == 0 &&
                       ::pwrite(fd_, pid.data(), pid.size(), 0) == static_cast<ssize_t>(pid.size());
    static_cast<void>(named);
    // For the handlers that end the process at once (remove_run_leftovers_in_handler).
    if (path_.size() < sizeof g_lock_path) {
      std::memcpy(g_lock_path, path_.c_str(), path_.size() + 1);
      g_lock_fd = fd_;
    }
  }
  RunLock(const RunLock&) = delete;
  RunLock& operator=(const RunLock&) = delete;
  ~RunLock() {
    g_lock_fd = -1;
    // Unlinked before the close: a run that opened the file meanwhile takes the lock on a
    // file the path no longer names, sees so and starts again.
    ::unlink(path_.c_str());
    ::close(fd_);
  }

 private:
  std::string path_;
  int fd_ = -1;
};

/// What a training run needs besides its flags: prepared on every rank.
struct TrainSetup {
  std::optional<RunLock> lock;  // first, so that it is released last (rank 0 only)
  std::optional<Checkpoint> resumed;
  TrainConfig config;
  ModelSpec spec;
  std::string checkpoint_path;
  double checkpoint_every = -1;
  DataSplit data;
  Sequential<float> model;
  std::optional<Rng> rng;
};

/// Parses the flags, loads the checkpoint to resume or builds and initialises the model, and
/// loads the data: everything before the first step, whose errors are the user's to fix.
void prepare_training(const Args& args, Communicator* ranks, TrainSetup& t) {
  if (!args.positional().empty())
    args.fail(args.positional()[0], "is not an option of train (see --help)");
  const int world = ranks ? ranks->size() : 1, rank = ranks ? ranks->rank() : 0;
  // The default threads: this host's cores shared by its ranks.
  const int cores = static_cast<int>(std::clamp(std::thread::hardware_concurrency(), 1u, 64u));
  const int default_threads = std::max(1, cores / (ranks ? ranks->local_size() : 1));
  const bool resuming = args.has("--resume");
  TrainConfig& config = t.config;
  if (resuming) {
    t.checkpoint_path = args.text("--resume", "");
    t.resumed = load_checkpoint(t.checkpoint_path);
    config = config_from_json(t.resumed->config, t.checkpoint_path);
    t.spec = t.resumed->model.spec;
    // Flags that would change the run are refused; --epochs may extend it.
    const Json stored = config_json(config);
    const TrainConfig given =
        config_from_args(args, config.model, t.spec, default_threads, &config);
    const Json asked = config_json(given);
    for (const char* flag :
         {"--model", "--data", "--batch", "--optimizer", "--lr", "--momentum", "--weight-decay",
          "--schedule", "--warmup-epochs", "--step-epochs", "--label-smoothing", "--augment",
          "--crop-padding", "--seed", "--threads", "--sync-batchnorm"}) {
      if (!args.has(flag)) continue;
      std::string key = std::string(flag).substr(2);
      std::replace(key.begin(), key.end(), '-', '_');
      const Json& was = stored.at(key);
      const Json& now = key == "model" ? Json(args.text("--model", "")) : asked.at(key);
      if (now != was) {
        // A flag's bytes need not be UTF-8.
        args.fail(
            flag,
            "is " + json_text(now) + ", the checkpoint's run has " + json_text(was) +
                " (a resumed run keeps its configuration; only --epochs and --checkpoint-every may "
                "change)");
      }
    }
    resolve_from_start_directory(config);
    write_next_to_checkpoint(args, given.out, t.checkpoint_path, config);
    if (t.resumed->state.ranks != world) {
      throw Error(t.checkpoint_path + ": the run had " + std::to_string(t.resumed->state.ranks) +
                  " rank" + (t.resumed->state.ranks == 1 ? "" : "s") + ", this one has " +
                  std::to_string(world) + " (resume with " +
                  (t.resumed->state.ranks == 1
                       ? std::string("one process")
                       : "mpirun -np " + std::to_string(t.resumed->state.ranks)) +
                  ")");
    }
    if (args.has("--epochs")) {
      const int done = t.resumed->state.epoch - 1 + (t.resumed->state.order.empty() ? 0 : 1);
      config.options.epochs = given.options.epochs;
      if (config.options.epochs < std::max(done, 1))
        args.fail("--epochs", "is " + std::to_string(config.options.epochs) +
                                  ", the checkpoint is in or past epoch " + std::to_string(done));
    }
    if (t.resumed->state.epoch > config.options.epochs) {
      // Killed after its last checkpoint, before (or while) writing the model: the
      // checkpoint holds the finished run, whose files are written again.
      std::printf("%s finished its %d epochs: writing its files\n",
                  terminal_text(t.checkpoint_path).c_str(), config.options.epochs);
    }
  } else {
    const std::string model_name = args.text("--model", kDefaultPreset);
    t.spec = model_spec_from(model_name);
    config = config_from_args(args, model_name, t.spec, default_threads);
    t.checkpoint_path = sibling(config.out, ".ckpt");
    std::error_code error;
    const std::string here = fs::current_path(error).string();
    if (!error && is_utf8(here)) config.directory = here;
  }
  // A resumed run keeps its --checkpoint-every unless given one (it fell back to once an
  // epoch; found 2026-12-06). It does not change the results.
  t.checkpoint_every = args.number("--checkpoint-every", resuming ? config.checkpoint_every : -1, 0,
                                   kMaxCheckpointEvery, false);
  config.checkpoint_every = t.checkpoint_every;
  if (config.options.batch < world) {
    args.fail("--batch", "is " + std::to_string(config.options.batch) +
                             ", fewer samples than the " + std::to_string(world) +
                             " ranks to split it over");
  }
  const int cpus = ranks ? usable_cpus() : 0;
  if (cpus > 0 && config.threads > cpus) {
    std::fprintf(stderr,
                 "cnn: rank %d: warning: %d threads on %d usable CPU%s (mpirun binds each rank "
                 "to cores: see docs/distributed.md, --bind-to none)\n",
                 rank, config.threads, cpus, cpus == 1 ? "" : "s");
  }
  ops::set_threads(config.threads);
  const std::string& out = config.out;
  require_utf8_names(config, t.spec);
  require_room_for_run_files(out, t.checkpoint_path);
  require_distinct_run_files(config, t.checkpoint_path);
  t.data = data_for(t.spec, config.data);
  const std::string hash = data_hash(t.data);
  const int64_t train_count = t.data.train.size(), test_count = t.data.test.size();
  if (resuming && !config.data_hash.empty() &&
      (hash != config.data_hash || train_count != config.data_train ||
       test_count != config.data_test)) {
    throw Error("--data " + config.data + ": not the data the run of " + t.checkpoint_path +
                " started with: it had " + std::to_string(config.data_train) + " training and " +
                std::to_string(config.data_test) + " test images (hash " + config.data_hash +
                "), this has " + std::to_string(train_count) + " and " +
                std::to_string(test_count) + " (hash " + hash +
                "); a resumed run continues on its own data");
  }
  config.data_train = train_count;
  config.data_test = test_count;
  config.data_hash = hash;
  // The schedule's steps depend on the data's size, so it is checked once the data are read,
  // before any line of training (found 2026-12-06: a onecycle run resumed with --epochs 3 of
  // one step each failed as training started, advising a smaller batch, which a resume
  // refuses). train_model checks the same again; a fresh run gets its message.
  if (const int64_t samples = t.data.train.size(); samples >= world) {
    const int64_t steps = steps_per_epoch(samples, config.options.batch, world);
    try {
      schedule_options(config.options, steps);
    } catch (const Error& refused) {
      // Named with its command, as the flags' lines are (found 2026-12-08, a probe: "cnn:
      // learning-rate schedule: ..." named no command).
      if (!resuming || !args.has("--epochs")) throw Error("train: " + std::string(refused.what()));
      const auto holds = [&](int epochs) {
        TrainOptions options = config.options;
        options.epochs = epochs;
        try {
          schedule_options(options, steps);
          return true;
        } catch (const Error&) {
          return false;
        }
      };
      // The fewest epochs that hold the schedule, if a few more do.
      std::string expected;
      const int last =
          static_cast<int>(std::min<int64_t>(int64_t{config.options.epochs} + 64, kMaxEpochs));
      for (int epochs = config.options.epochs + 1; expected.empty() && epochs <= last; ++epochs)
        if (holds(epochs)) expected = "; expected --epochs " + std::to_string(epochs) + " or more";
      if (expected.empty()) {
        // Too many epochs, not too few: a step schedule decayed to 0 in float. Its reason,
        // and the most epochs that hold it (found 2026-12-08, a probe: --epochs 60 on a step
        // schedule was called "fewer than it needs", the fresh run's reason lost).
        for (int epochs = config.options.epochs - 1; expected.empty() && epochs >= 1; --epochs)
          if (holds(epochs))
            expected = "; expected --epochs " + std::to_string(epochs) + " or fewer";
        args.fail("--epochs", "is " + std::to_string(config.options.epochs) + ": " +
                                  refused.what() + expected +
                                  " (a resumed run keeps its batch and schedule settings)");
      }
      args.fail("--epochs", "is " + std::to_string(config.options.epochs) +
                                ", which gives the run's " +
                                schedule_name(config.options.schedule) + " schedule " +
                                std::to_string(steps * config.options.epochs) + " steps (" +
                                std::to_string(steps) + " per epoch: its batch of " +
                                std::to_string(config.options.batch) + " over " +
                                std::to_string(samples) + " training images), fewer than it needs" +
                                expected + " (a resumed run keeps its batch)");
    }
  }
  t.rng.emplace(config.seed);
  if (t.resumed) {
    t.model = std::move(t.resumed->model.model);
  } else {
    t.model = build_model(t.spec);
    t.model.init_parameters(*t.rng);
  }
  // A flag that would change nothing is refused, as the others are (found 2026-12-08, a
  // probe: one process, or a model without BatchNorm, took it and stored it in the checkpoint).
  if (args.has("--sync-batchnorm")) {
    if (ranks == nullptr || ranks->size() < 2) {
      args.fail("--sync-batchnorm",
                "shares BatchNorm statistics between mpirun's ranks; this run is one process "
                "(expected mpirun -np 2 or more)");
    }
    if (t.model.buffer_count() == 0) {
      args.fail("--sync-batchnorm", "needs a model with BatchNorm layers; '" +
                                        terminal_text(t.spec.name) + "' has none");
    }
  }
  if (ranks && config.sync_batchnorm) t.model.synchronise_batch_statistics(ranks);
  // Last, once every check of the flags, data and model has passed: a run refused for those
  // never touches the lock, so refusals in one directory (the tests' ctest -j2) cannot be told
  // that another run holds it.
  if (rank == 0) {
    // The directories for --out are made here, after the checks: a run refused for its data
    // left the directories it had made (found 2026-12-06).
    const fs::path out_dir = fs::path(out).parent_path();
    std::error_code error;
    if (!out_dir.empty() && !fs::is_directory(out_dir, error)) {
      fs::create_directories(out_dir, error);
      if (error)
        args.fail("--out", "cannot create directory " + out_dir.string() + ": " + error.message());
    }
    t.lock.emplace(out);
    for (const std::string& path : run_files(out, t.checkpoint_path))
      remove_stale_temporaries(path);
  }
}

}  // namespace

int train_command(int argc, char** argv, Communicator* ranks) {
  // The set-up handlers are main's (install_train_setup_handlers), from its first line.
  const int world = ranks ? ranks->size() : 1, rank = ranks ? ranks->rank() : 0;
  g_rank_zero = rank == 0 ? 1 : 0;
  std::optional<Args> parsed;
  TrainSetup t;
  agree_on_setup(ranks, [&] {
    parsed.emplace("train", argc, argv, 2,
                   std::vector<std::string>{"--model", "--data", "--epochs", "--batch", "--lr",
                                            "--momentum", "--weight-decay", "--schedule", "--seed",
                                            "--threads", "--out", "--optimizer", "--warmup-epochs",
                                            "--step-epochs", "--label-smoothing", "--augment",
                                            "--crop-padding", "--resume", "--checkpoint-every"},
                   std::vector<std::string>{"--sync-batchnorm"});
    if (!parsed->help()) prepare_training(*parsed, ranks, t);
  });
  if (parsed->help()) {
    std::fputs(kTrainHelp, stdout);
    return 0;
  }
  // Fault injection for the tests (docs/design-notes.md, "Checkpoints"): see below; under
  // mpirun, CNN_FAULT_RANK=R limits them to rank R.
  const auto fault_at = [](const char* name) {
    const char* v = std::getenv(name);
    return v ? std::atoll(v) : -1LL;
  };
  const long long fault_rank = fault_at("CNN_FAULT_RANK");
  const bool faults_here = fault_rank < 0 || fault_rank == rank;
  // CNN_FAULT_SIGNAL_IN_SETUP=S raises signal S at the end of set-up: the data read, the lock
  // taken, the training handlers not yet installed.
  if (const long long setup_signal = fault_at("CNN_FAULT_SIGNAL_IN_SETUP");
      faults_here && setup_signal > 0)
    std::raise(static_cast<int>(setup_signal));
  if (ranks != nullptr) {
    // A SIGUSR1 that reached any rank while it set up (mpirun forwards it to every rank, which
    // get it at different moments of their set-up) stops every rank here, before the first
    // step, with one line: nothing was trained, nothing is written. One arriving after this
    // sum stops the run at the first step, with a checkpoint, as in training.
    double signalled = g_stop_signal != 0 ? 1 : 0;
    ranks->sum(&signalled, 1);
    if (signalled > 0) {
      if (rank == 0) {
        std::fputs(
            "cnn: stopped by SIGUSR1 while setting up the run, before its first step: "
            "nothing was trained\n",
            stderr);
      }
      return 128 + SIGUSR1;
    }
  }
  const TrainConfig& config = t.config;
  const ModelSpec& spec = t.spec;
  const DataSplit& data = t.data;
  Sequential<float>& model = t.model;
  const std::string& checkpoint_path = t.checkpoint_path;
  const TrainOptions& options = config.options;
  const bool sgd = options.optimizer == OptimizerKind::kSgd;
  const std::string& out = config.out;
  const std::string csv = sibling(out, ".csv"), svg = sibling(out, ".svg");
  const std::string resume_command =
      (world > 1 ? "mpirun -np " + std::to_string(world) + " " : std::string()) +
      "cnn train --resume " + checkpoint_path;

  char optimizer[64], smoothing[48] = "", augment[64] = "", parallel[160];
  std::snprintf(optimizer, sizeof optimizer, sgd ? "%s (momentum %g)" : "%s",
                optimizer_name(options.optimizer), options.momentum);
  // Each only when it is on: label smoothing alone said "augment none (padding 2)" (found
  // 2026-12-08, a probe).
  if (options.label_smoothing > 0)
    std::snprintf(smoothing, sizeof smoothing, ", label smoothing %g", options.label_smoothing);
  if (options.augment != Augment::kNone) {
    std::snprintf(augment, sizeof augment, ", augment %s (padding %lld)",
                  augment_name(options.augment), static_cast<long long>(options.crop_padding));
  }
  const std::string extras = std::string(smoothing) + augment;
  if (world > 1) {
    const long long low = options.batch / world, high = (options.batch + world - 1) / world;
    const std::string share =
        low == high ? std::to_string(low) : std::to_string(low) + "-" + std::to_string(high);
    std::snprintf(parallel, sizeof parallel, "%d ranks x %d thread%s (%s images a rank%s)", world,
                  config.threads, config.threads == 1 ? "" : "s", share.c_str(),
                  config.sync_batchnorm ? ", BatchNorm synchronised" : "");
  } else {
    std::snprintf(parallel, sizeof parallel, "%d thread%s", config.threads,
                  config.threads == 1 ? "" : "s");
  }
  if (t.resumed) {
    std::printf("resuming from %s: epoch %d, after step %lld\n",
                terminal_text(checkpoint_path).c_str(), t.resumed->state.epoch,
                static_cast<long long>(t.resumed->state.step));
  }
  std::printf(
      "training %s (%s parameters) on %s: %lld training, %lld test images; %d epoch%s, batch "
      "%lld, %s, lr %g (%s schedule), weight decay %g%s, seed %llu, %s\n",
      terminal_text(spec.name).c_str(), with_commas(model.parameter_count()).c_str(),
      terminal_text(data.description).c_str(), static_cast<long long>(data.train.size()),
      static_cast<long long>(data.test.size()), options.epochs, options.epochs == 1 ? "" : "s",
      static_cast<long long>(options.batch), optimizer, options.lr, schedule_name(options.schedule),
      options.weight_decay, extras.c_str(), static_cast<unsigned long long>(config.seed), parallel);
  std::fflush(stdout);

  const bool terminal = stdout_is_terminal();
  int last_report = -1;
  const auto on_progress = [&](const TrainProgress& p) {
    const double fraction = double(p.seen) / double(p.total);
    const double rate = double(p.seen) / std::max(p.seconds, 1e-9);
    const double eta = double(p.total - p.seen) / std::max(rate, 1e-9);
    if (terminal) {
      static auto last = std::chrono::steady_clock::now();
      const auto now = std::chrono::steady_clock::now();
      if (p.seen != p.total && now - last < std::chrono::milliseconds(100)) return;
      last = now;
      const int width = 30, filled = static_cast<int>(fraction * width);
      std::string bar = std::string(static_cast<size_t>(filled), '=') +
                        (filled < width ? ">" : "") +
                        std::string(static_cast<size_t>(std::max(0, width - filled - 1)), ' ');
      std::printf("\repoch %d/%d [%s] %3.0f%% %6.0f img/s ETA %s loss %s acc %.2f%%  ", p.epoch,
                  p.epochs, bar.c_str(), 100 * fraction, rate, format_duration(eta).c_str(),
                  loss_text(p.loss).c_str(), 100 * p.accuracy);
      if (p.seen == p.total) std::printf("\n");
    } else {
      // Plain lines, one per quarter of the epoch, when the output is a file or a pipe.
      const int quarter = static_cast<int>(fraction * 4);
      if (quarter == last_report || quarter == 0) return;
      last_report = quarter == 4 ? -1 : quarter;
      std::printf("epoch %d/%d %3.0f%% %.0f img/s ETA %s loss %s acc %.2f%%\n", p.epoch, p.epochs,
                  100 * fraction, rate, format_duration(eta).c_str(), loss_text(p.loss).c_str(),
                  100 * p.accuracy);
    }
    std::fflush(stdout);
  };
  const auto on_epoch = [&](const EpochMetrics& m) {
    std::printf("epoch %d/%d: train loss %s acc %.2f%% | test loss %s acc %.2f%% | %.1f s\n",
                m.epoch, options.epochs, loss_text(m.train_loss).c_str(), 100 * m.train_accuracy,
                loss_text(m.test_loss).c_str(), 100 * m.test_accuracy, m.seconds);
    std::fflush(stdout);
  };

  // Checkpoints: after every epoch, every --checkpoint-every seconds at a step boundary, and
  // when a signal stops the run. Rank 0 writes them.
  const std::string config_text = config_json(config).dump();
  auto last_checkpoint = std::chrono::steady_clock::now();
  std::string last_good = t.resumed ? "epoch " + std::to_string(t.resumed->state.epoch) +
                                          ", step " + std::to_string(t.resumed->state.step)
                                    : "";
  TrainControl control;
  control.ranks = ranks;
  // The loaded state is handed over, not copied: train_model frees its optimizer tensors once
  // they are in the optimizer (found 2026-12-07: kept here and copied there, a resumed run of a
  // 40M-parameter Adam model held its moments three times, 1.93 GB against a fresh run's 1.62).
  if (t.resumed) control.resume_taken = &t.resumed->state;
  // CNN_FAULT_KILL_AT_STEP=N: SIGKILL when training asks for the N-th time whether to stop
  // (after the N-th step, or an epoch's end), a death between checkpoints for the tests.
  const long long kill_at_step = faults_here ? fault_at("CNN_FAULT_KILL_AT_STEP") : -1;
  long long stop_questions = 0;
  control.stop_requested = [&] {
    if (++stop_questions == kill_at_step) std::raise(SIGKILL);
    return g_stop_signal != 0;
  };
  if (t.checkpoint_every >= 0) {
    control.checkpoint_due = [&] {
      return std::chrono::duration<double>(std::chrono::steady_clock::now() - last_checkpoint)
                 .count() >= t.checkpoint_every;
    };
  }
  // Fault injection for the tests of crashes and failed writes: at the N-th checkpoint of this
  // process, CNN_FAULT_KILL_IN_CHECKPOINT=N leaves a partly written temporary file and dies by
  // SIGKILL, CNN_FAULT_KILL_AFTER_CHECKPOINT=N dies right after writing it,
  // CNN_FAULT_FAIL_CHECKPOINT=N fails the write; CNN_FAULT_FAIL_FILES=1 fails the write of the
  // model file at the end, and CNN_FAULT_SIGNAL_IN_FILES=S raises signal S as the files are
  // written, CNN_FAULT_SIGINT_TWICE_AFTER_CHECKPOINT=N raises SIGINT twice after the N-th
  // checkpoint (two kill()s from outside may arrive as one: a signal pending twice is
  // delivered once), and CNN_FAULT_SIGINT_TWICE_IN_CHECKPOINT=N while its temporary file is
  // half written.
  const long long kill_in = faults_here ? fault_at("CNN_FAULT_KILL_IN_CHECKPOINT") : -1;
  const long long kill_after = faults_here ? fault_at("CNN_FAULT_KILL_AFTER_CHECKPOINT") : -1;
  const long long fail_at = faults_here ? fault_at("CNN_FAULT_FAIL_CHECKPOINT") : -1;
  const long long sigint_in = faults_here ? fault_at("CNN_FAULT_SIGINT_TWICE_IN_CHECKPOINT") : -1;
  long long checkpoints = 0;
  control.checkpoint = [&](const TrainState& state) {
    ++checkpoints;
    if (checkpoints == sigint_in) {
      // A file-size limit below the checkpoint's size stops its write with the temporary file
      // half written (SIGXFSZ), whose handler raises the two SIGINTs there.
      struct sigaction cut {};
      sigemptyset(&cut.sa_mask);
      cut.sa_handler = raise_sigint_twice;
      ::sigaction(SIGXFSZ, &cut, nullptr);
      struct rlimit limit {};
      ::getrlimit(RLIMIT_FSIZE, &limit);
      limit.rlim_cur = 4096;
      ::setrlimit(RLIMIT_FSIZE, &limit);
    }
    if (checkpoints == kill_in) {
      std::string partial = temporary_file_template(write_destination(checkpoint_path));
      partial.replace(partial.size() - 6, 6, "fault1");  // as mkstemp would fill it in
      std::ofstream(partial, std::ios::binary) << std::string(4096, '\0');
      std::raise(SIGKILL);
    }
    std::string failure;
    try {
      if (checkpoints == fail_at) {
        throw Error(checkpoint_path +
                    ": cannot write: injected failure (CNN_FAULT_FAIL_CHECKPOINT)");
      }
      if (rank == 0) {
        save_checkpoint(checkpoint_path, model, spec, data.class_names, state, config_text);
        g_checkpoint_kept = 1;  // renamed into place: the handlers' lines may name it
      }
    } catch (const Error& e) {
      if (ranks == nullptr) throw;
      failure = e.what();
    }
    if (ranks != nullptr) {
      // A failed write ends every rank alike, reported once (rank 0 writes; a fault may be
      // injected elsewhere).
      double failed = failure.empty() ? 0 : 1;
      ranks->sum(&failed, 1);
      if (failed > 0) {
        throw RanksError(rank == 0 && !failure.empty()
                             ? failure
                             : checkpoint_path + ": another rank failed at this checkpoint");
      }
    }
    g_checkpoint_kept = 1;  // on every rank, once all know that rank 0 wrote it
    if (checkpoints == kill_after) std::raise(SIGKILL);
    if (checkpoints == fault_at("CNN_FAULT_SIGINT_TWICE_AFTER_CHECKPOINT")) {
      std::raise(SIGINT);
      std::raise(SIGINT);
    }
    last_checkpoint = std::chrono::steady_clock::now();
    last_good = "epoch " + std::to_string(state.epoch) + ", step " + std::to_string(state.step);
  };
  // The training handlers replace the set-up ones. Their lines name the checkpoint once there
  // is one (g_checkpoint_kept): a resumed run has it from the start.
  const std::string shown_checkpoint = terminal_text(checkpoint_path),
                    shown_resume = terminal_text(resume_command);
  if (shown_checkpoint.size() < sizeof g_checkpoint_path &&
      shown_resume.size() < sizeof g_resume_command) {
    std::memcpy(g_checkpoint_path, shown_checkpoint.c_str(), shown_checkpoint.size() + 1);
    std::memcpy(g_resume_command, shown_resume.c_str(), shown_resume.size() + 1);
  }
  g_checkpoint_kept = t.resumed ? 1 : 0;
  if (world > 1) {
    // SIGUSR1 (mpirun forwards it to every rank) stops at the next step with a checkpoint;
    // SIGINT and SIGTERM end this rank at once with one line.
    const int length = std::snprintf(
        g_rank_end_line, sizeof g_rank_end_line,
        "cnn: rank %d of %d: ended by mpirun (a rank failed or the job was interrupted); the "
        "last checkpoint stays intact: %s (resume: %s)\n",
        rank, world, checkpoint_path.c_str(), resume_command.c_str());
    g_rank_end_length =
        std::min(sizeof g_rank_end_line - 1, static_cast<size_t>(std::max(0, length)));
    const int short_length =
        std::snprintf(g_rank_end_line_no_checkpoint, sizeof g_rank_end_line_no_checkpoint,
                      "cnn: rank %d of %d: ended by mpirun (a rank failed or the job was "
                      "interrupted) before the run's first checkpoint: nothing was kept\n",
                      rank, world);
    g_rank_end_no_checkpoint_length = std::min(sizeof g_rank_end_line_no_checkpoint - 1,
                                               static_cast<size_t>(std::max(0, short_length)));
    install_handler(on_rank_end_signal, {SIGINT, SIGTERM, SIGHUP});
  } else {
    install_handler(on_stop_signal, {SIGINT, SIGTERM, SIGHUP});
    install_handler(on_broken_pipe, {SIGPIPE});
  }
  install_handler(on_stop_signal, {SIGUSR1});
  g_setting_up = 0;
  // Once training is over: one process keeps on_stop_signal to the end (a first signal is
  // noted, a second ends it at once with its line, OUT.lock removed: the default action left
  // the lock). Under mpirun, SIGINT and SIGTERM then end a rank with no line of its own: they
  // come from mpirun when another rank exited first with a status (138 after a SIGUSR1), and
  // the run's line is rank 0's.
  const auto use_after_training_handlers = [&] {
    if (world > 1) install_handler(on_quiet_end_signal, {SIGINT, SIGTERM, SIGHUP});
  };
  // A failure in training keeps the last checkpoint written: the line says which.
  const auto with_checkpoint = [&](const std::string& what) {
    return last_good.empty() ? what
                             : what + "; the last checkpoint, " + checkpoint_path + " (" +
                                   last_good + "), is kept";
  };
  const auto start = std::chrono::steady_clock::now();
  TrainResult result;
  try {
    result = train_model(model, spec, data.train, data.test, options, *t.rng, on_progress, on_epoch,
                         control);
  } catch (const RanksError& e) {
    use_after_training_handlers();
    if (last_good.empty()) throw;
    throw RanksError(with_checkpoint(e.what()));
  } catch (const OutOfMemory& e) {
    use_after_training_handlers();
    throw OutOfMemory(with_checkpoint(out_of_memory_at(e, options.batch)));
  } catch (const std::bad_alloc& e) {
    use_after_training_handlers();
    throw OutOfMemory(with_checkpoint(out_of_memory_at(e, options.batch)));
  } catch (const Error& e) {
    use_after_training_handlers();
    if (last_good.empty()) throw;
    throw Error(with_checkpoint(e.what()));
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (result.stopped) {
    use_after_training_handlers();
    const int signal = g_stop_signal;
    if (rank == 0) {
      std::fprintf(stderr,
                   "cnn: stopped by %s in epoch %d after step %lld; checkpoint %s; resume with: "
                   "%s\n",
                   stop_signal_name(signal), result.state.epoch,
                   static_cast<long long>(result.state.step), checkpoint_path.c_str(),
                   resume_command.c_str());
    }
    // A rank that got no signal itself stops because another did: SIGUSR1's status.
    return 128 + (signal != 0 ? signal : SIGUSR1);
  }

  if (rank != 0) {
    use_after_training_handlers();
    return 0;
  }
  const std::vector<EpochMetrics>& history = result.history;
  // The handlers stay while the files are written: a first SIGINT or SIGTERM waits for them
  // (found 2026-12-06: one then ended the process with no word, between a temporary file and
  // its rename), a second one ends the process at once, as during training.
  try {
    if (fault_at("CNN_FAULT_FAIL_FILES") == 1)
      throw Error(out + ": cannot write: injected failure (CNN_FAULT_FAIL_FILES)");
    if (fault_at("CNN_FAULT_SIGNAL_IN_FILES") > 0)
      std::raise(static_cast<int>(fault_at("CNN_FAULT_SIGNAL_IN_FILES")));
    save_model(out, model, spec, data.class_names);
    write_file_atomic(csv, metrics_csv(history));
    write_file_atomic(svg, learning_curves_svg(history, spec.name + " on " + data.description));
  } catch (const Error& e) {
    use_after_training_handlers();
    // A full disk at the end of hours of training: the last checkpoint holds the finished run.
    throw Error(std::string(e.what()) + "; the finished run is kept in its checkpoint, " +
                checkpoint_path + " (" + resume_command + " writes its files)");
  }
  use_after_training_handlers();
  // CNN_FAULT_SIGNAL_AFTER_FILES=S raises signal S once the files are written, before the lock
  // is released.
  if (faults_here && fault_at("CNN_FAULT_SIGNAL_AFTER_FILES") > 0)
    std::raise(static_cast<int>(fault_at("CNN_FAULT_SIGNAL_AFTER_FILES")));
  if (g_stop_signal != 0) {
    std::fprintf(stderr, "cnn: %s came as the run's files were written; they are complete\n",
                 stop_signal_name(g_stop_signal));
  }
  const EpochMetrics& final = history.back();
  std::printf("final test accuracy %s, test loss %s, after %.1f s of training and testing\n",
              accuracy_text(final.test_accuracy, data.test.size()).c_str(),
              loss_text(final.test_loss).c_str(), seconds);
  if (world > 1) {
    std::printf("%d ranks: models identical on every rank after every epoch (hash %016llx)\n",
                world, static_cast<unsigned long long>(model_hash(model)));
  }
  std::printf("wrote %s, %s, %s (checkpoint %s)\n", terminal_text(out).c_str(),
              terminal_text(csv).c_str(), terminal_text(svg).c_str(),
              terminal_text(checkpoint_path).c_str());
  return 0;
}

}  // namespace cnn::cli

// Training that survives (cnn train's checkpoints): a run killed at any moment (SIGKILL
// between steps, in the middle of writing a checkpoint, before the first one, after the last
// one), or stopped by SIGTERM / SIGINT / SIGHUP or an output whose reader went away, resumes to
// the very model file and metrics of the run that was never stopped; a failed write or a
// diverging loss keeps the last good checkpoint.
// The crash moments come from fault injection in the CLI (CNN_FAULT_*, see
// apps/cnn/train_command.cpp), so that each test hits the moment it names.

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>
#include <tuple>

#include "cli_util.hpp"
#include "cnn/checkpoint.hpp"
#include "cnn/cnn.hpp"
#include "test_models.hpp"

namespace cnn {
namespace {

namespace fs = std::filesystem;

using testing::read_bytes;
using CliRun = testing::ProcessRun;
using Json = nlohmann::json;

fs::path work_dir() {
  static const fs::path dir = testing::process_dir("cnn_checkpoint_test_");
  return dir;
}

/// Starts `cnn <args>` with `env` added to ours; stdout to /dev/null, stderr to err_file.
pid_t spawn(const std::string& args, const std::vector<std::string>& env,
            const fs::path& err_file) {
  return testing::spawn_process(CNN_CLI, testing::split_words(args), env, "/dev/null",
                                err_file.string());
}

CliRun finish(pid_t pid, const fs::path& err_file) {
  return testing::finish_process(pid, "/dev/null", err_file.string());
}

CliRun cnn(const std::string& args, const std::vector<std::string>& env = {}) {
  const fs::path err = work_dir() / "stderr.txt";
  return finish(spawn(args, env, err), err);
}

/// The CSV without its last column (seconds: wall-clock time, which no rerun reproduces).
std::string metrics_without_seconds(const fs::path& csv) {
  std::istringstream in(read_bytes(csv));
  std::string out;
  for (std::string line; std::getline(in, line);) out += line.substr(0, line.rfind(',')) + "\n";
  return out;
}

std::vector<std::string> temporaries(const fs::path& dir) {
  std::vector<std::string> found;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().filename().string().find(".cnn-tmp-") != std::string::npos)
      found.push_back(e.path().filename().string());
  return found;
}

/// A run's files: the reference the interrupted runs must reproduce.
struct Reference {
  std::string model, metrics;
};

Reference reference_run(const std::string& flags, const std::string& name) {
  const fs::path dir = work_dir() / name;
  const CliRun run = cnn("train " + flags + " --out " + (dir / "m.safetensors").string());
  EXPECT_EQ(run.exit_code, 0) << run.err;
  return {read_bytes(dir / "m.safetensors"), metrics_without_seconds(dir / "m.csv")};
}

/// Runs `flags` with the fault `env`, expects death by SIGKILL, resumes (or, when no
/// checkpoint was written yet, starts again) and compares with the reference.
void kill_and_resume(const std::string& flags, const std::string& fault, const Reference& ref,
                     const std::string& name) {
  SCOPED_TRACE(fault);
  const fs::path dir = work_dir() / name;
  fs::remove_all(dir);
  const std::string out = (dir / "m.safetensors").string();
  const CliRun killed = cnn("train " + flags + " --checkpoint-every 0 --out " + out, {fault});
  ASSERT_EQ(killed.exit_code, 128 + SIGKILL) << killed.err;
  const fs::path checkpoint = dir / "m.ckpt";
  CliRun resumed;
  if (fs::exists(checkpoint)) {
    EXPECT_NO_THROW(load_checkpoint(checkpoint.string()));
    resumed = cnn("train --resume " + checkpoint.string());
  } else {
    resumed = cnn("train " + flags + " --out " + out);  // killed before its first checkpoint
  }
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  EXPECT_TRUE(read_bytes(out) == ref.model) << "the resumed model file differs";
  EXPECT_EQ(metrics_without_seconds(dir / "m.csv"), ref.metrics);
  EXPECT_EQ(temporaries(dir), std::vector<std::string>{});
}

/// kLenet's flags but its epochs, for runs that give their own (a flag may not be given twice).
const std::string kLenetBase = "--data sample --threads 1 --seed 3";
const std::string kLenet = kLenetBase + " --epochs 2";

// LeNet-5 and SGD: 2 epochs of 32 steps, a checkpoint after every step (64 in all, the 32nd
// and 64th at the ends of the epochs). Ten moments: in the first write (no checkpoint yet),
// after the first, mid-epoch, in and after the epoch's end, in a write mid-epoch, near the
// end, after the last one (before the model file is written).
TEST(Checkpoint, KilledAtTenMomentsResumesToTheUninterruptedRun) {
  const Reference ref = reference_run(kLenet, "lenet_ref");
  for (const std::string fault :
       {"CNN_FAULT_KILL_IN_CHECKPOINT=1", "CNN_FAULT_KILL_AFTER_CHECKPOINT=1",
        "CNN_FAULT_KILL_AFTER_CHECKPOINT=10", "CNN_FAULT_KILL_IN_CHECKPOINT=32",
        "CNN_FAULT_KILL_AFTER_CHECKPOINT=32", "CNN_FAULT_KILL_AFTER_CHECKPOINT=40",
        "CNN_FAULT_KILL_IN_CHECKPOINT=50", "CNN_FAULT_KILL_AFTER_CHECKPOINT=60",
        "CNN_FAULT_KILL_AFTER_CHECKPOINT=63", "CNN_FAULT_KILL_AFTER_CHECKPOINT=64"}) {
    kill_and_resume(kLenet, fault, ref, "lenet_killed");
  }
}

// A residual network with BatchNorm (running statistics, counters), Dropout (its mask
// stream), crop-flip augmentation (its stream), AdamW (moments, t), one-cycle, label smoothing,
// on 2 threads.
TEST(Checkpoint, ResidualNetworkWithEveryKindOfStateResumesExactly) {
  const fs::path spec = work_dir() / "small.json";
  std::ofstream(spec) << R"({"name": "small", "input": [1, 28, 28], "layers": [
    {"type": "Conv2d", "out_channels": 4, "kernel": 3, "padding": 1, "bias": false},
    {"type": "BatchNorm2d"}, {"type": "ReLU"},
    {"type": "Residual", "body": [
      {"type": "Conv2d", "out_channels": 4, "kernel": 3, "padding": 1, "bias": false},
      {"type": "BatchNorm2d"}, {"type": "ReLU"}, {"type": "Dropout", "p": 0.2},
      {"type": "Conv2d", "out_channels": 4, "kernel": 3, "padding": 1, "bias": false},
      {"type": "BatchNorm2d"}]},
    {"type": "MaxPool2d", "kernel": 4}, {"type": "Flatten"}, {"type": "Dropout", "p": 0.3},
    {"type": "Linear", "out_features": 10}]})";
  const std::string flags = "--model " + spec.string() +
                            " --data sample --epochs 2 --threads 2 --batch 128 --optimizer adamw "
                            "--weight-decay 0.05 --schedule onecycle --label-smoothing 0.1 "
                            "--augment crop-flip";
  const Reference ref = reference_run(flags, "small_ref");
  for (const std::string fault :
       {"CNN_FAULT_KILL_AFTER_CHECKPOINT=5", "CNN_FAULT_KILL_IN_CHECKPOINT=16",
        "CNN_FAULT_KILL_AFTER_CHECKPOINT=16"}) {
    kill_and_resume(flags, fault, ref, "small_killed");
  }
  // The resnet preset with its own recipe (SGD, one-cycle, label smoothing, crop-flip),
  // killed mid-epoch.
  const std::string resnet = "--model resnet --data sample --epochs 2 --threads 2";
  kill_and_resume(resnet, "CNN_FAULT_KILL_AFTER_CHECKPOINT=12", reference_run(resnet, "resnet_ref"),
                  "resnet_killed");
}

/// Waits (up to 2 minutes) until the run writing `dir`/m.ckpt has written its first checkpoint.
void wait_for_first_checkpoint(const fs::path& dir) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (!fs::exists(dir / "m.ckpt") && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
}

// Found 2026-12-08 (a probe): `cnn train | head -1`, or a log reader that dies, ended the run
// by SIGPIPE's default action at its next line: the epoch lost, OUT.lock left. It now stops at
// the next step with a checkpoint, as for SIGTERM, and the resumed run is the uninterrupted one.
TEST(Checkpoint, AnOutputWhoseReaderWentAwayStopsWithACheckpointAndResumesExactly) {
  const Reference ref = reference_run(kLenetBase + " --epochs 6", "pipe_ref");
  const fs::path dir = work_dir() / "pipe";
  fs::remove_all(dir);
  fs::create_directories(dir);
  const fs::path fifo = dir / "stdout.fifo", err = dir / "stderr.txt";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  // Open first, without waiting for a writer, so that the run's open of its stdout succeeds;
  // close-on-exec, or the run would hold a reader of its own output.
  const int reader = ::open(fifo.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  ASSERT_GE(reader, 0);
  const std::string out = (dir / "m.safetensors").string();
  const pid_t pid = testing::spawn_process(
      CNN_CLI, testing::split_words("train " + kLenetBase + " --epochs 6 --out " + out), {},
      fifo.string(), err.string());
  wait_for_first_checkpoint(dir);
  ::close(reader);  // unread: its next line to stdout raises SIGPIPE
  const CliRun stopped = finish(pid, err);
  EXPECT_EQ(stopped.exit_code, 128 + SIGPIPE) << stopped.err;
  EXPECT_NE(stopped.err.find("cnn: stopped by SIGPIPE (the reader of its output went away) in "
                             "epoch "),
            std::string::npos)
      << stopped.err;
  EXPECT_NE(stopped.err.find("resume with: cnn train --resume " + (dir / "m.ckpt").string()),
            std::string::npos)
      << stopped.err;
  EXPECT_FALSE(fs::exists(out));
  EXPECT_FALSE(fs::exists(dir / "m.lock"));
  const CliRun resumed = cnn("train --resume " + (dir / "m.ckpt").string());
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  EXPECT_TRUE(read_bytes(out) == ref.model);
  EXPECT_EQ(metrics_without_seconds(dir / "m.csv"), ref.metrics);
}

// A run started with SIGHUP ignored (`nohup cnn train ...`) keeps it ignored: a closed terminal
// does not stop it. The handler added for SIGHUP on 2026-12-08 would otherwise have replaced
// nohup's choice.
TEST(Checkpoint, ARunStartedWithSighupIgnoredIsNotStoppedByIt) {
  const Reference ref = reference_run(kLenetBase + " --epochs 6", "nohup_ref");
  const fs::path dir = work_dir() / "nohup";
  fs::remove_all(dir);
  fs::create_directories(dir);
  const fs::path err = dir / "stderr.txt";
  const std::string out = (dir / "m.safetensors").string();
  const pid_t pid =
      testing::spawn_process("/bin/sh",
                             {"-c", "trap '' HUP; exec " + std::string(CNN_CLI) + " train " +
                                        kLenetBase + " --epochs 6 --out " + out},
                             {}, "/dev/null", err.string());
  wait_for_first_checkpoint(dir);
  ::kill(pid, SIGHUP);
  const CliRun run = finish(pid, err);
  EXPECT_EQ(run.exit_code, 0) << run.err;
  EXPECT_EQ(run.err, "");
  EXPECT_TRUE(read_bytes(out) == ref.model);
}

/// Starts a long run, waits for its first checkpoint, sends `signal` (twice when `twice`).
CliRun signalled_run(int signal, bool twice, const fs::path& dir) {
  fs::remove_all(dir);
  fs::create_directories(dir);
  const fs::path err = dir / "stderr.txt";
  const pid_t pid = spawn(
      "train " + kLenetBase + " --epochs 6 --out " + (dir / "m.safetensors").string(), {}, err);
  wait_for_first_checkpoint(dir);
  ::kill(pid, signal);
  if (twice) ::kill(pid, signal);
  return finish(pid, err);
}

// SIGHUP since 2026-12-08 (a probe: a closed terminal ended the run at once, losing the epoch
// and leaving OUT.lock).
TEST(Checkpoint, SigtermSigintAndSighupStopWithACheckpointAndResumeExactly) {
  const Reference ref = reference_run(kLenetBase + " --epochs 6", "signal_ref");
  for (const auto& [signal, name] :
       {std::pair{SIGTERM, "SIGTERM"}, std::pair{SIGINT, "SIGINT"}, std::pair{SIGHUP, "SIGHUP"}}) {
    SCOPED_TRACE(name);
    const fs::path dir = work_dir() / "signalled";
    const CliRun stopped = signalled_run(signal, false, dir);
    EXPECT_EQ(stopped.exit_code, 128 + signal) << stopped.err;
    EXPECT_EQ(std::count(stopped.err.begin(), stopped.err.end(), '\n'), 1) << stopped.err;
    EXPECT_NE(stopped.err.find(std::string("stopped by ") + name + " in epoch "), std::string::npos)
        << stopped.err;
    EXPECT_FALSE(fs::exists(dir / "m.lock"));
    EXPECT_NE(stopped.err.find("resume with: cnn train --resume " + (dir / "m.ckpt").string()),
              std::string::npos)
        << stopped.err;
    EXPECT_FALSE(fs::exists(dir / "m.safetensors"));
    const CliRun resumed = cnn("train --resume " + (dir / "m.ckpt").string());
    ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
    EXPECT_TRUE(read_bytes(dir / "m.safetensors") == ref.model);
    EXPECT_EQ(metrics_without_seconds(dir / "m.csv"), ref.metrics);
  }
  // A second SIGINT ends the process at once; the last checkpoint stays usable.
  const fs::path dir = work_dir() / "twice";
  const CliRun twice = signalled_run(SIGINT, true, dir);
  EXPECT_EQ(twice.exit_code, 130) << twice.err;
  EXPECT_NO_THROW(load_checkpoint((dir / "m.ckpt").string()));
  // With one line: it ended with none before. (Two kill()s may arrive as one signal; the run
  // raises two itself for this.)
  const std::string out = (dir / "m.safetensors").string(), ckpt = (dir / "m.ckpt").string();
  const CliRun raised = cnn("train " + kLenetBase + " --epochs 6 --checkpoint-every 0 --out " + out,
                            {"CNN_FAULT_SIGINT_TWICE_AFTER_CHECKPOINT=3"});
  EXPECT_EQ(raised.exit_code, 130) << raised.err;
  EXPECT_EQ(raised.err,
            "cnn: stopped at once by a second SIGINT; the last checkpoint stays "
            "intact: " +
                ckpt + " (resume with: cnn train --resume " + ckpt + ")\n");
  EXPECT_EQ(load_checkpoint(ckpt).state.step, 3);
  // It leaves no OUT.lock (found 2026-12-06: the lock and a temporary file of a write under way
  // stayed until the next run removed them), nor, when the signals come while a checkpoint is
  // being written, its temporary file; the checkpoint before it stays.
  EXPECT_FALSE(fs::exists(dir / "m.lock"));
  EXPECT_TRUE(temporaries(dir).empty()) << temporaries(dir)[0];
  fs::remove_all(dir);
  const CliRun mid_write =
      cnn("train " + kLenetBase + " --epochs 6 --checkpoint-every 0 --out " + out,
          {"CNN_FAULT_SIGINT_TWICE_IN_CHECKPOINT=3"});
  EXPECT_EQ(mid_write.exit_code, 130) << mid_write.err;
  EXPECT_EQ(mid_write.err, raised.err);
  EXPECT_EQ(load_checkpoint(ckpt).state.step, 2);
  EXPECT_FALSE(fs::exists(dir / "m.lock"));
  EXPECT_TRUE(temporaries(dir).empty()) << temporaries(dir)[0];
  // Never another process's lock: with the run's lock file removed mid-run and another made
  // and locked by this test (as a second run would), the handler leaves that one.
  fs::remove_all(dir);
  const fs::path err = work_dir() / "held_lock.txt";
  const pid_t pid = spawn("train " + kLenetBase + " --epochs 6 --checkpoint-every 0 --out " + out,
                          {"CNN_FAULT_SIGINT_TWICE_AFTER_CHECKPOINT=100"}, err);
  wait_for_first_checkpoint(dir);
  fs::remove(dir / "m.lock");
  const int held = ::open((dir / "m.lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  EXPECT_EQ(::flock(held, LOCK_EX | LOCK_NB), 0);
  const CliRun beside = finish(pid, err);
  EXPECT_EQ(beside.exit_code, 130) << beside.err;
  EXPECT_EQ(load_checkpoint(ckpt).state.step, 100);
  EXPECT_TRUE(fs::exists(dir / "m.lock"));
  ::close(held);
}

TEST(Checkpoint, FailedWriteAndDivergenceKeepTheLastCheckpoint) {
  const Reference ref = reference_run(kLenet, "fail_ref");
  const fs::path dir = work_dir() / "failed";
  fs::remove_all(dir);
  const std::string out = (dir / "m.safetensors").string();
  const CliRun failed = cnn("train " + kLenet + " --checkpoint-every 0 --out " + out,
                            {"CNN_FAULT_FAIL_CHECKPOINT=20"});
  EXPECT_EQ(failed.exit_code, 1) << failed.err;
  EXPECT_EQ(std::count(failed.err.begin(), failed.err.end(), '\n'), 1) << failed.err;
  EXPECT_NE(failed.err.find("cannot write"), std::string::npos) << failed.err;
  EXPECT_NE(failed.err.find("the last checkpoint, " + (dir / "m.ckpt").string() +
                            " (epoch 1, step 19), is kept"),
            std::string::npos)
      << failed.err;
  const CliRun resumed = cnn("train --resume " + (dir / "m.ckpt").string());
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  EXPECT_TRUE(read_bytes(out) == ref.model);

  // A learning rate that diverges: one line naming the epoch and step; the checkpoint loads.
  const fs::path diverging = work_dir() / "diverging";
  fs::remove_all(diverging);
  const CliRun diverged = cnn("train " + kLenet + " --lr 100 --checkpoint-every 0 --out " +
                              (diverging / "m.safetensors").string());
  EXPECT_EQ(diverged.exit_code, 1) << diverged.err;
  EXPECT_EQ(std::count(diverged.err.begin(), diverged.err.end(), '\n'), 1) << diverged.err;
  EXPECT_NE(diverged.err.find("training diverged: "), std::string::npos) << diverged.err;
  EXPECT_NE(diverged.err.find(" in epoch 1, step "), std::string::npos) << diverged.err;
  EXPECT_NE(diverged.err.find("is kept"), std::string::npos) << diverged.err;
  EXPECT_NO_THROW(load_checkpoint((diverging / "m.ckpt").string()));
  EXPECT_FALSE(fs::exists(diverging / "m.safetensors"));
}

// The model file cannot be written when training ends (a full disk): the line names the
// checkpoint, which holds the finished run, and resuming it writes the files the run would have.
TEST(Checkpoint, AFailedFinalWriteKeepsTheFinishedRunInItsCheckpoint) {
  const Reference ref = reference_run(kLenet, "final_ref");
  const fs::path dir = work_dir() / "final";
  fs::remove_all(dir);
  const std::string out = (dir / "m.safetensors").string(), ckpt = (dir / "m.ckpt").string();
  const CliRun failed = cnn("train " + kLenet + " --out " + out, {"CNN_FAULT_FAIL_FILES=1"});
  EXPECT_EQ(failed.exit_code, 1) << failed.err;
  EXPECT_EQ(failed.err, "cnn: " + out +
                            ": cannot write: injected failure (CNN_FAULT_FAIL_FILES); the finished "
                            "run is kept in its checkpoint, " +
                            ckpt + " (cnn train --resume " + ckpt + " writes its files)\n");
  EXPECT_FALSE(fs::exists(out));
  const CliRun resumed = cnn("train --resume " + ckpt);
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  EXPECT_TRUE(read_bytes(out) == ref.model);
  EXPECT_EQ(metrics_without_seconds(dir / "m.csv"), ref.metrics);
}

/// A fresh directory `name` under work_dir() holding linear.json, a spec of Flatten and
/// Linear(10) for runs whose model does not matter; returns the spec's path.
fs::path fresh_linear_spec(const std::string& name) {
  const fs::path dir = work_dir() / name;
  fs::remove_all(dir);
  fs::create_directories(dir);
  const fs::path spec = dir / "linear.json";
  std::ofstream(spec) << R"({"input": [1, 28, 28], "layers": [{"type": "Flatten"},
      {"type": "Linear", "out_features": 10}]})";
  return spec;
}

/// `cnn train --resume ckpt ARGS` fails for each (ARGS, fragment) with one line holding the
/// fragment.
void expect_resume_refused(const std::string& ckpt,
                           const std::vector<std::pair<std::string, std::string>>& cases) {
  for (const auto& [args, fragment] : cases) {
    const CliRun run = cnn("train --resume " + ckpt + " " + args);
    EXPECT_NE(run.exit_code, 0) << args;
    EXPECT_NE(run.err.find(fragment), std::string::npos) << args << ": " << run.err;
    EXPECT_EQ(std::count(run.err.begin(), run.err.end(), '\n'), 1) << run.err;
  }
}

TEST(Checkpoint, ResumeRefusesWhatWouldChangeTheRun) {
  const fs::path dir = work_dir() / "refuse";
  fs::remove_all(dir);
  const std::string out = (dir / "m.safetensors").string(), ckpt = (dir / "m.ckpt").string();
  ASSERT_EQ(cnn("train " + kLenet + " --out " + out).exit_code, 0);
  expect_resume_refused(
      ckpt,
      {{"--lr 0.1", "--lr is 0.1, the checkpoint's run has 0.05"},
       {"--threads 2", "--threads is 2, the checkpoint's run has 1"},
       {"--seed 4", "--seed is 4, the checkpoint's run has 3"},
       {"--augment crop-flip", "--augment is \"crop-flip\", the checkpoint's run has \"none\""},
       {"--model convnet", "--model is \"convnet\", the checkpoint's run has \"lenet5\""},
       {"--epochs 1", "--epochs is 1, the checkpoint is in or past epoch 2"}});
  // Resuming a finished run writes its files again, the same bytes.
  const std::string model_bytes = read_bytes(out);
  fs::remove(out);
  const CliRun again = cnn("train --resume " + ckpt);
  ASSERT_EQ(again.exit_code, 0) << again.err;
  EXPECT_TRUE(read_bytes(out) == model_bytes);
  // The same value is no change; --epochs extends the finished run.
  const CliRun extended = cnn("train --resume " + ckpt + " --lr 0.05 --epochs 3");
  ASSERT_EQ(extended.exit_code, 0) << extended.err;
  EXPECT_EQ(metrics_without_seconds(dir / "m.csv").substr(0, 5), "epoch");
  std::istringstream lines(read_bytes(dir / "m.csv"));
  EXPECT_EQ(std::count(std::istreambuf_iterator<char>(lines), {}, '\n'), 4);  // header + 3
  // A stored configuration outside the flags' ranges is refused (found 2026-12-06: batch
  // 100000 and crop padding 1000 were taken), in a file without a checksum (as checkpoints
  // written before it), which would refuse any edit. Each value is read as the type it was
  // written as, and a refusal names its key where it can (found 2026-12-07: nlohmann's
  // get<int> converted, so epochs 2^32 + 3 and 3.9 resumed as the run's 3 epochs and threads
  // 2^32 + 1 as 1, exit 0; a string lr or a missing key said "[json.exception.type_error.302]
  // type must be number, but is string" or "... key 'lr' not found").
  const SafeTensorsFile stored = SafeTensorsFile::load(ckpt);
  const std::string out_of_range = "values out of the ranges of their flags";
  for (const auto& [key, value, fragment] : std::vector<std::tuple<std::string, Json, std::string>>{
           {"batch", 100000, "'batch' is 100000, expected a whole number from 1 to 65536"},
           {"crop_padding", 1000, "'crop_padding' is 1000, expected a whole number from 0 to 64"},
           {"lr", -1, out_of_range},
           {"warmup_epochs", 3, out_of_range},
           {"epochs", (int64_t{1} << 32) + 3,
            "'epochs' is 4294967299, expected a whole number from 1 to 100000"},
           {"epochs", 3.9, "'epochs' is 3.9, expected a whole number from 1 to 100000"},
           {"threads", (int64_t{1} << 32) + 1,
            "'threads' is 4294967297, expected a whole number from 1 to 256"},
           {"lr", "0.05", "'lr' is string, expected a number"},
           {"lr", nullptr, "missing 'lr'"}}) {
    SCOPED_TRACE(key + " " + value.dump());
    Json config = Json::parse(stored.metadata().at("config"));
    if (value.is_null())
      config.erase(key);
    else
      config[key] = value;
    const std::string edited = (dir / "edited.ckpt").string();
    std::map<std::string, std::string> metadata = stored.metadata();
    metadata["config"] = config.dump();
    metadata.erase("checksum");
    testing::save_with_all_metadata(stored, metadata, edited);
    const CliRun run = cnn("train --resume " + edited);
    EXPECT_EQ(run.exit_code, 1);
    EXPECT_EQ(run.err, "cnn: " + edited +
                           ": the checkpoint's training configuration is unreadable: " + fragment +
                           "\n");
  }
  // A checksum covers the weights, optimizer state, run state and configuration: a bit
  // flipped in any of them is refused (found 2026-12-06: most such flips resumed silently to
  // another run, a position of 320 read as 328 among them).
  std::string bytes = read_bytes(ckpt);
  bytes[bytes.size() - 3] = static_cast<char>(bytes[bytes.size() - 3] ^ 0x10);
  const fs::path flipped = dir / "flipped.ckpt";
  std::ofstream(flipped, std::ios::binary) << bytes;
  const SafeTensorsFile whole = SafeTensorsFile::load(ckpt);
  Json state = Json::parse(whole.metadata().at("state"));
  state["position"] = state["position"].get<int64_t>() + 8;
  const fs::path moved = dir / "moved.ckpt";
  testing::save_with_metadata(whole, "state", state.dump(), moved.string());
  for (const fs::path& corrupt : {flipped, moved}) {
    const CliRun run = cnn("train --resume " + corrupt.string());
    EXPECT_EQ(run.exit_code, 1);
    EXPECT_NE(run.err.find(corrupt.string() + ": the checkpoint is corrupt: its checksum is "),
              std::string::npos)
        << run.err;
  }
  // A model file is not a checkpoint.
  const CliRun model_file = cnn("train --resume " + out);
  EXPECT_EQ(model_file.exit_code, 1);
  EXPECT_NE(model_file.err.find("not a cnn checkpoint"), std::string::npos) << model_file.err;
}

// Found 2026-12-07 by a helper's probe: a run resumed on a data directory whose files had
// changed went on silently when the counts were the same (other labels), and failed with
// "BatchIterator: a saved order of 50 samples at position 20 does not fit 2000 samples" when
// they were not. The checkpoint keeps a hash of the data; other data is refused before training.
TEST(Checkpoint, AResumeOnOtherDataIsRefused) {
  const fs::path dir = work_dir() / "other_data", data = dir / "data";
  fs::remove_all(dir);
  fs::create_directories(data);
  for (const auto& entry : fs::directory_iterator(CNN_SAMPLE_DIR))
    fs::copy_file(entry.path(), data / entry.path().filename());
  const std::string ckpt = (dir / "m.ckpt").string();
  const CliRun killed = cnn("train --data " + data.string() + " --epochs 2 --threads 1 --out " +
                                (dir / "m.safetensors").string(),
                            {"CNN_FAULT_KILL_AFTER_CHECKPOINT=1"});
  ASSERT_EQ(killed.exit_code, 128 + SIGKILL) << killed.err;
  // An IDX file of `sizes` filled with `value`; a raw file is read before the .gz beside it.
  const auto idx = [](uint32_t magic, const std::vector<uint32_t>& sizes, char value) {
    std::string out;
    size_t count = 1;
    std::vector<uint32_t> words{magic};
    words.insert(words.end(), sizes.begin(), sizes.end());
    for (const uint32_t v : words)
      for (int b = 3; b >= 0; --b) out += static_cast<char>((v >> (8 * b)) & 0xFF);
    for (const uint32_t v : sizes) count *= v;
    return out + std::string(count, value);
  };
  const auto write = [](const fs::path& path, const std::string& bytes) {
    std::ofstream(path, std::ios::binary) << bytes;
  };
  const std::string refused = "cnn: --data " + data.string() + ": not the data the run of " + ckpt +
                              " started with: it had 2000 training and 1000 test images";
  write(data / "train-labels-idx1-ubyte", idx(0x801, {2000}, 3));
  CliRun run = cnn("train --resume " + ckpt);
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_EQ(run.err.rfind(refused, 0), 0u) << run.err;
  EXPECT_NE(run.err.find("), this has 2000 and 1000 (hash "), std::string::npos) << run.err;
  EXPECT_EQ(std::count(run.err.begin(), run.err.end(), '\n'), 1) << run.err;
  write(data / "train-images-idx3-ubyte", idx(0x803, {500, 28, 28}, 0));
  write(data / "train-labels-idx1-ubyte", idx(0x801, {500}, 1));
  run = cnn("train --resume " + ckpt);
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_EQ(run.err.rfind(refused, 0), 0u) << run.err;
  EXPECT_NE(run.err.find("), this has 500 and 1000 (hash "), std::string::npos) << run.err;
  // Its own data again: the run goes on.
  fs::remove(data / "train-images-idx3-ubyte");
  fs::remove(data / "train-labels-idx1-ubyte");
  run = cnn("train --resume " + ckpt);
  EXPECT_EQ(run.exit_code, 0) << run.err;
}

// The flags of a resumed run are checked against the checkpoint's recipe, not a fresh run's
// defaults (found 2026-12-06): a 25-epoch run refused its own --step-epochs 24 ("from 1 to 20",
// the default epochs), an adam run took --momentum, and --epochs shorter than the warm-up failed
// after the data had loaded, in steps.
TEST(Checkpoint, ResumeChecksFlagsAgainstTheRunsOwnRecipe) {
  const fs::path spec = fresh_linear_spec("recipe"), dir = spec.parent_path();
  const std::string out = (dir / "m.safetensors").string(), ckpt = (dir / "m.ckpt").string();
  const std::string recipe = "--model " + spec.string() +
                             " --data sample --threads 1 --batch 2000 --epochs 25 --optimizer "
                             "adam --schedule step --step-epochs 24 --warmup-epochs 20";
  const CliRun killed =
      cnn("train " + recipe + " --out " + out, {"CNN_FAULT_KILL_AFTER_CHECKPOINT=1"});
  ASSERT_EQ(killed.exit_code, 128 + SIGKILL) << killed.err;
  expect_resume_refused(
      ckpt, {{"--momentum 0.9", "--momentum applies to --optimizer sgd, not adam"},
             {"--crop-padding 3", "--crop-padding applies to --augment crop-flip, not none"},
             {"--epochs 20", "--epochs is 20, the run warms up over 20 epochs"},
             {"--epochs 21", "--epochs is 21, the run steps every 24 epochs"},
             {"--step-epochs 3", "--step-epochs is 3, the checkpoint's run has 24"}});
  // The run's own values are no change.
  const CliRun resumed =
      cnn("train --resume " + ckpt + " --optimizer adam --step-epochs 24 --warmup-epochs 20");
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  EXPECT_TRUE(fs::exists(out));
}

// Found 2026-12-06: a onecycle run resumed with an --epochs that leaves it fewer steps than its
// rise needs (here 3 of one step each: it needs 4) printed its resuming and training lines and
// then failed, advising "more epochs, or a smaller batch", which a resume refuses. It is
// refused once the data are read, before any of that, naming --epochs and the fewest it takes.
TEST(Checkpoint, AOneCycleRunShortenedBelowItsStepsIsRefusedBeforeTraining) {
  const fs::path spec = fresh_linear_spec("onecycle"), dir = spec.parent_path();
  const std::string out = (dir / "m.safetensors").string(), ckpt = (dir / "m.ckpt").string();
  const CliRun killed = cnn("train --model " + spec.string() +
                                " --data sample --threads 1 --batch 2000 --epochs 4 --schedule "
                                "onecycle --out " +
                                out,
                            {"CNN_FAULT_KILL_AFTER_CHECKPOINT=2"});
  ASSERT_EQ(killed.exit_code, 128 + SIGKILL) << killed.err;
  const fs::path out_file = dir / "stdout.txt", err_file = dir / "stderr.txt";
  const CliRun shortened = testing::finish_process(
      testing::spawn_process(CNN_CLI,
                             testing::split_words("train --resume " + ckpt + " --epochs 3"), {},
                             out_file.string(), err_file.string()),
      out_file.string(), err_file.string());
  EXPECT_EQ(shortened.exit_code, 1);
  EXPECT_EQ(shortened.err,
            "cnn: train: --epochs is 3, which gives the run's onecycle schedule 3 steps (1 per "
            "epoch: its batch of 2000 over 2000 training images), fewer than it needs; expected "
            "--epochs 4 or more (a resumed run keeps its batch)\n");
  EXPECT_EQ(shortened.out, "");  // no "resuming from" or "training" line
  EXPECT_EQ(load_checkpoint(ckpt).state.epoch, 3);
  // The run's own length, or a longer one, goes on.
  const CliRun resumed = cnn("train --resume " + ckpt + " --epochs 5");
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  EXPECT_TRUE(fs::exists(out));
}

// Found 2026-12-08 (a probe): a step schedule resumed with an --epochs whose decays take the
// rate to 0 in float was refused as "fewer [steps] than it needs", the opposite of the reason,
// which a fresh run gives. The refusal now carries that reason and the most epochs that hold.
TEST(Checkpoint, AStepRunExtendedPastItsLastRateIsRefusedWithItsReason) {
  const fs::path spec = fresh_linear_spec("step_extended"), dir = spec.parent_path();
  const std::string ckpt = (dir / "m.ckpt").string();
  const CliRun run = cnn("train --model " + spec.string() +
                         " --data sample --threads 1 --batch 500 --epochs 3 --schedule step "
                         "--step-epochs 1 --out " +
                         (dir / "m.safetensors").string());
  ASSERT_EQ(run.exit_code, 0) << run.err;
  const CliRun extended = cnn("train --resume " + ckpt + " --epochs 60");
  EXPECT_EQ(extended.exit_code, 1);
  EXPECT_EQ(extended.err,
            "cnn: train: --epochs is 60: learning-rate schedule: the step schedule's last rate lr "
            "x gamma^59 = 0.05 x 0.1^59 is 5e-61, 0 as a float (the optimizers' type; expected a "
            "rate above 0: fewer decays: a longer step size, fewer steps or a gamma nearer 1); "
            "expected --epochs 44 or fewer (a resumed run keeps its batch and schedule "
            "settings)\n");
  // The most it names goes on.
  const CliRun resumed = cnn("train --resume " + ckpt + " --epochs 44");
  EXPECT_EQ(resumed.exit_code, 0) << resumed.err;
}

/// `cnn <args>` run from directory `dir` (with `env` added), as a shell would from there.
CliRun cnn_in(const fs::path& dir, const std::string& args,
              const std::vector<std::string>& env = {}) {
  const fs::path err = work_dir() / "stderr_in.txt";
  return finish(testing::spawn_process("/bin/sh",
                                       {"-c", "cd '" + dir.string() + "' && exec " +
                                                  std::string(CNN_CLI) + " " + args},
                                       env, "/dev/null", err.string()),
                err);
}

// Found 2026-12-06: a relative --out was stored as typed, so `cd other && cnn train --resume
// ../run/m.ckpt` wrote other/run/m.safetensors and took other/run/m.lock, past the lock of the
// run still writing run/m.ckpt (whose temporary file it then removed). A resumed run also fell
// back to a checkpoint per epoch, dropping its --checkpoint-every.
TEST(Checkpoint, AResumeFromAnotherDirectoryWritesWhereTheRunStarted) {
  const fs::path dir = work_dir() / "elsewhere";
  fs::remove_all(dir);
  fs::create_directories(dir / "reference");
  fs::create_directories(dir / "start" / "other");
  const std::string flags = kLenet + " --out run/m.safetensors";
  ASSERT_EQ(cnn_in(dir / "reference", "train " + flags).exit_code, 0);
  const std::string reference = read_bytes(dir / "reference" / "run" / "m.safetensors");
  const CliRun killed = cnn_in(dir / "start", "train " + flags + " --checkpoint-every 0",
                               {"CNN_FAULT_KILL_AFTER_CHECKPOINT=10"});
  ASSERT_EQ(killed.exit_code, 128 + SIGKILL) << killed.err;
  // Resumed from other/: its second checkpoint comes a step later (--checkpoint-every 0 kept).
  const CliRun again = cnn_in(dir / "start" / "other", "train --resume ../run/m.ckpt",
                              {"CNN_FAULT_KILL_AFTER_CHECKPOINT=2"});
  ASSERT_EQ(again.exit_code, 128 + SIGKILL) << again.err;
  EXPECT_EQ(load_checkpoint((dir / "start" / "run" / "m.ckpt").string()).state.step, 12);
  const CliRun resumed = cnn_in(dir / "start" / "other", "train --resume ../run/m.ckpt");
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  EXPECT_TRUE(read_bytes(dir / "start" / "run" / "m.safetensors") == reference);
  EXPECT_FALSE(fs::exists(dir / "start" / "other" / "run"));
}

// Found 2026-12-06 (a helper's probe): a checkpoint copied to exp/ resumed into the run's
// stored --out, run/m.safetensors, over the model a later run had left there; a copy renamed
// run/m-e.ckpt did the same. A resumed run writes next to the checkpoint it continues.
TEST(Checkpoint, ACopiedCheckpointResumesNextToItselfNotOverTheRunItCameFrom) {
  const fs::path dir = work_dir() / "copied";
  fs::remove_all(dir);
  const Reference ref = reference_run(kLenet, "copied_reference");
  const std::string out = (dir / "run" / "m.safetensors").string();
  const CliRun killed = cnn("train " + kLenet + " --checkpoint-every 0 --out " + out,
                            {"CNN_FAULT_KILL_AFTER_CHECKPOINT=10"});
  ASSERT_EQ(killed.exit_code, 128 + SIGKILL) << killed.err;
  fs::create_directories(dir / "exp");
  fs::copy_file(dir / "run" / "m.ckpt", dir / "exp" / "m.ckpt");
  fs::copy_file(dir / "run" / "m.ckpt", dir / "run" / "m-e.ckpt");
  std::ofstream(out, std::ios::binary) << "a later run's model";
  const std::string copy = (dir / "exp" / "m.ckpt").string();
  const CliRun elsewhere = cnn("train --resume " + copy + " --out " + out);
  EXPECT_EQ(elsewhere.exit_code, 1) << elsewhere.err;
  EXPECT_NE(elsewhere.err.find("--out is " + out +
                               ", but a resumed run writes next to the checkpoint it continues: " +
                               (dir / "exp" / "m.safetensors").string()),
            std::string::npos)
      << elsewhere.err;
  const CliRun resumed = cnn("train --resume " + copy);
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  EXPECT_TRUE(read_bytes(dir / "exp" / "m.safetensors") == ref.model);
  EXPECT_EQ(metrics_without_seconds(dir / "exp" / "m.csv"), ref.metrics);
  // Through a link, the file it names is the checkpoint: the run it continues is that one's.
  fs::create_symlink("exp/m.ckpt", dir / "latest.ckpt");
  const CliRun linked = cnn("train --resume " + (dir / "latest.ckpt").string() + " --epochs 3");
  ASSERT_EQ(linked.exit_code, 0) << linked.err;
  const std::string extended = read_bytes(dir / "exp" / "m.csv");
  EXPECT_EQ(std::count(extended.begin(), extended.end(), '\n'), 4) << extended;  // 3 epochs
  EXPECT_FALSE(fs::exists(dir / "latest.safetensors"));
  const CliRun renamed = cnn("train --resume " + (dir / "run" / "m-e.ckpt").string());
  ASSERT_EQ(renamed.exit_code, 0) << renamed.err;
  EXPECT_TRUE(read_bytes(dir / "run" / "m-e.safetensors") == ref.model);
  EXPECT_EQ(read_bytes(out), "a later run's model");
}

// Found 2026-12-06: a SIGTERM while the final files were written (the handlers were already
// gone) or while the run was being set up ended it with no word.
TEST(Checkpoint, SignalsWhileSettingUpOrWritingTheFilesAreOneLine) {
  const fs::path dir = work_dir() / "late_signal";
  fs::remove_all(dir);
  const std::string out = (dir / "m.safetensors").string();
  const Reference ref = reference_run(kLenet, "late_signal_reference");
  const CliRun writing = cnn("train " + kLenet + " --out " + out,
                             {"CNN_FAULT_SIGNAL_IN_FILES=" + std::to_string(SIGTERM)});
  EXPECT_EQ(writing.exit_code, 0) << writing.err;
  EXPECT_EQ(writing.err, "cnn: SIGTERM came as the run's files were written; they are complete\n");
  EXPECT_TRUE(read_bytes(out) == ref.model);
  EXPECT_EQ(metrics_without_seconds(dir / "m.csv"), ref.metrics);
  EXPECT_TRUE(fs::exists(dir / "m.svg"));
  const CliRun setup = cnn("train " + kLenet + " --out " + (dir / "n.safetensors").string(),
                           {"CNN_FAULT_SIGNAL_IN_SETUP=" + std::to_string(SIGTERM)});
  EXPECT_EQ(setup.exit_code, 128 + SIGTERM);
  EXPECT_EQ(setup.err,
            "cnn: stopped by SIGTERM while setting up the run, before its first step: nothing "
            "was trained\n");
  // That signal came at the end of set-up, the lock taken: it is removed (found 2026-12-07).
  EXPECT_FALSE(fs::exists(dir / "n.lock"));
  // So is a signal at the process's start, before anything else (the handler came later).
  const CliRun start = cnn("train " + kLenet + " --out " + (dir / "n.safetensors").string(),
                           {"CNN_FAULT_SIGNAL_AT_START=" + std::to_string(SIGUSR1)});
  EXPECT_EQ(start.exit_code, 128 + SIGUSR1);
  EXPECT_EQ(start.err,
            "cnn: stopped by SIGUSR1 while setting up the run, before its first step: nothing "
            "was trained\n");
  // And one once the files are written, before the lock is released: the default action ended
  // the process there and left the lock.
  fs::remove_all(dir);
  const CliRun after = cnn("train " + kLenet + " --out " + out,
                           {"CNN_FAULT_SIGNAL_AFTER_FILES=" + std::to_string(SIGTERM)});
  EXPECT_EQ(after.exit_code, 0) << after.err;
  EXPECT_EQ(after.err, "cnn: SIGTERM came as the run's files were written; they are complete\n");
  EXPECT_TRUE(read_bytes(out) == ref.model);
  EXPECT_FALSE(fs::exists(dir / "m.lock"));
}

// Two runs with one --out (two experiments left at a preset's default --out): the second is
// refused while the first runs, so it cannot overwrite the first's checkpoint (which a resume
// would then continue as the other run) nor remove its temporary files at start. The lock is
// the kernel's (flock on OUT.lock), so a run killed by SIGKILL leaves no lock that holds.
TEST(Checkpoint, ASecondRunWithTheSameOutIsRefusedWhileTheFirstRuns) {
  const fs::path dir = work_dir() / "locked";
  fs::remove_all(dir);
  fs::create_directories(dir);
  const std::string out = (dir / "m.safetensors").string();
  const fs::path lock = dir / "m.lock", err = dir / "first.txt";
  const pid_t first = spawn("train " + kLenetBase + " --epochs 1000 --out " + out, {}, err);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  // The first run's pid in its lock file, and its first checkpoint, mean it is under way.
  while ((read_bytes(lock) != std::to_string(first) || !fs::exists(dir / "m.ckpt")) &&
         std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  if (read_bytes(lock) != std::to_string(first)) {
    ::kill(first, SIGKILL);  // not left training for its 1000 epochs
    finish(first, err);
    FAIL() << "no lock file " << lock << " naming the first run: " << read_bytes(err);
  }
  const std::string holder = "another cnn train (pid " + std::to_string(first) +
                             ") is writing this run's files (" + lock.string() + " is locked)";
  for (const std::string& second :
       {"train " + kLenet + " --out " + out, "train --resume " + (dir / "m.ckpt").string()}) {
    SCOPED_TRACE(second);
    const CliRun refused = cnn(second);
    EXPECT_EQ(refused.exit_code, 1) << refused.err;
    EXPECT_EQ(std::count(refused.err.begin(), refused.err.end(), '\n'), 1) << refused.err;
    EXPECT_NE(refused.err.find(holder), std::string::npos) << refused.err;
  }
  ::kill(first, SIGKILL);
  EXPECT_EQ(finish(first, err).exit_code, 128 + SIGKILL);
  EXPECT_TRUE(fs::exists(lock));  // the file stays; its lock went with the process
  const CliRun after = cnn("train " + kLenet + " --out " + out);
  ASSERT_EQ(after.exit_code, 0) << after.err;
  EXPECT_FALSE(fs::exists(lock)) << "a run that ends removes its lock file";
  EXPECT_EQ(temporaries(dir), std::vector<std::string>{});
}

TEST(Checkpoint, MetadataNestedTooDeepIsOneLineNotACrash) {
  const fs::path dir = work_dir() / "deep";
  fs::remove_all(dir);
  const std::string out = (dir / "m.safetensors").string(), ckpt = (dir / "m.ckpt").string();
  ASSERT_EQ(cnn("train --data sample --epochs 1 --threads 1 --out " + out).exit_code, 0);
  const SafeTensorsFile file = SafeTensorsFile::load(ckpt);
  const std::string deep = std::string(100000, '[') + std::string(100000, ']');
  for (const auto& [key, fragment] : std::vector<std::pair<std::string, std::string>>{
           {"state", "not JSON: arrays and objects nested deeper than 256 levels"},
           {"config", "the checkpoint's training configuration is unreadable"}}) {
    SCOPED_TRACE(key);
    const std::string bad = (dir / ("bad_" + key + ".ckpt")).string();
    // Without the checksum (which refuses any edit): the parser itself must hold.
    std::map<std::string, std::string> metadata = file.metadata();
    metadata[key] = deep;
    metadata.erase("checksum");
    testing::save_with_all_metadata(file, metadata, bad);
    const CliRun run = cnn("train --resume " + bad);
    EXPECT_EQ(run.exit_code, 1) << run.err;
    EXPECT_EQ(run.err.rfind("cnn: " + bad + ": ", 0), 0u) << run.err;
    EXPECT_NE(run.err.find(fragment), std::string::npos) << run.err;
    EXPECT_EQ(std::count(run.err.begin(), run.err.end(), '\n'), 1) << run.err;
  }
}

// A history row is its epoch's and its metrics lie in their ranges (found 2026-12-07, a
// helper's probe: an edited checkpoint whose first row said epoch 99, or a train accuracy of
// 1024, resumed and wrote them into the run's CSV as they were, exit 0).
TEST(Checkpoint, AHistoryRowOfAnotherEpochOrOutOfRangeIsRefused) {
  const fs::path dir = work_dir() / "history";
  fs::remove_all(dir);
  const std::string out = (dir / "m.safetensors").string(), ckpt = (dir / "m.ckpt").string();
  ASSERT_EQ(cnn("train --data sample --epochs 2 --threads 1 --out " + out).exit_code, 0);
  const SafeTensorsFile file = SafeTensorsFile::load(ckpt);
  for (const auto& [column, value, fragment] : std::vector<std::tuple<int, Json, std::string>>{
           {0, 99, "a 'history' row's epoch is 99, expected 1"},
           {0, (int64_t{1} << 32) + 1, "a 'history' row's epoch is 4294967297, expected 1"},
           {2, "0x1p+10",
            "'history' epoch 1's train_accuracy is 1024, expected a number from 0 to 1"},
           {3, "-0x1p+0", "'history' epoch 1's test_loss is -1, expected a number >= 0"},
           {5, "-0x1p+0", "'history' epoch 1's seconds is -1, expected a number >= 0"}}) {
    SCOPED_TRACE(value.dump());
    Json state = Json::parse(file.metadata().at("state"));
    state["history"][0][column] = value;
    std::map<std::string, std::string> metadata = file.metadata();
    metadata["state"] = state.dump();
    metadata.erase("checksum");  // which refuses any edit
    const std::string bad = (dir / "bad.ckpt").string();
    testing::save_with_all_metadata(file, metadata, bad);
    try {
      load_checkpoint(bad);
      ADD_FAILURE() << "loaded";
    } catch (const Error& e) {
      EXPECT_EQ(std::string(e.what()), bad + ": checkpoint state: " + fragment);
    }
  }
}

/// Runs `cnn <args>` to its end: its exit code and its peak resident memory in KiB.
std::pair<int, long> cnn_peak_kib(const std::string& args) {
  const fs::path err = work_dir() / "stderr.txt";
  const pid_t pid = spawn(args, {}, err);
  int status = 0;
  rusage usage{};
  if (::wait4(pid, &status, 0, &usage) != pid) return {-1, 0};
  return {WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status), usage.ru_maxrss};
}

/// Peak resident memory (KiB) of three runs of a wide model (6,360,010 parameters, P = 24,844
/// KiB as floats) on the sample data, each writing its checkpoint: SGD without momentum (no
/// optimizer state: the baseline of model, gradients and data), a fresh Adam run, and that run
/// resumed for one more epoch.
struct WidePeaks {
  long sgd_kib = 0, fresh_kib = 0, resumed_kib = 0;
  std::string error;  // the failing run's stderr, if one failed
  static constexpr long kParameterKib = 6360010L * 4 / 1024;
  /// The most an Adam run may peak at: the run without optimizer state, its two moments, and
  /// P / 2 to spare (a copy of the moments would take 2P more).
  long adam_bound_kib() const { return sgd_kib + 2 * kParameterKib + kParameterKib / 2; }
};

WidePeaks measure_wide_peaks() {
  WidePeaks p;
  const fs::path dir = work_dir() / "resume_peak";
  fs::create_directories(dir);
  const fs::path spec = dir / "wide.json";
  std::ofstream(spec) << R"({"name": "wide", "input": [1, 28, 28], "layers": [
      {"type": "Flatten"}, {"type": "Linear", "out_features": 8000}, {"type": "ReLU"},
      {"type": "Linear", "out_features": 10}]})";
  const std::string fresh = "train --model " + spec.string() + " " + kLenetBase + " --epochs 1";
  const auto run = [&](const std::string& args, long& kib) {
    const auto [code, peak] = cnn_peak_kib(args);
    kib = peak;
    if (code != 0 && p.error.empty()) p.error = args + ": " + read_bytes(work_dir() / "stderr.txt");
  };
  run(fresh + " --optimizer sgd --momentum 0 --out " + (dir / "sgd.safetensors").string(),
      p.sgd_kib);
  run(fresh + " --optimizer adam --out " + (dir / "m.safetensors").string(), p.fresh_kib);
  run("train --resume " + (dir / "m.ckpt").string() + " --epochs 2", p.resumed_kib);
  return p;
}

// One test for both findings below, so that ctest, which runs each test in a process of its
// own, trains the three runs once (two tests sharing them had each trained them).
//
// Found 2026-12-07: every checkpoint copied the optimizer's moments into the state it hands the
// writer, so a fresh Adam run peaked at its model, gradients and moments plus a second copy
// of the moments (997 MB against 640 for 40M parameters; here sgd + 4P). The moments are now
// moved out of the optimizer for the write and back: a fresh Adam run peaks within P / 2 of
// the run without optimizer state plus its two moments (measured: +2P and 0.1 MB).
//
// Found 2026-12-07: `cnn train --resume` kept the checkpoint it loaded (its optimizer state)
// for the whole run and train_model copied it, so a resumed run of an Adam model held the
// moments once more than a fresh run (1.93 GB against 1.62 for 40M parameters). The CLI hands
// the state over (TrainControl::resume_taken), and the optimizer, which allocates its moments
// only at its first step or state access, adopts the loaded ones (before, it had allocated its
// own and the loaded ones were copied in: 6P floats at that moment). A resumed run peaks
// within 20 MB of the fresh run that wrote its checkpoint, and within P / 2 of the run without
// optimizer state plus the two moments.
TEST(Checkpoint, FreshAndResumedRunsHoldTheOptimizerStateOnce) {
#if defined(__SANITIZE_ADDRESS__)
  // ASan's quarantine keeps freed memory resident: the loaded moments, freed once in the
  // optimizer, still counted (298 MB resumed against 240 MB fresh, 2026-12-07).
  GTEST_SKIP() << "AddressSanitizer keeps freed memory resident";
#endif
  const WidePeaks p = measure_wide_peaks();
  ASSERT_EQ(p.error, "");
  EXPECT_LE(p.fresh_kib, p.adam_bound_kib())
      << "fresh run; SGD without momentum " << p.sgd_kib << " KiB, parameters "
      << WidePeaks::kParameterKib << " KiB";
  EXPECT_LE(p.resumed_kib, p.fresh_kib + 20 * 1024) << "fresh " << p.fresh_kib << " KiB";
  EXPECT_LE(p.resumed_kib, p.adam_bound_kib())
      << "resumed run; SGD without momentum " << p.sgd_kib << " KiB, parameters "
      << WidePeaks::kParameterKib << " KiB";
}
}  // namespace
}  // namespace cnn

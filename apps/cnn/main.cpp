// cnn: train, evaluate, run and describe convolutional networks from the command line.
// A thin layer over the library: argument parsing, progress display and output files. Each
// command lives in its own file (train_command.cpp, commands.cpp, bench.cpp); this one
// dispatches to them and turns what they throw into one line and an exit status.

#include <cstdio>
#include <cstring>
#include <new>

#include "args.hpp"
#include "bench.hpp"
#include "cli_common.hpp"
#include "cnn/cnn.hpp"
#include "cnn/distributed.hpp"
#include "cnn/openmp_spin.hpp"

// Idle OpenMP threads spin 33-75 us before they sleep, not libgomp's 3-7 ms, so that other
// processes on the cores do not stall training (cnn/openmp_spin.hpp).
CNN_SHORT_OPENMP_SPIN();

namespace cnn::cli {
namespace {

const char* const kMainHelp =
    "usage: cnn <command> [options]\n"
    "\n"
    "commands:\n"
    "  train    train a model and write it (safetensors), its metrics (CSV) and curves (SVG)\n"
    "  eval     loss, accuracy, per-class accuracy and confusion matrix of a model file\n"
    "  predict  classify image files (PNG, JPEG, BMP, PGM, PPM) with a model file\n"
    "  info     layers, output shapes, parameters and FLOPs of a model, preset or spec\n"
    "  bench    training and inference speed, latency and per-layer timings of a model\n"
    "  convert  a model file to ONNX or an ONNX file to a model file (by the extensions)\n"
    "\n"
    "cnn <command> --help describes each command.\n"
    "\n"
    "environment:\n"
    "  CNN_ISA   avx512, avx2 or portable: the float kernels (default: the best the CPU has)\n"
    "  CNN_CONV  how convolutions are computed: auto (default), gemm, direct, winograd or\n"
    "            implicit\n"
    "  CNN_REFERENCE=1  every op runs its plain reference loops (slow; for checking; 0 off)\n"
    "  GOMP_SPINCOUNT, OMP_WAIT_POLICY  how long idle OpenMP threads spin before they sleep:\n"
    "            where neither is set, cnn restarts itself with GOMP_SPINCOUNT=3000 (33-75\n"
    "            us on the CPUs measured) before OpenMP starts; libgomp's default, 300,000,\n"
    "            stalls training when other processes keep the cores busy\n";

int run(int argc, char** argv, Communicator* ranks) {
  if (argc < 2 || std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h") {
    std::fputs(kMainHelp, argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  const std::string command = argv[1];
  if (command == "train") return train_command(argc, argv, ranks);
  if (command == "eval") {
    return eval_command(
        Args("eval", argc, argv, 2, {"--data", "--model", "--batch"}, {"--json", "--logits"}));
  }
  if (command == "predict") {
    return predict_command(
        Args("predict", argc, argv, 2, {"--top", "--model"}, {"--json", "--invert"}));
  }
  if (command == "info") return info_command(Args("info", argc, argv, 2, {}, {"--json"}));
  if (command == "convert") {
    return convert_command(
        Args("convert", argc, argv, 2, {"--opset", "--model"}, {"--fold-batchnorm"}));
  }
  if (command == "bench") {
    try {
      return bench_command(
          Args("bench", argc, argv, 2, {"--model", "--batch", "--threads", "--repeat"},
               {"--json", "--allreduce"}),
          ranks);
    } catch (const RanksError&) {
      throw;
    } catch (const Error& e) {
      // A benchmark's errors are its flags' (the same on every rank): one report.
      if (ranks != nullptr) throw RanksError(e.what());
      throw;
    }
  }
  throw Error("unknown command '" + command +
              "' (expected train, eval, predict, info, bench or convert; see cnn --help)");
}

}  // namespace
}  // namespace cnn::cli

/// `code`, or 1 when what the command wrote to standard output did not all get there (a full
/// disk behind `> file`, /dev/full): found 2026-12-06, `cnn eval --json > full/eval.json` cut
/// the JSON at the disk's end and exited 0.
int with_stdout_checked(int code) {
  errno = 0;
  if (std::fflush(stdout) == 0 && !std::ferror(stdout)) return code;
  const int error = errno;
  cnn::cli::print_error(std::string("standard output: ") +
                        (error != 0 ? std::strerror(error) : "write error") +
                        " (what the command printed is incomplete)");
  return code == 0 ? 1 : code;
}

int main(int argc, char** argv) {
  // Under mpirun, train and bench run as ranks of one data-parallel job (docs/distributed.md).
  std::unique_ptr<cnn::Communicator> ranks;
  try {
    const std::string command = argc > 1 ? argv[1] : "";
    const bool under_mpirun = cnn::launched_by_mpirun();
    // Before MPI starts and the run is set up: a signal from then on has a handler.
    if (command == "train") cnn::cli::install_train_setup_handlers(under_mpirun);
    if ((command == "train" || command == "bench") && under_mpirun) {
      ranks = cnn::start_mpi();
      // Rank 0 speaks for the job; the others' standard output goes nowhere.
      if (ranks->rank() != 0 && std::freopen("/dev/null", "w", stdout) == nullptr) return 1;
    }
  } catch (const cnn::Error& e) {
    cnn::cli::print_error(e.what());
    return 1;
  }
  try {
    // Bad CNN_ISA, CNN_CONV or CNN_REFERENCE values are refused before any work starts.
    cnn::ops::isa();
    cnn::ops::conv_algorithm();
    cnn::ops::reference_mode();
    return with_stdout_checked(cnn::cli::run(argc, argv, ranks.get()));
  } catch (const cnn::cli::QuietExit& e) {
    return with_stdout_checked(e.code);
  } catch (const cnn::RanksError& e) {
    // Every rank raised it alike: rank 0 reports it, all end normally.
    if (ranks == nullptr || ranks->rank() == 0) cnn::cli::print_error(e.what());
    return 1;
  } catch (const std::exception& e) {
    // Outside the batch loops (which name the batch) memory is still named, not "std::bad_alloc".
    const char* what =
        dynamic_cast<const std::bad_alloc*>(&e) ? "out of memory (std::bad_alloc)" : e.what();
    if (ranks == nullptr) {
      cnn::cli::print_error(what);
      return 1;
    }
    // Only this rank knows: the others would wait for it forever.
    cnn::cli::print_error("rank " + std::to_string(ranks->rank()) + " of " +
                          std::to_string(ranks->size()) + ": " + what);
    std::fflush(stderr);
    ranks->abort(1);
  }
}

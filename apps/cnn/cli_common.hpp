#pragma once
// What the `cnn` commands share: error and number formatting, the dataset a model is trained
// or evaluated on, file names next to a model, and each command's entry point (main.cpp
// dispatches; bench.hpp declares `cnn bench`'s).

#include <cstdint>
#include <string>

#include "args.hpp"
#include "cnn/data.hpp"
#include "cnn/distributed.hpp"
#include "cnn/spec.hpp"

namespace cnn::cli {

constexpr const char* kDefaultPreset = "lenet5";
constexpr int kDefaultEpochs = 20;

/// Writes "cnn: <message>" as one line on stderr. Control characters (a newline or a terminal
/// escape in a file name, or in a node name read from an ONNX file) are written as \n, \x1b
/// and so on, so that they can neither split the line nor drive the terminal.
void print_error(const std::string& message);

/// Ends every rank with `code` when thrown (its message printed already).
struct QuietExit {
  int code;
};

bool stdout_is_terminal();
/// The bundled Fashion-MNIST sample (data/fashion-mnist-sample in the source tree).
std::string sample_dir();
/// 1234567 -> "1,234,567".
std::string with_commas(int64_t value);
/// A FLOP count with thousands separators, or in scientific notation past 10^18.
std::string flops_text(double flops);
/// A loss as the text lines print it: 4 decimals, or 5 significant digits past 1e9 (a loss
/// above float's largest value is reported at its true size, which %.4f printed as 39 digits).
std::string loss_text(double loss);
/// Seconds as "m:ss".
std::string format_duration(double seconds);
/// The dataset, restricted to the spec's classes, with a check that the images fit the model.
/// With `test_only` (eval), the test split alone is read.
DataSplit data_for(const ModelSpec& spec, const std::string& which, bool test_only = false);
/// "lenet5.safetensors" -> "lenet5" + suffix, next to the model.
std::string sibling(const std::string& model_path, const std::string& extension);
/// "93.23% (9323/10000)".
std::string accuracy_text(double accuracy, int64_t samples);
/// Whether writing `a` and writing `b` would write one file: where both are there, the same
/// file (fs::equivalent: through links or hard links); where neither is, the same path once
/// the links are followed (write_destination: a dangling link names its target).
bool same_file(const std::string& a, const std::string& b);

/// `cnn train`'s set-up handlers, installed first thing in main (train_command.cpp says which).
void install_train_setup_handlers(bool under_mpirun);
/// The commands: each parses its own flags (train) or takes them parsed, and returns the exit
/// status; errors are thrown as cnn::Error (one line), QuietExit or RanksError.
int train_command(int argc, char** argv, Communicator* ranks);
int eval_command(const Args& args);
int predict_command(const Args& args);
int info_command(const Args& args);
int convert_command(const Args& args);

}  // namespace cnn::cli

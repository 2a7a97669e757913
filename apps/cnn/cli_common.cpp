// What the `cnn` commands share; cli_common.hpp describes each function.

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>

#include "args.hpp"
#include "cli_common.hpp"
#include "cnn/cnn.hpp"
#include "cnn/fileio.hpp"
#include "cnn/model_file.hpp"
#include "cnn/spec.hpp"
#include "print_json.hpp"

namespace cnn::cli {

namespace fs = std::filesystem;

void print_error(const std::string& message) {
  const std::string line = "cnn: " + terminal_text(message) + "\n";
  std::fputs(line.c_str(), stderr);
}

bool stdout_is_terminal() {
  return ::isatty(STDOUT_FILENO) == 1;
}

std::string sample_dir() {
  return CNN_SAMPLE_DIR;
}

std::string with_commas(int64_t value) {
  // Built front to back (not with insert), which also sidesteps a g++ 12 -Wrestrict false alarm.
  const std::string digits = std::to_string(value);
  std::string out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0 && digits[i - 1] != '-') out += ',';
    out += digits[i];
  }
  return out;
}

std::string flops_text(double flops) {
  if (flops < 1e18) return with_commas(static_cast<int64_t>(flops));
  char text[32];
  std::snprintf(text, sizeof text, "%.3e", flops);
  return text;
}

std::string loss_text(double loss) {
  char text[64];
  std::snprintf(text, sizeof text, std::fabs(loss) < 1e9 ? "%.4f" : "%.4e", loss);
  return text;
}

std::string format_duration(double seconds) {
  const long s = std::lround(std::max(0.0, seconds));
  char text[32];
  std::snprintf(text, sizeof text, "%ld:%02ld", s / 60, s % 60);
  return text;
}

namespace {
/// Whether `names` are a dataset's own label indices ("0", "1", ...): the names of a dataset
/// without class names, which counts its classes to its largest label.
bool names_are_indices(const std::vector<std::string>& names) {
  for (size_t i = 0; i < names.size(); ++i)
    if (names[i] != std::to_string(i)) return false;
  return true;
}
}  // namespace

DataSplit data_for(const ModelSpec& spec, const std::string& which, bool test_only) {
  std::string notice;
  DataSplit data = load_dataset(which, sample_dir(), &notice, test_only, "--data");
  if (!notice.empty()) std::printf("cnn: %s\n", terminal_text(notice).c_str());
  const ImageSet& images = test_only ? data.test.images : data.train.images;
  if (Shape{images.channels, images.rows, images.cols} != spec.input) {
    throw Error(data.description + ": images are " +
                Shape{images.channels, images.rows, images.cols}.str() + " but model " + spec.name +
                " expects " + spec.input.str());
  }
  if (!spec.classes.empty()) {
    // A dataset without class names counts its classes to its largest label, and the test set
    // alone (eval) may not reach a class the model was trained on: that class has no test
    // image, as when the training set was read too (found 2026-12-08, a probe: eval refused
    // the data train had accepted, "the dataset has 3").
    const bool unnamed = names_are_indices(data.class_names);
    std::vector<std::string> names;
    for (int c : spec.classes) {
      if (c < static_cast<int>(data.class_names.size())) {
        names.push_back(data.class_names[static_cast<size_t>(c)]);
      } else if (test_only && unnamed) {
        names.push_back(std::to_string(c));
      } else {
        throw Error(data.description + ": model " + spec.name + " uses class " + std::to_string(c) +
                    " but the dataset has " + std::to_string(data.class_names.size()));
      }
    }
    if (!test_only) data.train = select_classes(data.train, spec.classes);
    data.test = select_classes(data.test, spec.classes);
    // Named here, before any line of training (found 2026-12-08, a probe: "train_model:
    // expected at least one sample in the test set, got none", after the run's first line).
    std::string listed;
    for (int c : spec.classes) listed += (listed.empty() ? "" : ", ") + std::to_string(c);
    for (const auto& [set, which] : {std::pair{&data.train, "training"}, {&data.test, "test"}}) {
      if ((!test_only || set == &data.test) && set->size() == 0) {
        throw Error(data.description + ": no " + which + " image has one of the classes [" +
                    listed + "] that model " + spec.name + " uses (expected at least one)");
      }
    }
    data.class_names = names;
  }
  const int64_t classes = output_classes(spec);
  if (static_cast<int64_t>(data.class_names.size()) > classes) {
    // A dataset without names counts to its largest label: say so (a label of 255 read as
    // "256 classes").
    throw Error(data.description + ": " +
                (names_are_indices(data.class_names)
                     ? "its labels run to " + std::to_string(data.class_names.size() - 1) + " (" +
                           std::to_string(data.class_names.size()) + " classes)"
                     : std::to_string(data.class_names.size()) + " classes") +
                ", but model " + spec.name + " outputs " + std::to_string(classes));
  }
  // A name per output, as save_model asks: a dataset's names run to its largest label, which
  // may be below the model's last class; the rest are named by their index, as the data's own.
  while (static_cast<int64_t>(data.class_names.size()) < classes)
    data.class_names.push_back(std::to_string(data.class_names.size()));
  return data;
}

std::string sibling(const std::string& model_path, const std::string& extension) {
  fs::path p(model_path);
  p.replace_extension(extension);
  return p.string();
}

std::string accuracy_text(double accuracy, int64_t samples) {
  char text[64];
  std::snprintf(text, sizeof text, "%.2f%% (%lld/%lld)", 100 * accuracy,
                static_cast<long long>(std::llround(accuracy * double(samples))),
                static_cast<long long>(samples));
  return text;
}

bool same_file(const std::string& a, const std::string& b) {
  std::error_code error;
  const bool a_there = fs::exists(a, error), b_there = fs::exists(b, error);
  if (a_there && b_there) return fs::equivalent(a, b, error);
  if (a_there || b_there) return false;
  const auto destination = [](const std::string& path) {
    std::error_code unresolved;
    const fs::path resolved = fs::weakly_canonical(write_destination(path), unresolved);
    return unresolved ? fs::path(path) : resolved;
  };
  return destination(a) == destination(b);
}

}  // namespace cnn::cli

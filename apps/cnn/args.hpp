#pragma once
// A strict command-line parser: every flag is declared, values are range-checked, a flag is
// given at most once, and every mistake is one line naming the flag and what was expected.

#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "cnn/error.hpp"

namespace cnn::cli {

class Args {
 public:
  /// `value_flags`: flags that take a value; `switches`: flags without one.
  Args(const std::string& command, int argc, char** argv, int first,
       const std::vector<std::string>& value_flags, const std::vector<std::string>& switches)
      : command_(command) {
    for (int i = first; i < argc; ++i) {
      std::string arg = argv[i];
      if (arg == "--help" || arg == "-h") {
        help_ = true;
        continue;
      }
      if (arg.rfind("--", 0) != 0 || arg == "--") {
        // Every argument names a file, a preset or a format: an empty one said "cnn: : cannot
        // open a safetensors file" (found 2026-12-07, a helper's probe).
        if (arg.empty()) throw Error(command_ + ": an empty argument '' (expected a file path)");
        positional_.push_back(arg);
        continue;
      }
      std::optional<std::string> inline_value;
      if (const size_t eq = arg.find('='); eq != std::string::npos) {
        inline_value = arg.substr(eq + 1);
        arg = arg.substr(0, eq);
      }
      if (contains(switches, arg)) {
        if (inline_value) fail(arg, "takes no value, got '" + *inline_value + "'");
        if (has(arg)) fail(arg, "given twice; expected it once");
        values_.insert_or_assign(arg,
                                 std::string(1, '1'));  // not = "1": g++ 12 -Wrestrict false alarm
      } else if (contains(value_flags, arg)) {
        if (inline_value) {
          set_value(arg, *inline_value);
        } else if (i + 1 < argc) {
          // `--epochs --batch 3` would otherwise take "--batch" as the epochs and then
          // complain about a stray "3". A value that is one of this command's own flags is a
          // missing value; any other value, "-1" or "--odd-file-name" included, is taken.
          const std::string next = argv[i + 1];
          const std::string next_flag = next.substr(0, next.find('='));
          if (contains(value_flags, next_flag) || contains(switches, next_flag) ||
              next == "--help" || next == "-h") {
            fail(arg, "expects a value, got the flag " + next_flag);
          }
          set_value(arg, argv[++i]);
        } else {
          fail(arg, "expects a value");
        }
      } else {
        throw Error(command_ + ": unknown flag " + arg + " (see cnn " + command_ + " --help)");
      }
    }
  }

  bool help() const { return help_; }
  const std::vector<std::string>& positional() const { return positional_; }
  bool has(const std::string& flag) const { return values_.count(flag) != 0; }
  std::string text(const std::string& flag, const std::string& fallback) const {
    return has(flag) ? values_.at(flag) : fallback;
  }
  /// A whole number in [lo, hi], written in decimal.
  long long integer(const std::string& flag, long long fallback, long long lo, long long hi) const {
    if (!has(flag)) return fallback;
    const std::string& v = values_.at(flag);
    char* end = nullptr;
    errno = 0;
    const long long value = std::strtoll(v.c_str(), &end, 10);
    if (!plain_decimal(v) || *end != '\0' || errno != 0 || value < lo || value > hi) {
      fail(flag, "expects a whole number from " + std::to_string(lo) + " to " + std::to_string(hi) +
                     ", got '" + v + "'");
    }
    return value;
  }
  /// A finite number in [lo, hi] (lo excluded when lo_open), written in decimal, 0 or at
  /// least float's smallest normal number in size (the training runs in float).
  double number(const std::string& flag, double fallback, double lo, double hi,
                bool lo_open) const {
    if (!has(flag)) return fallback;
    const std::string& v = values_.at(flag);
    char* end = nullptr;
    const double value = std::strtod(v.c_str(), &end);
    const bool low_ok = lo_open ? value > lo : value >= lo;
    if (!plain_decimal(v) || *end != '\0' || !(low_ok && value <= hi)) {
      fail(flag, std::string("expects a number ") + (lo_open ? "above " : "from ") + trim(lo) +
                     " to " + trim(hi) + ", got '" + v + "'");
    }
    // Found 2026-12-07 (a helper's probe): --momentum 1e-320 was taken, and is 0 in float.
    if (value != 0 && std::fabs(value) < std::numeric_limits<float>::min()) {
      fail(flag, "got '" + v + "', which float, the type the model trains in, holds as 0 or " +
                     "without its precision (expected 0, or a number of at least 1.2e-38)");
    }
    return value;
  }
  [[noreturn]] void fail(const std::string& flag, const std::string& message) const {
    throw Error(command_ + ": " + flag + " " + message);
  }

 private:
  /// No flag repeats (found 2026-12-07: `train --epochs 5 --epochs 1` trained 1 epoch, the
  /// last value taken silently); none is a list that a second use would add to.
  void set_value(const std::string& flag, const std::string& value) {
    // No flag takes an empty value (`--resume ''` said "cnn: : cannot open a checkpoint").
    if (value.empty()) fail(flag, "expects a value, got ''");
    if (const auto it = values_.find(flag); it != values_.end()) {
      fail(flag, "given twice ('" + it->second + "' and '" + value + "'); expected it once");
    }
    values_.emplace(flag, value);
  }
  /// Digits, a sign, a point and an exponent only: strtod and strtoll also take leading
  /// spaces and (strtod) hexadecimal, "inf" and "nan" (found 2026-12-07, a helper's probe:
  /// --lr 0x10 trained at 16, --epochs ' 3' ran 3 epochs).
  static bool plain_decimal(const std::string& v) {
    if (v.empty()) return false;
    for (const char c : v) {
      if (!((c >= '0' && c <= '9') || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E'))
        return false;
    }
    return true;
  }
  static bool contains(const std::vector<std::string>& list, const std::string& s) {
    for (const std::string& e : list) {
      if (e == s) return true;
    }
    return false;
  }
  static std::string trim(double v) {
    std::string s = std::to_string(v);
    while (s.find('.') != std::string::npos && (s.back() == '0' || s.back() == '.')) {
      const bool dot = s.back() == '.';
      s.pop_back();
      if (dot) break;
    }
    return s;
  }
  std::string command_;
  bool help_ = false;
  std::vector<std::string> positional_;
  std::map<std::string, std::string> values_;
};

/// What an allocation that failed says: cnn::OutOfMemory names the tensor, std::bad_alloc
/// nothing.
inline std::string out_of_memory_text(const std::exception& e) {
  return dynamic_cast<const OutOfMemory*>(&e) ? e.what() : "out of memory (std::bad_alloc)";
}

/// The line for an allocation that failed while running at `batch` images, which --batch sets:
/// the batch sizes most of a run's memory (train, eval and bench say it alike).
inline std::string out_of_memory_at(const std::exception& e, int64_t batch) {
  return out_of_memory_text(e) + ", at batch " + std::to_string(batch) +
         " (a smaller --batch needs less)";
}

}  // namespace cnn::cli

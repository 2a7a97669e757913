#pragma once
// Checks shared by the optimizers' constructors and set_lr.

#include <cmath>
#include <cstdio>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "cnn/error.hpp"

namespace cnn::detail {

/// Whether the double v is finite as T, the type the update computes in: 1e39 is a finite
/// double but float's infinity, which the header's "non-finite values" covers. Compared in
/// double, since converting a double beyond T's range is undefined behaviour.
template <typename T>
bool finite_as(double v) {
  return std::isfinite(v) && std::fabs(v) <= static_cast<double>(std::numeric_limits<T>::max());
}

/// Whether v is finite and above 0 as T: 1e-50 is positive as a double, 0 as a float.
template <typename T>
bool positive_as(double v) {
  return finite_as<T>(v) && static_cast<T>(v) > T(0);
}

/// "a float" or "a double", for messages.
template <typename T>
const char* type_phrase() {
  return sizeof(T) == sizeof(float) ? "a float" : "a double";
}

/// v with 6 significant digits ("1e-50", "0.05", "nan"): std::to_string's fixed notation wrote
/// 1e-50 as "0.000000", as if the value given had been 0.
inline std::string number_text(double v) {
  char text[32];
  std::snprintf(text, sizeof text, "%g", v);
  return text;
}

/// put_state's rule: `tensors` are exactly `names`, in that order, each of n values (one per
/// parameter). Throws cnn::Error, prefixed with `who` ("Adam: "), naming the first that is not,
/// what was expected and what was given.
template <typename T>
void check_state_tensors(const std::string& who, const std::vector<std::string>& names, size_t n,
                         const std::vector<std::pair<std::string, std::vector<T>>>& tensors) {
  const auto list = [](const auto& items, const auto& name_of) {
    std::string text;
    for (const auto& item : items) text += (text.empty() ? "'" : ", '") + name_of(item) + "'";
    return text.empty() ? std::string("none") : text;
  };
  if (tensors.size() != names.size()) {
    const auto same = [](const std::string& name) { return name; };
    const auto first = [](const auto& tensor) { return tensor.first; };
    throw Error(who + "expected " + std::to_string(names.size()) + " state tensor" +
                (names.size() == 1 ? "" : "s") + " (" + list(names, same) + "), got " +
                std::to_string(tensors.size()) + " (" + list(tensors, first) + ")");
  }
  for (size_t i = 0; i < names.size(); ++i) {
    const auto& [name, values] = tensors[i];
    if (name != names[i]) {
      throw Error(who + "state tensor " + std::to_string(i) + " is '" + name + "', expected '" +
                  names[i] + "'");
    }
    if (values.size() != n) {
      throw Error(who + "state tensor '" + name + "' holds " + std::to_string(values.size()) +
                  " values, expected " + std::to_string(n) + " (one per parameter)");
    }
  }
}

/// put_state's check of a state tensor's values: each finite, and >= 0 when `nonnegative` (a
/// mean of squares). Throws cnn::Error "<who>state tensor 'NAME' holds V at index I, expected
/// ..." for the first that is not: a non-finite value made the next step's parameters NaN.
template <typename T>
void require_finite_state(const std::string& who, const std::string& name,
                          const std::vector<T>& values, bool nonnegative = false) {
  for (size_t i = 0; i < values.size(); ++i) {
    if (!std::isfinite(values[i]) || (nonnegative && values[i] < T(0))) {
      throw Error(who + "state tensor '" + name + "' holds " +
                  number_text(static_cast<double>(values[i])) + " at index " + std::to_string(i) +
                  ", expected " +
                  (nonnegative ? "a finite value >= 0 (a mean of squares)" : "a finite value"));
    }
  }
}

}  // namespace cnn::detail

#pragma once
// Checks shared by the optimizers' constructors and set_lr.

#include <cmath>
#include <cstdio>
#include <limits>
#include <string>

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

}  // namespace cnn::detail

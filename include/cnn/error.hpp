#pragma once
// The one exception type of the library.

#include <stdexcept>
#include <string>

namespace cnn {

/// Thrown for bad arguments, shapes, values and files. The message is one line that names the
/// thing (layer, loss, file or flag), what was expected and what was given.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace cnn

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

/// Thrown when memory for a tensor cannot be had; the message names what was asked for
/// ("out of memory: a tensor of shape (60000, 32, 28, 28), 6.0 GB"), so that a caller can add
/// what sized it (the command line names the batch).
class OutOfMemory : public Error {
 public:
  using Error::Error;
};

}  // namespace cnn

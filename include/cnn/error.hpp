#pragma once
// The one exception type of the library.

#include <cstdio>
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

/// An allocation's size for an OutOfMemory message, in the unit that shows it: "640 bytes"
/// below 1 MB, "51 MB" below 1 GB, else "6.0 GB" (a small tensor that failed once the address
/// space was spent read "0 MB": found 2026-12-07, a 200,000-layer spec under a 4 GB limit).
inline std::string memory_size_text(double bytes) {
  char text[32];
  if (bytes < 1e6)
    std::snprintf(text, sizeof text, "%.0f bytes", bytes);
  else if (bytes < 1e9)
    std::snprintf(text, sizeof text, "%.0f MB", bytes / 1e6);
  else
    std::snprintf(text, sizeof text, "%.1f GB", bytes / 1e9);
  return text;
}

}  // namespace cnn

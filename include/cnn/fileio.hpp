#pragma once
// Whole-file writes that never leave a half-written file behind.

#include <string>

namespace cnn {

/// Writes `bytes` to `path` atomically: a temporary file in the same directory, fsync, rename,
/// fsync of the directory. Throws cnn::Error naming the path on failure, and then leaves a file
/// that was already at `path` untouched and no temporary file behind.
void write_file_atomic(const std::string& path, const std::string& bytes);

/// Removes the temporary files write_file_atomic leaves for `path` when its process is killed
/// while writing ("<path>.tmp.XXXXXX"): for a caller that owns `path`, such as a training run
/// that resumes.
void remove_stale_temporaries(const std::string& path);

}  // namespace cnn

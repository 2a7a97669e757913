#pragma once
// What every fuzz target shares: the loaders read files, so each input is written to a file of
// this process (in /dev/shm when it exists: no disk traffic) and the loader reads it back. A
// target passes when the loader returns or throws cnn::Error; any other exception, a crash or a
// sanitizer report is a finding. The input files are removed when the target exits normally
// (libFuzzer ends with exit(0)); after a crash they stay, beside the artifact libFuzzer writes.

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <set>
#include <string>

namespace cnn::fuzz {

/// The input files this process wrote; removed at exit so that runs leave nothing in /dev/shm.
class InputFiles {
 public:
  void add(const std::string& path) { paths_.insert(path); }
  ~InputFiles() {
    for (const std::string& path : paths_) std::remove(path.c_str());
  }

 private:
  std::set<std::string> paths_;
};

/// Writes `data` to this process's input file named with `suffix`; returns its path.
inline std::string write_input(const uint8_t* data, size_t size, const std::string& suffix) {
  static const std::string dir = std::filesystem::is_directory("/dev/shm")
                                     ? "/dev/shm"
                                     : std::filesystem::temp_directory_path().string();
  static InputFiles written;
  const std::string path = dir + "/cnn_fuzz_" + std::to_string(::getpid()) + suffix;
  written.add(path);
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) __builtin_trap();
  if (size > 0 && std::fwrite(data, 1, size, f) != size) __builtin_trap();
  std::fclose(f);
  return path;
}

}  // namespace cnn::fuzz

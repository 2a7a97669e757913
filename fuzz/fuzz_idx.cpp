// Fuzz target: IDX image and label files, raw or gzipped (zlib tells which).
#include "cnn/cnn.hpp"
#include "fuzz_input.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = cnn::fuzz::write_input(data, size, ".idx");
  try {
    cnn::read_idx_images(path);
  } catch (const cnn::Error&) {
  }
  try {
    cnn::read_idx_labels(path);
  } catch (const cnn::Error&) {
  }
  return 0;
}

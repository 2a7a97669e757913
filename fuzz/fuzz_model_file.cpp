// Fuzz target: model files (safetensors container, metadata, architecture spec, tensors).
#include "cnn/cnn.hpp"
#include "fuzz_input.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = cnn::fuzz::write_input(data, size, ".safetensors");
  try {
    cnn::load_model(path);
  } catch (const cnn::Error&) {
  }
  return 0;
}

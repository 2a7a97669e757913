// Fuzz target: training checkpoints (model part, optimizer tensors, state JSON).
#include "cnn/cnn.hpp"
#include "fuzz_input.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = cnn::fuzz::write_input(data, size, ".ckpt");
  try {
    cnn::load_checkpoint(path);
  } catch (const cnn::Error&) {
  }
  return 0;
}

// Fuzz target: CIFAR-10 binary batches.
#include "cnn/cnn.hpp"
#include "fuzz_input.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = cnn::fuzz::write_input(data, size, ".bin");
  try {
    cnn::read_cifar10({path});
  } catch (const cnn::Error&) {
  }
  return 0;
}

// Fuzz target: ONNX import (protobuf, graph parsing, initializers).
#include "cnn/cnn.hpp"
#include "fuzz_input.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = cnn::fuzz::write_input(data, size, ".onnx");
  try {
    cnn::load_onnx(path);
  } catch (const cnn::Error&) {
  }
  return 0;
}

// Fuzz target: image decoding for `cnn predict` (PNG, JPEG, BMP through stb_image; PGM/PPM
// through apps/cnn/image.cpp's own reader).
#include "../apps/cnn/image.hpp"
#include "cnn/cnn.hpp"
#include "fuzz_input.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = cnn::fuzz::write_input(data, size, ".img");
  cnn::Tensor<float> x;
  try {
    cnn::cli::load_image_as(path, cnn::Shape{1, 28, 28}, false, x);
  } catch (const cnn::Error&) {
  }
  return 0;
}

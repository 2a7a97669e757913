// The ONNX functions of a build without libonnx-dev: they say how to get them.

#include <algorithm>
#include <filesystem>

#include "cnn/error.hpp"
#include "cnn/onnx.hpp"

namespace cnn {

namespace {
[[noreturn]] void unavailable(const std::string& path) {
  throw Error(path +
              ": this cnn was built without ONNX support (install libonnx-dev and "
              "libprotobuf-dev, e.g. with scripts/setup.sh, and rebuild)");
}
}  // namespace

bool onnx_supported() {
  return false;
}

bool is_onnx_path(const std::string& path) {
  std::string ext = std::filesystem::path(path).extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return ext == ".onnx";
}

void save_onnx(const std::string& path, Sequential<float>&, const ModelSpec&,
               const std::vector<std::string>&, const OnnxExportOptions&) {
  unavailable(path);
}

ModelFile load_onnx(const std::string& path) {
  unavailable(path);
}

}  // namespace cnn

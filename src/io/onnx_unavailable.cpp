// The ONNX functions of a build without libonnx-dev: they say how to get them.

#include "cnn/error.hpp"
#include "cnn/fileio.hpp"
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

void save_onnx(const std::string& path, Sequential<float>&, const ModelSpec&,
               const std::vector<std::string>&, const OnnxExportOptions&) {
  require_path(path, "save_onnx");
  unavailable(path);
}

ModelFile load_onnx(const std::string& path) {
  require_path(path, "load_onnx");
  unavailable(path);
}

}  // namespace cnn

#pragma once
// Models and model files shared by several tests.

#include <map>
#include <string>
#include <vector>

#include "cnn/model.hpp"
#include "cnn/safetensors.hpp"
#include "cnn/spec.hpp"

namespace cnn::testing {

/// The lenet5 preset (conv 6@5x5 padding 2, relu, maxpool 2, conv 16@5x5, relu, maxpool 2,
/// flatten, linear 120, relu, linear 84, relu, linear 10; 61,706 parameters), which the golden
/// tests compare with PyTorch's nn.Sequential of the same layers.
inline Sequential<float> lenet5() {
  return build_model(preset_spec("lenet5"));
}

/// Writes `file`'s tensors (dtypes kept) with `metadata` instead of its own to `path`.
inline void save_with_all_metadata(const SafeTensorsFile& file,
                                   const std::map<std::string, std::string>& metadata,
                                   const std::string& path) {
  std::vector<Tensor<float>> kept;
  for (const std::string& name : file.names()) kept.push_back(file.tensor<float>(name));
  std::vector<SaveTensor> tensors;
  for (size_t i = 0; i < kept.size(); ++i)
    tensors.push_back({file.names()[i], kept[i], file.entry(file.names()[i]).dtype});
  save_safetensors(path, tensors, metadata);
}

/// Writes `file`'s tensors (dtypes kept) and metadata to `path`, with metadata `key` set to
/// `value`: a model file or checkpoint with one metadata entry changed.
inline void save_with_metadata(const SafeTensorsFile& file, const std::string& key,
                               const std::string& value, const std::string& path) {
  std::map<std::string, std::string> metadata = file.metadata();
  metadata[key] = value;
  save_with_all_metadata(file, metadata, path);
}

}  // namespace cnn::testing

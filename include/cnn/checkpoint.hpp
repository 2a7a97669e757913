#pragma once
// Training checkpoints: one safetensors file holding the model's parameters and buffers (named
// as in a model file), the optimizer's state ("optimizer.momentum_buffer", "optimizer.exp_avg",
// ...) and, in the metadata, the architecture, the class names, the caller's training
// configuration and the TrainState (epoch, step, data order, random streams, metrics so far;
// doubles in hexadecimal so that they come back bit for bit). Written atomically: a crash while
// writing leaves the previous checkpoint as it was.

#include <string>
#include <vector>

#include "cnn/model_file.hpp"
#include "cnn/train.hpp"

namespace cnn {

struct Checkpoint {
  ModelFile model;  // spec, parameters and buffers, class names
  TrainState state;
  std::string config;  // the caller's training configuration (JSON), as saved
};

/// Writes the checkpoint atomically (write_file_atomic), a tensor at a time from where it is
/// (save_safetensors): no copy of the model or the state is built. Throws cnn::Error
/// "<path>: ..." when it cannot be written, when `spec` does not describe `model` (as
/// save_model), or when load_checkpoint would refuse the file: the state is read back as the
/// load reads it ("<path>: cannot save: checkpoint state: ..."), and each optimizer tensor
/// must hold one finite value per parameter. An earlier checkpoint at `path` is then left
/// untouched.
void save_checkpoint(const std::string& path, Sequential<float>& model, const ModelSpec& spec,
                     const std::vector<std::string>& class_names, const TrainState& state,
                     const std::string& config);

/// Reads and validates a checkpoint: the model part as load_model does, the state's fields
/// (types, ranges, an order that is a permutation, correct <= seen, a history row per finished
/// epoch), the optimizer tensors' shapes and values. Throws
/// cnn::Error "<path>: ..." naming what is wrong. The checksum (when the file has one) is
/// checked first, over every tensor read from the file a piece at a time; then the model and
/// the optimizer state are read from the file into their values: the load holds them alone,
/// not the file's bytes besides.
Checkpoint load_checkpoint(const std::string& path);

}  // namespace cnn

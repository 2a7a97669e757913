#pragma once
// The model file: safetensors whose tensors are named and laid out as the state_dict of the
// equivalent torch.nn.Sequential ("0.weight" (OC, IC, KH, KW), "7.weight" (out, in), buffers
// such as "1.running_mean" F32 and "1.num_batches_tracked" I64, "3.body.0.weight") and whose
// metadata holds
//   "format": "cnn", "format_version": "1",
//   "architecture": the model spec JSON (cnn/spec.hpp),
//   "class_names": a JSON list of strings (optional).

#include <optional>
#include <string>
#include <vector>

#include "cnn/model.hpp"
#include "cnn/safetensors.hpp"
#include "cnn/spec.hpp"

namespace cnn {

inline constexpr const char* kModelFormatVersion = "1";

struct ModelFile {
  ModelSpec spec;
  Sequential<float> model;
  std::vector<std::string> class_names;
};

/// Writes the model atomically (see write_file_atomic): an existing file at `path` is either
/// replaced whole or left as it was. Throws cnn::Error "<path>: cannot save: the spec ... does
/// not describe the model: ..." when `spec` builds another input shape or other layers (types,
/// sizes, kernels, strides, padding, bias) than `model` has, and for `class_names` that are
/// neither empty nor one per output (output_classes).
void save_model(const std::string& path, Sequential<float>& model, const ModelSpec& spec,
                const std::vector<std::string>& class_names);

/// Loads and validates a model file. The architecture comes from the file's metadata, or from
/// `spec` when given (for a file written by PyTorch without our metadata; a file that holds its
/// own architecture is refused a different one, to_json compared). Throws cnn::Error
/// "<path>: ..." for an unreadable or corrupt file, a "format" other than "cnn" (a checkpoint,
/// "cnn-checkpoint", is named as one; a file without the key is read), an unknown format
/// version, a missing,
/// duplicate or unexpected tensor, a tensor whose dtype is not F32 (a counter buffer: I64 or
/// I32) or whose shape differs from the architecture's, a non-finite weight or buffer, or a
/// negative running variance, or more class names than outputs (fewer, which cnn train wrote
/// before 2026-12-06, are completed with the outputs' indices: "8", "9").
/// The model is built for inference (ModelUse::kInference): it has no gradients until training
/// asks for them (Sequential::allocate_gradients, which gradients(), zero_grad() and backward()
/// call). The tensors' bytes are read from the file straight into the model.
ModelFile load_model(const std::string& path, const std::optional<ModelSpec>& spec = std::nullopt);

/// What load_model checks from the file's header alone (SafeTensorsFile::open: the header
/// against the file's size, the format and version, the architecture, every tensor's name,
/// dtype and shape, the class names), reading none of the tensors' values: the returned
/// model holds the architecture's layers, not built (as model_shapes gives them). For `cnn
/// info`, which reports the architecture of a file of any size in the time of its header. Values
/// load_model would refuse (non-finite weights, negative variances or counts) are not seen.
ModelFile describe_model_file(const std::string& path,
                              const std::optional<ModelSpec>& spec = std::nullopt);

namespace detail {
/// Why `spec` does not describe `model` (the model is not built, the spec does not build, or
/// it builds another input shape or other layers: types, sizes, kernels, strides, padding,
/// bias), or "" when it does.
std::string spec_mismatch(const Sequential<float>& model, const ModelSpec& spec);
/// "the spec 'NAME' does not describe the model: " + spec_mismatch, or "" when it does: the
/// sentence that save_model, save_checkpoint, save_onnx, train_model and evaluate refuse such
/// a spec with, after their own prefix.
std::string spec_not_describing(const Sequential<float>& model, const ModelSpec& spec);
/// Throws cnn::Error "<path>: cannot save: " + spec_not_describing unless that is "" (save_model's
/// and save_checkpoint's check).
void require_spec_describes(const std::string& path, const Sequential<float>& model,
                            const ModelSpec& spec);
/// Why `class_names` does not fit `spec`'s model ("expected one class name per output of the
/// model (10) or none, got 2"), or "" when it is empty or holds one name per output.
/// save_model, save_checkpoint and save_onnx refuse such names.
std::string class_names_mismatch(const ModelSpec& spec,
                                 const std::vector<std::string>& class_names);
/// Throws cnn::Error "<path>: cannot save: " + class_names_mismatch unless that is "" (save_model's
/// and save_checkpoint's check).
void require_class_names(const std::string& path, const ModelSpec& spec,
                         const std::vector<std::string>& class_names);
/// The model's parameters and buffers as save_safetensors writes them (counters as I64).
std::vector<SaveTensor> model_tensors(Sequential<float>& model);
/// describe_model_file's checks on an opened file (the format aside); tensors whose names start
/// with `other_prefix` (when not empty) belong to someone else (a checkpoint's optimizer state)
/// and are left alone.
ModelFile model_description(const SafeTensorsFile& file, const std::string& path,
                            const std::optional<ModelSpec>& spec, const std::string& other_prefix);
/// load_model's checks on an opened file (the format aside), and its values, read with
/// file.read_data; `other_prefix` as for model_description.
ModelFile model_from_file(const SafeTensorsFile& file, const std::string& path,
                          const std::optional<ModelSpec>& spec, const std::string& other_prefix);
}  // namespace detail

}  // namespace cnn

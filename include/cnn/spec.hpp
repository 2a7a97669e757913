#pragma once
// Model specs: a model's architecture as JSON. The same JSON is what `cnn train --model
// SPEC.json` reads, what the presets are, and what a model file stores as its architecture.
//
//   {
//     "format": "cnn-spec", "version": 1,   // optional; what to_json writes (others refused)
//     "name": "lenet5",
//     "input": [1, 28, 28],                 // one sample: channels, height, width
//     "loss": "cross_entropy",              // or "log_loss" (one sigmoid output, two classes)
//     "classes": [0, 1],                    // optional: train on these dataset labels only,
//                                           // relabelled 0, 1, ... in this order
//     "layers": [
//       {"type": "Conv2d", "out_channels": 6, "kernel": 5, "stride": 1, "padding": 2},
//       {"type": "ReLU"},
//       {"type": "MaxPool2d", "kernel": 2},
//       {"type": "Flatten"},
//       {"type": "Linear", "out_features": 10}
//     ]
//   }
//
// kernel, stride and padding take a number or [height, width]; Conv2d padding may be "same";
// "bias" (default true) applies to Conv2d and Linear. AvgPool2d takes kernel, stride, padding
// and "count_include_pad" (default true, as PyTorch); AdaptiveAvgPool2d takes "output_size",
// which must be 1 (global average pooling); Dropout takes "p" in [0, 1) (default 0.5);
// LeakyReLU takes "negative_slope" (default 0.01, any finite number); ReLU6 takes none.
// BatchNorm2d and BatchNorm1d take "eps" (1e-5), "momentum" (0.1), "affine" (true) and an
// optional "num_features" (checked). Residual takes "body" (a list of layers), "shortcut" (a
// list, or absent for the identity) and "activation" ("ReLU" by default, or "Tanh",
// "Sigmoid", "none"); blocks nest at most 64 levels (kMaxResidualNesting), and no JSON deeper
// than 256 levels is read:
//   {"type": "Residual", "body": [...], "shortcut": [...], "activation": "ReLU"}
// Every type is one entry of the registry in src/io/spec.cpp (layer_type_names()). Input
// channels and features are inferred from the shapes. Unknown keys are refused, so that a typo is
// an error, not a default.

#include <optional>
#include <string>
#include <vector>

#include "cnn/layers.hpp"
#include "cnn/model.hpp"

namespace cnn {

/// One layer of a spec. Fields unused by a type keep their defaults.
struct LayerSpec {
  std::string type;             // a registered type: layer_type_names()
  int64_t out = 0;              // Conv2d out_channels, Linear out_features
  Size2 kernel{1};              // Conv2d, MaxPool2d, AvgPool2d
  std::optional<Size2> stride;  // default 1 (Conv2d) or the kernel (MaxPool2d)
  Size2 padding{0};
  bool same_padding = false;  // Conv2d "padding": "same"
  bool bias = true;
  bool count_include_pad = true;    // AvgPool2d
  Size2 output_size{1};             // AdaptiveAvgPool2d
  double p = 0.5;                   // Dropout
  double negative_slope = 0.01;     // LeakyReLU
  double eps = 1e-5;                // BatchNorm2d, BatchNorm1d
  double momentum = 0.1;            // BatchNorm2d, BatchNorm1d
  bool affine = true;               // BatchNorm2d, BatchNorm1d
  std::vector<LayerSpec> body;      // Residual
  std::vector<LayerSpec> shortcut;  // Residual; empty: the identity
  std::string activation = "ReLU";  // Residual: ReLU, Tanh, Sigmoid or "" (none)
  // in_channels / in_features / num_features when the spec states them: checked against the
  // input when the layer is built.
  std::optional<int64_t> declared_input;
};

enum class LossKind { kCrossEntropy, kLogLoss };

struct ModelSpec {
  std::string name;
  Shape input;  // (C, H, W)
  LossKind loss = LossKind::kCrossEntropy;
  std::vector<int> classes;  // dataset labels used, in order; empty: all of them
  std::vector<LayerSpec> layers;
};

/// Parses and validates spec JSON. `origin` (a file name, "preset lenet5", ...) starts every
/// error message: "<origin>: layer 3: unknown type 'Conv3d' (expected one of ...)".
ModelSpec parse_model_spec(const std::string& json, const std::string& origin);
/// Canonical JSON of a spec (every field explicit); parse_model_spec reads it back. Throws
/// cnn::Error for an input that is not (C, H, W).
std::string to_json(const ModelSpec& spec);
/// The names of the presets: lenet5, convnet, resnet, seed.
std::vector<std::string> preset_names();
/// A preset by name; throws cnn::Error listing the presets for an unknown name.
ModelSpec preset_spec(const std::string& name);
/// A preset by name, or else the spec in the JSON file at `preset_or_path` (its name defaults
/// to the file's stem). Throws cnn::Error "<flag> X: neither a preset ... nor a spec file"
/// (just "X: ..." for an empty `flag`, where X came as no flag's value) or the spec's own error.
ModelSpec model_spec_from(const std::string& preset_or_path, const std::string& flag = "--model");
/// Builds (and shape-checks) the model of a spec, parameters zeroed. Throws cnn::Error
/// "build_model: the spec ...: expected an input (C, H, W), got ..." for an input of another
/// rank (a default ModelSpec's ()), "<spec name>: Sequential: layer i ..." when a layer does
/// not fit its input, and "<spec name>: out of memory: ..." when its values cannot be
/// allocated. Where shapes suffice, model_shapes checks the same without allocating. `use`:
/// kInference leaves out the gradients (Sequential::build; the loaders build so).
Sequential<float> build_model(const ModelSpec& spec, ModelUse use = ModelUse::kTraining);
/// A spec's model without its values: `model` holds the layers, each built for its input, and
/// is not built (no parameter, gradient or buffer is allocated: its layers' output_shape,
/// parameter_specs, buffer_specs, parameter_count, forward_flops and describe work, forward
/// does not); `layout` is model.layout(spec.input): each layer's input for a batch of one, the
/// output, the parameter and buffer totals.
struct ModelShapes {
  Sequential<float> model;
  Sequential<float>::Layout layout;
};
/// Checks a spec's shapes as build_model does, with the same errors (but never "out of
/// memory"), and allocates none of its values: parse_model_spec, output_classes,
/// torch_modules, `cnn info` and the loaders' checks before they allocate use it, since a
/// model can need far more memory than its description (a Linear of 10^11 weights is a line
/// of JSON). build_model(spec) is model_shapes(spec).model built for spec.input.
ModelShapes model_shapes(const ModelSpec& spec);
/// The spec of a built model, read from its layers (build_model's inverse), so that a model
/// built in C++ can be saved: save_model(path, model, spec_of(model, "mynet"), names). A model
/// does not know its loss or its dataset's classes: `loss` is given, `classes` stays empty (all
/// labels), or [0, 1] for kLogLoss, whose spec names its negative and positive labels.
/// Throws cnn::Error for an unbuilt model or a layer type without a spec registration.
ModelSpec spec_of(const Sequential<float>& model, const std::string& name,
                  LossKind loss = LossKind::kCrossEntropy);
/// The layer types a spec may use, in registration order (src/io/spec.cpp, layer_types()).
std::vector<std::string> layer_type_names();
/// For each layer of `spec`, the JSON of its torch.nn equivalent: {"module": the torch.nn class,
/// "args": [...], "kwargs": {...}}; `cnn info --json` gives it to the Python tools.
std::vector<std::string> torch_modules(const ModelSpec& spec);
/// One layer from its spec JSON ({"type": "Conv2d", "out_channels": 4, ...}, the keys of a spec
/// layer), for a batch of `input`. Throws cnn::Error "<origin>: ..." as parse_model_spec does.
std::unique_ptr<Layer<float>> build_layer(const std::string& layer_json, const Shape& input,
                                          const std::string& origin);
/// The output batch shape of the layer `layer` describes, for a batch of `input`; throws
/// cnn::Error "<type>: ..." as build_model would. For importers that follow shapes through a
/// graph (src/io/onnx.cpp).
Shape layer_output_shape(const LayerSpec& layer, const Shape& input);

/// Checks each of `layers` as a spec file's layer would be checked (kernels, strides and padding
/// up to 4096, ...), without building them or looking at the loss: for layers that come from
/// elsewhere (an ONNX graph), so that what runs is what a model file can hold. Throws
/// cnn::Error "<origin>: layer i: ..." for the first that a spec would refuse.
void check_layer_limits(const std::vector<LayerSpec>& layers, const std::string& origin);
/// The number of classes the model predicts: 2 for the log loss (one sigmoid output: negative
/// or positive), else the last layer's features.
int64_t output_classes(const ModelSpec& spec);

}  // namespace cnn

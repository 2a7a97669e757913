#pragma once
// ONNX model files, both ways: export of a cnn model (for OpenCV DNN, ONNX Runtime, TensorRT...)
// and import of the graphs that torch.onnx.export writes for networks made of cnn's layers.
// Built when CMake finds Debian's libonnx-dev (the ONNX protobuf classes and checker); without
// it the functions below throw cnn::Error saying so, and onnx_supported() is false.
//
// An exported graph has one float input "input" (batch, C, H, W) with a symbolic batch, in the
// value range the model was trained on (pixel / 255), and one output "logits" (batch, classes).
// Initializers are named as the model file's tensors ("0.weight", "3.body.1.running_var").
// metadata_props: "cnn.architecture" (the spec JSON), "cnn.class_names" (JSON list),
// "cnn.counters" (JSON object of the integer buffers, such as num_batches_tracked, which ONNX
// graphs have no place for), "cnn.preprocessing", "cnn.version".

#include <string>
#include <vector>

#include "cnn/model_file.hpp"

namespace cnn {

struct OnnxExportOptions {
  int opset = 13;               // 13 to 17; the IR version is the one the opset implies
  bool fold_batchnorm = false;  // fold each BatchNorm2d into the Conv2d before it
};

/// True when this build has ONNX support (libonnx-dev was found).
bool onnx_supported();

/// Writes `model` as an ONNX file, atomically (write_file_atomic). Layers map to Conv,
/// BatchNormalization (inference form), Relu, LeakyRelu, ReLU6 as min(r, 6 + relu(-r)) with
/// r = relu(x) (Relu, Neg, Relu, Add, Min: OpenCV 4.6 runs it, not a Clip), Tanh, Sigmoid,
/// Softmax (axis 1), MaxPool,
/// AveragePool, GlobalAveragePool, Flatten (axis 1), Gemm (transB 1) and Add (Residual);
/// Dropout is left out. The model passes onnx::checker::check_model and strict shape
/// inference before it is written. Throws cnn::Error "<path>: cannot export to ONNX: ..." for
/// an opset outside 13-17, a spec that does not describe the model (as save_model), class
/// names that are neither none nor one per output, a layer ONNX export does not support, or a
/// failed check; nothing is written then.
void save_onnx(const std::string& path, Sequential<float>& model, const ModelSpec& spec,
               const std::vector<std::string>& class_names, const OnnxExportOptions& options = {});

/// Reads an ONNX file into a model: ours (the spec from "cnn.architecture" when it describes
/// the same graph) or one written by torch.onnx.export (opsets 11 to 17) from Conv,
/// BatchNormalization, Relu/LeakyRelu/Tanh/Sigmoid/Softmax, Clip(0, 6) or our export's form
/// (ReLU6), Clip(0) (ReLU),
/// MaxPool, AveragePool, GlobalAveragePool, Flatten or Reshape to (N, -1), Gemm or MatMul + Add,
/// Add of two branches (a Residual), Dropout and Identity. Throws cnn::Error "<path>: ..." naming
/// the node, its op type and the reason for anything else: not protobuf, an opset outside 11-17, a
/// node that ONNX's schema at the file's opset refuses (its attributes' names and types, its
/// inputs, outputs and input types: every node read is checked so before cnn's own limits), an
/// unsupported op or attribute, a dangling input, a shape computation (a Reshape's target) that
/// ONNX's spec for the opset refuses, dimensions that overflow, an initializer that a
/// node reads of another type than FLOAT, INT64 or BOOL, of the wrong shape, with external data or
/// non-finite values (an initializer no node reads is not read, but must be well-formed), or a
/// file that ONNX's whole-model checker (onnx::checker::check_model) refuses: "<path>: not a
/// valid ONNX model: <the checker's message in one line>" where the import itself would have
/// taken it (its own line where it refuses the file too).
ModelFile load_onnx(const std::string& path);

/// True when `path` names an ONNX file (its extension is ".onnx").
bool is_onnx_path(const std::string& path);

}  // namespace cnn

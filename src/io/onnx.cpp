// ONNX export and import (see cnn/onnx.hpp), on Debian's libonnx-dev: the protobuf classes of
// onnx.proto, the checker and shape inference.

#include "cnn/onnx.hpp"

#include <onnx/checker.h>
#include <onnx/defs/data_type_utils.h>
#include <onnx/defs/schema.h>
#include <onnx/onnx_pb.h>
#include <onnx/shape_inference/implementation.h>

#include <algorithm>
#include <bitset>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <list>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <sstream>

#include "cnn/error.hpp"
#include "cnn/fileio.hpp"
#include "cnn/residual.hpp"
#include "json_reader.hpp"

namespace cnn {

using Json = nlohmann::json;

bool onnx_supported() {
  return true;
}

namespace {

constexpr const char* kInputName = "input";
constexpr const char* kOutputName = "logits";
constexpr int kMinExportOpset = 13, kMaxExportOpset = 17;
constexpr int kMinImportOpset = 11, kMaxImportOpset = 17;

// ---- export -----------------------------------------------------------------------------------

/// Builds the graph of a model layer by layer: each layer's nodes read the value its
/// predecessor wrote, its weights become initializers named as in the model file.
class Exporter {
 public:
  Exporter(onnx::GraphProto& graph, Sequential<float>& model, bool fold_batchnorm)
      : graph_(graph), fold_(fold_batchnorm) {
    for (auto& p : model.named_parameters()) tensors_.emplace(p.name, p.value);
    for (auto& b : model.named_buffers()) {
      if (b.counter) {
        counters_[b.name] = static_cast<int64_t>(b.value[0]);
      } else {
        tensors_.emplace(b.name, b.value);
      }
    }
  }

  /// The nodes of `layers` (named prefix + index) applied to `value`; returns the output value.
  std::string chain(const std::vector<const Layer<float>*>& layers, const std::string& prefix,
                    std::string value) {
    for (size_t i = 0; i < layers.size(); ++i) {
      const std::string name = prefix + std::to_string(i);
      const auto* conv = dynamic_cast<const Conv2d<float>*>(layers[i]);
      const auto* next_bn =
          i + 1 < layers.size() ? dynamic_cast<const BatchNorm2d<float>*>(layers[i + 1]) : nullptr;
      if (fold_ && conv && next_bn) {
        value = folded_conv(*conv, name, *next_bn, prefix + std::to_string(i + 1), value);
        folded_batchnorms_.insert(prefix + std::to_string(i + 1));
        ++i;
        continue;
      }
      value = layer(*layers[i], name, value);
    }
    return value;
  }

  const std::map<std::string, int64_t>& counters() const { return counters_; }
  /// The BatchNorm2d layers folded into the Conv2d before them ("3.body.1").
  const std::set<std::string>& folded_batchnorms() const { return folded_batchnorms_; }

 private:
  std::string layer(const Layer<float>& layer, const std::string& name, const std::string& in) {
    const std::string type = layer.type();
    if (const auto* conv = dynamic_cast<const Conv2d<float>*>(&layer)) {
      std::vector<std::string> inputs = {in, initializer(name + ".weight")};
      if (conv->has_bias()) inputs.push_back(initializer(name + ".bias"));
      onnx::NodeProto& n = node("Conv", name, inputs);
      conv_attributes(n, *conv);
      return n.output(0);
    }
    if (const auto* bn = dynamic_cast<const BatchNorm<float>*>(&layer)) {
      std::string scale, shift;
      if (bn->affine()) {
        scale = initializer(name + ".weight");
        shift = initializer(name + ".bias");
      } else {
        // ONNX's BatchNormalization always scales and shifts: by 1 and 0 here.
        const std::vector<float> ones(static_cast<size_t>(bn->num_features()), 1.0f);
        const std::vector<float> zeros(ones.size(), 0.0f);
        scale = constant(name + ".unit_scale", ones);
        shift = constant(name + ".zero_shift", zeros);
      }
      onnx::NodeProto& n = node("BatchNormalization", name,
                                {in, scale, shift, initializer(name + ".running_mean"),
                                 initializer(name + ".running_var")});
      attribute_float(n, "epsilon", static_cast<float>(bn->eps()));
      // ONNX's momentum weighs the running value, PyTorch's the batch's.
      attribute_float(n, "momentum", static_cast<float>(1.0 - bn->momentum()));
      return n.output(0);
    }
    if (type == "ReLU") return node("Relu", name, {in}).output(0);
    if (type == "Tanh") return node("Tanh", name, {in}).output(0);
    if (const auto* leaky = dynamic_cast<const LeakyReLU<float>*>(&layer)) {
      onnx::NodeProto& n = node("LeakyRelu", name, {in});
      attribute_float(n, "alpha", static_cast<float>(leaky->negative_slope()));
      return n.output(0);
    }
    if (type == "ReLU6") {
      // min(r, 6 + relu(-r)) with r = relu(x): relu(-r) is 0 (or -0) for every r >= 0, +inf
      // included, so it is min(relu(x), 6), bit for bit. torch writes Clip(x, 0, 6), whose
      // bounds are inputs from opset 11 (ours are 13 to 17), and OpenCV 4.6 DNN reads no such
      // Clip, nor a Min or Max of a constant (its Eltwise takes computed inputs only): this form
      // it runs (found 2026-12-07; the import reads both as ReLU6).
      const std::string r = node("Relu", name + ".relu", {in}).output(0);
      const std::string negated = node("Neg", name + ".neg", {r}).output(0);
      const std::string zero = node("Relu", name + ".zero", {negated}).output(0);
      const std::string six =
          node("Add", name + ".six", {zero, scalar_constant(name + ".max", 6.0f)}).output(0);
      return node("Min", name, {r, six}).output(0);
    }
    if (type == "Sigmoid") return node("Sigmoid", name, {in}).output(0);
    if (type == "Softmax") {
      onnx::NodeProto& n = node("Softmax", name, {in});
      attribute_int(n, "axis", 1);
      return n.output(0);
    }
    if (type == "Flatten") {
      onnx::NodeProto& n = node("Flatten", name, {in});
      attribute_int(n, "axis", 1);
      return n.output(0);
    }
    if (type == "Dropout") return in;  // the identity in inference
    if (type == "AdaptiveAvgPool2d") return node("GlobalAveragePool", name, {in}).output(0);
    if (const auto* pool = dynamic_cast<const MaxPool2d<float>*>(&layer)) {
      onnx::NodeProto& n = node("MaxPool", name, {in});
      window_attributes(n, pool->kernel(), pool->stride(), pool->padding());
      return n.output(0);
    }
    if (const auto* pool = dynamic_cast<const AvgPool2d<float>*>(&layer)) {
      const Size2 p = pool->padding();
      if (pool->count_include_pad() && p != Size2(0)) {
        // As torch.onnx.export writes it: a Pad of zeros, then an AveragePool without pads.
        // OpenCV DNN (4.6) averages AveragePool(pads, count_include_pad 1) as if it were
        // count_include_pad 0 (found 2026-12-06: logits 4-10% off); this form it runs right.
        const std::string pads = int64_constant(name + ".pads", {0, 0, p.h, p.w, 0, 0, p.h, p.w});
        const std::string padded = node("Pad", name + ".pad", {in, pads}).output(0);
        onnx::NodeProto& n = node("AveragePool", name, {padded});
        window_attributes(n, pool->kernel(), pool->stride(), Size2(0));
        return n.output(0);
      }
      onnx::NodeProto& n = node("AveragePool", name, {in});
      window_attributes(n, pool->kernel(), pool->stride(), p);
      attribute_int(n, "count_include_pad", pool->count_include_pad() ? 1 : 0);
      return n.output(0);
    }
    if (const auto* linear = dynamic_cast<const Linear<float>*>(&layer)) {
      std::vector<std::string> inputs = {in, initializer(name + ".weight")};
      if (linear->has_bias()) inputs.push_back(initializer(name + ".bias"));
      onnx::NodeProto& n = node("Gemm", name, inputs);
      attribute_int(n, "transB", 1);
      return n.output(0);
    }
    if (const auto* block = dynamic_cast<const Residual<float>*>(&layer)) {
      std::vector<const Layer<float>*> body, shortcut;
      for (size_t i = 0; i < block->body_size(); ++i) body.push_back(&block->body(i));
      for (size_t i = 0; i < block->shortcut_size(); ++i) shortcut.push_back(&block->shortcut(i));
      const std::string body_out = chain(body, name + ".body.", in);
      const std::string shortcut_out = chain(shortcut, name + ".shortcut.", in);
      std::string out = node("Add", name + ".add", {body_out, shortcut_out}).output(0);
      if (block->activation() == "ReLU") out = node("Relu", name, {out}).output(0);
      if (block->activation() == "Tanh") out = node("Tanh", name, {out}).output(0);
      if (block->activation() == "Sigmoid") out = node("Sigmoid", name, {out}).output(0);
      return out;
    }
    throw Error("layer " + name + " (" + layer.describe() + "): no ONNX export for type " + type);
  }

  /// Conv2d followed by BatchNorm2d as one Conv: W' = W s, b' = (b - mean) s + beta, with
  /// s = gamma / sqrt(var + eps) per output channel.
  std::string folded_conv(const Conv2d<float>& conv, const std::string& name,
                          const BatchNorm2d<float>& bn, const std::string& bn_name,
                          const std::string& in) {
    const TensorView<const float> w = tensor(name + ".weight");
    const int64_t out = conv.out_channels(), per_channel = w.numel() / out;
    std::vector<float> weights(static_cast<size_t>(w.numel())), bias(static_cast<size_t>(out));
    const float* mean = tensor(bn_name + ".running_mean").data();
    const float* var = tensor(bn_name + ".running_var").data();
    for (int64_t o = 0; o < out; ++o) {
      const double gamma = bn.affine() ? tensor(bn_name + ".weight")[o] : 1.0;
      const double beta = bn.affine() ? tensor(bn_name + ".bias")[o] : 0.0;
      const double s = gamma / std::sqrt(double(var[o]) + bn.eps());
      for (int64_t k = 0; k < per_channel; ++k)
        weights[static_cast<size_t>(o * per_channel + k)] =
            static_cast<float>(w[o * per_channel + k] * s);
      const double b = conv.has_bias() ? tensor(name + ".bias")[o] : 0.0;
      bias[static_cast<size_t>(o)] = static_cast<float>((b - mean[o]) * s + beta);
    }
    const std::string weight_name = add_initializer(name + ".weight", w.shape(), weights.data());
    const std::string bias_name = add_initializer(name + ".bias", Shape{out}, bias.data());
    onnx::NodeProto& n = node("Conv", name, {in, weight_name, bias_name});
    conv_attributes(n, conv);
    return n.output(0);
  }

  void conv_attributes(onnx::NodeProto& n, const Conv2d<float>& conv) {
    attribute_ints(n, "kernel_shape", {conv.kernel().h, conv.kernel().w});
    attribute_ints(n, "strides", {conv.stride().h, conv.stride().w});
    attribute_ints(n, "pads",
                   {conv.padding().h, conv.padding().w, conv.padding().h, conv.padding().w});
    attribute_ints(n, "dilations", {1, 1});
    attribute_int(n, "group", 1);
  }

  void window_attributes(onnx::NodeProto& n, Size2 kernel, Size2 stride, Size2 padding) {
    attribute_ints(n, "kernel_shape", {kernel.h, kernel.w});
    attribute_ints(n, "strides", {stride.h, stride.w});
    attribute_ints(n, "pads", {padding.h, padding.w, padding.h, padding.w});
    attribute_int(n, "ceil_mode", 0);  // cnn's pools floor the output size, as PyTorch's default
  }

  onnx::NodeProto& node(const std::string& op, const std::string& name,
                        const std::vector<std::string>& inputs) {
    onnx::NodeProto* n = graph_.add_node();
    n->set_op_type(op);
    n->set_name(name);
    for (const std::string& in : inputs) n->add_input(in);
    n->add_output(name + ".out");
    return *n;
  }

  TensorView<const float> tensor(const std::string& name) const {
    const auto it = tensors_.find(name);
    if (it == tensors_.end()) throw Error("no tensor " + name + " in the model");
    return it->second;
  }

  std::string initializer(const std::string& name) {
    const TensorView<const float> t = tensor(name);
    return add_initializer(name, t.shape(), t.data());
  }

  std::string constant(const std::string& name, const std::vector<float>& values) {
    return add_initializer(name, Shape{static_cast<int64_t>(values.size())}, values.data());
  }

  /// A FLOAT initializer of rank 0 (ReLU6's 6).
  std::string scalar_constant(const std::string& name, float value) {
    onnx::TensorProto* t = graph_.add_initializer();
    t->set_name(name);
    t->set_data_type(onnx::TensorProto::FLOAT);
    t->add_float_data(value);
    return name;
  }

  /// An INT64 initializer of `values` (a Pad's pads).
  std::string int64_constant(const std::string& name, const std::vector<int64_t>& values) {
    onnx::TensorProto* t = graph_.add_initializer();
    t->set_name(name);
    t->set_data_type(onnx::TensorProto::INT64);
    t->add_dims(static_cast<int64_t>(values.size()));
    for (int64_t v : values) t->add_int64_data(v);
    return name;
  }

  std::string add_initializer(const std::string& name, const Shape& shape, const float* data) {
    onnx::TensorProto* t = graph_.add_initializer();
    t->set_name(name);
    t->set_data_type(onnx::TensorProto::FLOAT);
    for (int d = 0; d < shape.rank(); ++d) t->add_dims(shape[d]);
    t->set_raw_data(std::string(reinterpret_cast<const char*>(data),
                                static_cast<size_t>(shape.numel()) * sizeof(float)));
    return name;
  }

  static void attribute_int(onnx::NodeProto& n, const std::string& name, int64_t value) {
    onnx::AttributeProto* a = n.add_attribute();
    a->set_name(name);
    a->set_type(onnx::AttributeProto::INT);
    a->set_i(value);
  }
  static void attribute_float(onnx::NodeProto& n, const std::string& name, float value) {
    onnx::AttributeProto* a = n.add_attribute();
    a->set_name(name);
    a->set_type(onnx::AttributeProto::FLOAT);
    a->set_f(value);
  }
  static void attribute_ints(onnx::NodeProto& n, const std::string& name,
                             const std::vector<int64_t>& values) {
    onnx::AttributeProto* a = n.add_attribute();
    a->set_name(name);
    a->set_type(onnx::AttributeProto::INTS);
    for (int64_t v : values) a->add_ints(v);
  }

  onnx::GraphProto& graph_;
  bool fold_;
  std::set<std::string> folded_batchnorms_;
  std::map<std::string, TensorView<const float>> tensors_;
  std::map<std::string, int64_t> counters_;
};

void set_tensor_type(onnx::ValueInfoProto& value, const std::string& name, const Shape& shape) {
  value.set_name(name);
  onnx::TypeProto_Tensor* t = value.mutable_type()->mutable_tensor_type();
  t->set_elem_type(onnx::TensorProto::FLOAT);
  for (int d = 0; d < shape.rank(); ++d) {
    onnx::TensorShapeProto_Dimension* dim = t->mutable_shape()->add_dim();
    if (d == 0) {
      dim->set_dim_param("batch");
    } else {
      dim->set_dim_value(shape[d]);
    }
  }
}

/// `layers` as the exporter folds them: each Conv2d followed by a BatchNorm2d becomes one
/// Conv2d with a bias, in Residual blocks too (Exporter::chain's rule).
std::vector<LayerSpec> folded_layers(const std::vector<LayerSpec>& layers) {
  std::vector<LayerSpec> folded;
  for (size_t i = 0; i < layers.size(); ++i) {
    LayerSpec l = layers[i];
    if (l.type == "Residual") {
      l.body = folded_layers(l.body);
      l.shortcut = folded_layers(l.shortcut);
    }
    if (l.type == "Conv2d" && i + 1 < layers.size() && layers[i + 1].type == "BatchNorm2d") {
      l.bias = true;
      ++i;
    }
    folded.push_back(std::move(l));
  }
  return folded;
}

void add_metadata(onnx::ModelProto& m, const std::string& key, const std::string& value) {
  onnx::StringStringEntryProto* e = m.add_metadata_props();
  e->set_key(key);
  e->set_value(value);
}

}  // namespace

void save_onnx(const std::string& path, Sequential<float>& model, const ModelSpec& spec,
               const std::vector<std::string>& class_names, const OnnxExportOptions& options) {
  require_path(path, "save_onnx");
  const auto fail = [&](const std::string& message) -> void {
    throw Error(path + ": cannot export to ONNX: " + message);
  };
  if (options.opset < kMinExportOpset || options.opset > kMaxExportOpset) {
    fail("opset " + std::to_string(options.opset) + " is outside the supported " +
         std::to_string(kMinExportOpset) + " to " + std::to_string(kMaxExportOpset));
  }
  // What save_model refuses, refused before anything is built or written: a spec that does not
  // describe the model (its metadata would make a file that load_onnx refuses; a default spec,
  // or an unbuilt model, failed inside the export in another function's words), and class
  // names that are neither none nor one per output.
  if (const std::string why = detail::spec_not_describing(model, spec); !why.empty()) fail(why);
  if (const std::string why = detail::class_names_mismatch(spec, class_names); !why.empty())
    fail(why);
  onnx::ModelProto m;
  // The IR version each opset came with: 13 and 14 in IR 7, 15 to 17 in IR 8.
  m.set_ir_version(options.opset <= 14 ? 7 : 8);
  m.set_producer_name("cnn");
  m.set_producer_version(CNN_VERSION);
  onnx::OperatorSetIdProto* opset = m.add_opset_import();
  opset->set_domain("");
  opset->set_version(options.opset);
  onnx::GraphProto& graph = *m.mutable_graph();
  graph.set_name(spec.name.empty() ? "cnn" : spec.name);
  Exporter exporter(graph, model, options.fold_batchnorm);
  std::vector<const Layer<float>*> layers;
  for (size_t i = 0; i < model.size(); ++i) layers.push_back(&model.layer(i));
  try {
    std::string out = exporter.chain(layers, "", kInputName);
    if (graph.node_size() == 0) {
      onnx::NodeProto* n = graph.add_node();
      n->set_op_type("Identity");
      n->set_name("identity");
      n->add_input(out);
      n->add_output("identity.out");
    }
  } catch (const Error& e) {
    fail(e.what());
  }
  // The last node writes the graph's output.
  graph.mutable_node(graph.node_size() - 1)->set_output(0, kOutputName);
  Shape input{1, spec.input[0], spec.input[1], spec.input[2]};
  set_tensor_type(*graph.add_input(), kInputName, input);
  set_tensor_type(*graph.add_output(), kOutputName, model.output_shape(1));

  // A folded graph is described by the folded spec: its name, loss and classes were lost with
  // the metadata until 2026-12-08 (a probe: the seed model's one Sigmoid output came back as
  // cross-entropy logits, and predict said 100%). The BatchNorms left keep their counters,
  // under the names they have in the folded model.
  std::map<std::string, int64_t> counters = exporter.counters();
  ModelSpec written = spec;
  if (options.fold_batchnorm) {
    written.layers = folded_layers(spec.layers);
    std::vector<int64_t> kept;
    for (const auto& b : model.named_buffers()) {
      if (!b.counter) continue;
      const std::string layer = b.name.substr(0, b.name.rfind('.'));
      if (!exporter.folded_batchnorms().count(layer)) kept.push_back(counters.at(b.name));
    }
    counters.clear();
    size_t next = 0;
    for (const auto& b : model_shapes(written).model.buffer_specs()) {
      if (!b.counter) continue;
      if (next >= kept.size()) fail("the folded model's BatchNorm layers do not match");
      counters[b.name] = kept[next++];
    }
    if (next != kept.size()) fail("the folded model's BatchNorm layers do not match");
  }
  add_metadata(m, "cnn.architecture", to_json(written));
  add_metadata(m, "cnn.class_names",
               detail::dump_json(Json(class_names), path + ": cannot export to ONNX: class names"));
  add_metadata(m, "cnn.counters", Json(counters).dump());
  add_metadata(m, "cnn.preprocessing",
               "grey pixels as float (C, H, W) in [0, 1]: value / 255, no mean subtraction");
  add_metadata(m, "cnn.version", CNN_VERSION);
  try {
    onnx::checker::check_model(m);
    onnx::ModelProto inferred = m;
    onnx::shape_inference::InferShapes(inferred, onnx::OpSchemaRegistry::Instance(),
                                       onnx::ShapeInferenceOptions(true, 1, false));
  } catch (const std::exception& e) {
    fail(std::string("the ONNX checker refused the graph: ") + e.what());
  }
  std::string bytes;
  if (!m.SerializeToString(&bytes)) fail("protobuf serialisation failed");
  write_file_atomic(path, bytes);
}

// ---- import -----------------------------------------------------------------------------------

namespace {

/// An ONNX data type's name: "FLOAT16", not 10.
std::string type_name(int64_t type) {
  return type >= std::numeric_limits<int>::min() && type <= std::numeric_limits<int>::max() &&
                 onnx::TensorProto_DataType_IsValid(static_cast<int>(type))
             ? onnx::TensorProto_DataType_Name(static_cast<onnx::TensorProto_DataType>(type))
             : "number " + std::to_string(type);
}

/// PyTorch's BatchNorm momentum (the batch's weight) from ONNX's (the running value's, a float):
/// the shortest decimal whose ONNX form is that float. 1 - 0.99f is 0.0099999905, which our own
/// export of a momentum of 0.01 then failed to match against its metadata (found 2026-12-06).
double momentum_from_onnx(float onnx_momentum) {
  const double exact = 1.0 - double(onnx_momentum);
  for (int digits = 1; digits <= 17; ++digits) {
    char text[40];
    std::snprintf(text, sizeof text, "%.*g", digits, exact);
    const double shortest = std::strtod(text, nullptr);
    if (static_cast<float>(1.0 - shortest) == onnx_momentum) return shortest;
  }
  return exact;  // NaN: refused by the caller's range check
}

/// The shortest decimal whose float is `value`: an ONNX float attribute as a spec writes it
/// (epsilon 0.001f reads as 0.001, not 0.0010000000474974513).
double decimal_of_float(float value) {
  if (!std::isfinite(value)) return value;
  for (int digits = 1; digits <= 9; ++digits) {
    char text[40];
    std::snprintf(text, sizeof text, "%.*g", digits, double(value));
    if (std::strtof(text, nullptr) == value) return std::strtod(text, nullptr);
  }
  return value;
}

/// Whether node `n` is in the ONNX domain (as "" or "ai.onnx").
bool onnx_domain(const onnx::NodeProto& n) {
  return n.domain().empty() || n.domain() == "ai.onnx";
}

/// "[1, -1]".
std::string list_text(const std::vector<int64_t>& values) {
  std::string s = "[";
  for (size_t i = 0; i < values.size(); ++i) s += (i ? ", " : "") + std::to_string(values[i]);
  return s + "]";
}

/// A float initializer (or Constant) of the graph.
struct Constant {
  std::string name;
  std::vector<int64_t> dims;
  std::vector<float> floats;
  std::vector<int64_t> ints;  // INT64 tensors (Reshape shapes, Gather indices)
  bool is_int = false;
  int32_t type = onnx::TensorProto::FLOAT;  // FLOAT, INT64 or BOOL
};

/// A value of a shape computation (Shape, Gather, Unsqueeze, Concat, Cast...), evaluated at
/// import as ONNX defines it.
struct Folded {
  int32_t type = onnx::TensorProto::FLOAT;
  std::vector<int64_t> dims;
  /// Its values where they are integers and known, shared (a chain of Casts copies nothing);
  /// null where not. kBatch stands for the batch size.
  std::shared_ptr<const std::vector<int64_t>> ints;
};
constexpr int64_t kBatch = std::numeric_limits<int64_t>::min();
// Shape computations hold a handful of small values: these bound what a hostile graph can make
// them cost (an Unsqueeze of 10^6 axes behind 10^5 Casts, Concats that double their input).
constexpr size_t kMaxFoldedRank = 64;
constexpr int64_t kMaxFoldedValues = int64_t{1} << 22;  // all folded values together

/// The identity as a layer a Residual's body can hold (a body is never empty): a Dropout of
/// p 0, the identity in training too.
LayerSpec identity_layer() {
  LayerSpec identity;
  identity.type = "Dropout";
  identity.p = 0;
  return identity;
}

/// One layer's tensors in the order of its parameter_specs and buffer_specs; a Residual's are
/// its branches' layers', kept apart so that the branches can trade names (take_branches).
struct LayerTensors {
  std::vector<std::pair<std::string, const Constant*>> parameters, buffers;
  std::vector<LayerTensors> body, shortcut;
};

/// `t`'s tensors appended to `parameters` and `buffers` in the order the model names them: a
/// Residual's body's, then its shortcut's.
void flatten(const LayerTensors& t,
             std::vector<std::pair<std::string, const Constant*>>& parameters,
             std::vector<std::pair<std::string, const Constant*>>& buffers) {
  parameters.insert(parameters.end(), t.parameters.begin(), t.parameters.end());
  buffers.insert(buffers.end(), t.buffers.begin(), t.buffers.end());
  for (const auto* branch : {&t.body, &t.shortcut})
    for (const LayerTensors& layer : *branch) flatten(layer, parameters, buffers);
}

class Importer {
 public:
  Importer(const std::string& path, const onnx::ModelProto& m) : path_(path), m_(m) {}

  ModelFile run();

 private:
  [[noreturn]] void fail(const std::string& message) const { throw Error(path_ + ": " + message); }
  [[noreturn]] void fail_node(int i, const std::string& message) const {
    const onnx::NodeProto& n = m_.graph().node(i);
    fail("node '" + (n.name().empty() ? "#" + std::to_string(i) : n.name()) + "' (" + n.op_type() +
         "): " + message);
  }

  void read_constant(const onnx::TensorProto& t, const std::string& what);
  const Constant& constant_input(int node, int index, const char* role);
  bool has_input(int node, int index) const {
    const onnx::NodeProto& n = m_.graph().node(node);
    return index < n.input_size() && !n.input(index).empty();
  }
  const onnx::AttributeProto* attribute(int node, const std::string& name) const;
  int64_t int_attribute(int node, const std::string& name, int64_t fallback) const;
  float float_attribute(int node, const std::string& name, float fallback) const;
  std::vector<int64_t> ints_attribute(int node, const std::string& name,
                                      std::vector<int64_t> fallback) const;
  /// Only the attributes in `known` (others change the op's meaning: refused).
  void only_attributes(int node, std::initializer_list<const char*> known) const;
  Size2 pair_attribute(int node, const std::string& name, Size2 fallback) const;
  Size2 symmetric_pads(int node) const;

  std::vector<int> consumers(const std::string& value) const;
  /// Parses the nodes from `value` (starting with node `first` when given) until a reader of
  /// the value is `join` or the value has no reader; returns that value.
  std::string chain(std::string value, int join, std::vector<LayerSpec>& layers, int first = -1);
  std::string apply(int node, const std::string& value, std::vector<LayerSpec>& layers);
  std::string residual(const std::string& value, const std::vector<int>& forks,
                       std::vector<LayerSpec>& layers);
  /// Fails naming node `node`'s input `k`, which no initializer or Constant gives, and the node
  /// that computes it.
  [[noreturn]] void fail_computed_input(int node, int k) const;
  /// `own` padding with a preceding Pad's added (and that Pad taken).
  Size2 with_pending_pad(Size2 own);
  /// The Min of the ReLU6 that Relu node `relu` starts, as our export writes it: min(r, 6 +
  /// relu(-r)) with r the Relu's output (its two readers a Neg and the Min); -1 where r is not
  /// read so. Its nodes are checked (ONNX's schema, then the form) once they are wired so.
  int relu6_min(int relu);
  /// The block of node `add`, which adds a value to itself.
  std::string doubled(int add, std::vector<LayerSpec>& layers);
  /// The output of a block whose sum is `sum`: the sum, or the activation that is its only
  /// reader, which becomes `block`'s.
  std::string block_activation(const std::string& sum, LayerSpec& block);
  /// A (rows, cols) weight as (cols, rows): Linear's layout of MatMul's and Gemm's (transB 0) B.
  /// One per weight, however many nodes read it (300 Gemms of one 4 MB weight made 300
  /// transposes, 1.2 GB; the layers' own copies are the model's, as a spec of the same layers).
  const Constant& transposed(const Constant& w) {
    if (const auto done = transposed_of_.find(&w); done != transposed_of_.end())
      return *done->second;
    Constant& tw = transposed_.emplace_back(w);
    transposed_of_[&w] = &tw;
    tw.dims = {w.dims[1], w.dims[0]};
    for (int64_t r = 0; r < w.dims[0]; ++r)
      for (int64_t c = 0; c < w.dims[1]; ++c)
        tw.floats[static_cast<size_t>(c * w.dims[0] + r)] =
            w.floats[static_cast<size_t>(r * w.dims[1] + c)];
    return tw;
  }
  /// A bias of shape (out,) or (1, out) as (out,): Gemm's C may be either (found 2026-12-06: a
  /// (1, out) C passed the Gemm's check and then failed "1.bias expects (5,)").
  const Constant& as_vector(const Constant& c) {
    if (c.dims.size() == 1) return c;
    if (const auto done = vector_of_.find(&c); done != vector_of_.end()) return *done->second;
    Constant& v = transposed_.emplace_back(c);
    v.dims = {c.dims.back()};
    vector_of_[&c] = &v;
    return v;
  }
  void fold_shape_computations();
  /// The shape after node `node`'s layer `l`, from shape_; a layer that does not fit is the
  /// node's error.
  Shape output_shape(int node, const LayerSpec& l) const {
    try {
      return layer_output_shape(l, shape_);
    } catch (const Error& e) {
      fail_node(node, e.what());
    }
  }
  /// Checks node `node` against its ONNX schema at the file's opset: its attributes (names,
  /// types, the required ones), the number of its inputs and outputs, and its inputs' types.
  /// Every node the import reads passes it before cnn's own restrictions: the folded shape
  /// computations, Constants and aliases, and each layer's nodes (found 2026-12-07: a Reshape
  /// with allowzero, an attribute from opset 14, imported at opset 13).
  void check_schema(int node) const;
  /// The data type of `value`: a constant's or an evaluated folded value's, FLOAT for the graph
  /// input and a parsed layer's output; none where a node not parsed or evaluated yet computes
  /// it (the reader's own checks say more).
  std::optional<int32_t> value_type(const std::string& value) const;
  /// `value`, a constant or the output of a folded node, evaluated (its producers first).
  const Folded& folded_value(const std::string& value);
  /// Evaluates folded node `node`, whose inputs are evaluated, checking it as ONNX specifies.
  void evaluate_folded(int node);
  /// A constant as a folded value.
  Folded folded_constant(const std::shared_ptr<const Constant>& c);
  /// `values` as a folded value's, where the budget for them allows (else unknown).
  std::shared_ptr<const std::vector<int64_t>> keep_values(std::vector<int64_t> values);
  /// Whether node `node` (a Reshape of a value of shape_) flattens each sample: (N, C*H*W).
  bool reshape_flattens(int node);

  std::string path_;
  const onnx::ModelProto& m_;
  int opset_ = 0;
  // Shared: an Identity of a weight (torch aliases equal weights so) names the same tensor,
  // where a copy each made 2,000 Identity nodes of a 4 MB weight take 7.8 GB (found 2026-12-06).
  std::map<std::string, std::shared_ptr<const Constant>> constants_;
  std::map<std::string, int> producer_;            // value -> node index
  std::map<std::string, std::vector<int>> users_;  // value -> node indices
  std::map<std::string, Folded> folded_values_;    // by value
  std::set<int> evaluated_;                        // folded nodes evaluated
  int64_t kept_values_ = 0;                        // in folded_values_, all together
  std::map<std::string, Shape> value_shapes_;      // computed values parsed so far (batch 1)
  std::set<int> used_, folded_;
  /// The padding of a Pad node that the next layer (its one reader, a Conv or an
  /// AveragePool) takes as its own.
  std::optional<Size2> pending_pad_;
  Shape shape_;                        // of the value being parsed, for a batch of 1
  int64_t static_batch_ = 0;           // the graph input's batch size when it is fixed
  int nesting_ = 0;                    // residual blocks being parsed
  std::vector<LayerTensors> tensors_;  // per layer, in the order the model names them
  std::list<Constant> transposed_;     // MatMul's and Gemm's (transB 0) weights, transposed;
                                       // (1, out) biases as (out,)
  std::map<const Constant*, const Constant*> transposed_of_, vector_of_;  // in transposed_
};

void Importer::read_constant(const onnx::TensorProto& t, const std::string& what) {
  if (t.data_location() == onnx::TensorProto::EXTERNAL || t.external_data_size() > 0) {
    fail(what + " '" + t.name() +
         "' keeps its data in an external file (not supported: save the "
         "model with its weights inside the .onnx file)");
  }
  Constant c;
  c.name = t.name();
  int64_t count = 1;
  for (int64_t d : t.dims()) {
    const std::optional<int64_t> product = d < 0 ? std::nullopt : size_product(count, d);
    if (!product) fail(what + " '" + t.name() + "': dimensions overflow or are negative");
    count = *product;
    c.dims.push_back(d);
  }
  // The values from raw_data (little-endian, `width` bytes each) or from the typed field.
  const auto read_values = [&](auto& out, size_t width, const auto& field, const char* kind,
                               auto from_bytes) {
    if (t.has_raw_data()) {
      if (t.raw_data().size() != static_cast<size_t>(count) * width)
        fail(what + " '" + t.name() + "': " + std::to_string(t.raw_data().size()) +
             " bytes of data for " + std::to_string(count) + " " + kind);
      for (int64_t i = 0; i < count; ++i)
        out.push_back(from_bytes(t.raw_data().data() + static_cast<size_t>(i) * width));
    } else {
      if (field.size() != count)
        fail(what + " '" + t.name() + "': " + std::to_string(field.size()) + " values for " +
             std::to_string(count) + " " + kind);
      for (const auto v : field) out.push_back(v);
    }
  };
  const auto load = [](auto value) {
    return [](const char* p) {
      decltype(value) v;
      std::memcpy(&v, p, sizeof v);
      return v;
    };
  };
  c.type = t.data_type();
  if (t.data_type() == onnx::TensorProto::FLOAT) {
    read_values(c.floats, sizeof(float), t.float_data(), "floats", load(0.0f));
    for (float v : c.floats)
      if (!std::isfinite(v)) fail(what + " '" + t.name() + "' holds a non-finite value");
  } else if (t.data_type() == onnx::TensorProto::INT64) {
    c.is_int = true;
    read_values(c.ints, sizeof(int64_t), t.int64_data(), "int64 values", load(int64_t{0}));
  } else if (t.data_type() == onnx::TensorProto::BOOL) {  // Dropout's training_mode
    c.is_int = true;
    read_values(c.ints, 1, t.int32_data(), "booleans",
                [](const char* p) { return int64_t{*p != 0}; });
  } else {
    fail(what + " '" + t.name() + "': data type " + type_name(t.data_type()) +
         " (expected FLOAT, INT64 or BOOL)");
  }
  constants_[t.name()] = std::make_shared<const Constant>(std::move(c));
}

const Constant& Importer::constant_input(int node, int index, const char* role) {
  const onnx::NodeProto& n = m_.graph().node(node);
  if (index >= n.input_size() || n.input(index).empty()) fail_node(node, std::string("no ") + role);
  const auto it = constants_.find(n.input(index));
  if (it == constants_.end() || it->second->is_int) {
    fail_node(node, std::string(role) + " '" + n.input(index) +
                        "' is not a float initializer (computed weights are not supported)");
  }
  return *it->second;
}

const onnx::AttributeProto* Importer::attribute(int node, const std::string& name) const {
  for (const auto& a : m_.graph().node(node).attribute())
    if (a.name() == name) return &a;
  return nullptr;
}

int64_t Importer::int_attribute(int node, const std::string& name, int64_t fallback) const {
  const auto* a = attribute(node, name);
  if (!a) return fallback;
  if (a->type() != onnx::AttributeProto::INT)
    fail_node(node, "attribute " + name + " is not an int");
  return a->i();
}

float Importer::float_attribute(int node, const std::string& name, float fallback) const {
  const auto* a = attribute(node, name);
  if (!a) return fallback;
  if (a->type() != onnx::AttributeProto::FLOAT)
    fail_node(node, "attribute " + name + " is not a float");
  return a->f();
}

std::vector<int64_t> Importer::ints_attribute(int node, const std::string& name,
                                              std::vector<int64_t> fallback) const {
  const auto* a = attribute(node, name);
  if (!a) return fallback;
  if (a->type() != onnx::AttributeProto::INTS)
    fail_node(node, "attribute " + name + " is not a list of ints");
  return {a->ints().begin(), a->ints().end()};
}

void Importer::only_attributes(int node, std::initializer_list<const char*> known) const {
  for (const auto& a : m_.graph().node(node).attribute()) {
    if (std::none_of(known.begin(), known.end(), [&](const char* k) { return a.name() == k; }))
      fail_node(node, "attribute '" + a.name() + "' is not supported");
  }
}

Size2 Importer::pair_attribute(int node, const std::string& name, Size2 fallback) const {
  const std::vector<int64_t> v = ints_attribute(node, name, {fallback.h, fallback.w});
  if (v.size() != 2)
    fail_node(node, name + " has " + std::to_string(v.size()) + " values (expected 2)");
  for (int64_t x : v)
    if (x < 1 || x > kMaxElements)
      fail_node(node, name + " " + std::to_string(x) + " out of range");
  return {v[0], v[1]};
}

Size2 Importer::symmetric_pads(int node) const {
  const std::vector<int64_t> p = ints_attribute(node, "pads", {0, 0, 0, 0});
  if (p.size() != 4)
    fail_node(node, "pads has " + std::to_string(p.size()) + " values (expected 4)");
  for (int64_t x : p)
    if (x < 0 || x > kMaxElements) fail_node(node, "pad " + std::to_string(x) + " out of range");
  if (p[0] != p[2] || p[1] != p[3]) {
    fail_node(node, "asymmetric pads [" + std::to_string(p[0]) + ", " + std::to_string(p[1]) +
                        ", " + std::to_string(p[2]) + ", " + std::to_string(p[3]) +
                        "] (cnn pads both sides alike)");
  }
  const std::string auto_pad =
      attribute(node, "auto_pad") ? attribute(node, "auto_pad")->s() : "NOTSET";
  if (auto_pad != "NOTSET") fail_node(node, "auto_pad " + auto_pad + " (expected explicit pads)");
  return {p[0], p[1]};
}

std::vector<int> Importer::consumers(const std::string& value) const {
  std::vector<int> out;
  const auto it = users_.find(value);
  if (it == users_.end()) return out;
  // users_ lists readers in node order, a node once per input that reads the value: its
  // repeats are neighbours. (A search of `out` took quadratic time: 320,000 readers, 12 s.)
  for (int n : it->second)
    if (!folded_.count(n) && (out.empty() || out.back() != n)) out.push_back(n);
  return out;
}

/// Marks the Shape -> Gather -> Unsqueeze -> Concat (and Constant) nodes that only compute a
/// Reshape's target shape: torch.onnx.export writes them for x.view(x.size(0), -1).
void Importer::fold_shape_computations() {
  // Each is evaluated, and checked as ONNX specifies it, by evaluate_folded (Constants are
  // folded as they are read).
  static const std::set<std::string> kShapeOps = {"Shape", "Gather",  "Unsqueeze", "Concat",
                                                  "Cast",  "Squeeze", "Slice"};
  bool changed = true;
  while (changed) {
    changed = false;
    // Users come after their producers: deciding them first folds a chain in one pass.
    for (int i = m_.graph().node_size() - 1; i >= 0; --i) {
      const onnx::NodeProto& n = m_.graph().node(i);
      if (folded_.count(i) || !onnx_domain(n) || !kShapeOps.count(n.op_type())) continue;
      bool only_shapes = n.output_size() > 0;
      for (const std::string& out : n.output()) {
        const auto it = users_.find(out);
        if (it == users_.end()) {
          only_shapes = false;
          break;
        }
        for (int user : it->second) {
          const onnx::NodeProto& u = m_.graph().node(user);
          const bool shape_input = u.op_type() == "Reshape" && u.input_size() > 1 &&
                                   u.input(1) == out && u.input(0) != out;
          if (!shape_input && !folded_.count(user)) only_shapes = false;
        }
      }
      if (only_shapes) {
        folded_.insert(i);
        changed = true;
      }
    }
  }
}

std::optional<int32_t> Importer::value_type(const std::string& value) const {
  if (const auto f = folded_values_.find(value); f != folded_values_.end()) return f->second.type;
  if (const auto c = constants_.find(value); c != constants_.end()) return c->second->type;
  const auto p = producer_.find(value);
  if (p == producer_.end()) return onnx::TensorProto::FLOAT;    // the graph input (checked)
  if (used_.count(p->second)) return onnx::TensorProto::FLOAT;  // a layer's output
  return std::nullopt;
}

void Importer::check_schema(int node) const {
  const onnx::NodeProto& n = m_.graph().node(node);
  const std::string at = " at opset " + std::to_string(opset_);
  const onnx::OpSchema* schema = onnx::OpSchemaRegistry::Schema(n.op_type(), opset_, "");
  if (schema == nullptr) fail_node(node, "is not an ONNX operator" + at);
  const auto names = [](const auto& items, const auto& name_of) {
    std::string text;
    for (const auto& item : items) text += (text.empty() ? "" : ", ") + name_of(item);
    return text.empty() ? std::string("none") : text;
  };
  const auto& attributes = schema->attributes();
  for (const onnx::AttributeProto& a : n.attribute()) {
    const auto known = attributes.find(a.name());
    if (known == attributes.end()) {
      fail_node(node, "attribute '" + a.name() + "' is not " + n.op_type() + "'s" + at +
                          " (expected " +
                          names(attributes, [](const auto& entry) { return entry.first; }) + ")");
    }
    if (a.type() != known->second.type) {
      fail_node(node, "attribute '" + a.name() + "' is " +
                          onnx::AttributeProto_AttributeType_Name(a.type()) + " (expected " +
                          onnx::AttributeProto_AttributeType_Name(known->second.type) + ")");
    }
  }
  for (const auto& [name, a] : attributes)
    if (a.required && attribute(node, name) == nullptr)
      fail_node(node, "no attribute '" + name + "' (required" + at + ")");
  const auto count = [&](int given, int low, int high, const auto& formal, const char* what) {
    if (given >= low && given <= high) return;
    const std::string range = low == high ? std::to_string(low)
                              : high == std::numeric_limits<int>::max()
                                  ? "at least " + std::to_string(low)
                                  : std::to_string(low) + " to " + std::to_string(high);
    fail_node(node, std::to_string(given) + " " + what + (given == 1 ? "" : "s") + " (expected " +
                        range + at + ": " +
                        names(formal, [](const auto& f) { return f.GetName(); }) + ")");
  };
  count(n.input_size(), schema->min_input(), schema->max_input(), schema->inputs(), "input");
  count(n.output_size(), schema->min_output(), schema->max_output(), schema->outputs(), "output");
  // Each input of a type its parameter allows, and alike where parameters share a type (T).
  std::map<std::string, int32_t> bound;
  for (int k = 0; k < n.input_size(); ++k) {
    const auto& formal = schema->inputs()[std::min<size_t>(k, schema->inputs().size() - 1)];
    if (n.input(k).empty()) {
      if (formal.GetOption() != onnx::OpSchema::Optional)
        fail_node(node, "input " + std::to_string(k) + " (" + formal.GetName() +
                            ") is not given (required)");
      continue;
    }
    const std::optional<int32_t> known_type = value_type(n.input(k));
    if (!known_type) continue;
    const int32_t type = *known_type;
    onnx::TypeProto proto;
    proto.mutable_tensor_type()->set_elem_type(type);
    if (!formal.GetTypes().count(onnx::Utils::DataTypeUtils::ToType(proto))) {
      std::vector<std::string> allowed;
      for (const auto* t : formal.GetTypes()) allowed.push_back(*t);
      std::sort(allowed.begin(), allowed.end());
      fail_node(node, "input '" + n.input(k) + "' (" + formal.GetName() + ") is " +
                          type_name(type) + " (expected " +
                          names(allowed, [](const std::string& t) { return t; }) + ")");
    }
    const auto [first, fresh] = bound.emplace(formal.GetTypeStr(), type);
    if (!fresh && first->second != type) {
      fail_node(node, "input '" + n.input(k) + "' is " + type_name(type) +
                          " where an input before it is " + type_name(first->second) +
                          " (expected one type " + formal.GetTypeStr() + ")");
    }
  }
}

std::shared_ptr<const std::vector<int64_t>> Importer::keep_values(std::vector<int64_t> values) {
  if (static_cast<int64_t>(values.size()) > kMaxFoldedValues - kept_values_) return nullptr;
  kept_values_ += static_cast<int64_t>(values.size());
  return std::make_shared<const std::vector<int64_t>>(std::move(values));
}

Folded Importer::folded_constant(const std::shared_ptr<const Constant>& c) {
  if (c->dims.size() > kMaxFoldedRank) {
    fail("'" + c->name + "' of rank " + std::to_string(c->dims.size()) +
         " is read by a shape computation (cnn folds them up to rank " +
         std::to_string(kMaxFoldedRank) + ")");
  }
  Folded f;
  f.type = c->type;
  f.dims = c->dims;
  // kBatch stands for the batch size, so a constant that holds it has no known values here.
  if (c->is_int && std::find(c->ints.begin(), c->ints.end(), kBatch) == c->ints.end())
    f.ints = std::shared_ptr<const std::vector<int64_t>>(c, &c->ints);  // shared, not copied
  return f;
}

const Folded& Importer::folded_value(const std::string& value) {
  // Whether `v` is evaluated (a constant is made so).
  const auto ready = [&](const std::string& v) {
    if (v.empty() || folded_values_.count(v)) return true;
    const auto c = constants_.find(v);
    if (c == constants_.end()) return false;
    folded_values_.emplace(v, folded_constant(c->second));
    return true;
  };
  if (ready(value)) return folded_values_.at(value);
  // Producers first, from an explicit stack: a hostile chain may be 100,000 nodes long.
  std::vector<int> stack{producer_.at(value)};
  while (!stack.empty()) {
    const int p = stack.back();
    if (evaluated_.count(p)) {
      stack.pop_back();
      continue;
    }
    const onnx::NodeProto& n = m_.graph().node(p);
    bool inputs_ready = true;
    for (int k = 0; k < n.input_size(); ++k) {
      const std::string& in = n.input(k);
      if (ready(in)) continue;
      const auto q = producer_.find(in);
      if (q != producer_.end() && folded_.count(q->second)) {
        stack.push_back(q->second);
        inputs_ready = false;
      } else if (n.op_type() != "Shape" || k != 0) {  // a Shape reads a value's shape alone
        fail_node(p, "input '" + in + "' is " +
                         (q == producer_.end()
                              ? std::string("the graph input")
                              : "computed by node '" + m_.graph().node(q->second).name() + "' (" +
                                    m_.graph().node(q->second).op_type() + ")") +
                         " (expected a constant or a shape computation's value: cnn evaluates "
                         "these nodes at import)");
      }
    }
    if (!inputs_ready) continue;
    evaluate_folded(p);
    evaluated_.insert(p);
    stack.pop_back();
  }
  return folded_values_.at(value);
}

void Importer::evaluate_folded(int node) {
  check_schema(node);
  const onnx::NodeProto& n = m_.graph().node(node);
  const std::string& op = n.op_type();
  const auto input = [&](int k) -> const Folded& { return folded_values_.at(n.input(k)); };
  const auto known = [](const Folded& f) {
    return f.ints && std::find(f.ints->begin(), f.ints->end(), kBatch) == f.ints->end();
  };
  // Values are kept where they are few: shape computations hold a handful, and a hostile graph
  // must not make them take gigabytes.
  const auto can_keep = [&](int64_t count) { return count <= kMaxFoldedValues - kept_values_; };
  const auto numel = [&](const std::vector<int64_t>& dims) {
    int64_t count = 1;
    for (int64_t d : dims) {
      const std::optional<int64_t> product = size_product(count, d);
      if (!product) fail_node(node, "its output has over 2^48 elements");
      count = *product;
    }
    return count;
  };
  // Axis `a` of `whose` (a tensor of rank `rank`), from -rank to rank - 1, made non-negative.
  const auto axis_of = [&](int64_t a, int64_t rank, const std::string& whose) {
    if (a < -rank || a >= rank) {
      fail_node(node, "axis " + std::to_string(a) + " is outside " + std::to_string(-rank) +
                          " to " + std::to_string(rank - 1) + " (" + whose + " has rank " +
                          std::to_string(rank) + ")");
    }
    return a < 0 ? a + rank : a;
  };
  const std::string data_name = n.input_size() > 0 ? "'" + n.input(0) + "'" : "";
  // Axes made non-negative, each named once.
  const auto axes_of = [&](std::vector<int64_t> axes, int64_t rank, const std::string& whose) {
    const std::vector<int64_t> given = axes;
    for (int64_t& a : axes) a = axis_of(a, rank, whose);
    std::sort(axes.begin(), axes.end());
    if (std::adjacent_find(axes.begin(), axes.end()) != axes.end())
      fail_node(node, "axes " + list_text(given) + " name an axis twice");
    return axes;
  };
  // A 1-d list of known integers (axes, starts, ends, steps) from input k.
  const auto list_input = [&](int k, const char* role) {
    const Folded& f = input(k);
    if (f.dims.size() != 1)
      fail_node(node, std::string(role) + " '" + n.input(k) + "' has rank " +
                          std::to_string(f.dims.size()) + " (expected a 1-d list)");
    if (!known(f))
      fail_node(node, std::string(role) + " '" + n.input(k) +
                          "' is not known at import (cnn evaluates shape computations then)");
    return *f.ints;
  };
  Folded out;
  if (op == "Shape") {
    std::vector<int64_t> dims;
    const std::string& of = n.input(0);
    if (const auto f = folded_values_.find(of); f != folded_values_.end()) {
      dims = f->second.dims;
    } else if (const auto s = value_shapes_.find(of); s != value_shapes_.end()) {
      dims.assign(s->second.begin(), s->second.end());
      dims[0] = kBatch;
    } else {
      fail_node(node, "reads the shape of '" + of +
                          "', which cnn does not know there (it follows the shapes of the "
                          "values its layers compute, in their order)");
    }
    // From opset 15, start and end slice the shape, clamped to it.
    const auto rank = static_cast<int64_t>(dims.size());
    const auto clamped = [&](int64_t i) {
      return std::clamp<int64_t>(i < 0 ? i + rank : i, 0, rank);
    };
    const int64_t start = clamped(int_attribute(node, "start", 0));
    const int64_t end = std::max(start, clamped(int_attribute(node, "end", rank)));
    out.type = onnx::TensorProto::INT64;
    out.dims = {end - start};
    out.ints = keep_values({dims.begin() + start, dims.begin() + end});
  } else if (op == "Gather") {
    const Folded &data = input(0), &indices = input(1);
    const auto rank = static_cast<int64_t>(data.dims.size());
    if (rank < 1) fail_node(node, "data '" + n.input(0) + "' is a scalar (expected rank >= 1)");
    const int64_t axis = axis_of(int_attribute(node, "axis", 0), rank, data_name);
    const int64_t size = data.dims[static_cast<size_t>(axis)];
    if (known(indices)) {
      for (int64_t i : *indices.ints)
        if (i < -size || i >= size)
          fail_node(node, "index " + std::to_string(i) + " is outside " + std::to_string(-size) +
                              " to " + std::to_string(size - 1) + " (axis " + std::to_string(axis) +
                              " of '" + n.input(0) + "' has " + std::to_string(size) + ")");
    }
    out.type = data.type;
    out.dims.assign(data.dims.begin(), data.dims.begin() + axis);
    out.dims.insert(out.dims.end(), indices.dims.begin(), indices.dims.end());
    out.dims.insert(out.dims.end(), data.dims.begin() + axis + 1, data.dims.end());
    if (out.dims.size() > kMaxFoldedRank)
      fail_node(node, "its output has rank " + std::to_string(out.dims.size()) +
                          " (cnn evaluates shape computations up to rank " +
                          std::to_string(kMaxFoldedRank) + ")");
    const int64_t count = numel(out.dims);
    if (data.ints && known(indices) && can_keep(count)) {
      const int64_t outer = numel({data.dims.begin(), data.dims.begin() + axis});
      const int64_t inner = numel({data.dims.begin() + axis + 1, data.dims.end()});
      std::vector<int64_t> values;
      values.reserve(static_cast<size_t>(count));
      for (int64_t o = 0; o < outer; ++o)
        for (int64_t i : *indices.ints)
          for (int64_t k = 0; k < inner; ++k)
            values.push_back(
                (*data.ints)[static_cast<size_t>((o * size + (i < 0 ? i + size : i)) * inner + k)]);
      out.ints = keep_values(std::move(values));
    }
  } else if (op == "Unsqueeze" || op == "Squeeze") {
    // Before opset 13 the axes are an attribute, from 13 an input (the schema checked which).
    const Folded& data = input(0);
    const bool given = opset_ < 13 ? attribute(node, "axes") != nullptr : has_input(node, 1);
    const std::vector<int64_t> listed = opset_ < 13 ? ints_attribute(node, "axes", {})
                                        : given     ? list_input(1, "axes")
                                                    : std::vector<int64_t>{};
    out.type = data.type;
    out.ints = data.ints;  // the same values, in the same order
    if (op == "Unsqueeze") {
      const size_t output_rank = data.dims.size() + listed.size();
      if (output_rank > kMaxFoldedRank)
        fail_node(node, "its output has rank " + std::to_string(output_rank) +
                            " (cnn evaluates shape computations up to rank " +
                            std::to_string(kMaxFoldedRank) + ")");
      const auto rank = static_cast<int64_t>(output_rank);
      const std::vector<int64_t> axes = axes_of(listed, rank, "the output");
      size_t next = 0;
      for (int64_t d = 0; d < rank; ++d)
        out.dims.push_back(std::binary_search(axes.begin(), axes.end(), d) ? 1 : data.dims[next++]);
    } else {
      const auto rank = static_cast<int64_t>(data.dims.size());
      const std::vector<int64_t> axes = axes_of(listed, rank, data_name);
      for (int64_t a : axes)
        if (data.dims[static_cast<size_t>(a)] != 1)
          fail_node(node, "axis " + std::to_string(a) + " of '" + n.input(0) + "' has size " +
                              std::to_string(data.dims[static_cast<size_t>(a)]) +
                              " (expected 1: Squeeze removes dimensions of size 1)");
      for (int64_t d = 0; d < rank; ++d) {
        const bool squeezed = given ? std::binary_search(axes.begin(), axes.end(), d)
                                    : data.dims[static_cast<size_t>(d)] == 1;
        if (!squeezed) out.dims.push_back(data.dims[static_cast<size_t>(d)]);
      }
    }
  } else if (op == "Concat") {
    const Folded& first = input(0);
    const auto rank = static_cast<int64_t>(first.dims.size());
    if (rank < 1) fail_node(node, "input '" + n.input(0) + "' is a scalar (expected rank >= 1)");
    const int64_t axis = axis_of(int_attribute(node, "axis", 0), rank, data_name);
    out.type = first.type;
    out.dims = first.dims;
    out.dims[static_cast<size_t>(axis)] = 0;
    bool all_known = true;
    for (int k = 0; k < n.input_size(); ++k) {
      const Folded& part = input(k);
      std::vector<int64_t> expected = out.dims;
      expected[static_cast<size_t>(axis)] =
          part.dims.size() == first.dims.size() ? part.dims[static_cast<size_t>(axis)] : 0;
      if (part.dims != expected)
        fail_node(node, "input '" + n.input(k) + "' has shape " + list_text(part.dims) +
                            " where '" + n.input(0) + "' has " + list_text(first.dims) +
                            " (expected the same but along axis " + std::to_string(axis) + ")");
      const std::optional<int64_t> sum =
          size_sum(out.dims[static_cast<size_t>(axis)], part.dims[static_cast<size_t>(axis)]);
      if (!sum) fail_node(node, "its output has over 2^48 elements");
      out.dims[static_cast<size_t>(axis)] = *sum;
      all_known = all_known && part.ints;
    }
    const int64_t count = numel(out.dims);
    if (all_known && can_keep(count)) {
      const int64_t outer = numel({first.dims.begin(), first.dims.begin() + axis});
      const int64_t inner = numel({first.dims.begin() + axis + 1, first.dims.end()});
      std::vector<int64_t> values;
      values.reserve(static_cast<size_t>(count));
      for (int64_t o = 0; o < outer; ++o)
        for (int k = 0; k < n.input_size(); ++k) {
          const int64_t chunk = input(k).dims[static_cast<size_t>(axis)] * inner;
          const auto from = input(k).ints->begin() + o * chunk;
          values.insert(values.end(), from, from + chunk);
        }
      out.ints = keep_values(std::move(values));
    }
  } else if (op == "Cast") {
    const Folded& data = input(0);
    const int64_t to = int_attribute(node, "to", 0);
    const onnx::OpSchema* schema = onnx::OpSchemaRegistry::Schema(op, opset_, "");
    onnx::TypeProto proto;
    const bool valid = to > onnx::TensorProto::UNDEFINED && to <= std::numeric_limits<int>::max() &&
                       onnx::TensorProto_DataType_IsValid(static_cast<int>(to));
    if (valid) proto.mutable_tensor_type()->set_elem_type(static_cast<int32_t>(to));
    if (!valid || !schema->outputs()[0].GetTypes().count(onnx::Utils::DataTypeUtils::ToType(proto)))
      fail_node(node, "to " + type_name(to) + " is not a type Cast makes at opset " +
                          std::to_string(opset_));
    out.type = static_cast<int32_t>(to);
    out.dims = data.dims;
    // Integers stay themselves as INT64, and as INT32 where they fit (the batch size does).
    const bool integers = data.type == onnx::TensorProto::INT64 ||
                          data.type == onnx::TensorProto::INT32 ||
                          data.type == onnx::TensorProto::BOOL;
    const auto fits = [](int64_t v) {
      return v == kBatch ||
             (v >= std::numeric_limits<int32_t>::min() && v <= std::numeric_limits<int32_t>::max());
    };
    if (data.ints && integers &&
        (to == onnx::TensorProto::INT64 ||
         (to == onnx::TensorProto::INT32 &&
          std::all_of(data.ints->begin(), data.ints->end(), fits))))
      out.ints = data.ints;
  } else if (op == "Slice") {
    const Folded& data = input(0);
    const auto rank = static_cast<int64_t>(data.dims.size());
    if (rank < 1) fail_node(node, "data '" + n.input(0) + "' is a scalar (expected rank >= 1)");
    const std::vector<int64_t> starts = list_input(1, "starts"), ends = list_input(2, "ends");
    std::vector<int64_t> axes, steps(starts.size(), 1);
    for (size_t i = 0; i < starts.size(); ++i) axes.push_back(static_cast<int64_t>(i));
    if (has_input(node, 3)) axes = list_input(3, "axes");
    if (has_input(node, 4)) steps = list_input(4, "steps");
    if (ends.size() != starts.size() || axes.size() != starts.size() ||
        steps.size() != starts.size())
      fail_node(node, "starts " + list_text(starts) + ", ends " + list_text(ends) + ", axes " +
                          list_text(axes) + " and steps " + list_text(steps) +
                          " (expected lists of one length)");
    axes_of(axes, rank, data_name);  // each axis once
    out.type = data.type;
    out.dims = data.dims;
    std::vector<int64_t> first(starts.size()), stride(starts.size());
    for (size_t i = 0; i < starts.size(); ++i) {
      const int64_t axis = axis_of(axes[i], rank, data_name);
      const int64_t size = data.dims[static_cast<size_t>(axis)];
      int64_t start = starts[i], end = ends[i];
      const int64_t step = steps[i];
      if (step == 0) fail_node(node, "step 0 (expected a step other than 0)");
      // ONNX's clamping: negatives count from the end, then into the dimension.
      if (start < 0) start += size;
      if (end < 0) end += size;
      start =
          step > 0 ? std::clamp<int64_t>(start, 0, size) : std::clamp<int64_t>(start, 0, size - 1);
      end = step > 0 ? std::clamp<int64_t>(end, 0, size) : std::clamp<int64_t>(end, -1, size - 1);
      const int64_t span = step > 0 ? end - start : start - end;
      const int64_t magnitude = step > 0 ? step
                                : step == std::numeric_limits<int64_t>::min()
                                    ? std::numeric_limits<int64_t>::max()
                                    : -step;
      out.dims[static_cast<size_t>(axis)] = span > 0 ? (span - 1) / magnitude + 1 : 0;
      first[i] = start;
      stride[i] = step;
    }
    if (starts.empty()) {
      out.ints = data.ints;  // sliced along no axis
    } else if (rank == 1 && data.ints && can_keep(out.dims[0])) {
      std::vector<int64_t> values;
      for (int64_t k = 0; k < out.dims[0]; ++k)
        values.push_back((*data.ints)[static_cast<size_t>(first[0] + k * stride[0])]);
      out.ints = keep_values(std::move(values));
    }
  } else {
    fail_node(node, "is not a shape computation cnn evaluates");
  }
  if (n.output(0).empty()) fail_node(node, "its output has no name");
  folded_values_[n.output(0)] = std::move(out);
}

bool Importer::reshape_flattens(int node) {
  const onnx::NodeProto& n = m_.graph().node(node);
  if (!has_input(node, 1)) return false;
  const std::string& target = n.input(1);
  const auto producer = producer_.find(target);
  if (!constants_.count(target) &&
      (producer == producer_.end() || !folded_.count(producer->second)))
    return false;
  const Folded& shape = folded_value(target);
  if (shape.type != onnx::TensorProto::INT64)
    fail_node(node, "shape '" + target + "' is " + type_name(shape.type) + " (expected INT64)");
  if (shape.dims.size() != 1)
    fail_node(node, "shape '" + target + "' has rank " + std::to_string(shape.dims.size()) +
                        " (expected a 1-d list)");
  if (!shape.ints || shape.ints->size() != 2) return false;
  const std::vector<int64_t>& t = *shape.ints;
  const std::int64_t features = shape_.numel();  // shape_ is for a batch of 1
  // 0 copies the input's dimension, unless allowzero makes it a literal 0.
  const bool copies = int_attribute(node, "allowzero", 0) == 0;
  const bool batch =
      t[0] == kBatch || (t[0] == 0 && copies) || (static_batch_ > 0 && t[0] == static_batch_);
  if (batch) return t[1] == -1 || t[1] == features;
  return t[0] == -1 && t[1] == features;
}

std::string Importer::residual(const std::string& value, const std::vector<int>& forks,
                               std::vector<LayerSpec>& layers) {
  // Each nested block is a level of recursion: a hostile file must not exhaust the stack.
  if (++nesting_ > kMaxResidualNesting) {
    fail("residual blocks nested deeper than " + std::to_string(kMaxResidualNesting) + " levels");
  }
  struct Leave {
    int& depth;
    ~Leave() { --depth; }
  } leave{nesting_};
  // Blocks nested at the start of a body or shortcut read the value too, one fork more per
  // level: more than the nesting limit allows cannot be residual blocks.
  if (forks.size() < 2 || forks.size() > size_t{kMaxResidualNesting} + 1) {
    fail("value '" + value + "' feeds " + std::to_string(forks.size()) +
         " nodes (expected one, or two branches joined by an Add: a residual block)");
  }
  // Which forks reach each node, walking the nodes in their order from the first fork (ONNX
  // requires topological order, and the graph was checked for it): the block's Add is the first
  // node that every fork reaches, and two forks that meet before it belong to a block nested at
  // the start of the same branch. The walk ends at the Add, so a chain of blocks costs its
  // length, not its square.
  using Forks = std::bitset<kMaxResidualNesting + 1>;
  std::map<int, Forks> reached;  // node -> the forks that reach it
  for (size_t i = 0; i < forks.size(); ++i) reached[forks[i]].set(i);
  std::vector<std::vector<int>> meet(forks.size(), std::vector<int>(forks.size(), -1));
  int join = -1;
  for (int n = *std::min_element(forks.begin(), forks.end());
       join < 0 && n < m_.graph().node_size(); ++n) {
    if (folded_.count(n)) continue;
    Forks here;
    if (const auto self = reached.find(n); self != reached.end()) here = self->second;
    for (const std::string& in : m_.graph().node(n).input()) {
      const auto p = producer_.find(in);
      if (p == producer_.end()) continue;
      const auto r = reached.find(p->second);
      if (r != reached.end()) here |= r->second;
    }
    if (here.none()) continue;
    reached[n] = here;
    for (size_t i = 0; i < forks.size(); ++i)
      for (size_t j = i + 1; j < forks.size(); ++j)
        if (here[i] && here[j] && meet[i][j] < 0) meet[i][j] = n;
    if (here.count() == forks.size()) join = n;
  }
  // Where they meet is named (found 2026-12-06: SiLU's Mul, torch's computed view() sizes and
  // a torch.cat all said "do not join in an Add", naming no node).
  if (join < 0) {
    fail("the branches from value '" + value +
         "' never join (cnn imports a value read by several nodes only as a residual block, "
         "whose two branches join in an Add)");
  }
  if (m_.graph().node(join).op_type() == "Add" && onnx_domain(m_.graph().node(join)))
    check_schema(join);
  if (m_.graph().node(join).op_type() != "Add" || !onnx_domain(m_.graph().node(join)) ||
      m_.graph().node(join).input_size() != 2) {
    fail_node(join, "joins the branches from value '" + value +
                        "' (cnn imports a value read by several nodes only as a residual block, "
                        "whose two branches join in an Add)");
  }
  // Forks that meet before the join are one branch (union-find); there must be two.
  std::vector<size_t> group(forks.size());
  for (size_t i = 0; i < forks.size(); ++i) group[i] = i;
  const auto root = [&](size_t i) {
    while (group[i] != i) i = group[i];
    return i;
  };
  for (size_t i = 0; i < forks.size(); ++i)
    for (size_t j = i + 1; j < forks.size(); ++j)
      if (meet[i][j] != join) group[root(j)] = root(i);
  std::vector<size_t> roots;
  for (size_t i = 0; i < forks.size(); ++i)
    if (std::find(roots.begin(), roots.end(), root(i)) == roots.end()) roots.push_back(root(i));
  if (roots.size() != 2) {
    fail("value '" + value + "' feeds " + std::to_string(forks.size()) +
         " nodes that are not two branches joined by an Add (a residual block, blocks nested "
         "at its branches' starts included)");
  }
  std::vector<int> branches[2];
  for (size_t i = 0; i < forks.size(); ++i)
    branches[root(i) == roots[0] ? 0 : 1].push_back(forks[i]);
  used_.insert(join);
  // One branch: its layers from `value` up to the join. A branch of several forks starts with
  // a block nested in it, and goes on after that block's output.
  const auto branch = [&](const std::vector<int>& starts, std::vector<LayerSpec>& list) {
    if (starts.size() == 1) return starts[0] == join ? value : chain(value, join, list, starts[0]);
    return chain(residual(value, starts, list), join, list);
  };
  const onnx::NodeProto& add = m_.graph().node(join);
  LayerSpec block;
  block.type = "Residual";
  block.activation = "";
  const Shape shape = shape_;
  std::vector<LayerSpec> first, second;
  std::vector<LayerTensors> saved = std::move(tensors_);
  // Each branch's layers are parsed into their own list: the body's tensors come first.
  tensors_.clear();
  branch(branches[0], first);
  std::vector<LayerTensors> first_tensors = std::move(tensors_);
  const Shape shape_first = shape_;
  shape_ = shape;
  tensors_.clear();
  branch(branches[1], second);
  std::vector<LayerTensors> second_tensors = std::move(tensors_);
  if (shape_ != shape_first) {
    fail_node(join, "adds values of shapes " + shape_first.str() + " and " + shape_.str() +
                        " (batch 1; expected equal shapes)");
  }
  tensors_ = std::move(saved);
  // The body is the branch whose first node comes first, as torch writes `body(x) +
  // shortcut(x)` and our export its body's nodes; the identity is the shortcut. Not the Add's
  // input order: an Add is commutative, and Add(shortcut, body) imported with the branches'
  // names swapped (our own export so, with its metadata, was refused; found 2026-12-06). Our
  // metadata, where there is some, names them in the end (take_branches).
  if (first.empty() && second.empty()) fail_node(join, "adds a value to itself");
  const bool first_is_body = !first.empty();
  block.body = first_is_body ? first : second;
  block.shortcut = first_is_body ? second : first;
  LayerTensors all;
  all.body = std::move(first_is_body ? first_tensors : second_tensors);
  all.shortcut = std::move(first_is_body ? second_tensors : first_tensors);
  const std::string out = block_activation(add.output(0), block);
  layers.push_back(std::move(block));
  tensors_.push_back(std::move(all));
  return out;
}

int Importer::relu6_min(int relu) {
  const onnx::NodeProto& head = m_.graph().node(relu);
  if (head.output_size() < 1) return -1;
  const std::string& r = head.output(0);
  const std::vector<int> readers = consumers(r);
  if (readers.size() != 2) return -1;
  const auto is = [&](int k, const char* op) {
    return k >= 0 && m_.graph().node(k).op_type() == op && onnx_domain(m_.graph().node(k));
  };
  // The one reader of node k's first output, or -1.
  const auto only_reader = [&](int k) {
    const onnx::NodeProto& n = m_.graph().node(k);
    if (n.output_size() < 1) return -1;
    const std::vector<int> next = consumers(n.output(0));
    return next.size() == 1 ? next[0] : -1;
  };
  const int neg = is(readers[0], "Neg") ? readers[0] : readers[1];
  const int min = neg == readers[0] ? readers[1] : readers[0];
  if (!is(neg, "Neg") || !is(min, "Min")) return -1;
  const int zero = only_reader(neg);
  const int six = is(zero, "Relu") ? only_reader(zero) : -1;
  if (!is(six, "Add") || only_reader(six) != min) return -1;
  // Wired as the form: each node is checked, ONNX's schema first.
  for (int k : {neg, zero, six, min}) check_schema(k);
  const auto& g = m_.graph();
  const std::string form = " (cnn imports min(r, 6 + relu(-r)), r = relu(x), as ReLU6)";
  if (g.node(neg).input(0) != r) fail_node(neg, "expected '" + r + "' as its input" + form);
  const std::string& sum = g.node(six).output(0);
  if (g.node(min).input_size() != 2 ||
      !((g.node(min).input(0) == r && g.node(min).input(1) == sum) ||
        (g.node(min).input(0) == sum && g.node(min).input(1) == r)))
    fail_node(min, "expected the inputs '" + r + "' and '" + sum + "'" + form);
  const onnx::NodeProto& add = g.node(six);
  const int other = add.input(0) == g.node(zero).output(0) ? 1 : 0;
  if (add.input(1 - other) != g.node(zero).output(0))
    fail_node(six, "expected '" + g.node(zero).output(0) + "' as an input" + form);
  const auto c = constants_.find(add.input(other));
  if (c == constants_.end() || c->second->is_int || c->second->floats.size() != 1 ||
      c->second->floats[0] != 6.0f || static_cast<int>(c->second->dims.size()) > shape_.rank())
    fail_node(six, "input '" + add.input(other) +
                       "' is not a float constant 6 of one value and at most the input's rank" +
                       form);
  for (int k : {neg, zero, six, min}) used_.insert(k);
  return min;
}

void Importer::fail_computed_input(int node, int k) const {
  const std::string& value = m_.graph().node(node).input(k);
  const auto producer = producer_.find(value);
  fail_node(node, "input '" + value + "' is computed" +
                      (producer == producer_.end()
                           ? std::string(" (a graph input)")
                           : " by node '" + m_.graph().node(producer->second).name() + "' (" +
                                 m_.graph().node(producer->second).op_type() + ")") +
                      ", not an initializer or a Constant (cnn imports fixed weights, shapes "
                      "and pads)");
}

Size2 Importer::with_pending_pad(Size2 own) {
  if (!pending_pad_) return own;
  const Size2 sum(own.h + pending_pad_->h, own.w + pending_pad_->w);
  pending_pad_.reset();
  return sum;
}

std::string Importer::block_activation(const std::string& sum, LayerSpec& block) {
  value_shapes_[sum] = shape_;
  // An activation right after the sum, its only reader, is the block's.
  const std::vector<int> next = consumers(sum);
  if (next.size() == 1) {
    const std::string& op = m_.graph().node(next[0]).op_type();
    // A Relu that starts a ReLU6 (our export's form) is the layer after the block.
    if ((op == "Relu" || op == "Tanh" || op == "Sigmoid") &&
        onnx_domain(m_.graph().node(next[0])) && (op != "Relu" || relu6_min(next[0]) < 0)) {
      check_schema(next[0]);
      block.activation = op == "Relu" ? "ReLU" : op;
      used_.insert(next[0]);
      return m_.graph().node(next[0]).output(0);
    }
  }
  return sum;
}

std::string Importer::doubled(int add, std::vector<LayerSpec>& layers) {
  // x + x: a residual block whose body and shortcut are both the identity. A spec's body is
  // never empty, so it holds a Dropout of p 0 (the identity in training too); as_in_a_graph
  // writes our own export's all-Dropout body so (found 2026-12-06: a Residual whose body was
  // a Dropout exported to Add(x, x), which did not import).
  check_schema(add);
  used_.insert(add);
  LayerSpec block;
  block.type = "Residual";
  block.activation = "";
  block.body = {identity_layer()};
  const std::string out = block_activation(m_.graph().node(add).output(0), block);
  layers.push_back(std::move(block));
  LayerTensors none;
  none.body.emplace_back();  // the Dropout's, as many as the body's layers
  tensors_.push_back(std::move(none));
  return out;
}

std::string Importer::chain(std::string value, int join, std::vector<LayerSpec>& layers,
                            int first) {
  value_shapes_[value] = shape_;  // for a Shape node that reads it
  if (first >= 0) value = apply(first, value, layers);
  for (;;) {
    value_shapes_[value] = shape_;
    const std::vector<int> next = consumers(value);
    if (next.empty()) return value;
    if (next.size() == 1) {
      if (next[0] == join) return value;
      const onnx::NodeProto& n = m_.graph().node(next[0]);
      if (n.op_type() == "Add" && onnx_domain(n) && n.input_size() == 2 && n.input(0) == value &&
          n.input(1) == value) {
        value = doubled(next[0], layers);
        continue;
      }
      value = apply(next[0], value, layers);
      continue;
    }
    value = residual(value, next, layers);
  }
}

std::string Importer::apply(int i, const std::string& value, std::vector<LayerSpec>& layers) {
  const onnx::NodeProto& n = m_.graph().node(i);
  const std::string& op = n.op_type();
  if (!n.domain().empty() && n.domain() != "ai.onnx")
    fail_node(i, "domain '" + n.domain() + "' is not supported");
  // The ops read below: each is first held to ONNX's schema at the file's opset (attributes,
  // inputs, outputs, types), then to what cnn's layers can express. Other ops are refused by
  // name below, valid ONNX or not.
  static const std::set<std::string> kLayerOps = {"Conv",       "BatchNormalization",
                                                  "Relu",       "Tanh",
                                                  "Sigmoid",    "LeakyRelu",
                                                  "Clip",       "Softmax",
                                                  "MaxPool",    "AveragePool",
                                                  "ReduceMean", "GlobalAveragePool",
                                                  "Flatten",    "Reshape",
                                                  "Gemm",       "MatMul",
                                                  "Pad",        "Dropout",
                                                  "Identity"};
  if (kLayerOps.count(op)) {
    // A Reshape's target computed by folded nodes is evaluated first, so that its type is known.
    if (const auto p =
            op == "Reshape" && n.input_size() > 1 ? producer_.find(n.input(1)) : producer_.end();
        p != producer_.end() && folded_.count(p->second))
      folded_value(n.input(1));
    check_schema(i);
  }
  if (n.input_size() < 1 || n.input(0) != value)
    fail_node(i, "expected '" + value + "' as its first input (a chain of layers)");
  // A Reshape's target may be computed (reshape_flattens follows it); a Pad checks its inputs
  // itself, after its mode, which says more than computed pads.
  for (int k = 1; k < n.input_size() && op != "Pad"; ++k) {
    if (!n.input(k).empty() && !constants_.count(n.input(k)) &&
        !(op == "Reshape" && k == 1 && producer_.count(n.input(k))))
      fail_computed_input(i, k);
  }
  if (n.output_size() < 1) fail_node(i, "no output");
  for (int k = 1; k < n.output_size(); ++k) {
    if (!n.output(k).empty() && !consumers(n.output(k)).empty())
      fail_node(i, "its output " + std::to_string(k) + " is used (only the first is supported)");
  }
  used_.insert(i);
  LayerSpec l;
  LayerTensors t;
  std::string output = n.output(0);
  const auto param = [&](const char* name, int index, const char* role) {
    t.parameters.emplace_back(name, &constant_input(i, index, role));
  };
  if (op == "Conv") {
    only_attributes(i, {"kernel_shape", "strides", "pads", "dilations", "group", "auto_pad"});
    if (shape_.rank() != 4) fail_node(i, "expects a 4-d input here");
    const Constant& w = constant_input(i, 1, "weight");
    if (w.dims.size() != 4)
      fail_node(i, "weight of rank " + std::to_string(w.dims.size()) + " (expected 4)");
    if (int_attribute(i, "group", 1) != 1)
      fail_node(i,
                "group " + std::to_string(int_attribute(i, "group", 1)) + " (only 1 is supported)");
    for (int64_t d : ints_attribute(i, "dilations", {1, 1}))
      if (d != 1) fail_node(i, "dilation " + std::to_string(d) + " (only 1 is supported)");
    l.type = "Conv2d";
    l.out = w.dims[0];
    l.kernel = pair_attribute(i, "kernel_shape", Size2(w.dims[2], w.dims[3]));
    if (l.kernel != Size2(w.dims[2], w.dims[3]))
      fail_node(i, "kernel_shape differs from the weight's");
    l.stride = pair_attribute(i, "strides", Size2(1));
    l.padding = with_pending_pad(symmetric_pads(i));  // a Pad's zeros: the same padding
    l.bias = has_input(i, 2);
    l.declared_input = w.dims[1];
    param("weight", 1, "weight");
    if (l.bias) param("bias", 2, "bias");
  } else if (op == "BatchNormalization") {
    only_attributes(i, {"epsilon", "momentum", "training_mode"});
    if (int_attribute(i, "training_mode", 0) != 0)
      fail_node(i, "training_mode 1 (expected an inference graph)");
    // Before opset 14 the outputs say the mode: more than Y is training (batch statistics).
    for (int k = 1; k < n.output_size(); ++k) {
      if (!n.output(k).empty()) {
        fail_node(i, std::to_string(n.output_size()) +
                         " outputs: a training-mode BatchNormalization (expected an inference "
                         "graph: the output Y alone)");
      }
    }
    if (shape_.rank() != 4 && shape_.rank() != 2) fail_node(i, "expects a 2-d or 4-d input");
    l.type = shape_.rank() == 4 ? "BatchNorm2d" : "BatchNorm1d";
    // Each named with its value (found 2026-12-08, a probe: "epsilon or momentum out of
    // range" named neither).
    const float epsilon = float_attribute(i, "epsilon", 1e-5f);
    const float momentum = float_attribute(i, "momentum", 0.9f);
    const auto shown = [](float v) {
      char text[32];
      std::snprintf(text, sizeof text, "%g", double(v));
      return std::string(text);
    };
    l.eps = decimal_of_float(epsilon);
    l.momentum = momentum_from_onnx(momentum);
    if (!(l.eps > 0)) fail_node(i, "epsilon is " + shown(epsilon) + " (expected above 0)");
    if (!(l.momentum >= 0 && l.momentum <= 1))
      fail_node(i, "momentum is " + shown(momentum) + " (expected 0 to 1)");
    const Constant& scale = constant_input(i, 1, "scale");
    if (scale.dims.size() != 1)
      fail_node(i, "scale of rank " + std::to_string(scale.dims.size()) + " (expected 1)");
    l.declared_input = scale.dims[0];
    // Our export of affine=false: constant ones and zeros under names of their own.
    const Constant& shift = constant_input(i, 2, "B");
    l.affine =
        !(scale.name.ends_with(".unit_scale") && shift.name.ends_with(".zero_shift") &&
          std::all_of(scale.floats.begin(), scale.floats.end(), [](float v) { return v == 1; }) &&
          std::all_of(shift.floats.begin(), shift.floats.end(), [](float v) { return v == 0; }));
    if (l.affine) {
      param("weight", 1, "scale");
      param("bias", 2, "B");
    }
    t.buffers.emplace_back("running_mean", &constant_input(i, 3, "mean"));
    t.buffers.emplace_back("running_var", &constant_input(i, 4, "var"));
    for (float v : constant_input(i, 4, "var").floats)
      if (v < 0) fail_node(i, "a negative running variance");
  } else if (op == "Relu" || op == "Tanh" || op == "Sigmoid") {
    only_attributes(i, {});
    l.type = op == "Relu" ? "ReLU" : op;
    if (const int min = op == "Relu" ? relu6_min(i) : -1; min >= 0) {
      l.type = "ReLU6";  // our export's form, min(relu(x), 6 + relu(-relu(x)))
      output = m_.graph().node(min).output(0);
    }
  } else if (op == "LeakyRelu") {
    only_attributes(i, {"alpha"});
    l.type = "LeakyReLU";
    l.negative_slope = decimal_of_float(float_attribute(i, "alpha", 0.01f));
    if (!std::isfinite(l.negative_slope))
      fail_node(i, "alpha " + std::to_string(l.negative_slope) + " (expected a finite number)");
  } else if (op == "Clip") {
    // From opset 11, the oldest imported, the bounds are optional scalar inputs. cnn has
    // Clip(0, 6) (nn.ReLU6) and Clip(0) (a ReLU, in inference); other bounds are refused.
    only_attributes(i, {});
    const auto bound = [&](int k, const char* role) -> std::optional<float> {
      if (!has_input(i, k)) return std::nullopt;
      const Constant& c = constant_input(i, k, role);
      if (c.floats.size() != 1)
        fail_node(i, std::string(role) + " of " + std::to_string(c.floats.size()) +
                         " values (expected a scalar)");
      return c.floats[0];
    };
    const std::optional<float> low = bound(1, "min"), high = bound(2, "max");
    if (low == 0.0f && high == 6.0f) {
      l.type = "ReLU6";
    } else if (low == 0.0f && !high) {
      l.type = "ReLU";
    } else {
      const auto text = [](const std::optional<float>& v) {
        std::ostringstream out;
        if (v)
          out << *v;
        else
          out << "none";
        return out.str();
      };
      fail_node(i, "bounds min " + text(low) + ", max " + text(high) +
                       " (cnn imports Clip(0, 6) as ReLU6 and Clip(0) as ReLU)");
    }
  } else if (op == "Softmax") {
    only_attributes(i, {"axis"});
    const int64_t axis = int_attribute(i, "axis", opset_ >= 13 ? -1 : 1);
    // cnn's Softmax is over dimension 1 (the features, or a 4-d input's channels, as
    // torch.nn.Softmax(dim=1)). Before opset 13, axis 1 of a 4-d input meant C*H*W values.
    const bool over_features = shape_.rank() == 2 && (axis == 1 || axis == -1);
    const bool over_channels = shape_.rank() == 4 && opset_ >= 13 && (axis == 1 || axis == -3);
    if (!over_features && !over_channels)
      fail_node(i,
                "expected a softmax over the features of a 2-d input, or over the channels "
                "of a 4-d one (axis 1, from opset 13)");
    l.type = "Softmax";
  } else if (op == "MaxPool" || op == "AveragePool") {
    if (op == "MaxPool")
      only_attributes(i, {"kernel_shape", "strides", "pads", "ceil_mode", "auto_pad", "dilations",
                          "storage_order"});
    else
      only_attributes(
          i, {"kernel_shape", "strides", "pads", "ceil_mode", "auto_pad", "count_include_pad"});
    if (shape_.rank() != 4) fail_node(i, "expects a 4-d input here");
    const bool ceil_mode = int_attribute(i, "ceil_mode", 0) != 0;
    if (int_attribute(i, "storage_order", 0) != 0) fail_node(i, "storage_order 1 is not supported");
    for (int64_t d : ints_attribute(i, "dilations", {1, 1}))
      if (d != 1) fail_node(i, "dilation " + std::to_string(d) + " (only 1 is supported)");
    l.type = op == "MaxPool" ? "MaxPool2d" : "AvgPool2d";
    l.kernel = pair_attribute(i, "kernel_shape", Size2(1));
    l.stride = pair_attribute(i, "strides", Size2(1));  // ONNX's default stride is 1
    l.padding = symmetric_pads(i);
    l.count_include_pad = int_attribute(i, "count_include_pad", 0) != 0;
    if (pending_pad_) {
      // The Pad's zeros are values the windows average: count_include_pad over both paddings.
      if (!l.count_include_pad && l.padding != Size2(0))
        fail_node(i,
                  "pads of its own with count_include_pad 0 after a Pad (the Pad's zeros "
                  "count and its own would not: not one AvgPool2d)");
      l.padding = with_pending_pad(l.padding);
      l.count_include_pad = true;
    }
    // Rounding the output size up adds a window only where the windows do not tile the padded
    // input; elsewhere ceil_mode 1 is the layer cnn has (torch writes it for ceil_mode=True
    // whatever the sizes: 2x2 windows of 28x28).
    for (const auto& [size, kernel, stride, pad] :
         {std::tuple{shape_[2], l.kernel.h, l.stride->h, l.padding.h},
          std::tuple{shape_[3], l.kernel.w, l.stride->w, l.padding.w}}) {
      const int64_t span = size + 2 * pad - kernel;
      if (ceil_mode && span >= 0 && stride > 0 && span % stride != 0) {
        fail_node(i, "ceil_mode 1 is not supported where it adds a window (" +
                         std::to_string(size) + " + 2 x " + std::to_string(pad) + " padding - " +
                         std::to_string(kernel) + " is not a multiple of the stride " +
                         std::to_string(stride) + ")");
      }
    }
  } else if (op == "ReduceMean") {
    // torch's x.mean((2, 3)) (keepdim or not): global average pooling.
    only_attributes(i, {"axes", "keepdims"});
    std::vector<int64_t> axes = ints_attribute(i, "axes", {});
    for (int64_t& a : axes)
      if (a < 0) a += shape_.rank();
    std::sort(axes.begin(), axes.end());
    if (shape_.rank() != 4 || axes != std::vector<int64_t>{2, 3})
      fail_node(i,
                "only a mean over the height and width of a 4-d input (axes [2, 3]) is "
                "supported");
    LayerSpec pool;
    pool.type = "AdaptiveAvgPool2d";
    shape_ = output_shape(i, pool);
    layers.push_back(pool);
    tensors_.emplace_back();
    if (int_attribute(i, "keepdims", 1) != 0) return n.output(0);
    l.type = "Flatten";  // keepdims 0: (N, C)
  } else if (op == "GlobalAveragePool") {
    only_attributes(i, {});
    if (shape_.rank() != 4) fail_node(i, "expects a 4-d input here");
    l.type = "AdaptiveAvgPool2d";
  } else if (op == "Flatten") {
    only_attributes(i, {"axis"});
    const int64_t axis = int_attribute(i, "axis", 1);
    if (axis != 1 && axis != 1 - shape_.rank())  // a negative axis counts from the end
      fail_node(i, "axis " + std::to_string(axis) + " (only 1, (N, -1), is supported)");
    l.type = "Flatten";
  } else if (op == "Reshape") {
    only_attributes(i, {"allowzero"});
    if (!reshape_flattens(i)) {
      const std::int64_t features = shape_.numel();  // shape_ is for a batch of 1
      fail_node(i, "only a reshape that flattens each sample is supported: (N, " +
                       std::to_string(features) + ") from (N" +
                       shape_.str().substr(shape_.str().find(',')) + ", as [0, -1], [-1, " +
                       std::to_string(features) + "] or torch's [x.size(0), -1]");
    }
    l.type = "Flatten";
  } else if (op == "Gemm") {
    only_attributes(i, {"alpha", "beta", "transA", "transB"});
    if (float_attribute(i, "alpha", 1) != 1 || float_attribute(i, "beta", 1) != 1 ||
        int_attribute(i, "transA", 0) != 0)
      fail_node(i, "only alpha 1, beta 1, transA 0 are supported");
    if (shape_.rank() != 2) fail_node(i, "expects a 2-d input (a Flatten before it)");
    const Constant& w = constant_input(i, 1, "B");
    if (w.dims.size() != 2)
      fail_node(i, "B of rank " + std::to_string(w.dims.size()) + " (expected 2)");
    const bool trans_b = int_attribute(i, "transB", 0) != 0;
    l.type = "Linear";
    l.out = trans_b ? w.dims[0] : w.dims[1];
    l.declared_input = trans_b ? w.dims[1] : w.dims[0];
    if (trans_b) {
      param("weight", 1, "B");
    } else {
      t.parameters.emplace_back("weight", &transposed(w));
    }
    l.bias = has_input(i, 2);
    if (l.bias) {
      const Constant& c = constant_input(i, 2, "C");
      if (!(c.dims.size() == 1 || (c.dims.size() == 2 && c.dims[0] == 1)) || c.dims.back() != l.out)
        fail_node(i, "C is not a bias of " + std::to_string(l.out) + " values");
      t.parameters.emplace_back("bias", &as_vector(c));
    }
  } else if (op == "MatMul") {
    only_attributes(i, {});
    if (shape_.rank() != 2) fail_node(i, "expects a 2-d input (a Flatten before it)");
    const Constant& w = constant_input(i, 1, "B");
    if (w.dims.size() != 2)
      fail_node(i, "B of rank " + std::to_string(w.dims.size()) + " (expected 2)");
    l.type = "Linear";
    l.out = w.dims[1];
    l.declared_input = w.dims[0];
    t.parameters.emplace_back("weight", &transposed(w));
    // A bias: the one reader an Add with a constant of out_features values.
    const std::vector<int> next = consumers(n.output(0));
    l.bias = false;
    const bool add_next = next.size() == 1 && m_.graph().node(next[0]).op_type() == "Add" &&
                          onnx_domain(m_.graph().node(next[0]));
    if (add_next) check_schema(next[0]);  // read here as the bias, else refused as an op
    if (add_next && m_.graph().node(next[0]).input_size() == 2) {
      const onnx::NodeProto& add = m_.graph().node(next[0]);
      const int other = add.input(0) == n.output(0) ? 1 : 0;
      const auto bias = constants_.find(add.input(other));
      const auto is_bias = [&](const Constant& c) {
        return !c.is_int && (c.dims.size() == 1 || (c.dims.size() == 2 && c.dims[0] == 1)) &&
               c.dims.back() == l.out;
      };
      if (bias != constants_.end() && is_bias(*bias->second)) {
        l.bias = true;
        t.parameters.emplace_back("bias", &as_vector(*bias->second));
        used_.insert(next[0]);
        shape_ = output_shape(i, l);
        value_shapes_[n.output(0)] = shape_;  // the MatMul's, the Add's shape
        layers.push_back(l);
        tensors_.push_back(std::move(t));
        return add.output(0);
      }
    }
  } else if (op == "Pad") {
    // torch.onnx.export writes AvgPool2d(padding=p) (count_include_pad, its default) as a Pad
    // of zeros and an AveragePool without pads; other exporters pad a Conv so. A Pad of zeros
    // around H and W alike, read by one Conv or AveragePool alone, is that layer's padding.
    only_attributes(i, {"mode"});
    if (shape_.rank() != 4) fail_node(i, "expects a 4-d input here");
    const std::string mode = attribute(i, "mode") ? attribute(i, "mode")->s() : "constant";
    if (mode != "constant") fail_node(i, "mode " + mode + " (only constant zeros are supported)");
    if (!has_input(i, 1)) fail_node(i, "no pads");
    for (int k = 1; k < n.input_size(); ++k)
      if (!n.input(k).empty() && !constants_.count(n.input(k))) fail_computed_input(i, k);
    const Constant& pads_input = *constants_.at(n.input(1));
    if (!pads_input.is_int) fail_node(i, "pads '" + n.input(1) + "' is not an INT64 constant");
    const std::vector<int64_t>& p = pads_input.ints;
    if (has_input(i, 2)) {
      const Constant& fill = constant_input(i, 2, "constant_value");
      if (fill.floats.size() != 1 || fill.floats[0] != 0)
        fail_node(i, "pads with a value other than 0 (only zeros are supported)");
    }
    if (has_input(i, 3)) fail_node(i, "axes are not supported");
    std::string listed;
    for (int64_t v : p) listed += (listed.empty() ? "" : ", ") + std::to_string(v);
    if (p.size() != 8 || p[0] != 0 || p[1] != 0 || p[4] != 0 || p[5] != 0 || p[2] != p[6] ||
        p[3] != p[7] || p[2] < 0 || p[3] < 0 || p[2] > kMaxElements || p[3] > kMaxElements) {
      fail_node(i, "pads [" + listed +
                       "] (expected [0, 0, h, w, 0, 0, h, w]: height and width alike on both "
                       "sides, h and w >= 0)");
    }
    const std::vector<int> next = consumers(n.output(0));
    if (next.size() != 1 || (m_.graph().node(next[0]).op_type() != "Conv" &&
                             m_.graph().node(next[0]).op_type() != "AveragePool")) {
      fail_node(i,
                "is read by other than one Conv or AveragePool (cnn imports a Pad as the "
                "padding of the layer after it)");
    }
    pending_pad_ = Size2(p[2], p[3]);
    return n.output(0);
  } else if (op == "Dropout" || op == "Identity") {
    only_attributes(i, op == "Dropout" ? std::initializer_list<const char*>{"seed", "ratio"}
                                       : std::initializer_list<const char*>{});
    if (op == "Dropout" && n.input_size() > 2 && !n.input(2).empty()) {
      const auto training = constants_.find(n.input(2));
      if (training == constants_.end() ||
          std::any_of(training->second->ints.begin(), training->second->ints.end(),
                      [](int64_t v) { return v != 0; }))
        fail_node(i, "training_mode is not a constant false (expected an inference graph)");
    }
    return n.output(0);  // the identity in inference
  } else {
    fail_node(i, "op type " + op +
                     " is not supported (cnn imports Conv, BatchNormalization, Relu, "
                     "LeakyRelu, Clip(0, 6) or min(r, 6 + relu(-r)) after a Relu r, Tanh, Sigmoid, "
                     "Softmax, MaxPool, AveragePool, "
                     "GlobalAveragePool, ReduceMean over "
                     "H and W, Flatten, Reshape to (N, -1), Gemm, MatMul + Add, Add of a "
                     "residual block, Pad of zeros before a Conv or AveragePool, Dropout, "
                     "Identity)");
  }
  shape_ = output_shape(i, l);
  layers.push_back(l);
  tensors_.push_back(std::move(t));
  return output;
}

/// `layers` as an inference graph holds them, also inside Residuals: without Dropout, which
/// the graph leaves out, and with a Conv2d's "same" padding as the pads it resolves to, which
/// is all the graph can say (found 2026-12-06: the README's own "same" example exported to a
/// file that its import refused, "padding=same in it, padding=(1, 1) in the graph). A
/// Residual without activation followed by a ReLU, Tanh or Sigmoid layer is the block with
/// that activation: the graph's Add then activation is read so (Importer::block_activation),
/// and the two compute the same (found 2026-12-06: such a spec's own export was refused, "6
/// layers in it, 5 in the graph). Epsilons, momenta and slopes are what their float
/// attributes read back as (found 2026-12-06: an eps or slope of 1.4e-45 read back as 1e-45,
/// and the file was refused).
std::vector<LayerSpec> as_in_a_graph(const std::vector<LayerSpec>& layers) {
  std::vector<LayerSpec> out;
  for (const LayerSpec& l : layers) {
    if (l.type == "Dropout") continue;
    if ((l.type == "ReLU" || l.type == "Tanh" || l.type == "Sigmoid") && !out.empty() &&
        out.back().type == "Residual" && out.back().activation.empty()) {
      out.back().activation = l.type;
      continue;
    }
    out.push_back(l);
    if (l.type == "BatchNorm2d" || l.type == "BatchNorm1d") {
      out.back().eps = decimal_of_float(static_cast<float>(l.eps));
      out.back().momentum = momentum_from_onnx(static_cast<float>(1.0 - l.momentum));
    }
    if (l.type == "LeakyReLU")
      out.back().negative_slope = decimal_of_float(static_cast<float>(l.negative_slope));
    if (l.same_padding) {
      out.back().same_padding = false;
      out.back().padding = Size2((l.kernel.h - 1) / 2, (l.kernel.w - 1) / 2);
    }
    out.back().body = as_in_a_graph(l.body);
    out.back().shortcut = as_in_a_graph(l.shortcut);
    if (l.type == "Residual" && out.back().body.empty()) {
      // A body of Dropout alone: the graph adds its input to itself (Importer::doubled).
      out.back().body = {identity_layer()};
    }
  }
  return out;
}

/// A branch's layers.
std::vector<const Layer<float>*> branch_layers(const Residual<float>& block, bool body) {
  std::vector<const Layer<float>*> layers;
  const size_t count = body ? block.body_size() : block.shortcut_size();
  for (size_t i = 0; i < count; ++i) layers.push_back(body ? &block.body(i) : &block.shortcut(i));
  return layers;
}

std::string unordered_text(const Layer<float>& layer);

std::string unordered_text(const std::vector<const Layer<float>*>& layers) {
  std::string text;
  for (const Layer<float>* l : layers) text += (text.empty() ? "" : ", ") + unordered_text(*l);
  return text;
}

/// describe(), with each Residual's two branches in an order of their own: the same text for a
/// block whichever branch is called its body.
std::string unordered_text(const Layer<float>& layer) {
  const auto* block = dynamic_cast<const Residual<float>*>(&layer);
  if (block == nullptr) return layer.describe();
  std::string a = unordered_text(branch_layers(*block, true));
  std::string b = unordered_text(branch_layers(*block, false));
  if (b < a) std::swap(a, b);
  return "Residual(" + block->activation() + ": [" + a + "] + [" + b + "])";
}

/// Gives each Residual of `specs` (the graph as parsed, built as `graph`, its tensors
/// `tensors`) the body and shortcut that `ours` (our metadata's spec, built) gives it: which
/// branch is which is not in the graph, where the Add is commutative and the nodes' order may
/// have been changed. Blocks that do not match either way are left for the comparison after.
void take_branches(std::vector<LayerSpec>& specs, std::vector<LayerTensors>& tensors,
                   const std::vector<const Layer<float>*>& graph,
                   const std::vector<const Layer<float>*>& ours) {
  if (specs.size() != graph.size() || specs.size() != ours.size() || specs.size() != tensors.size())
    return;
  for (size_t i = 0; i < specs.size(); ++i) {
    const auto* g = dynamic_cast<const Residual<float>*>(graph[i]);
    const auto* o = dynamic_cast<const Residual<float>*>(ours[i]);
    if (g == nullptr || o == nullptr) continue;
    std::vector<const Layer<float>*> g_body = branch_layers(*g, true);
    std::vector<const Layer<float>*> g_shortcut = branch_layers(*g, false);
    const std::vector<const Layer<float>*> o_body = branch_layers(*o, true);
    const std::vector<const Layer<float>*> o_shortcut = branch_layers(*o, false);
    const std::string gb = unordered_text(g_body), gs = unordered_text(g_shortcut);
    const std::string ob = unordered_text(o_body), os = unordered_text(o_shortcut);
    if (!(gb == ob && gs == os) && gb == os && gs == ob) {
      std::swap(specs[i].body, specs[i].shortcut);
      std::swap(tensors[i].body, tensors[i].shortcut);
      std::swap(g_body, g_shortcut);
    }
    take_branches(specs[i].body, tensors[i].body, g_body, o_body);
    take_branches(specs[i].shortcut, tensors[i].shortcut, g_shortcut, o_shortcut);
  }
}

std::string shape_text(const std::vector<int64_t>& dims) {
  std::string s = "(";
  for (size_t i = 0; i < dims.size(); ++i) s += (i ? ", " : "") + std::to_string(dims[i]);
  return s + (dims.size() == 1 ? ",)" : ")");
}

ModelFile Importer::run() {
  const onnx::GraphProto& g = m_.graph();
  for (const auto& o : m_.opset_import()) {
    if (!o.domain().empty() && o.domain() != "ai.onnx") continue;
    const int version = static_cast<int>(std::clamp<int64_t>(o.version(), -1, 1 << 20));
    // Found 2026-12-06: "" at 11 and "ai.onnx" at 13 passed ONNX's checker, which reads the
    // nodes at 11; the last entry decided here, so a Softmax took opset 13's meaning.
    if (opset_ != 0 && version != opset_) {
      fail("the ONNX domain is imported twice, at opsets " + std::to_string(opset_) + " and " +
           std::to_string(version) + " (expected one version)");
    }
    opset_ = version;
  }
  if (opset_ == 0) fail("no opset_import for the ONNX domain (is this an ONNX model?)");
  if (opset_ < kMinImportOpset || opset_ > kMaxImportOpset) {
    fail("opset " + std::to_string(opset_) + " is outside the supported " +
         std::to_string(kMinImportOpset) + " to " + std::to_string(kMaxImportOpset));
  }
  if (g.node_size() == 0) fail("the graph has no nodes");
  // An initializer no node reads is not read at all: its type, data and place are worth
  // nothing here (found 2026-12-06: an unread FLOAT16 one made the whole file refused).
  std::set<std::string> read;
  for (const auto& n : g.node()) read.insert(n.input().begin(), n.input().end());
  std::set<std::string> known;
  for (const auto& t : g.initializer()) {
    // Which of two same-named initializers a reader meant is not in the file.
    if (!known.insert(t.name()).second) fail("initializer '" + t.name() + "' appears twice");
    if (read.count(t.name())) read_constant(t, "initializer");
  }
  for (const auto& in : g.input()) known.insert(in.name());
  for (int i = 0; i < g.node_size(); ++i) {
    const onnx::NodeProto& n = g.node(i);
    for (const std::string& in : n.input()) {
      if (in.empty()) continue;
      if (!known.count(in))
        fail_node(i, "input '" + in +
                         "' is not a graph input, an initializer or an earlier node's output");
      users_[in].push_back(i);
    }
    if (n.op_type() == "Constant" && onnx_domain(n)) {
      check_schema(i);
      const auto* value = attribute(i, "value");
      if (!value || n.attribute_size() != 1) {
        std::string given;
        for (const auto& a : n.attribute()) given += (given.empty() ? "" : ", ") + a.name();
        fail_node(i, "only a Constant of one tensor 'value' is supported (given: " +
                         (given.empty() ? "no attribute" : given) + ")");
      }
      onnx::TensorProto t = value->t();
      t.set_name(n.output(0));
      read_constant(t, "Constant");
      folded_.insert(i);
    }
    // torch.onnx.export stores equal weights once and aliases them with Identity nodes.
    if (n.op_type() == "Identity" && onnx_domain(n) && n.input_size() == 1 &&
        n.output_size() == 1 && constants_.count(n.input(0))) {
      check_schema(i);
      constants_[n.output(0)] = constants_.at(n.input(0));
      folded_.insert(i);
    }
    for (const std::string& out : n.output()) {
      if (out.empty()) continue;
      if (!known.insert(out).second) fail_node(i, "output '" + out + "' is written twice");
      producer_[out] = i;
    }
  }
  fold_shape_computations();

  // Initializers are not inputs, also where the file lists them as inputs (IR 3), read or not.
  std::set<std::string> initializers;
  for (const auto& t : g.initializer()) initializers.insert(t.name());
  std::vector<const onnx::ValueInfoProto*> inputs;
  for (const auto& in : g.input())
    if (!initializers.count(in.name())) inputs.push_back(&in);
  if (inputs.size() != 1)
    fail("the graph has " + std::to_string(inputs.size()) + " inputs (expected one image batch)");
  const onnx::ValueInfoProto& input = *inputs[0];
  const auto& type = input.type().tensor_type();
  if (type.elem_type() != onnx::TensorProto::FLOAT)
    fail("input '" + input.name() + "' is not a float tensor");
  if (type.shape().dim_size() != 4)
    fail("input '" + input.name() + "' has rank " + std::to_string(type.shape().dim_size()) +
         " (expected 4: N, C, H, W)");
  std::vector<int64_t> chw;
  for (int d = 1; d < 4; ++d) {
    const auto& dim = type.shape().dim(d);
    if (!dim.has_dim_value() || dim.dim_value() < 1 || dim.dim_value() > (int64_t{1} << 24))
      fail("input '" + input.name() + "' dimension " + std::to_string(d) +
           " is not a size from 1 to 2^24");
    chw.push_back(dim.dim_value());
  }
  if (!size_product(chw[0], chw[1]) || !size_product(*size_product(chw[0], chw[1]), chw[2]))
    fail("input '" + input.name() + "' dimensions overflow");
  if (g.output_size() != 1)
    fail("the graph has " + std::to_string(g.output_size()) + " outputs (expected one)");

  ModelFile file;
  std::vector<LayerSpec> layers;
  shape_ = Shape{1, chw[0], chw[1], chw[2]};
  if (type.shape().dim(0).has_dim_value()) static_batch_ = type.shape().dim(0).dim_value();
  const std::string out = chain(input.name(), -1, layers);
  if (out != g.output(0).name())
    fail("value '" + out + "' ends the chain of layers, not the graph output '" +
         g.output(0).name() + "'");
  for (int i = 0; i < g.node_size(); ++i)
    if (!used_.count(i) && !folded_.count(i))
      fail_node(i, "is not on the path from the input to the output");
  // Every shape computation is evaluated, so checked, also where no Reshape needed its value.
  for (int i : folded_)
    if (!constants_.count(g.node(i).output(0))) folded_value(g.node(i).output(0));

  std::map<std::string, std::string> meta;
  for (const auto& e : m_.metadata_props()) meta[e.key()] = e.value();
  file.spec.name = std::filesystem::path(path_).stem().string();
  file.spec.input = Shape{chw[0], chw[1], chw[2]};
  file.spec.layers = layers;
  // A spec's limits (kernels, strides and padding up to 4096, ...) hold for a graph too: a Conv
  // padded 4097 ran in `cnn info` and `predict`, and then could not be saved (found 2026-12-06).
  try {
    check_layer_limits(layers, "the graph as a cnn spec");
  } catch (const Error& e) {
    fail(std::string("outside what cnn supports: ") + e.what());
  }
  bool by_name = false;
  if (meta.count("cnn.architecture")) {
    ModelSpec ours = parse_model_spec(meta.at("cnn.architecture"), path_ + ": cnn.architecture");
    // Our own file: the metadata must describe the graph as parsed (every size, stride,
    // padding, epsilon, momentum...), else the graph is what counts and it is refused.
    ModelSpec stripped = ours;
    stripped.layers = as_in_a_graph(ours.layers);
    // Shapes only: the metadata can claim any sizes, and the graph's model is built once, below.
    Sequential<float> described, parsed;
    try {
      described = model_shapes(stripped).model;
      parsed = model_shapes(file.spec).model;
    } catch (const Error& e) {
      fail(std::string("the cnn.architecture metadata does not describe the graph: ") + e.what());
    }
    const auto top_layers = [](const Sequential<float>& model) {
      std::vector<const Layer<float>*> list;
      for (size_t i = 0; i < model.size(); ++i) list.push_back(&model.layer(i));
      return list;
    };
    take_branches(file.spec.layers, tensors_, top_layers(parsed), top_layers(described));
    try {
      parsed = model_shapes(file.spec).model;  // with the branches named as the metadata names them
    } catch (const Error& e) {
      fail(std::string("the cnn.architecture metadata does not describe the graph: ") + e.what());
    }
    if (stripped.input != file.spec.input || described.size() != parsed.size())
      fail("the cnn.architecture metadata does not describe the graph: " +
           std::to_string(described.size()) + " layers in it, " + std::to_string(parsed.size()) +
           " in the graph");
    for (size_t i = 0; i < parsed.size(); ++i) {
      if (described.layer(i).describe() != parsed.layer(i).describe())
        fail("the cnn.architecture metadata does not describe the graph: layer " +
             std::to_string(i) + " is " + described.layer(i).describe() + " in it, " +
             parsed.layer(i).describe() + " in the graph");
    }
    file.spec = ours;
    by_name = true;
  } else if (!file.spec.layers.empty() && file.spec.layers.back().type == "Sigmoid" &&
             model_shapes(file.spec).layout.shapes.back() == Shape{1, 1}) {
    // A graph without our metadata that ends in one Sigmoid output is a binary classifier:
    // log_loss, its dataset labels 0 and 1 (found 2026-12-08, a probe: torch's Linear(.., 1)
    // + Sigmoid imported as one cross-entropy logit, and predict gave it 100%). Other graphs
    // import as they are (a Conv alone, ONNX's conformance cases); what needs class logits
    // (eval, predict) checks the output itself.
    file.spec.loss = LossKind::kLogLoss;
    file.spec.classes = {0, 1};
  }
  try {
    if (meta.count("cnn.class_names")) {
      file.class_names =
          detail::parse_json(meta.at("cnn.class_names")).get<std::vector<std::string>>();
    }
  } catch (const std::exception& e) {
    fail("cnn.class_names metadata is not a JSON list of strings: " + detail::json_error_text(e));
  }
  try {
    file.model = build_model(file.spec, ModelUse::kInference);
  } catch (const Error& e) {
    fail(std::string("the graph does not make a model: ") + e.what());
  }
  const auto assign = [&](const std::string& name, TensorView<float> to, const Constant& from) {
    const std::vector<int64_t> expected(to.shape().begin(), to.shape().end());
    if (from.dims != expected)
      fail("initializer '" + from.name + "' has shape " + shape_text(from.dims) + ", " + name +
           " expects " + shape_text(expected));
    std::copy(from.floats.begin(), from.floats.end(), to.data());
  };
  // The tensors each node reads, in the graph's order, whatever their names: with the
  // metadata too, since it names the layers but the graph wires them (found 2026-12-06: a
  // file whose nodes read other initializers than the metadata's names took the named ones).
  std::vector<std::pair<std::string, const Constant*>> params, buffers;
  for (const LayerTensors& t : tensors_) flatten(t, params, buffers);
  auto named = file.model.named_parameters();
  if (named.size() != params.size()) fail("the graph's weights do not match its layers");
  for (size_t k = 0; k < named.size(); ++k)
    assign(named[k].name, named[k].value, *params[k].second);
  // num_batches_tracked has no place in an inference graph: our export keeps it in metadata.
  Json counters = Json::object();
  try {
    if (by_name && meta.count("cnn.counters"))
      counters = detail::parse_json(meta.at("cnn.counters"));
  } catch (const std::exception& e) {
    fail("cnn.counters metadata is not JSON: " + detail::json_error_text(e));
  }
  size_t next = 0;
  for (auto& b : file.model.named_buffers()) {
    if (b.counter) {
      const Json v =
          counters.is_object() && counters.contains(b.name) ? counters.at(b.name) : Json(0);
      if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() > (int64_t{1} << 53))
        fail("cnn.counters: " + b.name + " is not a count");
      b.value[0] = static_cast<float>(v.get<int64_t>());
      continue;
    }
    if (next >= buffers.size()) fail("the graph's statistics do not match its layers");
    assign(b.name, b.value, *buffers[next++].second);
  }
  if (next != buffers.size()) fail("the graph's statistics do not match its layers");
  for (auto& b : file.model.named_buffers()) {
    if (b.counter) continue;
    if (b.name.ends_with("running_var"))
      for (int64_t k = 0; k < b.value.numel(); ++k)
        if (b.value[k] < 0) fail(b.name + " holds a negative variance");
  }
  return file;
}

/// `text` with each run of white space (the checker's line breaks among them) one space.
std::string one_line(const std::string& text) {
  std::string line;
  for (const char c : text) {
    if (std::isspace(static_cast<unsigned char>(c))) {
      if (!line.empty() && line.back() != ' ') line += ' ';
    } else {
      line += c;
    }
  }
  while (!line.empty() && line.back() == ' ') line.pop_back();
  return line;
}

/// Refuses an initializer or a node's tensor attribute kept in an external file, in the
/// import's own words (read_constant says the same of a tensor it reads).
void refuse_external_data(const std::string& path, const onnx::GraphProto& g) {
  const auto check = [&](const onnx::TensorProto& t, const std::string& what) {
    if (t.data_location() == onnx::TensorProto::EXTERNAL || t.external_data_size() > 0)
      throw Error(path + ": " + what +
                  " keeps its data in an external file (not supported: save the model with its "
                  "weights inside the .onnx file)");
  };
  for (const auto& t : g.initializer()) check(t, "initializer '" + t.name() + "'");
  for (const auto& n : g.node())
    for (const auto& a : n.attribute()) {
      const std::string what =
          "node '" + n.name() + "' (" + n.op_type() + ") attribute '" + a.name() + "'";
      if (a.has_t()) check(a.t(), what);
      for (const auto& t : a.tensors()) check(t, what);
    }
}

}  // namespace

ModelFile load_onnx(const std::string& path) {
  require_path(path, "load_onnx");
  require_regular_file(path, "an ONNX model");
  const std::string bytes = read_whole_file(path, "an ONNX model");
  if (bytes.empty()) throw Error(path + ": empty file (expected an ONNX model)");
  onnx::ModelProto m;
  if (!m.ParseFromString(bytes)) {
    throw Error(path + ": not an ONNX model (the protobuf does not parse: truncated or not ONNX)");
  }
  if (!m.has_graph()) throw Error(path + ": not an ONNX model (no graph)");
  // ONNX's whole-model checker before the graph is read: the IR version and opset imports,
  // every value defined once and before its use, the graph's and its values' names and types,
  // each initializer's fields (also one no node reads), unique metadata keys, each node against
  // its schema. Plain, without strict shape inference (see docs/design-notes.md, "ONNX export
  // and import"). Tensors kept in external files are refused first, as the import refuses
  // them: the checker would look for the file relative to the working directory.
  refuse_external_data(path, m.graph());
  std::string invalid;
  try {
    onnx::checker::check_model(m);
  } catch (const std::exception& e) {
    invalid = one_line(e.what());
    if (invalid.empty()) invalid = "ONNX's checker refuses it";
  }
  if (invalid.empty()) return Importer(path, m).run();
  // Where the import refuses the file too, its line says more (the node, and what ONNX's
  // schema expects at the file's opset, where the checker says "Node (3) has input size 1 not
  // in range [min=2, max=3]"); the checker's line where the import would take the file.
  Importer(path, m).run();
  throw Error(path + ": not a valid ONNX model: " + invalid);
}

}  // namespace cnn

#include "cnn/spec.hpp"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <set>

#include "cnn/error.hpp"

namespace cnn {

namespace {

using Json = nlohmann::json;

const std::vector<std::string> kLayerTypes = {"Conv2d", "MaxPool2d", "Linear",  "ReLU",
                                              "Tanh",   "Sigmoid",   "Softmax", "Flatten"};

class SpecReader {
 public:
  explicit SpecReader(std::string origin) : origin_(std::move(origin)) {}
  [[noreturn]] void fail(const std::string& where, const std::string& message) const {
    throw Error(origin_ + ": " + (where.empty() ? "" : where + ": ") + message);
  }

  void require_keys(const Json& object, const std::string& where,
                    const std::set<std::string>& allowed) const {
    for (const auto& [key, value] : object.items()) {
      if (allowed.count(key) == 0) {
        std::string list;
        for (const std::string& a : allowed) list += (list.empty() ? "" : ", ") + a;
        fail(where, "unknown key '" + key + "' (expected one of " + list + ")");
      }
    }
  }

  int64_t positive(const Json& value, const std::string& where, const std::string& key) const {
    if (!value.is_number_integer() || value.get<int64_t>() <= 0 ||
        value.get<int64_t>() > (1 << 24)) {
      fail(where, "'" + key + "' expects a positive whole number, got " + value.dump());
    }
    return value.get<int64_t>();
  }

  /// A number or [height, width]; `minimum` 1 for kernels and strides, 0 for padding.
  Size2 size2(const Json& value, const std::string& where, const std::string& key,
              int64_t minimum) const {
    const auto one = [&](const Json& v) {
      if (!v.is_number_integer() || v.get<int64_t>() < minimum || v.get<int64_t>() > 4096) {
        fail(where, "'" + key + "' expects whole numbers >= " + std::to_string(minimum) +
                        " (a number or [height, width]), got " + value.dump());
      }
      return v.get<int64_t>();
    };
    if (value.is_array()) {
      if (value.size() != 2)
        fail(where, "'" + key + "' expects [height, width], got " + value.dump());
      return Size2(one(value[0]), one(value[1]));
    }
    return Size2(one(value));
  }

  LayerSpec layer(const Json& j, size_t index) const {
    const std::string where = "layer " + std::to_string(index);
    if (!j.is_object() || !j.contains("type") || !j["type"].is_string()) {
      fail(where, "expected an object with a \"type\", got " + j.dump());
    }
    LayerSpec l;
    l.type = j["type"].get<std::string>();
    if (l.type == "Conv2d") {
      require_keys(j, where,
                   {"type", "out_channels", "in_channels", "kernel", "stride", "padding", "bias"});
      if (!j.contains("out_channels") || !j.contains("kernel")) {
        fail(where, "Conv2d expects \"out_channels\" and \"kernel\"");
      }
      l.out = positive(j["out_channels"], where, "out_channels");
      l.kernel = size2(j["kernel"], where, "kernel", 1);
      if (j.contains("stride")) l.stride = size2(j["stride"], where, "stride", 1);
      if (j.contains("padding")) {
        if (j["padding"] == "same") {
          l.same_padding = true;
        } else {
          l.padding = size2(j["padding"], where, "padding", 0);
        }
      }
    } else if (l.type == "MaxPool2d") {
      require_keys(j, where, {"type", "kernel", "stride", "padding"});
      if (!j.contains("kernel")) fail(where, "MaxPool2d expects \"kernel\"");
      l.kernel = size2(j["kernel"], where, "kernel", 1);
      if (j.contains("stride")) l.stride = size2(j["stride"], where, "stride", 1);
      if (j.contains("padding")) l.padding = size2(j["padding"], where, "padding", 0);
    } else if (l.type == "Linear") {
      require_keys(j, where, {"type", "out_features", "in_features", "bias"});
      if (!j.contains("out_features")) fail(where, "Linear expects \"out_features\"");
      l.out = positive(j["out_features"], where, "out_features");
    } else if (std::find(kLayerTypes.begin(), kLayerTypes.end(), l.type) != kLayerTypes.end()) {
      require_keys(j, where, {"type"});
    } else {
      std::string list;
      for (const std::string& t : kLayerTypes) list += (list.empty() ? "" : ", ") + t;
      fail(where, "unknown type '" + l.type + "' (expected one of " + list + ")");
    }
    if (j.contains("bias")) {
      if (!j["bias"].is_boolean())
        fail(where, "'bias' expects true or false, got " + j["bias"].dump());
      l.bias = j["bias"].get<bool>();
    }
    // in_channels / in_features are inferred; when given they are checked at build time.
    if (j.contains("in_channels"))
      declared_inputs_.push_back({index, positive(j["in_channels"], where, "in_channels")});
    if (j.contains("in_features"))
      declared_inputs_.push_back({index, positive(j["in_features"], where, "in_features")});
    return l;
  }

  struct DeclaredInput {
    size_t layer;
    int64_t value;
  };
  mutable std::vector<DeclaredInput> declared_inputs_;

 private:
  std::string origin_;
};

Json size_json(Size2 s) {
  return s.h == s.w ? Json(s.h) : Json::array({s.h, s.w});
}

}  // namespace

ModelSpec parse_model_spec(const std::string& text, const std::string& origin) {
  SpecReader reader(origin);
  Json j;
  try {
    j = Json::parse(text);
  } catch (const Json::exception& e) {
    reader.fail("", std::string("not valid JSON: ") + e.what());
  }
  if (!j.is_object()) reader.fail("", "expected a JSON object with \"input\" and \"layers\"");
  reader.require_keys(j, "", {"name", "input", "loss", "classes", "layers", "format", "version"});
  if (j.contains("version") && j["version"] != 1) {
    reader.fail("", "unknown spec version " + j["version"].dump() + " (expected 1)");
  }
  ModelSpec spec;
  spec.name = j.value("name", origin);
  if (!j.contains("input") || !j["input"].is_array() || j["input"].size() != 3) {
    reader.fail("", "expected \"input\": [channels, height, width], got " +
                        (j.contains("input") ? j["input"].dump() : std::string("nothing")));
  }
  const int64_t channels = reader.positive(j["input"][0], "input", "channels"),
                height = reader.positive(j["input"][1], "input", "height"),
                width = reader.positive(j["input"][2], "input", "width");
  try {
    spec.input = Shape{channels, height, width};
  } catch (const Error& e) {
    reader.fail("input", e.what());
  }
  const std::string loss = j.value("loss", std::string("cross_entropy"));
  if (loss == "cross_entropy") {
    spec.loss = LossKind::kCrossEntropy;
  } else if (loss == "log_loss") {
    spec.loss = LossKind::kLogLoss;
  } else {
    reader.fail("", "unknown loss '" + loss + "' (expected cross_entropy or log_loss)");
  }
  if (j.contains("classes")) {
    if (!j["classes"].is_array() || j["classes"].size() < 2) {
      reader.fail("", "\"classes\" expects a list of at least two dataset labels, got " +
                          j["classes"].dump());
    }
    std::set<int> seen;
    for (const Json& c : j["classes"]) {
      if (!c.is_number_integer() || c.get<int>() < 0 || c.get<int>() > 255 ||
          !seen.insert(c.get<int>()).second) {
        reader.fail("",
                    "\"classes\" expects distinct labels in [0, 255], got " + j["classes"].dump());
      }
      spec.classes.push_back(c.get<int>());
    }
  }
  if (!j.contains("layers") || !j["layers"].is_array() || j["layers"].empty()) {
    reader.fail("", "expected \"layers\": a non-empty list");
  }
  for (size_t i = 0; i < j["layers"].size(); ++i)
    spec.layers.push_back(reader.layer(j["layers"][i], i));
  // Build once: shapes that cannot fit are refused here, naming the layer.
  Sequential<float> model = build_model(spec);
  for (const auto& declared : reader.declared_inputs_) {
    const Layer<float>& layer = model.layer(declared.layer);
    const int64_t actual = layer.type() == "Conv2d"
                               ? dynamic_cast<const Conv2d<float>&>(layer).in_channels()
                               : dynamic_cast<const Linear<float>&>(layer).in_features();
    if (actual != declared.value) {
      reader.fail("layer " + std::to_string(declared.layer),
                  "declares " + std::to_string(declared.value) + " inputs, but its input has " +
                      std::to_string(actual));
    }
  }
  if (spec.loss == LossKind::kLogLoss) {
    if (model.output_shape(1) != Shape{1, 1} || spec.layers.back().type != "Sigmoid") {
      reader.fail("", "loss log_loss expects the model to end in one Sigmoid output, got output " +
                          model.output_shape(1).str() + " from " + spec.layers.back().type);
    }
    if (spec.classes.size() != 2) {
      reader.fail("",
                  "loss log_loss expects \"classes\": [negative, positive], two dataset labels");
    }
  } else {
    const Shape out = model.output_shape(1);
    if (out.rank() != 2 || out[1] < 2) {
      reader.fail("", "loss cross_entropy expects the model to output (N, classes) logits, got " +
                          out.str());
    }
    if (!spec.classes.empty() && static_cast<int64_t>(spec.classes.size()) > out[1]) {
      reader.fail("", "\"classes\" lists " + std::to_string(spec.classes.size()) +
                          " labels but the model outputs " + std::to_string(out[1]));
    }
  }
  return spec;
}

std::string to_json(const ModelSpec& spec) {
  Json layers = Json::array();
  for (const LayerSpec& l : spec.layers) {
    Json j = {{"type", l.type}};
    if (l.type == "Conv2d") {
      j["out_channels"] = l.out;
      j["kernel"] = size_json(l.kernel);
      j["stride"] = size_json(l.stride.value_or(Size2(1)));
      j["padding"] = l.same_padding ? Json("same") : size_json(l.padding);
      j["bias"] = l.bias;
    } else if (l.type == "MaxPool2d") {
      j["kernel"] = size_json(l.kernel);
      j["stride"] = size_json(l.stride.value_or(l.kernel));
      j["padding"] = size_json(l.padding);
    } else if (l.type == "Linear") {
      j["out_features"] = l.out;
      j["bias"] = l.bias;
    }
    layers.push_back(j);
  }
  Json j = {{"format", "cnn-spec"},
            {"version", 1},
            {"name", spec.name},
            {"input", {spec.input[0], spec.input[1], spec.input[2]}},
            {"loss", spec.loss == LossKind::kLogLoss ? "log_loss" : "cross_entropy"},
            {"layers", layers}};
  if (!spec.classes.empty()) j["classes"] = spec.classes;
  return j.dump();
}

Sequential<float> build_model(const ModelSpec& spec) {
  Sequential<float> model;
  Shape shape{1, spec.input[0], spec.input[1], spec.input[2]};
  try {
    for (size_t i = 0; i < spec.layers.size(); ++i) {
      const LayerSpec& l = spec.layers[i];
      std::unique_ptr<Layer<float>> layer;
      if (l.type == "Conv2d") {
        if (shape.rank() != 4) {
          throw Error("Sequential: layer " + std::to_string(i) +
                      " Conv2d: expected input (N, C, H, W), got " + shape.str());
        }
        layer = std::make_unique<Conv2d<float>>(
            shape[1], l.out, l.kernel, l.stride.value_or(Size2(1)),
            l.same_padding ? Padding2::Same() : Padding2(l.padding), l.bias);
      } else if (l.type == "MaxPool2d") {
        layer = std::make_unique<MaxPool2d<float>>(l.kernel, l.stride, l.padding);
      } else if (l.type == "Linear") {
        if (shape.rank() != 2) {
          throw Error("Sequential: layer " + std::to_string(i) +
                      " Linear: expected input (N, features) (add a Flatten before it), got " +
                      shape.str());
        }
        layer = std::make_unique<Linear<float>>(shape[1], l.out, l.bias);
      } else if (l.type == "ReLU") {
        layer = std::make_unique<ReLU<float>>();
      } else if (l.type == "Tanh") {
        layer = std::make_unique<Tanh<float>>();
      } else if (l.type == "Sigmoid") {
        layer = std::make_unique<Sigmoid<float>>();
      } else if (l.type == "Softmax") {
        layer = std::make_unique<Softmax<float>>();
      } else if (l.type == "Flatten") {
        layer = std::make_unique<Flatten<float>>();
      } else {
        throw Error("Sequential: layer " + std::to_string(i) + ": unknown type '" + l.type + "'");
      }
      try {
        shape = layer->output_shape(shape);
      } catch (const Error& e) {
        throw Error("Sequential: layer " + std::to_string(i) + " " + e.what());
      }
      model.add(std::move(layer));
    }
    model.build(spec.input);
  } catch (const Error& e) {
    throw Error(spec.name + ": " + e.what());
  }
  return model;
}

int64_t output_classes(const ModelSpec& spec) {
  if (spec.loss == LossKind::kLogLoss) return 2;
  return build_model(spec).output_shape(1)[1];
}

std::vector<std::string> preset_names() {
  return {"lenet5", "convnet", "seed"};
}

ModelSpec model_spec_from(const std::string& what) {
  const std::vector<std::string> presets = preset_names();
  if (std::find(presets.begin(), presets.end(), what) != presets.end()) return preset_spec(what);
  if (!std::filesystem::is_regular_file(what)) {
    throw Error("--model " + what + ": neither a preset (lenet5, convnet, seed) nor a spec file");
  }
  std::ifstream in(what);
  const std::string text{std::istreambuf_iterator<char>(in), {}};
  ModelSpec spec = parse_model_spec(text, what);
  if (spec.name == what) spec.name = std::filesystem::path(what).stem().string();
  return spec;
}

ModelSpec preset_spec(const std::string& name) {
  // The presets of the issue "Train, evaluate and predict from the command line", exactly.
  static const char* const kLenet5 = R"({"name": "lenet5", "input": [1, 28, 28], "layers": [
    {"type": "Conv2d", "out_channels": 6, "kernel": 5, "padding": 2}, {"type": "ReLU"},
    {"type": "MaxPool2d", "kernel": 2},
    {"type": "Conv2d", "out_channels": 16, "kernel": 5}, {"type": "ReLU"},
    {"type": "MaxPool2d", "kernel": 2},
    {"type": "Flatten"},
    {"type": "Linear", "out_features": 120}, {"type": "ReLU"},
    {"type": "Linear", "out_features": 84}, {"type": "ReLU"},
    {"type": "Linear", "out_features": 10}]})";
  static const char* const kConvnet = R"({"name": "convnet", "input": [1, 28, 28], "layers": [
    {"type": "Conv2d", "out_channels": 32, "kernel": 3, "padding": 1}, {"type": "ReLU"},
    {"type": "MaxPool2d", "kernel": 2},
    {"type": "Conv2d", "out_channels": 64, "kernel": 3, "padding": 1}, {"type": "ReLU"},
    {"type": "MaxPool2d", "kernel": 2},
    {"type": "Flatten"},
    {"type": "Linear", "out_features": 128}, {"type": "ReLU"},
    {"type": "Linear", "out_features": 10}]})";
  // examples/seed_binary: T-shirt/top (0) against Trouser (1) with the seed's log loss.
  static const char* const kSeed = R"({"name": "seed", "input": [1, 28, 28], "loss": "log_loss",
    "classes": [0, 1], "layers": [
    {"type": "Conv2d", "out_channels": 4, "kernel": 5}, {"type": "Tanh"},
    {"type": "MaxPool2d", "kernel": 2},
    {"type": "Flatten"},
    {"type": "Linear", "out_features": 1}, {"type": "Sigmoid"}]})";
  if (name == "lenet5") return parse_model_spec(kLenet5, "preset lenet5");
  if (name == "convnet") return parse_model_spec(kConvnet, "preset convnet");
  if (name == "seed") return parse_model_spec(kSeed, "preset seed");
  throw Error("unknown preset '" + name +
              "' (expected lenet5, convnet or seed, or a .json spec file)");
}

}  // namespace cnn

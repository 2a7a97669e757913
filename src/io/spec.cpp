#include "cnn/spec.hpp"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <set>

#include "cnn/error.hpp"
#include "cnn/fileio.hpp"
#include "cnn/onnx.hpp"
#include "cnn/residual.hpp"
#include "json_reader.hpp"

namespace cnn {

namespace {

using Json = nlohmann::json;

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
        fail(where, "'" + key + "' expects whole numbers from " + std::to_string(minimum) +
                        " to 4096 (a number or [height, width]), got " + value.dump());
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

  /// Records a declared in_channels / in_features / num_features, checked when the layer is
  /// built.
  void declare_input(const Json& j, const std::string& where, const std::string& key,
                     LayerSpec& l) const {
    if (j.contains(key)) l.declared_input = positive(j[key], where, key);
  }
  /// A number > 0 (or >= 0 with `zero_ok`), at most `maximum`.
  double number(const Json& j, const std::string& where, const std::string& key, double fallback,
                double minimum, double maximum, bool minimum_ok,
                const std::string& expected) const {
    if (!j.contains(key)) return fallback;
    const Json& v = j[key];
    if (!v.is_number() || !(minimum_ok ? v.get<double>() >= minimum : v.get<double>() > minimum) ||
        !(v.get<double>() <= maximum)) {
      fail(where, "'" + key + "' expects " + expected + ", got " + v.dump());
    }
    return v.get<double>();
  }
  bool boolean(const Json& j, const std::string& where, const std::string& key,
               bool fallback) const {
    if (!j.contains(key)) return fallback;
    if (!j[key].is_boolean())
      fail(where, "'" + key + "' expects true or false, got " + j[key].dump());
    return j[key].get<bool>();
  }

  /// One Residual block being read, inside those already open: refuses more than
  /// kMaxResidualNesting, naming the outermost block, before the reader recurses further.
  struct ResidualLevel {
    const SpecReader& reader;
    ~ResidualLevel() { --reader.residual_nesting_; }
  };
  [[nodiscard]] ResidualLevel enter_residual(const std::string& where) const {
    if (residual_nesting_ == 0) outermost_residual_ = where;
    if (residual_nesting_ == kMaxResidualNesting) {
      fail(outermost_residual_,
           "Residual blocks nested deeper than " + std::to_string(kMaxResidualNesting) + " levels");
    }
    ++residual_nesting_;
    return {*this};
  }

 private:
  std::string origin_;
  mutable int residual_nesting_ = 0;
  mutable std::string outermost_residual_;
};

Json size_json(Size2 s) {
  return s.h == s.w ? Json(s.h) : Json::array({s.h, s.w});
}

Json size_pair(Size2 s) {
  return Json::array({s.h, s.w});
}

/// One layer type: all that the spec, the model files and the tools know of it. A type is added
/// by one entry in layer_types() below (docs/design-notes.md, "Adding a layer type").
struct LayerType {
  const char* name;            // the PyTorch class name, and the spec's "type"
  std::set<std::string> keys;  // the spec keys it takes besides "type"
  /// Reads and validates its keys (all allowed ones; unknown keys are refused before).
  void (*read)(const SpecReader& r, const Json& j, const std::string& where, LayerSpec& l);
  /// Writes its keys into j, every one explicit: the canonical spec.
  void (*write)(const LayerSpec& l, Json& j);
  /// Its layer for a batch of `input`; throws cnn::Error "<type>: expected input ..., got ...".
  std::unique_ptr<Layer<float>> (*build)(const LayerSpec& l, const Shape& input);
  /// The spec of a layer of this type: build's inverse.
  LayerSpec (*spec_of)(const Layer<float>& layer);
  /// The equivalent torch.nn module for a batch of `input`:
  /// {"module": class name in torch.nn, "args": [...], "kwargs": {...}}.
  Json (*torch)(const LayerSpec& l, const Shape& input);
};

/// The window keys of MaxPool2d and AvgPool2d: kernel (required), stride (default: the
/// kernel), padding (default 0).
void read_pool_window(const SpecReader& r, const Json& j, const std::string& where, LayerSpec& l) {
  if (!j.contains("kernel")) r.fail(where, l.type + " expects \"kernel\"");
  l.kernel = r.size2(j["kernel"], where, "kernel", 1);
  if (j.contains("stride")) l.stride = r.size2(j["stride"], where, "stride", 1);
  if (j.contains("padding")) l.padding = r.size2(j["padding"], where, "padding", 0);
}
void write_pool_window(const LayerSpec& l, Json& j) {
  j["kernel"] = size_json(l.kernel);
  j["stride"] = size_json(l.stride.value_or(l.kernel));
  j["padding"] = size_json(l.padding);
}

void require_rank(const char* type, const Shape& input, int rank, const char* expected) {
  if (input.rank() != rank) {
    throw Error(std::string(type) + ": expected input " + expected + ", got " + input.str());
  }
}

// The registry's recursive helpers (Residual holds layer lists), defined after it.
LayerSpec read_layer(const SpecReader& reader, const Json& j, const std::string& where);
Json write_layer(const LayerSpec& l);
std::unique_ptr<Layer<float>> build_spec_layer(const LayerSpec& l, const Shape& input);
LayerSpec spec_of_layer(const Layer<float>& layer, const std::string& where);
Json torch_module(const LayerSpec& l, const Shape& input);

/// BatchNorm2d and BatchNorm1d: the same keys, the layer class and input rank differ.
template <typename L>
LayerType batchnorm_type(const char* name) {
  return {name,
          {"num_features", "eps", "momentum", "affine"},
          [](const SpecReader& r, const Json& j, const std::string& where, LayerSpec& l) {
            l.eps = r.number(j, where, "eps", 1e-5, 0, 1, false, "a number in (0, 1]");
            // The layers compute in float: an eps below float's range is 0 there, and the
            // variance of a constant feature then divides 0 by 0 (found 2026-12-06: 1e-46
            // "diverged" at the first step).
            if (static_cast<float>(l.eps) == 0)
              r.fail(where,
                     "'eps' expects a number in (0, 1] that is not 0 as a float (at "
                     "least 1.4e-45), got " +
                         j["eps"].dump());
            l.momentum = r.number(j, where, "momentum", 0.1, 0, 1, true, "a number in [0, 1]");
            l.affine = r.boolean(j, where, "affine", true);
            r.declare_input(j, where, "num_features", l);
          },
          [](const LayerSpec& l, Json& j) {
            j["eps"] = l.eps;
            j["momentum"] = l.momentum;
            j["affine"] = l.affine;
          },
          [](const LayerSpec& l, const Shape& input) -> std::unique_ptr<Layer<float>> {
            if (input.rank() < 2) {
              throw Error(l.type + ": expected input (N, C, ...), got " + input.str());
            }
            return std::make_unique<L>(input[1], l.eps, l.momentum, l.affine);
          },
          [](const Layer<float>& layer) {
            const auto& norm = dynamic_cast<const L&>(layer);
            LayerSpec l;
            l.type = norm.type();
            l.eps = norm.eps();
            l.momentum = norm.momentum();
            l.affine = norm.affine();
            return l;
          },
          [](const LayerSpec& l, const Shape& input) {
            return Json{
                {"module", l.type},
                {"args", {input[1]}},
                {"kwargs", {{"eps", l.eps}, {"momentum", l.momentum}, {"affine", l.affine}}}};
          }};
}

/// Builds a Residual branch: each layer for the output of the one before.
std::vector<std::unique_ptr<Layer<float>>> build_branch(const std::vector<LayerSpec>& specs,
                                                        Shape shape, const char* branch) {
  std::vector<std::unique_ptr<Layer<float>>> layers;
  for (size_t i = 0; i < specs.size(); ++i) {
    try {
      layers.push_back(build_spec_layer(specs[i], shape));
      shape = layers.back()->output_shape(shape);
    } catch (const Error& e) {
      throw Error(std::string("Residual: ") + branch + " layer " + std::to_string(i) + " " +
                  e.what());
    }
  }
  return layers;
}

/// Reads a Residual branch ("body" or "shortcut"): a list of layers.
std::vector<LayerSpec> read_branch(const SpecReader& r, const Json& j, const std::string& where,
                                   const std::string& key) {
  if (!j[key].is_array())
    r.fail(where, "'" + key + "' expects a list of layers, got " + j[key].dump());
  std::vector<LayerSpec> layers;
  for (size_t i = 0; i < j[key].size(); ++i)
    layers.push_back(read_layer(r, j[key][i], where + ": " + key + " layer " + std::to_string(i)));
  return layers;
}

/// A layer type without keys or parameters (the element-wise activations, Flatten).
template <typename L>
LayerType plain(const char* name, Json torch_kwargs = Json::object()) {
  static Json kwargs;  // one per instantiation: each plain type is registered once
  kwargs = std::move(torch_kwargs);
  return {name,
          {},
          [](const SpecReader&, const Json&, const std::string&, LayerSpec&) {},
          [](const LayerSpec&, Json&) {},
          [](const LayerSpec&, const Shape&) -> std::unique_ptr<Layer<float>> {
            return std::make_unique<L>();
          },
          [](const Layer<float>& layer) {
            LayerSpec l;
            l.type = layer.type();
            return l;
          },
          [](const LayerSpec& l, const Shape&) {
            return Json{{"module", l.type}, {"args", Json::array()}, {"kwargs", kwargs}};
          }};
}

const std::vector<LayerType>& layer_types() {
  static const std::vector<LayerType> types = {
      {"Conv2d",
       {"out_channels", "in_channels", "kernel", "stride", "padding", "bias"},
       [](const SpecReader& r, const Json& j, const std::string& where, LayerSpec& l) {
         if (!j.contains("out_channels") || !j.contains("kernel")) {
           r.fail(where, "Conv2d expects \"out_channels\" and \"kernel\"");
         }
         l.out = r.positive(j["out_channels"], where, "out_channels");
         l.kernel = r.size2(j["kernel"], where, "kernel", 1);
         if (j.contains("stride")) l.stride = r.size2(j["stride"], where, "stride", 1);
         if (j.contains("padding")) {
           if (j["padding"] == "same") {
             l.same_padding = true;
           } else {
             l.padding = r.size2(j["padding"], where, "padding", 0);
           }
         }
         l.bias = r.boolean(j, where, "bias", true);
         r.declare_input(j, where, "in_channels", l);
       },
       [](const LayerSpec& l, Json& j) {
         j["out_channels"] = l.out;
         j["kernel"] = size_json(l.kernel);
         j["stride"] = size_json(l.stride.value_or(Size2(1)));
         j["padding"] = l.same_padding ? Json("same") : size_json(l.padding);
         j["bias"] = l.bias;
       },
       [](const LayerSpec& l, const Shape& input) -> std::unique_ptr<Layer<float>> {
         require_rank("Conv2d", input, 4, "(N, C, H, W)");
         return std::make_unique<Conv2d<float>>(
             input[1], l.out, l.kernel, l.stride.value_or(Size2(1)),
             l.same_padding ? Padding2::Same() : Padding2(l.padding), l.bias);
       },
       [](const Layer<float>& layer) {
         const auto& conv = dynamic_cast<const Conv2d<float>&>(layer);
         LayerSpec l;
         l.type = "Conv2d";
         l.out = conv.out_channels();
         l.kernel = conv.kernel();
         l.stride = conv.stride();
         l.same_padding = conv.same_padding();
         if (!l.same_padding) l.padding = conv.padding();
         l.bias = conv.has_bias();
         return l;
       },
       [](const LayerSpec& l, const Shape& input) {
         return Json{{"module", "Conv2d"},
                     {"args", {input[1], l.out, size_pair(l.kernel)}},
                     {"kwargs",
                      {{"stride", size_pair(l.stride.value_or(Size2(1)))},
                       // Resolved: torch refuses padding="same" with a stride above 1.
                       {"padding",
                        size_pair(l.same_padding ? Size2((l.kernel.h - 1) / 2, (l.kernel.w - 1) / 2)
                                                 : l.padding)},
                       {"bias", l.bias}}}};
       }},
      {"MaxPool2d",
       {"kernel", "stride", "padding"},
       [](const SpecReader& r, const Json& j, const std::string& where, LayerSpec& l) {
         read_pool_window(r, j, where, l);
       },
       write_pool_window,
       [](const LayerSpec& l, const Shape&) -> std::unique_ptr<Layer<float>> {
         return std::make_unique<MaxPool2d<float>>(l.kernel, l.stride, l.padding);
       },
       [](const Layer<float>& layer) {
         const auto& pool = dynamic_cast<const MaxPool2d<float>&>(layer);
         LayerSpec l;
         l.type = "MaxPool2d";
         l.kernel = pool.kernel();
         l.stride = pool.stride();
         l.padding = pool.padding();
         return l;
       },
       [](const LayerSpec& l, const Shape&) {
         return Json{{"module", "MaxPool2d"},
                     {"args", {size_pair(l.kernel)}},
                     {"kwargs",
                      {{"stride", size_pair(l.stride.value_or(l.kernel))},
                       {"padding", size_pair(l.padding)}}}};
       }},
      {"Linear",
       {"out_features", "in_features", "bias"},
       [](const SpecReader& r, const Json& j, const std::string& where, LayerSpec& l) {
         if (!j.contains("out_features")) r.fail(where, "Linear expects \"out_features\"");
         l.out = r.positive(j["out_features"], where, "out_features");
         l.bias = r.boolean(j, where, "bias", true);
         r.declare_input(j, where, "in_features", l);
       },
       [](const LayerSpec& l, Json& j) {
         j["out_features"] = l.out;
         j["bias"] = l.bias;
       },
       [](const LayerSpec& l, const Shape& input) -> std::unique_ptr<Layer<float>> {
         require_rank("Linear", input, 2, "(N, features) (add a Flatten before it)");
         return std::make_unique<Linear<float>>(input[1], l.out, l.bias);
       },
       [](const Layer<float>& layer) {
         const auto& linear = dynamic_cast<const Linear<float>&>(layer);
         LayerSpec l;
         l.type = "Linear";
         l.out = linear.out_features();
         l.bias = linear.has_bias();
         return l;
       },
       [](const LayerSpec& l, const Shape& input) {
         return Json{
             {"module", "Linear"}, {"args", {input[1], l.out}}, {"kwargs", {{"bias", l.bias}}}};
       }},
      {"AvgPool2d",
       {"kernel", "stride", "padding", "count_include_pad"},
       [](const SpecReader& r, const Json& j, const std::string& where, LayerSpec& l) {
         read_pool_window(r, j, where, l);
         l.count_include_pad = r.boolean(j, where, "count_include_pad", true);
       },
       [](const LayerSpec& l, Json& j) {
         write_pool_window(l, j);
         j["count_include_pad"] = l.count_include_pad;
       },
       [](const LayerSpec& l, const Shape&) -> std::unique_ptr<Layer<float>> {
         return std::make_unique<AvgPool2d<float>>(l.kernel, l.stride, l.padding,
                                                   l.count_include_pad);
       },
       [](const Layer<float>& layer) {
         const auto& pool = dynamic_cast<const AvgPool2d<float>&>(layer);
         LayerSpec l;
         l.type = "AvgPool2d";
         l.kernel = pool.kernel();
         l.stride = pool.stride();
         l.padding = pool.padding();
         l.count_include_pad = pool.count_include_pad();
         return l;
       },
       [](const LayerSpec& l, const Shape&) {
         return Json{{"module", "AvgPool2d"},
                     {"args", {size_pair(l.kernel)}},
                     {"kwargs",
                      {{"stride", size_pair(l.stride.value_or(l.kernel))},
                       {"padding", size_pair(l.padding)},
                       {"count_include_pad", l.count_include_pad}}}};
       }},
      {"AdaptiveAvgPool2d",
       {"output_size"},
       [](const SpecReader& r, const Json& j, const std::string& where, LayerSpec& l) {
         if (j.contains("output_size")) {
           l.output_size = r.size2(j["output_size"], where, "output_size", 1);
           if (l.output_size.h != 1 || l.output_size.w != 1) {
             r.fail(where,
                    "AdaptiveAvgPool2d expects \"output_size\": 1 (global average "
                    "pooling, the only size implemented), got " +
                        j["output_size"].dump());
           }
         }
       },
       [](const LayerSpec& l, Json& j) { j["output_size"] = size_json(l.output_size); },
       [](const LayerSpec& l, const Shape&) -> std::unique_ptr<Layer<float>> {
         return std::make_unique<AdaptiveAvgPool2d<float>>(l.output_size);
       },
       [](const Layer<float>&) {
         LayerSpec l;
         l.type = "AdaptiveAvgPool2d";
         return l;
       },
       [](const LayerSpec& l, const Shape&) {
         return Json{{"module", "AdaptiveAvgPool2d"},
                     {"args", {size_pair(l.output_size)}},
                     {"kwargs", Json::object()}};
       }},
      {"Dropout",
       {"p"},
       [](const SpecReader& r, const Json& j, const std::string& where, LayerSpec& l) {
         if (!j.contains("p")) return;
         if (!j["p"].is_number() || !(j["p"].get<double>() >= 0 && j["p"].get<double>() < 1)) {
           r.fail(where, "Dropout expects \"p\" in [0, 1), got " + j["p"].dump());
         }
         l.p = j["p"].get<double>();
       },
       [](const LayerSpec& l, Json& j) { j["p"] = l.p; },
       [](const LayerSpec& l, const Shape&) -> std::unique_ptr<Layer<float>> {
         return std::make_unique<Dropout<float>>(l.p);
       },
       [](const Layer<float>& layer) {
         LayerSpec l;
         l.type = "Dropout";
         l.p = dynamic_cast<const Dropout<float>&>(layer).p();
         return l;
       },
       [](const LayerSpec& l, const Shape&) {
         return Json{{"module", "Dropout"}, {"args", Json::array()}, {"kwargs", {{"p", l.p}}}};
       }},
      batchnorm_type<BatchNorm2d<float>>("BatchNorm2d"),
      batchnorm_type<BatchNorm1d<float>>("BatchNorm1d"),
      {"Residual",
       {"body", "shortcut", "activation"},
       [](const SpecReader& r, const Json& j, const std::string& where, LayerSpec& l) {
         const SpecReader::ResidualLevel level = r.enter_residual(where);
         if (!j.contains("body")) r.fail(where, "Residual expects \"body\": a list of layers");
         l.body = read_branch(r, j, where, "body");
         if (l.body.empty()) r.fail(where, "Residual expects a non-empty \"body\"");
         if (j.contains("shortcut")) l.shortcut = read_branch(r, j, where, "shortcut");
         if (j.contains("activation")) {
           const Json& a = j["activation"];
           if (!a.is_string() || (a != "ReLU" && a != "Tanh" && a != "Sigmoid" && a != "none")) {
             r.fail(where,
                    "'activation' expects \"ReLU\", \"Tanh\", \"Sigmoid\" or \"none\", got " +
                        a.dump());
           }
           l.activation = a == "none" ? "" : a.get<std::string>();
         }
       },
       [](const LayerSpec& l, Json& j) {
         j["body"] = Json::array();
         for (const LayerSpec& child : l.body) j["body"].push_back(write_layer(child));
         j["shortcut"] = Json::array();
         for (const LayerSpec& child : l.shortcut) j["shortcut"].push_back(write_layer(child));
         j["activation"] = l.activation.empty() ? "none" : l.activation;
       },
       [](const LayerSpec& l, const Shape& input) -> std::unique_ptr<Layer<float>> {
         return std::make_unique<Residual<float>>(build_branch(l.body, input, "body"),
                                                  build_branch(l.shortcut, input, "shortcut"),
                                                  l.activation);
       },
       [](const Layer<float>& layer) {
         const auto& block = dynamic_cast<const Residual<float>&>(layer);
         LayerSpec l;
         l.type = "Residual";
         for (size_t i = 0; i < block.body_size(); ++i)
           l.body.push_back(spec_of_layer(block.body(i), "body layer " + std::to_string(i)));
         for (size_t i = 0; i < block.shortcut_size(); ++i) {
           l.shortcut.push_back(
               spec_of_layer(block.shortcut(i), "shortcut layer " + std::to_string(i)));
         }
         l.activation = block.activation();
         return l;
       },
       [](const LayerSpec& l, const Shape& input) {
         // tools/torch_interop.py defines the module: body and shortcut are nn.Sequential.
         const auto modules = [&](const std::vector<LayerSpec>& branch) {
           Json list = Json::array();
           Shape shape = input;
           for (const LayerSpec& child : branch) {
             list.push_back(torch_module(child, shape));
             shape = build_spec_layer(child, shape)->output_shape(shape);
           }
           return list;
         };
         return Json{{"module", "Residual"},
                     {"args", Json::array()},
                     {"kwargs", Json::object()},
                     {"body", modules(l.body)},
                     {"shortcut", modules(l.shortcut)},
                     {"activation", l.activation.empty() ? Json(nullptr) : Json(l.activation)}};
       }},
      plain<ReLU<float>>("ReLU"),
      {"LeakyReLU",
       {"negative_slope"},
       [](const SpecReader& r, const Json& j, const std::string& where, LayerSpec& l) {
         if (!j.contains("negative_slope")) return;
         // PyTorch takes any float. JSON holds no NaN or infinity, but a LayerSpec written
         // in C++ can: check_layer_limits reads specs through here too.
         // The model computes in float: 1e40 is infinite there (found 2026-12-06).
         const Json& v = j["negative_slope"];
         if (!v.is_number() || !std::isfinite(static_cast<float>(v.get<double>()))) {
           r.fail(where,
                  "LeakyReLU expects \"negative_slope\" a finite number of float's range "
                  "(magnitude at most 3.4e38), got " +
                      v.dump());
         }
         l.negative_slope = v.get<double>();
       },
       [](const LayerSpec& l, Json& j) { j["negative_slope"] = l.negative_slope; },
       [](const LayerSpec& l, const Shape&) -> std::unique_ptr<Layer<float>> {
         return std::make_unique<LeakyReLU<float>>(l.negative_slope);
       },
       [](const Layer<float>& layer) {
         LayerSpec l;
         l.type = "LeakyReLU";
         l.negative_slope = dynamic_cast<const LeakyReLU<float>&>(layer).negative_slope();
         return l;
       },
       [](const LayerSpec& l, const Shape&) {
         return Json{{"module", "LeakyReLU"},
                     {"args", Json::array()},
                     {"kwargs", {{"negative_slope", l.negative_slope}}}};
       }},
      plain<ReLU6<float>>("ReLU6"),
      plain<Tanh<float>>("Tanh"),
      plain<Sigmoid<float>>("Sigmoid"),
      plain<Softmax<float>>("Softmax", {{"dim", 1}}),
      plain<Flatten<float>>("Flatten"),
  };
  return types;
}

/// The registration of `type`, or null.
const LayerType* find_layer_type(const std::string& type) {
  for (const LayerType& t : layer_types()) {
    if (type == t.name) return &t;
  }
  return nullptr;
}

std::string layer_type_list() {
  std::string list;
  for (const LayerType& t : layer_types()) list += (list.empty() ? "" : ", ") + std::string(t.name);
  return list;
}

/// Reads one layer of a spec; `where` ("layer 3", "layer 3: body layer 0") starts its errors.
LayerSpec read_layer(const SpecReader& reader, const Json& j, const std::string& where) {
  if (!j.is_object() || !j.contains("type") || !j["type"].is_string()) {
    reader.fail(where, "expected an object with a \"type\", got " + j.dump());
  }
  LayerSpec l;
  l.type = j["type"].get<std::string>();
  const LayerType* type = find_layer_type(l.type);
  if (!type) {
    reader.fail(where, "unknown type '" + l.type + "' (expected one of " + layer_type_list() + ")");
  }
  std::set<std::string> allowed = type->keys;
  allowed.insert("type");
  reader.require_keys(j, where, allowed);
  type->read(reader, j, where, l);
  return l;
}

Json write_layer(const LayerSpec& l) {
  Json j = {{"type", l.type}};
  if (const LayerType* type = find_layer_type(l.type)) type->write(l, j);
  return j;
}

/// The layer of `l` for a batch of `input`, its declared input size checked; throws
/// cnn::Error "<type>: ...".
std::unique_ptr<Layer<float>> build_spec_layer(const LayerSpec& l, const Shape& input) {
  const LayerType* type = find_layer_type(l.type);
  if (!type) {
    throw Error("unknown type '" + l.type + "' (expected one of " + layer_type_list() + ")");
  }
  if (l.declared_input && (input.rank() < 2 || input[1] != *l.declared_input)) {
    throw Error(l.type + ": declares " + std::to_string(*l.declared_input) +
                " inputs, but its input " + input.str() + " has " +
                (input.rank() < 2 ? std::string("none") : std::to_string(input[1])));
  }
  return type->build(l, input);
}

LayerSpec spec_of_layer(const Layer<float>& layer, const std::string& where) {
  const LayerType* type = find_layer_type(layer.type());
  if (!type) {
    throw Error("spec_of: " + where + " " + layer.describe() + ": no spec registration for type '" +
                layer.type() + "'");
  }
  return type->spec_of(layer);
}

Json torch_module(const LayerSpec& l, const Shape& input) {
  return find_layer_type(l.type)->torch(l, input);
}

/// Throws cnn::Error "<who>: the spec '<name>': expected an input (C, H, W), got ..." unless
/// spec.input has rank 3, which every reader of a spec's input assumes.
void require_image_input(const ModelSpec& spec, const char* who) {
  if (spec.input.rank() != 3) {
    throw Error(std::string(who) + ": the spec '" + spec.name +
                "': expected an input (C, H, W), got " + spec.input.str());
  }
}

}  // namespace

ModelSpec parse_model_spec(const std::string& text, const std::string& origin) {
  SpecReader reader(origin);
  Json j;
  try {
    j = detail::parse_json(text);
  } catch (const Json::exception& e) {
    reader.fail("", "not valid JSON: " + detail::json_error_text(e));
  }
  if (!j.is_object()) reader.fail("", "expected a JSON object with \"input\" and \"layers\"");
  reader.require_keys(j, "", {"name", "input", "loss", "classes", "layers", "format", "version"});
  if (j.contains("version") && j["version"] != 1) {
    reader.fail("", "unknown spec version " + j["version"].dump() + " (expected 1)");
  }
  ModelSpec spec;
  // Found by fuzz/fuzz_spec.cpp: {"name": 1} escaped as nlohmann's type_error.
  for (const char* key : {"name", "loss", "format"}) {
    if (j.contains(key) && !j[key].is_string())
      reader.fail("", std::string("'") + key + "' expects a string, got " + j[key].dump());
  }
  // What to_json writes; another format's file is not read as ours (found 2026-12-06:
  // "keras" was taken).
  if (j.contains("format") && j["format"] != "cnn-spec")
    reader.fail("", "'format' expects \"cnn-spec\", got " + j["format"].dump());
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
      // Compared at full width: get<int>() of 4294967299 is 3 (found 2026-12-08, a probe).
      const bool label = c.is_number_unsigned()  ? c.get<uint64_t>() <= 255
                         : c.is_number_integer() ? c.get<int64_t>() >= 0 && c.get<int64_t>() <= 255
                                                 : false;
      if (!label || !seen.insert(static_cast<int>(c.get<int64_t>())).second) {
        reader.fail("",
                    "\"classes\" expects distinct labels in [0, 255], got " + j["classes"].dump());
      }
      spec.classes.push_back(static_cast<int>(c.get<int64_t>()));
    }
  }
  if (!j.contains("layers") || !j["layers"].is_array() || j["layers"].empty()) {
    reader.fail("", "expected \"layers\": a non-empty list");
  }
  for (size_t i = 0; i < j["layers"].size(); ++i)
    spec.layers.push_back(read_layer(reader, j["layers"][i], "layer " + std::to_string(i)));
  // Shapes that cannot fit are refused here, naming the layer. Shapes only: a model too large
  // for memory is still a spec (cnn info describes it; train refuses it when it allocates).
  const Shape out = model_shapes(spec).layout.shapes.back();
  if (spec.loss == LossKind::kLogLoss) {
    if (out != Shape{1, 1} || spec.layers.back().type != "Sigmoid") {
      reader.fail("", "loss log_loss expects the model to end in one Sigmoid output, got output " +
                          out.str() + " from " + spec.layers.back().type);
    }
    if (spec.classes.size() != 2) {
      reader.fail("",
                  "loss log_loss expects \"classes\": [negative, positive], two dataset labels");
    }
  } else {
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
  require_image_input(spec, "to_json");
  Json layers = Json::array();
  for (const LayerSpec& l : spec.layers) layers.push_back(write_layer(l));
  Json j = {{"format", "cnn-spec"},
            {"version", 1},
            {"name", spec.name},
            {"input", {spec.input[0], spec.input[1], spec.input[2]}},
            {"loss", spec.loss == LossKind::kLogLoss ? "log_loss" : "cross_entropy"},
            {"layers", layers}};
  if (!spec.classes.empty()) j["classes"] = spec.classes;
  return detail::dump_json(j, "the spec's name");
}

ModelShapes model_shapes(const ModelSpec& spec) {
  // A ModelSpec filled in C++ (or default-constructed) need not have the (C, H, W) that
  // parse_model_spec guarantees; its dimensions were read past the shape's rank.
  require_image_input(spec, "build_model");
  ModelShapes shapes;
  Shape shape{1, spec.input[0], spec.input[1], spec.input[2]};
  try {
    for (size_t i = 0; i < spec.layers.size(); ++i) {
      const LayerSpec& l = spec.layers[i];
      std::unique_ptr<Layer<float>> layer;
      try {
        layer = build_spec_layer(l, shape);
        shape = layer->output_shape(shape);
      } catch (const Error& e) {
        throw Error("Sequential: layer " + std::to_string(i) + " " + e.what());
      }
      shapes.model.add(std::move(layer));
    }
    // What build() checks besides the layers' inputs (the parameter total), allocating nothing.
    shapes.layout = shapes.model.layout(spec.input);
  } catch (const Error& e) {
    throw Error(spec.name + ": " + e.what());
  }
  return shapes;
}

Sequential<float> build_model(const ModelSpec& spec, ModelUse use) {
  Sequential<float> model = model_shapes(spec).model;
  try {
    model.build(spec.input, use);
  } catch (const Error& e) {  // out of memory: the shapes were checked
    throw Error(spec.name + ": " + e.what());
  }
  return model;
}

ModelSpec spec_of(const Sequential<float>& model, const std::string& name, LossKind loss) {
  ModelSpec spec;
  spec.name = name;
  spec.input = model.sample_shape();
  spec.loss = loss;
  // log_loss's spec names its two dataset labels, negative and positive: 0 and 1 here, so that
  // the spec saves (save_model refused every log_loss spec_of gave: found 2026-12-08, a probe).
  if (loss == LossKind::kLogLoss) spec.classes = {0, 1};
  if (spec.input.rank() != 3) {
    throw Error("spec_of: expected a built model of (C, H, W) samples, got " + spec.input.str());
  }
  for (size_t i = 0; i < model.size(); ++i)
    spec.layers.push_back(spec_of_layer(model.layer(i), "layer " + std::to_string(i)));
  return spec;
}

std::vector<std::string> layer_type_names() {
  std::vector<std::string> names;
  for (const LayerType& t : layer_types()) names.push_back(t.name);
  return names;
}

std::vector<std::string> torch_modules(const ModelSpec& spec) {
  const std::vector<Shape> shapes = model_shapes(spec).layout.shapes;
  std::vector<std::string> modules;
  for (size_t i = 0; i < spec.layers.size(); ++i)
    modules.push_back(torch_module(spec.layers[i], shapes[i]).dump());
  return modules;
}

void check_layer_limits(const std::vector<LayerSpec>& layers, const std::string& origin) {
  SpecReader reader(origin);
  for (size_t i = 0; i < layers.size(); ++i)
    read_layer(reader, write_layer(layers[i]), "layer " + std::to_string(i));
}

Shape layer_output_shape(const LayerSpec& layer, const Shape& input) {
  return build_spec_layer(layer, input)->output_shape(input);
}

std::unique_ptr<Layer<float>> build_layer(const std::string& layer_json, const Shape& input,
                                          const std::string& origin) {
  SpecReader reader(origin);
  Json j;
  try {
    j = detail::parse_json(layer_json);
  } catch (const Json::exception& e) {
    reader.fail("", "not valid JSON: " + detail::json_error_text(e));
  }
  const LayerSpec l = read_layer(reader, j, "layer 0");
  try {
    std::unique_ptr<Layer<float>> layer = build_spec_layer(l, input);
    layer->output_shape(input);  // validates the input
    return layer;
  } catch (const Error& e) {
    reader.fail("", e.what());
  }
}

int64_t output_classes(const ModelSpec& spec) {
  if (spec.loss == LossKind::kLogLoss) return 2;
  return model_shapes(spec).layout.shapes.back()[1];
}

std::vector<std::string> preset_names() {
  return {"lenet5", "convnet", "resnet", "seed"};
}

ModelSpec model_spec_from(const std::string& what, const std::string& flag) {
  const std::vector<std::string> presets = preset_names();
  if (std::find(presets.begin(), presets.end(), what) != presets.end()) return preset_spec(what);
  // "" is shown as "", not as nothing ("--model : neither a preset ...").
  const std::string shown = what.empty() ? std::string("\"\"") : what;
  const std::string named = flag.empty() ? shown : flag + " " + shown;
  std::error_code error;
  if (!std::filesystem::is_regular_file(what, error)) {
    // What is there, when something is: "neither a preset nor a spec file" for a directory,
    // a pipe or a missing x.json left the user to guess (found 2026-12-06).
    const char* kind = special_file_kind(what);
    const std::string there = kind != nullptr ? std::string(" (it is ") + kind + ")"
                              : what.ends_with(".json") && !std::filesystem::exists(what, error)
                                  ? " (no such file)"
                                  : "";
    throw Error(named + ": neither a preset (lenet5, convnet, resnet, seed) nor a spec file" +
                there);
  }
  const std::string text = read_whole_file(what, "a spec file");
  // A model file where its architecture belongs (`--model m.safetensors`, `--model m.onnx`)
  // was "not valid JSON: [json.exception.parse_error.101] ... last read: '<U+0018>'" (found
  // 2026-12-07). A safetensors file starts with its header's length (8 bytes, little-endian)
  // and the header's '{'; no JSON text does, and a spec never starts with anything but
  // whitespace and '{'.
  uint64_t header_length = 0;
  for (size_t i = 0; i < 8 && i < text.size(); ++i)
    header_length |= uint64_t{static_cast<unsigned char>(text[i])} << (8 * i);
  const bool safetensors = text.size() > 8 && text[8] == '{' && header_length <= text.size() - 8;
  const size_t first = text.find_first_not_of(" \t\r\n");
  const bool onnx = is_onnx_path(what) && first != std::string::npos && text[first] != '{';
  if (safetensors || onnx) {
    throw Error(named + ": " +
                (safetensors ? "a safetensors file (a model's weights)" : "an ONNX model") +
                ", not a spec: expected a preset (lenet5, convnet, resnet, seed) or a spec "
                "file (JSON; cnn info " +
                what + " --json shows a model file's spec)");
  }
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
  // A small residual network for 28x28 images: a 3x3 stem of 32 channels at full resolution,
  // 2x2 max pooling, then three basic blocks of width 32 (14x14), 64 (7x7) and 128 (4x4); the
  // last two halve the resolution, with 1x1 projection shortcuts. BatchNorm after every
  // convolution, global average pooling, a linear classifier: 308k parameters. Width where the
  // images are small is cheap: this reached 93.4% in 10 epochs where a 16/32/64 network at
  // 28/14/7 with the same multiply-adds reached 92.0% (docs/design-notes.md, "The resnet preset").
  static const char* const kResnet = R"({"name": "resnet", "input": [1, 28, 28], "layers": [
    {"type": "Conv2d", "out_channels": 32, "kernel": 3, "padding": 1, "bias": false},
    {"type": "BatchNorm2d"}, {"type": "ReLU"},
    {"type": "MaxPool2d", "kernel": 2},
    {"type": "Residual", "body": [
      {"type": "Conv2d", "out_channels": 32, "kernel": 3, "padding": 1, "bias": false},
      {"type": "BatchNorm2d"}, {"type": "ReLU"},
      {"type": "Conv2d", "out_channels": 32, "kernel": 3, "padding": 1, "bias": false},
      {"type": "BatchNorm2d"}]},
    {"type": "Residual", "body": [
      {"type": "Conv2d", "out_channels": 64, "kernel": 3, "stride": 2, "padding": 1, "bias": false},
      {"type": "BatchNorm2d"}, {"type": "ReLU"},
      {"type": "Conv2d", "out_channels": 64, "kernel": 3, "padding": 1, "bias": false},
      {"type": "BatchNorm2d"}], "shortcut": [
      {"type": "Conv2d", "out_channels": 64, "kernel": 1, "stride": 2, "bias": false},
      {"type": "BatchNorm2d"}]},
    {"type": "Residual", "body": [
      {"type": "Conv2d", "out_channels": 128, "kernel": 3, "stride": 2, "padding": 1, "bias": false},
      {"type": "BatchNorm2d"}, {"type": "ReLU"},
      {"type": "Conv2d", "out_channels": 128, "kernel": 3, "padding": 1, "bias": false},
      {"type": "BatchNorm2d"}], "shortcut": [
      {"type": "Conv2d", "out_channels": 128, "kernel": 1, "stride": 2, "bias": false},
      {"type": "BatchNorm2d"}]},
    {"type": "AdaptiveAvgPool2d"}, {"type": "Flatten"},
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
  if (name == "resnet") return parse_model_spec(kResnet, "preset resnet");
  if (name == "seed") return parse_model_spec(kSeed, "preset seed");
  throw Error("unknown preset '" + name +
              "' (expected lenet5, convnet, resnet or seed, or a .json spec file)");
}

}  // namespace cnn

#include "cnn/model_file.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>

#include "cnn/error.hpp"
#include "cnn/fileio.hpp"
#include "cnn/safetensors.hpp"
#include "json_reader.hpp"

namespace cnn {

using Json = nlohmann::json;

void save_model(const std::string& path, Sequential<float>& model, const ModelSpec& spec,
                const std::vector<std::string>& class_names) {
  require_path(path, "save_model");
  // A file whose architecture does not describe its tensors could not be loaded again.
  detail::require_spec_describes(path, model, spec);
  detail::require_class_names(path, spec, class_names);
  // What load_model would refuse is refused here, before a file is written that cannot be read
  // back: a spec that does not parse again (a log loss without its two classes, a kernel over
  // the spec's limits) and non-finite values.
  std::string architecture;
  try {
    architecture = to_json(spec);
    parse_model_spec(architecture, "architecture");
  } catch (const Error& e) {
    throw Error(path + ": cannot save: the file would not load: " + e.what());
  }
  const auto require_finite = [&](const auto& named) {
    for (const auto& t : named) {
      for (int64_t i = 0; i < t.value.numel(); ++i) {
        if (!std::isfinite(t.value[i])) {
          throw Error(path + ": cannot save: tensor '" + t.name +
                      "' holds a non-finite value at index " + std::to_string(i) +
                      " (the file would not load)");
        }
      }
    }
  };
  require_finite(model.named_parameters());
  require_finite(model.named_buffers());
  save_safetensors(
      path, detail::model_tensors(model),
      {{"format", "cnn"},
       {"format_version", kModelFormatVersion},
       {"architecture", architecture},
       {"class_names", detail::dump_json(Json(class_names), path + ": cannot save: class names")}});
}

bool is_onnx_path(const std::string& path) {
  std::string ext = std::filesystem::path(path).extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return ext == ".onnx";
}

namespace {
/// load_model's and describe_model_file's check of the metadata's "format".
void require_model_format(const SafeTensorsFile& file, const std::string& path) {
  // "format" says what wrote the file. A checkpoint holds a model's tensors under the same
  // names (and the optimizer's under others, which the tensor check would name as unexpected,
  // or not at all for plain SGD): it loaded as a model. A file without the key (PyTorch's
  // safetensors with our architecture, tools/torch_interop.py) is read as before, and so is
  // one that says "pt", the tag PyTorch-side savers write (transformers' save_pretrained,
  // diffusers, many conversion scripts): a state_dict, its architecture from the spec given (found
  // 2026-12-08, a probe: refused as an unknown format even with --model).
  const auto& meta = file.metadata();
  if (const auto format = meta.find("format");
      format != meta.end() && format->second != "cnn" && format->second != "pt") {
    if (format->second == "cnn-checkpoint") {
      throw Error(path +
                  ": a training checkpoint, not a model file (load_checkpoint reads it; "
                  "cnn train --resume continues the run, which writes its model file)");
    }
    std::string shown = format->second.substr(0, 40);
    for (char& c : shown) {
      if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';  // one line
    }
    throw Error(path + ": unknown format '" + shown + (format->second.size() > 40 ? "...'" : "'") +
                " in the metadata (expected \"cnn\", or \"pt\" for PyTorch's)");
  }
}
}  // namespace

ModelFile load_model(const std::string& path, const std::optional<ModelSpec>& spec) {
  require_path(path, "load_model");
  // The header alone, then each tensor's bytes straight from the file into the model: the
  // whole file in memory first added a model's worth to the load's peak.
  const SafeTensorsFile file = SafeTensorsFile::open(path);
  require_model_format(file, path);
  return detail::model_from_file(file, path, spec, "");
}

ModelFile describe_model_file(const std::string& path, const std::optional<ModelSpec>& spec) {
  require_path(path, "describe_model_file");
  const SafeTensorsFile file = SafeTensorsFile::open(path);
  require_model_format(file, path);
  return detail::model_description(file, path, spec, "");
}

namespace detail {

std::string spec_mismatch(const Sequential<float>& model, const ModelSpec& spec) {
  if (!model.built()) return "the model is not built";
  // Shapes only: a second copy of the model's values (a model's worth of memory, twice with
  // its gradients) told nothing more.
  Sequential<float> described;
  try {
    described = model_shapes(spec).model;
  } catch (const Error& e) {
    return e.what();
  }
  if (spec.input != model.sample_shape()) {
    return "its input is " + spec.input.str() + ", the model's " + model.sample_shape().str();
  }
  for (size_t i = 0; i < std::min(model.size(), described.size()); ++i) {
    if (described.layer(i).describe() != model.layer(i).describe()) {
      return "layer " + std::to_string(i) + " is " + described.layer(i).describe() +
             " in the spec, " + model.layer(i).describe() + " in the model";
    }
  }
  if (described.size() != model.size()) {
    return "it has " + std::to_string(described.size()) + " layers, the model " +
           std::to_string(model.size());
  }
  return "";
}

std::string spec_not_describing(const Sequential<float>& model, const ModelSpec& spec) {
  const std::string why = spec_mismatch(model, spec);
  return why.empty() ? "" : "the spec '" + spec.name + "' does not describe the model: " + why;
}

void require_spec_describes(const std::string& path, const Sequential<float>& model,
                            const ModelSpec& spec) {
  if (const std::string why = spec_not_describing(model, spec); !why.empty())
    throw Error(path + ": cannot save: " + why);
}

std::string class_names_mismatch(const ModelSpec& spec,
                                 const std::vector<std::string>& class_names) {
  // A name per output, or none: a list of another length named some outputs wrongly or not
  // at all, and readers (cnn eval, predict) index it by output.
  if (class_names.empty()) return "";
  const int64_t classes = output_classes(spec);
  if (static_cast<int64_t>(class_names.size()) == classes) return "";
  return "expected one class name per output of the model (" + std::to_string(classes) +
         ") or none, got " + std::to_string(class_names.size());
}

void require_class_names(const std::string& path, const ModelSpec& spec,
                         const std::vector<std::string>& class_names) {
  if (const std::string why = class_names_mismatch(spec, class_names); !why.empty())
    throw Error(path + ": cannot save: " + why);
}

std::vector<SaveTensor> model_tensors(Sequential<float>& model) {
  std::vector<SaveTensor> tensors;
  for (const auto& p : model.named_parameters()) tensors.push_back({p.name, p.value});
  for (const auto& b : model.named_buffers())
    tensors.push_back({b.name, b.value, b.counter ? DType::kI64 : DType::kF32});
  return tensors;
}

ModelFile model_description(const SafeTensorsFile& file, const std::string& path,
                            const std::optional<ModelSpec>& spec, const std::string& other_prefix) {
  const auto fail = [&](const std::string& message) -> void { throw Error(path + ": " + message); };
  const auto& meta = file.metadata();
  ModelFile loaded;
  if (meta.count("format_version") && meta.at("format_version") != kModelFormatVersion) {
    fail("unknown format version '" + meta.at("format_version") + "' (this build reads " +
         kModelFormatVersion + ")");
  }
  if (spec) {
    // A file that holds its architecture is read by it: a spec given for it must be the same,
    // or a file trained on "classes" [3, 7] was evaluated on labels 0 and 1 under the names of
    // 3 and 7, and any layers whose tensors have the same shapes (ReLU for Tanh) were taken
    // (found 2026-12-08, a probe).
    if (meta.count("architecture")) {
      const ModelSpec held = parse_model_spec(meta.at("architecture"), path + ": architecture");
      if (to_json(held) != to_json(*spec)) {
        fail("the architecture given ('" + spec->name + "') is not the one the file holds ('" +
             held.name + "'): expected the same, or none (cnn info shows the file's)");
      }
    }
    loaded.spec = *spec;
  } else {
    if (!meta.count("format_version")) {
      fail(
          "no format_version in the metadata: not a cnn model file (for weights without our "
          "metadata, pass the architecture with --model SPEC.json)");
    }
    if (!meta.count("architecture")) fail("no architecture in the metadata");
    loaded.spec = parse_model_spec(meta.at("architecture"), path + ": architecture");
  }
  // The file's tensors are checked against the architecture's shapes before the model's values
  // are allocated: the header has been checked against the file's size, so an architecture
  // that claims more than the file holds (a line of JSON can claim a Linear of terabytes) is
  // refused by name, not by "out of memory" or after allocating it.
  loaded.model = model_shapes(loaded.spec).model;
  const Sequential<float>& shapes = loaded.model;
  std::set<std::string> expected;
  for (const ParamSpec& p : shapes.parameter_specs()) {
    expected.insert(p.name);
    if (!file.contains(p.name)) fail("missing tensor '" + p.name + "' of shape " + p.shape.str());
    const SafeTensorsFile::Entry& entry = file.entry(p.name);
    if (entry.dtype != DType::kF32) fail("tensor '" + p.name + "': expected dtype F32");
    if (entry.shape != p.shape) {
      fail("tensor '" + p.name + "': expected shape " + p.shape.str() + ", got " +
           entry.shape.str());
    }
  }
  for (const ParamSpec& b : shapes.buffer_specs()) {
    expected.insert(b.name);
    if (!file.contains(b.name)) fail("missing buffer '" + b.name + "' of shape " + b.shape.str());
    const SafeTensorsFile::Entry& entry = file.entry(b.name);
    // PyTorch writes counters as I64; we read any integer dtype for them, F32 for the others.
    const bool dtype_ok = b.counter ? (entry.dtype == DType::kI64 || entry.dtype == DType::kI32)
                                    : entry.dtype == DType::kF32;
    if (!dtype_ok) {
      fail("buffer '" + b.name + "': expected dtype " + (b.counter ? "I64" : "F32"));
    }
    if (entry.shape != b.shape) {
      fail("buffer '" + b.name + "': expected shape " + b.shape.str() + ", got " +
           entry.shape.str());
    }
  }
  for (const std::string& name : file.names()) {
    if (!expected.count(name) && (other_prefix.empty() || !name.starts_with(other_prefix)))
      fail("unexpected tensor '" + name + "' (not in the architecture)");
  }
  if (meta.count("class_names")) {
    try {
      loaded.class_names =
          detail::parse_json(meta.at("class_names")).get<std::vector<std::string>>();
    } catch (const Json::exception&) {
      fail("class_names: expected a JSON list of strings");
    }
    // save_model writes one name per output (since 2026-12-06). More names than outputs name
    // nothing; fewer come from cnn train before then, on data whose labels stop below the last
    // output: the rest are named by their index, as the data's own names are, so that such a
    // file saves again.
    const int64_t classes = output_classes(loaded.spec);
    if (static_cast<int64_t>(loaded.class_names.size()) > classes) {
      fail("class_names: expected at most one name per output of the model (" +
           std::to_string(classes) + "), got " + std::to_string(loaded.class_names.size()));
    }
    if (!loaded.class_names.empty()) {
      while (static_cast<int64_t>(loaded.class_names.size()) < classes)
        loaded.class_names.push_back(std::to_string(loaded.class_names.size()));
    }
  }
  return loaded;
}

ModelFile model_from_file(const SafeTensorsFile& file, const std::string& path,
                          const std::optional<ModelSpec>& spec, const std::string& other_prefix) {
  const auto fail = [&](const std::string& message) -> void { throw Error(path + ": " + message); };
  ModelFile loaded = model_description(file, path, spec, other_prefix);
  // For inference: training allocates the gradients when it needs them
  // (Sequential::allocate_gradients), so that evaluating holds no model's worth of zeros.
  loaded.model = build_model(loaded.spec, ModelUse::kInference);
  // Each F32 tensor's bytes go straight into the model (checked there): a decoded copy of each
  // tensor first added the largest tensor's size to the load's peak.
  for (auto& p : loaded.model.named_parameters()) {
    file.read_data(p.name, p.value.data());
    for (int64_t i = 0; i < p.value.numel(); ++i) {
      if (!std::isfinite(p.value[i])) {
        fail("tensor '" + p.name + "' holds a non-finite value at index " + std::to_string(i));
      }
    }
  }
  for (auto& b : loaded.model.named_buffers()) {
    const SafeTensorsFile::Entry& entry = file.entry(b.name);
    if (b.counter) {
      std::vector<uint8_t> bytes(static_cast<size_t>(entry.size));
      file.read_data(b.name, bytes.data());
      // Exact in float up to 2^24; a larger count is kept as the nearest float.
      for (int64_t i = 0; i < entry.shape.numel(); ++i) {
        int64_t v = 0;
        if (entry.dtype == DType::kI64) {
          std::memcpy(&v, bytes.data() + 8 * i, 8);
        } else {
          int32_t v32 = 0;
          std::memcpy(&v32, bytes.data() + 4 * i, 4);
          v = v32;
        }
        if (v < 0) fail("buffer '" + b.name + "' holds a negative count " + std::to_string(v));
        b.value[i] = static_cast<float>(v);
      }
      continue;
    }
    file.read_data(b.name, b.value.data());
    for (int64_t i = 0; i < b.value.numel(); ++i) {
      if (!std::isfinite(b.value[i])) {
        fail("buffer '" + b.name + "' holds a non-finite value at index " + std::to_string(i));
      }
      // A variance below zero would make its BatchNorm output NaN.
      if (b.name.ends_with("running_var") && b.value[i] < 0) {
        fail("buffer '" + b.name + "' holds a negative variance at index " + std::to_string(i));
      }
    }
  }
  return loaded;
}

}  // namespace detail

}  // namespace cnn

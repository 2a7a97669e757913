// `cnn eval`, `cnn predict`, `cnn info` and `cnn convert`: the commands that read a model.

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <new>
#include <nlohmann/json.hpp>

#include "args.hpp"
#include "cli_common.hpp"
#include "cnn/cnn.hpp"
#include "cnn/fileio.hpp"
#include "cnn/model_file.hpp"
#include "cnn/onnx.hpp"
#include "cnn/report.hpp"
#include "cnn/spec.hpp"
#include "image.hpp"
#include "print_json.hpp"

namespace cnn::cli {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;

const char* const kEvalHelp =
    "usage: cnn eval MODEL [--data fashion-mnist|sample|DIR] [--model SPEC.json|PRESET]\n"
    "                [--batch N] [--json] [--logits]\n"
    "\n"
    "Evaluates MODEL (a model file, or an .onnx file: see cnn convert --help) on the test set\n"
    "of --data (default fashion-mnist).\n"
    "  --model   the architecture (a spec file or a preset), for weights written without\n"
    "            cnn's metadata (e.g. PyTorch's state_dict)\n"
    "  --batch   images a forward pass (default 256)\n"
    "  --json    print one JSON object: model, data, samples, loss, accuracy,\n"
    "            per_class_accuracy (null for a class with no test images), confusion_matrix\n"
    "            (rows: true class, columns: predicted class), class_names\n"
    "  --logits  with --json, also the model's outputs for every sample\n";

const char* const kPredictHelp =
    "usage: cnn predict MODEL IMAGE... [--top K] [--invert] [--json] [--model SPEC.json|PRESET]\n"
    "\n"
    "Classifies each image (PNG, JPEG, BMP, or binary PGM/PPM of 8 or 16 bits; converted to\n"
    "the model's channels and size, pixels scaled to [0, 1]) with MODEL (a model file or .onnx)\n"
    "and prints the top K classes (default 3, or all of a model's fewer; a K above its class\n"
    "count is refused) with probabilities.\n"
    "Images over 64 megapixels, files shorter than their header declares, and PNGs whose\n"
    "image data inflate past twice what their pixels need (plus 64 KiB) are refused; so is a\n"
    "file stb_image cannot decode, saying why: truncated, corrupt, or a variant it does not\n"
    "read (12-bit, lossless or arithmetic-coded JPEG, RLE-compressed BMP).\n"
    "  --invert  use 255 - pixel: Fashion-MNIST and MNIST show light objects on black\n"
    "  --json    one JSON object per run: {\"predictions\": [{\"image\", \"top\": [...]}]}\n"
    "  --model   the architecture (a spec file or a preset), for weights written without\n"
    "            cnn's metadata (e.g. PyTorch's state_dict)\n";

const char* const kConvertHelp =
    "usage: cnn convert IN OUT [--opset N] [--fold-batchnorm] [--model SPEC.json|PRESET]\n"
    "\n"
    "Converts by the extensions: a model file (.safetensors) to ONNX (.onnx), or an ONNX file\n"
    "(ours, or one torch.onnx.export wrote, opsets 11 to 17) to a model file. eval, predict and\n"
    "info also read .onnx files directly. The ONNX graph has one input \"input\" (batch, C, H, "
    "W),\n"
    "pixels / 255, and one output \"logits\"; it passes ONNX's checker and runs in OpenCV DNN.\n"
    "  --opset           13 (default) to 17\n"
    "  --fold-batchnorm  fold each BatchNorm2d into the Conv2d before it (a smaller graph; its\n"
    "                    conversion back gives Conv2d layers with biases, no BatchNorm2d)\n"
    "  --model           the architecture of IN (a spec file or a preset), for weights written\n"
    "                    without cnn's metadata\n";

const char* const kInfoHelp =
    "usage: cnn info MODEL|PRESET|SPEC.json [--json]   (MODEL: a model file or .onnx)\n"
    "\n"
    "Prints each layer with its output shape, parameter count and forward FLOPs per image\n"
    "(a multiply-add counts 2; ReLU, tanh, sigmoid 1 per element; max pooling kernel - 1\n"
    "comparisons per output; softmax 3 per element), and the totals. A Residual block's row\n"
    "(its totals) is followed by its body's and shortcut's layers, indented and numbered by\n"
    "their state_dict prefixes (3.body.0, 4.shortcut.1). A preset or spec is described from\n"
    "its shapes alone (its parameters are not allocated), so also one too large for memory;\n"
    "a model file from its header (checked against the file's size and the architecture:\n"
    "tensor names, dtypes, shapes), without reading its values.\n"
    "  --json  one JSON object: \"spec\" (the canonical model spec, as model files store it),\n"
    "          \"parameters\", \"flops\", and \"layers\" (index, type, describe, output_shape\n"
    "          per sample, parameters, flops, state_dict: the PyTorch names and shapes, torch:\n"
    "          the equivalent torch.nn module as {\"module\", \"args\", \"kwargs\"})\n";

/// Refuses a model whose output is not class scores, for eval and predict: (N, classes)
/// logits of two or more classes, or log_loss's one Sigmoid output. An imported graph can end
/// anywhere (a Conv alone); predict read one logit as a certain class, 100% (found 2026-12-08,
/// a probe), and a 4-d output's channels as classes.
void require_class_outputs(const ModelFile& file, const std::string& path) {
  if (file.spec.loss == LossKind::kLogLoss) return;
  const Shape out = file.model.output_shape(1);
  if (out.rank() != 2 || out[1] < 2) {
    throw Error(terminal_text(path) + ": the model outputs " + out.str() +
                " per image, not class scores (expected (1, classes) logits of 2 or more "
                "classes, or one Sigmoid output)");
  }
}

ModelFile load_for(const Args& args, const std::string& path) {
  if (is_onnx_path(path)) {
    // Named with its command, as every other flag is (found 2026-12-08, a probe).
    if (args.has("--model"))
      args.fail("--model", "is for weights without an architecture; " + terminal_text(path) +
                               " is an ONNX file, which carries its own (expected no --model)");
    return load_onnx(path);
  }
  std::optional<ModelSpec> spec;
  if (args.has("--model")) spec = model_spec_from(args.text("--model", ""));
  return load_model(path, spec);
}

}  // namespace

int convert_command(const Args& args) {
  if (args.help()) {
    std::fputs(kConvertHelp, stdout);
    return 0;
  }
  if (args.positional().size() != 2) throw Error("convert: expected IN and OUT");
  const std::string& in = args.positional()[0];
  const std::string& out = args.positional()[1];
  if (is_onnx_path(in) == is_onnx_path(out)) {
    throw Error("convert: expected one .onnx file and one model file, got " + in + " and " + out);
  }
  if (!is_onnx_path(out)) {
    // Found 2026-12-07: `cnn convert m.onnx spec.json` wrote a model file over a spec, which
    // `cnn info spec.json` and --model then read as a spec (train refuses such an --out); and
    // 2026-12-08 (a probe): over a training run's checkpoint, x.ckpt, as over its other files.
    const std::string extension = fs::path(out).extension().string();
    for (const auto& [taken, what] :
         std::vector<std::pair<std::string, std::string>>{{".json", "a spec's"},
                                                          {".ckpt", "a training checkpoint's"},
                                                          {".csv", "a run's metrics'"},
                                                          {".svg", "a run's learning curves'"},
                                                          {".lock", "a run's lock's"}}) {
      if (extension == taken) {
        throw Error("convert: " + out + " is " + what + " name (" + taken +
                    "): convert writes a model file; expected a name such as model.safetensors");
      }
    }
  }
  if (args.has("--opset") && !is_onnx_path(out))
    throw Error("--opset: only for a conversion to ONNX");
  if (args.has("--fold-batchnorm") && !is_onnx_path(out))
    throw Error("--fold-batchnorm: only for a conversion to ONNX");
  if (same_file(in, out)) {
    // A link named like the other format: the conversion would replace its own input.
    throw Error("convert: " + out + " is " + in + " (through a link); expected another file");
  }
  ModelFile file = load_for(args, in);
  if (is_onnx_path(out)) {
    OnnxExportOptions options;
    options.opset = static_cast<int>(args.integer("--opset", 13, 13, 17));
    options.fold_batchnorm = args.has("--fold-batchnorm");
    save_onnx(out, file.model, file.spec, file.class_names, options);
  } else {
    save_model(out, file.model, file.spec, file.class_names);
  }
  std::printf("wrote %s (%s, %s parameters)\n", terminal_text(out).c_str(),
              terminal_text(file.spec.name).c_str(),
              with_commas(file.model.parameter_count()).c_str());
  return 0;
}

int eval_command(const Args& args) {
  if (args.help()) {
    std::fputs(kEvalHelp, stdout);
    return 0;
  }
  if (args.positional().size() != 1)
    throw Error("eval: expected one MODEL file (see cnn eval --help)");
  ModelFile file = load_for(args, args.positional()[0]);
  require_class_outputs(file, args.positional()[0]);
  // The test set alone: a directory of test files evaluates (found 2026-12-06: eval asked for
  // the training files and failed on a corrupt one it does not use).
  const DataSplit data = data_for(file.spec, args.text("--data", "fashion-mnist"), true);
  const int64_t batch = args.integer("--batch", 256, 1, 65536);
  const bool json = args.has("--json");
  if (args.has("--logits") && !json) args.fail("--logits", "needs --json");
  EvalResult r;
  try {
    r = evaluate(file.model, file.spec, data.test, batch, args.has("--logits"));
  } catch (const OutOfMemory& e) {
    throw OutOfMemory(out_of_memory_at(e, batch));
  } catch (const std::bad_alloc& e) {
    throw OutOfMemory(out_of_memory_at(e, batch));
  } catch (const Error& e) {
    // What went wrong is the model's: the line names its file.
    throw Error(args.positional()[0] + ": " + e.what());
  }
  // One name per output: a dataset's names run to its largest label, which may be below the
  // model's last class (found 2026-12-06: --json listed 8 names for 10 rows).
  std::vector<std::string> names = file.class_names.empty() ? data.class_names : file.class_names;
  while (names.size() < r.per_class_accuracy.size()) names.push_back(std::to_string(names.size()));
  if (json) {
    Json j = {{"model", args.positional()[0]},  {"data", data.description},
              {"samples", r.samples},           {"loss", r.loss},
              {"accuracy", r.accuracy},         {"class_names", names},
              {"confusion_matrix", r.confusion}};
    Json per_class = Json::array();
    for (double a : r.per_class_accuracy)
      per_class.push_back(std::isnan(a) ? Json(nullptr) : Json(a));
    j["per_class_accuracy"] = per_class;
    if (args.has("--logits")) {
      const int64_t k = r.samples == 0 ? 0 : static_cast<int64_t>(r.outputs.size()) / r.samples;
      Json rows = Json::array();
      for (int64_t i = 0; i < r.samples; ++i) {
        rows.push_back(
            std::vector<float>(r.outputs.begin() + i * k, r.outputs.begin() + (i + 1) * k));
      }
      j["logits"] = rows;
    }
    print_json(j);
    return 0;
  }
  std::printf("%s on %s: %lld image%s\n", terminal_text(args.positional()[0]).c_str(),
              terminal_text(data.description).c_str(), static_cast<long long>(r.samples),
              r.samples == 1 ? "" : "s");
  std::printf("test loss %s, test accuracy %s\n", loss_text(r.loss).c_str(),
              accuracy_text(r.accuracy, r.samples).c_str());
  std::printf("\nper-class accuracy:\n");
  for (size_t c = 0; c < r.per_class_accuracy.size(); ++c) {
    const std::string name = terminal_text(c < names.size() ? names[c] : std::to_string(c));
    // A class the test set has no image of (a model with more outputs than the data has
    // classes) has no accuracy; --json writes null for it.
    if (std::isnan(r.per_class_accuracy[c])) {
      std::printf("  %2zu %-14s  none (no test images)\n", c, name.c_str());
    } else {
      std::printf("  %2zu %-14s %6.2f%%\n", c, name.c_str(), 100 * r.per_class_accuracy[c]);
    }
  }
  std::printf("\nconfusion matrix (rows: true class, columns: predicted class):\n     ");
  for (size_t c = 0; c < r.confusion.size(); ++c) std::printf("%6zu", c);
  std::printf("\n");
  for (size_t t = 0; t < r.confusion.size(); ++t) {
    std::printf("  %2zu ", t);
    for (int64_t v : r.confusion[t]) std::printf("%6lld", static_cast<long long>(v));
    std::printf("\n");
  }
  return 0;
}

int predict_command(const Args& args) {
  if (args.help()) {
    std::fputs(kPredictHelp, stdout);
    return 0;
  }
  if (args.positional().size() < 2) {
    throw Error("predict: expected a MODEL file and at least one IMAGE (see cnn predict --help)");
  }
  ModelFile file = load_for(args, args.positional()[0]);
  require_class_outputs(file, args.positional()[0]);
  const int64_t classes = output_classes(file.spec);
  const int64_t top = args.integer("--top", 3, 1, 1000);
  // The default shows what there is; a K asked for and not there is said (found 2026-12-08,
  // a probe: --top 11 of 10 classes printed 10 without a word).
  if (args.has("--top") && top > classes) {
    args.fail("--top", "is " + std::to_string(top) + ", but the model has " +
                           std::to_string(classes) + " classes (expected at most " +
                           std::to_string(classes) + ")");
  }
  const bool json = args.has("--json"), invert = args.has("--invert");
  Json predictions = Json::array();
  Tensor<float> x;
  for (size_t i = 1; i < args.positional().size(); ++i) {
    const std::string& path = args.positional()[i];
    load_image_as(path, file.spec.input, invert, x);
    const TensorView<const float> out = file.model.forward(x, Mode::kEval);
    // Finite weights can still overflow (found 2026-12-06: "T-shirt/top -nan%", exit 0).
    for (int64_t k = 0; k < out.numel(); ++k) {
      if (!std::isfinite(out[k])) {
        throw Error(path + ": the model's output " + std::to_string(k) + " is " +
                    (std::isnan(out[k]) ? "nan" : "infinite") +
                    " for this image (its weights overflow float)");
      }
    }
    std::vector<double> probability(static_cast<size_t>(classes));
    if (file.spec.loss == LossKind::kLogLoss) {
      probability = {1.0 - out[0], double(out[0])};
    } else {
      double max = out[0], sum = 0;
      for (int64_t c = 1; c < classes; ++c) max = std::max(max, double(out[c]));
      for (int64_t c = 0; c < classes; ++c) sum += std::exp(double(out[c]) - max);
      for (int64_t c = 0; c < classes; ++c)
        probability[static_cast<size_t>(c)] = std::exp(double(out[c]) - max) / sum;
    }
    std::vector<int64_t> order(static_cast<size_t>(classes));
    for (int64_t c = 0; c < classes; ++c) order[static_cast<size_t>(c)] = c;
    std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
      return probability[static_cast<size_t>(a)] > probability[static_cast<size_t>(b)];
    });
    Json entries = Json::array();
    if (!json) std::printf("%s:", terminal_text(path).c_str());
    for (int64_t r = 0; r < std::min(top, classes); ++r) {
      const int64_t c = order[static_cast<size_t>(r)];
      const std::string name = static_cast<size_t>(c) < file.class_names.size()
                                   ? file.class_names[static_cast<size_t>(c)]
                                   : std::to_string(c);
      entries.push_back(
          {{"class", c}, {"name", name}, {"probability", probability[static_cast<size_t>(c)]}});
      if (!json)
        std::printf("%s %s %.2f%%", r == 0 ? "" : ",", terminal_text(name).c_str(),
                    100 * probability[static_cast<size_t>(c)]);
    }
    if (!json) std::printf("\n");
    predictions.push_back({{"image", path}, {"top", entries}});
  }
  if (json) print_json(Json{{"predictions", predictions}});
  return 0;
}

namespace {

/// "(None, C, H, W)" of a batch shape.
std::string output_shape_text(const Shape& shape) {
  std::string out = "(None";
  for (int d = 1; d < shape.rank(); ++d) out += ", " + std::to_string(shape[d]);
  return out + ")";
}

/// One row of `cnn info`'s table: its columns as printed.
struct InfoRow {
  std::string label, text, shape, parameters, flops;
};

/// One row of `cnn info`'s table per layer; a Residual gets a summary row (its shortcut and
/// activation, the block's output, parameters and FLOPs) and then, indented, one row per layer
/// of its body and shortcut, labelled with their state_dict prefixes ("3.body.0",
/// "4.shortcut.1"), so that nested blocks show their nesting. `shape` is the layer's input batch
/// shape on entry and its output on return.
void add_info_rows(const Layer<float>& layer, const std::string& label, int depth, Shape& shape,
                   std::vector<InfoRow>& rows) {
  const double flops = layer.forward_flops(shape);
  const Shape input = shape;
  shape = layer.output_shape(shape);
  const auto* block = dynamic_cast<const Residual<float>*>(&layer);
  const std::string indent(static_cast<size_t>(2 * depth), ' ');
  const std::string text =
      block
          ? "Residual(shortcut=" + std::string(block->shortcut_size() ? "projection" : "identity") +
                ", activation=" + (block->activation().empty() ? "none" : block->activation()) + ")"
          : layer.describe();
  rows.push_back({indent + label, text, output_shape_text(shape),
                  with_commas(layer.parameter_count()), flops_text(flops)});
  if (!block) return;
  Shape branch = input;
  for (size_t i = 0; i < block->body_size(); ++i)
    add_info_rows(block->body(i), label + ".body." + std::to_string(i), depth + 1, branch, rows);
  branch = input;
  for (size_t i = 0; i < block->shortcut_size(); ++i)
    add_info_rows(block->shortcut(i), label + ".shortcut." + std::to_string(i), depth + 1, branch,
                  rows);
}

/// Prints `rows` under `header` as a table whose columns are as wide as their widest entry
/// (a layer's description runs to 72 characters), the last two right-aligned.
void print_info_table(const InfoRow& header, const std::vector<InfoRow>& rows,
                      const std::string& totals) {
  size_t widths[5] = {header.label.size(), header.text.size(), header.shape.size(),
                      header.parameters.size(), header.flops.size()};
  for (const InfoRow& row : rows) {
    const std::string* columns[5] = {&row.label, &row.text, &row.shape, &row.parameters,
                                     &row.flops};
    for (int c = 0; c < 5; ++c) widths[c] = std::max(widths[c], columns[c]->size());
  }
  const auto line = [&](const InfoRow& row) {
    std::printf("%-*s  %-*s  %-*s  %*s  %*s\n", int(widths[0]), row.label.c_str(), int(widths[1]),
                row.text.c_str(), int(widths[2]), row.shape.c_str(), int(widths[3]),
                row.parameters.c_str(), int(widths[4]), row.flops.c_str());
  };
  const size_t width = widths[0] + widths[1] + widths[2] + widths[3] + widths[4] + 8;
  std::printf("%s\n", std::string(width, '_').c_str());
  line(header);
  std::printf("%s\n", std::string(width, '=').c_str());
  for (const InfoRow& row : rows) line(row);
  std::printf("%s\n%s", std::string(width, '=').c_str(), totals.c_str());
}

}  // namespace

int info_command(const Args& args) {
  if (args.help()) {
    std::fputs(kInfoHelp, stdout);
    return 0;
  }
  if (args.positional().size() != 1) throw Error("info: expected one MODEL, PRESET or SPEC.json");
  const std::string& what = args.positional()[0];
  ModelSpec spec;
  const std::vector<std::string> presets = preset_names();
  if (std::find(presets.begin(), presets.end(), what) == presets.end() &&
      fs::path(what).extension() != ".json") {
    std::error_code error;
    if (fs::path(what).extension().empty() && !fs::exists(what, error) &&
        !fs::is_symlink(what, error)) {
      // A mistyped preset ("lenet") said "cannot open a safetensors file".
      throw Error(what +
                  ": neither a preset (lenet5, convnet, resnet, seed), a spec file nor a "
                  "model file");
    }
    // The header alone: info reports the architecture, which a file of gigabytes gives in the
    // time of its header (the whole file was read, a model's worth of memory and time).
    spec = is_onnx_path(what) ? load_for(args, what).spec : describe_model_file(what).spec;
  } else {
    spec = model_spec_from(what, "");  // a positional argument: its refusal names no flag
  }
  // Shapes only: a spec describes a model that may not fit in memory, and none of the
  // figures below needs its values.
  const ModelShapes shapes = model_shapes(spec);
  const Sequential<float>& model = shapes.model;
  if (args.has("--json")) {
    // What tools outside C++ build their equivalent models from (tools/torch_interop.py).
    Json layers = Json::array();
    Shape shape{1, spec.input[0], spec.input[1], spec.input[2]};
    std::map<size_t, Json> state_dict;
    for (const ParamSpec& p : model.parameter_specs()) {
      const size_t layer = std::stoul(p.name.substr(0, p.name.find('.')));
      state_dict[layer].push_back(
          {{"name", p.name}, {"shape", std::vector<int64_t>(p.shape.begin(), p.shape.end())}});
    }
    const std::vector<std::string> torch = torch_modules(spec);
    double total_flops = 0;
    for (size_t i = 0; i < model.size(); ++i) {
      const Layer<float>& layer = model.layer(i);
      const double flops = layer.forward_flops(shape);
      total_flops += flops;
      shape = layer.output_shape(shape);
      layers.push_back({{"index", i},
                        {"type", layer.type()},
                        {"describe", layer.describe()},
                        {"output_shape", std::vector<int64_t>(shape.begin() + 1, shape.end())},
                        {"parameters", layer.parameter_count()},
                        {"flops", flops},
                        {"state_dict", state_dict.count(i) ? state_dict[i] : Json::array()},
                        {"torch", Json::parse(torch[i])}});
    }
    ModelSpec shown = spec;  // a spec's name is its file's when it has none: any bytes
    shown.name = utf8_or_replaced(spec.name);
    const Json info = {{"spec", Json::parse(to_json(shown))},
                       {"parameters", shapes.layout.parameters},
                       {"flops", total_flops},
                       {"layers", layers}};
    print_json(info, 2);
    return 0;
  }
  std::printf("Model: %s   input %s   loss %s\n", terminal_text(spec.name).c_str(),
              spec.input.str().c_str(),
              spec.loss == LossKind::kLogLoss ? "log_loss" : "cross_entropy");
  Shape shape{1, spec.input[0], spec.input[1], spec.input[2]};
  double total_flops = 0;
  std::vector<InfoRow> rows;
  for (size_t i = 0; i < model.size(); ++i) {
    total_flops += model.layer(i).forward_flops(shape);
    add_info_rows(model.layer(i), std::to_string(i), 0, shape, rows);
  }
  print_info_table({"#", "Layer (type)", "Output Shape", "Param #", "FLOPs"}, rows,
                   "Total params: " + with_commas(shapes.layout.parameters) +
                       "\nForward FLOPs per image: " + flops_text(total_flops) + "\n");
  return 0;
}

}  // namespace cnn::cli

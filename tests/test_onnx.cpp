// ONNX both ways (cnn/onnx.hpp): our exports pass ONNX's own checker with strict shape
// inference and run in a real consumer, OpenCV DNN, to cnn's logits; files torch.onnx.export
// wrote (committed by tools/torch_interop.py export; CI needs no torch) import to PyTorch's
// logits; safetensors -> ONNX -> safetensors is bit for bit; every kind of bad file is one line.

#include <gtest/gtest.h>
#include <onnx/checker.h>
#include <onnx/onnx_pb.h>
#include <onnx/shape_inference/implementation.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>

#ifdef CNN_TEST_OPENCV
#include <opencv2/dnn.hpp>
#endif

#include "cli_util.hpp"
#include "cnn/cnn.hpp"
#include "cnn/onnx.hpp"
#include "expect_error.hpp"
#include "golden_util.hpp"

namespace cnn {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;
using testing::close_to_golden;
using testing::cnn_stdout;
using testing::golden;
using testing::sample_test_set;

fs::path work_dir() {
  static const fs::path dir = testing::process_dir("cnn_onnx_test_");
  return dir;
}

std::string read_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

void write_bytes(const fs::path& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

/// The first `count` images of the sample's test set as the model sees them: (count, 1, 28,
/// 28), pixel / 255.
Tensor<float> first_images(int64_t count) {
  const Dataset all = sample_test_set();
  Tensor<float> x(Shape{count, 1, 28, 28});
  for (int64_t i = 0; i < x.numel(); ++i)
    x[i] = static_cast<float>(all.images.pixels[static_cast<size_t>(i)]) / 255.0f;
  return x;
}

/// A model of `spec` with random weights, random running statistics (positive variances) and
/// counters, so that every tensor reaches the file and the graph.
Sequential<float> random_model(const ModelSpec& spec, uint64_t seed) {
  Sequential<float> model = build_model(spec);
  Rng rng(seed);
  model.init_parameters(rng);
  for (auto& b : model.named_buffers()) {
    for (int64_t i = 0; i < b.value.numel(); ++i) {
      if (b.counter) {
        b.value[i] = 7;
      } else if (b.name.ends_with("running_var")) {
        b.value[i] = static_cast<float>(0.5 + rng.uniform());
      } else {
        b.value[i] = static_cast<float>(0.2 * (rng.uniform() - 0.5));
      }
    }
  }
  return model;
}

/// Every layer type the export knows, nested: the round trip must keep each of them (a
/// BatchNorm momentum of 0.01 too, whose ONNX form 0.99f reads back as 0.0099999905).
ModelSpec every_layer_spec() {
  return parse_model_spec(R"({"name": "every_layer", "input": [1, 12, 12], "layers": [
    {"type": "Conv2d", "out_channels": 4, "kernel": 3, "padding": 1, "bias": false},
    {"type": "BatchNorm2d", "affine": false, "eps": 0.001, "momentum": 0.2},
    {"type": "Tanh"},
    {"type": "Residual", "activation": "none", "body": [
       {"type": "Conv2d", "out_channels": 4, "kernel": 3, "padding": 1},
       {"type": "Residual", "activation": "Tanh", "body": [
          {"type": "Conv2d", "out_channels": 4, "kernel": [1, 3], "padding": [0, 1]},
          {"type": "Sigmoid"}]}]},
    {"type": "AvgPool2d", "kernel": 3, "stride": 2, "padding": 1, "count_include_pad": false},
    {"type": "MaxPool2d", "kernel": 2},
    {"type": "Dropout", "p": 0.25},
    {"type": "Flatten"},
    {"type": "Linear", "out_features": 8},
    {"type": "BatchNorm1d", "momentum": 0.01},
    {"type": "ReLU"},
    {"type": "Linear", "out_features": 5},
    {"type": "Softmax"}]})",
                          "every_layer");
}

/// Residual blocks nested at the start of a body and of a shortcut, three levels deep: the
/// block's input then feeds more than two nodes (one more per level). eps and momentum are
/// floats that ONNX's float attributes hold exactly.
ModelSpec nested_at_start_spec() {
  return parse_model_spec(R"({"name": "nested_at_start", "input": [1, 6, 6], "layers": [
    {"type": "Conv2d", "out_channels": 2, "kernel": 3, "padding": 1},
    {"type": "Residual", "body": [
       {"type": "Residual", "body": [
          {"type": "Residual", "activation": "none", "body": [
             {"type": "Conv2d", "out_channels": 2, "kernel": 3, "padding": 1}]},
          {"type": "BatchNorm2d", "eps": 0.25, "momentum": 0.5}]},
       {"type": "Conv2d", "out_channels": 2, "kernel": 1}],
     "shortcut": [
       {"type": "Residual", "activation": "Tanh",
        "body": [{"type": "Conv2d", "out_channels": 2, "kernel": 3, "padding": 1}],
        "shortcut": [{"type": "Conv2d", "out_channels": 2, "kernel": 1, "bias": false}]}]},
    {"type": "Residual", "activation": "none", "body": [
       {"type": "Residual", "activation": "none", "body": [{"type": "Sigmoid"}]}]},
    {"type": "Flatten"},
    {"type": "Linear", "out_features": 3}]})",
                          "nested_at_start");
}

/// "same" padding (the README's example) and a Softmax over a 4-d input's channels, each of
/// which exported to a file that the import refused (found 2026-12-06).
ModelSpec same_padding_spec() {
  return parse_model_spec(R"({"name": "same_padding", "input": [1, 9, 9], "layers": [
    {"type": "Conv2d", "out_channels": 3, "kernel": [3, 5], "padding": "same"},
    {"type": "Softmax"},
    {"type": "Residual", "body": [
       {"type": "Conv2d", "out_channels": 3, "kernel": 3, "padding": "same"}]},
    {"type": "Flatten"},
    {"type": "Linear", "out_features": 4}]})",
                          "same_padding");
}

/// A Residual whose body is a Dropout alone: the graph adds a value to itself, which did not
/// import (found 2026-12-06).
ModelSpec doubled_spec() {
  return parse_model_spec(R"({"name": "doubled", "input": [1, 6, 6], "layers": [
    {"type": "Conv2d", "out_channels": 2, "kernel": 3, "padding": 1},
    {"type": "Residual", "activation": "Tanh", "body": [{"type": "Dropout", "p": 0.3}]},
    {"type": "Residual", "activation": "none", "body": [
       {"type": "Dropout", "p": 0.1}, {"type": "Dropout", "p": 0.2}]},
    {"type": "Flatten"},
    {"type": "Linear", "out_features": 3}]})",
                          "doubled");
}

/// LeakyReLU (a slope of 0.2 and PyTorch's default) and ReLU6 (2026-12-06): LeakyRelu nodes and
/// ReLU6's min(r, 6 + relu(-r)), r = relu(x) (a Clip(0, 6) until 2026-12-07).
ModelSpec activations_spec() {
  return parse_model_spec(R"({"name": "activations", "input": [1, 28, 28], "layers": [
    {"type": "Conv2d", "out_channels": 4, "kernel": 5, "stride": 2},
    {"type": "LeakyReLU", "negative_slope": 0.2},
    {"type": "Conv2d", "out_channels": 4, "kernel": 3},
    {"type": "ReLU6"},
    {"type": "Flatten"},
    {"type": "Linear", "out_features": 16},
    {"type": "LeakyReLU"},
    {"type": "Linear", "out_features": 10}]})",
                          "activations");
}

/// A Residual without activation followed by an activation layer (a Dropout between, one
/// nested in a body, one at the end of a branch whose block has one), which the graph's Add then
/// activation cannot tell from the block with that activation: our own export of it was refused,
/// "6 layers in it, 5 in the graph" (found 2026-12-06).
ModelSpec activation_after_block_spec() {
  return parse_model_spec(R"({"name": "activation_after_block", "input": [1, 6, 6], "layers": [
    {"type": "Conv2d", "out_channels": 2, "kernel": 3, "padding": 1},
    {"type": "Residual", "activation": "none", "body": [
       {"type": "Conv2d", "out_channels": 2, "kernel": 3, "padding": 1}]},
    {"type": "ReLU"},
    {"type": "Residual", "activation": "none", "body": [
       {"type": "Residual", "activation": "none", "body": [
          {"type": "Conv2d", "out_channels": 2, "kernel": 1}]},
       {"type": "Sigmoid"},
       {"type": "Residual", "activation": "none", "body": [{"type": "Tanh"}]}]},
    {"type": "Dropout", "p": 0.5},
    {"type": "Tanh"},
    {"type": "Residual", "activation": "ReLU", "body": [
       {"type": "Conv2d", "out_channels": 2, "kernel": 3, "padding": 1}]},
    {"type": "ReLU"},
    {"type": "Flatten"},
    {"type": "Linear", "out_features": 3}]})",
                          "activation_after_block");
}

/// Epsilons, momenta and slopes whose float attributes read back as other decimals: 1.4e-45
/// (a denormal float, read back as 1e-45) was refused against its own metadata (found
/// 2026-12-06), as a momentum of 1e-9 (1 - 1e-9 is 1 as a float) would have been.
ModelSpec float_attributes_spec() {
  return parse_model_spec(R"({"name": "float_attributes", "input": [1, 5, 5], "layers": [
    {"type": "Conv2d", "out_channels": 2, "kernel": 3},
    {"type": "BatchNorm2d", "eps": 1.4e-45, "momentum": 1e-9},
    {"type": "LeakyReLU", "negative_slope": 1.4e-45},
    {"type": "Flatten"},
    {"type": "Linear", "out_features": 4},
    {"type": "BatchNorm1d", "eps": 0.123456789, "momentum": 0.987654321},
    {"type": "LeakyReLU", "negative_slope": -3.4e38},
    {"type": "Linear", "out_features": 3}]})",
                          "float_attributes");
}

/// ReLU6 (whose export starts with a Relu) right after a block's sum, which the import must not
/// take as the block's activation, after a block's ReLU, as a block's whole body and on a 2-d
/// value.
ModelSpec relu6_blocks_spec() {
  return parse_model_spec(R"({"name": "relu6_blocks", "input": [1, 28, 28], "layers": [
    {"type": "Conv2d", "out_channels": 3, "kernel": 3, "stride": 2},
    {"type": "Residual", "activation": "none", "body": [
       {"type": "Conv2d", "out_channels": 3, "kernel": 3, "padding": 1}]},
    {"type": "ReLU6"},
    {"type": "Residual", "activation": "ReLU", "body": [{"type": "ReLU6"}]},
    {"type": "ReLU6"},
    {"type": "Flatten"},
    {"type": "Linear", "out_features": 16},
    {"type": "ReLU6"},
    {"type": "Linear", "out_features": 10}]})",
                          "relu6_blocks");
}

std::vector<ModelSpec> export_specs() {
  return {preset_spec("lenet5"),
          preset_spec("convnet"),
          preset_spec("resnet"),
          preset_spec("seed"),
          every_layer_spec(),
          nested_at_start_spec(),
          same_padding_spec(),
          doubled_spec(),
          activations_spec(),
          relu6_blocks_spec(),
          activation_after_block_spec(),
          float_attributes_spec()};
}

/// onnx::checker::check_model and shape inference with type checks in strict mode (errors
/// throw): what onnx.checker.check_model(full_check=True) runs.
void full_check(const std::string& path) {
  onnx::checker::check_model(path);
  onnx::ModelProto m;
  ASSERT_TRUE(m.ParseFromString(read_bytes(path)));
  onnx::shape_inference::InferShapes(m, onnx::OpSchemaRegistry::Instance(),
                                     onnx::ShapeInferenceOptions(true, 1, false));
  ASSERT_EQ(m.graph().output_size(), 1);
}

onnx::ModelProto parse(const std::string& path) {
  onnx::ModelProto m;
  EXPECT_TRUE(m.ParseFromString(read_bytes(path))) << path;
  return m;
}

TEST(Onnx, ExportsPassTheCheckerAndStrictShapeInference) {
  for (const ModelSpec& spec : export_specs()) {
    Sequential<float> model = random_model(spec, 3);
    std::vector<std::string> names;  // one per output, as save_onnx takes them
    for (int64_t c = 0; c < output_classes(spec); ++c)
      names.push_back("class " + std::to_string(c));
    for (int opset = 13; opset <= 17; ++opset) {
      for (bool fold : {false, true}) {
        SCOPED_TRACE(spec.name + " opset " + std::to_string(opset) + (fold ? " folded" : ""));
        const std::string path = (work_dir() / (spec.name + ".onnx")).string();
        save_onnx(path, model, spec, names, {opset, fold});
        EXPECT_NO_THROW(full_check(path));
        const onnx::ModelProto m = parse(path);
        EXPECT_EQ(m.ir_version(), opset <= 14 ? 7 : 8);
        ASSERT_EQ(m.opset_import_size(), 1);
        EXPECT_EQ(m.opset_import(0).version(), opset);
        ASSERT_EQ(m.graph().input_size(), 1);
        EXPECT_EQ(m.graph().input(0).name(), "input");
        const auto& dims = m.graph().input(0).type().tensor_type().shape().dim();
        ASSERT_EQ(dims.size(), 4);
        EXPECT_EQ(dims[0].dim_param(), "batch");  // a dynamic batch
        EXPECT_EQ(dims[2].dim_value(), spec.input[1]);
        EXPECT_EQ(m.graph().output(0).name(), "logits");
        std::map<std::string, std::string> meta;
        for (const auto& e : m.metadata_props()) meta[e.key()] = e.value();
        // Folded too, since 2026-12-08: the folded spec, so that the name, loss and classes
        // come back (they were lost with the metadata).
        ASSERT_EQ(meta.count("cnn.architecture"), 1u);
        const ModelFile back = load_onnx(path);
        EXPECT_EQ(back.spec.name, spec.name);
        EXPECT_EQ(back.spec.loss, spec.loss);
        EXPECT_EQ(back.spec.classes, spec.classes);
        if (fold && spec.name == "resnet") {
          EXPECT_EQ(meta.at("cnn.architecture").find("BatchNorm2d"), std::string::npos);
        }
        EXPECT_EQ(meta.at("cnn.class_names"), Json(names).dump());
        EXPECT_NE(meta.at("cnn.preprocessing").find("/ 255"), std::string::npos);
        EXPECT_EQ(meta.count("cnn.version"), 1u);
        int batchnorms = 0, dropouts = 0;
        for (const auto& n : m.graph().node()) {
          batchnorms += n.op_type() == "BatchNormalization";
          dropouts += n.op_type() == "Dropout";
        }
        EXPECT_EQ(dropouts, 0);  // left out of the inference graph
        if (spec.name == "resnet") {
          EXPECT_EQ(batchnorms, fold ? 0 : 9);
        }
      }
    }
  }
  Sequential<float> model = random_model(preset_spec("lenet5"), 1);
  for (int opset : {12, 18}) {
    try {
      save_onnx((work_dir() / "bad_opset.onnx").string(), model, preset_spec("lenet5"), {},
                {opset, false});
      ADD_FAILURE() << "opset " << opset << " was accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("opset " + std::to_string(opset) +
                                           " is outside the supported 13 to 17"),
                std::string::npos)
          << e.what();
    }
  }
  EXPECT_FALSE(fs::exists(work_dir() / "bad_opset.onnx"));
  // What save_model refuses, save_onnx refuses too, before writing (found 2026-12-07: another
  // model's spec wrote a file that load_onnx refused, a default spec or an unbuilt model failed
  // in another function's words, and two names for ten outputs were written).
  const std::string refused = (work_dir() / "refused.onnx").string();
  Sequential<float> convnet = random_model(preset_spec("convnet"), 1);
  Sequential<float> unbuilt;
  unbuilt.emplace<ReLU<float>>();
  const std::vector<
      std::tuple<Sequential<float>*, ModelSpec, std::vector<std::string>, std::string>>
      cases = {
          {&model,
           preset_spec("convnet"),
           {},
           "the spec 'convnet' does not describe the model: layer 0 is Conv2d(1, 32"},
          {&convnet, preset_spec("lenet5"), {}, "the spec 'lenet5' does not describe the model"},
          {&model,
           ModelSpec{},
           {},
           "the spec '' does not describe the model: build_model: the spec '': expected an "
           "input (C, H, W), got ()"},
          {&unbuilt,
           ModelSpec{},
           {},
           "the spec '' does not describe the model: the model is not built"},
          {&model,
           preset_spec("lenet5"),
           {"a", "b"},
           "expected one class name per output of the model (10) or none, got 2"}};
  for (const auto& [exported, spec, names, fragment] : cases) {
    testing::expect_refused([&] { save_onnx(refused, *exported, spec, names); },
                            refused + ": cannot export to ONNX: " + fragment);
    EXPECT_FALSE(fs::exists(refused)) << fragment;
  }
}

/// cnn's outputs for `images` (evaluation mode).
std::vector<float> cnn_logits(Sequential<float>& model, const Tensor<float>& images) {
  const TensorView<const float> y = model.forward(images, Mode::kEval);
  return {y.data(), y.data() + y.numel()};
}

#ifdef CNN_TEST_OPENCV
TEST(Onnx, OpenCvDnnRunsOurExportsToOurLogits) {
  const Tensor<float> images = first_images(256);
  // The presets with random weights and statistics, and two trained ones: LeNet-5 and the
  // resnet preset trained by PyTorch (real running statistics), from tests/golden/. "padded"
  // has padded AvgPool2d layers that count the padding (found 2026-12-06: written as one
  // AveragePool with count_include_pad 1, OpenCV 4.6 gave logits 4-10% off).
  for (const std::string preset : {"lenet5", "convnet", "resnet", "torch_lenet5", "torch_resnet",
                                   "padded", "activations", "relu6_blocks"}) {
    const bool trained = preset.starts_with("torch_");
    ModelFile file;
    if (trained) {
      file = load_model(golden(preset + ".safetensors"));
    } else if (preset == "padded") {
      file.spec = parse_model_spec(R"({"input": [1, 28, 28], "layers": [
          {"type": "Conv2d", "out_channels": 4, "kernel": 3}, {"type": "ReLU"},
          {"type": "AvgPool2d", "kernel": 3, "stride": 2, "padding": 1},
          {"type": "Residual", "body": [
             {"type": "AvgPool2d", "kernel": [3, 5], "stride": 1, "padding": [1, 2]}]},
          {"type": "Flatten"}, {"type": "Linear", "out_features": 10}]})",
                                   "padded");
      file.model = random_model(file.spec, 11);
    } else if (preset == "activations" || preset == "relu6_blocks") {
      // LeakyRelu, and ReLU6 as min(r, 6 + relu(-r)): OpenCV 4.6 refuses a Clip with its
      // bounds as inputs ("input_size() == 1"), the only Clip from opset 11, ours until
      // 2026-12-07 and torch's, so the test ran this network with ReLU in place of ReLU6.
      // The first two layers' weights are scaled up so that many values reach ReLU6's bound.
      file.spec = preset == "activations" ? activations_spec() : relu6_blocks_spec();
      file.model = random_model(file.spec, 11);
      for (auto& p : file.model.named_parameters())
        if (p.name.starts_with("0.") || p.name.starts_with("2."))
          for (int64_t k = 0; k < p.value.numel(); ++k) p.value[k] *= 8;
      // The same weights with ReLU in place of ReLU6 give other logits: the bound is reached.
      std::function<void(std::vector<LayerSpec>&)> to_relu = [&](std::vector<LayerSpec>& list) {
        for (LayerSpec& l : list) {
          if (l.type == "ReLU6") l.type = "ReLU";
          to_relu(l.body);
          to_relu(l.shortcut);
        }
      };
      ModelSpec relu_spec = file.spec;
      to_relu(relu_spec.layers);
      Sequential<float> relu_model = build_model(relu_spec);
      const auto from = file.model.named_parameters();
      auto to = relu_model.named_parameters();
      ASSERT_EQ(from.size(), to.size());
      for (size_t k = 0; k < from.size(); ++k)
        std::copy(from[k].value.data(), from[k].value.data() + from[k].value.numel(),
                  to[k].value.data());
      const std::vector<float> relu6_logits = cnn_logits(file.model, images);
      const std::vector<float> relu_logits = cnn_logits(relu_model, images);
      double worst = 0, largest = 0;
      for (size_t k = 0; k < relu6_logits.size(); ++k) {
        worst = std::max(worst, std::abs(double(relu6_logits[k]) - relu_logits[k]));
        largest = std::max(largest, std::abs(double(relu6_logits[k])));
      }
      EXPECT_GT(worst, 0.1 * largest) << preset << ": ReLU6's bound is not reached";
    } else {
      file.spec = preset_spec(preset);
      file.model = random_model(file.spec, 11);
    }
    const ModelSpec& spec = file.spec;
    Sequential<float>& model = file.model;
    const std::vector<float> ours = cnn_logits(model, images);
    for (bool fold : {false, true}) {
      SCOPED_TRACE(preset + (fold ? " folded" : ""));
      const std::string path = (work_dir() / (preset + "_cv.onnx")).string();
      save_onnx(path, model, spec, {}, {13, fold});
      cv::dnn::Net net = cv::dnn::readNetFromONNX(path);
      const int dims[] = {256, 1, 28, 28};
      cv::Mat blob(4, dims, CV_32F, const_cast<float*>(images.data()));
      net.setInput(blob, "input");
      const cv::Mat out = net.forward();
      ASSERT_EQ(out.rows, 256);
      ASSERT_EQ(out.cols, 10);
      std::vector<float> theirs(out.ptr<float>(0), out.ptr<float>(0) + 2560);
      close_to_golden("OpenCV DNN " + preset + (fold ? " folded" : ""),
                      TensorView<const float>(ours.data(), Shape{256, 10}),
                      TensorView<const float>(theirs.data(), Shape{256, 10}), 1e-4);
      int same = 0;
      for (int r = 0; r < 256; ++r) {
        const auto row = [&](const std::vector<float>& v) {
          return std::max_element(v.begin() + r * 10, v.begin() + r * 10 + 10) - v.begin();
        };
        same += row(ours) == row(theirs);
      }
      EXPECT_EQ(same, 256);
    }
  }
}
#else
TEST(Onnx, OpenCvDnnRunsOurExportsToOurLogits) {
  GTEST_SKIP() << "OpenCV DNN (libopencv-dnn-dev) was not found when the tests were built";
}
#endif

// Found 2026-12-08 (a probe): a folded export wrote no cnn.architecture, so its import lost
// the spec's name, loss and classes (the seed model's one Sigmoid output came back as one
// cross-entropy logit, a "classes" subset as all labels) and every BatchNorm's counter. Now the
// folded spec is written: the layers as folded, the BatchNorms that stay keep their counters
// under their new names, and the model computes what the unfolded one does.
TEST(Onnx, AFoldedExportKeepsItsSpecAndTheCountersOfTheBatchNormsLeft) {
  const ModelSpec spec = parse_model_spec(R"({"name": "bnmix", "input": [1, 8, 8],
    "classes": [3, 7], "layers": [
    {"type": "Conv2d", "out_channels": 4, "kernel": 3, "padding": 1, "bias": false},
    {"type": "BatchNorm2d"}, {"type": "ReLU"}, {"type": "MaxPool2d", "kernel": 2},
    {"type": "BatchNorm2d"},
    {"type": "Residual", "body": [{"type": "Conv2d", "out_channels": 4, "kernel": 3,
      "padding": 1}, {"type": "BatchNorm2d"}, {"type": "ReLU"}]},
    {"type": "Flatten"}, {"type": "Linear", "out_features": 8}, {"type": "BatchNorm1d"},
    {"type": "ReLU"}, {"type": "Linear", "out_features": 2}]})",
                                          "bnmix");
  Sequential<float> model = random_model(spec, 11);
  int64_t count = 20;
  for (auto& b : model.named_buffers())
    if (b.counter) b.value[0] = static_cast<float>(count++);  // 20, 21, 22, 23 in order
  const std::string path = (work_dir() / "bnmix_folded.onnx").string();
  save_onnx(path, model, spec, {"Dress", "Sneaker"}, {13, true});
  ModelFile back = load_onnx(path);
  EXPECT_EQ(back.spec.name, "bnmix");
  EXPECT_EQ(back.spec.classes, (std::vector<int>{3, 7}));
  EXPECT_EQ(back.class_names, (std::vector<std::string>{"Dress", "Sneaker"}));
  std::vector<std::string> types;
  for (const LayerSpec& l : back.spec.layers) types.push_back(l.type);
  EXPECT_EQ(types,
            (std::vector<std::string>{"Conv2d", "ReLU", "MaxPool2d", "BatchNorm2d", "Residual",
                                      "Flatten", "Linear", "BatchNorm1d", "ReLU", "Linear"}));
  EXPECT_TRUE(back.spec.layers[0].bias);
  ASSERT_EQ(back.spec.layers[4].body.size(), 2u);
  EXPECT_TRUE(back.spec.layers[4].body[0].bias);
  std::map<std::string, float> counters;
  for (auto& b : back.model.named_buffers())
    if (b.counter) counters[b.name] = b.value[0];
  // The second and the fourth BatchNorm stay (the first and third are folded into convolutions).
  EXPECT_EQ(counters, (std::map<std::string, float>{{"3.num_batches_tracked", 21},
                                                    {"7.num_batches_tracked", 23}}));
  Tensor<float> x(Shape{4, 1, 8, 8});
  Rng rng(3);
  for (float& v : x) v = static_cast<float>(rng.uniform());
  const TensorView<const float> expected = model.forward(x, Mode::kEval);
  const std::vector<float> want(expected.begin(), expected.end());
  const TensorView<const float> got = back.model.forward(x, Mode::kEval);
  ASSERT_EQ(got.numel(), static_cast<int64_t>(want.size()));
  for (size_t k = 0; k < want.size(); ++k)
    EXPECT_NEAR(got[static_cast<int64_t>(k)], want[k], 1e-5f * (1 + std::abs(want[k])));
  // The seed model (log_loss, one Sigmoid output) folded: still a binary classifier.
  Sequential<float> seed = random_model(preset_spec("seed"), 2);
  save_onnx(path, seed, preset_spec("seed"), {}, {13, true});
  EXPECT_EQ(load_onnx(path).spec.loss, LossKind::kLogLoss);
}

TEST(Onnx, ModelFileToOnnxAndBackIsBitIdentical) {
  for (const ModelSpec& spec : export_specs()) {
    SCOPED_TRACE(spec.name);
    Sequential<float> model = random_model(spec, 5);
    const fs::path a = work_dir() / "a.safetensors", b = work_dir() / "b.safetensors";
    const fs::path onnx_file = work_dir() / "a.onnx";
    // One name per output, as save_model asks.
    std::vector<std::string> names;
    for (int64_t c = 0; c < output_classes(spec); ++c) {
      std::string name = "x";  // by append: GCC 12's -Wrestrict misfires on "x" + to_string
      name += std::to_string(c);
      names.push_back(name);
    }
    save_model(a.string(), model, spec, names);
    ModelFile loaded = load_model(a.string());
    for (int opset : {13, 17}) {  // the oldest and newest we write (ops change between them)
      SCOPED_TRACE("opset " + std::to_string(opset));
      save_onnx(onnx_file.string(), loaded.model, loaded.spec, loaded.class_names, {opset});
      ModelFile back = load_onnx(onnx_file.string());
      EXPECT_EQ(to_json(back.spec), to_json(spec));
      EXPECT_EQ(back.class_names, names);
      save_model(b.string(), back.model, back.spec, back.class_names);
      EXPECT_TRUE(read_bytes(a) == read_bytes(b))
          << "the model file changed on its way through ONNX";
    }
  }
}

TEST(Onnx, FoldedExportImportsAsConvolutionsWithTheSameLogits) {
  const ModelSpec spec = preset_spec("resnet");
  Sequential<float> model = random_model(spec, 9);
  const Tensor<float> images = first_images(64);
  const std::vector<float> ours = cnn_logits(model, images);
  const std::string path = (work_dir() / "folded.onnx").string();
  save_onnx(path, model, spec, {}, {17, true});
  ModelFile back = load_onnx(path);
  EXPECT_EQ(to_json(back.spec).find("BatchNorm"), std::string::npos);
  const std::vector<float> theirs = cnn_logits(back.model, images);
  close_to_golden("resnet folded into its convolutions",
                  TensorView<const float>(theirs.data(), Shape{64, 10}),
                  TensorView<const float>(ours.data(), Shape{64, 10}), 1e-5);
}

// The files torch.onnx.export wrote from PyTorch-trained models: LeNet-5 at opset 11, the
// resnet preset at opset 17 (PyTorch folded its BatchNorms into the convolutions) and at
// opset 13 with its BatchNormalization nodes (and Identity aliases of shared weights).
TEST(Onnx, TorchExportsGivePyTorchsLogits) {
  const Dataset test = sample_test_set();
  for (const auto& [file, outputs] : std::vector<std::pair<std::string, std::string>>{
           {"torch_lenet5.onnx", "torch_lenet5_outputs.safetensors"},
           {"torch_resnet.onnx", "torch_resnet_outputs.safetensors"},
           {"torch_resnet_bn.onnx", "torch_resnet_outputs.safetensors"},
           // Padded AvgPool2d layers, written as Pad + AveragePool (found 2026-12-06: refused).
           {"torch_avgpool.onnx", "torch_avgpool_outputs.safetensors"},
           // PyTorch's own idioms: ceil_mode=True where the windows tile, x + y, x.mean((2, 3))
           // (ReduceMean); the first and last were refused until 2026-12-06.
           {"torch_idioms.onnx", "torch_idioms_outputs.safetensors"},
           // nn.LeakyReLU(0.2), nn.LeakyReLU() and nn.ReLU6 (LeakyRelu, and a Clip whose
           // bounds are Constant nodes); refused until 2026-12-06.
           {"torch_activations.onnx", "torch_activations_outputs.safetensors"}}) {
    SCOPED_TRACE(file);
    const SafeTensorsFile expected = SafeTensorsFile::load(golden(outputs));
    const Tensor<float> logits = expected.tensor<float>("logits");
    ModelFile model = load_onnx(golden(file));
    const EvalResult r = evaluate(model.model, model.spec, test, 256, true);
    close_to_golden(file + " (library)", TensorView<const float>(r.outputs.data(), logits.shape()),
                    logits);
    EXPECT_EQ(std::llround(r.accuracy * 1000),
              std::llround(expected.tensor<float>("accuracy")[0] * 1000));
    const Json j =
        Json::parse(cnn_stdout("eval " + golden(file) + " --data sample --json --logits"));
    std::vector<float> ours;
    for (const Json& row : j.at("logits"))
      for (const Json& v : row) ours.push_back(v.get<float>());
    ASSERT_EQ(static_cast<int64_t>(ours.size()), logits.numel());
    close_to_golden(file + " (cnn eval)", TensorView<const float>(ours.data(), logits.shape()),
                    logits);
  }
  ModelFile bn = load_onnx(golden("torch_resnet_bn.onnx"));
  EXPECT_NE(to_json(bn.spec).find("BatchNorm2d"), std::string::npos);
  EXPECT_EQ(bn.model.parameter_count(), 308074);
}

onnx::NodeProto make_node(const std::string& op, const std::string& name,
                          const std::vector<std::string>& inputs) {
  onnx::NodeProto n;
  n.set_op_type(op);
  n.set_name(name);
  for (const std::string& in : inputs) n.add_input(in);
  n.add_output(name + ".out");
  return n;
}

/// Sets the INT attribute `name` of `node` to `value`.
void set_int_attribute(onnx::NodeProto& node, const std::string& name, int64_t value) {
  onnx::AttributeProto* a = node.add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto::INT);
  a->set_i(value);
}

onnx::NodeProto int64_constant(const std::string& name, const std::vector<int64_t>& values,
                               bool scalar = false) {
  onnx::NodeProto n = make_node("Constant", name, {});
  onnx::AttributeProto* a = n.add_attribute();
  a->set_name("value");
  a->set_type(onnx::AttributeProto::TENSOR);
  onnx::TensorProto* t = a->mutable_t();
  t->set_data_type(onnx::TensorProto::INT64);
  if (!scalar) t->add_dims(static_cast<int64_t>(values.size()));
  for (int64_t v : values) t->add_int64_data(v);
  return n;
}

/// `t` (rows, cols) as (cols, rows), float_data instead of raw_data.
void transpose_initializer(onnx::TensorProto& t) {
  const int64_t rows = t.dims(0), cols = t.dims(1);
  std::vector<float> v(static_cast<size_t>(rows * cols));
  std::memcpy(v.data(), t.raw_data().data(), v.size() * sizeof(float));
  t.clear_raw_data();
  t.set_dims(0, cols);
  t.set_dims(1, rows);
  for (int64_t c = 0; c < cols; ++c)
    for (int64_t r = 0; r < rows; ++r) t.add_float_data(v[static_cast<size_t>(r * cols + c)]);
}

// The other forms exporters write for the same layers: a flatten as x.view(x.size(0), -1)
// (Shape, Gather, Unsqueeze, Concat, Reshape), a Linear as MatMul + Add and as Gemm with
// transB 0 and float_data weights, Dropout and Identity; no cnn metadata, so the graph alone
// defines the model. Its logits must be LeNet-5's own.
TEST(Onnx, ImportsTheOtherFormsOfFlattenLinearAndIdentity) {
  const ModelSpec spec = preset_spec("lenet5");
  Sequential<float> model = random_model(spec, 21);
  const Tensor<float> images = first_images(32);
  const std::vector<float> expected = cnn_logits(model, images);
  const std::string path = (work_dir() / "forms.onnx").string();
  save_onnx(path, model, spec, {});
  onnx::ModelProto m = parse(path);
  m.clear_metadata_props();
  onnx::GraphProto& g = *m.mutable_graph();
  std::vector<onnx::NodeProto> nodes;
  for (const onnx::NodeProto& n : g.node()) {
    if (n.name() == "6") {  // Flatten of 5.out
      nodes.push_back(make_node("Shape", "s", {"5.out"}));
      nodes.push_back(int64_constant("zero", {0}, true));
      onnx::NodeProto gather = make_node("Gather", "n", {"s.out", "zero.out"});
      nodes.push_back(gather);
      nodes.push_back(int64_constant("axes", {0}));
      nodes.push_back(make_node("Unsqueeze", "n1", {"n.out", "axes.out"}));
      nodes.push_back(int64_constant("minus1", {-1}));
      onnx::NodeProto concat = make_node("Concat", "target", {"n1.out", "minus1.out"});
      set_int_attribute(concat, "axis", 0);
      nodes.push_back(concat);
      nodes.push_back(make_node("Reshape", "6", {"5.out", "target.out"}));
    } else if (n.name() == "7") {  // Gemm -> MatMul + Add
      nodes.push_back(make_node("MatMul", "7mm", {"6.out", "7.weight"}));
      nodes.push_back(make_node("Add", "7", {"7mm.out", "7.bias"}));
    } else if (n.name() == "8") {  // ReLU, then Dropout and Identity
      nodes.push_back(n);
      nodes.push_back(make_node("Dropout", "drop", {"8.out"}));
      nodes.push_back(make_node("Identity", "same", {"drop.out"}));
    } else if (n.name() == "9") {  // Gemm with transB 0
      onnx::NodeProto gemm = make_node("Gemm", "9", {"same.out", "9.weight", "9.bias"});
      nodes.push_back(gemm);
    } else {
      nodes.push_back(n);
    }
  }
  g.clear_node();
  for (const onnx::NodeProto& n : nodes) *g.add_node() = n;
  for (auto& t : *g.mutable_initializer())
    if (t.name() == "7.weight" || t.name() == "9.weight") transpose_initializer(t);
  std::string bytes;
  ASSERT_TRUE(m.SerializeToString(&bytes));
  write_bytes(path, bytes);
  EXPECT_NO_THROW(onnx::checker::check_model(path));
  ModelFile back = load_onnx(path);
  EXPECT_EQ(back.model.size(), model.size());
  const std::vector<float> logits = cnn_logits(back.model, images);
  close_to_golden("LeNet-5 through MatMul, Gemm transB 0, Reshape",
                  TensorView<const float>(logits.data(), Shape{32, 10}),
                  TensorView<const float>(expected.data(), Shape{32, 10}), 1e-6);
}

/// Writes `m` to work_dir()/"<stem>_<variant>.onnx" and counts `variant` up: the tests' edited
/// copies of an export, each in a file of its own. Returns the path.
std::string write_variant(const onnx::ModelProto& m, const std::string& stem, int& variant) {
  const std::string path =
      (work_dir() / (stem + "_" + std::to_string(variant++) + ".onnx")).string();
  std::string bytes;
  EXPECT_TRUE(m.SerializeToString(&bytes));
  write_bytes(path, bytes);
  return path;
}

// Found 2026-12-08 (a probe): a graph without our metadata that ends in one Sigmoid output
// (torch's Linear(.., 1) + Sigmoid) imported as one cross-entropy logit. It is a binary
// classifier: log_loss, dataset labels 0 and 1.
/// The seed model's export (log_loss: one Sigmoid output) without our metadata, as a foreign
/// exporter writes it.
onnx::ModelProto seed_graph_without_metadata(const std::string& stem) {
  Sequential<float> seed = random_model(preset_spec("seed"), 2);
  const std::string path = (work_dir() / (stem + "_source.onnx")).string();
  save_onnx(path, seed, preset_spec("seed"), {}, {13, false});
  onnx::ModelProto m = parse(path);
  m.clear_metadata_props();
  return m;
}

TEST(Onnx, AForeignGraphEndingInOneSigmoidImportsAsABinaryClassifier) {
  const onnx::ModelProto m = seed_graph_without_metadata("sigmoid");
  int variant = 0;
  const ModelFile file = load_onnx(write_variant(m, "sigmoid", variant));
  EXPECT_EQ(file.spec.loss, LossKind::kLogLoss);
  EXPECT_EQ(file.spec.classes, (std::vector<int>{0, 1}));
}

/// A model of `spec` with random weights (random_model(spec, seed)), its logits on the first 8
/// sample images, and its export `stem`.onnx in the test directory: what the tests that edit an
/// export start from.
struct Exported {
  Sequential<float> model;
  Tensor<float> images;
  std::vector<float> logits;
  std::string path;
};

Exported export_random_model(const ModelSpec& spec, uint64_t seed, const std::string& stem) {
  Exported e{
      random_model(spec, seed), first_images(8), {}, (work_dir() / (stem + ".onnx")).string()};
  e.logits = cnn_logits(e.model, e.images);
  save_onnx(e.path, e.model, spec, {});
  return e;
}

/// Edited copies of an export: each call parses the export, clears its metadata when
/// `graph_only` (the graph alone then counts), applies `edit` and writes the result to a file
/// of its own (`stem`_0.onnx, `stem`_1.onnx, ...), whose path it returns.
class ExportEdits {
 public:
  ExportEdits(std::string export_path, std::string stem, bool graph_only)
      : export_path_(std::move(export_path)), stem_(std::move(stem)), graph_only_(graph_only) {}
  std::string operator()(const std::function<void(onnx::ModelProto&)>& edit) {
    onnx::ModelProto m = parse(export_path_);
    if (graph_only_) m.clear_metadata_props();
    edit(m);
    return write_variant(m, stem_, variant_);
  }

 private:
  std::string export_path_, stem_;
  bool graph_only_;
  int variant_ = 0;
};

/// Expects load_onnx(path) to throw cnn::Error with `fragment` in its message.
void expect_import_refused(const std::string& path, const std::string& fragment) {
  try {
    load_onnx(path);
    ADD_FAILURE() << path << " was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
  }
}

// LeakyReLU exports as LeakyRelu with its slope as alpha; ReLU6 as min(r, 6 + relu(-r)) with
// r = relu(x) (Relu, Neg, Relu, Add of a scalar 6, Min), which is ReLU6 bit for bit and which
// OpenCV 4.6 runs (it reads neither torch's Clip with its bounds as inputs nor a Min of a
// constant; found 2026-12-07). The import reads both back (the round trip itself is in
// ModelFileToOnnxAndBackIsBitIdentical), in either input order, and torch's Clip(0, 6) as ReLU6
// too; a Clip(0) without a max is a ReLU. Other bounds, which no cnn layer computes, are refused
// in one line naming the node and the bounds, and so is a LeakyRelu whose alpha is not finite.
TEST(Onnx, LeakyReluAndRelu6ExportAndImport) {
  const ModelSpec spec = activations_spec();
  Sequential<float> model = random_model(spec, 7);
  const Tensor<float> images = first_images(16);
  const std::vector<float> expected = cnn_logits(model, images);
  const std::string path = (work_dir() / "activations.onnx").string();
  save_onnx(path, model, spec, {});
  const onnx::ModelProto exported = parse(path);
  std::vector<float> alphas;
  std::vector<std::string> relu6;  // node "3" (layer 3, the ReLU6): op(inputs...)
  for (const auto& n : exported.graph().node()) {
    EXPECT_NE(n.op_type(), "Clip");
    if (n.op_type() == "LeakyRelu") {
      ASSERT_EQ(n.attribute_size(), 1);
      EXPECT_EQ(n.attribute(0).name(), "alpha");
      alphas.push_back(n.attribute(0).f());
    }
    if (n.name() != "3" && !n.name().starts_with("3.")) continue;
    EXPECT_EQ(n.attribute_size(), 0);
    std::string text = n.op_type() + "(";
    for (int k = 0; k < n.input_size(); ++k) text += (k ? ", " : "") + n.input(k);
    relu6.push_back(text + ")");
  }
  EXPECT_EQ(alphas, (std::vector<float>{0.2f, 0.01f}));
  EXPECT_EQ(relu6,
            (std::vector<std::string>{"Relu(2.out)", "Neg(3.relu.out)", "Relu(3.neg.out)",
                                      "Add(3.zero.out, 3.max)", "Min(3.relu.out, 3.six.out)"}));
  const auto six =
      std::find_if(exported.graph().initializer().begin(), exported.graph().initializer().end(),
                   [](const onnx::TensorProto& t) { return t.name() == "3.max"; });
  ASSERT_NE(six, exported.graph().initializer().end());
  EXPECT_EQ(six->dims_size(), 0);  // a scalar
  ASSERT_EQ(six->float_data_size(), 1);
  EXPECT_EQ(six->float_data(0), 6.0f);

  int variant = 0;
  const auto edited = [&](const std::function<void(onnx::GraphProto&)>& edit) {
    onnx::ModelProto m = exported;
    m.clear_metadata_props();  // the graph alone counts
    edit(*m.mutable_graph());
    return write_variant(m, "activations", variant);
  };
  const auto node = [](onnx::GraphProto& g, const std::string& name) -> onnx::NodeProto& {
    for (auto& n : *g.mutable_node())
      if (n.name() == name || (n.op_type() == name && name == "LeakyRelu")) return n;
    throw Error("no node " + name);
  };
  const auto initializer = [&](onnx::GraphProto& g, const std::string& name) -> onnx::TensorProto& {
    for (auto& t : *g.mutable_initializer())
      if (t.name() == name) return t;
    throw Error("no " + name);
  };
  // torch's form: Clip(x, 0, 6), its bounds scalar inputs, in place of the five nodes.
  const auto as_clip = [&](onnx::GraphProto& g) {
    google::protobuf::RepeatedPtrField<onnx::NodeProto> nodes;
    for (const onnx::NodeProto& n : g.node()) {
      if (n.name() == "3.relu") *nodes.Add() = make_node("Clip", "3", {"2.out", "3.min", "3.max"});
      if (n.name() != "3" && !n.name().starts_with("3.")) *nodes.Add() = n;
    }
    g.mutable_node()->Swap(&nodes);
    onnx::TensorProto* low = g.add_initializer();
    low->set_name("3.min");
    low->set_data_type(onnx::TensorProto::FLOAT);
    low->add_float_data(0);
  };
  const auto import_logits = [&](const std::string& file) {
    ModelFile back = load_onnx(file);
    EXPECT_EQ(back.model.layer(3).describe(), "ReLU6()") << file;
    return cnn_logits(back.model, images);
  };
  // The graph without its metadata reads as the same layers, and so do the Min's and the Add's
  // inputs swapped, and torch's Clip.
  ModelFile plain = load_onnx(edited([](onnx::GraphProto&) {}));
  EXPECT_EQ(plain.model.layer(1).describe(), "LeakyReLU(negative_slope=0.2)");
  EXPECT_EQ(plain.model.layer(3).describe(), "ReLU6()");
  EXPECT_EQ(plain.model.layer(6).describe(), "LeakyReLU(negative_slope=0.01)");
  EXPECT_EQ(cnn_logits(plain.model, images), expected);
  EXPECT_EQ(import_logits(edited([&](onnx::GraphProto& g) {
              node(g, "3").mutable_input()->SwapElements(0, 1);
              node(g, "3.six").mutable_input()->SwapElements(0, 1);
            })),
            expected);
  EXPECT_EQ(import_logits(edited(as_clip)), expected);
  ModelFile relu = load_onnx(edited([&](onnx::GraphProto& g) {
    as_clip(g);
    node(g, "3").mutable_input()->RemoveLast();
  }));
  EXPECT_EQ(relu.spec.layers[3].type, "ReLU");
  // Our form with another constant, or wired otherwise, is refused naming the node.
  expect_import_refused(
      edited([&](onnx::GraphProto& g) { initializer(g, "3.max").set_float_data(0, 5); }),
      "node '3.six' (Add): input '3.max' is not a float constant 6 of one value and at most the "
      "input's rank (cnn imports min(r, 6 + relu(-r)), r = relu(x), as ReLU6)");
  expect_import_refused(edited([&](onnx::GraphProto& g) { node(g, "3.zero").set_op_type("Tanh"); }),
                        "node '3' (Min): joins the branches from value '3.relu.out'");
  // torch's Clip with other bounds.
  const auto clip_with = [&](const std::function<void(onnx::GraphProto&)>& change) {
    return edited([&](onnx::GraphProto& g) {
      as_clip(g);
      change(g);
    });
  };
  expect_import_refused(
      clip_with([&](onnx::GraphProto& g) { initializer(g, "3.max").set_float_data(0, 5); }),
      "(Clip): bounds min 0, max 5 (cnn imports Clip(0, 6) as ReLU6");
  expect_import_refused(
      clip_with([&](onnx::GraphProto& g) { initializer(g, "3.min").set_float_data(0, -6); }),
      "bounds min -6, max 6");
  expect_import_refused(clip_with([&](onnx::GraphProto& g) { node(g, "3").set_input(1, ""); }),
                        "bounds min none, max 6");
  expect_import_refused(clip_with([&](onnx::GraphProto& g) {
                          initializer(g, "3.max").add_float_data(7);
                          initializer(g, "3.max").add_dims(2);
                        }),
                        "max of 2 values (expected a scalar)");
  expect_import_refused(
      edited([&](onnx::GraphProto& g) {
        node(g, "LeakyRelu").mutable_attribute(0)->set_f(std::numeric_limits<float>::infinity());
      }),
      "(LeakyRelu): alpha inf (expected a finite number)");
}

// Found 2026-12-06 by probing the importer with edited graphs: each of these imported to
// other results than the graph computes, or crashed.
TEST(Onnx, GraphsAreImportedAsWiredOrRefused) {
  const ModelSpec spec = preset_spec("lenet5");
  Exported original = export_random_model(spec, 5, "wired");
  // The export with its graph edited by `edit` (metadata kept unless it clears it), written.
  ExportEdits edited(original.path, "wired", false);
  // Node "6" (the Flatten of (N, 16, 5, 5)) as a Reshape to a constant target, at opset 14,
  // where Reshape has allowzero (at 13, the export's, the attribute is refused).
  const auto reshape_to = [&](const std::vector<int64_t>& target, int64_t allowzero) {
    return edited([&](onnx::ModelProto& m) {
      m.clear_metadata_props();
      m.mutable_opset_import(0)->set_version(14);
      onnx::GraphProto& g = *m.mutable_graph();
      for (int k = 0; k < g.node_size(); ++k) {
        if (g.node(k).name() != "6") continue;
        onnx::NodeProto reshape = make_node("Reshape", "6", {"5.out", "target.out"});
        set_int_attribute(reshape, "allowzero", allowzero);
        *g.mutable_node(k) = reshape;
      }
      *g.add_node() = int64_constant("target", target);
      // Constants first: ONNX wants the nodes in topological order.
      std::rotate(g.mutable_node()->rbegin(), g.mutable_node()->rbegin() + 1,
                  g.mutable_node()->rend());
    });
  };
  // A Reshape took any [x, -1] or [-1, x] as a flatten: [-1, 100] made (4N, 100) in the graph
  // and (N, 400) in cnn.
  for (const std::vector<int64_t>& target : {std::vector<int64_t>{-1, 100}, {2, -1}, {-1, -1}})
    expect_import_refused(reshape_to(target, 0),
                          "only a reshape that flattens each sample is supported: (N, 400) from "
                          "(N, 16, 5, 5)");
  expect_import_refused(reshape_to({0, -1}, 1), "only a reshape that flattens each sample");
  for (const std::vector<int64_t>& target : {std::vector<int64_t>{0, -1}, {-1, 400}, {0, 400}}) {
    ModelFile back = load_onnx(reshape_to(target, 0));
    EXPECT_EQ(cnn_logits(back.model, original.images), original.logits);
  }
  // A one-input Add after a MatMul: protobuf's "CHECK failed" (a fatal log and a second line);
  // ONNX's schema, which the Add is held to first, asks two.
  expect_import_refused(edited([](onnx::ModelProto& m) {
                          onnx::GraphProto& g = *m.mutable_graph();
                          for (int k = 0; k < g.node_size(); ++k) {
                            if (g.node(k).name() != "7") continue;
                            *g.mutable_node(k) = make_node("MatMul", "7mm", {"6.out", "7.weight"});
                            onnx::NodeProto add = make_node("Add", "7", {"7mm.out"});
                            g.mutable_node()->Add(std::move(add));
                            std::rotate(g.mutable_node()->begin() + k + 1,
                                        g.mutable_node()->end() - 1, g.mutable_node()->end());
                            break;
                          }
                          for (auto& t : *g.mutable_initializer())
                            if (t.name() == "7.weight") transpose_initializer(t);
                        }),
                        "node '7' (Add): 1 input (expected 2 at opset 13: A, B)");
  // Two initializers of one name: which a node meant is not in the file (the last one won).
  expect_import_refused(
      edited([](onnx::ModelProto& m) {
        onnx::TensorProto copy = m.graph().initializer(0);
        *m.mutable_graph()->add_initializer() = copy;
      }),
      "initializer '" + parse(original.path).graph().initializer(0).name() + "' appears twice");
  // With the metadata, the weights are still the ones the nodes read (they were looked up by
  // the metadata's names): node "0" rewired to another initializer, "0.weight" left unused.
  std::vector<float> other;
  ModelFile rewired = load_onnx(edited([&](onnx::ModelProto& m) {
    onnx::GraphProto& g = *m.mutable_graph();
    for (const onnx::TensorProto& t : g.initializer()) {
      if (t.name() != "0.weight") continue;
      onnx::TensorProto alt = t;
      alt.set_name("alt.weight");
      alt.clear_raw_data();
      for (int64_t k = 0; k < original.model.named_parameters()[0].value.numel(); ++k)
        alt.add_float_data(other.emplace_back(0.01f * static_cast<float>(k % 7)));
      *g.add_initializer() = alt;
      break;
    }
    for (int k = 0; k < g.node_size(); ++k)
      if (g.node(k).name() == "0") g.mutable_node(k)->set_input(1, "alt.weight");
  }));
  ASSERT_FALSE(other.empty());
  const TensorView<float> loaded = rewired.model.named_parameters()[0].value;
  EXPECT_EQ(std::vector<float>(loaded.data(), loaded.data() + loaded.numel()), other);
  // A graph of one output (no metadata) imports, as any graph of our layers does, but as a
  // cross-entropy classifier of one class it would not load from a model file: cnn convert
  // wrote one anyway. Saving it is refused, and nothing is written.
  ModelFile one_output = load_onnx(edited([](onnx::ModelProto& m) {
    m.clear_metadata_props();
    for (auto& t : *m.mutable_graph()->mutable_initializer()) {
      if (t.name() != "11.weight" && t.name() != "11.bias") continue;
      t.set_dims(0, 1);
      t.set_raw_data(t.raw_data().substr(0, t.raw_data().size() / 10));
    }
  }));
  const std::string converted = (work_dir() / "one_output.safetensors").string();
  try {
    save_model(converted, one_output.model, one_output.spec, {});
    ADD_FAILURE() << "saved a model file that does not load";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("cannot save: the file would not load: architecture: "
                                         "loss cross_entropy expects the model to output (N, "
                                         "classes) logits, got (1, 1)"),
              std::string::npos)
        << e.what();
  }
  EXPECT_FALSE(fs::exists(converted));
  // Before opset 14 a BatchNormalization's extra outputs make it a training-mode one (batch
  // statistics), which was imported as an inference one.
  const ModelSpec normed = parse_model_spec(R"({"input": [1, 6, 6], "layers": [
      {"type": "Conv2d", "out_channels": 4, "kernel": 3}, {"type": "BatchNorm2d"},
      {"type": "ReLU"}, {"type": "Flatten"}, {"type": "Linear", "out_features": 3}]})",
                                            "normed");
  Sequential<float> normed_model = random_model(normed, 6);
  const std::string normed_path = (work_dir() / "training_bn.onnx").string();
  save_onnx(normed_path, normed_model, normed, {});
  onnx::ModelProto m = parse(normed_path);
  for (auto& n : *m.mutable_graph()->mutable_node()) {
    if (n.op_type() != "BatchNormalization") continue;
    for (const char* out : {"mean", "var", "saved_mean", "saved_var"}) n.add_output(out);
  }
  std::string bytes;
  ASSERT_TRUE(m.SerializeToString(&bytes));
  write_bytes(normed_path, bytes);
  expect_import_refused(normed_path, "5 outputs: a training-mode BatchNormalization");
}

// Found 2026-12-06 by a helper's probe with hand-made graphs: two that imported to other
// results than ONNX gives, and valid forms that were refused.
TEST(Onnx, OpsetsBatchSizesBiasesAndUnfoldedTargetsAreReadAsOnnxMeansThem) {
  const ModelSpec spec = preset_spec("lenet5");
  Exported original = export_random_model(spec, 7, "probed");
  const auto logits_of = [&](const std::string& path) {
    ModelFile file = load_onnx(path);
    return cnn_logits(file.model, original.images);
  };
  ExportEdits edited(original.path, "probed", true);
  // The ONNX domain listed as "" and as "ai.onnx" at two versions: ONNX reads the nodes at the
  // "" entry's, cnn took the last. At one version it is one domain.
  expect_import_refused(edited([](onnx::ModelProto& m) {
                          onnx::OperatorSetIdProto* again = m.add_opset_import();
                          again->set_domain("ai.onnx");
                          again->set_version(m.opset_import(0).version() == 13 ? 14 : 13);
                        }),
                        "the ONNX domain is imported twice, at opsets");
  EXPECT_EQ(logits_of(edited([](onnx::ModelProto& m) {
              onnx::OperatorSetIdProto* again = m.add_opset_import();
              again->set_domain("ai.onnx");
              again->set_version(m.opset_import(0).version());
            })),
            original.logits);
  // Node "6", the Flatten of (N, 16, 5, 5), as Reshape(x, Concat(Unsqueeze(Gather(Shape(of),
  // 0)), Unsqueeze(-1))): torch's x.view(x.size(0), -1) exported without constant folding.
  const auto view_of = [&](const std::string& of) {
    return edited([&](onnx::ModelProto& m) {
      onnx::GraphProto& g = *m.mutable_graph();
      std::vector<onnx::NodeProto> nodes;
      for (const onnx::NodeProto& n : g.node()) {
        if (n.name() != "6") {
          nodes.push_back(n);
          continue;
        }
        nodes.push_back(make_node("Shape", "s", {of}));
        nodes.push_back(int64_constant("zero", {0}, true));
        nodes.push_back(make_node("Gather", "n", {"s.out", "zero.out"}));
        nodes.push_back(int64_constant("axes", {0}));
        nodes.push_back(make_node("Unsqueeze", "n1", {"n.out", "axes.out"}));
        nodes.push_back(int64_constant("minus1", {-1}, true));
        nodes.push_back(make_node("Unsqueeze", "m1", {"minus1.out", "axes.out"}));
        onnx::NodeProto concat = make_node("Concat", "target", {"n1.out", "m1.out"});
        set_int_attribute(concat, "axis", 0);
        nodes.push_back(concat);
        nodes.push_back(make_node("Reshape", "6", {"5.out", "target.out"}));
      }
      g.clear_node();
      for (const onnx::NodeProto& n : nodes) *g.add_node() = n;
    });
  };
  EXPECT_EQ(logits_of(view_of("5.out")), original.logits);
  // The Shape of a weight, (120, 400), gives 120, not the batch size.
  expect_import_refused(view_of("7.weight"), "only a reshape that flattens each sample");
  // Gemm's C of shape (1, out), which ONNX allows: it passed the Gemm's check and then failed
  // naming the layer's "11.bias".
  EXPECT_EQ(logits_of(edited([](onnx::ModelProto& m) {
              for (auto& t : *m.mutable_graph()->mutable_initializer()) {
                if (t.name() != "11.bias") continue;
                t.clear_dims();
                t.add_dims(1);
                t.add_dims(10);
              }
            })),
            original.logits);
  // A padding over the spec's 4096 ran in `cnn info` and `predict` and could not be saved (a
  // global pool after it keeps the shapes consistent).
  const ModelSpec pooled = parse_model_spec(R"({"input": [1, 4, 4], "layers": [
      {"type": "Conv2d", "out_channels": 2, "kernel": 3, "padding": 1},
      {"type": "AdaptiveAvgPool2d"}, {"type": "Flatten"}, {"type": "Linear", "out_features": 2}]})",
                                            "pooled");
  Sequential<float> pooled_model = random_model(pooled, 3);
  const std::string pooled_path = (work_dir() / "pooled.onnx").string();
  save_onnx(pooled_path, pooled_model, pooled, {});
  onnx::ModelProto padded = parse(pooled_path);
  padded.clear_metadata_props();
  for (auto& n : *padded.mutable_graph()->mutable_node()) {
    if (n.op_type() != "Conv") continue;
    for (auto& a : *n.mutable_attribute())
      if (a.name() == "pads")
        for (int k = 0; k < a.ints_size(); ++k) a.set_ints(k, 4097);
  }
  std::string padded_bytes;
  ASSERT_TRUE(padded.SerializeToString(&padded_bytes));
  write_bytes(pooled_path, padded_bytes);
  expect_import_refused(pooled_path,
                        "outside what cnn supports: the graph as a cnn spec: layer 0: 'padding' "
                        "expects whole numbers from 0 to 4096");
}

// An initializer no node reads is not read: one of a type cnn does not read (FLOAT16, INT8,
// STRING), also listed as a graph input as IR 3 files list them, made the whole file refused
// until 2026-12-06. One that a node reads is still refused naming its type.
TEST(Onnx, UnreadInitializersAreIgnoredWhateverTheirType) {
  const ModelSpec spec = preset_spec("lenet5");
  Exported original = export_random_model(spec, 9, "unread");
  ExportEdits edited(original.path, "unread", false);
  const auto add_unread = [](onnx::ModelProto& m, const std::string& name, int type) {
    onnx::TensorProto* t = m.mutable_graph()->add_initializer();
    t->set_name(name);
    t->set_data_type(type);
    t->add_dims(2);
    if (type == onnx::TensorProto::STRING) {
      t->add_string_data("a");
      t->add_string_data("b");
    } else {
      t->add_int32_data(0);
      t->add_int32_data(1);
    }
    onnx::ValueInfoProto* in = m.mutable_graph()->add_input();  // as IR 3 lists initializers
    in->set_name(name);
    in->mutable_type()->mutable_tensor_type()->set_elem_type(type);
    in->mutable_type()->mutable_tensor_type()->mutable_shape()->add_dim()->set_dim_value(2);
  };
  const std::string unread = edited([&](onnx::ModelProto& m) {
    add_unread(m, "unread16", onnx::TensorProto::FLOAT16);
    add_unread(m, "unread8", onnx::TensorProto::INT8);
    add_unread(m, "unread_names", onnx::TensorProto::STRING);
  });
  EXPECT_NO_THROW(onnx::checker::check_model(unread));
  ModelFile back = load_onnx(unread);
  EXPECT_EQ(cnn_logits(back.model, original.images), original.logits);
  EXPECT_EQ(to_json(back.spec), to_json(spec));
  // Read by the last Gemm as its C: refused, naming the type (ONNX's checker would refuse the
  // Gemm's mixed types too).
  expect_import_refused(edited([](onnx::ModelProto& m) {
                          for (auto& t : *m.mutable_graph()->mutable_initializer()) {
                            if (t.name() != "11.bias") continue;
                            t.set_data_type(onnx::TensorProto::FLOAT16);
                            t.set_raw_data(std::string(t.raw_data().size() / 2, '\0'));
                          }
                        }),
                        "initializer '11.bias': data type FLOAT16 (expected FLOAT, INT64 or BOOL)");
}

/// Sets the INTS attribute `name` of `node` to `values`.
void set_ints_attribute(onnx::NodeProto& node, const std::string& name,
                        const std::vector<int64_t>& values) {
  onnx::AttributeProto* a = node.add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto::INTS);
  for (int64_t v : values) a->add_ints(v);
}

/// Whether ONNX's checker and its strict shape inference take the model at `path`.
bool onnx_accepts(const std::string& path) {
  try {
    onnx::checker::check_model(path);
    onnx::ModelProto m;
    if (!m.ParseFromString(read_bytes(path))) return false;
    onnx::shape_inference::InferShapes(m, onnx::OpSchemaRegistry::Instance(),
                                       onnx::ShapeInferenceOptions(true, 1, false));
    return true;
  } catch (const std::exception&) {
    return false;
  }
}

// The nodes the import folds as shape computations (a Reshape's target from Shape, Gather,
// Unsqueeze, Concat, Cast, Slice, Squeeze and Constants) are evaluated as ONNX defines them, at
// the file's opset, and checked so: until 2026-12-06 a misspelled or out-of-range Unsqueeze axes,
// a Gather of an axis the shape does not have or a Concat of a scalar imported where the pattern
// matched. Each bad variant below is refused in one line naming the node, what ONNX expects and
// what the file gives; ONNX's own checker refuses it too where it can see it. The valid forms
// (torch's, at opsets 11, 13 and 15) import to LeNet-5's own logits.
TEST(Onnx, ShapeComputationsAreCheckedAsOnnxSpecifiesThem) {
  const ModelSpec spec = preset_spec("lenet5");
  Exported original = export_random_model(spec, 12, "folded");
  const auto node = [](const std::string& op, const std::string& name,
                       const std::vector<std::string>& inputs,
                       const std::function<void(onnx::NodeProto&)>& attributes = {}) {
    onnx::NodeProto n = make_node(op, name, inputs);
    if (attributes) attributes(n);
    return n;
  };
  const auto axis0 = [](onnx::NodeProto& n) { set_int_attribute(n, "axis", 0); };
  const auto axes = [](std::vector<int64_t> values, const char* name = "axes") {
    return [=](onnx::NodeProto& n) { set_ints_attribute(n, name, values); };
  };
  const auto to = [](int type) {
    return [=](onnx::NodeProto& n) { set_int_attribute(n, "to", type); };
  };
  // torch's x.view(x.size(0), -1) before opset 13 and from it; `n1` is the batch size as [N].
  using Nodes = std::vector<onnx::NodeProto>;
  const Nodes size0 = {node("Shape", "s", {"5.out"}), int64_constant("zero", {0}, true),
                       node("Gather", "n", {"s.out", "zero.out"}, axis0)};
  const auto view = [&](Nodes nodes, const Nodes& batch) {
    nodes.insert(nodes.end(), batch.begin(), batch.end());
    nodes.push_back(int64_constant("minus1", {-1}));
    nodes.push_back(node("Concat", "target", {"n1.out", "minus1.out"}, axis0));
    return nodes;
  };
  const Nodes unsqueeze11 = view(size0, {node("Unsqueeze", "n1", {"n.out"}, axes({0}))});
  const Nodes unsqueeze13 =
      view(size0, {int64_constant("axes", {0}), node("Unsqueeze", "n1", {"n.out", "axes.out"})});
  // Node `name` of `nodes` changed by `change`.
  const auto with = [](Nodes nodes, const std::string& name,
                       const std::function<void(onnx::NodeProto&)>& change) {
    for (onnx::NodeProto& n : nodes)
      if (n.name() == name) change(n);
    return nodes;
  };
  int variant = 0;
  const auto write = [&](int opset, const Nodes& target) {
    onnx::ModelProto m = parse(original.path);
    m.clear_metadata_props();
    m.set_ir_version(opset <= 14 ? 7 : 8);
    m.mutable_opset_import(0)->set_version(opset);
    onnx::GraphProto& g = *m.mutable_graph();
    Nodes nodes;
    for (const onnx::NodeProto& n : g.node()) {
      if (n.name() != "6") {
        nodes.push_back(n);
        continue;
      }
      nodes.insert(nodes.end(), target.begin(), target.end());
      nodes.push_back(make_node("Reshape", "6", {"5.out", "target.out"}));
    }
    g.clear_node();
    for (const onnx::NodeProto& n : nodes) *g.add_node() = n;
    return write_variant(m, "folded", variant);
  };
  const std::vector<std::tuple<std::string, int, Nodes>> valid = {
      {"torch's form, opset 11", 11, unsqueeze11},
      {"torch's form, opset 13", 13, unsqueeze13},
      {"a negative axis", 11,
       with(unsqueeze11, "n1",
            [](onnx::NodeProto& n) { n.mutable_attribute(0)->set_ints(0, -1); })},
      {"Shape's start and end, opset 15", 15,
       view({}, {node("Shape", "n1", {"5.out"},
                      [](onnx::NodeProto& n) {
                        set_int_attribute(n, "start", 0);
                        set_int_attribute(n, "end", 1);
                      })})},
      {"Slice and Cast", 13,
       view({node("Shape", "s", {"5.out"}), int64_constant("starts", {0}),
             int64_constant("ends", {1}),
             node("Slice", "sliced", {"s.out", "starts.out", "ends.out"})},
            {node("Cast", "n1", {"sliced.out"}, to(onnx::TensorProto::INT64))})},
      {"Squeeze and Unsqueeze", 13,
       view(size0, {int64_constant("axes", {0}), int64_constant("two", {0, 1}),
                    node("Unsqueeze", "n2", {"n.out", "two.out"}),
                    node("Squeeze", "n1", {"n2.out", "axes.out"})})},
  };
  for (const auto& [what, opset, nodes] : valid) {
    SCOPED_TRACE(what);
    const std::string path = write(opset, nodes);
    EXPECT_TRUE(onnx_accepts(path));
    try {
      ModelFile back = load_onnx(path);
      EXPECT_EQ(cnn_logits(back.model, original.images), original.logits);
    } catch (const Error& e) {
      ADD_FAILURE() << e.what();
    }
  }
  const std::vector<std::tuple<int, bool, Nodes, std::string>> invalid = {
      {11, true,
       with(unsqueeze11, "n1",
            [](onnx::NodeProto& n) { n.mutable_attribute(0)->set_name("axis"); }),
       "node 'n1' (Unsqueeze): attribute 'axis' is not Unsqueeze's at opset 11 (expected axes)"},
      {11, true,
       with(unsqueeze11, "n1", [](onnx::NodeProto& n) { n.mutable_attribute(0)->set_ints(0, 1); }),
       "node 'n1' (Unsqueeze): axis 1 is outside -1 to 0 (the output has rank 1)"},
      {11, false,
       with(unsqueeze11, "n1", [](onnx::NodeProto& n) { n.mutable_attribute(0)->add_ints(-2); }),
       "node 'n1' (Unsqueeze): axes [0, -2] name an axis twice"},
      {13, true, with(unsqueeze11, "n1", [](onnx::NodeProto&) {}),
       "node 'n1' (Unsqueeze): attribute 'axes' is not Unsqueeze's at opset 13 (expected none)"},
      {11, true, unsqueeze13, "node 'n1' (Unsqueeze): no attribute 'axes' (required at opset 11)"},
      {13, true,
       with(unsqueeze13, "axes",
            [](onnx::NodeProto& n) { n.mutable_attribute(0)->mutable_t()->set_int64_data(0, 2); }),
       "node 'n1' (Unsqueeze): axis 2 is outside -1 to 0 (the output has rank 1)"},
      {13, true,
       with(unsqueeze13, "n", [](onnx::NodeProto& n) { n.mutable_attribute(0)->set_i(1); }),
       "node 'n' (Gather): axis 1 is outside -1 to 0 ('s.out' has rank 1)"},
      {13, false,
       with(unsqueeze13, "zero",
            [](onnx::NodeProto& n) { n.mutable_attribute(0)->mutable_t()->set_int64_data(0, 4); }),
       "node 'n' (Gather): index 4 is outside -4 to 3 (axis 0 of 's.out' has 4)"},
      {13, true,
       with(unsqueeze13, "zero",
            [](onnx::NodeProto& n) {
              onnx::TensorProto& t = *n.mutable_attribute(0)->mutable_t();
              t.clear_int64_data();
              t.set_data_type(onnx::TensorProto::FLOAT);
              t.add_float_data(0);
            }),
       "node 'n' (Gather): input 'zero.out' (indices) is FLOAT (expected tensor(int32), "
       "tensor(int64))"},
      {13, true, with(unsqueeze13, "target", [](onnx::NodeProto& n) { n.clear_attribute(); }),
       "node 'target' (Concat): no attribute 'axis' (required at opset 13)"},
      // The batch size as a scalar, not unsqueezed: the old pattern took it as [N].
      {13,
       true,
       {node("Shape", "s", {"5.out"}), int64_constant("zero", {0}, true),
        node("Gather", "n", {"s.out", "zero.out"}, axis0), int64_constant("minus1", {-1}),
        node("Concat", "target", {"n.out", "minus1.out"}, axis0)},
       "node 'target' (Concat): input 'n.out' is a scalar (expected rank >= 1)"},
      {13, true, view(size0, {node("Cast", "n1", {"n.out"})}),
       "node 'n1' (Cast): no attribute 'to' (required at opset 13)"},
      {13, true,
       view(size0, {int64_constant("axes", {0}), node("Unsqueeze", "u", {"n.out", "axes.out"}),
                    node("Cast", "n1", {"u.out"}, to(onnx::TensorProto::FLOAT))}),
       "node 'target' (Concat): input 'minus1.out' is INT64 where an input before it is FLOAT "
       "(expected one type T)"},
      {13, true,
       with(unsqueeze13, "s", [](onnx::NodeProto& n) { set_int_attribute(n, "start", 0); }),
       "node 's' (Shape): attribute 'start' is not Shape's at opset 13 (expected none)"},
      {13, true,
       view({node("Shape", "s", {"5.out"})},
            {int64_constant("axes", {0}), node("Squeeze", "n1", {"s.out", "axes.out"})}),
       "node 'n1' (Squeeze): axis 0 of 's.out' has size 4 (expected 1: Squeeze removes "
       "dimensions of size 1)"},
      {13, true,
       with(unsqueeze13, "minus1",
            [](onnx::NodeProto& n) { set_ints_attribute(n, "value_ints", {-1}); }),
       "node 'minus1' (Constant): only a Constant of one tensor 'value' is supported (given: "
       "value, value_ints)"},
      {11, true,
       with(unsqueeze11, "minus1",
            [](onnx::NodeProto& n) { set_ints_attribute(n, "value_ints", {-1}); }),
       "node 'minus1' (Constant): attribute 'value_ints' is not Constant's at opset 11 (expected "
       "sparse_value, value)"},
  };
  // ONNX's checker misses two: it compares Unsqueeze's axes before making them non-negative,
  // and leaves Gather's indices to the runtime (the spec calls one out of range an error).
  for (const auto& [opset, onnx_refuses, nodes, fragment] : invalid) {
    SCOPED_TRACE(fragment);
    const std::string path = write(opset, nodes);
    EXPECT_EQ(onnx_accepts(path), !onnx_refuses);
    expect_import_refused(path, fragment);
  }
}

// Every node the import reads as (part of) a layer is held to ONNX's schema at the file's opset
// before cnn's own restrictions, as the folded shape computations are (the same check): until
// 2026-12-07 hand-written attribute lists let through, among others, a Reshape with allowzero
// at opset 13 (an attribute from opset 14), a BatchNormalization with training_mode at 13, a
// Dropout's ratio as an attribute (opset 11's form) or its seed as a float, a Relu with a second
// input, a Conv with a second output, a Dropout whose training_mode is INT64 and attributes on
// the Add of a residual block or of a MatMul's bias. Each variant below is invalid ONNX (ONNX's
// checker refuses it too) and is refused in one line naming the node, its op and what the schema
// expects; the same nodes at an opset that has them import.
TEST(Onnx, LayerNodesAreHeldToOnnxsSchemaAtTheFileOpset) {
  const ModelSpec normed = parse_model_spec(R"({"input": [1, 6, 6], "layers": [
      {"type": "Conv2d", "out_channels": 4, "kernel": 3}, {"type": "BatchNorm2d"},
      {"type": "ReLU"}, {"type": "Flatten"}, {"type": "Linear", "out_features": 3}]})",
                                            "normed");
  std::map<std::string, std::string> exported;  // opset 13, the default
  for (const ModelSpec& spec : {preset_spec("lenet5"), preset_spec("resnet"), normed}) {
    Sequential<float> model = random_model(spec, 13);
    exported[spec.name] = (work_dir() / ("schema_" + spec.name + ".onnx")).string();
    save_onnx(exported[spec.name], model, spec, {});
  }
  int variant = 0;
  // `name`'s export at `opset` without its metadata, edited by `edit` and written.
  const auto edited = [&](const std::string& name, int opset,
                          const std::function<void(onnx::GraphProto&)>& edit) {
    onnx::ModelProto m = parse(exported.at(name));
    m.clear_metadata_props();
    m.mutable_opset_import(0)->set_version(opset);
    edit(*m.mutable_graph());
    return write_variant(m, "schema", variant);
  };
  const auto node = [](onnx::GraphProto& g, const std::string& name) -> onnx::NodeProto& {
    for (auto& n : *g.mutable_node())
      if (n.name() == name) return n;
    throw Error("no node " + name);
  };
  // Node "6" of LeNet-5 (a Flatten) as Reshape(x, [0, -1]), the target a Constant before it.
  const auto reshape = [&](int64_t allowzero) {
    return [&, allowzero](onnx::GraphProto& g) {
      onnx::NodeProto r = make_node("Reshape", "6", {"5.out", "target.out"});
      set_int_attribute(r, "allowzero", allowzero);
      node(g, "6") = r;
      *g.add_node() = int64_constant("target", {0, -1});
      std::rotate(g.mutable_node()->rbegin(), g.mutable_node()->rbegin() + 1,
                  g.mutable_node()->rend());
    };
  };
  // A Dropout after node "8" (LeNet-5's second ReLU), given `inputs` after "8.out".
  const auto dropout = [&](const std::vector<std::string>& inputs,
                           const std::function<void(onnx::NodeProto&)>& attributes = {}) {
    return [=, &node](onnx::GraphProto& g) {
      std::vector<std::string> all = {"8.out"};
      all.insert(all.end(), inputs.begin(), inputs.end());
      onnx::NodeProto d = make_node("Dropout", "drop", all);
      if (attributes) attributes(d);
      node(g, "9").set_input(0, "drop.out");
      for (int k = 0; k < g.node_size(); ++k) {
        if (g.node(k).name() != "8") continue;
        g.mutable_node()->Add(std::move(d));
        std::rotate(g.mutable_node()->begin() + k + 1, g.mutable_node()->end() - 1,
                    g.mutable_node()->end());
        break;
      }
      onnx::TensorProto* t = g.add_initializer();  // training_mode, INT64 (ONNX asks a BOOL)
      t->set_name("int_mode");
      t->set_data_type(onnx::TensorProto::INT64);
      t->add_int64_data(0);
    };
  };
  const auto float_attribute = [](const std::string& name, float value) {
    return [=](onnx::NodeProto& n) {
      onnx::AttributeProto* a = n.add_attribute();
      a->set_name(name);
      a->set_type(onnx::AttributeProto::FLOAT);
      a->set_f(value);
    };
  };
  // The same nodes where the opset has them.
  for (const auto& [name, opset, edit] :
       std::vector<std::tuple<std::string, int, std::function<void(onnx::GraphProto&)>>>{
           {"lenet5", 14, reshape(0)},
           {"normed", 14,
            [&](onnx::GraphProto& g) { set_int_attribute(node(g, "1"), "training_mode", 0); }},
           {"lenet5", 11, dropout({}, float_attribute("ratio", 0.5f))},
           {"lenet5", 13, dropout({}, [](onnx::NodeProto& n) { set_int_attribute(n, "seed", 3); })},
       }) {
    const std::string path = edited(name, opset, edit);
    SCOPED_TRACE(path);
    EXPECT_TRUE(onnx_accepts(path));
    EXPECT_NO_THROW(load_onnx(path));
  }
  const std::vector<std::tuple<std::string, std::function<void(onnx::GraphProto&)>, std::string>>
      invalid = {
          {"lenet5", reshape(0),
           "node '6' (Reshape): attribute 'allowzero' is not Reshape's at opset 13 (expected "
           "none)"},
          {"normed",
           [&](onnx::GraphProto& g) { set_int_attribute(node(g, "1"), "training_mode", 0); },
           "node '1' (BatchNormalization): attribute 'training_mode' is not "
           "BatchNormalization's at opset 13 (expected epsilon, momentum)"},
          {"lenet5", dropout({}, float_attribute("ratio", 0.5f)),
           "node 'drop' (Dropout): attribute 'ratio' is not Dropout's at opset 13 (expected "
           "seed)"},
          {"lenet5", dropout({}, float_attribute("seed", 3)),
           "node 'drop' (Dropout): attribute 'seed' is FLOAT (expected INT)"},
          {"lenet5", dropout({"", "int_mode"}),
           "node 'drop' (Dropout): input 'int_mode' (training_mode) is INT64 (expected "
           "tensor(bool))"},
          {"lenet5",
           [&](onnx::GraphProto& g) {
             node(g, "3").mutable_input()->RemoveLast();
             node(g, "3").mutable_input()->RemoveLast();
           },
           "node '3' (Conv): 1 input (expected 2 to 3 at opset 13: X, W, B)"},
          {"lenet5", [&](onnx::GraphProto& g) { node(g, "3").set_input(1, ""); },
           "node '3' (Conv): input 1 (W) is not given (required)"},
          {"lenet5", [&](onnx::GraphProto& g) { node(g, "1").add_input("0.bias"); },
           "node '1' (Relu): 2 inputs (expected 1 at opset 13: X)"},
          {"lenet5", [&](onnx::GraphProto& g) { node(g, "0").add_output("unused"); },
           "node '0' (Conv): 2 outputs (expected 1 at opset 13: Y)"},
          {"lenet5",
           [&](onnx::GraphProto& g) { set_int_attribute(node(g, "2"), "count_include_pad", 1); },
           "node '2' (MaxPool): attribute 'count_include_pad' is not MaxPool's at opset 13"},
          // The Add of a MatMul's bias, of a residual block, and the activation after the block.
          {"lenet5",
           [&](onnx::GraphProto& g) {
             onnx::NodeProto& gemm = node(g, "7");
             gemm = make_node("MatMul", "7mm", {"6.out", "7.weight"});
             onnx::NodeProto add = make_node("Add", "7", {"7mm.out", "7.bias"});
             set_int_attribute(add, "axis", 1);
             for (int k = 0; k < g.node_size(); ++k) {
               if (g.node(k).name() != "7mm") continue;
               g.mutable_node()->Add(std::move(add));
               std::rotate(g.mutable_node()->begin() + k + 1, g.mutable_node()->end() - 1,
                           g.mutable_node()->end());
               break;
             }
             for (auto& t : *g.mutable_initializer())
               if (t.name() == "7.weight") transpose_initializer(t);
           },
           "node '7' (Add): attribute 'axis' is not Add's at opset 13 (expected none)"},
          {"resnet",
           [&](onnx::GraphProto& g) { set_int_attribute(node(g, "5.add"), "broadcast", 1); },
           "node '5.add' (Add): attribute 'broadcast' is not Add's at opset 13 (expected none)"},
          {"resnet", [&](onnx::GraphProto& g) { node(g, "5").add_output("unused"); },
           "node '5' (Relu): 2 outputs (expected 1 at opset 13: Y)"},
      };
  for (const auto& [name, edit, fragment] : invalid) {
    SCOPED_TRACE(fragment);
    const std::string path = edited(name, 13, edit);
    EXPECT_FALSE(onnx_accepts(path));
    expect_import_refused(path, fragment);
  }
  // A BatchNormalization's epsilon and momentum out of cnn's range (valid ONNX types): each is
  // named with its value (found 2026-12-08, a probe: "epsilon or momentum out of range").
  for (const auto& [attribute, value, fragment] :
       std::vector<std::tuple<std::string, float, std::string>>{
           {"epsilon", 0.0f, "node '1' (BatchNormalization): epsilon is 0 (expected above 0)"},
           {"epsilon", -1.0f, "node '1' (BatchNormalization): epsilon is -1 (expected above 0)"},
           {"epsilon", std::nanf(""),
            "node '1' (BatchNormalization): epsilon is nan (expected above 0)"},
           {"momentum", 2.0f, "node '1' (BatchNormalization): momentum is 2 (expected 0 to 1)"},
           {"momentum", -1.0f, "node '1' (BatchNormalization): momentum is -1 (expected 0 to 1)"},
       }) {
    SCOPED_TRACE(fragment);
    const std::string path =
        edited("normed", 13, [&, attribute = attribute, value = value](onnx::GraphProto& g) {
          onnx::NodeProto& n = node(g, "1");
          for (int k = 0; k < n.attribute_size(); ++k) {
            if (n.attribute(k).name() == attribute) {
              n.mutable_attribute()->DeleteSubrange(k, 1);
              break;
            }
          }
          float_attribute(attribute, value)(n);
        });
    expect_import_refused(path, fragment);
  }
  // An Add of another domain is not ONNX's Add (a custom op: ONNX's checker takes it, and what
  // it computes is not in the file); it was taken as a residual block's sum.
  const std::string custom = edited(
      "resnet", 13, [&](onnx::GraphProto& g) { node(g, "5.add").set_domain("com.example"); });
  {
    onnx::ModelProto m = parse(custom);
    onnx::OperatorSetIdProto* domain = m.add_opset_import();
    domain->set_domain("com.example");
    domain->set_version(1);
    std::string bytes;
    ASSERT_TRUE(m.SerializeToString(&bytes));
    write_bytes(custom, bytes);
  }
  EXPECT_NO_THROW(onnx::checker::check_model(custom));
  expect_import_refused(custom,
                        "node '5.add' (Add): joins the branches from value '4.out' (cnn imports a "
                        "value read by several nodes only as a residual block, whose two branches "
                        "join in an Add)");
}

// Found 2026-12-06: an Identity of a weight copied it, so that 2,000 unused Identity nodes of a
// 4 MB weight took 7.8 GB. Aliases now share the tensor: 300 of a 4 MB weight (1.2 GB as
// copies) stay far below 400 MB in a child process.
TEST(Onnx, IdentitiesOfAWeightShareIt) {
  const ModelSpec spec = preset_spec("lenet5");
  Sequential<float> model = random_model(spec, 8);
  const std::string path = (work_dir() / "aliases.onnx").string();
  save_onnx(path, model, spec, {});
  onnx::ModelProto m = parse(path);
  m.clear_metadata_props();
  onnx::GraphProto& g = *m.mutable_graph();
  onnx::TensorProto* big = g.add_initializer();
  big->set_name("big");
  big->set_data_type(onnx::TensorProto::FLOAT);
  big->add_dims(1 << 20);
  big->set_raw_data(std::string(size_t{4} << 20, '\0'));
  for (int k = 0; k < 300; ++k) {
    onnx::NodeProto alias = make_node("Identity", "alias" + std::to_string(k), {"big"});
    g.mutable_node()->Add(std::move(alias));
    std::rotate(g.mutable_node()->begin(), g.mutable_node()->end() - 1, g.mutable_node()->end());
  }
  std::string bytes;
  ASSERT_TRUE(m.SerializeToString(&bytes));
  write_bytes(path, bytes);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    rusage before{};
    ::getrusage(RUSAGE_SELF, &before);
    int code = 0;
    try {
      load_onnx(path);
    } catch (...) {
      code = 2;
    }
    rusage after{};
    ::getrusage(RUSAGE_SELF, &after);
    if (code == 0 && after.ru_maxrss - before.ru_maxrss > 400 * 1024) code = 3;  // KiB
    ::_exit(code);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "2: refused, 3: took more than 400 MB";
}

/// The peak memory, in KiB, that load_onnx(path) adds in a child process (-1: it threw).
long import_peak_kib(const std::string& path) {
  int pipe_fds[2];
  if (::pipe(pipe_fds) != 0) return -2;
  const pid_t child = ::fork();
  if (child < 0) return -2;
  if (child == 0) {
    rusage before{};
    ::getrusage(RUSAGE_SELF, &before);
    long grown = -1;
    try {
      load_onnx(path);
      rusage after{};
      ::getrusage(RUSAGE_SELF, &after);
      grown = after.ru_maxrss - before.ru_maxrss;
    } catch (...) {
    }
    const ssize_t written = ::write(pipe_fds[1], &grown, sizeof grown);
    ::_exit(written == sizeof grown ? 0 : 1);
  }
  ::close(pipe_fds[1]);
  long grown = -2;
  if (::read(pipe_fds[0], &grown, sizeof grown) != sizeof grown) grown = -2;
  ::close(pipe_fds[0]);
  int status = 0;
  ::waitpid(child, &status, 0);
  return grown;
}

// A weight that many Gemm nodes read (transB 0) or MatMul nodes read was transposed once per
// node: 300 Gemms of one 4 MB weight took 3.7 GB to import where transB 1 took 2.5 GB (found
// 2026-12-06). Each Linear still holds its own copy, with its gradient, as the same layers from
// a spec do (cnn layers cannot share parameters): the import now costs that alone, whichever
// way the weight is laid out.
TEST(Onnx, AWeightReadByManyNodesIsTransposedOnce) {
  const std::string base = (work_dir() / "shared_base.onnx").string();
  Sequential<float> model = random_model(preset_spec("lenet5"), 2);
  save_onnx(base, model, preset_spec("lenet5"), {});
  // 200 Gemms of one (256, 256) weight after a Flatten of (N, 1, 16, 16): 52 MB of parameters.
  const auto shared = [&](int trans_b) {
    onnx::ModelProto m = parse(base);
    m.clear_metadata_props();
    onnx::GraphProto& g = *m.mutable_graph();
    g.clear_node();
    g.clear_initializer();
    auto* dims = g.mutable_input(0)->mutable_type()->mutable_tensor_type()->mutable_shape();
    dims->mutable_dim(2)->set_dim_value(16);
    dims->mutable_dim(3)->set_dim_value(16);
    g.mutable_output(0)
        ->mutable_type()
        ->mutable_tensor_type()
        ->mutable_shape()
        ->mutable_dim(1)
        ->set_dim_value(256);
    onnx::TensorProto* w = g.add_initializer();
    w->set_name("w");
    w->set_data_type(onnx::TensorProto::FLOAT);
    w->add_dims(256);
    w->add_dims(256);
    w->set_raw_data(std::string(size_t{256} * 256 * sizeof(float), '\0'));
    onnx::NodeProto flatten = make_node("Flatten", "x0", {"input"});
    *g.add_node() = flatten;
    // Names built by append: GCC 12's -Wrestrict misfires on "x" + std::to_string(k).
    const auto x = [](int k) {
      std::string name = "x";
      name += std::to_string(k);
      return name;
    };
    for (int k = 1; k <= 200; ++k) {
      onnx::NodeProto gemm = make_node("Gemm", x(k), {x(k - 1) + ".out", "w"});
      set_int_attribute(gemm, "transB", trans_b);
      *g.add_node() = gemm;
    }
    g.mutable_node(g.node_size() - 1)->set_output(0, "logits");
    const std::string path =
        (work_dir() / ("shared_" + std::to_string(trans_b) + ".onnx")).string();
    std::string bytes;
    EXPECT_TRUE(m.SerializeToString(&bytes));
    write_bytes(path, bytes);
    EXPECT_TRUE(onnx_accepts(path));
    return path;
  };
  const long as_is = import_peak_kib(shared(1)), transposed = import_peak_kib(shared(0));
  ASSERT_GT(as_is, 0);
  ASSERT_GT(transposed, 0);
  // A transpose per node would add half again (52 MB to parameters and gradients' 104 MB).
  EXPECT_LT(transposed, as_is + as_is / 5) << as_is << " KiB with transB 1";
}

/// `model` exported to `path` without our metadata (the graph alone), parsed back.
onnx::ModelProto export_without_metadata(Sequential<float>& model, const ModelSpec& spec,
                                         const fs::path& path) {
  save_onnx(path.string(), model, spec, {});
  onnx::ModelProto m = parse(path.string());
  m.clear_metadata_props();
  std::string bytes;
  EXPECT_TRUE(m.SerializeToString(&bytes));
  write_bytes(path, bytes);
  return m;
}

// Without our metadata the graph alone gives the explicit pads, and the same logits; before
// opset 13 a Softmax's axis 1 of a 4-d input meant all C*H*W values, not cnn's Softmax.
TEST(Onnx, SamePaddingAndAChannelSoftmaxImportFromTheGraph) {
  const ModelSpec spec = same_padding_spec();
  Sequential<float> model = random_model(spec, 4);
  const fs::path path = work_dir() / "same_padding.onnx";
  onnx::ModelProto m = export_without_metadata(model, spec, path);
  ModelFile back = load_onnx(path.string());
  EXPECT_EQ(back.spec.layers[0].padding, Size2(1, 2));
  EXPECT_EQ(back.spec.layers[1].type, "Softmax");
  Tensor<float> images(Shape{3, 1, 9, 9});
  for (int64_t i = 0; i < images.numel(); ++i) images[i] = static_cast<float>(i % 7) / 7;
  EXPECT_EQ(cnn_logits(back.model, images), cnn_logits(model, images));
  for (auto& o : *m.mutable_opset_import())
    if (o.domain().empty() || o.domain() == "ai.onnx") o.set_version(12);
  std::string bytes;
  ASSERT_TRUE(m.SerializeToString(&bytes));
  write_bytes(path, bytes);
  expect_import_refused(path.string(),
                        "node '1' (Softmax): expected a softmax over the features of a 2-d input, "
                        "or over the channels of a 4-d one (axis 1, from opset 13)");
}

// Without our metadata, Add(x, x) imports as a block of two identities (a Dropout of p 0 for
// its body, since a body is never empty), which computes 2x as the graph does.
TEST(Onnx, AValueAddedToItselfImportsAsABlockOfTwoIdentities) {
  const ModelSpec spec = doubled_spec();
  Sequential<float> model = random_model(spec, 6);
  const fs::path path = work_dir() / "doubled.onnx";
  export_without_metadata(model, spec, path);
  ModelFile back = load_onnx(path.string());
  ASSERT_EQ(back.spec.layers.size(), 5u);
  EXPECT_EQ(back.spec.layers[1].activation, "Tanh");
  ASSERT_EQ(back.spec.layers[2].body.size(), 1u);
  EXPECT_EQ(back.spec.layers[2].body[0].type, "Dropout");
  EXPECT_EQ(back.spec.layers[2].body[0].p, 0);
  Tensor<float> images(Shape{3, 1, 6, 6});
  for (int64_t i = 0; i < images.numel(); ++i) images[i] = static_cast<float>(i % 5) / 5;
  EXPECT_EQ(cnn_logits(back.model, images), cnn_logits(model, images));
}

// torch_idioms.onnx's ReduceMean (axes [2, 3], keepdims 0) edited: keepdims 1 with a Flatten
// after it gives the same logits; a mean over other axes is refused, and so is ceil_mode 1 on
// its MaxPool once the input's size makes it add a window.
TEST(Onnx, ReduceMeanAndCeilModeImportWhereTheyAreCnnsLayers) {
  const Tensor<float> images = first_images(16);
  ModelFile original = load_onnx(golden("torch_idioms.onnx"));
  const std::vector<float> expected = cnn_logits(original.model, images);
  int variant = 0;
  const auto edited = [&](const std::function<void(onnx::GraphProto&)>& edit) {
    onnx::ModelProto m = parse(golden("torch_idioms.onnx"));
    edit(*m.mutable_graph());
    return write_variant(m, "idioms", variant);
  };
  const auto reduce_mean = [](onnx::GraphProto& g) -> onnx::NodeProto& {
    for (auto& n : *g.mutable_node())
      if (n.op_type() == "ReduceMean") return n;
    throw Error("no ReduceMean");
  };
  ModelFile kept = load_onnx(edited([&](onnx::GraphProto& g) {
    onnx::NodeProto& mean = reduce_mean(g);
    for (auto& a : *mean.mutable_attribute())
      if (a.name() == "keepdims") a.set_i(1);
    const std::string pooled = mean.output(0);
    mean.set_output(0, "pooled_4d");
    onnx::NodeProto flatten = make_node("Flatten", "flat", {"pooled_4d"});
    flatten.set_output(0, pooled);
    *g.add_node() = flatten;
    // ONNX wants topological order: the Flatten goes right after the ReduceMean.
    int at = 0;
    while (g.node(at).op_type() != "ReduceMean") ++at;
    std::rotate(g.mutable_node()->begin() + at + 1, g.mutable_node()->end() - 1,
                g.mutable_node()->end());
  }));
  EXPECT_EQ(cnn_logits(kept.model, images), expected);
  expect_import_refused(edited([&](onnx::GraphProto& g) {
                          for (auto& a : *reduce_mean(g).mutable_attribute())
                            if (a.name() == "axes") a.set_ints(0, 1);
                        }),
                        "only a mean over the height and width of a 4-d input (axes [2, 3])");
  // A 27 x 27 input: 2 x 2 windows at stride 2 leave a row and a column that ceil_mode covers.
  expect_import_refused(
      edited([](onnx::GraphProto& g) {
        auto* dims = g.mutable_input(0)->mutable_type()->mutable_tensor_type()->mutable_shape();
        dims->mutable_dim(2)->set_dim_value(27);
        dims->mutable_dim(3)->set_dim_value(27);
      }),
      "ceil_mode 1 is not supported where it adds a window (27 + 2 x 0 padding - 2 is not a "
      "multiple of the stride 2)");
}

/// Sets every value of the INTS attribute `name` of `node` to 0.
void zero_ints_attribute(onnx::NodeProto& node, const std::string& name) {
  for (auto& a : *node.mutable_attribute())
    if (a.name() == name)
      for (auto& v : *a.mutable_ints()) v = 0;
}

// torch.onnx.export writes AvgPool2d(padding=p) as a Pad of zeros and an AveragePool without
// pads (TorchExportsGivePyTorchsLogits holds the import to such a file); other exporters pad a
// Conv so. Found 2026-12-06: every Pad was refused. The padding of our export's Conv and
// AveragePool (count_include_pad 1) moved into Pads must give the same logits; a Pad that is
// not such a padding is refused.
TEST(Onnx, APadOfZerosIsThePaddingOfTheLayerAfterIt) {
  const ModelSpec spec = parse_model_spec(
      R"({"input": [1, 28, 28], "layers": [
          {"type": "Conv2d", "out_channels": 3, "kernel": 3, "padding": [1, 2]},
          {"type": "ReLU"},
          {"type": "AvgPool2d", "kernel": 3, "stride": 2, "padding": 1,
           "count_include_pad": true},
          {"type": "MaxPool2d", "kernel": 2},
          {"type": "Flatten"}, {"type": "Linear", "out_features": 5}]})",
      "padded");
  Exported original = export_random_model(spec, 8, "padded");
  int variant = 0;
  struct PadOptions {
    std::vector<int64_t> conv_pads{0, 0, 1, 2, 0, 0, 1, 2}, pool_pads{0, 0, 1, 1, 0, 0, 1, 1};
    std::string mode = "constant";
    float value = 0;
    int64_t pool_count_include_pad = 0;
    std::vector<int64_t> pool_own_pads{0, 0, 0, 0};  // the AveragePool's own
    std::string pool_op = "AveragePool";
  };
  // Our export writes the pooling as a Pad ("2.pad") and an AveragePool ("2") already, as
  // torch does (OpenCV runs that form right).
  std::vector<std::string> ops;
  const onnx::ModelProto as_exported = parse(original.path);
  for (const onnx::NodeProto& n : as_exported.graph().node()) ops.push_back(n.op_type());
  EXPECT_EQ(ops, (std::vector<std::string>{"Conv", "Relu", "Pad", "AveragePool", "MaxPool",
                                           "Flatten", "Gemm"}));
  // Nodes "0" (Conv) and "2" (AveragePool, without the export's own Pad) read Pads of their
  // padding, made here; their own pads are 0.
  const auto padded = [&](const PadOptions& o) {
    onnx::ModelProto m = parse(original.path);
    m.clear_metadata_props();
    onnx::GraphProto& g = *m.mutable_graph();
    std::vector<onnx::NodeProto> nodes;
    std::string pool_input;
    for (const onnx::NodeProto& source : g.node()) {
      if (source.name() == "2.pad") {
        pool_input = source.input(0);
        continue;
      }
      onnx::NodeProto n = source;
      if (n.name() == "2") n.set_input(0, pool_input);
      if (n.name() != "0" && n.name() != "2") {
        nodes.push_back(n);
        continue;
      }
      const bool conv = n.name() == "0";
      nodes.push_back(int64_constant("pads" + n.name(), conv ? o.conv_pads : o.pool_pads));
      onnx::NodeProto value = make_node("Constant", "value" + n.name(), {});
      onnx::AttributeProto* t = value.add_attribute();
      t->set_name("value");
      t->set_type(onnx::AttributeProto::TENSOR);
      t->mutable_t()->set_data_type(onnx::TensorProto::FLOAT);
      t->mutable_t()->add_float_data(o.value);
      nodes.push_back(value);
      onnx::NodeProto pad =
          make_node("Pad", "pad" + n.name(),
                    {n.input(0), "pads" + n.name() + ".out", "value" + n.name() + ".out"});
      onnx::AttributeProto* mode = pad.add_attribute();
      mode->set_name("mode");
      mode->set_type(onnx::AttributeProto::STRING);
      mode->set_s(o.mode);
      nodes.push_back(pad);
      onnx::NodeProto layer = n;
      layer.set_input(0, "pad" + n.name() + ".out");
      zero_ints_attribute(layer, "pads");
      if (!conv)
        for (auto& a : *layer.mutable_attribute())
          if (a.name() == "pads")
            for (int k = 0; k < 4; ++k) a.set_ints(k, o.pool_own_pads[static_cast<size_t>(k)]);
      if (!conv) {
        layer.set_op_type(o.pool_op);
        layer.mutable_attribute()->erase(
            std::remove_if(layer.mutable_attribute()->begin(), layer.mutable_attribute()->end(),
                           [](const auto& a) { return a.name() == "count_include_pad"; }),
            layer.mutable_attribute()->end());
        if (o.pool_op == "AveragePool")
          set_int_attribute(layer, "count_include_pad", o.pool_count_include_pad);
      }
      nodes.push_back(layer);
    }
    g.clear_node();
    for (const onnx::NodeProto& n : nodes) *g.add_node() = n;
    return write_variant(m, "padded", variant);
  };
  {
    const std::string path = padded({});
    EXPECT_NO_THROW(onnx::checker::check_model(path));
    ModelFile back = load_onnx(path);
    EXPECT_EQ(back.spec.layers[0].padding, Size2(1, 2));
    EXPECT_EQ(back.spec.layers[2].padding, Size2(1));
    EXPECT_TRUE(back.spec.layers[2].count_include_pad);
    const std::vector<float> logits = cnn_logits(back.model, original.images);
    close_to_golden("padding as Pad nodes", TensorView<const float>(logits.data(), Shape{8, 5}),
                    TensorView<const float>(original.logits.data(), Shape{8, 5}), 1e-6);
  }
  {
    // The pooling's padding of the height in the Pad, of the width its own
    // (count_include_pad 1): the sum, with the same logits.
    PadOptions o;
    o.pool_pads = {0, 0, 1, 0, 0, 0, 1, 0};
    o.pool_own_pads = {0, 1, 0, 1};
    o.pool_count_include_pad = 1;
    ModelFile back = load_onnx(padded(o));
    EXPECT_EQ(back.spec.layers[2].padding, Size2(1, 1));
    EXPECT_TRUE(back.spec.layers[2].count_include_pad);
    EXPECT_EQ(cnn_logits(back.model, original.images), original.logits);
  }
  PadOptions reflect, ones, asymmetric, channels, before_max, own_pads_not_counted;
  reflect.mode = "reflect";
  ones.value = 1;
  asymmetric.conv_pads = {0, 0, 1, 2, 0, 0, 2, 2};
  channels.conv_pads = {0, 1, 1, 2, 0, 1, 1, 2};
  before_max.pool_op = "MaxPool";
  own_pads_not_counted.pool_pads = {0, 0, 1, 0, 0, 0, 1, 0};
  own_pads_not_counted.pool_own_pads = {0, 1, 0, 1};
  for (const auto& [options, fragment] : std::vector<std::pair<PadOptions, std::string>>{
           {reflect, "node 'pad0' (Pad): mode reflect (only constant zeros are supported)"},
           {ones, "node 'pad0' (Pad): pads with a value other than 0"},
           {asymmetric, "pads [0, 0, 1, 2, 0, 0, 2, 2] (expected [0, 0, h, w, 0, 0, h, w]"},
           {channels, "pads [0, 1, 1, 2, 0, 1, 1, 2] (expected"},
           {before_max, "node 'pad2' (Pad): is read by other than one Conv or AveragePool"},
           {own_pads_not_counted,
            "node '2' (AveragePool): pads of its own with count_include_pad 0 after a Pad"}}) {
    SCOPED_TRACE(fragment);
    expect_import_refused(padded(options), fragment);
  }
}

/// `m` with every two-input Add's inputs swapped.
void swap_add_inputs(onnx::ModelProto& m) {
  for (auto& n : *m.mutable_graph()->mutable_node())
    if (n.op_type() == "Add" && n.input_size() == 2) n.mutable_input()->SwapElements(0, 1);
}

/// Moves the nodes of `m` whose names start with `moved` to just before the first node whose
/// name starts with `before` (a block's shortcut before its body: still in topological order).
void move_nodes_before(onnx::ModelProto& m, const std::string& moved, const std::string& before) {
  std::vector<onnx::NodeProto> kept, taken;
  for (const onnx::NodeProto& n : m.graph().node())
    (n.name().starts_with(moved) ? taken : kept).push_back(n);
  onnx::GraphProto& g = *m.mutable_graph();
  g.clear_node();
  bool placed = false;
  for (const onnx::NodeProto& n : kept) {
    if (!placed && n.name().starts_with(before)) {
      for (const onnx::NodeProto& t : taken) *g.add_node() = t;
      placed = true;
    }
    *g.add_node() = n;
  }
  ASSERT_TRUE(placed && !taken.empty()) << moved << " before " << before;
}

// An Add is commutative: Add(shortcut, body) is the block Add(body, shortcut) is. Until
// 2026-12-06 the import took the Add's input 0 as the body, so that our own export with its
// Adds' inputs swapped was refused (its metadata names the other branch the body) and a graph
// without metadata imported with the branches' names swapped. Now our metadata names them,
// whatever the Adds' and the nodes' order, to the model file's own bytes; a graph without it
// calls the branch whose nodes come first the body (as torch and our export write them), the
// same model for either Add order. Logits are the original's bit for bit (a + b is b + a).
TEST(Onnx, AResidualAddImportsInEitherOrder) {
  const std::vector<std::pair<ModelSpec, std::vector<std::pair<std::string, std::string>>>> cases =
      {{preset_spec("resnet"), {{"5.shortcut.", "5.body."}, {"6.shortcut.", "6.body."}}},
       // Nested blocks: the outer block's shortcut (a block itself) moved before its body, and
       // that block's shortcut before its body.
       {nested_at_start_spec(),
        {{"1.shortcut.", "1.body."}, {"1.shortcut.0.shortcut.", "1.shortcut.0.body."}}}};
  for (const auto& [spec, moves] : cases) {
    SCOPED_TRACE(spec.name);
    Sequential<float> model = random_model(spec, 31);
    Rng rng(6);
    Tensor<float> images(Shape{8, spec.input[0], spec.input[1], spec.input[2]});
    for (float& v : images) v = static_cast<float>(rng.uniform());
    const std::vector<float> expected = cnn_logits(model, images);
    std::vector<std::string> names;
    for (int64_t c = 0; c < output_classes(spec); ++c) names.push_back(std::string(1, 'a' + c));
    const fs::path original = work_dir() / "either.safetensors";
    save_model(original.string(), model, spec, names);
    const std::string exported = (work_dir() / "either.onnx").string();
    save_onnx(exported, model, spec, names);
    int variant = 0;
    const auto edited = [&](bool metadata, bool swap, bool move) {
      onnx::ModelProto m = parse(exported);
      if (!metadata) m.clear_metadata_props();
      if (swap) swap_add_inputs(m);
      if (move)
        for (const auto& [moved, before] : moves) move_nodes_before(m, moved, before);
      const std::string path = write_variant(m, "either", variant);
      EXPECT_TRUE(onnx_accepts(path));
      return path;
    };
    // With our metadata: the model file itself, whatever the order.
    for (const auto& [swap, move] : {std::pair{true, false}, {false, true}, {true, true}}) {
      SCOPED_TRACE(std::string(swap ? "Adds swapped" : "") + (move ? " shortcuts first" : ""));
      try {
        ModelFile back = load_onnx(edited(true, swap, move));
        const fs::path again = work_dir() / "either_back.safetensors";
        save_model(again.string(), back.model, back.spec, back.class_names);
        EXPECT_TRUE(read_bytes(original) == read_bytes(again)) << "another model file";
      } catch (const Error& e) {
        ADD_FAILURE() << e.what();
      }
    }
    // Without it: either Add order is the same model; the nodes' order names the branches.
    const auto graph_alone = [&](bool swap, bool move) {
      ModelFile back = load_onnx(edited(false, swap, move));
      back.spec.name = spec.name;
      EXPECT_EQ(cnn_logits(back.model, images), expected);
      return to_json(back.spec);
    };
    const std::string plain = graph_alone(false, false);
    EXPECT_EQ(graph_alone(true, false), plain);
    EXPECT_EQ(graph_alone(true, true), graph_alone(false, true));
  }
  // torch.onnx.export's ResNet with its Adds swapped: the same model, PyTorch's logits.
  onnx::ModelProto m = parse(golden("torch_resnet.onnx"));
  swap_add_inputs(m);
  const std::string path = (work_dir() / "torch_resnet_swapped.onnx").string();
  std::string bytes;
  ASSERT_TRUE(m.SerializeToString(&bytes));
  write_bytes(path, bytes);
  ModelFile back = load_onnx(path), plain = load_onnx(golden("torch_resnet.onnx"));
  back.spec.name = plain.spec.name;
  EXPECT_EQ(to_json(back.spec), to_json(plain.spec));
  const SafeTensorsFile outputs = SafeTensorsFile::load(golden("torch_resnet_outputs.safetensors"));
  const Tensor<float> logits = outputs.tensor<float>("logits");
  const EvalResult r = evaluate(back.model, back.spec, sample_test_set(), 256, true);
  close_to_golden("torch_resnet.onnx, Adds swapped",
                  TensorView<const float>(r.outputs.data(), logits.shape()), logits);
}

TEST(Onnx, BlocksNestedAtABranchStartImportFromTheGraphAlone) {
  // Found 2026-12-05: such a model's own export was refused ("value '0.out' feeds 4 nodes").
  const ModelSpec spec = nested_at_start_spec();
  Sequential<float> model = random_model(spec, 23);
  Rng rng(5);
  Tensor<float> images(Shape{16, 1, 6, 6});
  for (float& v : images) v = static_cast<float>(rng.uniform());
  const std::vector<float> expected = cnn_logits(model, images);
  const std::string path = (work_dir() / "nested_at_start.onnx").string();
  save_onnx(path, model, spec, {});
  onnx::ModelProto m = parse(path);
  m.clear_metadata_props();  // the graph alone, as from torch.onnx.export
  std::string bytes;
  ASSERT_TRUE(m.SerializeToString(&bytes));
  write_bytes(path, bytes);
  ModelFile back = load_onnx(path);
  ModelSpec named = back.spec;
  named.name = spec.name;
  EXPECT_EQ(to_json(named), to_json(spec));
  const std::vector<float> logits = cnn_logits(back.model, images);
  EXPECT_EQ(logits, expected);
  // Three forks that are not two branches: a and b meet before the Add, b and c meet before it,
  // a and c only there.
  onnx::ModelProto tangled = m;
  onnx::GraphProto& g = *tangled.mutable_graph();
  g.clear_node();
  g.clear_initializer();
  *g.add_node() = make_node("Relu", "a", {"input"});
  *g.add_node() = make_node("Sigmoid", "b", {"input"});
  *g.add_node() = make_node("Tanh", "c", {"input"});
  *g.add_node() = make_node("Add", "ab", {"a.out", "b.out"});
  *g.add_node() = make_node("Add", "bc", {"b.out", "c.out"});
  *g.add_node() = make_node("Add", "logits", {"ab.out", "bc.out"});
  g.mutable_node(g.node_size() - 1)->set_output(0, "logits");
  ASSERT_TRUE(tangled.SerializeToString(&bytes));
  write_bytes(path, bytes);
  expect_import_refused(path,
                        "value 'input' feeds 3 nodes that are not two branches joined by an Add");
}

TEST(Onnx, LongChainsImportWithoutQuadraticWork) {
  // Found 2026-12-05: each residual block searched the whole rest of the graph for its Add,
  // and the shape computations were folded one node per pass over the graph: 4,000 blocks took
  // 15 s, a chain of 10,000 Casts 18 s, and these would take tens of minutes (ctest's TIMEOUT
  // of 300 s for these tests, tests/CMakeLists.txt, is the guard; today they take a second).
  const std::string good = (work_dir() / "chain_base.onnx").string();
  Sequential<float> model = random_model(preset_spec("lenet5"), 2);
  save_onnx(good, model, preset_spec("lenet5"), {});
  onnx::ModelProto m = parse(good);
  m.clear_metadata_props();
  onnx::GraphProto& g = *m.mutable_graph();
  g.clear_node();
  g.clear_initializer();
  // Names built by append: GCC 12's -Wrestrict misfires on "r" + std::to_string(k) here.
  const auto id = [](const char* prefix, int k) {
    std::string name = prefix;
    name += std::to_string(k);
    return name;
  };
  constexpr int kBlocks = 50000;
  std::string x = "input";
  for (int k = 0; k < kBlocks; ++k) {
    *g.add_node() = make_node("Relu", id("r", k), {x});
    *g.add_node() = make_node("Add", id("a", k), {id("r", k) + ".out", x});
    x = id("a", k) + ".out";
  }
  g.mutable_node(g.node_size() - 1)->set_output(0, "logits");
  const std::string path = (work_dir() / "chain.onnx").string();
  std::string bytes;
  ASSERT_TRUE(m.SerializeToString(&bytes));
  write_bytes(path, bytes);
  EXPECT_EQ(load_onnx(path).model.size(), size_t{kBlocks});
  // 100,000 shape operations computing a Reshape's target (refused: not a flatten, but only
  // after they were all folded).
  g.clear_node();
  std::string target = "shape";
  *g.add_node() = make_node("Shape", "shape", {"input"});
  target = "shape.out";
  for (int k = 0; k < 100000; ++k) {
    *g.add_node() = make_node("Cast", id("c", k), {target});
    set_int_attribute(*g.mutable_node(g.node_size() - 1), "to", onnx::TensorProto::INT64);
    target = id("c", k) + ".out";
  }
  *g.add_node() = make_node("Reshape", "logits", {"input", target});
  g.mutable_node(g.node_size() - 1)->set_output(0, "logits");
  ASSERT_TRUE(m.SerializeToString(&bytes));
  write_bytes(path, bytes);
  expect_import_refused(path, "only a reshape that flattens each sample is supported");
  // The same chain of Casts as the batch size of a Concat target: followed in a loop, since a
  // recursion 100,000 deep would overflow the stack.
  *g.mutable_node(g.node_size() - 1) = int64_constant("minus_one", {-1});
  *g.add_node() = make_node("Concat", "target", {target, "minus_one.out"});
  set_int_attribute(*g.mutable_node(g.node_size() - 1), "axis", 0);
  *g.add_node() = make_node("Reshape", "logits", {"input", "target.out"});
  g.mutable_node(g.node_size() - 1)->set_output(0, "logits");
  ASSERT_TRUE(m.SerializeToString(&bytes));
  write_bytes(path, bytes);
  expect_import_refused(path, "only a reshape that flattens each sample is supported");
}

/// Runs the CLI; exit code and stderr.
std::pair<int, std::string> cnn_run(const std::string& args) {
  const fs::path err = work_dir() / "stderr.txt";
  const int status =
      std::system((std::string(CNN_CLI) + " " + args + " >/dev/null 2>" + err.string()).c_str());
  return {WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status), read_bytes(err)};
}

// Found 2026-12-08 (a probe): a graph ending in one logit without a Sigmoid (torch's
// Linear(.., 1) for BCEWithLogitsLoss) imported as cross-entropy of one class, and predict
// gave that class 100%. eval and predict refuse a model whose output is not class scores.
TEST(Onnx, EvalAndPredictRefuseAModelWhoseOutputIsNotClassScores) {
  onnx::ModelProto m = seed_graph_without_metadata("one_logit");
  onnx::GraphProto& g = *m.mutable_graph();
  ASSERT_EQ(g.node(g.node_size() - 1).op_type(), "Sigmoid");
  g.mutable_node()->RemoveLast();
  g.mutable_node(g.node_size() - 1)->set_output(0, "logits");
  int variant = 0;
  const std::string one_logit = write_variant(m, "one_logit", variant);
  for (const std::string& command :
       {"predict " + one_logit + " x.png", "eval " + one_logit + " --data sample"}) {
    SCOPED_TRACE(command);
    const auto [code, err] = cnn_run(command);
    EXPECT_EQ(code, 1);
    EXPECT_EQ(err, "cnn: " + one_logit +
                       ": the model outputs (1, 1) per image, not class scores (expected (1, "
                       "classes) logits of 2 or more classes, or one Sigmoid output)\n");
  }
}

TEST(Onnx, ConvertCommandBothWays) {
  const fs::path a = work_dir() / "conv_a.safetensors", b = work_dir() / "conv_b.safetensors";
  const fs::path o = work_dir() / "conv.onnx";
  Sequential<float> model = random_model(preset_spec("resnet"), 4);
  save_model(a.string(), model, preset_spec("resnet"),
             {"p", "q", "r", "s", "t", "u", "v", "w", "x", "y"});
  EXPECT_EQ(cnn_run("convert " + a.string() + " " + o.string() + " --opset 15").first, 0);
  EXPECT_EQ(parse(o.string()).opset_import(0).version(), 15);
  EXPECT_EQ(cnn_run("convert " + o.string() + " " + b.string()).first, 0);
  EXPECT_TRUE(read_bytes(a) == read_bytes(b));
  Json info = Json::parse(cnn_stdout("info " + o.string() + " --json"));
  EXPECT_EQ(info.at("parameters").get<int64_t>(), 308074);
  fs::create_symlink("/proc/self/mem", work_dir() / "unreadable.onnx");
  for (const auto& [args, fragment] : std::vector<std::pair<std::string, std::string>>{
           {"convert " + a.string() + " " + b.string(),
            "expected one .onnx file and one model file"},
           {"convert " + a.string() + " " + o.string() + " --opset 12", "--opset"},
           {"convert " + o.string() + " " + b.string() + " --fold-batchnorm",
            "only for a conversion to ONNX"},
           {"convert " + a.string(), "expected IN and OUT"},
           // A read that fails (found 2026-12-07: "basic_filebuf::underflow error reading the
           // file: Input/output error", no file named): "cannot read" or, where
           // /proc/self/mem is closed, "cannot open".
           {"info " + (work_dir() / "unreadable.onnx").string(),
            (work_dir() / "unreadable.onnx").string() + ": cannot "}}) {
    const auto [code, err] = cnn_run(args);
    EXPECT_NE(code, 0) << args;
    EXPECT_NE(err.find(fragment), std::string::npos) << args << ": " << err;
    EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << err;
  }
}

// ONNX's whole-model checker (onnx::checker::check_model) runs before the import reads the
// graph. Each file below breaks a rule of the format that the import's own checks did not
// look at, and each imported until 2026-12-07 (an unread initializer is not read at all, the
// output's declared type and the IR version were not looked at, two metadata entries of one key
// gave the last): now each is refused in one line, "PATH: not a valid ONNX model: " and the
// checker's message.
TEST(Onnx, GraphLevelDefectsAreRefusedByOnnxsChecker) {
  const std::string good = (work_dir() / "checked.onnx").string();
  Sequential<float> model = random_model(preset_spec("lenet5"), 2);
  save_onnx(good, model, preset_spec("lenet5"), {});
  const onnx::ModelProto base = parse(good);
  ASSERT_NO_THROW(load_onnx(good));
  // An initializer no node reads, named `name`, of type `type`.
  const auto unread = [](onnx::ModelProto& m, const std::string& name, int type) {
    onnx::TensorProto* t = m.mutable_graph()->add_initializer();
    if (!name.empty()) t->set_name(name);
    if (type) t->set_data_type(type);
    t->add_dims(1);
    return t;
  };
  const std::vector<std::tuple<std::string, std::function<void(onnx::ModelProto&)>, std::string>>
      cases = {
          {"no_ir_version", [](auto& m) { m.clear_ir_version(); },
           "The model does not have an ir_version set properly."},
          {"future_ir_version", [](auto& m) { m.set_ir_version(99); },
           "Your model ir_version is higher than the checker's."},
          // IR 3 lists every initializer among the graph inputs.
          {"ir3_initializers_not_inputs", [](auto& m) { m.set_ir_version(3); },
           "0.weight in initializer but not in graph input"},
          {"metadata_key_twice",
           [](auto& m) {
             for (const char* names : {R"(["x","y"])", R"(["p","q"])"}) {
               auto* p = m.add_metadata_props();
               p->set_key("cnn.class_names");
               p->set_value(names);
             }
           },
           "Your model has duplicate keys in metadata_props."},
          {"unnamed_graph", [](auto& m) { m.mutable_graph()->clear_name(); },
           "Field 'name' of 'graph' is required to be non-empty."},
          {"output_without_type",
           [](auto& m) { m.mutable_graph()->mutable_output(0)->clear_type(); },
           "Field 'type' of 'value_info' is required but missing."},
          {"output_without_element_type",
           [](auto& m) {
             m.mutable_graph()
                 ->mutable_output(0)
                 ->mutable_type()
                 ->mutable_tensor_type()
                 ->clear_elem_type();
           },
           "Field 'elem_type' of 'type' is required but missing."},
          {"initializer_in_two_fields",
           [](auto& m) { m.mutable_graph()->mutable_initializer(0)->add_float_data(1.0f); },
           "TensorProto (tensor name: 0.weight) should contain one and only one value field."},
          {"unread_without_type",
           [&](auto& m) { unread(m, "spare", 0)->set_raw_data(std::string(4, '\0')); },
           "Field 'data_type' of 'tensor' is required but missing."},
          {"unread_without_name", [&](auto& m) { unread(m, "", 1)->add_float_data(1.0f); },
           "Field 'name' of 'init' is required but missing."},
          {"unread_in_the_wrong_field", [&](auto& m) { unread(m, "spare", 1)->add_int64_data(3); },
           "values of data_type '1' should be stored in field 'float_data' instead of "
           "'int64_data'"},
          {"unread_string_as_raw_data",
           [&](auto& m) { unread(m, "spare", onnx::TensorProto::STRING)->set_raw_data("ab"); },
           "STRING data (tensor name: spare) should not be stored in raw_data field"},
          {"sparse_initializer_of_a_used_name",
           [](auto& m) {
             m.mutable_graph()->add_sparse_initializer()->mutable_values()->set_name("0.weight");
           },
           "0.weight sparse initializer name is not unique across initializers and "
           "sparse_initializers"},
      };
  for (const auto& [name, change, fragment] : cases) {
    SCOPED_TRACE(name);
    onnx::ModelProto m = base;
    change(m);
    std::string bytes;
    ASSERT_TRUE(m.SerializeToString(&bytes));
    const std::string path = (work_dir() / (name + ".onnx")).string();
    write_bytes(path, bytes);
    try {
      load_onnx(path);
      ADD_FAILURE() << name << " was accepted";
    } catch (const Error& e) {
      const std::string message = e.what();
      EXPECT_EQ(message, path + ": not a valid ONNX model: " + fragment);
    }
  }
  // A tensor kept in an external file is refused before the checker, read or not: the checker
  // looks for the file (relative to the working directory) and takes it where it exists, and
  // the import does not read an unread initializer.
  onnx::ModelProto external = base;
  onnx::TensorProto* spare = unread(external, "spare", 1);
  spare->set_data_location(onnx::TensorProto::EXTERNAL);
  auto* location = spare->add_external_data();
  location->set_key("location");
  location->set_value(good);  // a file that exists
  std::string external_bytes;
  ASSERT_TRUE(external.SerializeToString(&external_bytes));
  const std::string external_path = (work_dir() / "unread_external.onnx").string();
  write_bytes(external_path, external_bytes);
  expect_import_refused(external_path, external_path +
                                           ": initializer 'spare' keeps its data in an external "
                                           "file (not supported");
  // One line from the command line too.
  const std::string twice = (work_dir() / "metadata_key_twice.onnx").string();
  const auto [code, err] = cnn_run("eval " + twice + " --data sample");
  EXPECT_EQ(code, 1) << err;
  EXPECT_NE(err.find(twice + ": not a valid ONNX model: Your model has duplicate keys in "
                             "metadata_props."),
            std::string::npos)
      << err;
  EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << err;
  // Where the import refuses a file the checker refuses too, the import's line says more (it
  // names the node): the checker's "Nodes in a graph must be topologically sorted, however
  // input '0.out' of node: name: 1 OpType: Relu is not output of any previous nodes."
  onnx::ModelProto m = base;
  m.mutable_graph()->mutable_node()->SwapElements(0, 1);
  std::string bytes;
  ASSERT_TRUE(m.SerializeToString(&bytes));
  const std::string unsorted = (work_dir() / "unsorted.onnx").string();
  write_bytes(unsorted, bytes);
  expect_import_refused(unsorted, unsorted +
                                      ": node '1' (Relu): input '0.out' is not a graph input, an "
                                      "initializer or an earlier node's output");
}

TEST(Onnx, BadFilesAreRefusedInOneLine) {
  const std::string good = (work_dir() / "good.onnx").string();
  Sequential<float> model = random_model(preset_spec("lenet5"), 2);
  save_onnx(good, model, preset_spec("lenet5"), {});
  const onnx::ModelProto base = parse(good);
  const auto mutated = [&](const std::function<void(onnx::ModelProto&)>& change) {
    onnx::ModelProto m = base;
    change(m);
    std::string bytes;
    m.SerializeToString(&bytes);
    return bytes;
  };
  const auto initializer = [](onnx::ModelProto& m, const std::string& name) {
    for (auto& t : *m.mutable_graph()->mutable_initializer())
      if (t.name() == name) return &t;
    throw std::runtime_error("no initializer " + name);
  };
  const std::string good_bytes = read_bytes(good);
  // Residual blocks nested `depth` deep: relu_k(x_k) is block k's body and holds block k + 1.
  const auto nested = [&](int depth) {
    onnx::ModelProto m = base;
    m.clear_metadata_props();
    onnx::GraphProto& g = *m.mutable_graph();
    g.clear_node();
    g.clear_initializer();
    std::string x = "input";
    for (int k = 0; k < depth; ++k) {
      *g.add_node() = make_node("Relu", "relu" + std::to_string(k), {x});
      x = "relu" + std::to_string(k) + ".out";
    }
    for (int k = depth - 1; k >= 0; --k) {
      const std::string in = k == 0 ? "input" : "relu" + std::to_string(k - 1) + ".out";
      *g.add_node() = make_node("Add", "add" + std::to_string(k), {x, in});
      x = "add" + std::to_string(k) + ".out";
    }
    g.mutable_node(g.node_size() - 1)->set_output(0, "logits");
    std::string bytes;
    m.SerializeToString(&bytes);
    return bytes;
  };
  // The file with metadata `key` set to `value` (added if it has none).
  const auto with_metadata = [&](const std::string& key, const std::string& value) {
    return mutated([&](onnx::ModelProto& m) {
      for (auto& p : *m.mutable_metadata_props()) {
        if (p.key() == key) {
          p.set_value(value);
          return;
        }
      }
      auto* p = m.add_metadata_props();
      p->set_key(key);
      p->set_value(value);
    });
  };
  const std::string deep_json = std::string(100000, '[') + std::string(100000, ']');
  const std::vector<std::tuple<std::string, std::string, std::string>> cases = {
      {"empty", "", "empty file"},
      {"text", "this is not an ONNX model\n", "not an ONNX model"},
      {"truncated", good_bytes.substr(0, good_bytes.size() / 2), "not an ONNX model"},
      {"opset9", mutated([](auto& m) { m.mutable_opset_import(0)->set_version(9); }),
       "opset 9 is outside the supported 11 to 17"},
      {"opset18", mutated([](auto& m) { m.mutable_opset_import(0)->set_version(18); }),
       "opset 18 is outside the supported 11 to 17"},
      {"unsupported_op",
       mutated([](auto& m) { m.mutable_graph()->mutable_node(1)->set_op_type("Elu"); }),
       "node '1' (Elu): op type Elu is not supported"},
      {"dangling",
       mutated([](auto& m) { m.mutable_graph()->mutable_node(3)->set_input(0, "nowhere"); }),
       "input 'nowhere' is not a graph input, an initializer or an earlier node's output"},
      {"wrong_shape", mutated([&](auto& m) {
         onnx::TensorProto* t = initializer(m, "3.bias");
         t->set_dims(0, 15);
         t->set_raw_data(t->raw_data().substr(0, 15 * sizeof(float)));
       }),
       "initializer '3.bias' has shape (15,), 3.bias expects (16,)"},
      {"wrong_size", mutated([&](auto& m) { initializer(m, "0.bias")->set_dims(0, 7); }),
       "initializer '0.bias': 24 bytes of data for 7 floats"},
      {"external", mutated([&](auto& m) {
         onnx::TensorProto* t = initializer(m, "3.weight");
         t->clear_raw_data();
         t->set_data_location(onnx::TensorProto::EXTERNAL);
         auto* e = t->add_external_data();
         e->set_key("location");
         e->set_value("weights.bin");
       }),
       "initializer '3.weight' keeps its data in an external file"},
      {"overflow", mutated([&](auto& m) {
         onnx::TensorProto* t = initializer(m, "0.weight");
         t->set_dims(0, int64_t{1} << 40);
         t->set_dims(1, int64_t{1} << 40);
       }),
       "initializer '0.weight': dimensions overflow or are negative"},
      {"input_overflow", mutated([](auto& m) {
         m.mutable_graph()
             ->mutable_input(0)
             ->mutable_type()
             ->mutable_tensor_type()
             ->mutable_shape()
             ->mutable_dim(2)
             ->set_dim_value(int64_t{1} << 40);
       }),
       "input 'input' dimension 2 is not a size from 1 to 2^24"},
      {"nan_weight", mutated([&](auto& m) {
         onnx::TensorProto* t = initializer(m, "0.bias");
         std::string raw = t->raw_data();
         const float nan = std::nanf("");
         std::memcpy(raw.data(), &nan, sizeof nan);
         t->set_raw_data(raw);
       }),
       "initializer '0.bias' holds a non-finite value"},
      {"deep", nested(100), "residual blocks nested deeper than 64 levels"},
      // Found 2026-12-05: metadata nested this deep exhausted the stack (SIGSEGV).
      {"deep_architecture", with_metadata("cnn.architecture", deep_json),
       "cnn.architecture: not valid JSON: arrays and objects nested deeper than 256 levels"},
      // Found 2026-12-06: the metadata's model was built (allocated) before it was compared
      // with the graph: a claim of 1.26 TB of parameters ended in "out of memory".
      {"huge_architecture", with_metadata("cnn.architecture", R"({"name": "big",
         "input": [3, 1024, 1024], "layers": [{"type": "Flatten"},
         {"type": "Linear", "out_features": 100000}, {"type": "Linear", "out_features": 10}]})"),
       "the cnn.architecture metadata does not describe the graph: 3 layers in it, 12 in the "
       "graph"},
      {"deep_class_names", with_metadata("cnn.class_names", deep_json),
       "cnn.class_names metadata is not a JSON list of strings: arrays and objects nested "
       "deeper than 256 levels"},
      {"deep_counters", with_metadata("cnn.counters", deep_json),
       "cnn.counters metadata is not JSON: arrays and objects nested deeper than 256 levels"},
      {"grouped", mutated([](auto& m) {
         for (auto& a : *m.mutable_graph()->mutable_node(0)->mutable_attribute())
           if (a.name() == "group") a.set_i(2);
       }),
       "node '0' (Conv): group 2 (only 1 is supported)"},
  };
  for (const auto& [name, bytes, fragment] : cases) {
    SCOPED_TRACE(name);
    const std::string path = (work_dir() / (name + ".onnx")).string();
    write_bytes(path, bytes);
    try {
      load_onnx(path);
      ADD_FAILURE() << name << " was accepted";
    } catch (const Error& e) {
      const std::string message = e.what();
      EXPECT_EQ(message.rfind(path + ": ", 0), 0u) << message;
      EXPECT_NE(message.find(fragment), std::string::npos) << message;
      EXPECT_EQ(message.find('\n'), std::string::npos) << message;
    }
    const auto [code, err] = cnn_run("eval " + path + " --data sample");
    EXPECT_EQ(code, 1) << err;
    EXPECT_NE(err.find(fragment), std::string::npos) << err;
    EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << err;
  }
  EXPECT_THROW(load_onnx((work_dir() / "missing.onnx").string()), Error);
  // A directory gave libstdc++'s "basic_filebuf::underflow error reading the file", no path.
  const fs::path folder = work_dir() / "folder.onnx";
  fs::create_directories(folder);
  const auto [folder_code, folder_err] = cnn_run("eval " + folder.string() + " --data sample");
  EXPECT_EQ(folder_code, 1) << folder_err;
  EXPECT_NE(folder_err.find("folder.onnx: expected an ONNX model, got a directory"),
            std::string::npos)
      << folder_err;
  // Nesting within the limit is parsed as nested blocks.
  const std::string three = (work_dir() / "nested3.onnx").string();
  write_bytes(three, nested(3));
  const std::string json = to_json(load_onnx(three).spec);
  int blocks = 0;
  for (size_t at = json.find("Residual"); at != std::string::npos;
       at = json.find("Residual", at + 1))
    ++blocks;
  EXPECT_EQ(blocks, 3) << json;
}

}  // namespace
}  // namespace cnn

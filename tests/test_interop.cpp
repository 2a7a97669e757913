// Interop with PyTorch through committed golden files (tools/torch_interop.py export): a
// LeNet-5 trained and saved by PyTorch as safetensors is evaluated by cnn, through the library
// and through `cnn eval`, with PyTorch's logits to 1e-5; and cnn's own files use the
// state_dict names and layouts of the equivalent torch.nn.Sequential.

#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "cli_util.hpp"
#include "cnn/cnn.hpp"
#include "golden_util.hpp"

namespace cnn {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;
using testing::close_to_golden;
using testing::cnn_stdout;
using testing::golden;
using testing::sample_test_set;

// PyTorch-trained models written by tools/torch_interop.py export: LeNet-5, and the resnet
// preset after three epochs of training-mode BatchNorm (real running statistics and
// num_batches_tracked as I64), evaluated by PyTorch in evaluation mode.
const std::vector<std::string> kTorchTrained = {"lenet5", "resnet"};

TEST(Interop, PyTorchModelThroughTheLibraryGivesPyTorchsLogits) {
  for (const std::string& preset : kTorchTrained) {
    SCOPED_TRACE(preset);
    ModelFile file = load_model(golden("torch_" + preset + ".safetensors"));
    EXPECT_EQ(file.class_names.at(9), "Ankle boot");
    const SafeTensorsFile expected =
        SafeTensorsFile::load(golden("torch_" + preset + "_outputs.safetensors"));
    const EvalResult r = evaluate(file.model, file.spec, sample_test_set(), 256, true);
    const Tensor<float> logits = expected.tensor<float>("logits");
    close_to_golden("torch " + preset + " logits (library)",
                    TensorView<const float>(r.outputs.data(), logits.shape()), logits);
    EXPECT_EQ(std::llround(r.accuracy * 1000),
              std::llround(expected.tensor<float>("accuracy")[0] * 1000));
    EXPECT_NEAR(r.loss, expected.tensor<float>("loss")[0], 1e-5 * std::abs(r.loss));
  }
}

TEST(Interop, PyTorchResnetKeepsItsRunningStatistics) {
  // The import is only meaningful if the running statistics are PyTorch's trained ones, not
  // the (0, 1) a fresh BatchNorm starts with.
  ModelFile file = load_model(golden("torch_resnet.safetensors"));
  const SafeTensorsFile stored = SafeTensorsFile::load(golden("torch_resnet.safetensors"));
  int running_vars = 0;
  for (const auto& buffer : file.model.named_buffers()) {
    const auto& entry = stored.entry(buffer.name);
    EXPECT_EQ(entry.shape, buffer.value.shape()) << buffer.name;
    if (buffer.name.ends_with("running_var")) {
      ++running_vars;
      const Tensor<float> golden_var = stored.tensor<float>(buffer.name);
      double furthest_from_one = 0;
      for (int64_t i = 0; i < golden_var.numel(); ++i) {
        EXPECT_EQ(buffer.value[i], golden_var[i]) << buffer.name << "[" << i << "]";
        furthest_from_one = std::max(furthest_from_one, std::abs(double(golden_var[i]) - 1));
      }
      EXPECT_GT(furthest_from_one, 0.05) << buffer.name << " looks untrained";
    }
  }
  EXPECT_EQ(running_vars, 9);
}

TEST(Interop, CnnEvalOnAPyTorchFileGivesPyTorchsLogits) {
  for (const std::string& preset : kTorchTrained) {
    const SafeTensorsFile expected =
        SafeTensorsFile::load(golden("torch_" + preset + "_outputs.safetensors"));
    const Tensor<float> logits = expected.tensor<float>("logits");
    for (const std::string& args :
         {"eval " + golden("torch_" + preset + ".safetensors") + " --data sample --json --logits",
          "eval " + golden("torch_" + preset + "_plain.safetensors") + " --model " + preset +
              " --data sample --json --logits"}) {
      SCOPED_TRACE(args);
      const Json j = Json::parse(cnn_stdout(args));
      std::vector<float> ours;
      for (const Json& row : j.at("logits")) {
        for (const Json& v : row) ours.push_back(v.get<float>());
      }
      ASSERT_EQ(static_cast<int64_t>(ours.size()), logits.numel());
      close_to_golden("torch " + preset + " logits (cnn eval)",
                      TensorView<const float>(ours.data(), logits.shape()), logits);
      EXPECT_EQ(std::llround(j.at("accuracy").get<double>() * 1000),
                std::llround(expected.tensor<float>("accuracy")[0] * 1000));
    }
  }
}

TEST(Interop, PlainStateDictNeedsAnArchitecture) {
  EXPECT_THROW(load_model(golden("torch_lenet5_plain.safetensors")), Error);
  EXPECT_NO_THROW(load_model(golden("torch_lenet5_plain.safetensors"), preset_spec("lenet5")));
}

TEST(Interop, OurFilesUseTheStateDictNamesAndLayoutsOfTorch) {
  Sequential<float> model = build_model(preset_spec("convnet"));
  Rng rng(2);
  model.init_parameters(rng);
  const std::string path =
      (fs::temp_directory_path() / ("cnn_layout_" + std::to_string(::getpid()))).string();
  save_model(path, model, preset_spec("convnet"), {});
  const SafeTensorsFile file = SafeTensorsFile::load(path);
  fs::remove(path);
  EXPECT_EQ(file.names(), (std::vector<std::string>{"0.weight", "0.bias", "3.weight", "3.bias",
                                                    "7.weight", "7.bias", "9.weight", "9.bias"}));
  EXPECT_EQ(file.entry("0.weight").shape, (Shape{32, 1, 3, 3}));  // (out, in, KH, KW)
  EXPECT_EQ(file.entry("3.weight").shape, (Shape{64, 32, 3, 3}));
  EXPECT_EQ(file.entry("7.weight").shape, (Shape{128, 3136}));  // Linear: (out, in)
  EXPECT_EQ(file.entry("9.bias").shape, (Shape{10}));
  EXPECT_EQ(file.metadata().at("format_version"), "1");
  EXPECT_EQ(parse_model_spec(file.metadata().at("architecture"), "architecture").layers.size(),
            10u);
}

}  // namespace
}  // namespace cnn

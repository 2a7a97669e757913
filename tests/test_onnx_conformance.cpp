// Our ONNX import and ops held to ONNX's own per-operator conformance tests (Debian's
// libonnx-testdata: a model of one node, its inputs and the expected output, as every ONNX
// runtime is tested). Each test the layers can express must give ONNX's output; each one they
// cannot (asymmetric or automatic padding, ceil_mode, dilations, 1-d and 3-d pooling...) must be
// refused in one line that says why, never computed wrongly.
//
// The harness turns the node's weight inputs (inputs 1...) into initializers, as an exported
// model has them. Two more rewrites, each keeping the test's meaning: an elementwise op's
// (C, H, W) input gets a batch of one in front, and a model whose opset is below 11 is read at
// opset 11 when its op's schema is the same there (GlobalAveragePool has one version, 1).

#include <gtest/gtest.h>
#include <onnx/defs/schema.h>
#include <onnx/onnx_pb.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>

#include "cnn/cnn.hpp"
#include "cnn/onnx.hpp"
#include "golden_util.hpp"

namespace cnn {
namespace {

namespace fs = std::filesystem;
using testing::close_to_golden;

const fs::path kNodeTests = "/usr/share/libonnx-testdata/data/node";

std::string read_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

onnx::TensorProto read_tensor(const fs::path& path) {
  onnx::TensorProto t;
  EXPECT_TRUE(t.ParseFromString(read_bytes(path))) << path;
  return t;
}

std::vector<float> floats_of(const onnx::TensorProto& t) {
  if (t.has_raw_data()) {
    std::vector<float> v(t.raw_data().size() / sizeof(float));
    std::memcpy(v.data(), t.raw_data().data(), v.size() * sizeof(float));
    return v;
  }
  return {t.float_data().begin(), t.float_data().end()};
}

/// The test's model with inputs 1... as initializers, written next to the other temporary
/// files; the input tensor (given a batch of one when `add_batch`) in `input`.
std::string prepared_model(const std::string& test, bool add_batch, onnx::TensorProto& input) {
  const fs::path dir = kNodeTests / test;
  onnx::ModelProto m;
  EXPECT_TRUE(m.ParseFromString(read_bytes(dir / "model.onnx")));
  onnx::GraphProto& g = *m.mutable_graph();
  for (int k = 1; k < g.input_size(); ++k) {
    onnx::TensorProto t =
        read_tensor(dir / "test_data_set_0" / ("input_" + std::to_string(k) + ".pb"));
    t.set_name(g.input(k).name());
    *g.add_initializer() = t;
  }
  while (g.input_size() > 1) g.mutable_input()->RemoveLast();
  input = read_tensor(dir / "test_data_set_0" / "input_0.pb");
  if (add_batch) {
    // The input's and the output's shapes get the batch of one (ONNX's checker requires a
    // graph output's shape: clearing it made files the import now refuses).
    for (auto* value : {g.mutable_input(0), g.mutable_output(0)}) {
      auto* shape = value->mutable_type()->mutable_tensor_type()->mutable_shape();
      shape->add_dim();
      for (int d = shape->dim_size() - 1; d > 0; --d) *shape->mutable_dim(d) = shape->dim(d - 1);
      shape->mutable_dim(0)->clear_dim_param();
      shape->mutable_dim(0)->set_dim_value(1);
    }
    input.add_dims(1);
    for (int d = input.dims_size() - 1; d > 0; --d) input.set_dims(d, input.dims(d - 1));
    input.set_dims(0, 1);
  }
  for (auto& opset : *m.mutable_opset_import()) {
    if (!opset.domain().empty() || opset.version() >= 11) continue;
    const std::string& op = g.node(0).op_type();
    const auto* old_schema = onnx::OpSchemaRegistry::Schema(op, static_cast<int>(opset.version()));
    const auto* at_11 = onnx::OpSchemaRegistry::Schema(op, 11);
    if (old_schema && at_11 && old_schema->SinceVersion() == at_11->SinceVersion())
      opset.set_version(11);
  }
  const fs::path out =
      fs::temp_directory_path() / ("cnn_onnx_conformance_" + std::to_string(::getpid()) + ".onnx");
  std::string bytes;
  EXPECT_TRUE(m.SerializeToString(&bytes));
  std::ofstream(out, std::ios::binary) << bytes;
  return out.string();
}

class OnnxConformance : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!fs::exists(kNodeTests))
      GTEST_SKIP() << "libonnx-testdata is not installed (scripts/setup.sh --test installs it)";
  }
};

TEST_F(OnnxConformance, OurLayersGiveOnnxsOutputs) {
  const std::vector<std::string> elementwise = {
      "test_relu",      "test_sigmoid",           "test_tanh",
      "test_leakyrelu", "test_leakyrelu_default", "test_clip_default_min"};
  const std::vector<std::string> tests = {
      "test_conv_with_strides_padding",
      "test_conv_with_strides_no_padding",
      "test_conv_with_strides_and_asymmetric_padding",  // pads (1, 0): other in H than in W
      "test_maxpool_2d_default",
      "test_maxpool_2d_strides",
      "test_maxpool_2d_precomputed_pads",
      "test_maxpool_2d_precomputed_strides",
      "test_averagepool_2d_default",
      "test_averagepool_2d_precomputed_pads",
      "test_averagepool_2d_precomputed_pads_count_include_pad",
      "test_averagepool_2d_precomputed_strides",
      "test_averagepool_2d_strides",
      "test_batchnorm_example",
      "test_batchnorm_epsilon",
      "test_globalaveragepool",
      "test_globalaveragepool_precomputed",
      "test_flatten_axis1",
      "test_flatten_default_axis",
      "test_flatten_negative_axis3",
      "test_relu",
      "test_sigmoid",
      "test_tanh",
      "test_leakyrelu",
      "test_leakyrelu_default",
      "test_clip_default_min",  // Clip(0) without a max: a ReLU
  };
  for (const std::string& test : tests) {
    SCOPED_TRACE(test);
    const bool add_batch =
        std::find(elementwise.begin(), elementwise.end(), test) != elementwise.end();
    onnx::TensorProto input;
    const std::string path = prepared_model(test, add_batch, input);
    ModelFile file;
    try {
      file = load_onnx(path);
    } catch (const Error& e) {
      ADD_FAILURE() << test << " refused: " << e.what();
      continue;
    }
    const std::vector<int64_t> dims(input.dims().begin(), input.dims().end());
    Tensor<float> x(Shape(dims.data(), static_cast<int>(dims.size())));
    const std::vector<float> values = floats_of(input);
    ASSERT_EQ(static_cast<int64_t>(values.size()), x.numel());
    std::copy(values.begin(), values.end(), x.data());
    const TensorView<const float> y = file.model.forward(x, Mode::kEval);
    const onnx::TensorProto expected_proto =
        read_tensor(kNodeTests / test / "test_data_set_0" / "output_0.pb");
    const std::vector<float> expected = floats_of(expected_proto);
    ASSERT_EQ(static_cast<int64_t>(expected.size()), y.numel());
    close_to_golden(test, y, TensorView<const float>(expected.data(), y.shape()));
    fs::remove(path);
  }
}

TEST_F(OnnxConformance, WhatOurLayersCannotExpressIsRefusedInOneLine) {
  const std::vector<std::pair<std::string, std::string>> tests = {
      {"test_conv_with_autopad_same", "auto_pad SAME_LOWER"},
      // Pads of 2 around a kernel of 3: PyTorch's pools (and ours) take at most half the kernel.
      {"test_maxpool_2d_pads",
       "expected padding from 0 to half the kernel (3, 3), i.e. up to (1, 1), got (2, 2)"},
      {"test_averagepool_2d_pads",
       "expected padding from 0 to half the kernel (3, 3), i.e. up to (1, 1), got (2, 2)"},
      {"test_averagepool_2d_pads_count_include_pad",
       "expected padding from 0 to half the kernel (3, 3), i.e. up to (1, 1), got (2, 2)"},
      {"test_maxpool_2d_ceil", "ceil_mode 1 is not supported"},
      {"test_averagepool_2d_ceil", "ceil_mode 1 is not supported"},
      {"test_maxpool_2d_dilations", "dilation 2"},
      {"test_maxpool_2d_same_upper", "auto_pad SAME_UPPER"},
      {"test_maxpool_2d_same_lower", "auto_pad SAME_LOWER"},
      {"test_averagepool_2d_same_upper", "auto_pad SAME_UPPER"},
      {"test_maxpool_2d_precomputed_same_upper", "auto_pad SAME_UPPER"},
      {"test_maxpool_1d_default", "has rank 3 (expected 4: N, C, H, W)"},
      {"test_maxpool_3d_default", "has rank 5 (expected 4: N, C, H, W)"},
      {"test_averagepool_1d_default", "has rank 3 (expected 4: N, C, H, W)"},
      {"test_maxpool_with_argmax_2d_precomputed_pads", "2 outputs (expected one)"},
      {"test_batchnorm_example_training_mode", "3 outputs (expected one)"},
      {"test_gemm_default_vector_bias", "has rank 2 (expected 4: N, C, H, W)"},
      {"test_softmax_axis_1", "has rank 3 (expected 4: N, C, H, W)"},
      {"test_convtranspose", "op type ConvTranspose is not supported"},
      {"test_flatten_axis2", "axis 2 (only 1, (N, -1), is supported)"},
      // Given a batch as the elementwise cases are (below). cnn's Clips are ReLU6, Clip(0, 6),
      // and ReLU, Clip(0); the cases on a vector of 3 are refused for their input's rank.
      {"test_clip", "bounds min -1, max 1"},
      {"test_clip_default_max", "bounds min none, max 0"},
      {"test_clip_example", "has rank 2 (expected 4: N, C, H, W)"},
      {"test_clip_inbounds", "has rank 2 (expected 4: N, C, H, W)"},
      {"test_clip_outbounds", "has rank 2 (expected 4: N, C, H, W)"},
      {"test_clip_splitbounds", "has rank 2 (expected 4: N, C, H, W)"},
      {"test_clip_default_inbounds", "has rank 2 (expected 4: N, C, H, W)"},
      {"test_leakyrelu_example", "has rank 2 (expected 4: N, C, H, W)"},
      {"test_clip_default_int8_min", "data type INT8"},
      {"test_clip_default_int8_max", "data type INT8"},
      {"test_clip_default_int8_inbounds", "input 'x' is not a float tensor"},
  };
  for (const auto& [test, fragment] : tests) {
    SCOPED_TRACE(test);
    onnx::TensorProto input;
    const bool add_batch = test.starts_with("test_clip") || test.starts_with("test_leakyrelu");
    const std::string path = prepared_model(test, add_batch, input);
    try {
      load_onnx(path);
      ADD_FAILURE() << test << " was accepted";
    } catch (const Error& e) {
      const std::string message = e.what();
      EXPECT_NE(message.find(fragment), std::string::npos) << message;
      EXPECT_EQ(message.find('\n'), std::string::npos) << message;
    }
    fs::remove(path);
  }
}

}  // namespace
}  // namespace cnn

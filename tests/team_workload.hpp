#pragma once
// A workload that runs every parallel region of the float kernels with 2 threads requested:
// the direct convolution's forward and backward, im2col + GEMM's backward, Winograd's forward
// and backward, the chunked element-wise ops, the column-split SGEMM, BatchNorm's passes (split
// by images, or channels for short planes), average and max pooling, Dropout, an AdamW step, and
// three training steps of lenet5 and convnet. test_thread_teams.cpp runs it normally, from inside a
// user's parallel region and under omp_set_dynamic, and has cnn_team_workload run it under
// OMP_THREAD_LIMIT=1 and OMP_DYNAMIC=true: each must give the normal run's numbers bit for bit.
// Throws cnn::Error when a piece does not run by the method it claims to cover.

#include <string>
#include <vector>

#include "cnn/cnn.hpp"

namespace cnn::testing {

/// One region's outputs, named after the op, its method and its shape.
struct RegionResult {
  std::string name;
  std::vector<float> values;
};

namespace team_workload_detail {

inline std::vector<float> random_values(Rng& rng, int64_t n) {
  std::vector<float> v(static_cast<size_t>(n));
  for (float& e : v) e = static_cast<float>(rng.normal());
  return v;
}

/// Appends dx, dw and db of a convolution's forward and backward (methods as `expected`).
inline void convolution(std::vector<RegionResult>& out, const std::string& expected,
                        ops::ConvAlgorithm algorithm, const ops::ConvShape& s, Rng& rng) {
  ops::set_conv_algorithm(algorithm);
  const std::string shape = std::to_string(s.batch) + "x" + std::to_string(s.in_channels) + "x" +
                            std::to_string(s.in_h) + "x" + std::to_string(s.in_w) + " -> " +
                            std::to_string(s.out_channels) + "@" + std::to_string(s.kernel_h) +
                            "x" + std::to_string(s.kernel_w);
  // The region under test must be the one this piece claims to cover.
  for (const char* method : {ops::conv2d_forward_method(s), ops::conv2d_weight_grad_method(s)}) {
    if (method != expected) {
      throw Error("team workload: conv2d " + shape + " expected to run by " + expected +
                  ", runs by " + method);
    }
  }
  const int64_t nx = s.batch * s.in_channels * s.in_h * s.in_w;
  const int64_t nw = s.out_channels * s.in_channels * s.kernel_h * s.kernel_w;
  const int64_t ny = s.batch * s.out_channels * s.out_h * s.out_w;
  const std::vector<float> x = random_values(rng, nx), w = random_values(rng, nw),
                           b = random_values(rng, s.out_channels), dy = random_values(rng, ny);
  std::vector<float> y(static_cast<size_t>(ny)), dx(static_cast<size_t>(nx));
  // Gradients accumulate: start them away from zero so that a lost partial sum shows.
  std::vector<float> dw(static_cast<size_t>(nw), 0.5f),
      db(static_cast<size_t>(s.out_channels), 0.5f);
  ops::conv2d_forward(y.data(), x.data(), w.data(), b.data(), s);
  ops::conv2d_backward(dx.data(), dw.data(), db.data(), x.data(), w.data(), dy.data(), s);
  const std::string name = "conv2d " + expected + " " + shape;
  out.push_back({name + " forward y", y});
  out.push_back({name + " backward dx", dx});
  out.push_back({name + " backward dw", dw});
  out.push_back({name + " backward db", db});
  ops::set_conv_algorithm(ops::ConvAlgorithm::kAuto);
}

/// The parameters after `steps` SGD steps of a preset on fixed random data (batch 64).
inline std::vector<float> train_steps(const std::string& preset, int steps) {
  Sequential<float> model = build_model(preset_spec(preset));
  Rng rng(5);
  model.init_parameters(rng);
  Objective objective(LossKind::kCrossEntropy, 10);
  Sgd<float> sgd(model.parameters(), model.gradients(), {.lr = 0.05, .momentum = 0.9});
  Tensor<float> x(Shape{64, 1, 28, 28}), gradient;
  for (float& v : x) v = static_cast<float>(rng.uniform());
  std::vector<uint8_t> labels(64);
  for (size_t i = 0; i < labels.size(); ++i) labels[i] = static_cast<uint8_t>(i % 10);
  for (int i = 0; i < steps; ++i) {
    model.zero_grad();
    const TensorView<const float> y = model.forward(x, Mode::kTrain);
    objective.loss(y, labels, &gradient);
    model.backward(gradient);
    sgd.step();
  }
  return {model.parameters().begin(), model.parameters().end()};
}

}  // namespace team_workload_detail

/// Runs the workload with ops::threads() = 2 and returns every region's outputs. Leaves the
/// thread count at 2 and the convolution algorithm at auto.
inline std::vector<RegionResult> run_team_workload() {
  namespace w = team_workload_detail;
  ops::set_threads(2);
  std::vector<RegionResult> out;
  Rng rng(11);
  // lenet5's first layer (direct), the same by im2col + GEMM (the generic backward's region),
  // and convnet's second layer (Winograd); odd batches so that the blocks differ in size.
  w::convolution(out, "direct", ops::ConvAlgorithm::kAuto,
                 ops::make_conv_shape(7, 1, 28, 28, 6, 5, 5, 1, 1, 2, 2), rng);
  w::convolution(out, "gemm", ops::ConvAlgorithm::kGemm,
                 ops::make_conv_shape(5, 3, 13, 11, 8, 3, 3, 1, 1, 1, 1), rng);
  w::convolution(out, "winograd", ops::ConvAlgorithm::kAuto,
                 ops::make_conv_shape(5, 32, 14, 14, 64, 3, 3, 1, 1, 1, 1), rng);

  // Element-wise ops split into chunks of at least 2^15 elements a thread.
  const int64_t n = 3 * (int64_t{1} << 15) + 5;
  const std::vector<float> x = w::random_values(rng, n), dy = w::random_values(rng, n);
  std::vector<float> y(static_cast<size_t>(n)), dx(static_cast<size_t>(n));
  ops::relu_forward(y.data(), x.data(), n);
  ops::relu_backward(dx.data(), x.data(), dy.data(), n);
  out.push_back({"relu forward, 98309 elements", y});
  out.push_back({"relu backward, 98309 elements", dx});
  ops::tanh_forward(y.data(), x.data(), n);
  out.push_back({"tanh forward, 98309 elements", y});

  // convnet's first Linear: its GEMMs split their columns over the threads.
  const ops::DenseShape d{64, 3136, 128};
  const std::vector<float> dx_in = w::random_values(rng, d.batch * d.in_features),
                           weights = w::random_values(rng, d.out_features * d.in_features),
                           bias = w::random_values(rng, d.out_features),
                           dense_dy = w::random_values(rng, d.batch * d.out_features);
  std::vector<float> dense_y(static_cast<size_t>(d.batch * d.out_features)),
      dense_dx(static_cast<size_t>(d.batch * d.in_features)),
      dense_dw(static_cast<size_t>(d.out_features * d.in_features), 0.5f),
      dense_db(static_cast<size_t>(d.out_features), 0.5f);
  ops::dense_forward(dense_y.data(), dx_in.data(), weights.data(), bias.data(), d);
  ops::dense_backward(dense_dx.data(), dense_dw.data(), dense_db.data(), dx_in.data(),
                      weights.data(), dense_dy.data(), d);
  out.push_back({"dense 64x3136 -> 128 forward y", dense_y});
  out.push_back({"dense 64x3136 -> 128 backward dx", dense_dx});
  out.push_back({"dense 64x3136 -> 128 backward dw", dense_dw});

  // Average pooling (planes over threads), global average pooling, and an AdamW step over a
  // buffer large enough to split.
  const ops::PoolShape pool = ops::make_pool_shape(8, 16, 14, 14, 2, 2, 2, 2, 0, 0);
  const int64_t pool_in = 8 * 16 * 14 * 14, pool_out = 8 * 16 * 7 * 7;
  const std::vector<float> pool_x = w::random_values(rng, pool_in),
                           pool_dy = w::random_values(rng, pool_out),
                           global_dy = w::random_values(rng, 8 * 16);
  std::vector<float> pool_y(static_cast<size_t>(pool_out)), pool_dx(static_cast<size_t>(pool_in)),
      global_y(8 * 16), global_dx(static_cast<size_t>(pool_in));
  ops::avgpool2d_forward(pool_y.data(), pool_x.data(), pool, true);
  ops::avgpool2d_backward(pool_dx.data(), pool_dy.data(), pool, true);
  ops::global_avgpool_forward(global_y.data(), pool_x.data(), 8 * 16, 14 * 14);
  ops::global_avgpool_backward(global_dx.data(), global_dy.data(), 8 * 16, 14 * 14);
  out.push_back({"avgpool 8x16x14x14 k2 forward y", pool_y});
  out.push_back({"avgpool 8x16x14x14 k2 backward dx", pool_dx});
  out.push_back({"global avgpool 8x16x14x14 forward y", global_y});
  out.push_back({"global avgpool 8x16x14x14 backward dx", global_dx});
  // Max pooling, each path over the threads: 2x2 / 2 (its own loop, forward and the dense
  // backward); 3x3 / 1 padding 1 on 33 planes (4 groups of 8 by the lane kernel and, with AVX2,
  // the last plane by the row kernel, the groups split over the threads; 3 + 1 on SSE2) and its
  // scatter backward (planes over the threads); 3x3 / 2 padding 1 after the ReLU without the
  // argmax. Then Dropout (one Rng stream, no threads: the same bits under any team).
  const ops::PoolShape max2 = ops::make_pool_shape(8, 16, 28, 28, 2, 2, 2, 2, 0, 0);
  const ops::PoolShape max3 = ops::make_pool_shape(3, 11, 32, 32, 3, 3, 1, 1, 1, 1);
  const ops::PoolShape max3s2 = ops::make_pool_shape(3, 11, 32, 32, 3, 3, 2, 2, 1, 1);
  const auto max_pool = [&](const ops::PoolShape& m, const std::string& name) {
    const int64_t in = m.batch * m.channels * m.in_h * m.in_w;
    const int64_t on = m.batch * m.channels * m.out_h * m.out_w;
    const std::vector<float> mx = w::random_values(rng, in), mdy = w::random_values(rng, on);
    std::vector<float> my(static_cast<size_t>(on)), mdx(static_cast<size_t>(in));
    std::vector<int32_t> arg(static_cast<size_t>(on));
    ops::maxpool2d_forward(my.data(), arg.data(), mx.data(), m);
    ops::maxpool2d_backward(mdx.data(), mdy.data(), arg.data(), m);
    out.push_back({"maxpool " + name + " forward y", my});
    out.push_back(
        {"maxpool " + name + " forward argmax", std::vector<float>(arg.begin(), arg.end())});
    out.push_back({"maxpool " + name + " backward dx", mdx});
  };
  max_pool(max2, "8x16x28x28 k2 s2");
  max_pool(max3, "3x11x32x32 k3 s1 p1");
  {
    const int64_t in = 3 * 11 * 32 * 32, on = 3 * 11 * 16 * 16;
    const std::vector<float> mx = w::random_values(rng, in);
    std::vector<float> my(static_cast<size_t>(on));
    ops::relu_maxpool2d_forward(my.data(), static_cast<int32_t*>(nullptr), mx.data(), max3s2);
    out.push_back({"relu + maxpool 3x11x32x32 k3 s2 p1 forward y (no argmax)", my});
  }
  {
    const int64_t n = 100003;
    const std::vector<float> dx_in_drop = w::random_values(rng, n);
    std::vector<float> drop_y(static_cast<size_t>(n)), drop_mask(static_cast<size_t>(n));
    Rng drop_rng(29);
    ops::dropout_forward(drop_y.data(), drop_mask.data(), dx_in_drop.data(), n, 0.3, drop_rng);
    out.push_back({"dropout 100003 p 0.3 forward y", drop_y});
    out.push_back({"dropout 100003 p 0.3 mask", drop_mask});
  }
  // BatchNorm's passes: planes of 16+ values split by images (each plane's sums added over the
  // images in order), an odd batch so that the threads' images differ in number; shorter planes
  // (a BatchNorm1d's) split by channels, an odd count of them.
  const auto batchnorm_passes = [&](const ops::NormShape& norm, const std::string& name) {
    const int64_t norm_size = norm.batch * norm.channels * norm.inner;
    const std::vector<float> norm_x = w::random_values(rng, norm_size),
                             norm_dy = w::random_values(rng, norm_size),
                             norm_gamma = w::random_values(rng, norm.channels),
                             norm_beta = w::random_values(rng, norm.channels);
    std::vector<float> norm_mean(norm.channels), norm_var(norm.channels),
        norm_y(static_cast<size_t>(norm_size)), norm_dx(static_cast<size_t>(norm_size)),
        norm_dgamma(norm.channels, 0.5f), norm_dbeta(norm.channels, 0.5f);
    ops::batchnorm_statistics(norm_mean.data(), norm_var.data(), norm_x.data(), norm);
    ops::batchnorm_relu_forward(norm_y.data(), norm_x.data(), norm_mean.data(), norm_var.data(),
                                norm_gamma.data(), norm_beta.data(), norm, 1e-5f);
    ops::batchnorm_relu_backward(norm_dx.data(), norm_dgamma.data(), norm_dbeta.data(),
                                 norm_dy.data(), norm_x.data(), norm_mean.data(), norm_var.data(),
                                 norm_gamma.data(), norm_beta.data(), norm, 1e-5f, true);
    norm_mean.insert(norm_mean.end(), norm_var.begin(), norm_var.end());
    norm_dgamma.insert(norm_dgamma.end(), norm_dbeta.begin(), norm_dbeta.end());
    out.push_back({"batchnorm " + name + " statistics: mean, var", norm_mean});
    out.push_back({"batchnorm + relu " + name + " forward y", norm_y});
    out.push_back({"batchnorm + relu " + name + " backward dx", norm_dx});
    out.push_back({"batchnorm + relu " + name + " backward dgamma, dbeta", norm_dgamma});
  };
  batchnorm_passes(ops::NormShape{7, 5, 23 * 31}, "7x5x23x31");
  batchnorm_passes(ops::NormShape{8, 2049, 3}, "8x2049x3");

  std::vector<float> params = w::random_values(rng, 100003);
  const std::vector<float> grads = w::random_values(rng, 100003);
  Adam<float> adamw(params, grads, {.weight_decay = 0.01, .decoupled_weight_decay = true});
  for (int i = 0; i < 3; ++i) adamw.step();
  out.push_back({"AdamW, 3 steps over 100003 parameters", params});

  out.push_back({"lenet5, 3 training steps: parameters", w::train_steps("lenet5", 3)});
  out.push_back({"convnet, 3 training steps: parameters", w::train_steps("convnet", 3)});
  ops::set_conv_algorithm(ops::ConvAlgorithm::kGemm);
  out.push_back(
      {"convnet by im2col + GEMM, 3 training steps: parameters", w::train_steps("convnet", 3)});
  ops::set_conv_algorithm(ops::ConvAlgorithm::kAuto);
  return out;
}

}  // namespace cnn::testing

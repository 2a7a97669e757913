#include "bench.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <functional>
#include <iterator>
#include <new>
#include <nlohmann/json.hpp>
#include <thread>
#include <vector>

#include "cnn/cnn.hpp"
#include "print_json.hpp"

namespace cnn::cli {

const char* const kBenchHelp =
    "usage: cnn bench [--model PRESET|SPEC.json] [--batch N] [--threads N] [--repeat N] [--json]\n"
    "\n"
    "Measures, on random data in memory:\n"
    "  training images/s   SGD with momentum: forward, loss, backward and update, at --batch\n"
    "                      (default 64)\n"
    "  inference images/s  forward at batch 256\n"
    "  latency             forward of one image, median in microseconds\n"
    "  per layer           forward and backward milliseconds and GFLOP/s at --batch, and\n"
    "                      for convolutions the method of forward, weight and input gradient\n"
    "                      (implicit, winograd4x4, winograd, direct or gemm; CNN_CONV); each\n"
    "                      layer runs alone (a Residual as a whole), while a model runs a\n"
    "                      ReLU and the MaxPool2d after it, or a BatchNorm and the ReLU after\n"
    "                      it, as one pass, and in inference folds a BatchNorm2d into the\n"
    "                      Conv2d before it: the rows do not add up to the model's step\n"
    "  FMA peak            GFLOP/s of an FMA loop on the same threads, and the fraction reached\n"
    "  round trip          with 2+ threads, nanoseconds of a cache line's round trip between\n"
    "                      two threads, before and after the runs: how far apart their cores\n"
    "                      are (a shared machine may move them; 2-thread figures follow it)\n"
    "Throughputs are the median of --repeat runs (default 5) of at least 0.3 s each.\n"
    "Under mpirun (-np 2 or more), data-parallel training instead: each rank takes its share\n"
    "of the global --batch, the gradients are summed with MPI_Allreduce every step; prints\n"
    "images/s of the whole job and the all-reduce's milliseconds a step (docs/distributed.md).\n"
    "  --allreduce  under mpirun: MPI_Allreduce time against message size, 1 KiB to 64 MiB\n"
    "  --model    preset (default lenet5) or spec file   --threads  default: the core count\n"
    "                                                    (under mpirun: shared by the host's "
    "ranks)\n"
    "  --json     one JSON object: model, threads, batch, isa, train_images_per_s,\n"
    "             infer_images_per_s, latency_us, peak_gflops, core_round_trip_ns,\n"
    "             layers, ...\n";

namespace {

using Clock = std::chrono::steady_clock;
using Json = nlohmann::json;

/// "winograd/direct/winograd": how a convolution computes its forward, weight gradient and
/// input gradient; "" for other layers.
std::string conv_algorithms(const Layer<float>& layer, const Shape& input) {
  const auto* conv = dynamic_cast<const Conv2d<float>*>(&layer);
  if (conv == nullptr) return "";
  const ops::ConvShape s = conv->conv_shape(input);
  return std::string(ops::conv2d_forward_method(s)) + "/" + ops::conv2d_weight_grad_method(s) +
         "/" + ops::conv2d_input_grad_method(s);
}

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/// Runs `step` in batches of calls lasting at least min_seconds; returns calls per second for
/// each of `repeat` runs. With `ranks`, every rank makes the same number of calls (the
/// largest any rank wants): a step that exchanges data must be called alike everywhere.
std::vector<double> rates(const std::function<void()>& step, int repeat, double min_seconds,
                          Communicator* ranks = nullptr) {
  for (int i = 0; i < 3; ++i) step();  // warm up: caches, scratch buffers, page faults
  const Clock::time_point probe = Clock::now();
  step();
  const double one = std::max(seconds_since(probe), 1e-7);
  double wanted = std::max(3.0, std::floor(min_seconds / one));
  if (ranks != nullptr) ranks->max(&wanted, 1);
  const int64_t calls = static_cast<int64_t>(wanted);
  std::vector<double> result;
  for (int r = 0; r < repeat; ++r) {
    const Clock::time_point start = Clock::now();
    for (int64_t c = 0; c < calls; ++c) step();
    result.push_back(double(calls) / seconds_since(start));
  }
  return result;
}

Tensor<float> random_images(const Shape& sample, int64_t batch, Rng& rng) {
  Tensor<float> x(Shape{batch, sample[0], sample[1], sample[2]});
  for (float& v : x) v = static_cast<float>(rng.uniform());
  return x;
}

Sequential<float> initialised_model(const ModelSpec& spec, Rng& rng) {
  Sequential<float> model = build_model(spec);
  model.init_parameters(rng);
  return model;
}

/// A benchmark's model (initialised from rng), its objective and a small-step SGD.
struct BenchModel {
  BenchModel(const ModelSpec& spec, Rng& rng)
      : model(initialised_model(spec, rng)),
        objective(spec.loss, spec.loss == LossKind::kLogLoss ? 2 : model.output_shape(1)[1]),
        sgd(model.parameters(), model.gradients(), {.lr = 1e-4, .momentum = 0.9}) {}
  Sequential<float> model;
  Objective objective;
  Sgd<float> sgd;
};

/// Refuses, before measuring, a --batch that gives a BatchNorm one value per channel in
/// training, which has no variance (found 2026-12-07: `cnn bench --batch 1` stopped with the
/// layer's own line, which names no flag, where train names --batch). Over `world` ranks the
/// smallest share counts. The same on every rank.
void check_batchnorm_batch(const Sequential<float>& model, const ModelSpec& spec, int64_t batch,
                           int world) {
  const int64_t smallest = batch / world;
  const std::string found = batchnorm_given_one_value(
      model, Shape{smallest, spec.input[0], spec.input[1], spec.input[2]});
  if (found.empty()) return;
  const std::string line =
      "bench: --batch " + std::to_string(batch) + ": a batch holds " + std::to_string(batch) +
      " sample" + (batch == 1 ? "" : "s") +
      (world > 1 ? " (" + std::to_string(smallest) + " a rank)" : std::string()) +
      ", which gives " + found +
      " one value per channel; it needs more than 1 in training (the variance of one is 0): "
      "choose a --batch of " +
      std::to_string(2 * world) + " or more";
  if (world > 1) throw RanksError(line);
  throw Error(line);
}

/// MPI_Allreduce (sum, in place) of float messages from 1 KiB to 64 MiB: the median time of
/// one call over `repeat` runs, every rank calling alike.
int allreduce_bench(Communicator& ranks, int repeat, bool json) {
  Json rows = Json::array();
  if (!json) {
    std::printf("MPI_Allreduce (sum, float, in place) over %d ranks (%d on this host)\n",
                ranks.size(), ranks.local_size());
    std::printf("%12s %12s %12s\n", "bytes", "ms", "GB/s (bus)");
  }
  for (int64_t bytes = 1024; bytes <= (int64_t{64} << 20); bytes *= 4) {
    std::vector<float> message(static_cast<size_t>(bytes / 4), 1.0f);
    const double per_second =
        median(rates([&] { ranks.sum(message.data(), static_cast<int64_t>(message.size())); },
                     repeat, 0.2, &ranks));
    const double ms = 1e3 / per_second;
    // The bus bandwidth of a ring all-reduce: each byte crosses 2 (p - 1) / p links.
    const double p = ranks.size();
    const double bus = double(bytes) * 2 * (p - 1) / p / (ms * 1e-3) * 1e-9;
    rows.push_back({{"bytes", bytes}, {"ms", ms}, {"bus_gb_per_s", bus}});
    if (!json) std::printf("%12lld %12.4f %12.2f\n", static_cast<long long>(bytes), ms, bus);
  }
  if (json) {
    print_json(
        Json({{"ranks", ranks.size()}, {"local_ranks", ranks.local_size()}, {"allreduce", rows}}));
  }
  return 0;
}

/// Data-parallel training steps across `ranks`: the step of train_model with ranks.
int distributed_bench(Communicator& ranks, const ModelSpec& spec, int64_t batch, int threads,
                      int repeat, bool json) {
  const int world = ranks.size(), rank = ranks.rank();
  if (batch < world) {
    throw RanksError("bench: --batch " + std::to_string(batch) + " cannot be split over " +
                     std::to_string(world) + " ranks");
  }
  Rng rng(1);
  BenchModel b(spec, rng);
  check_batchnorm_batch(b.model, spec, batch, world);
  const int64_t first = batch * rank / world, share = batch * (rank + 1) / world - first;
  Rng data_rng(static_cast<uint64_t>(rank) + 2);
  const Tensor<float> x = random_images(spec.input, share, data_rng);
  std::vector<uint8_t> labels(static_cast<size_t>(share));
  for (uint8_t& l : labels)
    l = static_cast<uint8_t>(rng.below(static_cast<uint64_t>(b.objective.classes())));
  Tensor<float> gradient;
  double allreduce_seconds = 0;
  int64_t steps = 0;
  const float weight = static_cast<float>(share) / static_cast<float>(batch);
  const auto train_step = [&] {
    b.model.zero_grad();
    const TensorView<const float> out = b.model.forward(x, Mode::kTrain);
    double step_sums[6] = {b.objective.loss(out, labels, &gradient), 0, double(share), 0, 0, 0};
    ranks.sum(step_sums, 6);
    for (float& g : gradient) g *= weight;
    b.model.backward(gradient);
    const Clock::time_point start = Clock::now();
    ranks.sum(b.model.gradients().data(), b.model.parameter_count());
    allreduce_seconds += seconds_since(start);
    ++steps;
    b.sgd.step();
  };
  std::vector<double> train_rates = rates(train_step, repeat, 0.3, &ranks);
  for (double& r : train_rates) r *= double(batch);
  // The all-reduce's time includes waiting for the slowest rank; the mean over the ranks.
  double allreduce_ms = allreduce_seconds / double(steps) * 1e3 / world;
  ranks.sum(&allreduce_ms, 1);
  const double train = median(train_rates);
  if (json) {
    print_json(Json({{"model", spec.name},
                     {"ranks", world},
                     {"threads", threads},
                     {"batch", batch},
                     {"isa", ops::isa_name(ops::isa())},
                     {"train_images_per_s", train},
                     {"train_images_per_s_runs", train_rates},
                     {"allreduce_ms_per_step", allreduce_ms},
                     {"step_ms", 1e3 * double(batch) / train},
                     {"gradient_bytes", b.model.parameter_count() * 4}}));
    return 0;
  }
  std::printf("%s, global batch %lld over %d ranks x %d thread%s, %s kernels\n",
              terminal_text(spec.name).c_str(), static_cast<long long>(batch), world, threads,
              threads == 1 ? "" : "s", ops::isa_name(ops::isa()));
  std::printf("training:   %10.0f images/s  (all ranks; %.2f ms a step)\n", train,
              1e3 * double(batch) / train);
  std::printf(
      "all-reduce: %10.3f ms a step (%s bytes of gradients, waiting for the slowest "
      "rank included)\n",
      allreduce_ms, std::to_string(b.model.parameter_count() * 4).c_str());
  return 0;
}

/// The single-process measurements of bench_command; `at_batch` is false while the fixed
/// inference batches (256 and 1) run, true while --batch's does.
int measure(BenchModel& bench, const ModelSpec& spec, int64_t batch, int threads, int repeat,
            bool json, Rng& rng, bool& at_batch) {
  Sequential<float>& model = bench.model;
  Objective& objective = bench.objective;
  Sgd<float>& sgd = bench.sgd;
  const int64_t classes = objective.classes();

  // Training: the same step as cnn train.
  const Tensor<float> x = random_images(spec.input, batch, rng);
  std::vector<uint8_t> labels(static_cast<size_t>(batch));
  for (uint8_t& l : labels) l = static_cast<uint8_t>(rng.below(static_cast<uint64_t>(classes)));
  Tensor<float> gradient;
  const auto train_step = [&] {
    model.zero_grad();
    const TensorView<const float> out = model.forward(x, Mode::kTrain);
    objective.loss(out, labels, &gradient);
    model.backward(gradient);
    sgd.step();
  };
  // Before and after all the runs: this machine's two vCPUs are sometimes about 350 ns apart
  // instead of 60-80, which slows every 2-thread figure (lenet5's most).
  std::vector<double> round_trips;
  if (threads > 1) round_trips.push_back(ops::measure_core_round_trip_ns());
  std::vector<double> train_rates = rates(train_step, repeat, 0.3);
  for (double& r : train_rates) r *= double(batch);

  // Inference at batch 256 and latency at batch 1.
  at_batch = false;
  const Tensor<float> x256 = random_images(spec.input, 256, rng),
                      x1 = random_images(spec.input, 1, rng);
  std::vector<double> infer_rates = rates([&] { model.forward(x256, Mode::kEval); }, repeat, 0.3);
  for (double& r : infer_rates) r *= 256.0;
  std::vector<double> latencies;
  for (int i = 0; i < 5; ++i) model.forward(x1, Mode::kEval);
  for (int i = 0; i < 301; ++i) {
    const Clock::time_point start = Clock::now();
    model.forward(x1, Mode::kEval);
    latencies.push_back(seconds_since(start) * 1e6);
  }

  // Per layer, at the training batch: each layer's forward and backward timed on its own.
  at_batch = true;
  const size_t layers = model.size();
  std::vector<Tensor<float>> outputs(layers), grads(layers);
  std::vector<Shape> inputs(layers);
  Shape shape = x.shape();
  for (size_t i = 0; i < layers; ++i) {
    inputs[i] = shape;
    shape = model.layer(i).output_shape(shape);
    outputs[i].resize(shape);
    grads[i].resize(shape);
    for (float& g : grads[i]) g = static_cast<float>(rng.uniform(-1e-3, 1e-3));
  }
  Tensor<float> input_grad(x.shape());
  Json layer_rows = Json::array();
  std::vector<double> forward_ms(layers), backward_ms(layers);
  for (size_t i = 0; i < layers; ++i) {
    Layer<float>& layer = model.layer(i);
    const TensorView<const float> in = i == 0 ? x.view() : outputs[i - 1].view();
    const TensorView<float> dx =
        i == 0 ? TensorView<float>() : TensorView<float>(grads[i - 1].data(), inputs[i]);
    layer.forward(in, outputs[i], Mode::kTrain);
    forward_ms[i] =
        1e3 / median(rates([&] { layer.forward(in, outputs[i], Mode::kTrain); }, 3, 0.05));
    backward_ms[i] =
        1e3 / median(rates([&] { layer.backward(in, outputs[i], grads[i], dx); }, 3, 0.05));
  }
  model.zero_grad();

  const double peak = ops::measure_peak_gflops(threads);
  if (threads > 1) round_trips.push_back(ops::measure_core_round_trip_ns());
  const double train = median(train_rates), infer = median(infer_rates),
               latency = median(latencies);
  // Training FLOPs per image: forward, plus backward (twice the forward of layers with
  // parameters: input and weight gradients; the first layer computes no input gradient).
  double forward_flops_per_image = 0, train_flops_per_image = 0;
  for (size_t i = 0; i < layers; ++i) {
    const Layer<float>& layer = model.layer(i);
    const double f = layer.forward_flops(inputs[i]) / double(batch);
    const double b = layer.parameter_count() > 0 ? (i == 0 ? 1.0 : 2.0) * f : f;
    forward_flops_per_image += f;
    train_flops_per_image += f + b;
    const double fwd_gflops = f * double(batch) / (forward_ms[i] * 1e-3) * 1e-9;
    const double bwd_gflops = b * double(batch) / (backward_ms[i] * 1e-3) * 1e-9;
    layer_rows.push_back({{"index", i},
                          {"layer", layer.describe()},
                          {"algorithm", conv_algorithms(layer, inputs[i])},
                          {"forward_ms", forward_ms[i]},
                          {"backward_ms", backward_ms[i]},
                          {"forward_gflops", fwd_gflops},
                          {"backward_gflops", bwd_gflops},
                          {"forward_peak_fraction", fwd_gflops / peak}});
  }
  const double train_gflops = train * train_flops_per_image * 1e-9;
  if (json) {
    const Json j = {{"model", spec.name},
                    {"threads", threads},
                    {"batch", batch},
                    {"isa", ops::isa_name(ops::isa())},
                    {"conv", ops::conv_algorithm_name(ops::conv_algorithm())},
                    {"train_images_per_s", train},
                    {"train_images_per_s_runs", train_rates},
                    {"infer_images_per_s", infer},
                    {"infer_images_per_s_runs", infer_rates},
                    {"infer_batch", 256},
                    {"latency_us", latency},
                    {"peak_gflops", peak},
                    {"core_round_trip_ns", round_trips},
                    {"train_gflops", train_gflops},
                    {"train_peak_fraction", train_gflops / peak},
                    {"forward_flops_per_image", forward_flops_per_image},
                    {"layers", layer_rows}};
    print_json(j);
    return 0;
  }
  std::printf("%s, batch %lld, %d thread%s, %s kernels, convolutions: %s\n",
              terminal_text(spec.name).c_str(), static_cast<long long>(batch), threads,
              threads == 1 ? "" : "s", ops::isa_name(ops::isa()),
              ops::conv_algorithm_name(ops::conv_algorithm()));
  std::printf("training:   %10.0f images/s  (%.1f GFLOP/s, %.1f%% of the %.1f GFLOP/s FMA peak)\n",
              train, train_gflops, 100 * train_gflops / peak, peak);
  std::printf("inference:  %10.0f images/s  (batch 256)\n", infer);
  std::printf("latency:    %10.1f us        (batch 1, median of 301)\n", latency);
  if (round_trips.size() == 2 && round_trips[0] > 0) {
    std::printf(
        "round trip: %9.0f ns        (between two threads' cores before the runs; %.0f ns "
        "after)\n",
        round_trips[0], round_trips[1]);
  }
  std::printf("\n%-4s %-62s %10s %10s %10s %10s  %s\n", "#", "layer", "fwd ms", "fwd GF/s",
              "bwd ms", "bwd GF/s", "fwd/dW/dx");
  for (const Json& row : layer_rows) {
    std::printf("%-4zu %-62s %10.3f %10.1f %10.3f %10.1f  %s\n", row["index"].get<size_t>(),
                row["layer"].get<std::string>().c_str(), row["forward_ms"].get<double>(),
                row["forward_gflops"].get<double>(), row["backward_ms"].get<double>(),
                row["backward_gflops"].get<double>(), row["algorithm"].get<std::string>().c_str());
  }
  return 0;
}

}  // namespace

int bench_command(const Args& args, Communicator* ranks) {
  if (args.help()) {
    std::fputs(kBenchHelp, stdout);
    return 0;
  }
  if (!args.positional().empty())
    args.fail(args.positional()[0], "is not an option of bench (see --help)");
  const ModelSpec spec = model_spec_from(args.text("--model", "lenet5"));
  const int64_t batch = args.integer("--batch", 64, 1, 4096);
  const int cores = static_cast<int>(std::clamp(std::thread::hardware_concurrency(), 1u, 64u));
  const int threads = static_cast<int>(
      args.integer("--threads", std::max(1, cores / (ranks ? ranks->local_size() : 1)), 1, 256));
  const int repeat = static_cast<int>(args.integer("--repeat", 5, 1, 1000));
  const bool json = args.has("--json");
  ops::set_threads(threads);
  if (args.has("--allreduce")) {
    if (ranks == nullptr || ranks->size() < 2)
      args.fail("--allreduce", "measures MPI's all-reduce: run it under mpirun -np 2 or more");
    return allreduce_bench(*ranks, repeat, json);
  }
  if (ranks != nullptr && ranks->size() > 1)
    return distributed_bench(*ranks, spec, batch, threads, repeat, json);

  Rng rng(1);
  BenchModel bench(spec, rng);
  check_batchnorm_batch(bench.model, spec, batch, 1);
  // Memory that runs out while measuring is named with the batch it ran at: --batch, or the
  // fixed inference batch of 256, which --batch does not change.
  bool at_batch = true;
  try {
    return measure(bench, spec, batch, threads, repeat, json, rng, at_batch);
  } catch (const std::exception& e) {
    if (dynamic_cast<const OutOfMemory*>(&e) == nullptr &&
        dynamic_cast<const std::bad_alloc*>(&e) == nullptr)
      throw;
    if (at_batch) throw OutOfMemory(out_of_memory_at(e, batch));
    throw OutOfMemory(out_of_memory_text(e) +
                      ", at bench's inference batch of 256 (fixed: --batch does not change it; a "
                      "smaller model needs less)");
  }
}

}  // namespace cnn::cli

// The `cnn` command end to end: training on the bundled sample, eval reproducing train's
// accuracy, bit-identical files for a fixed seed and thread count, `info`, and bad input of
// every kind: one line naming the file or flag, a non-zero exit, no crash, and a model file
// at --out never left half-written.

#include <gtest/gtest.h>
#include <stb/stb_image_write.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <zlib.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cli_util.hpp"
#include "cnn/cnn.hpp"

namespace cnn {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;

struct CliRun {
  int exit_code = -1;  // 128 + signal when killed by a signal
  std::string out, err;
};

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

void write_file(const fs::path& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

/// Directory shared by the tests of this file (each test uses its own names inside it).
fs::path work_dir() {
  static const fs::path dir = testing::process_dir("cnn_cli_test_");
  return dir;
}

/// Runs the CLI with `args`; `environment` (e.g. "CNN_CONV=gemm") is set for that run only.
CliRun cnn(const std::string& args, const std::string& environment = "") {
  const fs::path out = work_dir() / "stdout.txt", err = work_dir() / "stderr.txt";
  const std::string command = environment + " " + std::string(CNN_CLI) + " " + args + " >" +
                              out.string() + " 2>" + err.string();
  const int status = std::system(command.c_str());
  CliRun run;
  run.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  run.out = read_file(out);
  run.err = read_file(err);
  return run;
}

/// Expects a clean refusal: exit 1 or 2 (not a crash), and exactly one stderr line holding
/// every fragment.
void expect_refusal(const std::string& args, const std::vector<std::string>& fragments,
                    const std::string& environment = "") {
  SCOPED_TRACE(environment + " cnn " + args);
  const CliRun run = cnn(args, environment);
  EXPECT_TRUE(run.exit_code == 1 || run.exit_code == 2) << "exit " << run.exit_code << "\n"
                                                        << run.err;
  EXPECT_EQ(std::count(run.err.begin(), run.err.end(), '\n'), 1) << run.err;
  for (const std::string& f : fragments) {
    EXPECT_NE(run.err.find(f), std::string::npos) << "stderr lacks \"" << f << "\": " << run.err;
  }
}

/// A model trained once on the sample, shared by the tests below.
const fs::path& trained_model() {
  static const fs::path model = [] {
    const fs::path path = work_dir() / "sample_lenet5.safetensors";
    const CliRun run =
        cnn("train --data sample --epochs 1 --seed 3 --threads 2 --out " + path.string());
    if (run.exit_code != 0) ADD_FAILURE() << run.out << run.err;
    return path;
  }();
  return model;
}

TEST(Cli, TrainWritesModelCsvAndSvgAndEvalReproducesTheAccuracyExactly) {
  const fs::path model = work_dir() / "eval_check.safetensors";
  const CliRun train = cnn("train --data sample --epochs 2 --seed 5 --out " + model.string());
  ASSERT_EQ(train.exit_code, 0) << train.err;
  EXPECT_TRUE(fs::exists(work_dir() / "eval_check.csv"));
  EXPECT_TRUE(fs::exists(work_dir() / "eval_check.svg"));
  EXPECT_NE(train.out.find("epoch 2/2: train loss"), std::string::npos) << train.out;
  // "final test accuracy 12.34% (123/1000), ..." (parsed by hand: std::regex trips a g++ 12
  // -Wmaybe-uninitialized false alarm in the sanitizer build).
  const size_t at = train.out.find("final test accuracy ");
  ASSERT_NE(at, std::string::npos) << train.out;
  char percent[16] = {};
  long long correct = 0, total = 0;
  ASSERT_EQ(std::sscanf(train.out.c_str() + at, "final test accuracy %15[0-9.]%% (%lld/%lld)",
                        percent, &correct, &total),
            3)
      << train.out;
  const CliRun eval = cnn("eval " + model.string() + " --data sample --json");
  ASSERT_EQ(eval.exit_code, 0) << eval.err;
  const Json j = Json::parse(eval.out);
  EXPECT_EQ(j.at("samples").get<int64_t>(), total);
  EXPECT_EQ(std::llround(j.at("accuracy").get<double>() * j.at("samples").get<double>()), correct);
  EXPECT_EQ(j.at("confusion_matrix").size(), 10u);
  EXPECT_EQ(j.at("per_class_accuracy").size(), 10u);
  EXPECT_EQ(j.at("class_names")[1], "Trouser");
  const CliRun text = cnn("eval " + model.string() + " --data sample");
  EXPECT_NE(text.out.find("test accuracy " + std::string(percent) + "% (" +
                          std::to_string(correct) + "/" + std::to_string(total) + ")"),
            std::string::npos)
      << text.out;
}

TEST(Cli, EvalOfAModelWithMoreOutputsThanTheDataHasClasses) {
  // Found 2026-12-06: the classes no test image belongs to printed "nan%".
  const fs::path spec = work_dir() / "twelve.json", model = work_dir() / "twelve.safetensors";
  {
    std::ofstream(spec) << R"({"input": [1, 28, 28], "layers": [{"type": "Flatten"},
        {"type": "Linear", "out_features": 12}]})";
  }
  const CliRun train =
      cnn("train --model " + spec.string() + " --data sample --epochs 1 --out " + model.string());
  ASSERT_EQ(train.exit_code, 0) << train.err;
  const CliRun text = cnn("eval " + model.string() + " --data sample");
  ASSERT_EQ(text.exit_code, 0) << text.err;
  EXPECT_EQ(text.out.find("nan"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("  11 11              none (no test images)"), std::string::npos)
      << text.out;
  const CliRun json = cnn("eval " + model.string() + " --data sample --json");
  ASSERT_EQ(json.exit_code, 0) << json.err;
  const Json per_class = Json::parse(json.out).at("per_class_accuracy");
  ASSERT_EQ(per_class.size(), 12u);
  EXPECT_TRUE(per_class[9].is_number());
  EXPECT_TRUE(per_class[10].is_null());
  EXPECT_TRUE(per_class[11].is_null());
}

TEST(Cli, SameSeedAndThreadsGiveABitIdenticalModelFile) {
  for (int threads : {1, 2}) {
    const std::string a = (work_dir() / "same_a.safetensors").string(),
                      b = (work_dir() / "same_b.safetensors").string();
    const std::string flags =
        " --data sample --epochs 1 --seed 9 --threads " + std::to_string(threads);
    ASSERT_EQ(cnn("train" + flags + " --out " + a).exit_code, 0);
    ASSERT_EQ(cnn("train" + flags + " --out " + b).exit_code, 0);
    EXPECT_EQ(read_file(a), read_file(b)) << threads << " threads";
  }
}

/// The "final test accuracy 55.00% (550/1000)" line of a training run's output.
std::string final_accuracy(const std::string& out) {
  const size_t at = out.find("final test accuracy ");
  return at == std::string::npos ? "(none)" : out.substr(at, out.find(',', at) - at);
}

// Under OMP_THREAD_LIMIT=1 (as job schedulers set it), --threads 2 trains the model that
// --threads 2 trains without the limit, bit for bit, and reaches the accuracy of --threads 1
// (it once trained on half of every batch: 20.1% instead of 55.0%).
TEST(Cli, ThreadLimitTrainsTheSameModelAsTheThreadsAskedFor) {
  const std::string flags = " --data sample --epochs 2 --seed 1 --threads ";
  const fs::path one = work_dir() / "limit_1.safetensors", two = work_dir() / "limit_2.safetensors",
                 limited = work_dir() / "limit_2_limited.safetensors";
  const CliRun run_one = cnn("train" + flags + "1 --out " + one.string());
  const CliRun run_two = cnn("train" + flags + "2 --out " + two.string());
  const CliRun run_limited =
      cnn("train" + flags + "2 --out " + limited.string(), "OMP_THREAD_LIMIT=1");
  ASSERT_EQ(run_one.exit_code, 0) << run_one.err;
  ASSERT_EQ(run_two.exit_code, 0) << run_two.err;
  ASSERT_EQ(run_limited.exit_code, 0) << run_limited.err;
  EXPECT_EQ(read_file(limited), read_file(two)) << "OMP_THREAD_LIMIT=1 changed the model";
  EXPECT_EQ(final_accuracy(run_limited.out), final_accuracy(run_one.out));
  std::printf("--threads 1: %s; --threads 2 under OMP_THREAD_LIMIT=1: %s\n",
              final_accuracy(run_one.out).c_str(), final_accuracy(run_limited.out).c_str());
}

// With augmentation and dropout on, the same seed and thread count still give the same model
// file, and the augmentation changes what is trained.
TEST(Cli, AugmentedTrainingWithDropoutIsReproducible) {
  const fs::path spec = work_dir() / "dropout_net.json";
  write_file(spec, R"({"name": "dropout_net", "input": [1, 28, 28], "layers": [
    {"type": "Conv2d", "out_channels": 8, "kernel": 3, "padding": 1}, {"type": "ReLU"},
    {"type": "MaxPool2d", "kernel": 2}, {"type": "Dropout", "p": 0.25}, {"type": "Flatten"},
    {"type": "Linear", "out_features": 32}, {"type": "ReLU"}, {"type": "Dropout", "p": 0.5},
    {"type": "Linear", "out_features": 10}]})");
  const std::string flags = " --model " + spec.string() +
                            " --data sample --epochs 1 --seed 4 --threads 2 --augment crop-flip";
  const fs::path a = work_dir() / "augment_a.safetensors", b = work_dir() / "augment_b.safetensors",
                 plain = work_dir() / "augment_none.safetensors";
  const CliRun augmented = cnn("train" + flags + " --out " + a.string());
  ASSERT_EQ(augmented.exit_code, 0);
  ASSERT_EQ(cnn("train" + flags + " --out " + b.string()).exit_code, 0);
  const CliRun unaugmented = cnn("train --model " + spec.string() +
                                 " --data sample --epochs 1 --seed 4 --threads 2 --out " +
                                 plain.string() + " --label-smoothing 0.1");
  ASSERT_EQ(unaugmented.exit_code, 0);
  EXPECT_EQ(read_file(a), read_file(b));
  EXPECT_NE(read_file(a), read_file(plain));
  // The run's first line names what is on, and only that (found 2026-12-08, a probe: label
  // smoothing alone printed "augment none (padding 2)").
  EXPECT_NE(augmented.out.find(", weight decay 0, augment crop-flip (padding 2), seed 4"),
            std::string::npos)
      << augmented.out;
  EXPECT_NE(unaugmented.out.find(", weight decay 0, label smoothing 0.1, seed 4"),
            std::string::npos)
      << unaugmented.out;
}

TEST(Cli, InfoCountsLeNet5) {
  const CliRun run = cnn("info lenet5");
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_NE(run.out.find("Total params: 61,706"), std::string::npos) << run.out;
  EXPECT_NE(run.out.find("Forward FLOPs per image: 850,794"), std::string::npos) << run.out;
  const CliRun from_file = cnn("info " + trained_model().string());
  EXPECT_NE(from_file.out.find("Total params: 61,706"), std::string::npos) << from_file.out;
}

// cnn restarts itself before any library initialises so that libgomp reads GOMP_SPINCOUNT=3000
// (cnn/openmp_spin.hpp), unless the user set the spinning. libgomp's OMP_DISPLAY_ENV=verbose
// prints the value it took, once per start of libgomp.
TEST(Cli, IdleOpenMPThreadsSpinBrieflyUnlessTheUserChoseHowLong) {
  const fs::path dir = testing::process_dir("cnn_spin_");
  const auto libgomp_spin_count = [&](const std::string& settings) {
    // env(1) clears what this test program's own hook or the caller's shell set.
    const testing::ProcessRun run =
        testing::run_process("env",
                             "-u GOMP_SPINCOUNT -u OMP_WAIT_POLICY OMP_DISPLAY_ENV=verbose " +
                                 settings + " " + CNN_CLI + " info lenet5",
                             {}, dir);
    EXPECT_EQ(run.exit_code, 0) << settings << ": " << run.err;
    EXPECT_NE(run.out.find("Total params: 61,706"), std::string::npos) << settings << run.out;
    const std::string banner = "OPENMP DISPLAY ENVIRONMENT BEGIN";
    const size_t first = run.err.find(banner);
    EXPECT_NE(first, std::string::npos) << settings << ": " << run.err;
    EXPECT_EQ(run.err.find(banner, first + 1), std::string::npos)
        << settings << ": libgomp started twice, so the restart came after it:\n"
        << run.err;
    const std::string key = "GOMP_SPINCOUNT = '";
    const size_t at = run.err.find(key);
    if (at == std::string::npos) return std::string("(not shown)");
    return run.err.substr(at + key.size(), run.err.find('\'', at + key.size()) - at - key.size());
  };
  EXPECT_EQ(libgomp_spin_count(""), "3000");
  EXPECT_EQ(libgomp_spin_count("GOMP_SPINCOUNT=5"), "5");
  EXPECT_EQ(libgomp_spin_count("OMP_WAIT_POLICY=active"), "30000000000");  // libgomp's own rule
  EXPECT_EQ(libgomp_spin_count("OMP_WAIT_POLICY=passive"), "0");
}

// Inputs the fuzzers found (scripts/fuzz.sh), each in tests/regressions/, stay refused in one
// line.
TEST(CliBadInput, FuzzFindingsStayFixed) {
  const std::string dir = std::string(CNN_SOURCE_DIR) + "/tests/regressions/";
  // fuzz_image: a PGM whose height stb read as 0 was resampled out of its 0-pixel buffer.
  expect_refusal("predict " + trained_model().string() + " " + dir + "image_zero_height.pgm",
                 {"image_zero_height.pgm: cannot decode image (PGM/PPM header: expected "
                  "whitespace after the width, got byte 0xff)"});
  // fuzz_image: stb converted a 16-bit PPM's channels with its 8-bit routine and read past
  // its buffer (an ASan SEGV; the release build predicted from stray memory).
  expect_refusal(
      "predict " + trained_model().string() + " " + dir + "image_16bit_ppm.ppm",
      {"image_16bit_ppm.ppm: cannot decode image (PGM/PPM header: maxval exceeds 65535)"});
  // fuzz_image: stb set aside an IDAT chunk's declared 1.5 GB (a 2 GiB realloc) from a 488-byte
  // PNG before finding the file too short. The release build's line was the same (the chunks
  // were walked after stb failed); the sanitizer build's allocator, capped here, aborts on it.
  expect_refusal("predict " + trained_model().string() + " " + dir + "image_png_chunk_past_end.png",
                 {"image_png_chunk_past_end.png: cannot decode image (truncated PNG: its 'IDAT' "
                  "chunk runs to byte 1560323478, the file ends at byte 488)"},
                 "ASAN_OPTIONS=\"$ASAN_OPTIONS:max_allocation_size_mb=64\"");
  // fuzz_spec: {"name": 1} escaped the spec reader as a JSON library exception.
  expect_refusal("info " + dir + "spec_numeric_name.json",
                 {"spec_numeric_name.json: 'name' expects a string, got 1"});
}

/// The lines of `text`.
std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

TEST(Cli, InfoShowsTheNestingOfResidualBlocks) {
  const CliRun run = cnn("info resnet");
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_NE(run.out.find("Total params: 308,074"), std::string::npos) << run.out;
  // The block's row (its totals), then its layers indented under their state_dict prefixes.
  const auto columns = [](const std::string& line) { return testing::split_words(line); };
  std::vector<std::string> rows = lines_of(run.out);
  const auto row = [&](const std::string& label) {
    for (const std::string& line : rows)
      if (line.rfind(label + " ", 0) == 0) return line;
    ADD_FAILURE() << "no row " << label << " in\n" << run.out;
    return std::string();
  };
  EXPECT_NE(row("5").find("Residual(shortcut=projection, activation=ReLU)"), std::string::npos);
  EXPECT_EQ(columns(row("5")).back(), "5,647,936");
  EXPECT_EQ(columns(row("5")).end()[-2], "57,728");
  EXPECT_NE(row("  5.body.0").find("Conv2d(32, 64, kernel=(3, 3), stride=(2, 2)"),
            std::string::npos);
  EXPECT_NE(row("  5.shortcut.1").find("BatchNorm2d(64, eps=1e-05, momentum=0.1, affine=true)"),
            std::string::npos);
  EXPECT_NE(row("4").find("Residual(shortcut=identity, activation=ReLU)"), std::string::npos);
  EXPECT_EQ(run.out.find("4.shortcut"), std::string::npos) << run.out;
}

// The table's columns line up: the longest description (a 72-character Conv2d) pushed the
// output shapes of most of resnet's rows out of their column before 2026-12-06.
TEST(Cli, InfoTableColumnsLineUp) {
  for (const std::string preset : {"lenet5", "convnet", "resnet"}) {
    SCOPED_TRACE(preset);
    const CliRun run = cnn("info " + preset);
    ASSERT_EQ(run.exit_code, 0) << run.err;
    const std::vector<std::string> lines = lines_of(run.out);
    ASSERT_GE(lines.size(), 6u);
    const std::string& header = lines[2];
    const size_t shape_at = header.find("Output Shape");
    ASSERT_NE(shape_at, std::string::npos) << run.out;
    EXPECT_EQ(lines[1].size(), header.size());
    size_t rows = 0;
    for (size_t i = 4; i < lines.size() && lines[i][0] != '='; ++i, ++rows) {
      EXPECT_EQ(lines[i].size(), header.size()) << lines[i];
      EXPECT_EQ(lines[i].find("(None"), shape_at) << lines[i];
      EXPECT_EQ(lines[i][shape_at - 1], ' ') << lines[i];
    }
    EXPECT_GE(rows, 8u) << run.out;
  }
}

// `cnn info --json` is what the Python tools build their PyTorch modules from: the canonical
// spec (which parses back to the same spec), and each layer's state_dict names and shapes.
TEST(Cli, InfoJsonGivesTheSpecAndTheStateDict) {
  for (const std::string preset : {"lenet5", "convnet", "seed", "resnet"}) {
    const CliRun run = cnn("info " + preset + " --json");
    ASSERT_EQ(run.exit_code, 0) << run.err;
    const Json info = Json::parse(run.out);
    const ModelSpec spec = preset_spec(preset);
    EXPECT_EQ(info.at("spec"), Json::parse(to_json(spec))) << preset;
    EXPECT_EQ(to_json(parse_model_spec(info.at("spec").dump(), "info")), to_json(spec));
    Sequential<float> model = build_model(spec);
    EXPECT_EQ(info.at("parameters").get<int64_t>(), model.parameter_count());
    std::vector<std::string> names;
    for (const Json& layer : info.at("layers")) {
      for (const Json& tensor : layer.at("state_dict")) names.push_back(tensor.at("name"));
    }
    std::vector<std::string> expected;
    for (const auto& p : model.named_parameters()) expected.push_back(p.name);
    EXPECT_EQ(names, expected) << preset;
    EXPECT_EQ(info.at("layers").size(), model.size());
  }
  const Json lenet = Json::parse(cnn("info lenet5 --json").out);
  EXPECT_EQ(lenet.at("flops").get<double>(), 850794.0);
  EXPECT_EQ(lenet.at("layers").at(0).at("state_dict").at(0).at("shape"), Json::array({6, 1, 5, 5}));
  EXPECT_EQ(lenet.at("layers").at(6).at("output_shape"), Json::array({400}));
}

// bench/specs/ holds the networks that docs/design-notes.md ("The resnet preset") weighs the
// preset against with bench/compare_specs.py, and the classic LeNet-5 with Tanh and average
// pooling that "Average pooling, 2x2 and 3x3 windows" measures, and the CIFAR-style ResNet-20 of
// "kAuto's exception for narrow layers": each must stay a valid spec of
// the network its text names (the parameter counts are the notes').
TEST(Cli, BenchSpecsAreTheNetworksTheDesignNotesCompare) {
  const std::vector<std::pair<std::string, int64_t>> specs = {
      {"resnet16-28x28", 77754},    {"resnet24-28x28", 173842}, {"resnet16x2-28x28", 174970},
      {"resnet48-pool", 690970},    {"lenet5-tanh", 61706},     {"resnet20-cifar", 272474},
      {"resnet-stem7x7-64", 314954}};
  const std::string dir = std::string(CNN_SOURCE_DIR) + "/bench/specs/";
  size_t files = 0;
  for (const auto& entry : fs::directory_iterator(dir))
    files += entry.path().extension() == ".json";
  EXPECT_EQ(files, specs.size()) << "a spec in " << dir << " that this test does not know";
  for (const auto& [name, parameters] : specs) {
    const CliRun run = cnn("info " + dir + name + ".json --json");
    ASSERT_EQ(run.exit_code, 0) << name << ": " << run.err;
    const Json info = Json::parse(run.out);
    EXPECT_EQ(info.at("spec").at("name"), name);
    EXPECT_EQ(info.at("parameters").get<int64_t>(), parameters) << name;
  }
}

TEST(Cli, PredictClassifiesAPgmImage) {
  // A 28x28 PGM of the first sample test image (a class-9 ankle boot).
  const Dataset test =
      read_idx_dataset(resolve_maybe_gz(std::string(CNN_SAMPLE_DIR) + "/t10k-images-idx3-ubyte"),
                       resolve_maybe_gz(std::string(CNN_SAMPLE_DIR) + "/t10k-labels-idx1-ubyte"));
  const fs::path pgm = work_dir() / "boot.pgm";
  write_file(pgm, "P5\n28 28\n255\n" +
                      std::string(test.images.pixels.begin(), test.images.pixels.begin() + 784));
  const CliRun run =
      cnn("predict " + trained_model().string() + " " + pgm.string() + " --top 2 --json");
  ASSERT_EQ(run.exit_code, 0) << run.err;
  const Json j = Json::parse(run.out);
  ASSERT_EQ(j.at("predictions").size(), 1u);
  EXPECT_EQ(j["predictions"][0]["top"].size(), 2u);
  EXPECT_GT(j["predictions"][0]["top"][0]["probability"].get<double>(), 0.0);
}

TEST(Cli, PredictReadsPngJpegAndBmpAndResizesToTheModel) {
  // The first sample test image (an ankle boot), upscaled 2x and written in three formats.
  const Dataset test =
      read_idx_dataset(resolve_maybe_gz(std::string(CNN_SAMPLE_DIR) + "/t10k-images-idx3-ubyte"),
                       resolve_maybe_gz(std::string(CNN_SAMPLE_DIR) + "/t10k-labels-idx1-ubyte"));
  std::vector<unsigned char> big(56 * 56);
  for (int y = 0; y < 56; ++y)
    for (int x = 0; x < 56; ++x)
      big[static_cast<size_t>(y * 56 + x)] =
          test.images.pixels[static_cast<size_t>((y / 2) * 28 + x / 2)];
  const std::string png = (work_dir() / "boot.png").string(),
                    jpg = (work_dir() / "boot.jpg").string(),
                    bmp = (work_dir() / "boot.bmp").string();
  ASSERT_TRUE(stbi_write_png(png.c_str(), 56, 56, 1, big.data(), 56));
  ASSERT_TRUE(stbi_write_jpg(jpg.c_str(), 56, 56, 1, big.data(), 95));
  ASSERT_TRUE(stbi_write_bmp(bmp.c_str(), 56, 56, 1, big.data()));
  const CliRun run =
      cnn("predict " + trained_model().string() + " " + png + " " + jpg + " " + bmp + " --json");
  ASSERT_EQ(run.exit_code, 0) << run.err;
  const Json j = Json::parse(run.out);
  ASSERT_EQ(j.at("predictions").size(), 3u);
  // The three encodings of one picture get the same top class.
  EXPECT_EQ(j["predictions"][0]["top"][0]["class"], j["predictions"][1]["top"][0]["class"]);
  EXPECT_EQ(j["predictions"][0]["top"][0]["class"], j["predictions"][2]["top"][0]["class"]);
  const CliRun text = cnn("predict " + trained_model().string() + " " + png);
  EXPECT_NE(text.out.find(png + ":"), std::string::npos) << text.out;
}

// `cnn predict --json --top 10` on `images`: one "top" list per image.
std::vector<Json> top_ten(const fs::path& model, const std::vector<std::string>& images) {
  std::string args = "predict " + model.string() + " --json --top 10";
  for (const std::string& image : images) args += " " + image;
  const CliRun run = cnn(args);
  EXPECT_EQ(run.exit_code, 0) << run.err;
  std::vector<Json> tops;
  if (run.exit_code != 0) return tops;
  const Json output = Json::parse(run.out);
  for (const Json& prediction : output.at("predictions")) tops.push_back(prediction.at("top"));
  return tops;
}

/// A colour picture of `size` x `size` pixels, RGB interleaved, every channel different.
std::vector<unsigned char> colour_picture(int size) {
  std::vector<unsigned char> rgb;
  for (int i = 0; i < size * size; ++i) {
    rgb.push_back(static_cast<unsigned char>(i * 7));
    rgb.push_back(static_cast<unsigned char>(i * 13 + 5));
    rgb.push_back(static_cast<unsigned char>(255 - i * 3));
  }
  return rgb;
}

/// `bytes` as 16-bit big-endian samples of the same value (v * 257 of 65535).
std::string widened(const std::vector<unsigned char>& bytes) {
  std::string out;
  for (unsigned char v : bytes) out += std::string(2, static_cast<char>(v));
  return out;
}

// PGM and PPM (read by predict's own reader) give the pixels that stb gives for the same
// picture as PNG or BMP: at 8 and 16 bits, with comments and any whitespace in the header,
// with other maxvals (k of 15 is 17k of 255; s of 1000 rounds to the nearest of 255), and a
// colour file made grey by the same luminance.
TEST(Cli, PredictReadsPgmAndPpmAsPngAndBmpAtEveryDepth) {
  const Dataset test =
      read_idx_dataset(resolve_maybe_gz(std::string(CNN_SAMPLE_DIR) + "/t10k-images-idx3-ubyte"),
                       resolve_maybe_gz(std::string(CNN_SAMPLE_DIR) + "/t10k-labels-idx1-ubyte"));
  const std::vector<unsigned char> grey(test.images.pixels.begin(),
                                        test.images.pixels.begin() + 784);
  const std::string raw(grey.begin(), grey.end());
  const auto path = [](const std::string& name) { return (work_dir() / name).string(); };
  write_file(path("grey8.pgm"), "P5\n28 28\n255\n" + raw);
  write_file(path("grey16.pgm"), "P5 28 28 65535\n" + widened(grey));
  // Samples of maxval 1000 that round back to the 8-bit values: round(s * 255 / 1000) = v.
  std::string thousandths;
  for (unsigned char v : grey) {
    const int sample = (v * 1000 + 127) / 255;
    thousandths += static_cast<char>(sample >> 8);
    thousandths += static_cast<char>(sample & 0xFF);
  }
  write_file(path("grey1000.pgm"), "P5 28 28 1000\n" + thousandths);
  write_file(path("grey_comments.pgm"), "P5#made by hand\n28\t# width\n\r28\f255\v" + raw);
  ASSERT_TRUE(stbi_write_png(path("grey.png").c_str(), 28, 28, 1, grey.data(), 28));
  ASSERT_TRUE(stbi_write_bmp(path("grey.bmp").c_str(), 28, 28, 1, grey.data()));
  const std::vector<Json> greys =
      top_ten(trained_model(), {path("grey.png"), path("grey8.pgm"), path("grey16.pgm"),
                                path("grey1000.pgm"), path("grey_comments.pgm"), path("grey.bmp")});
  ASSERT_EQ(greys.size(), 6u);
  for (size_t i = 1; i < greys.size(); ++i) EXPECT_EQ(greys[i], greys[0]) << "image " << i;

  std::vector<unsigned char> coarse;  // 16 grey levels: 17k of 255
  std::string levels;
  for (unsigned char v : grey) {
    coarse.push_back(static_cast<unsigned char>(v / 17 * 17));
    levels += static_cast<char>(v / 17);
  }
  write_file(path("levels15.pgm"), "P5 28 28 15\n" + levels);
  ASSERT_TRUE(stbi_write_png(path("coarse.png").c_str(), 28, 28, 1, coarse.data(), 28));
  const std::vector<Json> coarses =
      top_ten(trained_model(), {path("coarse.png"), path("levels15.pgm")});
  ASSERT_EQ(coarses.size(), 2u);
  EXPECT_EQ(coarses[1], coarses[0]);
  EXPECT_NE(coarses[0], greys[0]);  // the picture did change

  const std::vector<unsigned char> rgb = colour_picture(28);
  write_file(path("colour8.ppm"), "P6 28 28 255\n" + std::string(rgb.begin(), rgb.end()));
  write_file(path("colour16.ppm"), "P6 28 28 65535\n" + widened(rgb));
  ASSERT_TRUE(stbi_write_png(path("colour.png").c_str(), 28, 28, 3, rgb.data(), 28 * 3));
  const std::vector<Json> colours =
      top_ten(trained_model(), {path("colour.png"), path("colour8.ppm"), path("colour16.ppm")});
  ASSERT_EQ(colours.size(), 3u);
  EXPECT_EQ(colours[1], colours[0]);
  EXPECT_EQ(colours[2], colours[0]);
}

// A 3-channel model (trained on a few CIFAR-10 records) gets RGB from a PPM as from a PNG, and
// a PGM's grey replicated into three channels as stb replicates a grey PNG's.
TEST(Cli, PredictGivesAnRgbModelTheSameChannelsFromEveryFormat) {
  const fs::path cifar = work_dir() / "cifar_tiny";
  fs::create_directories(cifar);
  std::string records;
  for (int r = 0; r < 8; ++r) {
    records += static_cast<char>(r % 10);
    for (int i = 0; i < 3072; ++i) records += static_cast<char>((i * (r + 3)) % 251);
  }
  write_file(cifar / "data_batch_1.bin", records);
  write_file(cifar / "test_batch.bin", records);
  const fs::path spec = work_dir() / "rgb_linear.json";
  write_file(spec, R"({"input": [3, 32, 32], "layers": [{"type": "Flatten"},
    {"type": "Linear", "out_features": 10}]})");
  const fs::path model = work_dir() / "rgb_linear.safetensors";
  const CliRun train = cnn("train --model " + spec.string() + " --data " + cifar.string() +
                           " --epochs 1 --batch 4 --out " + model.string());
  ASSERT_EQ(train.exit_code, 0) << train.err;
  const auto path = [](const std::string& name) { return (work_dir() / name).string(); };
  const std::vector<unsigned char> rgb = colour_picture(32);
  write_file(path("rgb8.ppm"), "P6 32 32 255\n" + std::string(rgb.begin(), rgb.end()));
  write_file(path("rgb16.ppm"), "P6 32 32 65535\n" + widened(rgb));
  ASSERT_TRUE(stbi_write_png(path("rgb.png").c_str(), 32, 32, 3, rgb.data(), 32 * 3));
  std::vector<unsigned char> grey;
  for (size_t i = 0; i < rgb.size(); i += 3) grey.push_back(rgb[i + 1]);
  write_file(path("grey32.pgm"), "P5 32 32 255\n" + std::string(grey.begin(), grey.end()));
  ASSERT_TRUE(stbi_write_png(path("grey32.png").c_str(), 32, 32, 1, grey.data(), 32));
  const std::vector<Json> tops =
      top_ten(model, {path("rgb.png"), path("rgb8.ppm"), path("rgb16.ppm"), path("grey32.png"),
                      path("grey32.pgm")});
  ASSERT_EQ(tops.size(), 5u);
  EXPECT_EQ(tops[1], tops[0]);
  EXPECT_EQ(tops[2], tops[0]);
  EXPECT_EQ(tops[4], tops[3]);
  EXPECT_NE(tops[3], tops[0]);
}

// ---- bad input ----------------------------------------------------------------------------

std::string idx_header(uint32_t magic, std::vector<uint32_t> dims) {
  std::string out;
  dims.insert(dims.begin(), magic);
  for (uint32_t v : dims) {
    for (int i = 3; i >= 0; --i) out += static_cast<char>((v >> (8 * i)) & 0xFF);
  }
  return out;
}

/// A data directory holding valid IDX files of 4 training and 2 test images, with `edit`
/// applied to the file contents first.
fs::path data_dir(const std::string& name,
                  const std::function<void(std::map<std::string, std::string>&)>& edit) {
  const fs::path dir = work_dir() / name;
  fs::create_directories(dir);
  std::map<std::string, std::string> files = {
      {"train-images-idx3-ubyte", idx_header(0x803, {4, 28, 28}) + std::string(4 * 784, '\x10')},
      {"train-labels-idx1-ubyte", idx_header(0x801, {4}) + std::string("\x00\x01\x02\x03", 4)},
      {"t10k-images-idx3-ubyte", idx_header(0x803, {2, 28, 28}) + std::string(2 * 784, '\x20')},
      {"t10k-labels-idx1-ubyte", idx_header(0x801, {2}) + std::string("\x01\x02", 2)}};
  edit(files);
  for (const auto& [file, bytes] : files) write_file(dir / file, bytes);
  return dir;
}

// Found 2026-12-08 (a probe): a dataset without class names counts its classes to its largest
// label; eval reads the test set alone, whose labels here end at 2, and refused a model trained
// on "classes" [1, 3] ("uses class 3 but the dataset has 3") that train had evaluated on the
// same test set. Class 3 has no test image, as in train's own test pass.
TEST(Cli, EvalTakesTheTestSetThatTrainEvaluatedWhenItLacksAClass) {
  const fs::path data = data_dir("subset_data", [](auto&) {});  // train 0-3, test 1 and 2
  const fs::path spec = work_dir() / "subset.json";
  write_file(spec, R"({"name": "subset", "input": [1, 28, 28], "classes": [1, 3],
    "layers": [{"type": "Flatten"}, {"type": "Linear", "out_features": 2}]})");
  const fs::path model = work_dir() / "subset.safetensors";
  const CliRun trained = cnn("train --model " + spec.string() + " --data " + data.string() +
                             " --epochs 1 --out " + model.string());
  ASSERT_EQ(trained.exit_code, 0) << trained.err;
  const CliRun evaluated = cnn("eval " + model.string() + " --data " + data.string());
  ASSERT_EQ(evaluated.exit_code, 0) << evaluated.err;
  // The one test image of class 1, as train counted it.
  EXPECT_NE(trained.out.find("/1), test loss"), std::string::npos) << trained.out;
  EXPECT_NE(evaluated.out.find("/1)\n"), std::string::npos) << evaluated.out;
  EXPECT_NE(evaluated.out.find("   1 3               none (no test images)"), std::string::npos)
      << evaluated.out;
}

TEST(CliBadInput, Datasets) {
  expect_refusal("train --data " + (work_dir() / "no_such_dir").string(),
                 {"--data", "no such directory"});
  // Found 2026-12-08 (a probe): a label of 255 was "256 classes", and "classes" that no test
  // image has failed in train_model's words after the run's first line.
  expect_refusal(
      "train --data " +
          data_dir("label_255", [](auto& f) { f["train-labels-idx1-ubyte"][11] = '\xff'; })
              .string(),
      {": its labels run to 255 (256 classes), but model lenet5 outputs 10"});
  const fs::path absent = work_dir() / "absent_classes.json";
  write_file(absent, R"({"name": "absent", "input": [1, 28, 28], "classes": [0, 3],
    "layers": [{"type": "Flatten"}, {"type": "Linear", "out_features": 2}]})");
  expect_refusal("train --model " + absent.string() + " --data " +
                     data_dir("absent_data", [](auto&) {}).string(),
                 {": no test image has one of the classes [0, 3] that model absent uses "
                  "(expected at least one)"});
  const fs::path ok = data_dir("ok_data", [](auto&) {});
  ASSERT_EQ(cnn("train --data " + ok.string() + " --epochs 1 --out " +
                (work_dir() / "tiny.safetensors").string())
                .exit_code,
            0);
  expect_refusal(
      "train --data " +
          data_dir("truncated", [](auto& f) { f["train-images-idx3-ubyte"].resize(1000); })
              .string(),
      {"train-images-idx3-ubyte", "truncated"});
  expect_refusal(
      "train --data " +
          data_dir("magic", [](auto& f) { f["t10k-labels-idx1-ubyte"][3] = 0x03; }).string(),
      {"t10k-labels-idx1-ubyte", "magic number 0x00000801, got 0x00000803"});
  expect_refusal("train --data " + data_dir("count",
                                            [](auto& f) {
                                              f["train-labels-idx1-ubyte"] =
                                                  idx_header(0x801, {3}) +
                                                  std::string("\x00\x01\x02", 3);
                                            })
                                       .string(),
                 {"train-labels-idx1-ubyte", "holds 3 labels but", "holds 4 images"});
  expect_refusal("train --data " + data_dir("empty_dir_files", [](auto& f) { f.clear(); }).string(),
                 {"--data", "expected train-images-idx3-ubyte"});
  // A gzip stream that breaks off: zlib reports the corruption, we name the file.
  const fs::path corrupt =
      data_dir("corrupt_gz", [](auto& f) { f.erase("train-images-idx3-ubyte"); });
  write_file(corrupt / "train-images-idx3-ubyte.gz",
             std::string("\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03garbage!", 18));
  expect_refusal("train --data " + corrupt.string(), {"train-images-idx3-ubyte.gz"});
}

// Found 2026-12-06 by a helper's probe: eval read (and needed) the training files it does not
// use; --json listed fewer class names than the model has classes; predict printed "-nan%"
// for a model whose outputs overflow; `cnn info lenet` (a mistyped preset) spoke of a
// safetensors file.
TEST(CliBadInput, EvalReadsTheTestSetAloneAndNamesEveryClass) {
  const fs::path model = work_dir() / "tiny_eval.safetensors";
  const fs::path ok = data_dir("eval_ok", [](auto&) {});
  ASSERT_EQ(cnn("train --data " + ok.string() + " --epochs 1 --out " + model.string()).exit_code,
            0);
  const fs::path test_only = data_dir("eval_test_only", [](auto& f) {
    f.erase("train-images-idx3-ubyte");
    f.erase("train-labels-idx1-ubyte");
  });
  const fs::path bad_train =
      data_dir("eval_bad_train", [](auto& f) { f["train-labels-idx1-ubyte"][3] = 0x03; });
  for (const fs::path& dir : {test_only, bad_train}) {
    const CliRun eval = cnn("eval " + model.string() + " --data " + dir.string() + " --json");
    ASSERT_EQ(eval.exit_code, 0) << eval.err;
    const Json j = Json::parse(eval.out);
    EXPECT_EQ(j.at("samples"), 2);
    // The data's labels run to 2, the model (lenet5) has 10 classes: one name for each.
    EXPECT_EQ(j.at("class_names").size(), 10u) << j.at("class_names");
    EXPECT_EQ(j.at("per_class_accuracy").size(), 10u);
  }
  expect_refusal(
      "eval " + model.string() + " --data " + (work_dir() / "eval_ok").string() + "/missing",
      {"no such directory"});
  expect_refusal("eval " + model.string() + " --data " +
                     data_dir("eval_no_test",
                              [](auto& f) {
                                f.erase("t10k-images-idx3-ubyte");
                                f.erase("t10k-labels-idx1-ubyte");
                              })
                         .string(),
                 {"expected the test set, t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte"});
  // Weights that are finite but overflow float: the outputs are inf - inf = nan.
  ModelFile file = load_model(model.string());
  for (auto& p : file.model.named_parameters())
    for (int64_t i = 0; i < p.value.numel(); ++i) p.value[i] = 3e38f;
  const fs::path overflowing = work_dir() / "overflowing.safetensors";
  save_model(overflowing.string(), file.model, file.spec, file.class_names);
  const fs::path pgm = work_dir() / "overflowing.pgm";
  write_file(pgm, "P5\n28 28\n255\n" + std::string(784, '\x80'));
  expect_refusal("predict " + overflowing.string() + " " + pgm.string(),
                 {"overflowing.pgm: the model's output 0 is",
                  "for this image (its weights "
                  "overflow float)"});
  // Found 2026-12-07 by a helper's probe: eval said only "CrossEntropyLoss(): expected finite
  // predictions, got inf at index 0", naming neither the model file nor the image.
  expect_refusal("eval " + overflowing.string() + " --data sample",
                 {overflowing.string() + ": evaluate: test image 0: the model's output ",
                  "(its weights overflow float)"});
  expect_refusal("info lenet",
                 {"lenet: neither a preset (lenet5, convnet, resnet, seed), a spec file nor a "
                  "model file"});
}

/// The bytes of a safetensors file with this header text and data.
std::string safetensors(const std::string& header, const std::string& data) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i)
    out[static_cast<size_t>(i)] = static_cast<char>((header.size() >> (8 * i)) & 0xFF);
  return out + header + data;
}

/// Writes `bytes` to work_dir()/name and expects `cnn eval` to refuse it in one line naming the
/// file and every fragment.
void expect_model_file_refused(const std::string& name, const std::string& bytes,
                               const std::vector<std::string>& fragments) {
  const fs::path path = work_dir() / name;
  write_file(path, bytes);
  std::vector<std::string> all = fragments;
  all.push_back(path.string());
  expect_refusal("eval " + path.string() + " --data sample", all);
}

TEST(CliBadInput, ModelFiles) {
  const auto& refused = expect_model_file_refused;
  const std::string good = read_file(trained_model());
  refused("truncated.safetensors", good.substr(0, good.size() / 2), {"outside"});
  refused("tiny.safetensors", good.substr(0, 5), {"truncated"});
  std::string past_end = good;
  past_end[6] = '\x01';  // header length of about 2^48
  refused("past_end.safetensors", past_end, {"header length", "past the end"});
  // Headers edited by hand: a LeNet-5 file needs ten tensors, so a one-tensor file is missing
  // the rest; the other defects are each tried on their own.
  const std::string meta =
      R"("__metadata__":{"format":"cnn","format_version":"1","architecture":)" +
      Json(to_json(preset_spec("lenet5"))).dump() + "}";
  refused(
      "offsets.safetensors",
      safetensors("{" + meta + R"(,"0.bias":{"dtype":"F32","shape":[6],"data_offsets":[0,2400]}})",
                  std::string(24, '\0')),
      {"0.bias", "outside"});
  refused(
      "shape.safetensors",
      safetensors("{" + meta + R"(,"0.bias":{"dtype":"F32","shape":[7],"data_offsets":[0,24]}})",
                  std::string(24, '\0')),
      {"0.bias", "needs 28 bytes"});
  refused(
      "duplicate.safetensors",
      safetensors(
          "{" + meta +
              R"(,"0.bias":{"dtype":"F32","shape":[6],"data_offsets":[0,24]},"0.bias":{"dtype":"F32","shape":[6],"data_offsets":[0,24]}})",
          std::string(24, '\0')),
      {"duplicate tensor '0.bias'"});
  refused(
      "missing.safetensors",
      safetensors("{" + meta + R"(,"0.bias":{"dtype":"F32","shape":[6],"data_offsets":[0,24]}})",
                  std::string(24, '\0')),
      {"missing tensor '0.weight'"});
  std::string version = good;
  const size_t at = version.find(R"("format_version":"1")");
  ASSERT_NE(at, std::string::npos);
  version[at + std::string(R"("format_version":")").size()] = '7';
  refused("version.safetensors", version, {"unknown format version '7'"});
  expect_refusal("eval " + (work_dir() / "absent.safetensors").string() + " --data sample",
                 {"absent.safetensors", "cannot open"});
}

// A directory, a device or a pipe where a loader expects a file: one line naming it. Before,
// a directory passed as a model file or checkpoint was sized by its ext4 size (2^63 - 1) and
// ended in "std::bad_alloc", and a pipe hung the loader in its open.
TEST(CliBadInput, DirectoriesDevicesAndPipesAreNotFiles) {
  const fs::path folder = work_dir() / "folder.safetensors";
  fs::create_directories(folder);
  expect_refusal("info " + folder.string(),
                 {"folder.safetensors: expected a safetensors file, got a directory"});
  expect_refusal("eval /dev/zero --data sample",
                 {"/dev/zero: expected a safetensors file, got a device"});
  const fs::path pipe = work_dir() / "pipe.safetensors";
  ASSERT_EQ(::mkfifo(pipe.c_str(), 0600), 0);
  // Opening a pipe waits for a writer, so a loader that opened it would hang: a time limit.
  const testing::ProcessRun piped =
      testing::run_process(CNN_CLI, "eval " + pipe.string() + " --data sample", {}, work_dir(), 60);
  EXPECT_FALSE(piped.timed_out) << "cnn eval opened the pipe and waited for a writer";
  EXPECT_EQ(piped.exit_code, 1) << piped.err;
  EXPECT_EQ(piped.err, "cnn: " + pipe.string() + ": expected a safetensors file, got a pipe\n");
  const testing::ProcessRun image = testing::run_process(
      CNN_CLI, "predict " + trained_model().string() + " " + pipe.string(), {}, work_dir(), 60);
  EXPECT_FALSE(image.timed_out) << "cnn predict opened the pipe and waited for a writer";
  EXPECT_EQ(image.exit_code, 1) << image.err;
  EXPECT_NE(image.err.find("pipe.safetensors: cannot decode image (not a regular file"),
            std::string::npos)
      << image.err;
  const fs::path checkpoint = work_dir() / "folder.ckpt";
  fs::create_directories(checkpoint);
  expect_refusal("train --resume " + checkpoint.string(),
                 {"folder.ckpt: expected a checkpoint, got a directory"});
  const fs::path idx = data_dir("idx_folder", [](auto& f) { f.erase("train-images-idx3-ubyte"); });
  fs::create_directories(idx / "train-images-idx3-ubyte");
  expect_refusal("train --data " + idx.string(),
                 {"train-images-idx3-ubyte: expected an IDX file, got a directory"});
  // A file where the data directory belongs is not "no such directory".
  expect_refusal("train --data " + trained_model().string(),
                 {"--data " + trained_model().string() + ": not a directory (expected"});
  const fs::path cifar = work_dir() / "cifar_folder";
  fs::create_directories(cifar / "data_batch_1.bin");
  expect_refusal("train --data " + cifar.string(),
                 {"data_batch_1.bin: expected a CIFAR-10 batch, got a directory"});
}

// Found 2026-12-06: `cnn train --out /dev/null` trained, then (as root) replaced the device
// with the model and wrote /dev/null.csv, .svg, .ckpt and .lock beside it; `--out m.lock`
// wrote the model where the run's lock file was and removed it with the lock at the end. Each
// is now refused before any training (no "training ..." line). A device node made here
// stands in for /dev/null, so that a regression cannot harm the machine that runs the test.
TEST(CliBadInput, RunFilesThatAreNotRegularFilesAreRefusedBeforeTraining) {
  const fs::path dir = work_dir() / "special_outs";
  fs::create_directories(dir);
  const auto refused_before_training = [&](const std::string& args, const std::string& message) {
    SCOPED_TRACE("cnn " + args);
    expect_refusal(args, {message});
    EXPECT_EQ(cnn(args).out.find("training"), std::string::npos);
  };
  const fs::path pipe = dir / "pipe.safetensors";
  ASSERT_EQ(::mkfifo(pipe.c_str(), 0600), 0);
  refused_before_training("train --data sample --epochs 1 --out " + pipe.string(),
                          "--out " + pipe.string() + ": the run writes " + pipe.string() +
                              ", which is a pipe (expected a regular file or none)");
  fs::create_directories(dir / "run.ckpt");
  refused_before_training(
      "train --data sample --epochs 1 --out " + (dir / "run.safetensors").string(),
      "run.ckpt, which is a directory (expected a regular file or none)");
  fs::create_directories(dir / "folder.safetensors");
  refused_before_training(
      "train --data sample --epochs 1 --out " + (dir / "folder.safetensors").string(),
      "folder.safetensors, which is a directory");
  refused_before_training(
      "train --data sample --epochs 1 --out " + (dir / "m.lock").string(),
      "--out names the model file; the .csv, .svg, .ckpt and .lock go next to it");
  // A link into a directory that is not there: the model file failed once the whole run had
  // trained, a checkpoint at its first write (found 2026-12-07 by a helper's probe).
  fs::create_symlink("nowhere/m.safetensors", dir / "dangling.safetensors");
  refused_before_training(
      "train --data sample --epochs 1 --out " + (dir / "dangling.safetensors").string(),
      "--out " + (dir / "dangling.safetensors").string() + ": the run writes " +
          (dir / "dangling.safetensors").string() + ", a link to " +
          (dir / "nowhere/m.safetensors").string() + ", whose directory " +
          (dir / "nowhere").string() + " does not exist");
  fs::create_symlink("gone/d.ckpt", dir / "d.ckpt");
  refused_before_training(
      "train --data sample --epochs 1 --out " + (dir / "d.safetensors").string(),
      (dir / "d.ckpt").string() + ", a link to " + (dir / "gone/d.ckpt").string() +
          ", whose directory");
  EXPECT_FALSE(fs::exists(dir / "d.safetensors"));
  const fs::path null = dir / "null";
  if (::mknod(null.c_str(), S_IFCHR | 0666, ::makedev(1, 3)) == 0) {  // needs root, as in CI
    refused_before_training("train --data sample --epochs 1 --out " + null.string(),
                            "null, which is a device");
    EXPECT_EQ(fs::status(null).type(), fs::file_type::character);
    EXPECT_FALSE(fs::exists(dir / "null.csv"));
    EXPECT_FALSE(fs::exists(dir / "null.ckpt"));
    EXPECT_FALSE(fs::exists(dir / "null.lock"));
    fs::create_symlink(null, dir / "null.onnx");
    expect_refusal("convert " + trained_model().string() + " " + (dir / "null.onnx").string(),
                   {"null.onnx: cannot write: expected a regular file to replace (or none), got "
                    "a device"});
    EXPECT_EQ(fs::status(null).type(), fs::file_type::character);
  } else {
    std::printf("no device node case: mknod: %s\n", std::strerror(errno));
  }
  const fs::path onnx_pipe = dir / "pipe.onnx";
  ASSERT_EQ(::mkfifo(onnx_pipe.c_str(), 0600), 0);
  expect_refusal("convert " + trained_model().string() + " " + onnx_pipe.string(),
                 {"pipe.onnx: cannot write: expected a regular file to replace (or none), got a "
                  "pipe"});
  EXPECT_EQ(fs::status(onnx_pipe).type(), fs::file_type::fifo);
  // A file at OUT.lock that is not a run's lock (which holds a pid) is not the run's to empty
  // and remove.
  write_file(dir / "notes.lock", "my notes");
  refused_before_training(
      "train --data sample --epochs 1 --out " + (dir / "notes.safetensors").string(),
      "notes.lock is there and is not a cnn lock file (a run's lock holds its pid)");
  EXPECT_EQ(read_file(dir / "notes.lock"), "my notes");
  // Written through, a link named like the other format would have a conversion replace its
  // own input.
  const fs::path input = dir / "input.safetensors", alias = dir / "alias.onnx";
  fs::copy_file(trained_model(), input);
  fs::create_symlink("input.safetensors", alias);
  expect_refusal("convert " + input.string() + " " + alias.string(),
                 {"convert: " + alias.string() + " is " + input.string() +
                  " (through a link); expected another file"});
  EXPECT_EQ(read_file(input), read_file(trained_model()));
  // A link to a regular file is written through: the link stays, its target holds the model.
  const fs::path target = dir / "target.safetensors", link = dir / "latest.safetensors";
  fs::create_symlink("target.safetensors", link);
  ASSERT_EQ(cnn("train --data sample --epochs 1 --out " + link.string()).exit_code, 0);
  EXPECT_TRUE(fs::is_symlink(link));
  EXPECT_NO_THROW(load_model(target.string()));
}

// Found 2026-12-06 (a helper's probe): with a link m.csv -> m.safetensors a run wrote its
// metrics over its model and exited 0; `--out spec.safetensors` through a link to the spec,
// or an --out in the data directory, wrote the model over what the run read; `--out m.onnx`
// wrote safetensors under that name, and `--out run/` trained the whole run and then could not
// write a directory. All are refused before training, and nothing is written.
TEST(CliBadInput, RunFilesThatAreOneAnotherOrTheRunsInputsAreRefusedBeforeTraining) {
  const fs::path dir = work_dir() / "aliased_outs";
  fs::create_directories(dir);
  const auto refused_before_training = [&](const std::string& args, const std::string& message) {
    SCOPED_TRACE("cnn " + args);
    expect_refusal(args, {message});
    EXPECT_EQ(cnn(args).out.find("training"), std::string::npos);
  };
  const std::string out = (dir / "m.safetensors").string();
  write_file(dir / "m.safetensors", "a model");
  fs::create_symlink("m.safetensors", dir / "m.csv");
  refused_before_training("train --data sample --epochs 1 --out " + out,
                          "--out " + out + ": the run writes " + out + " and " +
                              (dir / "m.csv").string() +
                              ", which are one file (through a link): expected 5 different files");
  EXPECT_EQ(read_file(dir / "m.safetensors"), "a model");
  // Neither file there yet: the link still makes them one.
  const std::string fresh = (dir / "f.safetensors").string();
  fs::create_symlink("f.safetensors", dir / "f.ckpt");
  refused_before_training("train --data sample --epochs 1 --out " + fresh,
                          "which are one file (through a link)");
  EXPECT_FALSE(fs::exists(dir / "f.safetensors"));
  // A hard link is one file too.
  write_file(dir / "h.safetensors", "a model");
  fs::create_hard_link(dir / "h.safetensors", dir / "h.svg");
  refused_before_training(
      "train --data sample --epochs 1 --out " + (dir / "h.safetensors").string(),
      "h.svg, which are one file");
  // The spec the run reads, and a file of its data.
  const std::string spec_text = R"({"input": [1, 28, 28], "layers": [{"type": "Flatten"},
      {"type": "Linear", "out_features": 10}]})";
  write_file(dir / "spec.json", spec_text);
  fs::create_symlink("spec.json", dir / "spec.safetensors");
  refused_before_training(
      "train --model " + (dir / "spec.json").string() + " --data sample --epochs 1 --out " +
          (dir / "spec.safetensors").string(),
      "the run would write over " + (dir / "spec.json").string() + ", a file it reads (as " +
          (dir / "spec.safetensors").string() + ", through a link)");
  EXPECT_EQ(read_file(dir / "spec.json"), spec_text);
  const fs::path data = dir / "data";
  fs::create_directories(data);
  for (const auto& entry : fs::directory_iterator(CNN_SAMPLE_DIR))
    fs::copy_file(entry.path(), data / entry.path().filename());
  const std::string labels = (data / "t10k-labels-idx1-ubyte.gz").string();
  const std::string before = read_file(labels);
  refused_before_training(
      "train --data " + data.string() + " --epochs 1 --out " + labels,
      "--out " + labels + ": the run would write over " + labels + ", a file it reads");
  EXPECT_EQ(read_file(labels), before);
  // Names that would write another kind of file, or a directory.
  refused_before_training("train --data sample --epochs 1 --out " + (dir / "m.onnx").string(),
                          "train writes a safetensors model file (cnn convert MODEL.safetensors " +
                              (dir / "m.onnx").string() + " makes the ONNX file from it)");
  refused_before_training("train --data sample --epochs 1 --out " + (dir / "run").string() + "/",
                          "expected a file name, got a directory");
  EXPECT_FALSE(fs::exists(dir / "m.onnx"));
  EXPECT_FALSE(fs::exists(dir / "run"));
  // convert's own case (found 2026-12-07 by a helper's probe): `cnn convert m.onnx spec.json`
  // wrote a model file over the spec, which info and --model then read as a spec.
  expect_refusal("convert " + (dir / "m.onnx").string() + " " + (dir / "spec.json").string(),
                 {"convert: " + (dir / "spec.json").string() +
                  " is a spec's name (.json): convert writes a model file; expected a name such "
                  "as model.safetensors"});
  EXPECT_EQ(read_file(dir / "spec.json"), spec_text);
  // Nor over a training run's other files (found 2026-12-08, a probe: x.ckpt was replaced).
  for (const auto& [name, what] : std::vector<std::pair<std::string, std::string>>{
           {"x.ckpt", "a training checkpoint's name (.ckpt)"},
           {"x.csv", "a run's metrics' name (.csv)"},
           {"x.svg", "a run's learning curves' name (.svg)"},
           {"x.lock", "a run's lock's name (.lock)"}}) {
    expect_refusal("convert " + (dir / "m.onnx").string() + " " + (dir / name).string(),
                   {"convert: " + (dir / name).string() + " is " + what +
                    ": convert writes a model file; expected a name such as model.safetensors"});
    EXPECT_FALSE(fs::exists(dir / name));
  }
  // A run refused for its data leaves no directories behind (they were made first).
  expect_refusal("train --data " + (dir / "no_data").string() + " --epochs 1 --out " +
                     (dir / "made" / "deeper" / "m.safetensors").string(),
                 {"no such directory"});
  EXPECT_FALSE(fs::exists(dir / "made"));
}

// Found 2026-12-07 by a helper's probe: a spec file or CIFAR-10 batch whose read fails (an I/O
// error; here a link to /proc/self/mem, whose first page is not mapped) was "basic_filebuf::
// underflow error reading the file: Input/output error", naming no file.
TEST(CliBadInput, AFileThatCannotBeReadIsNamed) {
  const fs::path dir = work_dir() / "unreadable";
  fs::create_directories(dir / "cifar");
  fs::create_symlink("/proc/self/mem", dir / "spec.json");
  for (const char* batch : {"data_batch_1.bin", "test_batch.bin"})
    fs::create_symlink("/proc/self/mem", dir / "cifar" / batch);
  const auto refused_naming = [](const std::string& args, const fs::path& file) {
    SCOPED_TRACE("cnn " + args);
    const CliRun run = cnn(args);
    EXPECT_EQ(run.exit_code, 1) << run.err;
    EXPECT_EQ(std::count(run.err.begin(), run.err.end(), '\n'), 1) << run.err;
    // "cannot read ...: Input/output error", or "cannot open" where /proc/self/mem is closed.
    EXPECT_NE(run.err.find("cnn: " + file.string() + ": cannot "), std::string::npos) << run.err;
  };
  refused_naming("info " + (dir / "spec.json").string(), dir / "spec.json");
  refused_naming("train --data sample --epochs 1 --model " + (dir / "spec.json").string(),
                 dir / "spec.json");
  refused_naming("eval " + trained_model().string() + " --data " + (dir / "cifar").string(),
                 dir / "cifar" / "test_batch.bin");
}

// Found 2026-12-06: a directory, a pipe or a missing x.json given as a model were all "neither
// a preset ... nor a spec file", leaving the user to guess which.
TEST(CliBadInput, AModelThatIsNeitherAPresetNorASpecSaysWhatIsThere) {
  const fs::path dir = work_dir() / "not_specs";
  fs::create_directories(dir / "folder.json");
  ::mkfifo((dir / "pipe.json").c_str(), 0600);
  for (const auto& [name, said] :
       std::vector<std::pair<std::string, std::string>>{{"folder.json", " (it is a directory)"},
                                                        {"pipe.json", " (it is a pipe)"},
                                                        {"missing.json", " (no such file)"}}) {
    const std::string path = (dir / name).string();
    expect_refusal("info " + path, {path +
                                    ": neither a preset (lenet5, convnet, resnet, seed) nor a "
                                    "spec file" +
                                    said + "\n"});
  }
}

// Found 2026-12-06: what a command printed to a full disk (`> full/eval.json`) was cut at the
// disk's end, and the command exited 0.
TEST(CliBadInput, AStandardOutputThatCannotBeWrittenFailsTheCommand) {
  if (!fs::exists("/dev/full")) GTEST_SKIP() << "no /dev/full";
  for (const std::string& args :
       std::vector<std::string>{"info resnet", "info lenet5 --json",
                                "eval " + trained_model().string() + " --data sample --json"}) {
    SCOPED_TRACE(args);
    const fs::path err = work_dir() / "full_err.txt";
    const int status =
        std::system((std::string(CNN_CLI) + " " + args + " >/dev/full 2>" + err.string()).c_str());
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 1) << status;
    // The error is ENOSPC, but when a printf met it first errno may no longer say so.
    const std::string message = read_file(err);
    EXPECT_TRUE(message.starts_with("cnn: standard output: ")) << message;
    EXPECT_TRUE(message.ends_with(" (what the command printed is incomplete)\n")) << message;
  }
}

// Found 2026-12-06: a batch too big for the memory ended in "cnn: std::bad_alloc" (from the
// pooling layer's index vector) or "Tensor: cannot allocate (...)". Now it is one line that
// says memory ran out and names the batch. An address-space limit (ulimit -v) makes the
// allocations fail at a size this machine would otherwise grant; AddressSanitizer reserves
// terabytes of address space at start, so the sanitizer build cannot run under one.
TEST(CliBadInput, RunningOutOfMemoryIsOneLineNamingTheBatch) {
#if defined(__SANITIZE_ADDRESS__)
  GTEST_SKIP() << "AddressSanitizer cannot start under an address-space limit";
#else
  const std::string out = (work_dir() / "oom_resnet.safetensors").string();
  ASSERT_EQ(cnn("train --model resnet --data sample --epochs 1 --out " + out).exit_code, 0);
  const std::string limit = "ulimit -v 400000;";  // 400 MB; this batch of 2,000 needs 1.4 GB
  expect_refusal(
      "train --model resnet --data sample --epochs 1 --batch 4096 --schedule cosine --out " +
          (work_dir() / "oom_train.safetensors").string(),
      {"cnn: out of memory", ", at batch 4096 (a smaller --batch needs less)"}, limit);
  EXPECT_FALSE(fs::exists(work_dir() / "oom_train.safetensors"));
  EXPECT_FALSE(fs::exists(work_dir() / "oom_train.lock"));
  expect_refusal("eval " + out + " --data sample --batch 65536",
                 {"cnn: out of memory", ", at batch 65536 (a smaller --batch needs less)"},
                 "ulimit -v 300000;");
  // The same commands at a batch that fits.
  EXPECT_EQ(cnn("eval " + out + " --data sample --batch 64", limit).exit_code, 0);
#endif
}

// Found 2026-12-06: reading a spec built its whole model to check the shapes, so `cnn info` of
// a spec of 13 billion parameters (53 GB) said "out of memory", and one of 1.26 GB was
// allocated and zero-filled (2.5 GB peak, 25 s; 4.9 GB with --json, which built it twice).
// info reads shapes alone now: both are described within 400 MB of address space. Where the
// model is needed (train) it is allocated, and one too large is the same line as before.
TEST(CliBadInput, InfoDescribesAModelTooLargeForMemoryFromItsSpec) {
#if defined(__SANITIZE_ADDRESS__)
  GTEST_SKIP() << "AddressSanitizer cannot start under an address-space limit";
#else
  const std::string limit = "ulimit -v 400000;";
  const fs::path big = work_dir() / "terabytes.json", large = work_dir() / "gigabytes.json";
  write_file(big, R"({"name": "big", "input": [1, 28, 28], "layers": [{"type": "Flatten"},
    {"type": "Linear", "out_features": 16777216}, {"type": "Linear", "out_features": 10}]})");
  write_file(large, R"({"name": "large", "input": [3, 1024, 1024], "layers": [
    {"type": "Flatten"}, {"type": "Linear", "out_features": 100}, {"type": "ReLU"},
    {"type": "Linear", "out_features": 10}]})");
  const CliRun table = cnn("info " + big.string(), limit);
  ASSERT_EQ(table.exit_code, 0) << table.err;
  EXPECT_NE(table.out.find("Linear(784, 16777216)"), std::string::npos) << table.out;
  EXPECT_NE(table.out.find("Total params: 13,337,886,730\n"), std::string::npos) << table.out;
  const CliRun json = cnn("info " + big.string() + " --json", limit);
  ASSERT_EQ(json.exit_code, 0) << json.err;
  const Json info = Json::parse(json.out);
  EXPECT_EQ(info.at("parameters").get<int64_t>(), 13337886730);
  EXPECT_EQ(info.at("layers").at(1).at("state_dict").at(0).at("shape"),
            Json::array({16777216, 784}));
  EXPECT_EQ(info.at("layers").at(2).at("torch").at("args"), Json::array({16777216, 10}));
  const CliRun gb = cnn("info " + large.string() + " --json", limit);
  ASSERT_EQ(gb.exit_code, 0) << gb.err;
  EXPECT_EQ(Json::parse(gb.out).at("parameters").get<int64_t>(), 314573910);
  expect_refusal("train --model " + big.string() + " --data sample --epochs 1 --out " +
                     (work_dir() / "terabytes.safetensors").string(),
                 {"cnn: big: out of memory: a tensor of shape (13337886730,), 53.4 GB"}, limit);
  EXPECT_FALSE(fs::exists(work_dir() / "terabytes.safetensors"));
#endif
}

// Found 2026-12-07: `cnn info MODEL` read the whole file (and loaded the model) to print an
// architecture its header holds: a model file of 1.26 GB needed 1.26 GB of memory (2.5 GB with
// the model's values). info reads the header alone now, checked against the file's size: the
// (sparse) file is described within 400 MB of address space, and the same file one byte short
// is still refused in one line.
TEST(CliBadInput, InfoOfAModelFileReadsItsHeaderAlone) {
#if defined(__SANITIZE_ADDRESS__)
  GTEST_SKIP() << "AddressSanitizer cannot start under an address-space limit";
#else
  const std::string limit = "ulimit -v 400000;";
  const std::string architecture = R"({"name": "large", "input": [3, 1024, 1024], "layers": [
    {"type": "Flatten"}, {"type": "Linear", "out_features": 100}, {"type": "ReLU"},
    {"type": "Linear", "out_features": 10}]})";
  const std::vector<std::pair<std::string, std::vector<int64_t>>> tensors = {
      {"1.weight", {100, 3145728}}, {"1.bias", {100}}, {"3.weight", {10, 100}}, {"3.bias", {10}}};
  Json header = {{"__metadata__",
                  {{"format", "cnn"}, {"format_version", "1"}, {"architecture", architecture}}}};
  int64_t offset = 0;
  for (const auto& [name, shape] : tensors) {
    int64_t numel = 1;
    for (int64_t d : shape) numel *= d;
    header[name] = {
        {"dtype", "F32"}, {"shape", shape}, {"data_offsets", {offset, offset + 4 * numel}}};
    offset += 4 * numel;
  }
  const std::string text = header.dump();
  std::string bytes(8, '\0');
  for (int i = 0; i < 8; ++i)
    bytes[static_cast<size_t>(i)] = static_cast<char>((text.size() >> (8 * i)) & 0xFF);
  const fs::path path = work_dir() / "large.safetensors";
  write_file(path, bytes + text);
  const auto size = static_cast<uintmax_t>(8 + text.size() + static_cast<size_t>(offset));
  fs::resize_file(path, size);  // sparse: zeros, a valid model of 1.26 GB
  const CliRun table = cnn("info " + path.string(), limit);
  ASSERT_EQ(table.exit_code, 0) << table.err;
  EXPECT_NE(table.out.find("Total params: 314,573,910\n"), std::string::npos) << table.out;
  const CliRun json = cnn("info " + path.string() + " --json", limit);
  ASSERT_EQ(json.exit_code, 0) << json.err;
  EXPECT_EQ(Json::parse(json.out).at("parameters").get<int64_t>(), 314573910);
  fs::resize_file(path, size - 1);
  expect_refusal("info " + path.string(),
                 {path.string(), "tensor '3.bias': data_offsets", "outside"}, limit);
  fs::remove(path);
#endif
}

// Found 2026-12-06: a BatchNorm given one value per channel (BatchNorm1d at an epoch's last
// batch of 1) failed when training reached that batch, an epoch in. It is refused before the
// first step, naming the layer, also inside nested residual blocks.
TEST(CliBadInput, ABatchNormGivenOneValuePerChannelIsRefusedBeforeTraining) {
  const fs::path flat = work_dir() / "bn1d.json", nested = work_dir() / "bn2d_nested.json";
  write_file(flat, R"({"input": [1, 28, 28], "layers": [{"type": "Flatten"},
    {"type": "Linear", "out_features": 16}, {"type": "BatchNorm1d", "num_features": 16},
    {"type": "ReLU"}, {"type": "Linear", "out_features": 10}]})");
  write_file(nested, R"({"input": [1, 28, 28], "layers": [
    {"type": "Conv2d", "out_channels": 8, "kernel": 28},
    {"type": "Residual", "body": [{"type": "Conv2d", "out_channels": 8, "kernel": 1},
      {"type": "Residual", "body": [{"type": "ReLU"}], "shortcut": [
        {"type": "Conv2d", "out_channels": 8, "kernel": 1},
        {"type": "BatchNorm2d", "num_features": 8}]}]},
    {"type": "Flatten"}, {"type": "Linear", "out_features": 10}]})");
  const std::string out = " --out " + (work_dir() / "one_value.safetensors").string();
  // The bundled sample has 2,000 training images: batch 1999 leaves a last batch of 1.
  const std::vector<std::pair<std::string, std::vector<std::string>>> cases = {
      {"train --data sample --model " + flat.string() + " --batch 1999" + out,
       {"--batch 1999: the last batch of an epoch holds 1 of the 2000 training samples, which "
        "gives layer 2, BatchNorm1d(16,",
        "one value per channel; it needs more than 1 in training",
        "choose a --batch that divides 2000 or leaves 2 or more"}},
      {"train --data sample --model " + flat.string() + " --batch 1" + out,
       {"--batch 1: a batch holds 1 sample, which gives layer 2, BatchNorm1d(16,"}},
      {"train --data sample --model " + nested.string() + " --batch 1999" + out,
       {"which gives layer 1.body.1.shortcut.1, BatchNorm2d(8,"}}};
  for (const auto& [args, fragments] : cases) {
    expect_refusal(args, fragments);
    EXPECT_EQ(cnn(args).out.find("epoch 1"), std::string::npos) << "it trained first";
  }
  // A batch that leaves 2 or more is fine.
  EXPECT_EQ(cnn("train --data sample --epochs 1 --model " + nested.string() + " --batch 1998" + out)
                .exit_code,
            0);
}

// Found 2026-12-06: a newline or a terminal escape in a name (a file's, or an ONNX node's read
// from the file) split the error over lines and recoloured the terminal. They are escaped.
TEST(CliBadInput, ControlCharactersInANameStayOnOneLine) {
  const std::string name = (work_dir() / "a\nb\x1b[31mc.safetensors").string();
  const std::string out = (work_dir() / "control_out.txt").string();
  const std::string err = (work_dir() / "control_err.txt").string();
  const testing::ProcessRun run = testing::finish_process(
      testing::spawn_process(CNN_CLI, {"info", name}, {}, out, err), out, err);
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_EQ(run.err, "cnn: " + (work_dir() / "a\\nb\\x1b[31mc.safetensors").string() +
                         ": cannot open a safetensors file: No such file or directory\n");
  // What a command prints on standard output escapes them too: a spec's name, a model's class
  // names and the files it wrote (they reached the terminal raw).
  const fs::path control_spec = work_dir() / "control.json";
  write_file(control_spec,
             "{\"name\": \"x\\u001b[31my\\nz\", \"input\": [1, 4, 4], \"layers\": "
             "[{\"type\": \"Flatten\"}, {\"type\": \"Linear\", \"out_features\": 2}]}");
  const testing::ProcessRun info = testing::finish_process(
      testing::spawn_process(CNN_CLI, {"info", control_spec.string()}, {}, out, err), out, err);
  ASSERT_EQ(info.exit_code, 0) << info.err;
  EXPECT_EQ(info.out.substr(0, info.out.find('\n')),
            "Model: x\\x1b[31my\\nz   input (1, 4, 4)   loss cross_entropy");
  const std::string written = (work_dir() / "w\x1b]0;t\a.onnx").string();
  const testing::ProcessRun wrote = testing::finish_process(
      testing::spawn_process(CNN_CLI, {"convert", trained_model().string(), written}, {}, out, err),
      out, err);
  ASSERT_EQ(wrote.exit_code, 0) << wrote.err;
  EXPECT_NE(wrote.out.find("w\\x1b]0;t\\x07.onnx"), std::string::npos) << wrote.out;
  EXPECT_EQ(wrote.out.find('\x1b'), std::string::npos) << wrote.out;
  // A name that is not UTF-8 cannot go into the checkpoint's JSON: the run failed at its first
  // checkpoint, an epoch in ("invalid UTF-8 byte"). It is refused before training.
  const std::string latin1 = (work_dir() / "m\xfe.safetensors").string();
  const testing::ProcessRun refused = testing::finish_process(
      testing::spawn_process(
          CNN_CLI, {"train", "--data", "sample", "--epochs", "1", "--out", latin1}, {}, out, err),
      out, err);
  EXPECT_EQ(refused.exit_code, 1) << refused.err;
  EXPECT_EQ(refused.err, "cnn: --out " + latin1 +
                             ": expected UTF-8 text (the checkpoint stores it as JSON, which holds "
                             "no other bytes)\n");
  EXPECT_EQ(refused.out, "");
  EXPECT_FALSE(fs::exists(work_dir() / "m\xfe.ckpt"));
  // --json prints such a name with U+FFFD: it was nlohmann's type_error once the work was done.
  const fs::path model = work_dir() / "latin1_source.safetensors";
  ASSERT_EQ(cnn("train --data sample --epochs 1 --out " + model.string()).exit_code, 0);
  fs::copy_file(model, latin1, fs::copy_options::overwrite_existing);
  const fs::path spec = work_dir() / "s\xff.json";
  write_file(spec, R"({"input": [1, 4, 4], "layers": [{"type": "Flatten"},
      {"type": "Linear", "out_features": 3}]})");
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"eval", latin1, "--data", "sample", "--json"},
        {"info", spec.string(), "--json"}}) {
    SCOPED_TRACE(args[0]);
    const testing::ProcessRun run =
        testing::finish_process(testing::spawn_process(CNN_CLI, args, {}, out, err), out, err);
    ASSERT_EQ(run.exit_code, 0) << run.err;
    const Json j = Json::parse(run.out);
    const std::string shown =
        (args[0] == "eval" ? j.at("model") : j.at("spec").at("name")).get<std::string>();
    EXPECT_NE(shown.find("\xef\xbf\xbd"), std::string::npos) << shown;  // U+FFFD
  }
}

// A name longer than the file system allows (255 bytes): one line in cnn's words, not the
// "filesystem error: status: File name too long [...]" that std::filesystem threw before.
TEST(CliBadInput, NamesTooLongForTheFileSystemAreOneLine) {
  const std::string name = (work_dir() / std::string(300, 'a')).string();
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"train --data sample --epochs 1 --out " + name + ".safetensors",
       "cannot create the run's lock file"},
      {"train --data " + name, "--data " + name + ": File name too long"},
      {"eval " + name + ".safetensors --data sample",
       "cannot open a safetensors file: File name too long"},
      {"train --data sample --model " + name + ".json", "neither a preset"},
      {"predict " + trained_model().string() + " " + name + ".png", "cannot decode image"}};
  for (const auto& [args, fragment] : cases) {
    expect_refusal(args, {fragment});
    const CliRun run = cnn(args);
    EXPECT_EQ(run.err.find("filesystem error"), std::string::npos) << run.err;
  }
}

TEST(CliBadInput, SpecsImagesAndFlags) {
  const fs::path unknown = work_dir() / "unknown_layer.json";
  write_file(
      unknown,
      R"({"input": [1, 28, 28], "layers": [{"type": "Conv3d", "out_channels": 4, "kernel": 3}]})");
  expect_refusal("train --data sample --model " + unknown.string(),
                 {"unknown_layer.json", "layer 0", "unknown type 'Conv3d'"});
  const fs::path misfit = work_dir() / "misfit.json";
  write_file(
      misfit,
      R"({"input": [1, 28, 28], "layers": [{"type": "Conv2d", "out_channels": 4, "kernel": 3},
    {"type": "Flatten"}, {"type": "Linear", "out_features": 10}, {"type": "MaxPool2d", "kernel": 2}]})");
  expect_refusal("train --data sample --model " + misfit.string(),
                 {"misfit.json", "layer 3", "MaxPool2d", "expected input (N, C, H, W)"});
  const fs::path typo = work_dir() / "typo.json";
  write_file(typo, R"({"input": [1, 28, 28], "layers": [{"type": "Linear", "out_feature": 10}]})");
  expect_refusal("info " + typo.string(), {"typo.json", "unknown key 'out_feature'"});
  write_file(work_dir() / "not_an_image.png", "this is not a png");
  expect_refusal(
      "predict " + trained_model().string() + " " + (work_dir() / "not_an_image.png").string(),
      {"not_an_image.png", "cannot decode image"});
  expect_refusal("train --epochs 0", {"--epochs", "from 1", "got '0'"});
  expect_refusal("train --lr -1", {"--lr", "above 0", "got '-1'"});
  expect_refusal("train --batch abc", {"--batch", "whole number", "got 'abc'"});
  expect_refusal("train --threads 0", {"--threads", "got '0'"});
  expect_refusal("train --momentum 1.5", {"--momentum", "got '1.5'"});
  // adamw's weights grow every step when lr x weight decay > 2 (they "diverged" at step 22).
  expect_refusal("train --optimizer adamw --lr 3 --weight-decay 1",
                 {"cnn: train: --weight-decay is 1 with --lr 3: adamw multiplies the weights by 1 "
                  "- lr x weight decay every step, which below -1 grows them until they overflow "
                  "(expected lr x weight decay <= 2)"});
  expect_refusal("train --model nope", {"--model nope", "neither a preset"});
  // Found 2026-12-07 by a helper's probe: a model file given as the architecture was "not
  // valid JSON: [json.exception.parse_error.101] ... last read: '<U+0018>'".
  const std::string weights = trained_model().string();
  for (const std::string& command :
       {std::string("train --data sample --epochs 1"), "eval " + weights}) {
    expect_refusal(command + " --model " + weights,
                   {"cnn: --model " + weights +
                    ": a safetensors file (a model's weights), not a spec: expected a preset "
                    "(lenet5, convnet, resnet, seed) or a spec file (JSON; cnn info " +
                    weights + " --json shows a model file's spec)"});
  }
  const fs::path graph = work_dir() / "graph.onnx";
  write_file(graph, std::string("\x08\x07\x12\x03") + "cnn");  // an ONNX file's first bytes
  expect_refusal("bench --model " + graph.string(),
                 {"cnn: --model " + graph.string() + ": an ONNX model, not a spec"});
  // Found 2026-12-08 (a probe): the line named no command ("cnn: --model: an ONNX file ...").
  for (const std::string command : {"eval", "predict"}) {
    expect_refusal(
        command + " " + graph.string() + (command == "predict" ? " x.png" : "") + " --model lenet5",
        {"cnn: " + command + ": --model is for weights without an architecture; " + graph.string() +
         " is an ONNX file, which carries its own (expected no --model)"});
  }
  expect_refusal("info nope.json", {"cnn: nope.json: neither a preset"});
  expect_refusal("train --frobnicate 3", {"unknown flag --frobnicate"});
  expect_refusal("train --data sample --epochs --batch 3",
                 {"--epochs expects a value, got the flag --batch"});
  expect_refusal("train --data sample --out --batch=3",
                 {"--out expects a value, got the flag --batch"});
  expect_refusal("train --data sample --epochs", {"--epochs expects a value"});
  expect_refusal("eval", {"expected one MODEL"});
  expect_refusal("predict " + trained_model().string() + " --top 0 x.png", {"--top", "got '0'"});
  // Found 2026-12-08 (a probe): more classes than the model has printed them all, silently.
  expect_refusal("predict " + trained_model().string() + " --top 11 x.png",
                 {"cnn: predict: --top is 11, but the model has 10 classes (expected at most 10)"});
  expect_refusal("fly", {"unknown command 'fly'"});
  expect_refusal("train --out metrics.csv", {"--out", "names the model file"});
  expect_refusal("train --data sample",
                 {"CNN_CONV=fast", "expected auto, gemm, direct, winograd or implicit"},
                 "CNN_CONV=fast");
  expect_refusal("train --data sample", {"CNN_ISA=sse9", "expected avx512, avx2 or portable"},
                 "CNN_ISA=sse9");
  expect_refusal("train --data sample", {"CNN_REFERENCE=true: expected 0 or 1"},
                 "CNN_REFERENCE=true");
  expect_refusal("train --data sample --optimizer adamx",
                 {"--optimizer", "expects sgd, adam or adamw", "got 'adamx'"});
  expect_refusal("train --data sample --schedule linear",
                 {"--schedule", "expects constant, step, cosine or onecycle", "got 'linear'"});
  // Found 2026-12-08 (a probe): the schedule's own refusal named no command.
  expect_refusal("train --data sample --epochs 1 --batch 2000 --schedule onecycle",
                 {"cnn: train: learning-rate schedule: onecycle rises over the first 30% of its "
                  "steps and needs at least 4, got 1 (more epochs, or a smaller batch)"});
  expect_refusal("train --data sample --optimizer adam --momentum 0.5",
                 {"--momentum", "applies to --optimizer sgd, not adam"});
  expect_refusal("train --data sample --epochs 3 --warmup-epochs 3",
                 {"--warmup-epochs", "from 0 to 2", "got '3'"});
  expect_refusal("train --data sample --epochs 3 --schedule step --step-epochs 0",
                 {"--step-epochs", "from 1 to 3", "got '0'"});
  // Flags the run would not read (found 2026-12-06: both trained a bit-identical model).
  expect_refusal("train --data sample --epochs 3 --step-epochs 2",
                 {"--step-epochs", "applies to --schedule step, not cosine"});
  expect_refusal("train --data sample --crop-padding 3",
                 {"--crop-padding", "applies to --augment crop-flip, not none"});
  expect_refusal("train --data sample --label-smoothing 1",
                 {"--label-smoothing", "from 0 to 0.999", "got '1'"});
  const fs::path bad_dropout = work_dir() / "bad_dropout.json";
  write_file(bad_dropout, R"({"input": [1, 28, 28], "layers": [{"type": "Flatten"},
    {"type": "Dropout", "p": 1.0}, {"type": "Linear", "out_features": 10}]})");
  expect_refusal("info " + bad_dropout.string(),
                 {"bad_dropout.json", "layer 1", "Dropout expects \"p\" in [0, 1)", "got 1.0"});
  const fs::path bad_norm = work_dir() / "bad_norm.json";
  write_file(bad_norm, R"({"input": [1, 28, 28], "layers": [
    {"type": "Conv2d", "out_channels": 4, "kernel": 3}, {"type": "BatchNorm2d", "num_features": 6},
    {"type": "Flatten"}, {"type": "Linear", "out_features": 10}]})");
  expect_refusal("info " + bad_norm.string(),
                 {"bad_norm.json", "layer 1", "BatchNorm2d: declares 6 inputs", "has 4"});
  const fs::path bad_momentum = work_dir() / "bad_momentum.json";
  write_file(bad_momentum, R"({"input": [1, 28, 28], "layers": [
    {"type": "BatchNorm2d", "momentum": 2}, {"type": "Flatten"},
    {"type": "Linear", "out_features": 10}]})");
  expect_refusal(
      "info " + bad_momentum.string(),
      {"bad_momentum.json", "layer 0", "'momentum' expects a number in [0, 1]", "got 2"});
  const fs::path bad_block = work_dir() / "bad_block.json";
  write_file(bad_block, R"({"input": [1, 28, 28], "layers": [
    {"type": "Residual", "body": [{"type": "Conv2d", "out_channels": 8, "kernel": 3,
      "stride": 2, "padding": 1}]}, {"type": "Flatten"}, {"type": "Linear", "out_features": 10}]})");
  expect_refusal("info " + bad_block.string(),
                 {"bad_block.json", "layer 0", "Residual", "body's output (1, 8, 14, 14)",
                  "identity shortcut's (1, 1, 28, 28)"});
  const fs::path bad_activation = work_dir() / "bad_activation.json";
  write_file(bad_activation, R"({"input": [1, 28, 28], "layers": [
    {"type": "Residual", "body": [{"type": "ReLU"}], "activation": "GELU"},
    {"type": "Flatten"}, {"type": "Linear", "out_features": 10}]})");
  expect_refusal("info " + bad_activation.string(),
                 {"bad_activation.json", "layer 0", "'activation' expects", "got \"GELU\""});
  const fs::path bad_child = work_dir() / "bad_child.json";
  write_file(bad_child, R"({"input": [1, 28, 28], "layers": [
    {"type": "Residual", "body": [{"type": "ReLU"}, {"type": "Dropout", "p": 3}]},
    {"type": "Flatten"}, {"type": "Linear", "out_features": 10}]})");
  expect_refusal("info " + bad_child.string(),
                 {"bad_child.json", "layer 0: body layer 1", "Dropout expects \"p\" in [0, 1)"});
  // A spec's name is a label: the default --out is refused when it is not a file name
  // (found 2026-12-06: "../escaped" wrote outside the directory, "" hidden files).
  for (const std::string name : {"../escaped", "", "x/y", ".."}) {
    const fs::path named = work_dir() / "named.json";
    write_file(named, R"({"name": ")" + name + R"(", "input": [1, 28, 28], "layers": [
      {"type": "Flatten"}, {"type": "Linear", "out_features": 10}]})");
    expect_refusal("train --data sample --model " + named.string(),
                   {"--out is needed: the spec's name \"" + name +
                    "\" is not a file name to write NAME.safetensors as"});
  }
  EXPECT_FALSE(fs::exists(work_dir().parent_path() / "escaped.safetensors"));
  const fs::path keras = work_dir() / "keras.json";
  write_file(keras, R"({"format": "keras", "input": [1, 28, 28], "layers": [
    {"type": "Flatten"}, {"type": "Linear", "out_features": 10}]})");
  expect_refusal("info " + keras.string(),
                 {"keras.json", "'format' expects \"cnn-spec\", got \"keras\""});
  expect_refusal("train --data sample --augment mixup",
                 {"--augment", "expects none or crop-flip", "got 'mixup'"});
  expect_refusal("train --data sample --augment crop-flip --crop-padding 65",
                 {"--crop-padding", "from 0 to 64", "got '65'"});
  expect_refusal("train --data sample --model seed --label-smoothing 0.1",
                 {"--label-smoothing", "applies to cross_entropy models", "seed's log_loss"});
}

// Adam, AdamW, the schedules and label smoothing through the command line: they train (the
// sample's 2 epochs reach what SGD's cosine does, about 55%), and the run says what it used.
TEST(Cli, AdamWOneCycleAndLabelSmoothingTrain) {
  const fs::path model = work_dir() / "adamw.safetensors";
  const CliRun run =
      cnn("train --data sample --epochs 2 --optimizer adamw --weight-decay 0.05 "
          "--schedule onecycle --warmup-epochs 1 --label-smoothing 0.1 --out " +
          model.string());
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_NE(run.out.find("adamw, lr 0.001 (onecycle schedule), weight decay 0.05"),
            std::string::npos)
      << run.out;
  double percent = 0;
  const size_t at = run.out.find("final test accuracy ");
  ASSERT_NE(at, std::string::npos) << run.out;
  ASSERT_EQ(std::sscanf(run.out.c_str() + at, "final test accuracy %lf%%", &percent), 1);
  EXPECT_GE(percent, 50.0) << run.out;
}

// Sizes that a file or spec decides and whose products overflow 64 bits: each refused in one
// line naming the file, in the release and the UBSan build alike (UBSan aborts on a signed
// overflow, so a test that passes there shows the arithmetic is checked).
TEST(CliBadInput, SizesThatOverflow64BitsAreRefused) {
  // IDX: 2^32 - 1 images of (2^32 - 1) x (2^32 - 1) pixels: rows x cols alone passes 2^63.
  expect_refusal("train --data " + data_dir("idx_overflow",
                                            [](auto& f) {
                                              f["train-images-idx3-ubyte"] = idx_header(
                                                  0x803, {0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF});
                                            })
                                       .string(),
                 {"train-images-idx3-ubyte", "expected at most 8589934592 pixels in all",
                  "4294967295 images of 4294967295x4294967295"});
  // CIFAR-10: a sparse batch of 2^40 bytes (a disk's worth of records) is refused by its size
  // before anything is read.
  const fs::path cifar = work_dir() / "cifar_huge";
  fs::create_directories(cifar);
  write_file(cifar / "test_batch.bin", std::string(1, '\0') + std::string(3072, '\x10'));
  { std::ofstream batch(cifar / "data_batch_1.bin", std::ios::binary); }
  fs::resize_file(cifar / "data_batch_1.bin", uintmax_t{1} << 40);
  expect_refusal("train --data " + cifar.string(),
                 {"data_batch_1.bin", "at most 8589934592 bytes", "got 1099511627776"});
  fs::remove(cifar / "data_batch_1.bin");

  // safetensors: a shape whose element count passes 2^64, offsets at the top of uint64, and a
  // header length of 2^64 - 1.
  const auto& refused = expect_model_file_refused;
  refused("huge_shape.safetensors",
          safetensors(R"({"0.bias":{"dtype":"F32","shape":[4294967296,4294967296],)"
                      R"("data_offsets":[0,8]}})",
                      std::string(8, '\0')),
          {"0.bias", "is too large"});
  refused("huge_offsets.safetensors",
          safetensors(R"({"0.bias":{"dtype":"F32","shape":[2],"data_offsets":)"
                      R"([18446744073709551608,18446744073709551615]}})",
                      std::string(8, '\0')),
          {"0.bias", "data_offsets [18446744073709551608, 18446744073709551615] lie outside"});
  refused("huge_header.safetensors", std::string(8, '\xff') + "{}",
          {"header length 18446744073709551615", "past the end"});

  // Specs: an input of 2^72 elements, a Conv2d of 2^72 weights, parameter totals past 2^48;
  // as a spec file and as a model file's architecture.
  const std::map<std::string, std::pair<std::string, std::vector<std::string>>> specs = {
      {"input",
       {R"({"input": [16777216, 16777216, 16777216], "layers": [{"type": "Flatten"}]})",
        {"input", "at most 2^48 elements", "(16777216, 16777216, 16777216)"}}},
      {"conv",
       {R"({"input": [16777216, 4096, 4096], "layers": [{"type": "Conv2d",
           "out_channels": 16777216, "kernel": 4096}]})",
        {"layer 0", "Conv2d(16777216, 16777216", "at most 2^48 elements"}}},
      {"total",
       {R"({"input": [16777216, 1, 1], "layers": [{"type": "Flatten"},
           {"type": "Linear", "out_features": 8388608}, {"type": "Linear", "out_features": 16777216},
           {"type": "Linear", "out_features": 8388608}]})",
        {"layer 2", "parameter count past 2^48"}}}};
  for (const auto& [name, spec] : specs) {
    const fs::path path = work_dir() / ("overflow_" + name + ".json");
    write_file(path, spec.first);
    std::vector<std::string> fragments = spec.second;
    fragments.push_back(path.string());
    expect_refusal("info " + path.string(), fragments);
    const std::string meta =
        R"({"__metadata__":{"format":"cnn","format_version":"1","architecture":)" +
        Json(spec.first).dump() + "}}";
    refused("overflow_" + name + ".safetensors", safetensors(meta, ""), spec.second);
  }
}

// predict reads the size from the header and refuses an image over 64 megapixels before
// decoding it (a 20000 x 20000 PNG of zeros is a small file that decodes to 787 MB); one at
// the limit's edge still decodes.
TEST(CliBadInput, PredictRefusesImagesOver64Megapixels) {
  const fs::path huge = work_dir() / "huge.pgm";
  write_file(huge, "P5\n20000 20000\n255\n" + std::string(64, '\0'));
  expect_refusal("predict " + trained_model().string() + " " + huge.string(),
                 {"huge.pgm", "image of 20000x20000 pixels", "limit of 64 megapixels"});
  const fs::path wide = work_dir() / "wide.pgm";  // 8192 x 8192 = 2^26 pixels exactly
  write_file(wide, "P5\n8192 8192\n255\n" + std::string(size_t{1} << 26, '\x40'));
  const CliRun run = cnn("predict " + trained_model().string() + " " + wide.string());
  EXPECT_EQ(run.exit_code, 0) << run.err;
  fs::remove(wide);
}

// An image file shorter than its header declares is refused, never decoded from whatever
// memory or zeros would stand for the missing bytes; so are malformed PGM/PPM headers, other
// formats, directories and missing files.
TEST(CliBadInput, PredictRefusesTruncatedAndMalformedImages) {
  const auto refused = [](const std::string& name, const std::string& bytes,
                          const std::vector<std::string>& fragments) {
    const fs::path file = work_dir() / name;
    write_file(file, bytes);
    std::vector<std::string> expected = {name + ": cannot decode image ("};
    expected.insert(expected.end(), fragments.begin(), fragments.end());
    expect_refusal("predict " + trained_model().string() + " " + file.string(), expected);
  };
  refused("short8.pgm", "P5 28 28 255\nabcdefghij",
          {"PGM of 28x28 pixels with maxval 255 needs 784 bytes of samples, the file holds 10"});
  refused("short16.pgm", "P5 28 28 65535\nabcdefghij",
          {"PGM of 28x28 pixels with maxval 65535 needs 1568 bytes of samples, the file holds 10"});
  refused("short8.ppm", "P6 2 2 255\n" + std::string(11, '\x10'),
          {"PPM of 2x2 pixels with maxval 255 needs 12 bytes of samples, the file holds 11"});
  refused(
      "short16.ppm", "P6 3125 7 65535\n" + std::string(16, '\x10'),
      {"PPM of 3125x7 pixels with maxval 65535 needs 131250 bytes of samples, the file holds 16"});
  refused("no_height.pgm", "P5 28\n", {"expected the height", "got the end of the file"});
  refused("letters.pgm", "P5 28 2x 255\n", {"expected whitespace after the height, got 'x'"});
  refused("maxval0.pgm", std::string("P5 1 1 0\n\x00", 10),
          {"the maxval is 0; expected at least 1"});
  refused("maxval_big.pgm", std::string("P5 1 1 65536\n\x00\x00", 15), {"maxval exceeds 65535"});
  refused("width0.pgm", "P5 0 1 255\n", {"the width is 0; expected at least 1"});
  refused("sample.pgm", "P5 2 1 15\n\x0f\x10", {"sample 16 exceeds the maxval 15"});
  refused("gif.gif", std::string("GIF89a\x01\x00\x01\x00", 10),
          {"not a PNG, JPEG, BMP, PGM or PPM file"});
  refused("empty.png", "", {"not a PNG, JPEG, BMP, PGM or PPM file"});
  std::vector<unsigned char> grey(28 * 28, 0x40);
  const std::string bmp = (work_dir() / "whole.bmp").string();
  ASSERT_TRUE(stbi_write_bmp(bmp.c_str(), 28, 28, 1, grey.data()));
  std::string bytes = read_file(bmp);
  ASSERT_EQ(bytes.size(), 54u + 28 * 28 * 3);
  bytes.pop_back();
  refused("short.bmp", bytes,
          {"BMP of 28x28 pixels at 24 bits needs 2406 bytes, the file holds 2405"});
  expect_refusal("predict " + trained_model().string() + " " + work_dir().string(),
                 {"cannot decode image (it is a directory)"});
  expect_refusal("predict " + trained_model().string() + " " + (work_dir() / "absent.png").string(),
                 {"absent.png: cannot decode image (cannot open the file)"});
}

/// A PNG chunk: length, type, data and CRC.
std::string png_chunk(const std::string& type, const std::string& data) {
  std::string chunk;
  for (const int shift : {24, 16, 8, 0}) chunk += static_cast<char>(data.size() >> shift & 0xff);
  chunk += type + data;
  const std::string crc_input = type + data;
  const uLong crc = crc32(0, reinterpret_cast<const Bytef*>(crc_input.data()),
                          static_cast<uInt>(crc_input.size()));
  for (const int shift : {24, 16, 8, 0}) chunk += static_cast<char>(crc >> shift & 0xff);
  return chunk;
}

// stb_image's reasons went out as they were (found 2026-12-06): "IEN" for a PNG cut inside its
// IEND chunk, "outofdata", "expected marker", "only 8-bit", and "no SOI", left over from stb's
// JPEG test, for a PNG whose zlib stream it refused without a reason. predict says what is wrong
// with the file in one line: where it is truncated, which variant stb does not decode, what is
// corrupt.
TEST(CliBadInput, PredictSaysWhyAnImageCannotBeDecoded) {
  std::vector<unsigned char> rgb(28 * 28 * 3);
  for (size_t i = 0; i < rgb.size(); ++i) rgb[i] = static_cast<unsigned char>(i * 7);
  const fs::path whole_png = work_dir() / "whole.png", whole_jpg = work_dir() / "whole.jpg",
                 whole_bmp = work_dir() / "whole3.bmp";
  ASSERT_TRUE(stbi_write_png(whole_png.c_str(), 28, 28, 3, rgb.data(), 28 * 3));
  ASSERT_TRUE(stbi_write_jpg(whole_jpg.c_str(), 28, 28, 3, rgb.data(), 90));
  ASSERT_TRUE(stbi_write_bmp(whole_bmp.c_str(), 28, 28, 3, rgb.data()));
  const std::string png = read_file(whole_png), jpg = read_file(whole_jpg),
                    bmp = read_file(whole_bmp);
  const std::string predict = "predict " + trained_model().string() + " ";
  for (const fs::path& whole : {whole_png, whole_jpg, whole_bmp})
    EXPECT_EQ(cnn(predict + whole.string()).exit_code, 0) << whole;
  const auto refused = [&](const std::string& name, const std::string& bytes,
                           const std::string& reason) {
    write_file(work_dir() / name, bytes);
    expect_refusal(predict + (work_dir() / name).string(),
                   {name + ": cannot decode image (" + reason + ")\n"});
  };
  const size_t idat = png.find("IDAT") - 4;
  ASSERT_EQ(png.substr(0, 8), "\x89PNG\r\n\x1a\n");
  ASSERT_EQ(png.substr(12, 4), "IHDR");
  ASSERT_EQ(png.substr(png.size() - 8, 4), "IEND");
  const size_t idat_end =
      idat + 12 +
      (static_cast<unsigned char>(png[idat + 2]) << 8 | static_cast<unsigned char>(png[idat + 3]));
  ASSERT_EQ(idat_end, png.size() - 12);
  // Truncated: stb said "IEN" and "outofdata".
  refused("cut_iend.png", png.substr(0, png.size() - 5),
          "truncated PNG: the file ends at byte " + std::to_string(png.size() - 5) +
              ", after its 'IDAT' chunk, without the IEND chunk that ends a PNG");
  refused("cut_idat.png", png.substr(0, idat + 40),
          "truncated PNG: its 'IDAT' chunk runs to byte " + std::to_string(idat_end) +
              ", the file ends at byte " + std::to_string(idat + 40));
  // A transfer as text turned \r\n into \n: stb said "unknown image type".
  refused("text_mode.png", png.substr(0, 4) + png.substr(5),
          "not a PNG: its first 4 bytes are PNG's, the next 4 are not \\r\\n\\x1a\\n (a transfer "
          "as text changes them)");
  std::string depth3 = png;
  depth3[24] = 3;
  refused("depth3.png", depth3,
          "corrupt PNG: its header (IHDR) gives 3 bits per sample, not 1, 2, 4, 8 or 16");
  refused("chunk.png", png.substr(0, 33) + png_chunk("ABCD", "") + png.substr(33),
          "unsupported PNG: it has a critical chunk 'ABCD' (at byte 33) that stb_image does not "
          "know");
  // A deflate block of the reserved type 3, which stb refuses without a reason of its own.
  std::string type3 = png;
  type3[idat + 10] = 0x07;
  refused("type3.png", type3, "corrupt PNG: stb_image cannot decode it");
  // stb said "expected marker", "only 8-bit" and "unknown marker".
  refused("cut.jpg", jpg.substr(0, jpg.size() / 2),
          "truncated JPEG: the file ends at byte " + std::to_string(jpg.size() / 2) +
              ", inside its image data, before the end-of-image marker (FFD9)");
  const size_t dqt = jpg.find("\xFF\xDB");
  ASSERT_NE(dqt, std::string::npos);
  const size_t dqt_end =
      dqt + 2 +
      (static_cast<unsigned char>(jpg[dqt + 2]) << 8 | static_cast<unsigned char>(jpg[dqt + 3]));
  refused("cut_header.jpg", jpg.substr(0, dqt + 10),
          "truncated JPEG: its quantization table (DQT, FFDB) runs to byte " +
              std::to_string(dqt_end) + ", the file ends at byte " + std::to_string(dqt + 10));
  const size_t sof = jpg.find("\xFF\xC0");
  ASSERT_NE(sof, std::string::npos);
  std::string twelve_bit = jpg;
  twelve_bit[sof + 4] = 12;
  refused("twelve_bit.jpg", twelve_bit,
          "unsupported JPEG: 12-bit samples; stb_image decodes 8-bit JPEGs only");
  std::string arithmetic = jpg;
  arithmetic[sof + 1] = '\xC9';
  refused("arithmetic.jpg", arithmetic,
          "unsupported JPEG: arithmetic-coded (SOF9); stb_image decodes baseline and progressive "
          "JPEGs");
  // stb said "BMP RLE" and, for a header cut short, "bad BMP".
  std::string rle = bmp;
  rle[30] = 1;
  refused("rle.bmp", rle, "unsupported BMP: RLE compression; stb_image reads uncompressed BMPs");
  refused("cut_header.bmp", bmp.substr(0, 20),
          "truncated BMP: its header runs to byte 54, the file ends at byte 20");
  // What stb does decode stays decoded: a PNG cut inside IEND's CRC (the chunks are walked
  // before stb runs), a 16-bit PNG.
  write_file(work_dir() / "cut_crc.png", png.substr(0, png.size() - 2));
  const CliRun cut_crc = cnn(predict + (work_dir() / "cut_crc.png").string());
  EXPECT_EQ(cut_crc.exit_code, 0) << cut_crc.err;
  std::string rows;
  for (int y = 0; y < 28; ++y) rows += '\0' + std::string(28 * 6, '\x40');
  std::string compressed(compressBound(static_cast<uLong>(rows.size())), '\0');
  uLongf compressed_size = static_cast<uLongf>(compressed.size());
  ASSERT_EQ(compress(reinterpret_cast<Bytef*>(compressed.data()), &compressed_size,
                     reinterpret_cast<const Bytef*>(rows.data()), static_cast<uLong>(rows.size())),
            Z_OK);
  compressed.resize(compressed_size);
  const std::string ihdr("\0\0\0\x1c\0\0\0\x1c\x10\x02\0\0\0", 13);  // 28 x 28, 16-bit RGB
  write_file(work_dir() / "sixteen.png", png.substr(0, 8) + png_chunk("IHDR", ihdr) +
                                             png_chunk("IDAT", compressed) + png_chunk("IEND", ""));
  const CliRun sixteen = cnn(predict + (work_dir() / "sixteen.png").string());
  EXPECT_EQ(sixteen.exit_code, 0) << sixteen.err;
}

// stb grows its buffer to whatever a PNG's zlib stream holds: a 486 KB file of zeros took
// 500 MB and was decoded (stb takes data past the pixels, found in the wild). predict refuses
// image data that inflate past twice what the header's pixels need plus 64 KiB, and decodes a
// file at that bound. The need is counted here pixel by pixel, Adam7's passes included.
TEST(CliBadInput, PredictRefusesAPngWhoseDataInflatePastItsPixels) {
  struct Header {
    int width, height, depth, colour, interlace;
    bool apple = false;  // Apple's CgBI PNG: a raw deflate stream, without zlib's header
  };
  const auto png_file = [](const Header& h, size_t raw_bytes) {
    std::string ihdr;
    for (const int value : {h.width, h.height})
      for (const int shift : {24, 16, 8, 0}) ihdr += static_cast<char>(value >> shift & 0xff);
    ihdr += {static_cast<char>(h.depth), static_cast<char>(h.colour), 0, 0,
             static_cast<char>(h.interlace)};
    const std::string rows(raw_bytes, '\0');  // filter type 0, samples 0
    std::string compressed(compressBound(static_cast<uLong>(rows.size())), '\0');
    z_stream stream{};
    // Stored blocks for Apple's: stb 2.27 decodes no compressed block of a raw stream ("bad
    // huffman code").
    EXPECT_EQ(deflateInit2(&stream, h.apple ? 0 : 9, Z_DEFLATED, h.apple ? -15 : 15, 8,
                           Z_DEFAULT_STRATEGY),
              Z_OK);
    stream.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(rows.data()));
    stream.avail_in = static_cast<uInt>(rows.size());
    stream.next_out = reinterpret_cast<Bytef*>(compressed.data());
    stream.avail_out = static_cast<uInt>(compressed.size());
    EXPECT_EQ(deflate(&stream, Z_FINISH), Z_STREAM_END);
    compressed.resize(stream.total_out);
    deflateEnd(&stream);
    const std::string palette = h.colour == 3 ? png_chunk("PLTE", std::string(12, '\x7f')) : "";
    return std::string("\x89PNG\r\n\x1a\n", 8) + (h.apple ? png_chunk("CgBI", "") : "") +
           png_chunk("IHDR", ihdr) + palette + png_chunk("IDAT", compressed) +
           png_chunk("IEND", "");
  };
  const auto needed_bytes = [](const Header& h) {
    const int samples[7] = {1, 0, 3, 1, 2, 0, 4};
    const int bits = h.depth * samples[h.colour];
    struct Pass {
      int x0, y0, dx, dy;
    };
    const std::vector<Pass> passes =
        h.interlace ? std::vector<Pass>{{0, 0, 8, 8}, {4, 0, 8, 8}, {0, 4, 4, 8}, {2, 0, 4, 4},
                                        {0, 2, 2, 4}, {1, 0, 2, 2}, {0, 1, 1, 2}}
                    : std::vector<Pass>{{0, 0, 1, 1}};
    size_t total = 0;
    for (const Pass& pass : passes) {
      int columns = 0, rows = 0;
      for (int x = pass.x0; x < h.width; x += pass.dx) ++columns;
      for (int y = pass.y0; y < h.height; y += pass.dy) ++rows;
      if (columns > 0) total += size_t(rows) * (1 + (size_t(columns) * bits + 7) / 8);
    }
    return total;
  };
  const std::string predict = "predict " + trained_model().string() + " ";
  for (const Header& h :
       {Header{28, 28, 8, 0, 0}, Header{28, 28, 16, 2, 0}, Header{13, 11, 16, 6, 1},
        Header{5, 3, 8, 0, 1}, Header{9, 5, 2, 3, 1}, Header{3, 17, 1, 0, 1}, Header{1, 1, 4, 4, 1},
        Header{28, 28, 8, 2, 0, true}}) {
    const size_t needed = needed_bytes(h), bound = 2 * needed + 65536;
    const std::string name = "inflate_" + std::to_string(h.width) + "x" + std::to_string(h.height) +
                             "_" + std::to_string(h.depth) + "_" + std::to_string(h.colour) + "_" +
                             std::to_string(h.interlace) + (h.apple ? "_apple" : "");
    SCOPED_TRACE(name + ": needs " + std::to_string(needed));
    write_file(work_dir() / (name + "_exact.png"), png_file(h, needed));
    write_file(work_dir() / (name + "_bound.png"), png_file(h, bound));
    write_file(work_dir() / (name + "_past.png"), png_file(h, bound + 1));
    for (const std::string decoded : {"_exact.png", "_bound.png"}) {
      const CliRun run = cnn(predict + (work_dir() / (name + decoded)).string());
      EXPECT_EQ(run.exit_code, 0) << decoded << ": " << run.err;
    }
    expect_refusal(predict + (work_dir() / (name + "_past.png")).string(),
                   {name +
                    "_past.png: cannot decode image (corrupt PNG: its image data (IDAT) "
                    "inflate to more than " +
                    std::to_string(bound) + " bytes, where its " + std::to_string(h.width) + "x" +
                    std::to_string(h.height) + " pixels need " + std::to_string(needed) + ")\n"});
    // One byte short of the pixels: stb's refusal.
    write_file(work_dir() / (name + "_short.png"), png_file(h, needed - 1));
    expect_refusal(predict + (work_dir() / (name + "_short.png")).string(),
                   {"(corrupt PNG: its image data (IDAT) end before its pixels do)"});
  }
}

TEST(CliBadInput, AFailedRunNeverTouchesTheModelAtOut) {
  const fs::path out = work_dir() / "keep.safetensors";
  write_file(out, "precious bytes");
  expect_refusal(
      "train --data " + (work_dir() / "missing_data").string() + " --out " + out.string(),
      {"no such directory"});
  EXPECT_EQ(read_file(out), "precious bytes");
  // A successful run replaces it whole, and leaves no temporary file behind.
  ASSERT_EQ(cnn("train --data sample --epochs 1 --out " + out.string()).exit_code, 0);
  EXPECT_NO_THROW(load_model(out.string()));
  for (const auto& entry : fs::directory_iterator(work_dir())) {
    EXPECT_EQ(entry.path().string().find(".cnn-tmp-"), std::string::npos) << entry.path();
  }
}

// Found 2026-12-07: a flag given twice took its last value silently (`train --epochs 5
// --epochs 1` trained one epoch). No flag is a list; every command refuses a second one.
TEST(CliBadInput, AFlagGivenTwiceIsRefused) {
  const std::string model = trained_model().string();
  const std::string out = " --out " + (work_dir() / "twice.safetensors").string();
  expect_refusal("train --data sample --epochs 5 --epochs 1" + out,
                 {"cnn: train: --epochs given twice ('5' and '1'); expected it once"});
  EXPECT_EQ(cnn("train --data sample --epochs 5 --epochs 1" + out).out.find("epoch 1"),
            std::string::npos)
      << "it trained";
  expect_refusal("train --data sample --lr=0.1 --lr 0.2" + out,
                 {"cnn: train: --lr given twice ('0.1' and '0.2'); expected it once"});
  expect_refusal("train --data sample --sync-batchnorm --sync-batchnorm" + out,
                 {"cnn: train: --sync-batchnorm given twice; expected it once"});
  // Found 2026-12-08 (a probe): one process took it, where it changes nothing.
  expect_refusal("train --model resnet --data sample --sync-batchnorm" + out,
                 {"cnn: train: --sync-batchnorm shares BatchNorm statistics between mpirun's "
                  "ranks; this run is one process (expected mpirun -np 2 or more)"});
  expect_refusal("eval " + model + " --data sample --batch 8 --batch 9",
                 {"cnn: eval: --batch given twice ('8' and '9'); expected it once"});
  expect_refusal("eval " + model + " --data sample --json --json",
                 {"cnn: eval: --json given twice; expected it once"});
  expect_refusal("predict " + model + " --top 1 --top 2 x.png",
                 {"cnn: predict: --top given twice ('1' and '2'); expected it once"});
  expect_refusal("info lenet5 --json --json", {"cnn: info: --json given twice; expected it once"});
  expect_refusal("convert " + model + " m.onnx --opset 17 --opset 18",
                 {"cnn: convert: --opset given twice ('17' and '18'); expected it once"});
  expect_refusal("bench --repeat 1 --repeat 2",
                 {"cnn: bench: --repeat given twice ('1' and '2'); expected it once"});
  EXPECT_FALSE(fs::exists(work_dir() / "twice.safetensors"));
}

// Found 2026-12-07 (a helper's probe): numbers were read by strtod and strtoll, which take
// leading spaces and (strtod) hexadecimal, so `--lr 0x1p-4` trained at 0.0625 and `--epochs ' 1'`
// ran; `--momentum 1e-320` was taken, 0 in float; and an empty argument or flag value was
// taken as a path ("cnn: : cannot open a safetensors file").
TEST(CliBadInput, NumbersAreDecimalAndNoArgumentIsEmpty) {
  const std::string model = trained_model().string();
  const std::string out = " --out " + (work_dir() / "numbers.safetensors").string();
  expect_refusal("train --data sample --lr 0x1p-4" + out,
                 {"cnn: train: --lr expects a number above 0 to 100, got '0x1p-4'"});
  expect_refusal("train --data sample --epochs ' 1'" + out,
                 {"cnn: train: --epochs expects a whole number from 1 to 100000, got ' 1'"});
  expect_refusal("train --data sample --lr nan" + out, {"--lr expects a number", "got 'nan'"});
  expect_refusal("train --data sample --momentum 1e-320" + out,
                 {"cnn: train: --momentum got '1e-320', which float",
                  "expected 0, or a number of "
                  "at least 1.2e-38"});
  expect_refusal("train --data sample --resume ''",
                 {"cnn: train: --resume expects a value, got ''"});
  expect_refusal("eval '' --data sample",
                 {"cnn: eval: an empty argument '' (expected a file path)"});
  expect_refusal("predict " + model + " ''", {"cnn: predict: an empty argument ''"});
  expect_refusal("eval " + model + " --data ''", {"cnn: eval: --data expects a value, got ''"});
  EXPECT_FALSE(fs::exists(work_dir() / "numbers.safetensors"));
  // What stays: exponents, signs and a leading point.
  const CliRun run = cnn("eval " + model + " --data sample --batch +8 --json");
  EXPECT_EQ(run.exit_code, 0) << run.err;
  EXPECT_EQ(
      cnn("train --data sample --epochs 1 --lr .5e-1 --momentum 0 --threads 1" + out).exit_code, 0);
}

// Found 2026-12-07: bench named --batch neither when memory ran out ("Sequential: out of
// memory: a tensor of shape (4096, 64, 7, 7), 51 MB") nor for a BatchNorm given one value per
// channel (the layer's own line), where train and eval do.
TEST(CliBadInput, BenchNamesTheBatch) {
  const fs::path spec = work_dir() / "bench_bn1d.json";
  write_file(spec, R"({"input": [1, 28, 28], "layers": [{"type": "Flatten"},
    {"type": "Linear", "out_features": 16}, {"type": "BatchNorm1d", "num_features": 16},
    {"type": "ReLU"}, {"type": "Linear", "out_features": 10}]})");
  expect_refusal("bench --model " + spec.string() + " --batch 1 --repeat 1",
                 {"cnn: bench: --batch 1: a batch holds 1 sample, which gives layer 2, "
                  "BatchNorm1d(16,",
                  "one value per channel; it needs more than 1 in training (the variance of one "
                  "is 0): choose a --batch of 2 or more"});
#if !defined(__SANITIZE_ADDRESS__)  // AddressSanitizer cannot start under an address-space limit
  expect_refusal("bench --model resnet --batch 4096 --repeat 1 --threads 1",
                 {"cnn: ", "out of memory", ", at batch 4096 (a smaller --batch needs less)"},
                 "ulimit -v 400000;");
#endif
}

// Found 2026-12-07: the loss of a batch is summed in double but was returned as a float, so a
// mean loss above float's largest value (finite logits 6e38 apart) read "inf" in eval's line,
// null in its JSON and "inf" in train's metrics. It is the true value.
TEST(CliBadInput, AMeanLossAboveFloatsLargestIsItsTrueValue) {
  const ModelSpec spec = parse_model_spec(
      R"({"name": "far", "input": [1, 28, 28], "layers": [{"type": "Flatten"},
        {"type": "Linear", "out_features": 10}]})",
      "far");
  Sequential<float> model = build_model(spec);
  // Weights 0: every image's logits are the biases, 3e38 for class 0 and -3e38 for the others.
  auto named = model.named_parameters();
  for (auto& p : named) {
    float* v = p.value.data();
    for (int64_t i = 0; i < p.value.numel(); ++i) v[i] = 0;
    if (p.name == "1.bias") {
      for (int64_t i = 0; i < p.value.numel(); ++i) v[i] = i == 0 ? 3e38f : -3e38f;
    }
  }
  const fs::path path = work_dir() / "far.safetensors";
  save_model(path.string(), model, spec, {});
  const Dataset test =
      read_idx_dataset(resolve_maybe_gz(std::string(CNN_SAMPLE_DIR) + "/t10k-images-idx3-ubyte"),
                       resolve_maybe_gz(std::string(CNN_SAMPLE_DIR) + "/t10k-labels-idx1-ubyte"));
  int64_t others = 0;
  for (uint8_t label : test.labels) others += label != 0;
  ASSERT_GT(others, 0);
  // Each image of another class loses 3e38 - (-3e38), in float's own values.
  const double expected = (double(3e38f) + double(3e38f)) * double(others) / double(test.size());
  ASSERT_GT(expected, 3.5e38);
  const CliRun json = cnn("eval " + path.string() + " --data sample --json");
  ASSERT_EQ(json.exit_code, 0) << json.err;
  const Json j = Json::parse(json.out);
  ASSERT_TRUE(j.at("loss").is_number()) << json.out;
  EXPECT_NEAR(j.at("loss").get<double>() / expected, 1.0, 1e-6) << json.out;
  const CliRun text = cnn("eval " + path.string() + " --data sample");
  ASSERT_EQ(text.exit_code, 0) << text.err;
  EXPECT_EQ(text.out.find("inf"), std::string::npos) << text.out;
  // In five significant digits, not the 39 digits of %.4f.
  char line[64];
  std::snprintf(line, sizeof line, "test loss %.4e, test accuracy", expected);
  EXPECT_NE(text.out.find(line), std::string::npos) << text.out;
}

// Found 2026-12-07: a spec that is not JSON kept nlohmann's internal id in its line ("not valid
// JSON: [json.exception.parse_error.101] parse error at ..."). The line names the file, the
// line and column, and what was expected.
TEST(CliBadInput, ASpecThatIsNotJsonNamesTheLineAndColumn) {
  const fs::path spec = work_dir() / "broken.json";
  write_file(spec,
             "{\"input\": [1, 28, 28],\n  \"layers\": [\n    {\"type\": \"ReLU\"},\n  ]\n}\n");
  for (const std::string& command :
       {"info " + spec.string(), "train --data sample --model " + spec.string()}) {
    expect_refusal(command, {spec.string() + ": not valid JSON: parse error at line 4, column 3: "
                                             "syntax error while parsing value"});
    EXPECT_EQ(cnn(command).err.find("json.exception"), std::string::npos) << cnn(command).err;
  }
}

}  // namespace
}  // namespace cnn

// Dataset discovery for the command line: Fashion-MNIST from Debian's package, the bundled
// sample, a directory of MNIST-format IDX files, or CIFAR-10 binary batches.

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>

#include "cnn/data.hpp"
#include "cnn/error.hpp"
#include "cnn/fileio.hpp"

namespace cnn {

namespace fs = std::filesystem;

namespace {

const std::vector<std::string> kFashionNames = {"T-shirt/top", "Trouser",   "Pullover", "Dress",
                                                "Coat",        "Sandal",    "Shirt",    "Sneaker",
                                                "Bag",         "Ankle boot"};
const std::vector<std::string> kCifarNames = {"airplane", "automobile", "bird",  "cat",  "deer",
                                              "dog",      "frog",       "horse", "ship", "truck"};

/// Whether `dir` holds IDX files: their first file (the test images for the test split alone).
bool has_idx(const fs::path& dir, bool test_only) {
  std::error_code error;
  return fs::exists(
      resolve_maybe_gz(
          (dir / (test_only ? "t10k-images-idx3-ubyte" : "train-images-idx3-ubyte")).string()),
      error);
}

/// The directory holding the CIFAR-10 batches: dir itself or its cifar-10-batches-bin.
std::optional<fs::path> cifar_dir(const fs::path& dir, bool test_only) {
  for (const fs::path& candidate : {dir, dir / "cifar-10-batches-bin"}) {
    std::error_code error;
    if (fs::exists(candidate / (test_only ? "test_batch.bin" : "data_batch_1.bin"), error))
      return candidate;
  }
  return std::nullopt;
}

DataSplit load_idx_dir(const fs::path& dir, std::vector<std::string> names, std::string description,
                       bool test_only) {
  const auto file = [&](const char* name) { return resolve_maybe_gz((dir / name).string()); };
  DataSplit split;
  if (!test_only) {
    split.train =
        read_idx_dataset(file("train-images-idx3-ubyte"), file("train-labels-idx1-ubyte"));
  }
  split.test = read_idx_dataset(file("t10k-images-idx3-ubyte"), file("t10k-labels-idx1-ubyte"));
  if (!test_only && (split.train.images.rows != split.test.images.rows ||
                     split.train.images.cols != split.test.images.cols)) {
    throw Error(dir.string() + ": training images are " + std::to_string(split.train.images.rows) +
                "x" + std::to_string(split.train.images.cols) + " but test images are " +
                std::to_string(split.test.images.rows) + "x" +
                std::to_string(split.test.images.cols));
  }
  int max_label = 0;
  for (const Dataset* d : {&split.train, &split.test}) {
    for (uint8_t l : d->labels) max_label = std::max<int>(max_label, l);
  }
  if (names.empty() || static_cast<int>(names.size()) <= max_label) {
    names.clear();
    for (int i = 0; i <= max_label; ++i) names.push_back(std::to_string(i));
  }
  split.class_names = std::move(names);
  split.description = std::move(description);
  return split;
}

}  // namespace

Dataset read_cifar10(const std::vector<std::string>& paths) {
  constexpr int64_t kPixels = 3 * 32 * 32, kRecord = 1 + kPixels;
  // Each file must hold a record; no file gave an empty dataset without a word.
  if (paths.empty()) throw Error("read_cifar10: expected at least one batch file, got none");
  Dataset data;
  data.images.channels = 3;
  data.images.rows = data.images.cols = 32;
  // A real batch is 30,730,000 bytes; the cap refuses a corrupt or sparse file before reading it.
  constexpr int64_t kMaxBatchBytes = int64_t{1} << 33;
  for (const std::string& path : paths) {
    require_path(path, "read_cifar10");
    require_regular_file(path, "a CIFAR-10 batch");
    std::error_code error;
    const uintmax_t file_size = fs::file_size(path, error);
    if (!error && file_size > static_cast<uintmax_t>(kMaxBatchBytes)) {
      throw Error(path + ": expected a CIFAR-10 batch of at most " +
                  std::to_string(kMaxBatchBytes) + " bytes, got " + std::to_string(file_size));
    }
    const std::string bytes = read_whole_file(path, "a CIFAR-10 batch");
    const int64_t size = static_cast<int64_t>(bytes.size());
    if (size == 0 || size % kRecord != 0) {
      throw Error(path + ": expected a whole number of " + std::to_string(kRecord) +
                  "-byte CIFAR-10 records, got " + std::to_string(size) + " bytes");
    }
    // The counts are checked so that a file's size can never overflow them.
    const std::optional<int64_t> count = size_sum(data.images.count, size / kRecord);
    if (!count || !size_product(*count, kPixels)) {
      throw Error(path + ": expected at most 2^48 CIFAR-10 pixels in all, got " +
                  std::to_string(size / kRecord) + " more records after " +
                  std::to_string(data.images.count));
    }
    for (int64_t r = 0; r < size / kRecord; ++r) {
      const auto* record = reinterpret_cast<const uint8_t*>(bytes.data()) + r * kRecord;
      if (record[0] > 9) {
        throw Error(path + ": record " + std::to_string(r) + " has label " +
                    std::to_string(record[0]) + ", expected 0 to 9");
      }
      data.labels.push_back(record[0]);
      data.images.pixels.insert(data.images.pixels.end(), record + 1, record + kRecord);
    }
    data.images.count = *count;
  }
  return data;
}

DataSplit load_dataset(const std::string& which, const std::string& sample_dir, std::string* notice,
                       bool test_only, const std::string& argument) {
  if (which == "sample") {
    if (!has_idx(sample_dir, test_only)) throw Error("sample dataset: not found in " + sample_dir);
    return load_idx_dir(sample_dir, kFashionNames, "Fashion-MNIST sample (" + sample_dir + ")",
                        test_only);
  }
  if (which == "fashion-mnist") {
    if (has_idx(kFashionMnistDir, test_only)) {
      return load_idx_dir(kFashionMnistDir, kFashionNames,
                          std::string("Fashion-MNIST (") + kFashionMnistDir + ")", test_only);
    }
    if (notice) {
      *notice = std::string("full Fashion-MNIST not found in ") + kFashionMnistDir +
                " (apt-get install dataset-fashion-mnist); using the bundled sample";
    }
    return load_dataset("sample", sample_dir, nullptr, test_only);
  }
  const fs::path dir(which);
  // "" is shown as "", not as nothing ("dataset : no such directory").
  const std::string named = argument + " " + (which.empty() ? std::string("\"\"") : which);
  std::error_code error;
  if (!fs::is_directory(dir, error)) {
    // The system's reason where it has one beyond absence ("File name too long").
    std::error_code exists_error;
    const std::string reason = error && error != std::errc::no_such_file_or_directory
                                   ? error.message()
                               : fs::exists(dir, exists_error) ? std::string("not a directory")
                                                               : std::string("no such directory");
    throw Error(named + ": " + reason +
                " (expected fashion-mnist, sample, or a directory of IDX files or CIFAR-10 "
                "batches)");
  }
  if (has_idx(dir, test_only))
    return load_idx_dir(dir, {}, "IDX dataset (" + which + ")", test_only);
  if (const auto cifar = cifar_dir(dir, test_only)) {
    DataSplit split;
    if (!test_only) {
      std::vector<std::string> train_files;
      for (int i = 1; i <= 5; ++i) {
        const fs::path batch = *cifar / ("data_batch_" + std::to_string(i) + ".bin");
        if (fs::exists(batch, error)) train_files.push_back(batch.string());
      }
      split.train = read_cifar10(train_files);
    }
    split.test = read_cifar10({(*cifar / "test_batch.bin").string()});
    split.class_names = kCifarNames;
    split.description = "CIFAR-10 (" + cifar->string() + ")";
    return split;
  }
  if (test_only) {
    throw Error(named +
                ": expected the test set, t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte (raw "
                "or .gz), or CIFAR-10 test_batch.bin");
  }
  throw Error(named +
              ": expected train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte "
              "and t10k-labels-idx1-ubyte (raw or .gz), or CIFAR-10 data_batch_1.bin ... "
              "test_batch.bin");
}

void check_images(const ImageSet& images, const std::string& what) {
  const auto text = [](int64_t v) { return std::to_string(v); };
  if (images.count < 0 || images.channels < 1 || images.rows < 1 || images.cols < 1) {
    throw Error(what + ": expected count >= 0 and channels, rows, cols >= 1, got " +
                text(images.count) + " images of " + text(images.channels) + " x " +
                text(images.rows) + " x " + text(images.cols));
  }
  const std::optional<int64_t> image = size_product(images.channels, images.rows);
  const std::optional<int64_t> pixels = image ? size_product(*image, images.cols) : std::nullopt;
  const std::optional<int64_t> total = pixels ? size_product(*pixels, images.count) : std::nullopt;
  if (!total || static_cast<uint64_t>(*total) != images.pixels.size()) {
    throw Error(what + ": " + text(images.count) + " images of " + text(images.channels) + " x " +
                text(images.rows) + " x " + text(images.cols) + " pixels need " +
                (total ? text(*total) : std::string("more than 2^48")) + " bytes, got " +
                std::to_string(images.pixels.size()));
  }
}

void check_dataset(const Dataset& data, const std::string& what) {
  check_images(data.images, what);
  if (data.labels.size() != static_cast<uint64_t>(data.images.count)) {
    throw Error(what + ": " + std::to_string(data.images.count) + " images and " +
                std::to_string(data.labels.size()) + " labels (expected one label per image)");
  }
}

Dataset select_classes(const Dataset& data, const std::vector<int>& classes) {
  check_dataset(data, "select_classes");
  // The spec reader's rule for "classes": a label outside a byte's range matched nothing, a
  // repeated one matched only its first place, and fewer than two left nothing to tell apart,
  // each without a word.
  bool valid = classes.size() >= 2;
  for (size_t i = 0; valid && i < classes.size(); ++i) {
    valid = classes[i] >= 0 && classes[i] <= 255 &&
            std::find(classes.begin(), classes.begin() + static_cast<std::ptrdiff_t>(i),
                      classes[i]) == classes.begin() + static_cast<std::ptrdiff_t>(i);
  }
  if (!valid) {
    std::string given = "[";
    for (size_t i = 0; i < classes.size(); ++i)
      given += (i ? ", " : "") + std::to_string(classes[i]);
    throw Error("select_classes: expected at least two distinct dataset labels in [0, 255], got " +
                given + "]");
  }
  Dataset out;
  out.images.channels = data.images.channels;
  out.images.rows = data.images.rows;
  out.images.cols = data.images.cols;
  const int64_t size = data.images.image_size();
  for (int64_t i = 0; i < data.size(); ++i) {
    const auto it =
        std::find(classes.begin(), classes.end(), int{data.labels[static_cast<size_t>(i)]});
    if (it == classes.end()) continue;
    out.labels.push_back(static_cast<uint8_t>(it - classes.begin()));
    const auto* first = data.images.pixels.data() + i * size;
    out.images.pixels.insert(out.images.pixels.end(), first, first + size);
    ++out.images.count;
  }
  return out;
}

const char* augment_name(Augment augment) {
  return augment == Augment::kCropFlip ? "crop-flip" : "none";
}

Augment parse_augment(const std::string& name) {
  for (Augment a : {Augment::kNone, Augment::kCropFlip}) {
    if (name == augment_name(a)) return a;
  }
  throw Error("--augment: expects none or crop-flip, got '" + name + "'");
}

void random_crop_flip(Tensor<float>& x, int64_t padding, Rng& rng, std::vector<float>& scratch) {
  const Shape& s = x.shape();
  if (s.rank() != 4 || padding < 0 || padding > kMaxElements) {
    throw Error("random_crop_flip: expected x (N, C, H, W) and padding >= 0, got " + s.str() +
                " and " + std::to_string(padding));
  }
  const int64_t channels = s[1], height = s[2], width = s[3], size = channels * height * width;
  if (static_cast<int64_t>(scratch.size()) < size) scratch.resize(static_cast<size_t>(size));
  const uint64_t offsets = static_cast<uint64_t>(2 * padding + 1);
  for (int64_t n = 0; n < s[0]; ++n) {
    const int64_t top = static_cast<int64_t>(rng.below(offsets)) - padding;
    const int64_t left = static_cast<int64_t>(rng.below(offsets)) - padding;
    const bool flip = rng.below(2) == 1;
    float* image = x.data() + n * size;
    std::copy(image, image + size, scratch.begin());
    for (int64_t c = 0; c < channels; ++c)
      for (int64_t i = 0; i < height; ++i) {
        float* out = image + (c * height + i) * width;
        const int64_t source_row = i + top;
        if (source_row < 0 || source_row >= height) {
          std::fill(out, out + width, 0.0f);
          continue;
        }
        const float* in = scratch.data() + (c * height + source_row) * width;
        for (int64_t j = 0; j < width; ++j) {
          const int64_t source_col = (flip ? width - 1 - j : j) + left;
          out[j] = source_col >= 0 && source_col < width ? in[source_col] : 0.0f;
        }
      }
  }
}

BatchIterator::BatchIterator(int64_t count, int64_t batch_size)
    : count_(count), batch_size_(batch_size) {
  // Checked before the order is sized: a negative count made std::length_error. A batch above
  // the count is the count (one batch an epoch), so that batches_per_epoch cannot overflow.
  if (count <= 0 || batch_size <= 0) {
    throw Error("BatchIterator: expected positive count and batch size, got " +
                std::to_string(count) + " and " + std::to_string(batch_size));
  }
  batch_size_ = std::min(batch_size, count);
  // An order too large for memory is OutOfMemory, not std::length_error (found 2026-12-08, a
  // probe of the API: BatchIterator(INT64_MAX, ...)).
  try {
    order_.resize(static_cast<size_t>(count));
  } catch (const std::exception&) {
    throw OutOfMemory("BatchIterator: out of memory: an order of " + std::to_string(count) +
                      " indices, " + memory_size_text(double(count) * sizeof(int64_t)));
  }
  start_epoch(nullptr);
}

void BatchIterator::start_epoch(Rng* rng) {
  for (int64_t i = 0; i < count_; ++i) order_[static_cast<size_t>(i)] = i;
  if (rng) rng->shuffle(order_.begin(), order_.end());
  position_ = 0;
}

bool BatchIterator::next(std::vector<int64_t>& indices) {
  if (position_ >= count_) return false;
  const int64_t end = std::min(count_, position_ + batch_size_);
  indices.assign(order_.begin() + position_, order_.begin() + end);
  position_ = end;
  return true;
}

}  // namespace cnn

namespace cnn {

void BatchIterator::restore(std::vector<int64_t> order, int64_t position) {
  if (static_cast<int64_t>(order.size()) != count_ || position < 0 || position > count_) {
    throw Error("BatchIterator: a saved order of " + std::to_string(order.size()) +
                " samples at position " + std::to_string(position) + " does not fit " +
                std::to_string(count_) + " samples");
  }
  std::vector<bool> seen(static_cast<size_t>(count_), false);
  for (int64_t i : order) {
    if (i < 0 || i >= count_ || seen[static_cast<size_t>(i)])
      throw Error("BatchIterator: the saved order is not a permutation of the samples");
    seen[static_cast<size_t>(i)] = true;
  }
  order_ = std::move(order);
  position_ = position;
}

}  // namespace cnn

#pragma once
// Datasets kept as bytes (one uint8 per pixel), converted to float batches on demand.

#include <cstdint>
#include <string>
#include <vector>

#include "cnn/rng.hpp"
#include "cnn/tensor.hpp"

namespace cnn {

/// count images of channels x rows x cols uint8 pixels, each image CHW row-major.
struct ImageSet {
  int64_t count = 0, channels = 1, rows = 0, cols = 0;
  std::vector<uint8_t> pixels;
  int64_t image_size() const { return channels * rows * cols; }
};

/// Reads an IDX image file (magic 0x00000803), raw or gzip-compressed (zlib detects which).
/// Throws cnn::Error("<path>: ...") for a missing file, a wrong magic number, zero sizes, or a
/// file shorter or longer than its header says.
ImageSet read_idx_images(const std::string& path);
/// Reads an IDX label file (magic 0x00000801), raw or gzipped; same errors.
std::vector<uint8_t> read_idx_labels(const std::string& path);
/// `path` when it exists, else `path + ".gz"` when that exists, else `path` (so that the
/// reader's error names the file that was asked for).
std::string resolve_maybe_gz(const std::string& path);

/// A labelled image dataset in memory as bytes.
struct Dataset {
  ImageSet images;
  std::vector<uint8_t> labels;
  int64_t size() const { return images.count; }
};

/// Throws cnn::Error("<what>: ...") unless `images` holds what its fields say: count >= 0,
/// channels, rows and cols >= 1, and count x channels x rows x cols pixels. The library's
/// consumers of images (gather_images, select_classes, train_model, evaluate) check it, since
/// a struct filled by a caller can disagree with itself.
void check_images(const ImageSet& images, const std::string& what);
/// check_images, and one label per image.
void check_dataset(const Dataset& data, const std::string& what);

/// Reads images and labels and checks that their counts agree.
Dataset read_idx_dataset(const std::string& images_path, const std::string& labels_path);

/// Reads CIFAR-10 binary batch files (each record: one label byte, then 3 x 32 x 32 pixels,
/// red, green, blue planes) into one dataset. Throws cnn::Error for no paths, or naming a file
/// that is missing, empty, not a whole number of records, or holds a label above 9.
Dataset read_cifar10(const std::vector<std::string>& paths);

/// Train and test sets with class names, as the command line loads them.
struct DataSplit {
  Dataset train, test;
  std::vector<std::string> class_names;
  std::string description;  // "Fashion-MNIST (/usr/share/datasets/fashion-mnist)"
};

/// Where Debian's dataset-fashion-mnist puts the files.
inline constexpr const char* kFashionMnistDir = "/usr/share/datasets/fashion-mnist";

/// Loads `which`: "fashion-mnist" (Debian's package; when it is missing, `notice` receives one
/// line saying so and the bundled sample is used), "sample" (the sample in `sample_dir`), or a
/// directory holding the four MNIST-format IDX files (raw or .gz) or CIFAR-10 binary batches.
/// Throws cnn::Error naming the directory or file and what was expected; a `which` that is none
/// of these is named after `argument` ("dataset /x: no such directory (expected ...)"; the
/// command line passes "--data"). With `test_only`, only the test split is read (`train` stays
/// empty): evaluation needs no training files.
DataSplit load_dataset(const std::string& which, const std::string& sample_dir, std::string* notice,
                       bool test_only = false, const std::string& argument = "dataset");

/// The samples whose label is in `classes`, relabelled to the position in `classes`. Throws
/// cnn::Error unless `classes` holds at least two distinct labels in [0, 255] (a spec's
/// "classes" rule), or for a `data` that check_dataset refuses.
Dataset select_classes(const Dataset& data, const std::vector<int>& classes);

/// Batches of indices over [0, count): shuffled each epoch when start_epoch gets an rng, in
/// order when it gets null; the last batch is partial when count is not a multiple of the batch
/// size.
class BatchIterator {
 public:
  BatchIterator(int64_t count, int64_t batch_size);
  /// Starts an epoch: a new order from rng (or the identity when rng is null).
  void start_epoch(Rng* rng);
  /// The next batch's indices, or false after the last batch of the epoch.
  bool next(std::vector<int64_t>& indices);
  int64_t batches_per_epoch() const { return (count_ + batch_size_ - 1) / batch_size_; }
  /// This epoch's order and the samples of it handed out so far (checkpoints save them).
  const std::vector<int64_t>& order() const { return order_; }
  int64_t position() const { return position_; }
  /// Continues an epoch at `position` of `order` (a permutation of 0..count-1; checked).
  void restore(std::vector<int64_t> order, int64_t position);

 private:
  int64_t count_, batch_size_, position_ = 0;
  std::vector<int64_t> order_;
};

/// x (n, channels, rows, cols) = pixels / 255 of the images at `indices`.
void gather_images(const ImageSet& images, const std::vector<int64_t>& indices, Tensor<float>& x);

namespace detail {
/// Throws cnn::Error "<caller>: expected indices in [0, count), got I" for the first of
/// `indices` outside [0, count): gather_images' and gather_labels' check, made before either
/// reads a sample.
void require_indices(const std::vector<int64_t>& indices, int64_t count, const char* caller);
}  // namespace detail

/// Training-time augmentation of a batch.
enum class Augment {
  kNone,
  kCropFlip,  // random crop with zero padding, then a random horizontal flip
};
/// "none", "crop-flip".
const char* augment_name(Augment augment);
/// The augmentation called `name`; throws cnn::Error "--augment: expects none or crop-flip,
/// got '<name>'".
Augment parse_augment(const std::string& name);

/// Random crop with zero padding and horizontal flip of every sample of x (N, C, H, W), in
/// place: as torchvision's RandomCrop((H, W), padding) then RandomHorizontalFlip(0.5). Per
/// sample, in this order, it draws from rng the crop's top and left offsets in [0, 2 padding]
/// (rng.below(2 padding + 1) each) and the flip (rng.below(2) == 1); then
///   x'(c, i, j) = x(c, i + top - padding, w - padding + left), w = flip ? W - 1 - j : j,
/// zero where that falls outside the image. `scratch` holds one image; it grows once and is
/// then reused, so a steady-state training step allocates nothing. Throws cnn::Error for a
/// negative padding or an x that is not (N, C, H, W).
void random_crop_flip(Tensor<float>& x, int64_t padding, Rng& rng, std::vector<float>& scratch);

}  // namespace cnn

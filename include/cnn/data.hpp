#pragma once
// Datasets kept as bytes (one uint8 per pixel), converted to float batches on demand.

#include <cstdint>
#include <string>
#include <vector>

#include "cnn/tensor.hpp"

namespace cnn {

/// Images of one IDX file: count images of rows x cols uint8 pixels, row-major.
struct IdxImages {
  int64_t count = 0, rows = 0, cols = 0;
  std::vector<uint8_t> pixels;
};

/// Reads an IDX image file (magic 0x00000803), raw or gzip-compressed (zlib detects which).
/// Throws cnn::Error("<path>: ...") for a missing file, a wrong magic number, zero sizes, or a
/// file shorter or longer than its header says.
IdxImages read_idx_images(const std::string& path);
/// Reads an IDX label file (magic 0x00000801), raw or gzipped; same errors.
std::vector<uint8_t> read_idx_labels(const std::string& path);
/// `path` when it exists, else `path + ".gz"` when that exists, else `path` (so that the
/// reader's error names the file that was asked for).
std::string resolve_maybe_gz(const std::string& path);

/// A labelled image dataset in memory as bytes.
struct Dataset {
  IdxImages images;
  std::vector<uint8_t> labels;
  int64_t size() const { return images.count; }
};

/// Reads images and labels and checks that their counts agree.
Dataset read_idx_dataset(const std::string& images_path, const std::string& labels_path);

/// x (n, 1, rows, cols) = pixels / 255 of the images at `indices`.
void gather_images(const IdxImages& images, const std::vector<int64_t>& indices, Tensor<float>& x);

}  // namespace cnn

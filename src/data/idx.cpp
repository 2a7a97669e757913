#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <memory>
#include <optional>
#include <vector>

#include "../ops/parallel.hpp"
#include "cnn/data.hpp"
#include "cnn/error.hpp"
#include "cnn/fileio.hpp"
#include "cnn/ops.hpp"

namespace cnn {

namespace {

constexpr uint32_t kLabelMagic = 0x00000801;
constexpr uint32_t kImageMagic = 0x00000803;
// Far above any IDX dataset we know (EMNIST: 814,255 images); guards allocations from
// corrupt headers.
constexpr int64_t kMaxIdxBytes = int64_t{1} << 33;

[[noreturn]] void fail(const std::string& path, const std::string& message) {
  throw Error(path + ": " + message);
}

struct GzCloser {
  void operator()(gzFile_s* f) const { gzclose(f); }
};

/// The whole (decompressed) content of a raw or gzipped file.
class Reader {
 public:
  explicit Reader(const std::string& path) : path_(path) {
    std::error_code error;
    if (!std::filesystem::exists(path, error)) fail(path, "no such file");
    require_regular_file(path, "an IDX file");
    file_.reset(gzopen(path.c_str(), "rb"));
    if (!file_) fail(path, std::string("cannot open: ") + std::strerror(errno));
  }
  /// Reads exactly n bytes or fails naming what was being read.
  void read(void* out, int64_t n, const std::string& what) {
    auto* p = static_cast<uint8_t*>(out);
    while (n > 0) {
      const unsigned chunk = static_cast<unsigned>(std::min<int64_t>(n, 1 << 30));
      const int got = gzread(file_.get(), p, chunk);
      if (got < 0) {
        int code = 0;
        fail(path_, std::string("corrupt compressed data (") + gzerror(file_.get(), &code) + ")");
      }
      if (got == 0) fail(path_, "truncated: the file ends inside the " + what);
      p += got;
      n -= got;
    }
  }
  /// Reads exactly n bytes into `out` (resized to n), growing it as the data arrives: a
  /// header that claims gigabytes in a small file fails as truncated before it allocates them.
  void read_growing(std::vector<uint8_t>& out, int64_t n, const std::string& what) {
    constexpr int64_t kChunk = int64_t{1} << 20;  // small: a fuzzer's lying headers stay cheap
    out.clear();
    for (int64_t done = 0; done < n;) {
      const int64_t chunk = std::min(kChunk, n - done);
      out.resize(static_cast<size_t>(done + chunk));
      read(out.data() + done, chunk, what);
      done += chunk;
    }
  }
  uint32_t read_u32_be(const std::string& what) {
    uint8_t b[4];
    read(b, 4, what);
    return (uint32_t{b[0]} << 24) | (uint32_t{b[1]} << 16) | (uint32_t{b[2]} << 8) | b[3];
  }
  /// Fails unless the file has no bytes left.
  void expect_end() {
    uint8_t extra;
    const int got = gzread(file_.get(), &extra, 1);
    if (got < 0) {
      int code = 0;
      fail(path_, std::string("corrupt compressed data (") + gzerror(file_.get(), &code) + ")");
    }
    if (got > 0) fail(path_, "has more data than its header describes");
  }

 private:
  std::string path_;
  std::unique_ptr<gzFile_s, GzCloser> file_;
};

std::string hex(uint32_t value) {
  char text[16];
  std::snprintf(text, sizeof text, "0x%08X", value);
  return text;
}

}  // namespace

std::string resolve_maybe_gz(const std::string& path) {
  std::error_code error;  // a name too long for the system is "not there", not an exception
  if (std::filesystem::exists(path, error)) return path;
  if (std::filesystem::exists(path + ".gz", error)) return path + ".gz";
  return path;
}

ImageSet read_idx_images(const std::string& path) {
  Reader in(path);
  const uint32_t magic = in.read_u32_be("magic number");
  if (magic != kImageMagic) {
    fail(path, "expected the IDX image magic number " + hex(kImageMagic) + ", got " + hex(magic));
  }
  ImageSet images;
  images.count = in.read_u32_be("header");
  images.rows = in.read_u32_be("header");
  images.cols = in.read_u32_be("header");
  const std::string described = std::to_string(images.count) + " images of " +
                                std::to_string(images.rows) + "x" + std::to_string(images.cols);
  if (images.count <= 0 || images.rows <= 0 || images.cols <= 0) {
    fail(path, "expected positive image count and size, got " + described);
  }
  // Each factor is below 2^32, so the product can overflow 64 bits: checked.
  const std::optional<int64_t> per_image = size_product(images.rows, images.cols);
  const std::optional<int64_t> total =
      per_image ? size_product(*per_image, images.count) : std::nullopt;
  if (!total || *total > kMaxIdxBytes) {
    fail(path,
         "expected at most " + std::to_string(kMaxIdxBytes) + " pixels in all, got " + described);
  }
  in.read_growing(images.pixels, *total,
                  "pixels (header says " + std::to_string(images.count) + " images)");
  in.expect_end();
  return images;
}

std::vector<uint8_t> read_idx_labels(const std::string& path) {
  Reader in(path);
  const uint32_t magic = in.read_u32_be("magic number");
  if (magic != kLabelMagic) {
    fail(path, "expected the IDX label magic number " + hex(kLabelMagic) + ", got " + hex(magic));
  }
  const int64_t count = in.read_u32_be("header");
  if (count <= 0 || count > kMaxIdxBytes) {
    fail(path, "expected a positive label count, got " + std::to_string(count));
  }
  std::vector<uint8_t> labels;
  in.read_growing(labels, count, "labels (header says " + std::to_string(count) + ")");
  in.expect_end();
  return labels;
}

Dataset read_idx_dataset(const std::string& images_path, const std::string& labels_path) {
  Dataset data;
  data.images = read_idx_images(images_path);
  data.labels = read_idx_labels(labels_path);
  if (static_cast<int64_t>(data.labels.size()) != data.images.count) {
    fail(labels_path, "holds " + std::to_string(data.labels.size()) + " labels but " + images_path +
                          " holds " + std::to_string(data.images.count) + " images");
  }
  return data;
}

void gather_images(const ImageSet& images, const std::vector<int64_t>& indices, Tensor<float>& x) {
  check_images(images, "gather_images");
  const int64_t size = images.image_size();
  x.resize(Shape{static_cast<int64_t>(indices.size()), images.channels, images.rows, images.cols});
  for (const int64_t index : indices) {
    if (index < 0 || index >= images.count) {
      throw Error("gather_images: expected indices in [0, " + std::to_string(images.count) +
                  "), got " + std::to_string(index));
    }
  }
  // Each thread writes the images it will take in the model's first layer (the kernels' split
  // of a batch, images_of_part): a line the other thread wrote or read last costs a round trip
  // between the cores (350 ns on this machine when its vCPUs do not share a cache).
  const int64_t count = static_cast<int64_t>(indices.size());
  const int parts = detail::element_parts(count * size, ops::threads());
  float* const out = x.data();
  detail::for_each_range(parts, count, [&](int64_t first, int64_t last) {
    for (int64_t n = first; n < last; ++n) {
      const uint8_t* src = images.pixels.data() + indices[static_cast<size_t>(n)] * size;
      float* dst = out + n * size;
      for (int64_t i = 0; i < size; ++i) dst[i] = static_cast<float>(src[i]) * (1.0f / 255.0f);
    }
  });
}

}  // namespace cnn

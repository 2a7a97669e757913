#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <new>
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

/// The whole (decompressed) content of a raw or gzipped file (gzip by its first two bytes).
/// zlib's inflate is driven directly rather than through gzread: gzread returned a gzip file
/// whose last 8 bytes (its CRC and length) were cut as complete and unchecked, and ignored
/// bytes after the stream (found 2026-12-06: a label file with one byte changed and its trailer
/// cut evaluated to another loss). Each gzip member must reach its end, which checks its CRC;
/// after it come further members (as gzip writes for concatenated files) or zero padding
/// (which gzip and Python accept), nothing else.
class Reader {
 public:
  explicit Reader(const std::string& path) : path_(path) {
    std::error_code error;
    if (!std::filesystem::exists(path, error)) fail(path, "no such file");
    require_regular_file(path, "an IDX file");
    file_.open(path, std::ios::binary);
    if (!file_) fail(path, std::string("cannot open: ") + std::strerror(errno));
    gzip_ = fill(2) && buffer_[position_] == 0x1f && buffer_[position_ + 1] == 0x8b;
    if (gzip_) {
      if (inflateInit2(&stream_, 16 + MAX_WBITS) != Z_OK) throw std::bad_alloc();
      inflating_ = true;
    }
  }
  Reader(const Reader&) = delete;
  Reader& operator=(const Reader&) = delete;
  ~Reader() {
    if (gzip_) inflateEnd(&stream_);
  }
  /// Reads exactly n bytes or fails naming what was being read.
  void read(void* out, int64_t n, const std::string& what) {
    auto* p = static_cast<uint8_t*>(out);
    while (n > 0) {
      const int64_t got = read_some(p, n);
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
  /// Fails unless the content has no bytes left (and a gzip file's last member has ended).
  void expect_end() {
    uint8_t extra;
    if (read_some(&extra, 1) > 0) fail(path_, "has more data than its header describes");
  }

 private:
  /// Makes at least `n` unread bytes of the file available in buffer_ unless the file ends
  /// first; returns whether they are.
  bool fill(size_t n) {
    if (end_ - position_ >= n) return true;
    std::copy(buffer_.begin() + static_cast<std::ptrdiff_t>(position_),
              buffer_.begin() + static_cast<std::ptrdiff_t>(end_), buffer_.begin());
    end_ -= position_;
    position_ = 0;
    while (end_ < n && file_) {
      file_.read(reinterpret_cast<char*>(buffer_.data() + end_),
                 static_cast<std::streamsize>(buffer_.size() - end_));
      end_ += static_cast<size_t>(file_.gcount());
    }
    if (file_.bad()) fail(path_, std::string("cannot read: ") + std::strerror(errno));
    return end_ - position_ >= n;
  }
  /// Up to n bytes of content into `out`; 0 once the content has ended.
  int64_t read_some(uint8_t* out, int64_t n) {
    if (!gzip_) {
      if (!fill(1)) return 0;
      const size_t got = std::min(end_ - position_, static_cast<size_t>(n));
      std::memcpy(out, buffer_.data() + position_, got);
      position_ += got;
      return static_cast<int64_t>(got);
    }
    const unsigned wanted = static_cast<unsigned>(std::min<int64_t>(n, 1 << 30));
    stream_.next_out = out;
    stream_.avail_out = wanted;
    while (stream_.avail_out == wanted && inflating_) {
      if (!fill(1)) fail(path_, "truncated compressed data (the file ends inside its gzip stream)");
      stream_.next_in = buffer_.data() + position_;
      stream_.avail_in = static_cast<unsigned>(end_ - position_);
      const int code = inflate(&stream_, Z_NO_FLUSH);
      position_ = end_ - stream_.avail_in;
      if (code == Z_STREAM_END) {
        next_member();
      } else if (code == Z_MEM_ERROR) {
        throw std::bad_alloc();
      } else if (code != Z_OK && code != Z_BUF_ERROR) {
        fail(path_, std::string("corrupt compressed data (") +
                        (stream_.msg ? stream_.msg : "zlib error " + std::to_string(code)) + ")");
      }
    }
    return static_cast<int64_t>(wanted - stream_.avail_out);
  }
  /// After a gzip member's end: another member, or zero padding to the end of the file.
  void next_member() {
    while (fill(1) && buffer_[position_] == 0) ++position_;
    if (!fill(1)) {
      inflating_ = false;
      return;
    }
    if (!fill(2) || buffer_[position_] != 0x1f || buffer_[position_ + 1] != 0x8b)
      fail(path_, "corrupt compressed data (bytes after the end of the gzip stream)");
    if (inflateReset(&stream_) != Z_OK) fail(path_, "corrupt compressed data (inflateReset)");
  }

  std::string path_;
  std::ifstream file_;
  std::vector<uint8_t> buffer_ = std::vector<uint8_t>(size_t{1} << 16);
  size_t position_ = 0, end_ = 0;  // the unread bytes of buffer_
  bool gzip_ = false, inflating_ = false;
  z_stream stream_{};
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
  require_path(path, "read_idx_images");
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
  require_path(path, "read_idx_labels");
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

void detail::require_indices(const std::vector<int64_t>& indices, int64_t count,
                             const char* caller) {
  for (const int64_t index : indices) {
    if (index < 0 || index >= count) {
      throw Error(std::string(caller) + ": expected indices in [0, " + std::to_string(count) +
                  "), got " + std::to_string(index));
    }
  }
}

void gather_images(const ImageSet& images, const std::vector<int64_t>& indices, Tensor<float>& x) {
  check_images(images, "gather_images");
  const int64_t size = images.image_size();
  x.resize(Shape{static_cast<int64_t>(indices.size()), images.channels, images.rows, images.cols});
  detail::require_indices(indices, images.count, "gather_images");
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

#include "image.hpp"

#include <stb/stb_image.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <vector>

#include "cnn/error.hpp"

namespace cnn::cli {
namespace {

enum class ImageFormat { kPng, kJpeg, kBmp, kPnm, kOther };

// The format from the file's first bytes. Only the formats predict documents are decoded: stb
// also guesses TGA, which has no signature, and would take many a non-image for one.
ImageFormat sniff_format(const std::string& head) {
  if (head.rfind("\x89PNG", 0) == 0) return ImageFormat::kPng;
  if (head.rfind("\xFF\xD8", 0) == 0) return ImageFormat::kJpeg;
  if (head.rfind("BM", 0) == 0) return ImageFormat::kBmp;
  if (head.rfind("P5", 0) == 0 || head.rfind("P6", 0) == 0) return ImageFormat::kPnm;
  return ImageFormat::kOther;
}

[[noreturn]] void refuse(const std::string& path, const std::string& reason) {
  throw Error(path + ": cannot decode image (" + reason + ")");
}

void check_pixel_limit(const std::string& path, int64_t width, int64_t height) {
  if (width * height > kMaxImagePixels) {
    throw Error(path + ": image of " + std::to_string(width) + "x" + std::to_string(height) +
                " pixels exceeds the limit of " + std::to_string(kMaxImagePixels >> 20) +
                " megapixels (" + std::to_string(kMaxImagePixels) + " pixels)");
  }
}

// Netpbm's whitespace: the bytes that separate header fields and end the last one.
bool is_pnm_whitespace(int c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

// Reads the header fields of a binary PGM (P5) or PPM (P6) as Netpbm defines them: decimal
// numbers separated by whitespace, where '#' starts a comment that runs to the end of its line.
class PnmHeaderReader {
 public:
  PnmHeaderReader(std::istream& in, const std::string& path) : in_(in), path_(path) {}

  // The next field, which must lie in [1, max]; `what` names it in errors.
  int64_t number(const char* what, int64_t max) {
    int c = in_.get();
    bool separated = ended_by_whitespace_;
    while (true) {
      if (c == '#') {
        while (c != EOF && c != '\n' && c != '\r') c = in_.get();
      } else if (is_pnm_whitespace(c)) {
        c = in_.get();
      } else {
        break;
      }
      separated = true;
    }
    if (!separated || c < '0' || c > '9') {
      refuse(path_, std::string("PGM/PPM header: expected the ") + what +
                        " (a decimal number after whitespace), got " + describe(c));
    }
    int64_t value = 0;
    for (; c >= '0' && c <= '9'; c = in_.get()) {
      value = value * 10 + (c - '0');
      if (value > max) {
        refuse(path_, std::string("PGM/PPM header: ") + what + " exceeds " + std::to_string(max));
      }
    }
    // One whitespace byte ends each field; after the maxval the samples follow it.
    if (!is_pnm_whitespace(c)) {
      refuse(path_, std::string("PGM/PPM header: expected whitespace after the ") + what +
                        ", got " + describe(c));
    }
    ended_by_whitespace_ = true;
    if (value < 1) {
      refuse(path_, std::string("PGM/PPM header: the ") + what + " is 0; expected at least 1");
    }
    return value;
  }

 private:
  static std::string describe(int c) {
    if (c == EOF) return "the end of the file";
    if (c > ' ' && c < 127) return std::string("'") + char(c) + "'";
    char hex[8];
    std::snprintf(hex, sizeof hex, "0x%02x", c);
    return std::string("byte ") + hex;
  }

  std::istream& in_;
  const std::string& path_;
  bool ended_by_whitespace_ = false;  // the byte that ended the previous field
};

// Decodes a binary PGM (file_channels 1) or PPM (3) from `in`, positioned after its two-byte
// magic in a file of `file_size` bytes, to 8-bit samples with `channels` channels, interleaved.
// stb's own PNM reader returns a partly read image when the file ends early and converts the
// channels of 16-bit files with its 8-bit routine (reading past its buffer, found by
// fuzz_image), so predict reads these files here. Samples scale from [0, maxval] to [0, 255],
// rounded; grey becomes RGB by replication and RGB becomes grey by stb's luminance, as for the
// other formats.
std::vector<unsigned char> read_pnm(std::istream& in, uint64_t file_size, const std::string& path,
                                    int file_channels, int channels, int& width, int& height) {
  PnmHeaderReader header(in, path);
  width = static_cast<int>(header.number("width", int64_t{1} << 30));
  height = static_cast<int>(header.number("height", int64_t{1} << 30));
  check_pixel_limit(path, width, height);
  const int64_t maxval = header.number("maxval", 65535);
  const int64_t sample_bytes = maxval > 255 ? 2 : 1;
  const int64_t pixels = int64_t{width} * height;
  const int64_t data_bytes = pixels * file_channels * sample_bytes;
  // The samples present are counted before any memory is set aside for them: a file of a few
  // bytes may declare 384 MB.
  const int64_t held = static_cast<int64_t>(file_size) - static_cast<int64_t>(in.tellg());
  if (held < data_bytes) {
    refuse(path, std::string(file_channels == 1 ? "PGM" : "PPM") + " of " + std::to_string(width) +
                     "x" + std::to_string(height) + " pixels with maxval " +
                     std::to_string(maxval) + " needs " + std::to_string(data_bytes) +
                     " bytes of samples, the file holds " + std::to_string(held));
  }
  std::vector<unsigned char> data(static_cast<size_t>(data_bytes));
  if (!in.read(reinterpret_cast<char*>(data.data()), static_cast<std::streamsize>(data_bytes))) {
    refuse(path, "reading its samples failed");
  }
  std::vector<unsigned char> out(static_cast<size_t>(pixels * channels));
  int sample[3] = {0, 0, 0};
  const unsigned char* next = data.data();
  for (int64_t p = 0; p < pixels; ++p) {
    for (int c = 0; c < file_channels; ++c, next += sample_bytes) {
      const int64_t value = sample_bytes == 2 ? (next[0] << 8 | next[1]) : next[0];
      if (value > maxval) {
        refuse(path,
               "sample " + std::to_string(value) + " exceeds the maxval " + std::to_string(maxval));
      }
      sample[c] = static_cast<int>((value * 255 + maxval / 2) / maxval);
    }
    unsigned char* dst = &out[static_cast<size_t>(p * channels)];
    if (channels == file_channels) {
      for (int c = 0; c < channels; ++c) dst[c] = static_cast<unsigned char>(sample[c]);
    } else if (channels == 3) {
      dst[0] = dst[1] = dst[2] = static_cast<unsigned char>(sample[0]);
    } else {
      dst[0] = static_cast<unsigned char>((sample[0] * 77 + sample[1] * 150 + sample[2] * 29) >> 8);
    }
  }
  return out;
}

uint32_t little_endian(const std::string& bytes, size_t at, int size) {
  uint32_t value = 0;
  for (int i = size - 1; i >= 0; --i)
    value = value << 8 | static_cast<unsigned char>(bytes[at + i]);
  return value;
}

// stb decodes a BMP whose file ends inside its pixel rows, reading zeros for the missing bytes:
// refuse it. The header fields are read as stb reads them (Windows and OS/2 headers); headers
// stb rejects are left to stb and its reason.
void check_bmp_holds_its_pixels(const std::string& path, const std::string& head,
                                uint64_t file_size) {
  if (head.size() < 30) return;
  const uint64_t offset = little_endian(head, 10, 4);
  const uint32_t header_size = little_endian(head, 14, 4);
  int64_t width = 0, height = 0, bits = 0;
  if (header_size == 12) {
    width = little_endian(head, 18, 2), height = little_endian(head, 20, 2);
    bits = little_endian(head, 24, 2);
  } else {
    width = static_cast<int32_t>(little_endian(head, 18, 4));
    height = std::abs(int64_t{static_cast<int32_t>(little_endian(head, 22, 4))});
    bits = little_endian(head, 28, 2);
  }
  if (width < 1 || height < 1 || bits < 1) return;
  check_pixel_limit(path, width, height);
  // Rows are padded to 4 bytes; the last row's padding is not required.
  const uint64_t row_bytes = (uint64_t(width) * uint64_t(bits) + 31) / 32 * 4;
  const uint64_t needed =
      offset + row_bytes * uint64_t(height - 1) + (uint64_t(width) * uint64_t(bits) + 7) / 8;
  if (file_size < needed) {
    refuse(path, "BMP of " + std::to_string(width) + "x" + std::to_string(height) + " pixels at " +
                     std::to_string(bits) + " bits needs " + std::to_string(needed) +
                     " bytes, the file holds " + std::to_string(file_size));
  }
}

// Samples `src` (height x width x channels, interleaved) bilinearly at the centres of x's
// pixels; identity when the sizes already match.
void resample(const unsigned char* src, int width, int height, bool invert, Tensor<float>& x) {
  const int64_t channels = x.shape()[1], out_h = x.shape()[2], out_w = x.shape()[3];
  const double scale_y = double(height) / double(out_h), scale_x = double(width) / double(out_w);
  for (int64_t c = 0; c < channels; ++c)
    for (int64_t oy = 0; oy < out_h; ++oy) {
      const double sy = std::clamp((double(oy) + 0.5) * scale_y - 0.5, 0.0, double(height - 1));
      const int y0 = static_cast<int>(sy), y1 = std::min(y0 + 1, height - 1);
      const double fy = sy - y0;
      for (int64_t ox = 0; ox < out_w; ++ox) {
        const double sx = std::clamp((double(ox) + 0.5) * scale_x - 0.5, 0.0, double(width - 1));
        const int x0 = static_cast<int>(sx), x1 = std::min(x0 + 1, width - 1);
        const double fx = sx - x0;
        const auto at = [&](int yy, int xx) {
          return double(src[(int64_t{yy} * width + xx) * channels + c]);
        };
        double v = (1 - fy) * ((1 - fx) * at(y0, x0) + fx * at(y0, x1)) +
                   fy * ((1 - fx) * at(y1, x0) + fx * at(y1, x1));
        if (invert) v = 255.0 - v;
        x[(c * out_h + oy) * out_w + ox] = static_cast<float>(v / 255.0);
      }
    }
}

}  // namespace

void load_image_as(const std::string& path, const Shape& chw, bool invert, Tensor<float>& x) {
  const int channels = static_cast<int>(chw[0]);
  if (channels != 1 && channels != 3) {
    throw Error(path + ": the model expects " + std::to_string(channels) +
                "-channel images; predict handles 1 (grey) or 3 (RGB)");
  }
  std::error_code error;
  const std::filesystem::file_status status = std::filesystem::status(path, error);
  if (std::filesystem::is_directory(status)) refuse(path, "it is a directory");
  // A pipe would block the open below until a writer came; a device has no size to check.
  if (std::filesystem::exists(status) && !std::filesystem::is_regular_file(status)) {
    refuse(path, "not a regular file: a device, pipe or socket");
  }
  std::ifstream file(path, std::ios::binary | std::ios::ate);
  if (!file) refuse(path, "cannot open the file");
  const uint64_t file_size = static_cast<uint64_t>(file.tellg());
  file.seekg(0);
  std::string head(30, '\0');
  file.read(head.data(), static_cast<std::streamsize>(head.size()));
  head.resize(static_cast<size_t>(file.gcount()));
  const ImageFormat format = sniff_format(head);
  if (format == ImageFormat::kOther) {
    refuse(path, "not a PNG, JPEG, BMP, PGM or PPM file: none of their signatures starts it");
  }
  x.resize(Shape{1, channels, chw[1], chw[2]});
  int width = 0, height = 0;
  if (format == ImageFormat::kPnm) {
    file.clear();
    file.seekg(2);  // after the magic
    const std::vector<unsigned char> pixels =
        read_pnm(file, file_size, path, head[1] == '5' ? 1 : 3, channels, width, height);
    resample(pixels.data(), width, height, invert, x);
    return;
  }
  file.close();
  if (format == ImageFormat::kBmp) check_bmp_holds_its_pixels(path, head, file_size);
  // The header alone gives the size: a small file can decode to gigabytes (a 20000 x 20000 PNG
  // of zeros is 787 MB), so the size is checked before decoding. A file stb cannot read fails
  // below, with stb's reason.
  int file_channels = 0;
  if (stbi_info(path.c_str(), &width, &height, &file_channels)) {
    check_pixel_limit(path, width, height);
  }
  // stb converts to the requested channel count (grey = luminance of RGB).
  std::unique_ptr<unsigned char, void (*)(void*)> pixels(
      stbi_load(path.c_str(), &width, &height, &file_channels, channels), stbi_image_free);
  if (!pixels) {
    const char* reason = stbi_failure_reason();
    refuse(path, reason && *reason ? reason : "stb_image gave no reason");
  }
  if (width < 1 || height < 1) {
    refuse(path, "it declares " + std::to_string(width) + "x" + std::to_string(height) + " pixels");
  }
  check_pixel_limit(path, width, height);
  resample(pixels.get(), width, height, invert, x);
}

}  // namespace cnn::cli

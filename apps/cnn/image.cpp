#include "image.hpp"

#include <stb/stb_image.h>
#include <zlib.h>

#include <algorithm>
#include <cctype>
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

// Why stb_image refused a PNG, JPEG or BMP, in words (found 2026-12-06: its terse reasons went
// out as they were: "IEN", "outofdata", "bad huffman code"). stb reads zeros past a file's end, so
// a truncated file fails with whatever those zeros broke ("IEN" is an IEND chunk cut after three
// letters), and a reason may be left over from another format's test of the file ("no SOI" for
// a PNG whose zlib stream stb refused without one). So the file's structure is walked first:
// a file that ends early, a damaged signature and the variants stb does not decode are told
// from it; stb's reason is used only when it is one of that format's, in our words.

/// Up to `count` bytes of `file` from `at`.
std::string read_at(std::istream& file, uint64_t at, size_t count) {
  std::string bytes(count, '\0');
  file.clear();
  file.seekg(static_cast<std::streamoff>(at));
  file.read(bytes.data(), static_cast<std::streamsize>(count));
  bytes.resize(static_cast<size_t>(std::max<std::streamsize>(file.gcount(), 0)));
  return bytes;
}

uint32_t big_endian(const std::string& bytes, size_t at, int size) {
  uint32_t value = 0;
  for (int i = 0; i < size; ++i) value = value << 8 | static_cast<unsigned char>(bytes[at + i]);
  return value;
}

/// A PNG chunk type as it reads ("IDAT"), or its bytes in hex when they are not letters.
std::string chunk_type_text(const std::string& type) {
  if (std::all_of(type.begin(), type.end(), [](char c) { return std::isalpha(c & 0xff) != 0; }))
    return "'" + type + "'";
  std::string text = "of bytes";
  for (const char c : type) {
    char hex[8];
    std::snprintf(hex, sizeof hex, " %02x", static_cast<unsigned char>(c));
    text += hex;
  }
  return text;
}

/// A truncated or damaged PNG, from its signature and chunks up to IEND; empty when they are
/// whole.
std::string png_structure_problem(std::istream& file, uint64_t size) {
  const std::string signature = read_at(file, 0, 8);
  if (signature.size() < 8) {
    return "truncated PNG: the file ends at byte " + std::to_string(size) +
           ", inside its 8-byte signature";
  }
  if (signature != std::string("\x89PNG\r\n\x1a\n", 8)) {
    return "not a PNG: its first 4 bytes are PNG's, the next 4 are not \\r\\n\\x1a\\n (a "
           "transfer as text changes them)";
  }
  std::string previous;
  for (uint64_t at = 8;;) {
    const std::string header = read_at(file, at, 8);
    if (header.size() < 8) {
      const std::string after =
          previous.empty() ? "its signature" : "its " + chunk_type_text(previous) + " chunk";
      return "truncated PNG: the file ends at byte " + std::to_string(size) + ", after " + after +
             ", without the IEND chunk that ends a PNG";
    }
    const uint64_t length = big_endian(header, 0, 4);
    const std::string type = header.substr(4);
    // stb decodes on reading IEND's type, and would take a file cut inside its CRC.
    if (type == "IEND") return "";
    const uint64_t end = at + 12 + length;  // length, type, data, CRC
    if (length > 0x7fffffffu) {
      return "corrupt PNG: its chunk at byte " + std::to_string(at) + " declares " +
             std::to_string(length) + " bytes, more than PNG's 2^31 - 1";
    }
    if (end > size) {
      return "truncated PNG: its " + chunk_type_text(type) + " chunk runs to byte " +
             std::to_string(end) + ", the file ends at byte " + std::to_string(size);
    }
    // stb refuses a critical chunk (first letter upper case) that it does not know; it knows
    // Apple's CgBI.
    const bool critical = (static_cast<unsigned char>(type[0]) & 0x20) == 0;
    if (critical && type != "IHDR" && type != "PLTE" && type != "IDAT" && type != "CgBI") {
      return "unsupported PNG: it has a critical chunk " + chunk_type_text(type) + " (at byte " +
             std::to_string(at) + ") that stb_image does not know";
    }
    previous = type;
    at = end;
  }
}

/// The bytes a PNG's rows take before compression, filter bytes included, from its header
/// (width, height, bit depth, colour type, interlace); 0 when the header is not one stb decodes.
uint64_t png_raw_size(const std::string& ihdr) {
  const uint64_t width = big_endian(ihdr, 0, 4), height = big_endian(ihdr, 4, 4);
  const uint64_t depth = static_cast<unsigned char>(ihdr[8]);
  const int colour = static_cast<unsigned char>(ihdr[9]);
  const bool interlaced = ihdr[12] != 0;
  static const int kSamples[7] = {1, 0, 3, 1, 2, 0, 4};  // by colour type; 0: not one
  if (colour > 6 || kSamples[colour] == 0 || depth == 0 || depth > 16) return 0;
  const uint64_t bits = depth * static_cast<uint64_t>(kSamples[colour]);
  const auto rows_bytes = [&](uint64_t w, uint64_t h) {
    return w == 0 || h == 0 ? 0 : h * (1 + (w * bits + 7) / 8);
  };
  if (!interlaced) return rows_bytes(width, height);
  // Adam7: seven passes, each a sub-image with its own filter bytes.
  static const int kStart[7][2] = {{0, 0}, {4, 0}, {0, 4}, {2, 0}, {0, 2}, {1, 0}, {0, 1}};
  static const int kStep[7][2] = {{8, 8}, {8, 8}, {4, 8}, {4, 4}, {2, 4}, {2, 2}, {1, 2}};
  uint64_t total = 0;
  for (int pass = 0; pass < 7; ++pass) {
    const uint64_t x0 = kStart[pass][0], y0 = kStart[pass][1];
    const uint64_t w = width > x0 ? (width - x0 + kStep[pass][0] - 1) / kStep[pass][0] : 0;
    const uint64_t h = height > y0 ? (height - y0 + kStep[pass][1] - 1) / kStep[pass][1] : 0;
    total += rows_bytes(w, h);
  }
  return total;
}

/// A PNG whose image data inflate to more than twice what its pixels need (plus 64 KiB), or
/// empty. stb grows its output buffer to whatever the zlib stream holds (a 486 KB file of zeros
/// took 500 MB, up to 4 GB), so the stream is inflated here first, counted and not kept, and
/// stopped at that bound. A stream zlib refuses is left to stb, whose reason is then given.
/// `file` is a PNG whose chunks `png_structure_problem` found whole.
std::string png_inflated_size_problem(std::istream& file) {
  z_stream stream{};
  bool started = false, raw_deflate = false;
  uint64_t limit = 0, needed = 0, inflated = 0;
  std::string header;
  std::vector<unsigned char> in(1 << 16), out(1 << 16);
  for (uint64_t at = 8;;) {
    const std::string chunk = read_at(file, at, 8);
    const uint64_t length = big_endian(chunk, 0, 4);
    const std::string type = chunk.substr(4);
    if (type == "IEND") break;
    if (type == "CgBI") raw_deflate = true;  // Apple's PNGs: deflate without zlib's header
    if (type == "IHDR" && length == 13) {
      header = read_at(file, at + 8, 13);
      needed = png_raw_size(header);
      limit = 2 * needed + (uint64_t{1} << 16);
    }
    if (type == "IDAT" && needed > 0) {
      if (!started) {
        if (inflateInit2(&stream, raw_deflate ? -15 : 15) != Z_OK) return "";
        started = true;
      }
      file.clear();
      file.seekg(static_cast<std::streamoff>(at + 8));
      for (uint64_t left = length; left > 0;) {
        const size_t take = static_cast<size_t>(std::min<uint64_t>(left, in.size()));
        file.read(reinterpret_cast<char*>(in.data()), static_cast<std::streamsize>(take));
        left -= take;
        stream.next_in = in.data();
        stream.avail_in = static_cast<uInt>(take);
        while (stream.avail_in > 0) {
          stream.next_out = out.data();
          stream.avail_out = static_cast<uInt>(out.size());
          const int status = inflate(&stream, Z_NO_FLUSH);
          inflated += out.size() - stream.avail_out;
          if (inflated > limit) {
            inflateEnd(&stream);
            return "corrupt PNG: its image data (IDAT) inflate to more than " +
                   std::to_string(limit) + " bytes, where its " +
                   std::to_string(big_endian(header, 0, 4)) + "x" +
                   std::to_string(big_endian(header, 4, 4)) + " pixels need " +
                   std::to_string(needed);
          }
          if (status != Z_OK) {  // the stream's end, or damage stb will name
            inflateEnd(&stream);
            return "";
          }
        }
      }
    }
    at += 12 + length;
  }
  if (started) inflateEnd(&stream);
  return "";
}

/// What a JPEG marker introduces, for messages.
std::string jpeg_marker_text(int marker) {
  char hex[8];
  std::snprintf(hex, sizeof hex, "FF%02X", marker);
  const std::string code = hex;
  if (marker == 0xC4) return "Huffman table (DHT, " + code + ")";
  if (marker == 0xDB) return "quantization table (DQT, " + code + ")";
  if (marker == 0xDA) return "scan header (SOS, " + code + ")";
  if (marker == 0xDD) return "restart interval (DRI, " + code + ")";
  if (marker == 0xFE) return "comment (COM, " + code + ")";
  if (marker >= 0xE0 && marker <= 0xEF)
    return "APP" + std::to_string(marker - 0xE0) + " (" + code + ")";
  if (marker >= 0xC0 && marker <= 0xCF)
    return "frame header (SOF" + std::to_string(marker - 0xC0) + ", " + code + ")";
  return "marker " + code;
}

/// A truncated JPEG or one of the variants stb does not decode, from its markers up to its
/// first scan and an end-of-image marker after it; empty when they are whole.
std::string jpeg_structure_problem(std::istream& file, uint64_t size) {
  const std::string ends_at = "the file ends at byte " + std::to_string(size);
  for (uint64_t at = 2;;) {
    const std::string header = read_at(file, at, 5);
    if (header.size() < 2) {
      return "truncated JPEG: " + ends_at + ", in its header, before its image data";
    }
    const int marker = static_cast<unsigned char>(header[1]);
    if (static_cast<unsigned char>(header[0]) != 0xFF) {
      return "corrupt JPEG: its header has no marker at byte " + std::to_string(at);
    }
    if (marker == 0xFF) {  // a fill byte before a marker
      at += 1;
      continue;
    }
    if (marker == 0x01 || marker == 0xD8 || (marker >= 0xD0 && marker <= 0xD7)) {
      at += 2;  // markers without a length
      continue;
    }
    if (marker == 0xD9) {
      return "corrupt JPEG: its end-of-image marker (at byte " + std::to_string(at) +
             ") comes before any image data";
    }
    if (header.size() < 4) {
      return "truncated JPEG: " + ends_at + ", inside its header's " + jpeg_marker_text(marker);
    }
    const uint64_t end = at + 2 + big_endian(header, 2, 2);
    if (end > size) {
      return "truncated JPEG: its " + jpeg_marker_text(marker) + " runs to byte " +
             std::to_string(end) + ", " + ends_at;
    }
    // stb decodes baseline and progressive JPEG (SOF0-2) of 8-bit samples.
    const bool frame =
        marker >= 0xC0 && marker <= 0xCF && marker != 0xC4 && marker != 0xC8 && marker != 0xCC;
    if (frame && marker > 0xC2) {
      const char* kind = marker == 0xC3   ? "lossless"
                         : marker <= 0xC7 ? "hierarchical"
                         : marker == 0xCB ? "lossless arithmetic-coded"
                                          : "arithmetic-coded";
      return std::string("unsupported JPEG: ") + kind + " (SOF" + std::to_string(marker - 0xC0) +
             "); stb_image decodes baseline and progressive JPEGs";
    }
    if (frame && header.size() == 5 && header[4] != 8) {
      return "unsupported JPEG: " + std::to_string(static_cast<unsigned char>(header[4])) +
             "-bit samples; stb_image decodes 8-bit JPEGs only";
    }
    if (marker == 0xDA) {
      // The image data run to the end-of-image marker, which stb needs.
      std::string tail = read_at(file, end, size_t{1} << 16);
      for (uint64_t from = end; !tail.empty();) {
        if (tail.find("\xFF\xD9") != std::string::npos) return "";
        from += tail.size() - 1;  // a marker may straddle two reads
        if (tail.size() == 1) break;
        tail = read_at(file, from, size_t{1} << 16);
      }
      return "truncated JPEG: " + ends_at +
             ", inside its image data, before the end-of-image "
             "marker (FFD9)";
    }
    at = end;
  }
}

/// A truncated BMP header, or one of a size stb does not read; empty otherwise.
std::string bmp_structure_problem(const std::string& head, uint64_t size) {
  if (head.size() < 18) {
    return "truncated BMP: the file ends at byte " + std::to_string(size) + ", inside its header";
  }
  const uint32_t info_size = little_endian(head, 14, 4);
  if (info_size != 12 && info_size != 40 && info_size != 56 && info_size != 108 &&
      info_size != 124) {
    return "unsupported or corrupt BMP: its info header is " + std::to_string(info_size) +
           " bytes; stb_image reads those of 12, 40, 56, 108 and 124";
  }
  if (size < 14 + uint64_t{info_size}) {
    return "truncated BMP: its header runs to byte " + std::to_string(14 + info_size) +
           ", the file ends at byte " + std::to_string(size);
  }
  return "";
}

/// stb's reason for refusing a file of `format` in words; empty for a reason that is not one of
/// that format's (left over from stb's test of another format).
std::string stb_reason_text(ImageFormat format, const std::string& reason,
                            const std::string& head) {
  struct Phrase {
    const char* reason;
    const char* text;
  };
  // The reasons of stb_image 2.27's PNG, JPEG and BMP decoders, grouped.
  static const Phrase kPng[] = {
      {"bad ctype", "corrupt PNG: its header (IHDR) gives an unknown colour type"},
      {"bad comp method", "corrupt PNG: its header (IHDR) gives an unknown compression method"},
      {"bad filter method", "corrupt PNG: its header (IHDR) gives an unknown filter method"},
      {"bad interlace method", "corrupt PNG: its header (IHDR) gives an unknown interlace method"},
      {"first not IHDR", "corrupt PNG: its first chunk is not its header (IHDR)"},
      {"multiple IHDR", "corrupt PNG: it has two headers (IHDR)"},
      {"bad IHDR len", "corrupt PNG: its header (IHDR) is not 13 bytes"},
      {"0-pixel image", "corrupt PNG: its header (IHDR) gives 0 pixels"},
      {"invalid width", "corrupt PNG: its header (IHDR) gives a width of 0"},
      {"no IDAT", "corrupt PNG: it has no image data (IDAT chunk)"},
      {"no PLTE", "corrupt PNG: its palette (PLTE chunk) is missing"},
      {"invalid PLTE", "corrupt PNG: its palette (PLTE chunk) is malformed"},
      {"tRNS after IDAT", "corrupt PNG: its transparency (tRNS chunk) follows the image data"},
      {"tRNS before PLTE", "corrupt PNG: its transparency (tRNS chunk) precedes the palette"},
      {"bad tRNS len", "corrupt PNG: its transparency (tRNS chunk) is malformed"},
      {"tRNS with alpha", "corrupt PNG: a transparency chunk (tRNS) beside an alpha channel"},
      {"bad zlib header", "corrupt PNG: its image data (IDAT) do not start a zlib stream"},
      {"no preset dict", "corrupt PNG: its image data (IDAT) ask for a zlib preset dictionary"},
      {"bad huffman code", "corrupt PNG: its compressed image data (IDAT) are damaged"},
      {"bad codelengths", "corrupt PNG: its compressed image data (IDAT) are damaged"},
      {"bad dist", "corrupt PNG: its compressed image data (IDAT) are damaged"},
      {"zlib corrupt", "corrupt PNG: its compressed image data (IDAT) are damaged"},
      {"read past buffer", "corrupt PNG: its compressed image data (IDAT) are damaged"},
      {"bad sizes", "corrupt PNG: its compressed image data (IDAT) are damaged"},
      {"output buffer limit", "corrupt PNG: its image data (IDAT) hold more than its pixels"},
      {"outofdata", "corrupt PNG: its image data (IDAT) end before its pixels do"},
      {"not enough pixels", "corrupt PNG: its image data (IDAT) end before its pixels do"},
      {"invalid filter", "corrupt PNG: a row of its image data has an unknown filter type"},
  };
  static const Phrase kJpeg[] = {
      {"no SOF", "corrupt JPEG: it has no frame header (SOF) before its image data"},
      {"no header height",
       "unsupported JPEG: its frame header gives height 0 (set later by a DNL marker)"},
      {"bad DQT type", "corrupt JPEG: a malformed quantization table (DQT)"},
      {"bad DQT table", "corrupt JPEG: a malformed quantization table (DQT)"},
      {"bad TQ", "corrupt JPEG: its frame header names a quantization table it lacks"},
      {"bad DHT header", "corrupt JPEG: a malformed Huffman table (DHT)"},
      {"bad code lengths", "corrupt JPEG: a malformed Huffman table (DHT)"},
      {"bad SOF len", "corrupt JPEG: a malformed frame header (SOF)"},
      {"bad component count",
       "corrupt JPEG: its frame header gives a component count stb_image "
       "does not decode (1, 3 or 4)"},
      {"0 width", "corrupt JPEG: its frame header gives a width of 0"},
      {"bad H", "corrupt JPEG: its frame header gives an invalid sampling factor"},
      {"bad V", "corrupt JPEG: its frame header gives an invalid sampling factor"},
      {"bad SOS", "corrupt JPEG: a malformed scan header (SOS)"},
      {"bad SOS len", "corrupt JPEG: a malformed scan header (SOS)"},
      {"bad SOS component count", "corrupt JPEG: a malformed scan header (SOS)"},
      {"bad DRI len", "corrupt JPEG: a malformed restart interval (DRI)"},
      {"bad DNL len", "corrupt JPEG: a malformed line count (DNL)"},
      {"bad DNL height", "corrupt JPEG: its line count (DNL) contradicts its frame header"},
      {"bad APP len", "corrupt JPEG: a malformed APPn segment"},
      {"bad COM len", "corrupt JPEG: a malformed comment (COM)"},
      {"unknown marker", "corrupt JPEG: a marker that stb_image does not know"},
      {"expected marker", "corrupt JPEG: its image data do not end in a marker"},
      {"bad huffman code", "corrupt JPEG: its compressed image data are damaged"},
      {"bad DC huff", "corrupt JPEG: its compressed image data are damaged"},
      {"bad AC huff", "corrupt JPEG: its compressed image data are damaged"},
      {"can't merge dc and ac", "corrupt JPEG: a progressive scan mixes DC and AC coefficients"},
  };
  static const Phrase kBmp[] = {
      {"bad BMP", "corrupt BMP: its header's planes, compression or colour masks are invalid"},
      {"BMP RLE", "unsupported BMP: RLE compression; stb_image reads uncompressed BMPs"},
      {"BMP JPEG/PNG",
       "unsupported BMP: JPEG, PNG or another compression; stb_image reads "
       "uncompressed BMPs"},
      {"bad masks", "corrupt BMP: its colour masks are invalid"},
      {"bad offset", "corrupt BMP: its pixel data offset lies inside its header"},
      {"invalid", "corrupt BMP: its palette size is invalid"},
      {"bad bpp",
       "unsupported or corrupt BMP: its bits per pixel are none of 1, 4, 8, 16, 24, "
       "32"},
  };
  const auto find = [&](const auto& phrases) -> std::string {
    for (const Phrase& p : phrases)
      if (reason == p.reason) return p.text;
    return "";
  };
  const char* name = format == ImageFormat::kPng    ? "PNG"
                     : format == ImageFormat::kJpeg ? "JPEG"
                                                    : "BMP";
  if (reason == "outofmem") return std::string("out of memory decoding the ") + name;
  if (reason == "too large") {
    return std::string(name) +
           " too large for stb_image to decode (over 2^24 pixels a side, "
           "or over 2^31 bytes)";
  }
  if (format == ImageFormat::kPng) {
    if (reason == "1/2/4/8/16-bit only" && head.size() > 24) {
      return "corrupt PNG: its header (IHDR) gives " +
             std::to_string(static_cast<unsigned char>(head[24])) +
             " bits per sample, not 1, 2, 4, 8 or 16";
    }
    return find(kPng);
  }
  if (format == ImageFormat::kJpeg) {
    if (reason == "only 8-bit") return "unsupported JPEG: stb_image decodes 8-bit JPEGs only";
    return find(kJpeg);
  }
  return find(kBmp);
}

/// Why stb_image refused `path`, a PNG, JPEG or BMP, in one phrase.
std::string undecodable_reason(const std::string& path, ImageFormat format, uint64_t size,
                               const std::string& head, const char* stb_reason) {
  // A PNG's chunks were walked before stb ran (load_image_as), so only its reason is left.
  std::string problem;
  if (format == ImageFormat::kJpeg) {
    std::ifstream file(path, std::ios::binary);
    problem = jpeg_structure_problem(file, size);
  }
  if (format == ImageFormat::kBmp) problem = bmp_structure_problem(head, size);
  if (!problem.empty()) return problem;
  const std::string reason = stb_reason ? stb_reason : "";
  problem = stb_reason_text(format, reason, head);
  if (!problem.empty()) return problem;
  const char* name = format == ImageFormat::kPng    ? "PNG"
                     : format == ImageFormat::kJpeg ? "JPEG"
                                                    : "BMP";
  return std::string("corrupt ") + name + ": stb_image cannot decode it";
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
  // stb sets aside an IDAT chunk's declared length before reading it (2 GiB for a 488-byte file
  // that declares 1.5 GB, found by fuzz_image 2026-12-07), so a PNG's chunks are checked
  // against the file's size first: stb's buffers then stay within twice the file.
  if (format == ImageFormat::kPng) {
    const std::string problem = png_structure_problem(file, file_size);
    if (!problem.empty()) refuse(path, problem);
  }
  file.close();
  if (format == ImageFormat::kBmp) check_bmp_holds_its_pixels(path, head, file_size);
  // The header alone gives the size: a small file can decode to gigabytes (a 20000 x 20000 PNG
  // of zeros is 787 MB), so the size is checked before decoding. A file stb cannot read fails
  // below, with its reason in words.
  int file_channels = 0;
  if (stbi_info(path.c_str(), &width, &height, &file_channels)) {
    check_pixel_limit(path, width, height);
    if (format == ImageFormat::kPng) {  // its need is now within 64 megapixels' bytes
      std::ifstream png(path, std::ios::binary);
      const std::string problem = png_inflated_size_problem(png);
      if (!problem.empty()) refuse(path, problem);
    }
  }
  // stb converts to the requested channel count (grey = luminance of RGB).
  std::unique_ptr<unsigned char, void (*)(void*)> pixels(
      stbi_load(path.c_str(), &width, &height, &file_channels, channels), stbi_image_free);
  if (!pixels)
    refuse(path, undecodable_reason(path, format, file_size, head, stbi_failure_reason()));
  if (width < 1 || height < 1) {
    refuse(path, "it declares " + std::to_string(width) + "x" + std::to_string(height) + " pixels");
  }
  check_pixel_limit(path, width, height);
  resample(pixels.get(), width, height, invert, x);
}

}  // namespace cnn::cli

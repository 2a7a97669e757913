#include "image.hpp"

#include <stb/stb_image.h>

#include <algorithm>
#include <cmath>
#include <memory>

#include "cnn/error.hpp"

namespace cnn::cli {

void load_image_as(const std::string& path, const Shape& chw, bool invert, Tensor<float>& x) {
  const int channels = static_cast<int>(chw[0]);
  if (channels != 1 && channels != 3) {
    throw Error(path + ": the model expects " + std::to_string(channels) +
                "-channel images; predict handles 1 (grey) or 3 (RGB)");
  }
  int width = 0, height = 0, file_channels = 0;
  // The header alone gives the size: a small file can decode to gigabytes (a 20000 x 20000 PNG
  // of zeros is 787 MB), so the size is checked before decoding. A file stb cannot read fails
  // below, with stb's reason.
  if (stbi_info(path.c_str(), &width, &height, &file_channels) &&
      int64_t{width} * int64_t{height} > kMaxImagePixels) {
    throw Error(path + ": image of " + std::to_string(width) + "x" + std::to_string(height) +
                " pixels exceeds the limit of " + std::to_string(kMaxImagePixels >> 20) +
                " megapixels (" + std::to_string(kMaxImagePixels) + " pixels)");
  }
  // stb converts to the requested channel count (grey = luminance of RGB).
  std::unique_ptr<unsigned char, void (*)(void*)> pixels(
      stbi_load(path.c_str(), &width, &height, &file_channels, channels), stbi_image_free);
  if (!pixels) {
    throw Error(path + ": cannot decode image (" + std::string(stbi_failure_reason()) + ")");
  }
  // stb's PNM reader accepts a zero width or height (found by fuzz/fuzz_image.cpp: "P5 12
  // <junk> 10" decodes to an image of no pixels), which the resampling below cannot read.
  if (width < 1 || height < 1 || int64_t{width} * int64_t{height} > kMaxImagePixels) {
    throw Error(path + ": cannot decode image (it declares " + std::to_string(width) + "x" +
                std::to_string(height) + " pixels)");
  }
  const int64_t out_h = chw[1], out_w = chw[2];
  x.resize(Shape{1, channels, out_h, out_w});
  const unsigned char* src = pixels.get();
  // Bilinear sampling at pixel centres; identity when the sizes already match.
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
          return double(src[(yy * width + xx) * channels + c]);
        };
        double v = (1 - fy) * ((1 - fx) * at(y0, x0) + fx * at(y0, x1)) +
                   fy * ((1 - fx) * at(y1, x0) + fx * at(y1, x1));
        if (invert) v = 255.0 - v;
        x[(c * out_h + oy) * out_w + ox] = static_cast<float>(v / 255.0);
      }
    }
}

}  // namespace cnn::cli

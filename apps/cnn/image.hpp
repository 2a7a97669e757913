#pragma once
// Image files for `cnn predict`.

#include <string>

#include "cnn/tensor.hpp"

namespace cnn::cli {

/// The largest image predict decodes: 64 megapixels (2^26 pixels).
inline constexpr int64_t kMaxImagePixels = int64_t{1} << 26;

/// Decodes `path` (PNG, JPEG or BMP via stb_image; binary PGM/PPM, 8 or 16 bits, by its own
/// reader), converts it to `chw[0]` channels (1: luminance, 3: RGB), resizes it to
/// chw[1] x chw[2] (bilinear), optionally inverts it (255 - pixel), and writes x (1, C, H, W)
/// with pixels / 255. Throws cnn::Error "<path>: cannot decode image (<reason>)" for a file
/// that is missing, of another format, corrupt or shorter than its header declares, and
/// "<path>: image of WxH pixels exceeds the limit ..." for one over kMaxImagePixels.
void load_image_as(const std::string& path, const Shape& chw, bool invert, Tensor<float>& x);

}  // namespace cnn::cli

#pragma once
// The JSON that the commands print for --json.

#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>

namespace cnn::cli {

/// `j` as JSON text (indented by `indent` spaces, or on one line when -1). Names from the
/// command line and the file system are bytes, not always UTF-8 (a file named in Latin-1), and
/// JSON holds only UTF-8: such bytes become U+FFFD, where dump() threw nlohmann's type_error
/// after the work was done (found 2026-12-06 with `cnn eval $'\xfe.safetensors' --json`).
inline std::string json_text(const nlohmann::json& j, int indent = -1) {
  return j.dump(indent, ' ', false, nlohmann::json::error_handler_t::replace);
}

/// Prints json_text(j, indent) and a newline to stdout.
inline void print_json(const nlohmann::json& j, int indent = -1) {
  std::printf("%s\n", json_text(j, indent).c_str());
}

/// `text` with each byte that is not part of UTF-8 replaced by U+FFFD, for JSON.
inline std::string utf8_or_replaced(const std::string& text) {
  return nlohmann::json::parse(json_text(nlohmann::json(text))).get<std::string>();
}

/// Whether `text` is UTF-8, which JSON (a checkpoint's configuration) can hold.
inline bool is_utf8(const std::string& text) {
  return utf8_or_replaced(text) == text;
}

}  // namespace cnn::cli

#pragma once
// The JSON that the commands print for --json.

#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>

namespace cnn::cli {

/// Prints `j` (indented by `indent` spaces, or on one line when -1) and a newline to stdout.
/// Names from the command line and the file system are bytes, not always UTF-8 (a file named
/// in Latin-1), and JSON holds only UTF-8: such bytes are printed as U+FFFD, where dump()
/// threw nlohmann's type_error after the work was done (found 2026-12-06 with
/// `cnn eval $'\xfe.safetensors' --json`).
inline void print_json(const nlohmann::json& j, int indent = -1) {
  std::printf("%s\n", j.dump(indent, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
}

/// `text` with each byte that is not part of UTF-8 replaced by U+FFFD, for JSON.
inline std::string utf8_or_replaced(const std::string& text) {
  return nlohmann::json::parse(
             nlohmann::json(text).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace))
      .get<std::string>();
}

}  // namespace cnn::cli

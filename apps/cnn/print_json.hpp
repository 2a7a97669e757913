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

/// `text` for a terminal: control characters (a newline or an escape sequence in a file name,
/// a spec's name or a model file's class names) written as \n, \t and \xHH, so that they
/// can neither split a line nor drive the terminal. Other bytes are kept as they are.
inline std::string terminal_text(const std::string& text) {
  std::string shown;
  shown.reserve(text.size());
  for (const char c : text) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte >= 0x20 && byte != 0x7f) {
      shown += c;
    } else if (c == '\n') {
      shown += "\\n";
    } else if (c == '\t') {
      shown += "\\t";
    } else {
      char escaped[8];
      std::snprintf(escaped, sizeof escaped, "\\x%02x", byte);
      shown += escaped;
    }
  }
  return shown;
}

/// Whether `text` is UTF-8, which JSON (a checkpoint's configuration) can hold.
inline bool is_utf8(const std::string& text) {
  return utf8_or_replaced(text) == text;
}

}  // namespace cnn::cli

#pragma once
// JSON from files cnn did not necessarily write (specs, safetensors headers, model and
// checkpoint metadata, ONNX metadata). nlohmann's parser and destructor are iterative, but
// dump() (in error messages), the spec reader and the layers built from a spec recurse once per
// level: a file of a million '[' would exhaust the stack. Every such parse goes through here.

#include <nlohmann/json.hpp>
#include <string>

namespace cnn::detail {

/// Arrays and objects nested deeper than this are refused. A spec with Residual blocks nested
/// kMaxResidualNesting (64) deep reaches 130 levels; no file cnn writes comes near 256.
inline constexpr int kMaxJsonDepth = 256;

/// nlohmann::json::parse(text), refusing nesting deeper than kMaxJsonDepth with a
/// nlohmann::json::out_of_range ("... nested deeper than 256 levels") so that a caller's
/// handler for invalid JSON (Json::exception) reports it too. `also`, when set, sees every
/// parse event as nlohmann's parser callback does (return false to drop the value).
inline nlohmann::json parse_json(const std::string& text,
                                 const nlohmann::json::parser_callback_t& also = nullptr) {
  using Json = nlohmann::json;
  const Json::parser_callback_t bounded = [&also](int depth, Json::parse_event_t event,
                                                  Json& parsed) {
    // depth counts the containers already open: a new one at kMaxJsonDepth would be one more.
    if ((event == Json::parse_event_t::object_start || event == Json::parse_event_t::array_start) &&
        depth >= kMaxJsonDepth) {
      throw Json::out_of_range::create(
          410, "arrays and objects nested deeper than " + std::to_string(kMaxJsonDepth) + " levels",
          nullptr);
    }
    return also ? also(depth, event, parsed) : true;
  };
  return Json::parse(text, bounded);
}

}  // namespace cnn::detail

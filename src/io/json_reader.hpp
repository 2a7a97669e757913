#pragma once
// JSON from files cnn did not necessarily write (specs, safetensors headers, model and
// checkpoint metadata, ONNX metadata). nlohmann's parser and destructor are iterative, but
// dump() (in error messages), the spec reader and the layers built from a spec recurse once per
// level: a file of a million '[' would exhaust the stack. Every such parse in the library goes
// through here. (The CLI reads a checkpoint's training configuration with nlohmann directly: it
// only looks values up by key, which does not recurse; tests/test_checkpoint.cpp feeds it one
// nested 100,000 deep.)

#include <algorithm>
#include <cstddef>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <unordered_set>
#include <vector>

#include "cnn/error.hpp"

namespace cnn::detail {

/// Arrays and objects nested deeper than this are refused. A spec with Residual blocks nested
/// kMaxResidualNesting (64) deep reaches 130 levels; no file cnn writes comes near 256.
inline constexpr int kMaxJsonDepth = 256;

/// A SAX pass that builds nothing: it counts the nesting (throwing past kMaxJsonDepth), refuses
/// a key that appears twice in one object (the DOM would keep the last one silently: a spec's
/// {"kernel_size": 3, "kernel_size": 5} built a 5x5 convolution), and reports the top-level
/// object's keys. nlohmann's parser callback could do the first and the last during the DOM
/// parse, but with a callback its end_object searches the parent for discarded values: an
/// array of n objects costs n^2 (200,000 layers took 23 s).
class JsonDepthCheck final : public nlohmann::json_sax<nlohmann::json> {
 public:
  explicit JsonDepthCheck(std::function<void(const std::string&)> top_level_key)
      : top_level_key_(std::move(top_level_key)) {}
  bool null() override { return true; }
  bool boolean(bool) override { return true; }
  bool number_integer(number_integer_t) override { return true; }
  bool number_unsigned(number_unsigned_t) override { return true; }
  bool number_float(number_float_t, const string_t&) override { return true; }
  bool string(string_t&) override { return true; }
  bool binary(binary_t&) override { return true; }
  bool start_object(std::size_t) override {
    enter();
    if (objects_open_ == object_keys_.size()) object_keys_.emplace_back();
    object_keys_[objects_open_++].clear();
    return true;
  }
  bool key(string_t& key) override {
    if (depth_ == 1 && top_level_key_) top_level_key_(key);
    if (!object_keys_[objects_open_ - 1].insert(key)) {
      throw nlohmann::json::out_of_range::create(
          411, "key \"" + key + "\" appears twice in one object", nullptr);
    }
    return true;
  }
  bool end_object() override {
    --objects_open_;
    return leave();
  }
  bool start_array(std::size_t) override { return enter(); }
  bool end_array() override { return leave(); }
  /// Invalid JSON: the DOM parse that follows throws nlohmann's own parse_error for it.
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception&) override {
    return false;
  }

 private:
  /// The keys of one open object: a short list searched in order, and a hash set once the
  /// object has many (a safetensors header has one key per tensor), so the pass stays linear.
  class KeySet {
   public:
    void clear() {
      few_.clear();
      many_.clear();
    }
    /// False when `key` is already there.
    bool insert(const std::string& key) {
      if (many_.empty()) {
        if (std::find(few_.begin(), few_.end(), key) != few_.end()) return false;
        few_.push_back(key);
        if (few_.size() > kFew) many_.insert(few_.begin(), few_.end());
        return true;
      }
      return many_.insert(key).second;
    }

   private:
    static constexpr std::size_t kFew = 16;
    std::vector<std::string> few_;
    std::unordered_set<std::string> many_;
  };

  bool enter() {
    if (++depth_ > kMaxJsonDepth) {
      throw nlohmann::json::out_of_range::create(
          410, "arrays and objects nested deeper than " + std::to_string(kMaxJsonDepth) + " levels",
          nullptr);
    }
    return true;
  }
  bool leave() {
    --depth_;
    return true;
  }
  std::function<void(const std::string&)> top_level_key_;
  int depth_ = 0;
  // One KeySet per open object, kept for reuse as objects close: no allocation per object.
  std::vector<KeySet> object_keys_;
  std::size_t objects_open_ = 0;
};

/// nlohmann::json::parse(text), refusing nesting deeper than kMaxJsonDepth and a key given
/// twice in one object with a nlohmann::json::out_of_range ("... nested deeper than 256
/// levels", "key \"k\" appears twice in one object") so that a caller's handler for invalid
/// JSON (Json::exception) reports them too. `top_level_key`, when set, sees each key of the
/// top-level object in order, up to and including a duplicate. Linear in the text's length.
inline nlohmann::json parse_json(
    const std::string& text,
    const std::function<void(const std::string&)>& top_level_key = nullptr) {
  JsonDepthCheck check(top_level_key);
  nlohmann::json::sax_parse(text, &check);
  return nlohmann::json::parse(text);
}

/// What nlohmann's exception `e` says without its "[json.exception.parse_error.101] " prefix
/// (the library's internal id, which tells a user nothing): "parse error at line 3, column 5:
/// syntax error while parsing object - unexpected '}'; expected string literal". Other
/// exceptions' text as it is.
inline std::string json_error_text(const std::exception& e) {
  std::string text = e.what();
  if (text.rfind("[json.exception.", 0) == 0) {
    if (const std::size_t end = text.find("] "); end != std::string::npos) text.erase(0, end + 2);
  }
  return text;
}

/// j.dump(), refusing text that is not UTF-8 (JSON holds no other bytes: a name from a file
/// system or a caller can be Latin-1) as a cnn::Error that names `what`, instead of nlohmann's
/// type_error.
inline std::string dump_json(const nlohmann::json& j, const std::string& what) {
  try {
    return j.dump();
  } catch (const nlohmann::json::type_error& e) {
    throw Error(what + ": expected UTF-8 text (JSON holds no other bytes): " + e.what());
  }
}

}  // namespace cnn::detail

// Fuzz target: model spec JSON. A spec that parses must write canonical JSON that parses back
// to the same canonical JSON (building is left out: a valid spec may describe a model too big
// for memory, which is not a parser's bug; parse_model_spec checks shapes without allocating).
#include "cnn/cnn.hpp"
#include "fuzz_input.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    const cnn::ModelSpec spec = cnn::parse_model_spec(text, "fuzz");
    const std::string canonical = cnn::to_json(spec);
    if (cnn::to_json(cnn::parse_model_spec(canonical, "canonical")) != canonical) __builtin_trap();
  } catch (const cnn::Error&) {
  }
  return 0;
}

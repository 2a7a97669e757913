#include "cnn/checkpoint.hpp"

#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <vector>

#include "../io/json_reader.hpp"
#include "cnn/error.hpp"
#include "cnn/fileio.hpp"
#include "cnn/safetensors.hpp"

namespace cnn {

using Json = nlohmann::json;

namespace {

constexpr const char* kFormat = "cnn-checkpoint";
constexpr const char* kOptimizerPrefix = "optimizer.";
/// How many bytes of a tensor the checksum reads at a time.
constexpr uint64_t kChecksumPiece = uint64_t{1} << 20;

/// The metadata a checkpoint's checksum covers, besides its tensors.
constexpr const char* kCheckedMetadata[] = {"architecture", "class_names", "config", "state"};

/// CRC-32 of a checkpoint's contents: the checked metadata, then each tensor's name and bytes
/// (as the file holds them) in the file's order, each followed by a 0 byte. A bit flipped in
/// the state or the weights of a checkpoint resumed to another run without a word (found
/// 2026-12-06: 22 of 25 random flips), where a model file's weights are the user's to check.
class ContentCrc {
 public:
  /// One item: its bytes, then the 0 byte that ends it.
  void add(const void* bytes, size_t size) {
    update(bytes, size);
    end_item();
  }
  void add(const std::string& text) { add(text.data(), text.size()); }
  /// An item in pieces: update with each piece, then end_item (the same CRC as add).
  void update(const void* bytes, size_t size) {
    const auto* p = static_cast<const Bytef*>(bytes);
    while (size > 0) {
      const uInt chunk = static_cast<uInt>(std::min<size_t>(size, 1u << 30));
      crc_ = crc32(crc_, p, chunk);
      p += chunk;
      size -= chunk;
    }
  }
  void end_item() {
    const Bytef zero = 0;
    crc_ = crc32(crc_, &zero, 1);
  }
  std::string hex() const {
    char text[16];
    std::snprintf(text, sizeof text, "%08lx", static_cast<unsigned long>(crc_));
    return text;
  }

 private:
  uLong crc_ = crc32(0, nullptr, 0);
};

/// A double as C's hexadecimal notation: it reads back bit for bit.
std::string exact(double v) {
  char text[64];
  std::snprintf(text, sizeof text, "%a", v);
  return text;
}

Json rng_json(const RngState& s) {
  Json words = Json::array();
  for (uint64_t w : s.words) words.push_back(std::to_string(w));
  return {{"words", words}, {"has_spare", s.has_spare}, {"spare", exact(s.spare)}};
}

/// Reads the JSON of a state, throwing "<prefix><what> ..." for anything malformed.
class StateReader {
 public:
  /// prefix: "PATH: checkpoint state: " when loading, "PATH: cannot save: checkpoint state: "
  /// when save_checkpoint reads back what it would write.
  explicit StateReader(std::string prefix) : prefix_(std::move(prefix)) {}
  [[noreturn]] void fail(const std::string& what) const { throw Error(prefix_ + what); }
  const Json& at(const Json& j, const char* key) const {
    if (!j.is_object() || !j.contains(key)) fail(std::string("missing '") + key + "'");
    return j.at(key);
  }
  int64_t integer(const Json& j, const char* key, int64_t lo, int64_t hi) const {
    const Json& v = at(j, key);
    if (!v.is_number_integer() || v.get<int64_t>() < lo || v.get<int64_t>() > hi)
      fail(std::string("'") + key + "' is not an integer from " + std::to_string(lo) + " to " +
           std::to_string(hi));
    return v.get<int64_t>();
  }
  double number(const Json& j, const char* key) const {
    const Json& v = at(j, key);
    if (!v.is_string()) fail(std::string("'") + key + "' is not a hexadecimal number");
    const std::string text = v.get<std::string>();
    char* end = nullptr;
    const double d = std::strtod(text.c_str(), &end);
    if (text.empty() || *end != '\0' || !std::isfinite(d))
      fail(std::string("'") + key + "' is not a finite number: " + text);
    return d;
  }
  /// number(j, key), refused outside [lo, hi] as "<what> is <value>, expected <range>".
  double number(const Json& j, const char* key, double lo, double hi, const std::string& what,
                const std::string& range) const {
    const double d = number(j, key);
    if (d < lo || d > hi) {
      char text[64];
      std::snprintf(text, sizeof text, "%.17g", d);
      fail(what + " is " + text + ", expected " + range);
    }
    return d;
  }
  RngState rng(const Json& j) const {
    RngState s;
    const Json& words = at(j, "words");
    if (!words.is_array() || words.size() != 4) fail("a random stream without its 4 words");
    for (size_t i = 0; i < 4; ++i) {
      if (!words[i].is_string()) fail("a random stream's word is not a decimal string");
      const std::string text = words[i].get<std::string>();
      char* end = nullptr;
      errno = 0;
      s.words[i] = std::strtoull(text.c_str(), &end, 10);
      if (text.empty() || *end != '\0' || errno != 0 || text[0] == '-')
        fail("a random stream's word is not a 64-bit number: " + text);
    }
    if (!at(j, "has_spare").is_boolean()) fail("'has_spare' is not a boolean");
    s.has_spare = at(j, "has_spare").get<bool>();
    s.spare = number(j, "spare");
    return s;
  }

 private:
  std::string prefix_;
};

/// Throws cnn::Error "<what> holds a non-finite value at index I" for the first such value:
/// an optimizer tensor that save_checkpoint would write or load_checkpoint has read.
void require_finite(const std::vector<float>& values, const std::string& what) {
  for (size_t i = 0; i < values.size(); ++i) {
    if (!std::isfinite(values[i]))
      throw Error(what + " holds a non-finite value at index " + std::to_string(i));
  }
}

/// A state's JSON as save_checkpoint writes it and load_checkpoint reads it.
struct StateJson {
  TrainState state;  // all but the optimizer tensors' values
  std::vector<std::string> optimizer_names;
};

/// The state in `j` (save_checkpoint's JSON), every field checked: types, ranges, an order that
/// is a permutation, a history of one row per finished epoch, ranks' streams of one row per
/// rank. The optimizer tensors' names only: their values are the file's (load) or the caller's
/// (save). A stream's words may be all zero (a default TrainState's, saved by a loop of the
/// caller's own): train_model's resume refuses them (Rng::set_state).
StateJson read_state(const Json& j, const StateReader& r) {
  constexpr int64_t kBig = int64_t{1} << 53;
  StateJson read;
  TrainState& s = read.state;
  s.epoch = static_cast<int>(r.integer(j, "epoch", 1, 1000000));
  s.step = r.integer(j, "step", 0, kBig);
  const Json& order = r.at(j, "order");
  if (!order.is_array()) r.fail("'order' is not a list");
  for (const Json& v : order) {
    if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() >= kBig)
      r.fail("'order' holds something other than sample indices");
    s.order.push_back(v.get<int64_t>());
  }
  // An epoch's order of the whole training set: each of 0..n-1 once (BatchIterator::restore
  // holds it to the data's count when the run resumes).
  std::vector<bool> taken(s.order.size());
  for (const int64_t index : s.order) {
    if (index >= static_cast<int64_t>(taken.size()) || taken[static_cast<size_t>(index)])
      r.fail("'order' is not a permutation of 0 to " + std::to_string(s.order.size() - 1));
    taken[static_cast<size_t>(index)] = true;
  }
  s.position = r.integer(j, "position", 0, static_cast<int64_t>(s.order.size()));
  s.loss_sum = r.number(j, "loss_sum");
  s.correct = r.integer(j, "correct", 0, kBig);
  s.seen = r.integer(j, "seen", 0, kBig);
  if (s.correct > s.seen)
    r.fail("'correct' is " + std::to_string(s.correct) + ", more than 'seen' (" +
           std::to_string(s.seen) + ")");
  s.seconds = r.number(j, "seconds", 0, std::numeric_limits<double>::infinity(), "'seconds'",
                       "a number >= 0");
  const Json& history = r.at(j, "history");
  if (!history.is_array()) r.fail("'history' is not a list");
  for (const Json& row : history) {
    if (!row.is_array() || row.size() != 6 || !row[0].is_number_integer())
      r.fail("a 'history' row is not [epoch, 5 numbers]");
    // Each row is its epoch's, its metrics in their ranges (found 2026-12-07, a helper's probe:
    // an edited row's epoch 99 or accuracy 1024 went into the resumed run's CSV as they were).
    const int epoch = static_cast<int>(s.history.size()) + 1;
    if (row[0] != epoch)
      r.fail("a 'history' row's epoch is " + row[0].dump() + ", expected " + std::to_string(epoch));
    EpochMetrics m;
    m.epoch = epoch;
    const Json named = {{"train_loss", row[1]},
                        {"train_accuracy", row[2]},
                        {"test_loss", row[3]},
                        {"test_accuracy", row[4]},
                        {"seconds", row[5]}};
    const double inf = std::numeric_limits<double>::infinity();
    const auto metric = [&](const char* key, double hi) {
      return r.number(named, key, 0, hi,
                      std::string("'history' epoch ") + std::to_string(epoch) + "'s " + key,
                      hi == 1 ? "a number from 0 to 1" : "a number >= 0");
    };
    m.train_loss = metric("train_loss", inf);
    m.train_accuracy = metric("train_accuracy", 1);
    m.test_loss = metric("test_loss", inf);
    m.test_accuracy = metric("test_accuracy", 1);
    m.seconds = metric("seconds", inf);
    s.history.push_back(m);
  }
  if (static_cast<int64_t>(s.history.size()) != s.epoch - 1)
    r.fail("the history has " + std::to_string(s.history.size()) + " epochs, epoch is " +
           std::to_string(s.epoch));
  s.rng = r.rng(r.at(j, "rng"));
  s.augment_rng = r.rng(r.at(j, "augment_rng"));
  const Json& layer_rngs = r.at(j, "layer_rngs");
  if (!layer_rngs.is_array()) r.fail("'layer_rngs' is not a list");
  for (const Json& v : layer_rngs) s.layer_rngs.push_back(r.rng(v));
  const Json& names = r.at(j, "optimizer_tensors");
  if (!names.is_array()) r.fail("'optimizer_tensors' is not a list");
  for (const Json& v : names) {
    if (!v.is_string()) r.fail("an optimizer tensor's name is not a string");
    read.optimizer_names.push_back(v.get<std::string>());
  }
  s.optimizer_counter = r.integer(j, "optimizer_counter", 0, kBig);
  if (j.contains("ranks")) {
    s.ranks = static_cast<int>(r.integer(j, "ranks", 2, 1 << 20));
    const Json& rank_rngs = r.at(j, "rank_rngs");
    if (!rank_rngs.is_array() || rank_rngs.size() != static_cast<size_t>(s.ranks))
      r.fail("'rank_rngs' is not a list of one entry per rank");
    for (const Json& row : rank_rngs) {
      if (!row.is_array() || row.size() != s.layer_rngs.size() + 1)
        r.fail("a 'rank_rngs' entry is not [augment_rng, layer_rngs...]");
      std::vector<RngState>& streams = s.rank_rngs.emplace_back();
      for (const Json& v : row) streams.push_back(r.rng(v));
    }
  }
  return read;
}
}  // namespace

void save_checkpoint(const std::string& path, Sequential<float>& model, const ModelSpec& spec,
                     const std::vector<std::string>& class_names, const TrainState& state,
                     const std::string& config) {
  require_path(path, "save_checkpoint");
  // As save_model: a spec that does not describe the model wrote a checkpoint that
  // load_checkpoint then refused, found only when the run was resumed.
  detail::require_spec_describes(path, model, spec);
  detail::require_class_names(path, spec, class_names);
  std::vector<SaveTensor> tensors = detail::model_tensors(model);
  for (const auto& [name, values] : state.optimizer_tensors) {
    tensors.push_back(
        {kOptimizerPrefix + name,
         TensorView<const float>(values.data(), Shape{static_cast<int64_t>(values.size())})});
  }
  Json history = Json::array();
  for (const EpochMetrics& m : state.history) {
    history.push_back({m.epoch, exact(m.train_loss), exact(m.train_accuracy), exact(m.test_loss),
                       exact(m.test_accuracy), exact(m.seconds)});
  }
  Json layer_rngs = Json::array();
  for (const RngState& r : state.layer_rngs) layer_rngs.push_back(rng_json(r));
  Json optimizer_names = Json::array();
  for (const auto& t : state.optimizer_tensors) optimizer_names.push_back(t.first);
  Json j = {{"epoch", state.epoch},
            {"step", state.step},
            {"order", state.order},
            {"position", state.position},
            {"loss_sum", exact(state.loss_sum)},
            {"correct", state.correct},
            {"seen", state.seen},
            {"seconds", exact(state.seconds)},
            {"history", history},
            {"rng", rng_json(state.rng)},
            {"augment_rng", rng_json(state.augment_rng)},
            {"layer_rngs", layer_rngs},
            {"optimizer_tensors", optimizer_names},
            {"optimizer_counter", state.optimizer_counter}};
  if (state.ranks > 1) {
    Json rank_rngs = Json::array();
    for (const std::vector<RngState>& streams : state.rank_rngs) {
      Json row = Json::array();
      for (const RngState& r : streams) row.push_back(rng_json(r));
      rank_rngs.push_back(row);
    }
    j["ranks"] = state.ranks;
    j["rank_rngs"] = rank_rngs;
  }
  // What load_checkpoint would refuse is refused before anything is written: the state is read
  // back as load reads it (found 2026-12-07: an epoch without its history, a negative step, an
  // order that is not a permutation or optimizer tensors of another model's size were written,
  // and the run's resume then failed on them).
  if (state.ranks < 1) {
    throw Error(path + ": cannot save: checkpoint state: 'ranks' is " +
                std::to_string(state.ranks) + ", expected 1 or more");
  }
  read_state(j, StateReader(path + ": cannot save: checkpoint state: "));
  const int64_t parameters = model.parameter_count();
  for (const auto& [name, values] : state.optimizer_tensors) {
    if (static_cast<int64_t>(values.size()) != parameters) {
      throw Error(path + ": cannot save: optimizer tensor '" + name + "' holds " +
                  std::to_string(values.size()) + " values, expected " +
                  std::to_string(parameters) + " (one per parameter)");
    }
    require_finite(values, path + ": cannot save: optimizer tensor '" + name + "'");
  }
  // The writers' UTF-8 errors name the file, as save_model's do.
  std::string architecture;
  try {
    architecture = to_json(spec);
  } catch (const Error& e) {
    throw Error(path + ": cannot save: " + e.what());
  }
  std::map<std::string, std::string> metadata = {
      {"format", kFormat},
      {"format_version", kModelFormatVersion},
      {"architecture", architecture},
      {"class_names", detail::dump_json(Json(class_names), path + ": cannot save: class names")},
      {"config", config},
      {"state", j.dump()}};
  ContentCrc crc;
  for (const char* key : kCheckedMetadata) crc.add(metadata.at(key));
  for (const SaveTensor& t : tensors) {
    crc.add(t.name);
    // The bytes the file will hold, read where they are: a copy of each tensor's bytes (of
    // the largest, 157 MB for a 40M-parameter model) was made only to be checksummed.
    safetensors_data_pieces(t, path,
                            [&](const void* bytes, size_t size) { crc.update(bytes, size); });
    crc.end_item();
  }
  metadata["checksum"] = crc.hex();
  save_safetensors(path, tensors, metadata);
}

Checkpoint load_checkpoint(const std::string& path) {
  require_path(path, "load_checkpoint");
  require_regular_file(path, "a checkpoint");
  // The header alone (checked against the file's size, as load checks it), then the tensors'
  // bytes from the file when needed: the whole file in memory first held the model and the
  // optimizer state twice (their bytes, then their values). The file stays open: a checkpoint
  // replaced meanwhile (write_file_atomic renames a new file over it) is not mixed in.
  const SafeTensorsFile file = SafeTensorsFile::open(path);
  const auto& meta = file.metadata();
  if (!meta.count("format") || meta.at("format") != kFormat) {
    throw Error(path + ": not a cnn checkpoint (its metadata has no format \"" + kFormat +
                "\"; a model file continues with --resume only through its checkpoint, " +
                "MODEL.ckpt)");
  }
  if (meta.count("checksum")) {  // checkpoints written before 2026-12-06 have none
    ContentCrc crc;
    for (const char* key : kCheckedMetadata) crc.add(meta.count(key) ? meta.at(key) : "");
    // Every tensor is read a piece at a time before anything is built from the file: a
    // corrupt checkpoint is refused by its checksum, whatever else its bytes would fail.
    uint64_t largest = 0;
    for (const std::string& name : file.names()) largest = std::max(largest, file.entry(name).size);
    std::vector<char> piece(static_cast<size_t>(std::min<uint64_t>(largest, kChecksumPiece)));
    for (const std::string& name : file.names()) {
      crc.add(name);
      const uint64_t size = file.entry(name).size;
      for (uint64_t begin = 0; begin < size; begin += piece.size()) {
        const uint64_t length = std::min<uint64_t>(piece.size(), size - begin);
        file.read_data(name, piece.data(), begin, length);
        crc.update(piece.data(), static_cast<size_t>(length));
      }
      crc.end_item();
    }
    if (crc.hex() != meta.at("checksum")) {
      throw Error(path + ": the checkpoint is corrupt: its checksum is " + meta.at("checksum") +
                  ", its contents give " + crc.hex());
    }
  }
  Checkpoint c;
  c.model = detail::model_from_file(file, path, std::nullopt, kOptimizerPrefix);
  c.config = meta.count("config") ? meta.at("config") : "{}";
  if (!meta.count("state")) throw Error(path + ": checkpoint without its state");
  const StateReader r(path + ": checkpoint state: ");
  Json j;
  try {
    j = detail::parse_json(meta.at("state"));
  } catch (const Json::exception& e) {
    r.fail("not JSON: " + detail::json_error_text(e));
  }
  StateJson read = read_state(j, r);
  TrainState& s = c.state;
  s = std::move(read.state);
  const int64_t parameters = c.model.model.parameter_count();
  for (const std::string& name : read.optimizer_names) {
    const std::string key = kOptimizerPrefix + name;
    if (!file.contains(key)) throw Error(path + ": missing tensor '" + key + "'");
    const auto& entry = file.entry(key);
    if (entry.dtype != DType::kF32 || entry.shape != Shape{parameters})
      throw Error(path + ": tensor '" + key + "': expected F32 of shape (" +
                  std::to_string(parameters) + ",)");
    // Straight from the file into the state's vector (a Tensor and a copy of it first held
    // the tensor three times).
    std::vector<float> values(static_cast<size_t>(parameters));
    file.read_data(key, values.data());
    require_finite(values, path + ": tensor '" + key + "'");
    s.optimizer_tensors.emplace_back(name, std::move(values));
  }
  for (const std::string& name : file.names()) {
    if (name.starts_with(kOptimizerPrefix) &&
        std::none_of(s.optimizer_tensors.begin(), s.optimizer_tensors.end(),
                     [&](const auto& t) { return kOptimizerPrefix + t.first == name; }))
      throw Error(path + ": unexpected tensor '" + name + "'");
  }
  return c;
}

}  // namespace cnn

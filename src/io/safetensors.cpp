#include "cnn/safetensors.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>
#include <vector>

#include "cnn/error.hpp"
#include "cnn/fileio.hpp"
#include "json_reader.hpp"

namespace cnn {

namespace {

using Json = nlohmann::json;

// Headers beyond this are refused before reading them: far above any real model's header.
constexpr uint64_t kMaxHeaderBytes = 100u << 20;

size_t element_size(DType dtype) {
  switch (dtype) {
    case DType::kF32:
      return 4;
    case DType::kF64:
      return 8;
    case DType::kI32:
      return 4;
    case DType::kI64:
      return 8;
  }
  return 0;
}

bool parse_dtype(const std::string& name, DType& dtype) {
  static const std::map<std::string, DType> kNames{
      {"F32", DType::kF32}, {"F64", DType::kF64}, {"I32", DType::kI32}, {"I64", DType::kI64}};
  const auto it = kNames.find(name);
  if (it == kNames.end()) return false;
  dtype = it->second;
  return true;
}

[[noreturn]] void fail(const std::string& path, const std::string& message) {
  throw Error(path + ": " + message);
}

uint64_t read_u64_le(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

}  // namespace

SafeTensorsFile SafeTensorsFile::load(const std::string& path) {
  require_path(path, "SafeTensorsFile::load");
  return read(path, true);
}

SafeTensorsFile SafeTensorsFile::open(const std::string& path) {
  require_path(path, "SafeTensorsFile::open");
  return read(path, false);
}

SafeTensorsFile SafeTensorsFile::read(const std::string& path, bool with_data) {
  require_regular_file(path, "a safetensors file");
  auto stream = std::make_shared<std::ifstream>(path, std::ios::binary);
  std::ifstream& in = *stream;
  if (!in) fail(path, std::string("cannot open a safetensors file: ") + std::strerror(errno));
  in.seekg(0, std::ios::end);
  const auto end = in.tellg();
  if (end < 0) fail(path, "cannot determine the file size");
  const uint64_t file_size = static_cast<uint64_t>(end);
  in.seekg(0);
  if (file_size < 8) {
    fail(path, "truncated safetensors file: expected at least 8 bytes of header length, got " +
                   std::to_string(file_size));
  }
  uint8_t length_bytes[8];
  in.read(reinterpret_cast<char*>(length_bytes), 8);
  if (!in) fail(path, "could not read the header length");
  const uint64_t header_size = read_u64_le(length_bytes);
  if (header_size > file_size - 8) {
    // Past the format's limit too: the file is something else (a spec, an image, a CSV given
    // where a model file or checkpoint belongs said only this much; found 2026-12-07, a
    // helper's probe), not a model file cut short.
    fail(path, "header length " + std::to_string(header_size) + " runs past the end of the " +
                   std::to_string(file_size) + "-byte file" +
                   (header_size > kMaxHeaderBytes
                        ? ": not a safetensors file (one starts with the length of its JSON "
                          "header, at most " +
                              std::to_string(kMaxHeaderBytes) + " bytes, as 8 bytes)"
                        : ""));
  }
  if (header_size > kMaxHeaderBytes) {
    fail(path, "header length " + std::to_string(header_size) + " exceeds the limit of " +
                   std::to_string(kMaxHeaderBytes) + " bytes");
  }
  std::string header(static_cast<size_t>(header_size), '\0');
  in.read(header.data(), static_cast<std::streamsize>(header_size));
  if (!in) fail(path, "could not read the header");
  // The data is read once the header has been checked against its size: a large file that is
  // not a model (or a sparse one) is refused by its header, not by the memory it would take.
  const uint64_t data_size = file_size - 8 - header_size;

  // parse_json refuses a key given twice in any object; a tensor name given twice gets a
  // line of its own.
  std::set<std::string> top_level_keys;
  std::string duplicate;
  const auto detect_duplicates = [&](const std::string& key) {
    if (!top_level_keys.insert(key).second && duplicate.empty()) duplicate = key;
  };
  Json root;
  try {
    root = detail::parse_json(header, detect_duplicates);
  } catch (const Json::exception& e) {
    if (!duplicate.empty()) fail(path, "duplicate tensor '" + duplicate + "' in the header");
    fail(path, "header is not valid JSON: " + detail::json_error_text(e));
  }
  if (!root.is_object()) fail(path, "header: expected a JSON object");

  SafeTensorsFile file;
  file.path_ = path;
  struct Span {
    uint64_t begin, end;
    std::string name;
  };
  std::vector<Span> spans;
  for (const auto& [name, value] : root.items()) {
    if (name == "__metadata__") {
      if (!value.is_object()) fail(path, "__metadata__: expected an object of strings");
      for (const auto& [key, text] : value.items()) {
        if (!text.is_string()) fail(path, "__metadata__['" + key + "']: expected a string");
        file.metadata_[key] = text.get<std::string>();
      }
      continue;
    }
    const std::string where = "tensor '" + name + "'";
    if (!value.is_object() || !value.contains("dtype") || !value.contains("shape") ||
        !value.contains("data_offsets")) {
      fail(path, where + ": expected an object with dtype, shape and data_offsets");
    }
    Entry entry;
    if (!value["dtype"].is_string() ||
        !parse_dtype(value["dtype"].get<std::string>(), entry.dtype)) {
      fail(path, where + ": expected dtype F32, F64, I32 or I64, got " + value["dtype"].dump());
    }
    const Json& shape = value["shape"];
    if (!shape.is_array() || shape.size() > static_cast<size_t>(Shape::kMaxRank)) {
      fail(path, where + ": expected a shape array of at most " + std::to_string(Shape::kMaxRank) +
                     " dimensions, got " + shape.dump());
    }
    int64_t dims[Shape::kMaxRank] = {};
    uint64_t numel = 1;
    for (size_t i = 0; i < shape.size(); ++i) {
      if (!shape[i].is_number_unsigned()) {
        fail(path, where + ": expected non-negative integer dimensions, got " + shape.dump());
      }
      const uint64_t d = shape[i].get<uint64_t>();
      if (d > (1ull << 40) || (d != 0 && numel > (1ull << 40) / d)) {
        fail(path, where + ": shape " + shape.dump() + " is too large");
      }
      numel *= d;
      dims[i] = static_cast<int64_t>(d);
    }
    entry.shape = Shape(dims, static_cast<int>(shape.size()));
    const Json& offsets = value["data_offsets"];
    if (!offsets.is_array() || offsets.size() != 2 || !offsets[0].is_number_unsigned() ||
        !offsets[1].is_number_unsigned()) {
      fail(path, where + ": expected data_offsets [begin, end], got " + offsets.dump());
    }
    const uint64_t begin = offsets[0].get<uint64_t>(), stop = offsets[1].get<uint64_t>();
    if (begin > stop || stop > data_size) {
      fail(path, where + ": data_offsets [" + std::to_string(begin) + ", " + std::to_string(stop) +
                     "] lie outside the " + std::to_string(data_size) + " data bytes");
    }
    if (stop - begin != numel * element_size(entry.dtype)) {
      fail(path, where + ": shape " + entry.shape.str() + " of " +
                     value["dtype"].get<std::string>() + " needs " +
                     std::to_string(numel * element_size(entry.dtype)) +
                     " bytes, data_offsets give " + std::to_string(stop - begin));
    }
    spans.push_back({begin, stop, name});
    entry.size = stop - begin;
    entry.offset = 8 + header_size + begin;
    file.entries_.emplace(name, std::move(entry));
  }
  // The format requires the tensors to cover the data exactly, without overlap or holes.
  std::sort(spans.begin(), spans.end(), [](const Span& a, const Span& b) {
    return a.begin < b.begin || (a.begin == b.begin && a.end < b.end);
  });
  // names() lists tensors in the order of their data, which is the order they were saved in
  // (the JSON header itself is an unordered object).
  for (const Span& span : spans) file.names_.push_back(span.name);
  uint64_t covered = 0;
  for (const Span& span : spans) {
    if (span.begin < covered) fail(path, "tensor '" + span.name + "' overlaps another tensor");
    if (span.begin > covered) {
      fail(path, "bytes " + std::to_string(covered) + " to " + std::to_string(span.begin) +
                     " belong to no tensor");
    }
    covered = span.end;
  }
  if (covered != data_size) {
    fail(path, "bytes " + std::to_string(covered) + " to " + std::to_string(data_size) +
                   " belong to no tensor (trailing data)");
  }
  if (!with_data) {
    file.stream_ = std::move(stream);
    return file;
  }
  // The spans tile the data in file order: each tensor's bytes are read straight into it.
  for (const Span& span : spans) {
    std::vector<uint8_t>& bytes = file.entries_.at(span.name).bytes;
    bytes.resize(static_cast<size_t>(span.end - span.begin));
    in.read(reinterpret_cast<char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
    if (!in) fail(path, "could not read the whole file");
  }
  return file;
}

void SafeTensorsFile::read_data(const std::string& name, void* out) const {
  read_data(name, out, 0, entry(name).size);
}

void SafeTensorsFile::read_data(const std::string& name, void* out, uint64_t begin,
                                uint64_t size) const {
  const Entry& e = entry(name);
  if (begin > e.size || size > e.size - begin) {
    fail(path_, "tensor '" + name + "': bytes " + std::to_string(begin) + " to " +
                    std::to_string(begin + size) + " lie outside its " + std::to_string(e.size) +
                    " bytes");
  }
  if (size == 0) return;
  if (!stream_) {
    std::memcpy(out, e.bytes.data() + begin, static_cast<size_t>(size));
    return;
  }
  std::ifstream& in = *stream_;
  in.clear();
  in.seekg(static_cast<std::streamoff>(e.offset + begin));
  in.read(static_cast<char*>(out), static_cast<std::streamsize>(size));
  if (!in) fail(path_, "could not read the whole file (tensor '" + name + "')");
}

const SafeTensorsFile::Entry& SafeTensorsFile::entry(const std::string& name) const {
  const auto it = entries_.find(name);
  if (it == entries_.end()) fail(path_, "missing tensor '" + name + "'");
  return it->second;
}

template <typename T>
Tensor<T> SafeTensorsFile::tensor(const std::string& name) const {
  const Entry& e = entry(name);
  Tensor<T> out(e.shape);
  std::vector<uint8_t> read_bytes;
  if (stream_) {
    read_bytes.resize(static_cast<size_t>(e.size));
    read_data(name, read_bytes.data());
  }
  const uint8_t* p = stream_ ? read_bytes.data() : e.bytes.data();
  for (int64_t i = 0; i < out.numel(); ++i) {
    switch (e.dtype) {
      case DType::kF32: {
        float v;
        std::memcpy(&v, p + 4 * i, 4);
        out[i] = static_cast<T>(v);
        break;
      }
      case DType::kF64: {
        double v;
        std::memcpy(&v, p + 8 * i, 8);
        out[i] = static_cast<T>(v);
        break;
      }
      case DType::kI32: {
        int32_t v;
        std::memcpy(&v, p + 4 * i, 4);
        out[i] = static_cast<T>(v);
        break;
      }
      case DType::kI64: {
        int64_t v;
        std::memcpy(&v, p + 8 * i, 8);
        out[i] = static_cast<T>(v);
        break;
      }
    }
  }
  return out;
}

template Tensor<float> SafeTensorsFile::tensor<float>(const std::string&) const;
template Tensor<double> SafeTensorsFile::tensor<double>(const std::string&) const;

namespace {
/// Throws unless t's view has data for its elements: a null view (a default TensorView, whose
/// shape () counts one element) reached std::string's constructor from a null pointer, which
/// threw std::logic_error naming neither the tensor nor the file. The shape counts, not numel(),
/// which is 0 for any null view.
void require_data(const SaveTensor& t, const std::string& path) {
  if (t.data.empty() && t.data.shape().numel() > 0) {
    fail(path, "cannot save tensor '" + t.name + "': expected data for its shape " +
                   t.data.shape().str() + ", got an empty view");
  }
}
}  // namespace

void save_safetensors(const std::string& path, const std::vector<SaveTensor>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  require_path(path, "save_safetensors");
  Json header = Json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  std::set<std::string> seen;
  for (const SaveTensor& t : tensors) {
    if (t.name == "__metadata__" || !seen.insert(t.name).second) {
      fail(path, "cannot save: duplicate or reserved tensor name '" + t.name + "'");
    }
    if (t.dtype != DType::kF32 && t.dtype != DType::kI64) {
      fail(path, "cannot save tensor '" + t.name + "': only F32 and I64 are written");
    }
    require_data(t, path);
    const uint64_t bytes = static_cast<uint64_t>(t.data.numel()) * element_size(t.dtype);
    header[t.name] = {{"dtype", t.dtype == DType::kI64 ? "I64" : "F32"},
                      {"shape", std::vector<int64_t>(t.data.shape().begin(), t.data.shape().end())},
                      {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string text = detail::dump_json(header, path + ": tensor names and metadata");
  text.append((8 - text.size() % 8) % 8, ' ');  // the format allows space padding to 8 bytes

  // The values an I64 tensor cannot hold are refused before any file is made, as when the
  // file was built whole before it was written.
  for (const SaveTensor& t : tensors) {
    if (t.dtype == DType::kI64) safetensors_data_pieces(t, path, [](const void*, size_t) {});
  }
  char length[8];
  const uint64_t header_size = text.size();
  for (int i = 0; i < 8; ++i) length[i] = static_cast<char>(header_size >> (8 * i));
  // Written a tensor at a time from where it is: the whole file built first as one string held
  // the model (and a checkpoint's optimizer state) twice while it was written.
  write_file_atomic(path, [&](const FileAppender& append) {
    append(length, sizeof length);
    append(text.data(), text.size());
    for (const SaveTensor& t : tensors) safetensors_data_pieces(t, path, append);
  });
}

std::string safetensors_data(const SaveTensor& t, const std::string& path) {
  // Refused before the reserve: a view without data may claim any size.
  require_data(t, path);
  std::string bytes;
  if (t.dtype == DType::kF32 || t.dtype == DType::kI64)
    bytes.reserve(static_cast<size_t>(t.data.numel()) * element_size(t.dtype));
  safetensors_data_pieces(t, path, [&](const void* p, size_t size) {
    bytes.append(static_cast<const char*>(p), size);
  });
  return bytes;
}

void safetensors_data_pieces(const SaveTensor& t, const std::string& path,
                             const std::function<void(const void* bytes, size_t size)>& piece) {
  require_data(t, path);
  // Our CPUs are little-endian, as the format is; floats go out as they are in memory.
  if (t.dtype == DType::kF32) {
    piece(t.data.data(), static_cast<size_t>(t.data.numel()) * sizeof(float));
    return;
  }
  if (t.dtype != DType::kI64)
    fail(path, "cannot save tensor '" + t.name + "': only F32 and I64 are written");
  constexpr size_t kValuesAtATime = size_t{1} << 16;
  std::vector<int64_t> values;
  values.reserve(std::min(kValuesAtATime, static_cast<size_t>(t.data.numel())));
  for (const float v : t.data) {
    // 2^63 as a float: the first value int64_t cannot hold.
    if (!(v == std::trunc(v)) || !(std::abs(v) < 9.2233720368547758e18f)) {
      fail(path, "cannot save tensor '" + t.name + "' as I64: it holds " + std::to_string(v) +
                     ", not a whole number");
    }
    values.push_back(static_cast<int64_t>(v));
    if (values.size() == kValuesAtATime) {
      piece(values.data(), values.size() * sizeof(int64_t));
      values.clear();
    }
  }
  if (!values.empty()) piece(values.data(), values.size() * sizeof(int64_t));
}

namespace {
/// How many bytes of the destination's name a temporary file's name keeps: enough to tell
/// whose it is, short enough that a name of up to NAME_MAX bytes still has one (the full
/// name plus ".tmp.XXXXXX" did not fit: found 2026-12-06, a 235-byte --out trained its whole
/// run and then could not write it).
constexpr size_t kTemporaryNameBytes = 64;

const char* file_kind(mode_t mode) {
  return S_ISDIR(mode)                    ? "a directory"
         : S_ISCHR(mode) || S_ISBLK(mode) ? "a device"
         : S_ISFIFO(mode)                 ? "a pipe"
                                          : "a socket";
}

/// "DIR/.NAME.cnn-tmp-" for a destination DIR/NAME (NAME cut to kTemporaryNameBytes): what
/// every temporary file for it starts with, before the writer's pid.
std::string temporary_prefix(const std::string& destination) {
  const size_t slash = destination.find_last_of('/');
  const std::string dir = slash == std::string::npos ? "" : destination.substr(0, slash + 1);
  const std::string name = slash == std::string::npos ? destination : destination.substr(slash + 1);
  return dir + "." + name.substr(0, kTemporaryNameBytes) + ".cnn-tmp-";
}

/// The temporary files that write_file_atomic calls are writing, for
/// remove_temporaries_in_progress, which signal handlers call: a few slots, each claimed by one
/// call (threads may write files at once). `state` says whether `path` may be read, and
/// `generation` changes with every path, so that a handler on another thread can tell a path
/// it read from one being rewritten. Lock-free atomics are what a handler may read.
struct TemporarySlot {
  static constexpr int kFree = 0, kFilling = 1, kListed = 2;
  std::atomic<int> state{kFree};
  std::atomic<unsigned> generation{0};
  char path[4096] = {};
};
static_assert(std::atomic<int>::is_always_lock_free && std::atomic<unsigned>::is_always_lock_free);
TemporarySlot g_temporaries[4];

/// Lists `temp` for remove_temporaries_in_progress while it lives.
class ListedTemporary {
 public:
  explicit ListedTemporary(const std::string& temp) {
    if (temp.size() >= sizeof g_temporaries[0].path) return;
    for (TemporarySlot& slot : g_temporaries) {
      int expected = TemporarySlot::kFree;
      if (!slot.state.compare_exchange_strong(expected, TemporarySlot::kFilling)) continue;
      std::memcpy(slot.path, temp.c_str(), temp.size() + 1);
      slot.generation.fetch_add(1);
      slot.state.store(TemporarySlot::kListed);
      slot_ = &slot;
      return;
    }
  }
  ListedTemporary(const ListedTemporary&) = delete;
  ListedTemporary& operator=(const ListedTemporary&) = delete;
  ~ListedTemporary() { release(); }
  /// Once the temporary file is renamed or removed.
  void release() {
    if (slot_ != nullptr) slot_->state.store(TemporarySlot::kFree);
    slot_ = nullptr;
  }

 private:
  TemporarySlot* slot_ = nullptr;
};

/// Whether process `pid` exists (as far as this process can tell).
bool process_exists(long pid) {
  return pid > 0 && (::kill(static_cast<pid_t>(pid), 0) == 0 || errno != ESRCH);
}
}  // namespace

std::string write_destination(const std::string& path) {
  std::string current = path;
  for (int hops = 0; hops < 40; ++hops) {  // the kernel's own limit (MAXSYMLINKS)
    struct stat info {};
    if (::lstat(current.c_str(), &info) != 0 || !S_ISLNK(info.st_mode)) return current;
    std::string target(4096, '\0');
    const ssize_t length = ::readlink(current.c_str(), target.data(), target.size());
    if (length <= 0 || static_cast<size_t>(length) >= target.size()) {
      fail(path, std::string("cannot follow the symbolic link ") + current);
    }
    target.resize(static_cast<size_t>(length));
    const size_t slash = current.find_last_of('/');
    current = target.front() == '/' || slash == std::string::npos
                  ? target
                  : current.substr(0, slash + 1) + target;
  }
  fail(path, "cannot write: too many levels of symbolic links");
}

std::string temporary_file_template(const std::string& destination) {
  return temporary_prefix(destination) + std::to_string(::getpid()) + "-XXXXXX";
}

void remove_stale_temporaries(const std::string& path) {
  namespace fs = std::filesystem;
  const std::string prefix = temporary_prefix(write_destination(path));
  const fs::path p(prefix);
  const fs::path dir = p.parent_path().empty() ? fs::path(".") : p.parent_path();
  const std::string name_prefix = p.filename().string();
  std::error_code error;
  for (const auto& entry : fs::directory_iterator(dir, error)) {
    // Only ".NAME.cnn-tmp-PID-XXXXXX", a regular file, of a process that is gone: the old
    // "NAME.tmp.XXXXXX" sweep removed a user's m.safetensors.tmp.backup, and a temporary file
    // that another command (cnn convert) was writing at that moment (found 2026-12-06).
    const std::string name = entry.path().filename().string();
    if (!name.starts_with(name_prefix)) continue;
    const std::string rest = name.substr(name_prefix.size());  // "PID-XXXXXX"
    const size_t dash = rest.find('-');
    if (dash == std::string::npos || dash == 0 || dash > 10 || rest.size() != dash + 7 ||
        rest.find_first_not_of("0123456789") != dash) {
      continue;
    }
    struct stat info {};
    if (::lstat(entry.path().c_str(), &info) != 0 || !S_ISREG(info.st_mode)) continue;
    if (process_exists(std::stol(rest.substr(0, dash)))) continue;
    fs::remove(entry.path(), error);
  }
}

void remove_temporaries_in_progress() noexcept {
  for (TemporarySlot& slot : g_temporaries) {
    const unsigned generation = slot.generation.load();
    if (slot.state.load() != TemporarySlot::kListed) continue;
    char path[sizeof slot.path];
    std::memcpy(path, slot.path, sizeof path);
    // A path rewritten while it was copied is another call's, listed later: not removed.
    if (slot.state.load() != TemporarySlot::kListed || slot.generation.load() != generation)
      continue;
    path[sizeof path - 1] = '\0';
    ::unlink(path);
  }
}

void require_path(const std::string& path, const char* caller) {
  if (path.empty())
    throw Error(std::string(caller) + ": expected a file path, got an empty string");
}

void require_regular_file(const std::string& path, const std::string& what) {
  require_path(path, "require_regular_file");
  struct stat info {};
  if (::stat(path.c_str(), &info) != 0) {
    throw Error(path + ": cannot open " + what + ": " + std::strerror(errno));
  }
  if (S_ISREG(info.st_mode)) return;
  throw Error(path + ": expected " + what + ", got " + file_kind(info.st_mode));
}

std::string read_whole_file(const std::string& path, const std::string& what) {
  require_path(path, "read_whole_file");
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw Error(path + ": cannot open " + what + ": " + std::strerror(errno));
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  std::string bytes;
  struct stat info {};
  if (::fstat(fd, &info) == 0 && S_ISREG(info.st_mode) && info.st_size > 0)
    bytes.reserve(static_cast<size_t>(info.st_size));
  char buffer[1 << 16];
  for (;;) {
    const ssize_t got = ::read(fd, buffer, sizeof buffer);
    if (got == 0) return bytes;
    if (got < 0) {
      if (errno == EINTR) continue;
      throw Error(path + ": cannot read " + what + ": " + std::strerror(errno));
    }
    bytes.append(buffer, static_cast<size_t>(got));
  }
}

const char* special_file_kind(const std::string& path) {
  struct stat info {};
  if (::stat(path.c_str(), &info) != 0 || S_ISREG(info.st_mode)) return nullptr;
  return file_kind(info.st_mode);
}

void write_file_atomic(const std::string& path, const std::string& bytes) {
  write_file_atomic(path, [&](const FileAppender& append) { append(bytes.data(), bytes.size()); });
}

void write_file_atomic(const std::string& path,
                       const std::function<void(const FileAppender& append)>& write) {
  require_path(path, "write_file_atomic");
  // The rename would replace whatever the path names: as root, `--out /dev/null` turned the
  // system's /dev/null into a regular file. Only a regular file (or none) is replaced.
  if (const char* kind = special_file_kind(path)) {
    fail(path,
         std::string("cannot write: expected a regular file to replace (or none), got ") + kind);
  }
  const std::string destination = write_destination(path);
  std::string temp = temporary_file_template(destination);
  const int fd = mkstemp(temp.data());
  if (fd < 0) {
    const int error = errno;
    const size_t slash = destination.find_last_of('/');
    const std::string directory = slash == 0 ? "/" : destination.substr(0, slash);
    struct stat there {};
    if (error == ENOENT && slash != std::string::npos && ::stat(directory.c_str(), &there) != 0) {
      // The directory is missing (a link into one that does not exist): name it, not the
      // temporary file the user never asked for. (A directory that is there and takes no new
      // files, /proc, gives ENOENT too: found 2026-12-07, "the directory /proc does not
      // exist".)
      fail(path, "cannot write: the directory " + directory + " does not exist");
    }
    fail(path, std::string("cannot create a temporary file next to it: ") + std::strerror(error));
  }
  // A process that a second signal ends at once removes it (remove_temporaries_in_progress).
  ListedTemporary listed(temp);
  // mkstemp creates the file 0600. A file it replaces keeps its permissions (and, as root, its
  // owner): a private 0600 model became 0644 root, readable by all (found 2026-12-06). A new
  // file gets what a plain open() would give it, 0666 & ~umask.
  struct stat replaced {};
  if (::stat(destination.c_str(), &replaced) == 0 && S_ISREG(replaced.st_mode)) {
    ::fchmod(fd, replaced.st_mode & 07777);
    if (::geteuid() == 0 && ::fchown(fd, replaced.st_uid, replaced.st_gid) != 0) {
      // Not every file system lets root give a file away; the content matters more.
    }
  } else {
    const mode_t mask = ::umask(0);
    ::umask(mask);
    ::fchmod(fd, 0666 & ~mask);
  }
  bool ok = true;
  int error = 0;
  const auto write_out = [&](const char* p, size_t left) {
    while (ok && left > 0) {
      const ssize_t written = ::write(fd, p, left);
      if (written < 0 && errno == EINTR) continue;
      if (written <= 0) {
        ok = false;
        error = errno;
        break;
      }
      p += written;
      left -= static_cast<size_t>(written);
    }
  };
  // Small parts (a header, a bias) are gathered into writes of kPieceBytes; large ones go out
  // from where they are.
  constexpr size_t kPieceBytes = size_t{1} << 20;
  std::vector<char> pending;
  const FileAppender append = [&](const void* bytes, size_t size) {
    const char* p = static_cast<const char*>(bytes);
    if (!ok || size == 0) return;
    if (pending.size() + size <= kPieceBytes) {
      if (pending.capacity() == 0) pending.reserve(kPieceBytes);
      pending.insert(pending.end(), p, p + size);
      return;
    }
    write_out(pending.data(), pending.size());
    pending.clear();
    if (size < kPieceBytes) {
      pending.insert(pending.end(), p, p + size);
    } else {
      write_out(p, size);
    }
  };
  try {
    write(append);
  } catch (...) {
    ::close(fd);
    std::remove(temp.c_str());
    listed.release();
    throw;
  }
  write_out(pending.data(), pending.size());
  pending = {};
  if (ok && ::fsync(fd) != 0) ok = false, error = errno;
  if (::close(fd) != 0 && ok) ok = false, error = errno;
  if (ok && std::rename(temp.c_str(), destination.c_str()) != 0) ok = false, error = errno;
  if (!ok) std::remove(temp.c_str());
  listed.release();
  if (!ok) fail(path, std::string("cannot write: ") + std::strerror(error));
  // Make the rename itself durable; a failure here cannot un-write the file, so it is ignored.
  const size_t slash = destination.find_last_of('/');
  const std::string dir =
      slash == std::string::npos ? "." : (slash == 0 ? "/" : destination.substr(0, slash));
  const int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (dir_fd >= 0) {
    ::fsync(dir_fd);
    ::close(dir_fd);
  }
}

}  // namespace cnn

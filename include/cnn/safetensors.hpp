#pragma once
// safetensors files (https://github.com/huggingface/safetensors, "Format"): an 8-byte
// little-endian header length, a JSON header {name: {dtype, shape, data_offsets}, ...,
// "__metadata__": {string: string}}, then the raw little-endian tensor bytes. The model file
// and the golden test files use it. Loading validates everything before any use, so a file
// from a stranger cannot make us read out of bounds; saving is atomic.

#include <cstdint>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "cnn/shape.hpp"
#include "cnn/tensor.hpp"

namespace cnn {

/// Element types we read and write: "F32", "F64", "I32", "I64" (safetensors names).
enum class DType { kF32, kF64, kI32, kI64 };

/// A validated safetensors file: fully loaded (load), or its header alone (open), its tensors'
/// bytes read from the file when asked for (read_data).
class SafeTensorsFile {
 public:
  struct Entry {
    DType dtype;
    Shape shape;
    std::vector<uint8_t> bytes;  // little-endian, numel * element size; empty after open()
    uint64_t size = 0;           // numel * element size
    uint64_t offset = 0;         // where the bytes start in the file
  };

  /// Reads and validates `path`. Throws cnn::Error("<path>: <what was wrong>") for a missing,
  /// truncated or corrupt file: header length past the end, bad JSON, unknown dtype, offsets
  /// outside the data, a shape that does not match its byte size, overlapping or duplicate
  /// tensors, bytes that no tensor covers, non-string metadata.
  static SafeTensorsFile load(const std::string& path);
  /// Reads and validates the header of `path` as load() does, against the file's size, and
  /// reads none of the tensors' bytes (a file of gigabytes is described in the time and memory
  /// of its header): every check of load() but the final read, which a file truncated since
  /// would fail. Entries' `bytes` stay empty; read_data reads them from the file, kept open.
  static SafeTensorsFile open(const std::string& path);
  /// Copies the tensor's `size` bytes into `out`: from memory after load(), from the file after
  /// open(). Throws cnn::Error naming the file and the tensor when it is missing, or when the
  /// file no longer holds the bytes ("could not read the whole file"). After open() it moves
  /// the file's position (shared by copies of this object): one thread at a time.
  void read_data(const std::string& name, void* out) const;
  /// Copies `size` bytes of the tensor, from its byte `begin` on, into `out`, as read_data
  /// does the whole tensor (a checkpoint's checksum reads its tensors so, a piece at a time).
  /// Throws cnn::Error naming the file and the tensor when the bytes lie outside it.
  void read_data(const std::string& name, void* out, uint64_t begin, uint64_t size) const;

  const std::string& path() const { return path_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  /// Tensor names in the order of their data in the file (the order they were saved in).
  const std::vector<std::string>& names() const { return names_; }
  bool contains(const std::string& name) const { return entries_.count(name) != 0; }
  /// Throws cnn::Error naming the file and the missing tensor.
  const Entry& entry(const std::string& name) const;
  /// The tensor converted to T (float or double); integer dtypes convert exactly when small.
  /// Reads the bytes from the file after open().
  template <typename T>
  Tensor<T> tensor(const std::string& name) const;

 private:
  static SafeTensorsFile read(const std::string& path, bool with_data);
  std::string path_;
  std::shared_ptr<std::ifstream> stream_;  // after open(): the file, for read_data
  std::map<std::string, std::string> metadata_;
  std::vector<std::string> names_;
  std::map<std::string, Entry> entries_;
};

/// One tensor to save: float32 data with its shape, written as F32, or as I64 (a counter such
/// as num_batches_tracked: each value must be a whole number, written exactly).
struct SaveTensor {
  std::string name;
  TensorView<const float> data;
  DType dtype = DType::kF32;
};

/// Writes `tensors` (in the given order) and `metadata` to `path` atomically: a temporary file
/// in the same directory, fsync, rename. Throws cnn::Error naming the path on any failure (also
/// a tensor of another dtype than F32 or I64, a view without data for a shape with elements,
/// or an I64 value that is not a whole number), and
/// then leaves a file that was already at `path` untouched.
void save_safetensors(const std::string& path, const std::vector<SaveTensor>& tensors,
                      const std::map<std::string, std::string>& metadata);

/// The bytes save_safetensors writes for `t` (little-endian, as the format and our CPUs are):
/// its floats for F32, its values as int64 for I64. Throws cnn::Error naming `path` for another
/// dtype or an I64 value that is not a whole number int64 holds. (Checkpoints checksum them.)
std::string safetensors_data(const SaveTensor& t, const std::string& path);

/// The same bytes, passed to `piece` in order a part at a time and never built whole: F32's
/// floats where they are, I64's values converted 64 Ki at a time. Throws as safetensors_data
/// does, for I64 at the first value that is not a whole number (after the parts before it).
/// save_safetensors writes them so, and a checkpoint's checksum reads them so.
void safetensors_data_pieces(const SaveTensor& t, const std::string& path,
                             const std::function<void(const void* bytes, size_t size)>& piece);

}  // namespace cnn

#pragma once
// Whole-file writes that never leave a half-written file behind, and the check every loader
// makes before it opens a path.

#include <cstddef>
#include <functional>
#include <string>

namespace cnn {

/// Throws cnn::Error "<caller>: expected a file path, got an empty string" for an empty `path`;
/// does nothing otherwise. Every function that reads or writes a file (write_file_atomic,
/// require_regular_file, read_whole_file below, and the loaders and savers built on them) calls
/// it first: their messages start with the path ("<path>: cannot write: ..."), which for "" left
/// a line starting with a bare colon that named nothing. The helpers that only compute a name
/// or look (write_destination, special_file_kind, remove_stale_temporaries) take "" as it is.
void require_path(const std::string& path, const char* caller);

/// Writes `bytes` to `path` atomically: a temporary file in the same directory, fsync, rename,
/// fsync of the directory. Throws cnn::Error naming the path on failure, and then leaves a file
/// that was already at `path` untouched and no temporary file behind. Only a regular file is
/// replaced: a directory, device, pipe or socket at `path` is refused ("<path>: cannot write:
/// expected a regular file to replace (or none), got a device"), since the rename would replace
/// the node itself (as root, /dev/null). A symbolic link is followed: the file it points to is
/// replaced (or created) and the link stays.
void write_file_atomic(const std::string& path, const std::string& bytes);

/// Appends `size` bytes to the file that write_file_atomic is writing.
using FileAppender = std::function<void(const void* bytes, size_t size)>;

/// As write_file_atomic(path, bytes), for a file written in parts and never held whole (a
/// checkpoint of a large model): `write` is called once, with the temporary file created, and
/// appends the file's bytes, in order, through the appender it is given. The guarantees and
/// the errors are the same: a failed write is reported once `write` returns (the appender
/// writes nothing more after it), and an exception from `write` removes the temporary file,
/// leaves `path` untouched and propagates.
void write_file_atomic(const std::string& path,
                       const std::function<void(const FileAppender& append)>& write);

/// Removes the temporary files write_file_atomic leaves for `path` when its process is killed
/// while writing: regular files named ".NAME.cnn-tmp-PID-XXXXXX" (NAME: the first 64 bytes of
/// the file name) next to the file a symbolic link at `path` points to, whose process PID no
/// longer exists. For a caller that owns `path`, such as a training run that resumes. Nothing
/// else is touched: not a user's "NAME.tmp.backup", nor a temporary file a live process writes.
void remove_stale_temporaries(const std::string& path);

/// Removes the temporary files of the write_file_atomic calls under way in this process, which
/// it would leave if it ended now, and nothing else. Async-signal-safe (atomic loads and
/// unlink): for a signal handler about to _exit. A temporary file created at that very moment,
/// before write_file_atomic has listed it, or while more than four are being written at once,
/// stays for remove_stale_temporaries.
void remove_temporaries_in_progress() noexcept;

/// The mkstemp template of write_file_atomic's temporary file for `destination` (a path whose
/// symbolic links are followed already): "DIR/.NAME.cnn-tmp-PID-XXXXXX", with this process's
/// pid. Public for the fault-injection hooks that leave one behind.
std::string temporary_file_template(const std::string& destination);

/// `path` with its symbolic links followed (as open() would, up to 40), so that a rename
/// replaces the file a link points to and leaves the link; a dangling link gives the path it
/// points to. Throws cnn::Error naming `path` for a link it cannot read, or a loop.
std::string write_destination(const std::string& path);

/// What is at `path` (symbolic links followed) when it is not a regular file: "a directory",
/// "a device", "a pipe" or "a socket"; nullptr for a regular file or when nothing is there.
const char* special_file_kind(const std::string& path);

/// Refuses, with cnn::Error naming `path`, what a loader of `what` (e.g. "a safetensors file")
/// cannot read as a file: a missing path ("<path>: cannot open <what>: <reason>"), a directory
/// or a device, pipe or socket ("<path>: expected <what>, got a directory" and so on). Without
/// it a directory read as garbage (an ext4 directory's size is 2^63 - 1, so loaders that size
/// their buffers by it threw std::bad_alloc) and /dev/zero would be read until memory ran out.
/// Symbolic links are followed.
void require_regular_file(const std::string& path, const std::string& what);

/// The whole content of the file at `path`, read as `what` (e.g. "a spec file"). Throws
/// cnn::Error naming `path` when it cannot be opened or read ("<path>: cannot read <what>:
/// Input/output error"); an std::ifstream read through std::istreambuf_iterator threw
/// libstdc++'s "basic_filebuf::underflow error reading the file", which names no file.
std::string read_whole_file(const std::string& path, const std::string& what);

}  // namespace cnn

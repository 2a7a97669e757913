#pragma once
// How long an idle OpenMP thread spins before it sleeps, for programs built on cnn.
//
// cnn's kernels run as many short OpenMP regions (about 90 a resnet training step), and a thread
// that reaches a region's end, or waits for the next region, spins in libgomp before it
// sleeps: by default 300,000 times, about 7 ms on the Zen 4 machines this was measured on.
// When other processes want the cores, the spinning thread holds a core that the thread it
// waits for needs, for whole scheduler slices. Two `cnn bench --model resnet` at once on 2
// cores trained at 195 images/s together in one run (1,848 in another; 3,500 alone); with
// 3,000 spins (75 us) 2,736, and quiet runs moved by no more than the noise (1-2%; the
// medians of 8 interleaved resnet runs were 1% lower). On an Intel Xeon a spin is shorter
// (3,000 last 33 us): there two copies kept 84% of one's resnet training speed together with
// 3,000 spins and 8% with libgomp's default, and quiet runs were level. Fewer spins cost a
// quiet machine speed: 1,000 took 4% off resnet's inference, 100 a third off lenet5's training
// (docs/design-notes.md, "OpenMP threads on a busy machine"; bench/busy_machine.py).
//
// libgomp reads GOMP_SPINCOUNT once, in its constructor, before main() and before any
// constructor of the program. Only an executable's .preinit_array runs earlier, and what it
// writes to the environment is lost: libc's own initialisation, which comes after it, resets
// `environ` to the array the kernel passed. So the hook starts the program again, in the same
// process (execve of the same file, same arguments), with GOMP_SPINCOUNT=3000 added to the
// environment, before any library has initialised; that costs the loader's work once more
// (a few milliseconds). A program expands the macro once, at namespace scope, in one of its
// own source files (not in a shared library, whose .preinit_array the loader refuses):
//
//   #include "cnn/openmp_spin.hpp"
//   CNN_SHORT_OPENMP_SPIN();
//
// It does nothing where GOMP_SPINCOUNT or OMP_WAIT_POLICY is already set (the user's choice
// wins; this is also what ends the recursion), under valgrind (whose LD_PRELOAD would not
// follow the new program without --trace-children), or where the file cannot be executed
// again (then libgomp's default stays). The `cnn` tool, the tests and the example do this.
// The results do not depend on it: only how long a waiting thread keeps its core.

#include <limits.h>
#include <unistd.h>

#include <cstddef>
#include <cstring>
#include <string_view>

namespace cnn::detail {

// Spins of an idle libgomp thread before it sleeps, as an environment entry.
inline constexpr const char* kShortOpenMPSpinEntry = "GOMP_SPINCOUNT=3000";

// A .preinit_array entry: called by the dynamic loader with main's arguments and the
// environment, before any shared library's constructor. Returns only where it leaves the
// program as it is (see above); otherwise the process continues as the new program.
inline void restart_with_short_openmp_spin(int /*argc*/, char** argv, char** envp) noexcept {
  if (argv == nullptr || envp == nullptr) return;
  std::size_t count = 0;
  for (; envp[count] != nullptr; ++count) {
    const std::string_view entry = envp[count];
    if (entry.starts_with("GOMP_SPINCOUNT=") || entry.starts_with("OMP_WAIT_POLICY=")) return;
    if (entry.starts_with("LD_PRELOAD=") && entry.find("vgpreload") != entry.npos) return;
  }
  // The file's own path, not /proc/self/exe: the kernel names a process after the file it
  // executes, and `ps`, `pgrep cnn` and `top` should still say cnn, not exe.
  char path[PATH_MAX];
  const ssize_t length = ::readlink("/proc/self/exe", path, sizeof(path) - 1);
  if (length <= 0) return;
  path[length] = '\0';
  // No allocation: libc is not initialised yet. An environment too long for the stack
  // keeps libgomp's default.
  constexpr std::size_t kMaxEntries = 1 << 16;
  if (count >= kMaxEntries) return;
  char** environment = static_cast<char**>(__builtin_alloca((count + 2) * sizeof(char*)));
  std::memcpy(environment, envp, count * sizeof(char*));
  environment[count] = const_cast<char*>(kShortOpenMPSpinEntry);
  environment[count + 1] = nullptr;
  ::execve(path, argv, environment);  // returns only on failure: carry on unchanged
}

}  // namespace cnn::detail

// Expand once, at namespace scope, in one source file of an executable (see above).
#define CNN_SHORT_OPENMP_SPIN()                                                       \
  [[gnu::section(".preinit_array"), gnu::used]] static void (*cnn_short_openmp_spin)( \
      int, char**, char**) = &::cnn::detail::restart_with_short_openmp_spin

#pragma once
// Running the cnn command line (and mpirun) from the tests: spawned processes with their own
// environment, captured output, exit status and an optional time limit.

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace cnn::testing {

inline std::string read_bytes(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

/// The directories process_dir made in this process, removed when it ends if no test in it
/// failed; a failed test's files stay for inspection, and stderr says where. (ctest runs each
/// test as its own process: without this, every run of the suite left about 400 directories,
/// up to 3.7 MB each, in /tmp.)
class ProcessDirs {
 public:
  static ProcessDirs& instance() {
    static ProcessDirs dirs;
    return dirs;
  }
  void add(const std::filesystem::path& dir) { dirs_.push_back(dir); }
  ProcessDirs(const ProcessDirs&) = delete;
  ProcessDirs& operator=(const ProcessDirs&) = delete;
  // gtest's UnitTest is never destroyed, so it can still be asked here, after main.
  ~ProcessDirs() {
    const ::testing::UnitTest& unit = *::testing::UnitTest::GetInstance();
    const bool failed = unit.failed_test_count() > 0 || unit.ad_hoc_test_result().Failed();
    for (const std::filesystem::path& dir : dirs_) {
      if (failed) {
        std::fprintf(stderr, "kept for inspection: %s\n", dir.c_str());
      } else {
        std::error_code ignored;  // a file the system will not remove is no test failure
        std::filesystem::remove_all(dir, ignored);
      }
    }
  }

 private:
  ProcessDirs() = default;
  std::vector<std::filesystem::path> dirs_;
};

/// A fresh directory under the system's temporary one, named `prefix` + this process's id
/// (shared by the tests of one file; each uses its own names inside), removed at exit unless
/// a test failed (ProcessDirs).
inline std::filesystem::path process_dir(const std::string& prefix) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / (prefix + std::to_string(::getpid()));
  fs::create_directories(dir);
  ProcessDirs::instance().add(dir);
  return dir;
}

/// The words of `args`, split at spaces (the tests' arguments hold none).
inline std::vector<std::string> split_words(const std::string& args) {
  std::istringstream in(args);
  std::vector<std::string> out;
  for (std::string word; in >> word;) out.push_back(word);
  return out;
}

struct ProcessRun {
  int exit_code = -1;  // 128 + signal when killed by one
  std::string out, err;
  double seconds = 0;  // wall-clock time until it ended
  bool timed_out = false;
};

/// Starts `program` with `args`, our environment plus `env` ("NAME=value", taking precedence),
/// stdout to out_file and stderr to err_file ("/dev/null" discards).
inline pid_t spawn_process(const std::string& program, const std::vector<std::string>& args,
                           const std::vector<std::string>& env, const std::string& out_file,
                           const std::string& err_file) {
  std::vector<std::string> argv_text(args);
  argv_text.insert(argv_text.begin(), program);
  std::vector<char*> argv;
  for (std::string& a : argv_text) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::vector<std::string> env_text(env);
  for (char** e = environ; *e; ++e) env_text.emplace_back(*e);
  std::vector<char*> envp;
  for (std::string& e : env_text) envp.push_back(e.data());
  envp.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, out_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                   0644);
  posix_spawn_file_actions_addopen(&actions, 2, err_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                   0644);
  pid_t pid = -1;
  // A process group of its own, so that a time limit ends mpirun's ranks too.
  posix_spawnattr_t attributes;
  posix_spawnattr_init(&attributes);
  posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETPGROUP);
  posix_spawnattr_setpgroup(&attributes, 0);
  EXPECT_EQ(posix_spawnp(&pid, program.c_str(), &actions, &attributes, argv.data(), envp.data()), 0)
      << program;
  posix_spawnattr_destroy(&attributes);
  posix_spawn_file_actions_destroy(&actions);
  return pid;
}

/// Waits for `pid` (killing its process group after `timeout_seconds`, when positive) and
/// collects what spawn_process captured.
inline ProcessRun finish_process(pid_t pid, const std::string& out_file,
                                 const std::string& err_file, double timeout_seconds = 0) {
  const auto start = std::chrono::steady_clock::now();
  const auto elapsed = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  };
  ProcessRun run;
  int status = 0;
  for (;;) {
    const pid_t done = ::waitpid(pid, &status, timeout_seconds > 0 ? WNOHANG : 0);
    if (done == pid) break;
    if (done < 0) {
      ADD_FAILURE() << "waitpid failed";
      return run;
    }
    if (elapsed() > timeout_seconds) {
      run.timed_out = true;
      ::kill(-pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  run.seconds = elapsed();
  run.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  if (out_file != "/dev/null") run.out = read_bytes(out_file);
  if (err_file != "/dev/null") run.err = read_bytes(err_file);
  return run;
}

/// Runs `program args` to its end (or the time limit) in `dir`'s stdout.txt / stderr.txt.
inline ProcessRun run_process(const std::string& program, const std::string& args,
                              const std::vector<std::string>& env, const std::filesystem::path& dir,
                              double timeout_seconds = 0) {
  const std::string out = (dir / "stdout.txt").string(), err = (dir / "stderr.txt").string();
  return finish_process(spawn_process(program, split_words(args), env, out, err), out, err,
                        timeout_seconds);
}

/// stdout of `cnn <args>`; fails the test on a non-zero exit.
inline std::string cnn_stdout(const std::string& args) {
  const ProcessRun run = run_process(CNN_CLI, args, {}, process_dir("cnn_stdout_"));
  EXPECT_EQ(run.exit_code, 0) << "cnn " << args << ": " << run.err;
  return run.out;
}

/// The lines of `text`.
inline std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

}  // namespace cnn::testing

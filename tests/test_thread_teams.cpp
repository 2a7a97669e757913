// Issue "Right answers under any thread limit": with 2 threads requested, every parallel region
// of the kernels gives the normal run's results bit for bit when OpenMP grants fewer threads:
// from inside a user's parallel region with nesting off (the team has one thread), under
// omp_set_dynamic(1), and, in a child process, under OMP_THREAD_LIMIT=1, OMP_DYNAMIC=true and both.
// The kernels' contract (src/ops/parallel.hpp) is the requested split's result, whatever team
// runs it. The user's region and OMP_THREAD_LIMIT=1 always shrink the team (the tests check
// that they did); dynamic adjustment shrinks it only when OpenMP judges the machine busy, so
// those two tests guard the same contract without forcing the case.

#include <gtest/gtest.h>
#include <omp.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "cnn/safetensors.hpp"
#include "team_workload.hpp"

namespace cnn {
namespace {

using testing::RegionResult;

/// Expects `actual` to hold the same regions as `expected`, bit for bit; one line per region.
void expect_bit_identical(const std::vector<RegionResult>& expected,
                          const std::vector<RegionResult>& actual, const std::string& scenario) {
  ASSERT_EQ(actual.size(), expected.size()) << scenario;
  for (size_t i = 0; i < expected.size(); ++i) {
    const RegionResult& e = expected[i];
    const RegionResult& a = actual[i];
    ASSERT_EQ(a.name, e.name) << scenario;
    ASSERT_EQ(a.values.size(), e.values.size()) << scenario << ": " << e.name;
    size_t differing = 0;
    for (size_t k = 0; k < e.values.size(); ++k)
      differing += std::memcmp(&a.values[k], &e.values[k], sizeof(float)) != 0;
    std::printf("%-6s %s: %s (%zu of %zu values differ)\n", differing ? "NOT OK" : "OK",
                scenario.c_str(), e.name.c_str(), differing, e.values.size());
    EXPECT_EQ(differing, 0u) << scenario << ": " << e.name << " differs from the normal run";
  }
}

/// The normal run: 2 threads requested and granted.
const std::vector<RegionResult>& normal_run() {
  static const std::vector<RegionResult> results = [] {
    int granted = 0;
#pragma omp parallel num_threads(2)
    {
#pragma omp single
      granted = omp_get_num_threads();
    }
    // Without 2 real threads the comparisons below would compare like with like.
    EXPECT_EQ(granted, 2) << "the normal run needs 2 OpenMP threads";
    std::vector<RegionResult> r = testing::run_team_workload();
    ops::set_threads(1);
    return r;
  }();
  return results;
}

TEST(ThreadTeams, InsideAUsersParallelRegionWithNestingOff) {
  const std::vector<RegionResult>& expected = normal_run();
  const int saved_levels = omp_get_max_active_levels();
  omp_set_max_active_levels(1);
  std::vector<RegionResult> nested;
  int inner_team = 0;
  std::string error;
#pragma omp parallel num_threads(2)
  {
#pragma omp single
    {
#pragma omp parallel num_threads(2)
      {
#pragma omp single
        inner_team = omp_get_num_threads();
      }
      try {
        nested = testing::run_team_workload();
      } catch (const Error& e) {
        error = e.what();
      }
    }
  }
  omp_set_max_active_levels(saved_levels);
  ops::set_threads(1);
  ASSERT_EQ(error, "");
  // The kernels' regions got one thread where they asked for two.
  ASSERT_EQ(inner_team, 1);
  expect_bit_identical(expected, nested, "user's parallel region");
}

// ops::measure_core_round_trip_ns (cnn bench's "round trip"): a positive time when OpenMP grants
// its region two threads, 0 when it grants one (inside a user's region with nesting off), never
// a hang. Few trips: on a 1-core machine each would wait for the scheduler.
TEST(ThreadTeams, CoreRoundTripNeedsTwoThreads) {
  int granted = 0;
#pragma omp parallel num_threads(2)
  {
#pragma omp single
    granted = omp_get_num_threads();
  }
  const double nanoseconds = ops::measure_core_round_trip_ns(200);
  if (granted == 2) {
    EXPECT_GT(nanoseconds, 0.0);
  } else {
    EXPECT_EQ(nanoseconds, 0.0);
  }
  const int saved_levels = omp_get_max_active_levels();
  omp_set_max_active_levels(1);
  double nested = -1;
#pragma omp parallel num_threads(2)
  {
#pragma omp single
    nested = ops::measure_core_round_trip_ns(200);
  }
  omp_set_max_active_levels(saved_levels);
  EXPECT_EQ(nested, 0.0);
}

TEST(ThreadTeams, UnderDynamicAdjustment) {
  const std::vector<RegionResult>& expected = normal_run();
  omp_set_dynamic(1);
  std::vector<RegionResult> dynamic = testing::run_team_workload();
  omp_set_dynamic(0);
  ops::set_threads(1);
  expect_bit_identical(expected, dynamic, "omp_set_dynamic(1)");
}

/// Runs cnn_team_workload with `environment` and returns its regions and metadata.
std::vector<RegionResult> run_child(const std::string& environment,
                                    std::map<std::string, std::string>& metadata) {
  const std::filesystem::path out = std::filesystem::temp_directory_path() /
                                    ("cnn_team_workload_" + std::to_string(::getpid()) + ".st");
  const std::string command = "env " + environment + " " + CNN_TEAM_WORKLOAD + " " + out.string();
  const int status = std::system(command.c_str());
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << command;
  if (!std::filesystem::exists(out)) return {};
  const SafeTensorsFile file = SafeTensorsFile::load(out.string());
  std::filesystem::remove(out);
  metadata = file.metadata();
  std::vector<RegionResult> results;
  for (const std::string& name : file.names()) {
    const Tensor<float> t = file.tensor<float>(name);
    results.push_back({name, {t.begin(), t.end()}});
  }
  return results;
}

TEST(ThreadTeams, UnderOmpThreadLimitOne) {
  const std::vector<RegionResult>& expected = normal_run();
  std::map<std::string, std::string> metadata;
  const std::vector<RegionResult> limited = run_child("OMP_THREAD_LIMIT=1", metadata);
  EXPECT_EQ(metadata["thread_limit"], "1");
  EXPECT_EQ(metadata["granted_team"], "1");
  expect_bit_identical(expected, limited, "OMP_THREAD_LIMIT=1");
}

// Both at once, as a job scheduler's environment may hold them.
TEST(ThreadTeams, UnderOmpThreadLimitOneAndOmpDynamic) {
  const std::vector<RegionResult>& expected = normal_run();
  std::map<std::string, std::string> metadata;
  const std::vector<RegionResult> both = run_child("OMP_THREAD_LIMIT=1 OMP_DYNAMIC=true", metadata);
  EXPECT_EQ(metadata["thread_limit"], "1");
  EXPECT_EQ(metadata["granted_team"], "1");
  expect_bit_identical(expected, both, "OMP_THREAD_LIMIT=1 OMP_DYNAMIC=true");
}

TEST(ThreadTeams, UnderOmpDynamic) {
  const std::vector<RegionResult>& expected = normal_run();
  std::map<std::string, std::string> metadata;
  const std::vector<RegionResult> dynamic = run_child("OMP_DYNAMIC=true", metadata);
  expect_bit_identical(expected, dynamic, "OMP_DYNAMIC=true");
}

}  // namespace
}  // namespace cnn

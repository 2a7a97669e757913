// cnn_team_workload OUT.safetensors: runs tests/team_workload.hpp's workload (2 threads
// requested) and writes every region's outputs to OUT, with the OpenMP team it was granted in
// the metadata. test_thread_teams.cpp runs it under OMP_THREAD_LIMIT=1 and OMP_DYNAMIC=true.

#include <omp.h>

#include <cstdio>

#include "cnn/safetensors.hpp"
#include "team_workload.hpp"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: cnn_team_workload OUT.safetensors\n");
    return 2;
  }
  int granted = 0;  // what a region asking for 2 threads gets in this environment
#pragma omp parallel num_threads(2)
  {
#pragma omp single
    granted = omp_get_num_threads();
  }
  std::vector<cnn::testing::RegionResult> results;
  try {
    results = cnn::testing::run_team_workload();
  } catch (const cnn::Error& e) {
    std::fprintf(stderr, "cnn_team_workload: %s\n", e.what());
    return 1;
  }
  std::vector<cnn::Tensor<float>> tensors;
  std::vector<cnn::SaveTensor> named;
  tensors.reserve(results.size());
  for (const auto& r : results) {
    tensors.emplace_back(cnn::Shape{static_cast<int64_t>(r.values.size())});
    std::copy(r.values.begin(), r.values.end(), tensors.back().begin());
    named.push_back({r.name, tensors.back()});
  }
  cnn::save_safetensors(argv[1], named,
                        {{"granted_team", std::to_string(granted)},
                         {"thread_limit", std::to_string(omp_get_thread_limit())}});
  return 0;
}

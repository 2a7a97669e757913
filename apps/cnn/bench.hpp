#pragma once
// `cnn bench`: training and inference throughput, latency and a per-layer breakdown.

#include "args.hpp"

namespace cnn::cli {

extern const char* const kBenchHelp;
/// Runs `cnn bench` with parsed arguments; returns the exit status.
int bench_command(const Args& args);

}  // namespace cnn::cli

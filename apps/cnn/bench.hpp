#pragma once
// `cnn bench`: training and inference throughput, latency and a per-layer breakdown.

#include "args.hpp"
#include "cnn/distributed.hpp"

namespace cnn::cli {

extern const char* const kBenchHelp;
/// Runs `cnn bench` with parsed arguments; returns the exit status. With `ranks` (under
/// mpirun), measures data-parallel training across them, or MPI's all-reduce (--allreduce).
int bench_command(const Args& args, Communicator* ranks);

}  // namespace cnn::cli

// Run-time choice of the float kernels' instruction set.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <string>

#include <omp.h>

#include "cnn/error.hpp"
#include "cnn/ops.hpp"
#include "sgemm.hpp"

namespace cnn::ops {

namespace {

bool cpu_supports(Isa isa) {
  switch (isa) {
    case Isa::kPortable:
      return true;
    case Isa::kAvx2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case Isa::kAvx512:
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("fma");
  }
  return false;
}

Isa initial_isa() {
  if (const char* forced = std::getenv("CNN_ISA"); forced != nullptr && *forced != '\0') {
    for (Isa isa : {Isa::kPortable, Isa::kAvx2, Isa::kAvx512}) {
      if (std::strcmp(forced, isa_name(isa)) == 0) {
        if (!cpu_supports(isa)) {
          throw Error(std::string("CNN_ISA=") + forced + ": this CPU does not support it");
        }
        return isa;
      }
    }
    throw Error(std::string("CNN_ISA=") + forced + ": expected avx512, avx2 or portable");
  }
  return supported_isas().back();
}

std::atomic<Isa>& current() {
  static std::atomic<Isa> value{initial_isa()};
  return value;
}

}  // namespace

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::kPortable:
      return "portable";
    case Isa::kAvx2:
      return "avx2";
    case Isa::kAvx512:
      return "avx512";
  }
  return "unknown";
}

std::vector<Isa> supported_isas() {
  std::vector<Isa> isas;
  for (Isa isa : {Isa::kPortable, Isa::kAvx2, Isa::kAvx512}) {
    if (cpu_supports(isa)) isas.push_back(isa);
  }
  return isas;
}

Isa isa() {
  return current().load(std::memory_order_relaxed);
}

bool isa_has_avx2() {
  return isa() != Isa::kPortable;
}

void set_isa(Isa isa) {
  if (!cpu_supports(isa)) {
    throw Error(std::string("set_isa: this CPU does not support ") + isa_name(isa));
  }
  current().store(isa, std::memory_order_relaxed);
}

double measure_peak_gflops(int threads, double seconds) {
  const auto loop = [](int64_t iterations) {
    switch (isa()) {
      case Isa::kAvx512:
        return detail::fma_loop_avx512(iterations);
      case Isa::kAvx2:
        return detail::fma_loop_avx2(iterations);
      case Isa::kPortable:
        return detail::fma_loop_portable(iterations);
    }
    return 0.0;
  };
  // Calibrate on one thread, then run that many iterations on every thread at once.
  int64_t iterations = 1 << 16;
  double elapsed = 0;
  while (true) {
    const auto start = std::chrono::steady_clock::now();
    loop(iterations);
    elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (elapsed > 0.02 || iterations > (int64_t{1} << 40)) break;
    iterations *= 4;
  }
  // The best of three runs: the machine is shared, and a peak is what it can do, not what a
  // neighbour left over at one moment.
  iterations = static_cast<int64_t>(double(iterations) * seconds / 3 / elapsed) + 1;
  double best = 0;
  for (int run = 0; run < 3; ++run) {
    double flops = 0;
    const auto start = std::chrono::steady_clock::now();
#pragma omp parallel num_threads(threads) reduction(+ : flops)
    flops += loop(iterations);
    const double wall =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    best = std::max(best, flops / wall * 1e-9);
  }
  return best;
}

double measure_core_round_trip_ns(int64_t trips) {
  if (trips < 1) return 0;
  struct alignas(64) Line {
    std::atomic<int64_t> value{0};
  };
  Line line;  // alone on its cache line, so that only the trips move it
  constexpr int64_t kStop = -1;
  // At most this long: with two threads on one core, each trip waits for the scheduler.
  constexpr double kMaxSeconds = 0.05;
  double nanoseconds = 0;
#pragma omp parallel num_threads(2)
  {
    if (omp_get_num_threads() == 2) {
      const bool first = omp_get_thread_num() == 0;
#pragma omp barrier
      const auto start = std::chrono::steady_clock::now();
      const auto seconds = [&] {
        return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      };
      int64_t trip = 0;
      for (; trip < trips; ++trip) {
        if (first) {
          if (trip % 64 == 63 && seconds() > kMaxSeconds) {
            line.value.store(kStop, std::memory_order_release);
            break;
          }
          line.value.store(2 * trip + 1, std::memory_order_release);
          while (line.value.load(std::memory_order_acquire) != 2 * trip + 2) {
          }
        } else {
          int64_t seen;
          while ((seen = line.value.load(std::memory_order_acquire)) != 2 * trip + 1 &&
                 seen != kStop) {
          }
          if (seen == kStop) break;
          line.value.store(2 * trip + 2, std::memory_order_release);
        }
      }
      if (first) nanoseconds = seconds() * 1e9 / double(std::max<int64_t>(trip, 1));
    }
  }
  return nanoseconds;
}

}  // namespace cnn::ops

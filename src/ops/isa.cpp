// Run-time choice of the float kernels' instruction set.

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <string>

#include "cnn/error.hpp"
#include "cnn/ops.hpp"

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

void set_isa(Isa isa) {
  if (!cpu_supports(isa)) {
    throw Error(std::string("set_isa: this CPU does not support ") + isa_name(isa));
  }
  current().store(isa, std::memory_order_relaxed);
}

}  // namespace cnn::ops

#include <atomic>
#include <cstdlib>
#include <cstring>

#include <string>

#include "cnn/error.hpp"
#include "cnn/ops.hpp"

namespace cnn::ops {

namespace {
// Strict, as CNN_ISA and CNN_CONV: "true" or "yes" silently meant the fast kernels.
bool reference_from_environment() {
  const char* value = std::getenv("CNN_REFERENCE");
  if (value == nullptr || *value == '\0' || std::strcmp(value, "0") == 0) return false;
  if (std::strcmp(value, "1") == 0) return true;
  throw Error(std::string("CNN_REFERENCE=") + value + ": expected 0 or 1");
}
std::atomic<bool>& reference_flag() {
  static std::atomic<bool> flag{reference_from_environment()};
  return flag;
}
}  // namespace

namespace {
std::atomic<int>& thread_count() {
  static std::atomic<int> count{1};
  return count;
}
}  // namespace

void set_threads(int threads) {
  // libgomp sizes a team's structures by it: INT_MAX asked for 481 GB and ended the process.
  if (threads < 1 || threads > kMaxThreads) {
    throw Error("set_threads: expected 1 to " + std::to_string(kMaxThreads) + " threads, got " +
                std::to_string(threads));
  }
  thread_count().store(threads, std::memory_order_relaxed);
}
int threads() {
  return thread_count().load(std::memory_order_relaxed);
}

namespace {
ConvAlgorithm conv_algorithm_from_environment() {
  const char* value = std::getenv("CNN_CONV");
  if (value == nullptr || *value == '\0') return ConvAlgorithm::kAuto;
  for (ConvAlgorithm algorithm :
       {ConvAlgorithm::kAuto, ConvAlgorithm::kGemm, ConvAlgorithm::kDirect,
        ConvAlgorithm::kWinograd, ConvAlgorithm::kImplicit}) {
    if (std::strcmp(value, conv_algorithm_name(algorithm)) == 0) return algorithm;
  }
  throw Error(std::string("CNN_CONV=") + value +
              ": expected auto, gemm, direct, winograd or implicit");
}
std::atomic<ConvAlgorithm>& conv_algorithm_flag() {
  static std::atomic<ConvAlgorithm> flag{conv_algorithm_from_environment()};
  return flag;
}
}  // namespace

const char* conv_algorithm_name(ConvAlgorithm algorithm) {
  switch (algorithm) {
    case ConvAlgorithm::kAuto:
      return "auto";
    case ConvAlgorithm::kGemm:
      return "gemm";
    case ConvAlgorithm::kDirect:
      return "direct";
    case ConvAlgorithm::kWinograd:
      return "winograd";
    case ConvAlgorithm::kImplicit:
      return "implicit";
  }
  return "?";
}
ConvAlgorithm conv_algorithm() {
  return conv_algorithm_flag().load(std::memory_order_relaxed);
}
void set_conv_algorithm(ConvAlgorithm algorithm) {
  conv_algorithm_flag().store(algorithm, std::memory_order_relaxed);
}

bool reference_mode() {
  return reference_flag().load(std::memory_order_relaxed);
}
void set_reference_mode(bool on) {
  reference_flag().store(on, std::memory_order_relaxed);
}

namespace {
/// Outputs along one axis of a window sliding with the given padding and stride.
int64_t output_extent(int64_t in, int64_t pad, int64_t kernel, int64_t stride) {
  return (in + 2 * pad - kernel) / stride + 1;
}
}  // namespace

ConvShape make_conv_shape(int64_t batch, int64_t in_channels, int64_t in_h, int64_t in_w,
                          int64_t out_channels, int64_t kernel_h, int64_t kernel_w,
                          int64_t stride_h, int64_t stride_w, int64_t pad_h, int64_t pad_w) {
  return ConvShape{batch,
                   in_channels,
                   in_h,
                   in_w,
                   out_channels,
                   kernel_h,
                   kernel_w,
                   stride_h,
                   stride_w,
                   pad_h,
                   pad_w,
                   output_extent(in_h, pad_h, kernel_h, stride_h),
                   output_extent(in_w, pad_w, kernel_w, stride_w)};
}

PoolShape make_pool_shape(int64_t batch, int64_t channels, int64_t in_h, int64_t in_w,
                          int64_t kernel_h, int64_t kernel_w, int64_t stride_h, int64_t stride_w,
                          int64_t pad_h, int64_t pad_w) {
  return PoolShape{batch,
                   channels,
                   in_h,
                   in_w,
                   kernel_h,
                   kernel_w,
                   stride_h,
                   stride_w,
                   pad_h,
                   pad_w,
                   output_extent(in_h, pad_h, kernel_h, stride_h),
                   output_extent(in_w, pad_w, kernel_w, stride_w)};
}

}  // namespace cnn::ops

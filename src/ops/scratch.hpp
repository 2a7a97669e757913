#pragma once
// Per-thread scratch memory for kernels: grows to the largest size asked for and is then
// reused, so the steady-state training step does not allocate.

#include <cstdint>
#include <vector>

namespace cnn::detail {

/// Per-thread scratch slots: 0 and 1 the convolutions' column/staging buffers, 2 and 3 the
/// GEMM packing buffers, 4 to 6 the direct backward's and Winograd's staging and tiles (4 also
/// the GEMM convolution backward's gathered dy), 7 im2col's and col2im's padded plane (col2im
/// also runs inside the direct backward, which holds 4 to 6), and the direct backward's dy image
/// when it is made image by image (ops::conv2d_weight_backward_by_image, which has no col2im);
/// 7 also average pooling's shares (ops::avgpool2d_backward, which runs inside no other op);
/// 0 also max pooling's interleaved planes (ops::maxpool2d_forward and relu_maxpool2d_forward
/// but for 2x2 / stride 2, which run inside no other op).
inline constexpr int kScratchSlots = 8;

/// Returns at least n elements of per-thread scratch in slot `slot` (0 <= slot < 8). The
/// contents are unspecified; the pointer stays valid until the next call with the same slot.
template <typename T>
T* scratch(int slot, int64_t n) {
  thread_local std::vector<T> buffers[kScratchSlots];
  std::vector<T>& buffer = buffers[slot];
  if (static_cast<int64_t>(buffer.size()) < n) buffer.resize(static_cast<size_t>(n));
  return buffer.data();
}

/// Scratch shared by the threads of one op call (e.g. per-thread partial sums that the calling
/// thread reduces): owned by the calling thread, resized to at least n elements; slot 0 or 1.
template <typename T>
std::vector<T>& shared_scratch(int slot, int64_t n) {
  thread_local std::vector<T> buffers[2];
  std::vector<T>& buffer = buffers[slot];
  if (static_cast<int64_t>(buffer.size()) < n) buffer.resize(static_cast<size_t>(n));
  return buffer;
}

}  // namespace cnn::detail

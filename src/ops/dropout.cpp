// Dropout's default path: the reference's masks and products, bit for bit, in one pass without
// branches. The reference's `rng.uniform() < p ? 0 : scale` compiled to a branch on a random
// bit, mispredicted about half the time at p = 0.5 (5.8-6.4 ns an element in cache against the
// 1.05 ns of the Rng stream alone, on the Intel Xeon; docs/design-notes.md, "Dropout's masks").
// The masks are drawn serially from the one stream, as the reference draws them, so they do not
// depend on the thread count; that stream (xoshiro256**, one step a element) is now the cost.

#include <bit>
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "cnn/ops.hpp"
#include "cnn/ops_ref.hpp"
#include "cnn/rng.hpp"

namespace cnn::ops {

template <typename T>
void dropout_forward(T* y, T* mask, const T* x, int64_t n, double p, Rng& rng) {
  if (reference_mode() || !(p >= 0 && p < 1)) return ref::dropout_forward(y, mask, x, n, p, rng);
  // uniform() is (r >> 11) 2^-53, exact, so uniform() < p <=> (r >> 11) < p 2^53 (exact too: a
  // power of two scales p) <=> (r >> 11) < ceil(p 2^53) (an integer below any real t is below
  // ceil(t)) <=> r < ceil(p 2^53) 2^11. p < 1 keeps ceil(p 2^53) <= 2^53 - 1, so the shift
  // cannot overflow; p = 0 gives 0, which no r is below.
  const uint64_t threshold = static_cast<uint64_t>(std::ceil(p * 0x1p53)) << 11;
  const T scale = T(1) / static_cast<T>(1 - p);
  // The mask as the bits of scale or of +0, chosen by an integer mask: no branch on the random
  // bit, whatever the compiler makes of a select.
  using Bits = std::conditional_t<sizeof(T) == 4, uint32_t, uint64_t>;
  const Bits scale_bits = std::bit_cast<Bits>(scale);
  Rng local = rng;  // a local copy keeps the state in registers across the stores
  for (int64_t k = 0; k < n; ++k) {
    const Bits keep = Bits(0) - static_cast<Bits>(local.next_u64() >= threshold);
    const T m = std::bit_cast<T>(static_cast<Bits>(scale_bits & keep));
    mask[k] = m;
    y[k] = x[k] * m;
  }
  rng = local;
}

/// The reference's loop (the compiler vectorises it, testing at run time whether y overlaps).
template <typename T>
void dropout_apply(T* y, const T* x, const T* mask, int64_t n) {
  ref::dropout_apply(y, x, mask, n);
}

#define CNN_INSTANTIATE_DROPOUT(T)                                           \
  template void dropout_forward<T>(T*, T*, const T*, int64_t, double, Rng&); \
  template void dropout_apply<T>(T*, const T*, const T*, int64_t);
CNN_INSTANTIATE_DROPOUT(float)
CNN_INSTANTIATE_DROPOUT(double)
#undef CNN_INSTANTIATE_DROPOUT

}  // namespace cnn::ops

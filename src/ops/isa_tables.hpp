// The choice of a per-ISA kernel table: one switch for every family of kernels compiled once
// per instruction set (direct convolution, Winograd lanes, float activations, average pooling).
#pragma once

#include "cnn/ops.hpp"

namespace cnn::detail {

/// The table of the instruction set the kernels run on (ops::isa()). Takes the getters, not
/// their tables: a getter lives in a translation unit compiled for its instruction set, so only
/// the chosen one may be called.
template <typename Table>
const Table& table_for_isa(const Table& (*avx512)(), const Table& (*avx2)(),
                           const Table& (*portable)()) {
  switch (ops::isa()) {
    case ops::Isa::kAvx512:
      return avx512();
    case ops::Isa::kAvx2:
      return avx2();
    case ops::Isa::kPortable:
      break;
  }
  return portable();
}

}  // namespace cnn::detail

#pragma once
// Shape: the dimensions of a tensor, outermost first (NCHW for images).

#include <array>
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>

namespace cnn {

/// The largest element count a Shape may have (2^48): far above any tensor that fits in memory,
/// and low enough that an element count times an element size, or the sum of a few counts,
/// cannot overflow int64_t.
inline constexpr int64_t kMaxElements = int64_t{1} << 48;

/// a * b for sizes a, b >= 0, or nullopt when the product exceeds kMaxElements (a product
/// that would overflow included). For sizes read from files and specs, whose arithmetic must
/// end in a cnn::Error, never in undefined behaviour.
std::optional<int64_t> size_product(int64_t a, int64_t b);
/// a + b for sizes a, b >= 0, or nullopt when the sum exceeds kMaxElements.
std::optional<int64_t> size_sum(int64_t a, int64_t b);

/// A fixed-capacity list of up to kMaxRank non-negative dimensions whose product is at most
/// kMaxElements (so numel() never overflows). Stored inline so that making views in the
/// training step never allocates.
class Shape {
 public:
  static constexpr int kMaxRank = 6;

  Shape() = default;
  /// Throws cnn::Error for a negative dimension, more than kMaxRank dimensions, or more than
  /// kMaxElements elements.
  Shape(std::initializer_list<int64_t> dims);
  /// Same checks as the initializer-list constructor; `dims` points at `rank` values (and
  /// may be null only for rank 0: cnn::Error otherwise).
  Shape(const int64_t* dims, int rank);

  int rank() const { return rank_; }
  /// Dimension i, -rank() <= i < rank(); negative i counts from the end (-1 is the last).
  /// Throws cnn::Error for another i: it read past the dimensions (a caller's wrong rank). The
  /// check is one compare: the kernels take sizes in their own structs (ops::ConvShape, ...),
  /// so Shape is indexed only in setup code, a few times a layer per forward.
  int64_t operator[](int i) const {
    if (i < -rank_ || i >= rank_) [[unlikely]]
      index_out_of_range(i);
    return dims_[static_cast<size_t>(i < 0 ? i + rank_ : i)];
  }
  /// Product of all dimensions (1 for rank 0).
  int64_t numel() const;
  /// "(2, 3, 28, 28)".
  std::string str() const;
  /// True when every dimension is positive and the rank is at least 1.
  bool all_positive() const;

  const int64_t* begin() const { return dims_.data(); }
  const int64_t* end() const { return dims_.data() + rank_; }

  /// A copy with dimension i replaced; the same checks as the constructors.
  Shape with(int i, int64_t value) const;

  friend bool operator==(const Shape& a, const Shape& b);
  friend bool operator!=(const Shape& a, const Shape& b) { return !(a == b); }

 private:
  [[noreturn, gnu::cold]] void index_out_of_range(int i) const;
  std::array<int64_t, kMaxRank> dims_{};
  int rank_ = 0;
};

}  // namespace cnn

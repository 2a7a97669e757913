#include "cnn/shape.hpp"

#include "cnn/error.hpp"

namespace cnn {

std::optional<int64_t> size_product(int64_t a, int64_t b) {
  int64_t product = 0;
  if (a < 0 || b < 0 || __builtin_mul_overflow(a, b, &product) || product > kMaxElements)
    return std::nullopt;
  return product;
}

std::optional<int64_t> size_sum(int64_t a, int64_t b) {
  if (a < 0 || b < 0 || a > kMaxElements || b > kMaxElements - a) return std::nullopt;
  return a + b;
}

namespace {
/// Throws unless the product of dims[0, rank) is at most kMaxElements.
void check_element_count(const int64_t* dims, int rank) {
  int64_t count = 1;
  for (int i = 0; i < rank; ++i) {
    const std::optional<int64_t> next = size_product(count, dims[i]);
    if (!next) {
      std::string text;
      for (int k = 0; k < rank; ++k) text += (k ? ", " : "") + std::to_string(dims[k]);
      throw Error("Shape: expected at most 2^48 elements, got (" + text +
                  "), whose product is larger");
    }
    count = *next;
  }
}
}  // namespace

Shape::Shape(std::initializer_list<int64_t> dims)
    : Shape(dims.begin(), static_cast<int>(dims.size())) {}

Shape::Shape(const int64_t* dims, int rank) {
  if (rank < 0 || rank > kMaxRank) {
    throw Error("Shape: expected at most " + std::to_string(kMaxRank) + " dimensions, got " +
                std::to_string(rank));
  }
  if (dims == nullptr && rank > 0) {
    throw Error("Shape: expected " + std::to_string(rank) + " dimensions, got a null pointer");
  }
  for (int i = 0; i < rank; ++i) {
    if (dims[i] < 0) {
      throw Error("Shape: expected non-negative dimensions, got " + std::to_string(dims[i]) +
                  " at position " + std::to_string(i));
    }
    dims_[static_cast<size_t>(i)] = dims[i];
  }
  check_element_count(dims, rank);
  rank_ = rank;
}

void Shape::index_out_of_range(int i) const {
  throw Error("Shape: expected a dimension index in [" + std::to_string(-rank_) + ", " +
              std::to_string(rank_) + ") for " + str() + ", got " + std::to_string(i));
}

int64_t Shape::numel() const {
  int64_t n = 1;
  for (int i = 0; i < rank_; ++i) n *= dims_[static_cast<size_t>(i)];
  return n;
}

bool Shape::all_positive() const {
  if (rank_ == 0) return false;
  for (int i = 0; i < rank_; ++i) {
    if (dims_[static_cast<size_t>(i)] <= 0) return false;
  }
  return true;
}

std::string Shape::str() const {
  std::string s = "(";
  for (int i = 0; i < rank_; ++i) {
    if (i > 0) s += ", ";
    s += std::to_string(dims_[static_cast<size_t>(i)]);
  }
  if (rank_ == 1) s += ",";
  return s + ")";
}

Shape Shape::with(int i, int64_t value) const {
  Shape copy = *this;
  const int index = i < 0 ? i + rank_ : i;
  if (index < 0 || index >= rank_) {
    throw Error("Shape::with: dimension " + std::to_string(i) + " outside shape " + str());
  }
  if (value < 0)
    throw Error("Shape::with: expected a non-negative dimension, got " + std::to_string(value));
  copy.dims_[static_cast<size_t>(index)] = value;
  check_element_count(copy.dims_.data(), copy.rank_);
  return copy;
}

bool operator==(const Shape& a, const Shape& b) {
  if (a.rank_ != b.rank_) return false;
  for (int i = 0; i < a.rank_; ++i) {
    if (a.dims_[static_cast<size_t>(i)] != b.dims_[static_cast<size_t>(i)]) return false;
  }
  return true;
}

}  // namespace cnn

#pragma once
// Tensor (owning, 64-byte aligned, contiguous row-major, NCHW for images) and TensorView
// (non-owning pointer + shape). Layers and ops take views; models own tensors.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <span>
#include <type_traits>

#include "cnn/error.hpp"
#include "cnn/shape.hpp"

namespace cnn {

/// Non-owning view of contiguous memory with a shape. T may be const. An empty view
/// (data() == nullptr) means "not needed", e.g. dx of a model's first layer; it has numel() 0,
/// whatever its shape, so that span(), begin() and end() cover nothing.
template <typename T>
class TensorView {
 public:
  TensorView() = default;
  TensorView(T* data, const Shape& shape) : data_(data), shape_(shape) {}
  /// A view of T converts to a view of const T.
  template <typename U>
  requires std::is_same_v<const U, T> TensorView(const TensorView<U>& other)
      : data_(other.data()), shape_(other.shape()) {}

  T* data() const { return data_; }
  const Shape& shape() const { return shape_; }
  // 0 for an empty view: a default one's shape, (), counts one element, and a loop over
  // begin()..end() read address 0 (found 2026-12-08, a probe of the C++ API).
  int64_t numel() const { return data_ == nullptr ? 0 : shape_.numel(); }
  bool empty() const { return data_ == nullptr; }
  T& operator[](int64_t i) const { return data_[i]; }
  std::span<T> span() const { return {data_, static_cast<size_t>(numel())}; }
  T* begin() const { return data_; }
  T* end() const { return data_ + numel(); }

  /// The same memory with another shape; throws cnn::Error when the element counts differ.
  TensorView reshape(const Shape& shape) const {
    if (shape.numel() != numel()) {
      throw Error("TensorView::reshape: expected a shape with " + std::to_string(numel()) +
                  " elements like " + shape_.str() + ", got " + shape.str());
    }
    return TensorView(data_, shape);
  }

 private:
  T* data_ = nullptr;
  Shape shape_;
};

/// Owning tensor: contiguous, 64-byte aligned, zero-initialised on allocation. resize() keeps
/// the allocation when it is large enough, so a training step at a fixed batch size allocates
/// nothing. Copies are deep. A default-constructed or moved-from tensor is empty: no storage,
/// numel() 0 (its shape, (), would count one element: a scalar such as a counter is resized
/// to () and then has its element).
template <typename T>
class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(const Shape& shape) { resize(shape); }
  Tensor(const Shape& shape, T fill_value) {
    resize(shape);
    fill(fill_value);
  }
  Tensor(const Tensor& other) {
    if (other.storage_) {
      resize(other.shape_);
      std::copy(other.data(), other.data() + other.numel(), data());
    }
  }
  Tensor& operator=(const Tensor& other) {
    if (this == &other) return *this;
    if (!other.storage_) {
      storage_.reset();
      capacity_ = 0;
      shape_ = Shape();
      return *this;
    }
    resize(other.shape_);
    std::copy(other.data(), other.data() + other.numel(), data());
    return *this;
  }
  Tensor(Tensor&& other) noexcept
      : storage_(std::move(other.storage_)), capacity_(other.capacity_), shape_(other.shape_) {
    other.capacity_ = 0;
    other.shape_ = Shape();
  }
  Tensor& operator=(Tensor&& other) noexcept {
    // A self-move kept the storage and lost the shape (found 2026-12-08, a probe).
    if (this == &other) return *this;
    storage_ = std::move(other.storage_);
    capacity_ = other.capacity_;
    shape_ = other.shape_;
    other.capacity_ = 0;
    other.shape_ = Shape();
    return *this;
  }

  /// Sets the shape; reallocates (zeroed) only when the capacity is too small. Existing
  /// contents are unspecified after a resize that changes the element count.
  void resize(const Shape& shape) {
    const int64_t n = shape.numel();
    if (n > capacity_) {
      const size_t bytes = (static_cast<size_t>(n) * sizeof(T) + 63) / 64 * 64;
      void* memory = std::aligned_alloc(64, bytes);
      if (memory == nullptr) {
        throw OutOfMemory("out of memory: a tensor of shape " + shape.str() + ", " +
                          memory_size_text(double(bytes)));
      }
      std::memset(memory, 0, bytes);
      storage_.reset(static_cast<T*>(memory));
      capacity_ = n;
    }
    shape_ = shape;
  }

  void fill(T value) { std::fill(data(), data() + numel(), value); }

  T* data() { return storage_.get(); }
  const T* data() const { return storage_.get(); }
  const Shape& shape() const { return shape_; }
  int64_t numel() const { return storage_ ? shape_.numel() : 0; }
  T& operator[](int64_t i) { return data()[i]; }
  const T& operator[](int64_t i) const { return data()[i]; }
  T* begin() { return data(); }
  T* end() { return data() + numel(); }
  const T* begin() const { return data(); }
  const T* end() const { return data() + numel(); }

  TensorView<T> view() { return {data(), shape_}; }
  TensorView<const T> view() const { return {data(), shape_}; }
  operator TensorView<T>() { return view(); }              // NOLINT: views are cheap handles
  operator TensorView<const T>() const { return view(); }  // NOLINT

 private:
  struct FreeDeleter {
    void operator()(T* p) const { std::free(p); }
  };
  std::unique_ptr<T, FreeDeleter> storage_;
  int64_t capacity_ = 0;
  Shape shape_;
};

}  // namespace cnn

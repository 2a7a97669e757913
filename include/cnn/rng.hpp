#pragma once
// Rng: the explicit, seeded random source behind every random number in the library
// (initialisation, shuffling, test data). Its algorithms are fixed here, not taken from
// <random>'s distributions, whose output differs between standard libraries: one seed gives
// the same numbers on every platform.

#include <array>
#include <cmath>
#include <cstdint>
#include <utility>

#include "cnn/error.hpp"

namespace cnn {

/// Everything an Rng will draw from: checkpoints save it, so that a resumed run draws what
/// the uninterrupted one would have.
struct RngState {
  std::array<uint64_t, 4> words{};
  bool has_spare = false;
  double spare = 0;
};

/// xoshiro256** seeded through splitmix64; normals by Box-Muller.
class Rng {
 public:
  RngState state() const {
    return {{state_[0], state_[1], state_[2], state_[3]}, has_spare_, spare_};
  }
  /// Throws cnn::Error for the all-zero words, which xoshiro never leaves (it would draw zeros
  /// for ever, and normal() would never return) and no state() gives.
  void set_state(const RngState& s) {
    if (s.words == std::array<uint64_t, 4>{})
      throw Error("Rng::set_state: the all-zero state is not a state of this generator");
    for (int i = 0; i < 4; ++i) state_[i] = s.words[static_cast<size_t>(i)];
    has_spare_ = s.has_spare;
    spare_ = s.spare;
  }

  explicit Rng(uint64_t seed) {
    uint64_t x = seed;
    for (uint64_t& word : state_) {
      x += 0x9E3779B97F4A7C15ull;
      uint64_t z = x;
      z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
      z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
      word = z ^ (z >> 31);
    }
  }

  /// 64 uniformly random bits.
  uint64_t next_u64() {
    const uint64_t result = rotl(state_[1] * 5, 7) * 9;
    const uint64_t t = state_[1] << 17;
    state_[2] ^= state_[0];
    state_[3] ^= state_[1];
    state_[1] ^= state_[2];
    state_[0] ^= state_[3];
    state_[2] ^= t;
    state_[3] = rotl(state_[3], 45);
    return result;
  }

  /// Uniform in [0, 1) with 53 random bits.
  double uniform() { return static_cast<double>(next_u64() >> 11) * 0x1.0p-53; }
  /// Uniform in [lo, hi).
  double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }
  /// Standard normal (mean 0, variance 1).
  double normal() {
    if (has_spare_) {
      has_spare_ = false;
      return spare_;
    }
    double u1 = uniform();
    while (u1 <= 0.0) u1 = uniform();
    const double u2 = uniform();
    const double radius = std::sqrt(-2.0 * std::log(u1));
    constexpr double kTwoPi = 6.283185307179586476925286766559;
    spare_ = radius * std::sin(kTwoPi * u2);
    has_spare_ = true;
    return radius * std::cos(kTwoPi * u2);
  }
  /// Uniform integer in [0, n), unbiased (rejection sampling). Throws cnn::Error for n = 0 (the
  /// modulo by it was a SIGFPE), drawing nothing.
  uint64_t below(uint64_t n) {
    if (n == 0) throw Error("Rng::below: expected n > 0 (a draw from [0, n)), got 0");
    const uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t r = next_u64();
    while (r >= limit) r = next_u64();
    return r % n;
  }
  /// Fisher-Yates shuffle of [first, last).
  template <typename It>
  void shuffle(It first, It last) {
    const auto n = last - first;
    for (auto i = n - 1; i > 0; --i) {
      const auto j = static_cast<decltype(i)>(below(static_cast<uint64_t>(i) + 1));
      std::swap(first[i], first[j]);
    }
  }

 private:
  static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  uint64_t state_[4];
  double spare_ = 0.0;
  bool has_spare_ = false;
};

}  // namespace cnn

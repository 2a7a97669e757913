// Would Intel AMX speed up resnet's float products? AMX multiplies bf16 tiles only (on the
// Sapphire/Emerald Rapids Xeons; this Debian 12 kernel lets a process use it after an
// arch_prctl request). Float accuracy needs each float operand split into three bf16 parts
// (x = hi + mid + lo, each the rounding of what is left) and the six products of weight
// 2^-16 or more summed (hi.hi, hi.mid, hi.lo, mid.hi, mid.mid, lo.hi: "bf16x6"; worst error
// 4.6e-8 of a product over 200,000 random pairs, float's rounding 6.0e-8). The three of weight
// 2^-8 or more alone ("bf16x3") erred by up to 2.4e-5 of a product, past the golden values'
// 1e-5: not an option for a float library.
//
// It prints TDPBF16PS's throughput on one thread (operands held in tiles), then, for each GEMM
// shape that resnet's Winograd convolutions run at batch 64 (one thread's call, as the layers
// make it), times on one thread:
//   sgemm    cnn's AVX-512 SGEMM as the layer calls it, its packing included (the forward's and
//            input gradient's A, the transformed weights, packed once per step beforehand;
//            the weight gradient packs both operands every call);
//   split    the AMX operands made from the floats: each operand that changes every call
//            split into its three bf16 parts, laid out for the tile loads (B as pairs of rows);
//   copy     a plain copy of the same floats: what the split would cost at least if the
//            Winograd transforms wrote the bf16 parts themselves;
//   products the AMX products (32 x 32 blocks of four accumulator tiles, six products a K step).
// Each result is checked against a double sum: max |error| / sum of |terms| must stay under
// 1e-6 for both (exit 1 otherwise), so the figures compare two equally accurate products.
//
//   build/release/amx_gemm_bench [--repeat N]   (built when the compiler knows -mamx-tile)
//
// Exits 1 with one line when the CPU or the kernel does not offer AMX-BF16. Figures and the
// conclusion: docs/design-notes.md, "AMX for the products" (Kernels, "Tried and dropped").

#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "sgemm.hpp"

// GCC 12 warns, inside _mm512_srli_epi32 and its kind, that the "undefined" vector they merge
// into may be used uninitialised (their all-ones masks leave none of it): off for this file.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

namespace {

using cnn::detail::SgemmArgs;

constexpr long kArchRequestXcompPerm = 0x1023;  // arch_prctl: ask for an XSAVE feature
constexpr long kXfeatureTileData = 18;          // AMX's tile data

/// The tile configuration of palette 1: every tile 16 rows of 64 bytes.
struct TileConfig {
  uint8_t palette_id, start_row, reserved[14];
  uint16_t bytes_per_row[16];
  uint8_t rows[16];
};

/// The six (A part, B part) products summed, grouped by A's part so that an A tile is loaded
/// once for all the B parts it meets.
constexpr int kPartA[6] = {0, 0, 0, 1, 1, 2};
constexpr int kPartB[6] = {0, 1, 2, 0, 1, 0};

/// Each float rounded to bf16 (to nearest, ties to even), as float bits with the low half zero.
/// Finite values only (the benchmark's operands are normal draws): no NaN or overflow rule.
__attribute__((target("avx512f"))) inline __m512i round_to_bf16(__m512i bits) {
  const __m512i odd = _mm512_and_si512(_mm512_srli_epi32(bits, 16), _mm512_set1_epi32(1));
  const __m512i rounded = _mm512_add_epi32(bits, _mm512_add_epi32(odd, _mm512_set1_epi32(0x7FFF)));
  return _mm512_and_si512(rounded, _mm512_set1_epi32(static_cast<int>(0xFFFF0000u)));
}

/// x = hi + mid + lo (+ a rest below 2^-24 x), each part a bf16 in its float's high half.
__attribute__((target("avx512f"))) inline void split(__m512 x, __m512i (&part)[3]) {
  part[0] = round_to_bf16(_mm512_castps_si512(x));
  __m512 rest = _mm512_sub_ps(x, _mm512_castsi512_ps(part[0]));
  part[1] = round_to_bf16(_mm512_castps_si512(rest));
  rest = _mm512_sub_ps(rest, _mm512_castsi512_ps(part[1]));
  part[2] = round_to_bf16(_mm512_castps_si512(rest));
}

/// The bf16 of 32 values in order: `low` holds values 0-15 and `high` 16-31 in their high halves.
__attribute__((target("avx512f,avx512bw"))) inline __m512i bf16_in_order(__m512i low,
                                                                         __m512i high) {
  const __m512i odd_halves =
      _mm512_set_epi16(63, 61, 59, 57, 55, 53, 51, 49, 47, 45, 43, 41, 39, 37, 35, 33, 31, 29, 27,
                       25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1);
  return _mm512_permutex2var_epi16(low, odd_halves, high);
}

/// Lanes [0, count) of a 16-lane mask (count clamped to 0..16).
inline __mmask16 first_lanes(int64_t count) {
  return count <= 0 ? 0 : count >= 16 ? 0xFFFF : static_cast<__mmask16>((1u << count) - 1);
}

/// An operand split into its three parts, K padded with zeros to a multiple of 32.
struct Parts {
  std::vector<uint16_t> part[3];
  void size_to(int64_t count) {
    for (auto& p : part) p.assign(static_cast<size_t>(count), 0);
  }
};

/// A (m x k, rows lda apart, k contiguous) as tile rows: part[t][i * kp + p], kp = k rounded up
/// to 32.
__attribute__((target("avx512f,avx512bw"))) void split_a(const float* a, int64_t lda, int64_t m,
                                                         int64_t k, int64_t kp, Parts& out) {
  for (int64_t i = 0; i < m; ++i)
    for (int64_t p = 0; p < kp; p += 32) {
      __m512i low[3], high[3];
      split(_mm512_maskz_loadu_ps(first_lanes(k - p), a + i * lda + p), low);
      split(_mm512_maskz_loadu_ps(first_lanes(k - p - 16), a + i * lda + p + 16), high);
      for (int t = 0; t < 3; ++t)
        _mm512_storeu_si512(out.part[t].data() + i * kp + p, bf16_in_order(low[t], high[t]));
    }
}

/// B (k x n, rows ldb apart, n contiguous; n a multiple of 16) as tile rows of row pairs: panel q
/// (columns 16 q ..) holds kp / 2 rows of 16 (B(p, j), B(p + 1, j)) pairs.
__attribute__((target("avx512f"))) void split_b_rows(const float* b, int64_t ldb, int64_t k,
                                                     int64_t n, int64_t kp, Parts& out) {
  for (int64_t p = 0; p < kp; p += 2)
    for (int64_t j = 0; j < n; j += 16) {
      __m512i even[3] = {}, odd[3] = {};
      if (p < k) split(_mm512_loadu_ps(b + p * ldb + j), even);
      if (p + 1 < k) split(_mm512_loadu_ps(b + (p + 1) * ldb + j), odd);
      for (int t = 0; t < 3; ++t) {
        const __m512i pairs = _mm512_or_si512(odd[t], _mm512_srli_epi32(even[t], 16));
        _mm512_storeu_si512(out.part[t].data() + (j / 16) * kp * 16 + p * 16, pairs);
      }
    }
}

/// Lane l of r[i] goes to lane i of r[l] (32-bit lanes).
__attribute__((target("avx512f"))) inline void transpose16(__m512i (&r)[16]) {
  __m512i t[16];
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
  }
  for (int i = 0; i < 16; i += 4) {
    r[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]);
    r[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);
    r[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]);
    r[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
  }
  for (int i = 0; i < 16; i += 8)
    for (int q = 0; q < 4; ++q) {
      t[i + q] = _mm512_shuffle_i32x4(r[i + q], r[i + q + 4], 0x88);
      t[i + q + 4] = _mm512_shuffle_i32x4(r[i + q], r[i + q + 4], 0xDD);
    }
  for (int q = 0; q < 8; ++q) {
    r[q] = _mm512_shuffle_i32x4(t[q], t[q + 8], 0x88);
    r[q + 8] = _mm512_shuffle_i32x4(t[q], t[q + 8], 0xDD);
  }
}

/// B(p, j) = b[p + j * ldb] (the weight gradient's V^T: k contiguous) in split_b_rows' layout:
/// 16 columns' pairs of k, transposed 16 x 16 as 32-bit words.
__attribute__((target("avx512f,avx512bw"))) void split_b_columns(const float* b, int64_t ldb,
                                                                 int64_t k, int64_t n, int64_t kp,
                                                                 Parts& out) {
  for (int64_t j = 0; j < n; j += 16)
    for (int64_t p = 0; p < kp; p += 32) {
      __m512i rows[3][16];
      for (int c = 0; c < 16; ++c) {
        __m512i low[3], high[3];
        const float* column = b + (j + c) * ldb + p;
        split(_mm512_maskz_loadu_ps(first_lanes(k - p), column), low);
        split(_mm512_maskz_loadu_ps(first_lanes(k - p - 16), column + 16), high);
        for (int t = 0; t < 3; ++t) rows[t][c] = bf16_in_order(low[t], high[t]);
      }
      for (int t = 0; t < 3; ++t) {
        transpose16(rows[t]);
        for (int q = 0; q < 16; ++q)
          _mm512_storeu_si512(out.part[t].data() + (j / 16) * kp * 16 + (p + 2 * q) * 16,
                              rows[t][q]);
      }
    }
}

/// C (m x n, ldc) = A B from split_a's and split_b_*'s parts; m a multiple of 32, n of 16:
/// blocks of 32 x 32 (four accumulator tiles), the last 32 x 16 where n is an odd multiple of 16.
__attribute__((target("amx-tile,amx-bf16"))) void amx_products(const Parts& a, const Parts& b,
                                                               float* c, int64_t ldc, int64_t m,
                                                               int64_t n, int64_t kp) {
  for (int64_t i = 0; i < m; i += 32)
    for (int64_t j = 0; j < n; j += 32) {
      const bool two_columns = j + 32 <= n;
      _tile_zero(0);
      _tile_zero(1);
      _tile_zero(2);
      _tile_zero(3);
      for (int64_t p = 0; p < kp; p += 32) {
        int loaded = -1;
        for (int t = 0; t < 6; ++t) {
          if (kPartA[t] != loaded) {
            const uint16_t* a0 = a.part[kPartA[t]].data() + i * kp + p;
            _tile_loadd(4, a0, kp * 2);
            _tile_loadd(5, a0 + 16 * kp, kp * 2);
            loaded = kPartA[t];
          }
          const uint16_t* b0 = b.part[kPartB[t]].data() + (j / 16) * kp * 16 + p * 16;
          _tile_loadd(6, b0, 64);
          _tile_dpbf16ps(0, 4, 6);
          _tile_dpbf16ps(2, 5, 6);
          if (two_columns) {
            _tile_loadd(7, b0 + kp * 16, 64);
            _tile_dpbf16ps(1, 4, 7);
            _tile_dpbf16ps(3, 5, 7);
          }
        }
      }
      _tile_stored(0, c + i * ldc + j, ldc * 4);
      _tile_stored(2, c + (i + 16) * ldc + j, ldc * 4);
      if (two_columns) {
        _tile_stored(1, c + i * ldc + j + 16, ldc * 4);
        _tile_stored(3, c + (i + 16) * ldc + j + 16, ldc * 4);
      }
    }
}

__attribute__((target("amx-tile"))) void load_tile_config() {
  // Every byte set (unused tiles and reserved bytes 0): ldtilecfg faults on anything else.
  TileConfig config;
  std::memset(&config, 0, sizeof config);
  config.palette_id = 1;
  for (int t = 0; t < 8; ++t) {
    config.rows[t] = 16;
    config.bytes_per_row[t] = 64;
  }
  // GCC 12's _tile_loadconfig tells the compiler it reads 8 bytes, which then dropped the
  // stores of the last rows as dead (ldtilecfg faulted on the garbage): the barrier keeps them.
  __asm__ __volatile__("" : : "r"(&config) : "memory");
  _tile_loadconfig(&config);
}

/// bf16 GFLOP/s of TDPBF16PS on one thread: four independent accumulators, the operands loaded
/// into tiles once.
__attribute__((target("amx-tile,amx-bf16"))) double tile_peak_gflops() {
  std::vector<uint16_t> a(16 * 32, 0x3F80), b(16 * 32, 0x3C00);  // 1.0 and 2^-7 in bf16
  _tile_loadd(4, a.data(), 64);
  _tile_loadd(5, a.data(), 64);
  _tile_loadd(6, b.data(), 64);
  _tile_loadd(7, b.data(), 64);
  double best = 0;
  for (int round = 0; round < 3; ++round) {
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    constexpr int64_t kIterations = 2000000;
    const auto start = std::chrono::steady_clock::now();
    for (int64_t i = 0; i < kIterations; ++i) {
      _tile_dpbf16ps(0, 4, 6);
      _tile_dpbf16ps(1, 4, 7);
      _tile_dpbf16ps(2, 5, 6);
      _tile_dpbf16ps(3, 5, 7);
    }
    std::vector<float> c(16 * 16);
    _tile_stored(0, c.data(), 64);  // the sums are used: the loop stays
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (c[0] > 0) best = std::max(best, kIterations * 4 * 16.0 * 16 * 32 * 2 / seconds / 1e9);
  }
  return best;
}

__attribute__((target("amx-tile"))) void release_tiles() {
  _tile_release();
}

/// The median time of `repeat` calls of f, in microseconds.
template <typename F>
double median_us(int repeat, const F& f) {
  std::vector<double> times;
  for (int r = 0; r < repeat; ++r) {
    const auto start = std::chrono::steady_clock::now();
    f();
    times.push_back(
        std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start)
            .count());
  }
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

/// One product of a Winograd layer: C (m x n) = A (m x k) B (k x n). forward: A prepacked once
/// (the transformed weights), B row-major (V or the output gradient's transform); weight
/// gradient: A row-major, B transposed (V^T), both packed every call.
struct Shape {
  const char* what;
  bool weight_gradient;
  int64_t m, n, k;
};

/// max |c - exact| / sum |terms| over C.
double worst_error(const std::vector<float>& a, const std::vector<float>& b, const float* c,
                   int64_t ldc, const Shape& s) {
  double worst = 0;
  for (int64_t i = 0; i < s.m; ++i)
    for (int64_t j = 0; j < s.n; ++j) {
      double exact = 0, size = 0;
      for (int64_t p = 0; p < s.k; ++p) {
        const double bv = s.weight_gradient ? b[j * s.k + p] : b[p * s.n + j];
        exact += a[i * s.k + p] * bv;
        size += std::fabs(a[i * s.k + p] * bv);
      }
      worst = std::max(worst, std::fabs(c[i * ldc + j] - exact) / size);
    }
  return worst;
}

}  // namespace

int main(int argc, char** argv) {
  int repeat = 101;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--repeat" && i + 1 < argc) {
      repeat = std::atoi(argv[++i]);
      if (repeat < 1) {
        std::fprintf(stderr, "amx_gemm_bench: --repeat must be a positive integer, got %s\n",
                     argv[i]);
        return 1;
      }
    } else {
      std::fprintf(stderr,
                   "amx_gemm_bench: unknown argument %s (usage: amx_gemm_bench [--repeat N])\n",
                   arg.c_str());
      return 1;
    }
  }
  if (!__builtin_cpu_supports("avx512bw") || !__builtin_cpu_supports("amx-tile") ||
      !__builtin_cpu_supports("amx-bf16")) {
    std::fprintf(
        stderr, "amx_gemm_bench: this CPU has no AMX-BF16 (or no AVX-512BW); nothing to measure\n");
    return 1;
  }
  if (syscall(SYS_arch_prctl, kArchRequestXcompPerm, kXfeatureTileData) != 0) {
    std::fprintf(stderr, "amx_gemm_bench: the kernel refused AMX tile data (arch_prctl: %s)\n",
                 std::strerror(errno));
    return 1;
  }
  load_tile_config();

  // The calls of one resnet training step at batch 64 (logged by a temporary print in
  // gemm.cpp's sgemm, 2026-12-06): the forward and input-gradient products run per block of
  // tiles, the weight gradient's per chunk of images.
  const Shape shapes[] = {
      {"F(2x2) 14x14, 32 ch: forward, a block of tiles", false, 32, 112, 32},
      {"F(2x2) 14x14, 32 ch: input gradient", false, 32, 1568, 32},
      {"F(4x4) 7x7, 64 ch: forward / input gradient", false, 64, 32, 64},
      {"F(4x4) 4x4, 128 ch: forward / input gradient", false, 128, 16, 128},
      {"F(2x2) 14x14, 32 ch: weight gradient", true, 32, 32, 1568},
      {"F(4x4) 7x7, 64 ch: weight gradient", true, 64, 64, 128},
      {"F(4x4) 4x4, 128 ch: weight gradient", true, 128, 128, 32},
  };
  std::printf("TDPBF16PS on one thread: %.0f bf16 GFLOP/s\n", tile_peak_gflops());
  std::printf("one thread, median of %d calls, microseconds; GFLOP/s of the float product\n\n",
              repeat);
  std::printf(
      "| product | m x n x k | sgemm | split | copy | products | split + products | sgemm / (split "
      "+ products) | sgemm / products |\n");
  std::printf("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
  std::mt19937 rng(1);
  std::normal_distribution<float> normal;
  std::vector<float> pack_a(cnn::detail::kPackA), pack_b(cnn::detail::kPackB);
  int failures = 0;
  for (const Shape& s : shapes) {
    const int64_t kp = (s.k + 31) / 32 * 32;
    std::vector<float> a(s.m * s.k), b(s.k * s.n), c(s.m * s.n), c_amx(s.m * s.n), copy(s.k * s.n);
    for (float& v : a) v = normal(rng);
    for (float& v : b) v = normal(rng);  // the weight gradient's B is stored n x k (V)
    Parts a_parts, b_parts;
    a_parts.size_to(s.m * kp);
    b_parts.size_to(kp * s.n);
    double sgemm_us = 0, split_us = 0;
    if (!s.weight_gradient) {
      std::vector<float> packed(cnn::detail::sgemm_avx512_packed_a_size(s.m, s.k));
      SgemmArgs pack{s.m, 0, s.k,     a.data(), s.k,   1,       nullptr,
                     0,   0, nullptr, 0,        false, nullptr, nullptr};
      cnn::detail::sgemm_avx512_pack_a(pack, packed.data());
      SgemmArgs g{
          s.m,   s.n,           s.k,           nullptr,      0, 0, b.data(), s.n, 1, c.data(), s.n,
          false, pack_a.data(), pack_b.data(), packed.data()};
      sgemm_us = median_us(repeat, [&] { cnn::detail::sgemm_avx512(g); });
      split_a(a.data(), s.k, s.m, s.k, kp, a_parts);  // once a step, like the packed weights
      split_us = median_us(repeat, [&] { split_b_rows(b.data(), s.n, s.k, s.n, kp, b_parts); });
    } else {
      SgemmArgs g{s.m,      s.n, s.k,   a.data(),      s.k,          1, b.data(), 1, s.k,
                  c.data(), s.n, false, pack_a.data(), pack_b.data()};
      sgemm_us = median_us(repeat, [&] { cnn::detail::sgemm_avx512(g); });
      split_us = median_us(repeat, [&] {
        split_a(a.data(), s.k, s.m, s.k, kp, a_parts);
        split_b_columns(b.data(), s.k, s.k, s.n, kp, b_parts);
      });
    }
    // The floats the split reads, copied once: B, and for the weight gradient A too.
    const double copy_us = median_us(repeat, [&] {
      std::memcpy(copy.data(), b.data(), b.size() * sizeof(float));
      if (s.weight_gradient)
        std::memcpy(c_amx.data(), a.data(), std::min(a.size(), c_amx.size()) * sizeof(float));
    });
    const double products_us =
        median_us(repeat, [&] { amx_products(a_parts, b_parts, c_amx.data(), s.n, s.m, s.n, kp); });
    const double amx_error = worst_error(a, b, c_amx.data(), s.n, s);
    const double sgemm_error = worst_error(a, b, c.data(), s.n, s);
    const double mflop = 2.0 * s.m * s.n * s.k / 1e6;
    std::printf(
        "| %s | %ld x %ld x %ld | %.1f (%.0f) | %.1f | %.1f | %.1f (%.0f) | %.1f | %.2fx | %.2fx "
        "|\n",
        s.what, static_cast<long>(s.m), static_cast<long>(s.n), static_cast<long>(s.k), sgemm_us,
        mflop / sgemm_us * 1e3, split_us, copy_us, products_us, mflop / products_us * 1e3,
        split_us + products_us, sgemm_us / (split_us + products_us), sgemm_us / products_us);
    if (amx_error > 1e-6 || sgemm_error > 1e-6) {
      std::fprintf(stderr,
                   "amx_gemm_bench: %s: max error / sum |terms| %.2e (AMX), %.2e (sgemm); expected "
                   "<= 1e-6\n",
                   s.what, amx_error, sgemm_error);
      ++failures;
    }
  }
  release_tiles();
  return failures ? 1 : 0;
}

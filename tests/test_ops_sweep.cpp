// Acceptance 3: randomized sweeps show that the default path of every op equals its _ref
// twin, in float and double, on shapes with odd sizes, strides, padding, batch 1 and channel
// counts that are not multiples of any vector width. Each case prints its full parameter
// tuple on failure (the manner of ncnn's and ggml's op tests).

#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <map>
#include <set>
#include <sstream>
#include <stdexcept>
#include <vector>

#include "cnn/ops.hpp"
#include "cnn/ops_ref.hpp"
#include "cnn/rng.hpp"
#include "test_paths.hpp"

namespace cnn {
namespace {

template <typename T>
std::vector<T> random_vector(Rng& rng, int64_t n, bool quantized = false) {
  std::vector<T> v(static_cast<size_t>(n));
  // Quantized values (0, 1, 2, 3) create ties for max pooling's tie rule.
  for (T& e : v) e = quantized ? T(rng.below(4)) : T(rng.normal());
  return v;
}

/// Max over elements of |a - b| / (|b| + 1): sums in a different order differ by rounding.
template <typename T>
double max_difference(const std::vector<T>& a, const std::vector<T>& b) {
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double d = std::abs(double(a[i]) - double(b[i])) / (std::abs(double(b[i])) + 1.0);
    worst = std::max(worst, std::isnan(d) ? INFINITY : d);
  }
  return worst;
}

/// Max over elements of |a - b| / (m + 1), where m is the sum of the absolute values of the
/// terms that b sums: float rounding grows with that, so long sums (a weight gradient over a
/// batch of 28 x 28 images sums thousands of products) get a bound that scales with them.
template <typename T>
double max_difference_to_magnitude(const std::vector<T>& a, const std::vector<double>& b,
                                   const std::vector<double>& magnitude) {
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double d = std::abs(double(a[i]) - b[i]) / (magnitude[i] + 1.0);
    worst = std::max(worst, std::isnan(d) ? INFINITY : d);
  }
  return worst;
}

template <typename T>
std::vector<double> absolute(const std::vector<T>& v) {
  std::vector<double> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = std::abs(double(v[i]));
  return out;
}

template <typename T>
double tolerance() {
  return std::is_same_v<T, float> ? 1e-5 : 1e-12;
}

std::string describe(const ops::ConvShape& s) {
  std::ostringstream out;
  out << "ConvShape{batch=" << s.batch << " in=" << s.in_channels << " " << s.in_h << "x" << s.in_w
      << " out=" << s.out_channels << " kernel=" << s.kernel_h << "x" << s.kernel_w
      << " stride=" << s.stride_h << "x" << s.stride_w << " pad=" << s.pad_h << "x" << s.pad_w
      << " -> " << s.out_h << "x" << s.out_w << "}";
  return out.str();
}

std::string describe(const ops::PoolShape& s) {
  std::ostringstream out;
  out << "PoolShape{batch=" << s.batch << " channels=" << s.channels << " " << s.in_h << "x"
      << s.in_w << " kernel=" << s.kernel_h << "x" << s.kernel_w << " stride=" << s.stride_h << "x"
      << s.stride_w << " pad=" << s.pad_h << "x" << s.pad_w << "}";
  return out.str();
}

/// A random valid convolution geometry.
ops::ConvShape random_conv(Rng& rng) {
  const int64_t kernels[] = {1, 2, 3, 5, 4, 7};
  while (true) {
    const int64_t kh = rng.below(3) == 0 ? kernels[rng.below(6)] : 1 + int64_t(rng.below(5));
    const int64_t kw = rng.below(2) == 0 ? kh : 1 + int64_t(rng.below(5));
    const int64_t sh = 1 + int64_t(rng.below(3)),
                  sw = rng.below(2) ? sh : 1 + int64_t(rng.below(3));
    const int64_t ph = int64_t(rng.below(3)), pw = rng.below(2) ? ph : int64_t(rng.below(3));
    const int64_t h = 1 + int64_t(rng.below(13)), w = 1 + int64_t(rng.below(13));
    if (h + 2 * ph < kh || w + 2 * pw < kw) continue;
    return ops::make_conv_shape(1 + int64_t(rng.below(3)), 1 + int64_t(rng.below(9)), h, w,
                                1 + int64_t(rng.below(17)), kh, kw, sh, sw, ph, pw);
  }
}

template <typename T>
std::vector<double> to_double(const std::vector<T>& v) {
  return std::vector<double>(v.begin(), v.end());
}

/// A convolution's random inputs and the double reference's results on them: the values and
/// the magnitudes (the reference run on absolute values) of the forward and of each gradient,
/// the gradients accumulated onto the same non-zero start as the fast path's.
template <typename T>
struct ConvCase {
  bool bias = true;
  std::vector<T> x, w, b, dy;
  std::vector<double> y_ref, y_mag, dx_ref, dx_mag, dw_ref, dw_mag, db_ref, db_mag;
};

template <typename T>
ConvCase<T> make_conv_case(Rng& rng, const ops::ConvShape& s, bool bias) {
  const int64_t nx = s.batch * s.in_channels * s.in_h * s.in_w;
  const int64_t nw = s.out_channels * s.in_channels * s.kernel_h * s.kernel_w;
  const int64_t ny = s.batch * s.out_channels * s.out_h * s.out_w;
  ConvCase<T> c;
  c.bias = bias;
  c.x = random_vector<T>(rng, nx);
  c.w = random_vector<T>(rng, nw);
  c.b = random_vector<T>(rng, s.out_channels);
  c.dy = random_vector<T>(rng, ny);
  // The reference runs in double on the same inputs: a float reference would add its own
  // rounding to the error measured.
  const auto xd = to_double(c.x), wd = to_double(c.w), bd = to_double(c.b), dyd = to_double(c.dy);
  const auto xa = absolute(c.x), wa = absolute(c.w), ba = absolute(c.b), dya = absolute(c.dy);
  const double* no_bias = nullptr;
  c.y_ref.assign(ny, NAN);
  c.y_mag.assign(ny, NAN);
  ref::conv2d_forward(c.y_ref.data(), xd.data(), wd.data(), bias ? bd.data() : no_bias, s);
  ref::conv2d_forward(c.y_mag.data(), xa.data(), wa.data(), bias ? ba.data() : no_bias, s);
  c.dx_ref.assign(nx, NAN);
  c.dx_mag.assign(nx, NAN);
  c.dw_ref.assign(nw, 0.5);
  c.dw_mag.assign(nw, 0.5);
  c.db_ref.assign(s.out_channels, -0.25);
  c.db_mag.assign(s.out_channels, 0.25);
  ref::conv2d_backward(c.dx_ref.data(), c.dw_ref.data(), bias ? c.db_ref.data() : nullptr,
                       xd.data(), wd.data(), dyd.data(), s);
  ref::conv2d_backward(c.dx_mag.data(), c.dw_mag.data(), bias ? c.db_mag.data() : nullptr,
                       xa.data(), wa.data(), dya.data(), s);
  return c;
}

/// Compares forward and backward of the default path with the reference results of `c`,
/// relative to the magnitude of each sum.
template <typename T>
void check_conv_case(const ConvCase<T>& c, const ops::ConvShape& s) {
  std::vector<T> y_fast(c.y_ref.size(), NAN);
  ops::conv2d_forward(y_fast.data(), c.x.data(), c.w.data(), c.bias ? c.b.data() : nullptr, s);
  ASSERT_LE(max_difference_to_magnitude(y_fast, c.y_ref, c.y_mag), tolerance<T>())
      << "forward " << describe(s);
  // Gradients accumulate onto the same non-zero start in both paths.
  std::vector<T> dx_fast(c.x.size(), NAN), dw_fast(c.w.size(), T(0.5)),
      db_fast(c.b.size(), T(-0.25));
  ops::conv2d_backward(dx_fast.data(), dw_fast.data(), c.bias ? db_fast.data() : nullptr,
                       c.x.data(), c.w.data(), c.dy.data(), s);
  ASSERT_LE(max_difference_to_magnitude(dx_fast, c.dx_ref, c.dx_mag), tolerance<T>())
      << "dx " << describe(s);
  ASSERT_LE(max_difference_to_magnitude(dw_fast, c.dw_ref, c.dw_mag), tolerance<T>())
      << "dw " << describe(s);
  ASSERT_LE(max_difference_to_magnitude(db_fast, c.db_ref, c.db_mag), tolerance<T>())
      << "db " << describe(s);
}

/// Compares forward and backward of the default path with the double reference on one shape,
/// on inputs drawn from `rng`.
template <typename T>
void check_conv(Rng& rng, const ops::ConvShape& s, bool bias) {
  check_conv_case(make_conv_case<T>(rng, s, bias), s);
}

/// The float cases of a sweep that checks the same shapes on several paths (instruction sets,
/// thread counts), by shape and bias: every path is checked on the same inputs against one
/// reference run, which is most of such a sweep's time (96% of one measured on 2026-12-07).
class ConvCases {
 public:
  /// The case of `s` with or without a bias, made from `rng` the first time it is asked for.
  const ConvCase<float>& get(Rng& rng, const ops::ConvShape& s, bool bias) {
    const std::string key = describe(s) + (bias ? " bias" : " no bias");
    auto found = cases_.find(key);
    if (found == cases_.end())
      found = cases_.emplace(key, make_conv_case<float>(rng, s, bias)).first;
    return found->second;
  }

 private:
  std::map<std::string, ConvCase<float>> cases_;
};

template <typename T>
void sweep_conv(uint64_t seed, int cases) {
  Rng rng(seed);
  for (int c = 0; c < cases; ++c) {
    const ops::ConvShape s = random_conv(rng);
    const bool bias = rng.below(4) != 0;
    ASSERT_NO_FATAL_FAILURE(check_conv<T>(rng, s, bias));
  }
}

/// A random 3x3 stride-1 geometry, the Winograd path's: sizes 1 to 20 give 1 to 10 tiles per
/// row (every remainder of the 4-tile groups), batches up to 13 split over threads and chunks.
ops::ConvShape random_conv3x3(Rng& rng) {
  while (true) {
    const int64_t h = 1 + int64_t(rng.below(20)), w = 1 + int64_t(rng.below(20));
    const int64_t ph = int64_t(rng.below(3)), pw = rng.below(2) ? ph : int64_t(rng.below(3));
    if (h + 2 * ph < 3 || w + 2 * pw < 3) continue;
    return ops::make_conv_shape(1 + int64_t(rng.below(13)), 1 + int64_t(rng.below(24)), h, w,
                                1 + int64_t(rng.below(24)), 3, 3, 1, 1, ph, pw);
  }
}

/// The float sweeps run once per supported instruction set.
class OpsSweepIsa : public testing::PathTest {};

TEST_P(OpsSweepIsa, Conv2dFloat) {
  sweep_conv<float>(1, 300);
}
// Larger images and more channels than the sweep's: the direct path's backward then stages
// images in several chunks, and 2 threads split the batch unevenly (7 images).
TEST_P(OpsSweepIsa, Conv2dFloatLargeImagesAndTwoThreads) {
  Rng rng(11);
  const ops::ConvShape shapes[] = {
      ops::make_conv_shape(7, 1, 28, 28, 6, 5, 5, 1, 1, 2, 2),    // LeNet-5 conv1
      ops::make_conv_shape(7, 6, 14, 14, 16, 5, 5, 1, 1, 0, 0),   // LeNet-5 conv2
      ops::make_conv_shape(7, 9, 33, 31, 13, 3, 3, 1, 1, 1, 1),   // odd sizes and channels
      ops::make_conv_shape(3, 3, 40, 37, 5, 7, 3, 1, 1, 3, 0),    // tall kernel, no side pad
      ops::make_conv_shape(2, 32, 14, 14, 64, 3, 3, 1, 1, 1, 1),  // convnet conv2
      // The implicit GEMM's column blocks: 128 channels out in two blocks of 64 (AVX-512),
      // 66 in five of 16; 70 channels in (the input gradient's columns) past one block.
      ops::make_conv_shape(5, 20, 9, 9, 128, 3, 3, 2, 2, 1, 1),
      ops::make_conv_shape(3, 70, 7, 7, 66, 3, 3, 1, 1, 1, 1),
      ops::make_conv_shape(16, 5, 10, 12, 32, 3, 5, 1, 1, 0, 0)};  // 3x5 kernel, 5 channels in
  const int saved = ops::threads();
  for (int team : {1, 2}) {
    ops::set_threads(team);
    for (const ops::ConvShape& s : shapes) {
      SCOPED_TRACE(team);
      ASSERT_NO_FATAL_FAILURE(check_conv<float>(rng, s, true));
    }
  }
  ops::set_threads(saved);
}

/// Equal bit for bit: == would let -0 pass for +0 and fail NaN against NaN.
template <typename T>
bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

/// A layer that kAuto runs by the methods named (forward, weight and input gradient): forward,
/// weight, bias and input gradients against the double reference, with and without a bias; and
/// a weight scale (a folded BatchNorm) gives the bits of weights scaled first.
void check_auto_methods(Rng& rng, ConvCases& cases, const ops::ConvShape& s, const char* forward,
                        const char* weight_grad, const char* input_grad) {
  ASSERT_STREQ(ops::conv2d_forward_method(s), forward) << describe(s);
  ASSERT_STREQ(ops::conv2d_weight_grad_method(s), weight_grad) << describe(s);
  ASSERT_STREQ(ops::conv2d_input_grad_method(s), input_grad) << describe(s);
  ASSERT_NO_FATAL_FAILURE(check_conv_case(cases.get(rng, s, true), s));
  ASSERT_NO_FATAL_FAILURE(check_conv_case(cases.get(rng, s, false), s));
  const int64_t per_channel = s.in_channels * s.kernel_h * s.kernel_w;
  const auto x = random_vector<float>(rng, s.batch * s.in_channels * s.in_h * s.in_w),
             w = random_vector<float>(rng, s.out_channels * per_channel),
             b = random_vector<float>(rng, s.out_channels),
             scale = random_vector<float>(rng, s.out_channels);
  std::vector<float> scaled = w;
  for (int64_t o = 0; o < s.out_channels; ++o)
    for (int64_t k = 0; k < per_channel; ++k) scaled[o * per_channel + k] *= scale[o];
  std::vector<float> expected(s.batch * s.out_channels * s.out_h * s.out_w), y(expected.size());
  ops::conv2d_forward(expected.data(), x.data(), scaled.data(), b.data(), s);
  ops::conv2d_forward(y.data(), x.data(), w.data(), b.data(), s, scale.data());
  ASSERT_TRUE(same_bits(y, expected)) << "weight scale " << describe(s);
}

/// body(s, cases) for each of `shapes` under kAuto on every supported instruction set, 1 and 2
/// threads (named by SCOPED_TRACE), until a fatal failure; the settings restored afterwards.
/// `cases` is shared by every path, so that each shape's reference runs once.
template <typename Body>
void for_each_auto_path(const std::vector<ops::ConvShape>& shapes, const Body& body) {
  const testing::RestoreOpsSettings restore;
  ConvCases cases;
  ops::set_conv_algorithm(ops::ConvAlgorithm::kAuto);
  [&] {
    for (const ops::Isa isa : ops::supported_isas()) {
      ops::set_isa(isa);
      for (int team : {1, 2}) {
        ops::set_threads(team);
        for (const ops::ConvShape& s : shapes) {
          SCOPED_TRACE(std::string(ops::isa_name(isa)) + ", " + std::to_string(team) + " threads");
          body(s, cases);
          if (::testing::Test::HasFatalFailure()) return;
        }
      }
    }
  }();
}

// kAuto's mixed methods, which the forced paths above never take: the forward and weight
// gradient by the implicit GEMM and the input gradient alone by the direct kernels (layers
// without padding whose outputs fill less than 3/4 of the direct kernels' positions, 16+
// images), on every instruction set, 1 and 2 threads: LeNet-5 conv2 at an odd batch, and a
// 3x5 kernel with 5 channels in (check_auto_methods: a weight scale gives the bits too).
TEST(OpsSweep, Conv2dAutoImplicitWeightsDirectInputGradientMatchTheReference) {
  Rng rng(13);
  const std::vector<ops::ConvShape> shapes = {
      ops::make_conv_shape(17, 6, 14, 14, 16, 5, 5, 1, 1, 0, 0),
      ops::make_conv_shape(16, 5, 10, 12, 32, 3, 5, 1, 1, 0, 0)};
  for_each_auto_path(shapes, [&](const ops::ConvShape& s, ConvCases& cases) {
    ASSERT_NO_FATAL_FAILURE(check_auto_methods(rng, cases, s, "implicit", "implicit", "direct"));
  });
}

// kAuto's 1x1 stride-2 layers (resnet's projection shortcuts): the forward by the implicit GEMM
// reading the unpadded input in place, the backward by im2col + GEMM, on every instruction set,
// 1 and 2 threads: the shortcut's shape at an odd batch, odd planes (9x11, whose last row and
// column no output reads) with odd channel counts (a partial column block), and 16 images
// (check_auto_methods: a weight scale, evaluation's folded BatchNorm, gives the bits too).
TEST(OpsSweep, Conv2dAutoPointwiseStride2ForwardByImplicitMatchesTheReference) {
  Rng rng(17);
  const std::vector<ops::ConvShape> shapes = {
      ops::make_conv_shape(17, 32, 14, 14, 64, 1, 1, 2, 2, 0, 0),
      ops::make_conv_shape(19, 21, 9, 11, 40, 1, 1, 2, 2, 0, 0),
      ops::make_conv_shape(16, 64, 7, 7, 128, 1, 1, 2, 2, 0, 0)};
  for_each_auto_path(shapes, [&](const ops::ConvShape& s, ConvCases& cases) {
    ASSERT_NO_FATAL_FAILURE(check_auto_methods(rng, cases, s, "implicit", "gemm", "gemm"));
  });
}

// kAuto's Winograd layers whose backward the implicit GEMM takes (the forward stays by
// Winograd): 16 channels in or out on planes of 28x28 or more (odd batches, a non-square plane,
// 16 -> 32 and 32 -> 16) on the AVX2 and AVX-512 kernels, and a 2x2 plane whose products read
// the padding in 56% of the cases on AVX-512's; 1 and 2 threads (check_auto_methods: forward,
// weight, bias and input gradients against the double reference, and a weight scale's bits).
TEST(OpsSweep, Conv2dAutoWinogradForwardImplicitBackwardMatchesTheReference) {
  const testing::RestoreOpsSettings restore;
  ops::set_conv_algorithm(ops::ConvAlgorithm::kAuto);
  Rng rng(19);
  const std::vector<ops::ConvShape> narrow = {
      ops::make_conv_shape(17, 16, 28, 28, 16, 3, 3, 1, 1, 1, 1),
      ops::make_conv_shape(16, 16, 27, 30, 32, 3, 3, 1, 1, 1, 1),
      ops::make_conv_shape(16, 32, 28, 29, 16, 3, 3, 1, 1, 1, 1)};
  const ops::ConvShape padded = ops::make_conv_shape(16, 32, 2, 2, 32, 3, 3, 1, 1, 1, 1);
  int checked = 0;
  ConvCases cases;
  for (const ops::Isa isa : ops::supported_isas()) {
    if (isa != ops::Isa::kAvx2 && isa != ops::Isa::kAvx512) continue;
    ops::set_isa(isa);
    std::vector<ops::ConvShape> shapes = narrow;
    if (isa == ops::Isa::kAvx512) shapes.push_back(padded);  // the padding exception's
    for (int team : {1, 2}) {
      ops::set_threads(team);
      for (const ops::ConvShape& s : shapes) {
        SCOPED_TRACE(std::string(ops::isa_name(isa)) + ", " + std::to_string(team) + " threads");
        ASSERT_NO_FATAL_FAILURE(
            check_auto_methods(rng, cases, s, "winograd", "implicit", "implicit"));
        ++checked;
      }
    }
  }
  if (checked == 0) GTEST_SKIP() << "the rules apply to the AVX2 and AVX-512 kernels";
}

// kAuto's stride-2 layers outside the implicit GEMM's channel bounds (an RGB network's stem):
// the weight gradient by the implicit GEMM, the input gradient by im2col + GEMM's col2im alone
// (no weight gradient beside it), the forward as before, on every instruction set, 1 and 2
// threads: ResNet's 7x7 stem with padding 3 at an odd batch on a non-square plane with odd
// channels out, a 3x3 one at the rule's least batch (4) and channels in (3), 15 channels in,
// 31 out, a 5x3 kernel, and no padding (check_auto_methods: forward, weight, bias and input
// gradients against the double reference, and a weight scale's bits).
TEST(OpsSweep, Conv2dAutoStridedImplicitWeightsGemmInputGradientMatchTheReference) {
  Rng rng(29);
  const std::vector<ops::ConvShape> shapes = {
      ops::make_conv_shape(5, 3, 13, 11, 7, 7, 7, 2, 2, 3, 3),
      ops::make_conv_shape(4, 3, 9, 9, 64, 3, 3, 2, 2, 1, 1),
      ops::make_conv_shape(17, 15, 14, 14, 64, 3, 3, 2, 2, 1, 1),
      ops::make_conv_shape(16, 16, 12, 10, 31, 5, 3, 2, 2, 2, 1),
      ops::make_conv_shape(6, 4, 15, 15, 20, 3, 3, 2, 2, 0, 0)};
  for_each_auto_path(shapes, [&](const ops::ConvShape& s, ConvCases& cases) {
    ASSERT_NO_FATAL_FAILURE(
        check_auto_methods(rng, cases, s, ops::conv2d_forward_method(s), "implicit", "gemm"));
  });
}

TEST_P(OpsSweepIsa, Conv2dFloat3x3Stride1OneAndTwoThreads) {
  Rng rng(23);
  const int saved = ops::threads();
  for (int c = 0; c < 40; ++c) {
    const ops::ConvShape s = random_conv3x3(rng);
    const int team = 1 + c % 2;
    ops::set_threads(team);
    SCOPED_TRACE(team);
    ASSERT_NO_FATAL_FAILURE(check_conv<float>(rng, s, c % 3 != 0));
  }
  ops::set_threads(saved);
}
// Winograd keeps its transformed weights between calls: weights changed in place (the same
// pointer, as an optimizer step does) must be seen, one value or many.
TEST_P(OpsSweepIsa, Conv2dSeesWeightsChangedInPlace) {
  Rng rng(41);
  const ops::ConvShape s = ops::make_conv_shape(1, 16, 6, 7, 16, 3, 3, 1, 1, 1, 1);
  std::vector<float> x = random_vector<float>(rng, 16 * 6 * 7),
                     w = random_vector<float>(rng, 16 * 16 * 9);
  for (int change = 0; change < 4; ++change) {
    if (change == 1) w[w.size() - 1] += 1.0f;  // the last byte compared
    if (change == 2) w[0] = -w[0];             // the first
    if (change == 3) {
      for (float& v : w) v *= 0.5f;
    }
    std::vector<float> y(16 * 6 * 7);
    std::vector<double> y_ref(y.size()), y_mag(y.size());
    ops::conv2d_forward(y.data(), x.data(), w.data(), static_cast<const float*>(nullptr), s);
    const auto xd = to_double(x), wd = to_double(w);
    const auto xa = absolute(x), wa = absolute(w);
    const double* no_bias = nullptr;
    ref::conv2d_forward(y_ref.data(), xd.data(), wd.data(), no_bias, s);
    ref::conv2d_forward(y_mag.data(), xa.data(), wa.data(), no_bias, s);
    ASSERT_LE(max_difference_to_magnitude(y, y_ref, y_mag), tolerance<float>())
        << "after change " << change;
  }
}

TEST(OpsSweep, Conv2dDouble) {
  sweep_conv<double>(2, 150);
}

// A convolution's zero padding gives the bits of the same zeros written into the input: the
// implicit GEMM skips the products of the taps that read the padding, forward and in the
// weight gradient (they are zeros, and a sum that starts at +0 is unchanged by adding a zero),
// so its sums must equal, bit for bit, those over every tap of an explicitly padded input. On every
// method; the shapes put 31% (4x4 from 7x7, stride 2), 18% (7x7) and more (padding 2 on a 4x4
// plane, whose corner outputs read one tap of nine) of the products on the padding, with batches
// over threads.
TEST_P(OpsSweepIsa, Conv2dPaddingGivesTheBitsOfExplicitZeros) {
  Rng rng(53);
  const ops::ConvShape shapes[] = {ops::make_conv_shape(17, 20, 7, 7, 66, 3, 3, 2, 2, 1, 1),
                                   ops::make_conv_shape(16, 18, 7, 7, 40, 3, 3, 1, 1, 1, 1),
                                   ops::make_conv_shape(3, 16, 4, 4, 32, 3, 3, 1, 1, 2, 2),
                                   ops::make_conv_shape(5, 16, 9, 8, 32, 3, 3, 2, 2, 1, 1),
                                   ops::make_conv_shape(2, 16, 6, 5, 32, 5, 3, 1, 2, 2, 1)};
  const int saved = ops::threads();
  ops::set_threads(2);
  for (const ops::ConvShape& s : shapes) {
    SCOPED_TRACE(describe(s));
    const ops::ConvShape unpadded =
        ops::make_conv_shape(s.batch, s.in_channels, s.in_h + 2 * s.pad_h, s.in_w + 2 * s.pad_w,
                             s.out_channels, s.kernel_h, s.kernel_w, s.stride_h, s.stride_w, 0, 0);
    ASSERT_EQ(unpadded.out_h, s.out_h);
    ASSERT_EQ(unpadded.out_w, s.out_w);
    const std::vector<float> x = random_vector<float>(rng,
                                                      s.batch * s.in_channels * s.in_h * s.in_w),
                             w = random_vector<float>(
                                 rng, s.out_channels * s.in_channels * s.kernel_h * s.kernel_w),
                             b = random_vector<float>(rng, s.out_channels);
    std::vector<float> x_padded(
        static_cast<size_t>(s.batch * s.in_channels * unpadded.in_h * unpadded.in_w), 0.0f);
    for (int64_t plane = 0; plane < s.batch * s.in_channels; ++plane)
      for (int64_t r = 0; r < s.in_h; ++r)
        for (int64_t col = 0; col < s.in_w; ++col) {
          x_padded[static_cast<size_t>((plane * unpadded.in_h + r + s.pad_h) * unpadded.in_w + col +
                                       s.pad_w)] =
              x[static_cast<size_t>((plane * s.in_h + r) * s.in_w + col)];
        }
    const size_t ny = static_cast<size_t>(s.batch * s.out_channels * s.out_h * s.out_w);
    std::vector<float> y(ny), y_explicit(ny);
    ops::conv2d_forward(y.data(), x.data(), w.data(), b.data(), s);
    ops::conv2d_forward(y_explicit.data(), x_padded.data(), w.data(), b.data(), unpadded);
    EXPECT_TRUE(same_bits(y, y_explicit))
        << ops::conv2d_forward_method(s) << " against " << ops::conv2d_forward_method(unpadded);
    // The weight and bias gradients likewise (the input gradients differ in shape), except by
    // the direct kernels, whose per-lane sums lie over the plane's width: a wider plane sums
    // the same products in another order.
    if (std::string(ops::conv2d_weight_grad_method(s)) == "direct") continue;
    const std::vector<float> dy = random_vector<float>(rng, static_cast<int64_t>(ny));
    std::vector<float> dx(x.size()), dx_explicit(x_padded.size()), dw(w.size(), 0.0f),
        dw_explicit(w.size(), 0.0f), db(b.size(), 0.0f), db_explicit(b.size(), 0.0f);
    ops::conv2d_backward(dx.data(), dw.data(), db.data(), x.data(), w.data(), dy.data(), s);
    ops::conv2d_backward(dx_explicit.data(), dw_explicit.data(), db_explicit.data(),
                         x_padded.data(), w.data(), dy.data(), unpadded);
    EXPECT_TRUE(same_bits(dw, dw_explicit)) << ops::conv2d_weight_grad_method(s) << " against "
                                            << ops::conv2d_weight_grad_method(unpadded);
    EXPECT_TRUE(same_bits(db, db_explicit));
  }
  ops::set_threads(saved);
}

// The implicit GEMM's sums, bit for bit: each output (forward), each weight gradient entry
// (one thread: a chain per block of images, the blocks' chains added in order) and each input
// gradient entry is one chain of fused multiply-adds from +0 over
// the products that read inside the input (dy), in the order of all taps (input channel, kh,
// kw), of all positions (image, oh, ow) or of all taps (output channel, kh, kw), the padding's
// products left out; the bias added after. Pins the order that the
// position and tap classes keep (an order changed consistently for padded and unpadded layers
// would pass the test above). On each instruction set with FMA: the portable kernel's
// a * b + c may not be fused.
TEST(OpsSweep, ImplicitGemmSumsAreFusedChainsOverTheProductsInsideTheInput) {
  std::vector<ops::Isa> fused;
  for (ops::Isa isa : ops::supported_isas())
    if (isa != ops::Isa::kPortable) fused.push_back(isa);
  if (fused.empty()) GTEST_SKIP() << "no AVX2 on this CPU";
  const testing::RestoreOpsSettings restore;
  ops::set_conv_algorithm(ops::ConvAlgorithm::kImplicit);
  Rng rng(59);
  const ops::ConvShape shapes[] = {ops::make_conv_shape(5, 6, 7, 7, 20, 3, 3, 2, 2, 1, 1),
                                   ops::make_conv_shape(13, 5, 7, 6, 18, 3, 3, 1, 1, 1, 1),
                                   ops::make_conv_shape(2, 3, 4, 5, 17, 3, 5, 1, 2, 2, 1),
                                   // Positions that read the padding alone (no tap inside):
                                   // 1x1 at stride 2 with padding 1, and 3x3 with padding 3.
                                   ops::make_conv_shape(3, 4, 5, 6, 9, 1, 1, 2, 2, 1, 1),
                                   ops::make_conv_shape(2, 3, 5, 5, 7, 3, 3, 1, 1, 3, 3)};
  const int saved = ops::threads();
  ops::set_threads(1);
  for (const ops::Isa isa : fused)
    for (const ops::ConvShape& s : shapes) {
      ops::set_isa(isa);
      SCOPED_TRACE(describe(s) + " " + ops::isa_name(isa));
      const int64_t taps = s.in_channels * s.kernel_h * s.kernel_w;
      const std::vector<float> x = random_vector<float>(rng,
                                                        s.batch * s.in_channels * s.in_h * s.in_w),
                               w = random_vector<float>(rng, s.out_channels * taps),
                               b = random_vector<float>(rng, s.out_channels),
                               dy = random_vector<float>(
                                   rng, s.batch * s.out_channels * s.out_h * s.out_w);
      const auto x_at = [&](int64_t n, int64_t ic, int64_t ih, int64_t iw) {
        return x[static_cast<size_t>(((n * s.in_channels + ic) * s.in_h + ih) * s.in_w + iw)];
      };
      const auto inside = [&](int64_t ih, int64_t iw) {
        return ih >= 0 && ih < s.in_h && iw >= 0 && iw < s.in_w;
      };
      std::vector<float> y(dy.size()), y_chain(dy.size());
      ops::conv2d_forward(y.data(), x.data(), w.data(), b.data(), s);
      for (int64_t n = 0; n < s.batch; ++n)
        for (int64_t o = 0; o < s.out_channels; ++o)
          for (int64_t oh = 0; oh < s.out_h; ++oh)
            for (int64_t ow = 0; ow < s.out_w; ++ow) {
              float acc = 0.0f;
              for (int64_t k = 0; k < taps; ++k) {
                const int64_t ic = k / (s.kernel_h * s.kernel_w),
                              kh = k % (s.kernel_h * s.kernel_w) / s.kernel_w, kw = k % s.kernel_w;
                const int64_t ih = oh * s.stride_h - s.pad_h + kh,
                              iw = ow * s.stride_w - s.pad_w + kw;
                if (inside(ih, iw))
                  acc = std::fma(x_at(n, ic, ih, iw), w[static_cast<size_t>(o * taps + k)], acc);
              }
              y_chain[static_cast<size_t>(((n * s.out_channels + o) * s.out_h + oh) * s.out_w +
                                          ow)] = acc + b[static_cast<size_t>(o)];
            }
      EXPECT_TRUE(same_bits(y, y_chain)) << "forward";
      std::vector<float> dx(x.size()), dw(w.size(), 0.0f), db(b.size(), 0.0f), dw_chain(w.size());
      ops::conv2d_backward(dx.data(), dw.data(), db.data(), x.data(), w.data(), dy.data(), s);
      // One chain per block of images (two on one thread: detail::gradient_blocks), the
      // blocks' sums added in order onto dw's zeros.
      const int64_t blocks = std::min<int64_t>(s.batch, 2);
      for (int64_t o = 0; o < s.out_channels; ++o)
        for (int64_t k = 0; k < taps; ++k) {
          const int64_t ic = k / (s.kernel_h * s.kernel_w),
                        kh = k % (s.kernel_h * s.kernel_w) / s.kernel_w, kw = k % s.kernel_w;
          float total = 0.0f;
          for (int64_t block = 0; block < blocks; ++block) {
            float acc = 0.0f;
            for (int64_t n = s.batch * block / blocks; n < s.batch * (block + 1) / blocks; ++n)
              for (int64_t oh = 0; oh < s.out_h; ++oh)
                for (int64_t ow = 0; ow < s.out_w; ++ow) {
                  const int64_t ih = oh * s.stride_h - s.pad_h + kh,
                                iw = ow * s.stride_w - s.pad_w + kw;
                  if (!inside(ih, iw)) continue;
                  acc = std::fma(x_at(n, ic, ih, iw),
                                 dy[static_cast<size_t>(
                                     ((n * s.out_channels + o) * s.out_h + oh) * s.out_w + ow)],
                                 acc);
                }
            total += acc;
          }
          dw_chain[static_cast<size_t>(o * taps + k)] = total;
        }
      EXPECT_TRUE(same_bits(dw, dw_chain)) << "weight gradient";
      // The input gradient: over the taps (oc, kh, kw) in that order whose dy entry
      // (ih + pad - k) / stride is a whole number inside dy.
      std::vector<float> dx_chain(x.size());
      const auto dy_index = [](int64_t i, int64_t pad, int64_t k, int64_t stride, int64_t out) {
        const int64_t shifted = i + pad - k;
        return shifted >= 0 && shifted % stride == 0 && shifted / stride < out ? shifted / stride
                                                                               : int64_t{-1};
      };
      for (int64_t n = 0; n < s.batch; ++n)
        for (int64_t ic = 0; ic < s.in_channels; ++ic)
          for (int64_t ih = 0; ih < s.in_h; ++ih)
            for (int64_t iw = 0; iw < s.in_w; ++iw) {
              float acc = 0.0f;
              for (int64_t o = 0; o < s.out_channels; ++o)
                for (int64_t kh = 0; kh < s.kernel_h; ++kh)
                  for (int64_t kw = 0; kw < s.kernel_w; ++kw) {
                    const int64_t oh = dy_index(ih, s.pad_h, kh, s.stride_h, s.out_h),
                                  ow = dy_index(iw, s.pad_w, kw, s.stride_w, s.out_w);
                    if (oh < 0 || ow < 0) continue;
                    acc = std::fma(
                        dy[static_cast<size_t>(((n * s.out_channels + o) * s.out_h + oh) * s.out_w +
                                               ow)],
                        w[static_cast<size_t>(
                            ((o * s.in_channels + ic) * s.kernel_h + kh) * s.kernel_w + kw)],
                        acc);
                  }
              dx_chain[static_cast<size_t>(((n * s.in_channels + ic) * s.in_h + ih) * s.in_w +
                                           iw)] = acc;
            }
      EXPECT_TRUE(same_bits(dx, dx_chain)) << "input gradient";
    }
  ops::set_threads(saved);
}

template <typename T>
void sweep_pool(uint64_t seed, int cases) {
  Rng rng(seed);
  for (int c = 0; c < cases; ++c) {
    const int64_t kh = 1 + int64_t(rng.below(4)),
                  kw = rng.below(2) ? kh : 1 + int64_t(rng.below(4));
    const int64_t sh = 1 + int64_t(rng.below(3)),
                  sw = rng.below(2) ? sh : 1 + int64_t(rng.below(3));
    const int64_t ph = int64_t(rng.below(uint64_t(kh / 2 + 1))),
                  pw = int64_t(rng.below(uint64_t(kw / 2 + 1)));
    const int64_t h = std::max<int64_t>(kh, 1 + int64_t(rng.below(12)));
    const int64_t w = std::max<int64_t>(kw, 1 + int64_t(rng.below(12)));
    const ops::PoolShape s = ops::make_pool_shape(
        1 + int64_t(rng.below(3)), 1 + int64_t(rng.below(9)), h, w, kh, kw, sh, sw, ph, pw);
    const int64_t nx = s.batch * s.channels * s.in_h * s.in_w;
    const int64_t ny = s.batch * s.channels * s.out_h * s.out_w;
    const auto x = random_vector<T>(rng, nx, c % 2 == 0);
    auto dy = random_vector<T>(rng, ny);
    for (T& v : dy) {  // the scatter's 0 + dy turns -0 into +0
      if (rng.below(8) == 0) v = rng.below(2) ? -T(0) : T(NAN);
    }
    std::vector<T> y_fast(ny, NAN), y_ref(ny, NAN);
    std::vector<int32_t> arg_fast(ny, -7), arg_ref(ny, -7);
    ops::maxpool2d_forward(y_fast.data(), arg_fast.data(), x.data(), s);
    ref::maxpool2d_forward(y_ref.data(), arg_ref.data(), x.data(), s);
    ASSERT_EQ(y_fast, y_ref) << describe(s);
    ASSERT_EQ(arg_fast, arg_ref) << "tie rule differs: " << describe(s);
    std::vector<T> y_alone(ny, NAN);  // without the argmax (an evaluation forward)
    ops::maxpool2d_forward(y_alone.data(), static_cast<int32_t*>(nullptr), x.data(), s);
    ASSERT_TRUE(same_bits(y_alone, y_fast)) << "without the argmax: " << describe(s);
    std::vector<T> dx_fast(nx, NAN), dx_ref(nx, NAN);
    ops::maxpool2d_backward(dx_fast.data(), dy.data(), arg_fast.data(), s);
    ref::maxpool2d_backward(dx_ref.data(), dy.data(), arg_ref.data(), s);
    ASSERT_TRUE(same_bits(dx_fast, dx_ref)) << describe(s);
  }
}

/// Average pooling's default path (the window kernels for 2x2 and 3x3 windows at stride 1 or 2,
/// else the reference per block of planes, threads over the blocks; global pooling in partial
/// sums) against the reference, 1 and 2 threads, odd shapes; large batches so that the planes do
/// split.
template <typename T>
void sweep_avgpool(uint64_t seed, int cases) {
  Rng rng(seed);
  const int saved = ops::threads();
  for (int c = 0; c < cases; ++c) {
    ops::set_threads(1 + c % 2);
    const int64_t kh = 1 + int64_t(rng.below(4)),
                  kw = rng.below(2) ? kh : 1 + int64_t(rng.below(4));
    const int64_t sh = 1 + int64_t(rng.below(3)), sw = 1 + int64_t(rng.below(3));
    const int64_t ph = int64_t(rng.below(uint64_t(kh / 2 + 1))),
                  pw = int64_t(rng.below(uint64_t(kw / 2 + 1)));
    const int64_t h = std::max<int64_t>(kh, 1 + int64_t(rng.below(30)));
    const int64_t w = std::max<int64_t>(kw, 1 + int64_t(rng.below(30)));
    const ops::PoolShape s = ops::make_pool_shape(
        1 + int64_t(rng.below(9)), 1 + int64_t(rng.below(33)), h, w, kh, kw, sh, sw, ph, pw);
    const bool count_include_pad = rng.below(2) == 1;
    const int64_t nx = s.batch * s.channels * s.in_h * s.in_w;
    const int64_t ny = s.batch * s.channels * s.out_h * s.out_w;
    const auto x = random_vector<T>(rng, nx), dy = random_vector<T>(rng, ny);
    const std::string what = describe(s) + (count_include_pad ? " count_include_pad" : "") + ", " +
                             std::to_string(ops::threads()) + " threads";
    std::vector<T> y_fast(ny, NAN), y_ref(ny, NAN), dx_fast(nx, NAN), dx_ref(nx, NAN);
    ops::avgpool2d_forward(y_fast.data(), x.data(), s, count_include_pad);
    ref::avgpool2d_forward(y_ref.data(), x.data(), s, count_include_pad);
    ASSERT_TRUE(same_bits(y_fast, y_ref)) << what;
    ops::avgpool2d_backward(dx_fast.data(), dy.data(), s, count_include_pad);
    ref::avgpool2d_backward(dx_ref.data(), dy.data(), s, count_include_pad);
    ASSERT_TRUE(same_bits(dx_fast, dx_ref)) << what;
    // Global average pooling of the same input, planes = N * C.
    const int64_t planes = s.batch * s.channels, size = s.in_h * s.in_w;
    std::vector<T> g_fast(planes, NAN), g_ref(planes, NAN), dg_fast(nx, NAN), dg_ref(nx, NAN);
    ops::global_avgpool_forward(g_fast.data(), x.data(), planes, size);
    ref::global_avgpool_forward(g_ref.data(), x.data(), planes, size);
    ASSERT_LE(max_difference(g_fast, g_ref), tolerance<T>()) << what;
    const auto dg = random_vector<T>(rng, planes);
    ops::global_avgpool_backward(dg_fast.data(), dg.data(), planes, size);
    ref::global_avgpool_backward(dg_ref.data(), dg.data(), planes, size);
    ASSERT_TRUE(same_bits(dg_fast, dg_ref)) << what;
  }
  ops::set_threads(saved);
}

TEST_P(OpsSweepIsa, AvgPool2dFloat) {
  sweep_avgpool<float>(13, 150);
}

/// Whether a and b hold the same bits, or NaNs both, element by element: which NaN a sum of a
/// NaN and another NaN (or an inf - inf) gives is the compiler's choice of operand order, in
/// the reference too (x86 returns the first operand's).
bool same_bits_or_nans(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::isnan(a[i]) && std::isnan(b[i])) continue;
    if (std::memcmp(&a[i], &b[i], sizeof(float)) != 0) return false;
  }
  return true;
}

/// Average pooling's window kernels (avgpool_lanes.hpp: 2x2 and 3x3 windows at stride 1 or 2,
/// padding up to half the kernel) against the reference, bit for bit, on every window, stride,
/// padding and divisor rule they take: rows of 1 to 40 windows (4, 8 and 16 a vector on the
/// three instruction sets, and every tail), planes down to 1x1, 1 and 2 threads with batches
/// that split; inputs and gradients with zeros of both signs (a window of -0 averages to +0, a
/// -0 gradient routes +0), infinities and NaNs.
TEST_P(OpsSweepIsa, AvgPool2dWindowKernelsGiveTheReferenceBits) {
  const testing::RestoreOpsSettings restore;
  Rng rng(17);
  const float specials[] = {-0.0f, -0.0f, -0.0f, -0.0f, 0.0f, INFINITY, -INFINITY, NAN};
  const auto fill = [&](std::vector<float>& v, int mode) {
    for (float& e : v) {
      if (mode == 0) {
        e = float(rng.normal());
      } else if (mode == 1) {  // mostly -0, some infinities and NaNs
        e = rng.below(4) == 0 ? float(rng.normal()) : specials[rng.below(8)];
      } else {
        e = float(rng.below(4)) - 1.5f;
      }
    }
  };
  int c = 0;
  for (int64_t k : {2, 3})
    for (int64_t stride : {1, 2})
      for (int64_t pad_h = 0; 2 * pad_h <= k; ++pad_h)
        for (int64_t pad_w = 0; 2 * pad_w <= k; ++pad_w)
          for (bool count_include_pad : {false, true})
            for (int rep = 0; rep < 12; ++rep, ++c) {
              ops::set_threads(1 + c % 2);
              // Rep 0 a 1x1 plane where the padding allows one, else the smallest; then up to
              // 40 windows a row (stride 2: inputs up to 80 + k wide).
              const int64_t min_h = std::max<int64_t>(1, k - 2 * pad_h),
                            min_w = std::max<int64_t>(1, k - 2 * pad_w);
              const int64_t h = rep == 0 ? min_h : min_h + int64_t(rng.below(9));
              const int64_t w =
                  rep == 0 ? min_w : min_w + int64_t(rng.below(uint64_t(40 * stride)));
              // Every fourth case a batch whose planes split over two threads.
              const int64_t batch = rep % 4 == 3 ? 64 : 1 + int64_t(rng.below(3));
              const ops::PoolShape s = ops::make_pool_shape(batch, 1 + int64_t(rng.below(5)), h, w,
                                                            k, k, stride, stride, pad_h, pad_w);
              const int64_t nx = s.batch * s.channels * s.in_h * s.in_w;
              const int64_t ny = s.batch * s.channels * s.out_h * s.out_w;
              std::vector<float> x(nx), dy(ny);
              fill(x, rep % 3);
              fill(dy, (rep + 1) % 3);
              const std::string what = describe(s) +
                                       (count_include_pad ? " count_include_pad" : "") + ", " +
                                       std::to_string(ops::threads()) + " threads";
              std::vector<float> y_fast(ny, NAN), y_ref(ny, NAN), dx_fast(nx, NAN), dx_ref(nx, NAN);
              ops::avgpool2d_forward(y_fast.data(), x.data(), s, count_include_pad);
              ref::avgpool2d_forward(y_ref.data(), x.data(), s, count_include_pad);
              ASSERT_TRUE(same_bits_or_nans(y_fast, y_ref)) << "forward " << what;
              ops::avgpool2d_backward(dx_fast.data(), dy.data(), s, count_include_pad);
              ref::avgpool2d_backward(dx_ref.data(), dy.data(), s, count_include_pad);
              ASSERT_TRUE(same_bits_or_nans(dx_fast, dx_ref)) << "backward " << what;
            }
}
TEST(OpsSweep, AvgPool2dDouble) {
  sweep_avgpool<double>(14, 60);
}

TEST_P(OpsSweepIsa, MaxPool2dFloat) {
  sweep_pool<float>(3, 300);
}

/// The fused ReLU + max pooling against relu_forward then maxpool2d_forward (and the backward
/// pair), bit for bit on the same path, on inputs full of ties, zeros of both signs and NaNs:
/// the cases where pooling before the ReLU would choose differently.
template <typename T>
void sweep_relu_pool(uint64_t seed, int cases) {
  Rng rng(seed);
  const T specials[] = {T(0), -T(0), T(NAN), T(-1), T(1), T(-2)};
  for (int c = 0; c < cases; ++c) {
    const bool two_by_two = c % 2 == 0;  // the 2x2 / stride 2 fast path, else any window
    const int64_t kh = two_by_two ? 2 : 1 + int64_t(rng.below(4)), kw = two_by_two ? 2 : kh;
    const int64_t stride = two_by_two ? 2 : 1 + int64_t(rng.below(3));
    const int64_t pad = two_by_two ? 0 : int64_t(rng.below(uint64_t(kh / 2 + 1)));
    // 2x2 rows up to 20 windows: the 4- and 8-window vector steps and their tails.
    const int64_t h = kh + int64_t(rng.below(12)),
                  w = kw + int64_t(rng.below(two_by_two ? 40 : 12));
    const ops::PoolShape s =
        ops::make_pool_shape(1 + int64_t(rng.below(3)), 1 + int64_t(rng.below(5)), h, w, kh, kw,
                             stride, stride, pad, pad);
    const int64_t nx = s.batch * s.channels * s.in_h * s.in_w;
    const int64_t ny = s.batch * s.channels * s.out_h * s.out_w;
    std::vector<T> x = random_vector<T>(rng, nx);
    for (T& v : x) {
      if (rng.below(3) == 0) v = specials[rng.below(6)];
    }
    const auto dy = random_vector<T>(rng, ny);
    std::vector<T> relu(nx), y_pair(ny), y_fused(ny);
    std::vector<int32_t> arg_pair(ny), arg_fused(ny);
    ops::relu_forward(relu.data(), x.data(), nx);
    ops::maxpool2d_forward(y_pair.data(), arg_pair.data(), relu.data(), s);
    ops::relu_maxpool2d_forward(y_fused.data(), arg_fused.data(), x.data(), s);
    ASSERT_TRUE(same_bits(y_fused, y_pair)) << describe(s);
    ASSERT_EQ(arg_fused, arg_pair) << describe(s);
    // Without the argmax (an evaluation forward), on this path (the reference too).
    std::vector<T> y_pair_alone(ny), y_fused_alone(ny);
    ops::maxpool2d_forward(y_pair_alone.data(), static_cast<int32_t*>(nullptr), relu.data(), s);
    ops::relu_maxpool2d_forward(y_fused_alone.data(), static_cast<int32_t*>(nullptr), x.data(), s);
    ASSERT_TRUE(same_bits(y_pair_alone, y_pair)) << "without the argmax: " << describe(s);
    ASSERT_TRUE(same_bits(y_fused_alone, y_pair)) << "fused, without the argmax: " << describe(s);
    std::vector<T> dx_pair(nx), dx_fused(nx);
    ops::maxpool2d_backward(dx_pair.data(), dy.data(), arg_pair.data(), s);
    ops::relu_backward(dx_pair.data(), x.data(), dx_pair.data(), nx);
    ops::relu_maxpool2d_backward(dx_fused.data(), dy.data(), x.data(), arg_fused.data(), s);
    ASSERT_TRUE(same_bits(dx_fused, dx_pair)) << describe(s);
  }
}

TEST_P(OpsSweepIsa, MaxPool2x2Stride2TiesAndNaNsMatchTheReference) {
  // The 2x2 / stride 2 fast path, forward and backward, with few distinct values (ties), some
  // NaNs and negative zeros.
  Rng rng(11);
  // Widths around the 4- and 8-window vector steps (SSE2; AVX2 on the avx2 and avx512 paths).
  for (int64_t w : {2, 3, 7, 8, 9, 10, 16, 17, 18, 24, 28, 30, 33, 40}) {
    const ops::PoolShape s = ops::make_pool_shape(2, 3, 6, w, 2, 2, 2, 2, 0, 0);
    const int64_t nx = 2 * 3 * 6 * w, ny = 2 * 3 * s.out_h * s.out_w;
    std::vector<float> x = random_vector<float>(rng, nx, true);
    for (int64_t i = 0; i < nx; i += 7) x[static_cast<size_t>(i)] = NAN;
    std::vector<float> y_fast(ny), y_ref(ny);
    std::vector<int32_t> a_fast(ny), a_ref(ny);
    ops::maxpool2d_forward(y_fast.data(), a_fast.data(), x.data(), s);
    ref::maxpool2d_forward(y_ref.data(), a_ref.data(), x.data(), s);
    EXPECT_EQ(a_fast, a_ref) << "width " << w;
    std::vector<float> y_alone(ny);  // without the argmax: the same choices
    ops::maxpool2d_forward(y_alone.data(), static_cast<int32_t*>(nullptr), x.data(), s);
    EXPECT_TRUE(same_bits(y_alone, y_fast)) << "width " << w;
    for (int64_t i = 0; i < ny; ++i) {
      const float f = y_fast[static_cast<size_t>(i)], r = y_ref[static_cast<size_t>(i)];
      EXPECT_TRUE(f == r || (std::isnan(f) && std::isnan(r))) << "width " << w << " output " << i;
    }
    std::vector<float> dy = random_vector<float>(rng, ny);
    for (int64_t i = 0; i < ny; i += 5) dy[static_cast<size_t>(i)] = -0.0f;
    std::vector<float> dx_fast(nx, NAN), dx_ref(nx, NAN);
    ops::maxpool2d_backward(dx_fast.data(), dy.data(), a_ref.data(), s);
    ref::maxpool2d_backward(dx_ref.data(), dy.data(), a_ref.data(), s);
    EXPECT_TRUE(same_bits(dx_fast, dx_ref)) << "width " << w;
  }
}
TEST(OpsSweep, MaxPool2dDouble) {
  sweep_pool<double>(4, 100);
}

// 3x3 windows at stride 1 or 2 (the pooling of residual networks' stems; once a path of their
// own, now the plane kernels' of MaxPoolWindowsTiesNaNsAndZerosMatchTheReference below, on the
// default instruction set): against the reference, alone and fused with the ReLU (against
// relu_forward then the reference), on inputs of few distinct values (ties), NaNs and zeros of
// both signs, widths 3 to 22, with and without padding, over 1 and 2 threads.
TEST(OpsSweep, MaxPool3x3TiesNaNsAndZerosMatchTheReference) {
  const testing::RestoreOpsSettings restore;
  Rng rng(13);
  const float specials[] = {0.0f, -0.0f, NAN, -1.0f, 1.0f, 2.0f};
  for (const int64_t stride : {1, 2})
    for (const int64_t pad : {0, 1})
      for (int64_t w = 3; w <= 22; ++w) {
        ops::set_threads(1 + int(w % 2));
        const ops::PoolShape s = ops::make_pool_shape(2, 3, 7, w, 3, 3, stride, stride, pad, pad);
        const int64_t nx = 2 * 3 * 7 * w, ny = 2 * 3 * s.out_h * s.out_w;
        std::vector<float> x = random_vector<float>(rng, nx, true);
        for (float& v : x) {
          if (rng.below(3) == 0) v = specials[rng.below(6)];
        }
        std::vector<float> relu(nx);
        ref::relu_forward(relu.data(), x.data(), nx);
        const std::string what = "stride " + std::to_string(stride) + " pad " +
                                 std::to_string(pad) + " width " + std::to_string(w);
        for (const bool fused : {false, true}) {
          std::vector<float> y_fast(ny, 7.0f), y_ref(ny, 8.0f), y_alone(ny, 9.0f);
          std::vector<int32_t> a_fast(ny, -7), a_ref(ny, -8);
          if (fused) {
            ops::relu_maxpool2d_forward(y_fast.data(), a_fast.data(), x.data(), s);
            ops::relu_maxpool2d_forward(y_alone.data(), static_cast<int32_t*>(nullptr), x.data(),
                                        s);
          } else {
            ops::maxpool2d_forward(y_fast.data(), a_fast.data(), x.data(), s);
            ops::maxpool2d_forward(y_alone.data(), static_cast<int32_t*>(nullptr), x.data(), s);
          }
          ref::maxpool2d_forward(y_ref.data(), a_ref.data(), fused ? relu.data() : x.data(), s);
          ASSERT_EQ(a_fast, a_ref) << what << (fused ? ", after the ReLU" : "");
          ASSERT_TRUE(same_bits(y_fast, y_ref)) << what << (fused ? ", after the ReLU" : "");
          ASSERT_TRUE(same_bits(y_alone, y_ref)) << what << " without the argmax";
        }
      }
}

// Every float window but 2x2 / stride 2 without padding runs the plane kernels
// (maxpool_lanes.hpp: 4 planes a vector on the portable path, 8 with AVX2 and AVX-512): against
// the reference, alone and fused with the ReLU (against relu_forward then the reference), with
// and without the argmax, on inputs of few distinct values (ties), NaNs, infinities and zeros of
// both signs. Kernels 1 to 5 along each axis (square and not), strides 1 to 4 along each axis
// (above the kernel too: skipped input), any legal padding per axis; plane counts around the
// groups (1, one short of a group, one over, partial last groups) and plane sizes around the
// transposes' blocks, rows of up to 80 columns (the row kernel's blocks of windows at stride 4);
// 1 and 2 threads.
TEST_P(OpsSweepIsa, MaxPoolWindowsTiesNaNsAndZerosMatchTheReference) {
  const testing::RestoreOpsSettings restore;
  Rng rng(19);
  const float specials[] = {0.0f, -0.0f, NAN, -NAN, INFINITY, -INFINITY, -1.0f, 1.0f, 2.0f};
  // Groups of fewer than MaxPoolKernels::row_planes planes (1 and 2 on AVX2, 1 on SSE2: alone,
  // or the last group of 9, 10 or 17) run the row kernel plane by plane instead.
  const int64_t plane_counts[] = {1, 2, 3, 4, 5, 7, 8, 9, 10, 13, 17};
  for (int c = 0; c < 264; ++c) {
    const int64_t kh = 1 + int64_t(rng.below(5)), kw = c % 3 == 0 ? kh : 1 + int64_t(rng.below(5));
    const int64_t sh = 1 + int64_t(rng.below(4)), sw = c % 4 == 0 ? sh : 1 + int64_t(rng.below(4));
    const int64_t ph = int64_t(rng.below(uint64_t(kh / 2 + 1))),
                  pw = int64_t(rng.below(uint64_t(kw / 2 + 1)));
    const int64_t h = std::max<int64_t>(1, kh - 2 * ph) + int64_t(rng.below(11)),
                  w = std::max<int64_t>(1, kw - 2 * pw) + int64_t(rng.below(c % 5 == 0 ? 72 : 11));
    const int64_t planes = plane_counts[c % 11];
    const int64_t batch = c % 2 == 0 ? 1 : planes, channels = planes / batch;
    const ops::PoolShape s = ops::make_pool_shape(batch, channels, h, w, kh, kw, sh, sw, ph, pw);
    if (kh == 2 && kw == 2 && sh == 2 && sw == 2 && ph == 0 && pw == 0) continue;  // its own path
    ops::set_threads(1 + c % 2);
    const int64_t nx = planes * h * w, ny = planes * s.out_h * s.out_w;
    std::vector<float> x = random_vector<float>(rng, nx, true);
    for (float& v : x) {
      if (rng.below(4) == 0) v = specials[rng.below(9)];
    }
    std::vector<float> relu(nx);
    ref::relu_forward(relu.data(), x.data(), nx);
    for (const bool fused : {false, true}) {
      const std::string what = describe(s) + (fused ? " after the ReLU, " : ", ") +
                               std::to_string(ops::threads()) + " threads";
      std::vector<float> y_fast(ny, 7.0f), y_ref(ny, 8.0f), y_alone(ny, 9.0f);
      std::vector<int32_t> a_fast(ny, -7), a_ref(ny, -8);
      if (fused) {
        ops::relu_maxpool2d_forward(y_fast.data(), a_fast.data(), x.data(), s);
        ops::relu_maxpool2d_forward(y_alone.data(), static_cast<int32_t*>(nullptr), x.data(), s);
      } else {
        ops::maxpool2d_forward(y_fast.data(), a_fast.data(), x.data(), s);
        ops::maxpool2d_forward(y_alone.data(), static_cast<int32_t*>(nullptr), x.data(), s);
      }
      ref::maxpool2d_forward(y_ref.data(), a_ref.data(), fused ? relu.data() : x.data(), s);
      ASSERT_EQ(a_fast, a_ref) << what;
      ASSERT_TRUE(same_bits(y_fast, y_ref)) << what;
      ASSERT_TRUE(same_bits(y_alone, y_ref)) << what << " without the argmax";
    }
  }
}

// The backward of every float window but 2x2 / stride 2 (pool.cpp, maxpool_scatter) against
// the reference's scatter, bit for bit, alone and fused with the ReLU (against the scatter then
// relu_backward), on inputs of few distinct values, so that one element is chosen by many
// overlapping windows: sums of three and more dy, whose rounding depends on the order of the
// additions, and NaNs meeting NaNs (-NaN from inf - inf, then a +NaN dy: x86 keeps the first
// operand's, so the operands' order matters too; a gather of each element's windows with the
// operands swapped by the compiler failed here). dy with zeros of both signs, NaNs and
// infinities; kernels 1 to 5 along each axis, strides 1 to 3 (mostly 1: the overlapping
// windows), any legal padding, widths to 40; 1 to 5 planes, 1 and 2 threads.
TEST_P(OpsSweepIsa, MaxPoolBackwardMatchesTheReferenceScatter) {
  const testing::RestoreOpsSettings restore;
  Rng rng(23);
  const float dy_specials[] = {0.0f, -0.0f, NAN, INFINITY, -INFINITY};
  for (int c = 0; c < 200; ++c) {
    const int64_t kh = 1 + int64_t(rng.below(5)), kw = c % 3 == 0 ? kh : 1 + int64_t(rng.below(5));
    const int64_t ph = int64_t(rng.below(uint64_t(kh / 2 + 1))),
                  pw = int64_t(rng.below(uint64_t(kw / 2 + 1)));
    const int64_t h = std::max<int64_t>(1, kh - 2 * ph) + int64_t(rng.below(9)),
                  w = std::max<int64_t>(1, kw - 2 * pw) + int64_t(rng.below(c % 2 == 0 ? 36 : 12));
    const int64_t planes = 1 + int64_t(rng.below(5));
    const int64_t sh = c % 4 == 3 ? 1 + int64_t(rng.below(3)) : 1,
                  sw = c % 4 == 3 ? 1 + int64_t(rng.below(3)) : 1;
    const ops::PoolShape s = ops::make_pool_shape(1, planes, h, w, kh, kw, sh, sw, ph, pw);
    if (kh == 2 && kw == 2 && sh == 2 && sw == 2 && ph == 0 && pw == 0) continue;  // its own path
    ops::set_threads(1 + c % 2);
    const int64_t nx = planes * h * w, ny = planes * s.out_h * s.out_w;
    std::vector<float> x(nx);
    for (float& v : x) v = float(int(rng.below(5)) - 2);  // ties: runs of windows on one element
    std::vector<float> dy = random_vector<float>(rng, ny);
    for (float& v : dy) {
      if (rng.below(6) == 0) v = dy_specials[rng.below(5)];
    }
    std::vector<float> relu(nx);
    ref::relu_forward(relu.data(), x.data(), nx);
    std::vector<float> y(ny);
    std::vector<int32_t> a(ny), a_relu(ny);
    ref::maxpool2d_forward(y.data(), a.data(), x.data(), s);
    ref::maxpool2d_forward(y.data(), a_relu.data(), relu.data(), s);
    const std::string what = describe(s) + ", " + std::to_string(ops::threads()) + " threads";
    std::vector<float> dx_fast(nx, 7.0f), dx_ref(nx, 8.0f);
    ops::maxpool2d_backward(dx_fast.data(), dy.data(), a.data(), s);
    ref::maxpool2d_backward(dx_ref.data(), dy.data(), a.data(), s);
    ASSERT_TRUE(same_bits(dx_fast, dx_ref)) << what;
    std::vector<float> dx_fused(nx, 7.0f), dx_pair(nx, 8.0f);
    ops::relu_maxpool2d_backward(dx_fused.data(), dy.data(), x.data(), a_relu.data(), s);
    ref::maxpool2d_backward(dx_pair.data(), dy.data(), a_relu.data(), s);
    ref::relu_backward(dx_pair.data(), x.data(), dx_pair.data(), nx);
    ASSERT_TRUE(same_bits(dx_fused, dx_pair)) << what << " after the ReLU";
  }
}

/// Dropout's default path (one pass, the reference's comparison as an integer threshold, no
/// branch) against the reference, bit for bit: the masks, the products (x with NaNs, infinities
/// and zeros of both signs, whose products with a dropped element's +0 are NaN or -0) and the
/// Rng's state after; odd sizes, y in place of x, and values of p at, just below and just above
/// the stream's own first draws, where the threshold's rounding would show.
template <typename T>
void sweep_dropout() {
  constexpr uint64_t kSeed = 17;
  std::vector<double> ps = {0.5, 0.1, 0.9, 0.0, 1e-300, 0x1p-53, 1 - 0x1p-53, 1.0 / 3};
  // Draws below 1/2 as well as above: there p 2^53 need not be an integer next to a draw (the
  // ulp of p is below 2^-53), so the threshold's rounding is tested, not only its comparison.
  Rng probe(kSeed);
  int low = 0, high = 0;
  for (int j = 0; j < 64; ++j) {
    const double u = probe.uniform();  // element j's draw: dropped where u < p
    if (u < 0.5 ? low++ >= 4 : high++ >= 2) continue;
    ps.insert(ps.end(), {u, std::nextafter(u, 0.0), std::nextafter(u, 1.0)});
  }
  EXPECT_EQ(low + high, 64);
  EXPECT_GE(std::min(low, high), 4);
  Rng data(3);
  const T specials[] = {T(0), -T(0), T(NAN), T(INFINITY), -T(INFINITY)};
  for (const double p : ps)
    for (const int64_t n : {1, 2, 5, 6, 17, 64, 67, 1001}) {
      std::vector<T> x = random_vector<T>(data, n);
      for (T& v : x) {
        if (data.below(4) == 0) v = specials[data.below(5)];
      }
      const std::string what = "p " + std::to_string(p) + " (" + std::to_string(p * 0x1p53) +
                               " 2^-53), n " + std::to_string(n);
      Rng fast_rng(kSeed), ref_rng(kSeed);
      std::vector<T> y_fast(n, T(7)), y_ref(n, T(8)), m_fast(n, T(7)), m_ref(n, T(8));
      ops::dropout_forward(y_fast.data(), m_fast.data(), x.data(), n, p, fast_rng);
      ref::dropout_forward(y_ref.data(), m_ref.data(), x.data(), n, p, ref_rng);
      ASSERT_TRUE(same_bits(m_fast, m_ref)) << "mask, " << what;
      ASSERT_TRUE(same_bits(y_fast, y_ref)) << "y, " << what;
      ASSERT_EQ(fast_rng.state().words, ref_rng.state().words) << what;
      std::vector<T> in_place = x;  // y = x
      Rng in_place_rng(kSeed);
      ops::dropout_forward(in_place.data(), m_fast.data(), in_place.data(), n, p, in_place_rng);
      ASSERT_TRUE(same_bits(in_place, y_ref)) << "in place, " << what;
      std::vector<T> dx_fast(n, T(7)), dx_ref(n, T(8));
      ops::dropout_apply(dx_fast.data(), x.data(), m_ref.data(), n);
      ref::dropout_apply(dx_ref.data(), x.data(), m_ref.data(), n);
      ASSERT_TRUE(same_bits(dx_fast, dx_ref)) << "apply, " << what;
    }
}
TEST(OpsSweep, DropoutMasksMatchTheReference) {
  sweep_dropout<float>();
  sweep_dropout<double>();
}

template <typename T>
void sweep_dense(uint64_t seed, int cases) {
  Rng rng(seed);
  for (int c = 0; c < cases; ++c) {
    // Batches up to 8 take the matrix-vector path, larger ones the GEMM: both are swept.
    const ops::DenseShape s{1 + int64_t(rng.below(20)), 1 + int64_t(rng.below(70)),
                            1 + int64_t(rng.below(40))};
    const bool bias = rng.below(4) != 0;
    const auto x = random_vector<T>(rng, s.batch * s.in_features),
               w = random_vector<T>(rng, s.out_features * s.in_features),
               b = random_vector<T>(rng, s.out_features),
               dy = random_vector<T>(rng, s.batch * s.out_features);
    const std::string what = "DenseShape{batch=" + std::to_string(s.batch) +
                             " in=" + std::to_string(s.in_features) +
                             " out=" + std::to_string(s.out_features) + "}";
    std::vector<T> y_fast(s.batch * s.out_features, NAN), y_ref(y_fast.size(), NAN);
    ops::dense_forward(y_fast.data(), x.data(), w.data(), bias ? b.data() : nullptr, s);
    ref::dense_forward(y_ref.data(), x.data(), w.data(), bias ? b.data() : nullptr, s);
    ASSERT_LE(max_difference(y_fast, y_ref), tolerance<T>()) << what;
    std::vector<T> dx_fast(x.size(), NAN), dx_ref(x.size(), NAN), dw_fast(w.size(), T(1)),
        dw_ref(w.size(), T(1)), db_fast(b.size(), T(2)), db_ref(b.size(), T(2));
    ops::dense_backward(dx_fast.data(), dw_fast.data(), bias ? db_fast.data() : nullptr, x.data(),
                        w.data(), dy.data(), s);
    ref::dense_backward(dx_ref.data(), dw_ref.data(), bias ? db_ref.data() : nullptr, x.data(),
                        w.data(), dy.data(), s);
    ASSERT_LE(max_difference(dx_fast, dx_ref), tolerance<T>()) << what;
    ASSERT_LE(max_difference(dw_fast, dw_ref), tolerance<T>()) << what;
    ASSERT_LE(max_difference(db_fast, db_ref), tolerance<T>()) << what;
  }
}

TEST_P(OpsSweepIsa, DenseFloat) {
  sweep_dense<float>(5, 200);
}
TEST(OpsSweep, DenseDouble) {
  sweep_dense<double>(6, 100);
}

// Independent computations for the element-wise ops, softmax and the losses: the formulas of
// ops.hpp in long double, written here and not taken from cnn::ref. Of these ops ReLU,
// LeakyReLU and ReLU6 (their own loops), tanh and the sigmoid in float (their own formulas) and
// softmax's backward (the O(C) form y (dy - sum(y dy)) against the reference's explicit
// Jacobian) have a default path other than the reference; the double tanh and sigmoid,
// softmax's forward and every loss run the reference itself (in chunks over the threads where
// element-wise). Comparing those with cnn::ref would compare the code with itself, so every op
// is held against these; the ReLUs and softmax's backward against cnn::ref as well.
namespace independent {

using Real = long double;

template <typename T>
std::vector<Real> relu(const std::vector<T>& x) {
  std::vector<Real> y(x.size());
  for (size_t k = 0; k < x.size(); ++k) y[k] = x[k] < 0 ? 0 : Real(x[k]);
  return y;
}
template <typename T>
std::vector<Real> relu_backward(const std::vector<T>& x, const std::vector<T>& dy) {
  std::vector<Real> dx(x.size());  // the seed's derivative: 1 at x = 0
  for (size_t k = 0; k < x.size(); ++k) dx[k] = x[k] >= 0 ? Real(dy[k]) : 0;
  return dx;
}
template <typename T>
std::vector<Real> leaky_relu(const std::vector<T>& x, T slope) {
  std::vector<Real> y(x.size());
  for (size_t k = 0; k < x.size(); ++k) y[k] = x[k] > 0 ? Real(x[k]) : Real(x[k] * slope);
  return y;
}
template <typename T>
std::vector<Real> leaky_relu_backward(const std::vector<T>& x, const std::vector<T>& dy, T slope) {
  std::vector<Real> dx(x.size());  // PyTorch's derivative: the slope at x = 0
  for (size_t k = 0; k < x.size(); ++k) dx[k] = x[k] > 0 ? Real(dy[k]) : Real(dy[k] * slope);
  return dx;
}
template <typename T>
std::vector<Real> relu6(const std::vector<T>& x) {
  std::vector<Real> y(x.size());
  for (size_t k = 0; k < x.size(); ++k) y[k] = std::min(std::max(Real(x[k]), Real(0)), Real(6));
  return y;
}
template <typename T>
std::vector<Real> relu6_backward(const std::vector<T>& x, const std::vector<T>& dy) {
  std::vector<Real> dx(x.size());  // PyTorch's derivative: 0 at x = 0 and at x = 6
  for (size_t k = 0; k < x.size(); ++k) dx[k] = x[k] > 0 && x[k] < 6 ? Real(dy[k]) : 0;
  return dx;
}
template <typename T>
std::vector<Real> tanh(const std::vector<T>& x) {
  std::vector<Real> y(x.size());
  for (size_t k = 0; k < x.size(); ++k) {
    const Real e = std::exp(Real(2) * Real(x[k]));  // (e^2x - 1) / (e^2x + 1)
    y[k] = std::isinf(e) ? 1 : (e - 1) / (e + 1);
  }
  return y;
}
template <typename T>
std::vector<Real> sigmoid(const std::vector<T>& x) {
  std::vector<Real> y(x.size());
  for (size_t k = 0; k < x.size(); ++k) y[k] = 1 / (1 + std::exp(-Real(x[k])));
  return y;
}
/// dy * f'(x) given f's output y: 1 - y^2 (tanh) or y (1 - y) (sigmoid).
template <typename T>
std::vector<Real> times_derivative(const std::vector<T>& y, const std::vector<T>& dy, bool tanh) {
  std::vector<Real> dx(y.size());
  for (size_t k = 0; k < y.size(); ++k) {
    const Real v = y[k];
    dx[k] = Real(dy[k]) * (tanh ? 1 - v * v : v * (1 - v));
  }
  return dx;
}
/// softmax over axis 1 of (outer, channels, inner): exp(x) / sum exp(x), no shift needed in
/// long double for these inputs.
template <typename T>
std::vector<Real> softmax(const std::vector<T>& x, int64_t outer, int64_t channels, int64_t inner) {
  std::vector<Real> y(x.size());
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t r = 0; r < inner; ++r) {
      Real sum = 0;
      for (int64_t c = 0; c < channels; ++c)
        sum += std::exp(Real(x[(o * channels + c) * inner + r]));
      for (int64_t c = 0; c < channels; ++c) {
        const int64_t at = (o * channels + c) * inner + r;
        y[at] = std::exp(Real(x[at])) / sum;
      }
    }
  return y;
}
/// J^T dy with the softmax Jacobian J_ij = y_i (delta_ij - y_j), summed entry by entry.
template <typename T>
std::vector<Real> softmax_backward(const std::vector<T>& y, const std::vector<T>& dy, int64_t outer,
                                   int64_t channels, int64_t inner) {
  std::vector<Real> dx(y.size());
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t r = 0; r < inner; ++r)
      for (int64_t j = 0; j < channels; ++j) {
        const int64_t at_j = (o * channels + j) * inner + r;
        Real sum = 0;
        for (int64_t i = 0; i < channels; ++i) {
          const int64_t at_i = (o * channels + i) * inner + r;
          sum += Real(y[at_i]) * ((i == j ? 1 : 0) - Real(y[at_j])) * Real(dy[at_i]);
        }
        dx[at_j] = sum;
      }
  return dx;
}
/// The seed's log loss, p clamped to [eps, 1 - eps] (the bounds as T rounds them), and its
/// gradient.
template <typename T>
Real log_loss(const std::vector<T>& p, const std::vector<T>& t, T eps, std::vector<Real>& dp) {
  const Real n = Real(p.size());
  Real sum = 0;
  dp.resize(p.size());
  for (size_t k = 0; k < p.size(); ++k) {
    const Real q = std::min<Real>(std::max<Real>(p[k], eps), Real(T(1) - eps)), y = t[k];
    sum += y * std::log(q) + (1 - y) * std::log(1 - q);
    dp[k] = ((1 - y) / (1 - q) - y / q) / n;
  }
  return -sum / n;
}
/// Mean over the batch of -sum_k target_k log softmax(z)_k, and its gradient
/// (softmax * sum_k target_k - target) / N; one-hot targets give the plain cross-entropy.
template <typename T>
Real cross_entropy(const std::vector<T>& logits, const std::vector<Real>& targets, int64_t batch,
                   int64_t classes, std::vector<Real>& dlogits) {
  const std::vector<Real> s = softmax(logits, batch, classes, 1);
  Real sum = 0;
  dlogits.resize(logits.size());
  for (int64_t n = 0; n < batch; ++n) {
    Real mass = 0;
    for (int64_t k = 0; k < classes; ++k) mass += targets[n * classes + k];
    for (int64_t k = 0; k < classes; ++k) {
      const int64_t at = n * classes + k;
      sum -= targets[at] * std::log(s[at]);
      dlogits[at] = (s[at] * mass - targets[at]) / Real(batch);
    }
  }
  return sum / Real(batch);
}
template <typename T>
Real mse(const std::vector<T>& p, const std::vector<T>& t, std::vector<Real>& dp) {
  Real sum = 0;
  dp.resize(p.size());
  for (size_t k = 0; k < p.size(); ++k) {
    const Real d = Real(p[k]) - Real(t[k]);
    sum += d * d;
    dp[k] = 2 * d / Real(p.size());
  }
  return sum / Real(p.size());
}

}  // namespace independent

/// Max over elements of |a - b| / (|b| + 1) against an independent long double result.
template <typename T>
double max_difference(const std::vector<T>& a, const std::vector<long double>& b) {
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double d = double(std::abs((long double)a[i] - b[i]) / (std::abs(b[i]) + 1));
    worst = std::max(worst, std::isnan(d) ? INFINITY : d);
  }
  return worst;
}
template <typename T>
double scalar_difference(T a, long double b) {
  return max_difference(std::vector<T>{a}, std::vector<long double>{b});
}

/// The element-wise ops on `n` elements against the independent computations (and ReLU bit for
/// bit against the reference), with the current thread count.
template <typename T>
void check_elementwise(Rng& rng, int64_t n, const std::string& what) {
  auto x = random_vector<T>(rng, n);
  for (T& e : x) e *= T(4);
  x[0] = T(0);  // the seed's ReLU derivative at 0
  const auto dy = random_vector<T>(rng, n);
  std::vector<T> a(n, NAN), b(n, NAN), da(n, NAN), db(n, NAN);
  ops::relu_forward(a.data(), x.data(), n);
  ref::relu_forward(b.data(), x.data(), n);
  ASSERT_EQ(a, b) << "relu " << what;
  ASSERT_EQ(max_difference(a, independent::relu(x)), 0.0) << "relu " << what;
  ops::relu_backward(da.data(), x.data(), dy.data(), n);
  ref::relu_backward(db.data(), x.data(), dy.data(), n);
  ASSERT_EQ(da, db) << "relu backward " << what;
  ASSERT_EQ(max_difference(da, independent::relu_backward(x, dy)), 0.0) << "relu backward " << what;
  // LeakyReLU and ReLU6 have ReLU's own loops: bit for bit the reference, and exact against
  // the formulas (the products by the slope round once, alike in both). The same draws, so
  // that the sweep's later cases keep their inputs; x[0] = 0 is a kink of both, and ReLU6's
  // input has its other kink, 6, at the end (x times 4 is N(0, 16): some 13% lie beyond 6).
  for (const T slope : {T(0.2), T(-1.75)}) {
    ops::leaky_relu_forward(a.data(), x.data(), n, slope);
    ref::leaky_relu_forward(b.data(), x.data(), n, slope);
    ASSERT_EQ(a, b) << "leaky_relu " << slope << " " << what;
    ASSERT_EQ(max_difference(a, independent::leaky_relu(x, slope)), 0.0)
        << "leaky_relu " << slope << " " << what;
    ops::leaky_relu_backward(da.data(), x.data(), dy.data(), n, slope);
    ref::leaky_relu_backward(db.data(), x.data(), dy.data(), n, slope);
    ASSERT_EQ(da, db) << "leaky_relu backward " << slope << " " << what;
    ASSERT_EQ(max_difference(da, independent::leaky_relu_backward(x, dy, slope)), 0.0)
        << "leaky_relu backward " << slope << " " << what;
  }
  std::vector<T> x6 = x;
  if (n > 1) x6[n - 1] = T(6);
  ops::relu6_forward(a.data(), x6.data(), n);
  ref::relu6_forward(b.data(), x6.data(), n);
  ASSERT_EQ(a, b) << "relu6 " << what;
  ASSERT_EQ(max_difference(a, independent::relu6(x6)), 0.0) << "relu6 " << what;
  ops::relu6_backward(da.data(), x6.data(), dy.data(), n);
  ref::relu6_backward(db.data(), x6.data(), dy.data(), n);
  ASSERT_EQ(da, db) << "relu6 backward " << what;
  ASSERT_EQ(max_difference(da, independent::relu6_backward(x6, dy)), 0.0)
      << "relu6 backward " << what;
  ops::tanh_forward(a.data(), x.data(), n);
  ASSERT_LE(max_difference(a, independent::tanh(x)), tolerance<T>()) << "tanh " << what;
  ops::tanh_backward(da.data(), a.data(), dy.data(), n);
  ASSERT_LE(max_difference(da, independent::times_derivative(a, dy, true)), tolerance<T>())
      << "tanh backward " << what;
  ops::sigmoid_forward(a.data(), x.data(), n);
  ASSERT_LE(max_difference(a, independent::sigmoid(x)), tolerance<T>()) << "sigmoid " << what;
  ops::sigmoid_backward(da.data(), a.data(), dy.data(), n);
  ASSERT_LE(max_difference(da, independent::times_derivative(a, dy, false)), tolerance<T>())
      << "sigmoid backward " << what;
}

template <typename T>
void sweep_pointwise(uint64_t seed, int cases) {
  Rng rng(seed);
  for (int c = 0; c < cases; ++c) {
    const int64_t outer = 1 + int64_t(rng.below(4)), channels = 1 + int64_t(rng.below(12)),
                  inner = 1 + int64_t(rng.below(6));
    const int64_t n = outer * channels * inner;
    const std::string what = "outer=" + std::to_string(outer) +
                             " channels=" + std::to_string(channels) +
                             " inner=" + std::to_string(inner);
    check_elementwise<T>(rng, n, what);
    if (::testing::Test::HasFatalFailure()) return;
    auto x = random_vector<T>(rng, n);
    for (T& e : x) e *= T(4);
    const auto dy = random_vector<T>(rng, n);
    std::vector<T> a(n, NAN), b(n, NAN), da(n, NAN), db(n, NAN);
    ops::softmax_forward(a.data(), x.data(), outer, channels, inner);
    ASSERT_LE(max_difference(a, independent::softmax(x, outer, channels, inner)), tolerance<T>())
        << "softmax " << what;
    ops::softmax_backward(da.data(), a.data(), dy.data(), outer, channels, inner);
    ref::softmax_backward(db.data(), a.data(), dy.data(), outer, channels, inner);
    ASSERT_LE(max_difference(da, db), tolerance<T>()) << "softmax backward " << what;
    ASSERT_LE(max_difference(da, independent::softmax_backward(a, dy, outer, channels, inner)),
              tolerance<T>())
        << "softmax backward " << what;

    // Losses over the same sizes: (outer, channels) logits / probabilities. Probabilities reach
    // 0 and 1 now and then, where the log loss clamps.
    const int64_t batch = outer, classes = channels, m = batch * classes;
    std::vector<int32_t> labels(batch);
    for (int32_t& l : labels) l = int32_t(rng.below(uint64_t(classes)));
    std::vector<T> p(m), t(m), soft(m);
    for (int64_t i = 0; i < m; ++i) {
      const uint64_t kind = rng.below(10);
      p[i] = kind == 0 ? T(0) : kind == 1 ? T(1) : T(rng.uniform(0.01, 0.99));
      t[i] = T(rng.uniform());
      soft[i] = T(rng.uniform());
    }
    const T eps = T(1e-7);
    std::vector<T> ga(m, NAN);
    std::vector<long double> expected;
    long double loss = independent::log_loss(p, t, eps, expected);
    ASSERT_LE(scalar_difference(ops::log_loss_forward(p.data(), t.data(), m, eps), loss),
              tolerance<T>())
        << "log loss " << what;
    ops::log_loss_backward(ga.data(), p.data(), t.data(), m, eps);
    // Where p is clamped the gradient is about 1 / eps: compared relative to its size.
    ASSERT_LE(max_difference(ga, expected), tolerance<T>()) << "log loss backward " << what;
    std::vector<long double> onehot(m, 0), soft_targets(soft.begin(), soft.end());
    for (int64_t i = 0; i < batch; ++i) onehot[i * classes + labels[i]] = 1;
    loss = independent::cross_entropy(x, onehot, batch, classes, expected);
    ASSERT_LE(scalar_difference(ops::cross_entropy_forward(x.data(), labels.data(), batch, classes),
                                loss),
              tolerance<T>())
        << "cross entropy " << what;
    ops::cross_entropy_backward(ga.data(), x.data(), labels.data(), batch, classes);
    ASSERT_LE(max_difference(ga, expected), tolerance<T>()) << "cross entropy backward " << what;
    loss = independent::cross_entropy(x, soft_targets, batch, classes, expected);
    ASSERT_LE(scalar_difference(
                  ops::cross_entropy_soft_forward(x.data(), soft.data(), batch, classes), loss),
              tolerance<T>())
        << "soft cross entropy " << what;
    ops::cross_entropy_soft_backward(ga.data(), x.data(), soft.data(), batch, classes);
    ASSERT_LE(max_difference(ga, expected), tolerance<T>())
        << "soft cross entropy backward " << what;
    loss = independent::mse(p, t, expected);
    ASSERT_LE(scalar_difference(ops::mse_forward(p.data(), t.data(), m), loss), tolerance<T>())
        << "mse " << what;
    ops::mse_backward(ga.data(), p.data(), t.data(), m);
    ASSERT_LE(max_difference(ga, expected), tolerance<T>()) << "mse backward " << what;
  }
  // Large enough that the element-wise ops split into chunks over 2 threads.
  const int saved = ops::threads();
  ops::set_threads(2);
  for (int64_t n : {int64_t{1} << 16, 3 * (int64_t{1} << 15) + 7}) {
    check_elementwise<T>(rng, n, "n=" + std::to_string(n) + ", 2 threads");
    if (::testing::Test::HasFatalFailure()) break;
  }
  ops::set_threads(saved);
}

TEST_P(OpsSweepIsa, PointwiseSoftmaxAndLossesFloat) {
  sweep_pointwise<float>(7, 200);
}

INSTANTIATE_TEST_SUITE_P(Isas, OpsSweepIsa, ::testing::ValuesIn(testing::isa_paths()),
                         testing::path_test_name);

// The float tanh and sigmoid are vectorised formulas of their own (activation_lanes_kernels.inc),
// not the library's: held to an error in ulp of the correctly rounded value, over every 4099th
// float (a million inputs, every exponent, both signs, denormals, infinities and NaNs) and
// values near their switches (|x| = 0.625 for tanh, the exponent's rounding at +-ln2/2
// multiples), and to the same bits on every instruction set, over lengths that leave every
// vector remainder and over 2 threads' chunks.
TEST(OpsSweep, FloatTanhAndSigmoidAreWithinTheirUlpBoundsAndTheSameBitsOnEveryIsa) {
  const testing::RestoreOpsSettings restore;
  std::vector<float> x;
  for (uint64_t bits = 0; bits <= 0xFFFFFFFFu; bits += 4099)
    x.push_back(std::bit_cast<float>(static_cast<uint32_t>(bits)));
  for (const float centre : {0.625f, 0.3465736f, 1.0397208f, 9.0f, 87.3f, 103.9f, 104.0f})
    for (int step = -64; step <= 64; ++step)
      for (const float sign : {1.0f, -1.0f})
        x.push_back(sign * std::bit_cast<float>(std::bit_cast<uint32_t>(centre) + step));
  for (const float special : {0.0f, -0.0f, INFINITY, -INFINITY, NAN, -NAN, 1e-45f, -1e-45f})
    x.push_back(special);
  // Error in units of the last place of the float nearest the exact value (long double here).
  const auto ulps = [](float got, long double exact) {
    const float nearest = static_cast<float>(exact);
    const long double spacing =
        nearest == 0 ? std::ldexp(1.0L, -149)
                     : std::nextafter(std::fabs(nearest), INFINITY) - std::fabs(nearest);
    return static_cast<double>(std::fabs(static_cast<long double>(got) - exact) / spacing);
  };
  const int64_t n = static_cast<int64_t>(x.size());
  std::vector<float> tanh_first, sigmoid_first;
  for (const ops::Isa isa : ops::supported_isas()) {
    SCOPED_TRACE(ops::isa_name(isa));
    ops::set_isa(isa);
    ops::set_threads(2);
    std::vector<float> t(x.size()), g(x.size());
    ops::tanh_forward(t.data(), x.data(), n);
    ops::sigmoid_forward(g.data(), x.data(), n);
    double worst_tanh = 0, worst_sigmoid = 0;
    for (int64_t k = 0; k < n; ++k) {
      const long double v = x[k];
      if (std::isnan(v)) {
        ASSERT_TRUE(std::isnan(t[k]) && std::isnan(g[k])) << "x = NaN";
        continue;
      }
      const long double exact_tanh = std::tanh(v);
      const long double exact_sigmoid = 1 / (1 + std::exp(-v));
      ASSERT_EQ(std::signbit(t[k]), std::signbit(x[k])) << "tanh of " << x[k];
      worst_tanh = std::max(worst_tanh, ulps(t[k], exact_tanh));
      worst_sigmoid = std::max(worst_sigmoid, ulps(g[k], exact_sigmoid));
      ASSERT_LE(worst_tanh, 1.51) << "tanh of " << x[k] << " = " << t[k];
      ASSERT_LE(worst_sigmoid, 2.41) << "sigmoid of " << x[k] << " = " << g[k];
    }
    if (tanh_first.empty()) {
      tanh_first = t;
      sigmoid_first = g;
    } else {
      ASSERT_TRUE(same_bits(t, tanh_first)) << "tanh against the first instruction set";
      ASSERT_TRUE(same_bits(g, sigmoid_first)) << "sigmoid against the first instruction set";
    }
    // Every length up to three AVX-512 vectors, from an offset start, one thread: the same bits
    // as one run over them all, so that no vector remainder is left out or computed otherwise.
    ops::set_threads(1);
    std::vector<float> spread(64), all_t(64), all_g(64);
    for (size_t k = 0; k < spread.size(); ++k)
      spread[k] = float(int(k % 13) - 6) * 1.37f + k * 0.01f;
    ops::tanh_forward(all_t.data(), spread.data(), 64);
    ops::sigmoid_forward(all_g.data(), spread.data(), 64);
    for (int64_t length = 1; length <= 49; ++length) {
      const int64_t start = length % 7;
      std::vector<float> part_t(length), part_g(length);
      ops::tanh_forward(part_t.data(), spread.data() + start, length);
      ops::sigmoid_forward(part_g.data(), spread.data() + start, length);
      ASSERT_TRUE(same_bits(
          part_t, std::vector<float>(all_t.begin() + start, all_t.begin() + start + length)))
          << "tanh, length " << length;
      ASSERT_TRUE(same_bits(
          part_g, std::vector<float>(all_g.begin() + start, all_g.begin() + start + length)))
          << "sigmoid, length " << length;
    }
  }
}

/// Tests whose twin is another composition of ops on the same path: the reference too.
class OpsSweepAllPaths : public testing::PathTest {};
INSTANTIATE_TEST_SUITE_P(Paths, OpsSweepAllPaths, ::testing::ValuesIn(testing::all_paths()),
                         testing::path_test_name);

TEST_P(OpsSweepAllPaths, ReluMaxPoolEqualsReluThenMaxPoolBitForBit) {
  sweep_relu_pool<float>(31, 200);
  sweep_relu_pool<double>(32, 50);
}

/// check_auto_methods with one method for the forward and both gradients.
void check_auto_method(Rng& rng, ConvCases& cases, const ops::ConvShape& s, const char* method) {
  check_auto_methods(rng, cases, s, method, method, method);
}

/// check_auto_method on one thread under kAuto (a thread's images in several chunks).
void check_auto_method_one_thread(Rng& rng, const ops::ConvShape& s, const char* method) {
  const testing::RestoreOpsSettings restore;
  ops::set_conv_algorithm(ops::ConvAlgorithm::kAuto);
  ops::set_threads(1);
  ConvCases cases;
  check_auto_method(rng, cases, s, method);
}

/// check_auto_method(method) on each of `shapes` over every path (instruction set and thread
/// count), then on each of `one_thread` on one thread.
void check_auto_method_sweep(Rng& rng, const char* method,
                             const std::vector<ops::ConvShape>& shapes,
                             const std::vector<ops::ConvShape>& one_thread) {
  for_each_auto_path(shapes, [&](const ops::ConvShape& s, ConvCases& cases) {
    check_auto_method(rng, cases, s, method);
  });
  ASSERT_FALSE(::testing::Test::HasFatalFailure());
  for (const ops::ConvShape& s : one_thread)
    ASSERT_NO_FATAL_FAILURE(check_auto_method_one_thread(rng, s, method));
}

/// A 3x3 stride-1 layer (Winograd's shape): batch images of in_channels x h x w, padding pad.
ops::ConvShape shape3x3(int64_t batch, int64_t in_channels, int64_t h, int64_t w,
                        int64_t out_channels, int64_t pad) {
  return ops::make_conv_shape(batch, in_channels, h, w, out_channels, 3, 3, 1, 1, pad, pad);
}

// kAuto's Winograd F(4x4, 3x3) (4x4 planes with padding 1, and 7x7 outputs; 16+ channels,
// 16+ images), which no forced path takes, on every instruction set, 1 and 2 threads, with
// odd batches (the last group of images across the vector lanes part full) and channel
// counts (the GEMM kernels' edges); and on one thread (two blocks of images, each with its own
// weight-gradient sums: detail::gradient_blocks), 61 images of 128 channels, and 66 of 64
// channels on 7x7 planes, whose blocks of 33 run in two chunks on every instruction set (32 + 1
// on AVX-512, 24 + 9 on AVX2, 20 + 13 on the portable kernels).
TEST(OpsSweep, Conv2dAutoWinograd4x4MatchesTheReference) {
  Rng rng(17);
  check_auto_method_sweep(
      rng, "winograd4x4",
      {shape3x3(16, 16, 4, 4, 16, 1), shape3x3(17, 17, 4, 4, 33, 1), shape3x3(19, 33, 4, 4, 16, 1),
       shape3x3(29, 16, 4, 4, 20, 1),
       // 7x7 planes: 2 x 2 tiles a plane, the last row and column cut
       shape3x3(16, 16, 7, 7, 32, 1), shape3x3(17, 19, 7, 7, 33, 1), shape3x3(19, 33, 7, 7, 40, 1),
       shape3x3(18, 16, 9, 9, 32, 0),   // no padding
       shape3x3(21, 16, 5, 5, 32, 2)},  // padding 2
      {shape3x3(61, 128, 4, 4, 128, 1), shape3x3(66, 64, 7, 7, 64, 1)});
}

// An evaluation forward (ConvShape::inference) under kAuto of the layers whose F(2x2) blocks
// fit, where F(4x4)'s tiles fit too: the forward by F(4x4), the backward by F(2x2) still, on
// every instruction set, 1 and 2 threads, against the reference: 14x14 (the last row and column
// of tiles cut), 12x12 unpadded and 8x8 (filled), odd batches and channel counts, and the
// weight scale's bits (a BatchNorm folded in, as evaluation does).
TEST(OpsSweep, Conv2dInferenceForwardByWinograd4x4MatchesTheReference) {
  Rng rng(23);
  const auto inference = [](ops::ConvShape s) {
    s.inference = true;
    return s;
  };
  const std::vector<ops::ConvShape> shapes = {
      inference(shape3x3(16, 32, 14, 14, 32, 1)), inference(shape3x3(17, 19, 14, 14, 33, 1)),
      inference(shape3x3(18, 16, 14, 14, 32, 0)), inference(shape3x3(33, 16, 8, 8, 40, 1))};
  for_each_auto_path(shapes, [&](const ops::ConvShape& s, ConvCases& cases) {
    check_auto_methods(rng, cases, s, "winograd4x4", "winograd", "winograd");
  });
}

// kAuto's Winograd F(2x2, 3x3) from 32 images, whose data transforms then run across the vector
// lanes on AVX2 and AVX-512 (4 tiles of one image a vector below, and on the portable kernels),
// on every instruction set, 1 and 2 threads: planes that F(2x2)'s 2x2 blocks fill or cut
// (odd sides), padding 0, 1 and 2, non-square planes, rows longer than 16 floats (staged in
// blocks of the lanes), odd batches (a thread's last group of images part full) and channel
// counts; and 96 images on one thread: two blocks of 48, each in two chunks (AVX-512) or three.
TEST(OpsSweep, Conv2dAutoWinogradAcrossImagesMatchesTheReference) {
  Rng rng(19);
  check_auto_method_sweep(
      rng, "winograd",
      {shape3x3(32, 16, 14, 14, 16, 1), shape3x3(33, 16, 14, 14, 17, 1),
       shape3x3(47, 19, 9, 11, 24, 1), shape3x3(33, 16, 10, 20, 16, 1),  // rows > 16
       shape3x3(35, 16, 12, 12, 16, 0),                                  // no padding
       shape3x3(34, 17, 10, 9, 16, 2)},                                  // padding 2
      {shape3x3(96, 16, 14, 14, 16, 1)});
}

/// conv2d_forward with a weight scale (a BatchNorm folded in) against the same call on weights
/// scaled first: the same bits, on every method (the shapes reach the direct, Winograd and
/// GEMM paths, pointwise and strided, out_channels not a multiple of any kernel's block) and
/// thread count. The fast paths keep packed weights by the weights' address between calls: a
/// new scale with the same weights, and the same weights without a scale, must be seen.
template <typename T>
void check_conv_weight_scale(uint64_t seed) {
  Rng rng(seed);
  std::vector<ops::ConvShape> shapes = {
      ops::make_conv_shape(3, 1, 28, 28, 32, 3, 3, 1, 1, 1, 1),   // resnet's stem
      ops::make_conv_shape(2, 32, 14, 14, 32, 3, 3, 1, 1, 1, 1),  // its first block
      ops::make_conv_shape(3, 32, 14, 14, 64, 3, 3, 2, 2, 1, 1),  // stride 2
      ops::make_conv_shape(3, 32, 14, 14, 64, 1, 1, 2, 2, 0, 0),  // a projection shortcut
      ops::make_conv_shape(1, 64, 4, 4, 128, 3, 3, 1, 1, 1, 1),   // batch 1, few tiles
      ops::make_conv_shape(2, 6, 14, 14, 19, 5, 5, 1, 1, 0, 0),   // 19 channels, 5x5
      ops::make_conv_shape(2, 7, 9, 11, 13, 3, 3, 1, 1, 1, 1)};
  for (int c = 0; c < 12; ++c) shapes.push_back(random_conv3x3(rng));
  const int saved = ops::threads();
  for (size_t i = 0; i < shapes.size(); ++i) {
    const ops::ConvShape& s = shapes[i];
    ops::set_threads(1 + static_cast<int>(i % 2));
    SCOPED_TRACE("shape " + std::to_string(i) + ", " + std::to_string(ops::threads()) + " threads");
    const int64_t per_channel = s.in_channels * s.kernel_h * s.kernel_w;
    const auto x = random_vector<T>(rng, s.batch * s.in_channels * s.in_h * s.in_w),
               w = random_vector<T>(rng, s.out_channels * per_channel),
               b = random_vector<T>(rng, s.out_channels);
    const size_t ny = static_cast<size_t>(s.batch * s.out_channels * s.out_h * s.out_w);
    std::vector<T> scale = random_vector<T>(rng, s.out_channels);
    for (int round = 0; round < 3; ++round) {
      // Round 1: a new scale, same weights; round 2: no scale.
      if (round == 1) {
        for (T& v : scale) v = v * T(-1.5) + T(0.25);
      }
      std::vector<T> scaled = w;
      if (round < 2) {
        for (int64_t o = 0; o < s.out_channels; ++o)
          for (int64_t k = 0; k < per_channel; ++k)
            scaled[o * per_channel + k] = w[o * per_channel + k] * scale[o];
      }
      std::vector<T> expected(ny), y(ny);
      ops::conv2d_forward(expected.data(), x.data(), scaled.data(), b.data(), s);
      ops::conv2d_forward(y.data(), x.data(), w.data(), b.data(), s,
                          round < 2 ? scale.data() : nullptr);
      ASSERT_TRUE(same_bits(y, expected))
          << "round " << round << ", method " << ops::conv2d_forward_method(s);
    }
  }
  ops::set_threads(saved);
}

TEST_P(OpsSweepAllPaths, Conv2dWeightScaleEqualsScaledWeightsBitForBit) {
  check_conv_weight_scale<float>(51);
  check_conv_weight_scale<double>(52);
}

/// A convolution fused with what follows it (with_pool: conv2d_relu_maxpool2x2_forward, a ReLU
/// and 2x2 / stride-2 pooling; else conv2d_relu_forward, a ReLU, and with an addend, the
/// addend's sum and its ReLU) against the ops it replaces, conv2d_forward then
/// relu_maxpool2d_forward, relu_forward or add_forward: the same bits, with neither bias
/// nor weight scale and with both (a folded BatchNorm), 1 and 2 threads, and an all-zero image,
/// whose outputs without a bias are exact zeros (the ReLU's rule at 0). Returns how many of
/// `shapes` the current path fused; the others must be refused.
int check_fused_conv(uint64_t seed, const std::vector<ops::ConvShape>& shapes, bool with_pool) {
  Rng rng(seed);
  const int saved = ops::threads();
  int fused = 0;
  for (size_t i = 0; i < shapes.size(); ++i) {
    const ops::ConvShape& s = shapes[i];
    ops::set_threads(1 + static_cast<int>(i % 2));
    SCOPED_TRACE(describe(s) + ", " + std::to_string(ops::threads()) + " threads, " +
                 ops::conv2d_forward_method(s));
    const int64_t per_channel = s.in_channels * s.kernel_h * s.kernel_w;
    std::vector<float> x = random_vector<float>(rng, s.batch * s.in_channels * s.in_h * s.in_w);
    std::fill(x.begin(), x.begin() + s.in_channels * s.in_h * s.in_w, 0.0f);  // image 0
    const auto w = random_vector<float>(rng, s.out_channels * per_channel),
               b = random_vector<float>(rng, s.out_channels),
               scale = random_vector<float>(rng, s.out_channels);
    const ops::PoolShape p =
        ops::make_pool_shape(s.batch, s.out_channels, s.out_h, s.out_w, 2, 2, 2, 2, 0, 0);
    const int64_t conv_size = s.batch * s.out_channels * s.out_h * s.out_w;
    std::vector<float> y(
        static_cast<size_t>(with_pool ? s.batch * s.out_channels * p.out_h * p.out_w : conv_size));
    const auto fused_op = [&](const float* bias, const float* w_scale) {
      if (with_pool) {
        return ops::conv2d_relu_maxpool2x2_forward(y.data(), x.data(), w.data(), bias, s, w_scale);
      }
      ops::conv2d_relu_forward(y.data(), x.data(), w.data(), bias, s, w_scale);
    };
    if (!(with_pool ? ops::conv2d_relu_maxpool2x2_fusable(s) : ops::conv2d_relu_fusable(s))) {
      EXPECT_THROW(fused_op(nullptr, nullptr), std::logic_error);
      continue;
    }
    ++fused;
    for (const bool folded : {false, true}) {
      const float* bias = folded ? b.data() : nullptr;
      const float* w_scale = folded ? scale.data() : nullptr;
      std::vector<float> conv(static_cast<size_t>(conv_size)), expected(y.size());
      ops::conv2d_forward(conv.data(), x.data(), w.data(), bias, s, w_scale);
      if (with_pool) {
        ops::relu_maxpool2d_forward(expected.data(), nullptr, conv.data(), p);
      } else {
        ops::relu_forward(expected.data(), conv.data(), conv_size);
      }
      std::fill(y.begin(), y.end(), -1.0f);
      fused_op(bias, w_scale);
      EXPECT_TRUE(same_bits(y, expected)) << (folded ? "bias and weight scale" : "plain");
      if (with_pool) continue;
      // With an addend (a residual block's shortcut): conv2d_forward then add_forward's ReLU.
      const auto addend = random_vector<float>(rng, conv_size);
      ops::add_forward(static_cast<float*>(nullptr), expected.data(), conv.data(), addend.data(),
                       conv_size, true);
      std::fill(y.begin(), y.end(), -1.0f);
      ops::conv2d_relu_forward(y.data(), x.data(), w.data(), bias, s, w_scale, addend.data());
      EXPECT_TRUE(same_bits(y, expected)) << (folded ? "addend, bias and weight scale" : "addend");
    }
  }
  ops::set_threads(saved);
  return fused;
}

/// Shapes for the ReLU + pooling fusion: the first layers of resnet and lenet5, odd output
/// sizes (the pooling drops the last row or column), stride 2, a row of more than 8 windows
/// (the AVX2 loop) and of fewer than 4.
int check_conv_relu_maxpool(uint64_t seed) {
  return check_fused_conv(
      seed,
      {ops::make_conv_shape(3, 1, 28, 28, 32, 3, 3, 1, 1, 1, 1),  // resnet's stem
       ops::make_conv_shape(2, 1, 28, 28, 6, 5, 5, 1, 1, 2, 2),   // lenet5's first
       ops::make_conv_shape(3, 3, 11, 9, 19, 3, 3, 1, 1, 1, 1),   // 11 x 9 outputs, 19 channels
       ops::make_conv_shape(2, 2, 13, 13, 7, 3, 3, 2, 2, 1, 1),   // stride 2: 7 x 7 outputs
       ops::make_conv_shape(2, 4, 6, 22, 5, 3, 3, 1, 1, 0, 0),    // 4 x 20 outputs, no padding
       ops::make_conv_shape(1, 2, 3, 3, 3, 3, 3, 1, 1, 1, 1)},    // one window a plane
      true);
}

TEST_P(OpsSweepAllPaths, Conv2dReluMaxPoolEqualsConvThenReluMaxPoolBitForBit) {
  const int fused = check_conv_relu_maxpool(61);
  // kDirect runs every shape by the direct kernels; the reference path fuses none.
  if (GetParam().reference) {
    EXPECT_EQ(fused, 0);
  } else if (GetParam().conv == ops::ConvAlgorithm::kDirect) {
    EXPECT_EQ(fused, 6);
  }
}

// kAuto fuses the stems of resnet, lenet5 and convnet (the direct kernels take them), on every
// instruction set.
TEST(OpsSweep, Conv2dReluMaxPoolFusesTheStemsUnderAuto) {
  const testing::RestoreOpsSettings restore;
  ops::set_conv_algorithm(ops::ConvAlgorithm::kAuto);
  for (const ops::Isa isa : ops::supported_isas()) {
    ops::set_isa(isa);
    SCOPED_TRACE(ops::isa_name(isa));
    EXPECT_GE(check_conv_relu_maxpool(62), 2);
  }
}

/// Shapes for the ReLU fusion, of every method that takes it: F(2x2) (4 tiles a vector, and
/// across the lanes from 32 images), F(4x4) on 4x4 and 7x7 planes, the implicit GEMM at stride
/// 2, odd batches and channel counts, and a 5x5 kernel (no Winograd).
int check_conv_relu(uint64_t seed) {
  return check_fused_conv(
      seed,
      {ops::make_conv_shape(17, 32, 14, 14, 32, 3, 3, 1, 1, 1, 1),  // resnet's first block
       ops::make_conv_shape(33, 16, 14, 14, 16, 3, 3, 1, 1, 1, 1),  // F(2x2) across the lanes
       ops::make_conv_shape(19, 32, 14, 14, 64, 3, 3, 2, 2, 1, 1),  // its stride-2 layers
       ops::make_conv_shape(17, 64, 7, 7, 128, 3, 3, 2, 2, 1, 1),
       ops::make_conv_shape(33, 64, 7, 7, 64, 3, 3, 1, 1, 1, 1),  // F(4x4) planes
       ops::make_conv_shape(17, 128, 4, 4, 128, 3, 3, 1, 1, 1, 1),
       ops::make_conv_shape(3, 5, 9, 11, 19, 3, 3, 1, 1, 1, 1),   // odd everything
       ops::make_conv_shape(2, 3, 12, 10, 7, 5, 5, 1, 1, 2, 2)},  // 5x5: no Winograd
      false);
}

TEST_P(OpsSweepAllPaths, Conv2dReluEqualsConvThenReluBitForBit) {
  const int fused = check_conv_relu(63);
  if (GetParam().reference) {
    EXPECT_EQ(fused, 0);
  } else if (GetParam().conv == ops::ConvAlgorithm::kImplicit) {
    EXPECT_EQ(fused, 8);  // the implicit GEMM takes every shape
  }
}

// kAuto fuses resnet's layers by each of its methods: F(2x2), F(4x4) and the implicit GEMM.
TEST(OpsSweep, Conv2dReluFusesEveryMethodUnderAuto) {
  const testing::RestoreOpsSettings restore;
  ops::set_conv_algorithm(ops::ConvAlgorithm::kAuto);
  const ops::ConvShape f2 = ops::make_conv_shape(17, 32, 14, 14, 32, 3, 3, 1, 1, 1, 1),
                       f4 = ops::make_conv_shape(17, 128, 4, 4, 128, 3, 3, 1, 1, 1, 1),
                       implicit = ops::make_conv_shape(19, 32, 14, 14, 64, 3, 3, 2, 2, 1, 1);
  for (const ops::Isa isa : ops::supported_isas()) {
    ops::set_isa(isa);
    SCOPED_TRACE(ops::isa_name(isa));
    EXPECT_STREQ(ops::conv2d_forward_method(f2), "winograd");
    ops::ConvShape f2_inference = f2;
    f2_inference.inference = true;
    EXPECT_STREQ(ops::conv2d_forward_method(f2_inference), "winograd4x4");
    EXPECT_STREQ(ops::conv2d_forward_method(f4), "winograd4x4");
    EXPECT_STREQ(ops::conv2d_forward_method(implicit), "implicit");
    EXPECT_GE(check_conv_relu(64), 6);
  }
}

/// conv2d_forward_moments on each shape (threads alternating 1 and 2, a bias on every other
/// shape, image 0 all zeros): where it runs, its output has the bits of conv2d_forward's, its
/// moments those of batchnorm_plane_moments of that output, and batchnorm_statistics_from_moments
/// gives the bits of batchnorm_statistics; where it does not, it has written nothing. Returns how
/// many shapes it ran.
int check_conv_moments(uint64_t seed, const std::vector<ops::ConvShape>& shapes) {
  Rng rng(seed);
  const int saved = ops::threads();
  int taken = 0;
  for (size_t i = 0; i < shapes.size(); ++i) {
    const ops::ConvShape& s = shapes[i];
    ops::set_threads(1 + static_cast<int>(i % 2));
    SCOPED_TRACE(describe(s) + ", " + std::to_string(ops::threads()) + " threads, " +
                 ops::conv2d_forward_method(s));
    std::vector<float> x = random_vector<float>(rng, s.batch * s.in_channels * s.in_h * s.in_w);
    std::fill(x.begin(), x.begin() + s.in_channels * s.in_h * s.in_w, 0.0f);
    const auto w = random_vector<float>(rng,
                                        s.out_channels * s.in_channels * s.kernel_h * s.kernel_w),
               b = random_vector<float>(rng, s.out_channels);
    const float* bias = i % 2 ? b.data() : nullptr;
    const ops::NormShape norm{s.batch, s.out_channels, s.out_h * s.out_w};
    const int64_t planes = norm.batch * norm.channels, size = planes * norm.inner;
    std::vector<float> expected(static_cast<size_t>(size)), y(expected.size(), -1.0f);
    ops::conv2d_forward(expected.data(), x.data(), w.data(), bias, s);
    std::vector<double> totals(static_cast<size_t>(2 * planes), -1.0),
        expected_totals(totals.size());
    if (!ops::conv2d_forward_moments(y.data(), x.data(), w.data(), bias, s, totals.data())) {
      EXPECT_TRUE(std::all_of(y.begin(), y.end(), [](float v) { return v == -1.0f; }));
      EXPECT_TRUE(std::all_of(totals.begin(), totals.end(), [](double v) { return v == -1.0; }));
      continue;
    }
    ++taken;
    EXPECT_TRUE(same_bits(y, expected));
    ops::batchnorm_plane_moments(expected_totals.data(), expected.data(), planes, norm.inner);
    EXPECT_TRUE(same_bits(totals, expected_totals));
    std::vector<float> mean(static_cast<size_t>(norm.channels)), var(mean.size()),
        expected_mean(mean.size()), expected_var(mean.size());
    ops::batchnorm_statistics(expected_mean.data(), expected_var.data(), expected.data(), norm);
    ops::batchnorm_statistics_from_moments(mean.data(), var.data(), totals.data(), norm);
    EXPECT_TRUE(same_bits(mean, expected_mean));
    EXPECT_TRUE(same_bits(var, expected_var));
  }
  ops::set_threads(saved);
  return taken;
}

/// Shapes for conv2d_forward_moments: resnet's layers in training (the stem by the direct
/// kernels, F(2x2) 4 tiles a vector and across the lanes, F(4x4) on 7x7 and 4x4 planes, the
/// implicit GEMM at stride 2 and its 1x1 projections, whose 4x4 planes are as short as the
/// statistics' image split takes), planes under 16 values (3x3: the statistics split the
/// channels), odd everything, a 5x5 kernel, and a projection that kAuto leaves to im2col + GEMM
/// at 9 images (which does not take the moments).
std::vector<ops::ConvShape> moments_shapes() {
  return {ops::make_conv_shape(3, 1, 28, 28, 32, 3, 3, 1, 1, 1, 1),    // resnet's stem
          ops::make_conv_shape(17, 32, 14, 14, 32, 3, 3, 1, 1, 1, 1),  // its first block
          ops::make_conv_shape(33, 16, 14, 14, 16, 3, 3, 1, 1, 1, 1),  // F(2x2) across the lanes
          ops::make_conv_shape(19, 32, 14, 14, 64, 3, 3, 2, 2, 1, 1),  // the stride-2 layers
          ops::make_conv_shape(17, 64, 7, 7, 128, 3, 3, 2, 2, 1, 1),
          ops::make_conv_shape(17, 64, 7, 7, 128, 1, 1, 2, 2, 0, 0),  // a 1x1 projection
          ops::make_conv_shape(33, 64, 7, 7, 64, 3, 3, 1, 1, 1, 1),   // F(4x4) planes
          ops::make_conv_shape(17, 128, 4, 4, 128, 3, 3, 1, 1, 1, 1),
          ops::make_conv_shape(5, 7, 5, 5, 9, 3, 3, 2, 2, 1, 1),       // 3x3 planes: short
          ops::make_conv_shape(3, 5, 9, 11, 19, 3, 3, 1, 1, 1, 1),     // odd everything
          ops::make_conv_shape(2, 3, 12, 10, 7, 5, 5, 1, 1, 2, 2),     // 5x5: no Winograd
          ops::make_conv_shape(9, 32, 14, 14, 64, 1, 1, 2, 2, 0, 0)};  // kAuto: im2col + GEMM
}

TEST_P(OpsSweepAllPaths, Conv2dForwardMomentsEqualConvThenStatisticsBitForBit) {
  const int taken = check_conv_moments(65, moments_shapes());
  if (GetParam().reference) {
    EXPECT_EQ(taken, 0);  // the reference statistics sum otherwise
  } else if (GetParam().conv == ops::ConvAlgorithm::kImplicit) {
    EXPECT_EQ(taken, 12);  // the implicit GEMM takes every shape
  }
}

// kAuto takes the moments by every method that runs resnet's training forward: the direct
// kernels (the stem), F(2x2), F(4x4) and the implicit GEMM, on every instruction set.
TEST(OpsSweep, Conv2dForwardMomentsTakeResnetsLayersUnderAuto) {
  const testing::RestoreOpsSettings restore;
  ops::set_conv_algorithm(ops::ConvAlgorithm::kAuto);
  const std::vector<ops::ConvShape> shapes = moments_shapes();
  for (const ops::Isa isa : ops::supported_isas()) {
    ops::set_isa(isa);
    SCOPED_TRACE(ops::isa_name(isa));
    std::set<std::string> methods;
    for (size_t i = 0; i < 8; ++i) methods.insert(ops::conv2d_forward_method(shapes[i]));
    EXPECT_EQ(methods, (std::set<std::string>{"direct", "implicit", "winograd", "winograd4x4"}));
    EXPECT_EQ(check_conv_moments(66, {shapes.begin(), shapes.begin() + 8}), 8);
    EXPECT_STREQ(ops::conv2d_forward_method(shapes.back()), "gemm");
    EXPECT_EQ(check_conv_moments(67, {shapes.back()}), 0);
  }
}

/// Two evaluation-mode 3x3 convolutions in a row, `first` then `second` (its input the first's
/// output): batch, channels in, between and out, the second's plane size, and the first's
/// stride and input size (1 and `size`, or 2 and a plane it halves to `size`).
struct ConvPairCase {
  int64_t batch, in_channels, mid_channels, out_channels, size;
  int64_t first_stride = 1, in_size = 0;
};

// conv2d_relu_pair_forward against the two calls it replaces, conv2d_relu_forward of the first,
// then of the second with the addend: the same bits, with neither bias nor weight scale and
// with both (folded BatchNorms), with and without an addend, on every instruction set, 1, 2 and
// 3 threads, an all-zero first image (exact zeros at the ReLU), batches that leave a lane group
// part-filled, channel counts that change from one convolution to the next, and the planes
// F(4x4) takes (14x14 and 8x8 in evaluation, 7x7, 4x4); the first by F(4x4) or, at stride 2,
// by the implicit GEMM (resnet's later blocks, odd input planes too). Shapes that are not such
// a pair are refused, and the op throws for them.
TEST(OpsSweep, Conv2dReluPairEqualsTwoFusedConvolutionsBitForBit) {
  const testing::RestoreOpsSettings restore;
  ops::set_conv_algorithm(ops::ConvAlgorithm::kAuto);
  const auto shape = [](int64_t batch, int64_t in, int64_t out, int64_t size, int64_t stride = 1) {
    ops::ConvShape s = ops::make_conv_shape(batch, in, size, size, out, 3, 3, stride, stride, 1, 1);
    s.inference = true;
    return s;
  };
  Rng rng(71);
  const ConvPairCase cases[] = {
      {37, 32, 32, 32, 14},  // resnet's first block
      {17, 16, 32, 48, 7},         {20, 32, 64, 32, 8},
      {16, 64, 32, 128, 4},        {37, 32, 64, 64, 7, 2, 14},  // resnet's second block
      {17, 64, 128, 128, 4, 2, 7},                              // and its third
      {33, 16, 32, 48, 7, 2, 13}};
  for (const ops::Isa isa : ops::supported_isas()) {
    ops::set_isa(isa);
    for (size_t i = 0; i < std::size(cases); ++i) {
      const ConvPairCase& c = cases[i];
      const int64_t in_size = c.first_stride == 1 ? c.size : c.in_size;
      const ops::ConvShape first = shape(c.batch, c.in_channels, c.mid_channels, in_size,
                                         c.first_stride),
                           second = shape(c.batch, c.mid_channels, c.out_channels, c.size);
      EXPECT_STREQ(ops::conv2d_forward_method(first),
                   c.first_stride == 1 ? "winograd4x4" : "implicit");
      ops::set_threads(1 + static_cast<int>(i % 3));
      SCOPED_TRACE(std::string(ops::isa_name(isa)) + ", " + describe(first) + " then " +
                   describe(second) + ", " + std::to_string(ops::threads()) + " threads");
      ASSERT_TRUE(ops::conv2d_relu_pair_fusable(first, second));
      std::vector<float> x = random_vector<float>(rng, c.batch * c.in_channels * in_size * in_size);
      std::fill(x.begin(), x.begin() + c.in_channels * in_size * in_size, 0.0f);  // image 0
      const auto w1 = random_vector<float>(rng, c.mid_channels * c.in_channels * 9),
                 w2 = random_vector<float>(rng, c.out_channels * c.mid_channels * 9),
                 b1 = random_vector<float>(rng, c.mid_channels),
                 b2 = random_vector<float>(rng, c.out_channels),
                 scale1 = random_vector<float>(rng, c.mid_channels),
                 scale2 = random_vector<float>(rng, c.out_channels);
      const int64_t mid_size = c.batch * c.mid_channels * c.size * c.size;
      const int64_t out_size = c.batch * c.out_channels * c.size * c.size;
      const auto addend = random_vector<float>(rng, out_size);
      for (const bool folded : {false, true})
        for (const bool with_addend : {false, true}) {
          SCOPED_TRACE(std::string(folded ? "bias and weight scale" : "plain") +
                       (with_addend ? ", addend" : ""));
          const ops::ConvPairStep step1{w1.data(), folded ? b1.data() : nullptr,
                                        folded ? scale1.data() : nullptr, first};
          const ops::ConvPairStep step2{w2.data(), folded ? b2.data() : nullptr,
                                        folded ? scale2.data() : nullptr, second};
          const float* add = with_addend ? addend.data() : nullptr;
          std::vector<float> mid(static_cast<size_t>(mid_size)),
              expected(static_cast<size_t>(out_size)), y(static_cast<size_t>(out_size), -1.0f);
          ops::conv2d_relu_forward(mid.data(), x.data(), step1.w, step1.b, first, step1.w_scale);
          ops::conv2d_relu_forward(expected.data(), mid.data(), step2.w, step2.b, second,
                                   step2.w_scale, add);
          ops::conv2d_relu_pair_forward(y.data(), x.data(), step1, step2, add);
          EXPECT_TRUE(same_bits(y, expected));
        }
      if (c.first_stride == 1) continue;
      // With a shortcut computed inside the call (a projection: 1x1, stride 2; and a 3x3 one
      // with padding, whose positions fall in several classes): the pair with the shortcut's
      // conv2d_forward as its addend, bit for bit.
      for (const int64_t kernel : {1, 3}) {
        ops::ConvShape shortcut =
            ops::make_conv_shape(c.batch, c.in_channels, in_size, in_size, c.out_channels, kernel,
                                 kernel, 2, 2, kernel / 2, kernel / 2);
        shortcut.inference = true;
        ASSERT_TRUE(ops::conv2d_relu_pair_shortcut_fusable(first, second, shortcut));
        const auto ws = random_vector<float>(rng, c.out_channels * c.in_channels * kernel * kernel),
                   bs = random_vector<float>(rng, c.out_channels),
                   scale_s = random_vector<float>(rng, c.out_channels);
        for (const bool folded : {false, true}) {
          SCOPED_TRACE(std::to_string(kernel) + "x" + std::to_string(kernel) + " shortcut, " +
                       (folded ? "bias and weight scale" : "plain"));
          const ops::ConvPairStep step1{w1.data(), b1.data(), scale1.data(), first};
          const ops::ConvPairStep step2{w2.data(), folded ? b2.data() : nullptr, nullptr, second};
          const ops::ConvPairStep step_s{ws.data(), folded ? bs.data() : nullptr,
                                         folded ? scale_s.data() : nullptr, shortcut};
          std::vector<float> shortcut_y(static_cast<size_t>(out_size)),
              expected(static_cast<size_t>(out_size)), y(static_cast<size_t>(out_size), -1.0f);
          ops::conv2d_forward(shortcut_y.data(), x.data(), step_s.w, step_s.b, shortcut,
                              step_s.w_scale);
          ops::conv2d_relu_pair_forward(expected.data(), x.data(), step1, step2, shortcut_y.data());
          ops::conv2d_relu_pair_shortcut_forward(y.data(), x.data(), step1, step2, step_s);
          EXPECT_TRUE(same_bits(y, expected));
        }
      }
    }
    // Refused: a training-mode shape (F(2x2) on 14x14), a second whose input is not the
    // first's output, and a stride-2 first convolution that the implicit GEMM does not run
    // (15 channels in).
    const ops::ConvShape f4 = shape(17, 32, 32, 7);
    ops::ConvShape training = shape(33, 32, 32, 14);
    training.inference = false;
    const ops::ConvShape strided = shape(17, 15, 32, 14, 2);
    ASSERT_STRNE(ops::conv2d_forward_method(strided), "implicit");
    EXPECT_FALSE(ops::conv2d_relu_pair_fusable(training, training));
    EXPECT_FALSE(ops::conv2d_relu_pair_fusable(f4, shape(17, 48, 32, 7)));
    EXPECT_FALSE(ops::conv2d_relu_pair_fusable(strided, f4));
    std::vector<float> x(17 * 15 * 14 * 14), w(32 * 32 * 9), y(17 * 32 * 7 * 7);
    EXPECT_THROW(
        ops::conv2d_relu_pair_forward(y.data(), x.data(), {w.data(), nullptr, nullptr, strided},
                                      {w.data(), nullptr, nullptr, f4}),
        std::logic_error);
    // A shortcut is refused beside an F(4x4) first convolution, with another output shape, or
    // when it reads another input.
    const ops::ConvShape implicit_first = shape(17, 64, 128, 7, 2), last = shape(17, 128, 128, 4);
    const auto projection = [](int64_t in, int64_t size, int64_t out) {
      ops::ConvShape s = ops::make_conv_shape(17, in, size, size, out, 1, 1, 2, 2, 0, 0);
      s.inference = true;
      return s;
    };
    EXPECT_TRUE(
        ops::conv2d_relu_pair_shortcut_fusable(implicit_first, last, projection(64, 7, 128)));
    EXPECT_FALSE(ops::conv2d_relu_pair_shortcut_fusable(f4, f4, projection(32, 14, 32)));
    EXPECT_FALSE(
        ops::conv2d_relu_pair_shortcut_fusable(implicit_first, last, projection(64, 7, 64)));
    EXPECT_FALSE(
        ops::conv2d_relu_pair_shortcut_fusable(implicit_first, last, projection(32, 8, 128)));
    EXPECT_THROW(ops::conv2d_relu_pair_shortcut_forward(
                     y.data(), x.data(), {w.data(), nullptr, nullptr, f4},
                     {w.data(), nullptr, nullptr, f4}, {w.data(), nullptr, nullptr, f4}),
                 std::logic_error);
  }
}

/// A BatchNorm's per-channel mean, var, gamma and beta (beta 0 on every third channel) and an
/// input x of shape s with exact zeros among its normalised values (x = mean on about 1 value in
/// 8: where beta is 0, the ReLU's rule at 0 decides).
template <typename T>
struct NormCase {
  std::vector<T> mean, var, gamma, beta, x;
};
template <typename T>
NormCase<T> random_norm_case(Rng& rng, const ops::NormShape& s) {
  NormCase<T> c;
  for (int64_t ch = 0; ch < s.channels; ++ch) {
    c.mean.push_back(T(rng.normal() * 0.5));
    c.var.push_back(T(0.2 + rng.uniform()));
    c.gamma.push_back(T(rng.uniform(-1.5, 1.5)));
    c.beta.push_back(ch % 3 == 0 ? T(0) : T(rng.normal() * 0.3));
  }
  const int64_t n = s.batch * s.channels * s.inner;
  c.x = random_vector<T>(rng, n);
  for (int64_t k = 0; k < n; ++k) {
    if (rng.below(8) == 0) c.x[k] = c.mean[(k / s.inner) % s.channels];
  }
  return c;
}

/// BatchNorm's statistics, forward and backward (batch or running statistics), alone and fused
/// with the ReLU after it: the default path against the reference on odd (batch, channels,
/// inner), 1 and 2 threads; and the fused ops bit for bit against the two ops they replace on
/// the same path, with exact zeros among the normalised values (x = mean where beta = 0), where
/// the ReLU's rule at 0 decides.
template <typename T>
void sweep_batchnorm(uint64_t seed, int cases) {
  Rng rng(seed);
  const int saved = ops::threads();
  for (int c = 0; c < cases; ++c) {
    ops::set_threads(1 + c % 2);
    const ops::NormShape s{1 + int64_t(rng.below(4)), 1 + int64_t(rng.below(9)),
                           1 + int64_t(rng.below(c % 5 == 0 ? 3000 : 40))};
    const int64_t n = s.batch * s.channels * s.inner;
    const std::string what =
        "batch=" + std::to_string(s.batch) + " channels=" + std::to_string(s.channels) +
        " inner=" + std::to_string(s.inner) + " threads=" + std::to_string(ops::threads());
    const auto [mean, var, gamma, beta, x] = random_norm_case<T>(rng, s);
    const auto dy = random_vector<T>(rng, n);
    const T eps = T(1e-5);

    std::vector<T> m_a(s.channels), v_a(s.channels), m_b(s.channels), v_b(s.channels);
    ops::batchnorm_statistics(m_a.data(), v_a.data(), x.data(), s);
    ref::batchnorm_statistics(m_b.data(), v_b.data(), x.data(), s);
    ASSERT_LE(max_difference(m_a, m_b), tolerance<T>()) << "statistics " << what;
    ASSERT_LE(max_difference(v_a, v_b), tolerance<T>()) << "statistics " << what;

    for (const bool relu : {false, true}) {
      const std::string kind = std::string(relu ? "fused " : "") + what;
      std::vector<T> y_a(n), y_b(n);
      if (relu) {
        ops::batchnorm_relu_forward(y_a.data(), x.data(), mean.data(), var.data(), gamma.data(),
                                    beta.data(), s, eps);
        ref::batchnorm_relu_forward(y_b.data(), x.data(), mean.data(), var.data(), gamma.data(),
                                    beta.data(), s, eps);
      } else {
        ops::batchnorm_forward(y_a.data(), x.data(), mean.data(), var.data(), gamma.data(),
                               beta.data(), s, eps);
        ref::batchnorm_forward(y_b.data(), x.data(), mean.data(), var.data(), gamma.data(),
                               beta.data(), s, eps);
      }
      ASSERT_LE(max_difference(y_a, y_b), tolerance<T>()) << "forward " << kind;
      for (const bool batch_statistics : {true, false}) {
        // With batch statistics, the backward takes mean and var as functions of x: they must
        // be x's (the closed form and the chain rule agree only there).
        const T* mu = batch_statistics ? m_a.data() : mean.data();
        const T* sigma2 = batch_statistics ? v_a.data() : var.data();
        std::vector<T> dx_a(n), dx_b(n), dg_a(s.channels, T(0.5)), dg_b(dg_a), db_a(dg_a),
            db_b(dg_a);
        if (relu) {
          ops::batchnorm_relu_backward(dx_a.data(), dg_a.data(), db_a.data(), dy.data(), x.data(),
                                       mu, sigma2, gamma.data(), beta.data(), s, eps,
                                       batch_statistics);
          ref::batchnorm_relu_backward(dx_b.data(), dg_b.data(), db_b.data(), dy.data(), x.data(),
                                       mu, sigma2, gamma.data(), beta.data(), s, eps,
                                       batch_statistics);
        } else {
          ops::batchnorm_backward(dx_a.data(), dg_a.data(), db_a.data(), dy.data(), x.data(), mu,
                                  sigma2, gamma.data(), s, eps, batch_statistics);
          ref::batchnorm_backward(dx_b.data(), dg_b.data(), db_b.data(), dy.data(), x.data(), mu,
                                  sigma2, gamma.data(), s, eps, batch_statistics);
        }
        const std::string which = kind + (batch_statistics ? " batch" : " running");
        // The gradients sum up to thousands of terms: compared to their magnitude.
        const double scale = 1.0 + std::sqrt(double(s.batch * s.inner));
        ASSERT_LE(max_difference(dx_a, dx_b), tolerance<T>() * scale) << "dx " << which;
        ASSERT_LE(max_difference(dg_a, dg_b), tolerance<T>() * scale) << "dgamma " << which;
        ASSERT_LE(max_difference(db_a, db_b), tolerance<T>() * scale) << "dbeta " << which;
      }
    }

    // The fused ops against the two ops they stand for, on this path: the same bits.
    std::vector<T> v(n), y_pair(n), y_fused(n);
    ops::batchnorm_forward(v.data(), x.data(), mean.data(), var.data(), gamma.data(), beta.data(),
                           s, eps);
    ops::relu_forward(y_pair.data(), v.data(), n);
    ops::batchnorm_relu_forward(y_fused.data(), x.data(), mean.data(), var.data(), gamma.data(),
                                beta.data(), s, eps);
    ASSERT_TRUE(same_bits(y_fused, y_pair)) << "fused forward " << what;
    std::vector<T> g(n), dx_pair(n), dx_fused(n), masked(n);
    std::vector<T> dg_pair(s.channels, T(0)), db_pair(dg_pair), dg_fused(dg_pair),
        db_fused(dg_pair);
    ops::relu_backward(g.data(), v.data(), dy.data(), n);
    ops::batchnorm_backward(dx_pair.data(), dg_pair.data(), db_pair.data(), g.data(), x.data(),
                            mean.data(), var.data(), gamma.data(), s, eps, true);
    ops::batchnorm_relu_backward(dx_fused.data(), dg_fused.data(), db_fused.data(), dy.data(),
                                 x.data(), mean.data(), var.data(), gamma.data(), beta.data(), s,
                                 eps, true);
    ASSERT_TRUE(same_bits(dx_fused, dx_pair)) << "fused backward " << what;
    ASSERT_TRUE(same_bits(dg_fused, dg_pair)) << "fused dgamma " << what;
    ASSERT_TRUE(same_bits(db_fused, db_pair)) << "fused dbeta " << what;
    ops::batchnorm_relu_mask(masked.data(), dy.data(), x.data(), mean.data(), var.data(),
                             gamma.data(), beta.data(), s, eps);
    ASSERT_TRUE(same_bits(masked, g)) << "fused mask " << what;
  }
  ops::set_threads(saved);
}

TEST_P(OpsSweepAllPaths, BatchNormAndBatchNormReluMatchTheReferenceAndEachOther) {
  sweep_batchnorm<float>(41, 120);
  sweep_batchnorm<double>(42, 60);
}

/// The BatchNorm2d + ReLU + 2x2 / stride-2 MaxPool2d step (a stem) against the ops it stands
/// for on the same path: batchnorm_forward then relu_maxpool2d_forward, and
/// relu_maxpool2d_backward (from the BatchNorm's output) then batchnorm_backward. The same
/// bits, argmax included, on odd heights and widths (a last row or column that no window
/// reads), planes shorter than the sums' 16 lanes, resnet's 28 x 28, batch and running
/// statistics, with and without dx, 1 and 2 threads; with exact zeros among the normalised
/// values (x = mean where beta = 0), where the ReLU's rule decides, and ties in the windows.
template <typename T>
void sweep_batchnorm_relu_pool(uint64_t seed, int cases) {
  Rng rng(seed);
  const int saved = ops::threads();
  for (int c = 0; c < cases; ++c) {
    ops::set_threads(1 + c % 2);
    const int64_t batch = 1 + int64_t(rng.below(4)), channels = 1 + int64_t(rng.below(6));
    const int64_t h = c % 9 == 0 ? 28 : 2 + int64_t(rng.below(9));
    const int64_t w = c % 9 == 0 ? 28 : 2 + int64_t(rng.below(9));
    const ops::NormShape s{batch, channels, h * w};
    const ops::PoolShape p = ops::make_pool_shape(batch, channels, h, w, 2, 2, 2, 2, 0, 0);
    const int64_t n = batch * channels * h * w, m = batch * channels * p.out_h * p.out_w;
    const std::string what = "batch=" + std::to_string(batch) +
                             " channels=" + std::to_string(channels) + " h=" + std::to_string(h) +
                             " w=" + std::to_string(w) +
                             " threads=" + std::to_string(ops::threads());
    auto [mean, var, gamma, beta, x] = random_norm_case<T>(rng, s);
    for (int64_t k = 1; k < n; ++k) {
      if (rng.below(8) == 0) x[k] = x[k - 1];  // ties, left or right in a window
    }
    const auto dy = random_vector<T>(rng, m);
    const T eps = T(1e-5);

    std::vector<T> v(n), y_three(m), y_fused(m, T(9));
    std::vector<int32_t> argmax_three(m), argmax_fused(m, -1);
    ops::batchnorm_forward(v.data(), x.data(), mean.data(), var.data(), gamma.data(), beta.data(),
                           s, eps);
    ops::relu_maxpool2d_forward(y_three.data(), argmax_three.data(), v.data(), p);
    ops::batchnorm_relu_maxpool2x2_forward(y_fused.data(), argmax_fused.data(), x.data(),
                                           mean.data(), var.data(), gamma.data(), beta.data(), s, h,
                                           w, eps);
    ASSERT_TRUE(same_bits(y_fused, y_three)) << "forward " << what;
    ASSERT_EQ(argmax_fused, argmax_three) << "argmax " << what;

    for (const bool batch_statistics : {true, false})
      for (const bool with_dx : {true, false}) {
        const std::string which =
            what + (batch_statistics ? " batch" : " running") + (with_dx ? "" : " without dx");
        std::vector<T> g(n), dx_three(n), dx_fused(n, T(9));
        std::vector<T> dg_three(channels, T(0.5)), db_three(dg_three), dg_fused(dg_three),
            db_fused(dg_three);
        ops::relu_maxpool2d_backward(g.data(), dy.data(), v.data(), argmax_three.data(), p);
        ops::batchnorm_backward(dx_three.data(), dg_three.data(), db_three.data(), g.data(),
                                x.data(), mean.data(), var.data(), gamma.data(), s, eps,
                                batch_statistics);
        ops::maxpool2x2_relu_batchnorm_backward(
            with_dx ? dx_fused.data() : nullptr, dg_fused.data(), db_fused.data(), dy.data(),
            argmax_fused.data(), x.data(), mean.data(), var.data(), gamma.data(), beta.data(), s, h,
            w, eps, batch_statistics);
        if (with_dx) {
          ASSERT_TRUE(same_bits(dx_fused, dx_three)) << "dx " << which;
        }
        ASSERT_TRUE(same_bits(dg_fused, dg_three)) << "dgamma " << which;
        ASSERT_TRUE(same_bits(db_fused, db_three)) << "dbeta " << which;
      }
  }
  ops::set_threads(saved);
}

TEST_P(OpsSweepAllPaths, BatchNormReluMaxPoolEqualsTheThreeOpsBitForBit) {
  sweep_batchnorm_relu_pool<float>(43, 120);
  sweep_batchnorm_relu_pool<double>(44, 40);
}

/// The stem's backward with the BatchNorm's input gradient made image by image
/// (ops::maxpool2x2_relu_batchnorm_backward_by_image) and read so by the convolution before it
/// (ops::conv2d_weight_backward_by_image), bit for bit against maxpool2x2_relu_batchnorm_backward
/// writing dx, then conv2d_backward without an input gradient: the images themselves, dgamma,
/// dbeta and the convolution's weight and bias gradients (accumulated onto values already
/// there). Odd shapes, 1 to 3 input channels, 3x3 and 5x5 kernels, resnet's 28 x 28 stem,
/// batch and running statistics, with and without a bias, 1 and 2 threads. Where the ops do not
/// take the shape (reference mode, a method other than the direct kernels'), they must say so
/// and compute nothing.
void sweep_batchnorm_relu_pool_conv_by_image(uint64_t seed, int cases) {
  Rng rng(seed);
  int taken = 0;
  for (int c = 0; c < cases; ++c) {
    ops::set_threads(1 + c % 2);
    const bool stem = c % 7 == 0;
    const int64_t kernel = stem || c % 3 != 0 ? 3 : 5;
    const int64_t batch = 1 + int64_t(rng.below(stem ? 3 : 5));
    const int64_t in_channels = stem ? 1 : 1 + int64_t(rng.below(3));
    const int64_t channels = stem ? 32 : 1 + int64_t(rng.below(9));
    const int64_t h = stem ? 28 : 2 * (1 + int64_t(rng.below(7)));
    const int64_t w = stem ? 28 : 2 * (1 + int64_t(rng.below(7)));
    const int64_t pad = kernel / 2;
    const ops::ConvShape cs =
        ops::make_conv_shape(batch, in_channels, h, w, channels, kernel, kernel, 1, 1, pad, pad);
    const ops::NormShape s{batch, channels, h * w};
    const ops::PoolShape p = ops::make_pool_shape(batch, channels, h, w, 2, 2, 2, 2, 0, 0);
    const int64_t n = batch * channels * h * w, m = batch * channels * p.out_h * p.out_w;
    const bool bias = c % 2 == 0;
    const std::string what = "batch=" + std::to_string(batch) +
                             " in=" + std::to_string(in_channels) +
                             " channels=" + std::to_string(channels) + " h=" + std::to_string(h) +
                             " w=" + std::to_string(w) + " kernel=" + std::to_string(kernel) +
                             (bias ? " bias" : "") + " threads=" + std::to_string(ops::threads());
    const auto x_conv = random_vector<float>(rng, batch * in_channels * h * w);
    const auto weights = random_vector<float>(rng, channels * in_channels * kernel * kernel);
    auto [mean, var, gamma, beta, unused] = random_norm_case<float>(rng, s);
    std::vector<float> x(n);  // the BatchNorm's input: the convolution's output
    ops::conv2d_forward<float>(x.data(), x_conv.data(), weights.data(), nullptr, cs);
    const auto dy = random_vector<float>(rng, m);
    const float eps = 1e-5f;
    std::vector<float> pooled(m);
    std::vector<int32_t> argmax(m);
    ops::batchnorm_relu_maxpool2x2_forward(pooled.data(), argmax.data(), x.data(), mean.data(),
                                           var.data(), gamma.data(), beta.data(), s, h, w, eps);
    const bool takes = ops::conv2d_weight_backward_by_image_takes(cs);
    if (ops::reference_mode()) {
      ASSERT_FALSE(takes) << what;
    }
    for (const bool batch_statistics : {true, false}) {
      const std::string which = what + (batch_statistics ? " batch" : " running");
      std::vector<float> dx(n), dg_ops(channels, 0.5f), db_ops(dg_ops);
      std::vector<float> dw_ops(weights.size(), 0.25f), dbias_ops(channels, -0.5f);
      ops::maxpool2x2_relu_batchnorm_backward(
          dx.data(), dg_ops.data(), db_ops.data(), dy.data(), argmax.data(), x.data(), mean.data(),
          var.data(), gamma.data(), beta.data(), s, h, w, eps, batch_statistics);
      ops::conv2d_backward<float>(nullptr, dw_ops.data(), bias ? dbias_ops.data() : nullptr,
                                  x_conv.data(), weights.data(), dx.data(), cs);

      std::vector<float> dg(channels, 0.5f), db(dg), dw(weights.size(), 0.25f),
          dbias(channels, -0.5f);
      ops::ImageGradientSource images;
      const bool made = ops::maxpool2x2_relu_batchnorm_backward_by_image(
          dg.data(), db.data(), dy.data(), argmax.data(), x.data(), mean.data(), var.data(),
          gamma.data(), beta.data(), s, h, w, eps, batch_statistics, &images);
      ASSERT_EQ(made, !ops::reference_mode()) << which;
      if (!made) {
        ASSERT_EQ(dg, std::vector<float>(channels, 0.5f)) << "computed in reference mode";
        continue;
      }
      ASSERT_TRUE(same_bits(dg, dg_ops)) << "dgamma " << which;
      ASSERT_TRUE(same_bits(db, db_ops)) << "dbeta " << which;
      std::vector<float> image(n / batch, 9.0f);
      for (int64_t i = 0; i < batch; ++i) {
        images.fill(images.context, i, image.data());
        const std::vector<float> written(dx.begin() + i * (n / batch),
                                         dx.begin() + (i + 1) * (n / batch));
        ASSERT_TRUE(same_bits(image, written)) << "image " << i << " " << which;
      }
      if (!takes) {
        EXPECT_THROW(
            ops::conv2d_weight_backward_by_image(dw.data(), nullptr, x_conv.data(), images, cs),
            std::logic_error)
            << which;
        continue;
      }
      ++taken;
      ops::conv2d_weight_backward_by_image(dw.data(), bias ? dbias.data() : nullptr, x_conv.data(),
                                           images, cs);
      ASSERT_TRUE(same_bits(dw, dw_ops)) << "dw " << which;
      ASSERT_TRUE(same_bits(dbias, dbias_ops)) << "bias gradient " << which;
    }
  }
  // The direct kernels take every shape here under kAuto and kDirect, the 5x5 ones under
  // kWinograd.
  const ops::ConvAlgorithm algorithm = ops::conv_algorithm();
  if (!ops::reference_mode() &&
      (algorithm == ops::ConvAlgorithm::kAuto || algorithm == ops::ConvAlgorithm::kDirect)) {
    EXPECT_EQ(taken, 2 * cases);
  }
  if (!ops::reference_mode() && algorithm == ops::ConvAlgorithm::kWinograd) {
    EXPECT_GT(taken, 0);
  }
}

TEST_P(OpsSweepAllPaths, StemBackwardByImageEqualsTheWrittenInputGradientBitForBit) {
  const testing::RestoreOpsSettings restore;
  sweep_batchnorm_relu_pool_conv_by_image(53, 60);
}

/// A residual block's end (ops::batchnorm_add_relu_forward, its mask, and the mask with the
/// body BatchNorm's backward) bit for bit against the ops it stands for: batchnorm_forward of
/// the body's branch and of a projection shortcut's (or the identity's addend), add_forward with
/// its ReLU, relu_backward of the sum, batchnorm_backward from that (batch and running
/// statistics); on odd (batch,
/// channels, inner), 1 and 2 threads, with exact zeros among the sums (the addend the negated
/// normalised value, or the shortcut's x equal to the body's where their affines cancel),
/// where the ReLU's rule at 0 decides, and with the gradient written over dy in place.
template <typename T>
void sweep_batchnorm_add_relu(uint64_t seed, int cases) {
  Rng rng(seed);
  const int saved = ops::threads();
  for (int c = 0; c < cases; ++c) {
    ops::set_threads(1 + c % 2);
    const bool projection = c % 2 == 1;
    const ops::NormShape s{1 + int64_t(rng.below(4)), 1 + int64_t(rng.below(6)),
                           1 + int64_t(rng.below(c % 7 == 0 ? 800 : 40))};
    const int64_t n = s.batch * s.channels * s.inner;
    const std::string what =
        "batch=" + std::to_string(s.batch) + " channels=" + std::to_string(s.channels) +
        " inner=" + std::to_string(s.inner) + (projection ? " projection" : " identity") +
        " threads=" + std::to_string(ops::threads());
    const T eps = T(1e-5);
    auto a = random_norm_case<T>(rng, s);
    auto b = random_norm_case<T>(rng, s);
    std::vector<T> va(n), vb(n);
    ops::batchnorm_forward(va.data(), a.x.data(), a.mean.data(), a.var.data(), a.gamma.data(),
                           a.beta.data(), s, eps);
    if (projection) {
      // The shortcut's affine the body's negated: where the two x agree, the sum is exactly 0.
      for (int64_t ch = 0; ch < s.channels; ++ch) {
        b.mean[ch] = a.mean[ch];
        b.var[ch] = a.var[ch];
        b.gamma[ch] = -a.gamma[ch];
        b.beta[ch] = -a.beta[ch];
      }
      for (int64_t k = 0; k < n; ++k) {
        if (rng.below(6) == 0) b.x[k] = a.x[k];
      }
      ops::batchnorm_forward(vb.data(), b.x.data(), b.mean.data(), b.var.data(), b.gamma.data(),
                             b.beta.data(), s, eps);
    } else {
      for (int64_t k = 0; k < n; ++k) vb[k] = rng.below(6) == 0 ? -va[k] : b.x[k];
    }
    const ops::NormOperand<T> body{a.x.data(),     a.mean.data(), a.var.data(),
                                   a.gamma.data(), a.beta.data(), eps};
    const ops::NormOperand<T> shortcut{b.x.data(),     b.mean.data(), b.var.data(),
                                       b.gamma.data(), b.beta.data(), eps};
    const ops::NormOperand<T>* const shortcut_norm = projection ? &shortcut : nullptr;
    const T* const addend = projection ? nullptr : vb.data();

    std::vector<T> sum(n), y_ops(n), y_fused(n, T(9));
    ops::add_forward(sum.data(), y_ops.data(), va.data(), vb.data(), n, true);
    ops::batchnorm_add_relu_forward(y_fused.data(), body, shortcut_norm, addend, s);
    ASSERT_TRUE(same_bits(y_fused, y_ops)) << "forward " << what;
    int64_t zeros = 0;
    for (const T v : sum) zeros += v == T(0);
    if (s.inner > 8) {
      ASSERT_GT(zeros, 0) << "no exact zero among the sums: " << what;
    }

    const auto dy = random_vector<T>(rng, n);
    std::vector<T> g_ops(n), g_fused(n, T(9)), g_in_place = dy;
    ops::relu_backward(g_ops.data(), sum.data(), dy.data(), n);
    ops::batchnorm_add_relu_mask(g_fused.data(), dy.data(), body, shortcut_norm, addend, s);
    ASSERT_TRUE(same_bits(g_fused, g_ops)) << "mask " << what;
    ops::batchnorm_add_relu_mask(g_in_place.data(), g_in_place.data(), body, shortcut_norm, addend,
                                 s);
    ASSERT_TRUE(same_bits(g_in_place, g_ops)) << "mask in place " << what;

    // The mask made in the body BatchNorm's sums' pass, with that BatchNorm's backward.
    for (const bool batch_statistics : {true, false}) {
      const std::string which = what + (batch_statistics ? " batch" : " running");
      std::vector<T> dx_ops(n), dg_ops(s.channels, T(0.5)), db_ops(dg_ops);
      ops::batchnorm_backward(dx_ops.data(), dg_ops.data(), db_ops.data(), g_ops.data(), a.x.data(),
                              a.mean.data(), a.var.data(), a.gamma.data(), s, eps,
                              batch_statistics);
      std::vector<T> g(n, T(9)), dx(n, T(9)), dg(s.channels, T(0.5)), db(dg);
      ops::batchnorm_add_relu_backward(g.data(), dx.data(), dg.data(), db.data(), dy.data(), body,
                                       shortcut_norm, addend, s, batch_statistics);
      ASSERT_TRUE(same_bits(g, g_ops)) << "backward's mask " << which;
      ASSERT_TRUE(same_bits(dx, dx_ops)) << "dx " << which;
      ASSERT_TRUE(same_bits(dg, dg_ops)) << "dgamma " << which;
      ASSERT_TRUE(same_bits(db, db_ops)) << "dbeta " << which;
    }
  }
  ops::set_threads(saved);
}

TEST_P(OpsSweepAllPaths, BatchNormAddReluEqualsTheOpsItReplacesBitForBit) {
  sweep_batchnorm_add_relu<float>(47, 120);
  sweep_batchnorm_add_relu<double>(48, 40);
}

// BatchNorm's float sums run by AVX2 loops where the CPU has AVX2 and by scalar loops on the
// portable path: the same 16 double lanes in the same order, so the same bits. Statistics,
// and the backward alone and fused with the ReLU, on planes shorter than, equal to and longer
// than the 16 lanes, with and without a tail, 1 and 2 threads, on sums that round; the input
// gradient's element-wise pass is vectorised too, by the same float operations, and gives the
// same bits, as must the forward's (scalar on every instruction set today).
TEST(OpsSweep, BatchNormSumsAreTheSameBitsOnEveryInstructionSet) {
  const testing::RestoreOpsSettings restore;
  Rng rng(45);
  for (const int64_t inner : {1, 5, 15, 16, 17, 31, 33, 49, 196, 784, 1000}) {
    ops::set_threads(1 + int(inner % 2));
    const ops::NormShape s{3, 4, inner};
    const int64_t n = s.batch * s.channels * s.inner;
    // Sums of floats of one scale are exact in double, whatever the order; these round. Every
    // 16th value is +2^big (lane 0) and the one 9 later -2^big (lane 9): within a lane they
    // swallow the small values added to them, and the lanes cancel only when lane_total adds
    // them up, so an element summed in another lane, or lanes added in another order, change
    // the result.
    const auto lopsided = [&](int64_t count, int big) {
      std::vector<float> v(static_cast<size_t>(count));
      for (int64_t i = 0; i < count; ++i) {
        const int64_t k = i % s.inner % 16;
        v[i] = k == 0   ? std::ldexp(1.0f, big)
               : k == 9 ? -std::ldexp(1.0f, big)
                        : float(rng.normal());
      }
      return v;
    };
    const std::vector<float> x = lopsided(n, 60), dy = lopsided(n, 40);
    std::vector<float> z(static_cast<size_t>(n));
    for (float& v : z) v = float(rng.normal() * 3 + 1);
    std::vector<float> gamma(s.channels), beta(s.channels);
    for (int64_t c = 0; c < s.channels; ++c) {
      gamma[c] = float(rng.uniform(-1.5, 1.5));
      beta[c] = float(rng.normal() * 0.3);
    }
    struct Result {
      std::vector<float> mean, var, dx, dg, db, dx_relu, dg_relu, db_relu, y, y_relu;
    };
    const auto run = [&](ops::Isa isa) {
      ops::set_isa(isa);
      Result r{std::vector<float>(s.channels),
               std::vector<float>(s.channels),
               std::vector<float>(n),
               std::vector<float>(s.channels, 0.25f),
               std::vector<float>(s.channels, 0.25f),
               std::vector<float>(n),
               std::vector<float>(s.channels, 0.25f),
               std::vector<float>(s.channels, 0.25f),
               std::vector<float>(n),
               std::vector<float>(n)};
      ops::batchnorm_statistics(r.mean.data(), r.var.data(), x.data(), s);
      // The forward passes too (scalar today, held to the same bits should they be vectorised
      // like the input gradient's), on values of one scale (x's would normalise its small values
      // to next to nothing beside beta, where an FMA rounds as a multiply and add do), with
      // their own statistics.
      std::vector<float> z_mean(s.channels), z_var(s.channels);
      ops::batchnorm_statistics(z_mean.data(), z_var.data(), z.data(), s);
      ops::batchnorm_forward(r.y.data(), z.data(), z_mean.data(), z_var.data(), gamma.data(),
                             beta.data(), s, 1e-5f);
      ops::batchnorm_relu_forward(r.y_relu.data(), z.data(), z_mean.data(), z_var.data(),
                                  gamma.data(), beta.data(), s, 1e-5f);
      ops::batchnorm_backward(r.dx.data(), r.dg.data(), r.db.data(), dy.data(), x.data(),
                              r.mean.data(), r.var.data(), gamma.data(), s, 1e-5f, true);
      ops::batchnorm_relu_backward(r.dx_relu.data(), r.dg_relu.data(), r.db_relu.data(), dy.data(),
                                   x.data(), r.mean.data(), r.var.data(), gamma.data(), beta.data(),
                                   s, 1e-5f, true);
      return r;
    };
    const Result portable = run(ops::Isa::kPortable);
    for (const ops::Isa isa : ops::supported_isas()) {
      if (isa == ops::Isa::kPortable) continue;
      const Result wide = run(isa);
      const std::string what =
          "inner " + std::to_string(inner) + " isa " + std::to_string(static_cast<int>(isa));
      EXPECT_TRUE(same_bits(wide.mean, portable.mean)) << what;
      EXPECT_TRUE(same_bits(wide.var, portable.var)) << what;
      EXPECT_TRUE(same_bits(wide.dx, portable.dx)) << what;
      EXPECT_TRUE(same_bits(wide.dg, portable.dg)) << what;
      EXPECT_TRUE(same_bits(wide.db, portable.db)) << what;
      EXPECT_TRUE(same_bits(wide.dx_relu, portable.dx_relu)) << what;
      EXPECT_TRUE(same_bits(wide.dg_relu, portable.dg_relu)) << what;
      EXPECT_TRUE(same_bits(wide.db_relu, portable.db_relu)) << what;
      EXPECT_TRUE(same_bits(wide.y, portable.y)) << what;
      EXPECT_TRUE(same_bits(wide.y_relu, portable.y_relu)) << what;
    }
  }
}

constexpr const char* kGradientNames[] = {"dx", "dw", "db"};

/// dx, dw and db of conv2d_backward on `threads` threads, dw and db accumulated onto 0.25.
template <typename T>
std::vector<std::vector<T>> conv_gradients(const ops::ConvShape& s, const std::vector<T>& x,
                                           const std::vector<T>& w, const std::vector<T>& dy,
                                           int threads) {
  ops::set_threads(threads);
  std::vector<T> dx(x.size()), dw(w.size(), T(0.25)),
      db(static_cast<size_t>(s.out_channels), T(0.25));
  ops::conv2d_backward(dx.data(), dw.data(), db.data(), x.data(), w.data(), dy.data(), s);
  return {dx, dw, db};
}

// A convolution's weight and bias gradients are summed over max(2, threads) blocks of images
// (detail::gradient_blocks: each block summed from zero, the blocks added in order), so 1 and 2
// threads give the same bits, on every method of the weight gradient and every instruction
// set, float and double; 3 threads (three blocks) their own bits, run after run. Odd batches,
// so the blocks differ in size.
TEST(OpsSweep, Conv2dBackwardIsTheSameBitsOnOneAndTwoThreads) {
  const testing::RestoreOpsSettings restore;
  ops::set_conv_algorithm(ops::ConvAlgorithm::kAuto);
  const ops::ConvShape shapes[] = {
      ops::make_conv_shape(9, 3, 11, 10, 8, 5, 5, 1, 1, 2, 2),   // direct
      shape3x3(7, 16, 9, 9, 16, 1),                              // F(2x2), 4 tiles a vector
      shape3x3(37, 16, 14, 14, 16, 1),                           // F(2x2) across the lanes
      shape3x3(19, 16, 7, 7, 32, 1),                             // F(4x4)
      ops::make_conv_shape(17, 16, 9, 9, 32, 3, 3, 2, 2, 1, 1),  // implicit GEMM
      ops::make_conv_shape(9, 16, 9, 9, 32, 1, 1, 2, 2, 0, 0)};  // im2col + GEMM
  std::set<std::string> methods;
  Rng rng(61);
  for (const ops::Isa isa : ops::supported_isas()) {
    ops::set_isa(isa);
    for (const ops::ConvShape& s : shapes) {
      const std::string method = ops::conv2d_weight_grad_method(s);
      methods.insert(method);
      SCOPED_TRACE(std::string(ops::isa_name(isa)) + ", " + method + ", " + describe(s));
      const auto x = random_vector<float>(rng, s.batch * s.in_channels * s.in_h * s.in_w),
                 w = random_vector<float>(rng,
                                          s.out_channels * s.in_channels * s.kernel_h * s.kernel_w),
                 dy = random_vector<float>(rng, s.batch * s.out_channels * s.out_h * s.out_w);
      const auto one = conv_gradients(s, x, w, dy, 1), two = conv_gradients(s, x, w, dy, 2),
                 three = conv_gradients(s, x, w, dy, 3);
      const auto three_again = conv_gradients(s, x, w, dy, 3);
      for (size_t k = 0; k < 3; ++k) {
        EXPECT_TRUE(same_bits(one[k], two[k])) << kGradientNames[k] << ": 1 and 2 threads";
        EXPECT_TRUE(same_bits(three[k], three_again[k])) << kGradientNames[k] << ": 3 threads";
      }
    }
  }
  ops::set_isa(restore.isa);
  for (const char* method : {"direct", "winograd", "winograd4x4", "implicit", "gemm"})
    EXPECT_TRUE(methods.count(method)) << method << " was not reached";
  // Double (im2col + GEMM, its one method): the first shape.
  const ops::ConvShape s = shapes[0];
  const auto x = random_vector<double>(rng, s.batch * s.in_channels * s.in_h * s.in_w),
             w = random_vector<double>(rng, s.out_channels * s.in_channels * 25),
             dy = random_vector<double>(rng, s.batch * s.out_channels * s.out_h * s.out_w);
  const auto one = conv_gradients(s, x, w, dy, 1), two = conv_gradients(s, x, w, dy, 2);
  for (size_t k = 0; k < 3; ++k)
    EXPECT_TRUE(same_bits(one[k], two[k])) << "double " << kGradientNames[k];
}

// BatchNorm's threads split the images (the planes, below 2 images), and each plane's sums
// are added over the images in order by one thread; planes shorter than 16 values (BatchNorm1d)
// split the channels, each thread adding its channels' plane sums over the images in order:
// the same bits on 1 and 2 threads. The sums round: every channel's plane of image 0 starts
// with +2^60 and of image 4 with -2^60 (in x and in dy), which swallow the other images' sums
// added to them in one order and not in another (two threads' partial sums added up).
TEST(OpsSweep, BatchNormIsTheSameBitsOnOneAndTwoThreads) {
  const testing::RestoreOpsSettings restore;
  Rng rng(46);
  // All above the one-thread size (16,384 values).
  for (const ops::NormShape s : {ops::NormShape{7, 3, 1000}, ops::NormShape{1, 5, 4000},
                                 ops::NormShape{7, 2501, 1}, ops::NormShape{6, 301, 15}}) {
    SCOPED_TRACE("batch " + std::to_string(s.batch) + ", planes of " + std::to_string(s.inner));
    const int64_t n = s.batch * s.channels * s.inner;
    const auto lopsided = [&] {
      std::vector<float> v(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i) {
        const int64_t image = i / (s.channels * s.inner), k = i % s.inner;
        v[i] = k == 0 && image == 0   ? std::ldexp(1.0f, 60)
               : k == 0 && image == 4 ? -std::ldexp(1.0f, 60)
                                      : float(rng.normal());
      }
      return v;
    };
    const std::vector<float> x = lopsided(), dy = lopsided();
    std::vector<float> gamma(s.channels), beta(s.channels);
    for (int64_t c = 0; c < s.channels; ++c) {
      gamma[c] = float(rng.uniform(-1.5, 1.5));
      beta[c] = float(rng.normal() * 0.3);
    }
    const auto run = [&](int threads) {
      ops::set_threads(threads);
      std::vector<float> mean(s.channels), var(s.channels), y(n), dx(n), dx_relu(n),
          sums(4 * s.channels, 0.25f);
      ops::batchnorm_statistics(mean.data(), var.data(), x.data(), s);
      ops::batchnorm_relu_forward(y.data(), x.data(), mean.data(), var.data(), gamma.data(),
                                  beta.data(), s, 1e-5f);
      ops::batchnorm_backward(dx.data(), sums.data(), sums.data() + s.channels, dy.data(), x.data(),
                              mean.data(), var.data(), gamma.data(), s, 1e-5f, true);
      ops::batchnorm_relu_backward(dx_relu.data(), sums.data() + 2 * s.channels,
                                   sums.data() + 3 * s.channels, dy.data(), x.data(), mean.data(),
                                   var.data(), gamma.data(), beta.data(), s, 1e-5f, true);
      return std::vector<std::vector<float>>{mean, var, y, dx, dx_relu, sums};
    };
    const auto one = run(1), two = run(2);
    const char* names[] = {"mean", "var", "forward y", "dx", "fused dx", "dgamma and dbeta"};
    for (size_t k = 0; k < one.size(); ++k) EXPECT_TRUE(same_bits(one[k], two[k])) << names[k];
  }
}

// kAuto's method rule at its edges: Winograd for 3x3 stride-1 layers with 16+ channels and at
// least 16 tiles in the batch; with fewer tiles (a 4x4 plane at batch 1..3), im2col + GEMM for
// all three products, never the direct kernels; 4x4 planes with padding 1 by F(4x4, 3x3); where the
// tiles cover 5/4 or more of the output (odd sides such as 7x7), the implicit GEMM for all three
// from a batch of 16 with 16+ channels in and 32+ out, else the forward of a batch of 32 or more by
// the direct kernels; stride-2 layers of 3x3+ kernels by the implicit GEMM under the same batch and
// channel bounds, else their forward over the input's phases; a Winograd layer whose products read
// the padding in a quarter or more of the cases, or with 16 channels in or out on an output plane
// of 28x28 or more (the latter on AVX2's too), its backward by the implicit GEMM on the AVX-512
// kernels; a stride-1 layer
// without padding whose direct forward would throw away a quarter or more of its positions, its
// forward and weight gradient by the implicit GEMM.
TEST(OpsSweep, AutoMethodRuleAtItsEdges) {
  const testing::RestoreOpsSettings restore;
  ops::set_conv_algorithm(ops::ConvAlgorithm::kAuto);
  const auto methods_of = [](const ops::ConvShape& s) {
    return std::string(ops::conv2d_forward_method(s)) + "/" + ops::conv2d_weight_grad_method(s) +
           "/" + ops::conv2d_input_grad_method(s);
  };
  const auto methods = [&](int64_t batch, int64_t size, int64_t channels,
                           int64_t out_channels = 0) {
    return methods_of(ops::make_conv_shape(
        batch, channels, size, size, out_channels > 0 ? out_channels : channels, 3, 3, 1, 1, 1, 1));
  };
  EXPECT_EQ(methods(1, 4, 128), "gemm/gemm/gemm");              // 4 tiles
  EXPECT_EQ(methods(3, 4, 128), "gemm/gemm/gemm");              // 12
  EXPECT_EQ(methods(4, 4, 128), "winograd/winograd/winograd");  // 16 tiles
  EXPECT_EQ(methods(1, 7, 64), "winograd/winograd/winograd");   // 16
  EXPECT_EQ(methods(1, 3, 16), "gemm/gemm/gemm");               // 4
  EXPECT_EQ(methods(1, 3, 8), "direct/direct/direct");          // not Winograd's shape: unchanged
  EXPECT_EQ(methods(15, 7, 64), "winograd/winograd/winograd");  // 64 / 49 covered, batch 15
  EXPECT_EQ(methods(16, 7, 64), "winograd4x4/winograd4x4/winograd4x4");  // batch 16: F(4x4)
  EXPECT_EQ(methods(16, 5, 64), "implicit/implicit/implicit");      // 5x5: F(4x4) covers 64 / 25
  EXPECT_EQ(methods(256, 5, 32), "implicit/implicit/implicit");     // 36 / 25
  EXPECT_EQ(methods(64, 7, 32, 31), "direct/winograd/winograd");    // 31 channels out
  EXPECT_EQ(methods(31, 7, 32, 31), "winograd/winograd/winograd");  // batch 31: Winograd
  EXPECT_EQ(methods(32, 7, 16), "direct/winograd/winograd");        // batch 32, 16 out
  EXPECT_EQ(methods(256, 9, 32), "winograd/winograd/winograd");     // 100 / 81 < 5 / 4
  EXPECT_EQ(methods(256, 14, 32), "winograd/winograd/winograd");    // even: covered exactly
  // An evaluation forward of such a layer by F(4x4) where its tiles fit too, from 16 images,
  // within the implicit GEMM's channel bounds; a training forward keeps F(2x2).
  const auto inference_forward = [](int64_t batch, int64_t size, int64_t channels,
                                    int64_t out_channels) {
    ops::ConvShape s =
        ops::make_conv_shape(batch, channels, size, size, out_channels, 3, 3, 1, 1, 1, 1);
    s.inference = true;
    return std::string(ops::conv2d_forward_method(s));
  };
  EXPECT_EQ(inference_forward(256, 14, 32, 32), "winograd4x4");  // 16x16 for 14x14 < 4/3
  EXPECT_EQ(inference_forward(16, 14, 32, 64), "winograd4x4");   // 16 images
  EXPECT_EQ(inference_forward(15, 14, 32, 32), "winograd");      // 15 images
  EXPECT_EQ(inference_forward(64, 14, 32, 31), "winograd");      // 31 out: under 32
  EXPECT_EQ(inference_forward(64, 14, 15, 32), "direct");        // 15 in: not Winograd's
  EXPECT_EQ(inference_forward(64, 10, 32, 32), "winograd");      // 12x12 for 10x10: 1.44
  EXPECT_EQ(inference_forward(64, 8, 32, 32), "winograd4x4");    // 8x8: filled
  EXPECT_EQ(inference_forward(64, 7, 64, 64), "winograd4x4");    // F(4x4)'s own layers
  EXPECT_EQ(inference_forward(64, 7, 32, 31), "direct");         // as in training
  // 4x4 planes with padding 1 (one 6x6 tile) by F(4x4, 3x3) from 16 images, on every
  // instruction set; other padding or sizes are not its shape.
  const ops::Isa isa_before = ops::isa();
  const std::vector<ops::Isa> supported = ops::supported_isas();
  for (const ops::Isa isa : supported) {
    ops::set_isa(isa);
    EXPECT_EQ(methods(64, 4, 128), "winograd4x4/winograd4x4/winograd4x4") << ops::isa_name(isa);
    EXPECT_EQ(methods(64, 4, 16, 32), "winograd4x4/winograd4x4/winograd4x4");  // 16 in, 32 out
    EXPECT_EQ(methods(16, 4, 128), "winograd4x4/winograd4x4/winograd4x4");     // batch 16
    EXPECT_EQ(methods(15, 4, 128), "winograd/winograd/winograd");              // batch 15
    EXPECT_EQ(methods(64, 4, 32, 31), "winograd4x4/winograd4x4/winograd4x4");  // 31 out
    EXPECT_EQ(methods(64, 4, 15, 32), "direct/direct/direct");  // 15 in: not Winograd's
    EXPECT_EQ(methods_of(ops::make_conv_shape(64, 32, 6, 6, 32, 3, 3, 1, 1, 0, 0)),
              "winograd/winograd/winograd");  // 6x6 unpadded: F(2x2)
    EXPECT_STREQ(
        ops::conv2d_forward_method(ops::make_conv_shape(64, 32, 4, 6, 32, 3, 3, 1, 1, 1, 1)),
        "winograd");  // 4x6: F(2x2)
  }
  // A Winograd layer whose products read the padding in a quarter or more of the cases (6x6:
  // 21%, 2x2: 56%) takes the implicit GEMM's backward on the AVX-512 kernels, under the
  // implicit GEMM's batch and channel bounds; its forward stays by Winograd.
  if (std::find(supported.begin(), supported.end(), ops::Isa::kAvx512) != supported.end()) {
    ops::set_isa(ops::Isa::kAvx512);
    EXPECT_EQ(methods(64, 6, 128), "winograd/winograd/winograd");     // 21% padding
    EXPECT_EQ(methods(64, 2, 32), "winograd/implicit/implicit");      // 2x2: 56%
    EXPECT_EQ(methods(64, 2, 16, 31), "winograd/winograd/winograd");  // 31 out
    // 16 channels in or out on an output plane of 28x28 or more, from 16 images: the backward
    // by the implicit GEMM too (16 channels: Winograd's products too small for its transforms).
    EXPECT_EQ(methods(64, 32, 16), "winograd/implicit/implicit");      // CIFAR's 16 x 32x32
    EXPECT_EQ(methods(16, 28, 16), "winograd/implicit/implicit");      // 784 outputs, 16 images
    EXPECT_EQ(methods(64, 28, 16, 32), "winograd/implicit/implicit");  // 16 in
    EXPECT_EQ(methods(64, 28, 32, 16), "winograd/implicit/implicit");  // 16 out
    EXPECT_EQ(methods(15, 28, 16), "winograd/winograd/winograd");      // 15 images
    EXPECT_EQ(methods(64, 26, 16), "winograd/winograd/winograd");      // 676 outputs
    EXPECT_EQ(methods(64, 28, 17), "winograd/winograd/winograd");      // 17 channels
    EXPECT_EQ(methods(64, 32, 32), "winograd/winograd/winograd");      // 32 channels
    EXPECT_EQ(methods_of(ops::make_conv_shape(64, 16, 27, 30, 16, 3, 3, 1, 1, 1, 1)),
              "winograd/implicit/implicit");  // 27 x 30: 810 outputs
    EXPECT_EQ(methods_of(ops::make_conv_shape(64, 16, 27, 29, 16, 3, 3, 1, 1, 1, 1)),
              "winograd/winograd/winograd");  // 27 x 29: 783
  }
  // On the AVX2 kernels (8 lanes) the narrow layers' backward by the implicit GEMM too, not
  // the padding exception's; the portable kernels keep Winograd's.
  if (std::find(supported.begin(), supported.end(), ops::Isa::kAvx2) != supported.end()) {
    ops::set_isa(ops::Isa::kAvx2);
    EXPECT_EQ(methods(64, 32, 16), "winograd/implicit/implicit");
    EXPECT_EQ(methods(64, 26, 16), "winograd/winograd/winograd");
    EXPECT_EQ(methods(64, 2, 32), "winograd/winograd/winograd");  // 2x2: AVX-512's alone
  }
  ops::set_isa(ops::Isa::kPortable);
  EXPECT_EQ(methods(64, 32, 16), "winograd/winograd/winograd");
  // A stride-1 layer without padding that the direct kernels would take, from a batch of 16
  // with 4+ channels in, whose output channels are a multiple of the lanes (4, 8 or 16) and
  // whose outputs fill less than 3/4 of the positions the direct kernels compute: its forward
  // and weight gradient by the implicit GEMM, its input gradient still direct (LeNet-5's
  // 6 -> 16 5x5 on 14x14: 100 outputs in rows of 14, 144 positions).
  const auto stride_one = [&](int64_t batch, int64_t size, int64_t in_channels,
                              int64_t out_channels, int64_t kernel, int64_t pad = 0) {
    return methods_of(ops::make_conv_shape(batch, in_channels, size, size, out_channels, kernel,
                                           kernel, 1, 1, pad, pad));
  };
  for (const ops::Isa each : supported) {
    ops::set_isa(each);
    const char* name = ops::isa_name(each);
    EXPECT_EQ(stride_one(16, 14, 6, 16, 5), "implicit/implicit/direct") << name;
    EXPECT_EQ(stride_one(256, 10, 16, 32, 5), "implicit/implicit/direct") << name;  // 36 of 64
    EXPECT_EQ(stride_one(15, 14, 6, 16, 5), "direct/direct/direct") << name;        // batch 15
    EXPECT_EQ(stride_one(64, 14, 3, 16, 5), "direct/direct/direct") << name;        // 3 in
    EXPECT_EQ(stride_one(64, 14, 6, 16, 7, 1), "direct/direct/direct") << name;     // padding 1
    EXPECT_EQ(stride_one(64, 28, 6, 16, 5), "direct/direct/direct") << name;        // 576 of 672
    EXPECT_EQ(methods_of(ops::make_conv_shape(16, 5, 10, 12, 32, 3, 5, 1, 1, 0, 0)),
              "implicit/implicit/direct")
        << name;  // 64 of 96
    // 24 channels out: one and a half vectors of AVX-512, three of AVX2, six portable ones.
    EXPECT_EQ(stride_one(64, 14, 6, 24, 5),
              each == ops::Isa::kAvx512 ? "direct/direct/direct" : "implicit/implicit/direct")
        << name;
  }
  ops::set_isa(isa_before);
  // Stride 2 (portable vectors of 4 floats): the implicit GEMM from a batch of 16 with 16+
  // channels in and 32+ out and 3x3+ kernels, and the forward alone of 1x1 kernels without
  // padding within the same bounds; else the forward over the input's phases (direct) for 3x3
  // kernels whose outputs fill 3/4 of the positions computed (rows of `row` floats, whole
  // vectors), im2col + GEMM otherwise, and the backward by GEMM.
  ops::set_isa(ops::Isa::kPortable);
  const auto strided = [&](int64_t batch, int64_t size, int64_t kernel, int64_t pad,
                           int64_t in_channels = 32, int64_t out_channels = 64) {
    return methods_of(ops::make_conv_shape(batch, in_channels, size, size, out_channels, kernel,
                                           kernel, 2, 2, pad, pad));
  };
  EXPECT_EQ(strided(16, 14, 3, 1), "implicit/implicit/implicit");
  EXPECT_EQ(strided(64, 3, 3, 1), "implicit/implicit/implicit");
  EXPECT_EQ(strided(64, 14, 1, 0), "implicit/gemm/gemm");         // 1x1
  EXPECT_EQ(strided(16, 7, 1, 0, 16, 32), "implicit/gemm/gemm");  // 1x1 at the bounds
  EXPECT_EQ(strided(15, 14, 1, 0), "gemm/gemm/gemm");             // 1x1, batch 15
  EXPECT_EQ(strided(64, 14, 1, 0, 15), "gemm/gemm/gemm");         // 1x1, 15 channels in
  EXPECT_EQ(strided(64, 14, 1, 0, 16, 31), "gemm/gemm/gemm");     // 1x1, 31 channels out
  EXPECT_EQ(strided(64, 14, 1, 1), "gemm/gemm/gemm");             // 1x1 with padding
  // Outside those channel bounds, from 4 images and 3 channels in, the weight gradient alone by
  // the implicit GEMM (3x3 or larger kernels: an RGB network's stem).
  EXPECT_EQ(strided(64, 14, 3, 1, 15), "direct/implicit/gemm");      // 15 channels in
  EXPECT_EQ(strided(64, 14, 3, 1, 16, 31), "direct/implicit/gemm");  // 31 channels out
  EXPECT_EQ(strided(4, 32, 7, 3, 3), "direct/implicit/gemm");        // ResNet's stem, batch 4
  EXPECT_EQ(strided(3, 32, 7, 3, 3), "direct/gemm/gemm");            // batch 3
  EXPECT_EQ(strided(64, 32, 3, 1, 2), "direct/gemm/gemm");           // 2 channels in
  EXPECT_EQ(strided(64, 32, 3, 1, 3, 16), "direct/implicit/gemm");   // 3 in, 16 out
  EXPECT_EQ(strided(64, 14, 1, 0, 3), "gemm/gemm/gemm");             // 1x1
  EXPECT_EQ(methods_of(ops::make_conv_shape(64, 3, 32, 32, 64, 3, 1, 2, 2, 1, 0)),
            "gemm/gemm/gemm");  // a 3x1 kernel
  EXPECT_EQ(methods_of(ops::make_conv_shape(64, 3, 32, 32, 64, 3, 3, 2, 1, 1, 1)),
            "gemm/gemm/gemm");  // stride 2 x 1
  EXPECT_EQ(strided(64, 14, 3, 1, 16, 32), "implicit/implicit/implicit");
  EXPECT_EQ(strided(15, 14, 3, 1), "direct/gemm/gemm");  // 7x7 in rows of 8: 49 of 56
  EXPECT_EQ(strided(15, 7, 3, 1), "direct/gemm/gemm");   // 4x4 in rows of 5: 16 of 20
  EXPECT_EQ(strided(15, 3, 3, 1), "gemm/gemm/gemm");     // 2x2 in rows of 3: 4 of 8
  ops::set_conv_algorithm(ops::ConvAlgorithm::kDirect);
  EXPECT_EQ(strided(64, 14, 1, 0), "direct/gemm/gemm");  // forced direct takes every stride 2
  EXPECT_EQ(strided(64, 14, 3, 1), "direct/gemm/gemm");
  EXPECT_EQ(strided(64, 14, 3, 1, 15), "direct/gemm/gemm");  // kAuto's exception alone
  ops::set_conv_algorithm(ops::ConvAlgorithm::kImplicit);
  EXPECT_EQ(strided(1, 14, 1, 0), "implicit/implicit/implicit");  // forced: every layer
  EXPECT_EQ(methods(1, 4, 128), "implicit/implicit/implicit");
  ops::set_isa(restore.isa);
  ops::set_conv_algorithm(ops::ConvAlgorithm::kWinograd);
  EXPECT_EQ(methods(1, 4, 128), "winograd/winograd/winograd");  // forced stays forced
  EXPECT_EQ(methods(64, 7, 64), "winograd/winograd/winograd");
}

TEST(OpsSweep, EveryIsaThatTheCpuSupportsIsSelectable) {
  const std::vector<ops::Isa> isas = ops::supported_isas();
  ASSERT_FALSE(isas.empty());
  EXPECT_EQ(isas.front(), ops::Isa::kPortable);
  const ops::Isa saved = ops::isa();
  for (ops::Isa isa : isas) {
    ops::set_isa(isa);
    EXPECT_EQ(ops::isa(), isa);
  }
  ops::set_isa(saved);
}
TEST(OpsSweep, PointwiseSoftmaxAndLossesDouble) {
  sweep_pointwise<double>(8, 100);
}

TEST(OpsSweep, ReferenceModeRoutesTheDefaultPathToTheReference) {
  // With reference mode on, the default entry point must give the reference's exact bits.
  Rng rng(9);
  const ops::ConvShape s = ops::make_conv_shape(2, 3, 7, 6, 5, 3, 3, 2, 2, 1, 1);
  const auto x = random_vector<float>(rng, 2 * 3 * 7 * 6), w = random_vector<float>(rng, 5 * 3 * 9);
  std::vector<float> a(2 * 5 * s.out_h * s.out_w), b(a.size());
  ops::set_reference_mode(true);
  ops::conv2d_forward(a.data(), x.data(), w.data(), static_cast<const float*>(nullptr), s);
  ops::set_reference_mode(false);
  ref::conv2d_forward(b.data(), x.data(), w.data(), static_cast<const float*>(nullptr), s);
  EXPECT_EQ(a, b);
}

}  // namespace
}  // namespace cnn

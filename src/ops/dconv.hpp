#pragma once
// Direct stride-1 convolution kernels, one set per instruction set (dconv_avx512.cpp,
// dconv_avx2.cpp, dconv_portable.cpp share dconv_kernels.inc). Written for the layers where
// im2col + GEMM is mostly copying (LeNet-5's 1 -> 6 and 6 -> 16), they also beat it on every
// stride-1 forward measured (docs/design-notes.md), so ConvAlgorithm::kAuto uses them there.
//
// The trick that makes them simple: every input plane is staged zero-padded with row length
// Wp = W + 2 pad_w, and output position (oh, ow) is computed at "flat" index q = oh * Wp + ow.
// Kernel tap (ic, kh, kw) then reads the staged input at q + ic * plane + kh * Wp + kw for every
// q, so one contiguous vector load serves a run of outputs across row ends. The columns
// ow >= OW of each flat row are computed and thrown away (the caller copies out the valid ones).
// The same correlation, applied to dy staged with padding K - 1 - pad and the weights rotated by
// 180 degrees with their channel axes swapped, is the seed's input gradient (a full
// convolution); applied as a product of dy with the staged input, it is the weight gradient.
//
// Same rules as sgemm.hpp: each translation unit keeps its code in an anonymous namespace.

#include <cstdint>

namespace cnn::detail {

/// out[o][q] = bias[o] + sum_t weights(o, t) * in[offsets[t] + q] for o < out_channels and
/// q < positions (a multiple of the kernel's lanes).
struct DirectForwardArgs {
  int64_t out_channels;    // a multiple of oc_block
  int64_t oc_block;        // from DirectConvKernels::forward_oc_block
  int64_t taps;            // in_channels * kernel_h * kernel_w
  const int64_t* offsets;  // taps entries: where each tap reads, relative to q
  const float* in;         // in[offsets[t] + q] must be readable for every t and q < positions
  const float* weights;    // [out_channels / oc_block][taps][oc_block]
  const float* bias;       // out_channels entries (zeros for no bias)
  float* out;              // [out_channels][positions]
  int64_t positions;
};

/// lanes[o][t][l] += sum over images n and q = l (mod lanes) of
/// dy_n[o][q] * in_n[offsets[t] + q]; the caller sums the lanes of each (o, t).
struct DirectWeightGradArgs {
  int64_t out_channels;  // a multiple of oc_block (dy rows past the real channels are zero)
  int64_t oc_block;      // from DirectConvKernels::weight_grad_oc_block
  int64_t taps;
  const int64_t* offsets;
  int64_t images;
  const float* in;  // image n's staged input at in + n * in_stride
  int64_t in_stride;
  const float* dy;  // image n's [out_channels][positions] at dy + n * dy_stride
  int64_t dy_stride;
  int64_t positions;  // a multiple of the lanes
  float* lanes;       // [out_channels][taps][lanes]
};

/// The implicit GEMM of the channel-vector convolutions (conv_implicit.hpp):
/// c[i * ldc + j] (+)= sum over k < depth of rows[i][offsets[k]] * b[k * block + j], for
/// i < count and j < block. A's entries are gathered from a staged input (row pointer plus
/// column offset), one broadcast each; B holds `block` columns (output channels), packed row
/// after row, so that the vector lanes run over output channels, not over positions.
struct GatherGemmArgs {
  const float* const* rows;  // count pointers
  int64_t count;             // a multiple of kGatherRows (repeated pointers pad a short list)
  const int64_t* offsets;    // depth entries
  int64_t depth;             // 0 gives c = 0 (or c unchanged when accumulating)
  const float* b;            // [depth][block]
  int64_t block;             // from DirectConvKernels::gather_block
  float* c;                  // row i at c + i * ldc, `block` floats
  int64_t ldc;
  bool accumulate;  // add to c instead of assigning: the products in one running sum per entry
  // When set: B's row k at b + b_offsets[k] instead of b + k * block (a subset of a packed B's
  // rows); row i of C at c_rows[i] + c_column instead of c + i * ldc (rows in any order).
  const int64_t* b_offsets = nullptr;
  float* const* c_rows = nullptr;
  int64_t c_column = 0;
};
/// The rows of one register tile of gather_gemm: 6 pointers stay in general registers.
inline constexpr int64_t kGatherRows = 6;

/// A register tile: oc_block output channels times `width` position vectors (forward) or taps
/// (weight gradient).
struct DirectTile {
  int64_t oc_block, width;
};

struct DirectConvKernels {
  int64_t lanes;  // floats per vector
  /// Output channels computed together; out_channels is padded to a multiple of it.
  int64_t (*forward_oc_block)(int64_t out_channels);
  void (*forward)(const DirectForwardArgs&);
  int64_t (*weight_grad_oc_block)(int64_t out_channels);
  void (*weight_grad)(const DirectWeightGradArgs&);
  /// The column block (a few vectors of output channels) that pads `columns` least.
  int64_t (*gather_block)(int64_t columns);
  void (*gather_gemm)(const GatherGemmArgs&);
  /// dst[j * dst_stride + i] = src[i * src_stride + j] for i < rows, j < cols: the implicit
  /// GEMM's position-major rows to and from channel planes (8x8 blocks in registers where
  /// the ISA has AVX2, 4x4 otherwise).
  void (*transpose)(float* dst, int64_t dst_stride, const float* src, int64_t src_stride,
                    int64_t rows, int64_t cols);
  /// transpose, then each value of dst row j (an output channel) + bias[j] when bias is not
  /// null, then with relu, relu(that + addend[j * dst_stride + i]), or relu(that) when addend
  /// is null, by relu_add's rule: the implicit GEMM's output with its bias and ConvEpilogue
  /// in one pass instead of three, the same bits as transpose, the bias added, then relu_add.
  void (*transpose_out)(float* dst, int64_t dst_stride, const float* src, int64_t src_stride,
                        int64_t rows, int64_t cols, const float* bias, const float* addend,
                        bool relu);
  /// y[r] += sum_i x[i] * w[r * k + i] for r < rows: a dense layer's forward for one sample
  /// (a matrix-vector product), without the GEMM's packing, for batches of a few images.
  void (*dense_rows)(const float* x, const float* w, int64_t rows, int64_t k, float* y);
  /// dst[r * dst_stride + j] = src[r * src_stride + j] for r < rows, j < width: the staging
  /// copies, whose rows (5 to 32 floats) were dominated by memmove's call overhead.
  void (*copy_rows)(float* dst, int64_t dst_stride, const float* src, int64_t src_stride,
                    int64_t rows, int64_t width);
  /// y[i] = relu(y[i] + addend[i]) for i < n, or relu(y[i]) when addend is null, on the
  /// calling thread, by ops::relu_forward's rule (below zero gives +0, anything else, -0 and
  /// NaN included, itself): a convolution's epilogue (ConvEpilogue) on a block of output it
  /// has just written.
  void (*relu_add)(float* y, const float* addend, int64_t n);
};

/// The kernels of the instruction set in use (cnn::ops::isa()).
const DirectConvKernels& direct_conv_kernels();

const DirectConvKernels& direct_conv_avx512();    // AVX-512F + FMA, 16 lanes
const DirectConvKernels& direct_conv_avx2();      // AVX2 + FMA, 8 lanes
const DirectConvKernels& direct_conv_portable();  // SSE2, 4 lanes

}  // namespace cnn::detail

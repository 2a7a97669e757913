#pragma once
// ops: stateless kernels on raw memory. Every op has two versions:
//   cnn::ref::NAME  (cnn/ops_ref.hpp): the seed's equation as plain loops, templated on the
//                   scalar type; the oracle that tests compare against, kept forever;
//   cnn::ops::NAME  (this header): the default path, instantiated for float and double. It
//                   is where fast kernels go; which one runs is decided inside each op.
// Gradient contract, the same as the layers': dx (input gradients) is ASSIGNED, every element;
// dw and db (parameter gradients) are ACCUMULATED (+=). A null dx / db pointer means "not
// needed" (no bias, or first layer of a model).
// Layouts: images NCHW, conv weights (OC, IC, KH, KW), dense weights (out, in), all
// contiguous row-major, exactly as PyTorch.

#include <cstdint>
#include <vector>

namespace cnn {
class Rng;
}

namespace cnn::ops {

/// Geometry of a 2-D convolution; out_h = (in_h + 2 pad_h - kernel_h) / stride_h + 1.
struct ConvShape {
  int64_t batch, in_channels, in_h, in_w;
  int64_t out_channels, kernel_h, kernel_w;
  int64_t stride_h, stride_w, pad_h, pad_w;
  int64_t out_h, out_w;
  /// An evaluation forward (kEval): no backward will start from this call's values, and
  /// kAuto may take a forward method whose float rounding is larger, within the kernels'
  /// bounds (F(4x4, 3x3) on layers whose F(2x2) blocks fit, conv2d.cpp), which a training
  /// step avoids: there it made 1 and 2 threads' models drift apart.
  bool inference = false;
};

/// Geometry of a 2-D max pooling; padding is implicit -infinity, as in PyTorch.
struct PoolShape {
  int64_t batch, channels, in_h, in_w;
  int64_t kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w;
  int64_t out_h, out_w;
};

/// Geometry of a batch normalisation: x (batch, channels, inner), statistics per channel over
/// batch and inner (inner = H W for BatchNorm2d, L or 1 for BatchNorm1d).
struct NormShape {
  int64_t batch, channels, inner;
};

/// Geometry of a dense (fully connected) layer: x (batch, in), w (out, in), y (batch, out).
struct DenseShape {
  int64_t batch, in_features, out_features;
};

/// Fills out_h / out_w from the other fields. Does not validate: layers do.
ConvShape make_conv_shape(int64_t batch, int64_t in_channels, int64_t in_h, int64_t in_w,
                          int64_t out_channels, int64_t kernel_h, int64_t kernel_w,
                          int64_t stride_h, int64_t stride_w, int64_t pad_h, int64_t pad_w);
/// Fills out_h / out_w from the other fields. Does not validate: layers do.
PoolShape make_pool_shape(int64_t batch, int64_t channels, int64_t in_h, int64_t in_w,
                          int64_t kernel_h, int64_t kernel_w, int64_t stride_h, int64_t stride_w,
                          int64_t pad_h, int64_t pad_w);

/// When true, every cnn::ops function runs its cnn::ref twin. Initialised from the
/// environment variable CNN_REFERENCE (1 on; 0, empty or unset off; the first call throws
/// cnn::Error on any other value); tests switch it to run the same model both ways.
bool reference_mode();
void set_reference_mode(bool on);

/// Instruction sets of the float kernels. The binary holds all of them and uses the best the
/// CPU supports, unless the environment variable CNN_ISA (avx512, avx2 or portable) or
/// set_isa() picks one.
enum class Isa { kPortable, kAvx2, kAvx512 };
/// The instruction set in use.
Isa isa();
/// Whether isa() includes AVX2 (kAvx2 and kAvx512 do): the kernels written for AVX2 alone
/// (pooling, BatchNorm's sums) take their vector loops.
bool isa_has_avx2();
/// Selects an instruction set; throws cnn::Error when the CPU does not support it.
void set_isa(Isa isa);
/// The instruction sets this CPU supports, best last.
std::vector<Isa> supported_isas();
/// "portable", "avx2", "avx512".
const char* isa_name(Isa isa);

/// The machine's single-precision FMA peak in GFLOP/s over `threads` threads, measured with
/// a loop of independent fused multiply-adds on the widest vectors of the instruction set in
/// use (about `seconds` of work per thread).
double measure_peak_gflops(int threads, double seconds = 0.2);

/// The mean time in nanoseconds of a cache line's round trip between the two threads of an
/// OpenMP team of 2 (one writes a value, the other answers it), over `trips` trips or as many
/// as fit in about 50 ms (two threads on one core wait for the scheduler at every trip); 0 when
/// OpenMP grants one thread. It tells how far apart the cores running them are: on this
/// project's 2-vCPU machine about 50-90 ns when they share a cache, about 320-400 ns when they
/// do not, and 2-thread throughputs differ between the two (docs/design-notes.md).
double measure_core_round_trip_ns(int64_t trips = 50000);

/// Threads the kernels may use (OpenMP over the images of a batch); 1 by default. Results
/// for a fixed thread count are bit-identical from run to run, also when OpenMP grants fewer
/// threads (OMP_THREAD_LIMIT, OMP_DYNAMIC, a call from a user's parallel region): the work is
/// split for the requested count and the granted threads share it out. Across thread counts
/// results agree to rounding (parameter gradients are summed per part, then in part order).
/// Throws cnn::Error outside 1 to kMaxThreads.
constexpr int kMaxThreads = 1024;
void set_threads(int threads);
int threads();

/// How float convolutions are computed. kGemm: im2col + packed GEMM (any stride). kDirect:
/// the direct kernels wherever they apply (stride 1, and the forward of stride 2), im2col +
/// GEMM elsewhere. kWinograd: Winograd F(2x2, 3x3) for the forward, weight gradient and input
/// gradient of 3x3 stride-1 layers (padding at most 2), direct elsewhere. kImplicit: the
/// implicit GEMM (output channels across the vector lanes) for every layer. kAuto (the
/// default): the fastest measured by layer shape and batch: the implicit GEMM for stride-2
/// layers of 3x3+ kernels and for 3x3 stride-1 layers with odd planes such as 7x7, from 16
/// images with 16+ channels in and 32+ out; Winograd for the other 3x3 stride-1 layers with
/// 16+ channels in and out (im2col + GEMM when the batch has fewer than 16 2x2 tiles);
/// direct for the other stride-1 layers (backward up to 65,536 weights) and im2col + GEMM
/// for the rest (src/ops/conv2d.cpp and docs/design-notes.md have the measurements).
/// Initialised from the environment variable CNN_CONV (auto, gemm, direct, winograd or
/// implicit); tests force each. double always runs im2col + plain loops.
enum class ConvAlgorithm { kAuto, kGemm, kDirect, kWinograd, kImplicit };
ConvAlgorithm conv_algorithm();
void set_conv_algorithm(ConvAlgorithm algorithm);
/// "auto", "gemm", "direct", "winograd", "implicit".
const char* conv_algorithm_name(ConvAlgorithm algorithm);

// ---- convolution --------------------------------------------------------------------------
/// y (N, OC, OH, OW) = b + sum_c x (N, C, H, W) (*) w (OC, C, KH, KW); b (OC) may be null.
/// w_scale (OC) may be null; when given, output channel o's kernel is w(o) * w_scale[o], each
/// product rounded as one multiplication in T: bit for bit the same as scaling w first (a
/// BatchNorm folded in), without a scaled copy of w to write, and the fast paths' packed or
/// transformed weights stay cached with w's address.
template <typename T>
void conv2d_forward(T* y, const T* x, const T* w, const T* b, const ConvShape& s,
                    const T* w_scale = nullptr);
/// Floats: conv2d_forward (the same bits), and the batchnorm_plane_moments of every output plane
/// to totals (2 s.batch s.out_channels doubles; plane (n, o) at totals + 2 (n s.out_channels +
/// o)), each taken by the thread that wrote the plane, right after: a training BatchNorm2d after
/// the convolution then needs no pass of its own over the output for its statistics
/// (batchnorm_statistics_from_moments). Returns false, having computed nothing, in reference
/// mode or where the method that takes s writes its output otherwise (the im2col GEMM).
bool conv2d_forward_moments(float* y, const float* x, const float* w, const float* b,
                            const ConvShape& s, double* totals);
/// dx (N, C, H, W) assigned (may be null); dw (OC, C, KH, KW) and db (OC) accumulated (db may
/// be null); from x, w and dy (N, OC, OH, OW).
template <typename T>
void conv2d_backward(T* dx, T* dw, T* db, const T* x, const T* w, const T* dy, const ConvShape& s);

/// An output gradient made image by image where it is read: fill(context, n, out) writes
/// image n's values (a convolution's: out_channels x out_h x out_w) to out.
struct ImageGradientSource {
  void (*fill)(const void* context, int64_t n, float* out) = nullptr;
  const void* context = nullptr;
};
/// Whether conv2d_weight_backward_by_image takes a convolution of shape s: outside reference
/// mode, where conv2d_backward's weight gradient runs by the direct kernels
/// (conv2d_weight_grad_method "direct").
bool conv2d_weight_backward_by_image_takes(const ConvShape& s);
/// conv2d_backward(nullptr, dw, db, x, w, dy, s) for floats with dy made image by image by
/// `dy` (each image once, by the thread whose weight gradient reads it, into that thread's
/// scratch) instead of read from a tensor: dw and db (may be null) accumulated bit for bit as
/// that call would from the same values, and no tensor of dy written or read. Only for shapes
/// that conv2d_weight_backward_by_image_takes accepts (throws std::logic_error otherwise).
void conv2d_weight_backward_by_image(float* dw, float* db, const float* x,
                                     const ImageGradientSource& dy, const ConvShape& s);

/// Whether conv2d_relu_maxpool2x2_forward takes a float convolution of shape s: one whose
/// forward runs by the direct kernels (conv2d_forward_method "direct"), outside reference mode.
bool conv2d_relu_maxpool2x2_fusable(const ConvShape& s);
/// y (N, OC, OH / 2, OW / 2) = the 2x2 / stride-2 max pooling of relu(conv2d_forward(x, w, b,
/// s, w_scale)), bit for bit relu_maxpool2d_forward of conv2d_forward's output, without that
/// output: each image's convolution is pooled while it is in the cache. Only for shapes that
/// conv2d_relu_maxpool2x2_fusable accepts (throws std::logic_error otherwise).
void conv2d_relu_maxpool2x2_forward(float* y, const float* x, const float* w, const float* b,
                                    const ConvShape& s, const float* w_scale = nullptr);

/// Whether conv2d_relu_forward takes a float convolution of shape s: one whose forward runs by
/// Winograd (F(2x2) or F(4x4)) or the implicit GEMM, outside reference mode.
bool conv2d_relu_fusable(const ConvShape& s);
/// y = relu(conv2d_forward(x, w, b, s, w_scale)), bit for bit conv2d_forward then relu_forward,
/// with the ReLU applied to each block of images as the convolution writes it (in the cache).
/// With `addend` (y's shape, not aliasing y): y = relu(conv2d_forward(...) + addend), bit for
/// bit conv2d_forward then add_forward(nullptr, y, conv, addend, n, true): a residual block's
/// last convolution with its shortcut and ReLU. Only for shapes that conv2d_relu_fusable
/// accepts (throws std::logic_error otherwise).
void conv2d_relu_forward(float* y, const float* x, const float* w, const float* b,
                         const ConvShape& s, const float* w_scale = nullptr,
                         const float* addend = nullptr);

/// One convolution of conv2d_relu_pair_forward: its weights, bias (or null), weight scale per
/// output channel (or null) and shape, as conv2d_forward takes them.
struct ConvPairStep {
  const float* w;
  const float* b;
  const float* w_scale;
  ConvShape shape;
};
/// Whether conv2d_relu_pair_forward takes float convolutions `first` then `second`: the first
/// runs its forward by Winograd F(4x4, 3x3) or by the implicit GEMM (a stride-2 layer), the
/// second by F(4x4) (evaluation shapes), outside reference mode, and the second's input is the
/// first's output.
bool conv2d_relu_pair_fusable(const ConvShape& first, const ConvShape& second);
/// y = relu(conv2d(relu(conv2d(x, first)), second) + addend) (no addend when null), bit for bit
/// conv2d_relu_forward of `first`, then conv2d_relu_forward of `second` with the addend, without
/// the first's output: each group of images goes from one convolution to the next in the cache
/// (a residual block's body in evaluation). Only for shapes conv2d_relu_pair_fusable accepts
/// (throws std::logic_error otherwise).
void conv2d_relu_pair_forward(float* y, const float* x, const ConvPairStep& first,
                              const ConvPairStep& second, const float* addend = nullptr);
/// Whether conv2d_relu_pair_shortcut_forward takes these: conv2d_relu_pair_fusable(first,
/// second), the first by the implicit GEMM, and `shortcut` a convolution of the first's input
/// that the implicit GEMM runs, with the second's output shape.
bool conv2d_relu_pair_shortcut_fusable(const ConvShape& first, const ConvShape& second,
                                       const ConvShape& shortcut);
/// conv2d_relu_pair_forward with the addend conv2d_forward(x, shortcut) (a residual block's
/// projection shortcut in evaluation), bit for bit, without that output written out: each
/// group of images' shortcut is computed beside the first convolution, while its input is in
/// the cache, and added by the second's epilogue. Only for shapes
/// conv2d_relu_pair_shortcut_fusable accepts (throws std::logic_error otherwise).
void conv2d_relu_pair_shortcut_forward(float* y, const float* x, const ConvPairStep& first,
                                       const ConvPairStep& second, const ConvPairStep& shortcut);

/// How a float convolution of shape s computes its forward, its weight gradient and its input
/// gradient under the current conv_algorithm(): "gemm", "direct", "winograd" or "implicit".
const char* conv2d_forward_method(const ConvShape& s);
const char* conv2d_weight_grad_method(const ConvShape& s);
const char* conv2d_input_grad_method(const ConvShape& s);

// ---- max pooling ---------------------------------------------------------------------------
/// y (N, C, OH, OW) = window max of x (N, C, H, W); argmax (N, C, OH, OW) receives the index
/// h * W + w of the chosen element within its (n, c) plane; ties go to the first in row-major
/// order, as in PyTorch. argmax may be null (a forward no backward follows): y alone, the
/// same bits.
template <typename T>
void maxpool2d_forward(T* y, int32_t* argmax, const T* x, const PoolShape& s);
/// dx (N, C, H, W) assigned: zero except at the argmax positions, which receive dy (summed
/// when windows overlap and choose the same element).
template <typename T>
void maxpool2d_backward(T* dx, const T* dy, const int32_t* argmax, const PoolShape& s);
/// ReLU then max pooling in one pass, without the ReLU's output: y and argmax are bit for bit
/// maxpool2d_forward of relu_forward(x) (every tap passes through the ReLU before the
/// comparison, so ties and signed zeros match too). argmax may be null, as there.
template <typename T>
void relu_maxpool2d_forward(T* y, int32_t* argmax, const T* x, const PoolShape& s);
/// dx (N, C, H, W) = relu_backward(x, maxpool2d_backward(dy)), bit for bit, in one pass; x is
/// the ReLU's input.
template <typename T>
void relu_maxpool2d_backward(T* dx, const T* dy, const T* x, const int32_t* argmax,
                             const PoolShape& s);

// ---- element-wise activations (n elements) -----------------------------------------------
/// y = x (n elements, batch images of n / batch each; y not overlapping x): each thread copies
/// the images it takes in the kernels' split of a batch (Flatten, which has no arithmetic).
template <typename T>
void copy_images(T* y, const T* x, int64_t n, int64_t batch);
/// y = x for x >= 0, else 0.
template <typename T>
void relu_forward(T* y, const T* x, int64_t n);
/// dx = dy * (x >= 0 ? 1 : 0): the seed's derivative, 1 at x = 0 (PyTorch uses 0 there).
template <typename T>
void relu_backward(T* dx, const T* x, const T* dy, int64_t n);
/// y = x for x > 0, else negative_slope * x.
template <typename T>
void leaky_relu_forward(T* y, const T* x, int64_t n, T negative_slope);
/// dx = dy * (x > 0 ? 1 : negative_slope): PyTorch's derivative, negative_slope at x = 0.
template <typename T>
void leaky_relu_backward(T* dx, const T* x, const T* dy, int64_t n, T negative_slope);
/// y = min(max(x, 0), 6).
template <typename T>
void relu6_forward(T* y, const T* x, int64_t n);
/// dx = dy * (0 < x < 6 ? 1 : 0): PyTorch's derivative, 0 at x = 0 and at x = 6.
template <typename T>
void relu6_backward(T* dx, const T* x, const T* dy, int64_t n);
/// y = tanh(x).
template <typename T>
void tanh_forward(T* y, const T* x, int64_t n);
/// dx = dy * (1 - y^2), from the forward output y.
template <typename T>
void tanh_backward(T* dx, const T* y, const T* dy, int64_t n);
/// y = 1 / (1 + exp(-x)).
template <typename T>
void sigmoid_forward(T* y, const T* x, int64_t n);
/// dx = dy * y * (1 - y), from the forward output y.
template <typename T>
void sigmoid_backward(T* dx, const T* y, const T* dy, int64_t n);

// ---- dropout (n elements) --------------------------------------------------------------------
/// Dropout's training forward (0 <= p < 1): mask[k] = 0 where the k-th uniform() that rng draws
/// (one next_u64 a element, in element order) is below p, else 1 / (1 - p) (as T); then
/// y = x * mask. rng is left after the n-th draw. y may be x.
template <typename T>
void dropout_forward(T* y, T* mask, const T* x, int64_t n, double p, Rng& rng);
/// y = x * mask (the forward with a mask held, and the backward: dx = dy * mask). y may be x.
template <typename T>
void dropout_apply(T* y, const T* x, const T* mask, int64_t n);

// ---- softmax over axis 1 of (outer, channels, inner) ---------------------------------------
/// y = exp(x - max) / sum exp(x - max) along the channel axis.
template <typename T>
void softmax_forward(T* y, const T* x, int64_t outer, int64_t channels, int64_t inner);
/// dx = J^T dy with J the softmax Jacobian: dx_j = y_j (dy_j - sum_i y_i dy_i).
template <typename T>
void softmax_backward(T* dx, const T* y, const T* dy, int64_t outer, int64_t channels,
                      int64_t inner);

// ---- average pooling -------------------------------------------------------------------------
/// y (N, C, OH, OW) = the window mean of x (N, C, H, W): the sum of the elements inside the input
/// over the kernel's area (count_include_pad) or over the count of those elements (PyTorch's
/// AvgPool2d, ceil_mode off).
template <typename T>
void avgpool2d_forward(T* y, const T* x, const PoolShape& s, bool count_include_pad);
/// dx (N, C, H, W) assigned: each window's dy over its divisor, added to its elements.
template <typename T>
void avgpool2d_backward(T* dx, const T* dy, const PoolShape& s, bool count_include_pad);
/// Global average pooling (AdaptiveAvgPool2d(1)): y (planes) = the mean of each plane of
/// x (planes, size); backward dx = dy / size over each plane (assigned).
template <typename T>
void global_avgpool_forward(T* y, const T* x, int64_t planes, int64_t size);
template <typename T>
void global_avgpool_backward(T* dx, const T* dy, int64_t planes, int64_t size);

// ---- residual addition -----------------------------------------------------------------------
/// sum = a + b, and y = relu(sum) when `relu`, else y = sum; sum may be null (y alone).
/// All (n).
template <typename T>
void add_forward(T* sum, T* y, const T* a, const T* b, int64_t n, bool relu);
/// dx += g (n): an input gradient that two branches share.
template <typename T>
void accumulate(T* dx, const T* g, int64_t n);

// ---- batch normalisation ---------------------------------------------------------------------
/// Per channel c over (batch, inner): mean[c] and the biased variance var[c] (divided by
/// batch * inner, what normalises in training).
template <typename T>
void batchnorm_statistics(T* mean, T* var, const T* x, const NormShape& s);
/// Floats: the sums of each of `planes` planes of `inner` values at y (plane p at y + p inner)
/// and of its values' squares, in double, to totals[2 p] and totals[2 p + 1]: the per-plane sums
/// of batchnorm_statistics, the same bits. A convolution takes them as it writes its output
/// (conv2d_forward_moments), while the planes are in the cache.
void batchnorm_plane_moments(double* totals, const float* y, int64_t planes, int64_t inner);
/// batchnorm_statistics for floats from the batchnorm_plane_moments of all s.batch s.channels
/// planes of x (plane (n, c) at totals + 2 (n s.channels + c)): the same bits as from x. Not in
/// reference mode (ref::batchnorm_statistics sums otherwise).
void batchnorm_statistics_from_moments(float* mean, float* var, const double* totals,
                                       const NormShape& s);
/// y = (x - mean[c]) / sqrt(var[c] + eps) * gamma[c] + beta[c]; gamma and beta may be null
/// (1 and 0: affine off).
template <typename T>
void batchnorm_forward(T* y, const T* x, const T* mean, const T* var, const T* gamma, const T* beta,
                       const NormShape& s, T eps);
/// Backward of batchnorm_forward. With batch_statistics, mean and var were computed from this
/// x (training) and dx takes their dependence on x:
///   dx = gamma invstd (dy - mean(dy) - xhat mean(dy xhat)),  xhat = (x - mean) invstd;
/// without (evaluation, running statistics) dx = gamma invstd dy. dx is assigned (may be
/// null); dgamma += sum(dy xhat), dbeta += sum(dy) (either may be null).
template <typename T>
void batchnorm_backward(T* dx, T* dgamma, T* dbeta, const T* dy, const T* x, const T* mean,
                        const T* var, const T* gamma, const NormShape& s, T eps,
                        bool batch_statistics);

/// A BatchNorm followed by a ReLU as one pass: y = relu(v), v = batchnorm_forward's value
/// (the ReLU's rule, v < 0 ? 0 : v), bit for bit what the two ops give, without v's tensor.
template <typename T>
void batchnorm_relu_forward(T* y, const T* x, const T* mean, const T* var, const T* gamma,
                            const T* beta, const NormShape& s, T eps);
/// Backward of batchnorm_relu_forward from dy = dL/dy: batchnorm_backward of the ReLU's input
/// gradient (v < 0 ? 0 : dy, v recomputed from x as the forward computed it), bit for bit what
/// relu_backward then batchnorm_backward give. Arguments as batchnorm_backward, plus beta.
template <typename T>
void batchnorm_relu_backward(T* dx, T* dgamma, T* dbeta, const T* dy, const T* x, const T* mean,
                             const T* var, const T* gamma, const T* beta, const NormShape& s, T eps,
                             bool batch_statistics);
/// The ReLU's input gradient of that pair alone: g = v < 0 ? 0 : dy (all (batch, channels,
/// inner)); for the synchronised BatchNorm, whose sums run elsewhere.
template <typename T>
void batchnorm_relu_mask(T* g, const T* dy, const T* x, const T* mean, const T* var, const T* gamma,
                         const T* beta, const NormShape& s, T eps);

/// A BatchNorm2d, a ReLU and a 2x2 / stride-2 MaxPool2d without padding as one pass:
/// y (batch, channels, h / 2, w / 2) and argmax = relu_maxpool2d_forward of
/// batchnorm_forward(x), bit for bit, plane by plane with each normalised plane in the
/// calling thread's cache instead of a tensor (s.inner = h w). Arguments as
/// batchnorm_forward; argmax as maxpool2d_forward's (not null).
template <typename T>
void batchnorm_relu_maxpool2x2_forward(T* y, int32_t* argmax, const T* x, const T* mean,
                                       const T* var, const T* gamma, const T* beta,
                                       const NormShape& s, int64_t h, int64_t w, T eps);
/// Backward of batchnorm_relu_maxpool2x2_forward from dy = dL/dy (batch, channels, h / 2,
/// w / 2) and its argmax: bit for bit relu_maxpool2d_backward (with the ReLU's input
/// recomputed from x) then batchnorm_backward, each plane's pooling gradient made in the
/// calling thread's cache instead of a tensor. Arguments as batchnorm_relu_backward.
template <typename T>
void maxpool2x2_relu_batchnorm_backward(T* dx, T* dgamma, T* dbeta, const T* dy,
                                        const int32_t* argmax, const T* x, const T* mean,
                                        const T* var, const T* gamma, const T* beta,
                                        const NormShape& s, int64_t h, int64_t w, T eps,
                                        bool batch_statistics);

/// maxpool2x2_relu_batchnorm_backward for floats with dx made image by image where it is read
/// instead of written: dgamma and dbeta accumulated now (the same bits), and *dx_images set to
/// a source whose fill(context, n, out) writes image n's dx (channels, h, w), bit for bit the
/// values that op writes, from any thread, until the calling thread's next BatchNorm op.
/// Returns false, having computed nothing, in reference mode. (For the convolution before the
/// BatchNorm: conv2d_weight_backward_by_image.)
bool maxpool2x2_relu_batchnorm_backward_by_image(
    float* dgamma, float* dbeta, const float* dy, const int32_t* argmax, const float* x,
    const float* mean, const float* var, const float* gamma, const float* beta, const NormShape& s,
    int64_t h, int64_t w, float eps, bool batch_statistics, ImageGradientSource* dx_images);

/// A BatchNorm's input and what normalises it: batchnorm_forward's arguments but y and s.
template <typename T>
struct NormOperand {
  const T* x = nullptr;
  const T* mean = nullptr;
  const T* var = nullptr;
  const T* gamma = nullptr;  // null: 1
  const T* beta = nullptr;   // null: 0
  T eps = T(0);
};
/// A residual block's end as one pass: y = relu(batchnorm(a) + b), where b = batchnorm(*b_norm)
/// when b_norm is not null (a projection shortcut ending in a BatchNorm) and else the tensor
/// `addend` (the identity shortcut's x). Each batchnorm is batchnorm_forward's value and the sum
/// and ReLU add_forward's, bit for bit, without the normalised tensors or the sum. All (batch,
/// channels, inner) of s; y aliases no input.
template <typename T>
void batchnorm_add_relu_forward(T* y, const NormOperand<T>& a, const NormOperand<T>* b_norm,
                                const T* addend, const NormShape& s);
/// The gradient reaching the sum of batchnorm_add_relu_forward from dy = dL/dy: g = v < 0 ? 0 :
/// dy (relu_backward's rule), with v = the sum recomputed as that forward formed it, bit for
/// bit; arguments as there. g (the block's dL/dsum, which both branches' backward read) may
/// alias dy.
template <typename T>
void batchnorm_add_relu_mask(T* g, const T* dy, const NormOperand<T>& a,
                             const NormOperand<T>* b_norm, const T* addend, const NormShape& s);
/// That mask and the backward of the body's BatchNorm (`a`) in one: g as batchnorm_add_relu_mask
/// writes it, each plane made as the BatchNorm's sums read it, then dx, dgamma and dbeta as
/// batchnorm_backward(dx, dgamma, dbeta, g, a.x, a.mean, a.var, a.gamma, s, a.eps,
/// batch_statistics) gives them, bit for bit. g must not alias dy; dx (not null) neither.
template <typename T>
void batchnorm_add_relu_backward(T* g, T* dx, T* dgamma, T* dbeta, const T* dy,
                                 const NormOperand<T>& a, const NormOperand<T>* b_norm,
                                 const T* addend, const NormShape& s, bool batch_statistics);

// ---- dense ---------------------------------------------------------------------------------
/// y (N, out) = x (N, in) w^T + b; w (out, in); b (out) may be null.
template <typename T>
void dense_forward(T* y, const T* x, const T* w, const T* b, const DenseShape& s);
/// dx (N, in) assigned (may be null); dw (out, in) and db (out) accumulated (db may be null).
template <typename T>
void dense_backward(T* dx, T* dw, T* db, const T* x, const T* w, const T* dy, const DenseShape& s);

// ---- losses (return the mean; backward assigns the gradient of that mean) ------------------
/// The seed's log loss over n probabilities p and targets t in [0, 1]:
/// -1/n sum t log p + (1 - t) log(1 - p), with p clamped to [eps, 1 - eps].
template <typename T>
T log_loss_forward(const T* p, const T* t, int64_t n, T eps);
/// dp = 1/n ((1 - t) / (1 - p) - t / p), the seed's formula, at the clamped p.
template <typename T>
void log_loss_backward(T* dp, const T* p, const T* t, int64_t n, T eps);
/// Mean over the batch of -log softmax(logits)[label]; logits (N, K), labels (N) in [0, K).
template <typename T>
T cross_entropy_forward(const T* logits, const int32_t* labels, int64_t batch, int64_t classes);
/// dlogits = (softmax(logits) - onehot(label)) / N.
template <typename T>
void cross_entropy_backward(T* dlogits, const T* logits, const int32_t* labels, int64_t batch,
                            int64_t classes);
/// Soft-target variant: mean over the batch of -sum_k t_k log softmax(logits)_k; t (N, K).
template <typename T>
T cross_entropy_soft_forward(const T* logits, const T* targets, int64_t batch, int64_t classes);
/// dlogits = (softmax(logits) * sum_k t_k - t) / N.
template <typename T>
void cross_entropy_soft_backward(T* dlogits, const T* logits, const T* targets, int64_t batch,
                                 int64_t classes);
/// Mean over n elements of (p - t)^2.
template <typename T>
T mse_forward(const T* p, const T* t, int64_t n);
/// dp = 2 (p - t) / n.
template <typename T>
void mse_backward(T* dp, const T* p, const T* t, int64_t n);

}  // namespace cnn::ops

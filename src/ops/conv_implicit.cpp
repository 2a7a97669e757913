// Convolutions as implicit GEMMs with the output channels across the vector lanes
// (conv_implicit.hpp).

#include "conv_implicit.hpp"

#include <algorithm>
#include <vector>

#include "conv_common.hpp"
#include "dconv.hpp"
#include "parallel.hpp"
#include "scratch.hpp"

namespace cnn::detail {
namespace {

/// Positions one GEMM takes as its rows (or, for the weight gradient, its depth), in whole
/// images: 4x4 planes then give GEMMs as long as 16x16 ones.
constexpr int64_t kGroupPositions = 512;

/// The forward and the weight gradient read x where it lies, unpadded: tap k = (ic, kh, kw)
/// of output (oh, ow) reads input row oh * stride_h - pad_h + kh, column ow * stride_w -
/// pad_w + kw, at corner_offset + tap_offset from its image's start. Only the taps that read
/// inside the image are computed (the classes below; the others multiply the zero padding,
/// and leaving their products out gives the same sums), so no zero-padded copy is needed:
/// staging one cost resnet's stride-2 layers a copy of their input in the forward and again
/// in the weight gradient. The sum can leave the image (row or column below 0) only for a tap
/// that is not computed; a class therefore reads from a pointer shifted to its first tap inside
/// (class_shift), so that every pointer formed lies in x.
int64_t corner_offset(int64_t r, const ops::ConvShape& s) {
  const int64_t positions = s.out_h * s.out_w;
  const int64_t i = r / positions, oh = r % positions / s.out_w, ow = r % s.out_w;
  return i * s.in_channels * s.in_h * s.in_w + (oh * s.stride_h - s.pad_h) * s.in_w +
         ow * s.stride_w - s.pad_w;
}
int64_t tap_offset(int64_t k, const ops::ConvShape& s) {
  const int64_t kernel_size = s.kernel_h * s.kernel_w;
  const int64_t ic = k / kernel_size, kh = k % kernel_size / s.kernel_w, kw = k % s.kernel_w;
  return (ic * s.in_h + kh) * s.in_w + kw;
}

/// out (images, channels, positions) [+ bias] from the GEMM's rows c (images * positions,
/// ldc), channel j of row r at c[r * ldc + j], then the epilogue (out is at `offset` in the
/// whole output): one pass, image by image (DirectConvKernels::transpose_out). The bias and
/// the epilogue as passes of their own over each transposed image cost resnet's evaluation
/// forward 0.5-1.7%.
void copy_out(float* out, int64_t offset, const float* c, int64_t images, int64_t positions,
              int64_t channels, int64_t ldc, const float* bias, ConvEpilogue epilogue) {
  const DirectConvKernels& kernels = direct_conv_kernels();
  for (int64_t i = 0; i < images; ++i) {
    const int64_t at = i * channels * positions;
    const float* addend =
        epilogue.relu && epilogue.addend ? epilogue.addend_at(offset + at) : nullptr;
    kernels.transpose_out(out + at, positions, c + i * positions * ldc, ldc, positions, channels,
                          bias, addend, epilogue.relu);
    epilogue.write_moments(out + at, offset + at, channels * positions);
  }
}

/// Indices [lo, hi); empty ones are {0, 0}.
struct Interval {
  int64_t lo, hi;
  bool operator==(const Interval&) const = default;
};

/// Indices [0, count) grouped by an interval each (the forward: outputs by the taps they read
/// inside the input; the weight gradient: taps by the outputs that read them inside it; the
/// input gradient: a phase's positions by its taps that read inside dy).
/// ranges[c] is class c's interval, class_of[i] the class of index i; classes in the order
/// of their first index. Grow-only: no allocation once warm.
struct IntervalClasses {
  std::vector<Interval> ranges;
  std::vector<int64_t> class_of;
  template <typename IntervalOf>
  void build(int64_t count, const IntervalOf& interval_of) {
    ranges.clear();
    class_of.assign(static_cast<size_t>(count), 0);
    for (int64_t i = 0; i < count; ++i) {
      const Interval r = interval_of(i);
      const auto found = std::find(ranges.begin(), ranges.end(), r);
      class_of[static_cast<size_t>(i)] = found - ranges.begin();
      if (found == ranges.end()) ranges.push_back(r);
    }
  }
  int64_t size() const { return static_cast<int64_t>(ranges.size()); }
};

/// A class of a grid's positions (a row class by a column class): one GEMM over its
/// positions whose depth is only its taps, in the order of all taps.
struct PositionClass {
  int64_t first, depth;  // its taps in GridClasses' offsets and b_rows (unless all_taps)
  bool all_taps;         // every tap: the caller's full offsets and B
  int64_t first_member;  // its positions (row * cols + col, in order) in GridClasses' members
  int64_t member_count;
  Interval along_h, along_w;  // its taps inside: the jh and jw of these intervals
  // What its positions add to where they read, and what its taps' offsets had taken off (none
  // when all_taps), so that every pointer formed lies inside the operand: set by rebase().
  int64_t shift;
};

/// The classes of one or more grids of positions (the forward's output plane, the input
/// gradient's stride phases), appended grid by grid. The taps are channels x taps_h x taps_w,
/// tap (c, jh, jw) at index t = (c taps_h + jh) taps_w + jw of the caller's list; a position's
/// taps inside are the jh of its row class's interval and the jw of its column class's.
/// Grow-only: no allocation once warm.
struct GridClasses {
  std::vector<PositionClass> classes;
  std::vector<int64_t> offsets;  // a partial class's taps: the caller's tap_offsets[t]
  std::vector<int64_t> b_rows;   // and their rows of B, t * block
  std::vector<int64_t> members;

  void clear() {
    classes.clear();
    offsets.clear();
    b_rows.clear();
    members.clear();
  }
  /// Appends the classes of a grid of row_classes.class_of.size() x col_classes.class_of.size()
  /// positions, row class by column class; returns how many.
  int64_t append(const IntervalClasses& row_classes, const IntervalClasses& col_classes,
                 int64_t channels, int64_t taps_h, int64_t taps_w, const int64_t* tap_offsets,
                 int64_t block) {
    const int64_t rows = static_cast<int64_t>(row_classes.class_of.size());
    const int64_t cols = static_cast<int64_t>(col_classes.class_of.size());
    for (int64_t rc = 0; rc < row_classes.size(); ++rc)
      for (int64_t cc = 0; cc < col_classes.size(); ++cc) {
        const Interval rh = row_classes.ranges[static_cast<size_t>(rc)];
        const Interval rw = col_classes.ranges[static_cast<size_t>(cc)];
        PositionClass pc{};
        pc.all_taps = rh.lo == 0 && rh.hi == taps_h && rw.lo == 0 && rw.hi == taps_w;
        pc.along_h = rh;
        pc.along_w = rw;
        pc.first = static_cast<int64_t>(offsets.size());
        pc.depth = pc.all_taps ? channels * taps_h * taps_w : 0;
        if (!pc.all_taps) {
          for (int64_t c = 0; c < channels; ++c)
            for (int64_t jh = rh.lo; jh < rh.hi; ++jh)
              for (int64_t jw = rw.lo; jw < rw.hi; ++jw) {
                const int64_t t = (c * taps_h + jh) * taps_w + jw;
                offsets.push_back(tap_offsets[t]);
                b_rows.push_back(t * block);
                ++pc.depth;
              }
        }
        pc.first_member = static_cast<int64_t>(members.size());
        for (int64_t r = 0; r < rows; ++r) {
          if (row_classes.class_of[static_cast<size_t>(r)] != rc) continue;
          for (int64_t col = 0; col < cols; ++col)
            if (col_classes.class_of[static_cast<size_t>(col)] == cc)
              members.push_back(r * cols + col);
        }
        pc.member_count = static_cast<int64_t>(members.size()) - pc.first_member;
        classes.push_back(pc);
      }
    return row_classes.size() * col_classes.size();
  }
  /// Sets class cl's shift, taking it off the class's own tap offsets; a class of every tap
  /// reads the caller's full offsets, and takes none.
  void rebase(int64_t cl, int64_t shift) {
    PositionClass& pc = classes[static_cast<size_t>(cl)];
    pc.shift = pc.all_taps ? 0 : shift;
    if (pc.all_taps) return;
    for (int64_t t = pc.first; t < pc.first + pc.depth; ++t)
      offsets[static_cast<size_t>(t)] -= shift;
  }
};

/// One phase (ph, pw) of the input gradient: the input positions (a stride_h + ph,
/// b stride_w + pw) read dy at (a + dh, b + dw) for the taps (kh, kw) with
/// kh = ph + pad_h (mod stride_h), dh = (ph + pad_h - kh) / stride_h (and so for columns).
struct Phase {
  int64_t ph, pw;
  int64_t rows_a, cols_b;            // positions a < rows_a, b < cols_b (0 when past the input)
  int64_t depth;                     // taps (oc, kh, kw) of the phase
  int64_t first;                     // its offsets and packed B start at tap `first` of all phases'
  int64_t first_class, class_count;  // its classes in the plan's GridClasses
  // Where position (a, b)'s taps read in dy, relative to a * out_w + b: base + offsets[t]. base
  // is the least shift of its taps (dh * out_w + dw), so that the offsets are not negative.
  int64_t base;
};

/// Along one dimension: visit(k, d) for the taps k < kernel that input phase `phase` reads,
/// d = (phase + pad - k) / stride their shift in dy.
template <typename Visit>
void phase_taps(int64_t phase, int64_t pad, int64_t stride, int64_t kernel, const Visit& visit) {
  for (int64_t k = 0; k < kernel; ++k) {
    const int64_t shifted = phase + pad - k;
    if ((shifted % stride + stride) % stride == 0) visit(k, shifted / stride);
  }
}

/// The input gradient's plan, shared read-only by the threads: the phases, every phase's tap
/// offsets into dy (read where it lies, like x in the forward) and its packed weights
/// (columns: input channels).
struct InputGradPlan {
  int64_t block, columns;  // the GEMM's column block and padded width (input channels)
  int64_t max_rows;        // the most positions a phase has in one image
  int64_t max_classes;     // the most classes a phase has
  const std::vector<Phase>* phases;
  const int64_t* offsets;
  const float* packed;
  const GridClasses* classes;  // the phases' classes of positions, phase by phase
};

InputGradPlan plan_input_grad(const float* w, const ops::ConvShape& s, int parts) {
  const DirectConvKernels& kernels = direct_conv_kernels();
  InputGradPlan plan{};
  auto extent = [](int64_t in, int64_t phase, int64_t stride) {
    return phase < in ? (in - phase + stride - 1) / stride : int64_t{0};
  };
  // A phase's least shift along one dimension (that of its last tap; 0 without taps).
  auto least_shift = [](int64_t phase, int64_t pad, int64_t stride, int64_t kernel) {
    int64_t least = 0;
    phase_taps(phase, pad, stride, kernel, [&](int64_t, int64_t d) { least = d; });
    return least;
  };
  const int64_t out_plane = s.out_h * s.out_w;
  plan.block = kernels.gather_block(s.in_channels);
  plan.columns = round_up(s.in_channels, plan.block);

  // Grow-only, per calling thread: no allocation once warm.
  thread_local std::vector<Phase> phases;
  phases.clear();
  const int64_t taps = s.out_channels * s.kernel_h * s.kernel_w;
  std::vector<int64_t>& offsets = shared_scratch<int64_t>(1, taps);
  // Tap t of all phases' list: its (oc, kh, kw) as one index into w's (oc, ic, kh, kw).
  std::vector<int64_t>& sources = shared_scratch<int64_t>(0, taps);
  int64_t next = 0;
  plan.max_rows = 0;
  for (int64_t ph = 0; ph < s.stride_h; ++ph) {
    for (int64_t pw = 0; pw < s.stride_w; ++pw) {
      const int64_t least_h = least_shift(ph, s.pad_h, s.stride_h, s.kernel_h);
      const int64_t least_w = least_shift(pw, s.pad_w, s.stride_w, s.kernel_w);
      Phase phase{ph, pw, extent(s.in_h, ph, s.stride_h), extent(s.in_w, pw, s.stride_w), 0, next,
                  0,  0,  least_h * s.out_w + least_w};
      for (int64_t oc = 0; oc < s.out_channels; ++oc) {
        phase_taps(ph, s.pad_h, s.stride_h, s.kernel_h, [&](int64_t kh, int64_t dh) {
          phase_taps(pw, s.pad_w, s.stride_w, s.kernel_w, [&](int64_t kw, int64_t dw) {
            offsets[static_cast<size_t>(next)] =
                oc * out_plane + (dh - least_h) * s.out_w + dw - least_w;
            sources[static_cast<size_t>(next)] =
                (oc * s.in_channels * s.kernel_h + kh) * s.kernel_w + kw;
            ++next;
          });
        });
      }
      phase.depth = next - phase.first;
      plan.max_rows = std::max(plan.max_rows, phase.rows_a * phase.cols_b);
      phases.push_back(phase);
    }
  }
  // B of every phase: row t (a tap) holds w(oc, ic, kh, kw) for the input channels ic. One
  // parallel region for all the phases, which it names by pointer: in a lambda run on another
  // thread, `phases` would be that thread's own.
  const std::vector<Phase>* all_phases = &phases;
  std::vector<float>& packed = shared_scratch<float>(0, std::max<int64_t>(taps, 1) * plan.columns);
  const int64_t kernel_size = s.kernel_h * s.kernel_w;
  const int64_t* source = sources.data();
  const int64_t units = plan.columns / pack_unit(plan.block);
  for_each_range(
      static_cast<int>(std::min<int64_t>(parts, units)), units, [&](int64_t first, int64_t last) {
        for (const Phase& phase : *all_phases) {
          const int64_t* phase_sources = source + phase.first;
          pack_column_units(packed.data() + phase.first * plan.columns, s.in_channels, plan.block,
                            phase.depth, first, last, [&](int64_t ic, int64_t k) {
                              return w[phase_sources[k] + ic * kernel_size];
                            });
        }
      });
  plan.phases = &phases;
  plan.offsets = offsets.data();
  plan.packed = packed.data();

  // Each phase's positions classed by the range of its kh (kw) taps whose dy row (column)
  // a + dh lies inside dy, as the forward classes its positions: the products of the others
  // are zeros, so leaving them out gives the same sums.
  thread_local GridClasses classes;
  thread_local IntervalClasses row_classes, col_classes;
  classes.clear();
  plan.max_classes = 0;
  // Along one dimension, a phase's taps j < taps (kernel index stepping by the stride) shift
  // dy by first_shift - j, so position a reads dy row a + first_shift - j: those inside dy
  // are first_shift + a - out < j <= first_shift + a.
  const auto inside = [](int64_t taps, int64_t first_shift, int64_t a, int64_t out) {
    const int64_t lo = std::max<int64_t>(0, first_shift + a - out + 1);
    const int64_t hi = std::min(taps, first_shift + a + 1);
    return lo < hi ? Interval{lo, hi} : Interval{0, 0};
  };
  for (Phase& phase : phases) {
    int64_t taps_h = 0, taps_w = 0, shift_h = 0, shift_w = 0;
    phase_taps(phase.ph, s.pad_h, s.stride_h, s.kernel_h, [&](int64_t, int64_t d) {
      if (taps_h++ == 0) shift_h = d;
    });
    phase_taps(phase.pw, s.pad_w, s.stride_w, s.kernel_w, [&](int64_t, int64_t d) {
      if (taps_w++ == 0) shift_w = d;
    });
    row_classes.build(phase.rows_a, [&](int64_t a) { return inside(taps_h, shift_h, a, s.out_h); });
    col_classes.build(phase.cols_b, [&](int64_t b) { return inside(taps_w, shift_w, b, s.out_w); });
    phase.first_class = static_cast<int64_t>(classes.classes.size());
    phase.class_count = classes.append(row_classes, col_classes, s.out_channels, taps_h, taps_w,
                                       offsets.data() + phase.first, plan.block);
    // A class's least shift is that of its last tap inside (j = hi - 1): its positions read
    // from base + shift, inside dy, its taps' offsets taken relative to that.
    for (int64_t cl = phase.first_class; cl < phase.first_class + phase.class_count; ++cl) {
      const PositionClass& pc = classes.classes[static_cast<size_t>(cl)];
      classes.rebase(cl, (taps_h - pc.along_h.hi) * s.out_w + taps_w - pc.along_w.hi);
    }
    plan.max_classes = std::max(plan.max_classes, phase.class_count);
  }
  plan.classes = &classes;
  return plan;
}

/// The rows dx's GEMMs take for a group of `images`: each phase's positions, its classes'
/// rows rounded up to whole tiles.
int64_t input_grad_rows(const InputGradPlan& plan, int64_t images) {
  return images * plan.max_rows + plan.max_classes * (kGatherRows - 1);
}

/// dx of a group's images (assigned) from their dy (out_size apart), phase by phase. rows and
/// c_rows hold input_grad_rows(plan, images) entries; c holds round_up(images * plan.max_rows + 1,
/// kGatherRows) rows of plan.columns, spare_row one of those past images * plan.max_rows (the
/// rows that round a tile up write there, or past the group's rows, and are never read).
void input_grad_group(float* dx, const float* dy, int64_t images, const InputGradPlan& plan,
                      const float** rows, float** c_rows, float* c, float* spare_row,
                      const ops::ConvShape& s) {
  const DirectConvKernels& kernels = direct_conv_kernels();
  const int64_t in_plane = s.in_h * s.in_w;
  const int64_t out_size = s.out_channels * s.out_h * s.out_w;
  const GridClasses& grid = *plan.classes;
  for (const Phase& phase : *plan.phases) {
    const int64_t per_image = phase.rows_a * phase.cols_b, used = images * per_image;
    // This phase's classes: each its positions (image by image) as one GEMM, each position
    // writing its own row of c (image, a, b order, as below reads them). A phase of one class
    // (no tap reads dy's padding) has its rows in that order: C's rows then need no list.
    const bool one_class = phase.class_count == 1;
    int64_t next = 0;
    for (int64_t cl = phase.first_class; cl < phase.first_class + phase.class_count; ++cl) {
      const PositionClass& pc = grid.classes[static_cast<size_t>(cl)];
      if (used == 0 || pc.member_count == 0) continue;
      const int64_t start = next;
      const int64_t* members = grid.members.data() + pc.first_member;
      // A class without taps inside reads nothing: its rows point at their image's dy.
      const bool reads = pc.depth > 0;
      for (int64_t i = 0; i < images; ++i)
        for (int64_t m = 0; m < pc.member_count; ++m) {
          const int64_t p = members[m], a = p / phase.cols_b, b = p % phase.cols_b;
          rows[next] = dy + i * out_size + (reads ? a * s.out_w + b + phase.base + pc.shift : 0);
          c_rows[next++] = c + (i * per_image + p) * plan.columns;
        }
      const int64_t count = round_up(next - start, kGatherRows);
      for (; next < start + count; ++next) {
        rows[next] = rows[next - 1];
        c_rows[next] = spare_row;  // or, for one class, c's rows past the group's (spare too)
      }
      for (int64_t ob = 0; ob < plan.columns / plan.block; ++ob) {
        GatherGemmArgs args{
            rows + start,
            count,
            pc.all_taps ? plan.offsets + phase.first : grid.offsets.data() + pc.first,
            pc.depth,
            plan.packed + (phase.first * plan.columns + ob * phase.depth * plan.block),
            plan.block,
            c + ob * plan.block,
            plan.columns,
            false};
        if (!pc.all_taps) args.b_offsets = grid.b_rows.data() + pc.first;  // the class's B rows
        if (!one_class) {
          args.c_rows = c_rows + start;
          args.c_column = ob * plan.block;
        }
        kernels.gather_gemm(args);
      }
    }
    if (used == 0) continue;
    if (s.stride_h == 1 && s.stride_w == 1) {  // one phase: the positions are the planes'
      for (int64_t i = 0; i < images; ++i) {
        kernels.transpose(dx + i * s.in_channels * in_plane, in_plane,
                          c + i * per_image * plan.columns, plan.columns, in_plane, s.in_channels);
      }
      continue;
    }
    for (int64_t i = 0; i < images; ++i) {
      for (int64_t ic = 0; ic < s.in_channels; ++ic) {
        float* plane = dx + (i * s.in_channels + ic) * in_plane;
        const float* from = c + i * per_image * plan.columns + ic;
        for (int64_t a = 0; a < phase.rows_a; ++a) {
          float* row = plane + (a * s.stride_h + phase.ph) * s.in_w + phase.pw;
          for (int64_t b = 0; b < phase.cols_b; ++b)
            row[b * s.stride_w] = from[(a * phase.cols_b + b) * plan.columns];
        }
      }
    }
  }
}

/// One dimension of a convolution: output o reads input o * stride - pad + k at tap k; inputs
/// outside [0, in) are the zero padding.
struct Dimension {
  int64_t in, kernel, stride, pad, out;
  /// The taps of output o that read inside the input.
  Interval taps_inside(int64_t o) const {
    const int64_t start = o * stride - pad;
    const int64_t lo = std::clamp<int64_t>(-start, 0, kernel);
    const int64_t hi = std::clamp<int64_t>(in - start, lo, kernel);
    return lo < hi ? Interval{lo, hi} : Interval{0, 0};
  }
  /// The outputs whose tap k reads inside the input: 0 <= o * stride - pad + k < in.
  Interval outputs_inside(int64_t k) const {
    const auto ceil_div = [](int64_t a, int64_t b) { return a >= 0 ? (a + b - 1) / b : -(-a / b); };
    const int64_t lo = std::max<int64_t>(0, ceil_div(pad - k, stride));
    const int64_t hi = std::min(out, ceil_div(in + pad - k, stride));
    return lo < hi ? Interval{lo, hi} : Interval{0, 0};
  }
};

Dimension rows_of(const ops::ConvShape& s) {
  return {s.in_h, s.kernel_h, s.stride_h, s.pad_h, s.out_h};
}
Dimension columns_of(const ops::ConvShape& s) {
  return {s.in_w, s.kernel_w, s.stride_w, s.pad_w, s.out_w};
}

}  // namespace

int64_t implicit_products_inside(const ops::ConvShape& s) {
  const auto pairs_inside = [](const Dimension& d) {
    int64_t pairs = 0;
    for (int64_t o = 0; o < d.out; ++o) {
      const Interval taps = d.taps_inside(o);
      pairs += taps.hi - taps.lo;
    }
    return pairs;
  };
  return pairs_inside(rows_of(s)) * pairs_inside(columns_of(s));
}

namespace {

/// One convolution's read-only state for implicit_forward_groups' groups: B (the weights,
/// [tap][output channel] by blocks), the taps' offsets (tap_offset), the classes of positions
/// and each position's corner_offset. Built by the calling thread in its storage `slot` (0 or
/// 1: two convolutions at once), read by every thread of the region.
struct ForwardPlan {
  int64_t depth, block, columns, class_count, positions, in_size;
  const float* packed;
  const int64_t* offsets;
  const GridClasses* grid;
  const int64_t* position_reads;

  /// Rows (and c rows) that a group of `images` images takes, with each class's rows rounded
  /// up to whole tiles.
  int64_t max_rows(int64_t images) const {
    return images * positions + class_count * (kGatherRows - 1);
  }
};

ForwardPlan plan_forward(const float* w, const float* w_scale, const ops::ConvShape& s, int team,
                         int slot) {
  const DirectConvKernels& kernels = direct_conv_kernels();
  ForwardPlan plan{};
  const int64_t kernel_size = s.kernel_h * s.kernel_w;
  plan.depth = s.in_channels * kernel_size;
  plan.block = kernels.gather_block(s.out_channels);
  plan.columns = round_up(s.out_channels, plan.block);
  plan.positions = s.out_h * s.out_w;
  plan.in_size = s.in_channels * s.in_h * s.in_w;
  const int64_t depth = plan.depth;
  std::vector<float>& packed = shared_scratch<float>(slot, depth * plan.columns);
  pack_columns(packed.data(), s.out_channels, plan.columns, plan.block, depth, team,
               [&](int64_t o, int64_t k) {
                 // A scaled weight rounded as a scaled copy holds it.
                 return w_scale ? w[o * depth + k] * w_scale[o] : w[o * depth + k];
               });
  plan.packed = packed.data();
  std::vector<int64_t>& offsets = shared_scratch<int64_t>(slot, depth);
  for (int64_t k = 0; k < depth; ++k) offsets[static_cast<size_t>(k)] = tap_offset(k, s);
  plan.offsets = offsets.data();

  // The output positions classed (row class, column class) by the taps (ic, kh, kw) they
  // read inside the input: a class's GEMM adds the same products in the same order as over
  // all taps minus those that read the zero padding (whose products are zeros: the sums are
  // the same bits). Small planes have many such positions: a 4x4 output of a 3x3 kernel with
  // padding 1 reads the padding in 31% of its products, a 7x7 one in 18% (oneDNN's direct
  // convolutions skip them too). Grow-only, per calling thread: no allocation once warm.
  // Named by pointer in the region (a thread_local named inside a lambda on another thread
  // would be that thread's own).
  const Dimension along_h = rows_of(s), along_w = columns_of(s);
  thread_local IntervalClasses row_classes[2], col_classes[2];
  thread_local GridClasses classes[2];
  thread_local std::vector<int64_t> position_storage[2];
  IntervalClasses& rows = row_classes[slot];
  IntervalClasses& cols = col_classes[slot];
  GridClasses& grid = classes[slot];
  rows.build(s.out_h, [&](int64_t oh) { return along_h.taps_inside(oh); });
  cols.build(s.out_w, [&](int64_t ow) { return along_w.taps_inside(ow); });
  grid.clear();
  plan.class_count =
      grid.append(rows, cols, s.in_channels, s.kernel_h, s.kernel_w, plan.offsets, plan.block);
  plan.grid = &grid;

  // Each position's corner_offset in its image, and each class's shift to its first tap
  // inside: a class's positions read from corner + shift, inside the image (a class of every
  // tap has its corners inside).
  for (int64_t cl = 0; cl < plan.class_count; ++cl) {
    const PositionClass& pc = grid.classes[static_cast<size_t>(cl)];
    grid.rebase(cl, pc.along_h.lo * s.in_w + pc.along_w.lo);
  }
  std::vector<int64_t>& reads = position_storage[slot];
  reads.resize(static_cast<size_t>(plan.positions));
  for (int64_t p = 0; p < plan.positions; ++p) reads[static_cast<size_t>(p)] = corner_offset(p, s);
  plan.position_reads = reads.data();
  return plan;
}

/// The GEMM's rows of `images` images from group_x (the group's first image) into c
/// (images * positions rows of ldc = plan.columns, then a spare row), class by class; rows,
/// c_rows (plan.max_rows(images) each) and class_rows (2 * class_count) are the caller's
/// scratch.
void forward_group(const ForwardPlan& plan, const float* group_x, int64_t images, float* c,
                   const float** rows, float** c_rows, int64_t* class_rows) {
  const DirectConvKernels& kernels = direct_conv_kernels();
  const GridClasses* grid = plan.grid;
  const int64_t positions = plan.positions, columns = plan.columns, block = plan.block;
  float* spare_row = c + images * positions * columns;
  // The group's positions class by class (image, oh, ow order within one); each writes its
  // row of c in position order (image, oh, ow), as copy_out reads them.
  int64_t next = 0;
  for (int64_t cl = 0; cl < plan.class_count; ++cl) {
    const int64_t start = next;
    const PositionClass& pc = grid->classes[static_cast<size_t>(cl)];
    const int64_t* members = grid->members.data() + pc.first_member;
    const int64_t member_count = pc.member_count;
    // A class without taps inside reads nothing: its rows point at their image.
    const bool reads = pc.depth > 0;
    for (int64_t i = 0; i < images; ++i) {
      for (int64_t m = 0; m < member_count; ++m) {
        const int64_t p = members[m];
        rows[next] = group_x + i * plan.in_size + (reads ? plan.position_reads[p] + pc.shift : 0);
        c_rows[next++] = c + (i * positions + p) * columns;
      }
    }
    class_rows[2 * cl] = start;
    class_rows[2 * cl + 1] = next - start;
    for (const int64_t end = start + round_up(next - start, kGatherRows); next < end; ++next) {
      rows[next] = rows[next - 1];
      c_rows[next] = spare_row;
    }
  }
  for (int64_t cl = 0; cl < plan.class_count; ++cl) {
    const int64_t start = class_rows[2 * cl], used = class_rows[2 * cl + 1];
    if (used == 0) continue;
    const PositionClass& pc = grid->classes[static_cast<size_t>(cl)];
    for (int64_t ob = 0; ob < columns / block; ++ob) {
      GatherGemmArgs args{rows + start,
                          round_up(used, kGatherRows),
                          pc.all_taps ? plan.offsets : grid->offsets.data() + pc.first,
                          pc.depth,
                          plan.packed + ob * plan.depth * block,
                          block,
                          c + ob * block,
                          columns,
                          false};
      if (!pc.all_taps) args.b_offsets = grid->b_rows.data() + pc.first;  // its B rows
      args.c_rows = c_rows + start;  // each position's own row of c
      args.c_column = ob * block;
      kernels.gather_gemm(args);
    }
  }
}

}  // namespace

void implicit_forward_groups(const float* x, const float* w, const float* w_scale,
                             const ops::ConvShape& s, int64_t lane_group,
                             const ImplicitGroupSink& sink, const ImplicitConv* also) {
  const int team = static_cast<int>(std::min<int64_t>(ops::threads(), s.batch));
  const ForwardPlan plan = plan_forward(w, w_scale, s, team, 0);
  const ForwardPlan also_plan =
      also ? plan_forward(also->weights, also->weight_scale, also->shape, team, 1) : ForwardPlan{};
  const int64_t positions = plan.positions;
  const int64_t group =
      lane_group > 0 ? lane_group : images_per_group(kGroupPositions, positions, s.batch);
  const int64_t max_rows =
      std::max(plan.max_rows(group), also ? also_plan.max_rows(group) : int64_t{0});
  const int64_t class_count = std::max(plan.class_count, also_plan.class_count);
  const int64_t also_out_size = also ? also->shape.out_channels * also_plan.positions : 0;
  // Each thread takes its own block of images (images_of_part), in groups of `group`, or with
  // lane_group its own run of whole groups (the split of winograd.cpp's lanes_conv3x3); an
  // image's rows are the same sums in any group. The blocks are those of the passes before and
  // after (ReLU, pooling, BatchNorm), so a thread reads the images it wrote (lanes_conv3x3 says
  // why that matters here).
  const int64_t group_count = (s.batch + group - 1) / group;
  const int parts = static_cast<int>(std::min<int64_t>(team, group_count));
  const auto run = [&](ImageRange range) {
    // The GEMM's rows (the second convolution's first, into the same memory), then the second's
    // output (NCHW, with its bias) for the sink: a footprint no larger than the second's own
    // call had (a batch-1 forward was 1% slower with the rows in a buffer of their own).
    const int64_t c_size =
        std::max((group * positions + 1) * plan.columns,
                 also ? (group * also_plan.positions + 1) * also_plan.columns : int64_t{0});
    float* c = scratch<float>(1, c_size + (also ? group * also_out_size : 0));
    float* also_y = also ? c + c_size : nullptr;
    const float** rows = scratch<const float*>(0, max_rows);
    float** c_rows = scratch<float*>(0, max_rows);
    int64_t* class_rows = scratch<int64_t>(0, 2 * class_count);  // first row, count
    for (int64_t n0 = range.first; n0 < range.last; n0 += group) {
      const int64_t images = std::min(group, range.last - n0);
      if (also) {
        forward_group(also_plan, x + n0 * also_plan.in_size, images, c, rows, c_rows, class_rows);
        copy_out(also_y, 0, c, images, also_plan.positions, also->shape.out_channels,
                 also_plan.columns, also->bias, {});
      }
      forward_group(plan, x + n0 * plan.in_size, images, c, rows, c_rows, class_rows);
      sink(n0, images, c, plan.columns, n0 == range.first, also_y);
    }
  };
  if (lane_group > 0) {
    for_each_range(parts, group_count, [&](int64_t first, int64_t last) {
      run({first * group, std::min(last * group, s.batch)});
    });
  } else {
    for_each_part(parts, [&](int part) { run(images_of_part(s.batch, part, parts)); });
  }
}

void implicit_conv_forward(float* y, const float* x, const float* w, const float* w_scale,
                           const float* b, const ops::ConvShape& s, ConvEpilogue epilogue) {
  const int64_t out_size = s.out_channels * s.out_h * s.out_w;
  implicit_forward_groups(
      x, w, w_scale, s, 0,
      [&](int64_t n0, int64_t images, const float* c, int64_t ldc, bool, const float*) {
        copy_out(y + n0 * out_size, n0 * out_size, c, images, s.out_h * s.out_w, s.out_channels,
                 ldc, b, epilogue);
      });
}

void implicit_conv_backward(float* dx, float* dw, const float* x, const float* w, const float* dy,
                            const ops::ConvShape& s) {
  const DirectConvKernels& kernels = direct_conv_kernels();
  const int64_t taps = s.in_channels * s.kernel_h * s.kernel_w;
  const int64_t tap_rows = round_up(taps, kGatherRows);
  const int64_t positions = s.out_h * s.out_w;
  const int64_t in_size = s.in_channels * s.in_h * s.in_w;
  const int64_t out_size = s.out_channels * positions;
  const int64_t block = kernels.gather_block(s.out_channels);
  const int64_t columns = round_up(s.out_channels, block);
  const int team = static_cast<int>(std::min<int64_t>(ops::threads(), s.batch));
  const int64_t group = images_per_group(kGroupPositions, positions, s.batch);
  const InputGradPlan plan = dx ? plan_input_grad(w, s, team) : InputGradPlan{};
  const int64_t dx_rows = dx ? input_grad_rows(plan, group) : 0;

  // The classes of kh (and of kw): taps that the same output rows (columns) read inside the
  // input. Every tap of a class has the same positions, the products of the others are zeros.
  // Built once per call by the calling thread, read by all (named by pointer in the region).
  const int64_t kernel_size = s.kernel_h * s.kernel_w;
  const Dimension along_h = rows_of(s), along_w = columns_of(s);
  thread_local IntervalClasses kh_classes, kw_classes;
  kh_classes.build(s.kernel_h, [&](int64_t kh) { return along_h.outputs_inside(kh); });
  kw_classes.build(s.kernel_w, [&](int64_t kw) { return along_w.outputs_inside(kw); });
  const int64_t tap_class_count = kh_classes.size() * kw_classes.size();
  // Class tc = (kh class, kw class): its taps in order (tap_class_ranges: first, count), its
  // positions in order (position_count, class_position_list) and its first position's
  // corner_offset (class_corner; 0 when it has none); each position of a group's
  // corner_offset, and each tap's tap_offset. A class's taps read from its first position's
  // corner, and its positions relative to that: every pointer formed lies inside x.
  thread_local std::vector<int64_t> class_storage;
  class_storage.resize(static_cast<size_t>(3 * tap_class_count + 2 * taps +
                                           tap_class_count * (positions + 1) + group * positions));
  int64_t* tap_class_ranges = class_storage.data();
  int64_t* tap_class_members = tap_class_ranges + 2 * tap_class_count;
  int64_t* position_count = tap_class_members + taps;
  int64_t* class_position_list = position_count + tap_class_count;
  int64_t* position_offsets = class_position_list + tap_class_count * positions;
  int64_t* class_corner = position_offsets + group * positions;
  int64_t* tap_reads = class_corner + tap_class_count;
  for (int64_t k = 0; k < taps; ++k) tap_reads[k] = tap_offset(k, s);
  for (int64_t tc = 0, next = 0; tc < tap_class_count; ++tc) {
    const int64_t kh_class = tc / kw_classes.size(), kw_class = tc % kw_classes.size();
    tap_class_ranges[2 * tc] = next;
    for (int64_t k = 0; k < taps; ++k) {
      const int64_t kh = k % kernel_size / s.kernel_w, kw = k % s.kernel_w;
      if (kh_classes.class_of[static_cast<size_t>(kh)] == kh_class &&
          kw_classes.class_of[static_cast<size_t>(kw)] == kw_class)
        tap_class_members[next++] = k;
    }
    tap_class_ranges[2 * tc + 1] = next - tap_class_ranges[2 * tc];
    const Interval oh_range = kh_classes.ranges[static_cast<size_t>(kh_class)];
    const Interval ow_range = kw_classes.ranges[static_cast<size_t>(kw_class)];
    position_count[tc] = 0;
    for (int64_t oh = oh_range.lo; oh < oh_range.hi; ++oh)
      for (int64_t ow = ow_range.lo; ow < ow_range.hi; ++ow)
        class_position_list[tc * positions + position_count[tc]++] = oh * s.out_w + ow;
    class_corner[tc] =
        position_count[tc] > 0 ? corner_offset(class_position_list[tc * positions], s) : 0;
  }
  for (int64_t r = 0; r < group * positions; ++r) position_offsets[r] = corner_offset(r, s);

  // The weight gradient's GEMM: rows are the taps (ic, kh, kw), the depth the group's output
  // positions, B dy transposed (positions x output channels). One partial per block of
  // images (gradient_blocks).
  const int blocks = gradient_blocks(s.batch, ops::threads());
  const int64_t partial_size = tap_rows * columns;
  std::vector<float>& partials = shared_scratch<float>(1, blocks * partial_size);
  for_each_part_on(blocks, team, [&](int part) {
    const auto [first, last] = images_of_part(s.batch, part, blocks);
    float* partial = partials.data() + part * partial_size;
    // A class's depth: where each of its positions reads in A and B.
    int64_t* class_a = scratch<int64_t>(1, 2 * group * positions);
    int64_t* class_b = class_a + group * positions;
    const float** class_tap_pointers = scratch<const float*>(2, tap_rows);
    float** class_c_rows = scratch<float*>(0, tap_rows);
    float* spare_row = scratch<float>(7, columns);
    std::fill(spare_row, spare_row + columns, 0.0f);  // accumulated into, never read
    float* dy_t = scratch<float>(4, group * positions * columns);
    float* c = nullptr;
    const float** dx_pointers = nullptr;
    float** dx_c_rows = nullptr;
    float* dx_spare_row = nullptr;
    if (dx) {
      c = scratch<float>(6, round_up(group * plan.max_rows + 1, kGatherRows) * plan.columns);
      dx_spare_row = c + group * plan.max_rows * plan.columns;
      dx_pointers = scratch<const float*>(1, dx_rows);
      dx_c_rows = scratch<float*>(1, dx_rows);
    }
    for (int64_t n0 = first; n0 < last; n0 += group) {
      const int64_t images = std::min(group, last - n0);
      const int64_t depth = images * positions;
      const float* group_x = x + n0 * in_size;
      // dy_t's block ob: [depth][block], zero past out_channels.
      const float* dy_group = dy + n0 * out_size;
      for (int64_t ob = 0; ob < columns / block; ++ob) {
        const int64_t valid = std::min(block, s.out_channels - ob * block);
        for (int64_t i = 0; i < images; ++i) {
          float* to = dy_t + ob * depth * block + i * positions * block;
          kernels.transpose(to, block, dy_group + i * out_size + ob * block * positions, positions,
                            valid, positions);
          if (valid == block) continue;
          for (int64_t p = 0; p < positions; ++p)
            std::fill(to + p * block + valid, to + (p + 1) * block, 0.0f);
        }
      }
      // One GEMM per class of taps (kh, kw) over the positions that read those taps inside the
      // input (the others multiply the zero padding): the same sums, in the same order, as
      // over every position.
      for (int64_t tc = 0; tc < tap_class_count; ++tc) {
        const int64_t* members = tap_class_members + tap_class_ranges[2 * tc];
        const int64_t member_count = tap_class_ranges[2 * tc + 1];
        const int64_t corner = class_corner[tc];
        int64_t class_depth = 0;
        for (int64_t i = 0; i < images; ++i)
          for (int64_t m = 0; m < position_count[tc]; ++m) {
            const int64_t p = class_position_list[tc * positions + m];
            class_a[class_depth] = position_offsets[i * positions + p] - corner;
            class_b[class_depth++] = (i * positions + p) * block;
          }
        // The class's taps (rows), whole tiles: the repeats write to a spare row. A class
        // without positions reads nothing: its taps point at the group's first image.
        for (int64_t m = 0; m < round_up(member_count, kGatherRows); ++m) {
          const int64_t k = members[std::min(m, member_count - 1)];
          class_tap_pointers[m] = group_x + (class_depth > 0 ? corner + tap_reads[k] : 0);
          class_c_rows[m] = m < member_count ? partial + k * columns : spare_row;
        }
        for (int64_t ob = 0; ob < columns / block; ++ob) {
          GatherGemmArgs args{class_tap_pointers,
                              round_up(member_count, kGatherRows),
                              class_a,
                              class_depth,
                              dy_t + ob * depth * block,
                              block,
                              partial + ob * block,
                              columns,
                              n0 != first};
          args.b_offsets = class_b;
          args.c_rows = class_c_rows;
          args.c_column = ob * block;
          kernels.gather_gemm(args);
        }
      }
      if (!dx) continue;
      input_grad_group(dx + n0 * in_size, dy_group, images, plan, dx_pointers, dx_c_rows, c,
                       dx_spare_row, s);
    }
  });
  // dw (out_channels, taps) += the partials (taps, columns) in block order, the threads
  // splitting the output channels (the same bits for any split), 16 at a time.
  const int64_t tiles = (s.out_channels + 15) / 16;
  for_each_range(static_cast<int>(std::min<int64_t>(team, tiles)), tiles,
                 [&](int64_t first, int64_t last) {
                   for (int64_t tile = first; tile < last; ++tile) {
                     const int64_t o0 = tile * 16, o1 = std::min(o0 + 16, s.out_channels);
                     for (int b = 0; b < blocks; ++b) {
                       const float* partial = partials.data() + b * partial_size;
                       for (int64_t k = 0; k < taps; ++k)
                         for (int64_t o = o0; o < o1; ++o)
                           dw[o * taps + k] += partial[k * columns + o];
                     }
                   }
                 });
}

}  // namespace cnn::detail

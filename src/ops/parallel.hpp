#pragma once
// The one way our kernels split work over OpenMP threads.
//
// A kernel splits its work into `parts` (for example one block of images per requested thread)
// and each part's result lands in its own place (its images, its partial sums). OpenMP may
// grant a smaller team than it was asked for: OMP_THREAD_LIMIT, OMP_DYNAMIC / omp_set_dynamic,
// or a call from inside a user's parallel region with nesting off (then the team has one
// thread). Splitting by omp_get_thread_num() against the requested count would then skip the
// parts of the threads that never started. Here the threads that did start claim the parts
// round-robin, so every part runs exactly once whatever the team, and the results are those of
// the requested split, bit for bit. With one part, no OpenMP construct is entered at all: a
// one-thread region (num_threads(1) or a false if clause) still allocates its team in libgomp,
// which would break the allocation-free training step.

#include <omp.h>

#include <cstdint>

namespace cnn::detail {

/// Runs body(part) once for every part in [0, parts), on a team of up to `parts` threads. The
/// parts must be independent (each writes only its own outputs); body must not throw.
template <typename Body>
void for_each_part(int parts, const Body& body) {
  if (parts <= 1) {
    if (parts == 1) body(0);
    return;
  }
#pragma omp parallel num_threads(parts)
  {
    const int team = omp_get_num_threads();
    for (int part = omp_get_thread_num(); part < parts; part += team) body(part);
  }
}

/// Runs body(first, last) on a team of up to min(parts, threads) threads, each thread once with
/// its contiguous run of parts: thread t of the team OpenMP grants (g threads) takes
/// [parts t / g, parts (t + 1) / g), so every part in [0, parts) is in exactly one run. For work
/// cut into a number of parts that does not follow the thread count (a convolution backward's
/// image blocks, each with its own partial sums): the parts' results do not depend on the team,
/// and a thread's parts are neighbours. With one thread, one call body(0, parts).
template <typename Body>
void for_each_run_on(int parts, int threads, const Body& body) {
  if (threads > parts) threads = parts;
  if (threads <= 1) {
    if (parts > 0) body(0, parts);
    return;
  }
#pragma omp parallel num_threads(threads)
  {
    const int team = omp_get_num_threads(), thread = omp_get_thread_num();
    const int first = parts * thread / team, last = parts * (thread + 1) / team;
    if (first < last) body(first, last);
  }
}

/// for_each_run_on, calling body(part) for each part of a thread's run in order.
template <typename Body>
void for_each_part_on(int parts, int threads, const Body& body) {
  for_each_run_on(parts, threads, [&](int first, int last) {
    for (int part = first; part < last; ++part) body(part);
  });
}

/// Splits [0, n) into `parts` contiguous ranges (part k: [n k / parts, n (k + 1) / parts)) and
/// runs body(first, last) for each through for_each_part. For work whose result does not depend
/// on the split (element-wise, or plane by plane); with parts <= 1, one call body(0, n).
template <typename Body>
void for_each_range(int parts, int64_t n, const Body& body) {
  if (parts <= 1) return body(int64_t{0}, n);
  for_each_part(parts, [&](int part) { body(n * part / parts, n * (part + 1) / parts); });
}

/// The parts for element-wise passes over n elements that split alike (for_each_range) so that
/// each element is written by the same thread in every pass: a model's parameters and gradients
/// (zero_grad, the optimizers' updates), and a batch's copies (gather_images, Flatten's
/// ops::copy_images) by the kernels' halves of its images. A thread writing a line the other
/// thread wrote or read last pays a round trip between the cores, on this machine 350 ns when
/// its two vCPUs do not share a cache. One part below 16,384 elements, where a team's start
/// costs more than it saves.
inline int element_parts(int64_t n, int threads) {
  return n >= (int64_t{1} << 14) ? threads : 1;
}

}  // namespace cnn::detail

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
// the requested split, bit for bit.

#include <omp.h>

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

}  // namespace cnn::detail

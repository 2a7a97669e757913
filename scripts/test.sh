#!/usr/bin/env bash
# The test command: install what is needed, then build and run the whole suite twice: as an
# optimised build with warnings as errors, and under AddressSanitizer + UndefinedBehaviorSanitizer;
# then every fuzz target briefly.
set -euo pipefail
# No arguments: anything given is refused rather than ignored by a 20-minute run.
case "$#:${1:-}" in
  0:) ;;
  1:-h | 1:--help)
    sed -n '2,/^set -euo/{/^#/s/^# \{0,1\}//p}' "$0"
    exit 0
    ;;
  *)
    echo "test.sh: takes no arguments, got: $* (expected none, or --help)" >&2
    exit 2
    ;;
esac
cd "$(dirname "$0")/.."
scripts/setup.sh --test
jobs=$(nproc)

run_suite() {  # name, extra cmake flags...
  local dir="build/$1"
  shift
  echo "== $dir: configure and build"
  # Tests and examples on explicitly: scripts/run.sh configures a fresh build/release without
  # tests, and CMake would otherwise keep that cached choice.
  # ONNX and MPI on explicitly: their tests must run, not be skipped for a missing package.
  cmake -S . -B "$dir" -DCNN_WERROR=ON -DCNN_BUILD_TESTS=ON -DCNN_BUILD_EXAMPLES=ON -DCNN_ONNX=ON \
    -DCNN_MPI=ON "$@" >/dev/null
  cmake --build "$dir" -j"$jobs"
  echo "== $dir: test"
  ctest --test-dir "$dir" --output-on-failure --no-tests=error -j"$jobs"
}

run_suite release -DCMAKE_BUILD_TYPE=Release
# halt_on_error makes any sanitizer report fail the test that produced it.
export ASAN_OPTIONS=halt_on_error=1:detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
run_suite sanitize -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCNN_SANITIZE=ON
# Every loader of untrusted bytes under libFuzzer for a few seconds each (scripts/fuzz.sh SECONDS
# runs them longer); a finding fails the suite.
scripts/fuzz.sh "${CNN_FUZZ_SECONDS:-5}"
echo "== all tests passed (release and sanitizer builds, fuzz targets)"

#!/usr/bin/env bash
# Fuzzes every loader of untrusted bytes with libFuzzer under AddressSanitizer and
# UndefinedBehaviorSanitizer: model files, checkpoints, IDX (raw and gzipped), CIFAR-10
# batches, spec JSON, images, ONNX.
#   scripts/fuzz.sh [SECONDS]   each target for SECONDS (default 60), one after the other
# Exits non-zero on the first finding; its input is in build/fuzz/artifacts/. The committed
# seed corpora (fuzz/corpus/TARGET) are copied, never modified; what a run discovers stays in
# build/fuzz/corpus/TARGET for the next run.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
if [[ "$seconds" == "-h" || "$seconds" == "--help" ]]; then
  sed -n '2,/^set -euo/{/^#/s/^# \{0,1\}//p}' "$0"
  exit 0
fi
if (($# > 1)) || ! [[ "$seconds" =~ ^[1-9][0-9]{0,5}$ ]]; then
  echo "fuzz.sh: expected one argument, SECONDS a whole number from 1 to 999999, got: $*" >&2
  exit 2
fi
scripts/setup.sh --fuzz
dir=build/fuzz
CC=clang CXX=clang++ cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCNN_FUZZ=ON \
  -DCNN_BUILD_TESTS=OFF -DCNN_BUILD_EXAMPLES=OFF -DCNN_ONNX=ON -DCNN_MPI=OFF \
  -DCMAKE_CXX_FLAGS="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all" \
  >/dev/null
targets=(fuzz_model_file fuzz_checkpoint fuzz_idx fuzz_cifar fuzz_spec fuzz_image fuzz_onnx)
cmake --build "$dir" -j"$(nproc)" --target "${targets[@]}"
mkdir -p "$dir/artifacts"
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
for target in "${targets[@]}"; do
  corpus="$dir/corpus/$target"
  mkdir -p "$corpus"
  cp -n fuzz/corpus/"$target"/* "$corpus"/ 2>/dev/null || true
  echo "== $target: ${seconds} s"
  # -rss_limit_mb: a loader must refuse a file that claims more than it holds, not allocate it.
  "$dir/fuzz/$target" "$corpus" -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 \
    -print_final_stats=1 -artifact_prefix="$dir/artifacts/$target-" 2>"$dir/$target.log" ||
    { tail -40 "$dir/$target.log"; echo "== $target: FINDING (see $dir/artifacts/)" >&2; exit 1; }
  grep -E "stat::number_of_executed_units|cov: " "$dir/$target.log" | tail -2
done
echo "== fuzzing passed: ${#targets[@]} targets, ${seconds} s each"

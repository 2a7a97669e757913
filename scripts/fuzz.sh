#!/usr/bin/env bash
# Fuzzes every loader of untrusted bytes with libFuzzer under AddressSanitizer and
# UndefinedBehaviorSanitizer: model files, checkpoints, IDX (raw and gzipped), CIFAR-10
# batches, spec JSON, images, ONNX.
#   scripts/fuzz.sh [SECONDS]        each target for SECONDS (default 60), one after the other
#   scripts/fuzz.sh --update-corpus  rewrite fuzz/corpus-found.tar.xz from what runs found
# Exits non-zero on the first finding; its input is in build/fuzz/artifacts/. Each target
# starts from the hand-made seeds (fuzz/corpus/TARGET) and the inputs earlier campaigns found
# (fuzz/corpus-found.tar.xz, a libFuzzer merge: the fewest inputs, smallest first, that keep
# their coverage); both are copied, never modified. What a run discovers stays in
# build/fuzz/corpus/TARGET for the next run; --update-corpus merges it into the archive.
set -euo pipefail
cd "$(dirname "$0")/.."
update_corpus=false
case "$#:${1:-}" in
  1:-h | 1:--help)
    sed -n '2,/^set -euo/{/^#/s/^# \{0,1\}//p}' "$0"
    exit 0
    ;;
  1:--update-corpus) update_corpus=true ;;
  0: | 1:*) ;;
  *)
    echo "fuzz.sh: expected at most one argument, got $#: $* (see --help)" >&2
    exit 2
    ;;
esac
seconds="${1:-60}"
if ! $update_corpus && ! [[ "$seconds" =~ ^[1-9][0-9]{0,5}$ ]]; then
  echo "fuzz.sh: expected SECONDS, a whole number from 1 to 999999, or --update-corpus," \
    "got: $seconds" >&2
  exit 2
fi
scripts/setup.sh --fuzz
dir=build/fuzz
archive=fuzz/corpus-found.tar.xz
CC=clang CXX=clang++ cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCNN_FUZZ=ON \
  -DCNN_BUILD_TESTS=OFF -DCNN_BUILD_EXAMPLES=OFF -DCNN_ONNX=ON -DCNN_MPI=OFF \
  -DCMAKE_CXX_FLAGS="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all" \
  >/dev/null
targets=(fuzz_model_file fuzz_checkpoint fuzz_idx fuzz_cifar fuzz_spec fuzz_image fuzz_onnx)
cmake --build "$dir" -j"$(nproc)" --target "${targets[@]}"
mkdir -p "$dir/artifacts" "$dir/corpus"
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
# --skip-old-files: inputs are named by their SHA-1, so one already there is the same bytes.
if [[ -f "$archive" ]]; then tar -xJf "$archive" -C "$dir/corpus" --skip-old-files; fi

if $update_corpus; then
  merged="$dir/corpus-merged"
  rm -rf "$merged"
  for target in "${targets[@]}"; do
    mkdir -p "$merged/$target" "$dir/corpus/$target"
    # Edges only (-use_counters=0): hit counts would keep thousands more near-copies.
    "$dir/fuzz/$target" -merge=1 -use_counters=0 -rss_limit_mb=2048 -timeout=10 \
      "$merged/$target" fuzz/corpus/"$target" "$dir/corpus/$target" >"$dir/$target.merge.log" 2>&1 ||
      { tail -20 "$dir/$target.merge.log"; echo "== $target: merge failed" >&2; exit 1; }
    # The seeds are committed as they are; the archive holds only what fuzzing added.
    for seed in fuzz/corpus/"$target"/*; do
      rm -f "$merged/$target/$(sha1sum <"$seed" | cut -c1-40)"
    done
    echo "== $target: $(find "$merged/$target" -type f | wc -l) inputs kept"
  done
  tar -C "$merged" --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -cf - \
    "${targets[@]}" | xz -9e >"$archive.tmp"
  mv "$archive.tmp" "$archive"
  echo "== wrote $archive ($(stat -c %s "$archive") bytes)"
  exit 0
fi

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

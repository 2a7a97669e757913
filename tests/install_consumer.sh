#!/usr/bin/env bash
# Installs the library from build dir $1 into a scratch prefix, then configures, builds and
# runs tests/consumer against it with find_package(cnn): its own program, and the C++ programs
# that README.md marks "compiled and run by tests/install_consumer.sh" (trained on the bundled
# sample). Fails when any step fails, when a program exits non-zero, or when the consumer's
# output lacks the text $2.
set -euo pipefail
build=$1
expected=$2
source_dir=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$source_dir")
work="$build/install_consumer"
rm -rf "$work"
mkdir -p "$work/run"

fail() {
  echo "install_consumer.sh: $*" >&2
  exit 1
}

# The README's programs: each ```cpp block after a marker line, as the reader sees it.
examples="$work/readme_examples"
mkdir -p "$examples"
awk -v dir="$examples" '
  /^<!-- compiled and run by tests\/install_consumer.sh -->$/ { marked = 1; next }
  marked == 1 && /^```cpp$/ { marked = 2; n++; next }
  marked == 2 && /^```$/ { marked = 0; next }
  marked == 2 { print > (dir "/readme_example_" n ".cpp") }
  marked == 1 { marked = 0 }' "$repo/README.md"
count=$(find "$examples" -name 'readme_example_*.cpp' | wc -l)
[ "$count" -ge 2 ] ||
  fail "expected two \`\`\`cpp blocks in README.md after lines '<!-- compiled and run by tests/install_consumer.sh -->', found $count"

cmake --install "$build" --prefix "$work/prefix" >/dev/null
cmake -S "$source_dir/consumer" -B "$work/build" -DCMAKE_PREFIX_PATH="$work/prefix" \
  -DCMAKE_BUILD_TYPE=Release -DCNN_README_EXAMPLES="$examples" >/dev/null
cmake --build "$work/build" >/dev/null

status=0
output=$("$work/build/consumer") || status=$?
echo "$output"
[ "$status" -eq 0 ] || fail "the consumer exited with status $status"
[[ "$output" == *"$expected"* ]] || fail "expected the consumer to print '$expected'"

# Run where they write their files, on the sample (Debian's Fashion-MNIST need not be there).
outputs=""
for ((i = 1; i <= count; i++)); do
  status=0
  output=$(cd "$work/run" && "$work/build/readme_example_$i" "$repo/data/fashion-mnist-sample") ||
    status=$?
  echo "$output"
  outputs+="$output"
  [ "$status" -eq 0 ] || fail "README.md's program $i exited with status $status"
  [[ "$output" == *"epoch 2: train loss"* ]] ||
    fail "expected README.md's program $i to print 'epoch 2: train loss'"
done
# The residual network's program saves its model, and exits 1 unless the file reloads to the
# same test loss.
[[ "$outputs" == *"reloaded: test accuracy"* ]] ||
  fail "expected one of README.md's programs to print 'reloaded: test accuracy'"
[ -s "$work/run/small-resnet.safetensors" ] || fail "README.md's programs wrote no small-resnet.safetensors"

#!/usr/bin/env bash
# Installs the library from build dir $1 into a scratch prefix, then configures, builds and
# runs tests/consumer against it with find_package(cnn): its own program, and the C++ program
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

# The README's program: the ```cpp block after the marker line, as the reader sees it.
readme_example="$work/readme_example.cpp"
awk '/^<!-- compiled and run by tests\/install_consumer.sh -->$/ { marked = 1; next }
     marked == 1 && /^```cpp$/ { marked = 2; next }
     marked == 2 && /^```$/ { exit }
     marked == 2 { print }' "$repo/README.md" >"$readme_example"
[ -s "$readme_example" ] ||
  fail "README.md has no \`\`\`cpp block after the line '<!-- compiled and run by tests/install_consumer.sh -->'"

cmake --install "$build" --prefix "$work/prefix" >/dev/null
cmake -S "$source_dir/consumer" -B "$work/build" -DCMAKE_PREFIX_PATH="$work/prefix" \
  -DCMAKE_BUILD_TYPE=Release -DCNN_README_EXAMPLE="$readme_example" >/dev/null
cmake --build "$work/build" >/dev/null

status=0
output=$("$work/build/consumer") || status=$?
echo "$output"
[ "$status" -eq 0 ] || fail "the consumer exited with status $status"
[[ "$output" == *"$expected"* ]] || fail "expected the consumer to print '$expected'"

# Run where it writes its model file, on the sample (Debian's Fashion-MNIST need not be there).
status=0
output=$(cd "$work/run" && "$work/build/readme_example" "$repo/data/fashion-mnist-sample") ||
  status=$?
echo "$output"
[ "$status" -eq 0 ] ||
  fail "README.md's program exited with status $status (a reloaded model that evaluates otherwise than the trained one exits 1)"
[[ "$output" == *"reloaded: test accuracy"* ]] ||
  fail "expected README.md's program to print 'reloaded: test accuracy'"
[ -s "$work/run/small-resnet.safetensors" ] || fail "README.md's program wrote no small-resnet.safetensors"

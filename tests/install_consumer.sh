#!/usr/bin/env bash
# Installs the library from build dir $1 into a scratch prefix, then configures, builds and
# runs tests/consumer against it with find_package(cnn). Fails when any step fails, when the
# consumer exits non-zero, or when its output lacks the text $2.
set -euo pipefail
build=$1
expected=$2
source_dir=$(cd "$(dirname "$0")" && pwd)
work="$build/install_consumer"
rm -rf "$work"
cmake --install "$build" --prefix "$work/prefix" >/dev/null
cmake -S "$source_dir/consumer" -B "$work/build" -DCMAKE_PREFIX_PATH="$work/prefix" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$work/build" >/dev/null
status=0
output=$("$work/build/consumer") || status=$?
echo "$output"
if [ "$status" -ne 0 ]; then
  echo "install_consumer.sh: the consumer exited with status $status" >&2
  exit 1
fi
if [[ "$output" != *"$expected"* ]]; then
  echo "install_consumer.sh: expected the consumer to print '$expected'" >&2
  exit 1
fi

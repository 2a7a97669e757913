#!/usr/bin/env bash
# Installs the library from build dir $1 into a scratch prefix, then configures, builds and
# runs tests/consumer against it with find_package(cnn).
set -euo pipefail
build=$1
source_dir=$(cd "$(dirname "$0")" && pwd)
work="$build/install_consumer"
rm -rf "$work"
cmake --install "$build" --prefix "$work/prefix" >/dev/null
cmake -S "$source_dir/consumer" -B "$work/build" -DCMAKE_PREFIX_PATH="$work/prefix" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$work/build" >/dev/null
"$work/build/consumer"

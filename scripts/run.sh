#!/usr/bin/env bash
# The main job: install what is needed, build (optimised), and train the default model (LeNet-5)
# on the full Fashion-MNIST with `cnn train`, which prints progress and leaves lenet5.safetensors,
# lenet5.csv, lenet5.svg and lenet5.ckpt in the current directory. Extra arguments go to
# `cnn train`. With --help (or -h) it installs and builds nothing: it prints this and, once
# build/release/cnn exists, `cnn train --help`.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build="$root/build/release"

for arg in "$@"; do
  if [[ "$arg" == --help || "$arg" == -h ]]; then
    sed -n '2,/^set -euo/{/^#/s/^# \{0,1\}//p}' "$0"
    if [[ -x "$build/cnn" ]]; then
      echo
      "$build/cnn" train --help
    else
      echo
      echo "build/release/cnn is not built yet: run scripts/run.sh once, then" \
        "build/release/cnn train --help lists cnn train's options."
    fi
    exit 0
  fi
done

"$root/scripts/setup.sh"
if [[ -f "$build/CMakeCache.txt" ]]; then
  # An existing folder keeps its own choices: a developer's build with tests stays one, and its
  # test binaries are not left behind a library rebuilt without them.
  cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
else
  # A fresh folder builds without tests: they need GoogleTest, which scripts/setup.sh installs
  # only for scripts/test.sh.
  cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DCNN_BUILD_TESTS=OFF >/dev/null
fi
cmake --build "$build" -j"$(nproc)" --target cnn_cli
"$build/cnn" train "$@"

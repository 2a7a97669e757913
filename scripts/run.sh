#!/usr/bin/env bash
# The main job: install what is needed, build (optimised), and train the default model (LeNet-5)
# on the full Fashion-MNIST with `cnn train`, which prints progress and leaves lenet5.safetensors,
# lenet5.csv, lenet5.svg and lenet5.ckpt in the current directory. Extra arguments go to
# `cnn train`.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/setup.sh"
cmake -S "$root" -B "$root/build/release" -DCMAKE_BUILD_TYPE=Release -DCNN_BUILD_TESTS=OFF >/dev/null
cmake --build "$root/build/release" -j"$(nproc)"
"$root/build/release/cnn" train "$@"

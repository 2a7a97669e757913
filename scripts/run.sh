#!/usr/bin/env bash
# The main job: install what is needed, build (optimised), and train the seed's CNN on two
# Fashion-MNIST classes with the log loss, printing the loss per epoch and the test accuracy.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cmake -S . -B build/release -DCMAKE_BUILD_TYPE=Release -DCNN_BUILD_TESTS=OFF >/dev/null
cmake --build build/release -j"$(nproc)"
build/release/seed_binary "$@"

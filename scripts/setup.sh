#!/usr/bin/env bash
# Installs what cnn needs from Debian 12's packages (as root; uses sudo when not root).
#   scripts/setup.sh          build and run dependencies (ONNX support: libonnx-dev and
#                             libprotobuf-dev; training under mpirun: openmpi-bin and
#                             libopenmpi-dev), and the Fashion-MNIST dataset
#   scripts/setup.sh --test   the same, plus for the test suite: GoogleTest, clang-format,
#                             OpenCV DNN (the ONNX consumer the tests run our exports in),
#                             ONNX's per-operator conformance tests (libonnx-testdata), and
#                             clang with libFuzzer and OpenMP for the fuzz targets
#   scripts/setup.sh --fuzz   the same as --test (scripts/fuzz.sh)
set -euo pipefail

# The comment above is the help; anything else is refused before apt-get runs (a misspelt
# --test used to install the build dependencies alone, and --help installed them).
if (($# > 1)); then
  echo "setup.sh: at most one argument, got $# ($*); see scripts/setup.sh --help" >&2
  exit 2
fi
case "${1:-}" in
  "" | --test | --fuzz) ;;
  -h | --help)
    sed -n '2,/^set -euo/{/^#/s/^# \{0,1\}//p}' "$0"
    exit 0
    ;;
  *)
    echo "setup.sh: unknown argument '$1' (expected --test, --fuzz or --help)" >&2
    exit 2
    ;;
esac

packages=(g++ cmake make zlib1g-dev nlohmann-json3-dev libstb-dev dataset-fashion-mnist
  libonnx-dev libprotobuf-dev openmpi-bin libopenmpi-dev)
if [[ "${1:-}" == "--test" || "${1:-}" == "--fuzz" ]]; then
  packages+=(libgtest-dev clang-format libopencv-dnn-dev libonnx-testdata)
fi
if [[ "${1:-}" == "--test" || "${1:-}" == "--fuzz" ]]; then
  # libFuzzer: clang with its runtime, and clang's OpenMP; xz-utils unpacks the fuzz corpus.
  packages+=(clang libclang-rt-14-dev libomp-14-dev xz-utils)
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
  exit 0
fi

echo "setup: installing ${missing[*]}"
sudo=()
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || { echo "setup: need root (or sudo) to install ${missing[*]}" >&2; exit 1; }
  sudo=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

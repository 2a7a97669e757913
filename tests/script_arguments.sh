#!/usr/bin/env bash
# The project's scripts refuse arguments they do not take, with one line naming the argument
# and what was expected (exit 2), and print their help for --help (exit 0), in both cases before
# installing, building or running anything: dpkg-query, apt-get, cmake and mpirun are replaced
# by stand-ins that record being called, and none may be.
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir "$work/bin"
for tool in dpkg-query apt-get cmake mpirun sudo; do
  printf '#!/bin/sh\necho "%s $*" >> "%s/called"\nexit 1\n' "$tool" "$work" >"$work/bin/$tool"
  chmod +x "$work/bin/$tool"
done
export PATH="$work/bin:$PATH"
failures=0

# expect CODE PATTERN SCRIPT ARGS...: the exit status and a line of the output (stdout and
# stderr together) matching PATTERN (grep -E), and no stand-in called.
expect() {
  local code="$1" pattern="$2" script="$3"
  shift 3
  local out status
  rm -f "$work/called"
  out="$(bash "$root/scripts/$script" "$@" 2>&1)"
  status=$?
  local what="scripts/$script $*"
  if [[ $status -ne $code ]]; then
    echo "FAIL: $what exited $status, expected $code; it printed: $out"
    failures=$((failures + 1))
  elif ! grep -qE -- "$pattern" <<<"$out"; then
    echo "FAIL: $what printed no line matching '$pattern'; it printed: $out"
    failures=$((failures + 1))
  elif [[ -e "$work/called" ]]; then
    echo "FAIL: $what ran $(tr '\n' ';' <"$work/called") before refusing or helping"
    failures=$((failures + 1))
  elif [[ $code -ne 0 && $(wc -l <<<"$out") -ne 1 ]]; then
    echo "FAIL: $what printed more than one line: $out"
    failures=$((failures + 1))
  else
    echo "ok: $what"
  fi
}

expect 0 '^  scripts/setup.sh --test ' setup.sh --help
expect 0 '^  scripts/setup.sh --test ' setup.sh -h
expect 2 "^setup.sh: unknown argument '--tests' \(expected --test, --fuzz or --help\)$" setup.sh --tests
expect 2 '^setup.sh: at most one argument, got 2 \(--test --fuzz\)' setup.sh --test --fuzz
expect 0 '^The test command: ' test.sh --help
expect 2 '^test.sh: takes no arguments, got: --quick \(expected none, or --help\)$' test.sh --quick
expect 0 '^  scripts/fuzz.sh \[SECONDS\]' fuzz.sh --help
expect 0 '^  scripts/fuzz.sh --update-corpus ' fuzz.sh -h
expect 2 '^fuzz.sh: expected SECONDS, a whole number from 1 to 999999, or --update-corpus, got: 0$' \
  fuzz.sh 0
expect 2 'got: 5s$' fuzz.sh 5s
expect 2 'got: --update-corpora$' fuzz.sh --update-corpora
expect 2 '^fuzz.sh: expected at most one argument, got 2: 5 6 \(see --help\)$' fuzz.sh 5 6
expect 2 'got 2: --update-corpus 5 ' fuzz.sh --update-corpus 5
# run.sh passes its arguments to cnn train, but --help anywhere installs and builds nothing.
expect 0 '^The main job: install what is needed' run.sh --help
expect 0 '^`cnn train`. With --help \(or -h\) it installs and builds nothing' run.sh --epochs 3 -h
expect 0 '^  scripts/signal_loop.sh \[RUNS\]' signal_loop.sh --help
expect 2 "^signal_loop.sh: RUNS 'ten' is not a whole number" signal_loop.sh ten
expect 2 "^signal_loop.sh: MAX_MS '-5' is not a whole number" signal_loop.sh 3 USR1 1 0 -5
expect 2 '^signal_loop.sh: expected RUNS >= 1, RANKS >= 1 and MIN_MS <= MAX_MS, got 3, 1, 50, 10$' \
  signal_loop.sh 3 USR1 1 50 10
expect 2 "^signal_loop.sh: SIGNAL 'SIGFOO' is not a signal name or number" signal_loop.sh 3 SIGFOO
expect 2 "^signal_loop.sh: CNN '/nonexistent/cnn' is not an executable" \
  signal_loop.sh 3 USR1 1 0 10 /nonexistent/cnn

if ((failures > 0)); then
  echo "$failures failure(s)"
  exit 1
fi

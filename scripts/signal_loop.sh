#!/usr/bin/env bash
# Sends a signal to `cnn train` at random moments and tallies what each run left: the exit
# status, its stderr lines (which kind), the checkpoint and model, OUT.lock and temporary files
# left, and lines that claim "the last checkpoint stays intact" where none was written.
#   scripts/signal_loop.sh [RUNS] [SIGNAL] [RANKS] [MIN_MS] [MAX_MS] [CNN]
# RUNS runs (default 60) of `mpirun -q -np RANKS cnn train --data sample --epochs 3 --batch 64
# --threads 1` (RANKS 1: cnn alone), each sent SIGNAL (default USR1) from MIN_MS to MAX_MS
# after its start (default 0 to 700); a run still going 30 s after the signal is a HANG,
# killed. The design notes' "Signals at any moment" table came from it. Needs mpirun for
# RANKS > 1; as root, the environment's OMPI_ALLOW_RUN_AS_ROOT variables are set here.
set -uo pipefail
if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
  sed -n '2,/^set -uo/{/^#/s/^# \{0,1\}//p}' "$0"
  exit 0
fi
cd "$(dirname "$0")/.." || exit 1
runs="${1:-60}" sig="${2:-USR1}" ranks="${3:-2}" min="${4:-0}" max="${5:-700}"
cnn="$(realpath -m "${6:-build/release/cnn}")"
# A bad number would make the loop's arithmetic fail on every run, or sleep for ever.
for pair in "RUNS:$runs" "RANKS:$ranks" "MIN_MS:$min" "MAX_MS:$max"; do
  if ! [[ "${pair#*:}" =~ ^[0-9]{1,6}$ ]]; then
    echo "signal_loop.sh: ${pair%%:*} '${pair#*:}' is not a whole number from 0 to 999999 (see --help)" >&2
    exit 2
  fi
done
if ((runs < 1 || ranks < 1 || min > max)); then
  echo "signal_loop.sh: expected RUNS >= 1, RANKS >= 1 and MIN_MS <= MAX_MS, got $runs, $ranks, $min, $max" >&2
  exit 2
fi
if ! kill -l "$sig" >/dev/null 2>&1; then
  echo "signal_loop.sh: SIGNAL '$sig' is not a signal name or number (kill -l lists them)" >&2
  exit 2
fi
if [[ ! -x "$cnn" ]]; then
  echo "signal_loop.sh: CNN '$cnn' is not an executable (build it first, or name it)" >&2
  exit 2
fi
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work" || exit 1
flags="train --data sample --epochs 3 --batch 64 --threads 1 --out r/m.safetensors"
for _ in $(seq 1 "$runs"); do
  rm -rf r
  delay=$((min + RANDOM % (max - min + 1)))
  if [ "$ranks" = 1 ]; then
    # shellcheck disable=SC2086
    "$cnn" $flags >out.txt 2>err.txt &
  else
    # shellcheck disable=SC2086
    mpirun -q --oversubscribe -np "$ranks" "$cnn" $flags >out.txt 2>err.txt &
  fi
  pid=$!
  sleep "$(printf '%d.%03d' $((delay / 1000)) $((delay % 1000)))"
  kill -"$sig" "$pid" 2>/dev/null
  hang=""
  for _ in $(seq 1 300); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    hang=" HANG"
    # shellcheck disable=SC2046
    kill -9 "$pid" $(ps -o pid= --ppid "$pid") 2>/dev/null
  fi
  wait "$pid"
  status=$?
  left=""
  [ -e r/m.lock ] && left="$left lock"
  for f in r/.*cnn-tmp-* r/*cnn-tmp-*; do
    [ -e "$f" ] && left="$left temporary" && break
  done
  files=nockpt
  [ -e r/m.ckpt ] && files=ckpt
  [ -e r/m.safetensors ] && files="$files+model"
  kinds=""
  grep -q "while setting up" err.txt && kinds="$kinds setup-line"
  grep -q "stopped by SIG[A-Z0-9]* in epoch" err.txt && kinds="$kinds step-line"
  grep -q "ended by mpirun" err.txt && kinds="$kinds rank-end-line"
  grep -q "stopped at once" err.txt && kinds="$kinds second-signal-line"
  grep -q "came as the run" err.txt && kinds="$kinds files-line"
  claims=$(grep -c "stays intact" err.txt)
  false_claim=""
  [ "$files" = nockpt ] && [ "$claims" -gt 0 ] && false_claim=" FALSE_CLAIM"
  echo "status=$status lines=$(wc -l <err.txt)$kinds $files left=[${left# }]$hang$false_claim"
done | sort | uniq -c

#!/usr/bin/env bash
# Runs every native fuzz target in the module for the given time each.
#
# Go 1.26's fuzzing coordinator can fail a target with a bare "context
# deadline exceeded" exactly when -fuzztime runs out, on a loaded machine,
# without any failing input (golang/go#75804, fixed in Go 1.27). Such a run
# is tried again, up to twice (on CI one target in 33 hit it in each of the
# last runs, so one retry left a few per cent of runs red for nothing);
# anything else that fails — a written reproducer, a panic, a t.Fatal —
# fails at once.
set -euo pipefail
fuzztime=${1:-20s}
# FUZZ_JOBS targets run at once, each with one fuzzing worker per job's share
# of the cores: a target's set-up (linking, the baseline) is mostly serial, so
# two at a time on two cores finish sooner than one after another.
jobs=${FUZZ_JOBS:-2}
cores=$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 2)
workers=$(( cores / jobs > 0 ? cores / jobs : 1 ))
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# deadline_flake: the run in $1 failed only by the coordinator's deadline.
deadline_flake() {
  grep -q 'context deadline exceeded' "$1" &&
    ! grep -qE 'Failing input written|panic:|_test\.go:[0-9]+:' "$1"
}

# fuzz_one runs one target (tries again on the engine's own deadline); its
# output goes to $tmp/<n>.log, printed whole when it ends.
fuzz_one() {
  local n=$1 pkg=$2 target=$3 log="$tmp/$1.log" out="$tmp/$1.out"
  : >"$out"
  for try in 1 2 3; do
    echo "== $pkg $target ($fuzztime)" >>"$out"
    if go test "$pkg" -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" -parallel "$workers" >"$log" 2>&1; then
      cat "$log" >>"$out"
      return 0
    fi
    cat "$log" >>"$out"
    if [ "$try" -lt 3 ] && deadline_flake "$log"; then
      echo "fuzz: $target stopped on the fuzzing engine's own deadline (golang/go#75804), no failing input: trying again" >>"$out"
      continue
    fi
    return 1
  done
}

status=0
n=0
pids=()
names=()
while IFS= read -r line; do
  file=${line%%:*}
  target=$(sed -E 's/.*func (Fuzz[A-Za-z0-9_]*)\(.*/\1/' <<<"${line#*:}")
  pkg=./$(dirname "$file")
  n=$((n + 1))
  fuzz_one "$n" "$pkg" "$target" &
  pids+=("$!")
  names+=("$n")
  if [ "${#pids[@]}" -ge "$jobs" ]; then
    if ! wait "${pids[0]}"; then status=1; fi
    cat "$tmp/${names[0]}.out"
    pids=("${pids[@]:1}")
    names=("${names[@]:1}")
  fi
done < <(grep -rn --include='*_test.go' -E '^func Fuzz[A-Za-z0-9_]*\(f \*testing\.F\)' . | sort)
for i in "${!pids[@]}"; do
  if ! wait "${pids[$i]}"; then status=1; fi
  cat "$tmp/${names[$i]}.out"
done
[ "$status" -eq 0 ] || echo "fuzz: a target failed (its output is above)" >&2
exit $status

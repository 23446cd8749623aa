#!/bin/sh
# loginflood-ab.sh: BenchmarkLoginFlood with two test binaries, alternating
# (A, B, A, B, …) so that a change in the machine's load falls on both, then
# the median p99 ratio (data plane during the flood / alone) of each.
#
#   go test -c -o /tmp/a.test ./internal/bench   # at the base commit
#   go test -c -o /tmp/b.test ./internal/bench   # at the change
#   scripts/loginflood-ab.sh /tmp/a.test /tmp/b.test [runs] [bench regexp] [benchtime]
#
# Defaults: 6 runs each, 'LoginFlood/hash-memory=256MiB$', 10x. The binaries
# run in internal/bench (as go test would). Each line: binary, run, load
# average, then the benchmark's metrics.
set -eu
a=$(realpath "$1") b=$(realpath "$2")
runs=${3:-6} bench=${4:-'LoginFlood/hash-memory=256MiB$'} benchtime=${5:-10x}
cd "$(dirname "$0")/../internal/bench"
out=$(mktemp)
trap 'rm -f "$out"' EXIT
i=1
while [ "$i" -le "$runs" ]; do
	for x in A B; do
		bin=$a
		[ "$x" = B ] && bin=$b
		load=$(cut -d' ' -f1 /proc/loadavg)
		"$bin" -test.run '^$' -test.bench "$bench" -test.benchtime "$benchtime" |
			awk -v x="$x" -v i="$i" -v la="$load" '/^Benchmark/ { printf "%s %s load=%s %s", x, i, la, $1; for (f = 3; f < NF; f += 2) printf " %s=%s", $(f+1), $f; print "" }' | tee -a "$out"
	done
	i=$((i + 1))
done
# Medians of the p99 ratio, per binary and benchmark.
awk '{ for (f = 5; f <= NF; f++) if ($f ~ /^p99-ratio=/) { split($f, kv, "="); print $1, $4, kv[2] } }' "$out" | sort -k1,2 -k3n |
	awk '{ k = $1 " " $2; v[k, ++n[k]] = $3 } END { for (k in n) { m = n[k]; med = (m % 2) ? v[k, (m+1)/2] : (v[k, m/2] + v[k, m/2+1]) / 2; printf "median p99-ratio %s: %.2f (min %.2f, max %.2f, %d runs)\n", k, med, v[k, 1], v[k, m], m } }' | sort

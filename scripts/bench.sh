#!/usr/bin/env bash
# Runs the benchmarks and writes the results, with the machine they ran on, to
# docs/benchmarks.md (between the markers; the prose around them is kept).
set -euo pipefail
benchtime=${1:-2s}
cd "$(dirname "$0")/.."
out=$(mktemp)
go test ./... -run '^$' -bench . -benchmem -benchtime "$benchtime" -count 1 | tee "$out"
{
  echo "<!-- bench:start -->"
  echo "Measured $(date -u +%Y-%m-%d) with \`make bench\` (benchtime $benchtime) on:"
  echo
  echo '```'
  echo "$(go version)"
  echo "cpu: $(grep -m1 '^cpu:' "$out" | cut -d' ' -f2-) ($(nproc) cores), $(free -g | awk '/Mem:/{print $2}') GiB"
  echo
  grep -E '^(Benchmark|pkg:)' "$out"
  echo '```'
  echo "<!-- bench:end -->"
} > "$out.md"
doc=docs/benchmarks.md
if grep -q '<!-- bench:start -->' "$doc"; then
  awk -v f="$out.md" '
    /<!-- bench:start -->/ { while ((getline l < f) > 0) print l; skip=1; next }
    /<!-- bench:end -->/ { skip=0; next }
    !skip' "$doc" > "$doc.new" && mv "$doc.new" "$doc"
else
  cat "$out.md" >> "$doc"
fi
rm -f "$out" "$out.md"
echo "wrote $doc"

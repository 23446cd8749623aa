#!/usr/bin/env bash
# make bench-http: Gatehouse measured the way users compare gateways. The real
# `gatehouse serve` binary and a local mock upstream share one core, the load
# generator has the other (when there are two); 1 connection for latency, 50
# for throughput. For each target it reports req/s, the gateway process's own
# CPU per request (from /proc), p50/p99 and peak RSS, and writes the table into
# docs/benchmarks.md between the bench-http markers.
#
# Targets: the mock directly; Gatehouse with a plain key (no governance);
# Gatehouse with full governance (scoped key, default Cedar policies, a rate
# limit, hard budgets at key, team and organisation, the write-ahead ledger and
# usage records) on SQLite; the same on PostgreSQL when BENCH_POSTGRES_URL (or
# GATEHOUSE_TEST_POSTGRES_URL) names a server where a database can be created.
#
#   BENCH_HTTP_DURATION   measured seconds per run (default 10s)
#   BENCH_HTTP_NOWRITE=1  print the table, leave docs/ alone
#   BENCH_HTTP_BIN        use this prebuilt gatehouse binary instead of building
#                         one (to compare binaries run interleaved)
#   BENCH_HTTP_CONFIG     a YAML file passed to every gateway as --config
#   BENCH_HTTP_ONLY       measure only the targets whose name contains this
#                         (e.g. "full governance, SQLite"); implies NOWRITE
#   BENCH_HTTP_PORT       first of the local ports used (default 18080: the
#                         gateway, +1 its admin API, +10 the mock), so that
#                         two runs on one machine do not meet
set -euo pipefail
cd "$(dirname "$0")/.."
dur=${BENCH_HTTP_DURATION:-10s}
gwport=${BENCH_HTTP_PORT:-18080}
adminport=$((gwport + 1)) mockport=$((gwport + 10))
pgurl=${BENCH_POSTGRES_URL:-${GATEHOUSE_TEST_POSTGRES_URL:-}}
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

echo "bench-http: building..." >&2
if [ -n "${BENCH_HTTP_BIN:-}" ]; then cp "$BENCH_HTTP_BIN" "$work/gatehouse"; else go build -o "$work/gatehouse" ./cmd/gatehouse; fi
go build -o "$work/httpbench" ./internal/bench/httpbench
only=${BENCH_HTTP_ONLY:-}
[ -n "$only" ] && BENCH_HTTP_NOWRITE=1
want() { [ -z "$only" ] || [[ $1 == *"$only"* ]]; }

gw_cpu=() load_cpu=()
if [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then
  gw_cpu=(taskset -c 1) load_cpu=(taskset -c 0)
  pinning="gateway and mock upstream on CPU 1, load generator on CPU 0"
else
  pinning="not pinned (one core or no taskset)"
fi
tck=$(getconf CLK_TCK)

# field NAME JSON: a number from httpbench's JSON line.
field() { sed -E "s/.*\"$1\":([0-9.eE+-]+).*/\1/" <<<"$2"; }
cputicks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
peakrss() { awk '/VmHWM/ {printf "%.0f", $2 / 1024}' "/proc/$1/status"; }
# roundtrips: the gateway's gatehouse_store_round_trips_total (PostgreSQL), or nothing.
roundtrips() { { curl -fsS http://127.0.0.1:$adminport/metrics 2>/dev/null || true; } | awk '/^gatehouse_store_round_trips_total / {printf "%.0f", $2}'; }
waitfor() { for _ in $(seq 1 100); do curl -fsS -o /dev/null "$1" 2>/dev/null && return 0; sleep 0.1; done; echo "bench-http: $1 never answered" >&2; return 1; }

"${gw_cpu[@]}" "$work/httpbench" mock -listen 127.0.0.1:$mockport 2>/dev/null &
pids+=($!)
mockpid=$!
waitfor http://127.0.0.1:$mockport/v1/models

rows=()
# measure NAME PID URL KEY: a latency run at 1 connection, then a warm-up and a
# throughput run at 50 connections with the process's CPU time around it.
measure() {
  local name=$1 pid=$2 url=$3 key=$4 one c0 c1 r0 r1 many reqs cpu
  one=$("${load_cpu[@]}" "$work/httpbench" load -url "$url" -key "$key" -c 1 -d "$dur")
  "${load_cpu[@]}" "$work/httpbench" load -url "$url" -key "$key" -c 50 -d 2s -warmup 0 >/dev/null
  r0=$(roundtrips)
  c0=$(cputicks "$pid")
  many=$("${load_cpu[@]}" "$work/httpbench" load -url "$url" -key "$key" -c 50 -d "$dur" -warmup 0)
  c1=$(cputicks "$pid")
  r1=$(roundtrips)
  reqs=$(field requests "$many")
  if [ -n "$r0" ] && [ -n "$r1" ]; then
    echo "bench-http: $name: $(awk -v d="$r1" -v c="$r0" -v n="$reqs" 'BEGIN { printf "%.2f", (d - c) / (n > 0 ? n : 1) }') PostgreSQL round trips per request" >&2
  fi
  if [ "$(field errors "$many")" != 0 ] || [ "$(field errors "$one")" != 0 ]; then
    echo "bench-http: $name: errors: $many $one" >&2
    [ -n "${5:-}" ] && tail -5 "$5" >&2
  fi
  cpu=$(awk -v d="$((c1 - c0))" -v t="$tck" -v n="$((reqs > 0 ? reqs : 1))" 'BEGIN { printf "%.0f", d * 1e6 / t / n }')
  rows+=("$(printf '| %s | %.0f | %s | %.2f / %.2f | %.2f | %s |' "$name" "$(field rps "$many")" "$cpu" \
    "$(field p50_ms "$many")" "$(field p99_ms "$many")" "$(field p50_ms "$one")" "$(peakrss "$pid")")")
  echo "bench-http: ${rows[-1]}" >&2
  echo "bench-http: $name: at 1 conn: $(field requests "$one") requests, p50 $(field p50_ms "$one") ms, p99 $(field p99_ms "$one") ms" >&2
}

want "mock upstream, direct" && measure "mock upstream, direct" "$mockpid" http://127.0.0.1:$mockport/v1/chat/completions ""

# gateway NAME MODE [DATABASE]: start a fresh gateway, configure it, measure, stop it.
gateway() {
  local name=$1 mode=$2 db=${3:-} dir="$work/data-$RANDOM" out adminkey key pid
  want "$name" || return 0
  local args=(serve --data-dir "$dir" --listen 127.0.0.1:$gwport --admin-listen 127.0.0.1:$adminport --log-level warn)
  [ -n "${BENCH_HTTP_CONFIG:-}" ] && args+=(--config "$BENCH_HTTP_CONFIG")
  [ -n "$db" ] && args+=(--database "$db")
  out="$work/serve-$RANDOM.out"
  "${gw_cpu[@]}" "$work/gatehouse" "${args[@]}" >"$out" 2>"$out.log" &
  pid=$!
  pids+=($pid)
  waitfor http://127.0.0.1:$adminport/healthz
  sleep 1
  echo "bench-http: $name: idle after start: VmHWM $(peakrss "$pid") MB" >&2
  adminkey=$(sed -nE 's/.*GATEHOUSE_ADMIN_KEY=([^ ]+).*/\1/p' "$out" | head -1)
  key=$("$work/httpbench" setup -admin http://127.0.0.1:$adminport -admin-key "$adminkey" -upstream http://127.0.0.1:$mockport/v1 -mode "$mode")
  sleep 2.5 # let every cache and snapshot see the new configuration
  measure "$name" "$pid" http://127.0.0.1:$gwport/v1/chat/completions "$key" "$out.log"
  kill "$pid"; wait "$pid" 2>/dev/null || true
}

gateway "Gatehouse, key only (no governance), SQLite" nogov
gateway "Gatehouse, full governance, SQLite" full
if ! want "Gatehouse, full governance, PostgreSQL"; then :
elif [ -n "$pgurl" ] && command -v psql >/dev/null; then
  dbname="gh_bench_$RANDOM$RANDOM"
  psql -q "$pgurl" -c "CREATE DATABASE $dbname" >/dev/null
  pgdb=$(sed -E "s#/[^/?]+(\?|$)#/$dbname\1#" <<<"$pgurl")
  gateway "Gatehouse, full governance, PostgreSQL" full "$pgdb"
  psql -q "$pgurl" -c "DROP DATABASE $dbname" >/dev/null || true
else
  rows+=("| Gatehouse, full governance, PostgreSQL | not measured: set BENCH_POSTGRES_URL | | | | |")
fi

table=$(
  echo "<!-- bench-http:start -->"
  echo "Measured $(date -u +%Y-%m-%d) with \`make bench-http\` at commit $(git rev-parse --short HEAD)$(git diff --quiet || echo ' (with local changes)'),"
  echo "$dur per run, small non-streaming chat (16 output tokens), $pinning; $(nproc) cores,"
  echo "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(go version | cut -d' ' -f3)."
  echo
  echo "| target | req/s at 50 conns | CPU µs per request (server process) | p50 / p99 ms at 50 conns | p50 ms at 1 conn | peak RSS MB |"
  echo "|---|---|---|---|---|---|"
  printf '%s\n' "${rows[@]}"
  echo "<!-- bench-http:end -->"
)
echo "$table"
if [ "${BENCH_HTTP_NOWRITE:-}" != 1 ]; then
  doc=docs/benchmarks.md
  if grep -q '<!-- bench-http:start -->' "$doc"; then
    awk -v t="$table" '
      /<!-- bench-http:start -->/ { print t; skip=1; next }
      /<!-- bench-http:end -->/ { skip=0; next }
      !skip' "$doc" >"$doc.new" && mv "$doc.new" "$doc"
  else
    printf '\n%s\n' "$table" >>"$doc"
  fi
  echo "bench-http: wrote $doc" >&2
fi

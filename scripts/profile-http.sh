#!/usr/bin/env bash
# scripts/profile-http.sh: a CPU profile of the real `gatehouse serve` binary
# under the full-governance load of make bench-http (scoped key, default Cedar
# policies, a rate limit, hard budgets at key, team and organisation, the
# write-ahead ledger, usage records), taken through the opt-in profiler on the
# admin listener (GATEHOUSE_PPROF=1). Prints the top of the profile, flat and
# cumulative, and leaves the profile in $PROFILE_OUT (default cpu-full.pprof).
#
#   PROFILE_SECONDS   profile length (default 20)
#   BENCH_POSTGRES_URL  profile on PostgreSQL instead of SQLite (a database is
#                       created and dropped)
#   PROFILE_BIN       a prebuilt gatehouse binary to profile instead of building one
#   PROFILE_CONFIG    a YAML file passed to the gateway as --config
#   BENCH_HTTP_PORT   first of the local ports used (default 18080), as in bench-http.sh
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${PROFILE_SECONDS:-20}
gwport=${BENCH_HTTP_PORT:-18080}
adminport=$((gwport + 1)) mockport=$((gwport + 10))
out=${PROFILE_OUT:-cpu-full.pprof}
pgurl=${BENCH_POSTGRES_URL:-}
work=$(mktemp -d)
pids=()
dbname=
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [ -n "$dbname" ] && psql -q "$pgurl" -c "DROP DATABASE $dbname" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
if [ -n "${PROFILE_BIN:-}" ]; then cp "$PROFILE_BIN" "$work/gatehouse"; else go build -o "$work/gatehouse" ./cmd/gatehouse; fi
go build -o "$work/httpbench" ./internal/bench/httpbench
gw_cpu=() load_cpu=()
if [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then gw_cpu=(taskset -c 1) load_cpu=(taskset -c 0); fi
waitfor() { for _ in $(seq 1 100); do curl -fsS -o /dev/null "$1" 2>/dev/null && return 0; sleep 0.1; done; echo "profile-http: $1 never answered" >&2; return 1; }

"${gw_cpu[@]}" "$work/httpbench" mock -listen 127.0.0.1:$mockport 2>/dev/null &
pids+=($!)
waitfor http://127.0.0.1:$mockport/v1/models
args=(serve --data-dir "$work/data" --listen 127.0.0.1:$gwport --admin-listen 127.0.0.1:$adminport --log-level warn)
[ -n "${PROFILE_CONFIG:-}" ] && args+=(--config "$PROFILE_CONFIG")
if [ -n "$pgurl" ]; then
  dbname="gh_prof_$RANDOM$RANDOM"
  psql -q "$pgurl" -c "CREATE DATABASE $dbname" >/dev/null
  args+=(--database "$(sed -E "s#/[^/?]+(\?|$)#/$dbname\1#" <<<"$pgurl")")
fi
GATEHOUSE_PPROF=1 "${gw_cpu[@]}" "$work/gatehouse" "${args[@]}" >"$work/serve.out" 2>"$work/serve.log" &
pids+=($!)
waitfor http://127.0.0.1:$adminport/healthz
adminkey=$(sed -nE 's/.*GATEHOUSE_ADMIN_KEY=([^ ]+).*/\1/p' "$work/serve.out" | head -1)
key=$("$work/httpbench" setup -admin http://127.0.0.1:$adminport -admin-key "$adminkey" -upstream http://127.0.0.1:$mockport/v1 -mode full)
sleep 2.5
"${load_cpu[@]}" "$work/httpbench" load -url http://127.0.0.1:$gwport/v1/chat/completions -key "$key" -c 50 -d "$((secs + 4))s" -warmup 0 >"$work/load.json" &
lp=$!
sleep 2
curl -fsS -o "$out" "http://127.0.0.1:$adminport/debug/pprof/profile?seconds=$secs"
wait "$lp"
echo "load: $(cat "$work/load.json")"
echo "== top, flat"; go tool pprof -top -nodecount=30 "$out" 2>/dev/null | sed -n 1,40p
echo "== top, cumulative"; go tool pprof -top -cum -nodecount=60 "$out" 2>/dev/null | sed -n 1,70p

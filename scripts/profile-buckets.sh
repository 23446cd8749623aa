#!/usr/bin/env bash
# scripts/profile-buckets.sh: the buckets of docs/benchmarks.md's "Where the time
# goes (full governance)" for CPU profiles left by scripts/profile-http.sh, one
# column per profile: the cumulative share of the gateway's CPU in stacks that
# pass through each bucket's functions (pprof -focus, so overlapping functions
# are not counted twice), the flat share of the syscall entry, and the profile's
# total CPU seconds (divide by the requests in the profile's window for CPU per
# request).
#
#   scripts/profile-buckets.sh cpu-sqlite-1.pprof cpu-sqlite-2.pprof ...
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: $0 PROFILE..." >&2; exit 2; }
buckets='ledger sequencer commit (ledger.(*Log).commit)|ledger\.\(\*Log\)\.commit$
- its store transaction (sqlstore.(*DB).LedgerAppend)|sqlstore\.\(\*DB\)\.LedgerAppend$
-- ledger rows (SQLite insertRows)|sqlstore\.\(\*DB\)\.insertRows$
-- budget holds and settles|sqlstore\.\(\*DB\)\.batchHolds$|sqlstore\.\(\*DB\)\.batchSettles$|sqlstore\.pipeSettles|sqlstore\.\(\*pipedHolds\)|sqlstore\.\(\*pipedSettles\)|sqlstore\.\(\*DB\)\.pipeHolds$
-- usage rows|sqlstore\.\(\*DB\)\.batchUsage$|sqlstore\.pipeUsage$|sqlstore\.usageArgs$
-- SQLite commit ((*Tx).Commit)|database/sql\.\(\*Tx\)\.Commit$
-- SQLite fsync|modernc\.org/libc\.Xfsync$
-- SQLite parsing SQL text|sqlite3_prepare|_sqlite3Prepare$
-- PostgreSQL pipeline flush ((*pipe).flush)|sqlstore\.\(\*pipe\)\.flush$
SQLite engine, all (modernc.org/sqlite)|^modernc\.org/sqlite
pgx, all (jackc/pgx)|jackc/pgx
HTTP server (net/http.(*conn).serve)|net/http\.\(\*conn\)\.serve$
- request handler (proxy.(*Handler).ServeHTTP)|proxy\.\(\*Handler\)\.ServeHTTP$
upstream round trip (http.(*Transport).roundTrip)|net/http\.\(\*Transport\)\.roundTrip$
- upstream client with its connection goroutines|proxy\.\(\*Handler\)\.roundTrip$|persistConn\)\.readLoop$|persistConn\)\.writeLoop$
JSON (encoding/json, go-json-experiment)|encoding/json|go-json-experiment
Cedar decision (policy.(*Set).Decide)|policy\.\(\*Set\)\.Decide$
authentication (proxy.(*Handler).authenticate)|proxy\.\(\*Handler\)\.authenticate$
rate limit (internal/ratelimit)|internal/ratelimit\.
budget admission in memory (internal/budget)|internal/budget\.
allocation (runtime.mallocgc)|runtime\.mallocgc$
GC background marking (runtime.gcBgMarkWorker)|runtime\.gcBgMarkWorker$'
top() { go tool pprof -top -nodecount=100000 -nodefraction=0 -edgefraction=0 "$@" 2>/dev/null; }
shown() { sed -nE 's/^Showing nodes accounting for [^,]+, ([0-9.]+)% of .*/\1/p' | head -1; }
row() { # label, then a function per profile
  local label=$1; shift
  local line="$label"
  for p in "${profiles[@]}"; do line+=$'\t'"$("$@" "$p")"; done
  echo "$line"
}
total() { top -nodecount=1 "$1" | sed -nE 's/.*Total samples = ([0-9.]+)(m?s).*/\1 \2/p' | awk '{ printf "%.2f\n", ($2 == "ms") ? $1 / 1000 : $1 }'; }
focus() { local s; s=$(top -focus="$re" "$1" | shown); echo "${s:-0}"; }
syscalls() { top "$1" | awk '$6 ~ /linux[.]Syscall6$/ { s += $2 } END { printf "%.1f\n", s }'; }
sysfocus() { local s; s=$(top -focus="$re" -show='linux[.]Syscall6$' "$1" | shown); echo "${s:-0}"; }
profiles=("$@")
row "profile" basename
row "CPU seconds in the profile" total
while IFS='|' read -r label re; do
  row "$label %" focus
done <<<"$buckets"
row "syscalls, flat (linux.Syscall6) %" syscalls
re='modernc\.org/libc'; row "- from SQLite's file I/O (pwrite, fsync) %" sysfocus
re='internal/poll'; row "- from sockets (internal/poll) %" sysfocus

#!/usr/bin/env bash
# pg-squeeze: run a command while another process holds most of PostgreSQL's
# connections (issue #11: the suite must pass with only a few free).
#
#   scripts/pg-squeeze.sh go test -race -count=1 ./internal/store/postgres/
#
# One background pgbench process holds K connections, each looping on a short
# pg_sleep (so a backend notices within a second that its client is gone), and
# is always released: on exit, error or signal the trap kills it and
# terminates its backends (by application_name). pgbench also stops by itself
# after PG_SQUEEZE_MAX seconds, should this script be killed with SIGKILL.
#
#   PG_SQUEEZE_URL   the server (default: GATEHOUSE_TEST_POSTGRES_URL, else
#                    postgres://postgres@127.0.0.1:5432/test?sslmode=disable)
#   PG_SQUEEZE_FREE  connections to leave free (default 20): K = max_connections
#                    − FREE − the connections already open, so the command sees
#                    FREE free slots whatever else runs
#   PG_SQUEEZE_HOLD  hold exactly this many instead
#   PG_SQUEEZE_MAX   the longest the hold lasts, in seconds (default 900)
#
# Exits with the command's status (1 if the connections could not be held).
set -euo pipefail
[ $# -gt 0 ] || { echo "usage: $0 command [args...]" >&2; exit 2; }
url=${PG_SQUEEZE_URL:-${GATEHOUSE_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test?sslmode=disable}}
free=${PG_SQUEEZE_FREE:-20}
maxs=${PG_SQUEEZE_MAX:-900}
app="gh-pg-squeeze-$$"

q() { psql "$url" -XAqtc "$1"; }

max=$(q "SHOW max_connections")
used=$(q "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'")
hold=${PG_SQUEEZE_HOLD:-$(( max - free - used ))}
if [ "$hold" -le 0 ]; then
  echo "pg-squeeze: max_connections $max, $used in use: nothing to hold for $free free" >&2
  exec "$@"
fi

work=$(mktemp -d)
pid=
release() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  [ -n "$pid" ] && wait "$pid" 2>/dev/null || true
  # Backends may still sit in pg_sleep; end them now.
  q "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = '$app'" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap release EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

echo 'SELECT pg_sleep(1);' >"$work/hold.sql"
PGAPPNAME=$app pgbench -n -c "$hold" -j 1 -T "$maxs" -f "$work/hold.sql" "$url" >"$work/pgbench.log" 2>&1 &
pid=$!

# Wait until every connection is held (pgbench opens them all before it runs).
held=0
for _ in $(seq 1 300); do
  held=$(q "SELECT count(*) FROM pg_stat_activity WHERE application_name = '$app'")
  [ "$held" -ge "$hold" ] && break
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "pg-squeeze: pgbench could not hold $hold connections:" >&2
    cat "$work/pgbench.log" >&2
    exit 1
  fi
  sleep 0.1
done
if [ "$held" -lt "$hold" ]; then
  echo "pg-squeeze: only $held of $hold connections held" >&2
  exit 1
fi
echo "pg-squeeze: holding $held of $max connections ($(( max - held - used )) free; $used were in use)" >&2

set +e
"$@"
rc=$?
set -e
exit "$rc"

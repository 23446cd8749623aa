#!/usr/bin/env bash
# Interop with a real third-party OAuth client: installs oauth4webapi from npm
# into a temporary directory, starts `gatehouse serve --dev` and runs
# oauth4webapi.mjs against it. Needs node 20+, npm and the npm registry; the Go
# test TestOAuth4WebAPIWire replays the same wire format without them.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
dir=$(mktemp -d)
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$dir"; }
trap cleanup EXIT
(cd "$dir" && npm init -y >/dev/null && npm install --silent --no-audit --no-fund oauth4webapi@3)
cp "$here/oauth4webapi.mjs" "$dir/"
(cd "$root" && go build -o "$dir/gatehouse" ./cmd/gatehouse)
# tokens.issuer is the data plane's URL so that the tokens' iss and aud are the
# discovered issuer (RFC 9068 validation below).
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
printf 'tokens:\n  issuer: http://127.0.0.1:%s\n' "$port" >"$dir/gatehouse.yaml"
"$dir/gatehouse" serve --dev --config "$dir/gatehouse.yaml" --listen "127.0.0.1:$port" --admin-listen 127.0.0.1:0 >"$dir/banner" 2>"$dir/log" &
pid=$!
for _ in $(seq 1 100); do grep -q "Press Ctrl-C" "$dir/banner" 2>/dev/null && break; sleep 0.2; done
issuer=$(awk '/data plane:/ {sub("/v1$", "", $3); print $3}' "$dir/banner")
key=$(grep -o 'OPENAI_API_KEY=[^ ]*' "$dir/banner" | cut -d= -f2)
[ -n "$issuer" ] && [ -n "$key" ] || { echo "the gateway did not start"; cat "$dir/log"; exit 1; }
(cd "$dir" && ISSUER="$issuer" KEY="$key" MODEL=gpt-4o node oauth4webapi.mjs)

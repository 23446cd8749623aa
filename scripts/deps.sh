#!/usr/bin/env bash
# Installs what the tests need beyond Go: Debian's chromium for the console's
# browser tests. Idempotent; does nothing when chromium is already there.
# Needs root and apt-get (the project's machines have both); elsewhere it says
# what is missing and the browser tests fail with the same message.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "deps: chromium is not installed and this script cannot install it (needs root and apt-get)." >&2
  echo "deps: install Debian's chromium package, or set GATEHOUSE_CHROMIUM to a Chromium binary." >&2
  exit 0
fi
echo "deps: installing chromium (Debian package) for the console browser tests..." >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends chromium >/dev/null
command -v chromium >/dev/null && echo "deps: $(chromium --version 2>/dev/null)" >&2

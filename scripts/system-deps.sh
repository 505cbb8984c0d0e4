#!/usr/bin/env bash
# System packages Ly's setup needs beyond the database (that is scripts/provision-db.sh):
# a Python with venv (Debian/Ubuntu split it into python3-venv), and Debian's Chromium for
# the browser tests. Installs them when missing and running as root; otherwise says what to run.
set -euo pipefail
missing=()
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || missing+=(python3-venv python3-dev)
command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || missing+=(chromium)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "system-deps: installing ${missing[*]} ..."
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null || {
    echo "system-deps: could not install ${missing[*]}" >&2; exit 1; }
else
  echo "system-deps: missing ${missing[*]}; install with: sudo apt-get install -y ${missing[*]}" >&2
  # Chromium only serves the browser tests, which skip without it; a missing venv is fatal.
  python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || exit 1
fi

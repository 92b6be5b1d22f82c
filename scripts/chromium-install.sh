#!/usr/bin/env bash
# Makes a headless Chromium available to the ops console's browser test
# (test/integration/ops-console.test.ts, driven by playwright-core against the system browser), from
# Debian's `chromium` package (/usr/bin/chromium). playwright-core downloads no browser of its own.
# Run by scripts/services-start.sh; idempotent. It never fails its caller: when Chromium cannot be
# had it says why, on stderr and in tools/chromium/UNAVAILABLE, which the test prints when it skips.
#
#   bash scripts/chromium-install.sh
#
# Environment (optional): CHROMIUM, a Chromium binary to use instead (the test reads it too).
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="$ROOT/tools/chromium"
UNAVAILABLE="$DIR/UNAVAILABLE"
BIN=/usr/bin/chromium

say() { echo "chromium-install: $*"; }
unavailable() {
  mkdir -p "$DIR"
  echo "$*" >"$UNAVAILABLE"
  echo "chromium-install: WARNING: Chromium not installed: $* (test/integration/ops-console.test.ts will be skipped)" >&2
  exit 0
}
works() { "$1" --headless --no-sandbox --version >/dev/null 2>&1; }

if [[ -n "${CHROMIUM:-}" ]] && works "$CHROMIUM"; then
  say "using CHROMIUM=$CHROMIUM"; rm -f "$UNAVAILABLE"; exit 0
fi
if works "$BIN"; then
  say "Chromium present ($("$BIN" --version 2>/dev/null | head -n 1))"; rm -f "$UNAVAILABLE"; exit 0
fi

command -v apt-get >/dev/null || unavailable "apt-get not found: this machine cannot install Debian's chromium package (set CHROMIUM to a Chromium binary)"
[[ $(id -u) == 0 ]] || unavailable "installing Debian's chromium package needs root (apt-get install chromium), or set CHROMIUM"

LOG="$(mktemp)"
trap 'rm -f "$LOG"' EXIT
install() { DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium >"$LOG" 2>&1; }
say "installing Debian's chromium package (apt-get install chromium)"
if ! install; then
  # No package list yet (a fresh machine): refresh it, then try once more.
  say "fetching the package lists (apt-get update)"
  apt-get update -q >"$LOG" 2>&1 || unavailable "apt-get update failed: $(tail -n 1 "$LOG")"
  install || unavailable "apt-get install chromium failed: $(tail -n 1 "$LOG")"
fi
works "$BIN" || unavailable "$BIN does not run on this machine after apt-get install chromium"
rm -f "$UNAVAILABLE"
say "installed $("$BIN" --version 2>/dev/null | head -n 1)"

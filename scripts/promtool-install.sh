#!/usr/bin/env bash
# Makes promtool (Prometheus's checker) available to the tests of deploy/
# (test/integration/deploy-files.test.ts: `promtool check config`, `check rules`, `test rules`), from
# Debian's `prometheus` package: only its promtool binary is taken out of the package, into
# tools/prometheus/bin (git-ignored). No Prometheus server is installed or started.
# Run by scripts/services-start.sh; idempotent. It never fails its caller: when promtool cannot be
# had it says why, on stderr and in tools/prometheus/UNAVAILABLE, which the test prints when it skips.
#
#   bash scripts/promtool-install.sh
#
# Environment (optional): PROMTOOL, a promtool to use instead (the test reads it too).
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="$ROOT/tools/prometheus"
BIN="$DIR/bin/promtool"
UNAVAILABLE="$DIR/UNAVAILABLE"

say() { echo "promtool-install: $*"; }
unavailable() {
  mkdir -p "$DIR"
  echo "$*" >"$UNAVAILABLE"
  echo "promtool-install: WARNING: promtool not installed: $* (the promtool checks of test/integration/deploy-files.test.ts will be skipped)" >&2
  exit 0
}
works() { "$1" --version >/dev/null 2>&1; }

if [[ -n "${PROMTOOL:-}" ]] && works "$PROMTOOL"; then
  say "using PROMTOOL=$PROMTOOL"; rm -f "$UNAVAILABLE"; exit 0
fi
if works "$BIN"; then
  say "promtool present ($BIN)"; rm -f "$UNAVAILABLE"; exit 0
fi
if command -v promtool >/dev/null && works promtool; then
  say "promtool present on PATH ($(command -v promtool))"; rm -f "$UNAVAILABLE"; exit 0
fi

command -v apt-get >/dev/null || unavailable "apt-get not found: this machine cannot fetch Debian's prometheus package (set PROMTOOL to a promtool)"
command -v dpkg-deb >/dev/null || unavailable "dpkg-deb not found: cannot unpack Debian's prometheus package (set PROMTOOL to a promtool)"

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
chmod 755 "$WORK" # apt-get download drops privileges to _apt, which must be able to write here

download() { (cd "$WORK" && apt-get download -q prometheus) >"$WORK/apt.log" 2>&1; }
if ! download; then
  # No package list yet (a fresh machine): refresh it when allowed to, then try once more.
  if [[ $(id -u) == 0 ]]; then
    say "fetching the package lists (apt-get update)"
    apt-get update -q >"$WORK/update.log" 2>&1 || unavailable "apt-get update failed: $(tail -n 1 "$WORK/update.log")"
    download || unavailable "apt-get download prometheus failed: $(tail -n 1 "$WORK/apt.log")"
  else
    unavailable "apt-get download prometheus failed and this user cannot run apt-get update: $(tail -n 1 "$WORK/apt.log")"
  fi
fi
DEB="$(ls "$WORK"/prometheus_*.deb 2>/dev/null | head -n 1)"
[[ -n "$DEB" ]] || unavailable "apt-get download prometheus left no .deb file"
dpkg-deb -x "$DEB" "$WORK/x" || unavailable "dpkg-deb could not unpack $(basename "$DEB")"
[[ -x "$WORK/x/usr/bin/promtool" ]] || unavailable "$(basename "$DEB") has no usr/bin/promtool"
mkdir -p "$DIR/bin"
install -m 755 "$WORK/x/usr/bin/promtool" "$BIN"
works "$BIN" || unavailable "the promtool of $(basename "$DEB") does not run on this machine"
rm -f "$UNAVAILABLE"
say "installed $("$BIN" --version 2>&1 | head -n 1) from $(basename "$DEB") into tools/prometheus/bin"

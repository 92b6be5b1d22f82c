#!/usr/bin/env bash
# Stops the broker started by scripts/kafka-start.sh (pid file .kafka/kafka.pid): SIGTERM, waits
# for a clean shutdown (up to KAFKA_STOP_TIMEOUT seconds, default 30), then SIGKILL.
# Data stays in .kafka/data; `rm -rf .kafka` after stopping gives a fresh broker next start.
# Idempotent: says so and exits 0 when nothing is running.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE="${KAFKA_STATE_DIR:-$ROOT/.kafka}"
PIDFILE="$STATE/kafka.pid"
TIMEOUT="${KAFKA_STOP_TIMEOUT:-30}"

say() { echo "kafka-stop: $*"; }
# Alive and not a zombie (an exited broker whose parent has not reaped it yet counts as stopped).
alive() { kill -0 "$1" 2>/dev/null && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null; }

if [[ ! -f "$PIDFILE" ]]; then
  say "no pid file ($PIDFILE): no broker started by kafka-start.sh is running"
  exit 0
fi
pid="$(cat "$PIDFILE" 2>/dev/null || true)"
if [[ ! "$pid" =~ ^[0-9]+$ ]] || ! alive "$pid"; then
  say "broker (pid ${pid:-?}) is not running; removed stale pid file"
  rm -f "$PIDFILE"
  exit 0
fi
if ! tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q 'kafka\.Kafka'; then
  say "pid $pid is not a Kafka broker (stale pid file, pid reused); removed the pid file, killed nothing"
  rm -f "$PIDFILE"
  exit 0
fi

t0=$SECONDS
kill -TERM "$pid" 2>/dev/null || true
end=$((SECONDS + TIMEOUT))
while alive "$pid" && ((SECONDS < end)); do sleep 0.2; done
if alive "$pid"; then
  say "broker (pid $pid) still running after ${TIMEOUT}s; sending SIGKILL"
  kill -KILL "$pid" 2>/dev/null || true
  for _ in $(seq 100); do alive "$pid" || break; sleep 0.1; done
  how="killed"
else
  how="stopped cleanly"
fi
rm -f "$PIDFILE"
say "broker (pid $pid) $how in $((SECONDS - t0))s"

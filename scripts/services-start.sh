#!/usr/bin/env bash
# Brings up everything the service and its integration tests talk to, on 127.0.0.1:
#   PostgreSQL (:PGPORT, default 5432)  - started with the machine's pg_ctlcluster when down;
#                                         creates database ${PGDATABASE:-psp_connections} if missing
#   Redis      (:REDIS_PORT, default 6379) - started with the machine's redis-server when down
#   Kafka      (:KAFKA_PORT, default 9092) - scripts/kafka-start.sh (real broker from Maven jars)
#   promtool   (not a server: the tests' checker of deploy/) - scripts/promtool-install.sh
#   chromium   (not a server: the ops console's browser test) - scripts/chromium-install.sh
# Idempotent: whatever already answers is reused. With Docker instead: docker compose up -d --wait.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PG_HOST=127.0.0.1
PG_PORT="${PGPORT:-5432}"
PG_USER=postgres
PG_DB="${PGDATABASE:-psp_connections}"
REDIS_PORT="${REDIS_PORT:-6379}"
WAIT="${SERVICES_START_TIMEOUT:-30}"

say() { echo "services-start: $*"; }
die() { echo "services-start: ERROR: $*" >&2; exit 1; }
port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

# wait_for SECONDS CMD...: retry CMD every 0.5 s until it succeeds or time runs out.
wait_for() {
  local end=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do ((SECONDS >= end)) && return 1; sleep 0.5; done
}

pg_up() {
  if command -v pg_isready >/dev/null; then pg_isready -q -h "$PG_HOST" -p "$PG_PORT"; else port_open "$PG_HOST" "$PG_PORT"; fi
}

redis_up() {
  if command -v redis-cli >/dev/null; then
    [[ "$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null)" == PONG ]]
  else
    # Speak RESP by hand: PING -> +PONG
    local reply
    { exec 4<>"/dev/tcp/127.0.0.1/$REDIS_PORT"; } 2>/dev/null || return 1
    printf 'PING\r\n' >&4
    IFS= read -r -t 2 reply <&4 || true
    exec 4>&-
    [[ "$reply" == "+PONG"* ]]
  fi
}

t0=$SECONDS

# PostgreSQL ------------------------------------------------------------------------------------
if pg_up; then
  say "PostgreSQL answers on $PG_HOST:$PG_PORT"
else
  if ! command -v pg_ctlcluster >/dev/null || ! compgen -G "/etc/postgresql/*/main" >/dev/null; then
    die "PostgreSQL is not answering on $PG_HOST:$PG_PORT and this machine has no pg_ctlcluster cluster to start (start it yourself, or: docker compose up -d --wait)"
  fi
  PG_VERSION="$(ls /etc/postgresql | sort -V | tail -n1)"
  say "PostgreSQL is down; starting cluster $PG_VERSION/main"
  pg_ctlcluster --skip-systemctl-redirect "$PG_VERSION" main start ||
    die "pg_ctlcluster $PG_VERSION main start failed (see /var/log/postgresql/)"
  wait_for "$WAIT" pg_up || die "PostgreSQL did not answer on $PG_HOST:$PG_PORT within ${WAIT}s"
  say "PostgreSQL started"
fi
command -v psql >/dev/null || die "psql not found (apt-get install postgresql-client)"
PSQL=(psql -X -q -v ON_ERROR_STOP=1 -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" -d postgres -tA)
if [[ "$("${PSQL[@]}" -c "SELECT 1 FROM pg_database WHERE datname = '${PG_DB//\'/\'\'}'")" == 1 ]]; then
  say "database $PG_DB exists"
else
  "${PSQL[@]}" -c "CREATE DATABASE \"${PG_DB//\"/\"\"}\"" || die "could not create database $PG_DB"
  say "created database $PG_DB"
fi

# Redis -------------------------------------------------------------------------------------------
if redis_up; then
  say "Redis answers on 127.0.0.1:$REDIS_PORT"
else
  command -v redis-server >/dev/null ||
    die "Redis is not answering on 127.0.0.1:$REDIS_PORT and redis-server is not installed (apt-get install redis-server, or: docker compose up -d --wait)"
  say "Redis is down; starting redis-server on 127.0.0.1:$REDIS_PORT"
  mkdir -p /var/lib/redis /var/log/redis 2>/dev/null || true
  REDIS_DIR=/var/lib/redis; [[ -w $REDIS_DIR ]] || { REDIS_DIR="$ROOT/.kafka"; mkdir -p "$REDIS_DIR"; }
  REDIS_LOG=/var/log/redis/ci.log; [[ -w /var/log/redis ]] || REDIS_LOG="$REDIS_DIR/redis.log"
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port "$REDIS_PORT" --save "" --appendonly no \
    --dir "$REDIS_DIR" --logfile "$REDIS_LOG" || die "redis-server failed to start (see $REDIS_LOG)"
  wait_for "$WAIT" redis_up || die "Redis did not answer on 127.0.0.1:$REDIS_PORT within ${WAIT}s (see $REDIS_LOG)"
  say "Redis started (log: $REDIS_LOG)"
fi

# Kafka -------------------------------------------------------------------------------------------
bash "$ROOT/scripts/kafka-start.sh"

# promtool (checks deploy/'s Prometheus files in the tests; from Debian's prometheus package) ------
bash "$ROOT/scripts/promtool-install.sh"

# Chromium (headless; the ops console's browser test, via playwright-core; Debian's chromium package) -
bash "$ROOT/scripts/chromium-install.sh"

say "all services up in $((SECONDS - t0))s: DATABASE_URL=postgres://$PG_USER@$PG_HOST:$PG_PORT/$PG_DB REDIS_URL=redis://127.0.0.1:$REDIS_PORT/0 KAFKA_BROKERS=${KAFKA_HOST:-127.0.0.1}:${KAFKA_PORT:-9092}"

#!/usr/bin/env bash
# Starts a real single-node Apache Kafka broker (KRaft: broker + controller in one JVM) for local
# development and CI, from the jars that tools/kafka/pom.xml resolves from Maven Central.
# No Docker, no Kafka install. Idempotent: reuses a broker that already answers.
#
#   bash scripts/kafka-start.sh
#
# Environment (all optional):
#   KAFKA_PORT             PLAINTEXT listener port          (default 9092)
#   KAFKA_CONTROLLER_PORT  KRaft controller listener port   (default 9093)
#   KAFKA_HOST             listen/advertised address        (default 127.0.0.1)
#   KAFKA_STATE_DIR        config, data, logs, pid file     (default <repo>/.kafka, git-ignored)
#   KAFKA_HEAP_OPTS        JVM heap                         (default -Xms256m -Xmx512m)
#   KAFKA_START_TIMEOUT    seconds to wait for the broker   (default 90)
#   JAVA_HOME              Java 17+ to use                  (default: java on PATH)
#
# Topics are NOT auto-created (auto.create.topics.enable=false): the service creates the topics it
# needs at start (with TOPIC_PARTITIONS partitions), so a typo in a topic name fails loudly
# instead of silently creating a stray topic.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$ROOT/tools/kafka"
LIB="$TOOLS/lib"
STATE="${KAFKA_STATE_DIR:-$ROOT/.kafka}"
mkdir -p "$STATE"
STATE="$(cd "$STATE" && pwd)"
DATA="$STATE/data"
LOGS="$STATE/logs"
CONF="$STATE/server.properties"
PIDFILE="$STATE/kafka.pid"
HOST="${KAFKA_HOST:-127.0.0.1}"
PORT="${KAFKA_PORT:-9092}"
CPORT="${KAFKA_CONTROLLER_PORT:-9093}"
TIMEOUT="${KAFKA_START_TIMEOUT:-90}"
HEAP="${KAFKA_HEAP_OPTS:--Xms256m -Xmx512m}"
LOG4J="$TOOLS/log4j2.yaml"

say() { echo "kafka-start: $*"; }
die() { echo "kafka-start: ERROR: $*" >&2; exit 1; }

# Alive and not a zombie (an exited broker whose parent has not reaped it yet counts as dead).
alive() { kill -0 "$1" 2>/dev/null && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null; }
port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

# Is the pid in the pid file a live broker that we started?
our_pid() {
  [[ -f "$PIDFILE" ]] || return 1
  local pid; pid="$(cat "$PIDFILE" 2>/dev/null || true)"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  alive "$pid" || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q 'kafka\.Kafka' || return 1
  echo "$pid"
}

LOG_OFFSET=0 # bytes of server.log written before this start (the fallback check reads only what follows)
HAVE_KAFKAJS=0
[[ -f "$ROOT/node_modules/kafkajs/package.json" ]] && command -v node >/dev/null && HAVE_KAFKAJS=1

# ready TIMEOUT [PID]: does a broker answer a metadata request on HOST:PORT?
ready() {
  local timeout="$1" pid="${2:-}"
  if [[ $HAVE_KAFKAJS == 1 ]]; then
    node "$ROOT/scripts/kafka-ready.js" --brokers "$HOST:$PORT" --timeout "$timeout" ${pid:+--pid "$pid"} ${QUIET:+--quiet}
  else
    # Fallback before `npm ci`: the port is open and the broker logged that it started.
    local end=$((SECONDS + timeout))
    while :; do
      if port_open "$HOST" "$PORT" && { [[ -z "$pid" ]] || tail -c "+$((LOG_OFFSET + 1))" "$LOGS/server.log" 2>/dev/null | grep -q 'Kafka Server started'; }; then
        [[ -n "${QUIET:-}" ]] || say "$HOST:$PORT is open (kafkajs not installed yet: checked the port, not a metadata request)"
        return 0
      fi
      [[ -n "$pid" ]] && ! alive "$pid" && return 1
      ((SECONDS >= end)) && return 1
      sleep 0.5
    done
  fi
}

# Two starts at once (two shells, CI + dev) would race on the pid file and the data dir: serialize.
if command -v flock >/dev/null; then
  exec 9>"$STATE/start.lock"
  flock -w "$((TIMEOUT + 30))" 9 || die "another kafka-start.sh holds $STATE/start.lock"
fi

# 1. Already running? -----------------------------------------------------------------------------
if pid="$(our_pid)"; then
  running="$(sed -n 's/^listeners=//p' "$CONF" 2>/dev/null || true)"
  wanted="PLAINTEXT://$HOST:$PORT,CONTROLLER://$HOST:$CPORT"
  if [[ -n "$running" && "$running" != "$wanted" ]]; then
    die "the broker from $PIDFILE (pid $pid) listens on $running, not $wanted; stop it first (bash scripts/kafka-stop.sh) or use another KAFKA_STATE_DIR"
  fi
  say "broker from $PIDFILE (pid $pid) is running; checking that it answers on $HOST:$PORT"
  if ready "$TIMEOUT" "$pid"; then
    say "reusing it; log: $LOGS/server.log"
    exit 0
  fi
  die "broker pid $pid runs but does not answer on $HOST:$PORT; see $LOGS/server.log (stop it: bash scripts/kafka-stop.sh)"
fi
rm -f "$PIDFILE"
if port_open "$HOST" "$PORT"; then
  if QUIET=1 ready 5; then
    say "a Kafka broker (not started by this script) already answers on $HOST:$PORT; reusing it"
    exit 0
  fi
  die "port $HOST:$PORT is taken by something that is not a Kafka broker (set KAFKA_PORT to use another port)"
fi
if port_open "$HOST" "$CPORT"; then
  die "controller port $HOST:$CPORT is taken (set KAFKA_CONTROLLER_PORT to use another port)"
fi

# 2. Java -----------------------------------------------------------------------------------------
if [[ -n "${JAVA_HOME:-}" && -x "$JAVA_HOME/bin/java" ]]; then JAVA="$JAVA_HOME/bin/java"; else JAVA="$(command -v java || true)"; fi
[[ -n "$JAVA" ]] || die "java not found (Kafka 4 needs Java 17+; set JAVA_HOME or install openjdk-17-jre-headless)"
JAVA_MAJOR="$("$JAVA" -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java\.specification\.version = //p' | cut -d. -f1)"
[[ "${JAVA_MAJOR:-0}" -ge 17 ]] 2>/dev/null || die "$JAVA is Java ${JAVA_MAJOR:-?}; Kafka 4 needs Java 17+ (set JAVA_HOME)"

# 3. Jars (resolved from Maven Central by tools/kafka/pom.xml; re-resolved when the pom changes) ---
POM_SUM="$(sha256sum "$TOOLS/pom.xml" | cut -d' ' -f1)"
MARKER="$LIB/.resolved"
# The marker holds the pom's checksum and the jar names of the last complete resolution.
jars_complete() {
  [[ -f "$MARKER" && "$(head -n1 "$MARKER")" == "$POM_SUM" ]] || return 1
  local jar n=0
  while IFS= read -r jar; do [[ -f "$LIB/$jar" ]] || return 1; n=$((n + 1)); done < <(tail -n +2 "$MARKER")
  ((n > 0)) && compgen -G "$LIB/kafka_2.13-*.jar" >/dev/null
}
if ! jars_complete; then
  command -v mvn >/dev/null || die "mvn not found: needed once to fetch the Kafka jars (apt-get install maven)"
  say "resolving Kafka jars from Maven Central into tools/kafka/lib (mvn; about a minute with an empty ~/.m2)"
  t0=$SECONDS
  rm -rf "$LIB"
  if ! (cd "$TOOLS" && mvn -B -q dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory=lib >"$STATE/mvn.log" 2>&1); then
    tail -n 30 "$STATE/mvn.log" >&2
    die "mvn could not resolve the Kafka jars (full output: $STATE/mvn.log)"
  fi
  if ! compgen -G "$LIB/kafka_2.13-*.jar" >/dev/null; then
    die "mvn finished but tools/kafka/lib has no kafka_2.13 jar (see $STATE/mvn.log)"
  fi
  { echo "$POM_SUM"; (cd "$LIB" && ls -1 -- *.jar); } >"$MARKER"
  say "resolved $(ls "$LIB"/*.jar | wc -l) jars in $((SECONDS - t0))s"
fi
KAFKA_JAR="$(ls "$LIB"/kafka_2.13-*.jar | head -n1)"
KAFKA_VERSION="$(basename "$KAFKA_JAR" .jar)"; KAFKA_VERSION="${KAFKA_VERSION#kafka_2.13-}"
CP="$LIB/*"
JVM_LOG_OPTS=(-Dlog4j2.configurationFile="$LOG4J" -Dkafka.logs.dir="$LOGS")

# 4. Config (rewritten every start, so env changes apply) -------------------------------------------
mkdir -p "$DATA" "$LOGS"
cat >"$CONF" <<EOF
# Written by scripts/kafka-start.sh; edits are overwritten on the next start.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$HOST:$CPORT
listeners=PLAINTEXT://$HOST:$PORT,CONTROLLER://$HOST:$CPORT
advertised.listeners=PLAINTEXT://$HOST:$PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$DATA
num.partitions=6
auto.create.topics.enable=false
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=6
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=6
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
log.retention.hours=168
log.segment.bytes=268435456
EOF

# 5. Format storage once -------------------------------------------------------------------------
if [[ ! -f "$DATA/meta.properties" ]]; then
  # Cluster id: 16 random bytes, URL-safe base64 without padding (what `StorageTool random-uuid` prints).
  CLUSTER_ID="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
  if ! "$JAVA" -cp "$CP" "${JVM_LOG_OPTS[@]}" kafka.tools.StorageTool \
      format -t "$CLUSTER_ID" -c "$CONF" >"$LOGS/format.out" 2>&1; then
    cat "$LOGS/format.out" >&2
    die "formatting $DATA failed"
  fi
  say "formatted $DATA (cluster id $CLUSTER_ID)"
fi

# 6. Start -------------------------------------------------------------------------------------
t0=$SECONDS
LOG_OFFSET="$(stat -c %s "$LOGS/server.log" 2>/dev/null || echo 0)"
# setsid + nohup: the broker outlives this shell and its process group; `exec` keeps the pid.
SETSID=(); command -v setsid >/dev/null && SETSID=(setsid)
# shellcheck disable=SC2086,SC2016 # $HEAP is a word list; $$/$0/$@ belong to the inner bash
nohup "${SETSID[@]}" bash -c 'echo $$ >"$0"; exec "$@"' "$PIDFILE" \
  "$JAVA" $HEAP -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:+ExplicitGCInvokesConcurrent \
  -Djava.awt.headless=true "${JVM_LOG_OPTS[@]}" -cp "$CP" kafka.Kafka "$CONF" \
  >"$LOGS/kafka.out" 2>&1 </dev/null 9>&- &
for _ in $(seq 50); do [[ -s "$PIDFILE" ]] && break; sleep 0.1; done
pid="$(cat "$PIDFILE" 2>/dev/null || true)"
[[ "$pid" =~ ^[0-9]+$ ]] || die "broker did not start (no pid); see $LOGS/kafka.out"
say "started Kafka $KAFKA_VERSION (pid $pid) on $HOST:$PORT, controller $HOST:$CPORT; waiting up to ${TIMEOUT}s"

if ! ready "$TIMEOUT" "$pid"; then
  {
    echo "---- last lines of $LOGS/server.log (this start) ----"
    tail -c "+$((LOG_OFFSET + 1))" "$LOGS/server.log" 2>/dev/null | tail -n 40
    echo "---- last lines of $LOGS/kafka.out (JVM output) ----"
    tail -n 20 "$LOGS/kafka.out" 2>/dev/null
  } >&2 || true
  if alive "$pid"; then
    die "broker (pid $pid) did not answer within ${TIMEOUT}s; it is left running (bash scripts/kafka-stop.sh)"
  fi
  rm -f "$PIDFILE"
  die "broker exited during start-up"
fi
say "ready in $((SECONDS - t0))s; log: $LOGS/server.log (JVM output: $LOGS/kafka.out); stop: bash scripts/kafka-stop.sh"

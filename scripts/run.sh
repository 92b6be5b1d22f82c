#!/usr/bin/env bash
# npm start: brings up PostgreSQL, Redis and Kafka (scripts/services-start.sh), builds, and runs the
# whole service (writer + projector + API) in one process in the foreground. Ctrl-C stops it.
# Waits for /readyz to answer 200 and says so. Settings come from the environment (see README).
# Then, unless SIMULATOR=0, starts gentle demo traffic for org_demo (apps/simulator) and creates a
# test API key for it, so that health can be watched moving while one provider has recurring outages.
# Logs are readable in the terminal (LOG_FORMAT=pretty) unless LOG_FORMAT says otherwise.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/services-start.sh
[ -d node_modules ] || npm ci
echo "[run] building"
npm run -s build
PORT="${HTTP_PORT:-8081}"
HOST="${HTTP_HOST:-127.0.0.1}"
SIM_LOG="${SIMULATOR_LOG:-${TMPDIR:-/tmp}/psp-simulator.log}"
sim_pid=""
LOG_FORMAT="${LOG_FORMAT:-pretty}" node -r ./scripts/register-paths.js dist/apps/dev/src/main.js &
pid=$!
trap 'kill $sim_pid "$pid" 2>/dev/null; wait $sim_pid "$pid" 2>/dev/null; exit 0' INT TERM
for _ in $(seq 1 120); do
  if ! kill -0 "$pid" 2>/dev/null; then echo "[run] the service exited; see the lines above" >&2; exit 1; fi
  if curl -fsS "http://$HOST:$PORT/readyz" >/dev/null 2>&1; then
    echo "[run] ready: http://$HOST:$PORT/readyz answers 200; metrics: http://$HOST:$PORT/metrics"
    if [ "${SIMULATOR:-1}" = "0" ]; then
      echo "[run] create a key:  npm run ops -- keys create --org org_demo --env test"
      echo "[run] then:          curl -H 'X-Org-Id: org_demo' -H 'X-Reevit-Key: <key>' http://$HOST:$PORT/v1/connections"
      break
    fi
    # Demo traffic: 1 org x 6 connections (one per provider), 20 events/s; paystack fails a lot and
    # slowly from 60 s for 60 s, every 10 minutes. Progress and the final summary go to $SIM_LOG.
    node -r ./scripts/register-paths.js dist/apps/simulator/src/main.js \
      --orgs 1 --connections 6 --rate 20 --org-prefix org_demo --outage paystack:60:60:600 >"$SIM_LOG" 2>&1 &
    sim_pid=$!
    KEY="$(npm run -s ops -- keys create --org org_demo --env test | tail -n 1)" || KEY="<key: npm run ops -- keys create --org org_demo --env test>"
    echo "[run] demo traffic for org_demo: 6 connections, 20 events/s; paystack outage at 1:00 for 60 s, every 10 min"
    echo "[run]   simulator progress: tail -f $SIM_LOG   (SIMULATOR=0 npm start runs without it)"
    echo "[run] demo API key (test, org_demo; shown once): $KEY"
    echo "[run] watch paystack's health fall in the outage and climb back after it (run it every few seconds):"
    echo "[run]   curl -s -H 'X-Org-Id: org_demo' -H 'X-Reevit-Key: $KEY' 'http://$HOST:$PORT/v1/connections?provider=paystack'"
    echo "[run] all six:  curl -s -H 'X-Org-Id: org_demo' -H 'X-Reevit-Key: $KEY' http://$HOST:$PORT/v1/connections"
    echo "[run] a router's view of one:  curl -s -H 'X-Org-Id: org_demo' -H 'X-Reevit-Key: $KEY' http://$HOST:$PORT/v1/connections/<id>/stats"
    echo "[run] health changes as routers get them (psp.connection-health) print below as [health] lines:"
    echo "[run]   paystack goes unhealthy in each outage and back; the same by hand: npm run ops -- health --follow --org org_demo"
    ( npm run -s ops -- health --follow --from-beginning --org org_demo 2>&1 | sed -u 's/^/[health] /' ) &
    health_pid=$!
    break
  fi
  sleep 0.5
done
status=0
wait "$pid" || status=$?
if [ -n "$sim_pid" ]; then kill "$sim_pid" 2>/dev/null || true; fi
if [ -n "${health_pid:-}" ]; then pkill -P "$health_pid" 2>/dev/null || true; kill "$health_pid" 2>/dev/null || true; fi
exit "$status"

#!/usr/bin/env bash
# npm start: brings up PostgreSQL, Redis and Kafka (scripts/services-start.sh), builds, and runs the
# whole service (writer + projector + API) in one process in the foreground. Ctrl-C stops it.
# Waits for /readyz to answer 200 and says so. Settings come from the environment (see README).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/services-start.sh
[ -d node_modules ] || npm ci
echo "[run] building"
npm run -s build
PORT="${HTTP_PORT:-8081}"
HOST="${HTTP_HOST:-127.0.0.1}"
node -r ./scripts/register-paths.js dist/apps/dev/src/main.js &
pid=$!
trap 'kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; exit 0' INT TERM
for _ in $(seq 1 120); do
  if ! kill -0 "$pid" 2>/dev/null; then echo "[run] the service exited; see the lines above" >&2; exit 1; fi
  if curl -fsS "http://$HOST:$PORT/readyz" >/dev/null 2>&1; then
    echo "[run] ready: http://$HOST:$PORT/readyz answers 200"
    echo "[run] create a key:  npm run ops -- keys create --org org_demo --env test"
    echo "[run] then:          curl -H 'X-Org-Id: org_demo' -H 'X-Reevit-Key: <key>' http://$HOST:$PORT/v1/connections"
    break
  fi
  sleep 0.5
done
wait "$pid"

#!/usr/bin/env bash
# Stops what scripts/services-start.sh started for this project: the Kafka broker.
# PostgreSQL and Redis are the machine's own services (shared with other work) and stay up.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/kafka-stop.sh"
echo "services-stop: PostgreSQL and Redis left running (machine services)"

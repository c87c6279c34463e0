#!/usr/bin/env bash
# Stop the running earlyrisk job with a savepoint (state kept for an upgrade).
#   deploy/flink/savepoint.sh [JOB_ID]     (default: the only running job)
# Prints the savepoint path; restart from it with SAVEPOINT=... submit.sh.
set -euo pipefail
FLINK="${FLINK_REST:-http://localhost:8081}"
job="${1:-$(curl -fsS "$FLINK/jobs" | python3 -c 'import json,sys; r=[j["id"] for j in json.load(sys.stdin)["jobs"] if j["status"]=="RUNNING"]; print(r[0] if len(r)==1 else "")')}"
[[ -n "$job" ]] || { echo "no single running job; pass a JOB_ID" >&2; exit 2; }
trigger=$(curl -fsS -X POST "$FLINK/jobs/$job/stop" -H 'Content-Type: application/json' \
  -d '{"drain": false}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["request-id"])')
for _ in $(seq 1 120); do
  status=$(curl -fsS "$FLINK/jobs/$job/savepoints/$trigger")
  state=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["status"]["id"])' "$status")
  if [[ "$state" == "COMPLETED" ]]; then
    python3 -c 'import json,sys; o=json.loads(sys.argv[1])["operation"]; print(o.get("location") or o)' "$status"
    exit 0
  fi
  sleep 1
done
echo "savepoint did not complete in 120 s" >&2; exit 1

#!/usr/bin/env bash
# Submit the screening job to the Flink cluster of docker-compose.yml (or any
# cluster with a Beam Flink job server). Extra arguments go to `earlyrisk run`.
#
#   deploy/flink/submit.sh --input kafka://kafka:29092/submissions \
#       --output bigquery://PROJECT/DATASET
#
# Environment: JOB_ENDPOINT (localhost:8099), WORKER_POOL (localhost:50000),
# PARALLELISM (2), CHECKPOINT_MS (60000), SAVEPOINT (restore from this path).
set -euo pipefail
cd "$(dirname "$0")/../.."
args=(
  run --runner portable
  --job_endpoint "${JOB_ENDPOINT:-localhost:8099}"
  --environment_type EXTERNAL --environment_config "${WORKER_POOL:-localhost:50000}"
  --streaming
  --parallelism "${PARALLELISM:-2}"
  --checkpointing_interval "${CHECKPOINT_MS:-60000}"
  --state_backend rocksdb
)
if [[ -n "${SAVEPOINT:-}" ]]; then
  args+=(--savepoint_path "$SAVEPOINT")
fi
exec "${EARLYRISK:-.venv/bin/earlyrisk}" "${args[@]}" "$@"

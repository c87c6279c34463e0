#!/usr/bin/env bash
# Start or stop a local BigQuery emulator (bqemulator, installed by
# deploy/local/install-bqemulator.sh) for trying `--output bigquery://...`.
#
#   bash deploy/local/bqemulator.sh start   # REST on $BQ_REST_PORT (9050), gRPC on 9060
#   export BIGQUERY_EMULATOR_HOST=http://127.0.0.1:9050
#   earlyrisk run --output bigquery://demo-project/earlyrisk --bq-create-tables
#   bash deploy/local/bqemulator.sh stop
#
# Data is in memory (ephemeral): stopping the emulator loses it.
set -euo pipefail
cd "$(dirname "$0")/../.."

BQEMU_VENV=${BQEMU_VENV:-.venv-bqemulator}
BQ_REST_PORT=${BQ_REST_PORT:-9050}
BQ_GRPC_PORT=${BQ_GRPC_PORT:-9060}
BQ_PROJECT=${BQ_PROJECT:-demo-project}
RUN_DIR=${BQ_RUN_DIR:-${XDG_RUNTIME_DIR:-/tmp}/earlyrisk-bqemulator-$BQ_REST_PORT}
PID_FILE="$RUN_DIR/pid"

case "${1:-}" in
start)
    [ -x "$BQEMU_VENV/bin/bqemulator" ] || {
        echo "bqemulator not installed: run deploy/local/install-bqemulator.sh" >&2; exit 1; }
    if [ -e "$PID_FILE" ] && kill -0 "$(cat "$PID_FILE")" 2>/dev/null; then
        echo "already running (pid $(cat "$PID_FILE")) on port $BQ_REST_PORT"; exit 0
    fi
    mkdir -p "$RUN_DIR"
    nohup "$BQEMU_VENV/bin/bqemulator" start --rest-port "$BQ_REST_PORT" \
        --grpc-port "$BQ_GRPC_PORT" --project "$BQ_PROJECT" --log-level warning \
        >"$RUN_DIR/log" 2>&1 &
    echo $! >"$PID_FILE"
    for _ in $(seq 1 300); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$BQ_REST_PORT") 2>/dev/null; then
            echo "bqemulator running (pid $(cat "$PID_FILE")):" \
                 "export BIGQUERY_EMULATOR_HOST=http://127.0.0.1:$BQ_REST_PORT"
            exit 0
        fi
        kill -0 "$(cat "$PID_FILE")" 2>/dev/null || {
            echo "bqemulator exited; log:" >&2; cat "$RUN_DIR/log" >&2; exit 1; }
        sleep 0.2
    done
    echo "bqemulator did not open port $BQ_REST_PORT within 60 s; log: $RUN_DIR/log" >&2
    exit 1
    ;;
stop)
    if [ -e "$PID_FILE" ]; then
        kill "$(cat "$PID_FILE")" 2>/dev/null || true
        rm -f "$PID_FILE"
        echo "bqemulator stopped"
    else
        echo "bqemulator not running (no $PID_FILE)"
    fi
    ;;
*)
    echo "usage: $0 start|stop" >&2; exit 2 ;;
esac

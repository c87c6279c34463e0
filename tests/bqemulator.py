"""Start and stop a real BigQuery emulator (``bqemulator``) for tests.

The emulator lives in its own virtualenv, made by
``deploy/local/install-bqemulator.sh`` (``make test`` runs it). Tests that need
it use the ``bq_emulator`` fixture (tests/conftest.py), which skips with a
clear message only when that script has not been run.
"""

from __future__ import annotations

import os
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.services import free_port

REPO = Path(__file__).resolve().parent.parent
VENV = Path(os.environ.get("BQEMU_VENV", REPO / ".venv-bqemulator"))
BINARY = VENV / "bin" / "bqemulator"
PROJECT = "demo-project"
START_TIMEOUT_S = 120.0


def _ready(rest: int) -> bool:
    """The REST API answers (not just an open port: start-up binds it early)."""
    url = f"http://127.0.0.1:{rest}/bigquery/v2/projects/{PROJECT}/datasets"
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200
    except (OSError, urllib.error.URLError):
        return False


@contextmanager
def running_emulator(log_path: Path) -> Iterator[str]:
    """Run bqemulator on free ports; yields its REST endpoint (http://127.0.0.1:PORT).

    The gRPC port (unused here) is left to the emulator (0): a port picked by
    us could be taken by another process before the emulator binds it, which
    kills the emulator after its REST port is already open.
    """
    rest = free_port()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [str(BINARY), "start", "--rest-port", str(rest), "--grpc-port", "0",
             "--project", PROJECT, "--log-level", "warning"],
            stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _ready(rest):
            if proc.poll() is not None:
                raise RuntimeError(f"bqemulator exited with {proc.returncode}; "
                                   f"log: {log_path.read_text()[-2000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"bqemulator did not listen within {START_TIMEOUT_S} s")
            time.sleep(0.2)
        time.sleep(0.5)
        if proc.poll() is not None:
            raise RuntimeError(f"bqemulator exited during start-up; "
                               f"log: {log_path.read_text()[-2000:]}")
        yield f"http://127.0.0.1:{rest}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class RecordingProxy:
    """A plain HTTP forwarder in front of the emulator that keeps insertAll bodies.

    The emulator ignores insertId, so the ids the writer really sends are
    observed on the wire instead.
    """

    def __init__(self, target: str) -> None:
        import http.server
        import threading

        self.inserts: list[dict] = []
        proxy = self
        target = target.rstrip("/")

        class Handler(http.server.BaseHTTPRequestHandler):
            def _forward(self) -> None:
                import json

                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                if body and self.path.split("?")[0].endswith("/insertAll"):
                    proxy.inserts.append(json.loads(body))
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() not in ("host", "connection", "accept-encoding")}
                req = urllib.request.Request(target + self.path, data=body, headers=headers,
                                             method=self.command)
                try:
                    with urllib.request.urlopen(req, timeout=60) as r:
                        status, rheaders, data = r.status, r.headers, r.read()
                except urllib.error.HTTPError as e:
                    status, rheaders, data = e.code, e.headers, e.read()
                self.send_response(status)
                for k, v in rheaders.items():
                    if k.lower() not in ("transfer-encoding", "connection", "content-length",
                                         "content-encoding"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            # http.server dispatches on these fixed names.
            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _forward  # noqa: N815

            def log_message(self, *args) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> RecordingProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

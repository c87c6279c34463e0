"""Start and stop a real BigQuery emulator (``bqemulator``) for tests.

The emulator lives in its own virtualenv, made by
``deploy/local/install-bqemulator.sh`` (``make test`` runs it). Tests that need
it use the ``bq_emulator`` fixture (tests/conftest.py), which skips with a
clear message only when that script has not been run.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VENV = Path(os.environ.get("BQEMU_VENV", REPO / ".venv-bqemulator"))
BINARY = VENV / "bin" / "bqemulator"
PROJECT = "demo-project"
START_TIMEOUT_S = 120.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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

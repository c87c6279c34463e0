"""README's and docs/SOURCES.md's live-source recipes, run as written.

Each fenced ``sh`` block that starts Tansu or the Pub/Sub emulator is run line by line in a
scratch directory that looks like a checkout after ``make run`` (``.venv``, ``deploy`` and
``data`` link to this one), against the real broker and the real emulator. The only change
to the text: the documented ports 9092 and 8085 become free ports (``TANSU_PORT`` and
``PUBSUB_PORT`` tell the service scripts). A line whose comment mentions Ctrl-C is run on a
terminal and stopped with SIGINT once its progress line shows every message scored, as a
user would. Each recipe must raise the same alerts as ``earlyrisk run`` over the file.
"""

from __future__ import annotations

import gzip
import os
import pty
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import duckdb
import pytest

from bench import services
from bench.services import free_port
from tests.conftest import REPO, SIMULATED, TEST_KEY

DOCS = (REPO / "README.md", REPO / "docs" / "SOURCES.md")
MARKERS = ("tansu.sh start", "pubsub-emulator.sh start")
N_MESSAGES = sum(1 for line in gzip.open(SIMULATED / "test.jsonl.gz") if line.strip())


def recipes() -> list[tuple[str, list[str]]]:
    """(id, lines) of every fenced sh block in DOCS that starts a local service; blocks
    with the same text are run once."""
    found: dict[str, tuple[str, list[str]]] = {}
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        for i, m in enumerate(re.finditer(r"^```sh\n(.*?)^```", text, re.S | re.M)):
            block = m.group(1)
            if any(marker in block for marker in MARKERS):
                found.setdefault(block, (f"{doc.name}-{i}", block.strip().splitlines()))
    return list(found.values())


def _alerts(db: Path) -> set[tuple[str, str]]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return set(con.execute("select user_id, submission_id from alerts").fetchall())
    finally:
        con.close()


@pytest.fixture(scope="module")
def file_alerts(tmp_path_factory) -> set[tuple[str, str]]:
    """The alerts of the default run over the bundled file (the reference)."""
    d = tmp_path_factory.mktemp("file-run")
    subprocess.run([str(Path(sys.executable).parent / "earlyrisk"), "run", "--no-progress"],
                   cwd=d, check=True, capture_output=True, timeout=600, env=_env(d))
    return _alerts(d / "earlyrisk.duckdb")


def _env(root: Path) -> dict[str, str]:
    """This environment, with the test's pseudonym key and no service settings."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PUBSUB_EMULATOR_HOST", "VENV", "TANSU_PORT", "PUBSUB_PORT")}
    env.update(EARLYRISK_PSEUDONYM_KEY=TEST_KEY, XDG_STATE_HOME=str(root / ".state"),
               EARLYRISK_RUN_DIR=str(root / ".run"))
    return env


def _checkout(root: Path) -> None:
    """A directory that looks like this checkout after ``make run``."""
    (root / ".venv").symlink_to(Path(sys.prefix))
    (root / "deploy").symlink_to(REPO / "deploy")
    (root / "data").symlink_to(REPO / "data")


def _stream_until_scored(cmd: str, cwd: Path, env: dict[str, str], n: int) -> str:
    """Run ``cmd`` on a terminal, press Ctrl-C once it has scored ``n``; its stdout."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(["bash", "-c", f"exec {cmd}"], cwd=cwd, env=env, stdin=slave,
                            stdout=subprocess.PIPE, stderr=slave, start_new_session=True)
    os.close(slave)
    screen: list[str] = []

    def drain() -> None:  # keep reading, so the progress line never blocks on a full pty
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                return
            if not chunk:
                return
            screen.append(chunk.decode(errors="replace"))

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None:
            last = "".join(screen).split("\r")[-1]
            m = re.search(r"scored ([\d,]+)", last)
            if m and int(m.group(1).replace(",", "")) >= n:
                break
            time.sleep(0.5)
        else:
            pytest.fail(f"{cmd!r} did not score {n} messages: {''.join(screen)[-2000:]}")
        proc.send_signal(signal.SIGINT)  # Ctrl-C (to the command only, not the test)
        out, _ = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        os.close(master)
    assert proc.returncode == 130, out
    return out.decode()


def _stops(lines: list[str]) -> list[str]:
    return [ln for ln in lines if re.search(r"\.sh stop\b", ln)]


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.parametrize("lines", [r[1] for r in recipes()], ids=[r[0] for r in recipes()])
def test_recipe_runs_as_written(lines, tmp_path, file_alerts):
    if any("pubsub-emulator.sh" in ln for ln in lines) \
            and not services.pubsub_emulator_available():
        pytest.skip(f"Pub/Sub emulator not installed at {services.PUBSUB_EMULATOR_BIN} "
                    "(Debian package google-cloud-cli-pubsub-emulator)")
    kafka_port, pubsub_port = free_port(), free_port()
    env = _env(tmp_path)
    env.update(TANSU_PORT=str(kafka_port), PUBSUB_PORT=str(pubsub_port))
    _checkout(tmp_path)
    lines = [ln.replace("127.0.0.1:9092", f"127.0.0.1:{kafka_port}")
               .replace("127.0.0.1:8085", f"127.0.0.1:{pubsub_port}") for ln in lines]
    outputs: list[str] = []
    try:
        for line in lines:
            if line.startswith("export "):
                name, _, value = line.split("#")[0].strip()[len("export "):].partition("=")
                env[name] = shlex.split(value)[0]
            elif "Ctrl-C" in line:
                outputs.append(_stream_until_scored(line.split("#")[0].strip(), tmp_path,
                                                    env, N_MESSAGES))
            else:
                proc = subprocess.run(["bash", "-c", line], cwd=tmp_path, env=env,
                                      capture_output=True, text=True, timeout=600)
                assert proc.returncode == 0, f"{line}\n{proc.stdout}\n{proc.stderr}"
                outputs.append(proc.stdout)
    finally:
        for line in _stops(lines):  # whatever happened, stop the services this test started
            subprocess.run(["bash", "-c", line], cwd=tmp_path, env=env, capture_output=True,
                           timeout=60)
    text = "\n".join(outputs)
    assert f"published            {N_MESSAGES:>10,}" in text
    runs = [o for o in outputs if "submissions read" in o]
    assert f"submissions read     {N_MESSAGES:>10,}" in runs[0]
    assert f"scored               {N_MESSAGES:>10,}" in runs[0]
    assert "read = scored + dead-lettered" in runs[0]
    for again in runs[1:]:  # a second Kafka run with the same group reads nothing new
        assert f"submissions read     {0:>10,}" in again
    # Keyed by author, each user's writings arrive in order: the alerts of the file run.
    assert _alerts(tmp_path / "earlyrisk.duckdb") == file_alerts

"""Fixtures for the review app's tests: a real store and a real server.

``pipeline_db`` runs the real screening pipeline once per session on the
bundled simulated test stream into a DuckDB file; tests that write labels get
their own copy (``review_db``). ``live_server`` starts ``earlyrisk serve`` as a
subprocess on a free port over a copy, with credentials in its environment.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bench.services import free_port
from corpora.simulate import SIMULATED_DIR
from webapp.auth import hash_password

REVIEWER = "alice"
PASSWORD = "correct horse battery"
TOKEN = "test-token-0123456789abcdef"
PSEUDONYM_KEY = "test-pseudonym-key-0123456789"
# Hashing once per session: scrypt is deliberately slow.
_HASH = hash_password(PASSWORD)


def review_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EARLYRISK_")}
    env.update({"EARLYRISK_REVIEW_USERS": f"{REVIEWER}:{_HASH}",
                "EARLYRISK_REVIEW_TOKEN": TOKEN,
                "EARLYRISK_PSEUDONYM_KEY": PSEUDONYM_KEY})
    env.update(extra)
    return env


@pytest.fixture(scope="session")
def pipeline_db(tmp_path_factory) -> Path:
    """The store the real pipeline writes for the bundled test stream."""
    from pipelines.screening import run

    path = tmp_path_factory.mktemp("store") / "review.duckdb"
    old = os.environ.get("EARLYRISK_PSEUDONYM_KEY")
    os.environ["EARLYRISK_PSEUDONYM_KEY"] = PSEUDONYM_KEY
    try:
        summary = run(["--input", f"file://{SIMULATED_DIR / 'test.jsonl.gz'}",
                       "--output", f"duckdb://{path}"], show_progress=False)
    finally:
        if old is None:
            os.environ.pop("EARLYRISK_PSEUDONYM_KEY", None)
        else:
            os.environ["EARLYRISK_PSEUDONYM_KEY"] = old
    assert summary.alerts > 10 and summary.balanced
    return path


@pytest.fixture
def review_db(pipeline_db, tmp_path) -> Path:
    path = tmp_path / "review.duckdb"
    shutil.copyfile(pipeline_db, path)
    return path


@dataclass
class LiveServer:
    url: str
    db: Path
    proc: subprocess.Popen
    log: Path


@pytest.fixture(scope="module")
def live_server(pipeline_db, tmp_path_factory) -> Iterator[LiveServer]:
    """``earlyrisk serve`` on a free port over a copy of the pipeline's store."""
    work = tmp_path_factory.mktemp("server")
    db = work / "review.duckdb"
    shutil.copyfile(pipeline_db, db)
    port = free_port()
    log = work / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pipelines.cli", "serve", "--db", f"duckdb://{db}",
             "--port", str(port)], env=review_env(), stdout=out, stderr=subprocess.STDOUT,
            cwd=Path(__file__).resolve().parents[2])
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(url + "/login", timeout=2).read()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"server did not start: {log.read_text()[-2000:]}")
            time.sleep(0.1)
    try:
        yield LiveServer(url, db, proc, log)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()

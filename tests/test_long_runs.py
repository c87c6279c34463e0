"""Long runs stop when told and account for themselves: ``crawl --duration`` with Reddit
unreachable (retries summarised, metrics printed); Ctrl-C on a streaming run is covered by
tests/test_recipes.py (the Pub/Sub recipe)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.services import free_port

EARLYRISK = str(Path(sys.executable).parent / "earlyrisk")


@pytest.mark.slow
def test_crawl_duration_is_honoured_when_reddit_is_unreachable(tmp_path):
    env = dict(os.environ, REDDIT_CLIENT_ID="fake-client", REDDIT_CLIENT_SECRET="fake-secret",
               REDDIT_USER_AGENT="python:earlyrisk-tests:v0.1.0 (by /u/earlyrisk-ci)")
    port = free_port()  # nothing listens there
    start = time.monotonic()
    proc = subprocess.run(
        [EARLYRISK, "crawl", "--api-url", f"http://127.0.0.1:{port}", "--duration", "5",
         "--state", ":memory:", "--output", f"file://{tmp_path / 'w.jsonl'}",
         "--metrics-json", str(tmp_path / "m.json")],
        capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    elapsed = time.monotonic() - start
    # Stops at the first check after 5 s: one failing request (with prawcore's own quick
    # retries) may be in flight then. Before, it ran until killed.
    assert elapsed < 5 + 20, elapsed
    assert proc.returncode == 1
    err = proc.stderr.splitlines()
    assert "Traceback" not in proc.stderr
    assert len(err) <= 3, proc.stderr  # first failure, one summary, the one-line error
    assert err[-1].startswith("earlyrisk: error: Reddit was not reachable")
    assert "API errors" in proc.stdout and "elapsed" in proc.stdout  # the metrics
    assert (tmp_path / "m.json").is_file()


@pytest.mark.slow
def test_ctrl_c_inside_a_batch_run_prints_the_accounting_so_far(tmp_path, monkeypatch,
                                                                capsys):
    from pipelines import progress
    from pipelines.cli import main

    real_tick = progress.tick

    def tick(name: str, n: int = 1) -> None:  # Ctrl-C arrives while the first alert is raised
        real_tick(name, n)
        if name == "alerts":
            raise KeyboardInterrupt

    monkeypatch.setattr(progress, "tick", tick)
    monkeypatch.chdir(tmp_path)
    assert main(["run", "--no-progress"]) == 130
    out = capsys.readouterr().out
    assert "stopped              interrupted (Ctrl-C)" in out
    assert "submissions read" in out and "accounting           read = scored" in out

"""Restarts: kill -9 the pipeline in the middle of a Kafka backfill, start it again.

With the real Tansu broker: no submission is lost and none is counted twice.
That rests on two things, both exercised here: offsets are committed only for
messages whose rows are written (the bounded read commits after the whole run
succeeds), and every sink write is idempotent (primary keys), so whatever the
restart reads again leaves one row.
"""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from corpora.simulate import SIMULATED_DIR
from pipelines.screening import run
from tests.services import produce_round_robin, tansu
from transforms.kafka_io import committed_offsets

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TOPIC = "backfill"
GROUP = "restart-test"
KEY = "restart-test-pseudonym-key-0123456789"
BAD = [b"{not json", b'{"id": "x1"}', b"\xff\xfe binary", b"[1, 2]"]


def _payloads() -> list[bytes]:
    with gzip.open(SIMULATED_DIR / "test.jsonl.gz") as f:
        lines = [ln.strip() for ln in f if ln.strip()]
    # Twice the test stream (second copy with new ids) so the backfill takes a while.
    second = [json.dumps({**json.loads(ln), "id": json.loads(ln)["id"] + "-b"}).encode()
              for ln in lines]
    out = lines + second
    for i, bad in enumerate(BAD):
        out.insert(500 * (i + 1), bad)
    return out


def _produce(bootstrap: str, payloads: list[bytes]) -> dict[int, int]:
    return produce_round_robin(bootstrap, TOPIC, payloads, create=True, flush_timeout_s=30)


def _argv(bootstrap: str, db: Path) -> list[str]:
    return ["--input", f"kafka://{bootstrap}/{TOPIC}", "--until-caught-up",
            "--kafka-group", GROUP, "--output", f"duckdb://{db}"]


def _stored(db: Path) -> tuple[list[str], int, int, int]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        sources = [r[0] for r in con.execute(
            "SELECT source FROM scores UNION ALL SELECT source FROM dead_letters").fetchall()]
        scores, dead, writings = (con.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                                  for t in ("scores", "dead_letters", "writings"))
    finally:
        con.close()
    return sources, scores, dead, writings


def _kill_once_writing(proc: subprocess.Popen, db: Path, timeout_s: float = 300) -> int:
    """SIGKILL the run once a first batch of rows is committed; returns the WAL size.

    DuckDB appends a transaction to its write-ahead log when it commits; the
    run's first commit of rows makes the log jump by megabytes. A log that has
    stopped growing past 1 MB holds at least one committed batch, and the rest
    of the run (more batches, the offset commit) has not happened yet.
    """
    wal = Path(str(db) + ".wal")
    deadline = time.monotonic() + timeout_s
    history: list[int] = []
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail("the backfill finished before it could be killed mid-way "
                        f"(exit {proc.returncode}): make it longer")
        size = wal.stat().st_size if wal.exists() else 0
        history = (history + [size])[-3:]
        if size > 1_000_000 and history.count(size) == 3:  # still for 20 ms: a commit is done
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)
            return size
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(30)
    pytest.fail("no rows were written within the time limit")


def test_kill_mid_backfill_then_restart_loses_nothing_counts_nothing_twice(
        tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("EARLYRISK_PSEUDONYM_KEY", KEY)  # same pseudonyms in both runs
    payloads = _payloads()
    db = tmp_path / "backfill.duckdb"
    with tansu() as bootstrap:
        per_partition = _produce(bootstrap, payloads)
        expected = sorted(f"kafka:{TOPIC}:{p}:{o}" for p, n in per_partition.items()
                          for o in range(n))

        proc = subprocess.Popen(
            [sys.executable, "-m", "pipelines.cli", "run", *_argv(bootstrap, db),
             "--no-progress"],
            cwd=Path(__file__).resolve().parent.parent, start_new_session=True,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wal_bytes = _kill_once_writing(proc, db)
        assert proc.returncode == -signal.SIGKILL

        # After the kill: whatever offsets the group holds, every message before
        # them must already be in the store (committed implies written).
        committed = committed_offsets(bootstrap, TOPIC, GROUP)
        partial, *counts = _stored(db)
        n_good = len(payloads) - len(BAD)
        assert sum(counts) > 0, "killed before any row was committed"
        assert counts != [n_good, len(BAD), n_good], "the run was not interrupted mid-way"
        for p, offset in committed.items():
            have = {s for s in partial if s.startswith(f"kafka:{TOPIC}:{p}:")}
            assert all(f"kafka:{TOPIC}:{p}:{o}" in have for o in range(offset or 0))
        print(f"\nkilled with scores/dead_letters/writings rows {counts} of "
              f"{[n_good, len(BAD), n_good]} (WAL {wal_bytes:,} bytes), "
              f"committed offsets {committed}")

        # Restart with the same consumer group and store.
        summary = run(_argv(bootstrap, db), show_progress=False)
        assert summary.balanced, summary.lines()
        sources, scores, dead, writings = _stored(db)
        assert sorted(sources) == expected  # every message exactly once
        assert (scores, dead, writings) == (n_good, len(BAD), n_good)
        assert committed_offsets(bootstrap, TOPIC, GROUP) == per_partition

        # Nothing left to read: a third run changes nothing.
        again = run(_argv(bootstrap, db), show_progress=False)
        assert again.read == 0
        assert _stored(db)[1:] == (scores, dead, writings)

"""Sink failures: a store that is down makes the pipeline wait and retry, never drop;
rows the store rejects land in ``dead_letters`` with the reason.

The "down" store is real: another process holds DuckDB's file lock.
"""

from __future__ import annotations

import gzip
import logging
import subprocess
import sys
import textwrap
import threading
import time

import apache_beam as beam
import duckdb
import pytest
from apache_beam.testing.test_pipeline import TestPipeline

from models.records import ScoreRecord, WritingRecord
from pipelines.screening import run
from tests.conftest import SIMULATED, write_jsonl
from transforms.sinks import SinkUnavailableError, WriteResults, retry_with_backoff


def _lines(n: int) -> list[bytes]:
    with gzip.open(SIMULATED / "test.jsonl.gz", "rb") as f:
        return [next(f).rstrip(b"\n") for _ in range(n)]


class LockHolder:
    """Another process that opens the DuckDB file (taking its lock) for a while.

    With ``seconds=None`` it holds the lock until :meth:`release`.
    """

    def __init__(self, db, seconds: float | None) -> None:
        wait = "sys.stdin.readline()" if seconds is None else f"time.sleep({seconds})"
        code = textwrap.dedent(f"""
            import sys, time, duckdb
            con = duckdb.connect({str(db)!r})
            print("locked", flush=True)
            {wait}
            con.close()
            print("released", flush=True)
        """)
        self.proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                                     stdin=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline().strip() == "locked"

    def release(self) -> None:
        self.proc.stdin.write("release\n")
        self.proc.stdin.flush()
        self.wait_released()

    def wait_released(self) -> None:
        assert self.proc.stdout.readline().strip() == "released"
        self.proc.wait(30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def _count(db, table: str) -> int:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(f"select count(*) from {table}").fetchone()[0]
    finally:
        con.close()


def test_backoff_doubles_caps_and_gives_up():
    delays: list[float] = []
    calls = {"n": 0}

    def flaky() -> str:
        calls["n"] += 1
        if calls["n"] < 6:
            raise duckdb.IOException("Could not set lock on file")
        return "ok"

    assert retry_with_backoff(flaky, lambda e: isinstance(e, duckdb.IOException), 1e9,
                              "test", first_delay_s=1, max_delay_s=4,
                              sleep=delays.append) == "ok"
    assert delays == [1, 2, 4, 4, 4]
    # A non-transient error is not retried.
    with pytest.raises(ValueError):
        retry_with_backoff(lambda: (_ for _ in ()).throw(ValueError("bad row")),
                           lambda e: False, 100, "test", sleep=delays.append)
    assert len(delays) == 5
    with pytest.raises(SinkUnavailableError, match="still failing"):
        retry_with_backoff(lambda: (_ for _ in ()).throw(duckdb.IOException("locked")),
                           lambda e: True, 0.05, "test", first_delay_s=0.01)


@pytest.mark.slow
def test_a_locked_store_makes_the_pipeline_wait_not_drop(tmp_path):
    lines = _lines(60)
    src = write_jsonl(tmp_path / "in.jsonl", lines)
    db = tmp_path / "out.duckdb"
    duckdb.connect(str(db)).close()
    # The lock is released only once the run has been seen waiting for it, so
    # the test does not depend on how long the run takes to start.
    retries: list[str] = []
    waiting = threading.Event()

    class Seen(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "retrying in" in record.getMessage():
                retries.append(record.getMessage())
                waiting.set()

    seen = Seen(logging.WARNING)
    logging.getLogger().addHandler(seen)
    holder = LockHolder(db, seconds=None)
    done: dict = {}

    def job() -> None:
        try:
            done["summary"] = run(["--input", f"file://{src}", "--output", f"duckdb://{db}",
                                   "--raw-user-ids", "--sink-retry-seconds", "120"],
                                  show_progress=False)
        except BaseException as e:  # reported below
            done["error"] = e

    worker = threading.Thread(target=job)
    try:
        worker.start()
        assert waiting.wait(120), "the store was never found locked"
        time.sleep(1)  # a retry or two more, still locked
        holder.release()
        worker.join(180)
    finally:
        holder.stop()
        logging.getLogger().removeHandler(seen)
    assert not worker.is_alive(), "the run did not finish after the lock was released"
    if "error" in done:
        raise done["error"]
    summary = done["summary"]
    assert "lock" in retries[0]
    assert summary.balanced and summary.scored == len(lines)
    assert _count(db, "scores") == len(lines)


@pytest.mark.slow
def test_a_store_down_too_long_fails_the_run_and_a_rerun_loses_nothing(tmp_path):
    lines = _lines(40)
    src = write_jsonl(tmp_path / "in.jsonl", lines)
    db = tmp_path / "out.duckdb"
    duckdb.connect(str(db)).close()
    argv = ["--input", f"file://{src}", "--output", f"duckdb://{db}", "--raw-user-ids"]
    holder = LockHolder(db, seconds=60)
    try:
        with pytest.raises(Exception, match="still failing after"):
            run(argv + ["--sink-retry-seconds", "1"], show_progress=False)
    finally:
        holder.stop()
    # The failed run acknowledged nothing: running again writes everything once.
    summary = run(argv, show_progress=False)
    assert summary.balanced
    assert _count(db, "scores") == len(lines)


def _score(i: int, subreddit: str | None = "depression") -> ScoreRecord:
    return ScoreRecord(user_id="u1", submission_id=f"s{i}", created_utc=1_546_300_800 + i,
                       kind="post", subreddit=subreddit, p_text=0.1, p_user=0.2,
                       writings_seen=i + 1, model_version="m", source=f"test:{i}")


def test_rows_the_store_rejects_become_dead_letters(tmp_path):
    db = tmp_path / "rej.duckdb"
    scores = [_score(0), _score(1, subreddit=None), _score(2)]  # NOT NULL violated
    writings = [
        WritingRecord(user_id="u1", submission_id="s0", created_utc=1_546_300_800,
                      kind="post", subreddit="d", title="", body="fine", source="test:0"),
        # A lone surrogate cannot be stored as UTF-8 text.
        WritingRecord(user_id="u1", submission_id="s1", created_utc=1_546_300_801,
                      kind="post", subreddit="d", title="", body="bad \ud800", source="test:1"),
    ]
    with TestPipeline() as p:
        tables = {"scores": p | "S" >> beam.Create(scores),
                  "writings": p | "W" >> beam.Create(writings)}
        tables | WriteResults(f"duckdb://{db}")
    from storage.duckdb_store import close_all

    close_all()
    con = duckdb.connect(str(db), read_only=True)
    try:
        assert sorted(r[0] for r in con.execute("select submission_id from scores").fetchall()
                      ) == ["s0", "s2"]
        assert [r[0] for r in con.execute("select submission_id from writings").fetchall()
                ] == ["s0"]
        dead = con.execute("select stage, reason, source, detail from dead_letters "
                           "order by source").fetchall()
    finally:
        con.close()
    assert [(s, r, src) for s, r, src, _ in dead] == [("sink", "rejected", "test:1"),
                                                      ("sink", "rejected", "test:1")]
    details = sorted(d for *_, d in dead)
    assert details[0].startswith("scores: ") and "NOT NULL" in details[0]
    assert details[1].startswith("writings: ")


def test_only_unavailability_is_retried():
    from transforms.sinks import duckdb_transient

    lock = duckdb.IOException('IO Error: Could not set lock on file "x.duckdb": Conflicting '
                              "lock is held in python (PID 1)")
    full = duckdb.IOException("IO Error: Could not write file: No space left on device")
    assert duckdb_transient(lock) and duckdb_transient(full)
    # A path that can never work fails at once instead of waiting out the budget.
    never = duckdb.IOException('IO Error: Could not read from file "d": Is a directory')
    assert not duckdb_transient(never)
    assert not duckdb_transient(duckdb.ConstraintException("NOT NULL constraint failed"))


def test_an_impossible_store_path_fails_without_retrying(tmp_path, caplog):
    lines = _lines(5)
    src = write_jsonl(tmp_path / "in.jsonl", lines)
    not_a_db = tmp_path / "garbage.duckdb"  # (a directory is refused before the run starts)
    not_a_db.write_bytes(b"not a database " * 512)
    with caplog.at_level(logging.WARNING, logger="transforms.sinks"), \
            pytest.raises(Exception, match="not a valid DuckDB database"):
        run(["--input", f"file://{src}", "--output", f"duckdb://{not_a_db}",
             "--raw-user-ids", "--sink-retry-seconds", "600"], show_progress=False)
    assert not [r for r in caplog.records if "retrying in" in r.getMessage()]


def test_the_cli_reports_a_failed_store_in_one_line(tmp_path, capsys):
    from pipelines.cli import main

    src = write_jsonl(tmp_path / "in.jsonl", _lines(3))
    not_a_db = tmp_path / "garbage.duckdb"
    not_a_db.write_bytes(b"not a database " * 512)
    code = main(["run", "--input", f"file://{src}", "--output", f"duckdb://{not_a_db}",
                 "--raw-user-ids", "--no-progress"])
    err = [line for line in capsys.readouterr().err.splitlines()
           if line.startswith("earlyrisk:")]
    assert code == 1
    assert len(err) == 1 and "DuckDB store" in err[0] and "not a valid DuckDB" in err[0], err

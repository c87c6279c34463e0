"""The screening pipeline on a real Kafka-protocol broker (Tansu), to catch-up.

Produces the simulated stream plus malformed messages to a two-partition
topic, runs ``--until-caught-up`` and checks the accounting: every message is
either scored or dead-lettered, the group's committed offsets are the
partitions' ends, a second run reads nothing new, new messages are picked up,
and a run that fails commits nothing.
"""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import pytest

from corpora.simulate import SIMULATED_DIR
from pipelines.screening import run
from storage.duckdb_store import connect_readonly
from tests.services import produce_round_robin, tansu
from transforms.kafka_io import committed_offsets

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TOPIC = "submissions"
N_GOOD = 400
MALFORMED = [b"{not json", b"", b'{"id": "x1"}', b"\xff\xfe binary"]


def _messages() -> list[bytes]:
    lines = []
    with gzip.open(SIMULATED_DIR / "test.jsonl.gz") as f:
        for line in f:
            if line.strip():
                lines.append(line.strip())
            if len(lines) == N_GOOD:
                break
    return lines


def _produce(bootstrap: str, payloads: list[bytes], create: bool = False) -> dict[int, int]:
    """Produce round-robin over 2 partitions; returns messages per partition."""
    return produce_round_robin(bootstrap, TOPIC, payloads, create=create, flush_timeout_s=15)


def _argv(bootstrap: str, db: Path, *extra: str) -> list[str]:
    return ["--input", f"kafka://{bootstrap}/{TOPIC}", "--until-caught-up",
            "--output", f"duckdb://{db}", "--raw-user-ids", *extra]


def _sources(db: Path) -> list[str]:
    con = connect_readonly(db)
    try:
        return [r[0] for r in con.execute(
            "SELECT source FROM scores UNION ALL SELECT source FROM dead_letters").fetchall()]
    finally:
        con.close()


def test_backfill_to_catch_up_commits_and_resumes(tmp_path: Path) -> None:
    good = _messages()
    # Malformed messages interleaved, so both partitions carry some.
    payloads = good[:100] + MALFORMED + good[100:]
    db = tmp_path / "k.duckdb"
    with tansu() as bootstrap:
        per_partition = _produce(bootstrap, payloads, create=True)
        assert committed_offsets(bootstrap, TOPIC, "earlyrisk") == {0: None, 1: None}

        first = run(_argv(bootstrap, db), show_progress=False)
        assert first.read == len(payloads)
        assert first.balanced, first.lines()
        assert first.dead_lettered >= len(MALFORMED)
        sources = _sources(db)
        # Every message is in the store exactly once, by its Kafka position.
        expected = {f"kafka:{TOPIC}:{p}:{o}" for p, n in per_partition.items()
                    for o in range(n)}
        assert sorted(sources) == sorted(expected)
        assert committed_offsets(bootstrap, TOPIC, "earlyrisk") == per_partition

        second = run(_argv(bootstrap, db), show_progress=False)
        assert second.read == 0
        assert len(_sources(db)) == len(payloads)

        # Another group starts from the beginning; the default group only sees new data.
        more = [json.dumps({**json.loads(good[0]), "id": f"new{i}"}).encode()
                for i in range(6)]
        _produce(bootstrap, more)
        third = run(_argv(bootstrap, db), show_progress=False)
        assert third.read == len(more) and third.balanced
        assert committed_offsets(bootstrap, TOPIC, "earlyrisk") == {
            p: n + 3 for p, n in per_partition.items()}
        other = run(_argv(bootstrap, tmp_path / "other.duckdb", "--kafka-group", "audit",
                          "--kafka-start", "earliest"), show_progress=False)
        assert other.read == len(payloads) + len(more)


def test_failed_run_commits_nothing(tmp_path: Path) -> None:
    not_a_db = tmp_path / "dir.duckdb"
    not_a_db.mkdir()  # the sink cannot open it: the run fails after reading
    with tansu() as bootstrap:
        _produce(bootstrap, _messages()[:20], create=True)
        with pytest.raises(Exception):  # noqa: B017 - whatever the runner wraps it in
            run(_argv(bootstrap, not_a_db), show_progress=False)
        assert committed_offsets(bootstrap, TOPIC, "earlyrisk") == {0: None, 1: None}


class _Finalizer:
    """Collects bundle-finalization callbacks, as a runner's bundle finalizer does."""

    def __init__(self) -> None:
        self.callbacks: list = []

    def register(self, callback) -> None:
        self.callbacks.append(callback)


def test_unbounded_read_commits_on_bundle_finalization() -> None:
    """The unbounded reader's commit path, driven by hand (no streaming runner here).

    Flink and Dataflow call the registered callback once the bundle's output
    is durably committed; here the test plays the runner: nothing is committed
    until it calls the callback, then exactly the offsets handed on are.
    """
    from apache_beam.io.restriction_trackers import OffsetRange, OffsetRestrictionTracker
    from apache_beam.runners.sdf_utils import RestrictionTrackerView, ThreadsafeRestrictionTracker

    from transforms.kafka_io import _ReadPartitionUnboundedFn, plan_reads

    with tansu() as bootstrap:
        _produce(bootstrap, _messages()[:30], create=True)
        reads = plan_reads(bootstrap, TOPIC, "stream", "committed", until_caught_up=False)
        assert [r.stop for r in reads] == [None, None]
        fn = _ReadPartitionUnboundedFn()
        fn.setup()
        try:
            read = reads[0]
            tracker = ThreadsafeRestrictionTracker(
                OffsetRestrictionTracker(OffsetRange(read.start, 2**62)))
            finalizer = _Finalizer()
            out = list(fn.process(read, tracker=RestrictionTrackerView(tracker), watermark=None,
                                  finalizer=finalizer))
            sources = [v.value.source for v in out]
            assert sources == [f"kafka:{TOPIC}:0:{o}" for o in range(15)]
            assert committed_offsets(bootstrap, TOPIC, "stream") == {0: None, 1: None}
            for callback in finalizer.callbacks:
                callback()
            assert committed_offsets(bootstrap, TOPIC, "stream") == {0: 15, 1: None}
            # The deferred residual resumes after the last offset handed on.
            residual, _ = tracker.deferred_status()
            assert residual.start == 15
        finally:
            fn.teardown()


def test_cli_until_caught_up(tmp_path: Path, capsys) -> None:
    from pipelines.cli import main

    with tansu() as bootstrap:
        per_partition = _produce(bootstrap, [*_messages()[:20], b"[]"], create=True)
        code = main(["run", "--input", f"kafka://{bootstrap}/{TOPIC}", "--until-caught-up",
                     "--kafka-group", "cli", "--output", f"duckdb://{tmp_path / 'c.duckdb'}",
                     "--raw-user-ids", "--no-progress"])
        out = capsys.readouterr().out
        assert code == 0, out
        assert re.search(r"submissions read\s+21\n", out)
        assert re.search(r"dead-lettered\s+1 ", out)
        assert "read = scored + dead-lettered" in out
        assert committed_offsets(bootstrap, TOPIC, "cli") == per_partition


def test_an_unreachable_broker_is_one_line_not_a_log_flood(tmp_path: Path) -> None:
    import subprocess
    import sys

    from tests.conftest import REPO

    # Nothing listens on port 1: librdkafka retries (and used to log) many times a second.
    proc = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "run", "--input",
         "kafka://127.0.0.1:1/submissions", "--output", f"duckdb://{tmp_path}/k.duckdb",
         "--until-caught-up", "--no-progress"],
        cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "broker not reachable" in lines[0], proc.stderr[-2000:]


def test_repeated_librdkafka_messages_are_logged_once_a_minute() -> None:
    import logging

    from transforms.kafka_io import _RepeatFilter

    f = _RepeatFilter(every_s=60)

    def record(msg: str) -> logging.LogRecord:
        return logging.LogRecord("confluent_kafka", logging.ERROR, __file__, 1, msg, None, None)

    fail = ("FAIL [rdkafka#consumer-1]: Connect to ipv4#127.0.0.1:1 failed "
            "(after {}ms in state CONNECT)")
    assert f.filter(record(fail.format(0)))
    assert not f.filter(record(fail.format(3)))  # the same failure, another retry
    assert f.filter(record("FAIL [rdkafka#consumer-1]: another broker down"))

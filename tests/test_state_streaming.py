"""A streaming run (Pub/Sub emulator, streaming DirectRunner) keeps its state across a restart.

Phase A runs with ``--snapshot-seconds 1``: the changed states appear in
``user_state`` while the pipeline is still running (periodic snapshots); then
Ctrl-C (a real SIGINT to this process) stops it. Phase B starts again on the
same store with snapshots effectively off (``--snapshot-seconds 3600``): the
state is resumed from the store, and only the Ctrl-C snapshot writes the new
one. The final state of each user equals a batch run over the same writings.
"""

from __future__ import annotations

import json
import math
import os
import signal
import threading
import time
from pathlib import Path

import duckdb
import pytest

from models.scorer import UserState
from pipelines.screening import run
from storage.duckdb_store import shared_connection
from tests.services import pubsub_emulator, recent_bundled_writings

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PROJECT = "demo-project"
N = 120


def _states(cur) -> dict[str, UserState]:
    return {u: UserState.from_bytes(bytes(b))
            for u, b in cur.execute("select user_id, state from user_state").fetchall()}


def _phase(db: Path, source: str, publisher, topic: str, messages: list[dict],
           scores_expected: int, snapshot_s: str, check) -> None:
    """Run the pipeline in this thread; another publishes, waits, checks, sends SIGINT."""
    failures: list[BaseException] = []

    def drive() -> None:
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:  # the store appears once the run starts
                if db.exists():
                    break
                time.sleep(0.2)
            time.sleep(3)  # let the read subscribe
            for d in messages:
                publisher.publish(topic, json.dumps(d).encode()).result(timeout=10)
            cur = shared_connection(db).cursor()
            while time.monotonic() < deadline:
                n = cur.execute("select count(*) from scores").fetchone()[0]
                if n >= scores_expected and check(cur, final=False):
                    break
                time.sleep(0.5)
            cur.close()
        except BaseException as e:  # reported by the main thread
            failures.append(e)
        finally:
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C
            time.sleep(0.5)
            publisher.publish(topic, b"wake-up").result(timeout=10)  # ends the 30 s pull

    driver = threading.Thread(target=drive, daemon=True)
    driver.start()
    # Ctrl-C ends the run with its accounting so far, marked interrupted.
    summary = run(["--input", f"pubsub://{source}", "--output", f"duckdb://{db}",
                   "--raw-user-ids", "--snapshot-seconds", snapshot_s], show_progress=False)
    assert summary.interrupted
    driver.join(30)
    if failures:
        raise failures[0]


def test_streaming_state_snapshots_and_resumes(tmp_path: Path) -> None:
    writings = recent_bundled_writings(N, time.time(), 3600)
    part_a, part_b = writings[: N // 2], writings[N // 2:]
    db = tmp_path / "stream.duckdb"
    with pubsub_emulator():
        from google.cloud import pubsub_v1

        publisher = pubsub_v1.PublisherClient()
        subscriber = pubsub_v1.SubscriberClient()
        topic = publisher.topic_path(PROJECT, "submissions")
        publisher.create_topic(name=topic)
        source = subscriber.subscription_path(PROJECT, "screening")
        subscriber.create_subscription(name=source, topic=topic)

        def periodic(cur, final: bool) -> bool:
            # While running: the periodic snapshot holds every writing of part A.
            return sum(s.n for s in _states(cur).values()) == len(part_a)

        _phase(db, source, publisher, topic, part_a, len(part_a), "1", periodic)

        def only_on_stop(cur, final: bool) -> bool:
            # No periodic snapshot in phase B: the store still holds part A only.
            assert sum(s.n for s in _states(cur).values()) == len(part_a)
            return True

        _phase(db, source, publisher, topic, part_b, N, "3600", only_on_stop)

    # After Ctrl-C: the snapshot holds both parts, each writing counted once.
    batch = tmp_path / "batch.jsonl"
    batch.write_text("".join(json.dumps(d) + "\n" for d in writings), encoding="utf-8")
    ref_db = tmp_path / "batch.duckdb"
    run(["--input", f"file://{batch}", "--output", f"duckdb://{ref_db}", "--raw-user-ids"],
        show_progress=False)
    got_con = duckdb.connect(str(db), read_only=True)
    ref_con = duckdb.connect(str(ref_db), read_only=True)
    try:
        got, ref = _states(got_con), _states(ref_con)
        scored = dict(got_con.execute(
            "select user_id, count(*) from scores group by 1").fetchall())
        dupes = got_con.execute(
            "select count(*) from dead_letters where reason = 'duplicate'").fetchone()[0]
    finally:
        got_con.close()
        ref_con.close()
    assert dupes == 0
    assert {u: s.n for u, s in got.items()} == scored == {u: s.n for u, s in ref.items()}
    for u, s in got.items():
        assert s.counts == ref[u].counts
        assert math.isclose(s.s1, ref[u].s1, rel_tol=1e-9, abs_tol=1e-9)
        assert math.isclose(s.s2, ref[u].s2, rel_tol=1e-9, abs_tol=1e-9)

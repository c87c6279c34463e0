"""The screening pipeline streaming from Google's Pub/Sub emulator.

Starts the emulator, starts the pipeline (streaming DirectRunner) the way
``earlyrisk run --input pubsub://...`` does, publishes submissions and a
malformed message, and watches score rows arrive in DuckDB while the pipeline
is still running; then cancels it. Skips with a clear message where the
emulator is not installed.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import StandardOptions
from apache_beam.runners.runner import PipelineState

from pipelines.options import ScreeningOptions
from pipelines.screening import build, pipeline_options
from storage.duckdb_store import release_connection, shared_connection
from tests.services import pubsub_emulator, recent_bundled_writings

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PROJECT = "demo-project"
N = 40


def _count(cur, sql: str) -> int:
    return cur.execute(sql).fetchone()[0]


def _cancel(result, publisher, topic: str) -> None:
    """Cancel the streaming DirectRunner without waiting out its 30 s pull.

    Its Pub/Sub read blocks in a pull with a fixed 30 s timeout and cancel
    waits for it; one more message ends the pull at once.
    """
    stopper = threading.Thread(target=result.cancel)
    stopper.start()
    time.sleep(0.2)
    publisher.publish(topic, b"wake-up").result(timeout=10)
    stopper.join(timeout=60)


# A topic source works the same way (Beam subscribes for itself) but costs
# ~50 s more here: its clean-up deletes that subscription with retries once the
# emulator is gone. URI parsing of topics is covered in test_sources.py.
@pytest.mark.parametrize("kind", ["subscriptions"])
def test_streaming_rows_arrive_while_running(tmp_path: Path, kind: str) -> None:
    with pubsub_emulator():
        from google.cloud import pubsub_v1

        publisher = pubsub_v1.PublisherClient()
        subscriber = pubsub_v1.SubscriberClient()
        topic = publisher.topic_path(PROJECT, "submissions")
        publisher.create_topic(name=topic)
        if kind == "subscriptions":
            source = subscriber.subscription_path(PROJECT, "screening")
            subscriber.create_subscription(name=source, topic=topic)
        else:
            source = topic  # Beam creates its own subscription to the topic
        db = tmp_path / "ps.duckdb"
        options = pipeline_options(["--input", f"pubsub://{source}", "--output",
                                    f"duckdb://{db}", "--raw-user-ids"])
        assert options.view_as(StandardOptions).streaming  # turned on by the scheme
        p = beam.Pipeline(options=options)
        build(p, options.view_as(ScreeningOptions))
        result = p.run()
        # Our own cursor on the store the sink writes: DuckDB allows one writing
        # process, and a cursor is safe next to the sink's connection.
        con = shared_connection(db)
        cur = con.cursor()
        try:
            subs = recent_bundled_writings(N, time.time(), 600)
            deadline = time.monotonic() + 90
            ids = []
            # Publish until the source has subscribed (a topic source subscribes
            # once the pipeline starts; earlier messages are not delivered).
            while time.monotonic() < deadline and _count(cur, "SELECT count(*) FROM scores") == 0:
                publisher.publish(topic, json.dumps(subs[0]).encode()).result(timeout=10)
                time.sleep(1.0)
            assert _count(cur, "SELECT count(*) FROM scores") >= 1
            assert result.state == PipelineState.RUNNING
            for d in subs[1:]:
                ids.append(publisher.publish(topic, json.dumps(d).encode()).result(timeout=10))
            bad_id = publisher.publish(topic, b"{not json").result(timeout=10)
            while time.monotonic() < deadline:
                done = _count(cur, "SELECT count(DISTINCT submission_id) FROM scores")
                dead = _count(cur, "SELECT count(*) FROM dead_letters WHERE reason = "
                                   "'invalid_json'")
                if done == N and dead == 1:
                    break
                time.sleep(0.5)
            assert result.state == PipelineState.RUNNING  # rows arrived while streaming
            assert _count(cur, "SELECT count(DISTINCT submission_id) FROM scores") == N
            assert cur.execute("SELECT source FROM dead_letters WHERE reason = 'invalid_json'"
                               ).fetchall() == [(f"pubsub:{bad_id}",)]
            # Source positions are message ids; event time is created_utc.
            rows = cur.execute("SELECT submission_id, source, epoch(created_utc) FROM scores"
                               ).fetchall()
            created = {d["id"]: d["created_utc"] for d in subs}
            assert all(src.startswith("pubsub:") for _, src, _ in rows)
            assert set(ids) <= {src.removeprefix("pubsub:") for _, src, _ in rows}
            assert all(abs(ts - created[sid]) < 1e-3 for sid, _, ts in rows)
        finally:
            cur.close()
            _cancel(result, publisher, topic)
            release_connection(db)
        assert result.state == PipelineState.CANCELLED

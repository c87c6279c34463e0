"""Latency benchmark: publish -> score row, through Google's Pub/Sub emulator.

Starts the emulator (part of the machine image; the benchmark is skipped with
a message where it is absent), starts the screening pipeline on the streaming
DirectRunner reading a subscription as ``earlyrisk run --input pubsub://...``
does, waits until it scores a first message, then publishes submissions at a
steady rate. A watcher thread polls the DuckDB store (a cursor on the sink's
own connection, every ``poll_s``) and stamps the first time each submission's
score row is visible; latency is that time minus the time ``publish`` was
called for it. The poll interval bounds the resolution.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from bench import corpus, services

PROJECT = "bench-project"


class _Watcher(threading.Thread):
    """Stamps the first time each submission's score row is visible."""

    def __init__(self, cursor, poll_s: float) -> None:
        super().__init__(daemon=True)
        self._cur = cursor
        self._poll = poll_s
        self.seen: dict[str, float] = {}
        self._stop_event = threading.Event()
        self._last_rowid = -1

    def run(self) -> None:
        while not self._stop_event.is_set():
            rows = self._cur.execute(
                "SELECT rowid, submission_id FROM scores WHERE rowid > ? ORDER BY rowid",
                [self._last_rowid]).fetchall()
            now = time.monotonic()
            for rowid, sid in rows:
                self.seen.setdefault(sid, now)
                self._last_rowid = max(self._last_rowid, rowid)
            self._stop_event.wait(self._poll)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=10)


def _messages(n: int, users: int) -> list[dict]:
    msgs = list(corpus.iter_messages(n + 1, users, seed=21))
    for i, m in enumerate(msgs):
        m["id"] = f"lat{i:07d}"
    return msgs


def run(quick: bool = False, rate: int | None = None, duration_s: float | None = None,
        poll_s: float = 0.05, say: Callable[[str], None] = lambda _m: None) -> dict:
    rate = rate or (100 if quick else 500)
    duration_s = duration_s or (10 if quick else 60)
    if not services.pubsub_emulator_available():
        return {"skipped": f"Pub/Sub emulator not installed at {services.PUBSUB_EMULATOR_BIN} "
                           "(Debian package google-cloud-cli-pubsub-emulator)"}
    import apache_beam as beam
    from google.cloud import pubsub_v1

    from pipelines.options import ScreeningOptions
    from pipelines.screening import build, pipeline_options
    from storage.duckdb_store import release_connection, shared_connection

    n = int(rate * duration_s)
    msgs = _messages(n, max(1, n // 10))
    with services.pubsub_emulator(), \
            tempfile.TemporaryDirectory(prefix="earlyrisk-bench-lat-") as tmp:
        publisher = pubsub_v1.PublisherClient()
        subscriber = pubsub_v1.SubscriberClient()
        topic = publisher.topic_path(PROJECT, "submissions")
        publisher.create_topic(name=topic)
        sub = subscriber.subscription_path(PROJECT, "screening")
        subscriber.create_subscription(name=sub, topic=topic)
        db = Path(tmp) / "latency.duckdb"
        options = pipeline_options(["--input", f"pubsub://{sub}", "--output", f"duckdb://{db}",
                                    "--raw-user-ids", "--no-store-text"])
        p = beam.Pipeline(options=options)
        build(p, options.view_as(ScreeningOptions))
        result = p.run()
        cur = shared_connection(db).cursor()
        watcher = _Watcher(cur, poll_s)
        watcher.start()
        published: dict[str, float] = {}
        try:
            # Warm-up: the first message is scored once the pipeline is running.
            warm = msgs[0]
            warm["created_utc"] = time.time()
            deadline = time.monotonic() + 120
            while warm["id"] not in watcher.seen:
                if time.monotonic() > deadline:
                    raise RuntimeError("the streaming pipeline scored nothing in 120 s")
                publisher.publish(topic, json.dumps(warm).encode())
                time.sleep(1.0)
            say(f"latency: publishing {n:,} messages at {rate}/s")
            futures = []
            start = time.monotonic()
            for i, m in enumerate(msgs[1:]):
                target = start + i / rate
                delay = target - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                m["created_utc"] = time.time()
                published[m["id"]] = time.monotonic()
                futures.append(publisher.publish(topic, json.dumps(m).encode()))
            publish_s = time.monotonic() - start
            for f in futures:
                f.result(timeout=60)
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and not published.keys() <= watcher.seen.keys():
                time.sleep(0.2)
        finally:
            watcher.stop()
            stopper = threading.Thread(target=result.cancel)
            stopper.start()
            # Its pull blocks up to 30 s; one more message ends it at once.
            time.sleep(0.2)
            with contextlib.suppress(Exception):
                publisher.publish(topic, b"wake-up").result(timeout=10)
            stopper.join(timeout=60)
            cur.close()
            release_connection(db)
    lat = np.array([watcher.seen[k] - t for k, t in published.items() if k in watcher.seen])
    out = {
        "rate": rate,
        "duration_s": duration_s,
        "published": len(published),
        "publish_rate_achieved": round(len(published) / publish_s, 1),
        "received": len(lat),
        "missing": len(published) - len(lat),
        "poll_s": poll_s,
        "runner": "BundleBasedDirectRunner (streaming DirectRunner)",
    }
    if len(lat):
        out.update(p50_s=round(float(np.quantile(lat, 0.5)), 3),
                   p99_s=round(float(np.quantile(lat, 0.99)), 3),
                   max_s=round(float(lat.max()), 3))
    return out

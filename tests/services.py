"""Real local services for the tests: bench/services.py, with a skip where one is absent.

The services themselves (Tansu, the Pub/Sub emulator, port helpers) live in
:mod:`bench.services`, which the benchmarks use too. Here
``pubsub_emulator()`` skips the calling test, with the reason, where the
emulator (part of the machine image) is not installed.
"""

from __future__ import annotations

import contextlib
import gzip
import json
from collections.abc import Iterator

from bench import services
from bench.services import PUBSUB_EMULATOR_BIN, tansu  # noqa: F401 - tansu for the tests

PUBSUB_EMULATOR = PUBSUB_EMULATOR_BIN  # the name the crawler tests use


@contextlib.contextmanager
def pubsub_emulator() -> Iterator[str]:
    """:func:`bench.services.pubsub_emulator`, or a skip where it is not installed."""
    if not services.pubsub_emulator_available():
        import pytest

        pytest.skip(f"Pub/Sub emulator not installed at {PUBSUB_EMULATOR_BIN} (Debian package "
                    "google-cloud-cli-pubsub-emulator); Pub/Sub tests need it")
    with services.pubsub_emulator() as host:
        yield host


def produce_round_robin(bootstrap: str, topic: str, payloads: list[bytes], *,
                        create: bool, flush_timeout_s: float) -> dict[int, int]:
    """Produce ``payloads`` round-robin over partitions 0 and 1 of ``topic``.

    With ``create``, the topic is created first (2 partitions). Returns the
    number of messages sent to each partition.
    """
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    if create:
        admin = AdminClient({"bootstrap.servers": bootstrap})  # kept alive until done
        for f in admin.create_topics([NewTopic(topic, 2, 1)]).values():
            f.result(timeout=15)
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    counts = {0: 0, 1: 0}
    for i, payload in enumerate(payloads):
        producer.produce(topic, payload, partition=i % 2)
        counts[i % 2] += 1
    assert producer.flush(flush_timeout_s) == 0
    return counts


def recent_bundled_writings(n: int, now: float, age_s: float) -> list[dict]:
    """The first ``n`` writings of the bundled test stream as a live stream: creation times
    restamped to one a second from ``now - age_s`` (expiry timers run on event time)."""
    from corpora.simulate import SIMULATED_DIR

    out: list[dict] = []
    with gzip.open(SIMULATED_DIR / "test.jsonl.gz") as f:
        for line in f:
            if line.strip():
                out.append(json.loads(line))
            if len(out) == n:
                break
    for i, d in enumerate(out):
        d["created_utc"] = round(now - age_s + i, 3)
    return out

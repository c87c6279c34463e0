"""Where crawled writings go, chosen by URI (``--output``).

* ``file://PATH`` — one wire-format message per line (JSONL), appended;
  ``earlyrisk run --input file://PATH`` reads it.
* ``kafka://HOST:PORT[,HOST:PORT...]/TOPIC`` — message key = author, so one
  user's writings share a partition and keep their order. The topic is created
  (``partitions``, replication 1) if the broker does not have it.
* ``pubsub://projects/PROJECT/topics/TOPIC`` — ordering key = author (same
  reason); honours ``PUBSUB_EMULATOR_HOST``.

Publishing is asynchronous: a delivery failure is reported to ``on_failure``
(the crawler forgets the id, so a later sighting can publish it again) and
counted; :meth:`Publisher.flush` waits for outstanding deliveries.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse

from crawler.convert import Writing

FailureCallback = Callable[[Writing, str], None]


class OutputURIError(ValueError):
    pass


class Publisher:
    """Base: counts deliveries and failures; subclasses send."""

    uri: str = ""

    def __init__(self) -> None:
        self.delivered = 0
        self.failed = 0
        self._lock = threading.Lock()
        self.on_failure: FailureCallback = lambda w, reason: None

    def _ok(self) -> None:
        with self._lock:
            self.delivered += 1

    def _fail(self, writing: Writing, reason: str) -> None:
        with self._lock:
            self.failed += 1
        self.on_failure(writing, reason)

    def publish(self, writing: Writing) -> None:
        raise NotImplementedError

    def flush(self, timeout: float = 30.0) -> None:
        """Wait for outstanding deliveries."""

    def close(self) -> None:
        self.flush()


class FilePublisher(Publisher):
    def __init__(self, path: str) -> None:
        super().__init__()
        self.uri = f"file://{path}"
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._f = open(path, "a", encoding="utf-8")  # closed in close()

    def publish(self, writing: Writing) -> None:
        self._f.write(writing.message + "\n")
        self._ok()

    def flush(self, timeout: float = 30.0) -> None:
        self._f.flush()

    def close(self) -> None:
        if not self._f.closed:
            self._f.flush()
            self._f.close()


class KafkaPublisher(Publisher):
    def __init__(self, bootstrap: str, topic: str, partitions: int = 4,
                 config: dict | None = None) -> None:
        from confluent_kafka import Producer

        super().__init__()
        self.uri = f"kafka://{bootstrap}/{topic}"
        self.topic = topic
        self._ensure_topic(bootstrap, topic, partitions)
        conf = {
            "bootstrap.servers": bootstrap,
            "client.id": "earlyrisk-crawler",
            "acks": "all",
            "linger.ms": 20,
            # Idempotent production needs broker support (InitProducerId) that
            # not every Kafka-protocol broker has; the crawler dedupes by id.
            "enable.idempotence": False,
            "message.timeout.ms": 30_000,
        }
        conf.update(config or {})
        self._producer = Producer(conf)

    @staticmethod
    def _ensure_topic(bootstrap: str, topic: str, partitions: int) -> None:
        from confluent_kafka import KafkaException
        from confluent_kafka.admin import AdminClient, NewTopic

        admin = AdminClient({"bootstrap.servers": bootstrap})
        try:
            topics = admin.list_topics(timeout=15).topics
        except KafkaException as e:
            raise ConnectionError(f"Kafka at {bootstrap} is not reachable: {e}") from None
        if topic in topics:
            return
        futures = admin.create_topics([NewTopic(topic, num_partitions=partitions,
                                                replication_factor=1)])
        try:
            futures[topic].result(timeout=15)
        except KafkaException as e:
            if "TOPIC_ALREADY_EXISTS" not in str(e):
                raise ConnectionError(f"cannot create Kafka topic {topic!r}: {e}") from None

    def publish(self, writing: Writing) -> None:
        def done(err, _msg) -> None:
            if err is None:
                self._ok()
            else:
                self._fail(writing, str(err))

        while True:
            try:
                self._producer.produce(self.topic, key=writing.author.encode(),
                                       value=writing.message.encode(), on_delivery=done)
                break
            except BufferError:  # local queue full: let deliveries drain
                self._producer.poll(0.5)
        self._producer.poll(0)

    def flush(self, timeout: float = 30.0) -> None:
        if self._producer is None:
            return
        left = self._producer.flush(timeout)
        if left:
            raise TimeoutError(f"{left} Kafka messages still undelivered after {timeout:g} s")

    def close(self) -> None:
        try:
            self.flush()
        finally:
            # Drop the client now (not at garbage collection), so it stops
            # reconnecting to a broker that may be gone.
            self._producer = None


class PubSubPublisher(Publisher):
    def __init__(self, topic_path: str) -> None:
        from google.cloud import pubsub_v1

        super().__init__()
        self.uri = f"pubsub://{topic_path}"
        self.topic_path = topic_path
        self._client = pubsub_v1.PublisherClient(
            publisher_options=pubsub_v1.types.PublisherOptions(enable_message_ordering=True))
        self._pending: set = set()

    def publish(self, writing: Writing) -> None:
        future = self._client.publish(self.topic_path, writing.message.encode(),
                                      ordering_key=writing.author, id=writing.id)
        with self._lock:
            self._pending.add(future)

        def done(f) -> None:
            with self._lock:
                self._pending.discard(f)
            try:
                f.result()
            except Exception as e:  # any publish error: report, never drop silently
                self._client.resume_publish(self.topic_path, writing.author)
                self._fail(writing, str(e))
            else:
                self._ok()

        future.add_done_callback(done)

    def flush(self, timeout: float = 30.0) -> None:
        from concurrent.futures import wait

        with self._lock:
            pending = list(self._pending)
        _, not_done = wait(pending, timeout=timeout)
        if not_done:
            raise TimeoutError(f"{len(not_done)} Pub/Sub messages undelivered after "
                               f"{timeout:g} s")


_PUBSUB = re.compile(r"^projects/[^/]+/topics/[^/]+$")


def open_publisher(uri: str, partitions: int = 4) -> Publisher:
    """A publisher for ``uri``; OutputURIError if the URI is malformed."""
    parsed = urlparse(uri)
    if parsed.scheme in ("", "file"):
        path = (parsed.netloc + parsed.path) if parsed.scheme == "file" else uri
        if not path:
            raise OutputURIError(f"{uri!r}: no path")
        if path.endswith(".gz"):
            raise OutputURIError(f"{uri!r}: the crawler appends plain JSONL, not .gz")
        return FilePublisher(path)
    if parsed.scheme == "kafka":
        topic = parsed.path.strip("/")
        if not parsed.netloc or not topic or "/" in topic:
            raise OutputURIError(f"{uri!r}: expected kafka://HOST:PORT/TOPIC")
        return KafkaPublisher(parsed.netloc, topic, partitions)
    if parsed.scheme == "pubsub":
        path = (parsed.netloc + parsed.path).strip("/")
        if not _PUBSUB.match(path):
            raise OutputURIError(f"{uri!r}: expected pubsub://projects/PROJECT/topics/TOPIC")
        return PubSubPublisher(path)
    raise OutputURIError(f"{uri!r}: unsupported output scheme {parsed.scheme!r} "
                         "(supported: file://, kafka://, pubsub://)")

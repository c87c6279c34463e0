"""``earlyrisk publish``: feed a live source from a JSONL file.

Reads wire-format submissions (one JSON object per line; ``.gz`` and globs work) and
sends each line, unchanged, as one message to

* ``kafka://HOST:PORT[,HOST:PORT]/TOPIC``: message key = the submission's author, so
  that one user's writings land in one partition and keep their order (the producer
  keeps one request in flight, so retries cannot reorder them either);
* ``pubsub://projects/P/topics/T``: ordering key = the author (same reason).

``--create`` creates the topic if it is missing (Kafka: ``--partitions``, replication 1);
``--subscription S`` makes sure subscription S (message ordering on) exists on a Pub/Sub
topic *before* the first message is published, since a subscription receives only what is
published after it exists. A line that is not a JSON object with an author is sent without
a key (the pipeline dead-letters it, with the reason): nothing is dropped.

The run ends with its accounting, ``read = published + failed`` (also after Ctrl-C).
"""

from __future__ import annotations

import glob
import gzip
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from pipelines import progress

DEFAULT_PARTITIONS = 2
_PUBSUB_TOPIC = re.compile(r"^projects/([^/]+)/topics/([^/]+)$")
_SUBSCRIPTION = re.compile(r"^[A-Za-z][-A-Za-z0-9_.~+%]{2,254}$")

# librdkafka reports a failing connection itself, several times a second; the
# publisher reports failures in one line of its own instead.
_KAFKA_LOG = logging.getLogger("earlyrisk.publish.kafka")
_KAFKA_LOG.setLevel(logging.CRITICAL)
_KAFKA_LOG.propagate = False


class PublishError(Exception):
    """A one-line reason the publish cannot start (bad target, broker down, no topic)."""


@dataclass
class Accounting:
    read: int = 0
    published: int = 0
    failed: int = 0
    unkeyed: int = 0
    blank: int = 0
    elapsed_s: float = 0.0
    first_failure: str | None = None
    target: str = ""
    interrupted: bool = False

    @property
    def balanced(self) -> bool:
        return self.read == self.published + self.failed

    def lines(self) -> list[str]:
        rate = self.published / self.elapsed_s if self.elapsed_s > 0 else 0.0
        out = [
            f"messages read        {self.read:>10,}",
            f"published            {self.published:>10,}",
            f"failed               {self.failed:>10,}"
            + (f"  (first: {self.first_failure})" if self.first_failure else ""),
            f"sent without key     {self.unkeyed:>10,}  (not a JSON object with an author)",
            f"blank lines skipped  {self.blank:>10,}",
            f"elapsed              {self.elapsed_s:>10.2f} s",
            f"throughput           {rate:>10,.0f} messages/s",
            "accounting           "
            + ("read = published + failed" if self.balanced
               else "MISMATCH: read != published + failed"),
            f"to                   {self.target}",
        ]
        if self.interrupted:
            out.append("stopped              interrupted (Ctrl-C): the rest was not sent")
        return out


# -- input ---------------------------------------------------------------------
def input_files(uri: str) -> list[Path]:
    """The files ``file://PATH`` (or a bare path, or a glob) names; PublishError if none."""
    parsed = urlparse(uri)
    if parsed.scheme not in ("", "file"):
        raise PublishError(f"--input: {uri!r}: expected file://PATH.jsonl[.gz] (a glob works)")
    path = (parsed.netloc + parsed.path) if parsed.scheme == "file" else uri
    if any(ch in path for ch in "*?["):
        files = sorted(Path(p) for p in glob.glob(path) if Path(p).is_file())
        if not files:
            raise PublishError(f"--input: no file matches {path}")
        return files
    p = Path(path)
    if p.is_dir():
        raise PublishError(f"--input: {path} is a directory; give a file, or a glob such as "
                           f"file://{path.rstrip('/')}/*.jsonl")
    if not p.is_file():
        raise PublishError(f"--input: {path} does not exist")
    return [p]


def read_lines(files: list[Path]) -> Iterator[bytes]:
    for f in files:
        opener = gzip.open if f.name.endswith(".gz") else open
        with opener(f, "rb") as fh:
            yield from fh


def author_of(line: bytes) -> str | None:
    try:
        obj = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        return None
    author = obj.get("author") if isinstance(obj, dict) else None
    return author if isinstance(author, str) and author else None


# -- targets -------------------------------------------------------------------
Done = Callable[[str | None], None]  # called with None on delivery, else the reason


class KafkaTarget:
    def __init__(self, bootstrap: str, topic: str, create: bool, partitions: int) -> None:
        from confluent_kafka import KafkaException, Producer
        from confluent_kafka.admin import AdminClient, NewTopic

        self.uri = f"kafka://{bootstrap}/{topic}"
        self.topic = topic
        admin = AdminClient({"bootstrap.servers": bootstrap, "logger": _KAFKA_LOG})
        try:
            topics = admin.list_topics(timeout=10).topics
        except KafkaException as e:
            raise PublishError(f"Kafka at {bootstrap} is not reachable ({e})") from None
        if topic not in topics:
            if not create:
                raise PublishError(f"{self.uri}: topic does not exist (add --create to create "
                                   "it)")
            future = admin.create_topics([NewTopic(topic, num_partitions=partitions,
                                                   replication_factor=1)])[topic]
            try:
                future.result(timeout=15)
            except KafkaException as e:
                if "TOPIC_ALREADY_EXISTS" not in str(e):
                    raise PublishError(f"{self.uri}: cannot create the topic: {e}") from None
            print(f"created Kafka topic {topic!r} ({partitions} partitions)", flush=True)
        self._producer = Producer({
            "bootstrap.servers": bootstrap,
            "client.id": "earlyrisk-publish",
            "acks": "all",
            "linger.ms": 20,
            # One request in flight per connection: a retried batch cannot overtake the
            # next one, so each author's messages stay in order within their partition.
            # (Idempotent production would allow more, but not every broker supports it.)
            "max.in.flight.requests.per.connection": 1,
            "enable.idempotence": False,
            "message.timeout.ms": 30_000,
            "logger": _KAFKA_LOG,
        })

    def send(self, value: bytes, key: str | None, done: Done) -> None:
        def on_delivery(err, _msg) -> None:
            done(None if err is None else str(err))

        while True:
            try:
                self._producer.produce(self.topic, value=value,
                                       key=key.encode() if key else None,
                                       on_delivery=on_delivery)
                break
            except BufferError:  # local queue full: let deliveries drain
                self._producer.poll(0.2)
        self._producer.poll(0)

    def close(self, timeout: float = 60.0) -> int:
        """Wait for deliveries; the number still undelivered."""
        return self._producer.flush(timeout)


class PubSubTarget:
    def __init__(self, topic_path: str, create: bool, subscription: str | None) -> None:
        from google.api_core import exceptions as gexc
        from google.auth.exceptions import DefaultCredentialsError
        from google.cloud import pubsub_v1

        m = _PUBSUB_TOPIC.match(topic_path)
        assert m is not None
        project = m.group(1)
        self.uri = f"pubsub://{topic_path}"
        self.topic_path = topic_path
        try:
            self._client = pubsub_v1.PublisherClient(
                publisher_options=pubsub_v1.types.PublisherOptions(
                    enable_message_ordering=True))
            try:
                self._client.get_topic(topic=topic_path, retry=None, timeout=15)
            except gexc.NotFound:
                if not create:
                    raise PublishError(f"{self.uri}: topic does not exist (add --create to "
                                       "create it)") from None
                self._client.create_topic(name=topic_path, retry=None, timeout=15)
                print(f"created Pub/Sub topic {topic_path}", flush=True)
            if subscription:
                self._ensure_subscription(f"projects/{project}/subscriptions/{subscription}",
                                          create)
        except DefaultCredentialsError:
            raise PublishError(
                "no Google Cloud credentials (run 'gcloud auth application-default login', "
                "or export PUBSUB_EMULATOR_HOST for the local emulator)") from None
        except gexc.GoogleAPICallError as e:
            reason = str(e).splitlines()[0]
            raise PublishError(f"{self.uri}: {reason}") from None
        self._pending: set = set()
        self._lock = threading.Lock()

    def _ensure_subscription(self, path: str, create: bool) -> None:
        from google.api_core import exceptions as gexc
        from google.cloud import pubsub_v1

        with pubsub_v1.SubscriberClient() as sub:
            try:
                existing = sub.get_subscription(subscription=path, retry=None, timeout=15)
            except gexc.NotFound:
                if not create:
                    raise PublishError(f"subscription {path} does not exist (add --create to "
                                       "create it)") from None
                sub.create_subscription(request={
                    "name": path, "topic": self.topic_path,
                    "enable_message_ordering": True, "ack_deadline_seconds": 60,
                }, retry=None, timeout=15)
                print(f"created Pub/Sub subscription {path} (message ordering on)", flush=True)
                return
        if existing.topic != self.topic_path:
            raise PublishError(f"subscription {path} belongs to {existing.topic}, not "
                               f"{self.topic_path}")

    def send(self, value: bytes, key: str | None, done: Done) -> None:
        future = self._client.publish(self.topic_path, value, ordering_key=key or "")
        with self._lock:
            self._pending.add(future)

        def on_done(f) -> None:
            with self._lock:
                self._pending.discard(f)
            try:
                f.result()
            except Exception as e:  # any publish error: counted and reported, never dropped
                if key:
                    self._client.resume_publish(self.topic_path, key)
                done(str(e).splitlines()[0] if str(e) else type(e).__name__)
            else:
                done(None)

        future.add_done_callback(on_done)

    def close(self, timeout: float = 60.0) -> int:
        from concurrent.futures import wait

        with self._lock:
            pending = list(self._pending)
        _, not_done = wait(pending, timeout=timeout)
        self._client.stop()
        return len(not_done)


def open_target(uri: str, create: bool = False, partitions: int = DEFAULT_PARTITIONS,
                subscription: str | None = None) -> KafkaTarget | PubSubTarget:
    """The target ``uri`` names; PublishError with a one-line reason if it cannot be used."""
    parsed = urlparse(uri)
    if subscription is not None and parsed.scheme != "pubsub":
        raise PublishError("--subscription is for a pubsub:// target")
    if parsed.scheme == "kafka":
        topic = parsed.path.strip("/")
        if not parsed.netloc or not topic or "/" in topic:
            raise PublishError(f"--to: {uri!r}: expected kafka://HOST:PORT/TOPIC")
        if partitions < 1:
            raise PublishError("--partitions must be at least 1")
        return KafkaTarget(parsed.netloc, topic, create, partitions)
    if parsed.scheme == "pubsub":
        path = (parsed.netloc + parsed.path).strip("/")
        if not _PUBSUB_TOPIC.match(path):
            raise PublishError(f"--to: {uri!r}: expected pubsub://projects/PROJECT/topics/TOPIC "
                               "(publish to a topic; --subscription names the subscription)")
        if subscription is not None and not _SUBSCRIPTION.match(subscription):
            raise PublishError(f"--subscription: {subscription!r} is not a valid subscription "
                               "name (a bare name such as 'screening', 3-255 characters)")
        return PubSubTarget(path, create, subscription)
    raise PublishError(f"--to: {uri!r}: expected kafka://HOST:PORT/TOPIC or "
                       "pubsub://projects/PROJECT/topics/TOPIC")


# -- the run -------------------------------------------------------------------
def publish(files: list[Path], target: KafkaTarget | PubSubTarget,
            show_progress: bool | None = None) -> Accounting:
    """Send every non-blank line of ``files`` to ``target``; the accounting."""
    keyed = "key" if isinstance(target, KafkaTarget) else "ordering key"
    acc = Accounting(target=f"{target.uri} ({keyed} = author)")
    lock = threading.Lock()

    def done(reason: str | None) -> None:
        with lock:
            if reason is None:
                acc.published += 1
                progress.tick("published")
            else:
                acc.failed += 1
                progress.tick("failed")
                acc.first_failure = acc.first_failure or reason

    start = time.monotonic()
    with progress.ProgressLine(("read", "published", "failed"), "published",
                               enabled=show_progress):
        try:
            for line in read_lines(files):
                value = line.strip()
                if not value:
                    acc.blank += 1
                    continue
                key = author_of(value)
                acc.unkeyed += key is None
                acc.read += 1
                progress.tick("read")
                target.send(value, key, done)
        except KeyboardInterrupt:
            acc.interrupted = True
        finally:
            left = target.close()
    acc.elapsed_s = time.monotonic() - start
    if left:
        with lock:
            acc.failed += left
            acc.first_failure = acc.first_failure or f"{left} still undelivered at the end"
    return acc

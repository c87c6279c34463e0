"""Kafka source: a splittable DoFn over confluent-kafka, one element per partition.

``ReadFromKafkaTopic`` plans the read at pipeline construction: it looks up the
topic's partitions, resolves each one's start offset (``earliest``, ``latest``
or the consumer group's ``committed`` offset, falling back to earliest) and,
with ``until_caught_up``, the offset where the partition ends *now*. Each
partition then becomes one restriction ``[start, stop)`` that a splittable
DoFn reads with a manually assigned consumer (no group membership, so no
rebalance and no slow group join).

Two modes, and what each guarantees about committed offsets:

* **until caught up** (bounded): the read stops at the planned ``stop``
  offsets, so a batch runner (the DirectRunner here) finishes. Offsets are
  committed by :meth:`ReadFromKafkaTopic.commit_planned` *after the whole
  pipeline has finished successfully*, i.e. after every sink bundle has
  written. A failed run commits nothing; the next run re-reads the same
  messages and the idempotent sinks keep one row per record. With a state
  store, ``earlyrisk run`` plans the reads itself, cuts them into slices
  (:func:`slice_reads`), keeps each slice's stop offsets in the store in the
  same transaction as the per-user state, and starts from those
  (``plan_reads(stored=...)``) rather than from the broker's commit, which
  follows (see :mod:`storage.state_store`).
* **unbounded** (Flink, Dataflow): offsets are committed through bundle
  finalization, the Beam mechanism a runner calls once it has durably
  committed a bundle's output (Dataflow's shuffle, a Flink checkpoint). This
  is *not* "after the sink wrote": from that point the runner, not Kafka, is
  responsible for the messages, and a job restored from its own
  checkpoint/snapshot loses nothing. A job started afresh (no
  savepoint/update) with ``--kafka-start committed`` may skip messages that
  an earlier, cancelled job had read but not yet written.

The DirectRunner cannot run the unbounded mode (its batch runner never hands an
unbounded read's output on), so the options validation rejects that
combination with a clear message.

Tansu, the local broker, reports a partition's high watermark as one past the
first offset of its last record batch, not of its last record; the planner
therefore probes forward from the reported value to find where the partition
really ends (on Apache Kafka the probe finds nothing and costs one fetch).
"""

from __future__ import annotations

import dataclasses
import logging
import re
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlparse

import apache_beam as beam
from apache_beam.io.restriction_trackers import OffsetRange, OffsetRestrictionTracker
from apache_beam.io.watermark_estimators import MonotonicWatermarkEstimator
from apache_beam.metrics import Metrics
from apache_beam.transforms.core import RestrictionProvider
from apache_beam.transforms.window import TimestampedValue
from apache_beam.utils.timestamp import Duration, Timestamp

from pipelines import progress
from transforms.sources import RawMessage, SourceURIError

log = logging.getLogger(__name__)

START_POSITIONS = ("earliest", "latest", "committed")
DEFAULT_GROUP = "earlyrisk"
# Kafka's "no committed offset" sentinel (OFFSET_INVALID in librdkafka).
_NO_OFFSET = -1001
_UNBOUNDED_STOP = sys.maxsize
_BATCH = 500
# librdkafka's consume() waits the whole timeout unless the batch fills up, so
# keep it short: an idle partition costs a few cheap polls, not a stalled batch.
_POLL_S = 0.1
# A bounded read that sees nothing for this long while offsets it planned to
# read are still missing fails instead of waiting forever (e.g. retention
# deleted them, or the broker restarted with memory storage).
_STALL_S = 60.0


class KafkaError(RuntimeError):
    """The broker or topic is not usable; the message says why."""


def parse_kafka_uri(uri: str) -> tuple[str, str]:
    """``kafka://HOST:PORT[,HOST:PORT...]/TOPIC`` -> (bootstrap servers, topic)."""
    parsed = urlparse(uri)
    topic = parsed.path.lstrip("/")
    if parsed.scheme != "kafka" or not parsed.netloc:
        raise SourceURIError(f"{uri!r}: expected kafka://HOST:PORT/TOPIC")
    if not topic or "/" in topic:
        raise SourceURIError(f"{uri!r}: expected exactly one topic after the broker address")
    for server in parsed.netloc.split(","):
        host, _, port = server.rpartition(":")
        if not host or not port.isdigit():
            raise SourceURIError(f"{uri!r}: broker {server!r} is not HOST:PORT")
    return parsed.netloc, topic


@dataclass(frozen=True)
class PartitionRead:
    """One partition's planned read: offsets ``[start, stop)``; stop None = unbounded."""

    bootstrap: str
    topic: str
    partition: int
    group: str
    start: int
    stop: int | None


class _RepeatFilter(logging.Filter):
    """Log each distinct librdkafka message at most once per ``every_s``.

    librdkafka logs a failing connection again on every reconnect attempt
    (several per second): a broker that is down would flood the log. The
    varying part ("after 3ms in state CONNECT") is ignored when comparing.
    """

    _VARYING = re.compile(r"\(after \d+ms[^)]*\)|\d+ms")

    def __init__(self, every_s: float = 60.0) -> None:
        super().__init__()
        self._every = every_s
        self._last: dict[str, float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = self._VARYING.sub("", record.getMessage())
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self._every:
            return False
        if len(self._last) > 1000:
            self._last.clear()
        self._last[key] = now
        return True


_KAFKA_LOG = logging.getLogger("confluent_kafka")
_KAFKA_LOG.addFilter(_RepeatFilter())
# Pre-flight calls (topic check, planning reads) report failure themselves, in
# one line: librdkafka's own retries there are not worth a log line.
_PREFLIGHT_LOG = logging.getLogger("earlyrisk.kafka.preflight")
_PREFLIGHT_LOG.setLevel(logging.CRITICAL)
_PREFLIGHT_LOG.propagate = False


def _consumer_config(bootstrap: str, group: str, quiet: bool = False) -> dict:
    return {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "enable.partition.eof": False,
        "socket.timeout.ms": 10_000,
        "logger": _PREFLIGHT_LOG if quiet else _KAFKA_LOG,
    }


def _consumer(bootstrap: str, group: str, quiet: bool = False):
    from confluent_kafka import Consumer

    return Consumer(_consumer_config(bootstrap, group, quiet))


def _true_end(consumer, topic: str, partitions: list[int], reported: dict[int, int]
              ) -> dict[int, int]:
    """Where each partition ends: the reported high watermark, or past the last record seen.

    Reads forward from the reported value until a fetch comes back empty; only
    offsets are kept (see the module docstring on Tansu).
    """
    from confluent_kafka import TopicPartition

    end = dict(reported)
    consumer.assign([TopicPartition(topic, p, max(reported[p] - 1, 0)) for p in partitions])
    try:
        while True:
            msgs = consumer.consume(10_000, timeout=0.5)
            if not msgs:
                return end
            for m in msgs:
                if m.error() is None:
                    end[m.partition()] = max(end[m.partition()], m.offset() + 1)
    finally:
        consumer.unassign()


def check_topic(bootstrap: str, topic: str, timeout_s: float = 10.0) -> int:
    """Number of partitions of ``topic``; KafkaError if the broker or topic is missing."""
    consumer = _consumer(bootstrap, DEFAULT_GROUP, quiet=True)
    try:
        return len(_partitions(consumer, bootstrap, topic, timeout_s))
    finally:
        consumer.close()


def _partitions(consumer, bootstrap: str, topic: str, timeout_s: float) -> list[int]:
    """The topic's partition ids, sorted; KafkaError if the broker or topic is missing."""
    from confluent_kafka import KafkaException

    try:
        meta = consumer.list_topics(topic, timeout=timeout_s)
    except KafkaException as e:
        raise KafkaError(f"kafka://{bootstrap}: broker not reachable ({e})") from None
    info = meta.topics.get(topic)
    if info is None or info.error is not None or not info.partitions:
        raise KafkaError(f"kafka://{bootstrap}/{topic}: topic does not exist")
    return sorted(info.partitions)


def plan_reads(bootstrap: str, topic: str, group: str = DEFAULT_GROUP,
               start: str = "committed", until_caught_up: bool = False,
               timeout_s: float = 15.0,
               stored: dict[int, int] | None = None) -> list[PartitionRead]:
    """One :class:`PartitionRead` per partition of ``topic``, as of now.

    ``stored``: with ``start="committed"``, offsets kept next to the per-user
    state in the store (see :mod:`storage.state_store`); they win over the
    group's broker commit, which may lag them after a run killed in between.
    """
    from confluent_kafka import TopicPartition

    if start not in START_POSITIONS:
        raise ValueError(f"start must be one of {START_POSITIONS}, got {start!r}")
    consumer = _consumer(bootstrap, group, quiet=True)
    try:
        partitions = _partitions(consumer, bootstrap, topic, timeout_s)
        low: dict[int, int] = {}
        high: dict[int, int] = {}
        for p in partitions:
            low[p], high[p] = consumer.get_watermark_offsets(
                TopicPartition(topic, p), timeout=timeout_s, cached=False)
        if until_caught_up or start == "latest":
            high = _true_end(consumer, topic, partitions, high)
        committed = {}
        if start == "committed":
            for tp in consumer.committed([TopicPartition(topic, p) for p in partitions],
                                         timeout=timeout_s):
                committed[tp.partition] = tp.offset
    finally:
        consumer.close()
    reads = []
    for p in partitions:
        if start == "earliest":
            first = low[p]
        elif start == "latest":
            first = high[p]
        else:
            first = committed.get(p, _NO_OFFSET)
            if stored and p in stored:
                first = stored[p]
            first = low[p] if first < 0 else max(first, low[p])
        stop = max(high[p], first) if until_caught_up else None
        reads.append(PartitionRead(bootstrap, topic, p, group, first, stop))
    return reads


def slice_reads(reads: list[PartitionRead], size: int) -> list[list[PartitionRead]]:
    """Bounded reads cut into consecutive slices of about ``size`` messages in all."""
    if size < 1:
        raise ValueError("slice size must be at least 1")
    per = max(1, -(-size // max(1, len(reads))))
    slices: list[list[PartitionRead]] = []
    pos = {r.partition: r.start for r in reads}
    while True:
        cut = []
        for r in reads:
            start = pos[r.partition]
            stop = min(r.stop, start + per)
            cut.append(dataclasses.replace(r, start=start, stop=stop))
            pos[r.partition] = stop
        slices.append(cut)
        if all(pos[r.partition] >= r.stop for r in reads):
            return slices


def commit_offsets(reads: list[PartitionRead], timeout_s: float = 15.0) -> None:
    """Commit each read's stop offset for its group (the bounded mode's final step)."""
    from confluent_kafka import TopicPartition

    by_group: dict[tuple[str, str], list[PartitionRead]] = {}
    for r in reads:
        if r.stop is None:
            raise ValueError("commit_offsets needs bounded reads")
        by_group.setdefault((r.bootstrap, r.group), []).append(r)
    for (bootstrap, group), rs in by_group.items():
        consumer = _consumer(bootstrap, group)
        try:
            consumer.commit(offsets=[TopicPartition(r.topic, r.partition, r.stop) for r in rs],
                            asynchronous=False)
        finally:
            consumer.close()


def committed_offsets(bootstrap: str, topic: str, group: str,
                      timeout_s: float = 15.0) -> dict[int, int | None]:
    """The group's committed offset per partition (None where there is none)."""
    from confluent_kafka import TopicPartition

    consumer = _consumer(bootstrap, group)
    try:
        meta = consumer.list_topics(topic, timeout=timeout_s)
        parts = sorted(meta.topics[topic].partitions)
        tps = consumer.committed([TopicPartition(topic, p) for p in parts], timeout=timeout_s)
        return {tp.partition: (tp.offset if tp.offset >= 0 else None) for tp in tps}
    finally:
        consumer.close()


class _PartitionRestrictions(RestrictionProvider):
    def initial_restriction(self, read: PartitionRead) -> OffsetRange:
        return OffsetRange(read.start, _UNBOUNDED_STOP if read.stop is None else read.stop)

    def create_tracker(self, restriction: OffsetRange) -> OffsetRestrictionTracker:
        return OffsetRestrictionTracker(restriction)

    def restriction_size(self, read: PartitionRead, restriction: OffsetRange) -> int:
        return restriction.size()

    def split(self, read: PartitionRead, restriction: OffsetRange):
        # Parallelism comes from partitions; runners may still split dynamically.
        yield restriction

    def truncate(self, read: PartitionRead, restriction: OffsetRange):
        # On drain an unbounded partition read stops where it is; a bounded one finishes.
        if read.stop is not None:
            return restriction
        return None


class _ReadPartitionFn(beam.DoFn):
    """Reads the offsets of one partition that its restriction covers.

    Positions are claimed one offset at a time, so a checkpoint or split
    resumes exactly after the last message handed on.
    """

    def __init__(self) -> None:
        self._read = Metrics.counter("earlyrisk", "read")
        self._consumers: dict[tuple, object] = {}

    def _consumer_for(self, read: PartitionRead, position: int):
        from confluent_kafka import TopicPartition

        key = (read.bootstrap, read.group, read.topic, read.partition)
        consumer = self._consumers.get(key)
        tp = TopicPartition(read.topic, read.partition, position)
        if consumer is None:
            consumer = self._consumers[key] = _consumer(read.bootstrap, read.group)
            consumer.assign([tp])
        else:
            current = consumer.position([TopicPartition(read.topic, read.partition)])[0].offset
            if current != position:
                consumer.seek(tp)
        return consumer

    def _messages(self, read: PartitionRead, tracker: OffsetRestrictionTracker,
                  bounded: bool) -> Iterator:
        """Yields (offset, message) claimed from the tracker, until done or idle."""
        from confluent_kafka import KafkaException, TopicPartition

        restriction = tracker.current_restriction()
        if bounded and restriction.start >= restriction.stop:
            return  # nothing new in this partition
        consumer = self._consumer_for(read, restriction.start)
        idle_since = time.monotonic()
        while True:
            msgs = consumer.consume(_BATCH, timeout=_POLL_S)
            if not msgs:
                if not bounded:
                    return  # caller defers the rest
                position = consumer.position(
                    [TopicPartition(read.topic, read.partition)])[0].offset
                # Negative: nothing fetched yet, the consumer does not know its position.
                if position >= tracker.current_restriction().stop:
                    tracker.try_claim(restriction.stop)  # gaps at the end: mark done
                    return
                if time.monotonic() - idle_since > _STALL_S:
                    raise KafkaError(
                        f"{read.topic}[{read.partition}]: no message for {_STALL_S:.0f} s "
                        f"at offset {position}, planned to read up to "
                        f"{tracker.current_restriction().stop}")
                continue
            idle_since = time.monotonic()
            for m in msgs:
                if m.error() is not None:
                    raise KafkaException(m.error())
                if not tracker.try_claim(m.offset()):
                    return
                yield m.offset(), m
                if bounded and m.offset() + 1 >= tracker.current_restriction().stop:
                    return  # caught up: no need to wait for a fetch that finds nothing
            if not bounded:
                return  # one batch per call: lets the runner checkpoint and finalize

    def _emit(self, read: PartitionRead, offset: int, m) -> TimestampedValue:
        self._read.inc()
        progress.tick("read")
        _, ts_ms = m.timestamp()
        ts = Timestamp(micros=ts_ms * 1000) if ts_ms and ts_ms > 0 else Timestamp.now()
        raw = RawMessage(f"kafka:{read.topic}:{read.partition}:{offset}", m.value() or b"")
        return TimestampedValue(raw, ts)

    def process(self, read: PartitionRead,
                tracker=beam.DoFn.RestrictionParam(_PartitionRestrictions())) -> Iterator:
        for offset, m in self._messages(read, tracker, bounded=True):
            yield self._emit(read, offset, m)

    def teardown(self) -> None:
        for consumer in self._consumers.values():
            consumer.close()
        self._consumers.clear()


class _ReadPartitionUnboundedFn(_ReadPartitionFn):
    """The unbounded variant: defers when idle, commits offsets on bundle finalization."""

    @beam.DoFn.unbounded_per_element()
    def process(self, read: PartitionRead,
                tracker=beam.DoFn.RestrictionParam(_PartitionRestrictions()),
                watermark=beam.DoFn.WatermarkEstimatorParam(
                    MonotonicWatermarkEstimator.default_provider()),
                finalizer=beam.DoFn.BundleFinalizerParam) -> Iterator:
        last = None
        for offset, m in self._messages(read, tracker, bounded=False):
            last = offset
            yield self._emit(read, offset, m)
        if last is not None:
            finalizer.register(self._committer(read, last + 1))
        tracker.defer_remainder(Duration.of(0 if last is not None else 1))

    def _committer(self, read: PartitionRead, offset: int):
        # A separate, unassigned consumer commits: finalization may run on
        # another thread while the reading consumer has moved on.
        def commit() -> None:
            from confluent_kafka import TopicPartition

            key = ("commit", read.bootstrap, read.group, "")
            with self._commit_lock:
                committer = self._consumers.get(key)
                if committer is None:
                    committer = self._consumers[key] = _consumer(read.bootstrap, read.group)
                committer.commit(offsets=[TopicPartition(read.topic, read.partition, offset)],
                                 asynchronous=False)
        return commit

    def setup(self) -> None:
        self._commit_lock = threading.Lock()


def _planned(_impulse: bytes, reads: list[PartitionRead]) -> list[PartitionRead]:
    return reads


class ReadFromKafkaTopic(beam.PTransform):
    """Raw messages of one Kafka topic, read by a splittable DoFn (see module docstring)."""

    def __init__(self, bootstrap: str, topic: str, group: str = DEFAULT_GROUP,
                 start: str = "committed", until_caught_up: bool = False,
                 reads: list[PartitionRead] | None = None) -> None:
        super().__init__()
        self._planned_reads = reads
        self._bootstrap = bootstrap
        self._topic = topic
        self._group = group
        self._start = start
        self._until_caught_up = until_caught_up
        self.reads: list[PartitionRead] = []

    def expand(self, pbegin):
        if self._planned_reads is not None:  # planned by the caller (a slice of a run)
            self.reads = list(self._planned_reads)
        else:
            self.reads = plan_reads(self._bootstrap, self._topic, self._group, self._start,
                                    self._until_caught_up)
        log.info("kafka reads planned: %s", self.reads)
        fn = _ReadPartitionFn() if self._until_caught_up else _ReadPartitionUnboundedFn()
        return (
            pbegin
            | "Start" >> beam.Impulse()
            | "Partitions" >> beam.FlatMap(_planned, self.reads).with_output_types(PartitionRead)
            # Spread partitions over workers before the (long-running) reads.
            | "Distribute" >> beam.Reshuffle()
            | "ReadPartitions" >> beam.ParDo(fn).with_output_types(RawMessage)
        )

    def commit_planned(self) -> None:
        """After a successful bounded run: commit where each partition's read stopped."""
        if self._until_caught_up and self.reads:
            commit_offsets(self.reads)


class ReadFromKafkaXlang(beam.PTransform):
    """Beam's cross-language ``ReadFromKafka`` (Java), for clusters with expansion.

    Imported lazily: the expansion service is a Java jar downloaded at run
    time, which cannot happen offline. Offsets are committed on bundle
    finalization (``commit_offset_in_finalize``); ``--until-caught-up`` is not
    available on this path.
    """

    def __init__(self, bootstrap: str, topic: str, group: str = DEFAULT_GROUP,
                 start: str = "committed") -> None:
        super().__init__()
        self._config = {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "auto.offset.reset": "latest" if start == "latest" else "earliest",
        }
        self._topic = topic

    def expand(self, pbegin):
        from apache_beam.io.kafka import ReadFromKafka

        return (
            pbegin
            | "ReadFromKafka" >> ReadFromKafka(
                consumer_config=self._config, topics=[self._topic], with_metadata=True,
                commit_offset_in_finalize=True)
            | "ToRawMessage" >> beam.Map(
                lambda r: RawMessage(f"kafka:{r.topic}:{r.partition}:{r.offset}",
                                     bytes(r.value or b""))).with_output_types(RawMessage)
        )

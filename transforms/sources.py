"""Sources: where raw submission messages come from, chosen by URI.

Every source yields :class:`RawMessage` (a payload and its position), so the
parser and the dead-letter table do not care where a message came from.

Schemes:

* ``file://PATH`` (JSONL, optionally ``.gz``; a bare path works too);
* ``kafka://HOST:PORT/TOPIC`` (see :mod:`transforms.kafka_io`); source
  positions read ``kafka:TOPIC:PARTITION:OFFSET``;
* ``pubsub://projects/P/subscriptions/S`` or ``pubsub://projects/P/topics/T``
  (Beam's ReadFromPubSub, streaming only; reading a topic creates a temporary
  subscription); source positions read ``pubsub:MESSAGE_ID``.

Event time is set later, by the parse stage, from each submission's
``created_utc``: the source's own timestamps (Kafka record time, Pub/Sub
publish time) only drive the source's watermark.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import NamedTuple
from urllib.parse import urlparse

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from pipelines import progress
from transforms import beam_tuning


class RawMessage(NamedTuple):
    """One message as received: where it came from and its bytes."""

    source: str
    payload: bytes


class SourceURIError(ValueError):
    pass


SCHEMES = ("file", "kafka", "pubsub")
_PUBSUB_KINDS = ("subscriptions", "topics")


def parse_pubsub_path(uri: str) -> tuple[str, str]:
    """``pubsub://projects/P/subscriptions/S`` -> ("subscription", "projects/P/subscriptions/S")."""
    parsed = urlparse(uri)
    path = (parsed.netloc + parsed.path).strip("/")
    parts = path.split("/")
    if len(parts) != 4 or parts[0] != "projects" or parts[2] not in _PUBSUB_KINDS \
            or not parts[1] or not parts[3]:
        raise SourceURIError(f"{uri!r}: expected pubsub://projects/P/subscriptions/S "
                             "or pubsub://projects/P/topics/T")
    from apache_beam.io.gcp import pubsub

    check = pubsub.parse_subscription if parts[2] == "subscriptions" else pubsub.parse_topic
    try:
        check(path)  # Beam's own name rules (project ids are 6-30 characters, ...)
    except ValueError as e:
        raise SourceURIError(f"{uri!r}: {e}") from None
    return parts[2][:-1], path


def parse_source_uri(uri: str) -> tuple[str, str]:
    """(scheme, location) of a source URI; a bare path means ``file``."""
    parsed = urlparse(uri)
    if parsed.scheme in ("", "file"):
        path = parsed.path if parsed.scheme == "file" else uri
        if parsed.scheme == "file" and parsed.netloc:
            path = parsed.netloc + parsed.path  # file://relative/path
        if not path:
            raise SourceURIError(f"{uri!r}: no path")
        return "file", path
    if parsed.scheme == "kafka":
        from transforms.kafka_io import parse_kafka_uri

        bootstrap, topic = parse_kafka_uri(uri)
        return "kafka", f"{bootstrap}/{topic}"
    if parsed.scheme == "pubsub":
        return "pubsub", parse_pubsub_path(uri)[1]
    raise SourceURIError(f"{uri!r}: unsupported source scheme {parsed.scheme!r} "
                         "(supported: file://, kafka://, pubsub://)")


class FilePiece(NamedTuple):
    """Lines ``first`` to ``last`` (1-based, inclusive) of one file; a slice of a bounded run.

    ``start_byte`` is where line ``first`` starts, for files that can seek
    (uncompressed); -1 for compressed files, which are read up to ``first``.
    """

    path: str
    first: int
    last: int
    start_byte: int = -1


def _compressed(path: str) -> bool:
    from apache_beam.io.filesystem import CompressionTypes

    return CompressionTypes.detect_compression_type(path) != CompressionTypes.UNCOMPRESSED


def plan_file_slices(pattern: str, slice_lines: int) -> list[list[FilePiece]]:
    """The files matching ``pattern`` cut into consecutive slices of ``slice_lines`` lines.

    One pass over the input, counting lines (and, for uncompressed files,
    noting where each slice starts so that its read can seek there).
    """
    if slice_lines < 1:
        raise ValueError("slice size must be at least 1")
    matches = FileSystems.match([pattern])[0].metadata_list
    if not matches:
        raise SourceURIError(f"no file matches {pattern!r}")
    slices: list[list[FilePiece]] = []
    current: list[FilePiece] = []
    room = slice_lines
    for path in sorted(m.path for m in matches):
        seekable = not _compressed(path)
        with FileSystems.open(path) as f:
            n = 0
            first, start = 1, 0
            pos = 0
            while line := f.readline():
                n += 1
                pos += len(line)
                room -= 1
                if room == 0:
                    current.append(FilePiece(path, first, n, start if seekable else -1))
                    slices.append(current)
                    current, room = [], slice_lines
                    first, start = n + 1, pos
            if n >= first:
                current.append(FilePiece(path, first, n, start if seekable else -1))
    if current:
        slices.append(current)
    return slices or [[]]


class _ReadLinesFn(beam.DoFn):
    """Reads a (possibly compressed) text file, or a piece of one, with line numbers."""

    def __init__(self) -> None:
        self._read = Metrics.counter("earlyrisk", "read")

    def process(self, item: str | FilePiece) -> Iterator[RawMessage]:
        piece = item if isinstance(item, FilePiece) else FilePiece(item, 1, -1)
        path = piece.path
        with FileSystems.open(path) as f:
            n = 0
            if piece.start_byte >= 0:
                f.seek(piece.start_byte)
                n = piece.first - 1
            while n != piece.last and (line := f.readline()):
                n += 1
                if n < piece.first:
                    continue
                line = line.rstrip(b"\r\n")
                if not line.strip():
                    continue  # blank lines are not messages
                self._read.inc()
                progress.tick("read")
                yield RawMessage(f"file:{path}:{n}", line)


def _paths(_impulse: bytes, paths: list) -> list:
    return paths


class ReadJsonLines(beam.PTransform):
    """JSONL replay: each non-blank line of the file(s) is one message.

    Reading is sequential per file so that every message keeps its line
    number as its source position (dead letters point at it exactly).
    """

    def __init__(self, pattern: str, pieces: list[FilePiece] | None = None) -> None:
        super().__init__()
        self._pattern = pattern
        self._pieces = pieces

    def expand(self, pbegin):
        if self._pieces is not None:
            paths: list = list(self._pieces)
        else:
            matches = FileSystems.match([self._pattern])[0].metadata_list
            if not matches:
                raise SourceURIError(f"no file matches {self._pattern!r}")
            paths = sorted(m.path for m in matches)
        return (
            pbegin
            | "Start" >> beam.Impulse()
            | "ListFiles" >> beam.FlatMap(_paths, paths)
            | "ReadLines" >> beam.ParDo(_ReadLinesFn()).with_output_types(RawMessage)
        )


class ReadFromPubSubSource(beam.PTransform):
    """Pub/Sub messages (streaming only) as raw messages keyed by message id."""

    def __init__(self, uri: str) -> None:
        super().__init__()
        self._kind, self._path = parse_pubsub_path(uri)

    def expand(self, pbegin):
        from apache_beam.io.gcp.pubsub import ReadFromPubSub

        kwargs = {self._kind: self._path}
        # Local streaming runs: the DirectRunner pulls batches, not 10 messages
        # per bundle (see transforms.beam_tuning); other runners are unaffected.
        beam_tuning.install_direct_pubsub()
        return (
            pbegin
            | "ReadFromPubSub" >> ReadFromPubSub(with_attributes=True, **kwargs)
            | "ToRawMessage" >> beam.ParDo(_PubSubToRawFn()).with_output_types(RawMessage)
        )


class _PubSubToRawFn(beam_tuning.CachedSignatures, beam.DoFn):
    def __init__(self) -> None:
        self._read = Metrics.counter("earlyrisk", "read")

    def process(self, msg) -> Iterator[RawMessage]:
        self._read.inc()
        progress.tick("read")
        # Runners that do not pass the message id on still get a stable position.
        ident = msg.message_id or "sha256-" + hashlib.sha256(msg.data or b"").hexdigest()[:16]
        yield RawMessage(f"pubsub:{ident}", msg.data or b"")


class ReadSubmissions(beam.PTransform):
    """Raw messages from the source named by ``uri``.

    Kafka options: ``kafka_group`` (consumer group whose offsets are read and
    committed), ``kafka_start`` (earliest | latest | committed),
    ``until_caught_up`` (stop at the offsets current at start; then call
    :meth:`after_success` once the pipeline finished, to commit them) and
    ``kafka_use_xlang`` (Beam's Java ReadFromKafka instead of the Python reader).
    """

    def __init__(self, uri: str, *, kafka_group: str = "earlyrisk",
                 kafka_start: str = "committed", until_caught_up: bool = False,
                 kafka_use_xlang: bool = False, file_pieces: list[FilePiece] | None = None,
                 kafka_reads: list | None = None) -> None:
        super().__init__()
        self._file_pieces = file_pieces
        self._kafka_reads = kafka_reads
        self._uri = uri
        self._scheme, self._location = parse_source_uri(uri)
        self._kafka = dict(group=kafka_group, start=kafka_start)
        self._until_caught_up = until_caught_up
        self._xlang = kafka_use_xlang
        self._kafka_read = None

    @property
    def scheme(self) -> str:
        return self._scheme

    @property
    def unbounded(self) -> bool:
        return self._scheme == "pubsub" or (self._scheme == "kafka"
                                            and not self._until_caught_up)

    def expand(self, pbegin):
        if self._scheme == "pubsub":
            return pbegin | "ReadPubSub" >> ReadFromPubSubSource(self._uri)
        if self._scheme == "kafka":
            from transforms.kafka_io import ReadFromKafkaTopic, ReadFromKafkaXlang, parse_kafka_uri

            bootstrap, topic = parse_kafka_uri(self._uri)
            if self._xlang:
                return pbegin | "ReadKafkaXlang" >> ReadFromKafkaXlang(
                    bootstrap, topic, **self._kafka)
            self._kafka_read = ReadFromKafkaTopic(
                bootstrap, topic, until_caught_up=self._until_caught_up, reads=self._kafka_reads,
                **self._kafka)
            return pbegin | "ReadKafka" >> self._kafka_read
        return pbegin | "ReadJsonLines" >> ReadJsonLines(self._location, self._file_pieces)

    @property
    def kafka_reads(self) -> list:
        """The planned Kafka partition reads (after the pipeline is built)."""
        return self._kafka_read.reads if self._kafka_read is not None else []

    def after_success(self) -> None:
        """Call once the pipeline finished successfully: commits bounded Kafka reads."""
        if self._kafka_read is not None:
            self._kafka_read.commit_planned()

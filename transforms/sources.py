"""Sources: where raw submission messages come from, chosen by URI.

Every source yields :class:`RawMessage` (a payload and its position), so the
parser and the dead-letter table do not care where a message came from.

Schemes: ``file://PATH`` (JSONL, optionally ``.gz``; a bare path works too).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple
from urllib.parse import urlparse

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from pipelines import progress


class RawMessage(NamedTuple):
    """One message as received: where it came from and its bytes."""

    source: str
    payload: bytes


class SourceURIError(ValueError):
    pass


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
    raise SourceURIError(f"{uri!r}: unsupported source scheme {parsed.scheme!r} (supported: file://)")


class _ReadLinesFn(beam.DoFn):
    """Reads a (possibly compressed) text file line by line, with line numbers."""

    def __init__(self) -> None:
        self._read = Metrics.counter("earlyrisk", "read")

    def process(self, path: str) -> Iterator[RawMessage]:
        with FileSystems.open(path) as f:
            n = 0
            while line := f.readline():
                n += 1
                line = line.rstrip(b"\r\n")
                if not line.strip():
                    continue  # blank lines are not messages
                self._read.inc()
                progress.tick("read")
                yield RawMessage(f"file:{path}:{n}", line)


def _paths(_impulse: bytes, paths: list[str]) -> list[str]:
    return paths


class ReadJsonLines(beam.PTransform):
    """JSONL replay: each non-blank line of the file(s) is one message.

    Reading is sequential per file so that every message keeps its line
    number as its source position (dead letters point at it exactly).
    """

    def __init__(self, pattern: str) -> None:
        super().__init__()
        self._pattern = pattern

    def expand(self, pbegin):
        matches = FileSystems.match([self._pattern])[0].metadata_list
        if not matches:
            raise SourceURIError(f"no file matches {self._pattern!r}")
        paths = sorted(m.path for m in matches)
        return (
            pbegin
            | "Start" >> beam.Impulse()
            | "ListFiles" >> beam.FlatMap(_paths, paths).with_output_types(str)
            | "ReadLines" >> beam.ParDo(_ReadLinesFn()).with_output_types(RawMessage)
        )


class ReadSubmissions(beam.PTransform):
    """Raw messages from the source named by ``uri``."""

    def __init__(self, uri: str) -> None:
        super().__init__()
        self._scheme, self._location = parse_source_uri(uri)

    def expand(self, pbegin):
        return pbegin | "ReadJsonLines" >> ReadJsonLines(self._location)

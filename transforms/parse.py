"""Parsing and validation of raw messages, with a dead-letter output.

Valid messages become :class:`~models.records.Submission` elements stamped
with their event time (``created_utc``); anything else becomes a
:class:`~models.records.DeadLetter` carrying the stage, the reason and the raw
payload. Nothing is dropped: ``read = parsed + dead-lettered`` at this stage.
"""

from __future__ import annotations

from collections.abc import Iterator

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.transforms.window import TimestampedValue

from models.deadletters import MAX_RAW_CHARS, dead_letter, redact_authors
from models.records import Submission
from models.wire import KeySource, ParseError, ParseLimits, Pseudonymizer, parse_submission
from pipelines import progress
from transforms.beam_tuning import CachedSignatures
from transforms.sources import RawMessage

DEAD_LETTERS = "dead_letters"
SUBMISSIONS = "submissions"

__all__ = ["DEAD_LETTERS", "MAX_RAW_CHARS", "SUBMISSIONS", "KeySource", "ParseSubmissions",
           "dead_letter", "redact_authors"]



class _ParseFn(CachedSignatures, beam.DoFn):
    def __init__(self, keys: KeySource, limits: ParseLimits) -> None:
        self._keys = keys
        self._limits = limits
        self._parsed = Metrics.counter("earlyrisk", "parsed")
        self._dead = Metrics.counter("earlyrisk", "dead_lettered")
        self._pseudonymize: Pseudonymizer | None = None

    def setup(self) -> None:
        self._pseudonymize = Pseudonymizer(self._keys.resolve())

    def process(self, msg: RawMessage) -> Iterator:
        try:
            sub = parse_submission(msg.payload, self._pseudonymize, msg.source, self._limits)
        except ParseError as e:
            self._dead.inc()
            Metrics.counter("earlyrisk", f"dead_lettered.parse.{e.reason}").inc()
            progress.tick("dead_lettered")
            yield beam.pvalue.TaggedOutput(
                DEAD_LETTERS, dead_letter("parse", e.reason, e.detail, msg.source, msg.payload,
                                          self._pseudonymize)
            )
            return
        self._parsed.inc()
        yield TimestampedValue(sub, sub.created_utc)


class ParseSubmissions(beam.PTransform):
    """RawMessage -> {submissions: Submission, dead_letters: DeadLetter}."""

    def __init__(self, keys: KeySource, limits: ParseLimits = ParseLimits()) -> None:
        super().__init__()
        self._keys = keys
        self._limits = limits

    def expand(self, messages):
        results = messages | "Validate" >> beam.ParDo(
            _ParseFn(self._keys, self._limits)
        ).with_output_types(Submission).with_outputs(DEAD_LETTERS, main=SUBMISSIONS)
        return {SUBMISSIONS: results[SUBMISSIONS], DEAD_LETTERS: results[DEAD_LETTERS]}

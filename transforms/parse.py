"""Parsing and validation of raw messages, with a dead-letter output.

Valid messages become :class:`~models.records.Submission` elements stamped
with their event time (``created_utc``); anything else becomes a
:class:`~models.records.DeadLetter` carrying the stage, the reason and the raw
payload. Nothing is dropped: ``read = parsed + dead-lettered`` at this stage.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from collections.abc import Iterator

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.transforms.window import TimestampedValue

from models.records import DeadLetter, Submission
from models.wire import ParseError, ParseLimits, Pseudonymizer, parse_submission
from pipelines import progress
from transforms.beam_tuning import CachedSignatures
from transforms.sources import RawMessage

DEAD_LETTERS = "dead_letters"
SUBMISSIONS = "submissions"

# Raw payloads kept in dead_letters are cut here; raw_bytes keeps the true size.
MAX_RAW_CHARS = 65_536


# "author": "name" in a payload, valid JSON or not (names cannot hold quotes).
_AUTHOR_FIELD = re.compile(rb'("author"\s*:\s*")([^"\\]{1,200})("|\Z)')


def redact_authors(data: bytes, pseudonymize: Pseudonymizer) -> bytes:
    """The payload with every ``"author": "name"`` replaced by the name's pseudonym.

    Dead letters keep their payload for debugging producers; with
    pseudonymisation on, that payload must not carry the raw name either.
    """
    if not pseudonymize.enabled:
        return data

    def swap(m: re.Match) -> bytes:
        name = m.group(2).decode("utf-8", "replace")
        return m.group(1) + pseudonymize(name).encode() + m.group(3)

    return _AUTHOR_FIELD.sub(swap, data)


def dead_letter(stage: str, reason: str, detail: str, source: str,
                payload: bytes | str, pseudonymize: Pseudonymizer | None = None) -> DeadLetter:
    """A dead letter with a deterministic id (same message, same stage: same id).

    With ``pseudonymize``, author names in the kept payload are replaced by
    pseudonyms (the id and ``raw_bytes`` still describe the original bytes).
    """
    data = payload if isinstance(payload, bytes) else payload.encode("utf-8", "surrogatepass")
    shown = redact_authors(data, pseudonymize) if pseudonymize is not None else data
    raw = shown[: MAX_RAW_CHARS * 4].decode("utf-8", "backslashreplace")[:MAX_RAW_CHARS]
    ident = hashlib.sha256(f"{stage}\x1f{source}\x1f".encode() + data).hexdigest()[:32]
    return DeadLetter(
        dead_letter_id=ident,
        stage=stage,
        reason=reason,
        detail=detail[:1000],
        source=source,
        raw=raw,
        raw_bytes=len(data),
        received_at=time.time(),
    )


class KeySource:
    """Where the pseudonymisation key comes from, resolved on the worker.

    The key itself never travels inside the pipeline graph (which runners
    show and store): only the name of the environment variable, the path of a
    key file, or the name of a Google Secret Manager secret version
    (``projects/P/secrets/S/versions/V``, for Dataflow workers) does. None of
    them means raw names (operator opt-out).
    """

    def __init__(self, env_var: str | None = None, key_file: str | None = None,
                 secret: str | None = None) -> None:
        self.env_var = env_var
        self.key_file = key_file
        self.secret = secret

    @property
    def raw_names(self) -> bool:
        return self.env_var is None and self.key_file is None and self.secret is None

    def resolve(self) -> bytes | None:
        if self.raw_names:
            return None
        if self.secret:
            # Not exercised offline (no Secret Manager emulator exists).
            from google.cloud import secretmanager

            client = secretmanager.SecretManagerServiceClient()
            return client.access_secret_version(name=self.secret).payload.data.strip()
        if self.env_var and os.environ.get(self.env_var):
            return os.environ[self.env_var].encode()
        if self.key_file:
            with open(self.key_file, "rb") as f:
                return f.read().strip()
        raise RuntimeError(
            f"pseudonymisation key not found: set ${self.env_var} or provide a key file"
        )


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

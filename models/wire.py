"""The wire format of a submission, and its validation.

One submission is one UTF-8 JSON object (a Kafka value, a Pub/Sub message's
data, or one line of a JSONL file)::

    {"id": "t3_abc123", "author": "someone", "created_utc": 1546300800,
     "kind": "post", "subreddit": "depression", "title": "...", "body": "..."}

``created_utc`` is epoch seconds (int or float) or an ISO 8601 string (a
naive one is read as UTC). ``title`` and ``body`` may be ``null`` or empty but
not both. Unknown fields are ignored, so producers can add fields freely.

:func:`parse_submission` either returns a :class:`~models.records.Submission`
or raises :class:`ParseError` whose ``reason`` is a stable machine-readable
code (the ``dead_letters.reason`` column) and whose ``detail`` is for humans.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from models.records import KINDS, Submission

# Reddit was founded in June 2005: anything older is a producer bug.
MIN_CREATED_UTC = datetime(2005, 6, 1, tzinfo=UTC).timestamp()

REASONS = (
    "too_large",
    "invalid_utf8",
    "invalid_json",
    "not_an_object",
    "missing_field",
    "wrong_type",
    "invalid_value",
    "deleted_author",
    "empty_text",
    "timestamp_out_of_range",
)

_REMOVED = {"[removed]", "[deleted]"}
_MAX_ID_CHARS = 100
_MAX_NAME_CHARS = 100


class ParseError(ValueError):
    """A message that cannot become a Submission."""

    def __init__(self, reason: str, detail: str) -> None:
        assert reason in REASONS, reason
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class ParseLimits:
    """Bounds on what the parser accepts (documented CLI options)."""

    max_message_bytes: int = 1_000_000
    max_future_skew_s: float = 86_400.0


class Pseudonymizer:
    """Keyed hash of Reddit user names (HMAC-SHA256, 80 bits, hex).

    With ``key=None`` user names pass through unchanged: the operator's
    explicit opt-out. Names are case-folded first, as Reddit treats them.
    """

    def __init__(self, key: bytes | None) -> None:
        if key is not None and len(key) < 16:
            raise ValueError("pseudonymisation key must be at least 16 bytes")
        self._key = key

    @property
    def enabled(self) -> bool:
        return self._key is not None

    def __call__(self, author: str) -> str:
        if self._key is None:
            return author
        digest = hmac.new(self._key, author.casefold().encode(), hashlib.sha256)
        return "u_" + digest.hexdigest()[:20]


def parse_created_utc(value: Any, field: str = "created_utc") -> float:
    """Epoch seconds from an epoch number or an ISO 8601 string."""
    if isinstance(value, bool):
        raise ParseError("wrong_type", f"{field} is a boolean")
    if isinstance(value, (int, float)):
        try:
            ts = float(value)
        except OverflowError:  # an integer with hundreds of digits
            raise ParseError("timestamp_out_of_range", f"{field} is too large") from None
        return _finite(ts, field)
    if isinstance(value, str):
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            dt = datetime.fromisoformat(text)
        except ValueError:
            try:
                return _finite(float(text), field)
            except ValueError:
                raise ParseError(
                    "invalid_value", f"{field} is neither epoch seconds nor ISO 8601"
                ) from None
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)
        try:
            return dt.timestamp()
        except (OverflowError, ValueError):  # year 1 minus an offset, and such
            raise ParseError("timestamp_out_of_range", f"{field} is out of range") from None
    raise ParseError("wrong_type", f"{field} must be a number or a string")


def _finite(ts: float, field: str) -> float:
    # NaN compares false with every bound, so it must be caught before the range check.
    if not math.isfinite(ts):
        raise ParseError("invalid_value", f"{field} is not finite")
    return ts


def _has_lone_surrogate(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _string(obj: dict, field: str, *, required: bool, max_chars: int | None = None,
            surrogates_possible: bool = True) -> str:
    if field not in obj or obj[field] is None:
        if required:
            raise ParseError("missing_field", f"'{field}' is missing")
        return ""
    value = obj[field]
    if not isinstance(value, str):
        raise ParseError("wrong_type", f"'{field}' must be a string, got {type(value).__name__}")
    if surrogates_possible and _has_lone_surrogate(value):
        # Valid JSON ("\ud800") but not Unicode text: no store or sink can encode it.
        raise ParseError("invalid_utf8", f"'{field}' holds a lone UTF-16 surrogate")
    if "\x00" in value and max_chars is None:
        # NUL bytes in text break C-string consumers downstream; they carry no meaning.
        value = value.replace("\x00", "")
    if max_chars is not None:
        if not value.strip():
            raise ParseError("invalid_value", f"'{field}' is empty")
        # Every whitespace character but " " is non-printable, so this says
        # "no whitespace and nothing non-printable" in two C-speed scans.
        if len(value) > max_chars or not value.isprintable() or " " in value:
            raise ParseError("invalid_value", f"'{field}' is not a valid identifier")
    return value


def parse_submission(
    payload: bytes | str,
    pseudonymize: Pseudonymizer,
    source: str = "",
    limits: ParseLimits = ParseLimits(),
    now: float | None = None,
) -> Submission:
    """Validate one wire-format message; raise ParseError with a reason."""
    size = len(payload) if isinstance(payload, bytes) else len(payload.encode("utf-8", "replace"))
    if size > limits.max_message_bytes:
        raise ParseError(
            "too_large", f"{size} bytes exceeds the limit of {limits.max_message_bytes}"
        )
    # Text decoded from UTF-8 holds no lone surrogate; only a JSON escape
    # ("\ud800") can put one in, so without "\u" no field needs the check.
    surrogates = True
    if isinstance(payload, bytes):
        try:
            payload = payload.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ParseError("invalid_utf8", str(e)) from None
        surrogates = "\\u" in payload
    try:
        obj = json.loads(payload)
    except RecursionError:
        raise ParseError("invalid_json", "nested too deeply") from None
    except ValueError as e:
        raise ParseError("invalid_json", str(e)) from None
    if not isinstance(obj, dict):
        raise ParseError("not_an_object", f"top level is a JSON {type(obj).__name__}")

    sub_id = _string(obj, "id", required=True, max_chars=_MAX_ID_CHARS,
                     surrogates_possible=surrogates)
    author = _string(obj, "author", required=True, max_chars=_MAX_NAME_CHARS,
                     surrogates_possible=surrogates)
    if author in _REMOVED:
        raise ParseError("deleted_author", "author was deleted; writing cannot be attributed")
    if "created_utc" not in obj or obj["created_utc"] is None:
        raise ParseError("missing_field", "'created_utc' is missing")
    created = parse_created_utc(obj["created_utc"])
    now = time.time() if now is None else now
    if created < MIN_CREATED_UTC or created > now + limits.max_future_skew_s:
        raise ParseError(
            "timestamp_out_of_range",
            f"created_utc {created!r} is before Reddit existed or in the future",
        )
    kind = _string(obj, "kind", required=True, surrogates_possible=surrogates)
    if kind not in KINDS:
        raise ParseError("invalid_value", f"'kind' must be one of {KINDS}, got {kind[:40]!r}")
    subreddit = _string(obj, "subreddit", required=True, surrogates_possible=surrogates)
    title = _string(obj, "title", required=False, surrogates_possible=surrogates)
    body = _string(obj, "body", required=False, surrogates_possible=surrogates)
    if title.strip() in _REMOVED:
        title = ""
    if body.strip() in _REMOVED:
        body = ""
    if not title.strip() and not body.strip():
        raise ParseError("empty_text", "title and body are both empty or removed")
    return Submission(
        id=sub_id,
        user_id=pseudonymize(author),
        created_utc=created,
        kind=kind,
        subreddit=subreddit,
        title=title,
        body=body,
        source=source,
    )


def to_wire(
    *,
    id: str,
    author: str,
    created_utc: float | int | str,
    kind: str,
    subreddit: str,
    title: str = "",
    body: str = "",
) -> str:
    """One wire-format message as a compact JSON string."""
    return json.dumps(
        {
            "id": id,
            "author": author,
            "created_utc": created_utc,
            "kind": kind,
            "subreddit": subreddit,
            "title": title,
            "body": body,
        },
        ensure_ascii=False,
        separators=(",", ":"),
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

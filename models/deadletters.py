"""Dead letters: the record of a message that was not scored, and why.

Beam-free, so every engine (the Beam transforms and the native Flink job)
builds dead letters the same way, with the same deterministic ids.
"""

from __future__ import annotations

import hashlib
import re
import time

from models.records import DeadLetter
from models.wire import Pseudonymizer

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



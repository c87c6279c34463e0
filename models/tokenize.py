"""Tokeniser shared by training, the incremental scorer and evaluation.

One function turns a text into the list of terms the model counts. Training
(through scikit-learn's ``CountVectorizer(analyzer=...)``), the streaming scorer
and the evaluator all call the same :class:`Tokenizer`, so the three can never
disagree about what a term is.

Design choices, and why:

* Lower-cased, Unicode-aware word tokens; apostrophes inside words are kept
  (``i'm``, ``don't``, ``can't``), since contractions of first-person forms are
  among the stronger linguistic markers of depression.
* Single-character tokens are kept: the pronoun ``i`` is one of those markers,
  and scikit-learn's default pattern would drop it.
* No stop-word list for the same reason; the L1 penalty does the selection.
* URLs collapse to one token, so link-heavy writers do not flood the vocabulary.

The settings are stored inside every saved model and a model refuses to load
with a tokeniser version it does not know.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import asdict, dataclass

TOKENIZER_VERSION = 1

_URL = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)
# Letters/digits, optionally joined by inner apostrophes (straight or curly).
_TOKEN = re.compile(r"[^\W_]+(?:['\u2019][^\W_]+)*")
# The fast path for ASCII text (most Reddit writing): bytes.translate turns
# every character that cannot be in a term into a space, then bytes.split
# does the rest in C. An apostrophe is inside a term exactly when a letter or
# digit is on both sides of it (that is what _TOKEN matches), so only
# apostrophes that are not need blanking first, and only when there are some.
_TERM_BYTES = frozenset(b"abcdefghijklmnopqrstuvwxyz0123456789'")
_ASCII_TABLE = bytes(c if c in _TERM_BYTES else 0x20 for c in range(256))
_LONE_APOSTROPHE = re.compile(rb"(?<![a-z0-9])'|'(?![a-z0-9])")


@dataclass(frozen=True)
class Tokenizer:
    """Turns text into terms; settings travel inside the portable model."""

    url_token: str = "_url_"
    max_token_chars: int = 40
    version: int = TOKENIZER_VERSION

    def __post_init__(self) -> None:
        if self.version != TOKENIZER_VERSION:
            raise ValueError(
                f"tokenizer version {self.version} is not supported "
                f"(this build knows version {TOKENIZER_VERSION})"
            )

    def __call__(self, text: str) -> list[str]:
        return self.tokens(text)

    def tokens(self, text: str) -> list[str]:
        """Terms of ``text`` in order of appearance."""
        text = text.lower()
        n_urls = 0
        if "http" in text or "www." in text:
            text, n_urls = _URL.subn(" ", text)
        terms = _TOKEN.findall(text)
        if "\u2019" in text:
            terms = [t.replace("\u2019", "'") for t in terms]
        limit = self.max_token_chars
        if terms and max(map(len, terms)) > limit:
            terms = [t for t in terms if len(t) <= limit]
        if n_urls:
            terms.extend([self.url_token] * n_urls)
        return terms

    def normalize(self, text: str) -> tuple[str, int]:
        """``text`` lower-cased, URLs blanked out, curly apostrophes straightened,
        and the number of URLs: what :meth:`keys` (and the compiled scorer) split."""
        text = text.lower()
        n_urls = 0
        if "http" in text or "www." in text:
            text, n_urls = _URL.subn(" ", text)
        if "\u2019" in text:
            # _TOKEN treats both apostrophes alike and tokens() outputs "'".
            text = text.replace("\u2019", "'")
        return text, n_urls

    def keys(self, text: str) -> list[str] | list[bytes]:
        """The terms of :meth:`tokens`, faster: all ASCII bytes when the text is ASCII.

        Either every term is ``bytes`` (ASCII text, the fast path) or every term
        is ``str``; decoded, they equal :meth:`tokens` for every text (a
        property test checks it). Look bytes up in a bytes-keyed index: an
        ASCII ``str`` and its ``bytes`` hash alike, so one dict holding both
        forms would make every lookup a slow cross-type comparison.
        """
        return self.normalized_keys(*self.normalize(text))

    def normalized_keys(self, text: str, n_urls: int) -> list[str] | list[bytes]:
        """:meth:`keys` of a text that :meth:`normalize` has already prepared."""
        url_token: str | bytes = self.url_token
        if not text.isascii():
            terms: list = _TOKEN.findall(text)
        else:
            url_token = url_token.encode("ascii")
            data = text.encode("ascii").translate(_ASCII_TABLE)
            if b"'" in data and (data[:1] == b"'" or data[-1:] == b"'" or b" '" in data
                                 or b"' " in data or b"''" in data):
                data = _LONE_APOSTROPHE.sub(b" ", data)
            terms = data.split()
        limit = self.max_token_chars
        if terms and max(map(len, terms)) > limit:
            terms = [t for t in terms if len(t) <= limit]
        if n_urls:
            terms.extend([url_token] * n_urls)
        return terms

    def spans(self, text: str) -> list[tuple[str, int, int]]:
        """``(term, start, end)`` for each term of :meth:`tokens`, with character
        offsets into ``text`` as given (not lower-cased or normalised).

        The terms are those of :meth:`tokens`, in the same order: the URL token
        last, once per URL, spanning its URL. Used to highlight what a model
        weighed in a writing (models.explain).
        """
        low = text.lower()
        owner: list[int] | None = None
        if len(low) != len(text):
            # Some characters lower-case to several (e.g. "İ"): map each
            # character of the lower-cased text back to its source character.
            owner = [i for i, ch in enumerate(text) for _ in range(len(ch.lower()))]

        def orig(a: int, b: int) -> tuple[int, int]:
            return (a, b) if owner is None else (owner[a], owner[b - 1] + 1)

        urls: list[tuple[int, int]] = []
        if "http" in low or "www." in low:
            # Blank URLs out with as many spaces: same terms as tokens()'s
            # one-space substitution, same offsets.
            parts, last = [], 0
            for m in _URL.finditer(low):
                parts.append(low[last:m.start()])
                parts.append(" " * (m.end() - m.start()))
                urls.append(orig(m.start(), m.end()))
                last = m.end()
            parts.append(low[last:])
            low = "".join(parts)
        limit = self.max_token_chars
        out = []
        for m in _TOKEN.finditer(low):
            term = m.group()
            if len(term) <= limit:
                out.append((term.replace("\u2019", "'"), *orig(m.start(), m.end())))
        out.extend((self.url_token, a, b) for a, b in urls)
        return out

    def counts(self, text: str) -> Counter[str]:
        """Term frequencies of ``text``."""
        return Counter(self.tokens(text))

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> Tokenizer:
        return cls(**data)


NEGATED_PREFIX = "neg:"


def describe_feature(feature: str) -> tuple[str, bool]:
    """A feature's display form and whether it is negated.

    ``neg:WORD`` (a word inside a negation's scope) displays as ``WORD``,
    negated; a word displays as itself.
    """
    if feature.startswith(NEGATED_PREFIX):
        return feature[len(NEGATED_PREFIX):], True
    return feature, False


def join_writings(texts: list[str]) -> str:
    """One document from a user's writings, as training and evaluation see it.

    A blank line separates writings; since the tokeniser only produces word
    tokens, joining never creates or merges a term, which is what makes the
    incremental scorer exactly equal to scoring the joined document.
    """
    return "\n\n".join(texts)

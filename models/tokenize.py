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

    def counts(self, text: str) -> Counter[str]:
        """Term frequencies of ``text``."""
        return Counter(self.tokens(text))

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> Tokenizer:
        return cls(**data)


def join_writings(texts: list[str]) -> str:
    """One document from a user's writings, as training and evaluation see it.

    A blank line separates writings; since the tokeniser only produces word
    tokens, joining never creates or merges a term, which is what makes the
    incremental scorer exactly equal to scoring the joined document.
    """
    return "\n\n".join(texts)

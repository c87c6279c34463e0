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

Version 2 adds clinically grounded features, still as counted terms of the
same tf-idf + logistic model (so the incremental scorer stays exact):

* **Negation scope** (``negation_window`` > 0): after a negation cue
  (:data:`NEGATION_CUES`, or any word ending in ``n't``) the next
  ``negation_window`` words are emitted as ``neg:WORD`` instead of ``WORD``.
  The scope ends early at a clause boundary: one of the characters of
  :data:`CLAUSE_BOUNDARIES` (sentence and clause punctuation, brackets,
  quotes, a line break) or a contrastive conjunction (:data:`SCOPE_ENDERS`,
  "but", "however", ...). The cue itself stays a plain term; a new cue
  restarts the window. So "Not suicidal. But..." counts ``not`` and
  ``neg:suicidal``, never ``suicidal``.
* **Lexicon pseudo-terms** (``lexicons``): every occurrence of an entry of a
  vendored lexicon category (models/lexicons/) adds one pseudo-term
  ``__lex_GROUP_CATEGORY`` (``__fp_sing`` for first-person singular
  pronouns), right after the entry's last word. Entries of several words
  are phrases matched exactly on consecutive words (up to 8) of one clause:
  they never span a clause boundary. Overlapping occurrences each count, and
  an entry listed under several categories counts in each. A hit whose first
  word lies inside a negation scope is emitted as ``neg:__lex_...``
  (pronouns are never negated: the pronoun rate is a style marker).
* Words longer than ``max_token_chars`` are dropped before all this, as if
  absent; URLs become the URL token at the end, never negated.

Every feature is local to a clause and a line break ends a clause, so
joining writings with a blank line still never creates, merges or moves a
term (the incremental scorer's exactness rests on it).

The settings are stored inside every saved model and a model refuses to load
with a tokeniser version it does not know. A version 2 model also stores a
digest of the lexicon files it was trained with and refuses to load if the
vendored files differ.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

TOKENIZER_VERSION = 2
KNOWN_VERSIONS = (1, 2)
LEXICON_DIR = Path(__file__).resolve().parent / "lexicons"
#: Lexicon groups, in the order their pseudo-terms are emitted, and their files.
LEXICON_FILES = {
    "srl": "srl_v1.tsv",
    "vader": "vader.tsv",
    "empath": "empath.tsv",
    "pronouns": "pronouns.tsv",
}
LEXICON_GROUPS = tuple(LEXICON_FILES)
MAX_PHRASE_WORDS = 8
NEGATED_PREFIX = "neg:"
PRONOUN_TERM = "__fp_sing"
NEGATION_CUES = frozenset((
    "not", "no", "never", "nothing", "nobody", "none", "neither", "nor", "nowhere",
    "without", "cannot", "cant", "dont", "didnt", "doesnt", "isnt", "wasnt", "arent",
    "werent", "wont", "wouldnt", "couldnt", "shouldnt", "havent", "hasnt", "hadnt", "aint",
))
SCOPE_ENDERS = frozenset(("but", "however", "although", "though", "whereas", "except"))
CLAUSE_BOUNDARIES = ".,;:!?()[]{}\"\n\u2026\u2013\u2014\u201c\u201d"

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
# Version 2 scans words and clause boundaries in one pass; a word matches
# exactly what _TOKEN matches (boundary characters are not letters or digits).
_SCAN = re.compile(r"([^\W_]+(?:['\u2019][^\W_]+)*)|[" + re.escape(CLAUSE_BOUNDARIES) + "]")


def pseudo_term(group: str, category: str) -> str:
    """The pseudo-term a lexicon category's hits are counted as."""
    return PRONOUN_TERM if group == "pronouns" else f"__lex_{group}_{category}"


@dataclass(frozen=True)
class Lexicon:
    """The phrase tables of some lexicon groups, ready for matching.

    ``phrases``: entry (tuple of words) -> the pseudo-terms it counts for, each
    with whether it can be negated; ``suffixes``: every proper suffix of a
    multi-word entry (matching runs backwards from a phrase's last word and
    stops as soon as the words so far are no suffix of any entry).
    """

    phrases: dict[tuple[str, ...], tuple[tuple[str, bool], ...]]
    suffixes: frozenset[tuple[str, ...]]
    digest: str


@functools.lru_cache(maxsize=16)
def load_lexicon(groups: tuple[str, ...]) -> Lexicon:
    """The vendored lexicons of ``groups`` (models/lexicons/*.tsv)."""
    h = hashlib.sha256()
    phrases: dict[tuple[str, ...], list[tuple[str, bool]]] = {}
    for group in groups:
        data = (LEXICON_DIR / LEXICON_FILES[group]).read_bytes()
        h.update(group.encode() + b"\0" + hashlib.sha256(data).digest())
        negatable = group != "pronouns"
        for line in data.decode("utf-8").splitlines():
            category, entry = line.split("\t")
            words = tuple(entry.split(" "))
            hit = (pseudo_term(group, category), negatable)
            got = phrases.setdefault(words, [])
            if hit not in got:
                got.append(hit)
    suffixes = frozenset(w[k:] for w in phrases for k in range(1, len(w)))
    return Lexicon(phrases={k: tuple(v) for k, v in phrases.items()}, suffixes=suffixes,
                   digest=h.hexdigest()[:16])


@dataclass(frozen=True)
class Tokenizer:
    """Turns text into terms; settings travel inside the portable model."""

    url_token: str = "_url_"
    max_token_chars: int = 40
    version: int = 1
    # Version 2 settings (see the module docstring); the defaults are version 1's.
    negation_window: int = 0
    lexicons: tuple[str, ...] = ()
    lexicon_digest: str = ""

    def __post_init__(self) -> None:
        if self.version not in KNOWN_VERSIONS:
            raise ValueError(
                f"tokenizer version {self.version} is not supported "
                f"(this build knows versions {', '.join(map(str, KNOWN_VERSIONS))})"
            )
        if not isinstance(self.negation_window, int) or self.negation_window < 0:
            raise ValueError(f"negation_window must be an int >= 0, got {self.negation_window!r}")
        unknown = [g for g in self.lexicons if g not in LEXICON_FILES]
        if unknown:
            raise ValueError(f"unknown lexicon group(s) {', '.join(map(str, unknown))} "
                             f"(known: {', '.join(LEXICON_GROUPS)})")
        if self.version == 1 and (self.negation_window or self.lexicons or self.lexicon_digest):
            raise ValueError("negation and lexicon features need tokenizer version 2")
        # Canonical order, so equal settings give equal models (and hashes).
        groups = tuple(g for g in LEXICON_GROUPS if g in self.lexicons)
        object.__setattr__(self, "lexicons", groups)
        if groups:
            digest = load_lexicon(groups).digest
            if not self.lexicon_digest:
                object.__setattr__(self, "lexicon_digest", digest)
            elif self.lexicon_digest != digest:
                raise ValueError(
                    f"the vendored lexicons ({', '.join(groups)}: digest {digest}) differ from "
                    f"the ones this model was trained with (digest {self.lexicon_digest})")
        elif self.lexicon_digest:
            raise ValueError("lexicon_digest given without lexicons")

    @property
    def featureful(self) -> bool:
        """Whether terms go beyond plain words (negation or lexicon pseudo-terms)."""
        return bool(self.negation_window or self.lexicons)

    @property
    def lexicon(self) -> Lexicon | None:
        return load_lexicon(self.lexicons) if self.lexicons else None

    def __call__(self, text: str) -> list[str]:
        return self.tokens(text)

    def tokens(self, text: str) -> list[str]:
        """Terms of ``text`` in order of appearance."""
        if self.featureful:
            return [t for t, _, _ in self._features(*self.normalize(text))]
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
        if self.featureful:
            return [t for t, _, _ in self._features(text, n_urls)]
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

    def _features(self, text: str, n_urls: int,
                  urls: list[tuple[int, int]] | None = None) -> list[tuple[str, int, int]]:
        """Version 2 terms of normalised ``text``, with their offsets in it.

        A pseudo-term spans the words of the entry that triggered it. ``urls``
        (offsets of the URLs, when known) span the URL tokens.
        """
        window = self.negation_window
        lex = self.lexicon
        phrases = lex.phrases if lex is not None else None
        suffixes = lex.suffixes if lex is not None else frozenset()
        limit = self.max_token_chars
        out: list[tuple[str, int, int]] = []
        append = out.append
        # The current clause: its words, their offsets and whether each is in scope.
        words: list[str] = []
        starts: list[int] = []
        scoped: list[bool] = []
        scope = 0
        for m in _SCAN.finditer(text):
            w = m.group(1)
            if w is None:  # a clause boundary
                scope = 0
                if words:
                    words, starts, scoped = [], [], []
                continue
            if len(w) > limit:
                continue
            if "\u2019" in w:
                w = w.replace("\u2019", "'")
            a, b = m.span()
            in_scope = False
            if window:
                if w in NEGATION_CUES or w.endswith("n't"):
                    scope = window
                elif w in SCOPE_ENDERS:
                    scope = 0
                elif scope:
                    scope -= 1
                    in_scope = True
            append((NEGATED_PREFIX + w if in_scope else w, a, b))
            if phrases is None:
                continue
            words.append(w)
            starts.append(a)
            scoped.append(in_scope)
            # Entries ending at this word, shortest first.
            i = len(words) - 1
            key: tuple[str, ...] = (w,)
            j = i
            while True:
                hits = phrases.get(key)
                if hits is not None:
                    neg = scoped[j]
                    for term, negatable in hits:
                        append((NEGATED_PREFIX + term if neg and negatable else term,
                                starts[j], b))
                if key not in suffixes or j == 0 or len(key) == MAX_PHRASE_WORDS:
                    break
                j -= 1
                key = (words[j], *key)
        if n_urls:
            if urls is None:
                urls = [(len(text), len(text))] * n_urls
            out.extend((self.url_token, a, b) for a, b in urls)
        return out

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

        urls: list[tuple[int, int]] = []  # in the lower-cased text
        if "http" in low or "www." in low:
            # Blank URLs out with as many spaces: same terms as tokens()'s
            # one-space substitution, same offsets.
            parts, last = [], 0
            for m in _URL.finditer(low):
                parts.append(low[last:m.start()])
                parts.append(" " * (m.end() - m.start()))
                urls.append(m.span())
                last = m.end()
            parts.append(low[last:])
            low = "".join(parts)
        if self.featureful:
            if "\u2019" in low:
                low = low.replace("\u2019", "'")
            return [(t, *orig(a, b)) for t, a, b in self._features(low, len(urls), urls)]
        limit = self.max_token_chars
        out = []
        for m in _TOKEN.finditer(low):
            term = m.group()
            if len(term) <= limit:
                out.append((term.replace("\u2019", "'"), *orig(m.start(), m.end())))
        out.extend((self.url_token, *orig(a, b)) for a, b in urls)
        return out

    def counts(self, text: str) -> Counter[str]:
        """Term frequencies of ``text``."""
        return Counter(self.tokens(text))

    def to_json(self) -> dict:
        doc = {"url_token": self.url_token, "max_token_chars": self.max_token_chars,
               "version": self.version}
        if self.version >= 2:  # version 1 models keep their exact header (and hash)
            doc.update(negation_window=self.negation_window, lexicons=list(self.lexicons),
                       lexicon_digest=self.lexicon_digest)
        return doc

    @classmethod
    def from_json(cls, data: dict) -> Tokenizer:
        data = dict(data)
        if "lexicons" in data:
            data["lexicons"] = tuple(data["lexicons"])
        return cls(**data)


_GROUP_NAMES = {"srl": "SRL", "vader": "VADER", "empath": "Empath"}
_VADER_NAMES = {"neg": "negative words", "pos": "positive words"}


def describe_feature(feature: str) -> tuple[str, bool]:
    """A feature's display form and whether it is negated.

    ``neg:X`` (inside a negation's scope) displays as X, negated; a word
    displays as itself; a lexicon pseudo-term as ``GROUP: category``
    (``__lex_srl_sleep_issues`` -> ``SRL: sleep issues``), ``__fp_sing`` as
    ``first-person singular``.
    """
    negated = feature.startswith(NEGATED_PREFIX)
    if negated:
        feature = feature[len(NEGATED_PREFIX):]
    if feature == PRONOUN_TERM:
        return "first-person singular", negated
    if feature.startswith("__lex_"):
        group, _, category = feature[len("__lex_"):].partition("_")
        if group == "vader":
            category = _VADER_NAMES.get(category, category)
        return f"{_GROUP_NAMES.get(group, group)}: {category.replace('_', ' ')}", negated
    return feature, negated


def display_term(feature: str) -> str:
    """One string for a feature: its display form, "not ..." when negated."""
    term, negated = describe_feature(feature)
    return f"not {term}" if negated else term


def join_writings(texts: list[str]) -> str:
    """One document from a user's writings, as training and evaluation see it.

    A blank line separates writings; since the tokeniser only produces word
    tokens, joining never creates or merges a term, which is what makes the
    incremental scorer exactly equal to scoring the joined document.
    """
    return "\n\n".join(texts)

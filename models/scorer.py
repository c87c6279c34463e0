"""The incremental scorer: exact user probabilities in time O(len(new writing)).

The paper's system kept each user's accumulated count vector and, at every new
writing, re-applied tf-idf and the classifier to the whole vector. Here the
user state also carries the two sums the score is made of::

    s1 = sum_t coef_t * idf_t * tf(c_t)       (numerator of coef . x)
    s2 = sum_t (idf_t * tf(c_t)) ** 2         (squared L2 norm of tf * idf)
    p_user = sigmoid(intercept + s1 / sqrt(s2))

with tf(c) = c, or 1 + ln(c) for a sublinear-tf model. A new writing with
term counts d_t changes each sum only at its own terms, by the difference
between tf(c_t + d_t) and tf(c_t): only the terms of the new writing are touched,
so the cost does not grow with the user's history, and the result equals the
model applied to the concatenation of the user's writings (up to float
rounding, far below 1e-9; a property test checks it against scikit-learn).

The loop runs in C, in the optional extension :mod:`models._fastscore`: the
same splitting, the same formulas in the same order, so the same bits (a
property test compares the two paths);
without the extension, or with ``EARLYRISK_PURE_PYTHON=1`` in the environment,
everything runs in Python.

Only in-vocabulary counts are kept, so state is bounded by the vocabulary.
The state also remembers the ids of the user's most recent submissions, to
drop redeliveries, and the alerts sent so far.
"""

from __future__ import annotations

import hashlib
import math
import os
import struct
from collections import _count_elements  # C helper behind Counter
from typing import NamedTuple

import numpy as np

from models.portable import PortableModel, sigmoid
from models.tokenize import (
    MAX_PHRASE_WORDS,
    NEGATED_PREFIX,
    NEGATION_CUES,
    SCOPE_ENDERS,
    display_term,
)

try:
    from models import _fastscore
except ImportError:  # not compiled (no C compiler at install): the Python path
    _fastscore = None

DEFAULT_DEDUPE_WINDOW = 2048
# tf(c) = 1 + ln(c) for small counts, looked up instead of computed.
_LOG_TF = [0.0] + [1.0 + math.log(c) for c in range(1, 4096)]
_LOG_TF_SQ = [x * x for x in _LOG_TF]
PURE_PYTHON_ENV = "EARLYRISK_PURE_PYTHON"


def compiled_available() -> bool:
    """Whether the compiled scoring loop is built (and not switched off)."""
    return _fastscore is not None and not os.environ.get(PURE_PYTHON_ENV)
_STATE_VERSION = 1
_HEADER = struct.Struct("<BIHbddd")  # version, n, alerts, last_band, s1, s2, last_event


def submission_fingerprint(submission_id: str) -> int:
    """64-bit fingerprint of a submission id, for the dedupe window."""
    return int.from_bytes(hashlib.blake2b(submission_id.encode(), digest_size=8).digest(), "little")


def _log_tf(c: int) -> float:
    return 1.0 + math.log(c) if c else 0.0


class UserState:
    """Everything scoring needs to know about one user. Mutable, small."""

    __slots__ = ("alerts", "counts", "last_band", "last_event", "n", "recent", "s1", "s2")

    def __init__(self) -> None:
        self.counts: dict[int, int] = {}
        self.s1 = 0.0
        self.s2 = 0.0
        self.n = 0
        self.alerts = 0
        self.last_band = -1  # -1: no alert yet; else 0 (P0) .. 4 (P4)
        self.last_event = float("-inf")
        self.recent: dict[int, None] = {}  # insertion-ordered fingerprints

    # -- dedupe -------------------------------------------------------------------
    def seen(self, submission_id: str) -> bool:
        return submission_fingerprint(submission_id) in self.recent

    def remember(self, submission_id: str, window: int = DEFAULT_DEDUPE_WINDOW) -> bool:
        """Remember ``submission_id``; False if it was already in the window."""
        fp = submission_fingerprint(submission_id)
        recent = self.recent
        if fp in recent:
            return False
        recent[fp] = None
        while len(recent) > window:
            del recent[next(iter(recent))]
        return True

    # -- encoding (compact, versioned; used as the Beam state coder) --------------
    def to_bytes(self) -> bytes:
        parts = [
            _HEADER.pack(
                _STATE_VERSION, self.n, min(self.alerts, 0xFFFF), self.last_band,
                self.s1, self.s2, self.last_event,
            )
        ]
        if self.counts:
            n = len(self.counts)
            ids = np.fromiter(self.counts.keys(), dtype=np.int64, count=n)
            cnt = np.fromiter(self.counts.values(), dtype=np.int64, count=n)
            if int(cnt.max()) < 1 << 32 and int(ids.max()) < 1 << 31:
                # One sort of (id, count) packed in an int64: ids are distinct,
                # so this orders by id; cheaper than argsort and two gathers.
                packed = np.sort((ids << 32) | cnt)
                ids, cnt = packed >> 32, packed & 0xFFFFFFFF
            else:
                order = np.argsort(ids, kind="stable")
                ids, cnt = ids[order], cnt[order]
            deltas = ids.copy()
            deltas[1:] -= ids[:-1]  # np.diff(ids, prepend=0), without the copy it makes
        else:
            deltas = cnt = np.zeros(0, dtype=np.int64)
        parts.append(_pack_uints(deltas))
        parts.append(_pack_uints(cnt))
        fps = np.fromiter(self.recent.keys(), dtype=np.uint64, count=len(self.recent))
        parts.append(struct.pack("<I", len(fps)))
        parts.append(fps.astype("<u8").tobytes())
        return b"".join(parts)

    @classmethod
    def from_bytes(cls, data: bytes) -> UserState:
        if not data or data[0] != _STATE_VERSION:
            raise ValueError(f"unknown user-state encoding version {data[:1]!r}")
        st = cls()
        (_, st.n, st.alerts, st.last_band, st.s1, st.s2, st.last_event) = _HEADER.unpack_from(data)
        pos = _HEADER.size
        deltas, pos = _unpack_uints(data, pos)
        cnt, pos = _unpack_uints(data, pos)
        ids = np.cumsum(deltas)
        st.counts = dict(zip(ids.tolist(), cnt.tolist()))
        (n_fp,) = struct.unpack_from("<I", data, pos)
        pos += 4
        fps = np.frombuffer(data, dtype="<u8", count=n_fp, offset=pos)
        st.recent = dict.fromkeys(fps.tolist())
        return st

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, UserState):
            return NotImplemented
        return all(getattr(self, s) == getattr(other, s) for s in self.__slots__)

    def __repr__(self) -> str:
        return (
            f"UserState(n={self.n}, terms={len(self.counts)}, s1={self.s1:.6g}, "
            f"s2={self.s2:.6g}, alerts={self.alerts}, recent={len(self.recent)})"
        )


_WIDTHS = ((0xFF, "<u1", 1), (0xFFFF, "<u2", 2), (0xFFFFFFFF, "<u4", 4))


def _pack_uints(values: np.ndarray) -> bytes:
    """Count, byte width and the values at the narrowest width that holds them."""
    top = int(values.max()) if len(values) else 0
    dtype, width = "<u8", 8
    for limit, dt, w in _WIDTHS:
        if top <= limit:
            dtype, width = dt, w
            break
    return struct.pack("<IB", len(values), width) + values.astype(dtype).tobytes()


def _unpack_uints(data: bytes, pos: int) -> tuple[np.ndarray, int]:
    n, width = struct.unpack_from("<IB", data, pos)
    pos += 5
    arr = np.frombuffer(data, dtype=f"<u{width}", count=n, offset=pos).astype(np.int64)
    return arr, pos + n * width


# Flags of the compiled scorer's extra keys (models/_fastscore.c).
_F_CUE, _F_ENDER, _F_SUFFIX = 1, 2, 4


def _feature_tables(model: PortableModel) -> tuple[list, list]:
    """The tokenizer version 2 features, as the compiled scorer's extra keys and pairs.

    Extra keys: negation cues and scope enders (flagged); every word X with a
    negated term ``neg:X`` in the model (with that term's id); lexicon
    entries (words joined by one space) with the (term id, negated term id)
    pairs they count for, in the order the tokenizer emits them; the proper
    suffixes of multi-word entries (flagged) and every word of them. Pairs:
    the words adjacent in some multi-word entry. Entries that count for no
    term of the model are left out, with their suffixes and pairs: they cannot
    change a score.
    """
    tok = model.tokenizer
    index = model.index
    keys: dict[str, list] = {}  # key -> [flags, hits, negated term id]

    def key(k: str) -> list:
        got = keys.get(k)
        if got is None:
            got = keys[k] = [0, [], -1]
        return got

    if tok.negation_window:
        for w in NEGATION_CUES:
            key(w)[0] |= _F_CUE
        for w in SCOPE_ENDERS:
            key(w)[0] |= _F_ENDER
        for t, i in index.items():
            if t.startswith(NEGATED_PREFIX):
                key(t[len(NEGATED_PREFIX):])[2] = i
    pairs: set[tuple[str, str]] = set()
    lex = tok.lexicon
    if lex is not None:
        for words, hits in lex.phrases.items():
            ids: list[int] = []
            for term, negatable in hits:
                pos = index.get(term, -1)
                neg = index.get(NEGATED_PREFIX + term, -1) if negatable else pos
                if pos >= 0 or neg >= 0:
                    ids += (pos, neg)
            if not ids:
                continue
            key(" ".join(words))[1].extend(ids)
            for k in range(1, len(words)):
                key(" ".join(words[k:]))[0] |= _F_SUFFIX
                key(words[k - 1])
                pairs.add((words[k - 1], words[k]))

    def enc(k: str) -> bytes:
        return k.encode("utf-8", "surrogatepass")

    extra = [(enc(k), f, h, n) for k, (f, h, n) in keys.items()]
    return extra, [(enc(a), enc(b)) for a, b in sorted(pairs)]


class Scored(NamedTuple):
    """The scorer's answer for one writing (a NamedTuple: cheap to build per writing)."""

    p_text: float
    p_user: float
    writings_seen: int


class IncrementalScorer:
    """Scores writings one at a time against a PortableModel.

    ``compiled``: use the C loop (default: when it is
    built and ``EARLYRISK_PURE_PYTHON`` is not set); ``False`` forces the
    Python path, which gives identical results.
    """

    def __init__(self, model: PortableModel, compiled: bool | None = None) -> None:
        self.model = model
        self.version = model.version
        self._tokens = model.tokenizer.tokens
        self._keys = model.tokenizer.keys
        self._index = {t: i for i, t in enumerate(model.vocabulary)}
        wi = np.asarray(model.coef) * np.asarray(model.idf)
        self._wi = wi.tolist()
        self._idf2 = (np.asarray(model.idf) ** 2).tolist()
        # Term key -> (id, coef * idf, idf**2): one lookup per distinct term of a
        # writing; out-of-vocabulary keys miss. Bytes keys for the tokeniser's
        # ASCII fast path, str keys otherwise (see Tokenizer.keys).
        self._str_terms = {t: (i, self._wi[i], self._idf2[i]) for t, i in self._index.items()}
        self._byte_terms = {t.encode("ascii"): v for t, v in self._str_terms.items()
                            if t.isascii()}
        self._intercept = float(model.intercept)
        self._sublinear = bool(model.sublinear_tf)
        self._positive = [int(i) for i in np.flatnonzero(wi > 0)]
        self._normalize = model.tokenizer.normalize
        self._normalized_keys = model.tokenizer.normalized_keys
        if compiled is None:
            compiled = compiled_available()
        elif compiled and _fastscore is None:
            raise RuntimeError("the compiled scorer (models._fastscore) is not built")
        self._fast = None
        if compiled:
            if (len(_LOG_TF) != _fastscore.LOG_TABLE
                    or getattr(_fastscore, "MAX_PHRASE", None) != MAX_PHRASE_WORDS):
                raise RuntimeError("models._fastscore is stale: rebuild it (pip install -e .)")
            self._fast = _fastscore.Vocab(
                [t.encode("utf-8", "surrogatepass") for t in model.vocabulary],
                self._wi, self._idf2, model.tokenizer.url_token.encode("ascii"),
                model.tokenizer.max_token_chars, self._sublinear,
                negation_window=model.tokenizer.negation_window,
                **dict(zip(("extra", "pairs"), _feature_tables(model))))

    @property
    def compiled(self) -> bool:
        """Whether writings go through the compiled loop."""
        return self._fast is not None

    def _key_counts(self, text: str, n_urls: int | None = None) -> tuple[dict, dict]:
        """Counts of each term key of ``text`` and the table to look the keys up in.

        With ``n_urls``, ``text`` is already normalised (see Tokenizer.normalize).
        """
        keys = self._keys(text) if n_urls is None else self._normalized_keys(text, n_urls)
        counted: dict = {}
        _count_elements(counted, keys)  # Counter's C loop, without Counter's overhead
        terms = self._byte_terms if keys and type(keys[0]) is bytes else self._str_terms
        return counted, terms

    def term_counts(self, text: str) -> list[tuple[int, int]]:
        """In-vocabulary (term id, count) pairs of one text, in order of appearance."""
        counted, terms = self._key_counts(text)
        get = terms.get
        return [(t[0], d) for k, d in counted.items() if (t := get(k)) is not None]

    def _logit(self, s1: float, s2: float) -> float:
        return self._intercept + (s1 / math.sqrt(s2) if s2 > 0.0 else 0.0)

    def logit(self, s1: float, s2: float) -> float:
        """The user's logit from their running sums (the intercept when empty)."""
        return self._logit(s1, s2)

    def score_text(self, text: str) -> float:
        """Probability of one text on its own."""
        wi, idf2, log = self._wi, self._idf2, math.log
        s1 = s2 = 0.0
        for i, d in self.term_counts(text):
            tf = 1.0 + log(d) if self._sublinear else d
            s1 += wi[i] * tf
            s2 += idf2[i] * tf * tf
        return sigmoid(self._logit(s1, s2))

    def update(self, state: UserState, text: str, event_time: float | None = None) -> Scored:
        """Add one writing to ``state`` (in place) and score text and user."""
        fast = self._fast
        if fast is not None:
            # Plain ASCII text without URLs is scanned as it is; anything else
            # is normalised first (fast.update answers None to ask for that).
            sums = fast.update(text, -1, state.counts, state.s1, state.s2)
            if sums is None:
                sums = fast.update(*self._normalize(text), state.counts, state.s1, state.s2)
            t1, t2, u1, u2 = sums
        else:
            t1, t2, u1, u2 = self._update_python(state, *self._normalize(text))
        state.s1 = u1
        state.s2 = u2
        state.n += 1
        if event_time is not None and event_time > state.last_event:
            state.last_event = event_time
        return Scored(
            p_text=sigmoid(self._logit(t1, t2)),
            p_user=sigmoid(self._logit(u1, u2)),
            writings_seen=state.n,
        )

    def _update_python(self, state: UserState, norm: str,
                       n_urls: int) -> tuple[float, float, float, float]:
        """The specification of the compiled loop: the writing's sums and the user's new ones."""
        counts = state.counts
        t1 = t2 = 0.0
        u1 = state.s1
        u2 = state.s2
        counted, terms = self._key_counts(norm, n_urls)
        lookup = terms.get
        # In-vocabulary (id, coef * idf, idf**2) and count, in order of first appearance.
        found = [(t, d) for k, d in counted.items() if (t := lookup(k)) is not None]
        get = counts.get
        if self._sublinear:
            # x_t = 1 + ln(c_t): update by the difference of old and new tf.
            # Table lookups for tf and tf**2 (counts past the table are rare and
            # computed).
            table, sq, n_table = _LOG_TF, _LOG_TF_SQ, len(_LOG_TF)
            for (i, w, q), d in found:
                c = get(i, 0)
                e = c + d
                if e < n_table:
                    t1 += w * table[d]
                    t2 += q * sq[d]
                    u1 += w * (table[e] - table[c])
                    u2 += q * (sq[e] - sq[c])
                else:
                    tf = _log_tf(d)
                    new = _log_tf(e)
                    old = _log_tf(c)
                    t1 += w * tf
                    t2 += q * tf * tf
                    u1 += w * (new - old)
                    u2 += q * (new * new - old * old)
                counts[i] = e
        else:
            for (i, w, q), d in found:
                c = get(i, 0)
                t1 += w * d
                t2 += q * d * d
                u1 += w * d
                u2 += q * (2 * c + d) * d
                counts[i] = c + d
        return t1, t2, u1, u2

    def probability(self, state: UserState) -> float:
        return sigmoid(self._logit(state.s1, state.s2))

    def top_terms(self, state: UserState, n: int = 5) -> list[tuple[str, float]]:
        """Terms that push the user's score up most: (display term, coef * x_t).

        Negated terms display as "not WORD", lexicon pseudo-terms by their
        category (models.tokenize.display_term).
        """
        if state.s2 <= 0.0:
            return []
        norm = math.sqrt(state.s2)
        counts, wi, vocab = state.counts, self._wi, self.model.vocabulary

        def tf(c: int) -> float:
            return 1.0 + math.log(c) if self._sublinear else float(c)

        contrib = [(wi[i] * tf(counts[i]) / norm, i) for i in self._positive if i in counts]
        contrib.sort(reverse=True)
        return [(display_term(vocab[i]), round(v, 6)) for v, i in contrib[:n]]

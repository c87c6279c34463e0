"""Why a writing scored as it did: per-term logit contributions and spans.

The model is linear in the logit: for one writing with term counts ``c_t``::

    x_t   = idf_t * tf(c_t) / ||idf * tf(c)||_2
    logit = intercept + sum_t coef_t * x_t
    p     = sigmoid(logit)

so ``coef_t * x_t`` is exactly how much term ``t`` moved this writing's
logit (log-odds) away from the intercept, and the contributions of a writing
add up to ``logit - intercept``. That is the unit of every figure here:
**logit contribution**, not probability (a probability change depends on
where the logit started; a logit contribution does not).

Features are the model's terms: words, negated words (``neg:WORD``, a word
inside a negation's scope; see :mod:`models.tokenize`) and pseudo-terms
(lexicon categories, first-person pronouns). A :class:`TermContribution`
carries both the model's ``feature`` and a display ``term``; lexicon
pseudo-terms are highlighted on the words that triggered them.

No Beam, no I/O: the review app, the pipeline's alert step and notebooks
call these functions directly.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from models.portable import PortableModel, sigmoid
from models.tokenize import describe_feature

# Probabilities are clipped this far from 0 and 1 before taking their logit.
_P_EPS = 1e-15


@dataclass(frozen=True)
class TermContribution:
    """One feature's share of a writing's logit.

    ``term``: display form (a word, or a lexicon category's name);
    ``feature``: the model's term or pseudo-term; ``count``: occurrences in
    the writing; ``logit``: ``coef * idf * tf(count) / ||x||``, the feature's
    contribution to the writing's logit; ``negated``: the word occurred
    inside a negation's scope (the feature is ``neg:...``).
    """

    term: str
    feature: str
    count: int
    logit: float
    negated: bool


@dataclass(frozen=True)
class WritingExplanation:
    """A writing's score, split into the features that moved it.

    ``logit = intercept + sum of every contribution``; ``up`` holds the
    largest positive contributions (largest first), ``down`` the largest
    negative ones (most negative first).
    """

    p_text: float
    logit: float
    intercept: float
    up: tuple[TermContribution, ...]
    down: tuple[TermContribution, ...]


@dataclass(frozen=True)
class Span:
    """A stretch of the original text that carries weight, for highlighting.

    ``start``/``end``: character offsets into the text as given; ``logit``:
    this occurrence's share of its feature's contribution (the feature's
    contribution divided evenly among its occurrences); ``feature``: the
    model's term or pseudo-term. Spans of different features may overlap
    (a word and the lexicon categories it triggers); a viewer sums them.
    """

    start: int
    end: int
    logit: float
    negated: bool
    feature: str


def _tf(count: int, sublinear: bool) -> float:
    return 1.0 + math.log(count) if sublinear else float(count)


def contributions(model: PortableModel, text: str) -> tuple[dict[str, float], Counter[str]]:
    """Every in-vocabulary feature's logit contribution in ``text``, and the counts."""
    counts = Counter(model.tokenizer.tokens(text))
    index = model.index
    weighted: list[tuple[str, float, float]] = []  # feature, idf*tf, coef
    norm2 = 0.0
    for feature, c in counts.items():
        i = index.get(feature)
        if i is None:
            continue
        v = float(model.idf[i]) * _tf(c, model.sublinear_tf)
        norm2 += v * v
        weighted.append((feature, v, float(model.coef[i])))
    if norm2 <= 0.0:
        return {}, counts
    norm = math.sqrt(norm2)
    return {f: coef * v / norm for f, v, coef in weighted}, counts


def explain_text(model: PortableModel, text: str, top: int = 8) -> WritingExplanation:
    """The ``top`` features that pushed ``text``'s logit up, and those that pushed it down."""
    contrib, counts = contributions(model, text)
    logit = float(model.intercept) + sum(contrib.values())

    def item(feature: str, value: float) -> TermContribution:
        term, negated = describe_feature(feature)
        return TermContribution(term=term, feature=feature, count=counts[feature],
                                logit=value, negated=negated)

    ranked = sorted(contrib.items(), key=lambda kv: (-kv[1], kv[0]))
    up = tuple(item(f, v) for f, v in ranked if v > 0.0)[:top]
    down = tuple(item(f, v) for f, v in reversed(ranked) if v < 0.0)[:top]
    return WritingExplanation(p_text=sigmoid(logit), logit=logit,
                              intercept=float(model.intercept), up=up, down=down)


def highlight_spans(model: PortableModel, text: str) -> list[Span]:
    """Spans of ``text`` whose features carry non-zero weight, in text order."""
    contrib, counts = contributions(model, text)
    out = []
    for feature, start, end in model.tokenizer.spans(text):
        value = contrib.get(feature)
        if value:
            out.append(Span(start=start, end=end, logit=value / counts[feature],
                            negated=describe_feature(feature)[1], feature=feature))
    out.sort(key=lambda s: (s.start, s.end, s.feature))
    return out


def logit(p: float) -> float:
    """log(p / (1 - p)), with p clipped to [1e-15, 1 - 1e-15] so it stays finite."""
    p = min(max(p, _P_EPS), 1.0 - _P_EPS)
    return math.log(p / (1.0 - p))


def writing_moves(p_users: Sequence[float], intercept: float = 0.0) -> list[float]:
    """How much each writing moved the user's logit, from the stored p_user sequence.

    ``p_users[k]`` is the user's probability after writing ``k`` (the
    ``scores.p_user`` column in ``writings_seen`` order). Move ``k`` is
    ``logit(p_users[k]) - logit(p_users[k - 1])``; the first writing's move
    is measured from ``intercept``: pass the model's intercept to measure it
    from the score of a user with no writings yet (what the scorer gives an
    empty history); the default 0 measures it from even odds (p = 0.5).
    """
    moves = []
    prev = intercept
    for p in p_users:
        z = logit(p)
        moves.append(z - prev)
        prev = z
    return moves


#: Version of the alert explanation JSON (docs/MODEL.md, "Explanations").
EXPLANATION_FORMAT = 1


def _contribution_json(c: TermContribution) -> dict:
    return {"term": c.term, "feature": c.feature, "count": c.count,
            "logit": round(c.logit, 6), "negated": c.negated}


def alert_explanation(model: PortableModel, text: str, submission_id: str,
                      user_logit_before: float, user_logit_after: float,
                      top: int = 8) -> dict:
    """What an alert stores to explain itself (``alerts.explanation``, as JSON).

    The triggering writing's own score and its ``top`` up and down terms, and
    how much that writing moved the user's logit (``user_move``: the user's
    logit after it minus before it; before a user's first writing the logit
    is the intercept). All weights are logit contributions.
    """
    ex = explain_text(model, text, top)
    return {
        "format": EXPLANATION_FORMAT,
        "unit": "logit",
        "intercept": round(ex.intercept, 6),
        "writing": {
            "submission_id": submission_id,
            "p_text": round(ex.p_text, 6),
            "logit": round(ex.logit, 6),
            "user_move": round(user_logit_after - user_logit_before, 6),
            "up": [_contribution_json(c) for c in ex.up],
            "down": [_contribution_json(c) for c in ex.down],
        },
    }

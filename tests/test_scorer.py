"""The incremental scorer equals the model applied to the joined document.

The property test draws thousands of random streams (real Reddit posts, random
vocabulary words, junk) and checks, after every writing k, that the scorer's
user probability equals scikit-learn's prediction on the first k writings
joined by a blank line, within 1e-9.
"""

from __future__ import annotations

import csv
import gzip
import math
import random
from functools import lru_cache

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models.portable import PortableModel
from models.scorer import IncrementalScorer, UserState
from models.tokenize import join_writings
from tests.conftest import REPO, feature_model, random_model

TOL = 1e-9


@lru_cache(maxsize=1)
def real_posts() -> tuple[str, ...]:
    with gzip.open(REPO / "data" / "rmhd-sample" / "posts.csv.gz", "rt", encoding="utf-8") as f:
        return tuple(r["post"] for r in csv.DictReader(f))


@lru_cache(maxsize=8)
def setup(which: str) -> tuple[IncrementalScorer, object]:
    model = {
        "bundled": lambda: PortableModel.load(),
        "random-raw": lambda: random_model(1, sublinear=False),
        "random-sublinear": lambda: random_model(2, sublinear=True),
        "features-raw": lambda: feature_model(3, sublinear=False),
        "features-sublinear": lambda: feature_model(4, sublinear=True),
    }[which]()
    return IncrementalScorer(model), model.to_sklearn()


# Negation cues, scope enders, clause boundaries and lexicon phrases (some
# several words long, some overlapping): the tokenizer version 2 features.
FEATURE_PIECES = (
    "not", "Not", "no", "never", "don't", "can’t", "cant", "nothing", "without", "but",
    "However", "though", ".", ",", "!", "?", ";", ":", "(", ")", '"', "\n", "\u2026",
    "\u2014", "\u201c", "suicidal", "I", "me", "my", "I'm", "im", "want", "to", "die",
    "i want to die", "end it all", "better off dead", "hopeless", "tired", "sleep",
    "can't sleep", "empty", "alone", "happy", "love", "worthless", "kill myself", "pills",
    "feel", "like", "a", "burden", "giving up", "sad", "depressed", "x" * 41,
)


def feature_text(rng: random.Random) -> str:
    pieces = [rng.choice(FEATURE_PIECES) for _ in range(rng.randint(0, 40))]
    return "".join(p + rng.choice(["", " ", " ", "  ", "\n", "-"]) for p in pieces)


def writing(draw_kind: int, rng: random.Random, vocab: tuple[str, ...]) -> str:
    if draw_kind == 4:
        return feature_text(rng)
    if draw_kind == 0:
        return rng.choice(real_posts())
    if draw_kind == 1:
        # Dense in-vocabulary text with repeats: exercises count growth.
        return " ".join(rng.choice(vocab) for _ in range(rng.randint(0, 80)))
    if draw_kind == 2:
        return rng.choice(["", "   ", "!!!", "http://x.y/z", "I I I I", "Ünïcödé wörds"])
    return rng.choice(real_posts())[: rng.randint(0, 200)] + " " + rng.choice(vocab)


def check_stream(which: str, texts: list[str]) -> None:
    scorer, sk = setup(which)
    state = UserState()
    got = [scorer.update(state, t) for t in texts]
    prefixes = [join_writings(texts[: k + 1]) for k in range(len(texts))]
    want = sk.predict_proba(prefixes)[:, 1]
    single = sk.predict_proba(texts)[:, 1]
    for k, (g, w, s) in enumerate(zip(got, want, single)):
        assert g.writings_seen == k + 1
        assert abs(g.p_user - w) <= TOL, (k, g.p_user, w)
        assert abs(g.p_text - s) <= TOL, (k, g.p_text, s)
    assert abs(scorer.probability(state) - want[-1]) <= TOL


stream_spec = st.lists(
    st.tuples(st.integers(0, 4), st.integers(0, 2**32 - 1)), min_size=1, max_size=12)


@pytest.mark.parametrize("which", ["bundled", "random-raw", "random-sublinear",
                                   "features-raw", "features-sublinear"])
@settings(max_examples=700, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=stream_spec)
def test_incremental_equals_joined_document(which, spec):
    scorer, _ = setup(which)
    vocab = scorer.model.vocabulary
    texts = [writing(kind, random.Random(seed), vocab) for kind, seed in spec]
    check_stream(which, texts)


def test_long_history_stays_exact():
    # 1,000 writings: float drift of the running sums stays far below 1e-9.
    rng = random.Random(7)
    texts = [rng.choice(real_posts()) for _ in range(1000)]
    for which in ("bundled", "random-raw", "features-sublinear"):
        scorer, sk = setup(which)
        state = UserState()
        for t in texts:
            last = scorer.update(state, t)
        want = sk.predict_proba([join_writings(texts)])[0, 1]
        assert abs(last.p_user - want) <= TOL


def test_predict_documents_matches_sklearn(bundled_model):
    docs = list(real_posts()[:50]) + ["", "I I I"]
    ours = bundled_model.predict_documents(docs)
    theirs = bundled_model.to_sklearn().predict_proba(docs)[:, 1]
    assert np.max(np.abs(ours - theirs)) <= TOL


@settings(max_examples=300, deadline=None)
@given(spec=stream_spec, window=st.integers(1, 20))
def test_state_encoding_round_trip_and_continuation(spec, window):
    scorer, _ = setup("random-raw")
    vocab = scorer.model.vocabulary
    texts = [writing(kind, random.Random(seed), vocab) for kind, seed in spec]
    a = UserState()
    for i, t in enumerate(texts):
        scorer.update(a, t, event_time=1.5e9 + i)
        a.remember(f"id{i}", window)
    a.alerts, a.last_band = 2, 1
    b = UserState.from_bytes(a.to_bytes())
    assert a == b
    assert len(b.recent) == min(window, len(texts))
    # Scoring continues identically from the decoded state.
    ra, rb = scorer.update(a, texts[0]), scorer.update(b, texts[0])
    assert ra == rb


def test_state_bytes_per_term_is_small(bundled_model):
    scorer = IncrementalScorer(bundled_model)
    state = UserState()
    for t in real_posts()[:300]:
        scorer.update(state, t)
    body = len(state.to_bytes()) - len(UserState().to_bytes())
    assert len(state.counts) > 1000
    assert body / len(state.counts) <= 8


def test_unknown_state_version_refused():
    with pytest.raises(ValueError, match="version"):
        UserState.from_bytes(b"\x09" + UserState().to_bytes()[1:])


def test_dedupe_window_is_bounded():
    s = UserState()
    for i in range(50):
        s.remember(f"t3_{i}", window=10)
    assert len(s.recent) == 10
    assert s.seen("t3_49") and s.seen("t3_40") and not s.seen("t3_39")


def test_top_terms_are_the_largest_positive_contributions():
    model = random_model(3, sublinear=True)
    scorer = IncrementalScorer(model)
    state = UserState()
    text = " ".join(model.vocabulary[:200])
    scorer.update(state, text)
    scorer.update(state, " ".join(model.vocabulary[:50]))
    top = scorer.top_terms(state, n=5)
    index = {t: i for i, t in enumerate(model.vocabulary)}
    norm = math.sqrt(state.s2)
    brute = sorted(
        ((model.coef[i] * model.idf[i] * (1 + math.log(c)) / norm, model.vocabulary[i])
         for i, c in state.counts.items() if model.coef[i] > 0), reverse=True)[:5]
    assert [t for t, _ in top] == [t for _, t in brute]
    assert all(model.coef[index[t]] > 0 for t, _ in top)
    assert scorer.top_terms(UserState()) == []

"""Per-writing explanations: contributions add up to the model's logit, spans
point at the words of the original text, moves follow the stored p_user."""

from __future__ import annotations

import math
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.explain import explain_text, highlight_spans, logit, writing_moves
from models.portable import PortableModel
from models.scorer import IncrementalScorer, UserState
from tests.conftest import random_model

TEXTS = (
    "Honestly I have been sleeping badly for weeks and I feel tired all the time",
    "Went to the farmers market this morning",
    "I can't do this anymore. Nobody cares, I'm ALONE http://x.y/z and tired.",
    "İstanbul’da CAFÉ — I’m so TIRED, don’t ask",
    "",
    "!!! ...",
)


@pytest.mark.parametrize("sublinear", [False, True])
@pytest.mark.parametrize("text", TEXTS)
def test_contributions_add_up_to_the_scored_logit(sublinear, text):
    model = random_model(3, sublinear=sublinear, density=0.8)
    ex = explain_text(model, text, top=10_000)
    p = IncrementalScorer(model, compiled=False).update(UserState(), text).p_text
    assert ex.p_text == pytest.approx(p, abs=1e-12)
    assert ex.intercept == model.intercept
    total = sum(c.logit for c in ex.up) + sum(c.logit for c in ex.down)
    assert ex.logit == pytest.approx(model.intercept + total, abs=1e-12)
    assert ex.p_text == pytest.approx(1 / (1 + math.exp(-ex.logit)), abs=1e-12)
    assert [c.logit for c in ex.up] == sorted((c.logit for c in ex.up), reverse=True)
    assert [c.logit for c in ex.down] == sorted(c.logit for c in ex.down)
    assert all(c.logit > 0 for c in ex.up) and all(c.logit < 0 for c in ex.down)
    counts = Counter(model.tokenizer.tokens(text))
    assert all(c.count == counts[c.feature] for c in ex.up + ex.down)


def test_top_limits_each_side():
    model = random_model(3, density=1.0)
    text = " ".join(model.vocabulary[:60])
    ex = explain_text(model, text, top=3)
    assert len(ex.up) == 3 and len(ex.down) == 3


def test_spans_point_at_the_original_words():
    model = random_model(3, density=1.0)
    words = [w for w in model.vocabulary if w.isalpha()][:5]
    text = f"{words[0].upper()},  {words[1]}!\n{words[2]} x {words[0]}"
    spans = highlight_spans(model, text)
    assert [text[s.start:s.end].lower() for s in spans] == [words[0], words[1], words[2],
                                                            words[0]]
    ex = explain_text(model, text, top=100)
    by_feature = {c.feature: c.logit for c in ex.up + ex.down}
    # each occurrence carries an equal share of its feature's contribution
    assert sum(s.logit for s in spans if s.feature == words[0]) == pytest.approx(
        by_feature[words[0]])


@settings(max_examples=150, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("aBcİı’' .,\nhttp:/wẞ1é\u0301")), max_size=60))
def test_tokenizer_spans_are_the_tokens(text):
    tok = PortableModel.load().tokenizer
    spans = tok.spans(text)
    assert [t for t, _, _ in spans] == tok.tokens(text)
    for _term, a, b in spans:
        assert 0 <= a < b <= len(text)


def test_writing_moves_follow_the_logit():
    ps = [0.2, 0.5, 0.9, 0.9, 0.3]
    moves = writing_moves(ps, intercept=logit(0.1))
    assert moves[0] == pytest.approx(logit(0.2) - logit(0.1))
    assert moves[2] == pytest.approx(math.log(9.0))
    assert moves[3] == 0.0
    assert sum(moves) == pytest.approx(logit(0.3) - logit(0.1))
    assert writing_moves([0.5]) == [0.0]
    assert all(math.isfinite(m) for m in writing_moves([0.0, 1.0]))
    assert writing_moves([]) == []


def test_feature_spans_attach_to_the_words_that_triggered_them():
    from tests.conftest import feature_model

    model = feature_model(5)
    text = "Honestly, I WANT to die. Not hopeless though"
    spans = highlight_spans(model, text)
    by_feature: dict[str, list[str]] = {}
    for s in spans:
        by_feature.setdefault(s.feature, []).append(text[s.start:s.end])
    # a multi-word lexicon entry spans its words in the original text
    assert "I WANT to die" in by_feature["__lex_srl_passive_suicidal_ideation"]
    assert "WANT to die" in by_feature["__lex_srl_passive_suicidal_ideation"]
    assert by_feature["__fp_sing"] == ["I"]
    # inside a negation's scope: negated word and negated category, on "hopeless"
    assert by_feature["neg:__lex_srl_hopelessness"] == ["hopeless"]
    assert all(s.negated == s.feature.startswith("neg:") for s in spans)
    ex = explain_text(model, text, top=1000)
    items = {c.feature: c for c in ex.up + ex.down}
    assert items["neg:__lex_srl_hopelessness"].negated
    assert items["neg:__lex_srl_hopelessness"].term == "SRL: hopelessness"
    assert items["__fp_sing"].term == "first-person singular"
    p = IncrementalScorer(model).update(UserState(), text).p_text
    assert ex.p_text == pytest.approx(p, abs=1e-12)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.sampled_from(list("aBİı’' .,\nhttp:/!") + ["not ", "I ", "want to die ",
                                                                 "hopeless "]),
                max_size=40).map("".join))
def test_feature_spans_are_the_tokens(text):
    from models.tokenize import LEXICON_GROUPS, Tokenizer

    tok = Tokenizer(version=2, negation_window=3, lexicons=LEXICON_GROUPS)
    spans = tok.spans(text)
    assert [t for t, _, _ in spans] == tok.tokens(text)
    assert all(0 <= a < b <= len(text) for _, a, b in spans)

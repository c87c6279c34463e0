"""The compiled scoring loop gives the Python scorer's results, bit for bit.

models/scorer.py's Python loop is the specification (and it matches
scikit-learn, tests/test_scorer.py); the C loop in models/_fastscore.c must
split, look up, count and add exactly as it does. These tests feed both the
same adversarial streams (case, apostrophes straight and curly, URLs, Unicode
letters and digits, emoji, long terms, odd whitespace) and require equal
floats, equal counts and equal encoded state: not close, equal.
"""

from __future__ import annotations

import random
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models import scorer as scorer_module
from models.portable import PortableModel
from models.scorer import PURE_PYTHON_ENV, IncrementalScorer, UserState
from models.tokenize import NEGATED_PREFIX, Tokenizer
from tests.conftest import FEATURES, REPO, feature_model, random_model
from tests.test_scorer import FEATURE_PIECES, feature_text, real_posts

pytestmark = pytest.mark.skipif(scorer_module._fastscore is None,
                                reason="models._fastscore is not built (no C compiler?)")

# Terms that exercise every branch of the scanner: non-ASCII letters (Latin-1,
# BMP, astral), non-ASCII digits, apostrophes inside terms, a 40-character
# term (the tokenizer's limit), the URL token.
UNICODE_TERMS = ("café", "naïve", "straße", "ñandú", "i̇stanbul", "δεν", "мне", "日本語",
                 "١٢٣", "don't", "i'm", "x" * 40, "_url_", "𝒶𝒷", "e\u0301")


def unicode_model(sublinear: bool) -> PortableModel:
    """A random model whose vocabulary mixes English and non-ASCII terms."""
    base = random_model(5, vocab_size=200, sublinear=sublinear)
    vocab = tuple(sorted(set(base.vocabulary) | set(UNICODE_TERMS)))
    rng = np.random.default_rng(9)
    return PortableModel(name="unicode", vocabulary=vocab,
                         idf=rng.uniform(1.0, 6.0, len(vocab)), coef=rng.normal(0, 2, len(vocab)),
                         intercept=-0.3, sublinear_tf=sublinear)


def unicode_feature_model(sublinear: bool) -> PortableModel:
    """unicode_model's words with tokenizer version 2 features on top."""
    base = unicode_model(sublinear)
    feat = feature_model(6, sublinear=sublinear)
    vocab = tuple(sorted(set(base.vocabulary) | set(feat.vocabulary)
                         | {NEGATED_PREFIX + t for t in UNICODE_TERMS}))
    rng = np.random.default_rng(11)
    return PortableModel(name="unicode-features", vocabulary=vocab,
                         idf=rng.uniform(1.0, 6.0, len(vocab)), coef=rng.normal(0, 2, len(vocab)),
                         intercept=0.2, sublinear_tf=sublinear, tokenizer=FEATURES)


MODELS = {
    "bundled": PortableModel.load,
    "random-raw": lambda: random_model(1, sublinear=False),
    "unicode-raw": lambda: unicode_model(False),
    "unicode-sublinear": lambda: unicode_model(True),
    # tokenizer version 2: negation scope and lexicon pseudo-terms
    "features-raw": lambda: feature_model(7, sublinear=False),
    "features-unicode-sublinear": lambda: unicode_feature_model(True),
    "negation-only": lambda: feature_model(8, tokenizer=Tokenizer(version=2, negation_window=2)),
    "lexicons-only": lambda: feature_model(
        9, sublinear=True, tokenizer=Tokenizer(version=2, lexicons=("srl", "pronouns"))),
}
_PAIRS: dict[str, tuple[IncrementalScorer, IncrementalScorer]] = {}


def pair(which: str) -> tuple[IncrementalScorer, IncrementalScorer]:
    if which not in _PAIRS:
        model = MODELS[which]()
        _PAIRS[which] = (IncrementalScorer(model, compiled=True),
                         IncrementalScorer(model, compiled=False))
    return _PAIRS[which]


PIECES = ("I", "i'm", "I’M", "don’t", "'quoted'", "it''s", "rock'n'roll", "x'", "'x", "''",
          "http://example.com/a?b=c", "HTTPS://X.Y", "www.reddit.com/r/depression",
          "wwW.", "xhttp://y", "http", "Café", "NAÏVE", "STRASSE", "Straße", "İstanbul",
          "ΔΕΝ", "Мне", "日本語", "١٢٣", "😂", "👏🏻", "e\u0301", "𝒶𝒷", "\u00a0", "\u2014",
          "\x1c", "\t", "\n\n", "_", "__init__", "snake_case", "x" * 40, "y" * 41, "x" * 41,
          "12", "3.14", "£5", "“so”", "…", "ǅ", "ﬁne", "\ud800", "'", " ", ".", "!!")


@st.composite
def texts(draw) -> str:
    words = draw(st.lists(
        st.one_of(st.sampled_from(PIECES), st.sampled_from(UNICODE_TERMS),
                  st.text(max_size=6), st.sampled_from(FEATURE_PIECES),
                  st.sampled_from(("the", "and", "depressed", "alone", "tired", "sleep"))),
        max_size=40))
    seps = draw(st.lists(st.sampled_from(["", " ", "  ", "\n", ",", "'", "’", "-", ".", "!",
                                          "\u2026", "\u201d", "\u2014"]),
                         min_size=len(words), max_size=len(words)))
    return "".join(w + s for w, s in zip(words, seps))


def assert_same_stream(which: str, stream: list[str]) -> None:
    fast, slow = pair(which)
    assert fast.compiled and not slow.compiled
    a, b = UserState(), UserState()
    for text in stream:
        got, want = fast.update(a, text, 1.0), slow.update(b, text, 1.0)
        assert got == want, (which, text)
        assert a.counts == b.counts and list(a.counts) == list(b.counts), (which, text)
        assert (a.s1, a.s2) == (b.s1, b.s2), (which, text)
    assert a.to_bytes() == b.to_bytes()


@pytest.mark.parametrize("which", list(MODELS))
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stream=st.lists(texts(), min_size=1, max_size=8))
def test_compiled_equals_python_on_adversarial_streams(which, stream):
    assert_same_stream(which, stream)


@pytest.mark.parametrize("which", ["features-raw", "features-unicode-sublinear",
                                   "negation-only", "lexicons-only"])
def test_compiled_equals_python_on_negation_and_lexicon_text(which):
    rng = random.Random(5)
    stream = [feature_text(rng) for _ in range(300)]
    stream += [t.upper() for t in stream[:50]] + [t + " café\u2019s é" for t in stream[:50]]
    stream += ["Not suicidal. But…", "I don't want to live anymore; I want to die",
               "I can’t sleep, I’m not hopeless but tired\n\nnever happy http://x.y/z not sad"]
    assert_same_stream(which, stream)


@pytest.mark.parametrize("which", ["features-raw", "features-unicode-sublinear"])
def test_short_texts_with_more_distinct_features_than_words(which):
    # Lexicon pseudo-terms give a short text more distinct terms than the
    # compiled loop's per-writing table is first sized for (it grows): 24
    # characters, 32 distinct terms of the model.
    text = "pain. no pain. joy. fear"
    fast, _ = pair(which)
    counted = set(fast.model.tokenizer.tokens(text)) & set(fast.model.vocabulary)
    assert len(counted) > len(text)
    assert_same_stream(which, [text, text.upper(), text + " café", "die. no die. kill " * 3,
                               "i. no sad. hopeless. no joy. fear, no fear! pain; no pain"])


@pytest.mark.parametrize("which", ["bundled", "unicode-sublinear", "features-raw"])
def test_compiled_equals_python_on_real_posts_and_long_histories(which):
    rng = random.Random(3)
    posts = real_posts()
    # 1,200 writings: counts pass the 4,096 entries of the log-tf table, so the
    # computed branch runs too.
    stream = [rng.choice(posts) for _ in range(400)] + ["I " * 5000] * 2
    stream += [rng.choice(posts).upper() for _ in range(400)]
    stream += [rng.choice(posts)[: rng.randint(0, 300)] for _ in range(400)]
    assert_same_stream(which, stream)


@pytest.mark.parametrize("which", ["bundled", "features-raw"])
def test_compiled_reads_count_dicts_it_did_not_build(which):
    # The compiled loop reads the user's count dict itself (CPython's probe
    # sequence, models/_fastscore.c counts_get): its keys may be int objects it
    # did not make (a state restored from bytes), the dict may hold deleted
    # slots, and a key may share a term id's hash without being equal to it.
    fast, slow = pair(which)
    rng = random.Random(8)
    posts = real_posts()
    first = [rng.choice(posts) for _ in range(150)]
    then = [rng.choice(posts) for _ in range(150)] + [t.upper() for t in first[:50]]
    built = UserState()
    for text in first:
        fast.update(built, text)
    restored = UserState.from_bytes(built.to_bytes())
    edited = UserState.from_bytes(built.to_bytes())
    for k in list(edited.counts)[::3]:  # delete and re-add: dummy slots, fresh ints
        edited.counts[int(str(k))] = edited.counts.pop(k)
    common = max(built.counts, key=built.counts.get)  # a term the next texts have too
    alien = 2**61 - 1 + common  # hash(alien) == hash(common), alien != common
    for st_ in (restored, edited):
        st_.counts[alien] = 1
    for st_ in (restored, edited):
        want = UserState.from_bytes(built.to_bytes())
        want.counts[alien] = 1
        for text in then:
            assert fast.update(st_, text) == slow.update(want, text)
        assert st_.counts == want.counts and (st_.s1, st_.s2) == (want.s1, want.s2)
        assert st_.counts[alien] == 1


def test_compiled_scorer_is_the_default_and_can_be_switched_off(bundled_model, monkeypatch):
    assert IncrementalScorer(bundled_model).compiled
    monkeypatch.setenv(PURE_PYTHON_ENV, "1")
    assert not IncrementalScorer(bundled_model).compiled


def test_without_the_extension_the_python_path_runs():
    # A fresh interpreter where models._fastscore cannot be imported.
    code = (
        "import sys; sys.modules['models._fastscore'] = None\n"
        "from models.portable import PortableModel\n"
        "from models.scorer import IncrementalScorer, UserState, compiled_available\n"
        "s = IncrementalScorer(PortableModel.load())\n"
        "assert not compiled_available() and not s.compiled\n"
        "print(round(s.update(UserState(), 'i feel so tired and alone').p_user, 12))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                         text=True, check=True).stdout
    fast = IncrementalScorer(PortableModel.load()).update(UserState(), "i feel so tired and alone")
    assert float(out) == round(fast.p_user, 12)


def test_vocab_rejects_bad_input():
    from models._fastscore import Vocab

    with pytest.raises(ValueError, match="same length"):
        Vocab([b"a"], [1.0, 2.0], [1.0], b"_url_", 40, True)
    with pytest.raises(ValueError, match="duplicate"):
        Vocab([b"a", b"a"], [1.0, 2.0], [1.0, 1.0], b"_url_", 40, True)
    v = Vocab([b"a", "é".encode()], [1.0, 2.0], [1.0, 1.0], b"_url_", 40, True)
    assert (v.lookup(b"a"), v.lookup("é".encode()), v.lookup(b"b")) == (0, 1, -1)
    with pytest.raises(TypeError, match="extra"):
        Vocab([b"a"], [1.0], [1.0], b"_url_", 40, True, extra=[(b"x", 1, [])])
    with pytest.raises(ValueError, match="out of range"):
        Vocab([b"a"], [1.0], [1.0], b"_url_", 40, True, extra=[(b"x", 0, [5, 5], -1)])
    with pytest.raises(ValueError, match="out of range"):
        Vocab([b"a"], [1.0], [1.0], b"_url_", 40, True, extra=[(b"x", 0, [], 3)])
    with pytest.raises(ValueError, match="pair"):
        Vocab([b"a"], [1.0], [1.0], b"_url_", 40, True, pairs=[(b"a", b"zz")])
    # an extra key (a lexicon entry here) is no term of the vocabulary
    v = Vocab([b"a"], [1.0], [1.0], b"_url_", 40, True, extra=[(b"x y", 0, [0, -1], -1)])
    assert v.lookup(b"x y") == -1
    with pytest.raises(TypeError):
        v.update(b"bytes", 0, {}, 0.0, 0.0)

from hypothesis import given, settings
from hypothesis import strategies as st

from models.tokenize import Tokenizer, join_writings

tok = Tokenizer()


def test_keeps_pronouns_and_contractions():
    assert tok("I'm tired, I can't SLEEP.") == ["i'm", "tired", "i", "can't", "sleep"]


def test_curly_apostrophes_are_normalised():
    assert tok("I\u2019ve been") == ["i've", "been"]


def test_urls_become_one_token():
    assert tok("see https://example.com/a?b=c and www.x.org ok") == [
        "see", "and", "ok", "_url_", "_url_"]


def test_overlong_tokens_are_dropped():
    assert tok("a " + "x" * 41 + " b") == ["a", "b"]


def test_unicode_words():
    assert tok("Ça va très bien") == ["ça", "va", "très", "bien"]


def test_unknown_version_refused():
    import pytest

    with pytest.raises(ValueError, match="version"):
        Tokenizer(version=99)


@given(st.lists(st.text(max_size=60), max_size=6))
def test_joining_never_creates_or_merges_terms(texts):
    # The foundation of the incremental scorer's exactness.
    joined = sorted(tok(join_writings(texts)))
    separate = sorted(t for text in texts for t in tok(text))
    assert joined == separate


def _decoded(keys):
    return [k.decode("ascii") if isinstance(k, bytes) else k for k in keys]


# Alphabets that stress the ASCII fast path: apostrophes of both kinds at word
# edges and doubled, underscores, digits, URLs, capitals, and a few non-ASCII
# letters and characters that lower-case to ASCII (Kelvin sign, dotted I).
_TRICKY = st.lists(
    st.sampled_from(list("aZ9_ '\u2019\u2019'.-\n\tkK") + ["\u212a", "\u0130", "é",
                                                                  "ß", "http://", "www.",
                                                                  "x" * 41, "\U0001f600"]),
    max_size=80).map("".join)


@settings(max_examples=1000)
@given(st.one_of(st.text(max_size=120), _TRICKY))
def test_fast_keys_equal_tokens(text):
    # keys() is the scorer's fast path; it must never change a term.
    assert _decoded(tok.keys(text)) == tok.tokens(text)


def test_fast_keys_on_examples():
    for text in ["I'm tired, I can't SLEEP.", "'quoted' words'' and ''more", "a_b_'c", "x'_y",
                 "don\u2019t see https://a_b.com/x?y=1_2", "Ça va", "\u212aelvin", "'", "''a'",
                 "a" * 41 + " b " + "c'" * 30 + "d"]:
        assert _decoded(tok.keys(text)) == tok.tokens(text), text
    assert all(isinstance(k, bytes) for k in tok.keys("plain ascii text, isn't it www.x"))
    assert all(isinstance(k, str) for k in tok.keys("caf\u00e9 and tea"))


def test_fast_keys_equal_tokens_on_every_sample_post():
    from corpora.simulate import load_posts

    for p in load_posts():
        assert _decoded(tok.keys(p["post"])) == tok.tokens(p["post"])


# -- version 2: negation scope and lexicon pseudo-terms ----------------------------

V2 = Tokenizer(version=2, negation_window=3, lexicons=("srl", "vader", "empath", "pronouns"))
NEG_ONLY = Tokenizer(version=2, negation_window=3)


def test_version_1_settings_and_header_are_unchanged():
    assert Tokenizer().to_json() == {"url_token": "_url_", "max_token_chars": 40, "version": 1}
    assert not Tokenizer().featureful
    import pytest

    with pytest.raises(ValueError, match="version 2"):
        Tokenizer(version=1, negation_window=2)
    with pytest.raises(ValueError, match="unknown lexicon"):
        Tokenizer(version=2, lexicons=("liwc",))


def test_version_2_without_features_is_version_1():
    plain = Tokenizer(version=2)
    for text in ("I'm tired, I can't SLEEP.", "see https://x.y ok", "Ça va"):
        assert plain.tokens(text) == tok.tokens(text)


def test_not_suicidal_is_negated_not_suicidal():
    terms = NEG_ONLY.tokens("Not suicidal. But tired")
    assert terms == ["not", "neg:suicidal", "but", "tired"]
    assert "suicidal" not in V2.tokens("Not suicidal. But...")


def test_negation_scope_rules():
    # window of 3 words after the cue; the cue stays plain
    assert NEG_ONLY.tokens("I don't want to go out") == [
        "i", "don't", "neg:want", "neg:to", "neg:go", "out"]
    # punctuation, line breaks and contrastive conjunctions end the scope
    assert NEG_ONLY.tokens("no, sad") == ["no", "sad"]
    assert NEG_ONLY.tokens("never\nsad") == ["never", "sad"]
    assert NEG_ONLY.tokens("not happy but sad") == ["not", "neg:happy", "but", "sad"]
    # a new cue restarts the window; curly apostrophes are cues too
    assert NEG_ONLY.tokens("can’t not cry") == ["can't", "not", "neg:cry"]
    # a dropped overlong word takes no place in the window
    assert NEG_ONLY.tokens("not " + "x" * 41 + " sad") == ["not", "neg:sad"]


def test_lexicon_phrases_and_pronouns():
    terms = V2.tokens("I want to die")
    assert terms.count("__fp_sing") == 1
    # "want to die" and "i want to die" are both entries: both occurrences count
    assert terms.count("__lex_srl_passive_suicidal_ideation") == 2
    # a phrase never spans a clause boundary
    assert "__lex_srl_passive_suicidal_ideation" not in V2.tokens("I want to. Die")
    # a hit whose first word is inside a negation's scope is negated; the pronoun never is
    terms = V2.tokens("I am not hopeless")
    assert "neg:__lex_srl_hopelessness" in terms and "__lex_srl_hopelessness" not in terms
    assert "__fp_sing" in terms
    # an entry that starts with the cue itself is not negated
    assert "__lex_srl_sleep_issues" in V2.tokens("I can't sleep")


_V2_TEXT = st.lists(st.sampled_from(
    list("ab .,!\n'’") + ["not ", "don't ", "but ", "want to die ", "i ", "hopeless ",
                          "http://x.y ", "x" * 41]), max_size=30).map("".join)


@given(st.lists(_V2_TEXT, max_size=5))
def test_version_2_joining_never_creates_or_merges_terms(texts):
    joined = sorted(V2(join_writings(texts)))
    separate = sorted(t for text in texts for t in V2(text))
    assert joined == separate


@settings(max_examples=300)
@given(st.one_of(st.text(max_size=80), _TRICKY, _V2_TEXT))
def test_version_2_keys_and_spans_equal_tokens(text):
    want = V2.tokens(text)
    assert _decoded(V2.keys(text)) == want
    assert [t for t, _, _ in V2.spans(text)] == want


def test_lexicon_digest_guards_the_vendored_files():
    import pytest

    doc = V2.to_json()
    assert doc["lexicon_digest"] and Tokenizer.from_json(doc) == V2
    with pytest.raises(ValueError, match="differ"):
        Tokenizer.from_json({**doc, "lexicon_digest": "0" * 16})

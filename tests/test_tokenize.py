from hypothesis import given
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

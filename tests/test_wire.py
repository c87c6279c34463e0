import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from models.wire import ParseError, ParseLimits, Pseudonymizer, parse_submission, to_wire

RAW = Pseudonymizer(None)
NOW = 1.9e9


def msg(**over):
    base = {"id": "t3_abc", "author": "Someone", "created_utc": 1546300800, "kind": "post",
            "subreddit": "depression", "title": "Title", "body": "Body text"}
    base.update(over)
    return json.dumps(base)


def reason(payload, limits=ParseLimits()):
    with pytest.raises(ParseError) as e:
        parse_submission(payload, RAW, "test", limits, now=NOW)
    return e.value.reason


def test_valid_post():
    s = parse_submission(msg(), RAW, "file:x:1", now=NOW)
    assert (s.id, s.user_id, s.created_utc, s.kind, s.source) == (
        "t3_abc", "Someone", 1546300800.0, "post", "file:x:1")
    assert s.text == "Title\n\nBody text"


def test_comment_with_null_title():
    s = parse_submission(msg(kind="comment", title=None), RAW, now=NOW)
    assert s.text == "Body text"


@pytest.mark.parametrize("value,expected", [
    ("2019-01-01T00:00:00Z", 1546300800.0),
    ("2019-01-01T01:00:00+01:00", 1546300800.0),
    ("2019-01-01 00:00:00", 1546300800.0),
    ("1546300800", 1546300800.0),
    (1546300800.5, 1546300800.5),
])
def test_timestamps(value, expected):
    assert parse_submission(msg(created_utc=value), RAW, now=NOW).created_utc == expected


@pytest.mark.parametrize("payload,expected", [
    (b"\xff\xfe{}", "invalid_utf8"),
    ("{not json", "invalid_json"),
    ("[1, 2]", "not_an_object"),
    ("[" * 100_000 + "]" * 100_000, "invalid_json"),
    (msg(id=None), "missing_field"),
    (json.dumps({"author": "a"}), "missing_field"),
    (msg(id=12), "wrong_type"),
    (msg(id=""), "invalid_value"),
    (msg(id="has space"), "invalid_value"),
    (msg(author="[deleted]"), "deleted_author"),
    (msg(kind="video"), "invalid_value"),
    (msg(created_utc=True), "wrong_type"),
    (msg(created_utc="yesterday"), "invalid_value"),
    (msg(created_utc=1.0), "timestamp_out_of_range"),
    (msg(created_utc=NOW + 10 * 86400), "timestamp_out_of_range"),
    (msg(title="", body="[removed]"), "empty_text"),
    (msg(title=None, body="   "), "empty_text"),
    (msg(body=["list"]), "wrong_type"),
])
def test_rejections_have_reasons(payload, expected):
    assert reason(payload) == expected


def test_nan_timestamp_rejected():
    assert reason('{"id":"a","author":"b","created_utc":NaN,"kind":"post",'
                  '"subreddit":"s","title":"t","body":"b"}') == "invalid_value"


def test_too_large():
    assert reason(msg(body="x" * 2000), ParseLimits(max_message_bytes=1024)) == "too_large"


def test_nul_characters_are_removed_and_unknown_fields_ignored():
    s = parse_submission(msg(body="a\x00b", extra={"nested": [1]}), RAW, now=NOW)
    assert s.body == "ab"


def test_pseudonymizer_is_keyed_and_case_insensitive():
    a = Pseudonymizer(b"k" * 16)
    b = Pseudonymizer(b"j" * 16)
    assert a("Alice") == a("alice") != b("alice")
    assert a("alice").startswith("u_") and len(a("alice")) == 22
    with pytest.raises(ValueError):
        Pseudonymizer(b"short")


def test_to_wire_round_trip():
    line = to_wire(id="x1", author="a", created_utc=1546300800, kind="comment",
                   subreddit="s", body="hi")
    s = parse_submission(line, RAW, now=NOW)
    assert (s.id, s.kind, s.body, s.title) == ("x1", "comment", "hi", "")


@given(st.binary(max_size=300))
def test_arbitrary_bytes_parse_or_fail_with_a_reason(data):
    try:
        s = parse_submission(data, RAW, now=NOW)
    except ParseError as e:
        assert e.reason and e.detail is not None
    else:
        assert s.id and math.isfinite(s.created_utc)

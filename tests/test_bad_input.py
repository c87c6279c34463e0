"""Bad input: fuzzing the parser, and a corpus of nasty messages through the real pipeline.

Every message is either scored or dead-lettered with a reason; the pipeline
keeps going; the counters and the store agree that ``read = scored +
dead-lettered``.
"""

from __future__ import annotations

import json
import math

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models.portable import PortableModel
from models.records import WritingRecord, to_row
from models.scorer import IncrementalScorer, UserState
from models.wire import REASONS, ParseError, ParseLimits, Pseudonymizer, parse_submission
from pipelines.screening import run
from storage.duckdb_store import ensure_schema, insert_rows
from tests.conftest import SIMULATED, write_jsonl
from transforms.parse import MAX_RAW_CHARS, dead_letter

NOW = 1.9e9
KEY = Pseudonymizer(b"fuzzing-key-0123456789")
VALID = {"id": "t3_abc", "author": "Someone", "created_utc": 1546300800, "kind": "post",
         "subreddit": "depression", "title": "A title", "body": "Some body text"}

# Values a producer bug (or an attacker) might put in any field.
nasty_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=10**300, max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=40),
    st.sampled_from(["", " ", "\x00", "[deleted]", "[removed]", "\ud800", "a\udfffb",
                     "nan", "inf", "-1e999", "0001-01-01T00:00:00+05:00",
                     "9999-12-31T23:59:59-14:00", "2019-01-01", "1546300800", "comment",
                     "post", "t3_\x00x", "x" * 101, "\u202e\u0000evil"]),
)
nasty_values = st.recursive(
    nasty_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                max_size=3),
    max_leaves=8,
)


@st.composite
def perturbed_messages(draw) -> bytes:
    """A wire-format object with random fields removed, replaced or added."""
    obj: dict = dict(VALID)
    for field in VALID:
        action = draw(st.sampled_from(["keep", "keep", "drop", "replace"]))
        if action == "drop":
            del obj[field]
        elif action == "replace":
            obj[field] = draw(nasty_values)
    obj.update(draw(st.dictionaries(st.text(max_size=8), nasty_values, max_size=3)))
    ascii_only = draw(st.booleans())
    text = json.dumps(obj, ensure_ascii=ascii_only, allow_nan=True)
    # Lone surrogates cannot be UTF-8: a producer writing them raw sends invalid bytes.
    data = text.encode("utf-8", "surrogatepass")
    cut = draw(st.sampled_from([None, None, None, 1, len(data) // 2]))
    return data[:cut] if cut else data


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(perturbed_messages())
def test_perturbed_wire_objects_are_scored_or_dead_lettered(data):
    con = duckdb.connect()
    ensure_schema(con)
    try:
        sub = parse_submission(data, KEY, "fuzz:1", ParseLimits(), now=NOW)
    except ParseError as e:
        assert e.reason in REASONS and e.detail
        # The dead letter itself must be storable, whatever the bytes were.
        dl = dead_letter("parse", e.reason, e.detail, "fuzz:1", data)
        assert insert_rows(con, "dead_letters", [to_row(dl)]) == 1
        return
    assert sub.id and sub.user_id.startswith("u_") and sub.text.strip()
    assert math.isfinite(sub.created_utc) and sub.created_utc <= NOW + 86_400
    scored = IncrementalScorer(_model()).update(UserState(), sub.text, sub.created_utc)
    assert 0.0 <= scored.p_user <= 1.0
    # Whatever the parser accepts, the store can hold (no late crash in a sink).
    w = WritingRecord(user_id=sub.user_id, submission_id=sub.id, created_utc=sub.created_utc,
                      kind=sub.kind, subreddit=sub.subreddit, title=sub.title, body=sub.body,
                      source=sub.source)
    assert insert_rows(con, "writings", [to_row(w)]) == 1


_MODEL: list[PortableModel] = []


def _model() -> PortableModel:
    if not _MODEL:
        _MODEL.append(PortableModel.load())
    return _MODEL[0]


@pytest.mark.parametrize("payload,expected", [
    (json.dumps({**VALID, "created_utc": 10**400}), "timestamp_out_of_range"),
    (json.dumps({**VALID, "created_utc": "nan"}), "invalid_value"),
    (json.dumps({**VALID, "created_utc": "0001-01-01T00:00:00+05:00"}),
     "timestamp_out_of_range"),
    (json.dumps({**VALID, "body": "\ud800"}), "invalid_utf8"),
    (json.dumps({**VALID, "author": "a\udc00"}), "invalid_utf8"),
    (json.dumps({**VALID, "id": "t3_\x00abc"}), "invalid_value"),
])
def test_regressions_found_by_fuzzing(payload, expected):
    # Each of these crashed the parser or slipped through before (NaN passed
    # the range check; surrogates failed later in the sink).
    with pytest.raises(ParseError) as e:
        parse_submission(payload, KEY, now=NOW)
    assert e.value.reason == expected


def test_a_10_mb_body_is_scored_when_the_limit_allows_it():
    line = json.dumps({**VALID, "body": "i feel so alone " * 655_360})
    assert len(line) > 10_000_000
    sub = parse_submission(line, KEY, limits=ParseLimits(max_message_bytes=11_000_000), now=NOW)
    scored = IncrementalScorer(_model()).update(UserState(), sub.text, sub.created_utc)
    assert 0.0 < scored.p_user < 1.0


# -- the corpus, through `earlyrisk run` ------------------------------------------------
def _msg(**over) -> str:
    return json.dumps({**VALID, **over})


def nasty_corpus() -> list[tuple[bytes | str, str]]:
    """(line, expected outcome): 'scored' or a dead-letter reason."""
    deep = "[" * 10_000 + "]" * 10_000
    return [
        ("{not json", "invalid_json"),
        ('{"id": "x", ', "invalid_json"),
        ("null", "not_an_object"),
        ("42", "not_an_object"),
        ('"just a string"', "not_an_object"),
        (deep, "invalid_json"),
        (_msg(id="n1")[:-1] + ', "extra": ' + deep + "}", "invalid_json"),
        (_msg(id="n2", extra={"a": [[[[{"b": 1}]]]]}, score=9.5), "scored"),
        (b"\xff\xfe\xfd not utf-8", "invalid_utf8"),
        (_msg(id="n3", body="cafe").encode().replace(b"cafe", b"caf\xc3\x28"), "invalid_utf8"),
        (_msg(id="n4", body="\ud83d"), "invalid_utf8"),
        (_msg(id="n5", body="nul \x00 inside"), "scored"),
        (_msg(id="n6").encode().replace(b'", "author"', b'"\x00, "author"'), "invalid_json"),
        (_msg(id="n7\x00"), "invalid_value"),
        (_msg(id=7), "wrong_type"),
        (_msg(id="n8", created_utc=[1546300800]), "wrong_type"),
        (_msg(id="n9", body={"text": "hi"}), "wrong_type"),
        (_msg(id="n10", created_utc=False), "wrong_type"),
        (json.dumps({k: v for k, v in VALID.items() if k != "author"}), "missing_field"),
        (_msg(id="n11", created_utc=None), "missing_field"),
        (_msg(id=""), "invalid_value"),
        (_msg(id="n12", author=" "), "invalid_value"),
        (_msg(id="n13", title="", body=""), "empty_text"),
        (_msg(id="n14", title=None, body=None), "empty_text"),
        (_msg(id="n15", author="[deleted]"), "deleted_author"),
        (_msg(id="n16", kind="video"), "invalid_value"),
        (_msg(id="n17", created_utc=0), "timestamp_out_of_range"),
        (_msg(id="n18", created_utc="1970-01-01T00:00:00Z"), "timestamp_out_of_range"),
        (_msg(id="n19", created_utc=32503680000), "timestamp_out_of_range"),  # year 3000
        (_msg(id="n20", created_utc=10**400), "timestamp_out_of_range"),
        (_msg(id="n21", created_utc="NaN"), "invalid_value"),
        (_msg(id="n22", created_utc="2019-13-45"), "invalid_value"),
        (_msg(id="n23", body="x" * 10_500_000), "too_large"),
        (_msg(id="n24", created_utc="2019-01-01T00:00:00Z", subreddit="r"), "scored"),
        (_msg(id="n24", created_utc="2019-01-01T00:00:00Z", subreddit="r"), "duplicate"),
    ]


@pytest.mark.slow
def test_nasty_corpus_through_the_real_pipeline(tmp_path, monkeypatch):
    monkeypatch.setenv("EARLYRISK_PSEUDONYM_KEY", "corpus-test-key-0123456789")
    import gzip

    with gzip.open(SIMULATED / "test.jsonl.gz", "rb") as f:
        good = [next(f).rstrip(b"\n") for _ in range(150)]
    corpus = nasty_corpus()
    # Bad lines are interleaved with good ones: the pipeline must keep going.
    lines: list[bytes | str] = []
    for i, g in enumerate(good):
        lines.append(g)
        if i < len(corpus):
            lines.append(corpus[i][0])
    src = write_jsonl(tmp_path / "nasty.jsonl", lines)
    db = tmp_path / "out.duckdb"
    summary = run(["--input", f"file://{src}", "--output", f"duckdb://{db}"],
                  show_progress=False)

    expected: dict[str, int] = {}
    for _, outcome in corpus:
        expected[outcome] = expected.get(outcome, 0) + 1
    n_scored = len(good) + expected.pop("scored")
    assert summary.read == len(lines)
    assert summary.scored == n_scored
    assert summary.dead_lettered == sum(expected.values())
    assert summary.balanced
    assert summary.dead_letter_reasons == expected

    con = duckdb.connect(str(db), read_only=True)
    try:
        assert con.execute("select count(*) from scores").fetchone()[0] == n_scored
        stored = dict(con.execute(
            "select reason, count(*) from dead_letters group by 1").fetchall())
        assert stored == expected
        # Every dead letter points at its line, keeps the true size, and a cut payload.
        rows = con.execute("select source, reason, raw_bytes, length(raw), detail "
                           "from dead_letters").fetchall()
        for source, _reason, _size, raw_len, detail in rows:
            assert source.startswith(f"file:{src}:") and detail
            assert raw_len <= MAX_RAW_CHARS
        big = [r for r in rows if r[1] == "too_large"]
        assert big[0][2] > 10_000_000 and big[0][3] == MAX_RAW_CHARS
        # NUL bytes are stripped from text, never stored.
        body = con.execute("select body from writings where submission_id = 'n5'").fetchone()[0]
        assert body == "nul  inside"
        assert all(u.startswith("u_") for (u,) in
                   con.execute("select distinct user_id from scores").fetchall())
    finally:
        con.close()

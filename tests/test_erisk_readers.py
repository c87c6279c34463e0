"""Readers of the eRisk 2017/2018 XML layout and of CSV (corpora/erisk.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from corpora.erisk import CollectionError, CsvColumns, read_csv, read_erisk, write_erisk
from corpora.readers import read_truth, read_wire_streams
from corpora.simulate import SIMULATED_DIR

FIXTURES = Path(__file__).parent / "fixtures"
ERISK = FIXTURES / "erisk-mini"


def test_erisk_fixture_chronological_across_chunks():
    s = read_erisk(ERISK)
    assert sorted(s.users) == ["subject11", "subject22", "subject33", "subject44"]
    u11 = s.users["subject11"]
    # chunk 1 lists its writings newest first; chunk 2 follows; the empty one is skipped
    assert [w.created_utc for w in u11] == sorted(w.created_utc for w in u11)
    assert len(u11) == 3 and u11[0].title == "Tired" and u11[0].kind == "comment"
    assert "&" in u11[0].body  # entities decoded
    assert s.skipped == {"empty_text": 1}
    assert read_truth(FIXTURES / "erisk-mini-truth.txt")["subject33"] == 1


def test_erisk_errors(tmp_path):
    (tmp_path / "chunk 1").mkdir()
    (tmp_path / "chunk 1" / "subjectX_1.xml").write_text("<INDIVIDUAL><ID>subjectX</ID>")
    with pytest.raises(CollectionError, match="not well-formed"):
        read_erisk(tmp_path)
    (tmp_path / "chunk 1" / "subjectX_1.xml").write_text(
        "<INDIVIDUAL><ID>other</ID></INDIVIDUAL>")
    with pytest.raises(CollectionError, match="does not match"):
        read_erisk(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CollectionError, match="no 'chunk N'"):
        read_erisk(empty)


def test_erisk_round_trip_of_bundled_test_split(tmp_path):
    wire = read_wire_streams(SIMULATED_DIR / "test.jsonl.gz").users
    truth = read_truth(SIMULATED_DIR / "test-truth.txt")
    write_erisk(wire, truth, tmp_path, chunks=10)
    back = read_erisk(tmp_path).users
    assert set(back) == set(wire)
    for u, subs in wire.items():
        # same writings in the same order (XML trims the whitespace around fields)
        assert [s.text.split() for s in back[u]] == [s.text.split() for s in subs], u


def test_csv_with_mapping_and_labels(tmp_path):
    p = tmp_path / "w.csv"
    p.write_text(
        "who,when,post,y\n"
        "ann,2019/01/02,second post,1\n"
        "ann,2019/01/01,first post,1\n"
        "bob,1546300800,\"a, quoted post\",0\n"
        "bob,not a date,lost,0\n"
        ",2019/01/01,no author,0\n"
        "bob,2019-01-03T10:00:00Z,,0\n",
        encoding="utf-8",
    )
    streams, labels = read_csv(p, CsvColumns.parse("author=who,time=when,text=post,label=y"))
    assert labels == {"ann": 1, "bob": 0}
    assert [s.body for s in streams.users["ann"]] == ["first post", "second post"]
    assert [s.body for s in streams.users["bob"]] == ["a, quoted post"]
    assert streams.skipped == {"invalid_time": 1, "missing_author": 1, "empty_text": 1}
    with pytest.raises(CollectionError, match="no column 'author'"):
        read_csv(p)
    with pytest.raises(ValueError, match="bad column mapping"):
        CsvColumns.parse("writer=who")
    p.write_text("a,t,x,y\nann,2019/01/01,hi,2\n")
    with pytest.raises(CollectionError, match="label must be 0 or 1"):
        read_csv(p, CsvColumns(author="a", time="t", text="x", label="y"))

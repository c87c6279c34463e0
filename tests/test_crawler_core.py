"""Unit tests of the crawler's parts: conversion, the seen filter, the queue,
output URIs."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from crawler.convert import SkipError, to_writing
from crawler.publishers import FilePublisher, OutputURIError, open_publisher
from crawler.queue import UserQueue
from crawler.seen import CrawlState
from models.wire import Pseudonymizer, parse_submission


def _post(**kw):
    base = dict(name="t3_abc", author=SimpleNamespace(name="Alice"), title="A title",
                selftext="some body", created_utc=1571961600.0,
                subreddit=SimpleNamespace(display_name="depression"))
    base.update(kw)
    return SimpleNamespace(**base)


def _comment(**kw):
    base = dict(name="t1_xyz", author=SimpleNamespace(name="Bob"), body="a reply",
                created_utc=1571961601.5, subreddit=SimpleNamespace(display_name="lonely"))
    base.update(kw)
    return SimpleNamespace(**base)


def test_post_converts_to_valid_wire_message():
    w = to_writing(_post())
    msg = json.loads(w.message)
    assert msg == {"id": "t3_abc", "author": "Alice", "created_utc": 1571961600,
                   "kind": "post", "subreddit": "depression", "title": "A title",
                   "body": "some body"}
    sub = parse_submission(w.message, Pseudonymizer(None), now=1.8e9)
    assert (sub.kind, sub.user_id, sub.title) == ("post", "Alice", "A title")
    assert w.text == "A title\nsome body"


def test_comment_has_empty_title_and_float_time():
    w = to_writing(_comment())
    msg = json.loads(w.message)
    assert (msg["kind"], msg["title"], msg["body"], msg["created_utc"]) == (
        "comment", "", "a reply", 1571961601.5)
    assert parse_submission(w.message, Pseudonymizer(None), now=1.8e9).kind == "comment"


@pytest.mark.parametrize("thing,reason", [
    (_post(author=None), "deleted_author"),
    (_comment(body="[removed]"), "empty_text"),
    (_post(title="", selftext="[deleted]"), "empty_text"),
    (_post(name="t5_sub"), "malformed"),
    (_post(created_utc=None), "malformed"),
])
def test_unpublishable_things_are_skipped_with_a_reason(thing, reason):
    with pytest.raises(SkipError) as e:
        to_writing(thing)
    assert e.value.reason == reason


def test_removed_body_keeps_the_title():
    msg = json.loads(to_writing(_post(selftext="[removed]")).message)
    assert (msg["title"], msg["body"]) == ("A title", "")


def test_seen_set_is_persistent_case_insensitive_and_bounded(tmp_path):
    path = tmp_path / "state.sqlite"
    state = CrawlState(path, max_authors=100)
    assert state.authors.add("Alice")
    assert not state.authors.add("alice")  # Reddit names are case-insensitive
    assert state.published.add("t3_a") and not state.published.add("t3_a")
    state.close()
    state = CrawlState(path, max_authors=100)
    assert "ALICE" in state.authors and "t3_a" in state.published
    for i in range(250):
        state.authors.add(f"user{i}")
        state.authors.add("Alice")  # recently touched: survives eviction
    assert len(state.authors) <= 100
    assert "Alice" in state.authors
    assert "user0" not in state.authors and "user249" in state.authors
    assert state.authors.evicted >= 150
    state.authors.discard("Alice")
    assert "Alice" not in state.authors
    state.close()


def test_queue_pops_highest_priority_first_fifo_among_equals():
    q = UserQueue()
    for name, p in [("a", 0.2), ("b", 0.9), ("c", 0.5), ("d", 0.9), ("e", 0.1)]:
        assert q.push(name, p, f"t3_{name}") is None
    assert [q.pop().author for _ in range(5)] == ["b", "d", "c", "a", "e"]
    with pytest.raises(IndexError):
        q.pop()


def test_full_queue_drops_the_lowest_priority():
    q = UserQueue(capacity=3)
    q.push("a", 0.5, "x")
    q.push("b", 0.1, "x")
    q.push("c", 0.7, "x")
    dropped = q.push("d", 0.6, "x")
    assert dropped.author == "b" and len(q) == 3
    assert q.push("e", 0.05, "x").author == "e"  # a newcomer below everyone is dropped
    assert [q.pop().author for _ in range(3)] == ["c", "d", "a"]


def test_queue_memory_stays_proportional_to_its_length():
    q = UserQueue(capacity=10)
    for i in range(10_000):
        q.push(f"u{i}", (i * 7919 % 1000) / 1000, "x")
        if i % 2:
            q.pop()
    assert len(q) == 9  # full at 10, then the last iteration popped one
    assert len(q._max) <= 2 * 10 + 64 and len(q._min) <= 2 * 10 + 64


@pytest.mark.parametrize("uri", ["kafka://host:9092", "kafka:///topic", "pubsub://topics/x",
                                 "pubsub://projects/p/subscriptions/s", "s3://bucket/key",
                                 "file://out.jsonl.gz"])
def test_bad_output_uris_are_rejected(uri):
    with pytest.raises(OutputURIError):
        open_publisher(uri)


def test_file_publisher_appends_jsonl(tmp_path):
    path = tmp_path / "out" / "w.jsonl"
    pub = open_publisher(f"file://{path}")
    assert isinstance(pub, FilePublisher)
    pub.publish(to_writing(_post()))
    pub.publish(to_writing(_comment()))
    pub.close()
    lines = path.read_text().splitlines()
    assert [json.loads(x)["id"] for x in lines] == ["t3_abc", "t1_xyz"]
    assert pub.delivered == 2


@pytest.mark.parametrize("argv", [
    ["crawl", "--api-url", "http://example.com"],  # credentials in clear text off-machine
    ["crawl", "--max-users", "0"],
    ["crawl", "--output", "s3://bucket/key"],
])
def test_crawl_cli_bad_arguments_exit_2(argv, monkeypatch, tmp_path, capsys):
    from pipelines.cli import main

    monkeypatch.setenv("REDDIT_CLIENT_ID", "x")
    monkeypatch.setenv("REDDIT_CLIENT_SECRET", "y")
    assert main([*argv, "--state", str(tmp_path / "s.sqlite")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("earlyrisk: error:") and "\n" not in err


def test_crawl_cli_without_credentials_exits_2(monkeypatch, tmp_path, capsys):
    from pipelines.cli import main

    for var in ("REDDIT_CLIENT_ID", "REDDIT_CLIENT_SECRET", "praw_client_id"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)  # no praw.ini here
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    assert main(["crawl", "--state", ":memory:"]) == 2
    assert "REDDIT_CLIENT_ID" in capsys.readouterr().err

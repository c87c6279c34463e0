"""``earlyrisk publish`` against the real Tansu broker: keys, bad lines, accounting.

(The full round trips, publish -> run, through Kafka and the Pub/Sub emulator are in
tests/test_recipes.py.)
"""

from __future__ import annotations

import json

import pytest

from pipelines.cli import main
from tests.conftest import write_jsonl
from tests.services import tansu


def _consume(bootstrap: str, topic: str, n: int) -> list:
    from confluent_kafka import Consumer

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "t", "auto.offset.reset":
                  "earliest", "enable.auto.commit": False})
    c.subscribe([topic])
    got: list = []
    try:
        for _ in range(60):
            got += [m for m in c.consume(100, timeout=1.0) if m.error() is None]
            if len(got) >= n:
                break
    finally:
        c.close()
    return got


def _writing(i: int, author: str) -> str:
    return json.dumps({"id": f"t3_{i}", "author": author, "created_utc": 1546300800 + i,
                       "kind": "post", "subreddit": "s", "title": "t", "body": f"b{i}"})


@pytest.mark.integration
def test_publish_keys_by_author_and_accounts_for_every_line(tmp_path, capsys):
    lines = [_writing(i, f"user{i % 3}") for i in range(30)]
    lines[5] = "{not json"  # sent, unkeyed: the pipeline dead-letters it
    lines.insert(7, "")      # blank: skipped, counted
    path = write_jsonl(tmp_path / "w.jsonl", lines)
    with tansu() as bootstrap:
        uri = f"kafka://{bootstrap}/subs"
        assert main(["publish", "--input", f"file://{path}", "--to", uri, "--no-progress"]) == 2
        assert "topic does not exist (add --create" in capsys.readouterr().err
        assert main(["publish", "--input", f"file://{path}", "--to", uri, "--create",
                     "--partitions", "3", "--no-progress"]) == 0
        out = capsys.readouterr().out
        got = _consume(bootstrap, "subs", 30)
    assert "messages read                30" in out and "published                    30" in out
    assert "sent without key              1" in out and "blank lines skipped           1" in out
    assert "read = published + failed" in out
    assert len(got) == 30
    by_key: dict = {}
    for m in got:
        key = m.key().decode() if m.key() else None
        by_key.setdefault(key, set()).add(m.partition())
        if key is not None:
            assert json.loads(m.value())["author"] == key
        else:
            assert m.value() == b"{not json"
    assert all(len(parts) == 1 for k, parts in by_key.items() if k)  # one partition per user
    for author in ("user0", "user1", "user2"):  # and in file order within it
        ids = [json.loads(m.value())["id"] for m in sorted(got, key=lambda m: m.offset())
               if m.key() == author.encode()]
        assert ids == sorted(ids, key=lambda s: int(s[3:]))


@pytest.mark.integration
def test_pubsub_missing_names_are_one_line_and_create_makes_them(tmp_path, capsys):
    from tests.services import pubsub_emulator

    path = write_jsonl(tmp_path / "w.jsonl", [_writing(i, f"user{i % 2}") for i in range(6)])
    topic = "pubsub://projects/demo-project/topics/subs"
    with pubsub_emulator():
        missing = "pubsub://projects/demo-project/subscriptions/screening"
        assert main(["run", "--input", missing]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "subscription does not exist" in err
        assert main(["publish", "--input", str(path), "--to", topic, "--subscription", "screening",
                     "--no-progress"]) == 2
        assert "topic does not exist (add --create" in capsys.readouterr().err
        assert main(["publish", "--input", str(path), "--to", topic, "--create",
                     "--subscription", "screening", "--no-progress"]) == 0
        out = capsys.readouterr().out
        assert "created Pub/Sub subscription projects/demo-project/subscriptions/screening" in out
        assert "published                     6" in out
        assert main(["publish", "--input", str(path), "--to",
                     "pubsub://projects/demo-project/topics/other", "--create",
                     "--subscription", "screening", "--no-progress"]) == 2
        assert "belongs to projects/demo-project/topics/subs" in capsys.readouterr().err

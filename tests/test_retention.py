"""Retention: ``earlyrisk forget`` removes a user from every table and from the file."""

from __future__ import annotations

import gzip
import json
import secrets
import shutil
import time

import duckdb
import pytest

from models.records import LabelRecord, WritingRecord, to_row
from models.wire import Pseudonymizer
from pipelines.cli import main
from storage.duckdb_store import ensure_schema, insert_rows
from storage.retention import forget
from tests.conftest import SIMULATED, write_jsonl

KEY = "retention-test-key-0123456789"


def _by_user(db, user_id: str) -> dict[str, int]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return {t: con.execute(f"select count(*) from {t} where user_id = ?", [user_id]
                               ).fetchone()[0] for t in ("scores", "alerts", "writings",
                                                         "labels")}
    finally:
        con.close()


@pytest.mark.slow
def test_forget_deletes_a_user_everywhere_and_leaves_no_bytes(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("EARLYRISK_PSEUDONYM_KEY", KEY)
    with gzip.open(SIMULATED / "test.jsonl.gz", "rb") as f:
        lines = [next(f).rstrip(b"\n") for _ in range(400)]
    objs = [json.loads(x) for x in lines]
    authors = list(dict.fromkeys(o["author"] for o in objs))
    target, other = authors[0], authors[1]
    theirs = [o for o in objs if o["author"] == target]
    assert len(theirs) > 3 and any(o["author"] == other for o in objs)
    bad = json.dumps({**theirs[0], "id": "zz1", "created_utc": "soon"})  # parse dead letter
    cut = json.dumps({**theirs[0], "id": "zz2"})[:-1]  # invalid JSON naming them
    dup = next(x for x in lines if json.loads(x)["author"] == target)
    src = write_jsonl(tmp_path / "in.jsonl", lines + [bad, cut, dup])
    db = tmp_path / "store.duckdb"
    assert main(["run", "--input", f"file://{src}", "--output", f"duckdb://{db}",
                 "--threshold", "0.0", "--no-progress"]) == 0
    pseudo = Pseudonymizer(KEY.encode())(target)
    con = duckdb.connect(str(db))
    ensure_schema(con)
    alert = con.execute("select alert_id from alerts where user_id = ?", [pseudo]).fetchall()[0][0]
    insert_rows(con, "labels", [to_row(LabelRecord(alert_id=alert, user_id=pseudo, label="risk",
                                                   comment="", reviewer="dr",
                                                   labelled_at=time.time()))])
    n_dead = con.execute("select count(*) from dead_letters").fetchone()[0]
    con.close()
    before = _by_user(db, pseudo)
    assert all(before.values()), before
    other_before = _by_user(db, Pseudonymizer(KEY.encode())(other))

    # A dry run deletes nothing.
    assert main(["forget", "--user", target, "--db", f"duckdb://{db}", "--dry-run"]) == 0
    assert _by_user(db, pseudo) == before
    capsys.readouterr()

    assert main(["forget", "--user", target.upper(), "--db", f"duckdb://{db}"]) == 0
    out = capsys.readouterr().out
    assert "dead_letters" in out and "scores" in out
    assert _by_user(db, pseudo) == {"scores": 0, "alerts": 0, "writings": 0, "labels": 0}
    assert _by_user(db, Pseudonymizer(KEY.encode())(other)) == other_before
    con = duckdb.connect(str(db), read_only=True)
    raws = [r for (r,) in con.execute("select raw from dead_letters").fetchall()]
    con.close()
    assert n_dead == 3 and raws == []  # two parse dead letters and one duplicate
    # The rewritten store still has its primary keys (inserts stay idempotent).
    con = duckdb.connect(str(db))
    row = con.execute("select * from scores limit 1").fetchall()
    cols = [d[0] for d in con.description]
    with pytest.raises(duckdb.ConstraintException):
        con.execute(f"insert into scores ({', '.join(cols)}) values "
                    f"({', '.join('?' for _ in cols)})", list(row[0]))
    con.close()


def _writing(user: str, sid: str, body: str) -> dict:
    return to_row(WritingRecord(user_id=user, submission_id=sid, created_utc=1_546_300_800,
                                kind="post", subreddit="s", title="", body=body, source=""))


def test_forget_leaves_no_deleted_bytes_in_the_file(tmp_path):
    # Stored uncompressed, a writing's text is visible in the file's bytes; that is
    # what lets this test see whether a deletion really erased it.
    marker = "MARKER " + secrets.token_hex(64)
    db, control = tmp_path / "s.duckdb", tmp_path / "control.duckdb"
    con = duckdb.connect(str(db))
    con.execute("SET force_compression = 'uncompressed'")
    ensure_schema(con)
    insert_rows(con, "writings", [_writing("u_gone", "a1", marker)]
                + [_writing("u_stays", f"b{i}", f"text {i}") for i in range(50)])
    con.execute("CHECKPOINT")
    con.close()
    assert marker.encode() in db.read_bytes()
    shutil.copy(db, control)
    # What a plain DELETE does: DuckDB keeps the bytes in the file.
    con = duckdb.connect(str(control))
    con.execute("delete from writings where user_id = 'u_gone'")
    con.execute("CHECKPOINT")
    con.close()
    assert marker.encode() in control.read_bytes()
    report = forget(db, ("u_gone",))
    assert report.deleted["writings"] == 1
    assert marker.encode() not in db.read_bytes()
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("select count(*) from writings").fetchone()[0] == 50
    con.close()


def test_forget_refuses_a_missing_store(tmp_path, capsys):
    assert main(["forget", "--user", "someone", "--db", str(tmp_path / "none.duckdb")]) == 2
    assert "no database" in capsys.readouterr().err


@pytest.mark.integration
def test_forget_in_bigquery(bq_emulator, monkeypatch, capsys):
    import uuid

    from models.records import DeadLetter, ScoreRecord
    from storage import bigquery_store as bqs

    monkeypatch.setenv("EARLYRISK_PSEUDONYM_KEY", KEY)
    pseudo = Pseudonymizer(KEY.encode())
    gone, stays = pseudo("LeavingUser"), pseudo("StayingUser")
    ref = bqs.DatasetRef("demo-project", f"forget_{uuid.uuid4().hex[:8]}")
    bqs.ensure_tables(ref)

    def score(user: str, i: int) -> dict:
        return to_row(ScoreRecord(user_id=user, submission_id=f"s{i}",
                                  created_utc=1_546_300_800 + i, kind="post", subreddit="d",
                                  p_text=0.1, p_user=0.2, writings_seen=i + 1,
                                  model_version="m", source=""))

    assert bqs.insert_rows(ref, "scores", [score(gone, 0), score(gone, 1), score(stays, 2)]) == []
    assert bqs.insert_rows(ref, "writings", [_writing(gone, "s0", "hello"),
                                             _writing(stays, "s2", "bye")]) == []
    dead = [DeadLetter(dead_letter_id=f"d{i}", stage="parse", reason="invalid_json",
                       detail="", source="", raw=raw, raw_bytes=len(raw),
                       received_at=1_700_000_000.0)
            for i, raw in enumerate([json.dumps({"author": gone, "id": "x"})[:-3],
                                     json.dumps({"author": stays}), "{nothing"])]
    assert bqs.insert_rows(ref, "dead_letters", [to_row(d) for d in dead]) == []

    assert main(["forget", "--user", "leavinguser", "--db", ref.uri]) == 0
    assert "identifier" in capsys.readouterr().out
    assert [r["user_id"] for r in bqs.fetch_rows(ref, "scores")] == [stays]
    assert [r["user_id"] for r in bqs.fetch_rows(ref, "writings")] == [stays]
    assert sorted(r["dead_letter_id"] for r in bqs.fetch_rows(ref, "dead_letters")) == [
        "d1", "d2"]

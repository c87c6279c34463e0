"""Per-user state that outlives a run (the ``user_state`` table of the DuckDB store).

The bundled stream cut by time into 2 and into 7 consecutive pieces and run as
that many ``earlyrisk run`` invocations into one store must leave exactly what
one run over the whole stream leaves: the same score rows (``processed_at``,
the processing-time column, aside), the same alerts and the same final state,
byte for byte. Runs are compared with each other, never with fixed counts.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import duckdb
import pytest

from corpora.simulate import SIMULATED_DIR
from models.scorer import UserState
from pipelines.cli import main
from pipelines.screening import run

KEY = "state-test-pseudonym-key-0123456789"
STREAM = SIMULATED_DIR / "test.jsonl.gz"

# processed_at is processing time; source names the file (and line) read.
SCORES = "select * exclude (processed_at, source) from scores"
ALERTS = "select * from alerts"
STATE = "select user_id, model_version, state, writings, last_event from user_state"
WRITINGS = "select * exclude (source) from writings"


@pytest.fixture(autouse=True)
def _key(monkeypatch) -> None:
    monkeypatch.setenv("EARLYRISK_PSEUDONYM_KEY", KEY)


def _lines() -> list[bytes]:
    with gzip.open(STREAM, "rb") as f:
        return [ln.rstrip(b"\n") for ln in f if ln.strip()]


def _split_by_time(lines: list[bytes], k: int, out: Path) -> list[Path]:
    """``k`` files of consecutive time ranges of equal length, in stream order."""
    times = [json.loads(ln)["created_utc"] for ln in lines]
    lo, hi = min(times), max(times)
    cuts = [lo + (hi - lo) * j / k for j in range(1, k)]
    parts: list[list[bytes]] = [[] for _ in range(k)]
    for ln, t in zip(lines, times):
        parts[sum(t > c for c in cuts)].append(ln)
    paths = []
    for j, part in enumerate(parts):
        assert part, "a time slice without writings: pick fewer slices"
        path = out / f"part{k}-{j}.jsonl"
        path.write_bytes(b"\n".join(part) + b"\n")
        paths.append(path)
    return paths


def _run(src: Path, db: Path, *extra: str):
    summary = run(["--input", f"file://{src}", "--output", f"duckdb://{db}", *extra],
                  show_progress=False)
    assert summary.balanced, summary.lines()
    return summary


def _rows(db: Path, sql: str) -> list[tuple]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return sorted(con.execute(sql).fetchall())
    finally:
        con.close()


@pytest.fixture(scope="module")
def whole(tmp_path_factory) -> Path:
    """One run over the whole bundled stream."""
    mp = pytest.MonkeyPatch()
    mp.setenv("EARLYRISK_PSEUDONYM_KEY", KEY)
    try:
        db = tmp_path_factory.mktemp("whole") / "whole.duckdb"
        _run(STREAM, db)
        return db
    finally:
        mp.undo()


def _assert_same(db: Path, reference: Path) -> None:
    for sql in (SCORES, ALERTS, STATE, WRITINGS):
        got, want = _rows(db, sql), _rows(reference, sql)
        assert len(got) == len(want), sql
        assert got == want, sql


@pytest.mark.slow
@pytest.mark.parametrize("k", [2, 7])
def test_consecutive_runs_over_time_slices_equal_one_run(k: int, whole: Path,
                                                         tmp_path: Path) -> None:
    db = tmp_path / "split.duckdb"
    alerts = 0
    for part in _split_by_time(_lines(), k, tmp_path):
        alerts += _run(part, db).alerts
    _assert_same(db, whole)
    # Alerts raised in earlier runs are remembered, not raised again.
    assert alerts == len(_rows(whole, ALERTS))
    # The state really is the scorer's: the stored counts give the last score.
    con = duckdb.connect(str(db), read_only=True)
    try:
        for user, blob, n in con.execute(
                "select user_id, state, writings from user_state").fetchall()[:20]:
            st = UserState.from_bytes(bytes(blob))
            last = con.execute("select max(writings_seen) from scores where user_id = ?",
                               [user]).fetchone()[0]
            assert st.n == n == last
    finally:
        con.close()


@pytest.mark.slow
def test_slices_of_one_run_equal_one_run(whole: Path, tmp_path: Path) -> None:
    """``--slice-size``: one invocation, the input run in 7 pipeline runs, same result."""
    db = tmp_path / "sliced.duckdb"
    summary = _run(STREAM, db, "--slice-size", "500")
    _assert_same(db, whole)
    assert summary.read == len(_lines())
    # Same file, same line numbers: the sources agree too.
    sql = "select * exclude (processed_at) from scores"
    assert _rows(db, sql) == _rows(whole, sql)


@pytest.mark.slow
def test_rerun_counts_nothing_twice_and_without_state_starts_over(whole: Path,
                                                                  tmp_path: Path) -> None:
    parts = _split_by_time(_lines(), 2, tmp_path)
    db = tmp_path / "rerun.duckdb"
    _run(parts[0], db)
    state = _rows(db, STATE)
    again = _run(parts[0], db)  # the same file again: every writing is a redelivery
    assert again.scored == 0 and again.duplicates == again.read
    assert _rows(db, STATE) == state
    # --state-store none: the run neither reads nor writes the state.
    fresh = tmp_path / "fresh.duckdb"
    _run(parts[0], fresh)
    _run(parts[1], fresh, "--state-store", "none")
    assert _rows(fresh, STATE) == state
    assert _rows(fresh, SCORES) != _rows(whole, SCORES)


def test_state_of_another_model_is_refused_in_one_line(tmp_path: Path, capsys) -> None:
    src = tmp_path / "few.jsonl"
    src.write_bytes(b"\n".join(_lines()[:50]) + b"\n")
    db = tmp_path / "m.duckdb"
    _run(src, db)
    con = duckdb.connect(str(db))
    con.execute("update state_meta set value = 'other-model-0123' where key = 'model_version'")
    con.execute("update user_state set model_version = 'other-model-0123'")
    con.close()
    capsys.readouterr()
    code = main(["run", "--input", f"file://{src}", "--output", f"duckdb://{db}",
                 "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and "other-model-0123" in err, err
    # Without the stored state the same run is allowed.
    assert main(["run", "--input", f"file://{src}", "--output", f"duckdb://{db}",
                 "--no-progress", "--state-store", "none"]) == 0


def _message(i: int, author: str, t: float) -> bytes:
    return json.dumps({"id": f"ttl{i}", "author": author, "created_utc": t, "kind": "post",
                       "subreddit": "test", "title": "", "body": f"I feel sad and tired {i}"}
                      ).encode()


def test_state_ttl_applies_to_the_stored_state(tmp_path: Path) -> None:
    day = 86_400.0
    t0 = 1_546_300_800.0
    db = tmp_path / "ttl.duckdb"
    runs = [[_message(1, "quiet", t0), _message(2, "busy", t0)],
            [_message(3, "busy", t0 + 20 * day), _message(4, "other", t0 + 35 * day)],
            [_message(5, "quiet", t0 + 40 * day), _message(6, "busy", t0 + 41 * day)]]
    users_after = []
    for i, messages in enumerate(runs):
        src = tmp_path / f"run{i}.jsonl"
        src.write_bytes(b"\n".join(messages) + b"\n")
        _run(src, db, "--raw-user-ids", "--state-ttl-days", "30")
        users_after.append([u for u, *_ in _rows(db, STATE)])
    # After the second run the store's clock (its latest writing, day 35) is
    # past the end of "quiet"'s 30 days: their state is deleted.
    assert users_after == [["busy", "quiet"], ["busy", "other"], ["busy", "other", "quiet"]]
    seen = dict(_rows(db, "select submission_id, writings_seen from scores"))
    # "busy" never went quiet for 30 days: carried on; "quiet" starts from zero.
    assert seen == {"ttl1": 1, "ttl2": 1, "ttl3": 2, "ttl4": 1, "ttl5": 1, "ttl6": 3}


def test_forget_removes_the_users_state(tmp_path: Path, capsys) -> None:
    src = tmp_path / "few.jsonl"
    src.write_bytes(b"\n".join(_lines()[:200]) + b"\n")
    db = tmp_path / "f.duckdb"
    _run(src, db, "--raw-user-ids")
    users = [u for u, *_ in _rows(db, STATE)]
    victim = users[0]
    assert main(["forget", "--user", victim, "--db", f"duckdb://{db}"]) == 0
    assert "user_state" in capsys.readouterr().out
    left = [u for u, *_ in _rows(db, STATE)]
    assert victim not in left and left == users[1:]
    # The state's bytes are gone from the file too, not only the row.
    assert victim.encode() not in db.read_bytes()


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_bigquery_output_with_a_duckdb_state_store(bq_emulator, tmp_path: Path) -> None:
    """Rows to BigQuery (the emulator), state in a local DuckDB file: 2 runs = 1 run."""
    from storage import bigquery_store as bqs

    lines = _lines()[:300]
    halves = []
    for j, part in enumerate((lines[:150], lines[150:])):
        halves.append(tmp_path / f"half{j}.jsonl")
        halves[-1].write_bytes(b"\n".join(part) + b"\n")
    whole_src = tmp_path / "whole.jsonl"
    whole_src.write_bytes(b"\n".join(lines) + b"\n")
    reference = tmp_path / "reference.duckdb"
    _run(whole_src, reference)
    ref = bqs.parse_bigquery_uri("bigquery://demo-project/statesplit")
    state = tmp_path / "state.duckdb"
    for j, half in enumerate(halves):
        extra = ["--bq-create-tables"] if j == 0 else []
        summary = run(["--input", f"file://{half}", "--output", ref.uri,
                       "--state-store", f"duckdb://{state}", *extra], show_progress=False)
        assert summary.balanced
    cols = ("user_id", "submission_id", "writings_seen", "p_user")
    got = sorted((r["user_id"], r["submission_id"], r["writings_seen"], round(r["p_user"], 12))
                 for r in bqs.fetch_rows(ref, "scores"))
    want = sorted((u, s, n, round(p, 12)) for u, s, n, p in _rows(
        reference, f"select {', '.join(cols)} from scores"))
    assert got == want
    assert _rows(state, STATE) == _rows(reference, STATE)


def test_a_state_transaction_rolls_back_and_an_interrupt_is_not_hidden(tmp_path) -> None:
    """What a failed or interrupted state write leaves: nothing, and the real reason.

    A Ctrl-C during a sliced run once surfaced as DuckDB's "cannot rollback -
    no transaction is active" instead of the interrupt: DuckDB had already
    ended the transaction when the rollback ran.
    """
    from storage.state_store import _transaction, ensure_state_schema

    con = duckdb.connect(str(tmp_path / "s.duckdb"))
    ensure_state_schema(con)
    row = ["u1", "m", b"\x01", 1, 0.0]
    with pytest.raises(ValueError, match="boom"), _transaction(con):
        con.execute("insert into user_state values (?, ?, ?, ?, ?, now()::timestamp, 'r')", row)
        raise ValueError("boom")
    assert con.execute("select count(*) from user_state").fetchall() == [(0,)]
    # The transaction already ended when the interrupt arrives: the interrupt
    # comes out, not the rollback's error.
    with pytest.raises(KeyboardInterrupt), _transaction(con):
        con.execute("ROLLBACK")
        raise KeyboardInterrupt
    with _transaction(con):
        con.execute("insert into user_state values (?, ?, ?, ?, ?, now()::timestamp, 'r')", row)
    assert con.execute("select count(*) from user_state").fetchall() == [(1,)]


def test_one_row_per_user_and_the_latest_staged_state_wins(tmp_path) -> None:
    """``user_state`` has no primary key (docs: storage/state_store.py, 'Memory'):
    commits and snapshots keep one row per user themselves, and a user a run
    staged twice (a retried bundle) ends with the state staged last."""
    from storage.duckdb_store import close_all
    from storage.state_store import StateStore

    db = tmp_path / "s.duckdb"
    store = StateStore(db)
    store.stage_rows("r1", "m", [("a", b"a1", 1, 10.0), ("b", b"b1", 1, 11.0)])
    store.stage_rows("r1", "m", [("a", b"a2", 2, 12.0)])
    store.stage_rows("killed", "m", [("a", b"never", 9, 13.0)])
    assert store.commit("r1", "m", 1e9) == 3  # staged rows, a twice
    store.stage_rows("r2", "m", [("b", b"b2", 2, 14.0), ("c", b"c1", 1, 14.0)])
    store.commit("r2", "m", 1e9)
    store.snapshot_rows("r3", "m", 1e9, [("c", b"c2", 2, 15.0), ("d", b"d1", 1, 15.0)],
                        expired=["a"])
    rows = store._con.execute("select user_id, state, writings, run_id from user_state "
                              "order by user_id").fetchall()
    assert rows == [("b", b"b2", 2, "r2"), ("c", b"c2", 2, "r3"), ("d", b"d1", 1, "r3")]
    assert store.load(["a", "b", "c", "x"], 1e9) == {"b": b"b2", "c": b"c2"}
    assert store._con.execute("select count(*) from user_state_staging").fetchall() == [(0,)]
    close_all()


def test_a_store_with_keyed_state_tables_is_rebuilt_with_its_rows(tmp_path) -> None:
    """Stores written when ``user_state`` had a primary key on ``user_id`` (and
    staging one on run and user): opened now, the same rows, no keys, and the
    staging table in its new layout."""
    from storage.duckdb_store import close_all
    from storage.state_store import StateStore

    db = tmp_path / "old.duckdb"
    con = duckdb.connect(str(db))
    con.execute("create table user_state (user_id varchar not null, model_version varchar "
                "not null, state blob not null, writings bigint not null, last_event double "
                "not null, updated_at timestamp not null, run_id varchar not null, "
                "primary key (user_id))")
    con.execute("create table user_state_staging (run_id varchar not null, user_id varchar "
                "not null, model_version varchar not null, state blob not null, writings "
                "bigint not null, last_event double not null, primary key (run_id, user_id))")
    con.execute("insert into user_state values ('u1', 'm', '\\x01'::blob, 3, 5.0, "
                "now()::timestamp, 'old'), ('u2', 'm', '\\x02'::blob, 1, 6.0, "
                "now()::timestamp, 'old')")
    con.close()
    store = StateStore(db)
    assert store.load(["u1", "u2"], 1e9, 0.0) == {"u1": b"\x01", "u2": b"\x02"}
    keys = store._con.execute(
        "select table_name from duckdb_constraints() where constraint_type = 'PRIMARY KEY' "
        "and table_name like 'user_state%'").fetchall()
    assert keys == []
    store.stage_rows("r", "m", [("u1", b"\x03", 4, 7.0)])
    store.commit("r", "m", 1e9)
    assert store.load(["u1", "u2"], 1e9) == {"u1": b"\x03", "u2": b"\x02"}
    close_all()
    StateStore(db)  # opening again: nothing to rebuild
    close_all()

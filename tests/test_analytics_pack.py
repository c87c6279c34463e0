"""The analytics pack on DuckDB: loading, translation, binding, answers, CLI."""

from __future__ import annotations

import csv
import datetime as dt
import json

import duckdb
import pytest

from analytics.pack import QueryError, get_query, load_pack, parse_query, run_duckdb, run_query
from models.records import AlertRecord, DeadLetter, LabelRecord, ScoreRecord, to_row
from pipelines.cli import main
from storage.duckdb_store import ensure_schema, insert_rows

T0 = 1_577_836_800.0  # 2020-01-01T00:00:00Z
DAY = 86_400.0


def _alert(n: int, user: str, p: float, k: int, day: int, seq: int = 1) -> AlertRecord:
    from models.records import priority_band

    return AlertRecord(alert_id=f"a{n}", user_id=user, submission_id=f"s{n}",
                       created_utc=T0 + day * DAY + n, p_user=p, writings_seen=k,
                       threshold=0.5, priority=priority_band(p), policy="incremental(0.5)",
                       top_terms="[]", model_version="m", alert_seq=seq)


ALERTS = [
    _alert(1, "u1", 0.95, 3, 0),
    _alert(2, "u2", 0.85, 1, 0),
    _alert(3, "u3", 0.75, 12, 1),
    _alert(4, "u4", 0.55, 7, 1),
    _alert(5, "u1", 0.97, 30, 2, seq=2),  # escalation of u1
]
LABELS = [
    LabelRecord("a1", "u1", "no_risk", "", "alice", T0 + 10 * DAY),
    LabelRecord("a1", "u1", "risk", "changed my mind", "alice", T0 + 11 * DAY),  # latest
    LabelRecord("a2", "u2", "risk", "", "bob", T0 + 10 * DAY),
    LabelRecord("a3", "u3", "no_risk", "", "bob", T0 + 10 * DAY),
    LabelRecord("a4", "u4", "undecided", "", "alice", T0 + 10 * DAY),
]
SCORES = [
    ScoreRecord("u1", "s0", T0 - 5, "post", "r", 0.4, 0.4, 1, "m", "f:1"),
    ScoreRecord("u1", "s1", T0 + 1, "post", "r", 0.9, 0.95, 2, "m", "f:2"),
    ScoreRecord("u2", "s2", T0 + 2, "comment", "r", 0.85, 0.85, 1, "m", "f:3"),
    ScoreRecord("u5", "s7", T0 + 3, "post", "r", 0.1, 0.1, 1, "m", "f:4"),
]
DEAD = [DeadLetter("d1", "parse", "invalid_json", "", "f:9", "{", 1, T0),
        DeadLetter("d2", "parse", "invalid_json", "", "f:10", "{{", 2, T0 + DAY),
        DeadLetter("d3", "sink", "bigquery_invalid", "", "bq", "{}", 2, T0 + 2 * DAY)]


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    path = tmp_path_factory.mktemp("analytics") / "store.duckdb"
    con = duckdb.connect(str(path))
    ensure_schema(con)
    for table, records in (("alerts", ALERTS), ("labels", LABELS), ("scores", SCORES),
                           ("dead_letters", DEAD)):
        insert_rows(con, table, [to_row(r) for r in records])
    con.close()
    return path


def _run(db, name, **params):
    res = run_query(name, {k: str(v) for k, v in params.items()}, f"duckdb://{db}")
    return [dict(zip(res.columns, r)) for r in res.rows]


def test_pack_loads_with_documented_params():
    pack = load_pack()
    assert len(pack) >= 8
    for q in pack.values():
        assert q.answers, q.name
        assert "@" not in q.duckdb_sql.split("*/")[-1], q.name  # all translated to $name
        for p in q.params:
            assert f"${p.name}" in q.duckdb_sql


def test_every_query_runs_on_an_empty_store(tmp_path):
    con = duckdb.connect(str(tmp_path / "empty.duckdb"))
    ensure_schema(con)
    for q in load_pack().values():
        values = q.bind({"user_id": "nobody"} if q.name == "user_timeline" else {})
        run_duckdb(q, values, con)


def test_header_must_declare_every_parameter():
    with pytest.raises(QueryError, match="declared"):
        parse_query("-- name: q\nSELECT @x", "q")
    with pytest.raises(QueryError, match="name"):
        parse_query("-- name: other\nSELECT 1", "q")


def test_bind_converts_and_rejects():
    q = get_query("alerts_per_day")
    assert q.bind({"start_date": "2020-01-02"})["start_date"] == dt.date(2020, 1, 2)
    with pytest.raises(QueryError, match="not a valid DATE"):
        q.bind({"start_date": "yesterday"})
    with pytest.raises(QueryError, match="unknown parameter"):
        q.bind({"limit": "3"})
    with pytest.raises(QueryError, match="required"):
        get_query("user_timeline").bind({})
    since = get_query("dead_letters_by_reason").bind({"since": "2020-01-02T00:00:00"})["since"]
    assert since.tzinfo is not None
    assert get_query("writings_at_alert").bind({"first_only": "no"})["first_only"] is False


def test_alerts_per_day(db):
    rows = _run(db, "alerts_per_day")
    assert [(r["day"], r["alerts"], r["users"], r["p0"], r["p4"]) for r in rows] == [
        (dt.date(2020, 1, 1), 2, 2, 1, 0), (dt.date(2020, 1, 2), 2, 2, 0, 1),
        (dt.date(2020, 1, 3), 1, 1, 1, 0)]
    assert len(_run(db, "alerts_per_day", start_date="2020-01-02", end_date="2020-01-02")) == 1


def test_latest_alert_per_user_takes_escalation(db):
    rows = _run(db, "latest_alert_per_user")
    assert {r["user_id"]: r["alert_id"] for r in rows} == {
        "u1": "a5", "u2": "a2", "u3": "a3", "u4": "a4"}
    assert {r["user_id"] for r in _run(db, "latest_alert_per_user", min_priority="P1")} == {
        "u1", "u2"}


def test_users_by_probability_uses_latest_score(db):
    rows = _run(db, "users_by_probability")
    assert [(r["rank"], r["user_id"], r["p_user"], r["alerted"]) for r in rows] == [
        (1, "u1", 0.95, True), (2, "u2", 0.85, True), (3, "u5", 0.1, False)]
    assert len(_run(db, "users_by_probability", min_p=0.5)) == 2


def test_user_timeline_and_bound_not_pasted(db):
    rows = _run(db, "user_timeline", user_id="u1")
    assert [r["submission_id"] for r in rows] == ["s0", "s1"]
    assert rows[1]["alert_priority"] == "P0"
    # A quote in the value is data, not SQL.
    assert _run(db, "user_timeline", user_id="u1' OR '1'='1") == []


def test_writings_at_alert_bands(db):
    rows = _run(db, "writings_at_alert")
    assert [(r["band"], r["alerts"]) for r in rows] == [("1", 1), ("2-5", 1), ("6-10", 1),
                                                         ("11-20", 1)]
    assert rows[-1]["cumulative_pct"] == 100.0
    rows = _run(db, "writings_at_alert", first_only="false")
    assert sum(r["alerts"] for r in rows) == 5


def test_precision_by_priority_uses_latest_label(db):
    rows = {r["priority"]: r for r in _run(db, "precision_by_priority")}
    # P0: a1 (risk after relabel) and a5 (unreviewed); P1: a2 risk; P2: a3 no_risk;
    # P4: a4 undecided.
    assert (rows["P0"]["reviewed"], rows["P0"]["risk"], rows["P0"]["unreviewed"]) == (1, 1, 1)
    assert rows["P0"]["precision"] == 1.0
    assert rows["P2"]["precision"] == 0.0
    assert rows["P4"]["undecided"] == 1 and rows["P4"]["precision"] is None
    bob = {r["priority"]: r for r in _run(db, "precision_by_priority", reviewer="bob")}
    assert bob["P0"]["reviewed"] == 0 and bob["P1"]["risk"] == 1


def test_precision_by_threshold(db):
    rows = {r["cutoff"]: r for r in _run(db, "precision_by_threshold")}
    # reviewed: a1 (0.95, risk), a2 (0.85, risk), a3 (0.75, no_risk)
    assert (rows[0.5]["reviewed"], rows[0.5]["risk"]) == (3, 2)
    assert rows[0.5]["precision"] == pytest.approx(0.6667)
    assert (rows[0.8]["reviewed"], rows[0.8]["precision"]) == (2, 1.0)
    assert rows[0.9]["reviewed"] == 1 and rows[0.6]["no_risk"] == 1


def test_dead_letters_by_reason(db):
    rows = _run(db, "dead_letters_by_reason")
    assert [(r["stage"], r["reason"], r["messages"], r["bytes"]) for r in rows] == [
        ("parse", "invalid_json", 2, 3), ("sink", "bigquery_invalid", 1, 2)]
    assert len(_run(db, "dead_letters_by_reason", since="2020-01-02T12:00:00Z")) == 1


def test_cli_list_and_exports(db, tmp_path, capsys):
    assert main(["analytics", "--list"]) == 0
    listing = capsys.readouterr().out
    assert all(name in listing for name in load_pack())
    out = tmp_path / "a.csv"
    assert main(["analytics", "alerts_per_day", "--db", f"duckdb://{db}", "--format", "csv",
                 "--out", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    assert rows[0]["day"] == "2020-01-01" and rows[0]["alerts"] == "2"
    assert main(["analytics", "dead_letters_by_reason", "--db", str(db), "--format",
                 "json"]) == 0
    first = json.loads(capsys.readouterr().out.splitlines()[0])
    assert first["first_received"] == "2020-01-01T00:00:00Z"
    assert main(["analytics", "users_by_probability", "--db", str(db)]) == 0
    assert "(3 rows)" in capsys.readouterr().out


def test_cli_backend_error_is_one_line(tmp_path, capsys):
    path = tmp_path / "old.duckdb"
    duckdb.connect(str(path)).execute("CREATE TABLE alerts (x INT)").close()
    assert main(["analytics", "precision_by_priority", "--db", str(path)]) == 2
    err = capsys.readouterr().err
    assert "query failed" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("argv, message", [
    (["analytics"], "name a query"),
    (["analytics", "nope"], "no query named"),
    (["analytics", "user_timeline"], "required"),
    (["analytics", "alerts_per_day", "--param", "start_date"], "NAME=VALUE"),
    (["analytics", "alerts_per_day", "--db", "duckdb:///nonexistent/x.duckdb"], "no database"),
    (["analytics", "alerts_per_day", "--db", "postgres://x"], "expected duckdb"),
])
def test_cli_usage_errors_exit_2(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1

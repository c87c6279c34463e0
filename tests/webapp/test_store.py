"""The review store over the real pipeline's DuckDB: tabs, paging, filters, exports."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime

import duckdb
import pytest

from corpora.readers import read_training_users
from models.records import LabelRecord
from webapp.store import AlertFilter, DuckDBReviewStore, StoreError, open_store

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _label(store, alert, label, reviewer="alice", at=None):
    store.add_label(LabelRecord(alert_id=alert["alert_id"], user_id=alert["user_id"],
                                label=label, comment="", reviewer=reviewer,
                                labelled_at=time.time() if at is None else at))


def _all(store, tab="untagged", sort="recent", flt=AlertFilter(), limit=7):
    rows, after = [], None
    while True:
        page = store.list_alerts(tab, sort, flt, after, limit)
        rows += page.rows
        if page.next_cursor is None:
            return rows
        after = page.next_cursor


def test_open_store_rejects_missing_file_and_unknown_scheme(tmp_path):
    with pytest.raises(StoreError, match="no database"):
        open_store(f"duckdb://{tmp_path}/nope.duckdb")
    with pytest.raises(StoreError, match="unsupported store scheme"):
        open_store("postgres://x/y")


def test_keyset_paging_walks_every_alert_once_in_order(review_db):
    store = DuckDBReviewStore(review_db)
    con = duckdb.connect(str(review_db), read_only=True)
    expected_recent = [r[0] for r in con.execute(
        "SELECT alert_id FROM alerts ORDER BY created_utc DESC, alert_id DESC").fetchall()]
    expected_prio = [r[0] for r in con.execute(
        "SELECT alert_id FROM alerts ORDER BY p_user DESC, alert_id DESC").fetchall()]
    con.close()
    assert len(expected_recent) > 20
    assert [r["alert_id"] for r in _all(store, sort="recent")] == expected_recent
    assert [r["alert_id"] for r in _all(store, sort="priority")] == expected_prio


def test_tagging_moves_alerts_between_tabs_latest_label_wins(review_db):
    store = DuckDBReviewStore(review_db)
    total = store.tab_counts(AlertFilter())["untagged"]
    a, b, c = _all(store)[:3]
    _label(store, a, "risk")
    _label(store, b, "no_risk")
    _label(store, c, "undecided")
    counts = store.tab_counts(AlertFilter())
    assert counts == {"untagged": total - 2, "risk": 1, "no_risk": 1, "undecided": 1}
    assert [r["alert_id"] for r in _all(store, "risk")] == [a["alert_id"]]
    assert [r["alert_id"] for r in _all(store, "no_risk")] == [b["alert_id"]]
    untagged = {r["alert_id"]: r for r in _all(store)}
    assert c["alert_id"] in untagged and untagged[c["alert_id"]]["label"] == "undecided"
    # Another reviewer changes their mind later: the latest row is the verdict.
    _label(store, a, "no_risk", reviewer="bob", at=time.time() + 1)
    assert store.tab_counts(AlertFilter())["risk"] == 0
    assert store.alert(a["alert_id"])["label"] == "no_risk"
    assert [h["reviewer"] for h in store.label_history(a["alert_id"])] == ["bob", "alice"]


def test_filters_by_band_subreddit_and_date(review_db):
    store = DuckDBReviewStore(review_db)
    rows = _all(store)
    band = rows[0]["priority"]
    by_band = _all(store, flt=AlertFilter(band=band))
    assert by_band and all(r["priority"] == band for r in by_band)
    assert len(by_band) == sum(r["priority"] == band for r in rows)
    sub = rows[0]["subreddit"]
    assert sub in store.subreddits()
    # Any writing of the user in that subreddit, not only the one that raised the alert.
    by_sub = _all(store, flt=AlertFilter(subreddit=sub))
    con = duckdb.connect(str(review_db), read_only=True)
    wrote_there = {r[0] for r in con.execute(
        "SELECT DISTINCT user_id FROM scores WHERE subreddit = ?", [sub]).fetchall()}
    con.close()
    assert by_sub and {r["user_id"] for r in by_sub} <= wrote_there
    assert len(by_sub) == sum(r["user_id"] in wrote_there for r in rows)
    assert any(r["subreddit"] != sub for r in by_sub) or len(by_sub) == sum(
        r["subreddit"] == sub for r in rows)
    day = datetime.fromtimestamp(rows[0]["created_utc"], UTC).date()
    by_day = _all(store, flt=AlertFilter(date_from=day, date_to=day))
    assert rows[0]["alert_id"] in {r["alert_id"] for r in by_day}
    assert all(datetime.fromtimestamp(r["created_utc"], UTC).date() == day for r in by_day)


@pytest.mark.parametrize("evil", ["' OR 1=1 --", "x'; DROP TABLE alerts; --",
                                  "depression' UNION SELECT * FROM labels --"])
def test_injection_in_filters_is_just_a_value(review_db, evil):
    store = DuckDBReviewStore(review_db)
    before = store.tab_counts(AlertFilter())
    assert _all(store, flt=AlertFilter(subreddit=evil)) == []
    assert store.alert(evil) is None
    assert store.tab_counts(AlertFilter()) == before


def test_detail_has_every_scored_writing_with_text(review_db):
    store = DuckDBReviewStore(review_db)
    a = _all(store)[0]
    ws = store.user_writings(a["user_id"], a["model_version"])
    assert len(ws) >= a["writings_seen"]
    assert [w["writings_seen"] for w in ws] == list(range(1, len(ws) + 1))
    assert any(w["submission_id"] == a["submission_id"] for w in ws)
    assert all(w["body"] or w["title"] for w in ws)
    assert all(0.0 <= w["p_text"] <= 1.0 and 0.0 <= w["p_user"] <= 1.0 for w in ws)


def test_exports_are_labelled_training_data(review_db, tmp_path):
    store = DuckDBReviewStore(review_db)
    a, b = _all(store)[:2]
    _label(store, a, "risk")
    _label(store, b, "no_risk")
    assert store.export_truth("tp") == [(a["user_id"], 1)]
    assert store.export_truth("fp") == [(b["user_id"], 0)]
    tp = list(store.export_writings("tp"))
    assert tp and {r["user_id"] for r in tp} == {a["user_id"]}
    everyone = {r["user_id"] for r in store.export_writings("all")}
    assert len(everyone) > 100
    # Wire format + truth file -> what 'earlyrisk train' reads.
    import json
    jsonl, truth = tmp_path / "all.jsonl", tmp_path / "truth.txt"
    jsonl.write_text("".join(json.dumps({
        "id": r["id"], "author": r["user_id"], "created_utc": r["created_utc"],
        "kind": r["kind"], "subreddit": r["subreddit"], "title": r["title"],
        "body": r["body"]}) + "\n" for r in store.export_writings("all")))
    truth.write_text("".join(f"{u} {lab}\n" for u, lab in store.export_truth("all")))
    users = read_training_users(jsonl, truth)
    assert {(u.user, u.label) for u in users} == {(a["user_id"], 1), (b["user_id"], 0)}
    assert all(u.writings for u in users)


def test_stats_match_the_tables(review_db):
    store = DuckDBReviewStore(review_db)
    s = store.stats()
    con = duckdb.connect(str(review_db), read_only=True)
    n_scores, n_users = con.execute(
        "SELECT count(*), count(DISTINCT user_id) FROM scores").fetchone()
    n_alerts = con.execute("SELECT count(*) FROM alerts").fetchone()[0]
    con.close()
    assert (s.totals["submissions"], s.totals["users"], s.totals["alerts"]) == (
        n_scores, n_users, n_alerts)
    assert sum(r[1] for r in s.per_day) == n_scores
    assert sum(r[3] for r in s.per_day) == n_alerts
    assert sum(s.bands.values()) == n_alerts
    # Processing speed: every scored writing falls in one processing-time bucket.
    assert s.speed and s.speed_bucket_s >= 1
    assert round(sum(v for _, v in s.speed) * s.speed_bucket_s) == n_scores


def test_paging_backwards_returns_the_previous_page(review_db):
    store = DuckDBReviewStore(review_db)
    for sort in ("recent", "priority"):
        first = store.list_alerts("untagged", sort, AlertFilter(), None, 5)
        second = store.list_alerts("untagged", sort, AlertFilter(), first.next_cursor, 5)
        assert second.prev_cursor is not None and first.prev_cursor is None
        back = store.list_alerts("untagged", sort, AlertFilter(), None, 5,
                                 before=second.prev_cursor)
        assert [r["alert_id"] for r in back.rows] == [r["alert_id"] for r in first.rows]
        assert back.prev_cursor is None and back.next_cursor is not None


def test_search_by_pseudonym_text_and_comment(review_db):
    store = DuckDBReviewStore(review_db)
    rows = _all(store)
    a, b = rows[0], rows[1]
    assert {r["alert_id"] for r in _all(store, flt=AlertFilter(q=a["user_id"]))} == {
        r["alert_id"] for r in rows if r["user_id"] == a["user_id"]}
    con = duckdb.connect(str(review_db), read_only=True)
    body = con.execute("SELECT body FROM writings WHERE user_id = ? AND length(body) > 40 "
                       "LIMIT 1", [b["user_id"]]).fetchone()[0]
    con.close()
    phrase = body[5:30].upper()  # case-insensitive, a phrase from the middle
    found = {r["user_id"] for r in _all(store, flt=AlertFilter(q=phrase))}
    assert b["user_id"] in found
    store.add_label(LabelRecord(alert_id=a["alert_id"], user_id=a["user_id"], label="undecided",
                                comment="needs a second look: 50%_sure", reviewer="carol",
                                labelled_at=time.time()))
    assert [r["alert_id"] for r in _all(store, flt=AlertFilter(q="50%_SURE"))] == [a["alert_id"]]
    assert _all(store, flt=AlertFilter(q="50%%_sure")) == []  # % and _ are literal
    by_reviewer = _all(store, flt=AlertFilter(reviewer="carol"))
    assert [r["alert_id"] for r in by_reviewer] == [a["alert_id"]]
    today = datetime.now(UTC).date()
    assert [r["alert_id"] for r in _all(store, flt=AlertFilter(verdict_from=today,
                                                               verdict_to=today))] == [
        a["alert_id"]]
    assert _all(store, flt=AlertFilter(verdict_to=date(2000, 1, 1))) == []


def test_verdicts_live_in_the_review_database_not_the_pipeline_file(review_db):
    store = DuckDBReviewStore(review_db)
    a = _all(store)[0]
    _label(store, a, "risk")
    store.close()
    con = duckdb.connect(str(review_db), read_only=True)
    tables = {r[0] for r in con.execute(
        "SELECT table_name FROM information_schema.tables").fetchall()}
    in_pipeline_file = con.execute("SELECT count(*) FROM labels").fetchone()[0] \
        if "labels" in tables else 0
    con.close()
    assert in_pipeline_file == 0  # the pipeline's file is never written by the app
    reopened = DuckDBReviewStore(review_db)
    assert reopened.alert(a["alert_id"])["label"] == "risk"
    assert reopened.review.path.endswith("review.review.sqlite")


def test_labels_an_older_app_kept_in_the_duckdb_file_are_imported_once(review_db):
    from models.records import LABELS
    from storage.duckdb_store import table_ddl

    con = duckdb.connect(str(review_db))
    con.execute(table_ddl(LABELS))
    aid, uid = con.execute("SELECT alert_id, user_id FROM alerts LIMIT 1").fetchone()
    con.execute("INSERT INTO labels VALUES (?, ?, 'no_risk', 'old', 'dora', "
                "TIMESTAMP '2020-01-01')", [aid, uid])
    con.close()
    store = DuckDBReviewStore(review_db)
    assert store.alert(aid)["label"] == "no_risk"
    store.close()
    again = DuckDBReviewStore(review_db)
    assert len(again.label_history(aid)) == 1


def test_forget_purges_the_review_database_too(review_db, monkeypatch, capsys):
    from pipelines.cli import main
    from webapp.store import default_review_db

    store = DuckDBReviewStore(review_db)
    a, b = _all(store)[:2]
    store.add_label(LabelRecord(alert_id=a["alert_id"], user_id=a["user_id"], label="risk",
                                comment="forget-me-comment", reviewer="alice",
                                labelled_at=time.time()))
    store.review.add_note(a["user_id"], "alice", "forget-me-note")
    store.review.record("verdict", "alice", alert_id=a["alert_id"], user_id=a["user_id"])
    _label(store, b, "no_risk")
    store.close()
    assert main(["forget", "--user", a["user_id"], "--db", f"duckdb://{review_db}"]) == 0
    out = capsys.readouterr().out
    assert "review labels" in out and "review notes" in out
    again = DuckDBReviewStore(review_db)
    assert again.label_history(a["alert_id"]) == [] and again.review.notes(a["user_id"]) == []
    assert len(again.label_history(b["alert_id"])) == 1  # others stay
    again.close()
    data = b"".join(p.read_bytes() for p in review_db.parent.glob(
        default_review_db(review_db).name + "*"))
    assert b"forget-me" not in data

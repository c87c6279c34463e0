"""The BigQuery review store against bqemulator, loaded from a real pipeline run.

Needs deploy/local/install-bqemulator.sh (bqemulator in .venv-bqemulator).
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

import duckdb
import pytest

from models.records import LabelRecord
from webapp.store import AlertFilter, open_store

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
BQEMULATOR = Path(os.environ.get("BQEMULATOR", ROOT / ".venv-bqemulator" / "bin" / "bqemulator"))
PROJECT, DATASET = "review-test", "earlyrisk"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    if not BQEMULATOR.exists():
        pytest.fail(f"{BQEMULATOR} missing: run deploy/local/install-bqemulator.sh")
    rest, grpc = _port(), _port()
    log = tmp_path_factory.mktemp("bq") / "bqemulator.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(BQEMULATOR), "start", "--rest-port", str(rest),
                                 "--grpc-port", str(grpc), "--project", PROJECT],
                                stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", rest), timeout=1).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"bqemulator did not start: {log.read_text()[-2000:]}")
            time.sleep(0.2)
    old = os.environ.get("BIGQUERY_EMULATOR_HOST")
    os.environ["BIGQUERY_EMULATOR_HOST"] = f"http://127.0.0.1:{rest}"
    try:
        yield os.environ["BIGQUERY_EMULATOR_HOST"]
    finally:
        if old is None:
            os.environ.pop("BIGQUERY_EMULATOR_HOST", None)
        else:
            os.environ["BIGQUERY_EMULATOR_HOST"] = old
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module")
def bq_store(emulator, pipeline_db, tmp_path_factory):
    """The pipeline's tables copied from DuckDB into the emulator."""
    from google.cloud import bigquery

    from models.records import TABLES
    from storage.bigquery_store import DatasetRef, bq_table

    store = open_store(f"bigquery://{PROJECT}/{DATASET}",
                       review_db=tmp_path_factory.mktemp("bq-review") / "review.sqlite")
    client = store._client
    client.create_dataset(bigquery.Dataset(f"{PROJECT}.{DATASET}"), exists_ok=True)
    con = duckdb.connect(str(pipeline_db), read_only=True)
    for name in ("scores", "alerts", "writings", "dead_letters"):
        ref = f"{PROJECT}.{DATASET}.{name}"
        client.create_table(bq_table(DatasetRef(PROJECT, DATASET), TABLES[name]),
                            exists_ok=True)
        cur = con.execute(f"SELECT * FROM {name}")
        cols = [d[0] for d in cur.description]
        rows = [{c: (v.isoformat() if hasattr(v, "isoformat") else v)
                 for c, v in zip(cols, r)} for r in cur.fetchall()]
        for i in range(0, len(rows), 500):
            assert client.insert_rows_json(ref, rows[i:i + 500]) == []
    con.close()
    store.check()
    return store


def _all(store, tab="untagged", sort="recent", flt=AlertFilter()):
    rows, after = [], None
    while True:
        page = store.list_alerts(tab, sort, flt, after, 20)
        rows += page.rows
        if page.next_cursor is None:
            return rows
        after = page.next_cursor


def test_bigquery_store_matches_duckdb(bq_store, pipeline_db):
    from webapp.store import DuckDBReviewStore

    duck = DuckDBReviewStore(pipeline_db)
    for sort in ("recent", "priority"):
        assert [r["alert_id"] for r in _all(bq_store, sort=sort)] == \
            [r["alert_id"] for r in _all(duck, sort=sort)]
    assert bq_store.tab_counts(AlertFilter()) == duck.tab_counts(AlertFilter())
    a = _all(duck)[0]
    assert bq_store.alert(a["alert_id"])["subreddit"] == a["subreddit"]
    assert len(bq_store.user_writings(a["user_id"], a["model_version"])) == \
        len(duck.user_writings(a["user_id"], a["model_version"]))
    assert bq_store.subreddits() == duck.subreddits()
    s_bq, s_duck = bq_store.stats(), duck.stats()
    assert s_bq.totals == s_duck.totals and s_bq.per_day == s_duck.per_day
    assert _all(bq_store, flt=AlertFilter(subreddit="' OR 1=1 --")) == []
    duck.close()


def test_bigquery_search_filters_and_paging_match_duckdb(bq_store, pipeline_db):
    from webapp.store import DuckDBReviewStore

    duck = DuckDBReviewStore(pipeline_db)
    a = _all(duck)[3]
    word = duck.user_writings(a["user_id"], a["model_version"])[0]["body"].split()[-1][:12]
    sub = duck.subreddits()[0]
    for flt in (AlertFilter(q=a["user_id"]), AlertFilter(q=word.upper()),
                AlertFilter(subreddit=sub), AlertFilter(q="100%_no-such-text")):
        assert [r["alert_id"] for r in _all(bq_store, flt=flt)] == \
            [r["alert_id"] for r in _all(duck, flt=flt)], flt
    first = bq_store.list_alerts("untagged", "priority", AlertFilter(), None, 5)
    second = bq_store.list_alerts("untagged", "priority", AlertFilter(), first.next_cursor, 5)
    back = bq_store.list_alerts("untagged", "priority", AlertFilter(), None, 5,
                                before=second.prev_cursor)
    assert [r["alert_id"] for r in back.rows] == [r["alert_id"] for r in first.rows]
    assert bq_store.user_latest(a["user_id"])["p_user"] == duck.user_latest(a["user_id"])["p_user"]
    assert [r["alert_id"] for r in bq_store.user_alerts(a["user_id"])] == \
        [r["alert_id"] for r in duck.user_alerts(a["user_id"])]
    duck.close()


def test_bigquery_labels_move_tabs_and_export(bq_store):
    a = _all(bq_store)[0]
    before = bq_store.tab_counts(AlertFilter())
    bq_store.add_label(LabelRecord(alert_id=a["alert_id"], user_id=a["user_id"], label="risk",
                                   comment="", reviewer="alice", labelled_at=time.time()))
    after = bq_store.tab_counts(AlertFilter())
    assert after["risk"] == before["risk"] + 1
    assert after["untagged"] == before["untagged"] - 1
    assert a["alert_id"] in [r["alert_id"] for r in _all(bq_store, "risk")]
    assert bq_store.export_truth("tp") == [(a["user_id"], 1)]
    assert {r["user_id"] for r in bq_store.export_writings("tp")} == {a["user_id"]}
    assert bq_store.label_history(a["alert_id"])[0]["reviewer"] == "alice"
    assert [r["alert_id"] for r in _all(bq_store, "risk", flt=AlertFilter(
        reviewer="alice"))] == [a["alert_id"]]


def test_app_pages_over_bigquery(bq_store):
    import re

    from webapp.app import AppConfig, create_app

    from .conftest import PASSWORD, REVIEWER, review_env

    app = create_app(bq_store, AppConfig.from_env(env=review_env()))
    c = app.test_client()
    token = re.search(r'name="csrf_token" value="([^"]+)"',
                      c.get("/login").get_data(as_text=True)).group(1)
    assert c.post("/login", data={"username": REVIEWER, "password": PASSWORD,
                                  "csrf_token": token}).status_code == 302
    html = c.get("/alerts?sort=priority").get_data(as_text=True)
    aid = re.findall(r'data-alert-id="([^"]+)"', html)[0]
    detail = c.get(f"/alerts/{aid}").get_data(as_text=True)
    assert 'id="chart-writings"' in detail and 'class="alert-point"' in detail
    assert 'id="evidence"' in detail and 'id="reason-explicit"' not in detail  # DuckDB-only
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', detail).group(1)
    r = c.post(f"/alerts/{aid}/label", data={"label": "no_risk", "csrf_token": csrf,
                                             "and_next": "1", "back": "/alerts?sort=priority"})
    assert r.status_code == 302 and f"saved_alert={aid}" in r.headers["Location"]
    assert c.post(f"/alerts/{aid}/note", data={"note": "seen", "csrf_token": csrf}
                  ).status_code == 302
    assert "seen" in c.get(f"/alerts/{aid}").get_data(as_text=True)
    assert "verdict" in c.get("/activity?mine=1").get_data(as_text=True)
    assert c.get("/stats").status_code == 200
    assert c.get("/datasets/all.jsonl").data.count(b"\n") > 1000

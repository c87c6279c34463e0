"""Keyset paging over 100k synthetic alerts: correct at any depth; timings printed.

Synthesises a store with 100,000 alerts (each with its triggering score row, as
the pipeline writes them) and 30,000 labels, then walks pages with the app's
queries. Figures are printed (``pytest -s``), never asserted.
"""

from __future__ import annotations

import time

import duckdb
import pytest

from storage.duckdb_store import ensure_schema
from webapp.store import AlertFilter, DuckDBReviewStore

pytestmark = pytest.mark.slow

N_ALERTS = 100_000
N_LABELS = 30_000


def build_big_db(path) -> None:
    """A store with N_ALERTS alerts, their score rows and N_LABELS labels."""
    con = duckdb.connect(str(path))
    ensure_schema(con)
    # Deterministic pseudo-random values from hash(i): no Python loop, seconds.
    con.execute(f"""
        INSERT INTO alerts (alert_id, user_id, submission_id, created_utc, p_user,
                            writings_seen, threshold, priority, policy, top_terms,
                            model_version, alert_seq) SELECT
            'a' || lpad(i::VARCHAR, 8, '0'), 'u_' || lpad(i::VARCHAR, 20, '0'),
            's' || i, TIMESTAMP '2019-01-01' + to_seconds(hash(i) % 31536000),
            0.5 + (hash(i * 7) % 500000) / 1000000.0, 1 + hash(i * 3) % 50, 0.5,
            '', 'incremental(0.5)', '[["alone", 0.5]]', 'm1', 1
        FROM range({N_ALERTS}) t(i)""")
    con.execute("""UPDATE alerts SET priority = CASE WHEN p_user > 0.9 THEN 'P0'
        WHEN p_user > 0.8 THEN 'P1' WHEN p_user > 0.7 THEN 'P2' WHEN p_user > 0.6 THEN 'P3'
        ELSE 'P4' END""")
    con.execute("""
        INSERT INTO scores SELECT user_id, submission_id, created_utc, 'post',
            ['depression', 'anxiety', 'AskReddit', 'lonely'][(1 + hash(alert_id) % 4)::BIGINT],
            p_user, p_user, writings_seen, model_version, 'bench', NULL
        FROM alerts""")
    con.execute(f"""
        INSERT INTO labels SELECT alert_id, user_id,
            ['risk', 'no_risk', 'undecided'][(1 + hash(alert_id) % 3)::BIGINT], '', 'alice',
            TIMESTAMP '2020-01-01' + to_seconds(hash(alert_id) % 1000000)
        FROM alerts USING SAMPLE {N_LABELS} ROWS (reservoir, 42)""")
    con.close()


@pytest.fixture(scope="module")
def big_db(tmp_path_factory):
    path = tmp_path_factory.mktemp("bench") / "big.duckdb"
    build_big_db(path)
    return path


def _timed(fn, repeat: int = 5) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best * 1000, out


@pytest.mark.parametrize("sort", ["recent", "priority"])
def test_keyset_pages_stay_correct_and_fast_at_depth(big_db, sort):
    store = DuckDBReviewStore(big_db)
    flt = AlertFilter()
    order = {"recent": "a.created_utc DESC, a.alert_id DESC",
             "priority": "a.p_user DESC, a.alert_id DESC"}[sort]
    ms_first, first = _timed(lambda: store.list_alerts("untagged", sort, flt, None, 50))
    # Walk to ~60k rows deep with big pages, then time a normal page there.
    after, seen = first.next_cursor, 50
    while seen < 60_000:
        page = store.list_alerts("untagged", sort, flt, after, 5000)
        seen += len(page.rows)
        after = page.next_cursor
    ms_deep, deep = _timed(lambda: store.list_alerts("untagged", sort, flt, after, 50))
    con = duckdb.connect(str(big_db), read_only=True)
    expected = [r[0] for r in con.execute(f"""
        WITH cur AS (SELECT alert_id, arg_max(label, labelled_at) AS label FROM labels
                     GROUP BY alert_id)
        SELECT a.alert_id FROM alerts a LEFT JOIN cur USING (alert_id)
        WHERE cur.label IS NULL OR cur.label = 'undecided'
        ORDER BY {order} LIMIT 50 OFFSET ?""", [seen]).fetchall()]
    con.close()
    assert [r["alert_id"] for r in deep.rows] == expected
    ms_counts, counts = _timed(lambda: store.tab_counts(flt))
    assert sum(counts[k] for k in ("untagged", "risk", "no_risk")) == N_ALERTS
    ms_filtered, _ = _timed(lambda: store.list_alerts(
        "risk", sort, AlertFilter(band="P1", subreddit="depression"), None, 50))
    print(f"\n[bench] {N_ALERTS:,} alerts, {N_LABELS:,} labels, sort={sort}: "
          f"first page {ms_first:.1f} ms, page at row {seen:,} {ms_deep:.1f} ms, "
          f"tab counts {ms_counts:.1f} ms, filtered page {ms_filtered:.1f} ms "
          "(best of 5; pages read the app's snapshot of the store)")

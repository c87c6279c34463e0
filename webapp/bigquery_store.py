"""The review store over BigQuery: ``earlyrisk serve --db bigquery://PROJECT/DATASET``.

Same interface and semantics as :class:`webapp.store.DuckDBReviewStore`, in
BigQuery SQL with named query parameters (``@name``) for every value. Tables
are those the pipeline's BigQuery sink writes (schema from
:data:`models.records.TABLES`); ``labels`` is created if missing. Labels are
added with streaming inserts. BigQuery has no single-writer limitation, so the
pipeline and the app run side by side.

``BIGQUERY_EMULATOR_HOST`` (e.g. ``http://127.0.0.1:9050``) points the client at
an emulator with anonymous credentials; otherwise Application Default
Credentials are used.

Verdicts go to the dataset's ``labels`` table; what reviewers write besides
(notes, claims, audit trail, sessions) goes to the app's SQLite review
database, as with DuckDB. Reason codes on verdicts are DuckDB-only (the
``labels`` table has no column for them): the app hides them here.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from models.records import LABELS, LabelRecord, to_row
from webapp.reviewdb import ReviewDB
from webapp.store import (
    _ALERT_COLS,
    _TAB_SQL,
    LABEL_VALUES,
    TABS,
    AlertFilter,
    AlertPage,
    Cursor,
    ReviewStore,
    Stats,
    StoreError,
    _alert_row,
    _epoch,
    _page,
    like_pattern,
    speed_bucket,
)

_SORT_SQL = {
    "recent": ("UNIX_MICROS(a.created_utc)", "a.created_utc DESC, a.alert_id DESC",
               "a.created_utc ASC, a.alert_id ASC"),
    "priority": ("a.p_user", "a.p_user DESC, a.alert_id DESC", "a.p_user ASC, a.alert_id ASC"),
}


def _client(project: str):
    from google.cloud import bigquery

    if os.environ.get("BIGQUERY_EMULATOR_HOST"):
        from google.api_core.client_options import ClientOptions
        from google.auth.credentials import AnonymousCredentials

        return bigquery.Client(
            project=project, credentials=AnonymousCredentials(),
            client_options=ClientOptions(api_endpoint=os.environ["BIGQUERY_EMULATOR_HOST"]))
    from google.auth.exceptions import DefaultCredentialsError

    try:
        return bigquery.Client(project=project)
    except DefaultCredentialsError as e:
        raise StoreError(f"no Google credentials for BigQuery: {str(e).splitlines()[0]}") \
            from None


class BigQueryReviewStore(ReviewStore):
    features = frozenset({"search", "verdict-filters"})

    def __init__(self, project: str, dataset: str, client=None,
                 review_db: str = "earlyrisk-review.sqlite") -> None:
        self.project, self.dataset = project, dataset
        self._client = client or _client(project)
        self.review = ReviewDB(review_db)

    def _t(self, name: str) -> str:
        return f"`{self.project}.{self.dataset}.{name}`"

    def _cur(self) -> str:
        # The latest label row per alert is its verdict.
        return (f"cur AS (SELECT alert_id, label, reviewer, labelled_at FROM {self._t('labels')}"
                " WHERE TRUE QUALIFY ROW_NUMBER() OVER (PARTITION BY alert_id "
                "ORDER BY labelled_at DESC, reviewer DESC) = 1)")

    def _query(self, sql: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        from google.cloud import bigquery

        qp = []
        for name, value in (params or {}).items():
            kind = ("TIMESTAMP" if isinstance(value, datetime) else
                    "INT64" if isinstance(value, int) else
                    "FLOAT64" if isinstance(value, float) else "STRING")
            qp.append(bigquery.ScalarQueryParameter(name, kind, value))
        job = self._client.query(sql, job_config=bigquery.QueryJobConfig(query_parameters=qp))
        return [dict(r.items()) for r in job.result()]

    def check(self) -> None:
        from google.api_core.exceptions import GoogleAPIError, NotFound

        try:
            names = {t.table_id for t in self._client.list_tables(
                f"{self.project}.{self.dataset}")}
        except NotFound:
            raise StoreError(f"no BigQuery dataset {self.project}.{self.dataset}") from None
        except (GoogleAPIError, OSError) as e:
            raise StoreError(f"BigQuery not reachable: {str(e).splitlines()[0]}") from None
        missing = {"scores", "alerts", "writings"} - names
        if missing:
            raise StoreError(f"dataset {self.dataset} has no table(s) "
                             f"{', '.join(sorted(missing))}")
        if "labels" not in names:
            from storage.bigquery_store import DatasetRef, bq_table

            self._client.create_table(bq_table(DatasetRef(self.project, self.dataset), LABELS),
                                      exists_ok=True)

    def close(self) -> None:
        self._client.close()
        self.review.close()

    def _filters(self, flt: AlertFilter, params: dict[str, Any]) -> list[str]:
        where = []
        if flt.date_from is not None:
            where.append("a.created_utc >= @date_from")
            params["date_from"] = datetime(flt.date_from.year, flt.date_from.month,
                                           flt.date_from.day, tzinfo=UTC)
        if flt.date_to is not None:
            where.append("a.created_utc < @date_to")
            params["date_to"] = datetime(flt.date_to.year, flt.date_to.month, flt.date_to.day,
                                         tzinfo=UTC) + timedelta(days=1)
        if flt.band is not None:
            where.append("a.priority = @band")
            params["band"] = flt.band
        if flt.subreddit is not None:
            where.append(f"a.user_id IN (SELECT user_id FROM {self._t('scores')} "
                         "WHERE subreddit = @subreddit)")
            params["subreddit"] = flt.subreddit
        if flt.reviewer is not None:
            where.append("cur.reviewer = @reviewer")
            params["reviewer"] = flt.reviewer
        if flt.verdict_from is not None:
            where.append("cur.labelled_at >= @verdict_from")
            params["verdict_from"] = datetime(flt.verdict_from.year, flt.verdict_from.month,
                                              flt.verdict_from.day, tzinfo=UTC)
        if flt.verdict_to is not None:
            where.append("cur.labelled_at < @verdict_to")
            params["verdict_to"] = datetime(flt.verdict_to.year, flt.verdict_to.month,
                                            flt.verdict_to.day, tzinfo=UTC) + timedelta(days=1)
        if flt.q:
            where.append(
                f"(a.user_id = @q OR a.alert_id = @q OR a.user_id IN (SELECT user_id FROM "
                f"{self._t('writings')} WHERE LOWER(title) LIKE LOWER(@like) OR LOWER(body) "
                f"LIKE LOWER(@like)) OR a.alert_id IN (SELECT alert_id FROM {self._t('labels')}"
                " WHERE LOWER(comment) LIKE LOWER(@like)))")
            params["q"] = flt.q
            params["like"] = like_pattern(flt.q)
        return where

    def _from(self) -> str:
        return (f"{self._t('alerts')} a LEFT JOIN cur ON cur.alert_id = a.alert_id "
                f"LEFT JOIN {self._t('scores')} s ON s.user_id = a.user_id "
                "AND s.submission_id = a.submission_id AND s.model_version = a.model_version")

    def user_alerts(self, user_id: str) -> list[dict[str, Any]]:
        rows = self._query(f"WITH {self._cur()} SELECT {_ALERT_COLS}, s.subreddit "
                           f"FROM {self._from()} WHERE a.user_id = @u "
                           "ORDER BY a.created_utc DESC, a.alert_id DESC", {"u": user_id})
        return [_alert_row(list(r), tuple(r.values())) for r in rows]

    def user_latest(self, user_id: str) -> dict[str, Any] | None:
        rows = self._query(f"SELECT p_user, writings_seen, created_utc, model_version FROM "
                           f"{self._t('scores')} WHERE user_id = @u "
                           "ORDER BY created_utc DESC, writings_seen DESC LIMIT 1", {"u": user_id})
        if not rows:
            return None
        r = rows[0]
        r["created_utc"] = _epoch(r["created_utc"])
        return r

    def reviewers(self) -> list[str]:
        return [r["reviewer"] for r in self._query(
            f"SELECT DISTINCT reviewer FROM {self._t('labels')} ORDER BY 1")]

    def tab_counts(self, flt: AlertFilter) -> dict[str, int]:
        params: dict[str, Any] = {}
        cond = " AND ".join(self._filters(flt, params)) or "TRUE"
        sums = ", ".join(f"COUNTIF({_TAB_SQL[t]}) AS {t}" for t in TABS)
        rows = self._query(f"WITH {self._cur()} SELECT {sums}, COUNTIF(cur.label = "
                           f"'undecided') AS undecided FROM {self._from()} WHERE {cond}", params)
        return {k: int(v) for k, v in rows[0].items()}

    def list_alerts(self, tab: str, sort: str, flt: AlertFilter, after: Cursor | None,
                    limit: int, before: Cursor | None = None) -> AlertPage:
        if tab not in _TAB_SQL or sort not in _SORT_SQL:
            raise ValueError(f"unknown tab {tab!r} or sort {sort!r}")
        key_sql, order_sql, reverse_sql = _SORT_SQL[sort]
        params: dict[str, Any] = {"limit": limit + 1}
        where = [_TAB_SQL[tab], *self._filters(flt, params)]
        order = order_sql
        if before is not None:
            where.append(f"({key_sql} > @cur_key OR ({key_sql} = @cur_key "
                         "AND a.alert_id > @cur_id))")
            params["cur_key"], params["cur_id"] = before.key, before.alert_id
            order = reverse_sql
        elif after is not None:
            where.append(f"({key_sql} < @cur_key OR ({key_sql} = @cur_key "
                         "AND a.alert_id < @cur_id))")
            params["cur_key"], params["cur_id"] = after.key, after.alert_id
        sql = (f"WITH {self._cur()} SELECT {_ALERT_COLS}, s.subreddit, {key_sql} AS sort_key "
               f"FROM {self._from()} WHERE {' AND '.join(where)} ORDER BY {order} "
               "LIMIT @limit")
        out = [_alert_row(list(r), tuple(r.values())) for r in self._query(sql, params)]
        if before is not None:
            out.reverse()
        return _page(out, limit, after, before)

    def alert(self, alert_id: str) -> dict[str, Any] | None:
        rows = self._query(f"WITH {self._cur()} SELECT {_ALERT_COLS}, s.subreddit, "
                           f"{_SORT_SQL['recent'][0]} AS key_recent, a.p_user AS key_priority "
                           f"FROM {self._from()} WHERE a.alert_id = @id", {"id": alert_id})
        return _alert_row(list(rows[0]), tuple(rows[0].values())) if rows else None

    def user_writings(self, user_id: str, model_version: str) -> list[dict[str, Any]]:
        rows = self._query(
            f"""SELECT s.submission_id, s.created_utc, s.kind, s.subreddit, s.p_text, s.p_user,
                       s.writings_seen, w.title, w.body
                FROM {self._t('scores')} s LEFT JOIN {self._t('writings')} w
                  ON w.user_id = s.user_id AND w.submission_id = s.submission_id
                WHERE s.user_id = @user AND s.model_version = @model
                ORDER BY s.writings_seen, s.created_utc""",
            {"user": user_id, "model": model_version})
        for r in rows:
            r["created_utc"] = _epoch(r["created_utc"])
        return rows

    def label_history(self, alert_id: str) -> list[dict[str, Any]]:
        rows = self._query(f"SELECT label, comment, reviewer, labelled_at, '' AS reasons, "
                           "'' AS via FROM "
                           f"{self._t('labels')} WHERE alert_id = @id "
                           "ORDER BY labelled_at DESC", {"id": alert_id})
        for r in rows:
            r["labelled_at"] = _epoch(r["labelled_at"])
        return rows

    def add_label(self, label: LabelRecord, reasons: tuple[str, ...] = (),
                  via: str = "password") -> None:
        if label.label not in LABEL_VALUES:
            raise ValueError(f"label must be one of {LABEL_VALUES}")
        row = to_row(label)
        row["labelled_at"] = datetime.fromtimestamp(label.labelled_at, UTC).isoformat()
        errors = self._client.insert_rows_json(
            f"{self.project}.{self.dataset}.labels", [row],
            row_ids=[f"{label.alert_id}|{label.reviewer}|{label.labelled_at!r}"])
        if errors:
            raise StoreError(f"label not stored: {errors}")

    def subreddits(self) -> list[str]:
        rows = self._query(
            f"SELECT DISTINCT subreddit FROM {self._t('scores')} WHERE subreddit IS NOT NULL "
            "ORDER BY 1")
        return [r["subreddit"] for r in rows]

    def _verdict(self) -> str:
        return (f"verdict AS (SELECT user_id, label FROM {self._t('labels')} "
                "WHERE label IN ('risk', 'no_risk') QUALIFY ROW_NUMBER() OVER "
                "(PARTITION BY user_id ORDER BY labelled_at DESC) = 1)")

    def _users(self, dataset: str) -> str:
        return {"tp": "SELECT user_id FROM verdict WHERE label = 'risk'",
                "fp": "SELECT user_id FROM verdict WHERE label = 'no_risk'",
                "all": f"SELECT DISTINCT user_id FROM {self._t('writings')}"}[dataset]

    def export_writings(self, dataset: str) -> Iterator[dict[str, Any]]:
        rows = self._query(
            f"WITH {self._verdict()} SELECT w.submission_id AS id, w.user_id, w.created_utc, "
            f"w.kind, w.subreddit, w.title, w.body FROM {self._t('writings')} w "
            f"WHERE w.user_id IN ({self._users(dataset)}) "
            "ORDER BY w.user_id, w.created_utc, w.submission_id")
        for r in rows:
            r["created_utc"] = _epoch(r["created_utc"])
            yield r

    def export_truth(self, dataset: str) -> list[tuple[str, int]]:
        rows = self._query(
            f"WITH {self._verdict()} SELECT v.user_id, v.label FROM verdict v "
            f"WHERE v.user_id IN ({self._users(dataset)}) AND v.user_id IN "
            f"(SELECT user_id FROM {self._t('writings')}) ORDER BY 1")
        return [(r["user_id"], 1 if r["label"] == "risk" else 0) for r in rows]

    def stats(self) -> Stats:
        t = self._t
        tot = self._query(
            f"SELECT COUNT(*) AS subs, COUNT(DISTINCT user_id) AS users, "
            f"MIN(created_utc) AS first, MAX(created_utc) AS last FROM {t('scores')}")[0]
        al = self._query(f"SELECT COUNT(*) AS n, COUNT(DISTINCT user_id) AS u "
                         f"FROM {t('alerts')}")[0]
        dead = self._query(f"SELECT reason, COUNT(*) AS n FROM {t('dead_letters')} "
                           "GROUP BY reason ORDER BY n DESC")
        labels = self._query(f"WITH {self._cur()} SELECT label, COUNT(*) AS n FROM cur "
                             "GROUP BY label")
        bands = self._query(f"SELECT priority, COUNT(*) AS n FROM {t('alerts')} "
                            "GROUP BY priority ORDER BY priority")
        per_day = self._query(
            f"""WITH d AS (SELECT DATE(created_utc) AS day, COUNT(*) AS subs,
                                  COUNT(DISTINCT user_id) AS users
                           FROM {t('scores')} GROUP BY day),
                al AS (SELECT DATE(created_utc) AS day, COUNT(*) AS n FROM {t('alerts')}
                       GROUP BY day)
                SELECT d.day, d.subs, d.users, COALESCE(al.n, 0) AS n FROM d
                LEFT JOIN al ON al.day = d.day ORDER BY d.day""")
        span = self._query(
            f"SELECT TIMESTAMP_DIFF(MAX(processed_at), MIN(processed_at), SECOND) AS s "
            f"FROM {t('scores')}")[0]["s"]
        bucket = speed_bucket(None if span is None else float(span))
        speed = self._query(
            f"SELECT DIV(UNIX_SECONDS(processed_at), {bucket}) * {bucket} AS t, "
            f"COUNT(*) / {bucket} AS v FROM {t('scores')} WHERE processed_at IS NOT NULL "
            "GROUP BY t ORDER BY t")
        lab = {r["label"]: int(r["n"]) for r in labels}
        s = Stats(
            totals={"submissions": int(tot["subs"]), "users": int(tot["users"]),
                    "alerts": int(al["n"]), "alerted_users": int(al["u"]),
                    "dead_letters": sum(int(r["n"]) for r in dead),
                    "reviewed": sum(v for k, v in lab.items() if k != "undecided"),
                    "first_event": _epoch(tot["first"]), "last_event": _epoch(tot["last"])},
            labels=lab, bands={r["priority"]: int(r["n"]) for r in bands},
            per_day=[(r["day"], int(r["subs"]), int(r["users"]), int(r["n"])) for r in per_day],
            dead_letter_reasons={r["reason"]: int(r["n"]) for r in dead},
            speed=[(float(r["t"]), float(r["v"])) for r in speed], speed_bucket_s=bucket)
        return s

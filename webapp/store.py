"""Data access for the review web app, behind one small interface.

:class:`ReviewStore` is what the app needs from the store the pipeline writes
(``scores``, ``alerts``, ``writings``) plus the ``labels`` table the app writes.
:class:`DuckDBReviewStore` implements it over the embedded DuckDB file;
:func:`open_store` picks the implementation from a URI (``duckdb://PATH``).

Every query binds its values as parameters; only fixed SQL fragments chosen
from whitelists (tab, sort order) are ever put into the SQL text.

Alert lists use keyset ("seek") pagination: a page is the rows strictly after
the last row of the previous page in the sort order, so page N costs the same
as page 1 however many alerts there are (no OFFSET scan).

DuckDB allows one writing process per file. The app therefore opens a
read-only connection per request and a short read-write connection only to
insert a label. While another process (a running ``earlyrisk run``) holds the
file, reads and writes fail with :class:`StoreBusyError` and the app answers 503.
Inside this process a readers-writer lock keeps read-only and read-write
connections from overlapping (DuckDB refuses to mix them on one file).
"""

from __future__ import annotations

import atexit
import json
import threading
import time
import weakref
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import duckdb

from models.records import LABELS, LabelRecord, to_row

TABS = ("untagged", "risk", "no_risk")
SORTS = ("recent", "priority")
LABEL_VALUES = ("risk", "no_risk", "undecided")
BANDS = ("P0", "P1", "P2", "P3", "P4")
DATASETS = ("tp", "fp", "all")


class StoreError(Exception):
    """The store cannot be used (missing, wrong scheme)."""


class StoreBusyError(StoreError):
    """Another process holds the database (DuckDB's single-writer lock)."""


@dataclass(frozen=True)
class AlertFilter:
    """Filters of the alert list; ``None`` means no restriction."""

    date_from: date | None = None
    date_to: date | None = None  # inclusive
    band: str | None = None
    subreddit: str | None = None


@dataclass(frozen=True)
class Cursor:
    """Position after which the next page starts (sort key, alert id)."""

    key: float | int
    alert_id: str

    def encode(self) -> str:
        return f"{self.key!r}~{self.alert_id}"

    @classmethod
    def decode(cls, text: str, sort: str) -> Cursor:
        key, sep, alert_id = text.partition("~")
        if not sep or not alert_id:
            raise ValueError("bad cursor")
        return cls(int(key) if sort == "recent" else float(key), alert_id)


@dataclass
class AlertPage:
    rows: list[dict[str, Any]]
    next_cursor: Cursor | None


@dataclass
class Stats:
    totals: dict[str, int]
    labels: dict[str, int]
    bands: dict[str, int]
    # (day, submissions, users, alerts) per day of event time
    per_day: list[tuple[date, int, int, int]] = field(default_factory=list)
    dead_letter_reasons: dict[str, int] = field(default_factory=dict)
    # (bucket start, epoch seconds of processing time; submissions scored per second)
    speed: list[tuple[float, float]] = field(default_factory=list)
    speed_bucket_s: int = 1


def speed_bucket(span_s: float | None) -> int:
    """Seconds per bar of the processing-speed chart, from the processing span."""
    if span_s is None or span_s <= 600:
        return 1
    return 60 if span_s <= 86_400 else 3600


class ReviewStore(ABC):
    """What the review app reads and writes."""

    @abstractmethod
    def tab_counts(self, flt: AlertFilter) -> dict[str, int]: ...

    @abstractmethod
    def list_alerts(self, tab: str, sort: str, flt: AlertFilter, after: Cursor | None,
                    limit: int) -> AlertPage: ...

    @abstractmethod
    def alert(self, alert_id: str) -> dict[str, Any] | None: ...

    @abstractmethod
    def user_writings(self, user_id: str, model_version: str) -> list[dict[str, Any]]: ...

    @abstractmethod
    def label_history(self, alert_id: str) -> list[dict[str, Any]]: ...

    @abstractmethod
    def add_label(self, label: LabelRecord) -> None: ...

    @abstractmethod
    def subreddits(self) -> list[str]: ...

    @abstractmethod
    def export_writings(self, dataset: str) -> Iterator[dict[str, Any]]: ...

    @abstractmethod
    def export_truth(self, dataset: str) -> list[tuple[str, int]]: ...

    @abstractmethod
    def stats(self) -> Stats: ...

    @abstractmethod
    def check(self) -> None:
        """Fail early (StoreError) if the store is not usable."""

    @abstractmethod
    def close(self) -> None:
        """Release connections."""


def _epoch(dt: datetime | None) -> float | None:
    if dt is None:
        return None
    return dt.replace(tzinfo=UTC).timestamp()


def _micros(dt: datetime) -> int:
    return round(_epoch(dt) * 1_000_000)


class _RWLock:
    """Many readers or one writer (DuckDB won't mix read-only and read-write)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writer = False

    @contextmanager
    def read(self) -> Iterator[None]:
        with self._cond:
            while self._writer:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                self._cond.notify_all()

    @contextmanager
    def write(self) -> Iterator[None]:
        with self._cond:
            while self._writer or self._readers:
                self._cond.wait()
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()


# The current verdict on each alert: its latest label row (any reviewer).
_CURRENT = """
    cur AS (
        SELECT alert_id, arg_max(label, labelled_at) AS label,
               arg_max(reviewer, labelled_at) AS reviewer,
               max(labelled_at) AS labelled_at
        FROM labels GROUP BY alert_id
    )"""

_TAB_SQL = {
    # Undecided alerts still need a decision: they stay in "untagged", marked.
    "untagged": "(cur.label IS NULL OR cur.label = 'undecided')",
    "risk": "cur.label = 'risk'",
    "no_risk": "cur.label = 'no_risk'",
}

# sort -> (key expression, ORDER BY); both descending, alert_id breaks ties.
_SORT_SQL = {
    "recent": ("epoch_us(a.created_utc)", "a.created_utc DESC, a.alert_id DESC"),
    "priority": ("a.p_user", "a.p_user DESC, a.alert_id DESC"),
}

_ALERT_COLS = """a.alert_id, a.user_id, a.submission_id, a.created_utc, a.p_user,
    a.writings_seen, a.threshold, a.priority, a.policy, a.top_terms, a.model_version,
    a.alert_seq, cur.label, cur.reviewer, cur.labelled_at"""

# The subreddit of the writing that raised the alert lives in scores; joining
# 100k scores costs more than the rest of a page query, so it is joined only
# when filtering by subreddit, and otherwise for the page's rows alone.
_SCORE_JOIN = """LEFT JOIN scores s ON s.user_id = a.user_id
        AND s.submission_id = a.submission_id AND s.model_version = a.model_version"""


def _alert_from(flt: AlertFilter) -> str:
    joins = "alerts a LEFT JOIN cur ON cur.alert_id = a.alert_id"
    return f"{joins} {_SCORE_JOIN}" if flt.subreddit is not None else joins


def _filter_sql(flt: AlertFilter) -> tuple[list[str], list[Any]]:
    where: list[str] = []
    params: list[Any] = []
    if flt.date_from is not None:
        where.append("a.created_utc >= ?")
        params.append(datetime(flt.date_from.year, flt.date_from.month, flt.date_from.day))
    if flt.date_to is not None:
        where.append("a.created_utc < ? + INTERVAL 1 DAY")
        params.append(datetime(flt.date_to.year, flt.date_to.month, flt.date_to.day))
    if flt.band is not None:
        where.append("a.priority = ?")
        params.append(flt.band)
    if flt.subreddit is not None:
        where.append("s.subreddit = ?")
        params.append(flt.subreddit)
    return where, params


def _alert_row(cols: list[str], values: tuple) -> dict[str, Any]:
    row = dict(zip(cols, values))
    row["created_utc"] = _epoch(row["created_utc"])
    row["labelled_at"] = _epoch(row.get("labelled_at"))
    try:
        row["top_terms"] = [(str(t), float(w)) for t, w in json.loads(row["top_terms"] or "[]")]
    except (ValueError, TypeError):
        row["top_terms"] = []
    return row


_open_stores: weakref.WeakSet = weakref.WeakSet()


@atexit.register
def _close_open_stores() -> None:
    # A daemon thread cancelled inside DuckDB at exit aborts the process.
    for store in list(_open_stores):
        store.close()


class DuckDBReviewStore(ReviewStore):
    """The review store over a DuckDB file written by ``earlyrisk run``."""

    def __init__(self, path: str | Path, idle_close_s: float = 2.0) -> None:
        self.path = str(Path(path).resolve())
        if not Path(self.path).is_file():
            raise StoreError(f"no database at {path} (run 'earlyrisk run' first)")
        self._lock = _RWLock()
        # One read-only connection shared by request threads (each uses its own
        # cursor): opening the file costs tens of ms, a page query a few. It is
        # closed after idle_close_s without requests, and before every label
        # write, so the file is not held longer than needed.
        self._ro: duckdb.DuckDBPyConnection | None = None
        self._ro_guard = threading.Lock()
        self._last_use = 0.0
        self._idle_close_s = idle_close_s
        self._stop = threading.Event()
        self._idle_thread = threading.Thread(
            target=self._close_when_idle, name="duckdb-idle-close", daemon=True)
        self._idle_thread.start()
        _open_stores.add(self)

    def _close_when_idle(self) -> None:
        while not self._stop.wait(min(0.5, self._idle_close_s)):
            if self._ro is not None and time.monotonic() - self._last_use > self._idle_close_s:
                with self._lock.write():
                    if time.monotonic() - self._last_use > self._idle_close_s:
                        self._close_ro()

    def _close_ro(self) -> None:  # caller holds the write lock
        if self._ro is not None:
            self._ro.close()
            self._ro = None

    @contextmanager
    def _read(self) -> Iterator[duckdb.DuckDBPyConnection]:
        with self._lock.read():
            with self._ro_guard:
                if self._ro is None:
                    try:
                        self._ro = duckdb.connect(self.path, read_only=True)
                    except duckdb.IOException as e:
                        raise StoreBusyError(
                            f"database is locked by another process: {e}") from None
                cur = self._ro.cursor()
            try:
                yield cur
            finally:
                cur.close()
                self._last_use = time.monotonic()

    @contextmanager
    def _write(self) -> Iterator[duckdb.DuckDBPyConnection]:
        from storage.duckdb_store import table_ddl

        with self._lock.write():
            self._close_ro()
            try:
                con = duckdb.connect(self.path)
            except duckdb.IOException as e:
                raise StoreBusyError(f"database is locked by another process: {e}") from None
            try:
                con.execute(table_ddl(LABELS))
                yield con
            finally:
                con.close()

    def close(self) -> None:
        """Close the connection and stop the idle watcher (joined, so no
        thread is left inside DuckDB when the interpreter exits)."""
        self._stop.set()
        if self._idle_thread is not threading.current_thread():
            self._idle_thread.join()
        with self._lock.write():
            self._close_ro()
        _open_stores.discard(self)

    def check(self) -> None:
        """Fail early (StoreError) if the file is not a pipeline store."""
        with self._read() as con:
            names = {r[0] for r in con.execute(
                "SELECT table_name FROM information_schema.tables").fetchall()}
        missing = {"scores", "alerts"} - names
        if missing:
            raise StoreError(f"{self.path} has no table(s) {', '.join(sorted(missing))}: "
                             "not a store written by 'earlyrisk run'")
        if "labels" not in names:
            with self._write():
                pass

    # -- alerts ------------------------------------------------------------------
    def tab_counts(self, flt: AlertFilter) -> dict[str, int]:
        where, params = _filter_sql(flt)
        cond = " AND ".join(where) or "TRUE"
        sums = ", ".join(f"count(*) FILTER (WHERE {_TAB_SQL[t]})" for t in TABS)
        sql = (f"WITH {_CURRENT} SELECT {sums}, count(*) FILTER (WHERE cur.label = "
               f"'undecided') FROM {_alert_from(flt)} WHERE {cond}")
        with self._read() as con:
            values = con.execute(sql, params).fetchone()
        counts = dict(zip(TABS, values))
        counts["undecided"] = values[-1]
        return counts

    def list_alerts(self, tab: str, sort: str, flt: AlertFilter, after: Cursor | None,
                    limit: int) -> AlertPage:
        if tab not in _TAB_SQL or sort not in _SORT_SQL:
            raise ValueError(f"unknown tab {tab!r} or sort {sort!r}")
        key_sql, order_sql = _SORT_SQL[sort]
        where, params = _filter_sql(flt)
        where.insert(0, _TAB_SQL[tab])
        if after is not None:
            where.append(f"({key_sql} < ? OR ({key_sql} = ? AND a.alert_id < ?))")
            params += [after.key, after.key, after.alert_id]
        sql = (f"WITH {_CURRENT}, page AS (SELECT {_ALERT_COLS}, {key_sql} AS sort_key "
               f"FROM {_alert_from(flt)} WHERE {' AND '.join(where)} "
               f"ORDER BY {order_sql} LIMIT ?) "
               "SELECT a.*, s.subreddit FROM page a "
               f"{_SCORE_JOIN} ORDER BY {order_sql}")
        params.append(limit + 1)
        with self._read() as con:
            cur = con.execute(sql, params)
            cols = [d[0] for d in cur.description]
            rows = [_alert_row(cols, r) for r in cur.fetchall()]
        nxt = None
        if len(rows) > limit:
            rows = rows[:limit]
            nxt = Cursor(rows[-1]["sort_key"], rows[-1]["alert_id"])
        return AlertPage(rows, nxt)

    def alert(self, alert_id: str) -> dict[str, Any] | None:
        sql = (f"WITH {_CURRENT} SELECT {_ALERT_COLS}, s.subreddit FROM alerts a "
               f"LEFT JOIN cur ON cur.alert_id = a.alert_id {_SCORE_JOIN} WHERE a.alert_id = ?")
        with self._read() as con:
            cur = con.execute(sql, [alert_id])
            cols = [d[0] for d in cur.description]
            row = cur.fetchone()
        return _alert_row(cols, row) if row else None

    def user_writings(self, user_id: str, model_version: str) -> list[dict[str, Any]]:
        # Scores drive the list so the chart works even with --no-store-text.
        sql = """SELECT s.submission_id, s.created_utc, s.kind, s.subreddit, s.p_text, s.p_user,
                        s.writings_seen, w.title, w.body
                 FROM scores s LEFT JOIN writings w
                   ON w.user_id = s.user_id AND w.submission_id = s.submission_id
                 WHERE s.user_id = ? AND s.model_version = ?
                 ORDER BY s.writings_seen, s.created_utc"""
        with self._read() as con:
            cur = con.execute(sql, [user_id, model_version])
            cols = [d[0] for d in cur.description]
            rows = [dict(zip(cols, r)) for r in cur.fetchall()]
        for r in rows:
            r["created_utc"] = _epoch(r["created_utc"])
        return rows

    def label_history(self, alert_id: str) -> list[dict[str, Any]]:
        with self._read() as con:
            cur = con.execute("SELECT label, comment, reviewer, labelled_at FROM labels "
                              "WHERE alert_id = ? ORDER BY labelled_at DESC", [alert_id])
            cols = [d[0] for d in cur.description]
            rows = [dict(zip(cols, r)) for r in cur.fetchall()]
        for r in rows:
            r["labelled_at"] = _epoch(r["labelled_at"])
        return rows

    def add_label(self, label: LabelRecord) -> None:
        from storage.duckdb_store import insert_rows

        if label.label not in LABEL_VALUES:
            raise ValueError(f"label must be one of {LABEL_VALUES}")
        with self._write() as con:
            insert_rows(con, "labels", [to_row(label)])

    def subreddits(self) -> list[str]:
        with self._read() as con:
            rows = con.execute(
                "SELECT DISTINCT s.subreddit FROM alerts a JOIN scores s ON s.user_id = a.user_id"
                " AND s.submission_id = a.submission_id AND s.model_version = a.model_version"
                " ORDER BY 1").fetchall()
        return [r[0] for r in rows]

    # -- datasets ------------------------------------------------------------------
    # A user's verdict is the latest non-undecided label over all their alerts.
    _USER_VERDICT = """
        verdict AS (
            SELECT user_id, arg_max(label, labelled_at) AS label FROM labels
            WHERE label IN ('risk', 'no_risk') GROUP BY user_id
        )"""

    def _dataset_users_sql(self, dataset: str) -> str:
        if dataset == "tp":
            return "SELECT user_id FROM verdict WHERE label = 'risk'"
        if dataset == "fp":
            return "SELECT user_id FROM verdict WHERE label = 'no_risk'"
        if dataset == "all":
            return "SELECT DISTINCT user_id FROM writings"
        raise ValueError(f"unknown dataset {dataset!r}")

    def export_writings(self, dataset: str) -> Iterator[dict[str, Any]]:
        users = self._dataset_users_sql(dataset)
        sql = (f"WITH {self._USER_VERDICT} SELECT w.submission_id, w.user_id, w.created_utc, "
               "w.kind, w.subreddit, w.title, w.body FROM writings w "
               f"WHERE w.user_id IN ({users}) ORDER BY w.user_id, w.created_utc, "
               "w.submission_id")
        with self._read() as con:
            cur = con.execute(sql)
            while True:
                batch = cur.fetchmany(1000)
                if not batch:
                    break
                for sid, uid, created, kind, sub, title, body in batch:
                    yield {"id": sid, "user_id": uid, "created_utc": _epoch(created),
                           "kind": kind, "subreddit": sub, "title": title, "body": body}

    def export_truth(self, dataset: str) -> list[tuple[str, int]]:
        users = self._dataset_users_sql(dataset)
        sql = (f"WITH {self._USER_VERDICT} SELECT v.user_id, v.label FROM verdict v "
               f"WHERE v.user_id IN ({users}) AND v.user_id IN (SELECT user_id FROM writings) "
               "ORDER BY 1")
        with self._read() as con:
            return [(u, 1 if lab == "risk" else 0) for u, lab in con.execute(sql).fetchall()]

    # -- statistics -----------------------------------------------------------------
    def stats(self) -> Stats:
        with self._read() as con:
            subs, users, first, last = con.execute(
                "SELECT count(*), count(DISTINCT user_id), min(created_utc), max(created_utc) "
                "FROM scores").fetchone()
            alerts, alerted_users = con.execute(
                "SELECT count(*), count(DISTINCT user_id) FROM alerts").fetchone()
            dead = con.execute("SELECT count(*) FROM dead_letters").fetchone()[0]
            reasons = dict(con.execute(
                "SELECT reason, count(*) FROM dead_letters GROUP BY 1 ORDER BY 2 DESC").fetchall())
            labels = dict(con.execute(
                f"WITH {_CURRENT} SELECT label, count(*) FROM cur GROUP BY 1").fetchall())
            bands = dict(con.execute(
                "SELECT priority, count(*) FROM alerts GROUP BY 1 ORDER BY 1").fetchall())
            per_day = con.execute(
                """WITH d AS (
                       SELECT CAST(created_utc AS DATE) AS day, count(*) AS subs,
                              count(DISTINCT user_id) AS users
                       FROM scores GROUP BY 1),
                   al AS (SELECT CAST(created_utc AS DATE) AS day, count(*) AS n
                          FROM alerts GROUP BY 1)
                   SELECT d.day, d.subs, d.users, coalesce(al.n, 0) FROM d
                   LEFT JOIN al ON al.day = d.day ORDER BY d.day""").fetchall()
            span = con.execute(
                "SELECT epoch(max(processed_at)) - epoch(min(processed_at)) FROM scores"
            ).fetchone()[0]
            bucket = speed_bucket(span)
            speed = con.execute(
                "SELECT floor(epoch(processed_at) / $b) * $b AS t, count(*) / $b FROM scores "
                "WHERE processed_at IS NOT NULL GROUP BY 1 ORDER BY 1", {"b": bucket}).fetchall()
        totals = {"submissions": subs, "users": users, "alerts": alerts,
                  "alerted_users": alerted_users, "dead_letters": dead,
                  "reviewed": sum(v for k, v in labels.items() if k != "undecided")}
        s = Stats(totals=totals, labels=labels, bands=bands,
                  per_day=[tuple(r) for r in per_day], dead_letter_reasons=reasons,
                  speed=[(float(t), float(v)) for t, v in speed], speed_bucket_s=bucket)
        s.totals["first_event"] = _epoch(first)
        s.totals["last_event"] = _epoch(last)
        return s


def open_store(uri: str) -> ReviewStore:
    """A store from ``duckdb://PATH`` (or a bare path) or ``bigquery://PROJECT/DATASET``."""
    if "://" not in uri:
        return DuckDBReviewStore(uri)
    parsed = urlparse(uri)
    if parsed.scheme == "duckdb":
        path = (parsed.netloc + parsed.path) if parsed.netloc else parsed.path
        if not path:
            raise StoreError(f"{uri!r}: no database path")
        return DuckDBReviewStore(path)
    if parsed.scheme == "bigquery":
        dataset = parsed.path.strip("/")
        if not parsed.netloc or not dataset or "/" in dataset:
            raise StoreError(f"{uri!r}: expected bigquery://PROJECT/DATASET")
        from webapp.bigquery_store import BigQueryReviewStore

        return BigQueryReviewStore(parsed.netloc, dataset)
    raise StoreError(f"{uri!r}: unsupported store scheme {parsed.scheme!r} "
                     "(supported: duckdb://, bigquery://)")

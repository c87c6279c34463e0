"""Data access for the review web app, behind one small interface.

:class:`ReviewStore` is what the app needs from the store the pipeline writes
(``scores``, ``alerts``, ``writings``) plus what reviewers write (verdicts,
notes, claims, the audit trail, sessions). :class:`DuckDBReviewStore`
implements it over the embedded DuckDB file; :func:`open_store` picks the
implementation from a URI (``duckdb://PATH``).

Every query binds its values as parameters; only fixed SQL fragments chosen
from whitelists (tab, sort order) are ever put into the SQL text.

Alert lists use keyset ("seek") pagination in both directions: a page is the
rows strictly after (or before) a row of the previous page in the sort order,
so page N costs the same as page 1 however many alerts there are.

**DuckDB's single writer.** ``earlyrisk run`` holds the DuckDB file's write
lock for its whole run, and while it does no other process can even read the
file. So the app never writes the pipeline's file and never reads it in a
request:

* What reviewers write goes to a SQLite file of its own
  (:class:`webapp.reviewdb.ReviewDB`, by default ``NAME.review.sqlite`` next
  to ``NAME.duckdb``), which the pipeline's lock cannot block.
* Pages read a private snapshot of the pipeline's file (a byte copy of the file
  and its WAL, taken under a read-only DuckDB connection, i.e. while no writer
  holds it). A background thread refreshes it about once a second when the file
  has changed and is free; while the pipeline holds the file, pages show the
  last snapshot and say how old it is. The snapshot lives in the system's
  temporary directory and is deleted when the app stops.
* Verdicts are mirrored into an in-memory table beside the snapshot so the
  tab, filter and search queries join them in DuckDB.
"""

from __future__ import annotations

import atexit
import json
import shutil
import tempfile
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

from models.records import LabelRecord
from webapp.reviewdb import ReviewDB, ReviewDBError

TABS = ("untagged", "risk", "no_risk")
SORTS = ("recent", "priority")
LABEL_VALUES = ("risk", "no_risk", "undecided")
BANDS = ("P0", "P1", "P2", "P3", "P4")
DATASETS = ("tp", "fp", "all")


class StoreError(Exception):
    """The store cannot be used (missing, wrong scheme)."""


class StoreBusyError(StoreError):
    """Another process holds the database (DuckDB's single-writer lock) and
    there is no snapshot of it yet."""


class StoreReadOnlyError(StoreError):
    """What a reviewer wrote could not be saved (read-only file, disk full...)."""


@dataclass(frozen=True)
class AlertFilter:
    """Filters of the alert list; ``None`` means no restriction."""

    date_from: date | None = None
    date_to: date | None = None  # inclusive
    band: str | None = None
    subreddit: str | None = None  # any writing of the user in this subreddit
    q: str | None = None  # pseudonym, alert id, text of any writing, or verdict comment
    reviewer: str | None = None  # reviewer of the current verdict
    verdict_from: date | None = None  # day of the current verdict
    verdict_to: date | None = None  # inclusive


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
    prev_cursor: Cursor | None = None


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
    """What the review app reads and writes.

    ``review`` is the SQLite database of what reviewers write besides verdicts
    (notes, claims, audit trail, sessions); the DuckDB store keeps verdicts
    there too.
    """

    review: ReviewDB
    #: features only this backend has (shown or hidden in the UI)
    features: frozenset[str] = frozenset()

    def freshness(self) -> dict[str, Any]:
        """How current the pages are: ``snapshot_at`` (epoch s or None) and
        ``busy_since`` (epoch s while a pipeline holds the store, else None)."""
        return {"snapshot_at": None, "busy_since": None}

    def neighbours(self, tab: str, sort: str, flt: AlertFilter,
                   cursor: Cursor) -> tuple[str | None, str | None]:
        """The alert ids just after and just before ``cursor`` in a list."""
        nxt = self.list_alerts(tab, sort, flt, cursor, 1).rows
        prev = self.list_alerts(tab, sort, flt, None, 1, before=cursor).rows
        return (nxt[0]["alert_id"] if nxt else None, prev[-1]["alert_id"] if prev else None)

    @abstractmethod
    def user_alerts(self, user_id: str) -> list[dict[str, Any]]:
        """All alerts of a user, newest first, with their current verdicts."""

    @abstractmethod
    def user_latest(self, user_id: str) -> dict[str, Any] | None:
        """The user's latest score row (p_user now, writings seen, model)."""

    @abstractmethod
    def tab_counts(self, flt: AlertFilter) -> dict[str, int]: ...

    @abstractmethod
    def list_alerts(self, tab: str, sort: str, flt: AlertFilter, after: Cursor | None,
                    limit: int, before: Cursor | None = None) -> AlertPage: ...

    @abstractmethod
    def alert(self, alert_id: str) -> dict[str, Any] | None: ...

    @abstractmethod
    def user_writings(self, user_id: str, model_version: str) -> list[dict[str, Any]]: ...

    @abstractmethod
    def label_history(self, alert_id: str) -> list[dict[str, Any]]: ...

    @abstractmethod
    def add_label(self, label: LabelRecord, reasons: tuple[str, ...] = (),
                  via: str = "password") -> None: ...

    @abstractmethod
    def subreddits(self) -> list[str]:
        """Every subreddit any scored writing was posted in."""

    @abstractmethod
    def reviewers(self) -> list[str]:
        """Everyone who has given a verdict."""

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
    """Many readers or one writer (the snapshot swap waits for running queries)."""

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

# sort -> (key expression, ORDER BY, reversed ORDER BY); alert_id breaks ties.
_SORT_SQL = {
    "recent": ("epoch_us(a.created_utc)", "a.created_utc DESC, a.alert_id DESC",
               "a.created_utc ASC, a.alert_id ASC"),
    "priority": ("a.p_user", "a.p_user DESC, a.alert_id DESC", "a.p_user ASC, a.alert_id ASC"),
}

_ALERT_COLS = """a.alert_id, a.user_id, a.submission_id, a.created_utc, a.p_user,
    a.writings_seen, a.threshold, a.priority, a.policy, a.top_terms, a.model_version,
    a.alert_seq, cur.label, cur.reviewer, cur.labelled_at"""

# The subreddit of the writing that raised the alert lives in scores; it is
# joined for the rows of a page only.
_SCORE_JOIN = """LEFT JOIN scores s ON s.user_id = a.user_id
        AND s.submission_id = a.submission_id AND s.model_version = a.model_version"""

_ALERT_FROM = "alerts a LEFT JOIN cur ON cur.alert_id = a.alert_id"


def like_pattern(text: str) -> str:
    """``%text%`` for LIKE with ``\\`` as the escape character."""
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _day(d: date) -> datetime:
    return datetime(d.year, d.month, d.day)


def _filter_sql(flt: AlertFilter) -> tuple[list[str], list[Any]]:
    where: list[str] = []
    params: list[Any] = []
    if flt.date_from is not None:
        where.append("a.created_utc >= ?")
        params.append(_day(flt.date_from))
    if flt.date_to is not None:
        where.append("a.created_utc < ? + INTERVAL 1 DAY")
        params.append(_day(flt.date_to))
    if flt.band is not None:
        where.append("a.priority = ?")
        params.append(flt.band)
    if flt.subreddit is not None:
        where.append("a.user_id IN (SELECT user_id FROM scores WHERE subreddit = ?)")
        params.append(flt.subreddit)
    if flt.reviewer is not None:
        where.append("cur.reviewer = ?")
        params.append(flt.reviewer)
    if flt.verdict_from is not None:
        where.append("cur.labelled_at >= ?")
        params.append(_day(flt.verdict_from))
    if flt.verdict_to is not None:
        where.append("cur.labelled_at < ? + INTERVAL 1 DAY")
        params.append(_day(flt.verdict_to))
    if flt.q:
        like = like_pattern(flt.q)
        where.append(
            "(a.user_id = ? OR a.alert_id = ? OR a.user_id IN (SELECT user_id FROM writings "
            "WHERE title ILIKE ? ESCAPE '\\' OR body ILIKE ? ESCAPE '\\') OR a.alert_id IN "
            "(SELECT alert_id FROM labels WHERE comment ILIKE ? ESCAPE '\\'))")
        params += [flt.q, flt.q, like, like, like]
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


def default_review_db(store_path: str | Path) -> Path:
    """``NAME.review.sqlite`` next to ``NAME.duckdb``."""
    p = Path(store_path)
    return p.with_name(p.stem + ".review.sqlite")


_LOCK_WORDS = ("lock", "Conflicting", "being used", "Resource temporarily unavailable")
_PIPELINE_VIEWS = ("scores", "alerts", "writings", "dead_letters")


class DuckDBReviewStore(ReviewStore):
    """The review store over a DuckDB file written by ``earlyrisk run``."""

    features = frozenset({"search", "reasons", "verdict-filters"})

    def __init__(self, path: str | Path, review_db: str | Path | None = None,
                 refresh_s: float = 1.0) -> None:
        self.path = str(Path(path).resolve())
        if not Path(self.path).is_file():
            raise StoreError(f"no database at {path} (run 'earlyrisk run' first)")
        try:
            self.review = ReviewDB(review_db or default_review_db(self.path))
        except ReviewDBError as e:
            raise StoreError(f"{e} (choose another place with --review-db PATH)") from None
        self._lock = _RWLock()
        self._mem = duckdb.connect(":memory:")
        self._mem.execute(
            "CREATE TABLE labels (rid BIGINT, alert_id VARCHAR, user_id VARCHAR, label VARCHAR,"
            " comment VARCHAR, reviewer VARCHAR, labelled_at TIMESTAMP, reasons VARCHAR)")
        self._mirrored = 0
        self._mirror_lock = threading.Lock()
        self._snapdir = Path(tempfile.mkdtemp(prefix="earlyrisk-review-"))
        self._snap: Path | None = None
        self._snap_seq = 0
        self._sig: tuple | None = None
        self._tables: set[str] = set()
        self._subreddits: tuple[int, list[str]] | None = None
        self._alert_explanation = False
        self.snapshot_at: float | None = None
        self.busy_since: float | None = None
        self.read_error: str | None = None
        self._refresh_s = refresh_s
        self._refresh_lock = threading.Lock()
        self._stop = threading.Event()
        self.refresh()
        self._import_legacy_labels()
        self._thread = threading.Thread(target=self._refresher, name="duckdb-snapshot",
                                        daemon=True)
        self._thread.start()
        _open_stores.add(self)

    # -- the snapshot ----------------------------------------------------------------
    def _signature(self) -> tuple:
        out = []
        for p in (self.path, self.path + ".wal"):
            try:
                st = Path(p).stat()
                out.append((st.st_mtime_ns, st.st_size, st.st_ino))
            except FileNotFoundError:
                out.append(None)
        return tuple(out)

    def refresh(self) -> bool:
        """Copy the pipeline's file if it changed and no writer holds it.

        Returns True when a new snapshot is in use.
        """
        with self._refresh_lock:
            sig = self._signature()
            if sig == self._sig:
                if self.busy_since is not None:
                    return self._try_copy(sig)
                return False
            return self._try_copy(sig)

    def _try_copy(self, sig: tuple) -> bool:
        try:
            con = duckdb.connect(self.path, read_only=True)
        except duckdb.Error as e:
            text = str(e)
            if any(w in text for w in _LOCK_WORDS):
                if self.busy_since is None:
                    self.busy_since = time.time()
                return False
            self.read_error = text.splitlines()[0]
            return False
        try:
            # The shared lock we hold now keeps writers out while the bytes are copied.
            sig = self._signature()
            self._snap_seq += 1
            new = self._snapdir / f"snapshot-{self._snap_seq}.duckdb"
            shutil.copyfile(self.path, new)
            if Path(self.path + ".wal").exists():
                shutil.copyfile(self.path + ".wal", str(new) + ".wal")
            tables = {r[0] for r in con.execute(
                "SELECT table_name FROM information_schema.tables").fetchall()}
            has_explanation = bool(con.execute(
                "SELECT count(*) FROM information_schema.columns WHERE table_name = 'alerts' "
                "AND column_name = 'explanation'").fetchone()[0])
        finally:
            con.close()
        old = self._snap
        with self._lock.write():
            if old is not None:
                self._mem.execute("DETACH p")
            self._mem.execute(f"ATTACH '{str(new).replace(chr(39), chr(39) * 2)}' AS p "
                              "(READ_ONLY)")
            for t in _PIPELINE_VIEWS:
                if t in tables:
                    self._mem.execute(f"CREATE OR REPLACE VIEW {t} AS SELECT * FROM p.main.{t}")
            self._snap, self._tables = new, tables
            self._alert_explanation = has_explanation
        if old is not None:
            for f in (old, Path(str(old) + ".wal")):
                f.unlink(missing_ok=True)
        self._sig = sig
        self.snapshot_at = time.time()
        self.busy_since = None
        self.read_error = None
        return True

    def _refresher(self) -> None:
        while not self._stop.wait(self._refresh_s):
            try:
                self.refresh()
            except Exception as e:  # keep serving the last snapshot
                self.read_error = f"{type(e).__name__}: {str(e)[:200]}"

    def freshness(self) -> dict[str, Any]:
        return {"snapshot_at": self.snapshot_at, "busy_since": self.busy_since}

    def _import_legacy_labels(self) -> None:
        """Labels an older app kept in the DuckDB file move to the review database once."""
        if "labels" not in self._tables or self.review.get_meta("legacy_labels_imported"):
            return
        with self._lock.read():
            cur = self._mem.cursor()
            try:
                rows = cur.execute(
                    "SELECT alert_id, user_id, label, comment, reviewer, epoch(labelled_at) "
                    "FROM p.main.labels").fetchall()
            finally:
                cur.close()
        self.review.import_labels(rows)
        self.review.set_meta("legacy_labels_imported", str(time.time()))

    def _sync_labels(self) -> None:
        """Bring the in-memory mirror of the verdicts up to the review database."""
        if self.review.max_label_id() == self._mirrored:
            return
        with self._mirror_lock:
            rows = self.review.labels_since(self._mirrored)
            if not rows:
                return
            import pyarrow as pa

            cols = list(zip(*rows))
            batch = pa.table({
                "rid": pa.array(cols[0], pa.int64()),
                **{n: pa.array(cols[i], pa.string()) for i, n in enumerate(
                    ("alert_id", "user_id", "label", "comment", "reviewer"), start=1)},
                "labelled_at": pa.array([round(v * 1_000_000) for v in cols[6]],
                                        pa.int64()).cast(pa.timestamp("us")),
                "reasons": pa.array(cols[7], pa.string())})
            cur = self._mem.cursor()
            try:
                cur.register("_new_labels", batch)
                cur.execute("INSERT INTO labels SELECT rid, alert_id, user_id, label, comment, "
                            "reviewer, labelled_at, reasons FROM _new_labels")
                cur.unregister("_new_labels")
            finally:
                cur.close()
            self._mirrored = int(cols[0][-1])

    @contextmanager
    def _read(self) -> Iterator[duckdb.DuckDBPyConnection]:
        self._sync_labels()
        with self._lock.read():
            if self._snap is None:
                if self.read_error:
                    raise StoreError(f"cannot read {self.path}: {self.read_error}")
                raise StoreBusyError(
                    "the pipeline's database is held by another process (a running "
                    "'earlyrisk run' holds DuckDB's single write lock) and the app has no "
                    "copy of it yet")
            cur = self._mem.cursor()
            try:
                yield cur
            finally:
                cur.close()

    def close(self) -> None:
        """Stop the refresher (joined, so no thread is left inside DuckDB at exit),
        close the connections and delete the snapshot."""
        if self._stop.is_set():
            return
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join()
        with self._lock.write():
            self._mem.close()
            self._snap = None
        self.review.close()
        shutil.rmtree(self._snapdir, ignore_errors=True)
        _open_stores.discard(self)

    def check(self) -> None:
        """Fail early (StoreError) if the file is not a pipeline store or the review
        database cannot be written."""
        try:
            self.review.check_writable()
        except ReviewDBError as e:
            raise StoreError(f"{e} (choose another place with --review-db PATH)") from None
        if self._snap is None:
            if self.read_error:
                raise StoreError(f"cannot read {self.path}: {self.read_error}")
            return  # held by a pipeline right now: pages say so until it is free
        missing = {"scores", "alerts"} - self._tables
        if missing:
            raise StoreError(f"{self.path} has no table(s) {', '.join(sorted(missing))}: "
                             "not a store written by 'earlyrisk run'")

    # -- alerts ------------------------------------------------------------------
    def tab_counts(self, flt: AlertFilter) -> dict[str, int]:
        where, params = _filter_sql(flt)
        cond = " AND ".join(where) or "TRUE"
        sums = ", ".join(f"count(*) FILTER (WHERE {_TAB_SQL[t]})" for t in TABS)
        sql = (f"WITH {_CURRENT} SELECT {sums}, count(*) FILTER (WHERE cur.label = "
               f"'undecided') FROM {_ALERT_FROM} WHERE {cond}")
        with self._read() as con:
            values = con.execute(sql, params).fetchone()
        counts = dict(zip(TABS, values))
        counts["undecided"] = values[-1]
        return counts

    def list_alerts(self, tab: str, sort: str, flt: AlertFilter, after: Cursor | None,
                    limit: int, before: Cursor | None = None) -> AlertPage:
        if tab not in _TAB_SQL or sort not in _SORT_SQL:
            raise ValueError(f"unknown tab {tab!r} or sort {sort!r}")
        key_sql, order_sql, reverse_sql = _SORT_SQL[sort]
        where, params = _filter_sql(flt)
        where.insert(0, _TAB_SQL[tab])
        order = order_sql
        if before is not None:
            where.append(f"({key_sql} > ? OR ({key_sql} = ? AND a.alert_id > ?))")
            params += [before.key, before.key, before.alert_id]
            order = reverse_sql
        elif after is not None:
            where.append(f"({key_sql} < ? OR ({key_sql} = ? AND a.alert_id < ?))")
            params += [after.key, after.key, after.alert_id]
        sql = (f"WITH {_CURRENT}, page AS (SELECT {_ALERT_COLS}, {key_sql} AS sort_key "
               f"FROM {_ALERT_FROM} WHERE {' AND '.join(where)} "
               f"ORDER BY {order} LIMIT ?) "
               "SELECT a.*, s.subreddit FROM page a "
               f"{_SCORE_JOIN} ORDER BY {order_sql}")
        params.append(limit + 1)
        with self._read() as con:
            cur = con.execute(sql, params)
            cols = [d[0] for d in cur.description]
            rows = [_alert_row(cols, r) for r in cur.fetchall()]
        return _page(rows, limit, after, before)

    def neighbours(self, tab: str, sort: str, flt: AlertFilter,
                   cursor: Cursor) -> tuple[str | None, str | None]:
        # One query instead of two pages of one row.
        if tab not in _TAB_SQL or sort not in _SORT_SQL:
            raise ValueError(f"unknown tab {tab!r} or sort {sort!r}")
        key_sql, order_sql, reverse_sql = _SORT_SQL[sort]
        where, params = _filter_sql(flt)
        where.insert(0, _TAB_SQL[tab])
        c = [cursor.key, cursor.key, cursor.alert_id]
        sql = (f"WITH {_CURRENT}, f AS (SELECT a.alert_id, a.created_utc, a.p_user, "
               f"{key_sql} AS k FROM {_ALERT_FROM} WHERE {' AND '.join(where)}) "
               "SELECT (SELECT a.alert_id FROM f a WHERE a.k < ? OR (a.k = ? AND a.alert_id < ?)"
               f" ORDER BY {order_sql} LIMIT 1), (SELECT a.alert_id FROM f a WHERE a.k > ? OR "
               f"(a.k = ? AND a.alert_id > ?) ORDER BY {reverse_sql} LIMIT 1)")
        with self._read() as con:
            nxt, prev = con.execute(sql, params + c + c).fetchone()
        return nxt, prev

    def alert(self, alert_id: str) -> dict[str, Any] | None:
        # alerts.explanation exists in stores written since it was added.
        expl = "a.explanation" if self._alert_explanation else "NULL AS explanation"
        sql = (f"WITH {_CURRENT} SELECT {_ALERT_COLS}, {expl}, s.subreddit, "
               f"{_SORT_SQL['recent'][0]} AS key_recent, a.p_user AS key_priority "
               f"FROM alerts a LEFT JOIN cur ON cur.alert_id = a.alert_id {_SCORE_JOIN} "
               "WHERE a.alert_id = ?")
        with self._read() as con:
            cur = con.execute(sql, [alert_id])
            cols = [d[0] for d in cur.description]
            row = cur.fetchone()
        return _alert_row(cols, row) if row else None

    def user_alerts(self, user_id: str) -> list[dict[str, Any]]:
        sql = (f"WITH {_CURRENT} SELECT {_ALERT_COLS} FROM {_ALERT_FROM} "
               "WHERE a.user_id = ? ORDER BY a.created_utc DESC, a.alert_id DESC")
        with self._read() as con:
            cur = con.execute(sql, [user_id])
            cols = [d[0] for d in cur.description]
            return [_alert_row(cols, r) for r in cur.fetchall()]

    def user_latest(self, user_id: str) -> dict[str, Any] | None:
        sql = ("SELECT p_user, writings_seen, created_utc, model_version FROM scores "
               "WHERE user_id = ? ORDER BY created_utc DESC, writings_seen DESC LIMIT 1")
        with self._read() as con:
            row = con.execute(sql, [user_id]).fetchone()
        if row is None:
            return None
        return {"p_user": row[0], "writings_seen": row[1], "created_utc": _epoch(row[2]),
                "model_version": row[3]}

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
        return self.review.label_history(alert_id)

    def add_label(self, label: LabelRecord, reasons: tuple[str, ...] = (),
                  via: str = "password") -> None:
        if label.label not in LABEL_VALUES:
            raise ValueError(f"label must be one of {LABEL_VALUES}")
        try:
            self.review.add_label(alert_id=label.alert_id, user_id=label.user_id,
                                  label=label.label, comment=label.comment,
                                  reviewer=label.reviewer, labelled_at=label.labelled_at,
                                  reasons=reasons, via=via)
        except ReviewDBError as e:
            raise StoreReadOnlyError(str(e)) from None
        self._sync_labels()

    def subreddits(self) -> list[str]:
        seq = self._snap_seq
        cached = self._subreddits
        if cached is not None and cached[0] == seq:
            return cached[1]  # one scan of scores per snapshot, not per page
        with self._read() as con:
            rows = con.execute("SELECT DISTINCT subreddit FROM scores WHERE subreddit IS NOT "
                               "NULL ORDER BY 1").fetchall()
        names = [r[0] for r in rows]
        self._subreddits = (seq, names)
        return names

    def reviewers(self) -> list[str]:
        with self._read() as con:
            return [r[0] for r in con.execute(
                "SELECT DISTINCT reviewer FROM labels ORDER BY 1").fetchall()]

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
            has_dead = "dead_letters" in self._tables
            dead = con.execute("SELECT count(*) FROM dead_letters").fetchone()[0] \
                if has_dead else 0
            reasons = dict(con.execute(
                "SELECT reason, count(*) FROM dead_letters GROUP BY 1 ORDER BY 2 DESC"
            ).fetchall()) if has_dead else {}
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


def _page(rows: list[dict[str, Any]], limit: int, after: Cursor | None,
          before: Cursor | None) -> AlertPage:
    """Rows in display order (limit + 1 fetched) -> a page with its cursors."""
    more = len(rows) > limit
    if before is not None:
        # Fetched backwards: the extra row, if any, is the first in display order.
        rows = rows[1:] if more else rows
        nxt = Cursor(rows[-1]["sort_key"], rows[-1]["alert_id"]) if rows else None
        prev = Cursor(rows[0]["sort_key"], rows[0]["alert_id"]) if more and rows else None
        return AlertPage(rows, nxt, prev)
    rows = rows[:limit]
    nxt = Cursor(rows[-1]["sort_key"], rows[-1]["alert_id"]) if more else None
    prev = Cursor(rows[0]["sort_key"], rows[0]["alert_id"]) if after is not None and rows \
        else None
    return AlertPage(rows, nxt, prev)


def open_store(uri: str, review_db: str | Path | None = None) -> ReviewStore:
    """A store from ``duckdb://PATH`` (or a bare path) or ``bigquery://PROJECT/DATASET``.

    ``review_db`` is the SQLite file for what reviewers write (default: next to a
    DuckDB store; ``earlyrisk-review.sqlite`` in the working directory for BigQuery).
    """
    if "://" not in uri:
        return DuckDBReviewStore(uri, review_db)
    parsed = urlparse(uri)
    if parsed.scheme == "duckdb":
        path = (parsed.netloc + parsed.path) if parsed.netloc else parsed.path
        if not path:
            raise StoreError(f"{uri!r}: no database path")
        return DuckDBReviewStore(path, review_db)
    if parsed.scheme == "bigquery":
        dataset = parsed.path.strip("/")
        if not parsed.netloc or not dataset or "/" in dataset:
            raise StoreError(f"{uri!r}: expected bigquery://PROJECT/DATASET")
        from webapp.bigquery_store import BigQueryReviewStore

        return BigQueryReviewStore(parsed.netloc, dataset,
                                   review_db=review_db or "earlyrisk-review.sqlite")
    raise StoreError(f"{uri!r}: unsupported store scheme {parsed.scheme!r} "
                     "(supported: duckdb://, bigquery://)")

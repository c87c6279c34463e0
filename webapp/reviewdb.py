"""The review app's own database: a SQLite file the pipeline never touches.

Everything reviewers write lives here, apart from the pipeline's DuckDB file,
so a running ``earlyrisk run`` (which holds DuckDB's single write lock for the
whole run) can never block or lose it:

* ``labels``: verdicts (alert, user, label, reason codes, comment, reviewer,
  when, how the reviewer signed in). The latest row per alert is its verdict.
* ``notes``: case notes per user.
* ``claims``: who is working on which alert (one claim per alert).
* ``events``: the audit trail (sign-ins, verdicts, notes, claims, exports).
* ``sessions``: server-side sessions, so signing out or removing a reviewer
  from the configuration revokes their cookies.

SQLite in WAL mode lets several threads and processes read while one writes;
each write is one short transaction, retried by SQLite for up to
``busy_timeout`` ms, and ``synchronous=FULL`` makes a committed verdict survive
a power cut. Each thread has its own connection.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REASON_CODES = {
    "explicit": "Explicit statements of low mood or hopelessness",
    "self_harm": "Mentions of self-harm or suicidal thoughts",
    "clinical": "Mentions a diagnosis or treatment",
    "context": "Context changes the meaning (quote, fiction, song, joke)",
    "third_party": "Writes about someone else",
    "supportive": "Offers support to others, not about self",
    "too_little": "Too little evidence to decide",
}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS labels (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    alert_id TEXT NOT NULL, user_id TEXT NOT NULL, label TEXT NOT NULL,
    comment TEXT NOT NULL DEFAULT '', reviewer TEXT NOT NULL, labelled_at REAL NOT NULL,
    reasons TEXT NOT NULL DEFAULT '', via TEXT NOT NULL DEFAULT 'password',
    UNIQUE (alert_id, reviewer, labelled_at));
CREATE INDEX IF NOT EXISTS labels_alert ON labels (alert_id, labelled_at);
CREATE INDEX IF NOT EXISTS labels_user ON labels (user_id);
CREATE TABLE IF NOT EXISTS notes (
    id INTEGER PRIMARY KEY AUTOINCREMENT, user_id TEXT NOT NULL, author TEXT NOT NULL,
    text TEXT NOT NULL, created REAL NOT NULL);
CREATE INDEX IF NOT EXISTS notes_user ON notes (user_id, created);
CREATE TABLE IF NOT EXISTS claims (
    alert_id TEXT PRIMARY KEY, reviewer TEXT NOT NULL, claimed_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL NOT NULL, event TEXT NOT NULL,
    actor TEXT NOT NULL, via TEXT NOT NULL DEFAULT '', alert_id TEXT, user_id TEXT,
    detail TEXT NOT NULL DEFAULT '{}');
CREATE INDEX IF NOT EXISTS events_ts ON events (ts);
CREATE INDEX IF NOT EXISTS events_actor ON events (actor, ts);
CREATE TABLE IF NOT EXISTS sessions (
    sid_hash TEXT PRIMARY KEY, user TEXT NOT NULL, via TEXT NOT NULL,
    credential TEXT NOT NULL, created REAL NOT NULL, last_seen REAL NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

# A claim older than this no longer keeps others off the alert.
CLAIM_TTL_S = 30 * 60


class ReviewDBError(Exception):
    """The review database cannot be opened or written (with the reason)."""


def _explain(path: str, e: sqlite3.Error) -> ReviewDBError:
    text = str(e)
    if "readonly" in text or "read-only" in text:
        why = "the file or its directory is read-only"
    elif "unable to open" in text:
        why = "cannot create or open it (missing directory or no permission)"
    elif "locked" in text or "busy" in text:
        why = "another process kept it locked for too long"
    elif "disk" in text and "full" in text:
        why = "the disk is full"
    else:
        why = text
    return ReviewDBError(f"review database {path}: {why}")


def _sid_hash(sid: str) -> str:
    # Only a hash of the session id is stored: a copy of the file grants nothing.
    return hashlib.sha256(sid.encode()).hexdigest()


class ReviewDB:
    """The review app's SQLite database (see the module docstring)."""

    def __init__(self, path: str | Path, busy_timeout_ms: int = 10_000) -> None:
        self.path = str(Path(path).resolve())
        self._busy_ms = busy_timeout_ms
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._guard = threading.Lock()
        try:
            self._con().executescript(_SCHEMA)  # one transaction of its own
        except sqlite3.Error as e:
            raise _explain(self.path, e) from None

    def _con(self) -> sqlite3.Connection:
        con = getattr(self._local, "con", None)
        if con is None:
            try:
                con = sqlite3.connect(self.path, timeout=self._busy_ms / 1000,
                                      isolation_level=None, check_same_thread=False)
                con.execute(f"PRAGMA busy_timeout = {int(self._busy_ms)}")
                mode = con.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if mode.lower() != "wal":
                    con.execute("PRAGMA journal_mode = DELETE")
                con.execute("PRAGMA synchronous = FULL")
            except sqlite3.Error as e:
                raise _explain(self.path, e) from None
            self._local.con = con
            with self._guard:
                self._all.append(con)
        return con

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        con = self._con()
        try:
            con.execute("BEGIN IMMEDIATE")
            try:
                yield con
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")
        except sqlite3.Error as e:
            raise _explain(self.path, e) from None

    def _rows(self, sql: str, params: Iterable[Any] = ()) -> list[dict[str, Any]]:
        try:
            cur = self._con().execute(sql, list(params))
            cols = [d[0] for d in cur.description]
            return [dict(zip(cols, r)) for r in cur.fetchall()]
        except sqlite3.Error as e:
            raise _explain(self.path, e) from None

    def check_writable(self) -> None:
        """Fail (ReviewDBError) unless a write would succeed now."""
        with self._tx() as con:
            con.execute("INSERT OR REPLACE INTO meta VALUES ('checked_at', ?)",
                        [str(time.time())])

    def close(self) -> None:
        with self._guard:
            for con in self._all:
                try:
                    con.close()
                except sqlite3.Error:
                    pass
            self._all.clear()
        self._local = threading.local()

    # -- labels ----------------------------------------------------------------------
    def add_label(self, *, alert_id: str, user_id: str, label: str, comment: str,
                  reviewer: str, labelled_at: float, reasons: Iterable[str] = (),
                  via: str = "password") -> int:
        with self._tx() as con:
            cur = con.execute(
                "INSERT INTO labels (alert_id, user_id, label, comment, reviewer, labelled_at,"
                " reasons, via) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [alert_id, user_id, label, comment, reviewer, labelled_at,
                 ",".join(reasons), via])
            con.execute("DELETE FROM claims WHERE alert_id = ?", [alert_id])
            return int(cur.lastrowid)

    def import_labels(self, rows: Iterable[tuple]) -> int:
        """Rows (alert_id, user_id, label, comment, reviewer, labelled_at) from an older
        store that kept labels in the DuckDB file; repeats are ignored."""
        with self._tx() as con:
            before = con.total_changes
            con.executemany(
                "INSERT OR IGNORE INTO labels (alert_id, user_id, label, comment, reviewer,"
                " labelled_at) VALUES (?, ?, ?, ?, ?, ?)", list(rows))
            return con.total_changes - before

    def labels_since(self, last_id: int) -> list[tuple]:
        try:
            return self._con().execute(
                "SELECT id, alert_id, user_id, label, comment, reviewer, labelled_at, reasons "
                "FROM labels WHERE id > ? ORDER BY id", [last_id]).fetchall()
        except sqlite3.Error as e:
            raise _explain(self.path, e) from None

    def max_label_id(self) -> int:
        try:
            return int(self._con().execute("SELECT coalesce(max(id), 0) FROM labels")
                       .fetchone()[0])
        except sqlite3.Error as e:
            raise _explain(self.path, e) from None

    def label_history(self, alert_id: str) -> list[dict[str, Any]]:
        return self._rows("SELECT label, comment, reviewer, labelled_at, reasons, via "
                          "FROM labels WHERE alert_id = ? ORDER BY labelled_at DESC, id DESC",
                          [alert_id])

    def get_meta(self, key: str) -> str | None:
        rows = self._rows("SELECT value FROM meta WHERE key = ?", [key])
        return rows[0]["value"] if rows else None

    def set_meta(self, key: str, value: str) -> None:
        with self._tx() as con:
            con.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", [key, value])

    # -- notes and claims -----------------------------------------------------------------
    def add_note(self, user_id: str, author: str, text: str) -> None:
        with self._tx() as con:
            con.execute("INSERT INTO notes (user_id, author, text, created) VALUES (?, ?, ?, ?)",
                        [user_id, author, text, time.time()])

    def notes(self, user_id: str) -> list[dict[str, Any]]:
        return self._rows("SELECT author, text, created FROM notes WHERE user_id = ? "
                          "ORDER BY created DESC, id DESC", [user_id])

    def claim(self, alert_id: str, reviewer: str, force: bool = False) -> str:
        """Claim ``alert_id``; returns who holds it afterwards (another reviewer's live
        claim is kept unless ``force``)."""
        now = time.time()
        with self._tx() as con:
            row = con.execute("SELECT reviewer, claimed_at FROM claims WHERE alert_id = ?",
                              [alert_id]).fetchone()
            if row and row[0] != reviewer and now - row[1] < CLAIM_TTL_S and not force:
                return row[0]
            con.execute("INSERT OR REPLACE INTO claims VALUES (?, ?, ?)",
                        [alert_id, reviewer, now])
            return reviewer

    def release(self, alert_id: str, reviewer: str) -> None:
        with self._tx() as con:
            con.execute("DELETE FROM claims WHERE alert_id = ? AND reviewer = ?",
                        [alert_id, reviewer])

    def claims(self, alert_ids: Iterable[str] | None = None) -> dict[str, tuple[str, float]]:
        since = time.time() - CLAIM_TTL_S
        ids = list(alert_ids) if alert_ids is not None else None
        if ids is not None and not ids:
            return {}
        sql = "SELECT alert_id, reviewer, claimed_at FROM claims WHERE claimed_at > ?"
        params: list[Any] = [since]
        if ids is not None:
            sql += f" AND alert_id IN ({','.join('?' * len(ids))})"
            params += ids
        return {r["alert_id"]: (r["reviewer"], r["claimed_at"]) for r in self._rows(sql, params)}

    # -- audit trail ------------------------------------------------------------------------
    def record(self, event: str, actor: str, via: str = "", alert_id: str | None = None,
               user_id: str | None = None, **detail: Any) -> None:
        with self._tx() as con:
            con.execute("INSERT INTO events (ts, event, actor, via, alert_id, user_id, detail) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?)",
                        [time.time(), event, actor, via, alert_id, user_id,
                         json.dumps(detail, sort_keys=True)])

    def events(self, *, actor: str | None = None, kinds: Iterable[str] | None = None,
               before_id: int | None = None, limit: int = 100) -> list[dict[str, Any]]:
        where, params = ["TRUE"], []
        if actor is not None:
            where.append("actor = ?")
            params.append(actor)
        kinds = list(kinds or [])
        if kinds:
            where.append(f"event IN ({','.join('?' * len(kinds))})")
            params += kinds
        if before_id is not None:
            where.append("id < ?")
            params.append(before_id)
        rows = self._rows(f"SELECT id, ts, event, actor, via, alert_id, user_id, detail "
                          f"FROM events WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT ?",
                          [*params, limit])
        for r in rows:
            r["detail"] = json.loads(r["detail"] or "{}")
        return rows

    # -- retention ------------------------------------------------------------------------
    def forget(self, ids: Iterable[str], dry_run: bool = False) -> dict[str, int]:
        """Delete every verdict, note and audit entry about these user ids, then rewrite
        the file so their bytes are gone (``earlyrisk forget``)."""
        ids = list(ids)
        marks = ",".join("?" * len(ids))
        counts: dict[str, int] = {}
        with self._tx() as con:
            for table in ("labels", "notes", "events"):
                counts[f"review {table}"] = con.execute(
                    f"SELECT count(*) FROM {table} WHERE user_id IN ({marks})", ids).fetchone()[0]
                if not dry_run:
                    con.execute(f"DELETE FROM {table} WHERE user_id IN ({marks})", ids)
        if not dry_run and any(counts.values()):
            try:
                con = self._con()
                con.execute("VACUUM")
                con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error as e:
                raise _explain(self.path, e) from None
        return counts

    # -- sessions -------------------------------------------------------------------------
    def new_session(self, user: str, via: str, credential: str) -> str:
        sid = secrets.token_urlsafe(32)
        now = time.time()
        with self._tx() as con:
            con.execute("INSERT INTO sessions VALUES (?, ?, ?, ?, ?, ?)",
                        [_sid_hash(sid), user, via, credential, now, now])
            # Old sessions go when new ones start: the table stays small.
            con.execute("DELETE FROM sessions WHERE last_seen < ?", [now - 7 * 86400])
        return sid

    def session(self, sid: str) -> dict[str, Any] | None:
        rows = self._rows("SELECT user, via, credential, created, last_seen FROM sessions "
                          "WHERE sid_hash = ?", [_sid_hash(sid)])
        return rows[0] if rows else None

    def touch_session(self, sid: str) -> None:
        with self._tx() as con:
            con.execute("UPDATE sessions SET last_seen = ? WHERE sid_hash = ?",
                        [time.time(), _sid_hash(sid)])

    def end_session(self, sid: str) -> None:
        with self._tx() as con:
            con.execute("DELETE FROM sessions WHERE sid_hash = ?", [_sid_hash(sid)])

    def end_sessions_of(self, user: str) -> int:
        with self._tx() as con:
            return con.execute("DELETE FROM sessions WHERE user = ?", [user]).rowcount

"""Persistent, bounded sets of things already seen (authors, published ids).

Each set is one SQLite table of 64-bit keyed fingerprints with a
least-recently-touched order. Why SQLite and not a Bloom filter: membership is
exact (no false positive beyond a 64-bit fingerprint collision, probability
about n^2 / 2^65: ~3e-6 for 10 million entries), entries can be removed (a
user dropped from a full queue must be discoverable again), and the least
recently seen entries can be evicted when the bound is reached.

Bounds: at most ``capacity`` rows per table on disk (~40 bytes each with the
index); in memory only SQLite's page cache (``cache_kib``, 8 MiB by default),
whatever the number of entries. Evicting an author means that, after
``capacity`` newer authors, they may be discovered and crawled again; their
writings are then filtered by the published-id set (or, past its own bound,
by the pipeline's per-user dedupe window).

Durability: changes are committed every ``commit_every`` operations and on
:meth:`CrawlState.close`; a crash loses at most that many entries, so at
worst a few writings are published twice (the pipeline drops redeliveries).
"""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

_TABLES = ("authors", "published")


def fingerprint(key: str) -> int:
    """Signed 64-bit fingerprint (SQLite's INTEGER range) of a string."""
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little",
                          signed=True)


class SeenSet:
    """One bounded, least-recently-used set in a :class:`CrawlState` database."""

    def __init__(self, con: sqlite3.Connection, table: str, capacity: int,
                 normalise=None) -> None:
        if table not in _TABLES:
            raise ValueError(f"unknown table {table!r}")
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self._con = con
        self._table = table
        self.capacity = capacity
        self._normalise = normalise or (lambda s: s)
        con.execute(f"CREATE TABLE IF NOT EXISTS {table} "
                    "(key INTEGER PRIMARY KEY, touched INTEGER NOT NULL)")
        con.execute(f"CREATE INDEX IF NOT EXISTS {table}_touched ON {table}(touched)")
        self._count = con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        self._clock = con.execute(f"SELECT coalesce(max(touched), 0) FROM {table}").fetchone()[0]
        self.evicted = 0

    def _key(self, item: str) -> int:
        return fingerprint(self._normalise(item))

    def __len__(self) -> int:
        return self._count

    def __contains__(self, item: str) -> bool:
        row = self._con.execute(f"SELECT 1 FROM {self._table} WHERE key = ?",
                                (self._key(item),)).fetchone()
        return row is not None

    def add(self, item: str) -> bool:
        """Record ``item``; True if it was not in the set (it is now)."""
        key = self._key(item)
        self._clock += 1
        cur = self._con.execute(f"UPDATE {self._table} SET touched = ? WHERE key = ?",
                                (self._clock, key))
        if cur.rowcount:
            return False
        self._con.execute(f"INSERT INTO {self._table} (key, touched) VALUES (?, ?)",
                          (key, self._clock))
        self._count += 1
        if self._count > self.capacity:
            # Evict in batches (1% of the bound) so the delete is amortised.
            n = max(1, self.capacity // 100, self._count - self.capacity)
            n = min(n, self._count)
            self._con.execute(
                f"DELETE FROM {self._table} WHERE key IN "
                f"(SELECT key FROM {self._table} ORDER BY touched LIMIT ?)", (n,))
            self._count -= n
            self.evicted += n
        return True

    def discard(self, item: str) -> None:
        cur = self._con.execute(f"DELETE FROM {self._table} WHERE key = ?", (self._key(item),))
        self._count -= cur.rowcount


class CrawlState:
    """The crawler's persistent state: seen authors and published writing ids.

    ``path=":memory:"`` keeps it for one run only.
    """

    def __init__(self, path: str | Path, max_authors: int = 5_000_000,
                 max_published: int = 50_000_000, commit_every: int = 500,
                 cache_kib: int = 8192) -> None:
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.path = str(path)
        self._con = sqlite3.connect(self.path)
        self._con.execute("PRAGMA journal_mode=WAL")
        self._con.execute("PRAGMA synchronous=NORMAL")
        self._con.execute(f"PRAGMA cache_size=-{int(cache_kib)}")
        # Reddit user names are case-insensitive; ids are not.
        self.authors = SeenSet(self._con, "authors", max_authors, normalise=str.casefold)
        self.published = SeenSet(self._con, "published", max_published)
        self._commit_every = commit_every
        self._ops = 0

    def tick(self) -> None:
        """Count one change; commit every ``commit_every`` changes."""
        self._ops += 1
        if self._ops >= self._commit_every:
            self.commit()

    def commit(self) -> None:
        self._con.commit()
        self._ops = 0

    def close(self) -> None:
        self.commit()
        self._con.close()

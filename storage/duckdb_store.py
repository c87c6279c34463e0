"""The embedded store: DuckDB tables ``scores``, ``alerts``, ``dead_letters``.

DDL is generated from :data:`models.records.TABLES` (``deploy/duckdb/schema.sql``
is the same DDL, written out for readers and checked by a test). Inserts are
idempotent: each table has a primary key and rows that are already there are
ignored, so a retried or replayed write leaves one row.

DuckDB allows one writing process per file. Within a process, every user of a
path shares one connection (:func:`shared_connection`), which is how several
sink DoFns of an in-process pipeline write to the same file.

Memory: DuckDB's own default lets its cache grow to 80 % of the machine's RAM,
and it caches every page a run reads (a state prefetch scans the whole
``user_state`` table), so an in-process run's memory grew with the store. A
shared connection starts with ``memory_limit`` at ``EARLYRISK_DUCKDB_MEMORY_MB``
(default 256; 0 keeps DuckDB's default), where DuckDB evicts clean pages. The
file is in the operating system's page cache too, so a small cache costs
little: on a store of 500k users' state, 256 MiB instead of 512 took a sliced
run's store work from 768 to 492 MiB at the same speed. What
it cannot evict (index nodes an insert touched, data not yet checkpointed)
may need more: a statement that runs out of memory doubles the limit
(:func:`grow_memory_limits`, logged) and is retried, up to DuckDB's default.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
from collections.abc import Iterable, Sequence
from operator import attrgetter
from pathlib import Path
from typing import Any

import duckdb

from models.records import TABLES, Table

log = logging.getLogger(__name__)
MEMORY_LIMIT_ENV = "EARLYRISK_DUCKDB_MEMORY_MB"
DEFAULT_MEMORY_LIMIT_MB = 256

DEFAULT_DB_PATH = Path("earlyrisk.duckdb")

_DUCKDB_TYPES = {
    "STRING": "VARCHAR",
    "FLOAT64": "DOUBLE",
    "INT64": "BIGINT",
    "TIMESTAMP": "TIMESTAMP",  # UTC, by convention of the whole project
}


def index_order(table: Table) -> tuple[str, ...]:
    """The primary key's columns in the order DuckDB's index stores them.

    Same key, same uniqueness; ``submission_id`` comes first. Submission ids
    grow with time (Reddit's base-36 ids; the bench's too), so new rows land at
    the index's right edge and an insert touches a few index nodes instead of
    a path under every user it writes for. DuckDB keeps every index node it has
    touched in memory (it cannot evict them, whatever its memory limit), so
    with the user first a run's memory grew with the rows already stored.
    """
    first = [c for c in table.primary_key if c == "submission_id"]
    return tuple(first + [c for c in table.primary_key if c != "submission_id"])


def table_ddl(table: Table) -> str:
    cols = [f"    {c.name} {_DUCKDB_TYPES[c.type]}{'' if c.nullable else ' NOT NULL'}"
            for c in table.columns]
    cols.append(f"    PRIMARY KEY ({', '.join(index_order(table))})")
    return f"CREATE TABLE IF NOT EXISTS {table.name} (\n" + ",\n".join(cols) + "\n);"


def schema_sql() -> str:
    header = ("-- earlyrisk embedded store (DuckDB). Generated from models/records.py;\n"
              "-- timestamps are UTC. Column meanings: README.md, 'Tables'.\n")
    return header + "\n\n".join(table_ddl(t) for t in TABLES.values()) + "\n"


def ensure_schema(con: duckdb.DuckDBPyConnection) -> None:
    """Create missing tables; add nullable columns that a store created by an
    earlier version lacks (e.g. ``alerts.explanation``)."""
    for t in TABLES.values():
        con.execute(table_ddl(t))
        for c in t.columns:
            if c.nullable:
                con.execute(f"ALTER TABLE {t.name} ADD COLUMN IF NOT EXISTS "
                            f"{c.name} {_DUCKDB_TYPES[c.type]}")


_lock = threading.Lock()
_shared: dict[str, list[Any]] = {}  # path -> [connection, refcount]
_limits: dict[str, int] = {}  # path -> the connection's memory limit, MiB


def memory_limit_mb() -> int | None:
    """The starting ``memory_limit`` of shared connections (None: DuckDB's default)."""
    raw = os.environ.get(MEMORY_LIMIT_ENV, "").strip()
    if not raw:
        return DEFAULT_MEMORY_LIMIT_MB
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{MEMORY_LIMIT_ENV}={raw!r}: not a whole number of MiB") from None
    if value < 0:
        raise ValueError(f"{MEMORY_LIMIT_ENV}={raw!r}: must be 0 (DuckDB's default) or more")
    return value or None


def _memory_ceiling_mb() -> int:
    """DuckDB's own default limit: 80 % of physical memory."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") * 0.8) >> 20
    except (ValueError, OSError):
        return 1 << 20


def grow_memory_limits() -> bool:
    """After DuckDB ran out of memory: double each shared connection's limit.

    Call it with no statement running (outside :func:`connection_lock`).
    Returns False when no limit could grow (all at DuckDB's default or above),
    so the caller raises instead of retrying.
    """
    ceiling = _memory_ceiling_mb()
    grew = False
    with _lock:
        for key, (con, _) in _shared.items():
            current = _limits.get(key)
            if current is None or current >= ceiling:
                continue
            new = min(current * 2, ceiling)
            con.execute(f"SET memory_limit = '{new}MiB'")
            _limits[key] = new
            grew = True
            log.warning("DuckDB store %s ran out of memory at %d MiB; its limit is now %d MiB "
                        "(%s sets where it starts)", key, current, new, MEMORY_LIMIT_ENV)
    return grew


def retry_out_of_memory(action):
    """``action()``, retried with a grown memory limit while DuckDB runs out of memory."""
    while True:
        try:
            return action()
        except duckdb.OutOfMemoryException:
            if not grow_memory_limits():
                raise


def shared_connection(path: str | Path) -> duckdb.DuckDBPyConnection:
    """A process-wide connection to ``path`` (schema ensured); release it after."""
    key = str(Path(path).resolve())
    with _lock:
        entry = _shared.get(key)
        if entry is None:
            Path(key).parent.mkdir(parents=True, exist_ok=True)
            con = duckdb.connect(key)
            ensure_schema(con)
            limit = memory_limit_mb()
            if limit is not None:
                con.execute(f"SET memory_limit = '{limit}MiB'")
                _limits[key] = limit
            entry = _shared[key] = [con, 0]
        entry[1] += 1
        return entry[0]


def connection_lock() -> threading.Lock:
    """The lock every statement on a shared connection is run under."""
    return _lock


def release_connection(path: str | Path, close_if_unused: bool = False) -> None:
    """Drop one reference; the connection itself stays open until exit.

    Runners call DoFn.teardown on worker threads that may be cancelled while
    the process exits; closing (which checkpoints) there can be cut short and
    abort the process. Every insert is already committed to the WAL, so the
    connection is closed once, from the main thread, at interpreter exit.
    ``close_if_unused`` closes it when this was the last reference: for
    callers that know they close on the owning thread (the Flink job's sink,
    whose embedded interpreter may not run exit handlers).
    """
    key = str(Path(path).resolve())
    with _lock:
        entry = _shared.get(key)
        if entry is not None:
            entry[1] = max(0, entry[1] - 1)
            if close_if_unused and entry[1] == 0:
                entry[0].close()
                del _shared[key]
                _limits.pop(key, None)


def close_all() -> None:
    """Close every shared connection (checkpointing the files)."""
    with _lock:
        for con, _ in _shared.values():
            con.close()
        _shared.clear()
        _limits.clear()


atexit.register(close_all)


def _arrow_table(table: Table, columns: dict[str, list]):
    import pyarrow as pa

    arrays = []
    for c in table.columns:
        values = columns[c.name]
        if c.type == "TIMESTAMP":
            micros = pa.array([None if v is None else round(v * 1_000_000) for v in values],
                              type=pa.int64())
            arrays.append(micros.cast(pa.timestamp("us")))
        elif c.type == "FLOAT64":
            arrays.append(pa.array(values, type=pa.float64()))
        elif c.type == "INT64":
            arrays.append(pa.array(values, type=pa.int64()))
        else:
            arrays.append(pa.array(values, type=pa.string()))
    return pa.Table.from_arrays(arrays, names=[c.name for c in table.columns])


def _insert(con: duckdb.DuckDBPyConnection, table: Table, columns: dict[str, list]) -> None:
    batch = _arrow_table(table, columns)
    cols = ", ".join(c.name for c in table.columns)

    def write() -> None:
        with _lock:
            con.register("_earlyrisk_batch", batch)
            try:
                con.execute(f"INSERT OR IGNORE INTO {table.name} ({cols}) "
                            f"SELECT {cols} FROM _earlyrisk_batch")
            finally:
                con.unregister("_earlyrisk_batch")

    # Every sink's write (Beam and Flink) comes through here: out of memory
    # grows the limit and writes again (the lock is released in between).
    retry_out_of_memory(write)


def insert_rows(con: duckdb.DuckDBPyConnection, table_name: str,
                rows: Iterable[dict[str, Any]]) -> int:
    """Insert rows, ignoring any whose primary key is already present.

    Returns the number of rows offered (after removing in-batch repeats).
    """
    table = TABLES[table_name]
    unique: dict[tuple, dict[str, Any]] = {}
    for r in rows:
        unique.setdefault(tuple(r[k] for k in table.primary_key), r)
    if not unique:
        return 0
    kept = list(unique.values())
    _insert(con, table, {c.name: [r.get(c.name) for r in kept] if c.nullable
                         else [r[c.name] for r in kept] for c in table.columns})
    return len(unique)


def insert_records(con: duckdb.DuckDBPyConnection, table_name: str,
                   records: Sequence[Any]) -> int:
    """:func:`insert_rows` for records (objects with one attribute per column).

    The pipeline's sink path: columns are read straight off the records, with
    no dict per row.
    """
    table = TABLES[table_name]
    key = attrgetter(*table.primary_key)
    first: dict[Any, Any] = {}
    for r in records:
        first.setdefault(key(r), r)  # the first of each key wins, as in insert_rows
    if not first:
        return 0
    unique = list(first.values())
    names = [c.name for c in table.columns]
    values = zip(*map(attrgetter(*names), unique)) if len(names) > 1 else [
        [getattr(r, names[0]) for r in unique]]
    _insert(con, table, dict(zip(names, map(list, values))))
    return len(unique)


def connect_readonly(path: str | Path) -> duckdb.DuckDBPyConnection:
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"no database at {p} (run 'earlyrisk run' first)")
    return duckdb.connect(str(p), read_only=True)

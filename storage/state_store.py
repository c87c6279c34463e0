"""Per-user state that outlives a run: the ``user_state`` table of the DuckDB store.

On Flink and Dataflow the runner keeps each user's :class:`~models.scorer.UserState`
in its checkpoints. In-process runs (the DirectRunner) keep it here instead, in
the same DuckDB file as the rows it produced:

``user_state``
    one row per user: the model version the state was built with, the state's
    compact versioned encoding (:meth:`UserState.to_bytes`), the writings it
    counts, the event time of the last one, when it was written and by which
    invocation (``run_id``).
``user_state_staging``
    states a pipeline run has changed, written as it goes; moved into
    ``user_state`` by :meth:`StateStore.commit` once the run has succeeded, in
    the same transaction as the source offsets. A killed run leaves staging
    rows that no commit ever reads; the next run deletes them.
``source_offsets``
    for a Kafka read, the next offset of each partition whose messages are
    counted in ``user_state`` (per topic and consumer group).
``state_meta``
    the store's event-time clock (the latest event time of any state) and the
    model version the state belongs to.

A streaming run, which never finishes, writes its changed states straight to
``user_state`` (:meth:`StateStore.snapshot`) every few seconds and when it stops.

Memory: ``user_state`` and ``user_state_staging`` have no primary key. User
ids are random with respect to the order states are written, so each slice's
commit replaced rows all over a key index on ``user_id``, and DuckDB keeps the
index nodes a write touched in memory, whatever its memory limit: late in a
5M-submission sliced run (500k users) DuckDB ran out of memory at its limit
in 6 of 25 slices. Without the keys the tables are plain columns that DuckDB
can evict, and a replay of a sliced run's state work (500k users, 165k per
slice) ran 25 % faster. One row per user is kept by the writers instead: a
commit deletes the users it writes and inserts each one's latest staged row
(``seq`` orders them), in one transaction, and a DuckDB file has one writing
process. Reads join on ``user_id``: a scan. Stores made before this are
rebuilt without the keys when first opened (:func:`ensure_state_schema`).

Expiry: a state whose expiry slot (``--state-ttl-days`` after its last writing,
see :func:`models.engine.expiry_slot`) is at or before the store's event-time
clock is deleted at each commit or snapshot, and treated as absent when read.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import duckdb

from models.engine import expiry_slot

STATE_TABLES = ("user_state", "user_state_staging", "source_offsets", "state_meta")

STATE_DDL = (
    # No primary key on the two per-user tables, on purpose: see "Memory" above.
    """CREATE TABLE IF NOT EXISTS user_state (
    user_id VARCHAR NOT NULL,
    model_version VARCHAR NOT NULL,
    state BLOB NOT NULL,
    writings BIGINT NOT NULL,
    last_event DOUBLE NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    run_id VARCHAR NOT NULL
);""",
    """CREATE TABLE IF NOT EXISTS user_state_staging (
    run_id VARCHAR NOT NULL,
    seq BIGINT NOT NULL,
    user_id VARCHAR NOT NULL,
    model_version VARCHAR NOT NULL,
    state BLOB NOT NULL,
    writings BIGINT NOT NULL,
    last_event DOUBLE NOT NULL
);""",
    """CREATE TABLE IF NOT EXISTS source_offsets (
    source VARCHAR NOT NULL,
    consumer_group VARCHAR NOT NULL,
    partition BIGINT NOT NULL,
    next_offset BIGINT NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    PRIMARY KEY (source, consumer_group, partition)
);""",
    """CREATE TABLE IF NOT EXISTS state_meta (
    key VARCHAR NOT NULL,
    value VARCHAR NOT NULL,
    PRIMARY KEY (key)
);""",
)

log = logging.getLogger(__name__)

CLOCK = "event_clock"
MODEL = "model_version"


_next_seq = 0  # staged rows are numbered in the order written (under the connection lock)


def _take_seq(n: int) -> int:
    """The first of ``n`` consecutive staging sequence numbers."""
    global _next_seq
    first, _next_seq = _next_seq, _next_seq + n
    return first


class ModelMismatchError(ValueError):
    """The store's state was built by another model (one-line reason)."""


def ensure_state_schema(con: duckdb.DuckDBPyConnection) -> bool:
    """Create the state tables; True if old keyed ones were rebuilt first."""
    rebuilt = _migrate_keyed_tables(con)
    for ddl in STATE_DDL:
        con.execute(ddl)
    return rebuilt


def _migrate_keyed_tables(con: duckdb.DuckDBPyConnection) -> bool:
    """Stores written before the per-user tables lost their primary key: rebuild
    ``user_state`` without it (same rows) and drop ``user_state_staging`` (only
    a commit of the run that staged them reads its rows, and no run is active:
    a DuckDB file has one writing process)."""
    keyed = {r[0] for r in con.execute(
        "select table_name from duckdb_constraints() where constraint_type = 'PRIMARY KEY' "
        "and table_name in ('user_state', 'user_state_staging') "
        "and database_name = current_database()").fetchall()}
    if not keyed:
        return False
    with _transaction(con):
        if "user_state_staging" in keyed:
            con.execute("drop table user_state_staging")
        if "user_state" in keyed:
            con.execute("alter table user_state rename to user_state_keyed")
            con.execute(STATE_DDL[0])
            con.execute("insert into user_state select * from user_state_keyed")
            con.execute("drop table user_state_keyed")
    return True


def _memory_retried(method):
    """Retry a store operation that ran out of DuckDB memory with a grown limit
    (storage.duckdb_store.retry_out_of_memory), outside the connection lock."""
    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        from storage.duckdb_store import retry_out_of_memory

        return retry_out_of_memory(lambda: method(*args, **kwargs))
    return wrapper


@dataclass(frozen=True)
class StateSpec:
    """What a DoFn needs to find the state store (picklable: a path and ids)."""

    path: str
    run_id: str
    model_version: str
    ttl_s: float
    streaming: bool = False
    snapshot_every_s: float = 10.0


class StateStore:
    """The state tables of one DuckDB file, through the process's shared connection."""

    def __init__(self, path: str | Path) -> None:
        from storage.duckdb_store import shared_connection

        self.path = str(Path(path))
        self._con = shared_connection(self.path)
        with _lock():
            if ensure_state_schema(self._con):
                log.info("state tables of %s rebuilt without primary keys", self.path)

    def model_version(self) -> str | None:
        """The model the stored state belongs to (None: no state yet)."""
        with _lock():
            row = _first(self._con.execute(
                "select value from state_meta where key = ?", [MODEL]).fetchall())
            if row is None:
                row = _first(self._con.execute(
                    "select model_version from user_state limit 1").fetchall())
        return row[0] if row else None

    def check_model(self, model_version: str) -> None:
        """Refuse (ModelMismatchError) a model other than the one the state belongs to."""
        stored = self.model_version()
        if stored is not None and stored != model_version:
            raise ModelMismatchError(
                f"the per-user state in {self.path} was built by model {stored}, not "
                f"{model_version}: its term counts index that model's vocabulary; write to a "
                "new store, or run with --state-store none (see docs/RELIABILITY.md, "
                "'Model changes')")

    def release(self) -> None:
        from storage.duckdb_store import release_connection

        release_connection(self.path)

    # -- reading ----------------------------------------------------------------------
    def clock(self) -> float:
        with _lock():
            row = _first(self._con.execute(
                "select value from state_meta where key = ?", [CLOCK]).fetchall())
        return float(row[0]) if row else float("-inf")

    @_memory_retried
    def load(self, user_ids: Iterable[str], ttl_s: float,
             clock: float | None = None) -> dict[str, bytes]:
        """Encoded states of those of ``user_ids`` that have one and have not expired."""
        import pyarrow as pa

        ids = list(dict.fromkeys(user_ids))
        if not ids:
            return {}
        clock = self.clock() if clock is None else clock
        with _lock():
            self._con.register("_earlyrisk_ids", pa.table({"user_id": pa.array(ids, pa.string())}))
            try:
                rows = self._con.execute(
                    "select s.user_id, s.state, s.last_event from user_state s "
                    "join _earlyrisk_ids i using (user_id)").fetchall()
            finally:
                self._con.unregister("_earlyrisk_ids")
        return {u: bytes(b) for u, b, last in rows if expiry_slot(last, ttl_s) > clock}

    @_memory_retried
    def load_one(self, user_id: str, ttl_s: float, clock: float) -> bytes | None:
        with _lock():
            row = _first(self._con.execute(
                "select state, last_event from user_state where user_id = ?",
                [user_id]).fetchall())
        if row is None or expiry_slot(row[1], ttl_s) <= clock:
            return None
        return bytes(row[0])

    def users_written(self, run_ids: list[str]) -> int:
        """Users whose stored state one of ``run_ids`` wrote last."""
        if not run_ids:
            return 0
        marks = ", ".join("?" for _ in run_ids)
        with _lock():
            return int(_first(self._con.execute(
                f"select count(*) from user_state where run_id in ({marks})",
                run_ids).fetchall())[0])

    def offsets(self, source: str, group: str) -> dict[int, int]:
        with _lock():
            rows = self._con.execute(
                "select partition, next_offset from source_offsets "
                "where source = ? and consumer_group = ?", [source, group]).fetchall()
        return {int(p): int(o) for p, o in rows}

    # -- writing ----------------------------------------------------------------------
    @_memory_retried
    def stage_rows(self, run_id: str, model_version: str, rows: list[tuple]) -> int:
        """A running pipeline's changed states, (user, bytes, writings, last event), to staging."""
        if not rows:
            return 0
        with _lock():
            self._upsert("user_state_staging", run_id, model_version, rows)
        return len(rows)

    @_memory_retried
    def commit(self, run_id: str, model_version: str, ttl_s: float,
               offsets: Iterable[tuple[str, str, int, int]] = ()) -> int:
        """After a successful run: its staged states and source offsets, in one transaction.

        ``offsets``: (source, consumer group, partition, next offset). Returns
        the number of user states written.
        """
        con = self._con
        with _lock(), _transaction(con):
            n = _first(con.execute(
                "select count(*) from user_state_staging where run_id = ?",
                [run_id]).fetchall())[0]
            # Each user's latest staged state replaces its stored one (a user a
            # retried bundle staged twice has several; the last one wins).
            con.execute("delete from user_state where user_id in (select user_id from "
                        "user_state_staging where run_id = ?)", [run_id])
            con.execute(
                "insert into user_state select user_id, model_version, state, writings, "
                "last_event, now()::timestamp, run_id from user_state_staging "
                "where run_id = ? qualify row_number() over (partition by user_id "
                "order by seq desc) = 1", [run_id])
            con.execute("delete from user_state_staging")
            for source, group, partition, offset in offsets:
                con.execute("insert or replace into source_offsets values "
                            "(?, ?, ?, ?, now()::timestamp)",
                            [source, group, partition, offset])
            self._advance_clock_and_expire(model_version, ttl_s)
        return int(n)

    @_memory_retried
    def snapshot_rows(self, run_id: str, model_version: str, ttl_s: float, rows: list[tuple],
                      expired: Iterable[str] = ()) -> int:
        """A streaming run's changed states straight into ``user_state``, and the users
        whose expiry timer fired out of it, in one transaction."""
        gone = list(expired)
        with _lock(), _transaction(self._con):
            if gone:
                self._con.executemany("delete from user_state where user_id = ?",
                                      [[u] for u in gone])
            if rows:
                self._upsert("user_state", run_id, model_version, rows)
            self._advance_clock_and_expire(model_version, ttl_s)
        return len(rows)

    def discard_staging(self) -> None:
        """Drop what killed or failed runs staged (nothing reads it)."""
        with _lock():
            self._con.execute("delete from user_state_staging")

    def _upsert(self, table: str, run_id: str, model_version: str, rows: list[tuple]) -> None:
        """Write changed states, ``rows`` one per user: appended to the staging table
        (numbered, the latest per user wins at commit), or replacing the users'
        rows of ``user_state`` (call inside a transaction)."""
        import pyarrow as pa

        users, blobs, writings, last = zip(*rows)
        last = [x if x > float("-inf") else 0.0 for x in last]
        n = len(users)
        first = _take_seq(n)
        batch = pa.table({
            "run_id": pa.array([run_id] * n, pa.string()),
            "seq": pa.array(range(first, first + n), pa.int64()),
            "user_id": pa.array(users, pa.string()),
            "model_version": pa.array([model_version] * n, pa.string()),
            "state": pa.array(blobs, pa.binary()),
            "writings": pa.array(writings, pa.int64()),
            "last_event": pa.array(last, pa.float64()),
        })
        self._con.register("_earlyrisk_states", batch)
        try:
            if table == "user_state":
                self._con.execute("delete from user_state where user_id in "
                                  "(select user_id from _earlyrisk_states)")
                self._con.execute(
                    "insert into user_state select user_id, model_version, state, "
                    "writings, last_event, now()::timestamp, run_id from _earlyrisk_states")
            else:
                self._con.execute(
                    "insert into user_state_staging select run_id, seq, user_id, "
                    "model_version, state, writings, last_event from _earlyrisk_states")
        finally:
            self._con.unregister("_earlyrisk_states")

    def _advance_clock_and_expire(self, model_version: str, ttl_s: float) -> None:
        con = self._con
        row = _first(con.execute("select max(last_event) from user_state").fetchall())
        latest = row[0] if row and row[0] is not None else float("-inf")
        clock = max(self.clock_unlocked(), latest)
        con.execute("insert or replace into state_meta values (?, ?)", [CLOCK, repr(clock)])
        con.execute("insert or replace into state_meta values (?, ?)", [MODEL, model_version])
        # The expiry slot, as in models.engine.expiry_slot, computed in SQL.
        slack = min(ttl_s / 64, 86_400.0)
        con.execute("delete from user_state where ceil((last_event + ?) / ?) * ? <= ?",
                    [ttl_s, slack, slack, clock])

    def clock_unlocked(self) -> float:
        row = _first(self._con.execute("select value from state_meta where key = ?",
                                       [CLOCK]).fetchall())
        return float(row[0]) if row else float("-inf")


@contextlib.contextmanager
def _transaction(con: duckdb.DuckDBPyConnection):
    """BEGIN ... COMMIT, rolled back on any exception, Ctrl-C included.

    A Ctrl-C can land while DuckDB is starting or ending the transaction, or
    DuckDB may already have ended it when it interrupted a statement; then
    there is nothing to roll back, and the rollback's own error ("no
    transaction is active") must not hide the interrupt or the real failure.
    """
    con.execute("BEGIN TRANSACTION")
    try:
        yield
        con.execute("COMMIT")
    except BaseException:
        try:
            con.execute("ROLLBACK")
        except duckdb.Error as e:
            if "no transaction is active" not in str(e):
                raise
            log.debug("rollback after an interrupt: %s", e)
        raise


def _first(rows: list) -> tuple | None:
    # fetchall, never fetchone: an unfinished result on the shared connection
    # makes the next statement from another thread fail.
    return rows[0] if rows else None


def _lock() -> threading.Lock:
    from storage.duckdb_store import connection_lock

    return connection_lock()


class RunState:
    """One pipeline run's view of the store, shared by every DoFn instance in the process.

    The streaming DirectRunner makes a DoFn instance per bundle, so what must
    outlive a bundle lives here: which users were already looked up, states
    encoded at the end of each bundle and not yet written, users whose expiry
    timer fired (streaming only), and when the last snapshot was taken.
    """

    def __init__(self, spec: StateSpec) -> None:
        self.spec = spec
        self._lock = threading.Lock()
        self._fetched: set[str] = set()
        self._pending: dict[str, tuple[bytes, int, float]] = {}
        self._expired: set[str] = set()
        self._last_snapshot = time.monotonic()
        self._store: StateStore | None = None
        self._clock: float | None = None
        self._ticker: threading.Thread | None = None
        self._stop = threading.Event()
        self._flushing = threading.Lock()
        self.snapshots = 0

    def store(self) -> StateStore:
        with self._lock:
            if self._store is None:
                self._store = StateStore(self.spec.path)
            return self._store

    def clock(self) -> float:
        if self._clock is None:
            self._clock = self.store().clock()
        return self._clock

    # -- reads --------------------------------------------------------------------------
    def prefetch(self, user_ids: Iterable[str]) -> dict[str, bytes | None]:
        """Stored states of the users not looked up before in this run: b"" = none stored.

        Users already looked up map to None: their state is the runner's now.
        """
        with self._lock:
            fresh = [u for u in user_ids if u not in self._fetched]
            self._fetched.update(fresh)
        found = self.store().load(fresh, self.spec.ttl_s, self.clock()) if fresh else {}
        return {u: found.get(u, b"") for u in fresh}

    def lookup(self, user_id: str) -> bytes | None:
        """One user's stored state (a retried bundle, or a user back after expiry)."""
        with self._lock:
            self._fetched.add(user_id)
            if user_id in self._expired:
                return None
        return self.store().load_one(user_id, self.spec.ttl_s, self.clock())

    # -- writes -------------------------------------------------------------------------
    def changed(self, rows: Mapping[str, tuple[bytes, int, float]]) -> None:
        """Changed states, encoded by the thread that changed them: user -> (state bytes,
        writings, last event)."""
        with self._lock:
            self._pending.update(rows)
            self._expired.difference_update(rows)
        if not self.spec.streaming:
            self.flush()
        elif self._ticker is None:
            self._start_ticker()

    def _start_ticker(self) -> None:
        """Streaming: snapshot every ``snapshot_every_s`` while there is something to write,
        from a thread of its own (a quiet stream ends no bundle to snapshot from)."""
        with self._lock:
            if self._ticker is not None:
                return
            self._ticker = threading.Thread(target=self._tick, name="earlyrisk-state-snapshots",
                                            daemon=True)
        self._ticker.start()

    def _tick(self) -> None:
        while not self._stop.wait(self.spec.snapshot_every_s):
            try:
                self.flush()
            except Exception:  # the store is busy or gone: try again next time
                log.warning("state snapshot to %s failed; retrying", self.spec.path,
                            exc_info=True)

    def stop(self) -> None:
        self._stop.set()

    def expired(self, user_id: str) -> None:
        """A streaming run's expiry timer fired for ``user_id`` (bounded runs ignore it:
        their final watermark fires every timer)."""
        if self.spec.streaming:
            with self._lock:
                self._expired.add(user_id)
                self._pending.pop(user_id, None)

    def flush(self) -> int:
        """Write what is pending: to staging (bounded runs) or to user_state (streaming)."""
        with self._flushing:  # snapshots are written in the order they are taken
            return self._flush()

    def _flush(self) -> int:
        with self._lock:
            pending, self._pending = self._pending, {}
            expired, self._expired = self._expired, set()
            self._last_snapshot = time.monotonic()
        if not pending and not expired:
            return 0
        rows = [(u, b, n, last) for u, (b, n, last) in pending.items()]
        store, spec = self.store(), self.spec
        if spec.streaming:
            store.snapshot_rows(spec.run_id, spec.model_version, spec.ttl_s, rows, expired)
            self.snapshots += 1
        else:
            store.stage_rows(spec.run_id, spec.model_version, rows)
        return len(rows)


_RUNS: dict[str, RunState] = {}
_RUNS_LOCK = threading.Lock()


def run_state(spec: StateSpec) -> RunState:
    """The process's :class:`RunState` for ``spec.run_id``."""
    with _RUNS_LOCK:
        rs = _RUNS.get(spec.run_id)
        if rs is None:
            rs = _RUNS[spec.run_id] = RunState(spec)
        return rs


def end_run(run_id: str) -> RunState | None:
    """Forget a run's process-level state (after its commit or final snapshot)."""
    with _RUNS_LOCK:
        rs = _RUNS.pop(run_id, None)
    if rs is not None:
        rs.stop()
    return rs

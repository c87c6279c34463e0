"""The native Flink job's functions: thin wiring of :mod:`models` into PyFlink.

Each class is one operator of :mod:`flinkjob.job`; the work is done by the
same Beam-free core as the Beam job's transforms:

* :class:`ReadLines`: a JSONL(.gz) file, line by line, with ``file:PATH:LINE``
  positions (as :mod:`transforms.sources` reads it);
* :class:`Parse`: :func:`models.wire.parse_submission`, dead letters from
  :func:`models.deadletters.dead_letter` on a side output;
* :class:`ScoreUser`: Flink keyed state holding the user's compact
  :class:`~models.scorer.UserState` bytes (the Beam job's encoding), the
  event-time expiry timer, and :class:`models.engine.UserProcessor` for
  dedupe, scoring and the decision policy;
* :class:`WriteTable`: rows buffered in Flink list state (so a checkpoint holds
  whatever is not yet written) and written in batches, idempotently by primary
  key, to DuckDB (:mod:`storage.duckdb_store`) or BigQuery
  (:mod:`storage.bigquery_store`); columns come from :mod:`models.records`.

Everything here runs inside Flink's Python workers and must not import Beam.
"""

from __future__ import annotations

import gzip
import json
import logging
import tempfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pyflink.common import Types
from pyflink.datastream import (
    FlatMapFunction,
    KeyedProcessFunction,
    MapFunction,
    OutputTag,
    ProcessFunction,
    RuntimeContext,
)
from pyflink.datastream.state import ListStateDescriptor, ValueStateDescriptor

from models.deadletters import dead_letter
from models.engine import DEAD_LETTERS, BatchResult, UserProcessor, expiry_slot
from models.policy import IncrementalPolicy
from models.portable import PortableModel
from models.records import PIPELINE_TABLES, TABLES, to_row
from models.scorer import IncrementalScorer, UserState
from models.wire import KeySource, ParseError, ParseLimits, Pseudonymizer, parse_submission

log = logging.getLogger(__name__)

# Parse dead letters leave the parser on this side output, as (table, row).
PARSE_DEAD_LETTERS = OutputTag("parse_dead_letters", Types.PICKLED_BYTE_ARRAY())
# A timer this far in event time fires only at the end of a bounded input (or a
# drain): the sink's last flush.
END_OF_INPUT_MS = 2**62
USERS_NEW = "_users_new"  # not a table: a count the job summary reads


def _rows(table: str, record: Any) -> tuple[str, dict[str, Any]]:
    """A record as ``(table, row)``, the one element type between operators."""
    return table, to_row(record)


class ReadLines(FlatMapFunction):
    """A path -> its non-blank lines as ``(source position, payload bytes)``."""

    def flat_map(self, path: str) -> Iterator[tuple[str, bytes]]:
        opener = gzip.open if path.endswith(".gz") else open
        with opener(path, "rb") as f:
            for n, line in enumerate(f, start=1):
                line = line.rstrip(b"\r\n")
                if line.strip():
                    yield f"file:{path}:{n}", line


class KafkaPayload(MapFunction):
    """A Kafka record's value -> ``(kafka:TOPIC, payload bytes)``.

    PyFlink's Kafka source hands over the value only (no partition or
    offset), so the position is the topic; dead-letter ids still differ per
    payload. Thread mode delivers a Java ``byte[]`` as a tuple of signed ints.
    """

    def __init__(self, topic: str) -> None:
        self._source = f"kafka:{topic}"

    def map(self, value) -> tuple[str, bytes]:
        if isinstance(value, bytes | bytearray):
            return self._source, bytes(value)
        return self._source, bytes(b & 0xFF for b in value)


class Parse(ProcessFunction):
    """``(source, payload)`` -> Submission, or a dead letter on the side output."""

    def __init__(self, keys: KeySource, limits: ParseLimits) -> None:
        self._keys = keys
        self._limits = limits
        self._pseudonymize: Pseudonymizer | None = None

    def open(self, runtime_context: RuntimeContext) -> None:
        self._pseudonymize = Pseudonymizer(self._keys.resolve())

    def process_element(self, value: tuple[str, bytes], ctx: ProcessFunction.Context):
        source, payload = value
        try:
            yield parse_submission(payload, self._pseudonymize, source, self._limits)
        except ParseError as e:
            yield PARSE_DEAD_LETTERS, [_rows(DEAD_LETTERS, dead_letter(
                "parse", e.reason, e.detail, source, payload, self._pseudonymize))]


class ScoreUser(KeyedProcessFunction):
    """Per-user keyed state (UserState bytes) + expiry timer around UserProcessor.

    Outputs one list per submission: ``(table, row)`` for its score, writing,
    alerts or duplicate dead letter, in the order
    :meth:`models.engine.UserProcessor.process` yields them, led by
    ``(USERS_NEW, None)`` for a new user (for the run summary). One element
    per submission rather than per row halves what crosses to the sink.
    """

    STATE = "user_state"

    def __init__(self, model_files: dict[str, bytes], policy: IncrementalPolicy,
                 state_ttl_s: float, dedupe_window: int, top_n: int, store_text: bool) -> None:
        # The model travels inside the function (its files, a few hundred kB),
        # not as a path: a TaskManager's embedded interpreter outlives jobs and
        # keeps the modules (and their paths) of the first job it ran.
        self._model_files = model_files
        self._policy = policy
        self._ttl = state_ttl_s
        self._window = dedupe_window
        self._top_n = top_n
        self._store_text = store_text
        self._processor: UserProcessor | None = None
        self._state = None

    def open(self, runtime_context: RuntimeContext) -> None:
        # The model loads once per task (content hash checked), never into state.
        with tempfile.TemporaryDirectory(prefix="earlyrisk-model-") as d:
            for name, data in self._model_files.items():
                (Path(d) / name).write_bytes(data)
            scorer = IncrementalScorer(PortableModel.load(d))
        self._processor = UserProcessor(scorer, self._policy, self._window, self._top_n,
                                        self._store_text)
        # The value is the UserState's bytes. PyFlink's thread mode converts a
        # PRIMITIVE_ARRAY(BYTE) state to a tuple of ints (and fails on an empty
        # state), so the bytes object travels pickled: a pickled ``bytes`` is
        # the bytes plus a short header, and names no class.
        self._state = runtime_context.get_state(ValueStateDescriptor(
            self.STATE, Types.PICKLED_BYTE_ARRAY()))

    def process_element(self, sub, ctx: KeyedProcessFunction.Context):
        raw = self._state.value()
        state = UserState() if raw is None else UserState.from_bytes(raw)
        out: list[tuple[str, Any]] = [(USERS_NEW, None)] if raw is None else []
        result = BatchResult()
        for output, record in self._processor.process(sub.user_id, state, (sub,), result):
            out.append(_rows(output, record))
        yield out
        if result.changed:  # else a redelivery: nothing changed
            self._state.update(state.to_bytes())
            if result.timer_moves(state, self._ttl):
                timers = ctx.timer_service()
                if raw is not None:  # the user's timer is at the slot of their last event
                    timers.delete_event_time_timer(
                        _ms(expiry_slot(result.first_event, self._ttl)))
                timers.register_event_time_timer(_ms(expiry_slot(state.last_event, self._ttl)))

    def on_timer(self, timestamp: int, ctx: KeyedProcessFunction.OnTimerContext):
        # The user has been quiet for the TTL (in event time): forget them.
        self._state.clear()
        return iter(())


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


def shard(rows: list[tuple[str, Any]], shards: int) -> int:
    """The sink subtask for a list of rows (by its last row's primary key)."""
    if shards <= 1:
        return 0
    table, row = rows[-1]
    key = "\x1f".join(str(row.get(k)) for k in TABLES[table].primary_key) if row else ""
    return zlib.crc32(key.encode()) % shards


class WriteTable(KeyedProcessFunction):
    """Lists of ``(table, row)`` -> the store, in batches, idempotently.

    Keyed by :func:`shard`. Pending rows live in Flink list state: a
    checkpoint holds every row that is not yet written, and a row written but
    not yet covered by a checkpoint is written again after a restore, which
    the store ignores (DuckDB: insert or ignore by primary key; BigQuery:
    insert ids derived from the primary key). Flushes happen at ``batch_size``
    rows, ``flush_ms`` after the first pending row (processing time) and at
    the end of a bounded input. A row the store rejects becomes a
    ``dead_letters`` row (stage ``sink``). Emits ``(table, rows written)``
    after each flush and ``(USERS_NEW, n)`` for new users.
    """

    def __init__(self, output: str, batch_size: int = 5_000, flush_ms: int = 1_000,
                 retry_budget_s: float = 300.0) -> None:
        self._output = output
        self._batch_size = batch_size
        self._flush_ms = flush_ms
        self._budget = retry_budget_s
        self._pending = None
        # Rows pending per key, only to decide when to flush (after a restore
        # it restarts at 0 while the restored rows wait for the next flush).
        self._counts: dict[int, int] = {}
        self._store = None

    def open(self, runtime_context: RuntimeContext) -> None:
        self._pending = runtime_context.get_list_state(
            ListStateDescriptor("pending_rows", Types.PICKLED_BYTE_ARRAY()))
        self._store = open_store(self._output, self._budget)

    def close(self) -> None:
        if self._store is not None:
            self._store.close()

    def process_element(self, value: list[tuple[str, Any]], ctx: KeyedProcessFunction.Context):
        rows = [r for r in value if r[0] != USERS_NEW]
        if len(rows) != len(value):
            yield USERS_NEW, len(value) - len(rows)
        if not rows:
            return
        key = ctx.get_current_key()
        self._pending.add_all(rows)
        before = self._counts.get(key, 0)
        n = self._counts[key] = before + len(rows)
        if before == 0:
            timers = ctx.timer_service()
            timers.register_processing_time_timer(
                timers.current_processing_time() + self._flush_ms)
            timers.register_event_time_timer(END_OF_INPUT_MS)
        if n >= self._batch_size:
            yield from self._flush(key)

    def on_timer(self, timestamp: int, ctx: KeyedProcessFunction.OnTimerContext):
        yield from self._flush(ctx.get_current_key())

    def _flush(self, key: int) -> Iterator[tuple[str, int]]:
        by_table: dict[str, list[dict[str, Any]]] = {}
        for table, row in self._pending.get() or ():
            by_table.setdefault(table, []).append(row)
        for table in sorted(by_table, key=_TABLE_ORDER.index):
            yield from self._store.write(table, by_table[table]).items()
        self._pending.clear()
        self._counts[key] = 0


_TABLE_ORDER = [t.name for t in PIPELINE_TABLES]


# -- stores ----------------------------------------------------------------------
class _Store:
    """Idempotent batch writes; rejected rows become sink dead letters."""

    def __init__(self, retry_budget_s: float) -> None:
        self._budget = retry_budget_s

    def write(self, table: str, rows: list[dict[str, Any]]) -> dict[str, int]:
        raise NotImplementedError

    def close(self) -> None:
        pass

    @staticmethod
    def rejected(table: str, row: dict[str, Any], error: str) -> dict[str, Any]:
        payload = json.dumps(row, ensure_ascii=False, default=str)
        return to_row(dead_letter("sink", "rejected", f"{table}: {error}",
                                  str(row.get("source") or ""), payload))


class DuckDBStore(_Store):
    """The embedded store (one writing process: a local MiniCluster run)."""

    def __init__(self, path: str, retry_budget_s: float) -> None:
        from storage.duckdb_store import shared_connection
        from storage.retry import duckdb_transient, retry_with_backoff

        super().__init__(retry_budget_s)
        self._path = path
        self._transient = duckdb_transient
        self._retry_with_backoff = retry_with_backoff
        self._con = self._retry(lambda: shared_connection(path), f"opening DuckDB store {path}")

    def _retry(self, action, what: str):
        return self._retry_with_backoff(action, self._transient, self._budget, what)

    def write(self, table: str, rows: list[dict[str, Any]]) -> dict[str, int]:
        from storage.duckdb_store import insert_rows
        from storage.retry import SinkUnavailableError

        what = f"writing {table} to {self._path}"
        try:
            return {table: self._retry(lambda: insert_rows(self._con, table, rows), what)}
        except SinkUnavailableError:
            raise
        except Exception as batch_error:
            if table == DEAD_LETTERS:
                raise  # nowhere left to put them: fail the job, never drop
            log.warning("%s: batch rejected (%s); retrying row by row", what, batch_error)
        written = {table: 0, DEAD_LETTERS: 0}
        for row in rows:
            try:
                written[table] += self._retry(lambda r=row: insert_rows(self._con, table, [r]),
                                              what)
            except SinkUnavailableError:
                raise
            except Exception as e:
                dl = self.rejected(table, row, f"{type(e).__name__}: {str(e).splitlines()[0]}")
                written[DEAD_LETTERS] += self._retry(
                    lambda d=dl: insert_rows(self._con, DEAD_LETTERS, [d]), what)
        return written

    def close(self) -> None:
        from storage.duckdb_store import release_connection

        release_connection(self._path, close_if_unused=True)


class BigQueryStore(_Store):
    """BigQuery streaming inserts with insert ids derived from the primary key."""

    def __init__(self, uri: str, retry_budget_s: float) -> None:
        from storage.bigquery_store import client, parse_bigquery_uri

        super().__init__(retry_budget_s)
        self._ref = parse_bigquery_uri(uri)
        self._bq = client(self._ref.project)

    def write(self, table: str, rows: list[dict[str, Any]]) -> dict[str, int]:
        from google.api_core.exceptions import GoogleAPICallError

        from storage.bigquery_store import insert_rows
        from storage.retry import retry_with_backoff

        def transient(e: BaseException) -> bool:
            return isinstance(e, (GoogleAPICallError, ConnectionError, TimeoutError)) and \
                getattr(e, "code", 503) in (429, 500, 502, 503, 504, None)

        written: dict[str, int] = {table: 0, DEAD_LETTERS: 0}
        for start in range(0, len(rows), 500):
            chunk = rows[start:start + 500]
            errors = retry_with_backoff(
                lambda c=chunk: insert_rows(self._ref, table, c, self._bq), transient,
                self._budget, f"writing {table} to {self._ref.uri}")
            bad = {e["index"]: e.get("errors") for e in errors}
            written[table] += len(chunk) - len(bad)
            if bad:
                if table == DEAD_LETTERS:
                    raise RuntimeError(f"BigQuery rejected dead letters: {list(bad.values())[:3]}")
                dls = [self.rejected(table, chunk[i], json.dumps(err, default=str)[:900])
                       for i, err in bad.items()]
                errs = insert_rows(self._ref, DEAD_LETTERS, dls, self._bq)
                if errs:
                    raise RuntimeError(f"BigQuery rejected dead letters: {errs[:3]}")
                written[DEAD_LETTERS] += len(dls)
        return written


def open_store(output: str, retry_budget_s: float) -> _Store:
    """The store named by a sink URI (``duckdb://PATH`` or ``bigquery://P/D``)."""
    from storage.uris import parse_sink_uri

    scheme, location = parse_sink_uri(output)
    if scheme == "duckdb":
        return DuckDBStore(location, retry_budget_s)
    return BigQueryStore(location, retry_budget_s)


def model_files(model_dir: str | None) -> dict[str, bytes]:
    """The files of a portable model directory (default: the bundled model), checked."""
    from models.portable import DEFAULT_MODEL_DIR

    d = Path(model_dir) if model_dir else DEFAULT_MODEL_DIR
    PortableModel.load(d)  # fail on the client, with the reason, not on every task
    return {f.name: f.read_bytes() for f in sorted(d.iterdir())
            if f.is_file() and f.suffix in (".json", ".npy")}

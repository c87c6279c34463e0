"""Sinks: where scores, alerts and dead letters go, chosen by URI.

Schemes: ``duckdb://PATH`` (the embedded store; ``duckdb:///abs/path`` or
``duckdb://relative/path``) and ``bigquery://PROJECT/DATASET`` (see
:mod:`transforms.bigquery_io`).

Writes are batched per bundle and idempotent (primary keys, insert-or-ignore),
so a bundle that a runner retries leaves exactly one row per record.

Failures are of two kinds, and neither drops a record:

* the store is unavailable (the file is locked by another process, a disk
  write fails): the write is retried with exponential backoff for up to
  ``retry_budget_s``; then the DoFn raises, which fails the bundle, and the
  runner retries it or stops the job with the error (nothing was
  acknowledged for that bundle, so nothing is lost);
* the store rejects a row (a constraint or a value it cannot hold): the batch
  is retried row by row, and each rejected row goes to ``dead_letters`` with
  stage ``sink``, reason ``rejected`` and the error, instead of its table.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import apache_beam as beam
from apache_beam.metrics import Metrics

from models.records import PIPELINE_TABLES, to_row
from storage.retry import (  # re-exported: the sinks' public names
    SinkUnavailableError,
    duckdb_transient,
    retry_with_backoff,
)
from storage.uris import SinkURIError, parse_sink_uri  # noqa: F401 (re-exported)
from transforms.beam_tuning import CachedSignatures

log = logging.getLogger(__name__)
T = TypeVar("T")

DEFAULT_RETRY_BUDGET_S = 300.0
REJECTED = "rejected"


class _DuckDBWriteFn(CachedSignatures, beam.DoFn):
    """Buffers rows and inserts them in batches; flushes at bundle end."""

    def __init__(self, path: str, table: str, batch_size: int = 10_000,
                 retry_budget_s: float = DEFAULT_RETRY_BUDGET_S) -> None:
        self._path = path
        self._table = table
        self._batch_size = batch_size
        self._budget = retry_budget_s
        self._rows: list[Any] = []  # records, turned into columns at flush
        self._written = Metrics.counter("earlyrisk", f"written.{table}")
        self._rejected = Metrics.counter("earlyrisk", "sink_rejected")
        self._retries = Metrics.counter("earlyrisk", "sink_retries")

    def setup(self) -> None:
        from storage.duckdb_store import shared_connection

        # Another process (the review app, a backup, `earlyrisk sql`) may hold
        # the file's lock for a while: wait for it rather than fail at once.
        self._con = self._retry(lambda: shared_connection(self._path),
                                f"opening DuckDB store {self._path}")

    def _retry(self, action: Callable[[], T], what: str) -> T:
        def counted() -> T:
            try:
                return action()
            except Exception as e:
                if duckdb_transient(e):
                    self._retries.inc()
                raise

        return retry_with_backoff(counted, duckdb_transient, self._budget, what)

    def start_bundle(self) -> None:
        self._rows = []

    def process(self, record) -> None:
        rows = self._rows
        rows.append(record)
        if len(rows) >= self._batch_size:
            self._flush()

    def finish_bundle(self) -> None:
        self._flush()

    def _flush(self) -> None:
        from storage.duckdb_store import insert_records

        if not self._rows:
            return
        rows, what = self._rows, f"writing {self._table} to {self._path}"
        try:
            self._written.inc(self._retry(lambda: insert_records(self._con, self._table, rows),
                                          what))
        except SinkUnavailableError:
            raise
        except Exception as batch_error:
            if self._table == "dead_letters":
                raise  # nowhere left to put them: fail the bundle, never drop
            log.warning("%s: batch rejected (%s); retrying row by row", what, batch_error)
            for row in rows:
                try:
                    self._written.inc(self._retry(
                        lambda r=row: insert_records(self._con, self._table, [r]), what))
                except SinkUnavailableError:
                    raise
                except Exception as e:
                    self._reject(to_row(row), e)
        self._rows = []

    def _reject(self, row: dict[str, Any], error: Exception) -> None:
        from storage.duckdb_store import insert_rows
        from transforms.parse import dead_letter

        self._rejected.inc()
        payload = json.dumps(row, ensure_ascii=False, default=str)
        detail = f"{self._table}: {type(error).__name__}: {str(error).splitlines()[0]}"
        dl = dead_letter("sink", REJECTED, detail, str(row.get("source") or ""), payload)
        self._retry(lambda: insert_rows(self._con, "dead_letters", [to_row(dl)]),
                    f"writing a rejected {self._table} row to dead_letters")

    def teardown(self) -> None:
        from storage.duckdb_store import release_connection

        release_connection(self._path)


class WriteResults(beam.PTransform):
    """{table name: PCollection of its records} -> the store at ``uri``."""

    def __init__(self, uri: str, bq_method: str = "streaming",
                 bq_create_tables: bool = False,
                 retry_budget_s: float = DEFAULT_RETRY_BUDGET_S) -> None:
        super().__init__()
        self._scheme, self._location = parse_sink_uri(uri)
        self._bq_method = bq_method
        self._bq_create_tables = bq_create_tables
        self._retry_budget_s = retry_budget_s

    @property
    def location(self) -> str:
        return self._location

    def expand(self, tables: dict):
        unknown = set(tables) - {t.name for t in PIPELINE_TABLES}
        if unknown:
            raise ValueError(f"WriteResults: no table for {sorted(unknown)}")
        if self._scheme == "bigquery":
            from storage.bigquery_store import parse_bigquery_uri
            from transforms.bigquery_io import WriteToBigQueryTables

            return tables | "BigQuery" >> WriteToBigQueryTables(
                parse_bigquery_uri(self._location), method=self._bq_method,
                create_tables=self._bq_create_tables)
        for name in (t.name for t in PIPELINE_TABLES if t.name in tables):
            (tables[name]
             | f"Write{name.title().replace('_', '')}" >> beam.ParDo(
                 _DuckDBWriteFn(str(Path(self._location)), name,
                                retry_budget_s=self._retry_budget_s)))
        return beam.pvalue.PDone(next(iter(tables.values())).pipeline)

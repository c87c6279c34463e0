"""Sinks: where scores, alerts and dead letters go, chosen by URI.

Schemes: ``duckdb://PATH`` (the embedded store; ``duckdb:///abs/path`` or
``duckdb://relative/path``) and ``bigquery://PROJECT/DATASET`` (see
:mod:`transforms.bigquery_io`).

Writes are batched per bundle and idempotent (primary keys, insert-or-ignore),
so a bundle that a runner retries leaves exactly one row per record.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import apache_beam as beam
from apache_beam.metrics import Metrics

from models.records import PIPELINE_TABLES, to_row


class SinkURIError(ValueError):
    pass


def parse_sink_uri(uri: str) -> tuple[str, str]:
    parsed = urlparse(uri)
    if parsed.scheme == "duckdb":
        path = (parsed.netloc + parsed.path) if parsed.netloc else parsed.path
        if not path:
            raise SinkURIError(f"{uri!r}: no database path")
        return "duckdb", path
    if parsed.scheme == "bigquery":
        from storage.bigquery_store import BigQueryURIError, parse_bigquery_uri

        try:
            parse_bigquery_uri(uri)
        except BigQueryURIError as e:
            raise SinkURIError(str(e)) from None
        return "bigquery", uri
    raise SinkURIError(f"{uri!r}: unsupported sink scheme {parsed.scheme!r} "
                       "(supported: duckdb://, bigquery://)")


class _DuckDBWriteFn(beam.DoFn):
    """Buffers rows and inserts them in batches; flushes at bundle end."""

    def __init__(self, path: str, table: str, batch_size: int = 10_000) -> None:
        self._path = path
        self._table = table
        self._batch_size = batch_size
        self._rows: list[dict[str, Any]] = []
        self._written = Metrics.counter("earlyrisk", f"written.{table}")

    def setup(self) -> None:
        from storage.duckdb_store import shared_connection

        self._con = shared_connection(self._path)

    def start_bundle(self) -> None:
        self._rows = []

    def process(self, record) -> None:
        self._rows.append(to_row(record))
        if len(self._rows) >= self._batch_size:
            self._flush()

    def finish_bundle(self) -> None:
        self._flush()

    def _flush(self) -> None:
        from storage.duckdb_store import insert_rows

        if self._rows:
            self._written.inc(insert_rows(self._con, self._table, self._rows))
            self._rows = []

    def teardown(self) -> None:
        from storage.duckdb_store import release_connection

        release_connection(self._path)


class WriteResults(beam.PTransform):
    """{table name: PCollection of its records} -> the store at ``uri``."""

    def __init__(self, uri: str, bq_method: str = "streaming",
                 bq_create_tables: bool = False) -> None:
        super().__init__()
        self._scheme, self._location = parse_sink_uri(uri)
        self._bq_method = bq_method
        self._bq_create_tables = bq_create_tables

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
                 _DuckDBWriteFn(str(Path(self._location)), name)))
        return beam.pvalue.PDone(next(iter(tables.values())).pipeline)

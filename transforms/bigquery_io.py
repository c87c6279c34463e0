"""Writing the pipeline's tables to BigQuery (``--output bigquery://PROJECT/DATASET``).

Two methods:

- ``streaming`` (default): Beam's streaming-insert writer (``BigQueryWriteFn``,
  the DoFn inside ``WriteToBigQuery(method=STREAMING_INSERTS)``) fed with our
  own insert ids. ``WriteToBigQuery`` itself draws random insert ids per bundle,
  so a bundle that the runner replays from scratch would insert its rows again;
  ours are a hash of the row's primary key (:func:`storage.bigquery_store.insert_id`),
  so any replay carries the same ids and BigQuery's best-effort de-duplication
  drops it. Rows BigQuery rejects come back on the writer's failed-rows output
  and become ``dead_letters`` rows (stage ``sink``, reason from BigQuery's
  error). A dead letter that is itself rejected is logged at ERROR and counted
  (``earlyrisk:sink_dead_letters_lost``): it is never dropped silently.
- ``file_loads``: ``WriteToBigQuery(method=FILE_LOADS)`` for backfills on real
  GCP (load jobs from files in ``--temp_location gs://...``; free, atomic per
  load, no streaming buffer). It needs Cloud Storage, so it cannot run offline.

Against the emulator (``$BIGQUERY_EMULATOR_HOST``) the writer uses an anonymous
client; on GCP, application default credentials.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import apache_beam as beam
from apache_beam.io.gcp.bigquery import BigQueryDisposition, BigQueryWriteFn
from apache_beam.io.gcp.bigquery_tools import RetryStrategy
from apache_beam.metrics import Metrics

from models.records import DEAD_LETTERS, PIPELINE_TABLES, DeadLetter, to_row
from storage.bigquery_store import (
    CLUSTER_COLUMNS,
    PARTITION_COLUMN,
    DatasetRef,
    insert_id,
    table_schema,
    to_bq_row,
)

_LOGGER = logging.getLogger(__name__)

STREAMING = "streaming"
FILE_LOADS = "file_loads"
METHODS = (STREAMING, FILE_LOADS)
SINK_STAGE = "sink"


class _StreamingInsertFn(BigQueryWriteFn):
    """Beam's streaming-insert DoFn with the client chosen by :mod:`storage.bigquery_store`.

    Beam's own writer builds its client from application default credentials,
    which the emulator does not need and an offline machine does not have.
    """

    def __init__(self, project: str, batch_size: int = 500) -> None:
        super().__init__(
            batch_size=batch_size,
            schema=None,
            create_disposition=BigQueryDisposition.CREATE_NEVER,
            write_disposition=BigQueryDisposition.WRITE_APPEND,
            retry_strategy=RetryStrategy.RETRY_ON_TRANSIENT_ERROR,
            max_retries=5,
        )
        self._project = project

    def start_bundle(self) -> None:
        if not self.bigquery_wrapper:
            from apache_beam.io.gcp.bigquery_tools import BigQueryWrapper

            from storage.bigquery_store import client

            self.bigquery_wrapper = BigQueryWrapper(client=client(self._project))
        super().start_bundle()


def _keyed_row(record: Any, ref: DatasetRef, table: str) -> tuple[str, tuple[dict, str]]:
    row = to_row(record)
    return ref.table_spec(table), (to_bq_row(table, row), insert_id(table, row))


def _error_reason(errors: Any) -> tuple[str, str]:
    """(reason, message) of BigQuery's first error for a row."""
    first = errors[0] if isinstance(errors, list) and errors else errors
    if isinstance(first, dict):
        reason = str(first.get("reason") or "rejected")
        return reason, str(first.get("message") or json.dumps(errors, default=str))
    return "rejected", str(errors)


def rejected_row_dead_letter(destination: str, row: dict, errors: Any) -> DeadLetter:
    """A dead letter for a row BigQuery refused (deterministic id: table + row)."""
    from transforms.parse import dead_letter

    reason, message = _error_reason(errors)
    table = destination.rsplit(".", 1)[-1]
    payload = json.dumps(row, sort_keys=True, default=str, ensure_ascii=False)
    return dead_letter(SINK_STAGE, f"bigquery_{reason}", f"{table}: {message}",
                       f"bigquery:{destination}", payload)


class _RejectedToDeadLetterFn(beam.DoFn):
    def __init__(self) -> None:
        self._rejected = Metrics.counter("earlyrisk", "sink_rejected")

    def process(self, failed):
        destination, row, errors = failed[0], failed[1], failed[2]
        self._rejected.inc()
        _LOGGER.warning("BigQuery rejected a row of %s: %s", destination, errors)
        yield rejected_row_dead_letter(str(destination), row, errors)


class _LogLostFn(beam.DoFn):
    def __init__(self) -> None:
        self._lost = Metrics.counter("earlyrisk", "sink_dead_letters_lost")

    def process(self, failed):
        self._lost.inc()
        _LOGGER.error("BigQuery rejected a dead letter; it is lost from the table: "
                      "destination=%s errors=%s row=%s", failed[0], failed[2], failed[1])


class _CountWrittenFn(beam.DoFn):
    def __init__(self, table: str) -> None:
        self._offered = Metrics.counter("earlyrisk", f"written.{table}")

    def process(self, element):
        self._offered.inc()
        yield element


class WriteToBigQueryTables(beam.PTransform):
    """{table name: PCollection of records} -> tables of a BigQuery dataset."""

    def __init__(self, ref: DatasetRef, method: str = STREAMING,
                 create_tables: bool = False, batch_size: int = 500) -> None:
        super().__init__()
        if method not in METHODS:
            raise ValueError(f"unknown BigQuery write method {method!r} (use one of {METHODS})")
        self._ref = ref
        self._method = method
        self._create_tables = create_tables
        self._batch_size = batch_size

    def expand(self, tables: dict):
        names = [t.name for t in PIPELINE_TABLES if t.name in tables]
        if self._create_tables and self._method == STREAMING:
            # Created by the launcher before the job starts, with partitioning
            # and clustering (streaming inserts cannot create tables); labels
            # too, so that the review app and the precision queries find it.
            from storage.bigquery_store import ensure_tables

            ensure_tables(self._ref)
        if self._method == FILE_LOADS:
            return self._file_loads(tables, names)
        rejected = []
        for name in names:
            label = name.title().replace("_", "")
            result = (
                tables[name]
                | f"ToRows{label}" >> beam.Map(_keyed_row, self._ref, name)
                | f"Count{label}" >> beam.ParDo(_CountWrittenFn(name))
                | f"Insert{label}" >> beam.ParDo(
                    _StreamingInsertFn(self._ref.project, self._batch_size)).with_outputs(
                        BigQueryWriteFn.FAILED_ROWS, BigQueryWriteFn.FAILED_ROWS_WITH_ERRORS,
                        main="done"))
            rejected.append(result[BigQueryWriteFn.FAILED_ROWS_WITH_ERRORS])
        pipeline = next(iter(tables.values())).pipeline
        sink_dead = (
            rejected
            | "MergeRejected" >> beam.Flatten(pipeline=pipeline)
            | "RejectedToDeadLetters" >> beam.ParDo(_RejectedToDeadLetterFn()))
        lost = (
            sink_dead
            | "ToRowsSinkDeadLetters" >> beam.Map(_keyed_row, self._ref, DEAD_LETTERS.name)
            | "InsertSinkDeadLetters" >> beam.ParDo(
                _StreamingInsertFn(self._ref.project, self._batch_size)).with_outputs(
                    BigQueryWriteFn.FAILED_ROWS, BigQueryWriteFn.FAILED_ROWS_WITH_ERRORS,
                    main="done"))
        lost[BigQueryWriteFn.FAILED_ROWS_WITH_ERRORS] | "LogLostDeadLetters" >> beam.ParDo(
            _LogLostFn())
        return beam.pvalue.PDone(pipeline)

    def _file_loads(self, tables: dict, names: list[str]):
        from apache_beam.io.gcp.bigquery import WriteToBigQuery

        for name in names:
            label = name.title().replace("_", "")
            (tables[name]
             | f"ToRows{label}" >> beam.Map(lambda r, n=name: to_bq_row(n, to_row(r)))
             | f"Count{label}" >> beam.ParDo(_CountWrittenFn(name))
             | f"Load{label}" >> WriteToBigQuery(
                 table=self._ref.table_spec(name),
                 schema={"fields": table_schema(next(t for t in PIPELINE_TABLES
                                                     if t.name == name))},
                 method=WriteToBigQuery.Method.FILE_LOADS,
                 create_disposition=(BigQueryDisposition.CREATE_IF_NEEDED
                                     if self._create_tables
                                     else BigQueryDisposition.CREATE_NEVER),
                 write_disposition=BigQueryDisposition.WRITE_APPEND,
                 additional_bq_parameters={
                     "timePartitioning": {"type": "DAY", "field": PARTITION_COLUMN[name]},
                     "clustering": {"fields": list(CLUSTER_COLUMNS[name])},
                 }))
        return beam.pvalue.PDone(next(iter(tables.values())).pipeline)

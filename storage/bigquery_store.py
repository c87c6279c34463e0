"""The BigQuery store: the same tables as DuckDB, partitioned by day and clustered.

Schema and DDL are generated from :data:`models.records.TABLES`, like the DuckDB
store's; ``deploy/bigquery/schema.sql`` is that DDL written out (a test keeps it
in sync). Each table is partitioned by the day of its time column (event time
for scores, alerts and writings) and clustered by user, so the analysts' usual
questions ("this user", "these days") read a few blocks instead of the table.

Credentials: with ``$BIGQUERY_EMULATOR_HOST`` set (the local emulator), the
client talks to it anonymously; otherwise Google's application default
credentials are used, as on real GCP.

Row ids: :func:`insert_id` is a hash of the table and the row's primary key,
so a streaming insert that is retried carries the same ``insertId`` and
BigQuery's best-effort de-duplication drops the repeat.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from models.records import TABLES, Table

EMULATOR_ENV = "BIGQUERY_EMULATOR_HOST"

# Day partitioning column and clustering columns of every table.
PARTITION_COLUMN = {
    "scores": "created_utc",
    "alerts": "created_utc",
    "writings": "created_utc",
    "dead_letters": "received_at",
    "labels": "labelled_at",
}
CLUSTER_COLUMNS = {
    "scores": ("user_id",),
    "alerts": ("user_id",),
    "writings": ("user_id",),
    "dead_letters": ("stage", "reason"),
    "labels": ("user_id",),
}


class BigQueryURIError(ValueError):
    pass


@dataclass(frozen=True)
class DatasetRef:
    """``bigquery://PROJECT/DATASET``."""

    project: str
    dataset: str

    def table_spec(self, table: str) -> str:
        """``PROJECT:DATASET.TABLE``, the form Beam's WriteToBigQuery takes."""
        return f"{self.project}:{self.dataset}.{table}"

    def table_id(self, table: str) -> str:
        """``PROJECT.DATASET.TABLE``, the form google-cloud-bigquery takes."""
        return f"{self.project}.{self.dataset}.{table}"

    @property
    def uri(self) -> str:
        return f"bigquery://{self.project}/{self.dataset}"


def parse_bigquery_uri(uri: str) -> DatasetRef:
    parsed = urlparse(uri)
    if parsed.scheme != "bigquery":
        raise BigQueryURIError(f"{uri!r}: not a bigquery:// URI")
    project = parsed.netloc
    dataset = parsed.path.strip("/")
    if not project or not dataset or "/" in dataset:
        raise BigQueryURIError(f"{uri!r}: expected bigquery://PROJECT/DATASET")
    if not dataset.replace("_", "").isalnum():
        raise BigQueryURIError(f"{uri!r}: dataset names are letters, digits and underscores")
    return DatasetRef(project, dataset)


# -- schema ---------------------------------------------------------------------
def table_schema(table: Table) -> list[dict[str, str]]:
    """BigQuery JSON schema fields of ``table`` (as in ``bq mk --schema``)."""
    return [{"name": c.name, "type": c.type, "mode": "NULLABLE" if c.nullable else "REQUIRED",
             "description": c.doc} for c in table.columns]


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def table_ddl(table: Table, dataset: str = "earlyrisk") -> str:
    cols = [f"    {c.name} {c.type}{'' if c.nullable else ' NOT NULL'}"
            f" OPTIONS(description={_quote(c.doc)})" for c in table.columns]
    cols.append(f"    PRIMARY KEY ({', '.join(table.primary_key)}) NOT ENFORCED")
    return (f"CREATE TABLE IF NOT EXISTS `{dataset}.{table.name}` (\n" + ",\n".join(cols)
            + "\n)\n"
            f"PARTITION BY DATE({PARTITION_COLUMN[table.name]})\n"
            f"CLUSTER BY {', '.join(CLUSTER_COLUMNS[table.name])}\n"
            f"OPTIONS(description={_quote(table.doc)});")


def schema_sql(dataset: str = "earlyrisk") -> str:
    header = ("-- earlyrisk tables in BigQuery. Generated from models/records.py by\n"
              "-- storage/bigquery_store.py (tests/test_bigquery_store.py keeps it in sync).\n"
              "-- Replace `earlyrisk` with your dataset, or let the pipeline create the\n"
              "-- tables: earlyrisk run --output bigquery://PROJECT/DATASET "
              "--bq-create-tables\n")
    return header + "\n\n".join(table_ddl(t, dataset) for t in TABLES.values()) + "\n"


# -- rows -----------------------------------------------------------------------
def _timestamp(seconds: float) -> str:
    # Rounded to the microsecond exactly as the DuckDB store does, so the two
    # stores hold the same instant.
    micros = round(seconds * 1_000_000)
    t = dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=micros)
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def to_bq_row(table_name: str, row: dict[str, Any]) -> dict[str, Any]:
    """A row (as from :func:`models.records.to_row`) in BigQuery's JSON form."""
    table = TABLES[table_name]
    out: dict[str, Any] = {}
    for c in table.columns:
        v = row[c.name]
        if v is not None and c.type == "TIMESTAMP":
            v = _timestamp(float(v))
        out[c.name] = v
    return out


def insert_id(table_name: str, row: dict[str, Any]) -> str:
    """Deterministic insertId: the same row always gets the same id."""
    key = "\x1f".join(str(row[k]) for k in TABLES[table_name].primary_key)
    return hashlib.sha256(f"{table_name}\x1e{key}".encode()).hexdigest()[:40]


# -- client ---------------------------------------------------------------------
def emulator_host() -> str | None:
    host = os.environ.get(EMULATOR_ENV)
    if not host:
        return None
    return host if "://" in host else f"http://{host}"


def client(project: str):
    """A google-cloud-bigquery client: anonymous on the emulator, ADC otherwise."""
    from google.cloud import bigquery

    host = emulator_host()
    if host:
        from google.api_core.client_options import ClientOptions
        from google.auth.credentials import AnonymousCredentials

        return bigquery.Client(project=project, credentials=AnonymousCredentials(),
                               client_options=ClientOptions(api_endpoint=host))
    return bigquery.Client(project=project)


def bq_table(ref: DatasetRef, table: Table):
    """A ``google.cloud.bigquery.Table`` with schema, partitioning and clustering."""
    from google.cloud import bigquery

    schema = [bigquery.SchemaField(f["name"], f["type"], mode=f["mode"],
                                   description=f["description"]) for f in table_schema(table)]
    t = bigquery.Table(ref.table_id(table.name), schema=schema)
    t.description = table.doc
    t.time_partitioning = bigquery.TimePartitioning(
        type_=bigquery.TimePartitioningType.DAY, field=PARTITION_COLUMN[table.name])
    t.clustering_fields = list(CLUSTER_COLUMNS[table.name])
    return t


def ensure_tables(ref: DatasetRef, tables: Iterable[str] | None = None, bq=None,
                  location: str | None = None) -> list[str]:
    """Create the dataset and the tables that do not exist yet; returns those created."""
    from google.api_core.exceptions import Conflict
    from google.cloud import bigquery

    bq = bq or client(ref.project)
    ds = bigquery.Dataset(f"{ref.project}.{ref.dataset}")
    if location:
        ds.location = location
    bq.create_dataset(ds, exists_ok=True)
    created = []
    for name in tables or TABLES:
        try:
            bq.create_table(bq_table(ref, TABLES[name]))
            created.append(name)
        except Conflict:
            pass
    return created


def insert_rows(ref: DatasetRef, table_name: str, rows: Sequence[dict[str, Any]],
                bq=None) -> list[dict[str, Any]]:
    """Stream ``rows`` into a table with deterministic insert ids.

    Returns BigQuery's per-row errors (an empty list when all were accepted).
    """
    if not rows:
        return []
    bq = bq or client(ref.project)
    return list(bq.insert_rows_json(
        ref.table_id(table_name), [to_bq_row(table_name, r) for r in rows],
        row_ids=[insert_id(table_name, r) for r in rows]))


def fetch_rows(ref: DatasetRef, table_name: str, bq=None) -> list[dict[str, Any]]:
    """Every row of a table as dicts (timestamps as aware datetimes)."""
    bq = bq or client(ref.project)
    return [dict(r.items()) for r in bq.query(
        f"SELECT * FROM `{ref.project}.{ref.dataset}.{table_name}`").result()]

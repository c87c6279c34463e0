"""BigQuery schema, DDL, row encoding and insert ids (no emulator needed)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import sqlglot

from models.records import TABLES, ScoreRecord, to_row
from pipelines.options import OptionsError, ScreeningOptions, validate
from storage import bigquery_store as bqs
from transforms.bigquery_io import _keyed_row, rejected_row_dead_letter
from transforms.sinks import SinkURIError, parse_sink_uri

REPO = Path(__file__).resolve().parent.parent


def _score(**kw) -> ScoreRecord:
    base = dict(user_id="u_1", submission_id="s1", created_utc=1_541_043_499.1234567,
                kind="post", subreddit="depression", p_text=0.25, p_user=0.5,
                writings_seen=1, model_version="m-1", source="file:x:1")
    base.update(kw)
    return ScoreRecord(**base)


def test_deploy_schema_sql_is_in_sync():
    on_disk = (REPO / "deploy" / "bigquery" / "schema.sql").read_text()
    assert on_disk == bqs.schema_sql(), (
        "deploy/bigquery/schema.sql is stale: regenerate with python -c 'from "
        "storage.bigquery_store import schema_sql; print(schema_sql(), end=\"\")' "
        "> deploy/bigquery/schema.sql")


def test_ddl_is_bigquery_sql_with_partitioning_and_clustering():
    statements = [s for s in sqlglot.parse(bqs.schema_sql(), read="bigquery") if s]
    assert len(statements) == len(TABLES)
    for table in TABLES.values():
        ddl = bqs.table_ddl(table)
        part = bqs.PARTITION_COLUMN[table.name]
        assert f"PARTITION BY DATE({part})" in ddl
        assert f"CLUSTER BY {', '.join(bqs.CLUSTER_COLUMNS[table.name])}" in ddl


@pytest.mark.parametrize("name", sorted(TABLES))
def test_partition_and_cluster_columns_exist(name):
    types = {c.name: c.type for c in TABLES[name].columns}
    assert types[bqs.PARTITION_COLUMN[name]] == "TIMESTAMP"
    assert set(bqs.CLUSTER_COLUMNS[name]) <= set(types)
    fields = bqs.table_schema(TABLES[name])
    assert [f["name"] for f in fields] == list(types)
    assert all(f["mode"] == ("NULLABLE" if c.nullable else "REQUIRED")
               for f, c in zip(fields, TABLES[name].columns))


@pytest.mark.parametrize("uri", ["bigquery://demo-project/earlyrisk",
                                 "bigquery://my-proj/ds_2"])
def test_parse_uri(uri):
    ref = bqs.parse_bigquery_uri(uri)
    assert ref.uri == uri
    assert parse_sink_uri(uri) == ("bigquery", uri)
    assert ref.table_spec("scores") == f"{ref.project}:{ref.dataset}.scores"


@pytest.mark.parametrize("uri", ["bigquery://", "bigquery://p", "bigquery://p/a/b",
                                 "bigquery://p/bad-name", "bq://p/d"])
def test_parse_uri_rejects(uri):
    with pytest.raises((bqs.BigQueryURIError, SinkURIError)):
        parse_sink_uri(uri)


def test_bq_options_need_bigquery_output():
    opts = ScreeningOptions(["--output", "duckdb:///tmp/x.duckdb", "--bq-create-tables"])
    with pytest.raises(OptionsError, match="bigquery"):
        validate(opts)


def test_timestamp_rounded_to_microsecond_like_duckdb():
    row = bqs.to_bq_row("scores", to_row(_score()))
    assert row["created_utc"] == "2018-11-01T03:38:19.123457Z"
    parsed = dt.datetime.fromisoformat(row["created_utc"].replace("Z", "+00:00"))
    assert parsed.timestamp() == pytest.approx(1_541_043_499.123457, abs=1e-7)
    assert row["p_user"] == 0.5 and row["writings_seen"] == 1


def test_insert_id_depends_on_table_and_primary_key_only():
    a = to_row(_score())
    same_key = to_row(_score(p_user=0.9, source="kafka:t:0:5"))
    other_key = to_row(_score(submission_id="s2"))
    assert bqs.insert_id("scores", a) == bqs.insert_id("scores", same_key)
    assert bqs.insert_id("scores", a) != bqs.insert_id("scores", other_key)
    assert bqs.insert_id("scores", a) != bqs.insert_id("writings", a)
    assert len(bqs.insert_id("scores", a)) <= 128  # BigQuery's insertId limit


def test_keyed_row_is_deterministic_across_calls():
    ref = bqs.DatasetRef("p", "d")
    first = _keyed_row(_score(), ref, "scores")
    again = _keyed_row(_score(), ref, "scores")
    assert first == again
    assert first[0] == "p:d.scores"


def test_rejected_row_dead_letter_keeps_reason_and_row():
    errors = [{"reason": "invalid", "location": "p_text", "message": "bad value"}]
    row = {"submission_id": "s9", "p_text": "oops"}
    d = rejected_row_dead_letter("p:d.scores", row, errors)
    assert (d.stage, d.reason) == ("sink", "bigquery_invalid")
    assert "scores: bad value" in d.detail
    assert d.source == "bigquery:p:d.scores"
    assert '"s9"' in d.raw and d.raw_bytes == len(d.raw.encode())
    assert d.dead_letter_id == rejected_row_dead_letter("p:d.scores", row, errors).dead_letter_id


def test_client_uses_emulator_anonymously(monkeypatch):
    from google.auth.credentials import AnonymousCredentials

    monkeypatch.setenv(bqs.EMULATOR_ENV, "127.0.0.1:1")
    c = bqs.client("demo-project")
    assert isinstance(c._credentials, AnonymousCredentials)
    assert c._connection.API_BASE_URL == "http://127.0.0.1:1"


def test_file_loads_graph_builds_with_partitioning():
    """FILE_LOADS needs GCS and real BigQuery: here only the graph is built, not run."""
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    from transforms.bigquery_io import FILE_LOADS, WriteToBigQueryTables

    p = beam.Pipeline(options=PipelineOptions(["--temp_location", "gs://bucket/tmp",
                                               "--project", "demo-project"]))
    scores = p | beam.Create([_score()])
    {"scores": scores} | "Write" >> WriteToBigQueryTables(
        bqs.DatasetRef("demo-project", "d"), method=FILE_LOADS)
    assert {"Write/ToRowsScores", "Write/CountScores", "Write/LoadScores"} <= p.applied_labels


def test_unknown_bq_method_rejected():
    from transforms.bigquery_io import WriteToBigQueryTables

    with pytest.raises(ValueError, match="method"):
        WriteToBigQueryTables(bqs.DatasetRef("p", "d"), method="storage_write")


def test_file_loads_refused_on_the_emulator(monkeypatch):
    monkeypatch.setenv(bqs.EMULATOR_ENV, "http://127.0.0.1:1")
    opts = ScreeningOptions(["--output", "bigquery://demo-project/d", "--bq-method",
                             "file_loads"])
    with pytest.raises(OptionsError, match="emulator"):
        validate(opts)

import duckdb
import pytest

from models.records import TABLES
from storage.duckdb_store import (
    insert_rows,
    release_connection,
    schema_sql,
    shared_connection,
)
from tests.conftest import REPO


def test_schema_file_in_sync():
    assert (REPO / "deploy" / "duckdb" / "schema.sql").read_text() == schema_sql()


def test_inserts_are_idempotent(tmp_path):
    path = tmp_path / "s.duckdb"
    con = shared_connection(path)
    try:
        row = {"user_id": "u", "submission_id": "s", "created_utc": 1.5e9, "kind": "post",
               "subreddit": "r", "p_text": 0.1, "p_user": 0.2, "writings_seen": 1,
               "model_version": "m", "source": "x"}
        insert_rows(con, "scores", [row, dict(row)])
        insert_rows(con, "scores", [row])
        assert con.execute("select count(*) from scores").fetchone()[0] == 1
        assert con.execute("select epoch(created_utc) from scores").fetchone()[0] == 1.5e9
    finally:
        release_connection(path)


def test_every_table_has_documented_columns():
    for t in TABLES.values():
        assert t.doc and all(c.doc for c in t.columns)
        assert set(t.primary_key) <= {c.name for c in t.columns}


@pytest.mark.slow
def test_a_store_out_of_memory_grows_its_limit_and_loses_nothing(tmp_path, monkeypatch, caplog):
    """DuckDB caps its cache at EARLYRISK_DUCKDB_MEMORY_MB; a run that needs more
    (a deliberately tiny 1 MiB here) doubles the limit and retries, and ends
    with the same rows as a run with the default limit."""
    import logging

    from pipelines.screening import run

    def rows(db):
        con = duckdb.connect(str(db), read_only=True)
        try:
            return [con.execute(f"select count(*) from {t}").fetchone()[0]
                    for t in ("scores", "alerts", "writings", "user_state")]
        finally:
            con.close()

    argv = ["--raw-user-ids", "--output"]
    run(argv + [f"duckdb://{tmp_path / 'default.duckdb'}"], show_progress=False)
    monkeypatch.setenv("EARLYRISK_DUCKDB_MEMORY_MB", "1")
    with caplog.at_level(logging.WARNING, logger="storage.duckdb_store"):
        summary = run(argv + [f"duckdb://{tmp_path / 'tiny.duckdb'}"], show_progress=False)
    assert any("ran out of memory at 1 MiB" in r.getMessage() for r in caplog.records)
    assert summary.balanced
    assert rows(tmp_path / "tiny.duckdb") == rows(tmp_path / "default.duckdb")


def test_a_bad_store_memory_limit_is_a_one_line_error(monkeypatch):
    from storage.duckdb_store import memory_limit_mb

    monkeypatch.setenv("EARLYRISK_DUCKDB_MEMORY_MB", "lots")
    with pytest.raises(ValueError, match="whole number"):
        memory_limit_mb()
    monkeypatch.setenv("EARLYRISK_DUCKDB_MEMORY_MB", "0")
    assert memory_limit_mb() is None

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

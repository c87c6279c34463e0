"""The pipeline and the analytics pack against a real BigQuery API (bqemulator).

One small stream (the first 300 lines of the bundled test stream plus malformed
lines) is run twice through ``earlyrisk run``: into DuckDB and into the
emulator. Every table must hold the same rows, and every named query must give
the same answers on both backends once the same expert labels are added.
"""

from __future__ import annotations

import datetime as dt
import gzip
import math
import uuid

import apache_beam as beam
import duckdb
import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from analytics.pack import load_pack, run_bigquery, run_duckdb
from models.records import PIPELINE_TABLES, TABLES, LabelRecord, ScoreRecord, to_row
from pipelines.cli import main
from storage import bigquery_store as bqs
from storage.duckdb_store import insert_rows

# The timeout turns a dead emulator into a failure, not a 10-minute client retry.
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(300)]

STREAM_LINES = 300
MALFORMED = [b'{"id": "broken', b'{"id": "x1", "author": "a"}', b"\xff\xfe not utf-8",
             b"[1, 2, 3]"]
KEY = "analytics-test-pseudonym-key-0123456789"


@pytest.fixture(scope="module")
def stream(tmp_path_factory):
    from corpora.simulate import SIMULATED_DIR

    path = tmp_path_factory.mktemp("stream") / "small.jsonl"
    with gzip.open(SIMULATED_DIR / "test.jsonl.gz", "rb") as src, open(path, "wb") as out:
        for i, line in enumerate(src):
            if i == STREAM_LINES:
                break
            out.write(line)
            if i % 100 == 50:
                out.write(MALFORMED[(i // 100) % len(MALFORMED)] + b"\n")
        out.write(MALFORMED[-1] + b"\n")
        # A redelivery of a line already seen: dead-lettered as a duplicate.
        src.seek(0)
        out.write(src.readline())
    return path


@pytest.fixture(scope="module")
def both_runs(bq_emulator, stream, tmp_path_factory):
    """(DuckDB path, BigQuery dataset) after the same run into each."""
    mp = pytest.MonkeyPatch()
    mp.setenv("EARLYRISK_PSEUDONYM_KEY", KEY)
    db = tmp_path_factory.mktemp("duck") / "store.duckdb"
    ref = bqs.parse_bigquery_uri("bigquery://demo-project/earlyrisk")  # the command
    common = ["run", "--input", f"file://{stream}", "--no-progress"]
    try:
        assert main([*common, "--output", f"duckdb://{db}"]) == 0
        assert main([*common, "--output", ref.uri, "--bq-create-tables"]) == 0
    finally:
        mp.undo()
    return db, ref


def _norm(v):
    if isinstance(v, dt.datetime):
        v = v if v.tzinfo else v.replace(tzinfo=dt.UTC)
        return v.astimezone(dt.UTC).isoformat()
    if isinstance(v, dt.date):
        return v.isoformat()
    if hasattr(v, "is_finite"):  # Decimal
        return float(v)
    return v


def _sort_key(row):
    return tuple((0, round(v, 6)) if isinstance(v, float) else (1, str(v)) for v in row)


def assert_same_rows(a, b, what):
    a = sorted((tuple(_norm(v) for v in r) for r in a), key=_sort_key)
    b = sorted((tuple(_norm(v) for v in r) for r in b), key=_sort_key)
    assert len(a) == len(b), f"{what}: {len(a)} rows vs {len(b)}"
    for ra, rb in zip(a, b):
        assert len(ra) == len(rb)
        for va, vb in zip(ra, rb):
            if isinstance(va, float) and isinstance(vb, (float, int)):
                assert math.isclose(va, vb, rel_tol=1e-9, abs_tol=1e-9), f"{what}: {ra} != {rb}"
            else:
                assert va == vb, f"{what}: {ra} != {rb}"


def _duck_rows(db, table, columns):
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(f"SELECT {', '.join(columns)} FROM {table}").fetchall()
    finally:
        con.close()


def _bq_rows(ref, table, columns):
    return [tuple(r[c] for c in columns) for r in bqs.fetch_rows(ref, table)]


def test_tables_created_partitioned_and_clustered(both_runs):
    _, ref = both_runs
    bq = bqs.client(ref.project)
    for name, table in TABLES.items():
        t = bq.get_table(ref.table_id(name))
        assert [f.name for f in t.schema] == [c.name for c in table.columns]
        assert t.time_partitioning.field == bqs.PARTITION_COLUMN[name]
        assert t.time_partitioning.type_ == "DAY"
        assert tuple(t.clustering_fields) == bqs.CLUSTER_COLUMNS[name]


@pytest.mark.parametrize("table", [t.name for t in PIPELINE_TABLES])
def test_pipeline_leaves_the_same_rows(both_runs, table):
    db, ref = both_runs
    # received_at / processed_at are processing times: they differ between runs.
    columns = [c.name for c in TABLES[table].columns
               if c.name not in ("received_at", "processed_at")]
    duck = _duck_rows(db, table, columns)
    assert duck, f"{table}: the DuckDB run wrote nothing"
    assert_same_rows(duck, _bq_rows(ref, table, columns), table)


def test_dead_letters_cover_malformed_lines(both_runs):
    _, ref = both_runs
    reasons = [r["reason"] for r in bqs.fetch_rows(ref, "dead_letters")]
    assert len(reasons) == 5 and "duplicate" in reasons and "invalid_json" in reasons


def _labels(alert_rows) -> list[LabelRecord]:
    """Deterministic expert verdicts for most alerts, some relabelled, some undecided."""
    out = []
    for i, (alert_id, user_id) in enumerate(sorted(alert_rows)):
        if i % 5 == 4:
            continue  # not reviewed yet
        at = 1_700_000_000.0 + i * 3600
        label = ("risk", "no_risk", "undecided", "risk")[i % 4]
        reviewer = ("alice", "bob")[i % 2]
        out.append(LabelRecord(alert_id, user_id, label, "", reviewer, at))
        if i % 3 == 0:  # a later second opinion replaces the first
            out.append(LabelRecord(alert_id, user_id, "no_risk" if label == "risk" else "risk",
                                   "second look", "carol", at + 60))
    return out


@pytest.fixture(scope="module")
def same_rows_with_labels(both_runs):
    """Both stores with identical rows: the same labels, the same received_at."""
    db, ref = both_runs
    alerts = _duck_rows(db, "alerts", ["alert_id", "user_id"])
    labels = [to_row(r) for r in _labels(alerts)]
    assert len(labels) > 5
    con = duckdb.connect(str(db))
    try:
        insert_rows(con, "labels", labels)
        # Align the processing-time column with the BigQuery run's values.
        for r in bqs.fetch_rows(ref, "dead_letters"):
            con.execute("UPDATE dead_letters SET received_at = $t WHERE dead_letter_id = $id",
                        {"t": r["received_at"].astimezone(dt.UTC).replace(tzinfo=None),
                         "id": r["dead_letter_id"]})
    finally:
        con.close()
    assert bqs.insert_rows(ref, "labels", labels) == []
    return db, ref


def _param_sets(db):
    users = _duck_rows(db, "alerts", ["user_id"])
    alerted = sorted(u for (u,) in users)[0]
    return {
        "alerts_per_day": [{}, {"start_date": "2018-11-10", "end_date": "2018-11-30"}],
        "latest_alert_per_user": [{}, {"min_priority": "P2"}],
        "users_by_probability": [{}, {"min_p": "0.5"}],
        "user_timeline": [{"user_id": alerted}, {"user_id": "nobody' OR 'x'='x"}],
        "writings_at_alert": [{}, {"first_only": "false"}],
        "precision_by_threshold": [{}, {"reviewer": "bob"}],
        "precision_by_priority": [{}, {"reviewer": "carol"}],
        "dead_letters_by_reason": [{}, {"since": "2099-01-01T00:00:00Z"}],
    }


def test_every_named_query_gives_the_same_answer(same_rows_with_labels):
    db, ref = same_rows_with_labels
    bq = bqs.client(ref.project)
    params = _param_sets(db)
    pack = load_pack()
    assert set(params) == set(pack), "add parameter sets for new queries"
    con = duckdb.connect(str(db), read_only=True)
    non_empty = 0
    try:
        for name, query in pack.items():
            for raw in params[name]:
                values = query.bind(raw)
                duck = run_duckdb(query, values, con)
                big = run_bigquery(query, values, ref, bq)
                assert duck.columns == big.columns, name
                assert_same_rows(duck.rows, big.rows, f"{name} {raw}")
                non_empty += bool(duck.rows)
    finally:
        con.close()
    assert non_empty >= len(pack)  # the comparisons are not over empty results


def test_analytics_cli_on_bigquery(same_rows_with_labels, capsys):
    _, ref = same_rows_with_labels
    assert main(["analytics", "precision_by_priority", "--db", ref.uri, "--format",
                 "csv"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("priority,alerts,reviewed")
    assert len(lines) > 1


def test_emulator_does_not_deduplicate_insert_ids(bq_emulator):
    """Measured fact for docs/BIGQUERY.md: bqemulator ignores insertId.

    Real BigQuery drops a repeat of an insertId seen in the last minute or so
    (best effort). If this starts failing, the emulator honours insertId now:
    turn it into a test that retries do not duplicate, and update the docs.
    """
    ref = bqs.DatasetRef("demo-project", f"dedupe_{uuid.uuid4().hex[:8]}")
    bqs.ensure_tables(ref, ["labels"])
    row = to_row(LabelRecord("a1", "u1", "risk", "", "alice", 1_700_000_000.0))
    assert bqs.insert_rows(ref, "labels", [row]) == []
    assert bqs.insert_rows(ref, "labels", [row]) == []  # same insertId
    assert len(bqs.fetch_rows(ref, "labels")) == 2


def _score(sid: str, p_text) -> ScoreRecord:
    return ScoreRecord("u_x", sid, 1_541_043_499.0, "post", "r", p_text, 0.5, 1, "m", "f:1")


def test_rows_bigquery_rejects_become_dead_letters(bq_emulator):
    from transforms.sinks import WriteResults

    ref = bqs.DatasetRef("demo-project", f"reject_{uuid.uuid4().hex[:8]}")
    with beam.Pipeline(options=PipelineOptions(["--runner", "DirectRunner"])) as p:
        scores = p | beam.Create([_score("good", 0.25), _score("bad", "not-a-number")])
        {"scores": scores} | WriteResults(ref.uri, bq_create_tables=True)
    assert [r["submission_id"] for r in bqs.fetch_rows(ref, "scores")] == ["good"]
    dead = bqs.fetch_rows(ref, "dead_letters")
    assert len(dead) == 1
    d = dead[0]
    assert d["stage"] == "sink" and d["reason"].startswith("bigquery_")
    assert d["source"] == f"bigquery:{ref.table_spec('scores')}"
    assert '"bad"' in d["raw"] and "not-a-number" in d["raw"]


def test_rejected_dead_letters_are_counted_not_dropped_silently(bq_emulator, caplog):
    from apache_beam.metrics.metric import MetricsFilter

    from transforms.sinks import WriteResults

    ref = bqs.DatasetRef("demo-project", f"lost_{uuid.uuid4().hex[:8]}")
    bqs.ensure_tables(ref, ["scores"])  # no dead_letters table: those inserts fail
    p = beam.Pipeline(options=PipelineOptions(["--runner", "DirectRunner"]))
    scores = p | beam.Create([_score("bad", "not-a-number")])
    {"scores": scores} | WriteResults(ref.uri)
    result = p.run()
    result.wait_until_finish()
    counters = {c.key.metric.name: c.committed for c in result.metrics().query(
        MetricsFilter().with_namespace("earlyrisk"))["counters"]}
    assert counters.get("sink_rejected") == 1
    assert counters.get("sink_dead_letters_lost") == 1
    assert any("rejected a dead letter" in r.getMessage() for r in caplog.records)


def test_replayed_rows_carry_the_same_insert_ids(bq_emulator, monkeypatch):
    """The writer sends our primary-key insert ids, identical when rows are sent again.

    Two runs over the same records stand in for a replayed bundle: on real
    BigQuery the second send is dropped by insertId de-duplication.
    """
    from tests.bqemulator import RecordingProxy
    from transforms.sinks import WriteResults

    ref = bqs.DatasetRef("demo-project", f"ids_{uuid.uuid4().hex[:8]}")
    bqs.ensure_tables(ref)
    records = [_score(f"s{i}", 0.1 * i) for i in range(5)]
    expected = sorted(bqs.insert_id("scores", to_row(r)) for r in records)
    with RecordingProxy(bq_emulator) as proxy:
        monkeypatch.setenv("BIGQUERY_EMULATOR_HOST", proxy.url)
        for _ in range(2):
            with beam.Pipeline(options=PipelineOptions(["--runner", "DirectRunner"])) as p:
                {"scores": p | beam.Create(records)} | WriteResults(ref.uri)
    sent = [row["insertId"] for body in proxy.inserts for row in body["rows"]]
    assert sorted(sent) == sorted(expected * 2)
